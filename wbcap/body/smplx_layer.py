"""Batched SMPL-X forward pass built on the ``smplx`` package's math.

:class:`SMPLXLayer` is constructed from the validated arrays of
:func:`wbcap.body.model_files.load_body_model_data`, so building it never unpickles anything.
It reproduces ``smplx.create(folder, 'smplx', use_pca=False, use_face_contour=True,
flat_hand_mean=False, num_betas=10, num_expression_coeffs=10)`` to float32 rounding (its rest
joints come from a basis computed once, see ``_lbs``'s ``joint_basis``: within ~4e-7 m of
smplx's; ``_lbs`` without it is smplx's computation bit for bit), without per-instance
parameters: every array is a (non-persistent) buffer, so ``.to(device)`` moves it and a network
``state_dict`` never carries (licensed) body-model data.

Coordinates: metres, y up, the model faces +z. The layer takes an
:class:`~wbcap.body.params.SMPLXParams` (``body(params)``), with axis-angle rotations (radians)
or rotation matrices, or the same tensors as smplx's keywords in axis-angle
(``body(betas=..., global_orient=..., ...)``). Matrices go to the skinning as they are
(smplx's ``pose2rot=False``), except the finger rotations when the hand mean is added (see
:mod:`wbcap.body.params`).

The forward always runs in the layer's dtype (float32 by default) with autocast turned off, also
inside a bf16/fp16 autocast region (training's bf16 autocast, the ``bf16``/``fp16`` inference
modes): in bfloat16 the blend shapes and the kinematic chain moved vertices by up to 19 mm.
It reads nothing back from the device (no GPU synchronisation): see :func:`_lbs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from smplx.lbs import (
    batch_rodrigues,
    blend_shapes,
    find_dynamic_lmk_idx_and_bcoords,
    transform_mat,
    vertices2joints,
    vertices2landmarks,
)
from smplx.utils import find_joint_kin_chain
from smplx.vertex_ids import vertex_ids as smplx_vertex_ids
from smplx.vertex_joint_selector import VertexJointSelector

from wbcap.body.joints import JOINT_IDX, SMPLX_BODY_JOINTS, SMPLX_NECK, SMPLX_OUTPUT_JOINT_NUM
from wbcap.body.model_files import load_body_model_data
from wbcap.body.params import FIELDS, SMPLXParams
from wbcap.body.pose_layout import POSE_SLICES
from wbcap.body.rotations import float32_region, matrix_to_axis_angle

__all__ = ["SMPLXLayer", "SMPLXOutput", "joints137"]

# smplx's constants: shape space 300 + expression space 100 in the full (v1.1) release.
_SHAPE_SPACE_DIM = 300
_EXPRESSION_SPACE_DIM = 100
_NUM_BODY_JOINTS = len(SMPLX_BODY_JOINTS) - 1  # 21: pelvis to the wrists, less the root
_NECK_IDX = SMPLX_NECK  # 12


@dataclass(frozen=True)
class SMPLXOutput:
    """Result of :meth:`SMPLXLayer.forward` (float tensors on the layer's device).

    Attributes:
        vertices: ``(B, V=10475, 3)`` mesh vertices in metres (``transl`` applied).
        joints: ``(B, 144, 3)`` joints in metres: 55 model joints, 21 vertex joints, 51 face
            landmarks, 17 face-contour landmarks (``wbcap.body.joints.SMPLX_OUTPUT_JOINT_NAMES``).
        full_pose: the 55 joint rotations in model order with the hand mean pose already added
            (as smplx reports it): ``(B, 165)`` axis-angle (radians) for axis-angle input,
            ``(B, 55, 3, 3)`` rotation matrices (what the skinning used) for matrix input.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    full_pose: torch.Tensor


#: A kinematic tree's joints by depth (:func:`chain_levels`): ``(order, order_parents, bounds)``,
#: the non-root joints sorted by depth and their parents (int64 tensors on the model's device),
#: and the Python bounds of each depth's run in them.
ChainLevels = tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]


def chain_levels(parents: Sequence[int]) -> tuple[list[int], list[int], tuple[int, ...]]:
    """The non-root joints of a kinematic tree (``parents[i]`` the parent of joint ``i``, -1 for
    the root, parents before children) sorted by depth, their parents, and where each depth's
    run ends: the joints one :func:`_batch_rigid_transform` step composes together."""
    depth = [0] * len(parents)
    for i in range(1, len(parents)):
        if not 0 <= parents[i] < i:
            raise ValueError(f"joint {i}'s parent {parents[i]} does not come before it")
        depth[i] = depth[parents[i]] + 1
    order = sorted(range(1, len(parents)), key=lambda i: (depth[i], i))
    bounds = tuple(sum(1 for i in order if depth[i] <= d) for d in range(1, max(depth, default=0) + 1))
    return order, [int(parents[i]) for i in order], bounds


