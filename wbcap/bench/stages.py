"""The benchmark run: the model (:meth:`wbcap.pipeline.Pipeline.from_config` with the synthetic
fallback), frames, and every stage timed (:func:`run_bench`; see :mod:`wbcap.bench`)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wbcap.bench.ceiling import (
    CEILING_OF,
    CeilingProbe,
    ceiling_precisions,
    count_flops,
    matmul_ceiling,
    paired_runs,
    row_ceiling,
)
from wbcap.bench.detect import bench_detectors, find_yolox_model
from wbcap.bench.options import CONFIGS, CPU_DEFAULTS, CUDA_DEFAULTS, REPORT_FORMAT, SMALL_DEPTHS, STAGES, BenchOptions
from wbcap.bench.timing import Timing, device_info, peak_rss_bytes, sync_fn, time_call
from wbcap.config import RESNET_WIDTH, ModelConfig
from wbcap.versions import library_versions


def bench_pipeline(opts: BenchOptions, device, precision, flops: bool = False, source=None):
    """(Pipeline, model description, FLOP count or None) for ``opts`` on ``device`` in
    ``precision``; see :class:`~wbcap.bench.options.BenchOptions`. Built by
    :meth:`Pipeline.from_config <wbcap.pipeline.Pipeline.from_config>` with the synthetic
    fallback (``opts.config``: random weights of that architecture, heads as drawn). With
    ``flops`` the FLOPs are counted (:func:`~wbcap.bench.ceiling.count_flops`) on the network
    before it is converted to its inference form. ``source``: the
    :class:`~wbcap.pipeline.ModelSource` of an earlier build, to load the same files again (and
    not warn about stand-ins twice)."""
    import dataclasses

    from wbcap.config import BodyModelConfig, ModelConfig, PipelineConfig
    from wbcap.errors import InputError
    from wbcap.pipeline import Pipeline

    if opts.config is not None and opts.checkpoint is not None:
        raise InputError(f"config {opts.config!r} (random weights) and checkpoint {opts.checkpoint} exclude each "
                         "other; pass one")
    if opts.config is not None and opts.config not in CONFIGS:
        raise InputError(f"config {opts.config!r}: use one of {', '.join(CONFIGS)}")
    cfg = PipelineConfig(
        model=ModelConfig(**SMALL_DEPTHS) if opts.config == "small" else ModelConfig(),
        # (a checkpoint named and missing is not stood in for: a named model file missing says it too)
        body=(BodyModelConfig.given(opts.body_models, opts.gender, opts.allow_pickle) if opts.checkpoint is None else
              BodyModelConfig.given_with_checkpoint(opts.body_models, opts.gender, opts.allow_pickle, opts.checkpoint)),
        checkpoint=opts.checkpoint, device=str(device), batch_size=max(opts.batch_sizes or (1,)), precision=precision,
    )
    random = opts.config is not None
    if source is not None:
        random = source.weights == "random"
        cfg = dataclasses.replace(cfg, checkpoint=None if source.checkpoint is None else str(source.checkpoint),
                                  body=dataclasses.replace(cfg.body, path=str(source.body_model)))
    t0 = time.perf_counter()
    # Random heads as drawn (not the demo's constant "upright" heads), so every output depends on
    # the image and the precision comparison measures something.
    pipe = Pipeline.from_config(cfg, weights="random" if random else "checkpoint", fallback="synthetic",
                                upright=False, optimize=False)
    net = pipe.regressor.net
    n_params = sum(p.numel() for p in net.parameters())
    t_count = time.perf_counter()
    counted = count_flops(pipe.regressor, device) if flops else None
    t0 += time.perf_counter() - t_count  # counting is not part of loading
    pipe.optimize()
    src = pipe.source
    desc: dict[str, Any] = dict(
        weights="checkpoint" if src.weights == "checkpoint" else "random",
        checkpoint=None if src.checkpoint is None else str(src.checkpoint),
        config_name=None if src.weights == "checkpoint" else (opts.config or "full"),
        body_model=str(src.body_model),
        body_model_synthetic=src.body_model_synthetic,
        config=net.config.to_dict(),
        depths=resnets_line(net.config),
        parameters=int(n_params),
        load_s=time.perf_counter() - t0,
    )
    return pipe, desc, counted


def resnets_line(config: ModelConfig) -> str:
    """The report's words for a :class:`~wbcap.config.ModelConfig`'s ResNets, e.g. ``"body R50, hand
    R50, face R18"``, with ``", width 16"`` for narrow ones (``backbone_width``)."""
    width = "" if config.backbone_width == RESNET_WIDTH else f", width {config.backbone_width}"
    return f"body R{config.backbone_depth}, hand R{config.hand_backbone_depth}, face R{config.face_backbone_depth}{width}"


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


