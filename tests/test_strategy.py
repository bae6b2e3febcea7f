"""The measured CPU inference strategy (wbcap.model.strategy): chunk plans, the choice from
(injected) timings, the per-machine cache, forcing a strategy, and every exact candidate equal
to the module-by-module network and independent of the batch size."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import wbcap.model.strategy as strategy
from wbcap.config import ModelConfig
from wbcap.errors import InputError
from wbcap.model.fused import (
    ChunkPlan,
    Col2imDeconv,
    FusedConvStack,
    FusedResNet,
    GemmConv,
    SingleImageForm,
    SubpixelDeconv,
    bf16_supported,
    rel_error,
    tuned_parts,
)
from wbcap.model.graph_resnet import GraphResNet, graph_applies, graph_usable
from wbcap.model.hand4whole import Hand4Whole
from wbcap.model.inference import optimize_for_inference
from wbcap.model.ort_resnet import ort_applies
from wbcap.model.strategy import (
    CpuStrategy,
    MachineBusy,
    PartChoice,
    StrategyRequest,
    choose_cpu_strategy,
    select_form,
)
from wbcap.testing.checkpoints import random_network

# All ResNet-18 at half the input geometry (tests/conftest.py MICRO): the same parts and tensor
# ranks as the released network at a small fraction of its FLOPs.
MICRO = ModelConfig(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18, input_img_shape=(256, 192),
                    input_body_shape=(128, 96), output_hm_shape=(8, 4, 3), input_hand_shape=(128, 128),
                    output_hand_hm_shape=(8, 4, 4), input_face_shape=(96, 96))
FP32 = dict.fromkeys(("body_backbone", "hand_backbone", "face_backbone", "box_net"), torch.float32)


@pytest.fixture(autouse=True)
def _auto_strategy(monkeypatch):
    monkeypatch.delenv(strategy.ENV_STRATEGY, raising=False)


@pytest.fixture(scope="module")
def micro_parts():
    """The tuned parts of a MICRO network (trained modules, not converted)."""
    return tuned_parts(random_network(MICRO, seed=5))


def fake_timer(per_image: dict, subpixel_s: dict | None = None, log: list | None = None,
               winograd_s: dict | None = None):
    """A timer answering from ``per_image`` ((form, chunk) -> seconds per image), for the
    deconvolution form trials from ``subpixel_s`` (seconds per image: False for oneDNN's
    deconvolution, True for the sub-pixel convolution, "gemm" for that as one matrix product,
    "col2im" for the deconvolution as one matrix product and a col2im; by default 3.0: never chosen) and for the Winograd layer
    trials (keys ("winograd", tile, chunk, layer shape)) from ``winograd_s`` (tile or (tile,
    chunk) -> seconds per image, or a function of (tile, chunk, shape); by default the direct
    convolution wins); the onnxruntime, int8 and oneDNN Graph forms, when ``per_image`` has no time for them, are slowest; records what it was asked (not the Winograd trials)."""
    subpixel_s = subpixel_s or {False: 1.0, True: 2.0}
    winograd_s = winograd_s or {0: 1.0, 2: 2.0, 4: 2.0}

    def answer(k):
        if k[0] == "deconv-form":  # ("deconv-form", form name, images per call)
            sub, gemm = strategy.DECONV_FORMS[k[1]]
            key = "col2im" if gemm and not sub else "gemm" if gemm else sub
            return subpixel_s.get(key, 3.0) * k[2]
        if k[0] == "winograd":  # ("winograd", tile, images per call, layer shape)
            if callable(winograd_s):
                return winograd_s(*k[1:]) * k[2]
            return winograd_s.get((k[1], k[2]), winograd_s.get(k[1])) * k[2]
        if k[0] in strategy.OWN_BUILD_FORMS and k not in per_image:  # (by default never chosen)
            return 10.0 * k[1]
        return per_image[k] * k[1]

    def timer(calls, rounds):
        if log is not None and not is_winograd_trial(calls):
            log.append(sorted(calls, key=str))
        return {k: answer(k) for k in calls}

    return timer


@pytest.fixture()
def direct_layers(monkeypatch):
    """Tests about something else than Winograd layers skip their trials: every 3x3 layer
    measured as fastest direct, without running it (the trials' real work is a few layer
    calls per shape and size; tests/test_winograd.py and the tests below cover them)."""
    def trials(part, onednn, x, sizes, timer, rounds):
        return [{c: {0: 1.0} for c in sizes} for _ in part.winograd_convs()], x.new_empty(0)  # (unused: no tile)

    monkeypatch.setattr(strategy, "_winograd_trials", trials)


def is_winograd_trial(calls) -> bool:
    """Whether a timer was asked for the Winograd layer trials (their keys start with "winograd")."""
    return any(isinstance(k, tuple) and k[0] == "winograd" for k in calls)


def never(calls, rounds):
    raise AssertionError("nothing should be measured here")


FUSED_WINS = {("fused", 1): 1.0, ("fused", 2): 0.6, ("fused", 4): 0.5, ("plain", 1): 2.0, ("plain", 2): 1.5,
              ("plain", 4): 1.0}
PLAIN_WINS = {("fused", 1): 2.0, ("fused", 2): 1.5, ("fused", 4): 1.0, ("plain", 1): 0.5, ("plain", 2): 0.45,
              ("plain", 4): 0.4}


# -- chunk plans and the choice from timings -----------------------------------------------------


def test_chunk_plan_fixed_and_measured_sizes():
    fixed = ChunkPlan.fixed(4)
    assert [fixed.calls(n) for n in (1, 3, 4, 9)] == [(1,), (3,), (4,), (4, 4, 1)] and fixed.pack == 4
    assert fixed.describe(10) == "4+4+2"
    plan = ChunkPlan(((1, 10.0), (2, 6.0), (4, 5.0)))
    # the least predicted time, in calls of measured sizes only: 3 = 2+1 (12 + 10 = 22 < 30);
    # 7 = 4+2+1 (20 + 12 + 10 = 42 < 4+1+1+1 = 50)
    assert [plan.calls(n) for n in (1, 2, 3, 6, 7, 8)] == [(1,), (2,), (2, 1), (4, 2), (4, 2, 1), (4, 4)]
    assert [t.shape[0] for t in plan.split(torch.zeros(7, 1))] == [4, 2, 1] and plan.split(torch.zeros(4, 1))[0].shape[0] == 4
    assert plan.describe(23) == "5x4+2+1" and plan.sizes == (1, 2, 4)
    # a size that is slower per image than a smaller one is never used
    assert ChunkPlan(((1, 1.0), (4, 2.0))).calls(8) == (1,) * 8
    with pytest.raises(ValueError, match="increasing"):
        ChunkPlan(((4, 1.0), (2, 1.0)))


def test_weights_packed_apart_for_batch_sizes_oneDNN_lays_out_differently():
    from wbcap.model.fused import FusedConv, pack_for_batches

    g = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(64, 32, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    fused = FusedConv(conv, None, True, torch.float32, [4, 64, 8, 8], packed=True)
    x = torch.randn(2, 64, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = torch.relu(conv(x))
        assert fused.add_packs([1, 2, 4]) == tuple(sorted(fused._by_batch))  # only where the bytes differ
        assert fused.add_packs([2], check=False) == tuple(sorted({2, *fused._by_batch}))  # kept as told
        torch.testing.assert_close(fused(x), ref)  # the batch-2 packing in use
        assert pack_for_batches(nn.Sequential(fused), [2], known={0: [2]}) == {0: fused.add_packs([])}
    fused.unpack()
    assert fused._by_batch == {} and fused.add_packs([1, 2]) == ()
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), ref)


def test_every_batch_size_is_checked_on_its_first_call():
    """A batch size nobody announced (the heads see as many images as the call has crops) is
    packed for on its first call and kept apart exactly where add_packs would keep it (oneDNN
    lays the weight out differently; on the Xeon this one differs at batch 1), so no call
    reorders the packed weight every time; results equal the convolution's."""
    from wbcap.model.fused import FusedConv

    g = torch.Generator().manual_seed(4)
    conv = nn.Conv2d(2048, 512, 1, bias=False)  # the body rotation net's hand-feature convolutions
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.02)
    told = FusedConv(conv, None, True, torch.float32, [4, 2048, 8, 8], packed=True)
    found = FusedConv(conv, None, True, torch.float32, [4, 2048, 8, 8], packed=True)
    told.add_packs([1, 2, 3])
    x = torch.randn(3, 2048, 8, 8, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for n in (1, 2, 3, 1):
            torch.testing.assert_close(found(x[:n]), torch.relu(conv(x[:n])), rtol=1e-4, atol=1e-4)
    assert set(found._by_batch) == set(told._by_batch) and found._same == told._same
    assert set(found._by_batch) | found._same == {1, 2, 3}
    weights = {n: found._weight_for(n) for n in (1, 2, 3)}  # kept: the same objects on later calls
    assert all(found._weight_for(n) is w for n, w in weights.items())
    # sizes from a cached measurement: the ones not packed apart are not checked again
    from wbcap.model.fused import pack_for_batches

    cached = FusedConv(conv, None, True, torch.float32, [4, 2048, 8, 8], packed=True)
    pack_for_batches(nn.Sequential(cached), [1, 2, 3], known={0: sorted(told._by_batch)})
    assert cached._same == told._same and cached._lazy == set(told._by_batch) and not cached._by_batch


def test_known_packings_are_made_on_first_use():
    """A batch size known to need its own packing (the strategy cache) is packed on the first
    call with that many images, not at build: one photo never packs for batch 4."""
    from wbcap.model.fused import FusedConv

    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(16, 8, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    fused = FusedConv(conv, None, False, torch.float32, [4, 16, 6, 6], packed=True)
    assert fused.add_packs([1, 2, 4], check=False) == (1, 2)  # 4 is the main packing
    assert fused._by_batch == {}
    x = torch.randn(2, 16, 6, 6, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), conv(x), rtol=1e-5, atol=1e-5)
        assert set(fused._by_batch) == {2} and fused._lazy == {1}
        torch.testing.assert_close(fused(x[:1]), conv(x[:1]), rtol=1e-5, atol=1e-5)
        assert set(fused._by_batch) == {1, 2} and not fused._lazy


def test_selection_picks_the_faster_form_from_injected_timings():
    form, plan = select_form(PLAIN_WINS)
    assert form == "plain" and plan.per_image_s == ((1, 0.5), (2, 0.45), (4, 0.4))
    form, plan = select_form(FUSED_WINS)
    assert form == "fused" and plan.per_image_s == ((1, 1.0), (2, 0.6), (4, 0.5))
    # within the timing noise (FORM_MARGIN) the default form stays; beyond it, not
    close = {("fused", 1): 1.0, ("fused", 4): 1.0, ("plain", 1): 0.98, ("plain", 4): 0.98}
    assert select_form(close)[0] == "fused"
    assert select_form({**close, ("plain", 1): 0.96, ("plain", 4): 0.96})[0] == "plain"


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_measured_choice_follows_the_timer_and_builds_the_winner(micro_parts, direct_layers):
    part = micro_parts["body_backbone"]
    asked: list = []
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4),
                                           timer=fake_timer(PLAIN_WINS, log=asked))
    assert choice.form == "plain" and isinstance(module, FusedResNet) and not module.stem.packed
    assert choice.chunks.per_image_s == ((1, 0.5), (4, 0.4)) and choice.measured["fused"][2] == 1.5
    # plain won the first rounds: both forms timed again at their common sizes before the choice
    # (the onnxruntime and oneDNN Graph forms, candidates for float32 ResNets, at every size in the first rounds)
    ort = [("onnxruntime", c) for c in (1, 2, 4)] if ort_applies(part.module, torch.float32) else []
    ort += [("graph", c) for c in (1, 2, 4)] if graph_applies(part.module, torch.float32) else []
    assert asked == [sorted([("fused", 1), ("fused", 2), ("fused", 4), ("plain", 1), ("plain", 4), *ort], key=str),
                     sorted([("fused", 1), ("fused", 4), ("plain", 1), ("plain", 4)], key=str)]
    # ... and when the default form, timed again, shows it was as fast (other processes had slowed
    # its first rounds: timings only ever come out slower), the default stays
    answers = iter([PLAIN_WINS, {**PLAIN_WINS, ("fused", 1): 0.45, ("fused", 4): 0.35}])
    choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4),
                                      timer=lambda calls, rounds: fake_timer(
                                          PLAIN_WINS if is_winograd_trial(calls) else next(answers))(calls, rounds))
    assert choice.form == "fused" and choice.chunks.per_image_s == ((1, 0.45), (2, 1.5), (4, 0.35))
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4), timer=fake_timer(FUSED_WINS))
    assert choice.form == "fused" and module.stem.packed and module.chunks == choice.chunks
    assert choice.describe(3) == "fused 2+1"
    assert choice.alternates is not None  # found against a packing for 4, the plan's largest size too


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_onnxruntime_form_chosen_for_float32_resnets_when_faster(micro_parts, direct_layers):
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    part = micro_parts["face_backbone"]
    ort_wins = {**FUSED_WINS, ("onnxruntime", 1): 0.3, ("onnxruntime", 2): 0.2, ("onnxruntime", 4): 0.15}
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4), timer=fake_timer(ort_wins))
    assert choice.form == "onnxruntime" and isinstance(module, OrtResNet) and module.chunks == choice.chunks
    assert choice.describe(3) == "onnxruntime 2+1" and choice.alternates is None
    assert choice.winograd == tuple(() for _ in part.winograd_convs())  # (no Winograd layers in it)
    x = torch.rand(3, *part.item_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = part.module(x)
        assert (module(x) - ref).abs().max() <= 1e-5 * ref.abs().max()
    # rebuilt from the cached choice: the same form
    from wbcap.model.inference import _build_choice

    rebuilt = _build_choice(part, torch.float32, True, choice, False)
    assert isinstance(rebuilt, OrtResNet) and rebuilt.chunks == choice.chunks
    # not a candidate for bfloat16 parts (the fast mode; where this CPU has them) nor for the box
    # network's deconvolutions
    asked: list = []
    if bf16_supported():
        strategy.measure_part(part, torch.bfloat16, True, chunks=(1, 2), timer=fake_timer(ort_wins, log=asked))
    strategy.measure_part(micro_parts["box_net"], torch.float32, True, chunks=(1, 2),
                          timer=fake_timer(ort_wins, log=asked))
    assert not any(k[0] == "onnxruntime" for keys in asked for k in keys if isinstance(k, tuple))
    assert not ort_applies(micro_parts["box_net"].module, torch.float32) and not ort_applies(part.module, torch.bfloat16)


def test_a_narrow_resnets_timings_are_kept_apart_from_resnets_own():
    """The strategy cache's key of a ResNet part names a narrow width (backbone_width): a review's
    16-wide network measured first decided the 64-wide one's forms; ResNet's own width keeps the
    key it had before (the caches users have)."""
    keys = {}
    for width in (64, 16):
        with torch.device("meta"):
            net = Hand4Whole(dataclasses.replace(MICRO, backbone_width=width))
        keys[width] = {name: part.arch for name, part in tuned_parts(net).items()}
    body, hand = "{}x{}".format(*MICRO.input_body_shape), "{}x{}".format(*MICRO.input_hand_shape)
    assert keys[64]["body_backbone"] == f"resnet18 3x{body}" and keys[64]["hand_backbone"] == f"resnet18 3x{hand}"
    assert keys[16]["body_backbone"] == f"resnet18 w16 3x{body}" and keys[16]["hand_backbone"] == f"resnet18 w16 3x{hand}"
    assert all(keys[16][name] != keys[64][name] for name in keys[64])


@pytest.mark.slow  # (the fast loop stays under 2 minutes: 2 s; every exact candidate is still checked there)
def test_subpixel_deconvolution_chosen_layer_by_layer(micro_parts):
    part = micro_parts["box_net"]
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                           timer=fake_timer(FUSED_WINS, {False: 2.0, True: 1.0}))
    assert choice.subpixel == (True, True, True)
    assert all(isinstance(m, SubpixelDeconv) for m in module.layers)
    assert choice.describe(1) == "fused 1 subpixel 3/3"
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2), timer=fake_timer(FUSED_WINS))
    assert choice.subpixel == (False, False, False) and not any(isinstance(m, SubpixelDeconv) for m in module.layers)
    assert choice.gemm == (False, False, False)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_subpixel_gemm_chosen_only_when_faster_than_both_other_forms(micro_parts):
    part = micro_parts["box_net"]
    log = []
    # the matrix product beats the sub-pixel convolution by more than MARGIN: taken
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                           timer=fake_timer(FUSED_WINS, {False: 2.0, True: 1.0, "gemm": 0.5}, log))
    assert choice.subpixel == (True, True, True) and choice.gemm == (True, True, True)
    assert all(isinstance(m, SubpixelDeconv) and isinstance(m.conv, GemmConv) for m in module.layers)
    assert choice.describe(1) == "fused 1 subpixel 3/3 gemm 3/3"
    # every form was timed at one image and at the largest chunk (2)
    trials = [k for calls in log for k in calls if k[0] == "deconv-form"]
    assert sorted(set(trials)) == sorted(("deconv-form", f, c) for f in strategy.DECONV_FORMS for c in (1, 2))
    # within MARGIN of the sub-pixel convolution: not taken; faster than the deconvolution alone
    # but not by MARGIN against the sub-pixel one either
    choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                      timer=fake_timer(FUSED_WINS, {False: 2.0, True: 1.0, "gemm": 0.95}))
    assert choice.subpixel == (True, True, True) and choice.gemm == (False, False, False)
    # the sub-pixel convolution no faster than the deconvolution, its matrix product is: taken
    choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                      timer=fake_timer(FUSED_WINS, {False: 1.0, True: 1.0, "gemm": 0.5}))
    assert choice.subpixel == (True, True, True) and choice.gemm == (True, True, True)
    # faster than the sub-pixel convolution but within MARGIN of the deconvolution: nothing taken
    choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                      timer=fake_timer(FUSED_WINS, {False: 1.0, True: 2.0, "gemm": 0.95}))
    assert choice.subpixel == (False, False, False) and choice.gemm == (False, False, False)