def _batch_rigid_transform(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor, levels: ChainLevels
) -> tuple[torch.Tensor, torch.Tensor]:
    """``smplx.lbs.batch_rigid_transform`` bit for bit (tested), composing the chain one depth at
    a time: the same 4x4 products (each child's world transform = its parent's times its own
    local one), one batched product per depth (10 for SMPL-X) instead of one per joint (54), and
    no host read (smplx indexes its Python list of transforms with elements of the ``parents``
    tensor: one device -> host read, i.e. one GPU synchronisation, per joint).
    rot_mats (B, J, 3, 3), joints (B, J, 3), parents (J,) int64 on the device, ``levels`` from
    :func:`chain_levels` -> posed joints (B, J, 3) and relative transforms (B, J, 4, 4).
    """
    joints = torch.unsqueeze(joints, dim=-1)
    rel_joints = joints.clone()
    rel_joints[:, 1:] -= joints[:, parents[1:]]
    transforms_mat = transform_mat(rot_mats.reshape(-1, 3, 3), rel_joints.reshape(-1, 3, 1)).reshape(
        -1, joints.shape[1], 4, 4
    )
    order, order_parents, bounds = levels
    transforms = torch.empty_like(transforms_mat)
    transforms[:, 0] = transforms_mat[:, 0]
    start = 0
    for end in bounds:
        idx = order[start:end]
        transforms[:, idx] = torch.matmul(transforms[:, order_parents[start:end]], transforms_mat[:, idx])
        start = end
    posed_joints = transforms[:, :, :3, 3]
    joints_homogen = F.pad(joints, [0, 0, 0, 1])
    rel_transforms = transforms - F.pad(torch.matmul(transforms, joints_homogen), [3, 0, 0, 0, 0, 0, 0, 0])
    return posed_joints, rel_transforms


