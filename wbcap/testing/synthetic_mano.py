"""A synthetic right-hand MANO model for tests (the real model cannot be redistributed).

:func:`write_synthetic_mano` writes ``<folder>/mano/MANO_RIGHT.pkl`` in the release's format: a
protocol-2 pickle of a dict with the release's keys, shapes and kinds of values (numpy arrays, the
``J_regressor`` a ``scipy.sparse.csc_matrix``, and with ``chumpy=True``, the default, the
``shapedirs`` a pickled chumpy ``Ch`` as in the release, written without chumpy). With
``chumpy=False`` the file has no chumpy object, so ``smplx.create(..., 'mano')`` also reads it
(the equivalence tests).

The hand is a palm of 58 vertices and 15 finger segments, each a tube of 4 rings of 12 vertices
(778 vertices; triangles: the tubes' sides and the palm's convex hull, so ``f`` has fewer rows
than the release's 1538). The fingers point along +x from a wrist at the origin, the thumb
towards +z; every joint's regressor row is the mean of the ring at it, the finger tips are the
vertices upstream's hand joints use (745, 317, 445, 556, 673), and the skinning weights, blend
shapes and mean pose are small deterministic stand-ins.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from wbcap.body.mano_layer import MANO_MODEL_JOINT_NAMES, MANO_TIP_VERTICES, NUM_MANO_VERTICES

__all__ = ["write_synthetic_mano"]

_ROOT_PARENT = 4294967295  # how the release's kintree_table marks the root (uint32 -1)
_RING, _RINGS, _PALM = 12, 4, 58
_KNUCKLES = {"Index": (0.09, 0.0, 0.025), "Middle": (0.095, 0.0, 0.005), "Ring": (0.09, 0.0, -0.015),
             "Pinky": (0.08, 0.0, -0.033), "Thumb": (0.025, -0.01, 0.03)}  # fmt: skip
_DIRECTIONS = {"Thumb": (0.6, 0.0, 0.8)}
_LENGTHS = (0.04, 0.025, 0.02)
_RADII = (0.010, 0.009, 0.008)


class _ChumpyCh:
    """Stands in for ``chumpy.ch.Ch`` while pickling: its state is a ``Ch``'s ``__dict__``."""

    def __init__(self, values: np.ndarray) -> None:
        self.x = values

    def __getstate__(self) -> dict:
        return {"x": self.x, "_dirty_vars": set()}


