"""Per-person parameters (SMPL-X pose, shape, camera, box...) as a JSON file.

File layout: one JSON object with a ``"format"`` field naming this layout and its version
(:data:`FORMAT`), then the caller's keys in the caller's order. Arrays become nested lists of
numbers (shape kept by nesting), NumPy/torch scalars become numbers, tuples become lists. NaN
and infinity are refused (JSON has no spelling for them). Units and frames are whatever the
caller documents for each key (wbcap: axis-angle radians, metres, OpenCV camera frame).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.atomic import atomic_write_text
from wbcap.errors import JSON_ERRORS, InputError

#: Value of the ``"format"`` field: layout name and version. Version 2 names every box with its
#: convention (``bbox_xywh``, ``crop_bbox_xywh``, ``lhand_bbox_xyxy``, ...); version 1 files
#: (``bbox``, ``crop_bbox``, ``lhand_bbox``, ...) are still read, with the keys renamed.
FORMAT = "wbcap.params/2"

#: Version-1 box keys and their version-2 names (the values did not change).
_V1_RENAMES = {
    "bbox": "bbox_xywh",
    "crop_bbox": "crop_bbox_xywh",
    "lhand_bbox": "lhand_bbox_xyxy",
    "rhand_bbox": "rhand_bbox_xyxy",
    "face_bbox": "face_bbox_xyxy",
}


def to_jsonable(value: Any, key: str = "") -> Any:
    """Convert arrays, tensors and NumPy scalars inside ``value`` to plain JSON values.

    Raises:
        ValueError: a non-finite float, or a type JSON cannot hold (``key`` names where).
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer):
            return value.tolist()
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{key}: array of {value.dtype} cannot be written as JSON")
        if not np.isfinite(value).all():
            raise ValueError(f"{key}: contains NaN or infinity")
        return value.astype(np.float64).tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{key}: NaN or infinity cannot be written as JSON")
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"{key}: {type(value).__name__} cannot be written as JSON")


def write_params_json(path: str | os.PathLike[str], params: Mapping[str, Any]) -> None:
    """Write ``params`` as JSON (layout in the module docstring), atomically.

    Args:
        path: destination ``.json`` file (its folder must exist).
        params: string keys (not ``"format"``) to numbers, strings, lists, dicts, NumPy arrays
            or torch tensors.

    Raises:
        ValueError: a ``"format"`` key, a non-finite number or an unsupported type.
    """
    if "format" in params:
        raise ValueError('params may not contain a "format" key (it names the file layout)')
    doc = {"format": FORMAT, **to_jsonable(dict(params))}
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def read_params_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`write_params_json`.

    Returns:
        The parameters as plain JSON values (arrays as nested lists; wrap with ``np.asarray``),
        without the ``"format"`` field. A ``wbcap.params/1`` file comes back with its box keys
        under their version-2 names (``bbox`` -> ``bbox_xywh``, ``lhand_bbox`` ->
        ``lhand_bbox_xyxy``, ...).

    Raises:
        InputError: missing file, invalid JSON, or not a wbcap params file of a known version.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such params file; check the path") from None
    except JSON_ERRORS:
        raise InputError(f"{p}: not valid JSON; re-export the parameters") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("format"), str):
        raise InputError(f'{p}: no "format" field, not a wbcap params file; pass one wbcap wrote')
    name, _, version = doc["format"].partition("/")
    if name != FORMAT.split("/")[0] or version not in ("1", FORMAT.split("/")[1]):
        raise InputError(
            f"{p}: params format {doc['format']!r}, this wbcap reads {FORMAT!r} (and version 1); "
            "upgrade wbcap or re-export"
        )
    doc.pop("format")
    if version == "1":
        doc = {_V1_RENAMES.get(k, k): v for k, v in doc.items()}
    return doc
