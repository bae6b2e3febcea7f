"""The synthetic whole-body training set: schema, determinism, targets consistent with the
rendered image and with the network's own projection, DataLoader collation, speed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wbcap.body import joints as J
from wbcap.body.params import SMPLXParams
from wbcap.model.regressor import RegressorOutput, WholeBodyRegressor
from wbcap.train.data.synthetic import (
    BODY_3D_SIZE,
    HAND_3D_SIZE,
    SyntheticWholeBody,
    part_boxes,
    project_joint_targets,
)
from wbcap.train.losses import hand4whole_losses, part_relative_joints

TARGET_SHAPES = {
    "joint_img": (137, 3),
    "smplx_joint_img": (137, 3),
    "joint_cam": (137, 3),
    "smplx_joint_cam": (137, 3),
    "smplx_pose": (159,),
    "smplx_shape": (10,),
    "smplx_expr": (10,),
    "lhand_bbox_center": (2,),
    "rhand_bbox_center": (2,),
    "face_bbox_center": (2,),
    "lhand_bbox_size": (2,),
    "rhand_bbox_size": (2,),
    "face_bbox_size": (2,),
}
META_SHAPES = {
    "joint_valid": (137, 1),
    "joint_trunc": (137, 1),
    "smplx_joint_valid": (137, 1),
    "smplx_joint_trunc": (137, 1),
    "smplx_pose_valid": (159,),
    "smplx_shape_valid": (),
    "smplx_expr_valid": (),
    "is_3D": (),
    "lhand_bbox_valid": (),
    "rhand_bbox_valid": (),
    "face_bbox_valid": (),
}


@pytest.fixture(scope="module")
def dataset(body_layer, small_config):
    return SyntheticWholeBody(body_layer, 16, seed=3, config=small_config)


def _to_pixels(xy: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Body heatmap cells -> integer pixel indices of an (H, W) image (pixel-centre convention)."""
    h, w = size
    px = xy[..., 0] / 6 * w
    py = xy[..., 1] / 8 * h
    return np.stack((np.rint(px.numpy()), np.rint(py.numpy())), -1).astype(int)


def test_images_are_the_networks_input_size_by_default(body_layer, small_config):
    """``wbcap train`` passes only the stage's model: its samples must be that network's crop size
    (they were always 512x384, the released network's), as the other training sets make theirs."""
    from dataclasses import replace

    config = replace(small_config, input_img_shape=(256, 192), input_body_shape=(128, 96), output_hm_shape=(8, 4, 3))
    inputs, targets, _ = SyntheticWholeBody(body_layer, 1, seed=3, config=config)[0]
    assert inputs["img"].shape == (3, 256, 192)
    # the same body and camera as at 512x384: the targets (heatmap cells) do not depend on the image size
    full = SyntheticWholeBody(body_layer, 1, seed=3, config=config, image_size=(512, 384))[0][1]
    np.testing.assert_allclose(targets["joint_img"], full["joint_img"], atol=1e-5)


def test_schema(dataset):
    inputs, targets, meta = dataset[0]
    assert set(inputs) == {"img"}
    img = inputs["img"]
    assert img.shape == (3, 512, 384) and img.dtype == np.float32  # (numpy, as the real sets: one batch holds both)
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert {k: tuple(v.shape) for k, v in targets.items()} == TARGET_SHAPES
    assert {k: tuple(v.shape) for k, v in meta.items()} == META_SHAPES
    for v in (*targets.values(), *meta.values()):
        assert isinstance(v, (np.ndarray, np.float32)) and v.dtype == np.float32 and np.isfinite(v).all()
    for k in ("joint_valid", "smplx_joint_valid", "smplx_pose_valid", "smplx_shape_valid", "smplx_expr_valid",
              "is_3D", "lhand_bbox_valid", "rhand_bbox_valid", "face_bbox_valid"):  # fmt: skip
        assert (meta[k] == 1).all(), k
    assert len(dataset) == 16
    with pytest.raises(IndexError):
        dataset.generate(16)


def test_deterministic_per_index(dataset, body_layer, small_config):
    a, b = dataset.generate(5), SyntheticWholeBody(body_layer, 16, seed=3, config=small_config).generate(5)
    assert np.array_equal(a.image, b.image)
    for part in ("inputs", "targets", "meta_info"):
        da, db = getattr(a, part), getattr(b, part)
        assert all(torch.equal(da[k], db[k]) for k in da), part
    other = dataset.generate(6)
    assert not np.array_equal(a.image, other.image)
    assert not torch.equal(a.targets["smplx_pose"], other.targets["smplx_pose"])
    reseeded = SyntheticWholeBody(body_layer, 16, seed=4, config=small_config).generate(5)
    assert not torch.equal(a.targets["smplx_pose"], reseeded.targets["smplx_pose"])


