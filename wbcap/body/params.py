"""One SMPL-X parameter type: :class:`SMPLXParams`.

A frozen record of batched torch tensors under SMPL-X's own names (those of ``smplx`` and of
:meth:`wbcap.body.smplx_layer.SMPLXLayer.forward`), read like smplx's ``ModelOutput``
(``p["betas"]``, ``keys()``, ``items()``, ``get()``) and accepted as it is by the SMPL-X layer
(``body(p)``).

Fields (B = batch size; J = joints of the field: 1 for ``global_orient``, ``jaw_pose``,
``leye_pose``, ``reye_pose``; 21 for ``body_pose``; 15 for each hand):

* ``betas (B, num_betas)``, ``expression (B, num_expression)``: shape and expression
  coefficients, unitless (10 each in wbcap).
* the seven rotation fields, parent-relative, in **one** format per instance, ``rotation``:
  ``"axis_angle"``: ``(B, 3 J)`` axis times angle in radians; ``"matrix"``: ``(B, J, 3, 3)``
  rotation matrices acting on column vectors (:mod:`wbcap.body.rotations`).
* ``transl (B, 3)``: metres, added to every vertex and joint. From the network it is
  Hand4Whole's camera translation (``cam_trans``): the body in the crop's (OpenCV) camera
  frame, x right, y down, z forward.

Hands are **relative to the model file's hand mean** (``flat_hand_mean=False``, Hand4Whole's
and smplx's default convention): the layer adds ``hands_mean`` to the hand poses *in axis-angle*
(``full_pose = pose + pose_mean`` before Rodrigues, as smplx does). So for ``"matrix"`` params
a hand matrix ``R`` stands for the absolute rotation ``rodrigues(axis_angle(R) + mean)``, not for
``R_mean @ R``; the layer converts the 30 finger rotations accordingly and passes the other 25
matrices straight to the skinning.

Field order follows smplx's forward signature; :meth:`SMPLXParams.full_pose` and the layer use
the model's joint order (global, 21 body, jaw, left eye, right eye, 15 left hand, 15 right hand).
The file spellings of these parameters (Hand4Whole's ``root_pose``, ``lhand_pose``, ``shape``,
``expr``, ``cam_trans``...) live in :mod:`wbcap.io.param_names` only.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from wbcap.body.pose_layout import FULL_POSE_JOINTS, POSE_JOINTS
from wbcap.body.rotations import axis_angle_to_matrix, float32_region, matrix_to_axis_angle

__all__ = ["FIELDS", "POSE_FIELDS", "POSE_JOINTS", "Rotation", "SMPLXParams"]

#: Rotation format of an :class:`SMPLXParams`.
Rotation = Literal["axis_angle", "matrix"]

POSE_FIELDS: tuple[str, ...] = tuple(POSE_JOINTS)

#: The tensor fields, in the record's (smplx's forward signature) order: what ``keys()`` lists.
FIELDS: tuple[str, ...] = (
    "betas",
    "global_orient",
    "body_pose",
    "left_hand_pose",
    "right_hand_pose",
    "jaw_pose",
    "expression",
    "leye_pose",
    "reye_pose",
    "transl",
)


@dataclass(frozen=True, kw_only=True, eq=False)
class SMPLXParams:
    """Batched SMPL-X parameters (module docstring: names, shapes, units, hand-mean convention).

    Construct with keywords; ``leye_pose``, ``reye_pose`` (eyes at rest) and ``transl`` (none)
    may be left out and are filled with zero rotations / zeros on ``global_orient``'s device and
    dtype. Rotations are normalised on construction: axis-angle ``(B, J, 3)`` becomes
    ``(B, 3 J)``; a single-joint matrix ``(B, 3, 3)`` becomes ``(B, 1, 3, 3)``. Shapes and the
    batch size are checked (ValueError).

    Read access as a mapping of the tensor fields (:data:`FIELDS`): ``p["betas"]``, ``keys()``,
    ``values()``, ``items()``, ``get()``, ``in``; ``dict(p)`` works. An int, slice, index list or
    tensor instead of a name selects batch rows (:meth:`index`). ``dataclasses.replace(p, ...)``
    changes fields (checked again).
    """

    betas: torch.Tensor
    global_orient: torch.Tensor
    body_pose: torch.Tensor
    left_hand_pose: torch.Tensor
    right_hand_pose: torch.Tensor
    jaw_pose: torch.Tensor
    expression: torch.Tensor
    leye_pose: torch.Tensor = None  # type: ignore[assignment]  # filled in __post_init__
    reye_pose: torch.Tensor = None  # type: ignore[assignment]
    transl: torch.Tensor = None  # type: ignore[assignment]
    rotation: Rotation = "axis_angle"

    def __post_init__(self) -> None:
        if self.rotation not in ("axis_angle", "matrix"):
            raise ValueError(f"rotation must be 'axis_angle' or 'matrix', got {self.rotation!r}")
        go = self.global_orient
        if not isinstance(go, torch.Tensor) or go.ndim < 2:
            raise ValueError(f"global_orient must be a batched tensor, got {_describe(go)}")
        batch = int(go.shape[0])
        set_ = object.__setattr__
        for name in ("leye_pose", "reye_pose"):
            if getattr(self, name) is None:
                if self.rotation == "matrix":
                    eye = torch.eye(3, dtype=go.dtype, device=go.device)
                    # (a copy per row, not a stride-0 view: an optimiser or add_ writes each row)
                    set_(self, name, eye.expand(batch, 1, 3, 3).clone())
                else:
                    set_(self, name, go.new_zeros(batch, 3))
        if self.transl is None:
            set_(self, "transl", go.new_zeros(batch, 3))
        for name, joints in POSE_JOINTS.items():
            set_(self, name, _pose(name, getattr(self, name), batch, joints, self.rotation))
        for name in ("betas", "expression", "transl"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] != batch:
                raise ValueError(f"{name} must have shape ({batch}, N), got {_describe(value)}")
        if self.transl.shape[1] != 3:
            raise ValueError(f"transl must have shape ({batch}, 3), got {tuple(self.transl.shape)}")

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], rotation: Rotation = "axis_angle") -> SMPLXParams:
        """From a mapping with SMPL-X names (smplx's forward keywords, e.g.
        :func:`wbcap.testing.synthetic_body.make_smplx_params`, or ``dict(p)``): torch tensors,
        numpy arrays or nested lists (``torch.as_tensor``; numpy float64 stays float64). Keys
        outside :data:`FIELDS` raise ValueError; missing eyes / ``transl`` are filled."""
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown SMPL-X parameter names {sorted(unknown)}; use {list(FIELDS)}")
        return cls(**{k: torch.as_tensor(v) for k, v in values.items() if v is not None}, rotation=rotation)

    # -- mapping-like read access (as smplx's ModelOutput) ----------------------------------------

    def __getitem__(self, key: str | int | slice | Sequence[int] | torch.Tensor) -> Any:
        """A field by name (``params["body_pose"]``, as smplx's output), else the batch rows
        :meth:`index` selects: an int keeps the batch dimension (``params[1].body_pose`` is
        ``(1, 63)``), unlike numpy's and torch's indexing, so the result is an SMPLXParams too."""
        if isinstance(key, str):
            if key not in FIELDS:
                raise KeyError(key)
            return getattr(self, key)
        return self.index(key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in FIELDS else default

    def __contains__(self, key: object) -> bool:
        return key in FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def keys(self) -> tuple[str, ...]:
        return FIELDS

    def values(self) -> list[torch.Tensor]:
        return [getattr(self, k) for k in FIELDS]

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(k, getattr(self, k)) for k in FIELDS]

    # -- properties -----------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return int(self.global_orient.shape[0])

    @property
    def device(self) -> torch.device:
        return self.global_orient.device

    @property
    def dtype(self) -> torch.dtype:
        return self.global_orient.dtype

    # -- batch rows -----------------------------------------------------------------------------

    def index(self, rows: int | slice | Sequence[int] | Sequence[bool] | np.ndarray | torch.Tensor) -> SMPLXParams:
        """The batch rows ``rows`` (an int keeps the batch dimension: a batch of one). An int is
        any integer (``np.int64``, a 0-d integer array or tensor too); IndexError, naming the
        batch size, for one outside it. A slice as Python's (a negative step too: ``params[::-1]``
        reverses the batch). A list, array or tensor of ints picks rows (in its
        order, repeats allowed); one of bools as long as the batch is a mask (its True rows; a
        mask of another length is an IndexError: a bool list was taken for the rows 1 and 0,
        a user trial). Anything else (a float, a bool alone) is a TypeError.
        """
        what = "rows must be an int, slice, or a list, array or tensor of ints or of bools (a mask)"
        if isinstance(rows, (torch.Tensor, np.ndarray)) and rows.ndim == 0:
            if rows.dtype in (torch.bool, np.bool_) or (rows.is_floating_point() if isinstance(rows, torch.Tensor)
                                                       else not np.issubdtype(rows.dtype, np.integer)):
                raise TypeError(f"{what}, got a 0-d {rows.dtype} {type(rows).__name__}")
            rows = int(rows.item())
        if isinstance(rows, (bool, np.bool_, float, np.floating, str, bytes)):
            raise TypeError(f"{what}, got {type(rows).__name__}")
        b = self.batch_size
        if isinstance(rows, (int, np.integer)):
            i = operator.index(rows)
            if not -b <= i < b:
                raise IndexError(f"row {i} is outside the batch of {b}")
            i %= b
            rows = slice(i, i + 1)
        elif isinstance(rows, slice):
            if rows.step is not None and operator.index(rows.step) < 0:  # (torch's slices step forward only)
                rows = torch.as_tensor(list(range(b)[rows]), dtype=torch.int64, device=self.device)
        else:
            if isinstance(rows, torch.Tensor):
                is_mask, is_int = rows.dtype == torch.bool, not rows.is_floating_point() and not rows.is_complex()
                rows = rows.to(self.device)
            else:
                try:
                    array = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows)
                except (TypeError, ValueError):
                    raise TypeError(f"{what}, got {type(rows).__name__}") from None
                flat = array.reshape(-1)
                ints = array.dtype == object and all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in flat)
                if array.dtype == object and flat.size and all(isinstance(v, (bool, np.bool_)) for v in flat):
                    array = array.astype(bool)  # (a mask kept as objects)
                elif ints or np.issubdtype(array.dtype, np.unsignedinteger):  # (ints kept as objects: taken before)
                    big = next((int(v) for v in flat if not -(2**62) < int(v) < 2**62), None)
                    if big is not None:  # (a uint64 beyond int64 wrapped round to a row; 2**70 overflowed)
                        raise IndexError(f"row {big} is outside the batch of {b}")
                    array = array.astype(np.int64)
                if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer) or array.size == 0):
                    raise TypeError(f"{what}, got an array of {array.dtype}")
                is_mask, is_int = array.dtype == np.bool_, True
                if array.ndim != 1 and array.size:
                    raise TypeError(f"{what}, got an array of shape {array.shape}")
                rows = torch.as_tensor(array.reshape(-1).astype(bool if is_mask else np.int64), device=self.device)
            if not is_int or rows.ndim != 1:
                raise TypeError(f"{what}, got a {rows.dtype} {'tensor' if rows.ndim == 1 else f'{rows.ndim}-d tensor'}")
            if is_mask and rows.numel() != b:
                raise IndexError(f"a mask of {rows.numel()} rows for a batch of {b}")
            if not is_mask and rows.numel() and not (-b <= int(rows.min()) and int(rows.max()) < b):
                bad = int(rows.min()) if int(rows.min()) < -b else int(rows.max())
                raise IndexError(f"row {bad} is outside the batch of {b}")
        return self._map(lambda t: t[rows])

    # -- conversions ----------------------------------------------------------------------------

    def _map(self, fn) -> SMPLXParams:
        return dataclasses.replace(self, **{k: fn(getattr(self, k)) for k in FIELDS})

    def to(self, *args: Any, **kwargs: Any) -> SMPLXParams:
        """Every tensor through ``Tensor.to(*args, **kwargs)`` (device and/or dtype)."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> SMPLXParams:
        return self._map(torch.Tensor.detach)

    def cpu(self) -> SMPLXParams:
        return self._map(torch.Tensor.cpu)

    def to_axis_angle(self) -> SMPLXParams:
        """The same parameters with axis-angle rotations (``self`` if they already are). Computed
        with :func:`~wbcap.body.rotations.matrix_to_axis_angle` (angles in ``[0, pi]``) in the
        tensors' dtype with autocast off."""
        if self.rotation == "axis_angle":
            return self
        b = self.batch_size
        with float32_region(self.global_orient):
            poses = {k: matrix_to_axis_angle(getattr(self, k)).reshape(b, 3 * POSE_JOINTS[k]) for k in POSE_FIELDS}
        return dataclasses.replace(self, **poses, rotation="axis_angle")

    def to_matrix(self) -> SMPLXParams:
        """The same parameters with rotation matrices (``self`` if they already are); Rodrigues'
        formula (:func:`~wbcap.body.rotations.axis_angle_to_matrix`) with autocast off."""
        if self.rotation == "matrix":
            return self
        b = self.batch_size
        with float32_region(self.global_orient):
            poses = {k: axis_angle_to_matrix(getattr(self, k).reshape(b, POSE_JOINTS[k], 3)) for k in POSE_FIELDS}
        return dataclasses.replace(self, **poses, rotation="matrix")

    def full_pose(self) -> torch.Tensor:
        """All 55 joint rotations in the model's order (global, 21 body, jaw, left eye, right
        eye, 15 left hand, 15 right hand): ``(B, 55, 3)`` axis-angle or ``(B, 55, 3, 3)``
        matrices, as given: the hands relative to the hand mean (smplx's ``full_pose`` output
        has the mean added: ``full_pose().reshape(B, 165) + layer.pose_mean`` in axis-angle)."""
        b = self.batch_size
        if self.rotation == "matrix":
            return torch.cat([getattr(self, k) for k in POSE_FIELDS], 1)
        return torch.cat([getattr(self, k) for k in POSE_FIELDS], 1).reshape(b, FULL_POSE_JOINTS, 3)

    def layer_kwargs(self) -> dict[str, torch.Tensor]:
        """The tensors as keyword arguments of an SMPL-X forward: ``body(**p.layer_kwargs())``
        for :class:`~wbcap.body.smplx_layer.SMPLXLayer` and ``smplx.SMPLX`` (axis-angle). Matrix
        params fit ``smplx.SMPLXLayer``'s shapes, but that class adds no hand mean (it treats
        hands as absolute); wbcap's layer takes matrix params as ``body(p)``."""
        return {k: getattr(self, k) for k in FIELDS}

    def numpy(self) -> dict[str, np.ndarray]:
        """The tensors as numpy arrays (detached, on the CPU, dtypes kept), by SMPL-X name: for
        the file edges (:mod:`wbcap.io.param_names` spells them as files do)."""
        return {k: getattr(self, k).detach().cpu().numpy() for k in FIELDS}


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    if type(value).__module__ == "numpy":  # (smplx's keywords take tensors; a mapping is converted: an API trial)
        return (f"a NumPy {type(value).__name__} (pass torch.as_tensor(...), or the fields as one mapping, "
                "SMPLXParams.from_mapping(...) or the layer's one argument, which converts them)")
    return type(value).__name__


def _pose(name: str, value: Any, batch: int, joints: int, rotation: Rotation) -> torch.Tensor:
    """A rotation field checked and in its normal shape: ``(B, 3 J)`` or ``(B, J, 3, 3)``."""
    if not isinstance(value, torch.Tensor) or value.ndim < 2 or value.shape[0] != batch:
        raise ValueError(f"{name} must be a tensor with batch size {batch}, got {_describe(value)}")
    per_row = math.prod(value.shape[1:])  # (a batch of 0 has no row 0 to look at)
    if rotation == "axis_angle":
        if per_row != 3 * joints or (value.ndim > 2 and value.shape[-1] != 3):
            raise ValueError(f"{name} (axis-angle) must have shape ({batch}, {3 * joints}), got {tuple(value.shape)}")
        shape: tuple[int, ...] = (batch, 3 * joints)
    else:
        if value.shape[-2:] != (3, 3) or per_row != 9 * joints:
            raise ValueError(f"{name} (matrices) must have shape ({batch}, {joints}, 3, 3), got {tuple(value.shape)}")
        shape = (batch, joints, 3, 3)
    # (a tensor of that shape is kept as it is: a leaf given stays the leaf, for an optimiser)
    return value if tuple(value.shape) == shape else value.reshape(shape)
