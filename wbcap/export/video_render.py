"""``wbcap run``'s ``render.mp4``: the source frames decoded again with every tracked mesh drawn
over them, each frame at its source time (variable frame rates kept), the source audio copied."""

from __future__ import annotations

import time
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.export.colors import TRACK_COLORS
from wbcap.io.progress import Progress, timed
from wbcap.smooth.track import SmoothedTrack


def render_video(
    path: Path, frames: Iterable, size: tuple[int, int], fps: Fraction | float,
    tracks: dict[int, SmoothedTrack], by_frame: dict[int, list[tuple[int, int]]], body: Any, faces: np.ndarray,
    device: Any, focal: float, princpt: tuple[float, float], *, audio_from: Path | None = None,
    audio_start: float = 0.0, audio_end: float | None = None, progress: Progress | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Write ``path`` from ``frames`` (:class:`~wbcap.io.video_reader.Frame` objects, ``size``
    ``(W, H)`` pixels, nominal ``fps``), with the rows of ``tracks`` that ``by_frame`` lists
    per frame index (:func:`wbcap.smooth.track.rows_by_frame`) rendered under the video camera
    ``focal``, ``princpt`` (pixels). ``audio_from``: a file whose audio between
    ``audio_start`` and ``audio_end`` seconds is copied (``None``: no audio). Reports
    ``("render", n, None)`` to ``progress``; ``timings`` gets ``render_decode``, ``render``
    and ``encode`` seconds.
    """
    from wbcap.export.render import render_meshes
    from wbcap.export.track_meshes import TrackVertices
    from wbcap.io.video_writer import VideoWriter

    timings = {} if timings is None else timings
    vertices = TrackVertices(tracks, body, device)
    n = 0
    with VideoWriter(path, size[0], size[1], fps, audio_from=audio_from, audio_start=audio_start,
                     audio_end=audio_end) as writer:
        for frame in timed(frames, timings, "render_decode"):
            t1 = time.perf_counter()
            people = sorted(by_frame.get(frame.index, []))
            image = frame.image
            if people:
                meshes = [vertices(tid, row) for tid, row in people]
                colors = np.asarray([TRACK_COLORS[tid % len(TRACK_COLORS)] for tid, _ in people], np.float32)
                # One sample per pixel: 4x multisampling was a third of a frame's time (the photos keep it).
                image = render_meshes(image, meshes, faces, (focal, focal), princpt, colors=colors, multisample=False)
            t2 = time.perf_counter()
            timings["render"] = timings.get("render", 0.0) + (t2 - t1)
            writer.write(image, time=frame.time)  # each frame at its source time: VFR kept
            timings["encode"] = timings.get("encode", 0.0) + (time.perf_counter() - t2)
            n += 1
            if progress:
                progress("render", n, None)
    return path
