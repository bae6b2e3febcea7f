"""What a calibrated camera's undistortion costs (``wbcap run --calibration``): one frame of a
video remapped by :class:`wbcap.io.undistort.Undistorter`, for OpenCV's pinhole model and its
fisheye model, beside the time to decode a frame of that size from an H.264 file.

    python benchmarks/undistort.py [--width 1920] [--height 1080] [--frames 30] [--json out.json]

Prints the CPU model, the set-up (the undistorted camera, then the remap tables, made once a
run) and the median milliseconds a frame. The video is written to a temporary folder first (not
timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np

    from wbcap.camera import LensCalibration
    from wbcap.io.undistort import Undistorter
    from wbcap.io.video_reader import open_frames
    from wbcap.model.strategy import cpu_model
    from wbcap.testing.videos import write_video

    w, h = args.width, args.height
    f = 0.73 * w  # (a ~70 degree horizontal field of view)
    matrix = ((f, 0.0, (w - 1) / 2), (0.0, f, (h - 1) / 2), (0.0, 0.0, 1.0))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), np.uint8) for _ in range(4)] * (args.frames // 4 + 1)
    result: dict = {"cpu": cpu_model(), "size": [w, h]}
    with tempfile.TemporaryDirectory() as folder:
        video = write_video(Path(folder) / "clip.mp4", frames[:args.frames])
        decode = []
        start = time.perf_counter()
        for _frame in open_frames(video):
            decode.append(time.perf_counter() - start)
            start = time.perf_counter()
        result["decode_ms"] = 1e3 * statistics.median(decode)
    for model, distortion, fisheye in (("pinhole", (-0.25, 0.08, 0.001, -0.0005, -0.01), False),
                                       ("fisheye", (0.05, -0.01, 0.002, -0.0005), True)):
        start = time.perf_counter()
        undistorter = Undistorter(LensCalibration((w, h), matrix, distortion, fisheye), (w, h))
        camera_s = time.perf_counter() - start
        start = time.perf_counter()
        undistorter(frames[0])
        tables_s = time.perf_counter() - start
        times = []
        for frame in frames[:args.frames]:
            start = time.perf_counter()
            undistorter(frame)
            times.append(time.perf_counter() - start)
        result[model] = {"camera_s": camera_s, "tables_s": tables_s, "frame_ms": 1e3 * statistics.median(times)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
