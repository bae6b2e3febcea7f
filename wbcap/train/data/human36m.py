"""Human3.6M with SMPL-X NeuralAnnot pseudo-GT, in upstream Hand4Whole's parsed layout.

Layout (``data_root`` holds ``Human36M/``)::

    <root>/Human36M/images/<file_name>           e.g. s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000001.jpg
    <root>/Human36M/annotations/Human36M_subject{S}_data.json        COCO style: images (id, file_name,
        width, height, subject, action_idx, subaction_idx, cam_idx, frame_idx), annotations
        (id, image_id, bbox [x, y, w, h])
    <root>/Human36M/annotations/Human36M_subject{S}_camera.json      {cam_idx: {R 3x3, t (mm), f, c}}
    <root>/Human36M/annotations/Human36M_subject{S}_joint_3d.json    {action: {subaction: {frame: 17x3 world mm}}}
    <root>/Human36M/annotations/Human36M_subject{S}_SMPLX_NeuralAnnot.json
        {action: {subaction: {frame: {root_pose, body_pose, shape, trans (world, m), ...}}}}

Protocol (as upstream): ``train`` = subjects 1, 5, 6, 7, 8, frames with ``frame_idx % 5 == 0``,
all cameras; ``test`` = subjects 9, 11, ``frame_idx % 64 == 0``, camera 4 only. Samples follow the
whole-body schema of :mod:`wbcap.train.data.common` with ``is_3D = 1``; hand/face boxes are
dummies (invalid). As upstream, the SMPL-X rotations of the ankles and wrists and the foot joints
(toes, heels) of the fit are marked invalid. A frame missing from the NeuralAnnot file gets
all-invalid SMPL-X targets (upstream would crash).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body import joints as J
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.train.data.common import (
    BODY_3D_SIZE,
    DEFAULT_AUGMENT,
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
    dummy_boxes,
    load_json,
    parsing,
    process_db_coord,
    read_image,
    whole_body_sample,
)
from wbcap.train.data.smplx_targets import empty_smplx_targets, process_smplx_output

__all__ = ["H36M_FLIP_PAIRS", "H36M_JOINT_NAMES", "LAYOUT", "Human36M"]

H36M_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Head",
    "Head_top", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
)  # fmt: skip
H36M_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13))
H36M_ROOT_IDX = 0

LAYOUT = (
    "<root>/Human36M/images/<file_name>, "
    "<root>/Human36M/annotations/Human36M_subject{S}_{data,camera,joint_3d,SMPLX_NeuralAnnot}.json"
)
_SPLITS = {"train": ((1, 5, 6, 7, 8), 5), "test": ((9, 11), 64)}
_TEST_CAMERA = "4"
_INVALID_POSE = ("L_Ankle", "R_Ankle", "L_Wrist", "R_Wrist")
_INVALID_JOINTS = ("L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel")


def check_split_files(data_root: str | Path, split: str = "test",
                      subjects: Sequence[int] | None = None) -> dict[int, dict[str, Path]]:
    """The annotation files of Human3.6M's ``split`` (or of ``subjects``) under ``data_root``, by
    subject and kind (``data``, ``camera``, ``joint_3d``, ``SMPLX_NeuralAnnot``), each checked to
    exist before any of the (large) files is parsed (``wbcap eval`` asks before it builds the
    network). Raises DatasetLayoutError naming the first missing one."""
    ann_dir = Path(data_root).expanduser() / "Human36M" / "annotations"
    per_subject = {}
    for s in (_SPLITS[split][0] if subjects is None else subjects):
        names = {k: ann_dir / f"Human36M_subject{int(s)}_{k}.json" for k in ("data", "camera", "joint_3d", "SMPLX_NeuralAnnot")}
        for path in names.values():
            if not path.is_file():
                raise DatasetLayoutError.missing_parsed(path, LAYOUT, "Download Human3.6M parsed data and SMPL-X "
                                                        "parameters", "Human3.6M")
        per_subject[int(s)] = names
    return per_subject


class Human36M(AugmentedDataset):
    """Human3.6M whole-body samples.

    Args:
        data_root: folder holding ``Human36M/`` (see the module docstring for the layout).
        split: ``'train'`` or ``'test'``.
        body_layer: SMPL-X layer used to turn the NeuralAnnot fits into joint targets (kept if on
            the CPU, else copied there: targets are made on the CPU, in DataLoader workers).
        augment: augmentation ranges (used for ``train`` only); None disables augmentation.
        seed: augmentation seed (see :class:`~wbcap.train.data.common.AugmentedDataset`).
        subjects: override the protocol's subjects (e.g. a subset); the sampling rule stays.
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
        subjects: Sequence[int] | None = None,
        model: ModelConfig | None = None,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"Human36M split must be 'train' or 'test', got {split!r}")
        if body_layer is None:
            raise ValueError("Human36M needs body_layer (an SMPLXLayer) for its SMPL-X targets")
        super().__init__(augment, seed, model)
        self.split = split
        self.train = split == "train"
        self.body_layer = cpu_body_layer(body_layer)  # never the training model's (CUDA) layer
        self.root = Path(data_root).expanduser() / "Human36M"
        default_subjects, self.sampling_ratio = _SPLITS[split]
        self.subjects = tuple(int(s) for s in (default_subjects if subjects is None else subjects))
        self.records = self._load()
        self.say_dropped(self.root / "annotations")

    # ------------------------------------------------------------------------------------------
    def _load(self) -> list[dict[str, Any]]:
        per_subject = check_split_files(self.root.parent, self.split, self.subjects)
        records: list[dict[str, Any]] = []
        for s, names in per_subject.items():
            data = load_json(names["data"], LAYOUT)
            cameras = load_json(names["camera"], LAYOUT)
            joints = load_json(names["joint_3d"], LAYOUT)
            smplx = load_json(names["SMPLX_NeuralAnnot"], LAYOUT)
            with parsing(names.values(), LAYOUT):
                for ann, img in annotated_images(data):
                    frame = int(img["frame_idx"])
                    if frame % self.sampling_ratio != 0:
                        continue
                    cam_idx = str(img["cam_idx"])
                    if self.split == "test" and cam_idx != _TEST_CAMERA:
                        continue
                    a, sa, f = str(img["action_idx"]), str(img["subaction_idx"]), str(frame)
                    cam = cameras[cam_idx]
                    R = np.asarray(cam["R"], np.float32).reshape(3, 3)
                    t = np.asarray(cam["t"], np.float32).reshape(3)
                    focal = np.asarray(cam["f"], np.float32).reshape(2)
                    princpt = np.asarray(cam["c"], np.float32).reshape(2)
                    with parsing(names["joint_3d"], LAYOUT):  # (this file alone named)
                        joint_world = checked_array(joints[a][sa][f], (len(H36M_JOINT_NAMES), 3),
                                                    f"subject {s}'s joints of action {a}, subaction {sa}, frame {f}")
                    joint_cam = joint_world @ R.T + t[None]
                    joint_img = cam2pixel(joint_cam, focal, princpt)[:, :2]
                    bbox = self.person_box(ann["bbox"], img)
                    if bbox is None:
                        continue
                    smplx_param = smplx.get(a, {}).get(sa, {}).get(f)
                    records.append(
                        {
                            "img_path": self.root / "images" / img["file_name"],
                            "img_shape": (int(img["height"]), int(img["width"])),
                            "bbox": bbox,
                            "joint_img": joint_img,
                            "joint_cam": joint_cam,  # camera frame, mm
                            "smplx_param": smplx_param,
                            "cam_param": {"R": R, "t": t / 1000.0, "focal": focal, "princpt": princpt},
                            "subject": s,
                            "image_id": img["id"],
                            "frame_idx": frame,
                            "cam_idx": int(cam_idx),
                        }
                    )
        return records

    # ------------------------------------------------------------------------------------------
    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        img = read_image(rec["img_path"], LAYOUT)
        shape, cells = tuple(self.model.input_img_shape), tuple(self.model.output_hm_shape)
        patch, img2bb, _ = crop_and_augment(img, rec["bbox"], aug, shape)

        joint_cam = rec["joint_cam"]
        joint_cam = (joint_cam - joint_cam[H36M_ROOT_IDX, None]) / 1000.0
        joint_img = np.concatenate([rec["joint_img"], depth_to_hm(joint_cam[:, 2:], BODY_3D_SIZE, cells[0])], 1)
        joint_valid = np.ones((len(H36M_JOINT_NAMES), 1), np.float32)
        joint = process_db_coord(
            joint_img, joint_cam, joint_valid, aug, rec["img_shape"], H36M_FLIP_PAIRS, img2bb, H36M_JOINT_NAMES,
            input_shape=shape, hm_shape=cells,
        )

        if rec["smplx_param"] is not None:
            smplx = process_smplx_output(
                rec["smplx_param"], rec["cam_param"], aug, rec["img_shape"], img2bb, self.body_layer,
                input_shape=shape, hm_shape=cells,
            )
            for name in _INVALID_POSE:
                smplx["pose_valid"][J.ORIG_JOINT_NAMES.index(name)] = 0
            for name in _INVALID_JOINTS:
                smplx["joint_valid"][J.JOINT_NAMES.index(name)] = 0
            shape_valid = True
        else:
            smplx, shape_valid = empty_smplx_targets(), False
        return whole_body_sample(patch, joint, smplx, shape_valid, True, dummy_boxes())
