"""`wbcap demo --video SOURCE` takes what `wbcap run` takes: a video, a folder of frames or a glob
(the pipeline stubbed here: tests/test_cli_run.py runs the demo's for real)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.testing.images import person_image


@pytest.fixture()
def demo_jobs(monkeypatch):
    """The jobs `wbcap demo --video` runs (neither a model nor the pipeline: stubs)."""
    import wbcap.cli.run
    import wbcap.demo
    from wbcap.errors import setting

    jobs = []

    def execute(ctx, job, pipeline=None, resume_hint=True):
        jobs.append(job)
        spelled.extend(setting(name) for name in ("min_length", "score_threshold", "max_frames", "out"))
        return SimpleNamespace(frames=2, tracks=[0], person_frames=2, out=job.out)

    monkeypatch.setattr(wbcap.demo, "_demo_pipeline", lambda device, few_calls=0, measure_strategy=False: (None, None))
    monkeypatch.setattr(wbcap.demo, "best_detector", lambda offline=None: "hog")
    monkeypatch.setattr(wbcap.cli.run, "execute", execute)
    return jobs


spelled: list[str] = []  # how the stubbed pipeline's messages name four settings (demo_jobs)


@pytest.mark.parametrize("form", ["folder", "folder/", "glob"])
def test_demo_video_takes_a_folder_of_frames_or_a_glob(tmp_path, demo_jobs, form):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), person_image(80, 60, seed=i)[:, :, ::-1])
    source = {"folder": str(frames), "folder/": f"{frames}/", "glob": str(frames / "f*.png")}[form]
    r = CliRunner().invoke(cli, ["demo", "--video", source, "-o", str(tmp_path / "D"), "--max-frames", "2"])
    assert r.exit_code == 0, r.output
    (job,) = demo_jobs
    assert job.source == source and job.max_frames == 2 and Path(job.out) == tmp_path / "D" / "video-frames"
    assert f"2 frames, 1 track(s), 2 person-frames -> {tmp_path / 'D' / 'video-frames'}" in r.stdout


def test_the_demos_do_not_measure_the_cpu_strategy(monkeypatch, tmp_path):
    """A check, not a job: neither demo measures a CPU strategy the user cache lacks (a new
    machine's `wbcap demo` took 25 s, ~20 of them measuring); the photo demo is one call."""
    import wbcap.demo
    from wbcap.pipeline import Pipeline

    asked = []
    monkeypatch.setattr(Pipeline, "from_config", staticmethod(lambda config, **kwargs: asked.append(kwargs)))
    wbcap.demo._demo_pipeline("cpu")
    wbcap.demo._demo_pipeline("cpu", few_calls=1)
    wbcap.demo._demo_pipeline("cpu", measure_strategy=None)  # (a video demo of many frames: as wbcap run)
    assert [(a["measure_strategy"], a.get("few_calls", 0)) for a in asked] == [(False, 0), (False, 1), (None, 0)]

    seen = []
    monkeypatch.setattr(wbcap.demo, "_demo_pipeline",
                        lambda device, few_calls=0, measure_strategy=False: seen.append(few_calls) or (None, None))
    monkeypatch.setattr(wbcap.demo, "best_detector", lambda offline=None: "hog")
    monkeypatch.setattr("wbcap.image_app.run_images", lambda job, pipeline=None: [])
    wbcap.demo.run_demo("unused")
    assert seen == [1]
    # the video demo: short (at most 60 frames, its default) or not, as wbcap run decides
    asked_measure = []
    monkeypatch.setattr(wbcap.demo, "_demo_pipeline",
                        lambda device, few_calls=0, measure_strategy=False: asked_measure.append(measure_strategy)
                        or (None, None))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(61):
        cv2.imwrite(str(frames / f"f{i:02d}.png"), person_image(40, 30, seed=i)[:, :, ::-1])
    for max_frames in (60, None, 5):
        wbcap.demo.video_demo(frames, tmp_path / "D", max_frames=max_frames)
    assert asked_measure == [False, None, False]


def test_demo_video_names_its_output_folder_after_the_source(tmp_path, monkeypatch):
    from wbcap.demo import source_name

    (tmp_path / "take.2").mkdir()
    monkeypatch.chdir(tmp_path)
    assert [source_name(s) for s in ("walk.mp4", "clips/walk.mp4", "take.2", "take.2/", "shots/*.png",
                                     "shots/c[12]/*.png")] == ["walk", "walk", "take.2", "take.2", "shots", "shots"]
    assert source_name("*.png") == tmp_path.name


def test_demo_video_names_a_video_with_wildcard_characters_as_the_reader_reads_it(tmp_path, monkeypatch):
    """A video whose name holds `[`, `*` or `?` is that file for the video reader (it looks for
    the file before taking the name as a glob); its demo folder was named as a glob's, after the
    folder holding it (video-<that folder>)."""
    from wbcap.demo import source_name
    from wbcap.io.images import path_kind, pattern_root

    monkeypatch.chdir(tmp_path)
    for name in ("take[1].mp4", "best*.mp4", "what?.mp4"):
        (tmp_path / "clips").mkdir(exist_ok=True)
        (tmp_path / "clips" / name).write_bytes(b"")
        assert path_kind(f"clips/{name}") == "file"
        assert source_name(f"clips/{name}") == Path(name).stem
    assert (path_kind("clips/take[2].mp4"), path_kind("clips"), path_kind("nope.mp4")) == ("pattern", "folder", "missing")
    assert pattern_root("clips/c[12]/*.png") == Path("clips") and pattern_root("*.png") == Path(".")


def test_demo_video_refuses_an_empty_folder_naming_it(tmp_path, demo_jobs):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["demo", "--video", str(tmp_path / "empty"), "-o", str(tmp_path / "D")])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {tmp_path / 'empty'}"), r.output
    assert len(r.stderr.splitlines()) == 1 and not demo_jobs


