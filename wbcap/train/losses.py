"""Hand4Whole training losses, batched.

Every term of upstream's ``Model.forward(mode='train')`` (``main/model.py``) with the semantics of
its ``CoordLoss`` / ``ParamLoss`` (``common/nets/loss.py``): element-wise L1 times a validity
mask, the z column of 3D joint coordinates additionally masked by ``is_3D``. Upstream's trainer
averages each term over all its elements (masked ones count as zeros) and sums the terms;
:func:`hand4whole_losses` returns those per-term means and :func:`total_loss` their sum.

Terms (names as upstream):

* ``smplx_pose``: the 159-d axis-angle vector (root, 21 body, 15 left hand, 15 right hand, jaw:
  :func:`regressed_pose`; the network's rotation matrices become axis-angle only here);
* ``smplx_shape``, ``smplx_expr``: betas and expression coefficients;
* ``joint_cam``, ``smplx_joint_cam``: the 137 SMPL-X joints in metres, body root-relative, hands
  relative to their wrists, face relative to the neck (:func:`part_relative_joints`);
* ``lhand_bbox``, ``rhand_bbox``, ``face_bbox``: box centre + size in body heatmap cells;
* ``joint_proj``: projected joints in body heatmap cells against ``joint_img`` (x, y); hand joints
  (prediction and target) are re-mapped into the predicted hand boxes (hand heatmap cells), and
  each hand and the face are translation-aligned to the target over their non-truncated joints;
* ``joint_img``, ``smplx_joint_img``: the 65 PositionNet joints (body in body heatmap cells, hands
  in hand heatmap cells of the predicted boxes) against the targets re-mapped the same way, hand
  joints that fall outside the predicted box counted as truncated.

Nothing here mutates the caller's ``targets`` / ``meta_info`` (upstream rewrites them in place).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from wbcap.body import joints as J
from wbcap.body.params import SMPLXParams
from wbcap.config import ModelConfig
from wbcap.model.regressor import RegressorOutput

__all__ = [
    "LOSS_NAMES",
    "coord_loss",
    "hand4whole_losses",
    "hand_box_coords",
    "param_loss",
    "part_relative_joints",
    "regressed_pose",
    "total_loss",
]

#: Loss terms in upstream's order.
LOSS_NAMES: tuple[str, ...] = (
    "smplx_pose",
    "smplx_shape",
    "smplx_expr",
    "joint_cam",
    "smplx_joint_cam",
    "lhand_bbox",
    "rhand_bbox",
    "face_bbox",
    "joint_proj",
    "joint_img",
    "smplx_joint_img",
)

_LHAND = J.JOINT_PART["lhand"]
_RHAND = J.JOINT_PART["rhand"]
_FACE = J.JOINT_PART["face"]
_HANDS = slice(_LHAND.start, _RHAND.stop)  # 25..64: left hand then right hand, 20 each
_NUM_HAND = len(_LHAND)


def _anchor_index() -> torch.Tensor:
    """For each of the 137 joints, the joint it is expressed relative to (after root-relative)."""
    anchor = torch.full((J.JOINT_NUM,), J.ROOT_JOINT_IDX, dtype=torch.long)
    anchor[_LHAND.start : _LHAND.stop] = J.LWRIST_IDX
    anchor[_RHAND.start : _RHAND.stop] = J.RWRIST_IDX
    anchor[_FACE.start : _FACE.stop] = J.NECK_IDX
    return anchor


def _align_groups() -> torch.Tensor:
    """(3, 137) one-hot of the translation-aligned groups: left hand, right hand, face."""
    groups = torch.zeros(3, J.JOINT_NUM)
    for g, part in enumerate((_LHAND, _RHAND, _FACE)):
        groups[g, part.start : part.stop] = 1.0
    return groups


_ANCHOR = _anchor_index()
_GROUPS = _align_groups()


def _mask_as(mask: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return mask.to(dtype=ref.dtype, device=ref.device)


def coord_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, is_3d: torch.Tensor | None = None
) -> torch.Tensor:
    """Upstream ``CoordLoss``: ``|pred - target| * valid``, element-wise (not reduced).

    Args:
        pred, target: ``(B, ..., D)`` coordinates.
        valid: mask broadcastable to ``pred`` (e.g. ``(B, J, 1)`` or ``(B, 1)``), any dtype.
        is_3d: optional ``(B,)``; when given, column 2 (z) of the last dimension is also
            multiplied by it (2D-only samples give no depth supervision).

    Returns:
        Tensor of ``pred``'s shape.
    """
    loss = (pred - target).abs() * _mask_as(valid, pred)
    if is_3d is not None:
        z = loss[..., 2:] * _mask_as(is_3d, loss).reshape(-1, *([1] * (loss.ndim - 1)))
        loss = torch.cat((loss[..., :2], z), -1)
    return loss


def param_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Upstream ``ParamLoss``: ``|pred - target| * valid``, element-wise (not reduced)."""
    return (pred - target).abs() * _mask_as(valid, pred)


