"""End-to-end `wbcap run` on generated videos (and vtest.avi when present): outputs, tracking
through the CLI, resume, refusing a used output folder, bad inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video


def two_walkers(n: int = 8, w: int = 320, h: int = 240) -> tuple[list[np.ndarray], dict[str, list]]:
    """Frames with two figures walking towards each other, and their boxes per frame index."""
    base = person_image(w // 2, h, seed=5)
    frames, boxes = [], {}
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        xs = (10 + 6 * i, w // 2 - 10 - 6 * i)
        for x in xs:
            img[:, x : x + w // 2] = np.maximum(img[:, x : x + w // 2], base[:, : w - x][:, : w // 2])
        frames.append(img)
        boxes[str(i)] = [[x + w // 8, 20, w // 4, h - 40] for x in xs]
    return frames, boxes


def decode_info(path: Path) -> tuple[int, int, int, Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, s.codec_context.width, s.codec_context.height, s.average_rate


@pytest.fixture()
def base_args(micro_ckpt, body_dir):
    return ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def settled(run_json) -> dict:
    """A run.json (its path, or read) without the last command that ran it (each resume records its own)."""
    from wbcap.io.run_folder import COMMAND

    record = json.loads(run_json.read_text()) if isinstance(run_json, Path) else dict(run_json)
    return {k: v for k, v in record.items() if k != COMMAND}


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_run_generated_video_all_outputs(tmp_path, base_args, monkeypatch):
    frames, boxes = two_walkers(6)
    video = write_video(tmp_path / "walk.mp4", frames)
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", f"boxes:{box_file}", "--obj", "--min-track", "2", *base_args)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"6 frames, 2 track(s), 12 person-frames -> {out}\n"  # the summary on stdout
    assert decode_info(out / "render.mp4") == (6, 320, 240, Fraction(10))
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert len(lines) == 12  # 2 people x 6 frames
    assert {x["track"] for x in lines} == {0, 1}
    # each line's box score is its raw record's (an HCI trial filtered boxes by score: only raw.jsonl had it)
    raw = {r["frame"]: r["people"] for r in map(json.loads, (out / ".wbcap" / "raw.jsonl").read_text().splitlines())}
    for x in lines:
        (person,) = [p for p in raw[x["frame"]] if np.allclose(p["box"], x["box"], atol=1e-3)]
        assert list(x)[:5] == ["frame", "time", "track", "box", "score"] and x["score"] == person["score"] == 1.0
    # a box file's own scores, written as given (float32 made 0.35 0.3499999940395355: a review)
    (tmp_path / "scored.json").write_text(json.dumps({k: [{"bbox": b, "score": 0.35} for b in v] for k, v in boxes.items()}))
    # where a person watches (stderr a terminal), the command that shows the results, on stderr (a new
    # user's trial did not find `wbcap view`); the result line alone on stdout
    monkeypatch.setattr("wbcap.cli.common.stderr_is_terminal", lambda: True)
    r = run("run", video, "-o", tmp_path / "scored", "--detector", f"boxes:{tmp_path / 'scored.json'}", "--min-track",
            "2", "--no-render", "--export", "none", *base_args)
    assert r.exit_code == 0, r.output
    assert r.stdout == f"6 frames, 2 track(s), 12 person-frames -> {tmp_path / 'scored'}\n"
    assert r.stderr.splitlines()[-1] == f"next: wbcap view {tmp_path / 'scored'}   (the results in a web browser)", r.stderr
    assert "wbcap view" not in run("-q", "run", video, "-o", tmp_path / "scored", "--detector",
                                   f"boxes:{tmp_path / 'scored.json'}", "--min-track", "2", "--no-render", "--export",
                                   "none", "--overwrite", *base_args).output
    assert {json.loads(x)["score"] for x in (tmp_path / "scored" / "params.jsonl").read_text().splitlines()} == {0.35}
    # the left walker keeps id 0 in every frame (its box x grows)
    left = [x for x in lines if x["track"] == 0]
    assert [x["frame"] for x in left] == list(range(6))
    assert all(b["box"][0] < a["box"][0] for a, b in zip(left[1:], left[:-1]))
    for tid in (0, 1):
        d = np.load(out / f"track_{tid}.npz")
        assert d["poses"].shape == (6, 165) and d["trans"].shape == (6, 3) and d["expression"].shape == (6, 10)
        assert d["betas"].shape == (10,) and str(d["gender"]) == "neutral" and float(d["mocap_framerate"]) == 10.0
        assert np.isfinite(d["poses"]).all() and np.isfinite(d["trans"]).all()
        assert len(list((out / "meshes" / str(tid)).glob("*.obj"))) == 6
        # the video camera's intrinsics, so a researcher projects without meta.json (a user trial)
        camera = json.loads((out / "meta.json").read_text())["camera"]
        assert "source_ended_early" not in json.loads((out / "meta.json").read_text())  # (a whole file)
        assert d["camera_focal"].tolist() == camera["focal"] == [400.0, 400.0]  # sqrt(320^2 + 240^2)
        assert d["camera_princpt"].tolist() == camera["princpt"] and d["camera_image_size"].tolist() == [320, 240]
    assert not list(out.rglob("*.tmp*")) and not list(out.rglob(".*staging*"))
    # every tracking setting, defaults included, and the versions (what a methods section reports:
    # an HCI researcher's trial found them only in the words typed)
    import torch

    from wbcap.track.iou_tracker import TrackerConfig
    from wbcap.versions import wbcap_version

    meta = json.loads((tmp_path / "scored" / "meta.json").read_text())
    assert meta["tracker"] == {**dataclasses.asdict(TrackerConfig()), "min_length": 2}
    assert meta["versions"]["wbcap"] == wbcap_version() and meta["versions"]["torch"] == torch.__version__


@pytest.mark.slow  # real video end to end (15 frames, up to 3 people a frame)
def test_run_vtest_first_frames(tmp_path, shared_dir, base_args):
    video = shared_dir / "media" / "vtest.avi"
    if not video.is_file():
        pytest.skip("vtest.avi absent")
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--max-frames", "15", "--detector", "hog", "--max-people", "3", *base_args)
    assert r.exit_code == 0, r.output
    assert decode_info(out / "render.mp4") == (15, 768, 576, Fraction(10))
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert lines, "no person tracked in vtest.avi"
    per_track = {}
    for x in lines:
        per_track.setdefault(x["track"], []).append(x["frame"])
    for tid, fr in per_track.items():
        d = np.load(out / f"track_{tid}.npz")
        # one row per frame of the 10 fps clock from the first to the last sighting; misses filled
        assert d["poses"].shape[0] == d["trans"].shape[0] == d["valid"].shape[0] == fr[-1] - fr[0] + 1
        assert list(d["frame_indices"][d["valid"]]) == fr
        assert (d["frame_indices"][~d["valid"]] == -1).all()
        np.testing.assert_allclose(np.diff(d["times"]), 0.1, atol=1e-6)


@pytest.mark.slow  # (2-3 s end to end: the fast loop kept under 2 minutes)
def test_resume_equals_uninterrupted(tmp_path, micro_ckpt_raw, body_dir, monkeypatch):
    """A run killed part way and resumed gives the uninterrupted run's results; so does a run
    that decodes and crops in threads beside the network (where cores are spare, as on a GPU:
    wbcap.detect.thread.crop_workers), with the same raw records, byte for byte."""
    from wbcap.detect import thread

    frames, boxes = two_walkers(6)
    video = write_video(tmp_path / "walk.mp4", frames)
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    # heads as drawn: every crop gives other numbers, so a frame redone from the wrong crop shows
    args = ["--detector", f"boxes:{box_file}", "--no-render", "--checkpoint", micro_ckpt_raw, "--body-models", body_dir,
            "--device", "cpu"]
    full = tmp_path / "full"
    assert run("run", video, "-o", full, *args).exit_code == 0
    # simulate a kill after 3 frames: the raw file holds 3 complete lines and a torn one, no outputs yet
    part = tmp_path / "part"
    shutil.copytree(full, part)
    raw = (part / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True)
    (part / ".wbcap" / "raw.jsonl").write_text("".join(raw[:3]) + raw[3][: len(raw[3]) // 2])
    for p in list(part.glob("track_*.npz")) + [part / "params.jsonl"]:
        p.unlink()
    r = run("run", video, "-o", part, "--resume", *args)
    assert r.exit_code == 0, r.output
    resumed = (part / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True)
    assert resumed[:3] == raw[:3] and len(resumed) == 6  # done frames kept, the rest redone
    # run.json records the last command that ran it (for the hint to finish a run)
    command = json.loads((part / ".wbcap" / "run.json").read_text())["command"]
    assert command == {"argv": ["run", str(video), "-o", str(part), "--resume", *map(str, args)], "cwd": os.getcwd(),
                       "out": str(part.resolve())}
    a = [json.loads(x) for x in (full / "params.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "params.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 12
    # the numbers depend on the crop: no other person-frame has frame 0's pose
    assert min(np.abs(np.subtract(x["body_pose"], a[0]["body_pose"])).max() for x in a[1:]) > 1e-4
    for x, y in zip(a, b):
        assert (x["frame"], x["track"]) == (y["frame"], y["track"])
        np.testing.assert_allclose(x["body_pose"] + x["cam_trans"], y["body_pose"] + y["cam_trans"], atol=1e-4)
    for tid in (0, 1):
        np.testing.assert_allclose(np.load(full / f"track_{tid}.npz")["poses"], np.load(part / f"track_{tid}.npz")["poses"], atol=1e-4)
    used = []
    real = thread.crop_workers
    monkeypatch.setattr(thread, "overlaps_network", lambda device: True)
    monkeypatch.setattr(thread, "crop_workers", lambda device: used.append(real(device)) or 3)
    assert run("run", video, "-o", tmp_path / "threads", *args, "--export", "none").exit_code == 0
    assert len(used) == 1  # (asked once, with decoding beside the network)
    assert (tmp_path / "threads" / ".wbcap" / "raw.jsonl").read_text() == "".join(raw)


@pytest.mark.slow  # fast loop under 2 minutes
def test_resume_accepts_another_spelling_of_the_same_files(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """--body-models and --checkpoint given relative are recorded absolute in run.json (`wbcap
    export`/`view` reuse the body models only when absolute), and --resume with another spelling
    of the same folder is accepted: it was refused as "different settings (body)". A run recorded
    before (the paths as typed) still resumes, with the same or the absolute spelling; another
    folder is still refused."""
    import os

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out, other = tmp_path / "out", tmp_path / "other_models"
    shutil.copytree(body_dir, other)
    monkeypatch.chdir(tmp_path)
    rel = ["--checkpoint", os.path.relpath(micro_ckpt), "--body-models", os.path.relpath(body_dir)]
    absolute = ["--checkpoint", str(micro_ckpt), "--body-models", f"{body_dir}/"]
    args = ["--detector", "full", "--no-render", "--export", "none", "--min-track", "1", "--device", "cpu"]
    assert run("run", video, "-o", out, *rel, *args).exit_code == 0
    run_json = out / ".wbcap" / "run.json"
    recorded = json.loads(run_json.read_text())
    assert (recorded["body"]["path"], recorded["checkpoint"]) == (str(body_dir), str(micro_ckpt)), recorded
    r = run("run", video, "-o", out, "--resume", *absolute, *args)
    assert r.exit_code == 0, r.output
    older = dict(recorded, checkpoint=rel[1], body=dict(recorded["body"], path=rel[3]))  # as typed
    for spelling in (absolute, rel):
        run_json.write_text(json.dumps(older))
        r = run("run", video, "-o", out, "--resume", *spelling, *args)
        assert r.exit_code == 0, r.output
        assert settled(run_json) == settled(recorded)  # rewritten absolute, for export and view
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *rel[:2], "--body-models", str(other),
                                 *args])
    assert r.exit_code == 2 and "different settings (--body-models: " in r.output, r.output


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_resume_finds_or_names_the_body_model_the_run_was_made_with(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """run.json records the SMPL-X file the run used (body_model_file), also one found through
    $WBCAP_BODY_MODELS, beside the settings. A --resume without --body-models of a run made with
    it, where the usual places hold no model, names the recorded folder and the flag (it was the
    bare not-found line); the same file found through $WBCAP_BODY_MODELS, or the recorded file
    given as --body-models, resumes; a run.json of before the record resumes and gains it."""
    from wbcap.paths import ENV_BODY_MODELS

    BODY_MODEL_FILE = "body_model_file"  # (wbcap.io.run_folder.BODY_MODEL_FILE: run.json's key, a file format)
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "out"
    args = ["--detector", "full", "--no-render", "--export", "none", "--min-track", "1", "--device", "cpu",
            "--checkpoint", str(micro_ckpt)]
    model_file = str(body_dir / "smplx" / "SMPLX_NEUTRAL.npz")
    assert run("run", video, "-o", out, "--body-models", body_dir, *args).exit_code == 0
    run_json = out / ".wbcap" / "run.json"
    recorded = json.loads(run_json.read_text())
    assert recorded[BODY_MODEL_FILE] == model_file and recorded["body"]["path"] == str(body_dir), recorded
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *args])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and f"was made with the SMPL-X model {body_dir}" in lines[0], r.output
    assert f"resume with --body-models {body_dir}" in lines[0], r.output
    monkeypatch.setenv(ENV_BODY_MODELS, str(body_dir))  # the same file found another way
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    assert settled(run_json) == settled(dict(recorded, body=dict(recorded["body"], path=None))), r.output
    monkeypatch.delenv(ENV_BODY_MODELS)
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *args])
    assert r.exit_code == 2 and f"resume with --body-models {model_file}" in r.output, r.output
    assert run("run", video, "-o", out, "--resume", "--body-models", model_file, *args).exit_code == 0
    older = {k: v for k, v in recorded.items() if k != BODY_MODEL_FILE}  # a run.json of before the record
    run_json.write_text(json.dumps(older))
    r = run("run", video, "-o", out, "--resume", "--body-models", body_dir, *args)
    assert r.exit_code == 0, r.output
    assert settled(run_json) == settled(recorded)


def _max_people_run(tmp_path, base_args, frames, boxes) -> tuple[Path, Path, list[str]]:
    """`wbcap run --max-people 1` of ``frames`` with the box file ``boxes``: (video, out, args)."""
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    args = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--max-people", "1", "--min-track", "1", "--no-render",
            "--export", "none", *base_args]
    out = tmp_path / "out"
    r = run("run", video, "-o", out, *args)
    assert r.exit_code == 0, r.output
    return video, out, args


def raw_boxes(out: Path) -> list[list[list[float]]]:
    """The boxes of each record of a run's raw.jsonl."""
    return [[p["box"] for p in json.loads(x)["people"]] for x in (out / ".wbcap" / "raw.jsonl").read_text().splitlines()]


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_max_people_keeps_following_the_tracked_person(tmp_path, base_args):
    """--max-people 1: walker A is alone for two frames, then B comes with a box ranked before
    A's (a box file gives every box score 1, so its order ranks them). The person already
    tracked stays the one regressed (one track, every frame, A's boxes); keeping the top-ranked
    box of each frame made two tracks of two frames' and four frames' length. A resumed run
    (killed after frame 3) continues with A too."""
    frames, walkers = two_walkers(6)
    boxes = {str(i): ([walkers[str(i)][1], walkers[str(i)][0]] if i >= 2 else [walkers[str(i)][0]]) for i in range(6)}
    video, out, args = _max_people_run(tmp_path, base_args, frames, boxes)
    rows = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert [(x["frame"], x["track"]) for x in rows] == [(i, 0) for i in range(6)]
    assert raw_boxes(out) == [[walkers[str(i)][0]] for i in range(6)]
    # killed after frame 3: the resumed run goes on with A (its records fed to the choice first)
    lines = (out / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True)
    (out / ".wbcap" / "raw.jsonl").write_text("".join(lines[:4]))
    (out / "params.jsonl").unlink()
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    assert (out / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True) == lines


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_resumed_max_people_run_follows_whom_the_whole_run_follows(tmp_path, base_args):
    """--max-people 1: A is followed and leaves after frame 7; B (seen since frame 1) and C (higher
    score, since frame 5) are tracked unseen, and when A's track ends B, tracked longer, takes the
    place. A run stopped after frame 6 and resumed fed its choice only the kept boxes, so B and C
    were new there and C took it (a review); the records now keep every detection of the frames
    where the limit left some out, and the resumed run's records are the whole run's."""
    frames, _ = two_walkers(17)
    a, b, c = [10.0, 10.0, 40.0, 90.0], [120.0, 10.0, 40.0, 90.0], [230.0, 10.0, 40.0, 90.0]
    boxes = {str(f): ([{"bbox": a, "score": 0.95}] if f < 8 else []) + ([{"bbox": b, "score": 0.6}] if f >= 1 else [])
             + ([{"bbox": c, "score": 0.9}] if f >= 5 else []) for f in range(17)}
    video, out, args = _max_people_run(tmp_path, base_args, frames, boxes)
    whole = (out / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True)
    assert raw_boxes(out) == [[a]] * 8 + [[]] * 6 + [[b]] * 3  # (A's place kept until its track ends)
    assert json.loads(whole[6])["detected"] == [[*a, 0.95], [*c, 0.9], [*b, 0.6]]
    (out / ".wbcap" / "raw.jsonl").write_text("".join(whole[:7]))
    (out / "params.jsonl").unlink()
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    assert (out / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True) == whole


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_max_people_spends_no_place_on_a_box_outside_and_resume_keeps_its_tracker_settings(tmp_path, base_args):
    """A box wholly outside the frame, ranked first, and a sliver at its right edge (a box starting
    in its last pixel column, which the crop skips too: it took the place, a review) take no
    --max-people place (the pipeline skips them): the person inside is regressed. The tracker
    settings that chose pass 1's boxes are part of the run's settings: --resume with another
    --max-age is refused."""
    frames, walkers = two_walkers(3)
    boxes = {str(i): [[-500, 10, 50, 100], [319.5, 10, 50, 100], walkers[str(i)][0]] for i in range(3)}
    video, out, args = _max_people_run(tmp_path, base_args, frames, boxes)
    assert raw_boxes(out) == [[walkers[str(i)][0]] for i in range(3)]
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", "--max-age", "9", *args])
    assert r.exit_code == 2 and "different settings (--max-age: 5 in the run, 9 now)" in r.output, r.output
    for flags, said in ((["--no-appearance"], "--no-appearance: not set in the run, true now"),
                        (["--reid-age", "12"], "--reid-age: not set in the run, 12 now")):
        r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *flags, *args])
        assert r.exit_code == 2 and said in r.output, r.output
    # without --max-people: that, not the tracker settings recorded with it (which nobody changed)
    i = args.index("--max-people")
    no_limit = args[:i] + args[i + 2:]
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *no_limit])
    assert r.exit_code == 2 and "different settings (--max-people: 1 in the run, not set now); give" in r.output, r.output


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_overwrite_keeps_the_previous_run_when_the_detector_is_refused(tmp_path, base_args):
    """A bad detector model is found before --overwrite deletes anything (it emptied the folder)."""
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "out"
    assert run("run", video, "-o", out, "--detector", "full", "--no-render", "--min-track", "1", *base_args).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (tmp_path / "bogus.onnx").write_bytes(b"not a model")
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--detector", f"yolox:{tmp_path / 'bogus.onnx'}",
                                 "--no-render", "--overwrite", *base_args])
    assert r.exit_code == 2 and "bogus.onnx" in r.output, r.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_taken_output_folder_is_refused_before_the_model_loads(tmp_path, base_args, monkeypatch):
    """Forgetting --overwrite (the commonest mistake) is said before the model and the detector
    load, which took seconds (and a measurement of the CPU strategy on a first run); a folder
    another process writes is refused as that, and a run an --overwrite set aside is still put
    back by the next run."""
    import wbcap.video_app
    from wbcap.io.run_folder import PREVIOUS_DIR, hold_folder

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "out"
    assert run("run", video, "-o", out, "--detector", "full", "--no-render", "--min-track", "1", *base_args).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(wbcap.video_app, "_load_pipeline", no_load)
    args = ["run", str(video), "-o", str(out), "--detector", "full", "--no-render", *base_args]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and f"{out} holds a previous wbcap run" in r.output and "--overwrite" in r.output, r.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with hold_folder(out):  # another process writing it: that is the answer, not advice to --overwrite it
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "in use by another wbcap process" in r.output and "--overwrite" not in r.output, r.output
    # A run an --overwrite killed by SIGKILL set aside: the next run on the folder puts it back, then refuses
    aside = out / PREVIOUS_DIR
    aside.mkdir()
    for p in list(out.iterdir()):
        if p != aside:
            p.rename(aside / p.name)
    (out / ".wbcap").mkdir()
    (out / ".wbcap" / "raw.jsonl").write_text("")
    r = CliRunner().invoke(cli, args)  # (before the model loads too: it loaded first, a user trial)
    assert r.exit_code == 2 and f"{out} holds a previous wbcap run" in r.output, r.output
    assert "put back the previous run that an interrupted --overwrite had set aside" in r.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_folder_another_run_is_writing_is_refused_and_mixed_records_are_named(tmp_path, base_args):
    """Two runs on one folder: the second is refused while the first holds it (before, both
    appended to raw.jsonl and every later --resume failed); records that are not one run's
    (frames out of order) get one line naming the file and --overwrite, not a traceback."""
    from wbcap.io.run_folder import hold_folder

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    out = tmp_path / "out"
    args = ["--detector", "full", "--no-render", "--min-track", "1", *base_args]
    with hold_folder(out):  # (flock is per open file: a second open in this process is another holder)
        r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), *args])
        assert r.exit_code == 2 and "in use by another wbcap process" in r.output, r.output
        assert list(out.iterdir()) == []
    assert run("run", video, "-o", out, *args).exit_code == 0  # released with the block
    raw = out / ".wbcap" / "raw.jsonl"
    lines = raw.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    raw.write_text(lines[0] + lines[2] + lines[1])
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *args])
    assert r.exit_code == 2 and "raw.jsonl: frame 1 follows frame 2" in r.output and "--overwrite" in r.output, r.output
    assert "Traceback" not in r.output


