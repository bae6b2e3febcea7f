"""Track-level false positives: which tracks the static filter drops on a real video.

    python benchmarks/track_false_positives.py [--video ../shared/media/vtest.avi]
        [--model ../shared/models/yolox_nano.onnx] [--every 1] [--cache dets.npz]

Runs the YOLOX detector (``yolox:MODEL``, default score threshold) on every ``--every``-th
frame, tracks the boxes with the default :class:`~wbcap.track.iou_tracker.TrackerConfig` (as
``wbcap run``'s second pass does) and prints, for every track kept by ``--min-track``, the
evidence :mod:`wbcap.track.static_filter` judges: detections, duration, mean/min/max score,
motion and resize (95th percentile, in median box heights), median box height and centre, and
whether it is dropped as static; then the track counts before and after the filter.

``--cache FILE`` stores the detections (``.npz``) on the first run and reads them back on the
next ones, to try thresholds without detecting again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def detect(video: str, model: str, every: int) -> dict[str, np.ndarray]:
    """Detections of every ``every``-th frame: ``frame (F,)``, ``time (F,)`` s, ``count (F,)``,
    ``boxes (N, 4)`` xywh px and ``scores (N,)`` (frame by frame, ``count`` per frame)."""
    from wbcap.detect.factory import make_detector
    from wbcap.io.video_reader import open_frames

    det = make_detector(f"yolox:{model}")
    frame, times, count, boxes, scores = [], [], [], [], []
    t0 = time.perf_counter()
    for fr in open_frames(video, every=every):
        found = det(fr.image)
        frame.append(fr.index)
        times.append(fr.time)
        count.append(len(found))
        boxes += [d.box for d in found]
        scores += [d.score for d in found]
    dt = time.perf_counter() - t0
    print(f"detected {len(frame)} frames in {dt:.1f} s ({1000 * dt / max(len(frame), 1):.1f} ms/frame, decode included)")
    return {
        "frame": np.asarray(frame, np.int64), "time": np.asarray(times, np.float64),
        "count": np.asarray(count, np.int64), "boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
        "scores": np.asarray(scores, np.float64),
    }


def track(dets: dict[str, np.ndarray]) -> tuple[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], set[int], int]:
    """``({id: (times, boxes, scores)}, ids kept by min_length, tracks created)``."""
    from wbcap.track.iou_tracker import IoUTracker, TrackerConfig

    tracker = IoUTracker(TrackerConfig())
    ends = np.cumsum(dets["count"])
    per: dict[int, tuple[list, list, list]] = {}
    for f, t, lo, hi in zip(dets["frame"], dets["time"], ends - dets["count"], ends):
        boxes, scores = dets["boxes"][lo:hi], dets["scores"][lo:hi]
        for i, tid in enumerate(tracker.update(int(f), boxes, scores)):
            if tid >= 0:
                tr = per.setdefault(tid, ([], [], []))
                tr[0].append(t)
                tr[1].append(boxes[i])
                tr[2].append(scores[i])
    kept = tracker.finalize()
    tracks = {tid: (np.asarray(a), np.asarray(b).reshape(-1, 4), np.asarray(c)) for tid, (a, b, c) in per.items()}
    return tracks, kept, len(per)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(SHARED / "media" / "vtest.avi"))
    ap.add_argument("--model", default=str(SHARED / "models" / "yolox_nano.onnx"))
    ap.add_argument("--every", type=int, default=1, help="detect every N-th frame")
    ap.add_argument("--cache", default=None, help="detections .npz: written if absent, else read")
    args = ap.parse_args()

    from wbcap.track.static_filter import StaticFilterConfig, is_static, track_stats

    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        dets = dict(np.load(cache))
        print(f"detections read from {cache}")
    else:
        dets = detect(args.video, args.model, args.every)
        if cache is not None:
            np.savez(cache, **dets)
    tracks, kept, created = track(dets)
    cfg = StaticFilterConfig()
    print(f"{len(dets['frame'])} frames, {len(dets['scores'])} detections, {created} tracks created, "
          f"{len(kept)} with >= min_length detections")
    print(f"rule: duration >= {cfg.min_duration} s, >= {cfg.min_frames} detections, mean score < {cfg.max_mean_score}, "
          f"motion < {cfg.max_motion}, resize < {cfg.max_resize} (quantile {cfg.quantile})")
    head = f"{'id':>4} {'n':>5} {'dur_s':>6} {'mean':>5} {'min':>5} {'max':>5} {'motion':>7} {'resize':>7} {'h_px':>5} {'centre_px':>11}  static"
    print(head)
    static = []
    rows = []
    for tid in sorted(kept):
        t, b, s = tracks[tid]
        st = track_stats(t, b, s, cfg.quantile)
        drop = is_static(st, cfg)
        if drop:
            static.append(tid)
        c = np.median(b[:, :2] + b[:, 2:] / 2, axis=0)
        line = (f"{tid:4d} {st.frames:5d} {st.duration:6.1f} {st.mean_score:5.2f} {s.min():5.2f} {s.max():5.2f} "
                f"{st.motion:7.3f} {st.resize:7.3f} {st.height:5.0f} {c[0]:5.0f},{c[1]:5.0f}  {'DROP' if drop else ''}")
        rows.append((st.mean_score, line))
    for _, line in sorted(rows):
        print(line)
    print(f"tracks before the filter: {len(kept)}, after: {len(kept) - len(static)} "
          f"(dropped {len(static)}: ids {static}, {sum(len(tracks[i][0]) for i in static)} person-frames)")


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()
