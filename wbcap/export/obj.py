"""Wavefront OBJ meshes: ``v x y z`` lines (``%.6f``) then ``f a b c`` lines (1-based).

Coordinates are written as given (wbcap writes metres in the OpenCV camera frame: x right, y down,
z forward, unless the caller transforms them). Faces keep their winding (counter-clockwise seen
from outside for SMPL-X).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from wbcap.atomic import atomic_write_bytes
from wbcap.errors import InputError


def format_obj(vertices: np.ndarray, faces: np.ndarray, header: str | None = "wbcap") -> str:
    """OBJ text for a triangle mesh.

    Args:
        vertices: ``(V, 3)`` float, finite.
        faces: ``(F, 3)`` int, 0-based indices into ``vertices``.
        header: comment written on the first line (``# header``), or None for none.

    Raises:
        ValueError: wrong shapes, non-finite vertices or out-of-range face indices.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and not np.issubdtype(f.dtype, np.integer)):
        raise ValueError(f"faces must be (F, 3) integers, got {f.shape} {f.dtype}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinity")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"face indices must be in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    # One %-format over the whole array: ~20x faster than a Python loop per line.
    v = v + 0.0  # turns -0.0 into 0.0, so identical meshes give identical files
    parts = [f"# {header}\n" if header else ""]
    parts.append(("v %.6f %.6f %.6f\n" * len(v)) % tuple(v.ravel().tolist()))
    parts.append(("f %d %d %d\n" * len(f)) % tuple((f.astype(np.int64) + 1).ravel().tolist()))
    return "".join(parts)


def write_obj(path: str | os.PathLike[str], vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as OBJ, atomically.

    Args:
        path: destination ``.obj`` file (its folder must exist).
        vertices: ``(V, 3)`` float (metres), finite.
        faces: ``(F, 3)`` int, 0-based (written 1-based, as OBJ requires).
    """
    atomic_write_bytes(path, format_obj(vertices, faces).encode("ascii"))


def read_obj(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read the vertices and triangles of an OBJ file (other elements are ignored).

    Accepts ``f`` entries as ``a``, ``a/t``, ``a//n`` or ``a/t/n`` and negative (relative)
    indices; polygons with more than 3 corners are fanned into triangles.

    Returns:
        ``vertices`` ``(V, 3)`` float64 and ``faces`` ``(F, 3)`` int64, 0-based.

    Raises:
        InputError: missing file or malformed ``v``/``f`` line (message names the file and line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(f"{p}: no such OBJ file; check the path") from None
    verts: list[list[float]] = []
    tris: list[list[int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if tokens[0] == "v":
                verts.append([float(t) for t in tokens[1:4]])
                if len(verts[-1]) != 3:
                    raise ValueError
            elif tokens[0] == "f":
                idx = []
                for t in tokens[1:]:
                    i = int(t.split("/", 1)[0])
                    idx.append(i - 1 if i > 0 else len(verts) + i)
                if len(idx) < 3:
                    raise ValueError
                tris.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
        except ValueError:
            raise InputError(
                f"{p}: malformed line {lineno} {line.strip()[:40]!r}; fix or re-export the OBJ"
            ) from None
    vertices = np.array(verts, dtype=np.float64).reshape(-1, 3)
    faces = np.array(tris, dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"{p}: a face refers to a missing vertex; fix or re-export the OBJ")
    return vertices, faces
