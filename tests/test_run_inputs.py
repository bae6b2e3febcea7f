"""`wbcap run` on what users give it: box files keyed in every usual way, short inputs, used
output folders, and warnings that name what was dropped."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.detect.factory import BoxesFileDetector
from wbcap.errors import InputError
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video as write_frames


def write_video(path: Path, n: int, fps: int = 10) -> Path:
    return write_frames(path, [person_image(160, 120, seed=i) for i in range(n)], fps)


@pytest.fixture()
def base_args(micro_ckpt, body_dir):
    return ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu", "--no-render"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def text(result) -> str:
    """The CLI's stdout and stderr (log lines included) with rich's line wrapping undone."""
    return " ".join(result.output.split())


def box_file(tmp_path: Path, table: dict) -> Path:
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps(table))
    return p


def test_box_keys_resolve_index_padded_and_file_name(tmp_path, caplog):
    f = box_file(tmp_path, {"0": [[1, 2, 3, 4]], "000002": [[5, 6, 7, 8]], "c.png": [[9, 9, 9, 9]], "z.png": [[1, 1, 1, 1]]})
    det = BoxesFileDetector(str(f))
    with caplog.at_level(logging.WARNING):
        det.bind(["a.png", "b.png", "x.png", "c.png"], 4)
    assert sorted(det.by_frame) == [0, 2, 3]
    assert det.for_frame(2)[0].box == (5, 6, 7, 8) and det.for_frame(3)[0].box == (9, 9, 9, 9) and det.for_frame(1) == []
    assert det.unmatched == ["z.png"]
    assert "1 of 4 keys" in caplog.text and "'z.png'" in caplog.text


def test_box_keys_none_matching_is_an_error_naming_them(tmp_path):
    det = BoxesFileDetector(str(box_file(tmp_path, {"frame_a.jpg": [[1, 2, 3, 4]], "99": [[1, 2, 3, 4]]})))
    with pytest.raises(InputError, match=r"boxes.json: none of its 2 keys \('frame_a.jpg', '99'"):
        det.bind(None, 10)
    det = BoxesFileDetector(str(box_file(tmp_path, {"1": [[1, 2, 3, 4]], "001": [[1, 2, 3, 4]]})))
    with pytest.raises(InputError, match="'1' and '001' both name frame 1"):
        det.bind(None, 10)


def test_run_with_zero_padded_keys(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 4)
    f = box_file(tmp_path, {f"{i:06d}": [[30, 10, 90, 100]] for i in range(4)})
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{f}", *base_args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "out" / "params.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2, 3]


def test_run_image_folder_with_file_name_keys(tmp_path, base_args):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"img_{i + 1:04d}.png"), person_image(160, 120, seed=i)[:, :, ::-1])
    f = box_file(tmp_path, {f"img_{i + 1:04d}.png": [[30 + i, 10, 90, 100]] for i in range(3)})
    r = invoke("run", folder, "-o", tmp_path / "out", "--detector", f"boxes:{f}", *base_args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "out" / "params.jsonl").read_text().splitlines()]
    assert [(x["frame"], x["box"][0]) for x in lines] == [(0, 30.0), (1, 31.0), (2, 32.0)]


def test_run_box_file_matching_nothing_fails_at_once(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 3)
    f = box_file(tmp_path, {"photo.jpg": [[30, 10, 90, 100]]})
    out = tmp_path / "out"
    r = invoke("run", video, "-o", out, "--detector", f"boxes:{f}", *base_args)
    assert r.exit_code == 2
    errors = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "'photo.jpg'" in errors[0] and "boxes.json" in errors[0], r.output
    assert not out.exists() or not list(out.glob("*.jsonl"))


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_resume_with_a_box_file_follows_the_path_rule(tmp_path, base_args, monkeypatch):
    """--detector boxes:FILE is recorded with FILE absolute, as the other paths: --resume with
    another spelling of the file is accepted (it was refused as "different settings (detector)"),
    the same text typed in another folder, naming another file, is refused (it was accepted); a
    run recorded as typed (an older wbcap) resumes with that spelling from its folder."""
    video = write_video(tmp_path / "v.mp4", 2)
    boxes = {str(i): [[30, 10, 90, 100]] for i in range(2)}
    box_file(tmp_path, boxes)
    (tmp_path / "elsewhere").mkdir()
    box_file(tmp_path / "elsewhere", boxes)
    out, run_json = tmp_path / "out", tmp_path / "out" / ".wbcap" / "run.json"
    args = ["-o", out, "--export", "none", "--min-track", "1", *base_args]
    monkeypatch.chdir(tmp_path)
    r = invoke("run", video, "--detector", "boxes:boxes.json", *args)
    assert r.exit_code == 0, r.output
    recorded = json.loads(run_json.read_text())
    assert recorded["detector"] == f"boxes:{tmp_path / 'boxes.json'}"
    r = invoke("run", video, "--detector", "boxes:./boxes.json", "--resume", *args)
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = invoke("run", video, "--detector", "boxes:boxes.json", "--resume", *args)
    assert r.exit_code == 2 and (f'holds a run with different settings (--detector: "boxes:{tmp_path / "boxes.json"}" '
                                 f'in the run, "boxes:{tmp_path / "elsewhere" / "boxes.json"}" now); give the run\'s '
                                 "own settings to continue it, or use --overwrite to start over") in " ".join(
                                     r.output.split()), r.output
    monkeypatch.chdir(tmp_path)
    run_json.write_text(json.dumps(dict(recorded, detector="boxes:boxes.json")))  # as an older wbcap wrote it
    r = invoke("run", video, "--detector", "boxes:boxes.json", "--resume", *args)
    assert r.exit_code == 0, r.output
    now = json.loads(run_json.read_text())
    assert now.pop("command")["argv"][-len(args) - 1:] == ["--resume", *map(str, args)]  # (the last command: the resume)
    assert now == {k: v for k, v in recorded.items() if k != "command"}  # rewritten absolute


@pytest.mark.parametrize("number", ["1e39", "NaN", "Infinity", "-1e400", "1" + "0" * 400])
def test_run_box_file_number_beyond_any_image_is_one_line_naming_file_and_frame(tmp_path, base_args, monkeypatch,
                                                                                number):
    """`--detector boxes:FILE` with 1e39 ran with numpy float32 overflow warnings (the crop, the
    tracker's boxes): the box file follows --bbox's rule (wbcap.detect.boxes), in one line naming
    the file, the frame's entry and the box, before the model loads, with no warning and no output."""
    import warnings

    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    video = write_video(tmp_path / "v.mp4", 3)
    f = tmp_path / "boxes.json"
    f.write_text('{"0": [[30, 10, 90, 100]], "2": [[30, 10, 90, 100], [30, ' + number + ", 90, 100]]}")
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = invoke("run", video, "-o", out, "--detector", f"boxes:{f}", *base_args)
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"error: {f}: entry '2' box 1: every number must be finite and within 16,777,216 pixels (x,y: the "
                        "top-left corner, w,h: the size, in the image's pixels); fix the box file\n"), r.stderr
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert "overflow" not in r.output.lower() and not out.exists()


