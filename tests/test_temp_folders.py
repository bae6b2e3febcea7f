"""wbcap's folders in the system's temporary folder: one a killed process left is removed by the
next folder of its kind, one in use is not, whatever process id its mark names, and nothing else
is (wbcap/temp_folders.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import wbcap.temp_folders as temp_folders
from wbcap.temp_folders import MARK_FILE, remove_abandoned, temp_folder


@pytest.fixture()
def systmp(tmp_path, monkeypatch):
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _child(systmp: Path, then: str) -> subprocess.Popen:
    """A Python process that makes a wbcap-fbx- folder, prints it, then runs ``then``."""
    code = ("import os, signal, sys, time; from wbcap.temp_folders import temp_folder\n"
            "with temp_folder('wbcap-fbx-') as t:\n"
            "    (t.path / 'blender.log').write_text('log')\n"
            f"    print(t.path, flush=True); {then}\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(systmp)})


def abandoned_folder(systmp: Path) -> Path:
    """A wbcap-fbx- folder as a process killed by SIGKILL in the middle of its block leaves it."""
    proc = _child(systmp, "os.kill(os.getpid(), signal.SIGKILL)")
    left = Path(proc.stdout.readline().strip())
    assert proc.wait(60) == -signal.SIGKILL
    assert left.parent == systmp and (left / MARK_FILE).is_file() and (left / "blender.log").is_file()
    return left


def test_a_folder_of_a_killed_process_is_removed_by_the_next_of_its_kind_and_a_live_one_is_not(systmp):
    """SIGKILL in the block: the folder stays, the next folder of the prefix removes it. A folder
    whose process still runs stays, also when its mark names a process that is gone (another pid
    namespace: a container sharing the temporary folder; a review found such a live folder removed
    when liveness was read from the recorded pid)."""
    left = abandoned_folder(systmp)
    live = _child(systmp, "time.sleep(60)")
    try:
        held = Path(live.stdout.readline().strip())
        mark = json.loads((held / MARK_FILE).read_text())
        assert mark == {"host": socket.gethostname(), "pid": live.pid}
        gone = subprocess.Popen(["true"])
        gone.wait()
        (held / MARK_FILE).write_text(json.dumps({**mark, "pid": gone.pid}))  # (a pid not seen from here)
        other_kind = systmp / "wbcap-view-x"
        other_kind.mkdir()
        (other_kind / MARK_FILE).write_text("{}")
        with temp_folder("wbcap-fbx-") as mine:
            assert not left.exists()
            assert held.is_dir() and (held / "blender.log").is_file()
            assert other_kind.is_dir()  # (another prefix: removed by the next folder of its own kind)
            assert mine.path.parent == systmp and (mine.path / MARK_FILE).is_file()
            assert remove_abandoned("wbcap-fbx-") == []  # (mine: in use)
    finally:
        live.kill()
        live.wait()
    assert not mine.path.exists()
    assert remove_abandoned("wbcap-fbx-") == [held] and not held.exists()  # (its process is gone now)
    assert remove_abandoned("wbcap-view-") == [other_kind]


def test_folders_that_are_not_abandoned_stay(systmp):
    """Kept on purpose or made by something else (no mark), a link named like one (never followed),
    and a file: all stay."""
    kept = systmp / "wbcap-fbx-kept"
    kept.mkdir()
    (kept / "track_0.fbx.blender.log").write_text("log")
    target = systmp / "elsewhere"
    target.mkdir()
    (target / MARK_FILE).write_text("{}")
    (systmp / "wbcap-fbx-link").symlink_to(target)
    (systmp / "wbcap-fbx-file").write_text("x")
    assert remove_abandoned("wbcap-fbx-") == []
    assert (kept / "track_0.fbx.blender.log").is_file() and (target / MARK_FILE).is_file()
    assert (systmp / "wbcap-fbx-link").is_symlink() and (systmp / "wbcap-fbx-file").is_file()


def test_a_removal_that_fails_part_way_is_tried_again(systmp, monkeypatch):
    """The mark goes last: a folder that could not be emptied keeps it and is tried again (a
    review: with the mark gone first it stayed for good)."""
    left = abandoned_folder(systmp)
    (left / "sub").mkdir()
    real = temp_folders.shutil.rmtree
    monkeypatch.setattr(temp_folders.shutil, "rmtree", lambda path, ignore_errors=False: None)
    assert remove_abandoned("wbcap-fbx-") == [] and (left / MARK_FILE).is_file() and (left / "sub").is_dir()
    monkeypatch.setattr(temp_folders.shutil, "rmtree", real)
    assert remove_abandoned("wbcap-fbx-") == [left] and not left.exists()


def test_temp_folder_is_removed_on_any_exit_unless_kept(systmp, monkeypatch):
    with pytest.raises(KeyboardInterrupt), temp_folder("wbcap-view-") as folder:
        assert (folder.path / MARK_FILE).is_file()
        raise KeyboardInterrupt
    assert not folder.path.exists()
    with temp_folder("wbcap-fbx-") as kept:
        (kept.path / "a.log").write_text("x")
        kept.keep()
    assert [p.name for p in kept.path.iterdir()] == ["a.log"]
    assert remove_abandoned("wbcap-fbx-") == []  # (no mark: kept for good)
    # a file system without flock: no mark, so never taken for abandoned, and still removed at the end
    monkeypatch.setattr(temp_folders, "flock_nowait", lambda fd, shared=False: None)
    with temp_folder("wbcap-fbx-") as unlocked:
        assert list(unlocked.path.iterdir()) == []
    assert not unlocked.path.exists()
    # the mark cannot be written (a full disk): the new folder goes again, nothing is left
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    before = set(systmp.iterdir())

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError), temp_folder("wbcap-fbx-"):
        pass
    monkeypatch.undo()
    assert set(systmp.iterdir()) == before
