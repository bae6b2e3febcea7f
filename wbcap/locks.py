"""Advisory locks on folders (``flock``), which the kernel releases when their process ends,
also when it is killed: the one test of "is a wbcap process still using this folder" that holds
across pid reuse, zombies and pid namespaces (containers sharing a folder).

Used by :func:`wbcap.io.run_folder.hold_folder` (a run's output folder) and
:mod:`wbcap.temp_folders` (wbcap's folders in the system's temporary folder).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def flock_nowait(fd: int, shared: bool = False) -> bool | None:
    """Take an ``flock`` on the open file or folder ``fd``, exclusive or ``shared``, without
    waiting. The lock lasts until ``fd`` (and every duplicate of it) is closed.

    Returns:
        True when taken; False when another open file holds a lock that excludes it; None on a
        platform without ``flock``.

    Raises:
        OSError: the file system refuses locks on it (NFS folders: ``EBADF``; ``ENOLCK``...).
    """
    try:
        import fcntl
    except ImportError:  # (no flock on this platform)
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def closed_in_forked_children(fd: int) -> Iterator[None]:
    """While the block runs, a process forked from this one without ``exec`` (a DataLoader worker)
    closes its copy of ``fd`` as it starts, so that an ``flock`` on ``fd`` ends with this process:
    a copy held by a worker kept a killed ``wbcap train``'s folder locked until the worker
    noticed, and a rerun was refused meanwhile (a training trial). (Files Python opens are not
    inherited across ``exec`` already.)"""
    held = [fd]

    def close_copy() -> None:
        for f in held:
            with contextlib.suppress(OSError):
                os.close(f)
        held.clear()  # (the number may be reused in the child: its own forks leave it alone)

    os.register_at_fork(after_in_child=close_copy)
    try:
        yield
    finally:
        held.clear()
