"""COCO-WholeBody hand crops (upstream Pose2Pose's hand-only ``MSCOCO`` set), the hand stage's 2D
set, read back from a tiny fixture in its native layout: the COCO-WholeBody fixture of
:func:`wbcap.testing.dataset_fixtures.write_cocowb_fixture` cut to two annotations (1001: both hands
valid, its right pinky tip unlabelled; 1003: right hand not valid) and a
``MSCOCO_train_MANO_NeuralAnnot.json`` written here (``{ann id: {"left": fit | null, "right": ...}}``;
fits for 1001's two hands, none for 1003's left).

Expected values are worked out here from the annotation files with plain crop arithmetic
(upstream's box rule: sanitize, widen to a square, x1.25; the crop maps the box centre to the
patch centre and its side to 256 px; a heatmap cell is 32 px), not with the loader's helpers.
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
from test_datasets import HAND_META, HAND_TARGETS, assert_same, check_schema

from wbcap.testing import dataset_fixtures as fx
from wbcap.train.data.coco_hands import LAYOUT, COCOHands
from wbcap.train.data.common import Augmentation, AugmentConfig, DatasetLayoutError, read_image, rot_aug_matrix
from wbcap.train.data.freihand import FreiHAND

CELL = 32.0  # px of a 256x256 hand crop per heatmap cell (8 x 8)
# A hand-made left-hand MANO pose (root, then 15 finger rotations) and its mirror image, worked by
# hand: each rotation (x, y, z) becomes (x, -y, -z); MANO has no joint pairs to swap.
LEFT_POSE = np.round(np.linspace(-0.7, 0.8, 48), 6)
LEFT_POSE[:3] = [0.3, -0.2, 0.1]
MIRRORED_ROOT = [0.3, 0.2, -0.1]
RIGHT_POSE = np.round(np.linspace(0.5, -0.4, 48), 6)
RIGHT_SHAPE = [0.5, -1.0, 0.25, 2.9, -2.9, 0.0, 0.1, -0.1, 1.5, -1.5]
LEFT_SHAPE = [0.5, 3.5, 0, 0, 0, 0, 0, 0, 0, 0]  # one |beta| > 3: zeroed, as upstream


def write_coco_hands_fixture(root: Path) -> Path:
    fx.write_cocowb_fixture(root)
    path = root / "MSCOCO/annotations/coco_wholebody_train_v1.0.json"
    db = json.loads(path.read_text())
    db["annotations"] = [a for a in db["annotations"] if a["id"] in (1001, 1003)]
    first = db["annotations"][0]
    first["righthand_kpts"][60:63] = [0.0, 0.0, 0.0]  # keypoint 20 (the pinky tip) unlabelled
    path.write_text(json.dumps(db))
    cam = {"focal": [700.0, 700.0], "princpt": [160.0, 200.0]}
    fits = {
        "1001": {"left": {"mano_param": {"pose": LEFT_POSE.tolist(), "shape": LEFT_SHAPE, "trans": [0.2, 0.0, 5.0]},
                          "cam_param": cam},
                 "right": {"mano_param": {"pose": RIGHT_POSE.tolist(), "shape": RIGHT_SHAPE, "trans": [-0.2, 0.0, 5.0]},
                           "cam_param": cam}},
        "1003": {"left": None, "right": None},
    }  # fmt: skip
    (root / "MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json").write_text(json.dumps(fits))
    return root


def annotation(root, ann_id):
    db = json.loads((root / "MSCOCO/annotations/coco_wholebody_train_v1.0.json").read_text())
    ann = next(a for a in db["annotations"] if a["id"] == ann_id)
    return next(i for i in db["images"] if i["id"] == ann["image_id"]), ann


def crop_hm(px, xywh, width, height):
    """Heatmap (x, y) of image pixels in the unaugmented, unflipped crop of hand box ``xywh``."""
    x, y, w, h = xywh
    x1, y1 = max(0.0, x), max(0.0, y)
    w, h = min(width - 1, x1 + max(0.0, w - 1)) - x1, min(height - 1, y1 + max(0.0, h - 1)) - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    side = max(w, h) * 1.25
    px = np.asarray(px, np.float64)
    return np.stack([((px[..., 0] - cx) * 256 / side + 128) / CELL, ((px[..., 1] - cy) * 256 / side + 128) / CELL], -1)


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return write_coco_hands_fixture(tmp_path_factory.mktemp("cocohands"))


@pytest.fixture(scope="module")
def hands(coco_root):
    return COCOHands(coco_root, "train", augment=None)


# ----------------------------------------------------------------------------------------------
def test_one_sample_per_valid_hand_left_first(hands, coco_root):
    assert [(r["ann_id"], r["side"]) for r in hands.records] == [(1001, "left"), (1001, "right"), (1003, "left")]
    assert len(hands) == 3 and hands.dropped_boxes == 0
    assert hands.records[2]["img_path"] == coco_root / "MSCOCO/images/train2017/000000000102.jpg"
    for i in range(3):
        check_schema(hands[i], (3, 256, 256), HAND_TARGETS, HAND_META)
    with pytest.raises(ValueError, match="'train' split only"):
        COCOHands(coco_root, "val")


def test_right_hand_keypoints_land_on_the_crop_heatmap(hands, coco_root):
    img, ann = annotation(coco_root, 1001)
    inputs, t, m = hands.get(1, Augmentation())
    kps = np.asarray(ann["righthand_kpts"]).reshape(21, 3)
    expected = crop_hm(kps[:, :2], ann["righthand_box"], img["width"], img["height"])
    # COCO-WholeBody's hand order is MANO's/FreiHAND's 21 (wrist, thumb 1-4, index, middle, ring, pinky):
    # keypoint k is joint k
    np.testing.assert_allclose(t["joint_img"][:20, :2], expected[:20], atol=1e-3)
    assert np.all(t["joint_img"][:, 2] == 0) and np.all(t["joint_cam"] == 0) and m["is_3D"] == 0
    np.testing.assert_array_equal(m["joint_valid"][:, 0], [1] * 20 + [0])  # the unlabelled pinky tip
    np.testing.assert_array_equal(m["joint_trunc"][:, 0], [1] * 20 + [0])  # (the hand inside its crop)
    # worked by hand for the wrist at (126.023, 195.845): box [119.095, 194.725, 11.924, 13.437] -> sanitized
    # 10.924 x 12.437 around (124.557, 200.943) -> square 12.437 -> x1.25: 15.546 px, 256 / 15.546 crop px a px
    assert ann["righthand_kpts"][:2] == [126.023, 195.845]
    np.testing.assert_allclose(t["joint_img"][0, :2], [(128 + 1.4662 * 256 / 15.5462) / 32, (128 - 5.0983 * 256 / 15.5462) / 32],
                               atol=1e-3)  # (4.754, 1.376)
    assert inputs["img"].max() > 0.1


def _mirrored_left_mano(right_pkl: Path, folder: Path) -> Path:
    """MANO_LEFT.pkl as the exact mirror image (x -> -x) of the synthetic right hand: the template and
    shape directions mirrored, each pose-corrective column (joint j, rotation entry (a, b)) times
    s_c s_a s_b (s = (-1, 1, 1)), the mean pose's rotations (x, -y, -z); regressor and weights shared."""
    import pickle

    import scipy.sparse

    with open(right_pkl, "rb") as fh:
        data = pickle.load(fh, encoding="latin1")  # (our own test file, written a moment ago)
    s = np.array([-1.0, 1.0, 1.0])
    ab = (s[:, None] * s[None, :]).reshape(9)
    left = dict(data)
    left["v_template"] = data["v_template"] * s
    left["shapedirs"] = data["shapedirs"] * s[None, :, None]
    left["posedirs"] = data["posedirs"] * s[None, :, None] * np.tile(ab, 15)[None, None, :]
    left["hands_mean"] = (data["hands_mean"].reshape(15, 3) * [1.0, -1.0, -1.0]).reshape(45)
    left["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
    path = folder / "MANO_LEFT.pkl"
    with open(path, "wb") as fh:
        pickle.dump(left, fh, protocol=2)
    return path


def test_a_fits_mano_joint_img_is_upstreams_left_and_right(coco_root, tmp_path):
    """mano_joint_img of each hand of annotation 1001 against upstream's process_human_model_output:
    the fit through smplx's MANO of its side (a left hand by the left model, here the exact mirror of
    the right), its 21 joints projected with the fit's camera, x mirrored for the left, through the
    crop's affine into heatmap cells, the wrist-relative depth over 0.3 m."""
    import smplx

    from wbcap.body.mano_layer import MANOLayer, joint_regressor_21
    from wbcap.testing.synthetic_mano import write_synthetic_mano
    from wbcap.train.data.common import crop_and_augment

    right_pkl = write_synthetic_mano(tmp_path, chumpy=False)
    layers = {"right": smplx.create(str(right_pkl), "mano", use_pca=False, flat_hand_mean=False),
              "left": smplx.create(str(_mirrored_left_mano(right_pkl, tmp_path)), "mano", use_pca=False,
                                   flat_hand_mean=False)}
    assert layers["left"].is_rhand is False
    regressor = torch.as_tensor(joint_regressor_21(layers["right"].J_regressor.double().numpy()))
    hands = COCOHands(coco_root, "train", augment=None, mano_layer=MANOLayer.from_file(right_pkl))
    fits = json.loads((coco_root / "MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json").read_text())["1001"]
    for i, side in ((0, "left"), (1, "right")):
        rec = hands.records[i]
        assert (rec["ann_id"], rec["side"]) == (1001, side)
        _, t, m = hands.get(i, Augmentation())
        fit = fits[side]
        pose = torch.tensor(fit["mano_param"]["pose"], dtype=torch.float32).view(1, 48)
        with torch.no_grad():
            mesh = layers[side](global_orient=pose[:, :3], hand_pose=pose[:, 3:],
                                transl=torch.tensor([fit["mano_param"]["trans"]], dtype=torch.float32),
                                betas=torch.tensor([fit["mano_param"]["shape"]], dtype=torch.float32)).vertices[0]
        joints = (regressor @ mesh.double()).numpy()
        f, c = fit["cam_param"]["focal"], fit["cam_param"]["princpt"]
        x = joints[:, 0] / joints[:, 2] * f[0] + c[0]
        y = joints[:, 1] / joints[:, 2] * f[1] + c[1]
        if side == "left":
            x = rec["img_shape"][1] - 1 - x
        _, img2bb, _ = crop_and_augment(read_image(rec["img_path"]), rec["bbox"], Augmentation(flip=side == "left"),
                                        (256, 256))
        xy = np.stack([x, y], 1) @ img2bb[:, :2].T + img2bb[:, 2]
        want = np.concatenate([xy / 256 * 8, ((joints[:, 2:] - joints[0, 2]) / 0.15 + 1) / 2 * 8], 1)
        np.testing.assert_allclose(t["mano_joint_img"], want, atol=2e-4, err_msg=side)
        inside = np.all((want >= 0) & (want < 8), axis=1, keepdims=True).astype(np.float32)
        np.testing.assert_array_equal(m["mano_joint_trunc"], inside)
    # no fit (annotation 1003), or no MANO layer: zero, masked
    _, t, m = hands.get(2, Augmentation())
    assert not t["mano_joint_img"].any() and not m["mano_joint_trunc"].any()
    _, t, m = COCOHands(coco_root, "train", augment=None).get(1, Augmentation())
    assert not t["mano_joint_img"].any() and not m["mano_joint_trunc"].any()


def test_left_hand_is_mirrored_into_a_right_hand(hands, coco_root):
    img, ann = annotation(coco_root, 1001)
    inputs, t, m = hands.get(0, Augmentation())
    kps = np.asarray(ann["lefthand_kpts"]).reshape(21, 3)
    unflipped = crop_hm(kps[:, :2], ann["lefthand_box"], img["width"], img["height"])
    # mirrored: x -> W - 1 - x and the box's centre alike, so a cell x becomes 8 - x; y is kept
    np.testing.assert_allclose(t["joint_img"][:, 0], 8.0 - unflipped[:, 0], atol=1e-3)
    np.testing.assert_allclose(t["joint_img"][:, 1], unflipped[:, 1], atol=1e-3)
    # the fixture's left hand: thumb (joint 1..4) on the image's left of the pinky (17..20), as seen;
    # mirrored, the thumb is on the right, as on a right hand seen from the same side
    assert kps[1:5, 0].mean() < kps[17:21, 0].mean() and t["joint_img"][1:5, 0].mean() > t["joint_img"][17:21, 0].mean()
    assert m["joint_valid"].sum() == 21 and m["is_3D"] == 0
    # the crop is the mirror image: column u of it is column 256 - u of the unflipped crop
    from wbcap.train.data.common import crop_and_augment

    plain, _, _ = crop_and_augment(read_image(hands.records[0]["img_path"]), hands.records[0]["bbox"], Augmentation(),
                                   (256, 256))
    # (OpenCV's bilinear warp rounds its weights to 1/32: the two warps differ by a little at edges)
    diff = np.abs(inputs["img"][:, :, 1:] - plain[:, :, :0:-1])
    assert diff.max() < 0.02 and diff.mean() < 1e-3, (diff.max(), diff.mean())
    assert np.abs(inputs["img"] - plain).mean() > 0.01  # (not the crop as it is)


def test_flips_follow_the_side_not_the_augmentation(coco_root, hands):
    always = COCOHands(coco_root, "train", augment=AugmentConfig(scale=0, rot=0, color=0, flip_prob=1.0))
    never = COCOHands(coco_root, "train", augment=AugmentConfig(scale=0, rot=0, color=0, flip_prob=0.0))
    for i in range(3):
        assert_same(always[i], hands.get(i, Augmentation()))
        assert_same(never[i], hands.get(i, Augmentation()))
    assert_same(hands.get(1, Augmentation(flip=True)), hands.get(1, Augmentation(flip=False)))  # right: never
    assert_same(hands.get(0, Augmentation(flip=False)), hands.get(0, Augmentation(flip=True)))  # left: always


def test_mano_fits_mirrored_rotated_or_absent(hands):
    _, t, m = hands.get(0, Augmentation())  # 1001 left: the hand-made pose, mirrored
    expected = LEFT_POSE.reshape(16, 3) * [1.0, -1.0, -1.0]
    np.testing.assert_allclose(t["mano_pose"][:3], MIRRORED_ROOT, atol=1e-6)
    np.testing.assert_allclose(t["mano_pose"], expected.reshape(48), atol=1e-6)
    np.testing.assert_array_equal(t["mano_shape"], np.zeros(10))  # |beta| 3.5 > 3: zeroed, still valid
    assert m["mano_param_valid"] == 1 and m["mano_shape_valid"] == 1 and np.all(m["mano_pose_valid"] == 1)
    assert m["dataset_joints"] == 1

    _, t, m = hands.get(1, Augmentation())  # 1001 right: as written
    np.testing.assert_allclose(t["mano_pose"], RIGHT_POSE, atol=1e-6)
    np.testing.assert_allclose(t["mano_shape"], RIGHT_SHAPE, atol=1e-6)
    assert m["mano_param_valid"] == 1

    # the rotation augmentation turns the root (after the mirroring), the fingers stay
    _, t30, _ = hands.get(0, Augmentation(rot=30.0))
    root = cv2.Rodrigues(np.asarray(MIRRORED_ROOT, np.float64))[0]
    np.testing.assert_allclose(cv2.Rodrigues(t30["mano_pose"][:3].astype(np.float64))[0], rot_aug_matrix(30.0) @ root,
                               atol=1e-5)
    np.testing.assert_allclose(t30["mano_pose"][3:], expected.reshape(48)[3:], atol=1e-6)

    _, t, m = hands.get(2, Augmentation())  # 1003 left: the file's null
    assert np.all(t["mano_pose"] == 0) and np.all(t["mano_shape"] == 0)
    assert m["mano_param_valid"] == 0 and m["mano_shape_valid"] == 0 and np.all(m["mano_pose_valid"] == 0)
    assert m["is_3D"] == 0 and m["joint_valid"].sum() == 21  # its keypoints still train the 2D term


def test_a_batch_with_freihand_collates_and_its_losses_mask_what_2d_samples_lack(hands, tmp_path):
    from wbcap.model.hand_model import HandOutput
    from wbcap.train.hand_losses import hand_losses

    frei = FreiHAND(fx.write_freihand_fixture(tmp_path, num_train=1, num_eval=1), "train", augment=None)
    samples = [frei[0], hands[0], hands[2]]
    inputs, targets, meta = torch.utils.data.default_collate(samples)
    assert inputs["img"].shape == (3, 3, 256, 256)
    assert {k: (tuple(v.shape), v.dtype) for k, v in targets.items()} == {
        k: ((3, *s), torch.float32) for k, s in HAND_TARGETS.items()}
    assert {k: (tuple(v.shape), v.dtype) for k, v in meta.items()} == {
        k: ((3, *s), torch.float32) for k, s in HAND_META.items()}
    g = torch.Generator().manual_seed(0)

    def output(b):
        return HandOutput(torch.rand(b, 21, 3, generator=g) * 8, torch.randn(b, 6, generator=g),
                          torch.randn(b, 90, generator=g), torch.randn(b, 10, generator=g), torch.zeros(b, 3))

    out = output(3)
    losses = hand_losses(out, targets, meta)
    assert set(losses) == {"joint_img", "mano_pose", "mano_shape"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    # the COCO samples alone (1 and 2): their depth never counts (is_3D 0), and the unfitted
    # hand's (2) pose and shape outputs not either
    _, t2, m2 = torch.utils.data.default_collate(samples[1:])
    two = output(2)
    base = hand_losses(two, t2, m2)
    moved = dataclasses.replace(two, joint_img=two.joint_img + torch.tensor([0.0, 0.0, 3.0]))
    assert torch.equal(hand_losses(moved, t2, m2)["joint_img"], base["joint_img"])
    other = dataclasses.replace(two, root_6d=torch.cat([two.root_6d[:1], torch.randn(1, 6, generator=g)]),
                                pose_6d=torch.cat([two.pose_6d[:1], torch.randn(1, 90, generator=g)]),
                                shape=torch.cat([two.shape[:1], torch.randn(1, 10, generator=g)]))
    after = hand_losses(other, t2, m2)
    assert torch.equal(after["mano_pose"], base["mano_pose"]) and torch.equal(after["mano_shape"], base["mano_shape"])
    xy = dataclasses.replace(two, joint_img=two.joint_img + torch.tensor([0.5, 0.0, 0.0]))
    assert not torch.equal(hand_losses(xy, t2, m2)["joint_img"], base["joint_img"])  # x, y do count


def test_missing_files_are_one_line_naming_them(tmp_path):
    root = write_coco_hands_fixture(tmp_path)
    mano = root / "MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json"
    mano.unlink()
    with pytest.raises(DatasetLayoutError) as err:
        COCOHands(root, "train")
    assert str(err.value) == f"{mano} missing; expected layout: {LAYOUT}"
    assert "\n" not in str(err.value) and "MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json" in LAYOUT
    (root / "MSCOCO/annotations/coco_wholebody_train_v1.0.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"coco_wholebody_train_v1.0.json missing; expected layout: "):
        COCOHands(root, "train")
    root = write_coco_hands_fixture(tmp_path / "again")
    ds = COCOHands(root, "train")
    ds.records[0]["img_path"].unlink()
    with pytest.raises(DatasetLayoutError, match=r"train2017/000000000101.jpg missing"):
        ds[0]


def test_a_fit_of_another_shape_is_one_line_naming_the_file(tmp_path):
    root = write_coco_hands_fixture(tmp_path)
    path = root / "MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json"
    fits = json.loads(path.read_text())
    fits["1001"]["right"]["mano_param"]["pose"] = fits["1001"]["right"]["mano_param"]["pose"][:45]
    path.write_text(json.dumps(fits))
    with pytest.raises(DatasetLayoutError) as err:
        COCOHands(root, "train")
    said = str(err.value)
    assert said.startswith(f"{path}: ") and "has 45 numbers, not 48" in said and "\n" not in said, said


# ----------------------------------------------------------------------------------------------
# the training set: `wbcap train hand` with the default recipe (FreiHAND, MSCOCO)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory, coco_root):
    root = fx.write_freihand_fixture(tmp_path_factory.mktemp("data"), num_train=5, num_eval=1)
    (root / "MSCOCO").symlink_to(coco_root / "MSCOCO")
    return root


def test_wbcap_train_hand_draws_coco_hands_in_the_2d_group(data_root, tmp_path, monkeypatch, mano_dir):
    import wbcap.train.trainer as trainer
    from wbcap.cli import cli
    from wbcap.train.datasets import SameLengthGroups, make_training_set

    built = []

    def fake_train(stage, run, on_step=None, **kwargs):  # (the loop's own first step: the training set)
        built.append((stage, make_training_set(stage, run, None)))
        Path(run.out).mkdir(parents=True, exist_ok=True)
        (Path(run.out) / "snapshot_0.pth.tar").write_bytes(b"x")

    monkeypatch.setattr(trainer, "train", fake_train)
    base = ["train", "hand", "--data-root", data_root, "--body-models", mano_dir, "--max-steps", "1", "--workers", "0",
            "--device", "cpu"]
    r = CliRunner().invoke(cli, [str(a) for a in (*base, "--datasets", "FreiHAND,MSCOCO", "-o", tmp_path / "a")])
    assert r.exit_code == 0, r.output
    stage, mixed = built[-1]
    assert stage.datasets == ("FreiHAND", "MSCOCO")  # (the recipe's third set, InterHand26M: tests/test_train_interhand.py)
    assert isinstance(mixed, SameLengthGroups)
    frei, coco = mixed.groups
    assert type(frei).__name__ == "FreiHAND" and type(coco).__name__ == "COCOHands"
    assert len(frei) == 5 and len(coco) == 3 and len(mixed) == 10
    drawn = [mixed.source(i) for i in range(len(mixed))]
    assert drawn[:5] == [(0, j) for j in range(5)] and [g for g, _ in drawn[5:]] == [1] * 5
    assert [j for _, j in drawn[5:8]] == [0, 1, 2]  # (then two drawn at random: past the last whole repetition)
    own = COCOHands(data_root, "train", seed=stage.seed)  # the same sample, augmentation and all
    for i in (5, 6, 7):
        assert_same(mixed[i], own[drawn[i][1]])
        assert mixed[i][2]["is_3D"] == 0
    assert mixed[0][2]["is_3D"] == 1

    r = CliRunner().invoke(cli, [str(a) for a in (*base, "--datasets", "MSCOCO", "-o", tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert type(built[-1][1]).__name__ == "COCOHands"  # one set: no groups


def test_the_hand_stage_refuses_body_sets_and_names_a_missing_mscoco(data_root, tmp_path):
    from wbcap.errors import InputError
    from wbcap.train.datasets import make_training_set
    from wbcap.train.stages import STAGE_DATASETS, STAGES

    assert STAGES["hand"].datasets == STAGE_DATASETS["hand"] == ("FreiHAND", "InterHand26M", "MSCOCO")
    for name in ("Human36M", "MPII", "synthetic"):
        stage = dataclasses.replace(STAGES["hand"], datasets=("FreiHAND", name))
        with pytest.raises(InputError) as err:
            make_training_set(stage, SimpleNamespace(data_root=data_root), None)
        assert str(err.value) == (f"the hand stage trains on FreiHAND, InterHand26M and MSCOCO (COCO-WholeBody's hand crops), "
                                  f"not {name}")
    root = tmp_path / "data"
    root.mkdir()
    (root / "FreiHAND").symlink_to(data_root / "FreiHAND")
    with pytest.raises(DatasetLayoutError) as err:
        make_training_set(dataclasses.replace(STAGES["hand"], datasets=("FreiHAND", "MSCOCO")), SimpleNamespace(data_root=root),
                          None)
    assert str(err.value) == (f"{root / 'MSCOCO'} missing; expected layout: {LAYOUT}; or train without it: "
                              "datasets FreiHAND")  # (the CLI says --datasets)
    alone = make_training_set(dataclasses.replace(STAGES["hand"], datasets=("FreiHAND",)), SimpleNamespace(data_root=root),
                              None)
    assert type(alone).__name__ == "FreiHAND"


@pytest.mark.slow  # the real loop (tiny network, one step)
@pytest.mark.usefixtures("one_torch_thread")
def test_one_real_hand_training_step_on_freihand_and_coco_hands(data_root, tmp_path, mano_dir):
    """One batch holding the whole epoch (5 FreiHAND crops, 5 COCO hand draws) collates and
    trains: the two sets' samples have one schema, and the 2D samples' masks give a finite loss."""
    from wbcap.train.stages import STAGES
    from wbcap.train.trainer import RunConfig, train

    tiny = dataclasses.replace(STAGES["hand"].model, hand_backbone_depth=18, backbone_width=16, input_hand_shape=(128, 128),
                               output_hand_hm_shape=(8, 4, 4))
    stage = dataclasses.replace(STAGES["hand"], datasets=("FreiHAND", "MSCOCO"), epochs=1, batch_size=10, num_workers=0,
                                amp=False, model=tiny)
    h = train(stage, RunConfig(out=str(tmp_path / "hand"), data_root=str(data_root), body_models=str(mano_dir), device="cpu"))
    assert len(h.losses) == 1 and all(np.isfinite(v) and v > 0 for v in h.losses)
    assert (tmp_path / "hand" / "snapshot_0.pth.tar").is_file()