def test_run_warns_with_counts_when_short_tracks_are_dropped(tmp_path, base_args, caplog):
    video = write_video(tmp_path / "v.mp4", 6)
    # one person in all 6 frames, a second box only in frame 0 (a 1-frame track)
    table = {str(i): [[10, 10, 60, 100]] + ([[100, 10, 50, 100]] if i == 0 else []) for i in range(6)}
    f = box_file(tmp_path, table)
    with caplog.at_level(logging.WARNING):
        r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{f}", *base_args)
    assert r.exit_code == 0, r.output
    assert "1 track(s)" in r.output
    assert "dropped 1 short track(s) (1 person-frames; id 1) seen in fewer than 3 frames (--min-track)" in text(r)
    # meta.json keeps the dropped ids, and an export of one says why it is not there (an HCI trial)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["dropped"] == {"short": [1], "static": []} and meta["pauses"] == [] and meta["tracks"] == [0]
    r = invoke("export", tmp_path / "out", "--track", "1", "--format", "csv")
    assert r.exit_code == 2 and r.stderr == (
        f"error: track 1: not in {tmp_path / 'out'} (dropped by cli run --min-track: seen in too few frames; a "
        "resume of the run with a lower one writes it), which has tracks 0\n"), r.output  # (cli: CliRunner's name)
    # a run that kept nobody exits 0 (a script looping over clips carries on), and so does its export,
    # writing nothing (it exited 2, "holds no person": an HCI researcher's trial); one of a track is refused
    once = box_file(tmp_path, {"0": [[10, 10, 60, 100]]})  # (a person in frame 0 alone: a 1-frame track)
    r = invoke("run", video, "-o", tmp_path / "none", "--detector", f"boxes:{once}", *base_args)
    assert r.exit_code == 0 and "0 track(s)" in r.output, r.output
    r = invoke("export", tmp_path / "none", "--format", "csv", "--dest", tmp_path / "exported")
    assert r.exit_code == 0 and r.stdout == "" and not (tmp_path / "exported").exists(), r.output
    assert f"{tmp_path / 'none' / 'params.jsonl'}: holds no person (its run kept no track): nothing to export" in text(r)
    r = invoke("export", tmp_path / "none", "--track", "0", "--format", "csv")
    assert r.exit_code == 2 and r.stderr == (
        f"error: track 0: not in {tmp_path / 'none'} (dropped by cli run --min-track: seen in too few frames; a "
        "resume of the run with a lower one writes it), which kept no track\n"), r.output


