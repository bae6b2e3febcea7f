"""Weight initialisation of the heads as upstream ``model.init_weights`` (training from scratch).

Conv / ConvTranspose weights ~ N(0, 0.001) with zero bias, Linear ~ N(0, 0.01) with zero bias,
BatchNorm weight 1 and bias 0. Backbones start from ImageNet weights when given (see
:func:`load_imagenet_backbone`), else from :meth:`ResNetBackbone.init_weights_like_upstream`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wbcap.errors import CheckpointError


def init_head_weights(module: nn.Module) -> None:
    """Apply upstream's head initialisation to every submodule of ``module`` (in place)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0.0)


def load_imagenet_backbone(backbone: nn.Module, path: str | Path) -> None:
    """Load a torchvision ImageNet ResNet state_dict (``fc.*`` ignored) into ``backbone``.

    wbcap never downloads: pass the file (e.g. ``resnet50-11ad3fa6.pth`` from torch's hub cache).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ImageNet backbone weights not found: {path}")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: not a matching torchvision ResNet ({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
