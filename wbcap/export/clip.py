"""One person's motion on a regular clock, in a y-up or z-up world: what the animation writers
(GLB, BVH, FBX) read.

A :class:`MotionClip` is built from the arrays of one AMASS file (:func:`wbcap.export.amass.amass_arrays`,
z up), so every format shows exactly the motion of ``track_<id>.npz``: the same regular clock,
the same filled short gaps and the same split at long gaps (one clip per AMASS file).

Worlds (both right-handed, metres):

* ``"z"`` (AMASS, Blender): x = camera right, y = camera forward (into the scene), z = up.
* ``"y"`` (glTF, BVH, three.js, Unity/Unreal importers): x = camera right, y = up, z = from the
  scene towards the camera. A person facing the camera faces +z (glTF's "front"), and the source
  camera is a glTF camera at the origin with no rotation (it looks down -z).

Frames (``MotionClip.frame``, from the AMASS file's ``frame``): ``"camera"``, the worlds above
with the source camera at the origin; ``"world"`` (``wbcap run --world``): the same axes laid on
the estimated ground (z = 0, resp. y = 0; x and forward the camera's, levelled), the camera above
the origin at ``camera_position``, turned by ``camera_rotation``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from wbcap.body.pose_layout import POSE_SLICES
from wbcap.camera import YUP_FROM_OPENCV, ZUP_FROM_OPENCV, rotate_root_np, rotation_array
from wbcap.camera import YUP_FROM_ZUP as _YUP_FROM_ZUP

__all__ = ["OFF_GRID_WHY", "YUP_FROM_ZUP", "MotionClip", "Up", "clip_from_amass", "npz_frame_joints", "smplx_rows"]

Up = Literal["y", "z"]

#: Rotation taking the z-up world to the y-up world: ``x' = x``, ``y' = z``, ``z' = -y``
#: (:data:`wbcap.camera.YUP_FROM_ZUP` as a read-only array).
YUP_FROM_ZUP = rotation_array(_YUP_FROM_ZUP)

#: Why a clip's first row can lie between two frames of its rate, so that a format keyed on whole
#: frames (an FBX, a C3D's first frame) cannot start on it: the end of their warnings.
OFF_GRID_WHY = ("(the rows keep their own times: a variable-rate video's tracks each begin at the time of "
                "their first frame; a constant-rate video's rows lie on its frames unless a --start is off the "
                "--every grid)")


@dataclass(frozen=True)
class MotionClip:
    """A person's SMPL-X motion on a regular clock (numpy; float64 unless said).

    Attributes:
        name: a label (e.g. ``track_3`` or ``track_3_part2``), used as the animation name.
        times: ``(T,)`` seconds on the source's clock, ``times[0] + k / fps``.
        fps: rows per second.
        poses: ``(T, 55, 3)`` axis-angle, radians, model joint order; hands absolute
            (``flat_hand_mean=True``); the root in the world ``up``.
        transl: ``(T, 3)`` SMPL-X ``transl`` in the world ``up``, metres (the pelvis is at
            ``rig.rest_joints[0] + transl``).
        expression: ``(T, E)`` expression coefficients.
        betas: ``(B,)`` shape coefficients.
        valid: ``(T,)`` bool, False for rows filled by interpolation.
        frame_indices: ``(T,)`` int64 source frame of each row, -1 when filled.
        up: ``"y"`` or ``"z"`` (see the module docstring).
        rest_root: ``(3,)`` rest pelvis of the shaped body, metres (needed to change worlds).
        frame: ``"camera"`` or ``"world"`` (see the module docstring).
        camera_rotation: ``(3, 3)`` OpenCV camera axes -> this world (the source camera's pose;
            None: the default of ``frame="camera"``, :data:`wbcap.camera.ZUP_FROM_OPENCV` or
            :data:`wbcap.camera.YUP_FROM_OPENCV`).
        camera_position: ``(3,)`` the source camera's centre in this world, metres (None: the origin).
        ground_from: with ``frame="world"``, ``"feet"`` (the ground fitted to the feet: the camera
            above the origin), ``"calibration"`` (a calibrated camera's world) or
            ``"calibration_levelled"`` (``wbcap fuse``: a calibration's frame levelled by the
            people's feet, :mod:`wbcap.fuse.level`); None: not said
            (files before it, taken as ``"feet"``).
    """

    name: str
    times: np.ndarray
    fps: float
    poses: np.ndarray
    transl: np.ndarray
    expression: np.ndarray
    betas: np.ndarray
    valid: np.ndarray
    frame_indices: np.ndarray
    up: Up
    rest_root: np.ndarray
    frame: str = "camera"
    camera_rotation: np.ndarray | None = None
    camera_position: np.ndarray | None = None
    ground_from: str | None = None

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def in_world(self, up: Up) -> MotionClip:
        """The same motion expressed in the world ``up`` (root rotation and translation turned
        about the rest pelvis, :func:`wbcap.camera.rotate_root_np`)."""
        if up == self.up:
            return self
        rotation = YUP_FROM_ZUP if up == "y" else YUP_FROM_ZUP.T
        root, transl = rotate_root_np(self.poses[:, 0], self.transl, self.rest_root, rotation)
        poses = self.poses.copy()
        poses[:, 0] = root
        cam_rot = None if self.camera_rotation is None else rotation @ np.asarray(self.camera_rotation, np.float64)
        cam_pos = None if self.camera_position is None else rotation @ np.asarray(self.camera_position, np.float64)
        return replace(self, poses=poses, transl=transl, up=up, camera_rotation=cam_rot, camera_position=cam_pos)

    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The source camera in this world: ``(rotation (3, 3), position (3,))``, ``x = R x_c + p``
        for OpenCV camera-frame points ``x_c``."""
        if self.camera_rotation is not None:
            rotation = np.asarray(self.camera_rotation, np.float64)
        else:
            rotation = np.asarray(YUP_FROM_OPENCV if self.up == "y" else ZUP_FROM_OPENCV, np.float64)
        position = np.zeros(3) if self.camera_position is None else np.asarray(self.camera_position, np.float64)
        return rotation, position


def clip_from_amass(arrays: dict[str, np.ndarray], rest_root: np.ndarray, name: str, up: Up = "y") -> MotionClip:
    """A clip from one AMASS file's arrays (:func:`wbcap.export.amass.amass_arrays` or ``np.load``
    of a ``track_<id>.npz``), turned into the world ``up``.

    Args:
        arrays: needs ``poses (T, 165)``, ``trans (T, 3)``, ``betas``, ``expression (T, E)``,
            ``mocap_framerate``, ``times``, ``valid``, ``frame_indices``; z up, hands absolute;
            reads ``frame``, ``camera_rotation``, ``camera_position``, ``ground_from`` when present.
        rest_root: ``(3,)`` rest pelvis of the shaped body, metres
            (``SMPLXLayer.rest_root`` or ``build_rig(...).rest_joints[0]``).
        name: the clip's label.
        up: the world of the result.

    Raises:
        ValueError: an AMASS file that is not z up or not ``flat_hand_mean``.
    """
    if str(arrays.get("up_axis", "z")) != "z" or not bool(arrays.get("flat_hand_mean", True)):
        raise ValueError("expected a wbcap AMASS file (up_axis 'z', flat_hand_mean True)")
    poses = np.asarray(arrays["poses"], np.float64)
    clip = MotionClip(
        name=name,
        times=np.asarray(arrays["times"], np.float64),
        fps=float(arrays["mocap_framerate"]),
        poses=poses.reshape(poses.shape[0], 55, 3),
        transl=np.asarray(arrays["trans"], np.float64),
        expression=np.asarray(arrays["expression"], np.float64),
        betas=np.asarray(arrays["betas"], np.float64).reshape(-1),
        valid=np.asarray(arrays["valid"], bool),
        frame_indices=np.asarray(arrays["frame_indices"], np.int64),
        up="z",
        rest_root=np.asarray(rest_root, np.float64).reshape(3),
        frame=str(arrays.get("frame", "camera")),
        camera_rotation=np.asarray(arrays["camera_rotation"], np.float64) if "camera_rotation" in arrays else None,
        camera_position=np.asarray(arrays["camera_position"], np.float64) if "camera_position" in arrays else None,
        ground_from=str(arrays["ground_from"]) if "ground_from" in arrays else None,
    )
    return clip.in_world(up)


def smplx_rows(body: Any, clip: MotionClip, *, joints: bool = False, batch: int = 64) -> np.ndarray:
    """SMPL-X evaluated at each row of ``clip`` in the clip's own world (``clip.up``): the full
    mesh (pose correctives, expression, expression-dependent joints), or its joints.

    The root rotation and ``transl`` are given in that world, so the layer's output is already
    there (SMPL-X turns the body about its rest pelvis, which is how :class:`MotionClip` defines
    them). Hands are absolute in the clip; a layer with ``flat_hand_mean=False`` gets them
    relative to its mean (``absolute - body.hands_mean()``). For a z-up clip of a track npz this
    is what ``smplx.create(..., flat_hand_mean=True)`` gives from the file's ``poses``, ``trans``,
    ``betas`` and ``expression``.

    Args:
        body: a :class:`wbcap.body.smplx_layer.SMPLXLayer` (its device and dtype are used).
        clip: the motion.
        joints: the joints (``SMPLXOutput.joints``, named by
            :data:`wbcap.body.joints.SMPLX_OUTPUT_JOINT_NAMES`) instead of the vertices.
        batch: rows per layer call.

    Returns:
        ``(T, V, 3)`` vertices, or ``(T, 144, 3)`` joints, float64, metres.
    """
    import torch

    left, right = body.hands_mean()
    device, dtype = body.v_template.device, body.v_template.dtype
    n = len(clip)
    e_layer = body.num_expression
    expr = np.zeros((n, e_layer))
    e_clip = np.asarray(clip.expression, np.float64).reshape(n, -1)
    expr[:, : min(e_layer, e_clip.shape[1])] = e_clip[:, :e_layer]
    betas = np.zeros(body.num_betas)
    b = np.asarray(clip.betas, np.float64).reshape(-1)[: body.num_betas]
    betas[: b.size] = b
    p = np.asarray(clip.poses, np.float64).reshape(n, 165)
    out: np.ndarray | None = None

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    with torch.no_grad():
        for s in range(0, n, batch):
            r = p[s : s + batch]
            m = r.shape[0]
            rotations = {name: r[:, columns] for name, columns in POSE_SLICES.items()}
            rotations["left_hand_pose"] = rotations["left_hand_pose"] - left  # (the layer adds its hand mean)
            rotations["right_hand_pose"] = rotations["right_hand_pose"] - right
            res = body(
                betas=tensor(np.tile(betas, (m, 1))), **{name: tensor(a) for name, a in rotations.items()},
                expression=tensor(expr[s : s + batch]), transl=tensor(clip.transl[s : s + batch]),
            )
            rows = (res.joints if joints else res.vertices).detach().cpu().double().numpy()
            if out is None:
                out = np.empty((n, *rows.shape[1:]))
            out[s : s + m] = rows
    if out is None:  # (an empty clip)
        from wbcap.body.joints import SMPLX_OUTPUT_JOINT_NUM

        out = np.empty((0, SMPLX_OUTPUT_JOINT_NUM if joints else body.num_vertices, 3))
    return out


def npz_frame_joints(body: Any, clip: MotionClip, joints: np.ndarray | None, writer: str) -> np.ndarray:
    """SMPL-X's output joints of a z-up clip of one AMASS file, in the npz's frame: what the point
    writers (CSV, TRC, C3D) write from.

    Args:
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` of the clip's parameters.
        clip: a z-up clip (:func:`clip_from_amass` with ``up="z"``).
        joints: ``(T, 144, 3)`` the clip's joints when already computed (:func:`smplx_rows`
            with ``joints=True``: returned as they are), or None (computed).
        writer: the calling writer's name, for the error.

    Returns:
        ``(T, 144, 3)`` metres.

    Raises:
        ValueError: a clip that is not z up.
    """
    if clip.up != "z":
        raise ValueError(f"{writer} writes the npz's z-up frame; got a clip with up={clip.up!r}")
    return smplx_rows(body, clip, joints=True) if joints is None else np.asarray(joints)
