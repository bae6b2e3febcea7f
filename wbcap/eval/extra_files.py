"""Finding and safely reading the extra model files the evaluation protocols need.

None of these files can be shipped with wbcap; they come with the body models and with the
Hand4Whole / ExPose / SPIN releases. wbcap looks for them where it looks for the SMPL-X model:
the explicit ``body_models`` argument (CLI ``--body-models``; a file means its folder) ->
``$WBCAP_BODY_MODELS`` -> ``<user data>/body_models`` (see :mod:`wbcap.paths`). In each folder
``<folder>/<subdir>/<name>`` is tried, then ``<folder>/<name>``, then the other of
``smplx/``/``smpl/``; the H36M regressors are looked for first in the dataset folder
``<data_root>/Human36M/``, where upstream keeps them and its evaluation reads them.

=====================  =====================================  ==========================  =========
kind                   file names (first found wins)          content                     subdir
=====================  =====================================  ==========================  =========
``j14``                ``SMPLX_to_J14.npy`` / ``.npz`` /      (14, 10475) SMPL-X -> LSP   smplx
                       ``.pkl``                               14-joint regressor
``hand_ids``           ``MANO_SMPLX_vertex_ids.npz`` /        ``left_hand``,              smplx
                       ``.pkl``                               ``right_hand`` vertex ids
``face_ids``           ``SMPL-X__FLAME_vertex_ids.npy``       FLAME vertex ids in SMPL-X  smplx
``h36m_smplx``         ``J_regressor_h36m_smplx.npy``         (17, 10475) H36M joints     smplx
``h36m_smpl``          ``J_regressor_h36m_smpl.npy`` /        (17, 6890) H36M joints      smpl
                       ``J_regressor_h36m_correct.npy`` /     from an SMPL mesh
                       ``J_regressor_h36m.npy``
``smplx_to_smpl``      ``SMPLX_to_SMPL.npz`` / ``.npy`` /     (6890, 10475) SMPL-X ->     smpl
                       ``smplx2smpl_deftrafo_setup.pkl``      SMPL vertex map (optional)
=====================  =====================================  ==========================  =========

``.pkl`` files are pickles, which can run code when loaded: they are read only with
``allow_pickle=True`` (CLI ``--allow-pickle``). Convert them once instead::

    wbcap convert ~/.local/share/wbcap/body_models/smplx/SMPLX_to_J14.pkl

writes ``SMPLX_to_J14.npy`` beside it (``MANO_SMPLX_vertex_ids.pkl`` -> ``.npz`` with arrays
``left_hand``/``right_hand``; ``smplx2smpl_deftrafo_setup.pkl`` -> ``SMPLX_to_SMPL.npz``, a
``scipy.sparse.save_npz`` CSR matrix). ``.npy``/``.npz`` files are always read with
``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body.model_files import NUM_VERTICES, demo_folder_fix
from wbcap.errors import ModelFileError, setting
from wbcap.paths import ENV_BODY_MODELS, body_models_dir, find_first
from wbcap.paths import search_folders as user_search_folders

__all__ = [
    "EXTRA_FILES",
    "UPSTREAM_SHA256",
    "ExtraFile",
    "convert_pickle",
    "find_extra_file",
    "is_upstreams",
    "load_face_vertex_ids",
    "load_hand_vertex_ids",
    "load_regressor",
    "load_smplx_to_smpl",
    "search_folders",
    "values_sha256",
]

logger = logging.getLogger(__name__)

_SMPLX_SITE = "https://smpl-x.is.tue.mpg.de"


@dataclass(frozen=True)
class ExtraFile:
    """One kind of extra file: accepted names (preferred first), subfolder, how to get it."""

    kind: str
    names: tuple[str, ...]
    subdir: str
    what: str
    source: str


EXTRA_FILES: dict[str, ExtraFile] = {
    f.kind: f
    for f in (
        ExtraFile(
            "j14", ("SMPLX_to_J14.npy", "SMPLX_to_J14.npz", "SMPLX_to_J14.pkl"), "smplx",
            "SMPL-X -> 14 body joints regressor",
            "get SMPLX_to_J14.pkl from https://github.com/vchoutas/expose#preparing-the-data",
        ),
        ExtraFile(
            "hand_ids", ("MANO_SMPLX_vertex_ids.npz", "MANO_SMPLX_vertex_ids.pkl"), "smplx",
            "MANO <-> SMPL-X hand vertex ids",
            f"get MANO_SMPLX_vertex_ids.pkl ('MANO and FLAME vertex indices') from {_SMPLX_SITE}",
        ),
        ExtraFile(
            "face_ids", ("SMPL-X__FLAME_vertex_ids.npy",), "smplx",
            "FLAME <-> SMPL-X face vertex ids",
            f"get SMPL-X__FLAME_vertex_ids.npy ('MANO and FLAME vertex indices') from {_SMPLX_SITE}",
        ),
        ExtraFile(
            "h36m_smplx", ("J_regressor_h36m_smplx.npy",), "smplx",
            "SMPL-X -> Human3.6M 17-joint regressor",
            "get data/Human36M/J_regressor_h36m_smplx.npy from https://github.com/mks0601/Hand4Whole_RELEASE",
        ),
        ExtraFile(
            "h36m_smpl", ("J_regressor_h36m_smpl.npy", "J_regressor_h36m_correct.npy", "J_regressor_h36m.npy"), "smpl",
            "SMPL -> Human3.6M 17-joint regressor",
            "get data/Human36M/J_regressor_h36m_smpl.npy from the Pose2Pose branch of "
            "https://github.com/mks0601/Hand4Whole_RELEASE (the same matrix as I2L-MeshNet's J_regressor_h36m_correct.npy)",
        ),
        ExtraFile(
            "smplx_to_smpl", ("SMPLX_to_SMPL.npz", "SMPLX_to_SMPL.npy", "smplx2smpl_deftrafo_setup.pkl"), "smpl",
            "SMPL-X -> SMPL vertex map",
            f"get smplx2smpl_deftrafo_setup.pkl (model transfer setups) from {_SMPLX_SITE}",
        ),
    )
}  # fmt: skip


#: SHA-256 of the float64 values (C order, :func:`values_sha256`) of the regressors upstream's
#: own evaluation reads, measured on the files of mks0601/Hand4Whole_RELEASE: ``h36m_smplx``, the
#: main branch's ``data/Human36M/J_regressor_h36m_smplx.npy``; ``h36m_smpl``, the Pose2Pose branch's
#: ``data/Human36M/J_regressor_h36m_smpl.npy`` (its 3DPW evaluation), whose values equal
#: I2L-MeshNet's ``J_regressor_h36m_correct.npy`` exactly. Another file of the same name and shape
#: gives numbers that are not comparable with the paper's (:func:`is_upstreams`).
UPSTREAM_SHA256: dict[str, str] = {
    "h36m_smplx": "da29f22aa04bd7dff358cf4fb8ecefc35cc93e2caaa96fbd63154ded3dda9903",
    "h36m_smpl": "712fd578da2cfae7bc6bfa74a38cf471187c910cf41d55b3ea59e756ef37563b",
}


def values_sha256(matrix: np.ndarray) -> str:
    """SHA-256 (hex) of a matrix's values as little-endian float64 in C order: the same for the
    same values whatever file format (``.npy``, ``.npz``, a converted pickle) held them."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(matrix, dtype="<f8").tobytes()).hexdigest()