@pytest.mark.slow  # (the fast loop keeps under 2 minutes; the full suite runs it)
@pytest.mark.parametrize("form", ["gemm", "col2im"])
def test_deconvolutions_as_matrix_products_are_rebuilt_from_the_cache(form, micro_net, tmp_path, monkeypatch):
    """Measured once (every deconvolution as a matrix product: the sub-pixel convolution's, or the
    deconvolution's own and a col2im), then read back: the converted box network holds the same
    forms, describes them and gives the same result."""
    _measure_with(monkeypatch, tmp_path, FUSED_WINS, subpixel_s={False: 2.0, True: 1.5, form: 0.5})
    monkeypatch.setattr(strategy, "_winograd_trials", lambda part, onednn, x, sizes, timer, rounds: (
        [{c: {0: 1.0} for c in sizes} for _ in part.winograd_convs()], x.new_empty(0)))
    x = torch.rand(2, 3, 256, 192, generator=torch.Generator().manual_seed(4))
    outs = []
    for source in ("measured", "cache"):
        net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
        box = net.cpu_strategy.parts["box_net"]
        assert net.cpu_strategy.source == source and box.gemm == (True, True, True)
        if form == "gemm":
            assert box.subpixel == (True, True, True)
            assert all(isinstance(m, SubpixelDeconv) and isinstance(m.conv, GemmConv) for m in net.box_net.deconv.layers)
            assert "(sub-pixel 3/3, 3 as GEMM" in net.cpu_strategy.summary(1)
        else:
            assert box.subpixel == (False, False, False)
            assert all(isinstance(m, Col2imDeconv) for m in net.box_net.deconv.layers)
            assert "col2im 3/3" in net.cpu_strategy.summary(1) and "col2im 3/3" in box.describe(1)
        with torch.inference_mode():
            outs.append(net(x).joint_img)
    assert torch.equal(outs[0], outs[1])


@pytest.mark.skipif(not bf16_supported(), reason="no bfloat16 instructions")
def test_col2im_is_no_candidate_for_a_bfloat16_part(micro_parts):
    log: list = []
    strategy.measure_part(micro_parts["box_net"], torch.bfloat16, True, chunks=(1, 2),
                          timer=fake_timer(FUSED_WINS, {False: 2.0, True: 1.5, "col2im": 1.0}, log=log))
    assert {k[1] for calls in log for k in calls if k[0] == "deconv-form"} == {"deconv", "subpixel", "gemm"}


def test_gemm_conv_packings_follow_to():
    """A packed GemmConv that has run, converted to bfloat16 and back: its packed product uses the
    weight as it is now (bfloat16-rounded), not a packing kept from before."""
    g = torch.Generator().manual_seed(12)
    m = GemmConv(torch.randn(16, 8, 2, 2, generator=g), torch.randn(16, generator=g), (1, 1), False, torch.float32,
                 True)
    x = torch.randn(2, 8, 4, 3, generator=g).contiguous(memory_format=torch.channels_last)
    before = m(x)
    m.to(torch.bfloat16).to(torch.float32)
    after = m(x)
    expected = torch.addmm(m.bias, m.columns(x), m.weight.t()).view(2, 5, 4, 16).permute(0, 3, 1, 2)
    assert (after - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
    assert (after - before).abs().max().item() > 1e-4  # the weight did change


@pytest.mark.parametrize("cls,wrong,timings,expected", [
    # the matrix product off: the sub-pixel convolution kept
    (GemmConv, lambda self, x: True, {False: 2.0, True: 1.0, "gemm": 0.1}, (True, False)),
    # off only for several images (checked at every timed size too)
    (GemmConv, lambda self, x: x.shape[0] > 1, {False: 2.0, True: 1.0, "gemm": 0.1}, (True, False)),
    # the sub-pixel convolution off: its matrix product still taken
    (SubpixelDeconv, lambda self, x: not self.gemm, {False: 2.0, True: 0.5, "gemm": 1.0}, (True, True)),
    # the col2im form off: the fastest of the others taken
    (Col2imDeconv, lambda self, x: True, {False: 2.0, True: 1.0, "gemm": 3.0, "col2im": 0.1}, (True, False)),
])
def test_a_wrong_deconvolution_form_is_not_chosen(micro_parts, monkeypatch, caplog, cls, wrong, timings, expected):
    part = micro_parts["box_net"]
    real = cls.forward
    monkeypatch.setattr(cls, "forward", lambda self, x: real(self, x) * (1.01 if wrong(self, x) else 1.0))
    with caplog.at_level(logging.WARNING, logger="wbcap.model.strategy"):
        choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                          timer=fake_timer(FUSED_WINS, timings))
    assert (choice.subpixel, choice.gemm) == ((expected[0],) * 3, (expected[1],) * 3)
    name = {GemmConv: "gemm", SubpixelDeconv: "subpixel", Col2imDeconv: "col2im"}[cls]
    assert f"the {name} form of" in caplog.text


@pytest.mark.parametrize("kernel,padding", [((2, 2), (1, 1)), ((3, 3), (1, 1)), ((3, 1), (0, 2)), ((1, 1), (0, 0))])
def test_gemm_conv_equals_the_convolution(kernel, padding):
    g = torch.Generator().manual_seed(11)
    w = torch.randn(24, 10, *kernel, generator=g, dtype=torch.float64)
    b = torch.randn(24, generator=g, dtype=torch.float64)
    x = torch.randn(3, 10, 5, 4, generator=g, dtype=torch.float64)
    for relu in (False, True):
        ref = F.conv2d(x, w, b, padding=padding)
        ref = ref.relu() if relu else ref
        for packed in (True, False):
            m = GemmConv(w, b, padding, relu, torch.float32, packed)
            assert m.output_size(x.shape) == list(ref.shape)
            xs = x.float().contiguous(memory_format=torch.channels_last)
            out = m(xs)
            assert out.shape == ref.shape and out.dtype == torch.float32
            assert (out.double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
            # one image at a time: the same values to rounding (other row counts of the product)
            alone = torch.cat([m(xs[i:i + 1]) for i in range(3)])
            assert (alone - out).abs().max().item() <= 1e-5 * ref.abs().max().item()
    if bf16_supported():
        m = GemmConv(w, b, padding, True, torch.bfloat16, True)
        out = m(x.bfloat16().contiguous(memory_format=torch.channels_last))
        ref = F.conv2d(x, w, b, padding=padding).relu()
        assert out.dtype == torch.bfloat16
        assert (out.double() - ref).abs().max().item() <= 2e-2 * ref.abs().max().item()


# Seconds per image of a layer's candidates: Winograd loses at one image per call (F(2x2, 3x3)
# is faster, but within MARGIN), F(2x2, 3x3) wins at two and F(4x4, 3x3) at four.
WINOGRAD_WINS = {(0, 1): 1.0, (2, 1): 0.95, (4, 1): 1.5, (0, 2): 1.0, (2, 2): 0.7, (4, 2): 0.8, (0, 4): 1.0,
                 (2, 4): 0.7, (4, 4): 0.5}


@pytest.mark.slow  # measures a part for real (the measured candidate below covers Winograd in the fast loop)
def test_winograd_tiles_chosen_per_layer_shape_and_batch_size(micro_parts):
    from wbcap.model.fused import ConvByBatchSize

    part = micro_parts["face_backbone"]
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4),
                                           timer=fake_timer(FUSED_WINS, winograd_s=WINOGRAD_WINS))
    assert choice.winograd == (((2, 2), (4, 4)),) * 13
    layers = [m for m in module.modules() if isinstance(m, ConvByBatchSize)]
    assert len(layers) == 13 and all(m.plan == ((2, 2), (4, 4)) for m in layers)
    assert choice.describe(4) == "fused 4 winograd 13/13"
    assert PartChoice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice
    # the measured plan really computes the part (checked against the module-by-module one)
    x = torch.rand(3, *part.item_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = part.module(x)
        assert rel_error(module(x), ref) <= strategy.EXACT_TOLERANCE
    # bfloat16 parts (the fast mode, where this CPU has them) keep their direct convolutions, untried
    if bf16_supported():
        asked: list = []
        choice, _ = strategy.measure_part(
            part, torch.bfloat16, True, chunks=(1, 2),
            timer=lambda calls, rounds: (asked.extend(calls), fake_timer(FUSED_WINS)(calls, rounds))[1])
        assert choice.winograd == () and not is_winograd_trial(asked)


@pytest.mark.slow  # builds and runs the part several times
def test_a_winograd_tile_off_by_more_than_rounding_is_not_used(micro_parts, monkeypatch, caplog):
    from wbcap.model.winograd import WinogradConv

    part = micro_parts["face_backbone"]
    real = WinogradConv.forward

    def off_for_f4(self, x, residual=None, inplace=False):
        y = real(self, x, residual, inplace)
        return y + 1e-3 * y.abs().max() if self.tile == 4 else y

    monkeypatch.setattr(WinogradConv, "forward", off_for_f4)
    with caplog.at_level(logging.WARNING):
        choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4),
                                          timer=fake_timer(FUSED_WINS, winograd_s=WINOGRAD_WINS))
    assert "Winograd F(4, 3)" in caplog.text
    assert choice.winograd == (((2, 2),),) * 13  # F(2x2, 3x3) from two images on, F(4x4, 3x3) never


def test_winograd_trials_leave_the_part_as_it_computes(micro_parts):
    """The trials catch each 3x3 layer's input with forward hooks, which must not change what the
    layers return (a hook returning a value replaces the output); the part's output they return
    is the module-by-module one, which the whole-part check compares with."""
    part = micro_parts["face_backbone"]
    x = torch.rand(2, *part.item_shape, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        trials, out = strategy._winograd_trials(part, True, x, (1, 2), fake_timer(FUSED_WINS), 1)
        assert torch.equal(out, part.module(x)) and len(trials) == 13
        assert not any(m._forward_hooks for m in part.module.modules())


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_winograd_tiles_follow_each_layer_shape(micro_parts):
    """Winograd made faster only for the layers with 256 or more input channels (ResNet-18:
    layers 3 and 4, the last six 3x3 stride-1 convolutions): only those get a plan."""
    part = micro_parts["face_backbone"]

    def seconds(tile, chunk, shape):
        return 0.5 if tile and shape[0] >= 256 else 1.0

    choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2),
                                      timer=fake_timer(FUSED_WINS, winograd_s=seconds))
    assert choice.winograd == ((),) * 7 + (((1, 2),),) * 6  # F(2x2, 3x3) first among equals


