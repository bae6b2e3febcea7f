"""Training sets by name: ``synthetic``, ``Human36M``, ``MSCOCO`` (COCO-WholeBody), concatenated."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from wbcap.errors import InputError, setting

WHOLE_BODY_SETS = ("synthetic", "Human36M", "MSCOCO")


def make_training_set(stage, run, body_layer) -> Dataset:
    """The concatenation of ``stage.datasets`` (whole-body sample schema)."""
    parts = []
    for name in stage.datasets:
        if stage.stage == "hand" and name != "FreiHAND":
            raise InputError(f"the hand stage trains on FreiHAND, not {name}")
        if name == "synthetic":
            from wbcap.train.data.synthetic import SyntheticWholeBody

            parts.append(SyntheticWholeBody(body_layer, stage.synthetic_length, seed=stage.seed, config=stage.model))
            continue
        if run.data_root is None:
            raise InputError(f"dataset {name} needs {setting('data_root')} (the folder holding {name}/); "
                             f"or train on {setting('datasets')} synthetic")
        root = Path(run.data_root).expanduser()
        if name == "Human36M":
            from wbcap.train.data.human36m import Human36M

            parts.append(Human36M(root, "train", body_layer=body_layer, seed=stage.seed))
        elif name == "FreiHAND":
            if stage.stage != "hand":
                raise InputError("FreiHAND holds hand crops: it trains the hand stage (wbcap train hand)")
            from wbcap.train.data.freihand import FreiHAND

            parts.append(FreiHAND(root, "train", seed=stage.seed))
        elif name == "MSCOCO":
            from wbcap.train.data.cocowb import COCOWholeBody

            parts.append(COCOWholeBody(root, "train", body_layer=body_layer, seed=stage.seed))
        else:
            raise InputError(f"unknown whole-body training set {name!r}; use {', '.join(WHOLE_BODY_SETS)}")
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
