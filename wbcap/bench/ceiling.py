"""FLOPs of the regressor and the device's dense matmul FLOP/s ceiling per dtype."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from typing import Any

from wbcap.bench.timing import sync_fn, time_call

#: Module groups of the FLOP breakdown, in display order.
FLOP_GROUPS = ("body_backbone", "hand_backbone", "face_backbone", "box_net", "heads", "smplx", "other")
_NET_GROUPS = {
    "body_backbone": ("backbone",),
    "hand_backbone": ("hand_roi_net",),
    "face_backbone": ("face_roi_net",),
    "box_net": ("box_net",),
}
#: Untimed matmuls before a probe's timed ones (:meth:`CeilingProbe.__call__`). Right after other
#: work (a network call between two probes) the first two 2048 x 2048 float32 products each took
#: 4096 minor page faults (their 16 MB result freshly mapped: the allocator had returned the
#: memory the network freed) and ran ~10 % slower, in one phase of the Zen 5 EPYC's host ~40 %;
#: the third had none. The network's own calls take no page faults in steady state, so a ceiling
#: measured through those faults made the ratios read high (run 2 of the Zen 5 table: 124 %).
WARMUP_AFTER_OTHER_WORK = 2
#: The GEMM libraries a CPU ceiling may be measured with (:func:`gemm_call`).
GEMM_KERNELS = ("matmul", "onednn")
_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: The matmul dtype each network precision is compared with.
CEILING_OF = {"exact": "fp32", "fast": "bf16", "bf16": "bf16", "fp16": "fp16"}


def row_ceiling(precision: str, device, measured) -> str:
    """The ceiling a precision's rows are compared with: :data:`CEILING_OF`, if ``measured``
    (names) has it; fp32 for ``fast`` on a CPU without bfloat16 instructions (fast then runs
    float32 convolutions, its ResNets and box network float32 or int8: :func:`wbcap.model.inference.optimize_for_inference`)
    and for anything not measured."""
    from wbcap.model.fused import bf16_supported

    name = CEILING_OF.get(precision, precision)
    if precision == "fast" and device.type == "cpu" and not bf16_supported():
        return "fp32"
    return name if name in measured else "fp32"


def count_flops(regressor, device=None, batch: int = 1) -> dict[str, Any]:
    """FLOPs of one forward of ``regressor`` (a ``WholeBodyRegressor`` or a ``Hand4Whole``) on
    ``batch`` crops, per crop, with a breakdown by module group (:data:`FLOP_GROUPS`).

    Counted with ``FlopCounterMode`` on a real (random, in [0, 1]) input: the network's RoIAlign
    needs concrete box values, so the meta device cannot be used. RoIAlign is resampling, not
    model arithmetic, and runs outside the counter (torchvision's kernel is not counted by it;
    wbcap's matrix form, :mod:`wbcap.crop.roi_align`, would add ~1.2 GFLOPs per crop of
    interpolation matrix products). Returns ``per_crop``, ``network_per_crop``, ``breakdown``
    (group -> FLOPs per crop), ``by_operator``.
    """
    import torch
    from torch.utils._python_dispatch import _disable_current_modes
    from torch.utils.flop_counter import FlopCounterMode

    from wbcap.model.hand4whole import Hand4Whole

    net = regressor if isinstance(regressor, Hand4Whole) else regressor.net
    if device is None:
        device = next(net.parameters()).device
    h, w = net.config.input_img_shape
    g = torch.Generator().manual_seed(0)
    img = torch.rand(batch, 3, h, w, generator=g).to(device)
    counter = FlopCounterMode(display=False, depth=None)
    saved = [(m, m.roi_align) for m in (net.hand_roi_net, net.face_roi_net)]

    def uncounted(fn):
        def run(*args, **kwargs):
            with _disable_current_modes():
                return fn(*args, **kwargs)

        return run

    for m, fn in saved:
        m.roi_align = uncounted(fn)
    try:
        with counter, torch.inference_mode():
            regressor(img)
    finally:
        for m, fn in saved:
            m.roi_align = fn
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    total = int(counter.get_total_flops())
    root = type(regressor).__name__
    net_prefix = root if regressor is net else f"{root}.net"
    breakdown = {k: 0 for k in FLOP_GROUPS}
    for group, children in _NET_GROUPS.items():
        breakdown[group] = sum(int(counts.get(f"{net_prefix}.{c}", 0)) for c in children)
    network_total = int(counts.get(net_prefix, 0))
    breakdown["heads"] = network_total - sum(breakdown[k] for k in _NET_GROUPS)
    if regressor is not net:
        breakdown["smplx"] = int(counts.get(f"{root}.body", 0))
    breakdown["other"] = total - sum(breakdown.values())
    by_op: dict[str, int] = {}
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        name = str(op).split(".")[1] if str(op).startswith("aten.") else str(op)
        by_op[name] = by_op.get(name, 0) + int(n)
    return {
        "batch": batch,
        "per_crop": total / batch,
        "network_per_crop": network_total / batch,
        "breakdown": {k: v / batch for k, v in breakdown.items()},
        "by_operator": {k: v / batch for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "counter": "torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add)",
    }


def ceiling_precisions(device, precisions: tuple[str, ...] = ("exact",)) -> tuple[str, ...]:
    """Which matmul dtypes to measure: fp32, bf16 (+ fp16 when a precision needs it) on CPU;
    fp32, tf32, bf16, fp16 on CUDA."""
    if device.type == "cuda":
        return ("fp32", "tf32", "bf16", "fp16")
    names = ["fp32", "bf16"]
    for p in precisions:
        if CEILING_OF.get(p, p) not in names:
            names.append(CEILING_OF.get(p, p))
    return tuple(names)


class CeilingProbe:
    """A dense ``size`` x ``size`` matmul in ``precision``, set up once, to measure the device's
    FLOP/s ceiling as often as needed (:func:`matmul_ceiling`; :func:`paired_runs` between the
    timed calls of a network).

    On CPU the size is halved (down to 256) while a first small probe predicts more than
    ``max_seconds_per_matmul`` per matmul, so a dtype without hardware support (fp16 on most
    CPUs) does not take minutes; :attr:`size` is the size used. float32 is not taken below 2048:
    every CPU multiplies it in hardware, and a probe timed while other processes held the cores
    shrank the header's ceiling to 512 (a third of the rows' own, at 2048: an API user's trial);
    nor bfloat16 where oneDNN runs it (:func:`~wbcap.model.fused.bf16_supported`).

    On CPU the ceiling is the faster of two GEMM libraries, both in the torch wheel
    (:attr:`kernel` says which): ``matmul`` (``a @ b``: MKL for float32, oneDNN for bfloat16) and
    ``onednn`` (oneDNN's inner product on a pre-packed weight,
    :class:`~wbcap.model.fused.PackedLinear`, as the network's fused linear layers run; its
    convolutions are oneDNN's too). MKL's float32 GEMM runs its AVX2 code on AMD
    CPUs: on an EPYC Zen 5 (full-width AVX-512) ``a @ b`` reached 200 GFLOP/s where oneDNN reached
    460 and the network's convolutions 400, so ``a @ b`` alone was no ceiling there (ratios of
    140-200 %). ``kernel``: one of :data:`GEMM_KERNELS` to use without choosing (ValueError for
    another name), None to choose.
    """

    def __init__(self, device, precision: str, size: int = 2048, max_seconds_per_matmul: float = 0.4,
                 kernel: str | None = None) -> None:
        import torch

        self.device = device
        self.precision = precision
        dtype = getattr(torch, _DTYPES[precision])
        self.dtype = dtype
        self._sync = sync_fn(device)
        from wbcap.model.fused import bf16_supported
        n = int(size)
        if device.type == "cpu":
            # The fastest of 5 small matmuls: one timing taken while another process held the
            # core once predicted 3 s for a 2048 fp32 matmul and shrank it to 512 (a third of
            # the real ceiling, and ratios of 400 %).
            probe = 256
            a = torch.randn(probe, probe, dtype=dtype)
            best = min(time_call(lambda: a @ a, 5, 1))
            rate = 2 * probe**3 / max(best, 1e-9)
            # (nor bfloat16 where oneDNN runs it in hardware: a busy moment shrank it to 512 on a Zen 4
            # with AVX512-BF16, a ceiling of 33 GFLOP/s against its 400-450 and fast's rows at 1800 %:
            # a performance audit)
            hardware = dtype is torch.float32 or (dtype is torch.bfloat16 and bf16_supported())
            floor = min(n, 2048) if hardware else 256
            while n > floor and 2 * n**3 / rate > max_seconds_per_matmul:
                n //= 2
        self.size = n
        g = torch.Generator(device="cpu").manual_seed(0)
        self._a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
        self._b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
        #: Which GEMM the probe times (:data:`GEMM_KERNELS`): ``kernel`` when given (the one an
        #: earlier probe chose, so that a run's ceilings all come from one library), else on CPU
        #: the faster (:func:`fastest_cpu_kernel`); ``matmul`` on other devices.
        if kernel is not None and kernel not in GEMM_KERNELS:
            raise ValueError(f"kernel {kernel!r}: use one of {', '.join(GEMM_KERNELS)} (or None: the faster)")
        self.kernel = "matmul"
        if device.type == "cpu":
            self.kernel = kernel or fastest_cpu_kernel(self._a, self._b)
        #: One product of the probe's matrices through :attr:`kernel` (:func:`gemm_call`).
        self.gemm = gemm_call(self.kernel, self._a, self._b)

    @property
    def flops(self) -> int:
        """FLOPs of one matmul (2 per multiply-add)."""
        return 2 * self.size**3

    def runs(self, repeats: int, warmup: int = 0) -> list[float]:
        """Seconds of ``repeats`` matmuls after ``warmup`` untimed ones."""
        import torch

        tf32_ctx = contextlib.nullcontext()
        if self.device.type == "cuda":
            tf32_ctx = _cuda_matmul_tf32(self.precision == "tf32")
        with tf32_ctx, torch.inference_mode():
            return time_call(self.gemm, repeats, warmup, self._sync)

    def __call__(self, repeats: int = 3, warmup: int = WARMUP_AFTER_OTHER_WORK) -> float:
        """The ceiling now: FLOP/s of the median of ``repeats`` matmuls after ``warmup`` untimed
        ones (:data:`WARMUP_AFTER_OTHER_WORK`)."""
        return self.flops / statistics.median(self.runs(repeats, warmup))


def matmul_ceiling(device, precision: str, size: int = 2048, repeats: int = 5, warmup: int = 2,
                   max_seconds_per_matmul: float = 0.4) -> dict[str, Any]:
    """Dense ``size`` x ``size`` matmul rate (FLOP/s, median of ``repeats``; ``best_flops_per_s``
    from the fastest) for ``precision`` (see :class:`CeilingProbe` for the size on CPU)."""
    probe = CeilingProbe(device, precision, size, max_seconds_per_matmul)
    runs = probe.runs(repeats, warmup)
    med = statistics.median(runs)
    return {"size": probe.size, "median_s": med, "min_s": min(runs), "repeats": len(runs),
            "flops_per_s": probe.flops / med, "best_flops_per_s": probe.flops / min(runs), "dtype": str(probe.dtype),
            "kernel": probe.kernel}


def gemm_call(kernel: str, a, b) -> Callable[[], Any]:
    """A call of one product of the square ``n x n`` matrices ``a`` and ``b`` (2 n^3 FLOPs) through
    ``kernel`` (:data:`GEMM_KERNELS`): ``matmul`` is ``a @ b``; ``onednn`` is ``a @ b.T``, ``b``
    taken as the ``(n, n)`` weight of oneDNN's inner product, packed once here (a
    :class:`~wbcap.model.fused.PackedLinear`, run once so the packing is not in any timing).
    Raises RuntimeError where oneDNN has no product for the dtype or shapes."""
    if kernel == "onednn":
        import torch

        from wbcap.model.fused import PackedLinear

        linear = PackedLinear(b, dtype=b.dtype, out_dtype=b.dtype)
        with torch.inference_mode():
            linear(a)
        return lambda: linear(a)
    return lambda: a @ b


def fastest_cpu_kernel(a, b, rounds: int = 3) -> str:
    """``onednn`` where oneDNN's inner product is available for ``a``'s dtype and its least time
    over ``rounds`` interleaved rounds (:func:`wbcap.model.strategy.time_interleaved`, as the CPU
    strategy times its candidates) beats ``a @ b``'s, else ``matmul``."""
    import torch

    from wbcap.model.fused import onednn_linear_usable
    from wbcap.model.strategy import time_interleaved

    if not onednn_linear_usable(a.dtype):  # (else PackedLinear would run F.linear)
        return "matmul"
    try:
        onednn = gemm_call("onednn", a, b)
    except RuntimeError:  # no oneDNN product for these shapes or this dtype on this CPU
        return "matmul"
    with torch.inference_mode():
        seconds = time_interleaved({"matmul": gemm_call("matmul", a, b), "onednn": onednn}, rounds)
    return "onednn" if seconds["onednn"] < seconds["matmul"] else "matmul"