@pytest.mark.slow  # a resume in a fresh shell (test_run_folder checks the record and the hint in the fast loop)
def test_the_finish_hint_names_the_variables_that_found_the_files_and_works_in_a_shell_without_them(
        tmp_path, micro_ckpt, body_dir, monkeypatch):
    """A run that found its checkpoint and SMPL-X model through WBCAP_WEIGHTS / WBCAP_BODY_MODELS
    was told to be finished with `wbcap run ... --resume`, which a shell without them refused (a
    leftover of earlier notes). The hint now sets them, and copied into a shell without them it
    finishes the run; a variable that found nothing is not named."""
    import shlex
    import subprocess
    import sys

    from wbcap.io.run_folder import COMMAND

    write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "my out"
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))  # (holds neither file: not named)
    monkeypatch.chdir(tmp_path)
    r = run("run", "v.mp4", "-o", out, "--detector", "full", "--no-render", "--min-track", "1", "--device", "cpu")
    assert r.exit_code == 0, r.output
    run_json = out / ".wbcap" / "run.json"
    assert json.loads(run_json.read_text())[COMMAND]["env"] == {"WBCAP_WEIGHTS": str(micro_ckpt),
                                                                "WBCAP_BODY_MODELS": str(body_dir)}
    (out / "params.jsonl").unlink()  # (as a run stopped in pass 1 leaves it)
    monkeypatch.chdir(body_dir)
    r = run("export", out)
    assert r.exit_code == 2
    (hint,) = re.findall(r"finish it with `(.*)`", r.output)
    assert hint == (f"cd {shlex.quote(str(tmp_path))} && WBCAP_WEIGHTS={shlex.quote(str(micro_ckpt))} "
                    f"WBCAP_BODY_MODELS={shlex.quote(str(body_dir))} wbcap run v.mp4 -o {shlex.quote(str(out))} "
                    f"--detector full --no-render --min-track 1 --device cpu --resume"), hint
    env = {k: v for k, v in os.environ.items() if k not in ("WBCAP_WEIGHTS", "WBCAP_BODY_MODELS")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-c", hint], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len((out / "params.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow  # a run in a process with a terminal
def test_on_a_terminal_log_lines_print_above_the_progress_bars_and_render_counts_to_its_total(tmp_path, base_args):
    """On a terminal the first log line of pass 2 began where the finished bar ended (the bar was
    drawn on a console of its own, which knew nothing of the log lines), and the render bar
    counted N/? although pass 2 knows its frames (a user trial). stderr on a pseudo-terminal."""
    import pty
    import subprocess
    import sys

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    primary, secondary = pty.openpty()
    code = "import sys; from wbcap.cli import main; main(sys.argv[1:])"
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", code, "run", str(video), "-o", str(tmp_path / "out"), "--detector",
                             "full", "--min-track", "1", "--export", "npz", *map(str, base_args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # (EIO: the process closed the terminal)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(120) == 0, proc.stdout.read()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    lines = [ln for ln in re.split(r"[\r\n]", text) if ln.strip()]
    bars = [ln for ln in lines if "━" in ln]
    logs = [ln for ln in lines if "wrote" in ln]
    assert len(logs) == 1 and logs[0].startswith("INFO") and "track_0.npz" in logs[0], lines
    assert bars and not any("INFO" in ln for ln in bars), bars
    assert [ln for ln in bars if ln.startswith("render")][-1].split()[2] == "3/3", bars


def test_a_resume_with_nothing_to_resume_says_it_starts_the_run(tmp_path, base_args):
    """A user trial: `--resume` into a mistyped folder began the whole video without a word. It
    runs (a script's `--resume` until done starts so), saying so; a finished run's does not."""
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "typo"
    args = ["--detector", "full", "--no-render", "--min-track", "1", *base_args]
    said = f"{out}: no frames of an earlier run to resume there; --resume starts the run from its first frame"
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0 and said in " ".join(r.output.split()), r.output
    assert len((out / "params.jsonl").read_text().splitlines()) == 2
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0 and "no frames of an earlier run" not in r.output, r.output
    # nor after an --overwrite killed before its first frame, which set the run aside: the resume puts
    # it back and continues it (the warning came first, then "put back", an HCI researcher's trial)
    import json

    from wbcap.io.run_folder import PREVIOUS_DIR, prepare_output

    params = (out / "params.jsonl").read_bytes()
    prepare_output(out, json.loads((out / ".wbcap" / "run.json").read_text()), resume=False, overwrite=True)
    assert (out / PREVIOUS_DIR).is_dir() and not (out / "params.jsonl").exists()
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0 and "no frames of an earlier run" not in r.output, r.output
    assert "put back the previous run" in r.output and (out / "params.jsonl").read_bytes() == params, r.output


@pytest.mark.slow  # (fast loop under 2 minutes; the full suite runs it)
def test_a_resume_of_a_finished_pass_1_redoes_pass_2_without_the_network(tmp_path, base_args, monkeypatch):
    """A README audit: `--resume --smooth ...` built the network (8 s, 1.2 GB; a machine's first
    CPU measurement) to regress no frame. A finished pass 1 is recorded (`.wbcap/pass1.json`), and
    its resume loads the SMPL-X layer alone: the same files as a fresh run with those settings. A
    record damaged since (its size kept) is dropped and its frames regressed again, as any resume."""
    from wbcap.pipeline import Pipeline

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(4)])
    args = ["--detector", "full", "--no-render", "--min-track", "1", "--export", "npz", *base_args]
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert run("run", video, "-o", out, *args).exit_code == 0
    assert json.loads((out / ".wbcap" / "pass1.json").read_text())["records"] == 4
    assert run("run", video, "-o", fresh, "--smooth", "gaussian", *args).exit_code == 0
    build = Pipeline.from_config
    monkeypatch.setattr(Pipeline, "from_config", lambda *a, **k: pytest.fail("the network was built"))
    run_json = out / ".wbcap" / "run.json"  # (a detector found through WBCAP_HOME, as the run recorded it)
    record = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({**record, "command": {**record["command"], "env": {"WBCAP_HOME": "/h"}}}))
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", "--smooth", "gaussian", *map(str, args)])
    assert r.exit_code == 0, r.output
    assert f"{out}: pass 1 finished earlier (4 frames); --resume redoes pass 2 only" in " ".join(r.output.split())
    assert (f"{out}: this pass smooths gaussian (sigma 2), the earlier one oneeuro (min_cutoff 2, beta 0.5): "
            "--resume takes the smoothing from its own command (the defaults where it gives "
            "none); to keep the earlier one, give --smooth oneeuro") in " ".join(r.output.split()), r.output
    command = json.loads(run_json.read_text())["command"]  # (the resume's words, the variable kept: a review)
    assert "--resume" in command["argv"] and command["env"] == {"WBCAP_HOME": "/h"}, command
    assert (out / "params.jsonl").read_text() == (fresh / "params.jsonl").read_text()
    with np.load(out / "track_0.npz") as a, np.load(fresh / "track_0.npz") as b:
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    raw = out / ".wbcap" / "raw.jsonl"
    lines = raw.read_bytes().splitlines(keepends=True)
    lines[2] = b"x" + lines[2][1:]  # (not JSON, the file's size kept)
    raw.write_bytes(b"".join(lines))
    monkeypatch.setattr(Pipeline, "from_config", build)
    r = run("run", video, "-o", out, "--resume", "--smooth", "gaussian", *args)
    assert r.exit_code == 0 and "line 3 is damaged (not JSON" in " ".join(r.output.split()), r.output
    assert "redoes pass 2 only" not in r.output and "this pass smooths" not in r.output  # (the same smoothing)
    assert (out / "params.jsonl").read_text() == (fresh / "params.jsonl").read_text()
    r = run("run", video, "-o", out, "--resume", *args)  # (the smoothing not given: the default, said; a trial)
    assert r.exit_code == 0 and (f"{out}: this pass smooths oneeuro (min_cutoff 2, beta 0.5), the earlier one gaussian "
                                 "(sigma 2)") in " ".join(r.output.split()), r.output


