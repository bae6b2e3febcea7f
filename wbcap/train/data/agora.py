"""AGORA with its SMPL-X ground truth (upstream Hand4Whole's ``AGORA`` set, a 3D set: the fine-tuning
recipe of its second released checkpoint, ``--config agora``).

Layout (``data_root`` holds ``AGORA/``; the files upstream's parsing tool, ``tool/AGORA/agora2coco_smplx.py``,
writes from AGORA's own release, and AGORA's images sorted as ``tool/AGORA/README.md`` says)::

    <root>/AGORA/data/AGORA_train_SMPLX.json                        (COCO layout, no categories)
        images: id, file_name_1280x720 ("images_1280x720/train_<i>/<name>_1280x720.png"),
            file_name_3840x2160 ("images_3840x2160/train_<i>/<name>.png");
        annotations: id, image_id, person_id, is_valid, smplx_param_path, cam_param_path,
            bbox, lhand_bbox, rhand_bbox, face_bbox ([x, y, w, h] in 3840x2160 pixels), and
            gender, kid, occlusion, age, ethnicity (not used, as upstream)
    <root>/AGORA/data/<file_name_1280x720>                          (1280x720 pixels)
    <root>/AGORA/data/<smplx_param_path>    "./smplx_params_cam/train_<i>/<name>/<person_id>.json":
        {global_orient (3), body_pose (63), betas (10), left_hand_pose (45), right_hand_pose (45),
         jaw_pose (3), leye_pose, reye_pose, expression (10), transl (3)}: the fit in the camera
        frame (metres), hand poses relative to the hand mean
    <root>/AGORA/data/<cam_param_path>      "./cam_params/train_<i>/<name>.json":
        {focal (2), princpt (2)}: pixels of the 3840x2160 image

With ``resolution='3840x2160'`` the images are instead the person crops upstream's
``tool/AGORA/crop_and_resize_4k_images.py`` cuts from the 3840x2160 images, one per annotation::

    <root>/AGORA/data/images_3840x2160/train_<i>_crop/<name>_person_id_<person_id>.png
    <root>/AGORA/data/images_3840x2160/train_<i>_crop/<name>_person_id_<person_id>.json
        {bbox_orig, affine_mat (2 x 3: 3840x2160 pixels -> crop pixels), resized_height, resized_width}

As upstream (``data/AGORA/AGORA.py``, ``train`` split): annotations with ``is_valid`` false are
skipped. At 1280x720 the person box (scaled from 3840x2160) goes through the crop-box rule of the
other sets (an empty or outside box is skipped); the hand and face boxes are scaled the same way,
sanitized against the 1280x720 image (one left empty is an invalid box target) and made xyxy; the
camera's focal lengths and principal point are scaled by 1280/3840 in x and 720/2160 in y. With the
crops, an annotation without its crop's JSON is skipped (as upstream; counted in a warning), the
person box is the whole crop, the hand and face boxes and the camera go through the crop's affine
(and the boxes are sanitized against 3840x2160, as upstream does). Every sample is 3D (``is_3D``
1): the SMPL-X parameters (``betas`` cut to their first 10, as upstream: the tool already writes
10, dropping the 11th, AGORA's child-template weight, of the kids' fits) go through the neutral
body layer with the scaled camera (upstream's "without gender classification": the fits' gender and
AGORA's kid flags are not used), all of the body, hands and face valid; the dataset joint targets
``joint_img`` / ``joint_cam`` are the SMPL-X joints themselves, with the same validity and
truncation (upstream sets ``joint_img = smplx_joint_img`` and ``joint_cam = smplx_joint_cam``).

The per-person and camera JSON files (hundreds of thousands) are read when a sample is made, each
checked: a missing or damaged one is a one-line :class:`DatasetLayoutError` naming it. This loader
reads only the parsed JSON files; it never opens AGORA's own pickles (upstream's tool does, once).
The ``validation`` split (``AGORA_validation_SMPLX.json``, the same layout) gives the evaluation samples of
``wbcap eval --dataset AGORA`` (upstream's ``test_set = 'val'``); AGORA's test split has no ground truth (its
server scores it) and is not built.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.crop.bbox import sanitize_bbox
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
    load_json,
    parsing,
    process_part_bbox,
    read_image,
    whole_body_sample,
    xywh_to_xyxy_or_none,
)
from wbcap.train.data.smplx_targets import process_smplx_output

__all__ = ["AGORA", "ANNOTATION_FILE", "ANNOTATION_FILES", "CROPS_LAYOUT", "LAYOUT", "ORIG_SIZE", "check_split_files",
           "part_box", "scaled_camera", "split_layout"]

log = logging.getLogger(__name__)

ANNOTATION_FILE = "AGORA_train_SMPLX.json"
#: The annotation file of each split (upstream's ``load_data``: ``validation`` is its ``test_set = 'val'``;
#: ``test``, no ground truth, its ``test_set = 'test'``: the person boxes of a detector).
ANNOTATION_FILES = {"train": ANNOTATION_FILE, "validation": "AGORA_validation_SMPLX.json", "test": "AGORA_test_bbox.json"}
ORIG_SIZE = (3840, 2160)
"""(width, height) of AGORA's renders: the pixels of the annotation boxes and cameras."""
LOW_SIZE = (1280, 720)
LAYOUT = (
    f"<root>/AGORA/data/{ANNOTATION_FILE} (upstream's tool/AGORA/agora2coco_smplx.py), "
    "<root>/AGORA/data/<file_name_1280x720> (images_1280x720/train_<i>/<name>_1280x720.png), "
    "<root>/AGORA/data/<smplx_param_path> (smplx_params_cam/train_<i>/<name>/<person_id>.json), "
    "<root>/AGORA/data/<cam_param_path> (cam_params/train_<i>/<name>.json)"
)
CROPS_LAYOUT = LAYOUT.replace(
    "<root>/AGORA/data/<file_name_1280x720> (images_1280x720/train_<i>/<name>_1280x720.png)",
    "<root>/AGORA/data/images_3840x2160/train_<i>_crop/<name>_person_id_<person_id>.{png,json} "
    "(upstream's tool/AGORA/crop_and_resize_4k_images.py)",
)


