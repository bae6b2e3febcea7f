"""Two cameras' clocks from the sound both recorded (``wbcap fuse --offsets audio``).

:func:`sound_shift` cross-correlates two :class:`~wbcap.io.audio.AudioTrack` by the generalized
cross-correlation with phase transform (GCC-PHAT; Knapp & Carter, IEEE TASSP 1976): the cross
spectrum divided by its magnitude, so every frequency counts alike and a sound both microphones
heard (a clap, steps, a voice) gives one sharp peak at the lag between them, whatever each
microphone's response and loudness. The peak is placed between samples by a parabola. Its
``strength`` is its height over the highest value of the correlation more than
:data:`PEAK_GUARD_S` from it: sound the cameras share gives several (a review of synthetic
scenes: 5 to 40), unrelated sound about 1.

A sound that repeats (a metronome, a beat, regular steps on a treadmill) matches at every
multiple of its period, and the phase transform, which weighs the window's edges as much as the
sound, then picks one of them by them (a review: a click every 0.5 s took a clock 0.5 s off at
strength 13.6). So the plain cross-correlation (above :data:`HIGH_PASS_HZ`, mains hum and rumble
left out) is asked too: its value at the peak over its highest value more than
:data:`PEAK_GUARD_S` from it is ``unique``; under :data:`MIN_UNIQUE` the shift is ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wbcap.io.audio import AudioTrack

__all__ = ["MIN_STRENGTH", "MIN_UNIQUE", "SoundShift", "sound_shift"]

#: Seconds either side of the peak left out when looking for the next highest value.
PEAK_GUARD_S = 0.02
#: The least strength a shift is taken at.
MIN_STRENGTH = 2.0
#: The least ``unique`` a shift is taken at (the plain correlation's peak over its next highest).
MIN_UNIQUE = 1.2
#: Hz; the plain correlation leaves out the sound below (mains hum, traffic rumble: periodic).
HIGH_PASS_HZ = 200.0
#: Seconds of sound two recordings must share at a lag for it to count.
MIN_OVERLAP_S = 1.0


@dataclass(frozen=True)
class SoundShift:
    """How two cameras' clocks compare by their sound: the second camera heard each sound
    ``shift_s`` seconds later on its own clock than the first did (:class:`wbcap.fuse.views.ClockShift`'s
    convention); ``strength``: the peak over the next highest value, ``unique``: the same of the
    plain correlation (module docstring)."""

    first_view: int
    second_view: int
    shift_s: float
    strength: float
    unique: float = float("inf")

    @property
    def taken(self) -> bool:
        """Strong and unique enough to set a clock by (:data:`MIN_STRENGTH`, :data:`MIN_UNIQUE`)."""
        return self.strength >= MIN_STRENGTH and self.unique >= MIN_UNIQUE


def sound_shift(first: AudioTrack, second: AudioTrack, max_shift_s: float, first_view: int = 0,
                second_view: int = 1) -> SoundShift | None:
    """The :class:`SoundShift` of ``second`` against ``first`` (the same ``rate``), within
    ``max_shift_s``; None where they share no :data:`MIN_OVERLAP_S` at any such shift, either is
    silent, or no lag lies :data:`PEAK_GUARD_S` from the peak to compare it with.

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
    plain = np.fft.irfft(np.where(np.fft.rfftfreq(n, 1.0 / first.rate) >= HIGH_PASS_HZ, cross, 0.0), n)
    cross /= np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max())
    r = np.fft.irfft(cross, n)  # r[k] = sum_m a[m + k] b[m] (k < 0 at n + k)
    # a lag k: the sound at first's time first.start + (m + k) / rate is at second's second.start + m / rate
    lags = np.arange(-(b.size - 1), a.size)
    shifts = second.start_s - first.start_s - lags / rate
    keep = np.abs(shifts) <= max_shift_s
    if not keep.any():
        return None
    # (a lag whose overlap is under MIN_OVERLAP_S tells nothing: a few samples in common peak alike)
    overlap = np.minimum(b.size, a.size - lags) - np.maximum(0, -lags)
    keep &= overlap >= MIN_OVERLAP_S * rate
    if not keep.any():
        return None
    lags, values = lags[keep], r[lags[keep] % n]
    best = int(np.argmax(values))
    guard = int(round(PEAK_GUARD_S * rate))
    away = np.abs(lags - lags[best]) > guard
    if not away.any() or values[best] <= 0:
        return None
    rival = float(values[away].max())
    strength = float(values[best] / rival) if rival > 0 else float("inf")
    heard = plain[lags % n]
    near = np.abs(lags - lags[best]) <= 2  # (the plain peak within two samples of the whitened one)
    plain_rival = float(heard[away].max())
    unique = float(heard[near].max() / plain_rival) if plain_rival > 0 else 0.0
    part = 0.0
    if 0 < best < len(values) - 1:
        bend = values[best - 1] - 2 * values[best] + values[best + 1]
        part = float(np.clip(0.5 * (values[best - 1] - values[best + 1]) / bend, -0.5, 0.5)) if bend < 0 else 0.0
    lag = lags[best] + part
    return SoundShift(first_view=first_view, second_view=second_view,
                      shift_s=float(second.start_s - first.start_s - lag / rate) + 0.0, strength=strength,
                      unique=unique)
