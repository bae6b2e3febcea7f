"""SMPL-X joint sets used by Hand4Whole, as immutable data.

Values follow upstream ``common/utils/human_models.py`` (class ``SMPLX``) of Hand4Whole
(Moon et al. 2022). Index conventions:

* ``SMPLX_JOINT_NAMES``: the 55 kinematic joints of the SMPL-X model (model order; the order of
  ``full_pose`` in axis-angle, ``(B, 55*3)``).
* ``SMPLX_OUTPUT_JOINT_NAMES``: the 144 joints the SMPL-X layer outputs with
  ``use_face_contour=True``: 55 joints + 21 vertex joints (nose, eyes, ears, feet, finger tips) +
  51 face landmarks + 17 face-contour landmarks.
* ``ORIG_*``: the 53-joint "original" set whose rotations Hand4Whole regresses
  (22 body + 15 left hand + 15 right hand + jaw).
* ``JOINT_*``: the 137-joint supervision set; ``JOINT_IDX`` indexes the 144 output joints.
* ``POS_*``: the 65-joint PositionNet set (= the first 65 joints of the 137 set).
* ``HAND_21``: each hand's 21 keypoints of the 137 set in OpenPose's order.

Mappings are ``types.MappingProxyType`` (read-only) and index sets are ``range`` or ``tuple``.
"""

from __future__ import annotations

from types import MappingProxyType

import torch

from wbcap.body.pose_layout import FULL_POSE_JOINTS

__all__ = [
    "FLIP_PAIRS",
    "HAND_21",
    "JOINT_IDX",
    "JOINT_NAMES",
    "JOINT_NUM",
    "JOINT_PART",
    "J_REGRESSOR_IDX",
    "LWRIST_IDX",
    "L_MCP",
    "NECK_IDX",
    "ORIG_FLIP_PAIRS",
    "ORIG_JOINT_NAMES",
    "ORIG_JOINT_NUM",
    "ORIG_JOINT_PART",
    "ORIG_ROOT_JOINT_IDX",
    "ORIG_TO_SMPLX_IDX",
    "POS_JOINT_NAMES",
    "POS_JOINT_NUM",
    "POS_JOINT_PART",
    "POS_TO_JOINT_IDX",
    "ROOT_JOINT_IDX",
    "RWRIST_IDX",
    "R_MCP",
    "SMPLX_ANKLES",
    "SMPLX_BODY_JOINTS",
    "SMPLX_FEET",
    "SMPLX_FOOT_POINTS",
    "SMPLX_HIPS",
    "SMPLX_JOINT_NAMES",
    "SMPLX_JOINT_NUM",
    "SMPLX_KNEES",
    "SMPLX_NECK",
    "SMPLX_OUTPUT_JOINT_NAMES",
    "SMPLX_OUTPUT_JOINT_NUM",
    "SMPLX_PARENTS",
    "SMPLX_PELVIS",
    "SMPLX_SHOULDERS",
    "reduce_joint_set",
]

# --------------------------------------------------------------------------------------------
# The 55 SMPL-X model joints (model order).
# --------------------------------------------------------------------------------------------
SMPLX_JOINT_NUM = FULL_POSE_JOINTS  # 55
SMPLX_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine_1", "L_Knee", "R_Knee", "Spine_2", "L_Ankle", "R_Ankle",
    "Spine_3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
    "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist",  # 0..21 body
    "Jaw", "L_Eyeball", "R_Eyeball",  # 22..24 face
    "L_Index_1", "L_Index_2", "L_Index_3", "L_Middle_1", "L_Middle_2", "L_Middle_3",
    "L_Pinky_1", "L_Pinky_2", "L_Pinky_3", "L_Ring_1", "L_Ring_2", "L_Ring_3",
    "L_Thumb_1", "L_Thumb_2", "L_Thumb_3",  # 25..39 left hand
    "R_Index_1", "R_Index_2", "R_Index_3", "R_Middle_1", "R_Middle_2", "R_Middle_3",
    "R_Pinky_1", "R_Pinky_2", "R_Pinky_3", "R_Ring_1", "R_Ring_2", "R_Ring_3",
    "R_Thumb_1", "R_Thumb_2", "R_Thumb_3",  # 40..54 right hand
)  # fmt: skip

