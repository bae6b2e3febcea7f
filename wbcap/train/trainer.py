"""The training loop: one function for one process, single-GPU, multi-GPU or multi-node.

Launched directly (one process) or by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the
environment) or by :func:`spawn_local` (tests: several CPU processes with the gloo backend).
Uses torch's own engine: DistributedDataParallel, DistributedSampler, rank-0-only logging and
saving, bf16 autocast on CUDA. A checkpoint is written atomically after every epoch with the
model config, optimizer, epoch and RNG states; ``resume`` continues from the newest one and, on
CPU, gives bit-for-bit the same weights as an uninterrupted run.

Device rules: the process-group backend follows the *resolved* device (NCCL for CUDA, gloo for
``--device cpu`` even on a GPU machine); the model owns its own copy of the SMPL-X layer (the
datasets keep theirs on the CPU, where forked DataLoader workers make targets); DDP wraps only
the network (the SMPL-X layer's constant buffers are never broadcast); each process saves only
its own device's CUDA RNG state. On CUDA: ``cudnn.benchmark`` (fixed input sizes), channels-last
memory, and bf16 autocast of the forward pass when ``stage.amp`` (the SMPL-X layer turns
autocast off and runs in float32; loss terms against the float32 targets promote to float32).
Step losses stay on the device and are read back once per ``log_every`` steps (one sync).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from wbcap.config import RESNET_WIDTH
from wbcap.errors import (
    JSON_ERRORS,
    CheckpointError,
    CheckpointUnreadableError,
    InputError,
    ModelFileError,
    TrainingDivergedError,
    setting,
)
from wbcap.train.rng import restore_rng, rng_state, seed_process
from wbcap.train.stages import StageConfig

log = logging.getLogger(__name__)

CKPT_PATTERN = "snapshot_{epoch}.pth.tar"


@dataclass(frozen=True)
class RunConfig:
    """Where and how a stage runs (not part of the recipe)."""

    out: str
    data_root: str | None = None
    body_models: str | None = None
    device: str = "auto"
    resume: bool = False
    log_every: int = 20  # steps between log lines; step losses are read from the device once per interval
    quiet: bool = False  # `wbcap -q`: no progress bar, and torchrun's processes log warnings only
    keep_last: int | None = None  # keep only this many newest snapshots (None: all, as upstream)
    # The SMPL-X file a whole-body stage trains with, decided once (check_run_inputs, by the entry
    # point) and passed down: a path, or SYNTHETIC_BODY_MODEL; None: not decided yet.
    body_model: str | None = None
    # The MANO file (right hand) the hand stage's MANO loss terms pose, decided once as body_model
    # (check_run_inputs; StageConfig.mano_losses); None: not decided, or not used.
    mano_model: str | None = None
    # How messages say body_models was named when it was not by --body-models ("the run's record":
    # a resumed run's run_settings.json); None: the option.
    body_models_named_by: str | None = None


@dataclass
class TrainHistory:
    """Per-step total losses (rank 0's view) and the checkpoints written."""

    losses: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    net: Any = None  # the trained network (this process's replica)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    """This process's place in the job from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def backend_for(device: torch.device) -> str:
    """Process-group backend for processes training on ``device``: NCCL for CUDA, else gloo.

    Chosen from the resolved training device, not from whether CUDA exists: ``--device cpu``
    runs on a GPU machine need gloo (NCCL cannot reduce CPU tensors).
    """
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(d: DistInfo, device: torch.device) -> None:
    """Join the process group of ``d`` (no-op for one process) with :func:`backend_for` ``(device)``."""
    if d.enabled and not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device), rank=d.rank, world_size=d.world_size)


def _device(run: RunConfig, d: DistInfo) -> torch.device:
    from wbcap.model.device import resolve_device

    dev = resolve_device(run.device)
    if dev.type == "cuda" and d.enabled:
        dev = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(dev)
    return dev


# --------------------------------------------------------------------------- data


class EpochAugmented(Dataset):
    """Give the wrapped dataset(s) a new augmentation draw every epoch.

    Datasets with ``set_epoch(epoch)`` (the real datasets) are told the epoch; seeded ones
    without it (the synthetic set) get ``seed = base + epoch * 1_000_003``. Workers start per
    epoch, so they see the change. A ``Subset`` hides both and stays fixed.
    """

    def __init__(self, dataset: Dataset, base_seed: int) -> None:
        self.dataset = dataset
        self.base_seed = base_seed

    def set_epoch(self, epoch: int) -> None:
        from wbcap.train.datasets import tell_epoch

        tell_epoch(self.dataset, epoch, self.base_seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]


