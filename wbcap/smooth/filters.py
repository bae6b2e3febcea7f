"""Temporal filters over per-frame signals (pure numpy functions).

Every function takes a ``(T, D)`` float array (frames first; any extra trailing dimensions are
allowed by :func:`gaussian`) and returns a new array of the same shape; inputs are never modified.
They filter Euclidean quantities only: rotations must first be mapped to a continuous Euclidean
representation (6D, or sign-continuous quaternions), see :mod:`wbcap.smooth.sequence`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["gaussian", "gaussian_at_times", "one_euro", "one_euro_alpha"]


def one_euro_alpha(te: float | np.ndarray, cutoff: float | np.ndarray) -> np.ndarray:
    """Smoothing factor of a first-order low-pass filter (Casiez et al. 2012, eq. 2).

    ``alpha = 1 / (1 + tau / te)`` with ``tau = 1 / (2 pi fc)``.

    Args:
        te: sampling period in seconds (> 0).
        cutoff: cutoff frequency ``fc`` in Hz (> 0; ``inf`` gives ``alpha = 1``, no smoothing).

    Returns:
        ``alpha`` in ``(0, 1]``, broadcast shape of the inputs.
    """
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(te, dtype=np.float64))


def one_euro(
    x: np.ndarray,
    t: np.ndarray,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """The 1€ filter (Casiez, Roussel, Vogel, CHI 2012), causal, each column independently.

    Standard formulation, for ``i >= 1`` with ``te = t[i] - t[i-1]``::

        dx     = (x[i] - x_hat[i-1]) / te                         # speed, units/s
        dx_hat = a(te, d_cutoff) * dx + (1 - a(te, d_cutoff)) * dx_hat[i-1]
        fc     = min_cutoff + beta * |dx_hat|                     # Hz
        x_hat  = a(te, fc) * x[i] + (1 - a(te, fc)) * x_hat[i-1]

    with ``a(te, fc) = 1 / (1 + tau / te)``, ``tau = 1 / (2 pi fc)``, ``x_hat[0] = x[0]`` and
    ``dx_hat[0] = 0``. The timestamps may be non-uniform (dropped frames): ``te`` is taken per
    step. A constant signal is returned unchanged; ``min_cutoff -> inf`` returns ``x``.

    Being causal, the filter lags the signal (about ``1 / (2 pi fc)`` seconds at low speed);
    :mod:`wbcap.smooth.sequence` runs it forwards then backwards for offline video.

    Args:
        x: ``(T, D)`` (or ``(T,)``) float signal, any units.
        t: ``(T,)`` timestamps in seconds, strictly increasing.
        min_cutoff: cutoff frequency at zero speed, Hz (> 0). Lower = smoother, more lag.
        beta: speed coefficient, Hz per (units/s) (>= 0). Higher = less lag on fast motion.
        d_cutoff: cutoff frequency for the speed estimate, Hz (> 0).

    Returns:
        ``(T, D)`` (same shape as ``x``) float64 filtered signal.

    Raises:
        ValueError: for mismatched shapes, non-increasing timestamps or invalid parameters.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (T,) or (T, D), got {x.shape}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape ({x.shape[0]},), got {t.shape}")
    if not min_cutoff > 0 or not d_cutoff > 0 or not beta >= 0:
        raise ValueError(
            f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {min_cutoff}, {d_cutoff}, {beta}"
        )
    n = x.shape[0]
    out = x.copy()
    if n < 2:
        return out
    te = np.diff(t)
    if not np.all(te > 0):
        raise ValueError("timestamps t must be strictly increasing")
    a_d = one_euro_alpha(te, d_cutoff)  # (T-1,)
    dx_hat = np.zeros_like(x[0])
    prev = x[0]
    for i in range(1, n):
        dx = (x[i] - prev) / te[i - 1]
        dx_hat = a_d[i - 1] * dx + (1.0 - a_d[i - 1]) * dx_hat
        a = one_euro_alpha(te[i - 1], min_cutoff + beta * np.abs(dx_hat))
        prev = a * x[i] + (1.0 - a) * prev
        out[i] = prev
    return out


