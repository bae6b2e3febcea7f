"""The inference form of the network (wbcap.model.fused): folded BatchNorm, fused oneDNN
convolutions, per-part precision. Equivalence with the module-by-module network, batch-size
stability, and the fast mode's error bounds on the official-key deterministic checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from net_helpers import close as _close
from net_helpers import deterministic as _init
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from wbcap.model.fused import FusedConv, FusedConvStack, FusedResNet, bf16_supported, fold_batchnorm
from wbcap.model.inference import optimize_for_inference
from wbcap.model.resnet import ResNetBackbone

PACKED = [True, False]


def _bn(ch: int, g: torch.Generator) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(ch).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(ch, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(ch, generator=g) * 0.1)
        bn.running_mean.copy_(torch.randn(ch, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(ch, generator=g) + 0.5)
    return bn


def test_fold_batchnorm_formula():
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, bias=True)
    bn = _bn(4, g)
    w, b = fold_batchnorm(conv.weight, conv.bias, bn)
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(w, conv.weight * s[:, None, None, None])
    torch.testing.assert_close(b, (conv.bias - bn.running_mean) * s + bn.bias)
    # folded straight into channels_last (what FusedConv packs from): torch's values to the bit
    for transposed, layer in ((False, nn.Conv2d(16, 8, 3)), (True, nn.ConvTranspose2d(16, 8, 4))):
        bn = _bn(8, g)
        want_w, want_b = fuse_conv_bn_weights(layer.weight, layer.bias, bn.running_mean, bn.running_var, bn.eps,
                                              bn.weight, bn.bias, transpose=transposed)
        w, b = fold_batchnorm(layer.weight, layer.bias, bn, transposed, torch.channels_last)
        assert w.is_contiguous(memory_format=torch.channels_last) and not w.requires_grad
        assert torch.equal(w, want_w) and torch.equal(b, want_b), transposed


@pytest.mark.parametrize("packed", PACKED)
@pytest.mark.parametrize("stride,kernel,pad", [(1, 3, 1), (2, 3, 1), (1, 1, 0), (2, 7, 3)])
def test_fused_conv_equals_conv_bn_relu(packed, stride, kernel, pad):
    g = torch.Generator().manual_seed(stride * 10 + kernel)
    conv = nn.Conv2d(16, 32, kernel, stride=stride, padding=pad, bias=False)
    seq = _init(nn.Sequential(conv, _bn(32, g), nn.ReLU()))
    x = torch.randn(3, 16, 20, 18, generator=g)
    with torch.inference_mode():
        ref = seq(x)
        fused = FusedConv(seq[0], seq[1], True, torch.float32, [3, 16, 20, 18], packed)
        out = fused(x.contiguous(memory_format=torch.channels_last))
        # the residual form: relu(bn(conv(x)) + r)
        r = torch.randn(ref.shape, generator=g)
        ref_res = torch.relu(seq[1](seq[0](x)) + r)
        out_res = fused(x.contiguous(memory_format=torch.channels_last), r.contiguous(memory_format=torch.channels_last))
    assert out.shape == ref.shape == tuple(fused.output_size([3, 16, 20, 18]))
    _close(out, ref, 1e-5)
    _close(out_res, ref_res, 1e-5)
    assert (out >= 0).all() and (out == 0).any()  # the ReLU really ran


@pytest.mark.parametrize("packed", PACKED)
def test_fused_deconv_stack_equals_modules(packed):
    from wbcap.model.layers import make_deconv_layers

    seq = _init(make_deconv_layers([40, 24, 24]))
    x = torch.randn(2, 40, 4, 3, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = seq(x)
        out = FusedConvStack(seq, [2, 40, 4, 3], packed=packed)(x)
    assert out.shape == ref.shape == (2, 24, 16, 12)
    _close(out, ref, 1e-5)


@pytest.mark.skipif(not bf16_supported(), reason="no bfloat16 on this CPU")
def test_conv_stack_out_dtype_keeps_the_compute_dtype():
    """out_dtype=bfloat16: the same values as the float32 result (which is their widening), with
    no float32 copy; out_dtype=None still returns the input's dtype."""
    from wbcap.model.layers import make_deconv_layers

    seq = _init(make_deconv_layers([40, 24, 24]))
    x = torch.randn(2, 40, 4, 3, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        stack = FusedConvStack(seq, [2, 40, 4, 3], dtype=torch.bfloat16)
        widened = stack(x)
        stack.out_dtype = torch.bfloat16
        kept = stack(x)
    assert widened.dtype == torch.float32 and kept.dtype == torch.bfloat16
    assert torch.equal(kept.float(), widened)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_joint_features_of_half_precision_maps_are_float32_grid_samples(memory_format):
    """A bfloat16 map's features at joint positions (inside, on the border, between the last
    cell and the edge, outside, NaN) are grid_sample's of its float32 widening, in float32."""
    from wbcap.model.layers import sample_joint_features

    g = torch.Generator().manual_seed(4)
    feat = torch.randn(3, 16, 8, 6, generator=g).to(torch.bfloat16).contiguous(memory_format=memory_format)
    xy = torch.rand(3, 7, 2, generator=g) * torch.tensor([5.0, 7.0])
    xy[0, :5] = torch.tensor([[5.0, 7.0], [0.0, 0.0], [-0.3, 3.2], [5.4, 7.9], [9.0, -4.0]])
    xy[1, 0] = float("nan")
    widened = feat.float()
    ref = torch.nn.functional.grid_sample(
        widened, torch.stack((xy[..., 0] / 5 * 2 - 1, xy[..., 1] / 7 * 2 - 1), -1)[:, :, None],
        align_corners=True)[..., 0].permute(0, 2, 1)
    out = sample_joint_features(feat, xy)
    assert out.dtype == torch.float32 and out.shape == (3, 7, 16)
    torch.testing.assert_close(out[1, 1:], ref[1, 1:], rtol=0, atol=2e-6)
    torch.testing.assert_close(out[[0, 2]], ref[[0, 2]], rtol=0, atol=2e-6)
    assert (out[0, 4] == 0).all() and (out[1, 0] == 0).all()  # outside the map, and NaN: zeros
    assert (out[0, 2] != 0).all()  # partly outside: the inside neighbours count
    torch.testing.assert_close(sample_joint_features(widened, xy)[[0, 2]], out[[0, 2]], rtol=0, atol=2e-6)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_conv_at_points_samples_the_convolution_it_computes_only_there(packed, memory_format):
    """ConvAtPoints.sample == sample_joint_features(conv(feat), points) for points inside, on the
    border, between the last cell and the edge, outside and NaN (float32, 1e-5 of the largest
    value; bfloat16 within bfloat16 rounding of that), forward == the convolution; the body
    rotation network of a converted network holds it for its hand convolutions; other
    convolutions are refused."""
    from wbcap.model.fused import ConvAtPoints
    from wbcap.model.layers import make_conv_layers, sample_conv_features, sample_joint_features

    g = torch.Generator().manual_seed(7)
    seq = make_conv_layers([32, 24], kernel=1, padding=0).eval()
    _init(seq, 8)
    feat = torch.randn(3, 32, 8, 6, generator=g).contiguous(memory_format=memory_format)
    xy = torch.rand(3, 5, 2, generator=g) * torch.tensor([5.0, 7.0])
    xy[0] = torch.tensor([[5.0, 7.0], [0.0, 0.0], [-0.3, 3.2], [5.4, 7.9], [9.0, -4.0]])
    xy[1, 0] = float("nan")
    with torch.inference_mode():
        ref = sample_joint_features(seq(feat), xy)
        full = seq(feat)
        m = ConvAtPoints(seq, torch.float32, packed)
        out = m.sample(feat, xy)
        assert out.dtype == torch.float32 and out.shape == ref.shape == (3, 5, 24)
        ref[1, 0] = 0  # (a NaN point: grid_sample's NaN, zeros here as in the half-precision path)
        scale = ref.abs().max().item()
        assert (out - ref).abs().max().item() <= 1e-5 * scale
        assert (out[0, 4] == 0).all() and (out[1, 0] == 0).all() and (out[0, 2] != 0).any()
        assert torch.equal(sample_conv_features(m, feat, xy), out)
        assert torch.equal(sample_conv_features(seq, feat[[0, 2]], xy[[0, 2]]), ref[[0, 2]])  # (no sample: the whole map)
        assert (m(feat) - full).abs().max().item() <= 1e-5 * full.abs().max().item()
        if bf16_supported():
            half = ConvAtPoints(seq, torch.bfloat16, packed).sample(feat, xy)
            assert 1e-6 * scale < (half - ref).abs().max().item() <= 2e-2 * scale and (half[1, 0] == 0).all()
        # a non-finite pixel on the edge: the point outside beside it still reads zeros (as
        # grid_sample's zero padding), in float32 and in the half-precision sampling alike
        bad = feat.clone()
        bad[0, :, 0, 5] = float("inf")
        edge = torch.tensor([[[9.0, -4.0], [7.0, -3.0]]]).expand(3, 2, 2)  # (outside: clamped onto that pixel)
        assert torch.equal(m.sample(bad, edge)[0], torch.zeros(2, 24))
        assert torch.equal(sample_joint_features(bad.to(torch.bfloat16), edge)[0], torch.zeros(2, 32))
    with pytest.raises(ValueError, match="1x1"):
        ConvAtPoints(make_conv_layers([32, 24], kernel=3, padding=1))


def test_converted_network_computes_its_hand_convolutions_at_the_joints(small_config):
    from wbcap.model.fused import ConvAtPoints
    from wbcap.testing.checkpoints import random_network

    net = optimize_for_inference(random_network(small_config, seed=3), "cpu", "exact")
    rot = net.body_rotation_net
    assert isinstance(rot.lhand_conv, ConvAtPoints) and isinstance(rot.rhand_conv, ConvAtPoints)
    calls = []
    real = ConvAtPoints.sample
    try:
        ConvAtPoints.sample = lambda self, f, xy: calls.append(tuple(xy.shape)) or real(self, f, xy)
        with torch.inference_mode():
            net(torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(2)))
    finally:
        ConvAtPoints.sample = real
    assert calls == [(2, 4, 2), (2, 4, 2)]  # the four MCP joints of each hand


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_linear_is_the_product_in_its_dtype(dtype):
    """PackedLinear: x @ W.T computed in ``dtype`` (bfloat16: within its rounding of the float32
    product; float32: to float32 rounding), float32 out, for each number of rows, packings kept
    per rows and dropped by .to()."""
    from wbcap.model.fused import PackedLinear

    if dtype == torch.bfloat16 and not bf16_supported():
        pytest.skip("no bfloat16 on this CPU")
    g = torch.Generator().manual_seed(6)
    weight = torch.randn(300, 70, generator=g) * 0.1
    lin = PackedLinear(weight, dtype)
    for rows in (1, 2, 5, 1):
        x = torch.randn(rows, 70, generator=g)
        y = lin(x)
        ref = x @ weight.T
        assert y.dtype == torch.float32 and y.shape == (rows, 300)
        if dtype == torch.float32:
            torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
        else:
            rounded = (x.bfloat16().float() @ weight.bfloat16().float().T).bfloat16().float()
            torch.testing.assert_close(y, rounded, rtol=1e-2, atol=1e-3)
            assert 0 < (y - ref).abs().max() < 0.05  # really bfloat16, and close
    if torch.backends.mkldnn.is_available():
        assert sorted(lin._packs._by_rows) == [1, 2, 5]
        for rows in (3, 8, 16, 4):  # (a copy per batch size would be one each: 7)
            lin(torch.randn(rows, 70, generator=g))
        assert 1 <= lin._packs.copies <= 2, lin._packs.copies  # one layout for one row, one for more
    lin.to(torch.float64)
    assert lin._packs._by_rows == {}


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_fast_regressor_computes_pose_correctives_in_bfloat16_exact_in_float32(small_config, body_layer):
    """optimize_regressor_body: exact sets a float32 oneDNN pose product on the layer's own
    posedirs (no copy), within float32 rounding of smplx's matmul (10 um); fast on a bfloat16 CPU a
    bfloat16 one, whose mesh is within 0.5 mm of the float32 one (elsewhere fast = exact); the
    shared SMPL-X layer is untouched."""
    from wbcap.model.fused import PackedLinear
    from wbcap.model.inference import optimize_regressor_body
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.testing.checkpoints import random_network

    reg = WholeBodyRegressor(random_network(small_config, seed=4), body_layer).eval()
    x = torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        smplx_like = reg(x)  # pose_product None: the layer's torch.matmul, as smplx
        optimize_regressor_body(reg, "cpu", "exact")
        exact_product = reg.pose_product
        assert isinstance(exact_product, PackedLinear) and exact_product.weight.dtype == torch.float32
        assert exact_product.weight.data_ptr() == body_layer.posedirs.data_ptr()  # in place, not copied
        calls = []
        hook = exact_product.register_forward_hook(lambda m, i, o: calls.append(tuple(o.shape)))
        ref = reg(x)
        hook.remove()
        assert calls == [(2, body_layer.posedirs.shape[1])]  # (the regressor's mesh went through it)
        plain = body_layer(ref.params.smplx)  # the layer itself still smplx's product
        optimize_regressor_body(reg, "cpu", "fast")
        out = reg(x)
    exact_err = (ref.vertices - smplx_like.vertices).norm(dim=-1).max()
    assert exact_err < 1e-5, f"{exact_err * 1000:.6f} mm"  # (float32 rounding: 1.9e-6 m measured)
    torch.testing.assert_close(plain.vertices, smplx_like.vertices, atol=0, rtol=0)
    if not bf16_supported():
        assert reg.pose_product.weight.dtype == torch.float32
        torch.testing.assert_close(out.vertices, ref.vertices, atol=0, rtol=0)
        return
    assert isinstance(reg.pose_product, PackedLinear) and reg.pose_product.weight.dtype == torch.bfloat16
    err = (out.vertices - ref.vertices).norm(dim=-1).max()
    assert 0 < err < 5e-4, f"{err * 1000:.3f} mm"


