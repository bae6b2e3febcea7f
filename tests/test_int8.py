"""The int8 form of the fast mode's ResNets (wbcap.model.int8): its calibration ranges, its
closeness to the module-by-module ResNet and batch-size invariance, and how the CPU strategy
measures, forces, caches and refuses it."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
import torch.nn.functional as F
from net_helpers import deterministic
from test_strategy import FUSED_WINS, MICRO, fake_timer

import wbcap.model.int8 as int8
import wbcap.model.strategy as strategy
from wbcap.model.fused import ChunkPlan, FusedResNet, bf16_supported, tuned_parts
from wbcap.model.fused import rel_error as _rel
from wbcap.model.inference import _build_choice, optimize_for_inference
from wbcap.model.int8 import Int8DeconvStack, Int8ResNet, build_int8, build_int8_resnet, calibrate, calibration_images
from wbcap.model.resnet import ResNetBackbone
from wbcap.testing.checkpoints import random_network

pytestmark = pytest.mark.skipif(not int8.int8_usable(), reason="no oneDNN int8 convolutions in this torch build")

SIZE = (64, 48)
#: The fast mode's float dtype on this CPU (float32 where it has no bfloat16 instructions: the
#: int8 form is a candidate for its ResNets there too).
FAST = torch.bfloat16 if bf16_supported() else torch.float32
FAST_NAME = str(FAST).removeprefix("torch.")


@pytest.fixture(scope="module")
def resnet18() -> ResNetBackbone:
    return deterministic(ResNetBackbone(18), seed=3)


def test_quantisation_parameters_cover_the_range():
    assert int8._quant(0.0, 2.55) == pytest.approx((0.01, 0))
    scale, zero = int8._quant(-1.0, 1.55)  # signed: zero lands at 100
    assert scale == pytest.approx(0.01) and zero == 100
    assert int8._quant(0.5, 2.55) == pytest.approx((0.01, 0))  # widened to include 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_max_pooling_equals_torchs(dtype):
    """max_pool_3x3_s2 (the int8 ResNets' pooling) is F.max_pool2d(x, 3, 2, 1) value for value:
    every parity of height and width, the 1- and 2-pixel sides where windows are cut, negative
    values (the padding never enters a maximum), channels_last out."""
    g = torch.Generator().manual_seed(9)
    shapes = [(4, 64, 128, 128), (2, 64, 128, 96), (3, 5, 7, 9), (2, 8, 33, 26), (2, 3, 8, 6), (1, 3, 1, 5),
              (1, 3, 5, 1), (1, 3, 1, 1), (2, 3, 2, 7), (2, 3, 3, 3), (1, 2, 4, 4)]
    for shape in shapes:
        if dtype == torch.uint8:
            x = torch.randint(0, 256, shape, dtype=dtype, generator=g)
        else:
            x = torch.randn(shape, generator=g)
        x = x.contiguous(memory_format=torch.channels_last)
        got = int8.max_pool_3x3_s2(x)
        want = F.max_pool2d(x.float(), 3, 2, 1).to(dtype)
        assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last), shape
        assert torch.equal(got, want), shape
    assert torch.equal(int8.max_pool_3x3_s2(x.contiguous()), want)  # (NCHW in: the same, channels_last out)


def test_calibration_ranges_are_those_of_the_float32_resnet(resnet18):
    images = calibration_images(SIZE)
    assert images.shape == (4, 3, *SIZE) and images.dtype == torch.float32 and 0 <= images.min() < images.max() <= 1
    ranges, features = calibrate(resnet18, images)
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    expected = {"stem"} | set(blocks) | {f"{b}.1" for b in blocks} | {f"layer{i}.0.ds" for i in (2, 3, 4)}
    assert set(ranges) == expected
    with torch.no_grad():  # the same values by hand, one image at a time
        stem = max(float(F.relu(resnet18.bn1(resnet18.conv1(x[None]))).max()) for x in images)
        x = resnet18.layer1(resnet18.maxpool(F.relu(resnet18.bn1(resnet18.conv1(images)))))
        ds = resnet18.layer2[0].downsample(x)
    assert ranges["stem"] == (0.0, pytest.approx(stem, rel=1e-5))
    assert ranges["layer2.0.ds"] == (pytest.approx(float(ds.min()), rel=1e-5), pytest.approx(float(ds.max()), rel=1e-5))
    assert ranges["layer2.0.ds"][0] < 0
    with torch.no_grad():
        torch.testing.assert_close(features, resnet18(images), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # (the fast loop keeps under 2 minutes; the full suite runs it)
def test_calibration_is_kept_by_the_weights_fingerprint(resnet18, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "int8_calibration.json"
    x = calibration_images(SIZE)[:2]
    first, err = build_int8_resnet(resnet18, SIZE, cache=cache)
    assert first is not None and cache.is_file()

    def no_calibration(*args):
        raise AssertionError("calibrated again")

    monkeypatch.setattr(int8, "calibrate", no_calibration)
    again, err_again = build_int8_resnet(resnet18, SIZE, cache=cache)  # read back: the same module
    assert err_again == err
    with torch.no_grad():
        assert torch.equal(again(x), first(x))
    other = copy.deepcopy(resnet18)
    with torch.no_grad():
        other.layer3[1].conv2.weight[5, 7, 1, 1] += 0.01  # one weight: another fingerprint
    assert int8.weights_fingerprint(other) != int8.weights_fingerprint(resnet18)
    with pytest.raises(AssertionError, match="calibrated again"):
        build_int8_resnet(other, SIZE, cache=cache)
    with pytest.raises(AssertionError, match="calibrated again"):
        build_int8_resnet(resnet18, (32, 32), cache=cache)  # another input size
    real_cpu = strategy.cpu_model()  # another CPU (a cache folder shared between machines): its int8 kernels differ
    monkeypatch.setattr(strategy, "cpu_model", lambda: real_cpu.replace("avx512f", "").strip() + " (another)")
    with pytest.raises(AssertionError, match="calibrated again"):
        build_int8_resnet(resnet18, SIZE, cache=cache)
    monkeypatch.setattr(strategy, "cpu_model", lambda: real_cpu)
    build_int8_resnet(resnet18, SIZE, cache=cache)  # (this CPU's entry again)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # (oneDNN's int8 kernels without AVX-512 and VNNI)
    with pytest.raises(AssertionError, match="calibrated again"):
        build_int8_resnet(resnet18, SIZE, cache=cache)
    monkeypatch.undo()
    cache.write_text("{not json")  # a broken file: calibrated again, with a warning, and rewritten
    with caplog.at_level(logging.WARNING):
        net, _ = build_int8_resnet(resnet18, SIZE, cache=cache)
    assert net is not None and "ignoring the int8 calibration cache" in caplog.text
    entries = json.loads(cache.read_text())["entries"]
    key, entry = entries.popitem()
    assert int8._entry(entry, int8.range_names(resnet18)) is not None
    # malformed entries (an edited file): calibrated again
    calls = []
    real = int8.calibrate
    monkeypatch.setattr(int8, "calibrate", lambda *a: calls.append(1) or real(*a))
    missing = {**entry, "ranges": {k: v for k, v in entry["ranges"].items() if k != "layer2.0.ds"}}
    huge = {**entry, "ranges": {**entry["ranges"], "stem": [0, 10**400]}}  # (json reads a 401-digit int)
    scaled = {**entry, "ranges": {k: [a * 1e-3, b * 1e-3] for k, (a, b) in entry["ranges"].items()}}
    bads = ({**entry, "ranges": [1, 2]}, missing, {**entry, "error": "nan"}, {"ranges": entry["ranges"]}, huge, scaled)
    for bad in bads:
        cache.write_text(json.dumps({"format": int8.CALIBRATION_FORMAT, "entries": {key: bad}}))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            net, _ = build_int8_resnet(resnet18, SIZE, cache=cache)
        assert net is not None
        # (edited ranges that still parse: their results differ from the recorded check value)
        assert ("gives other results than when it was written" in caplog.text) == (bad is scaled)
        assert int8._entry(json.loads(cache.read_text())["entries"][key], int8.range_names(resnet18)) is not None
    cache.write_text("[" * 200_000)  # nesting too deep for json: ignored, like any broken file
    with caplog.at_level(logging.WARNING):
        assert build_int8_resnet(resnet18, SIZE, cache=cache)[0] is not None
    assert len(calls) == len(bads) + 1


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])  # (50: bottlenecks)
def test_int8_resnet_is_close_to_the_module_by_module_resnet_and_batch_invariant(depth, resnet18):
    resnet = resnet18 if depth == 18 else deterministic(ResNetBackbone(50), seed=4)
    net, err = build_int8_resnet(resnet, SIZE, ChunkPlan(((1, 1.0), (2, 0.5))))
    assert net is not None and 0 < err <= int8.INT8_TOLERANCE
    # other pictures than the calibration crops: the generated person images, mirrored
    from wbcap.testing.images import person_image

    img = torch.from_numpy(person_image(96, 128, seed=5)).permute(2, 0, 1).float().div(255)
    x = torch.stack([F.interpolate(img[None], size=SIZE, mode="bilinear", antialias=True)[0],
                     torch.flip(F.interpolate(img[None, :, 20:100], size=SIZE, mode="bilinear")[0], [-1]),
                     F.interpolate(img[None, :, 40:], size=SIZE, mode="bilinear")[0]]).clamp(0, 1)
    with torch.no_grad():
        ref = resnet(x)
        out = net(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert 0 < _rel(out, ref) <= int8.INT8_TOLERANCE  # a different computation, close to float32
    # integer arithmetic whatever the batch; only the last block's float32 epilogue (scale, bias,
    # the float32 shortcut) may round differently: 1 ulp on the AMX Xeon (a different kernel per
    # batch), the same bits on the AVX-512 EPYC. One uint8 step anywhere would be ~1e-3.
    assert _rel(alone, out) <= 1e-6
    assert net.dtype == torch.uint8
    assert net.in_q == (pytest.approx(1 / 255), 0)  # the picture's whole range, not the crops' (< 0.93)
    bright = (x * 1.6).clamp(0, 1)  # white areas beyond anything in the calibration crops
    with torch.no_grad():
        assert _rel(net(bright), resnet(bright)) <= int8.INT8_TOLERANCE
    # every convolution was packed for the shapes of the calls met (1 and 2 images: 2 + 1)
    assert {k[0] for k in net.stem._packed} == {1, 2}
    with torch.no_grad():
        assert net(x[:0]).shape == (0, *ref.shape[1:])


def test_a_resnet_that_does_not_quantize_well_is_refused(resnet18, monkeypatch):
    monkeypatch.setattr(int8, "INT8_TOLERANCE", 1e-4)
    net, err = build_int8_resnet(resnet18, SIZE)
    assert net is None and err > 1e-4


@pytest.fixture(scope="module")
def micro_parts():
    return tuned_parts(random_network(MICRO, seed=5))


def _counting(calibration):
    """``calibration`` whose ``make`` counts its calls (the upstream passes a calibration runs)."""
    import dataclasses

    made: list[int] = []

    def make():
        made.append(1)
        return calibration.make()
    return dataclasses.replace(calibration, make=make), made


def test_int8_box_network_is_close_to_the_module_by_module_one_and_batch_invariant(micro_parts, tmp_path):
    part = micro_parts["box_net"]
    assert int8.int8_applies(part.module, FAST, True) and not int8.int8_applies(part.module, FAST, False)
    net, err = build_int8(part, ChunkPlan(((1, 1.0), (2, 0.5))), cache=tmp_path / "c.json")
    assert isinstance(net, Int8DeconvStack) and 0 < err <= int8.INT8_TOLERANCE
    # its inputs: the body ResNet's features (quantised, a calibrated range) and the joints'
    # heatmaps (probabilities, most under one uint8 step: float32)
    hm_channels = part.calibration.float_channels
    feat_dim = part.module[0].in_channels - hm_channels
    assert hm_channels == 25 * MICRO.output_hm_shape[0] and net.quantised == feat_dim and net.tail is not None
    inputs = part.calibration.make()
    assert inputs.shape[1:] == part.item_shape and float(inputs[:, :feat_dim].min()) >= 0
    # other inputs than the calibration's: the crops' features reordered and dimmed, and each
    # joint's heatmap (a softmax over its depth x height x width cells) peaked at up to ~0.7 where
    # the random weights give the crops' ~0.01 everywhere (surer joints than any in the crops)
    from wbcap.model.hand4whole import NUM_BODY_POS_JOINTS

    g = torch.Generator().manual_seed(3)
    x = inputs[torch.tensor([2, 0, 3])].clone()
    x[:, :feat_dim] *= torch.rand(3, feat_dim, 1, 1, generator=g) * 0.8 + 0.2
    logits = torch.randn(3, NUM_BODY_POS_JOINTS, hm_channels // NUM_BODY_POS_JOINTS * x[0, 0].numel(), generator=g)
    x[:, feat_dim:] = torch.softmax(logits * 1.5, -1).view(3, -1, *part.item_shape[1:])
    with torch.no_grad():
        ref = part.module(x)
        out = net(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(3)])
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert 0 < _rel(out, ref) <= int8.INT8_TOLERANCE
    # integer products, per-element float steps and one float32 convolution: at most a requantised
    # value one step apart where oneDNN's float32 kernel rounds otherwise for another batch size
    assert _rel(alone, out) <= 1e-3
    # the heatmaps' share is float32: with the features at 0 (exactly 0 in uint8) one layer of
    # the int8 form is the float32 layer itself (quantised heatmaps would be ~1e-2 off)
    first = Int8DeconvStack(part.module[:3], {"in": (0.0, 1.0)}, part.item_shape[1:], 2, hm_channels)
    x[:, :feat_dim] = 0
    with torch.no_grad():
        assert _rel(first(x), part.module[:3](x)) <= 1e-5
    with torch.no_grad():
        assert net(x[:0]).shape == (0, *ref.shape[1:])


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_int8_box_network_calibration_is_kept_by_its_weights_and_its_inputs_sources(micro_parts, tmp_path, caplog):
    import dataclasses

    part = micro_parts["box_net"]
    cache = tmp_path / "c.json"
    calibration, made = _counting(part.calibration)
    counted = dataclasses.replace(part, calibration=calibration)
    first, err = build_int8(counted, cache=cache)
    again, err_again = build_int8(counted, cache=cache)
    assert len(made) == 1 and err_again == err  # read back: no upstream pass
    x = part.calibration.make()[:2]
    with torch.no_grad():
        assert torch.equal(first(x), again(x))
    # another body ResNet (what makes the inputs) is another entry
    other_backbone = copy.deepcopy(part.calibration.upstream[0])
    with torch.no_grad():
        next(other_backbone.parameters()).mul_(1.01)
    other = dataclasses.replace(calibration, upstream=(other_backbone, *part.calibration.upstream[1:]))
    build_int8(dataclasses.replace(part, calibration=other), cache=cache)
    assert len(made) == 2
    # ... and so are other input sizes (another body input shape: other feature maps)
    c, h, w = part.item_shape
    build_int8(dataclasses.replace(counted, item_shape=(c, h + 1, w)), cache=cache)
    assert len(made) == 3
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 3
    # an edited entry (its ranges halved) gives other results than recorded: calibrated again
    key = next(iter(entries))
    entries[key]["ranges"] = {k: [lo, hi / 2] for k, (lo, hi) in entries[key]["ranges"].items()}
    cache.write_text(json.dumps({"format": int8.CALIBRATION_FORMAT, "entries": entries}))
    with caplog.at_level(logging.WARNING):
        build_int8(counted, cache=cache)
    assert len(made) == 4 and "gives other results than when it was written" in caplog.text
    # ... so does the input's range alone, narrowed or widened (the check's input follows it: its
    # features would otherwise all be clipped, or its heatmaps outweigh them), and a range this
    # form cannot take (below 0: no zero point) is calibrated again too, not refused on every load
    for edit, message in (((0.0, 0.3), "gives other results"), ((0.0, 3.0), "gives other results"),
                          ((-1.0, 1.0), "holds ranges this form cannot take")):
        entries = json.loads(cache.read_text())["entries"]
        lo, hi = entries[key]["ranges"]["in"]
        entries[key]["ranges"]["in"] = [edit[0], hi * edit[1]]
        cache.write_text(json.dumps({"format": int8.CALIBRATION_FORMAT, "entries": entries}))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            net, _ = build_int8(counted, cache=cache)
        assert isinstance(net, Int8DeconvStack) and message in caplog.text, edit
    assert len(made) == 7


def test_int8_box_network_is_measured_and_rebuilt(micro_parts):
    part = micro_parts["box_net"]
    wins = {**FUSED_WINS, ("int8", 1): 0.3, ("int8", 2): 0.2}
    choice, module = strategy.measure_part(part, FAST, True, chunks=(1, 2), timer=fake_timer(wins), fast=True)
    assert choice.form == "int8" and isinstance(module, Int8DeconvStack) and module.chunks == choice.chunks
    assert len(choice.subpixel) == 3  # (the float forms' choice, kept: the part's cache entry has it)
    rebuilt = _build_choice(part, FAST, True, choice, True)
    assert isinstance(rebuilt, Int8DeconvStack) and rebuilt.chunks == choice.chunks
    # a part without its inputs' source (a stack on its own) has no int8 form: measured without it
    import dataclasses

    bare = dataclasses.replace(part, calibration=None)
    with pytest.raises(ValueError, match="has no int8 form"):
        build_int8(bare)
    choice, module = strategy.measure_part(bare, FAST, True, chunks=(1, 2), timer=fake_timer(wins), fast=True)
    assert choice.form == "fused" and "int8" not in choice.measured


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_int8_is_a_candidate_for_the_fast_modes_parts_only(micro_parts):
    part = micro_parts["face_backbone"]
    wins = {**FUSED_WINS, ("int8", 1): 0.3, ("int8", 2): 0.2, ("int8", 4): 0.15}
    choice, module = strategy.measure_part(part, FAST, True, chunks=(1, 2, 4), timer=fake_timer(wins), fast=True)
    assert choice.form == "int8" and isinstance(module, Int8ResNet) and module.chunks == choice.chunks
    assert choice.describe(3) == "int8 2+1" and choice.alternates is None
    rebuilt = _build_choice(part, FAST, True, choice, True)  # from a cached choice: the same form
    assert isinstance(rebuilt, Int8ResNet) and rebuilt.chunks == choice.chunks
    asked: list = []
    strategy.measure_part(part, torch.float32, True, chunks=(1, 2), timer=fake_timer(wins, log=asked))
    strategy.measure_part(micro_parts["box_net"], torch.float32, True, chunks=(1, 2), timer=fake_timer(wins, log=asked),
                          fast=False)
    assert asked and not any(k[0] == "int8" for keys in asked for k in keys if isinstance(k, tuple))
    # ... and when it is slower it is measured, not chosen
    choice, module = strategy.measure_part(part, FAST, True, chunks=(1, 2), timer=fake_timer(FUSED_WINS), fast=True)
    assert choice.form == "fused" and set(choice.measured) >= {"fused", "int8"} and isinstance(module, FusedResNet)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_fast_float32_resnet_times_only_int8_against_exacts_cached_choice(micro_parts):
    """On a CPU without bfloat16 the fast precision's ResNets run float32 with the int8 candidate:
    with exact's choice for the part cached (its float form, Winograd tiles), only that form and
    the int8 one are timed (no other float form, no Winograd trial again), and the float one keeps
    exact's tiles and results."""
    part = micro_parts["face_backbone"]
    if not int8.int8_applies(part.module, torch.float32, True):
        pytest.skip("no oneDNN int8 convolutions here")
    winograd = tuple(((1, 2),) for _ in part.winograd_convs(torch.float32))  # F(2x2, 3x3) in every call
    assert winograd
    exact = strategy.PartChoice("fused", ChunkPlan(((1, 1.0), (2, 1.0))), (), part.per_crop, winograd=winograd)
    x = torch.rand(2, *part.item_shape, generator=torch.Generator().manual_seed(1))
    for wins, form in ((FUSED_WINS, "fused"), ({**FUSED_WINS, ("int8", 1): 0.3, ("int8", 2): 0.2}, "int8")):
        timed: list = []
        answer = fake_timer(wins)

        def timer(calls, rounds, answer=answer, timed=timed):
            timed.extend(calls)
            return answer(calls, rounds)

        choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2), timer=timer, fast=True,
                                               baseline=exact)
        assert {k[0] for k in timed} == {"fused", "int8"} and choice.form == form
        assert set(choice.measured) == {"fused", "int8"}
        if form == "fused":
            assert choice.winograd == winograd and isinstance(module, FusedResNet)
            with torch.inference_mode():
                assert _rel(module(x), part.module(x)) < 1e-4
        else:
            assert isinstance(module, Int8ResNet)
    # without it (nothing cached for exact) the float forms and Winograd tiles are measured too
    timed = []
    answer = fake_timer(FUSED_WINS)
    strategy.measure_part(part, torch.float32, True, chunks=(1, 2), fast=True,
                          timer=lambda calls, rounds: (timed.extend(calls), answer(calls, rounds))[1])
    assert {"plain", "winograd"} <= {k[0] for k in timed}


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_a_fast_float32_resnet_whose_cached_exact_form_fails_here_is_measured_in_full(micro_parts, monkeypatch,
                                                                                      caplog):
    """Exact's cached form for the part (onnxruntime here) cannot be built on this machine any
    more, nor can the int8 one: no candidate is left to time against it, so every float form is
    measured, as with nothing cached (warnings only, a working choice)."""
    from wbcap.model.ort_resnet import ort_applies

    part = micro_parts["face_backbone"]
    if not (int8.int8_applies(part.module, torch.float32, True) and ort_applies(part.module, torch.float32)):
        pytest.skip("no oneDNN int8 convolutions or no onnxruntime here")

    def broken(*args, **kwargs):
        raise RuntimeError("no such provider")

    monkeypatch.setattr(strategy, "OrtResNet", broken)
    monkeypatch.setattr(strategy, "build_int8", broken)
    exact = strategy.PartChoice("onnxruntime", ChunkPlan(((1, 1.0), (2, 1.0))), (), part.per_crop)
    timed: list = []
    answer = fake_timer(FUSED_WINS)
    with caplog.at_level(logging.WARNING):
        choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2), fast=True, baseline=exact,
                                               timer=lambda calls, rounds: (timed.extend(calls), answer(calls, rounds))[1])
    assert {"fused", "plain", "winograd"} <= {k[0] for k in timed}
    assert choice.form == "fused" and isinstance(module, FusedResNet)
    assert "the onnxruntime form could not be built" in caplog.text and "the int8 form could not be built" in caplog.text
    x = torch.rand(2, *part.item_shape, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert _rel(module(x), part.module(x)) < 1e-4


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_an_int8_form_that_fails_is_not_used(micro_parts, monkeypatch, caplog):
    """A failure in calibrating or in oneDNN's int8 primitives drops the form (measuring) or runs
    the part fused in bfloat16 (a cached choice): one warning, no crash."""
    import wbcap.model.inference as inference

    part = micro_parts["face_backbone"]

    def broken(*args, **kwargs):
        raise RuntimeError("could not create a primitive\nmore")

    real_run = Int8ResNet._run

    def fails_on_two(self, x):
        return broken() if x.shape[0] > 1 else real_run(self, x)

    wins = {**FUSED_WINS, ("int8", 1): 0.1, ("int8", 2): 0.1}
    for target, name, fake, message in (
            (strategy, "build_int8", broken, "the int8 form could not be built (could not create a primitive)"),
            (Int8ResNet, "_run", fails_on_two, "the int8 form failed on 2 images (could not create a primitive)")):
        with monkeypatch.context() as m:
            m.setattr(target, name, fake)
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                choice, module = strategy.measure_part(part, FAST, True, chunks=(1, 2), fast=True,
                                                       timer=fake_timer(wins))
            assert choice.form == "fused" and "int8" not in choice.measured and isinstance(module, FusedResNet)
            assert message in caplog.text
    monkeypatch.setattr(inference, "build_int8", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        built = _build_choice(part, FAST, True, strategy.default_choice(part, "int8", 2), True)
    assert isinstance(built, FusedResNet) and built.dtype == FAST
    assert f"is not used (could not create a primitive); running it fused in {FAST_NAME}" in caplog.text


def test_weights_that_do_not_quantize_well_run_fused_with_a_warning(micro_parts, monkeypatch, caplog):
    part = micro_parts["face_backbone"]
    monkeypatch.setattr(strategy, "build_int8", lambda *a, **k: (None, 0.2))
    wins = {**FUSED_WINS, ("int8", 1): 0.1, ("int8", 2): 0.1}
    with caplog.at_level(logging.WARNING):
        choice, module = strategy.measure_part(part, FAST, True, chunks=(1, 2), fast=True, timer=fake_timer(wins))
    assert choice.form == "fused" and "int8" not in choice.measured and isinstance(module, FusedResNet)
    assert "the int8 form is off by 0.2 (> 5e-02)" in caplog.text
    # a cached int8 choice and a checkpoint it does not suit: fused, in bfloat16, with a warning
    import wbcap.model.inference as inference

    monkeypatch.setattr(inference, "build_int8", lambda *a, **k: (None, 0.3))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        built = _build_choice(part, FAST, True, strategy.default_choice(part, "int8", 2), True)
    assert isinstance(built, FusedResNet) and built.dtype == FAST
    assert "the int8 form chosen for this machine is not used (with these weights it is off by 0.3" in caplog.text
    # ... and the network's strategy (what bench and the logs report) says what runs
    monkeypatch.setenv(strategy.ENV_STRATEGY, "int8:2")
    net = optimize_for_inference(random_network(MICRO, seed=2), "cpu", "fast")
    assert isinstance(net.backbone, FusedResNet) and net.backbone.dtype == FAST
    assert {c.form for c in net.cpu_strategy.parts.values()} == {"fused"}


@pytest.fixture(scope="module")
def micro_net():
    return random_network(MICRO, seed=2)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("bf16", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["bf16", "no-bf16"])
def test_forced_int8(monkeypatch, micro_net, caplog, bf16):
    """Fast mode: the three ResNets and the box network int8, the heads in bfloat16 or, on a CPU
    without bfloat16 instructions (made so here where it has them), float32; exact mode:
    nothing takes the form (a warning says so)."""
    import wbcap.model.inference as inference

    if bf16 and not bf16_supported():
        pytest.skip("no bfloat16 on this CPU")
    if not bf16:
        monkeypatch.setattr(inference, "bf16_supported", lambda: False)
    monkeypatch.setenv(strategy.ENV_STRATEGY, "int8:2")
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "fast")
    backbones = (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone)
    assert all(isinstance(b, Int8ResNet) and b.chunks == ChunkPlan.fixed(2) for b in backbones)
    assert isinstance(net.box_net.deconv, Int8DeconvStack) and net.box_net.deconv.chunks == ChunkPlan.fixed(2)
    assert net.box_net.bbox_center.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert net.cpu_strategy.summary(3) == "int8: body 2+1, hand 2+2+2, face 2+1, box 2+1"
    x = torch.rand(3, 3, 256, 192, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref = copy.deepcopy(micro_net)(x)
        out = net(x)
    err = (out.joint_img - ref.joint_img).abs().max().item()
    assert 0 < err < 0.5, f"int8: joints moved by {err:.3g} heatmap cells"
    with caplog.at_level(logging.WARNING):
        net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert {c.form for c in net.cpu_strategy.parts.values()} == {"fused"}
    assert "the int8 form runs the fast precision's ResNets and box network only" in caplog.text


def test_a_cached_int8_box_choice_that_cannot_be_built_keeps_its_deconvolution_forms(micro_parts, monkeypatch,
                                                                                     caplog):
    """The int8 box network falls back to the fused form with the sub-pixel and matrix-product
    choices measured beside it (kept in its choice), not oneDNN's deconvolutions everywhere."""
    import dataclasses

    import wbcap.model.inference as inference
    from wbcap.model.fused import FusedConvStack

    part = micro_parts["box_net"]
    monkeypatch.setattr(inference, "build_int8", lambda *a, **k: (None, 0.3))
    choice = dataclasses.replace(strategy.default_choice(part, "int8", 2), subpixel=(True, False, True),
                                 gemm=(False, False, True))
    with caplog.at_level(logging.WARNING):
        built = _build_choice(part, FAST, True, choice, True)
    assert isinstance(built, FusedConvStack) and built.subpixel == (True, False, True)
    assert built.gemm == (False, False, True) and built.dtype == FAST
    assert "box_net: the int8 form chosen for this machine is not used (with these weights it is off by 0.3" in caplog.text


@pytest.mark.slow  # (the fast loop keeps under 2 minutes; the full suite runs it)
def test_a_calibration_cache_that_cannot_be_read_or_written_is_one_warning_each(resnet18, tmp_path, monkeypatch, caplog):
    """The parts of one conversion share a CalibrationCache: a cache path that is a folder is
    one warning for reading and one for writing, not two per part; what was calibrated is kept
    in memory for the others (read back there, not calibrated again)."""
    real_calibrate = int8.calibrate
    folder = tmp_path / "int8_calibration.json"
    folder.mkdir()
    other = copy.deepcopy(resnet18)
    with torch.no_grad():
        other.layer3[1].conv2.weight[5, 7, 1, 1] += 0.01
    store = int8.CalibrationCache(folder)
    with caplog.at_level(logging.WARNING):
        for net in (resnet18, other):
            assert build_int8_resnet(net, SIZE, cache=store)[0] is not None
    assert caplog.text.count("ignoring the int8 calibration cache") == 1, caplog.text
    assert caplog.text.count("could not write the int8 calibration cache") == 1, caplog.text

    def no_calibration(*args):
        raise AssertionError("calibrated again")

    monkeypatch.setattr(int8, "calibrate", no_calibration)
    assert build_int8_resnet(other, SIZE, cache=store)[0] is not None  # (from memory)
    with pytest.raises(AssertionError, match="calibrated again"):  # a new cache object reads the file again: none
        build_int8_resnet(other, SIZE, cache=int8.CalibrationCache(folder))
    # fresh(): what the strategy times a few-call build with: the entries kept, not read or
    # written again (no more warnings), the weights fingerprinted again
    hashed = []
    real = int8.weights_fingerprint
    monkeypatch.setattr(int8, "weights_fingerprint", lambda m: hashed.append(m) or real(m))
    caplog.clear()
    calibrated = []  # (calibrating allowed again, counted)
    monkeypatch.setattr(int8, "calibrate", lambda *a: calibrated.append(1) or real_calibrate(*a))
    with caplog.at_level(logging.WARNING):
        assert build_int8_resnet(other, SIZE, cache=store.fresh())[0] is not None
    # (the entry was never written: the next conversion calibrates again, as the fresh one does)
    assert hashed == [other] and calibrated == [1] and not caplog.text
    writable = int8.CalibrationCache(tmp_path / "ok.json")
    assert build_int8_resnet(other, SIZE, cache=writable)[0] is not None
    calibrated.clear()
    assert build_int8_resnet(other, SIZE, cache=writable.fresh())[0] is not None and calibrated == []


def test_a_newer_wbcaps_calibration_cache_is_left_as_it_is(tmp_path):
    path = tmp_path / "int8_calibration.json"
    path.write_text(json.dumps({"format": int8.CALIBRATION_FORMAT + 1, "entries": {"k": {}}}))
    before = path.read_bytes()
    problem, _ = int8._write_calibration(path, "key", {"ranges": {}, "error": 0.0, "check": 0.0})
    assert problem == f"a newer wbcap's (format {int8.CALIBRATION_FORMAT + 1}), left as it is"
    assert path.read_bytes() == before
    path.write_text(json.dumps({"format": int8.CALIBRATION_FORMAT, "entries": {}}))  # this wbcap's: written
    assert int8._write_calibration(path, "key", {"ranges": {}, "error": 0.0, "check": 0.0}) == (None, False)
    assert list(json.loads(path.read_text())["entries"]) == ["key"]


def test_calibrations_written_by_two_processes_at_once_are_both_kept(tmp_path):
    """As the CPU strategy's cache (tests/test_strategy.py): an entry another process added
    between this one's read and its write was lost. The update waits for the other's lock."""
    import multiprocessing
    import time

    from wbcap.user_cache import updating

    path = tmp_path / "int8_calibration.json"
    entry = {"ranges": {}, "error": 0.0, "check": 0.0}
    ctx = multiprocessing.get_context("fork")
    go, started = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_write_other_calibration, args=(str(path), entry, go, started))
    other.start()  # (forked before the lock is taken: a child forked while it is held holds it too)
    with updating(path):  # (this process's update, between its read and its write)
        go.set()
        assert started.wait(30)
        time.sleep(0.3)  # (the other one waits for the lock meanwhile)
        assert not path.exists()
        path.write_text(json.dumps({"format": int8.CALIBRATION_FORMAT, "entries": {"mine": entry}}))
    other.join(30)
    assert other.exitcode == 0
    assert list(json.loads(path.read_text())["entries"]) == ["mine", "other"]


def test_a_lock_held_past_the_wait_is_said_once_and_not_waited_for_again(tmp_path, monkeypatch, caplog):
    """A review: a process stopped (Ctrl-Z) while it held the cache's lock made every part's
    update wait the whole limit, silently (8 parts: 80 s). The first says so and writes; the
    conversion's later parts do not wait. A lock file another user made (read-only to this one)
    is still waited for, through a read-only descriptor."""
    import os
    import time

    from wbcap.user_cache import updating

    monkeypatch.setattr(int8, "LOCK_WAIT_S", 0.3)
    path = tmp_path / "int8_calibration.json"
    store = int8.CalibrationCache(path)
    real_open = os.open

    def other_users_lock_file(name, flags, *args):  # (root passes any permission: as another user sees it)
        if str(name).endswith(".lock") and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)

    import wbcap.locks

    real_try, tries = wbcap.locks.flock_nowait, []
    monkeypatch.setattr(wbcap.locks, "flock_nowait", lambda *a, **k: tries.append(1) or real_try(*a, **k))
    with updating(path):  # (the stopped holder)
        monkeypatch.setattr(os, "open", other_users_lock_file)
        times, counts = [], []
        with caplog.at_level(logging.WARNING):
            for key in ("a", "b", "c"):
                t, tries[:] = time.perf_counter(), []
                store.put(key, {}, 0.0, 0.0)
                times.append(time.perf_counter() - t)
                counts.append(len(tries))
        monkeypatch.setattr(os, "open", real_open)
    assert times[0] >= 0.3 and counts[0] > 1 and counts[1:] == [1, 1], (times, counts)  # (later parts: one try each)
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"another process has held {path}.lock for 0.3 s (a stopped one?); writing the int8 calibration "
                    "cache without waiting for it"], said
    assert list(json.loads(path.read_text())["entries"]) == ["a", "b", "c"]


