"""``wbcap record``: a live stream or a camera recorded into a Matroska file that ``wbcap run`` reads.

wbcap reads finished files (a run decodes its source twice: pass 1, then the render), so a live
source is recorded first. FFmpeg's own command line (``ffmpeg -i ADDRESS -c copy clip.mkv``) does
this too, but it does not come with wbcap (PyAV bundles FFmpeg's libraries only); this module
does it with them.

* **Sources**: an address FFmpeg opens (``rtsp://``, ``rtmp://``, ``srt://``, ``udp://``,
  ``tcp://``, ``http(s)://`` live streams, HLS playlists), a Linux camera (``/dev/video0``: FFmpeg's
  ``v4l2`` device), or anything FFmpeg's input devices take with ``input_format`` (``avfoundation``
  on macOS: ``0``; ``dshow`` on Windows: ``video=Name``; ``lavfi``: generated test pictures), with
  device options (``video_size``, ``framerate``).
* **What is written**: the first video stream and the first audio stream (kept for ``wbcap fuse
  --offsets audio``), from the source's first video keyframe on (the packets before it cannot be
  decoded), timestamps moved so that it is at 0 s. Compressed video (H.264, HEVC, MJPEG...) and
  audio are copied as they are (no quality lost, no time spent); raw camera pictures (``rawvideo``,
  a webcam's YUYV) are encoded with H.264 (libx264, CRF 17, ``veryfast``, yuv420p: visually
  lossless). Into Matroska (``.mkv``), which holds any codec with the source's own timestamps.
* **When it stops**: after ``seconds`` of the source's video (its timestamps, not the wall clock),
  at the source's end, on Ctrl-C (SIGTERM, SIGHUP: :mod:`wbcap.stop_signals`), or when a live
  source sends nothing for ``timeout_s``: each time with the file finished and complete, moved
  onto its name (:func:`wbcap.atomic.atomic_path`); nothing is left where nothing was recorded.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from wbcap.errors import InputError, setting

log = logging.getLogger(__name__)

__all__ = ["RecordJob", "RecordResult", "record"]

#: Codecs of raw pictures, encoded with H.264 rather than copied (a copy would be gigabytes a minute).
RAW_VIDEO_CODECS = frozenset({"rawvideo", "wrapped_avframe", "bmp", "ppm", "pam", "pgm", "pgmyuv", "v210", "yuv4",
                              "r210"})
#: The encoder settings of raw pictures (libx264): visually lossless, fast enough for a camera's rate.
H264_OPTIONS = {"crf": "17", "preset": "veryfast"}
#: A Linux camera's device path, opened with FFmpeg's ``v4l2`` input device.
_V4L2_DEVICE = re.compile(r"/dev/video\d+")


@dataclass(frozen=True)
class RecordJob:
    """What ``wbcap record`` was asked to do (built once by the CLI).

    Attributes:
        source: an address FFmpeg opens, a camera's device path, or an input device's name with
            ``input_format`` (module docstring).
        out: the Matroska file to write (``.mkv``; its folder is created when missing).
        seconds: stop after this many seconds of the source's video (None: at its end or on Ctrl-C).
        input_format: FFmpeg's input format or device (``ffmpeg -f``): ``v4l2``, ``avfoundation``,
            ``dshow``, ``lavfi``...; None: FFmpeg's guess (``v4l2`` for ``/dev/video*``).
        options: FFmpeg input options, e.g. ``(("video_size", "1280x720"), ("framerate", "30"))``.
        timeout_s: seconds a source may take to open, and may then send nothing, before the
            recording ends (what came before is kept).
        overwrite: replace an existing ``out``.
    """

    source: str
    out: str
    seconds: float | None = None
    input_format: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 10.0
    overwrite: bool = False

    def __post_init__(self) -> None:
        """Raises ValueError for ``seconds`` or ``timeout_s`` that are not finite numbers above 0."""
        for name in ("seconds", "timeout_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number of seconds above 0, got {value!r}")


@dataclass(frozen=True)
class RecordResult:
    """What :func:`record` wrote.

    Attributes:
        out: the file.
        seconds: its video's length (s: the last frame's timestamp plus one frame).
        frames: video frames written.
        video: ``"<codec> copied"`` or ``"<codec> encoded as h264"``.
        audio: the audio codec copied, or None (the source had none).
        stopped_by: ``"seconds"``, ``"end"`` (the source ended), ``"ctrl-c"`` or ``"timeout"``.
        skipped: video packets before the first keyframe, left out.
    """

    out: Path
    seconds: float
    frames: int
    video: str
    audio: str | None
    stopped_by: str
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


def record(job: RecordJob, progress: Callable[[str, int, int | None], None] | None = None) -> RecordResult:
    """Record ``job.source`` into ``job.out`` (module docstring).

    Args:
        job: the source, file and limits.
        progress: called as ``("record", whole seconds recorded, job.seconds rounded up or None)``.

    Returns:
        The :class:`RecordResult`.

    Raises:
        InputError: one line naming the source or file and the fix: ``out`` not ``.mkv``, there
            already (without ``overwrite``) or not writable; a source that cannot be opened (no such
            device, refused, timed out), has no video stream, or sent no keyframe before it ended.
    """
    from wbcap.atomic import atomic_path, check_writable_file

    out = Path(job.out).expanduser()
    if out.suffix.lower() != ".mkv":
        raise InputError(f"{out}: wbcap records into Matroska, which holds any stream's codec and timestamps; give "
                         f"a name ending in .mkv (e.g. {out.with_suffix('.mkv').name})")
    if out.exists() and not job.overwrite:
        raise InputError(f"{out}: already there; pass {setting('overwrite', api='overwrite=True')} to replace it, or "
                         "choose another name")
    check_writable_file(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = _open(job)
    try:
        video = next(iter(source.streams.video), None)
        if video is None:
            raise InputError(f"{job.source}: has no video stream ({_describe(source)}); give a camera's or a video "
                             "stream's address")
        audio = next(iter(source.streams.audio), None)
        with atomic_path(out) as tmp:
            result = _copy(source, video, audio, tmp, job, progress)
        result = RecordResult(out=out, **{k: v for k, v in result.items() if k != "out"})
    finally:
        source.close()
    for line in result.warnings:
        log.warning("%s", line)
    log.debug("recorded %s: %.2f s, %d frames (%s%s), stopped by %s", out, result.seconds, result.frames, result.video,
             f", audio {result.audio} copied" if result.audio else ", no audio", result.stopped_by)
    return result


def _open(job: RecordJob) -> Any:
    """The source opened by PyAV (FFmpeg), with ``job.timeout_s`` for opening and each read.

    Raises:
        InputError: it cannot be opened (one line with FFmpeg's reason and the fix).
    """
    import av

    form = job.input_format or ("v4l2" if _V4L2_DEVICE.fullmatch(job.source) else None)
    if form is not None and form not in av.formats_available and not any(
            form in name.split(",") for name in av.formats_available):
        raise InputError(f"{job.source}: FFmpeg here has no input format or device {form!r} (PyAV {av.__version__}); "
                         f"give one it has, e.g. {_devices()}")
    try:
        return av.open(job.source, format=form, options=dict(job.options), timeout=(job.timeout_s, job.timeout_s))
    except av.error.ExitError:
        raise InputError(f"{job.source}: sent nothing for {job.timeout_s:g} s while opening; check that the stream "
                         f"is live at that address, or give it longer with {setting('timeout_s')}") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        fix = ("check the device (`ls /dev/video*`), that no other program holds it, and its --size/--fps"
               if form == "v4l2" else "check the address, that the stream is live, and the network")
        raise InputError(f"{job.source}: cannot be opened ({why}); {fix}") from None


def _devices() -> str:
    import av

    names = [n for n in ("v4l2", "avfoundation", "dshow", "lavfi") if any(n in f.split(",") for f in av.formats_available)]
    return ", ".join(names) or "none of v4l2, avfoundation, dshow, lavfi"


def _describe(container: Any) -> str:
    kinds = [s.type for s in container.streams]
    return ", ".join(kinds) + " streams" if kinds else "no streams"


def _copy(source: Any, video: Any, audio: Any, tmp: Path, job: RecordJob,
          progress: Callable[[str, int, int | None], None] | None) -> dict[str, Any]:
    """Write the recording into ``tmp`` (Matroska); the fields of :class:`RecordResult`."""
    import av

    raw = video.codec_context.name in RAW_VIDEO_CODECS
    streams = [video] + ([audio] if audio is not None else [])
    total = math.ceil(job.seconds) if job.seconds else None
    with av.open(str(tmp), "w", format="matroska") as sink:
        if raw:
            decoder = video.codec_context
            encoder = sink.add_stream("libx264", rate=video.average_rate or video.guessed_rate or 30)
            encoder.width, encoder.height, encoder.pix_fmt = decoder.width, decoder.height, "yuv420p"
            encoder.time_base = video.time_base
            encoder.codec_context.time_base = video.time_base
            encoder.options = dict(H264_OPTIONS)
            video_out = encoder
        else:
            video_out = sink.add_stream_from_template(video)
        audio_out = sink.add_stream_from_template(audio) if audio is not None else None
        start: float | None = None  # (the first keyframe's time, s: the recording's 0)
        frames, skipped, last, said = 0, 0, 0.0, -1
        stopped_by, warnings = "end", []
        try:
            for packet in source.demux(streams):
                if packet.dts is None and packet.pts is None:  # (a demuxer's flush packet)
                    continue
                when = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
                if packet.stream is video:
                    if start is None and not (packet.is_keyframe or raw):
                        skipped += 1
                        continue
                    if start is None:
                        start = when
                    if job.seconds is not None and when - start >= job.seconds - 1e-9:
                        stopped_by = "seconds"
                        break
                    frames += _write_video(sink, packet, video_out, raw, start)
                    last = max(last, when - start)
                    if progress is not None and int(last) != said:
                        said = int(last)
                        progress("record", said, total)
                elif start is not None and audio_out is not None and when >= start:
                    _rebase(packet, start)
                    packet.stream = audio_out
                    sink.mux(packet)
        except KeyboardInterrupt:  # (the way to stop a recording without --seconds: the file is finished)
            stopped_by = "ctrl-c"
        except av.error.ExitError:
            stopped_by = "timeout"
            warnings.append(f"{job.source}: sent nothing for {job.timeout_s:g} s: the recording ends there "
                            f"({last:.1f} s)")
        except (av.error.FFmpegError, OSError) as exc:  # (a dropped connection: what came is kept)
            if start is None:
                raise InputError(f"{job.source}: failed before its first keyframe ({getattr(exc, 'strerror', None) or exc})"
                                 "; check the stream and record again") from None
            stopped_by = "end"
            warnings.append(f"{job.source}: the stream failed after {last:.1f} s ({getattr(exc, 'strerror', None) or exc}); "
                            "the recording ends there")
        if start is None:
            raise InputError(f"{job.source}: sent no video keyframe ({skipped} packets before it ended or was stopped); "
                             "nothing recorded")
        if raw:
            for out_packet in video_out.encode():
                sink.mux(out_packet)
        if progress is not None and stopped_by != "ctrl-c":
            progress("record", int(last), total)
    step = 1.0 / float(video.average_rate) if video.average_rate else 0.0
    return {"out": tmp, "seconds": last + step if frames else 0.0, "frames": frames,
            "video": f"{video.codec_context.name} encoded as h264" if raw else f"{video.codec_context.name} copied",
            "audio": audio.codec_context.name if audio is not None else None, "stopped_by": stopped_by,
            "skipped": skipped, "warnings": warnings}


def _rebase(packet: Any, start: float) -> None:
    """``packet``'s timestamps moved by ``-start`` seconds (in its own time base)."""
    shift = round(start / packet.time_base) if packet.time_base else 0
    if packet.pts is not None:
        packet.pts -= shift
    if packet.dts is not None:
        packet.dts -= shift


def _write_video(sink: Any, packet: Any, stream: Any, raw: bool, start: float) -> int:
    """Mux one video packet (copied, or its raw picture encoded); returns the frames it holds."""
    if not raw:
        _rebase(packet, start)
        packet.stream = stream
        sink.mux(packet)
        return 1
    written = 0
    for frame in packet.decode():
        frame.pts = (frame.pts - round(start / frame.time_base)) if frame.pts is not None else None
        frame.time_base = Fraction(frame.time_base) if frame.time_base else stream.time_base
        for out_packet in stream.encode(frame):
            sink.mux(out_packet)
        written += 1
    return written
