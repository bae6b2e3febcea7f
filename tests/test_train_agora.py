"""The AGORA training set (upstream Hand4Whole's fine-tuning set) read back from a tiny fixture in the
layout upstream's parsing tool writes (tool/AGORA/agora2coco_smplx.py), written here:
``AGORA/data/AGORA_train_SMPLX.json`` (COCO layout; boxes [x, y, w, h] in 3840x2160 pixels),
``images_1280x720/train_<i>/<name>_1280x720.png``, ``smplx_params_cam/train_<i>/<name>/<person>.json``
(global_orient, body_pose, betas, left/right_hand_pose, jaw_pose, leye/reye_pose, expression, transl),
``cam_params/train_<i>/<name>.json`` (focal, princpt at 3840x2160) and, for the crops,
``images_3840x2160/train_<i>_crop/<name>_person_id_<person>.{png,json}``. And the AGORA recipe
(``wbcap/train/configs/agora.toml``: `wbcap train finetune --config agora`).

Expected values are worked out here from the files with plain arithmetic (the 1/3 scale from
3840x2160 to 1280x720; upstream's sanitize (w - 1) and crop-box rules; a heatmap cell is 64 px of the
512x384 crop) and an independent SMPL-X forward pass, not with the loader's helpers.
"""

from __future__ import annotations

import json
import re
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
from wbcap.train.data.agora import AGORA, LAYOUT
from wbcap.train.data.common import Augmentation, DatasetLayoutError

REPO = Path(__file__).resolve().parents[1]
CELL = 64.0
FOCAL_4K = [3000.0, 3000.0]
PRINCPT_4K = [1900.5, 1095.0]
DEPTH = 5.0
NAMES = {0: ("train_0", "ag_trainset_fixture_bfh_archviz_5_10_cam00_00001"),
         1: ("train_3", "ag_trainset_fixture_bfh_flowers_5_15_cam02_00007")}  # fmt: skip
# (aid, image id, person id, valid, person box, lhand box, rhand box, face box), all [x, y, w, h] at 3840x2160
ANNS = (
    (0, 0, 0, True, [1650.0, 480.0, 540.0, 1200.0], [2100.0, 1200.0, 150.0, 120.0], [3780.0, 2100.0, 120.0, 90.0],
     [1860.0, 510.0, 120.0, 135.0]),
    (1, 0, 1, False, [600.0, 500.0, 500.0, 1100.0], [700.0, 1100.0, 90.0, 90.0], [900.0, 1100.0, 90.0, 90.0],
     [800.0, 520.0, 100.0, 110.0]),
    (2, 1, 0, True, [1500.0, 300.0, 660.0, 1500.0], [1650.0, 1020.0, 120.0, 120.0], [3900.0, 100.0, 60.0, 60.0],
     [1770.0, 330.0, 150.0, 150.0]),
)  # fmt: skip
# the 1280x720 boxes, worked out by hand: scaled by 1/3, sanitized (x2 = min(1279, x1 + w - 1)), made xyxy;
# the person box then widened to 3:4 and x1.25 around the sanitized centre
PERSON_0 = [639.5 - 374.0625 / 2, 359.5 - 498.75 / 2, 374.0625, 498.75]  # [550, 160, 180, 400] -> 179 x 399
LHAND_0 = [700.0, 400.0, 749.0, 439.0]  # [700, 400, 50, 40]
RHAND_0 = [1260.0, 700.0, 1279.0, 719.0]  # [1260, 700, 40, 30]: cut at the image's edge
FACE_0 = [620.0, 170.0, 659.0, 214.0]  # [620, 170, 40, 45]
# the crop of annotation 0 (upstream's crop_and_resize_4k_images.py: the box made 384:512, x1.25, 384x512 pixels)
CROP_SCALE = 384 / 1125.0  # [1650, 480, 540, 1200] -> 900 x 1200 -> 1125 x 1500 around (1920, 1080)
CROP_AFFINE = [[CROP_SCALE, 0.0, 192 - 1920 * CROP_SCALE], [0.0, CROP_SCALE, 256 - 1080 * CROP_SCALE]]


