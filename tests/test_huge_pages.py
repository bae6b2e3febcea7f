"""Transparent huge pages for torch's CPU tensors (:mod:`wbcap.huge_pages`): the ``wbcap``
command asks for them before torch is imported, a user's setting wins, torch's allocator of the
pinned version takes the variable, and the state is said in words."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from wbcap.huge_pages import (
    VARIABLE,
    huge_pages_state,
    kernel_mode,
    process_huge_pages_disabled,
    set_process_huge_pages,
)
from wbcap.huge_pages import huge_pages_measurable as real_measurable


def test_the_command_asks_for_them_unless_the_environment_says_or_it_trains(monkeypatch):
    """Every command but `wbcap train` (measured slower with them: wbcap.huge_pages), which
    leaves the variable as the environment has it, and so do torchrun's workers it starts."""
    from wbcap.cli import main

    for args in (["doctor", "--help"], ["image", "--help"], ["train", "body", "--help"]):
        monkeypatch.delenv(VARIABLE, raising=False)
        with pytest.raises(SystemExit) as end:
            main(args)
        assert end.value.code == 0 and os.environ.get(VARIABLE) == (None if args[0] == "train" else "1"), args
        for value in ("0", "1"):  # (a user who turned them off, or on)
            monkeypatch.setenv(VARIABLE, value)
            with pytest.raises(SystemExit):
                main(args)
            assert os.environ[VARIABLE] == value


def test_the_state_in_words(tmp_path, monkeypatch):
    mode = tmp_path / "enabled"
    mode.write_text("always [madvise] never\n")
    monkeypatch.setenv(VARIABLE, "1")
    assert kernel_mode(mode) == "madvise" and huge_pages_state(mode) == ("on", "")
    turn_on = f"unset {VARIABLE} (the wbcap command then sets it to 1) or set it to 1 before torch is imported"
    for value, shown in (("0", f"{VARIABLE}=0"), (" 1", f"{VARIABLE}= 1"), (None, "unset")):  # (torch takes "1" only)
        if value is None:
            monkeypatch.delenv(VARIABLE)
        else:
            monkeypatch.setenv(VARIABLE, value)
        assert huge_pages_state(mode) == (f"off ({shown} in the environment, and the kernel gives them only on "
                                          "request)", turn_on)
    mode.write_text("[always] madvise never\n")  # (every large allocation gets them, asked or not)
    assert huge_pages_state(mode) == ("on (the kernel's mode is always)", "")
    monkeypatch.setenv(VARIABLE, "1")
    mode.write_text("always madvise [never]\n")
    assert huge_pages_state(mode) == (f"off (the kernel's transparent huge pages are 'never': {mode})",
                                      f"as root: echo madvise > {mode}")
    missing = tmp_path / "missing"
    assert kernel_mode(missing) is None
    assert huge_pages_state(missing) == ("off (this system has no transparent huge pages)", "")  # (nothing to do)


_TOUCH = textwrap.dedent("""
    import re, torch
    a = torch.empty(64 * 2**20 // 4)  # (64 MiB)
    a.fill_(1.0)
    rollup = open("/proc/self/smaps_rollup").read()
    print(int(re.search(r"AnonHugePages:\\s+(\\d+) kB", rollup).group(1)))
""")


@pytest.mark.slow  # (two Pythons importing torch: 5 s of the fast loop)
@pytest.mark.skipif(kernel_mode() not in ("always", "madvise") or not os.path.exists("/proc/self/smaps_rollup"),
                    reason="the kernel gives no transparent huge pages on request here")
