"""Video and image-sequence frames in (:func:`open_frames`): streamed, never the whole video in memory.

* Decoding is FFmpeg's, through PyAV (``stream.thread_type = "AUTO"``). Every frame comes out as
  wbcap's one pixel convention: ``(H, W, 3)`` ``uint8`` **RGB**, row 0 at the top of the upright
  picture (the display rotation, and a display matrix's mirror, applied: see
  :mod:`wbcap.io.video_probe`), C-contiguous. The YUV -> RGB conversion uses the frame's own
  colour matrix and range.
* **Time.** ``Frame.time`` is the frame's presentation time in seconds, measured from the start
  of the file (the origin ``ffmpeg -ss`` uses: the container's ``start_time``, or the earliest
  video timestamp among the first packets when that is earlier), so variable-frame-rate video
  keeps its real timing. Frame times are **strictly increasing** in delivery (display) order,
  whatever the file stores; :class:`Frame` gives the rule and :mod:`wbcap.io.frame_times`
  applies it. In short: the decoded frames' own timestamps, sorted within a window of
  :data:`~wbcap.io.frame_times.REORDER_WINDOW` frames (timestamps permuted against decode
  order), where for AVI a frame's timestamp is its chunk's slot (AVI timestamps are frame
  counts; this also times packed-B-frame DivX/XviD files right); a repeated, backward or
  missing time becomes the previous time plus one nominal frame interval. One warning at the
  end of the iteration says how many frames were retimed. Image sequences have
  ``time = index / image_fps``.
* **Ranges.** ``start``/``end`` select ``start <= time < end`` (seconds). A start past 0 seeks to
  the key frame at least ``REORDER_WINDOW`` frames before it and decodes from there; frame
  indices stay exact because a demux-only pass (no decoding, fast) counts the packets before
  ``start``, from the first frame that decodes on (a file cut in the middle of a GOP starts
  with packets that never decode: decoded frames are what is counted, however the range is
  selected).
* **Damaged files.** A truncated or corrupt video yields every frame that decodes, logs one
  warning where decoding stopped and ends; :class:`InputError` only if no frame decodes at all.

User mistakes (missing file, a folder, an empty or non-video file, no video stream, a codec this
FFmpeg cannot decode, bad arguments) raise :class:`wbcap.errors.InputError` with one line naming
the file and the fix. Importing this module imports neither PyAV nor numpy.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbcap.errors import InputError, setting
from wbcap.io.frame_times import (
    _EPS,
    MAX_FPS,
    REORDER_WINDOW,
    _as_fraction,
    _count_packets_before,
    _own_time,
    _retime,
    _RetimeStats,
)
from wbcap.io.hdr import sdr_rgb24
from wbcap.io.video_probe import (
    VideoInfo,
    _is_avi,
    _open_input,
    _probe,
    _video_stream,
    apply_rotation,
)
from wbcap.limits import DEFAULT_IMAGE_FPS

if TYPE_CHECKING:
    import numpy as np

    from wbcap.camera import LensCalibration
    from wbcap.io.undistort import Undistorter

log = logging.getLogger(__name__)

__all__ = ["Frame", "FrameSource", "open_frames"]


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
        image: ``(H, W, 3)`` ``uint8`` RGB, C-contiguous, display rotation (and mirror) applied
            (and, with a calibration, undistorted: :attr:`FrameSource.undistorter`).
    """

    index: int
    time: float
    image: np.ndarray


# --------------------------------------------------------------------------------------------
# Reading frames


