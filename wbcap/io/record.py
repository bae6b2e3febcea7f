"""``wbcap record``: a live stream or a camera recorded into a Matroska file that ``wbcap run`` reads.

wbcap reads finished files (a run decodes its source twice: pass 1, then the render), so a live
source is recorded first. FFmpeg's own command line (``ffmpeg -i ADDRESS -c copy clip.mkv``) does
this too, but it does not come with wbcap (PyAV bundles FFmpeg's libraries only); this module
does it with them.

* **Sources**: an address FFmpeg opens (``rtsp://``, ``rtmp://``, ``udp://``,
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
#: Bytes of raw pictures the reading thread may hold for the encoder (about 2 s of 1080p YUYV at
#: 30 a second); past it, pictures are dropped and counted (as a camera's own ring buffer drops them).
RAW_QUEUE_BYTES = 256 * 1024 * 1024
#: Seconds a stream's timestamps may jump back before the recording ends there (a restarted stream);
#: smaller steps back are packets out of order, left out.
JUMP_BACK_S = 1.0
#: Packets in a row out of order that end the recording as such a jump does (a source restarted
#: less than :data:`JUMP_BACK_S` into its clock: every later packet behind the recording's).
BEHIND_PACKETS = 8


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
        skipped: video packets left out: before the first keyframe, shown before it (an open
            GOP's), or out of order.
        dropped: raw pictures left out because the encoder fell behind the camera.
        warnings: what the recording says once it ends (logged by :func:`record`).
    """

    out: Path
    seconds: float
    frames: int
    video: str
    audio: str | None
    stopped_by: str
    skipped: int = 0
    dropped: int = 0
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
            cannot be opened (no such device or protocol, refused, nothing sent for
            ``timeout_s``), has no video stream, sent no keyframe before it ended, or carries no
            timestamps and reorders its frames.
        KeyboardInterrupt: Ctrl-C while opening (nothing written), or a second one while the
            file is finished (the file is kept); a first one while recording ends the
            recording instead.
        OSError: the file could not be written (a full disk): the temporary file removed.
    """
    import contextlib

    from wbcap.atomic import atomic_path, check_writable_file
    from wbcap.stop_signals import held_stop_signals

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
    made: list[Path] = []  # (the folders this recording created: removed again where it writes nothing)
    try:
        source = reader.opened()
        video = next(iter(source.streams.video), None)
        if video is None:
            raise InputError(f"{job.source}: has no video stream ({_describe(source)}); give a camera's or a video "
                             "stream's address")
        audio = next(iter(source.streams.audio), None)
        made = [d for d in (out.parent, *out.parent.parents) if not d.exists()]
        out.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(out, through_link=True))
            recording = _Recording(tmp, video, audio, job, reader, progress)
            stack.callback(recording.close)  # (on a failure: the temporary file closed before it is removed)
            recording.run()  # (a first Ctrl-C ends it here)
            with held_stop_signals():  # (a second one while the file is finished and moved keeps it whole)
                recording.finish()
                stack.close()
        result = RecordResult(out=out, **recording.result())
    except BaseException:
        for folder in made:  # (deepest first: a refusal or a failure leaves no folder it made)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
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
#: waits, as it would without the thread; raw pictures: :data:`RAW_QUEUE_BYTES` too).
QUEUE_PACKETS = 512


def _say_killed_recordings(out: Path) -> None:
    """Warn of the temporary files of recordings into ``out`` that a kill (SIGKILL, a power cut)
    left beside it: they may hold most of a recording (Matroska written as it went)."""
    from wbcap.atomic import temporary_files

    for left in temporary_files(out):
        size = left.stat().st_size
        log.warning("%s: left by a recording into %s that was killed (%.1f MB); it may hold part of it: rename it to "
                    "keep it (e.g. mv %s %s), else remove it", left, out.name, size / 1e6, left.name,
                    out.with_name(f"{out.stem}_killed{out.suffix}").name)


def input_devices() -> list[str]:
    """The input devices and generators of PyAV's FFmpeg that ``wbcap record`` names (``v4l2``,
    ``avfoundation``, ``dshow``, ``lavfi``), those this build has."""
    import av

    return [n for n in ("v4l2", "avfoundation", "dshow", "lavfi") if any(n in f.split(",") for f in av.formats_available)]


def _is_camera_device(source: str) -> bool:
    """A Linux camera: a character device (``/dev/video0``, or a link to one such as
    ``/dev/v4l/by-id/...``), opened with FFmpeg's ``v4l2``."""
    import os
    import stat

    try:
        return source.startswith("/dev/") and stat.S_ISCHR(os.stat(source).st_mode)
    except OSError:
        return bool(re.fullmatch(r"/dev/video\d+", source))  # (missing: still a camera's name, said as such)


