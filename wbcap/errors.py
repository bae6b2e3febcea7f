"""User-facing errors.

Every error a user can cause (bad input, missing model file, corrupt checkpoint) is raised as a
:class:`WbcapError` whose message is one line naming the file and the fix. The CLI prints that
line and exits non-zero without a traceback; library users can catch the class.
"""

from __future__ import annotations

import contextlib


class WbcapError(Exception):
    """An error with a one-line, user-facing message (what is wrong and how to fix it)."""

    exit_code = 2


class InputError(WbcapError):
    """An input image, video, box file or argument that cannot be used."""


class ModelFileError(WbcapError):
    """A body-model file (SMPL-X) that is missing or malformed."""


class CheckpointError(WbcapError):
    """A network checkpoint that is missing, corrupt or has the wrong tensors."""


class NoPersonError(WbcapError):
    """No person was found in an input."""


def add_note(exc: BaseException, note: str) -> None:
    """Attach where a failure happened (``exc.add_note``, Python 3.11+; by hand on 3.10).

    The CLI prints the notes of an unexpected exception on its one ``error:`` line.
    """
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10
        with contextlib.suppress(AttributeError):
            exc.__notes__ = [*getattr(exc, "__notes__", []), note]
