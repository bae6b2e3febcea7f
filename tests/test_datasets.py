"""Training / evaluation datasets read back tiny fixtures written in each dataset's native layout.

Expected values are computed here from the annotation files with plain pinhole / crop arithmetic
(the crop maps the processed box centre to the patch centre and its width to 384 px; a body
heatmap cell is 64x64 px), not with the loaders' helpers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import cv2
import numpy as np
import pytest
import torch

from wbcap.body import joints as J
from wbcap.body.smplx_layer import joints137
from wbcap.crop.bbox import process_bbox
from wbcap.errors import InputError
from wbcap.testing import dataset_fixtures as fx
from wbcap.train.data.cocowb import COCOWholeBody
from wbcap.train.data.common import (
    Augmentation,
    AugmentConfig,
    DatasetLayoutError,
    rot_aug_matrix,
    sample_augmentation,
)
from wbcap.train.data.ehf import EHF, EHF_CAMERA_ROTVEC, read_ply_vertices
from wbcap.train.data.freihand import FreiHAND
from wbcap.train.data.human36m import H36M_JOINT_NAMES, Human36M
from wbcap.train.data.pw3d import PW3D

CELL = 64.0  # body heatmap cell in crop pixels: 384 / 6 == 512 / 8
FLIP = np.arange(J.JOINT_NUM)
for _a, _b in J.FLIP_PAIRS:
    FLIP[_a], FLIP[_b] = _b, _a
ORIG_FLIP = np.arange(J.ORIG_JOINT_NUM)
for _a, _b in J.ORIG_FLIP_PAIRS:
    ORIG_FLIP[_a], ORIG_FLIP[_b] = _b, _a

TARGET_SHAPES = {
    "joint_img": (137, 3), "smplx_joint_img": (137, 3), "joint_cam": (137, 3), "smplx_joint_cam": (137, 3),
    "smplx_pose": (159,), "smplx_shape": (10,), "smplx_expr": (10,),
    "lhand_bbox_center": (2,), "rhand_bbox_center": (2,), "face_bbox_center": (2,),
    "lhand_bbox_size": (2,), "rhand_bbox_size": (2,), "face_bbox_size": (2,),
}  # fmt: skip
META_SHAPES = {
    "joint_valid": (137, 1), "joint_trunc": (137, 1), "smplx_joint_valid": (137, 1), "smplx_joint_trunc": (137, 1),
    "smplx_pose_valid": (159,), "smplx_shape_valid": (), "smplx_expr_valid": (), "is_3D": (),
    "lhand_bbox_valid": (), "rhand_bbox_valid": (), "face_bbox_valid": (),
}  # fmt: skip


def check_schema(sample, img_shape=(3, 512, 384), targets=TARGET_SHAPES, meta=META_SHAPES):
    inputs, t, m = sample
    assert set(inputs) == {"img"} and set(t) == set(targets) and set(m) == set(meta)
    assert inputs["img"].shape == img_shape and inputs["img"].dtype == np.float32
    assert inputs["img"].min() >= 0.0 and inputs["img"].max() <= 1.0 and inputs["img"].max() > 0.1
    for d, shapes in ((t, targets), (m, meta)):
        for k, shape in shapes.items():
            v = d[k]
            assert np.shape(v) == shape, k
            assert np.asarray(v).dtype == np.float32, k
            assert np.all(np.isfinite(v)), k


def assert_same(a, b):
    for da, db in zip(a, b, strict=True):
        assert set(da) == set(db)
        for k in da:
            np.testing.assert_array_equal(np.asarray(da[k]), np.asarray(db[k]), err_msg=k)


def crop_hm(px, box):
    """Expected heatmap (x, y) of image pixels for an unaugmented crop of processed box ``box``."""
    px = np.asarray(px, np.float64)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x = ((px[..., 0] - cx) * 384 / box[2] + 192) / CELL
    y = ((px[..., 1] - cy) * 512 / box[3] + 256) / CELL
    return np.stack([x, y], -1)


def smplx_world_joints(body_layer, p):
    t = lambda k, n: torch.tensor(p.get(k, [0.0] * n), dtype=torch.float32).reshape(1, n)
    hands = p.get("lhand_valid", False), p.get("rhand_valid", False)
    with torch.no_grad():
        out = body_layer(
            betas=t("shape", 10), global_orient=t("root_pose", 3), body_pose=t("body_pose", 63),
            left_hand_pose=t("lhand_pose", 45) if hands[0] else torch.zeros(1, 45),
            right_hand_pose=t("rhand_pose", 45) if hands[1] else torch.zeros(1, 45),
            jaw_pose=t("jaw_pose", 3), expression=t("expr", 10), transl=t("trans", 3),
        )  # fmt: skip
    return joints137(out)[0].numpy().astype(np.float64)


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def h36m_root(tmp_path_factory):
    return fx.write_human36m_fixture(tmp_path_factory.mktemp("h36m"))


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return fx.write_cocowb_fixture(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def h36m(h36m_root, body_layer):
    return Human36M(h36m_root, "train", body_layer, augment=None)


@pytest.fixture(scope="module")
def coco(coco_root, body_layer):
    return COCOWholeBody(coco_root, "train", body_layer, augment=None)


def h36m_annotation(root, subject, image_id):
    ann_dir = root / "Human36M" / "annotations"
    data = json.loads((ann_dir / f"Human36M_subject{subject}_data.json").read_text())
    img = next(i for i in data["images"] if i["id"] == image_id)
    ann = next(a for a in data["annotations"] if a["image_id"] == image_id)
    cams = json.loads((ann_dir / f"Human36M_subject{subject}_camera.json").read_text())
    joints = json.loads((ann_dir / f"Human36M_subject{subject}_joint_3d.json").read_text())
    smplx = json.loads((ann_dir / f"Human36M_subject{subject}_SMPLX_NeuralAnnot.json").read_text())
    key = (str(img["action_idx"]), str(img["subaction_idx"]), str(img["frame_idx"]))
    return (img, ann, cams[str(img["cam_idx"])], np.asarray(joints[key[0]][key[1]][key[2]], np.float64),
            smplx[key[0]][key[1]][key[2]])  # fmt: skip


# ----------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------
def test_sample_augmentation_ranges_and_determinism():
    cfg = AugmentConfig()
    assert (cfg.scale, cfg.rot, cfg.rot_prob, cfg.color, cfg.flip_prob) == (0.25, 30.0, 0.6, 0.2, 0.5)
    draws = [sample_augmentation(np.random.default_rng(i), cfg, True) for i in range(2000)]
    scales = np.array([d.scale for d in draws])
    rots = np.array([d.rot for d in draws])
    colors = np.array([d.color_scale for d in draws])
    assert scales.min() >= 0.75 and scales.max() <= 1.25
    assert np.abs(rots).max() <= 60.0 and 0.55 < np.mean(rots != 0) < 0.65
    assert colors.min() >= 0.8 and colors.max() <= 1.2
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55
    assert sample_augmentation(np.random.default_rng(5), cfg, True) == draws[5]
    assert sample_augmentation(np.random.default_rng(5), cfg, False) == Augmentation()
    forced = AugmentConfig(scale=0, rot=0, color=0, flip_prob=1.0)
    assert all(
        sample_augmentation(np.random.default_rng(i), forced, True) == Augmentation(flip=True) for i in range(50)
    )


# ----------------------------------------------------------------------------------------------
# Human3.6M
# ----------------------------------------------------------------------------------------------
def test_h36m_subsampling(h36m, h36m_root, body_layer):
    # fixture: 7 subjects, frames (0, 3, 5, 10, 64), cameras (1, 4)
    assert len(h36m) == 5 * 3 * 2
    s1 = [r for r in h36m.records if r["subject"] == 1]
    assert sorted({r["frame_idx"] for r in s1}) == [0, 5, 10]
    assert {r["cam_idx"] for r in s1} == {1, 4}
    assert {r["subject"] for r in h36m.records} == {1, 5, 6, 7, 8}
    test = Human36M(h36m_root, "test", body_layer)
    assert len(test) == 4
    assert {(r["subject"], r["frame_idx"], r["cam_idx"]) for r in test.records} == {
        (9, 0, 4), (9, 64, 4), (11, 0, 4), (11, 64, 4)}  # fmt: skip
    assert len(Human36M(h36m_root, "train", body_layer, subjects=(1,))) == 6


def test_h36m_schema_and_targets(h36m, h36m_root, body_layer):
    sample = h36m[1]
    check_schema(sample)
    _, t, m = sample
    rec = h36m.records[1]
    img, ann, cam, world_mm, fit = h36m_annotation(h36m_root, rec["subject"], rec["image_id"])
    R, tvec, f, c = (np.asarray(cam[k], np.float64) for k in ("R", "t", "f", "c"))
    box = process_bbox(ann["bbox"], img["width"], img["height"])
    cam_mm = world_mm @ R.T + tvec
    px = cam_mm[:, :2] / cam_mm[:, 2:] * f + c
    for name in ("Pelvis", "L_Wrist", "R_Knee", "Neck", "L_Shoulder"):
        k, j = H36M_JOINT_NAMES.index(name), J.JOINT_NAMES.index(name)
        np.testing.assert_allclose(t["joint_img"][j, :2], crop_hm(px[k], box), atol=1e-3)
        rel = (cam_mm[k] - cam_mm[0]) / 1000.0
        np.testing.assert_allclose(t["joint_cam"][j], rel, atol=1e-5)
        assert t["joint_img"][j, 2] == pytest.approx((rel[2] / 1.0 + 1) / 2 * 8, abs=1e-4)
    mapped = {J.JOINT_NAMES.index(n) for n in H36M_JOINT_NAMES if n in J.JOINT_NAMES}
    assert len(mapped) == 14
    assert {int(i) for i in np.flatnonzero(m["joint_valid"][:, 0])} == mapped
    assert m["is_3D"] == 1 and m["smplx_shape_valid"] == 1 and m["smplx_expr_valid"] == 0
    assert m["lhand_bbox_valid"] == m["rhand_bbox_valid"] == m["face_bbox_valid"] == 0

    # SMPL-X targets: the world-frame fit seen through the camera (R, t in mm)
    world = smplx_world_joints(body_layer, fit)
    cam_m = world @ R.T + tvec / 1000.0
    fit_px = cam_m[:, :2] / cam_m[:, 2:] * f + c
    body = list(J.JOINT_PART["body"])
    np.testing.assert_allclose(t["smplx_joint_img"][body, :2], crop_hm(fit_px[body], box), atol=2e-3)
    np.testing.assert_allclose(t["smplx_joint_cam"][body], cam_m[body] - cam_m[0], atol=1e-4)
    root = cv2.Rodrigues(R @ cv2.Rodrigues(np.asarray(fit["root_pose"]))[0])[0].reshape(3)
    np.testing.assert_allclose(t["smplx_pose"][:3], root, atol=1e-5)
    np.testing.assert_allclose(t["smplx_pose"][3:66], fit["body_pose"], atol=1e-6)
    np.testing.assert_allclose(t["smplx_shape"], fit["shape"], atol=1e-6)
    pose_valid = m["smplx_pose_valid"].reshape(53, 3)[:, 0]
    invalid = {J.ORIG_JOINT_NAMES.index(n) for n in ("L_Ankle", "R_Ankle", "L_Wrist", "R_Wrist")}
    invalid |= set(J.ORIG_JOINT_PART["lhand"]) | set(J.ORIG_JOINT_PART["rhand"]) | {52}
    assert set(np.flatnonzero(pose_valid == 0).tolist()) == invalid
    sv = m["smplx_joint_valid"][:, 0]
    assert sv[list(J.JOINT_PART["hand"])].sum() == 0 and sv[list(J.JOINT_PART["face"])].sum() == 0
    assert sv[J.JOINT_NAMES.index("L_Heel")] == 0 and sv[J.JOINT_NAMES.index("L_Wrist")] == 1
    assert np.all(m["smplx_joint_trunc"] <= sv[:, None])


def test_h36m_flip(h36m):
    plain = h36m.get(3, Augmentation())
    flipped = h36m.get(3, Augmentation(flip=True))
    check_schema(flipped)
    (i0, t0, m0), (i1, t1, m1) = plain, flipped
    for img_key, cam_key, valid_key in (("joint_img", "joint_cam", "joint_valid"),
                                        ("smplx_joint_img", "smplx_joint_cam", "smplx_joint_valid")):  # fmt: skip
        a, b = t0[img_key][FLIP], t1[img_key]
        valid = m0[valid_key][FLIP, 0] > 0
        np.testing.assert_allclose(b[valid, 0], 6.0 - a[valid, 0], atol=2e-3)
        np.testing.assert_allclose(b[valid, 1:], a[valid, 1:], atol=2e-3)
        ca = t0[cam_key][FLIP] * [-1, 1, 1]
        np.testing.assert_allclose(t1[cam_key], ca, atol=1e-5)
        np.testing.assert_array_equal(m1[valid_key], m0[valid_key][FLIP])
    pose0, pose1 = t0["smplx_pose"].reshape(53, 3), t1["smplx_pose"].reshape(53, 3)
    np.testing.assert_allclose(pose1, pose0[ORIG_FLIP] * [1, -1, -1], atol=1e-5)
    np.testing.assert_array_equal(
        m1["smplx_pose_valid"].reshape(53, 3), m0["smplx_pose_valid"].reshape(53, 3)[ORIG_FLIP]
    )
    # the crop is the mirror image (patch column j samples where the plain patch's 384 - j does)
    diff = np.abs(i1["img"][:, :, 1:] - i0["img"][:, :, :0:-1])
    assert diff.mean() < 2e-3


def test_h36m_rotation_is_consistent(h36m):
    plain = h36m.get(0, Augmentation())[1]
    rot = h36m.get(0, Augmentation(rot=25.0))[1]
    M = rot_aug_matrix(25.0)
    np.testing.assert_allclose(rot["joint_cam"], plain["joint_cam"] @ M.T, atol=1e-5)
    # the image rotates about the crop centre by the same in-plane rotation as the 3D joints
    d0 = (plain["joint_img"][:14, :2] - [3, 4]) * CELL
    d1 = (rot["joint_img"][:14, :2] - [3, 4]) * CELL
    np.testing.assert_allclose(d1, d0 @ M[:2, :2].T, atol=0.05)
    r0 = cv2.Rodrigues(plain["smplx_pose"][:3].astype(np.float64))[0]
    r1 = cv2.Rodrigues(rot["smplx_pose"][:3].astype(np.float64))[0]
    np.testing.assert_allclose(r1, M @ r0, atol=1e-5)


def test_h36m_determinism_and_forced_flip(h36m_root, body_layer):
    a = Human36M(h36m_root, "train", body_layer, seed=3, subjects=(1,))
    b = Human36M(h36m_root, "train", body_layer, seed=3, subjects=(1,))
    assert_same(a[2], b[2])
    assert a.augmentation_for(2) != Human36M(h36m_root, "train", body_layer, seed=4, subjects=(1,)).augmentation_for(2)
    a.set_epoch(1)
    assert a.augmentation_for(2) != b.augmentation_for(2)
    forced = Human36M(
        h36m_root, "train", body_layer, augment=AugmentConfig(scale=0, rot=0, color=0, flip_prob=1.0), subjects=(1,)
    )
    assert_same(forced[1], forced.get(1, Augmentation(flip=True)))
    batch = torch.utils.data.default_collate([a[0], a[1]])
    assert batch[0]["img"].dtype == torch.float32 and batch[2]["is_3D"].dtype == torch.float32
    assert batch[2]["is_3D"].shape == (2,)


def test_h36m_missing_file(tmp_path, body_layer):
    root = fx.write_human36m_fixture(tmp_path, subjects=(1,), frames=(0,), cameras=(1,))
    with pytest.raises(DatasetLayoutError) as err:
        Human36M(root, "train", body_layer)
    msg = str(err.value)
    assert isinstance(err.value, InputError) and "\n" not in msg
    assert str(root / "Human36M" / "annotations" / "Human36M_subject5_data.json") in msg and "expected layout" in msg
    (root / "Human36M" / "annotations" / "Human36M_subject1_SMPLX_NeuralAnnot.json").unlink()
    with pytest.raises(DatasetLayoutError, match="Human36M_subject1_SMPLX_NeuralAnnot.json missing"):
        Human36M(root, "train", body_layer, subjects=(1,))


# ----------------------------------------------------------------------------------------------
# COCO-WholeBody
# ----------------------------------------------------------------------------------------------
def coco_ann(root, ann_id, split="train"):
    db = json.loads((root / "MSCOCO" / "annotations" / f"coco_wholebody_{split}_v1.0.json").read_text())
    ann = next(a for a in db["annotations"] if a["id"] == ann_id)
    img = next(i for i in db["images"] if i["id"] == ann["image_id"])
    return img, ann


def test_coco_length_and_schema(coco, coco_root, body_layer):
    assert [r["ann_id"] for r in coco.records] == [1001, 1003]  # crowd and keypoint-less skipped
    for i in range(len(coco)):
        check_schema(coco[i])
    val = COCOWholeBody(coco_root, "val", body_layer)
    assert len(val) == 1
    check_schema(val[0])
    assert val[0][2]["smplx_shape_valid"] == 0


def test_coco_joint_and_box_targets(coco, coco_root):
    img, ann = coco_ann(coco_root, 1001)
    _, t, m = coco.get(0, Augmentation())
    box = process_bbox(ann["bbox"], img["width"], img["height"])
    body = np.asarray(ann["keypoints"]).reshape(17, 3)
    checks = {
        "L_Shoulder": body[5], "R_Wrist": body[10], "Nose": body[0],
        "Pelvis": (body[11] + body[12]) / 2,
        "R_Big_toe": np.asarray(ann["foot_kpts"]).reshape(6, 3)[3],
        "L_Thumb_1": np.asarray(ann["lefthand_kpts"]).reshape(21, 3)[1],
        "R_Pinky_4": np.asarray(ann["righthand_kpts"]).reshape(21, 3)[20],
        "Face_56": np.asarray(ann["face_kpts"]).reshape(68, 3)[0],  # first contour point
        "Face_5": np.asarray(ann["face_kpts"]).reshape(68, 3)[17],  # first landmark
    }  # fmt: skip
    for name, kp in checks.items():
        j = J.JOINT_NAMES.index(name)
        np.testing.assert_allclose(t["joint_img"][j, :2], crop_hm(kp[:2], box), atol=1e-3, err_msg=name)
        assert m["joint_valid"][j, 0] == 1 and t["joint_img"][j, 2] == 0
    assert m["joint_valid"][J.JOINT_NAMES.index("R_Ear"), 0] == 0  # unlabelled in the fixture
    assert m["joint_valid"][J.NECK_IDX, 0] == 0  # COCO has no neck
    assert np.all(t["joint_cam"] == 0) and m["is_3D"] == 0
    for part, key in (("lhand", "lefthand_box"), ("rhand", "righthand_box"), ("face", "face_box")):
        x, y, w, h = ann[key]
        corners = crop_hm(np.array([[x, y], [x + w, y + h]]), box)
        np.testing.assert_allclose(t[f"{part}_bbox_center"], corners.mean(0), atol=1e-3)
        np.testing.assert_allclose(t[f"{part}_bbox_size"], corners[1] - corners[0], atol=1e-3)
        assert m[f"{part}_bbox_valid"] == 1
    _, t3, m3 = coco.get(1, Augmentation())  # annotation 1003: no right hand, no SMPL-X fit
    assert m3["rhand_bbox_valid"] == 0 and m3["lhand_bbox_valid"] == 1
    assert m3["smplx_shape_valid"] == 0 and m3["smplx_pose_valid"].sum() == 0 and m3["smplx_joint_valid"].sum() == 0


def test_coco_smplx_targets(coco, coco_root, body_layer):
    img, ann = coco_ann(coco_root, 1001)
    fit = json.loads((coco_root / "MSCOCO/annotations/MSCOCO_train_SMPLX_all_NeuralAnnot.json").read_text())["1001"]
    _, t, m = coco.get(0, Augmentation())
    box = process_bbox(ann["bbox"], img["width"], img["height"])
    joints = smplx_world_joints(body_layer, fit["smplx_param"])  # camera frame already
    f, c = np.asarray(fit["cam_param"]["focal"]), np.asarray(fit["cam_param"]["princpt"])
    px = joints[:, :2] / joints[:, 2:] * f + c
    np.testing.assert_allclose(t["smplx_joint_img"][:, :2], crop_hm(px, box), atol=2e-3)
    rel = joints - joints[0]
    for part, ref in (("lhand", J.LWRIST_IDX), ("rhand", J.RWRIST_IDX), ("face", J.NECK_IDX)):
        idx = list(J.JOINT_PART[part])
        rel[idx] = joints[idx] - joints[ref]
    np.testing.assert_allclose(t["smplx_joint_cam"], rel, atol=1e-4)
    depth = np.where(np.isin(np.arange(137), list(J.JOINT_PART["body"])), 2.0, 0.3)
    np.testing.assert_allclose(t["smplx_joint_img"][:, 2], (rel[:, 2] / (depth / 2) + 1) / 2 * 8, atol=1e-3)
    p = fit["smplx_param"]
    expected = np.concatenate([p["root_pose"], p["body_pose"], p["lhand_pose"], p["rhand_pose"], p["jaw_pose"]])
    np.testing.assert_allclose(t["smplx_pose"], expected, atol=1e-5)
    np.testing.assert_allclose(t["smplx_expr"], p["expr"], atol=1e-6)
    assert m["smplx_pose_valid"].min() == 1 and m["smplx_expr_valid"] == 1 and m["smplx_joint_valid"].min() == 1


def test_coco_flip(coco):
    (_, t0, m0), (_, t1, m1) = coco.get(0, Augmentation()), coco.get(0, Augmentation(flip=True))
    valid = m0["joint_valid"][FLIP, 0] > 0
    np.testing.assert_allclose(t1["joint_img"][valid, 0], 6.0 - t0["joint_img"][FLIP][valid, 0], atol=2e-3)
    np.testing.assert_allclose(t1["joint_img"][valid, 1], t0["joint_img"][FLIP][valid, 1], atol=2e-3)
    np.testing.assert_array_equal(m1["joint_valid"], m0["joint_valid"][FLIP])
    np.testing.assert_array_equal(m1["joint_trunc"], m0["joint_trunc"][FLIP])
    for a, b in (("lhand", "rhand"), ("rhand", "lhand"), ("face", "face")):
        np.testing.assert_allclose(t1[f"{a}_bbox_center"], [6.0, 0] + [-1, 1] * t0[f"{b}_bbox_center"], atol=2e-3)
        np.testing.assert_allclose(t1[f"{a}_bbox_size"], t0[f"{b}_bbox_size"], atol=2e-3)
        assert m1[f"{a}_bbox_valid"] == m0[f"{b}_bbox_valid"]
    sv = m0["smplx_joint_valid"][FLIP, 0] > 0
    np.testing.assert_allclose(t1["smplx_joint_img"][sv, 0], 6.0 - t0["smplx_joint_img"][FLIP][sv, 0], atol=2e-3)
    np.testing.assert_allclose(t1["smplx_joint_cam"], t0["smplx_joint_cam"][FLIP] * [-1, 1, 1], atol=1e-5)
    pose0, pose1 = t0["smplx_pose"].reshape(53, 3), t1["smplx_pose"].reshape(53, 3)
    np.testing.assert_allclose(pose1, pose0[ORIG_FLIP] * [1, -1, -1], atol=1e-5)
    np.testing.assert_allclose(t1["smplx_joint_img"][:, 2], t0["smplx_joint_img"][FLIP, 2], atol=1e-4)


def test_flipped_smplx_params_pose_the_mirrored_body(coco, body_layer):
    """The flipped sample's pose target, run through the model, is the mirror image of the plain
    one's (skeleton joints; the synthetic model is mirror-symmetric at zero shape)."""

    def skeleton(t):
        pose = t["smplx_pose"].reshape(53, 3).astype(np.float64)
        p = {"root_pose": pose[0], "body_pose": pose[1:22].reshape(-1), "lhand_pose": pose[22:37].reshape(-1),
             "rhand_pose": pose[37:52].reshape(-1), "jaw_pose": pose[52]}  # fmt: skip
        p = {k: v.tolist() for k, v in p.items()} | {"lhand_valid": True, "rhand_valid": True}
        joints = smplx_world_joints(body_layer, p)
        return (joints - joints[0])[:14]  # pelvis .. wrists

    plain = skeleton(coco.get(0, Augmentation())[1])
    flipped = skeleton(coco.get(0, Augmentation(flip=True))[1])
    np.testing.assert_allclose(flipped, plain[FLIP[:14]] * [-1, 1, 1], atol=1e-4)
    assert np.abs(flipped - plain).max() > 0.01  # the pose is not symmetric to begin with