def part_relative_joints(joints: torch.Tensor) -> torch.Tensor:
    """(B, 137, 3) camera (or any frame) joints -> upstream ``get_coord``'s ``joint_cam``.

    Body joints relative to the pelvis, left/right hand joints relative to their wrist, face
    joints relative to the neck (in that order of operations, as upstream).
    """
    if joints.ndim != 3 or joints.shape[1] != J.JOINT_NUM:
        raise ValueError(f"joints must be (B, {J.JOINT_NUM}, 3), got {tuple(joints.shape)}")
    rel = joints - joints[:, J.ROOT_JOINT_IDX : J.ROOT_JOINT_IDX + 1]
    # Body joints use the root, whose root-relative position is exactly 0.
    return rel - rel[:, _ANCHOR.to(joints.device)]


def hand_box_coords(
    coords: torch.Tensor, bbox: torch.Tensor, config: ModelConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Body heatmap cells -> hand heatmap cells of a hand box (upstream's train-time re-mapping).

    Args:
        coords: ``(N, P, 2 or 3)`` in body heatmap cells (z, if present, in body depth cells).
        bbox: ``(N, 4)`` xyxy hand boxes in body-input pixels (``NetworkOutput.lhand_bbox``).
        config: geometry.

    Returns:
        ``(coords (N, P, D) in hand heatmap cells, inside (N, P) bool)``; ``inside`` is True where
        x, y fall in ``[0, W_hand) x [0, H_hand)``.
    """
    c = config
    hx = c.output_hm_shape[2] / c.input_body_shape[1]
    hy = c.output_hm_shape[1] / c.input_body_shape[0]
    x1, y1, x2, y2 = (bbox[:, None, k] for k in range(4))
    # Same order of operations as upstream (subtract the corner, then scale).
    x = (coords[..., 0] - x1 * hx) * (c.output_hand_hm_shape[2] / ((x2 - x1) * hx))
    y = (coords[..., 1] - y1 * hy) * (c.output_hand_hm_shape[1] / ((y2 - y1) * hy))
    parts = [x, y]
    if coords.shape[-1] > 2:
        parts.append(coords[..., 2] * (c.output_hand_hm_shape[0] / c.output_hm_shape[0]))
    inside = (x >= 0) & (x < c.output_hand_hm_shape[2]) & (y >= 0) & (y < c.output_hand_hm_shape[1])
    return torch.stack(parts, -1), inside


def _both_hands(coords: torch.Tensor, boxes: torch.Tensor, config: ModelConfig):
    """(B, 137, D) coords, (B, 2, 4) boxes -> hand joints (25..64) re-mapped, and inside mask."""
    b = coords.shape[0]
    hands = coords[:, _HANDS].reshape(b * 2, _NUM_HAND, coords.shape[-1])
    mapped, inside = hand_box_coords(hands, boxes.reshape(b * 2, 4), config)
    return mapped.reshape(b, 2 * _NUM_HAND, -1), inside.reshape(b, 2 * _NUM_HAND)


def _remap_hand_targets(
    joint_img: torch.Tensor, trunc: torch.Tensor, boxes: torch.Tensor, config: ModelConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target joint_img (B,137,3) and trunc (B,137,1) with the hand joints in hand-box space."""
    hands, inside = _both_hands(joint_img, boxes, config)
    trunc = trunc.to(joint_img.dtype)
    hand_trunc = trunc[:, _HANDS] * inside[..., None].to(trunc.dtype)
    joint_img = torch.cat((joint_img[:, : _HANDS.start], hands, joint_img[:, _HANDS.stop :]), 1)
    trunc = torch.cat((trunc[:, : _HANDS.start], hand_trunc, trunc[:, _HANDS.stop :]), 1)
    return joint_img, trunc


def _aligned_projection(
    proj: torch.Tensor, target: torch.Tensor, trunc: torch.Tensor, boxes: torch.Tensor, config: ModelConfig
) -> torch.Tensor:
    """Projected joints (B,137,2, body heatmap cells) -> hands in hand-box space, then each hand
    and the face shifted by the masked mean of (target - prediction) over joints with trunc == 1
    (no shift where a group has none). ``target``/``trunc`` are the re-mapped targets."""
    proj = proj.to(torch.promote_types(proj.dtype, target.dtype))  # e.g. bf16 outputs, fp32 targets
    hands, _ = _both_hands(proj, boxes, config)
    proj = torch.cat((proj[:, : _HANDS.start], hands, proj[:, _HANDS.stop :]), 1)
    mask = trunc[..., 0] == 1  # (B, 137)
    diff = torch.where(mask[..., None], target[..., :2] - proj, torch.zeros_like(proj))
    groups = _GROUPS.to(dtype=proj.dtype, device=proj.device)  # (3, 137)
    sums = torch.einsum("bjd,gj->bgd", diff, groups)
    counts = torch.einsum("bj,gj->bg", mask.to(proj.dtype), groups)[..., None]
    trans = torch.where(counts > 0, sums / counts.clamp(min=1), torch.zeros_like(sums))  # (B, 3, 2)
    return proj + torch.einsum("bgd,gj->bjd", trans, groups)


def regressed_pose(params: SMPLXParams) -> torch.Tensor:
    """``(B, 159)`` axis-angle (radians) of the 53 joints Hand4Whole regresses, in its order
    (:data:`wbcap.body.joints.ORIG_JOINT_NAMES`: root, 21 body, 15 left hand, 15 right hand, jaw;
    hands relative to the hand mean): the layout of the ``smplx_pose`` targets. Converted in
    float32 with autocast off (:meth:`SMPLXParams.to_axis_angle`), differentiable."""
    aa = params.to_axis_angle()
    return torch.cat((aa.global_orient, aa.body_pose, aa.left_hand_pose, aa.right_hand_pose, aa.jaw_pose), 1)


def hand4whole_losses(
    out: RegressorOutput,
    targets: Mapping[str, torch.Tensor],
    meta_info: Mapping[str, torch.Tensor],
    config: ModelConfig,
    projection_trains_camera_only: bool = False,
) -> dict[str, torch.Tensor]:
    """All Hand4Whole training losses for one batch, each reduced by its mean (as upstream).

    Args:
        out: what :meth:`wbcap.model.regressor.WholeBodyRegressor.forward` returns for the batch
            (uses ``params.smplx`` poses/betas/expression, ``params`` box centres and sizes/``lhand_bbox``/
            ``rhand_bbox`` (body-input pixels)/``body_joint_img``/``lhand_joint_img``/
            ``rhand_joint_img``, and ``joints``, ``joints_proj``).
        targets, meta_info: collated upstream-schema batches (see
            :mod:`wbcap.train.data.synthetic`); not modified.
        config: the network's :class:`ModelConfig` (geometry only).
        projection_trains_camera_only: the 2D projection loss (``joint_proj``) reaches the camera
            translation only, the posed joints held fixed (upstream ``get_coord``, main/model.py:
            AGORA alone, ``trainset_3d == ['AGORA']`` and no 2D set, projects ``joint_cam.detach()``);
            the same values either way.

    Returns:
        ``{name: scalar tensor}`` in :data:`LOSS_NAMES` order.
    """
    p = out.params
    c = config
    t, m = targets, meta_info
    is_3d = m["is_3D"].to(out.joints.dtype)
    losses: dict[str, torch.Tensor] = {}

    losses["smplx_pose"] = param_loss(regressed_pose(p.smplx), t["smplx_pose"], m["smplx_pose_valid"]).mean()
    losses["smplx_shape"] = param_loss(p.smplx.betas, t["smplx_shape"], m["smplx_shape_valid"][:, None]).mean()
    losses["smplx_expr"] = param_loss(p.smplx.expression, t["smplx_expr"], m["smplx_expr_valid"][:, None]).mean()

    joint_cam = part_relative_joints(out.joints)
    joint_valid = m["joint_valid"].to(is_3d.dtype) * is_3d[:, None, None]
    losses["joint_cam"] = coord_loss(joint_cam, t["joint_cam"], joint_valid).mean()
    losses["smplx_joint_cam"] = coord_loss(joint_cam, t["smplx_joint_cam"], m["smplx_joint_valid"]).mean()

    for part in ("lhand", "rhand", "face"):
        valid = m[f"{part}_bbox_valid"][:, None]
        centre = coord_loss(getattr(p, f"{part}_bbox_center"), t[f"{part}_bbox_center"], valid)
        size = coord_loss(getattr(p, f"{part}_bbox_size"), t[f"{part}_bbox_size"], valid)
        losses[f"{part}_bbox"] = (centre + size).mean()

    boxes = torch.stack((p.lhand_bbox, p.rhand_bbox), 1)  # (B, 2, 4) body-input pixels, detached
    joint_img, joint_trunc = _remap_hand_targets(t["joint_img"], m["joint_trunc"], boxes, c)
    smplx_joint_img, smplx_trunc = _remap_hand_targets(t["smplx_joint_img"], m["smplx_joint_trunc"], boxes, c)

    joints_proj = out.joints_proj
    if projection_trains_camera_only:  # (the joints include the translation: held fixed, it is added back live)
        from wbcap.camera import crop_intrinsics, perspective_projection

        transl = p.smplx.transl[:, None, :].to(out.joints.dtype)
        joints_proj = perspective_projection(out.joints.detach() - transl.detach() + transl, *crop_intrinsics(c))
    to_hm = joints_proj.new_tensor(
        [c.output_hm_shape[2] / c.input_img_shape[1], c.output_hm_shape[1] / c.input_img_shape[0]]
    )
    proj = _aligned_projection(joints_proj * to_hm, joint_img, joint_trunc, boxes, c)
    losses["joint_proj"] = coord_loss(proj, joint_img[..., :2], joint_trunc).mean()

    pred_img = torch.cat((p.body_joint_img, p.lhand_joint_img, p.rhand_joint_img), 1)  # (B, 65, 3)
    losses["joint_img"] = coord_loss(
        pred_img, J.reduce_joint_set(joint_img), J.reduce_joint_set(joint_trunc), is_3d
    ).mean()
    losses["smplx_joint_img"] = coord_loss(
        pred_img, J.reduce_joint_set(smplx_joint_img), J.reduce_joint_set(smplx_trunc)
    ).mean()
    return losses


def total_loss(losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the (already averaged) terms, as upstream's trainer."""
    if not losses:
        raise ValueError("no loss terms")
    return sum(losses.values())  # type: ignore[return-value]