def _to_tensors(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return {k: _to_tensors(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_tensors(v, device) for v in batch)
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True).float() if batch.is_floating_point() else batch.to(device)
    return batch


def _init_worker(worker_id: int) -> None:
    """A data-loading worker's start: NumPy's and Python's generators seeded from torch's (each
    worker's own), and the stop signals ignored. A SIGTERM or SIGHUP to the whole process group
    (``timeout``, ``kill -TERM -PGID``, a batch scheduler's cancel) killed the workers under the
    main process, which then failed ("DataLoader worker is killed by signal") instead of stopping
    as on Ctrl-C, and left the workers' ``pymp-*`` folders (an admin's trial); now the main process
    alone acts on them and shuts its workers down. Ctrl-C's SIGINT too, which reaches the main
    process as well."""
    import signal

    from wbcap.stop_signals import STOP_SIGNALS

    for sig in (signal.SIGINT, *STOP_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# --------------------------------------------------------------------------- model


def model_differences(recorded: dict, requested: dict) -> list[str]:
    """The model settings (``ModelConfig`` dicts) that differ, as ``key recorded (requested: x)``
    (lists and tuples compare alike)."""
    def norm(v):
        return json.loads(json.dumps(list(v) if isinstance(v, tuple) else v))

    keys = sorted(set(recorded) | set(requested))
    return [f"{k} {json.dumps(norm(recorded.get(k)))} (requested: {json.dumps(norm(requested.get(k)))})"
            for k in keys if norm(recorded.get(k)) != norm(requested.get(k))]


def _check_init_fits(ckpt, stage: StageConfig) -> None:
    """Refuse a start checkpoint (read) whose model settings are not the stage's, naming them."""
    if ckpt.config != stage.model:
        diff = model_differences(ckpt.config.to_dict(), stage.model.to_dict())
        # (a checkpoint that records its settings gives them to finetune: only a [model] key differs)
        fix = ("drop those keys from the [model] table of the --config TOML (the checkpoint's own settings are "
               "taken)" if ckpt.config_recorded and stage.stage == "finetune" else
               "set the checkpoint's values under [model] in a --config TOML")
        raise CheckpointError(f"{setting('init_checkpoint')} {ckpt.path}: its model has {'; '.join(diff)}; {fix}, "
                              "or start from another checkpoint")


def check_init_checkpoint(stage: StageConfig) -> None:
    """Read the stage's start checkpoint as training will (weights-only, memory-mapped: no copy of
    the weights) and check that it fits the stage's model: its settings and every tensor's name and
    shape (against the network built on the ``meta`` device: no memory, no initialisation).

    Raises:
        CheckpointError: one line naming the file: not a checkpoint, corrupt or truncated, or not
            this model's.
    """
    from wbcap.model.checkpoint import check_checkpoint_file, check_state_dict, read_checkpoint
    from wbcap.model.hand4whole import Hand4Whole

    check_checkpoint_file(stage.init_checkpoint)  # (the quick look first: a text file is not read whole)
    ckpt = read_checkpoint(stage.init_checkpoint)
    _check_init_fits(ckpt, stage)
    recorded = ckpt.raw.get("stage") if isinstance(ckpt.raw, dict) else None
    if stage.stage == "finetune" and isinstance(recorded, dict) and recorded.get("stage") == "body":
        # (it fits the model, so it trains; a user trial fine-tuned one without a word, its hands
        # then from ImageNet weights alone)
        log.warning("%s %s is a body-stage snapshot: its hand network was never trained (upstream fine-tunes the "
                    "merged model); merge it first, `wbcap train merge --body %s -o merged.pth.tar` (with --hand "
                    "HAND: your hand stage's snapshot; without: the released hand-only model), and start from "
                    "merged.pth.tar", setting("init_checkpoint"), ckpt.path, ckpt.path)
    with torch.device("meta"):
        net = Hand4Whole(stage.model)
    check_state_dict(net, ckpt.state_dict, ckpt.path)


def imagenet_depths(stage: StageConfig) -> list[int]:
    """The ResNet depths whose torchvision ImageNet files ``stage`` reads from its
    ``imagenet_weights`` folder, deepest first: the hand ResNet's for the hand stage, else the
    body, hand and face ResNets' (the warning named ResNet-50 files for a model of ResNet-18s:
    an ML trial)."""
    m = stage.model
    depths = [m.hand_backbone_depth] if stage.stage == "hand" else [m.backbone_depth, m.hand_backbone_depth,
                                                                      m.face_backbone_depth]
    return sorted(set(depths), reverse=True)


def random_start_warning(stage: StageConfig) -> str | None:
    """The warning for a stage on real training sets whose ResNets would not start where upstream's
    do: its hand and face ResNets from ImageNet (common/nets/resnet.py ``init_weights``), its first
    stage's body ResNet from a COCO 2D-pose ResNet-50 (tool/convert_simple_to_pose2pose.py); the
    finetune stage from its ``init_checkpoint``. None when the recipe's start is given, or when
    only the synthetic set is trained on (a try-out)."""
    if stage.init_checkpoint or set(stage.datasets) <= {"synthetic"}:
        return None
    if stage.model.backbone_width != RESNET_WIDTH:  # (no pretrained weights fit: the ImageNet files are refused)
        return (f"the ResNets start from random weights: [model] backbone_width is {stage.model.backbone_width}, and "
                f"ImageNet's and the 2D-pose ResNets' weights are {RESNET_WIDTH} wide (README: Training)")
    body = stage.stage == "body" and not stage.pose_backbone
    if stage.imagenet_weights and not body:
        return None
    pose = (f"{setting('pose_backbone')} FILE, SimpleBaseline's COCO 2D-pose pose_resnet_50_256x192.pth.tar, for the "
            "body's (as upstream's first stage)")
    if stage.imagenet_weights:
        return f"the body ResNet starts from ImageNet, not from a 2D-pose ResNet: pass {pose} (README: Training)"
    files = " and ".join(f"resnet{depth}-*.pth" for depth in imagenet_depths(stage))
    imagenet = f"{setting('imagenet_weights')} FOLDER holding torchvision's {files} for ImageNet"
    return (f"the ResNets start from random weights, which upstream never does: pass {imagenet}"
            + (f", and {pose}" if body else "") + " (README: Training)")


def build_model(stage: StageConfig, body_layer, device: torch.device):
    """The whole-body regressor with the recipe's initialisation (or the init checkpoint), on ``device``.

    The regressor gets its own copy of ``body_layer`` on ``device``; the caller's layer is never
    moved, so datasets holding it keep making targets on the CPU (also in forked DataLoader
    workers).
    """
    from wbcap.model.checkpoint import check_state_dict, read_checkpoint
    from wbcap.model.hand4whole import Hand4Whole
    from wbcap.model.init import init_head_weights, load_imagenet_backbone, load_pose_backbone
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.train.data.common import body_layer_copy

    torch.manual_seed(stage.seed)
    net = Hand4Whole(stage.model)
    for name in ("body_position_net", "body_rotation_net", "box_net", "hand_position_net", "hand_rotation_net", "face_regressor"):
        init_head_weights(getattr(net, name))
    if stage.imagenet_weights:
        folder = Path(stage.imagenet_weights).expanduser()
        for backbone, depth in ((net.backbone, stage.model.backbone_depth), (net.hand_roi_net.backbone, stage.model.hand_backbone_depth),
                                (net.face_roi_net.backbone, stage.model.face_backbone_depth)):
            files = sorted(folder.glob(f"resnet{depth}-*.pth"))
            if not files:
                raise InputError(f"no torchvision resnet{depth}-*.pth in {folder} (imagenet_weights)")
            load_imagenet_backbone(backbone, files[0])
    if stage.pose_backbone:  # (upstream's first stage: tool/convert_simple_to_pose2pose.py)
        load_pose_backbone(net.backbone, stage.pose_backbone)
    if stage.init_checkpoint:
        ckpt = read_checkpoint(stage.init_checkpoint)
        _check_init_fits(ckpt, stage)
        check_state_dict(net, ckpt.state_dict, ckpt.path)
        net.load_state_dict(ckpt.state_dict)
    return WholeBodyRegressor(net.to(device), body_layer_copy(body_layer, device))


class NetworkOnly(torch.nn.Module):
    """What DistributedDataParallel wraps for the whole-body stages: only ``net`` is registered.

    ``forward`` runs the whole regressor (network, then SMPL-X), but DDP sees, verifies and
    broadcasts only the network's parameters and buffers, never the SMPL-X layer's ~69 MB of
    constant buffers (which it would otherwise broadcast before every forward).
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.net = model.net
        object.__setattr__(self, "_model", model)  # not a submodule: hidden from DDP

    def forward(self, img: torch.Tensor):
        return self._model(img)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """DDP over the trainable network of ``model`` (a regressor: :class:`NetworkOnly`; the hand model as is).

    ``find_unused_parameters=False`` (no per-step graph walk): every parameter that requires a
    gradient must be reached by the losses (a masked term still reaches its parameters, with a zero
    gradient); the hand stage without its MANO terms freezes its then unsupervised camera head
    (:data:`~wbcap.train.hand_losses.HAND_UNSUPERVISED_MODULES`) for that reason.
    """
    from wbcap.model.regressor import WholeBodyRegressor

    target = NetworkOnly(model) if isinstance(model, WholeBodyRegressor) else model
    return torch.nn.parallel.DistributedDataParallel(
        target, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
    )


# --------------------------------------------------------------------------- checkpoints


# --------------------------------------------------------------------------- run folder and inputs

STAGE_FILE = "stage.json"
SCALARS_FILE = "scalars.jsonl"
TENSORBOARD_DIR = "tensorboard"
#: The run's settings that are not the stage's (``--data-root``, ``--body-models``, ``--keep-last``),
#: recorded so that ``--resume`` takes them as defaults (:func:`wbcap.train.launch.run_stage`).
RUN_SETTINGS_FILE = "run_settings.json"


#: The temporary names of snapshots being written (:func:`wbcap.atomic.atomic_path`'s), which a
#: run killed then leaves.
SNAPSHOT_TEMPORARIES = ".snapshot_*.tmp-*"


def training_outputs(out: Path) -> list[Path]:
    """What a training run writes in ``out``: ``stage.json``, ``run_settings.json``, the snapshots (and the temporaries
    of one being written when the run was killed), the scalars, :func:`spawn_local`'s final
    weights. The launcher's ``launch_node<i>.json`` are not included: every node of a job
    rewrites its own as it starts (see :func:`prepare_run_folder`)."""
    found = [out / n for n in (STAGE_FILE, RUN_SETTINGS_FILE, SCALARS_FILE, TENSORBOARD_DIR) if (out / n).exists()]
    patterns = ("snapshot_*.pth.tar", SNAPSHOT_TEMPORARIES, "rank*_final.pt")
    return found + sorted(p for pattern in patterns for p in out.glob(pattern))


def _previous_dir(out: Path) -> Path:
    from wbcap.io.run_folder import PREVIOUS_DIR

    return out / PREVIOUS_DIR


def discard_previous_run(out: Path) -> None:
    """Delete the previous run that ``overwrite`` set aside in ``OUT/.wbcap-previous/``
    (:func:`prepare_run_folder`), if any: once the new run has written its first snapshot."""
    from wbcap.io.run_folder import discard_previous

    if _previous_dir(out).is_dir():
        discard_previous(out)
        log.info("removed the previous training run in %s (set aside until this run's first snapshot)", out)


def restore_previous_run(out: Path) -> bool:
    """Undo a run that ended before its first snapshot: delete what it wrote in ``out``
    (:func:`training_outputs`) and move the previous run that ``overwrite`` set aside back
    (True when there was one): :func:`wbcap.io.run_folder.restore_previous` with training's outputs."""
    from wbcap.io.run_folder import restore_previous

    return restore_previous(out, training_outputs)


def settled_run_folder(out: Path) -> Path:
    """Where the run that ``out`` holds once settled (:func:`_settle_previous_run`) has its files
    now: ``OUT/.wbcap-previous/`` when an ``overwrite`` killed before its first snapshot set a
    previous run aside there (settling puts it back), else ``out``. What ``resume`` reads the
    run's settings from before it holds the folder (on another node, before node 0 settles it)."""
    previous = _previous_dir(out)
    return previous if previous.is_dir() and latest_checkpoint(out) is None else out


def _settle_previous_run(out: Path) -> None:
    """A previous run set aside by an ``overwrite`` that was killed (SIGKILL, a power cut) before
    it could drop or restore it: dropped when the new run wrote a snapshot, else put back
    (:func:`settled_run_folder`). Call it holding the folder."""
    if not _previous_dir(out).is_dir():
        return
    if settled_run_folder(out) == out:
        discard_previous_run(out)
    else:
        restore_previous_run(out)
        log.warning("%s: put back the previous training run that an interrupted --overwrite had set aside", out)


def prepare_run_folder(out: Path, *, resume: bool, overwrite: bool) -> bool:
    """Make the run folder ``out`` ready; True when this call created it.

    A folder holding a previous training run is refused unless ``resume`` (it must hold a
    snapshot) or ``overwrite``, which touches only what a training run wrote
    (:func:`training_outputs`) and deletes none of it here: it moves it into
    ``OUT/.wbcap-previous/``, which the new run deletes once it has written its first snapshot
    (:func:`discard_previous_run`) and a run that ends before that moves back
    (:func:`restore_previous_run`). A folder holding files wbcap did not write is refused either
    way, except to resume. ``launch_node<i>.json`` are neither: on a folder shared by several
    nodes, another node may have written its own a moment ago.

    Raises:
        InputError: one line saying what the folder holds and what to pass instead.
    """
    other_out = setting("out", api="out")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; {setting('out')} must be a folder")
    if out.is_dir():
        _settle_previous_run(out)
    if resume:
        check_resumable(out)
        for tmp in out.glob(SNAPSHOT_TEMPORARIES):  # (a snapshot being written when the run was killed)
            tmp.unlink(missing_ok=True)
        return False
    existing = sorted(p for p in out.iterdir() if not p.name.startswith("launch_node")) if out.is_dir() else []
    if existing:
        from wbcap.io.run_folder import replace_previous

        ours = training_outputs(out)
        latest = latest_checkpoint(out)
        replace_previous(out, existing, ours, latest or (ours or existing)[0],
                         what="a previous training run", overwrite=overwrite, aside=_previous_dir(out),
                         resumable=latest is not None)
        log.info("set the previous training run in %s aside (%d files, in %s): deleted once this run writes its "
                 "first snapshot, put back if it ends before", out, len(ours), _previous_dir(out).name)
        return False
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission, read-only disk...
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror or exc}); "
                         f"choose another {other_out} folder") from None
    return created


