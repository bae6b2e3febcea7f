"""Person crops of consecutive video frames batched through the network (``wbcap run``, pass 1).

A frame rarely holds enough people to fill a network call, so crops of several frames go
through it together: :func:`regress_in_batches` crops each frame as it comes and runs the
network on exactly ``batch_size`` crops whenever that many wait (a frame's people may span two
calls), or on all that wait once ``4 * batch_size`` frames are pending (frames with few or no
people) and at the end; after each call it hands back every frame whose people are all done, in
frame order. Calls of exactly ``batch_size`` crops matter on CPU: with three people a frame, the
earlier "run once about ``batch_size`` wait" made calls of 9 = 8 + 1 crops, and a one-crop call
costs about twice a crop of a full one (and packs weights for its size).

Where cores are spare (a GPU run on more than 2 cores: :func:`wbcap.detect.thread.crop_workers`),
the frames' people are cropped in a few threads ahead of the network (OpenCV's warp releases the
interpreter lock): cropping is among the CPU's work a fast device waits for (0.75 ms a person on
the 2-core Zen 4, ``benchmarks/video_host.py``; not yet measured on such a machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from wbcap.io.progress import add_time

#: One frame's result: (frame index, time in seconds, [W, H] image pixels, people), people being
#: :class:`wbcap.pipeline.PersonEstimate` objects (parameters and cameras, no mesh: what the raw
#: records keep) in detection order.
FrameResult = tuple[int, float, list[int], list[Any]]


class _Pending:
    """A frame waiting for its people: ``jobs`` its crops, ``people`` the results so far."""

    __slots__ = ("index", "jobs", "people", "size", "time")

    def __init__(self, index: int, time_s: float, size: list[int], jobs: list) -> None:
        self.index, self.time, self.size, self.jobs = index, time_s, size, jobs
        self.people: list[Any] = []

    def result(self) -> FrameResult:
        return (self.index, self.time, self.size, self.people)


def regress_in_batches(
    frames: Iterable[tuple[Any, Sequence[Any]]], pipeline: Any, timings: dict[str, float] | None = None,
    crop_workers: int = 0,
) -> Iterator[list[FrameResult]]:
    """Yield the results of ``frames`` batch by batch, in frame order.

    Args:
        frames: ``(frame, detections)`` pairs: a :class:`~wbcap.io.video_reader.Frame` (``image``
            ``(H, W, 3)`` uint8 RGB) and its :class:`~wbcap.detect.base.Detection` list.
        pipeline: a :class:`wbcap.pipeline.Pipeline` (its ``crop``, ``regress`` and
            ``batch_size``); boxes outside the image are skipped, also every box of a frame
            (``strict=False``: no error).
        timings: gets ``crop`` (with ``crop_workers``, the threads' busy seconds) and ``regress``
            seconds.
        crop_workers: 0 crops each frame in the calling thread when the loop reaches it; ``n``
            crops in ``n`` threads, up to ``max(2 n, batch_size)`` frames ahead (the same crops).

    Yields:
        Lists of :data:`FrameResult` (one per frame, people or not) of the frames the last
        network calls completed, oldest first; every frame once, in frame order.
    """
    timings = {} if timings is None else timings
    size = max(1, int(pipeline.batch_size))
    pending: list[_Pending] = []  # frames not yet handed back, oldest first
    queue: list[tuple[_Pending, Any]] = []  # crops not yet through the network, with their frame

    def run(n: int) -> list[FrameResult]:
        batch = queue[:n]
        del queue[:n]
        t0 = time.perf_counter()
        people = pipeline.regress([job for _, job in batch], mesh=False) if batch else []
        add_time(timings, "regress", t0)
        for (frame, _), person in zip(batch, people):
            frame.people.append(person)
        done = 0
        while done < len(pending) and len(pending[done].people) == len(pending[done].jobs):
            done += 1
        finished = [f.result() for f in pending[:done]]
        del pending[:done]
        return finished

    # (a batch's worth of frames ahead, so that the threads crop the next batch while the network
    # runs this one: each holds a whole decoded frame, and 4 x batch_size of them was 3 GB of 4K
    # frames at the GPU's batch of 32; two a thread starved the network, a review)
    for frame, jobs in _cropped(frames, pipeline, timings, crop_workers, ahead=max(2 * crop_workers, size)):
        h, w = frame.image.shape[:2]
        entry = _Pending(frame.index, float(frame.time), [w, h], list(jobs))
        pending.append(entry)
        queue.extend((entry, job) for job in entry.jobs)
        finished: list[FrameResult] = []
        while len(queue) >= size:
            finished += run(size)
        if len(pending) >= 4 * size:
            finished += run(len(queue))
        if finished:
            yield finished
    if pending:
        yield run(len(queue))


def _crop(pipeline: Any, item: tuple[Any, Sequence[Any]]) -> tuple[list, float]:
    """One frame's crops (boxes outside the image skipped) and the seconds they took."""
    frame, dets = item
    t0 = time.perf_counter()
    jobs = pipeline.crop(frame.image, dets, source=f"frame {frame.index}", strict=False)
    return jobs, time.perf_counter() - t0


def _cropped(frames: Iterable[tuple[Any, Sequence[Any]]], pipeline: Any, timings: dict[str, float], workers: int,
             ahead: int) -> Iterator[tuple[Any, list]]:
    """``(frame, crop jobs)`` for each ``(frame, detections)`` of ``frames``, in order: cropped
    here, or (``workers`` > 0) in that many threads, at most ``ahead`` frames at a time."""
    if workers <= 0:
        for item in frames:
            jobs, seconds = _crop(pipeline, item)
            timings["crop"] = timings.get("crop", 0.0) + seconds
            yield item[0], jobs
        return
    from functools import partial

    from wbcap.io.background import OrderedMap

    with OrderedMap(partial(_crop, pipeline), frames, workers=workers, ahead=ahead, name="wbcap-crop") as cropped:
        for (frame, _), (jobs, seconds) in cropped:
            timings["crop"] = timings.get("crop", 0.0) + seconds
            yield frame, jobs
