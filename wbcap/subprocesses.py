"""Child processes that do not outlive wbcap.

A wbcap killed with SIGKILL cannot stop the processes it started: Blender converting an FBX went
on and wrote into a folder a new run owned, torchrun went on training in a folder whose lock
went with its launcher. :func:`end_with_parent` asks the kernel to signal such a child when its
parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``, ``linux/prctl.h``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

#: ``PR_SET_PDEATHSIG`` of ``linux/prctl.h``.
_PR_SET_PDEATHSIG = 1


def end_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies. Call it in the child:
    as ``preexec_fn`` of a ``subprocess`` call, or first thing in a child script. Returns False
    where it cannot be asked (not Linux, no ``prctl``). Exits at once (status 1) when the
    parent is already gone (it died before the request: nobody to work for)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
            if os.getppid() != parent:
                os._exit(1)
            return True
    return False