def test_demo_video_advice_names_wbcap_runs_flags(tmp_path, demo_jobs):
    """`wbcap demo --video` has no --min-track or --score-threshold: its messages name `wbcap
    run`'s (whose pipeline it runs; `wbcap image` also takes --score-threshold), its own flags
    as they are."""
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "f0.png"), person_image(80, 60, seed=0)[:, :, ::-1])
    spelled.clear()
    r = CliRunner().invoke(cli, ["demo", "--video", str(frames), "-o", str(tmp_path / "D")], prog_name="wbcap")
    assert r.exit_code == 0, r.output
    assert spelled == ["wbcap run --min-track", "wbcap run --score-threshold", "--max-frames", "-o"]


@pytest.mark.parametrize("home", ["a file", "under /proc"])
def test_demo_with_an_unusable_wbcap_home_is_one_line_naming_it(tmp_path, monkeypatch, home):
    """The README's first command with WBCAP_HOME a file (or where no folder can be made): exit 2,
    one line naming the cache folder and WBCAP_HOME (it was "wbcap demo failed: FileNotFoundError")."""
    if home == "a file":
        (tmp_path / "home").write_text("")
        where = tmp_path / "home"
    else:
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc")
        where = Path("/proc/wbcap-test-home")
    monkeypatch.setenv("WBCAP_HOME", str(where))
    r = CliRunner().invoke(cli, ["demo", "-o", str(tmp_path / "D")])
    cache = where / "cache" / "demo_body_models" / "smplx"
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error: "), r.output
    assert str(cache) in r.output and r.output.endswith(
        "this is wbcap's cache folder: fix that, or set WBCAP_HOME to a writable folder (the cache goes in "
        "$WBCAP_HOME/cache)\n"), r.output
    assert not (tmp_path / "D").exists()


