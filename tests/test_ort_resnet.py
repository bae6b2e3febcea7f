"""The onnxruntime form of a float32 ResNet (wbcap.model.ort_resnet): the module-by-module
ResNet's results at any batch size and input size, the graph it writes, and what it refuses."""

from __future__ import annotations

import pytest
import torch

from wbcap.model.fused import ChunkPlan, FusedResNet
from wbcap.model.fused import rel_error as _rel
from wbcap.model.resnet import ResNetBackbone

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from wbcap.model.ort_resnet import OrtResNet, resnet_onnx  # noqa: E402


def _backbone(depth: int, seed: int) -> ResNetBackbone:
    """A ResNet in eval mode with weights and BatchNorm statistics far from the identity."""
    g = torch.Generator().manual_seed(seed)
    bb = ResNetBackbone(depth)
    with torch.no_grad():
        for m in bb.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return bb.eval()


@pytest.fixture(scope="module")
def resnet18():
    return _backbone(18, 1)


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])
def test_equals_the_module_by_module_resnet_at_every_batch_and_input_size(depth, resnet18):
    bb = resnet18 if depth == 18 else _backbone(50, 2)
    net = OrtResNet(bb, ChunkPlan(((1, 1.0), (2, 0.6))))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 64, 96, generator=g)
    with torch.inference_mode():
        ref = bb(x)
        y = net(x)  # calls of 2 + 1
        alone = torch.cat([net(x[i:i + 1]) for i in range(3)])
        assert y.shape == ref.shape == (3, bb.feat_dim, 2, 3)
        assert _rel(y, ref) <= 1e-5
        assert torch.equal(alone, y)  # the batch size does not change a bit
        # sizes that are not multiples of 32 (every stride rounds up), as the module does
        odd = torch.rand(2, 3, 45, 70, generator=g)
        assert _rel(net(odd), bb(odd)) <= 1e-5 and net(odd).shape == bb(odd).shape
        # the same sums as the fused oneDNN form, to rounding
        assert _rel(y, FusedResNet(bb, (64, 96))(x)) <= 1e-5


def test_dtype_in_is_dtype_out_and_empty_batches_run(resnet18):
    net = OrtResNet(resnet18, 2)
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        ref = net(x)
        y = net(x.to(torch.bfloat16))
        assert y.dtype == torch.bfloat16 and _rel(y, resnet18(x.to(torch.bfloat16).float())) <= 1e-2
        assert net(x.double()).dtype == torch.float64
        assert net(x.contiguous(memory_format=torch.channels_last)).equal(ref)
        assert net(x[:0]).shape == (0, 512, 2, 2)


def test_calls_follow_the_chunk_plan(resnet18, monkeypatch):
    net = OrtResNet(resnet18, 2)
    sizes = []
    run = net._run
    monkeypatch.setattr(net, "_run", lambda x, out: (sizes.append(x.shape[0]), run(x, out)))
    with torch.inference_mode():
        net(torch.rand(5, 3, 32, 32))
    assert sizes == [2, 2, 1]


def test_the_graph_carries_folded_convolutions_and_no_weights(resnet18):
    model, weights = resnet_onnx(resnet18)
    proto = onnx.load_from_string(model)
    ops = [n.op_type for n in proto.graph.node]
    convs = [m for m in resnet18.modules() if isinstance(m, torch.nn.Conv2d)]
    assert ops.count("Conv") == len(convs) == 20 and "BatchNormalization" not in ops
    assert ops.count("Add") == 8 and ops.count("MaxPool") == 1  # one shortcut per block
    # the weights travel beside the graph, not inside it
    assert all(t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data for t in proto.graph.initializer)
    assert len(model) < 20_000 and sum(w.nbytes for w in weights.values()) > 40_000_000
    assert {t.name for t in proto.graph.initializer} == set(weights)


def test_runs_on_the_cpu_in_float32_only(resnet18):
    net = OrtResNet(resnet18, 1, threads=1)
    assert net.to("cpu") is net and net.dtype == torch.float32 and net.threads == 1
    with pytest.raises(ValueError, match="float32 on the CPU"):
        net.to(torch.bfloat16)
    with pytest.raises(ValueError, match="float32 on the CPU"):
        net.to("meta")
