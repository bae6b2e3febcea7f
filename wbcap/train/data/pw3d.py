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
with ``.vertices``, or a mapping ``{gender: callable}`` (a gender the mapping lacks uses its
``'neutral'`` model, with one warning).

Each person's ``smpl_param.gender`` picks the SMPL model of the ground-truth mesh, as upstream:
it must be one of :data:`GENDERS` (3DPW's annotations give ``'male'`` or ``'female'`` for every
person), compared ignoring case and surrounding spaces (``'Male'`` is ``'male'``); another value,
or none, is a :class:`~wbcap.train.data.common.DatasetLayoutError` naming the file and the
annotation (it silently used the neutral model: another ground truth).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wbcap.config import ModelConfig
from wbcap.train.data.common import (
    Augmentation,
    AugmentedDataset,
    DatasetLayoutError,
    annotated_images,
    checked_array,
    crop_and_augment,
    load_json,
    parsing,
    read_image,
)

__all__ = ["GENDERS", "LAYOUT", "PW3D"]

log = logging.getLogger(__name__)

LAYOUT = "<root>/PW3D/data/3DPW_{train,validation,test}.json, <root>/PW3D/data/imageFiles/<sequence>/<file_name>"
_F32 = np.float32
GENDERS: tuple[str, ...] = ("male", "female", "neutral")
"""The values of 3DPW's ``smpl_param.gender`` (its annotations use the first two)."""


def _gender(smpl: Mapping[str, Any], ann: Mapping[str, Any], img: Mapping[str, Any], path: Path) -> str:
    """``smpl``'s gender as one of :data:`GENDERS` (case and surrounding spaces ignored).

    Raises:
        DatasetLayoutError: no gender, or one that is not 3DPW's (one line naming the file, the
            annotation and its image).
    """
    where = f"{path}: annotation {ann['id']} (image {img['id']}, {img['sequence']}/{img['file_name']})"
    if "gender" not in smpl:
        raise DatasetLayoutError(f"{where} has no SMPL gender (smpl_param's 'gender', which picks its ground truth's "
                                 "SMPL model); use the original files (re-download them)")
    value = smpl["gender"]
    gender = value.strip().lower() if isinstance(value, str) else None
    if gender is None or gender not in GENDERS:
        raise DatasetLayoutError(f"{where} has SMPL gender {value!r}, not 'male', 'female' or 'neutral'; set it to the "
                                 "person's gender or use the original files (re-download them)")
    return gender


def check_split_files(data_root: str | Path, split: str = "test") -> Path:
    """The annotation file of 3DPW's ``split`` under ``data_root``
    (``PW3D/data/3DPW_<split>.json``), checked to exist (``wbcap eval`` asks before it builds the
    network). Raises DatasetLayoutError when it does not."""
    path = Path(data_root).expanduser() / "PW3D" / "data" / f"3DPW_{split}.json"
    if not path.is_file():
        # (the release, unpacked: sequenceFiles/{train,validation,test}/*.pkl and imageFiles/)
        release = next((d / "sequenceFiles" for d in (path.parent.parent, path.parent)
                        if (d / "sequenceFiles").is_dir()), None)
        images = next((d / "imageFiles" for d in (path.parent.parent, path.parent) if (d / "imageFiles").is_dir()), None)
        move = "" if release is None or images is None or images.parent == path.parent else \
            f" (its imageFiles/ goes in {path.parent}/, beside it)"
        raise DatasetLayoutError.missing_parsed(path, LAYOUT, "Download 3DPW parsed data", "3DPW",
                                                None if release is None else release.parent, move)
    return path


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
        self._stood_in: set[str] = set()  # genders whose missing model was warned about
        path = check_split_files(data_root, split)
        self.root = path.parent
        db = load_json(path, LAYOUT)
        with parsing(path, LAYOUT):
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
                                                  for k, n in (("pose", 72), ("shape", 10), ("trans", 3))},
                                       "gender": _gender(smpl, ann, img, path)},
                        "ann_id": ann["id"],
                    }
                )
        self.say_dropped(path)

    def _mesh(self, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray, gender: str) -> np.ndarray:
        model = self.smpl_model
        if isinstance(model, Mapping):
            if gender not in model:
                if model.get("neutral") is None:
                    raise ValueError(f"no SMPL model for gender {gender!r} (and no 'neutral')")
                if gender not in self._stood_in:
                    self._stood_in.add(gender)
                    log.warning("3DPW: smpl_model has no %r SMPL model; the %s samples' ground truth uses the 'neutral' "
                                "one instead, so the numbers are not comparable with published ones", gender, gender)
            model = model.get(gender, model.get("neutral"))
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
        gender = p["gender"]
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