def paired_runs(fn: Callable[[], Any], flops: float, probe: CeilingProbe, repeats: int, warmup: int,
                sync: Callable[[], None] = lambda: None, probe_repeats: int = 3) -> dict[str, Any]:
    """Time ``repeats`` calls of ``fn`` (``flops`` FLOPs each) with the ceiling measured by
    ``probe`` before the first and after every call, and the ratio of each call's FLOP/s to the
    mean of the two ceilings around it.

    On a shared machine the FLOP/s available drift (on the project's 2-core Xeon by 2x within
    seconds, as other virtual machines' work on the same physical cores comes and goes); a ratio of
    measurements taken a few tenths of a second apart cancels most of that, where one ceiling for
    a whole row does not. Not all: on that Xeon the bf16 (AMX) matmul gained 3x when the machine
    was quiet and the network 2x, so a bf16 ratio still depends on the machine's load. Returns ``runs_s`` (the calls' seconds), ``ceilings_flops_per_s`` (``repeats``
    + 1 probes, in order) and ``ratios`` (one per call); their median is the row's paired ratio.
    """
    for _ in range(max(0, warmup)):
        fn()
    sync()
    ceilings = [probe(probe_repeats)]
    runs, ratios = [], []
    for _ in range(max(1, repeats)):
        runs += time_call(fn, 1, 0, sync)
        ceilings.append(probe(probe_repeats))
        ratios.append(flops / runs[-1] / ((ceilings[-2] + ceilings[-1]) / 2))
    return {"runs_s": runs, "ceilings_flops_per_s": ceilings, "ratios": ratios}


@contextlib.contextmanager
def _cuda_matmul_tf32(enabled: bool):
    """TF32 on/off for float32 CUDA matmuls inside the block, restored after (through
    :mod:`wbcap.model.device`: the pipeline's exact mode uses the same settings API, and torch
    refuses to mix it with the legacy ``allow_tf32`` flags)."""
    from wbcap.model.device import get_tf32, set_tf32

    saved = get_tf32()
    set_tf32(matmul=enabled)
    try:
        yield
    finally:
        set_tf32(*saved)
