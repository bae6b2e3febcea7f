"""SIGTERM and SIGHUP (timeout, docker stop, a closed terminal) stop `wbcap run` as Ctrl-C does:
the same cleanup, the same advice, the shell's exit status for the signal (wbcap.stop_signals)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.stop_signals import Stopped, exit_status, held_stop_signals, stop_as_ctrl_c
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


@pytest.fixture()
def base_args(micro_ckpt, body_dir):
    return ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu", "--detector", "full",
            "--min-track", "1"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def text(result) -> str:
    return " ".join(result.output.split())


def signal_self(sig: int) -> None:
    """Send ``sig`` to this process and give Python the moment to run its handler."""
    os.kill(os.getpid(), sig)
    time.sleep(0.5)  # (the handler runs at the next bytecode of the main thread)


def state(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_stop_signals_raise_as_ctrl_c_and_are_held_over_a_step_that_must_not_be_cut():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as caught, stop_as_ctrl_c():
        signal_self(signal.SIGTERM)
    assert isinstance(caught.value, KeyboardInterrupt) and exit_status(caught.value) == 143
    assert exit_status(KeyboardInterrupt()) == 130
    done = []
    with pytest.raises(Stopped) as caught, stop_as_ctrl_c(), held_stop_signals():
        signal_self(signal.SIGHUP)
        done.append("the whole step")
    assert done == ["the whole step"] and exit_status(caught.value) == 129
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.slow)])
def test_a_stop_signal_before_the_first_frames_leaves_the_folder_as_it_was(tmp_path, base_args, monkeypatch, sig):
    """Stopped before any frame: a new folder is removed, and an --overwrite puts the previous
    run back, as after Ctrl-C (SIGTERM left an empty run a plain rerun refused); exit 128 + signal."""
    import wbcap.model.batching as batching

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)], 10)
    previous = tmp_path / "previous"
    assert invoke("run", video, "-o", previous, "--no-render", *base_args).exit_code == 0
    before = state(previous)

    def stopped(*args, **kwargs):
        signal_self(sig)
        yield from ()

    monkeypatch.setattr(batching, "regress_in_batches", stopped)
    for out, extra in [(tmp_path / "new", []), (previous, ["--overwrite", "--every", "2"])]:
        r = invoke("run", video, "-o", out, "--no-render", *extra, *base_args)
        assert r.exit_code == 128 + sig, text(r)
        assert text(r).endswith(f"stopped by {signal.Signals(sig).name}") and "--resume" not in text(r), text(r)
        kept = f"stopped before the first frames: the previous run in {out} is left as it was"
        assert (kept in text(r)) == bool(extra), text(r)  # (said where there was a previous run)
    assert not (tmp_path / "new").exists()
    assert state(previous) == before


@pytest.mark.slow  # fast loop under 2 minutes
def test_a_stop_signal_while_rendering_keeps_the_frames_and_resume_leaves_no_temporary(tmp_path, base_args,
                                                                                        monkeypatch):
    """SIGTERM in pass 2: the half-written render is removed, the frames are kept with the
    --resume advice; a --resume then finishes and removes temporaries a killed run left."""
    from wbcap.io.video_writer import VideoWriter

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)], 10)
    out = tmp_path / "out"
    write = VideoWriter.write

    def stopped(self, *args, **kwargs):
        write(self, *args, **kwargs)
        signal_self(signal.SIGTERM)

    monkeypatch.setattr(VideoWriter, "write", stopped)
    r = invoke("run", video, "-o", out, *base_args)
    assert r.exit_code == 143, text(r)
    assert f"the frames done so far are kept in {out}: add --resume to the same command to continue" in text(r)
    assert not list(out.glob(".*tmp-*")) and not (out / "render.mp4").exists()
    r = invoke("run", video, "-o", out, "--resume", *base_args)  # (a resume stopped too: it has its --resume)
    assert r.exit_code == 143 and f"kept in {out}: run the same command again to continue" in text(r), text(r)
    monkeypatch.setattr(VideoWriter, "write", write)
    (out / ".render.tmp-0badc0de.mp4").write_bytes(b"left by a SIGKILL")
    r = invoke("run", video, "-o", out, "--resume", *base_args)
    assert r.exit_code == 0, text(r)
    assert (out / "render.mp4").is_file() and not list(out.glob(".*tmp-*")), sorted(p.name for p in out.iterdir())


def test_every_command_takes_a_stop_signal_as_ctrl_c(tmp_path, monkeypatch):
    """SIGTERM during `wbcap weights import` left its half-copied ``.name.tmp-*`` file in the
    weights folder (only run, train and view took the signal as Ctrl-C): now every command does,
    so the temporary goes as after Ctrl-C; exit 143, ``stopped by SIGTERM``."""
    import shutil

    import wbcap.weights as weights
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    model = write_tiny_yolox(tmp_path / "yolox_nano.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79},
                             parameters=NANO_PARAMETERS)
    copyfile = shutil.copyfile  # (weights.shutil is this module: patched below)

    def half_copied(source, dest):
        Path(dest).write_bytes(Path(source).read_bytes()[:100])
        signal_self(signal.SIGTERM)
        return copyfile(source, dest)

    def not_taken(signum, frame):  # (what SIGTERM meets when the command does not take it as Ctrl-C)
        raise AssertionError("SIGTERM was not taken as Ctrl-C")

    monkeypatch.setattr(weights.shutil, "copyfile", half_copied)
    before = signal.signal(signal.SIGTERM, not_taken)
    try:
        r = invoke("weights", "import", "yolox-nano", model)
        assert signal.getsignal(signal.SIGTERM) == not_taken  # (the handler before the command is back)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert r.exit_code == 143 and text(r).endswith("stopped by SIGTERM"), text(r)
    folder = tmp_path / "home" / "weights"
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == []
    # under nohup (SIGHUP ignored) a closed terminal does not stop it
    monkeypatch.setattr(weights.shutil, "copyfile", lambda source, dest: (signal_self(signal.SIGHUP),
                                                                          copyfile(source, dest))[1])
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        r = invoke("weights", "import", "yolox-nano", model)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, ignored)
    assert r.exit_code == 0 and (folder / "yolox_nano.onnx").is_file(), text(r)


@pytest.mark.slow  # (3 s waiting for wbcap to start; the fast loop's 2 minutes are close)
def test_ctrl_c_stops_a_shell_loop_over_wbcap_commands(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) in a bash loop running `wbcap` once per
    clip: wbcap says `interrupted`, cleans up and ends by SIGINT itself, so bash stops the loop
    (status 130 in the shell). Exiting with 130 instead let bash take the signal as handled and
    start the next clip (an HCI researcher's trial). `wbcap record` of a source that sends
    nothing stands for a long command (it waits for it)."""
    import subprocess
    import sys

    from test_record import _free_udp_port

    script = (f'for n in 1 2; do echo "start $n"; "$PY" -m wbcap record udp://127.0.0.1:{_free_udp_port()} '
              f'-o "$OUT/$n.mkv" --timeout 60; echo "status $n $?"; done; echo finished')
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    loop = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        assert loop.stdout.readline() == "start 1\n"
        time.sleep(3.0)  # (wbcap started and waiting for the source)
        os.killpg(loop.pid, signal.SIGINT)
        out, err = loop.communicate(timeout=30)
    finally:
        if loop.poll() is None:
            os.killpg(loop.pid, signal.SIGKILL)
            loop.wait()
    assert (loop.returncode, out) == (-signal.SIGINT, ""), (out, err)  # (bash killed by the signal: no next clip)
    assert err.splitlines()[-1] == "interrupted" and not list(tmp_path.iterdir()), err
