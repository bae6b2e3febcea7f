"""A minimal SMPL layer for 3DPW's ground truth (the model file is licensed: not shipped).

Files: ``SMPL_{NEUTRAL,MALE,FEMALE}.npz`` (the arrays ``v_template``, ``shapedirs``,
``posedirs``, ``J_regressor``, ``weights``, ``kintree_table``, ``f``; read with
``allow_pickle=False``) or the released ``.pkl`` (only with ``allow_pickle=True``; pickles that
need ``chumpy`` must first be cleaned with smplx's ``tools/clean_ch.py``), searched like the
extra files: ``<folder>/smpl/<name>`` then ``<folder>/<name>`` for the body-model folders of
:func:`wbcap.eval.extra_files.search_folders`. Download: https://smpl.is.tue.mpg.de.

The forward pass is ``smplx.lbs`` (the same math as ``smplx.SMPL``): metres, y up.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from smplx.lbs import lbs

from wbcap.errors import ModelFileError, setting
from wbcap.eval.extra_files import _dense, _short, _unpickle, search_folders
from wbcap.paths import ENV_BODY_MODELS, find_first

__all__ = ["SMPL_NUM_VERTICES", "SMPLLayer", "SMPLOutput", "find_smpl_model", "load_smpl_layers"]

logger = logging.getLogger(__name__)

SMPL_NUM_VERTICES = 6890
_NUM_JOINTS = 24
_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_HINT = "download SMPL from https://smpl.is.tue.mpg.de"


def find_smpl_model(gender: str, body_models: str | Path | None = None, allow_pickle: bool = False) -> Path:
    """Locate ``SMPL_{GENDER}.npz`` (or ``.pkl`` with ``allow_pickle``).

    Raises:
        ModelFileError: not found (one line: where it looked, where to get it) or only a pickle.
    """
    stem = f"SMPL_{gender.upper()}"
    folders = search_folders(body_models)
    cands = [base / (stem + ext) for folder in folders for base in (folder / "smpl", folder) for ext in (".npz", ".pkl")]
    found = find_first(cands, allow_pickle)
    if found.path is not None:
        return found.path
    looked = cands
    if found.pickle is not None:
        raise ModelFileError(
            f"{found.pickle} is a pickle, which can run code when loaded: save its arrays as {stem}.npz, "
            f"or pass {setting('allow_pickle', api='allow_pickle=True')}"
        )
    raise ModelFileError(
        f"SMPL model {stem} not found (looked in: {', '.join(str(p) for p in looked)}): {_HINT} and put "
        f"{stem}.npz in {folders[0] / 'smpl'}/ (or pass {setting('body_models')} / set {ENV_BODY_MODELS})"
    )


def _read(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() == ".pkl":
        raw: Any = _unpickle(path)
        if not isinstance(raw, dict):
            raise ModelFileError(f"{path} does not hold an SMPL model dict: {_HINT}")
    else:
        try:
            with np.load(path, allow_pickle=False) as archive:
                raw = {k: archive[k] for k in _KEYS if k in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
            raise ModelFileError(f"{path} is not a readable SMPL .npz ({_short(exc)}): {_HINT}") from None
    missing = [k for k in _KEYS if k not in raw]
    if missing:
        raise ModelFileError(f"{path} is not an SMPL model (missing: {', '.join(missing)}): {_HINT}")
    data = {k: _dense(getattr(raw[k], "r", raw[k])) for k in _KEYS}
    v = data["v_template"]
    n = v.shape[0] if v.ndim == 2 else -1
    ok = (
        v.ndim == 2 and v.shape[1] == 3
        and data["shapedirs"].shape[:2] == (n, 3) and data["shapedirs"].ndim == 3
        and data["posedirs"].shape == (n, 3, (_NUM_JOINTS - 1) * 9)
        and data["J_regressor"].shape == (_NUM_JOINTS, n)
        and data["weights"].shape == (n, _NUM_JOINTS)
        and data["kintree_table"].shape == (2, _NUM_JOINTS)
    )  # fmt: skip
    if not ok:
        raise ModelFileError(f"{path} has unexpected SMPL array shapes: {_HINT}")
    return data


@dataclass(frozen=True)
class SMPLOutput:
    """``vertices (B, 6890, 3)`` and ``joints (B, 24, 3)``, metres."""

    vertices: torch.Tensor
    joints: torch.Tensor


class SMPLLayer(torch.nn.Module):
    """SMPL forward pass (10 betas), buffers only. Called like ``smplx.SMPL``.

    ``forward(betas (B, 10), global_orient (B, 3), body_pose (B, 69), transl (B, 3) | None)``
    returns an object with ``vertices (B, 6890, 3)`` and ``joints (B, 24, 3)`` in metres.
    """

    def __init__(self, data: dict[str, np.ndarray], num_betas: int = 10) -> None:
        super().__init__()
        f32 = torch.float32
        self.num_betas = min(int(num_betas), int(data["shapedirs"].shape[2]))
        n = data["v_template"].shape[0]
        self.register_buffer("v_template", torch.as_tensor(data["v_template"], dtype=f32), persistent=False)
        self.register_buffer(
            "shapedirs", torch.as_tensor(data["shapedirs"][:, :, : self.num_betas], dtype=f32), persistent=False
        )
        posedirs = np.reshape(data["posedirs"], (n * 3, -1)).T
        self.register_buffer("posedirs", torch.as_tensor(posedirs, dtype=f32), persistent=False)
        self.register_buffer("J_regressor", torch.as_tensor(data["J_regressor"], dtype=f32), persistent=False)
        self.register_buffer("lbs_weights", torch.as_tensor(data["weights"], dtype=f32), persistent=False)
        parents = np.asarray(data["kintree_table"][0]).astype(np.int64)
        parents[0] = -1
        self.register_buffer("parents", torch.as_tensor(parents), persistent=False)
        self.faces = np.asarray(data["f"]).astype(np.int64)

    #: The file the layer was read from (:meth:`from_file`), None otherwise: what an evaluation
    #: records as the source of its ground truth.
    source: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path, allow_pickle: bool = False) -> SMPLLayer:
        p = Path(path)
        if p.suffix.lower() == ".pkl" and not allow_pickle:
            raise ModelFileError(f"{p} is a pickle: save its arrays as {p.stem}.npz, "
                                 f"or pass {setting('allow_pickle', api='allow_pickle=True')}")
        layer = cls(_read(p))
        layer.source = p
        return layer

    def forward(
        self,
        betas: torch.Tensor,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        transl: torch.Tensor | None = None,
    ) -> SMPLOutput:
        """The posed SMPL mesh and its 24 joints (metres, the model's frame moved by ``transl``).

        Args:
            betas: ``(B, >= 10)`` shape coefficients (the first ``num_betas`` are used).
            global_orient: ``(B, 3)`` root rotation, axis-angle (radians).
            body_pose: ``(B, 69)`` (or ``(B, 23, 3)``) the 23 other joints' rotations relative to
                their parents, axis-angle (radians), SMPL's joint order.
            transl: ``(B, 3)`` metres added to every vertex and joint; None: none.

        Computed in the model's dtype (float32 or float64 buffers); the inputs are cast to it.
        Formula: SMPL's linear blend skinning (Loper et al. 2015), the ``lbs`` of the ``smplx``
        package.
        """
        b = global_orient.shape[0]
        dt = self.v_template.dtype
        pose = torch.cat([global_orient.reshape(b, 3), body_pose.reshape(b, 69)], 1).to(dt)
        betas = betas.reshape(b, -1)[:, : self.num_betas].to(dt)
        verts, joints = lbs(
            betas, pose, self.v_template, self.shapedirs, self.posedirs, self.J_regressor, self.parents,
            self.lbs_weights,
        )  # fmt: skip
        if transl is not None:
            verts = verts + transl.reshape(b, 1, 3).to(dt)
            joints = joints + transl.reshape(b, 1, 3).to(dt)

        return SMPLOutput(vertices=verts, joints=joints)


def load_smpl_layers(body_models: str | Path | None = None, allow_pickle: bool = False) -> dict[str, SMPLLayer]:
    """SMPL layers by gender (``'neutral'``, ``'male'``, ``'female'``) for 3DPW's gendered ground truth.

    A gendered model that is missing (or cannot be read) is stood in for by the neutral one (by
    another one when the neutral is missing), with one warning naming the file, why it was not
    used and the stand-in: the numbers are then not comparable with published ones. Raises
    ModelFileError naming the missing file when no SMPL model at all is found.
    """
    layers: dict[str, SMPLLayer] = {}
    paths: dict[str, Path] = {}
    errors: dict[str, ModelFileError] = {}
    for gender in ("neutral", "male", "female"):
        try:
            paths[gender] = find_smpl_model(gender, body_models, allow_pickle)
            layers[gender] = SMPLLayer.from_file(paths[gender], allow_pickle)
        except ModelFileError as exc:
            errors[gender] = exc
    if not layers:
        raise errors["neutral"]
    for gender in ("male", "female"):
        if gender not in layers:
            stand_in = "neutral" if "neutral" in layers else next(iter(layers))
            logger.warning(
                "3DPW: %s; until then the %s samples' ground truth uses %s instead, so the numbers are not comparable "
                "with published ones", errors[gender], gender, paths[stand_in],
            )  # fmt: skip
            layers[gender] = layers[stand_in]
    if "neutral" not in layers:
        layers["neutral"] = layers["male"]
    return layers
