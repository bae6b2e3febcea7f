"""The training loop: one function for one process, single-GPU, multi-GPU or multi-node.

Launched directly (one process) or by ``torchrun`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the
environment) or by :func:`spawn_local` (tests: several CPU processes with the gloo backend).
Uses torch's own engine: DistributedDataParallel, DistributedSampler, rank-0-only logging and
saving, bf16 autocast on CUDA. A checkpoint is written atomically after every epoch with the
model config, optimizer, epoch and RNG states; ``resume`` continues from the newest one and, on
CPU, gives bit-for-bit the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from wbcap.errors import CheckpointError, InputError
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
    log_every: int = 20
    quiet: bool = False
    keep_last: int | None = None  # keep only this many newest snapshots (None: all, as upstream)


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


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local)


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
        parts = getattr(self.dataset, "datasets", [self.dataset])  # ConcatDataset
        for ds in parts:
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
            elif hasattr(ds, "seed"):
                ds.seed = self.base_seed + epoch * 1_000_003

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


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# --------------------------------------------------------------------------- model


def build_model(stage: StageConfig, body_layer, device: torch.device):
    """The whole-body regressor with the recipe's initialisation (or the init checkpoint)."""
    from wbcap.model.checkpoint import check_state_dict, read_checkpoint
    from wbcap.model.hand4whole import Hand4Whole
    from wbcap.model.init import init_head_weights, load_imagenet_backbone
    from wbcap.model.regressor import WholeBodyRegressor

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
    if stage.init_checkpoint:
        ckpt = read_checkpoint(stage.init_checkpoint)
        if ckpt.config != stage.model:
            raise CheckpointError(f"{ckpt.path}: its architecture differs from the stage's model settings")
        check_state_dict(net, ckpt.state_dict, ckpt.path)
        net.load_state_dict(ckpt.state_dict)
    return WholeBodyRegressor(net, body_layer).to(device)


# --------------------------------------------------------------------------- checkpoints


def latest_checkpoint(out: Path) -> Path | None:
    found = []
    for p in out.glob("snapshot_*.pth.tar"):
        try:
            found.append((int(p.name[len("snapshot_"):-len(".pth.tar")]), p))
        except ValueError:
            continue
    return max(found)[1] if found else None


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor(np.frombuffer(json.dumps(_np_state()).encode(), dtype=np.uint8).copy()),
        "python": torch.tensor(np.frombuffer(json.dumps(random.getstate()).encode(), dtype=np.uint8).copy()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _np_state() -> list:
    s = np.random.get_state()
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    s = json.loads(bytes(state["numpy"].numpy()).decode())
    np.random.set_state((s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4]))
    p = json.loads(bytes(state["python"].numpy()).decode())
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- loop


def train(
    stage: StageConfig,
    run: RunConfig,
    dataset: Dataset | None = None,
    body_layer=None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainHistory:
    """Train one stage in this process (see the module docstring). Returns rank 0's history."""
    from wbcap.model.checkpoint import _torch_load
    from wbcap.train.datasets import make_training_set
    from wbcap.train.hand_losses import hand_losses
    from wbcap.train.losses import hand4whole_losses

    hand = stage.stage == "hand"
    d = init_distributed()
    device = _device(run, d)
    out = Path(run.out).expanduser()
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "stage.json").write_text(json.dumps(stage.to_dict(), indent=1))
    if hand:
        model = build_hand_model(stage, device)
        net = model
        params = list(model.parameters())
    else:
        if body_layer is None:
            from wbcap.body.model_files import find_body_model
            from wbcap.body.smplx_layer import SMPLXLayer

            body_layer = SMPLXLayer.from_file(find_body_model("neutral", run.body_models))
        model = build_model(stage, body_layer, device)
        net = model.net
        params = [p for m in net.trainable_modules() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=stage.lr)

    start_epoch = 0
    if run.resume:
        last = latest_checkpoint(out)
        if last is None:
            raise InputError(f"{out}: no snapshot_*.pth.tar to resume from; drop --resume")
        raw = _torch_load(last)
        net.load_state_dict(raw["network"], strict=True)
        optimizer.load_state_dict(raw["optimizer"])
        _set_rng_state(raw["rng"][d.rank] if isinstance(raw.get("rng"), list) else raw["rng"])
        start_epoch = int(raw["epoch"]) + 1
        if d.is_main:
            log.info("resuming from %s (epoch %d done)", last, raw["epoch"])
    else:
        torch.manual_seed(stage.seed + 1000 * d.rank)
        np.random.seed(stage.seed + d.rank)
        random.seed(stage.seed + d.rank)

    ddp = model
    if d.enabled:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=False
        )
    if dataset is None:
        dataset = make_training_set(stage, run, body_layer)
    data = EpochAugmented(dataset, stage.seed)
    sampler = DistributedSampler(data, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=stage.seed, drop_last=True)
    writer = _scalar_writer(out) if d.is_main else None
    history = TrainHistory()
    use_amp = stage.amp and device.type == "cuda"

    for epoch in range(start_epoch, stage.epochs):
        for g in optimizer.param_groups:
            g["lr"] = stage.lr_at(epoch)
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        loader = DataLoader(
            data, batch_size=stage.batch_size, sampler=sampler, num_workers=stage.num_workers, drop_last=True,
            worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(stage.seed + epoch),
            pin_memory=device.type == "cuda", persistent_workers=False,
        )
        model.train()
        steps = len(loader) if stage.max_steps_per_epoch is None else min(len(loader), stage.max_steps_per_epoch)
        for step, (inputs, targets, meta) in enumerate(loader):
            if step >= steps:
                break
            inputs, targets, meta = (_to_tensors(x, device) for x in (inputs, targets, meta))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out_ = ddp(inputs["img"])
            losses = hand_losses(out_, targets, meta) if hand else hand4whole_losses(out_, targets, meta, stage.model)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if d.is_main:
                history.losses.append(value)
                global_step = epoch * steps + step
                if writer is not None:
                    writer(global_step, {"loss/total": value, "lr": optimizer.param_groups[0]["lr"],
                                         **{f"loss/{k}": float(v.detach()) for k, v in losses.items()}})
                if on_step is not None:
                    on_step(epoch, step, value)
                if step % max(1, run.log_every) == 0:
                    log.info("epoch %d step %d/%d loss %.4f", epoch, step, steps, value)
        if d.enabled:
            # BatchNorm running statistics are per-replica; make every rank hold rank 0's (as DDP
            # does before each forward), so all replicas end the epoch identical.
            for buf in model.buffers():
                dist.broadcast(buf, src=0)
        rng = _rng_state()
        if d.enabled:
            gathered: list[Any] = [None] * d.world_size
            dist.all_gather_object(gathered, rng)
            rng = gathered
        if d.is_main:
            path = _save(out / CKPT_PATTERN.format(epoch=epoch), net, stage, epoch, optimizer, rng)
            history.checkpoints.append(path)
            if run.keep_last is not None:
                for old in history.checkpoints[: -run.keep_last]:
                    old.unlink(missing_ok=True)
        if d.enabled:
            dist.barrier()
    if writer is not None:
        writer(None, None)
    history.net = net
    return history


