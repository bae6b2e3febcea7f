"""The one place that prepares OpenGL for pyrender: NumPy 2 shim and headless platform choice.

* pyrender 0.1.45 uses ``np.infty``, which NumPy 2 removed; :func:`patch_numpy` puts the alias
  back (nowhere else in wbcap does this).
* PyOpenGL binds its platform (EGL, OSMesa, GLX...) from ``PYOPENGL_PLATFORM`` when ``OpenGL``
  is first imported and cannot switch afterwards, and a failed context creation can leave a
  process in a bad state. :func:`select_gl_platform` therefore tries each candidate in a short
  child process (``python -c`` creating ``pyrender.OffscreenRenderer(8, 8)`` and rendering one
  frame), then sets ``PYOPENGL_PLATFORM`` in this process to the first that works, before
  anything imports OpenGL here. The answer is cached for the life of the process, and on disk
  per machine (``gl_platform.json`` in the user cache folder, :func:`_cache_key`), so the probing
  children run once per machine and set-up, not on every ``wbcap image`` (they cost ~1.2 s);
  :func:`forget_cached_platform` drops the entry when the cached platform fails after all.
  Nothing is cached when a probe tried before the answer went unanswered (it timed out, e.g. on
  a busy machine): a better platform might answer next time.

Candidates, in order: the user's ``PYOPENGL_PLATFORM`` if set; then on Linux ``egl`` (GPU
drivers or Mesa) and ``osmesa`` (pure software Mesa), elsewhere pyrender's default window
platform (``pyglet``). If ``OpenGL`` was already imported, only the platform it was imported
with is tried.

pyrender and trimesh are imported under one lock (:func:`import_pyrender`, :func:`import_module`):
``wbcap run`` imports pyrender in a background thread while its main thread may import
``trimesh.geometry`` for vertex normals, and CPython 3.11's import system can then fail the
second import with ``KeyError: 'trimesh'`` (a package half imported by another thread; seen in
a third of runs timed to collide).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import subprocess
import sys
import threading
from types import ModuleType

from wbcap.stop_signals import held_stop_signals

log = logging.getLogger(__name__)

ENV_PLATFORM = "PYOPENGL_PLATFORM"
#: Name used for "no PYOPENGL_PLATFORM": pyrender then opens a hidden pyglet window.
PYGLET = "pyglet"
PROBE_TIMEOUT_S = 60.0

#: Run by ``python -c``, which puts the current folder first on the module path: it leaves the
#: path first, so a stray ``numpy.py`` there cannot fail the probe (and cache "no GL" for the machine).
_PROBE_CODE = """
import sys
sys.path.pop(0)
import numpy as np
if not hasattr(np, "infty"):
    np.infty = np.inf
