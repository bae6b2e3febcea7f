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
