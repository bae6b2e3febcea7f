"""The hand-only model of the Hand4Whole recipe (stage ``wbcap train hand``).

Names follow the public hand-only (Pose2Pose, ``parts='hand'``) code, so its checkpoints carry
``module.backbone.*``, ``module.position_net.*`` and ``module.rotation_net.*`` (the shared
reference ``hand4whole_hand_checkpoint_keys.json``): a ResNet backbone on 256x256 hand crops, a
PositionNet for 21 MANO joints (8x8x8 heatmaps) and a RotationNet regressing MANO's root (6D),
15 finger rotations (6D), 10 shape coefficients and a camera. Only its backbone is carried into
the whole-body model by ``wbcap train merge``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wbcap.model.hand4whole import PositionNet
from wbcap.model.layers import make_conv_layers, make_linear_layers, sample_joint_features
from wbcap.model.resnet import ResNetBackbone

NUM_MANO_JOINTS = 21


class HandRotationNetMANO(nn.Module):
    """MANO root/finger rotations (6D), shape and camera from joint-sampled features."""

    def __init__(self, feat_dim: int) -> None:
        super().__init__()
        n = NUM_MANO_JOINTS * 515
        self.conv = make_conv_layers([feat_dim, 512], kernel=1, padding=0)
        self.root_pose_out = make_linear_layers([n, 6], relu_final=False)
        self.pose_out = make_linear_layers([n, 15 * 6], relu_final=False)
        self.shape_out = make_linear_layers([feat_dim, 10], relu_final=False)
        self.cam_out = make_linear_layers([feat_dim, 3], relu_final=False)

    def forward(self, feat: torch.Tensor, joint_img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = feat.shape[0]
        pooled = feat.mean((2, 3))
        sampled = torch.cat((sample_joint_features(self.conv(feat), joint_img[:, :, :2]), joint_img), 2).view(b, -1)
        return self.root_pose_out(sampled), self.pose_out(sampled), self.shape_out(pooled), self.cam_out(pooled)


@dataclass(frozen=True)
class HandOutput:
    """joint_img (B,21,3) hand heatmap cells; root_6d (B,6); pose_6d (B,90); shape (B,10); cam (B,3)."""

    joint_img: torch.Tensor
    root_6d: torch.Tensor
    pose_6d: torch.Tensor
    shape: torch.Tensor
    cam: torch.Tensor


class HandModel(nn.Module):
    """Hand-only regressor on (B, 3, H, W) RGB crops in [0, 1] (256x256 in the recipe: the
    ``input_hand_shape`` of :class:`~wbcap.config.ModelConfig`); ``hm_shape``: its joint heatmap
    cells (depth, H/32, W/32), the config's ``output_hand_hm_shape``; ``width``: the ResNet's
    (:class:`~wbcap.model.resnet.ResNetBackbone`), the config's ``backbone_width``."""

    def __init__(self, depth: int = 50, hm_shape: tuple[int, int, int] = (8, 8, 8), width: int = 64) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(depth, width)
        self.position_net = PositionNet(NUM_MANO_JOINTS, tuple(hm_shape), self.backbone.feat_dim)
        self.rotation_net = HandRotationNetMANO(self.backbone.feat_dim)

    def forward(self, img: torch.Tensor) -> HandOutput:
        feat = self.backbone(img)
        _, joint_img = self.position_net(feat)
        root, pose, shape, cam = self.rotation_net(feat, joint_img.detach())
        return HandOutput(joint_img, root, pose, shape, cam)
