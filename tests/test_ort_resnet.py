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


# -- the onnxruntime-int8 form (the fast mode's ResNets) -------------------------------------------

SIZE = (64, 48)


def test_int8_resnet_is_close_to_the_float_one_batch_invariant_and_kept(tmp_path, monkeypatch, caplog):
    """(On the ResNet-18 tests/test_int8.py quantises with oneDNN: 0.9 % off on its calibration
    crops here, 0.6 % there; this module's far-from-identity ResNet-18: 4.2 and 3.1 %.)"""
    import logging

    from net_helpers import deterministic

    import wbcap.model.ort_resnet as ort_resnet
    from wbcap.model.int8 import INT8_TOLERANCE

    resnet18 = deterministic(ResNetBackbone(18), seed=3)
    quantised: list[int] = []
    real = ort_resnet._quantize
    monkeypatch.setattr(ort_resnet, "_quantize", lambda *a: (quantised.append(1), real(*a))[1])
    plan = ChunkPlan(((1, 1.0), (2, 0.5)))
    net, err = ort_resnet.build_ort_int8_resnet(resnet18, SIZE, plan, folder=tmp_path)
    assert isinstance(net, OrtResNet) and net.int8 and 0 < err <= INT8_TOLERANCE and quantised == [1]
    # other pictures than the calibration crops: the generated person images, one mirrored
    import torch.nn.functional as F

    from wbcap.testing.images import person_image

    img = torch.from_numpy(person_image(96, 128, seed=5)).permute(2, 0, 1).float().div(255)
    x = torch.stack([F.interpolate(img[None], size=SIZE, mode="bilinear", antialias=True)[0],
                     torch.flip(F.interpolate(img[None, :, 20:100], size=SIZE, mode="bilinear")[0], [-1]),
                     F.interpolate(img[None, :, 40:], size=SIZE, mode="bilinear")[0]]).clamp(0, 1)
    with torch.no_grad():
        out, ref = net(x), resnet18(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert out.shape == ref.shape and 0 < _rel(out, ref) <= INT8_TOLERANCE
    assert _rel(alone, out) <= 1e-6  # integer products: any batch alike
    # the graph onnxruntime runs is an int8 one (its quantised convolutions), kept in the folder
    files = list(tmp_path.glob("resnet18-*.onnx"))
    assert len(files) == 1
    model = onnx.load(str(files[0]))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in model.graph.initializer)
    assert {p.key for p in model.metadata_props} >= {"wbcap.key", "wbcap.error", "wbcap.check"}
    # read back: not quantised again, the same results
    again, err_again = ort_resnet.build_ort_int8_resnet(resnet18, SIZE, plan, folder=tmp_path)
    with torch.no_grad():
        assert torch.equal(again(x), out)
    assert quantised == [1] and err_again == err
    # another input size, or other weights: another file
    ort_resnet.build_ort_int8_resnet(resnet18, (32, 32), plan, folder=tmp_path)
    assert quantised == [1, 1] and len(list(tmp_path.glob("*.onnx"))) == 2
    # a damaged file, or one whose recorded check no longer holds: quantised again, with a warning
    for edit, message in ((lambda p: p.write_bytes(b"not onnx"), "ignoring the onnxruntime int8 model"),
                          (lambda p: _set_meta(p, "wbcap.check", "123.0"), "gives other results")):
        edit(files[0])
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert ort_resnet.build_ort_int8_resnet(resnet18, SIZE, plan, folder=tmp_path)[0] is not None
        assert message in caplog.text
    assert quantised == [1, 1, 1, 1]


def _set_meta(path, key: str, value: str) -> None:
    model = onnx.load(str(path))
    for p in model.metadata_props:
        if p.key == key:
            p.value = value
    onnx.save(model, str(path))


def test_int8_form_is_measured_forced_and_falls_back(monkeypatch, tmp_path, caplog):
    """The strategy times it beside the others for the fast mode's ResNets, chooses it when
    fastest, and a forced or cached choice that cannot be built runs fused with one warning."""
    import copy
    import logging

    from test_strategy import FUSED_WINS, MICRO, fake_timer

    import wbcap.model.inference as inference
    import wbcap.model.strategy as strategy
    from wbcap.model.fused import tuned_parts
    from wbcap.model.inference import _build_choice, optimize_for_inference
    from wbcap.testing.checkpoints import random_network

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path))
    monkeypatch.delenv(strategy.ENV_STRATEGY, raising=False)
    micro = random_network(MICRO, seed=2)
    part = tuned_parts(micro)["face_backbone"]
    wins = {**FUSED_WINS, ("int8", 1): 0.4, ("int8", 2): 0.3, ("onnxruntime-int8", 1): 0.3,
            ("onnxruntime-int8", 2): 0.2}
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2), timer=fake_timer(wins), fast=True)
    assert choice.form == "onnxruntime-int8" and isinstance(module, OrtResNet) and module.int8
    assert {"fused", "int8", "onnxruntime-int8"} <= set(choice.measured)
    rebuilt = _build_choice(part, torch.float32, True, choice, True)  # (from the cache folder: read back)
    assert isinstance(rebuilt, OrtResNet) and rebuilt.int8 and rebuilt.chunks == choice.chunks
    # not for exact's ResNets, nor the box network
    asked: list = []
    strategy.measure_part(part, torch.float32, True, chunks=(1, 2), timer=fake_timer(wins, log=asked), fast=False)
    assert not any(k[0] == "onnxruntime-int8" for keys in asked for k in keys if isinstance(k, tuple))
    assert not strategy.form_applies("onnxruntime-int8", tuned_parts(micro)["box_net"].module, torch.float32, True)
    # forced: the three ResNets through it, the rest in the default form
    monkeypatch.setattr(inference, "bf16_supported", lambda: False)
    monkeypatch.setenv(strategy.ENV_STRATEGY, "onnxruntime-int8:2")
    net = optimize_for_inference(copy.deepcopy(micro), "cpu", "fast")
    assert all(isinstance(b, OrtResNet) and b.int8 for b in (net.backbone, net.hand_roi_net.backbone,
                                                              net.face_roi_net.backbone))
    assert net.cpu_strategy.summary(3) == "onnxruntime-int8: body 2+1, hand 2+2+2, face 2+1, box fused 2+1"
    x = torch.rand(3, 3, 256, 192, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        err = (net(x).joint_img - copy.deepcopy(micro)(x).joint_img).abs().max().item()
    assert 0 < err < 0.5, f"onnxruntime-int8: joints moved by {err:.3g} heatmap cells"
    # a choice that cannot be built here runs fused, with one warning naming why

    def broken(*args, **kwargs):
        raise RuntimeError("no such provider\nmore")

    monkeypatch.setattr(inference, "build_ort_int8_resnet", broken)
    with caplog.at_level(logging.WARNING):
        built = _build_choice(part, torch.float32, True, choice, True)
    assert isinstance(built, FusedResNet)
    assert "the onnxruntime-int8 form chosen for this machine is not used (no such provider); running it fused" in caplog.text
