"""``wbcap bench``: time every stage of the pipeline on this device, count FLOPs, compare with
the hardware's matmul ceiling.

>>> from wbcap.bench import BenchOptions, run_bench, print_report   # doctest: +SKIP
>>> report = run_bench(BenchOptions(config="small", device="cpu"))  # doctest: +SKIP
>>> report["batches"][0]["crops_per_s"]                              # doctest: +SKIP

What is measured (every timing is the median of ``repeats`` runs after ``warmup`` untimed runs;
on CUDA ``torch.cuda.synchronize()`` brackets every timed region; the network runs under
``torch.inference_mode()`` in the Pipeline's form for each precision: ``exact`` and ``fast``
fused (:mod:`wbcap.model.fused`), ``bf16`` / ``fp16`` unfused under autocast):

* ``encode``: :class:`wbcap.io.video_writer.VideoWriter` (H.264) writing ``frames`` frames; without
  ``video`` the written clip (synthetic frames from :func:`wbcap.testing.images.person_image`,
  ``frame_size``) is the input of the next stage.
* ``decode``: PyAV through :func:`wbcap.io.video_reader.open_frames`, ``frames`` frames (open included).
* ``detect``: every available person detector on the same (first) frame, each its own stage:
  ``detect.hog`` (OpenCV HOG, always) and ``detect.yolox-nano`` (``detect.yolox`` for another
  export) when a YOLOX model is available: ``--detector-model FILE`` or the installed default
  (``wbcap weights fetch yolox-nano``; the benchmark never downloads). Each gives people found,
  the size the detector scans (HOG's first pyramid level, YOLOX's letterboxed input), runtime and
  threads as the pipeline runs them (HOG: OpenCV's threads; YOLOX: onnxruntime, 1 thread).
  Without YOLOX, ``detectors["yolox_missing"]`` says so with the fix. ``detect`` itself repeats
  the detector ``--detector auto`` would use among them (YOLOX when measured): its boxes feed
  ``crop`` and the end-to-end estimate. ``--detect-only`` runs this stage alone.
* ``crop``: :meth:`wbcap.pipeline.Pipeline.crop` of every detected box of that frame.
* ``regressor``: network + SMPL-X (``WholeBodyRegressor``) on a device tensor of B crops, for
  every precision and batch size (``batches``, one row each); the ``stages`` entry is the first
  precision's batch size with the most crops/s. Host -> device copy and the per-person numpy
  conversion are not included.
* ``precision_error`` (when ``exact`` and another precision are both measured): on the first
  frame's crop, the largest vertex distance (m) and box-corner distance (crop pixels, 512x384)
  of each other precision from ``exact``, with the weights in use.
* ``smplx``: the SMPL-X layer alone, at the largest batch size.
* ``render``: :func:`wbcap.export.render.render_meshes` of one person over the frame.

FLOPs (``flops``) are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one crop
(network + SMPL-X; 2 FLOPs per multiply-add), with a breakdown by module. The full-size model
costs about 35.75 GFLOPs per crop. ``ceilings`` holds the device's measured dense matmul rate
per dtype (fp32 and bf16 on CPU, plus fp16 when that is a precision asked for; fp32, tf32,
bf16 and fp16 on CUDA). Every row gets ``ratio`` = achieved FLOP/s / ``ceiling_flops_per_s``,
the ceiling of its precision's main dtype (:data:`CEILING_OF`: exact -> fp32, fast and bf16 ->
bf16, fp16 -> fp16) measured again right before and right after that row (their mean), so both
numbers of the ratio come from the same moments on a shared machine; ``ratios`` compares it with every ceiling of the
``ceilings`` table (cuDNN may run fp32 convolutions in TF32, so see ``ratios["tf32"]`` too).

Defaults, chosen so that ``wbcap bench --config small`` finishes in well under 2 minutes on a
2-core CPU: precisions exact,fast; CPU: batch sizes 1,2, 3 repeats, 1 warm-up; CUDA: batch
sizes 1,2,4,8,16, 10 repeats, 3 warm-ups. 16 frames of 320x240 for encode/decode, 2048x2048 matmuls (smaller on
a CPU where a 2048 matmul would take over ~0.4 s, e.g. fp16 without hardware support).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

REPORT_FORMAT = 1
CONFIGS = ("full", "small")
SMALL_DEPTHS = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
STAGES = ("decode", "detect", "crop", "regressor", "smplx", "render", "encode")
#: Module groups of the FLOP breakdown, in display order.
FLOP_GROUPS = ("body_backbone", "hand_backbone", "face_backbone", "box_net", "heads", "smplx", "other")
_NET_GROUPS = {
    "body_backbone": ("backbone",),
    "hand_backbone": ("hand_roi_net",),
    "face_backbone": ("face_roi_net",),
    "box_net": ("box_net",),
}
_DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: The matmul dtype each network precision is compared with.
CEILING_OF = {"exact": "fp32", "fast": "bf16", "bf16": "bf16", "fp16": "fp16"}
DEFAULT_PRECISIONS = ("exact", "fast")
CPU_DEFAULTS = dict(batch_sizes=(1, 2), repeats=3, warmup=1)
CUDA_DEFAULTS = dict(batch_sizes=(1, 2, 4, 8, 16), repeats=10, warmup=3)


@dataclass(frozen=True)
class BenchOptions:
    """What to benchmark. ``None`` fields take the device's defaults (module docstring).

    checkpoint: network checkpoint; with neither ``checkpoint`` nor ``config`` the checkpoint is
        looked up like ``wbcap image`` does, and random full-size weights are used (and said)
        when none is found. ``config``: ``full`` or ``small`` (all ResNet-18), random weights.
    body_models/gender/allow_pickle: the SMPL-X model, looked up like ``wbcap image``; a
        synthetic model (same size and format) is written to a temporary folder when missing.
    video: a video to decode/detect/render on; default: a synthetic clip of ``frame_size``
        (width, height).
    detector_model: a YOLOX ONNX export timed beside HOG; default: the installed default YOLOX
        model, if any (never downloaded).
    detect_only: time the person detectors on the first frame and nothing else.
    """

    checkpoint: str | None = None
    config: str | None = None
    body_models: str | None = None
    gender: str = "neutral"
    allow_pickle: bool = False
    device: str = "auto"
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    batch_sizes: tuple[int, ...] | None = None
    repeats: int | None = None
    warmup: int | None = None
    video: str | None = None
    frames: int = 16
    frame_size: tuple[int, int] = (320, 240)
    matmul_size: int = 2048
    detector_model: str | None = None
    detect_only: bool = False


@dataclass
class Timing:
    """``runs_s``: seconds of each timed call; ``items``: frames or crops per call."""

    runs_s: list[float]
    items: int
    unit: str  # "frame" | "crop"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.runs_s))

    def to_dict(self) -> dict[str, Any]:
        med = self.median_s
        return {
            "median_s": med,
            "min_s": float(min(self.runs_s)),
            "runs_s": [float(r) for r in self.runs_s],
            "items": int(self.items),
            "unit": self.unit,
            "per_item_s": med / self.items,
            "throughput": self.items / med if med > 0 else math.inf,
            "throughput_unit": f"{self.unit}s/s",
            **self.extra,
        }


# --------------------------------------------------------------------------------------------
# Small helpers


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,2,4,8"`` -> (1, 2, 4, 8); ValueError on anything else."""
    try:
        sizes = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"batch sizes {text!r}: use comma-separated whole numbers, e.g. 1,2,4,8") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"batch sizes {text!r}: use comma-separated whole numbers >= 1, e.g. 1,2,4,8")
    return tuple(sorted(set(sizes)))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (``getrusage``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _sync_fn(device) -> Callable[[], None]:
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_call(fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones (``sync`` around each)."""
    for _ in range(max(0, warmup)):
        fn()
    sync()
    runs = []
    for _ in range(max(1, repeats)):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        runs.append(time.perf_counter() - t0)
    return runs


def _version(dist: str, module: str | None = None) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    if module:
        with contextlib.suppress(Exception):
            return str(__import__(module).__version__)
    return None


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages whose speed matters here."""
    import cv2
    import numpy
    import torch

    import wbcap

    av_version = ffmpeg = None
    with contextlib.suppress(Exception):
        import av

        av_version = str(av.__version__)
        info = getattr(av, "ffmpeg_version_info", None)
        ffmpeg = str(info) if info else "libavcodec " + ".".join(str(v) for v in av.library_versions["libavcodec"])
    return {
        "python": platform.python_version(),
        "wbcap": wbcap.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "av": av_version,
        "ffmpeg": ffmpeg,
        "opencv": cv2.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None,
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_info(device) -> dict[str, Any]:
    """Name and properties of ``device`` (a torch.device)."""
    import torch

    info: dict[str, Any] = {
        "type": device.type,
        "spec": str(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(
            name=props.name,
            index=idx,
            total_memory_bytes=int(props.total_memory),
            capability=f"{props.major}.{props.minor}",
            multiprocessors=int(props.multi_processor_count),
        )
    else:
        info["name"] = info["cpu"]
    return info


# --------------------------------------------------------------------------------------------
# FLOPs and the hardware ceiling


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


def parse_precisions(text: str) -> tuple[str, ...]:
    """``"exact,fast"`` -> ("exact", "fast") (canonical names, order kept, no repeats);
    ValueError naming the choices otherwise."""
    from wbcap.pipeline import PRECISION_ALIASES, PRECISIONS

    names: list[str] = []
    for v in text.replace(" ", "").split(","):
        if not v:
            continue
        name = PRECISION_ALIASES.get(v, v)
        if name not in PRECISIONS:
            raise ValueError(f"precision {v!r}: use a comma-separated list of {', '.join(PRECISIONS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"precisions {text!r}: name at least one of {', '.join(PRECISIONS)}")
    return tuple(names)


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


def matmul_ceiling(device, precision: str, size: int = 2048, repeats: int = 5, warmup: int = 2,
                   max_seconds_per_matmul: float = 0.4) -> dict[str, Any]:
    """Dense ``size`` x ``size`` matmul rate (FLOP/s, median of ``repeats``) for ``precision``.

    On CPU the size is halved (down to 256) while a first small probe predicts more than
    ``max_seconds_per_matmul`` per matmul, so a dtype without hardware support (fp16 on most
    CPUs) does not take minutes; the size used is reported.
    """
    import torch

    dtype = getattr(torch, _DTYPES[precision])
    sync = _sync_fn(device)
    n = int(size)
    if device.type == "cpu":
        probe = 256
        a = torch.randn(probe, probe, dtype=dtype)
        a @ a
        t0 = time.perf_counter()
        a @ a
        rate = 2 * probe**3 / max(time.perf_counter() - t0, 1e-9)
        while n > 256 and 2 * n**3 / rate > max_seconds_per_matmul:
            n //= 2
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    tf32_ctx = contextlib.nullcontext()
    if device.type == "cuda":
        tf32_ctx = _cuda_matmul_tf32(precision == "tf32")
    with tf32_ctx, torch.inference_mode():
        runs = time_call(lambda: a @ b, repeats, warmup, sync)
    med = statistics.median(runs)
    return {"size": n, "median_s": med, "repeats": len(runs), "flops_per_s": 2 * n**3 / med, "dtype": str(dtype)}


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


# --------------------------------------------------------------------------------------------
# Model


def build_pipeline(opts: BenchOptions, device, workdir: Path, precision: str = "exact", flops: bool = False):
    """(Pipeline, model description, FLOP count or None) for ``opts`` on ``device`` in
    ``precision``; see :class:`BenchOptions`. With ``flops`` the FLOPs are counted
    (:func:`count_flops`) on the network before it is converted to its inference form."""
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.config import ModelConfig
    from wbcap.errors import CheckpointError, InputError, ModelFileError
    from wbcap.model.checkpoint import load_network
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.pipeline import Pipeline
    from wbcap.testing.checkpoints import random_network

    if opts.config is not None and opts.checkpoint is not None:
        raise InputError("--config (random weights) and --checkpoint exclude each other; pass one")
    if opts.config is not None and opts.config not in CONFIGS:
        raise InputError(f"--config {opts.config!r}: use one of {', '.join(CONFIGS)}")
    desc: dict[str, Any] = {}
    t0 = time.perf_counter()
    ckpt = None
    if opts.config is None:
        try:
            from wbcap.weights import find_checkpoint

            ckpt = find_checkpoint(opts.checkpoint)
        except CheckpointError as exc:
            if opts.checkpoint is not None:
                raise
            log.warning("%s; benchmarking the full-size network with random weights (same FLOPs and speed; "
                        "--config small for the small one)", str(exc).split(";")[0])
    if ckpt is not None:
        net = load_network(ckpt, device)
        desc.update(weights="checkpoint", checkpoint=str(ckpt), config_name=None)
    else:
        name = opts.config or "full"
        cfg = ModelConfig(**SMALL_DEPTHS) if name == "small" else ModelConfig()
        # Heads as drawn (not the demo's constant "upright" heads), so every output depends on the
        # image and the precision comparison measures something.
        net = random_network(cfg, seed=0, upright=False)
        desc.update(weights="random", checkpoint=None, config_name=name)
    try:
        body_path = find_body_model(opts.gender, opts.body_models, allow_pickle=opts.allow_pickle)
        synthetic = False
    except ModelFileError as exc:
        if opts.body_models is not None:
            raise
        from wbcap.testing.synthetic_body import write_synthetic_smplx

        folder = workdir / "body_models"
        if not folder.is_dir():
            log.warning("no SMPL-X model file found (see `wbcap doctor`); using a synthetic SMPL-X model of the "
                        "same size (%s)", type(exc).__name__)
            write_synthetic_smplx(folder)
        body_path = find_body_model("neutral", folder)
        synthetic = True
    body = SMPLXLayer.from_file(body_path, allow_pickle=opts.allow_pickle)
    regressor = WholeBodyRegressor(net, body)
    n_params = sum(p.numel() for p in net.parameters())
    t_count = time.perf_counter()
    counted = count_flops(regressor.to(device).eval(), device) if flops else None
    t0 += time.perf_counter() - t_count  # counting is not part of loading
    pipe = Pipeline(regressor, device, batch_size=max(opts.batch_sizes or (1,)), precision=precision)
    desc.update(
        body_model=str(body_path),
        body_model_synthetic=synthetic,
        config=net.config.to_dict(),
        depths=f"body R{net.config.backbone_depth}, hand R{net.config.hand_backbone_depth}, "
               f"face R{net.config.face_backbone_depth}",
        parameters=int(n_params),
        load_s=time.perf_counter() - t0,
    )
    return pipe, desc, counted


def describe_model(desc: dict[str, Any]) -> str:
    """One line: which weights and which body model were used."""
    if desc["weights"] == "checkpoint":
        w = f"checkpoint {desc['checkpoint']}"
    else:
        w = f"random weights, --config {desc['config_name']}"
    body = "synthetic SMPL-X (real model not found)" if desc["body_model_synthetic"] else f"SMPL-X {desc['body_model']}"
    return f"{desc['depths']}; {w}; {body}"


# --------------------------------------------------------------------------------------------
# Person detectors


#: The line the report gives when no YOLOX model could be measured (with the fix).
YOLOX_MISSING = ("YOLOX not measured: no YOLOX model is installed; run `wbcap weights fetch yolox-nano` "
                 "or pass --detector-model FILE.onnx")


def _hog_input_size(detector, width: int, height: int) -> tuple[int, int]:
    """Size of the first pyramid level :class:`wbcap.detect.hog.HOGDetector` scans for a
    ``width`` x ``height`` frame (it resizes so the smallest person sought is 96 px tall)."""
    from wbcap.detect import hog

    person_px = float(getattr(hog, "_PERSON_PX", 96.0))
    min_person = detector.min_height_frac * height
    scale = person_px / min_person if min_person > 0 else max(1.0, person_px / height)
    scale = min(scale, detector.max_upscale)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _yolox_stage_name(path: Path) -> str:
    """``yolox-nano`` etc. when ``path`` is a manifest file name, else ``yolox``."""
    with contextlib.suppress(Exception):
        from wbcap.weights import manifest

        for name, item in manifest().items():
            if item.architecture == "yolox" and item.file == path.name:
                return name
    return "yolox"


def find_yolox_model(detector_model: str | None = None) -> tuple[Path | None, str]:
    """The YOLOX ONNX file the benchmark times and where it came from.

    ``detector_model`` (``--detector-model``) wins; else the installed default YOLOX entry of the
    manifest (:func:`wbcap.weights.find_weights_file`). Nothing is ever downloaded. Returns
    ``(path, "--detector-model" | "installed")`` or ``(None, "")``.
    """
    if detector_model is not None:
        return Path(detector_model).expanduser(), "--detector-model"
    from wbcap.weights import default_entry, find_weights_file

    try:
        found = find_weights_file(default_entry("yolox"))
    except StopIteration:  # a manifest without a default YOLOX entry
        found = None
    return (found, "installed") if found is not None else (None, "")


def bench_detectors(image, repeats: int, warmup: int, detector_model: str | None = None,
                    device: str = "cpu") -> tuple[dict[str, Timing], dict[str, list], dict[str, Any]]:
    """Time every available person detector on the same ``image`` (``(H, W, 3)`` uint8 RGB).

    HOG always; YOLOX when a model is available (:func:`find_yolox_model`; built with
    :func:`wbcap.detect.factory.make_detector` offline, so the benchmark never downloads). Each
    detector runs once untimed (its detections are kept), then ``warmup`` untimed and ``repeats``
    timed calls (:func:`time_call`).

    Returns:
        ``(timings, detections, info)``: ``timings`` by stage name (``detect.hog``,
        ``detect.yolox-nano`` or ``detect.yolox`` for another export), one frame per call, with
        ``detector``, ``people``, ``size`` (frame ``[w, h]``), ``input_size`` (what the detector
        scans: HOG's first pyramid level, YOLOX's letterboxed ``S x S``), ``runtime`` and
        ``threads``; ``detections`` by stage name; ``info``: ``stages`` (names in order), ``used``
        (the stage ``--detector auto`` would pick among them: YOLOX when measured),
        ``yolox_model``/``yolox_source`` and ``yolox_missing`` (:data:`YOLOX_MISSING` or None).

    Raises:
        InputError: ``detector_model`` is not a usable YOLOX ONNX export (an installed default
            that does not load is reported in ``yolox_missing`` instead).
    """
    import cv2

    from wbcap.detect.factory import make_detector
    from wbcap.errors import InputError

    h, w = image.shape[:2]
    timings: dict[str, Timing] = {}
    found: dict[str, list] = {}
    info: dict[str, Any] = {"stages": [], "used": None, "yolox_model": None, "yolox_source": None,
                            "yolox_missing": None}

    def measure(name: str, detector, extra: dict[str, Any]) -> None:
        dets = detector(image)
        runs = time_call(lambda: detector(image), repeats, warmup)
        found[name] = list(dets)
        timings[name] = Timing(runs, 1, "frame", {"people": len(dets), "size": [w, h], **extra})
        info["stages"].append(name)
        log.debug("%s: %.2f ms/frame, %d people", name, 1e3 * timings[name].median_s, len(dets))

    hog = make_detector("hog", device=device, offline=True)
    measure("detect.hog", hog, {"detector": "hog", "input_size": list(_hog_input_size(hog, w, h)),
                                "runtime": "opencv", "threads": int(cv2.getNumThreads())})
    info["used"] = "detect.hog"

    path, source = find_yolox_model(detector_model)
    if path is None:
        info["yolox_missing"] = YOLOX_MISSING
        log.debug("%s", YOLOX_MISSING)
        return timings, found, info
    label = _yolox_stage_name(path)
    try:
        yolox = make_detector("auto", model=str(path), device=device, offline=True)
    except InputError as exc:
        if source != "installed":
            raise
        # A broken installed file should not stop the benchmark: say so, with the fix.
        info["yolox_missing"] = (f"YOLOX not measured: the installed {path} does not load ({str(exc).split(';')[0]}); "
                                 f"run `wbcap weights fetch {label}` or pass --detector-model FILE.onnx")
        log.warning("%s", info["yolox_missing"])
        return timings, found, info
    runtime = str(getattr(yolox, "runtime", "onnxruntime"))
    threads = int(getattr(yolox, "threads", 1)) if runtime == "onnxruntime" else int(cv2.getNumThreads())
    size = int(getattr(yolox, "size", 0))
    name = f"detect.{label}"
    measure(name, yolox, {"detector": label, "model": str(path), "input_size": [size, size], "runtime": runtime,
                          "threads": threads})
    info.update(used=name, yolox_model=str(path), yolox_source=source)
    return timings, found, info


# --------------------------------------------------------------------------------------------
# The benchmark


def _synthetic_frames(n: int, size: tuple[int, int]) -> list:
    import numpy as np

    from wbcap.testing.images import person_image

    w, h = size
    base = person_image(w, h, seed=0)
    return [np.ascontiguousarray(np.roll(base, 2 * i, axis=1)) for i in range(n)]


def _input_frames(opts: BenchOptions, work: Path, say: Callable[[str], None],
                  max_frames: int | None = None) -> tuple[list, Path, bool]:
    """``(frames, source, synthetic)``: up to ``max_frames`` (default ``opts.frames``) frames of
    ``opts.video``, or synthetic frames (:func:`_synthetic_frames`) whose clip will be
    ``work/synthetic.mp4``."""
    from wbcap.io.video_reader import open_frames

    n = opts.frames if max_frames is None else max_frames
    if opts.video is not None:
        src = Path(opts.video).expanduser()
        say(f"decoding {src.name}")
        frames = [f.image for f in open_frames(src, max_frames=n)]
        if not frames:
            from wbcap.errors import InputError

            raise InputError(f"{src}: no frame could be decoded")
        return frames, src, False
    return _synthetic_frames(n, opts.frame_size), work / "synthetic.mp4", True


def _stage_dicts(stages: dict[str, Timing], detect_timings: dict[str, Timing]) -> dict[str, dict[str, Any]]:
    """The report's ``stages``: :data:`STAGES` that were measured, in order, each detector's own
    ``detect.<name>`` entry right after ``detect`` (which repeats the detector feeding ``crop``)."""
    out: dict[str, dict[str, Any]] = {}
    for name in STAGES:
        if name in stages:
            out[name] = stages[name].to_dict()
        if name == "detect":
            out.update((k, t.to_dict()) for k, t in detect_timings.items())
    return out


def _run_detect_only(opts: BenchOptions, device, report: dict[str, Any], say: Callable[[str], None],
                     t_start: float) -> dict[str, Any]:
    """``--detect-only``: time the person detectors on the first frame, nothing else (no network,
    no matmul ceiling); ``report`` has no ``model``, ``flops``, ``ceilings``, ``batches`` nor
    ``estimate``."""
    with tempfile.TemporaryDirectory(prefix="wbcap_bench_") as tmp:
        frames, src, synthetic = _input_frames(opts, Path(tmp), say, max_frames=1)
    h, w = frames[0].shape[:2]
    report["input"] = {"video": None if synthetic else str(src), "synthetic": synthetic,
                       "width": w, "height": h, "frames": len(frames)}
    say("detect")
    timings, _, report["detectors"] = bench_detectors(frames[0], report["settings"]["repeats"],
                                                      report["settings"]["warmup"], opts.detector_model,
                                                      device=str(device))
    report["stages"] = _stage_dicts({"detect": timings[report["detectors"]["used"]]}, timings)
    report["memory"] = {"peak_rss_bytes": peak_rss_bytes()}
    report["elapsed_s"] = time.perf_counter() - t_start
    return report


def run_bench(opts: BenchOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement and return the report (a JSON-ready dict; see module docstring).

    ``progress`` receives a short line before each step.
    """
    import numpy as np
    import torch

    from wbcap.crop.bbox import crops_to_tensor
    from wbcap.detect.base import Detection
    from wbcap.errors import InputError
    from wbcap.export.render import render_backend, render_meshes
    from wbcap.io.video_reader import open_frames
    from wbcap.io.video_writer import VideoWriter
    from wbcap.model.device import resolve_device
    from wbcap.pipeline import normalize_precision

    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    precisions = tuple(dict.fromkeys(normalize_precision(p) for p in opts.precisions))
    if not precisions:
        raise InputError("--precision: name at least one precision")
    if opts.frames < 1:
        raise InputError(f"--frames {opts.frames}: must be >= 1")
    device = resolve_device(opts.device)
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    batch_sizes = tuple(sorted(set(opts.batch_sizes or defaults["batch_sizes"])))
    repeats = int(opts.repeats if opts.repeats is not None else defaults["repeats"])
    warmup = int(opts.warmup if opts.warmup is not None else defaults["warmup"])
    if repeats < 1 or warmup < 0 or min(batch_sizes) < 1:
        raise InputError("--repeats must be >= 1, --warmup >= 0 and batch sizes >= 1")
    opts = BenchOptions(**{**asdict(opts), "precisions": precisions, "batch_sizes": batch_sizes, "repeats": repeats,
                           "warmup": warmup})
    sync = _sync_fn(device)
    cuda = device.type == "cuda"

    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "versions": versions(),
        "device": device_info(device),
        "settings": {
            "precision": precisions[0],
            "precisions": list(precisions),
            "batch_sizes": list(batch_sizes),
            "repeats": repeats,
            "warmup": warmup,
            "frames": opts.frames,
            "frame_size": list(opts.frame_size),
            "matmul_size": opts.matmul_size,
            "statistic": "median",
        },
        "notes": [],
    }
    if opts.detect_only:
        report["settings"]["stages"] = ["detect"]
        return _run_detect_only(opts, device, report, say, t_start)
    with tempfile.TemporaryDirectory(prefix="wbcap_bench_") as tmp:
        work = Path(tmp)
        say(f"loading the model ({precisions[0]})")
        pipe, model, flops = build_pipeline(opts, device, work, precisions[0], flops=True)
        report["model"] = model
        regressor = pipe.regressor

        say("matmul ceiling")
        report["ceilings"] = {
            p: matmul_ceiling(device, p, opts.matmul_size, repeats=max(3, repeats), warmup=max(1, warmup))
            for p in ceiling_precisions(device, precisions)
        }
        report["flops"] = flops
        stages: dict[str, Timing] = {}

        # -- frames: encode (a synthetic clip doubles as the decode input), decode ------------
        frames, src, synthetic = _input_frames(opts, work, say)
        h, w = frames[0].shape[:2]
        report["input"] = {"video": None if synthetic else str(src), "synthetic": synthetic,
                           "width": w, "height": h, "frames": len(frames)}
        enc_path = work / "encode.mp4"

        def encode() -> None:
            with VideoWriter(enc_path, w, h, 30) as writer:
                for frame in frames:
                    writer.write(frame)

        say("encode")
        stages["encode"] = Timing(time_call(encode, repeats, min(warmup, 1)), len(frames), "frame",
                                  {"codec": "libx264", "size": [w, h]})
        if synthetic:
            enc_path.replace(src)

        def decode() -> int:
            return sum(1 for _ in open_frames(src, max_frames=opts.frames))

        say("decode")
        n_decoded = decode()
        stages["decode"] = Timing(time_call(decode, repeats, min(warmup, 1)), n_decoded, "frame", {"size": [w, h]})

        # -- detect (every available detector on the same frame), crop ----------------------
        image = frames[0]
        say("detect")
        detect_timings, found, report["detectors"] = bench_detectors(
            image, repeats, warmup, opts.detector_model, device=str(device))
        used = report["detectors"]["used"]
        stages["detect"] = detect_timings[used]
        dets = found[used]
        if not dets:
            report["notes"].append(f"{stages['detect'].extra['detector']} found nobody in the frame; "
                                   "the whole frame is used as the person box")
            dets = [Detection((0.0, 0.0, float(w), float(h)), 1.0)]
        say("crop")
        jobs = pipe.crop(image, dets, source="bench", strict=False)
        if not jobs:
            jobs = pipe.crop(image, [Detection((0.0, 0.0, float(w), float(h)), 1.0)], source="bench")
        stages["crop"] = Timing(time_call(lambda: pipe.crop(image, dets, "bench", strict=False), repeats, warmup),
                                len(jobs), "crop")

        # -- regressor at every precision and batch size ---------------------------------------
        patch = jobs[0].patch
        batches = []
        best: Timing | None = None
        outputs: dict[str, Any] = {}
        for prec in precisions:
            if prec != precisions[0]:
                say(f"loading the model ({prec})")
                del pipe, regressor
                pipe, _, _ = build_pipeline(opts, device, work, prec)
                regressor = pipe.regressor
            ceiling_name = CEILING_OF[prec] if CEILING_OF[prec] in report["ceilings"] else "fp32"
            with torch.inference_mode(), pipe.inference_context():
                out = regressor(crops_to_tensor([patch]).to(device).contiguous(memory_format=pipe.memory_format))
                outputs[prec] = {"vertices": out.vertices.float().cpu(),
                                 "boxes": torch.stack((out.lhand_bbox, out.rhand_bbox, out.face_bbox), 1).float().cpu()}
            prec_best: Timing | None = None
            for bs in batch_sizes:
                say(f"regressor, {prec}, batch {bs}")
                x = crops_to_tensor([patch] * bs).to(device).contiguous(memory_format=pipe.memory_format)
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)

                def forward(x=x, regressor=regressor, autocast=pipe.inference_context) -> None:
                    with torch.inference_mode(), autocast():
                        regressor(x)

                oom = (torch.cuda.OutOfMemoryError,) if cuda else ()
                # The ceiling again, right before and right after this row: on a shared machine the
                # available FLOP/s drift, and a ratio of measurements taken together cancels that.
                before = matmul_ceiling(device, ceiling_name, opts.matmul_size, repeats=max(3, repeats), warmup=1)
                try:
                    runs = time_call(forward, repeats, warmup, sync)
                except oom:
                    report["notes"].append(f"{prec}, batch size {bs}: out of CUDA memory; larger batch sizes skipped")
                    torch.cuda.empty_cache()
                    break
                after = matmul_ceiling(device, ceiling_name, opts.matmul_size, repeats=max(3, repeats), warmup=1)
                ceiling = {"flops_per_s": (before["flops_per_s"] + after["flops_per_s"]) / 2}
                t = Timing(runs, bs, "crop", {"batch_size": bs, "precision": prec})
                crops_per_s = bs / t.median_s
                achieved = crops_per_s * flops["per_crop"]
                row = {
                    "precision": prec,
                    "batch_size": bs,
                    **t.to_dict(),
                    "crops_per_s": crops_per_s,
                    "flops_per_s": achieved,
                    "ceiling_precision": ceiling_name,
                    "ceiling_flops_per_s": ceiling["flops_per_s"],
                    "ceiling_before_after_flops_per_s": [before["flops_per_s"], after["flops_per_s"]],
                    "ratio": achieved / ceiling["flops_per_s"],
                    "ratios": {p: achieved / c["flops_per_s"] for p, c in report["ceilings"].items()},
                }
                if cuda:
                    row["cuda_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
                batches.append(row)
                if prec_best is None or t.items / t.median_s > prec_best.items / prec_best.median_s:
                    prec_best = t
                del x
            if best is None:
                best = prec_best
        if best is None:
            raise InputError(f"batch size {batch_sizes[0]} does not fit in CUDA memory; pass smaller --batch-sizes")
        report["batches"] = batches
        stages["regressor"] = best
        if "exact" in outputs and len(outputs) > 1:
            ref = outputs["exact"]
            report["precision_error"] = {
                prec: {
                    "max_vertex_distance_m": float((o["vertices"] - ref["vertices"]).norm(dim=-1).max()),
                    "max_box_corner_distance_px": float(
                        (o["boxes"].reshape(-1, 2, 2) - ref["boxes"].reshape(-1, 2, 2)).norm(dim=-1).max()),
                    "input": "the first frame's first crop",
                }
                for prec, o in outputs.items() if prec != "exact"
            }

        # -- SMPL-X layer alone, at the largest batch size -------------------------------------
        bs = batches[-1]["batch_size"]
        say(f"SMPL-X, batch {bs}")
        with torch.inference_mode(), pipe.inference_context():
            params = regressor.net(crops_to_tensor([patch] * bs).to(device))

        def smplx() -> None:
            with torch.inference_mode(), pipe.inference_context():
                regressor.body_forward(params)

        stages["smplx"] = Timing(time_call(smplx, repeats, warmup, sync), bs, "crop", {"batch_size": bs})

        # -- render ------------------------------------------------------------------------
        say("render")
        person = pipe.regress(jobs[:1])[0]
        backend = render_backend()

        def render() -> np.ndarray:
            return render_meshes(image, [person.vertices], pipe.faces, person.focal, person.princpt)

        stages["render"] = Timing(time_call(render, repeats, warmup), 1, "frame",
                                  {"backend": backend, "size": [w, h], "meshes": 1})

    report["stages"] = _stage_dicts(stages, detect_timings)
    per_frame = sum(report["stages"][s]["per_item_s"] for s in STAGES if s != "smplx")
    report["estimate"] = {
        "frames_per_s": 1.0 / per_frame,
        "assumes": "one person per frame, stages run one after another, regressor at its best batch size "
                   "(SMPL-X is part of the regressor)",
    }
    report["memory"] = {"peak_rss_bytes": peak_rss_bytes()}
    if cuda:
        report["memory"]["cuda_max_memory_allocated_bytes"] = max(
            (b.get("cuda_max_memory_allocated_bytes", 0) for b in batches), default=0)
    report["elapsed_s"] = time.perf_counter() - t_start
    return report


# --------------------------------------------------------------------------------------------
# Output


def _si(value: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 10 else f"{seconds:.3g} s"


def detector_notes(stage: dict[str, Any]) -> str:
    """One line about a ``detect.*`` stage: people found, frame -> scanned size, runtime, threads."""
    parts = [f"{stage['detector']}: {stage['people']} found"]
    size, scanned = stage.get("size"), stage.get("input_size")
    if size and scanned:
        parts.append(f"{size[0]}x{size[1]} -> input {scanned[0]}x{scanned[1]}")
    elif size:
        parts.append(f"{size[0]}x{size[1]}")
    if "runtime" in stage:
        threads = stage.get("threads")
        parts.append(f"{stage['runtime']}" + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    return ", ".join(parts)


def detect_summary(report: dict[str, Any]) -> list[str]:
    """Lines comparing the detectors' cost per frame, and the missing-YOLOX line with its fix."""
    info = report.get("detectors")
    if not info:
        return []
    times = {name: report["stages"][name]["per_item_s"] for name in info["stages"] if name in report["stages"]}
    lines = []
    if len(times) > 1:
        hog = times.get("detect.hog")
        parts = []
        for name, t in times.items():
            text = f"{name[len('detect.'):]} {t * 1e3:.3g} ms/frame"
            if hog and name != "detect.hog" and t > 0:
                ratio = hog / t
                text += f" ({ratio:.3g}x {'faster' if ratio >= 1 else 'slower'} than hog)"
            parts.append(text)
        lines.append("detection per frame: " + " vs ".join(parts))
    if info.get("yolox_missing"):
        lines.append(info["yolox_missing"])
    return lines


def print_report(report: dict[str, Any], console=None) -> None:
    """Rich tables of ``report``: stages, batch sizes vs the ceiling, FLOP breakdown (those a
    ``--detect-only`` report lacks are left out)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 120)
    dev, ver, model = report["device"], report["versions"], report.get("model")
    settings = report["settings"]
    console.print(f"[bold]device[/]: {dev['name']} ({dev['spec']}, {dev['torch_threads']} torch threads)", highlight=False)
    console.print(
        "[bold]versions[/]: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v), highlight=False)
    if model is not None:
        console.print(f"[bold]model[/]: {describe_model(model)}", highlight=False)
    src = report["input"]
    what = (f"precisions {', '.join(settings['precisions'])}; " if model is not None else "detectors only; ")
    console.print(
        f"[bold]input[/]: {'synthetic clip' if src['synthetic'] else src['video']} {src['width']}x{src['height']}, "
        f"{src['frames']} frame{'s' if src['frames'] != 1 else ''}; {what}median of {settings['repeats']} "
        f"(+{settings['warmup']} warm-up)", highlight=False)

    detectors = report.get("detectors") or {}
    stages = Table(title="Stages", title_justify="left")
    for col in ("stage", "median / call", "items", "per item", "throughput", "notes"):
        stages.add_column(col, justify="left" if col in ("stage", "notes") else "right")
    for name, s in report["stages"].items():
        if name == "detect" and detectors.get("used") in report["stages"]:
            continue  # the same measurement as its detect.<name> row
        notes = []
        if "batch_size" in s:
            notes.append(f"batch {s['batch_size']}")
        if "detector" in s:
            notes.append(detector_notes(s))
            if name == detectors.get("used") and "crop" in report["stages"]:
                notes.append("feeds crop")
        for key in ("backend", "codec"):
            if key in s:
                notes.append(str(s[key]))
        if "size" in s and "detector" not in s:
            notes.append("x".join(str(v) for v in s["size"]))
        stages.add_row(name, _ms(s["median_s"]), str(s["items"]), _ms(s["per_item_s"]),
                       f"{s['throughput']:.4g} {s['throughput_unit']}", ", ".join(notes))
    console.print(stages)
    for line in detect_summary(report):
        console.print(line, highlight=False, markup=False)
    if "estimate" not in report:
        _print_tail(report, console)
        return
    console.print(f"estimated end to end: {report['estimate']['frames_per_s']:.3g} frames/s "
                  f"({report['estimate']['assumes']})", highlight=False)

    batches = Table(title=f"Regressor (network + SMPL-X, {report['flops']['per_crop'] / 1e9:.2f} GFLOP/crop)",
                    title_justify="left")
    cols = ["precision", "batch", "median / batch", "crops/s", "GFLOP/s", "% of ceiling"]
    cuda_mem = any("cuda_max_memory_allocated_bytes" in b for b in report["batches"])
    if cuda_mem:
        cols.append("CUDA peak")
    for col in cols:
        batches.add_column(col, justify="right")
    for b in report["batches"]:
        row = [b["precision"], str(b["batch_size"]), _ms(b["median_s"]), f"{b['crops_per_s']:.3g}",
               f"{b['flops_per_s'] / 1e9:.4g}", f"{100 * b['ratio']:.1f} % {b['ceiling_precision']}"]
        if cuda_mem:
            row.append(_si(b.get("cuda_max_memory_allocated_bytes", 0), "B"))
        batches.add_row(*row)
    console.print(batches)
    for prec, e in report.get("precision_error", {}).items():
        console.print(f"{prec} vs exact on {e['input']}: max vertex distance {1000 * e['max_vertex_distance_m']:.3g} mm, "
                      f"max box corner distance {e['max_box_corner_distance_px']:.3g} px", highlight=False)

    ceil = Table(title="Matmul ceiling", title_justify="left")
    for col in ("dtype", "size", "median", "GFLOP/s", "best achieved / this ceiling"):
        ceil.add_column(col, justify="right")
    for p, c in report["ceilings"].items():
        rows = [b for b in report["batches"] if b["ceiling_precision"] == p]
        best = max(rows, key=lambda b: b["flops_per_s"]) if rows else None
        ceil.add_row(p, f"{c['size']}", _ms(c["median_s"]), f"{c['flops_per_s'] / 1e9:.4g}",
                     f"{100 * best['ratios'][p]:.1f} % ({best['precision']}, batch {best['batch_size']})" if best else "-")
    console.print(ceil)

    flops = report["flops"]
    ft = Table(title="FLOPs per crop", title_justify="left")
    for col in ("module", "GFLOP", "share"):
        ft.add_column(col, justify="left" if col == "module" else "right")
    for k, v in flops["breakdown"].items():
        if k == "other" and abs(v) < 1:
            continue
        ft.add_row(k.replace("_", " "), f"{v / 1e9:.3f}", f"{100 * v / flops['per_crop']:.1f} %")
    ft.add_row("[bold]total[/]", f"{flops['per_crop'] / 1e9:.3f}", "100 %")
    console.print(ft)
    _print_tail(report, console)


def _print_tail(report: dict[str, Any], console) -> None:
    """Memory, elapsed time and notes."""
    mem = report["memory"]
    line = f"peak RSS {_si(mem['peak_rss_bytes'], 'B')}"
    if "cuda_max_memory_allocated_bytes" in mem:
        line += f", CUDA max allocated {_si(mem['cuda_max_memory_allocated_bytes'], 'B')}"
    console.print(line + f"; benchmark took {report['elapsed_s']:.1f} s", highlight=False)
    for note in report.get("notes", []):
        console.print(f"note: {note}", highlight=False)
