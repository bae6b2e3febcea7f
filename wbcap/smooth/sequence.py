"""Temporal smoothing of one tracked person's SMPL-X parameters.

Rotations are never filtered as raw axis-angle vectors (they jump by ``2 pi`` in norm where the
angle crosses ``pi``): each joint's rotation goes to the continuous 6D representation (first two
columns of the rotation matrix, :mod:`wbcap.body.rotations`), the 6D signal is filtered like any
Euclidean signal, and Gram-Schmidt re-orthonormalises it to a rotation matrix and then to
axis-angle. Translations and other Euclidean per-frame vectors (expression, ...) are filtered
directly. Shape ``betas`` describe one body, so they are replaced by one robust mean per track.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

from wbcap.body.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)
from wbcap.limits import MAX_SIGMA
from wbcap.smooth.filters import gaussian, gaussian_at_times, one_euro

__all__ = [
    "SmoothConfig",
    "SmoothedSequence",
    "robust_mean",
    "smooth_rotations",
    "smooth_signal",
    "smooth_track",
]

SmoothMethod = Literal["none", "oneeuro", "gaussian"]


@dataclass(frozen=True)
class SmoothConfig:
    """How a track is smoothed.

    Defaults are for human motion sampled at about 10-30 fps and were chosen on synthetic motion
    (22 joints, joint angles up to +-1.2 rad at 0.2-1 Hz, 30 fps, 0.02-0.1 rad rotation noise and
    1 cm translation noise): there the defaults cut the acceleration error of joint positions by
    about 10x while *lowering* the position error against the clean motion by 10-50%.

    * ``min_cutoff = 2.0`` Hz: real body motion lives mostly below 2-3 Hz; per-frame regressor
      jitter is white, spread up to Nyquist (5-15 Hz), so most of it is removed. It is the
      filter's parameter, not a frequency kept: forwards and backwards, a 1 cm sinusoid keeps
      0.75 of its amplitude at 1 Hz and 0.43 at 2 Hz at 30 fps (0.66 / 0.34 at 10 fps; the
      README's table): the default suits animation; measuring movement wants 8 Hz or none.
    * ``beta = 0.5`` Hz per (unit/s): 6D components move at roughly the joint's angular speed in
      rad/s (translation in m/s); a limb swinging at 4 rad/s raises the cutoff to about 4 Hz, so
      fast motion is not flattened. With ``beta`` of 0-0.05, the error against the clean motion
      grew (amplitude loss on 1 Hz motion); with ``beta >= 1`` little jitter was removed.
    * ``d_cutoff = 1.0`` Hz: Casiez et al.'s recommended value for the speed estimate.
    * ``bidirectional = True``: the 1€ filter is causal and lags by about ``1 / (2 pi fc)``
      (80 ms at 2 Hz, enough to double the error on 1 Hz motion); video is processed offline, so
      the filter runs forwards, then backwards over the result (zero phase, like ``filtfilt``;
      like it, on the signal extended at both ends, :func:`smooth_signal`).
      Set ``False`` for the standard causal (streaming) filter.
    * ``sigma = 2.0`` frames for ``method='gaussian'`` (zero phase; at 30 fps removes more jitter
      than the 1€ default for a similar error, but is in frames, so heavier at low frame rates;
      frames of the track's own interval, over the frames' times where some were missed,
      :func:`smooth_signal`).

    Attributes:
        method: ``'none'`` (copy), ``'oneeuro'`` (:func:`wbcap.smooth.filters.one_euro`) or
            ``'gaussian'`` (:func:`wbcap.smooth.filters.gaussian`).
        min_cutoff: 1€ cutoff at zero speed, Hz.
        beta: 1€ speed coefficient, Hz per (units/s).
        d_cutoff: 1€ cutoff of the speed estimate, Hz.
        bidirectional: 1€ forwards then backwards (zero lag) instead of causal only.
        sigma: Gaussian standard deviation in frames, 0 to :data:`MAX_SIGMA`.
        betas_trim: fraction of frames cut from *each* end (per coefficient) before averaging
            the shape betas; ``0`` is the plain mean, ``>= 0.5`` the median.
    """

    method: SmoothMethod = "oneeuro"
    min_cutoff: float = 2.0
    beta: float = 0.5
    d_cutoff: float = 1.0
    bidirectional: bool = True
    sigma: float = 2.0
    betas_trim: float = 0.25

    def __post_init__(self) -> None:
        if self.method not in ("none", "oneeuro", "gaussian"):
            raise ValueError(f"unknown smoothing method {self.method!r}")
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0 and 0 <= self.sigma <= MAX_SIGMA):
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0, 0 <= sigma <= {MAX_SIGMA:g}")
        if not all(np.isfinite([self.min_cutoff, self.beta, self.d_cutoff])):
            raise ValueError("need finite min_cutoff, beta and d_cutoff")
        if not self.betas_trim >= 0:
            raise ValueError(f"betas_trim must be >= 0, got {self.betas_trim}")

    def effective(self) -> dict[str, object]:
        """The settings that change the result: ``method``, those of its filter
        (:data:`FILTER_SETTINGS`) and ``betas_trim`` (two configs alike in these smooth alike)."""
        return {"method": self.method, **{k: getattr(self, k) for k in FILTER_SETTINGS[self.method]},
                "betas_trim": self.betas_trim}

    def _shown(self) -> list[str]:
        """The settings :meth:`describe` and :meth:`python` name: those ``wbcap run`` takes that
        the method reads, and any other of :meth:`effective` not at its default."""
        default = SmoothConfig(method=self.method)
        return [k for k in (*FILTER_SETTINGS[self.method], "betas_trim")
                if k in RUN_OPTIONS or getattr(self, k) != getattr(default, k)]

    def describe(self) -> str:
        """``method`` and its settings in words, each value exact (:func:`_number`):
        ``"gaussian (sigma 3)"``, ``"oneeuro (min_cutoff 2, beta 0.5, bidirectional False)"``."""
        shown = [f"{k} {_number(getattr(self, k))}" for k in self._shown()]
        return self.method + (f" ({', '.join(shown)})" if shown else "")

    def options(self) -> str | None:
        """The ``wbcap run`` options that give this smoothing: ``--smooth`` and those of
        :data:`RUN_OPTIONS` its filter reads that are not at their defaults, each value exact;
        None where a setting no option takes is not at its default (``bidirectional``...)."""
        default = SmoothConfig(method=self.method)
        if any(k not in RUN_OPTIONS and getattr(self, k) != getattr(default, k) for k in self._shown()):
            return None
        parts = [f"--smooth {self.method}"]
        for name in RUN_OPTIONS:
            if name in FILTER_SETTINGS[self.method] and getattr(self, name) != getattr(default, name):
                parts.append(f"--{name.replace('_', '-')} {_number(getattr(self, name))}")
        return " ".join(parts)

    def python(self) -> str:
        """This smoothing as Python: ``SmoothConfig(method='gaussian', sigma=3.0)`` (the method's
        settings not at their defaults, each exact)."""
        default = SmoothConfig(method=self.method)
        given = [f"{k}={getattr(self, k)!r}" for k in self._shown() if getattr(self, k) != getattr(default, k)]
        return f"SmoothConfig({', '.join([f'method={self.method!r}', *given])})"


def _number(value: object) -> str:
    """A setting's value as text that reads back to the same value: ``2`` for 2.0, ``1.2345678``
    (the shortest exact float, not ``:g``'s six digits: options copied from a warning gave a
    warning again, a break-it trial), ``False``."""
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


#: The settings of :class:`SmoothConfig` each method reads (beside ``betas_trim``, which all use).
FILTER_SETTINGS: dict[str, tuple[str, ...]] = {"none": (), "oneeuro": ("min_cutoff", "beta", "d_cutoff", "bidirectional"),
                                               "gaussian": ("sigma",)}
#: The settings of :class:`SmoothConfig` that ``wbcap run`` takes as options (``--min-cutoff``...).
RUN_OPTIONS = ("min_cutoff", "beta", "sigma")


class SmoothedSequence(NamedTuple):
    """Result of :func:`smooth_track`.

    Attributes:
        poses_aa: ``(T, J, 3)`` axis-angle, radians, angle in ``[0, pi]``.
        transl: ``(T, 3)`` translation, input units (metres).
        betas: ``(B,)`` one shape for the whole track.
        extras: the smoothed ``(T, D)`` extra arrays, same keys as given (empty if none).
    """

    poses_aa: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    extras: dict[str, np.ndarray]


def _check_t(t: np.ndarray, n: int) -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"t must have shape ({n},), got {t.shape}")
    if n > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("timestamps t must be strictly increasing")
    return t


def _out_dtype(x: np.ndarray) -> np.dtype:
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)


#: How far the ends of a track are extended before a zero-phase filter runs
#: (:func:`_extended`): the Gaussian's reach (4 sigma), or this many 1€ time constants at the
#: zero-speed cutoff, ``1 / (2 pi min_cutoff)`` (80 ms at 2 Hz: its start-up has decayed to e^-5).
_ONE_EURO_SETTLE = 5.0


def _frame_interval(t: np.ndarray) -> float:
    """The track's own frame interval, seconds: its median time step (a processed frame apart
    where the person is seen in consecutive ones; ``--every N`` makes it N source frames)."""
    return float(np.median(np.diff(t)))


def _extended(x: np.ndarray, t: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``x`` and ``t`` with both ends extended by ``seconds`` (at most ``T - 1`` samples): the
    first and last samples' times mirrored about the end, their values those of the
    least-squares line through the end samples at those times. A zero-phase filter then sees
    the motion go on at each end instead of stopping there: with the ends held (Gaussian's
    ``mode='nearest'``) or left open (1€ started at the first sample), a person walking at 1.5
    m/s had the first and last frames of every track pulled back by 4-6 cm (a review). A line,
    not the samples reflected about the end one, so one noisy end frame is not copied into the
    padding. Returns ``(x_ext, t_ext, n)``: ``n`` samples added at each end."""
    steps = np.diff(t)
    n = int(min(len(t) - 1, np.searchsorted(np.cumsum(steps), seconds, side="left") + 1))
    n_tail = int(min(len(t) - 1, np.searchsorted(np.cumsum(steps[::-1]), seconds, side="left") + 1))
    n = max(n, n_tail)
    if n < 1:
        return x, t, 0

    def line(ts: np.ndarray, xs: np.ndarray, at: np.ndarray) -> np.ndarray:
        a = np.stack([np.ones_like(ts), ts - ts.mean()], 1)
        coef, *_ = np.linalg.lstsq(a, xs, rcond=None)
        return coef[0] + (at - ts.mean())[:, None] * coef[1]

    head_t = 2 * t[0] - t[n:0:-1]
    tail_t = 2 * t[-1] - t[-2:-n - 2:-1]
    head = line(t[: n + 1], x[: n + 1], head_t)
    tail = line(t[-n - 1:], x[-n - 1:], tail_t)
    return np.concatenate([head, x, tail]), np.concatenate([head_t, t, tail_t]), n


