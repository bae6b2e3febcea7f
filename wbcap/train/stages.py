"""The four stages of the Hand4Whole recipe as typed configs.

Built-in values are the paper's (upstream ``main/config.py`` and the Pose2Pose hand branch);
``wbcap/train/configs/<stage>.toml``, installed with the package, holds the same values for users
to copy and edit (``wbcap train body --config my.toml``); a test keeps the two identical.
:data:`RECIPES` are further recipes of a stage with their own files (``configs/agora.toml``:
upstream's AGORA fine-tuning, ``wbcap train finetune --config agora``: a recipe wbcap holds is
named without its folder, :func:`recipe_path`). Flags (``--lr --epochs --batch-size ...``)
override either.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbcap.config import BACKBONE_WIDTHS, RESNET_DEPTHS, ModelConfig, backbone_width_ok
from wbcap.errors import InputError, setting
from wbcap.limits import is_whole
from wbcap.tomllib_compat import tomllib


@dataclass(frozen=True)
class StageConfig:
    """One training stage. Batch size is per process (per GPU); learning rate decays by
    ``lr_decay_factor`` at each epoch in ``lr_decay_epochs`` (step schedule, as upstream)."""

    stage: str = "body"
    datasets: tuple[str, ...] = ("Human36M", "MSCOCO", "MPII")
    lr: float = 1e-4
    lr_decay_epochs: tuple[int, ...] = (3, 5)
    lr_decay_factor: float = 10.0
    epochs: int = 6
    batch_size: int = 24
    num_workers: int = 4
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    init_checkpoint: str | None = None  # finetune: the merged checkpoint
    imagenet_weights: str | None = None  # folder with torchvision resnet18/50 ImageNet files
    pose_backbone: str | None = None  # body: SimpleBaseline's COCO 2D-pose ResNet (pose_resnet_50_256x192.pth.tar)
    max_steps_per_epoch: int | None = None  # quick runs, tests and benchmarks
    synthetic_length: int = 2048
    # hand: the loss terms upstream computes through the MANO layer (joint_proj, joint_cam,
    # mano_joint_cam: wbcap.train.hand_losses), which need the user's MANO_RIGHT model file
    mano_losses: bool = True
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
            raise InputError(f"unknown training settings: {', '.join(sorted(unknown))}; the valid ones are "
                             f"{', '.join(sorted(names))}")
        if "model" in data:
            data["model"] = ModelConfig.from_dict(dict(data["model"]))
        for k in ("datasets", "lr_decay_epochs"):
            if k in data:
                data[k] = tuple(data[k])
        return cls(**data)


STAGES: dict[str, StageConfig] = {
    # whole body on Human3.6M (3D) + COCO-WholeBody and MPII (2D), upstream's trainset_3d and trainset_2d: Adam 1e-4,
    # x0.1 at 3 and 5, 6 epochs, 24/GPU. Upstream (main/config.py: lr_dec_epoch [4, 6], end_epoch 7) starts this stage
    # and finetune from a snapshot_0 (tool/convert_simple_to_pose2pose.py, tool/merge_hand_to_all.py) and so trains its
    # epochs 1-6 (common/base.py load_model: start_epoch = epoch + 1): 3 at lr, 2 at lr/10, 1 at lr/100, wbcap's 0-5.
    "body": StageConfig(stage="body"),
    # hand-only model on FreiHAND + InterHand2.6M (3D) + COCO-WholeBody hand crops (2D; "MSCOCO" in this stage, as
    # upstream's parts-dependent loader), the sets of upstream's released Pose2Pose hand model: batch 48, decays at 10
    # and 12, 13 epochs (upstream's Pose2Pose branch starts it from ImageNet at epoch 0: no snapshot_0, the same count)
    "hand": StageConfig(stage="hand", datasets=("FreiHAND", "InterHand26M", "MSCOCO"), batch_size=48,
                        lr_decay_epochs=(10, 12), epochs=13),
    # whole body again from the merged checkpoint, lr 1e-5
    "finetune": StageConfig(stage="finetune", lr=1e-5),
}

#: Named recipes of a stage beyond its default (``configs/<name>.toml``, ``wbcap train <stage>
#: --config <name>``; a test keeps each equal to its file). ``agora``: upstream's fine-tuning on AGORA (README:
#: "move snapshot_6.pth.tar, generated after the 3rd training stage, to tool and run python reset_epoch.py ...
#: trainset_3d=['AGORA'], trainset_2d=[], lr_dec_epoch=[40,60], end_epoch = 70", train.py --lr 1e-4), the
#: finetune stage (the whole-body model from a whole-body checkpoint, --init) on AGORA alone. reset_epoch.py sets the
#: checkpoint's epoch to 0, so upstream trains its epochs 1-69 (common/base.py load_model: start_epoch = epoch + 1),
#: 39 at lr, 20 at lr/10, 10 at lr/100: wbcap's epochs 0-68, decays at 39 and 59.
RECIPES: dict[str, StageConfig] = {
    "agora": StageConfig(stage="finetune", datasets=("AGORA",), lr=1e-4, lr_decay_epochs=(39, 59), epochs=69),
}


#: The training sets each stage accepts (``datasets``); ``synthetic`` needs no data. The hand
#: stage trains the hand-only model on hand crops (FreiHAND's, InterHand2.6M's, and COCO-WholeBody's,
#: which it calls ``MSCOCO``: :mod:`wbcap.train.data.coco_hands`); the whole-body sets train the others
#: (AGORA too, as upstream's config.py takes any of its sets in either stage: its recipe ``agora``).
WHOLE_BODY_SETS = ("Human36M", "MSCOCO", "MPII", "AGORA", "synthetic")
HAND_SETS = ("FreiHAND", "InterHand26M", "MSCOCO")
STAGE_DATASETS: dict[str, tuple[str, ...]] = {"body": WHOLE_BODY_SETS, "hand": HAND_SETS, "finetune": WHOLE_BODY_SETS}


# --------------------------------------------------------------------------- checking values
#
# Every value a --config file, a run's stage.json or a flag gives is checked here, before any
# work, and refused in one line naming where it came from, the key, the value given and what
# the key takes (a TOML file's ``epochs = "two"`` crashed once the model was built).


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _number(v) and math.isfinite(float(v))


def _whole(low: int, high: int | None = None) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and is_whole(v, low) and (high is None or v <= high)  # (TOML: a Python int)

    return ok, (f"a whole number from {low} to {high}" if high is not None else f"a whole number of {low} or more")


def _positive() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _finite(v) and float(v) > 0), "a number above 0"


def _sizes(n: int, *, whole: bool = True) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) == n
                and all((isinstance(x, int) and not isinstance(x, bool)) if whole else _finite(x) for x in v)
                and all(x > 0 for x in v))

    return ok, f"a list of {n} {'whole numbers' if whole else 'numbers'} above 0"


def _boolean() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, bool)), "true or false"


def _text() -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, str) and v.strip() != ""), "a path (a string)"


def _names() -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) and x.strip() for x in v)

    return ok, 'a list of training set names, e.g. ["Human36M", "MSCOCO"] or ["synthetic"]'


#: The check and the words for what each training setting takes (``model``: :data:`_MODEL_VALUES`).
_STAGE_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "stage": ((lambda v: v in ("body", "hand", "finetune")), '"body", "hand" or "finetune"'),
    "datasets": _names(),
    "lr": _positive(),
    "lr_decay_epochs": ((lambda v: isinstance(v, (list, tuple)) and all(_whole(0)[0](x) for x in v)),
                        "a list of epoch numbers (whole numbers of 0 or more), e.g. [3, 5]"),
    "lr_decay_factor": _positive(),
    "epochs": _whole(1),
    "batch_size": _whole(1),
    "num_workers": _whole(0),
    "seed": _whole(0, 2**32 - 1),
    "amp": _boolean(),
    "init_checkpoint": _text(),
    "imagenet_weights": _text(),
    "pose_backbone": _text(),
    "max_steps_per_epoch": _whole(1),
    "synthetic_length": _whole(1),
    "mano_losses": _boolean(),
}
_MODEL_VALUES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "backbone_depth": ((lambda v: v in RESNET_DEPTHS and not isinstance(v, bool)), f"one of {', '.join(map(str, RESNET_DEPTHS))}"),
    "hand_backbone_depth": ((lambda v: v in RESNET_DEPTHS and not isinstance(v, bool)), f"one of {', '.join(map(str, RESNET_DEPTHS))}"),
    "face_backbone_depth": ((lambda v: v in RESNET_DEPTHS and not isinstance(v, bool)), f"one of {', '.join(map(str, RESNET_DEPTHS))}"),
    "backbone_width": (backbone_width_ok, BACKBONE_WIDTHS),
    "input_img_shape": _sizes(2),
    "input_body_shape": _sizes(2),
    "output_hm_shape": _sizes(3),
    "input_hand_shape": _sizes(2),
    "output_hand_hm_shape": _sizes(3),
    "input_face_shape": _sizes(2),
    "focal": _sizes(2, whole=False),
    "camera_3d_size": _positive(),
    # (the SMPL-X layer training poses takes 10 of each, as Hand4Whole: 300 passed here and failed
    # at the first step, "betas must have shape (1, 10)")
    "num_betas": ((lambda v: v == 10 and not isinstance(v, bool)), "10 (the SMPL-X betas training uses, as Hand4Whole)"),
    "num_expression": ((lambda v: v == 10 and not isinstance(v, bool)),
                       "10 (the SMPL-X expression coefficients training uses, as Hand4Whole)"),
    "hand_box_extension": _positive(),
    "face_box_extension": _positive(),
    "fix_left_hand_flip": _boolean(),
}
#: Settings that may be unset (None in a run's ``stage.json``; TOML has no null: leave the key out).
_OPTIONAL = {"init_checkpoint", "imagenet_weights", "pose_backbone", "max_steps_per_epoch"}
_FLOATS = {"lr", "lr_decay_factor", "camera_3d_size", "hand_box_extension", "face_box_extension"}


def shown_setting(value: Any) -> str:
    """``value`` as TOML spells it (near enough: strings quoted, true/false, lists in brackets)."""
    try:
        text = json.dumps(list(value) if isinstance(value, tuple) else value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked(table: dict[str, Any], rules: dict[str, tuple[Callable[[Any], bool], str]], where: Callable[[str], str],
             unknown_hint: str, flags: bool = False) -> dict[str, Any]:
    """``table`` with each value checked against ``rules`` (floats made float, lists tuples).
    ``where(key)``: how the message names the key (``FILE: lr``, ``--lr``); ``flags``: the
    values come from flags (shown as typed: ``--lr nan``), not a file (``lr = "fast"``)."""
    result = {}
    for key, value in table.items():
        if key not in rules:
            raise InputError(f"{where(key)}: unknown setting; {unknown_hint.format(', '.join(rules))}")
        ok, expected = rules[key]
        if value is None and key in _OPTIONAL:  # (a run's stage.json: not set)
            result[key] = None
            continue
        if not ok(value):
            shown = (",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)) if flags else None
            raise InputError(f"{where(key)} {shown}: expected {expected}" if flags
                             else f"{where(key)} = {shown_setting(value)}: expected {expected}")
        if key == "focal":
            value = tuple(float(x) for x in value)
        elif isinstance(value, list):
            value = tuple(value)
        elif key in _FLOATS:
            value = float(value)
        result[key] = value
    return result


def check_stage_values(data: dict[str, Any], source: str | None) -> dict[str, Any]:
    """``data`` (training settings, and a ``model`` table) checked: each key known, each value of
    its kind (:data:`_STAGE_VALUES`, :data:`_MODEL_VALUES`); returned with lists made tuples and
    the float settings float. ``source``: the file the values come from (the message names it
    with the key); None: flags (the message names the flag, :func:`~wbcap.errors.setting`).

    Raises:
        InputError: one line naming the file and key (or the flag), the value given and what it takes.
    """
    def where(key: str, model: bool = False) -> str:
        if source is None:
            return setting(key)
        return f"{source}: " + (f"[model] {key}" if model else key)

    data = dict(data)
    model = data.pop("model", None)
    result = _checked(data, _STAGE_VALUES, where, "the valid keys are {} and a [model] table", source is None)
    if model is not None:
        if not isinstance(model, dict):
            raise InputError(f"{where('model')} = {shown_setting(model)}: expected a [model] table of model settings")
        result["model"] = _checked(model, _MODEL_VALUES, lambda k: where(k, True), "the valid [model] keys are {}")
    return result


def _recipes_folder() -> Any:
    """The folder of the recipes installed with wbcap (``wbcap/train/configs/``), as
    ``importlib.resources`` gives it."""
    from importlib import resources

    return resources.files("wbcap.train") / "configs"


def packaged_recipes() -> tuple[str, ...]:
    """The names of the recipes installed with wbcap (``wbcap/train/configs/<name>.toml``)."""
    return tuple(sorted(p.name[: -len(".toml")] for p in _recipes_folder().iterdir() if p.name.endswith(".toml")))


def recipe_path(name_or_path: str | Path) -> Path:
    """``--config``'s file: a path as given (``~`` expanded), or for a bare name that names no
    file (no folder, no extension: ``agora``) the recipe of that name installed with wbcap (the
    repository's ``train/configs/`` was not installed: ``--config train/configs/agora.toml``, as
    the help said, failed outside a checkout, a packager's trial)."""
    path = Path(name_or_path).expanduser()
    text = str(name_or_path)
    if path.is_file() or path.suffix or "/" in text or os.sep in text or text not in packaged_recipes():
        return path  # (a folder named as a recipe is no recipe: the recipe, a break-it review)
    return Path(str(_recipes_folder() / f"{text}.toml"))


def read_stage_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML recipe (:func:`check_stage_values`, the file named in every message).

    Raises:
        InputError: the file is missing, unreadable, not UTF-8, not TOML, or holds a bad key or value.
    """
    path = recipe_path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"training config not found: {path} (give a TOML file, or the name of a recipe wbcap "
                         f"holds: {', '.join(packaged_recipes())})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "save the TOML file as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}); pass a readable TOML file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    return check_stage_values(data, str(path))


def load_stage(stage: str, config_file: str | Path | None = None, *, base: StageConfig | None = None,
               model: ModelConfig | None = None, **overrides: Any) -> StageConfig:
    """Built-in stage (or ``base``: a resumed run's recorded settings; ``model``: the model settings
    to start from instead of the built-in stage's, e.g. a fine-tuning start checkpoint's), then a
    TOML file's values (its ``[model]`` keys over those), then non-None ``overrides`` (flags);
    every value checked (:func:`check_stage_values`). A file's ``stage`` key must name ``stage``
    (the subcommand).

    Raises:
        InputError: one line naming the file and key or the flag, the value and what it takes.
    """
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    cfg = STAGES[stage] if base is None else base
    if model is not None:
        cfg = dataclasses.replace(cfg, model=model)
    if config_file is not None:
        path = Path(config_file).expanduser()
        data = read_stage_file(path)
        given = data.pop("stage", stage)
        if given != stage:
            raise InputError(f'{path}: stage = "{given}" makes it a recipe for `wbcap train {given}`, not `wbcap train '
                             f'{stage}`; run `wbcap train {given}`, or set stage = "{stage}" in it (or drop the key)')
        model_values = {**cfg.model.to_dict(), **data.pop("model", {})}
        try:
            cfg = dataclasses.replace(cfg, **data, model=ModelConfig.from_dict(model_values))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: {exc}") from None
    changes = {k: v for k, v in overrides.items() if v is not None}
    changes = check_stage_values(changes, None)
    cfg = dataclasses.replace(cfg, **changes)
    return dataclasses.replace(cfg, datasets=tuple(_set_name(name) for name in cfg.datasets))


def _set_name(name: str) -> str:
    """A training set's name as wbcap spells it, whatever its case (``human36m`` -> ``Human36M``, as
    ``wbcap eval --dataset`` takes it; a user trial); an unknown name as given (refused later, by name)."""
    known = {n.casefold(): n for n in (*WHOLE_BODY_SETS, *HAND_SETS)}
    return known.get(name.strip().casefold(), name)

