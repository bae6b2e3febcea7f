"""Folders in the system's temporary folder that a wbcap process makes, and the removal of those
a killed process left behind.

A folder made here (:func:`temp_folder`) is removed by its maker on every exit the process sees
(an exception, Ctrl-C, SIGTERM or SIGHUP through :mod:`wbcap.stop_signals`). SIGKILL (``kill
-9``, the kernel's out-of-memory killer, a container stopped hard) gives the process no chance,
and Python's ``tempfile`` folders then stay for good. So while a folder is in use its maker holds
an ``flock`` on it (:mod:`wbcap.locks`), which the kernel releases when the process ends however
it ends, and the folder holds a mark (``.wbcap-owner.json``, written once the lock is held: the
maker's host and process id, for a person reading it). Making a folder of a prefix first removes
the folders of that prefix that this user owns, that hold the mark and whose lock is free
(:func:`remove_abandoned`). The lock, not the recorded process id, tells a live folder: a process
id says nothing across pid namespaces (containers sharing a temporary folder), reuse or zombies.
A folder without the mark is left alone: kept on purpose (:meth:`TempFolder.keep`: a log a
message points to), still being made, or on a file system without ``flock``.

Python's ``tempfile`` has no such cleanup, nor has ``platformdirs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wbcap.errors import InputError
from wbcap.locks import flock_nowait

logger = logging.getLogger(__name__)

#: The mark of a folder in use or abandoned (not kept): ``{"host": ..., "pid": ...}`` of its maker.
MARK_FILE = ".wbcap-owner.json"


@dataclass
class TempFolder:
    """A folder of :func:`temp_folder`: ``path``; :meth:`keep` keeps it after the block."""

    path: Path
    kept: bool = False

    def keep(self) -> None:
        """Keep the folder for good (a log that a message names): not removed when the block ends,
        nor later by :func:`remove_abandoned` (its mark goes)."""
        self.kept = True


def _open_folder(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))


def _lock(fd: int) -> bool:
    """Whether the exclusive lock on ``fd`` was taken now (False: held elsewhere, or no flock here)."""
    try:
        return flock_nowait(fd) is True
    except OSError:
        return False


def _remove_mark_last(folder: Path) -> bool:
    """Remove ``folder``: its mark only after everything else went, so that a removal that fails
    part-way (a file of another owner in it) is tried again next time. Whether it is gone."""
    for child in folder.iterdir():
        if child.name == MARK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
    if any(child.name != MARK_FILE for child in folder.iterdir()):
        return False
    with contextlib.suppress(OSError):
        (folder / MARK_FILE).unlink()
        folder.rmdir()
    return not folder.exists()


def remove_abandoned(prefix: str, parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the folders ``<parent>/<prefix>*`` that a wbcap process made with :func:`temp_folder`
    and left behind when it was killed: owned by this user, holding the mark, their lock free
    (the module docstring says why).

    Args:
        prefix: the folders' name prefix, e.g. ``"wbcap-fbx-"``.
        parent: where they lie; the system's temporary folder (``tempfile.gettempdir()``) by default.

    Returns:
        The folders removed (one that could not be removed whole is logged and tried again next time).
    """
    root = Path(tempfile.gettempdir() if parent is None else parent)
    uid = os.getuid()
    removed = []
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for folder in candidates:
        try:
            info = folder.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or not (folder / MARK_FILE).is_file():
                continue
            fd = _open_folder(folder)
        except OSError:
            continue
        try:
            if not _lock(fd):
                continue  # (in use: its maker holds it)
            if _remove_mark_last(folder):
                logger.debug("removed %s, left by a killed wbcap process", folder)
                removed.append(folder)
            else:
                logger.debug("could not remove all of %s, left by a killed wbcap process", folder)
        except OSError as exc:
            logger.debug("could not remove %s, left by a killed wbcap process (%s)", folder, exc)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def temp_folder(prefix: str, parent: str | os.PathLike[str] | None = None) -> Iterator[TempFolder]:
    """A new folder ``<temporary folder>/<prefix>XXXXXXXX`` (``tempfile.mkdtemp``) for the block,
    made after removing the folders of ``prefix`` that killed processes left
    (:func:`remove_abandoned`), locked and marked while the block runs, and removed when it ends,
    whatever the exit, unless :meth:`TempFolder.keep` was called (then only its mark goes).
    ``parent``: make it there instead (an output folder whose files are then moved out of it
    onto their names: the same file system, so each move is a rename).

    Raises:
        OSError: the temporary folder is not writable (as ``tempfile.mkdtemp``).
    """
    remove_abandoned(prefix, parent)
    folder = TempFolder(Path(tempfile.mkdtemp(prefix=prefix, dir=parent)))
    fd = None
    try:
        fd = _open_folder(folder.path)
        if _lock(fd):  # (the mark only once the lock is held: a remover never sees one without the other)
            (folder.path / MARK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}),
                                                 encoding="utf-8")
        yield folder
    finally:
        try:
            if folder.kept:
                with contextlib.suppress(OSError):
                    (folder.path / MARK_FILE).unlink()
            else:
                shutil.rmtree(folder.path, ignore_errors=True)
        finally:
            if fd is not None:
                os.close(fd)  # (releases the lock)


#: The longest temporary folder path the data-loading workers can use: they pass the storage of their batches
#: over a Unix socket at ``<temp>/pymp-XXXXXXXX/listener-XXXXXXXX`` (Python's
#: multiprocessing), whose path may not pass 107 bytes (``sun_path``, 108 with its NUL).
MAX_WORKER_TEMP_PATH = 107 - len("/pymp-XXXXXXXX/listener-XXXXXXXX")


def check_worker_temp_folder(workers_option: str) -> None:
    """Refuse a temporary folder too long for the sockets of DataLoader workers
    (:data:`MAX_WORKER_TEMP_PATH`), before ``wbcap train`` or ``wbcap eval`` starts any: each
    worker failed to send its first batch ("AF_UNIX path too long", a traceback per batch) and
    training waited for ever (seen with an 81-character ``TMPDIR``). ``workers_option``: how the
    message names the setting that turns the workers off.

    Raises:
        InputError: naming the folder, its length and the fixes.
    """
    folder = tempfile.gettempdir()
    if len(os.fsencode(folder)) > MAX_WORKER_TEMP_PATH:
        raise InputError(f"the temporary folder {folder} is {len(os.fsencode(folder))} bytes long; the data-loading "
                         f"workers pass their batches over sockets made in it, whose paths allow a folder of "
                         f"{MAX_WORKER_TEMP_PATH} at most: set TMPDIR to a shorter folder (e.g. TMPDIR=/tmp) or use "
                         f"{workers_option} 0")
