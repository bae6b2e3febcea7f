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
    return expected_position_3d(softmax_3d(heatmap))


def softmax_3d(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, J, D, H, W) logits -> the same shape, each joint's map softmax-normalised over its D*H*W cells."""
    b, j, d, h, w = heatmap.shape
    return F.softmax(heatmap.reshape(b, j, d * h * w), dim=2).reshape(b, j, d, h, w)


def expected_position_3d(prob: torch.Tensor) -> torch.Tensor:
    """Expected (x, y, z) of (B, J, D, H, W) probabilities (:func:`softmax_3d`'s) -> (B, J, 3) in
    heatmap cells (upstream's ``soft_argmax_3d`` after its softmax)."""
    d, h, w = prob.shape[2:]
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    zs = torch.arange(d, dtype=prob.dtype, device=prob.device)
    x = (prob.sum(dim=(2, 3)) * xs).sum(dim=2, keepdim=True)
    y = (prob.sum(dim=(2, 4)) * ys).sum(dim=2, keepdim=True)
    z = (prob.sum(dim=(3, 4)) * zs).sum(dim=2, keepdim=True)
    return torch.cat((x, y, z), dim=2)


def sample_joint_features(feat: torch.Tensor, joint_xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample feature vectors at joint positions (align_corners=True, zero padding).

    feat: (B, C, H, W); joint_xy: (B, J, 2) in feature cells (x, y). Returns (B, J, C), float32
    for a bfloat16 or float16 ``feat``: the values ``F.grid_sample`` gives for ``feat.float()``
    (within float32 rounding), read from the four neighbours of each point only, without a
    float32 copy of the whole map (see :func:`_sample_widened`); else in ``feat``'s dtype, by
    ``F.grid_sample`` (as upstream's ``sample_joint_features``).
    """
    if feat.dtype in (torch.bfloat16, torch.float16):
        return _sample_widened(feat, joint_xy)
    h, w = feat.shape[2:]
    x = joint_xy[:, :, 0] / (w - 1) * 2 - 1
    y = joint_xy[:, :, 1] / (h - 1) * 2 - 1
    grid = torch.stack((x, y), dim=2)[:, :, None, :]
    sampled = F.grid_sample(feat, grid, align_corners=True)[:, :, :, 0]
    return sampled.permute(0, 2, 1).contiguous()


def joint_neighbours(joint_xy: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four neighbours of each point on an ``h x w`` map and their bilinear weights, as
    ``F.grid_sample`` (``align_corners=True``, zero padding) weighs them: (x0, y0), (x0 + 1, y0),
    (x0, y0 + 1), (x0 + 1, y0 + 1) by (1 - fx)(1 - fy), fx(1 - fy), (1 - fx)fy, fx fy; neighbours
    outside the map (and points with non-finite coordinates) weigh zero.

    joint_xy (B, J, 2) in cells (x, y) -> (flat index ``y * w + x`` (B, J * 4) int64, clamped
    inside the map; weights (B, J, 4) float32; inside (B, J, 4) bool: the neighbour is on the
    map, i.e. its index is its own, not a clamped one, whose value the caller must zero rather
    than weigh by 0: a non-finite pixel there would give NaN).
    """
    xy = joint_xy.float()
    xy = torch.where(xy.isfinite(), xy, torch.full_like(xy, -2.0))  # (outside: zeros)
    x, y = xy.unbind(-1)  # (B, J)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    xs = torch.stack((x0, x0 + 1, x0, x0 + 1), -1)  # (B, J, 4)
    ys = torch.stack((y0, y0, y0 + 1, y0 + 1), -1)
    weights = torch.stack(((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy), -1)
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).long().flatten(1)
    return index, weights * inside, inside


def _sample_widened(feat: torch.Tensor, joint_xy: torch.Tensor) -> torch.Tensor:
    """:func:`sample_joint_features` of a half-precision ``feat``, in float32: each point's four
    neighbours (:func:`joint_neighbours`) gathered, widened and weighted: ``grid_sample``'s
    bilinear, ``align_corners=True``, zero padding, whose normalised grid maps cell x to x exactly.

    feat (B, C, H, W) any memory format; joint_xy (B, J, 2) cells -> (B, J, C) float32.
    """
    b, c, h, w = feat.shape
    j = joint_xy.shape[1]
    index, weights, inside = joint_neighbours(joint_xy, h, w)
    flat = feat.flatten(2)  # (B, C, H * W): a view in NCHW and channels_last memory alike
    values = torch.gather(flat, 2, index.view(b, 1, j * 4).expand(b, c, j * 4)).float().view(b, c, j, 4)
    weighed = torch.where(inside.unsqueeze(1), values * weights.unsqueeze(1), 0.0)  # (see joint_neighbours)
    return weighed.sum(-1).permute(0, 2, 1).contiguous()


def sample_conv_features(conv: nn.Module, feat: torch.Tensor, joint_xy: torch.Tensor) -> torch.Tensor:
    """``sample_joint_features(conv(feat), joint_xy)``: through ``conv.sample`` where the
    inference form gives the convolution one (:class:`~wbcap.model.fused.ConvAtPoints`: a 1x1
    convolution computed on the sampled points' neighbours only; the same values to float32
    rounding, except zeros for a point with non-finite coordinates), else on the whole map.

    feat (B, C, H, W); joint_xy (B, J, 2) in cells -> (B, J, C_out) as :func:`sample_joint_features`.
    """
    sample = getattr(conv, "sample", None)
    return sample(feat, joint_xy) if sample is not None else sample_joint_features(conv(feat), joint_xy)