def test_a_score_threshold_out_of_range_is_refused_before_the_model_loads(tmp_path, base_args, monkeypatch):
    """A README audit: `wbcap run --score-threshold 1.5` was refused after the network was built
    (9.8 s, and a machine's first CPU measurement); the README promises such lines before."""
    import wbcap.video_app as video_app

    monkeypatch.setattr(video_app, "_load_pipeline", lambda *a: pytest.fail("the model loaded"))
    video = write_video(tmp_path / "v.mp4", 2)
    r = invoke("run", video, "-o", tmp_path / "out", "--score-threshold", "1.5", *base_args)
    assert r.exit_code == 2 and r.stderr.startswith("error: --score-threshold 1.5 is outside [0, 1]"), r.output
    assert not (tmp_path / "out").exists()
    # from Python, HOG's margin and the minimum height too (NaN ran the whole video and found nobody: an API trial)
    from wbcap.errors import InputError
    from wbcap.video_app import VideoJob, run_video

    for settings, said in (({"score_threshold": float("nan")}, "score_threshold nan is not a finite number: give one"),
                           ({"min_height_frac": float("nan")}, "min_height_frac nan is not a fraction of the image "
                                                               "height: give one in [0, 1] (0 keeps every box)")):
        with pytest.raises(InputError) as info:
            run_video(VideoJob(source=str(video), out=str(tmp_path / "py"), detector="hog", render=False, **settings))
        assert str(info.value).startswith(said), str(info.value)
    assert not (tmp_path / "py").exists()


def test_nobody_detected_advice_fits_the_detector(tmp_path, base_args, caplog):
    video = write_video(tmp_path / "v.mp4", 3)
    f = box_file(tmp_path, {"0": [], "1": [], "2": []})
    with caplog.at_level(logging.WARNING):
        r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{f}", *base_args)
    assert r.exit_code == 0, r.output
    assert "no person was detected in any of the 3 processed frames by the boxes:" in text(r)
    assert "--detector full" not in text(r)


def test_used_folder_advice_matches_what_overwrite_does(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        r = invoke("run", video, "-o", out, "--detector", "full", *extra, *base_args)
        assert r.exit_code == 2
        assert "notes.txt" in r.output and "--overwrite" not in r.output, r.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.slow  # test_run_timing resumes out-of-order times (the full suite)
def test_resume_repairs_out_of_order_times_of_an_older_raw_file(tmp_path, base_args, caplog):
    """A raw file written before times were repaired at decode (pairs swapped, one repeated):
    --resume redoes the outputs without failing in smoothing, times strictly increasing."""
    video = write_video(tmp_path / "v.mp4", 6)
    out = tmp_path / "out"
    args = ["--detector", "full", *base_args]
    assert invoke("run", video, "-o", out, *args).exit_code == 0
    raw = out / ".wbcap" / "raw.jsonl"
    recs = [json.loads(x) for x in raw.read_text().splitlines()]
    times = [0.1, 0.0, 0.3, 0.2, 0.2, 0.5]
    for rec, t in zip(recs, times):
        rec["time"] = t
    raw.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with caplog.at_level(logging.WARNING):
        r = invoke("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    got = [json.loads(x)["time"] for x in (out / "params.jsonl").read_text().splitlines()]
    # the decoder's rule: sorted within a window, then repeats moved one frame on
    np.testing.assert_allclose(got, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], atol=1e-9)
    assert "5 of 6 frame times" in text(r)


def test_unexpected_failure_in_run_names_the_file_and_frame(tmp_path, base_args, monkeypatch):
    from wbcap.pipeline import Pipeline

    def broken(self, jobs, first_index=0, mesh=True):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Pipeline, "regress", broken)
    video = write_video(tmp_path / "v.mp4", 3)
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "out"), "--detector", "full", *base_args])
    assert r.exit_code == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("error: wbcap run failed: RuntimeError: out of memory")
    assert f"while processing {video} near frame" in lines[0] and "full traceback in" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing worth resuming: no half-made folder