def _person_json(rng, pelvis_px, kid=False):
    """A per-person file as the tool writes it: the fit in the camera frame of the 3840x2160 image."""
    pelvis = np.array([(pelvis_px[0] - PRINCPT_4K[0]) / FOCAL_4K[0] * DEPTH,
                       (pelvis_px[1] - PRINCPT_4K[1]) / FOCAL_4K[1] * DEPTH, DEPTH])  # fmt: skip
    trans = (pelvis - np.array([0.0, -0.35, 0.0])).round(6)  # (the synthetic model's rest pelvis ~ (0, -0.35, 0))
    p = fx.smplx_fixture_param(rng, [np.pi, 0.0, 0.0], trans, hands=True, face=True)
    betas = p["shape"] + ([0.8] if kid else [])  # (AGORA's kid fits: an 11th beta, the child template's weight)
    return {"global_orient": p["root_pose"], "body_pose": p["body_pose"], "jaw_pose": p["jaw_pose"],
            "leye_pose": [0.1, 0.0, 0.0], "reye_pose": [0.1, 0.0, 0.0], "left_hand_pose": p["lhand_pose"],
            "right_hand_pose": p["rhand_pose"], "betas": betas, "expression": p["expr"], "transl": trans.tolist()}  # fmt: skip


def _png(path, width, height, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = person_image(width=width, height=height, seed=seed)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])


def write_agora_fixture(root: Path, validation: bool = False) -> Path:
    """Images 0 (annotations 0, valid, and 1, not valid) and 1 (annotation 2: valid, its right hand's box
    outside the image; a kid's 11 betas); the crop of annotation 0 only. ``validation``: the
    validation split's file too (AGORA_validation_SMPLX.json): the same annotations, 1 and 2 valid."""
    base = root / "AGORA" / "data"
    rng = np.random.default_rng(5)
    images = []
    for img_id, (folder, name) in NAMES.items():
        images.append({"id": img_id, "file_name_3840x2160": f"images_3840x2160/{folder}/{name}.png",
                       "file_name_1280x720": f"images_1280x720/{folder}/{name}_1280x720.png"})
        _png(base / images[-1]["file_name_1280x720"], 1280, 720, seed=img_id)
        cam = base / "cam_params" / folder / f"{name}.json"
        cam.parent.mkdir(parents=True, exist_ok=True)
        cam.write_text(json.dumps({"focal": FOCAL_4K, "princpt": PRINCPT_4K}))
    anns = []
    for aid, img_id, person, valid, bbox, lhand, rhand, face in ANNS:
        folder, name = NAMES[img_id]
        smplx = f"./smplx_params_cam/{folder}/{name}/{person}.json"
        (base / smplx).parent.mkdir(parents=True, exist_ok=True)
        centre = [bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] * 0.55]
        (base / smplx).write_text(json.dumps(_person_json(rng, centre, kid=aid == 2)))
        anns.append({"id": aid, "image_id": img_id, "person_id": person, "smplx_param_path": smplx,
                     "cam_param_path": f"./cam_params/{folder}/{name}.json", "gender": "female", "kid": aid == 2,
                     "occlusion": 12.5, "is_valid": valid, "age": "31-50", "ethnicity": "asian", "bbox": bbox,
                     "lhand_bbox": lhand, "rhand_bbox": rhand, "face_bbox": face})  # fmt: skip
    (base / "AGORA_train_SMPLX.json").write_text(json.dumps({"images": images, "annotations": anns}))
    if validation:  # (annotation 0 left out there, 1 in: the two files tell apart)
        val = [{**a, "is_valid": a["id"] != 0} for a in anns]
        (base / "AGORA_validation_SMPLX.json").write_text(json.dumps({"images": images, "annotations": val}))
    crop = base / "images_3840x2160" / "train_0_crop" / f"{NAMES[0][1]}_person_id_0"
    _png(crop.with_suffix(".png"), 384, 512, seed=7)
    crop.with_suffix(".json").write_text(json.dumps({"bbox_orig": [1357.5, 330.0, 1125.0, 1500.0],
                                                     "affine_mat": CROP_AFFINE, "resized_height": 512,
                                                     "resized_width": 384}))  # fmt: skip
    return root


