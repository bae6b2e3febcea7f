"""The MPII training set (upstream Hand4Whole's third 2D set) read back from a tiny fixture in its
native layout, written here: ``MPII/data/images/*.jpg``, ``MPII/data/annotations/train.json``
(COCO layout, 16 keypoints as x, y, v; ``file_name`` ``images/<name>.jpg``) and
``MPII_train_SMPLX_NeuralAnnot.json`` (keyed by annotation id).

Expected values are computed here with plain crop arithmetic from the annotation files (upstream's
box rule: sanitize, widen to 3:4, x1.25; the crop maps the box centre to the patch centre and its
width to 384 px; a heatmap cell is 64x64 px), not with the loaders' helpers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_datasets import assert_same

from wbcap.body import joints as J
from wbcap.body.smplx_layer import joints137
from wbcap.testing import dataset_fixtures as fx
from wbcap.testing.images import person_image
from wbcap.train.data.common import Augmentation, DatasetLayoutError
from wbcap.train.data.mpii import LAYOUT, MPII

CELL = 64.0
WIDTH, HEIGHT = 160, 200
FOCAL, DEPTH = 700.0, 5.0  # px, m: 140 px per metre at the body
FLIP = np.arange(J.JOINT_NUM)
for _a, _b in J.FLIP_PAIRS:
    FLIP[_a], FLIP[_b] = _b, _a

# MPII keypoint index -> index among the 137 joints (a known answer, by name: JOINT_NAMES[0..13]);
# 7 (Thorax) and 9 (Head_top) have none.
MPII_TO_137 = {0: 6, 1: 4, 2: 2, 3: 1, 4: 3, 5: 5, 6: 0, 8: 7, 10: 13, 11: 11, 12: 9, 13: 8, 14: 10, 15: 12}
# A standing person in MPII's order (R ankle, knee, hip, L hip, knee, ankle, pelvis, thorax, upper
# neck, head top, R wrist, elbow, shoulder, L shoulder, elbow, wrist), pixels from the body's centre;
# the person faces the camera, so their left is the image's right (+x).
_BODY_PX = np.array([
    [-12, 80], [-12, 45], [-12, 10], [12, 10], [12, 45], [12, 80], [0, 10], [0, -40], [0, -52], [0, -78],
    [-24, 8], [-22, -15], [-20, -42], [20, -42], [22, -15], [24, 8],
], np.float64)  # fmt: skip


def _keypoints(centre, unlabelled=()):
    kps = np.concatenate([_BODY_PX + centre, np.ones((16, 1))], 1)
    kps[list(unlabelled)] = 0  # (MPII's converter writes 0, 0, 0 for a joint without a point)
    return kps


def _mpii_box(kps):
    """The box upstream's parsed train.json holds: the labelled points' extent, 20 % larger."""
    pts = kps[kps[:, 2] > 0, :2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    w, h = x1 - x0 - 1, y1 - y0 - 1
    return [(x0 + x1) / 2 - w * 0.6, (y0 + y1) / 2 - h * 0.6, w * 1.2, h * 1.2]


def write_mpii_fixture(root: Path) -> Path:
    """Images 1 and 2; annotation 0 (image 1: left ankle unlabelled, an SMPL-X fit), 1 (image 1:
    a box of no width, so skipped, though it has a fit) and 2 (image 2: no fit)."""
    base = root / "MPII" / "data"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    images = []
    for img_id, name in ((1, "015601864.jpg"), (2, "000004812.jpg")):
        rgb = person_image(width=WIDTH, height=HEIGHT, seed=img_id)
        assert cv2.imwrite(str(base / "images" / name), np.ascontiguousarray(rgb[:, :, ::-1]))
        images.append({"id": img_id, "file_name": f"images/{name}", "width": WIDTH, "height": HEIGHT})
    centre = np.array([WIDTH * 0.5, HEIGHT * 0.5])
    anns = []
    for aid, img_id, kps in ((0, 1, _keypoints(centre, unlabelled=(5,))), (1, 1, _keypoints(centre + [20, 0])),
                             (2, 2, _keypoints(centre + [-6, 4]))):
        box = _mpii_box(kps)
        if aid == 1:
            box[2] = 0.0
        anns.append({"id": aid, "image_id": img_id, "category_id": 1, "iscrowd": 0, "bbox": box,
                     "area": box[2] * box[3], "keypoints": kps.reshape(-1).tolist(),
                     "num_keypoints": int((kps[:, 2] > 0).sum())})
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": ["r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "throax",
                                 "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
                                 "l_wrist"]}]  # fmt: skip
    (base / "annotations" / "train.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": categories}))
    rng = np.random.default_rng(3)
    princpt = [WIDTH / 2.0, HEIGHT / 2.0]

    def fit(centre_px):
        pelvis = np.array([(centre_px[0] - princpt[0]) / FOCAL * DEPTH, (centre_px[1] - princpt[1]) / FOCAL * DEPTH, DEPTH])
        trans = pelvis - np.array([0.0, -0.35, 0.0])  # (the synthetic model's rest pelvis ~ (0, -0.35, 0))
        # body parameters only, as MPII's NeuralAnnot fits (NeuralAnnot_RELEASE MPII/demo_smplx.py reads these four)
        return {"smplx_param": fx.smplx_fixture_param(rng, [np.pi, 0.0, 0.0], trans.round(6), hands=False, face=False),
                "cam_param": {"focal": [FOCAL, FOCAL], "princpt": princpt}}

    smplx = {"0": fit(centre + [0, 10]), "1": fit(centre + [20, 10]), "77": fit(centre)}  # (77: no annotation)
    (base / "annotations" / "MPII_train_SMPLX_NeuralAnnot.json").write_text(json.dumps(smplx))
    return root


def annotation(root, ann_id):
    db = json.loads((root / "MPII/data/annotations/train.json").read_text())
    ann = next(a for a in db["annotations"] if a["id"] == ann_id)
    return next(i for i in db["images"] if i["id"] == ann["image_id"]), ann


def crop_hm(px, xywh, width, height):
    """Heatmap (x, y) of image pixels in the unaugmented crop of annotation box ``xywh``:
    upstream's process_bbox (sanitize, widen to 384:512, x1.25), worked out here."""
    x, y, w, h = xywh
    x1, y1 = max(0.0, x), max(0.0, y)
    w, h = min(width - 1, x1 + max(0.0, w - 1)) - x1, min(height - 1, y1 + max(0.0, h - 1)) - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    if w > 0.75 * h:
        h = w / 0.75
    else:
        w = h * 0.75
    w, h = w * 1.25, h * 1.25
    px = np.asarray(px, np.float64)
    return np.stack([((px[..., 0] - cx) * 384 / w + 192) / CELL, ((px[..., 1] - cy) * 512 / h + 256) / CELL], -1)


