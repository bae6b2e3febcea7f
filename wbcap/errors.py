"""User-facing errors.

Every error a user can cause (bad input, missing model file, corrupt checkpoint) is raised as a
:class:`WbcapError` whose message is one line naming the file and the fix. The CLI prints that
line and exits non-zero without a traceback; library users can catch the class.

Messages and log lines name a user setting through :func:`setting`, never as a CLI flag:
``f"{setting('every')} {job.every}: must be >= 1"`` reads ``every 0: must be >= 1`` in Python
and ``--every 0: must be >= 1`` from ``wbcap run``: while a command runs, the ``wbcap`` group
installs the command's spelling (:func:`spelling`, :func:`wbcap.cli.option_spelling`).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import re
from collections.abc import Callable, Iterator

#: How the running front end spells a setting; None: as the Python API does (see :func:`spelling`).
#: A context variable, as :mod:`decimal`'s context: set for the duration of a block, local to the
#: thread or task that set it (wbcap's own worker threads run in a copy of their starter's context).
_SPELL: contextvars.ContextVar[Callable[[str], str | None] | None] = contextvars.ContextVar("wbcap_setting_spelling",
                                                                                       default=None)


def setting(name: str, api: str | None = None) -> str:
    """The words a message uses for the user setting ``name``.

    ``name``: the setting as the Python API calls it, a job or config field or a function
    parameter (``"every"``, ``"max_gap"``, ``"boxes_file"``); the CLI option that sets it has
    the same parameter name (click's ``dest``: ``--boxes`` stores ``boxes_file``). ``api``: what
    Python text says instead of ``name`` where that reads better (``"allow_pickle=True"``;
    ``"drop_static=False"`` for ``--keep-static``).

    Returns ``api or name``; while a ``wbcap`` command runs, that command's option for ``name``
    (``--max-gap``, ``--boxes``, ``-o``). The text is fixed when the message is built, so an
    exception, a log line and an error string kept in a result all read the same.
    """
    spell = _SPELL.get()
    words = spell(name) if spell is not None else None
    return words if words is not None else (api or name)


@contextlib.contextmanager
def spelling(spell: Callable[[str], str | None]) -> Iterator[None]:
    """Within the block (this thread or task, and the threads wbcap starts from it),
    :func:`setting` returns ``spell(name)`` (where that is None, what it returns outside any
    block). The ``wbcap`` command group uses it to name its flags."""
    token = _SPELL.set(spell)
    try:
        yield
    finally:
        _SPELL.reset(token)


def in_command() -> bool:
    """Whether a ``wbcap`` command is running (its spelling is set: :func:`spelling`), so that a
    message names a command to run; else Python's call (a warning from the API named `wbcap run`:
    an API trial)."""
    return _SPELL.get() is not None


@contextlib.contextmanager
def respelled(name: str, words: str | None) -> Iterator[None]:
    """Within the block, :func:`setting` returns ``words`` for ``name`` (the setting came from
    elsewhere than the command's option: a ``--config`` TOML's key); other names, and every name
    when ``words`` is None, as before."""
    if words is None:
        yield
        return
    outer = _SPELL.get()
    # (None: the words :func:`setting` would use without it, ``api`` included: a review)
    with spelling(lambda asked: words if asked == name else (outer(asked) if outer is not None else None)):
        yield


#: How a missing SMPL-X model's message goes on to a missing checkpoint's
#: (:func:`wbcap.pipeline.check_model_files`, :func:`wbcap.io.run_folder.missing_body_model`).
CHECKPOINT_TOO = "and for the network's checkpoint: "


#: What ``json.loads`` raises for a damaged document: ``ValueError`` (``JSONDecodeError``,
#: ``UnicodeDecodeError``, a number past Python's integer-digit limit) and ``RecursionError`` (lists
#: or objects nested deeper than Python's recursion limit, as a hostile file holds: a security review
#: got a crash report, not the file's one line, for ``[[[...]]]`` in a run folder's JSON files).
JSON_ERRORS: tuple[type[Exception], ...] = (ValueError, RecursionError)


class WbcapError(Exception):
    """An error with a one-line, user-facing message (what is wrong and how to fix it)."""

    exit_code = 2


class InputError(WbcapError):
    """An input image, video, box file or argument that cannot be used."""


class ModelFileError(WbcapError):
    """A body-model file (SMPL-X) that is missing or malformed."""


class CheckpointError(WbcapError):
    """A network checkpoint that is missing, corrupt or has the wrong tensors. ``found_below``:
    for a missing one, where its file (or, for the default checkpoint, one of another name) is
    below the folders searched and how to use it (:func:`wbcap.weights.checkpoint_below`), else ""."""

    found_below: str = ""


class CheckpointUnreadableError(CheckpointError):
    """A checkpoint the operating system would not read (no permission, an I/O error): the file
    itself may be intact, so the fix is not to replace it."""


class NoPersonError(WbcapError):
    """No person was found in an input."""


class TrainingDivergedError(WbcapError):
    """A training run whose loss became NaN or infinite: stopped before its next snapshot (whose
    weights would be of no use: every later one would hold NaN too)."""


def add_note(exc: BaseException, note: str) -> None:
    """Attach where a failure happened (``exc.add_note``, Python 3.11+; by hand on 3.10).

    The CLI prints the notes of an unexpected exception on its one ``error:`` line.
    """
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10
        with contextlib.suppress(AttributeError):
            exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``str(exc)`` (at most ``limit`` characters), else the
    exception's type name: for one-line messages about errors from other libraries."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


#: How torch, NumPy and the loader word an allocation that failed (``[enforce fail at
#: alloc_cpu.cpp]``, "DefaultCPUAllocator: can't allocate memory", "failed to map segment").
_OUT_OF_MEMORY = re.compile(r"alloc_cpu\.cpp|DefaultCPUAllocator|can't allocate memory|Cannot allocate memory|"
                            r"failed to map segment|Unable to allocate|out of memory", re.IGNORECASE)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (a ``MemoryError``, or an error whose message
    says so as torch's allocator and NumPy word it): the memory limit (``ulimit -v``, a cgroup)
    or the machine's memory, not a bad file or a bug."""
    if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
        return True
    return bool(_OUT_OF_MEMORY.search(str(exc)))