def test_a_resume_holds_its_folder_while_the_model_loads(tmp_path, base_args, monkeypatch):
    """`wbcap export` of a run whose --resume was loading its model said "no such file yet
    (interrupted?); finish it with `wbcap run ... --resume`", the command already running (found
    by a user trial): the resume took the folder only after the model loaded."""
    import wbcap.video_app as video_app
    from wbcap.errors import InputError
    from wbcap.io.run_folder import reading_folder

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "out"
    args = ["--detector", "full", "--no-render", "--min-track", "1", *base_args]
    assert run("run", video, "-o", out, *args).exit_code == 0
    seen = []

    def loading(load):
        def checked(job, folder, *rest):
            try:
                with reading_folder(folder, "export it again"):
                    seen.append("free")
            except InputError as exc:
                seen.append(str(exc))
            return load(job, folder, *rest)
        return checked

    # (a finished run's resume loads the SMPL-X layer alone, an unfinished one's the network)
    monkeypatch.setattr(video_app, "_load_pipeline", loading(video_app._load_pipeline))
    monkeypatch.setattr(video_app, "_load_body", loading(video_app._load_body))
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0
    assert len(seen) == 1 and "in use by another wbcap process" in seen[0], seen
    (out / ".wbcap" / "pass1.json").unlink()  # (a run made before pass 1's end was recorded)
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0
    assert len(seen) == 2 and "in use by another wbcap process" in seen[1], seen


