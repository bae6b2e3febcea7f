"""Training sets by name: ``synthetic``, ``Human36M``, ``MSCOCO`` (COCO-WholeBody), ``MPII``, ``AGORA``
(upstream's fine-tuning set: ``--config agora``), mixed as upstream mixes them
(:class:`SameLengthGroups`); ``FreiHAND``, ``InterHand26M`` (:mod:`wbcap.train.data.interhand`) and
``MSCOCO`` (there COCO-WholeBody's hand crops, :mod:`wbcap.train.data.coco_hands`, as upstream's Pose2Pose
loader reads its parts) for the hand stage (:data:`wbcap.train.stages.STAGE_DATASETS`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from wbcap.errors import InputError, setting
from wbcap.train.stages import STAGE_DATASETS, StageConfig

_LAYOUTS = {  # module holding each set's LAYOUT (imported only for a message)
    "Human36M": "wbcap.train.data.human36m", "MSCOCO": "wbcap.train.data.cocowb", "MPII": "wbcap.train.data.mpii",
    "FreiHAND": "wbcap.train.data.freihand", "InterHand26M": "wbcap.train.data.interhand", "AGORA": "wbcap.train.data.agora",
}
_HAND_LAYOUTS = {**_LAYOUTS, "MSCOCO": "wbcap.train.data.coco_hands"}  # (the hand stage's MSCOCO: hand crops)


#: The training sets with 3D targets (joints in the camera, SMPL-X or MANO parameters); the others
#: (COCO-WholeBody, MPII; in the hand stage COCO-WholeBody's hand crops) have 2D ones. Upstream's
#: ``trainset_3d`` / ``trainset_2d`` (main/config.py; its hand model's 3D sets FreiHAND and InterHand2.6M;
#: its AGORA fine-tuning's ``trainset_3d=['AGORA']``).
THREE_D_SETS = frozenset({"Human36M", "synthetic", "FreiHAND", "InterHand26M", "AGORA"})


def tell_epoch(dataset: Dataset, epoch: int, base_seed: int) -> None:
    """Give ``dataset`` (a set, a ``ConcatDataset`` of sets, or a :class:`SameLengthGroups`) the
    augmentation draw of ``epoch``: sets with ``set_epoch(epoch)`` (the real ones and
    :class:`SameLengthGroups`) are told it; seeded ones without it (the synthetic set) get
    ``seed = base_seed + epoch * 1_000_003``. A ``Subset`` hides both and stays fixed."""
    if isinstance(dataset, SameLengthGroups):
        dataset.set_epoch(epoch)
        return
    for ds in getattr(dataset, "datasets", [dataset]):  # (a ConcatDataset's parts)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        elif hasattr(ds, "seed"):
            ds.seed = base_seed + epoch * 1_000_003


class SameLengthGroups(Dataset):
    """Groups of training sets (the 3D sets, the 2D sets) drawn equally often, as upstream's
    ``MultipleDatasets(..., make_same_len=True)`` (data/dataset.py; common/base.py
    ``_make_batch_generator``) mixes its 3D and 2D sets: an epoch is ``len(groups) x`` the longest
    group's length; index ``i`` is group ``i // longest``, sample ``(i % longest) % len(group)``,
    except past the group's last whole repetition, where the sample is drawn at random. Upstream
    draws those with Python's ``random`` in each worker; here they are drawn from ``(seed, epoch,
    i)``, so a run and its resume see the same samples.

    Args:
        groups: the groups (each a dataset, e.g. a ``ConcatDataset`` of its sets), none empty.
        seed: the run's seed.
    """

    def __init__(self, groups: Sequence[Dataset], seed: int) -> None:
        self.groups = list(groups)
        self.seed = int(seed)
        self.epoch = 0
        self.longest = max(len(g) for g in self.groups)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for group in self.groups:
            tell_epoch(group, epoch, self.seed)

    def __len__(self) -> int:
        return self.longest * len(self.groups)

    def source(self, index: int) -> tuple[int, int]:
        """(group, index in the group) of sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        g, i = divmod(index, self.longest)
        n = len(self.groups[g])  # type: ignore[arg-type]
        if i >= n * (self.longest // n):  # past the last whole repetition: drawn
            return g, int(np.random.default_rng((self.seed, self.epoch, index)).integers(n))
        return g, i % n

    def __getitem__(self, index: int):
        g, i = self.source(index)
        return self.groups[g][i]


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
    # (a --data-root that is not there, with synthetic sets only: it was taken and recorded, a user trial;
    # with a real set the loop below names the folders it should hold)
    if (run.data_root is not None and all(n == "synthetic" for n in stage.datasets)
            and not Path(run.data_root).expanduser().exists()):
        raise InputError(f"{setting('data_root')} {run.data_root}: no such folder; check the path")
    for name in stage.datasets:
        if name not in accepted:
            if stage.stage == "hand":
                raise InputError(f"the hand stage trains on FreiHAND, InterHand26M and MSCOCO (COCO-WholeBody's hand crops), "
                                 f"not {name}")
            if name in ("FreiHAND", "InterHand26M"):
                raise InputError(f"{name} is a hand set: it trains the hand stage (wbcap train hand)")
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

            layouts = _HAND_LAYOUTS if stage.stage == "hand" else _LAYOUTS
            error = DatasetLayoutError.missing(folder, importlib.import_module(layouts[name]).LAYOUT)
            # (all the sets DATA lacks at once: the hand recipe's InterHand26M and MSCOCO for a lab with FreiHAND only)
            missing = [n for n in stage.datasets if n != "synthetic" and not (root / n).is_dir()]
            others = [n for n in stage.datasets if n not in missing]
            also = [n + "/" for n in missing if n != name]
            if also:
                error = DatasetLayoutError(f"{error}; {root} lacks {', '.join(also)} too")
            if others:  # (e.g. the default recipe's MPII, which not every lab has)
                them = "them" if also else "it"
                error = DatasetLayoutError(f"{error}; or train without {them}: {setting('datasets')} {','.join(others)}")
            raise error


def make_training_set(stage: StageConfig, run, body_layer) -> Dataset:
    """``stage.datasets`` (whole-body sample schema; the hand stage: FreiHAND's, which its InterHand2.6M and
    COCO-WholeBody hand crops share), each made for
    ``stage.model``'s geometry (crop size, heatmap cells): the 3D sets (:data:`THREE_D_SETS`)
    concatenated, the 2D ones concatenated, and the two drawn equally often
    (:class:`SameLengthGroups`) when there are both, as upstream. ``body_layer``: the SMPL-X layer of the
    whole-body sets' targets; for the hand stage the MANO layer (or None) of the COCO-WholeBody hands'
    ``mano_joint_img``."""
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
        elif name == "InterHand26M":
            from wbcap.train.data.interhand import InterHand26M

            parts.append(InterHand26M(root, "train", seed=stage.seed, model=stage.model, mano_layer=body_layer))
        elif name == "MSCOCO" and stage.stage == "hand":
            from wbcap.train.data.coco_hands import COCOHands

            parts.append(COCOHands(root, "train", seed=stage.seed, model=stage.model, mano_layer=body_layer))
        elif name == "MPII":
            from wbcap.train.data.mpii import MPII

            parts.append(MPII(root, "train", body_layer=body_layer, seed=stage.seed, model=stage.model))
        elif name == "AGORA":
            from wbcap.train.data.agora import AGORA

            parts.append(AGORA(root, "train", body_layer=body_layer, seed=stage.seed, model=stage.model))
        else:  # MSCOCO (check_datasets allows nothing else)
            from wbcap.train.data.cocowb import COCOWholeBody

            parts.append(COCOWholeBody(root, "train", body_layer=body_layer, seed=stage.seed, model=stage.model))
    groups = [[p for name, p in zip(stage.datasets, parts) if (name in THREE_D_SETS) == three_d] for three_d in (True, False)]
    groups = [g[0] if len(g) == 1 else ConcatDataset(g) for g in groups if g]
    return groups[0] if len(groups) == 1 else SameLengthGroups(groups, stage.seed)