@pytest.mark.slow  # fast loop: kept under 2 minutes
def test_resume_with_other_settings_removes_outputs_it_does_not_write_again(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 6)
    # person A in every frame, person B only in frames 0-3 (a 4-frame track)
    f = box_file(tmp_path, {str(i): [[10, 10, 60, 100]] + ([[100, 10, 50, 100]] if i < 4 else []) for i in range(6)})
    out = tmp_path / "out"
    assert invoke("run", video, "-o", out, "--detector", f"boxes:{f}", "--obj", *base_args).exit_code == 0
    assert sorted(p.name for p in out.glob("track_*.npz")) == ["track_0.npz", "track_1.npz"]
    assert (out / "meshes" / "1").is_dir()
    r = invoke("run", video, "-o", out, "--detector", f"boxes:{f}", "--min-track", "5", "--resume", *base_args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("track_*.npz")) == ["track_0.npz"]
    assert not (out / "meshes").exists()  # no --obj this time: the old meshes are gone too


def test_boxes_over_max_people_are_counted(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 3)
    f = box_file(tmp_path, {str(i): [[10, 10, 60, 100], [100, 10, 50, 100], [60, 5, 40, 90]] for i in range(3)})
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{f}", "--max-people", "1", *base_args)
    assert r.exit_code == 0, r.output
    assert "dropped 6 detected box(es) beyond --max-people 1 in 3 frame(s)" in text(r)


def test_output_folder_that_cannot_be_made_is_a_user_error(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 2)
    (tmp_path / "afile").write_text("")
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "afile" / "out"), "--detector", "full", *base_args])
    assert r.exit_code == 2, r.output
    assert r.stderr.splitlines() == [f"error: {tmp_path / 'afile'}: is a file, so {tmp_path / 'afile' / 'out'} cannot be "
                                     "created; choose another -o folder"]


