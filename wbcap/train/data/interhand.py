"""InterHand2.6M for the hand-only stage (``wbcap train hand``): upstream Pose2Pose's ``InterHand26M``
set (``data/InterHand26M/InterHand26M.py``), a 3D set of the hand stage beside FreiHAND.

Layout (``data_root`` holds ``InterHand26M/``; the files as the dataset's release ships them, with
NeuralAnnot's MANO fits)::

    <root>/InterHand26M/images/train/Capture<c>/<seq_name>/cam<camera>/image<frame>.jpg
    <root>/InterHand26M/annotations/train/InterHand2.6M_train_data.json   COCO style: images (id,
        file_name (relative to images/train), width, height, capture, seq_name, camera, frame_idx),
        annotations (id, image_id, joint_valid (42, as [[0|1], ...]), hand_type right|left|interacting)
    <root>/InterHand26M/annotations/train/InterHand2.6M_train_camera.json
        {capture: {campos: {camera: (3,) mm}, camrot: {camera: 3 x 3}, focal: {camera: (2,)},
         princpt: {camera: (2,)}}}
    <root>/InterHand26M/annotations/train/InterHand2.6M_train_joint_3d.json
        {capture: {frame_idx: {world_coord: 42 x 3 mm, ...}}}
    <root>/InterHand26M/annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json
        {capture: {frame_idx: {right: null | {pose (48), shape (10), trans (3)}, left: (the same)}}}

The 42 joints are the right hand's 21 then the left hand's, each in InterHand's order (per finger
tip to base, ``Thumb_4 .. Thumb_1, Index_4 .. Pinky_1``, then ``Wrist``:
:data:`INTERHAND_JOINT_NAMES`), mapped by name onto FreiHAND's/MANO's order.

**Cameras** (as upstream, training only): there are too many views, so for each capture and
sequence the camera folders under ``images/train/Capture<c>/<seq_name>/`` are listed, sorted by name,
and every ``len // 10``-th kept when there are 10 or more (all when fewer); an annotation of a
camera left out is skipped. Only folders count (upstream's glob would count a stray file too); a
sequence with no folder here has no camera kept (its annotations are skipped, and counted in a
warning: a partly downloaded image set).

Each annotation gives one sample per hand it holds (``interacting``: right, then left) that has a
valid joint, where a side's joints are all invalid when its wrist is (its wrist-relative 3D joints
are unknown, as upstream). The world joints go to the camera, ``X_cam = R (X_world - campos)``
(upstream's ``t = -R campos``), millimetres to metres; the box is the valid joints' 2D extent
grown x1.5 about its centre, then the hand box FreiHAND's is (sanitized, squared, x1.25; a box
with no usable area is dropped). The sample follows the hand sample schema of
:mod:`wbcap.train.data.freihand` key for key, with ``is_3D = 1``: ``joint_cam`` wrist-relative
metres (after the rotation augmentation), ``joint_img`` x, y in heatmap cells and z the
wrist-relative depth as FreiHAND's; ``joint_trunc`` is the validity times inside the heatmap
volume; invalid joints' targets are zero (masked).

**Left hands are mirrored into right hands** (upstream's ``enforce_flip=(hand_type == 'left')``):
image, box and 2D joints flipped (``x -> W - 1 - x``), the camera-space x of ``joint_cam`` negated,
and every MANO axis-angle ``(x, y, z) -> (x, -y, -z)``
(:func:`~wbcap.train.data.coco_hands.flip_mano_pose`); right hands are never flipped.

**MANO fits** are NeuralAnnot's, in InterHand's world frame: the fit's root is turned by the
camera rotation ``R`` first (upstream ``process_human_model_output``, which merges ``cam_param['R']``
into the root), then mirrored (left hands), then turned by the rotation augmentation, as FreiHAND's.
A shape with any ``|beta| > 3`` is zeroed (valid stays 1), as upstream. A side without a fit (``null``,
or its capture or frame absent from the file) has zero pose and shape and ``mano_param_valid``,
``mano_pose_valid``, ``mano_shape_valid`` 0. Only a ``train`` split (the hand model is evaluated on
FreiHAND). With the MANO layer (``mano_layer``), a fit with its ``trans`` also gives upstream's
``mano_joint_img`` / ``mano_joint_trunc``: the fit posed (root turned by ``R``), moved so that its
wrist lands at ``R @ wrist + t`` (``t = -R campos``, metres), projected with the camera
(:func:`~wbcap.train.data.coco_hands.mano_fit_joint_img`); zero otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.config import ModelConfig
from wbcap.crop.bbox import process_bbox
from wbcap.train.data.coco_hands import fitted_hand_sample
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
    load_json,
    parsing,
    process_db_coord,
    read_image,
    rotate_root_pose,
)
from wbcap.train.data.freihand import FREIHAND_JOINT_NAMES

__all__ = ["INTERHAND_JOINT_NAMES", "LAYOUT", "InterHand26M", "kept_cameras"]

INTERHAND_JOINT_NAMES: tuple[str, ...] = tuple(
    f"{f}_{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in (4, 3, 2, 1)
) + ("Wrist",)
"""One hand's 21 joints in InterHand2.6M's order (upstream's ``joint_set['hand']['joints_name']``)."""

SPLIT = "train"
FILES = ("data", "camera", "joint_3d", "MANO_NeuralAnnot")
LAYOUT = (
    "<root>/InterHand26M/images/train/<file_name> (Capture<c>/<seq_name>/cam<camera>/image<frame>.jpg), "
    "<root>/InterHand26M/annotations/train/InterHand2.6M_train_{data,camera,joint_3d,MANO_NeuralAnnot}.json"
)
SIDES = {"right": ("right",), "left": ("left",), "interacting": ("right", "left")}
_WRIST = INTERHAND_JOINT_NAMES.index("Wrist")
_BOX_EXTEND = 1.5  # upstream get_bbox(..., extend_ratio=1.5)
_F32 = np.float32

log = logging.getLogger(__name__)


def kept_cameras(sequence_dir: str | Path) -> frozenset[str]:
    """The camera folders of one capture's sequence that training keeps (upstream's "reduce the
    number of cameras by 10 times"): the folder names sorted, every ``len // 10``-th kept when
    there are 10 or more, all of them when fewer. A missing folder keeps none."""
    try:
        with os.scandir(sequence_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    step = 1 if len(names) < 10 else len(names) // 10
    return frozenset(names[::step])


def _bbox_of(points: np.ndarray, extend: float = _BOX_EXTEND) -> np.ndarray:
    """Upstream ``get_bbox``: the ``(N, 2)`` points' extent grown ``extend`` times about its centre, xywh."""
    lo, hi = points.min(0), points.max(0)
    centre, size = (lo + hi) / 2.0, (hi - lo) * extend
    return np.concatenate([centre - size / 2.0, size]).astype(np.float32)


class InterHand26M(AugmentedDataset):
    """InterHand2.6M hand samples (3D joints + MANO NeuralAnnot fits), left hands mirrored to right.

    Args:
        data_root: folder holding ``InterHand26M/`` (see the module docstring).
        split: ``'train'`` (the only split).
        augment: augmentation ranges (flips are decided by the hand's side); None disables it.
        seed: augmentation seed.
        model: the network geometry the samples are for (``input_hand_shape``,
            ``output_hand_hm_shape``); None: the released network's.
        mano_layer: the right-hand MANO layer for the fits' ``mano_joint_img`` (kept if on the CPU,
            else copied there); None: those targets are zero.

    Raises:
        DatasetLayoutError: an annotation file or the image folder is missing or unreadable, or
            no sample is left (one line naming it).
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
        if split != SPLIT:
            raise ValueError(f"InterHand26M has a 'train' split only here (the hand model is evaluated on FreiHAND), "
                             f"got {split!r}")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = True
        self.mano = None if mano_layer is None else cpu_body_layer(mano_layer)
        self.root = Path(data_root).expanduser() / "InterHand26M"
        self.filtered = 0  # annotations of cameras the filtering leaves out
        self.unlisted = 0  # annotations of sequences without an image folder
        self.records = self._load()
        self.say_dropped(self._path("data"))

    def _path(self, what: str) -> Path:
        return self.root / "annotations" / SPLIT / f"InterHand2.6M_{SPLIT}_{what}.json"

    def _load(self) -> list[dict[str, Any]]:
        paths = [self._path(what) for what in FILES]
        for path in paths:
            if not path.is_file():
                raise DatasetLayoutError.missing(path, LAYOUT)
        images = self.root / "images" / SPLIT
        if not images.is_dir():
            raise DatasetLayoutError.missing(images, LAYOUT)
        db, cameras, joints, fits = (load_json(p, LAYOUT) for p in paths)
        for path, value in zip(paths[1:], (cameras, joints, fits)):
            if not isinstance(value, dict):
                raise DatasetLayoutError(f"{path}: not InterHand2.6M's file (an object keyed by capture was expected, "
                                         f"not a {type(value).__name__}); expected layout: {LAYOUT}")
        aspect = self.model.input_hand_shape[1] / self.model.input_hand_shape[0]
        listed: dict[tuple[str, str], frozenset[str]] = {}
        unlisted: set[tuple[str, str]] = set()
        camera_cache: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
        fit_cameras: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        records: list[dict[str, Any]] = []
        total = 0
        with parsing(paths, LAYOUT):
            for ann, img in annotated_images(db):
                total += 1
                capture, seq, cam = str(img["capture"]), str(img["seq_name"]), str(img["camera"])
                frame = str(img["frame_idx"])
                key = (capture, seq)
                if key not in listed:
                    listed[key] = kept_cameras(images / f"Capture{capture}" / seq)
                    if not listed[key]:
                        unlisted.add(key)
                if f"cam{cam}" not in listed[key]:
                    if key in unlisted:
                        self.unlisted += 1
                    else:
                        self.filtered += 1
                    continue
                if (capture, cam) not in camera_cache:
                    with parsing(paths[1], LAYOUT):
                        c = cameras[capture]
                        what = f"capture {capture} camera {cam}'s"
                        camera_cache[capture, cam] = (
                            checked_array(c["camrot"][cam], (3, 3), f"{what} camrot").astype(np.float64),
                            checked_array(c["campos"][cam], (3,), f"{what} campos").astype(np.float64),
                            checked_array(c["focal"][cam], (2,), f"{what} focal"),
                            checked_array(c["princpt"][cam], (2,), f"{what} princpt"),
                        )
                rot, campos, focal, princpt = camera_cache[capture, cam]
                if (capture, cam) not in fit_cameras:  # (one per camera, shared by its records)
                    # the world (mm) -> camera extrinsics in metres, X_cam = R X + t (t = -R campos)
                    fit_cameras[capture, cam] = {"focal": focal, "princpt": princpt, "R": rot, "t": -rot @ campos / 1000.0}
                with parsing(paths[0], LAYOUT):
                    valid = checked_array(ann["joint_valid"], (42,), f"annotation {ann['id']}'s joint_valid").reshape(2, 21)
                    sides = SIDES.get(ann["hand_type"])
                    if sides is None:
                        raise ValueError(f"annotation {ann['id']}'s hand_type {ann['hand_type']!r} is not right, left "
                                         "or interacting")
                valid = valid * valid[:, _WRIST : _WRIST + 1]  # no wrist: no wrist-relative joints (upstream)
                with parsing(paths[2], LAYOUT):
                    world = checked_array(joints[capture][frame]["world_coord"], (42, 3),
                                          f"capture {capture} frame {frame}'s world_coord").astype(np.float64)
                cam_mm = (world - campos) @ rot.T  # R (X - campos) = R X + t, t = -R campos (upstream)
                for side in sides:
                    s = 0 if side == "right" else 1
                    v = valid[s]
                    if not v.any():
                        continue
                    hand_mm = cam_mm[21 * s : 21 * (s + 1)]
                    ok = v > 0
                    safe = np.where(ok[:, None], hand_mm, [0.0, 0.0, 1.0])  # (invalid joints: no projection)
                    px = cam2pixel(safe, focal, princpt)[:, :2]
                    box = process_bbox(_bbox_of(px[ok].astype(np.float64)), img["width"], img["height"],
                                       aspect_ratio=aspect)
                    if box is None:
                        self.dropped_boxes += 1
                        continue
                    rel_m = (hand_mm - hand_mm[_WRIST]) / 1000.0
                    pose = shape = trans = None
                    with parsing(paths[3], LAYOUT):
                        frames = fits.get(capture)
                        entry = frames.get(frame) if isinstance(frames, dict) else None
                        fit = entry.get(side) if isinstance(entry, dict) else None  # (upstream: a KeyError is no fit)
                        if fit is not None:
                            what = f"capture {capture} frame {frame}'s {side} MANO fit"
                            pose = checked_array(fit["pose"], (16, 3), f"{what}'s pose").copy()
                            shape = checked_array(fit["shape"], (10,), f"{what}'s shape")
                            pose[0] = rotate_root_pose(pose[0], rot)  # world -> camera (upstream merges cam R)
                            if "trans" in fit:  # (mano_joint_img)
                                trans = checked_array(fit["trans"], (3,), f"{what}'s trans")
                    records.append(
                        {
                            "img_path": images / img["file_name"],
                            "img_shape": (int(img["height"]), int(img["width"])),
                            "bbox": box,
                            "joint_px": np.where(ok[:, None], px, 0).astype(_F32),
                            "joint_cam": np.where(ok[:, None], rel_m, 0).astype(_F32),
                            "joint_valid": v.reshape(21, 1).astype(_F32),
                            "mano_pose": pose,
                            "mano_shape": shape,
                            "mano_trans": trans,
                            "mano_cam": fit_cameras[capture, cam],
                            "side": side,
                            "ann_id": ann["id"],
                        }
                    )
        if self.unlisted:
            log.warning("%s: %d of its annotations are in %d sequence(s) with no camera folder under %s (e.g. %s); "
                        "left out", paths[0], self.unlisted, len(unlisted), images,
                        "Capture{}/{}".format(*min(unlisted)))
        log.debug("%s: %d annotation(s) of cameras the filtering leaves out", paths[0], self.filtered)
        if not records:
            raise DatasetLayoutError(f"{paths[0]}: no hand sample ({total} annotation(s), {self.unlisted} of them in "
                                     f"sequences with no camera folder under {images}, {self.filtered} of cameras the "
                                     f"filtering leaves out); expected layout: {LAYOUT}")
        return records

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        flip = rec["side"] == "left"
        aug = dataclasses.replace(aug, flip=flip)  # left hands become right hands; right ones stay
        img = read_image(rec["img_path"], LAYOUT)
        shape, cells = tuple(self.model.input_hand_shape), tuple(self.model.output_hand_hm_shape)
        patch, img2bb, _ = crop_and_augment(img, rec["bbox"], aug, shape)
        joint_cam = rec["joint_cam"]
        joint_img = np.concatenate([rec["joint_px"], depth_to_hm(joint_cam[:, 2:], HAND_3D_SIZE, cells[0])], 1)
        joint_img, joint_cam, joint_valid, joint_trunc = process_db_coord(
            joint_img,
            joint_cam,
            rec["joint_valid"],
            aug,
            rec["img_shape"],
            (),
            img2bb,
            INTERHAND_JOINT_NAMES,
            FREIHAND_JOINT_NAMES,
            input_shape=shape,
            hm_shape=cells,
        )
        joints = (joint_img * joint_valid, joint_cam * joint_valid, joint_valid, joint_trunc)
        return fitted_hand_sample(patch, joints, rec, aug, img2bb, shape, cells, self.mano, is_3d=True)
