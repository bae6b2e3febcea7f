"""``wbcap record`` (:mod:`wbcap.io.record`): live sources into a Matroska file ``wbcap run`` reads.

A live H.264 stream over UDP (MPEG-TS, sent in real time by a thread of this process, each
frame's grey level its number), FFmpeg's generated pictures and sound (``lavfi``: raw frames, as
a camera's), a Ctrl-C, and bad sources and names; each recording decoded back and checked frame
by frame."""

from __future__ import annotations

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


@pytest.mark.slow  # a real-time stream (2 s)
def test_a_live_udp_stream_is_copied_from_its_first_keyframe_for_the_seconds_asked(tmp_path):
    """A live H.264 MPEG-TS stream over UDP, joined while it runs: `wbcap record ... --seconds
    1` copies it (no re-encoding: every frame's grey level as sent) from the first keyframe it
    gets (the frames before it left out), at 0 s, 25 frames at 25 fps; the file is Matroska and
    wbcap's reader takes it."""
    from wbcap.io.video_probe import probe_video

    port = _free_udp_port()
    sender = _send(port, frames=75, delay=0.0, gop=10)
    time.sleep(0.5)  # (the stream is running: the recorder joins between keyframes, 9 times in 10)
    out = tmp_path / "live" / "clip.mkv"
    r, lines = invoke("record", f"udp://127.0.0.1:{port}", "-o", out, "--seconds", 1, "--timeout", 5)
    sender.join(10)
    assert r.exit_code == 0, r.output
    assert lines[0] == str(out) and "recorded 1.00 s, 25 frames (h264 copied, no audio)" in r.output, r.output
    times, levels, keys = _decoded(out)
    assert keys[0] and len(times) == 25
    np.testing.assert_allclose(times, np.arange(25) / 25, atol=1e-3)
    first = round(levels[0] / 3)
    assert first % 10 == 0 and first > 0  # (a keyframe every 10 frames; the stream had begun)
    np.testing.assert_allclose(levels, 3 * (first + np.arange(25)), atol=1.0)  # (consecutive frames, as sent)
    info = probe_video(out)
    assert info.width == 160 and info.height == 96
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mkv"]


@pytest.mark.slow  # a real-time stream (1.5 s) and a timeout
def test_a_stream_that_stops_sending_ends_the_recording_at_the_timeout_and_keeps_what_came(tmp_path):
    port = _free_udp_port()
    sender = _send(port, frames=20)
    out = tmp_path / "clip.mkv"
    r, lines = invoke("record", f"udp://127.0.0.1:{port}", "-o", out, "--timeout", 1.5)
    sender.join(10)
    assert r.exit_code == 0, r.output
    times, _, _ = _decoded(out)
    assert 15 <= len(times) <= 20 and times[0] == 0.0
    assert [x for x in lines if x.startswith("WARNING")] == [
        f"WARNING  udp://127.0.0.1:{port}: sent nothing for 1.5 s: the recording ends there ({times[-1]:.1f} s)"], r.output


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
    frames = list(open_frames(out))
    assert [f.time for f in frames] == pytest.approx(np.arange(10) / 10, abs=1e-6)
    for got, want in zip(frames, truth, strict=True):
        assert np.abs(got.image.astype(int) - want).mean() < 5.0  # (its colours' sharp edges: 4:2:0 chroma)
    assert len(sound) >= 8000 and np.array_equal(sound[:8000], truth_sound[:8000])


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