def _write_other_calibration(path: str, entry: dict, go, started) -> None:
    from pathlib import Path

    go.wait(30)
    started.set()
    assert int8._write_calibration(Path(path), "other", entry) == (None, False)


def test_a_calibration_cache_hashes_each_module_once(resnet18, tmp_path, monkeypatch):
    """One conversion's CalibrationCache fingerprints a module once (the box network's key holds
    the body ResNet's fingerprint, which the ResNet's own key computed), another module apart."""
    hashed = []
    real = int8.weights_fingerprint
    monkeypatch.setattr(int8, "weights_fingerprint", lambda m: hashed.append(m) or real(m))
    store = int8.CalibrationCache(tmp_path / "c.json")
    other = copy.deepcopy(resnet18)
    with torch.no_grad():
        other.conv1.weight[0, 0, 0, 0] += 0.01
    first = store.fingerprint(resnet18)
    assert store.fingerprint(resnet18) == first == real(resnet18)
    assert store.fingerprint(other) != first
    assert hashed == [resnet18, other]


@pytest.mark.slow  # (the fast loop keeps under 2 minutes; the full suite runs it)
def test_measuring_the_fast_strategy_reports_an_unusable_calibration_cache_once(micro_parts, tmp_path, monkeypatch,
                                                                                caplog):
    """When the fast precision's strategy is measured (a machine's first fast run), its int8
    candidates share the conversion's CalibrationCache too: a folder at the cache's path is one
    warning for reading and one for writing, not two per part."""
    folder = tmp_path / "int8_calibration.json"
    folder.mkdir()
    monkeypatch.setattr(strategy, "cache_path", lambda: tmp_path / "cpu_strategy.json")
    monkeypatch.setattr(strategy, "machine_busy", lambda: False)
    monkeypatch.setattr(strategy, "chunk_candidates", lambda threads=None: (1, 2))
    wins = {**FUSED_WINS, ("int8", 1): 0.3, ("int8", 2): 0.2}
    monkeypatch.setattr(strategy, "time_interleaved", fake_timer(wins))
    parts = {name: micro_parts[name] for name in ("body_backbone", "face_backbone")}
    with caplog.at_level(logging.WARNING):
        chosen, _ = strategy.choose_cpu_strategy(parts, {name: FAST for name in parts}, "auto", busy=lambda: False,
                                                 fast=set(parts), calibrations=int8.CalibrationCache(folder))
    assert all(c.form == "int8" for c in chosen.parts.values()), caplog.text
    assert caplog.text.count("ignoring the int8 calibration cache") == 1, caplog.text
    assert caplog.text.count("could not write the int8 calibration cache") == 1, caplog.text
