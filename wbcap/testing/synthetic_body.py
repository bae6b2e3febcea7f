"""A synthetic SMPL-X body model for tests (the real model cannot be redistributed).

:func:`write_synthetic_smplx` writes ``<folder>/smplx/SMPLX_{GENDER}.npz`` in the exact format of
the SMPL-X release (same keys, shapes and dtypes, including the pickled ``joint2num`` /
``part2num`` object arrays), so both ``smplx.create`` and :mod:`wbcap.body.model_files` load it.

The body is made of 10 closed, superellipsoidal UV-sphere parts (head, torso, 2 arms, 2 legs,
2 hands, 2 feet) with 10475 vertices and 20908 triangles (one quad is cut from the back of the
head to hit the SMPL-X face count). It stands about 1.70 m tall in a T-pose, y up, facing +z,
with the subject's left on +x like SMPL-X. The vertex order is permuted so that the fixed
``smplx.vertex_ids['smplx']`` vertices (nose, eyes, ears, toes, heels, finger tips) lie on the
right parts, and the face landmarks lie on the front of the head. Joint regressor, skinning
weights, shape/expression/pose blend shapes and hand means are small deterministic stand-ins.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy_format
from scipy.spatial import cKDTree

from wbcap.body.joints import SMPLX_JOINT_NAMES, SMPLX_PARENTS
from wbcap.body.model_files import NUM_VERTICES

__all__ = ["NUM_FACES", "NUM_VERTICES", "make_smplx_params", "write_synthetic_smplx"]

NUM_FACES = 20908
_NUM_JOINTS = 55
_ROOT_PARENT = 4294967295  # how the real kintree_table marks the root (uint32 -1)

# Fixed vertex ids from smplx.vertex_ids.vertex_ids['smplx'] (copied as literals so that this
# module does not depend on smplx internals), with the part each one must lie on.
_SPECIAL_VERTICES: tuple[tuple[str, int, str], ...] = (
    ("nose", 9120, "head"),
    ("reye", 9929, "head"),
    ("leye", 9448, "head"),
    ("rear", 616, "head"),
    ("lear", 6, "head"),
    ("rthumb", 8079, "rhand"),
    ("rindex", 7669, "rhand"),
    ("rmiddle", 7794, "rhand"),
    ("rring", 7905, "rhand"),
    ("rpinky", 8022, "rhand"),
    ("lthumb", 5361, "lhand"),
    ("lindex", 4933, "lhand"),
    ("lmiddle", 5058, "lhand"),
    ("lring", 5169, "lhand"),
    ("lpinky", 5286, "lhand"),
    ("LBigToe", 5770, "lfoot"),
    ("LSmallToe", 5780, "lfoot"),
    ("LHeel", 8846, "lfoot"),
    ("RBigToe", 8463, "rfoot"),
    ("RSmallToe", 8474, "rfoot"),
    ("RHeel", 8635, "rfoot"),
)

_X = np.array([1.0, 0.0, 0.0])
_Y = np.array([0.0, 1.0, 0.0])
_Z = np.array([0.0, 0.0, 1.0])

# name, centre (m), axes (e0, e1) with e2 = e0 x e1, radii along (e0, e1, e2), rings, segments,
# superellipse exponent (1 = ellipsoid, < 1 = boxier / more cylindrical).
_PARTS: tuple[tuple[str, tuple[float, float, float], np.ndarray, np.ndarray,
                    tuple[float, float, float], int, int, float], ...] = (
    ("head", (0.0, 0.29, 0.02), _Y, _Z, (0.125, 0.10, 0.08), 32, 48, 0.9),
    ("torso", (0.0, -0.15, 0.0), _Y, _Z, (0.33, 0.11, 0.17), 55, 57, 0.6),
    ("larm", (0.41, 0.10, -0.01), _X, _Y, (0.29, 0.045, 0.045), 39, 20, 0.5),
    ("rarm", (-0.41, 0.10, -0.01), -_X, _Y, (0.29, 0.045, 0.045), 39, 20, 0.5),
    ("lleg", (0.10, -0.82, 0.0), -_Y, _Z, (0.42, 0.075, 0.075), 44, 24, 0.6),
    ("rleg", (-0.10, -0.82, 0.0), -_Y, _Z, (0.42, 0.075, 0.075), 44, 24, 0.6),
    ("lhand", (0.76, 0.10, 0.0), _X, _Y, (0.10, 0.018, 0.05), 26, 24, 0.6),
    ("rhand", (-0.76, 0.10, 0.0), -_X, _Y, (0.10, 0.018, 0.05), 26, 24, 0.6),
    ("lfoot", (0.11, -1.25, 0.06), _Z, _Y, (0.13, 0.035, 0.045), 18, 24, 0.7),
    ("rfoot", (-0.11, -1.25, 0.06), _Z, _Y, (0.13, 0.035, 0.045), 18, 24, 0.7),
)  # fmt: skip


def _left_joints() -> dict[int, tuple[float, float, float]]:
    """Designed rest positions (metres) of the centre and left-side joints."""
    j: dict[int, tuple[float, float, float]] = {
        0: (0.0, -0.35, 0.0), 1: (0.09, -0.44, 0.0), 3: (0.0, -0.24, -0.01),
        4: (0.10, -0.84, 0.01), 6: (0.0, -0.11, 0.0), 7: (0.10, -1.21, -0.03),
        9: (0.0, 0.0, -0.01), 10: (0.11, -1.26, 0.12), 12: (0.0, 0.15, -0.01),
        13: (0.07, 0.08, -0.01), 15: (0.0, 0.23, 0.0), 16: (0.17, 0.10, -0.01),
        18: (0.43, 0.10, -0.02), 20: (0.68, 0.10, -0.01),
        22: (0.0, 0.24, 0.03), 23: (0.03, 0.31, 0.08),
    }  # fmt: skip
    # Left fingers (model order index, middle, pinky, ring, thumb), 3 joints each.
    fingers = {
        25: ((0.775, 0.805, 0.83), 0.028),  # index
        28: ((0.78, 0.81, 0.838), 0.009),  # middle
        31: ((0.765, 0.79, 0.81), -0.028),  # pinky
        34: ((0.775, 0.803, 0.828), -0.01),  # ring
    }
    for first, (xs, z) in fingers.items():
        for k, x in enumerate(xs):
            j[first + k] = (x, 0.10, z)
    j[37], j[38], j[39] = (0.70, 0.095, 0.03), (0.725, 0.095, 0.04), (0.75, 0.095, 0.045)
    return j


def _mirror_joint(idx: int) -> int:
    """Index of the left/right counterpart of a joint (itself for centre joints)."""
    pairs = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 23: 24}
    pairs.update({25 + k: 40 + k for k in range(15)})
    inverse = {v: k for k, v in pairs.items()}
    return pairs.get(idx, inverse.get(idx, idx))


def _design_joints() -> np.ndarray:
    """``(55, 3)`` designed rest joint positions in metres (float64)."""
    left = _left_joints()
    joints = np.zeros((_NUM_JOINTS, 3))
    for idx, pos in left.items():
        joints[idx] = pos
        mirror = _mirror_joint(idx)
        if mirror != idx:
            joints[mirror] = (-pos[0], pos[1], pos[2])
    return joints


def _uv_part(
    centre: np.ndarray,
    e0: np.ndarray,
    e1: np.ndarray,
    radii: tuple[float, float, float],
    rings: int,
    segs: int,
    power: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed superellipsoidal UV sphere with outward-facing triangles.

    Returns:
        vertices ``(rings*segs + 2, 3)``, faces ``(2*rings*segs, 3)`` (local indices),
        uv ``(rings*segs + 2, 2)`` in ``[0, 1]``.
    """
    e2 = np.cross(e0, e1)
    theta = np.pi * np.arange(1, rings + 1) / (rings + 1)
    phi = 2.0 * np.pi * np.arange(segs) / segs
    ct, st = np.cos(theta), np.sin(theta)
    ct = np.sign(ct) * np.abs(ct) ** power
    st = np.abs(st) ** power
    cp, sp = np.cos(phi), np.sin(phi)
    cp = np.sign(cp) * np.abs(cp) ** power
    sp = np.sign(sp) * np.abs(sp) ** power
    ring = (
        radii[0] * ct[:, None, None] * e0
        + radii[1] * (st[:, None] * cp[None, :])[..., None] * e1
        + radii[2] * (st[:, None] * sp[None, :])[..., None] * e2
    ).reshape(-1, 3)
    verts = np.concatenate([(radii[0] * e0)[None], ring, (-radii[0] * e0)[None]]) + centre
    uv_ring = np.stack(
        np.broadcast_arrays(np.arange(segs)[None, :] / segs, (theta / np.pi)[:, None]), -1
    ).reshape(-1, 2)
    uv = np.concatenate([[[0.5, 0.0]], uv_ring, [[0.5, 1.0]]])

    top, bottom = 0, rings * segs + 1
    ring_idx = 1 + np.arange(rings * segs).reshape(rings, segs)
    nxt = np.roll(ring_idx, -1, axis=1)
    faces = [np.stack([np.full(segs, top), ring_idx[0], nxt[0]], 1)]
    a, b = ring_idx[:-1], nxt[:-1]
    c, d = ring_idx[1:], nxt[1:]
    quads = np.stack([np.stack([a, c, d], -1), np.stack([a, d, b], -1)], 2)  # (rings-1, segs, 2, 3)
    faces.append(quads.reshape(-1, 3))
    faces.append(np.stack([ring_idx[-1], np.full(segs, bottom), nxt[-1]], 1))
    return verts, np.concatenate(faces).astype(np.int64), uv