def check_resumable(out: Path) -> None:
    """Refuse a ``--resume`` of ``out`` that has no snapshot to resume from: no such folder, an
    empty one, or a run stopped before its first snapshot.

    Raises:
        InputError: one line naming the folder and what to pass instead.
    """
    resume_ = setting("resume", api="resume=True")
    if out.is_dir() and latest_checkpoint(out) is None and training_outputs(out):
        raise InputError(f"{out}: the training run there stopped before its first snapshot, so there is nothing "
                         f"to resume; start it again with {setting('overwrite', api='overwrite=True')} in place "
                         f"of {resume_}")
    if not out.is_dir() or latest_checkpoint(out) is None:
        raise InputError(f"{out}: no snapshot_*.pth.tar to resume from; drop {resume_}")


def unreadable_snapshot(out: Path, last: Path, exc: CheckpointError) -> CheckpointError:
    """The one line for a run's newest snapshot ``last`` that ``exc`` says cannot be read, with the
    fix: resume from the one before (deleting it), or start the run again."""
    earlier = [p for p in snapshots(out) if p != last]
    detail = str(exc).removeprefix(f"{last}: ").rsplit("; ", 1)[0]
    fix = (f"delete it to resume from {earlier[-1].name}, the one before" if earlier else
           f"start the run again with {setting('overwrite', api='overwrite=True')} in place of "
           f"{setting('resume', api='resume=True')}")
    return CheckpointError(f"{last}: the newest snapshot of this run cannot be read ({detail}); {fix}")


