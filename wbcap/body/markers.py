"""The 3D keypoints wbcap writes as motion-capture markers (OpenSim's TRC,
:mod:`wbcap.export.opensim_trc`; C3D, :mod:`wbcap.export.c3d_file`): one marker set, named as
biomechanics tools name these points.

31 markers: OpenPose's BODY_25 keypoints in OpenPose's order (doc/02_output.md), named as
Pose2Sim's marker sets name them (``MidHip`` is Pose2Sim's ``CHip``), then three points per hand
as Pose2Sim's COCO-WholeBody marker sets have them: ``RThumb``, ``RIndex``, ``RPinky`` (the
thumb's MCP joint, the index's and the little finger's knuckles: OpenPose hand points 2, 5, 17),
then the left ones. Every marker of Pose2Sim 0.10's ``Markers_Body25.xml`` and
``Markers_Coco133.xml`` is here with its name. Each is the SMPL-X point of that name that
:mod:`wbcap.export.openpose` projects: a joint of SMPL-X's skeleton (shoulders, hips, knees,
..., ``Neck`` its ``neck`` joint, ``CHip`` its pelvis) or one of its vertex joints (nose, eyes,
ears, toes, heels). They are joint centres and surface points, not the skin markers of a lab's
marker protocol.
"""

from __future__ import annotations

from wbcap.body.joints import SMPLX_OUTPUT_JOINT_NAMES

__all__ = ["MARKER_JOINTS", "MARKER_NAMES", "marker_descriptions"]

#: The markers, name (Pose2Sim's) and SMPL-X output joint (:data:`SMPLX_OUTPUT_JOINT_NAMES`):
#: BODY_25 in OpenPose's order, then the hands' three points each.
_MARKERS: tuple[tuple[str, str], ...] = (
    ("Nose", "Nose"), ("Neck", "Neck"),
    ("RShoulder", "R_Shoulder"), ("RElbow", "R_Elbow"), ("RWrist", "R_Wrist"),
    ("LShoulder", "L_Shoulder"), ("LElbow", "L_Elbow"), ("LWrist", "L_Wrist"),
    ("CHip", "Pelvis"),
    ("RHip", "R_Hip"), ("RKnee", "R_Knee"), ("RAnkle", "R_Ankle"),
    ("LHip", "L_Hip"), ("LKnee", "L_Knee"), ("LAnkle", "L_Ankle"),
    ("REye", "R_Eye"), ("LEye", "L_Eye"), ("REar", "R_Ear"), ("LEar", "L_Ear"),
    ("LBigToe", "L_Big_toe"), ("LSmallToe", "L_Small_toe"), ("LHeel", "L_Heel"),
    ("RBigToe", "R_Big_toe"), ("RSmallToe", "R_Small_toe"), ("RHeel", "R_Heel"),
    ("RThumb", "R_Thumb_2"), ("RIndex", "R_Index_1"), ("RPinky", "R_Pinky_1"),
    ("LThumb", "L_Thumb_2"), ("LIndex", "L_Index_1"), ("LPinky", "L_Pinky_1"),
)
#: The markers' names, in the file's order.
MARKER_NAMES: tuple[str, ...] = tuple(name for name, _ in _MARKERS)
#: Each marker's index into SMPL-X's 144 output joints (``smplx_rows(..., joints=True)``).
MARKER_JOINTS: tuple[int, ...] = tuple(SMPLX_OUTPUT_JOINT_NAMES.index(joint) for _, joint in _MARKERS)


def marker_descriptions() -> tuple[str, ...]:
    """Each marker's SMPL-X point, in :data:`MARKER_NAMES`' order (``"SMPL-X R_Knee"``): the
    C3D file's ``POINT:DESCRIPTIONS``."""
    return tuple(f"SMPL-X {joint}" for _, joint in _MARKERS)
