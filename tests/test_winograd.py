"""Winograd convolutions (wbcap.model.winograd) and the ResNets that use them by batch size
(wbcap.model.fused.ConvByBatchSize): equal to the direct convolution in float64, batch-size
invariant, and dispatched as their tile plans say."""

from __future__ import annotations

import pytest
import torch
from net_helpers import close as _close
from net_helpers import deterministic as _init
from torch import nn
from torch.nn import functional as F

from wbcap.model.fused import ConvByBatchSize, FusedConv, FusedResNet, check_tile_plan, resnet_winograd_convs, tile_for
from wbcap.model.resnet import ResNetBackbone
from wbcap.model.winograd import (
    AT,
    BT,
    TILES,
    G,
    WinogradConv,
    tile_transforms,
    transformed_kernel,
    winograd_applies,
)


def _reference(x, weight, bias, residual, relu):
    y = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    if residual is not None:
        y = y + residual.double()
    return y.relu() if relu else y


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("shape", [(1, 3, 5, 1, 1), (2, 8, 16, 5, 7), (3, 64, 32, 8, 6), (2, 16, 24, 9, 12)])
def test_winograd_equals_direct_convolution(tile, shape):
    """(N, C_in, C_out, H, W): sizes that fill whole tiles, and ones that leave a partial last tile."""
    n, c, k, h, w = shape
    g = torch.Generator().manual_seed(n * 100 + h)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3, generator=g) / (9 * c) ** 0.5
    bias = torch.randn(k, generator=g)
    residual = torch.randn(n, k, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    for res in (None, residual):
        for relu in (False, True):
            out = WinogradConv(weight, bias, relu, tile)(x, res)
            ref = _reference(x, weight, bias, res, relu)
            assert out.shape == ref.shape and out.dtype == torch.float32
            assert out.is_contiguous(memory_format=torch.channels_last)
            _close(out, ref, 1e-5)
    # the input may come in any memory layout
    _close(WinogradConv(weight, bias, True, tile)(x.contiguous()), _reference(x, weight, bias, None, True), 1e-5)


def test_winograd_known_answer_and_rounding():
    """All-ones 3x3 kernel on an all-ones image: 9 inside, 6 on edges, 4 in corners (zero padding);
    F(2x2, 3x3)'s transforms are exact in float32 here, F(4x4, 3x3)'s nearly."""
    x = torch.ones(1, 1, 5, 6)
    weight = torch.ones(1, 1, 3, 3)
    expected = torch.full((5, 6), 9.0)
    expected[0, :] = expected[-1, :] = expected[:, 0] = expected[:, -1] = 6.0
    expected[0, 0] = expected[0, -1] = expected[-1, 0] = expected[-1, -1] = 4.0
    assert torch.equal(WinogradConv(weight, torch.zeros(1), False, 2)(x)[0, 0], expected)
    torch.testing.assert_close(WinogradConv(weight, torch.zeros(1), False, 4)(x)[0, 0], expected, rtol=0, atol=1e-5)
    assert transformed_kernel(weight, 2).shape == (16, 1, 1) and transformed_kernel(weight, 4).shape == (36, 1, 1)
    # (C_out, C_in, 3, 3) -> ((t + 2)^2, C_in, C_out): G g G^T per kernel, to float32 rounding
    w = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for tile in TILES:
        g = torch.tensor(G[tile], dtype=torch.float64)
        ref = torch.einsum("ai,kcij,bj->abck", g, w, g).reshape((tile + 2) ** 2, 3, 5)
        torch.testing.assert_close(transformed_kernel(w, tile).double(), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="tile 3"):
        transformed_kernel(weight, 3)


@pytest.mark.parametrize("tile", TILES)
def test_tile_transforms_apply_the_papers_matrices_to_flattened_tiles(tile):
    """kron(B^T, B^T) times a tile flattened row by row is B^T d B flattened alike (Lavin & Gray's
    tables), and kron(A^T, A^T) does A^T M A: the layout the gathered tiles have in forward."""
    a = tile + 2
    g = torch.Generator().manual_seed(tile)
    d = torch.randn(a, a, generator=g, dtype=torch.float64)
    bt, at = (torch.tensor(t[tile], dtype=torch.float64) for t in (BT, AT))
    inp, out = tile_transforms(tile)
    assert inp.dtype == out.dtype == torch.float32 and inp.shape == (a * a, a * a) and out.shape == (tile ** 2, a * a)
    torch.testing.assert_close(inp.double() @ d.reshape(-1), (bt @ d @ bt.T).reshape(-1), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(out.double() @ d.reshape(-1), (at @ d @ at.T).reshape(-1), rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="tile 3"):
        tile_transforms(3)


@pytest.mark.parametrize("tile", TILES)
def test_winograd_residual_written_in_place_gives_the_same_result(tile):
    g = torch.Generator().manual_seed(tile)
    weight, bias = torch.randn(8, 8, 3, 3, generator=g) / 9, torch.randn(8, generator=g)
    conv = WinogradConv(weight, bias, True, tile)
    x = torch.randn(2, 8, 8, 12, generator=g).contiguous(memory_format=torch.channels_last)
    r = torch.randn(2, 8, 8, 12, generator=g).contiguous(memory_format=torch.channels_last)
    ref = conv(x, r)
    kept = r.clone()
    out = conv(x, kept, inplace=True)
    assert torch.equal(out, ref) and out.data_ptr() == kept.data_ptr()
    # a partial last tile, or a residual in another layout: a fresh output, the residual untouched
    for xs, rs in ((x[:, :, :7, :11].contiguous(memory_format=torch.channels_last),
                    r[:, :, :7, :11].contiguous(memory_format=torch.channels_last)), (x, r.contiguous())):
        before = rs.clone()
        out = conv(xs, rs, inplace=True)
        _close(out, _reference(xs, weight, bias, before, True), 1e-5)
        assert out.data_ptr() != rs.data_ptr() and torch.equal(rs, before)


@pytest.mark.parametrize("tile", TILES)
def test_winograd_is_batch_size_invariant(tile):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 32, 12, 10, generator=g).contiguous(memory_format=torch.channels_last)
    conv = WinogradConv(torch.randn(48, 32, 3, 3, generator=g) / 17, torch.randn(48, generator=g), True, tile)
    batched = conv(x)
    _close(torch.cat([conv(x[i : i + 1]) for i in range(5)]), batched, 1e-6)


def test_which_convolutions_qualify():
    assert winograd_applies(nn.Conv2d(4, 4, 3, padding=1))
    assert winograd_applies(nn.Conv2d(4, 8, 3, padding=1, bias=False))
    for conv in (nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3),
                 nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.Conv2d(4, 4, 3, padding=1, groups=2),
                 nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.ConvTranspose2d(4, 4, 3, padding=1)):
        assert not winograd_applies(conv), conv
    # ResNet-18: layer1's four, then three per later layer (the first block's first one has stride 2)
    assert len(resnet_winograd_convs(ResNetBackbone(18))) == 13
    assert len(resnet_winograd_convs(ResNetBackbone(50))) == 13  # one per bottleneck but the strided ones
    # a part offers them in float32 only (exact mode), and only in ResNets
    from wbcap.model.fused import TunedPart

    resnet = TunedPart("body_backbone", ResNetBackbone(18), (3, 32, 32), 1, "resnet18 3x32x32")
    assert len(resnet.winograd_convs()) == 13 and resnet.winograd_convs(torch.bfloat16) == []
    assert TunedPart("box_net", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)), (4, 8, 8), 1, "x").winograd_convs() == []


