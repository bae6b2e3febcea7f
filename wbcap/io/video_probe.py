"""What a video file holds (:func:`probe_video`, :class:`VideoInfo`) and its display rotation.

* **Probing.** :func:`probe_video` reads a file's size, frame rate, declared frame count,
  length, codec, audio and rotation, decoding the first frame only (to read the display matrix
  and to check that the video decodes at all). The helpers here open inputs for the reader and
  the writer's audio copy, turning every way ``av.open`` fails into one :class:`InputError`
  line, and find a file's time origin (:func:`_time_origin`, the origin ``ffmpeg -ss`` uses).
* **Rotation.** Phones store portrait video as landscape pictures plus a display matrix (older
  files: a ``rotate`` tag). wbcap applies it, so frames, ``VideoInfo.width``/``height`` are the
  picture as every player shows it. ``VideoInfo.rotation`` is in FFmpeg's ``rotate``-tag
  convention: the degrees (0, 90, 180, 270) the stored picture is turned **clockwise** for
  display, i.e. minus ``av_display_rotation_get()`` (which, like PyAV's
  ``VideoFrame.rotation``, counts counter-clockwise). A portrait iPhone clip has ``rotate=90``,
  display matrix angle -90. A display matrix that mirrors (negative determinant: front
  cameras, editors' "flip horizontal") is applied in full, as ``ffmpeg`` does:
  ``VideoInfo.mirrored``, a left-right flip after the rotation (:func:`orientation_of`).

User mistakes (missing file, a folder, an empty or non-video file, no video stream, a codec this
FFmpeg cannot decode) raise :class:`wbcap.errors.InputError` with one line naming the file and
the fix. Importing this module imports neither PyAV nor numpy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbcap.errors import InputError
from wbcap.io.frame_times import REORDER_WINDOW
from wbcap.io.hdr import frame_is_hdr, pyav_maps_colours

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

__all__ = ["VideoInfo", "apply_rotation", "file_time_origin", "orientation_of", "probe_video", "rotation_of"]

_AV_TIME_BASE = 1_000_000  # FFmpeg's AV_TIME_BASE: container start_time/duration are in µs


@dataclass(frozen=True)
class VideoInfo:
    """What a video file (or image sequence) holds, as wbcap will deliver it.

    Attributes:
        path: the file (for an image sequence: the folder/pattern given, or its first image).
        width: frame width in pixels **as displayed** (after rotation; pixels made square:
            ``decode_size``).
        height: frame height in pixels as displayed (after rotation).
        fps: average frame rate, frames per second (``float(fps_fraction)``).
        fps_fraction: the same rate, exact (``30000/1001`` for NTSC video).
        frame_count: number of frames the container declares, ``None`` when it declares none
            (Matroska/WebM, streams). For image sequences: the number of images.
        duration: length in seconds, ``None`` when unknown.
        video_end: where the video stream declares it ends, in seconds on the file's own
            clock (its timestamps, before the time origin is subtracted): the stream's start
            plus its duration, or the ``DURATION`` tag FFmpeg's Matroska muxer gives each stream
            (the end of its last frame on that clock); ``None`` when unknown. A container's
            ``duration`` covers its audio too, which may run on after the video.
        rotation: degrees (0, 90, 180, 270) the stored picture is rotated **clockwise** for
            display (FFmpeg's ``rotate`` tag convention); already applied to every frame. For
            image sequences: the first image's EXIF orientation as such a turn
            (:func:`wbcap.io.images.image_display`; each image is turned by its own).
        codec: FFmpeg decoder name (``"h264"``, ``"hevc"``, ``"msmpeg4"``...); ``"image"`` for
            image sequences.
        has_audio: the file has at least one audio stream.
        is_image_sequence: frames come from image files rather than a video.
        mirrored: the display matrix also flips the picture left-right (after ``rotation``; see
            :func:`orientation_of`); already applied to every frame.
        base_fps_fraction: the stream's base rate (FFmpeg's ``r_frame_rate``, guessed from its
            timestamps: the rate of the grid its frames lie on), when it has one and it is not
            ``fps_fraction``; None otherwise and for image sequences. A constant-rate file with
            dropped frames has its grid's rate here (30) and a lower average in ``fps`` (29.3 for
            1 frame of 45 dropped), which is what :func:`wbcap.smooth.track.clock_rate` tries
            second.
        stored_size: ``(width, height)`` of the first frame as stored (before rotation); None
            for image sequences.
        sample_aspect: the stream's sample (pixel) aspect ratio, width over height of one
            stored pixel as displayed: 1 for square pixels; 32/27 for a 720x480 DVD frame shown
            at 16:9 (FFmpeg's ``sample_aspect_ratio``, the container's where it has one).
    """

    path: Path
    width: int
    height: int
    fps: float
    fps_fraction: Fraction
    frame_count: int | None
    duration: float | None
    rotation: int
    codec: str
    has_audio: bool
    is_image_sequence: bool
    mirrored: bool = False
    video_end: float | None = None
    base_fps_fraction: Fraction | None = None
    stored_size: tuple[int, int] | None = None
    sample_aspect: Fraction = Fraction(1)

    @property
    def decode_size(self) -> tuple[int, int] | None:
        """``(width, height)`` every frame of the video is converted to before rotation: the
        first frame's stored size with its pixels made square (the width times
        ``sample_aspect``, to an even number: as players show it, FFmpeg's ``scale=iw*sar:ih``),
        also for frames stored at another size (a stream whose size changes part way: fitted
        into it, :func:`wbcap.io.video_reader.frame_at_size`); None for image sequences."""
        return None if self.stored_size is None else square_pixel_size(self.stored_size, self.sample_aspect)


def square_pixel_size(stored: tuple[int, int], sample_aspect: Fraction) -> tuple[int, int]:
    """``(width, height)`` of a ``stored`` ``(width, height)`` picture of pixels ``sample_aspect``
    wide (over high) as shown with square ones: the width times ``sample_aspect`` to an even
    number (at least 2), the height kept; ``stored`` itself for square pixels."""
    width, height = stored
    if sample_aspect != 1:
        width = max(2, 2 * round(width * sample_aspect / 2))
    return width, height


#: Sample aspect ratios outside these bounds are taken for damaged metadata (square pixels):
#: anamorphic video is at most 2:1 (HDV 4:3, DVD 64:45 / 32:27, 2x anamorphic film scans).
SAMPLE_ASPECT_BOUNDS = (Fraction(1, 4), Fraction(4))


def sample_aspect_of(stream: Any) -> Fraction:
    """A video stream's sample aspect ratio (:attr:`VideoInfo.sample_aspect`): the container's
    (``AVStream.sample_aspect_ratio``), else the codec's; 1 where neither is given (0/1) or the
    value is outside :data:`SAMPLE_ASPECT_BOUNDS`."""
    for value in (getattr(stream, "sample_aspect_ratio", None), stream.codec_context.sample_aspect_ratio):
        try:
            sar = Fraction(value) if value is not None else None
        except (TypeError, ValueError, ZeroDivisionError):
            sar = None
        if sar is not None and sar > 0:
            if SAMPLE_ASPECT_BOUNDS[0] <= sar <= SAMPLE_ASPECT_BOUNDS[1]:
                return sar
            log.debug("ignoring the sample aspect ratio %s (outside %s)", sar, SAMPLE_ASPECT_BOUNDS)
            return Fraction(1)
    return Fraction(1)


# --------------------------------------------------------------------------------------------
# Rotation


def orientation_of(stream: Any, frame: Any | None = None) -> tuple[int, bool]:
    """How a video stream's stored picture is turned for display: ``(clockwise, mirrored)``.

    The stored picture is rotated ``clockwise`` degrees (0, 90, 180 or 270), then, when
    ``mirrored``, flipped left-right: together any of the 8 ways a display matrix can turn a
    picture, applied as ``ffmpeg`` (autorotate) and players do. Sources, first found wins:

    1. the display matrix (``DISPLAYMATRIX`` side data) of ``frame``, a decoded
       ``av.VideoFrame`` of the stream (FFmpeg attaches the container's matrix to every frame).
       A matrix with a negative determinant mirrors the picture; the rotation is what is left
       once that mirror is taken out. (PyAV's ``VideoFrame.rotation``,
       ``av_display_rotation_get()``, counter-clockwise, ignores the mirror and reports a
       left-right mirror as a half turn, so the matrix itself is read; ``frame.rotation`` only
       where the side data cannot be read, then without a mirror.)
    2. the stream's legacy ``rotate`` metadata tag (clockwise; older FFmpeg builds exported it
       and some Matroska files carry it); it never mirrors.

    When ``frame`` is not given, the first frame of the stream is decoded to read its matrix and
    the container is seeked back to its start (a side effect on ``stream.container``).
    Angles that are not a multiple of 90 are rounded to the nearest one (with a warning).

    Args:
        stream: an ``av.VideoStream`` of an input container.
        frame: optionally, an ``av.VideoFrame`` already decoded from that stream.

    Returns:
        ``(clockwise, mirrored)``; :func:`apply_rotation` turns a stored picture with them.
    """
    return _orientation(stream, frame, log.warning)


def _orientation(stream: Any, frame: Any | None, warn: Any) -> tuple[int, bool]:
    """:func:`orientation_of`, its warnings logged with ``warn`` (``log.warning``/``log.debug``)."""
    if frame is None:
        frame = _first_frame(stream.container, stream)
    if frame is not None:
        matrix = _display_matrix(frame)
        if matrix is not None:
            clockwise, mirrored = _matrix_orientation(matrix)
            if clockwise or mirrored:
                return _snap_rotation(clockwise, stream, warn), mirrored
        else:
            ccw = float(getattr(frame, "rotation", 0) or 0)
            if ccw:
                return _snap_rotation(-ccw, stream, warn), False
    for key, value in (stream.metadata or {}).items():
        if key.lower() == "rotate":
            try:
                return _snap_rotation(float(value), stream, warn), False
            except ValueError:
                warn("%s: ignoring unreadable rotate tag %r", _container_name(stream), value)
    return 0, False


def rotation_of(stream: Any, frame: Any | None = None) -> int:
    """The clockwise rotation of :func:`orientation_of` (0, 90, 180 or 270 degrees), alone.

    It is the whole display transform unless the stream is also mirrored (``orientation_of``
    says so); a left-right mirror alone has rotation 0.
    """
    return orientation_of(stream, frame)[0]


def _display_matrix(frame: Any) -> tuple[int, ...] | None:
    """The frame's 3x3 display matrix (FFmpeg's nine native-endian ``int32``, row-major: ``a b u;
    c d v; x y w``, ``a b c d x y`` in 16.16 fixed point), or None when it has none or PyAV
    cannot hand it over."""
    import struct

    try:
        side = frame.side_data.get("DISPLAYMATRIX")
        if side is None:
            return None
        raw = bytes(side)
    except Exception:
        return None
    if len(raw) != 36:
        return None
    return struct.unpack("=9i", raw)


def _matrix_orientation(matrix: Sequence[int]) -> tuple[float, bool]:
    """``(clockwise degrees, mirrored)`` of a display matrix: a pixel ``(x, y)`` (y down) is
    shown at ``(a x + c y, b x + d y)`` plus a shift; that is a clockwise rotation followed,
    when ``a d - b c < 0``, by a left-right mirror (which negates ``a`` and ``c``)."""
    a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
    mirrored = a * d - b * c < 0
    if mirrored:
        a, c = -a, -c
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if not scale_x or not scale_y:
        return 0.0, False  # a degenerate matrix: shown as stored
    return math.degrees(math.atan2(b / scale_y, a / scale_x)), mirrored


def apply_rotation(image: np.ndarray, degrees: int, mirrored: bool = False) -> np.ndarray:
    """Turn a stored picture into the displayed one: rotate it ``degrees`` clockwise, then,
    when ``mirrored``, flip it left-right.

    ``degrees`` and ``mirrored`` follow :func:`orientation_of` (``degrees`` FFmpeg's ``rotate``
    tag): 90 turns the picture a quarter turn clockwise (``np.rot90(image, k=-1)``: the stored
    top-left corner ends up at the top-right), 180 turns it upside down, 270 a quarter turn
    counter-clockwise (``k=1``); ``mirrored`` then reverses the columns.

    Args:
        image: ``(H, W, ...)`` array, any dtype.
        degrees: 0, 90, 180 or 270 (other multiples of 90 are taken modulo 360).
        mirrored: flip left-right after the rotation.

    Returns:
        A view of ``image``: ``(H, W, ...)`` for 0/180, ``(W, H, ...)`` for 90/270.

    Raises:
        ValueError: ``degrees`` is not a multiple of 90.
    """
    import numpy as np

    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    quarter_turns_cw = (degrees // 90) % 4
    if quarter_turns_cw:
        image = np.rot90(image, k=-quarter_turns_cw)
    return image[:, ::-1] if mirrored else image


def _snap_rotation(clockwise: float, stream: Any, warn: Any) -> int:
    snapped = int(round(clockwise / 90.0)) * 90 % 360
    if abs((clockwise - snapped + 180.0) % 360.0 - 180.0) > 1.0:
        warn(
            "%s: display rotation %.1f degrees is not a multiple of 90; using %d",
            _container_name(stream), clockwise, snapped,
        )
    return snapped


def _container_name(stream: Any) -> str:
    try:
        return str(stream.container.name)
    except Exception:
        return "video"


# --------------------------------------------------------------------------------------------
# Probing


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video file's size, frame rate, length, rotation and streams.

    Decodes the first frame (to read the display matrix and to check that the video decodes at
    all); nothing else.

    Args:
        path: a video file (anything FFmpeg demuxes: MP4/MOV, MKV/WebM, AVI, ...).

    Returns:
        :class:`VideoInfo` with ``is_image_sequence=False``.

    Raises:
        InputError: the file is missing, a folder, empty, not a video, has no video stream, uses
            a codec this FFmpeg cannot decode, or has no decodable frame.
    """
    return _probe(Path(path).expanduser())[0]


