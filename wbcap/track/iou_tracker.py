"""Multi-person tracking by box overlap (IoU) and, where given, the people's looks (colour
histograms of their clothes, :mod:`wbcap.track.appearance`), with optimal (Hungarian) assignment.

Boxes are ``(x, y, w, h)`` pixels, as everywhere in wbcap (:mod:`wbcap.detect.base`). Frame
indices are integers that increase from call to call (gaps are allowed: with a frame stride,
or frames where the detector ran but nothing was found, pass the frame's true index).

Algorithm, per frame:

1. Tracks whose last match is more than ``max_age`` processed frames old (``frame_stride``
   source frames each) are *lost*: no box is matched to them by overlap. A lost track that has
   a look is still re-identified by it (step 3b) for up to ``reid_age`` processed frames; then,
   or without a look, or where its last box reached the picture's left or right side moving
   out of it (the person walked out; ``size`` given), it ends (never matched again).
2. Every live track predicts its box for this frame. With ``motion='constant_velocity'``
   (default) the box centre moves by the track's velocity (pixels per frame, an exponential
   moving average of the centre displacement between its matches) times the frames elapsed;
   width and height stay those of the last match. With ``motion='static'`` the prediction is
   the last matched box. Prediction is what keeps identities when two people cross: at the
   crossing a box overlaps the *other* person's previous box more than its own previous box,
   and a static tracker swaps the two ids (``tests/test_track.py`` shows both).
3. IoU between every detection and every prediction of a track not lost; pairs below
   ``iou_threshold`` are forbidden. With a frame stride (``frame_stride`` > 1, ``wbcap run
   --every``) and constant-velocity motion, for a track matched in one of the last two processed
   frames a pair's IoU is the larger of the detection's with the prediction and with the track's
   last box: the prediction then runs that many frames ahead, and after a turn or a stop it lies
   past the person, on whoever they met, whose box took their id
   (``benchmarks/track_switches.py --every 3``, YOLOX boxes, looks: 104 id switches, 71 of them
   exchanges, against 67 and 38). Not for a track missed longer: the box where a person was last
   seen then belongs to whoever walks in there (with every track's last box, a break-it trial saw
   a newcomer take the id of one who had left two seconds before). Every frame: as before.
   ``scipy.optimize.linear_sum_assignment`` on the cost ``1 - IoU`` (forbidden: a large
   constant) gives the matching with the most allowed pairs and, among those, the largest total
   IoU. With looks (``looks`` given, ``appearance`` on),
   the cost is ``1 - IoU + LOOK_WEIGHT * d``, ``d`` the look distance of the detection and the
   track (:func:`~wbcap.track.appearance.look_distances`, 0-1), a detection may also stay
   unmatched at a cost just above any one allowed pair's (so the matching with the most pairs
   no longer wins over one that leaves a box to step 3b), and a pair whose ``d`` exceeds
   :data:`LOOK_GATE` is forbidden where the detection's box overlaps no other (its look is its
   own person's) and looks like another track that could be found there (step 3b's rule): a
   look that merely changed (the light, a box not fitted to its person) leaves the match to
   overlap. Where two people meet, stop or turn back, their boxes and predictions overlap
   both tracks and overlap alone swapped their ids; their clothes keep them apart
   (``tests/test_track_appearance.py``). A lost track that step 3b would find again in a box
   (looks, reach and distinctness as there, against the tracks not lost and those within
   reach) competes for that box here too where its prediction overlaps it: a person hidden
   longer than ``max_age`` in a box the detector drew over two people came out of it in a
   box that also overlapped a track whose own person was hidden, which took it before step 3b
   saw it (a tracking trial on ``vtest.avi``; ``benchmarks/track_switches.py`` unchanged: 86
   switches, 42 exchanges, 5 pedestrians, YOLOX-nano boxes).
3b. Re-identification: detections still unmatched and tracks still unmatched (lost ones too)
   whose looks are within :data:`REID_DISTANCE`, whose centres are within reach (the detection's
   centre from the track's last or predicted box centre at most :data:`REID_REACH` box heights
   plus :data:`REID_REACH_PER_FRAME` per processed frame missed, :data:`REID_MAX_REACH` at
   most) and whose heights differ by at most :data:`REID_HEIGHT_RATIO`, and whose look is
   nearer than :data:`REID_RATIO` of the detection's distance to the look of any other track
   in the picture (matched in step 3) or within reach, are matched by least look distance: a
   person hidden behind another for longer than ``max_age`` keeps their id, and a box that
   looks like several people (two dressed alike, a team's players) is found again as none.
4. Unmatched detections start new tracks, highest score first; ids are 0, 1, 2, ... in order
   of creation and never reused.
5. With ``max_people``, at most that many tracks are *followed* at a time: a followed track
   keeps its place while it lives (also in frames it is missed, up to ``max_age``, unless it
   walked out: its last box at the picture's left or right side, moving out); free places
   go to the tracks of boxes followed unseen so far (those matched in more frames first, then by
   score), then to new boxes by score, each starting a new id. The other boxes get ``-1`` but are
   tracked unseen, so that they match their own tracks and never a followed person's (without
   them, a man walking through the box of a followed one who was hidden for a moment took his
   id: a user trial). A lost followed track that is re-identified is followed again only where
   there is a free place (before the tracks followed unseen); else its box is tracked unseen.

A track's look is a running average of the looks of its boxes that overlap no other box
(:data:`LOOK_RATE` of each new one), so a person's look is not their neighbour's.

At the end, tracks matched in fewer than ``min_length`` frames are dropped (:meth:`finalize`,
:func:`track_boxes`). Everything is deterministic: ties are broken by detection score, then by
the detection's index in the frame.
"""

