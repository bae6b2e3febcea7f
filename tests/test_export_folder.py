"""What the FBX export leaves in the output folder when Blender fails or the user presses Ctrl-C:
Blender's log lives in the system's temporary folder, is deleted on an interruption and kept
(and named in the one-line error) only when Blender fails. Blender itself is stood in for by a
fake ``subprocess.run``, so these run without ``bpy`` and in the fast loop (the real Blender
runs are in ``tests/test_export_blender.py``)."""

from __future__ import annotations

import errno
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
    Blender subprocess does (a function of the open log file, the command and its environment)."""
    import wbcap.export.fbx as fbx

    monkeypatch.setattr(fbx, "blender_available", lambda: True)
    monkeypatch.setattr(fbx, "bpy_import_error", lambda: None)
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))

    def use(behaviour):
        def run(cmd, *, stdout, env=None, **kwargs):
            return behaviour(stdout, cmd, env)

        monkeypatch.setattr(subprocess, "run", run)

    return systmp, use


def interrupted(log_file, cmd, env):
    """Ctrl-C while Blender runs (its log still empty), after it made its session folder in
    ``$TMPDIR`` as Blender does (``blender_XXXXXX``, left behind when it is killed: a user trial)."""
    (Path(env["TMPDIR"]) / "blender_Xq7RzP").mkdir()
    raise KeyboardInterrupt


def failing(log_file, cmd, env):
    log_file.write(b"Blender chatter\nwbcap: the GLB holds no skin\n")
    return subprocess.CompletedProcess(cmd, 1)


def _folder_with_a_glb(tmp_path: Path) -> Path:
    """An output folder holding only ``track_3.glb`` (the FBX converter's input; its content is
    not read by the stand-in Blender)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "track_3.glb").write_bytes(b"glTF")
    return out