@pytest.mark.slow  # builds and runs the part several times
def test_winograd_plans_checked_on_the_whole_part(micro_parts, monkeypatch, caplog):
    """Per-layer rounding that passed could still add up, and call sizes that run other tiles
    could differ by more than 1e-5: the whole part is checked at every chunk size, and the plans
    are chosen again without F(4x4, 3x3) (from the timings: F(2x2, 3x3) only where it was faster
    than direct), then direct convolutions."""
    from wbcap.model.winograd import WinogradConv

    part = micro_parts["face_backbone"]
    # F(4x4, 3x3) fastest from two images on; F(2x2, 3x3) faster than direct only at one image
    trial = {1: {0: 1.0, 2: 0.5, 4: 0.6}, 2: {0: 1.0, 2: 0.95, 4: 0.5}}
    trials = [trial] * 13
    x = torch.rand(2, *part.item_shape, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = part.module(x)
        assert strategy._choose_winograd(part, True, trials, x, ref, (1, 2), 1e-4) == (((1, 2), (2, 4)),) * 13
        real = WinogradConv.forward
        drift = {4: 2e-5, 2: 0.0}
        monkeypatch.setattr(WinogradConv, "forward",
                            lambda self, x, residual=None, inplace=False: real(self, x, residual, inplace) * (1 + drift[self.tile]))
        with caplog.at_level(logging.WARNING):
            assert strategy._choose_winograd(part, True, trials, x, ref, (1, 2), 1e-4) == (((1, 2), (2, 0)),) * 13
        assert "trying fewer" in caplog.text
        drift[2] = 2e-5
        assert strategy._choose_winograd(part, True, trials, x, ref, (1, 2), 1e-4) == ((),) * 13
        # within 1e-4 of the reference, but 1 image and 2 images per call differ by more than 1e-5
        drift.update({4: 4e-6, 2: 0.0})
        assert strategy._choose_winograd(part, True, trials, x, ref, (1, 2), 1e-4) == (((1, 2), (2, 0)),) * 13


def test_a_wrong_candidate_is_dropped_with_a_warning(micro_parts, direct_layers, monkeypatch, caplog):
    part = micro_parts["face_backbone"]
    real_build = type(part).build

    class OffByOne(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) + 1.0

    def build(self, dtype, packed, chunk, subpixel=None, alternates=None, winograd=None, gemm=None, few_calls=False):
        m = real_build(self, dtype, packed, chunk, subpixel, alternates, winograd, gemm, few_calls)
        return m if packed else OffByOne(m)

    monkeypatch.setattr(type(part), "build", build)
    with caplog.at_level(logging.WARNING):
        choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2), timer=fake_timer(PLAIN_WINS))
    assert choice.form == "fused" and "plain" not in choice.measured
    assert "plain form is off by" in caplog.text

    class OffAtFour(OffByOne):
        def forward(self, x):
            return self.inner(x) + (1.0 if x.shape[0] == 4 else 0.0)

    def build_off_at_four(self, dtype, packed, chunk, subpixel=None, alternates=None, winograd=None, gemm=None,
                          few_calls=False):
        m = real_build(self, dtype, packed, chunk, subpixel, alternates, winograd, gemm, few_calls)
        return OffAtFour(m) if packed else m

    # the largest size dropped: the sizes packed apart were found against a packing for it, not
    # the one a rebuild makes (for 2), so none are passed on and the rebuild compares again
    monkeypatch.setattr(type(part), "build", build_off_at_four)
    choice, _ = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4), timer=fake_timer(FUSED_WINS))
    assert choice.form == "fused" and choice.chunks.pack == 2 and choice.alternates is None


# -- the cache -----------------------------------------------------------------------------------


class FakeMeasure:
    """Stands in for strategy.measure_part: answers ``form`` for every part, records the parts
    asked, raises MachineBusy from the ``busy_after``-th call on."""

    def __init__(self, form: str = "plain", busy_after: int | None = None):
        self.form, self.busy_after, self.asked, self.baselines = form, busy_after, [], []

    def __call__(self, part, dtype, onednn, chunks=None, timer=None, rounds=2, fast=None, baseline=None,
                 calibrations=None):
        if self.busy_after is not None and len(self.asked) >= self.busy_after:
            raise MachineBusy("busy")
        self.asked.append((part.name, dtype) if not fast or dtype == torch.bfloat16 else (part.name, dtype, "fast"))
        self.baselines.append(None if baseline is None else baseline.form)
        per_image = PLAIN_WINS if self.form == "plain" else FUSED_WINS
        plan = ChunkPlan(tuple(sorted((c, t) for (f, c), t in per_image.items() if f == self.form)))
        sub = tuple(False for _ in part.transposed_convs())
        wino = tuple(((2, 2),) for _ in part.winograd_convs(dtype))
        return PartChoice(self.form, plan, sub, part.per_crop, {self.form: dict(plan.per_image_s)},
                          winograd=wino), nn.Identity()


@pytest.fixture()
def measure(monkeypatch):
    fake = FakeMeasure()
    monkeypatch.setattr(strategy, "measure_part", fake)
    return fake


def test_cache_round_trip_keyed_by_machine(micro_parts, tmp_path, monkeypatch, measure):
    path = tmp_path / "cpu_strategy.json"
    first, built = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert first.source == "measured" and set(built) == set(micro_parts) and len(measure.asked) == 4
    assert {c.form for c in first.parts.values()} == {"plain"} and first.cache_file == str(path)
    data = json.loads(path.read_text())
    (machine_id, slot), = data["machines"].items()
    assert slot["cpu"] == strategy.cpu_model() and slot["torch"] == torch.__version__
    assert slot["threads"] == torch.get_num_threads() and len(slot["parts"]) == 4
    assert sorted(pid.split(":")[0] for pid in slot["parts"]) == sorted(micro_parts)
    assert any("resnet18 3x128x128 float32" in pid for pid in slot["parts"])

    measure.asked.clear()
    again, built = choose_cpu_strategy(micro_parts, FP32, path=path)  # read back, nothing measured
    assert again.source == "cache" and built == {} and again.selection_s == 0 and measure.asked == []
    assert {n: c.to_dict() for n, c in again.parts.items()} == {n: c.to_dict() for n, c in first.parts.items()}

    # another CPU model, another torch or onnxruntime version: measured again, every machine kept
    assert slot["onnxruntime"] == strategy.onnxruntime_version()
    measure.form = "fused"
    monkeypatch.setattr(strategy, "cpu_model", lambda: "Another CPU (family 25)")
    other, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert other.source == "measured" and {c.form for c in other.parts.values()} == {"fused"}
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)[0].source == "measured"
    monkeypatch.setattr(strategy, "onnxruntime_version", lambda: "0.0.1")
    assert choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)[0].source == "measured"
    assert len(json.loads(path.read_text())["machines"]) == 4
    monkeypatch.setattr(strategy, "onnxruntime_version", lambda: slot["onnxruntime"])

    # another dtype for one part (the fast mode): only that part is measured
    monkeypatch.setattr(torch, "__version__", slot["torch"])
    monkeypatch.setattr(strategy, "cpu_model", lambda: slot["cpu"])
    measure.asked.clear()
    mixed, built = choose_cpu_strategy(micro_parts, dict(FP32, body_backbone=torch.bfloat16), path=path,
                                       busy=lambda: False)
    assert mixed.source == "cache+measured" and set(built) == {"body_backbone"}
    assert measure.asked == [("body_backbone", torch.bfloat16)]
    assert mixed.parts["body_backbone"].form == "fused" and mixed.parts["hand_backbone"].form == "plain"
    # the fast mode on a CPU without bfloat16: its parts are float32, but not exact's (the int8
    # form is a candidate for them): measured and kept apart from exact's, read back; exact's
    # cached choices ("plain") are the float forms the int8 form is timed against. A part
    # without the int8 form computes exact's and shares its entry
    measure.asked.clear()
    measure.baselines.clear()
    fast = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, fast=set(micro_parts))[0]
    assert fast.source == "measured" and sorted(measure.asked) == sorted((n, torch.float32, "fast") for n in micro_parts)
    assert measure.baselines == ["plain"] * len(micro_parts)
    fast_ids = [pid for pid in json.loads(path.read_text())["machines"][machine_id]["parts"] if pid.endswith("(fast)")]
    assert any("resnet18 3x128x128 float32(fast)" in pid for pid in fast_ids) and any("deconv" in p for p in fast_ids)
    box = micro_parts["box_net"]
    no_int8 = {**micro_parts, "box_net": dataclasses.replace(box, module=nn.Sequential(*list(box.module)[:-1]))}
    measure.asked.clear()  # (a stack ending without its ReLU is no int8 stack: exact's entry, same architecture)
    assert choose_cpu_strategy(no_int8, FP32, path=path, busy=lambda: False, fast=set(micro_parts))[0].source == "cache"
    assert measure.asked == []
    measure.asked.clear()
    assert choose_cpu_strategy(micro_parts, FP32, path=path, fast=set(micro_parts))[0].source == "cache"
    assert choose_cpu_strategy(micro_parts, FP32, path=path)[0].source == "cache" and measure.asked == []


def test_a_short_job_runs_the_default_form_without_measuring(micro_parts, tmp_path, caplog, measure):
    # (wbcap image of a few photos, the demo: measuring costs 10-30 s and saves a fraction of one)
    path = tmp_path / "cpu_strategy.json"
    with caplog.at_level(logging.DEBUG, logger="wbcap.model.strategy"):
        short, built = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, measure=False)
    assert short.source == "default" and built == {} and measure.asked == [] and not path.exists()
    assert {n: c.to_dict() for n, c in short.parts.items()} == {
        n: strategy.default_choice(p, "fused").to_dict() for n, p in micro_parts.items()}
    said = [r.getMessage() for r in caplog.records if "not measured" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("the CPU inference strategy is not measured on this machine yet")
    assert "the fused form" in said[0] and "`wbcap run`" in said[0]
    # a long job measures and keeps the choice; a short one then reads it
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert len(measure.asked) == 4 and path.exists()
    measure.asked.clear()
    cached = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, measure=False)[0]
    assert cached.source == "cache" and {c.form for c in cached.parts.values()} == {"plain"} and measure.asked == []
    # a part the cache lacks (the fast mode's) is left to the default form; the others read
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="wbcap.model.strategy"):
        mixed = choose_cpu_strategy(micro_parts, dict(FP32, body_backbone=torch.bfloat16), path=path,
                                    busy=lambda: False, measure=False)[0]
    assert mixed.source == "cache+default" and measure.asked == []
    assert mixed.parts["body_backbone"].form == "fused" and mixed.parts["hand_backbone"].form == "plain"
    assert any("strategy of body_backbone is not measured" in r.getMessage() for r in caplog.records)
    # the fast mode's float32 parts (a CPU without bfloat16): exact's measured choice, not measured
    fast = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, fast=set(micro_parts), measure=False)[0]
    assert fast.source == "cache" and {c.form for c in fast.parts.values()} == {"plain"} and measure.asked == []
    # entries another wbcap wrote: a long job says it measures again; a short one says nothing above debug
    data = json.loads(path.read_text())
    for slot in data["machines"].values():
        for entry in slot["parts"].values():
            entry["wbcap"] = "0.0.9"
    path.write_text(json.dumps(data))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="wbcap.model.strategy"):
        stale = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, measure=False)[0]
    assert stale.source == "default" and measure.asked == []
    assert [r.levelno for r in caplog.records] and {r.levelno for r in caplog.records} == {logging.DEBUG}
    # an explicit request to measure still measures
    assert choose_cpu_strategy(micro_parts, FP32, "measure", path=path, busy=lambda: False,
                               measure=False)[0].source == "measured"
    assert len(measure.asked) == 4


@pytest.mark.parametrize("content", ["{not json", f'{{"format": {strategy.CACHE_FORMAT}, "machines": []}}', '[1, 2]',
                                     "\udcff", "[" * 200_000])  # (the last: nesting too deep for json)
def test_a_corrupt_cache_is_ignored_with_a_warning(micro_parts, tmp_path, caplog, measure, content):
    path = tmp_path / "cpu_strategy.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with caplog.at_level(logging.WARNING):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert chosen.source == "measured" and caplog.text.count("ignoring the CPU strategy cache") == 1  # not again on write
    assert json.loads(path.read_text())["format"] == strategy.CACHE_FORMAT  # rewritten, readable again
    assert choose_cpu_strategy(micro_parts, FP32, path=path)[0].source == "cache"


def test_a_cached_choice_without_a_plan_per_convolution_is_measured_again(micro_parts, tmp_path, measure, caplog):
    path = tmp_path / "cpu_strategy.json"
    first, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert first.parts["hand_backbone"].winograd == (((2, 2),),) * 13
    assert "Winograd 39/39" in first.summary(4) and first.parts["box_net"].winograd == ()
    data = json.loads(path.read_text())
    (slot,) = data["machines"].values()
    (pid,) = [p for p in slot["parts"] if p.startswith("hand_backbone")]
    slot["parts"][pid]["winograd"] = slot["parts"][pid]["winograd"][:-1]
    path.write_text(json.dumps(data))
    measure.asked.clear()
    with caplog.at_level(logging.WARNING):
        again, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert measure.asked == [("hand_backbone", torch.float32)] and again.source == "cache+measured"
    assert "12 Winograd plans for 13 3x3 layers" in caplog.text


@pytest.mark.parametrize("measured", [{"fused": {"0": 0.05, "1": 0.05}}, {"fused": {"1": 0.0, "2": 0.1}},
                                      {"onnxruntime": {"1": float("nan")}}])
