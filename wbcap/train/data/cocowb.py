"""COCO-WholeBody with SMPL-X NeuralAnnot pseudo-GT (upstream Hand4Whole's ``MSCOCO`` set).

Layout (``data_root`` holds ``MSCOCO/``)::

    <root>/MSCOCO/images/{train2017,val2017}/<file_name>
    <root>/MSCOCO/annotations/coco_wholebody_{train,val}_v1.0.json      (COCO-WholeBody v1.0)
    <root>/MSCOCO/annotations/MSCOCO_train_SMPLX_all_NeuralAnnot.json   (train only)
        {"<annotation id>": {"smplx_param": {root_pose, body_pose, lhand_pose, rhand_pose,
         jaw_pose, shape, expr, trans, lhand_valid, rhand_valid, face_valid},
         "cam_param": {focal, princpt}}}

Each annotation's ``keypoints`` (17 body), ``foot_kpts`` (6), ``lefthand_kpts``/``righthand_kpts``
(21 each, wrist first), ``face_kpts`` (68: 17 contour then 51 landmarks) are merged, with a
pelvis at the mid-hip, into upstream's 134-joint COCO set and mapped by name onto the 137 joints
(the hand-wrist points are dropped: the body wrists are used; the 68 face points become
``Face_56..72`` (contour) and ``Face_5..55``). Missing hand/face wrists/nose-tip points fall back to
the body's wrist/nose, as upstream. ``lefthand_box``/``righthand_box``/``face_box`` (with their
``*_valid`` flags) give the box targets. Annotations that are crowds or have no body keypoint are
skipped in ``train`` (as upstream); ``val`` keeps them all and has no SMPL-X fits. Samples follow
the whole-body schema of :mod:`wbcap.train.data.common` with ``is_3D = 0`` (``joint_cam`` zero).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.train.data.common import (
    DEFAULT_AUGMENT,
    Augmentation,
    AugmentConfig,
    AugmentedDataset,
    DatasetLayoutError,
    annotated_images,
    cpu_body_layer,
    crop_and_augment,
    load_json,
    parsing,
    process_db_coord,
    process_part_bbox,
    read_image,
    whole_body_sample,
    xywh_to_xyxy_or_none,
)
from wbcap.train.data.smplx_targets import empty_smplx_targets, process_smplx_output

__all__ = ["COCO_FLIP_PAIRS", "COCO_JOINT_NAMES", "LAYOUT", "SMPLX_FILE", "COCOWholeBody"]

_FINGERS = tuple(f"{f}_{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in range(1, 5))
COCO_JOINT_NAMES: tuple[str, ...] = (
    ("Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
     "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Pelvis",
     "L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")
    + tuple(f"L_{n}" for n in ("Wrist_Hand", *_FINGERS))
    + tuple(f"R_{n}" for n in ("Wrist_Hand", *_FINGERS))
    + tuple(f"Face_{i}" for i in range(56, 73))
    + tuple(f"Face_{i}" for i in range(5, 56))
)  # fmt: skip
"""Upstream's 134-joint COCO-WholeBody set: 24 body (23 + pelvis), 2 x 21 hand, 68 face."""
COCO_FLIP_PAIRS: tuple[tuple[int, ...], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (18, 21), (19, 22), (20, 23),
    *((24 + k, 45 + k) for k in range(21)),
    (66, 82), (67, 81), (68, 80), (69, 79), (70, 78), (71, 77), (72, 76), (73, 75),
    (83, 92), (84, 91), (85, 90), (86, 89), (87, 88),
    (97, 101), (98, 100),
    (102, 111), (103, 110), (104, 109), (105, 108), (106, 113), (107, 112),
    (114, 120), (115, 119), (116, 118), (121, 125), (122, 124),
    (126, 130), (127, 129), (131, 133),
)  # fmt: skip

SMPLX_FILE = "MSCOCO_train_SMPLX_all_NeuralAnnot.json"
LAYOUT = (
    "<root>/MSCOCO/images/{train2017,val2017}/<file_name>, "
    "<root>/MSCOCO/annotations/coco_wholebody_{train,val}_v1.0.json, "
    f"<root>/MSCOCO/annotations/{SMPLX_FILE}"
)
_SPLITS = {"train": ("coco_wholebody_train_v1.0.json", "train2017"), "val": ("coco_wholebody_val_v1.0.json", "val2017")}
_FALLBACK = (("L_Wrist", "L_Wrist_Hand"), ("R_Wrist", "R_Wrist_Hand"), ("Nose", "Face_18"))


def merge_keypoints(ann: dict[str, Any]) -> np.ndarray:
    """One annotation's keypoints -> ``(134, 3)`` ``[x, y, score]`` in :data:`COCO_JOINT_NAMES` order."""

    def kpts(key: str, n: int) -> np.ndarray:
        return np.asarray(ann[key], np.float32).reshape(n, 3)  # (KeyError: not COCO-WholeBody's annotation)

    body = kpts("keypoints", 17)
    lhip, rhip = body[11], body[12]
    pelvis = (lhip + rhip) * 0.5
    pelvis[2] = lhip[2] * rhip[2]
    return np.concatenate(
        [
            body,
            pelvis[None],
            kpts("foot_kpts", 6),
            kpts("lefthand_kpts", 21),
            kpts("righthand_kpts", 21),
            kpts("face_kpts", 68),
        ]
    ).astype(np.float32)


