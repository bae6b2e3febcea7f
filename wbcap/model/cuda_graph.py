"""CUDA graphs for the regressor's forward at fixed batch sizes (CUDA only; eager elsewhere).

A forward of the fused network launches about a thousand small kernels (three ResNets, the
heads, RoIAlign, rotations, SMPL-X); at small batch sizes the GPU waits on Python and the launch
queue more than it computes. A CUDA graph records those launches once per batch size and replays
them with one call. :class:`CudaGraphRunner` wraps a forward (``WholeBodyRegressor`` or its
``Hand4Whole`` network, or their bound ``forward``):

* per captured batch size one static input buffer (the input's dtype, shape and memory format),
  one graph, one set of static outputs; all graphs share one memory pool;
* a batch of ``n`` crops runs the graph of the smallest captured size ``>= n``
  (:func:`capture_sizes`: powers of two up to the pipeline's batch size, and that size): the
  crops are copied into the buffer's first ``n`` rows (the other rows keep older, finite data:
  the network treats each row on its own), the graph is replayed, and the first ``n`` rows of
  every output are copied out (fresh tensors, so the next replay cannot overwrite them);
* a graph is captured the first time its size is needed, inside ``context`` (the precision
  mode's :meth:`~wbcap.model.precision.Precision.inference_context`: ``exact`` captures
  float32 kernels with TF32 off), after ``warmup`` eager calls on a side stream (cuDNN and
  cuBLAS pick and set up their kernels there); replays run inside the same context;
* when capture fails (an operation that reads back from the device, an unsupported kernel...)
  the runner logs one warning and runs eagerly from then on; inputs not on CUDA, batches larger
  than the largest captured size and other input shapes or dtypes run eagerly too.

Outputs may be tensors, dataclasses (frozen too: :class:`~wbcap.model.regressor.RegressorOutput`,
:class:`~wbcap.model.hand4whole.NetworkOutput`, :class:`~wbcap.body.params.SMPLXParams`),
tuples, lists and dicts of them. Every output tensor is batched along dim 0: ``(B, ...)``, or
``k`` batches stacked, ``(k B, ...)`` (Hand4Whole's ``hand_pose_6d``: B left hands, then B right
hands); others (constants) are copied whole.

Meant for the fused precision modes (``exact``, ``fast``). The autocast comparison modes
(``bf16``, ``fp16``) keep cast weights in autocast's cache, which a graph must not point into:
run those eagerly. The forward must not read anything back from the device (no ``.item()``,
no boolean masks, no host-to-device copies of Python lists): ``WholeBodyRegressor`` is written so.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

#: Eager forward calls on a side stream before a graph is captured.
DEFAULT_WARMUP = 2


def capture_sizes(max_batch: int) -> tuple[int, ...]:
    """The batch sizes to capture for batches of up to ``max_batch`` crops: the powers of two
    below it, and ``max_batch`` itself: ``capture_sizes(32) == (1, 2, 4, 8, 16, 32)``,
    ``capture_sizes(24) == (1, 2, 4, 8, 16, 24)``. A batch of ``n`` then runs at most
    ``2 n - 1`` rows (padding costs under 2x, usually only for a video's last batch)."""
    top = max(1, int(max_batch))
    sizes, s = [], 1
    while s < top:
        sizes.append(s)
        s *= 2
    sizes.append(top)
    return tuple(sizes)


# -- output structures ----------------------------------------------------------------------


def flatten_tensors(obj: Any) -> tuple[list[torch.Tensor], Callable[[Sequence[torch.Tensor]], Any]]:
    """``(tensors, rebuild)``: every tensor in ``obj`` (tensors, dataclass instances, tuples,
    lists, dicts, nested; anything else is a constant), in a fixed order, and a function that
    returns a copy of ``obj`` with its tensors replaced by the given ones, in that order.
    Dataclasses are copied without calling ``__init__`` (frozen ones too), so validation and
    defaults in ``__post_init__`` are not run again."""
    leaves: list[torch.Tensor] = []

    def walk(o: Any) -> Callable[[Sequence[torch.Tensor]], Any]:
        if isinstance(o, torch.Tensor):
            i = len(leaves)
            leaves.append(o)
            return lambda ts: ts[i]
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            parts = [(f.name, walk(getattr(o, f.name))) for f in dataclasses.fields(o)]

            def rebuild_dc(ts: Sequence[torch.Tensor], o: Any = o, parts=parts) -> Any:
                new = copy.copy(o)
                for name, fn in parts:
                    object.__setattr__(new, name, fn(ts))
                return new

            return rebuild_dc
        if isinstance(o, (tuple, list)):
            items = [walk(v) for v in o]
            if isinstance(o, tuple) and hasattr(o, "_fields"):  # namedtuple
                return lambda ts, o=o, items=items: type(o)(*(fn(ts) for fn in items))
            return lambda ts, o=o, items=items: type(o)(fn(ts) for fn in items)
        if isinstance(o, dict):
            entries = [(k, walk(v)) for k, v in o.items()]
            return lambda ts, o=o, entries=entries: type(o)((k, fn(ts)) for k, fn in entries)
        return lambda ts, o=o: o

    rebuild = walk(obj)
    return leaves, rebuild


def take_rows(t: torch.Tensor, size: int, n: int) -> torch.Tensor:
    """The first ``n`` of ``size`` batch rows of a static output ``t``, as a new tensor.

    ``t`` (size, ...) -> (n, ...); ``t`` (k size, ...) (``k`` batches stacked) -> (k n, ...)
    (the first ``n`` rows of each block); any other tensor (not batched) is copied whole.
    """
    if n == size or t.dim() == 0 or t.shape[0] % size != 0:
        return t.clone()
    k = t.shape[0] // size
    if k == 1:
        return t[:n].clone()
    return t.reshape(k, size, *t.shape[1:])[:, :n].reshape(k * n, *t.shape[1:]).clone()


# -- the runner -------------------------------------------------------------------------------


@dataclass
class _Graph:
    """One captured batch size: the graph, its input buffer and its outputs."""

    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    outputs: list[torch.Tensor]
    rebuild: Callable[[Sequence[torch.Tensor]], Any]


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class CudaGraphRunner:
    """``forward`` replayed from CUDA graphs at fixed batch sizes (see the module docstring).

    Args:
        forward: the eager forward, ``x (B, ...) -> outputs`` (a module or a function).
        batch_sizes: the sizes to capture (:func:`capture_sizes` of the pipeline's batch size).
        context: entered around every warm-up, capture and replay (the precision mode's
            inference context); None: nothing.
        warmup: eager calls on a side stream before each capture.
        name: what the log line calls the forward.

    Call it like ``forward``: ``runner(x)``. :attr:`eager` is True once capture has failed.
    Not thread-safe (one pipeline, one thread), like the pipeline itself.
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], Any],
        batch_sizes: Sequence[int],
        context: Callable[[], AbstractContextManager] | None = None,
        warmup: int = DEFAULT_WARMUP,
        name: str = "the regressor",
    ) -> None:
        sizes = sorted({int(s) for s in batch_sizes})
        if not sizes or sizes[0] < 1:
            raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
        self.forward = forward
        self.batch_sizes = tuple(sizes)
        self.context = context if context is not None else contextlib.nullcontext
        self.warmup = max(1, int(warmup))
        self.name = name
        self.eager = False
        self._graphs: dict[tuple, _Graph] = {}
        self._pool = None

    def size_for(self, n: int) -> int | None:
        """The captured batch size a batch of ``n`` runs at; None when ``n`` is larger than all."""
        for s in self.batch_sizes:
            if s >= n:
                return s
        return None

    @property
    def captured(self) -> tuple[int, ...]:
        """Batch sizes captured so far."""
        return tuple(sorted({key[0] for key in self._graphs}))

    def _capturable(self, x: torch.Tensor) -> bool:
        return x.is_cuda and torch.cuda.is_available()

    def __call__(self, x: torch.Tensor) -> Any:
        n = int(x.shape[0]) if x.dim() else 0
        size = self.size_for(n) if n > 0 else None
        if self.eager or size is None or not self._capturable(x):
            return self.forward(x)
        key = (size, tuple(x.shape[1:]), x.dtype, x.device, _layout(x))
        with torch.inference_mode(), self.context():
            g = self._graphs.get(key)
            if g is None:
                try:
                    g = self._capture(x, size)
                except Exception as exc:  # any failure: this forward cannot be graphed here
                    self.eager = True
                    self._graphs.clear()
                    log.warning("CUDA graph capture of %s failed (%s: %s); running it eagerly",
                                self.name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                    return self.forward(x)
                self._graphs[key] = g
            g.static_input[:n].copy_(x)
            g.graph.replay()
            return g.rebuild([take_rows(t, size, n) for t in g.outputs])

    def _capture(self, x: torch.Tensor, size: int) -> _Graph:
        """Warm up and capture the forward at ``size`` rows shaped like ``x`` (inside the context)."""
        static = torch.zeros((size, *x.shape[1:]), dtype=x.dtype, device=x.device).contiguous(memory_format=_layout(x))
        static[: x.shape[0]].copy_(x)
        if x.shape[0] < size:  # padding rows: copies of the crops given (finite, realistic values)
            reps = -(-size // x.shape[0])
            static.copy_(x.repeat(reps, *([1] * (x.dim() - 1)))[:size])
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.forward(static)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: CUDA calls of other threads (a detector, the decoder's upload) do not
            # fail the capture unless they touch this stream.
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out = self.forward(static)
        except Exception:
            torch.cuda.synchronize(x.device)
            raise
        outputs, rebuild = flatten_tensors(out)
        log.debug("captured %s at batch size %d (%d outputs)", self.name, size, len(outputs))
        return _Graph(graph, static, outputs, rebuild)
