"""Losses of the hand-only stage (``wbcap train hand``) on FreiHAND's hand sample schema.

Terms, each an L1 mean as upstream's hand model: ``joint_img`` (2.5D heatmap coordinates of the
21 joints, depth only for 3D samples, truncated joints masked), ``mano_pose`` (48 axis-angle
values: root + 15 finger joints, from the 6D outputs) and ``mano_shape``. Upstream's hand model
adds ``joint_cam``/``joint_proj`` terms computed through the MANO layer; wbcap does not ship or
require MANO, so those two terms are not included (the stage's purpose in the recipe is the hand
backbone that ``wbcap train merge`` carries into the whole-body model).
"""

from __future__ import annotations

import torch

from wbcap.body.rotations import rot6d_to_axis_angle_f32
from wbcap.model.hand_model import HandOutput
from wbcap.train.losses import coord_loss, param_loss

HAND_LOSS_NAMES = ("joint_img", "mano_pose", "mano_shape")

#: Hand-model parameters no term above reaches: the camera head (``HandOutput.cam``) is supervised
#: upstream only through ``joint_cam``/``joint_proj``, which need MANO. The hand stage freezes
#: them (``requires_grad=False``; they keep their initial values in the checkpoints), so
#: multi-process training has no unused parameters (DistributedDataParallel with
#: ``find_unused_parameters=False`` fails on the second step otherwise).
HAND_UNSUPERVISED_MODULES = ("rotation_net.cam_out",)


def hand_pose_axis_angle(out: HandOutput) -> torch.Tensor:
    """(B, 48) float32 axis-angle MANO pose (root, then 15 finger joints) from the 6D outputs
    (converted in float32 with autocast off, as the whole-body model does)."""
    b = out.root_6d.shape[0]
    six = torch.cat((out.root_6d.reshape(b, 1, 6), out.pose_6d.reshape(b, 15, 6)), 1)
    return rot6d_to_axis_angle_f32(six).reshape(b, 48)


def hand_losses(out: HandOutput, targets: dict, meta_info: dict) -> dict[str, torch.Tensor]:
    """Scalar losses (means) by name; see the module docstring."""
    pose = hand_pose_axis_angle(out).float()
    pose_valid = meta_info["mano_pose_valid"] * meta_info["mano_param_valid"][:, None]
    shape_valid = (meta_info["mano_shape_valid"] * meta_info["mano_param_valid"])[:, None]
    return {
        "joint_img": coord_loss(out.joint_img.float(), targets["joint_img"], meta_info["joint_trunc"], meta_info["is_3D"]).mean(),
        "mano_pose": param_loss(pose, targets["mano_pose"], pose_valid).mean(),
        "mano_shape": param_loss(out.shape.float(), targets["mano_shape"], shape_valid).mean(),
    }