def _lbs(
    betas: torch.Tensor,
    pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor,
    parents: torch.Tensor,
    levels: ChainLevels,
    lbs_weights: torch.Tensor,
    pose2rot: bool = True,
    pose_product: Callable[[torch.Tensor], torch.Tensor] | None = None,
    joint_basis: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``smplx.lbs.lbs(..., pose2rot=pose2rot)`` (bit-equal results on the CPU, tested; on a GPU,
    where its matmuls may fuse multiply-adds, within float32 rounding), op for op up to the
    skinning, with the kinematic chain of :func:`_batch_rigid_transform`. ``pose``:
    ``(B, J * 3)`` axis-angle with ``pose2rot``, else ``(B, J, 3, 3)`` rotation matrices.
    ``pose_product``: the pose features ``(B, 9 (J - 1))`` times ``posedirs`` another way
    (see :meth:`SMPLXLayer.forward`); None: ``torch.matmul`` as smplx.
    ``joint_basis``: ``(J_template (J, 3), J_dirs (J * 3, L))``, the joint regressor applied
    beforehand to the template and to the shape directions (the rest joints are linear in the
    shape coefficients): the rest joints as ``J_template + betas @ J_dirs^T``, equal to smplx's
    ``J_regressor @ v_shaped`` up to float rounding (the (J, V) product per call took 0.26 ms of
    a one-crop regressor call on the 2-core Zen 5 EPYC); None: that product, as smplx.
    Returns vertices (B, V, 3) and joints (B, J, 3), metres."""
    batch_size = max(betas.shape[0], pose.shape[0])
    device, dtype = betas.device, betas.dtype
    v_shaped = v_template + blend_shapes(betas, shapedirs)
    if joint_basis is None:
        J = vertices2joints(J_regressor, v_shaped)
    else:
        J_template, J_dirs = joint_basis
        J = torch.addmm(J_template.view(1, -1), betas, J_dirs.t()).view(batch_size, -1, 3)
    ident = torch.eye(3, dtype=dtype, device=device)
    if pose2rot:
        rot_mats = batch_rodrigues(pose.view(-1, 3)).view([batch_size, -1, 3, 3])
        pose_feature = (rot_mats[:, 1:, :, :] - ident).view([batch_size, -1])
    else:
        pose_feature = (pose[:, 1:].view(batch_size, -1, 3, 3) - ident).view([batch_size, -1])
        rot_mats = pose.view(batch_size, -1, 3, 3)
    pose_offsets = (torch.matmul(pose_feature, posedirs) if pose_product is None
                    else pose_product(pose_feature)).view(batch_size, -1, 3)
    v_posed = pose_offsets + v_shaped
    J_transformed, A = _batch_rigid_transform(rot_mats, J, parents, levels)
    # Skinning, v = (sum_k w_k A_k) [v_posed; 1] (the paper's eq. 1; smplx.lbs): only the top
    # three rows of the joints' transforms are blended (the bottom one is [0 0 0 1]), and the
    # (B, V, 3, 4) result is applied as x R[:, 0] + y R[:, 1] + z R[:, 2] + t, separate products
    # and sums in the order of smplx's one 4x4 @ 4x1 matmul per vertex: the same values on the CPU
    # (tested bit for bit), in about half the time (33 poses: 10.7 against 19.5 ms on one
    # thread; most of a video's posing for rendering). Fused multiply-adds (addcmul) were a
    # little faster but rounded differently where torch vectorised them, which varied by run.
    W = lbs_weights.unsqueeze(dim=0).expand([batch_size, -1, -1])
    num_joints = J_regressor.shape[0]
    T = torch.matmul(W, A.view(batch_size, num_joints, 16)[:, :, :12]).view(batch_size, -1, 3, 4)
    x, y, z = (c.unsqueeze(-1) for c in v_posed.unbind(dim=-1))
    vertices = T[..., 0] * x + T[..., 1] * y + T[..., 2] * z + T[..., 3]
    return vertices, J_transformed


def _check(name: str, value: torch.Tensor, batch: int, width: int) -> torch.Tensor:
    if value.ndim < 2 or value.shape[0] != batch or math.prod(value.shape[1:]) != width:
        raise ValueError(f"{name} must have shape ({batch}, {width}), got {tuple(value.shape)}")
    return value.reshape(batch, width)


class SMPLXLayer(torch.nn.Module):
    """SMPL-X body model without learnable parameters.

    Args:
        data: arrays from :func:`~wbcap.body.model_files.load_body_model_data`.
        num_betas: shape coefficients used (clamped like smplx: <= 10 for a 20-component model,
            <= 300 for the full release).
        num_expression: expression coefficients used (clamped like smplx).
        flat_hand_mean: if False (default, as Hand4Whole), the model file's hand mean pose is
            added to the given hand poses.
        dtype: floating dtype of the buffers.

    Attributes:
        faces: ``(F, 3)`` int64 numpy array of triangle vertex indices.
        faces_tensor: ``(F, 3)`` int64 buffer (same values).
    """

    def __init__(
        self,
        data: dict[str, np.ndarray],
        num_betas: int = 10,
        num_expression: int = 10,
        flat_hand_mean: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        shapedirs = np.asarray(data["shapedirs"])
        num_components = shapedirs.shape[-1]
        # Same clamping / slicing rules as smplx.SMPL and smplx.SMPLX.
        if num_components < _SHAPE_SPACE_DIM:
            num_betas = min(num_betas, 10)
        else:
            num_betas = min(num_betas, _SHAPE_SPACE_DIM)
        if num_components < _SHAPE_SPACE_DIM + _EXPRESSION_SPACE_DIM:
            expr_start = 10
            num_expression = min(num_expression, 10)
        else:
            expr_start = _SHAPE_SPACE_DIM
            num_expression = min(num_expression, _EXPRESSION_SPACE_DIM)
        self.num_betas = int(num_betas)
        self.num_expression = int(num_expression)
        self.flat_hand_mean = bool(flat_hand_mean)

        def buf(name: str, value: Any, tensor_dtype: torch.dtype = dtype) -> None:
            self.register_buffer(
                name, torch.as_tensor(np.asarray(value)).to(tensor_dtype), persistent=False
            )

        num_v = int(np.asarray(data["v_template"]).shape[0])
        buf("v_template", data["v_template"])
        buf("shapedirs", shapedirs[:, :, : self.num_betas])
        buf("expr_dirs", shapedirs[:, :, expr_start : expr_start + self.num_expression])
        # (both, side by side, as every forward uses them: not concatenated again per call)
        self.register_buffer("_shape_expr_dirs", torch.cat([self.shapedirs, self.expr_dirs], dim=-1), persistent=False)
        num_pose_basis = np.asarray(data["posedirs"]).shape[-1]
        buf("posedirs", np.reshape(data["posedirs"], (num_v * 3, num_pose_basis)).T)
        buf("J_regressor", data["J_regressor"])
        # The rest joints' basis (``_lbs``'s ``joint_basis``), computed in float64: the regressor
        # applied to the template (J, 3) and to the shape and expression directions (J * 3, L).
        j_reg = np.asarray(data["J_regressor"], dtype=np.float64)
        dirs = np.concatenate([np.asarray(shapedirs[:, :, : self.num_betas], dtype=np.float64),
                               np.asarray(shapedirs[:, :, expr_start : expr_start + self.num_expression],
                                          dtype=np.float64)], axis=-1)
        buf("J_template", j_reg @ np.asarray(data["v_template"], dtype=np.float64))
        buf("J_shapedirs", (j_reg @ dirs.reshape(num_v, -1)).reshape(j_reg.shape[0] * 3, -1))  # (J, 3 * L) -> (J * 3, L)
        buf("lbs_weights", data["weights"])
        parents = np.asarray(data["kintree_table"][0]).astype(np.int64)
        parents[0] = -1
        buf("parents", parents, torch.long)
        order, order_parents, self._chain_bounds = chain_levels(parents.tolist())
        buf("chain_order", order, torch.long)
        buf("chain_parents", order_parents, torch.long)

        self.faces: np.ndarray = np.asarray(data["f"]).astype(np.int64)
        buf("faces_tensor", self.faces, torch.long)
        buf("lmk_faces_idx", data["lmk_faces_idx"], torch.long)
        buf("lmk_bary_coords", data["lmk_bary_coords"])
        buf("dynamic_lmk_faces_idx", data["dynamic_lmk_faces_idx"], torch.long)
        buf("dynamic_lmk_bary_coords", data["dynamic_lmk_bary_coords"])
        buf("neck_kin_chain", find_joint_kin_chain(_NECK_IDX, parents.tolist()), torch.long)

        if self.flat_hand_mean:
            hand_mean_l = np.zeros(45)
            hand_mean_r = np.zeros(45)
        else:
            hand_mean_l = np.asarray(data["hands_meanl"])
            hand_mean_r = np.asarray(data["hands_meanr"])
        # Order of full_pose: global, 21 body, jaw, leye, reye, 15 left hand, 15 right hand.
        pose_mean = np.concatenate(
            [np.zeros(3 * (1 + _NUM_BODY_JOINTS + 3)), hand_mean_l, hand_mean_r]
        )
        buf("pose_mean", pose_mean.astype(np.float32))

        self.vertex_joint_selector = VertexJointSelector(vertex_ids=smplx_vertex_ids["smplx"])
        for name, tensor in list(self.vertex_joint_selector.named_buffers(recurse=False)):
            self.vertex_joint_selector.register_buffer(name, tensor, persistent=False)

    def rest_root(self, betas: torch.Tensor) -> torch.Tensor:
        """Pelvis (root joint) of the shaped body at rest, (B, 10) betas -> (B, 3) metres.

        SMPL-X rotates the body about this point, so with ``transl = 0`` the posed pelvis is
        still here: a mesh's pelvis in a camera is ``rest_root(betas) + transl``. The joint is
        linear in the betas (``J_regressor[0]`` applied to template and shape directions: the
        forward's joint basis), so this costs O(B * num_betas) memory, never a (B, V, 3) mesh.
        """
        root_dirs = self.J_shapedirs[:3, : self.num_betas]  # (3, num_betas)
        return self.J_template[0] + betas.to(root_dirs.dtype) @ root_dirs.T

    def hands_mean(self) -> tuple[np.ndarray, np.ndarray]:
        """The hand poses this layer adds to the given ones: ``(left (45,), right (45,))``.

        The model file's ``hands_meanl``/``hands_meanr`` when ``flat_hand_mean`` is False
        (Hand4Whole's convention), zeros otherwise; axis-angle, radians, float64. A pose
        relative to the mean plus this is the absolute (``flat_hand_mean=True``) pose.
        """
        mean = self.pose_mean.detach().cpu().double().numpy()
        return mean[POSE_SLICES["left_hand_pose"]].copy(), mean[POSE_SLICES["right_hand_pose"]].copy()

    @classmethod
    def from_file(cls, path: str | Path, allow_pickle: bool = False, **kwargs: Any) -> SMPLXLayer:
        """Build the layer from a model file (see ``load_body_model_data``; kwargs go to init)."""
        return cls(load_body_model_data(path, allow_pickle=allow_pickle), **kwargs)

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V (10475 for SMPL-X)."""
        return int(self.v_template.shape[0])

    def forward(
        self,
        betas: torch.Tensor | SMPLXParams | None = None,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        left_hand_pose: torch.Tensor | None = None,
        right_hand_pose: torch.Tensor | None = None,
        jaw_pose: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        leye_pose: torch.Tensor | None = None,
        reye_pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        *,
        pose_product: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> SMPLXOutput:
        """Pose and shape the model: ``body(params)`` or ``body(betas=..., global_orient=..., ...)``.

        ``params``: an :class:`~wbcap.body.params.SMPLXParams` (axis-angle or rotation
        matrices), or a mapping of its names (``dict(p)``, axis-angle:
        :meth:`~wbcap.body.params.SMPLXParams.from_mapping`), alone. Keywords: smplx's, all
        rotations axis-angle in radians (they make an axis-angle SMPLXParams). Tensors must be on
        the buffers' device (ValueError naming the one that is not); they are cast to the buffers'
        dtype and the computation runs with autocast off (see module doc). A batch of 0 gives
        outputs of batch 0. Values are not checked for NaN or infinity (that would read every
        tensor back from a GPU): a NaN parameter gives NaN vertices.

        Args:
            betas: ``(B, num_betas)`` shape coefficients (or the SMPLXParams).
            global_orient: ``(B, 3)`` root rotation.
            body_pose: ``(B, 63)`` or ``(B, 21, 3)`` body joint rotations (joints 1..21).
            left_hand_pose: ``(B, 45)`` left-hand joint rotations (15 joints, model order,
                relative to the hand mean unless ``flat_hand_mean``).
            right_hand_pose: ``(B, 45)`` right-hand joint rotations.
            jaw_pose: ``(B, 3)`` jaw rotation.
            expression: ``(B, num_expression)`` expression coefficients.
            leye_pose: ``(B, 3)`` left eyeball rotation, zeros when None.
            reye_pose: ``(B, 3)`` right eyeball rotation, zeros when None.
            transl: ``(B, 3)`` translation in metres added to vertices and joints, zeros if None.
            pose_product: how the pose-corrective blend shapes are computed: a callable taking
                the pose features ``(B, 486)`` (each non-root joint's rotation matrix minus the
                identity, flattened; the layer's dtype) to the offsets ``(B, 3 V)`` in the
                layer's dtype, i.e. ``features @ self.posedirs``. None (default): that product
                in the layer's dtype, as smplx. The regressor's inference form on a CPU passes
                oneDNN's float32 product, or the fast precision's bfloat16 one
                (:attr:`wbcap.model.regressor.WholeBodyRegressor.pose_product`).

        Returns:
            :class:`SMPLXOutput` with ``vertices (B, V, 3)``, ``joints (B, 144, 3)``,
            ``full_pose`` (``(B, 165)`` axis-angle, or ``(B, 55, 3, 3)`` for matrix params).
        """
        if isinstance(betas, Mapping):  # (``body(dict(p))``: bound to betas, said "missing" all the others)
            betas = SMPLXParams.from_mapping(betas)
        if isinstance(betas, SMPLXParams):
            given = (global_orient, body_pose, left_hand_pose, right_hand_pose, jaw_pose, expression, leye_pose,
                     reye_pose, transl)  # fmt: skip
            if any(v is not None for v in given):
                raise TypeError("pass either an SMPLXParams alone or the parameters as keywords, not both")
            params = betas
        else:
            required = dict(betas=betas, global_orient=global_orient, body_pose=body_pose, left_hand_pose=left_hand_pose,
                            right_hand_pose=right_hand_pose, jaw_pose=jaw_pose, expression=expression)  # fmt: skip
            missing = [k for k, v in required.items() if v is None]
            if missing:
                raise TypeError(f"missing SMPL-X parameters: {', '.join(missing)}")
            params = SMPLXParams(**required, leye_pose=leye_pose, reye_pose=reye_pose, transl=transl)
        device = self.v_template.device
        for name in FIELDS:
            if params[name].device != device:
                raise ValueError(f"{name} is on {params[name].device}, the SMPL-X layer on {device}: move the "
                                 f"parameters there first (params.to({str(device)!r}))")
        if params.batch_size == 0:  # (the same shapes and dtypes, of batch 0: one row of zeros posed, none kept)
            one = SMPLXParams.from_mapping({k: v.new_zeros((1, *v.shape[1:])) for k, v in params.items()},
                                           rotation=params.rotation)
            out = self.forward(one, pose_product=pose_product)
            return SMPLXOutput(out.vertices[:0], out.joints[:0], out.full_pose[:0])
        with float32_region(self.v_template):
            return self._forward(params.to(self.v_template.dtype), pose_product)

    def _hand_mean_matrices(self, rot_mats: torch.Tensor) -> torch.Tensor:
        """(B, 55, 3, 3) relative rotations -> the same with the hand mean added to the 30 finger
        rotations the way smplx adds it (in axis-angle, then Rodrigues)."""
        if self.flat_hand_mean:
            return rot_mats
        b = rot_mats.shape[0]
        first_hand = 1 + _NUM_BODY_JOINTS + 3
        hands = matrix_to_axis_angle(rot_mats[:, first_hand:]).reshape(b, -1) + self.pose_mean[3 * first_hand :]
        hands = batch_rodrigues(hands.view(-1, 3)).view(b, -1, 3, 3)
        return torch.cat((rot_mats[:, :first_hand], hands), 1)

    def _forward(self, params: SMPLXParams,
                 pose_product: Callable[[torch.Tensor], torch.Tensor] | None = None) -> SMPLXOutput:
        batch = params.batch_size
        betas = _check("betas", params.betas, batch, self.num_betas)
        expression = _check("expression", params.expression, batch, self.num_expression)
        pose2rot = params.rotation == "axis_angle"
        if pose2rot:
            full_pose = params.full_pose().reshape(batch, -1) + self.pose_mean  # (B, 165)
        else:
            full_pose = self._hand_mean_matrices(params.full_pose())  # (B, 55, 3, 3)

        shape_components = torch.cat([betas, expression], dim=-1)
        shapedirs = self._shape_expr_dirs
        vertices, joints = _lbs(
            shape_components,
            full_pose,
            self.v_template,
            shapedirs,
            self.posedirs,
            self.J_regressor,
            self.parents,
            (self.chain_order, self.chain_parents, self._chain_bounds),
            self.lbs_weights,
            pose2rot=pose2rot,
            pose_product=pose_product,
            joint_basis=(self.J_template, self.J_shapedirs),
        )

        lmk_faces_idx = self.lmk_faces_idx.unsqueeze(0).expand(batch, -1)
        lmk_bary_coords = self.lmk_bary_coords.unsqueeze(0).expand(batch, -1, -1)
        dyn_faces_idx, dyn_bary_coords = find_dynamic_lmk_idx_and_bcoords(
            vertices,
            full_pose,
            self.dynamic_lmk_faces_idx,
            self.dynamic_lmk_bary_coords,
            self.neck_kin_chain,
            pose2rot=pose2rot,
        )
        lmk_faces_idx = torch.cat([lmk_faces_idx, dyn_faces_idx], 1)
        lmk_bary_coords = torch.cat([lmk_bary_coords, dyn_bary_coords], 1)
        landmarks = vertices2landmarks(vertices, self.faces_tensor, lmk_faces_idx, lmk_bary_coords)

        joints = self.vertex_joint_selector(vertices, joints)
        joints = torch.cat([joints, landmarks], dim=1)
        offset = params.transl.unsqueeze(1)  # zeros when no translation was given
        joints = joints + offset
        vertices = vertices + offset
        return SMPLXOutput(vertices=vertices, joints=joints, full_pose=full_pose)


def joints137(output: SMPLXOutput | torch.Tensor) -> torch.Tensor:
    """The Hand4Whole 137-joint supervision set from a layer output.

    Args:
        output: an :class:`SMPLXOutput`, the official ``smplx`` package's output (with face
            contour: 144 joints), or such a ``joints`` tensor ``(B, 144, D)``.

    Returns:
        ``(B, 137, D)`` tensor in ``wbcap.body.joints.JOINT_NAMES`` order (metres for 3D).
    """
    joints = output if isinstance(output, torch.Tensor) else output.joints
    if joints.ndim != 3 or joints.shape[1] != SMPLX_OUTPUT_JOINT_NUM:
        raise ValueError(
            f"expected joints of shape (B, {SMPLX_OUTPUT_JOINT_NUM}, D), got {tuple(joints.shape)}"
        )
    index = torch.as_tensor(JOINT_IDX, dtype=torch.long, device=joints.device)
    return joints.index_select(1, index)
