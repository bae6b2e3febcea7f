"""A calibration's frame made a z-up world by the fused people's feet.

``wbcap fuse`` of runs whose calibration's world ``wbcap run --world`` did not take (its ``+z`` not
up or its ``z = 0`` not the floor: Anipose's and FreeMoCap's calibrations in their first camera's
frame, an OpenCV board's ``z`` pointing down, a board on a table), whose tracks lie on the ground
each camera's feet gave: the cameras' relative poses still hold, so each run's tracks are taken
into the calibration's frame (:func:`calibration_from_file`, metres once its units are known),
fused there, and the fused people's planted soles give the floor (:func:`fused_floor`: the same
robust fit :func:`wbcap.world.estimate.ground_tracks` makes for one camera, on depths the cameras
triangulated). The world is then :func:`wbcap.world.ground.world_from_ground` of that floor in the
calibration's frame: ``z`` up with ``z = 0`` the floor, ``x`` the calibration's ``x`` axis laid on
the floor, the origin the point of the floor under the calibration's origin (``ground_from``
``"calibration_levelled"`` in the files).

A calibration whose world has no scale (COLMAP's reconstruction:
:attr:`wbcap.camera.CameraPose.metric` False) is first given one by the people the cameras saw
(:func:`reconstruction_scale`): two cameras' rays to a person meet at depths in the
reconstruction's units, which the network gives in metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wbcap.fuse.views import FusedPiece, ViewTrack
from wbcap.world.estimate import WorldConfig
from wbcap.world.ground import GroundFit

__all__ = ["LEVELLED", "ScaleFound", "calibration_from_file", "fused_floor", "reconstruction_scale"]

#: ``ground_from`` of a calibration's frame levelled by the fused people's feet.
LEVELLED = "calibration_levelled"


def calibration_from_file(camera_rotation: np.ndarray, camera_position: np.ndarray, rotation: np.ndarray,
                          translation: np.ndarray, per_metre: float) -> tuple[np.ndarray, np.ndarray]:
    """The map from a track file's frame to the calibration's frame in metres, ``x_cal = A @ x_f + b``.

    Args:
        camera_rotation, camera_position: the file's camera (``(3, 3)`` OpenCV camera axes ->
            the file's frame, ``(3,)`` metres; the AMASS npz's keys).
        rotation, translation: the calibration's pose of that camera (OpenCV's ``x_c = R x_w +
            t``: ``(3, 3)``, ``(3,)`` in its units; :class:`wbcap.camera.CameraPose`).
        per_metre: its units per metre (1000: millimetres).

    Returns:
        ``(A (3, 3), b (3,))``: a camera-frame point ``x_c = Rf^T (x_f - c_f)`` is at ``R^T (x_c -
        t / per_metre)`` in the calibration's axes, metres.
    """
    rf = np.asarray(camera_rotation, np.float64)
    r = np.asarray(rotation, np.float64)
    a = r.T @ rf.T
    b = -a @ np.asarray(camera_position, np.float64) - r.T @ np.asarray(translation, np.float64) / per_metre
    return a, b


@dataclass(frozen=True)
class ScaleFound:
    """One pair of tracks' triangulation of a reconstruction's scale (:func:`reconstruction_scale`).

    Attributes:
        first, second: the tracks' indices (of different cameras).
        per_metre: the reconstruction's units per metre the pair gives: the geometric mean of the
            two cameras' (the depths their rays meet at, in its units, over the network's, metres).
        depth_ratio: the first camera's factor over the second's (1: their network depths agree).
        apart_m: the median distance, metres, between the two rays' points at those depths.
        rows: the rows both saw that it used.
        still: whether the person stood still meanwhile (within :data:`STILL_M` in both cameras):
            then the clocks do not matter.
    """

    first: int
    second: int
    per_metre: float
    depth_ratio: float
    apart_m: float
    rows: int
    still: bool = False


#: The most two cameras' network depths of one person may differ by (a factor) for a pair of
#: tracks to tell a reconstruction's scale (:func:`reconstruction_scale`): beyond, not one person.
MAX_DEPTH_RATIO = 2.0

#: Metres: a person whose pelvis stays this near its median place (nine rows in ten, in each of
#: two cameras) stands still, and tells a reconstruction's scale whatever the cameras' clocks.
STILL_M = 0.25


def reconstruction_scale(tracks: Sequence[ViewTrack], min_overlap_s: float, max_apart_m: float
                         ) -> tuple[float | None, list[ScaleFound]]:
    """A scale-free calibration's units per metre, from the people two cameras saw at once.

    Each track must be in the calibration's axes with its camera at its calibrated centre, in
    the calibration's units (:func:`calibration_from_file` with ``per_metre`` 1), so that
    ``pelvis - camera_position`` is the pelvis from its camera in metres (the network's depth).
    For a pair of tracks ``a``, ``b`` of two cameras, over the rows both saw (at their clocks),
    the factors ``alpha``, ``beta`` (the reconstruction's units per network metre, each camera's)
    that bring the two rays' points together, ``alpha u_a - beta u_b = c_b - c_a``, are solved by
    least squares (a triangulation whose baseline is in the reconstruction's units); the pair
    gives ``sqrt(alpha beta)`` units a metre, where both are positive, within
    :data:`MAX_DEPTH_RATIO` of each other and the rays' points then lie within ``max_apart_m``
    (median, metres), and the rays are not along one line (2 degrees or more from it on
    average). Per pair of cameras the pair of tracks that meets nearest counts, of people
    standing still (:data:`STILL_M`) where any pair is: a walker's rays read at clocks some
    tenths of a second apart meet too, at another scale, which a person standing still cannot
    give (a review: cameras 1.5 s apart, 25 % off); the scale is the median of those (log). The
    network's depths set it: where every camera's depths are 5 % too far, the scale is 5 % too
    small (the people's sizes as the network sees them; a metric calibration's baselines need
    no such trust).

    Args:
        tracks: every camera's tracks, as above.
        min_overlap_s: seconds both must have seen the person at once.
        max_apart_m: how near the rays' points must meet, metres.

    Returns:
        ``(units per metre, the pairs that told it)``; ``(None, [])`` where no pair does.
    """
    from wbcap.fuse.views import POSE_ROWS, matched_rows

    best: dict[tuple[int, int], ScaleFound] = {}
    for i, a in enumerate(tracks):
        for j in range(i + 1, len(tracks)):
            b = tracks[j]
            if a.view == b.view:
                continue
            stride = max(1, len(a.times) // POSE_ROWS)
            mine, theirs = matched_rows(a, b, 0.0, stride=stride)
            if len(mine) < 2 or len(mine) * stride < min_overlap_s * min(a.fps, b.fps):
                continue
            u, w = a.pelvis[mine] - a.camera_position, b.pelvis[theirs] - b.camera_position
            baseline = b.camera_position - a.camera_position
            cosine = float(np.mean(np.sum(u * w, 1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1))))
            if abs(cosine) > np.cos(np.radians(2.0)):  # (rays along one line, either way: no depth from them)
                continue
            m = np.stack([u.reshape(-1), -w.reshape(-1)], 1)
            (alpha, beta), *_ = np.linalg.lstsq(m, np.tile(baseline, len(u)), rcond=None)
            if not (alpha > 0 and beta > 0 and 1 / MAX_DEPTH_RATIO <= alpha / beta <= MAX_DEPTH_RATIO):
                continue
            per_metre = float(np.sqrt(alpha * beta))
            apart = float(np.median(np.linalg.norm(alpha * u - beta * w - baseline, axis=1))) / per_metre
            if apart > max_apart_m:
                continue
            still = all(np.percentile(np.linalg.norm(p - np.median(p, axis=0), axis=1), 90) <= STILL_M for p in (u, w))
            key = (min(a.view, b.view), max(a.view, b.view))
            pair = ScaleFound(first=i, second=j, per_metre=per_metre, depth_ratio=float(alpha / beta), apart_m=apart,
                              rows=len(mine), still=bool(still))
            if key not in best or (pair.still, -pair.apart_m) > (best[key].still, -best[key].apart_m):
                best[key] = pair
    if not best:
        return None, []
    if any(f.still for f in best.values()):
        best = {key: f for key, f in best.items() if f.still}
    found = sorted(best.values(), key=lambda f: (f.first, f.second))
    return float(np.exp(np.median(np.log([f.per_metre for f in found])))), found


def _smoothed(piece: FusedPiece, body: Any) -> Any:
    """A fused piece as a :class:`~wbcap.smooth.track.SmoothedTrack` (hands relative to the mean)."""
    from wbcap.smooth.track import SmoothedTrack

    t = len(piece.times)
    left_mean, right_mean = (np.asarray(m, np.float64).reshape(1, 45) for m in body.hands_mean())
    f32 = np.float32
    return SmoothedTrack(
        frame=np.arange(t, dtype=np.int64), time=np.asarray(piece.times, np.float64), box=np.zeros((t, 4), f32),
        global_orient=piece.poses[:, 0].astype(f32), body_pose=piece.poses[:, 1:22].reshape(t, 63).astype(f32),
        left_hand_pose=(piece.poses[:, 25:40].reshape(t, 45) - left_mean).astype(f32),
        right_hand_pose=(piece.poses[:, 40:55].reshape(t, 45) - right_mean).astype(f32),
        jaw_pose=piece.poses[:, 22].astype(f32), expression=np.asarray(piece.expression, f32),
        transl=np.asarray(piece.trans, f32), betas=np.asarray(piece.betas, f32))


def fused_floor(pieces: list[FusedPiece], body: Any, up: np.ndarray, config: WorldConfig = WorldConfig()
                ) -> tuple[GroundFit | None, int, str]:
    """The floor under the fused people's planted feet, in their frame (the calibration's).

    Each piece is posed (:func:`wbcap.world.feet.feet_track`); the lowest vertex along ``up`` of
    each sole region of a planted foot (the piece's ``contact``, the cameras' majority) in a row a
    camera saw is a point of the floor; :func:`wbcap.world.ground.fit_ground` fits the plane
    (``config``'s RANSAC thresholds, the people's hips asked to be level on average).

    Args:
        pieces: the fused people, in the calibration's frame (metres).
        body: the SMPL-X layer (CPU).
        up: ``(3,)`` the up direction the runs' own grounds give in that frame (hypotheses more
            than 60 degrees from it are walls).

    Returns:
        ``(fit or None, points, why)``: the fit where at least ``config.min_contacts`` points gave
        one with ``config.min_inlier_ratio`` of them on it, else None and why.
    """
    from wbcap.world.feet import REGION_FOOT, SoleRegions, feet_track
    from wbcap.world.ground import fit_ground

    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    regions = None
    points, hips = [], []
    for piece in pieces:
        if piece.contact is None:
            continue
        regions = regions or SoleRegions.from_body(body, band=config.sole_band)
        feet = feet_track(_smoothed(piece, body), body, "cpu", regions)
        planted = np.asarray(piece.contact, bool)[:, REGION_FOOT] & np.asarray(piece.valid, bool)[:, None]  # (T, 4)
        points.append(feet.lowest(up)[planted])
        hips.append(feet.hip_axis[np.asarray(piece.valid, bool)])
    found = np.concatenate(points) if points else np.zeros((0, 3))
    if not points:
        return None, 0, ("no track file holds the feet's contacts (runs whose --world found no ground: in their "
                         "cameras' frames)")
    if len(found) < config.min_contacts:
        return None, len(found), (f"{len(found)} planted sole points, fewer than {config.min_contacts} (no one stood or "
                                  "walked while the cameras saw them)")
    fit = fit_ground(found, up, config.ransac_threshold, config.refine_threshold, config.ransac_iterations,
                     np.random.default_rng(config.seed), level_axes=np.concatenate(hips),
                     sigma_height=config.sigma_contact_height, sigma_level_deg=config.sigma_level_deg)
    if fit is None:
        return None, len(found), "no plane within 60 degrees of the runs' up fits the planted soles"
    if fit.inlier_ratio < config.min_inlier_ratio:
        return None, len(found), (f"only {100 * fit.inlier_ratio:.0f} % of the planted soles lie on one plane (within "
                                  f"{100 * config.refine_threshold:.0f} cm)")
    return fit, len(found), ""
