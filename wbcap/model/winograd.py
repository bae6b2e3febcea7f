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
output transforms are matrix products too: the (m + 2)^2 values of every input tile, gathered
once, times ``kron(B^T, B^T)``, and the products times ``kron(A^T, A^T)``, so that each
transform is one pass over the activations at matrix-product speed. (The factored additions of
strided views they replaced took ~12 passes; measured on the 2-core Xeon, a 4 x 256 x 16 x 16
F(4x4, 3x3) layer went from 1.12x to 1.75x the speed of oneDNN's direct convolution, 4 x 128 x
32 x 32 from 1.02x to 1.56x, interleaved medians of 7; F(2x2, 3x3) layers gained 5-25 %.)

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
# G is applied as it stands (transformed_kernel); B^T and A^T as their Kronecker squares
# (tile_transforms), applied to whole flattened tiles.
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


def tile_transforms(tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kron(B^T, B^T), kron(A^T, A^T))`` of F(tile x tile, 3 x 3), float32: ((t + 2)^2,
    (t + 2)^2) and (t^2, (t + 2)^2). With a tile ``d`` ((t + 2) x (t + 2)) flattened row by row,
    the first times it is ``B^T d B`` flattened the same way; the second does ``A^T M A`` for a
    flattened ((t + 2) x (t + 2)) ``M``. Entries are small integers (exact in float32). Raises
    ValueError for a tile not in :data:`TILES`."""
    if tile not in TILES:
        raise ValueError(f"Winograd tile {tile}: use one of {TILES}")
    bt = torch.tensor(BT[tile], dtype=torch.float32)
    at = torch.tensor(AT[tile], dtype=torch.float32)
    return torch.kron(bt, bt), torch.kron(at, at)


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
    transformed kernel, the bias and the tile transforms of :func:`tile_transforms`) follow
    ``.to(device)``; computation is float32 on any device.
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
        bt2, at2 = tile_transforms(self.tile)
        self.register_buffer("input_matrix", bt2.to(weight.device), persistent=False)
        self.register_buffer("output_matrix", at2.to(weight.device), persistent=False)
        self._bias_slot = (self.tile + 2) + 1  # product (1, 1)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (float32)."""
        return self.kernel.dtype

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, H, W) for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        return [int(n), self.out_channels, int(h), int(w)]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """See the class; with ``inplace`` the result may be written into ``residual`` (returned;
        the caller must not read ``residual`` again), as :meth:`FusedConv.forward
        <wbcap.model.fused.FusedConv.forward>` does."""
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
        # Every (a x a) input tile (tiles overlap by 2), gathered once as (a*a, tiles * C_in), and
        # B^T d B of all of them as one matrix product.
        sn, sh, sw, _ = xp.stride()
        t = n * th * tw
        tiles = xp.as_strided((a, a, n, th, tw, c), (sh, sw, sn, m * sh, m * sw, 1)).reshape(a * a, t * c)
        v = torch.mm(self.input_matrix, tiles).view(a * a, t, c)
        del tiles, xp  # (each 2-4x the input: freed before the products' memory is taken)
        prod = torch.bmm(v, self.kernel)  # (a*a, tiles, C_out)
        del v
        prod[self._bias_slot].add_(self.bias)
        # A^T M A of all tiles as one matrix product, then laid out as the output's pixels (with the
        # residual added on the way where the tiles cover the output exactly).
        out = torch.mm(self.output_matrix, prod.view(a * a, t * k)).view(m, m, n, th, tw, k).permute(2, 3, 0, 4, 1, 5)
        exact = m * th == h and m * tw == w
        if (residual is not None and exact and inplace and residual.dtype == xn.dtype
                and residual.is_contiguous(memory_format=torch.channels_last)):
            y = residual.permute(0, 2, 3, 1).view(n, th, m, tw, m, k).add_(out)
            residual = None
        elif residual is not None and exact:
            y = xn.new_empty(n, th, m, tw, m, k)
            torch.add(out, residual.to(y.dtype).permute(0, 2, 3, 1).reshape(n, th, m, tw, m, k), out=y)
            residual = None
        else:
            y = xn.new_empty(n, th, m, tw, m, k)
            y.copy_(out)
        y = y.view(n, m * th, m * tw, k)
        if not exact:
            y = y[:, :h, :w].contiguous()
        if residual is not None:
            y.add_(residual.permute(0, 2, 3, 1))
        if self.relu:
            y.relu_()
        return y.permute(0, 3, 1, 2)
