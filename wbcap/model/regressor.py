"""Network + SMPL-X layer: crops in, parameters, meshes and joints out.

:class:`WholeBodyRegressor` owns a :class:`~wbcap.model.hand4whole.Hand4Whole` network (``net``)
and a :class:`~wbcap.body.smplx_layer.SMPLXLayer` (``body``). Checkpoints hold only ``net``; the
body model is rebuilt from the user's SMPL-X file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wbcap.body import joints as J
from wbcap.body.params import SMPLXParams
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.camera import crop_intrinsics, perspective_projection
from wbcap.model.hand4whole import Hand4Whole, NetworkOutput


@dataclass(frozen=True)
class RegressorOutput:
    """Per-crop results, batched first; the crop camera is the network's virtual camera.

    params: the :class:`NetworkOutput`; ``params.smplx`` the SMPL-X parameters (rotation
        matrices; ``transl`` the camera translation).
    vertices: (B, 10475, 3) metres, the mesh of ``params.smplx`` (translated by its ``transl``;
        OpenCV camera axes: x right, y down, z forward), viewed by a pinhole camera with
        ``focal`` and ``princpt`` in body-input pixels (see :meth:`WholeBodyRegressor.crop_camera`).
    joints: (B, 137, 3) metres, same frame as ``vertices`` (Hand4Whole's joint set).
    joints_proj: (B, 137, 2) projections in input-crop pixels (512x384 space).
    lhand_bbox, rhand_bbox, face_bbox: (B, 4) xyxy in input-crop pixels.
    """

    params: NetworkOutput
    vertices: torch.Tensor
    joints: torch.Tensor
    joints_proj: torch.Tensor
    lhand_bbox: torch.Tensor
    rhand_bbox: torch.Tensor
    face_bbox: torch.Tensor


class WholeBodyRegressor(nn.Module):
    """Hand4Whole network followed by the SMPL-X layer.

    The SMPL-X stage always runs in float32 with autocast off (see
    :mod:`wbcap.body.smplx_layer`), and the forward reads nothing back from the device: its
    constant index and scale tensors are (non-persistent) buffers, made once on the network's
    device and moved by ``.to()``.
    """

    def __init__(self, net: Hand4Whole, body: SMPLXLayer) -> None:
        super().__init__()
        self.net = net
        self.body = body
        #: How SMPL-X's pose-corrective product is computed in :meth:`body_forward` (the layer's
        #: ``pose_product``): None (float32, smplx's ``torch.matmul``), or on the CPU in the inference
        #: form a :class:`~wbcap.model.fused.PackedLinear` by oneDNN, float32 or the fast precision's
        #: bfloat16 (:func:`wbcap.model.inference.optimize_regressor_body`).
        self.pose_product: nn.Module | None = None
        device = next(net.parameters(), torch.empty(0)).device
        c = net.config
        sx = c.input_img_shape[1] / c.input_body_shape[1]
        sy = c.input_img_shape[0] / c.input_body_shape[0]
        self.register_buffer("joint_index", torch.tensor(J.JOINT_IDX, device=device), persistent=False)
        self.register_buffer("box_scale", torch.tensor([sx, sy, sx, sy], device=device), persistent=False)

    def _on(self, name: str, device: torch.device) -> torch.Tensor:
        """Buffer ``name`` on ``device`` (moved once if only the network was moved)."""
        t = getattr(self, name)
        if t.device != device:
            t = t.to(device)
            setattr(self, name, t)
        return t

    @property
    def config(self):
        return self.net.config

    def crop_camera(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Intrinsics (focal, princpt) of the virtual camera in input-crop pixels (512x384):
        :func:`wbcap.camera.crop_intrinsics` of the network's config."""
        return crop_intrinsics(self.net.config)

    def body_forward(self, p: NetworkOutput | SMPLXParams) -> tuple[torch.Tensor, torch.Tensor]:
        """SMPL-X with the predicted parameters (``p.smplx`` of a NetworkOutput; eyes at rest),
        translation included. Returns vertices (B,V,3), joints (B,144,3), metres, in the body
        layer's dtype (float32), also under autocast."""
        out = self.body(p.smplx if isinstance(p, NetworkOutput) else p, pose_product=self.pose_product)
        return out.vertices, out.joints

    def forward(self, img: torch.Tensor) -> RegressorOutput:
        """img: (B, 3, 512, 384) float RGB in [0, 1]."""
        p = self.net(img)
        vertices, joints144 = self.body_forward(p)
        joints = joints144.index_select(1, self._on("joint_index", joints144.device))
        proj = perspective_projection(joints, *self.crop_camera())
        lhand, rhand, face = self.part_boxes(p)
        return RegressorOutput(
            params=p, vertices=vertices, joints=joints, joints_proj=proj, lhand_bbox=lhand, rhand_bbox=rhand, face_bbox=face)

    def part_boxes(self, p: NetworkOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network's left-hand, right-hand and face boxes, each ``(B, 4)`` xyxy in input-crop
        pixels (its output's are in its heatmap's cells: scaled as upstream's ``restore_bbox``
        callers do)."""
        s = self._on("box_scale", p.lhand_bbox.device)
        return p.lhand_bbox * s, p.rhand_bbox * s, p.face_bbox * s