def _time_regressor(opts: BenchOptions, device, held: list, source, patch, flops: dict, report: dict[str, Any],
                    say: Callable[[str], None], sync):
    """The regressor at every precision and batch size, the ceiling measured before the first
    timed call of a row and after each (:func:`~wbcap.bench.ceiling.paired_runs`).

    ``held``: a one-element list with the first precision's pipeline (the caller keeps no other
    reference); on return it holds the last precision's pipeline. Returns ``(batches, best,
    outputs)``: the report rows, the fastest timing of the first precision (None when nothing
    fit in memory) and each precision's output on the first crop (for the precision error).
    """
    import torch

    from wbcap.crop.bbox import crops_to_tensor
    from wbcap.model.precision import Precision

    precisions: tuple[Precision, ...] = opts.precisions
    cuda = device.type == "cuda"
    repeats, warmup, batch_sizes = opts.repeats, opts.warmup, opts.batch_sizes
    pipe = held.pop()
    regressor = pipe.regressor
    batches = []
    best: Timing | None = None
    outputs: dict[str, Any] = {}
    for prec in precisions:
        if prec != precisions[0]:
            say(f"loading the model ({prec})")
            del pipe, regressor
            pipe, _, _ = bench_pipeline(opts, device, prec, source=source)
            regressor = pipe.regressor
        ceiling_name = row_ceiling(prec.value, device, report["ceilings"])
        if ceiling_name != CEILING_OF[prec]:
            report["notes"].append(f"{prec}: rows against the {ceiling_name} ceiling, not {CEILING_OF[prec]} "
                                   + ("(this CPU has no bfloat16 instructions: fast runs float32, its ResNets and box "
                                      "network float32 or int8)" if prec == "fast" else "(not measured)"))
        strategy = getattr(regressor.net, "cpu_strategy", None)
        report.setdefault("strategies", {})[prec.value] = None if strategy is None else strategy.to_dict()
        if strategy is not None and "default" in strategy.source:
            report["notes"].append(f"{prec}: the CPU was busy with other processes when the inference strategy was to "
                                   "be measured; some parts ran in the default form (fused, chunks of 4)")
        with torch.inference_mode(), pipe.inference_context():
            out = regressor(crops_to_tensor([patch]).to(device).contiguous(memory_format=pipe.memory_format))
            outputs[prec.value] = {"vertices": out.vertices.float().cpu(),
                             "boxes": torch.stack((out.lhand_bbox, out.rhand_bbox, out.face_bbox), 1).float().cpu()}
        prec_best: Timing | None = None
        probe = CeilingProbe(device, ceiling_name, opts.matmul_size,
                             kernel=report["ceilings"].get(ceiling_name, {}).get("kernel"))
        if probe.size < opts.matmul_size:
            report["notes"].append(f"{prec}: its rows' {ceiling_name} ceiling measured at {probe.size}x{probe.size}, "
                                   f"not {opts.matmul_size}")
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
            # The ceiling is measured right before the first timed call and after every one: on a
            # shared machine the available FLOP/s drift, and a ratio of measurements taken
            # together cancels that (``ratio_paired``: the median of the per-call ratios).
            try:
                paired = paired_runs(forward, bs * flops["per_crop"], probe, repeats, warmup, sync)
            except oom:
                report["notes"].append(f"{prec}, batch size {bs}: out of CUDA memory; larger batch sizes skipped")
                torch.cuda.empty_cache()
                break
            runs, probes = paired["runs_s"], paired["ceilings_flops_per_s"]
            ceiling = (probes[0] + probes[-1]) / 2
            t = Timing(runs, bs, "crop", {"batch_size": bs, "precision": prec.value})
            crops_per_s = bs / t.median_s
            achieved = crops_per_s * flops["per_crop"]
            row = {
                "precision": prec.value,
                "batch_size": bs,
                **t.to_dict(),
                "crops_per_s": crops_per_s,
                "flops_per_s": achieved,
                "ceiling_precision": ceiling_name,
                "ceiling_size": probe.size,
                "ceiling_kernel": probe.kernel,
                "ceiling_flops_per_s": ceiling,
                "ceiling_before_after_flops_per_s": [probes[0], probes[-1]],
                "ceiling_probes_flops_per_s": probes,
                "ratio": achieved / ceiling,
                "ratio_paired": statistics.median(paired["ratios"]),
                "ratios_paired": paired["ratios"],
                "ratios": {p: achieved / c["flops_per_s"] for p, c in report["ceilings"].items()},
                "ratio_best": bs / min(runs) * flops["per_crop"] / max(probes),
                "strategy": None if strategy is None else strategy.summary(bs),
                "strategy_parts": None if strategy is None else strategy.describe(bs),
            }
            if cuda:
                row["cuda_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
            note = implausible_ratio_note(row)
            if note is not None:
                report["notes"].append(note)
            batches.append(row)
            if prec_best is None or t.items / t.median_s > prec_best.items / prec_best.median_s:
                prec_best = t
            del x
        if best is None:
            best = prec_best
    # Each other precision's speed-up over exact at the same batch size, in this run (rows timed
    # minutes apart on a machine whose speed drifts: compare the paired ratios too).
    add_speedups_over_exact(batches)
    held.append(pipe)
    return batches, best, outputs


#: A row of exact, bf16 or fp16 above this share of its own dtype's ceiling says the ceiling was
#: mismeasured (a small ``matmul_size``).
IMPLAUSIBLE_RATIO = 1.5


def implausible_ratio_note(row: dict[str, Any]) -> str | None:
    """The report's note for a regressor ``row`` (:func:`_time_regressor`'s) above
    :data:`IMPLAUSIBLE_RATIO` of a ceiling of its own dtype, else None: ``--matmul-size 64
    --warmup 0`` gave "30727 %" of the fp32 ceiling without a word. Exact, bf16 and fp16 compute
    in their ceiling's dtype (exact's Winograd layers reach ~1.05 of it); fast is left out, as it
    may run int8 convolutions at up to twice the fp32 or bf16 rate."""
    from wbcap.errors import setting

    prec, ceiling = row["precision"], row["ceiling_precision"]
    if prec == "fast" or ceiling != CEILING_OF[prec] or row["ratio_paired"] <= IMPLAUSIBLE_RATIO:
        return None
    size = row["ceiling_size"]
    return (f"{prec}, batch size {row['batch_size']}: {row['ratio_paired']:.0%} of the {ceiling} ceiling, more than "
            f"the device can do: its {size}x{size} matmul measured overheads, not the device's rate; measure it with "
            f"{setting('matmul_size')} 2048 (the default) or more")


def add_speedups_over_exact(batches: list[dict[str, Any]]) -> None:
    """Add to each row of a precision other than exact its speed-up over exact's row of the same
    batch size, if there is one: ``vs_exact``, crops/s against exact's (rows timed minutes apart
    on a machine whose speed drifts); and ``vs_exact_paired``, the same speed-up with that drift
    cancelled by the ceilings measured around each call: where both rows are against the same
    ceiling (dtype and size: on a CPU without bfloat16 instructions fast's rows are against fp32's,
    as exact's), the row's ``ratio_paired`` against exact's; where they are against two dtypes'
    ceilings of one size (fast's bf16 rows on a CPU with bfloat16), each row's ``ratio_paired``
    times the highest probe of its dtype's ceiling in the run (``ceiling_probes_flops_per_s`` of
    every row: the machine's rate when no other process held it, which a moment of load only
    lowers; the header's two ceilings, measured once, had fp32's in such a moment, at 107 against
    the rows' 228 GFLOP/s), with ``vs_exact_paired_via`` ``"highest probes <dtype>/<dtype>"``
    (a performance audit saw the unpaired speed-up swing from 0.54 to 13.9 on a busy Zen 4)."""
    best: dict[tuple[str, int], float] = {}
    for b in batches:
        key = (b["ceiling_precision"], b["ceiling_size"])
        best[key] = max([best.get(key, 0.0), *(b.get("ceiling_probes_flops_per_s") or ())])
    exact_rows = {b["batch_size"]: b for b in batches if b["precision"] == "exact"}
    for b in batches:
        ref = exact_rows.get(b["batch_size"])
        if b["precision"] == "exact" or ref is None:
            continue
        b["vs_exact"] = b["crops_per_s"] / ref["crops_per_s"]
        own, theirs = (b["ceiling_precision"], b["ceiling_size"]), (ref["ceiling_precision"], ref["ceiling_size"])
        if own == theirs:
            b["vs_exact_paired"] = b["ratio_paired"] / ref["ratio_paired"]
        elif own[1] == theirs[1] and best.get(own) and best.get(theirs):
            b["vs_exact_paired"] = (b["ratio_paired"] * best[own]) / (ref["ratio_paired"] * best[theirs])
            b["vs_exact_paired_via"] = f"highest probes {own[0]}/{theirs[0]}"


def bench_inputs(opts: BenchOptions) -> dict[str, Path | None]:
    """The files a bench with ``opts`` reads (how a message names each -> path, None where there
    is none), found as the bench finds them, also those no option names: the checkpoint (unless
    ``config``), the SMPL-X model (when found: a synthetic one stands in otherwise), the video,
    the YOLOX model (``detector_model``, else the installed one), with ``detect_only`` too. For
    refusing an output over one of them (a ``--json-out`` that named the checkpoint found through
    ``$WBCAP_WEIGHTS`` turned it into JSON; with ``--detect-only``, the checkpoint and SMPL-X
    model given were overwritten)."""
    from wbcap.body.model_files import find_body_model, resolve_gender
    from wbcap.errors import WbcapError, setting
    from wbcap.weights import find_checkpoint

    def found(find: Callable[[], Path | None]) -> Path | None:
        try:
            return find()
        except WbcapError:  # (nothing there: the bench says so itself, or stands something in)
            return None

    inputs: dict[str, Path | None] = {setting("video"): None if opts.video is None else Path(opts.video).expanduser()}
    yolox = setting("detector_model") if opts.detector_model is not None else "the installed YOLOX model"
    inputs[yolox] = found(lambda: find_yolox_model(opts.detector_model)[0])
    # (with --detect-only too: the network's files are not read then, but a --json-out over one
    # the command names or finds would still destroy it)
    if opts.config is None:
        checkpoint = setting("checkpoint") if opts.checkpoint is not None else "the checkpoint wbcap image uses"
        inputs[checkpoint] = found(lambda: find_checkpoint(opts.checkpoint))
    inputs["the SMPL-X model"] = found(lambda: find_body_model(resolve_gender(opts.gender, opts.body_models),
                                                               opts.body_models, opts.allow_pickle))
    return inputs


def _checked_options(opts: BenchOptions, device) -> tuple[BenchOptions, dict[str, Any]]:
    """``opts`` with the device's defaults filled in and checked, and the report's first keys.

    Raises:
        InputError: no precision, ``frames`` < 1, ``repeats`` < 1, ``warmup`` < 0 or a batch size < 1.
        CheckpointError: a ``$WBCAP_WEIGHTS`` that names nothing while weights are looked for
            there: the installed YOLOX (no ``detector_model``) or the checkpoint (no
            ``checkpoint`` nor ``config``, unless ``detect_only``). Refused now, as every command
            refuses it, not after minutes of timing nor by timing other weights.
    """
    from wbcap.errors import InputError
    from wbcap.model.precision import Precision
    from wbcap.weights import check_weights_env

    if opts.detector_model is None or (not opts.detect_only and opts.checkpoint is None and opts.config is None):
        check_weights_env()

    precisions = tuple(dict.fromkeys(Precision.parse(p) for p in opts.precisions))
    if not precisions:
        raise InputError("name at least one precision to benchmark")
    if opts.frames < 1:
        raise InputError(f"frames {opts.frames}: must be >= 1")
    defaults = CUDA_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    batch_sizes = tuple(sorted(set(opts.batch_sizes or defaults["batch_sizes"])))
    repeats = int(opts.repeats if opts.repeats is not None else defaults["repeats"])
    warmup = int(opts.warmup if opts.warmup is not None else defaults["warmup"])
    if repeats < 1 or warmup < 0 or min(batch_sizes) < 1:
        raise InputError("repeats must be >= 1, warm-up runs >= 0 and batch sizes >= 1")
    opts = BenchOptions(**{**asdict(opts), "precisions": precisions, "batch_sizes": batch_sizes, "repeats": repeats,
                           "warmup": warmup})

    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "versions": library_versions(),
        "device": device_info(device),
        "settings": {
            "precision": precisions[0].value,
            "precisions": [p.value for p in precisions],
            "batch_sizes": list(batch_sizes),
            "repeats": repeats,
            "warmup": warmup,
            "frames": opts.frames,
            "frame_size": None if opts.video is not None else list(opts.frame_size),  # (the video's: input)
            "matmul_size": opts.matmul_size,
            "statistic": "median",
        },
        "notes": [],
    }
    return opts, report