def test_next_steps_do_not_call_the_demos_own_model_installed(monkeypatch, body_dir):
    """With WBCAP_BODY_MODELS at the demo's cached synthetic model (as the Quick start lets one try
    `wbcap run`), the demo said "The SMPL-X model and the checkpoint are installed" (a user trial):
    that model is listed as still to get; a model elsewhere is found as before."""
    from wbcap.demo import next_steps
    from wbcap.pipeline import synthetic_body_models_dir

    monkeypatch.setenv("WBCAP_BODY_MODELS", str(synthetic_body_models_dir()))
    text = next_steps()
    assert "is the demo's synthetic model (not a human body)" in text and "installed" not in text, text
    assert "point WBCAP_BODY_MODELS (or the body_models argument) at them" in text  # (Python's words outside a command)
    # and how to try the commands meanwhile (a user trial found no pointer to the README's recipe)
    assert text.endswith("\nTo try wbcap image, run, export and view before you have them (meshes as meaningless as the demo's): "
                         f"README, Quick start: the demo's synthetic model (WBCAP_BODY_MODELS={synthetic_body_models_dir()}) "
                         "and a checkpoint from "
                         "`wbcap train body --datasets synthetic --epochs 1 --max-steps 2 --batch-size 2 -o try_ckpt`"), text
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    assert "is the demo's synthetic model" not in next_steps()


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_the_demos_model_left_in_wbcap_body_models_is_said_by_doctor_and_by_every_run(monkeypatch, micro_ckpt, body_dir,
                                                                                      caplog):
    """WBCAP_BODY_MODELS left at the demo's synthetic model (the Quick start's recipe) is found
    before the real model installed later in wbcap's body_models folder: doctor said "[ok  ]"
    and runs with a trained checkpoint said nothing (a user trial). Doctor now lists the SMPL-X
    model missing, with the fix, and building a pipeline with a checkpoint warns; the demo's own
    pipeline (random weights) and a model elsewhere do not."""
    import logging

    from wbcap.config import ModelConfig, PipelineConfig
    from wbcap.paths import body_models_dir
    from wbcap.pipeline import Pipeline, synthetic_body_models_dir

    demo_models = synthetic_body_models_dir()
    demo_file = demo_models / "smplx" / "SMPLX_NEUTRAL.npz"
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(demo_models))
    installed = body_models_dir() / "smplx"  # (where step 1 of the README puts the real file)
    installed.mkdir(parents=True)
    (installed / "SMPLX_NEUTRAL.npz").write_bytes((body_dir / "smplx" / "SMPLX_NEUTRAL.npz").read_bytes())
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == 1, r.output
    assert (f"[MISS] SMPL-X neutral: {demo_file} is the demo's synthetic model (not a human body)\n"
            "       fix: register at https://smpl-x.is.tue.mpg.de, download the SMPL-X npz models and point "
            "WBCAP_BODY_MODELS (or --body-models) at them, or unset WBCAP_BODY_MODELS where they are in wbcap's "
            "body_models folder\n") in r.output, r.output
    assert "To try" not in r.output  # (the try-out hint would say to set what the line above says to unset)
    male = [line for line in r.output.splitlines() if "SMPLX_MALE.npz" in line]  # (not into the demo's folder)
    assert male[-1] == (f"       fix: register at https://smpl-x.is.tue.mpg.de, download the SMPL-X npz models, copy "
                        f"SMPLX_MALE.npz to {installed}/ and unset WBCAP_BODY_MODELS (WBCAP_BODY_MODELS names "
                        f"{demo_models}, the demo's synthetic model folder)"), r.output
    # and so does a run's own line for it (it named the demo's folder: the second trial)
    from wbcap.body.model_files import BodyModelNotFoundError, find_body_model

    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("male")
    assert exc.value.target == installed and exc.value.demo
    assert str(exc.value).endswith(f"and put SMPLX_MALE.npz in {installed}/ and unset WBCAP_BODY_MODELS "
                                   f"(WBCAP_BODY_MODELS names {demo_models}, the demo's synthetic model folder)"), exc.value
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("female", demo_models)
    assert str(exc.value).endswith(f"in {installed}/ and give body_models {installed.parent} (body_models names "
                                   f"{demo_models}, the demo's synthetic model folder)"), exc.value
    # nor MANO or the evaluation's extra files (doctor said to put MANO_RIGHT.pkl into the demo's
    # folder, eval SMPLX_to_J14: the third trial)
    from wbcap.body.mano_layer import MANONotFoundError, find_mano_model
    from wbcap.errors import ModelFileError
    from wbcap.eval.extra_files import find_extra_file

    with pytest.raises(MANONotFoundError) as exc:
        find_mano_model()
    assert str(exc.value).endswith(f"put mano_v1_2/models/MANO_RIGHT.pkl in {installed.parent / 'mano'}/ and convert "
                                   f"it there once with `wbcap convert {installed.parent / 'mano' / 'MANO_RIGHT.pkl'}` "
                                   f"and unset WBCAP_BODY_MODELS (WBCAP_BODY_MODELS names {demo_models}, the demo's "
                                   "synthetic model folder)"), exc.value
    with pytest.raises(ModelFileError) as exc:
        find_extra_file("j14")
    assert f"and put it in {installed}/ and unset WBCAP_BODY_MODELS (WBCAP_BODY_MODELS names {demo_models}, the " \
           "demo's synthetic model folder)" in str(exc.value), exc.value
    # the cache cleaned (the demo's model gone) and no real model: also the way back to trying it
    # (it said only to download SMPL-X: an admin's trial)
    import shutil

    real = (installed / "SMPLX_NEUTRAL.npz").read_bytes()
    shutil.rmtree(installed)
    kept = demo_file.read_bytes()
    shutil.rmtree(demo_models)
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral")
    assert str(exc.value).endswith("; or, to go on trying wbcap without it, run `wbcap demo`, which writes the "
                                   "demo's model again"), exc.value
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("male")  # (the demo writes no male model)
    assert "wbcap demo" not in str(exc.value)
    demo_file.parent.mkdir(parents=True)
    demo_file.write_bytes(kept)
    installed.mkdir()
    (installed / "SMPLX_NEUTRAL.npz").write_bytes(real)
    config = PipelineConfig(model=ModelConfig(), checkpoint=str(micro_ckpt), device="cpu")
    with caplog.at_level(logging.WARNING, logger="wbcap.pipeline"):
        pipe = Pipeline.from_config(config, optimize=False)
    assert pipe.source.body_model == demo_file and pipe.source.body_model_synthetic
    said = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert said == [f"{demo_file} is the demo's synthetic SMPL-X model, not a human body: every mesh, joint and "
                    "metric is meaningless; register at https://smpl-x.is.tue.mpg.de, download the SMPL-X npz models "
                    "and point WBCAP_BODY_MODELS (or the body_models argument) at them, or unset WBCAP_BODY_MODELS where they "
                    "are in wbcap's body_models folder"], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wbcap.pipeline"):
        Pipeline.from_config(PipelineConfig(model=ModelConfig(), device="cpu"), weights="random", optimize=False)
        monkeypatch.delenv("WBCAP_BODY_MODELS")  # (the real file in its folder: found, and no word)
        pipe = Pipeline.from_config(config, optimize=False)
    assert not caplog.records and pipe.source.body_model == installed / "SMPLX_NEUTRAL.npz"
    assert not pipe.source.body_model_synthetic
    r = CliRunner().invoke(cli, ["doctor"])
    assert f"[ok  ] SMPL-X neutral: {installed / 'SMPLX_NEUTRAL.npz'}" in r.output, r.output