def check_run_inputs(stage: StageConfig, run: RunConfig, *, datasets: bool = True, body_model: bool = True,
                     device: bool = True, init: bool = True) -> RunConfig:
    """Check, before any work or file is written, what a stage reads: its training sets
    (``datasets``: names and folders, :func:`wbcap.train.datasets.check_datasets`), its start
    checkpoint (finetune needs one), the ImageNet weights it starts its ResNets from, the
    device (``device``) and, for the whole-body stages, the SMPL-X file (``body_model``; for the hand
    stage with ``mano_losses``, the MANO file: :func:`~wbcap.body.mano_layer.find_mano_model`). The start
    checkpoint is read and checked against the model (``init``: :func:`check_init_checkpoint`;
    else only its first bytes); a resumed run (``run.resume``) starts from its snapshot and needs none.

    Returns ``run``, for a whole-body stage whose ``run.body_model`` is None (and ``body_model``)
    with it decided (:func:`body_model_path`): the one decision the run passes down (a warning
    about the synthetic model is given once); likewise ``run.mano_model`` for the hand stage with
    ``mano_losses`` (the file found, read and checked). Writes nothing (the synthetic model is
    written when training starts: :func:`body_model_file`).

    Raises:
        InputError, CheckpointError, ModelFileError: one line naming the file or setting.
    """
    if not stage.mano_losses and stage.stage != "hand":
        raise InputError("mano_losses is a hand-stage setting (the whole-body stages pose SMPL-X): drop it")
    if stage.pose_backbone and stage.stage != "body":
        raise InputError(f"{setting('pose_backbone')} starts the body stage's backbone; the {stage.stage} stage starts "
                         f"from {setting('init_checkpoint') if stage.stage == 'finetune' else 'ImageNet'}: drop it")
    if datasets:
        from wbcap.train.datasets import check_datasets

        check_datasets(stage, run)
    if stage.num_workers > 0:
        from wbcap.temp_folders import check_worker_temp_folder

        check_worker_temp_folder(setting("num_workers"))
    init_ = setting("init_checkpoint")
    if run.resume:  # (the snapshot replaces the start checkpoint's weights)
        stage = replace(stage, init_checkpoint=None)
    if stage.stage == "finetune" and not stage.init_checkpoint and not run.resume:
        raise InputError(f"the finetune stage starts from a whole-body checkpoint: pass {init_} CHECKPOINT (the "
                         "merged one of `wbcap train merge`, or the released snapshot_6.pth.tar)")
    narrow = [setting(k) for k in ("imagenet_weights", "pose_backbone") if getattr(stage, k)]
    if stage.model.backbone_width != RESNET_WIDTH and narrow and not run.resume:
        what = " and ".join(narrow)
        if stage.stage == "finetune" and stage.init_checkpoint:  # (its network's settings are the checkpoint's)
            raise InputError(f"{what} {'is' if len(narrow) == 1 else 'are'} for ResNets {RESNET_WIDTH} channels wide, "
                             f"and the {init_} checkpoint's are {stage.model.backbone_width}: drop {what} (the "
                             f"checkpoint's weights replace them anyway)")
        raise InputError(f"{what} {'is' if len(narrow) == 1 else 'are'} for ResNets {RESNET_WIDTH} channels wide, and "
                         f"[model] backbone_width is {stage.model.backbone_width}: leave backbone_width out "
                         f"({RESNET_WIDTH}), or drop {what}")
    if stage.stage == "hand" and stage.init_checkpoint:  # (build_hand_model has no use for it)
        raise InputError(f"the hand stage does not start from a checkpoint ({init_} is for the whole-body stages); "
                         f"drop {init_}, or continue a hand run with {setting('resume', api='resume=True')}")
    if stage.init_checkpoint and not Path(stage.init_checkpoint).expanduser().is_file():
        what = "is a folder, not a checkpoint file" if Path(stage.init_checkpoint).expanduser().is_dir() else "no such file"
        raise CheckpointError(f"{init_} {stage.init_checkpoint}: {what}")
    if stage.init_checkpoint:  # (before --overwrite sets a previous run aside)
        if init:
            check_init_checkpoint(stage)
        else:
            from wbcap.model.checkpoint import check_checkpoint_file

            check_checkpoint_file(stage.init_checkpoint)
    if stage.pose_backbone and not run.resume:  # (the body stage's start: read whole and checked against the body ResNet)
        from wbcap.model.init import load_pose_backbone
        from wbcap.model.resnet import ResNetBackbone

        with torch.device("meta"):
            body = ResNetBackbone(stage.model.backbone_depth, stage.model.backbone_width)
        load_pose_backbone(body, stage.pose_backbone, check_only=True)
    if stage.imagenet_weights:  # (the files the model builders read)
        folder = Path(stage.imagenet_weights).expanduser()
        for depth in sorted(imagenet_depths(stage)):
            if not any(folder.glob(f"resnet{depth}-*.pth")):
                raise InputError(f"no torchvision resnet{depth}-*.pth in {folder} (imagenet_weights)")
    if device:
        from wbcap.model.device import resolve_device

        resolve_device(run.device)  # (e.g. cuda asked on a machine without it)
    if body_model and stage.stage != "hand" and run.body_model is None:
        run = replace(run, body_model=body_model_path(stage, run))
    if body_model and stage.stage == "hand" and stage.mano_losses and run.mano_model is None:
        from wbcap.body.mano_layer import find_mano_model, load_mano_data

        try:
            path = find_mano_model(run.body_models, named_by=run.body_models_named_by)
        except ModelFileError as exc:
            raise ModelFileError(f"{exc}; or train without the MANO loss terms: {setting('mano_losses', api='mano_losses=False')}") from None
        load_mano_data(path)  # (checked before any work)
        run = replace(run, mano_model=str(path))
    return run


