"""Small building blocks of the Hand4Whole heads (upstream ``common/nets/layer.py`` semantics).

Layer lists are ``nn.Sequential`` so parameter names match the released checkpoint
(``conv.0.weight``, ``body_conv.1.running_mean``, ``lhand_size.2.bias`` ...).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def make_linear_layers(dims: list[int], relu_final: bool = True) -> nn.Sequential:
    """Linear layers ``dims[0] -> ... -> dims[-1]`` with ReLU between (and after, if relu_final)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or relu_final:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def make_conv_layers(
    dims: list[int], kernel: int = 3, stride: int = 1, padding: int = 1, bnrelu_final: bool = True
) -> nn.Sequential:
    """Conv2d layers with BatchNorm+ReLU between (and after, if bnrelu_final)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Conv2d(dims[i], dims[i + 1], kernel_size=kernel, stride=stride, padding=padding))
        if i < len(dims) - 2 or bnrelu_final:
            layers.append(nn.BatchNorm2d(dims[i + 1]))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def make_deconv_layers(dims: list[int], bnrelu_final: bool = True) -> nn.Sequential:
    """ConvTranspose2d (k4 s2 p1, no bias) layers doubling resolution, BN+ReLU between."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(
            nn.ConvTranspose2d(dims[i], dims[i + 1], kernel_size=4, stride=2, padding=1, output_padding=0, bias=False)
        )
        if i < len(dims) - 2 or bnrelu_final:
            layers.append(nn.BatchNorm2d(dims[i + 1]))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def soft_argmax_2d(heatmap: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) of softmax-normalised heatmaps.

    heatmap: (B, J, H, W) logits. Returns (B, J, 2) in heatmap cells (x in [0, W-1]).
    """
    b, j, h, w = heatmap.shape
    prob = F.softmax(heatmap.reshape(b, j, h * w), dim=2).reshape(b, j, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    x = (prob.sum(dim=2) * xs).sum(dim=2, keepdim=True)
    y = (prob.sum(dim=3) * ys).sum(dim=2, keepdim=True)
    return torch.cat((x, y), dim=2)


def soft_argmax_3d(heatmap: torch.Tensor) -> torch.Tensor:
    """Expected (x, y, z) of softmax-normalised 3D heatmaps.

    heatmap: (B, J, D, H, W) logits. Returns (B, J, 3) in heatmap cells.
    """
    b, j, d, h, w = heatmap.shape
    prob = F.softmax(heatmap.reshape(b, j, d * h * w), dim=2).reshape(b, j, d, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    zs = torch.arange(d, dtype=prob.dtype, device=prob.device)
    x = (prob.sum(dim=(2, 3)) * xs).sum(dim=2, keepdim=True)
    y = (prob.sum(dim=(2, 4)) * ys).sum(dim=2, keepdim=True)
    z = (prob.sum(dim=(3, 4)) * zs).sum(dim=2, keepdim=True)
    return torch.cat((x, y, z), dim=2)


def sample_joint_features(feat: torch.Tensor, joint_xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample feature vectors at joint positions (align_corners=True, zero padding).

    feat: (B, C, H, W); joint_xy: (B, J, 2) in feature cells (x, y). Returns (B, J, C).
    """
    h, w = feat.shape[2:]
    x = joint_xy[:, :, 0] / (w - 1) * 2 - 1
    y = joint_xy[:, :, 1] / (h - 1) * 2 - 1
    grid = torch.stack((x, y), dim=2)[:, :, None, :]
    sampled = F.grid_sample(feat, grid, align_corners=True)[:, :, :, 0]
    return sampled.permute(0, 2, 1).contiguous()
