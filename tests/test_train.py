"""Training: the recipe configs, loss falls on the synthetic set, determinism, resume, DDP."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import MICRO as CONFTEST_MICRO

from wbcap.config import ModelConfig
from wbcap.tomllib_compat import tomllib
from wbcap.train.stages import STAGES, StageConfig, load_stage

REPO = Path(__file__).resolve().parents[1]
# ResNet-18s 16 channels wide (9 M weights, not 43 M): the training loop's claims do not depend on
# the width, and its costs (initialisation, Adam, snapshots) go with the weights.
TINY = ModelConfig(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18, backbone_width=16)


@pytest.fixture()
def tmp_path(ram_tmp_path):
    """This module's training runs write their snapshots in RAM where there is room (conftest's
    ram_tmp_path)."""
    return ram_tmp_path


# Training steps here are small: with 2 intra-op threads on a loaded 2-core machine, OpenMP
# barriers made them up to 10x slower (a 25-step test took 250 s instead of 20 s).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_toml_recipes_equal_builtin_stages():
    for name, cfg in STAGES.items():
        assert load_stage(name, REPO / "wbcap" / "train" / "configs" / f"{name}.toml") == cfg, name
        data = tomllib.loads((REPO / "wbcap" / "train" / "configs" / f"{name}.toml").read_text())
        assert data["stage"] == name


def test_paper_schedule():
    body = STAGES["body"]
    # upstream's epochs 1-6 (it starts from a snapshot_0): 3 at lr, 2 at lr/10, 1 at lr/100 (a review)
    assert (body.lr, body.lr_decay_epochs, body.epochs, body.batch_size) == (1e-4, (3, 5), 6, 24)
    assert [body.lr_at(e) for e in range(6)] == pytest.approx([1e-4] * 3 + [1e-5] * 2 + [1e-6])
    assert (STAGES["finetune"].lr_decay_epochs, STAGES["finetune"].epochs) == ((3, 5), 6)
    hand = STAGES["hand"]
    assert (hand.batch_size, hand.lr_decay_epochs, hand.epochs) == (48, (10, 12), 13)
    assert STAGES["finetune"].lr == 1e-5
    assert load_stage("body", None, lr=3e-4, epochs=None).lr == 3e-4


def test_training_adam_is_torchs_adam_update_fused_and_resumes_an_older_snapshots_state():
    """wbcap.train.trainer.adam: the fused kernel on CPU, the same steps as torch's per-tensor
    Adam; an optimizer state saved by the per-tensor form (older snapshots) loads and keeps on alike."""
    from wbcap.train.trainer import adam

    g = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) for p in start] for _ in range(3)]

    def run(make, steps, params=None, state=None):
        params = params or [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(params)
        if state is not None:
            opt.load_state_dict(state)
        for step in steps:
            for p, gr in zip(params, grads[step]):
                p.grad = gr.clone()
            opt.step()
        return params, opt

    fused, opt = run(lambda ps: adam(ps, 1e-2, torch.device("cpu")), range(3))
    assert opt.param_groups[0]["fused"] is True
    plain, _ = run(lambda ps: torch.optim.Adam(ps, lr=1e-2), range(3))
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert not torch.equal(a, torch.zeros_like(a))
    older, older_opt = run(lambda ps: torch.optim.Adam(ps, lr=1e-2), range(2))
    resumed, _ = run(lambda ps: adam(ps, 1e-2, torch.device("cpu")), [2], params=older, state=older_opt.state_dict())
    for a, b in zip(resumed, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _stage(**kw) -> StageConfig:
    base = StageConfig(stage="body", datasets=("synthetic",), lr=3e-4, lr_decay_epochs=(), epochs=1, batch_size=4,
                       num_workers=0, synthetic_length=8, amp=False, model=TINY)
    return replace(base, **kw)


def _run(tmp_path, name, **kw):
    from wbcap.train.trainer import RunConfig

    kw.setdefault("keep_last", 1)
    return RunConfig(out=str(tmp_path / name), device="cpu", log_every=1000, **kw)


# The small geometry of tests/conftest.py's MICRO (256x192 crops, 96x64 body, 64 px hands and face)
# for the tests that run many optimizer steps: the training loop does not depend on the input sizes.
MICRO = replace(TINY, **{k: v for k, v in CONFTEST_MICRO.items() if k.endswith("_shape")})


@pytest.fixture(scope="module")
def fixed_batch_set(body_layer):
    """Two synthetic samples that stay the same every epoch (a Subset hides the per-epoch reseeding)."""
    from torch.utils.data import Subset

    from wbcap.train.data.synthetic import SyntheticWholeBody

    return Subset(SyntheticWholeBody(body_layer, 2, seed=0, config=MICRO, image_size=MICRO.input_img_shape), [0, 1])


@pytest.mark.slow
def test_loss_halves_on_synthetic_set(tmp_path, body_layer, fixed_batch_set):
    """15 optimizer steps on one fixed sample, in one epoch (one snapshot, not 15). The loss ends
    at or under half its first value (measured 0.41-0.45 of it over the last 3). Batch 1: the
    earlier batch of the same sample twice cost twice as much."""
    from torch.utils.data import Subset

    from wbcap.train.trainer import train

    same_sample = Subset(fixed_batch_set, [0] * 15)  # every batch is sample 0
    stage = _stage(epochs=1, batch_size=1, lr=1e-3, model=MICRO, max_steps_per_epoch=15)
    h = train(stage, _run(tmp_path, "a"), dataset=same_sample, body_layer=body_layer)
    assert len(h.losses) == 15 and len(h.checkpoints) == 1
    assert min(h.losses[-3:]) <= 0.5 * h.losses[0], h.losses


@pytest.fixture()
def no_tensorboard(monkeypatch):
    """Scalars go to scalars.jsonl, as where tensorboard is not installed (the `train` extra has it)."""
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)


@pytest.mark.slow  # training steps (the fast loop stays under 2 minutes)
def test_a_loss_that_becomes_nan_stops_the_run_before_its_snapshot(tmp_path, body_layer, fixed_batch_set,
                                                                    no_tensorboard):
    """A run whose loss went NaN at its second step ended "trained", its snapshot all NaN and
    refused by every command that loads it, its log showing only the first, healthy loss (a
    researcher's trial): it stops with one line naming where, and writes no such snapshot;
    scalars.jsonl says null where the number is not finite (jq refused the bare NaN)."""
    from torch.utils.data import Subset

    from wbcap.errors import TrainingDivergedError
    from wbcap.train.trainer import train

    stage = _stage(epochs=1, batch_size=1, lr=1e30, model=MICRO, max_steps_per_epoch=3)
    with pytest.raises(TrainingDivergedError) as caught:
        train(stage, _run(tmp_path, "nan"), dataset=Subset(fixed_batch_set, [0, 1, 0]), body_layer=body_layer)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'nan'}: the training loss became nan at epoch 0 step 1 (global step 1) ("), message
    assert message.endswith("training stopped before this epoch's snapshot; no snapshot was written; lower the "
                            "learning rate (lr, 1e+30 at that epoch) or check the training data"), message
    assert not list((tmp_path / "nan").glob("snapshot_*"))

    def strict(constant):
        raise ValueError(constant)

    rows = [json.loads(line, parse_constant=strict) for line in (tmp_path / "nan" / "scalars.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and rows[1]["loss/total"] is None and rows[0]["loss/total"] > 0


@pytest.mark.slow  # a training step (the fast loop stays under 2 minutes)
def test_weights_that_became_nan_unread_in_a_loss_stop_the_run_before_its_snapshot(tmp_path, body_layer,
                                                                                    fixed_batch_set, monkeypatch):
    """Only the losses of the first process are read: another's NaN, or a non-finite gradient,
    reaches every replica's weights through the update while this loss stays finite, and the
    snapshot was then all NaN (a review). The weights are checked before each snapshot."""
    from torch.utils.data import Subset

    from wbcap.errors import TrainingDivergedError
    from wbcap.train import trainer

    real = trainer.adam

    def poisoned(params, lr, device):  # (an update that leaves a NaN, after a finite loss)
        optimizer = real(params, lr, device)
        step = optimizer.step

        def nan_step(*args, **kwargs):
            done = step(*args, **kwargs)
            with torch.no_grad():
                params[0].view(-1)[0] = float("nan")
            return done

        optimizer.step = nan_step
        return optimizer

    monkeypatch.setattr(trainer, "adam", poisoned)
    stage = _stage(epochs=1, batch_size=1, lr=1e-3, model=MICRO, max_steps_per_epoch=1)
    with pytest.raises(TrainingDivergedError) as caught:
        trainer.train(stage, _run(tmp_path, "w"), dataset=Subset(fixed_batch_set, [0]), body_layer=body_layer)
    assert str(caught.value) == (
        f"{tmp_path / 'w'}: the network's weights became NaN or infinite during epoch 0 (a loss or gradient this "
        "process did not read as such): training stopped before this epoch's snapshot; no snapshot was written; "
        "lower the learning rate (lr, 0.001 at that epoch) or check the training data")
    assert not list((tmp_path / "w").glob("snapshot_*"))


@pytest.mark.slow  # five training runs, five 0.5 GB snapshots
def test_same_seed_same_losses_and_resume_equals_uninterrupted(tmp_path, body_layer, fixed_batch_set, no_tensorboard):
    """Bit for bit on CPU: two runs from one seed, and a run stopped after epoch 0 then resumed."""
    from torch.utils.data import Subset

    from wbcap.train.trainer import train

    one_sample = Subset(fixed_batch_set, [0])  # one step an epoch
    stage = _stage(epochs=2, batch_size=1, lr=1e-3, model=MICRO)
    full = train(stage, _run(tmp_path, "full"), dataset=one_sample, body_layer=body_layer)
    assert len(full.losses) == 2 and full.losses[1] != full.losses[0]
    one = train(replace(stage, epochs=1), _run(tmp_path, "part"), dataset=one_sample, body_layer=body_layer)
    assert len(one.checkpoints) == 1
    assert one.losses == full.losses[:1]  # same seed, same losses
    # stopped part way through epoch 1 (one step an epoch here): what it logged of that epoch, a torn line
    with open(tmp_path / "part" / "scalars.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 1, "loss/total": 99.0}) + '\n{"step": 2, "loss')
    resumed = train(stage, _run(tmp_path, "part", resume=True), dataset=one_sample, body_layer=body_layer)
    assert resumed.losses == full.losses[1:]
    # each step logged once, as the uninterrupted run logged it (the stopped epoch's lines were logged twice)
    assert (tmp_path / "part" / "scalars.jsonl").read_text() == (tmp_path / "full" / "scalars.jsonl").read_text()
    for (k, a), b in zip(full.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), k
    other = train(replace(stage, epochs=1, seed=1), _run(tmp_path, "c"), dataset=one_sample, body_layer=body_layer)
    assert other.losses != one.losses


@pytest.mark.slow  # the real loop: two epochs of one step
def test_the_loop_drops_the_set_aside_run_at_its_first_snapshot(tmp_path, body_layer, fixed_batch_set):
    """What --overwrite set aside in OUT/.wbcap-previous stays while the first epoch trains and is
    gone once its snapshot is written (the launcher puts it back if the run ends before)."""
    from wbcap.train.trainer import train

    run = _run(tmp_path, "r")
    previous = Path(run.out) / ".wbcap-previous"
    previous.mkdir(parents=True)
    (previous / "snapshot_5.pth.tar").write_bytes(b"old")
    seen = []
    stage = _stage(epochs=2, batch_size=1, model=MICRO, max_steps_per_epoch=1)
    train(stage, run, dataset=fixed_batch_set, body_layer=body_layer,
          on_step=lambda epoch, step, loss: seen.append((epoch, previous.is_dir())))
    assert seen == [(0, True), (1, False)]


@pytest.mark.slow  # two training runs
def test_a_resumed_run_numbers_its_steps_on_from_the_snapshot(tmp_path, body_layer, fixed_batch_set, no_tensorboard):
    """Resumed with another batch size (so other steps an epoch), the run numbers its scalars on
    from the steps its snapshot records: the finished epochs' lines stay (they were dropped from
    this run's epoch x steps on), the stopped epoch's go."""
    from wbcap.train.trainer import train

    stage = _stage(epochs=2, batch_size=1, model=MICRO)  # two samples: 2 steps an epoch
    train(stage, _run(tmp_path, "r", keep_last=None), dataset=fixed_batch_set, body_layer=body_layer)
    scalars = tmp_path / "r" / "scalars.jsonl"
    before = scalars.read_text()
    with open(scalars, "a", encoding="utf-8") as f:  # (stopped in epoch 2)
        f.write(json.dumps({"step": 4, "loss/total": 99.0}) + "\n")
    train(replace(stage, epochs=3, batch_size=2), _run(tmp_path, "r", resume=True, keep_last=None),
          dataset=fixed_batch_set, body_layer=body_layer)  # 1 step an epoch now
    lines = [json.loads(line) for line in scalars.read_text().splitlines()]
    assert scalars.read_text().startswith(before) and [r["step"] for r in lines] == [0, 1, 2, 3, 4]
    assert lines[-1]["loss/total"] != 99.0


def test_a_resumed_run_logs_each_step_once(tmp_path, no_tensorboard):
    """The scalars an interrupted run logged from the resumed run's first step on (its unfinished
    epoch, which is trained again) are dropped; a torn last line and foreign lines go too."""
    from wbcap.train.trainer import SCALARS_FILE, _scalar_writer

    lines = [json.dumps({"step": k, "loss/total": float(k)}) + "\n" for k in range(6)]
    (tmp_path / SCALARS_FILE).write_text("".join(lines) + "not json\n" + '{"step": 7, "lo')
    write = _scalar_writer(tmp_path, resumed_at=4)
    write(4, {"loss/total": 40.0})
    write(None, None)
    assert (tmp_path / SCALARS_FILE).read_text() == "".join(lines[:4]) + json.dumps({"step": 4, "loss/total": 40.0}) + "\n"
    write = _scalar_writer(tmp_path)  # (a run that is not resumed appends)
    write(5, {"loss/total": 5.0})
    write(None, None)
    assert (tmp_path / SCALARS_FILE).read_text().count("\n") == 6


def _synthetic_factory(body_layer):
    from wbcap.train.data.synthetic import SyntheticWholeBody

    return SyntheticWholeBody(body_layer, 8, seed=0, config=MICRO, image_size=MICRO.input_img_shape)


@pytest.mark.slow  # two processes
def test_two_process_ddp_ranks_agree(tmp_path, body_dir):
    from wbcap.body.model_files import find_body_model
    from wbcap.train.trainer import spawn_local

    run = _run(tmp_path, "ddp")
    Path(run.out).mkdir(parents=True)
    spawn_local(_stage(epochs=1, batch_size=1, model=MICRO, max_steps_per_epoch=1), run, 2,
                str(find_body_model("neutral", body_dir)), _synthetic_factory,
                port=29533)
    a = torch.load(Path(run.out) / "rank0_final.pt", weights_only=True)
    b = torch.load(Path(run.out) / "rank1_final.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and training changed the weights, so the ranks agree on something non-trivial
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.train.trainer import build_model

    body = SMPLXLayer.from_file(find_body_model("neutral", body_dir))
    init = build_model(_stage(model=MICRO), body, torch.device("cpu")).net.state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a if a[k].is_floating_point())
    # rank 0's snapshot holds those weights
    from wbcap.model.checkpoint import read_checkpoint

    saved = read_checkpoint(Path(run.out) / "snapshot_0.pth.tar").state_dict
    assert list(saved) == list(a) and all(torch.equal(saved[k], a[k]) for k in a)


@pytest.mark.slow  # the trainer's own tests cover the steps; this is the CLI end to end
def test_train_cli_on_synthetic(tmp_path, body_dir):
    from click.testing import CliRunner

    from wbcap.cli import cli

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(
        'datasets = ["synthetic"]\nsynthetic_length = 4\nbatch_size = 2\nnum_workers = 0\nepochs = 1\namp = false\n'
        "[model]\nbackbone_depth = 18\nhand_backbone_depth = 18\nface_backbone_depth = 18\nbackbone_width = 16\n"
    )
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "body", "--config", str(cfg), "-o", str(out), "--body-models", str(body_dir),
                                 "--device", "cpu", "--max-steps", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"trained -> {out / 'snapshot_0.pth.tar'}\n"  # (the result line; logs go to stderr)
    from wbcap.model.checkpoint import read_checkpoint

    ck = read_checkpoint(out / "snapshot_0.pth.tar")
    assert ck.config == TINY and ck.epoch == 0 and "optimizer" in ck.raw
    r = CliRunner().invoke(cli, ["train", "body", "-o", str(tmp_path / "x"), "--body-models", str(body_dir), "--device", "cpu"])
    assert r.exit_code == 2 and "--data-root" in r.output


@pytest.mark.slow  # fast loop: kept under 2 minutes
def test_hand_stage_on_freihand_fixture_then_merge(tmp_path, small_ckpt, mano_dir):
    """The hand stage trains on FreiHAND's native layout, writes the public hand checkpoint names,
    resumes, and its backbone merges into a whole-body model."""
    from wbcap.model.hand_model import HandModel
    from wbcap.testing.dataset_fixtures import write_freihand_fixture
    from wbcap.train.merge import merge_hand_into_body, read_network_tensors
    from wbcap.train.trainer import RunConfig, train

    root = tmp_path / "data"
    write_freihand_fixture(root, num_train=3, num_eval=1)
    stage = replace(STAGES["hand"], datasets=("FreiHAND",), epochs=1, batch_size=2, num_workers=0, amp=False,
                    model=replace(TINY, backbone_width=64))  # (merged into small_ckpt's ResNet-18s, 64 wide)
    run = RunConfig(out=str(tmp_path / "hand"), data_root=str(root), body_models=str(mano_dir), device="cpu", keep_last=2)
    h = train(stage, run)
    assert len(h.losses) == 1 and all(v == v and v > 0 for v in h.losses)
    sd = read_network_tensors(tmp_path / "hand" / "snapshot_0.pth.tar")
    assert list(sd) == list(HandModel(18).state_dict())
    resumed = train(replace(stage, epochs=2), RunConfig(**{**run.__dict__, "resume": True}))
    assert len(resumed.losses) == 1 and resumed.checkpoints == [tmp_path / "hand" / "snapshot_1.pth.tar"]
    merged = merge_hand_into_body(small_ckpt, tmp_path / "hand" / "snapshot_1.pth.tar", tmp_path / "merged.pth")
    msd = read_network_tensors(merged)
    hand = read_network_tensors(tmp_path / "hand" / "snapshot_1.pth.tar")
    backbone = {k[len("backbone."):]: v for k, v in hand.items() if k.startswith("backbone.")}
    assert len(backbone) == sum(k.startswith("hand_roi_net.backbone.") for k in msd) > 0  # every tensor of it
    assert all(torch.equal(msd["hand_roi_net.backbone." + k], v) for k, v in backbone.items())


def test_hand_stage_trains_a_hand_geometry_of_its_config(tmp_path, mano_dir):
    """[model] input_hand_shape 128x128 (heatmaps 8x4x4): FreiHAND's crops and targets follow it,
    and so does the hand model's heatmap (it stayed 8x8x8: a grid_sampler batch-size crash); and
    its ResNet is of the config's backbone_width."""
    from wbcap.testing.dataset_fixtures import write_freihand_fixture
    from wbcap.train.trainer import RunConfig, train

    root = tmp_path / "data"
    write_freihand_fixture(root, num_train=2, num_eval=1)
    small = replace(TINY, input_hand_shape=(128, 128), output_hand_hm_shape=(8, 4, 4))
    stage = replace(STAGES["hand"], datasets=("FreiHAND",), epochs=1, batch_size=2, num_workers=0, amp=False,
                    max_steps_per_epoch=1, model=small)
    h = train(stage, RunConfig(out=str(tmp_path / "hand"), data_root=str(root), body_models=str(mano_dir), device="cpu"))
    assert len(h.losses) == 1 and all(v == v and v > 0 for v in h.losses)
    assert h.net.backbone.conv1.out_channels == TINY.backbone_width == 16 and h.net.backbone.feat_dim == 128
    saved = torch.load(tmp_path / "hand" / "snapshot_0.pth.tar", weights_only=True, mmap=True)
    assert saved["config"] == {"depth": 18, "width": 16}  # (the snapshot says which ResNet it holds)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_resume_refused_while_reading_its_training_set_leaves_stage_json(tmp_path, body_layer, fixed_batch_set,
                                                                             no_tensorboard):
    """A --resume with other flags whose training set is refused (a damaged annotation file) wrote
    stage.json first; the next plain --resume then trained with the refused launch's settings. So
    did run_settings.json (an ML researcher's trial: a mistyped --data-root became the run's)."""
    from wbcap.errors import InputError
    from wbcap.testing.dataset_fixtures import write_cocowb_fixture
    from wbcap.train.trainer import train

    stage = _stage(epochs=2, batch_size=2, model=MICRO, max_steps_per_epoch=1)
    train(replace(stage, epochs=1), _run(tmp_path, "r"), dataset=fixed_batch_set, body_layer=body_layer)
    before = (tmp_path / "r" / "stage.json").read_bytes()
    settings = json.loads((tmp_path / "r" / "run_settings.json").read_text())
    assert settings["data_root"] is None and settings["keep_last"] == 1
    root = write_cocowb_fixture(tmp_path / "coco")
    (root / "MSCOCO" / "annotations" / "coco_wholebody_train_v1.0.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="no 'annotations' field"):
        train(replace(stage, datasets=("MSCOCO",), lr=0.5), _run(tmp_path, "r", resume=True, data_root=str(root)),
              body_layer=body_layer)
    assert (tmp_path / "r" / "stage.json").read_bytes() == before
    assert json.loads((tmp_path / "r" / "run_settings.json").read_text()) == settings
    # both or neither: a full disk as run_settings.json is written leaves the stage.json it would stand beside
    import errno

    import wbcap.train.trainer as trainer

    def full(run):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "run_settings_text", full)
        with pytest.raises(OSError, match="No space left"):
            train(replace(stage, lr=0.5), _run(tmp_path, "r", resume=True), dataset=fixed_batch_set,
                  body_layer=body_layer)
    assert (tmp_path / "r" / "stage.json").read_bytes() == before
    assert json.loads((tmp_path / "r" / "run_settings.json").read_text()) == settings
    assert not [p.name for p in (tmp_path / "r").iterdir() if ".tmp" in p.name]