def test_the_photo_demos_advice_is_for_the_demo(tmp_path, monkeypatch):
    """A new user's trial: `wbcap demo --image` of a photo without a person was told to pass
    `wbcap image --bbox` (a command that needs the model files) and of a video to use `wbcap
    run`; the demo says what it takes, before any model is built for a video."""
    import numpy as np

    import wbcap.demo
    from wbcap.config import PipelineConfig

    monkeypatch.setattr(wbcap.demo, "_demo_pipeline", lambda device, few_calls=0, measure_strategy=False:
                        (PipelineConfig(), object()))  # (nobody found: the pipeline is never used)
    monkeypatch.setattr(wbcap.demo, "best_detector", lambda offline=None: "hog")
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    r = CliRunner().invoke(cli, ["demo", "--image", str(blank), "-o", str(tmp_path / "D")])
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert r.stderr == (f"error: {blank}: no person found by the hog detector; the demo needs a photo of a person its "
                        "detector finds: pass another --image (`wbcap image --bbox x,y,w,h` takes boxes of your own, "
                        "with the model files)\n"), r.stderr
    monkeypatch.setattr(wbcap.demo, "_demo_pipeline", lambda *a, **k: pytest.fail("a model was built"))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    r = CliRunner().invoke(cli, ["demo", "--image", str(video), "-o", str(tmp_path / "E")])
    assert r.exit_code == 2 and r.stderr == (f"error: {video}: --image takes a photo; for a video or GIF use --video "
                                             f"{video}\n"), r.stderr
    assert not (tmp_path / "E").exists()
    named = tmp_path / "clip.jpg"  # (an MP4 by its first box: a break-it trial was sent to `wbcap run`)
    named.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 64)
    r = CliRunner().invoke(cli, ["demo", "--image", str(named), "-o", str(tmp_path / "E")])
    assert r.exit_code == 2 and r.stderr == (f"error: {named}: --image takes a photo; for a video or GIF use --video "
                                             f"{named}\n"), r.stderr
    assert not (tmp_path / "E").exists()
    from PIL import Image  # (an animated GIF is a video; a still one a photo, read by `wbcap image`)

    frames = [Image.new("RGB", (32, 24), (v, v, v)) for v in (10, 200)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:], duration=100)
    r = CliRunner().invoke(cli, ["demo", "--image", str(tmp_path / "moving.gif"), "-o", str(tmp_path / "E")])
    assert r.exit_code == 2 and r.stderr == (f"error: {tmp_path / 'moving.gif'}: --image takes a photo; for a video or "
                                             f"GIF use --video {tmp_path / 'moving.gif'}\n"), r.stderr
    frames[0].save(tmp_path / "still.gif")

    def reached(*args, **kwargs):
        raise RuntimeError("the demo's model")

    monkeypatch.setattr(wbcap.demo, "_demo_pipeline", reached)
    r = CliRunner().invoke(cli, ["demo", "--image", str(tmp_path / "still.gif"), "-o", str(tmp_path / "E")])
    assert r.exit_code == 1 and "RuntimeError: the demo's model" in r.stderr, r.output  # (past the check)
