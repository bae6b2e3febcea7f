"""Meshes of ``wbcap run``'s smoothed tracks: posed SMPL-X in the video camera
(:func:`pose_track`, the one place a track is posed: rendering, ``--obj``, the world stage's
soles and the synthetic world scenes all call it), and ``meshes/<track>/<frame>.obj`` (``--obj``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.io.progress import Progress
from wbcap.smooth.track import ROT_KEYS, SmoothedTrack

#: Rows of a track posed per SMPL-X call when writing OBJs.
OBJ_CHUNK = 64
#: Rows of a track posed per SMPL-X call by :func:`pose_track` (bounds its working memory).
POSE_BATCH = 128


@dataclass(frozen=True)
class PosedRows:
    """SMPL-X posed for rows of a track: float32 metres in the video camera (OpenCV axes).

    Attributes:
        vertices: ``(R, *vertex_ids.shape, 3)`` the vertices asked for, ``(R, V, 3)`` for all.
        joints: ``(R, *joint_ids.shape, 3)`` the output joints asked for, ``(R, 144, 3)`` for all
            (:data:`wbcap.body.joints.SMPLX_OUTPUT_JOINT_NAMES`).
    """

    vertices: np.ndarray
    joints: np.ndarray


def pose_track(body: Any, track: SmoothedTrack, device: Any, rows: np.ndarray | None = None,
               vertex_ids: np.ndarray | None = None, joint_ids: np.ndarray | None = None,
               batch: int | None = POSE_BATCH) -> PosedRows:
    """The posed mesh and joints of ``rows`` of one track.

    Args:
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` the parameters belong to (hand
            poses relative to the mean, as the track holds them), on ``device``.
        track: the track; its own translation places the body, eyes at rest.
        rows: ``(R,)`` row indices (None: every row, in order).
        vertex_ids, joint_ids: integer ids of any shape of the vertices / output joints to keep
            (None: all); only these leave the device, so a long track costs ``R`` times their
            number in memory, not ``R`` whole meshes.
        batch: rows per SMPL-X call (None: all ``rows`` in one call).

    Returns:
        :class:`PosedRows`, float32, metres, video camera (OpenCV axes).
    """
    import torch

    from wbcap.body.joints import SMPLX_OUTPUT_JOINT_NUM

    rows = np.arange(len(track)) if rows is None else np.asarray(rows)
    n = len(rows)
    vids = None if vertex_ids is None else np.asarray(vertex_ids, np.int64)
    jids = None if joint_ids is None else np.asarray(joint_ids, np.int64)
    vshape = (body.num_vertices,) if vids is None else vids.shape
    jshape = (SMPLX_OUTPUT_JOINT_NUM,) if jids is None else jids.shape
    vertices = np.empty((n, *vshape, 3), np.float32)
    joints = np.empty((n, *jshape, 3), np.float32)
    vsel = slice(None) if vids is None else torch.as_tensor(vids.reshape(-1), device=device)
    jsel = slice(None) if jids is None else torch.as_tensor(jids.reshape(-1), device=device)
    step = max(1, n if batch is None else batch)
    with torch.no_grad():
        for lo in range(0, n, step):
            part = rows[lo : lo + step]
            out = body(**{name: torch.as_tensor(track.param(name)[part], device=device)
                          for name in ("betas", *ROT_KEYS, "expression", "transl")})
            vertices[lo : lo + len(part)] = out.vertices[:, vsel].reshape(len(part), *vshape, 3).cpu().numpy()
            joints[lo : lo + len(part)] = out.joints[:, jsel].reshape(len(part), *jshape, 3).cpu().numpy()
    return PosedRows(vertices=vertices, joints=joints)


def track_vertices(body: Any, tr: SmoothedTrack, rows: np.ndarray, device: Any) -> np.ndarray:
    """``(len(rows), V, 3)`` float32 vertices, metres, in the video camera (OpenCV axes) for
    ``rows`` of one track (:func:`pose_track`; ``body``: the
    :class:`~wbcap.body.smplx_layer.SMPLXLayer` on ``device``)."""
    return pose_track(body, tr, device, rows).vertices


class TrackVertices:
    """Posed vertices of person-frames read in frame order, computed :data:`OBJ_CHUNK` rows of a
    track per SMPL-X call (rendering asks for one row of each visible track per frame; one call
    per person-frame was most of the render time). Holds at most one chunk per track.

    ``tracks``: ``{track id: SmoothedTrack}``; ``body`` the
    :class:`~wbcap.body.smplx_layer.SMPLXLayer` on ``device``.
    """

    def __init__(self, tracks: dict[int, SmoothedTrack], body: Any, device: Any) -> None:
        self._tracks, self._body, self._device = tracks, body, device
        self._chunks: dict[int, tuple[int, np.ndarray]] = {}

    def __call__(self, tid: int, row: int) -> np.ndarray:
        """``(V, 3)`` float32 vertices, metres, video camera (OpenCV axes) of ``row`` of track ``tid``."""
        start, verts = self._chunks.get(tid, (-1, None))
        if verts is None or not start <= row < start + len(verts):
            n = len(self._tracks[tid].frame)
            rows = np.arange(row, min(row + OBJ_CHUNK, n))
            start, verts = row, track_vertices(self._body, self._tracks[tid], rows, self._device)
            self._chunks[tid] = (start, verts)
        return verts[row - start]


def write_track_objs(folder: Path, tracks: dict[int, SmoothedTrack], body: Any, faces: np.ndarray, device: Any,
                     progress: Progress | None = None) -> None:
    """``folder/<track>/<frame:06d>.obj`` for every person-frame of ``tracks`` (``faces``:
    ``(F, 3)`` vertex indices); reports ``("obj", done, total)`` to ``progress``."""
    from wbcap.export.obj import write_obj

    total = sum(len(tr.frame) for tr in tracks.values())
    done = 0
    for tid, tr in tracks.items():
        track_folder = folder / f"{tid}"
        track_folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(tr.frame), OBJ_CHUNK):
            rows = np.arange(start, min(start + OBJ_CHUNK, len(tr.frame)))
            verts = track_vertices(body, tr, rows, device)
            for r, v in zip(rows, verts):
                write_obj(track_folder / f"{int(tr.frame[r]):06d}.obj", v, faces)
            done += len(rows)
            if progress:
                progress("obj", done, total)
