"""COLMAP's sparse reconstruction read as calibration tables (:mod:`wbcap.io.calibration`).

COLMAP (Schönberger & Frahm, CVPR 2016; GLOMAP writes the same files) keeps a reconstruction in a
folder (``sparse/0``) as ``cameras``, ``images``, ``points3D`` (and since COLMAP 3.12 ``rigs``,
``frames``), each ``.txt`` or ``.bin`` (``colmap model_converter`` turns one into the other).
The layouts are those of COLMAP's ``src/colmap/scene/reconstruction_io_text.cc`` and
``reconstruction_io_binary.cc`` (and its ``scripts/python/read_write_model.py``):

* ``cameras.txt``: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]`` a line; ``cameras.bin``: a ``uint64``
  count, then per camera ``int32`` id, ``int32`` model id, ``uint64`` width and height and the
  model's ``float64`` parameters (little-endian).
* ``images.txt``: two lines per registered image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME``
  and its 2D points (possibly an empty line); ``images.bin``: a ``uint64`` count, then per image
  ``int32`` id, ``4 + 3 float64`` (the quaternion, the translation), ``int32`` camera id, its
  name ending in a NUL byte, a ``uint64`` count of 2D points and ``(float64 x, float64 y, int64
  point id)`` each.

The pose ``(QW, QX, QY, QZ)``, ``(TX, TY, TZ)`` is the image's ``cam_from_world``: a Hamilton
quaternion and a translation taking a world point into the camera's frame, ``x_c = R x_w + t``,
OpenCV's camera axes (``x`` right, ``y`` down, ``z`` forward) and convention: a
:class:`~wbcap.camera.CameraPose`. The world has the reconstruction's own scale and axes (no
length, no up): its poses are read with ``metric`` False.

The intrinsics are made OpenCV's: COLMAP measures the principal point from the top-left pixel's
corner (its centre at 0.5), OpenCV from its centre (0.5 less); each model's parameters are named
as OpenCV's (COLMAP's ``src/colmap/sensor/models.h``), its fisheye models OpenCV's equidistant one.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import InputError

__all__ = ["MODELS", "MODEL_FILES", "is_model_path", "read_model"]

#: COLMAP's camera models wbcap reads: their parameters after ``WIDTH HEIGHT``, as names of
#: OpenCV's (``f`` stands for both focal lengths), and whether the model is a fisheye.
MODELS: dict[str, tuple[tuple[str, ...], bool]] = {
    "SIMPLE_PINHOLE": (("f", "cx", "cy"), False),
    "PINHOLE": (("fx", "fy", "cx", "cy"), False),
    "SIMPLE_RADIAL": (("f", "cx", "cy", "k1"), False),
    "RADIAL": (("f", "cx", "cy", "k1", "k2"), False),
    "OPENCV": (("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"), False),
    "FULL_OPENCV": (("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), False),
    "SIMPLE_RADIAL_FISHEYE": (("f", "cx", "cy", "k1"), True),
    "RADIAL_FISHEYE": (("f", "cx", "cy", "k1", "k2"), True),
    "OPENCV_FISHEYE": (("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"), True),
}

#: COLMAP's model ids (``cameras.bin``) and their parameter counts, the models wbcap does not
#: read included (a binary file is walked through them).
_MODEL_IDS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}

#: The file names of a reconstruction's cameras and images.
MODEL_FILES = ("cameras", "images")

#: More registered images than a calibration of a few cameras holds (a binary count past it is damage).
_MAX_IMAGES = 100_000

#: The largest file read: a reconstruction's images keep their 2D points (24 bytes each in
#: ``images.bin``), a few MB for a few cameras, more for a reconstruction of many pictures.
_MAX_BYTES = 512 * 1024 * 1024


def is_model_path(path: Path) -> bool:
    """Whether ``path`` is read as COLMAP's: a ``.txt`` (any name: ``cameras.txt`` is the one COLMAP
    writes), ``cameras.bin`` or ``images.bin``, or a folder holding ``cameras.txt`` or ``.bin``."""
    if path.is_dir():
        return any((path / f"cameras{s}").is_file() for s in (".bin", ".txt"))
    return path.suffix.lower() == ".txt" or path.name.lower() in ("cameras.bin", "images.bin")


def read_model(path: Path, where: str, read: Any) -> dict[str, dict[str, Any]]:
    """The cameras of a COLMAP reconstruction as calibration tables (:mod:`wbcap.io.calibration`'s
    keys: ``name``, ``size``, ``matrix``, ``distortions``, ``fisheye``; with its images, also
    ``rotation`` (3 x 3), ``translation`` and ``_metric`` False: :attr:`wbcap.camera.CameraPose.metric`).

    Args:
        path: the reconstruction's folder or its ``images.txt`` or ``.bin`` (a camera per
            registered image, with its pose), or its ``cameras.txt`` or ``.bin`` (any ``.txt`` is
            taken for a cameras file: its cameras by id, intrinsics alone, as before images were
            read).
        where: the path as given, for messages.
        read: ``(path, where, limit) -> bytes`` (the caller's reader, which refuses what is no
            calibration file, or larger than ``limit`` bytes, in one line).

    Returns:
        From the folder or the images: one table per registered image, by its ``NAME``
        (``cam01.jpg``, ``cam01/frame_0001.jpg``), its camera's intrinsics and its pose, ``_key``
        ``"image <IMAGE_ID>"``; from a cameras file: one per camera, by its id.

    Raises:
        InputError: one line naming the file: a line or record that is not COLMAP's, text that is
            not UTF-8, a model wbcap does not read, an image of a camera not in the cameras file,
            images without their cameras file, a folder without its images.
    """
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        suffix = ".bin" if (path / "cameras.bin").is_file() else ".txt"
        images_path = folder / f"images{suffix}"
        if not images_path.is_file():
            raise InputError(f"{where}: COLMAP's cameras{suffix} without images{suffix} beside them (the cameras' "
                             f"poses); give the reconstruction's folder as COLMAP wrote it, or its cameras{suffix} "
                             "for the intrinsics alone")
    else:
        suffix = path.suffix.lower()
        if path.stem.lower() != "images" or suffix not in (".txt", ".bin"):
            return _cameras(read(path, where, _MAX_BYTES), suffix, where)
        images_path = path
    cameras_path = folder / f"cameras{suffix}"
    if not cameras_path.is_file():
        raise InputError(f"{where}: COLMAP's images without its cameras{suffix} beside them (their intrinsics); "
                         "give the reconstruction's folder as COLMAP wrote it")
    cameras_where = str(cameras_path)
    cameras = _cameras(read(cameras_path, cameras_where, _MAX_BYTES), suffix, cameras_where)
    images_where = where if images_path == path else str(images_path)
    by_id = {table["name"]: table for table in cameras.values()}
    tables: dict[str, dict[str, Any]] = {}
    for image_id, quaternion, translation, camera_id, name in _images(read(images_path, images_where, _MAX_BYTES),
                                                                    suffix, images_where):
        if camera_id not in by_id:
            raise InputError(f"{images_where}: image {name!r} is of camera {camera_id}, which {cameras_where} does not "
                             "hold; give the files of one reconstruction")
        if name in tables:
            raise InputError(f"{images_where}: two images named {name!r}; give the files of one reconstruction")
        tables[name] = {**by_id[camera_id], "name": name, "_key": f"image {image_id}",
                        "rotation": _rotation(quaternion, f"{images_where}: image {name!r}"),
                        "translation": list(translation), "_metric": False}
    if not tables:
        raise InputError(f"{images_where}: no registered image in it; give the reconstruction in which COLMAP "
                         "registered the cameras' pictures")
    return tables


def _rotation(quaternion: tuple[float, ...], what: str) -> list[list[float]]:
    """COLMAP's ``(QW, QX, QY, QZ)`` (Hamilton, unit within 1e-3) as a 3 x 3 rotation matrix."""
    from scipy.spatial.transform import Rotation

    q = np.asarray(quaternion, np.float64)
    if not np.isfinite(q).all() or abs(float(np.linalg.norm(q)) - 1.0) > 1e-3:
        raise InputError(f"{what}: quaternion {q.tolist()} is not a rotation's (unit length); give the files COLMAP "
                         "wrote")
    return Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix().tolist()