def is_upstreams(kind: str, matrix: np.ndarray) -> bool | None:
    """Whether ``matrix`` (a regressor of ``kind`` as read) holds exactly the values of upstream's
    own file (:data:`UPSTREAM_SHA256`); None for a kind with no known upstream file."""
    known = UPSTREAM_SHA256.get(kind)
    return None if known is None else values_sha256(matrix) == known


def search_folders(body_models: str | Path | None = None) -> list[Path]:
    """The folders searched, in order: ``body_models`` (a file means its folder, and the folder
    above when that is named ``smplx``/``smpl``) -> ``$WBCAP_BODY_MODELS`` -> user data."""
    if body_models is not None:
        p = Path(body_models).expanduser()
        if p.is_file() or p.suffix.lower() in (".npz", ".pkl", ".npy"):
            folders = [p.parent]
            if p.parent.name.lower() in ("smplx", "smpl"):
                folders.append(p.parent.parent)
            return folders
    return user_search_folders(body_models, ENV_BODY_MODELS, body_models_dir())


def _candidates(spec: ExtraFile, folders: Sequence[Path], extra_dirs: Sequence[Path]) -> list[Path]:
    """Every place a file of ``spec`` is looked for, in order: for each of its names, the dataset
    folders ``extra_dirs`` first (where upstream keeps the file: its copy there is the one its own
    evaluation reads, so it wins over another of the same name beside the body models), then the
    body-model folders."""
    out: list[Path] = []
    other = "smpl" if spec.subdir == "smplx" else "smplx"
    for name in spec.names:
        places = [folder / name for folder in extra_dirs]
        for folder in folders:
            places += [folder / spec.subdir / name, folder / name, folder / other / name]
        out += [p for p in dict.fromkeys(places) if p not in out]
    return out


