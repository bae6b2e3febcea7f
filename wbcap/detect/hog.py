"""Built-in person detector: OpenCV's HOG + linear SVM people detector (Dalal & Triggs 2005).

It needs no download and runs on any CPU, which is why it is the default; it is far weaker than
a learned detector: it expects upright, mostly un-occluded people, misses strongly bent poses
(scores near 0) and fires on crowd textures. Give boxes (``--bbox``, a box file) or a stronger
detector when it fails.

How the model is used here:

* The SVM was trained on 64 x 128 windows holding a ~96-px-tall person with margins all round.
  OpenCV only *shrinks* the image to find bigger people, so the image is first resized so that
  the smallest person of interest (``min_height_frac`` of the image height) is 96 px tall:
  small images are upscaled (at most ``max_upscale``), large ones downscaled (faster).
* The image pyramid is built in octaves shrunk with area averaging; the levels within one
  octave (``pyramid_scale`` apart) are shrunk bilinearly as OpenCV's ``detectMultiScale`` does,
  and each searched with ``HOGDescriptor.detect``, several at a time in threads. OpenCV's own
  pyramid shrinks with bilinear interpolation all the way, which aliases at large factors and
  lowers the scores of big people; and its ``detectMultiScale`` can give windows each other's
  weights when levels finish together (see :meth:`HOGDetector.__call__`).
* A person as tall as the image needs the window's margins above and below, which the image
  does not have: the resized image is padded by 1/6 of its height on every side with replicated
  edge pixels (no gradients, so the padding adds no evidence).
* Raw windows (no OpenCV grouping) are merged by non-maximum suppression
  (``cv2.dnn.NMSBoxes``), then mapped back to the original image and clipped to it.
* Boxes are the detection windows, so they are **padded around the person**: the person spans
  about the middle 75 % of the box height and often less than half of its width. Set
  ``box_scale`` to resize boxes about their centre: ``(0.7, 0.9)`` gives a tight box as OpenCV's
  ``peopledetect.py`` sample draws it; values > 1 widen boxes, e.g. for people with arms spread.
* Scores are the SVM margin (unbounded, typically 0 to 3), not probabilities.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from wbcap.detect.base import Detection
from wbcap.errors import InputError

log = logging.getLogger(__name__)

_WIN_W, _WIN_H = 64, 128  # HOG window, px
_LEVELS_PER_OCTAVE = 15  # pyramid levels per detectMultiScale call (1.05**15 ~ 2.08)
_PERSON_PX = 96.0  # height of the person inside a window, px
# Window margin per side, as a fraction of the person height.
_PAD_FRAC = (_WIN_H - _PERSON_PX) / 2 / _PERSON_PX


class HOGDetector:
    """OpenCV's default HOG people detector with resizing, padding and NMS (module docstring).

    Args:
        score_threshold: minimum SVM margin of a kept window (OpenCV's ``hitThreshold``).
        min_height_frac: smallest person looked for, as a fraction of the image height; the
            person height is estimated as 75 % of the box height. Smaller is slower and finds
            more false positives; 0.2 suits photos of a subject, use ~0.1 for wide scenes.
        max_people: keep at most this many boxes (highest scores); None keeps all.
        nms_iou: boxes overlapping a higher-scoring box by more than this IoU are dropped.
        box_scale: ``(sx, sy)`` factors applied to box width and height about the box centre.
        max_upscale: cap on the upscaling factor for small images / small ``min_height_frac``.
        win_stride: window step in pixels of the resized image (multiple of 8; 4 is ~3x slower
            and localises better).
        pyramid_scale: size ratio between pyramid levels (> 1).
    """

    name = "hog"
    #: The default ``score_threshold`` (an SVM margin: OpenCV's ``hitThreshold`` default).
    DEFAULT_MARGIN = 0.0

    def __init__(
        self,
        score_threshold: float = DEFAULT_MARGIN,
        min_height_frac: float = 0.2,
        max_people: int | None = None,
        *,
        nms_iou: float = 0.4,
        box_scale: tuple[float, float] = (1.0, 1.0),
        max_upscale: float = 3.0,
        win_stride: int = 8,
        pyramid_scale: float = 1.05,
    ) -> None:
        if not 0.0 <= min_height_frac <= 1.0:
            raise ValueError(f"min_height_frac must be in [0, 1], got {min_height_frac}")
        if max_people is not None and max_people < 1:
            raise ValueError(f"max_people must be >= 1 or None, got {max_people}")
        if box_scale[0] <= 0 or box_scale[1] <= 0:
            raise ValueError(f"box_scale factors must be > 0, got {box_scale}")
        if win_stride <= 0 or win_stride % 8:
            raise ValueError(f"win_stride must be a positive multiple of 8, got {win_stride}")
        if pyramid_scale <= 1.0:
            raise ValueError(f"pyramid_scale must be > 1, got {pyramid_scale}")
        self.score_threshold = float(score_threshold)
        self.min_height_frac = float(min_height_frac)
        self.max_people = max_people
        self.nms_iou = float(nms_iou)
        self.box_scale = (float(box_scale[0]), float(box_scale[1]))
        self.max_upscale = float(max_upscale)
        self.win_stride = int(win_stride)
        self.pyramid_scale = float(pyramid_scale)
        self._hog: Any = None

    def _descriptor(self) -> Any:
        if self._hog is None:
            import cv2

            # OpenCV's default people-detector geometry (64x128 window, 16x16 blocks, 8x8
            # cells, 9 bins, L2-Hys, gamma correction) with the pyramid cut to one octave per
            # call (see __call__).
            hog = cv2.HOGDescriptor(
                (_WIN_W, _WIN_H), (16, 16), (8, 8), (8, 8), 9, 1, -1.0, 0, 0.2, True,
                _LEVELS_PER_OCTAVE,
            )
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            self._hog = hog
        return self._hog

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect people.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (channel order does not matter to HOG).

        Returns:
            Detections, ``(x, y, w, h)`` pixels of ``image``, clipped to it, score = SVM margin,
            sorted by score, highest first.
        """
        import cv2

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(
                f"HOG detector: expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                f"{image.dtype}; load images with wbcap.io.images.load_image"
            )
        height, width = image.shape[:2]
        min_person = self.min_height_frac * height
        scale = _PERSON_PX / min_person if min_person > 0 else max(1.0, _PERSON_PX / height)
        scale = min(scale, self.max_upscale)
        base_w, base_h = max(1, round(width * scale)), max(1, round(height * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        base = cv2.resize(image, (base_w, base_h), interpolation=interp) if scale != 1 else image

        hog = self._descriptor()
        octave = self.pyramid_scale**_LEVELS_PER_OCTAVE
        levels = []  # (padded octave image, pad, its unpadded width and height, scale within the octave)
        level_img = base
        while True:
            h_lvl, w_lvl = level_img.shape[:2]
            pad = int(np.ceil(_PAD_FRAC * h_lvl))
            if h_lvl + 2 * pad < _WIN_H or w_lvl + 2 * pad < _WIN_W:
                break
            padded = cv2.copyMakeBorder(level_img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            levels += [(padded, pad, w_lvl, h_lvl, s) for s in _octave_scales(padded.shape, self.pyramid_scale)]
            # Next octave: shrink with area averaging (OpenCV's own pyramid uses bilinear
            # resizing, which aliases when it shrinks by more than 2x and weakens big people).
            next_w, next_h = round(w_lvl / octave), round(h_lvl / octave)
            if next_h < 1 or next_w < 1:
                break
            level_img = cv2.resize(level_img, (next_w, next_h), interpolation=cv2.INTER_AREA)

        def search(level: tuple) -> tuple[np.ndarray, np.ndarray]:
            padded, pad, w_lvl, h_lvl, s = level
            r, weights = _level_windows(hog, padded, s, self.score_threshold, self.win_stride)
            r[:, :2] -= pad
            r[:, [0, 2]] *= width / w_lvl
            r[:, [1, 3]] *= height / h_lvl
            return r, weights

        # One pyramid level per call, in threads (OpenCV releases the GIL), results in level order.
        # Not detectMultiScale: it runs its levels in threads too, but appends each level's windows
        # and their weights to two lists under two separate locks, so levels finishing together
        # can give windows the weights of others (seen on the 2-core Xeon, 1 call in 500 on a busy
        # machine: 38 of 135 windows with another window's weight; OpenCV 4.11, objdetect/hog.cpp).
        workers = max(1, min(len(levels), cv2.getNumThreads()))
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="wbcap-hog") as pool:
                found = list(pool.map(search, levels))
        else:
            found = [search(level) for level in levels]
        found_boxes = [r for r, _ in found if len(r)]
        found_scores = [w for r, w in found if len(r)]
        n_raw = sum(len(r) for r in found_boxes)
        if not found_boxes:
            return []
        boxes = np.concatenate(found_boxes)
        scores = np.concatenate(found_scores)
        tall = boxes[:, 3] * (_PERSON_PX / _WIN_H) >= min_person - 1e-6
        boxes, scores = boxes[tall], scores[tall]
        if len(boxes) == 0:
            return []

        # Sorted by score, then position: NMS's choice among equal weights and the order of the
        # result depend on the windows only.
        order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))
        boxes, scores = boxes[order], scores[order]
        # Windows are already above the threshold; NMSBoxes wants non-negative scores, so
        # shift them (order preserved) and let it keep everything above 0.
        shifted = scores - scores.min() + 1.0
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), shifted.tolist(), 0.0, self.nms_iou)
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        dets = []
        for i in keep:
            box = _clip(_rescale(boxes[i], self.box_scale), width, height)
            if box is not None:
                dets.append(Detection(box, float(scores[i])))
        dets = sorted(dets, key=lambda d: (-d.score, d.box))  # (equal scores: by position, as above)
        if self.max_people is not None:
            dets = dets[: self.max_people]
        log.debug("HOG: %d raw windows -> %d people (scale %.2f)", n_raw, len(dets), scale)
        return dets