@pytest.mark.parametrize("how", [["--overwrite"],  # (the other two in the full suite: fast loop under 2 minutes)
                                 pytest.param(["--resume", "--smooth", "gaussian"], marks=pytest.mark.slow),
                                 pytest.param(["--resume"], marks=pytest.mark.slow)])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, base_args, monkeypatch,
                                                                                  how):
    """A finished run's folder made read-only (or another user's): `--overwrite` and a `--resume`
    with other pass-2 settings failed with a crash after the model loaded, and the resume left a
    false "writing" mark (an admin's trial). One line, exit 2, nothing touched."""
    import wbcap.video_app as video_app

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    out = tmp_path / "out"
    args = ["--detector", "full", "--no-render", "--min-track", "1", *base_args]
    assert run("run", video, "-o", out, *args).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (Path(path) != out or not mode & os.W_OK)
                        and real_access(path, mode, **kw))  # (read-only for this test)
    monkeypatch.setattr(video_app, "_load_pipeline", lambda *a: pytest.fail("the model loaded"))
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), *how, *args])
    assert r.exit_code == 2 and r.output == (f"error: {out}: cannot write in this folder (read-only or no permission); "
                                             "choose another -o folder\n"), r.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_bad_detector_and_a_foreign_folder_to_overwrite_are_refused_before_the_model_and_detector_load(
        tmp_path, base_args, monkeypatch):
    """An unknown --detector, a missing --detector-model or yolox: file, and --overwrite of a folder
    holding files wbcap did not write: one line each before the model loads (on a new machine a
    long run first measured its CPU strategy for 30 s, a user trial) and before the detector opens."""
    import wbcap.video_app as video_app

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    monkeypatch.setattr(video_app, "_load_pipeline", lambda *a: pytest.fail("the model loaded"))
    monkeypatch.setattr(video_app, "_open_detector", lambda *a: pytest.fail("the detector opened"))
    missing = tmp_path / "none.onnx"
    for how, said in ((["--detector", "foo"], "error: unknown detector 'foo'; use auto, hog, "),
                      (["--detector-model", missing], f"error: YOLOX model {missing} does not exist; "),
                      (["--detector", f"yolox:{tmp_path}"], f"error: YOLOX model {tmp_path} is a folder; "),
                      (["--detector", "hog", "--detector-model", missing], "error: --detector-model is a YOLOX ONNX "
                                                                          "file; it cannot be used with --detector hog: "
                                                                          "leave --detector out (it is then that file's)"),
                      # (an animator's trial: `yolox` was taken for a detector that the file could not go with)
                      (["--detector", "yolox", "--detector-model", missing], "error: unknown detector 'yolox'; with "
                                                                            "--detector-model leave --detector out")):
        r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "out"), *map(str, how), "--no-render",
                                     *base_args])
        assert r.exit_code == 2 and r.output.startswith(said) and r.output.count("\n") == 1, r.output
        assert not (tmp_path / "out").exists()
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--overwrite", "--detector", "full", "--no-render",
                                 *base_args])
    assert r.exit_code == 2 and r.output == (f"error: {out} holds files wbcap did not write (e.g. notes.txt); choose "
                                             "another -o folder (a new or empty one)\n"), r.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_pass_2_resume_needs_no_detector_model(tmp_path, base_args, monkeypatch):
    """A resume redoing pass 2 alone opens no detector: its YOLOX file, moved since, is not
    asked for (the early detector check refused it, a review); a resume of an unfinished pass 1
    still refuses it before the model loads."""
    from wbcap.testing.onnx_models import write_tiny_yolox

    row = [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79  # (one person box wherever it looks)
    model = write_tiny_yolox(tmp_path / "tiny.onnx", {20: row}, size=64)
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    out = tmp_path / "out"
    args = ["-o", str(out), "--detector-model", str(model), "--no-render", "--min-track", "1", "--export", "npz",
            *base_args]
    assert run("run", video, *args).exit_code == 0
    model.unlink()
    r = CliRunner().invoke(cli, ["run", str(video), *args, "--resume", "--smooth", "gaussian"])
    assert r.exit_code == 0 and "redoes pass 2 only" in " ".join(r.output.split()), r.output
    (out / ".wbcap" / "pass1.json").unlink()  # (pass 1 unfinished, as far as a resume knows)
    import wbcap.video_app as video_app

    monkeypatch.setattr(video_app, "_load_pipeline", lambda *a: pytest.fail("the model loaded"))
    r = CliRunner().invoke(cli, ["run", str(video), *args, "--resume", "--smooth", "gaussian"])
    assert r.exit_code == 2 and r.output.startswith(f"error: YOLOX model {model} does not exist; "), r.output


@pytest.mark.slow  # test_run_inputs checks the advice in the fast loop
def test_used_output_folder_is_refused(tmp_path, base_args):
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--detector", "full", "--no-render", *base_args])
    assert r.exit_code == 2 and "error:" in r.output and "notes.txt" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    out2 = tmp_path / "out2"
    assert run("run", video, "-o", out2, "--detector", "full", "--no-render", "--min-track", "1", *base_args).exit_code == 0
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out2), "--detector", "full", "--no-render", *base_args])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = run("run", video, "-o", out2, "--detector", "full", "--no-render", "--overwrite", "--min-track", "1", *base_args)
    assert r.exit_code == 0, r.output


def test_a_bad_renderer_setting_is_refused_before_any_work(tmp_path, base_args, monkeypatch):
    import wbcap.pipeline

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    monkeypatch.setenv("WBCAP_RENDERER", "bogus")
    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "out"), "--detector", "full", *base_args])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "WBCAP_RENDERER=bogus" in r.output
    assert not (tmp_path / "out").exists()
    photo = tmp_path / "p.jpg"
    cv2.imwrite(str(photo), person_image(160, 120)[:, :, ::-1])
    r = CliRunner().invoke(cli, ["image", str(photo), "-o", str(tmp_path / "img"), "--full-image", *base_args])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "WBCAP_RENDERER=bogus" in r.output
    assert not (tmp_path / "img").exists()