#: :attr:`RunConfig.body_model` naming the synthetic SMPL-X model (:func:`body_model_path`).
SYNTHETIC_BODY_MODEL = "synthetic"


#: How :func:`model_files_identity` records the synthetic SMPL-X model a run without one trains
#: with: an identity no file has, so a resume that finds a real file then (or the reverse) is refused.
SYNTHETIC_IDENTITY = {"path": "the synthetic stand-in (no SMPL-X file was found)", "size": 0, "mtime": 0, "sample": None}


def model_files_identity(run: RunConfig) -> dict:
    """:func:`wbcap.io.run_folder.file_identity` of the SMPL-X and MANO files ``run`` trains
    with, by role (the synthetic SMPL-X model: :data:`SYNTHETIC_IDENTITY`; no MANO file: None)."""
    from wbcap.io.run_folder import file_identity

    body = dict(SYNTHETIC_IDENTITY) if run.body_model == SYNTHETIC_BODY_MODEL else file_identity(run.body_model)
    return {"body_model_file": body, "mano_model_file": file_identity(run.mano_model)}


def run_settings_text(run: RunConfig) -> str:
    """The text of ``out/``:data:`RUN_SETTINGS_FILE`: ``run``'s settings that the stage does not
    hold (``data_root``, ``body_models``, ``keep_last``; paths absolute) and the identity of its
    model files (:func:`model_files_identity`), the defaults of a ``--resume``
    (:mod:`wbcap.train.launch`). :func:`train` writes it with ``stage.json``, once the model, its
    snapshot and the training set are read: a launch refused before then (a ``--resume`` with a
    mistyped ``--data-root``) leaves the run's record as it was."""
    from wbcap.io.run_folder import FILE_IDENTITY, absolute_path

    record = {"data_root": absolute_path(run.data_root), "body_models": absolute_path(run.body_models),
              "keep_last": run.keep_last, FILE_IDENTITY: model_files_identity(run)}
    return json.dumps(record, indent=1) + "\n"


def body_model_path(stage: StageConfig, run: RunConfig) -> str:
    """The neutral SMPL-X file a whole-body stage trains with: ``run.body_models`` or the usual
    search (:func:`~wbcap.body.model_files.find_body_model`). A stage that trains on the
    ``synthetic`` set only, with no ``body_models`` given and none found, uses the synthetic
    SMPL-X model (:data:`SYNTHETIC_BODY_MODEL`; as ``wbcap demo`` does), with a warning: the
    no-data smoke run needs no licensed file. Writes nothing (:func:`body_model_file` does).

    Raises:
        ModelFileError: not found (and the stage reads real data or a folder was given).
    """
    from wbcap.body.model_files import find_body_model

    try:
        return str(find_body_model("neutral", run.body_models, named_by=run.body_models_named_by))
    except ModelFileError:
        if run.body_models is not None or not stage.datasets or set(stage.datasets) != {"synthetic"}:
            raise
    log.warning("no SMPL-X model file found (see `wbcap doctor`); training on the synthetic set with a synthetic "
                "SMPL-X model of the same size (not a human body: for trying the training, not for real weights)")
    return SYNTHETIC_BODY_MODEL


def body_model_file(body_model: str) -> Path:
    """The file of a :attr:`RunConfig.body_model`: :data:`SYNTHETIC_BODY_MODEL` is the synthetic
    model in the user cache, written there on first use (:func:`wbcap.pipeline.synthetic_body_models_dir`)."""
    if body_model != SYNTHETIC_BODY_MODEL:
        return Path(body_model)
    from wbcap.body.model_files import find_body_model
    from wbcap.pipeline import synthetic_body_models_dir

    return find_body_model("neutral", synthetic_body_models_dir())


def snapshot_epoch(path: Path) -> int | None:
    """The epoch of a snapshot's file name (``snapshot_<epoch>.pth.tar``), None for another name."""
    name = path.name
    if not (name.startswith("snapshot_") and name.endswith(".pth.tar")):
        return None
    try:
        return int(name[len("snapshot_"):-len(".pth.tar")])
    except ValueError:
        return None


def snapshots(out: Path) -> list[Path]:
    """The snapshots in run folder ``out`` (``snapshot_<epoch>.pth.tar``, whichever run wrote
    them), oldest epoch first."""
    found = [(snapshot_epoch(p), p) for p in out.glob("snapshot_*.pth.tar")]
    return [p for _, p in sorted((e, p) for e, p in found if e is not None)]


def latest_checkpoint(out: Path) -> Path | None:
    """The newest snapshot in ``out`` (highest epoch), or None."""
    found = snapshots(out)
    return found[-1] if found else None


# --------------------------------------------------------------------------- loop