def test_tile_plans():
    plan = check_tile_plan([[2, 2], [4, 4]])
    assert [tile_for(plan, n) for n in (1, 2, 3, 4, 9)] == [0, 2, 2, 4, 4]
    assert [tile_for((), n) for n in (1, 8)] == [0, 0]
    for bad in ([[2, 2], [2, 4]], [[4, 2], [2, 4]], [[0, 2]], [[1, 3]]):
        with pytest.raises(ValueError, match="tile plan"):
            check_tile_plan(bad)


@pytest.mark.parametrize(("depth", "packed"), [(18, False), pytest.param(50, True, marks=pytest.mark.slow)])
def test_resnet_with_winograd_plans_equals_backbone(depth, packed, monkeypatch):
    """Every 3x3 stride-1 convolution by batch size: direct for one image, F(2x2, 3x3) for two or
    three, F(4x4, 3x3) from four; BasicBlocks (ResNet-18) fuse the residual into a Winograd one."""
    backbone = _init(ResNetBackbone(depth), seed=depth + 1)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    plan = ((2, 2), (4, 4))
    with torch.inference_mode():
        ref = backbone(x)
        fused = FusedResNet(backbone, (64, 64), packed=packed, chunk=4, winograd=[plan] * 13)
        layers = [m for m in fused.modules() if isinstance(m, ConvByBatchSize)]
        assert len(layers) == 13 and all(m.plan == plan and isinstance(m.direct, FusedConv) for m in layers)
        # each tile's layer is made when a call first runs it; the folded weight goes once all exist
        assert all(len(m.winograd) == 0 and m.tiles == (2, 4) and m.folded_weight is not None for m in layers)
        used: list[int] = []
        real = WinogradConv.forward
        monkeypatch.setattr(WinogradConv, "forward", lambda self, *a: (used.append(self.tile), real(self, *a))[1])
        single = torch.cat([fused(x[i : i + 1]) for i in range(4)])
        assert used == [] and all(len(m.winograd) == 0 for m in layers)  # one photo: no kernel made
        out = fused(x)
        assert used == [4] * 13 and all(sorted(m.winograd) == ["4"] and m.folded_weight is not None for m in layers)
        used.clear()
        pairs = torch.cat([fused(x[:2]), fused(x[2:])])
        assert used == [2] * 26
        assert all(sorted(m.winograd) == ["2", "4"] and m.folded_weight is None for m in layers)
    _close(out, ref, 1e-4)
    _close(pairs, out, 1e-5)
    _close(single, out, 1e-5)


def test_an_empty_batch_gives_an_empty_result():
    backbone = _init(ResNetBackbone(18), seed=10)
    for plan in (((1, 2), (4, 4)), ((2, 2),)):  # without a direct convolution, and with one
        fused = FusedResNet(backbone, (32, 32), chunk=4, winograd=[plan] * 13)
        with torch.inference_mode():
            assert fused(torch.rand(0, 3, 32, 32)).shape == (0, 512, 1, 1)


def test_one_tile_for_every_batch_size_needs_no_direct_convolution():
    backbone = _init(ResNetBackbone(18), seed=9)
    plans = [()] * 4 + [((1, 2),)] * 9  # layer1 direct, the rest always F(2x2, 3x3)
    fused = FusedResNet(backbone, (32, 32), chunk=2, winograd=plans)
    assert fused.winograd == tuple(check_tile_plan(p) for p in plans)
    assert sum(isinstance(m, WinogradConv) for m in fused.modules()) == 9
    assert not any(isinstance(m, ConvByBatchSize) for m in fused.modules())
    with pytest.raises(ValueError, match="13 3x3"):
        FusedResNet(backbone, (32, 32), winograd=plans[:-1])
    with pytest.raises(ValueError, match="float32"):
        FusedResNet(backbone, (32, 32), dtype=torch.bfloat16, winograd=plans)