@pytest.fixture(scope="module")
def mpii_root(tmp_path_factory):
    return write_mpii_fixture(tmp_path_factory.mktemp("mpii"))


@pytest.fixture(scope="module")
def mpii(mpii_root, body_layer):
    return MPII(mpii_root, "train", body_layer, augment=None)


# ----------------------------------------------------------------------------------------------
def test_records_skip_the_box_without_area_and_join_images_as_upstream(mpii, mpii_root):
    assert [r["ann_id"] for r in mpii.records] == [0, 2] and mpii.dropped_boxes == 1
    assert mpii.records[0]["img_path"] == mpii_root / "MPII" / "data" / "images" / "015601864.jpg"
    assert mpii.records[1]["img_path"].is_file()
    with pytest.raises(ValueError, match="'train' split only"):
        MPII(mpii_root, "test", mpii.body_layer)


def test_joints_land_on_the_137_joints_by_name(mpii, mpii_root):
    img, ann = annotation(mpii_root, 0)
    inputs, t, m = mpii.get(0, Augmentation())
    assert inputs["img"].shape == (3, 512, 384) and inputs["img"].max() > 0.1
    kps = np.asarray(ann["keypoints"]).reshape(16, 3)
    expected = crop_hm(kps[:, :2], ann["bbox"], img["width"], img["height"])
    for k, j in MPII_TO_137.items():
        assert J.JOINT_NAMES[j] == ("R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax",
                                    "Neck", "Head_top", "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow",
                                    "L_Wrist")[k]  # fmt: skip
        if k == 5:  # the unlabelled left ankle (0, 0, 0): not valid, so not inside either
            assert m["joint_valid"][j, 0] == 0 and m["joint_trunc"][j, 0] == 0
            continue
        np.testing.assert_allclose(t["joint_img"][j, :2], expected[k], atol=1e-3, err_msg=J.JOINT_NAMES[j])
        assert t["joint_img"][j, 2] == 0 and m["joint_valid"][j, 0] == 1 and m["joint_trunc"][j, 0] == 1
    # worked by hand for the right ankle at (68, 180): box [51.8, 6.8, 56.4, 188.4] -> sanitized centre
    # (79.5, 100.5), 55.4 x 187.4 -> 140.55 x 187.4 (3:4) -> 175.6875 x 234.25 (x1.25); 384 / 175.6875 px a px
    np.testing.assert_allclose(t["joint_img"][6, :2], [(192 - 11.5 * 384 / 175.6875) / 64, (256 + 79.5 * 512 / 234.25) / 64],
                               atol=1e-4)  # (2.607, 6.715)
    others = np.setdiff1d(np.arange(J.JOINT_NUM), list(MPII_TO_137.values()))
    assert m["joint_valid"][others].sum() == 0 and np.all(t["joint_img"][others] == 0)  # Thorax, Head_top dropped
    assert m["joint_valid"].sum() == 13
    assert m["is_3D"] == 0 and np.all(t["joint_cam"] == 0)
    for part in ("lhand", "rhand", "face"):  # MPII has no part boxes: upstream's zero dummies
        assert m[f"{part}_bbox_valid"] == 0
        assert np.all(t[f"{part}_bbox_center"] == 0) and np.all(t[f"{part}_bbox_size"] == 0)
    for d in (inputs, t, m):
        assert all(np.asarray(v).dtype == np.float32 for v in d.values())