@pytest.mark.slow  # (2-3 s end to end: the fast loop kept under 2 minutes)
def test_an_unreadable_newest_snapshot_names_the_one_before(tmp_path, body_layer, fixed_batch_set, monkeypatch):
    """A damaged newest snapshot of one's own run got "the file is corrupt or truncated — re-download
    it" (one's own snapshot cannot be downloaded) and no word of the intact one before it. One the
    system would not read (no permission: files a container wrote as root) may be whole: it is
    not to be deleted, only made readable (a review found it told to delete it)."""
    from wbcap.errors import CheckpointError
    from wbcap.train.trainer import train

    out = tmp_path / "r"
    out.mkdir()
    (out / "snapshot_0.pth.tar").write_bytes(b"PK\x03\x04 intact, say")
    (out / "snapshot_1.pth.tar").write_bytes(b"PK\x03\x04 cut short")
    stage = _stage(epochs=3, batch_size=2, model=MICRO)
    with pytest.raises(CheckpointError) as err:
        train(stage, _run(tmp_path, "r", resume=True), dataset=fixed_batch_set, body_layer=body_layer)
    said = str(err.value)
    assert said.startswith(f"{out / 'snapshot_1.pth.tar'}: the newest snapshot of this run cannot be read (")
    assert said.endswith("; delete it to resume from snapshot_0.pth.tar, the one before") and "download" not in said
    import wbcap.model.checkpoint as checkpoint

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "_torch_load", refused)
        with pytest.raises(CheckpointError) as err:
            train(stage, _run(tmp_path, "r", resume=True), dataset=fixed_batch_set, body_layer=body_layer)
    assert str(err.value) == (f"{out / 'snapshot_1.pth.tar'}: cannot be read (Permission denied); check that the file "
                              "is readable")
    (out / "snapshot_0.pth.tar").unlink()
    with pytest.raises(CheckpointError, match=r"; start the run again with overwrite=True in place of resume=True$"):
        train(stage, _run(tmp_path, "r", resume=True), dataset=fixed_batch_set, body_layer=body_layer)


