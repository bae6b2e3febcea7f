"""`wbcap view` in headless Chromium: the README's screenshot, and what a long run costs the page.

    python benchmarks/view_screenshot.py [--video ../shared/media/vtest.avi] [--frames 80]
        [--detector yolox:../shared/models/yolox_nano.onnx] [--png view.png] [--keep DIR]
    python benchmarks/view_screenshot.py --long 3000 --tracks 4 [--json out.json]

The first form runs `wbcap run` on the first ``--frames`` frames of the video (the real SMPL-X
model and checkpoint when `wbcap doctor` finds them, else the synthetic body model and an
untrained small network whose heads predict a standing neutral body: the bodies then stand where
the detected people are, in a T pose), serves it with `wbcap view`'s library
(:func:`wbcap.view.site.serve_view`) and saves a screenshot of the whole page at ``--time``.

The second form makes a long run without the network: ``--tracks`` tracks of ``--long`` frames
each at 25 fps (1280x720 H.264 render.mp4 of moving bars, params.jsonl lines on a walking path,
the GLBs made by `wbcap export` from them with the synthetic body model), then reports what the
page costs: the site's build time, the bytes the page fetches (manifest, GLBs, one parameter
chunk; the video is streamed by range requests), the time to the first frame and to all bodies
loaded, and the time of seeks and frame steps. Needs node, `npm ci --prefix tests/js` and
/usr/bin/chromium (as the tests).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "js" / "view_driver.mjs"
SHARED = ROOT.parent / "shared"


def drive(pages: list[dict], out: Path, viewport: tuple[int, int]) -> dict:
    """Run tests/js/view_driver.mjs on ``pages``; returns its result."""
    job = {"executable": "/usr/bin/chromium", "result": str(out / "result.json"), "out": str(out),
           "viewport": list(viewport), "pages": pages}
    (out / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "HOME": str(out), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    res = subprocess.run(["node", str(DRIVER), str(out / "job.json")], cwd=DRIVER.parent, env=env,
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        sys.exit(f"error: view_driver.mjs failed:\n{res.stderr[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    for page in result["pages"]:
        if page.get("fatal"):
            sys.exit(f"error: page {page['name']}: {page['fatal']}\n{page['errors']}")
    return result


def sample_run(args: argparse.Namespace, out: Path) -> None:
    from wbcap.config import ModelConfig, PipelineConfig
    from wbcap.pipeline import Pipeline
    from wbcap.video_app import VideoJob, run_video

    small = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
    pipe = Pipeline.from_config(PipelineConfig(model=ModelConfig(**small), device="cpu"), fallback="synthetic",
                                upright=True)
    job = VideoJob(source=args.video, out=str(out), max_frames=args.frames, detector=args.detector,
                   max_people=args.max_people, overwrite=True,
                   pipeline=pipe.job_config())
    t0 = time.perf_counter()
    result = run_video(job, pipeline=pipe)
    print(f"wbcap run: {result.frames} frames, {len(result.tracks)} tracks in {time.perf_counter() - t0:.0f} s "
          f"(real SMPL-X: {not pipe.source.body_model_synthetic}, real checkpoint: {pipe.source.weights == 'checkpoint'})")


def screenshot(args: argparse.Namespace) -> None:
    from wbcap.view.site import ViewJob, serve_view

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = Path(args.keep) if args.keep else tmp / "run"
        if not (run / "params.jsonl").is_file():
            sample_run(args, run)
        # the parameters shown: the track seen longest among those seen at --time
        lines = [json.loads(x) for x in (run / "params.jsonl").read_text().splitlines()]
        rows = {}
        for x in lines:
            rows[x["track"]] = rows.get(x["track"], 0) + 1
        present = {x["track"] for x in lines if abs(x["time"] - args.time) < 0.02}
        select = max(present, key=rows.get) if present else None
        with serve_view(ViewJob(out=str(run))) as server:
            page = {"name": "readme", "url": server.url, "kind": "video", "times": [args.time],
                    "page_screenshot": {"time": args.time, "select": select}}
            result = drive([page], tmp, (args.width, args.height))
        shot = Path(result["pages"][0]["pageScreenshot"])
        Path(args.png).write_bytes(shot.read_bytes())
        page = result["pages"][0]
        print(f"wrote {args.png} ({args.width}x{args.height}); page errors: {page['errors'] or 'none'}; "
              f"first frame {page['firstFrameMs']} ms, all bodies {page['loadMs']} ms")


def make_long_run(out: Path, frames: int, tracks: int, fps: int = 25, size: tuple[int, int] = (1280, 720)) -> None:
    """A run folder as `wbcap run` writes it, without the network: render.mp4, params.jsonl,
    meta.json, .wbcap/run.json and the GLBs (`wbcap export` with the synthetic body model)."""
    import numpy as np

    from wbcap.export.animation import AnimationExport
    from wbcap.export.from_run import ExportJob, export_run
    from wbcap.io.video_writer import VideoWriter
    from wbcap.pipeline import synthetic_body_models_dir

    out.mkdir(parents=True)
    (out / ".wbcap").mkdir()
    w, h = size
    focal = math.hypot(w, h)
    with VideoWriter(out / "render.mp4", w, h, fps) as writer:
        for i in range(frames):
            img = np.full((h, w, 3), 40, np.uint8)
            for t in range(tracks):
                x = int((w / 2 + (w / 3) * math.sin(2 * math.pi * (i / (fps * 8)) + t)) % w)
                img[h // 4 : 3 * h // 4, max(0, x - 20) : x + 20] = (60 * t % 255, 120, 200)
            writer.write(img)
    camera = {"focal": [focal, focal], "princpt": [w / 2, h / 2], "image_size": [w, h]}
    with open(out / "params.jsonl", "w", encoding="utf-8") as fh:
        for i in range(frames):
            for t in range(tracks):
                phase = 2 * math.pi * (i / (fps * 8)) + t
                z = 5.0 + 2 * t
                rec = {"frame": i, "time": i / fps, "track": t, "box": [0.0, 0.0, 100.0, 300.0],
                       "root_pose": [math.pi, 0.0, 0.0], "body_pose": [0.3 * math.sin(phase * 4)] * 63,
                       "lhand_pose": [0.0] * 45, "rhand_pose": [0.0] * 45, "jaw_pose": [0.0] * 3,
                       "leye_pose": [0.0] * 3, "reye_pose": [0.0] * 3, "shape": [0.0] * 10, "expr": [0.0] * 10,
                       "cam_trans": [1.5 * math.sin(phase), 0.3, z], "camera": camera}
                fh.write(json.dumps(rec) + "\n")
    (out / "meta.json").write_text(json.dumps({"source": "long.mp4", "fps": float(fps), "gender": "neutral",
                                               "max_gap": 1.0, "camera": camera, "tracks": list(range(tracks))}))
    (out / ".wbcap" / "run.json").write_text(json.dumps({"source": "long.mp4", "start": 0.0}))
    export_run(ExportJob(run=str(out), export=AnimationExport(formats=("glb",)),
                         body_models=str(synthetic_body_models_dir())))


def long_run(args: argparse.Namespace) -> None:
    from wbcap.view.site import ViewJob, serve_view

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = Path(args.keep) if args.keep else tmp / "run"
        if not (run / "params.jsonl").is_file():
            t0 = time.perf_counter()
            make_long_run(run, args.long, args.tracks)
            print(f"made a {args.long}-frame, {args.tracks}-track run in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        with serve_view(ViewJob(out=str(run))) as server:
            build = time.perf_counter() - t0
            site = server.folder
            sizes = {
                "view.json": (site / "view.json").stat().st_size,
                "glb": sum(p.stat().st_size for p in run.glob("track_*.glb")),
                "params chunks": sum(p.stat().st_size for p in (site / "params").rglob("*.json")),
                "one chunk": max(p.stat().st_size for p in (site / "params").rglob("*.json")),
                "render.mp4": (run / "render.mp4").stat().st_size,
                "params.jsonl": (run / "params.jsonl").stat().st_size,
            }
            duration = (args.long - 1) / 25
            times = [duration * f for f in (0.5, 0.1, 0.9, 0.25)]
            page = {"name": "long", "url": server.url, "kind": "video", "times": times}
            result = drive([page], tmp, (1280, 720))
        p = result["pages"][0]
        report = {"frames": args.long, "tracks": args.tracks, "build_s": build, "bytes": sizes,
                  "first_frame_ms": p["firstFrameMs"], "all_bodies_ms": p["loadMs"],
                  "seek_ms": {f"{s['t']:.2f}": s["seekMs"] for s in p["samples"]}, "next_frame_ms": p["afterNext"]["ms"],
                  "errors": p["errors"]}
        print(json.dumps(report, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(SHARED / "media" / "vtest.avi"))
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--detector", default=f"yolox:{SHARED / 'models' / 'yolox_nano.onnx'}")
    ap.add_argument("--max-people", type=int, default=8)
    ap.add_argument("--time", type=float, default=5.0, help="source second the screenshot shows")
    ap.add_argument("--png", default="view.png")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--keep", default=None, help="the run folder: made if absent, reused if present")
    ap.add_argument("--long", type=int, default=None, help="frames of a generated long run (second form)")
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.long:
        long_run(args)
    else:
        screenshot(args)


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()
