"""Frame times of files with broken timestamps, and variable-frame-rate writing.

Reading (issue 10, item 1): files whose decoded frame times come out of order or repeated
(presentation times permuted against decode order in MP4/MKV, repeated times, DivX-style
packed B-frames and dropped chunks in AVI) must give strictly increasing ``Frame.time`` equal to
the true presentation times. "True" here: these files are built at a constant rate, so frame
``i`` in display order is shown at ``i / fps`` (Matroska stores milliseconds: 1 ms tolerance);
for the AVI with dropped chunks, the chunk's slot over the rate.

Writing (item 2): ``VideoWriter.write(image, time=t)`` writes a variable-frame-rate stream whose
frames play at the source's times and whose length is the source's.

Every file is generated here with PyAV: 64x48 pixels, a dozen frames or so.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from wbcap.io.video_probe import probe_video  # noqa: E402
from wbcap.io.video_reader import open_frames  # noqa: E402
from wbcap.io.video_writer import WRITER_TIME_BASE, VideoWriter  # noqa: E402
from wbcap.testing.videos import (  # noqa: E402
    H,
    W,
    draw,
    encode,
    make_packed_b_avi,
    make_vfr_with_audio,
    mux,
    picture_number,
    stream_times,
)


def raw_frame_times(path: Path) -> list[float]:
    """Frame times as FFmpeg's decoder delivers them (what wbcap used to report)."""
    c = av.open(str(path))
    try:
        s = c.streams.video[0]
        return [float(f.pts * f.time_base) for f in c.decode(s)]
    finally:
        c.close()


def retime_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "timestamps" in r.getMessage()]


# --------------------------------------------------------------------------------------------
# Reading: MP4 / MKV with presentation times permuted or repeated


@pytest.mark.parametrize(("ext", "codec"), [("mp4", "libx264"), ("mkv", "libx264"),
                                            ("mp4", "mpeg4")])
def test_pts_swapped_in_pairs(tmp_path: Path, caplog: pytest.LogCaptureFixture, ext: str,
                              codec: str) -> None:
    n, fps = 12, 30
    packets = encode(codec, n, fps)  # no B-frames: decode order = display order of pictures
    assert [p.pts for p in packets] == list(range(n))
    swapped = [i ^ 1 for i in range(n)]  # 1, 0, 3, 2, ...: every pair's times exchanged
    path = mux(tmp_path / f"swapped.{ext}", codec, fps, packets, swapped,
               [i - 2 for i in range(n)], [p.is_keyframe for p in packets], Fraction(1, fps))
    raw = raw_frame_times(path)
    assert any(b <= a for a, b in zip(raw, raw[1:]))  # the file really is broken

    tol = 1e-3 if ext == "mkv" else 1e-9
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        frames = list(open_frames(path))
    times = [f.time for f in frames]
    assert [f.index for f in frames] == list(range(n))
    assert times == pytest.approx([i / fps for i in range(n)], abs=tol)
    assert all(b > a for a, b in zip(times, times[1:]))
    assert [picture_number(f.image) for f in frames] == list(range(n))
    assert retime_warnings(caplog) == [f"{path}: 12 of 12 frames had missing, repeated or "
                                       "out-of-order timestamps (first at 0.000 s); retimed "
                                       "them so frame times strictly increase"]

    later = list(open_frames(path, start=0.2, every=2))  # a seek to the key frame at 6/30 s
    assert [f.index for f in later] == [6, 8, 10]
    assert [f.time for f in later] == pytest.approx([6 / fps, 8 / fps, 10 / fps], abs=tol)
    assert [picture_number(f.image) for f in later] == [6, 8, 10]
    assert [f.index for f in open_frames(path, start=0.09, max_frames=2)] == [3, 4]
    assert [f.index for f in open_frames(path, start=0.09, end=0.2)] == [3, 4, 5]


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_repeated_timestamp(tmp_path: Path, caplog: pytest.LogCaptureFixture, ext: str) -> None:
    n, fps = 10, 30
    packets = encode("libx264", n, fps)
    stamps = [0, 1, 2, 2, 4, 5, 6, 7, 8, 9]  # frame 3 (true time 3/30) carries frame 2's time
    path = mux(tmp_path / f"repeated.{ext}", "libx264", fps, packets, stamps,
               [i - 1 for i in range(n)] if ext == "mp4" else stamps,
               [p.is_keyframe for p in packets], Fraction(1, fps))
    assert raw_frame_times(path)[2:4] == pytest.approx([2 / fps, 2 / fps], abs=1e-3)

    info = probe_video(path)
    assert info.fps == pytest.approx(fps, rel=0.02)
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        times = [f.time for f in open_frames(path)]
    # Repair rule: previous time + one nominal interval (1 / info.fps); here = the true time.
    assert times[3] == pytest.approx(times[2] + 1 / info.fps, abs=1e-9)
    assert times == pytest.approx([i / fps for i in range(n)], abs=2e-3)
    assert all(b > a for a, b in zip(times, times[1:]))
    warnings = retime_warnings(caplog)
    assert len(warnings) == 1 and ": 1 of 10 frames" in warnings[0]
    assert "first at 0.10" in warnings[0]

    # Selections use the repaired times: frame 3 is at 0.1 s, not 0.067 s.
    later = list(open_frames(path, start=0.09, max_frames=2))
    assert [(f.index, f.time) for f in later] == [(3, times[3]), (4, times[4])]
    assert [f.index for f in open_frames(path, end=0.09)] == [0, 1, 2]
    assert [f.index for f in open_frames(path, start=0.05, end=0.11)] == [2, 3]