def test_clock_rate_nominal_unless_the_frames_say_otherwise():
    from wbcap.smooth.track import clock_rate

    cfr_with_drops = [i / 25 for i in (0, 1, 2, 5, 6, 7, 9, 10)]
    assert clock_rate(cfr_with_drops, 25.0) == 25.0
    vfr = [i / 30 for i in range(9)] + [0.3 + i / 10 for i in range(1, 11)]  # 30 fps, then 10 fps
    assert clock_rate(vfr, 30.0) == pytest.approx(18 / 1.3)  # declared 30 (MKV): the average
    assert clock_rate([0.0], 30.0) == 30.0
    # constant 30 and 60 fps in whole milliseconds (Matroska): 33/34 and 16/17 ms intervals, whose
    # median is 1-4 % off; with drops too. Gave 29.999 fps (a user trial)
    for fps in (30.0, 60.0, 240.0):
        ms = [round(i * 1000 / fps) / 1000 for i in range(300) if i % 50 != 7]
        assert clock_rate(ms, fps) == fps, fps
        assert abs(1.0 / np.median(np.diff(ms)) - fps) > 0.01 * fps or fps == 240.0
    # a rate that drifts from the declared one is not taken for it: 29.97 fps declared 30, over 2000 frames
    drift = [i * 1001 / 30000 for i in range(2000)]
    assert clock_rate(drift, 30.0) == 30.0  # (the median rule: within 1 %)
    slower = [i / 29.0 for i in range(2000)]
    assert clock_rate(slower, 30.0) == pytest.approx(29.0)  # 3 % and off the grid
    # two or three frames on the grid across a hole: the nominal rate (was 0.3125 fps, unsplit: a break-it trial)
    assert clock_rate([0.5, 3.7], 5.0) == clock_rate([0.5, 0.7, 3.9], 5.0) == 5.0
    assert clock_rate([0.5, 3.8], 5.0) == pytest.approx(1 / 3.3)  # (off the grid: what the frames say)
    # the container's average counts a constant-rate file's drops and holes (29.33 fps for 1 of 45
    # frames dropped at 30 fps, 6.74 for a 1.5 s hole at 10 fps: every row interpolated, the drop
    # unseen: a biomechanics trial); the stream's base rate is the grid's, tried second
    dropped = [i / 30 for i in range(45) if i != 20]
    assert clock_rate(dropped, 30 * 44 / 45, 30.0) == 30.0 and clock_rate(dropped, 30 * 44 / 45) != 30.0
    hole = [i / 10 for i in range(15)] + [3.0 + i / 10 for i in range(15)]
    assert clock_rate(hole, 30 / 4.4, 10.0) == 10.0
    assert clock_rate(dropped, 30.0, 60.0) == 30.0  # (the average first, when the frames follow it)
    # a base rate they do not keep to: the average. A timestamp unit as the base (1000, 90000; a
    # review: 2-3 frames on its grid took it for the clock), 30 then 10 fps (one and three periods)
    assert clock_rate(vfr, 30.0, 90.0) == pytest.approx(18 / 1.3)
    assert clock_rate([0, 0.033, 0.1], 18.0, 1000.0) == clock_rate([0, 0.033, 0.1], 18.0) == pytest.approx(20.0)
    assert clock_rate([0, 0.033], 18.0, 1000.0) == pytest.approx(1 / 0.033)
    assert clock_rate([0, 1 / 30, 0.1], 18.0, 90000.0) == pytest.approx(20.0)
    # the base rate first (a break-it trial): 1 drop in 301 frames makes an average within the median
    # rule's 1 % (29.90); --every 2 past a drop (the frames after it one source period later); a clip
    # of three frames with its drop
    long = [i / 30 for i in range(302) if i != 150]
    assert clock_rate(long, 30 * 300 / 301, 30.0) == 30.0
    every2 = [k / 30 for k in [i for i in range(46) if i != 20][::2]]
    assert clock_rate(every2, 30 * 44 / 45 / 2, 30.0, step=2) == 15.0
    assert clock_rate([0.6, 0.6 + 1 / 30, 0.7], 29.35, 30.0) == 30.0
    mixed = [i / 30 for i in range(6)] + [5 / 30 + i / 10 for i in range(1, 6)]
    assert clock_rate(mixed, 10 / (mixed[-1] - mixed[0]), 30.0) == pytest.approx(10 / (mixed[-1] - mixed[0]))


@pytest.mark.parametrize("args, message", [
    (["--start", "5", "--end", "2"],
     "--end 2.0: must be a finite time in seconds after --start 5.0; pass a later --end, or leave it out for the end of the video"),
    (["--start", "-3"], "--start -3.0: must be a finite time in seconds >= 0; pass e.g. --start 0"),
])
def test_frame_selection_errors_name_the_command_options(tmp_path, base_args, args, message):
    """The CLI's spelling of --start/--end (the Python API's start=/end= before), before any work."""
    video = write_video(tmp_path / "v.mp4", 3)
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", "full", *args, *base_args)
    assert r.exit_code == 2 and message in text(r), text(r)
    assert not (tmp_path / "out").exists()


def test_frame_selection_errors_in_python_use_parameter_names(tmp_path):
    from wbcap.io.video_reader import open_frames

    video = write_video(tmp_path / "v.mp4", 3)
    with pytest.raises(InputError, match=r"^end=1: must be a finite time in seconds after start=2; pass a later end, or None"):
        open_frames(str(video), start=2, end=1)
    with pytest.raises(InputError, match=r"^every=0: must be a whole number >= 1; pass every=1 for all frames$"):
        open_frames(str(video), every=0)


def test_a_box_file_whose_boxes_are_all_outside_the_image_says_so(tmp_path, base_args):
    """Not only "check its keys" (the keys were right): the boxes must lie inside the frames."""
    video = write_video(tmp_path / "v.mp4", 2)
    # right of and below the frame, and (moved onto the border by upstream's sanitising before)
    # wholly left of and above it
    boxes = box_file(tmp_path, {"0": [[5000, 5000, 80, 200], [-500, 10, 50, 100]], "1": [[10, -300, 50, 100]]})
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{boxes}", *base_args)
    out = text(r)
    assert "skipped box(es) outside the 160x120 image" in out, out
    assert "-500,10,50,100" in out and "10,-300,50,100" in out, out
    assert (f"the box file {boxes} gives no box inside the image for the processed frames; check its keys, and that "
            "its boxes are (x, y, w, h) in these frames' pixels") in out, out


