"""The one rich console of stderr that log lines and progress displays share on a terminal.

The ``wbcap`` command logs through a rich handler on a console of stderr (``wbcap.cli``). A
progress bar or spinner drawn on another console of the same terminal knows nothing of the log
lines: it redraws over them, and a line begins where the bar ends (a user trial). Drawn on the
handler's own console, rich prints each log line above the live display.
"""

from __future__ import annotations

import logging
from typing import Any


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
