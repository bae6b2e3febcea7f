"""Weight initialisation of the heads as upstream ``model.init_weights`` (training from scratch).

Conv / ConvTranspose weights ~ N(0, 0.001) with zero bias, Linear ~ N(0, 0.01) with zero bias,
BatchNorm weight 1 and bias 0. Backbones start from ImageNet weights when given (see
:func:`load_imagenet_backbone`), the body's from a COCO 2D-pose ResNet when given
(:func:`load_pose_backbone`), else from :meth:`ResNetBackbone.init_weights_like_upstream`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wbcap.errors import CheckpointError


def init_head_weights(module: nn.Module) -> None:
    """Apply upstream's head initialisation to every submodule of ``module`` (in place), BatchNorm
    running statistics included (a fresh module's: ``wbcap train merge`` re-initialises the hand
    heads of a trained network, whose statistics upstream's merge drops with their weights)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0.0)
            m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0.0)


def load_imagenet_backbone(backbone: nn.Module, path: str | Path) -> None:
    """Load a torchvision ImageNet ResNet state_dict (``fc.*`` ignored) into ``backbone``.

    wbcap never downloads: pass the file (e.g. ``resnet50-11ad3fa6.pth`` from torch's hub cache).
    Read as every checkpoint is (:func:`wbcap.model.checkpoint.load_checkpoint_file`: weights-only).

    Raises:
        CheckpointError: one line naming the file: missing, unreadable, or not this ResNet.
    """
    sd = _read_state_dict(path, "ImageNet ResNet, e.g. resnet50-11ad3fa6.pth")
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    _load_resnet(backbone, sd, path, "a matching torchvision ResNet")


#: The tensors of a SimpleBaseline pose network (Xiao et al. 2018, ``pose_resnet``) that are not
#: its ResNet: the deconvolution head and the heatmap layer.
POSE_HEAD_PREFIXES = ("deconv_layers.", "final_layer.")


def read_pose_backbone(path: str | Path) -> dict[str, torch.Tensor]:
    """The ResNet tensors of a SimpleBaseline 2D-pose checkpoint (e.g. ``pose_resnet_50_256x192.pth.tar``,
    trained on COCO keypoints): a plain state dict of ``conv1.*``, ``bn1.*``, ``layer1-4.*`` (a
    ``module.`` prefix and a ``{"state_dict": ...}`` wrapper are taken off), read weights-only
    (:func:`wbcap.model.checkpoint.load_checkpoint_file`; never unpickled), its deconvolution head
    dropped (:data:`POSE_HEAD_PREFIXES`). Upstream's first stage starts its body ResNet from this
    (tool/convert_simple_to_pose2pose.py, whose head tensors ``load_state_dict(strict=False)`` skips).

    Raises:
        CheckpointError: one line naming the file: missing, unreadable, or not a state dict.
    """
    sd = _read_state_dict(path, "2D-pose ResNet, e.g. pose_resnet_50_256x192.pth.tar")
    if all(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.startswith(POSE_HEAD_PREFIXES)}


def load_pose_backbone(backbone: nn.Module, path: str | Path, check_only: bool = False) -> None:
    """Load a SimpleBaseline 2D-pose ResNet (:func:`read_pose_backbone`) into ``backbone``, every
    tensor of the ResNet (strict); ``check_only``: only read the file and check that it fits
    (``backbone`` may be on the ``meta`` device).

    Raises:
        CheckpointError: one line naming the file, also when its ResNet is not ``backbone``'s
            (another depth).
    """
    _load_resnet(backbone, read_pose_backbone(path), path, "a 2D-pose ResNet of the body backbone's depth",
                 check_only)


def _read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a state-dict file (a ``{"state_dict": ...}`` wrapper taken off), read by
    :func:`~wbcap.model.checkpoint.load_checkpoint_file` (its one-line errors)."""
    from wbcap.model.checkpoint import load_checkpoint_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (the {what})")
    _, sd = load_checkpoint_file(path)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors; pass the {what}")
    return sd


def _load_resnet(backbone: nn.Module, sd: dict[str, torch.Tensor], path: str | Path, what: str,
                 check_only: bool = False) -> None:
    """Load ``sd`` into ``backbone`` when every tensor fits (names and shapes), else one line."""
    own = backbone.state_dict()
    # (BatchNorm's step counters: files of torch < 0.4.1, as SimpleBaseline's, have none; loading leaves them)
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{Path(path).expanduser()}: not {what} ({len(missing)} missing, {len(unexpected)} "
                              f"unexpected, {len(wrong)} mis-shaped tensors)")
    if not check_only:
        backbone.load_state_dict(sd, strict=False)