def test_cached_measurements_that_make_no_chunk_plan_are_measured_again(micro_parts, tmp_path, caplog, measure,
                                                                         measured):
    """The measured times a choice keeps become a chunk plan for a few calls
    (PartChoice.for_few_calls): an edited one that could not (a chunk of 0 images, a time that is
    not a positive number) makes the entry malformed, measured again, instead of crashing a
    few-photo `wbcap image` while more photos ran."""
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    (slot,) = data["machines"].values()
    (pid,) = [p for p in slot["parts"] if p.startswith("body_backbone")]
    slot["parts"][pid]["measured"] = measured
    path.write_text(json.dumps(data))
    measure.asked.clear()
    with caplog.at_level(logging.WARNING):
        again, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert measure.asked == [("body_backbone", torch.float32)] and "ignoring the cached CPU strategy" in caplog.text
    again.parts["body_backbone"].for_few_calls()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_cached_time_that_is_not_a_positive_number_is_measured_again(micro_parts, tmp_path, caplog, measure, bad):
    """A NaN or infinite time (Python's json reads and writes them) left no way to split a batch:
    splitting one image looped forever."""
    with pytest.raises(ValueError, match="finite and > 0"):
        ChunkPlan(((1, bad), (2, 0.1)))
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    (slot,) = data["machines"].values()
    (pid,) = [p for p in slot["parts"] if p.startswith("face_backbone")]
    slot["parts"][pid]["per_image_s"] = {"1": bad, "2": 0.1}
    path.write_text(json.dumps(data))
    measure.asked.clear()
    with caplog.at_level(logging.WARNING):
        again, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert measure.asked == [("face_backbone", torch.float32)] and "ignoring the cached CPU strategy" in caplog.text
    assert again.parts["face_backbone"].chunks.calls(1) == (1,)


@pytest.mark.parametrize(("key", "value", "said"), [
    ("per_image_s", {"1": 1.0, "2": 0.6, "1000000000000": 0.5}, "chunk sizes must be from 1 to 4096 images"),
    ("measured", {"fused": {"1": 1.0, "5000": 0.5}}, "chunk sizes must be from 1 to 4096 images"),
    ("per_crop", 100000000, "per_crop must be a whole number from 1 to 8"),
    ("per_crop", -5, "per_crop must be a whole number from 1 to 8"),
    ("per_crop", 2, "2 images per crop, where the part takes 1")])
def test_a_cached_chunk_size_or_images_per_crop_out_of_range_is_measured_again(micro_parts, tmp_path, caplog, measure,
                                                                                 key, value, said):
    """A review's edits of a cached entry: a chunk of 1e12 images was read as valid and failed
    oneDNN's packing at every start-up ("could not construct a memory descriptor"); 1e8 images
    per crop hung the strategy's summary (`wbcap bench`), -5 said "face 0". Each is an entry
    measured again; a per_crop other than the part's too."""
    path = tmp_path / "cpu_strategy.json"
    first, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    (slot,) = data["machines"].values()
    (pid,) = [p for p in slot["parts"] if p.startswith("face_backbone")]
    slot["parts"][pid][key] = value
    path.write_text(json.dumps(data))
    measure.asked.clear()
    with caplog.at_level(logging.WARNING):
        again, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert measure.asked == [("face_backbone", torch.float32)] and again.source == "cache+measured"
    assert "ignoring the cached CPU strategy" in caplog.text and said in caplog.text, caplog.text
    assert again.summary(1) == first.summary(1)


def test_kernel_variables_and_fewer_cores_than_threads_are_in_the_cache_key(monkeypatch):
    """A review: under ONEDNN_MAX_CPU_ISA=SSE41 (oneDNN's SSE4.1 kernels, a 3x3 convolution 3.8x
    slower) the choice measured with AVX-512 was read back, and two threads on one core read two
    cores' choice. A usual machine's key is what earlier versions wrote."""
    for name in strategy.KERNEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    plain = strategy.machine_key()
    assert plain["env"] == {} and plain["cores"] >= 1
    mid = strategy._machine_id(plain)
    threads = plain["threads"]
    assert mid.endswith(f"| {threads} threads") and "cores" not in mid
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    capped = strategy.machine_key()
    assert capped["env"] == {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"}
    assert strategy._machine_id(capped) == f"{mid} | ATEN_CPU_CAPABILITY=default | ONEDNN_MAX_CPU_ISA=SSE41"
    monkeypatch.setattr("wbcap.model.device.available_cpus", lambda: 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert strategy._machine_id({**plain, "threads": 2, "cores": 1}).endswith("| 2 threads on 1 cores")
    assert strategy.machine_key()["cores"] == 1


def test_the_int8_instruction_sets_are_in_the_cpu_model(monkeypatch):
    """VNNI and AMX-INT8 decide the int8 form's speed (3.2x float32 with AVX512-VNNI on the Zen 4):
    a host that gained AVX512-VNNI had kept its key (docs/performance.md), so its old choice."""
    from pathlib import Path as RealPath

    real_read = RealPath.read_text
    info = {"flags": "fpu avx2 avx512f avx512_bf16"}

    def cpuinfo(self, *args, **kwargs):
        if str(self) != "/proc/cpuinfo":
            return real_read(self, *args, **kwargs)
        return f"processor\t: 0\nmodel name\t: Some CPU\ncpu family\t: 25\nflags\t\t: {info['flags']}\n\n"

    monkeypatch.setattr(RealPath, "read_text", cpuinfo)
    without = strategy.cpu_model()
    assert without == "Some CPU (family 25; avx2 avx512f avx512_bf16)"
    info["flags"] += " avx512_vnni"
    assert strategy.cpu_model() == "Some CPU (family 25; avx2 avx512f avx512_bf16 avx512_vnni)"
    info["flags"] = "avx2 avx_vnni amx_bf16 amx_int8"
    assert strategy.cpu_model() == "Some CPU (family 25; avx2 amx_bf16 avx_vnni amx_int8)"


def test_a_fifo_at_the_lock_files_name_is_no_lock_and_blocks_nothing(tmp_path, monkeypatch):
    """A review: a FIFO at ``<cache>.lock`` that could only be opened read-only (another user's)
    blocked the open for ever. It is no lock file: the update runs at once, unlocked."""
    import os
    import threading

    path = tmp_path / "cpu_strategy.json"
    os.mkfifo(tmp_path / "cpu_strategy.json.lock")
    real_open = os.open

    def read_only(name, flags, *args):
        if str(name).endswith(".lock") and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    said = []

    def update():
        with strategy.updating(path, 5.0) as timed_out:
            said.append(timed_out)

    worker = threading.Thread(target=update, daemon=True)
    worker.start()
    worker.join(3)
    assert not worker.is_alive() and said == [False]


def test_two_processes_adding_to_the_cache_at_once_keep_both_entries(tmp_path):
    """A review: process A read the cache, B wrote its part, A wrote its copy of the older file:
    B's part was lost (measured again next time, 10-30 s). Each update is re-read and written
    under a lock (wbcap.user_cache.updating); here A holds it while B starts."""
    import multiprocessing

    path = tmp_path / "cpu_strategy.json"
    machine = strategy.machine_key()
    body = PartChoice("fused", ChunkPlan.fixed(2))
    ctx = multiprocessing.get_context("fork")
    go, started = ctx.Event(), ctx.Event()
    b = ctx.Process(target=_write_hand_part, args=(str(path), machine, go, started))
    b.start()  # (forked before A takes the lock: a child forked while it is held holds it too)
    with strategy.updating(path):  # (A's update)
        machines, _, _ = strategy._cache_document(path)  # (A reads: no entries yet)
        go.set()
        assert started.wait(30)
        time.sleep(0.3)  # (B adds its part meanwhile: it waits for the lock)
        assert not path.exists()
        machines[strategy._machine_id(machine)] = {**machine, "parts": {"body": body.to_dict()}}
        strategy.write_json(path, {"format": strategy.CACHE_FORMAT, "machines": machines})  # (A writes what it read and its part)
    b.join(30)
    assert b.exitcode == 0
    parts = list(json.loads(path.read_text())["machines"].values())[0]["parts"]
    assert parts.keys() == {"body", "hand"}
    assert (tmp_path / "cpu_strategy.json.lock").is_file()


def _write_hand_part(path: str, machine: dict, go, started) -> None:
    go.wait(30)
    started.set()
    strategy.write_cache(Path(path), machine, {"hand": PartChoice("plain", ChunkPlan.fixed(1))})


def test_winograd_layers_are_counted_for_the_calls_of_each_batch_size():
    """A plan using F(4x4, 3x3) from four images on: a batch of one or two crops runs none."""
    plans = (((4, 4),),) * 5 + ((),) * 8
    choice = PartChoice("fused", ChunkPlan(((1, 1.0), (2, 0.6), (4, 0.5))), winograd=plans)
    assert choice.describe(1) == "fused 1" and choice.describe(2) == "fused 2"
    assert choice.describe(4) == "fused 4 winograd 5/13" and choice.describe(5) == "fused 4+1 winograd 5/13"
    assert choice.winograd_used() == 5
    strategy_ = strategy.CpuStrategy({"body_backbone": choice, "face_backbone": PartChoice("fused", ChunkPlan.fixed(2))},
                                     "cache", {})
    assert strategy_.summary(1) == "fused: body 1, face 1" and strategy_.summary(8).endswith("(Winograd 5/13)")


def test_a_cache_of_an_older_format_is_measured_again_quietly(micro_parts, tmp_path, caplog, measure):
    """A choice made under an older selection rule is not reused (CACHE_FORMAT), without a warning."""
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": strategy.CACHE_FORMAT - 1}))
    with caplog.at_level(logging.INFO):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert chosen.source == "measured" and "older wbcap" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert json.loads(path.read_text())["format"] == strategy.CACHE_FORMAT


def test_a_newer_wbcaps_cache_is_left_as_it_is(micro_parts, tmp_path, caplog, measure):
    """A cache written by a newer wbcap (a later format) is not used here, and not overwritten:
    its measurements are that wbcap's to keep; doctor says why it is not used."""
    path = tmp_path / "cpu_strategy.json"
    path.write_text(json.dumps({"format": strategy.CACHE_FORMAT + 1, "machines": {"other": {"parts": {}}}}))
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert chosen.source == "measured" and path.read_bytes() == before
    assert "newer wbcap: format" in caplog.text and "leaving the file as it is" in caplog.text
    assert len(caplog.records) == 1, caplog.text  # (once: it was said again when the write was left out)
    assert strategy.cache_problem(path) == f"made by a newer wbcap: format {strategy.CACHE_FORMAT + 1}"
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # re-measuring on request: the write still says why it leaves the file
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(strategy.ENV_STRATEGY, "measure")
            choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert len(caplog.records) == 1 and "is a newer wbcap's" in caplog.text, caplog.text
    assert path.read_bytes() == before


def test_a_folder_at_the_cache_path_is_one_warning(micro_parts, tmp_path, caplog, measure):
    """A folder where cpu_strategy.json should be: read and write both fail; said once."""
    path = tmp_path / "cpu_strategy.json"
    path.mkdir()
    with caplog.at_level(logging.WARNING):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert chosen.source == "measured" and path.is_dir()
    assert len(caplog.records) == 1 and "(not a regular file)" in caplog.text, caplog.text


@pytest.mark.parametrize("make", ["fifo", "huge", "refusing folder"])
def test_a_cache_path_that_cannot_serve_is_passed_by(micro_parts, tmp_path, caplog, measure, monkeypatch, make):
    """A FIFO where the cache should be is not read (the read would wait forever), nor a file
    larger than any cache; a folder that refuses new files (EPERM, EACCES: an InputError from the
    atomic write) costs the measurement next time, with a warning: the run goes on."""
    import os

    import wbcap.user_cache as user_cache

    path = tmp_path / "cpu_strategy.json"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "huge":
        monkeypatch.setattr(user_cache, "MAX_BYTES", 10)
        path.write_text(json.dumps({"format": strategy.CACHE_FORMAT, "machines": {}}))
    else:
        import wbcap.atomic as atomic

        def refuse(*args, **kwargs):
            raise InputError(f"{path.parent}: cannot write cpu_strategy.json in this folder (Operation not permitted)")

        monkeypatch.setattr(atomic, "atomic_write_text", refuse)
    with caplog.at_level(logging.WARNING):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert chosen.source == "measured"
    if make == "refusing folder":
        assert "could not write the CPU strategy cache" in caplog.text and "Operation not permitted" in caplog.text
    else:
        assert "ignoring the CPU strategy cache" in caplog.text
        problem = strategy.cache_problem(path)
        assert problem == "not a regular file" if make == "fifo" else problem.endswith("more than a cache of wbcap's holds")


@pytest.mark.parametrize("content, said", [("null", "not a format-"), ("machine is a string", "no table of parts"),
                                           ("parts are a list", "no table of parts")])
def test_doctor_says_why_a_damaged_cache_is_not_used(micro_parts, tmp_path, measure, monkeypatch, content, said):
    """A cache file holding ``null``, or whose entry for this machine is not a table of parts, is
    measured again like a missing one, and `wbcap doctor` says why it is not used (it said "not
    measured on this machine yet" as for no file)."""
    from wbcap.doctor import _cpu_strategy_check

    path = tmp_path / "cpu_strategy.json"
    assert strategy.cache_problem(path) is None  # (no file: nothing to say)
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert strategy.cache_problem(path) is None  # (a good file)
    data = json.loads(path.read_text())
    mid = next(iter(data["machines"]))
    if content == "null":
        path.write_text("null")
    else:
        data["machines"][mid] = "fused" if content == "machine is a string" else {"parts": [1, 2, 3]}
        path.write_text(json.dumps(data))
    assert strategy.cached_choices(path) == {}
    assert said in strategy.cache_problem(path)
    monkeypatch.delenv(strategy.ENV_STRATEGY, raising=False)
    monkeypatch.setattr(strategy, "cache_path", lambda: path)
    check = _cpu_strategy_check()
    assert check.ok and f"its cache {path} cannot be used: " in check.detail and said in check.detail, check.detail


def test_selection_scores_the_batches_a_part_sees():
    """The hand network takes two images per crop: a form slow only at one image per call is not
    penalised for it (measured on the 2-core Xeon, fp32 hand ResNet-50, ms per image: fused
    150 / 46 / 52 at 1 / 2 / 4 images per call, plain 74 / 56 at 1 / 4)."""
    from wbcap.model.strategy import predicted_per_image

    hand = {("fused", 1): 0.150, ("fused", 2): 0.046, ("fused", 4): 0.052, ("plain", 1): 0.074, ("plain", 4): 0.056}
    form, plan = select_form(hand, per_crop=2)
    assert form == "fused" and plan.calls(2) == (2,) and plan.calls(8) == (2, 2, 2, 2)
    assert predicted_per_image(plan, 2) == pytest.approx(0.046)
    # with one image per crop (e.g. the body network) a slow single-image call counts
    slow_single = {**hand, ("fused", 1): 0.300}
    assert select_form(slow_single, per_crop=2)[0] == "fused" and select_form(slow_single, per_crop=1)[0] == "plain"


@pytest.mark.parametrize("edit", [{"form": "winograd"},
                                  # (crashed every load and `wbcap doctor`: IndexError, OverflowError)
                                  {"form": "fused", "single": "onnxruntime", "per_image_s": {}},
                                  {"per_crop": 1e999}, {"alternates": {"0": [1e999]}}])
def test_a_malformed_entry_is_measured_again(micro_parts, tmp_path, caplog, measure, edit):
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    slot = next(iter(data["machines"].values()))
    body = next(pid for pid in slot["parts"] if pid.startswith("body_backbone"))
    slot["parts"][body].update(edit)
    path.write_text(json.dumps(data))
    assert body not in strategy.cached_choices(path)  # (what `wbcap doctor` reads)
    problem = strategy.cache_problem(path)  # (what it says of it)
    assert problem.startswith(f"its entry for {body} cannot be read (") and "\n" not in problem, problem
    measure.asked.clear()
    measure.form = "fused"
    with caplog.at_level(logging.WARNING):
        chosen, built = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert set(built) == {"body_backbone"} and chosen.parts["body_backbone"].form == "fused"
    assert "ignoring the cached CPU strategy for body_backbone" in caplog.text


def test_measure_request_measures_again(micro_parts, tmp_path, measure):
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    measure.form = "fused"
    chosen, _ = choose_cpu_strategy(micro_parts, FP32, "measure", path=path, busy=lambda: False)
    assert chosen.source == "measured" and {c.form for c in chosen.parts.values()} == {"fused"}
    assert choose_cpu_strategy(micro_parts, FP32, path=path)[0].parts["face_backbone"].form == "fused"


def test_a_busy_machine_runs_the_default_and_caches_nothing(micro_parts, tmp_path, caplog, measure, monkeypatch):
    path = tmp_path / "cpu_strategy.json"
    monkeypatch.setattr(strategy, "BUSY_WAIT_S", 0.3)
    with caplog.at_level(logging.WARNING):
        chosen, built = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: True)
    assert chosen.source == "default" and built == {} and not path.exists() and measure.asked == []
    assert all(c.form == "fused" and c.chunks == ChunkPlan.fixed(4) for c in chosen.parts.values())
    assert "of body_backbone, hand_backbone, face_backbone, box_net is not measured now" in caplog.text

    measure.busy_after = 2  # busy from the third part on: the first two are measured and kept
    chosen, built = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert chosen.source == "measured+default" and set(built) == {"body_backbone", "hand_backbone"}
    assert chosen.parts["body_backbone"].form == "plain" and chosen.parts["box_net"].form == "fused"
    assert len(next(iter(json.loads(path.read_text())["machines"].values()))["parts"]) == 2


def test_a_moment_of_load_is_waited_for(micro_parts, tmp_path, measure, monkeypatch):
    """A machine busy for a moment (wbcap image's own render child starting) is measured once
    it is quiet, within BUSY_WAIT_S; one busy for longer is not."""
    answers = iter([True, True, True])
    monkeypatch.setattr(strategy, "BUSY_WAIT_S", 5.0)
    monkeypatch.setattr(strategy.time, "sleep", lambda s: None)
    chosen, built = choose_cpu_strategy(micro_parts, FP32, path=tmp_path / "a.json", busy=lambda: next(answers, False))
    assert chosen.source == "measured" and set(built) == set(micro_parts)
    clock = iter(range(0, 1000))  # monotonic seconds: one per question
    monkeypatch.setattr(strategy.time, "monotonic", lambda: float(next(clock)))
    chosen, built = choose_cpu_strategy(micro_parts, FP32, path=tmp_path / "b.json", busy=lambda: True)
    assert chosen.source == "default" and built == {}


def test_time_interleaved_keeps_clean_calls_only(monkeypatch):
    # (wall s, share of it the threads ran): a call with less than CLEAN_SHARE of the best share
    # of its candidate was slowed by other processes and does not count
    script = iter([(5.0, 0.3), (2.0, 0.9), (1.0, 0.95), (3.0, 0.85), (0.5, 0.2), (4.0, 0.9)])
    order = []
    monkeypatch.setattr(strategy, "_timed", lambda fn, threads: (fn(), next(script))[1])
    got = strategy.time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 2)
    # a: 5.0 (not clean), 1.0, then 0.5 (not clean), 4.0 -> 1.0; b: 2.0, 3.0 -> 2.0 after two rounds
    assert got == {"a": 1.0, "b": 2.0} and order == ["a", "b", "a", "b", "a", "a"]


