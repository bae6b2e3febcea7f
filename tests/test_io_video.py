"""Tests for wbcap.io's video modules: probing, rotation (video_probe), lazy frame reading
(video_reader), writing with audio copy (video_writer).

Every video is generated here with PyAV (small, a few frames of a moving red square on grey).
The sample ``vtest.avi`` from ``../shared/media`` is used when present.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

av = pytest.importorskip("av")

from wbcap.errors import InputError  # noqa: E402
from wbcap.io.video_probe import VideoInfo, apply_rotation, probe_video, rotation_of  # noqa: E402
from wbcap.io.video_reader import Frame, FrameSource, open_frames  # noqa: E402
from wbcap.io.video_writer import VideoWriter  # noqa: E402
from wbcap.testing.videos import encode_all  # noqa: E402

W, H = 160, 120
SQ = 16  # square side
BG = (60, 60, 60)
RED = (220, 30, 30)


def square_x(i: int, w: int = W) -> int:
    """Left edge of the red square in frame i (moves 4 px per frame, wraps around)."""
    return (8 + 4 * i) % (w - SQ)


def draw(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame i: grey background, red SQxSQ square at (square_x(i), 20), white marker top-left."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BG
    x = square_x(i, w)
    img[20:20 + SQ, x:x + SQ] = RED
    img[0:8, 0:8] = 255  # orientation marker at the stored top-left
    return img


def make_video(
    path: Path,
    n: int = 40,
    fps: int = 10,
    w: int = W,
    h: int = H,
    *,
    pts_ms: list[int] | None = None,
    rotation_ccw: int | None = None,
    audio: str | None = None,
    noise: bool = False,
    options: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_codec: str = "aac",
    audio_rate: int = 44100,
) -> Path:
    """Write a test video (H.264 ``yuv420p`` unless ``codec``/``pix_fmt`` say otherwise; the RGB
    frames are converted to ``pix_fmt`` by the encoder). ``pts_ms`` gives explicit (variable)
    timestamps in ms; ``audio`` = "tone" (440 Hz) or "steps" (1 s each of 300, 500, 700, 900...
    Hz), AAC mono (or ``audio_codec``: ``pcm_s16le``, a camera's or a lab recorder's)."""
    c = av.open(str(path), "w", options=options or {})
    s = c.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    s.options = {"crf": "12", "g": "10"} if codec == "libx264" else {"g": "10"}
    if pts_ms is not None:
        s.codec_context.time_base = Fraction(1, 1000)
    if rotation_ccw is not None:
        s.set_display_rotation(rotation_ccw)
    for k, v in (metadata or {}).items():
        s.metadata[k] = v
    a = None
    if audio:
        a = c.add_stream(audio_codec, rate=audio_rate)
        a.layout = "mono"
    rng = np.random.default_rng(0)
    for i in range(n):
        img = draw(i, w, h)
        if noise:
            img[60:] = rng.integers(0, 256, img[60:].shape, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        if pts_ms is not None:
            frame.pts = pts_ms[i]
            frame.time_base = Fraction(1, 1000)
        for p in s.encode(frame):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    if a is not None:
        sr = audio_rate
        t = np.arange(int(sr * n / fps)) / sr
        freq = 440.0 if audio == "tone" else 300.0 + 200.0 * np.floor(t)
        x = (0.3 * np.sin(2 * np.pi * np.cumsum(np.broadcast_to(freq, t.shape)) / sr))
        pcm = audio_codec.startswith(("pcm_s16", "adpcm"))
        x = (x * 32767).astype(np.int16) if pcm else x.astype(np.float32)
        for k in range(0, len(x), 1024):
            f = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format="s16" if pcm else "flt", layout="mono")
            f.sample_rate, f.pts = sr, k
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return path


def red_centroid_x(img: np.ndarray) -> float:
    """Mean column of the red square's pixels (rows above 56 only: below may be noise)."""
    img = img[:56]
    m = (img[..., 0] > 150) & (img[..., 1] < 100) & (img[..., 2] < 100)
    assert m.sum() > 0.5 * SQ * SQ
    return float(np.nonzero(m)[1].mean())


def assert_one_line_naming(err: pytest.ExceptionInfo[InputError], path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert path.name in msg
    assert ";" in msg  # "what is wrong; the fix"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("media")
    return SimpleNamespace(
        dir=d,
        basic=make_video(d / "basic.mp4"),  # 40 frames, 10 fps, 160x120, key frame every 10
        long=make_video(d / "long.mp4", n=150, w=64, h=48),
        tone=make_video(d / "tone.mp4", audio="tone"),
        steps=make_video(d / "steps.mp4", audio="steps"),
    )


# --------------------------------------------------------------------------------------------
# Import hygiene, probing


def test_import_is_light() -> None:
    code = ("import sys, wbcap.io.video_probe, wbcap.io.video_reader, wbcap.io.video_writer; "
            "print(any(m in sys.modules for m in ('torch', 'av', 'numpy', 'cv2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_probe_generated(media: SimpleNamespace) -> None:
    info = probe_video(media.basic)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (W, H)
    assert info.fps == 10.0 and info.fps_fraction == Fraction(10)
    assert info.frame_count == 40
    assert info.duration == pytest.approx(4.0, abs=0.01)
    assert info.rotation == 0 and info.codec == "h264"
    assert not info.has_audio and not info.is_image_sequence
    assert probe_video(media.tone).has_audio


# --------------------------------------------------------------------------------------------
# Reading


def test_round_trip_content_and_motion(media: SimpleNamespace) -> None:
    frames = list(open_frames(media.basic))
    assert [f.index for f in frames] == list(range(40))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(40)], abs=1e-9)
    for f in frames:
        assert isinstance(f, Frame)
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert f.image.flags["C_CONTIGUOUS"]
        x = square_x(f.index)
        inner = f.image[23:20 + SQ - 3, x + 3:x + SQ - 3].reshape(-1, 3).mean(0)
        assert inner == pytest.approx(RED, abs=6)  # RGB order, colour kept
        assert f.image[80:, 40:].reshape(-1, 3).mean(0) == pytest.approx(BG, abs=3)
        assert red_centroid_x(f.image) == pytest.approx(x + (SQ - 1) / 2, abs=1.0)


@pytest.mark.parametrize(
    ("kwargs", "indices"),
    [
        (dict(start=1.0, end=2.5, every=2), [10, 12, 14, 16, 18, 20, 22, 24]),
        (dict(start=1.05), list(range(11, 40))),  # first frame at or after 1.05 s is 1.1 s
        (dict(start=2.3, max_frames=3), [23, 24, 25]),
        (dict(every=7, max_frames=4), [0, 7, 14, 21]),
        (dict(end=0.35), [0, 1, 2, 3]),
        (dict(start=3.75, every=3), [38]),
        (dict(start=0.0, end=4.0, every=40), [0]),
    ],
)
def test_selection(media: SimpleNamespace, kwargs: dict[str, Any], indices: list[int]) -> None:
    src = open_frames(media.basic, **kwargs)
    frames = list(src)
    assert [f.index for f in frames] == indices
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in indices], abs=1e-9)
    for f in frames:  # the right picture, also after a seek
        assert red_centroid_x(f.image) == pytest.approx(square_x(f.index) + (SQ - 1) / 2, abs=1)


def test_seeked_frames_equal_sequential_decode(media: SimpleNamespace) -> None:
    full = {f.index: f.image for f in open_frames(media.basic)}
    for f in open_frames(media.basic, start=2.7, end=3.3):  # a seek into the middle of a GOP
        assert np.array_equal(f.image, full[f.index])


def test_frame_source_is_reiterable(media: SimpleNamespace) -> None:
    src = open_frames(media.basic, start=1.0, max_frames=2)
    assert [f.index for f in src] == [f.index for f in src] == [10, 11]
    assert list(open_frames(media.basic, max_frames=0)) == []


def test_variable_frame_rate_times(tmp_path: Path) -> None:
    pts = [0, 40, 120, 130, 300, 310, 500, 700, 710, 1000]
    path = make_video(tmp_path / "vfr.mp4", n=len(pts), pts_ms=pts)
    frames = list(open_frames(path))
    assert [f.index for f in frames] == list(range(len(pts)))
    assert [f.time for f in frames] == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    later = list(open_frames(path, start=0.125, end=0.6))  # seek honours real timestamps
    assert [f.index for f in later] == [3, 4, 5, 6]
    assert [f.time for f in later] == pytest.approx([0.13, 0.3, 0.31, 0.5], abs=1e-3)
    assert red_centroid_x(later[0].image) == pytest.approx(square_x(3) + (SQ - 1) / 2, abs=1)


