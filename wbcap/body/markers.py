"""The 3D keypoints wbcap writes as motion-capture markers (OpenSim's TRC,
:mod:`wbcap.export.opensim_trc`; C3D, :mod:`wbcap.export.c3d_file`): one marker set, named as
biomechanics tools name these points.

32 markers (:data:`MARKER_NAMES`): OpenPose's BODY_25 keypoints in OpenPose's order
(doc/02_output.md), named as Pose2Sim's marker sets name them (``MidHip`` is Pose2Sim's
``CHip``); three points per hand as Pose2Sim's COCO-WholeBody marker sets have them: ``RThumb``,
``RIndex``, ``RPinky`` (the thumb's MCP joint, the index's and the little finger's knuckles:
OpenPose hand points 2, 5, 17), then the left ones; and ``Hip``, the point ``CHip`` is, under
the name Pose2Sim's HALPE_26 and COCO sets and its marker augmentation use. Every marker of
Pose2Sim 0.10's ``Markers_Body25.xml`` and ``Markers_Coco133.xml`` is here with its name.

Each is SMPL-X's point of that name (:data:`wbcap.body.joints.SMPLX_OUTPUT_JOINT_NAMES`): a
joint of its skeleton (shoulders, elbows, wrists, hips, knees, ankles, finger joints) or one of
its vertex joints (nose, eyes, ears, toes, heels), except ``Neck``, the middle of the shoulders,
and ``CHip``/``Hip``, the middle of the hips, as OpenPose's keypoints of those names are and
Pose2Sim's models place them (SMPL-X's own neck and pelvis joints lie 5 and 9 cm higher: the
largest inverse-kinematics residual of Pose2Sim's BODY_25 model in a biomechanics trial, 6 cm,
was SMPL-X's pelvis). They are joint centres and surface points, not the skin markers of a
lab's marker protocol.
"""

from __future__ import annotations

import numpy as np

from wbcap.body.joints import SMPLX_OUTPUT_JOINT_NAMES

__all__ = ["MARKER_NAMES", "MARKER_POINTS", "marker_descriptions", "marker_positions"]

#: The markers: name (Pose2Sim's) and the SMPL-X output joints (:data:`SMPLX_OUTPUT_JOINT_NAMES`)
#: whose mean it is: BODY_25 in OpenPose's order, the hands' three points each, ``Hip``.
_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Nose", ("Nose",)), ("Neck", ("R_Shoulder", "L_Shoulder")),
    ("RShoulder", ("R_Shoulder",)), ("RElbow", ("R_Elbow",)), ("RWrist", ("R_Wrist",)),
    ("LShoulder", ("L_Shoulder",)), ("LElbow", ("L_Elbow",)), ("LWrist", ("L_Wrist",)),
    ("CHip", ("R_Hip", "L_Hip")),
    ("RHip", ("R_Hip",)), ("RKnee", ("R_Knee",)), ("RAnkle", ("R_Ankle",)),
    ("LHip", ("L_Hip",)), ("LKnee", ("L_Knee",)), ("LAnkle", ("L_Ankle",)),
    ("REye", ("R_Eye",)), ("LEye", ("L_Eye",)), ("REar", ("R_Ear",)), ("LEar", ("L_Ear",)),
    ("LBigToe", ("L_Big_toe",)), ("LSmallToe", ("L_Small_toe",)), ("LHeel", ("L_Heel",)),
    ("RBigToe", ("R_Big_toe",)), ("RSmallToe", ("R_Small_toe",)), ("RHeel", ("R_Heel",)),
    ("RThumb", ("R_Thumb_2",)), ("RIndex", ("R_Index_1",)), ("RPinky", ("R_Pinky_1",)),
    ("LThumb", ("L_Thumb_2",)), ("LIndex", ("L_Index_1",)), ("LPinky", ("L_Pinky_1",)),
    ("Hip", ("R_Hip", "L_Hip")),
)
#: The markers' names, in the files' order.
MARKER_NAMES: tuple[str, ...] = tuple(name for name, _ in _MARKERS)
#: Each marker's SMPL-X output joints (indices into the 144 of ``smplx_rows(..., joints=True)``),
#: whose mean it is.
MARKER_POINTS: tuple[tuple[int, ...], ...] = tuple(
    tuple(SMPLX_OUTPUT_JOINT_NAMES.index(joint) for joint in joints) for _, joints in _MARKERS)


def marker_positions(joints: np.ndarray) -> np.ndarray:
    """The markers of SMPL-X's output joints.

    Args:
        joints: ``(..., 144, 3)`` SMPL-X's output joints (``smplx``'s ``joints`` with the face
            contour: :data:`wbcap.body.joints.SMPLX_OUTPUT_JOINT_NAMES`), any units and frame.

    Returns:
        ``(..., len(MARKER_NAMES), 3)`` float64, the same units and frame.
    """
    joints = np.asarray(joints, np.float64)
    return np.stack([joints[..., list(ids), :].mean(-2) for ids in MARKER_POINTS], -2)


def marker_descriptions() -> tuple[str, ...]:
    """Each marker's SMPL-X point, in :data:`MARKER_NAMES`' order (``"SMPL-X R_Knee"``,
    ``"SMPL-X mean of R_Hip, L_Hip"``): the C3D file's ``POINT:DESCRIPTIONS``."""
    return tuple(f"SMPL-X {joints[0]}" if len(joints) == 1 else f"SMPL-X mean of {', '.join(joints)}"
                 for _, joints in _MARKERS)
