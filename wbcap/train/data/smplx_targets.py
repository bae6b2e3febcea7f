"""SMPL-X pseudo-ground-truth parameters -> the network's training targets (upstream Hand4Whole's
``common/utils/preprocessing.py:process_human_model_output``, SMPL-X branch), for the datasets
that carry NeuralAnnot SMPL-X fits (COCO-WholeBody, Human3.6M)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from wbcap.body import joints as J
from wbcap.body.smplx_layer import SMPLXLayer, joints137
from wbcap.train.data.common import (
    BODY_3D_SIZE,
    FACE_3D_SIZE,
    HAND_3D_SIZE,
    INPUT_IMG_SHAPE,
    OUTPUT_HM_SHAPE,
    Augmentation,
    cam2pixel,
    depth_to_hm,
    flip_smplx_pose,
    in_volume,
    rot_aug_matrix,
    rotate_root_pose,
    to_heatmap,
)

__all__ = ["empty_smplx_targets", "process_smplx_output"]


def _param(param: Mapping[str, Any], key: str, size: int) -> np.ndarray:
    value = np.asarray(param[key], dtype=np.float32).reshape(-1)
    if value.size != size:
        raise ValueError(f"SMPL-X parameter {key!r} has {value.size} values, expected {size}")
    return value


# Kept in one piece to be read step by step against upstream Hand4Whole's
# common/utils/preprocessing.py:process_human_model_output (SMPL-X branch).
def process_smplx_output(
    param: Mapping[str, Any],
    cam_param: Mapping[str, Any],
    aug: Augmentation,
    img_shape: tuple[int, int],
    img2bb_trans: np.ndarray,
    body_layer: SMPLXLayer,
    input_shape: tuple[int, int] = INPUT_IMG_SHAPE,
    hm_shape: tuple[int, int, int] = OUTPUT_HM_SHAPE,
) -> dict[str, Any]:
    """Upstream ``process_human_model_output(..., 'smplx')``: pseudo-GT parameters -> targets.

    Args:
        param: NeuralAnnot parameters: ``root_pose`` (3), ``body_pose`` (63), ``shape`` (10),
            ``trans`` (3, m); optional ``lhand_pose``/``rhand_pose`` (45, used when
            ``lhand_valid``/``rhand_valid`` is true), ``jaw_pose`` (3) + ``expr`` (10) (used when
            ``face_valid`` is true). A missing flag counts as false. ``gender`` is ignored: the
            given layer is used for everyone.
        cam_param: ``focal`` (2), ``princpt`` (2) in pixels; optional world->camera ``R`` (3x3)
            and ``t`` (3, **metres**): the root rotation is pre-multiplied by ``R`` and the body is
            moved so that its pelvis lands at ``R @ pelvis + t``.
        aug: the drawn augmentation; img_shape: original (height, width); img2bb_trans: crop.
        body_layer: the SMPL-X layer (CPU in data workers).

    Returns:
        dict with ``joint_img`` (137, 3) hm cells, ``joint_cam`` (137, 3) part-relative m,
        ``joint_trunc`` (137, 1), ``joint_valid`` (137,), ``pose`` (159,), ``pose_valid`` (53,),
        ``shape`` (10,), ``expr`` (10,), ``expr_valid`` (bool), ``mesh_cam`` (V, 3) metres in the
        camera, before augmentation.
    """
    pose_valid = np.ones(J.ORIG_JOINT_NUM, dtype=np.float32)
    coord_valid = np.ones(J.JOINT_NUM, dtype=np.float32)
    root_pose = _param(param, "root_pose", 3)
    body_pose = _param(param, "body_pose", 63)
    shape = _param(param, "shape", 10)
    trans = _param(param, "trans", 3)
    hand_poses = {}
    for part in ("lhand", "rhand"):  # a hand without its *_valid flag counts as invalid
        if f"{part}_pose" in param and param.get(f"{part}_valid", False):
            hand_poses[part] = _param(param, f"{part}_pose", 45)
        else:
            hand_poses[part] = np.zeros(45, dtype=np.float32)
            pose_valid[list(J.ORIG_JOINT_PART[part])] = 0
            coord_valid[list(J.JOINT_PART[part])] = 0
    lhand_pose, rhand_pose = hand_poses["lhand"], hand_poses["rhand"]
    if "jaw_pose" in param and "expr" in param and param.get("face_valid", False):
        jaw_pose = _param(param, "jaw_pose", 3)
        expr = _param(param, "expr", 10)
        expr_valid = True
    else:
        jaw_pose = np.zeros(3, dtype=np.float32)
        expr = np.zeros(10, dtype=np.float32)
        pose_valid[list(J.ORIG_JOINT_PART["face"])] = 0
        coord_valid[list(J.JOINT_PART["face"])] = 0
        expr_valid = False

    R = None if cam_param.get("R") is None else np.asarray(cam_param["R"], dtype=np.float32).reshape(3, 3)
    if R is not None:
        root_pose = rotate_root_pose(root_pose, R)

    dtype, device = body_layer.v_template.dtype, body_layer.v_template.device

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(1, -1), dtype=dtype, device=device)

    with torch.no_grad():
        out = body_layer(
            betas=t(shape), global_orient=t(root_pose), body_pose=t(body_pose), left_hand_pose=t(lhand_pose),
            right_hand_pose=t(rhand_pose), jaw_pose=t(jaw_pose), expression=t(expr), transl=t(trans),
        )  # fmt: skip
    mesh_cam = out.vertices[0].detach().cpu().numpy().astype(np.float32)
    joint_cam = joints137(out)[0].detach().cpu().numpy().astype(np.float32)
    if R is not None and cam_param.get("t") is not None:
        tvec = np.asarray(cam_param["t"], dtype=np.float32).reshape(1, 3)
        root = joint_cam[J.ROOT_JOINT_IDX, None, :]
        offset = -root + root @ R.T + tvec
        joint_cam = joint_cam + offset
        mesh_cam = mesh_cam + offset

    pose = np.concatenate([root_pose, body_pose, lhand_pose, rhand_pose, jaw_pose]).reshape(J.ORIG_JOINT_NUM, 3)

    joint_img = cam2pixel(joint_cam, cam_param["focal"], cam_param["princpt"])
    joint_cam = joint_cam - joint_cam[J.ROOT_JOINT_IDX, None, :]
    lh, rh, face, body = (list(J.JOINT_PART[k]) for k in ("lhand", "rhand", "face", "body"))
    joint_cam[lh] -= joint_cam[J.LWRIST_IDX, None, :]
    joint_cam[rh] -= joint_cam[J.RWRIST_IDX, None, :]
    joint_cam[face] -= joint_cam[J.NECK_IDX, None, :]
    joint_img[body, 2] = depth_to_hm(joint_cam[body, 2], BODY_3D_SIZE, hm_shape[0])
    joint_img[lh, 2] = depth_to_hm(joint_cam[lh, 2], HAND_3D_SIZE, hm_shape[0])
    joint_img[rh, 2] = depth_to_hm(joint_cam[rh, 2], HAND_3D_SIZE, hm_shape[0])
    joint_img[face, 2] = depth_to_hm(joint_cam[face, 2], FACE_3D_SIZE, hm_shape[0])

    if aug.flip:
        joint_cam[:, 0] = -joint_cam[:, 0]
        joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
        for a, b in J.FLIP_PAIRS:
            for arr in (joint_cam, joint_img, coord_valid):
                arr[[a, b]] = arr[[b, a]]
    joint_img[:, :2] = to_heatmap(joint_img[:, :2], img2bb_trans, input_shape, hm_shape)
    joint_trunc = in_volume(joint_img, hm_shape)

    rot_mat = rot_aug_matrix(aug.rot)
    joint_cam = joint_cam @ rot_mat.T
    if aug.flip:
        pose, pose_valid = flip_smplx_pose(pose, pose_valid)
    pose[J.ORIG_ROOT_JOINT_IDX] = rotate_root_pose(pose[J.ORIG_ROOT_JOINT_IDX], rot_mat)
    if np.any(np.abs(shape) > 3):
        shape = np.zeros_like(shape)

    return {
        "joint_img": joint_img.astype(np.float32),
        "joint_cam": joint_cam.astype(np.float32),
        "joint_trunc": joint_trunc,
        "joint_valid": coord_valid,
        "pose": pose.reshape(-1).astype(np.float32),
        "pose_valid": pose_valid,
        "shape": shape.astype(np.float32),
        "expr": expr.astype(np.float32),
        "expr_valid": expr_valid,
        "mesh_cam": mesh_cam,
    }


def empty_smplx_targets() -> dict[str, Any]:
    """All-zero, all-invalid SMPL-X targets (a sample without a pseudo-GT fit)."""
    return {
        "joint_img": np.zeros((J.JOINT_NUM, 3), np.float32),
        "joint_cam": np.zeros((J.JOINT_NUM, 3), np.float32),
        "joint_trunc": np.zeros((J.JOINT_NUM, 1), np.float32),
        "joint_valid": np.zeros(J.JOINT_NUM, np.float32),
        "pose": np.zeros(J.ORIG_JOINT_NUM * 3, np.float32),
        "pose_valid": np.zeros(J.ORIG_JOINT_NUM, np.float32),
        "shape": np.zeros(10, np.float32),
        "expr": np.zeros(10, np.float32),
        "expr_valid": False,
        "mesh_cam": None,
    }