TEST_LAYOUT = ("<root>/AGORA/data/AGORA_test_bbox.json ({image file name: [{\"bbox\": [x, y, w, h]}, ...]}, "
               "person detections in 3840x2160 pixels: the file upstream's tool/AGORA/README.md links), "
               "<root>/AGORA/data/test/<image file name> (the 1280x720 test images)")
TEST_CROPS_LAYOUT = TEST_LAYOUT.replace(
    "<root>/AGORA/data/test/<image file name> (the 1280x720 test images)",
    "<root>/AGORA/data/images_3840x2160/test_crop/<name>_person_id_<k>.{png,json} (upstream's "
    "tool/AGORA/crop_and_resize_4k_images.py)")


def split_layout(layout: str, split: str) -> str:
    """``layout`` (:data:`LAYOUT` or :data:`CROPS_LAYOUT`, the train split's) for ``split`` (upstream's
    tool writes the validation split's files under ``validation/``, without the train split's parts;
    the test split's are :data:`TEST_LAYOUT` / :data:`TEST_CROPS_LAYOUT`)."""
    if split == "test":
        return TEST_CROPS_LAYOUT if layout == CROPS_LAYOUT else TEST_LAYOUT
    return layout if split == "train" else layout.replace(ANNOTATION_FILE, ANNOTATION_FILES[split]).replace(
        "train_<i>", split)