def test_coco_determinism(coco_root, body_layer):
    a = COCOWholeBody(coco_root, "train", body_layer, seed=11)
    b = COCOWholeBody(coco_root, "train", body_layer, seed=11)
    assert_same(a[1], b[1])
    assert a.augmentation_for(1) == b.augmentation_for(1) != a.augmentation_for(0)


def test_coco_missing_files(tmp_path, body_layer):
    root = fx.write_cocowb_fixture(tmp_path)
    smplx = root / "MSCOCO" / "annotations" / "MSCOCO_train_SMPLX_all_NeuralAnnot.json"
    smplx.unlink()
    assert len(COCOWholeBody(root, "val", body_layer)) == 1  # val needs no fits
    with pytest.raises(DatasetLayoutError) as err:
        COCOWholeBody(root, "train", body_layer)
    assert str(smplx) in str(err.value) and "\n" not in str(err.value)
    (root / "MSCOCO" / "annotations" / "coco_wholebody_val_v1.0.json").write_text("{broken")
    with pytest.raises(DatasetLayoutError, match="coco_wholebody_val_v1.0.json: not readable JSON"):
        COCOWholeBody(root, "val", body_layer)
    shutil.rmtree(root / "MSCOCO" / "images")
    (root / "MSCOCO" / "annotations" / "coco_wholebody_val_v1.0.json").unlink()
    with pytest.raises(DatasetLayoutError, match="coco_wholebody_val_v1.0.json missing; expected layout"):
        COCOWholeBody(root, "val", body_layer)


