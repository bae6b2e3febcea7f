"""Reading and writing network checkpoints.

Two formats are read:

* **official** Hand4Whole snapshots (``snapshot_6.pth.tar``): ``{'network': state_dict,
  'epoch': int, 'optimizer': ...}`` saved from ``DataParallel(Model)``, so every key starts with
  ``module.``; the SMPL-X layer's keys were removed before saving. The architecture is inferred
  from tensor names and shapes.
* **wbcap** checkpoints: ``{'format': 'wbcap-checkpoint/1', 'config': ModelConfig dict,
  'network': state_dict, ...}`` — the model config travels inside.

Files are read with ``torch.load(..., weights_only=True)`` (never unpickling arbitrary objects)
and memory-mapped where the file format allows, so loading makes no transient copy. Loading is
strict: a missing, unexpected or mis-shaped tensor is a :class:`~wbcap.errors.CheckpointError`
(upstream loads with ``strict=False`` and silently keeps random weights).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from wbcap.atomic import atomic_path
from wbcap.config import RESNET_WIDTH, ModelConfig
from wbcap.errors import CheckpointError, CheckpointUnreadableError, first_line, is_out_of_memory
from wbcap.model.hand4whole import Hand4Whole
from wbcap.pickles import is_numpy_archive

log = logging.getLogger(__name__)

WBCAP_FORMAT = "wbcap-checkpoint/1"
OFFICIAL_PREFIX = "module."
# Keys the upstream trainer may leave in (it strips them, but older snapshots kept them).
_IGNORED_KEY = re.compile(r"(^|\.)(smplx_layer|smpl_layer|mano_layer|flame_layer)\.")
_DEPTHS = {("basic", 2): 18, ("basic", 6): 34, ("bottleneck", 6): 50, ("bottleneck", 23): 101, ("bottleneck", 36): 152}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read from disk: network tensors (no ``module.`` prefix) and its config
    (``config_recorded``: the file's own, as wbcap writes it; else inferred from the tensors)."""

    path: Path
    kind: str  # "official" or "wbcap"
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    epoch: int | None
    raw: dict[str, Any]
    config_recorded: bool = False


def _torch_load(path: Path) -> Any:
    import warnings

    with warnings.catch_warnings():  # (a plain pickle of protocol 3+: torch warns, then the error says it)
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc) and "zip" not in str(exc):
                raise
        # Legacy (pre-zip) serialisation cannot be memory-mapped.
        return torch.load(path, map_location="cpu", weights_only=True)


