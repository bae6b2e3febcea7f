"""Standard output of a ``wbcap`` command, written through one guard (click only: no torch).

While a command runs, the ``wbcap`` group (:meth:`wbcap.cli.LazyGroup.main`) puts a
:class:`StdoutGuard` in place of ``sys.stdout``, so that everything meant for stdout goes
through it: result lines (:func:`wbcap.cli.common.echo_result`), listings, tables printed with
rich, and click's own help, usage and version text.

A write that fails (a full disk: ``wbcap weights list > /dev/full``; any ``OSError`` but a
closed pipe) stops neither the command nor its work: the guard keeps what the command prints
from then on instead of writing it, and when the command ends the group reports one line on
stderr, :meth:`StdoutGuard.message`::

    error: could not write to standard output (No space left on device); the result was: <line> | <line>

repeating every line the command wrote or was to write; the exit status is the command's own
when that is non-zero, else 2 (:data:`UNWRITTEN_EXIT_CODE`). A command that goes on after its
output (a served ``wbcap view``) calls :func:`check_stdout` to stop there instead. A closed pipe
(``wbcap ... | head``) is left to click, which exits quietly.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Iterator

#: Exit status when stdout could not be written and the command itself succeeded (as bad input).
UNWRITTEN_EXIT_CODE = 2

#: The most characters of unwritten output repeated in the error line (whole lines; a long
#: listing or table ends with how many lines were left out).
REPEATED_CHARS = 2000


class StdoutGuard:
    """A text stream in front of ``stream`` (the real stdout) that keeps what is written to it
    and turns a failed write into :attr:`error` instead of an exception (see the module).

    It shows no ``buffer``: click writes text to a text stream without one as it is, so nothing
    reaches the real stdout around the guard. Other attributes are the real stream's.
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self._text: list[str] = []
        #: The first failed write (None: all went well).
        self.error: OSError | None = None
        #: Whether :meth:`message` was reported already (by :func:`check_stdout`).
        self.reported = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # (click tells text streams from binary ones by this)
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._text.append(text)
        if self.error is None:
            try:
                self._stream.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if exc.errno == errno.EPIPE:  # `| head`: click's quiet exit
            raise exc
        self.error = exc

    @property
    def encoding(self) -> str | None:
        return getattr(self._stream, "encoding", None)

    @property
    def errors(self) -> str | None:
        return getattr(self._stream, "errors", None)

    def isatty(self) -> bool:
        return self._stream.isatty()

    def __getattr__(self, name: str):
        if name == "buffer":  # (see the class)
            raise AttributeError(name)
        return getattr(self._stream, name)

    @property
    def failed(self) -> bool:
        """A write failed and that was not reported yet."""
        return self.error is not None and not self.reported

    def message(self) -> str:
        """The one line (without ``error:``) for a failed write: the reason, then the non-blank
        lines written or to be written, stripped, joined by `` | `` (as many whole lines as fit
        in :data:`REPEATED_CHARS`, then how many were left out); for click's help text (it
        starts with ``Usage:``) only that the help was not written."""
        assert self.error is not None
        text = f"could not write to standard output ({self.error.strerror or self.error})"
        lines = [line.strip() for line in "".join(self._text).splitlines() if line.strip()]
        if not lines:
            return text
        if lines[0].startswith("Usage:"):
            return f"{text}; the help ({len(lines)} lines) was not written"
        shown: list[str] = []
        for line in lines:
            if shown and sum(len(x) + 3 for x in shown) + len(line) > REPEATED_CHARS:
                break
            shown.append(line)
        rest = len(lines) - len(shown)
        return f"{text}; the result was: {' | '.join(shown)}" + (f" | ... ({rest} more lines)" if rest else "")


class _ClosedStdout:
    """What stands for a stdout that is not there (``wbcap ... >&-``: Python's ``sys.stdout`` is
    None): every write fails as writing to a closed descriptor does (EBADF), so a command that
    prints a result is reported like one writing to a full disk (it exited 0 with its results
    lost: a locale and terminal trial), and one that prints nothing (``wbcap -q``) is not."""

    encoding = "utf-8"
    errors = "backslashreplace"

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "Bad file descriptor")

    def flush(self) -> None:
        """Nothing to flush."""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def guarded_stdout() -> Iterator[StdoutGuard | None]:
    """Within the block ``sys.stdout`` is a :class:`StdoutGuard` in front of the one there (a
    :class:`_ClosedStdout` where there is none), and that one is put back after it, unless
    something else replaced the guard meanwhile (click's wrapper after a closed pipe)."""
    stream = sys.stdout
    if isinstance(stream, StdoutGuard):  # (a nested call: the outer guard reports)
        yield None
        return
    guard = StdoutGuard(_ClosedStdout() if stream is None else stream)
    sys.stdout = guard
    try:
        yield guard
    finally:
        if sys.stdout is guard:
            sys.stdout = stream


def check_stdout() -> None:
    """Raise now, instead of when the command ends, if a write to stdout failed.

    Raises:
        InputError: :meth:`StdoutGuard.message` (then not reported again at the end).
    """
    from wbcap.errors import InputError

    guard = sys.stdout
    if isinstance(guard, StdoutGuard) and guard.failed:
        guard.reported = True
        raise InputError(guard.message())