class _ReleasePickler(pickle._Pickler):  # (the pure-Python pickler: its save_global can be overridden)
    def save_global(self, obj, name=None):
        if obj is _ChumpyCh:
            self.write(pickle.GLOBAL + b"chumpy.ch\nCh\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _orthonormal_frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([0.0, 1.0, 0.0]) if abs(direction[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(direction, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(direction, u)


def _build(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    names = MANO_MODEL_JOINT_NAMES
    joints = np.zeros((16, 3))
    parents = [-1] + [0 if (i - 1) % 3 == 0 else i - 1 for i in range(1, 16)]
    tips: dict[str, np.ndarray] = {}
    for finger, knuckle in _KNUCKLES.items():
        d = np.asarray(_DIRECTIONS.get(finger, (1.0, 0.0, 0.0)))
        d /= np.linalg.norm(d)
        p = np.asarray(knuckle, float)
        for i in range(3):
            joints[names.index(f"{finger}_{i + 1}")] = p
            p = p + d * _LENGTHS[i]
        tips[finger] = p
    verts: list[np.ndarray] = []
    weights = np.zeros((NUM_MANO_VERTICES, 16))
    regressor = np.zeros((16, NUM_MANO_VERTICES))
    faces: list[tuple[int, int, int]] = []
    tip_index: dict[str, int] = {}
    # palm: two layers of a 5 x 6 grid less a corner (58), skinned to the wrist
    gx, gz = np.meshgrid(np.linspace(0.0, 0.08, 5), np.linspace(-0.035, 0.03, 6), indexing="ij")
    grid = np.stack([gx.ravel(), gz.ravel()], 1)[1:]
    palm = np.concatenate([np.stack([grid[:, 0], np.full(len(grid), y), grid[:, 1]], 1) for y in (-0.012, 0.012)])
    verts.append(palm)
    weights[:_PALM, 0] = 1.0
    wrist_ring = np.flatnonzero(palm[:, 0] == 0.0)
    regressor[0, wrist_ring] = 1.0 / len(wrist_ring)
    joints[0] = palm[wrist_ring].mean(0)
    from scipy.spatial import ConvexHull

    faces += [tuple(int(v) for v in tri) for tri in ConvexHull(palm).simplices]
    start = _PALM
    angles = np.linspace(0.0, 2 * np.pi, _RING, endpoint=False)
    for finger in ("Index", "Middle", "Pinky", "Ring", "Thumb"):  # (the model's joint order)
        for i in range(3):
            j = names.index(f"{finger}_{i + 1}")
            a = joints[j]
            b = joints[j + 1] if i < 2 else tips[finger]
            u, w = _orthonormal_frame((b - a) / np.linalg.norm(b - a))
            rings = []
            for t in np.linspace(0.0, 1.0, _RINGS):
                radius = _RADII[i] * (1.0 - 0.15 * t)
                rings.append(a + (b - a) * t + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w))
            ring_pts = np.concatenate(rings)
            if i == 2:  # the last ring's first vertex is the finger tip itself
                ring_pts[(_RINGS - 1) * _RING] = b
                tip_index[finger] = start + (_RINGS - 1) * _RING
            verts.append(ring_pts)
            idx = np.arange(start, start + _RINGS * _RING)
            weights[idx, j] = 1.0
            first = idx[:_RING]  # blended with the parent at the joint
            weights[first, j], weights[first, parents[j]] = 0.6, 0.4
            regressor[j, first] = 1.0 / _RING
            for r in range(_RINGS - 1):
                for k in range(_RING):
                    a0, a1 = start + r * _RING + k, start + r * _RING + (k + 1) % _RING
                    b0, b1 = a0 + _RING, a1 + _RING
                    faces += [(a0, a1, b1), (a0, b1, b0)]
            start += _RINGS * _RING
    v = np.concatenate(verts)
    assert v.shape == (NUM_MANO_VERTICES, 3)
    # order the vertices so that the tips sit at upstream's ids
    order = np.arange(NUM_MANO_VERTICES)
    for finger, target in MANO_TIP_VERTICES.items():
        at = int(np.flatnonzero(order == tip_index[finger])[0])
        order[at], order[target] = order[target], order[at]
    new_id = np.empty_like(order)
    new_id[order] = np.arange(NUM_MANO_VERTICES)
    centred = v - v.mean(0)
    shapedirs = np.zeros((NUM_MANO_VERTICES, 3, 10))
    shapedirs[:, :, 0] = 0.05 * centred  # size
    shapedirs[:, 0, 1] = 0.08 * v[:, 0]  # finger length
    shapedirs[:, :, 2:] = 0.002 * rng.standard_normal((NUM_MANO_VERTICES, 3, 8))
    q, _ = np.linalg.qr(rng.standard_normal((45, 45)))
    return {
        "v_template": v[order],
        "f": new_id[np.asarray(faces, np.int64)].astype(np.uint32),
        "J_regressor": regressor[:, order],
        "kintree_table": np.array([[_ROOT_PARENT] + parents[1:], list(range(16))], np.int64),
        "J": joints,
        "weights": weights[order],
        "posedirs": 0.001 * rng.standard_normal((NUM_MANO_VERTICES, 3, 135)),
        "shapedirs": shapedirs[order],
        "hands_mean": 0.15 * rng.standard_normal(45),
        "hands_components": q.T,
        "hands_coeffs": 0.5 * rng.standard_normal((8, 45)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_synthetic_mano(folder: str | Path, *, chumpy: bool = True, seed: int = 0) -> Path:
    """Write ``<folder>/mano/MANO_RIGHT.pkl`` (see the module docstring) and return its path.
    ``chumpy``: the ``shapedirs`` as a pickled chumpy ``Ch``, as the release has it."""
    import scipy.sparse

    data = _build(seed)
    data["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"])
    if chumpy:
        data["shapedirs"] = _ChumpyCh(data["shapedirs"])
    path = Path(folder) / "mano" / "MANO_RIGHT.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        _ReleasePickler(fh, protocol=2).dump(data)
    return path
