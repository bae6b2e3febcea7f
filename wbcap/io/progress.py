"""Progress callbacks and per-stage wall-clock timings of a long run (``wbcap run``).

A :data:`Progress` callback gets ``(stage, done, total)``: a stage name (``"regress"``,
``"obj"``, ``"render"``), the items done so far and the expected total (``None`` when unknown):
frames, but for ``"obj"`` meshes, one per person-frame (:func:`stage_unit`).
Timings are a ``{stage: seconds}`` dict that each stage adds its time to
(:attr:`wbcap.video_app.VideoResult.timings`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np

Progress = Callable[[str, int, "int | None"], None]

#: Seconds between two progress lines of a stage where no bar is drawn (:class:`ProgressLines`).
PROGRESS_LOG_SECONDS = 60.0

T = TypeVar("T")

#: What a stage counts where it is not frames: ``obj`` writes one mesh per person-frame (its
#: progress said "8/8 frames" after a run of one frame with 8 people, a researcher's trial).
_STAGE_UNITS = {"obj": "meshes"}


def stage_unit(stage: str) -> str:
    """What a :data:`Progress` stage counts, plural: ``"frames"``, ``"meshes"`` for ``obj``."""
    return _STAGE_UNITS.get(stage, "frames")


def add_time(timings: dict[str, float], key: str, since: float) -> float:
    """Add the seconds from ``since`` (a :func:`time.perf_counter` value) to now to
    ``timings[key]``; return now."""
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (now - since)
    return now


def timed(iterable: Iterable[T], timings: dict[str, float], key: str) -> Iterator[T]:
    """Yield from ``iterable`` (which must not yield ``None``), adding the time spent producing
    each item to ``timings[key]``."""
    it = iter(iterable)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - t0)
        if item is None:
            return
        yield item


def expected_frames(info: Any, start: float, end: float | None, every: int, max_frames: int | None,
                    estimate: bool = False) -> int | None:
    """How many frames :func:`wbcap.io.video_reader.open_frames` will deliver for this selection
    of the source (``info``: its :class:`~wbcap.io.video_probe.VideoInfo`; ``start``/``end``
    seconds), as a progress total: from the declared frame count, ``max_frames`` (maybe
    ``None``) when the source declares none. ``estimate``: where it declares none (Matroska and
    WebM never do), count ``ceil(length * fps)`` frames instead (the length: the video stream's end,
    ``video_end``, where known, else the container's duration, which covers its audio too), for a decision that an estimate serves (a short
    run: a 6-frame .mkv was measured as a long one, 32 s, a hostile-media trial), not a total a
    progress bar must reach."""
    count = info.frame_count
    # (the video stream's own end where the file says it: the container's duration covers its audio too, and a
    # 6-frame .mkv with a minute of audio was a long run: a break-it trial)
    lengths = [t for t in (info.video_end, info.duration) if t] if count is None and estimate else []
    if lengths and info.fps:
        count = int(np.ceil(min(lengths) * info.fps - 1e-6))
    if count is None or not info.fps:
        return max_frames
    first = int(np.ceil(start * info.fps - 1e-6))
    last = count if end is None else min(count, int(np.ceil(end * info.fps - 1e-6)))
    n = max(0, -(-(last - first) // max(1, every)))
    return min(n, max_frames) if max_frames else n


class ProgressLines:
    """A :data:`Progress` callback for where no bar can be drawn (stderr a log file or a pipe: an
    overnight run's log had no word between its start and its summary, a user trial): one INFO
    line per stage at most every ``every`` seconds (:data:`PROGRESS_LOG_SECONDS`), and one when a
    stage with a known total is done, e.g. ``regress: 1200/6360 frames (19%), 4.10 frames/s,
    about 21 min left``. The rate is over the stage so far, from its first report.

    Args:
        log: the logger the lines go to.
        every: seconds between two lines of a stage (None: :data:`PROGRESS_LOG_SECONDS`).
        clock: seconds (monotonic); tests give their own.
    """

    def __init__(self, log: logging.Logger, every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.log, self.clock = log, clock
        self.every = PROGRESS_LOG_SECONDS if every is None else float(every)
        self._first: dict[str, tuple[float, int]] = {}
        self._said: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = self.clock()
        first = stage not in self._first
        if first:
            self._first[stage] = (now, done)
            self._said[stage] = now
        finished = total is not None and done >= total
        if not finished and (first or now - self._said[stage] < self.every):
            return
        self._said[stage] = now
        t0, d0 = self._first[stage]
        rate = (done - d0) / (now - t0) if now > t0 else None  # (None: done at its first report)
        of = "" if total is None else f"/{total}"
        share = f" ({100 * done // total}%)" if total else ""
        unit = stage_unit(stage)
        speed = "" if rate is None else f", {rate:.2f} {unit}/s"
        left = ""
        if total is not None and rate and not finished:
            left = f", about {_duration((total - done) / rate)} left"
        self.log.info("%s: %d%s %s%s%s%s", stage, done, of, unit, share, speed, left)


def _duration(seconds: float) -> str:
    """``"40 s"``, ``"21 min"``, ``"3 h 05 min"``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"
