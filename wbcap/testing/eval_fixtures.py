"""Synthetic versions of the evaluation's extra files, consistent with the synthetic body.

:func:`write_eval_extra_files` fills a body-models folder, in the numpy formats wbcap reads
without unpickling, with (``V = 10475``):

``smplx/``
    ``SMPLX_NEUTRAL.npz`` (a link to, or copy of, the given synthetic SMPL-X model);
    ``SMPLX_to_J14.npy`` -- 14 rows of the model's sparse joint regressor (LSP order: ankles,
    knees, hips, wrists, elbows, shoulders, neck, head); ``MANO_SMPLX_vertex_ids.npz`` --
    ``left_hand``/``right_hand``: the synthetic hands' vertices (those skinned to finger joints)
    outside the wrist regressors' support; ``SMPL-X__FLAME_vertex_ids.npy`` -- the head's
    vertices outside the neck regressor's support; ``J_regressor_h36m_smplx.npy`` -- 17 H36M
    joints, the SMPL one below scattered onto the SMPL-X vertices it was taken from.
``smpl/`` (with ``smpl=True``)
    ``SMPL_{NEUTRAL,MALE,FEMALE}.npz`` -- a 6890-vertex SMPL-format model made from a vertex
    subset of the SMPL-X body; ``J_regressor_h36m_smpl.npy`` (17, 6890); ``SMPLX_to_SMPL.npz``
    (scipy CSR, the 0/1 selection of that subset, so ``SMPLX_to_SMPL @ smplx_vertices`` is the
    SMPL mesh and the two H36M regressors agree).

Excluding the alignment joints' regressor support from the part vertex sets makes known
answers exact: moving a hand's vertices rigidly leaves its wrist (and the pelvis) in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from wbcap.body.model_files import load_body_model_data

__all__ = ["H36M_FROM_SMPL", "SMPL_PARENTS", "write_eval_extra_files"]

#: Body joints of the SMPL(-X) kinematic tree (24 SMPL joints; 22/23 are the hands).
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
#: Source of each H36M joint: an SMPL joint index, or "top" (the head's highest vertex).
H36M_FROM_SMPL: tuple[int | str, ...] = (0, 2, 5, 8, 1, 4, 7, 6, 12, 15, "top", 16, 18, 20, 17, 19, 21)
_J14_FROM_SMPLX = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)
_SMPL_NUM_VERTICES = 6890


def _support(regressor: np.ndarray, rows: tuple[int, ...]) -> np.ndarray:
    return np.flatnonzero((regressor[list(rows)] != 0).any(0))


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # pragma: no cover - file systems without symlinks
        shutil.copyfile(src, dst)


def _smpl_from_smplx(data: dict[str, np.ndarray], seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """An SMPL-format model on a 6890-vertex subset ``sel`` of the SMPL-X body; returns (arrays, sel)."""
    rng = np.random.default_rng(seed)
    v = data["v_template"].astype(np.float64)
    jreg = data["J_regressor"].astype(np.float64)
    n = v.shape[0]
    body_rows = list(range(22)) + [28, 43]  # 22 body joints; L/R_Hand at the middle-finger base
    must = np.unique(np.argmax(jreg[body_rows], axis=1))  # each joint keeps its main vertex
    top = int(np.argmax(np.where(data["weights"][:, 15] > 0, v[:, 1], -np.inf)))
    must = np.union1d(must, [top])
    rest = np.setdiff1d(np.arange(n), must)
    sel = np.sort(np.concatenate([must, rng.choice(rest, _SMPL_NUM_VERTICES - len(must), replace=False)]))
    sub = jreg[body_rows][:, sel]
    sub /= sub.sum(1, keepdims=True)
    w = data["weights"].astype(np.float64)[sel]
    weights = np.zeros((_SMPL_NUM_VERTICES, 24))
    weights[:, :22] = w[:, :22]
    weights[:, 15] += w[:, 22:25].sum(1)  # jaw, eyes -> head
    weights[:, 22] = w[:, 25:40].sum(1)  # left fingers -> L_Hand
    weights[:, 23] = w[:, 40:55].sum(1)
    posedirs = np.zeros((_SMPL_NUM_VERTICES, 3, 207))
    posedirs[:, :, :189] = data["posedirs"][sel][:, :, :189]
    remap = -np.ones(n, np.int64)
    remap[sel] = np.arange(_SMPL_NUM_VERTICES)
    faces = remap[data["f"]]
    faces = faces[(faces >= 0).all(1)]
    kintree = np.stack([np.asarray(SMPL_PARENTS), np.arange(24)])
    kintree[0, 0] = 4294967295
    arrays = {
        "v_template": v[sel].astype(np.float32),
        "shapedirs": data["shapedirs"][sel][:, :, :10].astype(np.float32),
        "posedirs": posedirs.astype(np.float32),
        "J_regressor": sub.astype(np.float32),
        "weights": weights.astype(np.float32),
        "kintree_table": kintree.astype(np.int64),
        "f": faces.astype(np.int64),
    }
    return arrays, sel


def write_eval_extra_files(folder: str | Path, body_model: str | Path, smpl: bool = True, seed: int = 0) -> Path:
    """Write the synthetic extra files (see the module docstring) into ``folder``; returns it.

    Args:
        folder: the body-models folder to fill (created).
        body_model: the synthetic ``SMPLX_NEUTRAL.npz`` (from
            :func:`wbcap.testing.synthetic_body.write_synthetic_smplx`) the files must match.
        smpl: also write the SMPL model, its H36M regressor and the SMPL-X -> SMPL map (3DPW).
    """
    import scipy.sparse

    root = Path(folder)
    sx = root / "smplx"
    sx.mkdir(parents=True, exist_ok=True)
    src = Path(body_model)
    if src.resolve() != (sx / "SMPLX_NEUTRAL.npz").resolve():
        _link_or_copy(src, sx / "SMPLX_NEUTRAL.npz")
    data = load_body_model_data(src)
    jreg = data["J_regressor"].astype(np.float64)
    weights = data["weights"]
    n = jreg.shape[1]

    np.save(sx / "SMPLX_to_J14.npy", jreg[list(_J14_FROM_SMPLX)])
    wrists = _support(jreg, (20, 21, 0))
    left = np.setdiff1d(np.flatnonzero((weights[:, 25:40] > 0).any(1)), wrists)
    right = np.setdiff1d(np.flatnonzero((weights[:, 40:55] > 0).any(1)), wrists)
    np.savez(sx / "MANO_SMPLX_vertex_ids.npz", left_hand=left.astype(np.int64), right_hand=right.astype(np.int64))
    face = np.setdiff1d(np.flatnonzero(weights[:, 15] > 0), _support(jreg, (12, 0)))
    np.save(sx / "SMPL-X__FLAME_vertex_ids.npy", face.astype(np.int64))

    smpl_model, sel = _smpl_from_smplx(data, seed)
    v = smpl_model["v_template"]
    top = int(np.argmax(v[:, 1]))
    h36m_smpl = np.zeros((17, _SMPL_NUM_VERTICES))
    for k, src_joint in enumerate(H36M_FROM_SMPL):
        if src_joint == "top":
            h36m_smpl[k, top] = 1.0
        else:
            h36m_smpl[k] = smpl_model["J_regressor"][int(src_joint)]
    h36m_smplx = np.zeros((17, n))
    h36m_smplx[:, sel] = h36m_smpl
    np.save(sx / "J_regressor_h36m_smplx.npy", h36m_smplx)
    if smpl:
        sm = root / "smpl"
        sm.mkdir(parents=True, exist_ok=True)
        for gender in ("NEUTRAL", "MALE", "FEMALE"):
            np.savez(sm / f"SMPL_{gender}.npz", **smpl_model)
        np.save(sm / "J_regressor_h36m_smpl.npy", h36m_smpl)
        mapping = scipy.sparse.csr_matrix(
            (np.ones(_SMPL_NUM_VERTICES), (np.arange(_SMPL_NUM_VERTICES), sel)), shape=(_SMPL_NUM_VERTICES, n)
        )
        scipy.sparse.save_npz(sm / "SMPLX_to_SMPL.npz", mapping)
    return root
