"""Video pipeline benchmark: frames/s per stage and memory, for a clip and the same clip x4.

    python benchmarks/video_pipeline.py [--video ../shared/media/vtest.avi] [--frames 200]
        [--repeat 4] [--full-size] [--precision exact|fast] [--batch-size 16] [--render]
        [--device cpu] [--json out.json]

Each run is a separate process (so its peak RSS is its own): first the first ``--frames``
frames of the video, then a clip made of those frames repeated ``--repeat`` times. Memory
columns: ``start`` = peak RSS once the network and SMPL-X are loaded (and converted to their
inference form), ``run`` = the largest RSS sampled (every 0.1 s) during the run, ``peak`` = the
process's peak RSS. The run column must not grow with the length of the video. Uses the real SMPL-X model and checkpoint when
``wbcap doctor`` finds them; otherwise a synthetic body model and random weights (the same
arithmetic; ``--full-size`` for the released architecture, default all-ResNet-18 on CPU so the
run takes minutes, not an hour).

Each stage's share of the wall time is printed (``render_decode``, ``render`` and ``encode`` are
the busy times of render.mp4's three overlapped threads; ``rendering`` is that whole stage's
wall time, the share the README states), and the network's crops/s in the run (person
frames / the ``regress`` stage's seconds) against ``wbcap bench``'s regressor rate at the same
batch size measured in the same process right before and right after the run (the call made
before the run also packs the batch size's weights, which the run would otherwise do in its
first batch).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_repeated_clip(video: Path, frames: int, repeat: int, dest: Path) -> Path:
    """The first ``frames`` frames of ``video`` written ``repeat`` times (H.264)."""
    from wbcap.io.video_reader import open_frames
    from wbcap.io.video_writer import VideoWriter

    src = open_frames(str(video), max_frames=frames)
    images = [f.image for f in src]
    with VideoWriter(dest, src.info.width, src.info.height, src.info.fps_fraction) as w:
        for _ in range(repeat):
            for img in images:
                w.write(img)
    return dest


def current_rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RSSSampler:
    """Samples the current RSS every ``period`` seconds in a thread; ``max_mb`` is the largest."""

    def __init__(self, period: float = 0.1) -> None:
        self.period, self.max_mb, self.samples = period, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.max_mb = max(self.max_mb, current_rss_mb())
            self.samples += 1
            self._stop.wait(self.period)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def child(args: argparse.Namespace) -> None:
    """Run one pipeline in this process and print a JSON line of measurements."""
    import torch

    from wbcap.detect.thread import overlaps_network
    from wbcap.model.strategy import cpu_model
    from wbcap.pipeline import Pipeline
    from wbcap.video_app import run_video

    t0 = time.perf_counter()
    # The real SMPL-X model and checkpoint when installed, else the synthetic model and random weights.
    pipe = Pipeline.from_config(pipeline_config(args), fallback="synthetic", upright=True)
    dev = pipe.device
    real_body, real_net = not pipe.source.body_model_synthetic, pipe.source.weights == "checkpoint"
    config = pipe.regressor.net.config
    startup = time.perf_counter() - t0
    start_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    job = video_job(args, pipe.job_config())
    # The bench's rate right before and right after the run: on a shared machine the speed of
    # the same call can change by 2x within a minute, so the run is compared with both.
    bench_before = bench_rate(pipe, args.video, args.batch_size)
    t1 = time.perf_counter()
    with RSSSampler() as sampler:
        result = run_video(job, pipeline=pipe)
    wall = time.perf_counter() - t1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bench_after = bench_rate(pipe, args.video, args.batch_size)
    print(json.dumps({
        "frames": result.frames, "person_frames": result.person_frames, "tracks": len(result.tracks),
        "wall_s": wall, "startup_s": startup, "fps": result.frames / wall, "peak_rss_mb": peak_mb,
        "start_rss_mb": start_mb, "run_rss_mb": sampler.max_mb, "rss_samples": sampler.samples,
        "batch_size": args.batch_size, "precision": args.precision,
        "timings_s": result.timings, "real_body_model": real_body, "real_checkpoint": real_net,
        "checkpoint": None if pipe.source.checkpoint is None else str(pipe.source.checkpoint),
        "body_model": str(pipe.source.body_model), "cpu": cpu_model() if dev.type == "cpu" else None,
        "architecture": config.backbone_depth, "device": str(dev), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "bench_crops_per_s": [bench_before, bench_after],
        "detector": args.detector, "overlapped": overlaps_network(dev),
    }))


def bench_rate(pipe, video: str, batch_size: int) -> float:
    """``wbcap bench``'s regressor stage at ``batch_size`` in this process (before and after the
    run): crops/s of the network on a device tensor of ``batch_size`` crops of the video's first
    frame (median of 5 after 1 warm-up)."""
    import statistics

    import torch

    from wbcap.bench.timing import sync_fn, time_call
    from wbcap.crop.bbox import crops_to_tensor
    from wbcap.detect.base import Detection
    from wbcap.io.video_reader import open_frames

    image = next(iter(open_frames(video, max_frames=1))).image
    h, w = image.shape[:2]
    patch = pipe.crop(image, [Detection((w * 0.3, h * 0.1, w * 0.2, h * 0.8), 1.0)])[0].patch
    x = crops_to_tensor([patch] * batch_size).to(pipe.device).contiguous(memory_format=pipe.memory_format)

    def call():
        with torch.inference_mode(), pipe.inference_context():
            pipe.regressor(x)

    times = time_call(call, repeats=5, warmup=1, sync=sync_fn(pipe.device))
    return batch_size / statistics.median(times)


def pipeline_config(args: argparse.Namespace):
    """The ``PipelineConfig`` a child builds its pipeline from (``--full-size``: the released
    ResNet-50s, else ResNet-18s; ``--device``, ``--batch-size``, ``--precision``)."""
    from wbcap.config import ModelConfig, PipelineConfig

    small = {} if args.full_size else dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
    return PipelineConfig(model=ModelConfig(**small), device=args.device, batch_size=args.batch_size,
                          precision=args.precision)


def video_job(args: argparse.Namespace, settings):
    """The ``VideoJob`` a child runs: the clip of ``args`` with the pipeline's ``settings`` (its
    :meth:`~wbcap.pipeline.Pipeline.job_config`: the job of a fast pipeline must say fast) (kept
    apart so that the tests build it: jobs the library refuses broke this script twice)."""
    from wbcap.video_app import VideoJob

    return VideoJob(
        source=args.video, out=args.out, pipeline=settings,
        max_frames=args.frames, detector=args.detector, max_people=args.max_people,
        render=args.render, overwrite=True,
    )


def parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(ROOT.parent / "shared" / "media" / "vtest.avi"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="exact", choices=["exact", "fast", "bf16", "fp16"])
    yolox = ROOT.parent / "shared" / "models" / "yolox_nano.onnx"
    ap.add_argument("--detector", default=f"yolox:{yolox}" if yolox.is_file() else "hog",
                    help="default: YOLOX-nano from ../shared/models/yolox_nano.onnx when there, else HOG")
    ap.add_argument("--max-people", type=int, default=3)
    ap.add_argument("--full-size", action="store_true")
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.child:
        child(args)
        return
    if not Path(args.video).is_file():
        sys.exit(f"error: {args.video} not found; pass --video")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(f"first {args.frames} frames", args.video, args.frames)]
        if args.repeat > 1:
            rep = make_repeated_clip(Path(args.video), args.frames, args.repeat, Path(tmp) / "repeated.mp4")
            clips.append((f"same clip x{args.repeat}", str(rep), args.frames * args.repeat))
        for name, video, n in clips:
            cmd = [sys.executable, __file__, "--child", "--video", video, "--frames", str(n), "--out", str(Path(tmp) / "out"),
                   "--device", args.device, "--batch-size", str(args.batch_size), "--detector", args.detector,
                   "--max-people", str(args.max_people), "--precision", args.precision] + (
                ["--full-size"] if args.full_size else []) + (
                ["--render"] if args.render else [])
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"error: benchmark child failed:\n{res.stderr[-2000:]}")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["clip"] = name
            rows.append(row)
    print(f"{'clip':22s} {'frames':>6s} {'fps':>6s} {'RSS MB: start':>13s} {'run':>5s} {'peak':>5s}  stage seconds (frames/s)")
    for r in rows:
        stages = "  ".join(f"{k} {v:.1f}s ({r['frames'] / v:.1f}/s)" for k, v in r["timings_s"].items() if v > 0)
        print(f"{r['clip']:22s} {r['frames']:6d} {r['fps']:6.2f} {r['start_rss_mb']:13.0f} {r['run_rss_mb']:5.0f} "
              f"{r['peak_rss_mb']:5.0f}  {stages}")
    print("\nshare of the wall time per stage (decode and detect run beside the network when 'overlapped'; "
          "render_decode, render and encode beside each other, within 'rendering'):")
    for r in rows:
        shares = "  ".join(f"{k} {100 * v / r['wall_s']:.0f}%" for k, v in r["timings_s"].items() if v > 0)
        net = r["person_frames"] / r["timings_s"]["regress"] if r["timings_s"].get("regress") else float("nan")
        print(f"{r['clip']:22s} {shares}")
        before, after = r["bench_crops_per_s"]
        print(f"{'':22s} network {net:.2f} crops/s in the run = {100 * net / before:.0f}% / {100 * net / after:.0f}% of "
              f"the bench's {before:.2f} / {after:.2f} crops/s at batch {r['batch_size']} right before / after the run; "
              f"overlapped: {r['overlapped']}")
    r0 = rows[0]
    # (the files by their paths: "real checkpoint: True" was said of a stand-in checkpoint of random weights in
    # the official layout, a performance audit; the speed is the same, the outputs are not)
    print(f"device {r0['device']}{' ' + r0['cpu'] if r0.get('cpu') else ''}, torch {r0['torch']} ({r0['threads']} "
          f"threads), ResNet-{r0['architecture']} body backbone, precision {r0['precision']}, batch size "
          f"{r0['batch_size']}, start-up {r0['startup_s']:.1f} s, detector {Path(r0['detector']).name}, weights "
          f"{r0['checkpoint'] if r0['real_checkpoint'] else 'random (no checkpoint found)'}, SMPL-X "
          f"{r0['body_model'] if r0['real_body_model'] else 'synthetic (none found)'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()
