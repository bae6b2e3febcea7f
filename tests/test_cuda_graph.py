"""CUDA-graphed regressor (wbcap.model.cuda_graph): capture sizes, output structures, padding and
copy-out (with a stand-in graph on CPU), the eager fallback, no host reads in the forward; on
CUDA, graphed outputs equal eager ones in exact and fast."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from host_reads import gpu_like_roi_align

from wbcap.model import cuda_graph
from wbcap.model.cuda_graph import CudaGraphRunner, capture_sizes, flatten_tensors, take_rows

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_capture_sizes_powers_of_two_and_the_batch_size():
    assert capture_sizes(1) == (1,)
    assert capture_sizes(32) == (1, 2, 4, 8, 16, 32)
    assert capture_sizes(24) == (1, 2, 4, 8, 16, 24)
    assert capture_sizes(0) == (1,)


def _params(b: int):
    from wbcap.body.params import SMPLXParams

    eye = torch.eye(3).expand(b, 1, 3, 3).clone()
    return SMPLXParams(betas=torch.randn(b, 10), global_orient=eye, body_pose=torch.eye(3).expand(b, 21, 3, 3).clone(),
                       left_hand_pose=torch.eye(3).expand(b, 15, 3, 3).clone(),
                       right_hand_pose=torch.eye(3).expand(b, 15, 3, 3).clone(), jaw_pose=eye.clone(),
                       expression=torch.randn(b, 10), transl=torch.randn(b, 3), rotation="matrix")


def test_flatten_and_rebuild_nested_frozen_dataclasses():
    p = _params(2)
    obj = {"out": (p, [torch.arange(3.0), "label"]), "n": 7}
    leaves, rebuild = flatten_tensors(obj)
    assert len(leaves) == 10 + 1  # SMPLXParams' ten tensor fields, the arange
    new = rebuild([t + 1 for t in leaves])
    q = new["out"][0]
    assert type(q) is type(p) and q.rotation == "matrix" and new["n"] == 7 and new["out"][1][1] == "label"
    torch.testing.assert_close(q.betas, p.betas + 1)
    torch.testing.assert_close(new["out"][1][0], torch.arange(3.0) + 1)
    assert leaves[0] is p.betas and torch.equal(p.betas, leaves[0])  # the original is untouched


def test_take_rows_batched_stacked_and_constant():
    t = torch.arange(4 * 3).reshape(4, 3)
    assert torch.equal(take_rows(t, 4, 3), t[:3])
    stacked = torch.arange(8 * 2).reshape(8, 2)  # two blocks of 4 rows: first n rows of each
    assert torch.equal(take_rows(stacked, 4, 3), torch.cat((stacked[:3], stacked[4:7])))
    const = torch.arange(5.0)
    assert torch.equal(take_rows(const, 4, 3), const)
    out = take_rows(t, 4, 4)
    assert torch.equal(out, t) and out.data_ptr() != t.data_ptr()  # copied out, never the static output


def _rowwise(x: torch.Tensor):
    """A per-row forward with a batched output, a 2B-stacked output and a constant."""
    b = x.shape[0]
    y = x.flatten(1).sum(1, keepdim=True)
    return {"y": y, "both": torch.cat((y * 2, y * 3)), "const": torch.ones(3), "b": b}


class _FakeGraph:
    """Stands in for torch.cuda.CUDAGraph on CPU: replay() recomputes into the static outputs."""

    def __init__(self, fn, static, outputs):
        self.fn, self.static, self.outputs = fn, static, outputs

    def replay(self) -> None:
        fresh, _ = flatten_tensors(self.fn(self.static))
        for o, f in zip(self.outputs, fresh):
            o.copy_(f)


def _fake_capture(runner: CudaGraphRunner):
    def capture(x, size):
        static = torch.zeros((size, *x.shape[1:]), dtype=x.dtype)
        static[: x.shape[0]].copy_(x)
        outputs, rebuild = flatten_tensors(runner.forward(static))
        return cuda_graph._Graph(_FakeGraph(runner.forward, static, outputs), static, outputs, rebuild)

    return capture


def test_padded_batches_give_the_eager_rows(monkeypatch):
    runner = CudaGraphRunner(_rowwise, [1, 4, 8])
    monkeypatch.setattr(runner, "_capturable", lambda x: True)
    monkeypatch.setattr(runner, "_capture", _fake_capture(runner))
    g = torch.Generator().manual_seed(0)
    for n in (3, 4, 1, 6, 3):
        x = torch.rand(n, 2, 5, generator=g)
        got, want = runner(x), _rowwise(x)
        assert got["y"].shape == (n, 1) and got["both"].shape == (2 * n, 1)
        for k in ("y", "both", "const"):
            torch.testing.assert_close(got[k], want[k])
        assert got["b"] == runner.size_for(n)  # Python values are those of the captured call
    assert runner.captured == (1, 4, 8)
    big = torch.rand(9, 2, 5)  # larger than every captured size: eager
    assert runner(big)["b"] == 9


def test_capture_failure_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    runner = CudaGraphRunner(_rowwise, [4], name="the test forward")
    monkeypatch.setattr(runner, "_capturable", lambda x: True)

    def fail(x, size):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(runner, "_capture", fail)
    x = torch.rand(3, 2)
    with caplog.at_level(logging.WARNING, logger="wbcap.model.cuda_graph"):
        out = runner(x)
        runner(x)
    torch.testing.assert_close(out["y"], _rowwise(x)["y"])
    assert runner.eager and out["b"] == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["CUDA graph capture of the test forward failed (RuntimeError: operation not permitted when "
                     "stream is capturing); running it eagerly"]


def test_cpu_inputs_run_eagerly():
    runner = CudaGraphRunner(_rowwise, [4])
    x = torch.rand(3, 2)
    assert runner(x)["b"] == 3 and runner.captured == () and not runner.eager


def test_bad_batch_sizes_rejected():
    with pytest.raises(ValueError, match="batch sizes"):
        CudaGraphRunner(_rowwise, [])


@pytest.fixture(scope="module")
def small_regressor(small_net, body_dir):
    """A fresh fused (exact) small regressor on CPU (the session network is left unconverted)."""
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.model.inference import optimize_for_inference
    from wbcap.model.regressor import WholeBodyRegressor

    net = optimize_for_inference(copy.deepcopy(small_net).eval(), "cpu", "exact")
    return WholeBodyRegressor(net, SMPLXLayer.from_file(find_body_model("neutral", body_dir))).eval()


def test_regressor_forward_reads_nothing_back(small_regressor, monkeypatch):
    """What graph capture needs: no item/bool/int/float/index/tolist of a tensor in the forward
    (each would synchronise a GPU and break capture)."""
    x = torch.rand(2, 3, 512, 384)

    def refuse(*args, **kwargs):
        raise AssertionError("host read of a tensor inside the regressor's forward")
    gpu_like_roi_align(monkeypatch)

    with torch.inference_mode():
        small_regressor(x)  # buffers moved once, first-call work done
        for name in ("item", "tolist", "__bool__", "__index__", "__int__", "__float__", "numpy"):
            monkeypatch.setattr(torch.Tensor, name, refuse)
        out = small_regressor(x)
    assert out.vertices.shape == (2, 10475, 3)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_graphed_equals_eager_on_cuda(small_net, body_dir, precision):
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.model.regressor import WholeBodyRegressor
    from wbcap.pipeline import Pipeline

    body = SMPLXLayer.from_file(find_body_model("neutral", body_dir))
    pipe = Pipeline(WholeBodyRegressor(copy.deepcopy(small_net), body), torch.device("cuda"), precision=precision)
    reg, ctx = pipe.regressor, pipe.inference_context
    runner = CudaGraphRunner(reg, capture_sizes(4), ctx)
    x = torch.rand(4, 3, 512, 384, generator=torch.Generator().manual_seed(0)).cuda()
    x = x.contiguous(memory_format=torch.channels_last)
    torch.cuda.set_sync_debug_mode("error")  # the eager forward must not synchronise
    try:
        with torch.inference_mode(), ctx():
            reg(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # At a captured size the graph replays the kernels eager runs (equal up to 1e-6 m); a padded
    # batch is compared with eager at another batch size (exact: batch-size invariant to 1e-5 m;
    # fast: bfloat16 convolutions may pick other kernels per batch size, well inside fast's 1 cm).
    padded_tol = 1e-5 if precision == "exact" else 2e-3
    for n in (4, 3, 1, 4):
        with torch.inference_mode(), ctx():
            want = reg(x[:n])
        got = runner(x[:n])
        assert not runner.eager
        assert got.vertices.shape == (n, 10475, 3) and got.params.hand_pose_6d.shape == (2 * n, 90)
        tol = 1e-6 if n in (1, 4) else padded_tol
        assert (got.vertices - want.vertices).norm(dim=-1).max().item() <= tol
        boxes = torch.stack((got.lhand_bbox, got.rhand_bbox, got.face_bbox)) - torch.stack(
            (want.lhand_bbox, want.rhand_bbox, want.face_bbox))
        assert boxes.abs().max().item() <= 100 * tol  # pixels
    assert runner.captured == (1, 4)


def test_pipeline_runs_eagerly_on_cpu(micro_ckpt, body_dir):
    """The pipeline's graph hook: nothing is captured off CUDA (the CPU path is the network itself)."""
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.detect.base import Detection
    from wbcap.pipeline import Pipeline
    from wbcap.testing.images import person_image

    pipe = Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt),
                                               device="cpu"))
    pipe.regress(pipe.crop(person_image(192, 256), [Detection((20.0, 10.0, 150.0, 230.0), 1.0)]))
    assert pipe._graphed == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_pipeline_on_cuda_replays_graphs_with_eager_results(micro_ckpt, body_dir, precision):
    """Pipeline.regress on CUDA (full and params-only) from CUDA graphs equals cuda_graphs=False."""
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.detect.base import Detection
    from wbcap.pipeline import Pipeline
    from wbcap.testing.images import person_image

    pipe = Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt),
                                               device="cuda", precision=precision, batch_size=4))
    jobs = pipe.crop(person_image(320, 256), [Detection((10.0 + 30 * i, 10.0, 150.0, 230.0), 1.0) for i in range(3)])
    graphed, lean = pipe.regress(jobs), pipe.regress(jobs, mesh=False)
    assert pipe._graphed["full"].captured == (4,) and pipe._graphed["net"].captured == (4,)
    pipe.cuda_graphs = False
    eager, lean_eager = pipe.regress(jobs), pipe.regress(jobs, mesh=False)
    tol = 1e-5 if precision == "exact" else 2e-4  # padded to 4 rows: bf16 kernels chosen per batch size
    for a, b in zip(graphed, eager, strict=True):
        assert abs(a.vertices - b.vertices).max() <= tol
    for a, b in zip(lean, lean_eager, strict=True):
        for name, value in a.params.items():
            assert torch.allclose(value, b.params[name], atol=tol, rtol=0), name
