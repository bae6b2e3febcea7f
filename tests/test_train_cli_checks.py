"""`wbcap train`: what a fresh-user trial found, each checked before any work or file is written.

* ``--init`` is read whole (weights-only) and checked against the model before ``-o`` is
  touched; ``--overwrite`` sets the previous run aside (``-o/.wbcap-previous/``) and deletes it
  only once the new run has its first snapshot: a run that fails or is stopped (Ctrl-C, SIGTERM)
  before that puts it back;
* every ``--config`` value (and ``--lr``...) is checked: one line naming the file, the key, the
  value and what it takes; a file's ``stage`` must be the subcommand's;
* ``--resume`` takes the run's recorded settings as defaults, refuses other model settings
  before writing anything, names changed training settings, says when the run is complete; a
  run an ``--overwrite`` killed before its first snapshot set aside is put back first, and its
  settings (not the killed run's) are the ones resumed;
* ``--gpus`` needs CUDA; a ``--data-root`` that does not exist is said so;
* a stopped ``--gpus`` launch passes the stop to torchrun's agent and waits for it (and so for
  its workers) before it puts the previous run back (a fake agent and worker stand in).

The training loop is replaced by a stand-in that writes what a run writes (the checks happen
before it runs).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from test_train_outputs import invoke, one_error_line

from wbcap.config import ModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def trained(monkeypatch):
    """Replace the training loop: record each call (and what -o held then), write what a run writes."""
    import wbcap.train.trainer as trainer

    calls = []

    def fake_train(stage, run, on_step=None, **kwargs):
        out = Path(run.out)
        calls.append((stage, run, _listing(out)))
        (out / "stage.json").write_text(json.dumps(stage.to_dict()))
        (out / "run_settings.json").write_text(trainer.run_settings_text(run))  # (with stage.json, as train writes them)
        (out / "scalars.jsonl").write_text(json.dumps({"step": 0}) + "\n")
        (out / "snapshot_0.pth.tar").write_bytes(b"new")

    monkeypatch.setattr(trainer, "train", fake_train)
    return calls


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): what a test compares before and after."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _previous_run(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    (folder / "stage.json").write_text("{}")
    (folder / "scalars.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(4)))
    (folder / "snapshot_1.pth.tar").write_bytes(b"old")
    (folder / "snapshot_2.pth.tar").write_bytes(b"old2")
    return _listing(folder)


def _model_toml(path: Path, model: dict, **top) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()] + ["[model]"]
    lines += [f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in model.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- 1: --init, --overwrite


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_init_is_read_whole_and_fitted_before_overwrite_touches_the_folder(tmp_path, train_args, trained, small_ckpt):
    from conftest import SMALL

    out = tmp_path / "r"
    before = _previous_run(out)
    data = small_ckpt.read_bytes()
    trunc = tmp_path / "trunc.pth.tar"
    trunc.write_bytes(data[: len(data) // 2])  # (starts as a torch.save zip: the first-bytes look passes it)
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--init", trunc)
    line = one_error_line(r)
    assert line.startswith(f"error: {trunc}: not a readable PyTorch checkpoint (") and "re-download it" in line, line
    assert _listing(out) == before and not trained
    # a checkpoint of another model (ResNet-18s; the recipe's are ResNet-50s) and a TOML asking for
    # ResNet-50s: named, before any work
    big = _model_toml(tmp_path / "big.toml", {"backbone_depth": 50, "hand_backbone_depth": 50})
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--init", small_ckpt, "--config", big)
    line = one_error_line(r)
    assert line.startswith(f"error: --init {small_ckpt}: its model has backbone_depth 18 (requested: 50); "), line
    assert "hand_backbone_depth 18 (requested: 50)" in line and line.endswith(
        "drop those keys from the [model] table of the --config TOML (the checkpoint's own settings are taken), or "
        "start from another checkpoint\n"), line
    assert _listing(out) == before and not trained
    # the start checkpoint named in the TOML: called by its key there, not by a flag never given (an ML trial)
    named = _model_toml(tmp_path / "named.toml", {"backbone_depth": 50, "hand_backbone_depth": 50},
                        init_checkpoint=str(small_ckpt))
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--config", named)
    line = one_error_line(r)
    assert line.startswith(f"error: named.toml's init_checkpoint {small_ckpt}: its model has backbone_depth 18 "
                           "(requested: 50); "), line
    assert "--init" not in line and _listing(out) == before and not trained
    # without a [model] table: the checkpoint's own model settings (a fine-tuning of a ResNet-18
    # model needed them all copied into a TOML: an ML trial)
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--init", small_ckpt)
    assert r.exit_code == 0, r.output
    assert len(trained) == 1 and trained[0][0].init_checkpoint == str(small_ckpt)
    assert trained[0][0].model == ModelConfig.from_dict(SMALL) and "WARNING" not in r.output, r.output
    trained.clear()
    # the same checkpoint with its model settings given: taken
    cfg = _model_toml(tmp_path / "small.toml", SMALL)
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--init", small_ckpt, "--config", cfg)
    assert r.exit_code == 0, r.output
    assert len(trained) == 1 and trained[0][0].init_checkpoint == str(small_ckpt)
    assert "WARNING" not in r.output, r.output
    # a body-stage snapshot (unmerged: its hands never trained) fits the model, so it trains, with
    # a warning naming the merge (a user trial: fine-tuned without a word)
    import torch

    snapshot = torch.load(small_ckpt, map_location="cpu", weights_only=True)
    body = tmp_path / "snapshot_0.pth.tar"
    torch.save({**snapshot, "stage": {"stage": "body", "epochs": 1}}, body)
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--init", body, "--config", cfg)
    assert r.exit_code == 0 and len(trained) == 2, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and " ".join(r.output.split()).count(
        f"--init {body} is a body-stage snapshot: its hand network was never trained") == 1, r.output
    assert f"`wbcap train merge --body {body} -o merged.pth.tar`" in " ".join(r.output.split())


def test_finetune_checks_a_partial_model_table_against_its_init_checkpoints_model(tmp_path, train_args, trained,
                                                                                    micro_ckpt):
    """A [model] key repeating the --init checkpoint's own value was checked against the recipe's
    geometry and refused (a break-it trial: `output_hm_shape [8, 3, 2] does not fit input_body_shape
    [256, 192]`); the checkpoint's model comes first, the TOML's keys over it, also when the TOML
    names the checkpoint."""
    from conftest import MICRO_CKPT  # (micro_ckpt's model)

    hm = _model_toml(tmp_path / "hm.toml", {"output_hm_shape": MICRO_CKPT["output_hm_shape"]})
    r = invoke(*train_args("finetune"), "-o", tmp_path / "a", "--init", micro_ckpt, "--config", hm)
    assert r.exit_code == 0, r.output
    assert trained[-1][0].model == ModelConfig.from_dict(MICRO_CKPT)
    named = _model_toml(tmp_path / "named.toml", {"input_body_shape": MICRO_CKPT["input_body_shape"]},
                        init_checkpoint=str(micro_ckpt))
    r = invoke(*train_args("finetune"), "-o", tmp_path / "b", "--config", named)
    assert r.exit_code == 0, r.output
    assert trained[-1][0].model == ModelConfig.from_dict(MICRO_CKPT) and len(trained) == 2
    # ImageNet's 64-wide ResNets for the narrow checkpoint's: its own settings are named, not a [model] key to leave out
    r = invoke(*train_args("finetune"), "-o", tmp_path / "c", "--init", micro_ckpt, "--imagenet-weights", tmp_path)
    assert one_error_line(r) == ("error: --imagenet-weights is for ResNets 64 channels wide, and the --init checkpoint's "
                                 "are 16: drop --imagenet-weights (the checkpoint's weights replace them anyway)\n")
    assert len(trained) == 2 and not (tmp_path / "c").exists()


def test_overwrite_sets_the_previous_run_aside_until_the_first_snapshot(tmp_path, train_args, trained):
    out = tmp_path / "r"
    before = _previous_run(out)
    r = invoke(*train_args("body"), "-o", out, "--overwrite")
    assert r.exit_code == 0, r.output
    # while the new run trained, the previous one was kept, aside
    seen = dict(trained[0][2])
    assert seen == {f".wbcap-previous/{name}": data for name, data in before.items()}
    assert json.loads((out / "run_settings.json").read_text())["keep_last"] is None  # (this run's, written by train)
    # once it wrote its snapshot, the previous run is gone
    assert sorted(_listing(out)) == ["run_settings.json", "scalars.jsonl", "snapshot_0.pth.tar", "stage.json"]
    assert not (out / ".wbcap-previous").exists()


@pytest.mark.parametrize("how, code, said", [("error", 2, "error: bad sample"), ("ctrl-c", 130, "interrupted"),
                                             ("sigterm", 143, "stopped by SIGTERM")])
def test_a_run_ending_before_its_first_snapshot_puts_the_previous_run_back(tmp_path, train_args, monkeypatch, how, code,
                                                                            said):
    import wbcap.train.trainer as trainer
    from wbcap.errors import InputError

    def failing(stage, run, **kwargs):
        out = Path(run.out)
        (out / "stage.json").write_text(json.dumps(stage.to_dict()))
        (out / "scalars.jsonl").write_text('{"step": 0}\n')
        (out / ".snapshot_0.pth.tar.tmp-1").write_bytes(b"half")
        if how == "error":
            raise InputError("bad sample")
        if how == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM did not stop the run")

    def not_taken(signum, frame):  # (what SIGTERM meets when the command does not take it as Ctrl-C)
        pytest.fail("SIGTERM was not taken as Ctrl-C")

    monkeypatch.setattr(trainer, "train", failing)
    previous_handler = signal.signal(signal.SIGTERM, not_taken)
    try:
        out = tmp_path / "r"
        before = _previous_run(out)
        r = invoke(*train_args("body"), "-o", out, "--overwrite")
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    assert r.exit_code == code and said in r.output, r.output
    assert _listing(out) == before and not (out / ".wbcap-previous").exists()
    # an empty folder the user made is left empty
    (tmp_path / "empty").mkdir()
    assert invoke(*train_args("body"), "-o", tmp_path / "empty").exit_code == code
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.slow  # a training process with two data-loading workers
def test_sigterm_to_the_process_group_stops_training_as_ctrl_c_does(tmp_path, body_dir):
    """`timeout`, `kill -TERM -PGID` and a batch scheduler's cancel signal the whole process group:
    the data-loading workers died of it under the main process, which failed ("DataLoader worker
    is killed by signal: Terminated", a crash log) and left their pymp-* folders (an admin's
    trial). The workers now leave the signal to the main process: "stopped by SIGTERM", 143."""
    import subprocess
    import sys
    import tempfile
    import time

    # (a short TMPDIR: torch's workers share tensors over a Unix socket made in it, whose path may
    # not pass 107 bytes; one under pytest's folder, /tmp/pytest-of-root/pytest-125/popen-gw0/
    # test_sigterm_to_the_process_gr0/tmp, did once pytest's count reached three digits)
    temp = Path(tempfile.mkdtemp(prefix="wb-"))
    narrow = _model_toml(tmp_path / "narrow.toml", {"backbone_depth": 18, "hand_backbone_depth": 18, "backbone_width": 16})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wbcap", "train", "body", "--datasets", "synthetic", "--max-steps", "50",
             "--batch-size", "2", "--workers", "2", "--body-models", str(body_dir), "--device", "cpu", "-o",
             str(tmp_path / "run"), "--config", str(narrow)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "TMPDIR": str(temp)})
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(children.read_text().split()) < 2:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)  # (the workers loading their first batches)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "stopped by SIGTERM", err[-2000:]
        assert "Traceback" not in err and not list(temp.glob("pymp-*"))
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_a_killed_overwrite_is_settled_by_the_next_run(tmp_path, train_args, trained):
    """SIGKILL between setting the previous run aside and the first snapshot: the next run on the
    folder puts it back (no snapshot yet) or drops it (the new run has one)."""
    out = tmp_path / "r"
    before = _previous_run(out)
    (out / ".wbcap-previous").mkdir()
    for name in before:
        (out / name).rename(out / ".wbcap-previous" / name)
    (out / "stage.json").write_text('{"stage": "body"}')  # (the killed run's)
    r = invoke(*train_args("body"), "-o", out)
    assert r.exit_code == 2 and [line for line in r.output.splitlines() if line.strip()] == [
        f"WARNING  {out}: put back the previous training run that an interrupted --overwrite had set aside",
        f"error: {out} holds a previous training run (e.g. snapshot_2.pth.tar); pass --overwrite to replace it, "
        "--resume to continue it, or choose another -o folder"], r.output
    assert _listing(out) == before
    (out / ".wbcap-previous").mkdir()
    (out / "snapshot_1.pth.tar").rename(out / ".wbcap-previous" / "snapshot_1.pth.tar")
    (out / "snapshot_2.pth.tar").write_bytes(b"killed run's")
    assert invoke(*train_args("body"), "-o", out, "--overwrite").exit_code == 0
    assert sorted(_listing(out)) == ["run_settings.json", "scalars.jsonl", "snapshot_0.pth.tar", "stage.json"]


# --------------------------------------------------------------------------- 2, 3: --config values


BAD_VALUES = [
    ('epochs = "two"', 'epochs = "two": expected a whole number of 1 or more'),
    ('lr = "fast"', 'lr = "fast": expected a number above 0'),
    ("lr = nan", "lr = NaN: expected a number above 0"),
    ("batch_size = 0", "batch_size = 0: expected a whole number of 1 or more"),
    ("max_steps_per_epoch = 0", "max_steps_per_epoch = 0: expected a whole number of 1 or more"),
    ('amp = "yes"', 'amp = "yes": expected true or false'),
    ("seed = true", "seed = true: expected a whole number from 0 to 4294967295"),
    ('datasets = "synthetic"',
     'datasets = "synthetic": expected a list of training set names, e.g. ["Human36M", "MSCOCO"] or ["synthetic"]'),
    ("lr_decay_epochs = 4", "lr_decay_epochs = 4: expected a list of epoch numbers (whole numbers of 0 or more), "
                            "e.g. [3, 5]"),
    ("[model]\ninput_img_shape = [512]", "[model] input_img_shape = [512]: expected a list of 2 whole numbers above 0"),
    ("[model]\nbackbone_depth = 20", "[model] backbone_depth = 20: expected one of 18, 34, 50, 101, 152"),
    ("[model]\nbackbone_width = 12", "[model] backbone_width = 12: expected a multiple of 8 from 8 to 64 (64: ResNet's, "
                                     "needed by ImageNet's and the released weights)"),
    ("[model]\nfocal = [5000, -1]", "[model] focal = [5000, -1]: expected a list of 2 numbers above 0"),
    ("model = 3", "model = 3: expected a [model] table of model settings"),
    ("[model]\nnum_betas = 300", "[model] num_betas = 300: expected 10 (the SMPL-X betas training uses, as Hand4Whole)"),
    ("[model]\nnum_expression = 50",
     "[model] num_expression = 50: expected 10 (the SMPL-X expression coefficients training uses, as Hand4Whole)"),
    ("epoch = 2", "epoch: unknown setting; the valid keys are stage, datasets, lr, lr_decay_epochs, lr_decay_factor, "
                  "epochs, batch_size, num_workers, seed, amp, init_checkpoint, imagenet_weights, pose_backbone, "
                  "max_steps_per_epoch, synthetic_length, mano_losses and a [model] table"),
    ("[model]\ndepth = 18", "[model] depth: unknown setting; the valid [model] keys are backbone_depth, "
                            "hand_backbone_depth, face_backbone_depth, backbone_width, input_img_shape, input_body_shape, "
                            "output_hm_shape, input_hand_shape, output_hand_hm_shape, input_face_shape, focal, "
                            "camera_3d_size, num_betas, num_expression, hand_box_extension, face_box_extension, "
                            "fix_left_hand_flip"),
]


@pytest.mark.parametrize("text, message", BAD_VALUES, ids=[t for t, _ in BAD_VALUES])
def test_every_config_value_is_checked_before_any_work(tmp_path, train_args, trained, text, message):
    cfg = tmp_path / "my.toml"
    cfg.write_text(text + "\n")
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--config", cfg)
    assert one_error_line(r) == f"error: {cfg}: {message}\n"
    assert not (tmp_path / "r").exists() and not trained


def test_flag_values_and_unreadable_configs_are_refused(tmp_path, train_args, trained):
    for flag, value, expected in (("--lr", "-1", "a number above 0"), ("--lr", "nan", "a number above 0"),
                                  ("--seed", "-3", "a whole number from 0 to 4294967295")):
        r = invoke(*train_args("body"), "-o", tmp_path / "r", flag, value)
        assert one_error_line(r) == f"error: {flag} {float(value) if flag == '--lr' else value}: expected {expected}\n"
    # a node rank of no node (it trained as a non-zero rank: no run record, no result line; a user trial)
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--nnodes", "1", "--node-rank", "3")
    assert one_error_line(r) == ("error: --node-rank 3: must be below --nnodes 1 (machines are numbered 0 to 0; node 0 "
                                 "writes the run's record)\n")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes("# réglages\nlr = 0.001\n".encode("latin-1"))
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--config", latin)
    assert one_error_line(r) == f"error: {latin}: not UTF-8 text (byte 0xe9 at offset 3); save the TOML file as UTF-8\n"
    assert not (tmp_path / "r").exists() and not trained


def test_a_config_of_another_stage_is_refused(tmp_path, train_args, trained, small_ckpt):
    repo = Path(__file__).resolve().parents[1]
    copy = tmp_path / "copy_of_body.toml"
    copy.write_text((repo / "wbcap" / "train" / "configs" / "body.toml").read_text())
    r = invoke(*train_args("finetune"), "-o", tmp_path / "r", "--config", copy)
    assert one_error_line(r) == (f'error: {copy}: stage = "body" makes it a recipe for `wbcap train body`, not `wbcap '
                                 'train finetune`; run `wbcap train body`, or set stage = "finetune" in it (or drop '
                                 "the key)\n")
    assert not (tmp_path / "r").exists() and not trained
    # the stage's own recipe is taken as it is (its stage key names the subcommand)
    assert invoke(*train_args("body"), "-o", tmp_path / "r", "--config", copy).exit_code == 0
    assert trained[-1][0].stage == "body" and trained[-1][0].epochs == 6


# --------------------------------------------------------------------------- 4: --resume


def _recorded_run(folder: Path, epochs_done: int, **settings) -> None:
    from wbcap.config import ModelConfig
    from wbcap.train.stages import STAGES

    stage = dataclasses.replace(STAGES["body"], datasets=("synthetic",), batch_size=2, num_workers=0,
                                max_steps_per_epoch=1, model=ModelConfig(backbone_depth=18), **settings)
    folder.mkdir(parents=True)
    (folder / "stage.json").write_text(json.dumps(stage.to_dict(), indent=1))
    import torch

    for e in range(epochs_done):  # (whole torch.save files, of no network: the launcher reads no tensor)
        torch.save({"epoch": e}, folder / f"snapshot_{e}.pth.tar")


def test_resume_takes_the_runs_settings_and_refuses_another_model(tmp_path, body_dir, trained):
    out = tmp_path / "r"
    _recorded_run(out, 2)
    before = _listing(out)
    resume = ["train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume"]
    # another model (the recipe's ResNet-50 body): refused before anything is written
    cfg = _model_toml(tmp_path / "deeper.toml", {"backbone_depth": 50})
    r = invoke(*resume, "--config", cfg)
    assert one_error_line(r) == (f"error: {out}: the run trained a model with other settings (stage.json says [model] "
                                 "backbone_depth 18 (requested: 50)); resume with the run's model settings, or start "
                                 "a new run (--overwrite or another -o folder)\n")
    assert _listing(out) == before and not trained
    # no flags repeated: the run's settings
    r = invoke(*resume)
    assert r.exit_code == 0 and "WARNING" not in r.output, r.output
    stage, run, _ = trained[-1]
    assert run.resume and stage.model.backbone_depth == 18 and stage.datasets == ("synthetic",)
    assert (stage.batch_size, stage.num_workers, stage.max_steps_per_epoch) == (2, 0, 1)
    # changed training settings: named, old -> new
    r = invoke(*resume, "--lr", "0.001", "--batch-size", "4")
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("WARNING")]
    assert warnings == [f"WARNING  resuming {out} with settings other than its run's (stage.json): lr 0.0001 -> 0.001, "
                        "batch_size 2 -> 4; the result will differ from an uninterrupted run"], r.output
    assert (trained[-1][0].lr, trained[-1][0].batch_size) == (0.001, 4)
    # more epochs: training on, which is what an uninterrupted run of that length trains (the
    # learning rate steps at lr_decay_epochs): said, not warned of
    r = invoke(*resume, "--epochs", "9")
    assert r.exit_code == 0 and "WARNING" not in r.output, r.output
    assert f"resuming {out} to train to epoch 9 (its stage.json says 6)" in " ".join(r.output.split())
    assert trained[-1][0].epochs == 9


def test_resume_of_a_run_whose_recorded_model_cannot_be_built_is_one_line_naming_the_file(tmp_path, body_dir, trained):
    out = tmp_path / "r"
    _recorded_run(out, 1)
    stage = json.loads((out / "stage.json").read_text())
    stage["model"]["output_hm_shape"] = [8, 9, 6]  # (heatmap cells that do not divide the crop)
    (out / "stage.json").write_text(json.dumps(stage))
    before = _listing(out)
    r = invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
    line = one_error_line(r)
    assert line.startswith(f"error: {out / 'stage.json'}: its [model] settings are not a network wbcap can build ("), line
    assert line.endswith("); start a new run (--overwrite or another -o folder)\n"), line
    assert _listing(out) == before and not trained


def test_resume_takes_the_runs_data_root_body_models_and_keep_last(tmp_path, body_dir, train_args, trained,
                                                                      monkeypatch):
    """--data-root, --body-models and --keep-last were not recorded: a resume without them failed
    for the data or the model, or silently kept every snapshot again. They are recorded (absolute)
    in run_settings.json and are the resume's defaults; one given again wins."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r"
    assert invoke(*train_args("body"), "-o", "r", "--data-root", "data", "--keep-last", "2").exit_code == 0
    recorded = json.loads((out / "run_settings.json").read_text())
    assert recorded.pop("file_identity")["body_model_file"]["path"] == str(body_dir / "smplx" / "SMPLX_NEUTRAL.npz")
    assert recorded == {"data_root": str(tmp_path / "data"), "body_models": str(body_dir), "keep_last": 2}
    monkeypatch.chdir(tmp_path / "data")  # (from another folder)
    r = invoke("train", "body", "--device", "cpu", "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    run = trained[-1][1]
    assert (run.data_root, run.body_models, run.keep_last) == (str(tmp_path / "data"), str(body_dir), 2)
    assert "resuming with the run's --keep-last 2" in r.output
    r = invoke("train", "body", "--device", "cpu", "-o", out, "--resume", "--keep-last", "5")
    assert r.exit_code == 0 and trained[-1][1].keep_last == 5, r.output
    assert json.loads((out / "run_settings.json").read_text())["keep_last"] == 5  # (the resumed run's, from now on)
    # the recorded folder deleted since: the error says where that folder came from (it said "the folder you gave")
    settings = json.loads((out / "run_settings.json").read_text())
    (out / "run_settings.json").write_text(json.dumps({**settings, "body_models": str(tmp_path / "gone")}))
    r = invoke("train", "body", "--device", "cpu", "-o", out, "--resume")
    assert one_error_line(r).endswith(f"or {tmp_path / 'gone'}/ (the folder the run's record (run_settings.json) "
                                      "names, which does not exist yet)\n"), r.output


def test_run_settings_come_from_the_run_a_killed_overwrite_set_aside(tmp_path):
    """Other nodes read the settings of the run that is resumed, the one set aside, before node 0
    has put it back (not the killed run's, in the folder)."""
    from wbcap.train.launch import _recorded_run_settings

    out = tmp_path / "r"
    (out / ".wbcap-previous").mkdir(parents=True)
    (out / ".wbcap-previous" / "snapshot_3.pth.tar").write_bytes(b"old")
    (out / ".wbcap-previous" / "run_settings.json").write_text(json.dumps({"data_root": "/data/previous"}))
    (out / "run_settings.json").write_text(json.dumps({"data_root": "/data/killed"}))
    assert _recorded_run_settings(out, None, None, None) == ("/data/previous", None, None)


def test_a_run_whose_settings_cannot_be_recorded_leaves_the_folder_as_found(tmp_path, train_args, trained,
                                                                           monkeypatch):
    """A full disk while run_settings.json is written (as training starts): the previous run
    that --overwrite set aside is put back, a folder this run made is removed."""
    import errno

    import wbcap.train.trainer

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", "run_settings.json")

    monkeypatch.setattr(wbcap.train.trainer, "run_settings_text", full)
    out = tmp_path / "r"
    before = _previous_run(out)
    r = invoke(*train_args("body"), "-o", out, "--overwrite")
    assert r.exit_code == 2 and _listing(out) == before and len(trained) == 1, r.output
    r = invoke(*train_args("body"), "-o", tmp_path / "new")
    assert r.exit_code == 2 and not (tmp_path / "new").exists(), r.output


def test_a_config_files_path_that_names_nothing_names_the_file_and_key(tmp_path, train_args, trained, monkeypatch):
    """`init_checkpoint = "../runs/merged.pth.tar"` in a --config file was reported as
    "--init ../runs/merged.pth.tar: no such file", a flag the user never passed."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "ft.toml"
    cfg.write_text('stage = "finetune"\ninit_checkpoint = "../runs/merged.pth.tar"\n')
    r = invoke(*train_args("finetune"), "-o", tmp_path / "r", "--config", cfg)
    assert one_error_line(r) == (f'error: {cfg}: init_checkpoint = "../runs/merged.pth.tar": no such file; a relative '
                                 f"path is read from the current folder, {tmp_path}\n")
    cfg.write_text(f'stage = "finetune"\nimagenet_weights = "{tmp_path / "nowhere"}"\ninit_checkpoint = "x.pth"\n')
    r = invoke(*train_args("finetune"), "-o", tmp_path / "r", "--config", cfg, "--init", tmp_path / "given.pth")
    assert one_error_line(r) == f'error: {cfg}: imagenet_weights = "{tmp_path / "nowhere"}": no such folder\n'
    cfg.write_text(f'stage = "finetune"\ninit_checkpoint = "{tmp_path}"\n')  # (a folder: not "no such file")
    r = invoke(*train_args("finetune"), "-o", tmp_path / "r", "--config", cfg)
    assert one_error_line(r) == f'error: {cfg}: init_checkpoint = "{tmp_path}": is a folder, not a file; name the file\n'
    os.mkfifo(tmp_path / "pipe")  # (a pipe is no folder either: a review)
    cfg.write_text(f'stage = "finetune"\ninit_checkpoint = "{tmp_path / "pipe"}"\n')
    r = invoke(*train_args("finetune"), "-o", tmp_path / "r", "--config", cfg)
    assert one_error_line(r) == f'error: {cfg}: init_checkpoint = "{tmp_path / "pipe"}": not a file; name the file\n'
    assert not trained and not (tmp_path / "r").exists()


def test_resuming_a_complete_run_says_so(tmp_path, body_dir, trained):
    out = tmp_path / "r"
    _recorded_run(out, 6)
    before = _listing(out)
    r = invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
    assert r.exit_code == 0 and not trained, r.output
    assert [line for line in r.output.splitlines() if line.strip()] == [
        f"WARNING  {out}: the run is already complete (snapshot_5.pth.tar: 6 of 6 epochs); nothing to train — raise "
        "--epochs to train on", f"trained -> {out / 'snapshot_5.pth.tar'}"]  # (the run's result, on stdout)
    assert _listing(out) == before
    assert invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume",
                  "--epochs", "8").exit_code == 0
    assert trained[-1][0].epochs == 8


@pytest.mark.parametrize("damage", ["cut short", "not a checkpoint"])
def test_resuming_a_complete_run_whose_newest_snapshot_is_damaged_says_so(tmp_path, body_dir, trained, damage):
    """A user trial: a finished run whose newest snapshot was cut short (or a text file named like
    a later one) was called complete and printed as the result, exit 0."""
    out = tmp_path / "r"
    _recorded_run(out, 6)
    last = out / "snapshot_5.pth.tar"
    if damage == "cut short":
        last.write_bytes(last.read_bytes()[:-40])
    else:
        last.write_text("notes")
    r = invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
    line = one_error_line(r)
    assert line.startswith(f"error: {last}: the newest snapshot of this run cannot be read ("), line
    assert line.endswith("); delete it to resume from snapshot_4.pth.tar, the one before\n") and not trained, line


def test_resume_after_a_run_killed_before_its_first_snapshot_says_to_start_again(tmp_path, body_dir, trained):
    """SIGKILL before the first snapshot left stage.json and a half-written snapshot: --resume said
    "drop --resume", and without it the folder "holds a previous training run ... pass --resume":
    now --resume says to start again with --overwrite, which does. A resume that finds a killed
    snapshot's temporary beside its snapshots removes it."""
    out = tmp_path / "r"
    _recorded_run(out, 0)
    (out / ".snapshot_0.pth.tmp-0badc0de.tar").write_bytes(b"half")
    args = ["train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out]
    r = invoke(*args, "--resume")
    assert one_error_line(r) == (f"error: {out}: the training run there stopped before its first snapshot, so there "
                                 "is nothing to resume; start it again with --overwrite in place of --resume\n")
    assert not trained
    assert invoke(*args, "--overwrite", "--datasets", "synthetic").exit_code == 0 and len(trained) == 1
    stale = out / ".snapshot_1.pth.tmp-0badc0de.tar"
    stale.write_bytes(b"half")
    r = invoke(*args, "--resume")
    assert r.exit_code == 0 and len(trained) == 2, r.output
    assert not stale.exists()


def test_resume_of_another_stages_run_is_refused(tmp_path, body_dir, trained):
    out = tmp_path / "r"
    _recorded_run(out, 1)
    r = invoke("train", "finetune", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
    assert one_error_line(r) == (f"error: {out} holds a `wbcap train body` run (says stage.json), not a finetune one; "
                                 "resume it with `wbcap train body --resume`\n")
    assert not trained


def _killed_overwrite(out: Path, epochs_done: int = 2, **dead) -> dict[str, bytes]:
    """A run (``epochs_done`` snapshots) that an --overwrite with the ``dead`` settings set aside in
    .wbcap-previous/ and was killed before its first snapshot, after writing its stage.json;
    the previous run's files."""
    _recorded_run(out / ".wbcap-previous", epochs_done)
    previous = _listing(out / ".wbcap-previous")
    stage = json.loads(previous["stage.json"])
    (out / "stage.json").write_text(json.dumps({**stage, **dead, "model": {**stage["model"], **dead.get("model", {})}}))
    (out / "scalars.jsonl").write_text('{"step": 0}\n')
    return previous


@pytest.mark.parametrize("dead", [{"lr": 0.001, "batch_size": 4}, {"model": {"backbone_depth": 50}}],
                         ids=["training settings", "model settings"])
def test_resume_after_a_killed_overwrite_takes_the_put_back_runs_settings(tmp_path, body_dir, trained, dead):
    """--overwrite --lr 1e-3 killed after its stage.json, before its first snapshot: --resume puts
    the previous run back first and resumes it with its own settings (not the dead run's: no
    warning of changed settings, no refusal of model settings nobody passed)."""
    out = tmp_path / "r"
    previous = _killed_overwrite(out, **dead)
    r = invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
    assert r.exit_code == 0, r.output
    assert [line for line in r.output.splitlines() if line.startswith(("WARNING", "error"))] == [
        f"WARNING  {out}: put back the previous training run that an interrupted --overwrite had set aside"], r.output
    stage, run, listing = trained[-1]
    assert run.resume and {k: v for k, v in listing.items() if k != "run_settings.json"} == previous  # (put back)
    assert (stage.lr, stage.batch_size, stage.model.backbone_depth) == (0.0001, 2, 18)


def test_resuming_a_complete_run_after_a_killed_overwrite_puts_it_back_first(tmp_path, body_dir, trained):
    out = tmp_path / "r"
    previous = _killed_overwrite(out, 6, lr=0.001)
    r = invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
    assert r.exit_code == 0 and not trained, r.output
    assert [line for line in r.output.splitlines() if line.strip()] == [
        f"WARNING  {out}: put back the previous training run that an interrupted --overwrite had set aside",
        f"WARNING  {out}: the run is already complete (snapshot_5.pth.tar: 6 of 6 epochs); nothing to train — raise "
        "--epochs to train on", f"trained -> {out / 'snapshot_5.pth.tar'}"]
    assert _listing(out) == previous


def test_recorded_settings_are_read_from_a_set_aside_run_that_settling_puts_back(tmp_path):
    """What another node (which does not settle the shared folder) reads before node 0 settles it."""
    from wbcap.train.launch import _already_complete, recorded_stage

    out = tmp_path / "r"
    previous = _killed_overwrite(out, lr=0.001)
    stage, source = recorded_stage(out, "body")
    assert (stage.lr, source) == (0.0001, out / ".wbcap-previous" / "stage.json")
    assert _already_complete(out, dataclasses.replace(stage, epochs=2))  # (its snapshot_1: 2 of 2 epochs)
    assert _listing(out / ".wbcap-previous") == previous  # (read, not moved)
    # the killed run wrote a snapshot: settling drops the set-aside run, so the new run's are read
    (out / "stage.json").write_text(json.dumps({**json.loads(previous["stage.json"]), "lr": 0.001}))
    (out / "snapshot_0.pth.tar").write_bytes(b"new")
    stage, source = recorded_stage(out, "body")
    assert (stage.lr, source) == (0.001, out / "stage.json")


# --------------------------------------------------------------------------- 5, 6: --gpus, --data-root


def test_gpus_need_cuda(tmp_path, train_args, trained, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    out = tmp_path / "r"
    before = _previous_run(out)
    cpu = [a for a in train_args("body") if a not in ("--device", "cpu")]
    for gpus in ("0,1", "0"):
        r = invoke(*cpu, "-o", out, "--overwrite", "--gpus", gpus)
        assert one_error_line(r) == (f"error: --gpus {gpus} needs CUDA GPUs, and there are none here (torch is built "
                                     "without CUDA); train on the CPU with --device cpu without --gpus\n")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    r = invoke(*cpu, "-o", out, "--overwrite", "--gpus", "0")
    assert "(no CUDA device is visible)" in one_error_line(r)
    r = invoke(*cpu, "-o", out, "--overwrite", "--gpus", "0,x")
    assert one_error_line(r) == "error: --gpus 0,x: expected GPU ids (whole numbers), e.g. 0 or 0,1,2,3\n"
    assert _listing(out) == before and not trained


def test_under_torchrun_the_command_is_refused_at_once(tmp_path, train_args, trained, monkeypatch):
    """torchrun around the CLI: each process took the command for its own (the second found -o held,
    the first waited 30 s for it and left its settings file: a training trial)."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    r = invoke(*train_args("body"), "-o", tmp_path / "r")
    assert one_error_line(r).startswith("error: wbcap train was started by torchrun or another launcher (LOCAL_RANK "
                                        "is set): run it directly; it starts one process per GPU itself (--gpus 0,1")
    assert not (tmp_path / "r").exists() and not trained


@pytest.mark.parametrize("how", ["interrupt", "disk full"])
def test_a_run_stopped_after_a_snapshot_says_how_to_continue(tmp_path, train_args, monkeypatch, how):
    """It said "interrupted" (or gave a crash report for a full disk: see save_torch_file) and
    nothing of --resume (a training trial)."""
    import errno

    import wbcap.train.trainer as trainer

    def stopped(stage, run, on_step=None, **kwargs):
        out = Path(run.out)
        (out / "stage.json").write_text(json.dumps(stage.to_dict()))
        (out / "snapshot_0.pth.tar").write_bytes(b"new")
        if how == "interrupt":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "snapshot_1.pth.tar"))

    monkeypatch.setattr(trainer, "train", stopped)
    out = tmp_path / "r"
    r = invoke(*train_args("body"), "-o", out)
    said = " ".join(r.output.split())
    if how == "interrupt":  # an --overwrite stopped before its first snapshot: the previous run is put back, no hint
        def early(stage, run, on_step=None, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(trainer, "train", early)
        again = invoke(*train_args("body"), "-o", out, "--overwrite")
        assert again.exit_code == 130 and "--resume" not in again.output and (out / "snapshot_0.pth.tar").is_file(), \
            again.output
        monkeypatch.setattr(trainer, "train", stopped)
    if how == "interrupt":
        assert r.exit_code == 130 and (f"the snapshots so far are kept in {out}: add --resume to the same command to "
                                       "continue from snapshot_0.pth.tar") in said, r.output
    else:
        assert r.exit_code == 2 and (f"cannot write {out / 'snapshot_1.pth.tar'} (No space left on device)" in said
                                     and "then add --resume to the same command to continue from snapshot_0.pth.tar"
                                     in said), r.output


def test_a_full_disk_met_by_torch_save_is_an_oserror_naming_the_file(tmp_path, monkeypatch):
    """torch's writer says a full disk as a RuntimeError without errno ("unexpected pos"): with the
    disk then short of the object's bytes it is the ENOSPC it was; another RuntimeError stays."""
    import errno
    from collections import namedtuple

    import torch

    from wbcap.model.checkpoint import save_torch_file

    def full(obj, f):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 412079104 vs 412078996")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(OSError) as info:
        save_torch_file({"w": torch.zeros(1000)}, tmp_path / "snap.pth.tar")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tmp_path / "snap.pth.tar"))
    assert list(tmp_path.iterdir()) == []  # (the partial temporary file removed)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_torch_file({"w": torch.zeros(1000)}, tmp_path / "snap.pth.tar")


def test_a_data_root_that_does_not_exist_is_said_so(tmp_path, train_args, trained):
    real = [a for a in train_args("hand") if a not in ("--datasets", "synthetic")]
    r = invoke(*real, "-o", tmp_path / "h", "--data-root", tmp_path / "nonexist")
    assert one_error_line(r) == (f"error: --data-root {tmp_path / 'nonexist'}: no such folder; pass the folder holding "
                                 "FreiHAND/, InterHand26M/, MSCOCO/\n")
    assert not (tmp_path / "h").exists() and not trained


# --------------------------------------------------------------------------- 7: stopping a torchrun launch


# torchrun's agent as far as stopping goes: it starts its worker in a session of its own, passes a
# SIGTERM/SIGINT on to it and waits for it ("deaf": it ignores them, as a hung agent would).
_FAKE_AGENT = """
import signal, subprocess, sys
worker = subprocess.Popen([sys.executable, *sys.argv[1:4]], start_new_session=True)
class Stop(Exception):
    pass
def stop(signum, frame):
    if sys.argv[4] != "deaf":
        worker.send_signal(signum)
        raise Stop
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
try:
    sys.exit(worker.wait())
except Stop:
    worker.wait()
    sys.exit(1)
"""
# A GPU worker: writes in -o as a run does; stopped, it finishes its step (0.5 s), writes a
# snapshot's temporary and says by which signal it stopped.
_FAKE_WORKER = """
import os, signal, sys, time
from pathlib import Path
marks, out = Path(sys.argv[1]), Path(sys.argv[2])
def stop(signum, frame):
    time.sleep(0.5)
    (out / ".snapshot_0.pth.tar.tmp-1").write_bytes(b"half")
    (marks / "worker_stopped").write_text(signal.Signals(signum).name)
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
(out / "stage.json").write_text("{}")
(marks / "pid.tmp").write_text(str(os.getpid()))
(marks / "pid.tmp").rename(marks / "worker.pid")
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2:].split()[0] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig, agent, code, said, stopped", [
    (signal.SIGTERM, "forwarding", 143, "stopped by SIGTERM", "SIGTERM"),
    pytest.param(signal.SIGHUP, "forwarding", 129, "stopped by SIGHUP", "SIGTERM", marks=pytest.mark.slow),
    (signal.SIGINT, "forwarding", 130, "interrupted", "SIGINT"),
    pytest.param(signal.SIGTERM, "deaf", 143, "stopped by SIGTERM", None, marks=pytest.mark.slow)])
def test_a_stopped_torchrun_launch_ends_its_workers_before_the_previous_run_is_put_back(
        tmp_path, train_args, monkeypatch, caplog, sig, agent, code, said, stopped):
    """SIGTERM, SIGHUP or Ctrl-C of a --gpus launch: torchrun's agent is sent SIGTERM (Ctrl-C:
    SIGINT) and waited for, so its workers (in sessions of their own) have stopped when the
    previous run is put back; an agent that does not stop is killed with its workers."""
    import sys
    import threading
    import time

    import torch

    import wbcap.train.launch as launch
    import wbcap.train.trainer as trainer

    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "agent.py").write_text(_FAKE_AGENT)
    (tmp_path / "worker.py").write_text(_FAKE_WORKER)
    started = []

    def fake_torchrun(spec, nproc, **kwargs):
        started.append(nproc)
        return [sys.executable, str(tmp_path / "agent.py"), str(tmp_path / "worker.py"), str(marks), str(spec.parent),
                agent]

    seen_at_restore = []

    def restore(out):
        pid = int((marks / "worker.pid").read_text())
        stop_mark = marks / "worker_stopped"
        seen_at_restore.append((stop_mark.read_text() if stop_mark.exists() else None, _alive(pid)))
        return restore_previous_run(out)

    def stop_once_the_worker_runs():
        for _ in range(200):
            if (marks / "worker.pid").exists():
                break
            time.sleep(0.05)
        os.kill(os.getpid(), sig)

    restore_previous_run = trainer.restore_previous_run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(launch, "torchrun_command", fake_torchrun)
    monkeypatch.setattr(launch, "TORCHRUN_STOP_TIMEOUT_S", 1.0)
    monkeypatch.setattr(trainer, "restore_previous_run", restore)
    out = tmp_path / "r"
    before = _previous_run(out)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # (Ctrl-C's, whatever the test runner set)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda signum, frame: pytest.fail(f"{signum} was not taken as Ctrl-C"))
    stopper = threading.Thread(target=stop_once_the_worker_runs)
    try:
        stopper.start()
        with caplog.at_level("INFO"):
            r = invoke(*train_args("body"), "-o", out, "--overwrite", "--gpus", "0,1")
    finally:
        stopper.join()
        for s, handler in handlers.items():
            signal.signal(s, handler)
        if (marks / "worker.pid").exists() and _alive(pid := int((marks / "worker.pid").read_text())):
            os.kill(pid, signal.SIGKILL)
    assert started == [2] and r.exit_code == code and said in r.output, r.output
    # when the previous run was put back, the worker had stopped (by the signal the agent passed on)
    assert seen_at_restore == [(stopped, False)]
    assert _listing(out) == before  # (this run's launch_node0.json gone too)
    if agent == "deaf":
        assert "torchrun did not stop within 1 s of SIGTERM; killed it and its 1 worker(s)" in caplog.text


def test_torchrun_runs_in_a_session_of_its_own_and_ends_with_the_launcher(tmp_path, monkeypatch):
    """The agent gets a stop once, from the launcher (a terminal's Ctrl-C reaches the launcher
    only), and SIGTERM when the launcher dies (also by SIGKILL)."""
    import wbcap.train.launch as launch
    from wbcap.train.stages import load_stage
    from wbcap.train.trainer import RunConfig

    started = []

    class Agent:
        def __init__(self, cmd, **kwargs):
            started.append((cmd, kwargs))

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", Agent)
    launch._launch(load_stage("body", None), RunConfig(out=str(tmp_path)), ["0", "1"], nnodes=1, node_rank=0,
                   master_addr="127.0.0.1", master_port=29500, train=None)
    ((cmd, kwargs),) = started
    assert cmd[cmd.index("torch.distributed.run") + 1:] == [
        "--nproc_per_node=2", "--nnodes=1", "--node_rank=0", "--master_addr=127.0.0.1", "--master_port=29500", "-m",
        "wbcap.train.launch", str(tmp_path / "launch_node0.json")]
    assert kwargs["start_new_session"] is True and kwargs["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    hook = kwargs["preexec_fn"]
    assert hook.func is launch.end_with_parent and hook.args == (signal.SIGTERM,)


def test_model_shapes_that_do_not_fit_each_other_are_refused_before_any_work(tmp_path, train_args, trained):
    """`[model] output_hm_shape` that is not the body input / 32 built a network whose heatmaps
    did not reshape: a crash at the first step. Now one line naming the file and the fit."""
    cfg = _model_toml(tmp_path / "bad.toml", {"output_hm_shape": (8, 8, 8)})
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--config", cfg)
    assert one_error_line(r) == (
        f"error: {cfg}: output_hm_shape [8, 8, 8] does not fit input_body_shape [256, 192]: the ResNet's heatmaps "
        "are the input's height and width / 32 (input sides multiples of 32), so output_hm_shape = [depth, 8, 6]\n")
    assert not (tmp_path / "r").exists() and not trained


def test_inputs_too_large_to_fit_in_memory_are_refused_before_any_work(tmp_path, train_args, trained):
    """Any `[model] input_img_shape` was taken, however large: crops of tens of thousands of pixels a
    side only exhaust memory. Now one line naming the file, the setting and the bound; heatmap
    depth likewise."""
    cfg = _model_toml(tmp_path / "big.toml", {"input_img_shape": (4096, 3072)})
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--config", cfg)
    assert one_error_line(r) == (f"error: {cfg}: input_img_shape [4096, 3072]: input sides of at most 2048 pixels "
                                 "(the released network's are 512 or less)\n")
    assert not (tmp_path / "r").exists() and not trained
    from wbcap.config import ModelConfig

    with pytest.raises(ValueError, match=r"output_hand_hm_shape \[65, 8, 8\]: a heatmap depth of at most 64"):
        ModelConfig(output_hand_hm_shape=(65, 8, 8))
    assert ModelConfig(input_img_shape=(2048, 2048), output_hm_shape=(64, 8, 6)).input_img_shape == (2048, 2048)
    with pytest.raises(ValueError, match=r"input_img_shape \[1, 1\] is smaller than input_body_shape \[256, 192\]"):
        ModelConfig(input_img_shape=(1, 1))  # (a 1x1 crop trained and ran: a break-it trial)


def test_inputs_too_small_for_a_heatmap_between_cells_are_refused():
    """A 64x32 body input fits its [8, 2, 1] heatmaps but samples joint features at x / (W - 1):
    every `wbcap run` record was NaN. Refused when the config is made."""
    from wbcap.config import ModelConfig

    with pytest.raises(ValueError, match=r"input_body_shape \[64, 32\] gives heatmaps 2x1: the ResNet needs input sides of "
                                         r"at least 64 \(heatmaps 2 or more a side\)"):
        ModelConfig(input_body_shape=(64, 32), output_hm_shape=(8, 2, 1))
    with pytest.raises(ValueError, match=r"input_hand_shape \[32, 64\] gives heatmaps 1x2"):
        ModelConfig(input_hand_shape=(32, 64), output_hand_hm_shape=(8, 1, 2))
    assert ModelConfig(input_body_shape=(64, 64), output_hm_shape=(8, 2, 2)).output_hm_shape == (8, 2, 2)


def test_recorded_settings_are_the_latest_launchs_with_the_snapshots_model(tmp_path):
    """A resume with --epochs 4 stopped before its first snapshot wrote stage.json (epochs 4) over
    a run whose newest snapshot says 3: a plain --resume goes on to 4 (it stopped at 3, "already
    complete", with exit 0); the model settings stay the snapshot's, which its weights match."""
    import torch

    from wbcap.train.launch import recorded_stage

    out = tmp_path / "r"
    _recorded_run(out, 0, epochs=4)
    stage_json = json.loads((out / "stage.json").read_text())
    assert (stage_json["epochs"], stage_json["model"]["backbone_depth"]) == (4, 18)
    snapshot = {**stage_json, "epochs": 3, "lr": 0.5, "model": {**stage_json["model"], "backbone_depth": 34}}
    torch.save({"network": {}, "epoch": 2, "stage": snapshot}, out / "snapshot_2.pth.tar")
    stage, source = recorded_stage(out, "body")
    assert (stage.epochs, stage.lr, stage.model.backbone_depth, source) == (4, stage_json["lr"], 34, out / "stage.json")
    # without a readable stage.json (or one of another stage's launch): the snapshot's settings
    for damaged in ("{", json.dumps({**stage_json, "stage": "hand"})):
        (out / "stage.json").write_text(damaged)
        stage, source = recorded_stage(out, "body")
        assert (stage.epochs, stage.lr, stage.model.backbone_depth, source) == (3, 0.5, 34, out / "snapshot_2.pth.tar")


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_a_2d_pose_resnet_is_checked_before_anything_is_written_and_only_taken_by_the_body_stage(tmp_path, train_args,
                                                                                                   trained):
    from test_train import _pose_resnet_file

    _pose_resnet_file(tmp_path / "r50.pth.tar", 50, seed=0)  # the body backbone here: ResNet-50 (the recipe's)
    _pose_resnet_file(tmp_path / "r18.pth.tar", 18, seed=0)
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--pose-backbone", tmp_path / "r18.pth.tar")
    assert one_error_line(r).startswith(f"error: {tmp_path / 'r18.pth.tar'}: not a 2D-pose ResNet of the body backbone's "
                                        "depth (")
    r = invoke(*train_args("hand"), "-o", tmp_path / "r", "--pose-backbone", tmp_path / "r50.pth.tar")
    assert one_error_line(r) == ("error: --pose-backbone starts the body stage's backbone; the hand stage starts from "
                                 "ImageNet: drop it\n")
    narrow = _model_toml(tmp_path / "narrow.toml", {"backbone_width": 16})
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--pose-backbone", tmp_path / "r50.pth.tar", "--config", narrow)
    assert one_error_line(r) == ("error: --pose-backbone is for ResNets 64 channels wide, and [model] backbone_width is "
                                 "16: leave backbone_width out (64), or drop --pose-backbone\n")
    assert not trained and not (tmp_path / "r").exists()
    assert invoke(*train_args("body"), "-o", tmp_path / "r", "--pose-backbone", tmp_path / "r50.pth.tar").exit_code == 0
    assert trained[-1][0].pose_backbone == str(tmp_path / "r50.pth.tar")


def test_one_gpu_is_this_processs_cuda_device_and_an_id_past_the_visible_ones_is_refused(tmp_path, train_args,
                                                                                         trained, monkeypatch):
    """`--gpus 2` trained on GPU 0: it set CUDA_VISIBLE_DEVICES=2 after torch.cuda.is_available()
    had started the CUDA driver, which reads it once. Now the run's device is cuda:2; an id CUDA
    does not have is one line, before -o is made."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("wbcap.train.trainer.check_run_inputs", lambda stage, run: run)  # (no CUDA to check here)
    args = [a for a in train_args("body") if a not in ("--device", "cpu")]
    r = invoke(*args, "-o", tmp_path / "r", "--gpus", "2")
    assert r.exit_code == 0, r.output
    (stage, run, _), = trained
    assert run.device == "cuda:2" and "CUDA_VISIBLE_DEVICES" not in os.environ
    r = invoke(*args, "-o", tmp_path / "r4", "--gpus", "4")
    assert one_error_line(r) == "error: --gpus 4: only 4 CUDA device(s) visible here; use an id from 0 to 3\n"
    # --device cpu with --gpus: which one was meant? (it trained on the CPU, the GPU id set and unused)
    r = invoke(*args, "-o", tmp_path / "r5", "--gpus", "2", "--device", "cpu")
    assert one_error_line(r) == "error: --gpus 2 trains on GPU 2, --device cpu elsewhere; give one of them\n"
    r = invoke(*args, "-o", tmp_path / "r6", "--gpus", "2", "--device", "cuda:2")
    assert r.exit_code == 0 and trained[-1][1].device == "cuda:2", r.output
    # a scheduler's share (SLURM: CUDA_VISIBLE_DEVICES=4,5): ids from it, physical (5 is this process's cuda:1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    r = invoke(*args, "-o", tmp_path / "r7", "--gpus", "5")
    assert r.exit_code == 0 and trained[-1][1].device == "cuda:1", r.output
    r = invoke(*args, "-o", tmp_path / "r8", "--gpus", "1")
    assert one_error_line(r) == ("error: --gpus 1: GPU 1 is not among CUDA_VISIBLE_DEVICES=4,5, the GPUs this process "
                                 "may use; give ids from that list (they name physical GPUs)\n")
    r = invoke(*args, "-o", tmp_path / "r9", "--gpus", "\u00b2")
    assert one_error_line(r) == "error: --gpus \u00b2: expected GPU ids (whole numbers), e.g. 0 or 0,1,2,3\n"
    assert not (tmp_path / "r4").exists() and not (tmp_path / "r5").exists() and len(trained) == 3


def test_a_temporary_folder_too_long_for_the_workers_is_one_line(tmp_path, train_args, trained, monkeypatch):
    """With an 81-character TMPDIR each data-loading worker failed to send its first batch ("AF_UNIX
    path too long", a traceback per batch) and training waited for ever: refused before any work,
    naming the folder and the fixes; without workers it trains."""
    import tempfile

    from wbcap.temp_folders import MAX_WORKER_TEMP_PATH

    long = "/" + "x" * MAX_WORKER_TEMP_PATH  # (only its length is looked at)
    monkeypatch.setattr(tempfile, "tempdir", long)
    assert len(long) == MAX_WORKER_TEMP_PATH + 1 == 76
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--workers", "2")
    assert one_error_line(r) == (f"error: the temporary folder {long} is 76 bytes long; the data-loading workers pass "
                                 "their batches over sockets made in it, whose paths allow a folder of 75 at most: set "
                                 "TMPDIR to a shorter folder (e.g. TMPDIR=/tmp) or use --workers 0\n")
    assert not (tmp_path / "r").exists() and not trained
    assert invoke(*train_args("body"), "-o", tmp_path / "r").exit_code == 0 and trained  # (--workers 0)


def test_resume_of_a_folder_with_nothing_to_resume_says_that_first(tmp_path, body_dir, trained):
    """A user trial: `wbcap train body -o typo --resume` said the recipe's Human36M needs
    --data-root; the folder has nothing to resume, which is what to say (the run's settings,
    datasets included, come from what it would resume)."""
    for out in (tmp_path / "typo", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        r = invoke("train", "body", "--body-models", body_dir, "--device", "cpu", "-o", out, "--resume")
        assert one_error_line(r) == f"error: {out}: no snapshot_*.pth.tar to resume from; drop --resume\n"
    assert not (tmp_path / "typo").exists() and not trained


def test_training_set_names_are_taken_in_any_case(tmp_path, train_args, trained):
    """A user trial: `--datasets human36m` was refused ("unknown whole-body training set") while
    `wbcap eval --dataset human36m` takes it."""
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--datasets", "SYNTHETIC")
    assert r.exit_code == 0 and trained[-1][0].datasets == ("synthetic",), r.output
    r = invoke(*train_args("body"), "-o", tmp_path / "r2", "--datasets", "human36m")
    assert one_error_line(r).startswith("error: dataset Human36M needs --data-root (the folder holding Human36M/)")


def test_a_data_root_that_does_not_exist_is_refused_also_for_synthetic_sets(tmp_path, train_args, trained):
    """A user trial: `--datasets synthetic --data-root /nonexist` trained and recorded the path."""
    r = invoke(*train_args("body"), "-o", tmp_path / "r", "--data-root", tmp_path / "nonexist")
    assert one_error_line(r) == f"error: --data-root {tmp_path / 'nonexist'}: no such folder; check the path\n"
    assert not trained and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 8: a torchrun worker's error


def _worker_spec(tmp_path: Path) -> Path:
    from dataclasses import asdict

    from wbcap.train.stages import load_stage
    from wbcap.train.trainer import RunConfig

    spec = tmp_path / "launch_node0.json"
    spec.write_text(json.dumps({"stage": load_stage("body", None).to_dict(),
                                "run": asdict(RunConfig(out=str(tmp_path / "r"), quiet=True))}))
    return spec


@pytest.mark.parametrize("kind", ["error", "disk_full", "crash", "out_of_memory"])
def test_a_torchrun_workers_error_reaches_the_launcher_as_a_single_processs_would(tmp_path, monkeypatch, kind):
    """A worker that fails leaves its error for the launcher (torchrun reports workers by exit
    status only): a WbcapError as its message and status, a full disk as the OSError the CLI says
    with how to resume, a crash as one line naming the worker's crash log. The first failure is
    said, not the later ones of the ranks that lost their process group."""
    import errno

    import wbcap.train.launch as launch
    import wbcap.train.trainer as trainer
    from wbcap.errors import CheckpointError

    folder = tmp_path / "errors"
    folder.mkdir()
    monkeypatch.setenv(launch.WORKER_ERRORS_ENV, str(folder))
    snapshot = str(tmp_path / "r" / "snapshot_0.pth.tar")
    raised = {"error": CheckpointError("x.pth.tar: truncated"),
              "disk_full": OSError(errno.ENOSPC, "No space left on device", snapshot),
              "crash": ValueError("bad value"),
              "out_of_memory": RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")}[kind]

    def failing_train(stage, run, on_step=None, **kwargs):
        raise raised

    monkeypatch.setattr(trainer, "train", failing_train)
    spec = _worker_spec(tmp_path)
    monkeypatch.setenv("RANK", "0")
    if kind in ("crash", "out_of_memory"):
        with pytest.raises(type(raised)):  # (torchrun shows its traceback too)
            launch.main([str(spec)])
    else:
        with pytest.raises(SystemExit) as stopped:
            launch.main([str(spec)])
        assert stopped.value.code == 2
    monkeypatch.setenv("RANK", "1")  # then another rank, whose process group lost rank 0: secondary, no crash log
    assert launch.leave_worker_error(RuntimeError("Connection closed by peer"), spec) is True
    assert sorted(p.name for p in folder.iterdir()) == ["rank0.json", "rank1.json"]
    assert json.loads((folder / "rank1.json").read_text())["kind"] == "secondary"
    from wbcap.paths import user_log_dir

    assert len(list(user_log_dir().glob("crash-*.log"))) == (kind in ("crash", "out_of_memory"))

    said = launch.worker_error(folder)
    if kind == "error":
        assert isinstance(said, launch.WorkerError) and str(said) == "x.pth.tar: truncated" and said.exit_code == 2
    elif kind == "disk_full":
        assert type(said) is OSError and (said.errno, said.strerror, said.filename) == (
            errno.ENOSPC, "No space left on device", snapshot)
    elif kind == "out_of_memory":  # (the single process's hint too: a review)
        assert isinstance(said, launch.WorkerError) and said.exit_code == 1
        assert str(said).startswith("wbcap train failed in training process 0: RuntimeError: CUDA out of memory. ")
        assert "; the GPU ran out of memory: use fewer images per batch (--batch-size, where it is above 1), free " \
               "GPU memory (other programs on it), use a GPU with more, or --device cpu; full traceback in " in str(said)
    else:
        assert isinstance(said, launch.WorkerError) and said.exit_code == 1
        head, log = str(said).split("; full traceback in ")
        assert head.startswith("wbcap train failed in training process 0: ValueError: bad value (wbcap/")
        text = Path(log).read_text()
        assert "Traceback (most recent call last)" in text and "ValueError: bad value" in text
        assert f"-m wbcap.train.launch {spec} (wbcap train, rank 0)" in text
    assert launch.worker_error(tmp_path) is None  # (no record: the launcher says torchrun's status)


@pytest.mark.slow
def test_a_full_disk_in_a_torchrun_worker_is_the_one_line_a_single_process_gives(tmp_path, train_args, monkeypatch):
    """Two CPU processes under the real torchrun, with a file size limit below the snapshot's
    size: the launcher's line is the disk-full one (it said "torchrun exited with status 1", the
    worker a RuntimeError from torch's writer), and the run folder it made is removed."""
    import socket
    import tempfile

    import torch

    import wbcap.train.launch as launch

    real = launch.torchrun_command

    def limited(*args, **kwargs):  # (the agent and its workers under `ulimit -f 200`: 200 KiB)
        return ["bash", "-c", 'ulimit -f 200 && exec "$@"', "bash", *real(*args, **kwargs)]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # (--gpus 0,1 --device cpu: gloo CPU processes)
    monkeypatch.setattr(launch, "torchrun_command", limited)
    tiny = tmp_path / "tiny.toml"  # (as test_train_outputs' end-to-end runs)
    tiny.write_text('synthetic_length = 4\namp = false\n[model]\nbackbone_depth = 18\nhand_backbone_depth = 18\n'
                    'face_backbone_depth = 18\nbackbone_width = 16\ninput_img_shape = [256, 192]\ninput_body_shape = [128, 96]\n'
                    'output_hm_shape = [8, 4, 3]\ninput_hand_shape = [128, 128]\noutput_hand_hm_shape = [8, 4, 4]\n'
                    'input_face_shape = [96, 96]\n')
    out = tmp_path / "r"
    r = invoke(*train_args("body"), "--config", tiny, "-o", out, "--gpus", "0,1", "--master-port", str(port))
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"error: cannot write {out / 'snapshot_0.pth.tar'} (File too large): raise the file size limit (ulimit -f) "
        "or point -o to another disk")
    assert "torchrun exited" not in r.output
    assert not out.exists() and list(temp.iterdir()) == []


def test_a_log_file_gets_the_log_lines_and_the_result_line_only(tmp_path, train_args, trained):
    """Standard error not a terminal (a log file): no progress bar, so no blank line where the
    finished bar was (an ML researcher's trial found one after every training's last log line)."""
    r = invoke(*train_args("body"), "-o", tmp_path / "r")
    assert r.exit_code == 0 and len(trained) == 1, r.output
    assert "" not in r.stderr.splitlines() and r.stdout == f"trained -> {tmp_path / 'r' / 'snapshot_0.pth.tar'}\n", \
        (r.stdout, r.stderr)


def test_the_start_checkpoint_is_recorded_absolute(tmp_path, train_args, trained, micro_ckpt, monkeypatch):
    """`--init runs/merged.pth.tar`, typed relative, was recorded so in stage.json (an ML
    researcher's trial): the record names the file from any folder, as run_settings.json's paths."""
    monkeypatch.chdir(micro_ckpt.parent.parent)
    typed = Path(micro_ckpt.parent.name) / micro_ckpt.name
    r = invoke(*train_args("finetune"), "-o", tmp_path / "r", "--init", typed)
    assert r.exit_code == 0, r.output
    assert trained[-1][0].init_checkpoint == str(micro_ckpt)
    assert json.loads((tmp_path / "r" / "stage.json").read_text())["init_checkpoint"] == str(micro_ckpt)


def test_a_resume_with_the_same_relative_path_settings_is_the_same_run(tmp_path, train_args, trained, micro_ckpt,
                                                                       monkeypatch, caplog):
    """The same command again with --resume, its path settings typed relative: no "settings
    other than its run's" warning (a review: the recorded absolute path was compared with the
    spelling), and stage.json keeps them absolute; a run an older wbcap recorded with the relative
    spelling resumes without one too, and keeps that spelling (made absolute from the resume's
    folder, it named a file that was not there: a break-it trial)."""
    import logging

    monkeypatch.chdir(micro_ckpt.parent.parent)
    typed = str(Path(micro_ckpt.parent.name) / micro_ckpt.name)
    args = (*train_args("finetune"), "-o", tmp_path / "r", "--init", typed, "--epochs", "1")
    assert invoke(*args).exit_code == 0
    resumed = (*train_args("finetune"), "-o", tmp_path / "r", "--resume", "--epochs", "2")
    for recorded in (str(micro_ckpt), typed):  # (this wbcap's record, an older one's)
        stage = json.loads((tmp_path / "r" / "stage.json").read_text())
        (tmp_path / "r" / "stage.json").write_text(json.dumps({**stage, "init_checkpoint": recorded}))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wbcap"):
            r = invoke(*resumed)
        assert r.exit_code == 0, r.output
        assert not [m for m in caplog.messages if "settings other than" in m], caplog.messages
        assert json.loads((tmp_path / "r" / "stage.json").read_text())["init_checkpoint"] == recorded
    monkeypatch.chdir(tmp_path)  # (resumed from another folder: the older record's spelling is kept as it was)
    assert invoke(*resumed).exit_code == 0
    assert json.loads((tmp_path / "r" / "stage.json").read_text())["init_checkpoint"] == typed
