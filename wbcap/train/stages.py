"""The four stages of the Hand4Whole recipe as typed configs.

Built-in values are the paper's (upstream ``main/config.py`` and the Pose2Pose hand branch);
``train/configs/<stage>.toml`` in the repository holds the same values for users to copy and
edit (``wbcap train body --config my.toml``); a test keeps the two identical. Flags
(``--lr --epochs --batch-size ...``) override either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from wbcap.config import ModelConfig
from wbcap.errors import InputError


@dataclass(frozen=True)
class StageConfig:
    """One training stage. Batch size is per process (per GPU); learning rate decays by
    ``lr_decay_factor`` at each epoch in ``lr_decay_epochs`` (step schedule, as upstream)."""

    stage: str = "body"
    datasets: tuple[str, ...] = ("Human36M", "MSCOCO")
    lr: float = 1e-4
    lr_decay_epochs: tuple[int, ...] = (4, 6)
    lr_decay_factor: float = 10.0
    epochs: int = 7
    batch_size: int = 24
    num_workers: int = 4
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    init_checkpoint: str | None = None  # finetune: the merged checkpoint
    imagenet_weights: str | None = None  # folder with torchvision resnet18/50 ImageNet files
    max_steps_per_epoch: int | None = None  # quick runs, tests and benchmarks
    synthetic_length: int = 2048
    model: ModelConfig = field(default_factory=ModelConfig)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based): lr / factor^(number of decay epochs <= epoch)."""
        n = sum(1 for e in self.lr_decay_epochs if epoch >= e)
        return self.lr / (self.lr_decay_factor**n)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageConfig:
        data = dict(data)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown training settings: {', '.join(sorted(unknown))}")
        if "model" in data:
            data["model"] = ModelConfig.from_dict(dict(data["model"]))
        for k in ("datasets", "lr_decay_epochs"):
            if k in data:
                data[k] = tuple(data[k])
        return cls(**data)


STAGES: dict[str, StageConfig] = {
    # whole body on Human3.6M + COCO-WholeBody (the paper also lists MPII): Adam 1e-4, x0.1 at 4 and 6, 7 epochs, 24/GPU
    "body": StageConfig(stage="body"),
    # hand-only model on FreiHAND: batch 48, decays at 10 and 12, 13 epochs
    "hand": StageConfig(stage="hand", datasets=("FreiHAND",), batch_size=48, lr_decay_epochs=(10, 12), epochs=13),
    # whole body again from the merged checkpoint, lr 1e-5
    "finetune": StageConfig(stage="finetune", lr=1e-5),
}


#: The training sets each stage accepts (``datasets``); ``synthetic`` needs no data. The hand
#: stage trains the hand-only model on hand crops; the whole-body sets train the others.
WHOLE_BODY_SETS = ("Human36M", "MSCOCO", "synthetic")
STAGE_DATASETS: dict[str, tuple[str, ...]] = {"body": WHOLE_BODY_SETS, "hand": ("FreiHAND",), "finetune": WHOLE_BODY_SETS}


def load_stage(stage: str, config_file: str | Path | None = None, **overrides: Any) -> StageConfig:
    """Built-in stage, then a TOML file's values, then non-None ``overrides`` (flags)."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    cfg = STAGES[stage]
    if config_file is not None:
        path = Path(config_file).expanduser()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"training config not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path}: not valid TOML ({exc})") from None
        merged = cfg.to_dict()
        model = {**merged.pop("model"), **data.pop("model", {})}
        merged.update(data)
        merged["model"] = model
        cfg = StageConfig.from_dict(merged)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "model" in changes:
        raise InputError("override model settings in a TOML file")
    return dataclasses.replace(cfg, **changes)