class _SourceFailed(Exception):
    """The source failed while it was read (a dropped connection, damaged data): ``args[0]`` the error."""


class _Reader:
    """The source opened and demuxed in a thread of its own; the recording takes its packets
    (:meth:`packets`) in waits of :data:`WAIT_S`, so that Ctrl-C and ``timeout_s`` are seen
    whatever the source does. The recording's thread closes the source (:meth:`stop`), once the
    reading thread has ended: until then the streams it reads stay valid; a reading thread still
    blocked in FFmpeg then (for up to ``timeout_s``) closes it itself when it ends."""

    def __init__(self, job: RecordJob) -> None:
        import queue
        import threading

        self.job = job
        self.form = job.input_format or ("v4l2" if _is_camera_device(job.source) else None)
        self._check_form()
        self.queue: queue.Queue = queue.Queue(QUEUE_PACKETS)
        self.streams: list[Any] = []
        self.raw = False
        self.queued_bytes = 0
        self.dropped = 0
        self.container: Any = None
        self.lock = threading.Lock()
        self.counting = threading.Lock()
        self.abandoned = False
        self.go = threading.Event()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wbcap-record-reader", daemon=True)
        self.thread.start()

    def _check_form(self) -> None:
        import av

        if self.form is not None and self.form not in av.formats_available and not any(
                self.form in name.split(",") for name in av.formats_available):
            raise InputError(f"{self.job.source}: FFmpeg here has no input format or device {self.form!r} (PyAV "
                             f"{av.__version__}); give one it has, e.g. {', '.join(input_devices()) or 'none'}")

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
        with self.lock:
            self.container = container
        try:
            if not self._put(("opened", container)):
                return
            while not self.go.wait(WAIT_S):
                if self.halt.is_set():
                    return
            for packet in container.demux(self.streams):
                if packet.size == 0:  # (a demuxer's flush packet at the end)
                    continue
                if self.raw and packet.stream.type == "video":
                    with self.counting:  # (both threads change the count: `+=` is no atomic step)
                        full = self.queued_bytes + packet.size > RAW_QUEUE_BYTES  # (the encoder fell behind)
                        self.queued_bytes += 0 if full else packet.size
                    if full:
                        self.dropped += 1
                        continue
                if not self._put(packet):
                    return
            self._put(("end", None))
        except BaseException as exc:
            self._put(("failed", exc))
        finally:
            with self.lock:
                if self.abandoned:  # (the recording has ended without it: nothing reads the source now)
                    container.close()

    def _next(self) -> Any:
        """The next item; raises TimeoutError after ``timeout_s`` without one."""
        import queue
        import time

        since = time.monotonic()
        while True:
            try:
                item = self.queue.get(timeout=WAIT_S)
            except queue.Empty:
                if time.monotonic() - since >= self.job.timeout_s:
                    raise TimeoutError from None
                continue
            if self.raw and not isinstance(item, tuple) and item.stream.type == "video":
                with self.counting:
                    self.queued_bytes -= item.size
            return item

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
                    try:  # (it may have handed its answer over just before it ended: a review)
                        kind, value = self.queue.get_nowait()
                    except queue.Empty:
                        kind, value = "failed", RuntimeError("the reading thread ended without an answer")
                    break
        if kind == "opened":
            return value
        source = self.job.source
        if isinstance(value, av.error.ExitError):
            raise InputError(f"{source}: sent nothing for {self.job.timeout_s:g} s while opening; check that the stream "
                             f"is live at that address, or give it longer with {setting('timeout_s')}")
        if isinstance(value, av.error.ProtocolNotFoundError):
            scheme = source.split(":", 1)[0]
            raise InputError(f"{source}: the FFmpeg that PyAV brings has no {scheme!r} protocol; relay the stream as "
                             "one it has (rtsp, rtmp, udp, tcp, http, hls)")
        if isinstance(value, (av.error.FFmpegError, OSError, ValueError)):
            why = getattr(value, "strerror", None) or str(value)
            fix = ("check the device (`ls /dev/video*`), that no other program holds it, and its --size/--fps"
                   if self.form == "v4l2" else "check the address, that the stream is live, and the network")
            raise InputError(f"{source}: cannot be opened ({why}); {fix}")
        raise value

    def packets(self, streams: list[Any], raw: bool) -> Any:
        """The source's packets of ``streams`` as they come, to its end (``raw``: raw pictures,
        bounded by :data:`RAW_QUEUE_BYTES`).

        Raises:
            TimeoutError: nothing came for ``timeout_s``.
            _SourceFailed: the source failed (a dropped connection, damaged data).
        """
        import av

        self.streams, self.raw = streams, raw
        self.go.set()
        while True:
            item = self._next()
            if not isinstance(item, tuple):
                yield item
                continue
            kind, value = item
            if kind == "end":
                return
            if isinstance(value, av.error.ExitError):  # (FFmpeg's own wait for data ran out)
                raise TimeoutError from None
            raise _SourceFailed(value)

    def stop(self) -> None:
        """End the reading thread and close the source: here once the thread has ended (it is
        waited for a moment), else by the thread when it ends (a read blocked in FFmpeg)."""
        self.halt.set()
        self.thread.join(WAIT_S * 4)
        with self.lock:
            if self.thread.is_alive():
                self.abandoned = True
            elif self.container is not None:
                self.container.close()


