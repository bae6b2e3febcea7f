"""Tiny dataset fixtures in each training/evaluation set's exact native on-disk layout.

No licensed data is needed: images are generated (:func:`wbcap.testing.images.person_image`),
annotation files carry the real key names and nesting, SMPL-X / SMPL / MANO parameters are
plausible (upright body facing the camera, arms lowered, small random joint rotations) and the
cameras are placed so that the annotated joints project inside the images. Every writer is
deterministic given ``seed`` and returns ``root`` (the folder to pass as ``data_root``).

Writers: :func:`write_human36m_fixture`, :func:`write_cocowb_fixture`,
:func:`write_freihand_fixture`, :func:`write_pw3d_fixture`, :func:`write_ehf_fixture`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wbcap.testing.images import person_image

__all__ = [
    "H36M_TEMPLATE_M",
    "smplx_fixture_param",
    "write_cocowb_fixture",
    "write_ehf_fixture",
    "write_freihand_fixture",
    "write_human36m_fixture",
    "write_ply",
    "write_pw3d_fixture",
]


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _write_image(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = person_image(width=width, height=height, seed=seed)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"cannot write {path}")


def _rotvec(matrix: np.ndarray) -> np.ndarray:
    r, _ = cv2.Rodrigues(np.asarray(matrix, np.float64))
    return r.reshape(3)


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _bbox_xywh(points: np.ndarray, margin: float = 0.1) -> list[float]:
    lo, hi = points.min(0), points.max(0)
    size = hi - lo
    lo = lo - margin * size
    size = size * (1 + 2 * margin)
    return [float(lo[0]), float(lo[1]), float(size[0]), float(size[1])]


def smplx_fixture_param(
    rng: np.random.Generator, root_pose: Sequence[float], trans: Sequence[float], hands: bool, face: bool
) -> dict[str, Any]:
    """A plausible NeuralAnnot-style SMPL-X parameter dict (lists of floats).

    Arms lowered from the T-pose (shoulders +-1.2 rad about z), small random rotations elsewhere,
    betas in [-1, 1]; with ``hands``/``face`` the hand poses / jaw and expression with their
    ``*_valid`` flags (COCO layout), without them only root_pose, body_pose, shape, trans.
    """
    body = rng.normal(0.0, 0.08, (21, 3))
    body[15] += (0.0, 0.0, -1.2)  # L_Shoulder (joint 16)
    body[16] += (0.0, 0.0, 1.2)  # R_Shoulder (joint 17)
    param: dict[str, Any] = {
        "root_pose": [float(v) for v in root_pose],
        "body_pose": body.reshape(-1).round(6).tolist(),
        "shape": rng.uniform(-1, 1, 10).round(6).tolist(),
        "trans": [float(v) for v in trans],
    }
    if hands:
        param["lhand_pose"] = rng.normal(0, 0.1, 45).round(6).tolist()
        param["rhand_pose"] = rng.normal(0, 0.1, 45).round(6).tolist()
        param["lhand_valid"] = True
        param["rhand_valid"] = True
    if face:
        param["jaw_pose"] = [float(abs(rng.normal(0, 0.1))), 0.0, 0.0]
        param["expr"] = rng.normal(0, 0.5, 10).round(6).tolist()
        param["face_valid"] = True
    return param


# ----------------------------------------------------------------------------------------------
# Human3.6M
# ----------------------------------------------------------------------------------------------
#: A standing person in H36M's 17-joint order, metres, world z up, facing -y (left is +x).
H36M_TEMPLATE_M = np.array(
    [
        [0.0, 0.0, 0.95],  # Pelvis
        [-0.12, 0.0, 0.93], [-0.12, 0.01, 0.50], [-0.12, 0.03, 0.08],  # R hip, knee, ankle
        [0.12, 0.0, 0.93], [0.12, 0.01, 0.50], [0.12, 0.03, 0.08],  # L hip, knee, ankle
        [0.0, 0.0, 1.18], [0.0, 0.0, 1.45], [0.0, -0.03, 1.58], [0.0, 0.0, 1.72],  # torso, neck, head, top
        [0.18, 0.0, 1.42], [0.22, 0.0, 1.15], [0.24, -0.05, 0.90],  # L shoulder, elbow, wrist
        [-0.18, 0.0, 1.42], [-0.22, 0.0, 1.15], [-0.24, -0.05, 0.90],  # R shoulder, elbow, wrist
    ]
)  # fmt: skip


def _h36m_camera(cam_idx: int, width: int, height: int) -> dict[str, Any]:
    """Camera ``cam_idx`` looking horizontally at the origin from 4.5 m (yaw by index)."""
    yaw = np.deg2rad({1: 20.0, 2: -35.0, 3: 160.0, 4: -10.0}.get(cam_idx, 15.0 * cam_idx))
    r0 = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # world z-up, camera looks +y
    rz = _rot_z(yaw)
    R = r0 @ rz.T
    centre = rz @ np.array([0.0, -4.5, 0.95])
    t = -R @ centre * 1000.0  # mm
    f = 0.65 * height * 4.5 / 1.8  # a 1.8 m person 4.5 m away fills ~65% of the height
    return {
        "R": R.round(8).tolist(),
        "t": t.round(4).tolist(),
        "f": [float(f), float(f * 1.002)],
        "c": [width / 2 + 1.5, height / 2 - 2.0],
    }


def write_human36m_fixture(
    root: str | Path,
    subjects: Sequence[int] = (1, 5, 6, 7, 8, 9, 11),
    frames: Sequence[int] = (0, 3, 5, 10, 64),
    cameras: Sequence[int] = (1, 4),
    action: int = 2,
    subaction: int = 1,
    image_size: tuple[int, int] = (192, 200),
    seed: int = 0,
) -> Path:
    """Write ``<root>/Human36M/{images,annotations}`` in upstream Hand4Whole's parsed layout.

    For every subject: ``Human36M_subject{S}_data.json`` (COCO style; one image and annotation
    per frame and camera, ``frame_idx`` as given, bbox from the projected joints),
    ``_camera.json`` (R, t in mm, f, c per camera), ``_joint_3d.json`` (17 world joints in mm per
    action/subaction/frame: :data:`H36M_TEMPLATE_M` plus noise, shifted per frame) and
    ``_SMPLX_NeuralAnnot.json`` (world-frame SMPL-X fit: root, body, shape, trans). Image ids
    and annotation ids are unique across subjects.

    Args:
        image_size: (width, height) of the generated JPEGs.
    """
    root = Path(root)
    base = root / "Human36M"
    rng = np.random.default_rng(seed)
    width, height = image_size
    next_id = 1
    for s in subjects:
        cams = {str(c): _h36m_camera(c, width, height) for c in cameras}
        images, annotations = [], []
        joints: dict[str, dict[str, dict[str, Any]]] = {str(action): {str(subaction): {}}}
        smplx: dict[str, dict[str, dict[str, Any]]] = {str(action): {str(subaction): {}}}
        for frame in frames:
            shift = np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), 0.0])
            yaw = rng.uniform(-0.3, 0.3)
            world = (H36M_TEMPLATE_M - H36M_TEMPLATE_M[0] * [1, 1, 0]) @ _rot_z(yaw).T + shift
            world = world + rng.normal(0, 0.01, world.shape)
            joints[str(action)][str(subaction)][str(frame)] = (world * 1000.0).round(3).tolist()
            root_rot = _rot_z(yaw) @ _rot_x(np.pi / 2)  # SMPL-X y-up/+z-facing -> world z-up/-y-facing
            # SMPL-X rotates about its rest pelvis J0 (about (0, -0.35, 0)): pelvis = J0 + trans
            trans = world[0] - np.array([0.0, -0.35, 0.0])
            smplx[str(action)][str(subaction)][str(frame)] = smplx_fixture_param(
                rng, _rotvec(root_rot), trans.round(6), hands=False, face=False
            )
            for c in cameras:
                cam = cams[str(c)]
                R, t = np.asarray(cam["R"]), np.asarray(cam["t"])
                cam_pts = (world * 1000.0) @ R.T + t
                px = cam_pts[:, :2] / cam_pts[:, 2:] * np.asarray(cam["f"]) + np.asarray(cam["c"])
                folder = f"s_{s:02d}_act_{action:02d}_subact_{subaction:02d}_ca_{c:02d}"
                file_name = f"{folder}/{folder}_{frame + 1:06d}.jpg"
                _write_image(base / "images" / file_name, width, height, seed=next_id)
                images.append(
                    {
                        "id": next_id, "file_name": file_name, "width": width, "height": height,
                        "subject": s, "action_name": "Discussion", "action_idx": action,
                        "subaction_idx": subaction, "cam_idx": c, "frame_idx": frame,
                    }
                )  # fmt: skip
                annotations.append(
                    {"id": next_id, "image_id": next_id, "keypoints_vis": [True] * 17, "bbox": _bbox_xywh(px, 0.15)}
                )
                next_id += 1
        ann_dir = base / "annotations"
        _write_json(ann_dir / f"Human36M_subject{s}_data.json", {"images": images, "annotations": annotations})
        _write_json(ann_dir / f"Human36M_subject{s}_camera.json", cams)
        _write_json(ann_dir / f"Human36M_subject{s}_joint_3d.json", joints)
        _write_json(ann_dir / f"Human36M_subject{s}_SMPLX_NeuralAnnot.json", smplx)
    return root


# ----------------------------------------------------------------------------------------------
# COCO-WholeBody
# ----------------------------------------------------------------------------------------------
# Body template in metres (x: image right = the person's left, y: down, origin at the pelvis).
_COCO_BODY_M = np.array(
    [
        [0.0, -0.62], [0.03, -0.65], [-0.03, -0.65], [0.07, -0.63], [-0.07, -0.63],  # nose, eyes, ears
        [0.18, -0.47], [-0.18, -0.47], [0.22, -0.20], [-0.22, -0.20], [0.24, 0.05], [-0.24, 0.05],
        [0.12, 0.02], [-0.12, 0.02], [0.12, 0.45], [-0.12, 0.45], [0.12, 0.87], [-0.12, 0.87],
    ]
)  # fmt: skip
_COCO_FOOT_M = np.array([[0.14, 0.93], [0.18, 0.92], [0.12, 0.90], [-0.14, 0.93], [-0.18, 0.92], [-0.12, 0.90]])


def _coco_hand_m(wrist: np.ndarray, side: float) -> np.ndarray:
    pts = [wrist]
    for f in range(5):  # thumb, index, middle, ring, pinky; fingers hang down
        for k in range(1, 5):
            pts.append(wrist + [side * (0.02 * (f - 2) + (0.015 if f == 0 else 0.0)), 0.015 + 0.017 * k])
    return np.asarray(pts)


def _coco_face_m(nose: np.ndarray) -> np.ndarray:
    t = np.linspace(np.pi, 0.0, 17)  # contour from the person's right (image left) to the left
    contour = nose + np.stack([0.075 * np.cos(t), 0.02 + 0.07 * np.sin(t)], 1) - [0.0, 0.035]
    gx, gy = np.meshgrid(np.linspace(-0.05, 0.05, 9), np.linspace(-0.05, 0.06, 6))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)[:51]
    return np.concatenate([contour, nose + grid])


def _coco_annotation(
    ann_id: int, image_id: int, centre_px: np.ndarray, px_per_m: float, rng: np.random.Generator,
    rhand: bool = True, missing_body: Sequence[int] = (), iscrowd: int = 0, empty: bool = False,
) -> dict[str, Any]:  # fmt: skip
    def px(points_m: np.ndarray) -> np.ndarray:
        return centre_px + points_m * px_per_m + rng.normal(0, 0.5, points_m.shape)

    body = px(_COCO_BODY_M)
    foot = px(_COCO_FOOT_M)
    lhand = px(_coco_hand_m(_COCO_BODY_M[9], 1.0))
    rhand_pts = px(_coco_hand_m(_COCO_BODY_M[10], -1.0))
    face = px(_coco_face_m(_COCO_BODY_M[0]))

    def flat(points: np.ndarray, score: float, valid: np.ndarray | None = None) -> list[float]:
        v = np.full(len(points), score) if valid is None else np.where(valid, score, 0.0)
        out = np.concatenate([points, v[:, None]], 1)
        out[v == 0, :2] = 0.0
        return out.round(3).reshape(-1).tolist()

    body_valid = np.ones(17, bool)
    body_valid[list(missing_body)] = False
    if empty:
        body_valid[:] = False
    everything = np.concatenate([body[body_valid], foot, lhand, face] + ([rhand_pts] if rhand else []))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": iscrowd,
        "area": float(np.prod(np.ptp(everything, 0))),
        "segmentation": [],
        "num_keypoints": int(body_valid.sum()),
        "bbox": _bbox_xywh(everything, 0.08),
        "keypoints": flat(body, 2.0, body_valid),
        "foot_kpts": flat(foot, 2.0),
        "foot_valid": True,
        "lefthand_kpts": flat(lhand, 1.0),
        "lefthand_box": _bbox_xywh(lhand, 0.1),
        "lefthand_valid": True,
        "righthand_kpts": flat(rhand_pts, 1.0) if rhand else [0.0] * 63,
        "righthand_box": _bbox_xywh(rhand_pts, 0.1) if rhand else [0.0, 0.0, 0.0, 0.0],
        "righthand_valid": bool(rhand),
        "face_kpts": flat(face, 1.0),
        "face_box": _bbox_xywh(face, 0.1),
        "face_valid": True,
    }


def write_cocowb_fixture(root: str | Path, image_size: tuple[int, int] = (320, 400), seed: int = 0) -> Path:
    """Write ``<root>/MSCOCO/{images/{train2017,val2017},annotations}`` (COCO-WholeBody v1.0 layout).

    ``train2017``: image 101 with annotation 1001 (complete, SMPL-X fit, right ear unlabelled) and
    1002 (a crowd: skipped by the loader), image 102 with 1003 (right hand not annotated, no
    SMPL-X fit) and 1004 (no body keypoint: skipped). ``val2017``: image 201 with 2001.
    ``MSCOCO_train_SMPLX_all_NeuralAnnot.json`` holds the fit of 1001 (camera-frame parameters
    with ``focal``/``princpt``), of 1002 and of 9999 (an id with no annotation).
    """
    root = Path(root)
    base = root / "MSCOCO"
    rng = np.random.default_rng(seed)
    width, height = image_size
    px_per_m, depth = 140.0, 5.0
    focal = px_per_m * depth
    princpt = [width / 2.0, height / 2.0]

    def image(img_id: int, folder: str) -> dict[str, Any]:
        name = f"{img_id:012d}.jpg"
        _write_image(base / "images" / folder / name, width, height, seed=img_id)
        return {"id": img_id, "file_name": name, "width": width, "height": height, "license": 1}

    centre = np.array([width * 0.5, height * 0.47])
    train_anns = [
        _coco_annotation(1001, 101, centre, px_per_m, rng, missing_body=(4,)),
        _coco_annotation(1002, 101, centre + [30, 10], px_per_m * 0.5, rng, iscrowd=1),
        _coco_annotation(1003, 102, centre + [-12, 6], px_per_m * 0.9, rng, rhand=False),
        _coco_annotation(1004, 102, centre, px_per_m, rng, empty=True),
    ]
    train = {
        "info": {"description": "COCO-WholeBody fixture"},
        "licenses": [],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
        "images": [image(101, "train2017"), image(102, "train2017")],
        "annotations": train_anns,
    }
    val = dict(train, images=[image(201, "val2017")], annotations=[_coco_annotation(2001, 201, centre, px_per_m, rng)])

    def fit(centre_px: np.ndarray) -> dict[str, Any]:
        pelvis = np.array(
            [(centre_px[0] - princpt[0]) / focal * depth, (centre_px[1] - princpt[1]) / focal * depth, depth]
        )
        trans = pelvis - np.array([0.0, -0.35, 0.0])  # SMPL-X rest pelvis J0 ~ (0, -0.35, 0)
        # root (pi, 0, 0): upright in OpenCV camera axes, facing the camera
        return {
            "smplx_param": smplx_fixture_param(rng, [np.pi, 0.0, 0.0], trans.round(6), hands=True, face=True),
            "cam_param": {"focal": [focal, focal], "princpt": princpt},
        }

    smplx = {"1001": fit(centre), "1002": fit(centre + [30, 10]), "9999": fit(centre)}
    _write_json(base / "annotations" / "coco_wholebody_train_v1.0.json", train)
    _write_json(base / "annotations" / "coco_wholebody_val_v1.0.json", val)
    _write_json(base / "annotations" / "MSCOCO_train_SMPLX_all_NeuralAnnot.json", smplx)
    return root


# ----------------------------------------------------------------------------------------------
# FreiHAND (upstream Pose2Pose / I2L-MeshNet parsed layout)
# ----------------------------------------------------------------------------------------------
def _freihand_joints(rng: np.random.Generator) -> np.ndarray:
    """21 right-hand joints (wrist, thumb 1-4, index, middle, ring, pinky), metres, camera frame."""
    wrist = np.array([rng.uniform(-0.02, 0.02), 0.05 + rng.uniform(-0.01, 0.01), 0.6 + rng.uniform(-0.05, 0.05)])
    pts = [wrist]
    for f, x0 in enumerate((-0.03, -0.02, 0.0, 0.02, 0.035)):
        for k in range(1, 5):
            if f == 0:
                off = [x0 - 0.012 * k, -0.01 - 0.015 * k, -0.005 * k]
            else:
                off = [x0 + 0.002 * k * np.sign(x0), -(0.03 + 0.022 * k) * (0.85 if f == 4 else 1.0), -0.003 * k]
            pts.append(wrist + off)
    return np.asarray(pts) + rng.normal(0, 0.001, (21, 3))


def write_freihand_fixture(
    root: str | Path, num_train: int = 3, num_eval: int = 2, image_size: int = 224, seed: int = 0
) -> Path:
    """Write ``<root>/FreiHAND/data/`` (+ ``rootnet_output/``) in the upstream Pose2Pose layout.

    ``freihand_{train,eval}_coco.json``: COCO-style images (``file_name``
    ``{training,evaluation}/rgb/%08d.jpg``, ``db_idx``) and annotations (``bbox``);
    ``freihand_train_data.json``: ``{db_idx: {cam_param: {focal, princpt}, mano_param: {pose (48),
    shape (10), trans (3)}, joint_3d (21x3 m)}}``; ``freihand_eval_data.json``:
    ``{db_idx: {cam_param}}``; ``rootnet_output/bbox_root_freihand_output.json``:
    ``[{image_id, bbox (square, extended), root_cam}]``.
    """
    root = Path(root)
    base = root / "FreiHAND" / "data"
    rng = np.random.default_rng(seed)
    size = image_size
    focal = [480.0 + rng.uniform(-20, 20), 480.0 + rng.uniform(-20, 20)]
    for split, count, folder in (("train", num_train, "training"), ("eval", num_eval, "evaluation")):
        images, annotations, data, rootnet = [], [], {}, []
        for i in range(count):
            img_id = 1000 * (split == "eval") + i
            file_name = f"{folder}/rgb/{i:08d}.jpg"
            _write_image(base / file_name, size, size, seed=7 + img_id)
            cam = {"focal": [float(v) for v in focal], "princpt": [size / 2.0 + 0.5, size / 2.0 - 0.5]}
            joints = _freihand_joints(rng)
            px = joints[:, :2] / joints[:, 2:] * focal + cam["princpt"]
            box = _bbox_xywh(px, 0.1)
            images.append({"id": img_id, "file_name": file_name, "width": size, "height": size, "db_idx": i})
            annotations.append({"id": img_id, "image_id": img_id, "bbox": box, "category_id": 1, "iscrowd": 0})
            if split == "train":
                data[str(i)] = {
                    "cam_param": cam,
                    "mano_param": {
                        "pose": np.concatenate([[np.pi / 2, 0.0, 0.0], rng.normal(0, 0.15, 45)]).round(6).tolist(),
                        "shape": rng.uniform(-1, 1, 10).round(6).tolist(),
                        "trans": (joints[0] - [0.09, 0.005, 0.006]).round(6).tolist(),
                    },
                    "joint_3d": joints.round(6).tolist(),
                }
            else:
                data[str(i)] = {"cam_param": cam}
                side = max(box[2], box[3]) * 1.25
                cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
                rootnet.append(
                    {
                        "image_id": img_id,
                        "bbox": [cx - side / 2, cy - side / 2, side, side],
                        "root_cam": joints[0].round(6).tolist(),
                    }
                )
        _write_json(
            base / f"freihand_{split}_coco.json",
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "hand"}]},
        )
        _write_json(base / f"freihand_{split}_data.json", data)
        if split == "eval":
            _write_json(root / "FreiHAND" / "rootnet_output" / "bbox_root_freihand_output.json", rootnet)
    return root


# ----------------------------------------------------------------------------------------------
# 3DPW (upstream Hand4Whole parsed layout)
# ----------------------------------------------------------------------------------------------
def write_pw3d_fixture(
    root: str | Path,
    splits: Sequence[str] = ("train", "validation", "test"),
    num_frames: int = 2,
    image_size: tuple[int, int] = (240, 320),
    seed: int = 0,
) -> Path:
    """Write ``<root>/PW3D/data/3DPW_{split}.json`` + ``imageFiles/<sequence>/image_%05d.jpg``.

    COCO-style: images (``file_name``, ``sequence``, ``width``, ``height``, ``cam_param``
    ``{focal, princpt}``), annotations (``bbox``, ``smpl_param`` ``{pose (72), shape (10),
    trans (3, m, camera frame), gender}``).
    """
    root = Path(root)
    base = root / "PW3D" / "data"
    rng = np.random.default_rng(seed)
    width, height = image_size
    focal, depth = 0.65 * height * 4.0 / 1.7, 4.0
    for s_i, split in enumerate(splits):
        sequence = f"{('downtown_walking', 'courtyard_basketball', 'outdoors_fencing')[s_i % 3]}_00"
        images, annotations = [], []
        for i in range(num_frames):
            img_id = 100 * s_i + i
            file_name = f"image_{i:05d}.jpg"
            _write_image(base / "imageFiles" / sequence / file_name, width, height, seed=31 + img_id)
            cam = {"focal": [focal, focal], "princpt": [width / 2.0, height / 2.0]}
            pose = rng.normal(0, 0.08, 72)
            pose[:3] = _rotvec(_rot_x(np.pi))
            pelvis = np.array([rng.uniform(-0.2, 0.2), 0.1, depth])
            centre = pelvis[:2] / depth * focal + cam["princpt"]
            half = np.array([0.45, 0.95]) * focal / depth
            images.append(
                {
                    "id": img_id,
                    "file_name": file_name,
                    "sequence": sequence,
                    "width": width,
                    "height": height,
                    "cam_param": cam,
                }
            )
            annotations.append(
                {
                    "id": img_id,
                    "image_id": img_id,
                    "bbox": [
                        float(centre[0] - half[0]),
                        float(centre[1] - half[1]),
                        float(2 * half[0]),
                        float(2 * half[1]),
                    ],
                    "smpl_param": {
                        "pose": pose.round(6).tolist(),
                        "shape": rng.uniform(-1, 1, 10).round(6).tolist(),
                        "trans": (pelvis - [0.0, -0.22, 0.0]).round(6).tolist(),
                        "gender": ("male", "female")[i % 2],
                    },
                }
            )
        _write_json(base / f"3DPW_{split}.json", {"images": images, "annotations": annotations})
    return root


# ----------------------------------------------------------------------------------------------
# EHF
# ----------------------------------------------------------------------------------------------
def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray | None = None) -> None:
    """An ASCII PLY mesh (float x, y, z; optional uchar-count int face lists), as EHF ships."""
    v = np.asarray(vertices, np.float64)
    f = np.zeros((0, 3), np.int64) if faces is None else np.asarray(faces, np.int64)
    lines = ["ply", "format ascii 1.0", "comment wbcap fixture", f"element vertex {len(v)}",
             "property float x", "property float y", "property float z", f"element face {len(f)}",
             "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    lines += [f"{a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    lines += [f"{len(t)} " + " ".join(str(int(i)) for i in t) for t in f]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def write_ehf_fixture(
    root: str | Path,
    num_frames: int = 2,
    image_size: tuple[int, int] = (240, 180),
    num_vertices: int = 10475,
    seed: int = 0,
) -> Path:
    """Write ``<root>/EHF/data/`` : ``EHF.json``, ``NN_img.jpg`` and ``NN_align.ply`` (NN = 01, 02...).

    ``EHF.json`` is COCO-style: images (``file_name`` ``NN_img.jpg``), annotations (``body_bbox``,
    ``lefthand_bbox``, ``righthand_bbox``, ``face_bbox``, all xywh pixels). The meshes are
    ``num_vertices`` deterministic points in a body-sized box (metres, world frame).
    """
    root = Path(root)
    base = root / "EHF" / "data"
    rng = np.random.default_rng(seed)
    width, height = image_size
    images, annotations = [], []
    for i in range(1, num_frames + 1):
        file_name = f"{i:02d}_img.jpg"
        _write_image(base / file_name, width, height, seed=50 + i)
        cx, top, h = width / 2 + rng.uniform(-5, 5), height * 0.1, height * 0.8
        w = h * 0.45
        unit = h / 8
        images.append({"id": i, "file_name": file_name, "width": width, "height": height})
        annotations.append(
            {
                "id": i,
                "image_id": i,
                "body_bbox": [cx - w / 2, top, w, h],
                "lefthand_bbox": [cx + 1.4 * unit, top + 3.8 * unit, 0.6 * unit, 0.7 * unit],
                "righthand_bbox": [cx - 2.0 * unit, top + 3.8 * unit, 0.6 * unit, 0.7 * unit],
                "face_bbox": [cx - 0.45 * unit, top, 0.9 * unit, 1.05 * unit],
            }
        )
        verts = rng.uniform([-0.3, -1.2, -0.15], [0.3, 0.5, 0.15], (num_vertices, 3))
        write_ply(base / f"{i:02d}_align.ply", verts, faces=np.array([[0, 1, 2], [2, 3, 0]]))
    _write_json(base / "EHF.json", {"images": images, "annotations": annotations})
    return root