def test_pose_product_off_the_cpu_or_without_onednn_is_smplxs_and_survives_a_dtype_move(small_config, body_layer,
                                                                                           monkeypatch):
    """Without oneDNN (and on GPUs) the regressor keeps smplx's matmul (None); a oneDNN product
    moved to float64 afterwards runs F.linear (oneDNN has no float64 products) and still equals
    the float64 matmul."""
    from wbcap.model.fused import PackedLinear
    from wbcap.model.inference import optimize_regressor_body
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.testing.checkpoints import random_network

    reg = WholeBodyRegressor(random_network(small_config, seed=4), body_layer).eval()
    with monkeypatch.context() as m:
        m.setattr(torch.backends.mkldnn, "is_available", lambda: False)
        optimize_regressor_body(reg, "cpu", "exact")
        assert reg.pose_product is None
    lin = PackedLinear(torch.randn(40, 30, generator=torch.Generator().manual_seed(1)), torch.float32, pack=False)
    x = torch.randn(3, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lin.double()
    with torch.inference_mode():
        y = lin(x)
    assert y.dtype == torch.float32  # (out_dtype)
    torch.testing.assert_close(y, (x @ lin.weight.t()).float())


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])
@pytest.mark.parametrize("packed", PACKED)
def test_fused_resnet_equals_backbone_in_chunks(depth, packed):
    backbone = _init(ResNetBackbone(depth), seed=depth)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = backbone(x)
        fused = FusedResNet(backbone, (64, 64), packed=packed, chunk=2)  # 5 images -> chunks 2, 2, 1
        out = fused(x)
        one_by_one = torch.cat([fused(x[i : i + 1]) for i in range(5)])
    assert out.shape == ref.shape == (5, backbone.feat_dim, 2, 2)
    assert out.dtype == torch.float32
    _close(out, ref, 1e-4)
    _close(one_by_one, out, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_residual_add_written_into_the_residual_gives_the_same_result(dtype):
    """inplace=True: oneDNN's in-place sum writes the result into a channels_last residual of the
    compute dtype (no fresh output); other residuals are left alone; results are identical."""
    if dtype == torch.bfloat16 and not bf16_supported():
        pytest.skip("no bfloat16 on this CPU")
    g = torch.Generator().manual_seed(2)
    conv = _init(nn.Conv2d(16, 32, 1, bias=False), seed=2)
    fused = FusedConv(conv, _bn(32, g), True, dtype, [2, 16, 9, 7], True)
    x = torch.randn(2, 16, 9, 7, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    r = torch.randn(2, 32, 9, 7, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = fused(x, r)
        kept = r.clone()
        out = fused(x, kept, inplace=True)
        assert torch.equal(out, ref) and out.data_ptr() == kept.data_ptr()
        nchw = r.contiguous()
        out = fused(x, nchw, inplace=True)  # not in the layout the in-place primitive writes
        assert torch.equal(out, ref) and torch.equal(nchw, r) and out.data_ptr() != nchw.data_ptr()
    # a residual that is the input itself is not overwritten while the convolution reads it
    square = FusedConv(_init(nn.Conv2d(16, 16, 1, bias=False), seed=3), None, True, dtype, [2, 16, 9, 7], True)
    with torch.inference_mode():
        ref = square(x, x.clone())
        assert torch.equal(square(x, x, inplace=True), ref)


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])
def test_fused_resnet_leaves_its_input_alone(depth):
    """The blocks write their last convolution into the block's input (in place, really): never
    the caller's, in one call or in chunks (views of the caller's tensor)."""
    backbone = _init(ResNetBackbone(depth), seed=depth)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)
    before = x.clone()
    with torch.inference_mode():
        for chunk in (4, 1):
            fused = FusedResNet(backbone, (32, 32), chunk=chunk)
            fused(x)
            assert torch.equal(x, before)
        block = fused.blocks[1]  # no downsample: the shortcut is the block's input
        h = torch.rand(1, block.convs[-1].out_channels, 8, 8).contiguous(memory_format=torch.channels_last)
        assert block(h).data_ptr() == h.data_ptr()


