"""Unexpected failures end as one line plus a crash log, not a traceback (issue 10, item 7)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wbcap.cli import CRASH_EXIT_CODE, cli, crash_log_dir


def _boom(*args, **kwargs):
    raise RuntimeError("boom:\n  the disk said no")


@pytest.fixture()
def crashing_doctor(monkeypatch):
    import wbcap.doctor

    monkeypatch.setattr(wbcap.doctor, "run_checks", _boom)


def _log_path(line: str) -> Path:
    match = re.search(r"full traceback in (\S+\.log)$", line)
    assert match, line
    return Path(match.group(1))


def test_crash_is_one_line_and_a_log_file(crashing_doctor):
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == CRASH_EXIT_CODE == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert line.startswith("error: wbcap doctor failed: RuntimeError: boom: the disk said no (")
    assert "wbcap/cli/doctor.py:" in line and " in doctor" in line  # where, in wbcap's code
    assert "Traceback" not in r.stderr
    log = _log_path(line)
    assert log.parent == crash_log_dir() and log.name.startswith("crash-")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom:" in text and "_boom" in text
    assert "command: wbcap" in text


def test_a_crash_naming_a_path_that_is_not_utf8_is_logged(monkeypatch):
    """A user trial: `wbcap view "lat\\xe9"` crashed, and the crash report crashed writing the
    log (strict UTF-8), leaving an empty log and a raw two-part traceback. The log keeps the
    name's own bytes."""
    import os

    import wbcap.doctor

    name = os.fsdecode(b"run_out/lat\xe9")

    def boom(*args, **kwargs):
        raise OSError(f"cannot read {name}")

    monkeypatch.setattr(wbcap.doctor, "run_checks", boom)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == CRASH_EXIT_CODE and len(r.stderr.splitlines()) == 1, r.stderr
    assert b"OSError: cannot read run_out/lat\xe9" in _log_path(r.stderr.strip()).read_bytes()


@pytest.mark.parametrize("flag", ["--debug", "-v"])
def test_debug_or_verbose_also_prints_the_traceback(crashing_doctor, flag):
    r = CliRunner().invoke(cli, [flag, "doctor"])
    assert r.exit_code == 1
    assert "Traceback (most recent call last)" in r.stderr and "in _boom" in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: wbcap doctor failed: RuntimeError") and _log_path(last).is_file()


def test_log_falls_back_to_the_temp_folder(crashing_doctor, monkeypatch, tmp_path):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    monkeypatch.setenv("WBCAP_HOME", str(blocked))  # <home>/logs cannot be created
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    r = CliRunner().invoke(cli, ["doctor"])
    log = _log_path(r.stderr.splitlines()[-1])
    # (this user's own folder, readable by the user only: a shared one refused the next user's logs)
    assert log.parent == tmp_path / "tmp" / f"wbcap-logs-{os.getuid()}" and "Traceback" in log.read_text()
    assert log.parent.stat().st_mode & 0o777 == 0o700


def test_a_working_folder_that_is_gone_is_one_line(tmp_path, monkeypatch, crashing_doctor):
    """Run from a folder deleted meanwhile (an admin's trial): before the start, torch's MKL ended
    the process with a bare "FATAL ERROR"; while running, the crash report itself failed (a
    second traceback). Now one line with the fix; a crash then names the likely cause."""
    import subprocess
    import sys

    gone = tmp_path / "gone"
    gone.mkdir()
    script = f"cd {gone} && rmdir {gone} && exec {sys.executable} -m wbcap doctor"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr == ("error: wbcap cannot run: its working folder no longer exists (deleted or moved); cd to an "
                           "existing folder and run it again\n"), proc.stderr
    # help and the version need no folder (they were refused too: a locales trial)
    gone.mkdir()
    script = (f"cd {gone} && rmdir {gone} && {sys.executable} -m wbcap run --help && {sys.executable} -m wbcap -h "
              f"&& {sys.executable} -m wbcap --version")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc
    assert proc.stdout.startswith("Usage: wbcap run [OPTIONS] SOURCE") and "Usage: wbcap [OPTIONS] COMMAND" in proc.stdout
    assert proc.stdout.rstrip().endswith("version 0.1.0")
    gone.mkdir()  # (--help as an option's value is no help: refused, not torch's MKL crash)
    script = f"cd {gone} && rmdir {gone} && exec {sys.executable} -m wbcap image a.jpg -o --help"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "its working folder no longer exists" in proc.stderr, proc
    import wbcap.cli as cli_module

    monkeypatch.setattr(cli_module, "_working_folder_gone", lambda: True)  # (deleted while it ran)
    r = CliRunner().invoke(cli, ["doctor"])
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: wbcap doctor failed: RuntimeError") and "; its working folder no longer exists" in line
    _log_path(line)


