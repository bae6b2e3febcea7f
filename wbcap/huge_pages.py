"""Transparent huge pages for torch's CPU tensors.

torch's CPU allocator (``c10/core/alloc_cpu.cpp``) marks each allocation of 2 MiB or more
``madvise(MADV_HUGEPAGE)`` (its start aligned to a page) when the environment variable
``THP_MEM_ALLOC_ENABLE`` is 1 (PyTorch's CPU performance tuning guide; off by default). It reads
the variable once, at its first CPU allocation, so it must be in the environment before torch
allocates anything: the ``wbcap`` command sets it first thing (:func:`request_huge_pages`; not
``wbcap train``, below), its child processes (the render child) inherit it, and a user's own
setting (``0`` turns it off) is kept. Where the kernel's transparent huge pages are ``never``
(``/sys/kernel/mm/transparent_hugepage/enabled``), it changes nothing.

Why: every network call allocates its activations afresh, and glibc hands allocations this large
back to the kernel when freed, so each call touches new pages, one page fault per 4 KiB. On the
2-core model-207 Intel Xeon (KVM), writing 172 MB of fresh memory took 43 ms with 4 KiB pages and
13 ms with huge pages, and the full network in exact precision reached 7.6 points more of the
fp32 ceiling (median of 18 rows, ``wbcap bench`` at batch 1-32, three runs each, interleaved;
1.11× the crops/s; fast unchanged; docs/performance.md). Peak memory was the same. On the Zen 3
EPYC an earlier trial found no gain (8 crops 3-8 % slower, timed call by call).

Per machine: the kernel's per-process switch (``prctl(PR_SET_THP_DISABLE)``, Linux 3.15+) turns
them off and on inside one process, for the memory the process touches next; the CPU strategy's
measurement (:mod:`wbcap.model.strategy`) times a part built and run both ways on a new machine,
keeps the answer in its cache and applies it (:func:`set_process_huge_pages`) to every later
build there. A short job (a few photos, a short run, the demo) turns them off before it loads
anything (:func:`wbcap.model.strategy.apply_machine_huge_pages`): its allocations are all new, and
on a Zen 4 EPYC host whose memory the kernel had to compact for 2 MiB pages, one photo took 2.95 s
with them and 2.23 s without.

``wbcap train`` does not ask for them (:data:`NOT_FOR_COMMANDS`): a training step frees what
it allocated and allocates it again, and without the variable glibc's allocator hands the freed
blocks to the next step's tensors, where with it their memory was faulted in and zeroed afresh.
On the Zen 4 EPYC (2026-12-06), 30 rounds of six 2-32 MB tensors allocated, filled and freed took
126-144 ms without the variable (no system time), 195-212 ms with it (104-132 ms of system time)
and 565-572 ms with it and the process's huge pages switched off (432-448 ms); a CPU training run
(ResNet-18 backbones, small inputs, batch 2, 12 steps) took 11.0 s without the variable against
14.0 s with it, and 9.3 s without it against 10.3 s with it and the process switch off; six
one-step epochs with a 0.5 GB
snapshot each 13.1 against 29.5 s (docs/performance.md, "Training throughput"). With a GPU the
CPU tensors are few and small.

This module imports nothing heavy: the command line calls it before torch is imported.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: The variable torch's CPU allocator reads (``c10/core/alloc_cpu.cpp``: ``is_thp_alloc_enabled``).
VARIABLE = "THP_MEM_ALLOC_ENABLE"
#: The kernel's transparent huge page mode (``always [madvise] never``: the bracketed one is in force).
KERNEL_MODE_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
#: ``prctl`` options (``linux/prctl.h``): the process's "THP disable" flag, set and read.
_PR_SET_THP_DISABLE, _PR_GET_THP_DISABLE = 41, 42


def _prctl(option: int, value: int = 0) -> int:
    """``prctl(option, value, 0, 0, 0)``; -1 where it fails or there is no such call (not Linux)."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0))
    except (OSError, AttributeError):
        return -1


def process_huge_pages_disabled() -> bool | None:
    """Whether this process has turned huge pages off (``PR_GET_THP_DISABLE``); None where it
    cannot be asked (not Linux, a kernel before 3.15, a seccomp filter)."""
    flag = _prctl(_PR_GET_THP_DISABLE)
    return None if flag < 0 else bool(flag)


def set_process_huge_pages(on: bool) -> bool:
    """Turn huge pages on or off for the memory this process (and the children it starts)
    touches from now on (``PR_SET_THP_DISABLE``); what it holds already stays as it is. True
    where it was done, False where it cannot be (see :func:`process_huge_pages_disabled`)."""
    return _prctl(_PR_SET_THP_DISABLE, 0 if on else 1) == 0


