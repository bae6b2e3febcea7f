"""Identity switches of ``wbcap run``'s tracker where two people meet: box overlap alone against
overlap with the people's looks (:mod:`wbcap.track.appearance`), on scenes with known identities.

    python benchmarks/track_switches.py [--video ../shared/media/vtest.avi]
        [--detector-model ../shared/models/yolox_nano.onnx] [--people 5] [--every N] [--json out.json]

The scenes are made of real footage: the background is the per-pixel median of 60 frames of
``--video`` (OpenCV's vtest.avi: a static camera over a mall floor, the people walking out of
the median), and the people are ``--people`` pedestrians cut out of its frames (YOLOX boxes of
distinct tracks that overlap no other box, 70-140 px tall; the rectangle, with the floor around
the person). Each pair of them plays each scene (the second pasted in front of the first), with
the ground-truth box and id of each person in every frame:

* ``cross``: they walk towards each other and past (the one behind hidden for a few frames);
* ``turn``: they meet, the one behind hidden for ``stay`` frames (0, 8, 20), and both turn back;
* ``stop``: they meet half overlapping and stand for 20 frames, then walk on past each other.

The boxes are either the ground truth (``truth``: a person more than half hidden has none; the
tracker alone is measured) or YOLOX's on the composed frames (``yolox``, with
``--detector-model``; a detection takes the id of the ground-truth box it overlaps by IoU ≥ 0.5).
Per scene and box source, the tracker (the defaults of ``wbcap run``) runs without and with
looks; counted over every person's matched frames in order:

* ``switches``: the track id changed from the one before (CLEAR MOT's ID switches);
* ``swaps``: the new track id is one another person had before (the identities exchanged);
* ``kept``: the share of matched frames with the person's first track id.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def pedestrians(video: Path, detector, count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The median background of 60 frames and ``count`` person cut-outs of distinct tracks."""
    from wbcap.io.video_reader import open_frames
    from wbcap.track.iou_tracker import TrackerConfig, _clean_boxes, track_boxes

    frames = [fr.image for fr in open_frames(video, max_frames=300)]
    background = np.median(np.stack(frames[::5]), axis=0).astype(np.uint8)
    dets = []
    for f, image in enumerate(frames):
        found = [d for d in detector(image)]
        dets.append((f, np.array([d.box for d in found], np.float64).reshape(-1, 4), np.array([d.score for d in found])))
    ids = track_boxes(dets, TrackerConfig())
    best: dict[int, tuple[float, np.ndarray]] = {}
    h_img, w_img = frames[0].shape[:2]
    for (f, boxes, scores), tids in zip(dets, ids):
        clean = _clean_boxes(boxes)
        for k, tid in enumerate(tids):
            x, y, w, h = boxes[k]
            if tid < 0 or not clean[k] or not 70 <= h <= 140 or x < 0 or y < 0 or x + w > w_img or y + h > h_img:
                continue
            if scores[k] > best.get(tid, (0.0, None))[0]:
                best[tid] = (float(scores[k]), frames[f][int(y):int(y + h), int(x):int(x + w)].copy())
    cuts = [cut for _, cut in sorted(best.values(), key=lambda v: -v[0])][:count]
    if len(cuts) < 2:
        sys.exit(f"error: found {len(cuts)} pedestrians to cut out of {video}; need 2")
    return background, cuts


def scene(kind: str, back: np.ndarray, front: np.ndarray, background: np.ndarray, stay: int = 0):
    """Frames ``[(image, [(person, box xywh, visible share)])]`` of one scene (module docstring)."""
    h_img, w_img = background.shape[:2]
    hb, wb = back.shape[:2]
    hf, wf = front.shape[:2]
    y_b, y_f = h_img // 2 - hb // 2, h_img // 2 - hf // 2 + 6
    meet = w_img // 2
    speed = 4
    approach = 30
    xb0, xf0 = meet - wb // 2 - approach * speed, meet - wf // 2 + approach * speed
    paths: list[tuple[float, float]] = []
    if kind == "cross":
        paths = [(xb0 + speed * t, xf0 - speed * t) for t in range(2 * approach + 1)]
    elif kind == "turn":
        paths = [(xb0 + speed * t, xf0 - speed * t) for t in range(approach + 1)]
        paths += [paths[-1]] * stay
        paths += [(paths[-1][0] - speed * t, paths[-1][1] + speed * t) for t in range(1, approach + 1)]
    elif kind == "stop":
        half = (wb + wf) // 4
        paths = [(xb0 + speed * t, xf0 - speed * t) for t in range(approach + 1) if xf0 - speed * t - (xb0 + speed * t) >= half]
        paths += [paths[-1]] * 20
        x_b, x_f = paths[-1]
        paths += [(x_b + speed * t, x_f - speed * t) for t in range(1, 2 * approach)]
    out = []
    for x_b, x_f in paths:
        image = background.copy()
        placed = []
        for person, (cut, x, y) in enumerate(((back, x_b, y_b), (front, x_f, y_f))):
            h, w = cut.shape[:2]
            x0, x1 = max(int(x), 0), min(int(x) + w, w_img)
            if x1 <= x0:
                continue
            image[y:y + h, x0:x1] = cut[:, x0 - int(x):x1 - int(x)]
            placed.append((person, np.array([x0, y, x1 - x0, h], np.float64)))
        shown = []
        for person, box in placed:
            visible = 1.0
            if person == 0 and len(placed) == 2:  # (the one behind: the share the front one leaves)
                fb = placed[1][1]
                iw = max(0.0, min(box[0] + box[2], fb[0] + fb[2]) - max(box[0], fb[0]))
                ih = max(0.0, min(box[1] + box[3], fb[1] + fb[3]) - max(box[1], fb[1]))
                visible = 1.0 - iw * ih / (box[2] * box[3])
            shown.append((person, box, visible))
        out.append((image, shown))
    return out


