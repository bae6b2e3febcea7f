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
  decoded, nor an open GOP's B-frames after it shown before it), timestamps moved so that it is
  at 0 s (packets without any, a raw H.264 stream's, timed at the stream's rate). Compressed
  video (H.264, HEVC, MPEG-2, MJPEG...) and audio are copied as they are (no quality lost, no
  time spent); raw camera pictures (``rawvideo``, a webcam's YUYV) are encoded with H.264
  (libx264, CRF 17, ``veryfast``: visually lossless; yuv420p, or yuv444p for odd sizes). Into
  Matroska (``.mkv``), which holds any codec with the source's own timestamps, written as it goes
  (a killed recording's temporary file keeps up to its last second, and the next recording of
  that name points it out).
* **When it stops**: after ``seconds`` of the source's video (its timestamps, not the wall clock),
  at the source's end, on Ctrl-C (SIGTERM, SIGHUP: :mod:`wbcap.stop_signals`), or when a live
  source sends nothing for ``timeout_s``: each time with the file finished and complete, moved
  onto its name (:func:`wbcap.atomic.atomic_path`); nothing is left where nothing was recorded.
  The source is opened and read in a thread of its own (:class:`_Reader`: FFmpeg's waits are not
  interrupted by signals), so Ctrl-C is seen within a second whatever the source does.
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
            already (without ``overwrite``), the source itself, or not writable; a source that
            cannot be opened (no such device, refused, nothing sent for ``timeout_s``), has no
            video stream, or sent no keyframe before it ended.
        KeyboardInterrupt: Ctrl-C while opening (nothing written); while recording it ends the
            recording instead.
    """
    from wbcap.atomic import atomic_path, check_writable_file

    out = Path(job.out).expanduser()
    if out.suffix.lower() != ".mkv":
        raise InputError(f"{out}: wbcap records into Matroska, which holds any stream's codec and timestamps; give "
                         f"a name ending in .mkv (e.g. {out.with_suffix('.mkv').name})")
    if (out.exists() or out.is_symlink()) and not job.overwrite:
        raise InputError(f"{out}: already there; pass {setting('overwrite', api='overwrite=True')} to replace it, or "
                         "choose another name")
    local = Path(job.source).expanduser()
    check_writable_file(out, inputs={"SOURCE": local} if local.exists() else None)
    _say_killed_recordings(out)
    reader = _Reader(job)
    try:
        source = reader.opened()
        video = next(iter(source.streams.video), None)
        if video is None:
            raise InputError(f"{job.source}: has no video stream ({_describe(source)}); give a camera's or a video "
                             "stream's address")
        audio = next(iter(source.streams.audio), None)
        out.parent.mkdir(parents=True, exist_ok=True)  # (only once the source opened: a refusal leaves no folder)
        with atomic_path(out, through_link=True) as tmp:
            result = _copy(reader, video, audio, tmp, job, progress)
        result = RecordResult(out=out, **{k: v for k, v in result.items() if k != "out"})
    finally:
        reader.stop()
    for line in result.warnings:
        log.warning("%s", line)
    log.debug("recorded %s: %.2f s, %d frames (%s%s), stopped by %s", out, result.seconds, result.frames, result.video,
              f", audio {result.audio} copied" if result.audio else ", no audio", result.stopped_by)
    return result


#: Seconds the recording waits for the source at a time: it reads the source in a thread of its
#: own (PyAV's waits for data are not interrupted by signals), so that Ctrl-C is seen within this
#: while the source sends nothing (a review: Ctrl-C waited for --timeout, up to an hour).
WAIT_S = 0.25
#: Packets the reading thread may hold ahead of the recording (a slow encoder: the source then
#: waits, as it would without the thread).
QUEUE_PACKETS = 512


def _say_killed_recordings(out: Path) -> None:
    """Warn of the temporary files of recordings into ``out`` that a kill (SIGKILL, a power cut)
    left beside it: they may hold most of a recording (Matroska written as it went)."""
    import re as _re

    pattern = _re.compile(rf"\.{_re.escape(out.stem)}\.tmp-[0-9a-f]{{8}}{_re.escape(out.suffix)}")
    if not out.parent.is_dir():
        return
    for left in sorted(p for p in out.parent.iterdir() if pattern.fullmatch(p.name)):
        size = left.stat().st_size
        log.warning("%s: left by a recording into %s that was killed (%.1f MB); it may hold part of it: rename it to "
                    "keep it (e.g. mv %s %s), else remove it", left, out.name, size / 1e6, left.name,
                    out.with_name(f"{out.stem}_killed{out.suffix}").name)


class _Reader:
    """The source opened and demuxed in a thread of its own; the recording takes its packets
    (:meth:`packets`) in waits of :data:`WAIT_S`, so that Ctrl-C and ``timeout_s`` are seen
    whatever the source does. The thread closes the source when it ends (:meth:`stop`; a read
    blocked in FFmpeg ends within ``timeout_s``)."""

    def __init__(self, job: RecordJob) -> None:
        import queue
        import threading

        self.job = job
        self.form = job.input_format or ("v4l2" if _V4L2_DEVICE.fullmatch(job.source) else None)
        self._check_form()
        self.queue: queue.Queue = queue.Queue(QUEUE_PACKETS)
        self.streams: list[Any] = []
        self.go = threading.Event()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wbcap-record-reader", daemon=True)
        self.thread.start()

    def _check_form(self) -> None:
        import av

        if self.form is not None and self.form not in av.formats_available and not any(
                self.form in name.split(",") for name in av.formats_available):
            raise InputError(f"{self.job.source}: FFmpeg here has no input format or device {self.form!r} (PyAV "
                             f"{av.__version__}); give one it has, e.g. {_devices()}")

    def _put(self, item: Any) -> bool:
        """Hand ``item`` over, waiting while the queue is full; False once stopped."""
        import queue

        while not self.halt.is_set():
            try:
                self.queue.put(item, timeout=WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        import av

        name = "pipe:0" if self.job.source == "-" else self.job.source
        try:  # (the options for the source only: PyAV's `options` reach its decoders too, whose video_size then
            # overrode a raw picture's own: a review's garbled recording)
            container = av.open(name, format=self.form, container_options=dict(self.job.options),
                                timeout=(self.job.timeout_s, self.job.timeout_s))
        except BaseException as exc:  # (handed to the recording, which says it)
            self._put(("failed", exc))
            return
        try:
            if not self._put(("opened", container)):
                return
            while not self.go.wait(WAIT_S):
                if self.halt.is_set():
                    return
            for packet in container.demux(self.streams):
                if packet.size == 0:  # (a demuxer's flush packet at the end)
                    continue
                if not self._put(packet):
                    return
            self._put(("end", None))
        except BaseException as exc:
            self._put(("failed", exc))
        finally:
            container.close()

    def _next(self) -> Any:
        """The next item; raises TimeoutError after ``timeout_s`` without one."""
        import queue
        import time

        since = time.monotonic()
        while True:
            try:
                return self.queue.get(timeout=WAIT_S)
            except queue.Empty:
                if time.monotonic() - since >= self.job.timeout_s:
                    raise TimeoutError from None

    def opened(self) -> Any:
        """The opened source (its streams to read; read nothing else of it).

        Raises:
            InputError: it cannot be opened (one line with FFmpeg's reason and the fix), or sent
                nothing for ``timeout_s``.
        """
        import queue

        import av

        while True:  # (as long as the thread opens it: FFmpeg's own wait, timeout_s for each read, ends that)
            try:
                kind, value = self.queue.get(timeout=WAIT_S)
                break
            except queue.Empty:
                if not self.thread.is_alive():
                    kind, value = "failed", RuntimeError("the reading thread ended")
                    break
        if kind == "opened":
            return value
        source = self.job.source
        if isinstance(value, av.error.ExitError):
            raise InputError(f"{source}: sent nothing for {self.job.timeout_s:g} s while opening; check that the stream "
                             f"is live at that address, or give it longer with {setting('timeout_s')}")
        if isinstance(value, (av.error.FFmpegError, OSError, ValueError)):
            why = getattr(value, "strerror", None) or str(value)
            fix = ("check the device (`ls /dev/video*`), that no other program holds it, and its --size/--fps"
                   if self.form == "v4l2" else "check the address, that the stream is live, and the network")
            raise InputError(f"{source}: cannot be opened ({why}); {fix}")
        raise value

    def packets(self, streams: list[Any]) -> Any:
        """The source's packets of ``streams`` as they come, to its end.

        Raises:
            TimeoutError: nothing came for ``timeout_s``.
            av.error.FFmpegError, OSError: the source failed (a dropped connection).
        """
        self.streams = streams
        self.go.set()
        while True:
            item = self._next()
            if isinstance(item, tuple):
                kind, value = item
                if kind == "end":
                    return
                if kind == "failed":
                    import av

                    if isinstance(value, av.error.ExitError):  # (FFmpeg's own wait for data ran out)
                        raise TimeoutError from None
                    raise value
                continue
            yield item

    def stop(self) -> None:
        """End the thread (it closes the source); waits for it a moment, not for a blocked read."""
        self.halt.set()
        self.thread.join(WAIT_S * 4)


def _devices() -> str:
    import av

    names = [n for n in ("v4l2", "avfoundation", "dshow", "lavfi") if any(n in f.split(",") for f in av.formats_available)]
    return ", ".join(names) or "none of v4l2, avfoundation, dshow, lavfi"


def _describe(container: Any) -> str:
    kinds = [s.type for s in container.streams]
    return ", ".join(kinds) + " streams" if kinds else "no streams"


def _encoder(sink: Any, video: Any) -> Any:
    """The H.264 stream raw pictures are encoded into (libx264, :data:`H264_OPTIONS`): yuv420p,
    or yuv444p for a picture of odd width or height (4:2:0 needs even ones), its time base the source's."""
    decoder = video.codec_context
    stream = sink.add_stream("libx264", rate=video.average_rate or video.guessed_rate or 30)
    even = decoder.width % 2 == 0 and decoder.height % 2 == 0
    stream.width, stream.height, stream.pix_fmt = decoder.width, decoder.height, "yuv420p" if even else "yuv444p"
    stream.time_base = video.time_base
    stream.codec_context.time_base = video.time_base
    stream.options = dict(H264_OPTIONS)
    return stream


def _copy(reader: _Reader, video: Any, audio: Any, tmp: Path, job: RecordJob,
          progress: Callable[[str, int, int | None], None] | None) -> dict[str, Any]:
    """Write the recording into ``tmp`` (Matroska); the fields of :class:`RecordResult`.

    Video packets are kept from the first keyframe on, less those shown before it (an open
    GOP's leading B-frames, which refer to pictures before it); with ``job.seconds``, up to the
    first packet in decoding order shown at or past the limit (with B-frames, the few shown just
    before it that refer to it are left out with it). Packets without timestamps (a raw H.264
    stream from a pipe) are timed one frame duration apart.
    """
    import av

    raw = video.codec_context.name in RAW_VIDEO_CODECS
    streams = [video] + ([audio] if audio is not None else [])
    total = math.ceil(job.seconds) if job.seconds else None
    warnings: list[str] = []
    # (written as it goes: a killed recording's temporary file holds up to the last second, not nothing: a review)
    with av.open(str(tmp), "w", format="matroska", options={"cluster_time_limit": "1000", "flush_packets": "1"}) as sink:
        video_out = _encoder(sink, video) if raw else sink.add_stream_from_template(video)
        audio_out = sink.add_stream_from_template(audio) if audio is not None else None
        start: float | None = None  # (the first keyframe's time, s: the recording's 0)
        frames, skipped, last, said, untimed = 0, 0, 0.0, -1, 0
        stopped_by = "end"
        try:
            for packet in reader.packets(streams):
                is_video = packet.stream is video
                if packet.pts is None and packet.dts is None:
                    rate = video.average_rate or (1 / (packet.duration * packet.time_base) if packet.duration else None)
                    if not is_video or not rate:
                        continue
                    packet.pts = packet.dts = round(untimed / (rate * packet.time_base))  # (one frame apart)
                    if untimed == 0:
                        warnings.append(f"{job.source}: its video carries no timestamps: its frames are timed "
                                        f"{float(rate):g} per second (the stream's rate; --fps sets another)")
                    untimed += 1
                when = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
                if is_video:
                    if start is None and not (packet.is_keyframe or raw):
                        skipped += 1
                        continue
                    if start is None:
                        start = when
                    if when < start - 1e-9:  # (shown before the first keyframe: it refers to pictures not recorded)
                        skipped += 1
                        continue
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
        except TimeoutError:
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
    warnings += _not_as_asked(job, video)
    step = 1.0 / float(video.average_rate) if video.average_rate else 0.0
    return {"out": tmp, "seconds": last + step if frames else 0.0, "frames": frames,
            "video": f"{video.codec_context.name} encoded as h264" if raw else f"{video.codec_context.name} copied",
            "audio": audio.codec_context.name if audio is not None else None, "stopped_by": stopped_by,
            "skipped": skipped, "warnings": warnings}


def _not_as_asked(job: RecordJob, video: Any) -> list[str]:
    """A warning where the source's pictures are not of the size or rate ``job.options`` asked
    for (a camera that cannot give them, a stream, which takes no such request)."""
    asked = dict(job.options)
    said = []
    size = f"{video.codec_context.width}x{video.codec_context.height}"
    if asked.get("video_size") not in (None, size):
        said.append(f"{size} pictures, not the {asked['video_size']} asked (--size)")
    rate = video.average_rate or video.guessed_rate
    if asked.get("framerate") is not None and rate and abs(float(rate) - float(asked["framerate"])) > 0.01:
        said.append(f"{float(rate):g} frames a second, not the {asked['framerate']} asked (--fps)")
    return [f"{job.source}: gave {' and '.join(said)}; recorded as it gave them"] if said else []


def _rebase(packet: Any, start: float) -> None:
    """``packet``'s timestamps moved by ``-start`` seconds (in its own time base)."""
    shift = round(start / packet.time_base) if packet.time_base else 0
    if packet.pts is not None:
        packet.pts -= shift
    if packet.dts is not None:
        packet.dts -= shift


def _write_video(sink: Any, packet: Any, stream: Any, raw: bool, start: float) -> int:
    """Mux one video packet (copied, or its raw picture encoded); returns the frames it holds."""
    import av

    if not raw:
        _rebase(packet, start)
        packet.stream = stream
        sink.mux(packet)
        return 1
    written = 0
    for frame in packet.decode():
        frame.pts = (frame.pts - round(start / frame.time_base)) if frame.pts is not None else None
        frame.time_base = Fraction(frame.time_base) if frame.time_base else stream.time_base
        # (raw decoders mark every picture an I-frame, which libx264 obeys: every frame a keyframe, the file
        # 9 times larger; FFmpeg's own tool clears the mark: a review)
        frame.pict_type = av.video.frame.PictureType.NONE
        for out_packet in stream.encode(frame):
            sink.mux(out_packet)
        written += 1
    return written
