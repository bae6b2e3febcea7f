"""Person crops of consecutive video frames batched through the network (``wbcap run``, pass 1).

A frame rarely holds enough people to fill a network call, so crops of several frames go
through it together: :func:`regress_in_batches` crops each frame as it comes, and once about
``batch_size`` crops wait (or ``4 * batch_size`` frames, for frames with few or no people) it
runs the network once and hands every waiting frame's people back, in frame order.
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


def _regress(pending: list[tuple[int, float, list[int], list]], pipeline: Any,
             timings: dict[str, float]) -> list[FrameResult]:
    """One network call for every crop of ``pending`` frames; the people split back per frame."""
    all_jobs = [j for _, _, _, jobs in pending for j in jobs]
    t0 = time.perf_counter()
    people = pipeline.regress(all_jobs, mesh=False) if all_jobs else []
    add_time(timings, "regress", t0)
    results, k = [], 0
    for index, ftime, size, jobs in pending:
        results.append((index, ftime, size, people[k : k + len(jobs)]))
        k += len(jobs)
    return results


def regress_in_batches(
    frames: Iterable[tuple[Any, Sequence[Any]]], pipeline: Any, timings: dict[str, float] | None = None
) -> Iterator[list[FrameResult]]:
    """Yield the results of ``frames`` batch by batch, in frame order.

    Args:
        frames: ``(frame, detections)`` pairs: a :class:`~wbcap.io.video_reader.Frame` (``image``
            ``(H, W, 3)`` uint8 RGB) and its :class:`~wbcap.detect.base.Detection` list.
        pipeline: a :class:`wbcap.pipeline.Pipeline` (its ``crop``, ``regress`` and
            ``batch_size``); boxes outside the image are skipped, also every box of a frame
            (``strict=False``: no error).
        timings: gets ``crop`` and ``regress`` seconds.

    Yields:
        After each network call, a list of :data:`FrameResult` (one per frame, people or not).
    """
    timings = {} if timings is None else timings
    pending: list[tuple[int, float, list[int], list]] = []  # (frame index, time, size, crop jobs)
    n_pending_crops = 0
    for frame, dets in frames:
        h, w = frame.image.shape[:2]
        t0 = time.perf_counter()
        jobs = pipeline.crop(frame.image, dets, source=f"frame {frame.index}", strict=False)
        add_time(timings, "crop", t0)
        pending.append((frame.index, float(frame.time), [w, h], jobs))
        n_pending_crops += len(jobs)
        if n_pending_crops >= pipeline.batch_size or len(pending) >= 4 * pipeline.batch_size:
            yield _regress(pending, pipeline, timings)
            pending, n_pending_crops = [], 0
    if pending:
        yield _regress(pending, pipeline, timings)
