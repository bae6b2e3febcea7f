"""Track-level false positives: a static object that a detector keeps calling a person.

A detector scores each frame on its own, so an object that looks a little like a person (a
lectern, a sign, a coat on a stand) can be detected in most frames of a video at a modest score
and become a long track of a "person" who never moves. No single frame tells it from a real
person; the track's whole life does. A track is judged a **static false positive** when all of
these hold (:func:`is_static`):

1. it is long enough to judge: it lasts at least ``min_duration`` seconds (first to last
   detection) over at least ``min_frames`` detections;
2. its mean detection score is below ``max_mean_score`` (the detector was never sure);
3. its box centre stays within ``max_motion`` box heights of the track's median centre in a
   ``quantile`` fraction of its frames (it never went anywhere);
4. its box width and height stay within ``max_resize`` box heights of their medians in the
   same fraction of frames (it never bent, turned or walked towards the camera).

Motion and size are divided by the track's median box height, so the rule reads the same for a
near person and a far one. The quantile (95 %) makes the measures robust to the few frames
where a passer-by's box is matched to the static track as they walk past it (seen on
``vtest.avi``), yet a person who stands and then walks away during more than 5 % of their
track keeps it.

Measured on ``vtest.avi`` (768x576, 10 fps, 795 frames) with YOLOX-nano (score threshold 0.3)
and the default :class:`~wbcap.track.iou_tracker.TrackerConfig`
(``benchmarks/track_false_positives.py``): 60 tracks of at least 3 detections, two of them the
lectern at the left edge (box ~17x32 px), split in two where a passer-by walked past it:

==========================  =========  ==========  ==========  =========  =========
tracks                      duration   detections  mean score  motion     resize
==========================  =========  ==========  ==========  =========  =========
lectern, part 1             15.7 s     158         0.51        0.022      0.062
lectern, part 2             58.1 s     582         0.53        0.028      0.071
people standing half        0.2-1.3 s  3-14        0.46-0.58   0.02-0.08  0.03-0.08
hidden by a sign (5)
a far person walking        13.0 s     130         0.61        4.8        0.17
other tracks over 2 s (42)  2.4-33 s   25-326      0.72-0.83   0.55-5.3   0.08-0.63
other tracks under 2 s (10) 0.2-1.9 s  3-20        0.48-0.78   0.02-0.63  0.03-0.64
==========================  =========  ==========  ==========  =========  =========

(motion and resize: 95th percentile, in median box heights; with ``--every 2`` the lectern
gives 0.51/0.53, 0.026/0.029, 0.062/0.068.) The defaults sit beyond the lectern with margins:
``max_mean_score`` 0.62 (lectern <= 0.53; the tracks over 2 s other than the far walker average
>= 0.72), ``max_motion`` 0.10 (lectern <= 0.028, 3.6x), ``max_resize`` 0.15 (lectern <= 0.071,
2x), ``min_duration`` 10 s (lectern parts 15.7 s and 58 s; every still real track lasts
<= 1.3 s). With them the lectern's two tracks are the only ones dropped (60 -> 58 tracks; with
``--every 2``, 45 -> 43).

Why a real person standing still is kept: on short time scales a person standing half hidden
behind a sign looks exactly like the lectern (score ~0.5, motion 0.02-0.08), and a far person
scores nearly as low (0.61), so neither score nor motion alone separates them; the filter
therefore needs **all** of low score, no motion and no change of size **for at least 10
seconds**. A person seen clearly scores higher (>= 0.72 on average on vtest) and is kept however
still they stand; one whose box centre moves more than a tenth of their height, or whose box
changes by 15 % of it (bending, turning, gesturing), is kept at any score. What remains at risk
is a person who is poorly detected (far, or mostly hidden) *and* stands perfectly still for
10 s or more; ``wbcap run`` reports every dropped track and ``--keep-static``
(``TrackerConfig(drop_static=False)``) keeps them.

A passer-by's track may take over the object's detections as they walk past it, while the
object's own track is missed (and lost), and keep them once the person has gone on under
another id: :func:`static_tails` finds the detections at a track's end on a static object's
place, after the object's own track ended, which ``wbcap run`` cuts off (a track all of them is
the object's: dropped as static).

The score threshold was measured on YOLOX-nano, whose scores are ``objectness x person`` in
[0, 1]; torchvision's scores are probabilities too. HOG scores are SVM margins (0 to ~3), on
which 0.62 is also a weak detection; user-given boxes (``boxes:FILE``, ``full``) are not
judged by ``wbcap run``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["ON_OBJECT_IOU", "StaticFilterConfig", "TrackStats", "is_static", "static_false_positives", "static_tails",
           "track_stats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticFilterConfig:
    """Thresholds of the static false-positive rule (module docstring for the measurements).

    Attributes:
        min_duration: seconds from a track's first to last detection below which it is not
            judged (kept).
        min_frames: detections below which a track is not judged (kept).
        max_mean_score: a track is static only if its mean detection score is below this.
        max_motion: ... and the ``quantile`` of its box centre's distance from its median centre,
            in median box heights, is below this.
        max_resize: ... and the ``quantile`` of ``max(|w - median w|, |h - median h|)``, in median
            box heights, is below this.
        quantile: fraction of a track's frames the motion and size limits apply to, ``(0, 1]``
            (``1``: every frame, i.e. the maximum).
    """

    min_duration: float = 10.0
    min_frames: int = 10
    max_mean_score: float = 0.62
    max_motion: float = 0.10
    max_resize: float = 0.15
    quantile: float = 0.95

    def __post_init__(self) -> None:
        if self.min_duration < 0 or self.min_frames < 1:
            raise ValueError("min_duration must be >= 0 and min_frames >= 1")
        if self.max_motion < 0 or self.max_resize < 0:
            raise ValueError("max_motion and max_resize must be >= 0")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")


@dataclass(frozen=True)
class TrackStats:
    """Evidence about one track (:func:`track_stats`).

    Attributes:
        frames: detections in the track.
        duration: seconds from its first to its last detection.
        mean_score: mean detection score.
        motion: ``quantile`` of the box centre's distance from the median centre, median box heights.
        resize: ``quantile`` of ``max(|w - median w|, |h - median h|)``, median box heights.
        height: median box height, pixels.
    """

    frames: int
    duration: float
    mean_score: float
    motion: float
    resize: float
    height: float


def track_stats(
    times: np.ndarray, boxes: np.ndarray, scores: np.ndarray, quantile: float = 0.95
) -> TrackStats:
    """Measure one track.

    Args:
        times: ``(T,)`` seconds of each detection, increasing (only first and last are used).
        boxes: ``(T, 4)`` ``(x, y, w, h)`` pixels.
        scores: ``(T,)`` detection scores.
        quantile: fraction of frames the motion and resize measures cover, ``(0, 1]``.

    Returns:
        The track's :class:`TrackStats`. An empty track, or one whose median box height is not
        positive, gets infinite motion and resize (never static).

    Raises:
        ValueError: mismatched shapes.
    """
    t = np.asarray(times, np.float64).reshape(-1)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    n = len(t)
    if b.shape[0] != n or s.shape[0] != n:
        raise ValueError(f"times, boxes and scores must have the same length, got {n}, {b.shape[0]}, {s.shape[0]}")
    if n == 0:
        return TrackStats(0, 0.0, float("nan"), float("inf"), float("inf"), 0.0)
    size = b[:, 2:]  # (T, 2) w, h
    centre = b[:, :2] + size / 2.0  # (T, 2)
    med_size = np.median(size, axis=0)  # (2,)
    height = float(med_size[1])
    if height <= 0:
        return TrackStats(n, float(t[-1] - t[0]), float(s.mean()), float("inf"), float("inf"), height)
    dist = np.linalg.norm(centre - np.median(centre, axis=0), axis=1)  # (T,) px
    change = np.abs(size - med_size).max(axis=1)  # (T,) px
    motion, resize = np.quantile(np.stack([dist, change]), quantile, axis=1) / height
    return TrackStats(
        frames=n,
        duration=float(t[-1] - t[0]),
        mean_score=float(s.mean()),
        motion=float(motion),
        resize=float(resize),
        height=height,
    )


def is_static(stats: TrackStats, cfg: StaticFilterConfig = StaticFilterConfig()) -> bool:
    """Whether a track with these measures is a static false positive (the module's rule 1-4)."""
    return bool(
        stats.duration >= cfg.min_duration
        and stats.frames >= cfg.min_frames
        and stats.mean_score < cfg.max_mean_score
        and stats.motion < cfg.max_motion
        and stats.resize < cfg.max_resize
    )


def static_false_positives(
    tracks: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    cfg: StaticFilterConfig = StaticFilterConfig(),
) -> dict[int, TrackStats]:
    """The tracks judged static false positives.

    Args:
        tracks: ``{track id: (times (T,) s, boxes (T, 4) xywh px, scores (T,))}``, each track's
            detections in time order (``T`` may differ between tracks).
        cfg: thresholds.

    Returns:
        ``{track id: its TrackStats}`` for every track to drop (empty when none); each is also
        logged at debug level.
    """
    out: dict[int, TrackStats] = {}
    for tid, (times, boxes, scores) in tracks.items():
        stats = track_stats(times, boxes, scores, cfg.quantile)
        if is_static(stats, cfg):
            logger.debug("track %d is static: %s", tid, stats)
            out[int(tid)] = stats
    return out


#: A box is on a static object's place where its IoU with the median box of the object's track
#: (:func:`static_false_positives`) reaches this (:func:`static_tails`).
ON_OBJECT_IOU = 0.5


def static_tails(
    tracks: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    static: Mapping[int, object],
    min_frames: int = 3,
    cfg: StaticFilterConfig = StaticFilterConfig(),
) -> dict[int, tuple[int, int]]:
    """Where other tracks end on a static object's place: a passer-by whose track took over the
    object's detections as they walked past it (the object's own track, missed meanwhile, lost),
    and kept them once the person had gone on under another id, for seconds (a tracking trial:
    ``vtest.avi``'s far walker left on the lectern from frame 167 to 199, so `track_11.npz`
    ended with 3 s of a "person" that was the lectern); or a track that is all of such detections.

    Args:
        tracks: as :func:`static_false_positives`'s, the static tracks among them.
        static: the static tracks' ids (its result).
        min_frames: the fewest detections a tail must have to count.
        cfg: the object's look: a tail's mean score below ``max_mean_score``, its motion and size
            change below ``max_motion`` and ``max_resize`` (:func:`track_stats`), whatever its length.

    Returns:
        ``{track id: (index of the first detection of its tail, the static track id)}`` for every
        other track whose last ``min_frames`` or more detections all lie on that object's place
        (IoU with its median box at least :data:`ON_OBJECT_IOU`), begin after the object's own
        track ended and look like the object (``cfg``: a break-it trial's person who sat down where
        a coat had been detected, scored 0.9, lost 22 s to a rule of place and time alone); index
        0: the whole track.
    """
    from wbcap.track.iou_tracker import iou_matrix

    objects = []
    for sid in sorted(static):
        times, boxes, _ = tracks[sid]
        objects.append((sid, np.median(np.asarray(boxes, np.float64).reshape(-1, 4), axis=0), float(np.max(times))))
    out: dict[int, tuple[int, int]] = {}
    for tid, (times, boxes, _) in sorted(tracks.items()):
        if tid in static or not objects:
            continue
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        t = np.asarray(times, np.float64).reshape(-1)
        for sid, median, ended in objects:
            on = iou_matrix(b, median[None])[:, 0] >= ON_OBJECT_IOU
            k = len(on)
            while k and on[k - 1]:
                k -= 1
            if len(on) - k < min_frames or t[k] <= ended:
                continue
            tail = track_stats(t[k:], b[k:], np.asarray(tracks[tid][2], np.float64).reshape(-1)[k:], cfg.quantile)
            if tail.mean_score < cfg.max_mean_score and tail.motion < cfg.max_motion and tail.resize < cfg.max_resize:
                out[int(tid)] = (k, sid)
                logger.debug("track %d: its last %d detections are on static track %d's place", tid, len(on) - k, sid)
                break
    return out
