"""Finding and safely reading SMPL-X body-model files.

The SMPL-X model cannot be redistributed; users download it from https://smpl-x.is.tue.mpg.de.
wbcap reads the ``.npz`` release with ``np.load(..., allow_pickle=False)`` and touches only the
numeric arrays it needs, so a model file can never run code on load (real SMPL-X npz files also
hold pickled object arrays such as ``joint2num``/``part2num``; they are never read). The legacy
``.pkl`` release needs unpickling and is only read after an explicit opt-in (``allow_pickle=True``,
CLI ``--allow-pickle``).

Search order of :func:`find_body_model`: the explicit ``model_path`` (file or folder; when given,
only it is searched) -> ``$WBCAP_BODY_MODELS`` (file or folder) -> ``wbcap.paths.body_models_dir()``.
When nothing is found, the error tells the user to put the file in the first folder searched (the
one they named, else ``$WBCAP_BODY_MODELS``, else the default), never in a folder they did not
choose. A file named by its path is the gender its name says (``SMPLX_MALE.npz``: male;
:func:`resolve_gender`) unless a gender is given, so outputs record the model that was used.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body.pose_layout import FULL_POSE_JOINTS  # (torch-free: the CLI reads this module first)
from wbcap.errors import ModelFileError, setting
from wbcap.paths import (
    ENV_BODY_MODELS,
    ENV_WEIGHTS,
    body_models_dir,
    demo_body_models_dir,
    env_path,
    files_below,
    find_first,
    search_folders,
    weights_dir,
)

__all__ = [
    "GENDERS",
    "NUM_MODEL_JOINTS",
    "NUM_POSE_BASIS",
    "BodyModelNotFoundError",
    "body_model_search_folders",
    "find_body_model",
    "is_demo_body_model",
    "load_body_model_data",
    "model_file_gender",
    "named_model_file",
    "real_body_model_fix",
    "resolve_gender",
]

logger = logging.getLogger(__name__)

GENDERS = ("neutral", "male", "female")
NUM_MODEL_JOINTS = FULL_POSE_JOINTS  # 55
NUM_POSE_BASIS = (NUM_MODEL_JOINTS - 1) * 9  # 486
NUM_VERTICES = 10475  # SMPL-X's mesh (the model files' v_template rows)
_DOWNLOAD_HINT = "download SMPL-X (npz) from https://smpl-x.is.tue.mpg.de"

# Arrays read from a model file, and whether each holds floats (else integers).
_FLOAT_KEYS = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "hands_meanl",
    "hands_meanr",
    "lmk_bary_coords",
    "dynamic_lmk_bary_coords",
)
_INT_KEYS = ("f", "kintree_table", "lmk_faces_idx", "dynamic_lmk_faces_idx")
REQUIRED_KEYS = _FLOAT_KEYS + _INT_KEYS
#: The most bytes the required arrays of a model file may declare, unpacked: SMPL-X's own take
#: ~0.3 GB in float64 (``shapedirs`` with 400 directions 0.1 GB, ``posedirs`` 0.12 GB). A larger
#: declaration is refused before anything is unpacked (a 9 MB npz declaring 5 GB of zeros took a
#: hostile-input trial's `wbcap doctor` past 6 GB of memory).
MAX_MODEL_BYTES = 1 << 30


def _normalise_gender(gender: str) -> str:
    g = str(gender).lower()
    if g not in GENDERS:
        raise ModelFileError(
            f"unknown SMPL-X gender {gender!r}: use one of {', '.join(GENDERS)}"
        )
    return g


def _candidates(folder: Path, gender: str) -> list[Path]:
    """File names looked for in ``folder``, preferred first (npz before pkl)."""
    stem = f"SMPLX_{gender.upper()}"
    return [folder / sub / f"{stem}{ext}" for ext in (".npz", ".pkl") for sub in ("smplx", "")]


def _pickle_refused(path: Path) -> ModelFileError:
    from wbcap.pickles import numpy_named_pkl_error

    numpy_file = numpy_named_pkl_error(path, f"{path.stem}.npz", f"{_DOWNLOAD_HINT} again")
    if numpy_file is not None:  # (not a pickle at all: an npz renamed; a first-run trial)
        return numpy_file
    return ModelFileError(
        f"{path} is a pickle (.pkl) SMPL-X file, which can run code when loaded: use the .npz "
        f"release instead, or opt in explicitly with {setting('allow_pickle', api='allow_pickle=True')}"
    )


def is_demo_body_model(path: str | Path) -> bool:
    """Whether ``path`` is the demo's cached synthetic SMPL-X model, or a file or folder in its
    folder (:func:`wbcap.paths.demo_body_models_dir`; not a human body). The README's Quick start
    points ``WBCAP_BODY_MODELS`` at it to try the commands; left set, it is found before a real
    model installed later, so :meth:`wbcap.pipeline.Pipeline.from_config` warns, ``wbcap doctor``
    reports it missing, and :class:`BodyModelNotFoundError` sends a missing gender's file to wbcap's
    ``body_models`` folder instead. (The path decides, not the content: the tests' synthetic
    models elsewhere are models like any other.)"""
    try:
        return Path(path).resolve().is_relative_to(demo_body_models_dir().resolve())
    except (OSError, ValueError):
        return False


def real_body_model_fix() -> str:
    """How to replace the demo's synthetic SMPL-X model with the real one (doctor, the run's
    warning), naming the setting as the caller spells it (``--body-models`` in a command, "the
    body_models argument" in Python: the API's warning named the flag, a new user's trial)."""
    return ("register at https://smpl-x.is.tue.mpg.de, download the SMPL-X npz models and point "
            f"{ENV_BODY_MODELS} (or {setting('body_models', api='the body_models argument')}) at them, or unset {ENV_BODY_MODELS} "
            "where they are in wbcap's body_models folder")


def demo_folder_fix(first: Path, explicit: bool, named_by: str | None = None) -> tuple[Path, str] | None:
    """Where a licensed file (SMPL-X, MANO, the evaluation's extra files) goes instead when the
    first folder searched, ``first``, is the demo's synthetic model folder (a real file put there
    would be taken for the demo's, :func:`is_demo_body_model`; a user trial was told to put MANO
    there): ``(wbcap's body_models folder, "and <what else to do> (<who> names <first>, the demo's
    synthetic model folder)")``; None for any other folder. ``explicit``: ``first`` was named by
    ``--body-models`` (or, ``named_by``, a run's record), else by ``$WBCAP_BODY_MODELS``."""
    if not is_demo_body_model(first):
        return None
    target = body_models_dir()
    option = setting("body_models")
    how = (named_by or option) if explicit else ENV_BODY_MODELS
    step = f"give {option} {target}" if explicit else f"unset {how}"
    return target, f"and {step} ({how} names {first}, the demo's synthetic model folder)"


class BodyModelNotFoundError(ModelFileError):
    """No SMPL-X file for a gender in the folders searched.

    Attributes: ``gender``; ``folders`` (searched, in order); ``looked`` (every file name tried);
    ``target``: the folder the file should go in (the first searched: the one the user named,
    else ``$WBCAP_BODY_MODELS``, else the default), as ``<folder>/smplx``; wbcap's default
    ``<folder>/smplx`` when the first is the demo's synthetic model folder (``demo``: a real file
    put there would be taken for the demo's, :func:`is_demo_body_model`; ``demo_fix``: what else
    to do then, "and unset ..."; empty otherwise). ``found_below``: where the file is in a folder
    below those searched, or in SMPL-X's zip there, and how to name it (``"<file> is there: give
    --body-models <folder>"``; empty otherwise); ``misplaced``: where it is near the places
    looked in instead (:func:`_misplaced`; empty otherwise). ``named_by``: how the
    message says an ``explicit`` folder was named when not by the user's option (a run's record).
    """

    def __init__(self, gender: str, folders: list[Path], looked: list[Path], explicit: bool,
                 named_by: str | None = None) -> None:
        self.gender = gender
        self.folders = folders
        self.looked = looked
        self.target = folders[0] / "smplx"
        self.file_name = f"SMPLX_{gender.upper()}.npz"
        first = folders[0]
        instead = demo_folder_fix(first, explicit, named_by)
        self.demo = instead is not None
        self.demo_fix = ""
        if instead is not None:  # (not into the demo's folder: a user trial)
            self.target, self.demo_fix = instead[0] / "smplx", instead[1]
            where = f"{self.target}/ {self.demo_fix}"
        elif explicit:
            missing = "" if first.exists() else ", which does not exist yet"
            who = "you gave" if named_by is None else f"{named_by} names"
            where = f"{self.target}/ or {first}/ (the folder {who}{missing})"
        elif len(folders) > 1:  # $WBCAP_BODY_MODELS is set: that is where the user wants it
            # (a misspelt one was not said to be missing: a new user's trial)
            missing = "" if first.exists() else f", which does not exist: check its spelling, or unset {ENV_BODY_MODELS}"
            demo_model = demo_body_models_dir() / "smplx" / self.file_name
            if missing and demo_model.is_file():  # (the Quick start's path, the demo's folder elsewhere with
                # $WBCAP_HOME set: doctor named it, the commands did not, a new user's trial)
                missing += f"; `wbcap demo`'s synthetic model is in {demo_body_models_dir()}"
            where = f"{self.target}/ or {first}/ (the folder {ENV_BODY_MODELS} names{missing})"
        else:
            where = f"{self.target}/, or point {ENV_BODY_MODELS} or {setting('body_models')} at the folder that holds it"
        again = ""
        named = env_path(ENV_BODY_MODELS)
        demo_route = (gender == "neutral" and (self.demo or (named is not None and is_demo_body_model(named)))
                      and not (demo_body_models_dir() / "smplx" / self.file_name).is_file())
        if demo_route:
            # ($WBCAP_BODY_MODELS at the demo's model, removed with the cache: the try-out route only
            # needs it back; it said only to download SMPL-X: an admin's trial)
            again = "; or, to go on trying wbcap without it, run `wbcap demo`, which writes the demo's model again"
        elif not self.demo:  # (another gender's real file where this one was looked for: say so; a first-run
            # trial was told only to put the neutral one there, beside the male one it had)
            other = next((c for folder in folders if not is_demo_body_model(folder) for o in GENDERS if o != gender
                          for c in _candidates(folder, o)[:2] if c.is_file()), None)
            if other is not None:
                o = other.stem.removeprefix("SMPLX_").lower()
                flag = setting("gender", api=f"gender={o!r}")  # (an option takes the value after it)
                again = (f"; {other} is there: {flag if '=' in flag else f'{flag} {o}'} uses it (the released network "
                         "was trained with the neutral one)")
        # (before another gender's file: this gender's one folder down is what to use; a break-it trial's
        # SMPLX_MALE.npz beside models/smplx/SMPLX_NEUTRAL.npz hid it)
        self.found_below = "" if self.demo or demo_route else _found_below(folders, self.file_name, looked, explicit)
        self.misplaced = "" if self.demo or demo_route or self.found_below else _misplaced(
            folders, looked, self.file_name, self.target)
        if self.found_below or self.misplaced:
            again = f"; {self.found_below or self.misplaced}{again}"
        super().__init__(
            f"SMPL-X model file {self.file_name} not found (looked for {', '.join(str(p) for p in looked)}): "
            f"{_DOWNLOAD_HINT} and put {self.file_name} in {where}{again}"
        )


#: At most this many ``*smplx*.zip`` files, with at most :data:`ZIP_DIRECTORY_BYTES` of central
#: directory each (SMPL-X's own lists a few dozen files), are looked into by :func:`_found_below`.
ZIPS_LOOKED_INTO = 3
ZIP_DIRECTORY_BYTES = 1 << 20


def _small_zip_directory(path: Path) -> bool:
    """Whether ``path`` ends with a zip's end-of-central-directory record (PKWARE APPNOTE 4.3.16;
    its comment at most 64 KB before the end) declaring a central directory of at most
    :data:`ZIP_DIRECTORY_BYTES` (not ZIP64's), read from the file's last bytes only."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - 22 - 0xFFFF))
            tail = f.read()
    except OSError:
        return False
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return False
    directory_bytes = int.from_bytes(tail[at + 12:at + 16], "little")
    return directory_bytes <= ZIP_DIRECTORY_BYTES


def _found_below(folders: list[Path], file_name: str, looked: list[Path], explicit: bool) -> str:
    """The end of a not-found message for a model file ``file_name`` that is in a folder below
    those searched (an unpacked download: ``models/smplx/SMPLX_NEUTRAL.npz``), or in SMPL-X's
    downloaded zip there (:func:`wbcap.paths.files_below`): ``"<file> is there: <how to name it>"``;
    "" when neither is."""
    from wbcap.console import shell_word

    want = file_name.lower()
    gender = model_file_gender(file_name)

    def near(name: str) -> bool:  # (another name of this gender's file: SMPL-X's SMPLX_NEUTRAL_2020.npz)
        low = name.lower()
        return low.endswith(".npz") and "smplx" in low and model_file_gender(low) == gender

    def wanted(name: str) -> bool:
        low = name.lower()
        return low == want or (low.endswith(".zip") and "smplx" in low) or near(low)

    found = [p for p in files_below([f for f in folders if not is_demo_body_model(f)], wanted, looked)
             if not is_demo_body_model(p)]
    files = [p for p in found if p.name.lower() == want]
    other = ""  # (a near name: said as another file, after the file itself in SMPL-X's zip)
    if files:
        path, unpacked = files[0], ""
    else:
        path = None
        for archive in [p for p in found if p.suffix.lower() == ".zip"][:ZIPS_LOOKED_INTO]:
            if not _small_zip_directory(archive):  # (a zip of a million names took doctor 27 s: a break-it trial)
                continue
            try:
                with zipfile.ZipFile(archive) as z:
                    member = next((n for n in z.namelist() if Path(n).name.lower() == want), None)
            except (OSError, zipfile.BadZipFile, ValueError):
                continue
            if member is not None:
                path = archive.parent / member
                unpacked = (f"{archive} holds {member}: unpack it there (cd {shell_word(str(archive.parent), True)} && "
                            f"unzip {shell_word(archive.name, True)}), then ")
                break
        if path is None:
            near_files = [p for p in found if near(p.name)]
            if not near_files:
                return ""
            path, unpacked = near_files[0], ""
            other = (f" (another file than {file_name}, such as SMPL-X's 2020 model with other expression blend "
                     f"shapes: the released network was trained with {file_name})")
    # (the folder that holds it, or its smplx/ folder, where the name is the one looked for: else the file)
    holder = path if path.name != file_name else path.parent.parent if path.parent.name == "smplx" else path.parent
    option = setting("body_models", api="body_models")
    give = f"give {option} {shell_word(str(holder), True)}" if option.startswith("-") else f"give {option}={str(holder)!r}"
    how = give if explicit else f"point {ENV_BODY_MODELS} at {shell_word(str(holder), True)} (or {give})"
    return f"{unpacked}{how}" if unpacked else f"{path} is there: {how}{other}"


_MODEL_SUFFIXES = (".npz", ".pkl")


def _misplaced(folders: list[Path], looked: list[Path], file_name: str, target: Path) -> str:
    """Where a model file ``file_name`` that was not found is near the places looked in, and what
    to do (a new user's trial got a plain "not found" for each): a folder with a model file's name
    where the file was looked for, or named as the body-models folder, or the file in a weights
    folder (``$WBCAP_WEIGHTS``'s, or the folder of the checkpoint it names, then wbcap's; they hold
    the networks' files); "" when none."""
    named = next((f for f in folders[:1] if f.suffix.lower() in _MODEL_SUFFIXES and f.is_dir()), None)
    if named is not None:
        return (f"{named} is a folder, not a model file: name the SMPL-X file itself, or the folder that "
                f"holds smplx/{file_name}")
    folder = next((p for p in looked if p.is_dir()), None)
    if folder is not None:
        return f"{folder} is a folder, not the model file: put {file_name} in its place"
    from wbcap.console import make_folder_hint

    for weights in search_folders(None, ENV_WEIGHTS, weights_dir()):  # ($WBCAP_WEIGHTS's folder, then wbcap's)
        stray = (weights.parent if weights.is_file() else weights) / file_name  # (it may name the checkpoint)
        if stray.is_file() and stray not in looked:
            return (f"{stray} is there, in a weights folder (for the networks' files): move it to "
                    f"{target}/{make_folder_hint(target)}")
    return ""


def model_file_gender(path: str | Path) -> str | None:
    """The gender an SMPL-X file's name says: the one word of ``neutral``, ``male`` and
    ``female`` among the words of its stem (``SMPLX_MALE.npz``, ``smplx-female-2020.npz``;
    case-insensitive); None when it says none or more than one."""
    words = set(re.split(r"[^a-z]+", Path(path).stem.lower()))
    said = [g for g in GENDERS if g in words]
    return said[0] if len(said) == 1 else None


def named_model_file(model_path: str | Path | None = None, named_by: str | None = None) -> tuple[Path, str] | None:
    """The SMPL-X file the user named by its path, and how they named it (for messages): the
    ``model_path`` given (``--body-models``, or ``named_by`` where the caller took the path from
    elsewhere, such as a run's record), else ``$WBCAP_BODY_MODELS``; None when that names a
    folder (or nothing).

    Raises:
        ModelFileError: it names no existing thing but looks like a model file's path (an
            ``.npz``/``.pkl`` name): one line, "no such file" (not advice to put the model into a
            folder of that name).
    """
    if model_path is not None:
        path, how = Path(model_path).expanduser(), named_by or setting("body_models")
    else:
        path, how = env_path(ENV_BODY_MODELS), ENV_BODY_MODELS
        if path is None:
            return None
    if path.is_file():
        return path, how
    if not path.exists() and path.suffix.lower() in _MODEL_SUFFIXES:
        gender = model_file_gender(path) or "neutral"  # (the file's own: SMPLX_MALE.npz was told of the neutral one)
        raise ModelFileError(f"{path}: no such file (named by {how}); check the path, or name the folder "
                             f"that holds SMPLX_{gender.upper()}.npz")
    return None


def resolve_gender(gender: str | None, model_path: str | Path | None = None) -> str:
    """The SMPL-X gender a command uses: ``gender`` when given, else the one the name of the
    file the user named says (:func:`named_model_file`, :func:`model_file_gender`), else
    ``neutral`` (the released network was trained with it).

    A ``gender`` the file's name contradicts is kept (the user asked for it; runs made before
    wbcap read genders from file names recorded the default one with such a file and resume with
    it): :func:`find_body_model` warns when it hands out that file.

    Raises:
        ModelFileError: :func:`named_model_file`'s "no such file"; or an unknown ``gender``.
    """
    named = named_model_file(model_path)
    said = model_file_gender(named[0]) if named is not None else None
    return said or "neutral" if gender is None else _normalise_gender(gender)


def body_model_search_folders(model_path: str | Path | None = None) -> list[Path]:
    """The folders :func:`find_body_model` searches, in order (without an explicit file)."""
    return search_folders(model_path, ENV_BODY_MODELS, body_models_dir())


def find_body_model(
    gender: str = "neutral", model_path: str | Path | None = None, allow_pickle: bool = False,
    named_by: str | None = None, warn: bool = True,
) -> Path:
    """Locate the SMPL-X model file for ``gender``.

    Args:
        gender: ``'neutral'``, ``'male'`` or ``'female'`` (case-insensitive).
        model_path: an explicit model file, or a folder holding ``smplx/SMPLX_{GENDER}.npz`` or
            ``SMPLX_{GENDER}.npz``. When given, only this place is searched. Without it,
            ``$WBCAP_BODY_MODELS`` may name a file too.
        allow_pickle: also accept ``SMPLX_{GENDER}.pkl`` (npz is still preferred in each folder).
        named_by: how messages say ``model_path`` was named when it was not the user's option
            (e.g. "the run's record"); default: the ``--body-models`` option.
        warn: say (a warning) when a file named by its path is another gender's by its name;
            False for a look ahead of the load that finds it again and says it.

    Returns:
        Path of an existing model file (not yet validated; see :func:`load_body_model_data`).

    Raises:
        BodyModelNotFoundError: nothing found (one line listing every place looked and naming
            the folder to put the file in: the one given, else ``$WBCAP_BODY_MODELS``, else
            the default).
        ModelFileError: only a ``.pkl`` was found without ``allow_pickle``; the file named by
            its path does not exist (:func:`named_model_file`). (One another gender's by its name,
            :func:`model_file_gender`, is used with a warning.)
    """
    g = _normalise_gender(gender)
    named = named_model_file(model_path, named_by)
    if named is not None:
        explicit, how = named
        said = model_file_gender(explicit)
        if said is not None and said != g and warn:
            flag = setting("gender")  # (a command without the flag: another's, "wbcap run --gender", is no way out)
            logger.warning("%s (named by %s) is the %s SMPL-X model by its name, used as the %s one asked for here; "
                           "if that is not what you want, name SMPLX_%s.npz or the folder that holds it%s", explicit,
                           how, said, g, g.upper(), "" if flag.startswith("wbcap ") else f" (or leave out {flag})")
        if explicit.suffix.lower() == ".pkl" and not allow_pickle:
            raise _pickle_refused(explicit)
        return explicit
    folders = body_model_search_folders(model_path)

    found = find_first((c for folder in folders for c in _candidates(folder, g)), allow_pickle)
    if found.path is not None:
        logger.debug("using SMPL-X model %s", found.path)
        return found.path
    if found.pickle is not None:
        raise _pickle_refused(found.pickle)
    raise BodyModelNotFoundError(g, folders, list(found.looked), explicit=model_path is not None, named_by=named_by)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read the required arrays of an npz without ever unpickling anything."""
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({_short(exc)}); check that the file is readable") from None
    if not (head.startswith(b"PK") or head == b"\x93NUMPY"):  # (NumPy reads anything else as a pickle)
        raise ModelFileError(f"{path} is not an .npz archive (neither a zip archive nor a NumPy file): "
                             f"{_DOWNLOAD_HINT} again")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFileError(
            f"{path} is not a readable .npz archive ({_short(exc)}): {_DOWNLOAD_HINT} again"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError(
            f"{path} holds a single .npy array, not an SMPL-X .npz archive: {_DOWNLOAD_HINT}"
        )
    with archive:
        missing = [k for k in REQUIRED_KEYS if k not in archive.files]
        if missing:
            raise ModelFileError(
                f"{path} is not an SMPL-X model (missing arrays: {', '.join(missing)}): "
                f"{_DOWNLOAD_HINT}"
            )
        # (the zip's directory says each member's unpacked size, which its reader never exceeds)
        names = set(archive.zip.namelist())
        declared = sum(archive.zip.getinfo(f"{k}.npy" if f"{k}.npy" in names else k).file_size for k in REQUIRED_KEYS)
        if declared > MAX_MODEL_BYTES:
            raise ModelFileError(
                f"{path} is not an SMPL-X model: its arrays unpack to {declared / 1e9:.1f} GB (SMPL-X's take about "
                f"0.3 GB): {_DOWNLOAD_HINT} again"
            )
        out: dict[str, np.ndarray] = {}
        for key in REQUIRED_KEYS:
            try:
                out[key] = archive[key]  # only the arrays we need; allow_pickle stays False
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
                raise ModelFileError(
                    f"{path} has an unreadable array {key!r} ({_short(exc)}): "
                    f"{_DOWNLOAD_HINT} again"
                ) from None
    return out


def _to_ndarray(value: Any) -> np.ndarray:
    """Dense numpy array from a pickled model entry (ndarray, scipy sparse, chumpy-like)."""
    if hasattr(value, "toarray"):  # scipy.sparse (J_regressor in the pkl release)
        return np.asarray(value.toarray())
    if hasattr(value, "r") and not isinstance(value, np.ndarray):  # chumpy array
        return np.asarray(value.r)
    return np.asarray(value)


def _read_pkl(path: Path) -> dict[str, np.ndarray]:
    from wbcap.pickles import load_data_pickle

    data = load_data_pickle(path, "use the SMPL-X .npz release instead", f"{path.stem}.npz")  # (only plain arrays allowed)
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} does not hold an SMPL-X model dict: {_DOWNLOAD_HINT}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ModelFileError(
            f"{path} is not an SMPL-X model (missing arrays: {', '.join(missing)}): "
            f"{_DOWNLOAD_HINT}"
        )
    return {k: _to_ndarray(data[k]) for k in REQUIRED_KEYS}


def _short(exc: BaseException) -> str:
    """The exception's text on one line, at most 120 characters, cut between words where it can."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) <= 120:
        return text
    cut = text.rfind(" ", 0, 118)
    return text[: cut if cut > 60 else 117] + "..."


def _validate(path: Path, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check dtypes/shapes/ranges and convert to float32 / int64 arrays."""

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{path} is not a valid SMPL-X model ({msg}): {_DOWNLOAD_HINT}")

    for key, arr in raw.items():
        kinds = "fiu" if key in _FLOAT_KEYS else "iu"
        if arr.dtype.kind not in kinds:
            raise bad(f"array {key!r} has dtype {arr.dtype}")

    v_template = raw["v_template"]
    if v_template.ndim != 2 or v_template.shape[1] != 3 or v_template.shape[0] < 1:
        raise bad(f"v_template has shape {v_template.shape}, expected (V, 3)")
    num_v = v_template.shape[0]
    j = NUM_MODEL_JOINTS

    posedirs = raw["posedirs"]
    if posedirs.shape in ((num_v * 3, NUM_POSE_BASIS),):
        posedirs = posedirs.reshape(num_v, 3, NUM_POSE_BASIS)
    expected: dict[str, tuple[int | None, ...]] = {
        "f": (None, 3),
        "shapedirs": (num_v, 3, None),
        "posedirs": (num_v, 3, NUM_POSE_BASIS),
        "J_regressor": (j, num_v),
        "weights": (num_v, j),
        "kintree_table": (2, j),
        "hands_meanl": (45,),
        "hands_meanr": (45,),
        "lmk_faces_idx": (51,),
        "lmk_bary_coords": (51, 3),
        "dynamic_lmk_faces_idx": (79, 17),
        "dynamic_lmk_bary_coords": (79, 17, 3),
    }
    arrays = dict(raw)
    arrays["posedirs"] = posedirs
    for key, shape in expected.items():
        arr = arrays[key]
        ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
        if not ok:
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise bad(f"{key} has shape {arr.shape}, expected {want}")
    if arrays["shapedirs"].shape[2] < 20:
        raise bad(f"shapedirs has {arrays['shapedirs'].shape[2]} components, expected >= 20")

    out: dict[str, np.ndarray] = {}
    for key in _FLOAT_KEYS:
        out[key] = np.ascontiguousarray(arrays[key], dtype=np.float32)
        if not np.all(np.isfinite(out[key])):
            raise bad(f"{key} contains NaN or infinite values")
    for key in _INT_KEYS:
        out[key] = np.ascontiguousarray(arrays[key]).astype(np.int64)

    num_f = out["f"].shape[0]
    if num_f < 1 or out["f"].min() < 0 or out["f"].max() >= num_v:
        raise bad("faces index vertices out of range")
    for key in ("lmk_faces_idx", "dynamic_lmk_faces_idx"):
        if out[key].min() < 0 or out[key].max() >= num_f:
            raise bad(f"{key} indexes faces out of range")
    parents = out["kintree_table"][0, 1:]
    if np.any(parents < 0) or np.any(parents >= np.arange(1, j)):
        raise bad("kintree_table is not a valid parent table (parents must precede children)")
    return out


def load_body_model_data(path: str | Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """Read and validate the arrays of an SMPL-X model file.

    ``.npz`` files are opened with ``np.load(path, allow_pickle=False)`` and only the required
    numeric arrays are read. ``.pkl`` files are unpickled only when ``allow_pickle`` is True.

    Args:
        path: the model file (``SMPLX_{GENDER}.npz``, or ``.pkl`` with ``allow_pickle``).
        allow_pickle: permit reading a pickle (``.pkl``) model file.

    Returns:
        dict with (V vertices, F faces, S >= 20 shape+expression components):
        ``v_template (V, 3)`` metres, ``shapedirs (V, 3, S)``, ``posedirs (V, 3, 486)``,
        ``J_regressor (55, V)``, ``weights (V, 55)``, ``hands_meanl``/``hands_meanr (45,)``
        axis-angle radians, ``lmk_bary_coords (51, 3)``, ``dynamic_lmk_bary_coords (79, 17, 3)``
        as float32; ``f (F, 3)``, ``kintree_table (2, 55)`` (raw, root parent as in the file),
        ``lmk_faces_idx (51,)``, ``dynamic_lmk_faces_idx (79, 17)`` as int64.

    Raises:
        ModelFileError: missing, unreadable, pickled without opt-in, or malformed file.
    """
    p = Path(path).expanduser()
    if p.is_dir():  # (it said "does not exist" of a folder holding the file: an API user's trial)
        raise ModelFileError(f"{p} is a folder; the SMPL-X model is read from a file: give SMPLX_NEUTRAL.npz (or "
                             f"_MALE/_FEMALE) in it, or wbcap.body.model_files.find_body_model(gender, folder) finds it")
    if not p.is_file():
        raise ModelFileError(f"SMPL-X model file {p} does not exist: {_DOWNLOAD_HINT}")
    if p.suffix.lower() == ".pkl":
        if not allow_pickle:
            raise _pickle_refused(p)
        raw = _read_pkl(p)
    else:
        raw = _read_npz(p)
    return _validate(p, raw)