def person_file(root, aid):
    ann = next(a for a in json.loads((root / "AGORA/data/AGORA_train_SMPLX.json").read_text())["annotations"]
               if a["id"] == aid)  # fmt: skip
    return root / "AGORA" / "data" / ann["smplx_param_path"]


def projected(body_layer, p, focal, princpt):
    """The 137 joints of per-person file ``p`` through the body layer, projected with the camera: (137, 2) px."""
    t = {k: torch.tensor([p[k]], dtype=torch.float32) for k in p if k not in ("leye_pose", "reye_pose")}
    with torch.no_grad():
        out = body_layer(betas=t["betas"][:, :10], global_orient=t["global_orient"], body_pose=t["body_pose"],
                         left_hand_pose=t["left_hand_pose"], right_hand_pose=t["right_hand_pose"],
                         jaw_pose=t["jaw_pose"], expression=t["expression"], transl=t["transl"])  # fmt: skip
    joints = joints137(out)[0].numpy().astype(np.float64)
    return joints[:, :2] / joints[:, 2:] * np.asarray(focal) + np.asarray(princpt), joints


def crop_hm(px, xywh):
    """Heatmap (x, y) of image pixels in the unaugmented crop of the crop box ``xywh`` (3:4 already)."""
    x, y, w, h = xywh
    px = np.asarray(px, np.float64)
    return np.stack([((px[..., 0] - x - w / 2) * 384 / w + 192) / CELL, ((px[..., 1] - y - h / 2) * 512 / h + 256) / CELL], -1)


@pytest.fixture(scope="module")
def agora_root(tmp_path_factory):
    return write_agora_fixture(tmp_path_factory.mktemp("agora"))


@pytest.fixture(scope="module")
def agora(agora_root, body_layer):
    return AGORA(agora_root, "train", body_layer, augment=None)


# ----------------------------------------------------------------------------------------------
def test_valid_annotations_give_samples_with_the_boxes_scaled_to_1280x720(agora, agora_root):
    assert [r["ann_id"] for r in agora.records] == [0, 2] and agora.dropped_boxes == 0  # (1: is_valid false)
    base = agora_root / "AGORA" / "data"
    r0, r2 = agora.records
    assert r0["img_path"] == base / "images_1280x720" / "train_0" / f"{NAMES[0][1]}_1280x720.png"
    assert r0["smplx_param_path"] == base / "smplx_params_cam" / "train_0" / NAMES[0][1] / "0.json"
    assert r2["cam_param_path"] == base / "cam_params" / "train_3" / f"{NAMES[1][1]}.json"
    np.testing.assert_allclose(r0["bbox"], PERSON_0, rtol=1e-6)
    np.testing.assert_allclose(r0["lhand_bbox"], LHAND_0, atol=1e-4)
    np.testing.assert_allclose(r0["rhand_bbox"], RHAND_0, atol=1e-4)
    np.testing.assert_allclose(r0["face_bbox"], FACE_0, atol=1e-4)
    assert r2["rhand_bbox"] is None  # [3900, 100, 60, 60] -> x 1300 > 1279: nothing left in the image
    np.testing.assert_allclose(r2["lhand_bbox"], [550, 340, 589, 379], atol=1e-4)  # [550, 340, 40, 40]
    with pytest.raises(ValueError, match=r"^AGORA's splits are 'train', 'validation', 'test', got 'val'$"):
        AGORA(agora_root, "val", agora.body_layer)
    with pytest.raises(ValueError, match="resolution must be one of '1280x720', '3840x2160'"):
        AGORA(agora_root, "train", agora.body_layer, resolution="1920x1080")