@pytest.mark.parametrize(("option", "value"), [("--sigma", "-1"), ("--min-cutoff", "0"), ("--beta", "-0.5"),
                                               ("--iou-threshold", "7"), ("--focal", "-5"), ("--focal", "0"), ("--focal", "1e-300"),
                                               ("--sigma", "nan"), ("--focal", "inf"), ("--min-cutoff", "nan")])
def test_out_of_range_settings_are_refused_before_any_work(tmp_path, base_args, monkeypatch, option, value):
    """Each once ended as a crash report after the network had run (or, --focal, after the
    outputs had been written with it); --focal 0 was taken as the default."""
    import wbcap.pipeline

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "out"), option, value, *base_args])
    assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_frames_with_nobody_are_handled(tmp_path, base_args):
    video = write_video(tmp_path / "empty.mp4", [np.full((120, 160, 3), 128, np.uint8)] * 4)
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", "hog", *base_args)
    assert r.exit_code == 0, r.output
    assert (out / "params.jsonl").read_text() == ""
    assert decode_info(out / "render.mp4")[0] == 4


def _bad(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    good = write_video(tmp_path / "good.mp4", [person_image(160, 120, seed=i) for i in range(6)])
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(good.read_bytes()[:200])
    audio = tmp_path / "tone.m4a"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("aac", rate=16000)
        t = np.arange(16000) / 16000
        frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return {
        "missing": (tmp_path / "nope.mp4", "nope.mp4"),
        "text as mp4": (text, "notes.mp4"),
        "zero length": (empty, "empty.mp4"),
        "truncated": (trunc, "trunc.mp4"),
        "no video stream": (audio, "tone.m4a"),
        # a glob is an image sequence: matching videos (good, empty, notes, trunc) is named as such
        "glob of videos": (tmp_path / "*.mp4", "no image file but 4 other files (empty.mp4, good.mp4, "
                           "notes.mp4, ...); a pattern is read as an image sequence: give a video by its own "
                           "path, not a pattern (`wbcap run VIDEO`, one run per video)"),
    }


@pytest.mark.parametrize("case", ["missing", "text as mp4", "zero length", "truncated", "no video stream",
                                  "glob of videos"])
def test_bad_video_inputs(tmp_path, base_args, case):
    path, needle = _bad(tmp_path)[case]
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["run", str(path), "-o", str(out), "--detector", "full", *base_args])
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], r.output
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file() and p.name != "run.json"], list(out.rglob("*"))


