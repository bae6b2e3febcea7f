"""`wbcap run` and `wbcap export` refuse hostile option values up front (nan, inf, values past
their documented limits) in one line, a run folder's damaged meta.json `fps` is reported, a
--dest inside a run is refused, Ctrl-C after --overwrite gives advice that works, and a pass 2
stopped part way leaves no mix of two settings' outputs."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.errors import InputError
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, prog_name="wbcap")


def text(r) -> str:
    """What the command printed, stdout and stderr."""
    return r.output


def state(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def base_args(micro_ckpt, body_dir):
    return ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """3 frames of one person, 160x120, 10 fps."""
    return write_video(tmp_path_factory.mktemp("hostile") / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, video, micro_ckpt, body_dir):
    """A finished `wbcap run` (no render) of ``video``."""
    out = tmp_path_factory.mktemp("hostile_run") / "run"
    r = invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--no-render", "--checkpoint",
               micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, text(r)
    return out


# --------------------------------------------------------------------------- defect 1: --max-gap nan/inf


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_export_refuses_a_max_gap_that_is_not_finite(finished_run, body_dir, value):
    before = state(finished_run)
    r = invoke("export", finished_run, "--max-gap", value, "--format", "bvh", "--body-models", body_dir)
    assert r.exit_code == 2, text(r)
    assert f"Invalid value for '--max-gap': '{value}' is not a finite number (see '" in text(r), text(r)
    assert state(finished_run) == before  # (no bvh, meta.json as it was)


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_run_refuses_a_max_gap_that_is_not_finite(tmp_path, video, base_args, value):
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", "full", "--max-gap", value, *base_args)
    assert r.exit_code == 2, text(r)
    assert f"Invalid value for '--max-gap': '{value}' is not a finite number (see '" in text(r), text(r)
    assert not out.exists()


@pytest.mark.parametrize("args, said", [
    (["image", "x.jpg", "--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in the range x>=1"),
    (["image", "x.jpg", "--precision", "bogus"], "Invalid value for '--precision': 'bogus' is not one of"),
    (["run"], "Missing argument 'SOURCE'"),
    (["bench", "--batch-sizes", "0"], "Invalid value for '--batch-sizes'"),
    (["imgae"], "No such command 'imgae'")])
def test_a_bad_option_value_is_one_error_line(args, said):
    """A value click refuses (out of range, not a choice, missing) was click's four-line usage
    block ("Usage: ...", "Try ...", "", "Error: ..."); it is one `error:` line like wbcap's own
    input errors, pointing at the command's help, exit status 2, nothing on stdout."""
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, text(r)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {said}"), r.stderr
    command = "cli" if args[0] == "imgae" else f"cli {args[0]}"
    assert lines[0].endswith(f" (see '{command} --help')"), r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("command", ["image", "run"])
def test_help_shows_an_unbounded_finite_option_as_a_plain_float(command):
    """--score-threshold has no bounds of its own (the detector's scale decides): its help line
    says FLOAT, not click's "FLOAT RANGE ... [x<=None]"; bounded ones keep their range."""
    r = invoke(command, "--help")
    assert r.exit_code == 0, text(r)
    assert re.search(r"--score-threshold FLOAT\s", text(r)), text(r)
    assert "None]" not in text(r), text(r)
    assert re.search(r"--min-height FLOAT RANGE", text(r)), text(r)


@pytest.mark.parametrize(("command", "option", "words"), [
    ("run", "--every", "is not a whole number"), ("image", "--max-people", "is not a whole number"),
    ("train", "--epochs", "is not a whole number"), ("run", "--min-height", "is not a number"),
    ("run", "--score-threshold", "is not a number")])
def test_a_word_for_a_number_is_named_as_such(tmp_path, command, option, words):
    """click said "'abc' is not a valid integer range" (its type's name) for `--every abc` (a user trial)."""
    args = [command, *(["body"] if command == "train" else [str(tmp_path / "x.mp4")]), option, "abc"]
    r = invoke(*args)
    assert r.exit_code == 2, text(r)
    assert f"Invalid value for '{option}': 'abc' {words} (see '" in text(r), text(r)
    assert "range" not in text(r).split("(see")[0], text(r)


