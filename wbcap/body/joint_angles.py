"""SMPL-X's joint rotations as named joint angles in degrees (``--export angles``): what a
biomechanics or gesture study plots, without rotation algebra.

Every angle is named after the movement its positive values make (``left_knee_flexion``,
``head_yaw_left``), so no sign convention needs looking up. Three kinds of column
(:func:`angle_names`, in that order):

* **Global** (``pelvis_*``, ``head_*``): the pelvis's and the head's orientation relative to a
  person standing upright and facing the camera: ``yaw_left`` (turned to the person's left,
  about the vertical), then ``pitch_up`` (face raised), then ``roll_left`` (the top tilted to the
  person's left), as intrinsic rotations in that order. "Facing the camera" is the camera's
  axes (the AMASS file's ``-y``: :mod:`wbcap.export.amass`), not the line of sight: a person off
  the image's centre looking straight into the lens has a few degrees of yaw. With
  ``wbcap run --world`` "upright" is the ground's vertical, else the camera's up.
* **Joint angles**: each of SMPL-X's body joints, the jaw and the 30 finger joints relative to its
  parent (SMPL-X's kinematic tree: ``left_knee`` is the shank relative to the thigh), three
  angles each, as intrinsic rotations in the order listed (a Cardan sequence, as Grood and
  Suntay's joint coordinate system: the first about the parent's axis, the last about the
  segment's own long axis), from SMPL-X's rest pose, where all are 0:

  - legs: ``hip``, ``knee``: ``flexion`` (the segment forward for the hip, back for the knee),
    ``adduction`` (towards the midline), ``internal_rotation``; ``ankle``, ``foot`` (SMPL-X's
    ``foot`` joint is at the ball of the foot: the toes): ``dorsiflexion`` (toes up),
    ``inversion`` (the sole turned inwards), ``adduction`` (toes inwards).
  - trunk and head: ``spine1``, ``spine2``, ``spine3``, ``neck``, ``head``: ``flexion`` (bent
    forwards), ``lateral_bend_left``, ``rotation_left`` (the front turned to the person's left).
  - arms, from SMPL-X's rest pose, a T pose with the palms down (not the anatomical position:
    a relaxed arm hanging at the side has ``shoulder_elevation`` near -90 less the collar's
    share): ``collar``: ``elevation`` (up), ``protraction`` (forwards), ``internal_rotation``;
    ``shoulder``: ``elevation`` (up from the horizontal), ``flexion`` (forwards),
    ``internal_rotation``; ``elbow``: ``flexion``, ``elevation`` (about the T pose's front axis,
    which no anatomical elbow turns about: small in practice), ``pronation``; ``wrist``:
    ``flexion`` (towards the palm), ``radial_deviation`` (towards the thumb), ``pronation``.
  - ``jaw``: ``opening``, ``lateral_left`` (the chin to the person's left), ``tilt_left``.
  - fingers (``index1`` ... ``thumb3``, SMPL-X's order, the knuckle out; 0 is the flat hand,
    ``flat_hand_mean``): ``flexion`` (towards the palm), ``radial_deviation`` (towards the
    thumb), ``pronation``, about the hand's axes in the flat hand (the thumb's too, which are
    not the thumb's own anatomical axes).

The eyes are not estimated, and have no columns. Angles are in degrees, each column unwrapped
over the rows (:func:`numpy.unwrap`: a person turning round goes on past 180 rather than
jumping to -180). A Cardan sequence has one singular pose, where its middle angle is ±90°
(gimbal lock: the first and last angles then share one rotation and may jump by 180°, and the
middle one folds back): the global angles' when a person lies face up or down, the shoulder's
when the arm points straight forwards or backwards from the collar, the hip's at 90° of
abduction (side splits, high side kicks), the others' far beyond what a joint does.

Axes: SMPL-X's rest frame, ``x`` the person's left, ``y`` up, ``z`` forwards (its face looks
along ``+z``); in the rest pose every joint's frame is that frame, so a joint's rotation relative
to its parent is an axis-angle in it (``smplx``'s ``batch_rodrigues`` of ``full_pose``). A
positive rotation about ``+x`` bends the knee, about ``-x`` flexes the hip; the left and right
sides mirror each other in ``x``, so a rotation about ``y`` or ``z`` changes sign between them
(an axial vector under the mirror) and one about ``x`` does not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from wbcap.body.pose_layout import FULL_POSE_JOINTS

__all__ = ["GLOBAL_SEGMENTS", "angle_names", "joint_angles"]


@dataclass(frozen=True)
class _Convention:
    """One joint's three angles: ``order``, scipy's intrinsic sequence of SMPL-X rest axes
    (``"XZY"``: about x, then the new z, then the newest y); ``movements``, each angle's name;
    ``left``, the sign that makes each angle its movement on the body's left side or midline
    (+1: a positive rotation about the axis; -1: about the negative axis)."""

    order: str
    movements: tuple[str, str, str]
    left: tuple[int, int, int]

    def signs(self, side: str) -> tuple[int, int, int]:
        """The signs on ``side`` (``"left"``, ``"right"`` or ``""`` for the midline): mirrored in x,
        a rotation about y or z turns the other way."""
        if side != "right":
            return self.left
        return tuple(s if axis == "X" else -s for s, axis in zip(self.left, self.order))  # type: ignore[return-value]


_LEG = _Convention("XZY", ("flexion", "adduction", "internal_rotation"), (-1, -1, -1))
_KNEE = _Convention("XZY", ("flexion", "adduction", "internal_rotation"), (1, -1, -1))
_FOOT = _Convention("XZY", ("dorsiflexion", "inversion", "adduction"), (-1, -1, -1))
_TRUNK = _Convention("XZY", ("flexion", "lateral_bend_left", "rotation_left"), (1, -1, 1))
_COLLAR = _Convention("ZYX", ("elevation", "protraction", "internal_rotation"), (1, -1, 1))
_SHOULDER = _Convention("ZYX", ("elevation", "flexion", "internal_rotation"), (1, -1, 1))
_ELBOW = _Convention("YZX", ("flexion", "elevation", "pronation"), (-1, 1, 1))
_HAND = _Convention("ZYX", ("flexion", "radial_deviation", "pronation"), (-1, -1, 1))
_JAW = _Convention("XYZ", ("opening", "lateral_left", "tilt_left"), (1, 1, -1))
#: The global angles: yaw about the vertical, then pitch, then roll.
_GLOBAL = _Convention("YXZ", ("yaw_left", "pitch_up", "roll_left"), (1, -1, -1))

_FINGERS = tuple(f"{finger}{k}" for finger in ("index", "middle", "pinky", "ring", "thumb") for k in (1, 2, 3))

#: The joints with angles: (SMPL-X joint index, name as ``smplx`` names it, convention), model order.
_JOINTS: tuple[tuple[int, str, _Convention], ...] = (
    (1, "left_hip", _LEG), (2, "right_hip", _LEG), (3, "spine1", _TRUNK), (4, "left_knee", _KNEE),
    (5, "right_knee", _KNEE), (6, "spine2", _TRUNK), (7, "left_ankle", _FOOT), (8, "right_ankle", _FOOT),
    (9, "spine3", _TRUNK), (10, "left_foot", _FOOT), (11, "right_foot", _FOOT), (12, "neck", _TRUNK),
    (13, "left_collar", _COLLAR), (14, "right_collar", _COLLAR), (15, "head", _TRUNK),
    (16, "left_shoulder", _SHOULDER), (17, "right_shoulder", _SHOULDER), (18, "left_elbow", _ELBOW),
    (19, "right_elbow", _ELBOW), (20, "left_wrist", _HAND), (21, "right_wrist", _HAND), (22, "jaw", _JAW),
    *((25 + k, f"left_{finger}", _HAND) for k, finger in enumerate(_FINGERS)),
    *((40 + k, f"right_{finger}", _HAND) for k, finger in enumerate(_FINGERS)),
)

#: The segments with global angles: (name, the SMPL-X joints whose rotations, root first, turn it).
GLOBAL_SEGMENTS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("pelvis", (0,)),
    ("head", (0, 3, 6, 9, 12, 15)),
)

#: A person standing upright facing the camera in the AMASS file's z-up frame (x the camera's
#: right, y forwards, z up): SMPL-X's x (the person's left) on the camera's right, its y (up) on
#: z, its face (+z) towards the camera (-y). A +90 degree turn about x.
_FACING_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _side(name: str) -> str:
    return "left" if name.startswith("left_") else "right" if name.startswith("right_") else ""


def angle_names() -> tuple[str, ...]:
    """The angles' names in :func:`joint_angles`'s column order: the global ones
    (``pelvis_yaw_left``, ..., ``head_roll_left``), then each joint's three (``left_hip_flexion``,
    ``left_hip_adduction``, ``left_hip_internal_rotation``, ...) in SMPL-X's joint order."""
    names = [f"{segment}_{m}" for segment, _ in GLOBAL_SEGMENTS for m in _GLOBAL.movements]
    names += [f"{joint}_{m}" for _, joint, convention in _JOINTS for m in convention.movements]
    return tuple(names)


