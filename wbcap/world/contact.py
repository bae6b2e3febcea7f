"""Foot contact from speed and height, with hysteresis.

A sole region is *planted* from a frame where it is slow and low (``speed < speed_on`` and
``height < height_on``) for as long as it stays fairly slow and fairly low (``speed < speed_off``
and ``height < height_off``, the looser thresholds): two thresholds, so that noise near one of them
does not toggle the label every frame (a Schmitt trigger). Runs shorter than a minimum are dropped
(a single frame constrains nothing).
"""

from __future__ import annotations

import numpy as np

from wbcap.smooth.filters import gaussian

__all__ = ["FOOT_OFF", "FOOT_STRIKE", "drop_short", "foot_events", "hysteresis", "ray_smoothed", "relative_speeds",
           "speeds"]

#: Gait events' names, as Vicon Nexus and Visual3D name them in C3D files.
FOOT_STRIKE = "Foot Strike"
FOOT_OFF = "Foot Off"


def speeds(points: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Speed of points over time: ``(N, R, 3)`` metres at ``time`` ``(N,)`` seconds -> ``(N, R)`` m/s.

    Central differences in the interior, one-sided at the ends (``numpy.gradient`` with the
    times, so uneven frame intervals are handled). One frame gives zeros.
    """
    p = np.asarray(points, np.float64)
    if p.shape[0] < 2:
        return np.zeros(p.shape[:2])
    return np.linalg.norm(np.gradient(p, np.asarray(time, np.float64), axis=0), axis=-1)


def relative_speeds(relative: np.ndarray, speed: np.ndarray, seen: np.ndarray, time: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Each sole region's speed relative to the slowest one, which the track's translation error
    cannot touch.

    An error in a frame's translation moves every region of the body by the same amount, so the
    difference of two regions' velocities depends on the pose alone: the velocity of the
    regions relative to the pelvis, differenced. Relative to the slowest seen region of the
    frame (the reference), a planted region's relative speed is 0 whenever the reference is
    planted too, whatever the translation error.

    Args:
        relative: ``(N, R, 3)`` region anchors minus the pelvis, metres.
        speed: ``(N, R)`` the regions' speeds, m/s (any estimate; it only picks the reference).
        seen: ``(N, R)`` bool, regions in the image (a frame without any takes region 0).
        time: ``(N,)`` seconds.

    Returns:
        ``(relative speed (N, R), reference speed (N,))``, m/s: the speed of each region
        relative to the reference, and the reference's own ``speed``.
    """
    ref = np.argmin(np.where(seen, speed, np.inf), axis=1)  # (N,)
    if relative.shape[0] < 2:
        return np.zeros(speed.shape), speed[np.arange(speed.shape[0]), ref]
    vel = np.gradient(np.asarray(relative, np.float64), np.asarray(time, np.float64), axis=0)  # (N, R, 3)
    rows = np.arange(vel.shape[0])
    rel = np.linalg.norm(vel - vel[rows, ref][:, None], axis=-1)
    return rel, speed[rows, ref]


def ray_smoothed(pelvis: np.ndarray, time: np.ndarray, sigma_s: float) -> np.ndarray:
    """The pelvis path with its distance from the camera smoothed (Gaussian, ``sigma_s`` seconds)
    and its direction kept: ``(N, 3)`` camera-frame metres -> ``(N, 3)``.

    The network's translation errors lie mostly along the camera ray (depth); this takes out
    their fast part so foot speeds can be judged before any correction. The kernel is in frames
    (``sigma_s`` times the median frame rate)."""
    p = np.asarray(pelvis, np.float64)
    t = np.asarray(time, np.float64)
    if p.shape[0] < 3 or sigma_s <= 0:
        return p.copy()
    dist = np.linalg.norm(p, axis=1)
    rate = 1.0 / float(np.median(np.diff(t)))
    return p / dist[:, None] * gaussian(dist, sigma_s * rate)[:, None]


def hysteresis(on: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``(N, R)`` bool: True from a frame where ``on`` holds, while ``keep`` holds (``on`` implies
    ``keep`` is assumed; each column is one signal over the N frames)."""
    on, keep = np.asarray(on, bool), np.asarray(keep, bool) | np.asarray(on, bool)
    out = np.zeros(on.shape, bool)
    state = np.zeros(on.shape[1:], bool)
    for t in range(on.shape[0]):
        state = on[t] | (state & keep[t])
        out[t] = state
    return out


def drop_short(labels: np.ndarray, min_frames: int) -> np.ndarray:
    """``(N, R)`` bool with the runs of True shorter than ``min_frames`` frames set False."""
    out = np.array(labels, bool)
    if min_frames <= 1:
        return out
    for r in range(out.shape[1]):
        col = np.concatenate([[False], out[:, r], [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(col))
        for start, stop in zip(edges[::2], edges[1::2]):
            if stop - start < min_frames:
                out[start:stop, r] = False
    return out


def foot_events(contact: np.ndarray) -> list[tuple[int, str, str]]:
    """Gait events from the feet's contact labels: a foot strike where a foot becomes planted, a
    foot off where it stops being so; none at the first row (what came before is unknown).

    Args:
        contact: ``(T, 2)`` bool, (left, right) foot planted per row (a track npz's ``contact``).

    Returns:
        ``(row, side, event)`` sorted by row, then left before right: ``side`` ``"Left"`` or
        ``"Right"`` (the person's own), ``event`` :data:`FOOT_STRIKE` or :data:`FOOT_OFF`.

    Raises:
        ValueError: ``contact`` not ``(T, 2)``.
    """
    c = np.asarray(contact, bool)
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"contact of shape {c.shape}; expected (T, 2)")
    events = []
    for row in range(1, len(c)):
        for foot, side in enumerate(("Left", "Right")):
            if c[row, foot] != c[row - 1, foot]:
                events.append((row, side, FOOT_STRIKE if c[row, foot] else FOOT_OFF))
    return events
