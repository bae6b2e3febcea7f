"""`wbcap train`: its run folder and inputs are checked before any work (a fresh-user trial).

A run folder holding a previous run is refused unless --resume or --overwrite; bad inputs
(datasets, a stage without its start checkpoint, missing body models, an unwritable output) are
one `error:` line (exit 2) and leave no folder behind; a run that fails before its first
snapshot removes the folder it made. Most tests replace the training loop by a stand-in that
writes what a run writes (the checks happen before it); one runs the real loop end to end.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.errors import ModelFileError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def tmp_path(ram_tmp_path):
    """This module's training runs write their snapshots in RAM where there is room (conftest's
    ram_tmp_path)."""
    return ram_tmp_path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(r) -> str:
    """The one `error:` line of a refused command (exit 2, no traceback; log lines aside)."""
    lines = [line for line in r.output.splitlines() if line.strip() and not line.startswith("INFO ")]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0] + "\n"


@pytest.fixture()
def trained(monkeypatch):
    """Replace the training loop: record each call and write what a one-epoch run writes."""
    import wbcap.train.trainer as trainer

    calls = []

    def fake_train(stage, run, on_step=None, **kwargs):
        calls.append((stage, run))
        out = Path(run.out)
        out.mkdir(parents=True, exist_ok=True)  # (as the real loop does)
        (out / "stage.json").write_text(json.dumps({"stage": stage.stage}))
        (out / "run_settings.json").write_text(trainer.run_settings_text(run))  # (with stage.json, as train writes them)
        with open(out / "scalars.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": 0}) + "\n")
        (out / "snapshot_0.pth.tar").write_bytes(b"new")

    monkeypatch.setattr(trainer, "train", fake_train)
    return calls


def _previous_run(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "stage.json").write_text("{}")
    (folder / "scalars.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(4)))
    (folder / "snapshot_1.pth.tar").write_bytes(b"old")


def test_a_previous_run_is_refused_unless_resume_or_overwrite(tmp_path, train_args, trained):
    out = tmp_path / "r"
    _previous_run(out)
    r = invoke(*train_args("body"), "-o", out)
    assert one_error_line(r) == (f"error: {out} holds a previous training run (e.g. snapshot_1.pth.tar); pass --overwrite to "
                                 "replace it, --resume to continue it, or choose another -o folder\n")
    assert not trained and (out / "snapshot_1.pth.tar").read_bytes() == b"old"
    # --overwrite: the previous run's files go (no stale snapshot_1, scalars start again)
    r = invoke(*train_args("body"), "-o", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["run_settings.json", "scalars.jsonl", "snapshot_0.pth.tar",
                                                     "stage.json"]
    assert (out / "scalars.jsonl").read_text() == '{"step": 0}\n'
    # --resume continues it (the folder as it is)
    assert invoke(*train_args("body"), "-o", out, "--resume").exit_code == 0 and trained[-1][1].resume
    r = invoke(*train_args("body"), "-o", out, "--resume", "--overwrite")
    assert r.exit_code == 2 and "use either --resume or --overwrite" in r.output, r.output


def test_a_resume_with_another_smplx_file_is_refused(tmp_path, train_args, trained, body_dir, monkeypatch):
    """`wbcap train --resume` took whatever SMPL-X file now stood at the recorded path: a model
    replaced mid-run changed the targets unsaid (`wbcap run` refused it already). The run records
    the file's identity; the same bytes put back (a new mtime) resume."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(body_dir, models)
    model = models / "smplx" / "SMPLX_NEUTRAL.npz"
    args = [a if a != str(body_dir) else str(models) for a in map(str, train_args("body"))]
    out = tmp_path / "r"
    assert invoke(*args, "-o", out).exit_code == 0
    recorded = json.loads((out / "run_settings.json").read_text())["file_identity"]
    assert recorded["body_model_file"]["path"] == str(model) and recorded["mano_model_file"] is None
    original = model.read_bytes()
    with np.load(model, allow_pickle=True) as npz:  # (our own generated file, in the release's layout)
        arrays = dict(npz)
    stamp = model.stat().st_mtime
    np.savez(model, **{**arrays, "v_template": arrays["v_template"] * 1.1})  # another body, same size
    os.utime(model, (stamp + 60, stamp + 60))  # (replaced a minute later, not within the same second)
    r = invoke(*args, "-o", out, "--resume")
    (error,) = [line for line in r.output.splitlines() if line.startswith("error: ")]  # (the fake loop's stage.json
    assert r.exit_code == 2 and "Traceback" not in r.output  # differs from the recipe: a warning too)
    assert error.startswith(f"error: {model}: the SMPL-X model file changed since the run in {out} began (")
    assert error.endswith("a run continues only with the files it began with: put back the file it was made with, or "
                          "start over with --overwrite")
    assert len(trained) == 1
    model.write_bytes(original)  # the same bytes back (another mtime)
    assert invoke(*args, "-o", out, "--resume").exit_code == 0 and trained[-1][1].resume
    # a run on the synthetic stand-in (no SMPL-X file found) resumed where one is found now: refused too
    # (it was recorded as none, and nothing was checked: a review)
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    bare = [a for a in args if a not in ("--body-models", str(models))]
    synthetic = tmp_path / "s"
    assert invoke(*bare, "-o", synthetic).exit_code == 0
    r = invoke(*bare, "-o", synthetic, "--resume", "--body-models", models)
    (error,) = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert r.exit_code == 2 and error == (f"error: the run in {synthetic} trained on the synthetic stand-in SMPL-X "
                                          f"model (no SMPL-X file was found then), and this finds {model}; resume it "
                                          "where none is found, or start over with --overwrite")
    assert invoke(*bare, "-o", synthetic, "--resume").exit_code == 0
    # a run made through $WBCAP_BODY_MODELS, resumed with it unset, its model still in place: told
    # to name it (it was told to "put back the file it was made with"; a break-it trial)
    through_env = tmp_path / "e"
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(models))
    assert invoke(*bare, "-o", through_env).exit_code == 0
    monkeypatch.delenv("WBCAP_BODY_MODELS")
    r = invoke(*bare, "-o", through_env, "--resume")
    (error,) = [line for line in r.output.splitlines() if line.startswith("error: ")]
    assert r.exit_code == 2 and error == (f"error: the run in {through_env} trained with the SMPL-X model {model}, and "
                                          "this finds the synthetic stand-in (no SMPL-X file was found); pass "
                                          f"--body-models {model} to resume it")
    # a copy of the same bytes elsewhere is the same model (a review), and a damaged record of the
    # files is not checked (it crashed)
    shutil.copytree(models, tmp_path / "models2")
    assert invoke(*bare, "-o", through_env, "--resume", "--body-models", tmp_path / "models2").exit_code == 0
    settings = json.loads((through_env / "run_settings.json").read_text())
    (through_env / "run_settings.json").write_text(json.dumps({**settings, "file_identity": "x"}))
    assert invoke(*bare, "-o", through_env, "--resume").exit_code == 0


