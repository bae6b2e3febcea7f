"""Children that end with a killed wbcap (wbcap.subprocesses): Blender's FBX conversion and
torchrun went on writing into output folders after their wbcap was killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# The parent starts the child, prints its pid and waits; the test kills the parent with SIGKILL.
_PARENT = "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1]]{extra}); print(p.pid, flush=True); p.wait()"
_SLEEP = "import time; time.sleep(60)"


def _child_ends_with_its_killed_parent(parent_code: str, child_code: str, patience_s: float = 5.0) -> bool:
    """Whether the child is gone within ``patience_s`` of its parent's SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", parent_code, child_code], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    time.sleep(1.0)  # (the child has made its request)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(round(patience_s / 0.1)):
        stat = Path(f"/proc/{pid}/stat")
        if not stat.is_file() or stat.read_text().split()[2] == "Z":  # gone, or a zombie for init to reap
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return False


@pytest.mark.parametrize("how", ["preexec_fn SIGTERM (torchrun)",
                                 pytest.param("first thing in the child (Blender's script)", marks=pytest.mark.slow)])
def test_a_child_ends_with_its_killed_parent(how):
    if how.startswith("preexec_fn"):
        parent = _PARENT.format(extra=", preexec_fn=__import__('functools').partial("
                                      "__import__('wbcap.subprocesses').subprocesses.end_with_parent, 15)")
        child = _SLEEP
    else:
        parent = _PARENT.format(extra="")
        child = "from wbcap.subprocesses import end_with_parent; assert end_with_parent(); " + _SLEEP
    assert _child_ends_with_its_killed_parent(parent, child), f"the child outlived its killed parent ({how})"


@pytest.mark.slow  # (2 s of waiting: the check that the test above can fail)
def test_a_child_without_the_request_outlives_its_parent():
    """The check above can fail: without end_with_parent the child lives on (a second here; the
    children that asked were gone within a tenth of one)."""
    assert not _child_ends_with_its_killed_parent(_PARENT.format(extra=""), _SLEEP, patience_s=1.0)


def test_the_fbx_script_and_the_launcher_ask_for_it(monkeypatch, tmp_path):
    import wbcap.subprocesses as sp
    from wbcap.export import blender_fbx
    from wbcap.train import launch
    from wbcap.train.stages import load_stage
    from wbcap.train.trainer import RunConfig

    calls = []
    monkeypatch.setattr(sp, "end_with_parent", lambda *a: calls.append(a) or True)
    assert blender_fbx.main([]) == 2  # (a usage error, after the request)
    assert calls == [()]
    started = []

    class Agent:  # (torchrun's agent, not started)
        def __init__(self, cmd, **kw):
            started.append(kw)

        def wait(self):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", Agent)
    launch._launch(load_stage("body", None), RunConfig(out=str(tmp_path)), ["0", "1"], nnodes=1, node_rank=0,
                   master_addr="127.0.0.1", master_port=29500, train=None)
    (kw,) = started
    hook = kw["preexec_fn"]
    assert hook.func is launch.end_with_parent and hook.args == (signal.SIGTERM,)