def test_targets_follow_from_the_parameters(dataset, body_layer, small_config):
    s = dataset.generate(2)
    p = s.params
    out = body_layer(**{k: v for k, v in p.items() if k != "transl"}, transl=p["transl"])
    joints = out.joints[:, list(J.JOINT_IDX)]
    rel = part_relative_joints(joints)[0]
    torch.testing.assert_close(s.targets["joint_cam"], rel, atol=1e-5, rtol=0)
    torch.testing.assert_close(s.targets["smplx_joint_cam"], rel, atol=1e-5, rtol=0)
    # Pose vector: root, body, left hand, right hand, jaw.
    pose = torch.cat([p[k][0] for k in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose")])
    assert torch.equal(s.targets["smplx_pose"], pose)
    assert torch.equal(s.targets["smplx_shape"], p["betas"][0])
    assert torch.equal(s.targets["smplx_expr"], p["expression"][0])
    # Projection with the virtual camera (focal 5000, princpt (96, 128) in 256x192 px).
    j = joints[0]
    x = (j[:, 0] / (j[:, 2] + 1e-4) * 5000 + 96) / 192 * 6
    y = (j[:, 1] / (j[:, 2] + 1e-4) * 5000 + 128) / 256 * 8
    torch.testing.assert_close(s.targets["joint_img"][:, :2], torch.stack((x, y), 1), atol=1e-4, rtol=0)
    # Depth: discretised part-relative depth (upstream's body/hand sizes).
    body_z = (rel[:25, 2] / (BODY_3D_SIZE / 2) + 1) / 2 * 8
    hand_z = (rel[25:65, 2] / (HAND_3D_SIZE / 2) + 1) / 2 * 8
    torch.testing.assert_close(s.targets["joint_img"][:25, 2], body_z, atol=1e-4, rtol=0)
    torch.testing.assert_close(s.targets["joint_img"][25:65, 2], hand_z, atol=1e-4, rtol=0)
    ji = s.targets["joint_img"]
    inside = (ji[:, 0] >= 0) & (ji[:, 0] < 6) & (ji[:, 1] >= 0) & (ji[:, 1] < 8) & (ji[:, 2] >= 0) & (ji[:, 2] < 8)
    assert torch.equal(s.meta_info["joint_trunc"][:, 0], inside.float())
    # The whole body is in frame and at 40-50 m.
    assert (ji[:, 0] > 0).all() and (ji[:, 0] < 6).all() and (ji[:, 1] > 0).all() and (ji[:, 1] < 8).all()
    assert 39.0 < float(joints[0, J.ROOT_JOINT_IDX, 2]) < 52.0


def test_joints_land_on_the_rendered_body(dataset):
    for index in range(4):
        s = dataset.generate(index)
        sil = s.silhouette
        assert 0.05 < sil.mean() < 0.6
        pix = _to_pixels(s.targets["joint_img"], sil.shape)
        on = sil[pix[:, 1], pix[:, 0]]
        assert on[J.ROOT_JOINT_IDX] and on[J.NECK_IDX], index
        assert on[J.JOINT_PART["body"]].mean() >= 0.8, index
        assert on[J.JOINT_PART["face"]].mean() >= 0.9, index
        # The rendering is away from the crop border (the body is fully visible).
        assert not sil[0].any() and not sil[-1].any() and not sil[:, 0].any() and not sil[:, -1].any()


def test_hand_and_face_boxes_contain_their_joints(dataset):
    for index in range(4):
        s = dataset.generate(index)
        t = s.targets
        sil = s.silhouette
        for part in ("lhand", "rhand", "face"):
            c, size = t[f"{part}_bbox_center"], t[f"{part}_bbox_size"]
            lo, hi = c - size / 2, c + size / 2
            xy = t["joint_img"][J.JOINT_PART[part], :2]
            assert (xy >= lo).all() and (xy <= hi).all(), (index, part)
            assert (size > 0).all() and (size < 3).all(), (index, part)
            # The box shows that part of the body.
            (x0, y0), (x1, y1) = _to_pixels(lo, sil.shape), _to_pixels(hi, sil.shape)
            assert sil[y0 : y1 + 1, x0 : x1 + 1].mean() > 0.2, (index, part)
        # The left hand (subject's left) is on the image right of the right hand.
        assert t["lhand_bbox_center"][0] > t["rhand_bbox_center"][0]


def test_part_boxes_and_projection_are_batched():
    joints = torch.randn(3, J.JOINT_NUM, 3) * 0.3 + torch.tensor([0.0, 0.0, 45.0])
    from wbcap.config import ModelConfig

    ji, jc, tr = project_joint_targets(joints, ModelConfig())
    assert ji.shape == (3, 137, 3) and jc.shape == (3, 137, 3) and tr.shape == (3, 137, 1)
    boxes = part_boxes(ji)
    for i in range(3):
        one = part_boxes(ji[i : i + 1])
        for k in boxes:
            assert torch.equal(boxes[k][i : i + 1], one[k])


def test_ground_truth_parameters_give_zero_loss(dataset, small_net, body_layer, small_config):
    """The targets are exactly what the network's own forward computes for the true params."""
    reg = WholeBodyRegressor(small_net, body_layer).eval()
    samples = [dataset.generate(i) for i in range(2)]
    img = torch.stack([s.inputs["img"] for s in samples])
    targets = {k: torch.stack([s.targets[k] for s in samples]) for k in samples[0].targets}
    meta = {k: torch.stack([s.meta_info[k] for s in samples]) for k in samples[0].meta_info}
    with torch.no_grad():
        net_out = reg(img)
        gt = {k: torch.cat([s.params[k] for s in samples]) for k in samples[0].params}
        p = dataclasses.replace(
            net_out.params,
            smplx=SMPLXParams.from_mapping(gt),
            **{k: targets[k] for k in targets if "bbox" in k},
        )
        # What WholeBodyRegressor.forward does after the network.
        verts, joints144 = reg.body_forward(p)
        joints = joints144[:, list(J.JOINT_IDX)]
        (fx, fy), (cx, cy) = reg.crop_camera()
        z = joints[..., 2] + 1e-4
        proj = torch.stack((joints[..., 0] / z * fx + cx, joints[..., 1] / z * fy + cy), 2)
        out = RegressorOutput(p, verts, joints, proj, net_out.lhand_bbox, net_out.rhand_bbox, net_out.face_bbox)
        losses = hand4whole_losses(out, targets, meta, small_config)
    for name in ("smplx_pose", "smplx_shape", "smplx_expr", "joint_cam", "smplx_joint_cam",
                 "lhand_bbox", "rhand_bbox", "face_bbox", "joint_proj"):  # fmt: skip
        assert losses[name].item() == pytest.approx(0.0, abs=1e-5), name
    # The mesh drawn is the mesh the parameters give.
    np.testing.assert_allclose(out.vertices[0].numpy(), samples[0].vertices, atol=1e-4)


@pytest.mark.slow  # worker processes; fast loop kept under 2 minutes
def test_dataloader_with_workers_collates(dataset, small_net, body_layer, small_config):
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    inputs, targets, meta = next(iter(loader))
    assert inputs["img"].shape == (4, 3, 512, 384)
    assert {k: tuple(v.shape) for k, v in targets.items()} == {k: (4, *s) for k, s in TARGET_SHAPES.items()}
    assert {k: tuple(v.shape) for k, v in meta.items()} == {k: (4, *s) for k, s in META_SHAPES.items()}
    assert all(v.dtype == torch.float32 for v in (*targets.values(), *meta.values()))
    # Same samples as in the main process.
    assert torch.equal(targets["smplx_pose"][3], torch.from_numpy(dataset[3][1]["smplx_pose"]))
    # A training step's losses are finite on a collated batch.
    reg = WholeBodyRegressor(small_net, body_layer).eval()
    with torch.no_grad():
        losses = hand4whole_losses(reg(inputs["img"][:2]), {k: v[:2] for k, v in targets.items()},
                                   {k: v[:2] for k, v in meta.items()}, small_config)  # fmt: skip
    assert all(torch.isfinite(v) for v in losses.values())



def test_root_rotations_stay_on_one_side_of_the_half_turn(dataset):
    """Axis-angle targets of the root are continuous: angle < pi, x component positive."""
    roots = torch.stack([torch.from_numpy(dataset[i][1]["smplx_pose"][:3]) for i in range(len(dataset))])
    assert (roots[:, 0] > 2.5).all()
    assert (roots.norm(dim=1) < np.pi - 0.01).all()


def test_a_batch_holds_synthetic_and_real_samples(dataset, body_layer, small_config, tmp_path):
    """`--datasets Human36M,synthetic` (or synthetic with MSCOCO) puts samples of both in one batch:
    default_collate took the batch's type from its first sample and failed on a tensor beside a numpy
    array. The synthetic samples now come as the real sets' (float32 numpy), and collate whole."""
    from torch.utils.data import default_collate

    from wbcap.testing import dataset_fixtures as fx
    from wbcap.train.data.cocowb import COCOWholeBody

    coco = COCOWholeBody(fx.write_cocowb_fixture(tmp_path / "data"), "train", body_layer=body_layer, model=small_config)
    for first, second in ((dataset[1], coco[0]), (coco[0], dataset[1])):
        batch = default_collate([first, second])
        for part, one, two in zip(batch, first, second):
            assert set(part) == set(one) == set(two)
            for k, v in part.items():
                assert v.dtype == torch.float32 and v.shape == (2, *np.shape(one[k])), k
                np.testing.assert_array_equal(v[0].numpy(), one[k])
                np.testing.assert_array_equal(v[1].numpy(), two[k])
