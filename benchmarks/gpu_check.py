"""GPU check: the regressor eager vs CUDA-graphed, against the matmul ceilings, and whether
``wbcap run --no-render`` keeps up with video decoding. Prints one JSON object.

    python benchmarks/gpu_check.py [--config full|small] [--batch-sizes 1,8,32,64,128]
        [--precisions exact,fast] [--repeats 10] [--warmup 3] [--matmul-size 8192]
        [--video-frames 300] [--video-size 1280x720] [--people 4] [--compile]
        [--profile 128] [--no-video] [--compare-cudnn-fusion] [--cudnn-benchmark] [--deadline 420]
        [--json out.json]

On CUDA, for each precision mode and batch size: crops/s of the fused regressor (random weights
of ``--config``, the synthetic SMPL-X model, crops of random pixels) run eagerly and replayed from
a CUDA graph (:class:`wbcap.model.cuda_graph.CudaGraphRunner`), the achieved FLOP/s as a ratio to
the measured bf16 (and fp32) dense matmul ceilings (:func:`wbcap.bench.ceiling.matmul_ceiling`,
measured before and after), with ``--compare-cudnn-fusion`` also graphed with cuDNN's fused
convolution + (add +) ReLU (:func:`wbcap.model.fused.set_cudnn_fusion`: how many ran so, the
largest difference), the first call's capture time, the largest difference between the
graphed and the eager outputs (vertices in metres; every output), also for a batch one smaller
than the captured size (padded rows), and whether the eager forward synchronises with the host
(``torch.cuda.set_sync_debug_mode("error")``). ``--compile`` adds ``torch.compile(mode=
"reduce-overhead")`` at the largest batch size in the last precision, compile time included.

Then a synthetic clip (``--video-frames`` frames of ``--video-size``, ``--people`` figures per
frame, H.264) is decoded alone (frames/s) and run through ``wbcap run``'s code
(:func:`wbcap.video_app.run_video`, no render, boxes given: the network and the decoder are what
is timed) eagerly and with the network graphed; ``decode_bound`` is the run's frames/s over
the decoder's alone.

Without CUDA (or with ``--device cpu``) it runs the same code with no graphs, so the script can
be checked anywhere: use ``--config small --batch-sizes 1,2 --repeats 1 --video-frames 8``.
Sections past ``--deadline`` seconds are skipped (and said so); the JSON is also written to
``--json`` after every section, so a run cut short still leaves its numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


def _parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def _max_diff(a: Any, b: Any) -> dict[str, float]:
    """Largest vertex distance (m) and largest absolute difference over every output tensor."""
    from wbcap.model.cuda_graph import flatten_tensors

    ta, _ = flatten_tensors(a)
    tb, _ = flatten_tensors(b)
    worst = 0.0
    for x, y in zip(ta, tb):
        if x.shape != y.shape:
            return {"max_vertex_distance_m": float("inf"), "max_abs_difference": float("inf"), "shape_mismatch": 1.0}
        if x.numel():
            worst = max(worst, float((x.float() - y.float()).abs().max()))
    out = {"max_abs_difference": worst}
    if hasattr(a, "vertices"):
        out["max_vertex_distance_m"] = float((a.vertices.float() - b.vertices.float()).norm(dim=-1).max())
    return out


def _sync_check(regressor, x, context) -> str:
    """``"none"`` when the eager forward makes no host synchronisation, else the error."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.inference_mode(), context():
            regressor(x)
        return "none"
    except RuntimeError as exc:
        return f"synchronises: {str(exc).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()