def smooth_signal(x: np.ndarray, t: np.ndarray, config: SmoothConfig) -> np.ndarray:
    """Filter a Euclidean per-frame signal with ``config``'s method, zero phase.

    The Gaussian's ``sigma`` is in frames of the track's own frame interval (its median time
    step). On evenly spaced samples (steps within 10 % of each other: timestamp rounding) it is
    :func:`~wbcap.smooth.filters.gaussian`; where frames were missed, or the frame rate varies, a Gaussian-weighted local line over the samples' own times
    (:func:`~wbcap.smooth.filters.gaussian_at_times`): samples across a missed stretch are as
    far apart as their times say, and the rows beside it are not pulled towards the other side.
    Otherwise both methods run on the signal extended at each end along the line its end
    samples follow (:func:`_extended`), so motion at a track's first and last frames is not
    pulled back towards standing still. A constant signal comes back unchanged, and so does a
    straight motion under the Gaussian (under the 1€ filter, within its lag where it speeds up).

    Args:
        x: ``(T, D)`` (or ``(T,)``) float signal, any units.
        t: ``(T,)`` timestamps, seconds, strictly increasing.
        config: the smoothing parameters.

    Returns:
        Same shape and float dtype as ``x``.
    """
    x = np.asarray(x)
    dtype = _out_dtype(x)
    xf = x.astype(np.float64)
    t = _check_t(t, xf.shape[0])
    if config.method == "none" or xf.shape[0] < 2 or (config.method == "gaussian" and config.sigma == 0):
        return xf.copy().astype(dtype, copy=False)
    flat = xf.reshape(xf.shape[0], -1)
    if config.method == "gaussian":
        interval = _frame_interval(t)
        steps = np.diff(t)
        if np.ptp(steps) <= 0.1 * interval:  # evenly spaced (up to timestamp rounding): scipy's kernel in frames
            ext, t_ext, n = _extended(flat, t, 4.0 * config.sigma * interval)
            out = gaussian(ext, config.sigma, axis=0)
        else:  # missed frames: a local line over the samples' own times (ends included)
            out, n = gaussian_at_times(flat, t, config.sigma * interval), 0
    else:
        settle = _ONE_EURO_SETTLE / (2.0 * np.pi * config.min_cutoff) if config.bidirectional else 0.0
        ext, t_ext, n = _extended(flat, t, settle) if config.bidirectional else (flat, t, 0)
        out = one_euro(ext, t_ext, config.min_cutoff, config.beta, config.d_cutoff)
        if config.bidirectional:
            # Backwards in time: reversed samples at increasing times -t[::-1].
            back = one_euro(out[::-1], -t_ext[::-1], config.min_cutoff, config.beta, config.d_cutoff)
            out = back[::-1]
    out = out[n: len(out) - n] if n else out
    return np.ascontiguousarray(out).reshape(xf.shape).astype(dtype, copy=False)


