"""GPU and multi-GPU correctness of inference, checked on the CPU: device names, precision
resolution on pre-Ampere GPUs, TF32 scoping of the exact mode, float32 SMPL-X and rotations under
autocast, modules that move with ``.to()``, and no host-device synchronisation inside a batch."""

from __future__ import annotations

import logging

import host_reads
import numpy as np
import pytest
import torch
from torch import nn

from wbcap.errors import InputError
from wbcap.model import device as dev
from wbcap.model.fused import (
    FusedConv,
    FusedResNet,
    mkldnn_usable,
)
from wbcap.model.inference import optimize_for_inference
from wbcap.model.precision import Precision

# -- device names ----------------------------------------------------------------------------


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda reporting ``count`` GPUs (default 2); records set_device calls."""
    state = {"count": 2, "current": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: state["count"] > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state["count"])
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: state["current"].append(d))
    return state


def test_indexed_cuda_device_becomes_the_current_device(fake_cuda):
    assert dev.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert fake_cuda["current"] == [1]
    assert dev.resolve_device(" CUDA ") == torch.device("cuda")  # no index: the current device, left as is
    assert fake_cuda["current"] == [1]


@pytest.mark.parametrize(
    "spec,count,message",
    [
        ("gpu", 2, "device 'gpu' is not understood; use auto, cpu, cuda or cuda:N"),
        ("cuda:x", 2, "'cuda:x' is not understood"),
        ("cuda:-1", 2, "'cuda:-1' is not understood"),
        ("cuda:9", 1, "cuda:9: only 1 CUDA device(s) visible; use cuda:0..cuda:0"),
        ("cuda", 0, "device cuda: CUDA is not available on this machine; use device cpu"),
        ("cuda:0", 0, "cuda:0: CUDA is not available on this machine"),
    ],
)
def test_bad_device_names_are_one_line_input_errors(fake_cuda, spec, count, message):
    fake_cuda["count"] = count
    with pytest.raises(InputError) as err:
        dev.resolve_device(spec)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert fake_cuda["current"] == []  # nothing selected on failure


def test_auto_and_cpu(fake_cuda):
    assert dev.resolve_device("auto") == torch.device("cuda")
    fake_cuda["count"] = 0
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device("") == torch.device("cpu")
    assert dev.resolve_device("CPU") == torch.device("cpu")


# -- precision on pre-Ampere GPUs ------------------------------------------------------------


@pytest.mark.parametrize(
    "capability,asked,runs",
    [
        ((7, 5), "fast", "exact"),
        ((7, 0), "bf16", "fp16"),
        ((6, 1), "exact", "exact"),
        ((7, 5), "fp16", "fp16"),
        ((8, 0), "fast", "fast"),
        ((9, 0), "bf16", "bf16"),
    ],
)
def test_precision_on_gpus_without_fast_bfloat16(monkeypatch, caplog, capability, asked, runs):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    with caplog.at_level(logging.WARNING, logger="wbcap.model.device"):
        assert Precision.parse(asked).resolve(torch.device("cuda", 0)) == runs
    lines = [r.getMessage() for r in caplog.records]
    if runs == asked:
        assert lines == []
    else:
        expected = (f"cuda:0 (compute capability {capability[0]}.{capability[1]}) has no fast bfloat16; "
                    f"precision {asked} runs as {runs} instead")
        assert lines == [expected]


def test_precision_on_cpu_is_left_alone(monkeypatch):
    def no_cuda(*args):
        raise AssertionError("CUDA queried for a CPU device")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    for p in ("exact", "fast", "bf16", "fp16"):
        assert Precision.parse(p).resolve(torch.device("cpu")) == p


# -- TF32 ------------------------------------------------------------------------------------


def _pipeline(small_config, body_layer, precision: str, optimize: bool = False):
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.pipeline import Pipeline
    from wbcap.testing.checkpoints import random_network

    net = random_network(small_config, seed=2)
    return Pipeline(WholeBodyRegressor(net, body_layer), torch.device("cpu"), batch_size=4, precision=precision,
                    optimize=optimize)


@pytest.fixture(scope="module")
def unfused_pipeline(small_config, body_layer):
    return _pipeline(small_config, body_layer, "exact")


def test_exact_mode_turns_tf32_off_in_its_scope_only(unfused_pipeline, monkeypatch):
    before = dev.get_tf32()
    assert dev.tf32_allowed()[1]  # torch's default: cuDNN float32 convolutions may use TF32
    with unfused_pipeline.inference_context():
        assert dev.tf32_allowed() == (False, False)
    assert dev.get_tf32() == before
    # restored even when the block raises
    with pytest.raises(KeyError), unfused_pipeline.inference_context():
        raise KeyError("x")
    assert dev.get_tf32() == before
    monkeypatch.setattr(unfused_pipeline, "precision", "fast")  # fast: torch's settings as they are
    with unfused_pipeline.inference_context():
        assert dev.get_tf32() == before and dev.tf32_allowed()[1]


def test_a_callers_autocast_and_inference_mode_change_nothing(unfused_pipeline):
    """A user's `torch.autocast` around `pipe(...)` moved exact's vertices by 3.7 mm, and under
    their `torch.inference_mode()` the parameters came back as inference tensors, refused by
    `requires_grad_()` (a user trial): the network runs with autocast off in exact and fast,
    and the results are ordinary tensors either way."""
    from wbcap.testing.images import person_image

    img, box = person_image(192, 256, seed=4), [(20, 10, 150, 230)]
    ref = unfused_pipeline(img, boxes=box)[0]
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            got = unfused_pipeline(img, boxes=box)[0]
        assert np.array_equal(got.vertices, ref.vertices) and torch.equal(got.params.body_pose, ref.params.body_pose)
    with torch.inference_mode():
        got = unfused_pipeline(img, boxes=box)[0]
    assert not got.params.body_pose.is_inference() and torch.equal(got.params.body_pose, ref.params.body_pose)
    got.params.body_pose.requires_grad_()  # (a fit from it)
    unfused_pipeline.regressor.body(got.params).vertices.sum().backward()
    assert got.params.body_pose.grad is not None


def test_predict_takes_boxes_as_its_docstring_says_and_checks_them(unfused_pipeline):
    """Pipeline.predict said (x, y, w, h) boxes and raised AttributeError on them, and ran a box of
    infinite width (a user trial): it takes both forms, refuses what pipe(boxes=...) refuses,
    and skips an empty box as a detector's."""
    from wbcap.detect.base import Detection
    from wbcap.errors import InputError
    from wbcap.testing.images import person_image

    img = person_image(192, 256, seed=4)
    box = (20.0, 10.0, 150.0, 230.0)
    by_call = unfused_pipeline(img, boxes=[box])[0]
    people = unfused_pipeline.predict(img, [box, Detection((5.0, 5.0, 0.0, 40.0), 0.9), Detection(box, 0.5)])
    assert len(people) == 2 and all(np.allclose(p.vertices, by_call.vertices, atol=1e-5) for p in people)
    assert [p.index for p in people] == [0, 1] and people[1].score == 0.5  # (the empty box takes no place)
    with pytest.raises(InputError, match=r"^boxes\[1\]: every number must be finite"):
        unfused_pipeline.predict(img, [box, Detection((0.0, 0.0, float("inf"), 10.0), 1.0)])