@pytest.mark.skipif(not bf16_supported(), reason="no bfloat16 on this CPU")
def test_fused_resnet_bf16_is_close_not_equal():
    backbone = _init(ResNetBackbone(18), seed=4)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = backbone(x)
        out = FusedResNet(backbone, (64, 64), dtype=torch.bfloat16)(x)
    assert out.dtype == torch.float32
    err = ((out - ref).abs().max() / ref.abs().max()).item()
    assert 1e-4 < err < 5e-2  # bfloat16 arithmetic really ran, and stayed close


@pytest.mark.slow  # the fast loop has the same check on the MICRO network (test_strategy.py, every candidate)
def test_optimize_small_network_matches_reference(small_config):
    from wbcap.testing.checkpoints import random_network

    ref = random_network(small_config, seed=3)
    net = optimize_for_inference(random_network(small_config, seed=3), "cpu", "exact")
    assert not any(isinstance(m, (nn.BatchNorm2d, ResNetBackbone)) for m in net.modules())
    x = torch.rand(3, 3, 512, 384, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        a, b = ref(x), net(x)
    for name, value in a.smplx.items():
        torch.testing.assert_close(b.smplx[name], value, rtol=1e-4, atol=1e-4, msg=name)
    for name in ("joint_img", "lhand_bbox", "rhand_bbox", "face_bbox"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=1e-4, atol=1e-4, msg=name)


def test_optimize_rejects_unknown_precision_and_reconversion(small_config, tmp_path):
    from wbcap.testing.checkpoints import random_network

    net = random_network(small_config)  # one network: a refused conversion leaves it convertible
    with pytest.raises(ValueError, match="precision"):
        optimize_for_inference(net, "cpu", "int4")
    with pytest.raises(ValueError, match="plan parts"):
        optimize_for_inference(net, "cpu", "fast", plan={"tail": torch.float32})
    assert optimize_for_inference(net, "cpu", "exact") is net  # in place
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert optimize_for_inference(net, "cpu", "exact") is net  # already converted: unchanged
    with pytest.raises(ValueError, match="already converted"):
        optimize_for_inference(net, "cpu", "fast")
    # it can no longer be trained or saved, and says so (both went on silently: a user trial)
    from wbcap.model.checkpoint import save_checkpoint

    assert net.eval() is net and not net.training
    for attempt in (net.train, net.state_dict, lambda: save_checkpoint(tmp_path / "x.pth.tar", net)):
        with pytest.raises(RuntimeError, match=r"converted for 'exact' inference .* load the checkpoint again"):
            attempt()
    assert not net.training


def test_fast_falls_back_to_float32_without_bf16_instructions(small_config, monkeypatch, caplog):
    import wbcap.model.inference as inference
    from wbcap.testing.checkpoints import random_network

    monkeypatch.setattr(inference, "bf16_supported", lambda: False)
    net = optimize_for_inference(random_network(small_config), "cpu", "fast")
    assert net.backbone.dtype == torch.float32 and net.box_net.deconv.dtype == torch.float32
    assert net.box_net.deconv.out_dtype == torch.float32
    assert "no bfloat16 instructions" in caplog.text


@pytest.mark.skipif(not bf16_supported(), reason="no bfloat16 on this CPU")
def test_fast_box_network_keeps_its_features_in_bfloat16(small_config):
    """The box network's upsampled maps stay bfloat16 between its layers (no float32 round
    trip); its centre heatmaps and sampled features, which the float32 heads read, are float32."""
    from wbcap.testing.checkpoints import random_network

    net = optimize_for_inference(random_network(small_config), "cpu", "fast")
    box = net.box_net
    assert box.deconv.dtype == box.deconv.out_dtype == torch.bfloat16
    assert box.bbox_center.out_dtype == torch.float32
    with torch.inference_mode():
        out = net(torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(2)))
    assert out.lhand_bbox.dtype == torch.float32 and torch.isfinite(out.lhand_bbox).all()


