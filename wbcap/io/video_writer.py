"""H.264 video out (:class:`VideoWriter`), atomically, with the source's audio copied.

H.264 (libx264, ``yuv420p``), at a constant frame rate, or at the frames' own times when
:meth:`VideoWriter.write` is given them (variable frame rate, so the output keeps the source's
timing and its copied audio in sync); written under a temporary name and renamed into place only
when complete; optional audio copied packet for packet (no re-encoding) from the source video, or
encoded as AAC where an MP4's players would not play it (:data:`_PLAYABLE_AUDIO`).

User mistakes (an unsupported file ending, a missing output folder, bad arguments) raise
:class:`wbcap.errors.InputError` with one line naming the file and the fix. Importing this
module imports neither PyAV nor numpy.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbcap.errors import InputError
from wbcap.io.frame_times import _EPS, _as_fraction
from wbcap.io.video_probe import _open_input, _time_origin

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

__all__ = ["VideoWriter"]

#: Output file endings :class:`VideoWriter` accepts (H.264 + copied audio fits all of them).
VIDEO_OUTPUT_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".mkv"})

#: Time base of the timestamps :class:`VideoWriter` writes for timed frames (the MPEG 90 kHz
#: clock: about 11 µs resolution; Matroska rounds it to its own 1 ms).
WRITER_TIME_BASE: Fraction = Fraction(1, 90_000)
#: Coarser time bases for timed frames whose intervals are too long for it: the muxer keeps the
#: interval between two frames in signed 32 bits, so 1/90000 s holds at most ~6.6 h (``wbcap run
#: --every 500000`` on 10 fps footage, 50 000 s between frames, failed in the MP4 muxer with
#: EINVAL); the first of these that holds them is taken (:func:`timed_time_base`).
_COARSER_TIME_BASES: tuple[Fraction, ...] = (Fraction(1, 1_000), Fraction(1, 1))
#: The most ticks between two frames the muxers take (signed 32 bits).
_MAX_TICKS = 2**31 - 1


def timed_time_base(fps: Fraction, longest_interval: float = 0.0) -> Fraction:
    """The time base of a timed :class:`VideoWriter` at nominal rate ``fps``: :data:`WRITER_TIME_BASE`,
    or the first of :data:`_COARSER_TIME_BASES` in which four nominal frame intervals and
    ``longest_interval`` (seconds: the longest gap between two frames, when the caller knows it
    ahead) fit the muxer's signed 32-bit intervals (the coarsest beyond them). A coarser one is
    also the MP4 track's timescale (its ``video_track_timescale``: the muxer would otherwise
    double a timescale under 10 000 until it is not, 1/1000 s becoming 1/16000 s)."""
    for base in (WRITER_TIME_BASE, *_COARSER_TIME_BASES):
        if 4 / (fps * base) < _MAX_TICKS and longest_interval / base + 2 < _MAX_TICKS:
            return base
    return _COARSER_TIME_BASES[-1]


#: The largest width or height libx264 encodes (x264's limit; a 16386x20 frame fails to open the
#: encoder, 16384x20 and 16x16384 encode).
MAX_SIDE = 16384


def check_frame_size(width: int, height: int, what: str, fix: str) -> None:
    """Refuse a frame size :class:`VideoWriter` cannot encode (a side over :data:`MAX_SIDE` after
    padding to even), in one line: ``what`` names the frames, ``fix`` says what to do instead.

    Raises:
        InputError: the size is too large.
    """
    if max(width + width % 2, height + height % 2) > MAX_SIDE:
        raise InputError(f"{what}: frames of {width}x{height} pixels are larger than an H.264 video can be "
                         f"(libx264: at most {MAX_SIDE} pixels a side); {fix}")


#: The colour tags of the videos wbcap writes (ITU-T H.273 codes, FFmpeg's ``AVCOL_*``):
#: ``colorspace`` 6, SMPTE 170M / BT.601 (the matrix FFmpeg's scaler converts RGB frames to
#: YUV with), ``color_range`` 1, limited; ``color_primaries`` and ``color_trc`` 1, BT.709.
COLOR_TAGS = {"colorspace": 6, "color_range": 1, "color_primaries": 1, "color_trc": 1}


class VideoWriter:
    """Write RGB frames to an H.264 video, atomically, optionally with the source's audio.

    The video is H.264 (libx264, ``yuv420p``, quality ``crf``; lower is better, 18-23 is
    typical) at x264's speed ``preset``, default ``veryfast``: 100 frames of the ``vtest.avi``
    sample at ``crf`` 20 encoded 2.5x faster than with x264's own default ``medium``, in a
    20 % smaller file (``crf`` is not quite the same quality across presets); pass ``"medium"``
    or slower when file size matters more than time. ``yuv420p`` needs an even width and height: an odd size is padded by one
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
      :data:`WRITER_TIME_BASE` (1/90000 s; Matroska stores 1 ms; a coarser one for a nominal
      rate under ~1 frame in 1.7 hours, or for a ``longest_interval`` between frames over ~6.6
      hours, :func:`timed_time_base`), each frame lasting until the
      next one, the last until :meth:`end_at`'s time when given (where the source's stretch
      behind it ends), else as long as the interval before it (``1/fps`` for a single frame), so
      the file is as long as the source span it covers, within one frame. Times must increase;
      two that round to the same tick are one tick apart. Written without B-frames: with them,
      x264's decode times lag the presentation times by two frames, and MP4 takes the track's
      length from the last decode time, so an irregular video would end early (a sparse clip by
      seconds). That costs size: +19 % at the same ``crf`` on the ``vtest.avi`` sample. ``fps``
      is then only the nominal rate given to the encoder and the single-frame duration.

    The file is written under a hidden temporary name in the destination folder
    (:func:`wbcap.atomic.atomic_path`) and renamed into place by :meth:`close` (or the end
    of a ``with`` block without an exception). An exception inside the ``with`` block, or
    :meth:`abort`, deletes the temporary: no partial video is ever left.

    Audio: when ``audio_from`` has an audio stream, its packets with time in
    ``[audio_start, audio_end)`` (seconds on the same clock as :attr:`Frame.time` of that file),
    and in timed mode before the end of the last frame (:meth:`end_at`'s time, or the interval
    before it), are copied without re-encoding and shifted so that ``audio_start`` plays at 0,
    interleaved with the video as frames are written. Cuts fall on packet boundaries (about 20
    ms for AAC).
    Into an MP4 or MOV, audio its players do not take (a camera's PCM; :data:`_PLAYABLE_AUDIO`
    lists those copied), and into any file audio its container cannot hold, is decoded and
    encoded as AAC (mono, or stereo from two channels or more) at the same times; audio that cannot
    be is skipped with a warning.

    Example (the output keeps the source's timing, variable frame rate included)::

        src = open_frames("in.mp4", start=10.0, end=20.0)
        with VideoWriter("out.mp4", src.info.width, src.info.height, src.info.fps_fraction,
                         audio_from=src.info.path, audio_start=10.0, audio_end=20.0) as w:
            for frame in src:
                w.write(render(frame.image), time=frame.time)
            w.end_at(src.stretch_end)  # (the last frame until the source's stretch behind it ends)
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
        preset: str = "veryfast",
        longest_interval: float = 0.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.width = int(width)
        self.height = int(height)
        self.fps = _as_fraction(fps)
        if self.width < 1 or self.height < 1 or self.width != width or self.height != height:
            raise InputError(f"{self.path}: frame size {width}x{height} is invalid; pass whole "
                             "numbers >= 1")
        check_frame_size(self.width, self.height, str(self.path), "scale the frames down")
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
        self._end: Fraction | None = None  # end_at(): the source time the output stops at
        self._durations: dict[int, int] = {}  # timed mode: pts -> duration, for the packets
        self._time_base = timed_time_base(self.fps, longest_interval)  # timed mode's ticks
        self._container: Any = None
        self._stream: Any = None
        self._audio_in: Any = None
        self._audio_out: Any = None
        self._audio_packets: Iterator[Any] | None = None
        self._pending_audio: Any = None

        from wbcap.atomic import atomic_path

        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            self._open(int(crf), preset)
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
            InputError: ``time`` further from the previous frame's than the time base holds
                (a gap over ~6.6 hours at 1/90000 s: give ``longest_interval``).
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
        frame.time_base = self._time_base
        if self._held is not None:
            self._encode_held(pts - self._held.pts)
        self._held = frame
        self._last_time = float(time)  # type: ignore[arg-type]
        self.frames_written += 1
        self._mux_audio_until(pts * self._time_base)

    def end_at(self, time: float) -> None:
        """Stop the output at source time ``time`` (seconds, on the clock of :meth:`write`'s
        ``time``; ``audio_end`` still applies where it is earlier): in timed mode the last
        frame lasts until then (one tick at least) instead of as long as the interval before
        it; no audio packet starting at or after it is copied (in timed mode the audio always
        stops where the last frame ends). Give it where the source's stretch behind the last
        frame ends (a reader's :attr:`~wbcap.io.video_reader.FrameSource.stretch_end`): with ``--every 3 --end 0.5``
        on a 10 fps clip the frame at 0.3 s lasted 0.3 s, and the render ran 0.1 s past
        ``--end`` and its audio (an odd-media trial). Call it before :meth:`close`.

        Raises:
            ValueError: ``time`` is not finite, or not after the last frame written and
                ``audio_start``.
        """
        if not math.isfinite(time):
            raise ValueError(f"{self.path}: end time {time} is not a number of seconds")
        if self._last_time is not None and time <= self._last_time:
            raise ValueError(f"{self.path}: end time {time:.6f} s is not after the last frame's "
                             f"{self._last_time:.6f} s")
        if Fraction(time) <= self._origin:
            raise ValueError(f"{self.path}: end time {time:.6f} s is not after audio_start={float(self._origin):g} s, "
                             "the output's time 0")
        self._end = Fraction(time)

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
            stop = None if self._end is None else self._end - self._origin  # (output clock, s)
            if self._held is not None:  # the last frame lasts until end_at's time, or as long as the interval before it
                if self._end is not None:
                    last = max(1, round((self._end - self._origin) / self._time_base) - self._held.pts)
                elif self._prev_pts is not None:
                    last = self._held.pts - self._prev_pts
                else:
                    last = max(1, round(1 / (self.fps * self._time_base)))
                stop = (self._held.pts + last) * self._time_base  # (the audio ends with the picture)
                self._encode_held(last)
            self._encode(None)
            self._mux_audio_until(stop)
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

    def _open(self, crf: int, preset: str) -> None:
        import av

        options = {"movflags": "+faststart"} if self.path.suffix.lower() != ".mkv" else {}
        if options and self._time_base != WRITER_TIME_BASE:  # (MP4/MOV: see timed_time_base)
            options["video_track_timescale"] = str(self._time_base.denominator)
        try:
            self._container = av.open(str(self._tmp), mode="w", options=options)
            stream = self._container.add_stream("libx264", rate=self.fps)
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot create the video ({exc}); check the folder "
                             "is writable") from None
        stream.width = self.out_width
        stream.height = self.out_height
        stream.pix_fmt = "yuv420p"
        # The colours said as FFmpeg's scaler converts the RGB frames (BT.601 matrix, limited
        # range) and as they are (BT.709 primaries and transfer: SDR video's, sRGB's primaries):
        # untagged, players that take HD video for BT.709 (browsers) showed shifted colours.
        for name, value in COLOR_TAGS.items():
            with contextlib.suppress(AttributeError, TypeError, ValueError):  # (an older PyAV: untagged, as before)
                setattr(stream.codec_context, name, value)
        stream.codec_context.time_base = 1 / self.fps
        self._options = {"crf": str(crf), "preset": preset}
        stream.options = dict(self._options)
        self._stream = stream

    def _use_frame_times(self) -> None:
        """Switch the (not yet opened) encoder and stream to timed frames: fine time base, no
        B-frames (see the class docstring)."""
        self._stream.codec_context.time_base = self._time_base
        self._stream.time_base = self._time_base
        self._stream.options = {**self._options, "bf": "0"}

    def _pts_of(self, time: float) -> int:
        """Timed mode: the output pts (in its time base) of a frame at source time ``time``."""
        if not math.isfinite(time):
            raise ValueError(f"{self.path}: frame time {time} is not a number of seconds")
        if time < self._origin - Fraction(_EPS):
            raise ValueError(f"{self.path}: frame time {time:.6f} s is before audio_start="
                             f"{float(self._origin):g} s, the output's time 0")
        if self._last_time is not None and time <= self._last_time:
            raise ValueError(f"{self.path}: frame time {time:.6f} s is not after the previous "
                             f"frame's {self._last_time:.6f} s; times must increase")
        pts = max(0, round((Fraction(time) - self._origin) / self._time_base))
        if self._held is not None and pts <= self._held.pts:
            pts = self._held.pts + 1  # distinct times closer than one tick
        if self._held is not None and pts - self._held.pts > _MAX_TICKS:  # (the muxer's EINVAL, at close)
            raise InputError(f"{self.path}: frames {time - self._last_time:.0f} s apart (at {self._last_time:.3f} and "
                             f"{time:.3f} s) do not fit the video's time base of 1/{self._time_base.denominator} s; "
                             "give the writer the longest interval between frames (longest_interval=)")
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
        copy = codec_name is not None and codec_name in self._container.supported_codecs and (
            codec_name in _PLAYABLE_AUDIO or self._container.format.name not in _MP4_FORMATS)
        try:
            if copy:
                self._audio_out = self._container.add_stream_from_template(stream)
            else:
                self._audio_out = self._container.add_stream("aac", rate=_aac_rate(stream.rate))
                self._audio_out.layout = "mono" if stream.channels == 1 else "stereo"
        except (av.FFmpegError, ValueError) as exc:
            log.warning("%s: audio cannot be %s (%s); writing video only", src,
                        "copied" if copy else "encoded as AAC", exc)
            container.close()
            return
        if not copy:  # (a camera's PCM was copied into render.mp4, where players take AAC or MP3: a user trial)
            log.info("%s: audio %s encoded as AAC for %s (players of MP4 files take AAC, not it)", src, codec_name,
                     self.path.name)
        self._audio_in = container
        origin_probe = _open_input(src)  # _time_origin demuxes: keep the audio reader at 0
        try:
            origin = _time_origin(origin_probe)
        finally:
            origin_probe.close()
        first, last = Fraction(start) + origin, None if end is None else Fraction(end) + origin
        if copy:
            self._audio_packets = _audio_packets(container, stream, first, last)
        else:  # (times from the packets' own: a shift in a coarse time base put ADPCM 80 ms early, a break-it trial)
            self._audio_packets = _encoded_audio(_audio_packets(container, stream, first, last, shift=False),
                                                 self._audio_out, first, container.name)

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


