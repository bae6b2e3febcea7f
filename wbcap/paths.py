"""Where wbcap looks for the files a user brings (body models, checkpoints), and where its own
bundled files are (:func:`example_image_path`).

Search order for each kind of file: explicit argument -> environment variable -> the user data
directory (``platformdirs``). ``WBCAP_HOME`` moves the whole user data directory (useful for
tests and shared installs).
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ENV_HOME = "WBCAP_HOME"
ENV_BODY_MODELS = "WBCAP_BODY_MODELS"
ENV_WEIGHTS = "WBCAP_WEIGHTS"
ENV_OFFLINE = "WBCAP_OFFLINE"
ENV_MIRROR = "WBCAP_WEIGHTS_MIRROR"


def example_image_path() -> Path:
    """The bundled example picture (``wbcap/testing/data/example.jpg``, made with
    :func:`wbcap.testing.images.person_image`): the demo's photo, the tests' fixed input and the
    int8 form's calibration picture (:mod:`wbcap.model.int8`)."""
    return Path(str(resources.files("wbcap.testing").joinpath("data/example.jpg")))


def user_data_dir() -> Path:
    """The per-user data directory (``$WBCAP_HOME`` or the platformdirs default)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("wbcap", appauthor=False))


def user_cache_dir() -> Path:
    """The per-user cache directory: what wbcap measured or probed on this machine and may
    recompute (``$WBCAP_HOME/cache`` when ``WBCAP_HOME`` is set, else the platformdirs default)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("wbcap", appauthor=False))