# -- the released architecture, official key layout, deterministic weights ----------------------


def _pipeline(ckpt, body_layer, precision: str, optimize: bool = True, batch_size: int = 8):
    from wbcap.model.checkpoint import load_network
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.pipeline import Pipeline

    net = load_network(ckpt, "cpu")
    return Pipeline(WholeBodyRegressor(net, body_layer), torch.device("cpu"), batch_size=batch_size,
                    precision=precision, optimize=optimize)


@pytest.fixture(scope="module")
def fixed_input():
    """One image and four person boxes (xywh): the bundled example image, whole and in parts."""
    from wbcap.io.images import load_image
    from wbcap.paths import example_image_path

    img = load_image(example_image_path())
    h, w = img.shape[:2]
    boxes = [(0, 0, w, h), (w * 0.1, h * 0.05, w * 0.5, h * 0.8), (w * 0.4, h * 0.2, w * 0.55, h * 0.7),
             (w * 0.2, h * 0.3, w * 0.3, h * 0.4)]
    return img, boxes


def _arrays(people) -> dict[str, np.ndarray]:
    keys = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "betas", "expression", "transl")
    out = {k: np.stack([p.params[k][0].numpy() for p in people]) for k in keys}
    out["vertices"] = np.stack([p.vertices for p in people])
    corners = lambda b: np.concatenate((b[:2], b[:2] + b[2:]))  # (x, y, w, h) -> corners
    out["boxes"] = np.stack([np.stack([corners(b) for b in (p.lhand_box, p.rhand_box, p.face_box)]) for p in people])
    return out