def test_generator_is_lazy_and_closes(media: SimpleNamespace,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen = SimpleNamespace(packets=0, opened=0, closed=0)
    real_open = av.open

    class Spy:
        def __init__(self, c: Any) -> None:
            self._c = c

        def __getattr__(self, name: str) -> Any:
            return getattr(self._c, name)

        def demux(self, *a: Any, **k: Any) -> Any:
            for p in self._c.demux(*a, **k):
                seen.packets += 1
                yield p

        def close(self) -> None:
            seen.closed += 1
            self._c.close()

    def spy_open(*a: Any, **k: Any) -> Spy:
        seen.opened += 1
        return Spy(real_open(*a, **k))

    monkeypatch.setattr(av, "open", spy_open)
    src = open_frames(media.long)  # 150 frames
    assert seen.opened == seen.closed == 1  # probing opened and closed it
    seen.packets = 0
    it = iter(src)
    assert seen.packets == 0  # nothing decoded before the first next()
    two = list(itertools.islice(it, 2))
    assert [f.index for f in two] == [0, 1]
    assert seen.packets < 30  # only a few frames' worth of packets demuxed
    it.close()  # type: ignore[attr-defined]
    assert seen.closed == 2
    for f in open_frames(media.long):  # breaking out of a for loop closes it as well
        if f.index == 3:
            break
    assert seen.closed == seen.opened


# Luma of RED by BT.601 (0.299 R + 0.587 G + 0.114 B), what a grey pixel format stores for it.
RED_LUMA = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])  # 87


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "decoder", "square"),
    [
        ("full_range.mp4", "libx264", "yuvj420p", "h264", RED),  # JPEG (full) range 4:2:0
        ("high444_10bit.mp4", "libx264", "yuv444p10le", "h264", RED),  # 10-bit 4:4:4
        ("yuv422_10bit.mkv", "ffv1", "yuv422p10le", "ffv1", RED),  # 10-bit 4:2:2
        ("mjpeg.avi", "mjpeg", "yuvj422p", "mjpeg", RED),  # AVI chunk timing, full range
        ("rgba.mov", "png", "rgba", "png", RED),  # packed RGB with alpha, lossless
        ("rgb48.mov", "png", "rgb48be", "png", RED),  # 16-bit RGB, lossless
        ("gray16.mkv", "ffv1", "gray16le", "ffv1", (RED_LUMA,) * 3),  # 16-bit grey
    ],
)
def test_unusual_pixel_formats(tmp_path: Path, name: str, codec: str, pix_fmt: str, decoder: str,
                               square: tuple[int, int, int]) -> None:
    """Every pixel format comes out as upright (H, W, 3) uint8 RGB with the picture's colours."""
    n = 6
    path = make_video(tmp_path / name, n=n, codec=codec, pix_fmt=pix_fmt)
    mkv = path.suffix == ".mkv"  # Matroska: no declared frame count, 1 ms timestamps
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.codec) == (W, H, 10.0, decoder)
    assert info.frame_count == (None if mkv else n) and info.rotation == 0
    frames = list(open_frames(path))
    assert [f.index for f in frames] == list(range(n))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(n)],
                                                     abs=1e-3 if mkv else 1e-6)
    lossless = codec == "png"
    for f in frames:
        img = f.image
        assert img.shape == (H, W, 3) and img.dtype == np.uint8 and img.flags["C_CONTIGUOUS"]
        if lossless:
            assert np.array_equal(img, draw(f.index))
            continue
        x = square_x(f.index)
        inner = img[23:20 + SQ - 3, x + 3:x + SQ - 3].reshape(-1, 3).mean(0)
        assert inner == pytest.approx(square, abs=6)
        assert img[80:, 40:].reshape(-1, 3).mean(0) == pytest.approx(BG, abs=3)
        assert img[1:7, 1:7].mean() == pytest.approx(255, abs=4)  # the white marker, top-left
        if square == RED:
            assert red_centroid_x(img) == pytest.approx(x + (SQ - 1) / 2, abs=1.0)


@pytest.mark.parametrize(("color_range", "bg", "fg"), [(2, 60, 220), (1, 51, 237)])
def test_grey_h264_colour_range(tmp_path: Path, color_range: int, bg: int, fg: int) -> None:
    """Grey levels 60 and 220 stored in H.264 come back as full-range (2: as stored) or
    limited-range (1: ``(Y - 16) * 255 / 219``) RGB, by the range the stream declares."""
    path = tmp_path / f"grey_{color_range}.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "gray"
        s.codec_context.color_range = color_range

        def frame(i: int):
            grey = np.full((H, W), 60, np.uint8)
            grey[20:20 + SQ, square_x(i):square_x(i) + SQ] = 220
            f = av.VideoFrame.from_ndarray(grey, format="gray")
            f.color_range = color_range
            return f

        encode_all(c, s, (frame(i) for i in range(3)))
    frames = list(open_frames(path))
    assert [(f.index, f.time) for f in frames] == [(0, 0.0), (1, 0.1), (2, pytest.approx(0.2))]
    for f in frames:
        x = square_x(f.index)
        assert f.image.shape == (H, W, 3)
        assert f.image[23:20 + SQ - 3, x + 3:x + SQ - 3].reshape(-1, 3).mean(0) == pytest.approx(
            (fg,) * 3, abs=2)
        assert f.image[80:, 40:].reshape(-1, 3).mean(0) == pytest.approx((bg,) * 3, abs=2)


def _marker_corner(img: np.ndarray) -> str:
    h, w = img.shape[:2]
    corners = {"tl": img[:4, :4], "tr": img[:4, w - 4:], "bl": img[h - 4:, :4],
               "br": img[h - 4:, w - 4:]}
    white = [k for k, v in corners.items() if v.mean() > 230]
    assert len(white) == 1, white
    return white[0]


@pytest.mark.parametrize(("ccw", "clockwise", "corner"),
                         [(-90, 90, "tr"), (90, 270, "bl"), (180, 180, "br"), (0, 0, "tl")])
def test_display_matrix_rotation(tmp_path: Path, ccw: int, clockwise: int, corner: str) -> None:
    path = make_video(tmp_path / "rot.mp4", n=6, w=64, h=48, rotation_ccw=ccw)
    info = probe_video(path)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((48, 64) if clockwise in (90, 270) else (64, 48))
    frames = list(open_frames(path))
    assert len(frames) == 6
    for f in frames:
        assert f.image.shape == (info.height, info.width, 3)
        assert _marker_corner(f.image) == corner  # stored top-left, turned `clockwise` degrees


def _set_tkhd_matrix(src: Path, dst: Path, a: int, b: int, c: int, d: int) -> Path:
    """Copy the MP4 ``src`` to ``dst`` with its video track's display matrix (tkhd) set to
    ``[a b 0; c d 0; 0 0 1]``: a stored pixel (x, y) is shown at (a x + c y, b x + d y) + shift."""
    import struct

    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    assert i > 0
    # 'tkhd', version + flags, times/ids/duration (v0: 20 bytes), reserved 8, layer, group,
    # volume, reserved: 2 bytes each; then the 3x3 matrix (16.16, 2.30 for the last column).
    off = i + 8 + (20 if data[i + 4] == 0 else 32) + 16
    one = 0x10000
    data[off:off + 36] = struct.pack(">9i", a * one, b * one, 0, c * one, d * one, 0, 0, 0,
                                     0x40000000)
    dst.write_bytes(bytes(data))
    return dst


def _shown(stored: np.ndarray, a: int, b: int, c: int, d: int) -> np.ndarray:
    """What a display matrix shows (the rule :func:`_set_tkhd_matrix` states), pixel by pixel."""
    h, w = stored.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    x2, y2 = a * xs + c * ys, b * xs + d * ys
    x2, y2 = x2 - x2.min(), y2 - y2.min()
    out = np.zeros((y2.max() + 1, x2.max() + 1, 3), stored.dtype)
    out[y2, x2] = stored[ys, xs]
    return out


# Display matrices that mirror (determinant -1): FFmpeg's av_display_rotation_get() reads a
# left-right mirror as a half turn; they are applied in full, as ffmpeg's autorotate does.
@pytest.mark.parametrize(("matrix", "clockwise", "mirrored"), [
    ((-1, 0, 0, 1), 0, True),  # left-right mirror (an editor's "flip horizontal")
    ((1, 0, 0, -1), 180, True),  # upside-down mirror: a half turn, then left-right
    ((0, 1, 1, 0), 90, True),  # transpose
    ((0, -1, -1, 0), 270, True),  # the other diagonal
    ((0, 1, -1, 0), 90, False),  # a plain quarter turn clockwise, for reference
])
def test_display_matrix_mirror(tmp_path: Path, matrix: tuple[int, int, int, int], clockwise: int,
                               mirrored: bool) -> None:
    plain = make_video(tmp_path / "plain.mp4", n=4, w=64, h=48)
    path = _set_tkhd_matrix(plain, tmp_path / "mirror.mp4", *matrix)
    info = probe_video(path)
    assert (info.rotation, info.mirrored) == (clockwise, mirrored)
    stored = [f.image for f in open_frames(plain)]
    shown = [f.image for f in open_frames(path)]
    assert len(shown) == 4
    for s, f in zip(stored, shown):
        assert f.shape == (info.height, info.width, 3)
        assert np.array_equal(f, _shown(s, *matrix))


def test_legacy_rotate_tag(tmp_path: Path) -> None:
    # Matroska keeps a free-form ROTATE tag (what older FFmpeg exported from phone MP4s).
    path = make_video(tmp_path / "tag.mkv", n=3, w=64, h=48, metadata={"rotate": "90"})
    info = probe_video(path)
    assert info.rotation == 90 and (info.width, info.height) == (48, 64)
    assert _marker_corner(next(iter(open_frames(path))).image) == "tr"


