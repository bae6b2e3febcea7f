"""Winograd convolution for the ResNets' 3x3 stride-1 convolutions (float32, exact mode).

A 3x3 convolution computes 9 multiply-adds per output pixel, input channel and output channel.
Winograd's minimal filtering algorithm F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016, section 4) computes an m x m tile of outputs from an
(m + 2) x (m + 2) tile of inputs with (m + 2)^2 products instead of 9 m^2:

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A

with ``g`` the 3x3 kernel, ``d`` the input tile, ``(.)`` the element-wise product and B, G, A
the fixed transforms of the paper (F(2x2, 3x3): 16 products for 36, 2.25x fewer; F(4x4, 3x3): 36
for 144, 4x fewer). Summed over input channels, the element-wise products become (m + 2)^2
independent matrix products ``(tiles, C_in) x (C_in, C_out)``: one ``torch.bmm``. The input and
output transforms are additions of strided views (a few passes over the activations).

Why wbcap has its own: oneDNN's direct 3x3 convolution reaches ~85 % of the CPU's float32
matmul rate on the project machines, so the exact mode's ``>= 85 %`` target for the whole network
needs fewer multiplications; torch exposes no Winograd convolution on CPU (oneDNN's is not
reachable through it, and ``torch.compile`` does not generate one), and no maintained library
provides one for torch tensors.

Rounding: the transforms of F(2x2, 3x3) have entries 0, +-1 and +-1/2 (exact in float32); on
ResNet-50 activations its outputs were within ~4e-6 of a float64 convolution (oneDNN's direct
ones: ~1e-5). F(4x4, 3x3)'s transforms have entries up to 8 and 1/24 and its outputs were within
~1e-4 (relative ~1e-5). Which tile (or the direct convolution) each layer uses is measured per
machine (:mod:`wbcap.model.strategy`), and every choice is checked against the module-by-module
network there.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import torch
from torch import nn

#: Output tile sizes m of F(m x m, 3 x 3) this module implements (0 in a plan: the direct convolution).
TILES = (2, 4)

# Lavin & Gray 2016, section 4.1 (F(2, 3)) and 4.2 (F(4, 3), interpolation points 0, +-1, +-2, oo).
# G is applied as it stands (transformed_kernel); B^T and A^T are applied in the factored forms of
# _input_transform / _output_transform, which tests/test_winograd.py checks against these tables.
G = MappingProxyType({
    2: ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    4: ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0)),
})
BT = MappingProxyType({
    2: ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    4: ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
})
AT = MappingProxyType({
    2: ((1, 1, 1, 0), (0, 1, -1, -1)),
    4: ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
})


def winograd_applies(conv: nn.Module) -> bool:
    """True for the convolutions :class:`WinogradConv` computes: ``nn.Conv2d`` with a 3x3 kernel,
    stride 1, padding 1, dilation 1, one group, zero padding."""
    return (isinstance(conv, nn.Conv2d) and not isinstance(conv, nn.ConvTranspose2d)
            and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
            and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros")


def transformed_kernel(weight: torch.Tensor, tile: int) -> torch.Tensor:
    """``G g G^T`` of every kernel: (C_out, C_in, 3, 3) -> ((tile + 2)^2, C_in, C_out) float32
    (the bmm operand of :class:`WinogradConv`).

    One matrix product over the 9 taps, ``kron(G, G) @ taps``, in float32: its rounding (~1e-7
    relative, measured against float64) is far below the Winograd arithmetic's own, and it runs
    ~8x faster than float64 (this is part of loading the network: 0.02 s for a 512 -> 512 layer's
    F(4x4, 3x3) kernel on the project machine)."""
    if tile not in TILES:
        raise ValueError(f"Winograd tile {tile}: use one of {TILES}")
    c_out, c_in = int(weight.shape[0]), int(weight.shape[1])
    g = torch.tensor(G[tile], dtype=torch.float64)
    taps = weight.detach().permute(2, 3, 1, 0).reshape(9, c_in * c_out).to(torch.float32)
    u = torch.kron(g, g).to(device=weight.device, dtype=torch.float32) @ taps
    return u.reshape((tile + 2) ** 2, c_in, c_out)


def input_transform(d: Sequence[torch.Tensor], out: torch.Tensor) -> None:
    """``out[i] = sum_j B^T[i, j] d[j]`` for F(2, 3) (4 views) or F(4, 3) (6 views); ``d`` are
    views of equal shapes, ``out`` a tensor whose first dimension indexes i. The factored forms
    (common sub-expressions of the rows of B^T) take one pass per term pair."""
    if len(d) == 4:
        torch.sub(d[0], d[2], out=out[0])
        torch.add(d[1], d[2], out=out[1])
        torch.sub(d[2], d[1], out=out[2])
        torch.sub(d[1], d[3], out=out[3])
        return
    t0 = torch.add(d[4], d[2], alpha=-4)  # d4 - 4 d2
    t1 = torch.add(d[3], d[1], alpha=-4)  # d3 - 4 d1
    torch.add(t0, t1, out=out[1])
    torch.sub(t0, t1, out=out[2])
    t0 = torch.sub(d[4], d[2])
    t1 = torch.sub(d[3], d[1])
    torch.add(t0, t1, alpha=2, out=out[3])
    torch.add(t0, t1, alpha=-2, out=out[4])
    torch.add(d[4], d[0], alpha=4, out=out[0]).add_(d[2], alpha=-5)
    torch.add(d[5], d[1], alpha=4, out=out[5]).add_(d[3], alpha=-5)


def output_transform(m: Sequence[torch.Tensor], out: torch.Tensor) -> None:
    """``out[r] = sum_i A^T[r, i] m[i]`` for F(2, 3) (4 views in, 2 out) or F(4, 3) (6 in, 4 out)."""
    if len(m) == 4:
        torch.add(m[0], m[1], out=out[0]).add_(m[2])
        torch.sub(m[1], m[2], out=out[1]).sub_(m[3])
        return
    a = torch.add(m[1], m[2])
    b = torch.sub(m[1], m[2])
    c = torch.add(m[3], m[4])
    d = torch.sub(m[3], m[4])
    torch.add(m[0], a, out=out[0]).add_(c)
    torch.add(b, d, alpha=2, out=out[1])
    torch.add(a, c, alpha=4, out=out[2])
    torch.add(b, d, alpha=8, out=out[3]).add_(m[5])


class WinogradConv(nn.Module):
    """A 3x3 stride-1 convolution (padding 1) with folded BatchNorm, computed by F(m x m, 3 x 3).

    forward(x (N, C_in, H, W), residual (N, C_out, H, W) | None) -> (N, C_out, H, W) float32,
    channels_last: ``act(conv(x) + b [+ residual])`` with ``act`` ReLU or identity, as
    :class:`~wbcap.model.fused.FusedConv`. Any H, W >= 1 (the last tiles are zero-padded).

    Args:
        weight: folded kernel (C_out, C_in, 3, 3); bias: (C_out,); relu: apply ReLU last;
        tile: m, the output tile size (:data:`TILES`).

    The bias is added to the one transformed product whose output coefficients are all 1 (row
    and column 1 of A^T), i.e. once per output pixel, inside the bmm's result. Buffers (the
    transformed kernel and the bias) follow ``.to(device)``; computation is float32 on any device.
    Raises ValueError for a kernel that is not 3x3 or a tile not in :data:`TILES`.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, relu: bool, tile: int = 2) -> None:
        super().__init__()
        if tuple(weight.shape[2:]) != (3, 3):
            raise ValueError(f"WinogradConv needs a 3x3 kernel, got {tuple(weight.shape)}")
        self.tile = int(tile)
        self.relu = relu
        self.in_channels = int(weight.shape[1])
        self.out_channels = int(weight.shape[0])
        self.register_buffer("kernel", transformed_kernel(weight, self.tile), persistent=False)
        self.register_buffer("bias", bias.detach().to(torch.float32).clone(), persistent=False)
        self._bias_slot = (self.tile + 2) + 1  # product (1, 1)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (float32)."""
        return self.kernel.dtype

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, H, W) for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        return [int(n), self.out_channels, int(h), int(w)]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        m, a = self.tile, self.tile + 2
        n, c, h, w = x.shape
        k = self.out_channels
        th, tw = -(-h // m), -(-w // m)
        hp, wp = m * th + 2, m * tw + 2
        xn = x.to(self.kernel.dtype).permute(0, 2, 3, 1)  # NHWC view of a channels_last tensor
        xp = xn.new_empty(n, hp, wp, c)
        xp[:, 1 : h + 1, 1 : w + 1] = xn
        xp[:, 0].zero_()
        xp[:, h + 1 :].zero_()
        xp[:, 1 : h + 1, 0].zero_()
        xp[:, 1 : h + 1, w + 1 :].zero_()
        # B^T d B, rows then columns: (a, a, N, th, tw, C_in); tiles overlap by 2.
        rows = xn.new_empty(a, n, th, wp, c)
        input_transform([xp[:, i : i + m * th : m] for i in range(a)], rows)
        v = xn.new_empty(a, a, n, th, tw, c)
        input_transform([rows[:, :, :, j : j + m * tw : m] for j in range(a)], v.transpose(0, 1))
        t = n * th * tw
        prod = torch.bmm(v.view(a * a, t, c), self.kernel)  # (a*a, tiles, C_out)
        prod[self._bias_slot].add_(self.bias)
        prod = prod.view(a, a, n, th, tw, k)
        # A^T M A, rows then columns, written straight into the tiles of the output.
        half = xn.new_empty(m, a, n, th, tw, k)
        output_transform(prod, half)
        y = xn.new_empty(n, th, m, tw, m, k)
        output_transform(half.transpose(0, 1).permute(0, 2, 3, 1, 4, 5), y.permute(4, 0, 1, 2, 3, 5))
        y = y.view(n, m * th, m * tw, k)
        if m * th != h or m * tw != w:
            y = y[:, :h, :w].contiguous()
        if residual is not None:
            y.add_(residual.permute(0, 2, 3, 1))
        if self.relu:
            y.relu_()
        return y.permute(0, 3, 1, 2)