@pytest.fixture(scope="module")
def exact_people(official_ckpt_raw, body_layer, fixed_input):
    img, boxes = fixed_input
    pipe = _pipeline(official_ckpt_raw, body_layer, "exact", batch_size=len(boxes))
    return _arrays(pipe(img, boxes)), pipe


@pytest.fixture(scope="module")
def module_by_module_people(official_ckpt_raw, body_layer, fixed_input):
    """The unconverted (module-by-module) full-size network's results on the fixed input."""
    img, boxes = fixed_input
    return _arrays(_pipeline(official_ckpt_raw, body_layer, "exact", optimize=False)(img, boxes))


@pytest.mark.slow  # full-size network
def test_exact_mode_equals_module_by_module_network(exact_people, module_by_module_people):
    ref = module_by_module_people
    exact, _ = exact_people
    for k in ref:
        np.testing.assert_allclose(exact[k], ref[k], rtol=0, atol=1e-4, err_msg=k)


@pytest.mark.slow  # full-size network
def test_boxes_given_to_the_pipeline_follow_the_rule_of_every_box_a_user_gives(fixed_input, exact_people):
    """pipe(image, boxes=...) regressed a box of width inf or 1e30 (which `wbcap image --bbox`
    refuses), called a NaN box "outside the image" and a 3-number box a bare unpacking error
    (a user trial). Each is one InputError line naming boxes[i] and the rule, before any work;
    numpy numbers and Detections are taken as before."""
    from wbcap.detect.base import Detection
    from wbcap.detect.boxes import MAX_BOX_PIXELS
    from wbcap.errors import InputError

    img, boxes = fixed_input
    pipe = exact_people[1]
    rule = f"every number must be finite and within {MAX_BOX_PIXELS:,} pixels"
    for box, said in (((0, 0, np.inf, 100), f"boxes[1]: {rule}"), ((0, 0, 1e30, 1e30), f"boxes[1]: {rule}"),
                      ((np.nan, 0, 100, 100), f"boxes[1]: {rule}"), ((1, 2, 3), "boxes[1] must be 4 numbers [x, y, w, h]"),
                      ((0, 0, -5, 10), "boxes[1] width and height must be > 0"),
                      (Detection((0.0, 0.0, 10.0, 10.0), float("nan")), "boxes[1] score must be a finite number")):
        with pytest.raises(InputError) as err:
            pipe(img, boxes=[boxes[0], box])
        fix = ("; give its score as a finite number (1.0 for a box you are sure of)" if "score" in said
               else "; pass (x, y, w, h) in the image's pixels")
        assert str(err.value).startswith(said) and str(err.value).endswith(fix), str(err.value)
    with pytest.raises(InputError, match=r"^cam7/frame12.png: boxes\[1\] width and height must be > 0"):
        pipe(img, boxes=[boxes[0], (0, 0, -5, 10)], source="cam7/frame12.png")  # (the caller's name: a break-it trial)
    people = pipe(img, boxes=[np.asarray(boxes[1], np.float32), tuple(np.float32(v) for v in boxes[1]),
                              Detection(tuple(float(v) for v in boxes[1]), 0.5)])
    assert len(people) == 3
    for other in people[1:]:  # (the same box: equal within exact's batch invariance)
        np.testing.assert_allclose(other.vertices, people[0].vertices, atol=1e-4)


