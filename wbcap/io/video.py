"""Video and image-sequence frames in, H.264 video out: streamed, never the whole video in memory.

Reading (:func:`probe_video`, :func:`open_frames`):

* Decoding is FFmpeg's, through PyAV (``stream.thread_type = "AUTO"``). Every frame comes out as
  wbcap's one pixel convention: ``(H, W, 3)`` ``uint8`` **RGB**, row 0 at the top of the upright
  picture, C-contiguous. The YUV -> RGB conversion uses the frame's own colour matrix and range.
* **Time.** ``Frame.time`` is the frame's presentation time in seconds, measured from the start
  of the file (the origin ``ffmpeg -ss`` uses: the container's ``start_time``, or the earliest
  video timestamp among the first packets when that is earlier), so variable-frame-rate video
  keeps its real timing. Frame times are **strictly increasing** in delivery (display) order,
  whatever the file stores; :class:`Frame` gives the rule. In short: the decoded frames' own
  timestamps, sorted within a window of :data:`REORDER_WINDOW` frames (timestamps permuted
  against decode order), where for AVI a frame's timestamp is its chunk's slot (AVI timestamps
  are frame counts; this also times packed-B-frame DivX/XviD files right); a repeated, backward
  or missing time becomes the previous time plus one nominal frame interval. One warning at the
  end of the iteration says how many frames were retimed. Image sequences have
  ``time = index / image_fps``.
* **Rotation.** Phones store portrait video as landscape pictures plus a display matrix (older
  files: a ``rotate`` tag). wbcap applies it, so frames, ``VideoInfo.width``/``height`` are the
  picture as every player shows it. ``VideoInfo.rotation`` is in FFmpeg's ``rotate``-tag
  convention: the degrees (0, 90, 180, 270) the stored picture is turned **clockwise** for
  display, i.e. minus ``av_display_rotation_get()`` (which, like PyAV's
  ``VideoFrame.rotation``, counts counter-clockwise). A portrait iPhone clip has ``rotate=90``,
  display matrix angle -90. Flips in a display matrix are ignored (no camera writes them).
* **Ranges.** ``start``/``end`` select ``start <= time < end`` (seconds). A start past 0 seeks to
  the key frame at least :data:`REORDER_WINDOW` frames before it and decodes from there; frame
  indices stay exact because a demux-only pass (no decoding, fast) counts the packets before
  ``start``.
* **Damaged files.** A truncated or corrupt video yields every frame that decodes, logs one
  warning where decoding stopped and ends; :class:`InputError` only if no frame decodes at all.

Writing (:class:`VideoWriter`): H.264 (libx264, ``yuv420p``), at a constant frame rate, or at the
frames' own times when :meth:`VideoWriter.write` is given them (variable frame rate, so the
output keeps the source's timing and its copied audio in sync); written under a temporary name
and renamed into place only when complete; optional audio copied packet for packet (no
re-encoding) from the source video.

User mistakes (missing file, a folder, an empty or non-video file, no video stream, a codec this
FFmpeg cannot decode, bad arguments) raise :class:`wbcap.errors.InputError` with one line naming
the file and the fix. Importing this module imports neither PyAV nor numpy.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import re
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbcap.errors import InputError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "Frame",
    "FrameSource",
    "VideoInfo",
    "VideoWriter",
    "apply_rotation",
    "count_frames",
    "open_frames",
    "probe_video",
    "retime",
    "rotation_of",
]

#: Output file endings :class:`VideoWriter` accepts (H.264 + copied audio fits all of them).
VIDEO_OUTPUT_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv"})

_EPS = 1e-6  # seconds: tolerance when comparing frame times with start/end
_GLOB_CHARS = re.compile(r"[*?\[]")
_AV_TIME_BASE = 1_000_000  # FFmpeg's AV_TIME_BASE: container start_time/duration are in µs

#: Frames of look-ahead used to put permuted timestamps back in order when reading (a timestamp
#: can move at most this many frames; packed B-frames and swapped pairs move by one).
REORDER_WINDOW: int = 4

#: Time base of the timestamps :class:`VideoWriter` writes for timed frames (the MPEG 90 kHz
#: clock: about 11 µs resolution; Matroska rounds it to its own 1 ms).
WRITER_TIME_BASE: Fraction = Fraction(1, 90_000)


# --------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True)
class VideoInfo:
    """What a video file (or image sequence) holds, as wbcap will deliver it.

    Attributes:
        path: the file (for an image sequence: the folder/pattern given, or its first image).
        width: frame width in pixels **as displayed** (after rotation).
        height: frame height in pixels as displayed (after rotation).
        fps: average frame rate, frames per second (``float(fps_fraction)``).
        fps_fraction: the same rate, exact (``30000/1001`` for NTSC video).
        frame_count: number of frames the container declares, ``None`` when it declares none
            (Matroska/WebM, streams). For image sequences: the number of images.
        duration: length in seconds, ``None`` when unknown.
        rotation: degrees (0, 90, 180, 270) the stored picture is rotated **clockwise** for
            display (FFmpeg's ``rotate`` tag convention); already applied to every frame.
        codec: FFmpeg decoder name (``"h264"``, ``"hevc"``, ``"msmpeg4"``...); ``"image"`` for
            image sequences.
        has_audio: the file has at least one audio stream.
        is_image_sequence: frames come from image files rather than a video.
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


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position of the frame in the source (display order, counted from the
            first frame of the file or the first image), whatever ``start``/``every`` skipped.
        time: presentation time in seconds from the start of the file; strictly increasing
            from one frame to the next of an iteration. For video it is, after subtracting the
            file's time origin (see the module docstring):

            * Each decoded picture carries its own timestamp (``pts``, else the packet's
              ``dts``); each picture, in delivery order, takes the smallest timestamp not yet
              taken among the pictures decoded up to :data:`REORDER_WINDOW` frames after it.
              Timestamps in order stay as they are; a file whose presentation times are
              permuted against decode order gets them back in order (a timestamp moves by at
              most that many frames).
            * **AVI**: a picture's timestamp is its chunk's slot (AVI timestamps are frame
              counts, one chunk per frame interval, empty chunks for dropped frames): so frames
              are at ``index / fps`` in a file without dropped frames, also with B-frames (whose
              decoded times FFmpeg reports one frame late) and DivX/XviD packed B-frames (which
              FFmpeg reports permuted: 0.125, 0.209, 0.167 s...; they are unpacked with FFmpeg's
              ``mpeg4_unpack_bframes`` filter). Chunk order is no error in AVI: reordering
              there is not counted as a repair.
            * **Repair**: a time that is missing, equal to or before the previous frame's
              becomes the previous time plus one nominal frame interval ``1 / VideoInfo.fps``
              (0 for a first frame without a timestamp). Frames whose time differs from their
              own timestamp are counted, and one warning at the end of the iteration gives the
              count.

            Image sequences: ``index / image_fps``.
        image: ``(H, W, 3)`` ``uint8`` RGB, C-contiguous, rotation applied.
    """

    index: int
    time: float
    image: np.ndarray


# --------------------------------------------------------------------------------------------
# Rotation


def rotation_of(stream: Any, frame: Any | None = None) -> int:
    """Clockwise display rotation of a video stream, in degrees: 0, 90, 180 or 270.

    Sources, first found wins:

    1. the display matrix (``DISPLAYMATRIX`` side data) of ``frame``, a decoded
       ``av.VideoFrame`` of the stream (FFmpeg attaches the container's matrix to every frame);
       PyAV reports it counter-clockwise (``VideoFrame.rotation``), so it is negated;
    2. the stream's legacy ``rotate`` metadata tag (already clockwise; older FFmpeg builds
       exported it and some Matroska files carry it).

    When ``frame`` is not given, the first frame of the stream is decoded to read its matrix and
    the container is seeked back to its start (a side effect on ``stream.container``).
    Angles that are not a multiple of 90 are rounded to the nearest one (with a warning).

    Args:
        stream: an ``av.VideoStream`` of an input container.
        frame: optionally, an ``av.VideoFrame`` already decoded from that stream.

    Returns:
        Degrees to rotate the stored picture clockwise for display; :func:`apply_rotation`
        does it.
    """
    if frame is None:
        frame = _first_frame(stream.container, stream)
    if frame is not None:
        ccw = float(frame.rotation or 0)
        if ccw:
            return _snap_rotation(-ccw, stream)
    for key, value in (stream.metadata or {}).items():
        if key.lower() == "rotate":
            try:
                return _snap_rotation(float(value), stream)
            except ValueError:
                log.warning("ignoring unreadable rotate tag %r", value)
    return 0


def apply_rotation(image: np.ndarray, degrees: int) -> np.ndarray:
    """Turn a stored picture into the displayed one: rotate it ``degrees`` clockwise.

    ``degrees`` follows :func:`rotation_of` (FFmpeg's ``rotate`` tag): 90 turns the picture a
    quarter turn clockwise (``np.rot90(image, k=-1)``: the stored top-left corner ends up at the
    top-right), 180 turns it upside down, 270 a quarter turn counter-clockwise (``k=1``).

    Args:
        image: ``(H, W, ...)`` array, any dtype.
        degrees: 0, 90, 180 or 270 (other multiples of 90 are taken modulo 360).

    Returns:
        A view of ``image``: ``(H, W, ...)`` for 0/180, ``(W, H, ...)`` for 90/270.

    Raises:
        ValueError: ``degrees`` is not a multiple of 90.
    """
    import numpy as np

    if degrees % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {degrees}")
    quarter_turns_cw = (degrees // 90) % 4
    if quarter_turns_cw == 0:
        return image
    return np.rot90(image, k=-quarter_turns_cw)


def _snap_rotation(clockwise: float, stream: Any) -> int:
    snapped = int(round(clockwise / 90.0)) * 90 % 360
    if abs((clockwise - snapped + 180.0) % 360.0 - 180.0) > 1.0:
        log.warning(
            "%s: display rotation %.1f degrees is not a multiple of 90; using %d",
            _container_name(stream), clockwise, snapped,
        )
    return snapped


def _container_name(stream: Any) -> str:
    try:
        return str(stream.container.name)
    except Exception:  # noqa: BLE001 - only used in a log message
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


def _probe(p: Path) -> tuple[VideoInfo, Fraction]:
    """:func:`probe_video`, plus the file's time origin in seconds (see :func:`_time_origin`)."""
    container = _open_input(p)
    try:
        stream = _video_stream(p, container)
        first = _first_frame(container, stream)
        if first is None:
            raise InputError(
                f"{p}: no video frame could be decoded (truncated or corrupt); re-download or "
                "re-encode it"
            )
        info = _info_from_stream(p, container, stream, first)
        return info, _time_origin(container)
    finally:
        container.close()


def _open_input(p: Path) -> Any:
    """``av.open(p)`` with every way it fails turned into a one-line :class:`InputError`."""
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a video; pass a video file (a folder is read "
                         "as an image sequence by open_frames)")
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise InputError(f"{p}: no such file; check the path") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror}); check its permissions") from None
    if size == 0:
        raise InputError(f"{p}: file is empty (0 bytes); re-export or re-copy the video")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: cannot be read (permission denied); check its permissions")

    import av

    try:
        return av.open(str(p), mode="r")
    except av.FFmpegError as exc:
        log.debug("av.open(%s) failed: %s", p, exc)
        raise InputError(
            f"{p}: not a video file FFmpeg can read (or its index is missing, as in a truncated "
            "MP4); pass an MP4, MOV, MKV, WebM or AVI video"
        ) from None


