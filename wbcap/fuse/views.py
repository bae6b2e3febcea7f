"""Tracks of several calibrated cameras in one world: which are one person, and their fusion.

Each input is a :class:`ViewTrack`: one piece of one camera's track (a ``track_<id>.npz`` of a
``wbcap run --world --calibration`` folder), in the calibration's world (z up, metres; AMASS's
layout: ``poses (T, 55, 3)`` axis-angle with the hands' mean folded in, ``trans``), on that run's
regular clock, the videos taken as synchronised (their clocks one; ``wbcap fuse --offsets`` moves
a camera's).

:func:`associate` links tracks of different cameras whose pelvises stay within
``max_distance`` (median over the rows both saw); a person is a group of tracks, at most one per
camera at a time (a camera's track split by an occlusion joins as two).

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

A person's rows run over every time any of its tracks has a row (seen, or filled by its run);
``valid`` where at least one camera saw them; a time no track covers splits the person into
pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FuseConfig", "FusedPiece", "ViewTrack", "associate", "fuse_person"]


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
    """

    max_distance: float = 0.5
    min_overlap_s: float = 0.5
    depth_sigma: float = 0.08
    lateral_sigma_m: float = 0.015
    ramp_s: float = 0.5


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
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

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
        times: ``(T,)`` seconds, regular at ``fps`` (each row the time of its first
            contributing camera's row: synchronised cameras' times kept to the bit); valid:
            ``(T,)`` bool, seen by a camera.
        poses: ``(T, 55, 3)``, trans: ``(T, 3)``, betas: ``(B,)``, expression: ``(T, E)``, as
            :class:`ViewTrack`'s; frame_indices: ``(T,)`` the first contributing camera's
            source frame (-1 where it filled the row or had none).
        views: ``(T,)`` int, how many cameras had a row.
        contact: ``(T, 2)`` bool, a foot planted by the weighted majority of the cameras, or None
            where some camera's track has no contacts.
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


def _distance(a: ViewTrack, b: ViewTrack, min_overlap_s: float) -> float | None:
    """The median distance of the pelvises of ``a`` and ``b`` over the rows both saw, metres,
    or None where they saw the person at once for less than ``min_overlap_s``."""
    rows_b = b.rows_at(a.times)
    both = a.valid & (rows_b >= 0)
    both[both] &= b.valid[rows_b[both]]
    if both.sum() < max(1, min_overlap_s * a.fps):
        return None
    return float(np.median(np.linalg.norm(a.pelvis[both] - b.pelvis[rows_b[both]], axis=1)))


def associate(tracks: Sequence[ViewTrack], config: FuseConfig = FuseConfig()
              ) -> tuple[list[list[int]], dict[tuple[int, int], float]]:
    """Which tracks are one person.

    Pairs of tracks of different cameras closer than ``max_distance`` (:func:`_distance`) are
    joined, the closest first, where the two groups have no two tracks of one camera at the same
    time (a camera sees a person once).

    Args:
        tracks: every camera's tracks.

    Returns:
        ``(people, distances)``: each person's track indices (by the first time any is seen,
        then index), every track in exactly one; ``{(i, j): metres}`` for the pairs compared
        (``i < j``).
    """
    distances: dict[tuple[int, int], float] = {}
    for i, a in enumerate(tracks):
        for j in range(i + 1, len(tracks)):
            b = tracks[j]
            if a.view == b.view or a.end < b.start or b.end < a.start:
                continue
            d = _distance(a, b, config.min_overlap_s) if a.fps >= b.fps else _distance(b, a, config.min_overlap_s)
            if d is not None:
                distances[i, j] = d
    group = list(range(len(tracks)))  # each track's group, by its lowest member
    members = {i: [i] for i in range(len(tracks))}

    def clash(x: list[int], y: list[int]) -> bool:
        return any(tracks[p].view == tracks[q].view and not (tracks[p].end < tracks[q].start or
                                                             tracks[q].end < tracks[p].start) for p in x for q in y)

    for (i, j), d in sorted(distances.items(), key=lambda kv: (kv[1], kv[0])):
        gi, gj = group[i], group[j]
        if d > config.max_distance or gi == gj or clash(members[gi], members[gj]):
            continue
        keep, gone = min(gi, gj), max(gi, gj)
        members[keep] += members.pop(gone)
        for k in members[keep]:
            group[k] = keep
    people = sorted((sorted(m) for m in members.values()), key=lambda m: (min(tracks[k].start for k in m), m[0]))
    return people, distances