def smooth_rotations(poses_aa: np.ndarray, t: np.ndarray, config: SmoothConfig) -> np.ndarray:
    """Smooth per-joint rotations in 6D space.

    Axis-angle -> rotation matrix -> 6D (:func:`wbcap.body.rotations.matrix_to_rot6d`), filter
    the ``(T, J*6)`` signal with :func:`smooth_signal`, then Gram-Schmidt back to rotation
    matrices (:func:`~wbcap.body.rotations.rot6d_to_matrix`) and axis-angle. 6D is continuous
    over the whole rotation group, so a joint turning through ``pi`` (where axis-angle jumps
    from ``+pi`` to ``-pi``) is filtered without artefacts.

    Args:
        poses_aa: ``(T, J, 3)`` axis-angle, radians (any angle; ``|v| > pi`` is fine).
        t: ``(T,)`` timestamps, seconds.
        config: the smoothing parameters.

    Returns:
        ``(T, J, 3)`` axis-angle, radians, angle in ``[0, pi]`` (so the vector itself may still
        flip sign between frames near ``pi``; the rotations do not), same float dtype as input.
    """
    poses_aa = np.asarray(poses_aa)
    if poses_aa.ndim != 3 or poses_aa.shape[-1] != 3:
        raise ValueError(f"poses_aa must have shape (T, J, 3), got {poses_aa.shape}")
    n, j = poses_aa.shape[:2]
    dtype = _out_dtype(poses_aa)
    if config.method == "none" or n < 2:
        _check_t(t, n)
        return poses_aa.astype(dtype, copy=True)
    aa = torch.from_numpy(poses_aa.astype(np.float64))
    six = matrix_to_rot6d(axis_angle_to_matrix(aa)).reshape(n, j * 6).numpy()
    six = smooth_signal(six, t, config).reshape(n, j, 6)
    out = matrix_to_axis_angle(rot6d_to_matrix(torch.from_numpy(six))).numpy()
    return out.astype(dtype, copy=False)


