"""wbcap's folders in the system's temporary folder: one a killed process left is removed by the
next folder of its kind, and nothing else is (wbcap/temp_folders.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from wbcap.temp_folders import OWNER_FILE, keep, make_temp_folder, remove_abandoned, temp_folder


@pytest.fixture()
def systmp(tmp_path, monkeypatch):
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _folder(parent, name, record):
    folder = parent / name
    folder.mkdir()
    (folder / "blender.log").write_text("log")
    if record is not None:
        (folder / OWNER_FILE).write_text(record if isinstance(record, str) else json.dumps(record))
    return folder


def test_a_folder_of_a_killed_process_is_removed_by_the_next_of_its_kind(systmp):
    """A process killed by SIGKILL with its folder made: the folder stays; the next folder of the
    same prefix removes it."""
    code = ("import os, signal, sys; from wbcap.temp_folders import make_temp_folder; "
            "print(make_temp_folder('wbcap-fbx-'), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(systmp)}, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = systmp / os.path.basename(proc.stdout.strip())
    assert left.parent == systmp and left.name.startswith("wbcap-fbx-") and left.is_dir()
    other_kind = systmp / "wbcap-view-abc"
    left_view = _folder(systmp, other_kind.name, {"host": socket.gethostname(), "pid": _dead_pid()})
    made = make_temp_folder("wbcap-fbx-")
    try:
        assert not left.exists()
        assert left_view.is_dir()  # (another prefix: removed by the next folder of its own kind)
        assert json.loads((made / OWNER_FILE).read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
    finally:
        keep(made)
    assert remove_abandoned("wbcap-view-") == [left_view] and not left_view.exists()
    assert made.is_dir() and remove_abandoned("wbcap-fbx-") == [] and made.is_dir()


def test_folders_that_are_not_abandoned_stay(systmp):
    """Kept on purpose (no record), owned by a running process, by another host (a temporary folder
    shared between containers), or with an unreadable record: all stay."""
    host = socket.gethostname()
    stays = [
        _folder(systmp, "wbcap-fbx-kept", None),
        _folder(systmp, "wbcap-fbx-running", {"host": host, "pid": os.getpid()}),
        _folder(systmp, "wbcap-fbx-parent", {"host": host, "pid": os.getppid()}),
        _folder(systmp, "wbcap-fbx-elsewhere", {"host": host + "-other", "pid": _dead_pid()}),
        _folder(systmp, "wbcap-fbx-garbled", "{not json"),
        _folder(systmp, "wbcap-fbx-nopid", {"host": host}),
        _folder(systmp, "wbcap-fbx-badpid", {"host": host, "pid": "x"}),
    ]
    gone = _folder(systmp, "wbcap-fbx-dead", {"host": host, "pid": _dead_pid()})
    # a link named like one: never followed into what it points to
    target = _folder(systmp, "elsewhere", {"host": host, "pid": _dead_pid()})
    (systmp / "wbcap-fbx-link").symlink_to(target)
    assert remove_abandoned("wbcap-fbx-") == [gone]
    assert all(p.is_dir() and (p / "blender.log").is_file() for p in stays)
    assert target.is_dir() and (systmp / "wbcap-fbx-link").is_symlink()


def test_temp_folder_is_removed_on_any_exit_and_keep_drops_the_record(systmp):
    with pytest.raises(KeyboardInterrupt), temp_folder("wbcap-view-") as folder:
        assert folder.parent == systmp and (folder / OWNER_FILE).is_file()
        raise KeyboardInterrupt
    assert not folder.exists()
    kept = make_temp_folder("wbcap-fbx-")
    keep(kept)
    keep(kept)  # (twice: no error)
    assert kept.is_dir() and list(kept.iterdir()) == []
