"""One person's motion as a Biovision Hierarchy (``.bvh``) file: skeleton plus joint rotations.

Format: Biovision's BVH as described by Meredith & Maddock, "Motion Capture File Formats
Explained" (University of Sheffield, 2001), section 2.1, and as read by Blender's importer
(``io_anim_bvh/import_bvh.py``, Blender 5.0) and three.js's ``BVHLoader``.

What the file holds (:func:`write_bvh`):

* **Skeleton.** The 55 SMPL-X joints (``rig.joint_names``, ``ROOT pelvis``) in the tree of
  ``rig.parents``; each ``JOINT``'s ``OFFSET`` is its shaped rest position relative to its parent
  (``rig.offsets``). Joints are written depth first, children in model order; the ``MOTION`` columns
  follow that order. SMPL-X joints have no rest rotation, so a joint's channels are its SMPL-X
  local rotation as they are.
* **End sites.** Every leaf (feet, jaw, eyes, the ten finger tips) ends in an ``End Site`` placed
  along its own bone (parent joint to leaf) at half that bone's length, or 1 cm up (+y) where the
  bone has zero length. It only gives readers a bone length for display; no joint sits there.
* **Units: centimetres** for ``OFFSET`` and positions (metres * 100), the unit MotionBuilder,
  Unreal and Mixamo-style rigs assume for BVH. Blender: import with ``global_scale=0.01`` to get
  metres. **Degrees** for rotations; ``Frame Time`` in seconds.
* **Axes: y up**, x = the source camera's right, +z = from the scene towards the camera (the y-up
  world of :mod:`wbcap.export.clip`, glTF's). A person facing the camera faces +z. Blender's
  importer defaults (``axis_forward='-Z'``, ``axis_up='Y'``) turn this into its z-up world as
  ``(x, -z, y)``.
* **Rotations: Euler, ``Zrotation Xrotation Yrotation`` for every joint** (the order of most mocap
  BVH files). BVH composes the channels left to right as *intrinsic* rotations, ``R = Rz @ Rx @
  Ry`` acting on column vectors in the parent frame (scipy's ``"ZXY"``); the angles come from
  ``scipy.spatial.transform.Rotation.as_euler("ZXY")``. Each joint's angle track is made
  continuous over the frames (see :func:`euler_channels`): no jump of 360°, and of the two Euler
  triples of a rotation the one nearer the previous frame, so readers that interpolate Euler
  channels do not spin through a flip near gimbal lock (X = ±90°).
* **Root position.** The pelvis ``OFFSET`` is ``0 0 0`` and its ``X/Y/Zposition`` channels hold the
  pelvis's *absolute* world position, ``(rig.rest_joints[0] + transl) * 100``. Readers disagree on
  the root's ``OFFSET``: Blender *replaces* it by the position channels (its pose bone location is
  ``channels - OFFSET`` from a rest head at ``OFFSET``), three.js *adds* them; with a zero
  ``OFFSET`` both show the same pelvis.
* **Clock.** ``Frames: T``, ``Frame Time: 1 / clip.fps``, one row per clip row: the clip's regular
  clock, with short gaps already filled by interpolation and long gaps already split into separate
  clips (:mod:`wbcap.export.amass`). Row ``k`` is at ``k / fps`` seconds from the file's start;
  the source-clock time of row 0 (``clip.times[0]``) has no place in BVH.

**Frame.** A file of ``wbcap run --world`` has the same axes laid on the estimated ground (y = 0,
gravity -y; :mod:`wbcap.world`), and the camera is no longer at the origin. BVH's grammar has no
comment or metadata syntax, and readers parse it by keyword (an extra line is not something
they promise to skip), so the file stays plain BVH and cannot say which frame it is in: the
run's ``meta.json`` (``frame``, ``world``) and the same track's ``.npz`` (``frame``) and ``.glb``
(``asset.extras.frame``) say it.

What BVH cannot carry: the mesh and skin weights, the shape beyond the bone offsets (``betas``),
the expression (``clip.expression`` is dropped; the jaw and eye rotations are kept), SMPL-X's
pose-corrective blend shapes, and the ``valid`` flags. Hands are *absolute* rotations, the hand
mean folded in (``flat_hand_mean=True``): read them without adding a hand mean.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from wbcap.errors import InputError
from wbcap.export.clip import MotionClip
from wbcap.export.rig import Rig

__all__ = ["CM_PER_M", "EULER_ORDER", "bvh_text", "euler_channels", "write_bvh"]

logger = logging.getLogger(__name__)

#: The rotation channel order of every joint, as scipy's intrinsic sequence (``Zrotation
#: Xrotation Yrotation``).
EULER_ORDER = "ZXY"

#: Centimetres per metre: BVH lengths are centimetres.
CM_PER_M = 100.0

#: End-site length as a fraction of the leaf's own bone; fallback offset (cm) for a zero-length bone.
_END_SITE_FRACTION = 0.5
_END_SITE_FALLBACK_CM = (0.0, 1.0, 0.0)

_DECIMALS = 6  # 1e-6 cm and 1e-6 degree: far below the 1e-4 m the readers are checked to


def _wrap180(x: np.ndarray) -> np.ndarray:
    """Angles in degrees mapped to ``[-180, 180)``."""
    return (x + 180.0) % 360.0 - 180.0


def euler_channels(rotvecs: np.ndarray, order: str = EULER_ORDER) -> np.ndarray:
    """Axis-angle tracks as continuous intrinsic Euler angles, the BVH channel values.

    Args:
        rotvecs: ``(T, J, 3)`` axis-angle, radians (frame by frame, any joints).
        order: intrinsic Tait-Bryan sequence in channel order, upper case (``"ZXY"``: channels
            ``Zrotation Xrotation Yrotation``, ``R = Rz(a) @ Rx(b) @ Ry(c)``).

    Returns:
        ``(T, J, 3)`` float64 degrees in channel order, with ``Rotation.from_euler(order, angles,
        degrees=True)`` equal to ``Rotation.from_rotvec(rotvecs)`` at every frame. Frame 0 is
        scipy's ``as_euler`` (middle angle in [-90°, 90°]); each later frame takes, of the two
        Euler triples of its rotation (``(a, b, c)`` and ``(a + 180, 180 - b, c + 180)``), each
        angle shifted by whole turns to within 180° of the previous frame, the triple with the
        smaller summed change. This is Blender's "compatible Euler" rule
        (``Matrix.to_euler(order, euler_compat)``); written here because scipy has none.
    """
    from scipy.spatial.transform import Rotation

    rv = np.asarray(rotvecs, np.float64)
    if rv.ndim != 3 or rv.shape[-1] != 3:
        raise ValueError(f"rotvecs must be (T, J, 3) axis-angle, got shape {rv.shape}")
    t, j = rv.shape[:2]
    if t == 0:
        return np.zeros((0, j, 3))
    with warnings.catch_warnings():
        # At gimbal lock scipy warns and sets the third angle to 0; the triple is still exact.
        warnings.filterwarnings("ignore", message="Gimbal lock detected")
        angles = Rotation.from_rotvec(rv.reshape(-1, 3)).as_euler(order, degrees=True).reshape(t, j, 3)
    other = np.stack([angles[..., 0] + 180.0, 180.0 - angles[..., 1], angles[..., 2] + 180.0], axis=-1)
    out = np.empty_like(angles)
    out[0] = angles[0]
    for k in range(1, t):
        prev = out[k - 1]
        first = prev + _wrap180(angles[k] - prev)
        second = prev + _wrap180(other[k] - prev)
        take_second = np.abs(second - prev).sum(-1) < np.abs(first - prev).sum(-1)
        out[k] = np.where(take_second[:, None], second, first)
    return out


def _children(parents: np.ndarray) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in range(parents.shape[0])]
    for j in range(1, parents.shape[0]):
        kids[int(parents[j])].append(j)
    return kids


def _check(rig: Rig, clip: MotionClip) -> None:
    n = len(rig.joint_names)
    parents = np.asarray(rig.parents)
    if parents.shape != (n,) or parents[0] != -1 or np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, n)):
        raise ValueError(f"rig.parents must be ({n},) with -1 first and parents before children")
    for name in rig.joint_names:
        if not name or any(c.isspace() or c in "{}" for c in name):
            raise ValueError(f"joint name {name!r} cannot be written to BVH (empty, braces or white space)")
    t = len(clip)
    if t < 1:
        raise ValueError(f"clip {clip.name!r} has no rows; BVH needs at least one frame")
    if not (np.isfinite(clip.fps) and clip.fps > 0):
        raise ValueError(f"clip {clip.name!r} has frame rate {clip.fps}; it must be positive")
    if clip.poses.shape != (t, n, 3) or clip.transl.shape != (t, 3):
        raise ValueError(f"clip {clip.name!r}: poses {clip.poses.shape} / transl {clip.transl.shape} "
                         f"do not match ({t}, {n}, 3) / ({t}, 3)")
    if not (np.all(np.isfinite(clip.poses)) and np.all(np.isfinite(clip.transl))):
        raise ValueError(f"clip {clip.name!r} has non-finite poses or translations")
    if not np.allclose(clip.rest_root, rig.rest_joints[0], rtol=0.0, atol=1e-4):
        raise ValueError(f"clip {clip.name!r} rest pelvis {np.round(clip.rest_root, 5).tolist()} is not the rig's "
                         f"{np.round(rig.rest_joints[0], 5).tolist()}: build the rig from the clip's betas")


def bvh_text(rig: Rig, clip: MotionClip) -> str:
    """The BVH file of ``clip`` on ``rig`` as text (conventions: module docstring).

    Args:
        rig: the shaped skeleton (:func:`wbcap.export.rig.build_rig` of the clip's betas).
        clip: the motion, any world (turned to y up here with ``clip.in_world("y")``).

    Returns:
        The whole file, ``\\n`` line endings.

    Raises:
        ValueError: an empty clip, a non-positive frame rate, arrays that do not match the rig,
            non-finite values, or a clip whose rest pelvis is not the rig's (another shape).
    """
    _check(rig, clip)
    clip_y = clip.in_world("y")
    parents = np.asarray(rig.parents)
    kids = _children(parents)
    offsets_cm = np.asarray(rig.offsets, np.float64) * CM_PER_M
    offsets_cm[0] = 0.0  # root OFFSET 0: the position channels are absolute (module docstring)
    rot_channels = " ".join(f"{axis}rotation" for axis in EULER_ORDER)

    def vec(v: np.ndarray | tuple[float, ...]) -> str:
        return " ".join(f"{float(x):.{_DECIMALS}f}" for x in v)

    lines = ["HIERARCHY"]
    order: list[int] = []

    def emit(j: int, depth: int) -> None:  # recursion depth = tree depth (< 20 for SMPL-X)
        pad = "\t" * depth
        order.append(j)
        if j == 0:
            lines.append(f"ROOT {rig.joint_names[j]}")
            channels = f"CHANNELS 6 Xposition Yposition Zposition {rot_channels}"
        else:
            lines.append(f"{pad}JOINT {rig.joint_names[j]}")
            channels = f"CHANNELS 3 {rot_channels}"
        lines.extend([f"{pad}{{", f"{pad}\tOFFSET {vec(offsets_cm[j])}", f"{pad}\t{channels}"])
        for c in kids[j]:
            emit(c, depth + 1)
        if not kids[j]:
            bone = offsets_cm[j]
            end = _END_SITE_FRACTION * bone if np.linalg.norm(bone) > 1e-6 else _END_SITE_FALLBACK_CM
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {vec(end)}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    angles = euler_channels(clip_y.poses[:, order])  # (T, 55, 3) degrees, file column order
    root = (rig.rest_joints[0] + clip_y.transl) * CM_PER_M  # (T, 3) absolute pelvis, cm
    rows = np.concatenate([root, angles.reshape(len(clip_y), -1)], axis=1)
    lines += ["MOTION", f"Frames: {rows.shape[0]}", f"Frame Time: {1.0 / clip_y.fps:.12g}"]
    buf = io.StringIO()
    np.savetxt(buf, rows, fmt=f"%.{_DECIMALS}f", delimiter=" ")
    return "\n".join(lines) + "\n" + buf.getvalue()


def write_bvh(path: str | os.PathLike[str], rig: Rig, clip: MotionClip) -> Path:
    """Write ``clip`` on ``rig`` as a BVH file, atomically (conventions: module docstring).

    Args:
        path: the ``.bvh`` file to write; its folder must exist.
        rig: the shaped skeleton (:func:`wbcap.export.rig.build_rig` of the clip's betas).
        clip: the motion, any world (written y up).

    Returns:
        ``Path(path)``.

    Raises:
        InputError: the folder of ``path`` does not exist.
        ValueError: as :func:`bvh_text`.
    """
    from wbcap.atomic import atomic_write_text, final_path

    out = Path(path)
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist; create it or choose another output path")
    text = bvh_text(rig, clip)
    atomic_write_text(out, text)
    logger.info("wrote %s (%d frame%s at %g fps)", final_path(out), len(clip), "" if len(clip) == 1 else "s", clip.fps)
    return out