class StepLossLog:
    """Step losses kept on the device and read back in one transfer per ``every`` steps.

    ``add`` stacks a step's total and terms into one (1 + T,) tensor without synchronising;
    ``flush`` copies all pending rows to the host at once (one device sync) and returns them as
    ``(epoch, step, [total, *terms])``. Reading each of the ~12 scalars every step, as a naive
    loop does, stalls CUDA a dozen times per step.
    """

    def __init__(self, every: int) -> None:
        self.every = max(1, int(every))
        self._rows: list[torch.Tensor] = []
        self._where: list[tuple[int, int]] = []

    def add(self, epoch: int, step: int, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> bool:
        """Queue one step; True when ``every`` steps are pending (time to :meth:`flush`)."""
        self._rows.append(torch.stack([total.detach().float(), *(v.detach().float() for v in terms.values())]))
        self._where.append((epoch, step))
        return len(self._rows) >= self.every

    def flush(self) -> list[tuple[int, int, list[float]]]:
        if not self._rows:
            return []
        values = torch.stack(self._rows).tolist()  # the one device -> host copy
        out = [(e, s, v) for (e, s), v in zip(self._where, values)]
        self._rows, self._where = [], []
        return out


@contextlib.contextmanager
def _cuda_training_settings(device: torch.device):
    """``cudnn.benchmark`` on while training on CUDA (input sizes are fixed), restored after."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _channels_last(device: torch.device) -> bool:
    """Train in channels-last memory on CUDA (faster cuDNN convolutions; same results up to rounding)."""
    return device.type == "cuda"


def _resume_point(out: Path, d: DistInfo) -> Path:
    """The newest snapshot in ``out``, the same one on every rank (``out`` must be shared by all nodes)."""
    import socket

    last = latest_checkpoint(out)
    if d.enabled:
        seen: list[Any] = [None] * d.world_size
        dist.all_gather_object(seen, (None if last is None else last.name, socket.gethostname()))
        if len({name for name, _ in seen}) > 1:
            views = ", ".join(sorted({f"{host}: {name or 'none'}" for name, host in seen}))
            raise InputError(f"{out}: the processes see different newest snapshots ({views}); "
                             f"{setting('out')} must be one folder shared by all nodes")
    if last is None:
        raise InputError(f"{out}: no snapshot_*.pth.tar to resume from; drop {setting('resume', api='resume=True')}")
    return last


# Long on purpose: the training loop (resume, epochs, steps, logging, snapshots) read top to bottom,
# as in upstream Hand4Whole's main/train.py; its parts (losses, stages, data) live in their own modules.
def train(
    stage: StageConfig,
    run: RunConfig,
    dataset: Dataset | None = None,
    body_layer=None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainHistory:
    """Train one stage in this process (see the module docstring). Returns rank 0's history.

    ``on_step(epoch, step, total_loss)`` runs on rank 0 for every step, in order, but in bursts:
    losses are read from the device once per ``run.log_every`` steps (and at each epoch's end).
    """
    from wbcap.model.checkpoint import load_checkpoint_file
    from wbcap.train.datasets import make_training_set
    from wbcap.train.hand_losses import hand_losses
    from wbcap.train.losses import hand4whole_losses

    # (the launcher read the start checkpoint whole; build_model reads it again and checks it as it loads)
    run = check_run_inputs(stage, run, datasets=dataset is None, body_model=body_layer is None, init=False)
    hand = stage.stage == "hand"
    d = dist_info_from_env()
    device = _device(run, d)
    init_distributed(d, device)
    out = Path(run.out).expanduser()
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if d.is_main and not run.resume:
        said = random_start_warning(stage)
        if said:
            log.warning(said)
    if d.is_main:
        from wbcap.train.data.common import warn_if_more_workers_than_cpus

        warn_if_more_workers_than_cpus(stage.num_workers, setting("num_workers"))
    mano = None
    if hand:
        model = build_hand_model(replace(stage, imagenet_weights=None) if run.resume else stage, device)  # (as above)
        net = model
        if stage.mano_losses:
            from wbcap.body.mano_layer import MANOLayer

            mano = (body_layer if body_layer is not None else MANOLayer.from_file(run.mano_model)).to(device)
    else:
        if body_layer is None:
            from wbcap.body.smplx_layer import SMPLXLayer

            body_layer = SMPLXLayer.from_file(body_model_file(run.body_model))
        # (a resumed run starts from its snapshot: no start checkpoint, ImageNet or 2D-pose ResNet is read)
        model = build_model(replace(stage, init_checkpoint=None, pose_backbone=None, imagenet_weights=None)
                            if run.resume else stage, body_layer, device)
        net = model.net
    if _channels_last(device):
        net.to(memory_format=torch.channels_last)
    # every parameter stays in the optimizer (frozen ones get no gradient and are skipped), so
    # optimizer states of older snapshots still load
    params = list(net.parameters()) if hand else [p for m in net.trainable_modules() for p in m.parameters()]
    optimizer = adam(params, stage.lr, device)

    start_epoch = 0
    logged = None  # (a resumed run: the steps its snapshot says were logged before it)
    if run.resume:
        last = _resume_point(out, d)
        try:
            _, raw = load_checkpoint_file(last)
        except CheckpointUnreadableError:  # (no permission, an I/O error: the file may be whole)
            raise
        except CheckpointError as exc:  # (the run's own file: not one to download again)
            raise unreadable_snapshot(out, last, exc) from None
        try:
            net.load_state_dict(raw["network"], strict=True)
        except RuntimeError as exc:  # (the launcher compares the settings first; a snapshot from elsewhere)
            raise CheckpointError(f"{last}: its tensors do not fit the model of these settings "
                                  f"({str(exc).splitlines()[0][:120]}); resume with the run's model settings") from None
        optimizer.load_state_dict(raw["optimizer"])
        start_epoch = int(raw["epoch"]) + 1
        logged = raw.get("step") if isinstance(raw.get("step"), int) and not isinstance(raw.get("step"), bool) else None
        restore_rng(raw["rng"], d, device, stage.seed, start_epoch)
        if d.is_main:
            saved = len(raw["rng"]) if isinstance(raw["rng"], list) else 1
            log.info("resuming from %s (epoch %d done; written by %d process(es), resumed by %d)",
                     last, raw["epoch"], saved, d.world_size)
        if d.is_main and start_epoch >= stage.epochs:
            log.warning("%s: the run is already complete (%d of %d epochs); nothing to train (raise %s to train on)",
                        out, start_epoch, stage.epochs, setting("epochs"))
    else:
        seed_process(stage.seed + 1000 * d.rank, stage.seed + d.rank)

    ddp = wrap_ddp(model, device) if d.enabled else model
    if dataset is None:
        # (the hand stage's sets take the MANO layer, for the fits' mano_joint_img: a CPU copy, as the body layer's)
        dataset = make_training_set(stage, run, mano if hand else body_layer)
    if d.is_main:  # (once the model, its snapshot and the training set are read: a launch refused before leaves them)
        from wbcap.atomic import atomic_path

        # (a resume reads them; both or neither: a full disk between two writes left a resume's
        # stage.json beside the run's old settings, a review)
        with atomic_path(out / STAGE_FILE) as stage_tmp, atomic_path(out / RUN_SETTINGS_FILE) as settings_tmp:
            stage_tmp.write_text(json.dumps(stage.to_dict(), indent=1), encoding="utf-8")
            settings_tmp.write_text(run_settings_text(run), encoding="utf-8")
    data = EpochAugmented(dataset, stage.seed)
    sampler = DistributedSampler(data, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=stage.seed, drop_last=True)
    # Scalars are logged by global step. Steps an epoch: the loop's own count, before any loader is
    # built. A resumed run numbers on from the steps its snapshot records (they were counted with
    # the stopped run's steps an epoch, which --batch-size, --max-steps or the process count may
    # change; a snapshot of an older wbcap records none: this run's count stands in), and what
    # the stopped run logged from there on (its unfinished epoch, trained again) is dropped.
    per_epoch = len(sampler) // stage.batch_size
    per_epoch = per_epoch if stage.max_steps_per_epoch is None else min(per_epoch, stage.max_steps_per_epoch)
    first_step = (logged if logged is not None else start_epoch * per_epoch) if run.resume else 0
    writer = _scalar_writer(out, first_step if run.resume else None) if d.is_main else None
    history = TrainHistory()
    use_amp = stage.amp and device.type == "cuda"
    losses_log = StepLossLog(run.log_every)
    memory_format = torch.channels_last if _channels_last(device) else torch.contiguous_format
    # AGORA alone: the projection loss trains the camera only (upstream get_coord, main/model.py)
    camera_only_projection = set(stage.datasets) == {"AGORA"}

    def report(rows: list[tuple[int, int, list[float]]], names: list[str], steps: int) -> None:
        for epoch_, step_, (total, *terms) in rows:
            history.losses.append(total)
            global_step = first_step + (epoch_ - start_epoch) * steps + step_
            if writer is not None:
                writer(global_step, {"loss/total": total, "lr": stage.lr_at(epoch_), **{f"loss/{k}": v for k, v in zip(names, terms)}})
            if not math.isfinite(total):
                bad = [k for k, v in zip(names, terms) if not math.isfinite(v)]
                named = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                raise _diverged(out, stage, epoch_, f"the training loss became {total} at epoch {epoch_} step {step_} "
                                f"(global step {global_step})" + (f" ({named} among the terms)" if bad else ""))
            if on_step is not None:
                on_step(epoch_, step_, total)
            if step_ % losses_log.every == 0:
                log.info("epoch %d step %d/%d loss %.4f", epoch_, step_, steps, total)

    from wbcap.train.data.common import data_loader, loader_batches

    with _cuda_training_settings(device):
        for epoch in range(start_epoch, stage.epochs):
            for g in optimizer.param_groups:
                g["lr"] = stage.lr_at(epoch)
            sampler.set_epoch(epoch)
            data.set_epoch(epoch)
            loader = data_loader(
                data, batch_size=stage.batch_size, sampler=sampler, num_workers=stage.num_workers, drop_last=True,
                worker_init_fn=_init_worker, generator=torch.Generator().manual_seed(stage.seed + epoch),
                pin_memory=device.type == "cuda", persistent_workers=False,
            )
            model.train()
            steps = len(loader) if stage.max_steps_per_epoch is None else min(len(loader), stage.max_steps_per_epoch)
            names: list[str] = []
            # (a damaged file read in a DataLoader worker: its own one-line message, as without
            # workers; the workers end with the epoch's loop, also when it stops at --max-steps)
            with loader_batches(loader) as batches:
                for step, (inputs, targets, meta) in enumerate(batches):
                    if step >= steps:
                        break
                    inputs, targets, meta = (_to_tensors(x, device) for x in (inputs, targets, meta))
                    img = inputs["img"].contiguous(memory_format=memory_format)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        out_ = ddp(img)
                    losses = (hand_losses(out_, targets, meta, mano, stage.model) if hand
                              else hand4whole_losses(out_, targets, meta, stage.model, camera_only_projection))
                    loss = sum(losses.values())
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    if d.is_main:
                        names = list(losses)
                        if losses_log.add(epoch, step, loss, losses):
                            report(losses_log.flush(), names, steps)
            if d.is_main:
                report(losses_log.flush(), names, steps)
            if d.enabled:
                # BatchNorm running statistics are per-replica; make every rank hold rank 0's (as DDP
                # does before each forward), so all replicas end the epoch identical.
                for buf in net.buffers():
                    dist.broadcast(buf, src=0)
            rng = rng_state(device)
            if d.enabled:
                gathered: list[Any] = [None] * d.world_size
                dist.all_gather_object(gathered, rng)
                rng = gathered
            if d.is_main:
                # (a loss rank 0 did not read went so, another process's or the gradients': every
                # replica's weights took the update; one check of them before the snapshot, a review)
                if not _weights_finite(net):
                    raise _diverged(out, stage, epoch, f"the network's weights became NaN or infinite during epoch "
                                    f"{epoch} (a loss or gradient this process did not read as such)")
                path = _save(out / CKPT_PATTERN.format(epoch=epoch), net, stage, epoch, optimizer, rng,
                             step=first_step + (epoch + 1 - start_epoch) * per_epoch)
                history.checkpoints.append(path)
                discard_previous_run(out)  # (what --overwrite set aside: this run has its first snapshot)
                if run.keep_last is not None:  # (the folder's: a resumed run's earlier snapshots count)
                    for old in snapshots(out)[: -run.keep_last]:
                        old.unlink(missing_ok=True)
            if d.enabled:
                dist.barrier()
    if writer is not None:
        writer(None, None)
    history.net = net
    return history


def _weights_finite(net: torch.nn.Module) -> bool:
    """Whether every parameter of ``net`` is finite: one device -> host read (before a snapshot)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in net.parameters()]).all())