def test_rotation_of_sources() -> None:
    no_matrix = SimpleNamespace(rotation=0)
    assert rotation_of(SimpleNamespace(metadata={"rotate": "270"}), no_matrix) == 270
    assert rotation_of(SimpleNamespace(metadata={}), SimpleNamespace(rotation=-90)) == 90
    assert rotation_of(SimpleNamespace(metadata={}), SimpleNamespace(rotation=180)) == 180
    assert rotation_of(SimpleNamespace(metadata={}), SimpleNamespace(rotation=-89.6)) == 90
    assert rotation_of(SimpleNamespace(metadata={}), no_matrix) == 0


def test_apply_rotation_convention() -> None:
    img = np.array([[1, 2, 3], [4, 5, 6]])
    assert apply_rotation(img, 0) is img
    assert apply_rotation(img, 90).tolist() == [[4, 1], [5, 2], [6, 3]]  # clockwise
    assert apply_rotation(img, 180).tolist() == [[6, 5, 4], [3, 2, 1]]
    assert apply_rotation(img, 270).tolist() == [[3, 6], [2, 5], [1, 4]]
    assert apply_rotation(img, 0, mirrored=True).tolist() == [[3, 2, 1], [6, 5, 4]]
    assert apply_rotation(img, 90, mirrored=True).tolist() == [[1, 4], [2, 5], [3, 6]]
    with pytest.raises(ValueError):
        apply_rotation(img, 45)


def _still_then_video(path: Path, n: int = 8) -> Path:
    """A one-frame 64x64 MJPEG stream (a cover whose attached-picture flag is lost: a stream of
    its own, muxed first) followed by the n-frame W x H H.264 video."""
    c = av.open(str(path), "w")
    still = c.add_stream("mjpeg", rate=10)
    still.width, still.height, still.pix_fmt = 64, 64, "yuvj420p"
    video = c.add_stream("libx264", rate=10)
    video.width, video.height, video.pix_fmt = W, H, "yuv420p"
    def frames(images):
        for i, img in enumerate(images):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            yield frame

    encode_all(c, still, frames([np.full((64, 64, 3), 200, np.uint8)]))
    encode_all(c, video, frames([draw(i) for i in range(n)]))
    c.close()
    return path


def test_a_constant_rate_file_with_a_dropped_frame_keeps_its_rate_on_the_clock(tmp_path: Path) -> None:
    """An MP4's average rate counts the drop (29.33 fps for 1 of 45 frames at 30 fps), which every
    export carried, all rows interpolated and marked valid (a biomechanics trial); its base rate
    is the grid's, 30, which the clock tries second (a Matroska file declares 30)."""
    from wbcap.smooth.track import clock_rate

    for suffix, average, base in ((".mp4", Fraction(140800, 4801), Fraction(30)), (".mkv", Fraction(30), None)):
        path = make_video(tmp_path / f"drop{suffix}", n=44, fps=30, pts_ms=[round(i * 1000 / 30) for i in range(45)
                                                                             if i != 20])
        info = probe_video(path)
        assert (info.fps_fraction, info.base_fps_fraction) == (average, base), suffix
        times = [f.time for f in open_frames(path)]
        assert len(times) == 44 and times[20] - times[19] == pytest.approx(2 / 30, abs=1e-3)
        assert clock_rate(times, info.fps, None if base is None else float(base)) == 30.0


# Matroska declares no frame counts: FFmpeg's choice (more frames seen while probing); MP4 flags
# the first stream default, so FFmpeg would take the still there: the declared counts decide.
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_main_video_stream_not_the_first(tmp_path: Path, suffix: str) -> None:
    path = _still_then_video(tmp_path / f"cover{suffix}")
    info = probe_video(path)
    assert (info.width, info.height, info.codec) == (W, H, "h264")
    frames = list(open_frames(path))
    assert [f.index for f in frames] == list(range(8))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(8)])
    for f in frames:
        assert red_centroid_x(f.image) == pytest.approx(square_x(f.index) + SQ / 2 - 0.5, abs=1)
    sel = list(open_frames(path, start=0.35))  # seek and demux-only count on the same stream
    assert [f.index for f in sel] == [4, 5, 6, 7]


# --------------------------------------------------------------------------------------------
# Image sequences


def _write_pngs(folder: Path, n: int) -> list[Path]:
    import cv2

    folder.mkdir()
    paths = []
    for i in range(n):
        p = folder / f"frame{i + 1}.png"  # frame1 .. frame12: natural order != string order
        assert cv2.imwrite(str(p), draw(i, 64, 48)[:, :, ::-1])
        paths.append(p)
    return paths


def test_image_folder_glob_and_list(tmp_path: Path) -> None:
    paths = _write_pngs(tmp_path / "seq", 12)
    (tmp_path / "seq" / "notes.txt").write_text("ignored")
    expected_x = [square_x(i, 64) + (SQ - 1) / 2 for i in range(12)]
    for spec in (tmp_path / "seq", str(tmp_path / "seq" / "frame*.png"), paths):
        src = open_frames(spec, image_fps=12.0)
        assert src.info.is_image_sequence and src.info.frame_count == 12
        assert (src.info.width, src.info.height, src.info.fps) == (64, 48, 12.0)
        assert src.info.duration == pytest.approx(1.0)
        frames = list(src)
        assert [f.index for f in frames] == list(range(12))
        assert [f.time for f in frames] == pytest.approx([i / 12 for i in range(12)])
        assert [red_centroid_x(f.image) for f in frames] == pytest.approx(expected_x, abs=0.01)
        assert np.array_equal(frames[5].image, draw(5, 64, 48))  # lossless PNG, RGB order

    sel = open_frames(tmp_path / "seq", start=0.25, end=0.8, every=2, image_fps=10.0)
    assert [(f.index, f.time) for f in sel] == [(3, 0.3), (5, 0.5), (7, 0.7)]
    # the selection without reading an image (the up-front checks of wbcap run) is the one iterated
    for kw in ({}, {"start": 0.25, "end": 0.8, "every": 2}, {"every": 5, "max_frames": 2}, {"start": 0.55},
               {"end": 0.05}, {"start": 0.3, "every": 4, "max_frames": 1}):
        src = open_frames(tmp_path / "seq", image_fps=10.0, **kw)
        assert [i for i, _ in src.selected_images()] == [f.index for f in src], kw
        assert all(path == paths[i] for i, path in src.selected_images())
    with pytest.raises(InputError, match="start=5 s to the end of the sequence; 12 images at 10 fps"):
        list(open_frames(tmp_path / "seq", start=5.0, image_fps=10.0))
    single = open_frames(paths[0])
    assert [f.index for f in single] == [0] and single.info.frame_count == 1


@pytest.mark.parametrize("kw, times, end", [
    (dict(every=3, end=0.5), [0.0, 0.3], 0.5),  # the frame every would keep next (0.6) is past --end
    (dict(every=3), [i / 10 for i in range(0, 40, 3)], 4.0),  # the last frame kept is the source's
    (dict(every=7), [i / 10 for i in range(0, 40, 7)], 4.0),  # 36-39 skipped: to the source's end
    (dict(start=1.0, end=2.45, every=2), [1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4], 2.45),
    (dict(), [i / 10 for i in range(40)], 4.0),
    (dict(end=10.0), [i / 10 for i in range(40)], 4.0),  # (an end past the source's)
    (dict(end=3.95), [i / 10 for i in range(40)], 3.95),  # (an end between the last frame and the source's end)
    (dict(every=3, max_frames=2), [0.0, 0.3], 0.6),  # stopped by max_frames: the next frame it would keep
    (dict(every=3, end=0.5, max_frames=2), [0.0, 0.3], 0.5),  # (max_frames on the selection's last frame)
    (dict(every=3, max_frames=14), [i / 10 for i in range(0, 40, 3)], 4.0),
    (dict(every=100, max_frames=1), [0.0], 4.0),  # (the source ends within PEEK_FRAMES frames)
])
def test_stretch_end_is_where_the_last_frames_stretch_of_the_source_ends(media: SimpleNamespace, tmp_path: Path,
                                                                         kw, times, end) -> None:
    """What render.mp4's last frame lasts until (the video and an image sequence of the same
    10 fps timing, every frame 0.1 s): it lasted one --every stride, past --end and the source."""
    _write_pngs(tmp_path / "seq", 40)
    for spec, extra in ((media.basic, {}), (tmp_path / "seq", dict(image_fps=10.0))):
        src = open_frames(spec, **kw, **extra)
        assert src.stretch_end is None
        assert [f.time for f in src] == pytest.approx(times), spec
        assert src.stretch_end == pytest.approx(end, abs=1e-9), spec
    src = open_frames(media.basic, every=3)
    for _ in src:
        break  # (the consumer stopped: unknown)
    assert src.stretch_end is None