def test_init_with_resume_is_refused(tmp_path, train_args, trained, small_ckpt):
    """`--resume --init X` was taken: the snapshot's weights were used and X was written into
    stage.json as the run's start. One line, nothing changed."""
    out = tmp_path / "r"
    assert invoke(*train_args("body"), "-o", out).exit_code == 0
    before = (out / "stage.json").read_bytes()
    r = invoke(*train_args("body"), "-o", out, "--resume", "--init", small_ckpt)
    assert one_error_line(r) == (f"error: --init starts a run from a checkpoint, and --resume continues the run in {out} "
                                 "from its newest snapshot: drop --init\n")
    assert len(trained) == 1 and (out / "stage.json").read_bytes() == before


def test_files_wbcap_did_not_write_are_never_overwritten(tmp_path, train_args, trained):
    out = tmp_path / "mine"
    _previous_run(out)
    (out / "notes.txt").write_text("keep me")
    r = invoke(*train_args("body"), "-o", out, "--overwrite")
    assert one_error_line(r) == (f"error: {out} holds files wbcap did not write (e.g. notes.txt); choose another -o "
                                 "folder (a new or empty one)\n")
    assert (out / "notes.txt").exists() and (out / "snapshot_1.pth.tar").exists() and not trained
    # nothing to resume from: said before any work, and no folder is made
    r = invoke(*train_args("body"), "-o", tmp_path / "new", "--resume")
    assert one_error_line(r) == f"error: {tmp_path / 'new'}: no snapshot_*.pth.tar to resume from; drop --resume\n"
    assert not (tmp_path / "new").exists()


