"""A ResNet compiled by oneDNN Graph: one more inference form the CPU strategy can choose.

torch's TorchScript executor hands chains of operators to oneDNN Graph (LLGA) once that fuser
is on (``torch.jit.enable_onednn_fusion``): the ResNet is traced, then frozen
(``torch.jit.freeze`` folds each BatchNorm into its convolution and makes the weights
constants), and on the first calls of each input shape every stage of it (the stem, the
max-pooling and each of the four stages: six partitions for a ResNet-50) is compiled as one
partition, whose convolutions, residual adds and ReLUs oneDNN Graph runs with activations in the
memory layout of its choice and buffers it plans itself. :class:`~wbcap.model.fused.FusedResNet`
calls one oneDNN primitive per convolution instead, each handing a channels_last tensor to the
next. Measured on the 2-core Zen 5 EPYC (family 26 model 2), the full-size parts with the
bench's random weights, one process, the two forms' calls interleaved, least of 20, ms per image
at 1 / 2 / 4 images per call: the body ResNet-50 at 256x192 18.6 / 17.8 / 17.4 against fused
21.3 / 19.4 / 18.5, the hand ResNet-50 at 256x256 23.8 / 23.4 / 23.8 against 26.1 / 25.0 / 24.6,
the face ResNet-18 at 192x192 6.30 / 6.21 / 5.84 against 7.18 / 6.57 / 5.93; the outputs equal bit
for bit. Which is faster depends on the machine, so it is a candidate of :mod:`wbcap.model.strategy`,
measured and checked like the others, for the ResNets in float32 and (where oneDNN has bfloat16
instructions) bfloat16. The box network's transposed convolutions are not offered: oneDNN
Graph ran them 2.8x slower than oneDNN's own deconvolution primitive there (23.6 against 8.4 ms
for one image).

Why TorchScript, which torch deprecates: it is how torch hands a graph to oneDNN Graph; its
successor for this, ``torch.compile`` (inductor, freezing), imports ``torch._dynamo`` (~2 s),
compiled for 46 s and ran 2x slower (see the README). Where a torch without it is installed
(:func:`graph_usable`), the form is no candidate.

Process-wide: the fuser is a switch of TorchScript's executor, which building this form turns on
(wbcap runs no other TorchScript). Memory: the frozen graph holds its own folded weights, and
oneDNN Graph a reordered copy for each input shape it compiled: the exact network with its body
and hand ResNet-50s in this form held 1465 MB after calls of 1, 2, 8 and 3 crops against 988 MB
all fused (Zen 5 EPYC).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from wbcap.model.fused import DEFAULT_CHUNK, ChunkPlan, bf16_supported, chunk_plan, run_in_chunks
from wbcap.model.resnet import ResNetBackbone

#: Calls of an input shape new to the graph before its compiled partitions run: TorchScript's
#: profiling executor records the shapes on the first, oneDNN Graph compiles on the next
#: (measured: the third call of a shape is the first at full speed). :class:`GraphResNet` makes
#: them on a shape's first call, so that no later call pays for it.
WARM_CALLS = 3


def graph_usable() -> bool:
    """Whether this form can be built here: torch has TorchScript's oneDNN Graph fuser and oneDNN."""
    return hasattr(torch.jit, "enable_onednn_fusion") and torch.backends.mkldnn.is_available()


def graph_applies(module: nn.Module, dtype: torch.dtype) -> bool:
    """Whether a tuned part's ``module`` computed in ``dtype`` can take this form: a
    :class:`~wbcap.model.resnet.ResNetBackbone` in float32, or in bfloat16 on a CPU with
    bfloat16 instructions (:func:`~wbcap.model.fused.bf16_supported`), with :func:`graph_usable`."""
    return (isinstance(module, ResNetBackbone) and graph_usable()
            and (dtype == torch.float32 or (dtype == torch.bfloat16 and bf16_supported())))


class GraphResNet(nn.Module):
    """A :class:`~wbcap.model.resnet.ResNetBackbone` (eval mode) as a frozen TorchScript graph
    that oneDNN Graph compiles: the same contract as :class:`~wbcap.model.fused.FusedResNet`.

    forward(x (B, 3, H, W) float, CPU) -> (B, feat_dim, ceil(H / 32), ceil(W / 32)) in ``x``'s
    dtype, channels_last, computed in ``dtype`` (float32 or bfloat16) in calls of the sizes
    ``chunk`` chooses for B (an int: at most that many images; a
    :class:`~wbcap.model.fused.ChunkPlan`: the measured best). The first call with a given
    number of images runs the graph :data:`WARM_CALLS` times (the compilation). The backbone is
    read, not changed or kept. CPU only: ``.to()`` another device or dtype raises ValueError.
    Not saveable.

    Raises:
        ValueError: the backbone is in training mode, or ``dtype`` is neither float32 nor
            bfloat16.
        RuntimeError: this torch has no oneDNN Graph fuser (:func:`graph_usable`), or
            TorchScript fails to trace or freeze the backbone.
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
        self._warm: set[int] = set()  # images per call the graph has been compiled for
        torch.jit.enable_onednn_fusion(True)  # (process-wide: see the module docstring)
        # A copy only where the dtype changes: tracing reads the module, and freezing clones what it keeps.
        module = backbone if dtype == torch.float32 else copy.deepcopy(backbone).to(dtype)
        example = torch.zeros((1, 3, *(int(v) for v in image_size)), dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # (TorchScript's deprecation notices, on every trace)
            self._graph = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))

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

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        if n not in self._warm:
            for _ in range(WARM_CALLS - 1):
                self._graph(x)
            self._warm.add(n)
        return self._graph(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"a ResNet compiled by oneDNN Graph runs on the CPU, got an input on {x.device}")
        out_dtype = x.dtype
        if x.shape[0] == 0:
            return torch.empty(self.output_size(x.shape), dtype=out_dtype).contiguous(memory_format=torch.channels_last)
        x = x.detach().to(self._dtype).contiguous(memory_format=torch.channels_last)
        return run_in_chunks(self._run, x, self.chunks.split(x), out_dtype)