import pyrender
r = pyrender.OffscreenRenderer(8, 8)
scene = pyrender.Scene()
scene.add(pyrender.IntrinsicsCamera(8.0, 8.0, 4.0, 4.0))
r.render(scene)
r.delete()
print("wbcap-gl-ok")
"""

_lock = threading.Lock()
#: Held while pyrender or trimesh is imported (module docstring); re-entrant, as pyrender
#: imports trimesh.
_import_lock = threading.RLock()
_UNSET = object()
_selected: object = _UNSET


def patch_numpy() -> None:
    """Restore ``np.infty`` (removed in NumPy 2, used by pyrender) if it is missing."""
    import numpy as np

    if not hasattr(np, "infty"):
        np.infty = np.inf  # type: ignore[attr-defined]


def _candidates() -> list[str]:
    user = os.environ.get(ENV_PLATFORM) or None
    if "OpenGL" in sys.modules:  # platform already fixed in this process
        return [user or PYGLET]
    defaults = ["egl", "osmesa"] if sys.platform.startswith("linux") else [PYGLET]
    out = [user] if user else []
    out += [c for c in defaults if c not in out]
    return out


def _probe(platform: str) -> bool | None:
    """True when pyrender can create an offscreen context and render with ``platform``; False
    when the child says it cannot; None when there is no answer (the child could not start or
    ran past :data:`PROBE_TIMEOUT_S`, e.g. on a machine busy with something else)."""
    env = dict(os.environ)
    if platform == PYGLET:
        env.pop(ENV_PLATFORM, None)
    else:
        env[ENV_PLATFORM] = platform
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_CODE],
            env=env,
            # (from the root folder: in a working folder deleted meanwhile the child failed, and its
            # "no" was kept as this machine's answer, so every later run rendered in software: an
            # admin's trial)
            cwd=os.path.abspath(os.sep),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("GL probe %s gave no answer: %s", platform, exc)
        return None
    ok = proc.returncode == 0 and "wbcap-gl-ok" in proc.stdout
    if not ok:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
        log.debug("GL probe %s failed (exit %s): %s", platform, proc.returncode, tail[0])
    return ok


def select_gl_platform() -> str | None:
    """The OpenGL platform pyrender will use in this process, or None when none works.

    Returns ``"egl"``, ``"osmesa"``, ``"pyglet"`` or the user's ``PYOPENGL_PLATFORM`` value.
    The first call probes (a few seconds per candidate) and sets ``PYOPENGL_PLATFORM``
    accordingly (removes it for ``"pyglet"``); later calls return the cached answer.
    """
    global _selected
    with _lock:
        if _selected is _UNSET:
            _selected = _select()
        return _selected  # type: ignore[return-value]


def cache_file():
    """Where the probed platform is kept (``gl_platform.json`` in the user cache folder:
    :func:`wbcap.paths.cache_file`)."""
    from wbcap.paths import cache_file as user_cache_file

    return user_cache_file("gl_platform.json")


#: The variables that steer which OpenGL libraries and drivers load (the display, EGL's platform
#: and vendor files, Mesa's drivers, the library path): part of the probe's cache key, so that a
#: run under a setting that breaks OpenGL does not leave "none works" for later runs without it
#: (``__EGL_VENDOR_LIBRARY_FILENAMES=/nonexist.json`` did: a break-it trial).
GL_ENVIRONMENT = ("DISPLAY", "EGL_PLATFORM", "__EGL_VENDOR_LIBRARY_FILENAMES", "__EGL_VENDOR_LIBRARY_DIRS",
                  "LIBGL_DRIVERS_PATH", "LIBGL_ALWAYS_SOFTWARE", "MESA_LOADER_DRIVER_OVERRIDE", "GALLIUM_DRIVER",
                  "LD_LIBRARY_PATH", "LD_PRELOAD")


def _cache_key(candidates: list[str]) -> str:
    """What the probe's answer depends on: this Python and its PyOpenGL/pyrender installs, the
    candidates (they carry the user's ``PYOPENGL_PLATFORM``), the variables of
    :data:`GL_ENVIRONMENT`, and the system's library cache (changed by installing EGL/OSMesa)."""
    from wbcap.versions import installed_version

    try:
        ld = str(os.stat("/etc/ld.so.cache").st_mtime_ns)
    except OSError:
        ld = "-"
    parts = [sys.executable, sys.version, installed_version("PyOpenGL") or "-", installed_version("pyrender") or "-", ",".join(candidates), ld,
             *(os.environ.get(name, "") for name in GL_ENVIRONMENT)]
    return "|".join(parts)


def _read_cache(key: str) -> tuple[bool, str | None]:
    """``(found, platform)`` from the disk cache; a missing or unreadable file: not found."""
    from wbcap.user_cache import read_json

    entry, _ = read_json(cache_file())
    if isinstance(entry, dict) and entry.get("key") == key:
        return True, entry.get("platform")
    return False, None


def _write_cache(key: str, platform: str | None) -> None:
    from wbcap.user_cache import write_json

    problem = write_json(cache_file(), {"key": key, "platform": platform})
    if problem:  # a read-only cache folder only costs the probe next time
        log.debug("cannot cache the GL platform: %s", problem)


def use_software_from_now() -> None:
    """This process renders in software from now on (:func:`select_gl_platform` answers None):
    called once OpenGL rendering failed, so that later frames do not try it again."""
    global _selected
    with _lock:
        _selected = None


def forget_cached_platform() -> None:
    """Drop the disk cache (the cached platform failed after all): the next process probes again."""
    with contextlib.suppress(OSError):
        cache_file().unlink()


def _select() -> str | None:
    user = os.environ.get(ENV_PLATFORM) or None
    candidates = _candidates()
    key = _cache_key(candidates)
    found, cached = _read_cache(key)
    if found:
        if cached is not None:
            _use(cached)
        log.debug("OpenGL platform for pyrender (cached): %s", cached)
        return cached
    chosen, answered = _probe_all(user, candidates)
    from wbcap.limits import too_few_open_files

    if answered and (chosen is not None or not too_few_open_files()):
        # not after a probe went unanswered: it may work next time (a busy machine); nor "none
        # works" under a limit of open files too low for the probes (`ulimit -n 12` left it for
        # every later run: a break-it trial)
        _write_cache(key, chosen)
    return chosen


def _use(platform: str) -> None:
    """Make PyOpenGL pick ``platform`` when it is first imported (nothing once it is imported)."""
    if "OpenGL" in sys.modules:
        return
    if platform == PYGLET:
        os.environ.pop(ENV_PLATFORM, None)
    else:
        os.environ[ENV_PLATFORM] = platform


def _probe_all(user: str | None, candidates: list[str]) -> tuple[str | None, bool]:
    """``(platform, answered)``: the first candidate a child process can render with (sets
    ``PYOPENGL_PLATFORM``), or None; ``answered``: every probe made (up to that one) answered."""
    answered = True
    for platform in candidates:
        ok = _probe(platform)
        answered = answered and ok is not None
        if ok:
            if user and platform != user:
                log.warning(
                    "%s=%s does not work here; rendering with %s", ENV_PLATFORM, user, platform
                )
            _use(platform)
            log.debug("OpenGL platform for pyrender: %s", platform)
            return platform, answered
    log.info("no OpenGL platform works (tried %s)", ", ".join(candidates))
    return None, answered


def import_pyrender() -> ModuleType:
    """Import pyrender after choosing the platform and patching NumPy.

    Raises:
        RuntimeError: no OpenGL platform works (check :func:`select_gl_platform` first).
    """
    platform = select_gl_platform()
    if platform is None:
        raise RuntimeError("no OpenGL platform (EGL, OSMesa) works; use the software renderer")
    patch_numpy()
    with _import_lock, held_stop_signals():  # (pyrender imports trimesh)
        import pyrender

    return pyrender


def import_module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` under the lock pyrender is imported under: for the
    packages pyrender imports too (trimesh), which another thread may be importing
    (module docstring). A Ctrl-C during the import is raised when it is done (:func:`wbcap.stop_signals.held_stop_signals`:
    trimesh's import catches ``BaseException`` around its optional imports, so an interrupt inside it left a
    half-imported module and a ``TypeError`` later instead of "interrupted")."""
    with _import_lock, held_stop_signals():
        return importlib.import_module(name)


def _reset_for_tests() -> None:
    """Forget the cached choice (tests only; has no effect on an already imported OpenGL)."""
    global _selected
    with _lock:
        _selected = _UNSET
