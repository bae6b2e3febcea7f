"""Training's device and multi-process rules, checked on the CPU (project issue 17, training part).

* the model owns its SMPL-X layer: moving it leaves the datasets' layer on the CPU, where forked
  DataLoader workers make targets;
* the hand stage has no parameter its losses miss (DDP with ``find_unused_parameters=False``),
  two gloo processes train it, and a one-process run resumes what two processes wrote;
* the process-group backend follows the resolved device, not CUDA's presence;
* RNG state: only the training device's CUDA generator, per rank, resumable with another count;
* DDP wraps only the network (no SMPL-X buffers);
* one host sync per logging interval; cudnn.benchmark and channels-last on CUDA.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from wbcap.config import ModelConfig
from wbcap.train.stages import STAGES, StageConfig

TINY = ModelConfig(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18, backbone_width=16)  # (as test_train.py's)
TRAINER_FILE = str(Path(__file__).resolve().parents[1] / "wbcap" / "train" / "trainer.py")


@pytest.fixture()
def tmp_path(ram_tmp_path):
    """This module's training runs write their snapshots in RAM where there is room (conftest's
    ram_tmp_path)."""
    return ram_tmp_path


# Training steps here are small: with 2 intra-op threads on a loaded 2-core machine, OpenMP
# barriers made them up to 10x slower (a 25-step test took 250 s instead of 20 s).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fresh_body(body_dir):
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer

    return SMPLXLayer.from_file(find_body_model("neutral", body_dir))


@pytest.fixture(scope="module")
def frei_root(tmp_path_factory):
    from wbcap.testing.dataset_fixtures import write_freihand_fixture

    return write_freihand_fixture(tmp_path_factory.mktemp("frei"), num_train=4, num_eval=1)


def _hand_stage(**kw) -> StageConfig:
    base = replace(STAGES["hand"], datasets=("FreiHAND",), epochs=1, batch_size=1, num_workers=0, amp=False, model=TINY,
                   lr_decay_epochs=())
    return replace(base, **kw)


def _hand_run(tmp_path, name, frei_root, mano_dir, **kw):
    from wbcap.train.trainer import RunConfig

    return RunConfig(out=str(tmp_path / name), data_root=str(frei_root), body_models=str(mano_dir), device="cpu", **kw)


@pytest.fixture
def single_process_group(tmp_path):
    """A one-process gloo group (DDP's reducer checks run the same as with several processes)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


# --------------------------------------------------------------------------- 1: body layers


def test_model_owns_its_body_layer_and_forked_workers_still_make_targets(tmp_path, body_dir):
    from wbcap.testing.dataset_fixtures import write_human36m_fixture
    from wbcap.train.data.common import cpu_body_layer
    from wbcap.train.data.human36m import Human36M
    from wbcap.train.data.synthetic import SyntheticWholeBody
    from wbcap.train.trainer import build_model

    body = _fresh_body(body_dir)
    root = write_human36m_fixture(tmp_path, subjects=(1,), frames=(0, 5), cameras=(1,))
    h36m = Human36M(root, "train", body, augment=None, subjects=(1,))
    synthetic = SyntheticWholeBody(body, 2, seed=0, config=TINY)
    assert h36m.body_layer is body and synthetic.body is body and cpu_body_layer(body) is body  # CPU: shared, no copy
    expected = [h36m[i][1]["joint_cam"] for i in range(len(h36m))]
    pointers = {n: b.data_ptr() for n, b in body.named_buffers()}

    # "meta" stands in for CUDA: a layer moved there can no longer make numbers
    model = build_model(replace(STAGES["body"], model=TINY), body, torch.device("meta"))
    assert {b.device.type for b in model.body.buffers()} == {"meta"}
    assert {b.device.type for b in body.buffers()} == {"cpu"}
    assert {n: b.data_ptr() for n, b in body.named_buffers()} == pointers  # not even copied in place

    loader = DataLoader(h36m, batch_size=1, num_workers=1, multiprocessing_context="fork")
    got = [targets["joint_cam"][0].numpy() for _, targets, _ in loader]
    assert len(got) == 2
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert np.abs(got[0]).max() > 0.05  # real joints (metres), not zeros


# --------------------------------------------------------------------------- 2 + 5: hand stage, DDP, resume


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("mano_losses", [True, False])
def test_every_trainable_hand_parameter_gets_a_gradient_under_ddp(frei_root, mano_dir, single_process_group, mano_losses):
    """Two DDP steps with find_unused_parameters=False (a missed parameter fails the second one).
    With the MANO terms every parameter trains (joint_proj reaches the camera head); without
    them the camera head is frozen."""
    from torch.utils.data import default_collate

    from wbcap.body.mano_layer import MANOLayer, find_mano_model
    from wbcap.train.data.freihand import FreiHAND
    from wbcap.train.hand_losses import hand_losses
    from wbcap.train.trainer import _to_tensors, build_hand_model, wrap_ddp

    stage = _hand_stage(mano_losses=mano_losses)
    model = build_hand_model(stage, torch.device("cpu"))
    assert all(p.requires_grad == mano_losses for p in model.rotation_net.cam_out.parameters())
    mano = MANOLayer.from_file(find_mano_model(mano_dir)) if mano_losses else None
    ds = FreiHAND(frei_root, "train", seed=0)
    inputs, targets, meta = _to_tensors(default_collate([ds[0], ds[1]]), torch.device("cpu"))
    ddp = wrap_ddp(model, torch.device("cpu"))
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        sum(hand_losses(ddp(inputs["img"]), targets, meta, mano, stage.model).values()).backward()
    missed = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missed == []
    frozen = 0 if mano_losses else 2  # cam_out weight, bias
    assert sum(p.requires_grad for p in model.parameters()) == len(list(model.parameters())) - frozen


@pytest.mark.slow  # two processes
def test_two_process_hand_stage_then_one_process_resume(tmp_path, mano_dir, frei_root, caplog):
    from wbcap.body.mano_layer import find_mano_model
    from wbcap.train.trainer import build_hand_model, spawn_local, train

    stage = _hand_stage()
    run = _hand_run(tmp_path, "hand", frei_root, mano_dir, keep_last=1, log_every=1)
    Path(run.out).mkdir(parents=True)
    # 4 samples, 2 processes, batch 1: two DDP steps per process
    spawn_local(stage, run, 2, str(find_mano_model(mano_dir)), None, port=29547)
    a = torch.load(Path(run.out) / "rank0_final.pt", weights_only=True)
    b = torch.load(Path(run.out) / "rank1_final.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = build_hand_model(stage, torch.device("cpu")).state_dict()
    assert not torch.equal(a["backbone.conv1.weight"], init["backbone.conv1.weight"])
    # the camera head trains (no parameter is frozen), but only joint_proj reaches it, which FreiHAND's fitted
    # joints leave out (dataset_joints 0, as upstream's loader): zero gradients, Adam leaves it as it was
    assert torch.equal(a["rotation_net.cam_out.0.weight"], init["rotation_net.cam_out.0.weight"])
    saved = torch.load(Path(run.out) / "snapshot_0.pth.tar", weights_only=False)
    assert isinstance(saved["rng"], list) and len(saved["rng"]) == 2 and "cuda" not in saved["rng"][0]

    with caplog.at_level(logging.INFO, logger="wbcap.train.trainer"):
        resumed = train(replace(stage, epochs=2, max_steps_per_epoch=2), replace(run, resume=True))
    assert len(resumed.losses) == 2 and all(math.isfinite(v) and v > 0 for v in resumed.losses)
    assert "written by 2 process(es), resumed by 1" in caplog.text


def test_resume_needs_one_output_folder_seen_by_every_node(tmp_path, monkeypatch):
    from wbcap.errors import InputError
    from wbcap.train import trainer

    (tmp_path / "snapshot_9.pth.tar").write_bytes(b"")
    (tmp_path / "snapshot_10.pth.tar").write_bytes(b"")
    views = [("snapshot_10.pth.tar", "node-a"), ("snapshot_10.pth.tar", "node-a"), (None, "node-b"), (None, "node-b")]
    monkeypatch.setattr(dist, "all_gather_object", lambda out, obj: out.__setitem__(slice(None), views))
    with pytest.raises(InputError, match=r"node-a: snapshot_10.pth.tar, node-b: none\); out must be one folder shared"):
        trainer._resume_point(tmp_path, trainer.DistInfo(0, 4, 0))
    views[2:] = [("snapshot_10.pth.tar", "node-b")] * 2
    assert trainer._resume_point(tmp_path, trainer.DistInfo(0, 4, 0)) == tmp_path / "snapshot_10.pth.tar"
    assert trainer._resume_point(tmp_path, trainer.DistInfo()) == tmp_path / "snapshot_10.pth.tar"  # one process


# --------------------------------------------------------------------------- 3: backend


def test_backend_follows_the_resolved_device(monkeypatch):
    from wbcap.train import trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer.backend_for(torch.device("cpu")) == "gloo"
    assert trainer.backend_for(torch.device("cuda", 1)) == "nccl"
    assert trainer.backend_for(torch.device("cuda")) == "nccl"
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    trainer.init_distributed(trainer.DistInfo(1, 2, 1), torch.device("cpu"))
    trainer.init_distributed(trainer.DistInfo(), torch.device("cpu"))  # one process: no group
    assert calls == [{"backend": "gloo", "rank": 1, "world_size": 2}]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert trainer.dist_info_from_env() == trainer.DistInfo(3, 4, 1)


# --------------------------------------------------------------------------- 5: RNG states


class _FakeCuda:
    """Records the CUDA RNG calls; the real ones would need a GPU."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.calls.append(("get", device)) or torch.full((4,), 7, dtype=torch.uint8))
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": self.calls.append(("set", int(state[0]), device)))
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state was read"))
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("every GPU's state was set"))


def test_rng_state_holds_only_the_training_device(monkeypatch):
    from wbcap.train.rng import rng_state

    fake = _FakeCuda(monkeypatch)
    assert "cuda" not in rng_state(torch.device("cpu"))  # --device cpu on a GPU machine
    state = rng_state(torch.device("cuda", 1))
    assert fake.calls == [("get", torch.device("cuda", 1))] and state["cuda"].tolist() == [7] * 4


def test_rng_restore_per_rank_and_with_another_process_count(monkeypatch, caplog):
    from wbcap.train.rng import restore_rng, rng_state, set_rng_state
    from wbcap.train.trainer import DistInfo

    cpu = torch.device("cpu")
    torch.manual_seed(11)
    s0 = rng_state(cpu)
    want0 = torch.rand(3)
    torch.manual_seed(12)
    s1 = rng_state(cpu)
    want1 = torch.rand(3)
    assert restore_rng([s0, s1], DistInfo(1, 2, 1), cpu, seed=5, epoch=3) and torch.equal(torch.rand(3), want1)
    assert restore_rng([s0, s1], DistInfo(0, 1, 0), cpu, seed=5, epoch=3) and torch.equal(torch.rand(3), want0)  # fewer ranks
    assert restore_rng(s0, DistInfo(), cpu, seed=5, epoch=3) and torch.equal(torch.rand(3), want0)  # one-process file
    with caplog.at_level(logging.WARNING, logger="wbcap.train.trainer"):
        assert not restore_rng([s0], DistInfo(2, 3, 0), cpu, seed=5, epoch=3)  # more ranks: reseed
    expected = 5 + 1000 * 2 + 1_000_003 * 3
    assert torch.initial_seed() == expected and np.random.get_state()[1][0] == np.random.RandomState(expected).get_state()[1][0]
    assert "rank 2 reseeds" in caplog.text

    fake = _FakeCuda(monkeypatch)
    cuda_state = {**s0, "cuda": torch.full((4,), 9, dtype=torch.uint8)}
    set_rng_state(cuda_state, cpu)  # CPU training ignores a saved CUDA state
    set_rng_state(cuda_state, torch.device("cuda", 0))
    legacy = {**s0, "cuda": [torch.full((4,), 1, dtype=torch.uint8), torch.full((4,), 2, dtype=torch.uint8)]}
    set_rng_state(legacy, torch.device("cuda", 1))  # an older snapshot: one state per visible GPU
    set_rng_state(legacy, torch.device("cuda", 5))  # more GPUs now than then: kept as seeded
    assert fake.calls == [("set", 9, torch.device("cuda", 0)), ("set", 2, torch.device("cuda", 1))]


# --------------------------------------------------------------------------- 12: DDP wraps the network


@pytest.mark.slow  # the DDP gradient test runs in the fast loop
def test_ddp_wraps_only_the_network(body_dir, single_process_group):
    from wbcap.train.trainer import build_model, wrap_ddp

    model = build_model(replace(STAGES["body"], model=TINY), _fresh_body(body_dir), torch.device("cpu"))
    ddp = wrap_ddp(model, torch.device("cpu"))
    body_buffers = {id(b) for b in model.body.buffers()}
    assert len(body_buffers) > 10
    assert not body_buffers & {id(b) for b in ddp.module.buffers()}
    assert all(not k.startswith("body.") for k in ddp.module.state_dict())
    assert {id(p) for p in ddp.module.parameters()} == {id(p) for p in model.net.parameters()}
    assert {id(b) for b in ddp.module.buffers()} == {id(b) for b in model.net.buffers()}  # BatchNorm statistics
    out = ddp(torch.rand(1, 3, *TINY.input_img_shape))  # runs network and SMPL-X
    assert out.vertices.shape == (1, model.body.num_vertices, 3)


# --------------------------------------------------------------------------- 13: syncs, CUDA settings


def _count_trainer_syncs(monkeypatch) -> list[str]:
    """Record every device -> host read issued from trainer.py (outside checkpoint writing)."""
    seen: list[str] = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            frame, names = sys._getframe(1), []
            while frame is not None and frame.f_code.co_filename == TRAINER_FILE:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            if names and "_save" not in names:
                seen.append(f"{names[0]}:{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return seen


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("log_every, reads", [(2, 2), pytest.param(4, 1, marks=pytest.mark.slow)])
def test_one_host_read_per_logging_interval(tmp_path, frei_root, mano_dir, monkeypatch, log_every, reads):
    from wbcap.train.hand_losses import HAND_LOSS_NAMES, HAND_MANO_LOSS_NAMES
    from wbcap.train.trainer import train

    steps: list[tuple[int, int, float]] = []
    seen = _count_trainer_syncs(monkeypatch)
    h = train(_hand_stage(), _hand_run(tmp_path, "h", frei_root, mano_dir, log_every=log_every),
              on_step=lambda *a: steps.append(a))
    monkeypatch.undo()
    # (and one an epoch: the weights checked before its snapshot, for a non-finite update unread as a loss)
    assert seen == ["flush:tolist"] * reads + ["_weights_finite:__bool__"], seen
    assert [(e, s) for e, s, _ in steps] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert [v for _, _, v in steps] == h.losses and all(math.isfinite(v) and v > 0 for v in h.losses)
    import json

    rows = [json.loads(line) for line in (tmp_path / "h" / "scalars.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["loss/total"] for r in rows] == h.losses
    for r in rows:  # the terms add up to the total
        assert sum(r[f"loss/{k}"] for k in HAND_LOSS_NAMES + HAND_MANO_LOSS_NAMES) == pytest.approx(r["loss/total"], rel=1e-6)


@pytest.mark.slow  # fast loop: kept under 2 minutes
def test_channels_last_training_matches_and_cudnn_benchmark_is_scoped(tmp_path, frei_root, mano_dir, monkeypatch):
    from wbcap.train import trainer

    stage = _hand_stage(max_steps_per_epoch=2)
    plain = trainer.train(stage, _hand_run(tmp_path, "plain", frei_root, mano_dir))
    monkeypatch.setattr(trainer, "_channels_last", lambda device: True)  # what CUDA runs get
    channels_last = trainer.train(stage, _hand_run(tmp_path, "cl", frei_root, mano_dir))
    assert channels_last.net.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert len(plain.losses) == 2
    # same first loss; after one Adam step (which rescales even rounding-level gradients) close
    assert channels_last.losses[0] == pytest.approx(plain.losses[0], rel=2e-5)
    assert channels_last.losses[1] == pytest.approx(plain.losses[1], rel=1e-2)
    assert channels_last.losses[1] != pytest.approx(plain.losses[0], rel=1e-2)  # the step changed the loss

    before = torch.backends.cudnn.benchmark
    with trainer._cuda_training_settings(torch.device("cuda", 0)):
        assert torch.backends.cudnn.benchmark is True
    with trainer._cuda_training_settings(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is before
    assert torch.backends.cudnn.benchmark is before
