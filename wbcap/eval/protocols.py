"""The evaluation protocols of Hand4Whole (Moon et al. 2022), as batched functions.

Whole body (EHF; upstream ``EHF.evaluate``), for a predicted and a ground-truth SMPL-X mesh:

============  =======================================================================
metric        definition (all mm, mean over the part's points, per sample)
============  =======================================================================
mpvpe_all     all vertices, prediction translated so its pelvis lands on the GT pelvis
mpvpe_hand    MANO vertices of each hand, aligned at that hand's wrist; mean of L and R
mpvpe_face    FLAME vertices, aligned at the neck
pa_mpvpe_*    the same vertex sets, each Procrustes-aligned on its own
pa_mpjpe_body the 14 joints of the SMPL-X -> J14 regressor, Procrustes-aligned
pa_mpjpe_hand 21 joints per hand (wrist, 15 finger joints, 5 fingertip vertices: upstream's
              ``orig_hand_regressor``), Procrustes-aligned per hand; mean of L and R
============  =======================================================================

Pelvis, wrists and neck are regressed from each mesh with the SMPL-X model's own joint
regressor (joints 0, 20, 21, 12).

Human3.6M (upstream ``Human36M.evaluate``, with the prediction's SMPL-X mesh, which upstream
meant to use but read from a key its model never produces): the 17 H36M joints regressed from
the predicted mesh with ``J_regressor_h36m_smplx``, both sets made pelvis-relative, compared on
the 14 joints :data:`H36M_EVAL_JOINTS` (MPJPE, and PA-MPJPE after Procrustes alignment).

3DPW: the same 14-joint H36M protocol, the predicted SMPL-X mesh's joints from
``J_regressor_h36m_smplx`` and the ground-truth SMPL mesh's from the SMPL H36M regressor (each
mesh through the regressor of its own topology); plus MPVPE on SMPL vertices (the prediction
mapped to SMPL by the SMPL-X -> SMPL vertex map, when one is available), both meshes aligned at
the H36M pelvis of the SMPL regressor. Upstream's main branch computes no 3DPW metric; its
Pose2Pose branch scores SMPL predictions, one regressor on both sides, with the same pelvis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from smplx.vertex_ids import vertex_ids as _SMPLX_VERTEX_IDS

from wbcap.body.joints import J_REGRESSOR_IDX
from wbcap.eval.extra_files import load_face_vertex_ids, load_hand_vertex_ids, load_regressor
from wbcap.eval.metrics import ArrayLike, _t, align_at, mpjpe, mpvpe, pa_mpjpe, pa_mpvpe, regress

__all__ = [
    "H36M_EVAL_JOINTS",
    "H36M_ROOT_IDX",
    "WHOLE_BODY_METRICS",
    "WholeBodyProtocol",
    "h36m_errors",
    "hand_regressors",
    "smpl_mesh_errors",
]

H36M_EVAL_JOINTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16)
"""The 14 of 17 H36M joints evaluated (all but pelvis, torso and head)."""
H36M_ROOT_IDX = 0
WHOLE_BODY_METRICS: tuple[str, ...] = (
    "mpvpe_all", "mpvpe_hand", "mpvpe_face",
    "pa_mpvpe_all", "pa_mpvpe_hand", "pa_mpvpe_face",
    "pa_mpjpe_body", "pa_mpjpe_hand",
)  # fmt: skip

# Rows of each hand's 21-joint regressor: SMPL-X joint index, or ("tip", vertex name).
_HAND_ROWS = {
    "left": (20, 37, 38, 39, "lthumb", 25, 26, 27, "lindex", 28, 29, 30, "lmiddle", 34, 35, 36, "lring",
             31, 32, 33, "lpinky"),
    "right": (21, 52, 53, 54, "rthumb", 40, 41, 42, "rindex", 43, 44, 45, "rmiddle", 49, 50, 51, "rring",
              46, 47, 48, "rpinky"),
}  # fmt: skip


def hand_regressors(joint_regressor: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream ``make_hand_regressor``: two ``(21, V)`` float64 regressors (left, right).

    Rows: wrist, thumb 1-3, thumb tip, index 1-3, index tip, middle, ring, pinky (each 3 joints
    of the SMPL-X ``joint_regressor (55, V)`` + its fingertip vertex, smplx's vertex ids).
    """
    jr = _t(joint_regressor).detach().cpu().double()
    tips = _SMPLX_VERTEX_IDS["smplx"]
    out = []
    for side in ("left", "right"):
        rows = []
        for r in _HAND_ROWS[side]:
            if isinstance(r, str):
                row = torch.zeros(jr.shape[1], dtype=torch.float64)
                row[int(tips[r])] = 1.0
                rows.append(row)
            else:
                rows.append(jr[r])
        out.append(torch.stack(rows))
    return out[0], out[1]