# -- forcing a strategy --------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    (None, StrategyRequest("auto")), ("", StrategyRequest("auto")), (" ", StrategyRequest("auto")),
    ("measure", StrategyRequest("measure")),
    ("fused", StrategyRequest("forced", "fused", 4)), ("Plain:2", StrategyRequest("forced", "plain", 2)),
    ("onnxruntime:3", StrategyRequest("forced", "onnxruntime", 3)),
    (f"int8:{strategy.MAX_FORCED_CHUNK}", StrategyRequest("forced", "int8", strategy.MAX_FORCED_CHUNK)),
])
def test_strategy_request_parse(text, expected):
    assert StrategyRequest.parse(text) == expected


@pytest.mark.parametrize("text", ["fast", "fused:0", "plain:x", "fused:2:3", "int8:100000000000",
                                  "fused:99999999999999999999", f"fused:{strategy.MAX_FORCED_CHUNK + 1}"])
def test_strategy_request_refuses_other_values_in_one_line(text):
    with pytest.raises(InputError, match="use auto, measure, fused, plain") as e:
        StrategyRequest.parse(text)
    assert "\n" not in str(e.value)


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_forced_by_the_environment(monkeypatch, micro_net):
    monkeypatch.setenv(strategy.ENV_STRATEGY, "plain:2")
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    st = net.cpu_strategy
    assert isinstance(st, CpuStrategy) and st.source == "forced"
    backbones = (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone)
    assert all(not b.stem.packed and b.chunks == ChunkPlan.fixed(2) for b in backbones)
    assert st.summary(3) == "plain: body 2+1, hand 2+2+2, face 2+1, box 2+1"
    assert st.describe(1)["hand_backbone"] == "plain 2"
    # an explicit chunk forces fused convolutions of that size, whatever the environment says
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", chunk=3)
    assert net.backbone.stem.packed and net.backbone.chunks == ChunkPlan.fixed(3)
    monkeypatch.setenv(strategy.ENV_STRATEGY, "quick")
    net = copy.deepcopy(micro_net)
    with pytest.raises(InputError, match="WBCAP_CPU_STRATEGY"):
        optimize_for_inference(net, "cpu", "exact")


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_forced_onnxruntime(monkeypatch, micro_net, caplog):
    """The float32 ResNets in that form, the box network fused; the fast mode's bfloat16 ResNets
    stay fused, with a warning that nothing took the form (where the CPU has no bfloat16, fast's
    ResNets are float32 and take it)."""
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    monkeypatch.setenv(strategy.ENV_STRATEGY, "onnxruntime:2")
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    backbones = (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone)
    assert all(isinstance(b, OrtResNet) and b.chunks == ChunkPlan.fixed(2) for b in backbones)
    assert net.cpu_strategy.summary(3) == "onnxruntime: body 2+1, hand 2+2+2, face 2+1, box fused 2+1"
    if bf16_supported():
        with caplog.at_level(logging.WARNING):
            net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "fast")
        assert not any(isinstance(m, OrtResNet) for m in net.modules())
        assert {c.form for c in net.cpu_strategy.parts.values()} == {"fused"}
        assert "runs float32 ResNets only" in caplog.text
    # without bfloat16 (this CPU's, or made so): fast's ResNets are float32 ones, which the form runs
    import wbcap.model.inference as inference

    monkeypatch.setattr(inference, "bf16_supported", lambda: False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "fast")
    assert "no bfloat16 instructions" in caplog.text
    assert net.cpu_strategy.summary(3) == "onnxruntime: body 2+1, hand 2+2+2, face 2+1, box fused 2+1"


def test_forced_graph(monkeypatch, micro_net):
    """The ResNets compiled by oneDNN Graph, in float32 (exact) and bfloat16 (fast, where the CPU
    has it), the box network fused (not a candidate: oneDNN Graph's deconvolutions were 2.8x slower)."""
    monkeypatch.setenv(strategy.ENV_STRATEGY, "graph:2")
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    backbones = (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone)
    assert all(isinstance(b, GraphResNet) and b.chunks == ChunkPlan.fixed(2) and b.dtype == torch.float32
               for b in backbones)
    assert net.cpu_strategy.summary(3) == "graph: body 2+1, hand 2+2+2, face 2+1, box fused 2+1"
    assert not graph_applies(tuned_parts(micro_net)["box_net"].module, torch.float32)
    if bf16_supported():
        net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "fast")
        assert all(isinstance(b, GraphResNet) and b.dtype == torch.bfloat16
                   for b in (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone))


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_graph_form_chosen_for_resnets_when_faster_and_read_back_from_the_cache(micro_net, micro_reference, tmp_path,
                                                                               monkeypatch, caplog):
    x, ref = micro_reference
    graph_wins = {**FUSED_WINS, ("graph", 1): 0.3, ("graph", 2): 0.2}
    _measure_with(monkeypatch, tmp_path, graph_wins)
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert net.cpu_strategy.source == "measured"
    for name in ("body_backbone", "hand_backbone", "face_backbone"):
        choice = net.cpu_strategy.parts[name]
        assert choice.form == "graph" and choice.alternates is None and not choice.winograd_used(), name
    assert isinstance(net.backbone, GraphResNet) and net.cpu_strategy.parts["box_net"].form == "fused"
    with torch.inference_mode():
        out = _outputs(net(x))
    for key, value in _outputs(ref).items():
        assert (out[key] - value).abs().max() <= 1e-4 * max(1.0, value.abs().max().item()), key
    # read back: the same forms, nothing measured
    monkeypatch.setattr(strategy, "time_interleaved", never)
    again = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert again.cpu_strategy.source == "cache" and isinstance(again.hand_roi_net.backbone, GraphResNet)
    assert again.hand_roi_net.backbone.chunks == net.cpu_strategy.parts["hand_backbone"].chunks
    # a few calls (one photo) do not pay its tracing and compiling: the best other measured form
    few = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=1)
    assert isinstance(few.backbone, FusedResNet) and few.cpu_strategy.parts["body_backbone"].form == "fused"
    # TorchScript or oneDNN Graph broken since it was measured: fused, with a warning
    import wbcap.model.inference as inference

    def broken(*args, **kwargs):
        raise RuntimeError("no fuser here")

    monkeypatch.setattr(inference.GraphResNet, "__init__", broken)
    with caplog.at_level(logging.WARNING):
        fallen = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert isinstance(fallen.backbone, FusedResNet) and fallen.cpu_strategy.parts["body_backbone"].form == "fused"
    assert "oneDNN Graph form chosen for this machine could not be built (no fuser here)" in caplog.text


def test_graph_form_dropped_when_it_cannot_be_built(micro_parts, direct_layers, monkeypatch, caplog):
    """Whatever goes wrong in TorchScript only drops the form (a warning), as for onnxruntime."""
    def broken(*args, **kwargs):
        raise RuntimeError("tracing failed")

    monkeypatch.setattr(strategy.GraphResNet, "__init__", broken)
    graph_wins = {**FUSED_WINS, ("graph", 1): 0.3, ("graph", 2): 0.2, ("graph", 4): 0.1}
    with caplog.at_level(logging.WARNING):
        choice, module = strategy.measure_part(micro_parts["face_backbone"], torch.float32, True, chunks=(1, 2),
                                               timer=fake_timer(graph_wins))
    assert choice.form == "fused" and isinstance(module, FusedResNet) and "graph" not in choice.measured
    assert "the oneDNN Graph form could not be built (tracing failed); not used" in caplog.text


