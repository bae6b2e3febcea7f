"""cuDNN's fused convolution + bias (+ residual add) + ReLU for the inference form on CUDA
(wbcap.model.fused.FusedConv, off by default: set_cudnn_fusion): the call it makes, its fallback
where cuDNN has no fused kernel, and on a GPU (gpu-marked) that it runs and equals the unfused
steps."""

from __future__ import annotations

import logging

import pytest
import torch
from net_helpers import close as _close
from net_helpers import deterministic as _init
from torch import nn
from torch.nn import functional as F

from wbcap.model import fused as fused_mod
from wbcap.model.fused import FusedConv, FusedResNet, set_cudnn_fusion
from wbcap.model.resnet import ResNetBackbone

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _conv(seed: int, cin: int = 8, cout: int = 8, kernel: int = 3, stride: int = 1, relu: bool = True) -> FusedConv:
    conv = _init(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=True), seed=seed)
    fused = FusedConv(conv, None, relu, torch.float32, [2, cin, 9, 7], packed=False)
    set_cudnn_fusion(fused, True)
    return fused


def _cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _schema_reference(monkeypatch) -> list[str]:
    """Stand-ins with the semantics of torch's schemas, ``relu(conv(x, w) + alpha z + bias)``,
    recording which was called."""
    calls: list[str] = []

    def conv_relu(x, w, bias, stride, padding, dilation, groups):
        calls.append("relu")
        return F.conv2d(x, w, bias, stride, padding, dilation, groups).relu()

    def conv_add_relu(x, w, z, alpha, bias, stride, padding, dilation, groups):
        calls.append("add_relu")
        return (F.conv2d(x, w, bias, stride, padding, dilation, groups) + alpha * z).relu()

    monkeypatch.setattr(torch, "cudnn_convolution_relu", conv_relu)
    monkeypatch.setattr(torch, "cudnn_convolution_add_relu", conv_add_relu)
    return calls


def test_the_fused_call_gets_the_module_s_weight_bias_and_geometry(monkeypatch):
    """What _cudnn_fused hands cuDNN, checked against the unfused steps with stand-ins of the
    two ops (the real ones have CUDA kernels only: tested below on a GPU)."""
    calls = _schema_reference(monkeypatch)
    g = torch.Generator().manual_seed(0)
    for stride in (1, 2):
        conv = _conv(stride, stride=stride)
        x = _cl(torch.randn(2, 8, 9, 7, generator=g))
        with torch.inference_mode():
            want = conv(x)  # CPU: the unfused steps
            r = _cl(torch.randn_like(want))
            want_r = conv(x, r.clone())
            got, got_r = conv._cudnn_fused(x, None), conv._cudnn_fused(x, r)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(got_r, want_r, rtol=0, atol=1e-6)
        assert conv.cudnn_fused is True
    assert calls == ["relu", "add_relu"] * 2


def test_no_fused_kernel_turns_it_off_once_and_the_unfused_steps_run(caplog):
    """On CPU tensors the cuDNN ops have no kernel, as a GPU may lack a fused engine for a
    shape: the call returns None, the module stops trying (one DEBUG line), forward is unchanged."""
    conv = _conv(3)
    x = _cl(torch.randn(2, 8, 9, 7, generator=torch.Generator().manual_seed(1)))
    with caplog.at_level(logging.DEBUG, logger=fused_mod.__name__), torch.inference_mode():
        assert conv._cudnn_fused(x, None) is None
    assert conv.cudnn_fused is False
    assert sum("cuDNN's fused convolution is unavailable" in r.getMessage() for r in caplog.records) == 1
    # a residual of another dtype or shape (broadcast by the unfused add_) is never handed to the
    # fused call, nor is a transposed convolution
    conv.cudnn_fused = None
    with torch.inference_mode():
        assert conv._cudnn_fused(x, _cl(torch.zeros(2, 8, 9, 7, dtype=torch.bfloat16))) is None
        assert conv._cudnn_fused(x, torch.zeros(1, 8, 1, 1)) is None
        deconv = FusedConv(_init(nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1), seed=5), None, True, torch.float32,
                           [2, 8, 9, 7], packed=False)
        deconv.cudnn_fused = None  # (set by hand: set_cudnn_fusion never turns it on there)
        assert deconv._cudnn_fused(x, None) is None
    assert conv.cudnn_fused is None and deconv.cudnn_fused is None


def test_off_by_default_and_only_relu_convolutions_take_the_fused_call():
    """A ResNet-18: off until turned on; then the stem and both convolutions of each of 8 blocks
    (they end in ReLU: 17) try it, the 3 downsample convolutions keep F.conv2d + bias."""
    net = FusedResNet(_init(ResNetBackbone(18), seed=1), (32, 32), packed=False)
    convs = [m for m in net.modules() if isinstance(m, FusedConv)]
    assert len(convs) == 20 and all(m.cudnn_fused is False for m in convs)
    assert set_cudnn_fusion(net, True) == 17
    assert sorted(str(m.cudnn_fused) for m in convs) == ["False"] * 3 + ["None"] * 17
    assert set_cudnn_fusion(net, False) == 17
    assert all(m.cudnn_fused is False for m in convs)
    assert _conv(4, relu=False).cudnn_fused is False


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("depth", [18, 50])
def test_on_cuda_the_fused_resnet_runs_cudnn_s_fused_kernels_and_equals_the_unfused_steps(depth, dtype):
    from wbcap.model.device import no_tf32

    backbone = _init(ResNetBackbone(depth), seed=depth)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)).cuda()
    net = FusedResNet(backbone, (64, 64), dtype=dtype, packed=False).cuda()
    set_cudnn_fusion(net, True)
    with torch.inference_mode(), no_tf32():
        fused = net(x)
        ran = [m.cudnn_fused for m in net.modules() if isinstance(m, FusedConv) and m.relu]
        set_cudnn_fusion(net, False)
        unfused = net(x)
        ref = backbone.cuda()(x)
    assert all(ran), ran  # cuDNN had a fused kernel for every ReLU convolution
    if dtype == torch.float32:
        _close(fused, unfused, 1e-5)
        _close(fused, ref, 1e-4)
    else:  # one rounding to bfloat16 per convolution instead of three: close, not equal
        _close(fused, unfused, 5e-2)
