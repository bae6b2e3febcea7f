"""Hard cuts between shots of an edited video, so that no track id carries from one shot into the next.

A user trial on edited footage: at a cut the person of the next shot stood where the person of the
previous one had stood (box IoU 0.42), and the tracker gave the new person the old id, one track
and one animation across two people. ``wbcap run`` now measures, in pass 1, how much each processed
frame differs from the one before (:class:`ChangeMeter`; the raw record's ``change``), and pass 2
(and ``--max-people``'s choice in pass 1) ends every track at a cut (:class:`CutFinder`).

The measure is PySceneDetect's ``ContentDetector`` score (``scenedetect/detectors/content_detector.py``,
default weights): the mean absolute difference of hue, saturation and value (OpenCV's 8-bit HSV: hue
0-179, the others 0-255; hue not taken round its circle), averaged over the three, between two
consecutive frames; a cut where it reaches its default threshold 27, at most one per
:data:`MIN_SHOT_SECONDS` (its ``min_scene_len`` of 15 frames, at 30 fps). Frames are compared at
:data:`COMPARE_WIDTH` pixels wide, bilinearly scaled, as PySceneDetect's ``SceneManager`` scales
them by default (``scene_manager.py``: ``DEFAULT_MIN_WIDTH``, ``Interpolation.LINEAR``), which also
keeps the cost near 0.1 ms a frame at 1080p and 4K (area averaging took 5-6 ms). The library itself is not used: it
requires ``opencv-python``, which installs a second ``cv2`` over the ``opencv-python-headless`` wbcap
depends on, and its detector wants its own timecode objects for a dozen lines of arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CUT_THRESHOLD", "MIN_SHOT_SECONDS", "ChangeMeter", "CutFinder", "content_change", "hsv_thumbnail"]

#: A frame whose change from the previous (:func:`content_change`, 0-255) reaches this starts a new shot.
CUT_THRESHOLD = 27.0
#: No cut within this many seconds of the previous one (a flash, a few frames of a wipe).
MIN_SHOT_SECONDS = 0.5
#: Width in pixels at which frames are compared.
COMPARE_WIDTH = 256


def hsv_thumbnail(image: np.ndarray) -> np.ndarray:
    """``image`` (``(H, W, 3)`` uint8 RGB) at :data:`COMPARE_WIDTH` pixels wide (bilinear; a
    narrower image kept as it is), in OpenCV's 8-bit HSV: ``(h, w, 3)`` uint8."""
    import cv2

    h, w = image.shape[:2]
    if w > COMPARE_WIDTH:
        size = (COMPARE_WIDTH, max(1, round(h * COMPARE_WIDTH / w)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)


def content_change(a: np.ndarray, b: np.ndarray) -> float:
    """The mean absolute difference of two :func:`hsv_thumbnail` images, over pixels and the three
    channels (0 for equal images, at most 255); images of different sizes differ wholly: 255."""
    if a.shape != b.shape:
        return 255.0
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


class ChangeMeter:
    """``meter(image)``: the :func:`content_change` of each image from the one given before it
    (rounded to 1e-3, as the raw records keep it); None for the first."""

    def __init__(self) -> None:
        self._last: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> float | None:
        thumb = hsv_thumbnail(image)
        last, self._last = self._last, thumb
        return None if last is None else round(content_change(last, thumb), 3)


class CutFinder:
    """``finder(time, change)`` -> True where a frame starts a new shot: its ``change`` (from the
    processed frame before it; None: unknown, e.g. a record written before wbcap measured it)
    reaches ``threshold`` and the last cut is at least ``min_shot_seconds`` earlier. Feed it every
    processed frame in order. ``threshold`` None: never a cut."""

    def __init__(self, threshold: float | None = CUT_THRESHOLD, min_shot_seconds: float = MIN_SHOT_SECONDS) -> None:
        self.threshold = threshold
        self.min_shot_seconds = min_shot_seconds
        self._last_cut = -math.inf

    def __call__(self, time: float, change: float | None) -> bool:
        if self.threshold is None or change is None or change < self.threshold:
            return False
        if time - self._last_cut < self.min_shot_seconds - 1e-6:  # (0.7 - 0.2 < 0.5 in floats)
            return False
        self._last_cut = time
        return True