@dataclass(frozen=True)
class WholeBodyProtocol:
    """What the whole-body (EHF) protocol needs about the SMPL-X topology (float64 / int64).

    joint_regressor: ``(55, V)`` the SMPL-X model's joint regressor (pelvis 0, neck 12,
    wrists 20/21). j14_regressor: ``(14, V)``. lhand_ids, rhand_ids: MANO vertex ids;
    face_ids: FLAME vertex ids. lhand_regressor, rhand_regressor: ``(21, V)``.
    """

    joint_regressor: torch.Tensor
    j14_regressor: torch.Tensor
    lhand_ids: torch.Tensor
    rhand_ids: torch.Tensor
    face_ids: torch.Tensor
    lhand_regressor: torch.Tensor
    rhand_regressor: torch.Tensor

    @classmethod
    def build(
        cls,
        joint_regressor: ArrayLike,
        j14_regressor: ArrayLike,
        lhand_ids: ArrayLike | Sequence[int],
        rhand_ids: ArrayLike | Sequence[int],
        face_ids: ArrayLike | Sequence[int],
    ) -> WholeBodyProtocol:
        jr = _t(joint_regressor).detach().cpu().double()
        lreg, rreg = hand_regressors(jr)

        def ids(x: ArrayLike | Sequence[int]) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x), dtype=torch.long)

        return cls(
            joint_regressor=jr,
            j14_regressor=_t(j14_regressor).detach().cpu().double(),
            lhand_ids=ids(lhand_ids),
            rhand_ids=ids(rhand_ids),
            face_ids=ids(face_ids),
            lhand_regressor=lreg,
            rhand_regressor=rreg,
        )

    @classmethod
    def from_files(
        cls, joint_regressor: ArrayLike, body_models: str | Path | None = None, allow_pickle: bool = False
    ) -> WholeBodyProtocol:
        """Read the J14 regressor and the MANO / FLAME vertex ids (:mod:`wbcap.eval.extra_files`)."""
        num_v = int(joint_regressor.shape[1])
        j14, _ = load_regressor("j14", num_v, body_models, allow_pickle)
        left, right, _ = load_hand_vertex_ids(num_v, body_models, allow_pickle)
        face, _ = load_face_vertex_ids(num_v, body_models)
        return cls.build(joint_regressor, j14, left, right, face)

    def _joint(self, name: str, verts: torch.Tensor) -> torch.Tensor:
        row = self.joint_regressor[J_REGRESSOR_IDX[name]].to(verts.device)
        return torch.einsum("v,bvc->bc", row, verts.double())

    def __call__(self, pred: ArrayLike, gt: ArrayLike) -> dict[str, torch.Tensor]:
        """Every metric of :data:`WHOLE_BODY_METRICS` for meshes ``(B, V, 3)`` metres.

        Returns:
            ``{name: (B,) float64 mm}``.
        """
        p = _t(pred).double()
        g = _t(gt).to(device=p.device, dtype=torch.float64)
        if p.shape != g.shape or p.ndim != 3 or p.shape[1] != self.joint_regressor.shape[1]:
            raise ValueError(
                f"pred {tuple(p.shape)} and gt {tuple(g.shape)} must both be (B, {self.joint_regressor.shape[1]}, 3)"
            )
        dev = p.device
        lids, rids, fids = self.lhand_ids.to(dev), self.rhand_ids.to(dev), self.face_ids.to(dev)
        out: dict[str, torch.Tensor] = {}
        out["mpvpe_all"] = mpvpe(align_at(p, g, self._joint("pelvis", p), self._joint("pelvis", g)), g)
        out["pa_mpvpe_all"] = pa_mpvpe(p, g)

        def hand_mean(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return (left + right) / 2.0

        lp, lg, rp, rg = p[:, lids], g[:, lids], p[:, rids], g[:, rids]
        out["mpvpe_hand"] = hand_mean(
            mpvpe(align_at(lp, lg, self._joint("lwrist", p), self._joint("lwrist", g)), lg),
            mpvpe(align_at(rp, rg, self._joint("rwrist", p), self._joint("rwrist", g)), rg),
        )
        out["pa_mpvpe_hand"] = hand_mean(pa_mpvpe(lp, lg), pa_mpvpe(rp, rg))
        fp, fg = p[:, fids], g[:, fids]
        out["mpvpe_face"] = mpvpe(align_at(fp, fg, self._joint("neck", p), self._joint("neck", g)), fg)
        out["pa_mpvpe_face"] = pa_mpvpe(fp, fg)
        out["pa_mpjpe_body"] = pa_mpjpe(regress(self.j14_regressor, p), regress(self.j14_regressor, g))
        out["pa_mpjpe_hand"] = hand_mean(
            pa_mpjpe(regress(self.lhand_regressor, p), regress(self.lhand_regressor, g)),
            pa_mpjpe(regress(self.rhand_regressor, p), regress(self.rhand_regressor, g)),
        )
        return {k: out[k] for k in WHOLE_BODY_METRICS}


def h36m_errors(pred_joints: ArrayLike, gt_joints: ArrayLike) -> dict[str, torch.Tensor]:
    """The Human3.6M 14-joint protocol for ``(B, 17, 3)`` H36M-order joints in metres.

    Both sets are made pelvis-relative; MPJPE and PA-MPJPE over :data:`H36M_EVAL_JOINTS`.

    Returns:
        ``{"mpjpe": (B,), "pa_mpjpe": (B,)}`` float64 mm.
    """
    p = _t(pred_joints).double()
    g = _t(gt_joints).to(device=p.device, dtype=torch.float64)
    if p.shape != g.shape or p.ndim != 3 or p.shape[1:] != (17, 3):
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} must both be (B, 17, 3)")
    idx = list(H36M_EVAL_JOINTS)
    p = (p - p[:, H36M_ROOT_IDX, None])[:, idx]
    g = (g - g[:, H36M_ROOT_IDX, None])[:, idx]
    return {"mpjpe": mpjpe(p, g), "pa_mpjpe": pa_mpjpe(p, g)}


def smpl_mesh_errors(
    pred_smpl: ArrayLike, gt_smpl: ArrayLike, smpl_joint_regressor: ArrayLike
) -> dict[str, torch.Tensor]:
    """MPVPE (and PA-MPVPE) between SMPL meshes ``(B, 6890, 3)`` metres, pelvis-aligned.

    The pelvis is row 0 of ``smpl_joint_regressor`` ``(K, 6890)``, applied to each mesh: for 3DPW
    the SMPL -> H36M regressor, whose row 0 is the H36M pelvis, as upstream's only 3DPW evaluation
    (the Pose2Pose branch's ``PW3D.evaluate``) aligns them. Returns ``(B,)`` mm each.
    """
    p = _t(pred_smpl).double()
    g = _t(gt_smpl).to(device=p.device, dtype=torch.float64)
    row = _t(smpl_joint_regressor).to(device=p.device, dtype=torch.float64)[0]
    pr, gr = torch.einsum("v,bvc->bc", row, p), torch.einsum("v,bvc->bc", row, g)
    return {"mpvpe": mpvpe(align_at(p, g, pr, gr), g), "pa_mpvpe": pa_mpvpe(p, g)}