def test_finetune_needs_init(tmp_path, train_args, trained):
    r = invoke(*train_args("finetune"), "-o", tmp_path / "f")
    assert one_error_line(r) == ("error: the finetune stage starts from a whole-body checkpoint: pass --init CHECKPOINT "
                                 "(the merged one of `wbcap train merge`, or the released snapshot_6.pth.tar)\n")
    r = invoke(*train_args("finetune"), "-o", tmp_path / "f", "--init", tmp_path / "merged.pth.tar")
    assert one_error_line(r) == f"error: --init {tmp_path / 'merged.pth.tar'}: no such file\n"
    r = invoke(*train_args("hand"), "-o", tmp_path / "f", "--init", tmp_path / "merged.pth.tar")
    assert r.exit_code == 2 and "the hand stage" in r.output, r.output
    assert not (tmp_path / "f").exists() and not trained
    # a file that is no checkpoint: found before --overwrite deletes the previous run
    out = tmp_path / "prev"
    _previous_run(out)
    (tmp_path / "bogus.pth.tar").write_text("not a checkpoint")
    r = invoke(*train_args("finetune"), "-o", out, "--overwrite", "--init", tmp_path / "bogus.pth.tar")
    assert "bogus.pth.tar: not a PyTorch checkpoint" in one_error_line(r)
    assert (out / "snapshot_1.pth.tar").read_bytes() == b"old" and not trained


def test_default_workers_are_at_most_the_cpus_available(tmp_path, train_args, trained, monkeypatch):
    """The recipe's 4 workers on a 2-CPU machine made torch warn ("suggested max 2"); an explicit
    --workers is kept as given."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    no_workers = [a for a in train_args("body") if a not in ("--workers", "0")]
    assert invoke(*no_workers, "-o", tmp_path / "a").exit_code == 0
    assert trained[-1][0].num_workers == 2
    assert invoke(*no_workers, "-o", tmp_path / "b", "--workers", "4").exit_code == 0
    assert trained[-1][0].num_workers == 4


def test_quiet_training_draws_no_progress_bar_and_torchrun_processes_log_warnings_only(tmp_path, train_args, trained,
                                                                                       monkeypatch):
    """`wbcap -q train` drew its progress bar on a terminal all the same (RunConfig.quiet was never
    set); torchrun's processes logged their information lines too."""
    import logging

    from wbcap.train import launch

    bars = []
    real = launch.training_progress
    monkeypatch.setattr(launch, "training_progress", lambda cfg, disable=False: bars.append(disable) or real(cfg, disable))
    assert invoke("-q", *train_args("body"), "-o", tmp_path / "q").exit_code == 0
    assert invoke(*train_args("body"), "-o", tmp_path / "v").exit_code == 0
    assert [run.quiet for _, run in trained] == [True, False] and bars == [True, False]
    levels = []
    monkeypatch.setattr(logging, "basicConfig", lambda level: levels.append(level))
    monkeypatch.setattr(launch, "training_progress", lambda cfg, disable=False: bars.append(disable) or real(cfg, disable))
    for quiet in (True, False):
        spec = tmp_path / f"launch_{quiet}.json"
        spec.write_text(json.dumps({"stage": trained[0][0].to_dict(),
                                    "run": {**dataclasses.asdict(trained[0][1]), "quiet": quiet, "out": str(tmp_path / f"t{quiet}")}}))
        launch.main([str(spec)])
    assert levels == [logging.WARNING, logging.INFO] and bars[2:] == [True, False]