# -- float32 body model and rotations under autocast -------------------------------------------


@pytest.fixture(scope="module")
def training_regressor(body_layer):
    """The MICRO network (256 x 192 input): bf16 autocast is emulated, and slow, on a CPU
    without bfloat16 instructions."""
    from test_strategy import MICRO

    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.testing.checkpoints import random_network

    return WholeBodyRegressor(random_network(MICRO, seed=5), body_layer).train()


def test_smplx_stage_is_float32_under_bf16_autocast(training_regressor):
    """The same parameters through the body stage of a training-mode regressor with and without
    bf16 autocast: equal vertices. Without the float32 guard they move by millimetres."""
    from wbcap.body.params import SMPLXParams

    reg = training_regressor
    g = torch.Generator().manual_seed(0)
    b = 3
    p = SMPLXParams(
        global_orient=torch.randn(b, 3, generator=g), body_pose=torch.randn(b, 63, generator=g) * 0.5,
        left_hand_pose=torch.randn(b, 45, generator=g) * 0.5, right_hand_pose=torch.randn(b, 45, generator=g) * 0.5,
        jaw_pose=torch.randn(b, 3, generator=g) * 0.3, betas=torch.randn(b, 10, generator=g),
        expression=torch.randn(b, 10, generator=g),
    )
    for params in (p, p.to_matrix()):
        with torch.no_grad():
            verts, joints = reg.body_forward(params)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                verts_ac, joints_ac = reg.body_forward(params)
        assert reg.training and verts_ac.dtype == joints_ac.dtype == torch.float32
        torch.testing.assert_close(verts_ac, verts, atol=1e-5, rtol=0)
        torch.testing.assert_close(joints_ac, joints, atol=1e-5, rtol=0)


