"""A ResNet compiled by oneDNN Graph: one more inference form the CPU strategy can choose.

torch's TorchScript executor hands chains of operators to oneDNN Graph (LLGA) once that fuser
is on (``torch.jit.enable_onednn_fusion``): the ResNet's forward, with each BatchNorm folded into
its convolution as the fused form folds it (in float32, then rounded to the compute dtype), is
traced with the folded weights as constants, and on the first calls of each input shape every
stage of it (the stem, the max-pooling and each of the four stages: six partitions for a
ResNet-50) is compiled as one partition, whose convolutions, residual adds and ReLUs oneDNN Graph
runs with activations in the memory layout of its choice and buffers it plans itself.
:class:`~wbcap.model.fused.FusedResNet` calls one oneDNN primitive per convolution instead, each
handing a channels_last tensor to the next. Measured on the 2-core Zen 5 EPYC (family 26 model 2), the full-size parts with the
bench's random weights, one process, the two forms' calls interleaved, least of 20, ms per image
at 1 / 2 / 4 images per call: the body ResNet-50 at 256x192 18.6 / 17.8 / 17.4 against fused
21.3 / 19.4 / 18.5, the hand ResNet-50 at 256x256 23.8 / 23.4 / 23.8 against 26.1 / 25.0 / 24.6,
the face ResNet-18 at 192x192 6.30 / 6.21 / 5.84 against 7.18 / 6.57 / 5.93; the outputs equal bit
for bit. Which is faster depends on the machine, so it is a candidate of :mod:`wbcap.model.strategy`,
measured and checked like the others, for the ResNets in float32 and (where oneDNN has bfloat16
instructions) bfloat16, and in float32 for the calls of one image of a fused or plain ResNet
(:data:`~wbcap.model.strategy.SINGLE_FORMS`: on the Zen 3 EPYC the face ResNet-18 at one image was
7-20 % faster this way, fused as fast or faster from two images per call). The box network's transposed convolutions are not offered: oneDNN
Graph ran them 2.8x slower than oneDNN's own deconvolution primitive there (23.6 against 8.4 ms
for one image).

Why TorchScript, which torch deprecates: it is how torch hands a graph to oneDNN Graph; its
successor for this, ``torch.compile`` (inductor, freezing), imports ``torch._dynamo`` (~2 s),
compiled for 46 s and ran 2x slower (docs/performance.md). Where a torch without it is installed
(:func:`graph_usable`), the form is no candidate.

Process-wide state: the fuser is a switch of TorchScript's executor; this form turns it on
around its own graph's calls only and puts it back as it was (:func:`_onednn_fusion`: it was
left on for the process once built, so a user's own traced models went through oneDNN Graph
too: a user trial). TorchScript keeps every traced graph, with its constants, until the process
ends, so the graphs are kept here by weights, dtype and image size and built once each
(``_GRAPHS``): a process that builds networks of many other weights in this form (a loop over
training snapshots) keeps ~100-200 MB for each (measured: +175 MB a pipeline; passing the
weights as inputs instead frees them, but ran a ResNet-50 1.4x slower at one image, oneDNN
Graph reordering them at every call), which ``WBCAP_CPU_STRATEGY=fused`` avoids. A forked
process (a DataLoader worker) runs the traced function's layers one by one instead
(:meth:`GraphResNet._call`). Memory: a graph holds its folded weights, and oneDNN Graph a reordered
copy for each input shape it compiled: the exact network with its body and hand ResNet-50s in
this form held 1465 MB after calls of 1, 2, 8 and 3 crops against 988 MB all fused (Zen 5 EPYC).

"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from wbcap.model.fused import (
    DEFAULT_CHUNK,
    ChunkPlan,
    bf16_supported,
    block_convs,
    chunk_plan,
    fold_batchnorm,
    run_in_chunks,
)
from wbcap.model.int8 import weights_fingerprint
from wbcap.model.resnet import ResNetBackbone

log = logging.getLogger(__name__)

#: Calls of an input shape new to the graph before its compiled partitions run: TorchScript's
#: profiling executor records the shapes on the first, oneDNN Graph compiles on the next
#: (measured: the third call of a shape is the first at full speed). :class:`GraphResNet` makes
#: them on a shape's first call, so that no later call pays for it.
WARM_CALLS = 3
#: TorchScript keeps a dozen shape specialisations of a graph (its default fusion strategy: 2
#: static, 10 dynamic); later shapes ran its unfused fallback, slower than the plain module (a
#: reviewer measured it). So a graph runs calls of its plan's sizes and of powers of two only
#: (a call of another size is split into those): a measured plan's sizes are powers of two, and a
#: forced one adds one size.
POWERS_OF_TWO = tuple(2 ** k for k in range(13))


def graph_usable() -> bool:
    """Whether this form can be built here: torch has TorchScript's oneDNN Graph fuser and oneDNN."""
    return hasattr(torch.jit, "enable_onednn_fusion") and torch.backends.mkldnn.is_available()


