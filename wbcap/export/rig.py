"""A shaped SMPL-X body as a skinned character: skeleton, rest mesh and 4-influence skin.

What the animation formats (:mod:`wbcap.export.gltf`, :mod:`wbcap.export.bvh`, FBX through
Blender) share. SMPL-X poses its mesh by linear blend skinning (LBS) of the *shaped* rest mesh
plus two things LBS cannot express (Pavlakos et al., CVPR 2019, eq. 1-3; ``smplx/lbs.py``):

* **expression blend shapes**: linear in the expression coefficients, so they become morph
  targets (one per coefficient) with animated weights;
* **pose-corrective blend shapes** (``posedirs``): linear in ``R - I`` of the 54 non-root
  joints. A pure LBS file drops them; :func:`lbs_vertices` is that dropped-correctives mesh and
  the reference a file's readers are compared against (see ``wbcap.export.gltf`` for the exact
  option).

Game engines and glTF's ``JOINTS_0``/``WEIGHTS_0`` take 4 joints per vertex, SMPL-X up to 55:
:func:`build_rig` keeps each vertex's 4 largest weights, renormalised to sum to 1, and reports
the weight mass it dropped (:attr:`Rig.dropped_weight`).

Frame: the body model's own (metres, y up, the body faces +z, left hand at +x), which is also
glTF's. Rotations: axis-angle, radians, model joint order, hands *absolute* (``flat_hand_mean=True``,
the AMASS convention: see :mod:`wbcap.export.amass`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "JOINT_NAMES_55", "Rig", "build_rig", "lbs_vertices", "posed_joints", "skinning_transforms", "top_k_weights",
]

#: The 55 SMPL-X model joints in model order, as ``smplx.joint_names.JOINT_NAMES[:55]``.
JOINT_NAMES_55: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw",
    "left_eye_smplhf", "right_eye_smplhf", "left_index1", "left_index2", "left_index3", "left_middle1",
    "left_middle2", "left_middle3", "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1", "left_ring2",
    "left_ring3", "left_thumb1", "left_thumb2", "left_thumb3", "right_index1", "right_index2", "right_index3",
    "right_middle1", "right_middle2", "right_middle3", "right_pinky1", "right_pinky2", "right_pinky3",
    "right_ring1", "right_ring2", "right_ring3", "right_thumb1", "right_thumb2", "right_thumb3",
)


@dataclass(frozen=True)
class Rig:
    """One person's shaped SMPL-X body as a skinned character (numpy, float64 unless said).

    Attributes:
        joint_names: the 55 joint names (:data:`JOINT_NAMES_55`).
        parents: ``(55,)`` int64 parent index of each joint, ``-1`` for the pelvis; parents come
            before children.
        rest_joints: ``(55, 3)`` joint positions of the shaped body at rest (zero pose, zero
            expression), metres, body-model frame.
        rest_vertices: ``(V, 3)`` shaped rest mesh (``v_template + shapedirs . betas``), metres.
        faces: ``(F, 3)`` int64 triangle vertex indices.
        skin_joints: ``(V, 4)`` int64 joint index of each vertex's 4 largest weights.
        skin_weights: ``(V, 4)`` their weights, renormalised to sum to 1.
        expression_dirs: ``(V, 3, E)`` expression blend shapes, metres per unit coefficient.
        dropped_weight: largest weight mass a vertex lost by keeping 4 joints (0 when SMPL-X's
            weights never use more than 4).
        betas: ``(B,)`` the shape this rig was built for.
    """

    joint_names: tuple[str, ...]
    parents: np.ndarray
    rest_joints: np.ndarray
    rest_vertices: np.ndarray
    faces: np.ndarray
    skin_joints: np.ndarray
    skin_weights: np.ndarray
    expression_dirs: np.ndarray
    dropped_weight: float
    betas: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """``(55, 3)`` each joint's rest position relative to its parent (the pelvis: absolute), metres."""
        off = self.rest_joints.copy()
        off[1:] -= self.rest_joints[self.parents[1:]]
        return off