def write_video_with_audio(path: Path, frames: list[np.ndarray], fps: int = 10, rate: int = 16000) -> Path:
    """H.264 video plus a 440 Hz AAC tone as long as the video."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        a = c.add_stream("aac", rate=rate)
        for img in frames:
            for pkt in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        n = int(len(frames) / fps * rate)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = rate, s
            for pkt in a.encode(af):
                c.mux(pkt)
        for stream in (v, a):
            for pkt in stream.encode():
                c.mux(pkt)
    return path


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_render_keeps_source_audio(tmp_path, base_args):
    video = write_video_with_audio(tmp_path / "talk.mp4", [person_image(160, 120, seed=i) for i in range(5)])  # 0.5 s
    out = tmp_path / "out"
    r = run("-q", "run", video, "-o", out, "--detector", "full", "--min-track", "1", *base_args)
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # -q: no summary either
    with av.open(str(out / "render.mp4")) as c:
        assert len(c.streams.audio) == 1
        audio = c.streams.audio[0]
        seconds = sum(p.duration or 0 for p in c.demux(audio)) * float(audio.time_base)
    assert abs(seconds - 0.5) < 0.15
    assert decode_info(out / "render.mp4")[0] == 5


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_what_is_wrong_with_a_video_is_said_once_per_run(tmp_path, base_args):
    """Pass 1 and the render pass both read the video: a rotation rounded to 0 degrees and a
    video shorter than its header are each one warning."""
    video = tmp_path / "odd.mp4"
    with av.open(str(video), "w", options={"movflags": "+faststart"}) as c:  # index up front
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt, s.options = 160, 120, "yuv420p", {"g": "2"}
        s.set_display_rotation(-45)  # 45 degrees clockwise
        for i in range(12):
            for p in s.encode(av.VideoFrame.from_ndarray(person_image(160, 120, seed=i), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # frames 6..11 cut off
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", "full", "--min-track", "1", *base_args)
    assert r.exit_code == 0, r.output
    assert (out / "render.mp4").exists()
    assert r.stderr.count("display rotation 45.0 degrees is not a multiple of 90") == 1, r.stderr
    assert r.stderr.count("of the 12 frames its header declares") == 1, r.stderr
    # and meta.json says so (a long-footage trial: only the console did), also after a resume that
    # redoes pass 2 alone
    meta = json.loads((out / "meta.json").read_text())
    assert re.fullmatch(r"ended after \d+ of the 12 frames its header declares", meta["source_ended_early"]), meta
    r = run("run", video, "-o", out, "--resume", "--smooth", "none", "--detector", "full", "--min-track", "1", *base_args)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "meta.json").read_text())["source_ended_early"] == meta["source_ended_early"]


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_image_folder_goes_through_the_same_frame_iterator(tmp_path, base_args):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2 = pytest.importorskip("cv2")
        cv2.imwrite(str(folder / f"f{i + 1}.png"), person_image(120, 160, seed=i)[:, :, ::-1])
    out = tmp_path / "out"
    r = run("run", folder, "-o", out, "--detector", "full", "--min-track", "1", *base_args)
    assert r.exit_code == 0, r.output
    n, w, h, rate = decode_info(out / "render.mp4")
    assert (n, w, h) == (4, 120, 160) and rate == 30
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2, 3] and {x["track"] for x in lines} == {0}


@pytest.mark.slow  # two runs; the fast loop stays under 2 minutes
def test_a_resume_from_another_folder_says_where_the_run_was_started(tmp_path, base_args, monkeypatch):
    """A run of a relative glob, resumed from another folder: the pattern matches nothing there, and
    the error says where the run was started and the command that resumes it (a user trial)."""
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "a" / "photos").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "a" / "photos" / f"p{i}.png"), person_image(120, 160, seed=i)[:, :, ::-1])
    out = tmp_path / "out"
    args = ["-o", str(out), "--detector", "full", "--min-track", "1", "--no-render", *base_args]
    monkeypatch.chdir(tmp_path / "a")
    assert run("run", "photos/p*.png", *args).exit_code == 0
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    r = CliRunner().invoke(cli, ["run", "photos/p*.png", *args, "--resume"])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith("error: photos/p*.png: ") and (
        f"; the run in {out} was started in {tmp_path / 'a'}, which photos/p*.png is relative to: `cd ") in r.output, r.output
    # from the run's folder the same resume runs (nothing left to do: pass 2 again)
    monkeypatch.chdir(tmp_path / "a")
    assert run("run", "photos/p*.png", *args, "--resume").exit_code == 0


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_an_image_folder_runs_at_the_rate_given(tmp_path, base_args):
    """--fps: image k is at k / FPS s (it was 30 fps with no way to say otherwise): times,
    --start, the AMASS rate and render.mp4 follow it; a video keeps its own, with a warning."""
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"f{i + 1}.png"), person_image(120, 160, seed=i)[:, :, ::-1])
    out = tmp_path / "out"
    r = run("run", folder, "-o", out, "--fps", "10", "--start", "0.1", "--detector", "full", "--min-track", "1",
            "--export", "none", *base_args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [1, 2, 3, 4]
    assert [x["time"] for x in lines] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fps"] == 10.0 and meta["display"] == {"rotation": 0, "mirrored": False}
    assert float(np.load(out / "track_0.npz")["mocap_framerate"]) == 10.0
    n, _, _, rate = decode_info(out / "render.mp4")
    assert n == 4 and rate == 10
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "v"), "--fps", "10", "--detector", "full",
                                 "--no-render", "--min-track", "1", *base_args])
    assert r.exit_code == 0 and "a video keeps its own frame rate (--fps is for image folders" in " ".join(r.output.split())


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_meta_records_how_the_source_was_turned_for_display(tmp_path, base_args):
    """A video whose display matrix transposes its picture (a quarter turn clockwise, then a
    left-right mirror): meta.json says so, and its camera is of the picture as displayed."""
    from test_io_video import _set_tkhd_matrix

    plain = write_video(tmp_path / "plain.mp4", [person_image(160, 120, seed=i) for i in range(3)], fps=10)
    video = _set_tkhd_matrix(plain, tmp_path / "turned.mp4", 0, 1, 1, 0)
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", "full", "--min-track", "1", "--no-render", "--export", "none",
            *base_args)
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["display"] == {"rotation": 90, "mirrored": True} and meta["camera"]["image_size"] == [120, 160]
    # a phone photo stored on its side (EXIF orientation 6): turned upright, and meta.json says so
    # (it said rotation 0: a user trial)
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(person_image(120, 160, seed=1), 1))).save(
        tmp_path / "IMG_1234.JPG", exif=exif.tobytes())
    r = run("run", tmp_path / "IMG_1234.JPG", "-o", tmp_path / "photo", "--detector", "full", "--min-track", "1",
            "--no-render", "--export", "none", *base_args)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "photo" / "meta.json").read_text())
    assert meta["display"] == {"rotation": 90, "mirrored": False} and meta["camera"]["image_size"] == [120, 160]


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_run_world_falls_back_and_says_why(tmp_path, base_args):
    """`--world` on footage it cannot ground (6 frames of a random network: too few planted feet):
    camera-frame files, the reason in meta.json, no contacts in params.jsonl; `wbcap export
    --world` gives the same files."""
    frames, boxes = two_walkers(6)
    video = write_video(tmp_path / "walk.mp4", frames)
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", f"boxes:{box_file}", "--min-track", "2", "--no-render", "--world",
            *base_args)
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frame"] == "camera" and meta["world"]["frame"] == "camera" and meta["world"]["reason"], meta
    assert all("contact" not in json.loads(x) for x in (out / "params.jsonl").read_text().splitlines())
    assert str(np.load(out / "track_0.npz")["frame"]) == "camera"
    # `wbcap export --world` comes to the same conclusion from params.jsonl: the same files
    body = base_args[base_args.index("--body-models") + 1]
    r = run("export", out, "--world", "--format", "npz", "--dest", tmp_path / "again", "--body-models", body)
    assert r.exit_code == 0, r.output
    for tid in (0, 1):
        assert (tmp_path / "again" / f"track_{tid}.npz").read_bytes() == (out / f"track_{tid}.npz").read_bytes()
    said = "--root-bone: without a ground the root bone stands at the camera's height"
    assert said not in r.output
    # with --root-bone a fallback says where the root bone then stands (an animator's trial)
    r = run("export", out, "--world", "--root-bone", "--format", "glb", "--track", "0", "--dest", tmp_path / "rooted",
            "--body-models", body)
    assert r.exit_code == 0 and " ".join(r.output.split()).count(said) == 1, r.output


@pytest.mark.slow  # tests/test_world*.py cover grounding in the fast loop
def test_run_world_writes_the_world_when_found(tmp_path, base_args, monkeypatch):
    """The plumbing of a grounded run, with the world stage replaced by a known answer (camera
    level, 1.5 m up, the left foot always planted): contacts in params.jsonl, the ground and the
    camera in meta.json, world-frame npz and GLB."""
    import wbcap.world.estimate as estimate
    from wbcap.world.ground import GroundPlane

    poses = []

    def known(tracks, body, device, camera, config, cuts=(), pose=None):
        assert list(cuts) == []  # (one shot)
        poses.append(pose)
        frame = estimate.WorldFrame.from_ground(GroundPlane(normal=np.array([0.0, -1.0, 0.0]), offset=1.5), contacts=12)
        if pose is not None and estimate.calibrated_floor(pose, frame)[0] is not None:  # (its world, as the stage's)
            frame = estimate.calibrated_floor(pose, frame)[0]
        return estimate.WorldResult(frame=frame, reason=None, tracks=dict(tracks),
                                    contacts={t: np.tile([True, False], (len(tr), 1)) for t, tr in tracks.items()},
                                    corrections={t: np.zeros((len(tr), 3)) for t, tr in tracks.items()})

    monkeypatch.setattr(estimate, "ground_tracks", known)
    frames, boxes = two_walkers(6)
    video = write_video(tmp_path / "walk.mp4", frames)
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    out, plain = tmp_path / "out", tmp_path / "plain"
    args = ["--detector", f"boxes:{box_file}", "--min-track", "2", "--no-render", *base_args]
    assert run("run", video, "-o", out, "--world", *args).exit_code == 0
    assert run("run", video, "-o", plain, *args).exit_code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frame"] == "world" and meta["world"]["camera_height_m"] == 1.5 and meta["world"]["camera_pitch_deg"] == 0
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert lines and all(x["contact"] == {"left": True, "right": False} for x in lines)
    # params.jsonl keeps the camera-frame parameters: the same numbers as without --world
    assert [x["cam_trans"] for x in lines] == [json.loads(x)["cam_trans"] for x in (plain / "params.jsonl").read_text().splitlines()]
    w, c = np.load(out / "track_0.npz"), np.load(plain / "track_0.npz")
    assert str(w["frame"]) == "world" and str(c["frame"]) == "camera"
    np.testing.assert_allclose(w["trans"], c["trans"] + [0, 0, 1.5], atol=1e-6)  # level camera 1.5 m up
    np.testing.assert_allclose(w["poses"], c["poses"], atol=1e-6)
    assert w["contact"].all(0).tolist() == [True, False]
    from pygltflib import GLTF2

    g = GLTF2().load_binary(str(out / "track_0.glb"))
    assert g.asset.extras["frame"] == "world"
    np.testing.assert_allclose(next(n for n in g.nodes if n.name == "source_camera").translation, [0, 1.5, 0])
    # a calibration with the camera's pose: the world stage is given it, meta.json records it
    assert poses == [None]
    calib = tmp_path / "Calib.toml"
    calib.write_text('[walk]\nname = "walk"\nsize = [ 320.0, 240.0]\n'
                     "matrix = [ [ 400.0, 0.0, 159.5], [ 0.0, 400.0, 119.5], [ 0.0, 0.0, 1.0]]\n"
                     "distortions = [ 0.0, 0.0, 0.0, 0.0]\nrotation = [ 1.2, -0.3, 0.1]\n"
                     "translation = [ 500.0, 1000.0, 3000.0]\nfisheye = false\n")
    r = run("run", video, "-o", tmp_path / "trusting", "--trust-calibration", "--calibration", calib, *args)
    assert r.exit_code == 2 and "--trust-calibration goes with --world and a --calibration holding the camera's pose" \
        in " ".join(r.output.split()) and not (tmp_path / "trusting").exists(), r.output
    assert run("run", video, "-o", tmp_path / "lab", "--world", "--calibration", calib, *args).exit_code == 0
    from scipy.spatial.transform import Rotation

    expected = Rotation.from_rotvec([1.2, -0.3, 0.1]).as_matrix()
    assert len(poses) == 2 and poses[1].translation == (500.0, 1000.0, 3000.0)
    np.testing.assert_allclose(poses[1].rotation, expected, atol=1e-12)
    recorded = json.loads((tmp_path / "lab" / "meta.json").read_text())["calibration"]
    np.testing.assert_allclose(recorded["rotation"], expected, atol=1e-12)
    assert recorded["translation"] == [500.0, 1000.0, 3000.0]
    # a COLMAP reconstruction (its folder) whose image walk.jpg is the video's camera: its pose kept without a scale
    # (meta.json's "metric": false, for wbcap fuse), the world the feet's (the stage's refusal: tests/test_world.py)
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "cameras.txt").write_text("# Camera list\n1 PINHOLE 320 240 400 400 160 120\n2 SIMPLE_PINHOLE 640 480 500 "
                                        "320 240\n")
    (sparse / "images.txt").write_text("# Image list\n1 0.5 0.5 0.5 0.5 0.1 0.2 3.0 1 walk.jpg\n\n"
                                       "2 1 0 0 0 0 0 0 2 other.jpg\n10 20 -1\n")
    r = run("run", video, "-o", tmp_path / "colmap", "--world", "--calibration", sparse, *args)
    assert r.exit_code == 0 and len(poses) == 3 and poses[2].metric is False, r.output
    recorded = json.loads((tmp_path / "colmap" / "meta.json").read_text())["calibration"]
    assert (recorded["name"], recorded["metric"], recorded["translation"]) == ("walk.jpg", False, [0.1, 0.2, 3.0])
    np.testing.assert_allclose(recorded["rotation"], Rotation.from_quat([0.5, 0.5, 0.5, 0.5]).as_matrix(), atol=1e-12)
    assert str(np.load(tmp_path / "colmap" / "track_0.npz")["ground_from"]) == "feet"
    # two such runs (the same video as two cameras' in one lab) fuse: wbcap fuse reads what wbcap run writes
    level = Rotation.from_rotvec([np.pi / 2, 0.0, 0.0]).as_matrix()  # (a level camera: the lab's z up is its -y)
    for name, x in (("east", 0.0), ("west", 2000.0)):
        cal = tmp_path / f"{name}.toml"
        t = -level @ np.array([x, 0.0, 1500.0])
        cal.write_text(calib.read_text().replace("rotation = [ 1.2, -0.3, 0.1]", "rotation = [ 1.5707963267948966, 0.0, 0.0]")
                       .replace("translation = [ 500.0, 1000.0, 3000.0]", f"translation = [ {t[0]}, {t[1]}, {t[2]}]"))
        assert run("run", video, "-o", tmp_path / name, "--world", "--calibration", cal, *args).exit_code == 0
        assert str(np.load(tmp_path / name / "track_0.npz")["ground_from"]) == "calibration"
    r = run("fuse", tmp_path / "east", tmp_path / "west", "-o", tmp_path / "fused", "--format", "npz,trc",
            "--body-models", base_args[base_args.index("--body-models") + 1])
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "fused" / "fuse.json").read_text())
    assert [run_["camera_position_m"] for run_ in record["runs"]] == [pytest.approx([0, 0, 1.5]),
                                                                       pytest.approx([2, 0, 1.5])]
    assert {len(p["tracks"]) for p in record["people"]} == {1}  # (2 m apart: no one joins across them)
    assert len(record["people"]) == 4 and (tmp_path / "fused" / "track_3.trc").is_file()


@pytest.mark.slow  # the demo's full-size untrained network on a few frames
def test_demo_video_runs_the_video_pipeline_without_licensed_files(tmp_path):
    """`wbcap demo --video`: wbcap run's outputs from a synthetic body model and untrained
    weights (no SMPL-X file, no checkpoint in the isolated user folders), into OUT/video-<stem>/;
    run again, it replaces its own earlier run."""
    # One small figure moving right: HOG finds two people in each frame (eleven in two_walkers'),
    # each a full-size network crop. (Few frames for the same reason.)
    figure = cv2.resize(person_image(160, 240, seed=1), (80, 120))
    frames = []
    for i in range(2):
        frame = np.full((240, 320, 3), 90, np.uint8)
        frame[60:180, 120 + 4 * i : 200 + 4 * i] = figure
        frames.append(frame)
    video = write_video(tmp_path / "walk.mp4", frames)
    out = tmp_path / "demo" / "video-walk"
    for max_frames in (2, 1):
        r = CliRunner().invoke(cli, ["demo", "--video", str(video), "--max-frames", str(max_frames), "--offline", "-o",
                                     str(tmp_path / "demo"), "--device", "cpu"])
        assert r.exit_code == 0, r.output
        assert f"{max_frames} frames" in r.stdout and str(out) in r.stdout and "pipeline check" in r.stdout
        assert "wbcap run your_video.mp4" in r.stdout
        rows = [json.loads(line) for line in (out / "params.jsonl").read_text().splitlines()]
        # the second run replaced the first one's rows, not added to them
        assert sorted({row["frame"] for row in rows}) == list(range(max_frames))
        assert (out / "render.mp4").is_file() and list(out.glob("track_*.npz")) and list(out.glob("track_*.glb"))
    r = CliRunner().invoke(cli, ["demo", "--video", str(video), "--image", str(video)])
    assert r.exit_code == 2 and "exclude each other" in r.output
    r = CliRunner().invoke(cli, ["demo", "--max-frames", "3"])
    assert r.exit_code == 2 and "--max-frames applies to --video" in r.output


def test_demo_video_refuses_a_missing_video_before_loading_the_model(tmp_path, monkeypatch):
    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    r = CliRunner().invoke(cli, ["demo", "--video", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "demo")])
    assert r.exit_code == 2 and r.stderr == f"error: {tmp_path / 'nope.mp4'}: no such file or folder; check the path\n"
    assert not (tmp_path / "demo").exists()


def test_a_file_system_without_flock_on_folders_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    """NFS and some cluster file systems refuse flock on a folder (EBADF, ENOLCK...): a warning,
    not a crash report; "already held" stays a refusal."""
    import errno
    import fcntl
    import logging

    from wbcap.errors import InputError
    from wbcap.io.run_folder import hold_folder

    def refusing(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refusing)
    with caplog.at_level(logging.WARNING), hold_folder(tmp_path / "nfs") as out:
        assert out.is_dir()
    assert "cannot lock the folder (No locks available)" in caplog.text

    def held(fd, op):
        raise BlockingIOError(errno.EWOULDBLOCK, "busy")

    monkeypatch.setattr(fcntl, "flock", held)
    with pytest.raises(InputError, match="in use by another wbcap process"), hold_folder(tmp_path / "nfs"):
        pass


@pytest.mark.parametrize(("flags", "said"), [
    (["--sigma", "3"], "--sigma sets the gaussian smoothing, and --smooth is oneeuro: drop --sigma, or pass --smooth gaussian"),
    (["--smooth", "gaussian", "--beta", "1"],
     "--beta sets the oneeuro smoothing, and --smooth is gaussian: drop --beta, or pass --smooth oneeuro"),
    (["--smooth", "none", "--min-cutoff", "1"],
     "--min-cutoff sets the oneeuro smoothing, and --smooth is none: drop --min-cutoff, or pass --smooth oneeuro")])
def test_a_setting_of_another_smoothing_is_a_usage_error(tmp_path, base_args, monkeypatch, flags, said):
    """`--sigma 3` with the default One-Euro smoothing was ignored without a word."""
    import wbcap.pipeline

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(2)])
    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "out"), *flags, *base_args])
    assert r.exit_code == 2 and r.stderr == f"error: {said} (see 'cli run --help')\n", r.output
    assert not (tmp_path / "out").exists()


def test_an_output_folder_inside_another_run_is_refused(tmp_path, base_args):
    """`wbcap run -o RUN/sub` was written, and then RUN's `--overwrite` said RUN "holds files wbcap
    did not write (e.g. sub)" (a user trial). Refused now in one line before anything loads, as
    `wbcap export --dest` inside a run is; beside a run, or the run's own folder, is as before."""
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=0)])
    held = tmp_path / "run1"
    (held / ".wbcap").mkdir(parents=True)
    (held / ".wbcap" / "run.json").write_text("{}")
    for out in (held / "sub", held / "a" / "b"):
        r = run("run", video, "-o", out, *base_args)
        assert r.exit_code == 2 and r.stderr == (f"error: -o {out}: lies inside the wbcap run folder {held} (whose "
                                                 "`wbcap run --overwrite` would then refuse it); choose a folder "
                                                 "outside it\n"), r.output
        assert not out.exists()
    r = run("run", video, "-o", held, *base_args)  # (the run's own folder: what it always said)
    assert r.exit_code == 2 and "holds a previous wbcap run" in r.stderr, r.output
    photo = tmp_path / "p.png"  # wbcap image -o: neither the run's folder nor one inside it (a second trial)
    cv2.imwrite(str(photo), person_image(96, 128, seed=1))
    r = run("image", photo, "-o", held / "img", *base_args)
    assert r.exit_code == 2 and r.stderr == (f"error: -o {held / 'img'}: lies inside the wbcap run folder {held} (whose "
                                             "`wbcap run --overwrite` would then refuse it); choose a folder "
                                             "outside it\n"), r.output
    r = run("image", photo, "-o", held, *base_args)
    assert r.exit_code == 2 and r.stderr == (f"error: -o {held}: is the folder of a `wbcap run` (a video's results); "
                                             "a photo's results cannot go into it: choose a folder outside it\n"), r.output
    assert sorted(p.name for p in held.iterdir()) == [".wbcap"]
    for spec in ("boxes:", "yolox:", "boxes: "):  # (`boxes:` read the current folder)
        r = run("run", video, "-o", tmp_path / "o", "--detector", spec, *base_args)
        assert r.exit_code == 2 and r.stderr == f"error: --detector {spec}: names no file; give {spec.strip()}FILE\n"
        assert not (tmp_path / "o").exists()