def test_torchs_allocator_takes_the_variable():
    """The pinned torch's CPU allocator reads THP_MEM_ALLOC_ENABLE (c10/core/alloc_cpu.cpp): with
    it, a fresh 64 MiB tensor lies mostly in huge pages; without it, under ``madvise``, in none."""
    kb = {}
    for value in ("1", "0"):
        env = {**os.environ, VARIABLE: value}
        proc = subprocess.run([sys.executable, "-c", _TOUCH], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        kb[value] = int(proc.stdout.split()[-1])
    assert kb["1"] >= 32 * 1024, kb  # (at least half of it)
    if kernel_mode() == "madvise":
        assert kb["0"] < 8 * 1024, kb


@pytest.mark.skipif(process_huge_pages_disabled() is not False or kernel_mode() is None,
                    reason="no per-process huge-page switch here (not Linux), no huge pages, or turned off already")
def test_the_process_switch_turns_them_off_and_on():
    try:
        assert set_process_huge_pages(False) and process_huge_pages_disabled() is True
        assert huge_pages_state() == ("off (turned off in this process: measured slower on this CPU, its CPU "
                                      "strategy cache says so, or by the process that started it)", "")
    finally:
        set_process_huge_pages(True)  # (as found: the skip says it was on)
    assert process_huge_pages_disabled() is False


def test_measurable_only_where_the_switch_changes_what_torch_gets(monkeypatch):
    """(``real_measurable``: the function as imported when this module was collected; conftest
    stubs the module's attribute for every test.)"""
    from wbcap import huge_pages

    monkeypatch.setattr(huge_pages, "kernel_mode", lambda path=None: "madvise")
    monkeypatch.setattr(huge_pages, "process_huge_pages_disabled", lambda: False)
    monkeypatch.setenv(VARIABLE, "1")
    assert real_measurable()
    monkeypatch.setenv(VARIABLE, "0")
    assert not real_measurable()  # (torch does not ask for them: the switch changes nothing)
    monkeypatch.setenv(VARIABLE, "1")
    monkeypatch.setattr(huge_pages, "kernel_mode", lambda path=None: "never")
    assert not real_measurable()
    monkeypatch.setattr(huge_pages, "kernel_mode", lambda path=None: "always")
    assert real_measurable()
    monkeypatch.setattr(huge_pages, "process_huge_pages_disabled", lambda: True)  # (a parent turned them off: kept)
    assert not real_measurable()
    monkeypatch.setattr(huge_pages, "process_huge_pages_disabled", lambda: None)  # (no switch)
    assert not real_measurable()


def test_doctor_names_a_machine_that_measured_them_slower():
    """The strategy's answer for this machine is in its cache: `wbcap doctor` (which builds no
    network, so its process never applies it) reads it from there."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.model import strategy

    path = strategy.cache_path()
    strategy.write_cache(path, strategy.machine_key(), {}, huge_pages={"on": False, "seconds_on": 1.0,
                                                                         "seconds_off": 0.9, "part": "body_backbone"})
    r = CliRunner().invoke(cli, ["doctor"])
    assert (f"[ok  ] Huge pages: torch's large CPU tensors: off on this CPU (measured slower here; kept in {path}, "
            "WBCAP_CPU_STRATEGY=measure measures again)") in r.output, r.output


def test_a_cpu_pipeline_applies_the_machines_answer_before_it_loads_anything(body_dir, micro_ckpt, monkeypatch):
    """Where the strategy cache says huge pages are slower here, they are off before the SMPL-X
    model and the network load (a user trial saw 235 MB of weights on them, the strategy's own
    choice coming after the load)."""
    from wbcap import huge_pages
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.model import strategy
    from wbcap.pipeline import Pipeline, SMPLXLayer

    strategy.write_cache(strategy.cache_path(), strategy.machine_key(), {}, huge_pages={
        "on": False, "seconds_on": 1.0, "seconds_off": 0.9, "part": "body_backbone"})
    switched: list[bool] = []
    monkeypatch.setattr(huge_pages, "set_process_huge_pages", lambda flag: switched.append(flag) or True)
    loaded = SMPLXLayer.from_file

    def from_file(*args, **kwargs):
        assert switched == [False], "off before the SMPL-X model loads"
        return loaded(*args, **kwargs)

    monkeypatch.setattr(SMPLXLayer, "from_file", from_file)
    Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt),
                                        device="cpu"))
    assert switched and set(switched) == {False}


@pytest.mark.parametrize("job", [{"few_calls": 1}, {"measure_strategy": False}, {}])
def test_a_short_job_runs_without_them_whatever_the_cache_says(body_dir, micro_ckpt, monkeypatch, job):
    """A short job (a few photos: ``few_calls``; a short run or the video demo:
    ``measure_strategy=False``) turns huge pages off before anything loads, even where this
    machine measured them faster: its allocations are all new, and on a Zen 4 host the kernel's
    compaction for them made one photo 1.3x slower. A long job keeps the machine's answer (on)."""
    from wbcap import huge_pages
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.model import strategy
    from wbcap.pipeline import Pipeline, SMPLXLayer

    strategy.write_cache(strategy.cache_path(), strategy.machine_key(), {}, huge_pages={
        "on": True, "seconds_on": 0.9, "seconds_off": 1.0, "part": "body_backbone"})
    switched: list[bool] = []
    monkeypatch.setattr(huge_pages, "set_process_huge_pages", lambda flag: switched.append(flag) or True)
    monkeypatch.setattr(huge_pages, "process_huge_pages_disabled", lambda: bool(switched) and not switched[-1])
    loaded = SMPLXLayer.from_file
    short = bool(job)

    def from_file(*args, **kwargs):
        assert switched == ([False] if short else []), "decided before the SMPL-X model loads"
        return loaded(*args, **kwargs)

    monkeypatch.setattr(SMPLXLayer, "from_file", from_file)
    Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt),
                                        device="cpu"), **job)
    assert switched == ([False] if short else [])


