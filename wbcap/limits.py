"""Ranges of numeric settings checked in more than one place (the command line refuses them as
it reads its options, the library where the setting is used), and defaults that the command
line shows and the library applies. This module imports nothing, so the command line can read it
without loading numpy or torch."""

from __future__ import annotations

#: The largest Gaussian ``sigma`` in frames (:class:`wbcap.smooth.sequence.SmoothConfig`): far
#: past any useful smoothing (33 s at 30 fps), and the filter's time grows with it
#: (:func:`wbcap.smooth.filters.gaussian`).
MAX_SIGMA = 1000.0

#: The largest ``focal`` (pixels) taken (``wbcap run --focal``): a field of view of 0.006 degrees
#: across 1000 pixels, past any lens; far larger ones overflow the camera translation into NaN.
MAX_FOCAL = 1e7
#: The smallest ``focal`` (pixels) taken: one pixel, a field of view of 173 degrees across 32
#: pixels; a tampered 1e-300 made the GLB camera's ``yfov`` exactly pi, which glTF forbids (a
#: hostile-input trial). A principal point lies at most :data:`MAX_FOCAL` pixels from the origin.
MIN_FOCAL = 1.0

#: A frame whose change from the previous (:func:`wbcap.track.cuts.content_change`, mean HSV
#: difference, 0-255) reaches this is a candidate cut between shots (``wbcap run --cut-threshold``).
CUT_THRESHOLD = 27.0

#: Frames per second of an image folder or glob unless told (``wbcap run --fps``): image k is at
#: k / 30 seconds.
DEFAULT_IMAGE_FPS = 30.0


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one, e.g. a
    container's or ``taskset``'s limit), else the machine's count; at least 1."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_people_limit(max_people: object) -> None:
    """Refuse a people limit (``max_people`` of ``wbcap image`` and ``wbcap run``'s jobs) that is
    neither None nor a whole number of 1 or more (the command line's ``--max-people`` takes 1 or
    more; from Python 0 dropped every box, -1 kept all but one, 2.5 crashed after the model
    loaded: a break-it trial).

    Raises:
        ValueError: one line naming the value.
    """
    if max_people is None:
        return
    if not is_whole(max_people, least=1):
        raise ValueError(f"max_people {max_people!r}: a whole number of 1 or more, or None for no limit")


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is a finite real number (a Python or NumPy one, not a bool, a string, NaN,
    an infinity or an integer too large for a float)."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def is_whole(value: object, least: int) -> bool:
    """Whether ``value`` is a whole number (a Python or NumPy integer, not a bool) of ``least``
    or more."""
    import operator

    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= least
    except TypeError:
        return False


#: The fewest open files (``ulimit -n``) wbcap takes as enough: break-it trials saw `wbcap image`
#: and `run` work at 20 and more and fail below (the OpenGL probe, Blender's check, the SMPL-X
#: file's read), with some margin. ``wbcap doctor`` says so below it, and the OpenGL probe keeps
#: no "none works" found under it.
MIN_OPEN_FILES = 32
#: The open-files limit wbcap's messages suggest (``ulimit -n 4096``): far past its needs, and
#: within the usual hard limit.
SUGGESTED_OPEN_FILES = 4096


def open_files_limit(hard: bool = False) -> int | None:
    """How many files this process may have open at once (the soft ``RLIMIT_NOFILE``; with
    ``hard``, the hard one, the most the soft one may be raised to without privileges), or None
    where it cannot be read or is unlimited. (:mod:`resource` is imported here; ``wbcap.cli``
    imports it as it loads, since importing it when the limit is reached would fail.)"""
    try:
        import resource

        value = resource.getrlimit(resource.RLIMIT_NOFILE)[1 if hard else 0]
    except (ImportError, OSError, ValueError):
        return None
    return None if value == resource.RLIM_INFINITY else int(value)


def too_few_open_files() -> bool:
    """Whether this process (and the children it starts) may open fewer files than
    :data:`MIN_OPEN_FILES` (:func:`open_files_limit`; False where it cannot be read)."""
    limit = open_files_limit()
    return limit is not None and limit < MIN_OPEN_FILES