def _video_stream(p: Path, container: Any) -> Any:
    """The first video stream, checked to be decodable."""
    videos = [s for s in container.streams.video if not _is_cover_art(s)]
    if not videos:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise InputError(
            f"{p}: has no video stream (streams: {', '.join(kinds)}); pass a video file"
        )
    stream = videos[0]
    if stream.codec_context is None:
        raise InputError(
            f"{p}: unsupported codec (this FFmpeg build has no decoder for its video stream); "
            "re-encode it to H.264, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    return stream


def _is_cover_art(stream: Any) -> bool:
    """An attached picture (album art in an audio file) is not a video stream."""
    try:
        return bool(int(stream.disposition) & 0x0400)  # AV_DISPOSITION_ATTACHED_PIC
    except Exception:  # noqa: BLE001 - disposition unavailable: treat as a real video stream
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


def _info_from_stream(p: Path, container: Any, stream: Any, first: Any) -> VideoInfo:
    rotation = rotation_of(stream, first)
    width = int(stream.codec_context.width or first.width)
    height = int(stream.codec_context.height or first.height)
    if rotation in (90, 270):
        width, height = height, width

    frame_count: int | None = int(stream.frames) if stream.frames and stream.frames > 0 else None
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None and container.duration > 0:
        duration = container.duration / _AV_TIME_BASE

    rate: Fraction | None = None
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if candidate is not None and candidate > 0:
            rate = Fraction(candidate)
            break
    if rate is None and frame_count and duration:
        rate = Fraction(frame_count / duration).limit_denominator(1001)
    if rate is None:
        log.warning("%s: frame rate unknown; assuming 30 fps", p)
        rate = Fraction(30)

    has_audio = len(container.streams.audio) > 0
    codec = str(stream.codec_context.name)
    return VideoInfo(
        path=p, width=width, height=height, fps=float(rate), fps_fraction=rate,
        frame_count=frame_count, duration=duration, rotation=rotation, codec=codec,
        has_audio=has_audio, is_image_sequence=False,
    )


def _time_origin(container: Any) -> Fraction:
    """Seconds subtracted from every timestamp of the file: where its time starts.

    The container's ``start_time`` (the origin ``ffmpeg -ss`` uses), or the earliest timestamp
    among the first ``2 * REORDER_WINDOW + 2`` packets of the first video stream when that is
    earlier: Matroska takes ``start_time`` from the first packet, which is not the earliest when
    presentation times are permuted against decode order. Demuxes those packets, so the
    container must be seeked or reopened before further reading.
    """
    import av

    start = container.start_time
    origin = None if start is None else Fraction(int(start), _AV_TIME_BASE)
    videos = [s for s in container.streams.video if not _is_cover_art(s)]
    if videos and videos[0].time_base is not None:
        stream = videos[0]
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
    except Exception:  # noqa: BLE001 - no format name: not AVI
        return False


# --------------------------------------------------------------------------------------------
# Reading frames


def open_frames(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    start: float = 0.0,
    end: float | None = None,
    every: int = 1,
    max_frames: int | None = None,
    image_fps: float = 30.0,
    warn_retimed: bool = True,
) -> FrameSource:
    """Open a video or image sequence for lazy, selective frame reading.

    Args:
        spec: a video file; an image file; a folder of images; a glob pattern (``"shots/*.png"``);
            or a list of image files/folders/patterns (see
            :func:`wbcap.io.images.iter_image_paths`, natural order ``f2`` before ``f10``).
        start: first time to deliver, seconds (inclusive).
        end: time to stop at, seconds (exclusive: frames with ``start <= time < end``); ``None``
            for the end of the video.
        every: keep every ``every``-th frame of the range, counted from the first kept one.
        max_frames: stop after this many frames; ``None`` for no limit.
        image_fps: frame rate assigned to image sequences (their ``time = index / image_fps``).
        warn_retimed: log the count of retimed frames as a warning (else at debug level, for a
            second pass over a file whose timing was already reported).

    Returns:
        A :class:`FrameSource`; nothing is decoded until it is iterated (a video's first frame
        is decoded now, by :func:`probe_video`, to validate it).

    Raises:
        InputError: a bad path or file (see :func:`probe_video` and ``iter_image_paths``), or a
            bad argument (negative start, ``end <= start``, ``every < 1``...).
    """
    return FrameSource(spec, start=start, end=end, every=every, max_frames=max_frames,
                       image_fps=image_fps, warn_retimed=warn_retimed)


class FrameSource:
    """Frames of a video or image sequence, decoded lazily each time it is iterated.

    Build it with :func:`open_frames` (same arguments). ``info`` describes the whole source;
    iterating yields :class:`Frame` objects for the selected range, one decoded frame in memory
    at a time. Each iteration opens the file afresh and closes it when the loop ends, breaks or
    the generator is closed.

    Attributes:
        info: :class:`VideoInfo` of the source (for image sequences: size of the first image,
            ``fps=image_fps``, ``frame_count`` = number of images, ``rotation=0`` since each
            image's EXIF orientation is applied by ``load_image``).
        start, end, every, max_frames: the selection (seconds, seconds, frames, frames).
    """

    def __init__(
        self,
        spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        start: float = 0.0,
        end: float | None = None,
        every: int = 1,
        max_frames: int | None = None,
        image_fps: float = 30.0,
        warn_retimed: bool = True,
    ) -> None:
        _check_selection(start, end, every, max_frames, image_fps)
        self.warn_retimed = bool(warn_retimed)
        self.start = float(start)
        self.end = None if end is None else float(end)
        self.every = int(every)
        self.max_frames = None if max_frames is None else int(max_frames)
        self._image_paths: list[Path] | None = None
        self._origin = Fraction(0)  # seconds subtracted from a video's timestamps
        video = _video_path_of(spec)
        if video is not None:
            self.info, self._origin = _probe(video)
        else:
            from wbcap.io.images import iter_image_paths

            self._image_paths = iter_image_paths(spec)  # type: ignore[arg-type]
            self.info = self._image_info(spec, image_fps)

    def __repr__(self) -> str:
        return (f"FrameSource({str(self.info.path)!r}, start={self.start}, end={self.end}, "
                f"every={self.every}, max_frames={self.max_frames})")

    def __iter__(self) -> Iterator[Frame]:
        if self.max_frames == 0:
            return iter(())
        if self._image_paths is not None:
            return self._iter_images(self._image_paths)
        return self._iter_video()

    # -- image sequences -------------------------------------------------------------------

    def _image_info(self, spec: object, image_fps: float) -> VideoInfo:
        from wbcap.io.images import load_image

        assert self._image_paths is not None
        first = load_image(self._image_paths[0])
        if isinstance(spec, (str, os.PathLike)):
            path = Path(spec).expanduser()
        else:
            path = self._image_paths[0]
        n = len(self._image_paths)
        rate = _as_fraction(image_fps)
        return VideoInfo(
            path=path, width=int(first.shape[1]), height=int(first.shape[0]),
            fps=float(image_fps), fps_fraction=rate, frame_count=n, duration=n / float(image_fps),
            rotation=0, codec="image", has_audio=False, is_image_sequence=True,
        )

    def _iter_images(self, paths: list[Path]) -> Iterator[Frame]:
        from wbcap.io.images import load_image

        fps = self.info.fps
        first = max(0, math.ceil(self.start * fps - _EPS * fps))
        yielded = 0
        for i in range(first, len(paths)):
            t = i / fps
            if self.end is not None and t >= self.end - _EPS:
                break
            if self.max_frames is not None and yielded >= self.max_frames:
                break
            keep = (i - first) % self.every == 0
            if not keep:
                continue
            image = load_image(paths[i])
            if image.shape[:2] != (self.info.height, self.info.width):
                raise InputError(
                    f"{paths[i]}: image is {image.shape[1]}x{image.shape[0]}, the sequence's "
                    f"first image is {self.info.width}x{self.info.height}; resize the images to "
                    "one size"
                )
            yielded += 1
            yield Frame(index=i, time=t, image=image)
        if yielded == 0 and self.max_frames != 0:
            raise InputError(
                f"{self.info.path}: no image in the selected range (start={self.start:g} s, "
                f"end={_fmt_end(self.end)}; {len(paths)} images at {fps:g} fps = "
                f"{len(paths) / fps:g} s); check start/end"
            )

    # -- video -----------------------------------------------------------------------------

    def _iter_video(self) -> Iterator[Frame]:
        import av
        import numpy as np

        info = self.info
        p = info.path
        container, stream = _open_decoding(p)
        retimed = _RetimeStats()
        try:
            tb = Fraction(stream.time_base)
            origin = self._origin
            by_chunk = _is_avi(container)
            step = 1 / info.fps_fraction  # nominal frame interval, s
            index = 0  # index the next frame at or after `start` gets
            seeked = False
            if self.start > 0:
                index, broken = _count_packets_before(container, stream, Fraction(self.start),
                                                      origin, step, by_chunk)
                # Seek REORDER_WINDOW frames early: the key frame reached is then shown before
                # `start` even in an open GOP, whose leading B-frames the decoder drops.
                lead = Fraction(REORDER_WINDOW) / info.fps_fraction
                target = max(Fraction(0), Fraction(self.start) - lead) + origin
                if broken:  # a seek goes by the raw timestamps: decode from the start
                    log.debug("%s: timestamps before start=%g s need repair; decoding from the "
                              "start", p, self.start)
                else:
                    try:
                        container.seek(int(target / tb), stream=stream, backward=True,
                                       any_frame=False)
                        seeked = True
                    except av.FFmpegError as exc:  # not seekable: decode from the beginning
                        log.debug("%s: seek failed (%s); decoding from the start", p, exc)
                if not seeked:
                    container.close()
                    container, stream = _open_decoding(p)

            own_time = _own_time(tb, origin, by_chunk=False)  # AVI packets carry dts as pts
            state = _DecodeState(by_chunk=by_chunk, quiet_if_empty=seeked)
            timed = _retime(_decode(container, stream, state), own_time, step, retimed,
                            count_reorder=not by_chunk)
            first = next(timed, None)
            if first is None and seeked and state.decoded == 0:
                log.debug("%s: nothing decoded after seeking (%s); decoding from the start", p,
                          state.error)
                container.close()
                container, stream = _open_decoding(p)
                state = _DecodeState(by_chunk=by_chunk)
                timed = _retime(_decode(container, stream, state), own_time, step, retimed,
                                count_reorder=not by_chunk)
                first = next(timed, None)

            yielded = 0
            in_range = 0  # frames seen inside [start, end)
            prev_time: float | None = None
            stopped_early = False
            for av_frame, t_exact in itertools.chain([first] if first else [], timed):
                t = float(t_exact)
                prev_time = t
                if t < self.start - _EPS:
                    continue
                if self.end is not None and t >= self.end - _EPS:
                    stopped_early = True
                    break
                frame_index = index
                index += 1
                keep = in_range % self.every == 0
                in_range += 1
                if not keep:
                    continue
                image = _to_rgb(av_frame)
                if info.rotation:
                    image = apply_rotation(image, info.rotation)
                yield Frame(index=frame_index, time=t, image=np.ascontiguousarray(image))
                yielded += 1
                if self.max_frames is not None and yielded >= self.max_frames:
                    stopped_early = True
                    break

            if state.error is not None and state.decoded == 0 and self.start <= 0:
                raise InputError(
                    f"{p}: no video frame could be decoded (truncated or corrupt); re-download "
                    "or re-encode it"
                )
            if not stopped_early and state.error is None and info.frame_count:
                done = index
                if by_chunk and prev_time is not None:  # AVI counts dropped (empty) chunks too
                    done = max(index, round(prev_time * info.fps) + 1)
                missing = info.frame_count - done
                if missing > max(2, info.frame_count // 100):
                    log.warning(
                        "%s: video ended after %d of the %d frames its header declares; the "
                        "file may be truncated", p, index, info.frame_count,
                    )
            if yielded == 0 and self.max_frames != 0:
                raise InputError(
                    f"{p}: no frame in the selected range (start={self.start:g} s, "
                    f"end={_fmt_end(self.end)}; the video has "
                    f"{_fmt_duration(info.duration, prev_time)}); check start/end"
                )
        finally:
            container.close()
            if retimed.count:
                (log.warning if self.warn_retimed else log.debug)(
                    "%s: %d of %d frames had missing, repeated or out-of-order timestamps "
                    "(first at %.3f s); retimed them so frame times strictly increase",
                    p, retimed.count, retimed.frames, retimed.first_time,
                )


def _open_decoding(p: Path) -> tuple[Any, Any]:
    """Open ``p`` for decoding: ``(container, video stream)``, frame/slice threads on."""
    container = _open_input(p)
    try:
        stream = _video_stream(p, container)
    except BaseException:
        container.close()
        raise
    stream.thread_type = "AUTO"
    return container, stream


def count_frames(source: FrameSource) -> int | None:
    """How many frames iterating ``source`` yields, without decoding (for progress bars).

    Exact for image sequences. For videos it is computed from the container's declared frame
    count and average frame rate: exact for constant-frame-rate video with a truthful header
    (almost every camera file), an estimate for variable-frame-rate video. ``None`` when the
    container declares no frame count (Matroska/WebM).

    Args:
        source: an opened :class:`FrameSource`.

    Returns:
        Number of frames, or ``None``.
    """
    info = source.info
    if info.frame_count is None:
        return None
    fps = info.fps
    first = max(0, math.ceil(source.start * fps - _EPS * fps))
    stop = info.frame_count
    if source.end is not None:
        stop = min(stop, max(0, math.ceil(source.end * fps - _EPS * fps)))
    n_range = max(0, stop - first)
    n = -(-n_range // source.every)
    if source.max_frames is not None:
        n = min(n, source.max_frames)
    return n


class _DecodeState:
    """What :func:`_decode` saw: frames decoded and the error that stopped it, if any.

    ``by_chunk`` (AVI): each packet's ``pts`` is set to its ``dts``, the chunk's slot (see
    :class:`Frame`), before decoding, and MPEG-4 part 2 packets go through FFmpeg's
    ``mpeg4_unpack_bframes`` filter, which splits packed B-frames (DivX/XviD) into chunks of
    their own, so the decoder needs no packed-bitstream marker (absent after a seek).
    """

    def __init__(self, by_chunk: bool = False, quiet_if_empty: bool = False) -> None:
        self.decoded = 0
        self.error: Exception | None = None
        self.by_chunk = by_chunk
        self.quiet_if_empty = quiet_if_empty  # no warning when nothing decoded (caller retries)


def _unpack_filter(stream: Any) -> Any | None:
    """FFmpeg's ``mpeg4_unpack_bframes`` bitstream filter for an MPEG-4 part 2 stream, or None."""
    if stream.codec_context.name != "mpeg4":
        return None
    try:
        from av.bitstream import BitStreamFilterContext, bitstream_filters_available

        if "mpeg4_unpack_bframes" not in bitstream_filters_available:
            return None
        return BitStreamFilterContext("mpeg4_unpack_bframes", stream)
    except Exception as exc:  # noqa: BLE001 - without it, the decoder unpacks by itself
        log.debug("mpeg4_unpack_bframes unavailable: %s", exc)
        return None


def _decode(container: Any, stream: Any, state: _DecodeState) -> Iterator[Any]:
    """Yield ``av.VideoFrame``s of ``stream`` in display order; stop (with a warning) at damage.

    Demux or decode errors end the iteration after the decoder's buffered frames are flushed;
    the error is recorded in ``state``. See :class:`_DecodeState` for AVI.
    """
    import av

    packets = container.demux(stream)
    codec = stream.codec_context
    tb = stream.time_base
    unpack = _unpack_filter(stream) if state.by_chunk else None
    last_time: float | None = None
    while True:
        try:
            packet = next(packets)
            if state.by_chunk and packet.dts is not None:
                packet.pts = packet.dts
            if unpack is None:
                frames = packet.decode()
            else:
                frames = []
                end = not packet.size  # (filter() takes the packet's data away)
                for part in (unpack.filter(None) if end else unpack.filter(packet)):
                    part.time_base = tb
                    frames += codec.decode(part)
                if end:
                    frames += codec.decode(None)  # flush the decoder
        except StopIteration:
            return
        except av.FFmpegError as exc:
            state.error = exc
            break
        for frame in frames:
            state.decoded += 1
            last_time = frame.time
            yield frame
    # Damaged data: deliver what the decoder still holds, then stop.
    (log.debug if state.quiet_if_empty and state.decoded == 0 else log.warning)(
        "%s: decoding stopped after %d frames (last at %s) on damaged data (%s); the file is "
        "truncated or corrupt", container.name, state.decoded, _fmt_time(last_time), state.error,
    )
    try:
        flushed = stream.codec_context.decode(None)
    except av.FFmpegError:
        return
    for frame in flushed:
        state.decoded += 1
        yield frame


class _RetimeStats:
    """What :func:`_retime` did: frames timed, how many were retimed, the first one's time."""

    def __init__(self) -> None:
        self.frames = 0
        self.count = 0  # frames whose time is not their own timestamp
        self.repaired = 0  # of those, frames whose time was missing, repeated or backward
        self.first_time = 0.0


def _retime(
    items: Iterator[Any],
    own_time: Any,
    step: Fraction,
    stats: _RetimeStats,
    count_reorder: bool = True,
    window: int = REORDER_WINDOW,
) -> Iterator[tuple[Any, Fraction]]:
    """Pair frames with strictly increasing presentation times (the rule of :attr:`Frame.time`).

    Each item's own time goes into a pool; the oldest waiting item takes the smallest time of
    the pool once ``window`` later items have arrived (or the stream ended). A missing time, or
    one not after the previous item's, becomes the previous time plus ``step`` (0 for a first
    item without a time).

    Args:
        items: decoded ``av.VideoFrame``s in delivery order (or packets, to predict their times).
        own_time: ``item -> Fraction | None``, the item's own time in seconds from the origin.
        step: nominal frame interval, seconds (``1 / fps``): what a repaired time adds.
        stats: updated with the number of items timed and retimed.
        count_reorder: count an item whose time came from another item as retimed (False for
            AVI, where frames normally take their chunk slots out of order).
        window: items of look-ahead.

    Yields:
        ``(item, seconds)`` with seconds strictly increasing, as exact fractions.
    """
    prev: Fraction | None = None

    def settle(own: Fraction | None, pooled: Fraction | None) -> Fraction:
        nonlocal prev
        t = pooled
        if t is None or (prev is not None and t <= prev):
            t = Fraction(0) if prev is None else prev + step
            stats.repaired += 1
        if t != (own if count_reorder else pooled):
            if stats.count == 0:
                stats.first_time = float(t)
            stats.count += 1
        stats.frames += 1
        prev = t
        return t

    waiting: deque[tuple[Any, Fraction | None]] = deque()
    pool: list[Fraction] = []  # heap of the waiting items' own times
    for item in items:
        own = own_time(item)
        waiting.append((item, own))
        if own is not None:
            heapq.heappush(pool, own)
        if len(waiting) > window:
            oldest, oldest_own = waiting.popleft()
            yield oldest, settle(oldest_own, None if oldest_own is None else heapq.heappop(pool))
    while waiting:
        oldest, oldest_own = waiting.popleft()
        yield oldest, settle(oldest_own, None if oldest_own is None else heapq.heappop(pool))


def retime(times: Sequence[float | None], fps: float) -> tuple[list[float], int]:
    """Apply :attr:`Frame.time`'s rule to a list of frame times already recorded.

    For times read from an earlier run's records (``wbcap run --resume`` on a raw file written
    before decoding repaired times): the same window sort and repair as :class:`FrameSource`.

    Args:
        times: seconds per frame in delivery order (None where unknown).
        fps: nominal frame rate; a repaired time is the previous one plus ``1 / fps``.

    Returns:
        ``(times, retimed)``: strictly increasing seconds, and how many differ from the input.
    """
    stats = _RetimeStats()
    pairs = _retime(iter(range(len(times))), lambda i: None if times[i] is None else Fraction(times[i]),
                    Fraction(1) / _as_fraction(fps), stats)
    return [float(t) for _, t in pairs], stats.count


def _own_time(tb: Fraction, origin: Fraction, by_chunk: bool) -> Any:
    """``item -> seconds from origin | None`` for frames or packets: the ``pts`` (AVI: the
    ``dts``, the chunk's slot), else the other timestamp, else None."""

    def own(item: Any) -> Fraction | None:
        first, second = (item.dts, item.pts) if by_chunk else (item.pts, item.dts)
        ts = first if first is not None else second
        return None if ts is None else ts * tb - origin

    return own


def _count_packets_before(container: Any, stream: Any, start: Fraction, origin: Fraction,
                          step: Fraction, by_chunk: bool = False) -> tuple[int, bool]:
    """Number of video frames whose :attr:`Frame.time` is < ``start`` (seconds), demuxing only.

    Applies the rule of :attr:`Frame.time` to the packets' timestamps, with
    ``4 * REORDER_WINDOW`` packets of look-ahead to turn decode order into display order, and
    repeated or missing times repaired as when decoding; stops at the first time >= ``start``.
    Leaves the container wherever it stopped (callers seek or reopen afterwards).

    Returns:
        ``(count, broken)``: ``broken`` when some time up to there had to be repaired (missing,
        repeated or backward beyond reordering), so that a seek by timestamp cannot be trusted.
    """
    import av

    limit = start - Fraction(_EPS)

    def packets() -> Iterator[Any]:
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    yield packet
        except av.FFmpegError as exc:
            log.debug("%s: demux stopped while counting frames: %s", container.name, exc)

    count = 0
    own = _own_time(Fraction(stream.time_base), origin, by_chunk)
    stats = _RetimeStats()
    for _, t in _retime(packets(), own, step, stats, window=4 * REORDER_WINDOW):
        if t >= limit:
            break
        count += 1
    return count, stats.repaired > 0


def _to_rgb(frame: Any) -> np.ndarray:
    """``av.VideoFrame`` -> ``(H, W, 3)`` uint8 RGB, using the frame's colour matrix and range."""
    kwargs: dict[str, Any] = {"format": "rgb24"}
    if frame.color_range:  # 1 = limited ("tv"), 2 = full ("pc"); 0 = unspecified
        kwargs["src_color_range"] = int(frame.color_range)
    return frame.to_ndarray(**kwargs)


def _video_path_of(spec: object) -> Path | None:
    """The video file ``spec`` names, or None when it names images (file, folder, pattern, list)."""
    from wbcap.io.images import IMAGE_EXTENSIONS

    if not isinstance(spec, (str, os.PathLike)):
        return None
    p = Path(spec).expanduser()
    if p.is_dir():
        return None
    if p.exists():
        return None if p.suffix.lower() in IMAGE_EXTENSIONS else p
    if _GLOB_CHARS.search(str(spec)):
        return None
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return None  # let iter_image_paths report the missing image
    raise InputError(f"{p}: no such file or folder; check the path")


def _check_selection(start: float, end: float | None, every: int, max_frames: int | None,
                     image_fps: float) -> None:
    if not math.isfinite(start) or start < 0:
        raise InputError(f"start={start}: must be a time in seconds >= 0; pass e.g. start=0")
    if end is not None and (not math.isfinite(end) or end <= start):
        raise InputError(f"end={end}: must be a time in seconds after start={start}; "
                         "pass a later end, or None for the end of the video")
    if int(every) != every or every < 1:
        raise InputError(f"every={every}: must be a whole number >= 1; pass every=1 for all frames")
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 0):
        raise InputError(f"max_frames={max_frames}: must be a whole number >= 0, or None for "
                         "no limit")
    if not math.isfinite(image_fps) or image_fps <= 0:
        raise InputError(f"image_fps={image_fps}: must be > 0 frames per second; pass e.g. 30")


def _fmt_time(t: float | None) -> str:
    return "an unknown time" if t is None else f"{t:.3f} s"


def _fmt_end(end: float | None) -> str:
    return "end of video" if end is None else f"{end:g} s"


def _fmt_duration(duration: float | None, last_time: float | None) -> str:
    if last_time is not None:
        return f"frames up to {last_time:.3f} s"
    if duration is not None:
        return f"a length of {duration:.3f} s"
    return "no frame there"


# --------------------------------------------------------------------------------------------
# Writing


def _as_fraction(fps: Fraction | float | int) -> Fraction:
    """A frame rate as an exact fraction; 29.97-style floats become ``30000/1001``."""
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"fps={fps}: must be a frame rate > 0; pass e.g. 30")
    if isinstance(fps, Fraction):
        return fps
    ntsc = round(value * 1.001)
    if ntsc in (24, 30, 48, 60, 120, 240) and abs(value - ntsc / 1.001) < 5e-4:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(value).limit_denominator(1001)


class VideoWriter:
    """Write RGB frames to an H.264 video, atomically, optionally with the source's audio.

    The video is H.264 (libx264, ``yuv420p``, quality ``crf``; lower is better, 18-23 is
    typical). ``yuv420p`` needs an even width and height: an odd size is padded by one
    row/column at the bottom/right, repeating the edge pixels (the output is then
    ``width + width % 2`` by ``height + height % 2``).

    Timing, chosen by the first :meth:`write` and kept for the whole file:

    * **Constant rate** (``write(image)``): frame ``n`` gets ``pts = n`` in units of ``1/fps``,
      whatever the timing of the frames it was computed from.
    * **Frame times** (``write(image, time=t)``, for every frame): ``t`` is the frame's
      presentation time in seconds on the source's clock (:attr:`Frame.time`), and the frame is
      shown at ``t - audio_start`` in the output, so ``audio_start`` is the output's time origin
      for video as for audio (pass the ``start`` the frames were read with, and the output plays
      in sync with the copied audio). The stream is variable-frame-rate: timestamps in
      :data:`WRITER_TIME_BASE` (1/90000 s; Matroska stores 1 ms), each frame lasting until the
      next one, the last as long as the interval before it (``1/fps`` for a single frame), so
      the file is as long as the source span it covers, within one frame. Times must increase;
      two that round to the same tick are one tick apart. Written without B-frames: with them,
      x264's decode times lag the presentation times by two frames, and MP4 takes the track's
      length from the last decode time, so an irregular video would end early (a sparse clip by
      seconds). That costs size: +19 % at the same ``crf`` on the ``vtest.avi`` sample. ``fps``
      is then only the nominal rate given to the encoder and the single-frame duration.

    The file is written under a hidden temporary name in the destination folder
    (:func:`wbcap.export.atomic.atomic_path`) and renamed into place by :meth:`close` (or the end
    of a ``with`` block without an exception). An exception inside the ``with`` block, or
    :meth:`abort`, deletes the temporary: no partial video is ever left.

    Audio: when ``audio_from`` has an audio stream, its packets with time in
    ``[audio_start, audio_end)`` (seconds on the same clock as :attr:`Frame.time` of that file)
    are copied without re-encoding and shifted so that ``audio_start`` plays at 0, interleaved
    with the video as frames are written. Cuts fall on packet boundaries (about 20 ms for AAC).
    A codec the output container cannot hold is skipped with a warning (choose ``.mkv``).

    Example (the output keeps the source's timing, variable frame rate included)::

        src = open_frames("in.mp4", start=10.0, end=20.0)
        with VideoWriter("out.mp4", src.info.width, src.info.height, src.info.fps_fraction,
                         audio_from=src.info.path, audio_start=10.0, audio_end=20.0) as w:
            for frame in src:
                w.write(render(frame.image), time=frame.time)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction | float,
        audio_from: str | os.PathLike[str] | None = None,
        audio_start: float = 0.0,
        audio_end: float | None = None,
        crf: int = 20,
    ) -> None:
        self.path = Path(path).expanduser()
        self.width = int(width)
        self.height = int(height)
        self.fps = _as_fraction(fps)
        if self.width < 1 or self.height < 1 or self.width != width or self.height != height:
            raise InputError(f"{self.path}: frame size {width}x{height} is invalid; pass whole "
                             "numbers >= 1")
        if not 0 <= int(crf) <= 51:
            raise InputError(f"crf={crf}: must be 0..51 (lower = better quality); pass e.g. 20")
        if self.path.suffix.lower() not in VIDEO_OUTPUT_EXTENSIONS:
            raise InputError(f"{self.path}: unsupported video file ending; use one of "
                             f"{', '.join(sorted(VIDEO_OUTPUT_EXTENSIONS))}")
        if not self.path.parent.is_dir():
            raise InputError(f"{self.path}: output folder {self.path.parent} does not exist; "
                             "create it first")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder; choose a video file name")
        if audio_end is not None and audio_end <= audio_start:
            raise InputError(f"audio_end={audio_end}: must be after audio_start={audio_start}")
        if audio_start < 0:
            raise InputError(f"audio_start={audio_start}: must be >= 0 seconds")
        self.out_width = self.width + self.width % 2
        self.out_height = self.height + self.height % 2
        self.frames_written = 0
        self._closed = False
        self._origin = Fraction(audio_start)  # source time shown at 0 (timed frames and audio)
        self._timed: bool | None = None  # decided by the first write()
        self._held: Any = None  # timed mode: the last frame, encoded once its duration is known
        self._prev_pts: int | None = None  # timed mode: pts of the frame before the held one
        self._last_time: float | None = None
        self._durations: dict[int, int] = {}  # timed mode: pts -> duration, for the packets
        self._container: Any = None
        self._stream: Any = None
        self._audio_in: Any = None
        self._audio_out: Any = None
        self._audio_packets: Iterator[Any] | None = None
        self._pending_audio: Any = None

        from wbcap.export.atomic import atomic_path

        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            self._open(int(crf))
            if audio_from is not None:
                self._open_audio(Path(audio_from).expanduser(), float(audio_start),
                                 None if audio_end is None else float(audio_end))
        except BaseException:
            self._closed = True
            self._discard(sys.exc_info())
            raise

    # -- public ----------------------------------------------------------------------------

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Append one frame.

        Args:
            image: ``(height, width, 3)`` ``uint8`` RGB (the size given to the constructor).
            time: the frame's presentation time in seconds on the source's clock (its
                :attr:`Frame.time`); it plays at ``time - audio_start`` in the output. Give it
                for every frame or for none (then the rate is the constant ``fps``).

        Raises:
            ValueError: wrong shape or dtype; the writer is closed; ``time`` given for some
                frames only, not finite, before ``audio_start`` or not after the previous
                frame's.
        """
        import av
        import numpy as np

        if self._closed:
            raise ValueError(f"{self.path}: write() after close()")
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame must be ({self.height}, {self.width}, 3) uint8 RGB, got "
                f"{image.shape} {image.dtype}"
            )
        timed = time is not None
        if self._timed is None:
            self._timed = timed
            if timed:
                self._use_frame_times()
        elif timed != self._timed:
            raise ValueError(f"{self.path}: pass time= for every frame or for none (frame "
                             f"{self.frames_written} differs from the first)")
        pts = self._pts_of(float(time)) if time is not None else self.frames_written
        pad_h, pad_w = self.out_height - self.height, self.out_width - self.width
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = pts
        if not timed:
            frame.time_base = 1 / self.fps
            self._encode(frame)
            self.frames_written += 1
            self._mux_audio_until(Fraction(self.frames_written) / self.fps)
            return
        frame.time_base = WRITER_TIME_BASE
        if self._held is not None:
            self._encode_held(pts - self._held.pts)
        self._held = frame
        self._last_time = float(time)  # type: ignore[arg-type]
        self.frames_written += 1
        self._mux_audio_until(pts * WRITER_TIME_BASE)

    def close(self) -> None:
        """Finish the file and move it into place (idempotent).

        Raises:
            InputError: no frame was written (nothing is saved).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.frames_written == 0:
                raise InputError(f"{self.path}: no frame was written, so no video was saved; "
                                 "check that the input yields frames")
            if self._held is not None:  # the last frame lasts as long as the interval before it
                if self._prev_pts is not None:
                    last = self._held.pts - self._prev_pts
                else:
                    last = max(1, round(1 / (self.fps * WRITER_TIME_BASE)))
                self._encode_held(last)
            self._encode(None)
            self._mux_audio_until(None)
            self._container.close()
            self._container = None
            self._close_audio()
        except BaseException:
            self._discard(sys.exc_info())
            raise
        self._atomic.__exit__(None, None, None)  # os.replace(tmp, path)
        log.debug("wrote %s (%d frames, %s)", self.path, self.frames_written,
                  "at their own times" if self._timed else f"at {self.fps} fps")

    def abort(self) -> None:
        """Stop writing and delete the temporary file; ``path`` is left untouched."""
        if self._closed:
            return
        self._closed = True
        exc = RuntimeError("video writing aborted")
        self._discard((RuntimeError, exc, None))

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._discard((exc_type, exc, tb))

    def __del__(self) -> None:  # a writer dropped without close(): leave no temporary behind
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                log.warning("%s: VideoWriter was not closed; the video was discarded", self.path)
                self.abort()

    # -- internals -------------------------------------------------------------------------

    def _open(self, crf: int) -> None:
        import av

        options = {"movflags": "+faststart"} if self.path.suffix.lower() != ".mkv" else {}
        try:
            self._container = av.open(str(self._tmp), mode="w", options=options)
            stream = self._container.add_stream("libx264", rate=self.fps)
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot create the video ({exc}); check the folder "
                             "is writable") from None
        stream.width = self.out_width
        stream.height = self.out_height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / self.fps
        stream.options = {"crf": str(crf)}
        self._crf = crf
        self._stream = stream

    def _use_frame_times(self) -> None:
        """Switch the (not yet opened) encoder and stream to timed frames: fine time base, no
        B-frames (see the class docstring)."""
        self._stream.codec_context.time_base = WRITER_TIME_BASE
        self._stream.time_base = WRITER_TIME_BASE
        self._stream.options = {"crf": str(self._crf), "bf": "0"}

    def _pts_of(self, time: float) -> int:
        """Timed mode: the output pts (in WRITER_TIME_BASE) of a frame at source time ``time``."""
        if not math.isfinite(time):
            raise ValueError(f"{self.path}: frame time {time} is not a number of seconds")
        if time < self._origin - Fraction(_EPS):
            raise ValueError(f"{self.path}: frame time {time:.6f} s is before audio_start="
                             f"{float(self._origin):g} s, the output's time 0")
        if self._last_time is not None and time <= self._last_time:
            raise ValueError(f"{self.path}: frame time {time:.6f} s is not after the previous "
                             f"frame's {self._last_time:.6f} s; times must increase")
        pts = max(0, round((Fraction(time) - self._origin) / WRITER_TIME_BASE))
        if self._held is not None and pts <= self._held.pts:
            pts = self._held.pts + 1  # distinct times closer than one tick
        return pts

    def _encode_held(self, duration: int) -> None:
        """Timed mode: encode the held frame, lasting ``duration`` ticks."""
        frame = self._held
        self._durations[frame.pts] = duration
        self._prev_pts = frame.pts
        self._held = None
        self._encode(frame)

    def _encode(self, frame: Any) -> None:
        """Encode ``frame`` (None: flush) and mux the packets; timed packets get durations
        (libx264 leaves them 0, and MP4 takes the file's length from the last one)."""
        for packet in self._stream.encode(frame):
            if self._timed and packet.pts is not None:
                packet.duration = self._durations.pop(packet.pts, 0)
            self._container.mux(packet)

    def _open_audio(self, src: Path, start: float, end: float | None) -> None:
        import av

        container = _open_input(src)
        audio = [s for s in container.streams.audio]
        if not audio:
            log.info("%s: has no audio stream; writing video only", src)
            container.close()
            return
        stream = audio[0]
        codec_name = stream.codec_context.name if stream.codec_context is not None else None
        if codec_name is None or codec_name not in self._container.supported_codecs:
            log.warning("%s: audio codec %s cannot be copied into a %s file; writing video only "
                        "(use .mkv to keep it)", src, codec_name, self.path.suffix)
            container.close()
            return
        try:
            self._audio_out = self._container.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as exc:
            log.warning("%s: audio cannot be copied (%s); writing video only", src, exc)
            container.close()
            return
        self._audio_in = container
        origin_probe = _open_input(src)  # _time_origin demuxes: keep the audio reader at 0
        try:
            origin = _time_origin(origin_probe)
        finally:
            origin_probe.close()
        self._audio_packets = _audio_packets(container, stream, Fraction(start) + origin,
                                             None if end is None else Fraction(end) + origin)

    def _mux_audio_until(self, t: Fraction | None) -> None:
        """Mux copied audio packets that start before ``t`` seconds (all when ``t`` is None)."""
        if self._audio_packets is None:
            return
        while True:
            if self._pending_audio is None:
                self._pending_audio = next(self._audio_packets, None)
                if self._pending_audio is None:
                    self._audio_packets = None
                    return
            packet = self._pending_audio
            if t is not None and packet.pts * packet.time_base >= t:
                return
            packet.stream = self._audio_out
            self._container.mux(packet)
            self._pending_audio = None

    def _close_audio(self) -> None:
        self._audio_packets = None
        self._pending_audio = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def _discard(self, exc_info: tuple[Any, Any, Any]) -> None:
        """Close everything quietly and delete the temporary file."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        with contextlib.suppress(Exception):
            self._close_audio()
        exc_type, exc, tb = exc_info
        if exc is None:
            exc_type, exc = RuntimeError, RuntimeError("video writing aborted")
        with contextlib.suppress(BaseException):
            self._atomic.__exit__(exc_type, exc, tb)  # removes the temporary
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def _audio_packets(container: Any, stream: Any, start: Fraction,
                   end: Fraction | None) -> Iterator[Any]:
    """Audio packets with ``start <= pts < end`` (absolute seconds), timestamps shifted by -start.

    Timestamps stay in the input stream's time base; ``mux`` rescales them to the output's.
    """
    import av

    tb = Fraction(stream.time_base)
    shift = math.ceil(start / tb)
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            t = packet.pts * tb
            if t < start - Fraction(_EPS):
                continue
            if end is not None and t >= end - Fraction(_EPS):
                return
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            yield packet
    except av.FFmpegError as exc:
        log.warning("%s: audio copy stopped at damaged data (%s)", container.name, exc)