_RESOLUTIONS = ("1280x720", "3840x2160")
_PARTS = (("lhand", "lhand_bbox"), ("rhand", "rhand_bbox"), ("face", "face_bbox"))
# the per-person file's keys -> process_smplx_output's, with their sizes (betas: at least 10, the first 10 used)
_SMPLX_KEYS = (("global_orient", "root_pose", 3), ("body_pose", "body_pose", 63), ("left_hand_pose", "lhand_pose", 45),
               ("right_hand_pose", "rhand_pose", 45), ("jaw_pose", "jaw_pose", 3), ("expression", "expr", 10),
               ("transl", "trans", 3))  # fmt: skip


def part_box(xywh_orig: np.ndarray, affine: np.ndarray, width: float, height: float) -> np.ndarray | None:
    """A hand or face box ``[x, y, w, h]`` of the 3840x2160 image -> float32 ``[x1, y1, x2, y2]`` of
    the image read (its two corners through ``affine``, 2x3), sanitized against ``width`` x
    ``height`` (upstream's rule); None when nothing is left of it."""
    x, y, w, h = np.asarray(xywh_orig, np.float64).reshape(4)
    corners = np.array([[x, y], [x + w, y + h]]) @ np.asarray(affine, np.float64)[:, :2].T + np.asarray(affine)[:, 2]
    return xywh_to_xyxy_or_none(sanitize_bbox([*corners[0], *(corners[1] - corners[0])], width, height))


def scaled_camera(cam: dict[str, np.ndarray], affine: np.ndarray) -> dict[str, np.ndarray]:
    """The 3840x2160 camera for the image read: focal lengths scaled and the principal point moved by
    the (axis-aligned) ``affine``, as upstream (its diagonal and translation)."""
    a = np.asarray(affine, np.float32)
    scale, shift = np.array([a[0, 0], a[1, 1]], np.float32), a[:, 2].astype(np.float32)
    return {"focal": cam["focal"] * scale, "princpt": cam["princpt"] * scale + shift}


def check_split_files(data_root: str | Path, split: str = "validation", resolution: str = "1280x720") -> int:
    """Check, before any work, that every valid annotation of ``split`` has its per-person and camera
    files and, at 1280x720, its image (``wbcap eval`` checks its split before it builds the network:
    one missing file in thousands would otherwise end the run midway; at 3840x2160 an annotation
    without its crop is left out with a warning, as upstream). Returns the valid annotations.

    Raises:
        DatasetLayoutError: the annotation file is missing or damaged, or files are missing (one
            line naming the first and counting the others).
    """
    layout = split_layout(CROPS_LAYOUT if resolution == "3840x2160" else LAYOUT, split)
    base = Path(data_root).expanduser() / "AGORA" / "data"
    ann_path = base / ANNOTATION_FILES[split]
    if not ann_path.is_file():
        raise DatasetLayoutError.missing(ann_path, layout)
    db = load_json(ann_path, layout)
    missing: list[Path] = []
    valid = 0
    if split == "test":  # (the detections file: its images at 1280x720; crops are looked for as upstream)
        with parsing(ann_path, layout):
            if not isinstance(db, dict):
                raise TypeError(f"the file holds a {type(db).__name__}, not an object keyed by image file name")
            for filename, people in db.items():
                valid += len(people)
                if resolution != "3840x2160" and not (base / "test" / filename).is_file():
                    missing.append(base / "test" / filename)
        db = {"images": [], "annotations": []}
    with parsing(ann_path, layout):
        for ann, img in annotated_images(db):
            if not ann["is_valid"]:
                continue
            valid += 1
            names = (ann["smplx_param_path"], ann["cam_param_path"])
            for name in names if resolution == "3840x2160" else (img["file_name_1280x720"], *names):
                if not (base / name).is_file():
                    missing.append(base / name)
    if missing:
        others = f" (and {len(missing) - 1} other file(s) its valid annotations name)" if len(missing) > 1 else ""
        raise DatasetLayoutError(f"{missing[0]} missing{others}, named by {ann_path}; expected layout: {layout}")
    return valid