def open_frames(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    start: float = 0.0,
    end: float | None = None,
    every: int = 1,
    max_frames: int | None = None,
    image_fps: float = DEFAULT_IMAGE_FPS,
    warn_retimed: bool = True,
    calibration: LensCalibration | None = None,
) -> FrameSource:
    """Open a video or image sequence for lazy, selective frame reading.

    Args:
        spec: a video file; an image file; a folder of images; a glob pattern (``"shots/*.png"``);
            or a list of image files/folders/patterns (see
            :func:`wbcap.io.images.iter_image_paths`, natural order ``f2`` before ``f10``).
        start: first time to deliver, seconds (inclusive), at most :data:`MAX_SECONDS`.
        end: time to stop at, seconds (exclusive: frames with ``start <= time < end``); ``None``
            for the end of the video.
        every: keep every ``every``-th frame of the range, counted from the first kept one.
        max_frames: stop after this many frames; ``None`` for no limit.
        image_fps: frame rate assigned to image sequences (their ``time = index / image_fps``).
        warn_retimed: log what reading the file found wrong as warnings: retimed frames, a
            video that ends before the frames its header declares, damaged data where decoding
            stopped, a display rotation rounded to a multiple of 90 degrees. False: at debug
            level, for a later pass over a file whose reading was already reported (``wbcap
            run``'s render pass), so that each is said once per run.
        calibration: the camera's lens calibration: every frame is undistorted into its
            undistorted camera (:class:`wbcap.io.undistort.Undistorter`, the source's
            ``undistorter``); None: frames as read.

    Returns:
        A :class:`FrameSource`; nothing is decoded until it is iterated (a video's first frame
        is decoded now, by :func:`probe_video`, to validate it).

    Raises:
        InputError: a bad path or file (see :func:`probe_video` and ``iter_image_paths``), or a
            bad argument (negative start, ``end <= start``, ``every < 1``, a value past its limit:
            :data:`MAX_SECONDS`, :data:`MAX_EVERY`, ``image_fps`` from :data:`MIN_IMAGE_FPS` to
            :data:`~wbcap.io.frame_times.MAX_FPS`...).
    """
    return FrameSource(spec, start=start, end=end, every=every, max_frames=max_frames,
                       image_fps=image_fps, warn_retimed=warn_retimed, calibration=calibration)


