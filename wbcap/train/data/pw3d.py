"""3DPW (SMPL ground truth), in upstream Hand4Whole's parsed layout: an evaluation loader.

Layout (``data_root`` holds ``PW3D/``)::

    <root>/PW3D/data/3DPW_{train,validation,test}.json   COCO style: images (id, file_name,
        sequence, width, height, cam_param {focal, princpt}), annotations (id, image_id,
        bbox [x, y, w, h], smpl_param {pose (72), shape (10), trans (3, m), gender})
    <root>/PW3D/data/imageFiles/<sequence>/<file_name>

Sample ``(inputs, targets, meta_info)`` (float32 unless noted), no augmentation::

    inputs     img (3, 512, 384): the person crop (upstream box processing), RGB in [0, 1]
    targets    smpl_pose (72,) axis-angle (root first), smpl_shape (10,), smpl_trans (3,) m,
               smpl_mesh_cam (6890, 3) metres in the camera -- only when an SMPL model is given
    meta_info  bbox (4,) processed xywh box in image pixels, bb2img_trans / img2bb_trans (2, 3),
               focal (2,), princpt (2,) (image pixels), gender (str), ann_id (int)

The ground-truth mesh needs the (licensed) SMPL model, which wbcap does not ship: pass
``smpl_model`` -- a callable such as ``smplx.SMPL`` taking ``betas (1, 10)``,
``global_orient (1, 3)``, ``body_pose (1, 69)``, ``transl (1, 3)`` tensors and returning an object
with ``.vertices``, or a mapping ``{gender: callable}`` (``'neutral'`` is the fallback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wbcap.config import ModelConfig
from wbcap.train.data.common import (
    Augmentation,
    AugmentedDataset,
    annotated_images,
    checked_array,
    crop_and_augment,
    load_json,
    parsing,
    read_image,
)

__all__ = ["LAYOUT", "PW3D"]

LAYOUT = "<root>/PW3D/data/3DPW_{train,validation,test}.json, <root>/PW3D/data/imageFiles/<sequence>/<file_name>"
_F32 = np.float32


class PW3D(AugmentedDataset):
    """3DPW evaluation samples (see the module docstring).

    Args:
        data_root: folder holding ``PW3D/``.
        split: ``'train'``, ``'validation'`` or ``'test'``.
        smpl_model: optional SMPL model (callable or ``{gender: callable}``) for ``smpl_mesh_cam``.

    Raises:
        DatasetLayoutError: the annotation file is missing or unreadable.
    """

    def __init__(
        self,
        data_root: str | Path,
        split: str = "test",
        smpl_model: Callable[..., Any] | Mapping[str, Callable[..., Any]] | None = None,
        model: ModelConfig | None = None,
    ) -> None:
        if split not in ("train", "validation", "test"):
            raise ValueError(f"PW3D split must be 'train', 'validation' or 'test', got {split!r}")
        super().__init__(None, 0, model)
        self.split = split
        self.smpl_model = smpl_model
        self.root = Path(data_root).expanduser() / "PW3D" / "data"
        db = load_json(self.root / f"3DPW_{split}.json", LAYOUT)
        with parsing(self.root / f"3DPW_{split}.json", LAYOUT):
            for ann, img in annotated_images(db):
                bbox = self.person_box(ann["bbox"], img)
                if bbox is None:
                    continue
                smpl = ann["smpl_param"]
                what = f"annotation {ann['id']}'s"
                self.records.append(
                    {
                        "img_path": self.root / "imageFiles" / img["sequence"] / img["file_name"],
                        "img_shape": (int(img["height"]), int(img["width"])),
                        "bbox": bbox,
                        "cam_param": {k: checked_array(img["cam_param"][k], (2,), f"image {img['id']}'s camera {k}")
                                      for k in ("focal", "princpt")},
                        "smpl_param": {**smpl, **{k: checked_array(smpl[k], (n,), f"{what} SMPL {k}")
                                                  for k, n in (("pose", 72), ("shape", 10), ("trans", 3))}},
                        "ann_id": ann["id"],
                    }
                )
        self.say_dropped(self.root / f"3DPW_{split}.json")

    def _mesh(self, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray, gender: str) -> np.ndarray:
        model = self.smpl_model
        if isinstance(model, Mapping):
            model = model.get(gender, model.get("neutral"))
            if model is None:
                raise ValueError(f"no SMPL model for gender {gender!r} (and no 'neutral')")
        t = lambda x: torch.as_tensor(np.asarray(x, _F32)).reshape(1, -1)  # noqa: E731
        with torch.no_grad():
            out = model(betas=t(shape), global_orient=t(pose[:3]), body_pose=t(pose[3:]), transl=t(trans))
        return out.vertices[0].detach().cpu().numpy().astype(_F32)

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        img = read_image(rec["img_path"], LAYOUT)
        patch, img2bb, bb2img = crop_and_augment(img, rec["bbox"], aug, tuple(self.model.input_img_shape))
        p = rec["smpl_param"]
        pose = np.asarray(p["pose"], _F32).reshape(72)
        shape = np.asarray(p["shape"], _F32).reshape(10)
        trans = np.asarray(p["trans"], _F32).reshape(3)
        gender = str(p.get("gender", "neutral"))
        targets: dict[str, Any] = {"smpl_pose": pose, "smpl_shape": shape, "smpl_trans": trans}
        if self.smpl_model is not None:
            targets["smpl_mesh_cam"] = self._mesh(pose, shape, trans, gender)
        meta = {
            "bbox": np.asarray(rec["bbox"], _F32),
            "bb2img_trans": bb2img.astype(_F32),
            "img2bb_trans": img2bb.astype(_F32),
            "focal": rec["cam_param"]["focal"].reshape(2),
            "princpt": rec["cam_param"]["princpt"].reshape(2),
            "gender": gender,
            "ann_id": int(rec["ann_id"]),
        }
        return {"img": patch}, targets, meta
