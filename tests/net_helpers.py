"""Shared by the tests of the network's inference forms (test_fused, test_winograd): deterministic
weights with non-trivial BatchNorm statistics, and a relative closeness check."""

from __future__ import annotations

import torch
from torch import nn


def deterministic(module: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic He-like weights and non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / fan_in**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.3 + 0.3)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module.eval()


def close(a: torch.Tensor, b: torch.Tensor, rel: float) -> None:
    err = (a.float() - b.float()).abs().max().item()
    scale = b.float().abs().max().item()
    assert err <= rel * max(scale, 1e-12), f"max abs error {err:.3g} vs scale {scale:.3g}"