def graph_applies(module: nn.Module, dtype: torch.dtype) -> bool:
    """Whether a tuned part's ``module`` computed in ``dtype`` can take this form: a
    :class:`~wbcap.model.resnet.ResNetBackbone` in float32, or in bfloat16 on a CPU with
    bfloat16 instructions (:func:`~wbcap.model.fused.bf16_supported`), with :func:`graph_usable`."""
    return (isinstance(module, ResNetBackbone) and graph_usable()
            and (dtype == torch.float32 or (dtype == torch.bfloat16 and bf16_supported())))


@dataclass
class _Graph:
    """One traced ResNet and the call sizes it has been compiled for (shared by the forms built
    from the same weights); ``eager``: the function it was traced from (the same folded weights),
    which a forked process runs instead (:meth:`GraphResNet._call`); ``pid``: the process that
    traced it."""

    run: Callable[[torch.Tensor], torch.Tensor]
    eager: Callable[[torch.Tensor], torch.Tensor]
    pid: int = field(default_factory=os.getpid)
    warm: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    told_forked: bool = False


# Why state that outlives a GraphResNet: TorchScript keeps every traced graph, with the weights
# it holds as constants, in its global compilation unit for the life of the process (its own
# ``_compilation_unit`` is ignored for functions; ~100 MB more for each ResNet-50 built, found
# by a reviewer). Keeping each graph for its weights, dtype and image size, and building it
# again from here, bounds that to one per distinct part (the strategy's measurement and a
# network loaded twice in one process build the same part twice).
_GRAPHS: dict[tuple[str, str, tuple[int, int]], _Graph] = {}
_GRAPHS_LOCK = threading.Lock()


class _FuserUse:
    """Who is inside :func:`_onednn_fusion` now, and the fuser's state before the first of them:
    the switch is one for the process, so with graph calls in several threads each saving and
    restoring it, one thread turned it off under another's call (a graph compiled then stays
    unfused) and the last left it on (a review). The first to enter saves and turns it on, the
    last to leave puts it back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.before = False
        self.pid = os.getpid()

    def for_this_process(self) -> None:
        """In a process forked while another thread was inside (the count and the lock came
        with the fork, the thread did not: a review), start again from the state saved."""
        if self.pid != os.getpid():
            if self.inside:
                torch.jit.enable_onednn_fusion(self.before)
            self.lock, self.inside, self.pid = threading.Lock(), 0, os.getpid()


_FUSER = _FuserUse()  # (process-wide, as the switch it guards)


@contextlib.contextmanager
def _onednn_fusion() -> Iterator[None]:
    """TorchScript's oneDNN Graph fuser on inside the block, as it was once no block is left:
    the switch is the process's, and the user's own TorchScript should not find it changed (a
    user's TorchScript running in another thread during a graph call does see it on)."""
    _FUSER.for_this_process()
    with _FUSER.lock:
        if _FUSER.inside == 0:
            _FUSER.before = torch.jit.onednn_fusion_enabled()
            torch.jit.enable_onednn_fusion(True)
        _FUSER.inside += 1
    try:
        yield
    finally:
        with _FUSER.lock:
            _FUSER.inside -= 1
            if _FUSER.inside == 0:
                torch.jit.enable_onednn_fusion(_FUSER.before)


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, dtype: torch.dtype) -> tuple:
    """(weight, bias, stride, padding) of ``conv`` with ``bn`` folded in float32
    (:func:`~wbcap.model.fused.fold_batchnorm`, as the fused form folds), then in ``dtype``."""
    w, b = fold_batchnorm(conv.weight, conv.bias, bn, False)
    return (w.detach().to(dtype).contiguous(memory_format=torch.channels_last), b.detach().to(dtype),
            tuple(int(v) for v in conv.stride), tuple(int(v) for v in conv.padding))


def _trace(backbone: ResNetBackbone, image_size: tuple[int, int], dtype: torch.dtype) -> _Graph:
    """The backbone as a traced function of its input, the folded weights its constants."""
    stem = _folded(backbone.conv1, backbone.bn1, dtype)
    pool = backbone.maxpool
    pool_args = tuple(int(v if isinstance(v, int) else v[0]) for v in (pool.kernel_size, pool.stride, pool.padding))
    blocks = []
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        for blk in layer:
            down = None if blk.downsample is None else _folded(blk.downsample[0], blk.downsample[1], dtype)
            blocks.append((down, [_folded(conv, bn, dtype) for conv, bn in block_convs(blk)]))

    def forward(x: torch.Tensor) -> torch.Tensor:  # ResNetBackbone.forward, BatchNorm folded
        w, b, stride, padding = stem
        x = F.max_pool2d(F.relu(F.conv2d(x, w, b, stride, padding)), *pool_args)
        for down, convs in blocks:
            identity = x if down is None else F.conv2d(x, down[0], down[1], down[2], down[3])
            y = x
            for w, b, stride, padding in convs[:-1]:
                y = F.relu(F.conv2d(y, w, b, stride, padding))
            w, b, stride, padding = convs[-1]
            x = F.relu(F.conv2d(y, w, b, stride, padding) + identity)
        return x

    example = torch.zeros((1, 3, *image_size), dtype=dtype).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # (TorchScript's deprecation notices, on every trace)
        return _Graph(torch.jit.trace(forward, example, check_trace=False), forward)