def test_a_run_whose_resnets_would_start_from_random_weights_is_warned_once(tmp_path, body_layer, fixed_batch_set,
                                                                              caplog, monkeypatch):
    """Upstream starts every ResNet from pretrained weights; a run on real sets without
    --imagenet-weights trained them from random ones without a word (found by a review)."""
    import logging

    from torch.utils.data import Subset

    from wbcap.train.trainer import random_start_warning, train

    said = random_start_warning(_stage(datasets=("Human36M", "MSCOCO"), model=ModelConfig()))
    assert said == ("the ResNets start from random weights, which upstream never does: pass imagenet_weights FOLDER "
                    "holding torchvision's resnet50-*.pth and resnet18-*.pth for ImageNet, and pose_backbone FILE, "
                    "SimpleBaseline's COCO 2D-pose pose_resnet_50_256x192.pth.tar, for the body's (as upstream's first "
                    "stage) (README: Training)")
    wide = replace(TINY, backbone_width=64)  # (ResNet-18s of ResNet's width: the pretrained files fit)
    assert "pose_backbone" not in random_start_warning(_stage(stage="hand", datasets=("FreiHAND",), model=wide))
    # the files of the depths the model has (ResNet-50 files were asked for a model of ResNet-18s: an ML trial)
    assert "torchvision's resnet18-*.pth for ImageNet" in random_start_warning(_stage(datasets=("Human36M",), model=wide))
    assert "torchvision's resnet50-*.pth for ImageNet (README" in random_start_warning(
        _stage(stage="hand", datasets=("FreiHAND",), model=ModelConfig()))
    assert random_start_warning(_stage(datasets=("Human36M",), imagenet_weights=str(tmp_path), model=wide)) == (
        "the body ResNet starts from ImageNet, not from a 2D-pose ResNet: pass pose_backbone FILE, SimpleBaseline's COCO "
        "2D-pose pose_resnet_50_256x192.pth.tar, for the body's (as upstream's first stage) (README: Training)")
    assert random_start_warning(_stage(datasets=("Human36M",), imagenet_weights=str(tmp_path), pose_backbone="p",
                                       model=wide)) is None
    assert random_start_warning(_stage(stage="hand", datasets=("FreiHAND",), imagenet_weights=str(tmp_path),
                                       model=wide)) is None
    # narrow ResNets (backbone_width 16): no pretrained weights fit them (those flags are refused), so none is asked for
    for stage in ("body", "hand"):
        assert random_start_warning(_stage(stage=stage, datasets=("Human36M",))) == (
            "the ResNets start from random weights: [model] backbone_width is 16, and ImageNet's and the 2D-pose "
            "ResNets' weights are 64 wide (README: Training)")
    assert random_start_warning(_stage(stage="finetune", datasets=("MSCOCO",), init_checkpoint="merged.pth")) is None
    assert random_start_warning(_stage()) is None  # the synthetic set alone: a try-out
    import wbcap.train.trainer as trainer

    class Built(Exception):
        pass

    def stop(*args, **kwargs):  # (the warning is given before the model is built: no need to train)
        raise Built

    monkeypatch.setattr(trainer, "build_model", stop)
    for resume in (False, True):
        with caplog.at_level(logging.WARNING, logger="wbcap.train.trainer"), pytest.raises(Built):
            train(_stage(datasets=("Human36M",)), _run(tmp_path, "a", resume=resume), dataset=Subset(fixed_batch_set, [0]),
                  body_layer=body_layer)
    said = random_start_warning(_stage(datasets=("Human36M",)))
    assert [r.getMessage() for r in caplog.records if "random weights" in r.getMessage()] == [said]  # not on resume