def test_box_targets_in_the_crop_and_swapped_under_a_flip(agora):
    inputs, t, m = agora.get(0, Augmentation())
    assert inputs["img"].shape == (3, 512, 384) and inputs["img"].max() > 0.1
    for part, box in (("lhand", LHAND_0), ("rhand", RHAND_0), ("face", FACE_0)):
        lo, hi = crop_hm(np.array([box[:2], box[2:]]), PERSON_0)
        np.testing.assert_allclose(t[f"{part}_bbox_center"], (lo + hi) / 2, atol=1e-4, err_msg=part)
        np.testing.assert_allclose(t[f"{part}_bbox_size"], hi - lo, atol=1e-4, err_msg=part)
        assert m[f"{part}_bbox_valid"] == 1
    _, t2, m2 = agora.get(1, Augmentation())
    assert m2["rhand_bbox_valid"] == 0 and m2["lhand_bbox_valid"] == 1 and m2["face_bbox_valid"] == 1
    np.testing.assert_array_equal(t2["rhand_bbox_center"], [0.5, 0.5])  # (upstream's dummy [0, 0, 1, 1])
    _, tf, mf = agora.get(1, Augmentation(flip=True))  # the left hand's box is the right one in the mirror
    assert mf["lhand_bbox_valid"] == 0 and mf["rhand_bbox_valid"] == 1
    np.testing.assert_allclose(tf["rhand_bbox_size"], t2["lhand_bbox_size"], atol=1e-4)
    np.testing.assert_allclose(tf["rhand_bbox_center"][0], 6.0 - t2["lhand_bbox_center"][0], atol=2e-3)


def test_smplx_targets_are_the_fit_through_the_body_layer_with_the_scaled_camera(agora, agora_root, body_layer):
    for idx, aid in ((0, 0), (1, 2)):
        p = json.loads(person_file(agora_root, aid).read_text())
        px, joints = projected(body_layer, p, np.array(FOCAL_4K) / 3, np.array(PRINCPT_4K) / 3)
        _, t, m = agora.get(idx, Augmentation())
        box = agora.records[idx]["bbox"]
        np.testing.assert_allclose(t["smplx_joint_img"][:, :2], crop_hm(px, box), atol=2e-3)
        # upstream: the dataset joints are the SMPL-X ones, all valid (body, hands and face)
        np.testing.assert_array_equal(t["joint_img"], t["smplx_joint_img"])
        np.testing.assert_array_equal(t["joint_cam"], t["smplx_joint_cam"])
        rel = joints - joints[J.ROOT_JOINT_IDX]
        body = list(J.JOINT_PART["body"])
        np.testing.assert_allclose(t["smplx_joint_cam"][body], rel[body], atol=1e-5)
        lh = list(J.JOINT_PART["lhand"])
        np.testing.assert_allclose(t["smplx_joint_cam"][lh], rel[lh] - rel[J.LWRIST_IDX], atol=1e-5)
        assert m["smplx_joint_valid"].sum() == J.JOINT_NUM and m["smplx_pose_valid"].sum() == 159
        np.testing.assert_array_equal(m["joint_valid"], m["smplx_joint_valid"])
        np.testing.assert_array_equal(m["joint_trunc"], m["smplx_joint_trunc"])
        assert m["smplx_joint_trunc"][:25].sum() >= 20  # (the body well inside its crop)
        np.testing.assert_allclose(t["smplx_pose"], np.concatenate(
            [p["global_orient"], p["body_pose"], p["left_hand_pose"], p["right_hand_pose"], p["jaw_pose"]]), atol=1e-5)
        np.testing.assert_allclose(t["smplx_shape"], p["betas"][:10], atol=1e-6)  # (annotation 2: 11 betas)
        np.testing.assert_allclose(t["smplx_expr"], p["expression"], atol=1e-6)
        assert m["is_3D"] == 1 and m["smplx_shape_valid"] == 1 and m["smplx_expr_valid"] == 1
        for d in (t, m):
            assert all(np.asarray(v).dtype == np.float32 for v in d.values())
    assert len(p["betas"]) == 11