def _diverged(out: Path, stage: StageConfig, epoch: int, what: str) -> TrainingDivergedError:
    """The error that stops a run at ``what`` went non-finite in ``epoch`` (its loss, read every
    ``log_every`` steps and at each epoch's end; its weights, checked before each snapshot):
    a run whose loss went NaN at its second step had ended "trained", its one snapshot all NaN,
    refused by every command that loads it, and its log showing only the healthy first loss (a
    researcher's trial). (As detectron2's trainer stops at a non-finite loss:
    ``FloatingPointError`` in its ``SimpleTrainer``.)"""
    kept = snapshots(out)
    where = (f"; the snapshots of the epochs before are kept (the last: {kept[-1].name})" if kept
             else "; no snapshot was written")
    # (a resume takes the settings of the run's last launch, stage.json: this one's rate again unless given)
    again = f"; a {setting('resume', api='resume')} keeps this rate unless given one" if kept else ""
    return TrainingDivergedError(
        f"{out}: {what}: training stopped before this epoch's snapshot{where}; lower the learning rate "
        f"({setting('lr')}, {stage.lr_at(epoch):g} at that epoch{again}) or check the training data")


def _save(path: Path, net, stage: StageConfig, epoch: int, optimizer, rng, step: int) -> Path:
    """Whole-body: a wbcap checkpoint (config inside). Hand: ``wbcap-hand-checkpoint/1`` with the
    public hand model's tensor names (what ``wbcap train merge`` reads). Both record ``step``,
    the global steps logged up to the end of ``epoch`` (where a resumed run's numbering goes on)."""
    from wbcap.model.checkpoint import save_checkpoint, save_torch_file

    extra = {"rng": rng, "stage": stage.to_dict(), "step": step}
    if stage.stage != "hand":
        return save_checkpoint(path, net, epoch=epoch, optimizer=optimizer.state_dict(), extra=extra)
    payload = {
        "format": "wbcap-hand-checkpoint/1",
        "config": {"depth": stage.model.hand_backbone_depth, "width": stage.model.backbone_width},
        "network": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        **extra,
    }
    return save_torch_file(payload, path)


