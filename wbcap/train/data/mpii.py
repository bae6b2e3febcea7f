"""MPII Human Pose with SMPL-X NeuralAnnot pseudo-GT (upstream Hand4Whole's ``MPII`` set, a 2D set).

Layout (``data_root`` holds ``MPII/``; the parsed files upstream's README links)::

    <root>/MPII/data/images/<name>.jpg                          (MPII's own images)
    <root>/MPII/data/annotations/train.json                     (COCO layout)
        images: id, file_name ("images/<name>.jpg": the image path relative to MPII/data/), width, height;
        annotations: id, image_id, bbox [x, y, w, h], keypoints (16 x [x, y, v])
    <root>/MPII/data/annotations/MPII_train_SMPLX_NeuralAnnot.json
        {"<annotation id>": {"smplx_param": {root_pose, body_pose, shape, trans, ...},
         "cam_param": {focal, princpt}}}

An image is ``<root>/MPII/data/<file_name>``, as upstream joins them (``data/MPII/MPII.py``:
``osp.join('..', 'data', 'MPII', 'data', img['file_name'])``); the parsed ``train.json`` names
its images ``images/<name>.jpg`` (the converter of the same author, mks0601/TF-SimpleHumanPose
``tool/mpii2coco.py``, writes ``'images/' + name``).

The 16 MPII joints (upstream's names) are mapped by name onto the 137 joints; ``Thorax`` and
``Head_top`` have no counterpart there and are dropped (``Neck`` is MPII's upper neck). A joint is
valid where its ``v > 0``. Annotations without a usable person box are skipped (as upstream; there
is no other skip rule). An annotation with a NeuralAnnot fit gets its SMPL-X targets (the MPII fits
carry body parameters only, so hands, jaw and expression are invalid), one without gets all-invalid
ones. As upstream's MPII (not its MSCOCO), the fit's ankle and wrist rotations and its toe and heel
joints are marked invalid. Hand and face boxes are dummies (invalid). Only a ``train`` split: upstream
evaluates nothing on MPII. Samples follow the whole-body schema of :mod:`wbcap.train.data.common`
with ``is_3D = 0`` (``joint_cam`` zero).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body import joints as J
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.train.data.common import (
    DEFAULT_AUGMENT,
    Augmentation,
    AugmentConfig,
    AugmentedDataset,
    DatasetLayoutError,
    annotated_images,
    checked_array,
    cpu_body_layer,
    crop_and_augment,
    dummy_boxes,
    load_json,
    parsing,
    process_db_coord,
    read_image,
    whole_body_sample,
)
from wbcap.train.data.smplx_targets import empty_smplx_targets, process_smplx_output

__all__ = ["LAYOUT", "MPII", "MPII_FLIP_PAIRS", "MPII_JOINT_NAMES", "SMPLX_FILE"]

MPII_JOINT_NAMES: tuple[str, ...] = (
    "R_Ankle", "R_Knee", "R_Hip", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Thorax", "Neck", "Head_top",
    "R_Wrist", "R_Elbow", "R_Shoulder", "L_Shoulder", "L_Elbow", "L_Wrist",
)  # fmt: skip
"""MPII's 16 joints in its keypoint order (upstream Hand4Whole's names)."""
MPII_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))

ANNOTATION_FILE = "train.json"
SMPLX_FILE = "MPII_train_SMPLX_NeuralAnnot.json"
LAYOUT = (
    "<root>/MPII/data/<file_name> (file_name: images/<name>.jpg), "
    f"<root>/MPII/data/annotations/{ANNOTATION_FILE}, "
    f"<root>/MPII/data/annotations/{SMPLX_FILE}"
)
# Upstream data/MPII/MPII.py (__getitem__, "SMPLX pose parameter validity" / "SMPLX joint coordinate
# validity") zeroes these for every MPII sample, as its Human36M.py does; its MSCOCO.py does not, nor
# does wbcap's COCO-WholeBody loader (wbcap.train.data.cocowb), and the shared process_smplx_output /
# whole_body_sample zero nothing of the kind, so they are zeroed here, as wbcap's Human36M does.
_INVALID_POSE = ("L_Ankle", "R_Ankle", "L_Wrist", "R_Wrist")
_INVALID_JOINTS = ("L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")


class MPII(AugmentedDataset):
    """MPII whole-body samples (2D body keypoints + SMPL-X pseudo-GT).

    Args:
        data_root: folder holding ``MPII/`` (see the module docstring).
        split: ``'train'`` (the only split).
        body_layer: SMPL-X layer for the pseudo-GT targets (kept if on the CPU, else copied there).
        augment: augmentation ranges; None disables augmentation.
        seed: augmentation seed.
        model: the network geometry the samples are for (crop size, heatmap cells); None: the
            released network's.

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
        if split != "train":
            raise ValueError(f"MPII has a 'train' split only (upstream evaluates nothing on it), got {split!r}")
        if body_layer is None:
            raise ValueError("MPII needs body_layer (an SMPLXLayer) for its SMPL-X targets")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = True
        self.body_layer = cpu_body_layer(body_layer)  # never the training model's (CUDA) layer
        self.root = Path(data_root).expanduser() / "MPII" / "data"
        self.records = self._load()
        self.say_dropped(self.root / "annotations" / ANNOTATION_FILE)

    def _load(self) -> list[dict[str, Any]]:
        ann_path = self.root / "annotations" / ANNOTATION_FILE
        smplx_path = self.root / "annotations" / SMPLX_FILE
        for path in (ann_path, smplx_path):
            if not path.is_file():
                raise DatasetLayoutError.missing(path, LAYOUT)
        db = load_json(ann_path, LAYOUT)
        smplx_params = load_json(smplx_path, LAYOUT)
        n = len(MPII_JOINT_NAMES)
        records = []
        with parsing((ann_path, smplx_path), LAYOUT):
            for ann, img in annotated_images(db):
                bbox = self.person_box(ann["bbox"], img)
                if bbox is None:
                    continue
                with parsing(ann_path, LAYOUT):  # (this file alone named)
                    joint_img = checked_array(ann["keypoints"], (n, 3), f"annotation {ann.get('id')}'s keypoints")
                joint_valid = (joint_img[:, 2:3] > 0).astype(np.float32)
                joint_img[:, 2] = 0
                fit = smplx_params.get(str(ann["id"]))
                records.append(
                    {
                        "img_path": self.root / img["file_name"],
                        "img_shape": (int(img["height"]), int(img["width"])),
                        "bbox": bbox,
                        "joint_img": joint_img,
                        "joint_valid": joint_valid,
                        "smplx_param": None if fit is None else fit["smplx_param"],
                        "cam_param": None if fit is None else fit["cam_param"],
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

        n = len(MPII_JOINT_NAMES)
        joint = process_db_coord(
            rec["joint_img"],
            np.zeros((n, 3), np.float32),
            rec["joint_valid"],
            aug,
            img_shape,
            MPII_FLIP_PAIRS,
            img2bb,
            MPII_JOINT_NAMES,
            input_shape=shape,
            hm_shape=cells,
        )
        if rec["smplx_param"] is not None:
            smplx = process_smplx_output(rec["smplx_param"], rec["cam_param"], aug, img_shape, img2bb, self.body_layer,
                                         input_shape=shape, hm_shape=cells)
            for name in _INVALID_POSE:
                smplx["pose_valid"][J.ORIG_JOINT_NAMES.index(name)] = 0
            for name in _INVALID_JOINTS:
                smplx["joint_valid"][J.JOINT_NAMES.index(name)] = 0
            shape_valid = True
        else:
            smplx, shape_valid = empty_smplx_targets(), False
        return whole_body_sample(patch, joint, smplx, shape_valid, False, dummy_boxes())