#: Set to ``1`` in the environment while a short job has turned huge pages off in this process
#: (:func:`short_job_off`); a later long job's pipeline in the same process (a notebook, a
#: script) turns them on again (:func:`end_short_job`), where one a parent turned off stays off.
#: In the environment, so the processes a job starts, which inherit the switch, inherit it too.
SHORT_JOB_MARK = "WBCAP_HUGE_PAGES_OFF_FOR_SHORT_JOB"


def short_job_off() -> bool:
    """Turn huge pages off for a short job (:func:`set_process_huge_pages`) and mark it
    (:data:`SHORT_JOB_MARK`); True where it was done."""
    if process_huge_pages_disabled() is False and set_process_huge_pages(False):
        os.environ[SHORT_JOB_MARK] = "1"
        return True
    return False


def end_short_job() -> bool:
    """Turn huge pages on again where :func:`short_job_off` turned them off (and nothing else
    since: the mark is dropped either way); True where it was done."""
    if os.environ.pop(SHORT_JOB_MARK, None) is None or not process_huge_pages_disabled():
        return False
    return set_process_huge_pages(True)


def huge_pages_measurable() -> bool:
    """Whether turning huge pages off and on in this process changes what torch's tensors get,
    so the CPU strategy can time both: torch asked for them (:data:`VARIABLE` is ``1``), the
    kernel gives them (``madvise`` or ``always``) and the process switch answers, with them on (a
    process whose parent turned them off is left so)."""
    return (os.environ.get(VARIABLE) == "1" and kernel_mode() in ("madvise", "always")
            and process_huge_pages_disabled() is False)  # (None: no switch; True: turned off by a parent, kept)


#: The ``wbcap`` commands that leave :data:`VARIABLE` as the environment has it (unset: torch's
#: default, off): training (see the module's text).
NOT_FOR_COMMANDS = frozenset({"train"})


def request_huge_pages(command: str | None = None) -> None:
    """Ask torch's CPU allocator for huge pages (``THP_MEM_ALLOC_ENABLE=1``) unless the
    environment already says (a user's ``0`` or ``1`` is kept) or ``command`` (the ``wbcap``
    command run) is one of :data:`NOT_FOR_COMMANDS`. Call it before torch is imported: torch
    reads the variable at its first CPU allocation (a process that imported torch before keeps
    what it read then; :func:`huge_pages_state` says so)."""
    if command not in NOT_FOR_COMMANDS:
        os.environ.setdefault(VARIABLE, "1")


def kernel_mode(path: Path = KERNEL_MODE_FILE) -> str | None:
    """The kernel's transparent huge page mode in force (``always``, ``madvise`` or ``never``),
    or None where the file is missing or unreadable (not Linux, a kernel without them)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def huge_pages_state(path: Path = KERNEL_MODE_FILE) -> tuple[str, str]:
    """Whether torch's large CPU tensors use transparent huge pages in this process, in words,
    and what would turn them on (``""``: nothing to do) — for ``wbcap bench``'s report and
    ``wbcap doctor``: ``"on"``; ``"on (the kernel's mode is always)"`` (every large allocation
    gets them, asked or not); or ``"off"`` and why: the variable not ``1`` (torch takes exactly
    ``0`` or ``1``), the kernel's mode ``never``, no such kernel setting (not Linux, or a kernel
    without them: nothing to do), this process turned them off (:func:`set_process_huge_pages`:
    the CPU strategy measured them slower here; nothing to do). Where torch was imported before
    the variable was set, torch may have read it unset: not knowable here, so reported from the
    variable."""
    value = os.environ.get(VARIABLE)
    mode = kernel_mode(path)
    if mode is None:
        return "off (this system has no transparent huge pages)", ""
    if process_huge_pages_disabled():
        return ("off (turned off in this process: measured slower on this CPU, its CPU strategy cache says so, or "
                "by the process that started it)", "")
    if mode == "never":
        return (f"off (the kernel's transparent huge pages are 'never': {path})",
                f"as root: echo madvise > {path}")
    if mode == "always":
        return "on (the kernel's mode is always)", ""
    if value != "1":
        shown = "unset" if value is None else f"{VARIABLE}={value}"
        return (f"off ({shown} in the environment, and the kernel gives them only on request)",
                f"unset {VARIABLE} (the wbcap command then sets it to 1) or set it to 1 before torch is imported")
    return "on", ""
