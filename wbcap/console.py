"""The one rich console of stderr that log lines and progress displays share on a terminal.

The ``wbcap`` command logs through a rich handler on a console of stderr (``wbcap.cli``). A
progress bar or spinner drawn on another console of the same terminal knows nothing of the log
lines: it redraws over them, and a line begins where the bar ends (a user trial). Drawn on the
handler's own console, rich prints each log line above the live display.
"""

from __future__ import annotations

import logging
import re
from typing import Any

#: Characters a terminal would act on rather than show: C0 controls but newline and tab, DEL and
#: C1 controls (ESC starts colour, title and clipboard sequences; BEL ends some).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


#: A byte that was not UTF-8 in a name, as ``os.fsdecode`` keeps it (surrogate escapes).
_SURROGATE = re.compile("[\udc80-\udcff]")


def printable(text: str, one_line: bool = False) -> str:
    """``text`` with every control character a terminal would act on written as a Python escape
    (``ESC`` as ``\\x1b``), newlines and tabs kept (``one_line``: newlines escaped too, ``\\n``):
    what wbcap prints of names it did not make (file names, values read from files). A
    hostile-input trial named a photo with an escape sequence setting the terminal's title, and
    `wbcap image` printed it raw; another split an error over two lines with a newline in a
    detector's name (an error is one line: ``one_line``). A byte of a name that is not UTF-8 (a
    Latin-1 ``é``, kept by ``os.fsdecode`` as a lone surrogate) is written ``\\xe9``, as
    :func:`shell_word` writes it (it was printed ``\\udce9``, neither the name nor pasteable: a
    locale trial)."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    text = _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)
    return text.replace("\n", "\\n") if one_line else text


def shell_word(text: str, option_safe: bool = False) -> str:
    """``text`` as one word of a POSIX shell command that a user can paste: ``shlex.quote``'s
    single quotes, or, for text holding a control character (a newline...) or bytes that are not
    UTF-8 (a file name's surrogate escapes), bash's ``$'...'`` with those written as ``\\xNN``
    (single quotes kept them as the two characters ``\\n`` once printed: a break-it trial).
    ``option_safe``: a relative path starting with ``-`` is written ``./-name``, so that the
    command does not read it as an option."""
    import shlex

    if option_safe and text.startswith("-"):
        text = "./" + text
    if not _CONTROL.search(text) and "\n" not in text and not any("\udc80" <= c <= "\udcff" for c in text):
        return shlex.quote(text)
    out = []
    for c in text:
        if "\udc80" <= c <= "\udcff":  # (a byte that was not UTF-8, as os.fsdecode keeps it)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif c in "\\'":
            out.append("\\" + c)
        elif c == "\n" or _CONTROL.match(c):
            out.append("".join(f"\\x{b:02x}" for b in c.encode("utf-8")))
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


class PrintableFormatter(logging.Formatter):
    """A formatter whose lines are :func:`printable` (the ``wbcap`` command's log handler): a
    message is one line (a newline in a file name it names is written ``\\n``, as in result and
    error lines: a break-it trial); a traceback (``-v``'s ``exc_info``) keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        # (again as a whole: a traceback another handler formatted first is cached unescaped)
        return printable(super().format(record))

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record), one_line=True)

    def formatException(self, ei) -> str:
        return printable(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return printable(super().formatStack(stack_info))


def stderr_console() -> Any:
    """The ``rich.console.Console`` of stderr that the root logger's rich handler writes to (the
    ``wbcap`` command's, on a terminal), or a new one (``soft_wrap``) where there is none (stderr to
    a log file or a pipe, the Python API)."""
    from rich.console import Console

    for handler in logging.getLogger().handlers:
        console = getattr(handler, "console", None)
        if isinstance(console, Console) and console.stderr:
            return console
    return Console(stderr=True, soft_wrap=True)


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (a person watching: hints for them go there). Not
    rich's ``is_terminal``, which ``FORCE_COLOR`` makes true for a log or a pipe (a review)."""
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # (no stderr, or a closed one)
        return False


def make_folder_hint(folder) -> str:
    """``" (make it first: mkdir -p FOLDER)"`` where ``folder`` is not a folder yet, else ``""``:
    the end of a fix that says to copy or move a file into it (``cp`` into a folder not made yet
    failed, as told: a new user's trial)."""
    from pathlib import Path

    return "" if Path(folder).is_dir() else f" (make it first: mkdir -p {shell_word(str(folder), True)})"