def _measure_with(monkeypatch, tmp_path, per_image, build_times: bool = False, subpixel_s: dict | None = None):
    """optimize_for_inference measures with fake timings (chunk sizes 1 and 2; the deconvolution
    forms' from ``subpixel_s``, see :func:`fake_timer`) into a cache in ``tmp_path``; without
    ``build_times`` no build times are kept (real ones, weighed against the fake call times, would
    choose the forms of a few calls at random)."""
    if not build_times:
        monkeypatch.setattr(strategy, "few_call_build_times", lambda *args, **kwargs: {})
    monkeypatch.setattr(strategy, "cache_path", lambda: tmp_path / "cpu_strategy.json")
    monkeypatch.setattr(strategy, "time_interleaved", fake_timer(per_image, subpixel_s))
    monkeypatch.setattr(strategy, "machine_busy", lambda: False)
    monkeypatch.setattr(strategy, "chunk_candidates", lambda threads=None: (1, 2))


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_a_network_for_a_few_calls_is_not_measured_on_a_new_machine(micro_net, micro_reference, tmp_path,
                                                                      monkeypatch):
    """``wbcap image`` of a few photos on a machine without a cached strategy: every part in the
    default form (fused), nothing measured or cached, the outputs the module-by-module network's;
    ``measure=True`` (or many calls) measures."""
    _measure_with(monkeypatch, tmp_path, FUSED_WINS)
    monkeypatch.setattr(strategy, "time_interleaved", never)
    few = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=1)
    assert few.cpu_strategy.source == "default" and not (tmp_path / "cpu_strategy.json").exists()
    assert {c.form for c in few.cpu_strategy.parts.values()} == {"fused"} and isinstance(few.backbone, FusedResNet)
    x, ref = micro_reference
    with torch.inference_mode():
        out = _outputs(few(x))
    for key, value in _outputs(ref).items():
        assert (out[key] - value).abs().max() <= 1e-4 * max(1.0, value.abs().max().item()), key
    with pytest.raises(AssertionError, match="nothing should be measured"):
        optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=1, measure=True)
    with pytest.raises(AssertionError, match="nothing should be measured"):
        optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_an_onnxruntime_choice_is_read_back_from_the_cache(micro_net, micro_reference, tmp_path, monkeypatch,
                                                            direct_layers, caplog):
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    _measure_with(monkeypatch, tmp_path, {**FUSED_WINS, ("onnxruntime", 1): 0.3, ("onnxruntime", 2): 0.2})
    first = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    again = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert first.cpu_strategy.source == "measured" and again.cpu_strategy.source == "cache"
    for net in (first, again):
        backbones = (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone)
        assert all(isinstance(b, OrtResNet) for b in backbones) and not isinstance(net.box_net.deconv, OrtResNet)
    x, ref = micro_reference
    with torch.inference_mode():
        out = _outputs(again(x))
    for name, value in _outputs(ref).items():
        assert (out[name] - value).abs().max() <= 1e-4 * max(1.0, value.abs().max().item()), name
    # onnxruntime broken since it was measured: the cached choice runs fused, with a warning
    def broken(*args, **kwargs):
        raise RuntimeError("onnxruntime went away")

    monkeypatch.setattr(OrtResNet, "__init__", broken)
    with caplog.at_level(logging.WARNING):
        net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert isinstance(net.backbone, FusedResNet) and "could not be built (onnxruntime went away)" in caplog.text


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_few_calls_run_the_cached_onnxruntime_choices_fused(micro_net, micro_reference, tmp_path, monkeypatch,
                                                           direct_layers):
    """Built for a few calls (`wbcap image` of a few photos), a cached onnxruntime choice runs in
    the fused form measured with it, with that form's measured times (a session costs more to
    build than it saves there); net.cpu_strategy says what runs; the outputs equal the reference."""
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    _measure_with(monkeypatch, tmp_path, {**FUSED_WINS, ("onnxruntime", 1): 0.3, ("onnxruntime", 2): 0.2})
    many = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")  # measured and cached
    written = (tmp_path / "cpu_strategy.json").read_bytes()
    few = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=True)
    assert few.cpu_strategy.source == "cache"
    assert (tmp_path / "cpu_strategy.json").read_bytes() == written  # (what runs for a few calls is not cached)
    for name, backbone in (("body_backbone", few.backbone), ("hand_backbone", few.hand_roi_net.backbone),
                           ("face_backbone", few.face_roi_net.backbone)):
        cached = many.cpu_strategy.parts[name]
        assert cached.form == "onnxruntime" and isinstance(backbone, FusedResNet), name
        choice = few.cpu_strategy.parts[name]
        assert choice.form == "fused" and choice.chunks.per_image_s == ((1, 1.0), (2, 0.6)), (name, choice)
        # (no packings known for it: packed for one person's call, other sizes when first called)
        assert backbone.chunk == (2 if name == "hand_backbone" else 1) and backbone.alternates is None, name
    x, ref = micro_reference
    with torch.inference_mode():
        out = _outputs(few(x))
    for name, value in _outputs(ref).items():
        assert (out[name] - value).abs().max() <= 1e-4 * max(1.0, value.abs().max().item()), name
    assert not any(isinstance(m, OrtResNet) for m in few.modules())


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_few_calls_run_one_image_calls_in_the_main_form(micro_net, micro_reference, tmp_path, monkeypatch,
                                                        direct_layers):
    """A cached choice whose one-image calls go through onnxruntime, built for a few calls: no
    session and no SingleImageForm is built, the plan's one-image time is the main form's own,
    and the outputs equal the reference."""
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    _measure_with(monkeypatch, tmp_path, SINGLE_WINS)
    many = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert any(c.single == "onnxruntime" for c in many.cpu_strategy.parts.values())
    few = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=True)
    assert not any(isinstance(m, (OrtResNet, SingleImageForm)) for m in few.modules())
    for name, choice in few.cpu_strategy.parts.items():
        assert choice.single is None and choice.chunks.per_image_s[0] == (1, 1.0), (name, choice)
    x, ref = micro_reference
    with torch.inference_mode():
        out = _outputs(few(x))
    for name, value in _outputs(ref).items():
        assert (out[name] - value).abs().max() <= 1e-4 * max(1.0, value.abs().max().item()), name


def test_for_few_calls_gives_the_calls_of_one_image_back_to_the_main_form():
    """A fused choice whose one-image calls go through onnxruntime (or a oneDNN Graph) keeps them
    fused, at the fused form's own measured time for one image; forms that are cheap to build are
    left as they are."""
    for other in strategy.SINGLE_FORMS:
        single = PartChoice("fused", ChunkPlan(((1, 0.05), (2, 0.09))), per_crop=2, single=other,
                            measured={"fused": {1: 0.1, 2: 0.09}, other: {1: 0.05}}, alternates={3: (1,)})
        few = single.for_few_calls()
        assert few.form == "fused" and few.single is None and few.chunks.per_image_s == ((1, 0.1), (2, 0.09))
        assert few.alternates == {3: (1,)}  # (the fused form's own packings, measured with it, kept)
    for form in ("fused", "plain", "int8"):
        cheap = PartChoice(form, ChunkPlan(((1, 0.1), (4, 0.05))), measured={form: {1: 0.1, 4: 0.05}, "fused": {1: 0.2}})
        assert cheap.for_few_calls() is cheap
    unmeasured = PartChoice("onnxruntime", ChunkPlan.fixed(4))  # (forced: no other form's time to run by)
    assert unmeasured.for_few_calls() is unmeasured
    # fast on a CPU without bfloat16 measures its baseline and int8 only: the best of the others
    fast = PartChoice("onnxruntime", ChunkPlan(((1, 0.2), (2, 0.15))), winograd=((), ()),
                      measured={"onnxruntime": {1: 0.2, 2: 0.15}, "int8": {1: 0.3, 2: 0.25, 4: 0.2}})
    few = fast.for_few_calls()
    assert few.form == "int8" and few.chunks.per_image_s == ((1, 0.3), (2, 0.25), (4, 0.2)) and few.alternates is None
    both = PartChoice("onnxruntime", ChunkPlan(((1, 0.2),)), measured={
        "onnxruntime": {1: 0.2}, "fused": {1: 1.0, 2: 0.9}, "plain": {1: 0.5, 2: 0.45}})
    assert both.for_few_calls().form == "plain"  # (select_form: plain beats fused by more than the margin)


def test_for_few_calls_weighs_the_measured_build_times():
    """With build times (build_s: the build and the first call), a few calls run the form whose
    build and calls together are predicted cheapest: the fast int8 form that builds 0.6 s slower
    and saves 0.1 s a crop gives way to fused for 1-5 crops and stays from 6 on (where fused is
    no longer cheaper by the 10 % margin); without build times nothing changes."""
    int8 = PartChoice("int8", ChunkPlan(((1, 0.05), (2, 0.04))), per_crop=2, winograd=((), ()),
                      measured={"int8": {1: 0.05, 2: 0.04}, "fused": {1: 0.1, 2: 0.09}},
                      build_s={"int8": 0.8, "fused": 0.2})
    # one crop = two hand images in a call of 2, after the first: int8 0.8 + 2 x 0.04 = 0.88 s, fused
    # 0.2 + 2 x 0.09 = 0.38 s
    assert int8.few_call_cost("int8", 2) == pytest.approx(0.88) and int8.few_call_cost("fused", 2) == pytest.approx(0.38)
    assert int8.few_call_cost("int8", 1) == pytest.approx(0.8)
    for calls, form in ((1, "fused"), (5, "fused"), (6, "int8"), (8, "int8")):
        few = int8.for_few_calls(calls)
        assert few.form == form, calls
        if form == "fused":
            assert few.chunks.per_image_s == ((1, 0.1), (2, 0.09)) and few.alternates is None and few.winograd == ((), ())
        else:
            assert few is int8
    assert dataclasses.replace(int8, build_s={}).for_few_calls(1).form == "int8"  # (not measured: as before)
    assert dataclasses.replace(int8, build_s={"int8": 0.8}).for_few_calls(1).form == "int8"  # (fused's unknown)
    # a fused choice keeps its Winograd plan and packings when it stays; switched to plain, it
    # runs plain's measured plan without them (they were chosen for the fused form)
    fused = PartChoice("fused", ChunkPlan(((1, 0.1),)), winograd=(((1, 4),),), alternates={0: (2,)},
                       measured={"fused": {1: 0.1}, "plain": {1: 0.3, 2: 0.2}}, build_s={"fused": 0.2, "plain": 0.35})
    assert fused.for_few_calls(1) is fused and fused.for_few_calls(1).winograd == (((1, 4),),)
    plain = dataclasses.replace(fused, build_s={"fused": 1.0, "plain": 0.1}).for_few_calls(1)
    assert plain.form == "plain" and plain.chunks.per_image_s == ((1, 0.3), (2, 0.2))
    assert plain.alternates is None and plain.winograd == ((),)
    # round trip through the cache's form; malformed build times (an edited cache) read as none,
    # the rest of the entry kept (not measured again for them)
    assert PartChoice.from_dict(int8.to_dict()) == int8
    for bad in ({"int8": -1.0}, {"int8": float("nan")}, {"gpu": 1.0}, {"int8": "fast"}, {"int8": 10**400}, [1, 2],
                None, "1.0"):
        assert PartChoice.from_dict({**int8.to_dict(), "build_s": bad}) == dataclasses.replace(int8, build_s={}), bad


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_measured_build_times_decide_the_form_of_a_few_calls(micro_net, micro_reference, tmp_path, monkeypatch,
                                                            direct_layers):
    """A measurement keeps each measured form's build time; read back with build times that make
    plain cheaper over one call (edited here: plain builds in no time, fused in 5 s), a build for
    one call runs plain (its results equal the reference), one for many calls fused; nothing is
    written to the cache by either."""
    _measure_with(monkeypatch, tmp_path, FUSED_WINS, build_times=True)
    many = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    for name, choice in many.cpu_strategy.parts.items():
        assert set(choice.build_s) == set(choice.measured) - set(strategy.COSTLY_BUILD_FORMS), name
        assert all(0 < t < 60 for t in choice.build_s.values()), (name, choice.build_s)
    path = tmp_path / "cpu_strategy.json"
    data = json.loads(path.read_text())
    for machine in data["machines"].values():
        for entry in machine["parts"].values():
            entry["build_s"] = {"fused": 5.0, "plain": 0.0}
    path.write_text(json.dumps(data))
    written = path.read_bytes()
    one = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=1)
    assert {c.form for c in one.cpu_strategy.parts.values()} == {"plain"}
    x, ref = micro_reference
    with torch.inference_mode():
        out = _outputs(one(x))
    for name, value in _outputs(ref).items():
        assert (out[name] - value).abs().max() <= 1e-4 * max(1.0, value.abs().max().item()), name
    lots = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact", few_calls=10**6)
    assert {c.form for c in lots.cpu_strategy.parts.values()} == {"fused"}
    assert path.read_bytes() == written


