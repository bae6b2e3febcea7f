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