def _table(camera_id: str, model: str, size: tuple[float, float], params: list[float]) -> dict[str, Any]:
    """A camera's table from COLMAP's model and parameters (:data:`MODELS`), OpenCV's values."""
    names, fisheye = MODELS[model]
    p = dict(zip(names, params))
    fx, fy = p.get("fx", p.get("f")), p.get("fy", p.get("f"))
    coefficients = [p.get(k, 0.0) for k in (("k1", "k2", "k3", "k4") if fisheye else
                                             ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"))]
    if not fisheye and model != "FULL_OPENCV":
        coefficients = coefficients[:4]
    return {"name": camera_id, "size": list(size), "fisheye": fisheye,
            "matrix": [[fx, 0.0, p["cx"] - 0.5], [0.0, fy, p["cy"] - 0.5], [0.0, 0.0, 1.0]],
            "distortions": coefficients}


def _text(data: bytes, where: str) -> str:
    """A text file's UTF-8 text (COLMAP writes UTF-8), refused in one line where it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text; save it as UTF-8 (COLMAP writes it so)") from None


def _cameras(data: bytes, suffix: str, where: str) -> dict[str, dict[str, Any]]:
    """Camera tables by id from ``cameras.txt`` or ``cameras.bin``."""
    cameras = _cameras_bin(data, where) if suffix == ".bin" else _cameras_txt(_text(data, where), where)
    if not cameras:
        raise InputError(f"{where}: no camera in it (COLMAP's cameras: CAMERA_ID MODEL WIDTH HEIGHT PARAMS); give the "
                         "cameras file of a reconstruction")
    return cameras


def _unread(where: str, what: str, model: str) -> InputError:
    return InputError(f"{where}: {what} is a camera of model {model}, which wbcap does not read ({', '.join(MODELS)}); "
                      "calibrate with one of those")


def _cameras_txt(text: str, where: str) -> dict[str, dict[str, Any]]:
    cameras: dict[str, dict[str, Any]] = {}
    known = {name for name, _ in _MODEL_IDS.values()}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        model = words[1].upper() if len(words) > 1 else ""
        if model in known and model not in MODELS:
            raise _unread(where, f"line {number}", model)
        if model not in MODELS:
            raise InputError(f"{where}: line {number} is not a camera of COLMAP's cameras.txt of a model wbcap reads "
                             f"({', '.join(MODELS)}); give such a file, or a calibration in another format")
        names = MODELS[model][0]
        try:
            values = [float(v) for v in words[2:]]
        except ValueError:
            values = []
        if len(values) != 2 + len(names) or any(v != int(v) for v in values[:2]):
            raise InputError(f"{where}: line {number}: COLMAP's {model} takes WIDTH HEIGHT (whole numbers) "
                             f"{' '.join(names)}; fix the line")
        cameras[words[0]] = _table(words[0], model, (values[0], values[1]), values[2:])
    return cameras


class _Bytes:
    """A binary file read front to back; a read past its end is one line naming it."""

    def __init__(self, data: bytes, where: str, what: str) -> None:
        self.data, self.at, self.where, self.what = data, 0, where, what

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        if self.at + size > len(self.data):
            raise InputError(f"{self.where}: ends inside a record (not COLMAP's {self.what}, or cut short); give the "
                             "file as COLMAP wrote it")
        out = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += size
        return out

    def skip(self, size: int) -> None:
        if self.at + size > len(self.data):
            raise InputError(f"{self.where}: ends inside a record (not COLMAP's {self.what}, or cut short); give the "
                             "file as COLMAP wrote it")
        self.at += size

    def name(self) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise InputError(f"{self.where}: an image name without its end (not COLMAP's {self.what}); give the file "
                             "as COLMAP wrote it")
        raw, self.at = self.data[self.at:end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def count(self, limit: int) -> int:
        (n,) = self.take("Q")
        if n > limit:
            raise InputError(f"{self.where}: says it holds {n} records (not COLMAP's {self.what}); give the file as "
                             "COLMAP wrote it")
        return int(n)

    def end(self) -> None:
        if self.at != len(self.data):
            raise InputError(f"{self.where}: {len(self.data) - self.at} bytes after its last record (not COLMAP's "
                             f"{self.what}); give the file as COLMAP wrote it")


def _cameras_bin(data: bytes, where: str) -> dict[str, dict[str, Any]]:
    f = _Bytes(data, where, "cameras.bin")
    cameras: dict[str, dict[str, Any]] = {}
    for _ in range(f.count(_MAX_IMAGES)):
        camera_id, model_id, width, height = f.take("iiQQ")
        if model_id not in _MODEL_IDS:
            raise InputError(f"{where}: camera {camera_id} has model id {model_id}, not one of COLMAP's; give the file "
                             "as COLMAP wrote it")
        model, count = _MODEL_IDS[model_id]
        params = list(f.take("d" * count))
        if model not in MODELS:
            raise _unread(where, f"camera {camera_id}", model)
        cameras[str(camera_id)] = _table(str(camera_id), model, (width, height), params)
    f.end()
    return cameras


def _images(data: bytes, suffix: str, where: str) -> list[tuple[int, tuple[float, ...], tuple[float, ...], str, str]]:
    """``(image id, (qw, qx, qy, qz), (tx, ty, tz), camera id, name)`` of each registered image."""
    if suffix == ".bin":
        f = _Bytes(data, where, "images.bin")
        out = []
        for _ in range(f.count(_MAX_IMAGES)):
            values = f.take("i4d3di")
            name = f.name()
            f.skip(24 * f.count(len(data) // 24))  # (its 2D points: x, y, point id)
            out.append((values[0], values[1:5], values[5:8], str(values[8]), name))
        f.end()
        return out
    lines = _text(data, where).splitlines()
    out, number = [], 0
    while number < len(lines):
        line = lines[number].strip()
        number += 1
        if not line or line.startswith("#"):
            continue
        words = line.split(maxsplit=9)
        try:
            values = [float(v) for v in words[1:8]]
            image_id = int(words[0])
            camera = str(int(words[8]))
        except (ValueError, IndexError):
            values = []
        if len(words) != 10 or len(values) != 7:
            raise InputError(f"{where}: line {number} is not an image of COLMAP's images.txt (IMAGE_ID QW QX QY QZ TX TY "
                             "TZ CAMERA_ID NAME); give the file as COLMAP wrote it")
        out.append((image_id, tuple(values[:4]), tuple(values[4:]), camera, words[9]))
        if number < len(lines) and _points_line(lines[number]):
            number += 1  # (its 2D points' line, empty where it has none)
    return out


def _points_line(line: str) -> bool:
    """Whether ``line`` is an image's 2D points (``X Y POINT3D_ID`` triples, or empty), not the
    next image's line (a file that left the points' lines out)."""
    words = line.split()
    if len(words) % 3:
        return False
    try:
        for x, y, point in zip(words[::3], words[1::3], words[2::3], strict=True):
            float(x), float(y), int(point)
    except ValueError:
        return False
    return True