class COCOWholeBody(AugmentedDataset):
    """COCO-WholeBody whole-body samples (2D keypoints + part boxes + SMPL-X pseudo-GT).

    Args:
        data_root: folder holding ``MSCOCO/`` (see the module docstring).
        split: ``'train'`` or ``'val'``.
        body_layer: SMPL-X layer for the pseudo-GT targets (kept if on the CPU, else copied there).
        augment: augmentation ranges (``train`` only); None disables augmentation.
        seed: augmentation seed.

    Raises:
        DatasetLayoutError: an annotation file is missing or unreadable (one line naming it).
    """

    def __init__(
        self,
        data_root: str | Path,
        split: str = "train",
        body_layer: SMPLXLayer | None = None,
        augment: AugmentConfig | None = DEFAULT_AUGMENT,
        seed: int = 0,
        model: ModelConfig | None = None,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"COCOWholeBody split must be 'train' or 'val', got {split!r}")
        if body_layer is None:
            raise ValueError("COCOWholeBody needs body_layer (an SMPLXLayer) for its SMPL-X targets")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = split == "train"
        self.body_layer = cpu_body_layer(body_layer)  # never the training model's (CUDA) layer
        self.root = Path(data_root).expanduser() / "MSCOCO"
        self.records = self._load()
        self.say_dropped(self.root / "annotations" / _SPLITS[self.split][0])

    def _load(self) -> list[dict[str, Any]]:
        ann_name, img_folder = _SPLITS[self.split]
        ann_path = self.root / "annotations" / ann_name
        smplx_path = self.root / "annotations" / SMPLX_FILE
        for path in (ann_path, smplx_path) if self.train else (ann_path,):
            if not path.is_file():
                raise DatasetLayoutError.missing(path, LAYOUT)
        db = load_json(ann_path, LAYOUT)
        smplx_params = load_json(smplx_path, LAYOUT) if self.train else {}
        with parsing((ann_path, smplx_path) if self.train else ann_path, LAYOUT):
            names = COCO_JOINT_NAMES
            records = []
            for ann, img in annotated_images(db):
                if self.train and (ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0):
                    continue
                bbox = self.person_box(ann["bbox"], img)
                if bbox is None:
                    continue
                if "lefthand_kpts" not in ann:  # (COCO's own person_keypoints file: body joints only)
                    raise DatasetLayoutError(f"{ann_path}: annotation {ann.get('id')} has no 'lefthand_kpts': not a "
                                             f"COCO-WholeBody file (COCO's person_keypoints has body joints only); use "
                                             f"{_SPLITS[self.split][0]} from COCO-WholeBody; expected layout: {LAYOUT}")
                joint_img = merge_keypoints(ann)
                joint_valid = (joint_img[:, 2:3] > 0).astype(np.float32)
                joint_img[:, 2] = 0
                for body_name, part_name in _FALLBACK:
                    b, p = names.index(body_name), names.index(part_name)
                    if joint_valid[p, 0] == 0:
                        joint_img[p] = joint_img[b]
                        joint_valid[p] = joint_valid[b]
                fit = smplx_params.get(str(ann["id"]))
                records.append(
                    {
                        "img_path": self.root / "images" / img_folder / img["file_name"],
                        "img_shape": (int(img["height"]), int(img["width"])),
                        "bbox": bbox,
                        "joint_img": joint_img,
                        "joint_valid": joint_valid,
                        "smplx_param": None if fit is None else fit["smplx_param"],
                        "cam_param": None if fit is None else fit["cam_param"],
                        "lhand_bbox": xywh_to_xyxy_or_none(ann.get("lefthand_box"), bool(ann.get("lefthand_valid", False))),
                        "rhand_bbox": xywh_to_xyxy_or_none(
                            ann.get("righthand_box"), bool(ann.get("righthand_valid", False))
                        ),
                        "face_bbox": xywh_to_xyxy_or_none(ann.get("face_box"), bool(ann.get("face_valid", False))),
                        "ann_id": ann["id"],
                    }
                )
        return records

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        img_shape = rec["img_shape"]
        img = read_image(rec["img_path"], LAYOUT)
        shape, cells = tuple(self.model.input_img_shape), tuple(self.model.output_hm_shape)
        patch, img2bb, _ = crop_and_augment(img, rec["bbox"], aug, shape)

        boxes = {
            part: process_part_bbox(rec[f"{part}_bbox"], aug, img_shape, img2bb, input_shape=shape, hm_shape=cells)
            for part in ("lhand", "rhand", "face")
        }
        if aug.flip:
            boxes["lhand"], boxes["rhand"] = boxes["rhand"], boxes["lhand"]

        n = len(COCO_JOINT_NAMES)
        joint_img = np.concatenate([rec["joint_img"][:, :2], np.zeros((n, 1), np.float32)], 1)
        joint = process_db_coord(
            joint_img,
            np.zeros((n, 3), np.float32),
            rec["joint_valid"],
            aug,
            img_shape,
            COCO_FLIP_PAIRS,
            img2bb,
            COCO_JOINT_NAMES,
            input_shape=shape,
            hm_shape=cells,
        )
        if rec["smplx_param"] is not None:
            smplx = process_smplx_output(rec["smplx_param"], rec["cam_param"], aug, img_shape, img2bb, self.body_layer,
                                         input_shape=shape, hm_shape=cells)
            shape_valid = True
        else:
            smplx, shape_valid = empty_smplx_targets(), False
        return whole_body_sample(patch, joint, smplx, shape_valid, False, boxes)
