"""Meshes of ``wbcap run``'s smoothed tracks: posed SMPL-X vertices in the video camera
(:func:`wbcap.smooth.posing.pose_track`, the one place a track is posed), for rendering and
``meshes/<track>/<frame>.obj`` (``--obj``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.io.progress import Progress
from wbcap.smooth.posing import pose_track
from wbcap.smooth.track import SmoothedTrack

#: Rows of a track posed per SMPL-X call when writing OBJs.
OBJ_CHUNK = 64


def track_vertices(body: Any, tr: SmoothedTrack, rows: np.ndarray, device: Any) -> np.ndarray:
    """``(len(rows), V, 3)`` float32 vertices, metres, in the video camera (OpenCV axes) for
    ``rows`` of one track (:func:`pose_track`; ``body``: the
    :class:`~wbcap.body.smplx_layer.SMPLXLayer` on ``device``)."""
    return pose_track(body, tr, device, rows).vertices


class TrackVertices:
    """Posed vertices of person-frames read in frame order, computed :data:`OBJ_CHUNK` rows of a
    track per SMPL-X call (rendering asks for one row of each visible track per frame; one call
    per person-frame was most of the render time). Holds at most one chunk per track, and only
    for the tracks :meth:`keep` was last given.

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

    def keep(self, tids: Iterable[int]) -> None:
        """Drop the chunks of every track not in ``tids`` (rendering: the people of the frame at
        hand). Each chunk is up to :data:`OBJ_CHUNK` meshes (~8 MB): kept for every track ever
        seen, a crowded clip's render grew by ~0.37 MB a frame (a user trial: 3.85 GB after
        6360 frames of 689 tracks) until memory ran out."""
        keep = set(tids)
        for tid in [t for t in self._chunks if t not in keep]:
            del self._chunks[tid]


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