def test_a_crash_of_a_failed_allocation_says_it_ran_out_of_memory(monkeypatch):
    import wbcap.doctor
    import wbcap.limits

    def oom(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes")

    monkeypatch.setattr(wbcap.doctor, "run_checks", oom)
    monkeypatch.setattr(wbcap.limits, "memory_limits", lambda: [])
    line = CliRunner().invoke(cli, ["doctor"]).stderr.splitlines()[-1]
    assert "; it ran out of memory: free memory (close other programs); full traceback in " in line, line
    monkeypatch.setattr(wbcap.limits, "memory_limits", lambda: [("ulimit -d", 1_000_000_000)])
    line = CliRunner().invoke(cli, ["doctor"]).stderr.splitlines()[-1]
    assert "; it ran out of memory: raise the memory limit (ulimit -d, now 1.0 GB); full traceback in " in line, line


def _raised_in(path: str, function: str, exc: BaseException, *outer: tuple[str, str]) -> BaseException:
    """``exc`` as raised by ``function`` of a file at ``path`` (its traceback's last frame), called
    through the ``outer`` ``(path, function)`` frames, outermost first."""
    namespace: dict = {}
    exec(compile(f"def {function}(exc):\n    raise exc\n", path, "exec"), namespace)
    call = namespace[function]
    for where, name in reversed(outer):
        scope = {"inner": call}
        exec(compile(f"def {name}(exc):\n    inner(exc)\n", where, "exec"), scope)
        call = scope[name]
    try:
        call(exc)
    except BaseException as raised:  # (the one just raised)
        return raised
    raise AssertionError("not raised")


@pytest.mark.parametrize(("command", "where", "function", "limits", "expected"), [
    ("run", "wbcap/export/video_render.py", "render_frames", [("ulimit -v", 2_560_000_000)],
     "it ran out of memory while rendering: leave the renders out (--no-render) or raise the memory limit (ulimit -v, "
     "now 2.6 GB) (`wbcap run` took about 2.9 GB of address space with its video, 2.0 GB without); the frames done are "
     "kept: the same command with --resume goes on"),
    ("image", "wbcap/model/fused.py", "fold_batchnorm", [("ulimit -v", 1_536_000_000)],
     "it ran out of memory while preparing the network (it takes about 1.2 GB of memory): raise the memory limit "
     "(ulimit -v, now 1.5 GB) (`wbcap run` took about 2.9 GB of address space with its video, 2.0 GB without)"),
    ("image", "wbcap/model/fused.py", "forward", [],
     "it ran out of memory: free memory (close other programs) or use fewer images per batch (--batch-size, where it "
     "is above 1)"),
    ("view", "wbcap/view/manifest.py", "read_output", [("ulimit -v", 350_000_000)],
     "it ran out of memory: raise the memory limit (ulimit -v, now 0.3 GB)"),
    ("eval", "wbcap/model/fused.py", "forward", [("the container's or cgroup's memory limit", 4_000_000_000)],
     "it ran out of memory: raise the memory limit (the container's or cgroup's memory limit, now 4.0 GB) or use fewer "
     "images per batch (--batch-size, where it is above 1)"),
])
def test_the_memory_advice_follows_where_it_ran_out_and_the_commands_options(monkeypatch, command, where, function,
                                                                             limits, expected):
    """A low-memory trial: every command was told the same (`--batch-size`, `ulimit -v`): also
    `wbcap view`, which has no --batch-size, a network that ran out while being prepared, where a
    batch size changes nothing, and under `ulimit -d`; a render that ran out was not told of
    --no-render (and `wbcap run --no-render` then fitted). A review: a run's decoding or cropping
    in the batches' loop (wbcap/model/batching.py) was said to be preparing the network."""
    import wbcap.limits
    from wbcap.cli import crash_hint

    monkeypatch.setattr(wbcap.limits, "memory_limits", lambda: limits)
    exc = _raised_in(f"/site/{where}", function, MemoryError())
    assert crash_hint(exc, command) == "; " + expected
    through_batches = _raised_in("/site/wbcap/io/video_reader.py", "_iter_video", MemoryError(),
                                 ("/site/wbcap/model/batching.py", "regress_in_batches"))
    assert "preparing" not in crash_hint(through_batches, "run")
    in_torch = _raised_in("/home/u/wbcap/.venv/lib/python3.11/site-packages/torch/serialization.py", "load",
                          MemoryError(), ("/site/wbcap/model/fused.py", "fold_batchnorm"))
    assert "preparing" in crash_hint(in_torch, "image")  # (torch's frame, in a venv below a folder named wbcap, not ours)


def test_a_crash_of_a_thread_that_could_not_start_says_which_limits(monkeypatch):
    """`ulimit -v` low enough that a thread's stack did not fit: "RuntimeError: can't start new
    thread" with no hint (a break-it trial); the video encoder's "Resource temporarily unavailable"
    (BlockingIOError) likewise (a low-memory trial: a crash line with no hint)."""
    import wbcap.doctor
    import wbcap.limits
    from wbcap.cli import crash_hint

    def no_thread(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(wbcap.doctor, "run_checks", no_thread)
    monkeypatch.setattr(wbcap.limits, "memory_limits", lambda: [])
    line = CliRunner().invoke(cli, ["doctor"]).stderr.splitlines()[-1]
    assert line.startswith("error: wbcap doctor failed: RuntimeError: can't start new thread (") and \
        "; it could not start a thread (a memory limit, or the limit on processes and threads, ulimit -u): free memory " \
        "(close other programs); full traceback in " in line, line
    encoder = _raised_in("/site/wbcap/io/video_writer.py", "_encode",
                         BlockingIOError(11, "Resource temporarily unavailable"))
    assert crash_hint(encoder, "run").startswith("; it could not start a thread (a memory limit, or the limit on "
                                                 "processes and threads, ulimit -u) while rendering: leave the renders "
                                                 "out (--no-render) or free memory")
    assert crash_hint(_raised_in("/site/wbcap/io/raw_records.py", "append", BlockingIOError(11, "x")), "run") == ""


def test_a_terminal_in_another_encoding_gets_question_marks_not_a_crash(tmp_path):
    """`LANG=C` without Python's UTF-8 mode, or a Latin-1 terminal: `wbcap weights list` and the
    help of `image` and `run` failed with UnicodeEncodeError on a dash or an ellipsis (an admin's
    trial). `python -m wbcap` runs the command too (it did not exist)."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONIOENCODING": "ascii", "WBCAP_HOME": str(tmp_path / "home")}
    for args in (["weights", "list"], ["image", "--help"], ["run", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "wbcap", *args], capture_output=True, env=env, check=False)
        assert proc.returncode == 0, (args, proc.stderr.decode(errors="replace")[-1000:])
        assert b"Traceback" not in proc.stderr and proc.stdout.isascii() and b"?" in proc.stdout, args


def test_crash_names_the_image_being_processed(monkeypatch, tmp_path):
    import wbcap.io.images
    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", classmethod(lambda cls, cfg: object()))
    monkeypatch.setattr(wbcap.io.images, "load_image", lambda path: (_ for _ in ()).throw(ValueError("odd pixels")))
    img = tmp_path / "x.jpg"
    img.write_bytes(b"not decoded")
    r = CliRunner().invoke(cli, ["-q", "image", str(img), "-o", str(tmp_path / "out"), "--full-image"])
    assert r.exit_code == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: wbcap image failed: ValueError: odd pixels (")
    assert f"while processing {img}" in line


def test_user_errors_interrupts_and_usage_errors_unchanged(monkeypatch):
    import wbcap.doctor

    r = CliRunner().invoke(cli, ["image"])  # click's usage error
    assert r.exit_code == 2 and "Missing argument" in r.stderr and "crash" not in r.stderr

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(wbcap.doctor, "run_checks", interrupt)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted"

    from wbcap.errors import InputError

    def user_error(*a, **k):
        raise InputError("photo.jpg: not an image; pass a JPEG")

    monkeypatch.setattr(wbcap.doctor, "run_checks", user_error)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 2 and r.stderr == "error: photo.jpg: not an image; pass a JPEG\n"


def test_real_process_exit_status_and_stderr(tmp_path):
    code = (
        "import wbcap.doctor as d\n"
        "def f(*a):\n    raise KeyError('gender')\n"
        "d.run_checks = f\n"
        "from wbcap.cli import main\n"
        "main(['doctor'])\n"
    )
    env = {**__import__("os").environ, "WBCAP_HOME": str(tmp_path / "home")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 1 and res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert line.startswith("error: wbcap doctor failed: KeyError: 'gender' (")
    log = _log_path(line)
    assert log.parent == tmp_path / "home" / "logs" and "KeyError: 'gender'" in log.read_text()


@pytest.mark.parametrize("filename", ["tmp", "plain", None])
def test_a_full_disk_is_one_error_line_naming_the_final_file(monkeypatch, tmp_path, filename):
    """A write that finds the disk full (ENOSPC) is not a crash: one line naming the file being
    written (its final name, not the hidden temporary it was written under) and the fix; exit 2,
    no crash log."""
    import errno

    import wbcap.doctor
    from wbcap.atomic import _temp_sibling

    final = tmp_path / "out" / "render.mp4"
    name = {"tmp": str(_temp_sibling(final)), "plain": str(final), None: None}[filename]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", name)

    monkeypatch.setattr(wbcap.doctor, "run_checks", full)
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 2 and r.stdout == ""
    where = f"cannot write {final} (No space left on device)" if filename else "cannot write (No space left on device)"
    assert r.stderr.splitlines() == [f"error: {where}: free disk space"]  # (doctor has no output option to name)
    assert not list((tmp_path / "home").rglob("crash-*.log"))


@pytest.mark.parametrize("how", ["model file", "bare", "while handling"])
def test_out_of_open_files_is_said_as_such_not_blamed_on_the_file_read(monkeypatch, tmp_path, body_dir, how):
    """Under `ulimit -n 9`, `wbcap image` called the SMPL-X file "not a readable .npz archive" and
    said to download it again (a break-it trial: the file was fine, the process out of file
    descriptors). An EMFILE met anywhere, also behind the error it led to, is one line naming the
    limit and the fix; exit 2, no crash log."""
    import errno
    import resource

    import numpy as np

    import wbcap.doctor
    from wbcap.body import model_files

    def no_descriptors(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files", "/usr/lib/python3.11/encodings/cp437.py")

    def checks(*args, **kwargs):
        if how == "model file":
            monkeypatch.setattr(np, "load", no_descriptors)
            model_files.load_body_model_data(body_dir / "smplx" / "SMPLX_NEUTRAL.npz")
        elif how == "bare":
            no_descriptors()
        try:
            no_descriptors()
        except OSError:
            raise RuntimeError("a library's own error about it") from None

    monkeypatch.setattr(wbcap.doctor, "run_checks", checks)
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(cli, ["doctor"])
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.splitlines() == [f"error: too many open files: this process may have {limit} open at once "
                                     "(ulimit -n); raise the limit (ulimit -n 4096) and run the command again"]
    assert not list((tmp_path / "home").rglob("crash-*.log"))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE as Linux has it")
def test_the_open_files_line_is_made_with_every_descriptor_taken():
    """In a process that has used up its open files, the handler's own import of wbcap.limits
    failed with EMFILE: a traceback where the one line was to be (a code review). A fresh
    process takes every descriptor, then asks for the line."""
    code = """
import errno, os, resource
from wbcap.cli import _out_of_file_descriptors
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    line = _out_of_file_descriptors(exc)
for fd in held:
    os.close(fd)
print(line)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == ("too many open files: this process may have 64 open at once (ulimit -n); raise the limit "
                           "(ulimit -n 4096) and run the command again\n")


def test_the_open_files_line_says_when_the_hard_limit_is_lower_than_its_fix():
    """`ulimit -n 4096` fails without privileges where the hard limit is lower (a code review):
    the line says so."""
    import errno

    import wbcap.cli as cli_module

    limits = {False: 9, True: 1024}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_module, "open_files_limit", lambda hard=False: limits[hard])
        line = cli_module._out_of_file_descriptors(OSError(errno.EMFILE, "Too many open files"))
        assert line == ("too many open files: this process may have 9 open at once (ulimit -n); raise the limit "
                        "(ulimit -n 4096; its hard limit, 1024, is lower: ask the administrator) and run the command "
                        "again")
        limits[True] = None  # (unlimited)
        assert "hard limit" not in cli_module._out_of_file_descriptors(OSError(errno.EMFILE, "Too many open files"))


def test_a_file_too_large_is_one_error_line_not_a_crash(monkeypatch, tmp_path):
    """EFBIG (`ulimit -f`, a file system's largest file) is an error the user fixes, as a full
    disk is: one line, exit 2, no crash log (a user trial got "wbcap export failed: OSError")."""
    import errno

    import wbcap.doctor

    def too_large(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large", str(tmp_path / "out" / "track_0.glb"))

    monkeypatch.setattr(wbcap.doctor, "run_checks", too_large)
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [f"error: cannot write {tmp_path / 'out' / 'track_0.glb'} (File too large): "
                                     "raise the file size limit (ulimit -f)"]
    assert not list((tmp_path / "home").rglob("crash-*.log"))


def test_a_name_too_long_for_the_file_system_is_one_line_naming_it(tmp_path, monkeypatch):
    """A name over 255 bytes crashed `wbcap run`, `image`, `export` and `demo` (ENAMETOOLONG from
    Path.exists and mkdir; a paths trial): one line naming the path and its longest name, exit 2,
    no crash log. A photo whose output folder's temporary name passes 255 bytes was told its
    output folder could not be written in."""
    from wbcap.atomic import NAME_MAX, TEMP_NAME_EXTRA, long_name_message, staged_dir
    from wbcap.errors import InputError

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    (tmp_path / "run").mkdir()
    long = "z" * 260
    r = CliRunner().invoke(cli, ["export", str(tmp_path / "run"), "--format", "bvh", "--dest", str(tmp_path / long)])
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr == (f"error: {tmp_path / long}: too long for the file system: its name '{'z' * 37}...' is 260 "
                        "bytes, and a name may have at most 255; choose a shorter name\n")
    assert not list((tmp_path / "home").rglob("crash-*.log"))
    stem = "t" * (NAME_MAX - TEMP_NAME_EXTRA + 1)  # (fits as a name, not as its temporary one)
    with pytest.raises(InputError) as caught, staged_dir(tmp_path / "out" / stem):
        pass
    assert str(caught.value) == (f"{tmp_path / 'out' / stem}: too long for the file system: its name '{'t' * 37}...' "
                                 f"is {len(stem)} bytes, and wbcap writes it first under a temporary name 18 bytes "
                                 "longer, past the 255 a name may have; choose a shorter name")
    with staged_dir(tmp_path / "out" / stem[1:]) as stage:  # (one byte shorter: taken)
        (stage / "x").write_text("x")
    assert (tmp_path / "out" / stem[1:] / "x").is_file()
    assert long_name_message(tmp_path / ("é" * 130)).endswith("is 260 bytes, and a name may have at most 255; choose "
                                                               "a shorter name")
    assert "its name '\\xff\\xff" in long_name_message(tmp_path / os.fsdecode(b"\xff" * 300))  # (bytes shown as such)
    deep = tmp_path.joinpath(*["d" * 200] * 21)
    assert long_name_message(deep) == (f"{deep}: too long for the file system: the path is {len(os.fsencode(str(deep)))} "
                                       "bytes; choose a shorter path (fewer or shorter folders)")
    # a path in a folder a variable names says so (a long $WBCAP_HOME was not said to be the cause: a paths trial)
    home = tmp_path / ("h" * 260)
    monkeypatch.setenv("WBCAP_HOME", str(home))
    assert long_name_message(home / "cache" / "x.json").endswith("; choose a shorter name (the path is in $WBCAP_HOME)")
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 2 and r.stderr.endswith("; choose a shorter name (the path is in $WBCAP_HOME)\n"), r.output


def test_a_file_output_too_long_for_its_temporary_name_is_refused_before_any_work(tmp_path, monkeypatch):
    """`wbcap train merge -o` of a 249-byte name merged, then failed (a break-it trial); a picture
    whose output folder's temporary name would be too long is refused naming the picture."""
    import wbcap.train.merge as merge
    from wbcap.atomic import NAME_MAX, TEMP_NAME_EXTRA, check_name_length, check_writable_file
    from wbcap.errors import InputError
    from wbcap.export.image_outputs import output_names

    out = tmp_path / ("u" * (NAME_MAX - TEMP_NAME_EXTRA + 1))
    with pytest.raises(InputError, match=r"wbcap writes it first under a temporary name 18 bytes longer"):
        check_writable_file(out)
    check_name_length(out, temporary=False)
    check_writable_file(tmp_path / ("u" * (NAME_MAX - TEMP_NAME_EXTRA)))
    monkeypatch.setattr(merge, "_merge", lambda *a, **k: pytest.fail("merged"))
    with pytest.raises(InputError, match=r"too long for the file system"):
        merge.merge_hand_into_body(tmp_path / "b.pth", tmp_path / "h.pth", out)
    photo = f"in/{'p' * 238}.jpg"
    with pytest.raises(InputError) as caught:
        output_names([photo, "in/b.jpg"])
    assert str(caught.value) == (f"{photo}: its name is 238 bytes before its extension; its output folder, named after "
                                 "it, is written first under a temporary name 18 bytes longer, past the 255 a name may "
                                 "have: rename the picture (at most 237 bytes before its extension)")
    assert output_names([f"in/{'p' * 237}.jpg"]) == ["p" * 237]


@pytest.mark.parametrize("command, option", [(["image", "x.jpg"], "-o"), (["export", "run"], "--dest"),
                                             (["view", "run"], "--html"), (["eval", "--dataset", "EHF"], "--out"),
                                             (["bench"], "--json-out"), (["train", "merge"], "-o"),
                                             (["weights", "list"], None)])
def test_a_full_disk_names_the_running_commands_output_option(monkeypatch, tmp_path, command, option):
    """The fix names the running command's own output option (it said -o to every command;
    `wbcap export` has --dest, `wbcap view` --html); a file in wbcap's own folder names WBCAP_HOME."""
    import errno

    from wbcap.cli import _disk_full_message

    ctx = click.Context(cli, info_name="wbcap")
    ctx.invoked_subcommand = command[0]
    out = tmp_path / "out.bin"
    message = _disk_full_message(OSError(errno.ENOSPC, "No space left on device", str(out)), ctx)
    fix = "free disk space" + (f" or point {option} to another disk" if option else "")
    assert message == f"cannot write {out} (No space left on device): {fix}"
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    own = tmp_path / "home" / "weights" / "w.pth"
    assert _disk_full_message(OSError(errno.ENOSPC, "No space left on device", str(own)), ctx) == (
        f"cannot write {own} (No space left on device): free disk space or set WBCAP_HOME to a folder on another disk")
    # a file over the file size limit (EFBIG, `ulimit -f`): a crash log before (a user trial)
    assert _disk_full_message(OSError(errno.EFBIG, "File too large", str(out)), ctx) == (
        f"cannot write {out} (File too large): raise the file size limit (ulimit -f)"
        + (f" or point {option} to another disk" if option else ""))
    monkeypatch.delenv("WBCAP_HOME")  # the cache too, which is apart from the data folder then
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg_data"))
    cached = tmp_path / "xdg_cache" / "wbcap" / "demo_body_models" / "smplx" / "SMPLX_NEUTRAL.npz"
    assert _disk_full_message(OSError(errno.ENOSPC, "No space left on device", str(cached)), ctx).endswith(
        "free disk space or set WBCAP_HOME to a folder on another disk")
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    # a copy (`wbcap weights import`): shutil names the source first, the file being written second
    copy = OSError(errno.ENOSPC, "No space left on device", "/media/yolox_nano.onnx", None, str(own))
    assert _disk_full_message(copy, ctx).startswith(f"cannot write {own} (No space left on device): free disk space "
                                                     "or set WBCAP_HOME")


def test_final_path_undoes_every_temporary_name():
    from wbcap.atomic import _temp_sibling, final_path

    for final in (Path("/a/render.mp4"), Path("/a/track_0.glb"), Path("b/out.tar.gz"), Path("/a/meshes"),
                  Path("/a/.hidden.json")):
        for kind in ("tmp", "staging", "old"):
            temp = _temp_sibling(final, kind)
            assert temp != final and final_path(temp) == final and final_path(str(temp)) == final
        assert final_path(final) == final
    assert final_path("/a/.x.tmp-zz.mp4") == Path("/a/.x.tmp-zz.mp4")  # not one of ours
    # a file inside a staging folder: every component
    stage = _temp_sibling(Path("/out/photo"), "staging")
    assert final_path(stage / "person_0" / _temp_sibling(Path("output.obj")).name) == Path("/out/photo/person_0/output.obj")


@pytest.mark.parametrize("where", ["atomic_path", "staged_dir"])
def test_a_full_disk_met_through_an_open_file_names_the_output(tmp_path, where):
    """Libraries writing through an open file raise ENOSPC without a file name (seen: the OBJ
    writer on a full tmpfs gave "cannot write (No space left on device)"); the atomic writers
    name what they were writing, by its final name."""
    import errno

    from wbcap.atomic import atomic_path, final_path, staged_dir

    target = tmp_path / "out" / "photo"
    target.parent.mkdir()
    block = atomic_path(target / "output.obj") if where == "atomic_path" else staged_dir(target)
    if where == "atomic_path":
        target.mkdir()
    with pytest.raises(OSError) as info, block:
        raise OSError(errno.ENOSPC, "No space left on device")
    assert final_path(info.value.filename) == (target / "output.obj" if where == "atomic_path" else target)
    with pytest.raises(OSError) as info, atomic_path(tmp_path / "named.bin"):  # a named one keeps its name
        raise OSError(errno.ENOSPC, "No space left on device", "/elsewhere/x")
    assert info.value.filename == "/elsewhere/x"
    with pytest.raises(OSError) as info, atomic_path(tmp_path / "pipe.bin"):  # not a full disk: left alone
        raise OSError(errno.EPIPE, "Broken pipe")
    assert info.value.filename is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["out", "photo"] if where == "atomic_path" else ["out"])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (Linux's always-full device)")
def test_a_full_disk_while_pass_1_writes_its_records_names_the_raw_file():
    """`wbcap run` on a full disk said "cannot write (No space left on device)" with no file (a
    break-it trial): the raw file's writes and its flush name it."""
    import errno

    from wbcap.io.raw_records import RawWriter

    with pytest.raises(OSError) as info, RawWriter(Path("/dev/full")) as raw:
        raw.append([(0, 0.0, [64, 48], [])])
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, "/dev/full")


def test_an_output_folder_that_cannot_be_written_in_says_so(tmp_path, monkeypatch):
    """An existing folder on a read-only disk is not one that "cannot be created"."""
    import errno

    from wbcap.atomic import staged_dir
    from wbcap.errors import InputError

    real = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.name.startswith("."):  # the staging folder
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(InputError) as info, staged_dir(tmp_path / "photo"):
        pass
    assert str(info.value) == (f"{tmp_path}: cannot write in this folder (Read-only file system); "
                               "choose another output folder")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="afile: cannot create the output folder"), staged_dir(tmp_path / "afile" / "photo"):
        pass