def test_build_times_are_taken_as_a_load_builds_each_form(micro_parts, monkeypatch, caplog):
    """few_call_build_times builds each measured form but onnxruntime as a few-call load does
    (build_form with few_calls): the chosen form with its own Winograd plan and packings, the
    others switched to (their measured plans, none of those), the int8 form with a fresh
    calibration cache object, each then called once on one crop's images; a form whose build
    fails is left out with a warning, the others still timed."""
    from wbcap.model import inference

    part = micro_parts["hand_backbone"]  # (two images per crop)
    calls = []

    class Called(nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x

    def build_form(part_, dtype, packed, choice, fast, calibrations=None, few_calls=False):
        built.append((choice, calibrations, few_calls))
        if choice.form == "plain":
            raise RuntimeError("no plain today")
        return Called()

    monkeypatch.setattr(inference, "build_form", build_form)
    shared = strategy.CalibrationCache(None)
    choice = PartChoice("fused", ChunkPlan(((1, 0.3), (2, 0.2))), per_crop=2, winograd=(((1, 4),),),
                        alternates={0: (1,)}, single="onnxruntime",
                        measured={"fused": {1: 0.3, 2: 0.2}, "plain": {1: 0.5}, "int8": {1: 0.1, 4: 0.05},
                                  "onnxruntime": {1: 0.25}})
    built: list = []
    with caplog.at_level(logging.WARNING):
        times = strategy.few_call_build_times(part, torch.float32, choice, True, True, shared)
    assert set(times) == {"fused", "int8"} and all(t >= 0 for t in times.values())
    assert "timing the plain form's build failed (no plain today)" in caplog.text
    specs = {c.form: (c, cache, few) for c, cache, few in built}
    assert set(specs) == {"fused", "plain", "int8"} and all(few for _, _, few in specs.values())
    own = specs["fused"][0]
    assert own.winograd == (((1, 4),),) and own.alternates == {0: (1,)} and own.single is None
    assert own.chunks == choice.chunks
    int8_spec, int8_cache, _ = specs["int8"]
    assert int8_spec.chunks.per_image_s == ((1, 0.1), (4, 0.05)) and int8_spec.alternates is None
    assert int8_spec.winograd == ((),) and isinstance(int8_cache, strategy.CalibrationCache) and int8_cache is not shared
    assert calls == [(2, *part.item_shape)] * 2  # (fused and int8: one call of one crop's two hands each)


def test_after_timing_again_the_choice_is_between_the_default_and_the_winner(micro_parts, direct_layers):
    """plain wins the first rounds (onnxruntime within FORM_MARGIN of it); timed again, fused
    comes within the margin of plain, and onnxruntime, not timed again, would now beat fused by
    the margin: the default (fused) and plain decide, and fused stays."""
    pytest.importorskip("onnx")
    first = {("fused", 1): 1.0, ("fused", 2): 1.0, ("plain", 1): 0.5, ("plain", 2): 0.5,
             ("onnxruntime", 1): 0.488, ("onnxruntime", 2): 0.488}
    second = {**first, ("fused", 1): 0.51, ("fused", 2): 0.51}
    answers = iter([first, second])
    asked: list = []
    choice, _ = strategy.measure_part(micro_parts["face_backbone"], torch.float32, True, chunks=(1, 2),
                                      timer=lambda calls, rounds: fake_timer(next(answers), log=asked)(calls, rounds))
    assert choice.form == "fused" and choice.chunks.per_image_s == ((1, 0.51), (2, 0.51)) and choice.single is None
    assert asked[-1] == sorted([("fused", 1), ("fused", 2), ("plain", 1), ("plain", 2)], key=str)
    # onnxruntime, faster at one image by MARGIN, is timed again there with fused before it takes
    # those calls: fused's one-image time improves, onnxruntime is within the margin of it, so it does not
    first = {("fused", 1): 0.52, ("fused", 2): 0.44, ("plain", 1): 1.0, ("plain", 2): 1.0,
             ("onnxruntime", 1): 0.45, ("onnxruntime", 2): 0.6}
    answers = iter([first, {**first, ("fused", 1): 0.5}])
    asked.clear()
    choice, _ = strategy.measure_part(micro_parts["face_backbone"], torch.float32, True, chunks=(1, 2),
                                      timer=lambda calls, rounds: fake_timer(next(answers), log=asked)(calls, rounds))
    assert choice.form == "fused" and choice.chunks.per_image_s == ((1, 0.5), (2, 0.44)) and choice.single is None
    assert asked[-1] == [("fused", 1), ("onnxruntime", 1)]


def test_an_onnxruntime_form_that_fails_is_not_a_candidate(micro_parts, direct_layers, monkeypatch, caplog):
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    ok, real_init = OrtResNet.forward, OrtResNet.__init__

    def fails(self, x):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION\nmore")

    def cannot_build(self, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : no session")

    ort_wins = {**FUSED_WINS, ("onnxruntime", 1): 0.1, ("onnxruntime", 2): 0.1, ("onnxruntime", 4): 0.1}

    def measured_without_onnxruntime() -> str:
        """Measure the part with onnxruntime timed fastest; it must be dropped: the warnings."""
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            choice, module = strategy.measure_part(micro_parts["face_backbone"], torch.float32, True, chunks=(1, 2),
                                                   timer=fake_timer(ort_wins))
        assert choice.form == "fused" and "onnxruntime" not in choice.measured and isinstance(module, FusedResNet)
        return caplog.text

    monkeypatch.setattr(OrtResNet, "forward", fails)
    assert "failed on 1 images ([ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION); not used" in measured_without_onnxruntime()
    # ... and when its session cannot be made
    monkeypatch.setattr(OrtResNet, "__init__", cannot_build)
    assert "could not be built ([ONNXRuntimeError] : 1 : FAIL : no session); not used" in measured_without_onnxruntime()
    monkeypatch.setattr(OrtResNet, "__init__", real_init)

    # ... also when only a larger call fails
    def fails_on_two(self, x):
        if x.shape[0] > 1:
            raise RuntimeError("out of memory")
        return ok(self, x)

    monkeypatch.setattr(OrtResNet, "forward", fails_on_two)
    assert "the onnxruntime form failed on 2 images (out of memory); not used" in measured_without_onnxruntime()


@pytest.mark.parametrize("form", ["onnxruntime", "int8"])
def test_a_cached_choice_of_a_form_that_does_not_apply_is_measured_again(micro_parts, tmp_path, measure, caplog,
                                                                        form):
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    slot = next(iter(data["machines"].values()))
    box = next(pid for pid in slot["parts"] if pid.startswith("box_net"))
    slot["parts"][box]["form"] = form  # an edited file: the box network has no such form
    path.write_text(json.dumps(data))
    measure.asked.clear()
    with caplog.at_level(logging.WARNING):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert measure.asked == [("box_net", torch.float32)] and chosen.parts["box_net"].form == "plain"
    assert f"the {form} form does not apply to it" in caplog.text


# -- every exact candidate equals the module-by-module network, at every batch size ---------------


def _measured(form: str, subpixel: bool) -> str:
    return f"measured-{form}" + ("-subpixel" if subpixel else "")


# Chunk sizes: fused:4 runs the 3 crops in one call, plain:2 in calls of 2 + 1, the measured ones
# by their plans (sizes 1 and 2); every one is compared with single crops too.
CANDIDATES = ["fused:4", "plain:2", "onnxruntime:2", "graph:2", pytest.param(_measured("fused", True), marks=pytest.mark.slow),
              pytest.param(_measured("plain", True), marks=pytest.mark.slow),  # the forms: fused:4 and plain:2
              pytest.param("measured-single", marks=pytest.mark.slow),  # one-image calls through onnxruntime
              pytest.param("measured-fused-col2im", marks=pytest.mark.slow)]  # the deconvolutions as col2im
#: Fused is the faster form, but onnxruntime is faster at one image per call (the hand ResNet-50
#: on the Zen 3 EPYC): with sizes 1 and 2, a batch of 3 runs as 2 (fused) + 1 (onnxruntime).
SINGLE_WINS = {**FUSED_WINS, ("onnxruntime", 1): 0.85, ("onnxruntime", 2): 0.9, ("onnxruntime", 4): 0.9}


@pytest.fixture(scope="module")
def micro_net():
    """An unconverted MICRO network (deep-copied by each test that converts it)."""
    return random_network(MICRO, seed=2)


@pytest.fixture(scope="module")
def micro_reference(micro_net):
    """The module-by-module MICRO network's outputs for 3 crops."""
    x = torch.rand(3, 3, 256, 192, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        return x, micro_net(x)


def _outputs(out) -> dict[str, torch.Tensor]:
    d = {f"smplx.{k}": v for k, v in out.smplx.items()}
    d.update({k: getattr(out, k) for k in ("joint_img", "lhand_bbox", "rhand_bbox", "face_bbox", "cam_param")})
    return d


@pytest.mark.parametrize("candidate", CANDIDATES)
def test_every_exact_candidate_equals_the_reference_and_is_batch_invariant(candidate, micro_net, micro_reference,
                                                                          tmp_path, monkeypatch):
    x, ref = micro_reference
    net = copy.deepcopy(micro_net)
    if candidate == "measured-single":
        pytest.importorskip("onnx")
        _measure_with(monkeypatch, tmp_path, SINGLE_WINS)
        net = optimize_for_inference(net, "cpu", "exact")
        backbones = (net.backbone, net.hand_roi_net.backbone, net.face_roi_net.backbone)
        assert all(isinstance(b, SingleImageForm) for b in backbones)
        assert net.cpu_strategy.summary(3) == ("fused: body 2+1 (1 image: onnxruntime), hand 2+2+2, "
                                               "face 2+1 (1 image: onnxruntime), box 2+1")
    elif candidate.startswith("measured"):
        # a measured choice with every option taken (fake timings), through the real cache code
        per_image = PLAIN_WINS if "plain" in candidate else FUSED_WINS
        monkeypatch.setattr(strategy, "cache_path", lambda: tmp_path / "cpu_strategy.json")
        # fused: the sub-pixel convolutions as matrix products too; col2im: the deconvolutions as
        # one matrix product and a col2im
        col2im = candidate.endswith("col2im")
        sub_s = ({False: 2.0, True: 3.0, "gemm": 3.0, "col2im": 0.5} if col2im
                 else {False: 2.0, True: 1.0, "gemm": 0.5 if "fused" in candidate else 3.0})
        monkeypatch.setattr(strategy, "time_interleaved", fake_timer(per_image, sub_s, winograd_s=WINOGRAD_WINS))
        monkeypatch.setattr(strategy, "machine_busy", lambda: False)
        monkeypatch.setattr(strategy, "chunk_candidates", lambda threads=None: (1, 2))
        net = optimize_for_inference(net, "cpu", "exact")
        layers = net.box_net.deconv.layers
        assert net.cpu_strategy.source == "measured"
        if col2im:
            assert all(isinstance(m, Col2imDeconv) for m in layers)
        else:
            assert isinstance(layers[0], SubpixelDeconv) and isinstance(layers[0].conv, GemmConv) == ("fused" in candidate)
        # ... and Winograd layers from two images per call on: the 3 crops run as 2 + 1
        from wbcap.model.fused import ConvByBatchSize
        assert sum(isinstance(m, ConvByBatchSize) for m in net.modules()) == 39
    else:
        net = optimize_for_inference(net, "cpu", "exact", strategy=candidate)
    with torch.inference_mode():
        batched = _outputs(net(x))
        alone = [_outputs(net(x[i:i + 1])) for i in range(3)]
    for name, value in _outputs(ref).items():
        scale = max(1.0, value.abs().max().item())
        err = (batched[name] - value).abs().max().item()
        assert err <= 1e-4 * scale, f"{candidate}: {name} off by {err:.3g} from the module-by-module network"
        one = torch.cat([a[name] for a in alone])
        err = (one - batched[name]).abs().max().item()
        assert err <= 1e-5 * scale, f"{candidate}: {name} changes by {err:.3g} with the batch size"


@pytest.mark.parametrize("candidate", ["fused:2", "plain:2"])
def test_fast_candidates_stay_close_and_really_run_bf16(candidate, micro_net, micro_reference):
    if not bf16_supported():
        pytest.skip("no bfloat16 on this CPU")
    x, ref = micro_reference
    net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "fast", strategy=candidate)
    assert net.backbone.dtype == torch.bfloat16 and net.backbone.stem.packed == candidate.startswith("fused")
    with torch.inference_mode():
        out = _outputs(net(x))
    err = (out["joint_img"] - ref.joint_img).abs().max().item()
    assert 0 < err < 0.5, f"{candidate}: joints moved by {err:.3g} heatmap cells"


def test_fused_conv_stack_subpixel_equals_modules():
    from wbcap.model.layers import make_deconv_layers

    g = torch.Generator().manual_seed(3)
    seq = make_deconv_layers([40, 24, 24]).eval()
    with torch.no_grad():
        for m in seq.modules():
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / 40**0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
    x = torch.randn(3, 40, 5, 3, generator=g)
    with torch.inference_mode():
        ref = seq(x)
        for packed in (True, False):
            for gemm in ([False, False], [True, False]):
                stack = FusedConvStack(seq, [2, 40, 5, 3], packed=packed, subpixel=[True, False], gemm=gemm)
                assert isinstance(stack.layers[0], SubpixelDeconv) and stack.subpixel == (True, False)
                assert stack.gemm == tuple(gemm) and isinstance(stack.layers[0].conv, GemmConv) == gemm[0]
                out = stack(x)
                assert out.shape == ref.shape == (3, 24, 20, 12)
                assert (out - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
    with pytest.raises(ValueError, match="flags"):
        FusedConvStack(seq, [2, 40, 5, 3], subpixel=[True])
    # a matrix product without the sub-pixel form: the deconvolution and a col2im
    stack = FusedConvStack(seq, [2, 40, 5, 3], subpixel=[False, False], gemm=[True, False])
    assert isinstance(stack.layers[0], Col2imDeconv) and (stack.subpixel, stack.gemm) == ((False, False), (True, False))
    with torch.inference_mode():
        out = stack(x)
    assert (out - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


@pytest.mark.parametrize("kernel,stride,padding", [(4, 2, 1), (3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2), (4, 2, 0)])
def test_col2im_deconvolution_equals_the_transposed_convolution(kernel, stride, padding):
    """Col2imDeconv (BatchNorm folded, ReLU) against the module-by-module layers for several
    kernels, strides and paddings, packed and not: float32 within 1e-5 of the largest value, the
    same at one image per call as at three (1e-6), channels_last output."""
    g = torch.Generator().manual_seed(kernel * 10 + stride + padding)
    seq = nn.Sequential(nn.ConvTranspose2d(24, 16, kernel, stride, padding), nn.BatchNorm2d(16), nn.ReLU()).eval()
    with torch.no_grad():
        seq[0].weight.copy_(torch.randn(seq[0].weight.shape, generator=g) / 24**0.5)
        seq[1].running_mean.copy_(torch.randn(16, generator=g) * 0.1)
        seq[1].running_var.copy_(torch.rand(16, generator=g) + 0.5)
        seq[1].weight.copy_(torch.randn(16, generator=g))
    x = torch.randn(3, 24, 5, 7, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = seq(x)
        scale = ref.abs().max().item()
        for packed in (True, False):
            stack = FusedConvStack(seq, list(x.shape), torch.float32, packed, subpixel=[False], gemm=[True])
            assert isinstance(stack.layers[0], Col2imDeconv)
            out = stack(x)
            assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
            assert (out - ref).abs().max().item() <= 1e-5 * scale
            one_by_one = torch.cat([stack(x[i:i + 1]) for i in range(3)])
            assert (one_by_one - out).abs().max().item() <= 1e-6 * scale


def test_col2im_deconvolution_refusals_and_packings_follow_to():
    """No col2im form with output padding or groups; a packed one that has run, converted to
    bfloat16 and back, computes with the weight as it is now (bfloat16-rounded)."""
    with pytest.raises(ValueError, match="col2im"):
        FusedConvStack(nn.Sequential(nn.ConvTranspose2d(8, 8, 3, 2, 1, output_padding=1)), [1, 8, 4, 4],
                       subpixel=[False], gemm=[True])
    with pytest.raises(ValueError, match="groups"):
        Col2imDeconv(nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=2), None, False, torch.float32, True)
    g = torch.Generator().manual_seed(13)
    deconv = nn.ConvTranspose2d(8, 16, 4, 2, 1)
    with torch.no_grad():
        deconv.weight.copy_(torch.randn(deconv.weight.shape, generator=g))
    m = Col2imDeconv(deconv, None, False, torch.float32, True)
    x = torch.randn(2, 8, 4, 3, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        before = m(x)
        m.to(torch.bfloat16).to(torch.float32)
        after = m(x)
        expected = F.conv_transpose2d(x, m.weight.view(4, 4, 16, 8).permute(3, 2, 0, 1), m.bias, 2, 1)
    assert (after - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()
    assert (after - before).abs().max().item() > 1e-4  # the weight did change
    with torch.inference_mode():  # (float64: no oneDNN product, torch's)
        double = m.double()(x.double())
    assert double.dtype == torch.float64 and (double.float() - after).abs().max().item() <= 1e-5 * after.abs().max()


def test_part_choice_round_trip():
    c = PartChoice("plain", ChunkPlan(((1, 0.5), (4, 0.25))), (True, False), 2, {"plain": {1: 0.5, 4: 0.25}},
                   {3: (1, 2)})
    assert PartChoice.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.describe(3) == "plain 4+1+1 subpixel 1/2"  # 6 hand images in calls of measured sizes
    c = PartChoice("fused", ChunkPlan(((1, 0.5),)), (True, True), gemm=(False, True))
    d = json.loads(json.dumps(c.to_dict()))
    assert PartChoice.from_dict(d) == c and c.describe(1) == "fused 1 subpixel 2/2 gemm 1/2"
    c2 = PartChoice("fused", ChunkPlan(((1, 0.5),)), (False, True, False), gemm=(True, True, False))
    assert PartChoice.from_dict(json.loads(json.dumps(c2.to_dict()))) == c2
    assert c2.describe(1) == "fused 1 subpixel 1/3 gemm 1/3 col2im 1/3"
    for bad in ({"gemm": [True, True, True], "subpixel": [False, True]}, {"gemm": [True]}, {"subpixel": [1, 0]}):
        with pytest.raises(ValueError):
            PartChoice.from_dict({**d, **bad})


def test_cache_of_another_wbcap_or_malformed_parts_is_measured_again(micro_parts, tmp_path, measure):
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    asked = len(measure.asked)
    data = json.loads(path.read_text())
    slot = next(iter(data["machines"].values()))
    for entry in slot["parts"].values():
        entry["wbcap"] = "0.0.0-other"  # measured by another wbcap: its parts may be built otherwise
    path.write_text(json.dumps(data))
    assert choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)[0].source == "measured"
    assert len(measure.asked) == 2 * asked
    mid, slot = next(iter(json.loads(path.read_text())["machines"].items()))
    path.write_text(json.dumps({"format": strategy.CACHE_FORMAT, "machines": {mid: {**slot, "parts": []}}}))
    assert choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)[0].source == "measured"


@pytest.mark.parametrize(("seconds", "on"), [({False: 0.8, True: 1.0}, False), ({False: 0.99, True: 1.0}, True),
                                              ({False: 1.2, True: 1.0}, True)])
def test_huge_pages_are_measured_once_per_machine_cached_and_applied(micro_parts, tmp_path, measure, monkeypatch,
                                                                      seconds, on):
    """A new machine's measurement also times the part with the most weights built and run with
    transparent huge pages off and on (the process switch before each build and call); off only
    where it is HUGE_PAGES_MARGIN faster. The answer is applied, cached, and applied from the
    cache by the next build without timing again."""
    from wbcap import huge_pages

    switched: list[bool] = []
    monkeypatch.setattr(huge_pages, "huge_pages_measurable", lambda: True)
    monkeypatch.setattr(huge_pages, "set_process_huge_pages", lambda flag: switched.append(flag) or True)
    timed: list[tuple] = []

    def timer(calls, rounds):
        timed.append(tuple(calls))
        for fn in calls.values():
            fn()  # (each call switches before it runs: recorded)
        return dict(seconds)

    path = tmp_path / "cpu_strategy.json"
    chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, timer=timer)
    assert chosen.source == "measured"
    heaviest = max(micro_parts, key=lambda n: sum(w.numel() for w in micro_parts[n].module.parameters()))
    # built off then on (each first called once), the timed calls (twice where off won), left on,
    # then off where that is the answer
    timings = 2 if not on else 1
    assert switched == [False, False, True, True, *[False, True] * timings, True, *([False] if not on else [])]
    assert timed == [(False, True)] * timings
    record = next(iter(json.loads(path.read_text())["machines"].values()))["huge_pages"]
    assert (record["on"], record["seconds_on"], record["seconds_off"]) == (on, 1.0, seconds[False])
    assert record["part"] == micro_parts[heaviest].name
    switched.clear()
    again, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, timer=timer)
    assert again.source == "cache" and len(timed) == timings  # (applied, not timed again)
    assert switched == ([] if on else [False])  # (on: nothing to change; a parent's "off" would be kept)
    switched.clear()
    forced, _ = choose_cpu_strategy(micro_parts, FP32, request="fused", path=path)
    assert forced.source == "forced" and switched == ([] if on else [False])  # (forms forced, huge pages as measured)


def test_a_huge_page_trial_left_out_is_tried_again_by_the_next_long_job(micro_parts, tmp_path, measure, monkeypatch,
                                                                         caplog):
    """Busy after the trial, or a trial that fails: nothing kept, huge pages left on, and the
    next build with every part cached tries again (a review: it was never retried)."""
    from wbcap import huge_pages

    switched: list[bool] = []
    monkeypatch.setattr(huge_pages, "huge_pages_measurable", lambda: True)
    monkeypatch.setattr(huge_pages, "set_process_huge_pages", lambda flag: switched.append(flag) or True)
    path = tmp_path / "cpu_strategy.json"
    busy_after_trial = iter([False] * 8 + [False, True])  # (free before and after each part, before the trial; busy after it)
    with caplog.at_level(logging.WARNING):
        choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: next(busy_after_trial),
                            timer=lambda calls, rounds: {k: (fn(), 1.0)[1] for k, fn in calls.items()})
    assert "while huge pages were timed on and off" in caplog.text and switched[-1] is True
    slot = next(iter(json.loads(path.read_text())["machines"].values()))
    assert len(slot["parts"]) == len(micro_parts) and "huge_pages" not in slot

    def failing(calls, rounds):
        raise RuntimeError("oneDNN: could not create a primitive")

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, timer=failing)
    assert again.source == "cache" and "could not time huge pages on or off" in caplog.text
    assert "huge_pages" not in next(iter(json.loads(path.read_text())["machines"].values()))
    assert switched[-1] is True  # (left on)
    short, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False, timer=failing, measure=False)
    assert short.source == "cache"  # (a short job does not try)
    third, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False,
                                   timer=lambda calls, rounds: {False: 2.0, True: 1.0})
    assert next(iter(json.loads(path.read_text())["machines"].values()))["huge_pages"]["on"] is True


