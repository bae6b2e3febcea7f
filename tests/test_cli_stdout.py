"""A stdout that cannot be written (a full disk: `wbcap ... > /dev/full`) is one `error:` line on
stderr that says so and repeats every line the command wrote or was to write, whatever the
command, help and version included; never a traceback, never the advice to change -o
(wbcap.cli.stdout)."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from wbcap.cli import main
from wbcap.cli.stdout import REPEATED_CHARS

FULL = "error: could not write to standard output (No space left on device)"
no_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")


class _Unwritable:
    """A text stdout whose writes fail with ``err`` (all of them, or once ``after`` lines are written)."""

    encoding, errors = "utf-8", "strict"

    def __init__(self, err: int = errno.ENOSPC, after: int = 0):
        self.err, self.after, self.written = err, after, []

    def write(self, text):
        if text and "".join(self.written).count("\n") >= self.after:
            raise OSError(self.err, os.strerror(self.err))
        self.written.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _main(capsys, args, stdout) -> tuple[int, str]:
    """``wbcap ARGS`` in this process with ``stdout``: (exit status, stderr)."""
    capsys.readouterr()
    captured = sys.stdout
    sys.stdout = stdout
    try:
        with pytest.raises(SystemExit) as exit_:
            main(args)
    finally:
        sys.stdout = captured
    return exit_.value.code, capsys.readouterr().err


def _stub_export(monkeypatch, tmp_path, written: list[Path], more=None):
    import wbcap.export.from_run

    def export_run(job):
        if more:
            more()
        return written

    monkeypatch.setattr(wbcap.export.from_run, "export_run", export_run)


def test_every_line_is_repeated_and_the_command_finishes_its_work(monkeypatch, capsys, tmp_path):
    """The first write fails; the command still does all it would (here: the export returns)
    and the one line lists every result line, the ones after the failure too; exit status 2."""
    files = [tmp_path / f"track_{i}.bvh" for i in range(4)]
    done = []
    _stub_export(monkeypatch, tmp_path, files, more=lambda: done.append(True))
    code, err = _main(capsys, ["export", str(tmp_path), "--format", "bvh"], _Unwritable())
    assert code == 2 and done
    assert err == f"{FULL}; the result was: {' | '.join(map(str, files))}\n"
    # a stdout that fails part way: the lines already written are repeated as well
    _stub_export(monkeypatch, tmp_path, files)
    stdout = _Unwritable(after=2)
    code, err = _main(capsys, ["export", str(tmp_path), "--format", "bvh"], stdout)
    assert code == 2 and "".join(stdout.written) == f"{files[0]}\n{files[1]}\n"
    assert err == f"{FULL}; the result was: {' | '.join(map(str, files))}\n"


def test_other_write_errors_name_their_reason_and_a_closed_pipe_stays_quiet(monkeypatch, capsys, tmp_path):
    _stub_export(monkeypatch, tmp_path, [tmp_path / "a.glb"])
    code, err = _main(capsys, ["export", str(tmp_path)], _Unwritable(errno.EIO))
    assert code == 2 and err == (f"error: could not write to standard output (Input/output error); "
                                 f"the result was: {tmp_path / 'a.glb'}\n")
    code, err = _main(capsys, ["export", str(tmp_path)], _Unwritable(errno.EPIPE))  # `| head`: as a shell tool
    assert code == 141 and err == ""  # (128 + SIGPIPE; 1 says an unexpected failure)
    # the top level's help and version too (click made them 1: a review)
    for args in (["--help"], ["--version"], ["weights", "--help"]):
        assert _main(capsys, args, _Unwritable(errno.EPIPE)) == (141, ""), args


def test_a_closed_pipe_ends_the_top_levels_help_with_141_in_a_real_process():
    """`wbcap --help | head -0`: the write fails with EPIPE in a process of its own, its buffer goes
    to /dev/null (no second error at exit), status 141, nothing on stderr."""
    for args in (["--help"], ["--version"]):
        read, write = os.pipe()
        os.close(read)  # (the reader is gone before the first write)
        try:
            r = subprocess.run([sys.executable, "-c", "from wbcap.cli import console_main\nconsole_main()", *args],
                               stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write)
        assert (r.returncode, r.stderr) == (141, ""), args


def test_a_served_view_stops_when_its_address_cannot_be_written(monkeypatch, capsys, tmp_path):
    """`wbcap view OUT` serves until Ctrl-C: without its address on stdout it stops at once."""
    import contextlib

    import wbcap.view.site

    @contextlib.contextmanager
    def serve_view(job):
        yield SimpleNamespace(url="http://127.0.0.1:8123/", wait=lambda: pytest.fail("served on"))

    monkeypatch.setattr(wbcap.view.site, "serve_view", serve_view)
    code, err = _main(capsys, ["view", str(tmp_path)], _Unwritable())
    assert code == 2 and err == f"{FULL}; the result was: wbcap view: http://127.0.0.1:8123/  (Ctrl-C to stop)\n"


def _wbcap_to_dev_full(tmp_path, *args, setup: str = "") -> subprocess.CompletedProcess:
    """``wbcap ARGS > /dev/full`` as the console script runs it, after the Python ``setup``."""
    code = f"{setup}\nfrom wbcap.cli import console_main\nconsole_main()"
    env = {**os.environ, "WBCAP_HOME": str(tmp_path / "home")}
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-c", code, *args], stdout=full, stderr=subprocess.PIPE, text=True,
                              env=env)


@no_dev_full
@pytest.mark.parametrize("args", [("--help",), ("image", "--help"), ("--version",), ("weights", "list"),
                                  ("weights", "verify"), pytest.param(("doctor",), marks=pytest.mark.slow)],
                         ids=" ".join)  # (doctor: 2.4 s, its checks import torch; the fast loop keeps under 2 minutes)
def test_commands_with_stdout_on_a_full_disk(tmp_path, args):
    """Each is one line that says stdout could not be written and repeats the output, exit status
    non-zero (doctor's 1 for its missing items), no crash log; not the -o advice of a full
    output folder."""
    res = _wbcap_to_dev_full(tmp_path, *args)
    (line,) = res.stderr.splitlines()
    assert res.returncode == (1 if args == ("doctor",) else 2)
    assert not (tmp_path / "home" / "logs").exists()
    if "--help" in args:  # (the help is not a result: not repeated)
        assert re.fullmatch(re.escape(FULL) + r"; the help \(\d+ lines\) was not written", line), line
        return
    assert line.startswith(f"{FULL}; the result was: "), res.stderr
    first = {"--version": "wbcap, version ", "weights": "hand4whole", "doctor": "[ok  ] user folders: "}[args[0]]
    assert line.split("; the result was: ", 1)[1].startswith(first), line
    assert len(line) < REPEATED_CHARS + 200
    if args == ("weights", "list"):  # (longer than that: whole lines, then how many were left out)
        assert re.search(r" \| \.\.\. \(\d+ more lines\)$", line), line[-200:]


@no_dev_full
def test_demo_with_stdout_on_a_full_disk_repeats_its_result_lines(tmp_path):
    """`wbcap demo -o D > /dev/full` repeated its first line (the detector) only: now all of
    them, the result line and the next steps included (the pipeline stubbed: the demo's own
    tests run it)."""
    setup = ("from pathlib import Path\nimport wbcap.demo\nfrom wbcap.image_app import ImageResult\n"
             f"r = [ImageResult(Path('example.jpg'), Path({str(tmp_path / 'D' / 'example')!r}), 1, None)]\n"
             "wbcap.demo.run_demo = lambda out, **kw: (r, 'yolox-nano')\n")
    res = _wbcap_to_dev_full(tmp_path, "demo", "-o", str(tmp_path / "D"), setup=setup)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"{FULL}; the result was: detector: yolox-nano | example.jpg: 1 person(s) -> "
                           f"{tmp_path / 'D' / 'example'} | This was a pipeline check"), line
    assert "(`wbcap doctor` shows what is still missing) | To try wbcap image" in line and line.endswith("-o try_ckpt`"), line


@pytest.mark.slow  # a fresh process that runs the pipeline
@no_dev_full
def test_image_with_stdout_on_a_full_disk(tmp_path, micro_ckpt, body_dir):
    import cv2

    from wbcap.testing.images import person_image

    photo, other = tmp_path / "walker.png", tmp_path / "xwalker.png"  # in this order
    cv2.imwrite(str(photo), person_image(160, 200)[:, :, ::-1])
    cv2.imwrite(str(other), person_image(160, 200, seed=3)[:, :, ::-1])
    res = _wbcap_to_dev_full(tmp_path, "image", str(photo), str(other), "-o", str(tmp_path / "out"),
                             "--bbox", "40,20,80,150", "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir),
                             "--device", "cpu", "--no-render")
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines()[-1] == (f"{FULL}; the result was: walker.png: 1 person(s) -> "
                                           f"{tmp_path / 'out' / 'walker'} | xwalker.png: 1 person(s) -> "
                                           f"{tmp_path / 'out' / 'xwalker'}")
    for name in ("walker", "xwalker"):  # both photos were still processed
        assert (tmp_path / "out" / name / "person_0" / "smplx_param.json").is_file()
    assert not (tmp_path / "home" / "logs").exists()


def test_result_lines_go_to_stdout_while_a_progress_bar_runs_on_a_terminal(monkeypatch, capsys):
    """With stderr a terminal, a command's progress bar is live while it prints its results;
    rich's stdout redirect sent them (through the guard, which has no ``buffer``) to the bar's
    terminal, so `wbcap image a.jpg > list.txt` left the file empty (found by a review). They go
    to stdout, also when it cannot be written (then the one error line)."""
    import click
    from rich.console import Console

    from wbcap.cli.common import progress_display
    from wbcap.cli.stdout import guarded_stdout

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    monkeypatch.setattr("wbcap.cli.common.stderr_is_terminal", lambda: True)
    ctx = click.Context(click.Command("image"), obj={})
    for stdout in (None, _Unwritable()):
        capsys.readouterr()
        captured = sys.stdout
        if stdout is not None:
            sys.stdout = stdout
        try:
            with guarded_stdout() as guard:
                progress, _ = progress_display(ctx)
                assert not progress.disable
                with progress:
                    click.echo("a.jpg: 1 person(s) -> out/a")
        finally:
            sys.stdout = captured
        out, err = capsys.readouterr()
        assert "1 person(s)" not in err, err
        if stdout is None:
            assert out == "a.jpg: 1 person(s) -> out/a\n"
        else:
            assert guard.failed and guard.message().endswith("the result was: a.jpg: 1 person(s) -> out/a")


def test_shell_completion_writes_its_script_and_completions():
    """click's shell completion (`eval "$(_WBCAP_COMPLETE=bash_source wbcap)"`) ended in a
    TypeError: it writes bytes, which the stdout guard of a command refused (a review)."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    r = CliRunner().invoke(cli, [], prog_name="wbcap", env={"_WBCAP_COMPLETE": "bash_source"})
    assert r.exit_code == 0 and "_wbcap_completion()" in r.output and r.exception is None, r.output
    r = CliRunner().invoke(cli, [], prog_name="wbcap",
                           env={"_WBCAP_COMPLETE": "bash_complete", "COMP_WORDS": "wbcap image --max", "COMP_CWORD": "2"})
    assert r.exit_code == 0 and r.output == "plain,--max-people\n", r.output


@no_dev_full
def test_shell_completion_to_a_full_disk_is_one_line(tmp_path, monkeypatch):
    """`_WBCAP_COMPLETE=bash_source wbcap > /dev/full` ended in a traceback (a break-it trial)."""
    monkeypatch.setenv("_WBCAP_COMPLETE", "bash_source")
    res = _wbcap_to_dev_full(tmp_path)
    assert res.returncode == 2 and res.stderr == f"{FULL}; the shell completion was not written\n", res.stderr


def test_a_closed_stdout_written_nothing_is_no_failure(monkeypatch):
    """A locale and terminal trial: `wbcap ... >&-` lost the results and exited 0 (Python's
    sys.stdout is None there): a command that prints is told as on a full disk (a real process:
    test_render_process's closed-stream test), one that prints nothing is not."""
    from wbcap.cli.stdout import guarded_stdout

    monkeypatch.setattr(sys, "stdout", None)
    with guarded_stdout() as guard:
        sys.stdout.flush()
    assert guard is not None and guard.error is None and sys.stdout is None
    with guarded_stdout() as guard:
        print("a result")
    assert guard.error is not None and guard.message().endswith("the result was: a result")


def test_a_dumb_terminal_gets_plain_log_lines(monkeypatch):
    """TERM=dumb (Emacs' shell, some CI consoles) on a terminal: one plain line per record, as to a
    pipe (rich padded every line to 80 columns there, a locales trial); a real terminal keeps rich."""
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

    from wbcap.cli import _setup_logging

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        for term, kind in (("dumb", logging.StreamHandler), ("xterm-256color", RichHandler)):
            monkeypatch.setenv("TERM", term)
            _setup_logging(0, False)
            ours = [h for h in root.handlers if getattr(h, "_wbcap_cli", False)]
            assert len(ours) == 1 and type(ours[0]) is kind, (term, ours)
    finally:
        for h in [h for h in root.handlers if getattr(h, "_wbcap_cli", False)]:
            root.removeHandler(h)
        for h in before[0]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(before[1])