class GraphResNet(nn.Module):
    """A :class:`~wbcap.model.resnet.ResNetBackbone` (eval mode) traced by TorchScript, its
    BatchNorm folded, and compiled by oneDNN Graph: the same contract as
    :class:`~wbcap.model.fused.FusedResNet`.

    forward(x (B, 3, H, W) float, CPU) -> (B, feat_dim, ceil(H / 32), ceil(W / 32)) in ``x``'s
    dtype, channels_last, computed in ``dtype`` (float32 or bfloat16) in calls of the sizes
    ``chunk`` chooses for B (an int: at most that many images; a
    :class:`~wbcap.model.fused.ChunkPlan`: the measured best); a call of a size that is neither
    one of the plan's nor a power of two is split into powers of two (:data:`POWERS_OF_TWO`).
    The first call with a given number of images runs the graph :data:`WARM_CALLS` times (the
    compilation). The weights are folded as :class:`~wbcap.model.fused.FusedResNet` folds them
    (in float32, then rounded to ``dtype``); the backbone is read, not changed or kept. Forms
    built from the same weights (by value), dtype and image size share one graph (see
    ``_GRAPHS``). CPU only: ``.to()`` another device or dtype raises ValueError. Not saveable.

    Raises:
        ValueError: the backbone is in training mode, or ``dtype`` is neither float32 nor
            bfloat16.
        RuntimeError: this torch has no oneDNN Graph fuser (:func:`graph_usable`), or
            TorchScript fails to trace the backbone.
    """

    def __init__(self, backbone: ResNetBackbone, image_size: Sequence[int], dtype: torch.dtype = torch.float32,
                 chunk: int | ChunkPlan = DEFAULT_CHUNK) -> None:
        super().__init__()
        if backbone.training:
            raise ValueError("a ResNet is compiled for inference in eval mode; call .eval() first")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"the oneDNN Graph form computes in float32 or bfloat16, not {dtype}")
        if not graph_usable():
            raise RuntimeError("this torch has no TorchScript oneDNN Graph fuser (torch.jit.enable_onednn_fusion)")
        self.chunks = chunk_plan(chunk)
        self.chunk = self.chunks.pack
        self.feat_dim = backbone.feat_dim
        self.depth = backbone.depth
        self._dtype = dtype
        size = (int(image_size[0]), int(image_size[1]))
        key = (weights_fingerprint(backbone), str(dtype), size)
        with _GRAPHS_LOCK:
            graph = _GRAPHS.get(key)
            if graph is None:
                graph = _GRAPHS[key] = _trace(backbone, size, dtype)
        self._graph = graph

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (float32 or bfloat16)."""
        return self._dtype

    def _apply(self, fn, recurse=True):
        probe = fn(torch.zeros(1, dtype=self._dtype))
        if probe.device.type != "cpu" or probe.dtype != self._dtype:
            raise ValueError("a ResNet compiled by oneDNN Graph runs on the CPU in the dtype it was built for; load the "
                             "network again for another device or dtype")
        return super()._apply(fn, recurse)

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(B, feat_dim, ceil(H / 32), ceil(W / 32)) for an input (B, 3, H, W)."""
        n, _, h, w = input_size
        return [int(n), self.feat_dim, (int(h) + 31) // 32, (int(w) + 31) // 32]

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        n, graph = int(x.shape[0]), self._graph
        if os.getpid() != graph.pid:
            # A forked process (a DataLoader worker): oneDNN Graph's compiled partitions waited
            # there forever on threads that did not survive the fork (a user trial), so the
            # same folded weights run eagerly, one convolution at a time.
            if not graph.told_forked:
                graph.told_forked = True
                log.info("in a forked process the oneDNN Graph form of a ResNet runs its layers one by one "
                         "(oneDNN Graph does not survive a fork)")
            with torch.no_grad():
                return graph.eager(x)
        with graph.lock:
            fresh = n not in graph.warm
            graph.warm.add(n)
        with _onednn_fusion():
            for _ in range(WARM_CALLS - 1 if fresh else 0):
                graph.run(x)
            return graph.run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        if n in self.chunks.sizes or n in POWERS_OF_TWO:
            return self._call(x)
        sizes = [p for p in reversed(POWERS_OF_TWO) if n & p]  # (binary: n = 5 -> 4 + 1)
        return run_in_chunks(self._call, x, x.split(sizes), x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"a ResNet compiled by oneDNN Graph runs on the CPU, got an input on {x.device}")
        out_dtype = x.dtype
        if x.shape[0] == 0:
            return torch.empty(self.output_size(x.shape), dtype=out_dtype).contiguous(memory_format=torch.channels_last)
        x = x.detach().to(self._dtype).contiguous(memory_format=torch.channels_last)
        return run_in_chunks(self._run, x, self.chunks.split(x), out_dtype)
