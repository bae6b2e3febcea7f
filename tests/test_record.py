"""``wbcap record`` (:mod:`wbcap.io.record`): live sources into a Matroska file ``wbcap run`` reads.

A live H.264 stream over UDP (MPEG-TS, sent in real time by a thread of this process, each
frame's grey level its number), FFmpeg's generated pictures and sound (``lavfi``: raw frames, as
a camera's), a Ctrl-C, and bad sources and names; each recording decoded back and checked frame
by frame."""

from __future__ import annotations

import re
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.io.record import RecordJob, record

LAVFI = "testsrc=size=160x96:rate=10[out0];sine=frequency=440:sample_rate=8000[out1]"


def invoke(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r, [x for x in r.output.splitlines() if x.strip()]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(port: int, frames: int, fps: int = 25, delay: float = 0.8, gop: int = 5) -> threading.Thread:
    """Start a thread sending ``frames`` H.264 frames (a keyframe every ``gop``; frame k grey
    level 3 k) as MPEG-TS over UDP to 127.0.0.1:``port`` in real time, after ``delay`` seconds
    (the recorder listening by then, or joining later)."""

    def run() -> None:
        time.sleep(delay)
        with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
            stream.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "tune": "zerolatency",
                              "preset": "ultrafast", "qp": "0"}
            t0 = time.monotonic()
            for k in range(frames):
                frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), 3 * k, np.uint8), format="rgb24")
                frame.pts, frame.time_base = k, Fraction(1, fps)
                for packet in stream.encode(frame):
                    out.mux(packet)
                time.sleep(max(0.0, t0 + (k + 1) / fps - time.monotonic()))
            for packet in stream.encode():
                out.mux(packet)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _decoded(path: Path) -> tuple[list[float], list[float], list[bool]]:
    """Each video frame's time (s), mean grey level and whether it is a keyframe."""
    times, levels, keys = [], [], []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            times.append(float(frame.time))
            levels.append(float(frame.to_ndarray(format="gray").mean()))
            keys.append(frame.key_frame)
    return times, levels, keys


@pytest.mark.slow  # a real-time stream (2.4 s)
def test_a_live_udp_stream_is_copied_from_its_first_keyframe_for_the_seconds_asked(tmp_path):
    """A live H.264 MPEG-TS stream over UDP, joined while it runs: `wbcap record ... --seconds
    0.6` copies it (no re-encoding: every frame's grey level as sent) from the first keyframe it
    gets (the frames before it left out), at 0 s, 15 frames at 25 fps; the file is Matroska and
    wbcap's reader takes it."""
    from wbcap.io.video_probe import probe_video

    port = _free_udp_port()
    sender = _send(port, frames=60, delay=0.0, gop=10)
    time.sleep(0.5)  # (the stream is running: the recorder joins between keyframes, 9 times in 10)
    out = tmp_path / "live" / "clip.mkv"
    r, lines = invoke("record", f"udp://127.0.0.1:{port}", "-o", out, "--seconds", 0.6, "--timeout", 5)
    sender.join(10)
    assert r.exit_code == 0, r.output
    assert lines[0] == str(out) and "recorded 0.60 s, 15 frames (h264 copied, no audio)" in r.output, r.output
    times, levels, keys = _decoded(out)
    assert keys[0] and len(times) == 15
    np.testing.assert_allclose(times, np.arange(15) / 25, atol=1e-3)
    first = round(levels[0] / 3)
    assert first % 10 == 0 and first > 0  # (a keyframe every 10 frames; the stream had begun)
    np.testing.assert_allclose(levels, 3 * (first + np.arange(15)), atol=1.0)  # (consecutive frames, as sent)
    info = probe_video(out)
    assert info.width == 160 and info.height == 96
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mkv"]