def test_missing_image_is_named(tmp_path, body_layer):
    root = fx.write_cocowb_fixture(tmp_path)
    ds = COCOWholeBody(root, "val", body_layer)
    ds.records[0]["img_path"].unlink()
    with pytest.raises(DatasetLayoutError, match="000000000201.jpg missing"):
        ds[0]


# ----------------------------------------------------------------------------------------------
# FreiHAND
# ----------------------------------------------------------------------------------------------
HAND_TARGETS = {"joint_img": (21, 3), "joint_cam": (21, 3), "mano_pose": (48,), "mano_shape": (10,),
                "mano_joint_img": (21, 3)}
HAND_META = {"joint_valid": (21, 1), "joint_trunc": (21, 1), "mano_param_valid": (), "mano_pose_valid": (48,),
             "mano_shape_valid": (), "is_3D": (), "dataset_joints": (), "mano_joint_trunc": (21, 1)}  # fmt: skip


@pytest.fixture(scope="module")
def frei_root(tmp_path_factory):
    return fx.write_freihand_fixture(tmp_path_factory.mktemp("frei"))


def test_freihand_train(frei_root):
    ds = FreiHAND(frei_root, "train", augment=None)
    assert len(ds) == 3
    sample = ds[1]
    check_schema(sample, (3, 256, 256), HAND_TARGETS, HAND_META)
    _, t, m = sample
    base = frei_root / "FreiHAND" / "data"
    coco = json.loads((base / "freihand_train_coco.json").read_text())
    data = json.loads((base / "freihand_train_data.json").read_text())
    img = coco["images"][1]
    entry = data[str(img["db_idx"])]
    box = process_bbox(coco["annotations"][1]["bbox"], img["width"], img["height"], aspect_ratio=1.0)
    joints = np.asarray(entry["joint_3d"])
    px = joints[:, :2] / joints[:, 2:] * entry["cam_param"]["focal"] + entry["cam_param"]["princpt"]
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    expected = np.stack([(px[:, 0] - cx) * 256 / box[2] + 128, (px[:, 1] - cy) * 256 / box[3] + 128], 1) / 32
    np.testing.assert_allclose(t["joint_img"][:, :2], expected, atol=1e-3)
    rel = joints - joints[0]
    np.testing.assert_allclose(t["joint_cam"], rel, atol=1e-5)
    np.testing.assert_allclose(t["joint_img"][:, 2], (rel[:, 2] / 0.15 + 1) / 2 * 8, atol=1e-3)
    np.testing.assert_allclose(t["mano_pose"], entry["mano_param"]["pose"], atol=1e-6)
    np.testing.assert_allclose(t["mano_shape"], entry["mano_param"]["shape"], atol=1e-6)
    assert m["joint_trunc"].min() == 1 and m["mano_param_valid"] == 1 and m["is_3D"] == 1
    assert m["dataset_joints"] == 0  # (its joints are its MANO fit's: the MANO terms reach them through the fit)