def find_extra_file(
    kind: str,
    body_models: str | Path | None = None,
    allow_pickle: bool = False,
    extra_dirs: Sequence[str | Path] = (),
) -> Path:
    """Locate an extra file of ``kind`` (a key of :data:`EXTRA_FILES`): in the dataset folders
    ``extra_dirs`` first, then in the body-model folders (:func:`search_folders`).

    Returns:
        The first existing candidate (numpy formats preferred over pickles in every folder).

    Raises:
        ModelFileError: nothing found (one line: every place looked and where to get it), or only
            a pickle was found without ``allow_pickle`` (how to convert it).
    """
    spec = EXTRA_FILES[kind]
    folders = search_folders(body_models)
    cands = _candidates(spec, folders, [Path(d).expanduser() for d in extra_dirs])
    found = find_first(cands, allow_pickle)
    if found.path is not None:
        logger.debug("using %s %s", spec.what, found.path)
        return found.path
    if found.pickle is not None:
        raise ModelFileError(
            f"{found.pickle} is a pickle, which can run code when loaded: convert it once with "
            f"`wbcap convert {found.pickle}` (writes {spec.names[0]}), "
            f"or pass {setting('allow_pickle', api='allow_pickle=True')}"
        )
    default = folders[0] / spec.subdir
    instead = demo_folder_fix(folders[0], body_models is not None)
    if instead is not None:  # (not into the demo's synthetic model folder: a user trial)
        default = instead[0] / spec.subdir
    looked = ", ".join(str(c) for c in cands)
    raise ModelFileError(
        f"{spec.what} ({spec.names[0]}) not found (looked in: {looked}): {spec.source} and put it in "
        f"{default}/ " + (instead[1] if instead is not None else
                          f"(or pass {setting('body_models')} / set {ENV_BODY_MODELS})")
    )


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _short(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:120]


def _unpickle(path: Path) -> Any:
    """The data of a (opted-in) pickle, only plain arrays allowed (:func:`wbcap.pickles.load_data_pickle`).
    A NumPy file named ``.pkl`` is told the name wbcap reads it by (its kind's first ``.npz`` /
    ``.npy`` name in :data:`EXTRA_FILES`: an ``.npy`` named ``SMPLX_to_J14.pkl`` was called no
    model file, a break-it trial)."""
    from wbcap.pickles import load_data_pickle

    spec = next((f for f in EXTRA_FILES.values() if path.name.lower() in (n.lower() for n in f.names)), None)
    names = () if spec is None else spec.names
    return load_data_pickle(path, "re-download it from its source", next((n for n in names if n.endswith(".npz")), None),
                            next((n for n in names if n.endswith(".npy")), None))