from __future__ import annotations

import collections
import logging
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from wbcap.limits import CUT_THRESHOLD
from wbcap.track.appearance import LOOK_SIZE, look_distances
from wbcap.track.cuts import CutFinder, FrameChange

__all__ = ["IoUTracker", "TrackerConfig", "iou_matrix", "track_boxes"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 2  # (2: tracks' looks; 1 is read too)
_FORBIDDEN = 1e6  # assignment cost of a pair below the IoU threshold

# Looks (step 3 of the module docstring). Calibrated on the tracks of 400 frames of OpenCV's
# vtest.avi (YOLOX-nano boxes, ~7 people a frame, 50-120 px tall), boxes overlapping no other:
# a box against its own track's running look (LOOK_RATE 0.3) is at 0.17 (median), 0.29 (95 %),
# 0.43 (99 %), 0.60 (99.9 %); against the looks of the other tracks seen in the last 60 frames at
# 0.61 (median), 0.34 (5 %), 0.25 (1 %).
#: Weight of the look distance (0-1) in the assignment cost, beside ``1 - IoU``.
LOOK_WEIGHT = 1.0
#: A box overlapping no other is not matched by overlap to a track whose look is farther than this.
LOOK_GATE = 0.6
#: Re-identification (step 3b) needs looks at most this far apart ...
REID_DISTANCE = 0.3
#: ... centres within this many box heights (the larger of the two), plus this many per processed
#: frame the track was missed, at most that many ...
REID_REACH, REID_REACH_PER_FRAME, REID_MAX_REACH = 0.5, 0.05, 2.0
#: ... and heights at most this ratio apart; and the look at most this share of its distance to
#: any other track's (two people dressed alike in the picture, a team's players: a box that looks
#: like several tracks is found again as none of them, a new id rather than another's).
REID_HEIGHT_RATIO, REID_RATIO = 1.5, 0.8
#: A track whose last box is within this share of the picture's width of its left or right side,
#: moving out of it at more than this many box heights a frame, walked out of the picture: once
#: lost (after ``max_age``) it is not re-identified (a participant leaving a lab's camera and the
#: next, dressed alike, walking in there a second later would take their id; 5 %: a detector
#: loses a person half out of the picture before their box reaches the side, an HCI trial's 3 %).
SIDE_MARGIN, SIDE_SPEED = 0.05, 0.005
#: Weight of a new look (of a box overlapping no other) in a track's running look.
LOOK_RATE = 0.3
#: A box is clean (its look is its person's) where no other box covers more than this share of it.
CLEAN_OVERLAP = 0.1
# With looks a box may also stay unmatched (then step 3b), at a cost above any one allowed pair's
# (``1 - iou_threshold + LOOK_WEIGHT``) by this: a lone box and track that overlap are matched
# whatever their looks, but two boxes are not each given the other's track (two pairs that look
# unlike) where one matches its own and the other can be re-identified. Without it the matching
# with the most pairs won: a man and a woman who met and turned back exchanged ids.
_SPARE_MARGIN = 0.01


@dataclass(frozen=True)
class TrackerConfig:
    """Parameters of :class:`IoUTracker`.

    Attributes:
        iou_threshold: smallest IoU between a detection and a track's predicted box for them to
            be matched, in ``[0, 1]``.
        max_age: processed frames a track survives unmatched: a track last matched at frame
            ``f`` can be matched again up to frame ``f + (max_age + 1) * frame_stride``.
        frame_stride: source frames from one processed frame to the next (``wbcap run
            --every``), so that the frames skipped in between do not age tracks: with ages
            counted in frame indices, ``--every 10`` ended every track at every processed frame
            (a miss of 9 frames beyond the default ``max_age`` of 5) and a run kept no track.
        min_length: tracks matched in fewer frames than this are dropped at the end.
        max_people: at most this many tracks followed at a time, the other boxes tracked unseen
            (step 5 of the module docstring; ``None``: no limit).
        motion: ``'constant_velocity'`` predicts each track's box from its velocity,
            ``'static'`` uses its last box.
        velocity_smoothing: weight of the previous velocity in the moving average, ``[0, 1)``;
            ``0`` uses the latest displacement only.
        drop_static: drop tracks judged static false positives (long, low-score, motionless:
            :mod:`wbcap.track.static_filter`) after tracking. Applied by ``wbcap run``'s
            second pass, which has each track's times and scores; :class:`IoUTracker` itself
            does not use it. ``--keep-static`` sets it False.
        cut_threshold: every track ends at a frame whose content change from the frame before
            reaches this (a cut between shots: :mod:`wbcap.track.cuts`, 0-255; ``wbcap run
            --cut-threshold``); None (``--no-cuts``): tracks go on across cuts. Applied by
            ``wbcap run`` (:class:`PeopleLimit`, pass 2), which measures the changes;
            :class:`IoUTracker` itself does not use it (:meth:`IoUTracker.end_tracks` ends them).
        appearance: use the boxes' looks where :meth:`IoUTracker.update` is given them (steps 3
            and 3b of the module docstring); False (``--no-appearance``): overlap alone.
        reid_age: a track missed for longer than ``max_age`` can still be re-identified by its
            look (step 3b) while missed for up to this many processed frames (counted as
            ``max_age``: last matched at ``f``, up to frame ``f + (reid_age + 1) * frame_stride``;
            ``wbcap run --reid-age``, default 30). Not more than ``max_age`` (or 0): no such
            lost tracks.
    """

    iou_threshold: float = 0.3
    max_age: int = 5
    min_length: int = 3
    max_people: int | None = None
    frame_stride: int = 1
    motion: Literal["constant_velocity", "static"] = "constant_velocity"
    velocity_smoothing: float = 0.5
    drop_static: bool = True
    cut_threshold: float | None = CUT_THRESHOLD
    appearance: bool = True
    reid_age: int = 30

    def __post_init__(self) -> None:
        if self.cut_threshold is not None and not 0.0 < self.cut_threshold <= 255.0:
            raise ValueError(f"cut_threshold must be in (0, 255] or None, got {self.cut_threshold}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.max_age < 0 or self.min_length < 0 or self.reid_age < 0:
            raise ValueError("max_age, min_length and reid_age must be >= 0")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.max_people is not None and self.max_people < 0:
            raise ValueError(f"max_people must be >= 0 or None, got {self.max_people}")
        if self.motion not in ("constant_velocity", "static"):
            raise ValueError(f"unknown motion model {self.motion!r}")
        if not 0.0 <= self.velocity_smoothing < 1.0:
            raise ValueError(f"velocity_smoothing must be in [0, 1), got {self.velocity_smoothing}")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of ``(x, y, w, h)`` boxes.

    0 when either box is empty.

    Args:
        a: ``(N, 4)`` boxes, pixels.
        b: ``(M, 4)`` boxes, pixels.

    Returns:
        ``(N, M)`` float64 IoU in ``[0, 1]``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter = _intersections(a, b)
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    safe = np.where(union > 0, union, 1.0)
    return np.where((inter > 0) & (union > 0), inter / safe, 0.0)


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` areas (pixels²) where ``(N, 4)`` and ``(M, 4)`` ``(x, y, w, h)`` boxes overlap."""
    ax1, ay1 = a[:, 0:1], a[:, 1:2]
    ax2, ay2 = ax1 + a[:, 2:3], ay1 + a[:, 3:4]
    bx1, by1 = b[None, :, 0], b[None, :, 1]
    bx2, by2 = bx1 + b[None, :, 2], by1 + b[None, :, 3]
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    return np.where((iw > 0) & (ih > 0), iw * ih, 0.0)


def _areas(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` areas of ``(N, 4)`` ``(x, y, w, h)`` boxes (0 for an empty one)."""
    return np.clip(boxes[:, 2], 0, None) * np.clip(boxes[:, 3], 0, None)


@dataclass(eq=False)  # (compared by identity: list.remove of one unseen track met another's arrays, a review)
class _Track:
    """Mutable state of one live track (internal)."""

    track_id: int
    box: np.ndarray  # (4,) last matched box, xywh pixels
    velocity: np.ndarray  # (2,) centre velocity, pixels per frame
    first_frame: int
    last_frame: int
    hits: int  # frames matched
    followed: bool = True  # False: a box beyond max_people, tracked unseen (no id handed out)
    look: np.ndarray | None = None  # (LOOK_SIZE,) float64 running look, None before the first
    look_clean: bool = False  # the look is of boxes overlapping no other (else of a first, overlapped one)
    at_side: bool = False  # its last box reached the picture's left or right side (walked out: not re-identified)

    def predict(self, frame_index: int, motion: str) -> np.ndarray:
        """Predicted ``(4,)`` xywh box at ``frame_index``."""
        if motion == "static":
            return self.box.copy()
        box = self.box.copy()
        box[:2] += self.velocity * (frame_index - self.last_frame)
        return box


def _clean_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: boxes no other box of the frame covers more than :data:`CLEAN_OVERLAP` of."""
    n = len(boxes)
    if n < 2:
        return np.ones(n, bool)
    cover = _intersections(boxes, boxes) / np.maximum(_areas(boxes), 1e-9)[:, None]
    np.fill_diagonal(cover, 0.0)
    return ~(cover > CLEAN_OVERLAP).any(1)


def _at_side(box: np.ndarray, velocity: np.ndarray, size: tuple[float, float]) -> bool:
    """Whether a track walked out of a picture ``(width, height)``: its ``(x, y, w, h)`` box
    reaches the left or right side, and its centre's velocity (pixels per frame) points out of it
    by more than :data:`SIDE_SPEED` box heights a frame (someone standing at the side, cut off by
    it, only hidden for a while, is still re-identified: a review)."""
    margin, speed = SIDE_MARGIN * float(size[0]), SIDE_SPEED * float(box[3])
    return bool((box[0] <= margin and velocity[0] < -speed)
                or (box[0] + box[2] >= float(size[0]) - margin and velocity[0] > speed))


def _distinct(dist: np.ndarray, rivals: np.ndarray) -> np.ndarray:
    """``(N, M)`` bool: whether each box is nearer each track's look than :data:`REID_RATIO` of
    its distance to the look of any other of its ``rivals`` (``(N, M)`` bool) (step 3b);
    ``dist`` ``(N, M)`` look distances, NaN: none."""
    d = np.where(np.isnan(dist), np.inf, dist)
    if d.shape[1] < 2:
        return np.ones(d.shape, bool)
    r = np.where(rivals, d, np.inf)
    two = np.sort(r, axis=1)[:, :2]  # (N, 2) the rivals' smallest and next
    others = np.where(rivals & (r <= two[:, :1]), two[:, 1:], two[:, :1])  # (the least of the others')
    return d < REID_RATIO * others


def _within_reach(tracks: list[_Track], preds: np.ndarray, boxes: np.ndarray, frame_index: int,
                  stride: int) -> np.ndarray:
    """``(N, M)`` bool: whether each box is where each track, missed since its last match, may be
    found again (step 3b): centre within reach of the track's last or predicted box centre, and
    heights at most :data:`REID_HEIGHT_RATIO` apart. ``preds``: the tracks' ``(M, 4)`` predictions."""
    last = np.stack([tr.box for tr in tracks])  # (M, 4)
    missed = (frame_index - np.array([tr.last_frame for tr in tracks], np.float64)) / stride
    th, bh = np.maximum(last[None, :, 3], 1e-9), np.maximum(boxes[:, None, 3], 1e-9)
    reach = np.maximum(th, bh) * np.minimum(REID_REACH + REID_REACH_PER_FRAME * missed[None, :], REID_MAX_REACH)
    centre = boxes[:, None, :2] + boxes[:, None, 2:] / 2.0
    near = np.minimum(np.hypot(*np.moveaxis(centre - (last[None, :, :2] + last[None, :, 2:] / 2.0), -1, 0)),
                      np.hypot(*np.moveaxis(centre - (preds[None, :, :2] + preds[None, :, 2:] / 2.0), -1, 0)))
    return (near <= reach) & (np.maximum(th, bh) / np.minimum(th, bh) <= REID_HEIGHT_RATIO)


class IoUTracker:
    """Online IoU tracker (see the module docstring for the algorithm).

    Example::

        tracker = IoUTracker(TrackerConfig())
        for f, (boxes, scores) in enumerate(detections):
            ids = tracker.update(f, boxes, scores)      # one id (or -1) per box
        kept = tracker.finalize()                       # ids of tracks long enough
    """

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self._tracks: list[_Track] = []  # live tracks, by increasing id
        self._hits: dict[int, int] = {}  # frames matched, every track ever created
        self._next_id = 0
        self._last_frame: int | None = None

    @property
    def active_ids(self) -> list[int]:
        """Ids of the followed tracks that can still be matched (ended ones excluded, lost ones
        that may be re-identified included), increasing."""
        return sorted(tr.track_id for tr in self._tracks if tr.followed)

    def update(
        self, frame_index: int, boxes: np.ndarray, scores: np.ndarray | None = None,
        left_out: np.ndarray | None = None, looks: np.ndarray | None = None,
        size: tuple[float, float] | None = None,
    ) -> list[int]:
        """Assign this frame's detections to tracks.

        Args:
            frame_index: index of the frame, larger than at the previous call.
            boxes: ``(N, 4)`` ``(x, y, w, h)`` pixels (``N`` may be 0).
            scores: ``(N,)`` detection scores (larger is more certain), or ``None`` for all 1.
            left_out: ``(N,)`` bool, boxes known to be beyond the limit (``wbcap run``'s pass 2
                replaying pass 1's choice, :func:`wbcap.io.raw_records.choice_boxes`): tracked
                unseen, never matched to a followed track, never given an id. None: none.
            looks: ``(N, LOOK_SIZE)`` the boxes' looks (:func:`wbcap.track.appearance.box_looks`;
                a row of zeros: none), or None: overlap alone (as with ``appearance`` off).
            size: the picture's ``(width, height)`` pixels, or None (unknown): a track whose
                last box reaches its left or right side (within :data:`SIDE_MARGIN`), moving
                out of it, walked out and is not re-identified once lost (step 1).

        Returns:
            ``N`` track ids, one per box in the given order; ``-1`` for a box that got none
            (beyond ``max_people``, or ``left_out``).
        """
        cfg = self.config
        frame_index = int(frame_index)
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(
                f"frame_index must increase: got {frame_index} after {self._last_frame}"
            )
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
        n = boxes.shape[0]
        scores = np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {scores.shape}")
        out = np.zeros(n, bool) if left_out is None else np.asarray(left_out, bool).reshape(-1)
        if out.shape != (n,):
            raise ValueError(f"left_out must have shape ({n},), got {out.shape}")
        if looks is not None:
            looks = np.asarray(looks, dtype=np.float64)
            if looks.shape != (n, LOOK_SIZE) and not (n == 0 and looks.size == 0):
                raise ValueError(f"looks must have shape ({n}, {LOOK_SIZE}), got {looks.shape}")
            if not cfg.appearance or not n:
                looks = None
        self._last_frame = frame_index

        # 1. Tracks missed for more than max_age processed frames are lost; lost ones end once past
        # reid_age, or at once without a look.
        live_age = (cfg.max_age + 1) * cfg.frame_stride
        reid_age = (max(cfg.reid_age, cfg.max_age) + 1) * cfg.frame_stride if cfg.appearance else live_age
        self._tracks = [
            tr for tr in self._tracks
            if frame_index - tr.last_frame <= (reid_age if tr.look is not None and not tr.at_side else live_age)
        ]
        lost = np.array([frame_index - tr.last_frame > live_age for tr in self._tracks], bool)

        # Detections in priority order: score descending, then index (stable).
        order = np.argsort(-scores, kind="stable")
        has_look = np.zeros(n, bool) if looks is None else looks.sum(1) > 0
        clean = _clean_boxes(boxes) & has_look
        track_looks = [tr.look for tr in self._tracks]
        dist = np.full((n, len(self._tracks)), np.nan)
        if looks is not None and any(lk is not None for lk in track_looks):
            with_look = [c for c, lk in enumerate(track_looks) if lk is not None]
            dist[:, with_look] = look_distances(looks, np.stack([track_looks[c] for c in with_look]))
            dist[~has_look] = np.nan
        # a box left out is matched to no followed track (when it was chosen it matched none)
        barred = out[:, None] & np.array([tr.followed for tr in self._tracks], bool)[None, :]
        # (but may be re-identified as a lost followed track, as pass 1 found it there before the
        # limit left it out: so no kept box takes that track in pass 2 where none did in pass 1)
        barred_live = barred & ~lost[None, :]

        # 2-3. Predict, gate, assign (tracks not lost).
        match: dict[int, _Track] = {}  # detection index -> track
        if n and self._tracks:
            preds = np.stack([tr.predict(frame_index, cfg.motion) for tr in self._tracks])
            iou = iou_matrix(boxes[order], preds)  # (N, M) in priority order
            if cfg.frame_stride > 1 and cfg.motion == "constant_velocity":  # (turned or stopped: step 3)
                recent = np.array([frame_index - tr.last_frame <= 2 * cfg.frame_stride for tr in self._tracks], bool)
                if recent.any():
                    last = iou_matrix(boxes[order], np.stack([tr.box for tr in self._tracks]))
                    iou[:, recent] = np.maximum(iou[:, recent], last[:, recent])
            overlapping = iou >= cfg.iou_threshold
            if cfg.iou_threshold == 0.0:
                overlapping &= iou > 0.0
            allowed = overlapping & ~lost[None, :] & ~barred[order]
            seen = ~np.isnan(dist)
            # a box whose look is someone else's nearby (a track it could be re-identified as) is not
            # matched by overlap to a track it does not look like (a look that merely changed, light
            # or a box not fitted to its person, leaves the match to overlap)
            near = (_within_reach(self._tracks, preds, boxes, frame_index, cfg.frame_stride) if seen.any()
                    else np.zeros(seen.shape, bool))
            like = seen & (np.nan_to_num(dist, nan=1.0) <= REID_DISTANCE) & near
            unlike = seen & (np.nan_to_num(dist) > LOOK_GATE) & (clean & like.any(1))[:, None]
            allowed &= ~unlike[order]
            # a lost track that step 3b would find again in a box it overlaps competes for it here
            if lost.any() and seen.any():
                revive = lost[None, :] & like & ~barred_live & _distinct(dist, near | ~lost[None, :])
                allowed |= overlapping & revive[order]
            cost = np.where(allowed, 1.0 - iou + LOOK_WEIGHT * np.nan_to_num(dist[order]), _FORBIDDEN)
            if seen.any():  # (a box may stay unmatched, for step 3b, at more than any one allowed pair costs)
                spare = np.full((n, n), _FORBIDDEN)
                np.fill_diagonal(spare, 1.0 - cfg.iou_threshold + LOOK_WEIGHT + _SPARE_MARGIN)
                cost = np.concatenate([cost, spare], 1)
            rows, cols = linear_sum_assignment(cost)
            cols = np.where(cols < len(self._tracks), cols, -1)
            for r, c in zip(rows, cols):
                if c >= 0 and allowed[r, c]:
                    match[int(order[r])] = self._tracks[c]
            # 3b. Re-identification by look of the boxes and tracks left (lost ones too).
            taken = {id(tr) for tr in match.values()}
            free_d = [i for i in range(n) if i not in match and has_look[i]]
            free_t = [c for c, tr in enumerate(self._tracks) if id(tr) not in taken and tr.look is not None]
            if free_d and free_t:
                d = dist[np.ix_(free_d, free_t)]
                # (the rivals: the people in the picture, matched above, and every track within reach)
                rivals = near | np.array([id(tr) in taken for tr in self._tracks], bool)[None, :]
                ok = (like & ~barred_live & _distinct(dist, rivals))[np.ix_(free_d, free_t)]
                if ok.any():
                    rows, cols = linear_sum_assignment(np.where(ok, d, _FORBIDDEN))
                    for r, c in zip(rows, cols):
                        if ok[r, c]:
                            match[free_d[r]] = self._tracks[free_t[c]]

        def observe(i: int) -> None:
            self._observe(match[i], boxes[i], frame_index, None if looks is None else looks[i], bool(clean[i]))

        ids = [-1] * n
        # (a followed track whose last box walked out holds no place once missed: with max_people 1
        # a participant who left kept it up to max_age frames and the one in view went without, a
        # trial. Matched in this frame, still at the side, it takes a place first, as a lost track
        # found again does, so it keeps its own while there is one)
        was_lost = {id(tr) for tr, gone in zip(self._tracks, lost) if gone or (tr.followed and tr.at_side)}
        revived = [i for i in match if match[i].followed and id(match[i]) in was_lost]
        followed = [i for i in match if match[i].followed and id(match[i]) not in was_lost]
        for i in followed:
            observe(i)
            ids[i] = match[i].track_id
        # 5. Who else gets an id: with max_people, only while fewer followed tracks live (a followed
        # person missed keeps their place until their track is lost), lost followed tracks
        # re-identified first, then the boxes of tracks followed unseen (more hits, then score),
        # then new boxes by score.
        if cfg.max_people is None:
            slots = n
        else:
            holding = sum(tr.followed and id(tr) not in was_lost for tr in self._tracks)
            slots = max(cfg.max_people - holding, 0)
        unseen = sorted((i for i in match if not match[i].followed and not out[i]),
                        key=lambda i: (-match[i].hits, -scores[i], i))
        new = [int(i) for i in order if int(i) not in match]
        chosen = ([i for i in revived if not out[i]] + unseen + [i for i in new if not out[i]])[:slots]
        for i in chosen:  # 4. new ids (tracks followed from now on), in that order
            if i in revived:  # (a lost followed track found again: its id goes on)
                observe(i)
                ids[i] = match[i].track_id
                continue
            tr = _Track(track_id=self._next_id, box=boxes[i].copy(), velocity=np.zeros(2), first_frame=frame_index,
                        last_frame=frame_index, hits=1)
            if i in match:  # (a track followed unseen: followed from here on, its motion and birth going on
                self._tracks.remove(match[i])  # (a flash's end): pass 2 tracks the boxes left out too, alike)
                tr.velocity, tr.first_frame = match[i].velocity.copy(), match[i].first_frame
                tr.look, tr.look_clean = match[i].look, match[i].look_clean
            self._next_id += 1
            self._tracks.append(tr)
            self._hits[tr.track_id] = 1
            ids[i] = tr.track_id
            self._look(tr, None if looks is None else looks[i], bool(clean[i]))
        # The rest, beyond max_people, are tracked unseen: their boxes keep to their own tracks,
        # so a followed person missed for a moment is not taken over by one passing (a user trial:
        # --max-people 3 switched a followed man's id to another who walked through his box).
        for i in (i for i in match if not match[i].followed and i not in chosen):
            observe(i)
        for i in (i for i in [*new, *revived] if i not in chosen):  # (a lost followed track left lost)
            tr = _Track(track_id=-1, box=boxes[i].copy(), velocity=np.zeros(2), first_frame=frame_index,
                        last_frame=frame_index, hits=1, followed=False)
            self._tracks.append(tr)
            self._look(tr, None if looks is None else looks[i], bool(clean[i]))
        if size is not None:
            for tr in self._tracks:
                if tr.last_frame == frame_index:
                    tr.at_side = _at_side(tr.box, tr.velocity, size)
        return ids

    def _observe(self, tr: _Track, box: np.ndarray, frame_index: int, look: np.ndarray | None = None,
                 clean: bool = False) -> None:
        """Update a matched track with its new box (and look)."""
        gap = frame_index - tr.last_frame
        old_c = tr.box[:2] + tr.box[2:] / 2.0
        new_c = box[:2] + box[2:] / 2.0
        step = (new_c - old_c) / gap
        if tr.hits == 1 or gap > (self.config.max_age + 1) * self.config.frame_stride:
            tr.velocity = step if tr.hits == 1 else np.zeros(2)  # (found again after being lost: moving anew)
        else:
            s = self.config.velocity_smoothing
            tr.velocity = s * tr.velocity + (1.0 - s) * step
        tr.box = box.copy()
        tr.last_frame = frame_index
        tr.hits += 1
        if tr.followed:
            self._hits[tr.track_id] = tr.hits
        self._look(tr, look, clean)

    @staticmethod
    def _look(tr: _Track, look: np.ndarray | None, clean: bool) -> None:
        """Fold a box's look into its track's running look (module docstring)."""
        if look is None or not look.any():
            return
        if tr.look is None or (clean and not tr.look_clean):
            tr.look, tr.look_clean = look.astype(np.float64), clean
        elif clean:
            tr.look = (1.0 - LOOK_RATE) * tr.look + LOOK_RATE * look

    def end_tracks(self, born_after: int | None = None) -> None:
        """End every live track (a cut between shots: none is matched again; the next boxes start
        new ids), or with ``born_after`` those whose first frame is after that frame index (the
        end of a flash or cutaway: the tracks from before it go on)."""
        self._tracks = [] if born_after is None else [tr for tr in self._tracks if tr.first_frame <= born_after]

    def finalize(self) -> set[int]:
        """Ids of the tracks kept: matched in at least ``min_length`` frames (state unchanged)."""
        return {tid for tid, hits in self._hits.items() if hits >= self.config.min_length}

    def track_lengths(self) -> dict[int, int]:
        """Frames matched per track id, for every track created so far."""
        return dict(self._hits)

    def state_dict(self) -> dict[str, Any]:
        """The tracker's state as plain Python values (JSON-serialisable, exact for floats).

        ``load_state_dict`` of it on a new tracker with the same config continues exactly as
        this one would.
        """
        return {
            "version": _STATE_VERSION,
            "config": asdict(self.config),
            "next_id": self._next_id,
            "last_frame": self._last_frame,
            "hits": [[tid, hits] for tid, hits in sorted(self._hits.items())],
            "tracks": [
                {
                    "id": tr.track_id,
                    "box": [float(v) for v in tr.box],
                    "velocity": [float(v) for v in tr.velocity],
                    "first_frame": tr.first_frame,
                    "last_frame": tr.last_frame,
                    "hits": tr.hits,
                    "followed": tr.followed,
                    "look": None if tr.look is None else [float(v) for v in tr.look],
                    "look_clean": tr.look_clean,
                    "at_side": tr.at_side,
                }
                for tr in self._tracks
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (this tracker's config is kept).

        Raises:
            ValueError: for an unknown state version.
        """
        if state.get("version") not in (1, _STATE_VERSION):
            raise ValueError(f"unsupported tracker state version {state.get('version')!r}")
        if state.get("config") != asdict(self.config):
            logger.warning("resuming tracker state saved with a different TrackerConfig")
        self._next_id = int(state["next_id"])
        last = state["last_frame"]
        self._last_frame = None if last is None else int(last)
        self._hits = {int(tid): int(h) for tid, h in state["hits"]}
        self._tracks = [
            _Track(
                track_id=int(d["id"]),
                box=np.asarray(d["box"], dtype=np.float64),
                velocity=np.asarray(d["velocity"], dtype=np.float64),
                first_frame=int(d["first_frame"]),
                last_frame=int(d["last_frame"]),
                hits=int(d["hits"]),
                followed=bool(d.get("followed", True)),
                look=None if d.get("look") is None else np.asarray(d["look"], dtype=np.float64),
                look_clean=bool(d.get("look_clean", False)),
                at_side=bool(d.get("at_side", False)),
            )
            for d in state["tracks"]
        ]


#: :class:`PauseFinder`'s frame interval is the median of this many last intervals ...
PAUSE_WINDOW = 31
#: ... once it has seen this many (before, the shortest seen).
PAUSE_MIN_INTERVALS = 3
#: A pause is longer than ``max_age`` + this many frame intervals (half a frame for a timestamp's
#: jitter) ...
PAUSE_SLACK = 1.5
#: ... and than this many: a frame or three dropped is no pause, however low ``--max-age`` (a
#: review: ``--max-age 0`` made one dropped frame a pause, ``1`` with jittery intervals 57 of 300).
PAUSE_LEAST_FRAMES = 4.5


class PauseFinder:
    """``finder(time)`` -> True where a processed frame (its time in seconds, given in order) comes
    after a pause in the source longer than a missed track lives: more than ``max_age + 1``
    processed frames (the most a track survives unmatched, :class:`TrackerConfig`) and half a
    frame (a timestamp's jitter), and more than :data:`PAUSE_LEAST_FRAMES`, a frame being the
    median of the last :data:`PAUSE_WINDOW` intervals between processed frames (from
    :data:`PAUSE_MIN_INTERVALS` of them; before, the shortest seen; no pause before an interval is
    seen): the frames' own rate, not a container's average, which the pauses themselves lower (a
    break-it trial: a 0.85 s pause in 10 fps footage averaged 7.3 fps and went unseen; a 10 s
    pause after 3 frames, 0.48 fps). After a pause the intervals are counted afresh: footage
    that goes on at a rate several times lower (30 fps, then 4) has one pause where it slows, not
    one per frame until the median follows (a break-it trial: 15, every person after it lost).
    Causal, so that both passes decide alike on the same times.

    The tracker counts frames, so across such a pause (a camera stopped and started again, a
    motion-triggered recording) a track would match whoever stands where its box was (an HCI
    trial: an id on another man 38 s later); both passes end every track there
    (:class:`PeopleLimit`, :func:`wbcap.track.collect.collect_tracks`).
    :attr:`limit`: the longest gap (s) that is no pause, now (inf before an interval is seen)."""

    def __init__(self, max_age: int) -> None:
        self._factor = max(max_age + PAUSE_SLACK, PAUSE_LEAST_FRAMES)
        self._intervals: collections.deque[float] = collections.deque(maxlen=PAUSE_WINDOW)
        self._last: float | None = None

    @property
    def limit(self) -> float:
        if not self._intervals:
            return float("inf")
        frame = (statistics.median(self._intervals) if len(self._intervals) >= PAUSE_MIN_INTERVALS
                 else min(self._intervals))
        return self._factor * frame

    def __call__(self, time: float) -> bool:
        paused = False
        if self._last is not None:
            gap = float(time) - self._last
            paused = gap > self.limit
            if paused:
                self._intervals.clear()
            else:
                self._intervals.append(gap)
        self._last = float(time)
        return paused


class PeopleLimit:
    """``--max-people`` in ``wbcap run``'s pass 1: which of a frame's detections are regressed.

    Those that an :class:`IoUTracker` with the run's tracker config (``config.max_people`` set)
    gives an id, by its rule (the module docstring's step 5): a followed person keeps their place
    while their track lives, free places go to the longest-tracked others, then to new boxes by
    score. So a person already followed stays followed when a higher-scoring one walks in;
    keeping the highest-scoring boxes of each frame instead switched between people from frame to
    frame and cut every track into pieces. Pass 2 tracks the kept boxes again, without a limit
    (each frame holds at most ``max_people`` of them), with the boxes left out given as
    ``left_out`` (:func:`wbcap.io.raw_records.choice_boxes`), so it sees the frames as this did.

    ``limit(frame_index, boxes (N, 4) xywh pixels, scores (N,), change=fc)`` -> the kept
    indices, in the given order; frame indices must increase (a resumed run first feeds the
    frames done before, every detection of them as its records keep it
    (:func:`wbcap.io.raw_records.detected_boxes`), so the tracks, unseen ones included, go on
    where they stopped). ``change``
    (the frame's :class:`~wbcap.track.cuts.FrameChange`; None: unknown) ends every track at a cut
    (``config.cut_threshold``; :class:`~wbcap.track.cuts.CutFinder`, which cannot look ahead, so
    the start of a flash counts too); ``time`` (seconds; None: unknown) ends every track after a
    pause (:class:`PauseFinder`), as pass 2 does; ``looks`` (``(N, LOOK_SIZE)``; None: none) are
    the boxes' looks and ``size`` the picture's ``(width, height)``, as pass 2 reads them from the
    records.

    Raises:
        ValueError: ``config.max_people`` is None.
    """

    def __init__(self, config: TrackerConfig) -> None:
        if config.max_people is None:
            raise ValueError("PeopleLimit needs a TrackerConfig with max_people set")
        self.max_people = int(config.max_people)
        self._tracker = IoUTracker(config)
        self._cuts = CutFinder(config.cut_threshold)
        self._pauses = PauseFinder(config.max_age)

    def __call__(self, frame_index: int, boxes: np.ndarray, scores: np.ndarray | None = None, *,
                 change: FrameChange | None = None, time: float | None = None,
                 looks: np.ndarray | None = None, size: tuple[float, float] | None = None) -> list[int]:
        paused = time is not None and self._pauses(time)
        if (change is not None and self._cuts(change)) or paused:
            self._tracker.end_tracks()
        ids = self._tracker.update(frame_index, boxes, scores, looks=looks, size=size)
        return [i for i, tid in enumerate(ids) if tid >= 0]


def track_boxes(
    frames: Iterable[tuple[int, np.ndarray, np.ndarray | None]],
    config: TrackerConfig = TrackerConfig(),
) -> list[list[int]]:
    """Track a whole sequence offline.

    Args:
        frames: ``(frame_index, boxes (N, 4) xywh pixels, scores (N,) or None)`` per frame,
            frame indices increasing.
        config: tracker parameters.

    Returns:
        One list per frame of the track id of each box (original ids, not renumbered), ``-1``
        for boxes without a track and for tracks shorter than ``config.min_length``.
    """
    tracker = IoUTracker(config)
    per_frame = [tracker.update(f, boxes, scores) for f, boxes, scores in frames]
    kept = tracker.finalize()
    return [[tid if tid in kept else -1 for tid in ids] for ids in per_frame]