def _pose_resnet_file(path, depth: int, seed: int, prefix: str = "") -> dict:
    """A checkpoint in SimpleBaseline's pose_resnet layout (a plain state dict: the ResNet, then
    its deconvolution head and heatmap layer), values drawn from ``seed``; returns the ResNet's."""
    from wbcap.model.resnet import ResNetBackbone

    torch.manual_seed(seed)
    resnet = ResNetBackbone(depth)
    for p in resnet.parameters():
        torch.nn.init.normal_(p, std=0.1)
    sd = {k: v for k, v in resnet.state_dict().items() if not k.endswith("num_batches_tracked")}  # (as torch 0.4 saved)
    head = {"deconv_layers.0.weight": torch.randn(2048, 256, 4, 4), "final_layer.weight": torch.randn(17, 256, 1, 1)}
    torch.save({prefix + k: v for k, v in {**sd, **head}.items()}, path)
    return sd


@pytest.mark.parametrize("prefix", ["", pytest.param("module.", marks=pytest.mark.slow)])  # (fast loop: one of 2 s)
def test_the_body_backbone_starts_from_a_2d_pose_resnet_as_upstreams_first_stage(tmp_path, body_layer, prefix):
    """Upstream's first stage starts its body ResNet from SimpleBaseline's COCO 2D-pose ResNet-50
    (tool/convert_simple_to_pose2pose.py); wbcap could not load it (found by a review)."""
    from wbcap.train.trainer import build_model

    want = _pose_resnet_file(tmp_path / "pose_resnet.pth.tar", TINY.backbone_depth, seed=3, prefix=prefix)
    wide = replace(TINY, backbone_width=64)  # (the pose ResNets are ResNet's width)
    net = build_model(_stage(pose_backbone=str(tmp_path / "pose_resnet.pth.tar"), model=wide), body_layer,
                      torch.device("cpu")).net
    got = net.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items()) and len(want) == len(
        [k for k in got if not k.endswith("num_batches_tracked")])
    other = build_model(_stage(model=wide), body_layer, torch.device("cpu")).net
    assert not torch.equal(other.backbone.conv1.weight, want["conv1.weight"])
    # the other ResNets are left as they were (the hand and face ones start from ImageNet or at random)
    assert torch.equal(other.hand_roi_net.backbone.conv1.weight, net.hand_roi_net.backbone.conv1.weight)