def test_freihand_never_flips_and_rotates_root(frei_root):
    forced = FreiHAND(frei_root, "train", augment=AugmentConfig(scale=0, rot=0, color=0, flip_prob=1.0))
    assert_same(forced[0], FreiHAND(frei_root, "train", augment=None)[0])
    ds = FreiHAND(frei_root, "train", augment=None)
    t0, t1 = ds.get(0, Augmentation())[1], ds.get(0, Augmentation(rot=-40.0))[1]
    M = rot_aug_matrix(-40.0)
    np.testing.assert_allclose(t1["joint_cam"], t0["joint_cam"] @ M.T, atol=1e-5)
    r0 = cv2.Rodrigues(t0["mano_pose"][:3].astype(np.float64))[0]
    np.testing.assert_allclose(cv2.Rodrigues(t1["mano_pose"][:3].astype(np.float64))[0], M @ r0, atol=1e-5)
    np.testing.assert_array_equal(t1["mano_pose"][3:], t0["mano_pose"][3:])


def test_freihand_eval_and_missing(frei_root, tmp_path):
    ds = FreiHAND(frei_root, "eval")
    assert len(ds) == 2
    _, t, m = ds[0]
    assert m["bb2img_trans"].shape == (2, 3) and m["root_depth"] > 0.3 and m["mano_param_valid"] == 0
    root = fx.write_freihand_fixture(tmp_path, num_train=1, num_eval=1)
    path = root / "FreiHAND" / "rootnet_output" / "bbox_root_freihand_output.json"
    path.unlink()
    FreiHAND(root, "train")
    with pytest.raises(DatasetLayoutError, match="bbox_root_freihand_output.json missing; expected layout"):
        FreiHAND(root, "eval")


