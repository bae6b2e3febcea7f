"""InterHand2.6M (upstream Pose2Pose's ``InterHand26M``), a 3D set of the hand stage, read back from
a tiny fixture in its native layout written here:

- capture 0, sequence ``ROM01_No_Interaction``, 20 camera folders ``cam400000 .. cam400019`` (the
  training filter keeps every 2nd: ``cam400000, cam400002, ...``); camera rotation a quarter turn
  about z (``R (a, b, c) = (-b, a, c)``), ``campos`` (0, 0, -600) mm. Annotation 1 (cam400000,
  frame 10, right hand, fitted), annotation 2 (cam400001, filtered out), annotation 3 (cam400002,
  frame 20, left hand, fitted, one |beta| > 3).
- capture 1, sequence ``ROM04_Interaction``, 3 camera folders (fewer than 10: all kept); camera
  rotation a half turn about x (``R (a, b, c) = (a, -b, -c)``), ``campos`` (0, 0, 700) mm.
  Annotation 4 (cam410001, frame 5, interacting): its right thumb tip unlabelled, its left wrist
  unlabelled (so no left sample); the right hand's fit ``null``.
- capture 2, sequence ``ROM09_Missing``: no image folder (annotation 5 is left out, no crash).

Expected values are worked out by hand (the literal numbers) or with plain crop arithmetic from the
fixture's own numbers (the joints' projection, upstream's box rule: the valid joints' extent x1.5,
sanitize, square, x1.25; a 256 px crop of 8 x 8 cells), not with the loader's helpers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_datasets import HAND_META, HAND_TARGETS, check_schema

from wbcap.testing import dataset_fixtures as fx
from wbcap.testing.images import person_image
from wbcap.train.data.coco_hands import COCOHands
from wbcap.train.data.common import Augmentation, AugmentConfig, DatasetLayoutError, read_image, rot_aug_matrix
from wbcap.train.data.freihand import FreiHAND
from wbcap.train.data.interhand import LAYOUT, InterHand26M, kept_cameras

W, H = 320, 240
FOCAL, PRINCPT = (500.0, 500.0), (160.0, 120.0)
CELL = 32.0  # px of a 256x256 hand crop per heatmap cell (8 x 8)
FREI_NAMES = ("Wrist",) + tuple(f"{f}_{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in range(1, 5))
IH_NAMES = tuple(f"{f}_{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in (4, 3, 2, 1)) + ("Wrist",)


def right_offsets() -> np.ndarray:
    """A right hand's 21 joints relative to its wrist (mm, world axes), in FreiHAND's order."""
    pts = [(0.0, 0.0, 0.0)] + [(-20.0 - 10 * k, -10.0 * k, -5.0 * k) for k in range(1, 5)]  # Thumb_4: (-60, -40, -20)
    for x0 in (-10.0, 0.0, 10.0, 20.0):
        pts += [(x0, -20.0 - 15 * k, -3.0 * k) for k in range(1, 5)]  # Index_1: (-10, -35, -3)
    return np.asarray(pts)


def left_offsets() -> np.ndarray:
    return right_offsets() * [-1.0, 1.0, 1.0]


def world_hands(right_wrist, left_wrist) -> list:
    """42 world joints (right 21, then left 21, each in InterHand's order), mm."""
    order = [FREI_NAMES.index(n) for n in IH_NAMES]
    right = (np.asarray(right_wrist) + right_offsets())[order]
    left = (np.asarray(left_wrist) + left_offsets())[order]
    return np.concatenate([right, left]).tolist()


RZ90 = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
RX180 = [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]
CAPTURES = {0: ("ROM01_No_Interaction", [f"cam{400000 + i}" for i in range(20)], RZ90, [0.0, 0.0, -600.0]),
            1: ("ROM04_Interaction", ["cam410000", "cam410001", "cam410002"], RX180, [0.0, 0.0, 700.0])}  # fmt: skip
WORLD = {(0, 10): world_hands([30.0, 20.0, 0.0], [-60.0, -60.0, 0.0]),
         (0, 20): world_hands([60.0, 60.0, 0.0], [-20.0, 20.0, 0.0]),
         (1, 5): world_hands([20.0, -10.0, 0.0], [-50.0, -10.0, 10.0])}  # fmt: skip
RIGHT_POSE = np.round(np.linspace(0.5, -0.4, 48), 6)
RIGHT_POSE[:3] = [np.pi / 2, 0.0, 0.0]  # a quarter turn about x, in world axes
RIGHT_SHAPE = [0.5, -1.0, 0.25, 2.9, -2.9, 0.0, 0.1, -0.1, 1.5, -1.5]
LEFT_POSE = np.round(np.linspace(-0.7, 0.8, 48), 6)
LEFT_POSE[:3] = [0.0, 0.0, 0.3]
LEFT_SHAPE = [0.5, 3.5, 0, 0, 0, 0, 0, 0, 0, 0]  # one |beta| > 3: zeroed, as upstream


def write_interhand_fixture(root: Path) -> Path:
    base = root / "InterHand26M"
    images, annotations, cameras = [], [], {}
    for capture, (seq, cams, rot, campos) in CAPTURES.items():
        for cam in reversed(cams):  # (made in another order than the sorted one)
            (base / "images/train" / f"Capture{capture}" / seq / cam).mkdir(parents=True)
        ids = [c[3:] for c in cams]
        cameras[str(capture)] = {"campos": {i: campos for i in ids}, "camrot": {i: rot for i in ids},
                                 "focal": {i: list(FOCAL) for i in ids}, "princpt": {i: list(PRINCPT) for i in ids}}  # fmt: skip

    def annotation(ann_id, capture, seq, camera, frame, hand_type, valid):
        file_name = f"Capture{capture}/{seq}/cam{camera}/image{frame}.jpg"
        if (base / "images/train" / file_name).parent.is_dir():
            rgb = person_image(width=W, height=H, seed=ann_id)
            assert cv2.imwrite(str(base / "images/train" / file_name), np.ascontiguousarray(rgb[:, :, ::-1]))
        images.append({"id": 100 + ann_id, "file_name": file_name, "width": W, "height": H, "capture": capture,
                       "subject": capture, "seq_name": seq, "camera": str(camera), "frame_idx": frame})
        annotations.append({"id": ann_id, "image_id": 100 + ann_id, "bbox": [0, 0, W, H],
                            "joint_valid": [[int(v)] for v in valid], "hand_type": hand_type, "hand_type_valid": 1})

    right_only, left_only = [1] * 21 + [0] * 21, [0] * 21 + [1] * 21
    interacting = [1] * 42
    interacting[IH_NAMES.index("Thumb_4")] = 0  # the right thumb tip unlabelled
    interacting[21 + IH_NAMES.index("Wrist")] = 0  # the left wrist unlabelled: no left sample
    annotation(1, 0, "ROM01_No_Interaction", 400000, 10, "right", right_only)
    annotation(2, 0, "ROM01_No_Interaction", 400001, 10, "right", right_only)  # a camera the filter leaves out
    annotation(3, 0, "ROM01_No_Interaction", 400002, 20, "left", left_only)
    annotation(4, 1, "ROM04_Interaction", 410001, 5, "interacting", interacting)
    annotation(5, 2, "ROM09_Missing", 420000, 1, "right", right_only)  # no image folder
    joints = {str(c): {str(f): {"world_coord": w, "joint_valid": [[1]] * 42, "hand_type": "interacting",
                                "hand_type_valid": True} for (c2, f), w in WORLD.items() if c2 == c} for c in (0, 1)}  # fmt: skip
    fit = {"right": {"pose": RIGHT_POSE.tolist(), "shape": RIGHT_SHAPE, "trans": [0.03, 0.02, 0.0]},
           "left": {"pose": LEFT_POSE.tolist(), "shape": LEFT_SHAPE, "trans": [-0.02, 0.02, 0.0]}}  # fmt: skip
    mano = {"0": {"10": {"right": fit["right"], "left": None}, "20": {"right": None, "left": fit["left"]}},
            "1": {"5": {"right": None, "left": fit["left"]}}}  # fmt: skip
    ann_dir = base / "annotations/train"
    ann_dir.mkdir(parents=True)
    files = {"data": {"images": images, "annotations": annotations}, "camera": cameras, "joint_3d": joints,
             "MANO_NeuralAnnot": mano}  # fmt: skip
    for what, obj in files.items():
        (ann_dir / f"InterHand2.6M_train_{what}.json").write_text(json.dumps(obj))
    return root


def write_coco_hands(root: Path) -> Path:
    """COCO-WholeBody's fixture with an empty MANO file (no hand fitted)."""
    fx.write_cocowb_fixture(root)
    (root / "MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json").write_text("{}")
    return root


def project(cam_mm) -> np.ndarray:
    cam = np.asarray(cam_mm, np.float64)
    return np.stack([cam[:, 0] / cam[:, 2] * FOCAL[0] + PRINCPT[0], cam[:, 1] / cam[:, 2] * FOCAL[1] + PRINCPT[1]], 1)


def crop_hm(px, valid_px):
    """Heatmap (x, y) of image pixels in the unaugmented, unflipped crop of the box of ``valid_px``."""
    lo, hi = valid_px.min(0), valid_px.max(0)
    centre, size = (lo + hi) / 2, (hi - lo) * 1.5
    x, y = centre - size / 2
    x1, y1 = max(0.0, x), max(0.0, y)
    w, h = min(W - 1, x1 + max(0.0, size[0] - 1)) - x1, min(H - 1, y1 + max(0.0, size[1] - 1)) - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    side = max(w, h) * 1.25
    px = np.asarray(px, np.float64)
    return np.stack([((px[:, 0] - cx) * 256 / side + 128) / CELL, ((px[:, 1] - cy) * 256 / side + 128) / CELL], 1)


@pytest.fixture(scope="module")
def ih_root(tmp_path_factory):
    return write_interhand_fixture(tmp_path_factory.mktemp("interhand"))


@pytest.fixture(scope="module")
def hands(ih_root):
    return InterHand26M(ih_root, "train", augment=None)


# ----------------------------------------------------------------------------------------------
def test_samples_per_hand_side_after_the_camera_filter(hands, ih_root, caplog):
    # 1: right; 2: its camera filtered out; 3: left; 4: interacting, its left wrist unlabelled -> right only;
    # 5: no image folder
    assert [(r["ann_id"], r["side"]) for r in hands.records] == [(1, "right"), (3, "left"), (4, "right")]
    assert len(hands) == 3 and (hands.filtered, hands.unlisted, hands.dropped_boxes) == (1, 1, 0)
    assert hands.records[1]["img_path"] == ih_root / "InterHand26M/images/train/Capture0/ROM01_No_Interaction/cam400002/image20.jpg"
    for i in range(3):
        check_schema(hands[i], (3, 256, 256), HAND_TARGETS, HAND_META)
        assert hands[i][2]["is_3D"] == 1
    with caplog.at_level(logging.WARNING, logger="wbcap.train.data.interhand"):
        InterHand26M(ih_root, "train", augment=None)
    assert "1 of its annotations are in 1 sequence(s) with no camera folder" in caplog.text and "Capture2/ROM09_Missing" in caplog.text
    with pytest.raises(ValueError, match="'train' split only"):
        InterHand26M(ih_root, "val")


def test_camera_filter_keeps_every_tenth_of_the_sorted_folders(ih_root, tmp_path):
    seqs = ih_root / "InterHand26M/images/train"
    assert kept_cameras(seqs / "Capture0/ROM01_No_Interaction") == {f"cam{400000 + i}" for i in range(0, 20, 2)}
    assert kept_cameras(seqs / "Capture1/ROM04_Interaction") == {"cam410000", "cam410001", "cam410002"}  # < 10: all
    assert kept_cameras(seqs / "Capture2/ROM09_Missing") == frozenset()  # (no folder: none, no crash)
    for count, kept in ((9, range(9)), (10, range(10)), (25, range(0, 25, 2)), (39, range(0, 39, 3))):
        seq = tmp_path / f"n{count}"
        for i in range(count):
            (seq / f"cam{i}").mkdir(parents=True)
        (seq / "notes.txt").write_text("a file is no camera")
        names = sorted(f"cam{i}" for i in range(count))  # by name: cam0, cam1, cam10, cam11, ...
        assert kept_cameras(seq) == {names[i] for i in kept}, count
    # worked by hand: 25 names sorted as text (cam0, cam1, cam10 .. cam19, cam2, cam20 .. cam24, cam3 .. cam9), step 2
    assert kept_cameras(tmp_path / "n25") == {"cam0", "cam10", "cam12", "cam14", "cam16", "cam18", "cam2", "cam21", "cam23",
                                              "cam3", "cam5", "cam7", "cam9"}


def test_joint_cam_is_the_world_joints_in_the_camera_in_metres_wrist_relative(hands):
    _, t, m = hands.get(0, Augmentation())  # annotation 1: capture 0 (R (a, b, c) = (-b, a, c)), right hand
    # worked by hand: Thumb_4 - Wrist = (-60, -40, -20) mm in the world -> (40, -60, -20) mm in the camera;
    # Index_1 - Wrist = (-10, -35, -3) -> (35, -10, -3)
    np.testing.assert_allclose(t["joint_cam"][0], [0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(t["joint_cam"][4], [0.04, -0.06, -0.02], atol=1e-6)
    np.testing.assert_allclose(t["joint_cam"][5], [0.035, -0.010, -0.003], atol=1e-6)
    d = right_offsets()
    np.testing.assert_allclose(t["joint_cam"], np.stack([-d[:, 1], d[:, 0], d[:, 2]], 1) / 1000, atol=1e-6)
    assert m["joint_valid"].sum() == 21 and m["joint_trunc"].sum() == 21

    _, t, m = hands.get(2, Augmentation())  # annotation 4: capture 1 (R (a, b, c) = (a, -b, -c)), right hand
    expected = right_offsets() * [1, -1, -1] / 1000
    expected[4] = 0  # the unlabelled thumb tip: masked, zero
    np.testing.assert_allclose(t["joint_cam"], expected, atol=1e-6)
    np.testing.assert_array_equal(m["joint_valid"][:, 0], [1, 1, 1, 1, 0] + [1] * 16)
    np.testing.assert_array_equal(m["joint_trunc"][:, 0], [1, 1, 1, 1, 0] + [1] * 16)

    # the rotation augmentation turns joint_cam (not the depth of joint_img)
    _, t30, _ = hands.get(0, Augmentation(rot=30.0))
    _, t0, _ = hands.get(0, Augmentation())
    np.testing.assert_allclose(t30["joint_cam"], t0["joint_cam"] @ rot_aug_matrix(30.0).T, atol=1e-6)
    np.testing.assert_allclose(t30["joint_img"][:, 2], t0["joint_img"][:, 2], atol=1e-5)


def test_joint_img_lands_on_the_crop_heatmap(hands):
    _, t, m = hands.get(0, Augmentation())  # annotation 1: right hand, wrist at (30, 20, 0) mm, camera (0, 0, -600)
    world = np.asarray(right_offsets()) + [30.0, 20.0, 0.0]
    cam = np.stack([-world[:, 1], world[:, 0], world[:, 2] + 600], 1)  # R (X - campos)
    px = project(cam)
    np.testing.assert_allclose(px[0], [160 - 20 / 600 * 500, 120 + 30 / 600 * 500])  # the wrist at (143.33, 145)
    np.testing.assert_allclose(t["joint_img"][:, :2], crop_hm(px, px), atol=1e-3)
    # depth: wrist-relative, (z / 0.15 + 1) / 2 * 8; the thumb tip 20 mm nearer: (1 - 0.02 / 0.15) * 4 = 3.4667
    np.testing.assert_allclose(t["joint_img"][:, 2], (right_offsets()[:, 2] / 150 + 1) * 4, atol=1e-5)
    assert t["joint_img"][4, 2] == pytest.approx(3.46667, abs=1e-4)

    _, t, m = hands.get(2, Augmentation())  # annotation 4: the box from the valid joints only
    world = np.asarray(right_offsets()) + [20.0, -10.0, 0.0]
    px = project(np.stack([world[:, 0], -world[:, 1], 700 - world[:, 2]], 1))
    ok = np.arange(21) != 4
    np.testing.assert_allclose(t["joint_img"][ok, :2], crop_hm(px, px[ok])[ok], atol=1e-3)
    assert np.all(t["joint_img"][4] == 0)


def test_a_left_hand_is_mirrored_into_a_right_hand(hands):
    inputs, t, m = hands.get(1, Augmentation())  # annotation 3: capture 0, left hand, wrist at (-20, 20, 0) mm
    # worked by hand: Thumb_4 - Wrist = (60, -40, -20) mm in the world -> (40, 60, -20) in the camera -> mirrored x:
    # (-40, 60, -20)
    np.testing.assert_allclose(t["joint_cam"][4], [-0.04, 0.06, -0.02], atol=1e-6)
    d = left_offsets()
    np.testing.assert_allclose(t["joint_cam"], np.stack([d[:, 1], d[:, 0], d[:, 2]], 1) / 1000, atol=1e-6)
    world = d + [-20.0, 20.0, 0.0]
    px = project(np.stack([-world[:, 1], world[:, 0], world[:, 2] + 600], 1))
    unflipped = crop_hm(px, px)
    np.testing.assert_allclose(t["joint_img"][:, 0], 8 - unflipped[:, 0], atol=1e-3)  # x -> W - 1 - x, box alike
    np.testing.assert_allclose(t["joint_img"][:, 1], unflipped[:, 1], atol=1e-3)
    np.testing.assert_allclose(t["joint_img"][:, 2], (d[:, 2] / 150 + 1) * 4, atol=1e-5)
    # the crop is the mirror image: column u of it is column 256 - u of the unflipped crop
    from wbcap.train.data.common import crop_and_augment

    plain, _, _ = crop_and_augment(read_image(hands.records[1]["img_path"]), hands.records[1]["bbox"], Augmentation(),
                                   (256, 256))
    diff = np.abs(inputs["img"][:, :, 1:] - plain[:, :, :0:-1])
    assert diff.max() < 0.02 and diff.mean() < 1e-3, (diff.max(), diff.mean())
    assert np.abs(inputs["img"] - plain).mean() > 0.01  # (not the crop as it is)
    # flips follow the side, whatever the augmentation draws
    always = InterHand26M(hands.root.parent, "train", augment=AugmentConfig(scale=0, rot=0, color=0, flip_prob=1.0))
    never = InterHand26M(hands.root.parent, "train", augment=AugmentConfig(scale=0, rot=0, color=0, flip_prob=0.0))
    for i in range(3):
        for ds in (always, never):
            for a, b in zip(ds[i], hands.get(i, Augmentation()), strict=True):
                for k in a:
                    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_mano_fits_turned_into_the_camera_mirrored_or_absent(hands):
    _, t, m = hands.get(0, Augmentation())  # annotation 1, right: root Rx(90) in the world, camera Rz(90)
    # Rz(90) Rx(90) maps x -> y -> z -> x: a third of a turn about (1, 1, 1), axis-angle 2 pi / 3 / sqrt(3) each
    np.testing.assert_allclose(t["mano_pose"][:3], [2 * np.pi / 3 / np.sqrt(3)] * 3, atol=1e-5)
    np.testing.assert_allclose(t["mano_pose"][3:], RIGHT_POSE[3:], atol=1e-6)
    np.testing.assert_allclose(t["mano_shape"], RIGHT_SHAPE, atol=1e-6)
    assert m["mano_param_valid"] == 1 and m["mano_shape_valid"] == 1 and np.all(m["mano_pose_valid"] == 1)
    _, t30, _ = hands.get(0, Augmentation(rot=30.0))  # the augmentation turns the root after the camera
    turned = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(cv2.Rodrigues(t30["mano_pose"][:3].astype(np.float64))[0], rot_aug_matrix(30.0) @ turned,
                               atol=1e-5)
    np.testing.assert_allclose(t30["mano_pose"][3:], RIGHT_POSE[3:], atol=1e-6)

    _, t, m = hands.get(1, Augmentation())  # annotation 3, left: root Rz(0.3), camera Rz(90) -> Rz(pi/2 + 0.3), mirrored
    np.testing.assert_allclose(t["mano_pose"][:3], [0.0, 0.0, -(np.pi / 2 + 0.3)], atol=1e-5)
    np.testing.assert_allclose(t["mano_pose"][3:], (LEFT_POSE.reshape(16, 3) * [1, -1, -1]).reshape(48)[3:], atol=1e-6)
    np.testing.assert_array_equal(t["mano_shape"], np.zeros(10))  # |beta| 3.5 > 3: zeroed, still valid
    assert m["mano_param_valid"] == 1 and m["mano_shape_valid"] == 1 and np.all(m["mano_pose_valid"] == 1)

    _, t, m = hands.get(2, Augmentation())  # annotation 4, right: the file's null
    assert np.all(t["mano_pose"] == 0) and np.all(t["mano_shape"] == 0)
    assert m["mano_param_valid"] == 0 and m["mano_shape_valid"] == 0 and np.all(m["mano_pose_valid"] == 0)
    assert m["is_3D"] == 1 and m["joint_valid"].sum() == 20  # its joints still train the 2.5D term


def test_an_unlabelled_wrist_makes_its_whole_side_invalid(tmp_path):
    root = write_interhand_fixture(tmp_path)
    path = root / "InterHand26M/annotations/train/InterHand2.6M_train_data.json"
    db = json.loads(path.read_text())
    ann = next(a for a in db["annotations"] if a["id"] == 1)
    ann["joint_valid"][IH_NAMES.index("Wrist")] = [0]  # the other 20 right joints still labelled
    four = next(a for a in db["annotations"] if a["id"] == 4)
    four["joint_valid"][21 + IH_NAMES.index("Wrist")] = [1]  # the left wrist of 4 labelled after all
    path.write_text(json.dumps(db))
    ds = InterHand26M(root, "train", augment=None)
    assert [(r["ann_id"], r["side"]) for r in ds.records] == [(3, "left"), (4, "right"), (4, "left")]
    _, t, m = ds.get(2, Augmentation())
    assert m["joint_valid"].sum() == 21 and m["mano_param_valid"] == 1  # (the left fit of capture 1, frame 5)
    assert m["dataset_joints"] == 1


def test_a_batch_with_freihand_and_coco_hands_collates_and_its_losses_are_finite(hands, tmp_path):
    from wbcap.model.hand_model import HandOutput
    from wbcap.train.hand_losses import hand_losses

    frei = FreiHAND(fx.write_freihand_fixture(tmp_path, num_train=1, num_eval=1), "train", augment=None)
    coco = COCOHands(write_coco_hands(tmp_path), "train", augment=None)
    samples = [frei[0], hands[0], hands[1], hands[2], coco[0]]
    inputs, targets, meta = torch.utils.data.default_collate(samples)
    assert inputs["img"].shape == (5, 3, 256, 256)
    assert {k: (tuple(v.shape), v.dtype) for k, v in targets.items()} == {
        k: ((5, *s), torch.float32) for k, s in HAND_TARGETS.items()}
    assert {k: (tuple(v.shape), v.dtype) for k, v in meta.items()} == {
        k: ((5, *s), torch.float32) for k, s in HAND_META.items()}
    assert meta["is_3D"].tolist() == [1, 1, 1, 1, 0]
    g = torch.Generator().manual_seed(0)
    out = HandOutput(torch.rand(5, 21, 3, generator=g) * 8, torch.randn(5, 6, generator=g), torch.randn(5, 90, generator=g),
                     torch.randn(5, 10, generator=g), torch.zeros(5, 3))
    losses = hand_losses(out, targets, meta)
    assert set(losses) == {"joint_img", "mano_pose", "mano_shape"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    # InterHand's depth counts (is_3D 1), its unlabelled thumb tip (sample 3, joint 4) does not
    _, t, m = torch.utils.data.default_collate(samples[1:4])
    three = dataclasses.replace(out, joint_img=out.joint_img[1:4], root_6d=out.root_6d[1:4], pose_6d=out.pose_6d[1:4],
                                shape=out.shape[1:4], cam=out.cam[1:4])
    base = hand_losses(three, t, m)["joint_img"]
    deeper = dataclasses.replace(three, joint_img=three.joint_img + torch.tensor([0.0, 0.0, 0.5]))
    assert not torch.equal(hand_losses(deeper, t, m)["joint_img"], base)
    tip = three.joint_img.clone()
    tip[2, 4] += 3.0
    assert torch.equal(hand_losses(dataclasses.replace(three, joint_img=tip), t, m)["joint_img"], base)


def test_missing_files_are_one_line_naming_them(tmp_path):
    for what in ("data", "camera", "joint_3d", "MANO_NeuralAnnot"):
        root = write_interhand_fixture(tmp_path / what)
        path = root / f"InterHand26M/annotations/train/InterHand2.6M_train_{what}.json"
        path.unlink()
        with pytest.raises(DatasetLayoutError) as err:
            InterHand26M(root, "train")
        assert str(err.value) == f"{path} missing; expected layout: {LAYOUT}"
        assert "InterHand2.6M_train_{data,camera,joint_3d,MANO_NeuralAnnot}.json" in LAYOUT
    root = write_interhand_fixture(tmp_path / "images")
    ds = InterHand26M(root, "train")
    ds.records[0]["img_path"].unlink()
    with pytest.raises(DatasetLayoutError, match=r"cam400000/image10.jpg missing"):
        ds[0]
    shutil.rmtree(root / "InterHand26M/images/train")
    with pytest.raises(DatasetLayoutError) as err:
        InterHand26M(root, "train")
    assert str(err.value) == f"{root / 'InterHand26M/images/train'} missing; expected layout: {LAYOUT}"


def test_a_damaged_annotation_is_one_line_naming_its_file(tmp_path):
    root = write_interhand_fixture(tmp_path)
    path = root / "InterHand26M/annotations/train/InterHand2.6M_train_data.json"
    db = json.loads(path.read_text())
    db["annotations"][0]["hand_type"] = "both"
    path.write_text(json.dumps(db))
    with pytest.raises(DatasetLayoutError) as err:
        InterHand26M(root, "train")
    said = str(err.value)
    assert said.startswith(f"{path}: ") and "hand_type 'both' is not right, left or interacting" in said, said
    assert "\n" not in said
    root = write_interhand_fixture(tmp_path / "joints")
    path = root / "InterHand26M/annotations/train/InterHand2.6M_train_joint_3d.json"
    joints = json.loads(path.read_text())
    joints["0"]["10"]["world_coord"] = joints["0"]["10"]["world_coord"][:41]
    path.write_text(json.dumps(joints))
    with pytest.raises(DatasetLayoutError) as err:
        InterHand26M(root, "train")
    said = str(err.value)
    assert said.startswith(f"{path}: ") and "world_coord has 123 numbers, not 126" in said and "\n" not in said, said


# ----------------------------------------------------------------------------------------------
# the training set: `wbcap train hand` with the default recipe (FreiHAND, InterHand26M, MSCOCO)
# ----------------------------------------------------------------------------------------------
def test_a_fits_mano_joint_img_is_upstreams_in_the_camera_of_its_image(ih_root, tmp_path):
    """mano_joint_img of every fitted hand against upstream's InterHand26M + process_human_model_output:
    t = -R campos / 1000, the root turned by R, the fit through smplx's MANO of its side (the left
    one the exact mirror of the right), the wrist moved to R wrist + t, projected, x mirrored for a
    left hand, through the crop's affine into heatmap cells, the wrist-relative depth over 0.3 m."""
    import re
    import shutil

    import cv2
    import smplx
    from test_train_coco_hands import _mirrored_left_mano

    from wbcap.body.mano_layer import MANOLayer, joint_regressor_21
    from wbcap.testing.synthetic_mano import write_synthetic_mano
    from wbcap.train.data.common import crop_and_augment

    # the fixture's fitted hands are all seen by capture 0's cameras, on the z axis under a turn about z,
    # where -R campos, -R^T campos and -campos agree: here they sit off the axis (a review)
    root = tmp_path / "ih"
    shutil.copytree(ih_root, root, symlinks=True)
    cam_file = root / "InterHand26M/annotations/train/InterHand2.6M_train_camera.json"
    cameras = json.loads(cam_file.read_text())
    cameras["0"]["campos"] = {cam: [100.0, -50.0, -600.0] for cam in cameras["0"]["campos"]}
    cam_file.write_text(json.dumps(cameras))
    right_pkl = write_synthetic_mano(tmp_path, chumpy=False)
    layers = {"right": smplx.create(str(right_pkl), "mano", use_pca=False, flat_hand_mean=False),
              "left": smplx.create(str(_mirrored_left_mano(right_pkl, tmp_path)), "mano", use_pca=False,
                                   flat_hand_mean=False)}
    regressor = torch.as_tensor(joint_regressor_21(layers["right"].J_regressor.double().numpy()))
    ds = InterHand26M(root, "train", augment=None, mano_layer=MANOLayer.from_file(right_pkl))
    fits = {"right": (RIGHT_POSE, RIGHT_SHAPE, [0.03, 0.02, 0.0]), "left": (LEFT_POSE, LEFT_SHAPE, [-0.02, 0.02, 0.0])}
    checked = 0
    for i, rec in enumerate(ds.records):
        _, t, m = ds.get(i, Augmentation())
        if rec["mano_pose"] is None:
            assert not t["mano_joint_img"].any() and not m["mano_joint_trunc"].any()
            continue
        capture, cam = re.search(r"Capture(\d+)/[^/]+/cam(\d+)/", str(rec["img_path"])).groups()
        R = np.asarray(cameras[capture]["camrot"][cam], np.float64)
        cam_t = -R @ np.asarray(cameras[capture]["campos"][cam], np.float64) / 1000.0
        pose, shape, trans = fits[rec["side"]]
        pose = np.array(pose, np.float64).reshape(16, 3)
        pose[0] = cv2.Rodrigues(R @ cv2.Rodrigues(pose[0])[0])[0].reshape(3)
        p = torch.tensor(pose.reshape(1, 48), dtype=torch.float32)
        with torch.no_grad():
            mesh = layers[rec["side"]](global_orient=p[:, :3], hand_pose=p[:, 3:],
                                       betas=torch.tensor([shape], dtype=torch.float32),
                                       transl=torch.tensor([trans], dtype=torch.float32)).vertices[0]
        joints = (regressor @ mesh.double()).numpy()
        joints = joints - joints[:1] + joints[:1] @ R.T + cam_t
        x = joints[:, 0] / joints[:, 2] * FOCAL[0] + PRINCPT[0]
        y = joints[:, 1] / joints[:, 2] * FOCAL[1] + PRINCPT[1]
        if rec["side"] == "left":
            x = W - 1 - x
        _, img2bb, _ = crop_and_augment(read_image(rec["img_path"]), rec["bbox"], Augmentation(flip=rec["side"] == "left"),
                                        (256, 256))
        xy = np.stack([x, y], 1) @ img2bb[:, :2].T + img2bb[:, 2]
        want = np.concatenate([xy / 256 * 8, ((joints[:, 2:] - joints[0, 2]) / 0.15 + 1) / 2 * 8], 1)
        np.testing.assert_allclose(t["mano_joint_img"], want, atol=2e-4, err_msg=str(rec["img_path"]))
        inside = np.all((want >= 0) & (want < 8), axis=1, keepdims=True).astype(np.float32)
        np.testing.assert_array_equal(m["mano_joint_trunc"], inside)
        checked += 1
    assert checked == 2 and {r["side"] for r in ds.records if r["mano_pose"] is not None} == {"left", "right"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, ih_root):
    root = fx.write_freihand_fixture(tmp_path_factory.mktemp("data"), num_train=5, num_eval=1)
    write_coco_hands(root)
    (root / "InterHand26M").symlink_to(ih_root / "InterHand26M")
    return root


def test_wbcap_train_hand_draws_interhand_in_the_3d_group(data_root, tmp_path, monkeypatch, mano_dir):
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
    r = CliRunner().invoke(cli, [str(a) for a in (*base, "-o", tmp_path / "a")])
    assert r.exit_code == 0, r.output
    stage, mixed = built[-1]
    assert stage.datasets == ("FreiHAND", "InterHand26M", "MSCOCO")  # upstream's released hand model's sets
    assert isinstance(mixed, SameLengthGroups)
    three_d, two_d = mixed.groups
    assert [type(d).__name__ for d in three_d.datasets] == ["FreiHAND", "InterHand26M"]
    assert type(two_d).__name__ == "COCOHands"
    assert len(three_d) == 5 + 3 and len(mixed) == 2 * max(8, len(two_d))
    own = InterHand26M(data_root, "train", seed=stage.seed)  # the same samples, augmentation and all
    for j in range(3):
        g, i = mixed.source(5 + j)
        assert (g, i) == (0, 5 + j)
        for a, b in zip(mixed[5 + j], own[j], strict=True):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert mixed[5 + j][2]["is_3D"] == 1

    r = CliRunner().invoke(cli, [str(a) for a in (*base, "--datasets", "InterHand26M", "-o", tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert type(built[-1][1]).__name__ == "InterHand26M"  # one set: no groups


def test_the_stages_name_interhand_and_a_root_without_it_says_how_to_leave_it_out(data_root, tmp_path):
    from wbcap.errors import InputError
    from wbcap.train.datasets import THREE_D_SETS, make_training_set
    from wbcap.train.stages import STAGE_DATASETS, STAGES

    assert STAGES["hand"].datasets == STAGE_DATASETS["hand"] == ("FreiHAND", "InterHand26M", "MSCOCO")
    assert "InterHand26M" in THREE_D_SETS
    stage = dataclasses.replace(STAGES["hand"], datasets=("InterHand26M", "MPII"))
    with pytest.raises(InputError) as err:
        make_training_set(stage, SimpleNamespace(data_root=data_root), None)
    assert str(err.value) == "the hand stage trains on FreiHAND, InterHand26M and MSCOCO (COCO-WholeBody's hand crops), not MPII"
    with pytest.raises(InputError) as err:
        make_training_set(dataclasses.replace(STAGES["body"], datasets=("InterHand26M",)), SimpleNamespace(data_root=data_root),
                          None)
    assert str(err.value) == "InterHand26M is a hand set: it trains the hand stage (wbcap train hand)"
    root = tmp_path / "data"
    root.mkdir()
    for name in ("FreiHAND", "MSCOCO"):
        (root / name).symlink_to(data_root / name)
    with pytest.raises(DatasetLayoutError) as err:
        make_training_set(STAGES["hand"], SimpleNamespace(data_root=root), None)
    assert str(err.value) == (f"{root / 'InterHand26M'} missing; expected layout: {LAYOUT}; or train without it: "
                              "datasets FreiHAND,MSCOCO")  # (the CLI says --datasets)
    from wbcap.cli import cli

    r = CliRunner().invoke(cli, ["train", "hand", "--data-root", str(root), "--device", "cpu", "-o", str(tmp_path / "o")])
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and errors == [f"error: {root / 'InterHand26M'} missing; expected layout: {LAYOUT}; or train without it: "
                                           "--datasets FreiHAND,MSCOCO"], r.output
    assert not (tmp_path / "o").exists()
    # a lab with FreiHAND only hears of both missing sets at once
    (root / "MSCOCO").unlink()
    with pytest.raises(DatasetLayoutError) as err:
        make_training_set(STAGES["hand"], SimpleNamespace(data_root=root), None)
    assert str(err.value) == (f"{root / 'InterHand26M'} missing; expected layout: {LAYOUT}; {root} lacks MSCOCO/ too; "
                              "or train without them: datasets FreiHAND")


@pytest.mark.slow  # the real loop (tiny network, one step)
@pytest.mark.usefixtures("one_torch_thread")
def test_one_real_hand_training_step_on_freihand_interhand_and_coco_hands(data_root, tmp_path, mano_dir):
    """One batch holding the whole epoch (8 FreiHAND + InterHand crops, 8 COCO hand draws) collates
    and trains: the three sets' samples have one schema and give a finite loss."""
    from wbcap.train.stages import STAGES
    from wbcap.train.trainer import RunConfig, train

    tiny = dataclasses.replace(STAGES["hand"].model, hand_backbone_depth=18, backbone_width=16, input_hand_shape=(128, 128),
                               output_hand_hm_shape=(8, 4, 4))
    stage = dataclasses.replace(STAGES["hand"], epochs=1, batch_size=16, num_workers=0, amp=False, model=tiny)
    h = train(stage, RunConfig(out=str(tmp_path / "hand"), data_root=str(data_root), body_models=str(mano_dir), device="cpu"))
    assert len(h.losses) == 1 and all(np.isfinite(v) and v > 0 for v in h.losses)
    assert (tmp_path / "hand" / "snapshot_0.pth.tar").is_file()