@pytest.mark.slow  # full-size network (the fast loop checks batch invariance on MICRO: test_strategy.py, every candidate)
def test_exact_mode_is_stable_across_batch_sizes(fixed_input, exact_people):
    img, boxes = fixed_input
    batched, pipe = exact_people
    for bs in (1, 3):
        pipe.batch_size = bs
        other = _arrays(pipe(img, boxes))
        for k in batched:
            np.testing.assert_allclose(other[k], batched[k], rtol=0, atol=1e-5, err_msg=f"{k} at batch size {bs}")


@pytest.mark.slow  # full-size network
def test_exact_mode_with_winograd_convolutions_equals_module_by_module(official_ckpt_raw, body_layer, fixed_input,
                                                                       module_by_module_people, monkeypatch):
    """Every 3x3 stride-1 convolution of the float32 ResNets as a Winograd one (F(2x2, 3x3) for
    calls of one to three images, F(4x4, 3x3) from four on): still within 1e-4 of the
    module-by-module network, and within 1e-5 across batch sizes (which run different tiles)."""
    import dataclasses

    from wbcap.model import inference
    from wbcap.model.fused import ConvByBatchSize

    real = inference.choose_cpu_strategy

    def with_winograd(parts, dtypes, request=None, **kwargs):
        chosen, _ = real(parts, dtypes, request, **kwargs)
        plans = {n: tuple(((1, 2), (4, 4)) for _ in p.winograd_convs()) for n, p in parts.items()}
        return dataclasses.replace(chosen, parts={n: dataclasses.replace(c, winograd=plans[n])
                                                  for n, c in chosen.parts.items()}), {}

    monkeypatch.setattr(inference, "choose_cpu_strategy", with_winograd)
    img, boxes = fixed_input
    pipe = _pipeline(official_ckpt_raw, body_layer, "exact", batch_size=len(boxes))
    assert sum(isinstance(m, ConvByBatchSize) for m in pipe.regressor.net.modules()) == 13 * 3
    batched = _arrays(pipe(img, boxes))
    ref = module_by_module_people
    for k in ref:
        np.testing.assert_allclose(batched[k], ref[k], rtol=0, atol=1e-4, err_msg=k)
    pipe.batch_size = 1
    single = _arrays(pipe(img, boxes))
    for k in batched:
        np.testing.assert_allclose(single[k], batched[k], rtol=0, atol=1e-5, err_msg=f"{k} at batch size 1")


