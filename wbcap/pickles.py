"""Reading the body-model releases' pickles without running code a pickle could carry.

The SMPL-X and SMPL ``.pkl`` releases and the evaluation's extra files (``SMPLX_to_J14.pkl``,
``MANO_SMPLX_vertex_ids.pkl``, ``smplx2smpl_deftrafo_setup.pkl``) are pickles, which may name
any Python callable to run while loading (``pickle.load`` of a crafted file runs
``os.system``). Those releases hold only numpy arrays and scalars, scipy sparse matrices, dicts
and strings (and, in SMPL's 2015 files, chumpy ``Ch`` arrays), so :func:`load_data_pickle`
unpickles with an allowlist of exactly the globals such data needs (:data:`ALLOWED_GLOBALS`,
checked against the globals numpy and scipy write with every pickle protocol) and refuses any
other with one line naming the file and the global: nothing else is ever imported or called.
A chumpy ``Ch`` becomes a :class:`ChumpyArray` holding its state (chumpy itself, whose modules
import ``os``, is never imported: a dotted name such as ``chumpy.ch`` / ``os.system`` would reach it).
(``torch.load(weights_only=True)`` does the same for checkpoints: :mod:`wbcap.model.checkpoint`.)
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wbcap.errors import ModelFileError, first_line

__all__ = ["ALLOWED_GLOBALS", "RELEASE_PICKLES", "ChumpyArray", "check_release_pickle", "convert_release_pickle",
           "convert_release_pickles", "load_data_pickle"]

#: ``(module, name)`` pairs a data pickle may name, as a pickle names them (Python 2 pickles:
#: ``copy_reg``, ``__builtin__``; numpy 1 and 2 module paths; scipy's old and new sparse modules).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")]
    + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")]
    + [(m, "_reconstructor") for m in ("copy_reg", "copyreg")]
    + [(m, n) for m in ("__builtin__", "builtins") for n in ("object", "set", "frozenset", "complex", "slice")]
    + [(f"scipy.sparse.{kind}", f"{kind}_matrix") for kind in ("csc", "csr", "coo")]
    + [(f"scipy.sparse._{kind}", f"{kind}_matrix") for kind in ("csc", "csr", "coo")]
)


class ChumpyArray:
    """What a pickled chumpy ``Ch`` (SMPL's 2015 arrays) becomes, without chumpy: its pickled
    state (``Ch.__getstate__``: its ``__dict__``) and, for a ``Ch`` of values, those values as
    ``r`` (chumpy's name for them; its ``x``). One without ``x`` has no ``r``, so a reader that
    takes ``.r`` where there is one sees an object, not an array, and says the file is not
    model data."""

    def __setstate__(self, state: Any) -> None:
        import numpy as np

        self.state = state
        if isinstance(state, dict) and "x" in state:
            self.r = np.asarray(state["x"])


class _Refused(pickle.UnpicklingError):
    """A global :data:`ALLOWED_GLOBALS` does not hold."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("chumpy.ch", "Ch"):
            return ChumpyArray
        if (module, name) in ALLOWED_GLOBALS:  # (no name with a dot: find_class would follow it)
            return super().find_class(module, name)
        raise _Refused(f"it names {module}.{name}, which no model data needs")


def is_numpy_archive(path: str | Path) -> bool:
    """Whether ``path`` is a zip archive of ``.npy`` files only (what ``np.savez`` writes; a
    ``torch.save`` file is a zip too, of other members)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def numpy_file_named_pkl(path: str | Path) -> str | None:
    """What NumPy file a ``.pkl`` is by its content: ``".npz"`` for a zip archive of ``.npy``
    files (:func:`is_numpy_archive`), ``".npy"`` for a NumPy array file (its magic); None for
    anything else (or an unreadable file). (An npz renamed ``.pkl`` was said to be a pickle that
    could not be unpickled: a first-run trial.)"""
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError:
        return None
    if head == b"\x93NUMPY":
        return ".npy"
    return ".npz" if head.startswith(b"PK") and is_numpy_archive(path) else None


def numpy_named_pkl_error(path: Path, npz_name: str | None, fix: str, npy_name: str | None = None) -> ModelFileError | None:
    """The one-line error for a ``.pkl`` that is a NumPy file by its content
    (:func:`numpy_file_named_pkl`), None for any other: an npz is to be renamed ``npz_name``, an
    npy ``npy_name`` (the names wbcap reads such a file by); where wbcap reads none by that kind,
    an npz is to be given "the .npz name wbcap looks for" and a single array is no model file
    (then ``fix``)."""
    suffix = numpy_file_named_pkl(path)
    if suffix == ".npz":
        return ModelFileError(f"{path} is a NumPy .npz archive by its content, not a pickle: rename it to "
                              f"{npz_name or 'the .npz name wbcap looks for'}")
    if suffix == ".npy" and npy_name:
        return ModelFileError(f"{path} is a NumPy .npy file by its content, not a pickle: rename it to {npy_name}")
    if suffix == ".npy":
        return ModelFileError(f"{path} is a single NumPy array (.npy) by its content, not a pickle nor a model file; "
                              f"{fix}")
    return None


def load_data_pickle(path: str | Path, fix: str, npz_name: str | None = None, npy_name: str | None = None) -> Any:
    """Unpickle ``path`` (``latin1`` for Python 2 pickles) allowing only :data:`ALLOWED_GLOBALS`.
    ``npz_name`` / ``npy_name``: the names wbcap reads the file by as an npz / npy, for a NumPy
    file named ``.pkl`` (:func:`numpy_named_pkl_error`).

    Raises:
        ModelFileError: one line naming the file: unreadable, not a pickle (a NumPy file: the
            rename), or naming another global (refused before it is imported), then ``fix``.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return _DataUnpickler(fh, encoding="latin1").load()
    except _Refused as exc:
        raise ModelFileError(f"{p}: refused: {exc} (a pickle can run code when loaded; this one is not "
                             f"plain model data); {fix}") from None
    except Exception as exc:  # unpickling a damaged file fails in many ways
        numpy_file = numpy_named_pkl_error(p, npz_name, fix, npy_name)
        if numpy_file is not None:
            raise numpy_file from None
        raise ModelFileError(f"{p} could not be unpickled ({first_line(exc, 120)}); {fix}") from None


#: The release pickles ``wbcap convert`` converts (:func:`convert_release_pickle`): the MANO
#: release's right hand, and the evaluation's extra files that ship as pickles.
RELEASE_PICKLES: tuple[str, ...] = ("MANO_RIGHT.pkl", "SMPLX_to_J14.pkl", "MANO_SMPLX_vertex_ids.pkl",
                                    "smplx2smpl_deftrafo_setup.pkl")


def _mano(path: Path) -> bool:
    """Whether ``path`` names a file of the MANO release (``MANO_RIGHT.pkl``; ``MANO_LEFT.pkl``,
    which the MANO converter refuses in words of its own), not ``MANO_SMPLX_vertex_ids.pkl``."""
    return path.name.upper().startswith("MANO_") and "SMPLX" not in path.name.upper()


def check_release_pickle(path: str | Path) -> Path:
    """``path`` expanded, when it is one of :data:`RELEASE_PICKLES` (by its name; any file of the MANO
    release, for the MANO converter's own words on it) and a file.

    Raises:
        ModelFileError: one line naming the file and the pickles wbcap converts (a body model
            pickle is read as it is, with ``allow_pickle``).
    """
    src = Path(path).expanduser()
    names = ", ".join(RELEASE_PICKLES)
    exact = {n.lower(): n for n in RELEASE_PICKLES}.get(src.name.lower())
    if exact is not None and exact != src.name:  # (a near miss: the release's own name decides the output's)
        raise ModelFileError(f"{src}: rename it {exact}, the release's name, which wbcap converts")
    if src.name not in RELEASE_PICKLES and not _mano(src):
        hint = "; a body model pickle is read as it is, with --allow-pickle" if src.name.upper().startswith("SMPL") else ""
        raise ModelFileError(f"{src}: not a release pickle wbcap converts ({names}){hint}")
    if not src.is_file():
        what = "not a regular file" if src.exists() else "no such file"
        raise ModelFileError(f"{src}: {what}; name a release pickle: {names}")
    return src


def convert_release_pickles(paths: Sequence[str | Path], dest: str | Path | None = None) -> list[tuple[Path, Path]]:
    """Convert several release pickles (:func:`convert_release_pickle`), all or none: each is
    converted into a temporary folder beside its destination, and only when every one has been
    read, checked and written are the files moved into place. Returns ``[(pickle, written file)]``.

    Raises:
        ModelFileError: one line, before anything is moved into place: what
            :func:`convert_release_pickle` raises for any of them, two pickles that would write
            the same file, or a destination that is a folder.
    """
    import shutil
    import tempfile

    sources = [check_release_pickle(p) for p in paths]
    if dest is not None and not Path(dest).expanduser().is_dir():
        raise ModelFileError(f"{dest}: no such folder; make it first, or leave the converted files beside the pickles")
    staged: list[tuple[Path, Path, Path]] = []  # (pickle, temporary file, final file)
    folders: list[Path] = []
    try:
        for src in sources:
            where = Path(dest).expanduser() if dest is not None else src.parent
            try:
                tmp = Path(tempfile.mkdtemp(prefix=".wbcap-convert-", dir=where))
            except OSError as exc:
                raise ModelFileError(f"{where}: cannot write the converted file there ({exc.strerror or exc}); "
                                     "give --dest a folder you can write") from None
            folders.append(tmp)
            written = convert_release_pickle(src, tmp)
            final = where / written.name
            if final.is_dir():
                raise ModelFileError(f"{final}: a folder has the name of the converted file; move it, or give "
                                     f"--dest another folder")
            earlier = next((s for s, _, f in staged if f.resolve() == final.resolve()), None)
            if earlier is not None:
                raise ModelFileError(f"{earlier} and {src} would both write {final}; convert one of them")
            staged.append((src, written, final))
        for _, written, final in staged:
            os.replace(written, final)
    finally:
        for tmp in folders:
            shutil.rmtree(tmp, ignore_errors=True)
    return [(src, final) for src, _, final in staged]


def convert_release_pickle(path: str | Path, dest: str | Path | None = None) -> Path:
    """Convert one release pickle (:data:`RELEASE_PICKLES`), once, into the numpy file wbcap reads
    without ``allow_pickle`` (``wbcap convert``): ``MANO_RIGHT.pkl`` into ``MANO_RIGHT.npz``
    (:func:`wbcap.body.mano_layer.convert_mano_pickle`), an evaluation extra file into its
    npy/npz (:func:`wbcap.eval.extra_files.convert_pickle`). ``dest``: an existing folder to
    write into; None: beside the pickle. Returns the written file.

    Raises:
        ModelFileError: one line naming the file: another name (:func:`check_release_pickle`),
            missing, refused (it names a Python object no model data needs), or not holding the
            release's data; or ``dest`` not a folder.
    """
    src = check_release_pickle(path)
    if dest is not None and not Path(dest).expanduser().is_dir():
        raise ModelFileError(f"{dest}: no such folder; make it first, or leave the converted file beside the pickle")
    if _mano(src):
        from wbcap.body.mano_layer import convert_mano_pickle

        return convert_mano_pickle(src, dest)
    from wbcap.eval.extra_files import convert_pickle

    return convert_pickle(src, dest)