def _euler(rotation, convention: _Convention, side: str) -> np.ndarray:
    """``(N, 3)`` degrees: ``rotation`` (a scipy ``Rotation`` of N) decomposed as ``convention``
    on ``side``."""
    with warnings.catch_warnings():  # (scipy's "Gimbal lock detected", each time: the module docstring says it)
        warnings.filterwarnings("ignore", "Gimbal lock", UserWarning)
        angles = rotation.as_euler(convention.order, degrees=True)
    return angles * np.asarray(convention.signs(side), np.float64)


def joint_angles(poses: np.ndarray) -> np.ndarray:
    """The named angles (module docstring) of each row of an AMASS file's poses.

    Args:
        poses: ``(T, 55, 3)`` or ``(T, 165)`` axis-angle, radians, SMPL-X's joint order, the hands
            absolute (``flat_hand_mean=True``, the AMASS npz's ``poses``), the root in the npz's
            z-up frame (:mod:`wbcap.export.amass`: x the camera's right, y forwards, z up).

    Returns:
        ``(T, len(angle_names()))`` float64 degrees, each column unwrapped over its finite rows
        (a joint's NaN rotation gives NaN in its own columns of that row only).

    Raises:
        ValueError: ``poses`` of another shape.
    """
    from scipy.spatial.transform import Rotation

    poses = np.asarray(poses, np.float64)
    if poses.shape[1:] not in ((3 * FULL_POSE_JOINTS,), (FULL_POSE_JOINTS, 3)):
        raise ValueError(f"joint_angles: poses of shape {poses.shape}; expected (T, 55, 3) or (T, 165)")
    rows = poses.shape[0]
    if rows == 0:
        return np.zeros((0, len(angle_names())))
    local = poses.reshape(rows, FULL_POSE_JOINTS, 3)
    columns: list[np.ndarray] = []
    to_facing = Rotation.from_matrix(_FACING_CAMERA).inv()
    for _, chain in GLOBAL_SEGMENTS:
        turned = Rotation.from_rotvec(local[:, chain[0]])
        for j in chain[1:]:  # (each joint's parent is the one before it: SMPL-X's tree)
            turned = turned * Rotation.from_rotvec(local[:, j])
        columns.append(_euler(to_facing * turned, _GLOBAL, ""))
    for j, name, convention in _JOINTS:
        columns.append(_euler(Rotation.from_rotvec(local[:, j]), convention, _side(name)))
    angles = np.concatenate(columns, axis=1)
    for column in angles.T:  # (each over its finite rows: a NaN breaks no other row's unwrapping)
        finite = np.isfinite(column)
        column[finite] = np.degrees(np.unwrap(np.radians(column[finite])))
    return angles