@pytest.mark.slow  # a real-time stream (0.6 s) and a timeout
def test_a_stream_that_stops_sending_ends_the_recording_at_the_timeout_and_keeps_what_came(tmp_path):
    port = _free_udp_port()
    sender = _send(port, frames=15, delay=0.5)
    out = tmp_path / "clip.mkv"
    r, lines = invoke("record", f"udp://127.0.0.1:{port}", "-o", out, "--timeout", 1.0)
    sender.join(10)
    assert r.exit_code == 0, r.output
    times, _, _ = _decoded(out)
    assert 10 <= len(times) <= 15 and times[0] == 0.0
    assert [x for x in lines if x.startswith("WARNING")] == [
        f"WARNING  udp://127.0.0.1:{port}: sent nothing for 1 s: the recording ends there ({times[-1]:.1f} s)"], r.output


def test_a_cameras_raw_pictures_are_encoded_and_its_sound_copied_from_0_s(tmp_path):
    """FFmpeg's generated pictures and sound (`--input-format lavfi`: raw frames, as a webcam's):
    the pictures encoded as H.264 (the test pattern kept within a few levels), the PCM sound
    copied, both from 0 s; wbcap's frame reader reads the file's 10 frames at k / 10 s."""
    from wbcap.io.video_reader import open_frames

    out = tmp_path / "desk.mkv"
    r, lines = invoke("record", LAVFI, "--input-format", "lavfi", "-o", out, "--seconds", 1)
    assert r.exit_code == 0, r.output
    assert "recorded 1.00 s, 10 frames (wrapped_avframe encoded as h264, audio pcm_s16le)" in r.output, r.output
    with av.open(str(out)) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "h264"), ("audio", "pcm_s16le")]
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    with av.open(f"{LAVFI}", format="lavfi") as c:  # (the same pictures and sound, as generated)
        truth = [f.to_ndarray(format="rgb24") for _, f in zip(range(10), c.decode(video=0))]
    with av.open(f"{LAVFI}", format="lavfi") as c:
        truth_sound = np.concatenate([f.to_ndarray().reshape(-1) for _, f in zip(range(8), c.decode(audio=0))])
    _, _, keys = _decoded(out)
    assert keys == [True] + [False] * 9  # (raw decoders mark every picture an I-frame: not kept, a review's 9x file)
    frames = list(open_frames(out))
    assert [f.time for f in frames] == pytest.approx(np.arange(10) / 10, abs=1e-6)
    for got, want in zip(frames, truth, strict=True):
        assert np.abs(got.image.astype(int) - want).mean() < 5.0  # (its colours' sharp edges: 4:2:0 chroma)
    assert len(sound) >= 8000 and np.array_equal(sound[:8000], truth_sound[:8000])


def test_an_odd_picture_size_is_encoded_whole(tmp_path):
    """Raw pictures of odd width and height (4:2:0 H.264 needs even ones: libx264 failed, a crash
    report): encoded in 4:4:4, every pixel kept."""
    out = tmp_path / "odd.mkv"
    r, _ = invoke("record", "testsrc=size=161x97:rate=10", "--input-format", "lavfi", "-o", out, "--seconds", 0.5)
    assert r.exit_code == 0, r.output
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height, frame.format.name) == (161, 97, "yuv444p")
        got = frame.to_ndarray(format="rgb24").astype(int)
    with av.open("testsrc=size=161x97:rate=10", format="lavfi") as c:
        want = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(got - want).mean() < 2.0  # (4:4:4: the test pattern's colour edges kept)


def _mpeg2_ts(frames: int = 60) -> bytes:
    """MPEG-TS of MPEG-2 video with B-frames (open GOPs: a GOP's first B-frames refer to the
    previous one's last picture), frame k grey level 4 k, nearly lossless."""
    import io

    buf = io.BytesIO()
    _encode(buf, "mpegts", "mpeg2video", {"g": "10", "bf": "2", "qmin": "1", "qmax": "1"}, frames)
    return buf.getvalue()


