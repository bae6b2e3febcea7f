"""Two cameras' clocks from the sound both recorded (``wbcap fuse --offsets audio``).

:func:`sound_shift` cross-correlates two :class:`~wbcap.io.audio.AudioTrack` by the generalized
cross-correlation with phase transform (GCC-PHAT; Knapp & Carter, IEEE TASSP 1976): the cross
spectrum divided by its magnitude, so every frequency counts alike and a sound both microphones
heard (a clap, steps, a voice) gives one sharp peak at the lag between them, whatever each
microphone's response and loudness. The peak is placed between samples by a parabola. Its
``strength`` is its height over the highest value of the correlation more than
:data:`PEAK_GUARD_S` from it: sound the cameras share gives several (a review of synthetic
scenes: 5 to 40), unrelated sound about 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wbcap.io.audio import AudioTrack

__all__ = ["MIN_STRENGTH", "SoundShift", "sound_shift"]

#: Seconds either side of the peak left out when looking for the next highest value.
PEAK_GUARD_S = 0.02
#: The least strength a shift is taken at.
MIN_STRENGTH = 2.0


@dataclass(frozen=True)
class SoundShift:
    """How two cameras' clocks compare by their sound: the second camera heard each sound
    ``shift_s`` seconds later on its own clock than the first did (:class:`wbcap.fuse.views.ClockShift`'s
    convention); ``strength``: the peak over the next highest value (module docstring)."""

    first_view: int
    second_view: int
    shift_s: float
    strength: float


def sound_shift(first: AudioTrack, second: AudioTrack, max_shift_s: float, first_view: int = 0,
                second_view: int = 1) -> SoundShift | None:
    """The :class:`SoundShift` of ``second`` against ``first`` (the same ``rate``), within
    ``max_shift_s``; None where they share no stretch at any such shift or either is silent.

    Raises:
        ValueError: tracks of different rates.
    """
    if first.rate != second.rate:
        raise ValueError(f"audio rates {first.rate} and {second.rate}: resample them to one")
    a, b = np.asarray(first.samples, np.float64), np.asarray(second.samples, np.float64)
    if a.size < 2 or b.size < 2 or not a.any() or not b.any():
        return None
    rate = first.rate
    n = 1 << int(np.ceil(np.log2(a.size + b.size)))
    cross = np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n))
    cross /= np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max())
    r = np.fft.irfft(cross, n)  # r[k] = sum_m a[m + k] b[m] (k < 0 at n + k)
    # a lag k: the sound at first's time first.start + (m + k) / rate is at second's second.start + m / rate
    lags = np.arange(-(b.size - 1), a.size)
    shifts = second.start_s - first.start_s - lags / rate
    keep = np.abs(shifts) <= max_shift_s
    if not keep.any():
        return None
    lags, values = lags[keep], r[lags[keep] % n]
    best = int(np.argmax(values))
    guard = int(round(PEAK_GUARD_S * rate))
    away = np.abs(lags - lags[best]) > guard
    rival = float(values[away].max()) if away.any() else 0.0
    strength = float(values[best] / rival) if rival > 0 else float("inf")
    part = 0.0
    if 0 < best < len(values) - 1:
        bend = values[best - 1] - 2 * values[best] + values[best + 1]
        part = float(np.clip(0.5 * (values[best - 1] - values[best + 1]) / bend, -0.5, 0.5)) if bend < 0 else 0.0
    lag = lags[best] + part
    return SoundShift(first_view=first_view, second_view=second_view,
                      shift_s=float(second.start_s - first.start_s - lag / rate) + 0.0, strength=strength)
