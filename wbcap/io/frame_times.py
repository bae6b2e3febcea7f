"""Frame times: the rule that makes a video's frame times strictly increasing, and frame rates.

* :func:`_retime` pairs decoded frames (or demuxed packets) with presentation times by the rule
  :attr:`wbcap.io.video_reader.Frame.time` documents: each item's own timestamp goes into a
  pool and the oldest waiting item takes the smallest time in it once :data:`REORDER_WINDOW`
  later items have arrived (timestamps permuted against decode order come back in order); a
  missing, repeated or backward time becomes the previous time plus one nominal frame interval.
* :func:`retime` applies that rule to a list of times already recorded (``wbcap run --resume``).
* :func:`_count_packets_before` counts, demuxing only, the frames before a start time (the
  frame indices of a reader that seeks stay exact; leading packets that never decode are left
  out).
* :func:`_as_fraction` turns a frame rate into an exact fraction (``29.97`` -> ``30000/1001``).

Importing this module imports neither PyAV nor numpy.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Any

from wbcap.errors import InputError

log = logging.getLogger(__name__)

#: The highest frame rate (frames, or rows of a regular clock, per second) wbcap takes: an image
#: sequence's ``image_fps``, a run's clock (``meta.json``'s ``fps``). The fastest cameras people
#: film with (960 fps slow motion) stay below it, and a clock is laid over the whole time a track
#: spans, so a damaged rate far above it would make ``wbcap export`` fill rows beyond any memory.
MAX_FPS = 1000.0

__all__ = ["retime"]

_EPS = 1e-6  # seconds: tolerance when comparing frame times with start/end

#: Frames of look-ahead used to put permuted timestamps back in order when reading (a timestamp
#: can move at most this many frames; packed B-frames and swapped pairs move by one).
REORDER_WINDOW: int = 4


class _RetimeStats:
    """What :func:`_retime` did: frames timed, how many were retimed, the first one's time."""

    def __init__(self) -> None:
        self.frames = 0
        self.count = 0  # frames whose time is not their own timestamp
        self.repaired = 0  # of those, frames whose time was missing, repeated or backward
        self.first_time = 0.0


def _retime(
    items: Iterator[Any],
    own_time: Any,
    step: Fraction,
    stats: _RetimeStats,
    count_reorder: bool = True,
    window: int = REORDER_WINDOW,
) -> Iterator[tuple[Any, Fraction]]:
    """Pair frames with strictly increasing presentation times (the rule of :attr:`Frame.time`).

    Each item's own time goes into a pool; the oldest waiting item takes the smallest time of
    the pool once ``window`` later items have arrived (or the stream ended). A missing time, or
    one not after the previous item's, becomes the previous time plus ``step`` (0 for a first
    item without a time).

    Args:
        items: decoded ``av.VideoFrame``s in delivery order (or packets, to predict their times).
        own_time: ``item -> Fraction | None``, the item's own time in seconds from the origin.
        step: nominal frame interval, seconds (``1 / fps``): what a repaired time adds.
        stats: updated with the number of items timed and retimed.
        count_reorder: count an item whose time came from another item as retimed (False for
            AVI, where frames normally take their chunk slots out of order).
        window: items of look-ahead.

    Yields:
        ``(item, seconds)`` with seconds strictly increasing, as exact fractions.
    """
    prev: Fraction | None = None

    def settle(own: Fraction | None, pooled: Fraction | None) -> Fraction:
        nonlocal prev
        t = pooled
        if t is None or (prev is not None and t <= prev):
            t = Fraction(0) if prev is None else prev + step
            stats.repaired += 1
        if t != (own if count_reorder else pooled):
            if stats.count == 0:
                stats.first_time = float(t)
            stats.count += 1
        stats.frames += 1
        prev = t
        return t

    waiting: deque[tuple[Any, Fraction | None]] = deque()
    pool: list[Fraction] = []  # heap of the waiting items' own times
    for item in items:
        own = own_time(item)
        waiting.append((item, own))
        if own is not None:
            heapq.heappush(pool, own)
        if len(waiting) > window:
            oldest, oldest_own = waiting.popleft()
            yield oldest, settle(oldest_own, None if oldest_own is None else heapq.heappop(pool))
    while waiting:
        oldest, oldest_own = waiting.popleft()
        yield oldest, settle(oldest_own, None if oldest_own is None else heapq.heappop(pool))


