"""Metrics of motion in a world frame: foot sliding, ground penetration, and the world metrics of
WHAM (Shin et al., CVPR 2024, sec. 4; after SLAHMR, Ye et al., CVPR 2023): W-MPJPE100,
WA-MPJPE100, RTE and jitter.

Conventions: sequences are numpy arrays with time first, ``(T, ...)``, in metres (any float dtype;
computed in float64); the world is z up unless said (``up_axis``). Results are floats, in the
unit named by each function.

* **Foot sliding** (:func:`foot_sliding`): the mean displacement from one frame to the next of
  foot points that are in contact in both frames (WHAM's "FS", which takes the contact from the
  ground truth: :func:`contact_from_motion`).
* **Penetration** (:func:`penetration_depth`): how far the lowest point is below the ground.
* **W-MPJPE100 / WA-MPJPE100** (:func:`w_mpjpe`, :func:`wa_mpjpe`): the sequence is cut into
  segments of 100 frames; each predicted segment is similarity-aligned (Umeyama:
  :func:`wbcap.eval.metrics.procrustes_align`) to the ground truth using its first two frames (W)
  or all its frames (WA), and the mean per-joint error is taken over every frame, in mm.
* **RTE** (:func:`root_translation_error`): the root trajectory rigidly aligned (rotation and
  translation, no scale: :func:`~wbcap.eval.metrics.procrustes_align` with ``scale=False``) to the
  ground truth's, the mean distance divided by the ground truth's path length, in percent.
* **Jitter** (:func:`jitter`): the mean norm of the third time derivative of the joints
  (finite differences), m/s^3 (WHAM reports it in 10 m/s^3).

W-MPJPE, WA-MPJPE and RTE measure with :func:`wbcap.eval.metrics.mean_distance_mm`.
"""

from __future__ import annotations

import numpy as np

from wbcap.camera import ImageCamera

__all__ = [
    "contact_from_motion",
    "foot_sliding",
    "jitter",
    "penetration_depth",
    "reprojection_change",
    "root_translation_error",
    "w_mpjpe",
    "wa_mpjpe",
]