@pytest.mark.slow  # bfloat16 autocast is emulated on CPUs without it (6 s on the Zen 3); the SMPL-X stage's check stays fast
def test_training_forward_under_bf16_autocast_keeps_rotations_camera_and_mesh_float32(training_regressor):
    from wbcap.body.rotations import rot6d_to_axis_angle

    reg = training_regressor
    x = torch.rand(2, 3, *reg.net.config.input_img_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = reg(x)
        p = out.params
        assert p.body_pose_6d.dtype == torch.bfloat16  # autocast really ran the heads in bf16
        for name in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose", "transl"):
            assert p.smplx[name].dtype == torch.float32, name
        # the conversions equal float32 ones of the same (bf16) network outputs
        with torch.autocast("cpu", dtype=torch.bfloat16):
            aa = p.smplx.to_axis_angle()  # float32 also under autocast
        for name in ("global_orient", "body_pose", "jaw_pose"):
            assert aa[name].dtype == torch.float32, name
        torch.testing.assert_close(aa.global_orient, rot6d_to_axis_angle(p.global_orient_6d.float()), atol=1e-6, rtol=0)
        body = rot6d_to_axis_angle(p.body_pose_6d.float().reshape(2, 21, 6)).reshape(2, -1)
        torch.testing.assert_close(aa.body_pose, body, atol=1e-6, rtol=0)
        torch.testing.assert_close(aa.jaw_pose, rot6d_to_axis_angle(p.jaw_pose_6d.float()), atol=1e-6, rtol=0)
        torch.testing.assert_close(p.smplx.transl, reg.net.camera_translation(p.cam_param.float()), atol=1e-6, rtol=0)
        verts, _ = reg.body_forward(p)
    torch.testing.assert_close(out.vertices, verts, atol=1e-5, rtol=0)


def test_own_lbs_equals_smplx_lbs_bit_for_bit(body_layer):
    from smplx.lbs import lbs

    from wbcap.body.smplx_layer import _lbs

    g = torch.Generator().manual_seed(3)
    L = body_layer
    betas = torch.randn(3, L.num_betas + L.num_expression, generator=g)
    pose = torch.randn(3, 165, generator=g) * 0.4
    shapedirs = torch.cat([L.shapedirs, L.expr_dirs], dim=-1)
    args = (betas, pose, L.v_template, shapedirs, L.posedirs, L.J_regressor)
    v_ref, j_ref = lbs(*args, L.parents, L.lbs_weights, pose2rot=True)
    v, j = _lbs(*args, L.parents, (L.chain_order, L.chain_parents, L._chain_bounds), L.lbs_weights)
    assert torch.equal(v, v_ref) and torch.equal(j, j_ref)


# -- modules move with .to() -----------------------------------------------------------------

PACKED = [False, True] if mkldnn_usable(torch.device("cpu")) else [False]


@pytest.mark.parametrize("packed", PACKED)
@pytest.mark.parametrize("transposed", [False, True])
def test_fused_conv_moves_with_to(packed, transposed):
    g = torch.Generator().manual_seed(0)
    conv = (nn.ConvTranspose2d(6, 8, 4, stride=2, padding=1) if transposed else nn.Conv2d(6, 8, 3, padding=1))
    bn = nn.BatchNorm2d(8).eval()
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 1.5, generator=g)
    f = FusedConv(conv, bn, True, torch.float32, [2, 6, 5, 4], packed)
    x = torch.randn(2, 6, 5, 4, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = f(x)
        assert f.to("cpu") is f and f.packed == packed  # same device and dtype: nothing changes
        f.to(torch.float64)
        assert f.weight.dtype == f.bias.dtype == f.dtype == torch.float64 and not f.packed
        torch.testing.assert_close(f(x.double()), ref.double(), atol=1e-5, rtol=0)
        f.to("meta")
    assert f.weight.device.type == f.bias.device.type == "meta"


@pytest.mark.parametrize("packed", PACKED)
def test_fused_resnet_moves_with_to(packed):
    from wbcap.model.resnet import ResNetBackbone

    backbone = ResNetBackbone(18).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fused = FusedResNet(backbone, (64, 64), packed=packed, chunk=2)
        ref = fused(x)
        fused.to(torch.float64)
        out = fused(x.double())
    assert fused.dtype == torch.float64 and out.dtype == torch.float64
    assert all(b.dtype == torch.float64 for b in fused.buffers() if b.is_floating_point())
    torch.testing.assert_close(out, ref.double(), atol=1e-4, rtol=1e-4)


def test_converted_network_leaves_nothing_behind_on_to(small_config):
    from wbcap.testing.checkpoints import random_network

    net = optimize_for_inference(random_network(small_config), "cpu", "exact")
    tensors = list(net.buffers()) + list(net.parameters())
    n_fused = sum(isinstance(m, FusedConv) for m in net.modules())
    assert n_fused > 50 and len(tensors) >= 2 * n_fused
    net.to("meta")
    left = [n for n, t in list(net.named_buffers()) + list(net.named_parameters()) if t.device.type != "meta"]
    assert left == []


# -- host-device synchronisation -------------------------------------------------------------

SYNCS = host_reads.SYNCS
count_host_reads = host_reads.count_host_reads
gpu_like_roi_align = host_reads.gpu_like_roi_align


def _jobs(pipe, n: int):
    from wbcap.detect.base import Detection

    img = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    return pipe.crop(img, [Detection((10.0 + 40 * i, 20.0, 300.0, 400.0), 1.0) for i in range(n)])


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("precision,optimize", [("exact", True), pytest.param("fast", False, marks=pytest.mark.slow)])
def test_one_host_read_per_batch(small_config, body_layer, precision, optimize, monkeypatch):
    """One Pipeline.regress batch reads the device once (the results), whatever the batch size,
    and (exact) runs its network call with TF32 off."""
    pipe = _pipeline(small_config, body_layer, precision, optimize)
    seen_tf32 = []
    gpu_like_roi_align(monkeypatch)
    forward = type(pipe.regressor).forward
    monkeypatch.setattr(type(pipe.regressor), "forward",
                        lambda self, img: (seen_tf32.append(dev.tf32_allowed()), forward(self, img))[1])
    totals = []
    for n in (1, 3) if optimize else (1, 2):
        jobs = _jobs(pipe, n)
        with count_host_reads() as counts:
            people = pipe.regress(jobs)
        assert len(people) == n and people[0].vertices.shape == (body_layer.num_vertices, 3)
        assert people[0].crop.dtype == np.uint8 and np.array_equal(people[0].crop, jobs[0].patch)
        totals.append(dict(counts))
    assert totals[0] == totals[1] == {"cpu": 1, "numpy": 1}
    if precision == "exact":
        assert seen_tf32 == [(False, False)] * 2


def test_upload_equals_float_stack(unfused_pipeline):
    """The uint8 upload gives the upstream input (float32 patch / 255), channels_last."""
    from wbcap.crop.bbox import crops_to_tensor

    pipe = unfused_pipeline
    jobs = _jobs(pipe, 2)
    x = pipe._upload(jobs)
    ref = crops_to_tensor([j.patch.astype(np.float32) for j in jobs])
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, ref)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_params_only_regress_equals_full_regress(small_config, body_layer, monkeypatch):
    """`wbcap run`'s pass 1 (mesh=False): the same parameters and cameras bit for bit, one host
    read, and SMPL-X never runs."""
    pipe = _pipeline(small_config, body_layer, "exact", True)
    jobs = _jobs(pipe, 3)
    gpu_like_roi_align(monkeypatch)  # (both runs on the path checked for host reads)
    full = pipe.regress(jobs, first_index=5)
    monkeypatch.setattr(type(pipe.regressor.body), "forward", lambda *a, **k: pytest.fail("SMPL-X ran"))
    with count_host_reads() as counts:
        lean = pipe.regress(jobs, first_index=5, mesh=False)
    assert dict(counts) == {"cpu": 1, "numpy": 1}
    for a, b in zip(full, lean, strict=True):
        assert not hasattr(b, "vertices") and a.index == b.index and a.focal == b.focal and a.princpt == b.princpt
        assert np.array_equal(a.box, b.box) and np.array_equal(a.crop_box, b.crop_box) and a.score == b.score
        for name, value in a.params.items():
            assert torch.equal(value, b.params[name]), name


