"""Evaluate a whole-body regressor on EHF, 3DPW, Human3.6M or AGORA with the standard protocols.

>>> from wbcap import Pipeline                                              # doctest: +SKIP
>>> from wbcap.eval.evaluate import evaluate, write_results                 # doctest: +SKIP
>>> result = evaluate("EHF", "data/", Pipeline.from_files("snapshot_6.pth.tar"))  # doctest: +SKIP
>>> result.metrics["mpvpe_all"]                                             # doctest: +SKIP

The datasets are read with the training loaders (:mod:`wbcap.train.data`) in upstream
Hand4Whole's layout (its parsed annotation files beside each dataset's own images; the links of
its README, :data:`wbcap.train.data.common.HAND4WHOLE_DATA`), without augmentation: EHF (all frames), 3DPW (``test`` split), Human3.6M (``test``
split: subjects 9 and 11, every 64th frame, camera 4). The network runs in batches on the
loaders' 512x384 crops; its predicted SMPL-X mesh is compared with the ground truth by
:mod:`wbcap.eval.protocols`:

* EHF: the GT SMPL-X mesh (rotated into the camera by the loader): ``mpvpe_all/hand/face``,
  ``pa_mpvpe_all/hand/face``, ``pa_mpjpe_body`` (J14), ``pa_mpjpe_hand``;
* Human3.6M: the 17 annotated joints (camera frame): ``mpjpe``, ``pa_mpjpe`` on 14 joints;
* 3DPW: the GT SMPL mesh (needs the SMPL model): ``mpjpe``, ``pa_mpjpe`` on the same 14 H36M
  joints, and ``mpvpe`` / ``pa_mpvpe`` on SMPL vertices when an SMPL-X -> SMPL vertex map is
  found.

Any callable ``EvalBatch -> (B, V, 3)`` vertices can stand in for the network (a
:class:`Predictor`), which is how the tests inject exact predictions.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from wbcap.atomic import atomic_write_text
from wbcap.body.model_files import find_body_model, resolve_gender
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.config import ModelConfig
from wbcap.errors import InputError, ModelFileError, setting
from wbcap.eval.extra_files import EXTRA_FILES, find_extra_file, is_upstreams, load_regressor, load_smplx_to_smpl
from wbcap.eval.metrics import regress
from wbcap.eval.protocols import WHOLE_BODY_METRICS, WholeBodyProtocol, h36m_errors, smpl_mesh_errors
from wbcap.model.precision import Precision
from wbcap.model.regressor import WholeBodyRegressor
from wbcap.train.data.common import data_loader, loader_batches

__all__ = [
    "DATASETS",
    "EvalBatch",
    "EvalJob",
    "EvalResult",
    "Predictor",
    "RegressorPredictor",
    "canonical_dataset",
    "evaluate",
    "run_eval",
    "write_results",
]

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("EHF", "PW3D", "Human36M", "AGORA")
_ALIASES = {"ehf": "EHF", "pw3d": "PW3D", "3dpw": "PW3D", "human36m": "Human36M", "h36m": "Human36M", "agora": "AGORA"}
METRICS: dict[str, tuple[str, ...]] = {
    "EHF": WHOLE_BODY_METRICS,
    "AGORA": WHOLE_BODY_METRICS,
    "Human36M": ("mpjpe", "pa_mpjpe"),
    "PW3D": ("mpjpe", "pa_mpjpe", "mpvpe", "pa_mpvpe"),
}
"""Metric names per dataset (PW3D's ``mpvpe``/``pa_mpvpe`` only with an SMPL-X -> SMPL map)."""


@dataclass(frozen=True)
class EvalBatch:
    """One batch handed to a predictor.

    indices: dataset indices of the samples. img: ``(B, 3, 512, 384)`` float32 RGB in [0, 1],
    the body crops. gt: the protocol's ground truth, metres, float32 -- EHF ``(B, 10475, 3)``
    SMPL-X mesh in camera axes; Human36M ``(B, 17, 3)`` H36M joints in the camera; PW3D
    ``(B, 6890, 3)`` SMPL mesh in the camera. Real predictors use only ``img``.
    """

    indices: list[int]
    img: torch.Tensor
    gt: torch.Tensor


@runtime_checkable
class Predictor(Protocol):
    """Anything that maps an :class:`EvalBatch` to predicted SMPL-X vertices ``(B, V, 3)`` m."""

    def __call__(self, batch: EvalBatch) -> torch.Tensor: ...


class RegressorPredictor:
    """The network as a :class:`Predictor`: crops -> ``RegressorOutput.vertices`` (camera, m)."""

    def __init__(self, regressor: WholeBodyRegressor, device: torch.device | str = "cpu", precision: str | Precision = "exact"):
        self.regressor = regressor
        self.device = torch.device(device)
        self.precision = Precision.parse(precision)
        self.regressor.to(self.device).eval()
        #: Called as ``on_output(batch.indices, RegressorOutput)`` after each batch (AGORA's
        #: prediction files: :class:`~wbcap.eval.agora_predictions.AgoraPredictionWriter`), or None.
        self.on_output: Callable[[list[int], Any], None] | None = None

    @torch.inference_mode()
    def __call__(self, batch: EvalBatch) -> torch.Tensor:
        img = batch.img.to(self.device, non_blocking=True)
        with self.precision.inference_context(self.device):  # exact/fast: per-part dtypes fixed in the network
            out = self.regressor(img)
        if self.on_output is not None:
            self.on_output(batch.indices, out)
        return out.vertices.float().cpu()


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`.

    metrics: mean over samples of each metric, mm, over the samples whose value is finite.
    per_sample: one dict per sample: ``index``, the dataset's ids (``image``, ``ann_id``,
    ``subject``...) and every metric in mm (NaN where the prediction was not finite). left_out:
    per metric, the samples left out of its mean for a value that is not finite (upstream's mean
    would be NaN; logged as a warning), metrics with none omitted. files: the extra files used
    (absolute paths). files_match_upstream: per regressor with a known upstream file
    (:data:`wbcap.eval.extra_files.UPSTREAM_SHA256`), whether the file used holds its values.
    model: what was evaluated (for a :class:`~wbcap.pipeline.Pipeline`: ``weights``,
    ``checkpoint``, ``body_model`` and ``precision``, paths absolute; else ``{"model": its type's
    name}``). data_root: the data folder (absolute); split_samples: the samples of the split;
    limit: the ``limit`` asked for (None: every sample), so a cut run cannot pass for a whole one;
    resolution: AGORA's images (``1280x720`` or ``3840x2160``), None for the other sets.
    """

    dataset: str
    metrics: dict[str, float]
    per_sample: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)
    files_match_upstream: dict[str, bool] = field(default_factory=dict)
    data_root: str | None = None
    split_samples: int | None = None
    limit: int | None = None
    resolution: str | None = None

    @property
    def num_samples(self) -> int:
        return len(self.per_sample)

    @property
    def partial(self) -> bool:
        """Whether fewer samples than the split's were evaluated (``limit``)."""
        return self.split_samples is not None and self.num_samples < self.split_samples

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nan -> None)."""
        return {
            "dataset": self.dataset,
            "units": "mm",
            "num_samples": self.num_samples,
            "split_samples": self.split_samples,
            "limit": self.limit,
            "resolution": self.resolution,
            "data_root": self.data_root,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "left_out": dict(self.left_out),
            "files": dict(self.files),
            "files_match_upstream": dict(self.files_match_upstream),
            "model": dict(self.model),
            "per_sample": [{k: _json_float(v) for k, v in s.items()} for s in self.per_sample],
        }


def _json_float(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_results(result: EvalResult, path: str | Path) -> Path:
    """Write ``result`` as JSON (``to_dict``) atomically; creates the parent folder."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(result.to_dict(), indent=1, allow_nan=False) + "\n", through_link=True)  # (--out)
    return p


def canonical_dataset(name: str) -> str:
    """``'EHF'``, ``'PW3D'``, ``'Human36M'`` or ``'AGORA'`` for a case-insensitive name or alias
    (3DPW, H36M). Raises InputError for any other name (one line listing the datasets)."""
    key = str(name).lower().replace("-", "").replace("_", "").replace(".", "")
    if key not in _ALIASES:
        raise InputError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return _ALIASES[key]


# ----------------------------------------------------------------------------------------------
# per-dataset tasks
# ----------------------------------------------------------------------------------------------
@dataclass
class _Task:
    dataset: torch.utils.data.Dataset
    gt: Callable[[int, dict[str, Any], dict[str, Any]], np.ndarray]
    ids: Callable[[int, dict[str, Any]], dict[str, Any]]
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
    files: dict[str, str]
    files_match_upstream: dict[str, bool] = field(default_factory=dict)


def _load_regressor(kind: str, num_vertices: int, body_models: Any, allow_pickle: bool, extra_dirs: Sequence[Path],
                    match: dict[str, bool]) -> tuple[np.ndarray, Path]:
    """:func:`~wbcap.eval.extra_files.load_regressor`, with ``match[kind]`` set to whether the file
    holds upstream's values, and a warning where it does not."""
    reg, path = load_regressor(kind, num_vertices, body_models, allow_pickle, extra_dirs)
    same = is_upstreams(kind, reg)
    if same is not None:
        match[kind] = same
    if same is False:
        logger.warning("%s is not upstream Hand4Whole's %s (its values differ): the numbers will not be comparable "
                       "with the paper's; to use upstream's, %s", path, EXTRA_FILES[kind].what, EXTRA_FILES[kind].source)
    return reg, path


def _ehf_task(data_root: Path, layer: SMPLXLayer, body_models: Any, allow_pickle: bool, geometry: ModelConfig) -> _Task:
    from wbcap.train.data.ehf import EHF

    protocol = WholeBodyProtocol.from_files(layer.J_regressor.detach().cpu(), body_models, allow_pickle)
    files = {k: str(find_extra_file(k, body_models, allow_pickle)) for k in ("j14", "hand_ids", "face_ids")}
    ds = EHF(data_root, model=geometry)

    def gt(idx: int, targets: dict[str, Any], meta: dict[str, Any]) -> np.ndarray:
        return np.asarray(targets["smplx_mesh_cam"], np.float32)

    def ids(idx: int, meta: dict[str, Any]) -> dict[str, Any]:
        return {"image": Path(ds.records[idx]["img_path"]).name}

    return _Task(ds, gt, ids, protocol, files)


def _h36m_task(data_root: Path, layer: SMPLXLayer, body_models: Any, allow_pickle: bool, geometry: ModelConfig) -> _Task:
    from wbcap.train.data.human36m import Human36M

    num_v = layer.num_vertices
    match: dict[str, bool] = {}
    reg, reg_path = _load_regressor("h36m_smplx", num_v, body_models, allow_pickle, [data_root / "Human36M"], match)
    ds = Human36M(data_root, "test", body_layer=layer, augment=None, model=geometry)

    # The loader's samples hold the H36M joints mapped into the 137-joint set, which has no
    # Head_top; the protocol needs all 17, so they are read from its records (camera frame, mm).
    def gt(idx: int, targets: dict[str, Any], meta: dict[str, Any]) -> np.ndarray:
        return (np.asarray(ds.records[idx]["joint_cam"], np.float64) / 1000.0).astype(np.float32)

    def ids(idx: int, meta: dict[str, Any]) -> dict[str, Any]:
        rec = ds.records[idx]
        return {
            "image": str(Path(rec["img_path"]).name),
            "image_id": int(rec["image_id"]),
            "subject": int(rec["subject"]),
            "frame": int(rec["frame_idx"]),
        }

    def score(pred: torch.Tensor, gt_joints: torch.Tensor) -> dict[str, torch.Tensor]:
        return h36m_errors(regress(reg, pred), gt_joints)

    return _Task(ds, gt, ids, score, {"h36m_smplx": str(reg_path)}, match)


def _pw3d_task(data_root: Path, layer: SMPLXLayer, body_models: Any, allow_pickle: bool, geometry: ModelConfig) -> _Task:
    from wbcap.eval.smpl import SMPL_NUM_VERTICES, load_smpl_layers
    from wbcap.train.data.pw3d import PW3D

    num_v = layer.num_vertices
    try:
        smpl_layers = load_smpl_layers(body_models, allow_pickle)
    except ModelFileError as exc:
        raise ModelFileError(f"3DPW ground truth needs the SMPL model: {exc}") from None
    # (upstream keeps both regressors in data/Human36M/: the Pose2Pose branch's 3DPW evaluation
    # reads the SMPL one from there)
    match: dict[str, bool] = {}
    h36m = [data_root / "Human36M"]
    reg_x, path_x = _load_regressor("h36m_smplx", num_v, body_models, allow_pickle, h36m, match)
    reg_s, path_s = _load_regressor("h36m_smpl", SMPL_NUM_VERTICES, body_models, allow_pickle, h36m, match)
    files = {"h36m_smplx": str(path_x), "h36m_smpl": str(path_s)}
    # the SMPL model of each gender's ground truth (a stand-in's file where one was missing)
    files.update({f"smpl_{g}": str(smpl_layers[g].source) for g in ("neutral", "male", "female")
                  if smpl_layers[g].source is not None})
    to_smpl: Any = None  # scipy CSR (6890, V); regress() applies it sparsely
    try:
        find_extra_file("smplx_to_smpl", body_models, allow_pickle)
    except ModelFileError as exc:  # optional: only PVE needs it
        logger.warning("3DPW: mpvpe skipped (%s)", exc)
    else:
        to_smpl, path_m = load_smplx_to_smpl(num_v, SMPL_NUM_VERTICES, body_models, allow_pickle)
        files["smplx_to_smpl"] = str(path_m)
    ds = PW3D(data_root, "test", smpl_model=smpl_layers, model=geometry)

    def gt(idx: int, targets: dict[str, Any], meta: dict[str, Any]) -> np.ndarray:
        if "smpl_mesh_cam" not in targets:  # pragma: no cover - the loader got a model above
            raise ModelFileError("3DPW ground truth needs the SMPL model (SMPL_NEUTRAL.npz): see wbcap doctor")
        return np.asarray(targets["smpl_mesh_cam"], np.float32)

    def ids(idx: int, meta: dict[str, Any]) -> dict[str, Any]:
        return {"ann_id": int(meta["ann_id"]), "gender": str(meta["gender"])}

    def score(pred: torch.Tensor, gt_mesh: torch.Tensor) -> dict[str, torch.Tensor]:
        out = h36m_errors(regress(reg_x, pred), regress(reg_s, gt_mesh))
        if to_smpl is not None:
            out.update(smpl_mesh_errors(regress(to_smpl, pred), gt_mesh, reg_s))
        return out

    return _Task(ds, gt, ids, score, files, match)


def _agora_task(data_root: Path, layer: SMPLXLayer, body_models: Any, allow_pickle: bool, geometry: ModelConfig,
                resolution: str = "1280x720", split: str = "validation") -> _Task:
    """AGORA's validation split, its 1280x720 images or upstream's 3840x2160 person crops
    (``resolution``; upstream ``AGORA.evaluate`` with ``test_set = 'val'``): the
    ground truth is each fit's mesh through the neutral SMPL-X layer (upstream's, also for the fits
    of other genders and of kids: their first 10 betas), scored with the whole-body protocol
    (upstream reports its six vertex errors; the two joint errors of EHF's protocol come along)."""
    from wbcap.train.data.agora import AGORA

    if resolve_gender(None, body_models) != "neutral":  # (the layer would pose the ground truth)
        raise InputError(f"AGORA's ground truth is posed by the neutral SMPL-X model (upstream's), not the "
                         f"{resolve_gender(None, body_models)} one {setting('body_models')} names: pass "
                         f"SMPLX_NEUTRAL.npz or its folder")
    if split == "test":
        protocol, files = None, {}
    else:
        protocol = WholeBodyProtocol.from_files(layer.J_regressor.detach().cpu(), body_models, allow_pickle)
        files = {k: str(find_extra_file(k, body_models, allow_pickle)) for k in ("j14", "hand_ids", "face_ids")}
    ds = AGORA(data_root, split, layer, augment=None, model=geometry, resolution=resolution)

    def gt(idx: int, targets: dict[str, Any], meta: dict[str, Any]) -> np.ndarray:
        return np.asarray(targets["smplx_mesh_cam"], np.float32)

    def ids(idx: int, meta: dict[str, Any]) -> dict[str, Any]:
        rec = ds.records[idx]
        ann = {"ann_id": int(rec["ann_id"])} if "ann_id" in rec else {}
        return {"image": Path(rec["img_path"]).name, **ann, "person_id": rec["person_id"]}

    def no_ground_truth(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    return _Task(ds, gt, ids, no_ground_truth if split == "test" else protocol, files)


#: The sets' tasks without options of their own (AGORA's, with its split and images: :func:`_agora_task`).
_TASKS = {"EHF": _ehf_task, "Human36M": _h36m_task, "PW3D": _pw3d_task}


class _EvalView(torch.utils.data.Dataset):
    """(index, crop, ground truth, ids) per sample, for a DataLoader."""

    def __init__(self, task: _Task, indices: Sequence[int]):
        self.task = task
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> _Item:
        idx = self.indices[i]
        inputs, targets, meta = self.task.dataset[idx]
        return idx, inputs["img"], self.task.gt(idx, targets, meta), self.task.ids(idx, meta)


_Item = tuple[int, np.ndarray, np.ndarray, dict[str, Any]]


def _collate(items: list[_Item]) -> tuple[list[int], torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    idx = [it[0] for it in items]
    img = torch.from_numpy(np.stack([it[1] for it in items]))
    gt = torch.from_numpy(np.stack([it[2] for it in items]))
    return idx, img, gt, [it[3] for it in items]


#: The folder of each dataset under ``data_root`` (the loaders' upstream layout).
_DATASET_DIRS = {"EHF": "EHF", "PW3D": "PW3D", "Human36M": "Human36M", "AGORA": "AGORA"}
#: Other names a set's folder has (its release's own, other projects'), said in the error for a missing one.
_FOLDER_ALIASES = {"PW3D": ("3DPW", "3dpw"), "Human36M": ("Human3.6M", "H36M", "h36m"), "EHF": ("ehf",)}


@dataclass(frozen=True)
class EvalInputs:
    """What an evaluation reads besides the checkpoint (:func:`check_inputs`): ``root`` the data
    root (``~`` expanded), ``dataset`` the dataset's folder in it (``root/EHF`` ...), ``files``
    the model files found for it (how a message names each -> path: the SMPL-X model, the
    protocol's extra files)."""

    root: Path
    dataset: Path
    files: Mapping[str, Path]


def check_inputs(dataset_name: str, data_root: str | Path, body_models: str | Path | None = None,
                 allow_pickle: bool = False, body_model: bool = False, resolution: str | None = None,
                 split: str | None = None, predictions: str | Path | None = None, num_workers: int = 0) -> EvalInputs:
    """What :func:`evaluate` needs besides the model, checked in a moment (before a network is
    built): ``data_root`` and its dataset folder exist, and the extra files the protocol reads
    are found (EHF and AGORA: ``SMPLX_to_J14``, the MANO and FLAME vertex ids; Human36M: the H36M
    regressor for SMPL-X, also looked for in ``Human36M/``; 3DPW: the SMPL model and both H36M
    regressors), with ``body_model`` also the SMPL-X model a pipeline built from
    ``body_models`` loads (``wbcap eval``'s; a model passed to :func:`evaluate` brings its own),
    and with ``num_workers`` a temporary folder their sockets fit in
    (:func:`wbcap.temp_folders.check_worker_temp_folder`).
    Returns them (an output must not overwrite any).

    Raises:
        InputError: an unknown dataset, no such folder (DatasetLayoutError: AGORA's annotation file,
            or a file its valid annotations name, missing). ModelFileError: a missing model or extra
            file (one line: where it looked, where to get it).
    """
    from wbcap.eval.smpl import find_smpl_model

    name = canonical_dataset(dataset_name)
    if num_workers > 0:
        from wbcap.temp_folders import check_worker_temp_folder

        check_worker_temp_folder(setting("workers", api="num_workers"))
    if predictions is not None and name != "AGORA":
        raise InputError(f"{setting('predictions')} writes AGORA's prediction files; drop it for {name}")
    if split is not None and (name != "AGORA" or split not in ("validation", "test")):
        raise InputError(f"{setting('split')} {split}: AGORA's validation or test split" if name == "AGORA"
                         else f"{setting('split')} is AGORA's (validation or test); drop it for {name}")
    if split == "test" and predictions is None:
        raise InputError(f"AGORA's test split has no ground truth (its server scores the people found): pass "
                         f"{setting('predictions')} DIR to write the prediction files")
    if predictions is not None and Path(predictions).expanduser().exists() and (
            not Path(predictions).expanduser().is_dir() or any(Path(predictions).expanduser().iterdir())):
        raise InputError(f"{setting('predictions')} {predictions}: not a new or empty folder (the files of another "
                         f"run would be zipped with these); choose another")
    if resolution is not None and (name != "AGORA" or resolution not in ("1280x720", "3840x2160")):
        raise InputError(f"{setting('resolution')} {resolution}: only AGORA has a choice of images, 1280x720 or "
                         f"3840x2160 (upstream's person crops)" if name == "AGORA" else
                         f"{setting('resolution')} is AGORA's (its 1280x720 images or 3840x2160 crops); drop it for {name}")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise InputError(f"{setting('data_root')} {root} is not a folder: pass the folder holding {name}/")
    if not (root / _DATASET_DIRS[name]).is_dir():
        # (the dataset's own name for its folder: 3DPW's release unpacks to 3DPW/, upstream names it PW3D/; a break-it trial)
        other = next((root / alias for alias in _FOLDER_ALIASES.get(name, ()) if (root / alias).is_dir()), None)
        rename = "" if other is None else f"; {other}/ is there: rename it {_DATASET_DIRS[name]}"
        raise InputError(f"{setting('data_root')} {root} holds no {_DATASET_DIRS[name]}/ folder: pass the folder "
                         f"holding {_DATASET_DIRS[name]}/ (the upstream Hand4Whole layout){rename}")
    _check_annotation_files(name, root, split)
    files: dict[str, Path] = {}
    if body_model:
        gender = resolve_gender(None, body_models)
        if gender != "neutral":  # (the network's body, the protocols' alignment joints: upstream's neutral model)
            raise InputError(f"{setting('body_models')} {body_models} names the {gender} SMPL-X model: {_NEUTRAL_ONLY}; "
                             f"pass SMPLX_NEUTRAL.npz or its folder")
        found = files["the SMPL-X model"] = find_body_model(gender, body_models, allow_pickle)
        linked = _linked_gender(found)
        if linked is not None:
            raise InputError(f"{setting('body_models')} {body_models}: {found} is a link to the {linked} SMPL-X model "
                             f"({found.resolve()}): {_NEUTRAL_ONLY}; pass SMPLX_NEUTRAL.npz or its folder")
    if name == "EHF" or (name == "AGORA" and split != "test"):  # (AGORA's test split: no metrics)
        for kind in ("j14", "hand_ids", "face_ids"):
            files[EXTRA_FILES[kind].what] = find_extra_file(kind, body_models, allow_pickle)
    elif name == "Human36M":
        files[EXTRA_FILES["h36m_smplx"].what] = find_extra_file("h36m_smplx", body_models, allow_pickle,
                                                               [root / "Human36M"])
    else:
        errors = []
        for gender in ("neutral", "male", "female"):  # (any will do: load_smpl_layers stands one in for another)
            try:
                files["the SMPL model"] = find_smpl_model(gender, body_models, allow_pickle)
                break
            except ModelFileError as exc:
                errors.append(exc)
        else:
            raise ModelFileError(f"3DPW ground truth needs the SMPL model: {errors[0]}") from None
        for kind in ("h36m_smplx", "h36m_smpl"):
            files[EXTRA_FILES[kind].what] = find_extra_file(kind, body_models, allow_pickle, [root / "Human36M"])
    if name == "AGORA":  # (its thousands of per-person files: every one there before the network is built)
        from wbcap.train.data.agora import check_split_files

        check_split_files(root, split or "validation", resolution or "1280x720")
    return EvalInputs(root, root / _DATASET_DIRS[name], files)


def _check_annotation_files(name: str, root: Path, split: str | None) -> None:
    """The dataset's annotation files under ``root`` exist (AGORA's, with every file its valid
    annotations name, are checked by :func:`check_inputs` after the model files). Raises
    DatasetLayoutError naming the first missing one and the layout."""
    if name == "EHF":
        from wbcap.train.data.ehf import check_split_files as check_ehf

        check_ehf(root)
    elif name == "PW3D":
        from wbcap.train.data.pw3d import check_split_files as check_pw3d

        check_pw3d(root, "test")
    elif name == "Human36M":
        from wbcap.train.data.human36m import check_split_files as check_h36m

        check_h36m(root, "test")


#: What each set's evaluation split keeps of its annotations (the message of an empty split).
_SPLIT_RULES = {
    "EHF": "every annotated frame with a body box",
    "PW3D": "3DPW_test.json's people with a body box",
    "Human36M": "subjects 9 and 11, every 64th frame (frame_idx % 64 == 0), camera 4 only, with a body box",
    "AGORA": "the valid annotations of the split",
}


def _model_record(model: Any, batch_size: int | None = None) -> dict[str, Any]:
    """:attr:`EvalResult.model` for ``model`` run ``batch_size`` crops a call: what makes its
    numbers, down to the last digits (the checkpoint's SHA-256; the device; on a CPU the
    inference form of each part, :class:`~wbcap.model.strategy.CpuStrategy`, whose float
    rounding moves ``exact``'s errors by ~1e-4 mm from one form or batch size to another)."""
    from wbcap.pipeline import Pipeline
    from wbcap.weights import sha256_file

    source = model.source if isinstance(model, Pipeline) else None
    if source is None:
        return {"model": type(model).__name__}
    strategy = getattr(model.regressor.net, "cpu_strategy", None)
    n = max(1, int(batch_size or 1))
    return {
        "weights": source.weights,
        "checkpoint": None if source.checkpoint is None else str(Path(source.checkpoint).absolute()),
        "checkpoint_sha256": None if source.checkpoint is None else sha256_file(Path(source.checkpoint)),
        "body_model": str(Path(source.body_model).absolute()),
        "body_model_synthetic": bool(source.body_model_synthetic),
        "precision": str(model.precision),
        "device": str(model.device),
        "batch_size": batch_size,
        "cpu_strategy": None if strategy is None else {"source": strategy.source, "summary": strategy.summary(n),
                                                       "parts": strategy.describe(n)},
    }


def _resolve_model(
    model: Any, device: torch.device | str | None, body_models: Any, allow_pickle: bool
) -> tuple[Callable[[EvalBatch], torch.Tensor], SMPLXLayer]:
    """(predictor, a CPU SMPL-X layer for the protocol and the loaders)."""
    from wbcap.pipeline import Pipeline

    if isinstance(model, Pipeline):
        _check_neutral_pipeline(model)
        return RegressorPredictor(model.regressor, model.device, model.precision), _cpu_layer(model.regressor.body)
    if isinstance(model, WholeBodyRegressor):
        dev = torch.device(device) if device is not None else next(model.parameters()).device
        return RegressorPredictor(model, dev), _cpu_layer(model.body)
    if callable(model):
        layer = SMPLXLayer.from_file(find_body_model("neutral", body_models, allow_pickle), allow_pickle=allow_pickle)
        return model, layer
    raise TypeError(f"model must be a Pipeline, a WholeBodyRegressor or a Predictor, got {type(model).__name__}")


#: Why the evaluation takes only the neutral SMPL-X model (the network's body, and the protocols'
#: alignment joints: upstream's ``human_models.py`` regresses them with the neutral model).
_NEUTRAL_ONLY = "Hand4Whole's network and its evaluation use the neutral one, so the numbers would not be the paper's"


def _check_neutral_pipeline(pipe: Any) -> None:
    """Refuse a Pipeline built on a gendered SMPL-X model, as the command refuses one: as the
    name of its file says, or of the file that links to (its config's gender where the file is not
    known); the synthetic stand-in is neutral (the command's check covers only ``body_models``; a
    Pipeline of the male model was scored with that model's joints, an eval review). A
    :class:`WholeBodyRegressor` does not know its file, and is taken as it is.

    Raises:
        InputError: the pipeline's SMPL-X model is the male or the female one.
    """
    from wbcap.body.model_files import model_file_gender

    if pipe.source is not None and pipe.source.body_model_synthetic:  # (the neutral stand-in, whatever was asked)
        return
    path = pipe.source.body_model if pipe.source is not None else None
    if path is None:  # (the config's word for it)
        genders = [pipe.built_from.body.gender if pipe.built_from is not None else None]
    else:  # (the file used, by its name or the name of the file it links to)
        genders = [model_file_gender(path), _linked_gender(path)]
    for gender in genders:
        gender = None if gender is None else str(gender).lower()
        if gender not in (None, "neutral"):
            where = f" ({path})" if path is not None else ""
            raise InputError(f"evaluate(..., model): the Pipeline's SMPL-X model is the {gender} one{where}: "
                             f"{_NEUTRAL_ONLY}; build it with SMPLX_NEUTRAL.npz")


def _linked_gender(path: str | Path) -> str | None:
    """The gender other than neutral that the name of the file ``path`` links to says (a
    ``model.npz`` linking to ``SMPLX_MALE.npz`` passed the check of names: a break-it trial);
    None where ``path`` is no link, or its target's name says neutral or nothing."""
    from wbcap.body.model_files import model_file_gender

    p = Path(path).expanduser()
    try:
        target = p.resolve() if p.is_symlink() or any(q.is_symlink() for q in p.parents) else p
    except (OSError, RuntimeError):
        return None
    gender = model_file_gender(target) if target != p else None
    return gender if gender not in (None, "neutral") else None


def _geometry(model: Any) -> ModelConfig:
    """The network geometry the crops are made for: a Pipeline's or regressor's config (its
    ``input_img_shape`` crops; a checkpoint of other input sizes is fed crops of its own), else
    (any other predictor) the released network's."""
    from wbcap.pipeline import Pipeline

    if isinstance(model, Pipeline):
        return model.regressor.config
    if isinstance(model, WholeBodyRegressor):
        return model.config
    if isinstance(model, RegressorPredictor):
        return model.regressor.config
    return ModelConfig()


def _cpu_layer(layer: SMPLXLayer) -> SMPLXLayer:
    if layer.v_template.device.type == "cpu":
        return layer
    return copy.deepcopy(layer).cpu()


def evaluate(
    dataset_name: str,
    data_root: str | Path,
    model: Any,
    *,
    body_models: str | Path | None = None,
    allow_pickle: bool = False,
    device: torch.device | str | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    resolution: str | None = None,
    predictions: str | Path | None = None,
    split: str | None = None,
) -> EvalResult:
    """Run ``model`` over a dataset's evaluation split and score it.

    Args:
        dataset_name: ``EHF``, ``PW3D`` (alias ``3DPW``), ``Human36M`` (alias ``H36M``) or
            ``AGORA`` (its validation split).
        data_root: folder holding ``EHF/``, ``PW3D/``, ``Human36M/`` or ``AGORA/`` (upstream
            Hand4Whole's layout, see the loaders in :mod:`wbcap.train.data`).
        model: a :class:`~wbcap.pipeline.Pipeline`, a
            :class:`~wbcap.model.regressor.WholeBodyRegressor` (run on ``device``, default its
            parameters' device) or any :class:`Predictor`.
        body_models: SMPL-X file/folder; also where the extra files and the SMPL model are looked
            for (then ``$WBCAP_BODY_MODELS``, then the user data folder). For a Pipeline or a
            regressor the SMPL-X model is the one they carry.
        allow_pickle: also read ``.pkl`` model / extra files (pickles can run code).
        limit: evaluate only the first ``limit`` samples.
        batch_size: crops per network call; num_workers: DataLoader workers.
        progress: called as ``progress(done, total)`` after every batch.
        resolution: AGORA only: ``'1280x720'`` (the default: its 1280x720 images) or
            ``'3840x2160'`` (upstream's person crops of the 3840x2160 images, its ``AGORA.py``
            default; :class:`~wbcap.train.data.agora.AGORA`).
        predictions: AGORA only, a network ``model`` only: also write AGORA's prediction files
            (its evaluation code's format: :mod:`wbcap.eval.agora_predictions`) into this folder.
        split: AGORA only: ``'validation'`` (the default) or ``'test'`` (no ground truth, no
            metrics: its detections' people, for ``predictions``, which it needs).

    Returns:
        :class:`EvalResult` with mean metrics (mm) and per-sample errors.

    Raises:
        ModelFileError: a needed extra file / SMPL model is missing (:func:`check_inputs`, before
            anything but the settings' own checks).
        InputError: unknown dataset, dataset layout problems, no samples, no ``model``, a Pipeline
            of the male or female SMPL-X model (:func:`_check_neutral_pipeline`), or a
            ``batch_size``, ``limit`` or ``num_workers`` out of range (:func:`check_loader_settings`).
        ValueError: the predictor returned something other than ``(B, V, 3)`` vertices (a tensor
            or a NumPy array).
    """
    check_loader_settings(batch_size, limit, num_workers)
    if model is None:
        raise InputError("evaluate(..., model): give a Pipeline, a WholeBodyRegressor or a predictor of vertices")
    name = canonical_dataset(dataset_name)
    root = check_inputs(name, data_root, body_models, allow_pickle, resolution=resolution, split=split,
                        predictions=predictions, num_workers=num_workers).root
    predictor, layer = _resolve_model(model, device, body_models, allow_pickle)
    if predictions is not None and not isinstance(predictor, RegressorPredictor):
        raise InputError(f"{setting('predictions')} needs the network (a Pipeline or a WholeBodyRegressor) to write "
                         f"its parameters, not a predictor of vertices")
    task = (_agora_task(root, layer, body_models, allow_pickle, _geometry(model), resolution or "1280x720",
                        split or "validation")
            if name == "AGORA" else _TASKS[name](root, layer, body_models, allow_pickle, _geometry(model)))
    total = split_samples = len(task.dataset)
    if limit is not None:
        total = min(total, int(limit))
    if total == 0:
        raise InputError(f"{name} under {root}: no samples to evaluate (the split keeps {_SPLIT_RULES[name]}: none "
                         f"of its annotations passed)")
    if predictions is not None:
        from wbcap.eval.agora_predictions import AgoraPredictionWriter

        predictor.on_output = AgoraPredictionWriter(predictions, predictor.regressor, task.dataset)
    if num_workers > 0:  # (here, once: check_inputs runs twice under run_eval)
        from wbcap.train.data.common import warn_if_more_workers_than_cpus

        warn_if_more_workers_than_cpus(int(num_workers), setting("workers", api="num_workers"))
    loader = data_loader(
        _EvalView(task, range(total)), batch_size=max(1, int(batch_size)), shuffle=False,
        num_workers=int(num_workers), collate_fn=_collate,
    )  # fmt: skip
    per_sample: list[dict[str, Any]] = []
    columns: dict[str, list[torch.Tensor]] = {}
    done = 0
    with loader_batches(loader) as batches:  # (a damaged file read in a worker: its own one-line message)
        for indices, img, gt, ids in batches:
            pred = predictor(EvalBatch(indices=indices, img=img, gt=gt))
            if isinstance(pred, np.ndarray):  # (refused with a message about its shape, which was right)
                pred = torch.from_numpy(pred)
            if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[0] != len(indices):
                got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                raise ValueError(f"predictor returned {got}, expected a ({len(indices)}, V, 3) tensor of vertices")
            scores = task.score(pred.detach().cpu(), gt)
            for key, value in scores.items():
                columns.setdefault(key, []).append(value.detach().cpu().double())
            rows = {k: v.detach().cpu().double().tolist() for k, v in scores.items()}
            for j, idx in enumerate(indices):
                per_sample.append({"index": int(idx), **ids[j], **{k: float(v[j]) for k, v in rows.items()}})
            done += len(indices)
            if progress is not None:
                progress(done, total)
    metrics: dict[str, float] = {}
    left_out: dict[str, int] = {}
    for key in METRICS[name]:
        if key in columns:
            values = torch.cat(columns[key])
            finite = torch.isfinite(values)
            metrics[key] = float(values[finite].mean()) if bool(finite.any()) else float("nan")
            if not bool(finite.all()):
                left_out[key] = int((~finite).sum())
    if left_out:
        worst = max(left_out.values())
        up_to = "" if len(set(left_out.values())) == 1 else "up to "
        logger.warning("%s: %s%d of %d samples had a prediction that is not finite and are left out of the means of %s "
                       "(their per-sample values are null in --out; upstream's evaluation would stop at the first: "
                       "numpy's SVD in its Procrustes alignment does not converge on a NaN)",
                       name, up_to, worst, done, ", ".join(left_out))
    logger.debug("%s: %d samples evaluated", name, done)
    files = {k: str(Path(v).absolute()) for k, v in task.files.items()}  # (absolute, as the model record: read anywhere)
    return EvalResult(dataset=name, metrics=metrics, per_sample=per_sample, files=files, model=_model_record(model, int(batch_size)),
                      left_out=left_out, files_match_upstream=dict(task.files_match_upstream),
                      data_root=str(root.absolute()), split_samples=split_samples,
                      limit=None if limit is None else int(limit),
                      resolution=(resolution or "1280x720") if name == "AGORA" else None)


# ----------------------------------------------------------------------------------------------
# the whole command: checks, the network, the scores, the results file
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalJob:
    """Everything ``wbcap eval`` does, resolved at the entry point (the CLI's options by name).

    dataset: a name :func:`canonical_dataset` takes; data_root: the folder holding it;
    checkpoint, body_models, allow_pickle, device, precision, batch_size: the network's
    (:class:`~wbcap.config.PipelineConfig`; the checkpoint None: the installed one); num_workers,
    limit, resolution, predictions, split: :func:`evaluate`'s; out: a JSON file for the
    results (:func:`write_results`), None: none.
    """

    dataset: str
    data_root: str
    checkpoint: str | None = None
    body_models: str | None = None
    allow_pickle: bool = False
    device: str = "auto"
    precision: str = "exact"
    batch_size: int = 8
    num_workers: int = 0
    limit: int | None = None
    resolution: str | None = None
    predictions: str | None = None
    split: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        """Raises InputError (one line naming the setting) for a ``batch_size`` or ``limit`` that
        is not a whole number of 1 or more, or ``num_workers`` not one of 0 or more (torch's own
        error came after the network was built: a break-it trial)."""
        check_loader_settings(self.batch_size, self.limit, self.num_workers)


def check_loader_settings(batch_size: object, limit: object, num_workers: object) -> None:
    """Raises InputError (one line naming the setting) for a ``batch_size`` or ``limit`` (None
    allowed) that is not a whole number of 1 or more, or ``num_workers`` not one of 0 or more:
    :class:`EvalJob`'s rule and :func:`evaluate`'s (which ran a batch size of 0 as 1 and called a
    limit of -1 "limit 0": a user trial)."""
    from wbcap.limits import is_whole

    for name, value, least, optional in (("batch_size", batch_size, 1, False), ("limit", limit, 1, True),
                                         ("num_workers", num_workers, 0, False)):
        if optional and value is None:
            continue
        if not is_whole(value, least):
            flag = setting({"num_workers": "workers"}.get(name, name), api=name)
            raise InputError(f"{flag} {value!r}: a whole number of {least} or more")


def run_eval(job: EvalJob, progress: Callable[[int, int], None] | None = None) -> tuple[EvalResult, Path | None]:
    """Check everything the evaluation reads and writes (before the network is built: a missing
    extra file, a dataset layout problem or an ``out`` that cannot be written, or that would
    replace a file the evaluation reads, is one line at once), build the network, evaluate it
    (``progress(done, total)`` after every batch) and write ``job.out``.

    Returns:
        ``(result, the results file or None)``.

    Raises:
        InputError, ModelFileError, CheckpointError: one line naming the file or setting.
    """
    from wbcap.atomic import check_writable_file
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.pipeline import Pipeline

    name = canonical_dataset(job.dataset)
    if job.out is not None:
        check_writable_file(job.out)  # (one line now, not after the evaluation)
    reads = check_inputs(name, job.data_root, job.body_models, job.allow_pickle, body_model=True,
                         resolution=job.resolution, split=job.split, predictions=job.predictions,
                         num_workers=job.num_workers)
    if job.out is not None:  # never over a file the evaluation reads, however it was found
        from wbcap.weights import find_checkpoint

        # (a checkpoint no flag named is not called --checkpoint's: a user trial)
        named = setting("checkpoint") if job.checkpoint is not None else "the checkpoint evaluated"
        check_writable_file(job.out, inputs={named: find_checkpoint(job.checkpoint), **reads.files},
                            input_folders={f"the {name} dataset": reads.dataset})
    pipeline = Pipeline.from_config(PipelineConfig(
        body=BodyModelConfig(path=job.body_models, allow_pickle=job.allow_pickle), checkpoint=job.checkpoint,
        device=job.device, batch_size=job.batch_size, precision=job.precision))
    result = evaluate(name, job.data_root, pipeline, body_models=job.body_models, allow_pickle=job.allow_pickle,
                      batch_size=job.batch_size, num_workers=job.num_workers, limit=job.limit, progress=progress,
                      resolution=job.resolution, predictions=job.predictions, split=job.split)
    return result, None if job.out is None else write_results(result, job.out)
