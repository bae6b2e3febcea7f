"""What a person looks like, for telling tracks apart where their boxes alone cannot: colour
histograms of the clothes.

A box's *look* is two histograms, of the upper and the lower half of the box's middle (the
torso and the legs: horizontally the central half, vertically 10-50 % and 50-90 % of the
height, so that less of the background and of the neighbours comes in), each over
:data:`LOOK_BINS` bins of OpenCV's 8-bit HSV: 8 hue × 4 saturation bins for the coloured
pixels (saturation ≥ 48 and value ≥ 40 of 255) and 8 value bins for the grey, black and white
ones (the rest), normalised to sum 255 and rounded to integers (what the raw records keep:
small, exact in JSON). Hue-saturation histograms keep little of the light's brightness and
nothing of the pose; upper and lower halves keep a white shirt with dark trousers apart from
the reverse. This is the classic colour-histogram cue of appearance trackers (Comaniciu, Ramesh
& Meer, "Kernel-based object tracking", TPAMI 2003, compare histograms by the Bhattacharyya
coefficient); a learned re-identification network would tell similar clothes apart better,
but needs weights wbcap cannot ship, and the colour cue costs ~0.1 ms per box.

The distance of two looks (:func:`look_distance`) is the Bhattacharyya distance
``sqrt(1 - sum(sqrt(p * q)))`` of each half's histograms (``p``, ``q`` normalised to sum 1),
averaged over the two halves: 0 for the same colours, 1 for colours that share no bin.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOOK_BINS", "LOOK_SIZE", "box_looks", "look_distance", "look_distances"]

#: Bins per half: 8 hues × 4 saturations (coloured pixels), then 8 values (grey ones).
HUE_BINS, SAT_BINS, GREY_BINS = 8, 4, 8
LOOK_BINS = HUE_BINS * SAT_BINS + GREY_BINS
#: Numbers in one look: the upper half's bins, then the lower half's.
LOOK_SIZE = 2 * LOOK_BINS
#: Coloured pixels have at least this saturation and value (8-bit HSV).
MIN_SATURATION, MIN_VALUE = 48, 40
#: Each half is sampled on at most this many rows and columns (nearest pixels) ...
SAMPLES = 24
#: ... and has a look where at least this share of the samples is outside the other boxes.
MIN_SHARE = 0.25
_HALVES = ((0.10, 0.50), (0.50, 0.90))  # (top, bottom) of each half, shares of the box height
_MIDDLE = (0.25, 0.75)  # (left, right), shares of the box width


def _half_hist(hsv: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``(LOOK_BINS,)`` float64 counts of the pixels ``keep`` (``(h, w)`` bool) marks of an
    ``(h, w, 3)`` uint8 HSV patch (OpenCV: H 0-179)."""
    h = hsv[..., 0][keep].astype(np.int64)
    s = hsv[..., 1][keep].astype(np.int64)
    v = hsv[..., 2][keep].astype(np.int64)
    coloured = (s >= MIN_SATURATION) & (v >= MIN_VALUE)
    hue = np.minimum(h * HUE_BINS // 180, HUE_BINS - 1)
    sat = np.minimum((s - MIN_SATURATION) * SAT_BINS // (256 - MIN_SATURATION), SAT_BINS - 1)
    grey = HUE_BINS * SAT_BINS + np.minimum(v * GREY_BINS // 256, GREY_BINS - 1)
    index = np.where(coloured, hue * SAT_BINS + sat, grey)
    return np.bincount(index, minlength=LOOK_BINS).astype(np.float64)


def box_looks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The look of each box (module docstring).

    Where boxes overlap, each box's look leaves out the pixels inside the others (whoever is in
    front there, the rest of the box is its own person's), so a person coming out from behind
    another has their own look from the first frame.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` ``(x, y, w, h)`` pixels, all the people of the frame; parts outside
            the image are left out.

    Returns:
        ``(N, LOOK_SIZE)`` uint8: per half, bins summing to ~255 (rounding); all zeros for a
        half with fewer than :data:`MIN_SHARE` of its pixels inside the image and outside the
        other boxes (no look there: :func:`look_distances` compares the halves both looks have).
    """
    import cv2

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), LOOK_SIZE), np.uint8)
    if not len(boxes):
        return out
    height, width = image.shape[:2]
    for k, (x, y, w, h) in enumerate(boxes):
        x0 = int(np.clip(np.floor(x + _MIDDLE[0] * w), 0, width))
        x1 = int(np.clip(np.ceil(x + _MIDDLE[1] * w), 0, width))
        for half, (top, bottom) in enumerate(_HALVES):
            y0 = int(np.clip(np.floor(y + top * h), 0, height))
            y1 = int(np.clip(np.ceil(y + bottom * h), 0, height))
            if x1 <= x0 or y1 <= y0:
                continue
            rows = np.unique(np.linspace(y0, y1 - 1, min(SAMPLES, y1 - y0)).round().astype(np.int64))
            cols = np.unique(np.linspace(x0, x1 - 1, min(SAMPLES, x1 - x0)).round().astype(np.int64))
            keep = np.ones((len(rows), len(cols)), bool)
            for j, (ox, oy, ow, oh) in enumerate(boxes):
                if j != k:
                    keep &= ~(((rows >= oy) & (rows < oy + oh))[:, None] & ((cols >= ox) & (cols < ox + ow))[None, :])
            if keep.sum() < MIN_SHARE * keep.size:
                continue
            patch = np.ascontiguousarray(image[rows[:, None], cols[None, :]])
            counts = _half_hist(cv2.cvtColor(patch, cv2.COLOR_RGB2HSV), keep)
            out[k, half * LOOK_BINS:(half + 1) * LOOK_BINS] = np.round(counts * 255.0 / counts.sum())
    return out


def look_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise :func:`look_distance`: ``(N, LOOK_SIZE)`` and ``(M, LOOK_SIZE)`` looks (any
    non-negative numbers: uint8 from :func:`box_looks`, or float averages of them) -> ``(N, M)``
    float64 in ``[0, 1]``; NaN where a look is all zeros (none) in both halves' pairs."""
    a = np.asarray(a, np.float64).reshape(-1, 2, LOOK_BINS)
    b = np.asarray(b, np.float64).reshape(-1, 2, LOOK_BINS)
    sa, sb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    pa = np.sqrt(np.divide(a, sa, out=np.zeros_like(a), where=sa > 0))  # (N, 2, K)
    pb = np.sqrt(np.divide(b, sb, out=np.zeros_like(b), where=sb > 0))
    coef = np.einsum("nhk,mhk->nmh", pa, pb)  # Bhattacharyya coefficient per half
    dist = np.sqrt(np.clip(1.0 - coef, 0.0, 1.0))
    both = (sa[:, None, :, 0] > 0) & (sb[None, :, :, 0] > 0)  # (N, M, 2) halves seen in both
    n = both.sum(-1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, np.where(both, dist, 0.0).sum(-1) / np.maximum(n, 1), np.nan)


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two looks, averaged over the halves both have (module
    docstring): 0 (same colours) to 1; NaN when they share no half."""
    return float(look_distances(a, b)[0, 0])
