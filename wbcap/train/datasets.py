"""Training sets by name: ``synthetic``, ``Human36M``, ``MSCOCO`` (COCO-WholeBody), concatenated;
``FreiHAND`` for the hand stage (:data:`wbcap.train.stages.STAGE_DATASETS`)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from wbcap.errors import InputError, setting
from wbcap.train.stages import STAGE_DATASETS, StageConfig

_LAYOUTS = {  # module holding each set's LAYOUT (imported only for a message)
    "Human36M": "wbcap.train.data.human36m", "MSCOCO": "wbcap.train.data.cocowb", "FreiHAND": "wbcap.train.data.freihand",
}


def check_datasets(stage: StageConfig, run) -> None:
    """Refuse, before any work, training sets the stage does not accept (:data:`STAGE_DATASETS`)
    and real sets whose folder is not in ``run.data_root``. The files inside are checked when
    the set is read (:func:`make_training_set`).

    Raises:
        InputError: naming the set and what the stage accepts, or the missing folder.
    """
    accepted = STAGE_DATASETS[stage.stage]
    if not stage.datasets:
        raise InputError(f"no training set given; {setting('datasets')} takes {', '.join(accepted)}")
    for name in stage.datasets:
        if name not in accepted:
            if stage.stage == "hand":
                raise InputError(f"the hand stage trains on FreiHAND, not {name}")
            if name == "FreiHAND":
                raise InputError("FreiHAND holds hand crops: it trains the hand stage (wbcap train hand)")
            raise InputError(f"unknown whole-body training set {name!r}; use {', '.join(accepted)}")
        if name == "synthetic":
            continue
        if run.data_root is None:
            raise InputError(f"dataset {name} needs {setting('data_root')} (the folder holding {name}/)"
                             + (f"; or train on {setting('datasets')} synthetic" if "synthetic" in accepted else ""))
        root = Path(run.data_root).expanduser()
        if not root.is_dir():
            raise InputError(f"{setting('data_root')} {run.data_root}: "
                             + ("not a folder" if root.exists() else "no such folder")
                             + f"; pass the folder holding {', '.join(n + '/' for n in stage.datasets if n != 'synthetic')}")
        folder = root / name
        if not folder.is_dir():
            import importlib

            from wbcap.train.data.common import DatasetLayoutError

            raise DatasetLayoutError.missing(folder, importlib.import_module(_LAYOUTS[name]).LAYOUT)


def make_training_set(stage: StageConfig, run, body_layer) -> Dataset:
    """The concatenation of ``stage.datasets`` (whole-body sample schema; the hand stage: FreiHAND's),
    each made for ``stage.model``'s geometry (crop size, heatmap cells)."""
    check_datasets(stage, run)
    parts = []
    for name in stage.datasets:
        if name == "synthetic":
            from wbcap.train.data.synthetic import SyntheticWholeBody

            parts.append(SyntheticWholeBody(body_layer, stage.synthetic_length, seed=stage.seed, config=stage.model))
            continue
        root = Path(run.data_root).expanduser()
        if name == "Human36M":
            from wbcap.train.data.human36m import Human36M

            parts.append(Human36M(root, "train", body_layer=body_layer, seed=stage.seed, model=stage.model))
        elif name == "FreiHAND":
            from wbcap.train.data.freihand import FreiHAND

            parts.append(FreiHAND(root, "train", seed=stage.seed, model=stage.model))
        else:  # MSCOCO (check_datasets allows nothing else)
            from wbcap.train.data.cocowb import COCOWholeBody

            parts.append(COCOWholeBody(root, "train", body_layer=body_layer, seed=stage.seed, model=stage.model))
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