# Parent of each of the 55 joints in the real SMPL-X kinematic tree (-1 for the root).
SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

# Model joints used directly by Hand4Whole (indices into the 55 / 144 joints).
J_REGRESSOR_IDX: MappingProxyType[str, int] = MappingProxyType(
    {"pelvis": 0, "lwrist": 20, "rwrist": 21, "neck": 12}
)

# The 144 joints of the layer output with use_face_contour=True.
SMPLX_OUTPUT_JOINT_NUM = 144
SMPLX_OUTPUT_JOINT_NAMES: tuple[str, ...] = (
    SMPLX_JOINT_NAMES
    + ("Nose", "R_Eye", "L_Eye", "R_Ear", "L_Ear")  # 55..59
    + ("L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")  # 60..65
    + ("L_Thumb_4", "L_Index_4", "L_Middle_4", "L_Ring_4", "L_Pinky_4")  # 66..70
    + ("R_Thumb_4", "R_Index_4", "R_Middle_4", "R_Ring_4", "R_Pinky_4")  # 71..75
    + tuple(f"Landmark_{i}" for i in range(1, 52))  # 76..126 static face landmarks
    + tuple(f"Contour_{i}" for i in range(1, 18))  # 127..143 dynamic face contour
)


def _sides(part: str) -> tuple[int, int]:
    """``(left, right)`` indices of ``L_<part>``, ``R_<part>`` among the 144 output joints."""
    return SMPLX_OUTPUT_JOINT_NAMES.index(f"L_{part}"), SMPLX_OUTPUT_JOINT_NAMES.index(f"R_{part}")


# Named joints of the 55 model joints (the first 55 of the 144 output joints), looked up by name
# so that they cannot drift from the tables above; sided joints as (left, right) pairs.
SMPLX_PELVIS: int = SMPLX_JOINT_NAMES.index("Pelvis")  # 0, the root
SMPLX_NECK: int = SMPLX_JOINT_NAMES.index("Neck")  # 12
SMPLX_HIPS: tuple[int, int] = _sides("Hip")  # (1, 2)
SMPLX_KNEES: tuple[int, int] = _sides("Knee")  # (4, 5)
SMPLX_ANKLES: tuple[int, int] = _sides("Ankle")  # (7, 8)
SMPLX_FEET: tuple[int, int] = _sides("Foot")  # (10, 11)
SMPLX_SHOULDERS: tuple[int, int] = _sides("Shoulder")  # (16, 17)
# The 22 body joints, pelvis to the wrists (0..21): the joints the world metrics score (WHAM's).
SMPLX_BODY_JOINTS: range = range(SMPLX_JOINT_NAMES.index("R_Wrist") + 1)
# The toe and heel points among the 144 output joints (vertex joints): left big toe, small toe,
# heel, then the right ones (60..65).
SMPLX_FOOT_POINTS: tuple[int, ...] = tuple(
    SMPLX_OUTPUT_JOINT_NAMES.index(f"{side}_{point}") for side in "LR" for point in ("Big_toe", "Small_toe", "Heel")
)

