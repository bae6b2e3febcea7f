"""Synthetic people on a known ground, seen by a known camera: the truth for :mod:`wbcap.world`.

The people are SMPL-X bodies (any :class:`~wbcap.body.smplx_layer.SMPLXLayer`, e.g. the synthetic
model of :mod:`wbcap.testing.synthetic_body`) moving in a z-up world whose ground is ``z = 0``:

* :class:`Walk`: the pelvis moves at a constant speed; each foot is planted on a foothold for
  ``stance`` of the gait cycle (both feet during the double support) and swings to the next one
  along a smooth arc; the pelvis bobs smoothly by ``bob_m`` (highest in single support, within
  the legs' reach); hips and knees come from planar two-link inverse kinematics, the ankle keeps each
  foot level. A planted foot's ankle does not move and its sole touches the ground; its vertices
  move only by the model's pose-corrective blend shapes. No heel-toe roll.
* :class:`Stand`: both feet planted, the pelvis lowering and rising (knees bending), arms
  swinging.
* :class:`Glide`: a standing body carried along the ground (feet never still; a fallback case).

The camera (:class:`SceneCamera`) stands at a known height, pitched and rolled by known angles,
and may move (tilt rate, vertical bob). Each person is returned in the world and as wbcap's
camera-frame track (:class:`~wbcap.smooth.track.SmoothedTrack`) twice: exact, and with the kind
of translation error the network makes (:class:`TrackNoise`: white and slowly drifting error
along the camera ray through the pelvis, a small jitter across it) then smoothed by wbcap's
default smoothing of the translation (of the poses too with ``smooth_poses``), as ``wbcap run``
would give it to the world stage. :func:`evaluate` scores a world stage's result against the truth
(the numbers of ``benchmarks/world_grounding.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from wbcap.body.joints import (
    SMPLX_ANKLES,
    SMPLX_BODY_JOINTS,
    SMPLX_FOOT_POINTS,
    SMPLX_HIPS,
    SMPLX_KNEES,
    SMPLX_PELVIS,
    SMPLX_SHOULDERS,
)
from wbcap.camera import ZUP_FROM_OPENCV, ImageCamera
from wbcap.smooth.posing import pose_track
from wbcap.smooth.sequence import SmoothConfig
from wbcap.smooth.track import ROT_KEYS, ROT_SIZES, SmoothedTrack
from wbcap.world.feet import foot_vertices

__all__ = ["Glide", "LabCalibration", "SceneCamera", "Stand", "SyntheticPerson", "SyntheticScene", "TrackNoise", "Walk",
           "amass_body_joints", "evaluate", "make_scene", "track_mesh", "true_body_joints", "write_calibrated_run"]

#: Body-pose slots (joint - 1: ``body_pose`` holds joints 1..21) of the shoulders: (left, right).
_SHOULDER = tuple(j - 1 for j in SMPLX_SHOULDERS)


@dataclass(frozen=True)
class SceneCamera:
    """A camera at ``(0, 0, height)`` looking along world +y, pitched down by ``pitch_deg`` and
    rolled by ``roll_deg`` (about its optical axis); with ``tilt_deg_s`` its pitch changes at that
    rate and with ``bob_m`` its height oscillates by that amplitude at 0.4 Hz (a moving camera).
    Focal length ``sqrt(W^2 + H^2)`` pixels (wbcap's default), principal point at the centre.
    Another view of the same people: ``ground_xy`` (metres) moves the camera along the ground and
    ``yaw_deg`` turns it about the vertical (90: looking along world -x)."""

    height: float = 1.4
    pitch_deg: float = 12.0
    roll_deg: float = 4.0
    image_size: tuple[int, int] = (1280, 720)
    tilt_deg_s: float = 0.0
    bob_m: float = 0.0
    ground_xy: tuple[float, float] = (0.0, 0.0)
    yaw_deg: float = 0.0

    def image_camera(self) -> ImageCamera:
        return ImageCamera.default(self.image_size)

    def poses(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(world_from_camera (T, 3, 3), position (T, 3))`` at ``times`` (s on the world's clock)."""
        t = np.asarray(times, np.float64)
        pitch = np.radians(self.pitch_deg + self.tilt_deg_s * t)
        tilt = Rotation.from_rotvec(np.stack([-pitch, 0 * t, 0 * t], 1)).as_matrix()
        roll = Rotation.from_rotvec([0.0, 0.0, np.radians(self.roll_deg)]).as_matrix()
        yaw = Rotation.from_rotvec([0.0, 0.0, np.radians(self.yaw_deg)]).as_matrix()
        rotation = yaw @ np.asarray(ZUP_FROM_OPENCV) @ tilt @ roll
        height = self.height + self.bob_m * np.sin(2 * np.pi * 0.4 * t)
        return rotation, np.stack([0 * t + self.ground_xy[0], 0 * t + self.ground_xy[1], height], 1)


@dataclass(frozen=True)
class TrackNoise:
    """Translation error like the network's, then wbcap's smoothing (``smooth``; None: none) of
    the translation, and with ``smooth_poses`` of the (exact) poses too, as ``wbcap run`` smooths
    every parameter.

    Along the camera ray through the pelvis: white noise of ``depth_white`` times the distance
    per frame, plus a drift of amplitude ``depth_drift`` times the distance (two sines, 0.23 and
    0.61 Hz, random phases, zero mean over the track), plus a constant ``depth_bias`` times the
    distance (a scale error: no method without a size prior can see it); across the ray: white
    noise of ``lateral_m`` metres per axis. With ``pose_deg``, each body joint's rotation is off
    by a fixed random rotation of that many degrees (a random axis; a camera's own view of the
    pose: each noise draw another), as a network's pose errors persist over a track; with
    ``pose_white_deg``, each joint also shakes by a random rotation per frame (that many degrees
    per axis, a standard deviation), smoothed with the rest where ``smooth_poses``."""

    depth_white: float = 0.015
    depth_drift: float = 0.03
    lateral_m: float = 0.004
    depth_bias: float = 0.0
    seed: int = 0
    smooth: SmoothConfig | None = field(default_factory=SmoothConfig)
    smooth_poses: bool = False
    pose_deg: float = 0.0
    pose_white_deg: float = 0.0


@dataclass(frozen=True)
class Walk:
    """Walking from ``start`` (metres, world xy of the pelvis) towards ``heading_deg`` (0 = world
    +x, the camera's right; 90 = away from the camera), on a surface at ``ground_z``."""

    start: tuple[float, float]
    heading_deg: float
    speed: float = 1.0
    cycle_s: float = 1.1
    stance: float = 0.6
    clearance: float = 0.06
    bob_m: float = 0.03
    ground_z: float = 0.0


@dataclass(frozen=True)
class Stand:
    """Standing at ``position`` facing ``facing_deg`` (-90: the camera), the pelvis lowered by up to
    ``squat_m`` metres (knees bending) every ``period_s`` seconds, arms swinging."""

    position: tuple[float, float]
    facing_deg: float = -90.0
    squat_m: float = 0.12
    period_s: float = 2.5
    ground_z: float = 0.0


@dataclass(frozen=True)
class Glide:
    """A standing body carried from ``start`` towards ``heading_deg`` at ``speed`` m/s."""

    start: tuple[float, float]
    heading_deg: float
    speed: float = 3.0
    ground_z: float = 0.0


@dataclass(frozen=True)
class SyntheticPerson:
    """One person: the truth in the world and wbcap's camera-frame tracks.

    Attributes:
        world: ``global_orient (T, 3)``, ``body_pose (T, 63)`` axis-angle radians and ``transl
            (T, 3)`` metres in the z-up world (ground ``z = 0``), ``betas (10,)``.
        contact: ``(T, 2)`` bool, (left, right) foot planted (still and on its surface).
        clean: the exact motion in the camera frame.
        noisy: with :class:`TrackNoise` (and its smoothing).
    """

    world: dict[str, np.ndarray]
    contact: np.ndarray
    clean: SmoothedTrack
    noisy: SmoothedTrack


@dataclass(frozen=True)
class SyntheticScene:
    """People seen by one camera over ``times`` (s).

    Attributes:
        camera: the pinhole camera; world_from_camera ``(T, 3, 3)`` and camera_position ``(T, 3)``
            its pose per frame (constant unless the camera moves).
    """

    camera: ImageCamera
    times: np.ndarray
    world_from_camera: np.ndarray
    camera_position: np.ndarray
    people: dict[int, SyntheticPerson]


def _rest_pelvis(body: Any) -> np.ndarray:
    """``(3,)`` the rest pelvis of the neutral shape (betas 0), metres."""
    import torch

    with torch.no_grad():
        return body.rest_root(torch.zeros(1, 10)).double().numpy()[0]


def _heading(deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``(3, 3)`` root rotation (the model's y up -> world z, its front +z -> the heading) and the
    unit heading ``(3,)``."""
    h = np.radians(deg)
    front = np.array([np.cos(h), np.sin(h), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    return np.stack([np.cross(up, front), up, front], 1), front  # columns: images of model x, y, z


def _rest_joints(body: Any) -> np.ndarray:
    """``(55, 3)`` rest joints of the neutral shape, model frame (y up, facing +z), metres."""
    return (body.J_regressor.double() @ body.v_template.double()).numpy()


def _ankle_height(body: Any) -> np.ndarray:
    """``(2,)`` height of each ankle joint above its foot's lowest vertex at rest, metres."""
    joints, rest = _rest_joints(body), body.v_template.double().numpy()
    return np.array([joints[a, 1] - rest[f, 1].min() for a, f in zip(SMPLX_ANKLES, foot_vertices(body))])


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Radians into ``[-pi, pi)``."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _leg_ik(body: Any, rotation: np.ndarray, pelvis: np.ndarray, ankles: np.ndarray) -> np.ndarray:
    """``(T, 63)`` body pose putting the ankles at ``ankles`` ``(T, 2, 3)`` (world) for a root
    ``rotation`` ``(3, 3)`` and pelvis ``(T, 3)`` (world): per leg, hip and knee turn about the
    model's x axis (planar two-link inverse kinematics by the law of cosines), the ankle cancels
    both so the foot stays level; the arms hang. A target beyond reach is taken at full stretch."""
    joints = _rest_joints(body)
    pose = np.zeros((pelvis.shape[0], 21, 3))
    for side, (hip, knee, ankle) in enumerate(zip(SMPLX_HIPS, SMPLX_KNEES, SMPLX_ANKLES)):
        a, b = (joints[knee] - joints[hip])[1:], (joints[ankle] - joints[knee])[1:]  # (y, z) plane
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        d = ((ankles[:, side] - pelvis - rotation @ (joints[hip] - joints[SMPLX_PELVIS])) @ rotation)[:, 1:]  # model (y, z)
        dist = np.clip(np.linalg.norm(d, axis=1), abs(na - nb) + 1e-9, na + nb)
        cos_between = np.clip((dist**2 - na**2 - nb**2) / (2 * na * nb), -1.0, 1.0)
        beta = np.arctan2(a[1], a[0]) - np.arctan2(b[1], b[0]) + np.arccos(cos_between)
        reach = a + np.stack([b[0] * np.cos(beta) - b[1] * np.sin(beta), b[0] * np.sin(beta) + b[1] * np.cos(beta)], 1)
        alpha = np.arctan2(d[:, 1], d[:, 0]) - np.arctan2(reach[:, 1], reach[:, 0])
        pose[:, hip - 1, 0], pose[:, knee - 1, 0], pose[:, ankle - 1, 0] = _wrap(alpha), _wrap(beta), _wrap(-alpha - beta)
    pose[:, _SHOULDER[0], 2], pose[:, _SHOULDER[1], 2] = -1.2, 1.2
    return pose.reshape(-1, 63)


def _design(body: Any, spec: Walk | Stand | Glide, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Root rotation ``(3, 3)``, pelvis ``(T, 3)``, ankle targets ``(T, 2, 3)`` (world) and planted
    feet ``(T, 2)`` of one person."""
    joints = _rest_joints(body)
    ankle_z = _ankle_height(body) + spec.ground_z
    legs = [np.linalg.norm((joints[a] - joints[h])[1:]) for h, a in zip(SMPLX_HIPS, SMPLX_ANKLES)]
    reach = 0.97 * min(legs)  # hip to ankle, knees a little bent at most
    hip_below = joints[SMPLX_PELVIS, 1] - joints[SMPLX_HIPS[0], 1]  # hips below the pelvis, metres
    t = times  # (the world's clock: a camera that started later sees the motion from later on)
    if isinstance(spec, Walk):
        rotation, front = _heading(spec.heading_deg)
        side = rotation[:, 0]  # the subject's left
        pelvis_xy = np.asarray(spec.start) + spec.speed * t[:, None] * front[:2]
        ankles, planted = np.zeros((t.size, 2, 3)), np.zeros((t.size, 2), bool)
        for foot, shift in ((0, 0.0), (1, 0.5)):
            cyc = t / spec.cycle_s + shift
            k, phase = np.floor(cyc), cyc % 1.0
            lateral = side[:2] * (joints[SMPLX_ANKLES[foot], 0] - joints[SMPLX_PELVIS, 0])

            def hold(index: np.ndarray, shift: float = shift, lateral: np.ndarray = lateral) -> np.ndarray:
                mid = (index + spec.stance / 2 - shift) * spec.cycle_s  # mid-stance time of step `index`
                return np.asarray(spec.start) + spec.speed * mid[:, None] * front[:2] + lateral

            s = np.clip((phase - spec.stance) / (1 - spec.stance), 0.0, 1.0)
            w = (1 - np.cos(np.pi * s)) / 2
            planted[:, foot] = phase < spec.stance
            ankles[:, foot, :2] = (1 - w[:, None]) * hold(k) + w[:, None] * hold(k + 1)
            ankles[:, foot, 2] = ankle_z[foot] + spec.clearance * np.sin(np.pi * s)
        along = np.einsum("tfc,c->tf", ankles[:, :, :2] - pelvis_xy[:, None], front[:2])
        limit = (ankles[:, :, 2] + np.sqrt(np.maximum(reach**2 - along**2, 0.0))).min(1)  # highest the legs reach
        low = limit.min() - 0.002
        bob = np.minimum(spec.bob_m, limit.max() - low)
        # a smooth bob, highest in the middle of single support (phase 0.3, 0.8), within reach
        hip_z = np.minimum(low + bob * (1 + np.cos(4 * np.pi * (t / spec.cycle_s - 0.3))) / 2, limit)
        pelvis = np.column_stack([pelvis_xy, hip_z + hip_below])
        return rotation, pelvis, ankles, planted
    if isinstance(spec, Stand):
        rotation, front = _heading(spec.facing_deg)
        depth = spec.squat_m * (1 - np.cos(2 * np.pi * t / spec.period_s)) / 2
        pelvis_xy = np.asarray(spec.position) - 0.4 * depth[:, None] * front[:2]  # hips back as the knees bend
        planted = np.ones((t.size, 2), bool)
    else:
        rotation, front = _heading(spec.heading_deg)
        depth = np.zeros(t.size)
        pelvis_xy = np.asarray(spec.start) + spec.speed * t[:, None] * front[:2]
        planted = np.zeros((t.size, 2), bool)
    base = np.asarray(spec.position if isinstance(spec, Stand) else spec.start)
    ankles = np.zeros((t.size, 2, 3))
    for foot in (0, 1):
        ankles[:, foot, :2] = (pelvis_xy if isinstance(spec, Glide) else base) + rotation[:2, 0] * (
            joints[SMPLX_ANKLES[foot], 0] - joints[SMPLX_PELVIS, 0])
        ankles[:, foot, 2] = ankle_z[foot]
    pelvis = np.column_stack([pelvis_xy, ankle_z.max() + reach + hip_below - depth])
    return rotation, pelvis, ankles, planted


def _world_motion(body: Any, spec: Walk | Stand | Glide, times: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The world parameters and ``(T, 2)`` planted feet of one person (module docstring)."""
    rotation, pelvis, ankles, planted = _design(body, spec, times)
    body_pose = _leg_ik(body, rotation, pelvis, ankles)
    if isinstance(spec, Stand):
        arms = 0.5 * np.sin(2 * np.pi * times / 1.7)
        body_pose[:, 3 * _SHOULDER[0] + 2] -= arms
        body_pose[:, 3 * _SHOULDER[1] + 2] += arms
    orient = np.repeat(Rotation.from_matrix(rotation).as_rotvec()[None], times.size, 0)
    world = {"global_orient": orient, "body_pose": body_pose, "transl": pelvis - _rest_pelvis(body),
             "betas": np.zeros(10)}
    return world, planted


def _camera_track(body: Any, world: dict[str, np.ndarray], times: np.ndarray, rotation: np.ndarray,
                  position: np.ndarray, camera: ImageCamera) -> SmoothedTrack:
    """The exact camera-frame :class:`SmoothedTrack` of world parameters (camera pose per frame)."""
    rest = _rest_pelvis(body)
    cam_from_world = np.transpose(rotation, (0, 2, 1))
    orient = Rotation.from_matrix(cam_from_world @ Rotation.from_rotvec(world["global_orient"]).as_matrix()).as_rotvec()
    pelvis = np.einsum("tij,tj->ti", cam_from_world, rest + world["transl"] - position)
    transl = pelvis - rest
    n = times.size
    track = SmoothedTrack(
        frame=np.arange(n, dtype=np.int64), time=times.astype(np.float64), box=np.zeros((n, 4), np.float32),
        global_orient=orient.astype(np.float32), body_pose=world["body_pose"].astype(np.float32),
        left_hand_pose=np.zeros((n, 45), np.float32), right_hand_pose=np.zeros((n, 45), np.float32),
        jaw_pose=np.zeros((n, 3), np.float32), expression=np.zeros((n, 10), np.float32),
        transl=transl.astype(np.float32), betas=np.zeros(10, np.float32),
    )
    uv = camera.project(track_mesh(body, track)[0])  # the box: the projected mesh's extent
    return dataclasses.replace(track, box=np.concatenate([uv.min(1), uv.max(1) - uv.min(1)], 1).astype(np.float32))


def _noisy(body: Any, track: SmoothedTrack, noise: TrackNoise, seed: int) -> SmoothedTrack:
    """``track`` with :class:`TrackNoise` on its translation, then smoothed (``noise.smooth``)."""
    from wbcap.smooth.sequence import smooth_signal, smooth_track

    rng = np.random.default_rng(seed)
    rest = _rest_pelvis(body)
    t = track.time
    pelvis = rest + track.transl.astype(np.float64)
    dist = np.linalg.norm(pelvis, axis=1)
    ray = pelvis / dist[:, None]
    phase = rng.uniform(0, 2 * np.pi, 2)
    drift = 0.6 * np.sin(2 * np.pi * 0.23 * t + phase[0]) + 0.4 * np.sin(2 * np.pi * 0.61 * t + phase[1])
    drift -= drift.mean()
    depth = dist * (noise.depth_white * rng.standard_normal(t.size) + noise.depth_drift * drift + noise.depth_bias)
    e1 = np.cross([0.0, 1.0, 0.0], ray)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(ray, e1)
    lateral = noise.lateral_m * (rng.standard_normal((t.size, 1)) * e1 + rng.standard_normal((t.size, 1)) * e2)
    transl = track.transl + depth[:, None] * ray + lateral
    if noise.pose_deg > 0:
        axes = rng.standard_normal((21, 3))
        turn = Rotation.from_rotvec(axes / np.linalg.norm(axes, axis=1, keepdims=True) * np.radians(noise.pose_deg))
        joints = Rotation.from_rotvec(track.body_pose.reshape(-1, 21, 3).reshape(-1, 3).astype(np.float64))
        posed = (joints * Rotation.concatenate([turn] * t.size)).as_rotvec().reshape(t.size, 63)
        track = dataclasses.replace(track, body_pose=posed.astype(np.float32))
    if noise.pose_white_deg > 0:
        shake = Rotation.from_rotvec(np.radians(noise.pose_white_deg) * rng.standard_normal((t.size * 21, 3)))
        joints = Rotation.from_rotvec(track.body_pose.reshape(-1, 3).astype(np.float64))
        posed = (joints * shake).as_rotvec().reshape(t.size, 63)
        track = dataclasses.replace(track, body_pose=posed.astype(np.float32))
    if noise.smooth is None:
        return dataclasses.replace(track, transl=transl.astype(np.float32))
    if not noise.smooth_poses:
        return dataclasses.replace(track, transl=smooth_signal(transl, t, noise.smooth).astype(np.float32))
    poses = np.concatenate([track.param(k).reshape(t.size, n, 3) for k, n in zip(ROT_KEYS, ROT_SIZES)], 1)
    poses_s, trans_s, betas_s, _ = smooth_track(poses, transl, np.repeat(track.betas[None], t.size, 0), t, noise.smooth)
    split = np.split(poses_s, np.cumsum(ROT_SIZES)[:-1], axis=1)
    rot = {k: p.reshape(t.size, -1).astype(np.float32) for k, p in zip(ROT_KEYS, split)}
    return SmoothedTrack(frame=track.frame, time=t, box=track.box, **rot, expression=track.expression,
                         transl=np.asarray(trans_s, np.float32), betas=np.asarray(betas_s, np.float32))


def make_scene(body: Any, people: list[Walk | Stand | Glide], camera: SceneCamera = SceneCamera(),
               noise: TrackNoise = TrackNoise(), seconds: float = 6.0, fps: float = 30.0, start_s: float = 0.0
               ) -> SyntheticScene:
    """People (track ids 0, 1, ... in the order given) seen by ``camera`` for ``seconds`` at ``fps``.

    ``start_s``: the camera's first frame at that time of the world's clock (a camera that started
    recording ``start_s`` seconds after the world's 0; ``wbcap fuse --offsets`` takes it); the
    scene's ``times`` are the camera's own clock (from 0). ``body``: the SMPL-X layer (CPU).
    Deterministic for the same arguments (``noise.seed``).
    """
    times = np.arange(int(round(seconds * fps))) / fps
    world_times = times + start_s
    rotation, position = camera.poses(world_times)
    image = camera.image_camera()
    out = {}
    for i, spec in enumerate(people):
        world, contact = _world_motion(body, spec, world_times)
        clean = _camera_track(body, world, times, rotation, position, image)
        out[i] = SyntheticPerson(world=world, contact=contact, clean=clean,
                                 noisy=_noisy(body, clean, noise, noise.seed + 101 * i))
    return SyntheticScene(camera=image, times=times, world_from_camera=rotation, camera_position=position, people=out)


def track_mesh(body: Any, track: SmoothedTrack) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (T, V, 3), joints (T, 144, 3))`` float64, metres, of a camera-frame track
    (:func:`wbcap.smooth.posing.pose_track`, the whole track in one SMPL-X call; CPU)."""
    posed = pose_track(body, track, "cpu", batch=None)
    return posed.vertices.astype(np.float64), posed.joints.astype(np.float64)


@dataclass(frozen=True)
class LabCalibration:
    """A static camera seen in a ground's z-up world, as a calibration gives its pose in a lab's
    frame: that world turned by ``yaw_deg`` about z and shifted by ``shift`` along the floor, the
    translation in ``1 / per_metre`` metres (1000: millimetres, as Anipose's and FreeMoCap's files
    with a board in mm).

    Attributes:
        pose: the camera's :class:`~wbcap.camera.CameraPose` in the lab (its units).
        lab_from_world: ``(3, 3)`` the turn; shift: ``(3,)`` metres: ``x_lab = lab_from_world x_w + shift``.
        lab_from_camera: ``(3, 3)``; centre: ``(3,)`` metres: the camera in the lab, the
            :class:`~wbcap.world.estimate.WorldFrame` a calibrated ground should give.
    """

    pose: Any
    lab_from_world: np.ndarray
    shift: np.ndarray
    lab_from_camera: np.ndarray
    centre: np.ndarray

    @classmethod
    def of(cls, world_from_camera: np.ndarray, position: np.ndarray, per_metre: float = 1000.0,
           yaw_deg: float = 30.0, shift: tuple[float, float, float] = (2.0, -1.0, 0.0),
           lab_from_world: np.ndarray | None = None) -> LabCalibration:
        """The lab calibration of a camera at ``x_w = world_from_camera x_c + position`` (metres);
        ``lab_from_world``: any turn instead of the yaw (a lab whose z is not up)."""
        from wbcap.camera import CameraPose

        turn = (Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix() if lab_from_world is None
                else np.asarray(lab_from_world, np.float64))
        lab_from_camera = turn @ np.asarray(world_from_camera, np.float64)
        centre = turn @ np.asarray(position, np.float64) + np.asarray(shift, np.float64)
        rotation = lab_from_camera.T
        pose = CameraPose.from_values(Rotation.from_matrix(rotation).as_rotvec(), -rotation @ centre * per_metre)
        return cls(pose=pose, lab_from_world=turn, shift=np.asarray(shift, np.float64), lab_from_camera=lab_from_camera,
                   centre=centre)

    @classmethod
    def in_camera_frame(cls, first_world_from_camera: np.ndarray, first_position: np.ndarray,
                        world_from_camera: np.ndarray, position: np.ndarray, per_metre: float = 1000.0
                        ) -> LabCalibration:
        """The calibration of a camera at ``world_from_camera``, ``position`` in a lab that is a
        first camera's OpenCV frame (Anipose's and FreeMoCap's calibrations without a board on the
        floor: no axis up, the origin in the air)."""
        turn = np.asarray(first_world_from_camera, np.float64).T
        return cls.of(world_from_camera, position, per_metre, lab_from_world=turn,
                      shift=tuple(-turn @ np.asarray(first_position, np.float64)))

    def in_true_world(self, result: Any) -> Any:
        """A :class:`~wbcap.world.estimate.WorldResult` in the lab with its frame taken back to
        the scene's own world (for :func:`evaluate`)."""
        frame = result.frame
        back = dataclasses.replace(frame, world_from_camera=self.lab_from_world.T @ frame.world_from_camera,
                                   camera_position=self.lab_from_world.T @ (frame.camera_position - self.shift))
        return dataclasses.replace(result, frame=back)


def write_calibrated_run(out: Any, body: Any, scene: SyntheticScene, calibration: LabCalibration,
                         ids: dict[int, int] | None = None, config: Any = None, source: str | None = None) -> Any:
    """A finished ``wbcap run --world --calibration`` folder of ``scene`` (``out``, created): its
    noisy tracks grounded on ``calibration``'s floor (:func:`wbcap.world.estimate.ground_tracks`),
    written as the run writes them (``track_<id>.npz`` in the calibration's world, ``meta.json``
    with the world and the calibration's pose), for ``wbcap fuse``. ``ids``: the run's track id
    of each person (default their own); ``source``: the video it says it was made from (an
    absolute path; default ``<out name>.mp4``). Returns the :class:`~wbcap.world.estimate.WorldResult`.
    """
    from pathlib import Path

    import torch

    from wbcap.camera import camera_to_dict
    from wbcap.export.animation import AnimationExport, write_track_files
    from wbcap.io.run_folder import write_meta
    from wbcap.world.estimate import WorldConfig, ground_tracks

    out = Path(out)
    out.mkdir(parents=True)
    ids = ids or {k: k for k in scene.people}
    tracks = {ids[k]: p.noisy for k, p in scene.people.items()}
    result = ground_tracks(tracks, body, "cpu", scene.camera, config or WorldConfig(), pose=calibration.pose)
    fps = 1.0 / float(np.median(np.diff(scene.times)))
    with torch.no_grad():
        write_track_files(out, result.tracks, body, "cpu", fps, 1.0, "neutral", AnimationExport(formats=("npz",)),
                          scene.camera, world=result.frame, contacts=result.contacts)
    write_meta(out, {"source": source or f"{out.name}.mp4", "fps": fps, "gender": "neutral", "max_gap": 1.0,
                     "tracks": sorted(result.tracks), "camera": camera_to_dict(scene.camera),
                     "frame": "world" if result.frame else "camera", "world": result.to_meta(),
                     "calibration": {"file": "/lab/Calib.toml", **calibration.pose.to_dict()}})
    return result


def amass_body_joints(body: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``(T, 22, 3)`` float64 metres: the 22 body joints of an AMASS file's arrays (its frame)."""
    import torch

    n = len(arrays["trans"])

    def t(a: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, np.float32))

    with torch.no_grad():
        out = body(betas=t(np.repeat(np.asarray(arrays["betas"]).reshape(1, -1), n, 0)),
                   global_orient=t(arrays["poses"][:, :3]), body_pose=t(arrays["poses"][:, 3:66]),
                   left_hand_pose=torch.zeros(n, 45), right_hand_pose=torch.zeros(n, 45), jaw_pose=torch.zeros(n, 3),
                   expression=torch.zeros(n, 10), transl=t(arrays["trans"]))
    return out.joints.numpy()[:, SMPLX_BODY_JOINTS.start:SMPLX_BODY_JOINTS.stop].astype(np.float64)


def true_body_joints(body: Any, person: SyntheticPerson) -> np.ndarray:
    """``(T, 22, 3)`` float64 metres: a person's true body joints in the scene's world."""
    w = person.world
    return amass_body_joints(body, {"betas": w["betas"], "trans": w["transl"],
                                    "poses": np.concatenate([w["global_orient"], w["body_pose"]], 1)})


def evaluate(body: Any, scene: SyntheticScene, result: Any) -> dict[str, Any]:
    """How well a :class:`~wbcap.world.estimate.WorldResult` of ``scene``'s noisy tracks fits the truth.

    Returns ``{"normal_error_deg", "height_error_m", "camera_height_m", "ground_offset_m",
    "people": {id: {...}}}`` (ground errors None on fallback; ``height_error_m``: the camera's
    height above the ground, estimated minus true; ``ground_offset_m``: the mean distance between
    the estimated and the true ground under the people's planted feet); per person (``before``: the noisy camera-frame track put in
    the true world; ``after``: the result's track in its own world; contacts from the truth):
    ``slide_before``/``slide_after`` (:func:`wbcap.eval.world_metrics.foot_sliding` of the heel
    and toe points, m/frame), ``penetration_before`` (against the true ground) and
    ``penetration_after`` (against the result's ground; mean and max over frames, m),
    ``reprojection_px`` (largest pelvis change), ``contact_accuracy`` (per-foot labels against
    the truth), ``w_mpjpe``/``wa_mpjpe`` (mm), ``rte`` (%) and ``jitter`` (m/s^3) of the 22 body
    joints, before and after.
    """
    from wbcap.eval import world_metrics as wm

    rot, pos = scene.world_from_camera, scene.camera_position
    frame = result.frame
    report: dict[str, Any] = {"normal_error_deg": None, "height_error_m": None, "camera_height_m": None,
                              "ground_offset_m": None, "people": {}}
    if frame is not None:
        true_up = rot[0].T @ np.array([0.0, 0.0, 1.0])
        report["normal_error_deg"] = float(np.degrees(np.arccos(np.clip(frame.ground.normal @ true_up, -1, 1))))
        report["height_error_m"] = float(frame.camera_height - pos[0, 2])
        report["camera_height_m"] = frame.camera_height
        # the estimated ground's height where the people stand: at the true planted feet
        soles = []
        for person in scene.people.values():
            verts = track_mesh(body, person.clean)[0]
            for side, ids in enumerate(foot_vertices(body)):
                rows = np.flatnonzero(person.contact[:, side])
                lowest = np.argmin(verts[rows][:, ids] @ true_up, axis=1)
                soles.append(verts[rows, ids[lowest]])
        soles = np.concatenate(soles)
        true_height = soles @ true_up + pos[0, 2]
        report["ground_offset_m"] = float(np.mean(np.abs(frame.ground.height(soles) - true_height))) if soles.size else None
    fps = 1.0 / float(np.median(np.diff(scene.times)))
    feet = foot_vertices(body)
    rest = _rest_pelvis(body)
    body_joints = slice(SMPLX_BODY_JOINTS.start, SMPLX_BODY_JOINTS.stop)  # the 22 body joints (a view)

    def world(points: np.ndarray) -> np.ndarray:  # camera frame (T, ..., 3) -> the true world
        return np.einsum("tij,t...j->t...i", rot, points) + pos.reshape(-1, *([1] * (points.ndim - 2)), 3)

    for tid, person in scene.people.items():
        j_true = world(track_mesh(body, person.clean)[1])
        v_before, j_before = (world(a) for a in track_mesh(body, person.noisy))
        track = result.tracks[tid]
        v_cam, j_cam = track_mesh(body, track)
        v_after, j_after = (frame.to_world(v_cam), frame.to_world(j_cam)) if frame else (v_before, j_before)
        contact = np.repeat(person.contact, 3, axis=1)  # (T, 6) for SMPLX_FOOT_POINTS

        def pen(v: np.ndarray) -> tuple[float, float]:
            depth = wm.penetration_depth(v[:, np.concatenate(feet)])
            return float(depth.mean()), float(depth.max())

        labels = result.contacts.get(tid)
        stats = {
            "slide_before": wm.foot_sliding(j_before[:, SMPLX_FOOT_POINTS], contact),
            "slide_after": wm.foot_sliding(j_after[:, SMPLX_FOOT_POINTS], contact),
            "slide_truth": wm.foot_sliding(j_true[:, SMPLX_FOOT_POINTS], contact),
            "penetration_before": pen(v_before),
            "penetration_after": pen(v_after),
            "reprojection_px": float(wm.reprojection_change(rest + person.noisy.transl, rest + track.transl,
                                                            scene.camera).max()),
            "contact_accuracy": None if labels is None else float((labels == person.contact).mean()),
        }
        for name, fn in (("w_mpjpe", wm.w_mpjpe), ("wa_mpjpe", wm.wa_mpjpe)):
            stats[name] = (fn(j_before[:, body_joints], j_true[:, body_joints]),
                           fn(j_after[:, body_joints], j_true[:, body_joints]))
        root_true = j_true[:, SMPLX_PELVIS]
        moves = np.linalg.norm(np.diff(root_true, axis=0), axis=1).sum() > 0.05
        stats["rte"] = ((wm.root_translation_error(j_before[:, SMPLX_PELVIS], root_true),
                         wm.root_translation_error(j_after[:, SMPLX_PELVIS], root_true)) if moves else None)
        stats["jitter"] = tuple(wm.jitter(j[:, body_joints], fps) for j in (j_before, j_after, j_true))
        report["people"][tid] = stats
    return report