def _rescale(box: np.ndarray, factors: tuple[float, float]) -> np.ndarray:
    if factors == (1.0, 1.0):
        return box
    x, y, w, h = box
    nw, nh = w * factors[0], h * factors[1]
    return np.array([x + (w - nw) / 2, y + (h - nh) / 2, nw, nh])


def _clip(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float] | None:
    x1, y1 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
    x2, y2 = min(float(box[0] + box[2]), float(width)), min(float(box[1] + box[3]), float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return (x1, y1, x2 - x1, y2 - y1)


def _octave_scales(shape: tuple[int, ...], step: float) -> list[float]:
    """The scales of one octave's levels for an image of ``shape`` (H, W, ...): ``step ** i``
    for i < ``_LEVELS_PER_OCTAVE`` while the shrunk image still holds a window (the levels
    OpenCV's ``HOGDescriptor.detectMultiScale`` searches, the scale multiplied up as it does)."""
    h, w = shape[:2]
    scales, scale = [], 1.0
    for _ in range(_LEVELS_PER_OCTAVE):
        if round(w / scale) < _WIN_W or round(h / scale) < _WIN_H:
            break
        scales.append(scale)
        scale *= step
    return scales


def _level_windows(hog: Any, image: np.ndarray, scale: float, threshold: float, stride: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The windows of one pyramid level: ``image`` shrunk by ``scale`` (bilinear, OpenCV's
    ``INTER_LINEAR_EXACT``), searched with ``hog.detect`` and mapped back to ``image``'s pixels,
    clipped to it: (N, 4) float64 ``x, y, w, h`` and (N,) float64 SVM margins. The windows and
    weights ``detectMultiScale`` gives for that level (the same rounding and clipping:
    ``cvRound``, ``clipObjects``), without its lists shared between threads."""
    import cv2

    h, w = image.shape[:2]
    size = (int(np.rint(w / scale)), int(np.rint(h / scale)))
    small = image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR_EXACT)
    locations, weights = hog.detect(small, hitThreshold=threshold, winStride=(stride, stride), padding=(8, 8))
    xy = np.rint(np.asarray(locations, np.float64).reshape(-1, 2) * scale)
    weights = np.asarray(weights, np.float64).reshape(-1)
    x0, y0 = np.maximum(xy[:, 0], 0), np.maximum(xy[:, 1], 0)
    x1 = np.minimum(xy[:, 0] + np.rint(_WIN_W * scale), w)
    y1 = np.minimum(xy[:, 1] + np.rint(_WIN_H * scale), h)
    keep = (x1 > x0) & (y1 > y0)
    return np.stack((x0, y0, x1 - x0, y1 - y0), axis=1)[keep], weights[keep]