# --------------------------------------------------------------------------------------------
# Original SMPL-X joint set (53): the rotations Hand4Whole regresses.
# --------------------------------------------------------------------------------------------
ORIG_JOINT_NUM = 53  # 22 body + 30 hand + 1 jaw
ORIG_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine_1", "L_Knee", "R_Knee", "Spine_2", "L_Ankle", "R_Ankle",
    "Spine_3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head", "L_Shoulder",
    "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist",  # body joints
    "L_Index_1", "L_Index_2", "L_Index_3", "L_Middle_1", "L_Middle_2", "L_Middle_3",
    "L_Pinky_1", "L_Pinky_2", "L_Pinky_3", "L_Ring_1", "L_Ring_2", "L_Ring_3",
    "L_Thumb_1", "L_Thumb_2", "L_Thumb_3",  # left hand joints
    "R_Index_1", "R_Index_2", "R_Index_3", "R_Middle_1", "R_Middle_2", "R_Middle_3",
    "R_Pinky_1", "R_Pinky_2", "R_Pinky_3", "R_Ring_1", "R_Ring_2", "R_Ring_3",
    "R_Thumb_1", "R_Thumb_2", "R_Thumb_3",  # right hand joints
    "Jaw",  # face jaw joint
)  # fmt: skip
ORIG_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21),  # body
    (22, 37), (23, 38), (24, 39), (25, 40), (26, 41), (27, 42), (28, 43), (29, 44), (30, 45),
    (31, 46), (32, 47), (33, 48), (34, 49), (35, 50), (36, 51),  # hands
)  # fmt: skip
ORIG_ROOT_JOINT_IDX = 0
ORIG_JOINT_PART: MappingProxyType[str, range] = MappingProxyType(
    {"body": range(0, 22), "lhand": range(22, 37), "rhand": range(37, 52), "face": range(52, 53)}
)
# Index of each original joint among the 55 SMPL-X model joints.
ORIG_TO_SMPLX_IDX: tuple[int, ...] = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39,
    40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54,
    22,
)  # fmt: skip

# --------------------------------------------------------------------------------------------
# Supervision joint set (137): 25 body + 40 hand + 72 face.
# --------------------------------------------------------------------------------------------
JOINT_NUM = 137
JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck", "L_Shoulder",
    "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Big_toe", "L_Small_toe",
    "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel", "L_Ear", "R_Ear", "L_Eye", "R_Eye",
    "Nose",  # body joints 0..24
    "L_Thumb_1", "L_Thumb_2", "L_Thumb_3", "L_Thumb_4", "L_Index_1", "L_Index_2", "L_Index_3",
    "L_Index_4", "L_Middle_1", "L_Middle_2", "L_Middle_3", "L_Middle_4", "L_Ring_1", "L_Ring_2",
    "L_Ring_3", "L_Ring_4", "L_Pinky_1", "L_Pinky_2", "L_Pinky_3",
    "L_Pinky_4",  # left hand 25..44
    "R_Thumb_1", "R_Thumb_2", "R_Thumb_3", "R_Thumb_4", "R_Index_1", "R_Index_2", "R_Index_3",
    "R_Index_4", "R_Middle_1", "R_Middle_2", "R_Middle_3", "R_Middle_4", "R_Ring_1", "R_Ring_2",
    "R_Ring_3", "R_Ring_4", "R_Pinky_1", "R_Pinky_2", "R_Pinky_3",
    "R_Pinky_4",  # right hand 45..64
) + tuple(f"Face_{i}" for i in range(1, 73))  # face keypoints 65..136  # fmt: skip
ROOT_JOINT_IDX = 0  # Pelvis
LWRIST_IDX = 12  # L_Wrist
RWRIST_IDX = 13  # R_Wrist
NECK_IDX = 7  # Neck
#: Each hand's 21 keypoints of :data:`JOINT_NAMES` in OpenPose's (and MediaPipe's) hand order:
#: the wrist, then thumb, index, middle, ring and pinky, each from its base to its tip (a gesture
#: researcher's trial looked for them in that order). Tuples, as this module's index sets: index
#: an array with them as a list, ``people[k].joints[list(HAND_21["left"])]`` (``(21, 3)``; NumPy
#: reads a tuple as one index per axis: an IndexError, a docs audit).
HAND_21: MappingProxyType[str, tuple[int, ...]] = MappingProxyType({
    side: (JOINT_NAMES.index(f"{s}_Wrist"),) + tuple(JOINT_NAMES.index(f"{s}_{finger}_{k}")
                                                    for finger in ("Thumb", "Index", "Middle", "Ring", "Pinky")
                                                    for k in range(1, 5))
    for side, s in (("left", "L"), ("right", "R"))
})
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (8, 9), (10, 11), (12, 13), (14, 17), (15, 18), (16, 19), (20, 21),
    (22, 23),  # body joints
    (25, 45), (26, 46), (27, 47), (28, 48), (29, 49), (30, 50), (31, 51), (32, 52), (33, 53),
    (34, 54), (35, 55), (36, 56), (37, 57), (38, 58), (39, 59), (40, 60), (41, 61), (42, 62),
    (43, 63), (44, 64),  # hand joints
    (67, 68),  # face eyeballs
    (69, 78), (70, 77), (71, 76), (72, 75), (73, 74),  # face eyebrow
    (83, 87), (84, 86),  # face below nose
    (88, 97), (89, 96), (90, 95), (91, 94), (92, 99), (93, 98),  # face eyes
    (100, 106), (101, 105), (102, 104), (107, 111), (108, 110),  # face mouth
    (112, 116), (113, 115), (117, 119),  # face lip
    (120, 136), (121, 135), (122, 134), (123, 133), (124, 132), (125, 131), (126, 130),
    (127, 129),  # face contours
)  # fmt: skip
# Index of each of the 137 joints among the 144 SMPL-X layer output joints.
JOINT_IDX: tuple[int, ...] = (
    0, 1, 2, 4, 5, 7, 8, 12, 16, 17, 18, 19, 20, 21, 60, 61, 62, 63, 64, 65, 59, 58, 57, 56, 55,
    37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70,  # left hand
    52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75,  # right hand
    22, 15,  # jaw, head
    57, 56,  # eyeballs
    76, 77, 78, 79, 80, 81, 82, 83, 84, 85,  # eyebrow
    86, 87, 88, 89,  # nose
    90, 91, 92, 93, 94,  # below nose
    95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106,  # eyes
    107,  # right mouth
    108, 109, 110, 111, 112,  # upper mouth
    113,  # left mouth
    114, 115, 116, 117, 118,  # lower mouth
    119,  # right lip
    120, 121, 122,  # upper lip
    123,  # left lip
    124, 125, 126,  # lower lip
    127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142,
    143,  # face contour
)  # fmt: skip
JOINT_PART: MappingProxyType[str, range] = MappingProxyType(
    {
        "body": range(0, 25),
        "lhand": range(25, 45),
        "rhand": range(45, 65),
        "hand": range(25, 65),
        "face": range(65, 137),
    }
)