class Report:
    """The JSON being built, written to ``path`` after every section."""

    def __init__(self, path: str | None, deadline_s: float) -> None:
        self.data: dict[str, Any] = {"skipped": [], "errors": []}
        self.path = Path(path) if path else None
        self.t0 = time.perf_counter()
        self.deadline_s = deadline_s

    def time_left(self) -> float:
        return self.deadline_s - (time.perf_counter() - self.t0)

    def save(self) -> None:
        self.data["elapsed_s"] = time.perf_counter() - self.t0
        if self.path is not None:
            self.path.write_text(json.dumps(self.data, indent=1, default=str))

    @contextlib.contextmanager
    def section(self, name: str, needs_s: float = 0.0):
        """Run a section unless the deadline is near; an exception is recorded, not raised."""
        if self.time_left() < needs_s:
            self.data["skipped"].append(f"{name}: {self.time_left():.0f} s left of the deadline")
            yield False
            return
        t = time.perf_counter()
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {name}", file=sys.stderr, flush=True)
        try:
            yield True
        except Exception as exc:  # keep going: later sections still report
            self.data["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            self.data.setdefault("section_s", {})[name] = time.perf_counter() - t
            self.save()


def _ceilings(device, size: int, repeats: int) -> dict[str, float]:
    from wbcap.bench.ceiling import matmul_ceiling

    names = ("bf16", "fp32", "tf32") if device.type == "cuda" else ("bf16", "fp32")
    return {p: matmul_ceiling(device, p, size, repeats=repeats, warmup=2)["flops_per_s"] for p in names}


def _time_regressor(args, device, report: Report, prec, first: bool) -> Any:
    """One precision: every batch size eager and graphed. Returns the pipeline (for the video)."""
    import torch

    from wbcap.bench.options import BenchOptions
    from wbcap.bench.stages import bench_pipeline
    from wbcap.bench.timing import sync_fn, time_call
    from wbcap.model.cuda_graph import CudaGraphRunner
    from wbcap.model.fused import FusedConv, set_cudnn_fusion

    cuda = device.type == "cuda"
    sync = sync_fn(device)
    opts = BenchOptions(config=args.config, device=str(device), batch_sizes=args.batch_sizes)
    pipe, model, flops = bench_pipeline(opts, device, prec, flops=first)
    if first:
        report.data["model"] = {k: model[k] for k in ("depths", "parameters", "load_s", "body_model_synthetic")}
        report.data["flops_per_crop"] = flops["per_crop"]
    per_crop = report.data["flops_per_crop"]
    regressor, ctx = pipe.regressor, pipe.inference_context
    h, w = regressor.config.input_img_shape
    g = torch.Generator().manual_seed(0)
    crops = torch.rand(max(args.batch_sizes), 3, h, w, generator=g).to(device).contiguous(memory_format=pipe.memory_format)
    if cuda:
        report.data.setdefault("host_syncs", {})[prec.value] = _sync_check(regressor, crops[:2], ctx)
    runner = CudaGraphRunner(regressor, args.batch_sizes, ctx, name=f"the regressor ({prec})")
    ceilings = report.data["ceilings"]
    rows = report.data.setdefault("rows", [])
    for bs in args.batch_sizes:
        x = crops[:bs]
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

        def eager(x=x) -> Any:
            with torch.inference_mode(), ctx():
                return regressor(x)

        row: dict[str, Any] = {"precision": prec.value, "batch_size": bs}
        oom = (torch.cuda.OutOfMemoryError,) if cuda else ()
        try:
            runs = time_call(eager, args.repeats, args.warmup, sync)
        except oom:
            report.data["errors"].append(f"{prec} batch {bs}: out of CUDA memory")
            break
        row["eager_median_s"] = statistics.median(runs)
        row["eager_crops_per_s"] = bs / row["eager_median_s"]
        if cuda:
            t = time.perf_counter()
            runner(x)
            sync()
            row["capture_s"] = time.perf_counter() - t
            row["graphed"] = not runner.eager
            gruns = time_call(lambda x=x: runner(x), args.repeats, args.warmup, sync)
            row["graph_median_s"] = statistics.median(gruns)
            row["graph_crops_per_s"] = bs / row["graph_median_s"]
            row["speedup"] = row["eager_median_s"] / row["graph_median_s"]
            row["graph_vs_eager"] = _max_diff(runner(x), eager())
            row["eager_vs_eager"] = _max_diff(eager(), eager())  # run-to-run determinism of eager itself
            if bs > 1:  # bs - 1 crops: padded to bs in the graph, eager at bs - 1
                row["padded_vs_eager"] = _max_diff(runner(x[: bs - 1]), eager(x[: bs - 1]))
            row["cuda_max_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
            if args.compare_cudnn_fusion:  # the same network graphed with cuDNN's fused calls
                want = runner(x)
                set_cudnn_fusion(regressor, True)
                try:
                    fused_runner = CudaGraphRunner(regressor, [bs], ctx, name=f"the cuDNN-fused regressor ({prec})")
                    fused_runner(x)
                    fruns = time_call(lambda x=x, f=fused_runner: f(x), args.repeats, args.warmup, sync)
                    row["graph_fused_median_s"] = statistics.median(fruns)
                    row["graph_fused_crops_per_s"] = bs / row["graph_fused_median_s"]
                    row["cudnn_fusion_speedup"] = row["graph_median_s"] / row["graph_fused_median_s"]
                    row["fused_vs_unfused"] = _max_diff(fused_runner(x), want)
                    row["graph_fused_graphed"] = not fused_runner.eager  # (else eager-fused vs graphed-unfused)
                    fused = [m.cudnn_fused for m in regressor.modules()
                             if isinstance(m, FusedConv) and m.relu and not m.transposed]
                    row["cudnn_fused_convs"] = {"fused": fused.count(True), "unfused": fused.count(False),
                                                "untried": fused.count(None)}
                    del fused_runner
                finally:
                    set_cudnn_fusion(regressor, False)
        best = max(row.get("graph_crops_per_s", 0.0), row["eager_crops_per_s"])
        for name in ("eager", "graph", "graph_fused"):
            if f"{name}_crops_per_s" in row:
                achieved = row[f"{name}_crops_per_s"] * per_crop
                row[f"{name}_flops_per_s"] = achieved
                row[f"{name}_ratio"] = {p: achieved / c for p, c in ceilings.items()}
        row["best_crops_per_s"] = best
        rows.append(row)
        report.save()
        print(f"  {prec} batch {bs}: eager {row['eager_crops_per_s']:.1f} crops/s"
              + (f", graphed {row['graph_crops_per_s']:.1f} crops/s" if "graph_crops_per_s" in row else ""),
              file=sys.stderr, flush=True)
    report.data.setdefault("captured", {})[prec.value] = list(runner.captured)
    if cuda and args.profile:
        report.data.setdefault("profile", {})[prec.value] = _profile(regressor, ctx, crops[: args.profile])
    return pipe


def _kernel_group(name: str) -> str:
    n = name.lower()
    if "roi" in n:
        return "roi_align"
    if any(k in n for k in ("conv", "cudnn", "xmma", "implicit", "wgrad", "dgrad", "fprop", "nhwc")):
        return "convolution"
    if any(k in n for k in ("gemm", "cublas", "cutlass", "sm90_", "matmul")):
        return "gemm"
    return "other"


def _profile(regressor, context, x) -> dict[str, Any]:
    """CUDA kernel time of one eager forward on ``x``, by group and the top kernels (ms)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), context():
        regressor(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            regressor(x)
            torch.cuda.synchronize()
        wall = time.perf_counter() - t
    kernels: dict[str, list[float]] = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            k = kernels.setdefault(e.name, [0.0, 0])
            k[0] += e.device_time_total / 1e3 if hasattr(e, "device_time_total") else e.cuda_time_total / 1e3
            k[1] += 1
    groups: dict[str, float] = {}
    for name, (ms, _) in kernels.items():
        groups[_kernel_group(name)] = groups.get(_kernel_group(name), 0.0) + ms
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:25]
    return {"batch_size": int(x.shape[0]), "wall_ms_profiled": wall * 1e3, "kernel_ms": sum(groups.values()),
            "launches": int(sum(c for _, c in kernels.values())), "groups_ms": groups,
            "top": [{"ms": round(ms, 3), "n": n, "name": name[:140]} for name, (ms, n) in top]}


def _compile_check(args, device, report: Report, pipe) -> None:
    import torch

    from wbcap.bench.timing import sync_fn, time_call

    sync = sync_fn(device)
    regressor, ctx = pipe.regressor, pipe.inference_context
    bs = max(args.batch_sizes)
    h, w = regressor.config.input_img_shape
    x = torch.rand(bs, 3, h, w, device=device).contiguous(memory_format=pipe.memory_format)
    compiled = torch.compile(regressor, mode="reduce-overhead")

    def call() -> Any:
        with torch.inference_mode(), ctx():
            return compiled(x)

    t = time.perf_counter()
    call()
    call()
    sync()
    compile_s = time.perf_counter() - t
    runs = time_call(call, args.repeats, args.warmup, sync)
    med = statistics.median(runs)
    with torch.inference_mode(), ctx():
        ref = regressor(x)
    report.data["compile"] = {"precision": str(pipe.precision), "batch_size": bs, "compile_s": compile_s,
                              "median_s": med, "crops_per_s": bs / med, "vs_eager": _max_diff(call(), ref)}


def _video_check(args, device, report: Report, pipe, work: Path) -> None:
    """Decode alone vs ``run_video`` (no render, boxes given), eager and graphed."""
    from wbcap.export.animation import AnimationExport
    from wbcap.io.video_reader import open_frames
    from wbcap.io.video_writer import VideoWriter
    from wbcap.testing.videos import people_frames
    from wbcap.video_app import VideoJob, run_video

    w, h = args.video_size
    video = work / "synthetic.mp4"
    t = time.perf_counter()
    with VideoWriter(video, w, h, 30) as writer:
        for frame in people_frames(args.video_frames, (w, h), args.people):
            writer.write(frame)
    info: dict[str, Any] = {"frames": args.video_frames, "size": [w, h], "people_per_frame": args.people,
                            "encode_s": time.perf_counter() - t, "precision": str(pipe.precision),
                            "batch_size": pipe.batch_size}
    slot = w // args.people
    boxes = [[i * slot + slot * 0.15, h * 0.05, slot * 0.7, h * 0.9] for i in range(args.people)]
    box_file = work / "boxes.json"
    box_file.write_text(json.dumps({str(i): boxes for i in range(args.video_frames)}))

    t = time.perf_counter()
    n = sum(1 for _ in open_frames(video))
    info["decode_alone_s"] = time.perf_counter() - t
    info["decode_alone_fps"] = n / info["decode_alone_s"]
    body = pipe.job_config()  # (the last precision's pipeline: its job must say so)

    def one_run(tag: str) -> dict[str, Any]:
        job = VideoJob(source=str(video), out=str(work / f"out_{tag}"), pipeline=body, detector=f"boxes:{box_file}",
                       render=False, overwrite=True, export=AnimationExport(formats=("npz",)))
        t = time.perf_counter()
        result = run_video(job, pipeline=pipe)
        wall = time.perf_counter() - t
        return {"wall_s": wall, "fps": result.frames / wall, "person_frames": result.person_frames,
                "timings_s": result.timings, "decode_bound": (result.frames / wall) / info["decode_alone_fps"]}

    pipe.cuda_graphs = False
    info["eager"] = one_run("eager")
    report.save()
    if device.type == "cuda":
        pipe.cuda_graphs = True  # what wbcap run does on CUDA (Pipeline._forward)
        info["graphed"] = one_run("graphed")
        runner = pipe._graphed.get("net")
        info["graphed"]["captured"] = list(runner.captured) if runner is not None else None
    report.data["video"] = info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--config", default=None, choices=["full", "small"], help="default: full on CUDA, small on CPU")
    ap.add_argument("--batch-sizes", default=None, help="default: 1,8,32,64,128 on CUDA, 1,2 on CPU")
    ap.add_argument("--precisions", default="exact,fast")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--matmul-size", type=int, default=None, help="default: 8192 on CUDA, 1024 on CPU")
    ap.add_argument("--video-frames", type=int, default=300)
    ap.add_argument("--video-size", type=_parse_size, default=(1280, 720))
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--video-batch-size", type=int, default=32)
    ap.add_argument("--profile", type=int, default=0, help="profile one eager forward at this batch size (CUDA)")
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(mode='reduce-overhead')")
    ap.add_argument("--compare-cudnn-fusion", action="store_true",
                    help="also time each batch size graphed with cuDNN's fused convolution + ReLU calls "
                         "(wbcap.model.fused.set_cudnn_fusion; off by default)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="torch.backends.cudnn.benchmark = True (cuDNN times its kernels per shape)")
    ap.add_argument("--deadline", type=float, default=420.0, help="skip sections past this many seconds")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from wbcap.bench.options import parse_batch_sizes, parse_precisions
    from wbcap.bench.timing import device_info
    from wbcap.model.device import resolve_device
    from wbcap.versions import library_versions

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    args.config = args.config or ("full" if cuda else "small")
    args.batch_sizes = parse_batch_sizes(args.batch_sizes or ("1,8,32,64,128" if cuda else "1,2"))
    precisions = parse_precisions(args.precisions)
    matmul_size = args.matmul_size or (8192 if cuda else 1024)
    report = Report(args.json, args.deadline)
    report.data.update(device=device_info(device), settings={
        "config": args.config, "batch_sizes": list(args.batch_sizes), "precisions": [p.value for p in precisions],
        "repeats": args.repeats, "warmup": args.warmup, "matmul_size": matmul_size, "statistic": "median",
        "cudnn_benchmark": args.cudnn_benchmark, "compare_cudnn_fusion": args.compare_cudnn_fusion})
    with contextlib.suppress(Exception):
        report.data["versions"] = library_versions()
    report.data["versions_torch"] = torch.__version__
    with report.section("ceilings") as ok:
        if ok:
            report.data["ceilings"] = _ceilings(device, matmul_size, max(3, args.repeats))
    pipe = None
    for i, prec in enumerate(precisions):
        with report.section(f"regressor {prec}", needs_s=30) as ok:
            if ok:
                del pipe
                if cuda:
                    torch.cuda.empty_cache()
                pipe = None
                pipe = _time_regressor(args, device, report, prec, first=i == 0)
    with report.section("ceilings after", needs_s=10) as ok:
        if ok:
            report.data["ceilings_after"] = _ceilings(device, matmul_size, max(3, args.repeats))
    if pipe is not None:
        pipe.batch_size = args.video_batch_size
        with tempfile.TemporaryDirectory(prefix="wbcap_gpu_check_") as tmp, report.section("video", needs_s=60) as ok:
            if ok and not args.no_video:
                _video_check(args, device, report, pipe, Path(tmp))
        if args.compile:
            with report.section("torch.compile", needs_s=150) as ok:
                if ok:
                    _compile_check(args, device, report, pipe)
    report.save()
    print(json.dumps(report.data, default=str))


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()