def _probe(p: Path, warn: bool = True) -> tuple[VideoInfo, Fraction]:
    """:func:`probe_video`, plus the file's time origin in seconds (see :func:`_time_origin`).

    ``warn=False``: what is odd about the file (a rotation rounded to a multiple of 90 degrees,
    an unknown frame rate) is logged at debug level, for a file probed again in one run.
    """
    container = _open_input(p)
    try:
        stream = _video_stream(p, container)
        first = _first_frame(container, stream)
        if first is None:
            raise InputError(
                f"{p}: no video frame could be decoded (truncated or corrupt); re-download or "
                "re-encode it"
            )
        info = _info_from_stream(p, container, stream, first, warn)
        if warn and _is_cut_gif(p, container):  # (its last frame read in part without a word: a break-it trial)
            log.warning("%s: the GIF is cut short (no trailer at its end): its last frame may be partly decoded; "
                        "re-download or re-export it", p)
        return info, _time_origin(container)
    finally:
        container.close()


def _is_cut_gif(p: Path, container: Any) -> bool:
    """Whether ``p`` is a GIF whose last 64 bytes hold no block terminator and trailer (GIF89a
    spec, section 27), which FFmpeg decodes without an error (bytes appended after the trailer
    are no cut: a break-it trial)."""
    try:
        if "gif" not in str(container.format.name).split(","):
            return False
        with open(p, "rb") as f:
            f.seek(max(0, p.stat().st_size - 64))
            tail = f.read().rstrip(b"\x00")
    except (OSError, AttributeError):
        return False
    from wbcap.io.images import GIF_TRAILER

    return GIF_TRAILER not in tail  # (anywhere near the end: bytes some tools append after it are no cut)


