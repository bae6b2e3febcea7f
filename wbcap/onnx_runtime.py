"""onnxruntime, imported with its telemetry off.

onnxruntime 1.32's Linux wheels carry Microsoft's 1DS telemetry (events for
``mobile.events.data.microsoft.com``): importing it wrote a device id and an event store under
the user's cache folder (``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``), and on a read-only
cache printed its own warning that it could not (a break-it trial). wbcap imports it only through
:func:`import_onnxruntime`, which sets ``ORT_DISABLE_TELEMETRY=1`` first, as onnxruntime reads it
when it loads; a value the user set is kept (``ORT_DISABLE_TELEMETRY=0`` turns it back on). A
process that imported onnxruntime before keeps what it read then.
"""

from __future__ import annotations

import os
from types import ModuleType

#: The variable onnxruntime reads to turn its telemetry off.
TELEMETRY_VARIABLE = "ORT_DISABLE_TELEMETRY"


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime`` with :data:`TELEMETRY_VARIABLE` set to ``1`` unless the environment
    already says.

    Raises:
        ImportError: onnxruntime is not installed (or does not import).
    """
    os.environ.setdefault(TELEMETRY_VARIABLE, "1")
    import onnxruntime

    return onnxruntime