@pytest.mark.slow  # full-size network
@pytest.mark.parametrize("form", ["fused", "int8", "graph"])
def test_fast_mode_within_1cm_and_half_a_pixel_of_exact(official_ckpt_raw, body_layer, fixed_input, exact_people,
                                                        monkeypatch, form):
    """The fast mode with its ResNets in bfloat16 (fused, or compiled by oneDNN Graph) or, where
    the CPU strategy chose it, its ResNets and box network in int8 (wbcap.model.int8): the same
    bounds, on the same input."""
    from wbcap.model.graph_resnet import GraphResNet, graph_usable
    from wbcap.model.int8 import Int8DeconvStack, Int8ResNet, int8_usable

    if form == "int8" and not int8_usable():
        pytest.skip("no oneDNN int8 convolutions in this torch build")
    if form in ("fused", "graph") and not bf16_supported():
        pytest.skip("no bfloat16 on this CPU: fast's ResNets are exact's float32 ones")
    if form == "graph" and not graph_usable():
        pytest.skip("this torch has no TorchScript oneDNN Graph fuser")
    img, boxes = fixed_input
    exact, _ = exact_people
    monkeypatch.setenv("WBCAP_CPU_STRATEGY", form)
    fast_pipe = _pipeline(official_ckpt_raw, body_layer, "fast", batch_size=len(boxes))
    net = fast_pipe.regressor.net
    backbones = [net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone]
    if form == "int8":
        assert all(isinstance(b, Int8ResNet) for b in backbones) and isinstance(net.box_net.deconv, Int8DeconvStack)
    elif form == "graph":
        assert all(isinstance(b, GraphResNet) and b.dtype == torch.bfloat16 for b in backbones)
    else:
        assert all(isinstance(b, FusedResNet) and b.dtype == torch.bfloat16 for b in backbones)
    fast = _arrays(fast_pipe(img, boxes))
    vertex_dist = np.linalg.norm(fast["vertices"] - exact["vertices"], axis=-1).max()
    box_dist = np.linalg.norm((fast["boxes"] - exact["boxes"]).reshape(-1, 2), axis=-1).max()
    assert vertex_dist < 0.01, f"fast mode ({form}) moved a vertex by {vertex_dist * 1000:.2f} mm"
    assert box_dist < 0.5, f"fast mode ({form}) moved a box corner by {box_dist:.3f} px"
    # ... and it is a different computation (bfloat16 / int8 really ran)
    assert np.abs(fast["body_pose"] - exact["body_pose"]).max() > 1e-6


