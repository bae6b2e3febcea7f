"""Work beside the calling thread, in order, with bounded queues: :class:`Prefetch` runs an
iterator ahead of its consumer, :class:`BackgroundCalls` runs calls after their producer,
:class:`OrderedMap` runs a function on the items of an iterator in several threads.

Each runs its threads in a copy of the caller's :mod:`contextvars` context (how messages name
settings: :func:`wbcap.errors.setting`), forward the thread's exception to the caller, and stop
the thread when the ``with`` block is left, whichever way. They pay off where the work in the
thread releases the interpreter lock (decoding and encoding in FFmpeg, torch, large NumPy
operations, OpenGL's drawing): ``wbcap run``'s pass 1 decodes and detects ahead of the network
(:mod:`wbcap.detect.thread`) and, where cores are spare, crops the people of several frames at once
(:mod:`wbcap.model.batching`), and its ``render.mp4`` decodes and poses the next frames and
encodes the last ones while the current one is drawn (:mod:`wbcap.export.video_render`).
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_END = object()
_POLL_S = 0.05  # how often a blocked thread looks whether it was stopped


class _Failed:
    """An exception raised in the thread, handed over in the queue."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _join(thread: threading.Thread, stop: threading.Event) -> None:
    """Wait for ``thread``; when the wait itself is interrupted (a second Ctrl-C), tell the thread
    to stop and wait for it still, so that nothing it uses (a file being encoded) is closed under
    it, then let the interruption go on."""
    try:
        thread.join()
    except BaseException:
        stop.set()
        thread.join()
        raise


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """``q.put(item)`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            pass
    return False


class Prefetch(Generic[T]):
    """``with Prefetch(items, maxsize=2) as it: for x in it: ...``: ``items`` iterated in a
    thread, at most ``maxsize`` items ahead of the loop, yielded in order.

    An exception raised while iterating ``items`` is raised by the loop, after the items before
    it. Leaving the block stops the thread (an item it is computing is finished, then dropped)
    and closes ``items`` when it has a ``close`` method, in the thread (a generator's ``finally``
    blocks run there). ``name`` names the thread.

    Raises:
        ValueError: ``maxsize`` below 1.
        RuntimeError: iterating outside the ``with`` block.
    """

    def __init__(self, items: Iterable[T], *, maxsize: int, name: str = "wbcap-prefetch") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), name=name,
                                        daemon=True)

    def _run(self) -> None:
        try:
            for item in self._items:
                if not _put(self._queue, item, self._stop):
                    break
            else:
                _put(self._queue, _END, self._stop)
        except BaseException as exc:  # raised again by the consumer's loop
            _put(self._queue, _Failed(exc), self._stop)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # the items were all handed over or dropped already
                    log.debug("closing the prefetched items failed: %s: %s", type(exc).__name__, exc)

    def __enter__(self) -> Prefetch[T]:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[T]:
        if self._thread.ident is None:
            raise RuntimeError("iterate a Prefetch inside its 'with' block")
        while True:
            alive = self._thread.is_alive()  # before the wait: an item put just before it ended is still seen
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if alive:
                    continue
                return  # ended (or stopped) and everything handed over already
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        _join(self._thread, self._stop)


class BackgroundCalls:
    """``with BackgroundCalls(fn, maxsize=2) as calls: calls.put(*args)``: ``fn(*args)`` in one
    thread, in the order put, at most ``maxsize`` calls waiting.

    The first exception ``fn`` raises is raised by the next :meth:`put`, or when the block is
    left normally; no later call runs. Leaving the block normally waits for every call put;
    leaving it by an exception drops the calls not yet started and waits only for the running
    one (so a caller's file is not written after it was told to stop), and that exception goes
    on (one ``fn`` raised meanwhile is logged at debug level). ``name`` names the thread.

    Raises:
        ValueError: ``maxsize`` below 1.
    """

    def __init__(self, fn: Callable[..., Any], *, maxsize: int, name: str = "wbcap-background") -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,), name=name,
                                        daemon=True)

    def _run(self) -> None:
        while True:
            try:
                args = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if args is _END or self._stop.is_set():
                return
            try:
                self._fn(*args)
            except BaseException as exc:  # raised again in the caller's thread
                self._failed = exc
                self._stop.set()
                return

    def __enter__(self) -> BackgroundCalls:
        self._thread.start()
        return self

    def put(self, *args: Any) -> None:
        """Queue ``fn(*args)`` (waits while ``maxsize`` calls wait).

        Raises:
            BaseException: what an earlier call raised.
        """
        self._raise_failure()
        if not _put(self._queue, args, self._stop):
            self._raise_failure()
            raise RuntimeError("the background thread has stopped")

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            _put(self._queue, _END, self._stop)
        else:
            self._stop.set()
        _join(self._thread, self._stop)
        if exc_type is None:
            self._raise_failure()
        elif self._failed is not None:
            log.debug("a background call failed too: %s: %s", type(self._failed).__name__, self._failed)


class OrderedMap(Generic[T, R]):
    """``with OrderedMap(fn, items, workers=2, ahead=8) as it: for item, result in it: ...``:
    ``fn(item)`` for each item of ``items``, computed in ``workers`` threads, at most ``ahead``
    items at a time, yielded as ``(item, result)`` pairs in the items' order.

    ``items`` is iterated by the loop's thread (taking an item should be cheap: e.g. a
    :class:`Prefetch`'s). An exception ``fn`` raises for an item is raised by the loop at that
    item's turn, after the results before it; one raised while taking an item, after the results
    of the items taken before it, except a ``BaseException`` that is no ``Exception``
    (``KeyboardInterrupt``, a stop signal's), raised at once. Leaving the block cancels the calls
    not yet started and waits for the running ones (so nothing an item holds is used after the
    caller has gone on).

    Raises:
        ValueError: ``workers`` or ``ahead`` below 1.
        RuntimeError: iterating outside the ``with`` block.
    """

    def __init__(self, fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int,
                 name: str = "wbcap-map") -> None:
        if workers < 1 or ahead < 1:
            raise ValueError(f"workers and ahead must be >= 1, got {workers} and {ahead}")
        self._fn, self._items, self._workers, self._ahead, self._name = fn, items, workers, ahead, name
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> OrderedMap[T, R]:
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix=self._name)
        return self

    def __iter__(self) -> Iterator[tuple[T, R]]:
        if self._pool is None:
            raise RuntimeError("iterate an OrderedMap inside its 'with' block")
        pending: deque[tuple[T, Future]] = deque()
        items = iter(self._items)
        failed: BaseException | None = None
        more = True
        while True:
            while more and len(pending) < self._ahead:
                try:
                    item = next(items)
                except StopIteration:
                    more = False
                except Exception as exc:  # raised after the results of the items before it
                    failed, more = exc, False
                # (a KeyboardInterrupt or a stop signal goes on at once: it waited for every item
                # taken before it, the network run on each, a review)
                else:
                    pending.append((item, self._pool.submit(contextvars.copy_context().run, self._fn, item)))
            if not pending:
                if failed is not None:
                    raise failed
                return
            item, future = pending.popleft()
            yield item, future.result()

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