@pytest.mark.parametrize("option, value", [("--score-threshold", "nan"), ("--min-height", "nan")])
def test_run_refuses_detector_settings_that_are_not_finite(tmp_path, video, base_args, option, value):
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", "full", option, value, *base_args)
    assert r.exit_code == 2, text(r)
    assert f"Invalid value for '{option}': '{value}' is not a finite number (see '" in text(r), text(r)
    assert not out.exists()


def test_a_damaged_max_gap_names_wbcap_run_once(finished_run, tmp_path, body_dir):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "max_gap": float("inf")}))
    r = invoke("export", run, "--format", "npz", "--body-models", body_dir)
    assert r.exit_code == 2, text(r)
    assert r.stderr.startswith(f"error: {run / 'meta.json'}: a damaged max_gap (Infinity, where wbcap writes a number of "
                               "seconds, 0 or more); rewrite it with its run's command: `wbcap run ")
    # (the run's own command with --resume: "rerun its run with --resume" was refused for its other flags, a trial)
    assert r.stderr.endswith(" --resume` (or start over with --overwrite)\n") and r.stderr.count("\n") == 1


# --------------------------------------------------------------------------- defect 2: extreme values


@pytest.mark.parametrize("args, message", [
    (["--start", "1e308"], "error: --start 1e+308: must be at most 1e+07 seconds (about 116 days, past the end of "
                           "any video); pass the time of a frame\n"),
    (["--end", "1e308"], "error: --end 1e+308: must be at most 1e+07 seconds; leave it out for the end of the video\n"),
    (["--every", "1000000000000000000000"],
     "error: --every 1000000000000000000000: must be at most 1000000 (more than the frames of a day of 10 fps "
     "video); pass --max-frames 1 for the first frame only\n"),
    (["--smooth", "gaussian", "--sigma", "1e308"], "Invalid value for '--sigma': 1e+308 is not in the range 0<=x<=1000.0 (see 'wbcap run --help')"),
    (["--focal", "1e300"], "Invalid value for '--focal': 1e+300 is not in the range 1.0<=x<=10000000.0 (see 'wbcap run --help')"),
    (["--fps", "1e300"], "Invalid value for '--fps': 1e+300 is not in the range 0.001<=x<=1000.0 (see 'wbcap run --help')"),
    (["--fps", "1e-300"], "Invalid value for '--fps': 1e-300 is not in the range 0.001<=x<=1000.0 (see 'wbcap run --help')"),
], ids=["start", "end", "every", "sigma", "focal", "fps-high", "fps-low"])
def test_run_refuses_extreme_values_before_any_work(tmp_path, video, base_args, args, message):
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", "full", *args, *base_args)
    assert r.exit_code == 2, text(r)
    assert (r.stderr == message) if message.startswith("error:") else (message in r.stderr), text(r)
    assert not out.exists()


def test_the_largest_every_runs(tmp_path, video, base_args):
    """--every at its limit keeps the first frame (its clock rate, 1e-5 fps, was a ZeroDivisionError)."""
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--every", "1000000", "--no-render",
               *base_args)
    assert r.exit_code == 0, text(r)
    assert r.stdout == f"1 frames, 1 track(s), 1 person-frames -> {out}\n"
    assert json.loads((out / "meta.json").read_text())["fps"] == pytest.approx(1e-5)


def test_every_nth_frame_keeps_the_tracks(tmp_path, base_args):
    """`--every 7` (more than --max-age + 1 source frames between processed frames) kept no track:
    the skipped frames aged every track past --max-age; now processed frames count."""
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i % 3) for i in range(22)])
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", "full", "--every", "7", "--no-render", "--export", "none",
               *base_args)
    assert r.exit_code == 0, text(r)
    assert r.stdout == f"4 frames, 1 track(s), 4 person-frames -> {out}\n", text(r)
    # 10 / 7 frames/s: said to break tracks and let ids pass between people (an HCI trial)
    assert (f"{video}: --every 7 keeps 1.43 fps, where walking people move further between two processed "
            "frames than box overlap follows") in " ".join(text(r).split()), text(r)
    # the processed clock and the source's rate, which frame indices count in (an HCI trial took
    # frame / fps for a time, 7 times too large)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frame_step"] == 7 and meta["source_fps"] == pytest.approx(7 * meta["fps"]) and meta["source_fps"] > 0


