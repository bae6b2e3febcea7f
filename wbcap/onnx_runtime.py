"""onnxruntime, imported with its telemetry off.

onnxruntime 1.32's Linux wheels carry Microsoft's 1DS telemetry (events for
``mobile.events.data.microsoft.com``): importing it wrote a device id and an event store under
the user's cache folder (``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``), and on a read-only
cache printed its own warning that it could not (a break-it trial). wbcap imports it only through
:func:`import_onnxruntime`, which sets ``ORT_DISABLE_TELEMETRY=1`` while it loads (onnxruntime reads
it then) and takes it out again; a value the user set is kept (``ORT_DISABLE_TELEMETRY=0`` turns it
back on). A process that imported onnxruntime before keeps what it read then.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

#: The variable onnxruntime reads to turn its telemetry off.
TELEMETRY_VARIABLE = "ORT_DISABLE_TELEMETRY"


#: Held while :func:`import_onnxruntime` imports (a lock object, made once; it holds no data).
_IMPORT_LOCK = threading.Lock()


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime`` with :data:`TELEMETRY_VARIABLE` set to ``1`` while it loads unless
    the environment already says; the environment is left as it was (onnxruntime reads the
    variable as it loads: its sessions made afterwards write nothing either).

    Raises:
        ImportError: onnxruntime is not installed (or does not import).
    """
    import sys

    # One thread at a time (threads using `detector="auto"` at once, an API user's trial: one got
    # the module another was still importing, without its InferenceSession, and the variable was
    # set and taken out under each other).
    with _IMPORT_LOCK:
        if sys.modules.get("onnxruntime") is not None:  # (None: taken out, as a test does; refused below)
            import onnxruntime  # (a module another thread imports: Python waits for it to be complete)

            return onnxruntime
        added = TELEMETRY_VARIABLE not in os.environ
        if added:
            os.environ[TELEMETRY_VARIABLE] = "1"
        try:
            import onnxruntime
        finally:
            if added:
                os.environ.pop(TELEMETRY_VARIABLE, None)
        return onnxruntime