def build_hand_model(stage: StageConfig, device: torch.device):
    """The hand-only model with the recipe's initialisation, on ``device``; without the MANO loss
    terms (``stage.mano_losses`` off) the modules no hand loss reaches then
    (:data:`~wbcap.train.hand_losses.HAND_UNSUPERVISED_MODULES`) are frozen."""
    from wbcap.model.hand_model import HandModel
    from wbcap.model.init import init_head_weights, load_imagenet_backbone
    from wbcap.train.hand_losses import HAND_UNSUPERVISED_MODULES

    torch.manual_seed(stage.seed)
    model = HandModel(stage.model.hand_backbone_depth, tuple(stage.model.output_hand_hm_shape), stage.model.backbone_width)
    init_head_weights(model.position_net)
    init_head_weights(model.rotation_net)
    if stage.imagenet_weights:
        files = sorted(Path(stage.imagenet_weights).expanduser().glob(f"resnet{stage.model.hand_backbone_depth}-*.pth"))
        if not files:
            raise InputError(f"no torchvision resnet{stage.model.hand_backbone_depth}-*.pth in {stage.imagenet_weights}")
        load_imagenet_backbone(model.backbone, files[0])
    for name in () if stage.mano_losses else HAND_UNSUPERVISED_MODULES:
        model.get_submodule(name).requires_grad_(False)
    return model.to(device)


def _scalar_writer(out: Path, resumed_at: int | None = None) -> Callable[[int | None, dict | None], None]:
    """TensorBoard scalars when tensorboard is installed, else ``scalars.jsonl`` (one line a step).

    ``resumed_at``: the first step a resumed run logs; what an interrupted run had logged from
    there on (the part of its last epoch it did not finish, which is trained again) is dropped:
    TensorBoard's ``purge_step``, or the lines of ``scalars.jsonl`` from that step on (rewritten
    atomically), so no step is logged twice."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out / TENSORBOARD_DIR), purge_step=resumed_at)

        def write(step, scalars):
            if step is None:
                tb.close()
                return
            for k, v in scalars.items():
                tb.add_scalar(k, v, step)

        return write
    except Exception:
        log.info("tensorboard not installed; scalars go to %s", out / SCALARS_FILE)
        if resumed_at is not None:
            _drop_scalars_from(out / SCALARS_FILE, resumed_at)
        from wbcap.atomic import open_own_file

        f = open_own_file(out / SCALARS_FILE)  # (closed by write(None); a link there refused, not appended through)

        def write(step, scalars):
            if step is None:
                f.close()
                return
            # (NaN and infinity as null: JSON has no such numbers, and strict readers, jq, refused the line)
            f.write(json.dumps({"step": step, **{k: v if math.isfinite(v) else None for k, v in scalars.items()}}) + "\n")
            f.flush()

        return write


def _drop_scalars_from(path: Path, first: int) -> None:
    """Keep the lines of ``scalars.jsonl`` before step ``first`` (a torn last line and lines
    that are not a record with a whole-number ``step`` go too)."""
    if not (path.is_file() or path.is_symlink()):
        return
    from wbcap.atomic import atomic_write_text, open_own_file

    kept = []
    with open_own_file(path, "rb", encoding=None) as f:  # (a link there refused, not read into the run's file)
        for raw in f:
            line = raw.decode("utf-8", errors="replace")
            try:
                step = json.loads(line)["step"]
            except (*JSON_ERRORS, TypeError, KeyError):
                continue
            if isinstance(step, int) and step < first and line.endswith("\n"):
                kept.append(line)
    atomic_write_text(path, "".join(kept))


# --------------------------------------------------------------------------- local multi-process


def _spawned(rank: int, world: int, port: int, stage_d: dict, run_d: dict, body_path: str | None, dataset_factory, result_dir: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from wbcap.body.mano_layer import MANOLayer
    from wbcap.body.smplx_layer import SMPLXLayer

    torch.set_num_threads(1)
    stage = StageConfig.from_dict(stage_d)
    if stage.stage == "hand":  # (the MANO file, or None without the MANO loss terms)
        body = MANOLayer.from_file(body_path) if stage.mano_losses else None
    else:
        body = SMPLXLayer.from_file(body_path)
    dataset = dataset_factory(body) if dataset_factory else None
    try:
        history = train(stage, RunConfig(**run_d), dataset=dataset, body_layer=body)
        # every rank leaves its final weights, so callers can check the replicas agree
        torch.save(history.net.state_dict(), Path(result_dir) / f"rank{rank}_final.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def adam(params: Iterable[torch.nn.Parameter], lr: float, device: torch.device) -> torch.optim.Adam:
    """The training optimizer: Adam (Moon et al. 2022 train with Adam, no weight decay) at ``lr``,
    in torch's fused kernel on CPU and CUDA (one pass over every parameter: the same update as the
    per-tensor loop, 3x faster per step on CPU, 0.07 vs 0.24 s for the all-ResNet-18 model's 43 M
    parameters, one thread, Zen 1 EPYC). Resuming a snapshot saved by an older wbcap keeps that
    optimizer's form (``load_state_dict`` restores its ``fused`` setting)."""
    return torch.optim.Adam(params, lr=lr, fused=True if device.type in ("cpu", "cuda") else None)


def spawn_local(stage: StageConfig, run: RunConfig, world_size: int, body_path: str | None, dataset_factory=None, port: int = 29511) -> None:
    """Run ``world_size`` CPU processes with the gloo backend on this machine (tests, debugging).

    Each rank writes ``<run.out>/rank<r>_final.pt`` with its final network weights. ``body_path``:
    the SMPL-X file, for the hand stage the MANO file (or None without ``mano_losses``).
    ``dataset_factory(body_layer) -> Dataset`` must be picklable (a module-level function).
    """
    import torch.multiprocessing as mp

    mp.spawn(
        _spawned, args=(world_size, port, asdict(stage), asdict(run), body_path, dataset_factory, run.out),
        nprocs=world_size, join=True,
    )