#: Peak memory the full-size network's commands took (2026-12-07, Zen 4 EPYC, torch 2.13, a
#: low-memory trial): resident memory about 1.05 GB for `wbcap image` (its render child 0.27 GB
#: more) and 1.2 GB for `wbcap run`; address space (what ``ulimit -v`` limits) 1.8 GB for `wbcap
#: image`, 2.1 GB for `wbcap run --no-render` and 2.9 GB with its video rendered. Bytes.
NEEDED_MEMORY = 1_200_000_000
#: The address space `wbcap run` took with rendering (:data:`NEEDED_MEMORY`'s trial), bytes.
NEEDED_ADDRESS_SPACE = 2_900_000_000
#: The smallest address space limit (``ulimit -v``) `wbcap image` and `wbcap run --no-render` worked
#: under in the same trial (2,000,000 KB; 1,750,000 failed), bytes.
NEEDED_ADDRESS_SPACE_NO_RENDER = 2_048_000_000


#: The address space Blender's Python module took in a child of `wbcap export --format fbx` (the
#: low-memory trial: 1.48 GB; its import crashed with SIGSEGV under ``ulimit -v`` 1,000,000 KB),
#: bytes: a crash of its import under a smaller limit is said to be the limit's.
BLENDER_ADDRESS_SPACE = 1_500_000_000
#: What `wbcap image`'s processes took together in a container, whose memory limit counts them all:
#: the main process and its render child (1.05 + 0.27 GB in the same trial), bytes.
NEEDED_MEMORY_ALL_PROCESSES = 1_350_000_000


def memory_limits() -> list[tuple[str, int]]:
    """The limits set on this process's memory, smallest first, as ``(how a user raises it, bytes)``:
    the soft ``RLIMIT_AS`` (``ulimit -v``), ``RLIMIT_DATA`` (``ulimit -d``) and, on Linux, the
    process's cgroup limit (v1 or v2, its group's or a parent's: :func:`_cgroup_memory_max`; a
    container's memory limit, named so); those unlimited or unreadable are left out."""
    found: list[tuple[str, int]] = []
    try:
        import resource

        for name, which in (("ulimit -v", resource.RLIMIT_AS), ("ulimit -d", resource.RLIMIT_DATA)):
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY:
                found.append((name, int(soft)))
    except (ImportError, OSError, ValueError, AttributeError):
        pass
    cgroup = _cgroup_memory_max()
    if cgroup is not None:
        found.append(("the container's or cgroup's memory limit", cgroup))
    return sorted(found, key=lambda item: item[1])


def _cgroup_memory_max() -> int | None:
    """This process's cgroup memory limit in bytes, the smallest of its group's and its parent
    groups' (a limit set on a slice holds its jobs too): cgroup v2's ``memory.max`` or v1's
    ``memory.limit_in_bytes`` (``/proc/self/cgroup``), read where the groups' folders are mounted
    (``/sys/fs/cgroup``, its ``memory`` controller's for v1; inside a container its own group is
    the top); None where there is none, all are unlimited (``max``, or v1's page-rounded 2^63) or
    none can be read (a review: a v1 container's limit went unsaid; a break-it trial: a parent's)."""
    import os

    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="surrogateescape") as fh:
            lines = [line.rstrip("\n").split(":", 2) for line in fh]
    except (OSError, ValueError):
        return None
    places = []
    for fields in lines:
        if len(fields) != 3:
            continue
        _, controllers, group = fields
        if controllers == "":  # v2
            root, name = "/sys/fs/cgroup", "memory.max"
        elif "memory" in controllers.split(","):  # v1
            root, name = "/sys/fs/cgroup/memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [part for part in group.split("/") if part not in ("", ".", "..")]
        places += [os.path.join(root, *parts[:k], name) for k in range(len(parts), -1, -1)]
    limits = []
    for place in places:
        try:
            with open(place, encoding="utf-8") as fh:
                text = fh.read().strip()
        except (OSError, ValueError):
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    return min(limits) if limits else None


def available_memory() -> int | None:
    """Memory the system can give new work without swapping, bytes: Linux's ``MemAvailable``
    (``/proc/meminfo``), else the free physical pages; None where neither can be read."""
    import os

    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def gigabytes(n: int | float) -> str:
    """``n`` bytes as ``"2.0 GB"`` (10^9 bytes, one decimal)."""
    return f"{n / 1e9:.1f} GB"