def gaussian(x: np.ndarray, sigma_frames: float, axis: int = 0) -> np.ndarray:
    """Zero-phase Gaussian smoothing along the time axis.

    ``scipy.ndimage.gaussian_filter1d`` with ``mode='nearest'`` (the ends are extended with the
    first/last frame, so a constant signal is unchanged and the ends are not pulled to zero) and
    the default truncation at 4 sigma. The kernel is in frames, so this assumes roughly uniform
    sampling; with dropped frames, resample or use :func:`one_euro`, which reads timestamps.

    Args:
        x: float array, e.g. ``(T, D)``, time along ``axis``.
        sigma_frames: standard deviation of the kernel in frames (finite, >= 0); ``0`` returns a
            copy. The kernel has ``8 * sigma_frames + 1`` taps, so the time grows with it (about
            8 s for 10 000 frames of 330 values at 1000 on one core: the bound
            :class:`~wbcap.smooth.sequence.SmoothConfig` sets).
        axis: the time axis.

    Returns:
        Array of the same shape as ``x`` (float64).

    Raises:
        ValueError: ``sigma_frames`` negative, nan or infinite.
    """
    x = np.asarray(x, dtype=np.float64)
    if not (math.isfinite(sigma_frames) and sigma_frames >= 0):
        raise ValueError(f"sigma_frames must be a finite number >= 0, got {sigma_frames}")
    if sigma_frames == 0 or x.shape[axis] < 2:
        return x.copy()
    return gaussian_filter1d(x, float(sigma_frames), axis=axis, mode="nearest")


def gaussian_at_times(x: np.ndarray, t: np.ndarray, sigma_s: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing over the samples' own times, for unevenly spaced samples (a
    track with missed frames): at each sample, the value at its time of the straight line
    fitted to the samples within ``4 sigma_s`` seconds by least squares with weights
    ``exp(-(t_j - t_i)^2 / (2 sigma_s^2))`` (Gaussian-weighted local linear regression). Where the
    neighbours lie evenly on both sides this is the Gaussian-weighted mean (:func:`gaussian`); by a
    missed stretch or at an end, where they lie on one side, a plain mean pulls the sample
    towards them, and the line does not: a straight motion is kept exactly. (:func:`gaussian`
    took the rows around a missed stretch for neighbours one frame apart and pulled a walking
    person's last row before it 12 cm towards the row after it; a review.) A window holding one
    sample, or samples at one time, keeps its weighted mean.

    Args:
        x: ``(T, D)`` (or ``(T,)``) float signal, any units.
        t: ``(T,)`` timestamps, seconds, strictly increasing.
        sigma_s: standard deviation of the weights in seconds (finite, >= 0); ``0`` returns a copy.

    Returns:
        Same shape as ``x``, float64.

    Raises:
        ValueError: ``sigma_s`` negative, nan or infinite, or ``t`` of another length.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape ({x.shape[0]},), got {t.shape}")
    if not (math.isfinite(sigma_s) and sigma_s >= 0):
        raise ValueError(f"sigma_s must be a finite number >= 0, got {sigma_s}")
    n = x.shape[0]
    if sigma_s == 0 or n < 2:
        return x.copy()
    flat = x.reshape(n, -1)
    reach = 4.0 * sigma_s * (1 + 1e-9)
    # the widest window in samples: offsets beyond it weigh nothing for any sample
    widest = int(np.max(np.searchsorted(t, t + reach, side="right") - np.arange(n)))
    s0, s1, s2 = np.ones(n), np.zeros(n), np.zeros(n)  # sums of w, w d, w d^2 (d = t_j - t_i)
    m0, m1 = flat.copy(), np.zeros_like(flat)  # sums of w x, w d x
    for k in range(1, widest):
        dt = t[k:] - t[:-k]
        w = np.where(dt <= reach, np.exp(-0.5 * (dt / sigma_s) ** 2), 0.0)
        wd = w * dt
        s0[:-k] += w
        s0[k:] += w
        s1[:-k] += wd  # (sample i sees j = i + k at +dt, and j = i - k at -dt)
        s1[k:] -= wd
        s2[:-k] += wd * dt
        s2[k:] += wd * dt
        m0[:-k] += w[:, None] * flat[k:]
        m0[k:] += w[:, None] * flat[:-k]
        m1[:-k] += wd[:, None] * flat[k:]
        m1[k:] -= wd[:, None] * flat[:-k]
    det = s0 * s2 - s1 * s1
    ok = det > 1e-12 * s0 * s2.clip(min=np.finfo(float).tiny)
    line = (s2[:, None] * m0 - s1[:, None] * m1) / np.where(ok, det, 1.0)[:, None]
    out = np.where(ok[:, None], line, m0 / s0[:, None])
    return out.reshape(x.shape)
