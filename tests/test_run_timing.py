"""`wbcap run` end to end on footage with broken or variable timing (generated, 64x48).

* Files whose frame times come out of order (MP4/MKV with presentation times swapped in pairs, a
  DivX-style packed-B-frame AVI) complete, with strictly increasing times equal to the display
  times, and so does ``--resume`` on them.
* Variable-frame-rate footage renders with every frame at its source time and the source's
  length (audio kept in step).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.io.video_probe import probe_video
from wbcap.testing.videos import encode, make_packed_b_avi, make_vfr_with_audio, mux, stream_times


@pytest.fixture()
def base_args(micro_ckpt, body_dir):
    return ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu",
            "--detector", "full", "--min-track", "1"]


def invoke(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def swapped_pts(path: Path, n: int = 10, fps: int = 30) -> Path:
    """No B-frames, presentation times swapped in pairs (1, 0, 3, 2, ...), dts = i - 2."""
    packets = encode("libx264", n, fps)
    return mux(path, "libx264", fps, packets, [i ^ 1 for i in range(n)], [i - 2 for i in range(n)],
               [p.is_keyframe for p in packets], Fraction(1, fps))


def times_of(out: Path) -> list[float]:
    return [json.loads(x)["time"] for x in (out / "params.jsonl").read_text().splitlines()]


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("kind", ["mp4", pytest.param("mkv", marks=pytest.mark.slow), pytest.param("avi", marks=pytest.mark.slow)])
def test_out_of_order_timestamps_run_and_resume(tmp_path, base_args, kind):
    if kind == "avi":
        src, fps, n, tol = make_packed_b_avi(tmp_path / "packed.avi", 10, 25), 25, 10, 1e-9
    else:
        src, fps, n, tol = swapped_pts(tmp_path / f"swapped.{kind}"), 30, 10, 1e-3  # mkv: ms ticks
    out = tmp_path / "out"
    invoke("run", src, "-o", out, "--no-render", *base_args)
    t = times_of(out)
    np.testing.assert_allclose(t, np.arange(n) / fps, atol=tol)
    assert np.all(np.diff(t) > 0)
    npz = np.load(out / "track_0.npz")  # one row per frame on the regular clock, none filled
    assert npz["valid"].all() and npz["frame_indices"].tolist() == list(range(n))
    np.testing.assert_allclose(npz["times"], t, atol=tol)  # rows on the exact clock
    if kind != "mp4":
        return
    # killed after 4 frames, then resumed: the same times, no failure
    raw = (out / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True)
    (out / ".wbcap" / "raw.jsonl").write_text("".join(raw[:4]))
    (out / "params.jsonl").unlink()
    invoke("run", src, "-o", out, "--no-render", "--resume", *base_args)
    np.testing.assert_allclose(times_of(out), t, atol=1e-12)


# 30 fps for 0.2 s, then 10 fps to 0.6 s (ticks of 1/300 s); the last frame lasts 0.1 s: 0.7 s.
VFR_TICKS = list(range(0, 60, 10)) + list(range(60, 181, 30))


def check_render(src: Path, render: Path) -> None:
    """Every frame at its source time (<= half a frame off), length = the source's (<= 1 frame)."""
    src_times, src_duration, _ = stream_times(src)
    times, duration, audio = stream_times(render)
    assert len(times) == len(src_times)
    intervals = np.diff(src_times + [src_duration])
    assert np.all(np.abs(np.asarray(times) - src_times) <= intervals / 2)
    assert abs(duration - src_duration) <= intervals.max()
    return audio


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_variable_frame_rate_render_keeps_source_times_and_audio(tmp_path, base_args):
    src = make_vfr_with_audio(tmp_path / "vfr.mp4", VFR_TICKS, 30, Fraction(1, 300))
    out = tmp_path / "out"
    invoke("run", src, "-o", out, *base_args)
    audio = check_render(src, out / "render.mp4")
    assert audio == pytest.approx(0.7, abs=0.05)
    # params.jsonl carries the same source times
    np.testing.assert_allclose(times_of(out), np.asarray(VFR_TICKS) / 300, atol=1e-6)
    # the track files are resampled on the average clock (11 frames in 0.6 s: 16.7 fps): each row is
    # the track at the row's own time (it was the nearest frame's values, up to half a period off;
    # a user trial). The body joints turned about z at rates of their own, exported again:
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    rates = 0.2 * np.arange(1, 22)  # (rad/s: under pi in 0.6 s)
    for line in lines:
        line["body_pose"] = np.stack([np.zeros(21), np.zeros(21), rates * line["time"]], 1).reshape(-1).tolist()
    (out / "params.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    invoke("export", out, "--format", "npz,csv", "--body-models", base_args[3])
    npz = np.load(out / "track_0.npz")
    assert float(npz["mocap_framerate"]) == pytest.approx(10 / 0.6) and npz["valid"].all()
    np.testing.assert_allclose(npz["times"], np.arange(11) * 0.06, atol=1e-9)
    body = npz["poses"][:, 3:66].reshape(-1, 21, 3)
    np.testing.assert_allclose(body[..., 2], npz["times"][:, None] * rates[None], atol=1e-6)
    nearest = np.abs(np.asarray(times_of(out))[None] - npz["times"][:, None]).argmin(1)
    assert npz["frame_indices"].tolist() == [lines[k]["frame"] for k in nearest]


@pytest.mark.slow  # the other variable-rate test runs in the fast loop
def test_sparse_variable_frame_rate_render_lasts_as_long_as_the_source(tmp_path, base_args):
    ticks = [0, 40, 90, 300, 310, 700, 1000, 1200, 1250, 1400]  # 10 frames over 5 s (1/300 s ticks)
    src = make_vfr_with_audio(tmp_path / "sparse.mp4", ticks, 100, Fraction(1, 300))
    assert probe_video(src).duration == pytest.approx(5.0, abs=1e-3)
    out = tmp_path / "out"
    invoke("run", src, "-o", out, *base_args)
    check_render(src, out / "render.mp4")
    assert stream_times(out / "render.mp4")[1] == pytest.approx(5.0, abs=0.35)


def _paused_clip(path: Path, times_ms: list[int]) -> Path:
    """A 64x48 H.264 Matroska clip whose frames (``draw(i)``) show at ``times_ms``."""
    import av

    from wbcap.testing.videos import draw

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


@pytest.mark.slow  # two runs (the second pass 2 only)
def test_the_parts_of_a_split_track_are_smoothed_as_the_tracks_they_would_be(tmp_path, base_args, micro_ckpt_raw):
    """A review: a track split into parts (a pause of 6 s in the source that --max-age lets it
    live through) was smoothed as one sequence, the 1-euro filter carrying each part's poses into
    the other's ends. Each part's poses are now those of the track it is without --max-age (the
    track ends at the pause, the person after it a new id). The network's heads as drawn: poses
    that change with the frames."""
    src = _paused_clip(tmp_path / "paused.mkv", [0, 100, 200, 300, 6_300, 6_400, 6_500, 6_600])
    out = tmp_path / "out"
    base_args = ["--checkpoint", str(micro_ckpt_raw), *base_args[2:]]
    invoke("run", src, "-o", out, "--export", "npz", "--no-render", *base_args)
    apart = {}
    for name in ("track_0.npz", "track_1.npz"):
        with np.load(out / name) as f:
            apart[name] = f["poses"]
    invoke("run", src, "-o", out, "--resume", "--max-age", "300000", "--export", "npz", "--no-render", *base_args)
    for part, alone in zip(("track_0_part1.npz", "track_0_part2.npz"), apart.values()):
        with np.load(out / part) as f:
            assert f["poses"].shape == alone.shape == (4, 165) and np.ptp(alone, axis=0).max() > 1e-3
            np.testing.assert_array_equal(f["poses"], alone)
    r = invoke("export", out, "--format", "npz", "--dest", tmp_path / "again")  # (at the run's --max-gap: as the run's)
    assert "smooths them piece by piece" not in r.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["smoothed_max_gap"] == meta["max_gap"] == 1.0
    (out / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "smoothed_max_gap"}))
    r = invoke("export", out, "--format", "npz", "--dest", tmp_path / "older")  # (a run made before it was recorded)
    assert ("track 0 split at --max-gap 1 s where the run, made before wbcap smoothed the pieces of a track apart, "
            "smoothed every track whole") in " ".join(r.output.split()), r.output
    # smoothed whole (a --max-gap over the pause), then split by `wbcap export` at a smaller one: said (a break-it trial)
    invoke("run", src, "-o", out, "--resume", "--max-age", "300000", "--max-gap", "10", "--export", "npz",
           "--no-render", *base_args)
    r = invoke("export", out, "--format", "npz", "--max-gap", "1", "--dest", tmp_path / "split")
    assert (f"{out}: track 0 split at --max-gap 1 s where the run smoothed it as one piece there (its --max-gap 10 s): "
            "each piece's ends keep what the other side gave the smoothing; a resume of the run with --max-gap 1 "
            "smooths them piece by piece") in " ".join(r.output.split()), r.output
    with np.load(tmp_path / "split" / "track_0_part1.npz") as f:
        assert not np.array_equal(f["poses"], apart["track_0.npz"])


