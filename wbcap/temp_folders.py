"""Folders in the system's temporary folder that a wbcap process makes, and the removal of those
a killed process left behind.

A folder made here is removed by its maker on every exit the process sees (an exception, Ctrl-C,
SIGTERM or SIGHUP through :mod:`wbcap.stop_signals`). SIGKILL (``kill -9``, the kernel's
out-of-memory killer, a container stopped hard) gives the process no chance, and Python's
``tempfile`` folders then stay for good. So each folder made here holds an owner record (the
host's name and the process id, ``.wbcap-owner.json``), and making a folder of a prefix first
removes the folders of that prefix that this user owns and whose record names this host and a
process that no longer runs. A folder whose record is missing, unreadable or names another host
(a temporary folder shared between containers, whose process ids are not ours to test) is left
alone, and so is a folder kept on purpose (:func:`keep`: a log that a message points to).

Python's ``tempfile`` has no such cleanup, nor does ``platformdirs``; this is the usual
lock-file-with-pid pattern, kept small.
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
from pathlib import Path

logger = logging.getLogger(__name__)

#: The owner record inside each folder: ``{"host": socket.gethostname(), "pid": os.getpid()}``.
OWNER_FILE = ".wbcap-owner.json"


def _running(pid: int) -> bool:
    """Whether a process with this id runs on this host (as seen from this process's namespace)."""
    if pid <= 0:
        return True  # (not a process id: never taken for a dead owner)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (EPERM: it runs as another user)
        return True
    return True


def _abandoned(folder: Path, host: str, uid: int) -> bool:
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            return False
        record = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        return record["host"] == host and not _running(int(record["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remove_abandoned(prefix: str, parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the folders ``<parent>/<prefix>*`` that a process of this host made with
    :func:`make_temp_folder` and left behind when it was killed (the module docstring says which).

    Args:
        prefix: the folders' name prefix, e.g. ``"wbcap-fbx-"``.
        parent: where they lie; the system's temporary folder (``tempfile.gettempdir()``) by default.

    Returns:
        The folders removed (a folder that could not be removed is logged and left).
    """
    root = Path(tempfile.gettempdir() if parent is None else parent)
    host, uid = socket.gethostname(), os.getuid()
    removed = []
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for folder in candidates:
        if _abandoned(folder, host, uid):
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():
                logger.debug("could not remove %s, left by a killed wbcap process", folder)
            else:
                logger.debug("removed %s, left by a killed wbcap process", folder)
                removed.append(folder)
    return removed


def make_temp_folder(prefix: str) -> Path:
    """A new folder ``<temporary folder>/<prefix>XXXXXXXX`` (``tempfile.mkdtemp``) owned by this
    process, after removing the folders of ``prefix`` that killed processes left
    (:func:`remove_abandoned`). The caller removes it (``shutil.rmtree``) or :func:`keep` s it.

    Raises:
        OSError: the temporary folder is not writable (as ``tempfile.mkdtemp``).
    """
    remove_abandoned(prefix)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / OWNER_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}),
                                     encoding="utf-8")
    return folder


def keep(folder: str | os.PathLike[str]) -> None:
    """Keep a folder of :func:`make_temp_folder` for good (a log that a message names): its owner
    record goes, so :func:`remove_abandoned` never removes it."""
    with contextlib.suppress(FileNotFoundError):
        (Path(folder) / OWNER_FILE).unlink()


@contextlib.contextmanager
def temp_folder(prefix: str) -> Iterator[Path]:
    """:func:`make_temp_folder` as a context: the folder is removed on leaving it, whatever the exit."""
    folder = make_temp_folder(prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
