"""Posed meshes of smoothed tracks: chunked SMPL-X calls (rendering) equal one call per row."""

from __future__ import annotations

import numpy as np

from wbcap.export.track_meshes import OBJ_CHUNK, TrackVertices, track_vertices
from wbcap.smooth.track import SmoothedTrack


def random_track(n: int, seed: int) -> SmoothedTrack:
    rng = np.random.default_rng(seed)
    f32 = lambda *s, scale=0.2: (scale * rng.standard_normal(s)).astype(np.float32)
    betas = f32(10, scale=0.5)
    return SmoothedTrack(
        frame=np.arange(n, dtype=np.int64) * 2, time=np.arange(n) / 10.0, box=np.zeros((n, 4), np.float32),
        global_orient=f32(n, 3), body_pose=f32(n, 63), left_hand_pose=f32(n, 45), right_hand_pose=f32(n, 45),
        jaw_pose=f32(n, 3), expression=f32(n, 10), transl=f32(n, 3) + np.float32([0, 0, 4]), betas=betas,
    )


def test_chunked_vertices_equal_one_call_per_row(body_layer):
    tracks = {3: random_track(OBJ_CHUNK + 5, 0), 8: random_track(7, 1)}
    cache = TrackVertices(tracks, body_layer, "cpu")
    # frame order, interleaving the tracks, as rendering asks; compared one by one across the
    # chunk boundary (rows 63/64) and at the ends
    asks = [(tid, row) for row in range(OBJ_CHUNK + 5) for tid in (3, 8) if row < len(tracks[tid].frame)]
    checked = {0, 1, 6, OBJ_CHUNK - 1, OBJ_CHUNK, OBJ_CHUNK + 4}
    for tid, row in asks:
        got = cache(tid, row)
        if row in checked:
            one = track_vertices(body_layer, tracks[tid], np.array([row]), "cpu")[0]
            np.testing.assert_allclose(got, one, atol=1e-6, rtol=0)
    # a different pose gives a different mesh (the cache does not hand back a stale row)
    assert np.abs(cache(3, 0) - cache(3, 1)).max() > 1e-3


def test_rendering_holds_the_meshes_of_the_people_in_view_only(body_layer, monkeypatch):
    """render.mp4 of a crowded clip grew by ~0.37 MB a frame, a chunk of meshes kept for every
    track ever seen (a user trial: 3.85 GB after 6360 frames of 689 tracks). Ten short tracks one
    after the other: at each frame only that frame's people hold meshes, and they are the same."""
    from types import SimpleNamespace

    import wbcap.export.track_meshes as track_meshes
    import wbcap.export.video_render as video_render

    tracks = {tid: random_track(6, tid) for tid in range(10)}
    # track t in frames 3t .. 3t+5: two tracks in view at a time
    by_frame: dict[int, list[tuple[int, int]]] = {}
    for tid in tracks:
        for row in range(6):
            by_frame.setdefault(3 * tid + row, []).append((tid, row))
    made = []

    class Recorded(TrackVertices):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(track_meshes, "TrackVertices", Recorded)
    # (the meshes themselves, not the GL-ready buffers)
    monkeypatch.setattr(video_render, "prepare_render", lambda size, meshes, *a, **k: [m.copy() for m in meshes])
    frames = [SimpleNamespace(index=i, image=np.zeros((4, 4, 3), np.uint8)) for i in range(33)]
    drawn = []
    for frame, prepared in video_render._prepared_frames(frames, tracks, by_frame, body_layer, None, "cpu", 1000.0,
                                                         (2.0, 2.0), {}):
        in_view = {tid for tid, _ in by_frame.get(frame.index, [])}
        assert set(made[0]._chunks) == in_view, frame.index
        drawn.append((frame.index, prepared))
    for index, prepared in drawn[::7]:
        for (tid, row), got in zip(sorted(by_frame.get(index, [])), prepared or []):
            np.testing.assert_allclose(got, track_vertices(body_layer, tracks[tid], np.array([row]), "cpu")[0], atol=1e-6)