def test_huge_pages_are_not_measured_where_the_switch_does_nothing(micro_parts, tmp_path, measure):
    """conftest's default: torch not asking for them, a kernel without them or no process
    switch: no trial, no record."""
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert "huge_pages" not in next(iter(json.loads(path.read_text())["machines"].values()))


def test_a_part_measured_while_others_took_the_cpu_is_used_but_not_cached(micro_parts, tmp_path, measure, caplog):
    path = tmp_path / "cpu_strategy.json"
    answers = iter([False, True] + [False] * 20)  # free before the first part, busy right after measuring it
    with caplog.at_level(logging.INFO):
        chosen, built = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: next(answers))
    first = next(iter(micro_parts))
    assert chosen.parts[first].form == "plain" and first in built  # used in this run
    assert "is used but not cached" in caplog.text
    assert caplog.text.count("measuring the CPU inference strategy") == 1  # (a researcher's trial saw it twice)
    cached = json.loads(path.read_text())
    parts = next(iter(cached["machines"].values()))["parts"]
    assert len(parts) == len(micro_parts) - 1 and not any(k.startswith(first) for k in parts)


def test_a_bad_strategy_value_is_refused_before_anything_loads(monkeypatch, tmp_path):
    """Also where the network would not run on the CPU: the typo is reported, not ignored."""
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.pipeline import Pipeline

    monkeypatch.setenv(strategy.ENV_STRATEGY, "fuzed")
    config = PipelineConfig(body=BodyModelConfig(path=str(tmp_path / "missing")), checkpoint=str(tmp_path / "none.pth"))
    with pytest.raises(InputError, match="WBCAP_CPU_STRATEGY"):  # not the missing files
        Pipeline.from_config(config)


@pytest.mark.parametrize("single", ["onnxruntime", "graph"])
def test_calls_of_one_image_run_in_the_form_measured_faster_there(single, micro_parts, direct_layers, monkeypatch,
                                                                   caplog):
    """The hand ResNet-50 on the Zen 3 EPYC: fused was the faster form (from four images per call),
    onnxruntime 20 % faster at one image per call, which one person's two hands run as (the face
    ResNet-18 there: a oneDNN Graph 20 % faster at one image, fused from two)."""
    from wbcap.model.inference import _build_choice
    from wbcap.model.ort_resnet import OrtResNet

    if single == "onnxruntime":
        pytest.importorskip("onnx")
        single_class = OrtResNet
    elif not graph_usable():
        pytest.skip("no oneDNN Graph fuser in this torch build")
    else:
        single_class = GraphResNet
    part = micro_parts["face_backbone"]
    wins = {**FUSED_WINS, (single, 1): 0.85, (single, 2): 0.9, (single, 4): 0.9}
    choice, module = strategy.measure_part(part, torch.float32, True, chunks=(1, 2, 4), timer=fake_timer(wins))
    assert (choice.form, choice.single) == ("fused", single)
    assert choice.chunks.per_image_s == ((1, 0.85), (2, 0.6), (4, 0.5))  # (one image: the single form's time)
    assert choice.measured["fused"][1] == 1.0 and choice.measured[single][1] == 0.85
    assert [choice.describe(n) for n in (1, 2, 5)] == [f"fused 1 single {single}", "fused 2",
                                                       f"fused 4+1 single {single}"]
    assert PartChoice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice
    rebuilt = _build_choice(part, torch.float32, True, choice, False)
    x = torch.rand(5, *part.item_shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = part.module(x)
        for m in (module, rebuilt):
            assert isinstance(m, SingleImageForm) and isinstance(m.single, single_class)
            assert isinstance(m.main, FusedResNet)
            sizes: dict[str, list[int]] = {"main": [], "single": []}
            for name in sizes:
                getattr(m, name).register_forward_pre_hook(lambda _m, a, name=name, sizes=sizes: sizes[name].append(len(a[0])))
            out = m(x)
            assert sizes == {"main": [4], "single": [1]}  # 5 images: 4 fused + 1 in the single form
            assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
            alone = torch.cat([m(x[i:i + 1]) for i in range(5)])  # all in the single form
            assert (alone - out).abs().max() <= 1e-5 * ref.abs().max()
            assert m(x[:0]).shape == (0, *out.shape[1:])
    # the single form broken since it was measured: fused alone, with fused's own time for one image
    monkeypatch.setattr(single_class, "__init__", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("gone")))
    with caplog.at_level(logging.WARNING):
        alone = _build_choice(part, torch.float32, True, choice, False)
    assert isinstance(alone, FusedResNet) and alone.chunks.per_image_s == ((1, 1.0), (2, 0.6), (4, 0.5))
    name = {"onnxruntime": "onnxruntime", "graph": "oneDNN Graph"}[single]
    assert f"measured faster in the {name} form, which could not be built (gone); they run fused too" in caplog.text


def test_a_single_image_form_must_be_faster_by_the_margin_and_give_the_same_values():
    plan = ChunkPlan(((1, 1.0), (2, 0.6)))
    y = torch.rand(1, 8, 2, 2)
    same = {"fused": y, "onnxruntime": y.clone(), "plain": y.clone()}
    times = {("fused", 1): 1.0, ("fused", 2): 0.6, ("onnxruntime", 1): 0.8, ("plain", 1): 0.7}
    # (onnxruntime only: plain, faster still, has packings and tiles of its own to keep)
    assert strategy.single_image_form("fused", plan, times, same) == ("onnxruntime", ChunkPlan(((1, 0.8), (2, 0.6))))
    assert strategy.single_image_form("plain", plan, {**times, ("plain", 1): 1.0}, same)[0] == "onnxruntime"
    assert strategy.single_image_form("onnxruntime", plan, times, same) == (None, plan)  # (nothing beside it)
    # the oneDNN Graph form too, the faster of the two
    assert strategy.single_image_form("fused", plan, {**times, ("graph", 1): 0.75}, {**same, "graph": y.clone()}) == (
        "graph", ChunkPlan(((1, 0.75), (2, 0.6))))
    assert strategy.single_image_form("graph", plan, {**times, ("graph", 1): 1.0}, same) == (None, plan)
    # faster by less than the margin: none
    assert strategy.single_image_form("fused", plan, {**times, ("onnxruntime", 1): 0.91}, same) == (None, plan)
    # values apart by more than float32 rounding (int8 beside float32, say): not mixed by batch size
    off = {**same, "onnxruntime": y * (1 + 5e-5)}
    assert strategy.single_image_form("fused", plan, times, off) == (None, plan)
    assert strategy.single_image_form("fused", plan, times, {"fused": y}) == (None, plan)  # (bfloat16: none kept)
    d = PartChoice("fused", ChunkPlan(((1, 0.8), (2, 0.6))), single="onnxruntime").to_dict()
    assert PartChoice.from_dict(d).single == "onnxruntime"
    for bad in ({"single": "plain"}, {"single": "fast"}, {"form": "onnxruntime"}, {"form": "int8"},
                {"per_image_s": {"2": 0.6}}):
        with pytest.raises(ValueError):
            PartChoice.from_dict({**d, **bad})


def test_a_cached_single_image_form_that_does_not_apply_is_measured_again(micro_parts, tmp_path, measure, caplog):
    """A box network cached with one-image calls through onnxruntime (an edited file): its
    deconvolutions have no such form, and wrapped they lost the attributes the network reads."""
    path = tmp_path / "cpu_strategy.json"
    choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    data = json.loads(path.read_text())
    slot = next(iter(data["machines"].values()))
    box = next(pid for pid in slot["parts"] if pid.startswith("box_net"))
    slot["parts"][box]["single"] = "onnxruntime"
    slot["parts"][box]["form"] = "fused"
    slot["parts"][box]["per_image_s"] = {"1": 0.5, "2": 0.4}
    path.write_text(json.dumps(data))
    measure.asked.clear()
    with caplog.at_level(logging.WARNING):
        chosen, _ = choose_cpu_strategy(micro_parts, FP32, path=path, busy=lambda: False)
    assert measure.asked == [("box_net", torch.float32)] and chosen.parts["box_net"].single is None
    assert "the onnxruntime form does not apply to it" in caplog.text


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_single_image_form_that_cannot_be_built_is_not_reported(micro_net, tmp_path, monkeypatch, direct_layers,
                                                                   caplog):
    """onnxruntime broken since the one-image calls were measured through it: they run in the part's
    own form, and the strategy (bench, doctor) says so, with that form's own time for one image."""
    pytest.importorskip("onnx")
    from wbcap.model.ort_resnet import OrtResNet

    _measure_with(monkeypatch, tmp_path, SINGLE_WINS)
    measured = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact").cpu_strategy
    assert measured.parts["face_backbone"].single == "onnxruntime"
    monkeypatch.setattr(OrtResNet, "__init__", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("gone")))
    with caplog.at_level(logging.WARNING):
        net = optimize_for_inference(copy.deepcopy(micro_net), "cpu", "exact")
    assert isinstance(net.face_roi_net.backbone, FusedResNet) and "could not be built (gone); they run fused" in caplog.text
    face = net.cpu_strategy.parts["face_backbone"]
    assert net.cpu_strategy.source == "cache" and face.single is None and face.form == "fused"
    assert face.chunks.per_image_s == ((1, 1.0), (2, 0.6)) and face.describe(1) == "fused 1"