def count(frames_ids: list[list[tuple[int, int]]]) -> dict:
    """Switches, swaps and kept share from each frame's ``[(person, track id)]``."""
    last: dict[int, int] = {}
    first: dict[int, int] = {}
    owners: dict[int, set[int]] = {}
    switches = swaps = matched = kept = 0
    for pairs in frames_ids:
        for person, tid in pairs:
            if tid < 0:
                continue
            matched += 1
            first.setdefault(person, tid)
            kept += tid == first[person]
            if person in last and tid != last[person]:
                switches += 1
                swaps += any(p != person for p in owners.get(tid, ()))
            last[person] = tid
            owners.setdefault(tid, set()).add(person)
    return {"switches": switches, "swaps": swaps, "matched": matched, "kept": kept}


def run_scene(frames, detector, looks_on: bool, every: int = 1) -> dict:
    """The tracker (``wbcap run``'s defaults; ``every``: its ``--every``, every ``every``-th frame
    from the first) on one scene's frames, counted by :func:`count`."""
    from wbcap.track.appearance import box_looks
    from wbcap.track.iou_tracker import IoUTracker, TrackerConfig, iou_matrix

    tracker = IoUTracker(TrackerConfig(frame_stride=every))
    per_frame = []
    for f, (image, shown) in enumerate(frames):
        if f % every:
            continue
        truth = [(p, b) for p, b, vis in shown]
        if detector is None:
            boxes = np.array([b for p, b, vis in shown if vis >= 0.5], np.float64).reshape(-1, 4)
            who = [p for p, b, vis in shown if vis >= 0.5]
        else:
            boxes = np.array([d.box for d in detector(image)], np.float64).reshape(-1, 4)
            iou = iou_matrix(boxes, np.array([b for _, b in truth]).reshape(-1, 4))
            who = [truth[int(np.argmax(r))][0] if len(r) and r.max() >= 0.5 else -1 for r in iou]
        looks = box_looks(image, boxes) if looks_on else None
        ids = tracker.update(f, boxes, looks=looks)
        per_frame.append([(p, t) for p, t in zip(who, ids) if p >= 0])
    return count(per_frame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=SHARED / "media" / "vtest.avi")
    ap.add_argument("--detector-model", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    ap.add_argument("--people", type=int, default=5)
    ap.add_argument("--every", type=int, default=1, choices=range(1, 101), metavar="N",
                    help="track every N-th frame, 1-100 (wbcap run --every)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    for path in (args.video, args.detector_model):
        if not path.is_file():
            sys.exit(f"error: {path} not found (pass --video / --detector-model)")
    from wbcap.detect.factory import make_detector

    detector = make_detector(f"yolox:{args.detector_model}")
    background, cuts = pedestrians(args.video, detector, args.people)
    scenes = [("cross", 0), ("turn", 0), ("turn", 8), ("turn", 20), ("stop", 0)]
    rows = []
    for (kind, stay), (a, b) in itertools.product(scenes, itertools.permutations(range(len(cuts)), 2)):
        frames = scene(kind, cuts[a], cuts[b], background, stay)
        for source, det in (("truth", None), ("yolox", detector)):
            for looks_on in (False, True):
                rows.append({"scene": kind, "stay": stay, "pair": [a, b], "boxes": source, "looks": looks_on,
                             **run_scene(frames, det, looks_on, args.every)})
    pairs = len(cuts) * (len(cuts) - 1)
    print(f"{len(cuts)} pedestrians from {args.video.name}: {pairs} ordered pairs per scene, box source and tracker"
          + (f", every {args.every}-th frame" if args.every > 1 else ""))
    print(f"{'scene':>10} {'boxes':>6} {'tracker':>12} {'switches':>9} {'swaps':>6} {'kept %':>7}")
    for (kind, stay), source, looks_on in itertools.product(scenes, ("truth", "yolox"), (False, True)):
        sel = [r for r in rows if (r["scene"], r["stay"], r["boxes"], r["looks"]) == (kind, stay, source, looks_on)]
        name = kind + (f" {stay}" if kind == "turn" else "")
        kept = 100.0 * sum(r["kept"] for r in sel) / max(sum(r["matched"] for r in sel), 1)
        print(f"{name:>10} {source:>6} {'with looks' if looks_on else 'overlap only':>12} "
              f"{sum(r['switches'] for r in sel):>9} {sum(r['swaps'] for r in sel):>6} {kept:>7.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()