# ----------------------------------------------------------------------------------------------
# 3DPW and EHF (evaluation loaders)
# ----------------------------------------------------------------------------------------------
def test_pw3d(tmp_path):
    root = fx.write_pw3d_fixture(tmp_path, splits=("test",))
    calls = []

    class FakeSMPL:
        def __init__(self, name):
            self.name = name

        def __call__(self, betas, global_orient, body_pose, transl):
            calls.append((self.name, tuple(betas.shape), tuple(body_pose.shape)))
            return type("Out", (), {"vertices": transl.reshape(1, 1, 3).repeat(1, 6890, 1)})()

    ds = PW3D(root, "test", smpl_model={"male": FakeSMPL("male"), "female": FakeSMPL("female")})
    assert len(ds) == 2
    for i in range(2):
        inputs, t, m = ds[i]
        ann = json.loads((root / "PW3D/data/3DPW_test.json").read_text())["annotations"][i]
        assert inputs["img"].shape == (3, 512, 384)
        np.testing.assert_allclose(t["smpl_pose"], ann["smpl_param"]["pose"], atol=1e-6)
        assert t["smpl_mesh_cam"].shape == (6890, 3)
        np.testing.assert_allclose(t["smpl_mesh_cam"][0], ann["smpl_param"]["trans"], atol=1e-6)
        assert m["gender"] == ann["smpl_param"]["gender"] and m["bb2img_trans"].shape == (2, 3)
    assert calls == [("male", (1, 10), (1, 69)), ("female", (1, 10), (1, 69))]
    assert "smpl_mesh_cam" not in PW3D(root, "test")[0][1]
    with pytest.raises(DatasetLayoutError, match="3DPW_validation.json missing"):
        PW3D(root, "validation")