def test_library_limits(video):
    """The same limits hold for the Python API as for the command line (wbcap.limits)."""
    from wbcap.io.frame_times import _as_fraction, retime
    from wbcap.io.video_reader import open_frames
    from wbcap.smooth.filters import gaussian
    from wbcap.smooth.sequence import SmoothConfig
    from wbcap.video_app import VideoJob, run_video

    with pytest.raises(InputError, match=r"^every=1000001: must be at most 1000000 "):
        open_frames(video, every=1_000_001)
    with pytest.raises(InputError, match=r"^start=1e\+308: must be at most 1e\+07 seconds"):
        open_frames(video, start=1e308)
    with pytest.raises(InputError, match=r"^image_fps=2000: must be from 0.001 to 1000 frames per second"):
        open_frames(video, image_fps=2000)
    with pytest.raises(ValueError, match=r"0 <= sigma <= 1000"):
        SmoothConfig(method="gaussian", sigma=1e308)
    with pytest.raises(ValueError, match=r"need finite min_cutoff, beta and d_cutoff"):
        SmoothConfig(beta=float("inf"))
    with pytest.raises(ValueError, match=r"sigma_frames must be a finite number >= 0, got inf"):
        gaussian(np.zeros((4, 2)), float("inf"))
    assert _as_fraction(1e-5) > 0 and retime([0.0, None], 1e-5) == ([0.0, 100000.0], 1)
    for job, message in [(VideoJob(str(video), "o", focal=1e300), "focal 1e+300: must be a focal length in pixels"),
                         (VideoJob(str(video), "o", focal=1e-300), "focal 1e-300: must be a focal length in pixels "
                          "from 1 to 1e+07"),
                         (VideoJob(str(video), "o", max_gap=float("nan")), "max_gap nan: must be a finite number"),
                         # (a review: a string or a single number from the API raised TypeError, not one line)
                         (VideoJob(str(video), "o", focal="800"), "focal 800: must be a focal length in pixels"),
                         (VideoJob(str(video), "o", principal_point=320.0), "principal_point 320.0: must be two pixel "
                          "coordinates (cx, cy) within 1e+07 of the picture's corner"),
                         (VideoJob(str(video), "o", principal_point=("a", 1)), "principal_point ('a', 1): must be two "
                          "pixel coordinates")]:
        with pytest.raises(InputError, match=f"^{re.escape(message)}"):
            run_video(job)


# --------------------------------------------------------------------------- defect 3: meta.json fps


def test_read_meta_refuses_a_damaged_smoothed_max_gap(tmp_path):
    """A review: meta.json's smoothed_max_gap, unchecked, gave `wbcap export` a traceback."""
    from wbcap.io.run_folder import read_meta

    (tmp_path / "meta.json").write_text(json.dumps({"smoothed_max_gap": "1s"}))
    with pytest.raises(InputError, match=r'a damaged smoothed_max_gap \("1s", where wbcap writes a number of seconds, '
                                         r"0 or more\)"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"smoothed_max_gap": 0.5}))
    assert read_meta(tmp_path) == {"smoothed_max_gap": 0.5}


def test_read_meta_refuses_an_fps_past_the_limit(tmp_path):
    from wbcap.io.run_folder import read_meta

    (tmp_path / "meta.json").write_text(json.dumps({"fps": 1e9}))
    with pytest.raises(InputError, match=r"a damaged fps \(1000000000\.0, where wbcap writes a number of frames per "
                                         r"second from 1e-06 to 1000\)"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"fps": 1000}))
    assert read_meta(tmp_path) == {"fps": 1000}
    # (too slow as well: a tampered 1e-300 wrote BVH frame times of 1e300 s, a hostile-input trial)
    (tmp_path / "meta.json").write_text(json.dumps({"fps": 1e-300}))
    with pytest.raises(InputError, match=r"a damaged fps \(1e-300, where"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"fps": 1e-6}))
    assert read_meta(tmp_path) == {"fps": 1e-6}


