"""Temporal quality metrics for joint sequences (numpy).

Conventions follow the video human-mesh literature (HMMR, VIBE, SmoothNet, WHAM): joints are
``(T, J, 3)`` positions, usually in metres, and results are reported after multiplying by 1000
(mm, mm/frame^2). These functions return the input units; convert at the call site.
"""

from __future__ import annotations

import numpy as np

__all__ = ["acceleration_error", "second_difference"]


def second_difference(x: np.ndarray) -> np.ndarray:
    """Per-frame acceleration by central differences, ``x[t-1] - 2 x[t] + x[t+1]``.

    Args:
        x: ``(T, ...)`` positions, frames first, ``T >= 3``.

    Returns:
        ``(T - 2, ...)`` accelerations for frames ``1 .. T-2``, input units per frame^2.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[0] < 3:
        raise ValueError(f"need at least 3 frames, got shape {x.shape}")
    return x[:-2] - 2.0 * x[1:-1] + x[2:]


def acceleration_error(
    pred: np.ndarray, gt: np.ndarray | None = None, fps: float | None = None
) -> float:
    """Acceleration error (or, without ``gt``, jitter) of a joint sequence.

    ``mean over t in 1..T-2 and joints j of || a_pred[t, j] - a_gt[t, j] ||_2`` with
    ``a[t] = x[t-1] - 2 x[t] + x[t+1]`` (the metric of Kanazawa et al. 2019 HMMR, used by VIBE,
    SmoothNet and WHAM). With ``gt=None``, the mean norm of ``pred``'s own second difference.

    Units: input units per frame^2 (metres in -> m/frame^2; multiply by 1000 for the usual
    mm/frame^2). With ``fps`` given, the result is per second^2 instead (times ``fps ** 2``).

    Args:
        pred: ``(T, J, 3)`` joint positions (any ``(T, ..., C)``: the last axis is the vector).
        gt: same shape as ``pred``, or ``None``.
        fps: frame rate in Hz to convert to units/s^2, or ``None`` for units/frame^2.

    Returns:
        The mean acceleration error as a Python float.
    """
    pred = np.asarray(pred, dtype=np.float64)
    acc = second_difference(pred)
    if gt is not None:
        gt = np.asarray(gt, dtype=np.float64)
        if gt.shape != pred.shape:
            raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
        acc = acc - second_difference(gt)
    value = float(np.linalg.norm(acc, axis=-1).mean())
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        value *= float(fps) ** 2
    return value
