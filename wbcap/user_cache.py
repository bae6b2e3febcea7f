"""JSON files wbcap keeps in its user cache folder (:func:`wbcap.paths.user_cache_dir`): the CPU
inference strategy (:mod:`wbcap.model.strategy`), the int8 calibration (:mod:`wbcap.model.int8`)
and the probed OpenGL platform (:mod:`wbcap.export._gl`).

A cache is only ever a shortcut: a file that is missing, unreadable or not JSON (including JSON
nested too deep for Python's parser, or numbers too large for it) reads as nothing, and a write
that fails only costs the work again next time. :func:`read_json` and :func:`write_json` say what
went wrong as one line; each caller words its own message (what it will do instead). A cache that
several processes add entries to is re-read and written under :func:`updating`.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wbcap.errors import InputError, first_line

__all__ = ["format_of", "read_json", "updating", "write_json"]

#: The longest :func:`updating` waits for another process's update of the same cache (each takes
#: milliseconds; one stopped while holding it, e.g. by Ctrl-Z, is then not waited for further).
LOCK_WAIT_S = 10.0


#: A cache file larger than this is not read (wbcap's are a few kB to a few hundred kB; reading
#: an 800 MB one whole held 1.9 GB).
MAX_BYTES = 64 * 1024 * 1024


def read_json(path: Path) -> tuple[Any, str | None]:
    """``(document, problem)``: the parsed file and None; ``(None, None)`` when it does not exist;
    ``(None, reason)`` (one line) when it cannot be read or parsed, is no regular file (a FIFO
    there would block the read forever) or is larger than :data:`MAX_BYTES`."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size > MAX_BYTES:
            return None, f"{st.st_size} bytes, more than a cache of wbcap's holds"
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, first_line(e) or type(e).__name__


def format_of(document: Any) -> int | None:
    """The ``"format"`` number of a cache ``document`` (a JSON object), None where it has none.
    A format above the caller's own is a newer wbcap's file: its entries are that wbcap's to
    keep, so the file is left as it is."""
    fmt = document.get("format") if isinstance(document, dict) else None
    return fmt if isinstance(fmt, int) and not isinstance(fmt, bool) else None


def write_json(path: Path, document: Any, indent: int | None = None) -> str | None:
    """Write ``document`` to ``path`` atomically (:func:`wbcap.atomic.atomic_write_text`), making
    its folder; None when written, else the reason (one line) it could not be."""
    from wbcap.atomic import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(document, indent=indent) + "\n")
    except (OSError, InputError) as e:  # (InputError: a folder that refuses new files, a link that loops...)
        return first_line(e) or type(e).__name__
    return None


@contextlib.contextmanager
def updating(path: Path, wait_s: float | None = None) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path``'s sidecar lock file (``<name>.lock``, beside it)
    while the block re-reads and rewrites ``path``, waiting up to ``wait_s`` seconds (default
    :data:`LOCK_WAIT_S`) for another process's update: without it two processes measuring at once
    each wrote their own entries over the file the other had just written, and one's were lost (a
    review; measured again next time, 10-30 s). Where no lock can be had (no ``flock``, a folder that refuses the file
    or the lock) the block runs unlocked, as a cache is only a shortcut; so it does when the wait
    is over, and the block is given True (the caller says so, and need not wait again: a holder
    stopped by Ctrl-Z made every update wait). A lock file another user made (a shared cache
    folder) is locked through a read-only descriptor. (A process forked without ``exec`` while
    the block runs would hold the lock too: nothing is started in it.)"""
    from wbcap.locks import flock_nowait

    lock = path.with_name(path.name + ".lock")
    # (O_NONBLOCK: a FIFO at the lock's name would block the open; it is no lock file, see below)
    flags = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = None
    timed_out = False
    try:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except PermissionError:
            with contextlib.suppress(OSError):
                fd = os.open(lock, os.O_RDONLY | flags)
        except OSError:
            pass
        if fd is not None and not stat.S_ISREG(os.fstat(fd).st_mode):  # (a FIFO, a device...: unlocked)
            os.close(fd)
            fd = None
        if fd is not None:
            deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
            try:
                while not (taken := flock_nowait(fd) is not False) and time.monotonic() < deadline:
                    time.sleep(0.01)
                timed_out = not taken
            except OSError:  # (a file system that refuses locks: NFS)
                pass
        yield timed_out
    finally:
        if fd is not None:
            os.close(fd)
