"""render.mp4 (wbcap.export.video_render): decoding and posing ahead, drawing, and encoding in
three threads give the video that drawing and encoding frame by frame gives; a failure in any
of them is raised and leaves no video and no thread behind."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from test_track_meshes import random_track

from wbcap.export.colors import TRACK_COLORS
from wbcap.export.render import render_meshes
from wbcap.export.track_meshes import track_vertices
from wbcap.export.video_render import render_video
from wbcap.io.video_reader import Frame
from wbcap.io.video_writer import VideoWriter
from wbcap.smooth.track import rows_by_frame

W, H = 160, 120
FOCAL, PRINCPT = 150.0, (W / 2.0, H / 2.0)


def _frames(n: int) -> list[Frame]:
    """Frames of distinct flat colours, at uneven times (kept in the output)."""
    return [Frame(index=i, time=0.1 * i + 0.01 * (i % 2), image=np.full((H, W, 3), (20 * i, 200 - 15 * i, 90), np.uint8))
            for i in range(n)]


def _decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


def _no_render_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("wbcap-render-")]


@pytest.fixture
def scene(body_layer):
    tracks = {2: random_track(5, 0), 9: random_track(4, 1)}  # rows at frames 0, 2, 4, ...
    tracks[9].frame[:] += 1  # the other track at frames 1, 3, 5, 7
    return tracks, rows_by_frame(tracks), np.asarray(body_layer.faces, np.int64)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_render_video_equals_drawing_and_encoding_frame_by_frame(tmp_path, body_layer, scene):
    tracks, by_frame, faces = scene
    frames = _frames(10)
    timings: dict[str, float] = {}
    out = render_video(tmp_path / "render.mp4", frames, (W, H), Fraction(10), tracks, by_frame, body_layer, faces,
                       "cpu", FOCAL, PRINCPT, timings=timings)
    assert set(timings) == {"render_decode", "render", "encode", "rendering"}
    assert _no_render_threads()

    ref = tmp_path / "reference.mp4"
    with VideoWriter(ref, W, H, Fraction(10)) as writer:
        for frame in frames:
            people = by_frame.get(frame.index, [])
            meshes = [track_vertices(body_layer, tracks[t], np.array([r]), "cpu")[0] for t, r in people]
            image = frame.image
            if meshes:
                colors = [TRACK_COLORS[{2: 0, 9: 1}[t]] for t, _ in people]  # by first frame (id % 8: 2 and 1)
                image = render_meshes(image, meshes, faces, (FOCAL, FOCAL), PRINCPT, colors=colors, multisample=False)
            writer.write(image, time=frame.time)
    got, got_times = _decoded(out)
    want, want_times = _decoded(ref)
    assert len(got) == len(frames) and got_times == want_times
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")
    drawn = [i for i in range(len(frames)) if i in by_frame]
    assert all(np.abs(got[i].astype(int) - frames[i].image).max() > 50 for i in drawn)  # someone was drawn


def test_a_decoding_failure_is_raised_and_leaves_no_video(tmp_path, body_layer, scene):
    tracks, by_frame, faces = scene

    def frames():
        yield from _frames(3)
        raise OSError("truncated packet in clip.mp4")

    path = tmp_path / "render.mp4"
    with pytest.raises(OSError, match="truncated"):
        render_video(path, frames(), (W, H), Fraction(10), tracks, by_frame, body_layer, faces, "cpu", FOCAL, PRINCPT)
    assert list(tmp_path.iterdir()) == [] and _no_render_threads()


def test_an_encoding_failure_is_raised_and_leaves_no_video(tmp_path, body_layer, scene):
    tracks, by_frame, faces = scene
    frames = _frames(6)
    frames[4] = Frame(index=4, time=frames[4].time, image=np.zeros((H + 2, W, 3), np.uint8))  # not the video's size

    path = tmp_path / "render.mp4"
    with pytest.raises(ValueError, match=r"frame must be \(120, 160, 3\) uint8 RGB, got \(122, 160, 3\)"):
        render_video(path, frames, (W, H), Fraction(10), {}, {}, body_layer, faces, "cpu", FOCAL, PRINCPT)
    assert list(tmp_path.iterdir()) == [] and _no_render_threads()
