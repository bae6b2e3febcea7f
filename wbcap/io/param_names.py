"""The SMPL-X parameters as wbcap's files spell them.

Inside wbcap parameters are an :class:`~wbcap.body.params.SMPLXParams` under SMPL-X's own names.
The files keep the names of Hand4Whole's released code (``smplx_param.json`` of ``wbcap image``,
the raw records ``.wbcap/raw.jsonl`` of ``wbcap run``): axis-angle vectors in radians, each
flattened, under these keys (:data:`FILE_KEYS`, in the files' order)::

    root_pose   (3,)   global_orient
    body_pose   (63,)  body_pose
    lhand_pose  (45,)  left_hand_pose   relative to the model file's hand mean
    rhand_pose  (45,)  right_hand_pose  (flat_hand_mean=False)
    jaw_pose    (3,)   jaw_pose
    shape       (10,)  betas
    expr        (10,)  expression
    cam_trans   (3,)   transl           metres, the person's camera (OpenCV axes)
    leye_pose   (3,)   leye_pose        (smplx_param.json only: the network does not estimate
    reye_pose   (3,)   reye_pose         the eyes, the raw records leave them out)

This module is the one place that maps between the two spellings.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from wbcap.body.pose_layout import POSE_JOINTS
from wbcap.errors import InputError

if TYPE_CHECKING:  # (torch loads only to make or read parameters: `wbcap view` reads file keys, ~1.4 s less)
    import torch

    from wbcap.body.params import SMPLXParams

__all__ = ["FILE_KEYS", "NETWORK_FILE_KEYS", "NETWORK_FILE_SIZES", "BadParametersError", "MissingParametersError", "from_file_record",
           "to_file_record"]

#: SMPL-X field -> file key, in the order the files list them.
FILE_KEYS: Mapping[str, str] = MappingProxyType({
    "global_orient": "root_pose",
    "body_pose": "body_pose",
    "left_hand_pose": "lhand_pose",
    "right_hand_pose": "rhand_pose",
    "jaw_pose": "jaw_pose",
    "betas": "shape",
    "expression": "expr",
    "transl": "cam_trans",
    "leye_pose": "leye_pose",
    "reye_pose": "reye_pose",
})  # fmt: skip

#: The file keys of what the network estimates (:data:`FILE_KEYS` without the eyes): the
#: ``params`` of a raw record.
NETWORK_FILE_KEYS: tuple[str, ...] = tuple(v for k, v in FILE_KEYS.items() if k not in ("leye_pose", "reye_pose"))

#: How many numbers each of :data:`NETWORK_FILE_KEYS` holds in one record: 3 per joint of a
#: rotation (axis-angle), 3 for ``cam_trans``; None for ``shape`` and ``expr``, whose count is the
#: network's own (10 for Hand4Whole), the same in every record of a file.
NETWORK_FILE_SIZES: Mapping[str, int | None] = MappingProxyType({
    key: 3 * POSE_JOINTS[field] if field in POSE_JOINTS else 3 if field == "transl" else None
    for field, key in FILE_KEYS.items() if key in NETWORK_FILE_KEYS
})

_FIELD_OF = {v: k for k, v in FILE_KEYS.items()}


def to_file_record(params: SMPLXParams, row: int = 0, eyes: bool = True) -> dict[str, list[float]]:
    """Batch row ``row`` of ``params`` as ``{file key: flat list of floats}``, axis-angle, in the
    files' order; without ``eyes`` the ``leye_pose``/``reye_pose`` keys are left out. Values are
    the tensors' values exactly (float32 -> Python float)."""
    aa = params.to_axis_angle()
    out = {}
    for name, key in FILE_KEYS.items():
        if not eyes and key not in NETWORK_FILE_KEYS:
            continue
        out[key] = [float(x) for x in aa[name][row].detach().cpu().numpy().reshape(-1)]
    return out


class MissingParametersError(InputError, KeyError):
    """A record without the SMPL-X parameters of a wbcap file: an :class:`~wbcap.errors.InputError`
    (``except WbcapError`` around reading a file catches it: an API user's trial) and a KeyError,
    as before, whose text reads as a sentence (a KeyError's own shows its message in quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BadParametersError(InputError, ValueError):
    """A record whose SMPL-X parameters are not all finite numbers: an
    :class:`~wbcap.errors.InputError` and a ValueError (what it was before)."""


def from_file_record(record: Mapping[str, Any], dtype: torch.dtype | None = None) -> SMPLXParams:
    """The SMPL-X parameters of a file record (a ``smplx_param.json``, a raw record person's
    ``params``): file keys as in the module docstring, flat lists (one person: a batch of one) or
    ``(N, k)`` arrays (a batch of N). Other keys are ignored; missing eyes are at rest, missing
    ``cam_trans`` is zero. Returns an axis-angle :class:`SMPLXParams` in ``dtype`` (None:
    float32) on the CPU.
    Raises :class:`MissingParametersError` (an InputError and a KeyError) naming the missing keys,
    :class:`BadParametersError` (an InputError and a ValueError) naming a key whose values are not
    numbers or not all finite (NaN or infinity, as a diverged fit writes them: they would pose a
    mesh of NaN)."""
    import torch

    from wbcap.body.params import SMPLXParams

    dtype = torch.float32 if dtype is None else dtype
    missing = [k for k in NETWORK_FILE_KEYS[:-1] if k not in record]
    if missing:
        raise MissingParametersError(f"not SMPL-X parameters of a wbcap file: missing {', '.join(missing)}")
    values = {}
    for key, name in _FIELD_OF.items():
        if key in record and record[key] is not None:
            try:
                arr = np.asarray(record[key], dtype=np.float64)
            except (TypeError, ValueError):  # (a string, a dict, a ragged list: numpy's message named no key)
                raise BadParametersError(f"{key} is not a list of numbers: not SMPL-X parameters to pose") from None
            if not np.isfinite(arr).all():
                raise BadParametersError(f"{key} holds NaN or infinity: not SMPL-X parameters to pose")
            values[name] = torch.as_tensor(arr.reshape(1, -1) if arr.ndim == 1 else arr, dtype=dtype)
    try:
        return SMPLXParams(**values, rotation="axis_angle")
    except ValueError as exc:  # (a wrong count of numbers: a plain ValueError escaped `except WbcapError`, an API trial)
        raise BadParametersError(f"{exc}: not SMPL-X parameters of a wbcap file") from None