def test_a_start_past_the_end_names_the_options(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", 3)
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", "full", "--start", "100", *base_args)
    assert r.exit_code == 2 and "no frame in the selected range (--start 100 s to the end of the video; " in text(r), text(r)
    assert "check --start/--end" in text(r), text(r)


def write_images(folder: Path, n: int, w: int = 160, h: int = 120) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.png"), person_image(w, h, seed=i)[:, :, ::-1])
    return folder


def folder_state(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` with its bytes (hidden ones included)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def corrupt_inside(png: Path) -> None:
    """Damage a PNG's pixel data, keeping its header and its IEND end marker whole (what a check
    of headers and end markers cannot see)."""
    import zlib

    data = bytearray(png.read_bytes())
    i = data.index(b"IDAT")
    length = int.from_bytes(data[i - 4:i], "big")
    data[i + 40:i + 240] = bytes(200)
    data[i + 4 + length:i + 8 + length] = zlib.crc32(data[i:i + 4 + length]).to_bytes(4, "big")  # (a chunk whole)
    png.write_bytes(bytes(data))


def test_overwrite_refuses_a_bad_range_or_image_before_the_model_loads_and_keeps_the_previous_run(
        tmp_path, base_args, monkeypatch):
    """--overwrite with an input pass 1 would refuse (an empty range; an image of another size,
    a truncated one) is refused before the model loads, and the previous run stays whole (it was
    deleted, then the input refused)."""
    frames = write_images(tmp_path / "frames", 4)
    out = tmp_path / "out"
    assert invoke("run", frames, "-o", out, "--detector", "full", "--min-track", "1", *base_args).exit_code == 0
    before = folder_state(out)
    assert "params.jsonl" in before and ".wbcap/raw.jsonl" in before

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("wbcap.video_app._load_pipeline", no_model)
    r = invoke("run", frames, "-o", out, "--detector", "full", "--overwrite", "--start", "5", *base_args)
    assert r.exit_code == 2 and "no image in the selected range (--start 5 s to the end of the sequence" in text(r), text(r)
    assert folder_state(out) == before

    odd = write_images(tmp_path / "odd", 4)
    cv2.imwrite(str(odd / "0002.png"), person_image(80, 60, seed=2)[:, :, ::-1])
    r = invoke("run", odd, "-o", out, "--detector", "full", "--overwrite", *base_args)
    assert r.exit_code == 2, text(r)
    assert f"{odd / '0002.png'}: image is 80x60, the sequence's first image is 160x120" in text(r), text(r)
    assert folder_state(out) == before
    # outside the selected range it is never read: not refused (here: the model, stubbed, is reached)
    r = invoke("run", odd, "-o", out, "--detector", "full", "--overwrite", "--end", "0.05", *base_args)
    assert r.exit_code == 1 and "the model was loaded" in text(r), text(r)

    cut = write_images(tmp_path / "cut", 4)
    data = (cut / "0003.png").read_bytes()
    (cut / "0003.png").write_bytes(data[: len(data) // 2])
    r = invoke("run", cut, "-o", out, "--detector", "full", "--overwrite", *base_args)
    assert r.exit_code == 2 and f"{cut / '0003.png'}: image file is truncated or corrupt" in text(r), text(r)
    assert folder_state(out) == before


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("when", ["before its first frames",
                                  pytest.param("after its first frames", marks=pytest.mark.slow)])
def test_overwrite_keeps_the_previous_run_until_the_new_one_has_frames(tmp_path, base_args, monkeypatch, when):
    """--overwrite sets the previous run aside: a run stopped before its first frames are written
    (Ctrl-C here) puts it back whole; once they are, it is gone and the new frames are kept."""
    import wbcap.model.batching as batching

    video = write_video(tmp_path / "v.mp4", 4)
    out = tmp_path / "out"
    assert invoke("run", video, "-o", out, "--detector", "full", "--min-track", "1", *base_args).exit_code == 0
    before = folder_state(out)
    real = batching.regress_in_batches

    def stopped(*args, **kwargs):
        if when == "after its first frames":
            yield next(real(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(batching, "regress_in_batches", stopped)
    r = invoke("run", video, "-o", out, "--detector", "full", "--overwrite", "--batch-size", "1", "--every", "2",
               *base_args)
    assert r.exit_code == 130, text(r)
    if when == "before its first frames":
        assert folder_state(out) == before
        assert "--resume" not in text(r), text(r)
    else:
        assert sorted(p.name for p in out.iterdir()) == [".wbcap"]  # (the previous outputs gone, none set aside)
        raw = (out / ".wbcap" / "raw.jsonl").read_text().splitlines()
        assert [json.loads(line)["frame"] for line in raw] == [0]
        assert json.loads((out / ".wbcap" / "run.json").read_text())["every"] == 2
        assert f"the frames done so far are kept in {out}: add --resume" in text(r), text(r)


@pytest.mark.slow  # fast loop under 2 minutes
def test_a_bad_image_met_mid_run_says_how_to_start_over(tmp_path, base_args):
    """An image damaged where only decoding sees it stops the run after the frames before it;
    its line says to fix or remove it and start over with --overwrite (--resume cannot continue
    once the folder changed, and says so, naming --overwrite)."""
    frames = write_images(tmp_path / "frames", 6)
    corrupt_inside(frames / "0004.png")
    out = tmp_path / "out"
    args = ["--detector", "full", "--batch-size", "1", "--min-track", "1", *base_args]
    r = invoke("run", frames, "-o", out, *args)
    assert r.exit_code == 2, text(r)
    assert (f"{frames / '0004.png'}: not an image wbcap can decode; pass a JPEG, PNG, BMP, TIFF, WebP, GIF, AVIF or HEIC file (or "
            f"remove it); then run the same command with --overwrite to start over ({out} holds the frames done so "
            "far, but --resume cannot continue once the images change)") in text(r), text(r)
    assert len((out / ".wbcap" / "raw.jsonl").read_text().splitlines()) == 4
    (frames / "0004.png").unlink()
    r = invoke("run", frames, "-o", out, "--resume", *args)
    assert r.exit_code == 2, text(r)
    assert (f"{out}: holds a run with different settings (its images (which, their sizes or modification times)); its "
            "source "
            "changed since that run began, "
            "and a run continues only from the source it began with; use --overwrite to start over") in text(r)
    r = invoke("run", frames, "-o", out, "--overwrite", *args)
    assert r.exit_code == 0 and "5 frames" in r.stdout, text(r)


def test_a_broken_link_in_place_of_a_frame_is_refused_before_the_model(tmp_path, base_args, monkeypatch):
    """A dangling link among a sequence's images was left out without a word, and every later
    frame took the time of the one before (a break-it trial): one line naming the link, before the
    model loads, nothing written, as for an empty image in that place."""
    monkeypatch.setattr("wbcap.video_app._load_pipeline", lambda *a, **k: pytest.fail("the model loaded"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (0, 2, 3):
        cv2.imwrite(str(frames / f"{i:04d}.png"), person_image(64, 48, seed=i)[:, :, ::-1])
    (frames / "0001.png").symlink_to(tmp_path / "moved" / "0001.png")
    out = tmp_path / "out"
    # read, or outside the frames read (a review: that one stopped the run after the model loaded)
    for extra in ((), ("--max-frames", "1"), ("--every", "2"), ("--start", "0.05")):
        r = invoke("run", frames, "-o", out, "--detector", "full", *extra, *base_args)
        assert r.exit_code == 2, text(r)
        assert text(r) == (f"error: {frames / '0001.png'}: is a symbolic link to {tmp_path / 'moved' / '0001.png'}, "
                           "which leads to no file (the link is broken, or a loop of links); fix or remove the link"), \
            (extra, text(r))
        assert not out.exists()
    # a named pipe in a frame's place, read or not: refused, where checking it waited forever (a break-it trial)
    (frames / "0001.png").unlink()
    os.mkfifo(frames / "0001.png")
    for extra in ((), ("--max-frames", "1")):
        r = invoke("run", frames, "-o", out, "--detector", "full", *extra, *base_args)
        assert r.exit_code == 2 and text(r) == (f"error: {frames / '0001.png'}: is not a regular file (a pipe or a "
                                                "device); save the image to a file and pass that"), (extra, text(r))
        assert not out.exists()


@pytest.mark.parametrize("size", [(1, 1), (300, 1)])
def test_a_video_or_image_sequence_too_small_for_a_person_box_is_refused_before_the_model(
        tmp_path, base_args, monkeypatch, size):
    """wbcap image's rule (a side of 1 pixel holds no person box) for videos and image folders:
    one line naming the file and its size, before the model loads, nothing written."""
    import av

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("wbcap.video_app._load_pipeline", no_model)
    w, h = size
    video = tmp_path / "tiny.mkv"
    with av.open(str(video), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        for i in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    folder = tmp_path / "tiny"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((h, w, 3), 40 * i, np.uint8))
    for source, what, fix in [(video, "video's picture", "use a larger video"),
                              (folder, "sequence's first image", "use larger images")]:
        out = tmp_path / f"out_{source.name}"
        r = invoke("run", source, "-o", out, "--detector", "full", *base_args)
        assert r.exit_code == 2, text(r)
        assert text(r) == (f"error: {source}: the {what} is {w}x{h} pixels, too small to hold a person box (it needs "
                           f"at least 2 pixels a side); {fix}"), text(r)
        assert not out.exists()


@pytest.mark.slow  # fast loop under 2 minutes
def test_a_refused_resume_names_each_setting_with_both_values(tmp_path, base_args, monkeypatch):
    """A resume that forgot `--precision fast` was told only "different settings (precision);
    use --overwrite", whose fix throws the work away: each setting is named as its option with
    the run's value and this one's (a group's, such as the model's, one by one). A run.json
    value of another kind than the setting's (edited by hand), or a damaged file record (which
    skipped the check of the files), is called damaged, naming the file."""
    video = write_video(tmp_path / "v.mp4", 2)
    out, run_json = tmp_path / "out", tmp_path / "out" / ".wbcap" / "run.json"
    args = ["-o", out, "--detector", "full", "--export", "none", "--no-render", "--min-track", "1", *base_args]
    assert invoke("run", video, "--precision", "fast", "--every", "1", *args).exit_code == 0
    r = invoke("run", video, "--resume", "--every", "2", *args)
    assert r.exit_code == 2 and r.stderr == (
        f'error: {out}: holds a run with different settings (--every: 1 in the run, 2 now; --precision: "fast" in '
        'the run, "exact" now); give the run\'s own settings to continue it, or use --overwrite to start over\n'), r.output
    assert invoke("run", video, "--resume", "--precision", "fast", *args).exit_code == 0
    r = invoke("run", video, "--resume", "--precision", "fast", "--fix-left-hand-flip", *args)  # (in a group)
    assert r.exit_code == 2 and "different settings (--fix-left-hand-flip: false in the run, true now); " in r.stderr, (
        r.output)
    # another model folder and another setting: both named in the first refusal (the model folder's
    # is only known once the model is read, so that one comes after it)
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    other = write_synthetic_smplx(tmp_path / "body2")
    moved = [str(other) if i and args[i - 1] == "--body-models" else a for i, a in enumerate(args)]
    r = invoke("run", video, "--resume", "--every", "2", "--precision", "fast", *moved)
    assert r.exit_code == 2 and "--body-models: " in r.stderr and "--every: 1 in the run, 2 now" in r.stderr, r.output
    # ... all before the model loads (a CPU without bfloat16 said so first; an unmeasured machine
    # measured its inference form for half a minute before refusing)
    import wbcap.video_app

    def no_model(*a, **k):
        raise AssertionError("the model was loaded for a resume refused by its settings")

    monkeypatch.setattr(wbcap.video_app, "_load_pipeline", no_model)
    r = invoke("run", video, "--resume", "--every", "2", "--precision", "fast", *args)
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {out}: holds a run with different settings (--every: 1"), (
        r.output)
    # another wbcap writing the folder: said as that, not as other settings to --overwrite
    from wbcap.io.run_folder import hold_folder

    with hold_folder(out):
        r = invoke("run", video, "--resume", "--every", "2", "--precision", "fast", *args)
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {out} is in use by another wbcap process"), r.output
    good = json.loads(run_json.read_text())
    for key, bad, said in (("every", "x", '"x", where wbcap writes a number'),
                           ("file_identity", "x", '"x", where wbcap writes a group of file records'),
                           ("body_model_file", 3, "3, where wbcap writes a file path")):
        run_json.write_text(json.dumps(dict(good, **{key: bad})))
        r = invoke("run", video, "--resume", "--precision", "fast", *args)
        assert r.exit_code == 2 and r.stderr == (f"error: {run_json}: a damaged {key} ({said}); start its run over "
                                                 "with --overwrite\n"), r.output