@pytest.mark.parametrize("fmt, suffix, codec, name", [
    ("mp4", ".mp4", "libx264", "MP4/MOV"), ("mov", ".mov", "libx264", "MP4/MOV"), ("m2ts", ".mts", "libx264", "MPEG-TS"),
    ("matroska", ".mkv", "libx264", "Matroska/WebM"), ("webm", ".webm", "libvpx-vp9", "Matroska/WebM"),
    ("avi", ".avi", "mpeg4", "AVI"), ("mpegts", ".ts", "libx264", "MPEG-TS"), ("flv", ".flv", "flv", "FLV"),
    ("asf", ".wmv", "wmv2", "ASF/WMV"),
])
def test_a_video_named_as_a_picture_is_read_as_the_video(tmp_path: Path, caplog, fmt, suffix, codec, name) -> None:
    """A clip saved as .jpg: `wbcap run` said to pass a JPEG, `wbcap image` not to use `wbcap run`
    (an odd-media trial). Its container is known by its first bytes."""
    from wbcap.io.images import file_video_container, load_image

    src = tmp_path / f"clip{suffix}"
    with av.open(str(src), "w", format="mpegts" if fmt == "m2ts" else fmt,
                 options={"mpegts_m2ts_mode": "1"} if fmt == "m2ts" else {}) as c:
        stream = c.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            for packet in stream.encode(av.VideoFrame.from_ndarray(draw(i, 64, 48), format="rgb24")):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    named = tmp_path / "clip.jpg"
    named.write_bytes(src.read_bytes())
    assert file_video_container(named) == name
    with caplog.at_level(logging.WARNING, logger="wbcap"):
        frames = open_frames(named)
        assert not frames.info.is_image_sequence and len(list(frames)) == 6
    assert [r.getMessage() for r in caplog.records] == [
        f"{named}: named as a picture but holds a video ({name}); read as the video"]
    with pytest.raises(InputError) as caught:
        load_image(named)
    suffix = {"MP4/MOV": ".mp4", "Matroska/WebM": ".mkv", "AVI": ".avi", "MPEG-TS": ".ts", "FLV": ".flv",
              "ASF/WMV": ".wmv"}[name]
    assert str(caught.value) == (f"{named}: holds a video ({name}), not a picture; give it to `wbcap run` on its own "
                                 f"(best renamed clip{suffix})")
    with pytest.raises(InputError) as caught:  # (named as the video it is: no rename said, a new user's trial)
        load_image(src)
    assert str(caught.value) == f"{src}: holds a video ({name}), not a picture; give it to `wbcap run` on its own"


def test_no_picture_is_taken_for_a_video(tmp_path: Path) -> None:
    """Every picture format wbcap reads, and a HEIF / AVIF photo's header, is not a video's (an
    HEIC was read as one: FFmpeg gave one tile of a tiled photo as the frame)."""
    import cv2
    import pillow_heif
    from PIL import Image

    from wbcap.io.images import IMAGE_EXTENSIONS, file_video_container, video_container

    for suffix in sorted(IMAGE_EXTENSIONS):
        p = tmp_path / f"a{suffix}"
        picture = draw(1, 64, 48)[:, :, 0] if suffix in (".pbm", ".pgm") else draw(1, 64, 48)  # (one channel)
        if suffix in (".gif", ".avif"):  # (OpenCV writes none)
            Image.fromarray(picture[:, :, ::-1]).save(p)
        elif suffix in (".heic", ".heif", ".hif"):  # (nor these: written with libheif's encoder, pillow-heif)
            pillow_heif.from_pillow(Image.fromarray(picture[:, :, ::-1])).save(p, tile_size=32)
        elif suffix == ".jfif":  # (a JPEG by another name, which OpenCV writes by name only as .jpg)
            p.write_bytes(cv2.imencode(".jpg", picture)[1].tobytes())
        else:
            assert cv2.imwrite(str(p), picture), suffix
        assert file_video_container(p) is None, suffix
        # (a GIF named alone is a video, read frame by frame; in a folder, a picture)
        frames = open_frames(p)
        assert frames.info.is_image_sequence == (suffix != ".gif"), suffix
        if suffix != ".gif":
            assert (frames.info.width, frames.info.height) == (64, 48), suffix
    for brand in (b"heic", b"mif1", b"avif", b"miaf", b"mif2", b"heif", b"avci", b"jpeg", b"MiHE", b"crx "):
        assert video_container(b"\x00\x00\x00\x18ftyp" + brand + b"\x00" * 180) is None, brand
        # (a picture brand among the compatible ones)
        assert video_container(b"\x00\x00\x00\x1cftypisom\x00\x00\x00\x00mp41" + brand + b"\x00" * 180) is None, brand
    assert video_container(b"\x00\x00\x00\x1cftypisom\x00\x00\x00\x00mp41avc1" + b"\x00" * 180) == "MP4/MOV"
    assert video_container(b"") is None and file_video_container(tmp_path / "missing.jpg") is None
    # (a break-it trial's false videos: a PPM whose comment says "wide", a GIF whose palette puts a
    # G at byte 188, an ftyp box of an impossible size)
    ppm = b"P6 #wide angle\n64 48\n255\n" + bytes(64 * 48 * 3)
    (tmp_path / "wide.ppm").write_bytes(ppm)
    assert video_container(ppm) is None and open_frames(tmp_path / "wide.ppm").info.is_image_sequence
    gif = bytearray(b"GIF89a" + bytes(600))
    gif[188] = gif[376] = 0x47
    assert video_container(bytes(gif)) is None
    assert video_container(b"\xff\xff\xff\xffftypisom" + b"\x00" * 180) is None
    text = b"Get free stuff here, today only! " * 20  # ("free" at byte 4, a box of 1.2 GB in a 660-byte file)
    assert video_container(text, len(text)) is None
    (tmp_path / "t.jpg").write_bytes(text)
    assert file_video_container(tmp_path / "t.jpg") is None
    assert video_container(b"\x00\x00\x00\x08free" + b"\x00" * 100, 10_000) == "MP4/MOV"


def test_stretch_end_past_the_frames_max_frames_looks_ahead_is_one_stride_on(media: SimpleNamespace, caplog) -> None:
    """150 frames at 10 fps: after the first frame of every 100th, the next one it would keep
    (10 s) lies past the PEEK_FRAMES frames looked at: one stride on, or --end (a review: it was
    None, and the render ran one stride past --end)."""
    from wbcap.io.video_reader import PEEK_FRAMES

    assert PEEK_FRAMES < 100
    for end, expected in ((None, 10.0), (8.0, 8.0), (20.0, 10.0)):
        src = open_frames(media.long, every=100, max_frames=1, end=end)
        assert [f.time for f in src] == [0.0] and src.stretch_end == pytest.approx(expected), end
    src = open_frames(media.long, every=50, max_frames=2)
    assert [f.time for f in src] == pytest.approx([0.0, 5.0]) and src.stretch_end == pytest.approx(10.0)


def test_stretch_end_of_a_variable_rate_source_is_its_declared_end(tmp_path: Path) -> None:
    """Frames at 0, 0.1 and 0.2 s, the last lasting 3 s: the source ends at 3.2 s, not one average
    frame interval (1.06 s) after its last frame (a break-it trial: render.mp4 stopped at 1.27 s,
    its audio at 0.3)."""
    from wbcap.testing.videos import make_vfr_with_audio

    src = open_frames(make_vfr_with_audio(tmp_path / "sparse.mp4", [0, 100, 200], 3000, Fraction(1, 1000)))
    assert [f.time for f in src] == pytest.approx([0.0, 0.1, 0.2]) and src.stretch_end == pytest.approx(3.2)
    src = open_frames(tmp_path / "sparse.mp4", every=2)
    assert [f.time for f in src] == pytest.approx([0.0, 0.2]) and src.stretch_end == pytest.approx(3.2)
    src = open_frames(tmp_path / "sparse.mp4", end=1.5)
    assert [f.time for f in src] == pytest.approx([0.0, 0.1, 0.2]) and src.stretch_end == pytest.approx(1.5)


def test_an_image_sequences_first_image_is_decoded_once(tmp_path: Path, monkeypatch) -> None:
    """The probe's decode of the first image is the first pass's frame: each image decoded once
    on the first pass (an animated AVIF's warning was said twice: a break-it trial), every image
    again on a second pass, the same pixels."""
    import wbcap.io.images as images

    paths = _write_pngs(tmp_path / "seq", 3)
    decoded = []
    real = images.load_image
    monkeypatch.setattr(images, "load_image", lambda path, *a, **k: decoded.append(Path(path).name) or real(path, *a, **k))
    src = open_frames(tmp_path / "seq")
    first = [f.image for f in src]
    assert decoded == [p.name for p in paths]
    second = [f.image for f in src]
    assert decoded == [p.name for p in paths] * 2 and all(np.array_equal(a, b) for a, b in zip(first, second))
    decoded.clear()
    assert [f.index for f in open_frames(tmp_path / "seq", start=0.02)] == [1, 2]  # (a selection without the first)
    assert decoded == [paths[0].name, paths[1].name, paths[2].name]


def test_image_sequence_size_mismatch(tmp_path: Path) -> None:
    import cv2

    paths = _write_pngs(tmp_path / "seq", 3)
    cv2.imwrite(str(paths[2]), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError) as err:
        list(open_frames(tmp_path / "seq"))
    assert_one_line_naming(err, paths[2])


# --------------------------------------------------------------------------------------------
# Bad input


def _audio_only(path: Path) -> Path:
    c = av.open(str(path), "w")
    a = c.add_stream("aac", rate=44100)
    a.layout = "mono"
    for k in range(0, 44100, 1024):
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt",
                                       layout="mono")
        f.sample_rate, f.pts = 44100, k
        for p in a.encode(f):
            c.mux(p)
    for p in a.encode():
        c.mux(p)
    c.close()
    return path