#: Audio codecs an MP4 (render.mp4) carries as they are: those its common players play (browsers
#: and wbcap view, QuickTime, Windows' player, VLC). Any other (a camera's or a lab recorder's PCM,
#: ADPCM, WMA) is decoded and encoded as AAC (:func:`_encoded_audio`).
_PLAYABLE_AUDIO = frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "opus", "flac", "alac"})
#: FFmpeg's names of the MP4 family of containers (an output of another kind copies what it can take).
_MP4_FORMATS = frozenset({"mp4", "mov", "mov,mp4,m4a,3gp,3g2,mj2", "ipod", "3gp", "3g2"})


#: The sample rates FFmpeg's AAC encoder takes (its MPEG-4 table); another is resampled to the
#: nearest above, 96 kHz at most (37.8 kHz or 192 kHz stopped the render: a break-it trial).
_AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def _aac_rate(rate: int | None) -> int:
    """The AAC output rate for a source of ``rate`` Hz (:data:`_AAC_RATES`; 48 kHz when unknown)."""
    if not rate:
        return 48000
    return next((r for r in _AAC_RATES if r >= rate), _AAC_RATES[-1])


def _encoded_audio(packets: Iterator[Any], out: Any, start: Fraction, name: str) -> Iterator[Any]:
    """``packets`` (:func:`_audio_packets` of the stretch, their times as in the source) decoded
    and encoded by ``out`` (an AAC stream: PyAV converts each frame to its sample format, layout
    and rate and cuts them into its frame size), then the encoder's last packets. Each frame is
    placed at its source time less ``start`` (seconds), in ``1 / rate`` ticks, so the audio stays
    in step whatever the source's time base."""
    import av

    rate = out.codec_context.sample_rate
    try:
        for packet in packets:
            for frame in packet.decode():
                if frame.pts is not None and frame.time_base is not None:
                    frame.pts = max(0, round((frame.pts * frame.time_base - start) * rate))
                    frame.time_base = Fraction(1, rate)
                yield from out.encode(frame)
        yield from out.encode(None)
    except (av.FFmpegError, ValueError) as exc:
        log.warning("%s: audio encoding stopped (%s); the rest of the video has no sound", name, exc)


def _audio_packets(container: Any, stream: Any, start: Fraction,
                   end: Fraction | None, shift: bool = True) -> Iterator[Any]:
    """Audio packets with ``start <= pts < end`` (absolute seconds), timestamps shifted by -start
    (unless not ``shift``: as in the source).

    Timestamps stay in the input stream's time base; ``mux`` rescales them to the output's.
    """
    import av

    tb = Fraction(stream.time_base)
    ticks = math.ceil(start / tb)
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            t = packet.pts * tb
            if t < start - Fraction(_EPS):
                continue
            if end is not None and t >= end - Fraction(_EPS):
                return
            if shift:
                packet.pts -= ticks
                if packet.dts is not None:
                    packet.dts -= ticks
            yield packet
    except av.FFmpegError as exc:
        log.warning("%s: audio copy stopped at damaged data (%s)", container.name, exc)