def test_a_2d_pose_resnet_that_does_not_fit_is_one_line(tmp_path):
    from wbcap.errors import CheckpointError
    from wbcap.model.init import load_pose_backbone
    from wbcap.model.resnet import ResNetBackbone

    _pose_resnet_file(tmp_path / "r50.pth.tar", 50, seed=0)
    with pytest.raises(CheckpointError, match=r"r50.pth.tar: not a 2D-pose ResNet of the body backbone's depth "
                                              r"\(\d+ missing, \d+ unexpected, \d+ mis-shaped tensors\)$"):
        load_pose_backbone(ResNetBackbone(18), tmp_path / "r50.pth.tar")
    (tmp_path / "notes.txt").write_text("not a checkpoint")  # (the project's checkpoint reader's words)
    with pytest.raises(CheckpointError, match=r"notes.txt: not a PyTorch checkpoint \(neither of the formats"):
        load_pose_backbone(ResNetBackbone(18), tmp_path / "notes.txt")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list.pth: not a state dict of tensors; pass the 2D-pose ResNet"):
        load_pose_backbone(ResNetBackbone(18), tmp_path / "list.pth")


@pytest.mark.slow  # four training runs
def test_a_narrow_run_resumed_with_imagenet_weights_reads_none_of_them(tmp_path, body_layer, fixed_batch_set, mano_dir):
    """A resumed run starts from its snapshot, so the ImageNet files given (64 wide) are not read
    into its narrow ResNets: a review's resume of a backbone_width 16 run was refused as "not a
    matching torchvision ResNet" (the body and the hand stage)."""
    from torch.utils.data import Subset

    from wbcap.testing.dataset_fixtures import write_freihand_fixture
    from wbcap.train.trainer import RunConfig, train

    imagenet = tmp_path / "imagenet"
    imagenet.mkdir()
    want = _pose_resnet_file(tmp_path / "unused.pth", 18, seed=5)
    torch.save({**want, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}, imagenet / "resnet18-x.pth")
    stage = _stage(epochs=1, batch_size=1, model=MICRO)
    train(stage, _run(tmp_path, "body"), dataset=Subset(fixed_batch_set, [0]), body_layer=body_layer)
    resumed = train(replace(stage, epochs=2, imagenet_weights=str(imagenet)), _run(tmp_path, "body", resume=True),
                    dataset=Subset(fixed_batch_set, [0]), body_layer=body_layer)
    assert len(resumed.losses) == 1 and resumed.net.backbone.conv1.out_channels == 16
    root = tmp_path / "data"
    write_freihand_fixture(root, num_train=2, num_eval=1)
    hand = replace(STAGES["hand"], datasets=("FreiHAND",), epochs=1, batch_size=2, num_workers=0, amp=False,
                   max_steps_per_epoch=1, model=replace(TINY, input_hand_shape=(128, 128), output_hand_hm_shape=(8, 4, 4)))
    run = RunConfig(out=str(tmp_path / "hand"), data_root=str(root), body_models=str(mano_dir), device="cpu")
    train(hand, run)
    resumed = train(replace(hand, epochs=2, imagenet_weights=str(imagenet)), replace(run, resume=True))
    assert len(resumed.losses) == 1 and resumed.net.backbone.conv1.out_channels == 16


def test_imagenet_weights_load_through_the_checkpoint_reader_and_refuse_another_resnet(tmp_path):
    """A torchvision ImageNet file (its ``fc`` left out) loads into a backbone; another depth is one line."""
    from wbcap.errors import CheckpointError
    from wbcap.model.init import load_imagenet_backbone
    from wbcap.model.resnet import ResNetBackbone

    want = _pose_resnet_file(tmp_path / "unused.pth", 18, seed=5)
    torch.save({**want, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}, tmp_path / "resnet18-x.pth")
    backbone = ResNetBackbone(18)
    load_imagenet_backbone(backbone, tmp_path / "resnet18-x.pth")
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in want.items())
    with pytest.raises(CheckpointError, match=r"resnet18-x.pth: not a matching torchvision ResNet \(\d+ missing"):
        load_imagenet_backbone(ResNetBackbone(50), tmp_path / "resnet18-x.pth")