class FrameSource:
    """Frames of a video or image sequence, decoded lazily each time it is iterated.

    Build it with :func:`open_frames` (same arguments). ``info`` describes the whole source;
    iterating yields :class:`Frame` objects for the selected range, one decoded frame in memory
    at a time. Each iteration opens the file afresh and closes it when the loop ends, breaks or
    the generator is closed.

    Attributes:
        info: :class:`VideoInfo` of the source (for image sequences: size of the first image,
            ``fps=image_fps``, ``frame_count`` = number of images, ``rotation`` and ``mirrored``
            the first image's EXIF orientation, which ``load_image`` applies, as each image's own).
        start, end, every, max_frames: the selection (seconds, seconds, frames, frames).
        stretch_end: once an iteration has run to its end, the time (seconds, as
            :attr:`Frame.time`) where the stretch of the source its last frame stands for ends:
            the frame ``every`` would have kept next (also after ``max_frames`` stopped it,
            decoding at most :data:`PEEK_FRAMES` frames more, else one nominal ``every`` stride
            on), ``end``, or the source's end (the video stream's declared end when it is near,
            else its last frame's time plus one nominal frame interval), whichever comes first;
            None before, during, after an iteration stopped by its consumer, or when it yielded
            nothing. ``render.mp4`` shows the last frame until then
            (:meth:`wbcap.io.video_writer.VideoWriter.end_at`; it ran on for the interval
            before it, up to one ``--every`` stride past ``--end`` or the source: an
            odd-media trial).
    """

    def __init__(
        self,
        spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        start: float = 0.0,
        end: float | None = None,
        every: int = 1,
        max_frames: int | None = None,
        image_fps: float = DEFAULT_IMAGE_FPS,
        warn_retimed: bool = True,
        calibration: LensCalibration | None = None,
    ) -> None:
        _check_selection(start, end, every, max_frames, image_fps)
        self.warn_retimed = bool(warn_retimed)
        #: After a pass over a video that ended well before its header says (a file cut short, a
        #: camera that died): ``"ended after N of the M frames its header declares"`` or ``"ended
        #: at T s of the L s its header declares"``; or whose size changed while it was read (still
        #: being recorded): ``"changed size while it was read ..."``; as warned; else None.
        #: Recorded in meta.json (``source_ended_early``).
        self.ended_early: str | None = None
        self.start = float(start)
        self.end = None if end is None else float(end)
        self.every = int(every)
        self.max_frames = None if max_frames is None else int(max_frames)
        self._image_paths: list[Path] | None = None
        # (an image sequence's first image as its probe decoded it, for the first pass over it: decoded
        # once, and its warnings said once; an animated AVIF's were said twice, a break-it trial)
        self._first_image: np.ndarray | None = None
        self._said_resized = False  # (a video whose frames change size: said once, on the first pass)
        self._origin = Fraction(0)  # seconds subtracted from a video's timestamps
        self.stretch_end: float | None = None
        video = _video_path_of(spec, warn=self.warn_retimed)
        if video is not None:
            self.info, self._origin = _probe(video, warn=self.warn_retimed)
        else:
            from wbcap.io.images import iter_image_paths

            # (its skipped files said once per run: the render pass's reader, warn_retimed=False, said them again)
            self._image_paths = iter_image_paths(spec, warn=self.warn_retimed)  # type: ignore[arg-type]
            self.info = self._image_info(spec, image_fps)
        #: The frames' undistortion (``calibration`` fitted to the frames' size), or None.
        self.undistorter: Undistorter | None = None
        if calibration is not None:
            self.use_calibration(calibration)

    def use_calibration(self, calibration: LensCalibration) -> None:
        """Undistort every frame of the next iterations with ``calibration`` (see
        :func:`open_frames`; sets :attr:`undistorter`).

        Raises:
            InputError: a calibration of pictures of another shape than the frames (see
                :class:`~wbcap.io.undistort.Undistorter`).
        """
        from wbcap.io.undistort import Undistorter

        # (a later pass over the source, warn_retimed False, fits it quietly: said once per run)
        self.undistorter = Undistorter(calibration, (self.info.width, self.info.height), quiet=not self.warn_retimed)

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
        from wbcap.io.images import image_display, load_image

        assert self._image_paths is not None
        first = self._first_image = load_image(self._image_paths[0])
        rotation, mirrored = image_display(self._image_paths[0])  # (its EXIF orientation: each image has its own)
        if isinstance(spec, (str, os.PathLike)):
            path = Path(spec).expanduser()
        else:
            path = self._image_paths[0]
        n = len(self._image_paths)
        rate = _as_fraction(image_fps)
        return VideoInfo(
            path=path, width=int(first.shape[1]), height=int(first.shape[0]),
            fps=float(image_fps), fps_fraction=rate, frame_count=n, duration=n / float(image_fps),
            rotation=rotation, codec="image", has_audio=False, is_image_sequence=True, mirrored=mirrored,
        )

    def image_paths(self) -> list[Path]:
        """Every image of an image sequence, in order, selected or not (``[]`` for a video)."""
        return list(self._image_paths or [])

    def selected_images(self) -> list[tuple[int, Path]]:
        """An image sequence's selected frames as ``(index, file)``, in order: times ``index /
        fps`` in ``[start, end)``, every ``every``-th from the first, at most ``max_frames`` (what
        iterating yields, without reading an image; ``[]`` for a video)."""
        if self._image_paths is None:
            return []
        fps = self.info.fps
        first = max(0, math.ceil(self.start * fps - _EPS * fps))
        chosen: list[tuple[int, Path]] = []
        for i in range(first, len(self._image_paths), self.every):
            if self.end is not None and i / fps >= self.end - _EPS:
                break
            if self.max_frames is not None and len(chosen) >= self.max_frames:
                break
            chosen.append((i, self._image_paths[i]))
        return chosen

    def _iter_images(self, paths: list[Path]) -> Iterator[Frame]:
        from wbcap.io.images import load_image

        fps = self.info.fps
        yielded = 0
        self.stretch_end = None
        chosen = self.selected_images()
        first, self._first_image = self._first_image, None
        for i, path in chosen:
            t = i / fps
            image = first if i == 0 and first is not None else load_image(path)
            if image.shape[:2] != (self.info.height, self.info.width):
                raise InputError(
                    f"{path}: image is {image.shape[1]}x{image.shape[0]}, the sequence's "
                    f"first image is {self.info.width}x{self.info.height}; resize the images to "
                    "one size"
                )
            if self.undistorter is not None:
                image = self.undistorter(image)
            yielded += 1
            yield Frame(index=i, time=t, image=image)
        if chosen:
            ends = (chosen[-1][0] + self.every, len(paths))  # (the next image kept; the sequence's end)
            self.stretch_end = min(min(ends) / fps, math.inf if self.end is None else self.end)
        if yielded == 0 and self.max_frames != 0:
            raise InputError(
                f"{self.info.path}: no image in the selected range ({_range_text(self.start, self.end, 'the sequence')}; {len(paths)} images at {fps:g} fps = "
                f"{len(paths) / fps:g} s); check {setting('start')}/{setting('end')}"
            )

    # -- video -----------------------------------------------------------------------------