@pytest.mark.slow  # the other variable-rate test runs in the fast loop
def test_a_source_paused_for_hours_renders_and_splits_its_tracks(tmp_path, base_args):
    """A variable-frame-rate recording paused for 8 hours between two stretches (a motion-triggered
    camera): render.mp4's 1/90000 s ticks could not hold the gap (the MP4 muxer's "Invalid
    argument", a crash report at the end of the run), and the track's files filled the pause with
    300 000 interpolated rows. Now the render takes a time base that holds the longest gap, and
    the track ends at the pause, the person after it a new id (an HCI trial: across a pause the
    tracker, counting frames, gave an id to another man; with --max-age long enough to live
    through it, the track is split into parts at it: a review)."""
    times_ms = [0, 100, 200, 30_000_000, 30_000_100, 30_000_200]
    src = _paused_clip(tmp_path / "paused.mkv", times_ms)
    out = tmp_path / "out"
    r = invoke("run", src, "-o", out, "--export", "npz", *base_args)
    assert ("1 pause(s) in the source longer than --max-age allows a missed track (over --max-age + 1.5 frame "
            "intervals and 4.5: 0.65 s at the first; before 30000.00 s)") in " ".join(r.output.split()), r.output
    expected = [t / 1000 for t in times_ms]
    assert stream_times(out / "render.mp4")[0] == pytest.approx(expected, abs=1e-3)
    files = sorted(p.name for p in out.glob("track_*.npz"))
    assert files == ["track_0.npz", "track_1.npz"], files
    for name, first in zip(files, (0.0, 30_000.0)):
        with np.load(out / name) as f:
            assert f["times"].shape == (3,) and f["valid"].all() and f["times"][0] == pytest.approx(first)
    invoke("run", src, "-o", out, "--resume", "--max-age", "300000", "--export", "npz", *base_args)  # (pass 2 only)
    parts = sorted(p.name for p in out.glob("track_*.npz"))
    assert parts == ["track_0_part1.npz", "track_0_part2.npz"], parts
    for name, first in zip(parts, (0.0, 30_000.0)):
        with np.load(out / name) as f:
            assert f["times"].shape == (3,) and f["valid"].all() and f["times"][0] == pytest.approx(first)