@pytest.mark.parametrize("errno_name", ["EROFS", "EACCES", "ENOENT"])
def test_a_folder_refusing_the_output_file_is_one_error_line(tmp_path, monkeypatch, errno_name):
    """The folder refusing the temporary file itself (read-only disk, no permission, a pseudo file
    system such as /proc) is the user's choice of folder: one line naming it, no crash report.
    Any other OSError inside the block stays what it is."""
    import builtins
    import errno

    from wbcap.atomic import atomic_write_text
    from wbcap.errors import InputError

    real_open = builtins.open

    def refusing(file, mode="r", *args, **kwargs):
        if "x" in mode and Path(file).name.startswith(".ev.tmp-"):
            raise OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    with pytest.raises(InputError) as info:
        atomic_write_text(tmp_path / "ev.json", "{}")
    assert str(info.value).startswith(f"{tmp_path}: cannot write ev.json in this folder (")
    assert list(tmp_path.iterdir()) == []
    from wbcap.atomic import atomic_path

    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "ok.json"):  # not the temporary: left alone
        real_open(tmp_path / "missing" / "x")


def test_an_unwritable_eval_or_bench_output_is_refused_before_any_work(tmp_path):
    """`wbcap eval --out` and `wbcap bench --json-out` into a folder that cannot exist (under a
    file): one error line before loading anything (they crashed after the whole run before)."""
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "results.json"
    for args in (["eval", "--dataset", "EHF", "--data-root", str(tmp_path / "nowhere"), "--out", str(target)],
                 ["bench", "--detect-only", "--json-out", str(target)]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2, (args, r.output)
        assert (f"{tmp_path / 'afile'}: is a file, so {target} cannot be written" in r.output
                and "Traceback" not in r.output), r.output
    if Path("/proc/self").is_dir():  # os.access says yes to root there, but no file can be made
        r = CliRunner().invoke(cli, ["bench", "--detect-only", "--json-out", "/proc/wbcap-bench.json"])
        assert r.exit_code == 2 and "/proc: cannot write wbcap-bench.json in this folder" in r.output, r.output
        assert "bench:" not in r.output  # (refused before any timing)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_an_output_in_proc_is_one_error_line():
    """A real folder that refuses files: /proc (ENOENT for any new name)."""
    from wbcap.atomic import atomic_write_text
    from wbcap.errors import InputError

    with pytest.raises(InputError, match=r"^/proc: cannot write wbcap-test\.json in this folder"):
        atomic_write_text("/proc/wbcap-test.json", "{}")


def test_a_missing_folder_is_the_callers_error_not_the_users(tmp_path):
    """atomic_path wants an existing folder: a missing one stays FileNotFoundError (a bug to see),
    not "choose another output folder"."""
    from wbcap.atomic import atomic_write_text
    from wbcap.errors import InputError

    with pytest.raises(FileNotFoundError) as info:
        atomic_write_text(tmp_path / "nodir" / "x.json", "{}")
    assert not isinstance(info.value, InputError)


def test_a_full_disk_while_the_synthetic_model_is_written_names_it(tmp_path, monkeypatch):
    """numpy's zip writer gave a full disk no file name: `wbcap demo` said "cannot write (No space
    left on device) ... (-o)", though -o was not on the full disk. The model file is named."""
    import errno

    import wbcap.testing.synthetic_body
    from wbcap.pipeline import synthetic_body_models_dir

    def full(folder, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(wbcap.testing.synthetic_body, "write_synthetic_smplx", full)
    with pytest.raises(OSError) as info:
        synthetic_body_models_dir()
    assert info.value.filename == str(tmp_path / "home" / "cache" / "demo_body_models" / "smplx" / "SMPLX_NEUTRAL.npz")


def test_a_path_of_an_unknown_users_home_is_one_line(tmp_path, monkeypatch):
    """`--html '~x.html'` (and `-o '~x/out'`) crashed in Path.expanduser(): "~x" is the home folder
    of a user x, whom this machine does not have, and pathlib reads "./~x.html" so too."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    monkeypatch.chdir(tmp_path)
    name = "~nosuchuser-wbcap"
    run = tmp_path / "run"
    run.mkdir()
    (run / "params.jsonl").write_text("")
    for args in (["view", str(run), "--html", f"{name}.html"], ["view", str(run), f"--html=./{name}.html"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 2, r.output
        typed = args[-1] if args[-1].startswith("~") else args[-1].partition("=")[2]
        assert r.output == (f"error: {typed}: there is no user 'nosuchuser-wbcap.html' on this machine, whose home "
                            f"folder ~nosuchuser-wbcap.html would be; give that path in full (e.g. "
                            f"{tmp_path / name}.html)\n"), r.output
    assert list(tmp_path.iterdir()) == [run]


@pytest.mark.parametrize("args, name", [
    (["run", "", "-o", "{tmp}/o"], "'SOURCE'"), (["run", "{tmp}/v.mp4", "-o", ""], "'-o' / '--out'"),
    (["image", "{tmp}/a.jpg", "", "-o", "{tmp}/o"], "'PATHS...'"), (["export", ""], "'RUN'"),
    (["export", "{tmp}", "--dest", " "], "'--dest'"), (["view", ""], "'OUT'"),
    (["weights", "import", "yolox-nano", ""], "'FILE'"), (["doctor", "--body-models", ""], "'--body-models'"),
    (["train", "body", "-o", ""], "'-o' / '--out'"), (["demo", "--video", ""], "'--video'"),
])
def test_an_empty_path_is_refused_in_one_line(tmp_path, monkeypatch, args, name):
    """`wbcap run ""` read the current folder as its source (its images, had it held some), and
    `-o ""` would write there (a user trial): every file or folder of the CLI refuses an empty
    (or blank) one in one line, before anything is read or written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"")
    r = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args], prog_name="wbcap")
    command = " ".join(a for a in args[:2] if a in ("run", "image", "export", "view", "weights", "import", "doctor",
                                                    "train", "body", "demo"))
    assert r.exit_code == 2 and r.stderr == (f"error: Invalid value for {name}: an empty path; name a file or folder "
                                             f"(see 'wbcap {command} --help')\n"), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg"]