def test_flip_swaps_left_and_right(mpii, mpii_root):
    img, ann = annotation(mpii_root, 0)
    kps = np.asarray(ann["keypoints"]).reshape(16, 3)
    expected = crop_hm(kps[:, :2], ann["bbox"], img["width"], img["height"])
    _, t, m = mpii.get(0, Augmentation(flip=True))
    for k, j in MPII_TO_137.items():
        mirrored = FLIP[j]  # the person's left joint is seen as a right one in the mirrored image
        if k == 5:
            assert m["joint_valid"][mirrored, 0] == 0
            continue
        np.testing.assert_allclose(t["joint_img"][mirrored, :2], [6.0 - expected[k, 0], expected[k, 1]], atol=2e-3,
                                   err_msg=J.JOINT_NAMES[j])
        assert m["joint_valid"][mirrored, 0] == 1
    assert m["joint_valid"][J.JOINT_NAMES.index("R_Ankle"), 0] == 0 and m["joint_valid"][J.JOINT_NAMES.index("L_Ankle"), 0] == 1


def test_smplx_targets_with_upstreams_masks_or_none(mpii, mpii_root, body_layer):
    img, ann = annotation(mpii_root, 0)
    fit = json.loads((mpii_root / "MPII/data/annotations/MPII_train_SMPLX_NeuralAnnot.json").read_text())["0"]
    p = fit["smplx_param"]
    _, t, m = mpii.get(0, Augmentation())
    assert m["smplx_shape_valid"] == 1 and m["smplx_expr_valid"] == 0  # (body parameters only)
    with torch.no_grad():
        out = body_layer(betas=torch.tensor([p["shape"]]), global_orient=torch.tensor([p["root_pose"]]),
                         body_pose=torch.tensor([p["body_pose"]]), left_hand_pose=torch.zeros(1, 45),
                         right_hand_pose=torch.zeros(1, 45), jaw_pose=torch.zeros(1, 3), expression=torch.zeros(1, 10),
                         transl=torch.tensor([p["trans"]]))
    joints = joints137(out)[0].numpy().astype(np.float64)
    px = joints[:, :2] / joints[:, 2:] * FOCAL + np.array(fit["cam_param"]["princpt"])
    body = list(J.JOINT_PART["body"])
    np.testing.assert_allclose(t["smplx_joint_img"][body, :2], crop_hm(px[body], ann["bbox"], img["width"], img["height"]),
                               atol=2e-3)
    np.testing.assert_allclose(t["smplx_pose"], np.concatenate([p["root_pose"], p["body_pose"], np.zeros(93)]), atol=1e-5)
    # upstream data/MPII/MPII.py: the ankles' and wrists' rotations and the toes and heels invalid
    pose_valid = np.zeros(53)
    pose_valid[:22] = 1
    pose_valid[[7, 8, 20, 21]] = 0
    assert [J.ORIG_JOINT_NAMES[i] for i in (7, 8, 20, 21)] == ["L_Ankle", "R_Ankle", "L_Wrist", "R_Wrist"]
    np.testing.assert_array_equal(m["smplx_pose_valid"], np.repeat(pose_valid, 3))
    joint_valid = np.zeros(137)
    joint_valid[:25] = 1  # the body's joints; no hands or face in the fit
    joint_valid[14:20] = 0
    assert J.JOINT_NAMES[14:20] == ("L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")
    np.testing.assert_array_equal(m["smplx_joint_valid"][:, 0], joint_valid)
    xy = t["smplx_joint_img"]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < 6) & (xy[:, 1] >= 0) & (xy[:, 1] < 8) & (xy[:, 2] >= 0) & (xy[:, 2] < 8)
    np.testing.assert_array_equal(m["smplx_joint_trunc"][:, 0], joint_valid * inside)
    assert m["smplx_joint_trunc"][:5].sum() == 5  # (pelvis, hips, knees well inside the crop)

    _, t2, m2 = mpii.get(1, Augmentation())  # annotation 2: no fit
    assert m2["smplx_shape_valid"] == 0 and m2["smplx_pose_valid"].sum() == 0
    assert m2["smplx_joint_valid"].sum() == 0 and m2["smplx_joint_trunc"].sum() == 0
    assert np.all(t2["smplx_pose"] == 0) and np.all(t2["smplx_joint_img"] == 0)
    assert m2["joint_valid"].sum() == 14  # its own keypoints all labelled