def test_the_3840x2160_crops(agora_root, body_layer, caplog):
    crops = AGORA(agora_root, "train", body_layer, augment=None, resolution="3840x2160")
    assert [r["ann_id"] for r in crops.records] == [0] and crops.without_crop == 1  # (2 has no crop)
    assert "1 of its valid annotations have no crop" in caplog.text
    inputs, t, m = crops.get(0, Augmentation())
    assert inputs["img"].shape == (3, 512, 384)
    s, (x0, y0) = CROP_SCALE, (192 - 1920 * CROP_SCALE, 256 - 1080 * CROP_SCALE)
    for part, (x, y, w, h) in zip(("lhand", "rhand", "face"), ANNS[0][5:]):
        # the corners through the crop's affine, sanitized (w - 1) against 3840x2160 as upstream; the crop is the patch
        x1, y1 = x * s + x0, y * s + y0
        lo, hi = np.array([x1, y1]), np.array([x1 + w * s - 1, y1 + h * s - 1])
        np.testing.assert_allclose(t[f"{part}_bbox_center"], (lo + hi) / 2 / CELL, atol=1e-4, err_msg=part)
        np.testing.assert_allclose(t[f"{part}_bbox_size"], (hi - lo) / CELL, atol=1e-4, err_msg=part)
    p = json.loads(person_file(agora_root, 0).read_text())
    px, _ = projected(body_layer, p, np.array(FOCAL_4K) * s, np.array(PRINCPT_4K) * s + [x0, y0])
    np.testing.assert_allclose(t["smplx_joint_img"][:, :2], px / CELL, atol=2e-3)
    assert m["is_3D"] == 1


