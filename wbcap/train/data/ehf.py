"""EHF (SMPL-X ground-truth meshes), in upstream Hand4Whole's layout: an evaluation loader.

Layout (``data_root`` holds ``EHF/``)::

    <root>/EHF/data/EHF.json          COCO style: images (id, file_name NN_img.jpg, width, height),
        annotations (id, image_id, body_bbox, lefthand_bbox, righthand_bbox, face_bbox; xywh px)
    <root>/EHF/data/NN_img.jpg
    <root>/EHF/data/NN_align.ply      the ground-truth SMPL-X mesh (10475 vertices, metres, world)

Sample ``(inputs, targets, meta_info)`` (float32), no augmentation::

    inputs     img (3, 512, 384): the body crop (upstream box processing), RGB in [0, 1]
    targets    smplx_mesh_cam (V, 3): the GT mesh in metres, rotated into the EHF camera's axes
               (``R = Rodrigues(EHF_CAMERA_ROTVEC)``; translation not applied -- every EHF metric
               is root- or Procrustes-aligned; upstream applies the same R at evaluation time)
               {lhand,rhand,face}_bbox_center / _size (2,): part boxes in body heatmap cells
    meta_info  bbox (4,) processed body box (xywh image px), bb2img_trans (2, 3),
               {lhand,rhand,face}_bbox_valid (= 1)

Upstream scales the part boxes' x by the heatmap *height* ratio (8/384 instead of 6/384); here x
uses the width ratio like every other dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wbcap.body.model_files import NUM_VERTICES
from wbcap.config import ModelConfig
from wbcap.train.data.common import (
    Augmentation,
    AugmentedDataset,
    DatasetLayoutError,
    annotated_images,
    crop_and_augment,
    load_json,
    parsing,
    process_part_bbox,
    read_image,
    xywh_to_xyxy_or_none,
)

__all__ = ["EHF", "EHF_CAMERA_ROTVEC", "LAYOUT", "read_ply_vertices"]

LAYOUT = "<root>/EHF/data/EHF.json, <root>/EHF/data/NN_img.jpg, <root>/EHF/data/NN_align.ply"
EHF_CAMERA_ROTVEC: tuple[float, float, float] = (-2.98747896, 0.01172457, -0.05704687)
"""Rotation (axis-angle) of the EHF camera, as upstream's ``EHF.cam_param['R']``."""
_F32 = np.float32
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def read_ply_vertices(path: str | Path) -> np.ndarray:
    """The ``x, y, z`` of a PLY file's ``vertex`` element as ``(N, 3)`` float32 (ASCII or binary).

    Raises:
        DatasetLayoutError: missing file or a PLY this reader cannot parse (one line naming the
            file: a header cut short or with a count or type PLY does not have, a body with fewer
            vertices than the header says, an ASCII vertex that is not numbers).
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetLayoutError.missing(p, LAYOUT)
    data = p.read_bytes()
    if not data.startswith(b"ply"):
        raise DatasetLayoutError(f"{p}: not a PLY file; re-download the EHF meshes")
    end = data.find(b"end_header")
    if end < 0:
        raise DatasetLayoutError(f"{p}: PLY header without its end_header line (the file is cut short?); re-download it")
    newline = data.find(b"\n", end)
    body_start = len(data) if newline < 0 else newline + 1
    fmt, elements = None, []  # [(name, count, [(prop, type)]; type 'list' for a list property)]
    for line in data[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if not words or words[0] not in ("format", "element", "property"):
            continue
        if len(words) < {"format": 2, "element": 3}.get(words[0], 5 if words[1:2] == ["list"] else 3):
            raise DatasetLayoutError(f"{p}: PLY header line {line.strip()!r} is incomplete; re-download it")
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            if not (words[2].isascii() and words[2].isdigit()):
                raise DatasetLayoutError(f"{p}: PLY header's {words[1]} count {words[2]!r} is not a whole number; "
                                         "re-download it")
            elements.append((words[1], int(words[2]), []))
        elif elements:
            types = words[2:4] if words[1] == "list" else words[1:2]
            unknown = [t for t in types if t not in _PLY_TYPES]
            if unknown:
                raise DatasetLayoutError(f"{p}: PLY property type {unknown[0]} is not a PLY type (char, uchar, short, "
                                         "ushort, int, uint, float, double or int8 ... float64); re-download it")
            elements[-1][2].append(("list", words[-1]) if words[1] == "list" else (words[2], words[1]))
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise DatasetLayoutError(f"{p}: PLY without a vertex element; re-download it")
    vi = names.index("vertex")
    _, count, props = elements[vi]
    prop_names = [n for n, _ in props]
    try:
        cols = [prop_names.index(a) for a in ("x", "y", "z")]
    except ValueError:
        raise DatasetLayoutError(f"{p}: PLY vertices lack x, y, z; re-download it") from None
    short = DatasetLayoutError(f"{p}: PLY has fewer vertices than its header says; re-download it")
    if fmt == "ascii":
        lines = data[body_start:].decode("ascii", "replace").splitlines()
        skip = sum(e[1] for e in elements[:vi])
        rows = [ln.split() for ln in lines[skip : skip + count]]
        if len(rows) != count:
            raise short
        try:
            arr = np.asarray([[float(r[c]) for c in cols] for r in rows], np.float64).reshape(count, 3)
        except (ValueError, IndexError):
            i = next(i for i, r in enumerate(rows) if not _numbers(r, cols))
            raise DatasetLayoutError(f"{p}: PLY vertex {i}'s x, y, z are not numbers ({' '.join(rows[i])[:60]!r}); "
                                     "re-download it") from None
        return arr.astype(_F32)
    if fmt not in ("binary_little_endian", "binary_big_endian") or vi != 0 or any(t == "list" for t, _ in props):
        raise DatasetLayoutError(f"{p}: unsupported PLY layout (format {fmt}); convert it to ASCII PLY")
    if len(set(prop_names)) != len(prop_names):
        raise DatasetLayoutError(f"{p}: PLY vertex properties named twice ({', '.join(prop_names)}); re-download it")
    order = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(n, order + _PLY_TYPES[t]) for n, t in props])
    if len(data) - body_start < count * dtype.itemsize:
        raise short
    verts = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
    return np.stack([verts["x"], verts["y"], verts["z"]], 1).astype(_F32)


def _numbers(words: list[str], cols: list[int]) -> bool:
    try:
        [float(words[c]) for c in cols]
    except (ValueError, IndexError):
        return False
    return True


def check_split_files(data_root: str | Path) -> Path:
    """The annotation file of EHF under ``data_root`` (``EHF/data/EHF.json``), checked to exist
    (``wbcap eval`` asks before it builds the network). Raises DatasetLayoutError when it does not."""
    path = Path(data_root).expanduser() / "EHF" / "data" / "EHF.json"
    if not path.is_file():
        # (the release, unpacked: EHF/NN_img.jpg, NN_align.ply, NN_2Djnt.json; or those already in EHF/data/)
        # (also unpacked into a folder of its own, EHF/EHF/: a break-it trial)
        release = next((f for d in (path.parent.parent, path.parent, *sorted(path.parent.parent.glob("*/")))
                        if d.is_dir() for f in sorted(d.glob("*_align.ply"))[:1]), None)
        move = "" if release is None or release.parent == path.parent else \
            f" (its NN_img.jpg and NN_align.ply go in {path.parent}/, beside it)"
        raise DatasetLayoutError.missing_parsed(path, LAYOUT, "Download EHF parsed data", "EHF",
                                                None if release is None else release.parent, move)
    return path


class EHF(AugmentedDataset):
    """EHF evaluation samples (see the module docstring).

    Raises:
        DatasetLayoutError: ``EHF.json`` missing or unreadable (images and meshes are checked
            when read).
    """

    def __init__(self, data_root: str | Path, model: ModelConfig | None = None) -> None:
        super().__init__(None, 0, model)
        self.split = "test"
        ann_path = check_split_files(data_root)
        self.root = ann_path.parent
        R, _ = cv2.Rodrigues(np.asarray(EHF_CAMERA_ROTVEC, np.float64))
        self.camera_R = R.astype(_F32)
        db = load_json(ann_path, LAYOUT)
        with parsing(ann_path, LAYOUT):
            for ann, img in annotated_images(db):
                bbox = self.person_box(ann["body_bbox"], img)
                if bbox is None:
                    continue
                self.records.append(
                    {
                        "img_path": self.root / img["file_name"],
                        "img_shape": (int(img["height"]), int(img["width"])),
                        "bbox": bbox,
                        "lhand_bbox": xywh_to_xyxy_or_none(ann["lefthand_bbox"]),
                        "rhand_bbox": xywh_to_xyxy_or_none(ann["righthand_bbox"]),
                        "face_bbox": xywh_to_xyxy_or_none(ann["face_bbox"]),
                        "mesh_path": self.root / (img["file_name"].split("_")[0] + "_align.ply"),
                    }
                )
        self.say_dropped(ann_path)

    def get(self, idx: int, aug: Augmentation) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        rec = self.records[idx]
        img = read_image(rec["img_path"], LAYOUT)
        shape, cells = tuple(self.model.input_img_shape), tuple(self.model.output_hm_shape)
        patch, img2bb, bb2img = crop_and_augment(img, rec["bbox"], aug, shape)
        mesh = read_ply_vertices(rec["mesh_path"])
        if mesh.shape != (NUM_VERTICES, 3) or not np.isfinite(mesh).all():
            what = (f"{len(mesh)} vertices, not SMPL-X's {NUM_VERTICES}" if len(mesh) != NUM_VERTICES
                    else "a vertex with a NaN or infinite coordinate")
            raise DatasetLayoutError(f"{rec['mesh_path']}: {what} (EHF's ground truth is an SMPL-X mesh); re-download "
                                     "the EHF meshes")
        targets: dict[str, Any] = {"smplx_mesh_cam": (mesh @ self.camera_R.T).astype(_F32)}
        meta: dict[str, Any] = {"bbox": np.asarray(rec["bbox"], _F32), "bb2img_trans": bb2img.astype(_F32)}
        for part in ("lhand", "rhand", "face"):
            center, size, valid = process_part_bbox(rec[f"{part}_bbox"], aug, rec["img_shape"], img2bb,
                                                    input_shape=shape, hm_shape=cells)
            targets[f"{part}_bbox_center"] = center
            targets[f"{part}_bbox_size"] = size
            meta[f"{part}_bbox_valid"] = valid
        return {"img": patch}, targets, meta