def test_doctor_says_short_jobs_run_without_them(monkeypatch):
    """Where they are on, `wbcap doctor` says a short job runs without them (so a user who sees
    "on" and times one photo is not misled)."""
    from click.testing import CliRunner

    from wbcap import huge_pages
    from wbcap.cli import cli

    monkeypatch.setattr(huge_pages, "huge_pages_state", lambda path=None: ("on", ""))
    r = CliRunner().invoke(cli, ["doctor"])
    assert ("Huge pages: torch's large CPU tensors: on (for long inference jobs; a few photos, a short run and the "
            "demo run without them; `wbcap train` does not ask for them)") in " ".join(r.output.split()), r.output


def test_a_long_job_after_a_short_one_in_one_process_turns_them_on_again(body_dir, micro_ckpt, monkeypatch):
    """From Python (a notebook, a script): a short job's pipeline turns huge pages off, a long job's
    made later in the same process turns them on again (two trials: the short one's switch held for
    the rest of the process); where a parent process turned them off, they stay off."""
    from wbcap import huge_pages
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.pipeline import Pipeline

    state = {"off": False}
    switched: list[bool] = []

    def switch(on: bool) -> bool:
        switched.append(on)
        state["off"] = not on
        return True

    monkeypatch.setattr(huge_pages, "set_process_huge_pages", switch)
    monkeypatch.setattr(huge_pages, "process_huge_pages_disabled", lambda: state["off"])
    config = PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt), device="cpu")
    Pipeline.from_config(config, few_calls=1)
    assert switched == [False] and os.environ[huge_pages.SHORT_JOB_MARK] == "1"
    Pipeline.from_config(config, few_calls=1)  # (a second short job: nothing more)
    Pipeline.from_config(config)
    assert switched == [False, True] and huge_pages.SHORT_JOB_MARK not in os.environ
    state["off"] = True  # (turned off by a parent process: no mark, kept)
    Pipeline.from_config(config, few_calls=1)
    Pipeline.from_config(config)
    assert switched == [False, True] and state["off"]


def test_a_short_job_whose_build_fails_leaves_them_as_they_were(body_dir, tmp_path, monkeypatch):
    """A short job's pipeline that fails to build (a missing checkpoint) leaves the process's huge
    pages and environment as it found them (an API user's trial: off, and the mark set, after a
    CheckpointError); a few_calls that is no whole number of calls is refused by name."""
    from wbcap import huge_pages
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.model.checkpoint import CheckpointError
    from wbcap.pipeline import Pipeline

    state = {"off": False}

    def switch(on: bool) -> bool:
        state["off"] = not on
        return True

    monkeypatch.setattr(huge_pages, "set_process_huge_pages", switch)
    monkeypatch.setattr(huge_pages, "process_huge_pages_disabled", lambda: state["off"])
    config = PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(tmp_path / "nope.pth"), device="cpu")
    with pytest.raises(CheckpointError):
        Pipeline.from_config(config, few_calls=1)
    assert not state["off"] and huge_pages.SHORT_JOB_MARK not in os.environ
    for bad in ("x", -1, 1.5):
        with pytest.raises(ValueError, match=f"few_calls must be a whole number of network calls, 0 or more .*got {bad!r}"):
            Pipeline.from_config(config, few_calls=bad)
    assert not state["off"]