def _encode(target, form: str, codec: str, options: dict, frames: int) -> None:
    """``frames`` 160x96 pictures at 25 a second, frame k grey level 4 k, encoded with ``codec``
    and ``options`` into ``target`` (a path or a binary file) in the format ``form``."""
    with av.open(target if not isinstance(target, Path) else str(target), "w", format=form) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = options
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), 4 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_a_stream_joined_in_an_open_gop_starts_at_its_keyframe_at_0_s(tmp_path):
    """A stream joined mid-way (MPEG-TS cut at a packet) whose first keyframe is followed by
    B-frames shown before it (referring to pictures never received): those are left out, so the
    recording's first picture is that keyframe's, at 0 s, and every frame it says it holds
    decodes (a review: 52 said, 49 decoded, the first at 0.12 s)."""
    data = _mpeg2_ts()
    cut = tmp_path / "joined.ts"
    cut.write_bytes(data[(len(data) * 2 // 5) // 188 * 188:])
    with av.open(str(cut)) as c:
        shown = {round(float(f.time), 3): f.to_ndarray(format="gray") for f in c.decode(video=0)}
    with av.open(str(cut)) as c:
        packets = [(float(p.pts * p.time_base), p.is_keyframe) for p in c.demux(video=0) if p.size]
    first = next(i for i, (_, k) in enumerate(packets) if k)
    key = packets[first][0]
    assert any(t < key for t, _ in packets[first + 1:])  # (B-frames after it in decoding order, shown before it)
    out = tmp_path / "clip.mkv"
    r, lines = invoke("record", cut, "-o", out)
    assert r.exit_code == 0, r.output
    said = int(re.search(r"recorded [\d.]+ s, (\d+) frames", r.output).group(1))
    times = []
    with av.open(str(out)) as c:
        for frame in c.decode(video=0):
            times.append(float(frame.time))
            np.testing.assert_array_equal(frame.to_ndarray(format="gray"), shown[round(key + frame.time, 3)])
    assert times[0] == 0.0 and len(times) == said
    np.testing.assert_allclose(times, np.arange(said) / 25, atol=1e-3)


def test_a_raw_h264_stream_without_timestamps_is_timed_at_its_rate(tmp_path):
    """H.264 without a container (a Raspberry Pi camera's `-o -`): its packets carry no
    timestamps (a review: "sent no video keyframe"); they are timed at the stream's rate, 25 a
    second, with a warning, or at --fps's."""
    es = tmp_path / "cam.h264"
    _encode(es, "h264", "libx264", {"g": "10", "bf": "0"}, 20)
    for n, (extra, rate) in enumerate((((), 25), (("--fps", "10"), 10), (("--option", "framerate=10"), 10))):
        out = tmp_path / f"cam{n}.mkv"
        r, lines = invoke("record", es, "-o", out, *extra)
        assert r.exit_code == 0, r.output
        assert [x for x in lines if x.startswith("WARNING")] == [
            f"WARNING  {es}: its video carries no timestamps: its frames are timed {rate} per second (the stream's "
            "rate; --fps sets another)"], r.output
        times, _, _ = _decoded(out)
        np.testing.assert_allclose(times, np.arange(20) / rate, atol=1e-3)
    # with B-frames its decoding order is not its display order: no timestamps can be made (a review: they
    # came out of order, 0, 0.08, 0.12, 0.04...)
    _encode(es, "h264", "libx264", {"g": "10", "bf": "2"}, 20)
    r, lines = invoke("record", es, "-o", tmp_path / "b.mkv")
    assert r.exit_code == 2 and len(lines) == 1 and lines[0] == (
        f"error: {es}: its video carries no timestamps and shows its pictures in another order than it sends them "
        "(B-frames): record it in a container (MPEG-TS, Matroska), or from a camera set to send no B-frames"), r.output
    assert not (tmp_path / "b.mkv").exists()


def test_a_stream_whose_timestamps_go_back_ends_there(tmp_path):
    """Two recordings of a source joined end to end (a restarted stream: its clock from 0 again):
    the recording ends where its timestamps go back, with a warning, the first part whole (a
    review: Matroska's refusal was said as the stream failing)."""
    import io

    one = io.BytesIO()
    _encode(one, "mpegts", "libx264", {"g": "10", "bf": "0"}, 25)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(one.getvalue() * 2)
    out = tmp_path / "clip.mkv"
    r, lines = invoke("record", joined, "-o", out)
    assert r.exit_code == 0, r.output
    assert [x for x in lines if x.startswith("WARNING")] == [
        f"WARNING  {joined}: its timestamps went back 1.0 s after 1.0 s (a restarted stream); the recording ends there: "
        "record the rest into another file"], r.output
    times, levels, _ = _decoded(out)
    assert len(times) == 25 and round(levels[0] / 4) == 0


def test_a_recording_a_kill_left_is_said(tmp_path):
    """A recording killed (SIGKILL, a power cut) leaves its hidden temporary file, which may hold
    most of it (Matroska written as it goes): the next recording of that name says where it is
    and how to keep it; it is not removed."""
    left = tmp_path / ".clip.tmp-0123abcd.mkv"
    left.write_bytes(b"x" * 2_000_000)
    r, lines = invoke("record", "testsrc=size=160x96:rate=10", "--input-format", "lavfi", "-o", tmp_path / "clip.mkv",
                      "--seconds", 0.3)
    assert r.exit_code == 0, r.output
    assert [x for x in lines if x.startswith("WARNING")] == [
        f"WARNING  {left}: left by a recording into clip.mkv that was killed (2.0 MB); it may hold part of it: rename it "
        "to keep it (e.g. mv .clip.tmp-0123abcd.mkv clip_killed.mkv), else remove it"], r.output
    assert left.read_bytes() == b"x" * 2_000_000


@pytest.mark.slow  # two wbcap processes, signalled
def test_ctrl_c_is_seen_while_the_source_sends_nothing(tmp_path):
    """Ctrl-C while the source sends nothing (PyAV's waits are not interrupted by signals: a
    review's Ctrl-C waited for --timeout): while opening, `interrupted` (130) within a second or
    two, nothing written; while a stream stalls, the recording ends there, its file finished."""
    import os
    import signal
    import subprocess
    import sys

    def wbcap(*args: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        return subprocess.Popen([sys.executable, "-m", "wbcap", *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    silent, stalling = _free_udp_port(), _free_udp_port()
    opening = wbcap("record", f"udp://127.0.0.1:{silent}", "-o", str(tmp_path / "a.mkv"), "--timeout", "60")
    stalled = wbcap("record", f"udp://127.0.0.1:{stalling}", "-o", str(tmp_path / "b.mkv"), "--timeout", "60")
    sender = _send(stalling, frames=25, delay=1.6)  # (1 s once the recorder listens, then nothing)
    time.sleep(2.0)
    t0 = time.monotonic()
    opening.send_signal(signal.SIGINT)
    _, err = opening.communicate(timeout=20)
    # (ended by SIGINT once it has cleaned up, which a shell reports as 130: tests/test_stop_signals.py)
    assert opening.returncode == -signal.SIGINT and time.monotonic() - t0 < 3.0, err
    sender.join(10)
    time.sleep(0.5)
    t0 = time.monotonic()
    stalled.send_signal(signal.SIGINT)
    _, err = stalled.communicate(timeout=20)
    assert stalled.returncode == 0 and time.monotonic() - t0 < 3.0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mkv"]
    times, _, _ = _decoded(tmp_path / "b.mkv")
    assert 5 <= len(times) <= 25 and times[0] == 0.0


def test_a_source_that_ends_stays_open_until_the_recording_has_ended(tmp_path, monkeypatch):
    """The recording reads the source's streams (their rate, time base) after the reading thread
    has handed it every packet: that thread leaves the source open, and the recording closes it
    once, when it stops (a review: the thread closed it at its end, and under MALLOC_PERTURB_ the
    freed stream gave 1.76 s and "gave 1 frames a second, not the 25 asked")."""
    from wbcap.io import record as recording

    es = tmp_path / "cam.mkv"
    _encode(es, "matroska", "libx264", {"g": "10", "bf": "0"}, 20)
    reader = recording._Reader(RecordJob(source=str(es), out=str(tmp_path / "a.mkv")))
    container = reader.opened()
    closed = []
    monkeypatch.setattr(reader, "container", type("Spy", (), {"close": lambda self: closed.append(1)})())
    video = container.streams.video[0]
    packets = list(reader.packets([video], raw=False))
    reader.thread.join(10)
    assert len(packets) == 20 and not reader.thread.is_alive() and closed == []
    assert video.average_rate == 25 and float(packets[-1].pts * packets[-1].time_base) == pytest.approx(0.76)
    reader.stop()
    assert closed == [1]
    container.close()


def test_ctrl_c_finishes_the_file(tmp_path):
    """Ctrl-C (or SIGTERM) while recording: the file is finished and complete, nothing else left."""
    def stop_at_one_second(stage, done, total):
        if done >= 1:
            raise KeyboardInterrupt

    out = tmp_path / "clip.mkv"
    result = record(RecordJob(source="testsrc=size=160x96:rate=10", out=str(out), input_format="lavfi"),
                    progress=stop_at_one_second)
    assert result.stopped_by == "ctrl-c" and result.frames == 11 and result.seconds == pytest.approx(1.1)
    times, _, _ = _decoded(out)
    assert len(times) == 11 and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


@pytest.mark.parametrize("args, said", [
    (["testsrc", "--input-format", "lavfi", "-o", "{tmp}/clip.mp4"],
     "{tmp}/clip.mp4: wbcap records into Matroska, which holds any stream's codec and timestamps; give a name ending "
     "in .mkv (e.g. clip.mkv)"),
    (["testsrc", "--input-format", "lavfi", "-o", "{tmp}/there.mkv"],
     "{tmp}/there.mkv: already there; pass --overwrite to replace it, or choose another name"),
    (["x", "--input-format", "nothing_such", "-o", "{tmp}/a.mkv"],
     "x: FFmpeg here has no input format or device 'nothing_such'"),
    (["tcp://127.0.0.1:{port}", "-o", "{tmp}/a.mkv", "--timeout", "2"],
     "tcp://127.0.0.1:{port}: cannot be opened (Connection refused); check the address, that the stream is live, and "
     "the network"),
    (["udp://127.0.0.1:{port}", "-o", "{tmp}/a.mkv", "--timeout", "0.5"],
     "udp://127.0.0.1:{port}: sent nothing for 0.5 s while opening; check that the stream is live at that address, "
     "or give it longer with --timeout"),
    (["sine=frequency=440", "--input-format", "lavfi", "-o", "{tmp}/a.mkv"],
     "sine=frequency=440: has no video stream (audio streams); give a camera's or a video stream's address"),
    (["/dev/video77", "-o", "{tmp}/a.mkv"], "/dev/video77: cannot be opened (No such file or directory); check the "
     "device (`ls /dev/video*`), that no other program holds it, and its --size/--fps"),
    (["testsrc", "--input-format", "lavfi", "--size", "big", "-o", "{tmp}/a.mkv"], "'big': give it as WIDTHxHEIGHT"),
])
def test_bad_sources_and_names_are_one_line_and_leave_nothing(tmp_path, args, said):
    port = _free_udp_port()
    (tmp_path / "there.mkv").write_bytes(b"mine")
    words = [a.format(tmp=tmp_path, port=port) for a in args]
    r, lines = invoke("record", *words)
    assert r.exit_code == 2 and len(lines) == 1 and said.format(tmp=tmp_path, port=port) in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.mkv"]
    assert (tmp_path / "there.mkv").read_bytes() == b"mine"
