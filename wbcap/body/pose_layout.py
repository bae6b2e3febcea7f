"""The SMPL-X full pose's layout: which joints each rotation field holds, and where.

The full pose (smplx's ``full_pose``, AMASS's ``poses``) is 55 joint rotations in the model's
joint order: ``global_orient`` (1), ``body_pose`` (21), ``jaw_pose``, ``leye_pose``,
``reye_pose`` (1 each), ``left_hand_pose``, ``right_hand_pose`` (15 each); as axis-angle it is
165 numbers a frame, 3 a joint (smplx ``body_models.py``, ``SMPLX.forward``'s concatenation).
Free of torch, so that file writers import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from types import MappingProxyType

__all__ = ["FULL_POSE_JOINTS", "POSE_JOINTS", "POSE_SLICES"]

#: The rotation fields in the model's joint order (the order of ``full_pose``), with their
#: joint counts.
POSE_JOINTS: Mapping[str, int] = MappingProxyType({
    "global_orient": 1,
    "body_pose": 21,
    "jaw_pose": 1,
    "leye_pose": 1,
    "reye_pose": 1,
    "left_hand_pose": 15,
    "right_hand_pose": 15,
})

#: Joints in the full pose: 55.
FULL_POSE_JOINTS: int = sum(POSE_JOINTS.values())

_ENDS = tuple(accumulate(3 * n for n in POSE_JOINTS.values()))

#: Each rotation field's columns in the axis-angle full pose, ``(B, 165)``: ``body_pose`` is
#: ``slice(3, 66)``, ``left_hand_pose`` ``slice(75, 120)``.
POSE_SLICES: Mapping[str, slice] = MappingProxyType({
    name: slice(end - 3 * n, end) for (name, n), end in zip(POSE_JOINTS.items(), _ENDS)
})