def _face_points_2d() -> np.ndarray:
    """``(51, 2)`` static face landmarks (x, y) in metres relative to the head centre.

    iBUG-68 order without the 17 contour points: eyebrows (subject's right then left), nose
    bridge, nostrils, eyes, outer lip, inner lip. Subject's right is -x.
    """
    pts: list[tuple[float, float]] = []
    pts += [(-0.055 + 0.009 * i, 0.035 + 0.006 * min(i, 4 - i)) for i in range(5)]  # R brow
    pts += [(0.019 + 0.009 * i, 0.035 + 0.006 * min(i, 4 - i)) for i in range(5)]  # L brow
    pts += [(0.0, 0.022 - 0.012 * i) for i in range(4)]  # nose bridge
    pts += [(-0.016 + 0.008 * i, -0.025 + 0.003 * min(i, 4 - i)) for i in range(5)]  # nostrils
    for cx in (-0.03, 0.03):  # eyes: corner, upper x2, corner, lower x2
        pts += [(cx - 0.014, 0.02), (cx - 0.005, 0.026), (cx + 0.005, 0.026), (cx + 0.014, 0.02),
                (cx + 0.005, 0.015), (cx - 0.005, 0.015)]  # fmt: skip
    # Lips go right corner -> upper -> left corner -> lower (outer 12 points, inner 8 points).
    ang = np.linspace(np.pi, -np.pi, 13)[:-1]
    pts += [(0.026 * np.cos(a), -0.055 + 0.014 * np.sin(a)) for a in ang]
    ang = np.linspace(np.pi, -np.pi, 9)[:-1]
    pts += [(0.016 * np.cos(a), -0.055 + 0.006 * np.sin(a)) for a in ang]
    return np.asarray(pts)


