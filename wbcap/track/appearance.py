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
but needs weights wbcap cannot ship, and the colour cue costs ~1 ms a frame (7 people).

The distance of two looks (:func:`look_distances`) is the Bhattacharyya distance
``sqrt(1 - sum(sqrt(p * q)))`` of each half's histograms (``p``, ``q`` normalised to sum 1),
averaged over the two halves: 0 for the same colours, 1 for colours that share no bin.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOOK_BINS", "LOOK_SIZE", "box_looks", "look_distances"]

#: Bins per half: 8 hues × 4 saturations (coloured pixels), then 8 values (grey ones).
HUE_BINS, SAT_BINS, GREY_BINS = 8, 4, 8
LOOK_BINS = HUE_BINS * SAT_BINS + GREY_BINS
#: Numbers in one look: the upper half's bins, then the lower half's.
LOOK_SIZE = 2 * LOOK_BINS
#: Coloured pixels have at least this saturation and value (8-bit HSV).
MIN_SATURATION, MIN_VALUE = 48, 40
#: Each half is sampled on this many rows and columns (nearest pixels) ...
SAMPLES = 24
#: ... and has a look where at least this share of the samples is inside the image and outside
#: the other boxes.
MIN_SHARE = 0.25
_HALVES = ((0.10, 0.50), (0.50, 0.90))  # (top, bottom) of each half, shares of the box height
_MIDDLE = (0.25, 0.75)  # (left, right), shares of the box width


def _bins(hsv: np.ndarray) -> np.ndarray:
    """The bin (0 to ``LOOK_BINS - 1``) of each pixel of an ``(..., 3)`` uint8 HSV array (OpenCV: H 0-179)."""
    h, s, v = (hsv[..., c].astype(np.int64) for c in range(3))
    coloured = (s >= MIN_SATURATION) & (v >= MIN_VALUE)
    hue = np.minimum(h * HUE_BINS // 180, HUE_BINS - 1)
    sat = np.clip((s - MIN_SATURATION) * SAT_BINS // (256 - MIN_SATURATION), 0, SAT_BINS - 1)
    grey = HUE_BINS * SAT_BINS + np.minimum(v * GREY_BINS // 256, GREY_BINS - 1)
    return np.where(coloured, hue * SAT_BINS + sat, grey)


def box_looks(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The look of each box (module docstring).

    Each half is sampled on a :data:`SAMPLES` × :data:`SAMPLES` grid (the pixel under the centre
    of each cell; a half narrower or shorter than that repeats pixels). Where boxes overlap, each
    box's look leaves out the samples inside the others (whoever is in front there, the rest of
    the box is its own person's), so a person coming out from behind another has their own look
    from the first frame; samples outside the image are left out too.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` ``(x, y, w, h)`` pixels, all the people of the frame.

    Returns:
        ``(N, LOOK_SIZE)`` uint8: per half, bins summing to ~255 (rounding); all zeros for a
        half with fewer than :data:`MIN_SHARE` of its samples kept, and for an empty or
        non-finite box (no look there: :func:`look_distances` compares the halves both looks have).
    """
    import cv2

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n, grid = len(boxes), SAMPLES
    out = np.zeros((n, LOOK_SIZE), np.uint8)
    if not n:
        return out
    height, width = image.shape[:2]
    valid = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    boxes = np.where(valid[:, None], boxes, 0.0)
    x, y, w, h = boxes.T
    cell = (np.arange(grid) + 0.5) / grid  # (S,) cell centres, shares of the span
    cols = np.floor(x[:, None] + w[:, None] * (_MIDDLE[0] + (_MIDDLE[1] - _MIDDLE[0]) * cell)).astype(np.int64)  # (N, S)
    tops, bottoms = np.array([t for t, _ in _HALVES]), np.array([b for _, b in _HALVES])
    rows = np.floor(y[:, None, None] + h[:, None, None] * (tops[None, :, None] + (bottoms - tops)[None, :, None]
                                                           * cell)).astype(np.int64)  # (N, 2, S)
    # a sample is kept inside the image and outside every other box
    in_rows = (rows[:, :, None, :] >= y[None, None, :, None]) & (rows[:, :, None, :] < (y + h)[None, None, :, None])
    in_cols = (cols[:, None, :] >= x[None, :, None]) & (cols[:, None, :] < (x + w)[None, :, None])  # (N, N, S)
    others = valid[None, :] & ~np.eye(n, dtype=bool)  # (N, N)
    covered = np.einsum("khjr,kjc->khrc", (in_rows & others[:, None, :, None]).astype(np.float32),
                        in_cols.astype(np.float32)) > 0  # (N, 2, S, S)
    keep = (((rows >= 0) & (rows < height))[..., :, None] & ((cols >= 0) & (cols < width))[:, None, None, :]
            & ~covered & valid[:, None, None, None])
    pixels = image[np.clip(rows, 0, height - 1)[..., :, None], np.clip(cols, 0, width - 1)[:, None, None, :]]
    hsv = cv2.cvtColor(np.ascontiguousarray(pixels.reshape(n * 2 * grid, grid, 3)), cv2.COLOR_RGB2HSV)
    index = _bins(hsv.reshape(n * 2, grid * grid, 3)) + (np.arange(n * 2) * LOOK_BINS)[:, None]
    counts = np.bincount(index.ravel(), weights=keep.reshape(n * 2, -1).ravel(),
                         minlength=n * 2 * LOOK_BINS).reshape(n * 2, LOOK_BINS)
    total = counts.sum(1, keepdims=True)
    enough = total >= MIN_SHARE * grid * grid
    looks = np.where(enough, np.round(counts * 255.0 / np.maximum(total, 1.0)), 0.0)
    out[:] = looks.reshape(n, LOOK_SIZE).astype(np.uint8)
    return out


def look_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise look distances (module docstring): ``(N, LOOK_SIZE)`` and ``(M, LOOK_SIZE)`` looks (any
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

