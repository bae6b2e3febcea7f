"""COCO-WholeBody hand crops with MANO NeuralAnnot pseudo-GT: upstream Pose2Pose's ``MSCOCO`` set
for its hand-only model (``data/MSCOCO/MSCOCO.py``, ``cfg.parts == 'hand'``), a 2D set of the hand
stage (``wbcap train hand``, where ``MSCOCO`` names this set; the whole-body stages' ``MSCOCO`` is
:mod:`wbcap.train.data.cocowb`).

Layout (``data_root`` holds ``MSCOCO/``; the images and the COCO-WholeBody file are the whole-body
stages' own)::

    <root>/MSCOCO/images/train2017/<file_name>
    <root>/MSCOCO/annotations/coco_wholebody_train_v1.0.json            (COCO-WholeBody v1.0)
    <root>/MSCOCO/annotations/MSCOCO_train_MANO_NeuralAnnot.json
        {"<annotation id>": {"right": null | {"mano_param": {pose (48), shape (10), trans (3)},
         "cam_param": {focal, princpt}}, "left": (the same)}}

(file name and nesting as upstream's loader and NeuralAnnot_RELEASE ``MSCOCO/demo_mano.py`` read
them). Each annotation gives one sample for each hand whose ``lefthand_valid`` /
``righthand_valid`` is true (left first, as upstream; crowds are not skipped, as upstream): the
crop of its ``<side>hand_box`` widened to the hand crop's aspect and x1.25 (as FreiHAND's box; a box
with no usable area is dropped), its 21 ``<side>hand_kpts`` (COCO-WholeBody's hand order: wrist,
thumb 1-4, index 1-4, middle 1-4, ring 1-4, pinky 1-4, the names of
:data:`~wbcap.train.data.freihand.FREIHAND_JOINT_NAMES`, mapped by name) valid where their score is
above 0, and the MANO fit of that annotation and side when the file has one.

**Left hands are mirrored into right hands** (upstream's ``enforce_flip=(hand_type == 'left')``):
the image, box and keypoints are flipped horizontally (``x -> W - 1 - x``) and every one of the 16
MANO axis-angle rotations becomes ``(x, -y, -z)`` (upstream ``process_human_model_output`` for
MANO, whose ``orig_flip_pairs`` is empty: nothing is swapped). Right hands are never flipped (the
random flip of the augmentation is overridden for both sides, as upstream's ``enforce_flip``);
scale, rotation (which also turns the MANO root) and colour augmentation apply.

Samples follow the hand sample schema of :mod:`wbcap.train.data.freihand` key for key, with
``is_3D = 0``: ``joint_img`` x, y in hand heatmap cells, z 0 (masked by ``is_3D`` in the loss, as
``joint_cam``, which is zero); ``joint_trunc`` is the keypoint validity times inside the heatmap.
Without a fit, ``mano_pose``/``mano_shape`` are zero and ``mano_param_valid``,
``mano_pose_valid``, ``mano_shape_valid`` 0 (upstream's loader reads a missing fit and fails: every
valid hand of its file has one). A shape with any ``|beta| > 3`` is zeroed (valid stays 1), as
upstream and FreiHAND. A ``cam_param`` ``R`` (NeuralAnnot's COCO fits have none) would turn the
root first, as upstream. Only a ``train`` split (the hand model is evaluated on FreiHAND).

With the MANO layer (``mano_layer``: the hand stage's MANO loss terms), a fit also gives upstream's
``mano_joint_img`` (21, 3) and ``mano_joint_trunc`` (21, 1): the fit's 21 joints (its own shape,
before the zeroing above, and ``trans``) projected with its ``cam_param`` into the crop's heatmap
cells, the wrist-relative depth in depth cells (:func:`mano_fit_joint_img`); zero without a fit,
without the layer, or with a ``cam_param`` ``R`` (then upstream also moves the fit by ``t``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wbcap.config import ModelConfig
from wbcap.crop.bbox import process_bbox
from wbcap.train.data.common import (
    DEFAULT_AUGMENT,
    HAND_3D_SIZE,
    Augmentation,
    AugmentConfig,
    AugmentedDataset,
    DatasetLayoutError,
    annotated_images,
    cam2pixel,
    checked_array,
    cpu_body_layer,
    crop_and_augment,
    depth_to_hm,
    in_volume,
    load_json,
    parsing,
    process_db_coord,
    read_image,
    rot_aug_matrix,
    rotate_root_pose,
    to_heatmap,
)
from wbcap.train.data.freihand import FREIHAND_JOINT_NAMES

__all__ = ["ANNOTATION_FILE", "COCO_HAND_JOINT_NAMES", "LAYOUT", "MANO_FILE", "COCOHands", "fitted_hand_sample",
           "flip_mano_pose", "mano_fit_joint_img"]

COCO_HAND_JOINT_NAMES: tuple[str, ...] = ("Wrist",) + tuple(
    f"{f}_{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in range(1, 5)
)
"""COCO-WholeBody's 21 hand keypoints in its order (upstream's ``joint_set['hand']['joints_name']``)."""

ANNOTATION_FILE = "coco_wholebody_train_v1.0.json"
MANO_FILE = "MSCOCO_train_MANO_NeuralAnnot.json"
LAYOUT = (
    "<root>/MSCOCO/images/train2017/<file_name>, "
    f"<root>/MSCOCO/annotations/{ANNOTATION_FILE}, "
    f"<root>/MSCOCO/annotations/{MANO_FILE}"
)
SIDES = ("left", "right")
_F32 = np.float32


def flip_mano_pose(pose: np.ndarray) -> np.ndarray:
    """A ``(48,)`` MANO pose (root + 15 finger rotations, axis-angle) mirrored across the image's
    vertical axis, a left hand's becoming a right hand's: every rotation ``(x, y, z) -> (x, -y, -z)``
    (MANO has no left/right joint pairs to swap). Returns a new float32 array."""
    out = np.array(pose, dtype=_F32).reshape(16, 3)
    out[:, 1:3] *= -1
    return out.reshape(48)


def mano_fit_targets(pose: np.ndarray | None, shape: np.ndarray | None, flip: bool,
                     rot_deg: float) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """A MANO fit as the hand stage's targets ``(mano_pose (48,), mano_shape (10,), fitted)``,
    float32: the pose (root + 15 finger rotations, axis-angle, the crop's camera) mirrored for a
    left hand made a right one (:func:`flip_mano_pose`), then its root turned by the rotation
    augmentation of ``rot_deg`` degrees; the shape zeroed where any ``|beta| > 3`` (as upstream;
    still fitted). ``pose`` None (no fit): zeros and ``fitted`` 0. Shared by the COCO-WholeBody
    hands and InterHand2.6M, whose fits are mirrored; FreiHAND's right hands never are."""
    if pose is None:
        return np.zeros(48, _F32), np.zeros(10, _F32), _F32(0)
    out = np.array(pose, dtype=_F32).reshape(48)
    if flip:
        out = flip_mano_pose(out)
    out = out.reshape(16, 3)
    out[0] = rotate_root_pose(out[0], rot_aug_matrix(rot_deg))
    betas = np.array(shape, dtype=_F32).reshape(10)
    if np.any(np.abs(betas) > 3):
        betas = np.zeros_like(betas)
    return out.reshape(48).astype(_F32), betas, _F32(1)


def mano_fit_joint_img(mano, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray, cam: dict[str, np.ndarray],
                       flip: bool, img_shape: tuple[int, int], img2bb: np.ndarray, input_shape: tuple[int, int],
                       cells: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's ``mano_joint_img`` and ``mano_joint_trunc`` of a MANO fit (``process_human_model_output``
    with ``'mano'``): ``(21, 3)`` float32 heatmap cells (x, y through the crop's ``img2bb`` affine, z
    the wrist-relative depth over the hand's 0.3 m) and ``(21, 1)`` inside the volume.

    ``pose`` (48,) axis-angle (its root already turned by the camera's ``R`` where the fit has one),
    ``shape`` (10,), ``trans`` (3,) metres; ``cam``: ``focal``, ``princpt`` (pixels of the image,
    ``img_shape`` (height, width)) and optionally ``R`` (3, 3) and ``t`` (3,) metres, the fit's frame
    -> the camera: the joints move so that the wrist lands at ``R @ wrist + t``, as upstream.
    ``mano``: the right-hand :class:`~wbcap.body.mano_layer.MANOLayer` (on the CPU). A left hand
    (``flip``; its crop mirrored) is upstream's left-hand model taken as the right one's mirror image
    (``x -> -x`` of the right hand with the mirrored rotations and translation), then projected and
    mirrored (``x -> W - 1 - x``) as upstream does."""
    pose = np.array(pose, np.float32).reshape(48)
    t = np.array(trans, np.float32).reshape(3)
    mirror = np.array([-1.0, 1.0, 1.0], np.float32) if flip else np.ones(3, np.float32)
    if flip:
        pose = flip_mano_pose(pose)
    with torch.no_grad():
        joints = mano(torch.from_numpy(pose[None, :3]), torch.from_numpy(pose[None, 3:]),
                      torch.from_numpy(np.asarray(shape, np.float32).reshape(1, 10)),
                      torch.from_numpy((t * mirror)[None])).joints
    joints = joints[0].double().numpy() * mirror
    if cam.get("R") is not None:
        root = joints[:1]
        joints = joints - root + root @ np.asarray(cam["R"], np.float64).T + np.asarray(cam["t"], np.float64).reshape(1, 3)
    joint_img = cam2pixel(joints, np.asarray(cam["focal"], np.float32).reshape(2), np.asarray(cam["princpt"], np.float32))
    if flip:
        joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
    joint_img[:, 2] = depth_to_hm(joints[:, 2] - joints[0, 2], HAND_3D_SIZE, cells[0])
    joint_img[:, :2] = to_heatmap(joint_img[:, :2], img2bb, input_shape, cells)
    return joint_img.astype(_F32), in_volume(joint_img, cells)


def fitted_hand_sample(patch: np.ndarray, joints: tuple[np.ndarray, ...], rec: dict[str, Any], aug: Augmentation,
                       img2bb: np.ndarray, input_shape: tuple[int, int], cells: tuple[int, int, int], mano,
                       is_3d: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A hand sample of a set with its own joints and MANO fits (COCO-WholeBody hands, InterHand2.6M)
    in FreiHAND's schema: ``joints`` = the dataset's ``(joint_img, joint_cam, joint_valid,
    joint_trunc)`` for the crop (:func:`~wbcap.train.data.common.process_db_coord`); the record's
    fit (``mano_pose``, ``mano_shape``, ``mano_trans``, ``mano_cam``, ``side``, ``img_shape``; a
    pose None: no fit) as the parameter targets (:func:`mano_fit_targets`) and, with ``mano`` and
    the fit's translation and camera, ``mano_joint_img`` (:func:`mano_fit_joint_img`; else zero)."""
    joint_img, joint_cam, joint_valid, joint_trunc = joints
    flip = rec["side"] == "left"
    pose, betas, fitted = mano_fit_targets(rec["mano_pose"], rec["mano_shape"], flip, aug.rot)
    if mano is not None and rec["mano_pose"] is not None and rec["mano_trans"] is not None and rec["mano_cam"] is not None:
        fit_img, fit_trunc = mano_fit_joint_img(mano, rec["mano_pose"], rec["mano_shape"], rec["mano_trans"],
                                                rec["mano_cam"], flip, rec["img_shape"], img2bb, input_shape, cells)
    else:
        fit_img, fit_trunc = np.zeros((21, 3), _F32), np.zeros((21, 1), _F32)
    targets = {
        "joint_img": joint_img.astype(_F32),
        "joint_cam": joint_cam.astype(_F32),
        "mano_pose": pose,
        "mano_shape": betas,
        "mano_joint_img": fit_img,
    }
    meta = {
        "joint_valid": joint_valid.astype(_F32),
        "joint_trunc": joint_trunc.astype(_F32),
        "mano_param_valid": fitted,
        "mano_pose_valid": np.full(48, fitted, _F32),
        "mano_shape_valid": fitted,
        "is_3D": _F32(is_3d),
        "dataset_joints": _F32(1),
        "mano_joint_trunc": fit_trunc,
    }
    return {"img": patch}, targets, meta


class COCOHands(AugmentedDataset):
    """COCO-WholeBody hand samples (2D keypoints + MANO pseudo-GT), left hands mirrored to right.

    Args:
        data_root: folder holding ``MSCOCO/`` (see the module docstring).
        split: ``'train'`` (the only split).
        augment: augmentation ranges (flips are decided by the hand's side); None disables it.
        seed: augmentation seed.
        model: the network geometry the samples are for (``input_hand_shape``,
            ``output_hand_hm_shape``); None: the released network's.
        mano_layer: the right-hand MANO layer for the fits' ``mano_joint_img`` (kept if on the CPU,
            else copied there); None: those targets are zero.

    Raises:
        DatasetLayoutError: an annotation file is missing or unreadable (one line naming it).
    """

    def __init__(
        self,
        data_root: str | Path,
        split: str = "train",
        augment: AugmentConfig | None = DEFAULT_AUGMENT,
        seed: int = 0,
        model: ModelConfig | None = None,
        mano_layer=None,
    ) -> None:
        if split != "train":
            raise ValueError(f"COCOHands has a 'train' split only (the hand model is evaluated on FreiHAND), got {split!r}")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = True
        self.mano = None if mano_layer is None else cpu_body_layer(mano_layer)
        self.root = Path(data_root).expanduser() / "MSCOCO"
        self.records = self._load()
        self.say_dropped(self.root / "annotations" / ANNOTATION_FILE)

    def _load(self) -> list[dict[str, Any]]:
        ann_path = self.root / "annotations" / ANNOTATION_FILE
        mano_path = self.root / "annotations" / MANO_FILE
        for path in (ann_path, mano_path):
            if not path.is_file():
                raise DatasetLayoutError.missing(path, LAYOUT)
        db = load_json(ann_path, LAYOUT)
        fits = load_json(mano_path, LAYOUT)
        if not isinstance(fits, dict):
            raise DatasetLayoutError(f"{mano_path}: not NeuralAnnot's MANO file (an object keyed by annotation id "
                                     f"was expected, not a {type(fits).__name__}); expected layout: {LAYOUT}")
        aspect = self.model.input_hand_shape[1] / self.model.input_hand_shape[0]
        records = []
        with parsing((ann_path, mano_path), LAYOUT):
            for ann, img in annotated_images(db):
                if "lefthand_kpts" not in ann:  # (COCO's own person_keypoints file: body joints only)
                    raise DatasetLayoutError(f"{ann_path}: annotation {ann.get('id')} has no 'lefthand_kpts': not a "
                                             f"COCO-WholeBody file (COCO's person_keypoints has body joints only); use "
                                             f"{ANNOTATION_FILE} from COCO-WholeBody; expected layout: {LAYOUT}")
                entry = fits.get(str(ann["id"]))
                for side in SIDES:
                    if not ann.get(f"{side}hand_valid", False):
                        continue
                    with parsing(ann_path, LAYOUT):  # (this file alone named)
                        box = process_bbox(np.asarray(ann[f"{side}hand_box"], np.float64), img["width"], img["height"],
                                           aspect_ratio=aspect)
                        kpts = checked_array(ann[f"{side}hand_kpts"], (21, 3), f"annotation {ann.get('id')}'s {side}hand_kpts")
                    if box is None:
                        self.dropped_boxes += 1
                        continue
                    valid = (kpts[:, 2:3] > 0).astype(_F32)
                    kpts[:, 2] = 0
                    pose = shape = trans = cam_fit = None
                    with parsing(mano_path, LAYOUT):
                        if entry is not None and not isinstance(entry, dict):
                            raise TypeError(f"annotation {ann['id']}'s entry is a {type(entry).__name__}, not an object "
                                            "with 'left' and 'right'")
                        fit = None if entry is None else entry.get(side)
                        if fit is not None:
                            what = f"annotation {ann['id']}'s {side} MANO fit"
                            pose = checked_array(fit["mano_param"]["pose"], (16, 3), f"{what}'s pose")
                            shape = checked_array(fit["mano_param"]["shape"], (10,), f"{what}'s shape")
                            cam = fit.get("cam_param")
                            rot = cam.get("R") if isinstance(cam, dict) else None
                            if rot is not None:  # (upstream merges a camera rotation into the root)
                                pose[0] = rotate_root_pose(pose[0], checked_array(rot, (3, 3), f"{what}'s cam_param R"))
                            elif isinstance(cam, dict) and "trans" in fit["mano_param"]:  # (mano_joint_img)
                                trans = checked_array(fit["mano_param"]["trans"], (3,), f"{what}'s trans")
                                cam_fit = {k: checked_array(cam[k], (2,), f"{what}'s cam_param {k}")
                                           for k in ("focal", "princpt")}
                    records.append(
                        {
                            "img_path": self.root / "images" / "train2017" / img["file_name"],
                            "img_shape": (int(img["height"]), int(img["width"])),
                            "bbox": box,
                            "joint_img": kpts,
                            "joint_valid": valid,
                            "mano_pose": pose,
                            "mano_shape": shape,
                            "mano_trans": trans,
                            "mano_cam": cam_fit,
                            "side": side,
                            "ann_id": ann["id"],
                        }
                    )
        return records

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        flip = rec["side"] == "left"
        aug = dataclasses.replace(aug, flip=flip)  # left hands become right hands; right ones stay
        img = read_image(rec["img_path"], LAYOUT)
        shape, cells = tuple(self.model.input_hand_shape), tuple(self.model.output_hand_hm_shape)
        patch, img2bb, _ = crop_and_augment(img, rec["bbox"], aug, shape)
        n = len(COCO_HAND_JOINT_NAMES)
        joint_img, joint_cam, joint_valid, joint_trunc = process_db_coord(
            rec["joint_img"],
            np.zeros((n, 3), _F32),
            rec["joint_valid"],
            aug,
            rec["img_shape"],
            (),
            img2bb,
            COCO_HAND_JOINT_NAMES,
            FREIHAND_JOINT_NAMES,
            input_shape=shape,
            hm_shape=cells,
        )
        joints = (joint_img, joint_cam, joint_valid, joint_trunc)
        return fitted_hand_sample(patch, joints, rec, aug, img2bb, shape, cells, self.mano, is_3d=False)
