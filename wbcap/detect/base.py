"""What a person detector returns, and the interface every detector follows.

Boxes are ``(x, y, w, h)`` in pixels of the image given to the detector: ``(x, y)`` is the
top-left corner, x to the right, y down, origin at the top-left corner of the top-left pixel
(OpenCV's ``cv::Rect`` convention, as floats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One person in one image.

    Attributes:
        box: ``(x, y, w, h)`` in pixels, float; ``w, h > 0`` for real boxes.
        score: detector confidence, larger is more certain. Its scale depends on the detector
            (an SVM margin for HOG, 1.0 for user-given boxes); compare scores from one
            detector only.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as ``(x1, y1, x2, y2)`` corners, pixels."""
        x, y, w, h = self.box
        return (x, y, x + w, y + h)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(self.box[2], 0.0) * max(self.box[3], 0.0)


@runtime_checkable
class Detector(Protocol):
    """Finds people in one image.

    Attributes:
        name: short identifier recorded in outputs (e.g. ``"hog"``, ``"full-image"``).
    """

    name: str

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect people.

        Args:
            image: ``(H, W, 3)`` ``uint8`` RGB.

        Returns:
            Detections sorted by score, highest first (possibly empty).
        """
        ...


def sort_by_score(detections: list[Detection]) -> list[Detection]:
    """Detections ordered by score, highest first (stable for equal scores)."""
    return sorted(detections, key=lambda d: -d.score)


def largest_first(detection: Detection) -> tuple[float, float]:
    """Sort key: box area (``w * h`` pixels), largest first, then score, highest first: the
    people nearest the camera first, whatever the detector's scores mean (HOG's SVM margins put
    a photo's main person, 0.13, below the spectators around him, 0.3-1.2: a user trial of
    ``wbcap image --max-people 1``)."""
    return -float(detection.box[2]) * float(detection.box[3]), -detection.score


#: How the fallback detector is named where ``auto`` falls back to it (the run's notice, doctor).
HOG_FALLBACK = "OpenCV HOG (poor on real photos and footage)"

#: What the detectors whose scores are probabilities call them (:func:`check_probability_threshold`).
YOLOX_SCORES = "YOLOX's scores lie (objectness x person probability; default 0.3)"
FRCNN_SCORES = "Faster R-CNN's scores lie (default 0.5)"
#: ``--detector auto``'s (YOLOX, else Faster R-CNN: probabilities; its HOG fallback keeps its own margin).
AUTO_SCORES = "the scores of {detector} auto's detectors lie (YOLOX, Faster R-CNN; for HOG's SVM margins use {detector} hog)"


def check_probability_threshold(value: float, scores: str) -> None:
    """Refuse a score threshold outside [0, 1] (NaN too) for a detector whose scores are
    probabilities (YOLOX, Faster R-CNN; HOG's are SVM margins): -3 or 5 were taken, and a
    threshold at or under 0 kept every box (a user trial). ``scores``: :data:`YOLOX_SCORES`,
    :data:`FRCNN_SCORES` or :data:`AUTO_SCORES` (its ``{detector}`` filled in).

    Raises:
        InputError: one line naming the setting (``--score-threshold`` in the CLI) and the range.
    """
    if not 0.0 <= value <= 1.0:
        from wbcap.errors import InputError, setting

        raise InputError(f"{setting('score_threshold')} {value:g} is outside [0, 1], where {scores}: give one between "
                         "0 and 1, higher for fewer boxes")