def record_clip_hint(source: object) -> str:
    """How to make a file wbcap reads of a stream, a pipe or a camera (``source``): record a clip
    with ``wbcap record`` (:mod:`wbcap.io.record`; FFmpeg's command line need not be installed), and
    name it (a streaming trial)."""
    from wbcap.console import shell_word

    return (f"record a clip of it first, e.g. with wbcap record {shell_word(str(source), option_safe=True)} -o clip.mkv "
            "--seconds 60, and name the file")


def _open_input(p: Path) -> Any:
    """``av.open(p)`` with every way it fails turned into a one-line :class:`InputError`."""
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a video; pass a video file (a folder is read "
                         "as an image sequence by open_frames)")
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file; check the path") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror}); check its permissions") from None
    size = st.st_size
    if not stat.S_ISREG(st.st_mode):  # (a streaming trial: a pipe and a camera were "empty files" to re-copy)
        kind = ("a pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise InputError(f"{p}: is {kind}, not a video file; wbcap reads finished files ({record_clip_hint(p)})")
    if size == 0:
        raise InputError(f"{p}: file is empty (0 bytes); re-export or re-copy the video")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: cannot be read (permission denied); check its permissions")

    import av

    try:
        # (metadata not in UTF-8, e.g. a GIF's Latin-1 comment, raised UnicodeDecodeError: a break-it trial)
        # (a name with a colon, e.g. in a folder "pipe:", is read by FFmpeg as a protocol's address: pipe:,
        # http:...; "file:" keeps it a file, a break-it trial's "not a video file FFmpeg can read")
        name = f"file:{p.absolute()}" if ":" in str(p) else str(p)
        return av.open(name, mode="r", metadata_errors="replace")
    except av.FFmpegError as exc:
        log.debug("av.open(%s) failed: %s", p, exc)
        raise InputError(
            f"{p}: not a video file FFmpeg can read (or its index is missing, as in a truncated "
            "MP4); pass an MP4, MOV, MKV, WebM or AVI video"
        ) from None


def _video_stream(p: Path, container: Any) -> Any:
    """The file's main video stream (:func:`_main_video_stream`), checked to be decodable."""
    stream = _main_video_stream(container)
    if stream is None:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise InputError(
            f"{p}: has no video stream (streams: {', '.join(kinds)}); pass a video file"
        )
    if stream.codec_context is None:
        raise InputError(
            f"{p}: unsupported codec (this FFmpeg build has no decoder for its video stream); "
            "re-encode it to H.264, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    return stream


def _main_video_stream(container: Any) -> Any | None:
    """The video stream wbcap reads from a file with several (None when it has none).

    Never an attached picture (cover art). Among the others: the one with the most frames the
    container declares; among equals (Matroska and MPEG-TS declare none), FFmpeg's choice
    (``av_find_best_stream``, what ``container.streams.best("video")`` returns: the stream
    flagged default, then the one with more frames seen while probing, then the higher
    bitrate); then the first. So a still picture muxed as a stream of its own before the video
    (a cover whose attached-picture flag was lost) is not taken for the video. Every reader of
    a file (probe, decode, time origin) takes this one stream.
    """
    videos = [s for s in container.streams.video if not _is_cover_art(s)]
    if len(videos) <= 1:
        return videos[0] if videos else None
    try:
        best = container.streams.best("video")
    except Exception:
        best = None
    return max(videos, key=lambda s: (int(s.frames or 0), s is best))


def _is_cover_art(stream: Any) -> bool:
    """An attached picture (album art in an audio file) is not a video stream."""
    try:
        return bool(int(stream.disposition) & 0x0400)  # AV_DISPOSITION_ATTACHED_PIC
    except Exception:
        return False


def _first_frame(container: Any, stream: Any) -> Any | None:
    """Decode the stream's first frame, then seek the container back to the start.

    Returns None when no frame decodes (corrupt or truncated data).
    """
    import av

    frame = None
    try:
        for packet in container.demux(stream):
            frames = packet.decode()
            if frames:
                frame = frames[0]
                break
    except av.FFmpegError as exc:
        log.debug("%s: decoding the first frame failed: %s", container.name, exc)
    with contextlib.suppress(av.FFmpegError):
        container.seek(0)
    return frame


_DURATION_TAG = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)$")


def _stream_end(stream: Any) -> float | None:
    """Where the video stream declares it ends, in seconds on the file's clock: its
    ``start_time`` (0 when unknown) plus its ``duration``, else its ``DURATION`` tag
    (``HH:MM:SS.nnnnnnnnn``, as FFmpeg's Matroska muxer writes it: the end of the track's last
    frame on the file's clock, so a file whose timestamps start at 3 s and run 3 s says 6 s),
    else None."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        start = stream.start_time if stream.start_time is not None else 0
        return float((start + stream.duration) * stream.time_base)
    tag = next((v for k, v in (stream.metadata or {}).items() if k.upper() == "DURATION"), None)
    match = _DURATION_TAG.match(str(tag).strip()) if tag is not None else None
    if match is None:
        return None
    seconds = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
    return seconds if seconds > 0 else None


def _info_from_stream(p: Path, container: Any, stream: Any, first: Any,
                      warn: bool = True) -> VideoInfo:
    rotation, mirrored = _orientation(stream, first, log.warning if warn else log.debug)
    stored = (int(first.width or stream.codec_context.width), int(first.height or stream.codec_context.height))
    sar = sample_aspect_of(stream)
    width, height = square_pixel_size(stored, sar)
    kind = frame_is_hdr(first)
    if kind and pyav_maps_colours():
        (log.info if warn else log.debug)("%s: %s video: its frames are brought to SDR (BT.709) as FFmpeg's scaler maps "
                                          "them", p, kind)
    elif kind:
        import av

        (log.warning if warn else log.debug)(
            "%s: %s video, read as SDR (dull, dark colours): PyAV %s does not map it; PyAV 18 does (Python 3.11 or "
            "newer: `pip install -U av`)", p, kind, av.__version__)
    if sar != 1:
        (log.info if warn else log.debug)(
            "%s: its pixels are not square (sample aspect ratio %s): frames are scaled from %dx%d to %dx%d, "
            "as players show them", p, f"{sar.numerator}:{sar.denominator}", *stored, width, height)
    if rotation in (90, 270):
        width, height = height, width

    frame_count: int | None = int(stream.frames) if stream.frames and stream.frames > 0 else None
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
        duration = container.duration / _AV_TIME_BASE

    video_end = _stream_end(stream)

    rate: Fraction | None = None
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if candidate is not None and candidate > 0:
            rate = Fraction(candidate)
            break
    if rate is None and frame_count and duration:
        rate = Fraction(frame_count / duration).limit_denominator(1001)
    if rate is None:
        (log.warning if warn else log.debug)("%s: frame rate unknown; assuming 30 fps", p)
        rate = Fraction(30)

    base = Fraction(stream.base_rate) if stream.base_rate is not None and stream.base_rate > 0 else None
    has_audio = len(container.streams.audio) > 0
    codec = str(stream.codec_context.name)
    return VideoInfo(
        path=p, width=width, height=height, fps=float(rate), fps_fraction=rate,
        frame_count=frame_count, duration=duration, video_end=video_end, rotation=rotation, codec=codec,
        has_audio=has_audio, is_image_sequence=False, mirrored=mirrored,
        base_fps_fraction=base if base != rate else None, stored_size=stored, sample_aspect=sar,
    )


def file_time_origin(path: str | os.PathLike[str]) -> Fraction:
    """Seconds ``path``'s frame times are counted from (:func:`_time_origin`): a frame's time in
    :func:`wbcap.io.video_reader.open_frames` is its timestamp less this, and so is a sound's in
    :func:`wbcap.io.audio.read_audio`.

    Raises:
        InputError: a file FFmpeg cannot open (:func:`_open_input`), one line.
    """
    container = _open_input(Path(path))
    try:
        return _time_origin(container)
    finally:
        container.close()


def _time_origin(container: Any) -> Fraction:
    """Seconds subtracted from every timestamp of the file: where its time starts.

    The container's ``start_time`` (the origin ``ffmpeg -ss`` uses), or the earliest timestamp
    among the first ``2 * REORDER_WINDOW + 2`` packets of the main video stream
    (:func:`_main_video_stream`) when that is earlier: Matroska takes ``start_time`` from the
    first packet, which is not the earliest when presentation times are permuted against
    decode order. Demuxes those packets, so the
    container must be seeked or reopened before further reading.
    """
    import av

    start = container.start_time
    origin = None if start is None else Fraction(int(start), _AV_TIME_BASE)
    stream = _main_video_stream(container)
    if stream is not None and stream.time_base is not None:
        tb = Fraction(stream.time_base)
        with contextlib.suppress(av.FFmpegError):
            container.seek(0)
        try:
            for n, packet in enumerate(container.demux(stream)):
                if n >= 2 * REORDER_WINDOW + 2:
                    break
                ts = packet.pts if packet.pts is not None else packet.dts
                if packet.size and ts is not None and (origin is None or ts * tb < origin):
                    origin = ts * tb
        except av.FFmpegError as exc:
            log.debug("%s: demux stopped while reading the time origin: %s", container.name, exc)
    return Fraction(0) if origin is None else origin


def _is_avi(container: Any) -> bool:
    """AVI: timestamps are frame (chunk) counts, one chunk per frame slot."""
    try:
        return "avi" in str(container.format.name).split(",")
    except Exception:
        return False