def top_k_weights(weights: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray, float]:
    """Keep each vertex's ``k`` largest skinning weights, renormalised.

    Args:
        weights: ``(V, J)`` non-negative weights, rows summing to 1.
        k: influences kept per vertex.

    Returns:
        ``(indices (V, k) int64, weights (V, k) float64, dropped)``: joints in descending weight
        order (ties: lower joint first), weights summing to 1, and the largest dropped mass.
    """
    w = np.asarray(weights, np.float64)
    order = np.argsort(-w, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(w, order, axis=1)
    dropped = float(np.max(1.0 - kept.sum(1) / np.maximum(w.sum(1), 1e-12))) if w.size else 0.0
    total = kept.sum(1, keepdims=True)
    kept = np.where(total > 0, kept / np.where(total > 0, total, 1.0), 0.0)
    return order.astype(np.int64), kept, max(dropped, 0.0)


def build_rig(body: Any, betas: np.ndarray) -> Rig:
    """The rig of one shape.

    Args:
        body: a :class:`wbcap.body.smplx_layer.SMPLXLayer` (any device; read in float64).
        betas: ``(B,)`` shape coefficients, ``B <= body.num_betas`` (missing ones are 0).

    Returns:
        :class:`Rig` in the body-model frame.
    """
    def arr(name: str) -> np.ndarray:
        return getattr(body, name).detach().cpu().double().numpy()

    b = np.zeros(body.num_betas)
    betas = np.asarray(betas, np.float64).reshape(-1)[: body.num_betas]
    b[: betas.size] = betas
    v = arr("v_template") + np.einsum("vcl,l->vc", arr("shapedirs"), b)
    joints = arr("J_regressor") @ v
    skin_j, skin_w, dropped = top_k_weights(arr("lbs_weights"))
    return Rig(
        joint_names=JOINT_NAMES_55,
        parents=arr("parents").astype(np.int64)[:55],
        rest_joints=joints[:55],
        rest_vertices=v,
        faces=np.asarray(body.faces, np.int64),
        skin_joints=skin_j,
        skin_weights=skin_w,
        expression_dirs=arr("expr_dirs"),
        dropped_weight=dropped,
        betas=b,
    )


def _rotmats(rotvecs: np.ndarray) -> np.ndarray:
    """``(..., 3)`` axis-angle -> ``(..., 3, 3)`` rotation matrices (Rodrigues, float64)."""
    from scipy.spatial.transform import Rotation

    rv = np.asarray(rotvecs, np.float64)
    return Rotation.from_rotvec(rv.reshape(-1, 3)).as_matrix().reshape(*rv.shape[:-1], 3, 3)


def _world_transforms(rig: Rig, poses: np.ndarray, transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics: ``(T, 55, 3)`` axis-angle + ``(T, 3)`` transl -> world rotations
    ``(T, 55, 3, 3)`` and world joint positions ``(T, 55, 3)``."""
    rot = _rotmats(poses)
    offsets = rig.offsets
    t = rot.shape[0]
    g_rot = np.empty_like(rot)
    g_pos = np.empty((t, 55, 3))
    g_rot[:, 0] = rot[:, 0]
    g_pos[:, 0] = rig.rest_joints[0] + np.asarray(transl, np.float64)
    for j in range(1, 55):
        p = rig.parents[j]
        g_rot[:, j] = g_rot[:, p] @ rot[:, j]
        g_pos[:, j] = g_pos[:, p] + np.einsum("tij,j->ti", g_rot[:, p], offsets[j])
    return g_rot, g_pos


def skinning_transforms(rig: Rig, poses: np.ndarray, transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each joint's skinning transform ``x -> rot @ x + shift`` (world joint transform times the
    inverse bind matrix ``translation(-rest_joint)``), the matrices a glTF reader skins with.

    Args:
        poses: ``(T, 55, 3)`` axis-angle, radians, hands absolute.
        transl: ``(T, 3)`` metres (SMPL-X ``transl``).

    Returns:
        ``(rot (T, 55, 3, 3), shift (T, 55, 3))`` float64, metres.
    """
    g_rot, g_pos = _world_transforms(rig, poses, transl)
    return g_rot, g_pos - np.einsum("tjab,jb->tja", g_rot, rig.rest_joints)


def posed_joints(rig: Rig, poses: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """World positions of the 55 joints: ``poses (T, 55, 3)`` axis-angle (hands absolute),
    ``transl (T, 3)`` metres -> ``(T, 55, 3)`` metres. Equals SMPL-X's first 55 output joints
    for zero expression (joints depend on shape only, not on expression or correctives)."""
    return _world_transforms(rig, poses, transl)[1]


def lbs_vertices(rig: Rig, poses: np.ndarray, transl: np.ndarray, expression: np.ndarray | None = None) -> np.ndarray:
    """The mesh a pure-LBS reader of our files shows: the rig's 4-joint skin, expression blend
    shapes applied, *no* pose correctives.

    Args:
        poses: ``(T, 55, 3)`` axis-angle, radians, hands absolute.
        transl: ``(T, 3)`` metres (SMPL-X ``transl``).
        expression: ``(T, E)`` coefficients, or None for zeros.

    Returns:
        ``(T, V, 3)`` float64 vertices, metres.
    """
    # skinning matrix of joint j: x -> g_rot (x - rest_j) + g_pos
    g_rot, shift = skinning_transforms(rig, poses, transl)
    v = rig.rest_vertices[None]
    if expression is not None:
        e = np.asarray(expression, np.float64)
        v = v + np.einsum("vce,te->tvc", rig.expression_dirs[..., : e.shape[1]], e)
    v = np.broadcast_to(v, (g_rot.shape[0], *rig.rest_vertices.shape))
    out = np.zeros_like(v)
    for k in range(rig.skin_joints.shape[1]):
        j = rig.skin_joints[:, k]
        w = rig.skin_weights[:, k][None, :, None]
        out += w * (np.einsum("tvab,tvb->tva", g_rot[:, j], v) + shift[:, j])
    return out