def test_a_resumed_run_keeps_its_own_worker_count(tmp_path, train_args, trained, monkeypatch):
    """A run given --workers 8 on 2 CPUs (warned) and resumed without --workers was capped to 2
    as if the recipe had said 8, and warned of a change the user never made (a break-it trial)."""
    from wbcap.model import device

    monkeypatch.setattr(device, "available_cpus", lambda: 2)
    no_workers = [a for a in train_args("body") if a not in ("--workers", "0")]
    out = tmp_path / "r"
    assert invoke(*no_workers, "-o", out, "--workers", "8").exit_code == 0
    (out / "stage.json").write_text(json.dumps(trained[-1][0].to_dict()))  # (as the real loop records it)
    r = invoke(*no_workers, "-o", out, "--resume")
    assert r.exit_code == 0 and trained[-1][0].num_workers == 8 and "num_workers" not in r.output, r.output
    assert invoke(*no_workers, "-o", tmp_path / "new").exit_code == 0 and trained[-1][0].num_workers == 2


def test_stage_help_lists_what_each_stage_accepts(train_args, tmp_path):
    from wbcap.train.stages import STAGE_DATASETS

    for stage, accepted in STAGE_DATASETS.items():
        text = " ".join(invoke("train", stage, "--help").output.split())
        datasets_help = text.split("--datasets TEXT")[1].split(" -o, --out")[0]
        for name in accepted:
            assert name in datasets_help, (stage, datasets_help)
        assert ("synthetic" in datasets_help) == ("synthetic" in accepted), (stage, datasets_help)
    r = invoke(*train_args("hand"), "-o", tmp_path / "h")
    assert one_error_line(r) == ("error: the hand stage trains on FreiHAND, InterHand26M and MSCOCO (COCO-WholeBody's hand crops), "
                                 "not synthetic\n")
    assert not (tmp_path / "h").exists()  # (it held stage.json before)


def test_bad_inputs_leave_no_folder(tmp_path, train_args, trained):
    (tmp_path / "data").mkdir()
    r = invoke(*[a for a in train_args("body") if a not in ("--datasets", "synthetic")], "-o", tmp_path / "x",
               "--data-root", tmp_path / "data")
    assert one_error_line(r).startswith(f"error: {tmp_path / 'data' / 'Human36M'} missing; expected layout: ")
    r = invoke(*train_args("body"), "-o", tmp_path / "x", "--body-models", tmp_path / "no_models")
    assert one_error_line(r).startswith("error: SMPL-X model file SMPLX_NEUTRAL.npz not found")
    assert not (tmp_path / "x").exists() and not trained