def _weights(track: ViewTrack, rows: np.ndarray, grid: np.ndarray, ramp_s: float) -> np.ndarray:
    """``(G,)`` a camera's weight on a piece's ``grid``: 0 where it has no row, rising over
    ``ramp_s`` from its track's start where that is inside the piece (another camera saw the person
    before) and falling to its end likewise (a small floor: a track shorter than the ramps counts;
    the weights are normalised by :func:`_fuse_rows` and taken as chances by :func:`_pelvis`)."""
    if ramp_s <= 0:
        return np.where(rows >= 0, 1.0, 0.0)
    rise = grid - track.start if track.start > grid[0] + 1e-9 else np.full(grid.shape, np.inf)
    fall = track.end - grid if track.end < grid[-1] - 1e-9 else np.full(grid.shape, np.inf)
    return np.where(rows >= 0, np.clip(np.minimum(rise, fall) / ramp_s, 1e-3, 1.0), 0.0)


def _quaternions(rotvec: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_quat().reshape(*rotvec.shape[:-1], 4)


def fuse_person(tracks: Sequence[ViewTrack], rest_root: Callable[[np.ndarray], np.ndarray],
                config: FuseConfig = FuseConfig()) -> list[FusedPiece]:
    """One person's tracks (:func:`associate`) fused (the module docstring).

    Args:
        tracks: the person's tracks (at most one per camera at any time).
        rest_root: ``betas (B,) -> (3,)`` the rest pelvis of a shape, metres
            (:meth:`wbcap.body.smplx_layer.SMPLXLayer.rest_root`).

    Returns:
        The pieces, in time order (one unless no track covers some time between them).
    """
    fps = max(t.fps for t in tracks)
    start, end = min(t.start for t in tracks), max(t.end for t in tracks)
    grid = start + np.arange(int(round((end - start) * fps)) + 1) / fps
    rows = np.stack([t.rows_at(grid) for t in tracks])  # (M, G)
    seen_rows = np.array([float(t.valid.sum()) for t in tracks])
    betas = (np.average(np.stack([t.betas for t in tracks]), axis=0, weights=seen_rows)
             if seen_rows.sum() > 0 else np.mean([t.betas for t in tracks], axis=0))
    rest = np.asarray(rest_root(betas), np.float64)
    covered = (rows >= 0).any(0)
    pieces = []
    cuts = np.flatnonzero(np.diff(covered.astype(np.int8)))  # (stretches of covered rows)
    bounds = np.concatenate([[0], cuts + 1, [grid.size]])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if not covered[lo]:
            continue
        weights = np.stack([_weights(t, r, grid[lo:hi], config.ramp_s) for t, r in zip(tracks, rows[:, lo:hi])])
        pieces.append(_fuse_rows(tracks, rows[:, lo:hi], weights, betas, rest, fps, config))
    return pieces


#: The most tracks of one person whose pelvis is fused as the expectation over their subsets
#: (:func:`_pelvis`); beyond, by the plain precision-weighted sum (no ramps for the pelvis).
_MAX_SUBSET_TRACKS = 10


def _pelvis(tracks: Sequence[ViewTrack], take: np.ndarray, weights: np.ndarray, config: FuseConfig) -> np.ndarray:
    """``(G, 3)`` the fused pelvis: the least-squares point of the cameras' estimates, each with
    its precision (``1 / (depth_sigma d)^2`` along its ray, ``1 / lateral_sigma_m^2`` across).

    A camera in its ramp (weight ``w`` below 1) cannot just have its precision scaled: its
    precision across its ray outweighs another camera's along that camera's ray hundreds of
    times, so a tenth of it would still move the point nearly all the way at once. The point is
    instead the expectation of the least-squares points over the subsets of cameras, each camera
    in a subset with the probability ``w``: the estimate moves from the one without that camera to
    the one with it in proportion to ``w``. With every weight 1 (or 0) it is the plain least-squares
    point.
    """
    m, g = weights.shape
    precisions, moments = [], []
    for k, t in enumerate(tracks):
        p = t.pelvis[take[k]]
        ray = p - t.camera_position
        dist = np.maximum(np.linalg.norm(ray, axis=1), 1e-6)
        r = ray / dist[:, None]
        along = np.einsum("gi,gj->gij", r, r)
        p_k = along / (config.depth_sigma * dist)[:, None, None] ** 2 + (np.eye(3) - along) / config.lateral_sigma_m ** 2
        precisions.append(p_k)
        moments.append(np.einsum("gij,gj->gi", p_k, p))
    precisions, moments = np.stack(precisions), np.stack(moments)  # (M, G, 3, 3), (M, G, 3)
    if m > _MAX_SUBSET_TRACKS:
        seen = (weights > 0)[..., None]
        return np.linalg.solve((precisions * seen[..., None]).sum(0), (moments * seen).sum(0)[..., None])[..., 0]
    out, total = np.zeros((g, 3)), np.zeros(g)
    for subset in range(1, 2 ** m):
        inside = np.array([(subset >> k) & 1 for k in range(m)], bool)
        chance = np.prod(np.where(inside[:, None], weights, 1.0 - weights), axis=0)  # (G,)
        rows = chance > 0
        if not rows.any():
            continue
        point = np.linalg.solve(precisions[inside][:, rows].sum(0), moments[inside][:, rows].sum(0)[..., None])[..., 0]
        out[rows] += chance[rows, None] * point
        total[rows] += chance[rows]
    return out / total[:, None]


def _fuse_rows(tracks: Sequence[ViewTrack], rows: np.ndarray, weights: np.ndarray, betas: np.ndarray,
               rest: np.ndarray, fps: float, config: FuseConfig) -> FusedPiece:
    """:func:`fuse_person` over rows every one of which some track covers."""
    from scipy.spatial.transform import Rotation

    g = rows.shape[1]
    take = np.maximum(rows, 0)
    weight = weights / weights.sum(0, keepdims=True)  # (M, G), each column sums to 1
    pelvis = _pelvis(tracks, take, weights, config)
    # every rotation: the weighted sum of its quaternions, signs aligned with the heaviest camera's
    quats = np.stack([_quaternions(t.poses[take[k]]) for k, t in enumerate(tracks)])  # (M, G, 55, 4)
    heaviest = np.argmax(weight, axis=0)
    reference = quats[heaviest, np.arange(g)]  # (G, 55, 4)
    signs = np.where(np.einsum("mgjq,gjq->mgj", quats, reference) < 0, -1.0, 1.0)
    mean = np.einsum("mgjq,mgj,mg->gjq", quats, signs, weight)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    poses = Rotation.from_quat(mean.reshape(-1, 4)).as_rotvec().reshape(g, -1, 3)
    expression = np.einsum("mge,mg->ge", np.stack([t.expression[take[k]] for k, t in enumerate(tracks)]), weight)
    present = rows >= 0
    seen = np.stack([t.valid[take[k]] for k, t in enumerate(tracks)]) & present
    first = np.argmax(present, axis=0)
    frames = np.stack([t.frame_indices[take[k]] for k, t in enumerate(tracks)])[first, np.arange(g)]
    times = np.stack([t.times[take[k]] for k, t in enumerate(tracks)])[first, np.arange(g)]  # (the row's own time)
    contact = None
    if all(t.contact is not None for t in tracks):
        votes = np.einsum("mgs,mg->gs", np.stack([t.contact[take[k]] for k, t in enumerate(tracks)]).astype(float),
                          weight)
        contact = votes >= 0.5
    return FusedPiece(times=times, valid=seen.any(0), poses=poses, trans=pelvis - rest, betas=np.asarray(betas),
                      expression=expression, frame_indices=frames.astype(np.int64), views=present.sum(0),
                      fps=fps, contact=contact)