@pytest.mark.parametrize("shape", [(1, 1, 3), (0, 0, 3), (5, 1, 3), (0, 7, 3)])
def test_an_image_too_small_for_any_box_is_an_input_error(unfused_pipeline, shape):
    """A 1x1 image was told to pass a box inside it or detector='full', which it had (a user
    trial); then a 0x0 or 1x1 array raised NoPersonError, as if nobody had been found (a
    hostile-input trial): an InputError naming its size, with or without boxes or a detector."""
    from wbcap.errors import InputError, NoPersonError

    h, w = shape[:2]
    image = np.zeros(shape, np.uint8)
    message = rf"^tiny.png: the image is {w}x{h} pixels, too small to hold a person box \(it needs at least 2 pixels a side\); pass a larger image$"
    for call in (lambda: unfused_pipeline(image, source="tiny.png"),
                 lambda: unfused_pipeline(image, boxes=[(0, 0, 1, 1)], source="tiny.png"),
                 lambda: unfused_pipeline(image, detector=lambda im: [], source="tiny.png"),
                 lambda: unfused_pipeline.predict(image, [(0, 0, 1, 1)], source="tiny.png"),
                 lambda: unfused_pipeline.crop(image, [(0, 0, 1, 1)], source="tiny.png", strict=False)):
        with pytest.raises(InputError, match=message) as caught:
            call()
        assert not isinstance(caught.value, NoPersonError)