def test_fused_resnet_runs_a_measured_chunk_plan_and_stays_batch_invariant(monkeypatch):
    from wbcap.model.fused import ChunkPlan

    backbone = _init(ResNetBackbone(18), seed=6)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    plan = ChunkPlan(((1, 1.0), (2, 0.4), (4, 0.45)))  # calls of 2 are the cheapest per image
    sizes: list[int] = []
    with torch.inference_mode():
        ref = backbone(x)
        for packed in PACKED:
            fused = FusedResNet(backbone, (64, 64), packed=packed, chunk=plan)
            assert fused.chunk == 4 and fused.chunks is plan  # packed for 4, called with 2
            real_run = fused._run
            monkeypatch.setattr(fused, "_run", lambda part, run=real_run: (sizes.append(part.shape[0]), run(part))[1])
            out = fused(x)
            one_by_one = torch.cat([fused(x[i : i + 1]) for i in range(5)])
            _close(out, ref, 1e-4)
            _close(one_by_one, out, 1e-5)
    assert sizes[:3] == [2, 2, 1]  # 5 images: 2 + 2 + 1 (predicted 4 * 0.4 + 1.0 < 4 * 0.45 + 1.0 for 4 + 1)


def _convs(module: nn.Module) -> list[FusedConv]:
    return [m for m in module.modules() if isinstance(m, FusedConv)]


def test_a_resnet_built_for_a_few_calls_packs_only_the_sizes_it_runs():
    """first_call (a build for a few calls, no known packings): the weights are packed for that
    many images only, nothing is packed or compared for the other sizes at build, a call of
    another size packs for it then, and the results equal the build that packs every size."""
    from wbcap.model.fused import ChunkPlan

    backbone = _init(ResNetBackbone(18), seed=7)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    plan = ChunkPlan(((1, 1.0), (2, 0.4), (4, 0.45)))
    with torch.inference_mode():
        eager = FusedResNet(backbone, (64, 64), chunk=plan)
        few = FusedResNet(backbone, (64, 64), chunk=plan, first_call=1)
        convs = _convs(few)
        assert few.chunk == 1 and few.alternates is None and eager.alternates is not None
        assert all(c.input_size[0] == 1 and not (c._by_batch or c._same or c._lazy) for c in convs)
        _close(few(x[:1]), eager(x[:1]), 1e-5)
        assert all(not (c._by_batch or c._same) for c in convs)  # (batch 1: the main packing)
        _close(few(x), eager(x), 1e-5)  # calls of 2, 2, 1
        assert all(set(c._by_batch) | c._same == {2} for c in convs)
        _close(few(x), backbone(x), 1e-4)
    with pytest.raises(ValueError, match="no alternates"):
        FusedResNet(backbone, (64, 64), chunk=plan, alternates={}, first_call=1)


@pytest.mark.parametrize("subpixel", [False, True])
def test_a_deconvolution_stack_built_for_a_few_calls_packs_for_its_first_call(subpixel):
    """The box network's form built for a few calls (TunedPart.build with few_calls, e.g. a fast
    int8 choice fallen back to fused): packed for one crop's call only, the other sizes on first
    use; the hand ResNet's first call has two images (per_crop 2), so it is packed for 2; with
    known packings (the strategy cache's), as many calls as before. Results equal the modules'."""
    from wbcap.model.fused import ChunkPlan, TunedPart
    from wbcap.model.layers import make_deconv_layers

    seq = _init(make_deconv_layers([40, 24, 24])).eval()
    plan = ChunkPlan(((1, 1.0), (2, 0.4), (4, 0.45)))
    part = TunedPart("box_net", seq, (40, 5, 4), 1, "deconv")
    x = torch.rand(3, 40, 5, 4, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        few = part.build(torch.float32, True, plan, [subpixel, subpixel], few_calls=True)
        assert few.chunk == 1 and few.alternates is None
        assert all(c.input_size[0] == 1 and not (c._by_batch or c._same) for c in _convs(few))
        _close(few(x), seq(x), 1e-4)  # calls of 2 and 1
        assert all(set(c._by_batch) | c._same == {2} for c in _convs(few))
        known = part.build(torch.float32, True, plan, [subpixel, subpixel], alternates={}, few_calls=True)
        assert known.chunk == 4 and known.alternates == {}  # (the strategy cache's: as for many calls)
        _close(known(x), seq(x), 1e-4)
    hands = TunedPart("hand_backbone", _init(ResNetBackbone(18), seed=8), (3, 32, 32), 2, "resnet18")
    with torch.inference_mode():
        assert hands.build(torch.float32, True, plan, few_calls=True).chunk == 2
        assert hands.build(torch.float32, False, plan, few_calls=True).alternates == {}  # (unpacked: nothing to pack)