def test_a_damaged_person_file_is_one_line_naming_it(tmp_path, body_layer):
    root = write_agora_fixture(tmp_path)
    ds = AGORA(root, "train", body_layer, augment=None)
    path = person_file(root, 0)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # cut short
    with pytest.raises(DatasetLayoutError) as err:
        ds[0]
    said = str(err.value)
    assert said.startswith(f"{path}: not readable JSON (") and "\n" not in said, said
    p = json.loads(good)
    p["body_pose"] = p["body_pose"][:60]
    path.write_text(json.dumps(p))
    with pytest.raises(DatasetLayoutError) as err:
        ds[0]
    said = str(err.value)
    assert said.startswith(f"{path}: ") and "'body_pose' has 60 numbers, not 63" in said and "\n" not in said, said
    del p["body_pose"]
    path.write_text(json.dumps(p))
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{path}: no 'body_pose' field")):
        ds[0]
    path.unlink()
    with pytest.raises(DatasetLayoutError) as err:
        ds[0]
    assert str(err.value) == f"{path} missing; expected layout: {LAYOUT}"
    cam = ds.records[1]["cam_param_path"]
    cam.write_text(json.dumps({"focal": [1000.0], "princpt": [640.0, 360.0]}))
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{cam}: ") + r".*'focal' has 1 numbers, not 2"):
        ds[1]
    img = ds.records[1]["img_path"]  # (read before its files: the image's size is said first)
    assert cv2.imwrite(str(img), np.zeros((2160 // 4, 3840 // 4, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match=re.escape(f"{img}: 960x540 pixels, not the 1280x720")):
        ds.get(1, Augmentation())


def test_a_missing_annotation_file_is_one_line_naming_it(tmp_path, body_layer):
    root = tmp_path / "data"
    (root / "AGORA" / "data").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as err:
        AGORA(root, "train", body_layer)
    assert str(err.value) == f"{root / 'AGORA/data/AGORA_train_SMPLX.json'} missing; expected layout: {LAYOUT}"
    assert "<root>/AGORA/data/<smplx_param_path> (smplx_params_cam/train_<i>/<name>/<person_id>.json)" in LAYOUT


# ----------------------------------------------------------------------------------------------
# the recipe: `wbcap train finetune --config agora`
# ----------------------------------------------------------------------------------------------
def test_the_agora_recipe_is_upstreams_schedule_counted_from_0():
    from wbcap.train.stages import RECIPES, STAGE_DATASETS, STAGES, load_stage

    agora = RECIPES["agora"]
    assert load_stage("finetune", REPO / "wbcap" / "train" / "configs" / "agora.toml") == agora
    assert {p.stem for p in (REPO / "wbcap" / "train" / "configs").glob("*.toml")} == set(STAGES) | set(RECIPES)
    assert (agora.stage, agora.datasets, agora.lr, agora.lr_decay_epochs, agora.epochs) == (
        "finetune", ("AGORA",), 1e-4, (39, 59), 69)
    assert (agora.lr_decay_factor, agora.batch_size, agora.model) == (10.0, 24, STAGES["finetune"].model)

    def upstream_lr(epoch, lr=1e-4, dec=(40, 60), factor=10):  # common/base.py set_lr, as written there
        for e in dec:
            if epoch < e:
                break
        return lr / factor ** dec.index(e) if epoch < dec[-1] else lr / factor ** len(dec)

    # upstream trains range(start_epoch, end_epoch) = 1..69 (reset_epoch.py's epoch 0, load_model's + 1)
    assert [agora.lr_at(e) for e in range(agora.epochs)] == pytest.approx([upstream_lr(e) for e in range(1, 70)])
    assert [agora.lr_at(e) for e in (0, 38, 39, 58, 59, 68)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6])
    assert "AGORA" in STAGE_DATASETS["finetune"] and "AGORA" in STAGE_DATASETS["body"]
    assert "AGORA" not in STAGE_DATASETS["hand"]


def _micro_recipe(tmp_path, micro_ckpt):
    """wbcap/train/configs/agora.toml with the [model] table of the micro checkpoint (the recipe's values kept)."""
    from wbcap.model.checkpoint import read_checkpoint

    text = (REPO / "wbcap" / "train" / "configs" / "agora.toml").read_text().split("\n[model]")[0]
    model = read_checkpoint(micro_ckpt).config.to_dict()
    lines = [f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in model.items()]
    path = tmp_path / "agora_micro.toml"
    path.write_text(text.replace("amp = true", "amp = false") + "\n[model]\n" + "\n".join(lines) + "\n")
    return path


def test_wbcap_train_finetune_with_the_agora_recipe_trains_on_agora(agora_root, body_dir, body_layer, micro_ckpt,
                                                                     tmp_path, monkeypatch):
    import wbcap.train.trainer as trainer
    from wbcap.cli import cli
    from wbcap.train.datasets import SameLengthGroups, make_training_set

    built = []

    def fake_train(stage, run, on_step=None, **kwargs):  # (the loop's own first step: the training set)
        built.append((stage, make_training_set(stage, run, body_layer)))
        Path(run.out).mkdir(parents=True, exist_ok=True)
        (Path(run.out) / "snapshot_0.pth.tar").write_bytes(b"x")

    monkeypatch.setattr(trainer, "train", fake_train)
    recipe = _micro_recipe(tmp_path, micro_ckpt)
    base = ["train", "finetune", "--config", recipe, "--data-root", agora_root, "--max-steps", "1", "--workers", "0",
            "--body-models", body_dir, "--device", "cpu"]
    r = CliRunner().invoke(cli, [str(a) for a in (*base, "--init", micro_ckpt, "-o", tmp_path / "a")])
    assert r.exit_code == 0, r.output
    stage, data = built[-1]
    assert (stage.stage, stage.datasets, stage.lr, stage.lr_decay_epochs, stage.epochs) == (
        "finetune", ("AGORA",), 1e-4, (39, 59), 69)
    assert isinstance(data, AGORA) and not isinstance(data, SameLengthGroups)  # 3D only: one group, as upstream
    assert len(data) == 2 and tuple(data.model.input_img_shape) == (256, 192)
    own = AGORA(agora_root, "train", body_layer, seed=stage.seed, model=stage.model)  # the same samples
    for i in range(2):
        assert_same(data[i], own[i])
        assert data[i][2]["is_3D"] == 1 and data[i][0]["img"].shape == (3, 256, 192)

    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(cli, [str(a) for a in (*base, "--init", micro_ckpt, "--data-root", empty, "-o", tmp_path / "b")])
    assert r.exit_code != 0 and f"{empty / 'AGORA'} missing; expected layout: {LAYOUT}" in r.output
    assert not (tmp_path / "b").exists()


def test_without_init_the_recipe_is_refused(agora_root, body_dir, micro_ckpt, tmp_path):
    from wbcap.cli import cli

    r = CliRunner().invoke(cli, [str(a) for a in ("train", "finetune", "--config", _micro_recipe(tmp_path, micro_ckpt),
                                                  "--data-root", agora_root, "--body-models", body_dir, "--device",
                                                  "cpu", "-o", tmp_path / "r")])  # fmt: skip
    assert r.exit_code != 0 and "the finetune stage starts from a whole-body checkpoint: pass --init" in r.output
    assert r.output.count("\n") == 1, r.output  # (no "N data-loading workers" line above it: a researcher's trial)


def test_agora_is_a_3d_set_beside_the_2d_ones(agora_root, body_layer, tmp_path):
    import dataclasses

    from wbcap.train.datasets import THREE_D_SETS, SameLengthGroups, make_training_set
    from wbcap.train.stages import RECIPES

    assert "AGORA" in THREE_D_SETS
    root = fx.write_cocowb_fixture(tmp_path)
    (root / "AGORA").symlink_to(agora_root / "AGORA")
    stage = dataclasses.replace(RECIPES["agora"], datasets=("AGORA", "MSCOCO"))
    mixed = make_training_set(stage, SimpleNamespace(data_root=root), body_layer)
    assert isinstance(mixed, SameLengthGroups)
    assert [type(g).__name__ for g in mixed.groups] == ["AGORA", "COCOWholeBody"]


@pytest.mark.slow  # the real loop (micro network, one step)
@pytest.mark.usefixtures("one_torch_thread")
def test_one_real_training_step_on_agora(agora_root, body_dir, micro_ckpt, tmp_path):
    """One batch holding both AGORA samples collates and trains from the --init checkpoint: a finite loss."""
    import wbcap.train.trainer as trainer
    from wbcap.cli import cli

    out, losses = tmp_path / "r", []
    real = trainer.train

    def recording(stage, run, on_step=None, **kwargs):
        return real(stage, run, on_step=lambda epoch, step, loss: losses.append(loss), **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "train", recording)
        r = CliRunner().invoke(cli, [str(a) for a in (
            "train", "finetune", "--config", _micro_recipe(tmp_path, micro_ckpt), "--data-root", agora_root,
            "--init", micro_ckpt, "--epochs", "1", "--batch-size", "2", "--workers", "0", "--body-models", body_dir,
            "--device", "cpu", "-o", out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (out / "snapshot_0.pth.tar").is_file()
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0


def test_a_recipe_wbcap_holds_is_named_without_its_folder(tmp_path, monkeypatch):
    """A packager's trial: the help's `--config train/configs/agora.toml` named a folder of the
    repository, not installed. The recipes are package data, named alone (`--config agora`); a
    file of that name in the working folder is still the file; a name of none says which there are."""
    from wbcap.errors import InputError
    from wbcap.train.stages import RECIPES, STAGES, load_stage, packaged_recipes, recipe_path

    assert set(packaged_recipes()) == set(STAGES) | set(RECIPES)
    monkeypatch.chdir(tmp_path)
    assert load_stage("finetune", "agora") == RECIPES["agora"]
    assert recipe_path("agora") == REPO / "wbcap" / "train" / "configs" / "agora.toml"
    (tmp_path / "agora").write_text('stage = "finetune"\nlr = 3e-5\n')
    assert recipe_path("agora") == Path("agora") and load_stage("finetune", "agora").lr == 3e-5
    (tmp_path / "agora").unlink()
    (tmp_path / "agora").mkdir()  # (a folder of that name is no recipe: the recipe; a break-it review)
    assert load_stage("finetune", "agora") == RECIPES["agora"]
    with pytest.raises(InputError, match=r"training config not found: agra \(give a TOML file, or the name of a recipe "
                                         r"wbcap holds: agora, body, finetune, hand\)"):
        load_stage("finetune", "agra")