def _looks_like_torch_save(path: Path) -> bool:
    """Whether ``path`` starts like a file ``torch.save`` writes: a zip archive (the default since
    torch 1.6) or a pickle (the legacy format begins with a pickled magic number, opcode 0x80)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return True  # (then not known: the message for a file torch could not read stands)
    return head.startswith(b"PK") or head[:1] == b"\x80"


#: What torch.load raises on a file it cannot read (torch's legacy reader: IndexError / TypeError on
#: some text files).
_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, MemoryError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError,
                IndexError, TypeError)


def check_checkpoint_file(path: str | Path) -> None:
    """Refuse, from its first bytes and without loading it, a file that cannot be a checkpoint
    (empty, or neither of torch.save's formats), with the message loading it would give: for
    checks made before any work (``wbcap train --init``).

    Raises:
        CheckpointError: one line naming the file and the fix.
    """
    path = Path(path).expanduser()
    if path.stat().st_size == 0 or not _looks_like_torch_save(path):
        raise _load_error(path, ValueError("not a torch.save file"))


#: The Python object a weights-only load refused, in torch's messages (2.6-2.13 word it two ways).
_BLOCKED_GLOBAL = re.compile(r"unsupported global:?\s+(?:GLOBAL\s+)?(?P<name>[\w.]+)", re.IGNORECASE)
#: A pickle opcode the weights-only reader does not take (protocol 4's FRAME, 149, and later ones).
_BAD_OPCODE = re.compile(r"Unsupported operand \d+")


#: The fix for a file that is no checkpoint at all (where a start checkpoint, ImageNet weights or a
#: pose backbone go too: the Hand4Whole snapshot was the wrong advice there; a user trial).
_PASS_ONE = ("pass a PyTorch checkpoint, a file torch.save wrote (the Hand4Whole snapshot_6.pth.tar, a wbcap snapshot, "
             "a torchvision .pth)")


#: The fix for a readable file that holds no whole-body network.
_PASS_NETWORK = ("pass Hand4Whole's released snapshot_6.pth.tar or a snapshot `wbcap train` wrote (a state_dict of "
                 "the whole network, saved under 'network' or alone)")


def _load_error(path: Path, exc: Exception) -> CheckpointError:
    """The one-line error for a file ``torch.load`` could not read: not a torch.save file at all,
    one holding other Python objects than tensors, or a corrupt or truncated one."""
    if is_out_of_memory(exc):  # (a good file: said "corrupt or truncated — re-download it" before, an admin's trial)
        size_mb = path.stat().st_size / 1e6
        return CheckpointError(f"{path}: out of memory while reading it ({size_mb:.0f} MB; {first_line(exc, 120)}); "
                               "free memory or raise the process's memory limit (ulimit -v), then run again")
    if isinstance(exc, OSError) and exc.errno is not None:  # (e.g. no permission to read it)
        return CheckpointUnreadableError(f"{path}: cannot be read ({exc.strerror or exc}); check that the file is "
                                         "readable")
    if path.stat().st_size == 0:
        return CheckpointError(f"{path}: is empty (an interrupted download or copy?); re-download it")
    if not _looks_like_torch_save(path):
        return CheckpointError(f"{path}: not a PyTorch checkpoint (neither of the formats torch.save writes); {_PASS_ONE}")
    if is_numpy_archive(path):  # (a zip as torch.save's, of .npy files: "corrupt" said a trial, of an SMPL-X model)
        return CheckpointError(f"{path}: a NumPy archive of arrays (.npz, e.g. a body model), not a PyTorch "
                               f"checkpoint; {_PASS_ONE}")
    if isinstance(exc, pickle.UnpicklingError):
        text = str(exc)
        blocked = _BLOCKED_GLOBAL.search(text)
        if blocked:  # (torch words it "Unsupported global: GLOBAL m.f ..." or "unsupported GLOBAL m.f whose module ...")
            return CheckpointError(
                f"{path}: holds Python objects other than tensors (it asks for {blocked['name'][:100]}); wbcap loads "
                "checkpoints with weights_only=True and will not unpickle them — re-save just the state_dict")
        if _BAD_OPCODE.search(text):
            return CheckpointError(f"{path}: a Python pickle that torch.save does not write, not a PyTorch checkpoint; "
                                   f"{_PASS_ONE}")
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0] if text.strip() else ""
        msg = detail[:120] or type(exc).__name__
    else:
        msg = first_line(exc, 10_000)
        msg = msg.split(". ")[0]  # torch's first sentence says what failed; the rest is advice for its developers
        if len(msg) > 160:
            msg = msg[:157] + "..."
    return CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg}); the file is corrupt or truncated — "
                           "re-download it, or write it again if you made it")


def load_checkpoint_file(path: str | Path) -> tuple[Path, Any]:
    """``(path, object)``: the file ``torch.load`` read weights-only (memory-mapped where it can)
    from ``path`` (``~`` expanded). Raises CheckpointError, one line naming the file and the fix,
    for a missing file and for one it cannot read (:func:`_load_error`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (see `wbcap weights list` for where checkpoints go)")
    try:
        return path, _torch_load(path)
    except _LOAD_ERRORS as exc:
        raise _load_error(path, exc) from None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file (official or wbcap format); raise CheckpointError on any problem."""
    path, obj = load_checkpoint_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint's dict with a 'network' "
                              f"state_dict; {_PASS_NETWORK}")
    if "network" in obj and isinstance(obj["network"], dict):
        sd = obj["network"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj  # a bare state_dict
    else:
        raise CheckpointError(f"{path}: no 'network' state_dict in the file (top-level keys: "
                              f"{sorted(map(str, obj))[:8]}); {_PASS_NETWORK}")
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: the 'network' entry holds non-tensor values")

    official = any(k.startswith(OFFICIAL_PREFIX) for k in sd)
    clean: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        name = key[len(OFFICIAL_PREFIX):] if key.startswith(OFFICIAL_PREFIX) else key
        if _IGNORED_KEY.search(name):
            continue
        clean[name] = value

    if obj.get("format") == WBCAP_FORMAT:
        try:
            config = ModelConfig.from_dict(dict(obj["config"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed model config inside the checkpoint ({exc})") from None
        kind = "wbcap"
    else:
        config = infer_config(clean, path)
        kind = "official" if official else "wbcap"
    epoch = obj.get("epoch")
    return Checkpoint(path=path, kind=kind, config=config, state_dict=clean, epoch=epoch if isinstance(epoch, int) else None,
                      raw=obj, config_recorded=obj.get("format") == WBCAP_FORMAT)


def backbone_depth(sd: dict[str, torch.Tensor], prefix: str, path: Path | str = "checkpoint") -> int:
    """The depth (18, 34, 50, 101, 152) of the ResNet whose tensors ``sd`` holds under ``prefix``,
    by its blocks (bottleneck or basic) and layer 3's count.

    Raises:
        CheckpointError: naming ``path``: no such ResNet under ``prefix``.
    """
    blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"layer3\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError(f"{path}: no '{prefix}layer3' tensors — not a Hand4Whole checkpoint")
    kind = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in sd else "basic"
    depth = _DEPTHS.get((kind, max(blocks) + 1))
    if depth is None:
        raise CheckpointError(f"{path}: '{prefix}' is not a ResNet-18/34/50/101/152 backbone")
    return depth


def backbone_widths(sd: dict[str, torch.Tensor]) -> set[int]:
    """The widths (:attr:`~wbcap.config.ModelConfig.backbone_width`: their stems' output channels)
    of the ResNets whose tensors ``sd`` holds, under any prefix ending in ``backbone.``."""
    return {int(v.shape[0]) for k, v in sd.items() if k.endswith("backbone.conv1.weight") and v.dim() == 4}


def infer_config(sd: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> ModelConfig:
    """Architecture of a Hand4Whole state_dict (no prefix) from its tensor names and shapes.

    Raises:
        CheckpointError: one line naming ``path``: a tensor the whole-body network has is missing
            (a hand-only checkpoint is said to be one), or a backbone is not a ResNet.
    """
    path = Path(path)
    try:
        num_betas = int(sd["body_rotation_net.shape_out.0.weight"].shape[0])
        num_expr = int(sd["face_regressor.expr_out.0.weight"].shape[0])
    except KeyError as exc:
        modules = {k.split(".", 1)[0] for k in sd}
        if {"position_net", "rotation_net"} <= modules and not modules & {"body_rotation_net", "hand_roi_net"}:
            raise CheckpointError(
                f"{path}: a hand-only model (its tensors are backbone, position_net and rotation_net: `wbcap train "
                f"hand`'s), not a whole-body checkpoint; `wbcap train merge --body BODY --hand {path.name} -o OUT` "
                f"makes a whole-body one of it and a body model's") from None
        raise CheckpointError(f"{path}: missing tensor {exc.args[0]!r} — not a Hand4Whole whole-body checkpoint") from None
    depths = {name: backbone_depth(sd, prefix, path) for name, prefix in (
        ("backbone_depth", "backbone."), ("hand_backbone_depth", "hand_roi_net.backbone."),
        ("face_backbone_depth", "face_roi_net.backbone."))}
    widths = backbone_widths(sd)
    if len(widths) > 1:
        raise CheckpointError(f"{path}: its ResNets are of different widths ({sorted(widths)} channels out of their "
                              "first convolutions); wbcap's network has one width for all three")
    try:
        return ModelConfig(**depths, backbone_width=widths.pop() if widths else RESNET_WIDTH, num_betas=num_betas,
                           num_expression=num_expr)
    except ValueError as exc:
        raise CheckpointError(f"{path}: not a Hand4Whole checkpoint wbcap can build ({exc})") from None


def check_state_dict(net: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> None:
    """Raise CheckpointError unless ``sd`` has exactly the network's tensors with the right shapes."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if k in sd and sd[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} with wrong shape (e.g. {'; '.join(wrong[:2])})")
    if problems:
        raise CheckpointError(f"{path}: tensors do not match the Hand4Whole network: " + "; ".join(problems))
    check_finite(sd, path)


def check_finite(sd: Mapping[str, torch.Tensor], path: Path | str = "checkpoint") -> None:
    """Raise CheckpointError (one line naming the file and the first such tensor) when a floating
    tensor of ``sd`` holds a NaN or an infinity: what a diverged training run saves. Such a
    network gave NaN meshes (``wbcap image`` failed writing them, ``wbcap eval`` in its SVD)
    instead of a refusal at load or import. One sum per tensor (34-38 ms for the released
    network's 78 M values on the 2-core Zen 3 EPYC, ~5 % of a load); a sum that overflows is
    checked element by element."""
    for name, t in sd.items():
        if t.is_floating_point() and not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values (saved by a training run "
                                  "that diverged?); use another checkpoint, e.g. an earlier snapshot of that run")


def load_network(
    path: str | Path, device: str | torch.device = "cpu", *, fix_left_hand_flip: bool | None = None
) -> Hand4Whole:
    """Build the network a checkpoint describes and load its weights (strictly), in eval mode.

    The module is built on the ``meta`` device and the (memory-mapped) tensors are assigned, so
    no random initialisation is computed and no second copy of the weights is made on CPU.
    """
    ckpt = read_checkpoint(path)
    config = ckpt.config
    if fix_left_hand_flip is not None:
        config = replace(config, fix_left_hand_flip=fix_left_hand_flip)
    with torch.device("meta"):
        net = Hand4Whole(config)
    check_state_dict(net, ckpt.state_dict, ckpt.path)
    net.load_state_dict(ckpt.state_dict, strict=True, assign=True)
    return net.to(device).eval()


def save_checkpoint(
    path: str | Path,
    net: Hand4Whole,
    *,
    epoch: int | None = None,
    optimizer: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    through_link: bool = False,
) -> Path:
    """Write a wbcap checkpoint atomically (config inside). Returns the path. ``through_link``:
    a path the user named (:func:`wbcap.atomic.atomic_path`'s)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": WBCAP_FORMAT,
        "config": net.config.to_dict(),
        "network": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "epoch": epoch,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer
    if extra:
        payload.update(extra)
    return save_torch_file(payload, path, through_link)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (dicts, lists and tuples looked into)."""
    if isinstance(obj, torch.Tensor):
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def save_torch_file(obj: Any, path: str | Path, through_link: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`wbcap.atomic.atomic_path`, as its
    ``through_link``); returns ``path``.

    torch's writer reports a full disk as a RuntimeError without an errno (``[enforce fail at
    inline_container.cc:672] . unexpected pos``): when the folder's disk has less room left than
    the object's tensors, it is raised as the ``OSError`` ENOSPC it was, naming ``path``, which
    the commands say in one line (a training trial got a crash report for a full disk); likewise
    EFBIG when the process's file size limit (``ulimit -f``, ``RLIMIT_FSIZE``) is below them.

    Raises:
        OSError: the write failed (ENOSPC for a full disk, EFBIG for the file size limit, as
            above); the temporary file is removed.
    """
    path = Path(path)
    with atomic_path(path, through_link) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            needed = _tensor_bytes(obj)
            if needed > _file_size_limit():
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path)) from None
            try:
                free = shutil.disk_usage(tmp.parent).free  # (the partial file still takes its room)
            except OSError:
                raise exc from None
            if free < needed:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
            raise
    return path


def _file_size_limit() -> float:
    """This process's soft file size limit in bytes (``RLIMIT_FSIZE``); infinity when there is
    none or the platform has no such limit."""
    try:
        import resource
    except ImportError:  # (not on Windows)
        return float("inf")
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return float("inf") if soft == resource.RLIM_INFINITY else float(soft)


def read_checkpoint_raw_keys(path: str | Path) -> list[str]:
    """Tensor names of any checkpoint's 'network' (prefix ``module.`` stripped), for validation."""
    path, obj = load_checkpoint_file(path)
    sd = obj.get("network", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: no 'network' state_dict in the file")
    return [k[len(OFFICIAL_PREFIX):] if k.startswith(OFFICIAL_PREFIX) else k for k in sd]
