"""Translation correction that plants the feet: one sparse linear least-squares problem per track.

Unknowns: a correction ``c_t`` (3 numbers, camera frame, metres) added to the track's translation
in each of its N frames, and one position ``g_s`` per *contact segment* (a run of frames in which
one sole region stays planted). Every term is linear, each row weighted by ``1 / sigma`` (a
Gaussian maximum a posteriori estimate), solved through the normal equations with
``scipy.sparse.linalg.spsolve``:

* **planted**: ``anchor_{t,r} + c_t - g_s = 0`` for each planted region ``r`` of segment ``s``
  (``sigma_static``): the region does not move while planted;
* **on the ground** (with a plane): ``n . (lowest_{t,r} + c_t) + d = 0`` for each planted region
  (``sigma_ground``), and for each region a solve put below the ground (``no_penetration``,
  firmer: a foot in the floor is worse than a foot that slips);
* **measurement**: ``c_t`` along the camera ray through the pelvis costs little (``sigma =
  sigma_depth_rel * distance``: the network's depth is its weak part), across it much (``sigma =
  sigma_lateral_px`` pixels at the pelvis's distance: the network places the body well in the
  image);
* **smooth correction**: the correction's acceleration (non-uniform second difference of ``c``)
  is ``0 +- sigma_accel`` m/s^2, which carries it through frames without contact. (On the
  correction, not on the motion: the body's own motion is not smoothed, and a track whose feet
  already stay still gets no correction.)

Planted rows far from agreeing are down-weighted (iteratively reweighted least squares with
Huber's loss), so a frame wrongly labelled planted pulls little. Afterwards the pelvis is held within ``max_reprojection_px`` pixels of where it was in the image
(:func:`hold_in_image`): the correction only moves it further along its ray beyond that. Where the
bound bit, the problem is solved once more with the correction's part across the ray pinned
there (``pinned``), so that depth, feet and ground settle with the bound rather than against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wbcap.camera import ImageCamera
from wbcap.world.feet import FeetTrack
from wbcap.world.ground import GroundPlane

__all__ = ["Weights", "contact_segments", "hold_in_image", "solve_correction"]


@dataclass(frozen=True)
class Weights:
    """The standard deviations of :func:`solve_correction`'s terms (see the module docstring).

    Attributes:
        static: metres; ground: metres; lateral_px: pixels; depth_rel: fraction of the
        distance; accel: m/s^2; max_gap: seconds between two frames beyond which a contact
        segment ends and no acceleration is penalised; huber: planted rows with a residual
        beyond this many ``static`` deviations are down-weighted (Huber's loss); no_penetration:
        metres, a region found this far below the ground is held on it with this deviation.
    """

    static: float = 0.005
    ground: float = 0.005
    lateral_px: float = 1.0
    depth_rel: float = 0.03
    accel: float = 100.0
    max_gap: float = 0.25
    huber: float = 2.0
    no_penetration: float = 0.001


@dataclass
class _Rows:
    """A sparse system built row block by row block."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)
    rhs: list[np.ndarray] = field(default_factory=list)
    count: int = 0

    def add(self, cols: np.ndarray, vals: np.ndarray, rhs: np.ndarray) -> None:
        """``(M, k)`` column indices and values of ``M`` rows with ``k`` entries each, ``(M,)`` right side."""
        m, k = cols.shape
        self.rows.append(np.repeat(np.arange(self.count, self.count + m), k))
        self.cols.append(cols.reshape(-1))
        self.vals.append(vals.reshape(-1))
        self.rhs.append(rhs)
        self.count += m

    def solve(self, unknowns: int) -> np.ndarray:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import spsolve

        a = coo_matrix((np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                       shape=(self.count, unknowns)).tocsr()
        b = np.concatenate(self.rhs)
        return np.atleast_1d(spsolve((a.T @ a).tocsc(), a.T @ b))


def contact_segments(contact: np.ndarray, time: np.ndarray, max_gap: float) -> np.ndarray:
    """``(N, R)`` int: the segment id of each planted (frame, region), -1 elsewhere.

    A segment is a run of planted frames of one region; a time step longer than ``max_gap``
    seconds ends it. Ids count from 0 over all regions."""
    contact = np.asarray(contact, bool)
    breaks = np.concatenate([[True], np.diff(np.asarray(time, np.float64)) > max_gap])
    seg = np.full(contact.shape, -1)
    count = 0
    for r in range(contact.shape[1]):
        starts = contact[:, r] & (breaks | ~np.concatenate([[False], contact[:-1, r]]))
        ids = np.cumsum(starts) - 1 + count
        seg[contact[:, r], r] = ids[contact[:, r]]
        count += int(starts.sum())
    return seg


def _ray_basis(pelvis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit ray ``(N, 3)``, two unit directions across it ``(N, 3)`` each, and the distance ``(N,)``."""
    dist = np.linalg.norm(pelvis, axis=1)
    ray = pelvis / dist[:, None]
    e1 = np.cross(np.array([0.0, 1.0, 0.0]), ray)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return ray, e1, np.cross(ray, e1), dist


def solve_correction(feet: FeetTrack, contact: np.ndarray, plane: GroundPlane | None, camera: ImageCamera,
                     weights: Weights = Weights(), rounds: int = 3, pinned: np.ndarray | None = None,
                     pin: np.ndarray | None = None) -> np.ndarray:
    """The translation correction of one track (module docstring).

    The problem is solved ``rounds`` times, each time (iteratively reweighted least squares)
    with the planted rows whose residual exceeds ``weights.huber`` standard deviations
    down-weighted as Huber's loss does (a frame wrongly labelled planted, e.g. a foot already
    lifting, then pulls little), and, with ``plane``, a firm ground row for each sole region a
    solve put below the ground.

    Args:
        feet: the track's pelvis and soles, camera frame (:func:`wbcap.world.feet.feet_track`).
        contact: ``(N, R)`` bool, planted sole regions.
        plane: the ground, or None (then only the planted, measurement and smoothness terms).
        camera: the video camera (its focal length converts ``weights.lateral_px`` to metres).
        weights: the terms' standard deviations.
        rounds: solves (>= 1).
        pinned, pin: ``(N,)`` bool and ``(N, 3)`` metres: in the pinned frames the correction's
            part across the camera ray is held at ``pin``'s (0.1 mm), only its depth is free (a
            second solve after :func:`hold_in_image`, so depth and ground settle with the bound).

    Returns:
        ``(N, 3)`` float64 correction ``c_t``, camera frame, metres (before :func:`hold_in_image`).
    """
    n = feet.pelvis.shape[0]
    t = feet.time
    contact = np.asarray(contact, bool)
    seg = contact_segments(contact, t, weights.max_gap)
    n_seg = int(seg.max()) + 1 if seg.size else 0
    unknowns = 3 * n + 3 * n_seg
    frame_cols = 3 * np.arange(n)[:, None] + np.arange(3)  # (N, 3)

    base = _Rows()
    ray, e1, e2, dist = _ray_basis(feet.pelvis)
    base.add(frame_cols, ray / (weights.depth_rel * dist)[:, None], np.zeros(n))
    sigma_lat = weights.lateral_px * dist / float(np.mean(camera.focal))
    target = np.zeros((n, 3)) if pin is None else np.asarray(pin, np.float64)
    if pinned is not None:
        sigma_lat = np.where(np.asarray(pinned, bool), 1e-4, sigma_lat)
    for e in (e1, e2):
        base.add(frame_cols, e / sigma_lat[:, None], np.einsum("tc,tc->t", e, target) / sigma_lat)
    if n >= 3:
        dt = np.diff(t)
        i = np.flatnonzero((dt[:-1] <= weights.max_gap) & (dt[1:] <= weights.max_gap)) + 1  # middle frames
        d1, d2 = dt[i - 1], dt[i]
        coef = np.stack([2 / (d1 * (d1 + d2)), -2 / (d1 * d2), 2 / (d2 * (d1 + d2))], 1) / weights.accel  # (M, 3)
        cols = np.stack([frame_cols[i - 1], frame_cols[i], frame_cols[i + 1]], 2).reshape(-1, 3)  # rows: (frame, axis)
        base.add(cols, np.repeat(coef, 3, axis=0), np.zeros(3 * i.size))

    tt, rr = np.nonzero(contact)
    anchors = feet.anchors[tt, rr]  # (C, 3)
    seg_cols = 3 * n + 3 * seg[tt, rr][:, None] + np.arange(3)  # (C, 3)
    static_cols = np.stack([frame_cols[tt].reshape(-1), seg_cols.reshape(-1)], 1)
    w_static = np.ones(tt.size)
    lowest = feet.lowest(plane.normal) if plane is not None else None  # translation does not change which is lowest
    below = np.zeros_like(contact)  # regions a solve put below the ground: held on it firmly
    c = np.zeros((n, 3))
    for _ in range(max(1, rounds)):
        rows = _Rows(list(base.rows), list(base.cols), list(base.vals), list(base.rhs), base.count)
        if tt.size:
            scale = np.repeat(np.sqrt(w_static), 3) / weights.static
            rows.add(static_cols, np.stack([scale, -scale], 1), -anchors.reshape(-1) * scale)
        if lowest is not None:
            for mask, sigma in ((contact & ~below, weights.ground), (below, weights.no_penetration)):
                tg, rg = np.nonzero(mask)
                if tg.size:
                    rows.add(frame_cols[tg], np.tile(plane.normal, (tg.size, 1)) / sigma,
                             -plane.height(lowest[tg, rg]) / sigma)
        u = rows.solve(unknowns)
        c = u[: 3 * n].reshape(n, 3)
        if tt.size:
            residual = np.linalg.norm(anchors + c[tt] - u[seg_cols], axis=1)
            w_static = np.minimum(1.0, weights.huber * weights.static / np.maximum(residual, 1e-12))
        if lowest is not None:
            below |= plane.height(lowest + c[:, None]) < -weights.no_penetration
    return c


def hold_in_image(pelvis: np.ndarray, correction: np.ndarray, camera: ImageCamera, max_px: float) -> np.ndarray:
    """The correction changed so the pelvis moves at most ``max_px`` pixels in the image.

    The corrected pelvis ``q = pelvis + correction`` keeps its depth ``q_z``; its pixel is pulled
    back towards the original pixel ``u`` onto the circle of radius ``max_px`` where it lies
    further, and ``q`` is put on that pixel's ray at depth ``q_z`` (exact: the change of the
    pelvis's pixel is then at most ``max_px``).

    Args:
        pelvis: ``(N, 3)`` camera-frame metres (in front of the camera); correction ``(N, 3)`` metres.

    Returns:
        ``(N, 3)`` the held correction, metres.
    """
    p = np.asarray(pelvis, np.float64)
    q = p + np.asarray(correction, np.float64)
    u, uq = camera.project(p), camera.project(q)
    shift = uq - u
    norm = np.linalg.norm(shift, axis=1, keepdims=True)
    pix = u + shift * np.minimum(1.0, max_px / np.maximum(norm, 1e-12))
    f, c = np.asarray(camera.focal, np.float64), np.asarray(camera.princpt, np.float64)
    held = np.concatenate([(pix - c) / f * q[:, 2:3], q[:, 2:3]], 1)
    return held - p

