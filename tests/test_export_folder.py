"""What the FBX export leaves in the output folder when Blender fails or the user presses Ctrl-C:
Blender's log lives in the system's temporary folder, is deleted on an interruption and kept
(and named in the one-line error) only when Blender fails. Blender itself is stood in for by a
fake ``subprocess.run``, so these run without ``bpy`` and in the fast loop (the real Blender
runs are in ``tests/test_export_blender.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_cli_export import finished_run, invoke  # noqa: F401  (finished_run: a module fixture)

from wbcap.errors import WbcapError


@pytest.fixture()
def fake_blender(tmp_path, monkeypatch):
    """``bpy`` "installed", the temporary folder under tmp_path; returns a setter for what the
    Blender subprocess does (a function of the open log file)."""
    import wbcap.export.fbx as fbx

    monkeypatch.setattr(fbx, "blender_available", lambda: True)
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))

    def use(behaviour):
        def run(cmd, *, stdout, **kwargs):
            return behaviour(stdout, cmd)

        monkeypatch.setattr(subprocess, "run", run)

    return systmp, use


def interrupted(log_file, cmd):
    raise KeyboardInterrupt  # Ctrl-C while Blender runs (its log still empty)


def failing(log_file, cmd):
    log_file.write(b"Blender chatter\nwbcap: the GLB holds no skin\n")
    return subprocess.CompletedProcess(cmd, 1)


def test_interrupted_fbx_leaves_no_log(tmp_path, fake_blender):
    from wbcap.export.fbx import write_fbx

    systmp, use = fake_blender
    use(interrupted)
    out = tmp_path / "out"
    out.mkdir()
    (out / "track_3.glb").write_bytes(b"glTF")
    with pytest.raises(KeyboardInterrupt):
        write_fbx(out / "track_3.glb", out / "track_3.fbx", fps=25.0)
    assert sorted(p.name for p in out.iterdir()) == ["track_3.glb"]
    assert not any(systmp.iterdir())


def test_failed_fbx_keeps_the_log_it_names_outside_the_folder(tmp_path, fake_blender):
    from wbcap.export.fbx import write_fbx

    systmp, use = fake_blender
    use(failing)
    out = tmp_path / "out"
    out.mkdir()
    (out / "track_3.glb").write_bytes(b"glTF")
    with pytest.raises(WbcapError, match=r"Blender could not convert track_3\.glb to FBX \(the GLB holds no skin\)"
                                         r"; see its log ") as info:
        write_fbx(out / "track_3.glb", out / "track_3.fbx", fps=25.0)
    assert sorted(p.name for p in out.iterdir()) == ["track_3.glb"]
    (log,) = systmp.glob("wbcap-fbx-*/track_3.fbx.blender.log")
    assert str(info.value).endswith(f"see its log {log}") and "Blender chatter" in log.read_text()


def test_export_fbx_interrupted_leaves_dest_clean(finished_run, tmp_path, body_dir, fake_blender):  # noqa: F811
    """`wbcap export RUN --format fbx --dest D` and Ctrl-C during Blender: exit 130, nothing of the
    FBX step in D (no Blender log, no GLB made for it), no log in the temporary folder."""
    systmp, use = fake_blender
    use(interrupted)
    dest = tmp_path / "d"
    r = invoke("export", finished_run, "--format", "fbx", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 130, r.output
    assert [p.name for p in dest.iterdir()] == []
    assert not any(systmp.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_blender_dies_with_a_killed_wbcap(tmp_path):
    """The FBX script asks the kernel to end it with its parent: a wbcap killed with SIGKILL no
    longer leaves a Blender running that later writes into the output folder."""
    import signal
    import subprocess
    import time

    from wbcap.export import blender_fbx

    child = ("import importlib.util, sys, time; spec = importlib.util.spec_from_file_location('b', sys.argv[1]); "
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); m.die_with_parent(); time.sleep(60)")
    parent = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]]); "
              "print(p.pid, flush=True); p.wait()")
    proc = subprocess.Popen([sys.executable, "-c", parent, child, blender_fbx.__file__], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    time.sleep(1.0)  # (the child has made its request)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break  # (a zombie: dead, waiting for init to reap it)
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its killed parent")


def test_ctrl_c_during_an_import_that_swallows_it_is_raised_after(monkeypatch):
    """trimesh's import catches BaseException around its optional imports: a Ctrl-C inside it
    became a half-imported module and a TypeError (a crash report) instead of "interrupted"."""
    import importlib
    import signal

    from wbcap.export import _gl

    def swallowing_import(name):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # (Ctrl-C while the module imports)
            for _ in range(1000):  # (let the handler run inside the import)
                pass
        except BaseException:  # (as trimesh does)
            pass
        return sys

    monkeypatch.setattr(importlib, "import_module", swallowing_import)
    with pytest.raises(KeyboardInterrupt):
        _gl.import_module("trimesh")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_wins_over_the_error_of_the_import_it_broke(monkeypatch):
    import importlib
    import signal

    from wbcap.export import _gl

    def breaking_import(name):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        except BaseException:  # (as trimesh does)
            pass
        raise ImportError("half-imported")

    monkeypatch.setattr(importlib, "import_module", breaking_import)
    with pytest.raises(KeyboardInterrupt):
        _gl.import_module("trimesh")
