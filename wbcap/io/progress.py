"""Progress callbacks and per-stage wall-clock timings of a long run (``wbcap run``).

A :data:`Progress` callback gets ``(stage, done, total)``: a stage name (``"regress"``,
``"obj"``, ``"render"``), the frames done so far and the expected total (``None`` when unknown).
Timings are a ``{stage: seconds}`` dict that each stage adds its time to
(:attr:`wbcap.video_app.VideoResult.timings`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import numpy as np

Progress = Callable[[str, int, "int | None"], None]

T = TypeVar("T")


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


def expected_frames(info: Any, start: float, end: float | None, every: int, max_frames: int | None) -> int | None:
    """How many frames :func:`wbcap.io.video_reader.open_frames` will deliver for this selection
    of the source (``info``: its :class:`~wbcap.io.video_probe.VideoInfo`; ``start``/``end``
    seconds), as a progress total: from the declared frame count, ``max_frames`` (maybe
    ``None``) when the source declares none."""
    if info.frame_count is None or not info.fps:
        return max_frames
    first = int(np.ceil(start * info.fps - 1e-6))
    last = info.frame_count if end is None else min(info.frame_count, int(np.ceil(end * info.fps - 1e-6)))
    n = max(0, -(-(last - first) // max(1, every)))
    return min(n, max_frames) if max_frames else n