def _undecodable(path: Path) -> Path:
    """An MP4 whose video stream is MPEG-5 EVC, which this FFmpeg build cannot decode."""
    c = av.open(str(path), "w")
    s = c.add_mux_stream("evc", rate=10, width=64, height=48)
    s.time_base = Fraction(1, 10)
    for i in range(3):
        p = av.Packet(b"\x00\x00\x01" + b"\x00" * 100)
        p.pts = p.dts = i
        p.stream, p.time_base = s, s.time_base
        c.mux(p)
    c.close()
    return path


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing.mp4", "no such file"),
        ("folder.mp4", "is a folder"),
        ("empty.mp4", "empty"),
        ("text.mp4", "not a video"),
        ("audio.mp4", "has no video stream"),
        ("evc.mp4", "unsupported codec"),
        ("cut_moov_at_end.mp4", "not a video"),
    ],
)
def test_bad_inputs(tmp_path: Path, media: SimpleNamespace, name: str, words: str) -> None:
    path = tmp_path / name
    if name == "folder.mp4":
        path.mkdir()
    elif name == "empty.mp4":
        path.write_bytes(b"")
    elif name == "text.mp4":
        path.write_text("this is not a video\n" * 20)
    elif name == "audio.mp4":
        _audio_only(path)
    elif name == "evc.mp4":
        _undecodable(path)
    elif name == "cut_moov_at_end.mp4":  # plain MP4: the index (moov) is at the end, now lost
        data = media.basic.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        probe_video(path)
    assert words in str(err.value)
    assert_one_line_naming(err, path)
    if name != "folder.mp4":  # a folder is an image folder for open_frames
        with pytest.raises(InputError) as err2:
            open_frames(path)
        assert_one_line_naming(err2, path)