def _dense(value: Any) -> np.ndarray:
    if hasattr(value, "toarray"):
        return np.asarray(value.toarray())
    if hasattr(value, "todense"):
        return np.asarray(value.todense())
    return np.asarray(value)


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"{path} is not a readable .npy array ({_short(exc)}): re-download it") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        arr.close()
        raise ModelFileError(f"{path} is an .npz archive, not a .npy array: rename it to .npz")
    return arr


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):  # pragma: no cover - np.load contract
                raise ValueError("not an npz archive")
            return {k: archive[k] for k in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise ModelFileError(f"{path} is not a readable .npz archive ({_short(exc)}): re-download it") from None


def _matrix_from_npz(path: Path, arrays: dict[str, np.ndarray]) -> Any:
    """A matrix stored as a single array, under ``regressor``/``matrix``, or as scipy CSR/CSC
    (``scipy.sparse.save_npz``; returned as a ``scipy.sparse.csr_matrix``)."""
    if {"data", "indices", "indptr", "shape", "format"} <= set(arrays):
        import scipy.sparse

        fmt = str(arrays["format"].item() if arrays["format"].ndim == 0 else arrays["format"])
        fmt = fmt.strip("b'\"")
        cls = {"csr": scipy.sparse.csr_matrix, "csc": scipy.sparse.csc_matrix}.get(fmt)
        if cls is None:
            raise ModelFileError(f"{path}: sparse format {fmt!r} unsupported; save it as CSR (scipy.sparse.save_npz)")
        shape = tuple(int(v) for v in arrays["shape"])
        return scipy.sparse.csr_matrix(cls((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape))
    for key in ("regressor", "matrix", "arr_0"):
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise ModelFileError(f"{path}: expected one array (or 'regressor'/'matrix'), found {', '.join(sorted(arrays))}")


def _read_matrix(path: Path) -> Any:
    """An ndarray, or a scipy sparse matrix (never densified here)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path)
    if suffix == ".npz":
        return _matrix_from_npz(path, _read_npz(path))
    obj = _unpickle(path)
    if isinstance(obj, dict):
        for key in ("mtx", "regressor", "matrix"):
            if key in obj:
                return obj[key] if hasattr(obj[key], "tocsr") else _dense(obj[key])
        raise ModelFileError(f"{path}: pickle holds a dict without 'mtx'/'regressor': re-download it")
    return obj if hasattr(obj, "tocsr") else _dense(obj)


def _check_matrix(path: Path, mat: Any, rows: int | None, cols: int, what: str, sparse: bool = False) -> Any:
    """Shape / dtype / finiteness check; a float64 ndarray, or a float64 CSR matrix when ``sparse``."""
    shape = tuple(getattr(mat, "shape", ()))
    dtype = getattr(mat, "dtype", np.dtype(object))
    if dtype.kind not in "fiub" or len(shape) != 2 or shape[1] != cols or (rows is not None and shape[0] != rows):
        want = f"({rows if rows is not None else 'K'}, {cols})"
        raise ModelFileError(
            f"{path} is not a {what} for this body model (shape {shape} dtype {dtype}, expected {want}): re-download it"
        )
    if sparse:
        import scipy.sparse

        out = scipy.sparse.csr_matrix(mat, dtype=np.float64)
        values = out.data
    else:
        out = _dense(mat).astype(np.float64)
        values = out
    if not np.all(np.isfinite(values)):
        raise ModelFileError(f"{path} contains NaN or infinite values: re-download it")
    return out


def load_regressor(
    kind: str,
    num_vertices: int,
    body_models: str | Path | None = None,
    allow_pickle: bool = False,
    extra_dirs: Sequence[str | Path] = (),
) -> tuple[np.ndarray, Path]:
    """A joint regressor (``'j14'``, ``'h36m_smplx'`` or ``'h36m_smpl'``) as float64 ``(K, V)``.

    ``K`` is 14 or 17 and ``V = num_vertices`` of the mesh it applies to. Returns the matrix and
    the file it came from. Raises ModelFileError for a missing, pickled or malformed file.
    """
    rows = {"j14": 14, "h36m_smplx": 17, "h36m_smpl": 17}[kind]
    path = find_extra_file(kind, body_models, allow_pickle, extra_dirs)
    return _check_matrix(path, _read_matrix(path), rows, num_vertices, EXTRA_FILES[kind].what), path


def _check_ids(path: Path, ids: Any, num_vertices: int, what: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size == 0 or arr.min() < 0 or arr.max() >= num_vertices:
        raise ModelFileError(
            f"{path}: {what} must be a 1-D array of vertex ids in [0, {num_vertices}) (got shape {arr.shape} "
            f"dtype {arr.dtype}): re-download it"
        )
    return arr.astype(np.int64)


def load_hand_vertex_ids(
    num_vertices: int, body_models: str | Path | None = None, allow_pickle: bool = False
) -> tuple[np.ndarray, np.ndarray, Path]:
    """The SMPL-X vertex ids of the MANO left and right hands: ``(Nl,)``, ``(Nr,)`` int64, path."""
    path = find_extra_file("hand_ids", body_models, allow_pickle)
    data = _read_npz(path) if path.suffix.lower() == ".npz" else _unpickle(path)
    if not isinstance(data, dict) or not {"left_hand", "right_hand"} <= set(data):
        raise ModelFileError(f"{path}: expected arrays 'left_hand' and 'right_hand': re-download it")
    left = _check_ids(path, data["left_hand"], num_vertices, "left_hand")
    right = _check_ids(path, data["right_hand"], num_vertices, "right_hand")
    return left, right, path


def load_face_vertex_ids(num_vertices: int, body_models: str | Path | None = None) -> tuple[np.ndarray, Path]:
    """The SMPL-X vertex ids of the FLAME face: ``(Nf,)`` int64, and the path."""
    path = find_extra_file("face_ids", body_models)
    return _check_ids(path, _read_npy(path), num_vertices, "face vertex ids"), path


def load_smplx_to_smpl(
    num_smplx_vertices: int, num_smpl_vertices: int, body_models: str | Path | None = None, allow_pickle: bool = False
) -> tuple[Any, Path]:
    """The SMPL-X -> SMPL vertex map as a float64 ``scipy.sparse.csr_matrix`` ``(6890, 10475)``.

    The deformation-transfer pickle's ``mtx`` has twice as many columns (vertices, then
    normals); only the vertex half is used, as smplx's ``transfer_model`` does.
    """
    import scipy.sparse

    path = find_extra_file("smplx_to_smpl", body_models, allow_pickle)
    mat = _read_matrix(path)
    if len(mat.shape) == 2 and mat.shape[1] == 2 * num_smplx_vertices:
        mat = scipy.sparse.csr_matrix(mat)[:, :num_smplx_vertices]
    what = "SMPL-X -> SMPL vertex map"
    return _check_matrix(path, mat, num_smpl_vertices, num_smplx_vertices, what, sparse=True), path


# ----------------------------------------------------------------------------------------------
# one-off conversion of the releases' pickles
# ----------------------------------------------------------------------------------------------
def _ids(src: Path, value: Any, side: str) -> np.ndarray:
    ids = np.asarray(value)
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu" or ids.min() < 0:
        raise ModelFileError(f"{src}: '{side}' is not a list of vertex indices ({ids.dtype} {ids.shape}); re-download "
                             "it from its source")
    return ids


def convert_pickle(path: str | Path, dest: str | Path | None = None) -> Path:
    """Convert an extra-file pickle into its numpy form beside it (or in the folder ``dest``);
    returns the new path.

    ``SMPLX_to_J14.pkl`` -> ``SMPLX_to_J14.npy``; ``MANO_SMPLX_vertex_ids.pkl`` -> ``.npz``
    (``left_hand``, ``right_hand``); ``smplx2smpl_deftrafo_setup.pkl`` -> ``SMPLX_to_SMPL.npz``
    (CSR, vertex half of ``mtx``); any other pickle of one matrix -> ``<stem>.npy``. The pickle
    is read with only plain arrays allowed (:func:`wbcap.pickles.load_data_pickle`: one naming
    any other Python object is refused, never run), what it holds is checked (a 2-D numeric
    matrix, 1-D vertex indices), and the result is written atomically.

    Raises:
        ModelFileError: one line naming the file: missing, refused, or not holding such data.
    """
    import scipy.sparse

    from wbcap.atomic import atomic_path

    src = Path(path).expanduser()
    if not src.is_file():
        raise ModelFileError(f"{src} does not exist: pass the .pkl file to convert")
    obj = _unpickle(src)
    name = src.name
    if name.startswith("MANO_SMPLX_vertex_ids"):
        if not isinstance(obj, dict) or not {"left_hand", "right_hand"} <= set(obj):
            raise ModelFileError(f"{src}: expected a dict with 'left_hand'/'right_hand'")
        dst = _placed(src.with_suffix(".npz"), dest)
        arrays = {side: _ids(src, obj[side], side) for side in ("left_hand", "right_hand")}
        with atomic_path(dst) as tmp, open(tmp, "xb") as fh:
            np.savez(fh, **arrays)
        return dst
    if name.startswith("smplx2smpl"):  # (by the name only: a J14 regressor kept as {'mtx': ...} is one, a review)
        mat = obj.get("mtx") if isinstance(obj, dict) else obj
        if (not (scipy.sparse.issparse(mat) or isinstance(mat, np.ndarray)) or len(mat.shape) != 2
                or mat.dtype.kind not in "fiub" or 0 in mat.shape):
            got = type(mat).__name__ if mat is None or not hasattr(mat, "dtype") else f"{mat.dtype} {mat.shape}"
            raise ModelFileError(f"{src}: its 'mtx' is not a 2-D numeric matrix ({got}); re-download it from its source")
        mat = scipy.sparse.csr_matrix(mat)
        if mat.shape[1] == 2 * NUM_VERTICES:  # (the release's vertex half, then its other half)
            mat = mat[:, :NUM_VERTICES]
        dst = _placed(src.with_name("SMPLX_to_SMPL.npz"), dest)
        with atomic_path(dst) as tmp, open(tmp, "xb") as fh:
            scipy.sparse.save_npz(fh, scipy.sparse.csr_matrix(mat), compressed=True)
        return dst
    mat = obj
    if isinstance(obj, dict):
        keys = [k for k in ("regressor", "matrix", "mtx") if k in obj]
        if not keys:
            raise ModelFileError(f"{src}: a dict pickle without 'regressor'/'matrix'/'mtx'; nothing to convert")
        mat = obj[keys[0]]
    dense = _dense(mat) if scipy.sparse.issparse(mat) or isinstance(mat, np.ndarray) else None
    if dense is None or dense.ndim != 2 or dense.dtype.kind not in "fiu" or dense.size == 0:
        got = type(mat).__name__ if dense is None else f"{dense.dtype} {dense.shape}"
        raise ModelFileError(f"{src}: holds no 2-D numeric matrix ({got}); re-download it from its source")
    dst = _placed(src.with_suffix(".npy"), dest)
    with atomic_path(dst) as tmp, open(tmp, "xb") as fh:
        np.save(fh, dense)
    return dst


def _placed(dst: Path, dest: str | Path | None) -> Path:
    """``dst``, or its name in the folder ``dest``."""
    return dst if dest is None else Path(dest).expanduser() / dst.name


if __name__ == "__main__":  # (this converter's command until 2026-12: it must not end without a word)
    import sys

    sys.stderr.write("error: `python -m wbcap.eval.extra_files` is now `wbcap convert FILE.pkl`\n")
    raise SystemExit(2)