def test_synthetic_training_without_smplx_uses_the_synthetic_model(tmp_path, train_args, trained):
    """The README's no-data smoke run (`--datasets synthetic`, no SMPL-X anywhere) trains with the
    synthetic SMPL-X model (as `wbcap demo` does), saying so once; the checks before training
    decide it without writing the model (69 MB, written when training starts); real data still
    needs the real file, and a --body-models folder without it is still refused."""
    from wbcap.paths import user_cache_dir
    from wbcap.pipeline import synthetic_body_models_dir
    from wbcap.train.stages import STAGES
    from wbcap.train.trainer import SYNTHETIC_BODY_MODEL, RunConfig, body_model_file, body_model_path

    r = invoke(*_without_body_models(train_args("body")), "-o", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert r.output.count("no SMPL-X model file found") == 1 and len(trained) == 1, r.output
    stage, run = trained[0]
    assert run.body_model == SYNTHETIC_BODY_MODEL  # (decided once, passed down to the training loop)
    assert not list(user_cache_dir().rglob("*.npz"))  # (the checks wrote no model)
    assert body_model_file(run.body_model) == synthetic_body_models_dir() / "smplx" / "SMPLX_NEUTRAL.npz"
    real = dataclasses.replace(STAGES["body"], datasets=("Human36M",))
    with pytest.raises(ModelFileError, match="SMPLX_NEUTRAL.npz not found"):
        body_model_path(real, RunConfig(out=str(tmp_path / "o")))
    with pytest.raises(ModelFileError, match="SMPLX_NEUTRAL.npz not found"):
        body_model_path(stage, RunConfig(out=str(tmp_path / "o"), body_models=str(tmp_path / "none")))


def _without_body_models(argv: list) -> list:
    at = argv.index("--body-models")
    return argv[:at] + argv[at + 2:]


def test_the_training_loop_warns_of_the_synthetic_model_once_and_writes_it(tmp_path, train_args, monkeypatch):
    """The real loop, stopped once it has its SMPL-X layer: the synthetic-model warning was given
    three times (the launcher's check, the loop's check, the loading) and the check wrote the
    model; now once, and the loop loads the synthetic model it writes."""
    import wbcap.train.trainer as trainer
    from wbcap.errors import InputError
    from wbcap.pipeline import synthetic_body_models_dir

    layers = []

    def stop(stage, body_layer, device):
        layers.append(body_layer)
        raise InputError("stopped once the SMPL-X layer was built")

    monkeypatch.setattr(trainer, "build_model", stop)
    r = invoke(*_without_body_models(train_args("body")), "-o", tmp_path / "s")
    assert r.exit_code == 2 and "error: stopped once the SMPL-X layer was built" in r.output, r.output
    assert r.output.count("no SMPL-X model file found") == 1, r.output
    assert len(layers) == 1 and (synthetic_body_models_dir() / "smplx" / "SMPLX_NEUTRAL.npz").is_file()


def test_a_run_failing_before_its_first_snapshot_removes_the_folder_it_made(tmp_path, train_args, monkeypatch):
    import wbcap.train.trainer as trainer
    from wbcap.errors import InputError

    def failing(stage, run, **kwargs):
        Path(run.out).mkdir(parents=True, exist_ok=True)
        (Path(run.out) / "stage.json").write_text("{}")
        raise InputError("bad sample")

    monkeypatch.setattr(trainer, "train", failing)
    assert one_error_line(invoke(*train_args("body"), "-o", tmp_path / "runs" / "x")) == "error: bad sample\n"
    assert not (tmp_path / "runs" / "x").exists() and (tmp_path / "runs").is_dir()
    (tmp_path / "empty").mkdir()  # a folder the user made is kept, and left empty (so a rerun is not refused)
    assert invoke(*train_args("body"), "-o", tmp_path / "empty").exit_code == 2
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, train_args, trained, small_ckpt, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    r = invoke(*train_args("body"), "-o", a_file / "r")
    assert one_error_line(r) == (f"error: {a_file}: is a file, so {a_file / 'r'} cannot be created; choose another "
                                 "output folder\n")
    immut = tmp_path / "immut"
    immut.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != immut and real_access(p, mode, **kw))
    r = invoke(*train_args("body"), "-o", immut / "r")
    assert one_error_line(r).startswith(f"error: {immut}: cannot create {immut / 'r'} in this folder (read-only")
    assert not trained

    import wbcap.train.merge as merge

    monkeypatch.setattr(merge, "_merge", lambda *a: pytest.fail("merged before checking -o"))
    r = invoke("train", "merge", "--body", small_ckpt, "--hand", small_ckpt, "-o", immut / "m.pth.tar")
    assert one_error_line(r).startswith(f"error: {immut}: cannot write m.pth.tar in this folder (read-only")
    r = invoke("train", "merge", "--body", small_ckpt, "--hand", small_ckpt, "-o", a_file / "m.pth.tar")
    assert one_error_line(r).startswith(f"error: {a_file}: is a file, so {a_file / 'm.pth.tar'} cannot be written")
    if Path("/proc/self").is_dir():  # a folder that takes no new file though os.access says yes (as root)
        r = invoke("train", "merge", "--body", small_ckpt, "--hand", small_ckpt, "-o", "/proc/m.pth.tar")
        assert one_error_line(r).startswith("error: /proc: cannot write m.pth.tar in this folder (")


