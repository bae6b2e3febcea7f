"""Tracks of several calibrated cameras in one world: which are one person, and their fusion.

Each input is a :class:`ViewTrack`: one piece of one camera's track (a ``track_<id>.npz`` of a
``wbcap run --world --calibration`` folder), in the calibration's world (z up, metres; AMASS's
layout: ``poses (T, 55, 3)`` axis-angle with the hands' mean folded in, ``trans``), on that run's
regular clock, the videos taken as synchronised (their clocks one; ``wbcap fuse --offsets`` moves
a camera's).

:func:`associate` links tracks of different cameras whose pelvises stay within
``max_distance`` (median over the rows both saw); a person is a group of tracks, at most one per
camera at a time (a camera's track split by an occlusion joins as two). A person who walks out of
one camera's view into another's without the two seeing them together is a handover: the first
track's end and the second's start, each carried on at its own velocity to the time halfway
between them, within ``max_distance``, at most ``max_handover_s`` apart (:func:`_handover_distance`).

:func:`fuse_person` combines a person's tracks on one clock (the fastest camera's):

* the pelvis by weighted least squares, each camera's estimate with the covariance of a
  monocular one, ``depth_sigma`` times its distance along its ray and ``lateral_sigma_m``
  across it: where two cameras see a person from different sides, the one's ray fixes the
  other's depth (the monocular depth error is what cameras disagree on most; see
  ``benchmarks/multiview_fusion.py``);
* every rotation (root, body, jaw, eyes, hands) as the normalised weighted sum of its
  quaternions, signs aligned (the chordal mean; exact for one camera, close to the geodesic
  mean for rotations that agree to some tens of degrees);
* the expression by the weighted mean, the shape by the mean of the tracks' betas weighted by
  their rows seen;
* each camera's weight rises from 0 to 1 over ``ramp_s`` after its track starts and falls before
  it ends where another camera sees the person meanwhile, so that a camera joining or leaving
  moves nothing at once (its estimate may differ from the others' by centimetres); for the
  pelvis the weight is the chance the camera is counted (:func:`_pelvis`).

Each track is read at the fused clock's times between its two rows around each (linear for the
pelvis and expression, normalised linear for the quaternions, 1/fps apart), so cameras of other
frame rates, or clocks moved by part of a frame, give smooth motion. A row a camera's run filled
across a miss (``valid`` False) weighs less the deeper it lies in the miss, down to
:data:`FILLED_WEIGHT` (a camera that saw the person is trusted over one that interpolated). A
person's rows run over every time any of its tracks covers; ``valid`` where at least one camera
saw them; a time no track covers splits the person into pieces, unless it lasts at most
``max_handover_s``: those rows are filled (the pelvis, rotations and expression carried from the
last row before to the first after: linear, spherical linear; ``valid`` False, no camera).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClockShift", "FuseConfig", "FusedPiece", "ViewTrack", "associate", "clock_offsets", "clock_shifts",
           "fuse_person", "matched_rows", "median_distance", "seen_together"]


@dataclass(frozen=True)
class FuseConfig:
    """Settings of :func:`associate` and :func:`fuse_person` (built once by the CLI).

    Attributes:
        max_distance: metres; two cameras' tracks whose pelvises lie further apart (median over
            the rows both saw) are two people.
        min_overlap_s: seconds both tracks must have been seen at once to be compared.
        depth_sigma: the standard deviation of a camera's pelvis along its ray, as a fraction
            of its distance (the monocular depth error).
        lateral_sigma_m: metres; its standard deviation across the ray.
        ramp_s: seconds over which a camera's weight rises after its track starts and falls
            before it ends.
        max_handover_s: seconds; a person no camera sees for at most this long between two
            cameras' tracks (one camera's view left, another's entered) is one person across it
            where the tracks meet (:func:`associate`), and the time is filled
            (:func:`fuse_person`); 0: two people, and any time no camera sees a person splits it.
        units_per_metre: a calibration without a scale (COLMAP's reconstruction): its units in a
            metre, from a length measured in both (``wbcap.fuse_app``); None: found from the
            people the cameras saw (:func:`wbcap.fuse.level.reconstruction_scale`).
    """

    max_distance: float = 0.5
    min_overlap_s: float = 0.5
    depth_sigma: float = 0.08
    lateral_sigma_m: float = 0.015
    ramp_s: float = 0.5
    max_handover_s: float = 1.0
    units_per_metre: float | None = None

    def __post_init__(self) -> None:
        """Raises ValueError for a setting that is not a finite number of its range (above 0; the
        ramp, the overlap and the handover 0 or more; the units per metre None or above 0)."""
        given = self.units_per_metre
        if given is not None and (isinstance(given, bool) or not isinstance(given, (int, float))
                                  or not math.isfinite(given) or given <= 0):
            raise ValueError(f"units_per_metre {given!r}: None or a finite number above 0")
        zero_ok = ("min_overlap_s", "ramp_s", "max_handover_s")
        for name in ("max_distance", "depth_sigma", "lateral_sigma_m", "min_overlap_s", "ramp_s", "max_handover_s"):
            value = getattr(self, name)
            low_ok = value >= 0 if name in zero_ok else value > 0
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low_ok:
                raise ValueError(f"{name} {value!r}: a finite number " + ("of 0 or more" if name in zero_ok else "above 0"))


@dataclass(frozen=True)
class ViewTrack:
    """One piece of one camera's track in the calibration's world.

    Attributes:
        view: the camera (run) it comes from, an index; label: for messages (``cam01/track_3``).
        times: ``(T,)`` seconds on the shared clock, regular (``fps``); valid: ``(T,)`` bool, seen.
        poses: ``(T, 55, 3)`` float64 axis-angle, radians: root (in the world), 21 body joints,
            jaw, eyes, 15 + 15 hand joints with the hands' mean folded in (AMASS's order).
        trans: ``(T, 3)`` metres (SMPL-X ``transl`` in the world); betas: ``(B,)``;
            expression: ``(T, E)``; frame_indices: ``(T,)`` the camera's source frames (-1: filled).
        pelvis: ``(T, 3)`` metres, the pelvis in the world (the rest pelvis of ``betas`` plus ``trans``).
        camera_position: ``(3,)`` metres, the camera's centre in the world.
        fps: rows per second.
        contact: ``(T, 2)`` bool planted (left, right) foot, or None.
    """

    view: int
    label: str
    times: np.ndarray
    valid: np.ndarray
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    frame_indices: np.ndarray
    pelvis: np.ndarray
    camera_position: np.ndarray
    fps: float
    contact: np.ndarray | None = None

    @property
    def start(self) -> float:
        """Seconds: the first row's time."""
        return float(self.times[0])

    @property
    def end(self) -> float:
        """Seconds: the last row's time."""
        return float(self.times[-1])

    def covers(self, times: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which of ``times`` lie within its first and last rows (to a millionth of a row)."""
        u = (np.asarray(times, np.float64) - self.times[0]) * self.fps
        return (u >= -1e-6) & (u <= len(self.times) - 1 + 1e-6)

    def moved(self, rotation: np.ndarray, shift: np.ndarray) -> ViewTrack:
        """The same track in another frame, ``x' = rotation @ x + shift`` (``(3, 3)`` a rotation,
        ``(3,)`` metres): the pelvis and the camera moved, the root turned (SMPL-X turns the body
        about its pelvis, so the rest pelvis and with it ``trans - pelvis`` stay)."""
        return dataclasses.replace(self, poses=_turned_root(self.poses, rotation),
                                   pelvis=self.pelvis @ np.asarray(rotation).T + shift,
                                   trans=self.trans + (self.pelvis @ np.asarray(rotation).T + shift - self.pelvis),
                                   camera_position=np.asarray(rotation) @ self.camera_position + shift)

    def scaled(self, factor: float) -> ViewTrack:
        """The same track with every pelvis ``factor`` times as far from the camera along its ray
        (a monocular depth's scale error taken out; the body's size and rotations kept)."""
        pelvis = self.camera_position + float(factor) * (self.pelvis - self.camera_position)
        return dataclasses.replace(self, pelvis=pelvis, trans=self.trans + (pelvis - self.pelvis))

    def rows_at(self, times: np.ndarray) -> np.ndarray:
        """``(N,)`` int64: the row at each of ``times`` (within half a row's interval), else -1."""
        t = np.asarray(times, np.float64)
        index = np.rint((t - self.times[0]) * self.fps).astype(np.int64)
        inside = (index >= 0) & (index < len(self.times))
        near = np.zeros(t.shape, bool)
        near[inside] = np.abs(self.times[index[inside]] - t[inside]) <= 0.5 / self.fps + 1e-9
        return np.where(near, index, -1)


@dataclass(frozen=True)
class FusedPiece:
    """One person's fused motion over one stretch of time, in the calibration's world.

    Attributes:
        times: ``(T,)`` seconds, regular at ``fps`` (a row on a camera's own row time keeps it
            to the bit); valid: ``(T,)`` bool, seen by a camera (its nearest row).
        poses: ``(T, 55, 3)``, trans: ``(T, 3)``, betas: ``(B,)``, expression: ``(T, E)``, as
            :class:`ViewTrack`'s; frame_indices: ``(T,)`` the source frame (its nearest row) of
            the reference camera (``reference_view`` of :func:`fuse_person`, whose intrinsics
            and pose the files carry) where it saw the person then, else -1.
        views: ``(T,)`` int, how many cameras had a row.
        fps: rows per second (the fastest camera's).
        contact: ``(T, 2)`` bool, a foot planted by the weighted majority of the cameras whose
            tracks have contacts (False where none of them has a row), or None where no track has.
    """

    times: np.ndarray
    valid: np.ndarray
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    expression: np.ndarray
    frame_indices: np.ndarray
    views: np.ndarray
    fps: float
    contact: np.ndarray | None = None

    def moved(self, rotation: np.ndarray, shift: np.ndarray, rest: np.ndarray) -> FusedPiece:
        """The same motion in another frame, ``x' = rotation @ x + shift`` (:meth:`ViewTrack.moved`;
        ``rest``: ``(3,)`` the rest pelvis of its betas, metres)."""
        pelvis = self.trans + np.asarray(rest, np.float64)
        return dataclasses.replace(self, poses=_turned_root(self.poses, rotation),
                                   trans=pelvis @ np.asarray(rotation).T + shift - rest)


def _turned_root(poses: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``(T, 55, 3)`` axis-angle poses with the root (joint 0) turned by ``rotation`` ``(3, 3)``."""
    from scipy.spatial.transform import Rotation

    out = np.array(poses, np.float64, copy=True)
    out[:, 0] = (Rotation.from_matrix(np.asarray(rotation, np.float64)) * Rotation.from_rotvec(out[:, 0])).as_rotvec()
    return out


def median_distance(a: ViewTrack, b: ViewTrack, min_overlap_s: float, shift: float = 0.0) -> float | None:
    """The median distance of the pelvises of ``a`` and ``b`` (read ``shift`` s later on its
    clock) over the rows both saw, metres, or None where they saw the person at once for less
    than ``min_overlap_s`` (:func:`_shift_curve` at one shift)."""
    return _shifted_distance(a, b, shift, min_overlap_s * a.fps)


def matched_rows(a: ViewTrack, b: ViewTrack, shift: float = 0.0, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(rows of a, rows of b)``: every ``stride``-th row of ``a`` that it saw and ``b``'s row
    ``shift`` s later on its clock (within half an interval) that it saw too."""
    rows_a = np.arange(0, len(a.times), stride)
    rows_b = b.rows_at(a.times[rows_a] + shift)
    both = a.valid[rows_a] & (rows_b >= 0)
    both[both] &= b.valid[rows_b[both]]
    return rows_a[both], rows_b[both]


#: Seconds at a track's end (or start) whose seen rows give its velocity for a handover (:func:`_handover_distance`).
HANDOVER_VELOCITY_S = 0.5
#: The fewest seen rows that give that velocity (:func:`_end_motion`).
HANDOVER_MIN_ROWS = 3


def _end_motion(track: ViewTrack, last: bool) -> tuple[float, np.ndarray, np.ndarray] | None:
    """``(time, pelvis (3,), velocity (3,) m/s)`` at the track's last (or first) seen row, the
    velocity a line fitted to its seen rows within :data:`HANDOVER_VELOCITY_S` of it, or to its
    last (first) :data:`HANDOVER_MIN_ROWS` seen rows where fewer lie there (a track whose run
    filled the rows before its last seen one), those within three times as long (zero with one
    row); None where it saw nothing."""
    seen = np.flatnonzero(track.valid)
    if seen.size == 0:
        return None
    at = seen[-1] if last else seen[0]
    away = np.abs(track.times[seen] - track.times[at])
    near = seen[away <= HANDOVER_VELOCITY_S + 1e-9]
    if near.size < HANDOVER_MIN_ROWS:
        ordered = seen[np.argsort(away, kind="stable")][:HANDOVER_MIN_ROWS]
        near = ordered[np.abs(track.times[ordered] - track.times[at]) <= 3 * HANDOVER_VELOCITY_S + 1e-9]
    dt = track.times[near] - track.times[at]
    velocity = (np.polyfit(dt, track.pelvis[near], 1)[0] if near.size >= 2 and np.ptp(dt) > 0 else np.zeros(3))
    return float(track.times[at]), track.pelvis[at], np.asarray(velocity, np.float64)


def _handover_distance(a: ViewTrack, b: ViewTrack, max_handover_s: float, min_overlap_s: float) -> float | None:
    """How far apart ``a``'s end and ``b``'s start come (metres) where ``b``'s first seen row
    follows ``a``'s last by at most ``max_handover_s`` (or precedes it by less than
    ``min_overlap_s``: seen together too briefly to be compared), else None: each carried on at
    its own velocity (:func:`_end_motion`) over the time between the two rows to the other's
    row, the larger of the two distances there. Two walkers whose paths cross while no camera
    sees them meet halfway but not at the ends: their velocities differ (a review: carried to
    the halfway time only, they swapped)."""
    end, start = _end_motion(a, last=True), _end_motion(b, last=False)
    if end is None or start is None or not -min_overlap_s < start[0] - end[0] <= max_handover_s + 1e-9:
        return None
    if b.times[np.flatnonzero(b.valid)[-1]] <= end[0]:  # (b inside a: no one walked from a's view into b's)
        return None
    gap = start[0] - end[0]
    forward = np.linalg.norm(end[1] + end[2] * gap - start[1])  # (a carried to b's first row)
    back = np.linalg.norm(start[1] - start[2] * gap - end[1])  # (b carried back to a's last row)
    return float(max(forward, back))


def seen_together(a: ViewTrack, b: ViewTrack, min_overlap_s: float) -> bool:
    """Whether two cameras' tracks saw the person at once for ``min_overlap_s`` or more (compared
    by :func:`associate` over those rows; joined otherwise only as a handover)."""
    if a.view == b.view or a.end < b.start or b.end < a.start:
        return False
    first, second = (a, b) if a.fps >= b.fps else (b, a)
    return median_distance(first, second, min_overlap_s) is not None


def associate(tracks: Sequence[ViewTrack], config: FuseConfig = FuseConfig()
              ) -> tuple[list[list[int]], dict[tuple[int, int], float]]:
    """Which tracks are one person.

    Pairs of tracks of different cameras closer than ``max_distance`` (:func:`_distance`) are
    joined, the closest first, where the two groups have no two tracks of one camera at the same
    time (a camera sees a person once) and no two tracks compared further apart than
    ``max_distance`` (complete linkage: tracks 0.4 m apart in a row of three cameras do not chain
    a person 0.8 m wide; a review). Then, likewise, handovers: pairs of tracks of different
    cameras not compared so (one starts after the other ends, or they overlap less than
    ``min_overlap_s``) whose ends meet within ``max_distance`` (:func:`_handover_distance`,
    within ``max_handover_s``).

    Args:
        tracks: every camera's tracks.

    Returns:
        ``(people, distances)``: each person's track indices (by the first time any is seen,
        then index), every track in exactly one; ``{(i, j): metres}`` for the pairs compared
        (``i < j``), handovers' included.
    """
    distances: dict[tuple[int, int], float] = {}
    for i, a in enumerate(tracks):
        for j in range(i + 1, len(tracks)):
            b = tracks[j]
            if a.view == b.view or a.end < b.start or b.end < a.start:
                continue
            d = (median_distance(a, b, config.min_overlap_s) if a.fps >= b.fps
                 else median_distance(b, a, config.min_overlap_s))  # (seen_together's rule)
            if d is not None:
                distances[i, j] = d
    handovers: dict[tuple[int, int], float] = {}
    if config.max_handover_s > 0:
        for i, a in enumerate(tracks):
            for j, b in enumerate(tracks):
                key = (min(i, j), max(i, j))
                if a.view != b.view and key not in distances and i != j and a.start <= b.start:
                    d = _handover_distance(a, b, config.max_handover_s, config.min_overlap_s)
                    if d is not None:
                        handovers[key] = min(d, handovers.get(key, np.inf))
    distances.update(handovers)
    group = list(range(len(tracks)))  # each track's group, by its lowest member
    members = {i: [i] for i in range(len(tracks))}

    def clash(x: list[int], y: list[int]) -> bool:
        return any((tracks[p].view == tracks[q].view and not (tracks[p].end < tracks[q].start or
                                                              tracks[q].end < tracks[p].start))
                   or distances.get((min(p, q), max(p, q)), 0.0) > config.max_distance for p in x for q in y)

    # (those seen together first, then handovers: each the closest first)
    for (i, j), d in sorted(distances.items(), key=lambda kv: (kv[0] in handovers, kv[1], kv[0])):
        gi, gj = group[i], group[j]
        if d > config.max_distance or gi == gj or clash(members[gi], members[gj]):
            continue
        keep, gone = min(gi, gj), max(gi, gj)
        members[keep] += members.pop(gone)
        for k in members[keep]:
            group[k] = keep
    people = sorted((sorted(m) for m in members.values()), key=lambda m: (min(tracks[k].start for k in m), m[0]))
    return people, distances


#: The weight of a camera's filled row (valid False: interpolated by its run across a miss)
#: deep inside the miss, against 1 for a row it saw; it falls from 1 over ``ramp_s`` into the miss.
FILLED_WEIGHT = 0.02


@dataclass(frozen=True)
class _Sample:
    """A track at a piece's grid times (:func:`_sample`): ``present (G,)`` within its span; for
    the present rows, in grid order: ``pelvis (P, 3)`` and ``expression (P, E)`` linear between
    its rows, ``quats (P, 55, 4)`` normalised linear (its rows 1/fps apart), ``seen (P,)`` the
    weight of its seen and filled rows (:data:`FILLED_WEIGHT`) interpolated, ``valid (P,)``,
    ``frame (P,)`` and ``contact (P, 2)`` (or None) of its nearest row."""

    present: np.ndarray
    pelvis: np.ndarray
    expression: np.ndarray
    quats: np.ndarray
    seen: np.ndarray
    valid: np.ndarray
    frame: np.ndarray
    contact: np.ndarray | None


def _seen_weight(track: ViewTrack, ramp_s: float) -> np.ndarray:
    """``(T,)`` 1 on a row the camera saw, falling over ``ramp_s`` into a run of filled rows to
    :data:`FILLED_WEIGHT` (all :data:`FILLED_WEIGHT` where it saw none)."""
    seen_times = track.times[track.valid]
    if seen_times.size == 0:
        return np.full(track.times.shape, FILLED_WEIGHT)
    at = np.clip(np.searchsorted(seen_times, track.times), 1, seen_times.size) - 1
    nearest = np.minimum(np.abs(track.times - seen_times[at]),
                         np.abs(track.times - seen_times[np.minimum(at + 1, seen_times.size - 1)]))
    if ramp_s <= 0:
        return np.where(nearest > 0, FILLED_WEIGHT, 1.0)
    return np.clip(1.0 - nearest / ramp_s, FILLED_WEIGHT, 1.0)


def _sample(track: ViewTrack, grid: np.ndarray, ramp_s: float) -> _Sample:
    """``track`` at the times ``grid`` (:class:`_Sample`): between its two rows around each time,
    so that cameras of other rates, or clocks moved by a fraction of a frame (``--offsets``),
    give smooth motion (a camera's row repeated on a faster one's clock stepped: a review)."""
    present = track.covers(grid)
    last = len(track.times) - 1
    u = np.clip((grid[present] - track.times[0]) * track.fps, 0.0, float(last))
    i0 = np.minimum(np.floor(u).astype(np.int64), max(last - 1, 0))
    i1 = np.minimum(i0 + 1, last)
    a = (u - i0)[:, None]
    nearest = np.where(a[:, 0] < 0.5, i0, i1)
    q0, q1 = _quaternions(track.poses[i0]), _quaternions(track.poses[i1])
    q1 = np.where((np.sum(q0 * q1, axis=-1) < 0)[..., None], -q1, q1)
    quats = (1 - a[:, :, None]) * q0 + a[:, :, None] * q1
    quats /= np.linalg.norm(quats, axis=-1, keepdims=True)
    seen = _seen_weight(track, ramp_s)
    return _Sample(present=present, pelvis=(1 - a) * track.pelvis[i0] + a * track.pelvis[i1],
                   expression=(1 - a) * track.expression[i0] + a * track.expression[i1], quats=quats,
                   seen=(1 - a[:, 0]) * seen[i0] + a[:, 0] * seen[i1], valid=track.valid[nearest],
                   frame=track.frame_indices[nearest],
                   contact=None if track.contact is None else track.contact[nearest])


def _ramp(track: ViewTrack, grid: np.ndarray, ramp_s: float) -> np.ndarray:
    """``(G,)`` a camera's weight on a piece's ``grid`` by its track's ends: rising over ``ramp_s``
    from its start where that is inside the piece (another camera saw the person before) and
    falling to its end likewise (a small floor: a track shorter than the ramps counts); 1 where
    the piece starts or ends with it."""
    if ramp_s <= 0:
        return np.ones(grid.shape)
    rise = grid - track.start if track.start > grid[0] + 1e-9 else np.full(grid.shape, np.inf)
    fall = track.end - grid if track.end < grid[-1] - 1e-9 else np.full(grid.shape, np.inf)
    return np.clip(np.minimum(rise, fall) / ramp_s, 1e-3, 1.0)


def _quaternions(rotvec: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_quat().reshape(*rotvec.shape[:-1], 4)


def fuse_person(tracks: Sequence[ViewTrack], rest_root: Callable[[np.ndarray], np.ndarray],
                config: FuseConfig = FuseConfig(), reference_view: int | None = None) -> list[FusedPiece]:
    """One person's tracks (:func:`associate`) fused (the module docstring).

    Args:
        tracks: the person's tracks (at most one per camera at any time), of one body model's
            sizes (betas, expression).
        rest_root: ``betas (B,) -> (3,)`` the rest pelvis of a shape, metres
            (:meth:`wbcap.body.smplx_layer.SMPLXLayer.rest_root`).
        reference_view: the camera whose source frames ``frame_indices`` gives (the one whose
            intrinsics and pose go into the files; the rows fall on its frames where it is of the
            fastest cameras); None: the first track's.

    Returns:
        The pieces, in time order (one unless no track covers some time between them).
    """
    fps = max(t.fps for t in tracks)
    start, end = min(t.start for t in tracks), max(t.end for t in tracks)
    # the rows on the reference camera's own times where it is of the fastest (clocks moved by part of a frame:
    # its frames, whose intrinsics the files carry, are rows), else on the first fastest camera's
    fastest = [t for t in tracks if t.fps == fps]
    anchor = next((t for t in fastest if t.view == reference_view), fastest[0]).start
    grid = anchor + np.arange(int(np.ceil((start - anchor) * fps - 1e-6)),
                              int(np.floor((end - anchor) * fps + 1e-6)) + 1) / fps
    for t in tracks:  # (a row on a camera's own time keeps it to the bit: synchronised cameras' times unchanged)
        rows = t.rows_at(grid)
        exact = rows >= 0
        exact[exact] = np.abs(t.times[rows[exact]] - grid[exact]) < 1e-6
        grid[exact] = t.times[rows[exact]]
    seen_rows = np.array([float(t.valid.sum()) for t in tracks])
    betas = (np.average(np.stack([t.betas for t in tracks]), axis=0, weights=seen_rows)
             if seen_rows.sum() > 0 else np.mean([t.betas for t in tracks], axis=0))
    rest = np.asarray(rest_root(betas), np.float64)
    covered = np.zeros(grid.size, bool)
    for t in tracks:  # (as _sample reads them: every covered row has a camera)
        covered |= t.covers(grid)
    pieces: list[FusedPiece] = []
    cuts = np.flatnonzero(np.diff(covered.astype(np.int8)))  # (stretches of covered rows)
    bounds = np.concatenate([[0], cuts + 1, [grid.size]])
    view = tracks[0].view if reference_view is None else reference_view
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if covered[lo]:
            piece = _fuse_rows(tracks, grid[lo:hi], betas, rest, fps, config, view)
            # (the time no track covers, from the tracks' own rows, as associate measures it: the fused grid's
            # rows fall up to a row of the fastest camera off them, a review)
            unseen = (min(t.start for t in tracks if t.start > pieces[-1].times[-1]) -
                      max(t.end for t in tracks if t.end < grid[lo])) if pieces else np.inf
            if unseen <= config.max_handover_s + 1e-9:
                pieces[-1] = _bridged(pieces[-1], piece, grid[bounds[bounds < lo].max():lo])
            else:
                pieces.append(piece)
    return pieces


def _bridged(before: FusedPiece, after: FusedPiece, gap: np.ndarray) -> FusedPiece:
    """``before`` and ``after`` one piece, the rows at ``gap`` (the times between them no camera
    covers) filled from ``before``'s last row to ``after``'s first: the pelvis and expression
    linear, every rotation spherical linear (:func:`_slerp`); not ``valid``, no camera, no
    frame, no foot planted."""
    from scipy.spatial.transform import Rotation

    u = ((gap - before.times[-1]) / (after.times[0] - before.times[-1]))[:, None]
    trans = (1 - u) * before.trans[-1] + u * after.trans[0]
    expression = (1 - u) * before.expression[-1] + u * after.expression[0]
    q = _slerp(_quaternions(before.poses[-1]), _quaternions(after.poses[0]), u[:, 0])
    poses = Rotation.from_quat(q.reshape(-1, 4)).as_rotvec().reshape(len(gap), -1, 3)
    n = len(gap)
    contact = (None if before.contact is None or after.contact is None
               else np.concatenate([before.contact, np.zeros((n, 2), bool), after.contact]))
    return dataclasses.replace(
        before, times=np.concatenate([before.times, gap, after.times]),
        valid=np.concatenate([before.valid, np.zeros(n, bool), after.valid]),
        poses=np.concatenate([before.poses, poses, after.poses]),
        trans=np.concatenate([before.trans, trans, after.trans]),
        expression=np.concatenate([before.expression, expression, after.expression]),
        frame_indices=np.concatenate([before.frame_indices, np.full(n, -1, np.int64), after.frame_indices]),
        views=np.concatenate([before.views, np.zeros(n, before.views.dtype), after.views]), contact=contact)


def _slerp(q0: np.ndarray, q1: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``(G, J, 4)``: the unit quaternions ``q0``, ``q1`` ``(J, 4)`` (scipy's x, y, z, w) spherically
    interpolated at the fractions ``u`` ``(G,)`` (Shoemake 1985; the shorter way round; linear,
    renormalised, where they are within 1e-6 rad)."""
    q1 = np.where((np.sum(q0 * q1, -1) < 0)[:, None], -q1, q1)
    cos = np.clip(np.sum(q0 * q1, -1), -1.0, 1.0)
    angle = np.arccos(cos)[None, :, None]  # (1, J, 1)
    t = np.asarray(u, np.float64)[:, None, None]
    small = angle < 1e-6
    sin = np.where(small, 1.0, np.sin(angle))
    w0 = np.where(small, 1 - t, np.sin((1 - t) * angle) / sin)
    w1 = np.where(small, t, np.sin(t * angle) / sin)
    out = w0 * q0[None] + w1 * q1[None]
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


#: The most cameras at once whose pelvis estimates are fused as the expectation over their
#: subsets (:func:`_pelvis`); beyond, by the plain precision-weighted sum.
_MAX_SUBSET_CAMERAS = 12


def _pelvis(tracks: Sequence[ViewTrack], samples: list[_Sample], weights: np.ndarray, config: FuseConfig) -> np.ndarray:
    """``(G, 3)`` the fused pelvis: the least-squares point of the cameras' estimates, each with
    its precision (``1 / (depth_sigma d)^2`` along its ray, ``1 / lateral_sigma_m^2`` across).

    A camera of weight ``w`` below 1 (joining, leaving, or in a miss its run filled) cannot just
    have its precision scaled: its precision across its ray outweighs another camera's along that
    camera's ray hundreds of times, so a tenth of it would still move the point nearly all the
    way. The point is instead the expectation of the least-squares points over the subsets of the
    cameras present at that row, each in a subset with the chance ``w``: it moves from the point
    without a camera to the point with it in proportion to ``w``. With every weight 1 it is the
    plain least-squares point.
    """
    m, g = weights.shape
    precisions, moments = np.zeros((m, g, 3, 3)), np.zeros((m, g, 3))
    for k, (t, s) in enumerate(zip(tracks, samples)):
        if not s.present.any():
            continue
        ray = s.pelvis - t.camera_position
        dist = np.maximum(np.linalg.norm(ray, axis=1), 1e-6)
        r = ray / dist[:, None]
        along = np.einsum("gi,gj->gij", r, r)
        p_k = along / (config.depth_sigma * dist)[:, None, None] ** 2 + (np.eye(3) - along) / config.lateral_sigma_m ** 2
        precisions[k, s.present] = p_k
        moments[k, s.present] = np.einsum("gij,gj->gi", p_k, s.pelvis)
    present = weights > 0
    out = np.zeros((g, 3))
    patterns, which = np.unique(present.T, axis=0, return_inverse=True)
    for n, pattern in enumerate(patterns):
        rows = np.flatnonzero(which.reshape(-1) == n)
        members = np.flatnonzero(pattern)
        if len(members) > _MAX_SUBSET_CAMERAS:
            out[rows] = np.linalg.solve(precisions[members][:, rows].sum(0),
                                        moments[members][:, rows].sum(0)[..., None])[..., 0]
            continue
        w = weights[members][:, rows]  # (K, R)
        total, point = np.zeros(rows.size), np.zeros((rows.size, 3))
        for subset in range(1, 2 ** len(members)):
            inside = np.array([(subset >> k) & 1 for k in range(len(members))], bool)
            chance = np.prod(np.where(inside[:, None], w, 1.0 - w), axis=0)
            if not (chance > 0).any():
                continue
            chosen = members[inside]
            estimate = np.linalg.solve(precisions[chosen][:, rows].sum(0), moments[chosen][:, rows].sum(0)[..., None])
            point += chance[:, None] * estimate[..., 0]
            total += chance
        out[rows] = point / total[:, None]
    return out


def _fuse_rows(tracks: Sequence[ViewTrack], grid: np.ndarray, betas: np.ndarray, rest: np.ndarray, fps: float,
               config: FuseConfig, reference_view: int) -> FusedPiece:
    """:func:`fuse_person` over a piece's ``grid``, every time of which some track covers."""
    from scipy.spatial.transform import Rotation

    g = grid.size
    samples = [_sample(t, grid, config.ramp_s) for t in tracks]
    weights = np.zeros((len(tracks), g))
    for k, (t, s) in enumerate(zip(tracks, samples)):
        weights[k, s.present] = _ramp(t, grid, config.ramp_s)[s.present] * s.seen
    share = weights / weights.sum(0, keepdims=True)  # (M, G), each column sums to 1
    pelvis = _pelvis(tracks, samples, weights, config)
    # every rotation: the weighted sum of its quaternions, signs aligned with the heaviest camera's
    heaviest = np.argmax(weights, axis=0)
    reference = np.zeros((g, 55, 4))
    for k, s in enumerate(samples):
        mine = heaviest[s.present] == k
        reference[np.flatnonzero(s.present)[mine]] = s.quats[mine]
    mean = np.zeros((g, 55, 4))
    expression = np.zeros((g, tracks[0].expression.shape[1]))
    valid = np.zeros(g, bool)
    frames = np.full(g, -1, np.int64)
    # (the cameras whose runs found contacts vote, by their weights: a run in its camera's frame has none)
    votes = np.zeros((g, 2)) if any(t.contact is not None for t in tracks) else None
    voters = np.zeros(g)
    for k, s in enumerate(samples):
        rows = np.flatnonzero(s.present)
        w = share[k, rows]
        sign = np.where(np.einsum("gjq,gjq->gj", s.quats, reference[rows]) < 0, -1.0, 1.0)
        mean[rows] += s.quats * (sign * w[:, None])[..., None]
        expression[rows] += s.expression * w[:, None]
        valid[rows] |= s.valid
        if tracks[k].view == reference_view:  # (the reference camera's own frames: its intrinsics are the files')
            frames[rows[s.valid]] = s.frame[s.valid]
        if votes is not None and s.contact is not None:
            votes[rows] += s.contact * w[:, None]
            voters[rows] += w
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    poses = Rotation.from_quat(mean.reshape(-1, 4)).as_rotvec().reshape(g, -1, 3)
    return FusedPiece(times=grid, valid=valid, poses=poses, trans=pelvis - rest, betas=np.asarray(betas),
                      expression=expression, frame_indices=frames, views=(weights > 0).sum(0), fps=fps,
                      contact=None if votes is None else votes >= 0.5 * np.maximum(voters, 1e-12)[:, None])


@dataclass(frozen=True)
class ClockShift:
    """How two cameras' clocks compare (:func:`clock_shifts`): the second camera's closest track
    matches the first's best when read ``shift_s`` seconds later on its own clock.

    Attributes:
        first_view, second_view: the cameras; first, second: the tracks (indices) that matched.
        shift_s: seconds (0 where the clocks agree).
        apart_m: their pelvises' median distance at the row nearest that shift; unshifted_m:
            without it (None where they were not seen together unshifted).
        by_poses: True where the body poses set ``shift_s`` to part of a row (:func:`_pose_shift`);
            False where it is the pelvises' nearest row (the poses gave no clear minimum).
    """

    first_view: int
    second_view: int
    first: int
    second: int
    shift_s: float
    apart_m: float
    unshifted_m: float | None
    by_poses: bool = False


def _shift_curve(a: ViewTrack, b: ViewTrack, shifts: np.ndarray, min_rows: float, stride: int = 1) -> np.ndarray:
    """``(S,)`` the median pelvis distance of ``a``'s seen rows (every ``stride``-th) and ``b``'s
    seen rows ``shift`` s later on ``b``'s clock (its row within half an interval), for each of
    ``shifts``; NaN where fewer than ``min_rows`` pairs. All shifts at once, in blocks of about a
    million pairs (a search over 30 s for minutes-long tracks took a Python loop minutes)."""
    ta, va, pa = a.times[::stride], a.valid[::stride], a.pelvis[::stride]
    need = max(1.0, min_rows / stride)
    out = np.full(len(shifts), np.nan)
    block = max(1, 1_000_000 // max(1, len(ta)))
    for lo in range(0, len(shifts), block):
        t = ta[None, :] + np.asarray(shifts[lo:lo + block], np.float64)[:, None]  # (S, N)
        index = np.rint((t - b.times[0]) * b.fps).astype(np.int64)
        inside = (index >= 0) & (index < len(b.times))
        index = np.clip(index, 0, len(b.times) - 1)
        both = inside & (np.abs(b.times[index] - t) <= 0.5 / b.fps + 1e-9) & va[None, :] & b.valid[index]
        d = np.where(both, np.linalg.norm(pa[None] - b.pelvis[index], axis=2), np.inf)
        count = both.sum(1)
        d.sort(axis=1)
        # the median of the first `count` (finite) of each row: the middle one, or the mean of the middle two
        low = np.take_along_axis(d, (np.maximum(count - 1, 0) // 2)[:, None], 1)[:, 0]
        high = np.take_along_axis(d, np.minimum(count // 2, d.shape[1] - 1)[:, None], 1)[:, 0]
        with np.errstate(invalid="ignore"):
            out[lo:lo + block] = np.where(count >= need, (low + high) / 2, np.nan)
    return out


def _shifted_distance(a: ViewTrack, b: ViewTrack, shift: float, min_rows: float, stride: int = 1) -> float | None:
    """:func:`_shift_curve` at one ``shift``: the median distance, or None where too few pairs."""
    d = float(_shift_curve(a, b, np.array([shift]), min_rows, stride)[0])
    return None if np.isnan(d) else d


#: Rows of a track the pelvises' shift search reads at most (every k-th row beyond: their median
#: tells a shift as well), and the metres a pair's seen pelvises may lie apart at the nearest
#: (their extents' gap) before no shift is looked for (a monocular depth error runs into tens of
#: centimetres; at least 3 ``max_distance``).
SHIFT_ROWS = 500
SHIFT_GAP_M = 1.5


def _gap(a: ViewTrack, b: ViewTrack) -> float:
    """Metres between the axis-aligned boxes holding each track's seen pelvises: no shift of their
    clocks brings them nearer (inf where one saw no row)."""
    pa, pb = a.pelvis[a.valid], b.pelvis[b.valid]
    if not len(pa) or not len(pb):
        return float("inf")
    apart = np.maximum(0.0, np.maximum(pa.min(0) - pb.max(0), pb.min(0) - pa.max(0)))
    return float(np.linalg.norm(apart))


#: Seconds either side of the pelvises' shift over which :func:`_pose_shift` looks (under half a
#: gait cycle, ~1.1 s: a step later the legs look alike again), and its step, in rows.
POSE_SEARCH_S = 0.25
POSE_STEP_ROWS = 0.1
#: Rows of a track the poses' shift (and ``wbcap fuse``'s depth scales) read at most: every k-th beyond.
POSE_ROWS = 2000
#: Pairs of tracks of two cameras :func:`clock_shifts` asks the poses about, those that tell the most first.
POSE_TRIES = 5


def _body_rotations(track: ViewTrack) -> np.ndarray:
    """``(T, 189)``: the 21 body joints' rotation matrices, flattened (what :func:`_pose_shift` compares)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(track.poses[:, 1:22].reshape(-1, 3)).as_matrix().reshape(len(track.times), -1)


def _pose_shift(a: ViewTrack, b: ViewTrack, near: float, stride: int = 1) -> float | None:
    """The shift of ``b``'s clock (seconds, within :data:`POSE_SEARCH_S` of ``near``, to part of a
    row) at which its body joints' rotations best match ``a``'s: the least mean squared distance
    of their rotation matrices, each track's mean over the compared rows taken off (a camera's
    lasting error in a joint's rotation otherwise leaves a floor under the costs that hides the
    minimum: three cameras 10 degrees off each, 1.7 frames wrong without it, 0.1 with),
    ``b`` read between its rows by a cubic spline,
    the minimum placed between grid points by a parabola. The joints' rotations are the same in
    every view (the body's own frame) and change fast (a leg swings through tens of degrees in a
    tenth of a second) where the pelvises, whose depth errors run into centimetres, tell the
    clocks to a frame or two. None where the poses tell nothing: no rows in common (fewer than 4
    of ``b``'s within reach), a minimum at the window's edge, or one under 20 % below the costs
    at the edges (a still body: its noise alone)."""
    from scipy.interpolate import CubicSpline

    step = 1.0 / max(a.fps, b.fps)
    rows = np.arange(0, len(a.times), stride)
    mine = _body_rotations(a)[rows]
    # (b's rows the search can reach only: a spline of an hour's track held 600 MB, a review)
    reach = (b.times >= a.start + near - POSE_SEARCH_S - 2 / b.fps) & (b.times <= a.end + near + POSE_SEARCH_S + 2 / b.fps)
    if reach.sum() < 4:
        return None
    spline = CubicSpline(b.times[reach], _body_rotations(b)[reach])
    b = dataclasses.replace(b, times=b.times[reach], valid=b.valid[reach])  # (the rows the spline holds)
    grid = near + np.arange(-round(POSE_SEARCH_S / step / POSE_STEP_ROWS),
                            round(POSE_SEARCH_S / step / POSE_STEP_ROWS) + 1) * POSE_STEP_ROWS * step
    cost = np.full(grid.size, np.inf)
    for k, shift in enumerate(grid):
        t = a.times[rows] + shift
        u = (t - b.times[0]) * b.fps
        inside = (u >= 0) & (u <= len(b.times) - 1)
        low = np.clip(np.floor(u).astype(np.int64), 0, len(b.times) - 1)
        both = inside & a.valid[rows] & b.valid[low] & b.valid[np.minimum(low + 1, len(b.times) - 1)]
        if both.sum() < max(10, a.fps / stride):  # (a second's rows at the least)
            continue
        x, y = mine[both], spline(t[both])
        cost[k] = np.mean(np.sum(((x - x.mean(0)) - (y - y.mean(0))) ** 2, axis=1))
    best = int(np.argmin(cost))
    if not 0 < best < grid.size - 1 or not np.isfinite(cost[best - 1:best + 2]).all():
        return None
    edges = cost[np.isfinite(cost)][[0, -1]]
    if not cost[best] < 0.8 * edges.min():
        return None
    bend = cost[best - 1] - 2 * cost[best] + cost[best + 1]
    part = 0.5 * (cost[best - 1] - cost[best + 1]) / bend if bend > 0 else 0.0
    return float(grid[best] + float(np.clip(part, -0.5, 0.5)) * POSE_STEP_ROWS * step)


def _clear_minimum(curve: np.ndarray, near: int, apart: int, max_distance: float) -> tuple[int, float, float] | None:
    """The minimum of a pair's :func:`_shift_curve` where it tells the shift: ``(index, distance,
    rise)``, the rise the least of the curve ``near`` shifts either side less the minimum. None
    where it does not: no finite value; a distance over ``max_distance`` at every shift (two
    people); the curve less than 10 cm from end to end (people standing still match at every
    shift); a minimum without the curve ``near`` shifts on both sides (at the search's edge, or
    where the tracks' overlap runs out: a walker passing where someone stands matched them there,
    a review); or another minimum ``apart`` shifts or more away within half the rise of it (a
    person squatting, a walker pacing back and forth: periodic, ambiguous)."""
    finite = np.isfinite(curve)
    if not finite.any() or np.nanmax(curve) - np.nanmin(curve) < 0.1:
        return None
    k = int(np.nanargmin(curve))  # (the first of equals: the earliest shift)
    d = float(curve[k])
    if d > max_distance or k < near or k + near >= len(curve) or not (finite[k - near] and finite[k + near]):
        return None
    rise = float(min(curve[k - near], curve[k + near])) - d
    far = np.ones(len(curve), bool)
    far[max(0, k - apart + 1):k + apart] = False
    if rise <= 0 or ((far & finite).any() and float(np.nanmin(np.where(far, curve, np.nan))) < d + 0.5 * rise):
        return None
    return k, d, rise


def clock_shifts(tracks: Sequence[ViewTrack], config: FuseConfig = FuseConfig(), max_shift_s: float = 2.0,
                 min_overlap_s: float | None = None, by_poses: bool = True) -> list[ClockShift]:
    """For each pair of cameras that saw a person move: the time shift of the second camera's
    clock (up to ``max_shift_s``) that brings a pair of their tracks' pelvises nearest (a row at a
    time, the median distance over at least ``min_overlap_s`` seen together, default
    ``config``'s), then set to part of a row by their body poses (:func:`_pose_shift`; not with
    ``by_poses`` False). Of the pairs whose curve has a clear minimum (:func:`_clear_minimum`:
    within ``config.max_distance``, inside the search, unambiguous), the one whose distance rises
    most within :data:`POSE_SEARCH_S` of it (the one who moves most: a person standing or
    squatting matches at many shifts) whose poses confirm it, of the :data:`POSE_TRIES` that rise
    most; where none do, the first, ``by_poses`` False (two people whose paths cross at some
    shift, two labs' worlds, move their limbs at other times: their poses do not agree). A pair
    of cameras without a clear minimum is left out.

    On ``benchmarks/multiview_fusion.py``'s scenes (a walker and a person standing, cameras at
    30 fps, depths 8 % off, each body joint 10 degrees off per camera and shaking 5 degrees a
    frame) the pelvises alone tell the shift to 2-3 frames (root mean square), the poses to a
    twentieth of a frame."""
    shifts_found = []
    overlap = config.min_overlap_s if min_overlap_s is None else min_overlap_s
    views = sorted({t.view for t in tracks})
    for n, first_view in enumerate(views):
        for second_view in views[n + 1:]:
            found_pairs = []
            for i, a in enumerate(tracks):
                if a.view != first_view:
                    continue
                for j, b in enumerate(tracks):
                    if b.view != second_view or a.end + max_shift_s < b.start or b.end + max_shift_s < a.start:
                        continue
                    if _gap(a, b) > max(SHIFT_GAP_M, 3 * config.max_distance):  # (never one person at any shift)
                        continue
                    step = 1.0 / max(a.fps, b.fps)
                    grid = np.arange(-int(max_shift_s / step), int(max_shift_s / step) + 1) * step
                    stride = -(-len(a.times) // SHIFT_ROWS)  # (a long track: SHIFT_ROWS of its rows tell the shift)
                    curve = _shift_curve(a, b, grid, overlap * a.fps, stride)
                    if not np.isfinite(curve).any():
                        continue
                    found = _clear_minimum(curve, round(POSE_SEARCH_S / step), round(2 * POSE_SEARCH_S / step),
                                           config.max_distance)
                    if found is not None:
                        k, d, rise = found
                        found_pairs.append((rise, d, float(grid[k]), i, j))
            found_pairs.sort(key=lambda f: -f[0])
            chosen = None
            for _rise, d, s, i, j in found_pairs[:POSE_TRIES] if by_poses else ():  # (the first the poses confirm)
                fine = _pose_shift(tracks[i], tracks[j], s, stride=max(1, len(tracks[i].times) // POSE_ROWS))
                if fine is not None:
                    chosen = (d, fine, i, j, True)
                    break
            if chosen is None and found_pairs:
                _, d, s, i, j = found_pairs[0]
                chosen = (d, s, i, j, False)
            if chosen is not None:
                d, s, i, j, confirmed = chosen
                unshifted = _shifted_distance(tracks[i], tracks[j], 0.0, config.min_overlap_s * tracks[i].fps)
                shifts_found.append(ClockShift(first_view=first_view, second_view=second_view, first=i, second=j,
                                               shift_s=s + 0.0, apart_m=d, unshifted_m=unshifted, by_poses=confirmed))
    return shifts_found


def clock_offsets(shifts: Sequence[ClockShift | Any], views: Sequence[int]) -> dict[int, float]:
    """Each camera's clock against the first of ``views``, seconds (what to take off its
    ``--offsets`` value), the least-squares solution of the pairwise ``shift_s`` (``clock[second]
    - clock[first] = shift``; a :class:`ClockShift`, or anything with its ``first_view``,
    ``second_view`` and ``shift_s``, as :class:`wbcap.fuse.sound.SoundShift`): one consistent answer for three or more cameras, where correcting
    each pair on its own would move a right camera (a review); 0 for the first camera and for
    cameras no shift links to it."""
    others = [v for v in views[1:]]
    column = {v: k for k, v in enumerate(others)}
    rows, values = [], []
    for shift in shifts:
        row = np.zeros(len(others))
        if shift.second_view in column:
            row[column[shift.second_view]] += 1.0
        if shift.first_view in column:
            row[column[shift.first_view]] -= 1.0
        rows.append(row)
        values.append(shift.shift_s)
    clocks = {views[0]: 0.0} if views else {}
    if not rows or not others:
        return {**clocks, **{v: 0.0 for v in others}}
    a = np.array(rows)
    solved = np.linalg.lstsq(a, np.array(values), rcond=None)[0]
    linked = np.abs(a).sum(0) > 0
    for v, k in column.items():
        clocks[v] = float(solved[k]) + 0.0 if linked[k] else 0.0
    return clocks