def robust_mean(x: np.ndarray, trim: float = 0.25) -> np.ndarray:
    """Trimmed mean over frames, per coefficient.

    For every column, the ``floor(trim * T)`` smallest and largest values are dropped and the
    rest averaged; when that would drop everything (``trim >= 0.5``), the median is returned.
    With the default 0.25 (the interquartile mean), a quarter of the frames may be arbitrarily
    wrong on either side without moving the result much, and it is less noisy than the median.

    Args:
        x: ``(T, B)`` per-frame values (e.g. shape betas), ``T >= 1``.
        trim: fraction cut at each end, ``>= 0``.

    Returns:
        ``(B,)`` float array, same float dtype as ``x``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x must have shape (T, B) with T >= 1, got {x.shape}")
    dtype = _out_dtype(x)
    xs = np.sort(x.astype(np.float64), axis=0)
    n = xs.shape[0]
    k = int(np.floor(trim * n))
    if trim >= 0.5 or 2 * k >= n:
        return np.median(xs, axis=0).astype(dtype)
    return xs[k : n - k].mean(axis=0).astype(dtype)


def smooth_track(
    poses_aa: np.ndarray,
    transl: np.ndarray,
    betas: np.ndarray,
    t: np.ndarray,
    config: SmoothConfig = SmoothConfig(),
    extras: Mapping[str, np.ndarray] | None = None,
    pieces: Sequence[int] = (),
) -> SmoothedSequence:
    """Smooth one person's per-frame SMPL-X parameters over time.

    Args:
        poses_aa: ``(T, J, 3)`` axis-angle rotations, radians (root, body, hands, jaw, ... in
            any order: each joint is filtered independently, see :func:`smooth_rotations`).
        transl: ``(T, 3)`` translation, metres (filtered directly).
        betas: ``(T, B)`` per-frame shape coefficients; replaced by one :func:`robust_mean`
            (trim ``config.betas_trim``), also for ``method='none'``.
        t: ``(T,)`` timestamps, seconds, strictly increasing (frames of one track may have gaps).
        config: the smoothing parameters.
        extras: optional ``{name: (T, D)}`` Euclidean arrays (e.g. ``expression``), filtered like
            the translation.
        pieces: indices of the frames that begin a piece smoothed on its own, after the first
            (increasing, in ``1 .. T - 1``): a track written as separate files where the person
            was missed too long (:func:`wbcap.export.amass.clock_cuts`); each piece's ends are
            its own (the 1-euro filter had carried one piece's values into the other's ends:
            7.6 cm and 2.6 degrees on the last row before a 1.5 s gap, a review). The shape
            is the whole track's.

    Returns:
        :class:`SmoothedSequence` ``(poses_aa (T, J, 3), transl (T, 3), betas (B,), extras)``.

    Raises:
        ValueError: arrays of other shapes, ``t`` not increasing, ``pieces`` outside ``1 .. T - 1``
            or not increasing.
    """
    poses_aa = np.asarray(poses_aa)
    transl = np.asarray(transl)
    betas = np.asarray(betas)
    n = poses_aa.shape[0] if poses_aa.ndim else 0
    if n < 1:
        raise ValueError("need at least one frame")
    if transl.shape != (n, 3):
        raise ValueError(f"transl must have shape ({n}, 3), got {transl.shape}")
    if betas.ndim != 2 or betas.shape[0] != n:
        raise ValueError(f"betas must have shape ({n}, B), got {betas.shape}")
    t = _check_t(t, n)
    bounds = [0, *(int(k) for k in pieces), n]
    if any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"pieces must be increasing indices in 1..{n - 1}, got {list(pieces)}")
    parts = [slice(a, b) for a, b in zip(bounds, bounds[1:])]

    def each_piece(smooth, values: np.ndarray) -> np.ndarray:
        return np.concatenate([smooth(values[part], t[part], config) for part in parts])

    smoothed_extras: dict[str, np.ndarray] = {}
    for name, value in (extras or {}).items():
        value = np.asarray(value)
        if value.ndim != 2 or value.shape[0] != n:
            raise ValueError(f"extras[{name!r}] must have shape ({n}, D), got {value.shape}")
        smoothed_extras[name] = each_piece(smooth_signal, value)
    return SmoothedSequence(
        poses_aa=each_piece(smooth_rotations, poses_aa),
        transl=each_piece(smooth_signal, transl),
        betas=robust_mean(betas, config.betas_trim),
        extras=smoothed_extras,
    )