@pytest.mark.parametrize("args, name, said", [
    (["run", "http://127.0.0.1:9/x.mp4", "-o", "{tmp}/o"], "'SOURCE'",
     "http://127.0.0.1:9/x.mp4: an address, not a path; wbcap reads and writes local files and folders only (download "
     "an input first, e.g. with curl -LO, and name the file)"),
    (["run", "{tmp}/v.mp4", "-o", "s3://bucket/out"], "'-o' / '--out'",
     "s3://bucket/out: an address, not a path; wbcap reads and writes local files and folders only (download an "
     "input first, e.g. with curl -LO, and name the file)"),
    (["image", "file:///nowhere/a.jpg", "-o", "{tmp}/o"], "'PATHS...'",
     "file:///nowhere/a.jpg: a file address; give its path (/nowhere/a.jpg)"),
    # (a streaming trial: a camera's stream was told to be downloaded with curl, and stdin was "no such file")
    (["run", "rtsp://127.0.0.1:8554/cam", "-o", "{tmp}/o"], "'SOURCE'",
     "rtsp://127.0.0.1:8554/cam: an address, not a path; wbcap reads and writes local files and folders only (record "
     "a clip of it first, e.g. with wbcap record rtsp://127.0.0.1:8554/cam -o clip.mkv --seconds 60, and name the "
     "file)"),
    (["run", "-", "-o", "{tmp}/o"], "'SOURCE'",
     "-: standard input or output; wbcap reads and writes files and folders only: name one (a stream is saved to a "
     "file first, e.g. ... | wbcap record pipe:0 -o clip.mkv)"),
])
def test_an_address_is_refused_in_one_line(tmp_path, monkeypatch, args, name, said):
    """A user trial: `wbcap run http://host/x.mp4` said "http:/host/x.mp4: no such file" (the
    path's slashes folded). An address is named as one, before anything is read or written; a
    local name holding "://" that exists is still a path."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args], prog_name="wbcap")
    assert r.exit_code == 2 and r.stderr == f"error: Invalid value for {name}: {said} (see 'wbcap {args[0]} --help')\n"
    assert list(tmp_path.iterdir()) == []
    from wbcap.cli.common import NonEmptyPath

    (tmp_path / "odd:").mkdir()
    (tmp_path / "odd:" / "x.jpg").write_bytes(b"")  # (a folder named "odd:": "odd://x.jpg" names this file)
    assert NonEmptyPath().convert("odd://x.jpg", None, None) == "odd://x.jpg"


@pytest.mark.parametrize("args, name, said", [
    (["run", "{tmp}/v.mp4", "-o", "{tmp}/afile"], "'-o' / '--out'", "{tmp}/afile: is a file; name a folder"),
    (["demo", "-o", "{tmp}/afile"], "'-o' / '--out'", "{tmp}/afile: is a file; name a folder"),
    (["demo", "--image", "{tmp}"], "'--image'", "{tmp}: is a folder; name a file"),
])
def test_a_file_for_a_folder_and_a_folder_for_a_file_are_said_so(tmp_path, args, name, said):
    """Click said "Directory 'afile' is a file", naming no fix (a user trial)."""
    (tmp_path / "afile").write_text("mine")
    r = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args], prog_name="wbcap")
    assert r.exit_code == 2 and r.stderr == (f"error: Invalid value for {name}: {said.format(tmp=tmp_path)} "
                                             f"(see 'wbcap {args[0]} --help')\n"), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_damaged_cached_synthetic_model_is_written_again(tmp_path, monkeypatch, caplog):
    """A user trial: a cut-short cached synthetic SMPL-X model stopped `wbcap demo` (and bench) for
    good, saying to download SMPL-X again. It is written again, with a warning."""
    import logging

    import numpy as np

    import wbcap.testing.synthetic_body
    from wbcap.pipeline import synthetic_body_models_dir

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    target = tmp_path / "home" / "cache" / "demo_body_models" / "smplx" / "SMPLX_NEUTRAL.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"PK\x03\x04 cut short")
    written = []

    def write(folder, *args, **kwargs):
        written.append(folder)
        (Path(folder) / "smplx").mkdir(parents=True)
        np.savez(Path(folder) / "smplx" / "SMPLX_NEUTRAL.npz", v_template=np.zeros((3, 3)))
        return Path(folder)

    monkeypatch.setattr(wbcap.testing.synthetic_body, "write_synthetic_smplx", write)
    with caplog.at_level(logging.WARNING):
        synthetic_body_models_dir()
    assert len(written) == 1 and "v_template" in np.load(target).files
    assert f"{target}: the cached synthetic SMPL-X model is damaged; writing it again" in caplog.text
    synthetic_body_models_dir()  # (whole now: kept)
    assert len(written) == 1


def test_an_error_naming_a_newline_stays_one_line(tmp_path):
    """A detector spec with a newline split the error over two lines (a hostile-input trial):
    an error line escapes it, as it does other control characters."""
    from wbcap.testing.images import person_image
    from wbcap.testing.videos import write_video

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "o"), "--detector", "yolox:a\nb"],
                           prog_name="wbcap")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "YOLOX model a\\nb does not exist" in r.stderr, r.stderr
    from wbcap.console import printable

    assert printable("a\nb\x1b", one_line=True) == "a\\nb\\x1b" and printable("a\nb") == "a\nb"
    # a log line too: its message one line, a traceback its own lines
    import logging

    from wbcap.console import PrintableFormatter

    record = logging.LogRecord("wbcap", logging.WARNING, __file__, 1, "%s: skipped", ("a\nb\x1b.png",), None)
    assert PrintableFormatter("%(levelname)s %(message)s").format(record) == "WARNING a\\nb\\x1b.png: skipped"
    try:
        raise ValueError("x\ny")
    except ValueError:
        import sys

        record = logging.LogRecord("wbcap", logging.DEBUG, __file__, 1, "failed", (), sys.exc_info())
    lines = PrintableFormatter("%(message)s").format(record).splitlines()
    assert lines[0] == "failed" and lines[1].startswith("Traceback") and lines[-2:] == ["ValueError: x", "y"]
