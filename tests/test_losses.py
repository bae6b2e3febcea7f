"""Hand4Whole training losses: zero at the optimum, exact responses to known perturbations,
validity masks, the hand/face translation alignment, and equality with a per-sample port of
upstream's train branch (values and gradients)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import default_collate

from wbcap.body import joints as J
from wbcap.body.params import SMPLXParams
from wbcap.model.hand4whole import restore_bbox
from wbcap.model.regressor import RegressorOutput, WholeBodyRegressor
from wbcap.train.data.synthetic import SyntheticWholeBody, part_boxes, project_joint_targets
from wbcap.train.losses import (
    LOSS_NAMES,
    coord_loss,
    hand4whole_losses,
    hand_box_coords,
    param_loss,
    part_relative_joints,
    regressed_pose,
    total_loss,
)

B = 2


@pytest.fixture(scope="module")
def regressor(small_net, body_layer):
    return WholeBodyRegressor(small_net, body_layer).eval()


@pytest.fixture(scope="module")
def batch(body_layer, small_config):
    ds = SyntheticWholeBody(body_layer, B, seed=5, config=small_config)
    return default_collate([ds[i] for i in range(B)])


@pytest.fixture(scope="module")
def raw_out(regressor, batch) -> RegressorOutput:
    with torch.no_grad():
        return regressor(batch[0]["img"])


def consistent(out: RegressorOutput, config):
    """Targets built from the output through the dataset's mapping, and the output with its
    position/box heads replaced so that every loss term is zero."""
    p = out.params
    joint_img, joint_cam, trunc = project_joint_targets(out.joints, config)
    boxes = part_boxes(joint_img)
    pose = regressed_pose(p.smplx)
    targets = {
        "joint_img": joint_img,
        "smplx_joint_img": joint_img.clone(),
        "joint_cam": joint_cam,
        "smplx_joint_cam": joint_cam.clone(),
        "smplx_pose": pose.clone(),
        "smplx_shape": p.smplx.betas.clone(),
        "smplx_expr": p.smplx.expression.clone(),
        **boxes,
    }
    ones = torch.ones(B)
    meta = {
        "joint_valid": torch.ones(B, J.JOINT_NUM, 1),
        "joint_trunc": trunc,
        "smplx_joint_valid": torch.ones(B, J.JOINT_NUM, 1),
        "smplx_joint_trunc": trunc.clone(),
        "smplx_pose_valid": torch.ones(B, 159),
        "smplx_shape_valid": ones.clone(),
        "smplx_expr_valid": ones.clone(),
        "is_3D": ones.clone(),
        "lhand_bbox_valid": ones.clone(),
        "rhand_bbox_valid": ones.clone(),
        "face_bbox_valid": ones.clone(),
    }
    # Hand boxes as the network restores them from its (here: perfect) box predictions.
    hand_ar = config.input_hand_shape[1] / config.input_hand_shape[0]
    face_ar = config.input_face_shape[1] / config.input_face_shape[0]
    bbox = {
        name: restore_bbox(boxes[f"{name}_bbox_center"], boxes[f"{name}_bbox_size"], config, ar, ext)
        for name, ar, ext in (
            ("lhand", hand_ar, config.hand_box_extension),
            ("rhand", hand_ar, config.hand_box_extension),
            ("face", face_ar, config.face_box_extension),
        )
    }
    lh, _ = hand_box_coords(joint_img[:, J.JOINT_PART["lhand"]], bbox["lhand"], config)
    rh, _ = hand_box_coords(joint_img[:, J.JOINT_PART["rhand"]], bbox["rhand"], config)
    params = dataclasses.replace(
        p,
        body_joint_img=joint_img[:, J.JOINT_PART["body"]].clone(),
        lhand_joint_img=lh,
        rhand_joint_img=rh,
        lhand_bbox=bbox["lhand"],
        rhand_bbox=bbox["rhand"],
        face_bbox=bbox["face"],
        **{k: v.clone() for k, v in boxes.items()},
    )
    return dataclasses.replace(out, params=params), targets, meta


@pytest.fixture()
def setup(raw_out, small_config):
    return consistent(raw_out, small_config)


def test_zero_loss_when_predictions_equal_targets(setup, small_config):
    out, targets, meta = setup
    losses = hand4whole_losses(out, targets, meta, small_config)
    assert tuple(losses) == LOSS_NAMES
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), name
        assert value.item() == pytest.approx(0.0, abs=2e-6), name
    assert total_loss(losses).item() == pytest.approx(0.0, abs=2e-5)
    # The hand joints lie inside the (restored) hand boxes, so the hand re-mapping is exercised.
    _, inside = hand_box_coords(targets["joint_img"][:, J.JOINT_PART["lhand"]], out.params.lhand_bbox, small_config)
    assert inside.all()
    assert meta["joint_trunc"].mean() > 0.5


def test_inputs_are_not_modified(setup, small_config):
    out, targets, meta = setup
    before = {k: v.clone() for k, v in {**targets, **meta}.items()}
    hand4whole_losses(out, targets, meta, small_config)
    for k, v in {**targets, **meta}.items():
        assert torch.equal(v, before[k]), k


def test_param_terms_respond_to_known_offsets(setup, small_config):
    out, targets, meta = setup
    g = torch.Generator().manual_seed(0)
    meta["smplx_pose_valid"] = (torch.rand(B, 159, generator=g) < 0.6).float()
    meta["smplx_shape_valid"] = torch.tensor([1.0, 0.0])
    meta["smplx_expr_valid"] = torch.tensor([0.0, 1.0])
    targets["smplx_pose"] = targets["smplx_pose"] + 0.1
    targets["smplx_shape"] = targets["smplx_shape"] - 0.2
    targets["smplx_expr"] = targets["smplx_expr"] + 0.3
    losses = hand4whole_losses(out, targets, meta, small_config)
    frac = meta["smplx_pose_valid"].mean().item()
    assert 0.3 < frac < 0.9
    assert losses["smplx_pose"].item() == pytest.approx(0.1 * frac, rel=1e-4)
    assert losses["smplx_shape"].item() == pytest.approx(0.2 * 0.5, rel=1e-4)
    assert losses["smplx_expr"].item() == pytest.approx(0.3 * 0.5, rel=1e-4)
    for name in set(LOSS_NAMES) - {"smplx_pose", "smplx_shape", "smplx_expr"}:
        assert losses[name].item() == pytest.approx(0.0, abs=2e-6), name


def test_joint_cam_terms_and_is_3d(setup, small_config):
    out, targets, meta = setup
    meta["is_3D"] = torch.tensor([1.0, 0.0])
    meta["joint_valid"][0, :10] = 0
    targets["joint_cam"] = targets["joint_cam"] + 0.05
    targets["smplx_joint_cam"] = targets["smplx_joint_cam"] - 0.02
    losses = hand4whole_losses(out, targets, meta, small_config)
    # joint_cam: valid * is_3D -> only sample 0, minus its 10 invalid joints.
    assert losses["joint_cam"].item() == pytest.approx(0.05 * (J.JOINT_NUM - 10) / (B * J.JOINT_NUM), rel=1e-4)
    # smplx_joint_cam is not masked by is_3D.
    assert losses["smplx_joint_cam"].item() == pytest.approx(0.02, rel=1e-4)


def test_bbox_terms(setup, small_config):
    out, targets, meta = setup
    targets["lhand_bbox_center"] = targets["lhand_bbox_center"] + 0.5
    targets["lhand_bbox_size"] = targets["lhand_bbox_size"] - 0.2
    targets["rhand_bbox_size"] = targets["rhand_bbox_size"] + 0.4
    targets["face_bbox_center"] = targets["face_bbox_center"] + 0.3
    meta["face_bbox_valid"] = torch.tensor([0.0, 1.0])
    losses = hand4whole_losses(out, targets, meta, small_config)
    assert losses["lhand_bbox"].item() == pytest.approx(0.7, rel=1e-4)
    assert losses["rhand_bbox"].item() == pytest.approx(0.4, rel=1e-4)
    assert losses["face_bbox"].item() == pytest.approx(0.15, rel=1e-4)


def test_joint_img_terms(setup, small_config):
    out, targets, meta = setup
    body = J.JOINT_PART["body"]
    meta["is_3D"] = torch.tensor([0.0, 1.0])
    # z of the body joints: counted only for the 3D sample, and not in joint_proj (x, y only).
    targets["joint_img"] = targets["joint_img"].clone()
    targets["joint_img"][:, body, 2] += 0.4
    # x of the body joints of smplx_joint_img: no is_3D masking there.
    targets["smplx_joint_img"] = targets["smplx_joint_img"].clone()
    targets["smplx_joint_img"][:, body, 0] -= 0.1
    losses = hand4whole_losses(out, targets, meta, small_config)
    n3d = meta["joint_trunc"][1, body].sum().item()
    nall = meta["smplx_joint_trunc"][:, body].sum().item()
    assert losses["joint_img"].item() == pytest.approx(0.4 * n3d / (B * 65 * 3), rel=1e-4)
    assert losses["smplx_joint_img"].item() == pytest.approx(0.1 * nall / (B * 65 * 3), rel=1e-4)
    assert losses["joint_proj"].item() == pytest.approx(0.0, abs=2e-6)


def test_validity_masks_zero_every_term(setup, small_config):
    out, targets, meta = setup
    targets = {k: v + 1.0 for k, v in targets.items()}
    meta = {k: torch.zeros_like(v) for k, v in meta.items()}
    losses = hand4whole_losses(out, targets, meta, small_config)
    for name, value in losses.items():
        assert value.item() == 0.0, name


def test_translation_alignment_removes_constant_hand_and_face_offsets(setup, small_config):
    out, targets, meta = setup
    proj = out.joints_proj.clone()
    proj[:, J.JOINT_PART["lhand"]] += torch.tensor([7.0, -5.0])  # input-crop pixels
    proj[:, J.JOINT_PART["rhand"]] += torch.tensor([-3.0, 9.0])
    proj[:, J.JOINT_PART["face"]] += torch.tensor([4.0, 4.0])
    losses = hand4whole_losses(dataclasses.replace(out, joints_proj=proj), targets, meta, small_config)
    assert losses["joint_proj"].item() == pytest.approx(0.0, abs=2e-6)
    # A body offset is not aligned away: 6.4 px = 0.1 body heatmap cells in x.
    proj[:, J.JOINT_PART["body"]] += torch.tensor([6.4, 0.0])
    losses = hand4whole_losses(dataclasses.replace(out, joints_proj=proj), targets, meta, small_config)
    n = meta["joint_trunc"][:, J.JOINT_PART["body"]].sum().item()
    assert losses["joint_proj"].item() == pytest.approx(0.1 * n / (B * J.JOINT_NUM * 2), rel=1e-4)


def test_coord_and_param_loss_elementwise():
    pred = torch.zeros(2, 3, 3)
    target = torch.ones(2, 3, 3)
    valid = torch.tensor([[1.0], [0.0], [1.0]]).expand(2, 3, 1)
    loss = coord_loss(pred, target, valid, torch.tensor([1.0, 0.0]))
    assert loss.shape == (2, 3, 3)
    assert loss[0, :, :].sum() == 6 and loss[1, :, :2].sum() == 4 and loss[1, :, 2].sum() == 0
    assert torch.equal(param_loss(torch.zeros(2, 4), torch.full((2, 4), -2.0), torch.tensor([[1.0], [0.0]])).sum(1), torch.tensor([8.0, 0.0]))


def test_part_relative_joints():
    joints = torch.randn(3, J.JOINT_NUM, 3)
    rel = part_relative_joints(joints)
    assert torch.allclose(rel[:, :25], joints[:, :25] - joints[:, :1])
    assert torch.allclose(rel[:, 25:45], joints[:, 25:45] - joints[:, 12:13], atol=1e-6)
    assert torch.allclose(rel[:, 45:65], joints[:, 45:65] - joints[:, 13:14], atol=1e-6)
    assert torch.allclose(rel[:, 65:], joints[:, 65:] - joints[:, 7:8], atol=1e-6)


# ------------------------------------------------------------------------------------------
# Per-sample reference: a direct port of upstream's train branch (main/model.py).
# ------------------------------------------------------------------------------------------
def reference_losses(out: RegressorOutput, targets, meta_info, cfg):
    p = out.params
    targets = dict(targets)
    meta_info = dict(meta_info)

    def CoordLoss(coord_out, coord_gt, valid, is_3D=None):
        loss = torch.abs(coord_out - coord_gt) * valid
        if is_3D is not None:
            loss_z = loss[:, :, 2:] * is_3D[:, None, None].float()
            loss = torch.cat((loss[:, :, :2], loss_z), 2)
        return loss

    def ParamLoss(param_out, param_gt, valid):
        return torch.abs(param_out - param_gt) * valid

    part = J.JOINT_PART
    # get_coord: joint_proj in body heatmap cells and part-relative joint_cam.
    jc = out.joints
    princpt = cfg.princpt
    x = jc[:, :, 0] / (jc[:, :, 2] + 1e-4) * cfg.focal[0] + princpt[0]
    y = jc[:, :, 1] / (jc[:, :, 2] + 1e-4) * cfg.focal[1] + princpt[1]
    x = x / cfg.input_body_shape[1] * cfg.output_hm_shape[2]
    y = y / cfg.input_body_shape[0] * cfg.output_hm_shape[1]
    joint_proj = torch.stack((x, y), 2)
    joint_cam = jc - jc[:, J.ROOT_JOINT_IDX, None, :]
    for name, root in (("lhand", J.LWRIST_IDX), ("rhand", J.RWRIST_IDX), ("face", J.NECK_IDX)):
        idx = part[name]
        sub = joint_cam[:, idx, :] - joint_cam[:, root, None, :]
        joint_cam = torch.cat((joint_cam[:, : idx[0], :], sub, joint_cam[:, idx[-1] + 1 :, :]), 1)

    aa = p.smplx.to_axis_angle()  # upstream's network outputs axis-angle
    pose = torch.cat((aa.global_orient, aa.body_pose, aa.left_hand_pose, aa.right_hand_pose, aa.jaw_pose), 1)
    joint_img = torch.cat((p.body_joint_img, p.lhand_joint_img, p.rhand_joint_img), 1)
    loss = {}
    loss["smplx_pose"] = ParamLoss(pose, targets["smplx_pose"], meta_info["smplx_pose_valid"])
    loss["smplx_shape"] = ParamLoss(aa.betas, targets["smplx_shape"], meta_info["smplx_shape_valid"][:, None])
    loss["smplx_expr"] = ParamLoss(aa.expression, targets["smplx_expr"], meta_info["smplx_expr_valid"][:, None])
    loss["joint_cam"] = CoordLoss(joint_cam, targets["joint_cam"], meta_info["joint_valid"] * meta_info["is_3D"][:, None, None])
    loss["smplx_joint_cam"] = CoordLoss(joint_cam, targets["smplx_joint_cam"], meta_info["smplx_joint_valid"])
    for name in ("lhand", "rhand", "face"):
        v = meta_info[f"{name}_bbox_valid"][:, None]
        loss[f"{name}_bbox"] = CoordLoss(getattr(p, f"{name}_bbox_center"), targets[f"{name}_bbox_center"], v) + CoordLoss(
            getattr(p, f"{name}_bbox_size"), targets[f"{name}_bbox_size"], v
        )

    for part_name, bbox in (("lhand", p.lhand_bbox), ("rhand", p.rhand_bbox)):
        for coord_name, trunc_name in (("joint_img", "joint_trunc"), ("smplx_joint_img", "smplx_joint_trunc")):
            x = targets[coord_name][:, part[part_name], 0]
            y = targets[coord_name][:, part[part_name], 1]
            z = targets[coord_name][:, part[part_name], 2]
            trunc = meta_info[trunc_name][:, part[part_name], 0]
            x = x - (bbox[:, None, 0] / cfg.input_body_shape[1] * cfg.output_hm_shape[2])
            x = x * (cfg.output_hand_hm_shape[2] / ((bbox[:, None, 2] - bbox[:, None, 0]) / cfg.input_body_shape[1] * cfg.output_hm_shape[2]))
            y = y - (bbox[:, None, 1] / cfg.input_body_shape[0] * cfg.output_hm_shape[1])
            y = y * (cfg.output_hand_hm_shape[1] / ((bbox[:, None, 3] - bbox[:, None, 1]) / cfg.input_body_shape[0] * cfg.output_hm_shape[1]))
            z = z * (cfg.output_hand_hm_shape[0] / cfg.output_hm_shape[0])
            trunc = trunc * ((x >= 0) * (x < cfg.output_hand_hm_shape[2]) * (y >= 0) * (y < cfg.output_hand_hm_shape[1]))
            coord = torch.stack((x, y, z), 2)
            trunc = trunc[:, :, None]
            i0, i1 = part[part_name][0], part[part_name][-1] + 1
            targets[coord_name] = torch.cat((targets[coord_name][:, :i0], coord, targets[coord_name][:, i1:]), 1)
            meta_info[trunc_name] = torch.cat((meta_info[trunc_name][:, :i0], trunc, meta_info[trunc_name][:, i1:]), 1)

    for part_name, bbox in (("lhand", p.lhand_bbox), ("rhand", p.rhand_bbox)):
        x = joint_proj[:, part[part_name], 0]
        y = joint_proj[:, part[part_name], 1]
        x = x - (bbox[:, None, 0] / cfg.input_body_shape[1] * cfg.output_hm_shape[2])
        x = x * (cfg.output_hand_hm_shape[2] / ((bbox[:, None, 2] - bbox[:, None, 0]) / cfg.input_body_shape[1] * cfg.output_hm_shape[2]))
        y = y - (bbox[:, None, 1] / cfg.input_body_shape[0] * cfg.output_hm_shape[1])
        y = y * (cfg.output_hand_hm_shape[1] / ((bbox[:, None, 3] - bbox[:, None, 1]) / cfg.input_body_shape[0] * cfg.output_hm_shape[1]))
        coord = torch.stack((x, y), 2)
        trans = []
        for bid in range(coord.shape[0]):
            mask = meta_info["joint_trunc"][bid, part[part_name], 0] == 1
            if torch.sum(mask) == 0:
                trans.append(torch.zeros(2))
            else:
                trans.append((-coord[bid, mask, :2] + targets["joint_img"][:, part[part_name], :][bid, mask, :2]).mean(0))
        coord = coord + torch.stack(trans)[:, None, :]
        i0, i1 = part[part_name][0], part[part_name][-1] + 1
        joint_proj = torch.cat((joint_proj[:, :i0], coord, joint_proj[:, i1:]), 1)

    coord = joint_proj[:, part["face"], :]
    trans = []
    for bid in range(coord.shape[0]):
        mask = meta_info["joint_trunc"][bid, part["face"], 0] == 1
        if torch.sum(mask) == 0:
            trans.append(torch.zeros(2))
        else:
            trans.append((-coord[bid, mask, :2] + targets["joint_img"][:, part["face"], :][bid, mask, :2]).mean(0))
    coord = coord + torch.stack(trans)[:, None, :]
    joint_proj = torch.cat((joint_proj[:, : part["face"][0]], coord, joint_proj[:, part["face"][-1] + 1 :]), 1)

    loss["joint_proj"] = CoordLoss(joint_proj, targets["joint_img"][:, :, :2], meta_info["joint_trunc"])
    loss["joint_img"] = CoordLoss(joint_img, J.reduce_joint_set(targets["joint_img"]), J.reduce_joint_set(meta_info["joint_trunc"]), meta_info["is_3D"])
    loss["smplx_joint_img"] = CoordLoss(joint_img, J.reduce_joint_set(targets["smplx_joint_img"]), J.reduce_joint_set(meta_info["smplx_joint_trunc"]))
    return {k: v.mean() for k, v in loss.items()}


def _randomised(setup):
    """Noisy targets, random masks, one sample 2D-only, one hand and the face fully truncated."""
    out, targets, meta = setup
    g = torch.Generator().manual_seed(1)
    targets = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in targets.items()}
    for k, v in meta.items():
        meta[k] = (torch.rand(v.shape, generator=g) < 0.75).float()
    for k in ("smplx_shape_valid", "smplx_expr_valid", "lhand_bbox_valid", "rhand_bbox_valid", "face_bbox_valid"):
        meta[k] = torch.tensor([1.0, 0.0]) if len(k) % 2 else torch.tensor([0.0, 1.0])
    meta["is_3D"] = torch.tensor([1.0, 0.0])
    meta["joint_trunc"][1, J.JOINT_PART["lhand"]] = 0
    meta["joint_trunc"][0, J.JOINT_PART["face"]] = 0
    return out, targets, meta


def test_vectorised_equals_per_sample_reference(setup, small_config):
    out, targets, meta = _randomised(setup)
    ours = hand4whole_losses(out, targets, meta, small_config)
    ref = reference_losses(out, targets, meta, small_config)
    assert tuple(ours) == tuple(ref)
    for name in ref:
        assert ref[name].item() > 0, name
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-5, atol=1e-6, msg=name)


def test_gradients_equal_reference(setup, small_config):
    out, targets, meta = _randomised(setup)
    p = out.params
    leaves = {
        "joints": out.joints.clone().requires_grad_(),
        "joints_proj": out.joints_proj.clone().requires_grad_(),
        "body_pose": p.smplx.body_pose.clone().requires_grad_(),  # (B, 21, 3, 3) matrices
        "lhand_joint_img": p.lhand_joint_img.clone().requires_grad_(),
        "face_bbox_size": p.face_bbox_size.clone().requires_grad_(),
    }
    smplx = dataclasses.replace(p.smplx, body_pose=leaves["body_pose"])
    params = dataclasses.replace(p, smplx=smplx, lhand_joint_img=leaves["lhand_joint_img"], face_bbox_size=leaves["face_bbox_size"])
    # The reference projects out.joints itself; keep joints_proj consistent with the leaf.
    (fx, fy), (cx, cy) = (small_config.focal[0] * 2, small_config.focal[1] * 2), (small_config.princpt[0] * 2, small_config.princpt[1] * 2)
    j = leaves["joints"]
    proj = torch.stack((j[..., 0] / (j[..., 2] + 1e-4) * fx + cx, j[..., 1] / (j[..., 2] + 1e-4) * fy + cy), -1)
    ours = total_loss(hand4whole_losses(dataclasses.replace(out, params=params, joints=j, joints_proj=proj), targets, meta, small_config))
    g_ours = torch.autograd.grad(ours, [leaves[k] for k in ("joints", "body_pose", "lhand_joint_img", "face_bbox_size")])
    ref = total_loss(reference_losses(dataclasses.replace(out, params=params, joints=j), targets, meta, small_config))
    g_ref = torch.autograd.grad(ref, [leaves[k] for k in ("joints", "body_pose", "lhand_joint_img", "face_bbox_size")])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_ours, g_ref):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_total_loss_backpropagates_into_the_network(regressor, batch, small_config):
    inputs, targets, meta = batch
    out = regressor(inputs["img"])
    losses = hand4whole_losses(out, targets, meta, small_config)
    total = total_loss(losses)
    assert torch.isfinite(total) and total.item() == pytest.approx(sum(v.item() for v in losses.values()), rel=1e-6)
    # The output heads (the upright test network zeroes their weights, so upstream layers get
    # no gradient yet) and the position/box heads. (The hand position head gets none here: the
    # random network's hand boxes are sub-pixel, so every hand target is truncated, as upstream.)
    names = (
        "body_rotation_net.root_pose_out.0.weight",
        "body_rotation_net.body_pose_out.0.weight",
        "body_rotation_net.shape_out.0.weight",
        "body_rotation_net.cam_out.0.weight",
        "body_position_net.conv.0.weight",
        "box_net.bbox_center.0.weight",
        "box_net.lhand_size.2.weight",
        "hand_rotation_net.hand_pose_out.0.weight",
        "face_regressor.expr_out.0.weight",
        "face_regressor.jaw_pose_out.0.weight",
    )
    named = dict(regressor.net.named_parameters())
    params = {n: named[n] for n in names}
    grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    for (name, _), grad in zip(params.items(), grads):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


@pytest.mark.slow  # (a training step per dataset mix; the total loss's gradients stay in the fast loop)
def test_agora_alone_the_projection_loss_trains_the_camera_only(regressor, batch, small_config):
    """Upstream's get_coord (main/model.py) projects joint_cam.detach() when AGORA is the only
    training set: joint_proj then reaches the camera head, not the pose and shape heads (a training
    trial: wbcap's reached them). The loss's value and its camera gradient are the same either way."""
    inputs, targets, meta = batch
    named = dict(regressor.net.named_parameters())
    heads = ["body_rotation_net.cam_out.0.weight", "body_rotation_net.body_pose_out.0.weight",
             "body_rotation_net.shape_out.0.weight", "body_rotation_net.root_pose_out.0.weight"]
    grads = {}
    for camera_only in (False, True):
        loss = hand4whole_losses(regressor(inputs["img"]), targets, meta, small_config, camera_only)["joint_proj"]
        grads[camera_only] = (loss, torch.autograd.grad(loss, [named[n] for n in heads], allow_unused=True))
    (plain, g_plain), (held, g_held) = grads[False], grads[True]
    assert plain.item() > 0 and held.item() == pytest.approx(plain.item(), rel=1e-6)
    torch.testing.assert_close(g_held[0], g_plain[0], rtol=1e-4, atol=1e-9)  # (the camera's)
    for name, a, b in zip(heads[1:], g_plain[1:], g_held[1:]):
        assert a is not None and a.abs().sum() > 0, name  # (reached without: the test can fail)
        assert b is None or b.abs().sum() == 0, name


def test_low_precision_outputs(setup, small_config):
    """Outputs in bfloat16 (autocast) against float32 targets: finite, close to float32."""
    out, targets, meta = _randomised(setup)

    def bf16(x):
        if isinstance(x, SMPLXParams):
            return x.to(torch.bfloat16)
        return x.to(torch.bfloat16) if torch.is_tensor(x) and x.is_floating_point() else x

    params = dataclasses.replace(out.params, **{f.name: bf16(getattr(out.params, f.name)) for f in dataclasses.fields(out.params)})
    low = dataclasses.replace(out, params=params, **{f.name: bf16(getattr(out, f.name)) for f in dataclasses.fields(out) if f.name != "params"})
    ref = hand4whole_losses(out, targets, meta, small_config)
    got = hand4whole_losses(low, targets, meta, small_config)
    for name in ref:
        assert torch.isfinite(got[name]), name
        # joint_proj compares bf16 pixels (about 1 px resolution at 256) -- loose tolerance.
        assert got[name].float().item() == pytest.approx(ref[name].item(), rel=0.05, abs=0.02), name