def test_read_meta_refuses_a_camera_no_picture_has(tmp_path):
    """A tampered camera: an image size of 10^9 (what is drawn from it would be sized so), a
    fraction of a pixel, a focal of 0, under a pixel (1e-300: a glTF yfov of pi) or past --focal's
    bound (1e308: a glTF yfov of 0), a NaN or far-off principal point, strings or booleans for numbers."""
    from wbcap.camera import ImageCamera, camera_from_dict, camera_to_dict
    from wbcap.io.images import MAX_IMAGE_PIXELS
    from wbcap.io.run_folder import read_meta

    good = camera_to_dict(ImageCamera.default((1920, 1080)))
    for bad in ({"image_size": [10**9, 10**9]}, {"image_size": [16385, 16384]}, {"image_size": [640.5, 480]},
                {"image_size": [0, 480]}, {"image_size": [True, 480]}, {"focal": [0, 1000]},
                {"princpt": [float("nan"), 2]}, {"focal": [float("inf"), 1]}, {"focal": [1e308, 1e308]},
                {"focal": [1e-300, 1e-300]}, {"focal": [1000, 0.5]}, {"princpt": [1e308, 2]}, {"princpt": [5, -1.1e7]},
                {"focal": [True, True]}, {"image_size": ["640", "480"]}, {"princpt": ["1", 2]}):
        (tmp_path / "meta.json").write_text(json.dumps({"camera": {**good, **bad}}))
        with pytest.raises(InputError, match=r"a damaged camera \(.*where wbcap writes focal, princpt and image_size, 2 "
                                             r"numbers each: a focal of 1 pixel or more, a principal point within 1e7 pixels and a "
                                             r"picture's size in whole pixels\)"):
            read_meta(tmp_path)
    biggest = {**good, "image_size": [16384, MAX_IMAGE_PIXELS // 16384]}
    (tmp_path / "meta.json").write_text(json.dumps({"camera": biggest}))
    assert camera_from_dict(read_meta(tmp_path)["camera"]).image_size == (16384, 16384)


def test_export_refuses_a_damaged_fps(finished_run, tmp_path, body_dir):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "fps": 1001.0}))
    before = state(run)
    r = invoke("export", run, "--format", "npz", "--body-models", body_dir)
    assert r.exit_code == 2, text(r)
    assert r.stderr.startswith(f"error: {run / 'meta.json'}: a damaged fps (1001.0, where wbcap writes a number of frames "
                               "per second from 1e-06 to 1000); rewrite it with its run's command: `wbcap run ")
    assert r.stderr.endswith(" --resume` (or start over with --overwrite)\n")
    assert state(run) == before


def test_run_refuses_frames_faster_than_the_limit(tmp_path, base_args):
    """A video whose frames come 2000 times a second: refused before any work when its header
    says so consistently (frame count, duration and rate agree), else before pass 2 writes
    anything (meta.json would hold an fps that export refuses)."""
    video = write_video(tmp_path / "fast.mp4", [person_image(160, 120, seed=i) for i in range(3)], fps=2000)
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--no-render", *base_args)
    assert r.exit_code == 2, text(r)
    assert r.stderr == (f"error: {video}: the frames kept come 2000 times a second, above the 1000 wbcap writes "
                       "track files for; run it with --every 2\n")
    assert not out.exists()
    faster = write_video(tmp_path / "faster.mp4", [person_image(160, 120, seed=i) for i in range(3)], fps=3000)
    r = invoke("run", faster, "-o", out, "--every", "2", "--detector", "full", "--no-render", *base_args)
    assert r.exit_code == 2 and r.stderr == (f"error: {faster}: the frames kept come 1500 times a second, above the "
                                             "1000 wbcap writes track files for; run it with --every 3\n"), text(r)
    import wbcap.video_app

    with pytest.MonkeyPatch.context() as mp:  # (a header whose rate cannot be trusted: pass 1 finds it out)
        mp.setattr(wbcap.video_app, "_declared_rate", lambda info: 0.0)
        r = invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--no-render", *base_args)
    assert r.exit_code == 2, text(r)
    assert r.stderr == (f"error: {video}: the frames kept come 2000 times a second, above the 1000 wbcap writes "
                       "track files for; run it with --every 2 and --overwrite\n")
    assert sorted(p.name for p in out.iterdir()) == [".wbcap"]


