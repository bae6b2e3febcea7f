"""Camera calibration files: a calibrated camera's intrinsics and lens distortion for ``wbcap run
--calibration`` (:class:`~wbcap.camera.LensCalibration`).

Read as the tools that write them lay them out:

* **TOML**, Pose2Sim's and Anipose's (aniposelib's) ``Calib.toml``: a table per camera with
  ``name``, ``size = [W, H]``, ``matrix`` (3 x 3), ``distortions``, ``fisheye`` and the
  extrinsics ``rotation`` (a rotation vector) and ``translation``; other tables (``metadata``)
  are skipped. FreeMoCap's and Caliscope's (nested ``[cameras.N]``, a rotation matrix) too.
* **YAML / XML**, OpenCV's ``FileStorage`` (the ``calibration`` sample's ``camera_matrix``,
  ``distortion_coefficients``, ``image_width``, ``image_height``), ROS's ``camera_info``
  (``camera_matrix: {rows, cols, data}``, ``distortion_model``) and Kalibr's camera chain
  (``cam0:`` with ``intrinsics: [fu, fv, pu, pv]``, ``distortion_coeffs``, ``resolution``,
  ``distortion_model: radtan | equidistant``); OpenCV's dialect (XML, or YAML with its
  ``%YAML:1.0`` line or ``!!opencv-matrix`` tags) by OpenCV's own parser, other YAML by PyYAML's
  safe loader.
* **JSON**: the same keys, one camera or an object of them by name; a Gyroflow lens profile.
* **COLMAP's** reconstruction (:mod:`wbcap.io.colmap`): ``cameras.txt`` (any ``.txt``) or
  ``cameras.bin``, its pinhole, radial, OpenCV and fisheye models, a camera by id; with the
  ``images.txt`` or ``images.bin`` beside it (or given, or the folder given), a camera per
  registered image, by its name, with its pose in the reconstruction's world (no scale:
  :attr:`~wbcap.camera.CameraPose.metric` False).

Keys: the camera matrix ``matrix``, ``camera_matrix``, ``cameraMatrix``, ``K``, ``mtx``,
``intrinsic_matrix`` (3 x 3, 9 numbers, or ``{data: [...]}``), or Kalibr's ``intrinsics``; the
distortion ``distortions``, ``distortion_coefficients``, ``distortion_coeffs``, ``dist_coeffs``,
``distCoeffs``, ``dist``, ``D`` (OpenCV's order); the size ``size``, ``image_size``, ``imageSize``,
``resolution`` (``[W, H]``) or ``image_width`` and ``image_height``; the fisheye model by
``fisheye = true`` or ``distortion_model`` ``equidistant``/``fisheye``/``kannala_brandt``. The
values are OpenCV's: pixels with the top-left pixel's centre at ``(0, 0)``.

The camera's pose in the calibration's world (:class:`~wbcap.camera.CameraPose`, used by
``wbcap run --world``), where the file gives both: the rotation ``rotation``, ``R``, ``rvec``,
``rotation_vector`` or ``rotation_matrix`` (a rotation vector or a 3 x 3 matrix) and the
translation ``translation``, ``T``, ``tvec`` or ``translation_vector``, OpenCV's world-to-camera
``x_c = R x_w + t``; EasyMocap's from the ``extri.yml`` beside its ``intri.yml`` (``Rot_<name>``
or ``R_<name>``, ``T_<name>``); Kalibr's chain's from its ``T_cn_cnm1`` links, ``cam0``'s frame the
world (:func:`_kalibr_chain`). A ROS ``camera_info``'s ``R`` (its rectification) comes without a
translation and is no pose.

A file with several cameras (Pose2Sim's, Anipose's, Kalibr's) gives the one named (its table's
key or its ``name``), else the one named as the video's file (``cam01`` for ``cam01.mp4``), else
the command asks which.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from wbcap.camera import CameraPose, LensCalibration
from wbcap.errors import InputError, setting

log = logging.getLogger(__name__)

__all__ = ["CALIBRATION_SUFFIXES", "read_calibration"]

#: The file types read, by suffix (lower case).
CALIBRATION_SUFFIXES = (".toml", ".yml", ".yaml", ".xml", ".json", ".txt", ".bin")

#: A calibration file is a few kB; a larger file is not one (read whole into memory).
_MAX_BYTES = 16 * 1024 * 1024

_MATRIX_KEYS = ("matrix", "camera_matrix", "cameraMatrix", "K", "mtx", "intrinsic_matrix", "intrinsics")
_DISTORTION_KEYS = ("distortions", "distortion_coefficients", "distortion_coeffs", "dist_coeffs", "distCoeffs",
                    "dist", "D")
_SIZE_KEYS = ("size", "image_size", "imageSize", "resolution", "cameraResolution")
_ROTATION_KEYS = ("rotation", "R", "rvec", "rotation_vector", "rotation_matrix")
_TRANSLATION_KEYS = ("translation", "T", "tvec", "translation_vector")
_FISHEYE_MODELS = ("equidistant", "equi", "fisheye", "kannala_brandt", "kannala-brandt", "kb4")
_PINHOLE_MODELS = ("plumb_bob", "radtan", "radial-tangential", "rational_polynomial", "pinhole", "brown", "opencv",
                   "none", "opencv_standard")


def read_calibration(path: str | os.PathLike[str], camera: str | None = None,
                     source: str | os.PathLike[str] | None = None) -> LensCalibration:
    """The calibration of one camera in the file ``path`` (see the module docstring).

    Args:
        path: a ``.toml``, ``.yml``/``.yaml``, ``.xml``, ``.json`` calibration file, or COLMAP's
            ``cameras.txt``, ``images.txt`` (their ``.bin``) or reconstruction folder.
        camera: the camera's name where the file holds several (its table's key or ``name``).
        source: the video or images the calibration is for: with several cameras and no
            ``camera``, the one named as its file (stem, case ignored) is taken.

    Returns:
        A :class:`~wbcap.camera.LensCalibration` whose ``file`` is ``path`` made absolute.

    Raises:
        InputError: one line naming the file and the fix: missing, unreadable, another format,
            no camera in it, no camera of that name, several cameras and no choice, a camera
            without a size, values that are not a calibration's (a pose included).
    """
    from wbcap.io import colmap

    p = Path(path).expanduser()
    where = str(path)
    if colmap.is_model_path(p):
        cameras: dict[str, Mapping] = dict(colmap.read_model(p, where, _read_bytes))
    elif p.is_dir():
        inside = sorted(str(q.parent) for pattern in ("*/cameras.*", "*/*/cameras.*") for q in p.glob(pattern)
                        if colmap.is_model_path(q.parent))  # (sparse/ or the workspace: sparse/0 in it)
        raise InputError(f"{where}: a folder without COLMAP's cameras.txt or cameras.bin in it; give "
                         + (f"the reconstruction's own folder: {inside[0]}" + (f" (or another of {len(inside)})"
                                                                               if len(inside) > 1 else "")
                            if inside else "a calibration file, or the folder of a COLMAP reconstruction"))
    elif p.suffix.lower() not in CALIBRATION_SUFFIXES:
        raise InputError(f"{where}: not a calibration file wbcap reads ({', '.join(CALIBRATION_SUFFIXES)}: Pose2Sim's "
                         "or Anipose's Calib.toml, OpenCV's, ROS's or Kalibr's YAML, JSON, COLMAP's cameras.txt, "
                         "images.txt, their .bin or their folder); give one of those")
    else:
        doc = _parse(_read_text(p, where), p.suffix.lower(), where)
        try:
            cameras = _cameras(doc)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: {exc}") from None
    if not cameras:
        raise InputError(f"{where}: holds no camera calibration (a camera matrix: `matrix`, `camera_matrix` or `K`); "
                         "give the calibration file of the camera that took the pictures")
    name, entry = _choose(cameras, camera, source, where)
    label = f"{where} (camera {name!r})" if name and len(cameras) > 1 else where
    table = _folded(entry) or {}
    if entry.get("_easymocap"):
        label, table = _easymocap_pose(p, name, label, table)
    try:
        turns = table.get("rotation_count", 0)
        if turns not in (0, None):  # (Caliscope's: the frames were turned before calibrating)
            raise ValueError(f"rotation_count {turns!r}: calibrated on frames turned by quarter turns; calibrate on "
                             "frames as wbcap reads them (upright)")
        fisheye = _fisheye(table)
        return LensCalibration(image_size=_size(table), matrix=_matrix(table), distortion=_distortion(table),
                               fisheye=fisheye, name=name, file=os.path.abspath(p), pose=_pose(table))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{label}: {exc}; check the calibration") from None


def _read_text(p: Path, where: str) -> str:
    """The calibration file ``p``'s text (UTF-8), refused in one line where it is not one."""
    try:
        return _read_bytes(p, where).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text; save it as UTF-8 (or give the camera's calibration file)") from None


def _read_bytes(p: Path, where: str, limit: int = _MAX_BYTES) -> bytes:
    """The calibration file ``p``'s bytes, refused in one line where it is not one (missing, a
    folder, larger than ``limit`` bytes, unreadable)."""
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise IsADirectoryError(f"{where} is a folder")
        if size > limit:
            raise InputError(f"{where}: {size} bytes, more than wbcap reads as a calibration ({limit} bytes); give "
                             "the camera's calibration file")
        return p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: no such calibration file; check the path given to {setting('calibration')}") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot be read ({exc.strerror or exc}); check the path and its permissions") from None