def _save(path: Path, net, stage: StageConfig, epoch: int, optimizer, rng) -> Path:
    """Whole-body: a wbcap checkpoint (config inside). Hand: ``wbcap-hand-checkpoint/1`` with the
    public hand model's tensor names (what ``wbcap train merge`` reads)."""
    from wbcap.export.atomic import atomic_path
    from wbcap.model.checkpoint import save_checkpoint

    extra = {"rng": rng, "stage": stage.to_dict()}
    if stage.stage != "hand":
        return save_checkpoint(path, net, epoch=epoch, optimizer=optimizer.state_dict(), extra=extra)
    payload = {
        "format": "wbcap-hand-checkpoint/1",
        "config": {"depth": stage.model.hand_backbone_depth},
        "network": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "epoch": epoch,
        "optimizer": optimizer.state_dict(),
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def build_hand_model(stage: StageConfig, device: torch.device):
    """The hand-only model with the recipe's initialisation."""
    from wbcap.model.hand_model import HandModel
    from wbcap.model.init import init_head_weights, load_imagenet_backbone

    torch.manual_seed(stage.seed)
    model = HandModel(stage.model.hand_backbone_depth)
    init_head_weights(model.position_net)
    init_head_weights(model.rotation_net)
    if stage.imagenet_weights:
        files = sorted(Path(stage.imagenet_weights).expanduser().glob(f"resnet{stage.model.hand_backbone_depth}-*.pth"))
        if not files:
            raise InputError(f"no torchvision resnet{stage.model.hand_backbone_depth}-*.pth in {stage.imagenet_weights}")
        load_imagenet_backbone(model.backbone, files[0])
    return model.to(device)


def _scalar_writer(out: Path) -> Callable[[int | None, dict | None], None]:
    """TensorBoard scalars when tensorboard is installed, else ``scalars.jsonl`` (one line a step)."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out / "tensorboard"))

        def write(step, scalars):
            if step is None:
                tb.close()
                return
            for k, v in scalars.items():
                tb.add_scalar(k, v, step)

        return write
    except Exception:  # noqa: BLE001 - tensorboard is optional
        log.info("tensorboard not installed; scalars go to %s", out / "scalars.jsonl")
        f = open(out / "scalars.jsonl", "a", encoding="utf-8")

        def write(step, scalars):
            if step is None:
                f.close()
                return
            f.write(json.dumps({"step": step, **scalars}) + "\n")
            f.flush()

        return write


# --------------------------------------------------------------------------- local multi-process


def _spawned(rank: int, world: int, port: int, stage_d: dict, run_d: dict, body_path: str, dataset_factory, result_dir: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from wbcap.body.smplx_layer import SMPLXLayer

    torch.set_num_threads(1)
    body = SMPLXLayer.from_file(body_path)
    stage = StageConfig.from_dict(stage_d)
    dataset = dataset_factory(body) if dataset_factory else None
    try:
        history = train(stage, RunConfig(**run_d), dataset=dataset, body_layer=body)
        # every rank leaves its final weights, so callers can check the replicas agree
        torch.save(history.net.state_dict(), Path(result_dir) / f"rank{rank}_final.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn_local(stage: StageConfig, run: RunConfig, world_size: int, body_path: str, dataset_factory=None, port: int = 29511) -> None:
    """Run ``world_size`` CPU processes with the gloo backend on this machine (tests, debugging).

    Each rank writes ``<run.out>/rank<r>_final.pt`` with its final network weights.
    ``dataset_factory(body_layer) -> Dataset`` must be picklable (a module-level function).
    """
    import torch.multiprocessing as mp

    mp.spawn(
        _spawned, args=(world_size, port, asdict(stage), asdict(run), body_path, dataset_factory, run.out),
        nprocs=world_size, join=True,
    )