# --------------------------------------------------------------------------------------------
# PositionNet joint set (65): 25 body + 40 hand; identical to the first 65 of the 137 set.
# --------------------------------------------------------------------------------------------
POS_JOINT_NUM = 65
POS_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES[:65]
POS_JOINT_PART: MappingProxyType[str, range] = MappingProxyType(
    {"body": range(0, 25), "lhand": range(25, 45), "rhand": range(45, 65), "hand": range(25, 65)}
)
# Index of each of the 65 PositionNet joints in the 137-joint set.
POS_TO_JOINT_IDX: tuple[int, ...] = tuple(range(65))
# MCP joints (Index_1, Middle_1, Ring_1, Pinky_1) relative to each hand's 20 joints.
L_MCP: tuple[int, ...] = (4, 8, 12, 16)
R_MCP: tuple[int, ...] = (4, 8, 12, 16)


def reduce_joint_set(joints: torch.Tensor) -> torch.Tensor:
    """Select the 65 PositionNet joints from the 137-joint supervision set.

    Args:
        joints: ``(B, 137, D)`` tensor (any dtype, e.g. ``D=3`` metres or ``D=2`` pixels).

    Returns:
        ``(B, 65, D)`` tensor, same dtype/device, in ``POS_JOINT_NAMES`` order.
    """
    if joints.ndim != 3 or joints.shape[1] != JOINT_NUM:
        raise ValueError(f"joints must have shape (B, {JOINT_NUM}, D), got {tuple(joints.shape)}")
    index = torch.as_tensor(POS_TO_JOINT_IDX, dtype=torch.long, device=joints.device)
    return joints.index_select(1, index)