class _NamedSMPL:
    """A stand-in SMPL model that records its name per call and returns ``trans`` as each vertex."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __call__(self, betas, global_orient, body_pose, transl):
        self.calls.append(self.name)
        return type("Out", (), {"vertices": transl.reshape(1, 1, 3).repeat(1, 6890, 1)})()


def _pw3d_with_genders(tmp_path, genders):
    root = fx.write_pw3d_fixture(tmp_path, splits=("test",), num_frames=len(genders))
    path = root / "PW3D/data/3DPW_test.json"
    db = json.loads(path.read_text())
    for ann, gender in zip(db["annotations"], genders, strict=True):
        if gender is None:
            del ann["smpl_param"]["gender"]
        else:
            ann["smpl_param"]["gender"] = gender
    path.write_text(json.dumps(db))
    return root, path


def test_pw3d_gender_picks_its_smpl_model_ignoring_case(tmp_path):
    """3DPW's gender picks the ground truth's SMPL model: "Male" used the neutral model without a
    word (another ground truth: 809.4 instead of 919.5 mm MPVPE in a tester's run)."""
    root, _ = _pw3d_with_genders(tmp_path, ["Male", " FEMALE ", "neutral", "male"])
    calls = []
    ds = PW3D(root, "test", smpl_model={g: _NamedSMPL(g, calls) for g in ("male", "female", "neutral")})
    assert [ds[i][2]["gender"] for i in range(4)] == ["male", "female", "neutral", "male"]
    assert calls == ["male", "female", "neutral", "male"]


@pytest.mark.parametrize(
    ("gender", "said"),
    [
        ("robot", "has SMPL gender 'robot', not 'male', 'female' or 'neutral'; set it to the person's gender or use "
                  "the original files (re-download them)"),
        (1, "has SMPL gender 1, not 'male', 'female' or 'neutral'; set it to the person's gender or use the original "
            "files (re-download them)"),
        (None, "has no SMPL gender (smpl_param's 'gender', which picks its ground truth's SMPL model); use the "
               "original files (re-download them)"),
    ],
    ids=["robot", "number", "missing"],
)
def test_pw3d_gender_of_another_kind_is_one_line_naming_the_sample(tmp_path, gender, said):
    root, path = _pw3d_with_genders(tmp_path, ["male", gender])
    with pytest.raises(DatasetLayoutError) as err:
        PW3D(root, "test")
    assert str(err.value) == f"{path}: annotation 1 (image 1, downtown_walking_00/image_00001.jpg) {said}"


def test_pw3d_smpl_model_without_a_gender_warns_once_and_uses_neutral(tmp_path, caplog):
    import logging

    root, _ = _pw3d_with_genders(tmp_path, ["male", "male", "female"])
    calls = []
    ds = PW3D(root, "test", smpl_model={"neutral": _NamedSMPL("neutral", calls), "female": _NamedSMPL("female", calls)})
    with caplog.at_level(logging.WARNING, logger="wbcap.train.data.pw3d"):
        for i in range(3):
            ds[i]
    assert calls == ["neutral", "neutral", "female"]
    assert [r.getMessage() for r in caplog.records] == [
        "3DPW: smpl_model has no 'male' SMPL model; the male samples' ground truth uses the 'neutral' one instead, "
        "so the numbers are not comparable with published ones"
    ]


def test_ehf(tmp_path):
    root = fx.write_ehf_fixture(tmp_path)
    ds = EHF(root)
    assert len(ds) == 2
    inputs, t, m = ds[1]
    assert inputs["img"].shape == (3, 512, 384) and inputs["img"].dtype == np.float32
    written = read_ply_vertices(root / "EHF/data/02_align.ply")
    assert written.shape == (10475, 3)
    R = cv2.Rodrigues(np.asarray(EHF_CAMERA_ROTVEC))[0]
    np.testing.assert_allclose(t["smplx_mesh_cam"], written @ R.T, atol=1e-5)
    db = json.loads((root / "EHF/data/EHF.json").read_text())
    ann, img = db["annotations"][1], db["images"][1]
    box = process_bbox(ann["body_bbox"], img["width"], img["height"])
    x, y, w, h = ann["lefthand_bbox"]
    corners = crop_hm(np.array([[x, y], [x + w, y + h]]), box)
    np.testing.assert_allclose(t["lhand_bbox_center"], corners.mean(0), atol=1e-3)
    np.testing.assert_allclose(t["lhand_bbox_size"], corners[1] - corners[0], atol=1e-3)
    assert m["face_bbox_valid"] == 1
    (root / "EHF/data/01_align.ply").unlink()
    with pytest.raises(DatasetLayoutError, match="01_align.ply missing"):
        ds[0]


def test_read_binary_ply(tmp_path):
    verts = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    header = (
        b"ply\nformat binary_little_endian 1.0\nelement vertex 7\nproperty float x\nproperty float y\n"
        b"property float z\nproperty uchar red\nelement face 0\nproperty list uchar int vertex_indices\n"
        b"end_header\n"
    )
    rows = np.zeros(7, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1")])
    rows["x"], rows["y"], rows["z"] = verts.T
    (tmp_path / "m.ply").write_bytes(header + rows.tobytes())
    np.testing.assert_array_equal(read_ply_vertices(tmp_path / "m.ply"), verts)


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_binary_ply_either_byte_order_and_one_cut_short(tmp_path, order):
    verts = np.arange(12, dtype=np.float32).reshape(4, 3) / 8
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    header = f"ply\nformat {fmt} 1.0\nelement vertex 4\nproperty double x\nproperty double y\nproperty double z\nend_header\n"
    body = verts.astype(order + "f8").tobytes()
    (tmp_path / "m.ply").write_bytes(header.encode() + body)
    np.testing.assert_array_equal(read_ply_vertices(tmp_path / "m.ply"), verts)
    (tmp_path / "m.ply").write_bytes(header.encode() + body[:-1])
    with pytest.raises(DatasetLayoutError) as err:
        read_ply_vertices(tmp_path / "m.ply")
    assert str(err.value) == f"{tmp_path / 'm.ply'}: PLY has fewer vertices than its header says; re-download it"


_PLY_HEADER = "ply\nformat {fmt} 1.0\nelement vertex {count}\nproperty {type} x\nproperty float y\nproperty float z\n"


@pytest.mark.parametrize(
    ("fmt", "count", "ptype", "end", "body", "said"),
    [
        # EHF's 10475 vertices declared, 100 in the body (a download cut short)
        ("binary_little_endian", "10475", "float", "end_header\n", np.zeros((100, 3), "<f4").tobytes(),
         "PLY has fewer vertices than its header says; re-download it"),
        ("binary_big_endian", "10475", "float", "end_header\n", np.zeros((100, 3), ">f4").tobytes(),
         "PLY has fewer vertices than its header says; re-download it"),
        ("binary_little_endian", "3", "float", "end_header", b"",
         "PLY has fewer vertices than its header says; re-download it"),
        ("binary_little_endian", "3", "float16", "end_header\n", np.zeros((3, 3), "<f4").tobytes(),
         "PLY property type float16 is not a PLY type (char, uchar, short, ushort, int, uint, float, double or "
         "int8 ... float64); re-download it"),
        ("ascii", "3", "float16", "end_header\n", b"0 0 0\n" * 3,
         "PLY property type float16 is not a PLY type (char, uchar, short, ushort, int, uint, float, double or "
         "int8 ... float64); re-download it"),
        ("binary_little_endian", "many", "float", "end_header\n", np.zeros((3, 3), "<f4").tobytes(),
         "PLY header's vertex count 'many' is not a whole number; re-download it"),
        ("binary_little_endian", "-1", "float", "end_header\n", np.zeros((3, 3), "<f4").tobytes(),
         "PLY header's vertex count '-1' is not a whole number; re-download it"),
        ("binary_little_endian", "3", "float", "", np.zeros((3, 3), "<f4").tobytes(),
         "PLY header without its end_header line (the file is cut short?); re-download it"),
        ("ascii", "3", "float", "end_header\n", b"0 0 0\n0 zero 0\n0 0 0\n",
         "PLY vertex 1's x, y, z are not numbers ('0 zero 0'); re-download it"),
        ("ascii", "3", "float", "end_header\n", b"0 0 0\n0 0 0\n0 0\n",
         "PLY vertex 2's x, y, z are not numbers ('0 0'); re-download it"),
    ],
    ids=["binary-cut-short", "big-endian-cut-short", "no-body", "float16", "ascii-float16", "count-many",
         "count-negative", "no-end_header", "ascii-word", "ascii-short-row"],
)
def test_damaged_ply_is_one_line_naming_it(tmp_path, fmt, count, ptype, end, body, said):
    """Damaged EHF ground-truth meshes crashed `wbcap eval` (numpy's "buffer is smaller than
    requested size", KeyError 'float16', int()'s ValueError): one DatasetLayoutError naming the file."""
    path = tmp_path / "01_align.ply"
    path.write_bytes(_PLY_HEADER.format(fmt=fmt, count=count, type=ptype).encode() + end.encode() + body)
    with pytest.raises(DatasetLayoutError) as err:
        read_ply_vertices(path)
    assert str(err.value) == f"{path}: {said}"


def test_damaged_ply_stops_ehf_with_one_line(tmp_path):
    root = fx.write_ehf_fixture(tmp_path, num_frames=1)
    ply = root / "EHF/data/01_align.ply"
    header = _PLY_HEADER.format(fmt="binary_little_endian", count=10475, type="float") + "end_header\n"
    ply.write_bytes(header.encode() + np.zeros((100, 3), "<f4").tobytes())
    with pytest.raises(DatasetLayoutError) as err:
        EHF(root)[0]
    assert str(err.value) == f"{ply}: PLY has fewer vertices than its header says; re-download it"


# Crops of half the side: the body's heatmap keeps its cells (so its cells are twice as coarse in
# crop pixels, and a joint's cell is the released geometry's), the hands' get half the cells.
_HALF_GEOMETRY = dict(input_img_shape=(256, 192), input_body_shape=(256, 192), output_hm_shape=(8, 8, 6),
                      input_hand_shape=(128, 128), output_hand_hm_shape=(8, 4, 4))


@pytest.mark.parametrize("name", ["Human36M", "MSCOCO", "FreiHAND", "EHF", "PW3D"])
def test_samples_follow_the_model_geometry(name, h36m_root, coco_root, frei_root, tmp_path, body_layer):
    """A network of other input and heatmap sizes (the config's ``[model]`` table) gets crops of
    its size and targets in its heatmap cells: the released geometry's, scaled by the ratio of the
    cells (crop pixels scale with the crop, so a joint's cell scales with the heatmap alone)."""
    from wbcap.config import ModelConfig

    micro = ModelConfig(**_HALF_GEOMETRY)
    aug = Augmentation(scale=1.1, rot=20.0, flip=name not in ("FreiHAND", "EHF", "PW3D"))
    make = {
        "Human36M": lambda model: Human36M(h36m_root, "train", body_layer, model=model),
        "MSCOCO": lambda model: COCOWholeBody(coco_root, "train", body_layer, model=model),
        "FreiHAND": lambda model: FreiHAND(frei_root, "train", model=model),
        "EHF": lambda model: EHF(fx.write_ehf_fixture(tmp_path), model=model),
        "PW3D": lambda model: PW3D(fx.write_pw3d_fixture(tmp_path, splits=("test",)), "test", model=model),
    }[name]
    (inputs, targets, meta), (small_in, small_t, small_m) = make(None).get(0, aug), make(micro).get(0, aug)
    hand = name == "FreiHAND"
    crop = micro.input_hand_shape if hand else micro.input_img_shape
    assert inputs["img"].shape[1:] == (crop[0] * 2, crop[1] * 2) and small_in["img"].shape[1:] == tuple(crop)
    # the same picture at half the resolution (area-averaged 2x2 blocks ~ the half-size warp)
    half = inputs["img"].reshape(3, crop[0], 2, crop[1], 2).mean((2, 4))
    assert np.abs(half - small_in["img"]).mean() < 0.02
    side = 0.5 if hand else 1.0  # (cells of the heatmap's width and height against the released ones)
    ratio = np.array([side, side, 1.0], np.float32)  # (x, y, depth)
    checked = 0
    for key in ("joint_img", "smplx_joint_img"):
        if key in targets and np.abs(targets[key][:, :2]).max() > 0.5:
            np.testing.assert_allclose(small_t[key], targets[key] * ratio, atol=2e-3, err_msg=key)
            checked += 1
    for part in ("lhand", "rhand", "face"):
        if f"{part}_bbox_center" in targets:
            np.testing.assert_allclose(small_t[f"{part}_bbox_center"], targets[f"{part}_bbox_center"], atol=2e-3)
            np.testing.assert_allclose(small_t[f"{part}_bbox_size"], targets[f"{part}_bbox_size"], atol=2e-3)
            checked += 1
    assert checked >= (0 if name == "PW3D" else 1), name  # (3DPW's test samples carry meshes, no cells)
    for key in ("joint_trunc", "smplx_joint_trunc"):
        if key in meta:
            np.testing.assert_array_equal(small_m[key], meta[key], err_msg=key)


@pytest.mark.parametrize("name", ["Human36M", "MSCOCO", "FreiHAND", "EHF", "PW3D"])
def test_an_annotation_file_without_a_field_is_one_line_naming_it(name, tmp_path, body_layer):
    """A renamed field (``annotations`` -> ``annotation``) in an annotation file: one line naming
    the file and the field (it was a KeyError crash, "wbcap train failed")."""
    make = {
        "Human36M": (lambda r: fx.write_human36m_fixture(r, subjects=(1,)),
                     "Human36M/annotations/Human36M_subject1_data.json",
                     lambda r: Human36M(r, "train", body_layer, subjects=(1,))),
        "MSCOCO": (fx.write_cocowb_fixture, "MSCOCO/annotations/coco_wholebody_train_v1.0.json",
                   lambda r: COCOWholeBody(r, "train", body_layer)),
        "FreiHAND": (fx.write_freihand_fixture, "FreiHAND/data/freihand_train_coco.json", lambda r: FreiHAND(r, "train")),
        "EHF": (fx.write_ehf_fixture, "EHF/data/EHF.json", EHF),
        "PW3D": (lambda r: fx.write_pw3d_fixture(r, splits=("test",)), "PW3D/data/3DPW_test.json",
                 lambda r: PW3D(r, "test")),
    }
    write, file, load = make[name]
    root = write(tmp_path)
    path = root / file
    db = json.loads(path.read_text())
    db["annotation"] = db.pop("annotations")
    path.write_text(json.dumps(db))
    with pytest.raises(DatasetLayoutError) as err:
        load(root)
    said = str(err.value)
    assert "\n" not in said and "no 'annotations' field" in said and "expected layout" in said, said
    assert said.startswith(str(path) if name in ("EHF", "PW3D") else "one of "), said  # (the files read together)
    assert str(path) in said


def test_coco_keypoints_without_the_whole_body_fields_are_refused(tmp_path, body_layer):
    """COCO's own person_keypoints annotations (no hand or face keypoints) under the
    COCO-WholeBody name: refused, not trained on with every hand and face joint unlabelled."""
    root = fx.write_cocowb_fixture(tmp_path)
    path = root / "MSCOCO/annotations/coco_wholebody_train_v1.0.json"
    db = json.loads(path.read_text())
    for ann in db["annotations"]:
        for key in ("lefthand_kpts", "righthand_kpts", "face_kpts", "foot_kpts"):
            ann.pop(key)
    path.write_text(json.dumps(db))
    with pytest.raises(DatasetLayoutError, match=r"coco_wholebody_train_v1.0.json: annotation \d+ has no 'lefthand_kpts': "
                                                 r"not a COCO-WholeBody file"):
        COCOWholeBody(root, "train", body_layer)


def test_an_annotation_that_refers_to_a_missing_image_says_so(tmp_path):
    root = fx.write_ehf_fixture(tmp_path)
    path = root / "EHF/data/EHF.json"
    db = json.loads(path.read_text())
    db["annotations"][1]["image_id"] = 999
    path.write_text(json.dumps(db))
    with pytest.raises(DatasetLayoutError) as err:
        EHF(root)
    assert str(err.value).startswith(f"{path}: an entry refers to 999, which is not there (an image id, index or "
                                     "frame another entry names); use the original files"), err.value


def test_body_boxes_take_the_models_crop_aspect(tmp_path):
    """A square body crop (input_img_shape 384x384): the loaders widen person boxes to 1:1 as
    inference does, not to the recipe's 3:4 (stretched crops against the network's)."""
    from wbcap.config import ModelConfig

    root = fx.write_ehf_fixture(tmp_path)
    square = ModelConfig(input_img_shape=(384, 384), input_body_shape=(256, 256), output_hm_shape=(8, 8, 8))
    for model, aspect in ((None, 0.75), (square, 1.0)):
        box = EHF(root, model=model).records[0]["bbox"]
        assert box[2] / box[3] == pytest.approx(aspect), (model, box)


def test_annotated_images_pairs_each_annotation_with_its_image_in_order():
    from wbcap.train.data.common import annotated_images

    db = {"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}],
          "annotations": [{"id": 1, "image_id": 3}, {"id": 2, "image_id": 7}, {"id": 4, "image_id": 3}]}
    assert [(ann["id"], img["file_name"]) for ann, img in annotated_images(db)] == [(1, "b.jpg"), (2, "a.jpg"),
                                                                                     (4, "b.jpg")]
    with pytest.raises(KeyError, match="99"):  # (a dangling id: parsing() names it)
        list(annotated_images({**db, "annotations": [{"image_id": 99}]}))


def test_damaged_evaluation_files_are_one_line_errors_and_dropped_boxes_are_said(tmp_path, body_layer, caplog):
    """A break-it session's damaged evaluation files: a PLY of another mesh or with a NaN,
    Human3.6M joints cut to 16 or null, a 3DPW pose of 69 numbers crashed `wbcap eval` in a
    broadcast, a reshape or its SVD; a truncated JPEG was scored without a word (its grey half),
    and an EHF box of NaN dropped its frame without one. Now one DatasetLayoutError naming the
    file, a warning naming the JPEG (used as decoded, as upstream), one with the count dropped."""
    import logging

    root = fx.write_ehf_fixture(tmp_path / "ehf", num_frames=3)
    data = root / "EHF" / "data"
    sample = EHF(root)[1]  # (as written, the fixture reads)
    assert sample[1]["smplx_mesh_cam"].shape == (10475, 3)
    fx.write_ply(data / "02_align.ply", np.random.default_rng(0).random((10000, 3)))
    with pytest.raises(DatasetLayoutError, match=r"02_align.ply: 10000 vertices, not SMPL-X's 10475 .*re-download"):
        EHF(root)[1]
    verts = np.random.default_rng(0).random((10475, 3))
    verts[5, 1] = np.nan
    fx.write_ply(data / "02_align.ply", verts)
    with pytest.raises(DatasetLayoutError, match=r"02_align.ply: a vertex with a NaN or infinite coordinate"):
        EHF(root)[1]
    jpeg = (data / "03_img.jpg").read_bytes()
    (data / "03_img.jpg").write_bytes(jpeg[: len(jpeg) * 7 // 10])
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        EHF(root)[2]  # (used as OpenCV decodes it, as upstream did: named in a warning)
    assert "03_img.jpg: image file is truncated or corrupt" in caplog.text and "(used as decoded)" in caplog.text
    caplog.clear()
    (data / "03_img.jpg").write_bytes(b"\xff\xd8 not a picture")
    with pytest.raises(DatasetLayoutError, match=r"03_img.jpg: .*\(one of the dataset's images\)$"):
        EHF(root)[2]
    (data / "03_img.jpg").write_bytes(jpeg)
    path = data / "EHF.json"
    db = json.loads(path.read_text())
    db["annotations"][1]["body_bbox"] = [float("nan"), 0, 10, 10]
    path.write_text(json.dumps(db))
    with caplog.at_level(logging.WARNING, logger="wbcap.train.data.common"):
        assert len(EHF(root)) == 2
    assert f"{path}: 1 of its annotations has no usable person box" in caplog.text and "2 sample(s) kept" in caplog.text

    h36m = fx.write_human36m_fixture(tmp_path / "h36m", subjects=(9, 11), frames=(0, 64), cameras=(4,))
    joints_file = h36m / "Human36M" / "annotations" / "Human36M_subject9_joint_3d.json"
    joints = json.loads(joints_file.read_text())
    good = json.dumps(joints)
    first = joints["2"]["1"]["0"]
    for damage in (first[:16], [[None, None, None]] + first[1:]):
        joints["2"]["1"]["0"] = damage
        joints_file.write_text(json.dumps(joints))
        with pytest.raises(DatasetLayoutError, match=r"^\S*Human36M_subject9_joint_3d.json: .*subject 9's joints of action 2, "
                                                     r"subaction 1, frame 0 (has 48 numbers, not 51 \(17 x 3\)|holds a NaN)"):
            Human36M(h36m, "test", body_layer)
    joints_file.write_text(good)
    assert len(Human36M(h36m, "test", body_layer)) == 4

    pw3d = fx.write_pw3d_fixture(tmp_path / "pw3d", splits=("test",), num_frames=2)
    ann_file = pw3d / "PW3D" / "data" / "3DPW_test.json"
    db = json.loads(ann_file.read_text())
    db["annotations"][0]["smpl_param"]["pose"] = db["annotations"][0]["smpl_param"]["pose"][:69]
    ann_file.write_text(json.dumps(db))
    with pytest.raises(DatasetLayoutError, match=r"3DPW_test.json: .*SMPL pose has 69 numbers, not 72\); use the original files"):
        PW3D(pw3d, "test")


def test_a_dataset_error_in_a_loader_worker_keeps_its_one_line_message_and_the_workers_end():
    """With DataLoader workers (`wbcap eval --workers 2`, training) a damaged file's error came as
    torch's "Caught DatasetLayoutError in DataLoader worker process 0" and the worker's traceback:
    loader_batches raises it again as the same class with the file's one line. The workers end
    with the block, also when it stops early; left to the garbage collector after the error, they
    took 5 s each to end (10 s of a later test here)."""
    import multiprocessing

    from wbcap.train.data.common import loader_batches

    class Damaged(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            if i >= 2:
                raise DatasetLayoutError(f"/data/{i}.ply: 3 vertices, not SMPL-X's 10475; re-download it")
            return torch.full((3,), float(i))

    loader = torch.utils.data.DataLoader(Damaged(), batch_size=1, num_workers=2)
    before = set(multiprocessing.active_children())
    plain = iter(loader)
    with pytest.raises(DatasetLayoutError) as raw:
        for _ in plain:
            pass
    assert str(raw.value).startswith("Caught DatasetLayoutError in DataLoader worker process 0")  # (what it fixes)
    plain._shutdown_workers()  # (not left to the collector, which would wait 5 s for each worker)

    seen = []
    with pytest.raises(DatasetLayoutError) as caught, loader_batches(loader) as batches:
        for batch in batches:
            seen.append(float(batch[0, 0]))
    assert seen == [0.0, 1.0]
    assert str(caught.value) == "/data/2.ply: 3 vertices, not SMPL-X's 10475; re-download it"
    assert set(multiprocessing.active_children()) == before  # ended with the block, not at a collection
    with loader_batches(loader) as batches:  # stopped early: ended too
        assert float(next(batches)[0, 0]) == 0.0
        assert len(set(multiprocessing.active_children()) - before) == 2
    assert set(multiprocessing.active_children()) == before


def test_more_loader_workers_than_cpus_is_one_warning_line_not_torchs(monkeypatch, caplog):
    """`--workers 5` on 2 CPUs: torch warned at each DataLoader and each iteration, two lines each
    (its long sentence and the source line). Now one log line, said once; torch's is silenced
    where wbcap builds and iterates its loaders, and only there."""
    import warnings

    from wbcap.model import device
    from wbcap.train.data.common import data_loader, loader_batches, warn_if_more_workers_than_cpus

    monkeypatch.setattr(device, "available_cpus", lambda: 1)
    monkeypatch.setattr(torch._utils, "cpu_count", lambda: 1)  # (torch's own count, for its warning)
    with caplog.at_level(logging.WARNING, logger="wbcap.train.data.common"):
        warn_if_more_workers_than_cpus(1, "--workers")
        assert caplog.messages == []
        warn_if_more_workers_than_cpus(2, "--workers")
    assert caplog.messages == ["--workers 2: more worker processes than the 1 CPUs this process may use, which can "
                               "slow loading down or stall it; 1 or fewer is enough"]
    data = [torch.full((3,), float(i)) for i in range(4)]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with loader_batches(data_loader(data, batch_size=2, num_workers=2)) as batches:
            assert [float(b[0, 0]) for b in batches] == [0.0, 2.0]
        assert [str(w.message) for w in said] == []
        torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)  # (elsewhere torch still says it)
        assert [str(w.message)[:45] for w in said] == ["This DataLoader will create 2 worker processe"]


# ------------------------------------------------------------------------------------------------
# mixing the training sets as upstream
# ------------------------------------------------------------------------------------------------
class _Numbered(torch.utils.data.Dataset):
    def __init__(self, name: str, n: int):
        self.name, self.n, self.epochs = name, n, []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.name, i


def test_3d_and_2d_groups_are_drawn_equally_often_as_upstreams_multiple_datasets():
    """Upstream mixes its 3D sets and its 2D sets half and half (MultipleDatasets, make_same_len):
    wbcap had concatenated them, so the mix followed the sets' sizes (found by a review)."""
    from wbcap.train.datasets import SameLengthGroups

    three_d, two_d = _Numbered("3d", 10), _Numbered("2d", 3)
    mixed = SameLengthGroups([three_d, two_d], seed=0)
    assert len(mixed) == 20  # 2 x the longest group
    assert [mixed[i] for i in range(10)] == [("3d", i) for i in range(10)]
    # upstream's rule: modulo up to the last whole repetition (3 x 3 = 9), then a random draw
    assert [mixed[10 + i] for i in range(9)] == [("2d", i % 3) for i in range(9)]
    drawn = [SameLengthGroups([three_d, two_d], seed=0) for _ in range(2)]
    for m, epoch in zip(drawn, (4, 4)):
        m.set_epoch(epoch)
    assert drawn[0][19] == drawn[1][19] and drawn[0][19][0] == "2d"  # the same draw for the same (seed, epoch)
    picks = set()
    for epoch in range(40):
        mixed.set_epoch(epoch)
        picks.add(mixed[19][1])
    assert picks == {0, 1, 2} and three_d.epochs[-1] == two_d.epochs[-1] == 39  # drawn anew each epoch; epoch passed on
    with pytest.raises(IndexError):
        mixed[20]


def test_a_training_set_of_3d_and_2d_sets_is_mixed_half_and_half(h36m_root, coco_root, body_layer, tmp_path):
    from types import SimpleNamespace

    from wbcap.train.datasets import SameLengthGroups, make_training_set
    from wbcap.train.stages import STAGES

    root = tmp_path / "data"
    root.mkdir()
    for folder in (h36m_root / "Human36M", coco_root / "MSCOCO"):
        (root / folder.name).symlink_to(folder)
    stage = dataclasses.replace(STAGES["body"], datasets=("Human36M", "MSCOCO", "synthetic"), synthetic_length=7)
    mixed = make_training_set(stage, SimpleNamespace(data_root=root), body_layer)
    assert isinstance(mixed, SameLengthGroups)
    three_d, two_d = mixed.groups
    assert [type(d).__name__ for d in three_d.datasets] == ["Human36M", "SyntheticWholeBody"]
    assert type(two_d).__name__ == "COCOWholeBody"
    assert len(mixed) == 2 * max(len(three_d), len(two_d))
    alone = make_training_set(dataclasses.replace(stage, datasets=("Human36M", "synthetic")), SimpleNamespace(data_root=root),
                              body_layer)
    assert isinstance(alone, torch.utils.data.ConcatDataset)  # one group: as upstream, concatenated