def _precision_error(outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each precision's largest vertex distance (m) and hand/face box corner distance (px) from
    ``exact`` on the same crop; ``outputs``: precision name -> ``{"vertices", "boxes"}`` tensors."""
    ref = outputs["exact"]
    return {
        prec: {
            "max_vertex_distance_m": float((o["vertices"] - ref["vertices"]).norm(dim=-1).max()),
            "max_box_corner_distance_px": float(
                (o["boxes"].reshape(-1, 2, 2) - ref["boxes"].reshape(-1, 2, 2)).norm(dim=-1).max()),
            "input": "the first frame's first crop",
        }
        for prec, o in outputs.items() if prec != "exact"
    }


def _time_encode_decode(opts: BenchOptions, work: Path, report: dict[str, Any], stages: dict[str, Timing],
                        say: Callable[[str], None]) -> list:
    """Time H.264 encoding and PyAV decoding of the input frames; fill ``report["input"]`` and
    ``stages["encode"]``, ``stages["decode"]``. Returns the frames, ``(H, W, 3)`` uint8 RGB each."""
    from wbcap.io.video_reader import open_frames
    from wbcap.io.video_writer import VideoWriter

    repeats, warmup = opts.repeats, opts.warmup
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
    return frames


def _time_smplx_and_render(opts: BenchOptions, device, pipe, patch, jobs, image, bs: int, stages: dict[str, Timing],
                           say: Callable[[str], None], sync) -> None:
    """Time the SMPL-X layer alone on ``bs`` crops and rendering one mesh over ``image``; fill
    ``stages["smplx"]`` and ``stages["render"]``."""
    import numpy as np
    import torch

    from wbcap.crop.bbox import crops_to_tensor
    from wbcap.export.render import render_backend, render_meshes

    repeats, warmup = opts.repeats, opts.warmup
    regressor = pipe.regressor
    h, w = image.shape[:2]
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


# Long (about 85 lines): the report's sections are measured one after another in the report's order;
# each step is a few lines with its own progress line, and splitting further would only pass the
# report dict around.
def run_bench(opts: BenchOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement and return the report (a JSON-ready dict; see module docstring).

    ``progress`` receives a short line before each step.
    """

    from wbcap.detect.base import Detection
    from wbcap.errors import InputError
    from wbcap.model.device import resolve_device

    say = progress or (lambda msg: None)
    t_start = time.perf_counter()
    device = resolve_device(opts.device)
    opts, report = _checked_options(opts, device)
    precisions, batch_sizes, repeats, warmup = opts.precisions, opts.batch_sizes, opts.repeats, opts.warmup
    sync = sync_fn(device)
    cuda = device.type == "cuda"
    if opts.detect_only:
        report["settings"]["stages"] = ["detect"]
        return _run_detect_only(opts, device, report, say, t_start)
    with tempfile.TemporaryDirectory(prefix="wbcap_bench_") as tmp:
        work = Path(tmp)
        say(f"loading the model ({precisions[0]})")
        pipe, model, flops = bench_pipeline(opts, device, precisions[0], flops=True)
        source = pipe.source  # the same files (or stand-ins) for every precision
        report["model"] = model
        regressor = pipe.regressor

        say("matmul ceiling")
        report["ceilings"] = {
            p: matmul_ceiling(device, p, opts.matmul_size, repeats=max(3, repeats), warmup=max(1, warmup))
            for p in ceiling_precisions(device, precisions)
        }
        for p, c in report["ceilings"].items():
            if c["size"] < opts.matmul_size:
                report["notes"].append(f"{p} matmul ceiling measured at {c['size']}x{c['size']}, not "
                                       f"{opts.matmul_size}: a {opts.matmul_size} matmul would take over 0.4 s here "
                                       "(no fast instructions for this dtype here, or other processes held the CPU when "
                                       "it was sized)")
        report["flops"] = flops
        stages: dict[str, Timing] = {}

        # -- frames: encode (a synthetic clip doubles as the decode input), decode ------------
        frames = _time_encode_decode(opts, work, report, stages, say)
        h, w = frames[0].shape[:2]

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
        # The list hands over the only reference, so each precision's network is freed before the
        # next one is built (peak memory as measured); it holds the last pipeline on return.
        held = [pipe]
        del pipe, regressor
        batches, best, outputs = _time_regressor(opts, device, held, source, patch, flops, report, say, sync)
        pipe = held.pop()
        if best is None:
            raise InputError(f"batch size {batch_sizes[0]} does not fit in CUDA memory; use smaller batch sizes")
        report["batches"] = batches
        stages["regressor"] = best
        if "exact" in outputs and len(outputs) > 1:
            report["precision_error"] = _precision_error(outputs)

        # -- SMPL-X layer alone at the largest batch size, render -----------------------------
        _time_smplx_and_render(opts, device, pipe, patch, jobs, image, batches[-1]["batch_size"], stages, say, sync)

    report["stages"] = _stage_dicts(stages, detect_timings)
    per_frame = sum(report["stages"][s]["per_item_s"] for s in STAGES if s != "smplx")
    report["estimate"] = {
        "frames_per_s": 1.0 / per_frame,
        "assumes": "one person per frame, stages run one after another, regressor at its best batch size "
                   "(SMPL-X is part of the regressor)",
    }
    report["memory"] = {"peak_rss_bytes": peak_rss_bytes()}
    from wbcap.huge_pages import huge_pages_state

    report["device"]["huge_pages"] = huge_pages_state()[0]  # (as the rows ran: the strategy may have turned them off)
    if cuda:
        report["memory"]["cuda_max_memory_allocated_bytes"] = max(
            (b.get("cuda_max_memory_allocated_bytes", 0) for b in batches), default=0)
    report["elapsed_s"] = time.perf_counter() - t_start
    return report