# The decode loop with its timing repair and selection in one generator: the state (reorder window,
# last time, counters) is shared by every step; helpers for each rule live in io/frame_times.py.
    def _iter_video(self) -> Iterator[Frame]:
        import av
        import numpy as np

        info = self.info
        p = info.path
        container, stream = _open_decoding(p)
        retimed = _RetimeStats()
        self.ended_early = None
        opened = _file_size(p)
        try:
            tb = Fraction(stream.time_base)
            origin = self._origin
            by_chunk = _is_avi(container)
            step = 1 / info.fps_fraction  # nominal frame interval, s
            index = 0  # index the next frame at or after `start` gets
            seeked = False
            own_time = _own_time(tb, origin, by_chunk=False)  # AVI packets carry dts as pts
            if self.start > 0:
                index, broken = _count_packets_before(container, stream, Fraction(self.start),
                                                      origin, step, by_chunk,
                                                      skip=_undecodable_lead(p, origin))
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

            quiet = not self.warn_retimed
            state = _DecodeState(by_chunk=by_chunk, quiet_if_empty=seeked, quiet=quiet)
            timed = _retime(_decode(container, stream, state), own_time, step, retimed,
                            count_reorder=not by_chunk)
            first = next(timed, None)
            if first is None and seeked and state.decoded == 0:
                log.debug("%s: nothing decoded after seeking (%s); decoding from the start", p,
                          state.error)
                container.close()
                container, stream = _open_decoding(p)
                state = _DecodeState(by_chunk=by_chunk, quiet=quiet)
                timed = _retime(_decode(container, stream, state), own_time, step, retimed,
                                count_reorder=not by_chunk)
                first = next(timed, None)

            from av.video.reformatter import VideoReformatter

            reformatter = VideoReformatter()  # (one scaler for the pass's frames: wbcap.io.hdr.sdr_rgb24)
            yielded = 0
            in_range = 0  # frames seen inside [start, end)
            prev_time: float | None = None
            stopped_early = False
            at_end = False  # stopped by the first frame at or after `end`
            self.stretch_end = None
            for av_frame, t_exact in itertools.chain([first] if first else [], timed):
                t = float(t_exact)
                prev_time = t
                if t < self.start - _EPS:
                    continue
                if self.end is not None and t >= self.end - _EPS:
                    stopped_early = at_end = True
                    break
                frame_index = index
                index += 1
                keep = in_range % self.every == 0
                in_range += 1
                if (av_frame.width, av_frame.height) != info.stored_size and not self._said_resized:
                    self._said_resized = True  # (frames of another size reached pass 2's writer: a review)
                    (log.warning if self.warn_retimed else log.debug)(
                        "%s: the video's frames change size at %.3f s (from %dx%d to %dx%d); they are fitted into the "
                        "first frames' size, their proportions kept (black bars where the shapes differ; in the first "
                        "frames' pixel aspect)", p, t, *info.stored_size, av_frame.width, av_frame.height)
                if not keep:
                    continue
                image = frame_at_size(av_frame, info, reformatter)
                if info.rotation or info.mirrored:
                    image = apply_rotation(image, info.rotation, info.mirrored)
                if self.undistorter is not None:
                    image = self.undistorter(image)
                yield Frame(index=frame_index, time=t, image=np.ascontiguousarray(image))
                yielded += 1
                if self.max_frames is not None and yielded >= self.max_frames:
                    stopped_early = True
                    break

            def source_end(last: float) -> float:
                """Where the source ends after its last frame, at ``last`` s: the video stream's
                declared end where that lies at most max(2 nominal frame intervals, 0.5 s) past
                one interval on (a variable-rate file's last frame may last longer than its
                average interval; a truncated file's declared end lies further: not held till then),
                else one nominal frame interval on."""
                nominal = last + float(step)
                if info.video_end is not None:
                    declared = info.video_end - float(self._origin)
                    if last < declared <= nominal + max(2 / info.fps, 0.5):
                        return declared
                return nominal

            if yielded and self.max_frames is not None and yielded >= self.max_frames and not at_end:
                # (--max-frames stopped it: the next frame this selection would keep, or end, or the
                # source's end, decoding at most PEEK_FRAMES frames more, quietly; past them, one
                # nominal --every stride on)
                kept_time, wanted = prev_time, min(self.every, PEEK_FRAMES)
                state.quiet, counted, ahead, seen = True, retimed.count, None, 0
                for _, t_exact in itertools.islice(timed, wanted):
                    seen += 1
                    t = float(t_exact)
                    if self.end is not None and t >= self.end - _EPS:
                        ahead = self.end
                        break
                    if in_range % self.every == 0:
                        ahead = t
                        break
                    in_range += 1
                    prev_time = t
                retimed.count = counted  # (the frames looked at are not the selection's)
                if ahead is None:
                    ahead = source_end(prev_time) if seen < wanted else kept_time + self.every * float(step)
                self.stretch_end = ahead
            elif yielded:
                self.stretch_end = self.end if at_end else source_end(prev_time)
            if self.stretch_end is not None and self.end is not None:
                self.stretch_end = min(self.stretch_end, self.end)
            if state.error is not None and state.decoded == 0 and self.start <= 0:
                raise InputError(
                    f"{p}: no video frame could be decoded (truncated or corrupt); re-download "
                    "or re-encode it"
                )
            if not stopped_early and state.error is not None and state.decoded:
                # (said by _decode's warning; recorded for meta.json, which a batch script reads: a
                # trial's clip lost 25 of its 30 frames there without a word in it)
                self.ended_early = (f"decoding stopped on damaged data after {state.decoded} frames (last at "
                                    f"{_fmt_time(state.last_time)})"
                                    + (f" of the {info.frame_count} its header declares" if info.frame_count else ""))
            elif not stopped_early and state.error is None and info.frame_count:
                done = index
                if by_chunk and prev_time is not None:  # AVI counts dropped (empty) chunks too
                    done = max(index, round(prev_time * info.fps) + 1)
                missing = info.frame_count - done
                if missing > max(2, info.frame_count // 100):
                    self.ended_early = f"ended after {index} of the {info.frame_count} frames its header declares"
                    (log.warning if self.warn_retimed else log.debug)(
                        "%s: video %s; the file may be truncated", p, self.ended_early)
            elif not stopped_early and state.error is None and info.video_end and prev_time is not None:
                # (Matroska and WebM declare no frame count, only lengths: a file cut short, or with
                # a damaged middle the demuxer stops at, ended without a word; the video's own
                # end, as audio may run on after it, from the origin as the frames' times are)
                ended, length = prev_time + 1 / info.fps, info.video_end - float(self._origin)
                if ended < length - max(2 / info.fps, 0.5, length / 50):
                    self.ended_early = f"ended at {ended:.2f} s of the {length:.2f} s its header declares"
                    (log.warning if self.warn_retimed else log.debug)(
                        "%s: video %s; the file may be truncated", p, self.ended_early)
            if not stopped_early and opened is not None and _file_size(p) != opened:
                # (a file still being recorded: its end as read was no end, and the frames written after
                # it went unread without a word, a streaming trial; said instead of a header's count)
                self.ended_early = "changed size while it was read (still being recorded?): frames after its end as read are missing"
                (log.warning if self.warn_retimed else log.debug)("%s: video %s; run again on the finished file", p,
                                                                  self.ended_early)
            if yielded == 0 and self.max_frames != 0:
                has = (f"its first frame at or after {_as_given('start', f'{self.start:g}')} s is at {prev_time:.3f} s"
                       if stopped_early and prev_time is not None else
                       f"the video has {_fmt_duration(info.duration, prev_time)}")
                raise InputError(
                    f"{p}: no frame in the selected range ({_range_text(self.start, self.end)}; {has}); "
                    f"check {setting('start')}/{setting('end')}"
                )
        finally:
            container.close()
            if retimed.count:
                (log.warning if self.warn_retimed else log.debug)(
                    "%s: %d of %d frames had missing, repeated or out-of-order timestamps "
                    "(first at %.3f s); retimed them so frame times strictly increase",
                    p, retimed.count, retimed.frames, retimed.first_time,
                )


def _undecodable_lead(p: Path, origin: Fraction) -> int:
    """How many packets ``p`` starts with (in decode order) that decode to no frame.

    A file cut in the middle of a GOP starts with packets that refer to pictures it lacks; the
    decoder drops them, so frame indices (which count decoded frames) do not count them, and
    neither must the demux-only count of a reader that seeks
    (:func:`~wbcap.io.frame_times._count_packets_before`). Decodes the start of the file as
    :meth:`FrameSource._iter_video` does, ``2 * REORDER_WINDOW + 1`` frames, and returns the
    number of packets before the first one whose timestamp a decoded frame carries (0 when
    none does: nothing is left out on a guess). Packets that are empty or flagged discard are
    not counted, as there.
    """
    container, stream = _open_decoding(p)
    try:
        by_chunk = _is_avi(container)
        own_packet = _own_time(Fraction(stream.time_base), origin, by_chunk)
        own_frame = _own_time(Fraction(stream.time_base), origin, by_chunk=False)
        fed: list[Fraction | None] = []  # own times of the packets given to the decoder

        class _Recording:  # the container, as _decode reads it, noting each packet fed
            name = container.name

            @staticmethod
            def demux(s: Any) -> Iterator[Any]:
                for packet in container.demux(s):
                    if packet.size and not packet.is_discard:
                        fed.append(own_packet(packet))  # (before _decode sets an AVI pts)
                    yield packet

        decoded: set[Fraction | None] = set()
        state = _DecodeState(by_chunk=by_chunk, quiet=True)  # the reading itself reports damage
        for frame in itertools.islice(_decode(_Recording(), stream, state),
                                      2 * REORDER_WINDOW + 1):
            decoded.add(own_frame(frame))
        decoded.discard(None)
        return next((i for i, t in enumerate(fed) if t in decoded), 0)
    finally:
        container.close()


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


def _file_size(p: Path) -> int | None:
    """The size of the file ``p`` in bytes (None where it cannot be read): it grew (or was cut) while
    it was read where this differs after the read. Not its modification time, which a backup or
    sync tool's touch changes alone (a break-it trial: "frames missing" of a whole read)."""
    try:
        return os.stat(p).st_size
    except OSError:
        return None


class _DecodeState:
    """What :func:`_decode` saw: frames decoded, the error that stopped it, if any, and then the
    last frame's time (seconds, or None).

    ``by_chunk`` (AVI): each packet's ``pts`` is set to its ``dts``, the chunk's slot (see
    :class:`Frame`), before decoding, and MPEG-4 part 2 packets go through FFmpeg's
    ``mpeg4_unpack_bframes`` filter, which splits packed B-frames (DivX/XviD) into chunks of
    their own, so the decoder needs no packed-bitstream marker (absent after a seek).
    """

    def __init__(self, by_chunk: bool = False, quiet_if_empty: bool = False,
                 quiet: bool = False) -> None:
        self.decoded = 0
        self.error: Exception | None = None
        self.last_time: float | None = None
        self.by_chunk = by_chunk
        self.quiet_if_empty = quiet_if_empty  # no warning when nothing decoded (caller retries)
        self.quiet = quiet  # no warning at all (the damage is or was reported elsewhere)


def _unpack_filter(stream: Any) -> Any | None:
    """FFmpeg's ``mpeg4_unpack_bframes`` bitstream filter for an MPEG-4 part 2 stream, or None."""
    if stream.codec_context.name != "mpeg4":
        return None
    try:
        from av.bitstream import BitStreamFilterContext, bitstream_filters_available

        if "mpeg4_unpack_bframes" not in bitstream_filters_available:
            return None
        return BitStreamFilterContext("mpeg4_unpack_bframes", stream)
    except Exception as exc:
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
    # Damaged data: deliver what the decoder still holds, then stop (counted first: the warning said
    # "after 1 frames (last at 0.000 s)" of a clip whose 5 buffered frames followed, a trial)
    try:
        flushed = list(stream.codec_context.decode(None))
    except av.FFmpegError:
        flushed = []
    state.decoded += len(flushed)
    last_time = flushed[-1].time if flushed else last_time
    state.last_time = last_time
    (log.debug if state.quiet or (state.quiet_if_empty and state.decoded == 0) else log.warning)(
        "%s: decoding stopped after %d frames (last at %s) on damaged data (%s); the file is "
        "truncated or corrupt", container.name, state.decoded, _fmt_time(last_time), state.error,
    )
    yield from flushed


def frame_rgb(frame: Any, size: tuple[int, int] | None = None, reformatter: Any = None) -> np.ndarray:
    """``av.VideoFrame`` -> ``(H, W, 3)`` uint8 RGB, using the frame's colour matrix and range
    (how every video frame wbcap reads is converted; a GIF read as a picture too); scaled to
    ``size`` ``(W, H)`` where given and not the frame's own (bicubic, FFmpeg's default scaler:
    :attr:`wbcap.io.video_probe.VideoInfo.decode_size`). HDR and wide-gamut frames (an iPhone's
    HLG recordings) are brought to SDR BT.709 (:func:`wbcap.io.hdr.sdr_rgb24`, through
    ``reformatter``, one ``av.video.reformatter.VideoReformatter`` for a stream's frames, where
    given)."""
    kwargs: dict[str, Any] = {}
    if frame.color_range:  # 1 = limited ("tv"), 2 = full ("pc"); 0 = unspecified
        kwargs["src_color_range"] = int(frame.color_range)
    if size is not None and tuple(size) != (frame.width, frame.height):
        kwargs.update(width=int(size[0]), height=int(size[1]), interpolation="BICUBIC")
    return sdr_rgb24(frame, reformatter, **kwargs)


def frame_at_size(frame: Any, info: VideoInfo, reformatter: Any = None) -> np.ndarray:
    """A video frame as :func:`frame_rgb` converts it, ``(H, W, 3)`` uint8 RGB at ``info``'s
    :attr:`~wbcap.io.video_probe.VideoInfo.decode_size` (before rotation): a frame of the first
    frames' stored size scaled to it (square pixels); one of another size (a stream whose size
    changes part way) fitted into it with its proportions as shown kept, centred between black
    bars where the shapes differ (stretched to fill, as the ffmpeg tool scales it, people in 16:9
    frames after 4:3 ones were a third taller: a break-it trial). The first frames' pixel aspect
    is taken for every frame (PyAV gives a frame none of its own): a stream that also changes
    its pixel aspect part way shows its later frames in the first one's."""
    import numpy as np

    size = info.decode_size
    if size is None or (frame.width, frame.height) == info.stored_size:
        return frame_rgb(frame, size, reformatter)
    shown_w, shown_h = frame.width * info.sample_aspect, frame.height
    fit = min(size[0] / shown_w, size[1] / shown_h)
    w, h = min(size[0], max(1, round(shown_w * fit))), min(size[1], max(1, round(shown_h * fit)))
    if (w, h) == tuple(size):
        return frame_rgb(frame, size, reformatter)
    out = np.zeros((size[1], size[0], 3), np.uint8)
    y0, x0 = (size[1] - h) // 2, (size[0] - w) // 2
    out[y0:y0 + h, x0:x0 + w] = frame_rgb(frame, (w, h), reformatter)
    return out


def _video_path_of(spec: object, warn: bool = True) -> Path | None:
    """The video file ``spec`` names, or None when it names images (file, folder, pattern, list).
    A file named as a picture that holds a video (:func:`wbcap.io.images.file_video_container`)
    is the video, said in a warning with ``warn``."""
    from wbcap.io.images import (
        IMAGE_EXTENSIONS,
        file_video_container,
        is_animated_gif,
        missing_path_message,
        path_kind,
    )

    if not isinstance(spec, (str, os.PathLike)):
        return None
    p = Path(spec).expanduser()
    kind = path_kind(spec)
    if kind in ("folder", "pattern"):
        return None
    if kind == "file":
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.suffix.lower() == ".gif":  # (a GIF named alone: a video)
            return p
        container = file_video_container(p) if p.is_file() else None
        if container is None and is_animated_gif(p):  # (read as one picture, its warning naming this command)
            container = "an animated GIF"
        if container is not None:
            (log.warning if warn else log.debug)("%s: named as a picture but holds a video (%s); read as the video",
                                                 p, container)
            return p
        return None
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return None  # let iter_image_paths report the missing image
    raise InputError(missing_path_message(p))


def _as_given(name: str, value: object) -> str:
    """``name=value`` as Python passes a setting, ``--name value`` as a wbcap command does
    (:func:`wbcap.errors.setting`)."""
    text = setting(name)
    return f"{text} {value}" if text.startswith("-") else f"{text}={value}"


#: After ``max_frames`` stopped an iteration, at most this many frames more are decoded to find
#: where its last frame's stretch ends (:attr:`FrameSource.stretch_end`; past them it is taken
#: to end one nominal ``every`` stride on).
PEEK_FRAMES = 64

#: The latest ``start``/``end`` taken, seconds (about 116 days: beyond any video; a larger time
#: overflows the seek and the frame count).
MAX_SECONDS = 1e7
#: The largest ``every`` taken (more than the frames of a day of 10 fps video; beyond it only
#: the first frame is kept anyway).
MAX_EVERY = 1_000_000
#: The lowest ``image_fps`` taken (an image every 1000 s; times below 1e7 s for 10 000 images).
MIN_IMAGE_FPS = 0.001


def _check_selection(start: float, end: float | None, every: int, max_frames: int | None,
                     image_fps: float) -> None:
    """Refuse a selection :func:`open_frames` cannot use, before anything is decoded: ``start``
    (seconds) outside ``[0, MAX_SECONDS]``, ``end`` (seconds) not after it or above
    :data:`MAX_SECONDS`, ``every`` not a whole number in ``[1, MAX_EVERY]``, ``max_frames`` not a
    whole number >= 0, ``image_fps`` outside ``[MIN_IMAGE_FPS, MAX_FPS]``
    (:data:`wbcap.io.frame_times.MAX_FPS`).

    Raises:
        InputError: one line naming the setting as the caller spells it (``--every``, ``every=``).
    """
    omit = "leave it out" if setting("end").startswith("-") else "None"
    if not math.isfinite(start) or start < 0:
        raise InputError(f"{_as_given('start', start)}: must be a finite time in seconds >= 0; pass e.g. "
                         f"{_as_given('start', 0)}")
    if start > MAX_SECONDS:
        raise InputError(f"{_as_given('start', start)}: must be at most {MAX_SECONDS:g} seconds (about 116 days, past "
                         f"the end of any video); pass the time of a frame")
    if end is not None and (not math.isfinite(end) or end <= start):
        raise InputError(f"{_as_given('end', end)}: must be a finite time in seconds after {_as_given('start', start)}; "
                         f"pass a later {setting('end')}, or {omit} for the end of the video")
    if end is not None and end > MAX_SECONDS:
        raise InputError(f"{_as_given('end', end)}: must be at most {MAX_SECONDS:g} seconds; {omit} for the end of "
                         "the video")
    if int(every) != every or every < 1:
        raise InputError(f"{_as_given('every', every)}: must be a whole number >= 1; pass {_as_given('every', 1)} for all frames")
    if every > MAX_EVERY:
        raise InputError(f"{_as_given('every', every)}: must be at most {MAX_EVERY} (more than the frames of a day of "
                         f"10 fps video); pass {_as_given('max_frames', 1)} for the first frame only")
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 0):
        raise InputError(f"{_as_given('max_frames', max_frames)}: must be a whole number >= 0, or {omit} for no limit")
    if not math.isfinite(image_fps) or not MIN_IMAGE_FPS <= image_fps <= MAX_FPS:
        raise InputError(f"{_as_given('image_fps', image_fps)}: must be from {MIN_IMAGE_FPS:g} to {MAX_FPS:g} frames "
                         "per second; pass e.g. 30")


def _fmt_time(t: float | None) -> str:
    return "an unknown time" if t is None else f"{t:.3f} s"


def _range_text(start: float, end: float | None, what: str = "the video") -> str:
    """The selected range in a message, in the caller's spelling (``--start 5 s to the end of
    the video``; ``start=5 s to end=7 s``); ``what``: the input's name for "the end of ..."."""
    until = f"the end of {what}" if end is None else f"{_as_given('end', f'{end:g}')} s"
    return f"{_as_given('start', f'{start:g}')} s to {until}"


def _fmt_duration(duration: float | None, last_time: float | None) -> str:
    if last_time is not None:
        return f"frames up to {last_time:.3f} s"
    if duration is not None:
        return f"a length of {duration:.3f} s"
    return "no frame there"
