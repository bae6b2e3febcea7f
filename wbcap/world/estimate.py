"""Ground, gravity and planted feet for the tracks of a static camera (``wbcap run --world``).

:func:`ground_tracks` takes the smoothed camera-frame tracks of a video
(:class:`~wbcap.smooth.track.SmoothedTrack`) and returns a :class:`WorldResult`: the ground plane
and the camera's pose above it (:class:`WorldFrame`), per-foot contact labels, and each track with
its translation corrected so that planted feet stay still and touch the ground. Or, when the
footage does not fit the assumptions, the tracks unchanged, no frame, and the reason (logged as
one warning line).

Assumptions: one camera that does not move; one flat ground that the people stand and walk on;
the network's poses are right and its translation errors lie mostly along the camera ray.

Steps (all tracks share the ground; each track is corrected on its own):

1. The soles (:mod:`wbcap.world.feet`): four regions (heels, toes) per frame.
2. First contacts, before any ground is known: a region is slow (speed with the pelvis's distance
   from the camera smoothed, :func:`wbcap.world.contact.ray_smoothed`) and among the lowest of
   the body (height above the body's lowest region along the people's own up direction, the mean
   direction of their trunks, pelvis to neck), in the image, with hysteresis
   (:mod:`wbcap.world.contact`).
3. A correction keeping those regions planted, without ground (:mod:`wbcap.world.correct`).
4. The ground: RANSAC and least squares on the lowest sole vertices of the planted regions, over
   all tracks (:mod:`wbcap.world.ground`). Fallback checks (below).
5. ``iterations`` times: the correction with the ground, then contacts again from the corrected
   motion (speed and height above the ground, hysteresis), and the ground refitted to them.
6. The correction held within ``max_reprojection_px`` of the pelvis's pixel
   (:func:`wbcap.world.correct.hold_in_image`); where that bound bit, solved once more with the
   part across the camera ray pinned at the bound, so depth and feet settle with it.

Fallback (the camera frame, as without ``--world``), each with its reason: fewer than
``min_contacts`` planted person-frames (no feet in the image, or feet never slow); no plane with
``min_inlier_ratio`` of the contact points within ``refine_threshold`` (several ground levels, or
a moving camera); the ground's height under the feet changing by more than ``max_window_offset``
between ``window_s`` time windows (the camera moves: on the synthetic scenes a static camera
gives 1-2 mm, a camera bobbing by 6 cm or tilting by 0.5 deg/s 2-3 cm or fewer inliers; a slow
tilt while a single person walks across the view is not seen, as it looks like a sloping floor); the contact points spanning less than
``min_spread`` (nothing to fit a plane to); the camera below the fitted ground; the feet of every
track sliding across the view (:func:`ground_feet`: such a track, beside others that stand or
walk, is left out of the ground instead). A single person
standing still gives only the plane of their two soles: its tilt is good to about a degree, so the
ground under them is right but the camera's height, far from them, is less so (4.6 cm at 4.5 m on
the synthetic body; benchmarks/world_grounding.py).

A calibrated camera's world (``pose``, a :class:`~wbcap.camera.CameraPose`: a lab's frame, from
the extrinsics of a Pose2Sim, Anipose, FreeMoCap or EasyMocap calibration): its ``z = 0`` plane is
taken as the floor and ``+z`` as up, and the tracks are written in that world (its axes and
origin). The ground found from the feet first checks it (:func:`calibrated_floor`): the
calibration's ``+z`` within ``max_calibration_angle_deg`` of the feet's up, and the camera's
height above ``z = 0``, in the calibration's units, within ``max_calibration_height_ratio`` of the
feet's in metres, millimetres or centimetres (which one says the units; Anipose and FreeMoCap
write the board's, often millimetres). Then steps 5-6 are solved on that floor instead of a
fitted one: planted feet touch it, which also takes out the network's depth-scale error that the
feet's ground cannot see (``TrackNoise.depth_bias``). A calibration whose world is not level (an
Anipose world in a camera's frame) or whose ``z = 0`` is not the floor is not used, with a
warning, and the feet's ground written instead. Where the feet give no ground (pose errors
scatter the soles off one plane), the people check the calibration instead: its ``+z`` within
twice ``max_calibration_angle_deg`` of their trunks, the camera's height against its height
above their lowest soles along it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wbcap.camera import CameraPose, ImageCamera
from wbcap.errors import setting
from wbcap.world.contact import drop_short, hysteresis, ray_smoothed, relative_speeds, speeds
from wbcap.world.correct import Weights, hold_in_image, solve_correction
from wbcap.world.feet import REGION_FOOT, FeetTrack, SoleRegions, feet_track
from wbcap.world.ground import GroundFit, GroundPlane, fit_ground, world_from_ground

__all__ = ["CALIBRATION_UNITS", "WorldConfig", "WorldFrame", "WorldResult", "calibrated_floor", "depth_change",
           "ground_feet", "ground_tracks", "trust_helps"]

log = logging.getLogger(__name__)


#: The units a calibration's translations may be in, by how many make a metre
#: (:func:`calibrated_floor` tells which from the camera's height).
CALIBRATION_UNITS = {"metres": 1.0, "centimetres": 100.0, "millimetres": 1000.0}

#: Why a calibration whose world has no scale (:attr:`wbcap.camera.CameraPose.metric` False:
#: COLMAP's reconstruction) is not one run's world: neither its units nor its up are known.
NO_SCALE = ("its world has no scale (a reconstruction's, as COLMAP's: its units are no length's) and no known up; "
            "`wbcap fuse` of its cameras' runs finds its scale from the people and levels it by their feet")


@dataclass(frozen=True)
class WorldConfig:
    """Thresholds of :func:`ground_tracks` (built once by the CLI). Defaults are for people
    walking or standing 2-15 m from the camera at 10-60 frames per second.

    Attributes:
        speed_on, speed_off: m/s; a sole region is planted from a frame slower than ``speed_on``
            while it stays slower than ``speed_off``.
        height_on, height_off: metres above the ground (the same hysteresis); in the first pass
            (no ground yet) above the body's lowest region.
        min_contact_s: seconds; a contact must last more than this (``round(min_contact_s * fps) + 1``
            frames at least), shorter ones are dropped.
        depth_smooth_s: seconds, Gaussian sigma of the pelvis's distance for the first speeds.
        first_reference_speed: m/s; in the first pass a frame's slowest region must be slower
            than this (its speed still carries the translation's error) for any contact.
        sole_band: metres; sole vertices are within this of the foot's lowest rest vertex.
        image_margin: pixels; a sole region projecting further outside the image is not seen.
        ransac_threshold, refine_threshold: metres, inlier distances of the ground fit.
        ransac_iterations: RANSAC hypotheses; seed: their random generator's seed.
        min_contacts: planted person-frames needed (over all tracks).
        min_inlier_ratio: fraction of contact points that must lie on the ground.
        min_spread: metres; the contact points' second principal extent (standard deviation).
        sigma_contact_height: metres; sigma_level_deg: degrees; the ground's normal weighs the
            contact points' spread against the people's hips being level
            (:func:`wbcap.world.ground.fit_ground`).
        window_s, max_window_offset: the ground's median height under the feet of each
            ``window_s``-second window must stay within ``max_window_offset`` metres of the fit.
        weights: the correction's standard deviations (:class:`wbcap.world.correct.Weights`).
        iterations: rounds of correction, contacts, ground.
        max_reprojection_px: pixels the pelvis may move in the image.
        max_depth_change: fraction of a track's distance from the camera; a track whose
            correction moves it further along the camera ray (median over its frames) is taken to
            slide its feet (a gliding body, a cyclist, the network's foot skating) and is left out
            of the ground (:func:`ground_feet`).
        max_calibration_angle_deg: degrees; a calibration's ``+z`` further from the feet's up is
            not taken as up (:func:`calibrated_floor`).
        max_calibration_height_ratio: the camera's height above a calibration's ``z = 0`` (in the
            nearest of :data:`CALIBRATION_UNITS`) and above the feet's ground must agree within
            this ratio (a floor elsewhere, a table-top board, is not taken as the floor).
        check_calibration: False (``--trust-calibration``): a calibration's world is taken
            without those two checks (a lab that knows its calibration; the people's height then
            only picks its units, metres where there is none), and kept where its floor cannot
            hold the feet (the tracks then placed rigidly, without planted feet).
    """

    speed_on: float = 0.3
    speed_off: float = 0.6
    height_on: float = 0.04
    height_off: float = 0.08
    min_contact_s: float = 0.06
    depth_smooth_s: float = 0.1
    first_reference_speed: float = 1.0
    sole_band: float = 0.015
    image_margin: float = 0.0
    ransac_threshold: float = 0.05
    refine_threshold: float = 0.03
    ransac_iterations: int = 300
    seed: int = 0
    min_contacts: int = 15
    min_inlier_ratio: float = 0.7
    min_spread: float = 0.03
    sigma_contact_height: float = 0.003
    sigma_level_deg: float = 1.0
    window_s: float = 1.0
    max_window_offset: float = 0.02
    weights: Weights = field(default_factory=Weights)
    iterations: int = 2
    max_reprojection_px: float = 2.0
    max_depth_change: float = 0.25
    max_calibration_angle_deg: float = 10.0
    max_calibration_height_ratio: float = 1.4
    check_calibration: bool = True


@dataclass(frozen=True)
class WorldFrame:
    """The ground and the camera's pose above it.

    The world (:func:`wbcap.world.ground.world_from_ground`): z up (gravity ``-z``), the ground
    ``z = 0``, x the camera's right and y its forward direction laid on the ground, origin below
    the camera; ``x_w = world_from_camera @ x_c + camera_position`` for camera-frame points. A
    calibrated camera's (``ground_from`` ``"calibration"``): the calibration's world, z up, its
    ``z = 0`` the ground, its axes and origin, in metres.

    Attributes:
        ground: the plane in the camera frame (``normal . x + offset`` = height, metres).
        world_from_camera: ``(3, 3)`` rotation, OpenCV camera axes -> the world.
        camera_position: ``(3,)`` the camera centre in the world, metres: ``(0, 0, height)``
            for the feet's ground.
        inlier_ratio: fraction of contact points on the plane; rms: their distance to it, metres.
        contacts: planted person-frames used.
        ground_from: ``"feet"`` (fitted to the planted feet) or ``"calibration"`` (a calibrated
            camera's floor, :func:`calibrated_floor`).
        check: with a calibration, how the feet's ground agreed with it (``units``,
            ``angle_deg``, ``feet_camera_height_m``, ``height_ratio``, ``checked_by``); else empty.
        note: why a calibration's world was not used (the feet's ground written instead), or
            what was not done in it (the feet not planted); else None.
    """

    ground: GroundPlane
    world_from_camera: np.ndarray
    camera_position: np.ndarray
    inlier_ratio: float = 1.0
    rms: float = 0.0
    contacts: int = 0
    ground_from: str = "feet"
    check: dict[str, Any] = field(default_factory=dict)
    note: str | None = None

    @classmethod
    def from_ground(cls, ground: GroundPlane, **stats: Any) -> WorldFrame:
        rotation, position = world_from_ground(ground)
        return cls(ground=ground, world_from_camera=rotation, camera_position=position, **stats)

    @property
    def camera_height(self) -> float:
        """Metres above the ground."""
        return float(self.camera_position[2])

    @property
    def pitch_deg(self) -> float:
        """The camera's optical axis below the horizon, degrees (negative: looking up)."""
        return float(np.degrees(np.arcsin(np.clip(-self.world_from_camera[2, 2], -1.0, 1.0))))

    @property
    def roll_deg(self) -> float:
        """The camera's roll, degrees: how far the image's x axis (right) points above the horizontal."""
        return float(np.degrees(np.arctan2(self.world_from_camera[2, 0], -self.world_from_camera[2, 1])))

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """Camera-frame points ``(..., 3)`` -> world ``(..., 3)``, metres."""
        return np.asarray(points, np.float64) @ self.world_from_camera.T + self.camera_position

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (``meta.json``'s ``world``)."""
        return {
            "frame": "world",
            "ground_normal_camera": [float(v) for v in self.ground.normal],
            "ground_offset_m": float(self.ground.offset),
            "world_from_camera": [[float(v) for v in row] for row in self.world_from_camera],
            "camera_position_m": [float(v) for v in self.camera_position],
            "camera_height_m": self.camera_height,
            "camera_pitch_deg": self.pitch_deg,
            "camera_roll_deg": self.roll_deg,
            "inlier_ratio": float(self.inlier_ratio),
            "ground_rms_m": float(self.rms),
            "contact_person_frames": int(self.contacts),
            "ground_from": self.ground_from,
            **({"calibration_check": dict(self.check)} if self.check else {}),
            **({"calibration_note": self.note} if self.note else {}),
        }


@dataclass(frozen=True)
class WorldResult:
    """What :func:`ground_tracks` found.

    Attributes:
        frame: the ground and camera pose, or None (fallback to the camera frame).
        reason: why there is no frame (one line), else None.
        tracks: ``{track id: SmoothedTrack}``, translation corrected (camera frame); the input
            tracks on fallback.
        contacts: ``{track id: (N, 2) bool}`` planted (left, right) foot per frame; empty on fallback.
        corrections: ``{track id: (N, 3)}`` metres added to the translation (camera frame).
    """

    frame: WorldFrame | None
    reason: str | None
    tracks: dict[int, Any]
    contacts: dict[int, np.ndarray] = field(default_factory=dict)
    corrections: dict[int, np.ndarray] = field(default_factory=dict)

    def to_meta(self) -> dict[str, Any]:
        """``meta.json``'s ``world``: :meth:`WorldFrame.to_dict`, or ``{"frame": "camera", "reason": ...}``."""
        return self.frame.to_dict() if self.frame else {"frame": "camera", "reason": self.reason}


def _visible(points: np.ndarray, camera: ImageCamera, margin: float) -> np.ndarray:
    """``(...)`` bool: camera-frame points ``(..., 3)`` in front of the camera and in the image."""
    z = points[..., 2]
    uv = camera.project(np.where(z[..., None] > 1e-6, points, 1.0))
    w, h = camera.image_size
    return (z > 1e-6) & (uv[..., 0] >= -margin) & (uv[..., 0] <= w + margin) & (uv[..., 1] >= -margin) & (
        uv[..., 1] <= h + margin)


def _labels(feet: FeetTrack, correction: np.ndarray, height: np.ndarray, seen: np.ndarray, config: WorldConfig,
            reference: tuple[float, float]) -> np.ndarray:
    """``(N, R)`` planted sole regions: relative speed (:func:`wbcap.world.contact.relative_speeds`,
    the reference picked by the speeds of ``feet`` moved by ``correction``) and ``height``
    (metres) with hysteresis, the reference region slower than ``reference`` (m/s: to turn a
    contact on, to keep it), contacts shorter than ``min_contact_s`` dropped."""
    moved = feet.moved(correction)
    rel, ref = relative_speeds(feet.anchors - feet.pelvis[:, None], speeds(moved.anchors, feet.time), seen, feet.time)
    on = (rel < config.speed_on) & (height < config.height_on) & seen & (ref < reference[0])[:, None]
    keep = (rel < config.speed_off) & (height < config.height_off) & seen & (ref < reference[1])[:, None]
    t = feet.time
    rate = 1.0 / float(np.median(np.diff(t))) if t.size > 1 else 30.0
    return drop_short(hysteresis(on, keep), int(round(config.min_contact_s * rate)) + 1)


def _first_contacts(feet: FeetTrack, up: np.ndarray, seen: np.ndarray, config: WorldConfig) -> np.ndarray:
    """Step 2 of the module docstring: planted regions before any ground is known."""
    smooth = ray_smoothed(feet.pelvis, feet.time, config.depth_smooth_s)
    low = feet.lowest(up) @ up  # (N, R) along the people's up
    rel = low - np.where(seen, low, np.inf).min(1, keepdims=True)
    first = (config.first_reference_speed, config.first_reference_speed)
    return _labels(feet, smooth - feet.pelvis, rel, seen, config, first)


def _people_up(feet: dict[int, FeetTrack]) -> np.ndarray:
    """The people's mean up direction (the trunk: pelvis to neck, per frame), camera frame, unit."""
    v = np.concatenate([f.neck - f.pelvis for f in feet.values()])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    up = v.mean(0)
    return up / np.linalg.norm(up)


def _window_offset(heights: np.ndarray, times: np.ndarray, window_s: float, min_points: int = 10) -> float:
    """The largest ``|median height|`` over the ``window_s``-second windows with at least
    ``min_points`` points (0 when fewer than two such windows)."""
    if times.size == 0:
        return 0.0
    bins = np.floor((times - times.min()) / window_s).astype(int)
    medians = [float(np.median(heights[bins == b])) for b in np.unique(bins) if (bins == b).sum() >= min_points]
    return max(abs(m) for m in medians) if len(medians) >= 2 else 0.0


def _contact_points(feet: dict[int, FeetTrack], labels: dict[int, np.ndarray], corr: dict[int, np.ndarray],
                    up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The corrected lowest vertices of the planted regions ``(M, 3)`` and their times ``(M,)``."""
    pts, times = [np.zeros((0, 3))], [np.zeros(0)]
    for tid, f in feet.items():
        tt, rr = np.nonzero(labels[tid])
        pts.append(f.lowest(up)[tt, rr] + corr[tid][tt])
        times.append(f.time[tt])
    return np.concatenate(pts), np.concatenate(times)


def depth_change(feet: FeetTrack, correction: np.ndarray, frames: np.ndarray | None = None) -> float:
    """The median over a track's ``frames`` (``(N,)`` bool; default all) with the pelvis in front
    of the camera of ``|correction . ray| / distance``: how far the correction ``(N, 3)`` moves
    the pelvis along its camera ray, as a fraction of its distance (0.0 without such frames)."""
    distance = np.linalg.norm(feet.pelvis, axis=1)
    use = feet.pelvis[:, 2] > 1e-6 if frames is None else np.asarray(frames, bool) & (feet.pelvis[:, 2] > 1e-6)
    if not use.any():
        return 0.0
    along = np.einsum("nk,nk->n", correction[use], feet.pelvis[use]) / distance[use]
    return float(np.median(np.abs(along) / distance[use]))


def ground_feet(feet: dict[int, FeetTrack], camera: ImageCamera, config: WorldConfig = WorldConfig(),
                floor: GroundPlane | None = None
                ) -> tuple[WorldFrame | None, str | None, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Steps 2-6 of the module docstring on the soles of each track, leaving out of the ground
    the tracks whose feet slide.

    A body whose feet slide across the view (a gliding body, a cyclist, foot skating; across the
    ray, so the pelvis's distance cannot explain it) still has slow soles *relative to each
    other*, so they count as planted, and the correction keeps them still the only way a
    translation along the ray can: by pulling the body towards the camera until its sideways
    motion shrinks (a user trial: 7 m to 2.8 m for a slide at 0.5 m/s, the camera height 1.12 m
    instead of 1.42 m, with no word). Such a correction changes the body's image size, which the
    network measured: of the tracks with planted feet, the one whose correction moves it along
    the ray by more than ``max_depth_change`` of its distance (median over the frames with its
    feet in the image; :func:`depth_change`), the worst first, is left out and the ground fitted
    again without its feet (its trunk and hips still give the people's up direction and level:
    upright whatever their feet do; measured on the synthetic glide beside a standing person, the
    camera height is 0.5 cm off with them and 5.5 cm without, as for one person standing alone);
    one warning per track left out once a ground is found; when no track with planted feet is
    left, the fallback names them. A track left out has no planted feet: its correction only
    keeps it near where the network placed it (the priors) with its soles not below the ground.

    Args:
        feet: ``{track id: FeetTrack}`` camera frame (:func:`wbcap.world.feet.feet_track`).
        camera: the video camera.
        floor: a known ground (a calibrated camera's floor, :func:`calibrated_floor`): used
            instead of one fitted to the feet (no fit, no fit's fallback checks).

    Returns:
        ``(frame, reason, corrections, labels)``: the world frame (None on fallback, then
        ``reason`` says why and the rest is empty), ``{track id: (N, 3)}`` corrections (metres,
        camera frame), ``{track id: (N, R)}`` planted sole regions (none for a track left out).
    """
    frame, reason, corr, labels, left_out = _ground_feet(feet, camera, config, floor)
    if frame is not None:
        _say_left_out(left_out, config)
    return frame, reason, corr, labels


def _say_left_out(left_out: dict[int, float], config: WorldConfig, fitted: bool = True) -> None:
    """One warning per track left out of the ground (``{track id: depth change}``); ``fitted``:
    a ground fitted to the feet (else a calibration's floor, on which its feet are not planted)."""
    after = ("the ground is fitted without it" if fitted else
             "its feet are not planted on the calibration's floor")
    for tid, change in left_out.items():
        log.warning("%s: keeping track %d's feet still would move it %.0f%% of its distance along the camera ray "
                    "(more than %.0f%%): its feet slide (a gliding body, a cyclist?); %s", setting("world"), tid,
                    100 * change, 100 * config.max_depth_change, after)


def _ground_feet(feet: dict[int, FeetTrack], camera: ImageCamera, config: WorldConfig, floor: GroundPlane | None
                 ) -> tuple[WorldFrame | None, str | None, dict[int, np.ndarray], dict[int, np.ndarray],
                            dict[int, float]]:
    """:func:`ground_feet`, its warnings not said: also ``{track id: depth change}`` of the
    tracks it left out of the ground."""
    seen = {tid: _visible(f.anchors, camera, config.image_margin).any(1) for tid, f in feet.items()}
    left_out: dict[int, float] = {}
    while True:
        frame, reason, corr, labels = _ground_once(feet, camera, config, set(left_out), floor)
        if frame is None:
            if left_out:
                reason += f" (with the track(s) whose feet slide left out: {', '.join(map(str, left_out))})"
            return frame, reason, corr, labels, left_out
        changes = {tid: depth_change(f, corr[tid], seen[tid]) for tid, f in feet.items() if labels[tid].any()}
        worst = max(changes, key=changes.get, default=None)
        if worst is None or changes[worst] <= config.max_depth_change:
            break
        left_out[worst] = changes[worst]
        if len(changes) == 1:  # (nobody left with planted feet)
            slide = ", ".join(f"track {tid} {100 * c:.0f}%" for tid, c in left_out.items())
            return None, (f"the feet slide across the view: keeping them still would move each person along the "
                          f"camera ray by more than {100 * config.max_depth_change:.0f}% of their distance ({slide}): "
                          "a gliding body, or a moving camera"), {}, {}, left_out
    return frame, reason, corr, labels, left_out


def _ground_once(feet: dict[int, FeetTrack], camera: ImageCamera, config: WorldConfig, left_out: set[int],
                 floor: GroundPlane | None = None
                 ) -> tuple[WorldFrame | None, str | None, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """:func:`ground_feet` with the tracks of ``left_out`` given no planted feet (on ``floor``
    where given)."""
    rng = np.random.default_rng(config.seed)
    w = config.weights
    if not feet:
        return None, "no person tracked", {}, {}
    seen = {tid: _visible(f.anchors, camera, config.image_margin) for tid, f in feet.items()}
    if not any(s.any() for s in seen.values()):
        return None, "no feet in the image", {}, {}
    up = _people_up(feet)  # (every track's trunk and hips: people stand upright whatever their feet do)
    labels = {tid: _first_contacts(f, up, seen[tid], config) & (tid not in left_out) for tid, f in feet.items()}
    n_contacts = sum(int(lab.any(1).sum()) for lab in labels.values())
    if n_contacts < config.min_contacts:
        seen_frames = sum(int(s.any(1).sum()) for tid, s in seen.items() if tid not in left_out)
        why = ("feet never slow" if seen_frames >= config.min_contacts else "too few frames with feet in the image")
        return None, f"{why} ({n_contacts} person-frames with a planted foot, {config.min_contacts} needed)", {}, {}
    hips = np.concatenate([f.hip_axis[s.any(1)] for f, s in zip(feet.values(), seen.values())])
    fit = None
    kept = None  # the last accepted (fit, corrections, labels)
    for it in range(config.iterations + 1):
        if floor is not None:  # (known: nothing to fit, nothing to check)
            refit, reason = GroundFit(plane=floor, inliers=np.zeros(0, bool), inlier_ratio=1.0, rms=0.0), None
        else:
            free = {tid: solve_correction(f, labels[tid], None, camera, w) for tid, f in feet.items()}
            normal = up if fit is None else fit.plane.normal
            points, times = _contact_points(feet, labels, free, normal)
            refit = fit_ground(points, normal, config.ransac_threshold, config.refine_threshold,
                               config.ransac_iterations, rng, level_axes=hips, sigma_height=config.sigma_contact_height,
                               sigma_level_deg=config.sigma_level_deg)
            reason = "no plane fits the feet" if refit is None else _check(refit, points, times, config)
        if reason:
            if kept is None:
                return None, reason, {}, {}
            # every refit passes the same checks; one that fails keeps the ground before it
            log.debug("ground refit %d rejected (%s); keeping the previous one", it, reason)
            fit, corr, labels = kept
            break
        fit = refit
        plane = fit.plane
        corr = {tid: solve_correction(f, labels[tid], plane, camera, w) for tid, f in feet.items()}
        kept = (fit, corr, {tid: lab.copy() for tid, lab in labels.items()})
        if it == config.iterations:
            break
        for tid, f in feet.items():
            moved = f.moved(corr[tid])
            labels[tid] = _labels(f, corr[tid], plane.height(moved.lowest(plane.normal)), seen[tid], config,
                                  (config.speed_on, config.speed_off)) & (tid not in left_out)
    plane = fit.plane
    bound = config.max_reprojection_px - 1e-3  # a milli-pixel for the float32 the translation is stored in
    for tid, f in feet.items():
        held = hold_in_image(f.pelvis, corr[tid], camera, bound)
        clamped = np.abs(held - corr[tid]).max(1) > 1e-9
        if clamped.any():  # settle depth and feet with the bound: solve again, the clamped frames pinned
            corr[tid] = solve_correction(f, labels[tid], plane, camera, w, pinned=clamped, pin=held)
            held = hold_in_image(f.pelvis, corr[tid], camera, bound)
        corr[tid] = held
    bad = [tid for tid, c in corr.items() if not np.isfinite(c).all()]
    if bad:  # e.g. a track with a non-finite translation: never write NaN files
        return None, f"track {bad[0]}: the correction is not finite (a non-finite translation?)", {}, {}
    ratio, rms = fit.inlier_ratio, fit.rms
    if floor is not None:  # how the corrected planted feet lie on the known floor
        heights = floor.height(_contact_points(feet, labels, corr, floor.normal)[0])
        near = np.abs(heights) <= config.refine_threshold
        ratio = float(near.mean()) if heights.size else 0.0
        rms = float(np.sqrt(np.mean(heights[near] ** 2))) if near.any() else 0.0
    frame = WorldFrame.from_ground(plane, inlier_ratio=ratio, rms=rms,
                                   contacts=sum(int(lab.any(1).sum()) for lab in labels.values()))
    return frame, None, corr, labels


def _check(fit: GroundFit, points: np.ndarray, times: np.ndarray, config: WorldConfig) -> str | None:
    """The fallback reason of a first ground fit, or None when it can be used."""
    if fit.inlier_ratio < config.min_inlier_ratio:
        return (f"only {fit.inlier_ratio:.0%} of the planted feet lie on one plane (need {config.min_inlier_ratio:.0%}): "
                "several ground levels, or a moving camera")
    inl = points[fit.inliers]
    spread = np.sqrt(np.linalg.eigvalsh(np.cov((inl - inl.mean(0)).T))[1]) if inl.shape[0] > 3 else 0.0
    if spread < config.min_spread:
        return f"the planted feet cover too small an area to fit a ground plane ({spread:.3f} m across)"
    if fit.plane.offset <= 0:
        return "the camera would stand below the fitted ground"
    offset = _window_offset(fit.plane.height(points), times, config.window_s)
    if offset > config.max_window_offset:
        return (f"the ground under the feet moves by {offset * 100:.1f} cm between {config.window_s:g}-second windows "
                f"(more than {config.max_window_offset * 100:g} cm): the camera moves")
    return None


def _soles_height(feet: dict[int, FeetTrack], camera: ImageCamera, up: np.ndarray, config: WorldConfig
                  ) -> float | str:
    """Without a ground fitted to the feet: the camera's height above the people's lowest soles
    along ``up`` (the median over the person-frames with a sole in the image, metres); or why not
    (one line)."""
    lows = []
    for f in feet.values():
        seen = _visible(f.anchors, camera, config.image_margin)  # (N, R)
        low = np.where(seen, f.lowest(up) @ up, np.inf).min(1)
        lows.append(low[np.isfinite(low)])
    lows = np.concatenate(lows) if lows else np.zeros(0)
    if lows.size < config.min_contacts:
        return f"too few frames with feet in the image ({lows.size}, {config.min_contacts} needed) to check it"
    height = -float(np.median(lows))
    if height <= 0:
        return "the people's soles are not below the camera along its z axis"
    return height


def calibrated_floor(pose: CameraPose, found: WorldFrame | None, config: WorldConfig = WorldConfig(),
                     feet: dict[int, FeetTrack] | None = None, camera: ImageCamera | None = None
                     ) -> tuple[WorldFrame | None, str | None]:
    """A calibrated camera's world as a :class:`WorldFrame`, checked against the ground ``found``
    from the feet, or where none was found (pose errors can scatter the soles off one plane), against
    the people themselves (the module docstring).

    The calibration's world: ``+z`` up, ``z = 0`` the floor (Pose2Sim's and a lab's convention),
    its translations in the one of :data:`CALIBRATION_UNITS` that puts the camera's height above
    ``z = 0`` nearest the people's (metres).

    Args:
        pose: the camera's pose in the calibration's world (:class:`~wbcap.camera.CameraPose`;
            ``x_c = R x_w + t``, its units).
        found: the ground the feet give (:func:`ground_feet`), or None: then ``feet`` (the
            tracks' soles, camera frame) and ``camera`` give the people's up (their trunks,
            within twice ``max_calibration_angle_deg``) and the camera's height above their
            lowest soles along the calibration's z axis.

    Returns:
        ``(frame, None)``: ``ground`` the floor in the camera frame, ``world_from_camera`` ``R^T``,
        ``camera_position`` the camera's centre in metres, ``ground_from`` ``"calibration"``,
        ``check`` the comparison (``checked_by``: ``"feet's ground"`` or ``"soles and trunks"``;
        contacts and fit statistics are :func:`ground_feet`'s to fill); or ``(None, reason)``,
        one line: the calibration's ``+z`` too far from the people's up, the camera not above
        its ``z = 0``, its height there in no unit within ``max_calibration_height_ratio`` of
        the people's, too few soles seen, a world without a scale (:data:`NO_SCALE`).

    Raises:
        ValueError: ``found`` None without ``feet`` and ``camera``.
    """
    if found is None and (feet is None or camera is None):
        raise ValueError("calibrated_floor: without a ground found, give the tracks' feet and the camera")
    if not pose.metric:
        return None, NO_SCALE
    rotation = np.asarray(pose.rotation, np.float64)
    up = rotation[:, 2]  # the calibration's +z in camera axes
    if not config.check_calibration:
        return _trusted_floor(pose, found, config, feet, camera)
    if found is not None:
        people_up, height, max_angle, by = (found.ground.normal, found.camera_height, config.max_calibration_angle_deg,
                                            "feet's ground")
        whose, above = "the people's feet give", "the ground the feet give"
    elif not feet:
        return None, "no person tracked to check it"
    else:
        people_up, height, max_angle, by = _people_up(feet), None, 2 * config.max_calibration_angle_deg, (
            "soles and trunks")
        whose, above = "the people's trunks give", "the people's soles"
    angle = float(np.degrees(np.arccos(np.clip(up @ people_up, -1.0, 1.0))))
    if angle > max_angle:
        return None, (f"its z axis is {angle:.0f} deg from the up direction {whose} (more than {max_angle:g}): its world "
                      "is not z-up (a camera's frame, as Anipose's may be; level it, z up and z = 0 the floor; "
                      "`wbcap fuse` of its cameras' runs levels it by the people's feet)")
    if height is None:
        height = _soles_height(feet, camera, up, config)
        if isinstance(height, str):
            return None, height
    centre = pose.centre
    if centre[2] <= 0:
        return None, f"the camera is not above its z = 0 plane (z = {centre[2]:.4g} in its units)"
    ratio = float(centre[2]) / height
    units, per_metre = min(CALIBRATION_UNITS.items(), key=lambda kv: abs(math.log(ratio / kv[1])))
    off = ratio / per_metre
    limit = config.max_calibration_height_ratio
    if not 1.0 / limit <= off <= limit:
        return None, (f"the camera is {centre[2]:.4g} of its units above its z = 0 plane and {height:.2f} m above "
                      f"{above}: {off:.3g} times as high in {units}, more than {limit:g} times apart (is its z = 0 "
                      "the floor?)")
    if np.abs(centre).max() / per_metre > 1e4:
        return None, (f"the camera is {np.abs(centre).max() / per_metre:.3g} m from its world's origin (in {units}): "
                      "track files so far from their origin lose their millimetres; move the origin into the room")
    floor = GroundPlane(normal=up, offset=float(centre[2]) / per_metre)
    check = {"units": units, "angle_deg": angle, "feet_camera_height_m": height, "height_ratio": off,
             "checked_by": by}
    return WorldFrame(ground=floor, world_from_camera=rotation.T, camera_position=centre / per_metre,
                      ground_from="calibration", check=check), None


def _trusted_floor(pose: CameraPose, found: WorldFrame | None, config: WorldConfig,
                   feet: dict[int, FeetTrack] | None, camera: ImageCamera | None) -> tuple[WorldFrame | None, str | None]:
    """:func:`calibrated_floor` unchecked (``check_calibration`` False): its units the nearest of
    :data:`CALIBRATION_UNITS` to the people's height (the feet's ground, else their soles), metres
    where there is none; refused only where the camera is not above its ``z = 0`` or 10 km out."""
    rotation = np.asarray(pose.rotation, np.float64)
    up = rotation[:, 2]
    centre = pose.centre
    if centre[2] <= 0:
        return None, f"the camera is not above its z = 0 plane (z = {centre[2]:.4g} in its units)"
    height: float | str | None = found.camera_height if found is not None else (
        _soles_height(feet, camera, up, config) if feet else None)
    if isinstance(height, (int, float)) and height > 0:
        ratio = float(centre[2]) / height
        units, per_metre = min(CALIBRATION_UNITS.items(), key=lambda kv: abs(math.log(ratio / kv[1])))
        by = "not checked; units from the feet's ground" if found is not None else "not checked; units from soles"
    else:  # (no people's height: metres, for a camera at a lab's height in them)
        if centre[2] > 20:
            return None, (f"its units are unknown (no people's soles seen to tell them), and in metres the camera would "
                          f"stand {centre[2]:.4g} m up; give footage with the people's feet in view, or its calibration "
                          "in metres")
        log.warning("%s: the calibration's units taken as metres (no people's soles seen to tell them: the camera "
                    "%.2f m up)", setting("world"), float(centre[2]))
        units, per_metre, height, ratio, by = "metres", 1.0, None, None, "not checked; units taken as metres"
    if np.abs(centre).max() / per_metre > 1e4:
        return None, (f"the camera is {np.abs(centre).max() / per_metre:.3g} m from its world's origin (in {units}): "
                      "track files so far from their origin lose their millimetres; move the origin into the room")
    check = {"units": units, "angle_deg": None, "feet_camera_height_m": height,
             "height_ratio": None if ratio is None else ratio / per_metre, "checked_by": by}
    return WorldFrame(ground=GroundPlane(normal=up, offset=float(centre[2]) / per_metre), world_from_camera=rotation.T,
                      camera_position=centre / per_metre, ground_from="calibration", check=check), None


def trust_helps(why: str) -> bool:
    """Whether ``--trust-calibration`` gets past a calibration's refusal ``why`` (one of
    :func:`calibrated_floor`'s or its floor's): not for a camera below its ``z = 0``, 10 km from
    its origin, or of unknown units or none (:data:`NO_SCALE`), which no trust fixes."""
    return not (why.startswith(("the camera is not above its z = 0 plane", "its units are unknown", NO_SCALE))
                or "from its world's origin" in why)


def ground_tracks(tracks: dict[int, Any], body: Any, device: Any, camera: ImageCamera,
                  config: WorldConfig = WorldConfig(), cuts: Sequence[float] = (),
                  pose: CameraPose | None = None) -> WorldResult:
    """The world frame of ``tracks`` and the tracks grounded in it (module docstring).

    Args:
        tracks: ``{track id: SmoothedTrack}``, camera frame (:mod:`wbcap.smooth.track`).
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` of the tracks, on ``device``.
        camera: the video camera (pixels: the image bounds, the pixel bound of the correction).
        config: thresholds.
        cuts: times (s) of the cuts between shots (:mod:`wbcap.track.cuts`): with any, each shot
            has its own camera, and the footage falls back (one static camera is assumed).
        pose: a calibrated camera's pose (:class:`~wbcap.camera.CameraPose`, in the camera frame
            of ``tracks``): the tracks go into its world where :func:`calibrated_floor` takes it,
            else (one warning) into the feet's.

    Returns:
        A :class:`WorldResult`; on fallback its ``frame`` is None, ``tracks`` are the input and a
        warning naming the reason is logged.
    """
    if cuts:
        at = ", ".join(f"{t:.2f} s" for t in list(cuts)[:5]) + (", ..." if len(cuts) > 5 else "")
        reason = (f"the video cuts between shots ({len(cuts)} cut(s), at {at}), each with its own camera, and one "
                  f"ground needs one static camera; run each shot on its own ({setting('start')} and --end)")
        log.warning("%s: %s; writing the camera frame instead", setting("world"), reason)
        return WorldResult(frame=None, reason=reason, tracks=dict(tracks))
    regions = SoleRegions.from_body(body, band=config.sole_band)
    feet = {tid: feet_track(tr, body, device, regions) for tid, tr in tracks.items()}
    frame, reason, corr, labels, left_out = _ground_feet(feet, camera, config, None)
    if pose is not None:
        on_floor, why = _on_calibrated_floor(pose, feet, camera, config, frame)
        if on_floor is not None:
            frame, corr, labels, left_out = on_floor
        elif frame is not None:
            trust = (f" ({setting('trust_calibration', api='check_calibration=False')} takes it unchecked)"
                     if config.check_calibration and trust_helps(why) else "")
            log.warning("%s: the calibration's world is not used: %s; writing the ground found from the feet instead%s",
                        setting("world"), why, trust)
            frame = dataclasses.replace(frame, note=why)
        else:
            reason += f"; the calibration's world is not used either: {why}"
    if frame is None:
        log.warning("%s: %s; writing the camera frame instead", setting("world"), reason)
        return WorldResult(frame=None, reason=reason, tracks=dict(tracks))
    _say_left_out(left_out, config, fitted=frame.ground_from == "feet")
    out = {tid: dataclasses.replace(tr, transl=(np.asarray(tr.transl, np.float64) + corr[tid]).astype(np.float32))
           for tid, tr in tracks.items()}
    contacts = {tid: np.stack([lab[:, k == REGION_FOOT].any(1) for k in (0, 1)], 1) for tid, lab in labels.items()}
    log.info("%s: ground %.2f m below the camera (pitch %.1f deg, roll %.1f deg), %d planted person-frames, "
             "%.0f%% on the plane", setting("world"), frame.camera_height, frame.pitch_deg, frame.roll_deg,
             frame.contacts, 100 * frame.inlier_ratio)
    return WorldResult(frame=frame, reason=None, tracks=out, contacts=contacts, corrections=corr)


def _on_calibrated_floor(pose: CameraPose, feet: dict[int, FeetTrack], camera: ImageCamera, config: WorldConfig,
                         found: WorldFrame | None) -> tuple[tuple | None, str | None]:
    """``((frame, corrections, labels, left out), None)`` on the calibration's floor
    (:func:`calibrated_floor`, checked against ``found``, the feet's ground, or None), the info
    line said; or ``(None, why)`` where it is not used."""
    lab, why = calibrated_floor(pose, found, config, feet=feet, camera=camera)
    if lab is None:
        return None, why
    frame, why, corr, labels, left_out = _ground_feet(feet, camera, config, lab.ground)
    check = lab.check
    by = "the feet's ground" if check["checked_by"] == "feet's ground" else "the people's soles"
    if frame is None and not config.check_calibration:  # (trusted: its world kept, the tracks placed rigidly)
        note = f"the feet are not planted on its floor: {why}"
        log.warning("%s: the calibration's world, taken unchecked (%s); %s", setting("world"),
                    setting("trust_calibration", api="check_calibration=False"), note)
        still = {tid: np.zeros((len(f.time), 3)) for tid, f in feet.items()}
        unplanted = {tid: np.zeros(f.anchors.shape[:2], bool) for tid, f in feet.items()}
        return (dataclasses.replace(lab, note=note, inlier_ratio=0.0), still, unplanted, {}), None
    if frame is None:
        return None, (f"planting the feet on its z = 0 (the camera {lab.camera_height:.2f} m above it, "
                      f"{check['feet_camera_height_m']:.2f} m above {by}) failed: {why}; is its z = 0 the floor?")
    if not config.check_calibration:
        log.info("%s: the calibration's world, taken unchecked (its units %s: %s)", setting("world"), check["units"],
                 check["checked_by"])
    else:
        log.info("%s: the calibration's world (z up, z = 0 the floor; its units %s: the camera %.2f m above its floor, "
                 "%.2f m above %s; its z axis %.1f deg from the people's up)", setting("world"), check["units"],
                 lab.camera_height, check["feet_camera_height_m"], by, check["angle_deg"])
    return (dataclasses.replace(frame, world_from_camera=lab.world_from_camera, camera_position=lab.camera_position,
                                ground_from="calibration", check=check), corr, labels, left_out), None