def test_a_missing_file_is_one_line_naming_it(tmp_path, body_layer):
    root = write_mpii_fixture(tmp_path)
    smplx = root / "MPII/data/annotations/MPII_train_SMPLX_NeuralAnnot.json"
    smplx.unlink()
    with pytest.raises(DatasetLayoutError) as err:
        MPII(root, "train", body_layer)
    assert str(err.value) == f"{smplx} missing; expected layout: {LAYOUT}"
    assert "\n" not in str(err.value) and "<root>/MPII/data/<file_name> (file_name: images/<name>.jpg)" in str(err.value)
    (root / "MPII/data/annotations/train.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"annotations/train.json missing; expected layout: "):
        MPII(root, "train", body_layer)
    root = write_mpii_fixture(tmp_path / "again")
    ds = MPII(root, "train", body_layer)
    ds.records[0]["img_path"].unlink()
    with pytest.raises(DatasetLayoutError, match=r"MPII/data/images/015601864.jpg missing"):
        ds[0]


def test_wrong_keypoint_count_is_one_line_naming_the_file(tmp_path, body_layer):
    root = write_mpii_fixture(tmp_path)
    path = root / "MPII/data/annotations/train.json"
    db = json.loads(path.read_text())
    db["annotations"][0]["keypoints"] += [0.0, 0.0, 0.0]  # 17 joints, as COCO's
    path.write_text(json.dumps(db))
    with pytest.raises(DatasetLayoutError) as err:
        MPII(root, "train", body_layer)
    said = str(err.value)
    assert said.startswith(f"{path}: ") and "has 51 numbers, not 48" in said and "\n" not in said, said


# ----------------------------------------------------------------------------------------------
# the training set: `wbcap train body` with the default recipe (Human36M, MSCOCO, MPII)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory, mpii_root):
    root = tmp_path_factory.mktemp("data")
    fx.write_human36m_fixture(root, subjects=(1, 5, 6, 7, 8), frames=(0, 5), cameras=(1,))
    fx.write_cocowb_fixture(root)
    (root / "MPII").symlink_to(mpii_root / "MPII")
    return root


def test_wbcap_train_body_draws_mpii_in_the_2d_group(data_root, body_dir, body_layer, tmp_path, monkeypatch):
    import wbcap.train.trainer as trainer
    from wbcap.cli import cli
    from wbcap.train.datasets import SameLengthGroups, make_training_set

    built = []

    def fake_train(stage, run, on_step=None, **kwargs):  # (the loop's own first step: the training set)
        built.append((stage, make_training_set(stage, run, body_layer)))
        Path(run.out).mkdir(parents=True, exist_ok=True)
        (Path(run.out) / "snapshot_0.pth.tar").write_bytes(b"x")

    monkeypatch.setattr(trainer, "train", fake_train)
    base = ["train", "body", "--data-root", data_root, "--max-steps", "1", "--workers", "0", "--body-models", body_dir,
            "--device", "cpu"]
    r = CliRunner().invoke(cli, [str(a) for a in (*base, "-o", tmp_path / "a")])
    assert r.exit_code == 0, r.output
    stage, mixed = built[-1]
    assert stage.datasets == ("Human36M", "MSCOCO", "MPII")  # the recipe's sets, as upstream's config.py
    assert isinstance(mixed, SameLengthGroups)
    three_d, two_d = mixed.groups
    assert type(three_d).__name__ == "Human36M"
    assert [type(d).__name__ for d in two_d.datasets] == ["COCOWholeBody", "MPII"]
    coco, mpii = two_d.datasets
    assert len(mixed) == 2 * len(three_d) and len(three_d) > len(two_d) == len(coco) + 2
    drawn = [mixed.source(i) for i in range(len(mixed))]
    from_mpii = [(i, j - len(coco)) for i, (g, j) in enumerate(drawn) if g == 1 and j >= len(coco)]
    assert from_mpii and all(g == 0 for g, _ in drawn[: len(three_d)])
    i, j = from_mpii[0]
    own = MPII(data_root, "train", body_layer, seed=stage.seed)  # the same sample, augmentation and all
    assert_same(mixed[i], own[j])
    assert mixed[i][2]["is_3D"] == 0

    r = CliRunner().invoke(cli, [str(a) for a in (*base, "--datasets", "MSCOCO,MPII", "-o", tmp_path / "b")])
    assert r.exit_code == 0, r.output
    alone = built[-1][1]  # 2D sets only: one group, concatenated (as upstream)
    assert isinstance(alone, torch.utils.data.ConcatDataset) and not isinstance(alone, SameLengthGroups)
    assert [type(d).__name__ for d in alone.datasets] == ["COCOWholeBody", "MPII"]


def test_a_data_root_without_mpii_says_where_its_files_go(data_root, tmp_path, body_layer):
    from wbcap.train.datasets import make_training_set
    from wbcap.train.stages import STAGES

    root = tmp_path / "data"
    root.mkdir()
    for name in ("Human36M", "MSCOCO"):
        (root / name).symlink_to(data_root / name)
    for stage in ("body", "finetune"):
        with pytest.raises(DatasetLayoutError) as err:
            make_training_set(STAGES[stage], SimpleNamespace(data_root=root), body_layer)
        assert str(err.value) == (f"{root / 'MPII'} missing; expected layout: {LAYOUT}; or train without it: "
                                  "datasets Human36M,MSCOCO")  # (the CLI says --datasets)
    stage = dataclasses.replace(STAGES["hand"], datasets=("MPII",))
    with pytest.raises(Exception, match=r"the hand stage trains on FreiHAND, InterHand26M and MSCOCO \(COCO-WholeBody's hand crops\), not MPII"):
        make_training_set(stage, SimpleNamespace(data_root=root), body_layer)


@pytest.mark.slow  # the real loop (tiny network, one step)
@pytest.mark.usefixtures("one_torch_thread")
def test_one_real_training_step_on_a_batch_of_human36m_and_mpii_samples(mpii_root, body_dir, tmp_path):
    """One batch holding the whole epoch (5 Human3.6M frames, 5 MPII draws) collates and
    trains: the two sets' samples have one schema, and MPII's masks give a finite loss."""
    import wbcap.train.trainer as trainer
    from wbcap.cli import cli

    root = fx.write_human36m_fixture(tmp_path / "data", subjects=(1, 5, 6, 7, 8), frames=(0,), cameras=(1,))
    (root / "MPII").symlink_to(mpii_root / "MPII")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('amp = false\n[model]\nbackbone_depth = 18\nhand_backbone_depth = 18\n'
                   'face_backbone_depth = 18\nbackbone_width = 16\ninput_img_shape = [256, 192]\ninput_body_shape = [128, 96]\n'
                   'output_hm_shape = [8, 4, 3]\ninput_hand_shape = [128, 128]\noutput_hand_hm_shape = [8, 4, 4]\n'
                   'input_face_shape = [96, 96]\n')
    out, losses = tmp_path / "r", []
    real = trainer.train

    def recording(stage, run, on_step=None, **kwargs):
        return real(stage, run, on_step=lambda epoch, step, loss: losses.append(loss), **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "train", recording)
        r = CliRunner().invoke(cli, [str(a) for a in (
            "train", "body", "--config", cfg, "--datasets", "Human36M,MPII", "--data-root", root, "--epochs", "1",
            "--batch-size", "10", "--workers", "0", "--body-models", body_dir, "--device", "cpu", "-o", out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (out / "snapshot_0.pth.tar").is_file()
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0  # (10 samples: one step, both groups)