@pytest.mark.parametrize("image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                   np.zeros((4, 4, 3), np.float32)])
def test_an_array_not_rgb8_is_an_input_error_before_its_boxes_are_read(unfused_pipeline, image):
    from wbcap.errors import InputError

    for call in (lambda: unfused_pipeline(image, source="x.png"),
                 lambda: unfused_pipeline(image, detector=lambda im: 1 / 0, source="x.png"),
                 lambda: unfused_pipeline.predict(image, [(0, 0, float("nan"), 1)], source="x.png")):
        with pytest.raises(InputError, match=r"^x.png: expected an \(H, W, 3\) uint8 RGB image, got \(4, 4"):
            call()


def test_regress_refuses_a_patch_that_is_not_the_networks_input(unfused_pipeline):
    """A 256x192 patch ran silently (its mesh from the wrong input); beside a right one numpy's
    stack raised a bare ValueError (an API trial)."""
    import dataclasses

    from wbcap.errors import InputError

    jobs = unfused_pipeline.crop(np.zeros((120, 160, 3), np.uint8), [(10, 10, 50, 80)])
    small = dataclasses.replace(jobs[0], patch=jobs[0].patch[::2, ::2])
    message = (r"^crop 1: its patch is \(256, 192, 3\) uint8, not the network's \(512, 384, 3\) uint8 input; make the "
               r"crops with pipe.crop\(image, boxes\)$")
    with pytest.raises(InputError, match=message):
        unfused_pipeline.regress([jobs[0], small])
    with pytest.raises(InputError, match=r"^crop 0: its patch is \(512, 384, 3\) float32"):
        unfused_pipeline.regress([dataclasses.replace(jobs[0], patch=jobs[0].patch.astype(np.float32))], mesh=False)


def test_run_video_refuses_a_pipeline_unlike_its_jobs_settings(unfused_pipeline, tmp_path):
    """A fast pipeline given to run_video with the job's default (exact) settings ran fast and was
    recorded as exact in run.json, which a resume checks (an API trial)."""
    import dataclasses
    from fractions import Fraction

    from wbcap.config import PipelineConfig
    from wbcap.errors import InputError
    from wbcap.testing.videos import make_vfr_with_audio
    from wbcap.video_app import VideoJob, _check_given_pipeline, run_video

    video = make_vfr_with_audio(tmp_path / "v.mp4", [0, 100, 200], 100, Fraction(1, 1000))
    job = VideoJob(str(video), str(tmp_path / "o"), pipeline=PipelineConfig(precision="fast", box_scale=1.5),
                   render=False)
    with pytest.raises(InputError) as caught:
        run_video(job, pipeline=unfused_pipeline)
    assert str(caught.value) == (
        f"the pipeline given runs precision 'exact' (the job's: 'fast'), box_scale {unfused_pipeline.box_scale!r} (the "
        "job's: 1.5): run.json records the job's settings and a resume checks them; give the job the pipeline's "
        "(VideoJob(pipeline=pipeline.job_config()))")
    assert not (tmp_path / "o").exists()
    settings = unfused_pipeline.job_config()  # (the fix the line names: the job then passes the check)
    assert (settings.precision, settings.box_scale, settings.batch_size) == (
        "exact", unfused_pipeline.box_scale, unfused_pipeline.batch_size)
    _check_given_pipeline(dataclasses.replace(job, pipeline=settings), unfused_pipeline)
