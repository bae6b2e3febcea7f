"""The Hand4Whole network (Moon et al., CVPRW 2022), written for wbcap.

Module and parameter names equal the released checkpoint's (``backbone``, ``body_position_net``,
``body_rotation_net``, ``box_net``, ``hand_roi_net``, ``hand_position_net``,
``hand_rotation_net``, ``face_roi_net``, ``face_regressor``) so ``snapshot_6.pth.tar`` loads
key for key after stripping DataParallel's ``module.`` prefix.

Data flow for a batch of B person crops ``img`` (B, 3, 512, 384), RGB in [0, 1]:

1. body input: ``img`` downsampled to 256x192 by nearest neighbour (``F.interpolate`` default,
   as upstream; :func:`nearest_downsample`), body ResNet -> ``img_feat`` (B, C, 8, 6);
2. body PositionNet: 25 joints as 3D heatmaps (8x8x6) + soft-argmax;
3. BoxNet: hand and face box centres (soft-argmax on an upsampled map) and sizes;
4. HandRoI: RoIAlign 256x256 crops of both hands from the 512x384 input, the left hand mirrored
   so one right-hand network serves both, hand ResNet -> (2B, C, 8, 8);
5. hand PositionNet (20 joints, 8x8x8 heatmaps) and hand RotationNet (15 joints, 6D);
6. FaceRoI (192x192) + ResNet -> FaceRegressor: 10 expression coefficients and jaw (6D);
7. body RotationNet: root + 21 body joints (6D), 10 shape coefficients, camera (3).

Rotations stay 6D inside; at the output they become rotation matrices (the left hand's mirrored
back), always in float32 with autocast off (also under the bf16/fp16 inference modes and bf16
training), as is the camera translation: an :class:`~wbcap.body.params.SMPLXParams` with
``rotation="matrix"``, which the SMPL-X layer skins without an axis-angle step (but for the
fingers, whose hand mean is added in axis-angle: :mod:`wbcap.body.params`). Axis-angle is
computed only where parameters leave wbcap (files, :class:`wbcap.pipeline.Person`) and for the
training loss on the poses. The forward has no data-dependent Python control flow and creates no
per-call constant tensors on the host, so on a GPU it runs without host-device synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from wbcap.body import joints as J
from wbcap.body.params import SMPLXParams
from wbcap.body.rotations import (
    float32_region,
    mirror_rotation_x,
    rot6d_to_matrix_f32,
)
from wbcap.camera import virtual_camera_translation
from wbcap.config import ModelConfig
from wbcap.crop.roi_align import roi_align, roi_input
from wbcap.model.layers import (
    expected_position_3d,
    make_conv_layers,
    make_deconv_layers,
    make_linear_layers,
    sample_conv_features,
    sample_joint_features,
    soft_argmax_2d,
    softmax_3d,
)
from wbcap.model.resnet import ResNetBackbone

NUM_BODY_POS_JOINTS = 25  # PositionNet body joints
NUM_HAND_POS_JOINTS = 20  # PositionNet joints per hand
NUM_BODY_ROT_JOINTS = 21  # SMPL-X body joints without the root
NUM_HAND_ROT_JOINTS = 15  # SMPL-X finger joints per hand
MCP_JOINTS = 4  # index/middle/ring/pinky MCP joints of each hand fed to the body RotationNet
# The MCP joints as a slice of the 20 hand PositionNet joints: slicing needs no index tensor (a
# Python-list index is copied to the device on every call).
_MCP = slice(J.L_MCP[0], J.L_MCP[-1] + 1, J.L_MCP[1] - J.L_MCP[0])
assert tuple(range(20))[_MCP] == tuple(J.L_MCP) == tuple(J.R_MCP), "MCP joints are no longer evenly spaced"


class PositionNet(nn.Module):
    """1x1 conv to per-joint 3D heatmaps, then soft-argmax.

    forward(feat (B, C, H, W)) -> (heatmap (B, J, D, H, W) softmax-normalised,
    coords (B, J, 3) as (x, y, z) in heatmap cells).
    """

    def __init__(self, joint_num: int, hm_shape: tuple[int, int, int], feat_dim: int) -> None:
        super().__init__()
        self.joint_num = joint_num
        self.hm_shape = hm_shape
        self.conv = make_conv_layers([feat_dim, joint_num * hm_shape[0]], kernel=1, padding=0, bnrelu_final=False)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, h, w = self.hm_shape
        hm = softmax_3d(self.conv(feat).reshape(-1, self.joint_num, d, h, w))  # (softmax once: soft_argmax_3d's)
        return hm, expected_position_3d(hm)


class BodyRotationNet(nn.Module):
    """Root and body joint rotations (6D), shape and camera from joint-sampled features."""

    def __init__(self, feat_dim: int, hand_feat_dim: int, num_betas: int) -> None:
        super().__init__()
        joint_num = NUM_BODY_POS_JOINTS + 2 * MCP_JOINTS
        self.body_conv = make_conv_layers([feat_dim, 512], kernel=1, padding=0)
        self.lhand_conv = make_conv_layers([hand_feat_dim, 512], kernel=1, padding=0)
        self.rhand_conv = make_conv_layers([hand_feat_dim, 512], kernel=1, padding=0)
        self.root_pose_out = make_linear_layers([joint_num * 515, 6], relu_final=False)
        self.body_pose_out = make_linear_layers([joint_num * 515, NUM_BODY_ROT_JOINTS * 6], relu_final=False)
        self.shape_out = make_linear_layers([feat_dim, num_betas], relu_final=False)
        self.cam_out = make_linear_layers([feat_dim, 3], relu_final=False)

    def forward(
        self,
        img_feat: torch.Tensor,
        joint_img: torch.Tensor,
        lhand_feat: torch.Tensor,
        lhand_joint_img: torch.Tensor,
        rhand_feat: torch.Tensor,
        rhand_joint_img: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """img_feat (B,C,8,6), joint_img (B,25,3) body heatmap cells; hand feats (B,C',8,8) and MCP
        joints (B,4,3) in hand heatmap cells. Returns root 6D (B,6), body 6D (B,126), shape
        (B,num_betas), camera parameters (B,3)."""
        b = img_feat.shape[0]
        pooled = img_feat.mean((2, 3))
        shape = self.shape_out(pooled)
        cam = self.cam_out(pooled)
        body = torch.cat((sample_joint_features(self.body_conv(img_feat), joint_img[:, :, :2]), joint_img), 2)
        lhand = torch.cat((sample_conv_features(self.lhand_conv, lhand_feat, lhand_joint_img[:, :, :2]),
                           lhand_joint_img), 2)
        rhand = torch.cat((sample_conv_features(self.rhand_conv, rhand_feat, rhand_joint_img[:, :, :2]),
                           rhand_joint_img), 2)
        feat = torch.cat((body, lhand, rhand), 1).view(b, -1)
        return self.root_pose_out(feat), self.body_pose_out(feat), shape, cam


class HandRotationNet(nn.Module):
    """Finger rotations (15 joints, 6D) from features sampled at the 20 hand joints."""

    def __init__(self, feat_dim: int) -> None:
        super().__init__()
        self.hand_conv = make_conv_layers([feat_dim, 512], kernel=1, padding=0)
        self.hand_pose_out = make_linear_layers([NUM_HAND_POS_JOINTS * 515, NUM_HAND_ROT_JOINTS * 6], relu_final=False)

    def forward(self, hand_feat: torch.Tensor, joint_img: torch.Tensor) -> torch.Tensor:
        """hand_feat (N,C,8,8), joint_img (N,20,3) hand heatmap cells -> (N, 90) 6D rotations."""
        n = hand_feat.shape[0]
        feat = torch.cat((sample_joint_features(self.hand_conv(hand_feat), joint_img[:, :, :2]), joint_img), 2)
        return self.hand_pose_out(feat.view(n, -1))


class FaceRegressor(nn.Module):
    """Expression coefficients and jaw rotation (6D) from the pooled face feature."""

    def __init__(self, feat_dim: int, num_expression: int) -> None:
        super().__init__()
        self.expr_out = make_linear_layers([feat_dim, num_expression], relu_final=False)
        self.jaw_pose_out = make_linear_layers([feat_dim, 6], relu_final=False)

    def forward(self, face_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """face_feat (B, C, h, w), the face backbone's features -> ``(expression (B, E), jaw
        (B, 6))``: SMPL-X expression coefficients, and the jaw rotation in upstream's 6D form
        (two matrix columns; :func:`wbcap.body.rotations.rot6d_to_matrix`)."""
        pooled = face_feat.mean((2, 3))
        return self.expr_out(pooled), self.jaw_pose_out(pooled)


class BoxNet(nn.Module):
    """Left hand, right hand and face boxes: centres by soft-argmax, sizes regressed.

    Returns centres (B,2) and sizes (B,2) in body heatmap cells (x in [0, 6), y in [0, 8)).
    """

    def __init__(self, feat_dim: int, hm_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.hm_shape = hm_shape
        self.deconv = make_deconv_layers([feat_dim + NUM_BODY_POS_JOINTS * hm_shape[0], 256, 256, 256])
        self.bbox_center = make_conv_layers([256, 3], kernel=1, padding=0, bnrelu_final=False)
        self.lhand_size = make_linear_layers([256, 256, 2], relu_final=False)
        self.rhand_size = make_linear_layers([256, 256, 2], relu_final=False)
        self.face_size = make_linear_layers([256, 256, 2], relu_final=False)

    def forward(self, img_feat: torch.Tensor, joint_hm: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """img_feat (B, C, h, w), the body backbone's features; joint_hm (B, J, d, h, w) or
        (B, J d, h, w), the body joints' heatmaps -> ``(lhand_center, lhand_size, rhand_center,
        rhand_size, face_center, face_size)``, each (B, 2) ``(x, y)`` / ``(w, h)`` in body heatmap
        cells (upstream ``BoxNet.forward``'s order)."""
        _, h, w = self.hm_shape
        joint_hm = joint_hm.reshape(joint_hm.shape[0], -1, h, w)
        feat = self.deconv(torch.cat((img_feat, joint_hm), 1))
        center = soft_argmax_2d(self.bbox_center(feat))  # (B, 3, 2) in upsampled (x8) cells
        sampled = sample_joint_features(feat, center.detach())  # (B, 3, 256)
        lhand_size = self.lhand_size(sampled[:, 0])
        rhand_size = self.rhand_size(sampled[:, 1])
        face_size = self.face_size(sampled[:, 2])
        center = center / 8
        return center[:, 0], lhand_size, center[:, 1], rhand_size, center[:, 2], face_size


def _batch_rois(boxes: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """(B,4) xyxy boxes in body-input pixels -> (B,5) [batch index, x1, y1, x2, y2] in input pixels.

    Scaled by Python numbers (no per-call constant tensor copied to the device).
    """
    idx = torch.arange(boxes.shape[0], dtype=boxes.dtype, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((idx, x1 * sx, y1 * sy, x2 * sx, y2 * sy), 1)


class HandRoI(nn.Module):
    """Crop both hands (256x256 RoIAlign, aligned=False) and run the hand backbone.

    The left-hand crop is mirrored so a right-hand network serves both. Output (2B, C, 8, 8):
    first B rows are the (mirrored) left hands, the next B the right hands.
    """

    def __init__(self, backbone: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self._sx = config.input_img_shape[1] / config.input_body_shape[1]
        self._sy = config.input_img_shape[0] / config.input_body_shape[0]
        self._out = tuple(config.input_hand_shape)
        self.roi_align = roi_align  # the kernel's semantics (torchvision's kernel on CUDA when it imports)

    def crops(self, img: torch.Tensor, lhand_bbox: torch.Tensor, rhand_bbox: torch.Tensor) -> torch.Tensor:
        """img (B,3,512,384); boxes (B,4) xyxy in body-input pixels -> (2B,3,256,256)."""
        b = img.shape[0]
        rois = torch.cat((_batch_rois(lhand_bbox, self._sx, self._sy), _batch_rois(rhand_bbox, self._sx, self._sy)))
        left = torch.arange(2 * b, device=img.device) < b  # mirrored by the crop itself: no flipped copy
        # one call for both hands: the left hands of images 0..B-1, then their right hands
        return self.roi_align(img, rois, self._out, aligned=False, mirror=left, image_blocks=2)

    def forward(self, img: torch.Tensor, lhand_bbox: torch.Tensor, rhand_bbox: torch.Tensor) -> torch.Tensor:
        """img (B, 3, H, W) the body crop (``input_img_shape``); boxes (B, 4) ``x1, y1, x2, y2``
        in body-input pixels (``input_body_shape``) -> the hand backbone's features (2B, C, h, w):
        the B (mirrored) left hands, then the B right hands."""
        return self.backbone(self.crops(img, lhand_bbox, rhand_bbox))


class FaceRoI(nn.Module):
    """Crop the face (192x192 RoIAlign, aligned=False) and run the face backbone."""

    def __init__(self, backbone: nn.Module, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self._sx = config.input_img_shape[1] / config.input_body_shape[1]
        self._sy = config.input_img_shape[0] / config.input_body_shape[0]
        self._out = tuple(config.input_face_shape)
        self.roi_align = roi_align  # see HandRoI

    def crops(self, img: torch.Tensor, face_bbox: torch.Tensor) -> torch.Tensor:
        """img (B, 3, H, W) the body crop; face_bbox (B, 4) ``x1, y1, x2, y2`` in body-input
        pixels -> the face crops (B, 3, *input_face_shape)."""
        return self.roi_align(img, _batch_rois(face_bbox, self._sx, self._sy), self._out, aligned=False, image_blocks=1)

    def forward(self, img: torch.Tensor, face_bbox: torch.Tensor) -> torch.Tensor:
        """:meth:`crops`, then the face backbone: features (B, C, h, w)."""
        return self.backbone(self.crops(img, face_bbox))


def nearest_downsample(img: torch.Tensor, size: tuple[int, int] | list[int]) -> torch.Tensor:
    """``F.interpolate(img, size)`` (nearest neighbour, upstream's body input), bit for bit.

    img (B, C, H, W) -> (B, C, h, w). For an integer factor (512x384 -> 256x192) nearest
    neighbour takes pixels (f * i, f * j): a strided view, which the backbone's own copy into
    its layout and dtype reads directly, instead of a resampling pass (~0.4 ms per crop on CPU).
    """
    h, w = img.shape[-2:]
    oh, ow = int(size[0]), int(size[1])
    if h % oh == 0 and w % ow == 0:
        return img[:, :, :: h // oh, :: w // ow]
    return F.interpolate(img, (oh, ow))


def restore_bbox(
    center: torch.Tensor, size: torch.Tensor, config: ModelConfig, aspect_ratio: float, extension: float
) -> torch.Tensor:
    """Box centre/size in body heatmap cells -> aspect-fixed, extended xyxy box in body-input pixels.

    center, size: (B, 2) as (x, y). Returns (B, 4) xyxy. Same arithmetic as upstream
    ``restore_bbox`` (written without in-place masking so it can be batched and traced).
    """
    sx = config.input_body_shape[1] / config.output_hm_shape[2]
    sy = config.input_body_shape[0] / config.output_hm_shape[1]
    x1 = (center[:, 0] - size[:, 0] / 2.0) * sx
    y1 = (center[:, 1] - size[:, 1] / 2.0) * sy
    x2 = (center[:, 0] + size[:, 0] / 2.0) * sx
    y2 = (center[:, 1] + size[:, 1] / 2.0) * sy
    w = x2 - x1
    h = y2 - y1
    cx = x1 + w / 2.0
    cy = y1 + h / 2.0
    wide = w > aspect_ratio * h
    tall = w < aspect_ratio * h
    h2 = torch.where(wide, w / aspect_ratio, h)
    w2 = torch.where(tall, h * aspect_ratio, w)
    w2 = w2 * extension
    h2 = h2 * extension
    bx = cx - w2 / 2.0
    by = cy - h2 / 2.0
    return torch.stack((bx, by, w2 + bx, h2 + by), 1)


@dataclass(frozen=True)
class NetworkOutput:
    """What the network predicts for B crops (everything batched first).

    ``smplx``: the SMPL-X parameters, :class:`~wbcap.body.params.SMPLXParams` with
    ``rotation="matrix"`` (float32): ``global_orient`` (B,1,3,3), ``body_pose`` (B,21,3,3),
    ``left_hand_pose``/``right_hand_pose`` (B,15,3,3) relative to the hand mean (the left hand
    mirrored back from the flipped crop), ``jaw_pose`` (B,1,3,3), eyes at rest (identity),
    ``betas`` (B,10), ``expression`` (B,10), ``transl`` (B,3): the camera translation in metres
    (Hand4Whole's ``cam_trans``; OpenCV axes of the virtual crop camera).

    The raw head outputs training and tests use: ``cam_param`` (B,3) before
    :meth:`Hand4Whole.camera_translation`; ``*_6d`` the 6D rotations as the heads output them
    (``hand_pose_6d`` (2B,90): the B mirrored left hands first, then the right hands).
    Box centres/sizes are in body heatmap cells; ``*_bbox`` are xyxy in body-input pixels
    (256x192); ``joint_img`` is (B, 65, 3) in body heatmap cells (x in [0,6), y in [0,8),
    z in [0,8)), hands mapped from their boxes; ``hand_joint_img`` (2B, 20, 3) in hand heatmap
    cells (left hands mirrored back).
    """

    smplx: SMPLXParams
    cam_param: torch.Tensor
    global_orient_6d: torch.Tensor
    body_pose_6d: torch.Tensor
    hand_pose_6d: torch.Tensor
    jaw_pose_6d: torch.Tensor
    body_joint_img: torch.Tensor
    lhand_joint_img: torch.Tensor
    rhand_joint_img: torch.Tensor
    joint_img: torch.Tensor
    lhand_bbox_center: torch.Tensor
    lhand_bbox_size: torch.Tensor
    rhand_bbox_center: torch.Tensor
    rhand_bbox_size: torch.Tensor
    face_bbox_center: torch.Tensor
    face_bbox_size: torch.Tensor
    lhand_bbox: torch.Tensor
    rhand_bbox: torch.Tensor
    face_bbox: torch.Tensor


class Hand4Whole(nn.Module):
    """The whole-body regressor without the SMPL-X layer (see :mod:`wbcap.model.regressor`)."""

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        c = config
        self.backbone = ResNetBackbone(c.backbone_depth, c.backbone_width)
        body_dim = self.backbone.feat_dim
        self.body_position_net = PositionNet(NUM_BODY_POS_JOINTS, c.output_hm_shape, body_dim)
        hand_backbone = ResNetBackbone(c.hand_backbone_depth, c.backbone_width)
        hand_dim = hand_backbone.feat_dim
        self.body_rotation_net = BodyRotationNet(body_dim, hand_dim, c.num_betas)
        self.box_net = BoxNet(body_dim, c.output_hm_shape)
        self.hand_roi_net = HandRoI(hand_backbone, c)
        self.hand_position_net = PositionNet(NUM_HAND_POS_JOINTS, c.output_hand_hm_shape, hand_dim)
        self.hand_rotation_net = HandRotationNet(hand_dim)
        face_backbone = ResNetBackbone(c.face_backbone_depth, c.backbone_width)
        self.face_roi_net = FaceRoI(face_backbone, c)
        self.face_regressor = FaceRegressor(face_backbone.feat_dim, c.num_expression)

    def _refuse_if_converted(self, what: str) -> None:
        """RuntimeError once :func:`~wbcap.model.inference.optimize_for_inference` has converted
        this network (its weights folded and packed: ``train()`` and ``state_dict()`` went on
        silently and gave a network or file that is not this one: a user trial)."""
        precision = getattr(self, "inference_precision", None)
        if precision is not None:
            raise RuntimeError(f"this network was converted for {str(precision)!r} inference (optimize_for_inference): "
                               f"it cannot be {what}; load the checkpoint again (wbcap.model.checkpoint.load_network)")

    def train(self, mode: bool = True) -> Hand4Whole:
        """``nn.Module.train``; RuntimeError for ``mode=True`` on a network converted for inference."""
        if mode:
            self._refuse_if_converted("trained")
        return super().train(mode)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``nn.Module.state_dict``; RuntimeError on a network converted for inference."""
        self._refuse_if_converted("saved")
        return super().state_dict(*args, **kwargs)

    def trainable_modules(self) -> list[nn.Module]:
        """Modules in the upstream optimizer order."""
        return [
            self.backbone,
            self.body_position_net,
            self.body_rotation_net,
            self.box_net,
            self.hand_roi_net,
            self.hand_position_net,
            self.hand_rotation_net,
            self.face_roi_net,
            self.face_regressor,
        ]

    def camera_translation(self, cam_param: torch.Tensor) -> torch.Tensor:
        """(B,3) camera parameters -> (B,3) translation in metres of the virtual crop camera.

        x, y are taken as is; depth = k * sigmoid(p_z) with
        k = sqrt(fx * fy * size^2 / (body_h * body_w)) (about 56.4 m for the defaults).
        """
        c = self.config
        with float32_region(cam_param):  # float32 even under autocast: t_z is ~5-50 m
            return virtual_camera_translation(cam_param.float(), c.focal, c.camera_3d_size, c.input_body_shape)

    def unflip_left_hand_x(self, x: torch.Tensor) -> torch.Tensor:
        """Mirror x (hand heatmap cells) of joints predicted on the mirrored left-hand crop.

        Default: the released model's formula ``W - 1 - x`` in heatmap cells (a quirk: the
        mirror of the crop is ``W_img - 1 - x`` in crop pixels). ``fix_left_hand_flip`` applies
        the pixel-exact mirror.
        """
        w_hm = self.config.output_hand_hm_shape[2]
        if not self.config.fix_left_hand_flip:
            return w_hm - 1 - x
        w_in = self.config.input_hand_shape[1]
        return (w_in - 1 - x / w_hm * w_in) / w_in * w_hm

    def forward(self, img: torch.Tensor) -> NetworkOutput:
        """img: (B, 3, 512, 384) float RGB in [0, 1] (the affine person crop)."""
        c = self.config
        body_img = nearest_downsample(img, c.input_body_shape)
        img_feat = self.backbone(body_img)
        body_hm, body_joint_img = self.body_position_net(img_feat)

        lc, ls, rc, rs, fc, fs = self.box_net(img_feat, body_hm.detach())
        hand_ar = c.input_hand_shape[1] / c.input_hand_shape[0]
        face_ar = c.input_face_shape[1] / c.input_face_shape[0]
        lhand_bbox = restore_bbox(lc, ls, c, hand_ar, c.hand_box_extension).detach()
        rhand_bbox = restore_bbox(rc, rs, c, hand_ar, c.hand_box_extension).detach()
        face_bbox = restore_bbox(fc, fs, c, face_ar, c.face_box_extension).detach()

        # Laid out once for both crops as RoIAlign's default path reads it: NCHW on a GPU (each
        # crop laying it out on its own cost 1.7 ms of a fast 8-crop call when the CPU ran that
        # path too), as it is on the CPU (see roi_input)
        roi_img = roi_input(img)
        hand_feat = self.hand_roi_net(roi_img, lhand_bbox, rhand_bbox)  # (2B, C, 8, 8)
        face_feat = self.face_roi_net(roi_img, face_bbox)

        _, hand_joint_img = self.hand_position_net(hand_feat)  # (2B, 20, 3)
        hand_pose_6d = self.hand_rotation_net(hand_feat, hand_joint_img.detach())  # (2B, 90)
        hand_pose = rot6d_to_matrix_f32(hand_pose_6d.reshape(-1, NUM_HAND_ROT_JOINTS, 6))  # (2B, 15, 3, 3)

        b = img.shape[0]
        lhand_joint_img = hand_joint_img[:b]
        lhand_joint_img = torch.cat((self.unflip_left_hand_x(lhand_joint_img[:, :, :1]), lhand_joint_img[:, :, 1:]), 2)
        rhand_joint_img = hand_joint_img[b:]
        lhand_feat = torch.flip(hand_feat[:b], [3])
        rhand_feat = hand_feat[b:]

        root_6d, body_6d, betas, cam_param = self.body_rotation_net(
            img_feat,
            body_joint_img.detach(),
            lhand_feat,
            lhand_joint_img[:, _MCP].detach(),
            rhand_feat,
            rhand_joint_img[:, _MCP].detach(),
        )
        expression, jaw_6d = self.face_regressor(face_feat)
        smplx = SMPLXParams(
            betas=betas,
            global_orient=rot6d_to_matrix_f32(root_6d),
            body_pose=rot6d_to_matrix_f32(body_6d.reshape(b, NUM_BODY_ROT_JOINTS, 6)),
            # The left hand was regressed on the mirrored crop: mirror its rotations back.
            left_hand_pose=mirror_rotation_x(hand_pose[:b]),
            right_hand_pose=hand_pose[b:],
            jaw_pose=rot6d_to_matrix_f32(jaw_6d),
            expression=expression,
            transl=self.camera_translation(cam_param),
            rotation="matrix",
        )

        joint_img = torch.cat(
            (body_joint_img, self._hand_to_body_hm(lhand_joint_img, lhand_bbox), self._hand_to_body_hm(rhand_joint_img, rhand_bbox)),
            1,
        )
        return NetworkOutput(
            smplx=smplx,
            cam_param=cam_param,
            global_orient_6d=root_6d,
            body_pose_6d=body_6d,
            hand_pose_6d=hand_pose_6d,
            jaw_pose_6d=jaw_6d,
            body_joint_img=body_joint_img,
            lhand_joint_img=lhand_joint_img,
            rhand_joint_img=rhand_joint_img,
            joint_img=joint_img,
            lhand_bbox_center=lc,
            lhand_bbox_size=ls,
            rhand_bbox_center=rc,
            rhand_bbox_size=rs,
            face_bbox_center=fc,
            face_bbox_size=fs,
            lhand_bbox=lhand_bbox,
            rhand_bbox=rhand_bbox,
            face_bbox=face_bbox,
        )

    def _hand_to_body_hm(self, hand_joint_img: torch.Tensor, bbox: torch.Tensor) -> torch.Tensor:
        """(B,20,3) hand heatmap cells inside ``bbox`` (B,4 xyxy body-input px) -> body heatmap cells.

        x and y are mapped through the box; z is kept in hand heatmap cells (as upstream).
        """
        c = self.config
        hx = c.output_hm_shape[2] / c.input_body_shape[1]
        hy = c.output_hm_shape[1] / c.input_body_shape[0]
        x = hand_joint_img[:, :, 0] * ((bbox[:, None, 2] - bbox[:, None, 0]) * hx / c.output_hand_hm_shape[2])
        x = x + bbox[:, None, 0] * hx
        y = hand_joint_img[:, :, 1] * ((bbox[:, None, 3] - bbox[:, None, 1]) * hy / c.output_hand_hm_shape[1])
        y = y + bbox[:, None, 1] * hy
        return torch.stack((x, y, hand_joint_img[:, :, 2]), 2)
