"""``wbcap run``'s ``render.mp4``: the source frames decoded again with every tracked mesh drawn
over them, each frame at its source time (variable frame rates kept), the source audio copied."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.export.colors import TRACK_COLORS, track_color_indices
from wbcap.export.render import PreparedRender, draw_prepared, prepare_render
from wbcap.io.progress import Progress, add_time
from wbcap.smooth.track import SmoothedTrack

#: Frames decoded and posed ahead of the one drawn, and drawn frames waiting for the encoder.
_AHEAD = 2


def render_video(
    path: Path, frames: Iterable, size: tuple[int, int], fps: Fraction | float,
    tracks: dict[int, SmoothedTrack], by_frame: dict[int, list[tuple[int, int]]], body: Any, faces: np.ndarray,
    device: Any, focal: float, princpt: tuple[float, float], *, audio_from: Path | None = None,
    audio_start: float = 0.0, audio_end: float | None = None, progress: Progress | None = None,
    timings: dict[str, float] | None = None, longest_interval: float = 0.0, total: int | None = None,
) -> Path:
    """Write ``path`` from ``frames`` (:class:`~wbcap.io.video_reader.Frame` objects, ``size``
    ``(W, H)`` pixels, nominal ``fps``), with the rows of ``tracks`` that ``by_frame`` lists
    per frame index (:func:`wbcap.smooth.track.rows_by_frame`) rendered under the video camera
    ``focal``, ``princpt`` (pixels). ``audio_from``: a file whose audio between
    ``audio_start`` and ``audio_end`` seconds is copied (``None``: no audio).
    ``longest_interval``: the longest gap between two of the frames' times, in seconds, when
    known (for the video's time base: :func:`wbcap.io.video_writer.timed_time_base`). Reports
    ``("render", n, total)`` to ``progress`` (``total``: the number of frames, when known). The
    last frame lasts until ``frames``' ``stretch_end`` when it has one once read (a
    :class:`~wbcap.io.video_reader.FrameSource`'s: ``--end``, the next frame ``--every`` would
    keep, or the source's end), else as long as the interval before it; the audio stops there.

    Three threads overlap (:mod:`wbcap.io.background`): one decodes the next frames, poses
    their people (:class:`~wbcap.export.track_meshes.TrackVertices`) and prepares each frame's
    vertex data with their vertex normals (:func:`~wbcap.export.render.prepare_render`), this
    one draws (:func:`~wbcap.export.render.draw_prepared`; the OpenGL context stays in this
    thread), one encodes the drawn frames. NumPy's BLAS runs one thread meanwhile (below).
    ``timings`` gets ``render_decode`` (decoding, posing, preparing),
    ``render`` (drawing) and ``encode`` seconds, each its own thread's busy time, and
    ``rendering``: the wall time of the whole stage.
    """
    from threadpoolctl import threadpool_limits

    from wbcap.io.background import BackgroundCalls, Prefetch
    from wbcap.io.video_writer import VideoWriter

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    n = 0
    # NumPy's BLAS on one thread (process-wide, restored after): pyrender inverts two 4x4 matrices
    # per frame with np.linalg.inv, which OpenBLAS runs on its thread pool, whose threads then spin
    # in sched_yield; on the 2-core Xeon that took ~1.8 of the 4.8 CPU seconds of a 60-frame
    # render.mp4, from the OpenGL and encoder threads. Torch's MKL (inside libtorch_cpu on x86) is
    # not a library threadpoolctl limits, so posing keeps its threads there.
    with threadpool_limits(limits=1, user_api="blas"), VideoWriter(
            path, size[0], size[1], fps, audio_from=audio_from, audio_start=audio_start, audio_end=audio_end,
            longest_interval=longest_interval) as writer:

        def write(image: np.ndarray, at: float) -> None:
            t = time.perf_counter()
            writer.write(image, time=at)  # each frame at its source time: VFR kept
            add_time(timings, "encode", t)

        people = _prepared_frames(frames, tracks, by_frame, body, faces, device, focal, princpt, timings)
        with Prefetch(people, maxsize=_AHEAD, name="wbcap-render-pose") as ahead, \
                BackgroundCalls(write, maxsize=_AHEAD, name="wbcap-render-encode") as encoder:
            for frame, prepared in ahead:
                t1 = time.perf_counter()
                image = frame.image if prepared is None else draw_prepared(frame.image, prepared)
                add_time(timings, "render", t1)
                encoder.put(image, frame.time)
                n += 1
                if progress:
                    progress("render", n, total)
        stretch_end = getattr(frames, "stretch_end", None)  # (a FrameSource's, once read to its end)
        if stretch_end is not None:
            writer.end_at(stretch_end)  # (not one --every stride past --end or the source's end)
    add_time(timings, "rendering", t0)
    return path


def _prepared_frames(
    frames: Iterable, tracks: dict[int, SmoothedTrack], by_frame: dict[int, list[tuple[int, int]]], body: Any,
    faces: np.ndarray, device: Any, focal: float, princpt: tuple[float, float], timings: dict[str, float],
) -> Iterator[tuple[Any, PreparedRender | None]]:
    """``(frame, prepared)`` per frame: its visible people posed
    (:class:`~wbcap.export.track_meshes.TrackVertices`: float32 vertices, metres, OpenCV camera
    frame) in their tracks' colours
    (:data:`~wbcap.export.colors.TRACK_COLORS`, chosen by
    :func:`~wbcap.export.colors.track_color_indices` from the frames ``by_frame`` gives each
    track, as the viewer chooses them from ``params.jsonl``), made ready to draw with one sample per pixel
    (:func:`~wbcap.export.render.prepare_render`; 4x multisampling was a third of a frame's time,
    the photos keep it); None for a frame with nobody. Adds the seconds to
    ``timings["render_decode"]``."""
    from wbcap.export.track_meshes import TrackVertices

    vertices = TrackVertices(tracks, body, device)
    spans: dict[int, tuple[int, int]] = {}
    for f, people in by_frame.items():
        for tid, _ in people:
            a, b = spans.get(tid, (f, f))
            spans[tid] = (min(a, f), max(b, f))
    color_of = track_color_indices(spans)
    busy = 0.0
    try:
        t = time.perf_counter()
        for frame in frames:
            people = sorted(by_frame.get(frame.index, []))
            vertices.keep(tid for tid, _ in people)  # (memory bounded by the people in view)
            prepared = None
            if people:
                meshes = [vertices(tid, row) for tid, row in people]
                colors = np.asarray([TRACK_COLORS[color_of[tid]] for tid, _ in people], np.float32)
                prepared = prepare_render(frame.image.shape[:2], meshes, faces, (focal, focal), princpt, colors=colors,
                                          multisample=False)
            busy += time.perf_counter() - t
            yield frame, prepared
            t = time.perf_counter()
        busy += time.perf_counter() - t
    finally:
        timings["render_decode"] = timings.get("render_decode", 0.0) + busy
