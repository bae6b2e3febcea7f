"""Detection for ``wbcap run``'s pass 1: frames are decoded and people detected, in a background
thread when that overlaps the network's work on earlier frames without slowing it
(:func:`overlaps_network`), else in the calling thread between network calls.

:func:`open_detector` builds the detector for a video (binding a box file to its frames);
:class:`DetectionThread` runs it and hands ``(frame, detections)`` over, in frame order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from wbcap.detect.base import Detection
from wbcap.detect.boxes import box_outside_image
from wbcap.errors import setting
from wbcap.io.background import Prefetch
from wbcap.io.progress import timed
from wbcap.track.appearance import LOOK_SIZE, box_looks

log = logging.getLogger(__name__)


def open_detector(
    spec: str, source: str, info: Any, *, model: str | None, device: Any, score_threshold: float | None,
    min_height_frac: float | None, offline: bool, undistorter: Any = None,
) -> Any:
    """:func:`wbcap.detect.factory.make_detector` for the frames of ``source`` (``info``: its
    :class:`~wbcap.io.video_probe.VideoInfo`). A ``boxes:FILE`` detector is bound to the source's
    frames (an image sequence's keys may be file names). ``--max-people`` is not passed: it is
    applied (and counted) by :class:`DetectionThread`. ``undistorter``: the source's
    :class:`~wbcap.io.undistort.Undistorter` (a calibrated camera's), which moves a box file's
    boxes, given in the source's pixels, into the undistorted frames."""
    from wbcap.detect.factory import BoxesFileDetector, make_detector

    detector = make_detector(
        spec, model=model, device=device, score_threshold=score_threshold,
        min_height_frac=min_height_frac, offline=offline,
    )
    if isinstance(detector, BoxesFileDetector):
        names = None
        if info.is_image_sequence:
            from wbcap.io.images import iter_image_paths  # the same list, in the same order, as the frames

            names = [p.name for p in iter_image_paths(source)]
        detector.bind(names, info.frame_count)
        if undistorter is not None and undistorter.remaps:
            detector.move_boxes(undistorter.box)
    return detector


def overlaps_network(device: Any) -> bool:
    """Whether decoding and detection should run in a thread beside the network (True) or in
    turn with it (False).

    On a GPU the network leaves the CPU free, so they overlap. On the CPU they overlap only when
    the process may use more cores than torch's threads: torch's OpenMP threads wait for each
    other at every operator, so a detector taking one of their cores stalls all of them (on the
    2-core Xeon a ResNet-50 ran several times slower beside one busy thread), and doing the
    work in turn keeps the network at its full speed.
    """
    import torch

    from wbcap.model.device import available_cpus

    if torch.device(device).type != "cpu":
        return True
    return available_cpus() > torch.get_num_threads()


#: At most this many threads crop people beside the network (:func:`crop_workers`).
MAX_CROP_WORKERS = 4


def crop_workers(device: Any) -> int:
    """How many threads crop the people of ``wbcap run``'s frames ahead of the network
    (:func:`wbcap.model.batching.regress_in_batches`): 0 (cropping in turn with the network)
    where decoding does not overlap it either (:func:`overlaps_network`); else the cores left
    after the network (on the CPU, torch's threads; on a GPU, the thread driving it) and the
    decoding thread, at most :data:`MAX_CROP_WORKERS` (0 where none is left: on a 2-core
    machine a crop thread beside those two gained nothing, measured with the network replayed
    by ``benchmarks/video_host.py``: 85-95 frames/s either way).

    On a fast GPU the calling thread's cropping (OpenCV's warp: ~0.75 ms per person on a 2-core
    Zen 4) is among what ``wbcap run`` waits for (``benchmarks/video_host.py``)."""
    import torch

    from wbcap.model.device import available_cpus

    if not overlaps_network(device):
        return 0
    network = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    return max(0, min(MAX_CROP_WORKERS, available_cpus() - network - 1))


def _detections(frames: Iterable, detector: Any, skip_until: int, timings: dict[str, float],
                changes: dict[int, Any], looks: dict[int, Any] | None = None,
                ) -> Iterator[tuple[Any, Sequence[Detection] | None]]:
    """Decode + detect: ``(frame, detections)`` in frame order; ``changes[frame index]`` gets each
    frame's :class:`~wbcap.track.cuts.FrameChange` (how it differs from the frames before it)
    and ``looks[frame index]`` (when given) ``[([x, y, w, h, score], look), ...]`` per detection,
    in their order (:func:`wbcap.track.appearance.box_looks`, a list of whole numbers) before
    the frame is handed over.

    Frames with index ``<= skip_until`` (done by an earlier run) come with ``None`` detections
    and are not detected (their change is measured, for the next frame's). Adds seconds to
    ``timings["decode"]`` and ``timings["detect"]`` (the change measure and the looks included).
    """
    from wbcap.detect.factory import BoxesFileDetector
    from wbcap.track.cuts import ChangeMeter

    meter = ChangeMeter()
    for frame in timed(frames, timings, "decode"):
        t1 = time.perf_counter()
        change = meter(frame.index, frame.time, frame.image)
        if frame.index <= skip_until:
            timings["detect"] = timings.get("detect", 0.0) + (time.perf_counter() - t1)
            yield frame, None
            continue
        changes[frame.index] = change
        if isinstance(detector, BoxesFileDetector):
            dets = detector.for_frame(frame.index)
        else:
            dets = detector(frame.image)
        if looks is not None:
            rows = [[*map(float, d.box), float(d.score)] for d in dets]
            found = box_looks(frame.image, np.asarray([r[:4] for r in rows], np.float64).reshape(-1, 4))
            looks[frame.index] = [(row, look.tolist()) for row, look in zip(rows, found)]
        timings["detect"] = timings.get("detect", 0.0) + (time.perf_counter() - t1)
        yield frame, dets


class DetectionThread:
    """``with DetectionThread(...) as d: for frame, dets in d: ...``: the detections of every
    frame of ``frames`` (an iterable of :class:`~wbcap.io.video_reader.Frame`), in order.

    ``dets`` is a list of :class:`~wbcap.detect.base.Detection` (image pixels), at most
    ``max_people`` of them: those ``select`` keeps (``select(frame_index, boxes (N, 4) xywh,
    scores (N,), change=FrameChange, time=seconds, looks=(N, LOOK_SIZE) or None, size=(width, height))``
    -> kept indices, e.g. :class:`~wbcap.track.iou_tracker.PeopleLimit`), else
    the detector's first, i.e. highest-scoring, ones; or ``None`` for a
    frame with index ``<= skip_until`` (done by an earlier run; not detected). An exception of
    the thread is raised by the iteration. Leaving the block stops the thread. ``maxsize``
    frames at most wait in the queue. ``timings`` gets ``decode`` and ``detect`` seconds.
    ``background=False`` decodes and detects in the iterating thread instead, each frame when it
    is asked for (no thread, no queue; see :func:`overlaps_network`).

    Attributes: ``changes`` ``{frame index: FrameChange}`` of the frames handed over with
    detections (:class:`~wbcap.track.cuts.ChangeMeter`; the raw records' ``change``, ``back``,
    ``back_to``: take each out once written); for reports: ``current``
    the latest frame index handed over (``None`` before the first); ``seen`` every index handed
    over; ``over_limit``/``frames_over`` the boxes beyond ``max_people`` and the number of frames
    they were in. ``select`` is also given ``change=``, each frame's ``FrameChange``.
    """

    def __init__(self, frames: Iterable, detector: Any, *, maxsize: int, skip_until: int = -1,
                 max_people: int | None = None, select: Any = None, timings: dict[str, float] | None = None,
                 background: bool = True, regressable: Any = None, looks: bool = False) -> None:
        self.detector = detector
        #: ``regressable(box, width, height)`` -> whether the pipeline regresses a box (else it takes
        #: no ``select`` place): :meth:`wbcap.pipeline.Pipeline.crop_box`'s rule; default, inside the image.
        self.regressable = regressable or (lambda box, w, h: not box_outside_image(box, w, h))
        self.background = background
        timings = {} if timings is None else timings
        self.changes: dict[int, Any] = {}
        #: ``{frame index: [[x, y, w, h, score], ...]}``: every detection (inside the image) of the
        #: frames where ``select`` left some out, in the detector's order, for the raw records
        #: (:meth:`wbcap.io.raw_records.RawWriter.append`; a resumed run feeds them to ``select``).
        self.detected: dict[int, list[list[float]]] = {}
        #: With ``looks``: ``{frame index: [([x, y, w, h, score], look), ...]}`` of every detection,
        #: for the raw records (:meth:`~wbcap.io.raw_records.RawWriter.append`) and ``select``
        #: (given ``looks=``, ``(N, LOOK_SIZE)``); None without.
        self.looks: dict[int, list[tuple[list[float], list[int]]]] | None = {} if looks else None
        items = _detections(frames, detector, skip_until, timings, self.changes, self.looks)
        self._inline = None if background else items
        self.max_people = max_people
        self.skip_until = skip_until
        self.select = select
        self.current: int | None = None
        self.seen: set[int] = set()
        self.over_limit = self.frames_over = 0
        self._worker = None if not background else Prefetch(items, maxsize=maxsize, name="wbcap-detect")

    def __enter__(self) -> DetectionThread:
        if self._worker is not None:
            self._worker.__enter__()
        return self

    def _items(self) -> Iterator[tuple[Any, Sequence[Detection] | None]]:
        yield from self._inline if self._inline is not None else self._worker

    def __iter__(self) -> Iterator[tuple[Any, Sequence[Detection] | None]]:
        for frame, dets in self._items():
            self.current = frame.index
            self.seen.add(frame.index)
            if dets is not None and self.select is not None:
                # (boxes the pipeline skips, with its warning, take no place: wholly outside the image, or
                # a sliver at its edge)
                h, w = frame.image.shape[:2]
                outside = [d for d in dets if not self.regressable(d.box, w, h)]
                at = [k for k, d in enumerate(dets) if self.regressable(d.box, w, h)]
                inside = [dets[k] for k in at]
                boxes = np.array([d.box for d in inside], dtype=np.float64).reshape(-1, 4)
                found = None if self.looks is None else self.looks.get(frame.index)
                looks = (None if found is None
                         else np.array([found[k][1] for k in at], np.float64).reshape(len(at), LOOK_SIZE))
                kept = [inside[i] for i in self.select(frame.index, boxes, np.array([d.score for d in inside], dtype=np.float64),
                                                       change=self.changes.get(frame.index), time=frame.time, looks=looks,
                                                       size=(w, h))]
                if len(kept) < len(inside):
                    self.over_limit += len(inside) - len(kept)
                    self.frames_over += 1
                    self.detected[frame.index] = [[*map(float, d.box), float(d.score)] for d in inside]
                dets = kept + outside
            elif dets is not None and self.max_people is not None and len(dets) > self.max_people:
                self.over_limit += len(dets) - self.max_people
                self.frames_over += 1
                dets = list(dets)[: self.max_people]
            yield frame, dets

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._inline is not None:
            self._inline.close()
            return
        self._worker.__exit__(exc_type, exc, tb)

    def report(self) -> None:
        """Warn about boxes dropped by ``max_people`` and box-file frames never processed."""
        from wbcap.detect.factory import BoxesFileDetector

        if self.over_limit:
            limit = setting("max_people")
            which = ("people already tracked first, then the highest-scoring" if self.select is not None
                     else "the highest-scoring kept")
            # (a resume counts only the frames it detected: the earlier run's were said by it)
            since = "" if self.skip_until < 0 else f" after frame {self.skip_until} (the frames this resume detected)"
            log.warning("dropped %d detected box(es) beyond %s %d in %d frame(s)%s (%s); raise %s to keep them",
                        self.over_limit, limit, self.max_people, self.frames_over, since, which, limit)
        if isinstance(self.detector, BoxesFileDetector):
            outside = sorted(set(self.detector.by_frame) - self.seen)
            if outside:
                log.warning("%s: %d of %d box-file frames were not processed (outside %s, e.g. frame %d)",
                            self.detector.path, len(outside), len(self.detector.by_frame),
                            "/".join(setting(s) for s in ("start", "end", "every", "max_frames")), outside[0])