def _easymocap_pose(intri: Path, name: str, label: str, table: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """EasyMocap's camera ``name`` with its pose from the ``extri.yml`` beside ``intri`` (its
    ``Rot_<name>``, else ``R_<name>``, and ``T_<name>``): ``(label, table)``, the label naming
    both files where the pose comes from the other; the table as it is without that file or
    camera in it."""
    extri = intri.with_name("extri.yml")
    if not extri.is_file():
        return label, table
    where = str(extri)
    doc = _parse(_read_text(extri, where), ".yml", where)
    if not isinstance(doc, Mapping):
        return label, table
    rotation = doc.get(f"Rot_{name}", doc.get(f"R_{name}"))
    translation = doc.get(f"T_{name}")
    if rotation is None or translation is None:
        log.info("%s: no pose of camera %r in it; %s gives its lens alone", where, name, intri)
        return label, table
    return f"{label} with {where}", {**table, "rotation": rotation, "translation": translation}


# --------------------------------------------------------------------------- parsing


def _parse(text: str, suffix: str, where: str) -> Any:
    """The file's document as Python values (dicts, lists, numbers, strings); refused in one line
    where it is not valid or nested too deeply."""
    try:
        return _parse_text(text, suffix, where)
    except RecursionError:  # (a break-it review's JSON nested 100000 deep)
        raise InputError(f"{where}: nested too deeply to be a calibration; give the camera's calibration file") from None


def _parse_text(text: str, suffix: str, where: str) -> Any:
    if suffix == ".toml":
        from wbcap.tomllib_compat import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{where}: not valid TOML ({exc}); fix the file or give its YAML or JSON form") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InputError(f"{where}: not valid JSON ({exc}); fix the file") from None
    return _read_yaml(text, suffix, where)


def _is_file_storage(text: str, suffix: str) -> bool:
    """Whether the text is in OpenCV's ``FileStorage`` dialect: XML, or YAML beginning with its
    ``%YAML:1.0`` line or holding its ``!!opencv-matrix`` tags (which a YAML library refuses)."""
    return suffix == ".xml" or text.lstrip().startswith("%YAML:") or "!!opencv-matrix" in text


def _read_yaml(text: str, suffix: str, where: str) -> Any:
    """A YAML file: OpenCV's own dialect through OpenCV (:func:`_read_file_storage`), any other
    (ROS's, Kalibr's, hand-written) through PyYAML's safe loader (plain data, no objects)."""
    if _is_file_storage(text, suffix):
        return _read_file_storage(text, suffix, where)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{where}: not valid YAML ({first[:160]}); fix the file or give its TOML or JSON form") from None


def _read_file_storage(text: str, suffix: str, where: str) -> Any:
    """A file in OpenCV's ``FileStorage`` dialect (XML, or YAML with ``%YAML:1.0``: how OpenCV
    writes its calibrations) through OpenCV's parser."""
    import cv2

    body = text
    if suffix != ".xml" and not body.lstrip().startswith("%YAML"):
        body = "%YAML:1.0\n" + (body if body.lstrip().startswith("---") else "---\n" + body)
    try:
        storage = cv2.FileStorage(body, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
        if not storage.isOpened():
            raise cv2.error("not opened")
        try:
            return _node_value(storage.root())
        finally:
            storage.release()
    except (cv2.error, SystemError) as exc:
        kind = "XML" if suffix == ".xml" else "YAML"
        cause = exc.__cause__ if isinstance(exc, SystemError) and exc.__cause__ is not None else exc
        lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
        message = lines[-1].strip() if lines else type(exc).__name__
        raise InputError(f"{where}: OpenCV cannot read it as {kind} ({message[:160]}); fix the file or give its "
                         "TOML or JSON form") from None


def _node_value(node: Any) -> Any:
    """An OpenCV ``FileNode`` as Python values (an ``opencv-matrix`` as nested lists)."""
    if node.isMap():
        keys = list(node.keys())
        if {"rows", "cols", "dt", "data"} <= set(keys):
            matrix = node.mat()
            if matrix is not None:
                return matrix.tolist()
        return {k: _node_value(node.getNode(k)) for k in keys}
    if node.isSeq():
        return [_node_value(node.at(i)) for i in range(node.size())]
    if node.isInt():
        return int(node.real())
    if node.isReal():
        return float(node.real())
    if node.isString():
        return node.string()
    return None


# --------------------------------------------------------------------------- cameras


def _folded(value: Any) -> dict[str, Any] | None:
    """A table's keys case-folded (OpenCV's tutorial app wrote ``Camera_Matrix`` and ``image_Width``
    before 3.0, ``camera_matrix`` since); None for what is not a table."""
    if not isinstance(value, Mapping):
        return None
    return {str(k).casefold(): v for k, v in value.items()}


def _is_camera(value: Any) -> bool:
    table = _folded(value)
    return table is not None and any(k.casefold() in table for k in _MATRIX_KEYS)


def _name_of(value: Mapping, default: str) -> str:
    table = _folded(value) or {}
    name = table.get("name", table.get("camera_name"))
    return str(name) if isinstance(name, (str, int)) and not isinstance(name, bool) and str(name) else default


def _gyroflow(doc: Mapping) -> dict[str, Any]:
    """A Gyroflow lens profile (``calib_dimension``, ``fisheye_params``; GoPro's and other
    cameras' published profiles) as a camera table."""
    params = doc.get("fisheye_params")
    dims = doc.get("calib_dimension")
    model = doc.get("distortion_model")
    if doc.get("digital_lens") not in (None, ""):
        raise ValueError(f"digital lens {doc.get('digital_lens')!r} (a camera's own stretch of the picture, such as "
                         "GoPro's SuperView): wbcap undoes only the optical lens; record without it")
    for key in ("input_horizontal_stretch", "input_vertical_stretch"):
        if doc.get(key) not in (None, 1, 1.0):
            raise ValueError(f"{key} {doc.get(key)!r}: a stretched picture; record without the stretch")
    if model not in (None, "opencv_fisheye", "opencv_standard"):
        raise ValueError(f"distortion model {model!r}: wbcap reads OpenCV's models (opencv_fisheye, opencv_standard)")
    if not isinstance(params, Mapping) or not isinstance(dims, Mapping):
        raise ValueError("a lens profile without fisheye_params and calib_dimension")
    name = " ".join(str(doc[k]) for k in ("camera_brand", "camera_model", "lens_model") if isinstance(doc.get(k), str))
    return {"name": str(doc.get("name") or name), "matrix": params.get("camera_matrix"),
            "distortions": params.get("distortion_coeffs"), "size": [dims.get("w"), dims.get("h")],
            "fisheye": model in (None, "opencv_fisheye")}


def _easymocap(doc: Mapping) -> dict[str, dict[str, Any]]:
    """EasyMocap's ``intri.yml`` (``names``, then ``K_<name>``, ``dist_<name>`` or ``D_<name>``,
    and where written ``W_<name>``, ``H_<name>``) as camera tables by name."""
    cameras = {}
    for name in doc["names"]:
        name = str(name)
        if f"K_{name}" not in doc:
            continue
        table: dict[str, Any] = {"name": name, "matrix": doc[f"K_{name}"]}
        dist = doc.get(f"dist_{name}", doc.get(f"D_{name}"))
        if dist is not None:
            table["distortions"] = dist
        if f"W_{name}" in doc and f"H_{name}" in doc:
            table["size"] = [doc[f"W_{name}"], doc[f"H_{name}"]]
        cameras[name] = {**table, "_easymocap": True}
    return cameras


def _cameras(doc: Any) -> dict[str, Mapping]:
    """The cameras of the document by name: the document itself where it is one camera (a
    Gyroflow lens profile too), EasyMocap's ``names`` and ``K_<name>``, else its tables that are
    cameras (their ``name``, else their key; inside a ``cameras`` table too, as Caliscope nests
    them)."""
    if not isinstance(doc, Mapping):
        return {}
    if "fisheye_params" in doc and "calib_dimension" in doc:
        table = _gyroflow(doc)
        return {table["name"]: table}
    if isinstance(doc.get("names"), list) and any(f"K_{n}" in doc for n in doc["names"]):
        return _easymocap(doc)
    if _is_camera(doc):
        return {_name_of(doc, ""): doc}
    tables = dict(doc)
    nested = doc.get("cameras")
    if isinstance(nested, Mapping):
        tables.update({str(k): v for k, v in nested.items()})
    cameras: dict[str, Mapping] = {}
    for key, value in tables.items():
        if _is_camera(value):
            name = _name_of(value, str(key))
            if name in cameras:
                raise ValueError(f"tables {cameras[name]['_key']!r} and {str(key)!r} both name a camera {name!r}; "
                                 "rename one")
            cameras[name] = {**value, "_key": str(key)}
    _kalibr_chain(cameras)
    return cameras


def _kalibr_chain(cameras: dict[str, dict[str, Any]]) -> None:
    """Kalibr's camera chain's poses put into its cameras' tables (``rotation`` a 3 x 3 matrix,
    ``translation``): ``cam0``'s frame is the world (identity), and each next camera ``camN``'s
    ``T_cn_cnm1`` (4 x 4, metres) takes points of ``cam(N-1)``'s frame into its own
    (``x_cn = T_cn_cnm1 x_cnm1``; Kalibr's ``camchain.yaml``), so ``T_cN_c0`` is their product. A
    chain without ``T_cn_cnm1`` past ``cam0`` gives no pose; a camera past a link missing gives
    none either.

    Raises:
        ValueError: a ``T_cn_cnm1`` that is not a 4 x 4 rigid transform (four rows of four
            numbers, the last ``0 0 0 1``, a rotation whose rows are orthonormal within 1e-3 and
            no mirror, a translation within 1e6 m), named by its camera.
    """
    import numpy as np

    chain: dict[int, dict[str, Any]] = {}
    for entry in cameras.values():
        key = str(entry.get("_key", ""))
        if re.fullmatch(r"cam\d+", key):
            if int(key[3:]) in chain:
                raise ValueError(f"tables {chain[int(key[3:])]['_key']!r} and {key!r} are both camera {int(key[3:])} "
                                 "of Kalibr's chain; rename one")
            chain[int(key[3:])] = entry
    links = {n: (_folded(e) or {}).get("t_cn_cnm1") for n, e in chain.items()}
    if not any(v is not None for v in links.values()):
        return
    if 0 not in chain:
        log.info("Kalibr's chain: no cam0, whose frame is its world; its cameras have no pose")
        return
    pose = np.eye(4)
    chain[0].update(rotation=np.eye(3).reshape(-1).tolist(), translation=[0.0, 0.0, 0.0])
    for n in range(1, max(chain) + 1):
        if n not in chain or links[n] is None:
            log.info("Kalibr's chain: no cam%d or no T_cn_cnm1 in it; the cameras after cam%d have no pose", n, n - 1)
            return
        value = links[n]
        rows = isinstance(value, list) and len(value) == 4 and all(isinstance(r, list) and len(r) == 4 for r in value)
        link = np.asarray(_numbers(value, f"cam{n}'s T_cn_cnm1"), np.float64)
        if not rows or link.size != 16 or not np.allclose(link[12:], (0.0, 0.0, 0.0, 1.0)):
            raise ValueError(f"cam{n}'s T_cn_cnm1 {value!r:.200}: a 4 x 4 rigid transform (four rows of four numbers, "
                             "the last 0 0 0 1)")
        link = link.reshape(4, 4)
        turn = link[:3, :3]
        if (np.abs(turn @ turn.T - np.eye(3)).max() > 1e-3 or np.linalg.det(turn) < 0
                or not np.abs(link[:3, 3]).max() <= 1e6):  # (metres: a lab, not a planet)
            raise ValueError(f"cam{n}'s T_cn_cnm1 {link.tolist()}: its rotation is not one (rows orthonormal within "
                             "1e-3, no mirror) or its translation not metres of a rig")
        u, _, vt = np.linalg.svd(turn)  # (the nearest rotation: a long chain's rounding adds up past the pose's check)
        link[:3, :3] = u @ vt
        pose = link @ pose
        chain[n].update(rotation=pose[:3, :3].reshape(-1).tolist(), translation=pose[:3, 3].tolist())


def _tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[^0-9a-z]+", text.casefold()) if t}


def _choose(cameras: dict[str, Mapping], camera: str | None, source: Any, where: str) -> tuple[str, Mapping]:
    """The camera named ``camera`` (its name or table key, else the one it names as a file's
    stem would: ``cam01`` for COLMAP's ``cam01.jpg``); the only one; else the one named as the
    ``source``'s file: its stem (case ignored) is the name, the key, or where the name is a path
    (COLMAP's image names) its file's stem or one of its folders (``cam_01.jpg``,
    ``cam_01/frame_0001.jpg`` for ``cam_01.mp4``); else a word of the name or key
    (``int_cam01_img`` for ``cam01.mp4``); when exactly one is."""
    names = ", ".join(cameras) if len(cameras) <= 12 else ", ".join(list(cameras)[:12]) + ", ..."
    keys = [str(e.get("_key", "")) for e in cameras.values() if str(e.get("_key", "")).startswith("image ")]
    also = f", or COLMAP's image id: {keys[0]}" + (", ..." if len(keys) > 1 else "") if keys else ""
    if camera is not None:
        for name, entry in cameras.items():
            if camera in (name, entry.get("_key")):
                return name, entry
        if list(cameras) == [""]:
            raise InputError(f"{where}: holds one camera, without a name; leave out {setting('calibration_camera')}")
        named = _named_as(cameras, camera)
        if named is not None:
            log.info("%s: camera %r, named by %s %s", where, named[0], setting("calibration_camera"), camera)
            return named
        raise InputError(f"{where}: no camera {camera!r} in it (its cameras: {names}{also}); give one of those to "
                         f"{setting('calibration_camera')}")
    if len(cameras) == 1:
        return next(iter(cameras.items()))
    if source is not None:
        named = _named_as(cameras, Path(str(source).rstrip("/\\")).stem)
        if named is not None:
            log.info("%s: camera %r, named as %s", where, named[0], Path(str(source)).name)
            return named
    raise InputError(f"{where}: holds {len(cameras)} cameras ({names}); say which took the pictures with "
                     f"{setting('calibration_camera')} NAME{also}")


def _named_as(cameras: dict[str, Mapping], stem: str) -> tuple[str, Mapping] | None:
    """The one camera a file stem ``stem`` names (:func:`_choose`'s rules, case ignored), or None."""
    stem = stem.casefold()
    for rule in (lambda n, k: stem in (n.casefold(), k.casefold()),
                 lambda n, k: stem in {part.casefold() for part in PurePosixPath(n).parts[:-1]}
                 | {PurePosixPath(n).stem.casefold()},
                 lambda n, k: bool(stem) and stem in _tokens(n) | (set() if k.startswith("image ") else _tokens(k))):
        # (a COLMAP image's key "image 1" is no word of a name: `--calibration-camera 1` took image 1, a review)
        named = [(n, e) for n, e in cameras.items() if rule(n, str(e.get("_key", "")))]
        if len(named) == 1:
            return named[0]
    return None


#: More numbers than any calibration value holds (a 3 x 3 matrix, 14 coefficients): a value past
#: it is refused as it is flattened (YAML's aliases make a 400-byte file of 10^8 numbers).
_MAX_NUMBERS = 64


def _numbers(value: Any, what: str) -> list[float]:
    """``value`` (a list, nested lists, or a ``{data: [...]}`` table) flattened to numbers."""
    if isinstance(value, Mapping) and "data" in value:
        value = value["data"]
    flat: list[Any] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            if len(stack) + len(v) + len(flat) > 4 * _MAX_NUMBERS:
                raise ValueError(f"{what}: more than {_MAX_NUMBERS} numbers")
            stack.extend(reversed(v))
        else:
            flat.append(v)
        if len(flat) > _MAX_NUMBERS:
            raise ValueError(f"{what}: more than {_MAX_NUMBERS} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise ValueError(f"{what} {value!r}: numbers")
    try:
        return [float(v) for v in flat]
    except OverflowError:  # (a JSON integer of 400 digits)
        raise ValueError(f"{what}: a number too large to be one") from None


def _get(table: Mapping, keys: tuple[str, ...]) -> Any:
    """The value of the first of ``keys`` in ``table`` (a :func:`_folded` one), case ignored."""
    return next((table[k.casefold()] for k in keys if k.casefold() in table), None)


def _matrix(table: Mapping) -> tuple:
    key = next(k.casefold() for k in _MATRIX_KEYS if k.casefold() in table)
    values = _numbers(table[key], "camera matrix")
    if key == "intrinsics" and len(values) == 4:  # (Kalibr's fu, fv, pu, pv)
        fx, fy, cx, cy = values
        values = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    if len(values) != 9:
        raise ValueError(f"camera matrix {table[key]!r}: 3 x 3 numbers")
    return tuple(tuple(values[3 * r:3 * r + 3]) for r in range(3))


def _distortion(table: Mapping) -> tuple[float, ...]:
    value = _get(table, _DISTORTION_KEYS)
    if value is None:
        return ()
    return tuple(_numbers(value, "distortion"))


def _size(table: Mapping) -> tuple[int, int] | None:
    """``(W, H)``, or None where the file gives none (:meth:`LensCalibration.fit` takes the
    frames'); a size that is not whole numbers is rounded (Pose2Sim's conversions write twice
    the principal point)."""
    value = _get(table, _SIZE_KEYS)
    if value is None and "image_width" in table and "image_height" in table:
        value = [table["image_width"], table["image_height"]]
    if value is None and "width" in table and "height" in table:
        value = [table["width"], table["height"]]
    if value is None:
        return None
    if isinstance(value, Mapping) and "w" in value and "h" in value:
        value = [value["w"], value["h"]]
    values = _numbers(value, "size")
    if len(values) != 2 or not all(math.isfinite(v) and v >= 1 for v in values):
        raise ValueError(f"size {value!r}: two numbers of pixels, [W, H]")
    if any(v != int(v) for v in values):
        log.debug("size %s: not whole numbers; rounded", value)
    return round(values[0]), round(values[1])


def _pose(table: Mapping) -> CameraPose | None:
    """The camera's pose where the table gives both a rotation and a translation, else None."""
    rotation, translation = _get(table, _ROTATION_KEYS), _get(table, _TRANSLATION_KEYS)
    if rotation is None or translation is None:
        return None
    return CameraPose.from_values(_numbers(rotation, "rotation"), _numbers(translation, "translation"),
                                  metric=table.get("_metric") is not False)


def _fisheye(table: Mapping) -> bool:
    flag = table.get("fisheye", table.get("fisheye_model"))
    if isinstance(flag, bool):
        return flag
    if isinstance(flag, (int, float)) and flag in (0, 1):  # (OpenCV's YAML writes a bool as 0/1)
        return bool(flag)
    if flag is not None:
        raise ValueError(f"fisheye {flag!r}: true or false (1 or 0)")
    camera_model = table.get("camera_model")
    if isinstance(camera_model, str) and camera_model.strip().casefold() not in ("pinhole", "opencv", "fisheye"):
        raise ValueError(f"camera model {camera_model!r}: wbcap reads OpenCV's pinhole and fisheye models (Kalibr's "
                         "pinhole with radtan or equidistant distortion); calibrate with one of those")
    model = table.get("distortion_model")
    if isinstance(model, str):
        m = model.strip().casefold()
        if m in _FISHEYE_MODELS:
            return True
        if m in _PINHOLE_MODELS:
            return False
        raise ValueError(f"distortion model {model!r}: wbcap reads OpenCV's pinhole model (plumb_bob, radtan, "
                         "rational_polynomial) and its fisheye model (equidistant); convert the calibration to one")
    return False