def user_log_dir() -> Path:
    """Where crash logs go: ``$WBCAP_HOME/logs`` when ``WBCAP_HOME`` is set, else the platform's
    user log folder (``~/.local/state/wbcap/log`` on Linux, ``$XDG_STATE_HOME`` honoured)."""
    home = os.environ.get(ENV_HOME)
    if home:
        return Path(home).expanduser() / "logs"
    import platformdirs

    return Path(platformdirs.user_log_dir("wbcap", appauthor=False))


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder`` or, where it does not exist yet, in the nearest
    folder above it that does (:func:`wbcap.atomic.check_writable_destination`)."""
    from wbcap.atomic import check_writable_destination
    from wbcap.errors import InputError

    try:
        check_writable_destination(folder)
    except InputError:
        return False
    return True


def cache_file(name: str) -> Path:
    """Where the cache file ``name`` (``cpu_strategy.json``, ...) is read and written:
    :func:`user_cache_dir`, or, where a file cannot be written there (a shared ``WBCAP_HOME``
    that is read-only for this user), the same name in this user's own cache folder (the
    platformdirs default), so that what a run measures is kept: in a read-only one the CPU
    inference form was measured again by every run, ~45 s each (an admin's trial)."""
    folder = user_cache_dir()
    if not _can_write_in(folder):
        import platformdirs

        own = Path(platformdirs.user_cache_dir("wbcap", appauthor=False))
        if own != folder and _can_write_in(own):
            return own / name
    return folder / name


def demo_body_models_dir() -> Path:
    """Where the demo keeps its synthetic SMPL-X model, written or not
    (``<user cache>/demo_body_models``; written by :func:`wbcap.pipeline.synthetic_body_models_dir`
    on first use): the real file's format, not a human body."""
    return user_cache_dir() / "demo_body_models"


def body_models_dir() -> Path:
    """Default folder for body-model files: ``<user data>/body_models``."""
    return user_data_dir() / "body_models"


def weights_dir() -> Path:
    """Default folder for network checkpoints: ``<user data>/weights``."""
    return user_data_dir() / "weights"


def env_path(name: str) -> Path | None:
    """The path in environment variable ``name``, or None when unset/empty."""
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


#: The variables that say where the files a run reads are found (:func:`variables_finding`).
FINDING_VARIABLES = (ENV_WEIGHTS, ENV_BODY_MODELS, ENV_HOME)


def variables_finding(files: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Which of :data:`FINDING_VARIABLES` set now name a file of ``files`` or a folder holding one
    (``WBCAP_HOME`` holds the default weights and body-model folders and the demo's model), by
    name, with their values made absolute: what another shell needs to find the same files (the
    hint that says how to finish an interrupted run; a file given by path is found without them).
    Links are resolved on both sides."""
    found: dict[str, str] = {}
    resolved = [Path(f).expanduser().resolve() for f in files]
    for name in FINDING_VARIABLES:
        root = env_path(name)
        if root is None:
            continue
        top = root.resolve()
        if any(f == top or top in f.parents for f in resolved):
            found[name] = os.path.abspath(root)
    return found


def offline_from_env() -> bool:
    """True when ``$WBCAP_OFFLINE`` is set to anything but empty, ``0``, ``false`` or ``no``:
    wbcap then never downloads on its own (``wbcap weights fetch`` still does when asked)."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def download_url(file_name: str, official_url: str) -> str:
    """Where to download ``file_name`` from: ``$WBCAP_WEIGHTS_MIRROR/<file_name>`` when the
    variable holds a base URL (``https://…``, ``http://…`` or ``file:///…``, e.g. a site
    mirror or a folder on a shared drive), else ``official_url``."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    return f"{mirror.rstrip('/')}/{file_name}" if mirror else official_url


def search_folders(explicit: str | os.PathLike[str] | None, env_var: str, default: Path) -> list[Path]:
    """The folders to search for a user's file, in order: only ``explicit`` when given (a
    folder the user named); else ``$env_var`` when set, then ``default`` (the user data folder)."""
    if explicit is not None:
        return [Path(explicit).expanduser()]
    env = env_path(env_var)
    return ([env] if env is not None else []) + [default]


@dataclass(frozen=True)
class Lookup:
    """What :func:`find_first` saw.

    ``path``: the first existing candidate it may use (None if none); ``pickle``: the first
    existing ``.pkl`` candidate refused because pickles were not allowed; ``looked``: every
    candidate considered, in order (refused pickles excluded), for the one-line error.
    """

    path: Path | None
    pickle: Path | None
    looked: tuple[Path, ...]


def find_first(candidates: Iterable[Path], allow_pickle: bool = False) -> Lookup:
    """The first existing file among ``candidates`` (in the caller's preference order).

    A ``.pkl`` candidate counts only with ``allow_pickle`` (pickles can run code when loaded);
    without it the first existing one is reported in :attr:`Lookup.pickle` so the caller's
    error can say how to convert it. Each kind of user file (body models, SMPL, extra
    evaluation files) builds its candidates from :func:`search_folders` and raises its own
    one-line error from the returned :class:`Lookup`.
    """
    looked: list[Path] = []
    refused: Path | None = None
    for cand in dict.fromkeys(candidates):
        if cand.suffix.lower() == ".pkl" and not allow_pickle:
            if refused is None and cand.is_file():
                refused = cand
            continue
        looked.append(cand)
        if cand.is_file():
            return Lookup(cand, refused, tuple(looked))
    return Lookup(None, refused, tuple(looked))


#: Bounds of :func:`files_below`: how many folders down it looks, how many folders it lists and
#: how many entries of each it reads at most (a not-found message must not walk a home folder, nor
#: a folder of a million frames).
LOOK_BELOW_DEPTH = 3
LOOK_BELOW_FOLDERS = 200
LOOK_BELOW_ENTRIES = 2000


def files_below(folders: Iterable[Path], wanted: Callable[[str], bool], skip: Iterable[Path] = ()) -> list[Path]:
    """Files a not-found message can point at: those whose name ``wanted`` accepts in ``folders``
    and the folders below them, up to :data:`LOOK_BELOW_DEPTH` levels down, nearest first, without
    ``skip`` (the names already looked for). Hidden folders and links to folders (a loop, a stale
    network mount) are passed over, at most :data:`LOOK_BELOW_FOLDERS` folders are listed and
    :data:`LOOK_BELOW_ENTRIES` entries of each read, so the look is bounded (it is a hint, never a
    search wbcap relies on: a new user's trial pointed ``--body-models`` at the folder SMPL-X's zip
    was unpacked in, which holds ``models/smplx/SMPLX_NEUTRAL.npz``, and was told only to put the
    file there). Unreadable folders are passed over."""
    skipped = {os.path.normpath(p) for p in skip}
    found: list[Path] = []
    level = [Path(f) for f in dict.fromkeys(folders)]
    listed = 0
    for _ in range(LOOK_BELOW_DEPTH + 1):
        below: list[Path] = []
        for folder in level:
            if listed >= LOOK_BELOW_FOLDERS:
                return found
            listed += 1
            try:
                with os.scandir(folder) as entries:
                    items = sorted(itertools.islice(entries, LOOK_BELOW_ENTRIES), key=lambda e: e.name)
            except OSError:
                continue
            for e in items:
                try:
                    if e.is_dir(follow_symlinks=False):
                        if not e.name.startswith("."):
                            below.append(Path(e.path))
                    elif wanted(e.name) and e.is_file() and os.path.normpath(e.path) not in skipped:
                        found.append(Path(e.path))
                except OSError:
                    continue
        level = below
    return found


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` (links followed) cannot be read as an input file, in words to follow its name
    (``"does not exist"``, ``"is a folder"``, ``"is not a regular file (a pipe, device or
    socket)"``, ``"cannot be read (<reason>)"``: a loop of links), or None for a regular file.
    Checked before an input is opened: a named pipe would be waited on for ever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return "is a folder" if stat.S_ISDIR(mode) else "is not a regular file (a pipe, device or socket)"