class AGORA(AugmentedDataset):
    """AGORA whole-body samples (SMPL-X ground truth, part boxes; 3D).

    Args:
        data_root: folder holding ``AGORA/`` (see the module docstring).
        split: ``'train'``, ``'validation'`` (``AGORA_validation_SMPLX.json``, the same layout:
            upstream's evaluation set with ground truth, ``test_set = 'val'``; evaluation samples,
            see :meth:`get`) or ``'test'`` (no ground truth: the people of a detector's boxes file,
            :data:`TEST_LAYOUT`, upstream's ``test_set = 'test'``; its samples' ground truth is zero).
        body_layer: SMPL-X layer for the targets (kept if on the CPU, else copied there).
        augment: augmentation ranges; None disables augmentation.
        seed: augmentation seed.
        model: the network geometry the samples are for; None: the released network's.
        resolution: ``'1280x720'`` (AGORA's 1280x720 images) or ``'3840x2160'`` (upstream's person
            crops of the 3840x2160 images, its file's default).

    Raises:
        DatasetLayoutError: the annotation file is missing or unreadable (one line naming it).
    """

    def __init__(
        self,
        data_root: str | Path,
        split: str = "train",
        body_layer: SMPLXLayer | None = None,
        augment: AugmentConfig | None = DEFAULT_AUGMENT,
        seed: int = 0,
        model: ModelConfig | None = None,
        resolution: str = "1280x720",
    ) -> None:
        if split not in ANNOTATION_FILES:
            raise ValueError(f"AGORA's splits are {', '.join(map(repr, ANNOTATION_FILES))}, got {split!r}")
        if resolution not in _RESOLUTIONS:
            raise ValueError(f"AGORA resolution must be one of {', '.join(map(repr, _RESOLUTIONS))}, got {resolution!r}")
        if body_layer is None:
            raise ValueError("AGORA needs body_layer (an SMPLXLayer) for its SMPL-X targets")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = split == "train"
        self.crops = resolution == "3840x2160"
        self.annotation_file = ANNOTATION_FILES[split]
        self.layout = split_layout(CROPS_LAYOUT if self.crops else LAYOUT, split)
        self.body_layer = cpu_body_layer(body_layer)  # never the training model's (CUDA) layer
        self.root = Path(data_root).expanduser() / "AGORA" / "data"
        self.without_crop = 0  # (crops: annotations whose crop is not there, skipped as upstream)
        self.records = self._load()
        self.say_dropped(self.root / self.annotation_file)
        if self.without_crop:
            log.warning("%s: %d of its valid annotations have no crop under images_3840x2160/*_crop/ and are left out "
                        "(upstream's tool/AGORA/crop_and_resize_4k_images.py writes them); %d sample(s) kept",
                        self.root / self.annotation_file, self.without_crop, len(self.records))

    # ------------------------------------------------------------------------------------------
    def _load_test(self) -> list[dict[str, Any]]:
        """The test split's people (upstream ``load_data`` with ``test_set = 'test'``): every box of
        the detections file, ``person_id`` its place in its image's list; at 1280x720 scaled by 1/3
        and made a crop box (a box left empty is dropped, its id kept by the others); with the
        crops, those whose crop is there."""
        path = self.root / self.annotation_file
        boxes = load_json(path, self.layout)
        records = []
        sx, sy = LOW_SIZE[0] / ORIG_SIZE[0], LOW_SIZE[1] / ORIG_SIZE[1]
        low = np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]], np.float32)
        with parsing(path, self.layout):
            if not isinstance(boxes, dict):
                raise TypeError(f"the file holds a {type(boxes).__name__}, not an object keyed by image file name")
            for filename, people in boxes.items():
                for person_id, person in enumerate(people):
                    if self.crops:
                        stem = self.root / "images_3840x2160" / "test_crop" / f"{Path(filename).stem}_person_id_{person_id}"
                        if not stem.with_suffix(".json").is_file():
                            self.without_crop += 1
                            continue
                        records.append({"img_path": stem.with_suffix(".png"), "crop_path": stem.with_suffix(".json"),
                                        "orig_boxes": {}, "person_id": person_id})
                        continue
                    xywh = checked_array(person["bbox"], (4,), f"{filename}'s box {person_id}")
                    bbox = self.person_box(xywh * np.array([sx, sy, sx, sy], np.float32),
                                           {"width": LOW_SIZE[0], "height": LOW_SIZE[1]})
                    if bbox is None:
                        continue
                    records.append({"img_path": self.root / "test" / filename, "img_shape": (LOW_SIZE[1], LOW_SIZE[0]),
                                    "bbox": bbox, "affine": low, "person_id": person_id,
                                    **{f"{part}_bbox": None for part, _ in _PARTS}})
        return records

    def _load(self) -> list[dict[str, Any]]:
        ann_path = self.root / self.annotation_file
        if not ann_path.is_file():
            raise DatasetLayoutError.missing(ann_path, self.layout)
        if self.split == "test":
            return self._load_test()
        db = load_json(ann_path, self.layout)
        sx, sy = LOW_SIZE[0] / ORIG_SIZE[0], LOW_SIZE[1] / ORIG_SIZE[1]
        low = np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]], np.float32)
        records = []
        with parsing(ann_path, self.layout):
            for ann, img in annotated_images(db):
                if not ann["is_valid"]:
                    continue
                aid = ann["id"]
                boxes = {key: checked_array(ann[key], (4,), f"annotation {aid}'s {key}")
                         for key in ("bbox", *(k for _, k in _PARTS))}
                rec: dict[str, Any] = {
                    "smplx_param_path": self.root / ann["smplx_param_path"],
                    "cam_param_path": self.root / ann["cam_param_path"],
                    "ann_id": aid,
                    "person_id": ann["person_id"],
                }
                if self.crops:
                    name = PurePosixPath(img["file_name_3840x2160"])
                    stem = self.root / "images_3840x2160" / f"{name.parent.name}_crop" / f"{name.stem}_person_id_{ann['person_id']}"
                    if not stem.with_suffix(".json").is_file():
                        self.without_crop += 1
                        continue
                    rec.update(img_path=stem.with_suffix(".png"), crop_path=stem.with_suffix(".json"),
                               orig_boxes={part: boxes[key] for part, key in _PARTS})
                else:
                    bbox = self.person_box(boxes["bbox"] * np.array([sx, sy, sx, sy], np.float32),
                                           {"width": LOW_SIZE[0], "height": LOW_SIZE[1]})
                    if bbox is None:
                        continue
                    rec.update(img_path=self.root / img["file_name_1280x720"], img_shape=(LOW_SIZE[1], LOW_SIZE[0]),
                               bbox=bbox, affine=low,
                               **{f"{part}_bbox": part_box(boxes[key], low, *LOW_SIZE) for part, key in _PARTS})
                records.append(rec)
        return records

    def sample_record(self, idx: int) -> dict[str, Any]:
        """Record ``idx`` with its image's geometry: ``img_shape``, ``bbox`` (xywh crop box in the
        image read), ``affine`` (3840x2160 pixels -> the image read) and the part boxes (for the
        3840x2160 crops, read from the crop's JSON)."""
        rec = self.records[idx]
        return {**rec, **self._crop(rec)} if self.crops else rec

    def _crop(self, rec: dict[str, Any]) -> dict[str, Any]:
        """A crop's record (``img_shape``, ``bbox``, ``affine``, part boxes) from its JSON."""
        path = rec["crop_path"]
        info = load_json(path, self.layout)
        with parsing(path, self.layout):
            affine = checked_array(info["affine_mat"], (2, 3), "'affine_mat'")
            h, w = int(info["resized_height"]), int(info["resized_width"])
            if h <= 0 or w <= 0:
                raise ValueError(f"resized size {w}x{h} has no pixels")
        return {"img_shape": (h, w), "bbox": np.array([0, 0, w, h], np.float32), "affine": affine,
                **{f"{part}_bbox": None for part, _ in _PARTS},
                **{f"{part}_bbox": part_box(box, affine, *ORIG_SIZE) for part, box in rec["orig_boxes"].items()}}

    def person(self, rec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The SMPL-X parameters (``process_smplx_output``'s names, hands and face valid) and the
        3840x2160 camera of record ``rec``, read from its two JSON files and checked.

        Raises:
            DatasetLayoutError: a file is missing, not JSON, or lacks a key or a value's size (one
                line naming it).
        """
        path, cam_path = rec["smplx_param_path"], rec["cam_param_path"]
        raw = load_json(path, self.layout)
        with parsing(path, self.layout):
            param: dict[str, Any] = {ours: checked_array(raw[key], (n,), repr(key)) for key, ours, n in _SMPLX_KEYS}
            betas = np.asarray(raw["betas"], np.float32).reshape(-1)
            if betas.size < 10:
                raise ValueError(f"'betas' has {betas.size} numbers, fewer than 10")
            param["shape"] = checked_array(betas[:10], (10,), "'betas'")
        param.update(lhand_valid=True, rhand_valid=True, face_valid=True)
        raw = load_json(cam_path, self.layout)
        with parsing(cam_path, self.layout):
            cam = {key: checked_array(raw[key], (2,), repr(key)) for key in ("focal", "princpt")}
        return param, cam

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """A training sample (the whole-body schema of :mod:`wbcap.train.data.common`), or for the
        ``validation`` split an evaluation one as upstream's ``test_set = 'val'``: ``inputs`` img,
        ``targets`` smplx_mesh_cam (V, 3), the fit's mesh through the neutral body layer in the
        camera frame (metres), ``meta`` bbox (the crop box, xywh pixels of the image read) and
        bb2img_trans (2, 3)."""
        rec = self.sample_record(idx)
        img_shape = rec["img_shape"]
        img = read_image(rec["img_path"], self.layout)
        if img.shape[:2] != tuple(img_shape):
            raise DatasetLayoutError(f"{rec['img_path']}: {img.shape[1]}x{img.shape[0]} pixels, not the "
                                     f"{img_shape[1]}x{img_shape[0]} its annotations are scaled to; expected layout: "
                                     f"{self.layout}")
        shape, cells = tuple(self.model.input_img_shape), tuple(self.model.output_hm_shape)
        patch, img2bb, bb2img = crop_and_augment(img, rec["bbox"], aug, shape)

        boxes = {
            part: process_part_bbox(rec[f"{part}_bbox"], aug, img_shape, img2bb, input_shape=shape, hm_shape=cells)
            for part in ("lhand", "rhand", "face")
        }
        if aug.flip:
            boxes["lhand"], boxes["rhand"] = boxes["rhand"], boxes["lhand"]

        if self.split == "test":  # (no ground truth)
            meta = {"bbox": np.asarray(rec["bbox"], np.float32), "bb2img_trans": bb2img.astype(np.float32)}
            return {"img": patch}, {"smplx_mesh_cam": np.zeros((self.body_layer.num_vertices, 3), np.float32)}, meta
        param, cam = self.person(rec)
        smplx = process_smplx_output(param, scaled_camera(cam, rec["affine"]), aug, img_shape, img2bb, self.body_layer,
                                     input_shape=shape, hm_shape=cells)
        if not self.train:
            meta = {"bbox": np.asarray(rec["bbox"], np.float32), "bb2img_trans": bb2img.astype(np.float32)}
            return {"img": patch}, {"smplx_mesh_cam": np.asarray(smplx["mesh_cam"], np.float32)}, meta
        # upstream: joint_img/joint_cam = the SMPL-X joints', with their validity and truncation
        valid = np.asarray(smplx["joint_valid"], np.float32).reshape(-1, 1)
        joint = (smplx["joint_img"], smplx["joint_cam"], valid, valid * smplx["joint_trunc"])
        return whole_body_sample(patch, joint, smplx, True, True, boxes)