@pytest.mark.slow  # two runs with render.mp4 (ProgressLines itself: the next test, in the fast loop)
def test_where_no_bar_can_be_drawn_progress_lines_go_to_the_log(tmp_path, base_args, monkeypatch):
    """An overnight `wbcap run ... > log 2>&1` had no word between its start and its summary (a
    user trial): stderr that is not a terminal gets a progress line per stage now and then (here
    every report: the interval set to 0), and none with -q."""
    import wbcap.io.progress as progress

    monkeypatch.setattr(progress, "PROGRESS_LOG_SECONDS", 0.0)
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    args = ["--detector", "full", "--min-track", "1", "--export", "npz", *base_args]
    r = run("run", video, "-o", tmp_path / "out", *args)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if re.match(r"INFO +(regress|render): ", ln)]
    # (the frames of pass 1 come in one batch here: done at its first report, no rate yet)
    assert lines[0] == "INFO     regress: 3/3 frames (100%)", r.stderr
    assert re.fullmatch(r"INFO +render: 2/3 frames \(66%\), [0-9.]+ frames/s, about \d+ s left", lines[1]), lines
    assert re.fullmatch(r"INFO +render: 3/3 frames \(100%\), [0-9.]+ frames/s", lines[2]) and len(lines) == 3, lines
    quiet = run("-q", "run", video, "-o", tmp_path / "quiet", *args)
    assert quiet.exit_code == 0 and "frames (" not in quiet.stderr, quiet.stderr


def test_progress_lines_are_a_minute_apart_and_say_the_time_left():
    from wbcap.io.progress import ProgressLines

    said = []

    class Log:
        def info(self, msg, *args):
            said.append(msg % args)

    now = [0.0]
    lines = ProgressLines(Log(), clock=lambda: now[0])  # type: ignore[arg-type]
    for done in range(1, 7201):  # one frame a second for two hours, from the first report on
        now[0] = float(done)
        lines("regress", done, 7200)
    assert len(said) == 120  # a minute apart, and the last
    assert said[0] == "regress: 61/7200 frames (0%), 1.00 frames/s, about 1 h 59 min left"
    assert said[60] == "regress: 3661/7200 frames (50%), 1.00 frames/s, about 59 min left"
    assert said[-2] == "regress: 7141/7200 frames (99%), 1.00 frames/s, about 59 s left"
    assert said[-1] == "regress: 7200/7200 frames (100%), 1.00 frames/s"
    lines("obj", 5, None)
    now[0] += 61
    lines("obj", 65, None)  # no total: no share, no time left; the OBJ stage counts meshes, one per person-frame
    assert said[-1] == "obj: 65 meshes, 0.98 meshes/s"