def test_garbage_timestamps_never_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n, fps = 14, 30
    packets = encode("libx264", n, fps, gop=4)
    rng = np.random.default_rng(3)
    stamps = sorted(rng.integers(0, 8, n).tolist())  # many repeats, a compressed range
    stamps[5], stamps[9] = stamps[9], stamps[5]  # and one long-distance swap
    dts = [min(stamps[i:]) for i in range(n)]  # non-decreasing, <= pts
    path = mux(tmp_path / "garbage.mkv", "libx264", fps, packets, stamps, dts,
               [p.is_keyframe for p in packets], Fraction(1, fps))
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        frames = list(open_frames(path))
    times = [f.time for f in frames]
    assert len(frames) == n and [f.index for f in frames] == list(range(n))
    assert all(b > a for a, b in zip(times, times[1:]))
    assert [picture_number(f.image) for f in frames] == list(range(n))
    assert len(retime_warnings(caplog)) == 1
    for start in (0.05, 0.15, times[6]):  # index and time of a range = those of the full read
        assert [(f.index, f.time) for f in open_frames(path, start=start)] == \
            [(f.index, f.time) for f in frames if f.time >= start - 1e-6]


def test_cut_mid_gop_indices_do_not_depend_on_start(tmp_path: Path) -> None:
    """An MPEG-TS whose first bytes are cut off starts in the middle of a GOP: its first packets
    never decode. Frame indices count decoded frames, with or without ``start``."""
    n, fps = 16, 10
    whole = tmp_path / "whole.ts"
    with av.open(str(whole), "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"bf": "0", "g": "6", "sc_threshold": "0"}  # key frames at 0, 6, 12
        for i in range(n):
            for pkt in s.encode(av.VideoFrame.from_ndarray(draw(i), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    data = whole.read_bytes()
    path = tmp_path / "cut.ts"
    path.write_bytes(data[len(data) // 4 // 188 * 188:])  # whole 188-byte TS packets

    frames = list(open_frames(path))
    pictures = [picture_number(f.image) for f in frames]
    assert pictures[0] % 6 == 0 and pictures[0] > 0  # starts at a key frame after the cut...
    assert pictures == list(range(pictures[0], n))  # ...and every picture from there decodes
    assert [f.index for f in frames] == list(range(len(frames)))
    for start in (0.01, frames[1].time, frames[4].time - 0.05, frames[7].time):
        later = list(open_frames(path, start=start))
        assert [(f.index, f.time, picture_number(f.image)) for f in later] == \
            [(f.index, f.time, p) for f, p in zip(frames, pictures) if f.time >= start - 1e-6], start


# --------------------------------------------------------------------------------------------
# Reading: AVI (packed B-frames, ordinary B-frames, dropped chunks)


def test_packed_b_frame_avi(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n, fps = 12, 25
    path = make_packed_b_avi(tmp_path / "packed.avi", n, fps)
    raw = raw_frame_times(path)  # FFmpeg: 0.04, 0.12, 0.08, 0.2, 0.16, ... (the bug)
    assert raw[:5] == pytest.approx([0.04, 0.12, 0.08, 0.2, 0.16])

    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        frames = list(open_frames(path))
    assert [f.index for f in frames] == list(range(n))
    assert [f.time for f in frames] == pytest.approx([i / fps for i in range(n)], abs=1e-9)
    assert [picture_number(f.image) for f in frames] == list(range(n))  # decoded in order
    assert retime_warnings(caplog) == []  # chunk times are the file's own timing, not a repair

    later = list(open_frames(path, start=0.3))  # seek to the key frame at 0.24 s, then decode
    assert [(f.index, f.time) for f in later] == [(i, pytest.approx(i / fps)) for i in
                                                  range(8, n)]
    assert [picture_number(f.image) for f in later] == list(range(8, n))


def test_ffmpeg_b_frame_avi(tmp_path: Path) -> None:
    """FFmpeg's own (unpacked) B-frames in AVI: the decoder's times start one frame late."""
    n, fps = 12, 25
    packets = encode("mpeg4", n, fps, b_frames=2)
    slots = list(range(n))
    path = mux(tmp_path / "bframes.avi", "mpeg4", fps, packets, slots, slots,
               [p.is_keyframe for p in packets], Fraction(1, fps))
    assert raw_frame_times(path)[0] == pytest.approx(1 / fps)
    frames = list(open_frames(path))
    assert [f.time for f in frames] == pytest.approx([i / fps for i in range(n)], abs=1e-9)
    assert [picture_number(f.image) for f in frames] == list(range(n))
    later = list(open_frames(path, start=0.2, max_frames=3))
    assert [(f.index, f.time) for f in later] == [(i, pytest.approx(i / fps)) for i in (5, 6, 7)]


def test_avi_dropped_chunks_keep_their_time(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Empty (dropped-frame) chunks: times follow the chunks, not index / fps."""
    fps = 25
    packets = encode("mpeg4", 8, fps, gop=4)
    slots = [0, 1, 2, 5, 6, 7, 9, 10]  # the muxer writes empty chunks for 3, 4 and 8
    path = mux(tmp_path / "dropped.avi", "mpeg4", fps, packets, slots, slots,
               [p.is_keyframe for p in packets], Fraction(1, fps))
    assert probe_video(path).frame_count == 11  # the header counts the empty chunks
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        frames = list(open_frames(path))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # not "truncated"
    assert [f.index for f in frames] == list(range(8))
    assert [f.time for f in frames] == pytest.approx([s / fps for s in slots], abs=1e-9)
    later = list(open_frames(path, start=0.21))
    assert [(f.index, f.time) for f in later] == [(i, pytest.approx(slots[i] / fps))
                                                  for i in range(4, 8)]


# --------------------------------------------------------------------------------------------
# Writing at the frames' own times


# 30 fps for 0.3 s, then 10 fps up to 1.3 s (ticks of 1/300 s); the last frame lasts 0.1 s.
VFR_TICKS = list(range(0, 90, 10)) + list(range(90, 391, 30))


def test_writer_keeps_variable_frame_rate_and_audio(tmp_path: Path) -> None:
    src_path = make_vfr_with_audio(tmp_path / "vfr.mp4", VFR_TICKS, 30, Fraction(1, 300))
    info = probe_video(src_path)
    assert info.duration == pytest.approx(1.4) and info.has_audio
    src = list(open_frames(src_path))
    assert [f.time for f in src] == pytest.approx([t / 300 for t in VFR_TICKS], abs=1e-9)

    out = tmp_path / "out.mp4"
    with VideoWriter(out, W, H, info.fps_fraction, audio_from=src_path) as w:
        for f in src:
            w.write(f.image, time=f.time)
    assert w.frames_written == len(src) == 20

    times, duration, audio = stream_times(out)
    assert len(times) == 20
    intervals = np.diff([f.time for f in src] + [1.4])
    assert np.all(np.abs(np.array(times) - [f.time for f in src]) < intervals / 2)
    assert times == pytest.approx([f.time for f in src], abs=1e-4)  # 1/90000 s ticks
    assert duration == pytest.approx(info.duration, abs=1 / 30)
    assert probe_video(out).duration == pytest.approx(1.4, abs=1e-3)
    assert audio == pytest.approx(1.4, abs=0.03)
    back = list(open_frames(out))
    assert [f.time for f in back] == pytest.approx([f.time for f in src], abs=1e-4)
    assert [picture_number(f.image) for f in back] == list(range(20))


def test_writer_times_from_a_cut_start_at_audio_start(tmp_path: Path) -> None:
    src_path = make_vfr_with_audio(tmp_path / "vfr.mp4", VFR_TICKS, 30, Fraction(1, 300))
    src = open_frames(src_path, start=0.25, end=1.05)
    out = tmp_path / "cut.mkv"
    with VideoWriter(out, W, H, 30, audio_from=src_path, audio_start=0.25,
                     audio_end=1.05) as w:
        kept = []
        for f in src:
            w.write(f.image, time=f.time)
            kept.append(f.time)
    times, duration, _ = stream_times(out)
    assert kept[0] == pytest.approx(0.8 / 3)
    assert times == pytest.approx([t - 0.25 for t in kept], abs=1e-3)  # ms in Matroska
    assert duration == pytest.approx(1.1 - 0.25, abs=0.03)  # last frame 1.0 s + 0.1 s


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_writer_sparse_frames(tmp_path: Path, ext: str) -> None:
    times_in = [0.0, 0.3, 0.35, 1.2, 2.0, 2.1, 3.3, 3.9, 4.0, 4.5]  # 10 frames over 5 s
    out = tmp_path / f"sparse.{ext}"
    with VideoWriter(out, W, H, 30) as w:
        for i, t in enumerate(times_in):
            w.write(draw(i), time=t)
    times, duration, audio = stream_times(out)
    assert times == pytest.approx(times_in, abs=1e-3)
    assert duration == pytest.approx(5.0, abs=1e-3)  # last frame lasts 0.5 s, as the one before
    assert probe_video(out).duration == pytest.approx(5.0, abs=1e-3)  # not 10 / 30 s
    assert audio is None


def test_frames_hours_apart_are_written_in_a_coarser_time_base(tmp_path: Path) -> None:
    """`wbcap run --every 500000` on 10 fps footage renders frames 50 000 s apart: in 1/90000 s
    ticks a frame's duration passed MP4's 32 bits and the muxer failed (EINVAL) on every try."""
    from fractions import Fraction

    from wbcap.io.video_writer import timed_time_base

    assert timed_time_base(Fraction(25)) == WRITER_TIME_BASE
    assert timed_time_base(Fraction(1, 50_000)) == Fraction(1, 1_000)
    assert timed_time_base(Fraction(1, 10**9)) == Fraction(1, 1)
    # (200 000 s apart failed too: MP4 doubled a 1/1000 timescale to 1/16000; `--every 1000000` on 5 fps)
    for interval in (50_000, 200_000, 10**9):
        for name, times in (("apart.mp4", [0.0, interval, 2.0 * interval]), ("one.mp4", [3.0]),
                            ("apart.mkv", [0.0, interval])):
            with VideoWriter(tmp_path / name, W, H, Fraction(1, interval)) as w:
                for i, t in enumerate(times):
                    w.write(draw(i), time=t)
            got, duration, _ = stream_times(tmp_path / name)
            assert got == pytest.approx(times), (interval, name)
            assert duration == pytest.approx(times[-1] - times[0] + interval), (interval, name)


def test_a_gap_longer_than_the_time_base_holds_is_one_line_or_fits_when_announced(tmp_path: Path) -> None:
    """Frames of a 30 fps source 30 000 s apart (a variable-frame-rate recording with a pause of
    8 hours): the nominal rate chose 1/90000 s, where the gap passes the muxer's 32 bits, and the
    MP4 muxer failed at the end with "Invalid argument" (a review). Now the write says so in one
    line and leaves no file; given the longest gap ahead (as ``wbcap run`` does from its frame
    times), the writer takes a time base that holds it."""
    from wbcap.errors import InputError
    from wbcap.io.video_writer import timed_time_base

    times = [0.0, 1 / 30, 30_000.0, 30_000.0 + 1 / 30]
    out = tmp_path / "gap.mp4"
    with pytest.raises(InputError) as err, VideoWriter(out, W, H, 30) as w:
        for i, t in enumerate(times):
            w.write(draw(i), time=t)
    assert str(err.value) == (f"{out}: frames 30000 s apart (at 0.033 and 30000.000 s) do not fit the video's time base "
                              "of 1/90000 s; give the writer the longest interval between frames (longest_interval=)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no video, no temporary
    assert timed_time_base(Fraction(30), longest_interval=23_000.0) == WRITER_TIME_BASE  # (2.07e9 ticks)
    assert timed_time_base(Fraction(30), longest_interval=30_000.0) == Fraction(1, 1_000)
    assert timed_time_base(Fraction(30), longest_interval=3e6) == Fraction(1, 1)  # 35 days
    for name in ("gap.mp4", "gap.mkv"):
        with VideoWriter(tmp_path / name, W, H, 30, longest_interval=30_000.0) as w:
            for i, t in enumerate(times):
                w.write(draw(i), time=t)
        got, _, _ = stream_times(tmp_path / name)
        assert got == pytest.approx(times, abs=1e-3), name


def test_writer_time_rules(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "one.mp4", W, H, 25) as w:
        w.write(draw(0), time=0.0)
    assert stream_times(tmp_path / "one.mp4")[1] == pytest.approx(0.04)  # one frame: 1 / fps

    with VideoWriter(tmp_path / "close.mp4", W, H, 25) as w:
        w.write(draw(0), time=1.0)
        w.write(draw(1), time=1.0 + 1e-7)  # distinct, closer than one tick: one tick apart
        w.write(draw(2), time=1.04)
        with pytest.raises(ValueError, match="not after the previous"):
            w.write(draw(3), time=1.04)
        with pytest.raises(ValueError, match="for every frame or for none"):
            w.write(draw(3))
    times, _, _ = stream_times(tmp_path / "close.mp4")
    assert times == pytest.approx([1.0, 1.0 + float(WRITER_TIME_BASE), 1.04], abs=1e-9)

    with VideoWriter(tmp_path / "origin.mp4", W, H, 25, audio_start=2.0) as w:
        with pytest.raises(ValueError, match="before audio_start"):
            w.write(draw(0), time=1.5)
        with pytest.raises(ValueError, match="not a number"):
            w.write(draw(0), time=float("nan"))
        w.write(draw(0), time=2.0 - 1e-7)  # within the reader's tolerance: time 0
        w.write(draw(1), time=2.5)
    assert stream_times(tmp_path / "origin.mp4")[0] == pytest.approx([0.0, 0.5])

    with VideoWriter(tmp_path / "cfr.mp4", W, H, 25) as w:  # without times: constant rate
        w.write(draw(0))
        with pytest.raises(ValueError, match="for every frame or for none"):
            w.write(draw(1), time=0.5)
        w.write(draw(1))
    assert stream_times(tmp_path / "cfr.mp4")[0] == pytest.approx([0.0, 0.04])