def test_truncated_video_yields_what_decodes(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    full = make_video(tmp_path / "full.mp4", noise=True, options={"movflags": "+faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # index up front, half of the frame data missing
    assert probe_video(cut).frame_count == 40
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        frames = list(open_frames(cut))
    assert 5 <= len(frames) < 40
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames[:-1]:  # the frames delivered are the real ones
        assert red_centroid_x(f.image) == pytest.approx(square_x(f.index) + (SQ - 1) / 2, abs=1)
    assert any("cut.mp4" in r.getMessage() and "truncated" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    caplog.clear()  # a second pass over the file (wbcap run's render): said already
    with caplog.at_level(logging.DEBUG, logger="wbcap.io"):
        again = list(open_frames(cut, warn_retimed=False))
    assert [f.index for f in again] == [f.index for f in frames]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("truncated" in r.getMessage() for r in caplog.records)  # at debug level


def test_a_video_damaged_in_its_middle_is_said_with_the_frames_it_gave_and_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Bytes overwritten from the middle of a video on (an HCI researcher's trial): decoding stops
    there, the warning counts the frames delivered, the decoder's buffered ones included (it said
    "after 1 frames (last at 0.000 s)" of a clip that gave 5), and ``ended_early`` records it for
    meta.json (it was None: a batch script saw nothing of a clip that lost 25 of its 30 frames)."""
    data = bytearray(make_video(tmp_path / "full.mp4", noise=True, options={"movflags": "+faststart"}).read_bytes())
    rng = np.random.default_rng(0)
    for k in range(len(data) // 2, len(data) - 1000, 3000):
        data[k:k + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        source = open_frames(damaged)
        frames = list(source)
    assert 5 <= len(frames) < 40 and [f.index for f in frames] == list(range(len(frames)))
    last = f"{frames[-1].time:.3f} s"
    (warned,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned.startswith(f"{damaged}: decoding stopped after {len(frames)} frames (last at {last}) on damaged "
                             "data ("), warned
    assert source.ended_early == (f"decoding stopped on damaged data after {len(frames)} frames (last at {last}) of "
                                  "the 40 its header declares")


def test_a_truncated_matroska_file_is_said_by_its_declared_length(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Matroska declares no frame count, only a length: a file cut to 60 % gave its first frames
    and no word (the frame-count check above had nothing to compare). The whole file: none."""
    full = make_video(tmp_path / "full.mkv", noise=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert probe_video(cut).frame_count is None and probe_video(cut).duration == pytest.approx(4.0)
    for path, said in ((full, False), (cut, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
            frames = list(open_frames(path))
        assert (len(frames) < 40) == said
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        ended = (frames[-1].time + 0.1)
        assert warned == ([f"{path}: video ended at {ended:.2f} s of the 4.00 s its header declares; the file may be "
                           "truncated"] if said else []), warned
    # whole, with audio running 3 s past the video (the container's length is the audio's): no word
    longer = tmp_path / "longer_audio.mkv"
    with av.open(str(longer), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        a = c.add_stream("aac", rate=44100)
        a.layout = "mono"
        encode_all(c, v, (av.VideoFrame.from_ndarray(draw(i), format="rgb24") for i in range(20)))
        x = np.zeros(5 * 44100, np.float32)
        for k in range(0, len(x), 1024):
            f = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts = 44100, k
            for packet in a.encode(f):
                c.mux(packet)
        for packet in a.encode():
            c.mux(packet)
    info = probe_video(longer)
    assert info.duration == pytest.approx(5.0, abs=0.1) and info.video_end == pytest.approx(2.0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        assert len(list(open_frames(longer))) == 20
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_matroska_file_starting_after_zero_is_measured_from_its_own_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A whole Matroska file whose timestamps start at 3 s (a remuxed TS, a copy-cut clip): its
    DURATION tag says where it ends on its own clock (6 s), not how long it is, so reading it
    gave "video ended at 3.00 s of the 6.00 s its header declares" for a complete file (a
    review). Cut to 60 %, it is still said, with both times from its start."""
    whole = make_video(tmp_path / "late.mkv", n=30, noise=True, pts_ms=[3000 + 100 * i for i in range(30)])
    assert probe_video(whole).video_end == pytest.approx(6.0, abs=0.05)
    data = whole.read_bytes()
    cut = tmp_path / "late_cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    for path, said in ((whole, False), (cut, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
            frames = list(open_frames(path))
        assert frames[0].time == pytest.approx(0.0) and (len(frames) == 30) != said
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warned == ([f"{path}: video ended at {frames[-1].time + 0.1:.2f} s of the 3.00 s its header "
                           "declares; the file may be truncated"] if said else []), warned


def test_bad_arguments_and_empty_range(media: SimpleNamespace) -> None:
    for kwargs in (dict(start=-1.0), dict(start=2.0, end=1.0), dict(every=0),
                   dict(max_frames=-1), dict(image_fps=0.0)):
        with pytest.raises(InputError):
            open_frames(media.basic, **kwargs)
    with pytest.raises(InputError) as err:
        list(open_frames(media.basic, start=100.0))
    assert_one_line_naming(err, media.basic)
    assert "start" in str(err.value)
    # a range between two frames: where the next frame is, not how long the video is (a user
    # trial's "--end 0.3 ... the video has frames up to 0.500 s" for a video starting at 0.5 s)
    with pytest.raises(InputError) as err:
        list(open_frames(media.basic, start=0.02, end=0.05))
    assert "its first frame at or after start=0.02 s is at 0.100 s" in str(err.value), err.value


# --------------------------------------------------------------------------------------------
# Writing


def _decoded(path: Path) -> tuple[VideoInfo, list[Frame]]:
    return probe_video(path), list(open_frames(path))


def test_writer_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with VideoWriter(out, W, H, Fraction(25, 2)) as w:
        for i in range(15):
            w.write(draw(i))
    assert w.frames_written == 15
    info, frames = _decoded(out)
    assert (info.width, info.height, info.codec) == (W, H, "h264")
    assert info.fps_fraction == Fraction(25, 2) and info.frame_count == 15
    assert [f.time for f in frames] == pytest.approx([i / 12.5 for i in range(15)], abs=1e-6)
    for f in frames:
        assert red_centroid_x(f.image) == pytest.approx(square_x(f.index) + (SQ - 1) / 2, abs=1)
        assert np.abs(f.image.astype(int) - draw(f.index)).mean() < 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left
    # its colours said as they were converted (untagged, browsers took HD video for BT.709: shifted colours)
    import av

    from wbcap.io.video_writer import COLOR_TAGS

    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert {name: int(getattr(frame, name)) for name in COLOR_TAGS} == COLOR_TAGS == {
            "colorspace": 6, "color_range": 1, "color_primaries": 1, "color_trc": 1}
        for space in ("ITU601", "SMPTE170M"):  # (the matrix the tag names: the colours as written)
            rgb = frame.reformat(format="rgb24", src_colorspace=space, src_color_range=1).to_ndarray()
            assert np.abs(rgb.astype(int) - draw(0)).mean() < 3


def test_writer_odd_size_is_padded(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    img = draw(2, 63, 47)
    with VideoWriter(out, 63, 47, 10.0) as w:
        assert (w.out_width, w.out_height) == (64, 48)
        for _ in range(3):
            w.write(img)
    info, frames = _decoded(out)
    assert (info.width, info.height) == (64, 48) and len(frames) == 3
    assert np.abs(frames[1].image[:47, :63].astype(int) - img).mean() < 3
    assert np.abs(frames[1].image[47, :63].astype(int) - img[46]).mean() < 6  # edge repeated


def test_writer_ntsc_rate(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mkv"
    with VideoWriter(out, 32, 32, 29.97) as w:
        for _ in range(5):
            w.write(np.zeros((32, 32, 3), np.uint8))
    assert probe_video(out).fps_fraction == Fraction(30000, 1001)


def _audio_of(path: Path) -> tuple[float, float, np.ndarray, int]:
    """(stream duration s, first packet time s, decoded mono samples, sample rate)."""
    c = av.open(str(path))
    try:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        first = None
        chunks = []
        for packet in c.demux(a):
            if packet.pts is not None and first is None:
                first = float(packet.pts * a.time_base)
            for f in packet.decode():
                chunks.append(f.to_ndarray().reshape(-1))
        return float(a.duration * a.time_base), float(first or 0.0), np.concatenate(chunks), \
            a.codec_context.sample_rate
    finally:
        c.close()


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def test_writer_copies_audio(tmp_path: Path, media: SimpleNamespace) -> None:
    out = tmp_path / "with_audio.mp4"
    src = open_frames(media.tone)
    with VideoWriter(out, src.info.width, src.info.height, src.info.fps_fraction,
                     audio_from=media.tone) as w:
        for f in src:
            w.write(f.image)
    info, frames = _decoded(out)
    assert info.has_audio and len(frames) == 40
    duration, first, samples, sr = _audio_of(out)
    assert duration == pytest.approx(4.0, abs=0.05)  # the video's length
    assert first == pytest.approx(0.0, abs=0.03)
    assert _dominant_hz(samples[sr: 2 * sr], sr) == pytest.approx(440, abs=3)


def test_writer_cuts_audio(tmp_path: Path, media: SimpleNamespace) -> None:
    out = tmp_path / "cut_audio.mp4"
    src = open_frames(media.steps, start=1.0, end=2.5)  # tone: 300 Hz in [0,1), 500 in [1,2)...
    with VideoWriter(out, W, H, 10, audio_from=media.steps, audio_start=1.0,
                     audio_end=2.5) as w:
        for f in src:
            w.write(f.image)
    info, frames = _decoded(out)
    assert len(frames) == 15 and info.duration == pytest.approx(1.5, abs=0.05)
    duration, first, samples, sr = _audio_of(out)
    assert duration == pytest.approx(1.5, abs=0.05)
    assert first == pytest.approx(0.0, abs=0.03)
    assert _dominant_hz(samples[int(0.1 * sr): int(0.9 * sr)], sr) == pytest.approx(500, abs=5)
    assert _dominant_hz(samples[int(1.05 * sr): int(1.45 * sr)], sr) == pytest.approx(700, abs=5)


@pytest.mark.parametrize("every, end, length", [(3, 0.5, 0.5), (3, None, 4.0), (7, None, 4.0), (1, 2.0, 2.0)])
def test_writer_ends_at_the_sources_stretch_end(tmp_path: Path, media: SimpleNamespace, every, end, length) -> None:
    """end_at(stretch_end): the last frame lasts to --end or the source's end, the audio stops
    there too (an odd-media trial: with --every 3 --end 0.5 the render ran to 0.6 s, its audio to 0.51)."""
    from wbcap.testing.videos import stream_times

    out = tmp_path / "ended.mp4"
    src = open_frames(media.tone, every=every, end=end)
    with VideoWriter(out, W, H, Fraction(10, every), audio_from=media.tone, audio_end=end) as w:
        for f in src:
            w.write(f.image, time=f.time)
        with pytest.raises(ValueError, match="is not after the last frame's"):
            w.end_at(f.time)
        with pytest.raises(ValueError, match="not a number of seconds"):
            w.end_at(float("nan"))
        w.end_at(src.stretch_end)
    times, _, audio = stream_times(out)
    assert times == pytest.approx([i / 10 for i in range(0, round(10 * length), every)], abs=1e-4)
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert float(video.duration * video.time_base) == pytest.approx(length, abs=1e-3)
    assert length - 0.03 <= audio <= length + 0.024  # (whole AAC packets of 23 ms: one may start before the end)


def test_writer_timed_audio_stops_with_the_last_frame(tmp_path: Path, media: SimpleNamespace) -> None:
    """Without end_at or audio_end, the copied audio of a 4 s source stops where the last frame
    of 2 s of it ends (it ran on to 4 s, two of them under a still picture)."""
    from wbcap.testing.videos import stream_times

    out = tmp_path / "short.mp4"
    with VideoWriter(out, W, H, 10, audio_from=media.tone) as w:
        for f in open_frames(media.tone, end=2.0):
            w.write(f.image, time=f.time)
    assert 1.97 <= stream_times(out)[2] <= 2.024


def test_writer_encodes_pcm_audio_as_aac(tmp_path: Path, caplog) -> None:
    """A camera's or a lab recorder's PCM was copied into render.mp4 as it was (`ipcm`, which MP4
    players do not take: a user trial): encoded as AAC, the stretch's sound at its times."""
    src_path = make_video(tmp_path / "pcm.mov", n=40, audio="steps", audio_codec="pcm_s16le")
    with av.open(str(src_path)) as c:
        assert c.streams.audio[0].codec_context.name == "pcm_s16le"
    out = tmp_path / "cut_pcm.mp4"
    src = open_frames(src_path, start=1.0, end=2.5)
    with caplog.at_level(logging.INFO, logger="wbcap"):
        with VideoWriter(out, W, H, 10, audio_from=src_path, audio_start=1.0, audio_end=2.5) as w:
            for f in src:
                w.write(f.image)
    assert f"{src_path}: audio pcm_s16le encoded as AAC for cut_pcm.mp4" in caplog.text
    duration, first, samples, sr = _audio_of(out)  # (AAC, or it fails)
    assert duration == pytest.approx(1.5, abs=0.05) and first == pytest.approx(0.0, abs=0.03)
    assert _dominant_hz(samples[int(0.1 * sr): int(0.9 * sr)], sr) == pytest.approx(500, abs=5)
    assert _dominant_hz(samples[int(1.05 * sr): int(1.45 * sr)], sr) == pytest.approx(700, abs=5)
    # an AAC source is still copied, not encoded again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wbcap"):
        with VideoWriter(tmp_path / "aac.mp4", W, H, 10, audio_from=make_video(tmp_path / "aac_src.mp4", n=10,
                                                                                 audio="tone")) as w:
            w.write(draw(0))
    assert "encoded as AAC" not in caplog.text


def test_writer_encodes_audio_of_any_rate_and_time_base_in_step(tmp_path: Path) -> None:
    """A break-it trial: a 37.8 kHz source stopped the render (no such AAC rate), and ADPCM in an
    AVI (a time base of one block, 127 ms there) came out 80 ms early after a start between blocks. Now
    the nearest AAC rate above, and each frame at its own time less the start."""
    from wbcap.io.video_writer import _aac_rate

    assert [_aac_rate(r) for r in (8000, 37800, 44100, 192000, 0)] == [8000, 44100, 44100, 96000, 48000]
    for name, codec, vcodec, rate in (("odd.mov", "pcm_s16le", "libx264", 37800),
                                      ("adpcm.avi", "adpcm_ima_wav", "mpeg4", 8000)):
        src_path = make_video(tmp_path / name, n=30, audio="steps", audio_codec=codec, audio_rate=rate, codec=vcodec)
        out = tmp_path / f"cut_{name}.mp4"
        src = open_frames(src_path, start=1.05, end=2.5)  # (300 Hz in [0, 1), 500 in [1, 2), 700 in [2, 3) s)
        with VideoWriter(out, W, H, 10, audio_from=src_path, audio_start=1.05, audio_end=2.5) as w:
            for f in src:
                w.write(f.image)
        duration, first, samples, sr = _audio_of(out)
        assert sr == _aac_rate(rate) and -0.03 <= first < 0.26, (name, first)  # (whole packets: this ADPCM's 255 ms)
        # 500 Hz until 0.95 s, 700 Hz from there: the change where the source's is, within 30 ms (the
        # decoded samples begin at the first packet's time)
        before, after = ([int((t - first) * sr) for t in span] for span in ((0.86, 0.94), (0.97, 1.05)))
        assert _dominant_hz(samples[before[0]:before[1]], sr) == pytest.approx(500, abs=25), name
        assert _dominant_hz(samples[after[0]:after[1]], sr) == pytest.approx(700, abs=25), name


def test_writer_without_audio_in_source(tmp_path: Path, media: SimpleNamespace) -> None:
    out = tmp_path / "silent.mp4"
    with VideoWriter(out, W, H, 10, audio_from=media.basic) as w:
        w.write(draw(0))
    assert not probe_video(out).has_audio


def test_writer_exception_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "fail.mp4"
    with pytest.raises(KeyError), VideoWriter(out, W, H, 10) as w:
        w.write(draw(0))
        raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"previous")  # an existing file survives a failed rewrite untouched
    with pytest.raises(RuntimeError), VideoWriter(out, W, H, 10) as w:
        w.write(draw(0))
        raise RuntimeError("boom")
    assert out.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1

    w = VideoWriter(tmp_path / "aborted.mp4", W, H, 10)
    w.write(draw(0))
    w.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["fail.mp4"]

    with pytest.raises(InputError), VideoWriter(tmp_path / "none.mp4", W, H, 10):
        pass  # no frame written
    assert [p.name for p in tmp_path.iterdir()] == ["fail.mp4"]


def test_writer_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        VideoWriter(tmp_path / "no" / "such" / "dir.mp4", W, H, 10)
    with pytest.raises(InputError):
        VideoWriter(tmp_path / "x.avi", W, H, 10)
    with pytest.raises(InputError):
        VideoWriter(tmp_path / "x.mp4", W, H, 0)
    with pytest.raises(InputError) as err:
        VideoWriter(tmp_path / "x.mp4", W, H, 10, audio_from=tmp_path / "missing.mp4")
    assert_one_line_naming(err, tmp_path / "missing.mp4")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(tmp_path / "x.mp4", W, H, 10) as w:
        with pytest.raises(ValueError):
            w.write(np.zeros((H, W), np.uint8))
        with pytest.raises(ValueError):
            w.write(np.zeros((H, W, 3), np.float32))
        w.write(draw(0))
    with pytest.raises(ValueError):
        w.write(draw(1))


# --------------------------------------------------------------------------------------------
# Shared sample video


def test_vtest_avi(shared_dir: Path) -> None:
    vtest = shared_dir / "media" / "vtest.avi"
    if not vtest.is_file():
        pytest.skip(f"sample video {vtest} not present")
    info = probe_video(vtest)
    assert (info.width, info.height, info.fps, info.frame_count) == (768, 576, 10.0, 795)
    assert info.duration == pytest.approx(79.5) and info.codec == "msmpeg4"
    assert not info.has_audio and info.rotation == 0
    src = open_frames(vtest, max_frames=30)
    frames = list(src)
    assert [f.index for f in frames] == list(range(30))
    assert [f.time for f in frames] == pytest.approx([i / 10 for i in range(30)], abs=1e-9)
    assert all(f.image.shape == (576, 768, 3) for f in frames)
    late = list(open_frames(vtest, start=50.0, max_frames=2))
    assert [(f.index, f.time) for f in late] == [(500, 50.0), (501, pytest.approx(50.1))]
    assert isinstance(src, FrameSource)


def _h264(path: Path, frames: list[np.ndarray], fps: int = 10, sar: Fraction | None = None, fmt: str = "mp4") -> Path:
    """``frames`` (RGB) as an H.264 stream, its pixels ``sar`` wide (the VUI's sample aspect)."""
    import av

    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _bars(width: int, height: int) -> np.ndarray:
    """A grey picture with a dark vertical bar a quarter of the way across and a light one at
    three quarters (smooth edges: a scaler's rounding barely moves them)."""
    x = np.arange(width) / width
    profile = 128 - 90 * np.exp(-((x - 0.25) / 0.05) ** 2) + 90 * np.exp(-((x - 0.75) / 0.05) ** 2)
    return np.repeat(np.repeat(profile[None, :, None], height, 0), 3, 2).astype(np.uint8)


def test_non_square_pixels_are_made_square_as_players_show_them(tmp_path: Path, caplog) -> None:
    """A review: a 720x480 stream of 32:27 pixels (a DVD's 16:9) came as its stored grid, people
    16 % narrower than a player shows them. Frames are scaled to square pixels (96x48 of 4:3
    pixels -> 128x48), VideoInfo says that size, and the bars stay where the picture has them."""
    stored = _bars(96, 48)
    src = _h264(tmp_path / "anamorphic.mp4", [stored] * 3, sar=Fraction(4, 3))
    with caplog.at_level(logging.INFO, logger="wbcap.io.video_probe"):
        frames = open_frames(src)
    info = frames.info
    assert (info.stored_size, info.sample_aspect, info.decode_size) == ((96, 48), Fraction(4, 3), (128, 48))
    assert (info.width, info.height) == (128, 48)
    assert f"{src}: its pixels are not square (sample aspect ratio 4:3): frames are scaled from 96x48 to 128x48" in caplog.text
    images = [f.image for f in frames]
    assert len(images) == 3 and all(im.shape == (48, 128, 3) for im in images)
    row = images[0][24, :, 1].astype(int)
    assert abs(int(row.argmin()) - 32) <= 1 and abs(int(row.argmax()) - 96) <= 1, (row.argmin(), row.argmax())
    assert np.abs(images[0].astype(int) - _bars(128, 48)).mean() < 3
    square = open_frames(_h264(tmp_path / "square.mp4", [stored] * 2))  # (square pixels: as stored, said nothing)
    assert (square.info.width, square.info.sample_aspect) == (96, 1) and next(iter(square)).image.shape == (48, 96, 3)


def _joined(tmp_path: Path, second: tuple[int, int] = (128, 96), name: str = "joined.ts") -> Path:
    """Two MPEG-TS clips joined byte by byte, 4 frames of 64x48 then 4 of ``second`` (10 fps)."""
    joined = tmp_path / name
    joined.write_bytes(_h264(tmp_path / "a.ts", [_bars(64, 48)] * 4, fmt="mpegts").read_bytes()
                       + _h264(tmp_path / "b.ts", [_bars(*second)] * 4, fmt="mpegts").read_bytes())
    return joined


def test_a_video_whose_frames_change_size_is_read_at_its_first_size(tmp_path: Path, caplog) -> None:
    """A review: two clips joined (64x48 then 128x96) gave frames of both sizes. Every frame now
    has the first size, said once (from its first frame of the other size, also one --every
    skips: a break-it trial was told of the first one kept); frames of another shape (16:9 after
    4:3) are fitted in with their proportions kept, between black bars (stretched as the ffmpeg
    tool stretches them, people were a third taller: a break-it trial)."""
    joined = _joined(tmp_path)
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        frames = open_frames(joined)
        images = [f.image for f in frames]
        assert len([f for f in frames]) == 8  # (a second pass: nothing said again)
    assert len(images) == 8 and {im.shape for im in images} == {(48, 64, 3)}
    assert np.abs(images[-1].astype(int) - _bars(64, 48)).mean() < 3  # (the second clip's bars, scaled)
    said = [r.getMessage() for r in caplog.records if "change size" in r.getMessage()]
    assert said == [f"{joined}: the video's frames change size at 0.400 s (from 64x48 to 128x96); they are fitted "
                    "into the first frames' size, their proportions kept (black bars where the shapes differ; in the "
                    "first frames' pixel aspect)"], said
    wide = _joined(tmp_path, (128, 72), "wide.ts")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        images = [f.image for f in open_frames(wide, start=0.1, every=2)]  # (kept: 0.1, 0.3, 0.5, 0.7 s)
    assert len(images) == 4 and {im.shape for im in images} == {(48, 64, 3)}
    assert "change size at 0.400 s (from 64x48 to 128x72)" in caplog.text
    assert images[-1][:6].max() == 0 and images[-1][-6:].max() == 0  # (6 rows of black above and below)
    assert np.abs(images[-1][6:42].astype(int) - _bars(64, 36)).mean() < 3  # (the 16:9 picture, not stretched)


@pytest.mark.slow  # (a wbcap run)
def test_a_run_of_a_video_whose_frames_change_size_writes_its_render(tmp_path: Path, micro_ckpt, body_dir) -> None:
    """`wbcap run` of it failed at its end, when render.mp4 got a frame of the second size, after
    the network had done every frame (a review); it writes its outputs at the first size."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["-q", "run", str(_joined(tmp_path)), "-o", str(out), "--checkpoint", str(micro_ckpt),
                                 "--body-models", str(body_dir), "--device", "cpu", "--detector", "full",
                                 "--min-track", "1", "--export", "npz"])
    assert r.exit_code == 0, r.output
    assert probe_video(out / "render.mp4").width == 64 and len(list(open_frames(out / "render.mp4"))) == 8


def _hlg_planes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An SDR (BT.709) ``(H, W, 3)`` uint8 picture (even sides) as 10-bit HLG BT.2020 video
    stores it: ``(Y, Cb, Cr)`` uint16 planes, limited range, 4:2:0, written from the standards
    (not by FFmpeg, which the reader's conversion is): BT.709's inverse OETF, BT.2087's BT.709 to
    BT.2020 matrix, SDR white at 75 % of the HLG signal (BT.2408), BT.2100's HLG OETF and its
    BT.2020 non-constant-luminance Y'CbCr."""
    v = rgb.astype(np.float64) / 255
    linear = np.where(v < 0.081, v / 4.5, ((v + 0.099) / 1.099) ** (1 / 0.45)) @ np.array(
        [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]).T
    a, b, c = 0.17883277, 1 - 4 * 0.17883277, 0.5 - 0.17883277 * np.log(4 * 0.17883277)
    white = (np.exp((0.75 - c) / a) + b) / 12  # (the scene light HLG codes as 75 %)
    e = np.clip(linear * white, 0, 1)
    signal = np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-12)) + c)
    kr, kb = 0.2627, 0.0593
    y = kr * signal[..., 0] + (1 - kr - kb) * signal[..., 1] + kb * signal[..., 2]
    cb, cr = (signal[..., 2] - y) / (2 * (1 - kb)), (signal[..., 0] - y) / (2 * (1 - kr))
    half = (lambda p: p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean(axis=(1, 3)))
    return (np.round(64 + 876 * y).astype(np.uint16), np.round(512 + 896 * half(cb)).astype(np.uint16),
            np.round(512 + 896 * half(cr)).astype(np.uint16))


@pytest.mark.slow  # (FFmpeg builds its tone-mapping table, 1.4 s)
def test_hdr_video_is_brought_to_sdr(tmp_path: Path, caplog, monkeypatch) -> None:
    """An iPhone user's trial: HLG video (BT.2020 primaries, the iPhone's default "HDR" recording)
    was read as SDR, dull and dark. Made from an SDR picture by the standards' formulas (10-bit,
    tagged as an iPhone tags it), it reads back close to that picture (FFmpeg's scaler maps it to
    BT.709), far closer than the untouched HLG signal, said in one info line."""
    import av

    sdr = np.zeros((48, 64, 3), np.uint8)
    sdr[:, :21], sdr[:, 21:42], sdr[:, 42:] = (220, 40, 40), (40, 200, 40), (40, 60, 220)
    src = tmp_path / "hlg.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p10le"
        cc = s.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 9, 9, 18, 1  # (BT.2020nc, BT.2020, HLG)
        hlg = av.VideoFrame(64, 48, "yuv420p10le")
        for plane, values in zip(hlg.planes, _hlg_planes(sdr)):
            np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, :values.shape[1]] = values
        hlg.colorspace, hlg.color_primaries, hlg.color_trc, hlg.color_range = 9, 9, 18, 1
        for i in range(2):
            hlg.pts = i
            for p in s.encode(hlg):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    import av.video.reformatter

    made = []  # (one scaler for a pass's frames: FFmpeg builds its tone-mapping table, 1.4 s, once per scaler)

    real = av.video.reformatter.VideoReformatter

    def counted():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(av.video.reformatter, "VideoReformatter", counted)
    with caplog.at_level(logging.INFO, logger="wbcap.io.video_probe"):
        image, second = (f.image for f in open_frames(src))
    assert len(made) == 1 and np.abs(image.astype(int) - second).mean() < 2  # (two frames, one scaler)
    assert f"{src}: HLG BT.2020 video: its frames are brought to SDR (BT.709)" in caplog.text
    with av.open(str(src)) as c:
        as_sdr = next(c.decode(video=0)).to_ndarray(format="rgb24", src_color_range=1)  # (what it was read as)
    err, before = np.abs(image.astype(int) - sdr).mean(), np.abs(as_sdr.astype(int) - sdr).mean()
    # (FFmpeg maps HLG with its own tone mapping, not as the inverse of BT.2408's SDR-white rule: the
    # saturated bars come back 15-25 levels off; read as SDR, 36)
    assert err < 25 and before > err + 10, (err, before)
    for x, channel in ((10, 0), (30, 1), (50, 2)):  # (each bar's own colour the strongest, as in the SDR picture)
        assert image[24, x].argmax() == channel and image[24, x, channel] > 170, image[24, x]
    # a PyAV that cannot map it (17, the newest on Python 3.10): read as tagged, said in a warning
    import wbcap.io.hdr
    import wbcap.io.video_probe

    for module in (wbcap.io.hdr, wbcap.io.video_probe):
        monkeypatch.setattr(module, "pyav_maps_colours", lambda: False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="wbcap.io.video_probe"):
        image = next(iter(open_frames(src))).image
    assert np.array_equal(image, as_sdr)
    assert (f"{src}: HLG BT.2020 video, read as SDR (dull, dark colours): PyAV {av.__version__} does not map it; "
            "PyAV 18 does (Python 3.11 or newer: `pip install -U av`)") in caplog.text


def test_a_folders_skipped_files_are_said_once_per_run(tmp_path: Path, caplog) -> None:
    """An iPhone user's trial: a Live Photo's .MOV beside its picture was said skipped twice by
    `wbcap run` (again by the render pass's reader, which says nothing it read before)."""
    import cv2

    cv2.imwrite(str(tmp_path / "IMG_0005.JPG"), draw(0))
    (tmp_path / "IMG_0005.MOV").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="wbcap.io.images"):
        assert len(list(open_frames(tmp_path))) == 1
        assert len(list(open_frames(tmp_path, warn_retimed=False))) == 1  # (the render pass's reader)
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: skipped IMG_0005.MOV: videos are not read in a folder of pictures (`wbcap run VIDEO` reads one)"]


@pytest.mark.slow  # (four wbcap runs)
def test_a_resume_of_a_run_that_read_its_frames_at_another_size_is_refused(tmp_path: Path, micro_ckpt,
                                                                           body_dir) -> None:
    """A review: a run begun before wbcap made non-square pixels square (its records of 96x48
    frames) resumed at 128x48 would mix boxes and cameras of both; refused in one line, before
    anything is touched. Its own size resumes."""
    import json

    from click.testing import CliRunner

    from wbcap.cli import cli

    src = _h264(tmp_path / "anamorphic.mp4", [_bars(96, 48)] * 3, sar=Fraction(4, 3))
    out = tmp_path / "out"
    args = ["run", str(src), "-o", str(out), "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir),
            "--device", "cpu", "--detector", "full", "--min-track", "1", "--export", "none", "--no-render"]
    assert CliRunner().invoke(cli, ["-q", *args]).exit_code == 0
    raw = out / ".wbcap" / "raw.jsonl"
    lines = raw.read_text().splitlines()
    assert json.loads(lines[0])["size"] == [128, 48]
    assert CliRunner().invoke(cli, ["-q", *args, "--resume"]).exit_code == 0
    raw.write_text("".join(json.dumps({**json.loads(line), "size": [96, 48]}) + "\n" for line in lines))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    r = CliRunner().invoke(cli, ["-q", *args, "--resume"])
    assert r.exit_code == 2 and r.stderr == (
        f"error: {out}: its run read the frames of {src} at 96x48 pixels, which this wbcap reads at 128x48 (it makes "
        "non-square pixels square, as players show them); its records cannot be continued: start over with "
        "--overwrite\n"), r.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # (a run that failed at its end on a video whose frames changed size: its last records of the other size)
    assert len(lines) == 3
    raw.write_text("\n".join(lines[:-1]) + "\n" + json.dumps({**json.loads(lines[-1]), "size": [96, 48]}) + "\n")
    r = CliRunner().invoke(cli, ["-q", *args, "--resume"])
    assert r.exit_code == 2 and "at 96x48 pixels, which this wbcap reads at 128x48" in r.stderr, r.stderr


def test_a_pipe_or_a_device_is_named_as_such_not_an_empty_file(tmp_path: Path) -> None:
    """A streaming trial: a FIFO, `/dev/stdin` of a pipe and a camera's device were each "file is
    empty (0 bytes); re-export or re-copy the video" (and the FIFO's writer waited for ever)."""
    import os

    from wbcap.errors import InputError

    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as err:
        open_frames(fifo)
    assert str(err.value) == (f"{fifo}: is a pipe, not a video file; wbcap reads finished files (record a clip of it "
                              f"first, e.g. with wbcap record {fifo} -o clip.mkv --seconds 60, and name the file)")
    if Path("/dev/null").is_char_device():
        with pytest.raises(InputError, match=r"^/dev/null: is a device, not a video file; wbcap reads finished files"):
            open_frames("/dev/null")


def test_a_file_that_grows_while_it_is_read_is_said_so(media: SimpleNamespace, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A streaming trial: a file still being recorded was read to its end as it then was, and the
    run ended "done", its later frames unread without a word. A file that changed while it was read
    is said so (and meta.json's source_ended_early says it, through ``ended_early``)."""
    import shutil

    video = shutil.copyfile(media.basic, tmp_path / "rec.mp4")
    src = open_frames(video)
    frames = iter(src)
    next(frames)
    with open(video, "ab") as f:  # (the recorder appends meanwhile)
        f.write(b"\0" * 1024)
    with caplog.at_level(logging.WARNING, logger="wbcap.io.video_reader"):
        rest = list(frames)
    assert len(rest) == 39
    assert src.ended_early == ("changed size while it was read (still being recorded?): frames after its end as read "
                               "are missing")
    assert f"{video}: video changed size while it was read (still being recorded?)" in caplog.text
    whole = open_frames(media.basic)
    assert len(list(whole)) == 40 and whole.ended_early is None
    # a touch alone (a backup or sync tool) is no change: a break-it trial had "frames missing" of a whole read
    import os

    touched = open_frames(video)
    frames = iter(touched)
    next(frames)
    os.utime(video)
    assert len(list(frames)) == len(rest) and touched.ended_early is None


def test_a_video_whose_path_holds_a_colon_is_read_as_a_file(media: SimpleNamespace, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A break-it trial: `wbcap run pipe:/x.mp4` of a video in a folder named "pipe:" was "not a
    video file FFmpeg can read": FFmpeg took the name for its pipe protocol's address."""
    import shutil

    (tmp_path / "pipe:").mkdir()
    shutil.copyfile(media.basic, tmp_path / "pipe:" / "x.mp4")
    shutil.copyfile(media.basic, tmp_path / "http:x.mp4")
    monkeypatch.chdir(tmp_path)
    for name in ("pipe:/x.mp4", "http:x.mp4"):
        assert len(list(open_frames(name))) == 40, name