def retime(times: Sequence[float | None], fps: float) -> tuple[list[float], int]:
    """Apply :attr:`Frame.time`'s rule to a list of frame times already recorded.

    For times read from an earlier run's records (``wbcap run --resume`` on a raw file written
    before decoding repaired times): the same window sort and repair as :class:`FrameSource`.

    Args:
        times: seconds per frame in delivery order (None where unknown).
        fps: nominal frame rate; a repaired time is the previous one plus ``1 / fps``.

    Returns:
        ``(times, retimed)``: strictly increasing seconds, and how many differ from the input.
    """
    stats = _RetimeStats()
    pairs = _retime(iter(range(len(times))), lambda i: None if times[i] is None else Fraction(times[i]),
                    Fraction(1) / _as_fraction(fps), stats)
    return [float(t) for _, t in pairs], stats.count


def _own_time(tb: Fraction, origin: Fraction, by_chunk: bool) -> Any:
    """``item -> seconds from origin | None`` for frames or packets: the ``pts`` (AVI: the
    ``dts``, the chunk's slot), else the other timestamp, else None."""

    def own(item: Any) -> Fraction | None:
        first, second = (item.dts, item.pts) if by_chunk else (item.pts, item.dts)
        ts = first if first is not None else second
        return None if ts is None else ts * tb - origin

    return own


def _count_packets_before(container: Any, stream: Any, start: Fraction, origin: Fraction,
                          step: Fraction, by_chunk: bool = False,
                          skip: int = 0) -> tuple[int, bool]:
    """Number of video frames whose :attr:`Frame.time` is < ``start`` (seconds), demuxing only.

    Applies the rule of :attr:`Frame.time` to the packets' timestamps, with
    ``4 * REORDER_WINDOW`` packets of look-ahead to turn decode order into display order, and
    repeated or missing times repaired as when decoding; stops at the first time >= ``start``.
    The first ``skip`` packets are no frames: a file cut in the middle of a GOP starts with
    packets that refer to pictures it lacks and never decode, and frame indices count decoded
    frames (the reader finds how many by decoding the file's start). Leaves the container
    wherever it stopped (callers seek or reopen afterwards).

    Returns:
        ``(count, broken)``: ``broken`` when some time up to there had to be repaired (missing,
        repeated or backward beyond reordering), so that a seek by timestamp cannot be trusted.
    """
    import av

    limit = start - Fraction(_EPS)
    own = _own_time(Fraction(stream.time_base), origin, by_chunk)

    def packets() -> Iterator[Any]:
        left_out = 0
        try:
            for packet in container.demux(stream):
                if not packet.size or packet.is_discard:
                    continue
                if left_out < skip:
                    left_out += 1
                    continue
                yield packet
        except av.FFmpegError as exc:
            log.debug("%s: demux stopped while counting frames: %s", container.name, exc)

    count = 0
    stats = _RetimeStats()
    for _, t in _retime(packets(), own, step, stats, window=4 * REORDER_WINDOW):
        if t >= limit:
            break
        count += 1
    return count, stats.repaired > 0


# --------------------------------------------------------------------------------------------
# Frame rates


def _as_fraction(fps: Fraction | float | int) -> Fraction:
    """A frame rate as an exact fraction; 29.97-style floats become ``30000/1001``, a rate below
    1/2002 fps one over its period so made (``1e-05`` -> ``1/100000``), never 0.

    Raises:
        InputError: ``fps`` not a finite number > 0.
    """
    value = float(fps)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"fps={fps}: must be a frame rate > 0; pass e.g. 30")
    if isinstance(fps, Fraction):
        return fps
    ntsc = round(value * 1.001)
    if ntsc in (24, 30, 48, 60, 120, 240) and abs(value - ntsc / 1.001) < 5e-4:
        return Fraction(ntsc * 1000, 1001)
    rate = Fraction(value).limit_denominator(1001)
    if rate == 0:  # (below 1/2002 fps, e.g. --every 1000000 of a 10 fps video: a whole period, 100000 s, instead)
        period = 1.0 / value
        rate = 1 / Fraction(period).limit_denominator(1001) if math.isfinite(period) else Fraction(value)
    return rate
