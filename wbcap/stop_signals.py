"""The signals that ask wbcap to stop, handled as Ctrl-C.

``timeout``, ``docker stop``, systemd and batch schedulers stop a process with SIGTERM, a closed
terminal with SIGHUP. Python's default for both is to die at once, without the cleanup a Ctrl-C
(``KeyboardInterrupt``) gets: ``wbcap run`` left an empty run that a plain rerun refused and a
half-written ``.render.tmp-*.mp4``. :func:`stop_as_ctrl_c` turns them into :class:`Stopped`, a
``KeyboardInterrupt``, so one path (``except KeyboardInterrupt``, ``finally``) cleans up after all
three; :func:`exit_status` is the shell's status for the signal (130 SIGINT, 143 SIGTERM, 129
SIGHUP). :func:`held_stop_signals` holds them over a few steps that must not be cut in half.

Python runs signal handlers in the main thread only; off it these blocks change nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: The signals :func:`stop_as_ctrl_c` takes as Ctrl-C (SIGHUP where the platform has it).
STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(KeyboardInterrupt):
    """A stop signal (:data:`STOP_SIGNALS`) raised as Ctrl-C; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def exit_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a process ended by ``exc``: 128 + the signal's number, as the shell
    reports a process the signal killed (SIGINT, a plain ``KeyboardInterrupt``: 130)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def stop_message(exc: KeyboardInterrupt) -> str:
    """What the CLI says when ``exc`` ended a command: ``interrupted``, or ``stopped by SIGTERM``."""
    return f"stopped by {signal.Signals(exc.signum).name}" if isinstance(exc, Stopped) else "interrupted"


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_as_ctrl_c() -> Iterator[None]:
    """Inside the block SIGTERM and SIGHUP raise :class:`Stopped` (a ``KeyboardInterrupt``) as
    Ctrl-C raises ``KeyboardInterrupt``; the handlers before it are put back when it ends. A
    signal set to be ignored stays ignored (``nohup wbcap ...`` goes on when its terminal closes)."""
    before = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS
              if signal.getsignal(sig) is not signal.SIG_IGN} if _main_thread() else {}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def held_stop_signals() -> Iterator[None]:
    """Hold SIGINT and the :data:`STOP_SIGNALS` that arrive in the block until it ends, then act
    on them as the handlers before it would (raise ``KeyboardInterrupt``/:class:`Stopped`, or
    end the process): for steps that must not be cut in half (moving a run's files aside,
    an import that catches ``BaseException``). Only Python-level handlers are held: a signal
    whose handler is ignore stays ignored."""
    if not _main_thread():
        yield
        return
    held: list[int] = []
    sigs = (signal.SIGINT, *STOP_SIGNALS)
    before = {}
    for sig in sigs:
        previous = signal.getsignal(sig)
        if previous is not signal.SIG_IGN and previous is not None:
            before[sig] = signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if held:  # (also over an error the block raised: the user asked to stop)
            sig = held[0]
            handler = before[sig]
            if callable(handler):
                handler(sig, None)
            else:  # SIG_DFL: what the signal would have done
                signal.raise_signal(sig)