@pytest.mark.slow  # the real loop, twice (tiny network, one step)
def test_overwrite_end_to_end(tmp_path, body_dir):
    """The trial's case with the real loop: a second run into the folder is refused; --overwrite
    leaves no stale snapshot and restarts the scalars."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('synthetic_length = 4\namp = false\n[model]\nbackbone_depth = 18\nhand_backbone_depth = 18\n'
                   'face_backbone_depth = 18\nbackbone_width = 16\ninput_img_shape = [256, 192]\ninput_body_shape = [128, 96]\n'
                   'output_hm_shape = [8, 4, 3]\ninput_hand_shape = [128, 128]\noutput_hand_hm_shape = [8, 4, 4]\n'
                   'input_face_shape = [96, 96]\n')
    out = tmp_path / "r"
    base = ["train", "body", "--config", cfg, "--datasets", "synthetic", "--max-steps", "1", "--batch-size", "1",
            "--workers", "0", "--body-models", body_dir, "--device", "cpu", "-o", out]
    r = invoke(*base, "--epochs", "2", "--keep-last", "1")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("snapshot_*")) == ["snapshot_1.pth.tar"]
    # --keep-last counts the snapshots a resumed run found too (it used to prune only its own)
    assert invoke(*base, "--epochs", "3", "--keep-last", "1", "--resume").exit_code == 0
    assert sorted(p.name for p in out.glob("snapshot_*")) == ["snapshot_2.pth.tar"]
    assert one_error_line(invoke(*base, "--epochs", "1")).startswith(f"error: {out} holds a previous training run")
    r = invoke(*base, "--epochs", "1", "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("snapshot_*")) == ["snapshot_0.pth.tar"]
    assert not (out / ".wbcap-previous").exists()  # (set aside until the first snapshot, then deleted)
    assert [json.loads(line)["step"] for line in (out / "scalars.jsonl").read_text().splitlines()] == [0]


def test_a_folder_another_training_run_is_writing_is_refused(tmp_path, train_args, trained):
    """Two `wbcap train` on one folder (the second with --overwrite deleted the first's files
    while it ran): the second is refused while the first holds the folder, which it does for
    the whole run."""
    from wbcap.io.run_folder import hold_folder

    out = tmp_path / "busy"
    _previous_run(out)
    with hold_folder(out):  # (flock is per open file: a second open in this process is another holder)
        r = invoke(*train_args("body"), "-o", out, "--overwrite")
    assert "is in use by another wbcap process" in one_error_line(r)
    assert not trained and (out / "snapshot_1.pth.tar").read_bytes() == b"old"
    assert invoke(*train_args("body"), "-o", out, "--overwrite").exit_code == 0  # released when that one ends


def test_the_folder_is_held_while_training_runs(tmp_path, train_args, monkeypatch):
    import wbcap.train.trainer as trainer
    from wbcap.errors import InputError
    from wbcap.io.run_folder import hold_folder

    seen = []

    def train_checking_the_hold(stage, run, on_step=None, **kwargs):
        try:
            with hold_folder(Path(run.out)):
                seen.append("free")
        except InputError as exc:
            seen.append(str(exc))
        (Path(run.out) / "snapshot_0.pth.tar").write_bytes(b"new")

    monkeypatch.setattr(trainer, "train", train_checking_the_hold)
    assert invoke(*train_args("body"), "-o", tmp_path / "r").exit_code == 0
    assert len(seen) == 1 and "in use by another wbcap process" in seen[0]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_and_imagenet_weights_are_checked_before_overwrite_deletes(tmp_path, train_args, trained):
    out = tmp_path / "prev"
    _previous_run(out)
    for extra, message in ((["--device", "cuda"], "CUDA is not available"),
                           (["--imagenet-weights", tmp_path / "nope"], "no torchvision resnet")):
        a = [x for x in train_args("body") if x not in ("--device", "cpu")]
        r = invoke(*a, "-o", out, "--overwrite", *extra)
        assert message in one_error_line(r)
        assert (out / "snapshot_1.pth.tar").read_bytes() == b"old" and not trained