def _contour_points(angle_deg: float, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """``(17, 3)`` jaw-line points on the head ellipsoid for a head yaw of ``angle_deg``."""
    s = np.linspace(-1.0, 1.0, 17)
    azimuth = np.deg2rad(75.0 * s + angle_deg)
    elevation = np.deg2rad(-10.0 - 40.0 * (1.0 - s**2))
    # radii = (y, z, x) of the head part.
    x = radii[2] * np.cos(elevation) * np.sin(azimuth)
    y = radii[0] * np.sin(elevation)
    z = radii[1] * np.cos(elevation) * np.cos(azimuth)
    return centre + np.stack([x, y, z], 1)


def _bone_segments(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end ``(55, 3)`` of the bone each joint drives (for skinning weights)."""
    child = {0: 3, 1: 4, 2: 5, 3: 6, 4: 7, 5: 8, 6: 9, 7: 10, 8: 11, 9: 12, 12: 15, 13: 16,
             14: 17, 16: 18, 17: 19, 18: 20, 19: 21, 20: 28, 21: 43}  # fmt: skip
    for first in (25, 28, 31, 34, 37, 40, 43, 46, 49, 52):
        child[first] = first + 1
        child[first + 1] = first + 2
    ends = joints.copy()
    for j in range(_NUM_JOINTS):
        if j in child:
            ends[j] = joints[child[j]]
        elif j in (10, 11):
            ends[j] = joints[j] + (0.0, 0.0, 0.09)
        elif j == 15:
            ends[j] = joints[j] + (0.0, 0.17, 0.0)
        elif j == 22:
            ends[j] = joints[j] + (0.0, -0.07, 0.08)
        elif j in (23, 24):
            ends[j] = joints[j]
        else:  # finger tips: continue the last phalanx
            ends[j] = joints[j] + (joints[j] - joints[SMPLX_PARENTS[j]])
    return joints, ends


def _tilt_to_mean(points: np.ndarray, w0: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Reweight ``w0 * exp(lam . (x - target))`` so the weighted mean of ``points`` is ``target``.

    The maximum-entropy correction of prior weights ``w0`` (N,) for points ``(N, 3)``: a few
    damped Newton steps on the convex dual. Returns weights ``(N,)`` summing to 1 (the closest
    achievable mean if ``target`` is outside the points' convex hull).
    """
    x = points - target
    logw0 = np.log(w0)

    def dual(lam: np.ndarray) -> float:  # log sum w0 exp(lam . x); convex, minimised at the fit
        logits = logw0 + x @ lam
        top = logits.max()
        return float(top + np.log(np.exp(logits - top).sum()))

    lam = np.zeros(3)
    for _ in range(100):
        logits = logw0 + x @ lam
        w = np.exp(logits - logits.max())
        w /= w.sum()
        grad = w @ x
        if np.linalg.norm(grad) < 1e-8:
            break
        centred = x - grad
        hess = (centred * w[:, None]).T @ centred + 1e-12 * np.eye(3)
        step = -np.linalg.solve(hess, grad)
        t, f0, slope = 1.0, dual(lam), float(grad @ step)
        while t > 1e-6 and dual(lam + t * step) > f0 + 0.25 * t * slope:
            t *= 0.5
        lam = lam + t * step
    logits = logw0 + x @ lam
    w = np.exp(logits - logits.max())
    return w / w.sum()


def _segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``(N, K)`` distances from points ``(N, 3)`` to segments ``(K, 3)-(K, 3)``."""
    d = end - start
    length_sq = np.maximum((d * d).sum(-1), 1e-12)
    t = np.clip(((points[:, None, :] - start[None]) * d[None]).sum(-1) / length_sq, 0.0, 1.0)
    closest = start[None] + t[..., None] * d[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=-1)


_SKIN_JOINTS: dict[str, tuple[int, ...]] = {
    "head": (12, 15, 22),
    "torso": (0, 1, 2, 3, 6, 9, 12, 13, 14, 16, 17),
    "larm": (13, 16, 18, 20),
    "rarm": (14, 17, 19, 21),
    "lleg": (0, 1, 4, 7),
    "rleg": (0, 2, 5, 8),
    "lhand": (20,) + tuple(range(25, 40)),
    "rhand": (21,) + tuple(range(40, 55)),
    "lfoot": (7, 10),
    "rfoot": (8, 11),
}

_REGRESSOR_PARTS: dict[int, tuple[str, ...]] = {
    0: ("torso",), 1: ("torso", "lleg"), 2: ("torso", "rleg"), 3: ("torso",), 4: ("lleg",),
    5: ("rleg",), 6: ("torso",), 7: ("lleg",), 8: ("rleg",), 9: ("torso",), 10: ("lfoot",),
    11: ("rfoot",), 12: ("torso", "head"), 13: ("torso",), 14: ("torso",), 15: ("head",),
    16: ("torso", "larm"), 17: ("torso", "rarm"), 18: ("larm",), 19: ("rarm",),
    20: ("larm", "lhand"), 21: ("rarm", "rhand"), 22: ("head",), 23: ("head",), 24: ("head",),
}  # fmt: skip


# One recipe, step by step (template, joints, blend shapes, weights, regressors): a test fixture
# generator whose steps share many local arrays; splitting it would only pass them around.
def _build(num_components: int, seed: int) -> dict[str, np.ndarray]:
    """All arrays of the synthetic model (real SMPL-X keys, shapes and dtypes)."""
    rng = np.random.default_rng(seed)

    # --- geometry in natural (part by part) order --------------------------------------
    verts_l, faces_l, uv_l, part_of, axis_pts = [], [], [], [], []
    part_slices: dict[str, slice] = {}
    offset = 0
    for p_idx, (name, centre, e0, e1, radii, rings, segs, power) in enumerate(_PARTS):
        c = np.asarray(centre)
        v, f, uv = _uv_part(c, e0, e1, radii, rings, segs, power)
        if name == "head":  # cut one quad at the back of the head (equator, phi = pi)
            ring, seg = rings // 2, segs // 2
            first_quad_face = segs + 2 * ((ring - 1) * segs + seg)
            f = np.delete(f, [first_quad_face, first_quad_face + 1], axis=0)
        verts_l.append(v)
        faces_l.append(f + offset)
        uv_l.append(np.column_stack([(p_idx % 5 + uv[:, 0]) / 5.0, (p_idx // 5 + uv[:, 1]) / 2.0]))
        part_of.append(np.full(len(v), p_idx))
        axis_pts.append(c + ((v - c) @ e0)[:, None] * e0)
        part_slices[name] = slice(offset, offset + len(v))
        offset += len(v)
    verts = np.concatenate(verts_l)
    faces_nat = np.concatenate(faces_l)
    uv_nat = np.concatenate(uv_l)
    part_nat = np.concatenate(part_of)
    axis_nat = np.concatenate(axis_pts)
    if len(verts) != NUM_VERTICES or len(faces_nat) != NUM_FACES:  # pragma: no cover
        raise RuntimeError(f"synthetic body has {len(verts)} vertices, {len(faces_nat)} faces")

    part_names = [p[0] for p in _PARTS]
    head = _PARTS[0]
    head_centre = np.asarray(head[1])
    head_radii = np.asarray(head[4])  # along (y, z, x)

    # --- special vertices: choose natural vertices, then permute them to their fixed ids -----
    joints = _design_joints()
    targets_left = {
        "thumb": joints[39] + (0.025, 0.005, 0.006),  # beyond the last thumb joint
        "index": np.array([0.86, 0.104, 0.026]),  # slightly on the back of the hand (nails)
        "middle": np.array([0.865, 0.104, 0.008]),
        "ring": np.array([0.86, 0.104, -0.01]),
        "pinky": np.array([0.85, 0.104, -0.028]),
    }
    _, hy, hz = head_centre
    targets: dict[str, np.ndarray] = {
        "nose": np.array([0.0, hy - 0.01, hz + 0.12]),
        "reye": np.array([-0.03, hy + 0.02, hz + 0.11]),
        "leye": np.array([0.03, hy + 0.02, hz + 0.11]),
        "rear": np.array([-0.09, hy, hz]),
        "lear": np.array([0.09, hy, hz]),
        "LBigToe": np.array([0.09, -1.25, 0.20]),
        "LSmallToe": np.array([0.14, -1.25, 0.17]),
        "LHeel": np.array([0.11, -1.26, -0.08]),
    }
    for finger, pos in targets_left.items():
        targets["l" + finger] = pos
        targets["r" + finger] = pos * (-1.0, 1.0, 1.0)
    for key in ("BigToe", "SmallToe", "Heel"):
        targets["R" + key] = targets["L" + key] * (-1.0, 1.0, 1.0)

    chosen: dict[int, int] = {}  # final id -> natural id
    used: set[int] = set()
    for name, final_id, part in _SPECIAL_VERTICES:
        sl = part_slices[part]
        dist = np.linalg.norm(verts[sl] - targets[name], axis=1)
        for local in np.argsort(dist, kind="stable"):
            if sl.start + int(local) not in used:
                nat = sl.start + int(local)
                break
        chosen[final_id] = nat
        used.add(nat)
    order = np.empty(NUM_VERTICES, dtype=np.int64)  # order[final] = natural
    free_final = np.setdiff1d(np.arange(NUM_VERTICES), np.fromiter(chosen, dtype=np.int64))
    free_nat = np.setdiff1d(np.arange(NUM_VERTICES), np.fromiter(used, dtype=np.int64))
    order[free_final] = free_nat
    for final_id, nat in chosen.items():
        order[final_id] = nat
    inverse = np.empty_like(order)
    inverse[order] = np.arange(NUM_VERTICES)

    v_template = verts[order]
    faces = inverse[faces_nat]
    uv = uv_nat[order]
    part = part_nat[order]
    axis_pt = axis_nat[order]

    # --- joint regressor: normalised Gaussian weights of vertices near each joint ------------
    j_regressor = np.zeros((_NUM_JOINTS, NUM_VERTICES))
    for j in range(_NUM_JOINTS):
        names = _REGRESSOR_PARTS.get(j, ("lhand",) if j < 40 else ("rhand",))
        mask = np.isin(part, [part_names.index(n) for n in names])
        idx = np.flatnonzero(mask)
        dist = np.linalg.norm(v_template[idx] - joints[j], axis=1)
        sigma = max(float(dist.min()), 0.005) * 1.2
        w = np.exp(-0.5 * (dist / sigma) ** 2)
        keep = w >= 1e-3 * w.max()
        w = _tilt_to_mean(v_template[idx[keep]], w[keep], joints[j])
        j_regressor[j, idx[keep]] = w

    # --- skinning weights: inverse distance to the bones of the part, top 4, normalised ------
    starts, ends = _bone_segments(joints)
    weights = np.zeros((NUM_VERTICES, _NUM_JOINTS))
    for p_idx, name in enumerate(part_names):
        idx = np.flatnonzero(part == p_idx)
        cand = np.asarray(_SKIN_JOINTS[name])
        dist = _segment_distance(v_template[idx], starts[cand], ends[cand])
        w = 1.0 / (dist + 0.01) ** 4
        if len(cand) > 4:
            drop = np.argsort(-w, axis=1, kind="stable")[:, 4:]
            np.put_along_axis(w, drop, 0.0, axis=1)
        weights[idx[:, None], cand[None, :]] = w / w.sum(1, keepdims=True)

    # --- blend shapes --------------------------------------------------------------------
    pelvis = joints[0]
    expr_range = range(10, 20) if num_components < 400 else range(300, 400)
    head_mask = (part == 0) * np.clip((v_template[:, 2] - hz) / 0.1, 0.0, 1.0)
    shapedirs = np.zeros((NUM_VERTICES, 3, num_components))
    shapedirs[:, :, 0] = 0.03 * (v_template - pelvis)  # overall size
    if num_components > 1:
        shapedirs[:, :, 1] = 0.15 * (v_template - axis_pt)  # girth
    for k in range(2, num_components):
        freq = rng.normal(0.0, 4.0, (3, 3))
        phase = rng.uniform(0.0, 2.0 * np.pi, 3)
        pattern = np.sin(v_template @ freq + phase)
        if k in expr_range:
            shapedirs[:, :, k] = 0.006 * pattern * head_mask[:, None]
        else:
            shapedirs[:, :, k] = 0.01 * pattern

    pose_gain = rng.normal(0.0, 0.01, (_NUM_JOINTS - 1, 9, 3))
    posedirs = np.einsum(
        "vj,jkd->vdjk", weights[:, 1:].astype(np.float32), pose_gain.astype(np.float32)
    ).reshape(NUM_VERTICES, 3, 486)

    # --- hands ---------------------------------------------------------------------------
    curl = np.zeros((15, 3))
    curl[:, 2] = -np.tile([0.15, 0.25, 0.2], 5)  # flex fingers toward the palm (-y)
    curl[12:, :] = [[0.1, 0.3, 0.05], [0.0, 0.15, 0.0], [0.0, 0.2, 0.0]]  # thumb
    curl += rng.normal(0.0, 0.02, curl.shape)
    hands_meanl = curl.reshape(45)
    hands_meanr = (curl * (1.0, -1.0, -1.0)).reshape(45)  # mirror across x = 0
    hands_componentsl = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    hands_componentsr = hands_componentsl.reshape(45, 15, 3) * (1.0, -1.0, -1.0)
    hands_coeffsl = rng.normal(0.0, 0.5, (10, 45))
    hands_coeffsr = rng.normal(0.0, 0.5, (10, 45))

    # --- face landmarks on the front of the head -----------------------------------------
    head_faces = np.flatnonzero(part[faces[:, 0]] == 0)
    centroids = v_template[faces[head_faces]].mean(1)
    tree = cKDTree(centroids)
    xy = _face_points_2d()
    depth = np.sqrt(np.clip(1 - (xy[:, 0] / head_radii[2]) ** 2
                            - (xy[:, 1] / head_radii[0]) ** 2, 0.0, 1.0))  # fmt: skip
    lmk_pts = head_centre + np.column_stack([xy[:, 0], xy[:, 1], head_radii[1] * depth])
    lmk_faces_idx = head_faces[tree.query(lmk_pts)[1]]
    lmk_bary = rng.uniform(0.2, 1.0, (51, 3))
    lmk_bary /= lmk_bary.sum(1, keepdims=True)

    angles = [float(k) if k <= 39 else float(39 - k) for k in range(79)]
    contour = np.stack([_contour_points(a, head_centre, head_radii) for a in angles])
    dyn_faces_idx = head_faces[tree.query(contour.reshape(-1, 3))[1]].reshape(79, 17)
    dyn_bary = rng.uniform(0.2, 1.0, (79, 17, 3))
    dyn_bary /= dyn_bary.sum(-1, keepdims=True)

    kintree = np.stack([np.asarray(SMPLX_PARENTS), np.arange(_NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = _ROOT_PARENT

    f32 = np.float32
    return {
        "hands_componentsl": hands_componentsl.astype(f32),
        "ft": faces.astype(np.int32),
        "lmk_faces_idx": lmk_faces_idx.astype(np.int64),
        "J_regressor": j_regressor.astype(f32),
        "hands_componentsr": hands_componentsr.reshape(45, 45).astype(f32),
        "kintree_table": kintree,
        "hands_coeffsr": hands_coeffsr.astype(f32),
        "joint2num": np.array(
            {name.lower(): i for i, name in enumerate(SMPLX_JOINT_NAMES)}, dtype=object
        ),
        "hands_meanl": hands_meanl.astype(f32),
        "lmk_bary_coords": lmk_bary.astype(f32),
        "weights": weights.astype(f32),
        "posedirs": posedirs.astype(f32),
        "dynamic_lmk_faces_idx": dyn_faces_idx.astype(np.int64),
        "part2num": np.array({n: i for i, n in enumerate(part_names)}, dtype=object),
        "vt": uv.astype(f32),
        "hands_meanr": hands_meanr.astype(f32),
        "hands_coeffsl": hands_coeffsl.astype(f32),
        "v_template": v_template.astype(f32),
        "shapedirs": shapedirs.astype(f32),
        "f": faces.astype(np.int32),
        "dynamic_lmk_bary_coords": dyn_bary.astype(f32),
    }


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` exactly like ``np.savez`` but with fixed timestamps.

    ``np.savez`` stamps each member with the current time, so two runs would differ in bytes;
    this writes the same ZIP_STORED archive of ``.npy`` members with a constant date.
    """
    with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with zf.open(info, "w", force_zip64=True) as fh:
                npy_format.write_array(fh, np.asanyarray(value), allow_pickle=True)


def write_synthetic_smplx(
    folder: str | Path,
    genders: tuple[str, ...] = ("neutral",),
    num_components: int = 20,
    seed: int = 0,
) -> Path:
    """Write synthetic SMPL-X model files ``<folder>/smplx/SMPLX_{GENDER}.npz``.

    Args:
        folder: the body-models folder (created if missing).
        genders: genders to write; each gets a differently seeded body (``seed + i``).
        num_components: shape+expression components in ``shapedirs`` (20 like SMPL-X v1.0,
            400 like v1.1).
        seed: random seed; the same arguments always give byte-identical files.

    Returns:
        ``folder`` as a Path (pass it to ``find_body_model(model_path=...)`` or
        ``smplx.create(folder, 'smplx', ...)``).
    """
    if num_components < 20:
        raise ValueError(f"num_components must be >= 20, got {num_components}")
    root = Path(folder)
    out_dir = root / "smplx"
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, gender in enumerate(genders):
        arrays = _build(num_components, seed + i)
        _write_npz(out_dir / f"SMPLX_{gender.upper()}.npz", arrays)
    return root


def make_smplx_params(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but plausible SMPL-X parameters for tests (float32 CPU tensors).

    Returns:
        dict with ``betas (B, 10)``, ``expression (B, 10)``, ``global_orient (B, 3)`` (any
        heading), ``body_pose (B, 63)``, ``left_hand_pose``/``right_hand_pose (B, 45)``,
        ``jaw_pose (B, 3)`` (mouth opening), ``leye_pose``/``reye_pose (B, 3)`` (axis-angle,
        radians) and ``transl (B, 3)`` (metres) -- the keyword arguments of
        ``SMPLXLayer.forward`` and of smplx's SMPL-X forward.
    """
    rng = np.random.default_rng(seed)
    b = int(batch)
    jaw = np.column_stack(
        [rng.uniform(0.0, 0.3, b), rng.normal(0.0, 0.03, b), rng.normal(0.0, 0.03, b)]
    )
    glob = np.column_stack(
        [rng.normal(0.0, 0.2, b), rng.uniform(-np.pi, np.pi, b), rng.normal(0.0, 0.2, b)]
    )
    params = {
        "betas": rng.normal(0.0, 1.0, (b, 10)),
        "expression": rng.normal(0.0, 1.0, (b, 10)),
        "global_orient": glob,
        "body_pose": rng.normal(0.0, 0.25, (b, 63)),
        "left_hand_pose": rng.normal(0.0, 0.3, (b, 45)),
        "right_hand_pose": rng.normal(0.0, 0.3, (b, 45)),
        "jaw_pose": jaw,
        "leye_pose": rng.normal(0.0, 0.1, (b, 3)),
        "reye_pose": rng.normal(0.0, 0.1, (b, 3)),
        "transl": rng.normal(0.0, 0.5, (b, 3)),
    }
    return {
        k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items()
    }