# --------------------------------------------------------------------------- defect 4: --dest inside a run


@pytest.mark.parametrize("inside", ["own", "other"])
def test_export_refuses_a_dest_inside_a_run(finished_run, tmp_path, body_dir, inside):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    holder = run if inside == "own" else other
    dest = holder / "sub"
    before = state(holder)
    r = invoke("export", run, "--format", "bvh", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 2, text(r)
    assert r.stderr == (f"error: --dest {dest}: lies inside the wbcap run folder {holder.resolve()} (whose `wbcap run "
                       f"--overwrite` would then refuse it); choose a folder outside it, or leave --dest out to write "
                       f"into {run}\n")
    assert not dest.exists() and state(holder) == before
    from wbcap.export.animation import AnimationExport
    from wbcap.export.from_run import ExportJob, export_run

    with pytest.raises(InputError, match=r"^dest .*/sub: lies inside the wbcap run folder .*leave dest out"):
        export_run(ExportJob(run=run, export=AnimationExport.parse("bvh"), dest=dest, body_models=body_dir))  # (API too)
    assert not dest.exists() and state(holder) == before
    r = invoke("export", run, "--format", "bvh", "--dest", run, "--body-models", body_dir)  # (RUN itself: fine)
    assert r.exit_code == 0 and (run / "track_0.bvh").is_file(), text(r)


# --------------------------------------------------------------------------- defect 5: Ctrl-C after --overwrite


@pytest.mark.slow  # fast loop under 2 minutes
def test_ctrl_c_after_overwrite_gives_advice_that_works(tmp_path, video, base_args, monkeypatch):
    """Stopped before its first frames, an --overwrite with new smoothing leaves the previous run
    (of the same pass 1 settings) as it was and says to use --resume in place of --overwrite;
    that command then works."""
    import wbcap.model.batching as batching

    out = tmp_path / "out"
    args = ["--detector", "full", "--min-track", "1", "--no-render", *base_args]
    assert invoke("run", video, "-o", out, *args).exit_code == 0
    before = state(out)
    real = batching.regress_in_batches

    def stopped(*a, **k):
        raise KeyboardInterrupt
        yield  # (a generator, as the real one)

    monkeypatch.setattr(batching, "regress_in_batches", stopped)
    r = invoke("run", video, "-o", out, "--overwrite", "--smooth", "gaussian", *args)
    assert r.exit_code == 130, text(r)
    assert (f"stopped before the first frames: the previous run in {out} is left as it was (its frames fit this "
            "command: add --resume to the same command in place of --overwrite to use them)") in text(r), text(r)
    assert state(out) == before
    monkeypatch.setattr(batching, "regress_in_batches", real)
    r = invoke("run", video, "-o", out, "--resume", "--smooth", "gaussian", *args)
    assert r.exit_code == 0, text(r)
    assert json.loads((out / "meta.json").read_text())["smooth"]["method"] == "gaussian"


# --------------------------------------------------------------------------- defect 6: pass 2 stopped part way


@pytest.mark.slow  # fast loop under 2 minutes
def test_a_resume_stopped_in_pass_2_leaves_no_output_of_the_earlier_settings(tmp_path, video, base_args, monkeypatch):
    """--resume --sigma 5 over a sigma 2 run, stopped while rendering: the sigma 2 render.mp4 is
    gone (not left beside sigma 5 tracks); a --resume then writes everything."""
    from wbcap.io.video_writer import VideoWriter

    out = tmp_path / "out"
    args = ["--detector", "full", "--min-track", "1", "--smooth", "gaussian", *base_args]
    assert invoke("run", video, "-o", out, "--sigma", "2", *args).exit_code == 0
    assert (out / "render.mp4").is_file()
    write = VideoWriter.write

    def stopped(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(VideoWriter, "write", stopped)
    r = invoke("run", video, "-o", out, "--resume", "--sigma", "5", *args)
    assert r.exit_code == 130, text(r)
    assert json.loads((out / "meta.json").read_text())["smooth"]["sigma"] == 5.0
    assert not (out / "render.mp4").exists(), sorted(p.name for p in out.iterdir())
    assert not list(out.glob(".*tmp-*"))
    monkeypatch.setattr(VideoWriter, "write", write)
    assert invoke("run", video, "-o", out, "--resume", "--sigma", "5", *args).exit_code == 0
    assert (out / "render.mp4").is_file() and (out / "track_0.npz").is_file()


@pytest.mark.slow  # three runs; tests/test_run_folder.py checks the mark in the fast loop
def test_a_run_stopped_in_pass_2_is_said_unfinished_by_export_and_view(tmp_path, video, base_args, monkeypatch):
    """Stopped while rendering, a run's folder holds params.jsonl, meta.json and track files but
    no render.mp4: export and view took it for finished; they now warn, until a --resume ends it."""
    from wbcap.io.video_writer import VideoWriter

    out = tmp_path / "out"
    args = ["--detector", "full", "--min-track", "1", *base_args]
    write = VideoWriter.write

    def stopped(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(VideoWriter, "write", stopped)
    assert invoke("run", video, "-o", out, *args).exit_code == 130
    assert (out / "params.jsonl").is_file() and not (out / "render.mp4").exists()
    finish = shlex.join(["wbcap", "run", str(video), "-o", str(out), *map(str, args), "--resume"])  # (its pass-1 flags)
    said = (f"{out}: its run was stopped while writing its outputs, so some may be missing (render.mp4, animation "
            f"files); finish them with `{finish}`")
    for command in (["export", out, "--format", "bvh", "--dest", tmp_path / "e"], ["view", out, "--html", tmp_path / "v.html"]):
        r = CliRunner().invoke(cli, [str(a) for a in command])
        assert r.exit_code == 0 and said in " ".join(r.output.split()), r.output
    monkeypatch.setattr(VideoWriter, "write", write)
    assert invoke("run", video, "-o", out, "--resume", *args).exit_code == 0
    assert (out / "render.mp4").is_file() and not (out / ".wbcap" / "writing").exists()
    r = CliRunner().invoke(cli, ["view", str(out), "--html", str(tmp_path / "w.html")])
    assert r.exit_code == 0 and "stopped while writing" not in r.output, r.output


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_a_full_disk_in_pass_2_says_how_to_finish_the_run(tmp_path, base_args, video, monkeypatch):
    """A user trial: a disk that filled while the track files were written left the frames and
    said only to free space; running the command again then said the folder holds a run. The line
    now says to add --resume, which finishes it."""
    import errno

    import wbcap.export.animation

    out = tmp_path / "run"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "track_0.npz"))

    monkeypatch.setattr(wbcap.export.animation, "write_track_files", full)
    for extra, then in (([], "add --resume to the same command"), (["--resume"], "run the same command again")):
        r = invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--no-render", *extra, *base_args)
        assert r.exit_code == 2, text(r)
        assert text(r).splitlines()[-1] == (f"error: cannot write {out / 'track_0.npz'} (No space left on device): free "
                                             f"disk space or point -o to another disk; then {then} to finish the run "
                                             "(the frames done so far are kept)"), text(r)
    monkeypatch.undo()
    r = invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--no-render", "--resume", *base_args)
    assert r.exit_code == 0 and (out / "track_0.npz").is_file(), text(r)