def test_the_options_defaults_are_the_librarys():
    """A default `wbcap run --help` shows is the one the Python API applies (``VideoJob`` and its
    ``TrackerConfig``): each lives in the library, the option reads it, so they cannot drift."""
    import dataclasses

    import click

    from wbcap.cli.run import run
    from wbcap.track.iou_tracker import TrackerConfig
    from wbcap.video_app import VideoJob

    defaults = {f.name: f.default for f in dataclasses.fields(TrackerConfig)}
    defaults.update({f.name: f.default for f in dataclasses.fields(VideoJob) if f.default is not dataclasses.MISSING})
    shown = {p.name: p.default for p in run.params if isinstance(p, click.Option) and not p.is_flag and p.name in defaults}
    assert {"image_fps", "iou_threshold", "max_age", "min_length", "cut_threshold", "max_gap", "every", "start"} <= set(shown)
    assert {name: value for name, value in shown.items() if value != defaults[name]} == {}


@pytest.mark.slow  # three networks built (the fast loop stays under 2 minutes)
def test_the_video_benchmark_builds_a_job_the_library_takes(tmp_path, small_config, body_dir, micro_ckpt, monkeypatch):
    """benchmarks/video_pipeline.py set the people limit in the tracker too, which VideoJob now
    refuses: the script stopped at once (a review); and with --precision fast it gave run_video a
    fast pipeline and an exact job, refused (a session's measurement). Its job is built here from
    its own defaults and the pipeline config its child builds from (the body model given, the
    network not converted)."""
    import dataclasses
    import importlib.util

    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.pipeline import Pipeline
    from wbcap.video_app import _check_given_pipeline

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "video_pipeline.py"
    spec = importlib.util.spec_from_file_location("bench_video_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parser().parse_args(["--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "o"),
                                       "--precision", "fast", "--batch-size", "3"])
    body = BodyModelConfig(path=str(body_dir / "smplx" / "SMPLX_NEUTRAL.npz"))
    config = dataclasses.replace(module.pipeline_config(args), body=body, device="cpu")
    assert config.model != PipelineConfig().model and config.model.backbone_depth == 18  # (no --full-size)
    pipe = Pipeline.from_config(config, weights="random", optimize=False)
    job = module.video_job(args, pipe.job_config())
    assert (job.max_people, job.max_frames, job.overwrite, job.export.formats[0]) == (3, 200, True, "npz")
    assert (job.pipeline.precision, job.pipeline.batch_size, job.pipeline.body.path) == ("fast", 3, body.path)
    assert job.pipeline.model == pipe.regressor.net.config == config.model  # (the network's own)
    _check_given_pipeline(job, pipe)  # (raises InputError for a job unlike its pipeline)
    # the synthetic stand-in for a missing model is neutral, whatever gender was asked for (meta.json
    # said "female" over a neutral mesh: a review)
    missing = BodyModelConfig(gender="female")  # (none installed in the tests)
    stand_in = Pipeline.from_config(dataclasses.replace(config, body=missing), weights="random", optimize=False,
                                    fallback="synthetic")
    assert stand_in.source.body_model_synthetic and stand_in.job_config().body.gender == "neutral"
    # a checkpoint found by the search stays searched for (run.json then records it as `wbcap run` does,
    # and the command's --resume takes the run: a resolved path refused it, a break-it trial); the
    # network's model settings are the checkpoint's own
    monkeypatch.setenv("WBCAP_WEIGHTS", str(micro_ckpt))
    found = Pipeline.from_config(PipelineConfig(body=body, device="cpu"), optimize=False)
    assert found.source.checkpoint == micro_ckpt and found.job_config().checkpoint is None
    assert found.job_config().model == found.regressor.net.config != PipelineConfig().model


@pytest.mark.slow  # a network built and a clip run through wbcap run's code (the fast loop stays under 2 minutes)
def test_the_host_benchmark_runs_the_video_pipeline_with_the_network_replayed(tmp_path, monkeypatch):
    """benchmarks/video_host.py (what the CPU does around the network) runs wbcap run's own code:
    a tiny clip, its JSON report with every stage it timed."""
    import importlib.util

    from wbcap.detect import thread

    for name in ("overlaps_network", "crop_workers"):  # (the script sets them: put back after the test)
        monkeypatch.setattr(thread, name, getattr(thread, name))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "video_host.py"
    spec = importlib.util.spec_from_file_location("bench_video_host", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "report.json"
    module.main(["--frames", "4", "--size", "128x96", "--people", "2", "--repeats", "1", "--batch-size", "2",
                 "--overlap", "on", "--crop-workers", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["frames"] == 4 and report["overlapped"] is True and report["crop_workers"] == 2
    assert {"decode", "crop", "regress", "write", "track+smooth+write"} <= set(report["timings_s"])
    assert report["decode_alone_fps"] > 0 and len(report["run_fps"]) == 1


@pytest.mark.parametrize("frame_count, duration, max_frames, every, measure", [
    (100, 4.0, 3, 1, False), (100, 4.0, 60, 1, False), (100, 4.0, None, 2, False), (100, 4.0, 61, 1, None),
    (100, 4.0, None, 1, None), (None, None, 30, 1, False), (None, None, None, 1, None),
    (None, 2.4, None, 1, False), (None, 2.44, None, 1, None), (None, 4.0, None, 2, False),
    (None, (60.0, 0.24), None, 1, False), (None, (60.0, None), None, 1, None)])
def test_a_short_run_does_not_measure_the_cpu_strategy(monkeypatch, tmp_path, frame_count, duration, max_frames, every,
                                                        measure):
    """A run selecting at most SHORT_RUN_FRAMES frames (a new user's 3-frame try took 29 s, 23 of
    them measuring) builds its pipeline without measuring a CPU strategy the cache lacks; longer
    runs, or a source of unknown length without --max-frames, measure (None: the default). A
    source that declares no frame count (Matroska, WebM) is counted by its duration (a 6-frame
    .mkv measured for 32 s: a hostile-media trial)."""
    from types import SimpleNamespace

    from wbcap import video_app
    from wbcap.config import PipelineConfig
    from wbcap.pipeline import Pipeline

    asked = []
    monkeypatch.setattr(Pipeline, "from_config", staticmethod(lambda config, **kwargs: asked.append(kwargs)))
    job = video_app.VideoJob(source="clip.mp4", out=str(tmp_path / "o"), pipeline=PipelineConfig(),
                             max_frames=max_frames, every=every)
    duration, video_end = duration if isinstance(duration, tuple) else (duration, None)  # (a minute of audio after it)
    source = SimpleNamespace(info=SimpleNamespace(frame_count=frame_count, fps=25.0, duration=duration, video_end=video_end))
    assert video_app.SHORT_RUN_FRAMES == 60
    video_app._load_pipeline(job, tmp_path / "o", source)
    assert asked == [{"measure_strategy": measure}]


@pytest.mark.slow  # two runs
def test_a_cropped_videos_principal_point_gives_the_full_pictures_translations(tmp_path, base_args):
    """A calibrated-camera researcher's trial: a video cropped off-centre (a 4:3 crop of a wide
    sensor) was taken to have its principal point at its centre, and every person moved metres
    sideways (2 m at 20 m), with no way to say otherwise. `--principal-point` (with `--focal`) gives
    the calibrated camera: the crop's run then places everyone where the full picture's run does,
    and meta.json and params.jsonl record that camera."""
    from wbcap.testing.videos import write_video

    frames, boxes = two_walkers(6, w=320, h=240)
    x0 = 40  # the crop's left edge: the picture's 40..319
    focal = 400.0  # (the full picture's default, sqrt(320^2 + 240^2))
    runs = {}
    for name, pictures, shift, camera in (
            ("full", frames, 0, []),
            ("crop", [f[:, x0:] for f in frames], x0, ["--focal", focal, "--principal-point", f"{160 - x0},120"])):
        video = write_video(tmp_path / f"{name}.mp4", pictures)
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {k: [[b[0] - shift, *b[1:]] for b in v] for k, v in boxes.items()}))
        r = run("run", video, "-o", tmp_path / name, "--detector", f"boxes:{tmp_path / f'{name}.json'}",
                "--min-track", "2", "--no-render", "--export", "none", *camera, *base_args)
        assert r.exit_code == 0, r.output
        runs[name] = [json.loads(x) for x in (tmp_path / name / "params.jsonl").read_text().splitlines()]
    meta = json.loads((tmp_path / "crop" / "meta.json").read_text())
    assert meta["camera"] == {"focal": [focal, focal], "princpt": [120.0, 120.0], "image_size": [280, 240]}
    assert all(x["camera"]["princpt"] == [120.0, 120.0] for x in runs["crop"])
    assert len(runs["full"]) == len(runs["crop"]) == 12
    for a, b in zip(runs["full"], runs["crop"]):
        assert (a["frame"], a["track"]) == (b["frame"], b["track"])
        np.testing.assert_allclose(b["cam_trans"], a["cam_trans"], atol=2e-3)
    # without it, the crop's people stand a known way off: x moved by z (c_default - c) / f
    r = run("run", tmp_path / "crop.mp4", "-o", tmp_path / "centred", "--detector", f"boxes:{tmp_path / 'crop.json'}",
            "--min-track", "2", "--no-render", "--export", "none", "--focal", focal, *base_args)
    assert r.exit_code == 0, r.output
    centred = [json.loads(x) for x in (tmp_path / "centred" / "params.jsonl").read_text().splitlines()]
    for a, b in zip(runs["crop"], centred):
        assert b["cam_trans"][0] - a["cam_trans"][0] == pytest.approx(a["cam_trans"][2] * (120 - 140) / focal, abs=2e-3)