def _seq(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != ndim or a.shape[-1] != 3:
        raise ValueError(f"{name} must have {ndim} dimensions, the last of size 3; got shape {a.shape}")
    return a


def contact_from_motion(points: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Contact labels from ground-truth motion, as WHAM: a point is in contact at frame ``t`` when it
    moves less than ``threshold`` metres to frame ``t + 1`` (the last frame copies the one before).

    Args:
        points: ``(T, K, 3)`` metres, ``T >= 2``.

    Returns:
        ``(T, K)`` bool.
    """
    p = _seq(points, "points", 3)
    moving = np.linalg.norm(np.diff(p, axis=0), axis=-1) >= threshold  # (T-1, K)
    return ~np.concatenate([moving, moving[-1:]], 0)


def foot_sliding(points: np.ndarray, contact: np.ndarray) -> float:
    """Mean displacement per frame of foot points while in contact, metres per frame.

    Args:
        points: ``(T, K, 3)`` foot points (e.g. heel and toe vertices of both feet), metres.
        contact: ``(T, K)`` bool; a step ``t -> t + 1`` counts when the point is in contact at both.

    Returns:
        The mean over the counted steps and points (nan when none).
    """
    p = _seq(points, "points", 3)
    c = np.asarray(contact, bool)
    if c.shape != p.shape[:2]:
        raise ValueError(f"contact must have shape {p.shape[:2]}, got {c.shape}")
    both = c[1:] & c[:-1]
    if not both.any():
        return float("nan")
    return float(np.linalg.norm(np.diff(p, axis=0), axis=-1)[both].mean())


def penetration_depth(points: np.ndarray, ground: float = 0.0, up_axis: int = 2) -> np.ndarray:
    """How far each frame's lowest point is below the ground: ``(T, K, 3)`` metres -> ``(T,)``
    metres, ``max(0, ground - min_k points[t, k, up_axis])`` (0 for a frame on or above it)."""
    p = _seq(points, "points", 3)
    return np.maximum(0.0, ground - p[..., up_axis].min(1))


def _segments(length: int, size: int) -> list[slice]:
    return [slice(s, min(length, s + size)) for s in range(0, length, size)]


def _segment_mpjpe(pred: np.ndarray, gt: np.ndarray, segment: int, first: bool) -> float:
    """Mean per-joint error over every frame and joint, millimetres, each ``segment``-frame
    piece of ``pred`` similarity-aligned to ``gt`` as one point set, fitted on its first two
    frames (``first``) or all of them. ``pred``, ``gt``: ``(T, J, 3)`` world joints, metres.

    Raises:
        ValueError: inputs of other shapes, or shapes that differ.
    """
    from wbcap.eval.metrics import mean_distance_mm, procrustes_align

    p, g = _seq(pred, "pred", 3), _seq(gt, "gt", 3)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    errors = []
    for sl in _segments(p.shape[0], segment):
        ps, gs = p[sl], g[sl]
        valid = np.zeros(ps.shape[:2])
        valid[: 2 if first else len(valid)] = 1.0
        aligned = procrustes_align(ps.reshape(1, -1, 3), gs.reshape(1, -1, 3), valid.reshape(1, -1))
        errors.append(mean_distance_mm(aligned.reshape(ps.shape), gs).numpy())  # (S,) mm per frame
    return float(np.concatenate(errors).mean())


def w_mpjpe(pred: np.ndarray, gt: np.ndarray, segment: int = 100) -> float:
    """W-MPJPE, mm: :func:`_segment_mpjpe` with each piece aligned by its first two frames
    (shapes, units and errors there)."""
    return _segment_mpjpe(pred, gt, segment, first=True)


def wa_mpjpe(pred: np.ndarray, gt: np.ndarray, segment: int = 100) -> float:
    """WA-MPJPE, mm: :func:`_segment_mpjpe` with each piece aligned as a whole (shapes, units
    and errors there)."""
    return _segment_mpjpe(pred, gt, segment, first=False)


def root_translation_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """RTE, percent: mean distance of the rigidly aligned root trajectory to the ground truth's,
    over the ground truth's path length.

    The alignment (rotation and translation, no scale) minimises the squared distances
    (:func:`wbcap.eval.metrics.procrustes_align` with ``scale=False``). A straight path leaves the
    turn about itself free; every choice gives the same distances.

    Args:
        pred, gt: ``(T, 3)`` root (pelvis) positions, metres.

    Raises:
        ValueError: inputs that are not ``(T, 3)`` or differ in shape, or a ground truth that
            does not move.
    """
    from wbcap.eval.metrics import procrustes_align

    p, g = _seq(pred, "pred", 2), _seq(gt, "gt", 2)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    length = float(np.linalg.norm(np.diff(g, axis=0), axis=1).sum())
    if length <= 0:
        raise ValueError("the ground-truth root does not move: RTE is undefined")
    aligned = procrustes_align(p[None], g[None], scale=False)
    return float(np.linalg.norm(aligned[0] - g, axis=-1).mean()) / length * 100.0  # metres over metres


def jitter(joints: np.ndarray, fps: float) -> float:
    """Mean norm of the joints' third derivative, m/s^3: ``|x[t+3] - 3 x[t+2] + 3 x[t+1] - x[t]| fps^3``.

    Args:
        joints: ``(T, J, 3)`` metres, ``T >= 4``; fps: frames per second.
    """
    j = _seq(joints, "joints", 3)
    if j.shape[0] < 4:
        raise ValueError(f"jitter needs at least 4 frames, got {j.shape[0]}")
    third = np.diff(j, n=3, axis=0)
    return float(np.linalg.norm(third, axis=-1).mean() * fps**3)


def reprojection_change(before: np.ndarray, after: np.ndarray, camera: ImageCamera) -> np.ndarray:
    """How far points move in the image: camera-frame ``(..., 3)`` metres (both) -> ``(...)`` pixels."""
    return np.linalg.norm(camera.project(after) - camera.project(before), axis=-1)
