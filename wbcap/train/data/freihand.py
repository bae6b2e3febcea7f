"""FreiHAND for the hand-only stage (``wbcap train hand``), in the upstream Pose2Pose layout.

Layout (``data_root`` holds ``FreiHAND/``)::

    <root>/FreiHAND/data/{training,evaluation}/rgb/%08d.jpg
    <root>/FreiHAND/data/freihand_{train,eval}_coco.json    COCO style: images (id, file_name,
        width, height, db_idx), annotations (id, image_id, bbox [x, y, w, h])
    <root>/FreiHAND/data/freihand_train_data.json  {db_idx: {cam_param: {focal, princpt},
        mano_param: {pose (48), shape (10), trans (3)}, joint_3d (21 x 3, m, camera frame)}}
    <root>/FreiHAND/data/freihand_eval_data.json   {db_idx: {cam_param: {focal, princpt}}}
    <root>/FreiHAND/rootnet_output/bbox_root_freihand_output.json   (eval only)
        [{image_id, bbox (already extended), root_cam}]

Hand sample schema (``(inputs, targets, meta_info)``, float32 arrays / scalars; 21 joints in MANO's
order ``Wrist, Thumb_1..4, Index_1..4, Middle_1..4, Ring_1..4, Pinky_1..4``)::

    inputs     img (3, 256, 256) RGB in [0, 1]: the hand box (aspect 1, x1.25) crop
    targets    joint_img (21, 3)  hand heatmap cells: x, y in [0, 8) (= px / 256 * 8), z in [0, 8)
                                  = (z_rel / 0.15 + 1) / 2 * 8 with z_rel the wrist-relative depth (m)
               joint_cam (21, 3)  metres, wrist-relative, camera axes after the rotation augmentation
               mano_pose (48,)    axis-angle: root (rotated by the augmentation) + 15 finger joints
               mano_shape (10,)   betas (zeroed if any |beta| > 3)
    meta_info  joint_valid (21, 1), joint_trunc (21, 1) (inside the 8x8x8 volume),
               mano_param_valid, mano_shape_valid (scalars), mano_pose_valid (48,), is_3D (= 1),
               dataset_joints (scalar): 1 where the joints are the dataset's own annotation, which
                                  the MANO loss terms joint_proj and joint_cam take; 0 here (FreiHAND's
                                  joint_3d is its MANO fit's, which upstream supervises through the fit:
                                  its loader zeroes joint_img and joint_cam, keeping mano_joint_img and
                                  mano_joint_cam; wbcap's joint_img term and mano_joint_cam do that),
               mano_joint_trunc (21, 1), with targets mano_joint_img (21, 3): the MANO fit's joints
                                  in heatmap cells where a loader makes them (COCO-WholeBody hands,
                                  InterHand2.6M);
                                  zero here (joint_img is the fit's)

Joint targets come from the dataset's own ``joint_3d`` (FreiHAND's MANO-fit joints), so no MANO
model file is needed. FreiHAND has right hands only: samples are never flipped (as upstream's
``enforce_flip=False``); scale, rotation and colour augmentation apply in ``train``. The ``eval``
split has no ground truth: its targets are zero, its validities 0, and ``meta_info`` adds
``bb2img_trans`` (2, 3) and ``root_depth`` (m, from RootNet) for evaluation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

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
    crop_and_augment,
    depth_to_hm,
    in_volume,
    load_json,
    parsing,
    read_image,
    rot_aug_matrix,
    rotate_root_pose,
    to_heatmap,
)

__all__ = ["FREIHAND_JOINT_NAMES", "LAYOUT", "FreiHAND"]

FREIHAND_JOINT_NAMES: tuple[str, ...] = ("Wrist",) + tuple(
    f"{f}_{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in range(1, 5)
)
LAYOUT = (
    "<root>/FreiHAND/data/freihand_{train,eval}_{coco,data}.json, "
    "<root>/FreiHAND/data/{training,evaluation}/rgb/<image>, "
    "<root>/FreiHAND/rootnet_output/bbox_root_freihand_output.json (eval)"
)
_F32 = np.float32


class FreiHAND(AugmentedDataset):
    """FreiHAND hand samples (see the module docstring for layout and schema).

    Args:
        data_root: folder holding ``FreiHAND/``.
        split: ``'train'`` or ``'eval'``.
        augment: augmentation ranges (``train`` only; flips never happen); None disables it.
        seed: augmentation seed.

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
    ) -> None:
        if split not in ("train", "eval"):
            raise ValueError(f"FreiHAND split must be 'train' or 'eval', got {split!r}")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = split == "train"
        self.root = Path(data_root).expanduser() / "FreiHAND"
        self.records = self._load()

    def _load(self) -> list[dict[str, Any]]:
        data_dir = self.root / "data"
        coco_path = data_dir / f"freihand_{self.split}_coco.json"
        data_path = data_dir / f"freihand_{self.split}_data.json"
        rootnet_path = self.root / "rootnet_output" / "bbox_root_freihand_output.json"
        needed = (coco_path, data_path) if self.train else (coco_path, data_path, rootnet_path)
        for path in needed:
            if not path.is_file():
                raise DatasetLayoutError.missing(path, LAYOUT)
        db = load_json(coco_path, LAYOUT)
        data = load_json(data_path, LAYOUT)
        with parsing((coco_path, data_path, rootnet_path) if not self.train else (coco_path, data_path), LAYOUT):
            rootnet = {}
            if not self.train:
                rootnet = {str(r["image_id"]): r for r in load_json(rootnet_path, LAYOUT)}
            records = []
            for ann, img in annotated_images(db):
                entry = data[str(img["db_idx"])]
                rec: dict[str, Any] = {
                    "img_path": data_dir / img["file_name"],
                    "img_shape": (int(img["height"]), int(img["width"])),
                    "cam_param": entry["cam_param"],
                    "image_id": img["id"],
                }
                if self.train:
                    bbox = process_bbox(np.asarray(ann["bbox"], np.float64), img["width"], img["height"],
                                        aspect_ratio=self.model.input_hand_shape[1] / self.model.input_hand_shape[0])
                    if bbox is None:
                        continue
                    rec["bbox"] = bbox
                    rec["mano_param"] = entry["mano_param"]
                    rec["joint_cam"] = np.asarray(entry["joint_3d"], np.float32).reshape(21, 3)
                else:
                    found = rootnet[str(img["id"])]
                    rec["bbox"] = np.asarray(found["bbox"], np.float32).reshape(4)
                    rec["root_depth"] = float(np.asarray(found["root_cam"]).reshape(3)[2])
                records.append(rec)
        return records

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        aug = dataclasses.replace(aug, flip=False)  # right hands only
        img = read_image(rec["img_path"], LAYOUT)
        shape, cells = tuple(self.model.input_hand_shape), tuple(self.model.output_hand_hm_shape)
        patch, img2bb, bb2img = crop_and_augment(img, rec["bbox"], aug, shape)
        inputs = {"img": patch}
        if not self.train:
            targets = {
                "joint_img": np.zeros((21, 3), _F32), "joint_cam": np.zeros((21, 3), _F32),
                "mano_pose": np.zeros(48, _F32), "mano_shape": np.zeros(10, _F32),
                "mano_joint_img": np.zeros((21, 3), _F32),
            }  # fmt: skip
            meta = {
                "joint_valid": np.zeros((21, 1), _F32), "joint_trunc": np.zeros((21, 1), _F32),
                "mano_param_valid": _F32(0), "mano_pose_valid": np.zeros(48, _F32), "mano_shape_valid": _F32(0),
                "is_3D": _F32(1), "dataset_joints": _F32(0), "mano_joint_trunc": np.zeros((21, 1), _F32),
                "bb2img_trans": bb2img.astype(_F32),
                "root_depth": _F32(rec["root_depth"]),
            }  # fmt: skip
            return inputs, targets, meta

        cam = rec["cam_param"]
        joint_cam = rec["joint_cam"].copy()
        joint_img = cam2pixel(joint_cam, cam["focal"], cam["princpt"])
        joint_cam = joint_cam - joint_cam[0:1]
        joint_img[:, 2] = depth_to_hm(joint_cam[:, 2], HAND_3D_SIZE, cells[0])
        joint_img[:, :2] = to_heatmap(joint_img[:, :2], img2bb, shape, cells)
        joint_trunc = in_volume(joint_img, cells)
        rot = rot_aug_matrix(aug.rot)
        joint_cam = joint_cam @ rot.T

        param = rec["mano_param"]
        pose = np.asarray(param["pose"], _F32).reshape(16, 3).copy()
        pose[0] = rotate_root_pose(pose[0], rot)
        shape = np.asarray(param["shape"], _F32).reshape(10)
        if np.any(np.abs(shape) > 3):
            shape = np.zeros_like(shape)
        targets = {
            "joint_img": joint_img.astype(_F32),
            "joint_cam": joint_cam.astype(_F32),
            "mano_pose": pose.reshape(48),
            "mano_shape": shape.astype(_F32),
            "mano_joint_img": np.zeros((21, 3), _F32),  # (joint_img is the fit's already: see dataset_joints)
        }
        meta = {
            "joint_valid": np.ones((21, 1), _F32),
            "joint_trunc": joint_trunc,
            "mano_param_valid": _F32(1),
            "mano_pose_valid": np.ones(48, _F32),
            "mano_shape_valid": _F32(1),
            "is_3D": _F32(1),
            "dataset_joints": _F32(0),  # (the joints are the MANO fit's: see the module docstring)
            "mano_joint_trunc": np.zeros((21, 1), _F32),
        }
        return inputs, targets, meta