def _describe(container: Any) -> str:
    kinds = [s.type for s in container.streams]
    return ", ".join(kinds) + " streams" if kinds else "no streams"


def _encoder(sink: Any, width: int, height: int, rate: Any, time_base: Any) -> Any:
    """The H.264 stream raw pictures are encoded into (libx264, :data:`H264_OPTIONS`): yuv420p,
    or yuv444p for a picture of odd width or height (4:2:0 needs even ones), its time base the source's."""
    stream = sink.add_stream("libx264", rate=rate or 30)
    even = width % 2 == 0 and height % 2 == 0
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p" if even else "yuv444p"
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.options = dict(H264_OPTIONS)
    return stream


class _Recording:
    """One recording into the Matroska file ``tmp``: :meth:`run` copies (or encodes) the
    source's packets until it stops, :meth:`finish` ends the file, :meth:`result` says what was
    written (the fields of :class:`RecordResult`).

    Video packets are kept from the first keyframe on, less those shown before it (an open GOP's
    leading B-frames, which refer to pictures before it); with ``job.seconds``, up to the first
    packet in decoding order shown at or past the limit (with B-frames, the few shown just before
    it that refer to it are left out with it). Packets without timestamps (a raw H.264 stream
    from a pipe) are timed at the stream's rate, one apart (refused where the stream reorders its
    pictures: decoding order is then no display order). A stream's timestamps going back by more
    than :data:`JUMP_BACK_S`, or :data:`BEHIND_PACKETS` packets in a row behind the recording's
    (a restarted source), end the recording; a packet a little out of order is left out
    (Matroska takes none).
    """

    def __init__(self, tmp: Path, video: Any, audio: Any, job: RecordJob, reader: _Reader,
                 progress: Callable[[str, int, int | None], None] | None) -> None:
        import av

        self.job, self.reader, self.progress = job, reader, progress
        self.video, self.audio = video, audio
        # (plain values, read now: the source's streams are not read while the reading thread demuxes)
        codec = video.codec_context
        self.codec, self.raw = codec.name, codec.name in RAW_VIDEO_CODECS
        self.rate = video.average_rate or video.guessed_rate
        self.size = (codec.width, codec.height)
        self.reorders = bool(getattr(codec, "has_b_frames", 0))
        self.audio_codec = audio.codec_context.name if audio is not None else None
        # (written as it goes: a killed recording's temporary file holds up to the last second, not nothing)
        self.sink = av.open(str(tmp), "w", format="matroska",
                            container_options={"cluster_time_limit": "1000", "flush_packets": "1"})
        self.video_out = (_encoder(self.sink, *self.size, self.rate, video.time_base) if self.raw
                          else self.sink.add_stream_from_template(video))
        self.audio_out = self.sink.add_stream_from_template(audio) if audio is not None else None
        self.start: float | None = None  # (the first keyframe's time, s: the recording's 0)
        self.frames, self.skipped, self.last, self.untimed = 0, 0, 0.0, 0
        self.latest: dict[int, int] = {}  # (each output stream's last dts written)
        self.behind, self.first_back = 0, 0.0  # (packets left out in a row as out of order; the first one's step back)
        self.stopped_by = "end"
        self.warnings: list[str] = []

    def run(self) -> None:
        """Record until the source stops, ends, fails, jumps back, sends nothing for
        ``timeout_s``, or Ctrl-C.

        Raises:
            InputError: no keyframe came, the source failed before one, or it carries no
                timestamps and reorders its pictures.
        """
        from wbcap.stop_signals import held_stop_signals

        job, said = self.job, -1
        total = math.ceil(job.seconds) if job.seconds else None
        streams = [self.video] + ([self.audio] if self.audio is not None else [])
        try:
            for packet in self.reader.packets(streams, self.raw):
                is_video = packet.stream.type == "video"
                if packet.pts is None and packet.dts is None and not self._time(packet, is_video):
                    continue
                when = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
                if not is_video:
                    if self.start is not None and self.audio_out is not None and when >= self.start:
                        with held_stop_signals():  # (a packet written whole)
                            self._mux(packet, self.audio_out)
                    continue
                if self.start is None and not (packet.is_keyframe or self.raw):
                    self.skipped += 1
                    continue
                if self.start is None:
                    self.start = when
                if when < self.start - 1e-9:  # (shown before the first keyframe: it refers to pictures not recorded)
                    self.skipped += 1
                    continue
                if job.seconds is not None and when - self.start >= job.seconds - 1e-9:
                    self.stopped_by = "seconds"
                    break
                with held_stop_signals():  # (a raw picture's packets all written: later ones refer to them)
                    self.frames += self._write_video(packet)
                self.last = max(self.last, when - self.start)
                if self.progress is not None and int(self.last) != said:
                    said = int(self.last)
                    self.progress("record", said, total)
        except KeyboardInterrupt:  # (the way to stop a recording without --seconds: the file is finished)
            self.stopped_by = "ctrl-c"
        except TimeoutError:
            self.stopped_by = "timeout"
            self.warnings.append(f"{job.source}: sent nothing for {job.timeout_s:g} s: the recording ends there "
                                 f"({self.last:.1f} s)")
        except _SourceFailed as failed:  # (a dropped connection, damaged data: what came is kept)
            exc = failed.args[0]
            why = getattr(exc, "strerror", None) or exc
            if self.start is None:
                raise InputError(f"{job.source}: failed before its first keyframe ({why}); check the stream and record "
                                 "again") from None
            self.warnings.append(f"{job.source}: the stream failed after {self.last:.1f} s ({why}); the recording "
                                 "ends there")
        except _JumpedBack as jump:
            self.stopped_by = "end"
            self.warnings.append(f"{job.source}: its timestamps went back {jump.args[0]:.1f} s after {self.last:.1f} s "
                                 "(a restarted stream); the recording ends there: record the rest into another file")
        if self.start is None:
            raise InputError(f"{job.source}: sent no video keyframe ({self.skipped} packets before it ended or was "
                             "stopped); nothing recorded")

    def _time(self, packet: Any, is_video: bool) -> bool:
        """Time a video packet that carries no timestamp at the stream's rate (False: leave it
        out: an audio packet, or no rate known).

        Raises:
            InputError: the stream reorders its pictures (B-frames): decoding order is no
                display order, so no timestamps can be made.
        """
        rate = self.rate or (1 / (packet.duration * packet.time_base) if packet.duration else None)
        if not is_video or not rate:
            return False
        if self.reorders:
            raise InputError(f"{self.job.source}: its video carries no timestamps and shows its pictures in another "
                             "order than it sends them (B-frames): record it in a container (MPEG-TS, Matroska), or "
                             "from a camera set to send no B-frames")
        packet.pts = packet.dts = round(self.untimed / (rate * packet.time_base))  # (one frame apart)
        if self.untimed == 0:
            self.warnings.append(f"{self.job.source}: its video carries no timestamps: its frames are timed "
                                 f"{float(rate):g} per second (the stream's rate; --fps sets another)")
        self.untimed += 1
        return True

    def _mux(self, packet: Any, stream: Any) -> bool:
        """``packet`` moved to the recording's clock and written as ``stream``'s; False where it
        is left out (a little out of order).

        Raises:
            _JumpedBack: its time went back more than :data:`JUMP_BACK_S`.
        """
        import av

        _rebase(packet, self.start or 0.0)
        stamp = packet.dts  # (decoding order: a B-frame's pts comes back, its dts never does)
        before = self.latest.get(stream.index)
        if stamp is not None and before is not None and stamp <= before:
            back = float((before - stamp) * packet.time_base)
            self.behind += 1
            self.first_back = back if self.behind == 1 else self.first_back
            if back > JUMP_BACK_S or self.behind >= BEHIND_PACKETS:
                raise _JumpedBack(self.first_back)
            self.skipped += 1
            return False
        self.behind = 0
        if stamp is not None:
            self.latest[stream.index] = stamp
        packet.stream = stream
        try:
            self.sink.mux(packet)
        except av.error.ValueError:  # (timestamps Matroska refuses, of a packet without a dts: left out)
            self.skipped += 1
            return False
        return True

    def _write_video(self, packet: Any) -> int:
        """Mux one video packet (copied, or its raw picture encoded); returns the frames it holds."""
        import av

        if not self.raw:
            return int(self._mux(packet, self.video_out))
        written = 0
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:  # (a damaged or cut picture, the source's last: left out)
            self.skipped += 1
            self.warnings.append(f"{self.job.source}: a damaged picture left out ({exc.strerror or exc})")
            return 0
        for frame in frames:
            frame.pts = (frame.pts - round(self.start / frame.time_base)) if frame.pts is not None else None
            frame.time_base = Fraction(frame.time_base) if frame.time_base else self.video_out.time_base
            # (raw decoders mark every picture an I-frame, which libx264 obeys: every frame a keyframe, the file
            # 9 times larger; FFmpeg's own tool clears the mark: a review)
            frame.pict_type = av.video.frame.PictureType.NONE
            for out_packet in self.video_out.encode(frame):
                self.sink.mux(out_packet)
            written += 1
        return written

    def finish(self) -> None:
        """The encoder flushed, the file's end written and closed; the last progress said."""
        try:
            if self.raw:
                for out_packet in self.video_out.encode():
                    self.sink.mux(out_packet)
        finally:
            self.sink.close()
        if self.reader.dropped:
            self.warnings.append(f"{self.job.source}: the encoder fell behind the camera: {self.reader.dropped} "
                                 "pictures left out (a smaller --size or --fps keeps up)")
        self.warnings += _not_as_asked(self.job, self.size, self.rate)
        if self.progress is not None and self.stopped_by != "ctrl-c":
            self.progress("record", int(self.last), math.ceil(self.job.seconds) if self.job.seconds else None)

    def close(self) -> None:
        """The file closed where :meth:`finish` did not (a failure); nothing where it did."""
        import contextlib

        with contextlib.suppress(Exception):
            self.sink.close()

    def result(self) -> dict[str, Any]:
        step = 1.0 / float(self.rate) if self.rate else 0.0
        return {"seconds": self.last + step if self.frames else 0.0, "frames": self.frames,
                "video": f"{self.codec} encoded as h264" if self.raw else f"{self.codec} copied",
                "audio": self.audio_codec, "stopped_by": self.stopped_by, "skipped": self.skipped,
                "dropped": self.reader.dropped, "warnings": self.warnings}


class _JumpedBack(Exception):
    """A stream's timestamps went back by ``args[0]`` seconds (more than :data:`JUMP_BACK_S`)."""


def _not_as_asked(job: RecordJob, size: tuple[int, int], rate: Any) -> list[str]:
    """A warning where the source's pictures are not of the size or rate ``job.options`` asked
    for (a camera that cannot give them, a stream, which takes no such request)."""
    asked = dict(job.options)
    said = []
    if asked.get("video_size") not in (None, f"{size[0]}x{size[1]}"):
        said.append(f"{size[0]}x{size[1]} pictures, not the {asked['video_size']} asked (--size)")
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