def test_interrupted_fbx_leaves_no_log(tmp_path, fake_blender):
    from wbcap.export.fbx import write_fbx

    systmp, use = fake_blender
    use(interrupted)
    out = _folder_with_a_glb(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        write_fbx(out / "track_3.glb", out / "track_3.fbx", fps=25.0)
    assert sorted(p.name for p in out.iterdir()) == ["track_3.glb"]
    assert not any(systmp.iterdir())


def test_failed_fbx_keeps_the_log_it_names_outside_the_folder(tmp_path, fake_blender):
    from wbcap.export.fbx import write_fbx

    systmp, use = fake_blender
    use(failing)
    out = _folder_with_a_glb(tmp_path)
    with pytest.raises(WbcapError, match=r"Blender could not convert track_3\.glb to FBX \(the GLB holds no skin\)"
                                         r"; see its log ") as info:
        write_fbx(out / "track_3.glb", out / "track_3.fbx", fps=25.0)
    assert sorted(p.name for p in out.iterdir()) == ["track_3.glb"]
    (log,) = systmp.glob("wbcap-fbx-*/track_3.fbx.blender.log")
    assert str(info.value).endswith(f"see its log {log}") and "Blender chatter" in log.read_text()


def test_an_fbx_export_removes_the_folder_a_killed_one_left_and_keeps_a_named_log(tmp_path, fake_blender):
    """A SIGKILL during the FBX export (the OOM killer, ``kill -9``) left its wbcap-fbx-* folder in
    the temporary folder for good; the next FBX export removes it. The log of a failure, which
    the error names, stays."""
    from test_temp_folders import abandoned_folder

    from wbcap.export.fbx import write_fbx
    from wbcap.temp_folders import MARK_FILE

    systmp, use = fake_blender
    use(failing)
    out = _folder_with_a_glb(tmp_path)
    with pytest.raises(WbcapError):
        write_fbx(out / "track_3.glb", out / "track_3.fbx", fps=25.0)
    (named,) = systmp.glob("wbcap-fbx-*")
    assert [p.name for p in named.iterdir()] == ["track_3.fbx.blender.log"]  # (no mark: kept)
    left = abandoned_folder(systmp)
    (left / "blender_Xq7RzP").mkdir()
    use(interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_fbx(out / "track_3.glb", out / "track_3.fbx", fps=25.0)
    assert list(systmp.iterdir()) == [named] and not (named / MARK_FILE).exists()


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_export_fbx_interrupted_leaves_dest_clean(finished_run, tmp_path, body_dir, fake_blender):  # noqa: F811
    """`wbcap export RUN --format fbx --dest D` and Ctrl-C during Blender: exit 130, nothing of the
    FBX step in D (no Blender log, no GLB made for it), no log in the temporary folder. D, made by
    the export (two levels here), goes again when nothing went into it (a user trial found it left
    empty); a D that was there stays."""
    systmp, use = fake_blender
    use(interrupted)
    dest = tmp_path / "new" / "d"
    r = invoke("export", finished_run, "--format", "fbx", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 130, r.output
    assert not (tmp_path / "new").exists()
    assert not any(systmp.iterdir())
    dest = tmp_path / "there"
    dest.mkdir()
    r = invoke("export", finished_run, "--format", "fbx", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 130, r.output
    assert dest.is_dir() and [p.name for p in dest.iterdir()] == []


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raising ``KeyboardInterrupt`` (Python's own handler) in the test, whatever the test
    runner set: a runner started in the background of a non-interactive shell (CI scripts, ``cmd
    &``) inherits SIGINT ignored, and these tests then saw no Ctrl-C at all."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_during_an_import_that_swallows_it_is_raised_after(monkeypatch, ctrl_c_raises):
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


def test_ctrl_c_wins_over_the_error_of_the_import_it_broke(monkeypatch, ctrl_c_raises):
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


def converted(log_file, cmd, env):
    Path(cmd[3]).write_bytes(b"Kaydara FBX Binary")  # (the stand-in's FBX: the temporary file it is given)
    return subprocess.CompletedProcess(cmd, 0)


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_log_lines_name_the_files_as_they_end_up(finished_run, tmp_path, body_dir, micro_ckpt, fake_blender, caplog):  # noqa: F811
    """What the log says was written is named as it ends up, never by a temporary name: FBX alone
    logged the GLB it is made from (`wrote D/.track_0.tmp-k2j8x_q1/track_0.glb`, by `wbcap export`
    and `wbcap image`; an 8-letter hex one even read `D/track_0/track_0.glb`), and `wbcap view
    --html` the folder it builds (`to .v_files.staging-1a2b3c4d/media/generated`)."""
    import logging
    import shutil

    from test_cli_image import write_rgb

    from wbcap.testing.images import person_image

    _, use = fake_blender
    use(converted)

    def info_lines(*args) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="wbcap"):
            r = invoke(*args)
        assert r.exit_code == 0, r.output
        lines = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.INFO]
        assert not [x for x in lines if ".tmp-" in x or ".staging-" in x or ".old-" in x], lines
        return lines

    dest = tmp_path / "d"
    lines = info_lines("export", finished_run, "--format", "fbx", "--dest", dest, "--body-models", body_dir)
    assert sorted(p.name for p in dest.iterdir()) == ["track_0.fbx", "track_1.fbx"]
    assert [x.split(" (")[0] for x in lines if x.startswith("wrote ")] == [
        f"wrote {dest / 'track_0.fbx'}", f"wrote {dest / 'track_1.fbx'}", f"wrote 2 file(s) for 2 track(s) to {dest}"]
    # every format says each file it wrote (BVH, CSV and npz said nothing: the animator trial)
    every = tmp_path / "every"
    lines = info_lines("export", finished_run, "--format", "npz,csv,glb,bvh", "--dest", every, "--body-models", body_dir)
    wrote = [x.split(" (")[0].removeprefix("wrote ") for x in lines if x.startswith("wrote ")]
    assert sorted(wrote[:-1]) == sorted(str(p) for p in every.iterdir()) and len(wrote) == 9, lines
    img = write_rgb(tmp_path / "pic.png", person_image(320, 240, seed=3))
    lines = info_lines("image", img, "-o", tmp_path / "out", "--bbox", "100,20,120,200", "--export", "fbx,npz,csv",
                       "--no-render", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    person = tmp_path / "out" / "pic" / "person_0"
    assert sorted(x.split(" (")[0] for x in lines if x.startswith("wrote ")) == [
        f"wrote {person / 'output.csv'}", f"wrote {person / 'output.fbx'}", f"wrote {person / 'output.npz'}"], lines
    bare = tmp_path / "bare"  # (a run without GLBs: the view makes them)
    shutil.copytree(finished_run, bare, ignore=shutil.ignore_patterns("track_*"))
    lines = info_lines("view", bare, "--html", tmp_path / "v.html", "--body-models", body_dir)
    assert f"wrote 2 file(s) for 2 track(s) to {tmp_path / 'v_files' / 'media' / 'generated'}" in lines, lines


def test_a_full_disk_met_by_blender_is_the_one_full_disk_line(tmp_path, fake_blender):
    """Blender's FBX writer found the disk full: the command's full-disk line naming the FBX as it
    ends up (it was "Blender could not convert" with Blender's whole traceback and a staging path)."""
    import click

    from wbcap.cli import _disk_full_message, cli
    from wbcap.export.fbx import write_fbx

    def disk_full(log_file, cmd, env):
        log_file.write(b'Error: Python: Traceback (most recent call last):\n  File "encode_bin.py", line 416\n'
                       b"OSError: [Errno 28] No space left on device\n")
        return subprocess.CompletedProcess(cmd, 1)

    systmp, use = fake_blender
    use(disk_full)
    out = _folder_with_a_glb(tmp_path)
    staged = out / ".photo.staging-1a2b3c4d" / "person_0"
    staged.mkdir(parents=True)
    (staged / "output.glb").write_bytes(b"glTF")
    with pytest.raises(OSError) as info:
        write_fbx(staged / "output.glb", staged / "output.fbx", fps=25.0)
    assert info.value.errno == errno.ENOSPC and not any(systmp.iterdir())  # (no log kept)
    ctx = click.Context(cli, info_name="wbcap")
    ctx.invoked_subcommand = "image"
    assert _disk_full_message(info.value, ctx) == (f"cannot write {out / 'photo' / 'person_0' / 'output.fbx'} (No "
                                                   "space left on device): free disk space or point -o to another disk")


@pytest.mark.parametrize("limit", [1_024_000_000, 64_000_000_000, None])
def test_a_bpy_import_a_signal_ends_is_said_so_and_under_a_memory_limit_not_to_need_reinstalling(monkeypatch, limit):
    """A low-memory trial: under `ulimit -v 1000000` bpy's import crashed (SIGSEGV) and
    `--export fbx` said to reinstall it ("exit status -11"). Now the signal, the limit, and to
    raise the limit; without a limit, or under one far above what the import takes (a review: a
    64 GB SLURM job's), the install hint as before."""
    import inspect

    import wbcap.export.fbx as fbx
    import wbcap.limits
    from wbcap.export.animation import AnimationExport

    real = inspect.getclosurevars(fbx.bpy_import_error).nonlocals.get("real", fbx.bpy_import_error)  # (conftest's once)
    monkeypatch.setattr(fbx, "bpy_import_error", real)
    monkeypatch.setattr(fbx, "blender_available", lambda: True)
    monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: subprocess.CompletedProcess(args, -11, b"", b""))
    monkeypatch.setattr(wbcap.limits, "memory_limits", lambda: [("ulimit -v", limit)] if limit else [])
    with pytest.raises(WbcapError) as err:
        AnimationExport.parse("fbx", exact=False).check_available()
    head = "FBX export needs Blender's Python module, which is installed but does not import (its import crashed (SIGSEGV)"
    assert str(err.value) == (head + " under this process's memory limit (ulimit -v, 1.0 GB), less than Blender's import "
                              "takes); raise the memory limit (Blender's import took about 1.5 GB of address space under "
                              "ulimit -v)" if limit == 1_024_000_000 else head + f"); {fbx.INSTALL_HINT}")
