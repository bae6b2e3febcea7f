"""``wbcap run``'s work besides the network: frames/s with the network's outputs replayed (as if
the device took no time), against decoding alone.

    python benchmarks/video_host.py [--size 1280x720] [--people 4] [--frames 150] [--batch-size 8]
        [--overlap auto|on|off] [--crop-workers auto|N] [--repeats 3] [--json out.json]

On a GPU the network leaves the CPU's work as the limit: issue 14 asks ``wbcap run --no-render``
to be decode-bound there (on the H200 it ran at 113 frames/s against 405 for decoding alone).
This script measures that limit on any machine. A synthetic H.264 clip (``--people`` figures
side by side, moving; :func:`wbcap.testing.videos.people_frames`) runs through ``wbcap run``'s
code (:func:`wbcap.video_app.run_video`, boxes given, no render, ``track_<id>.npz`` only) with
the network called once for real and its SMPL-X parameters handed back for every later call (sliced
to the call's size: what pass 1 reads). So what is timed is everything around the network:
decoding, the frame-change measure, cropping, the crops' upload (their conversion to float runs
on the CPU here, on the device on a GPU), the axis-angle conversion and host copies, the raw
records, and pass 2 (tracking, smoothing, the files).

``--overlap on`` decodes (and detects) in a thread beside the main thread, as ``wbcap run`` does
on a GPU (:func:`wbcap.detect.thread.overlaps_network`); ``off`` in turn, as on a CPU whose
cores torch's threads take; ``auto`` as the run decides here. ``--crop-workers N`` crops in
``N`` threads (0: in the main thread) instead of the run's choice
(:func:`wbcap.detect.thread.crop_workers`).

Prints one JSON object: decoding alone (frames/s, best of ``--repeats``), each run's frames/s
(best of ``--repeats``), ``decode_bound`` (the run's frames/s over decoding's: 1.0 keeps up),
and the best run's seconds per stage (``crop``, ``regress``: the upload, conversion and host work
of the replayed calls, ``write``; ``track+smooth+write``: pass 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=_size, default=(1280, 720), help="WxH of the clip (default 1280x720)")
    ap.add_argument("--people", type=int, default=4)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--overlap", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--crop-workers", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    return ap


def replay_network(pipe) -> None:
    """Make ``pipe``'s network hand back the outputs of one real call of ``batch_size`` random
    crops, with the SMPL-X parameters sliced to each call's size (pass 1 reads only those)."""
    import torch

    net = pipe.regressor.net
    h, w = net.config.input_img_shape
    x = torch.rand(pipe.batch_size, 3, h, w, generator=torch.Generator().manual_seed(0)).to(pipe.device)
    with torch.inference_mode(), pipe.inference_context():
        out = net(x.contiguous(memory_format=pipe.memory_format))

    def replay(batch):
        return dataclasses.replace(out, smplx=out.smplx[: batch.shape[0]])

    net.forward = replay


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (``argv``: the command line's arguments; default ``sys.argv[1:]``)."""
    args = parser().parse_args(argv)
    import torch

    from wbcap.config import ModelConfig, PipelineConfig
    from wbcap.detect import thread
    from wbcap.export.animation import AnimationExport
    from wbcap.io.video_reader import open_frames
    from wbcap.io.video_writer import VideoWriter
    from wbcap.model.strategy import cpu_model
    from wbcap.pipeline import Pipeline
    from wbcap.testing.videos import people_frames
    from wbcap.video_app import VideoJob, run_video

    # The network's size does not matter here (its outputs are replayed): ResNet-18s build fastest.
    small = ModelConfig(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
    pipe = Pipeline.from_config(PipelineConfig(model=small, device="cpu", batch_size=args.batch_size, precision="exact"),
                                fallback="synthetic", upright=True, optimize=False)
    replay_network(pipe)
    if args.overlap != "auto":
        thread.overlaps_network = lambda device, on=args.overlap == "on": on
    if args.crop_workers != "auto":
        thread.crop_workers = lambda device, n=int(args.crop_workers): n
    w, h = args.size
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "clip.mp4"
        with VideoWriter(video, w, h, 30) as writer:
            for frame in people_frames(args.frames, (w, h), args.people):
                writer.write(frame)
        slot = w // args.people
        boxes = [[i * slot + slot * 0.15, h * 0.05, slot * 0.7, h * 0.9] for i in range(args.people)]
        (work / "boxes.json").write_text(json.dumps({str(i): boxes for i in range(args.frames)}))
        decode = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            n = sum(1 for _ in open_frames(str(video)))
            decode.append(n / (time.perf_counter() - t))
        job = VideoJob(source=str(video), out=str(work / "out"),
                       pipeline=pipe.job_config(),
                       detector=f"boxes:{work / 'boxes.json'}", render=False, overwrite=True,
                       export=AnimationExport(formats=("npz",)))
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = run_video(job, pipeline=pipe)
            wall = time.perf_counter() - t
            runs.append({"fps": result.frames / wall, "wall_s": wall, "timings_s": result.timings})
    best = max(runs, key=lambda r: r["fps"])
    report = {
        "cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "size": [w, h], "people": args.people, "frames": args.frames, "batch_size": args.batch_size,
        "overlapped": thread.overlaps_network(pipe.device), "crop_workers": thread.crop_workers(pipe.device),
        "decode_alone_fps": max(decode),
        "run_fps": [r["fps"] for r in runs], "decode_bound": best["fps"] / max(decode),
        "timings_s": {k: round(v, 4) for k, v in best["timings_s"].items()},
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()
