"""wbcap.io.run_folder: the rule for paths recorded in ``run.json`` and the resume of a run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import replace

import pytest

from wbcap.errors import InputError
from wbcap.io.run_folder import BODY_MODEL_FILE, absolute_path, prepare_output, read_run_file, same_path


def test_same_path_matches_the_same_file_by_any_spelling_and_an_older_record_as_typed(tmp_path, monkeypatch):
    """A recorded absolute path matches any spelling of it (a link too); an older run's path as
    typed matches the same spelling, or what it resolves to from here; another file never."""
    (tmp_path / "models").mkdir()
    (tmp_path / "other").mkdir()
    os.symlink(tmp_path / "models", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    now = absolute_path("./models")
    assert now == str(tmp_path / "models")
    assert same_path(str(tmp_path / "models"), "./models", now)
    assert same_path(str(tmp_path / "link"), "./models", now)  # (links followed)
    assert same_path("models", "./models", now)  # an older run: resolves here to the same folder
    assert same_path("elsewhere/models", "elsewhere/models", absolute_path("elsewhere/models"))  # as typed
    assert not same_path(str(tmp_path / "other"), "./models", now)
    assert not same_path("other", "other/../models", now)
    assert same_path(None, None, None)
    assert not same_path(None, "models", now) and not same_path(str(tmp_path / "models"), None, None)
    assert not same_path(7, "models", now)


def test_a_yolox_file_detector_is_recorded_absolute_and_resumed_by_any_spelling(tmp_path, monkeypatch):
    """--detector yolox:FILE follows the path rule of --detector-model: recorded absolute, resumed
    by another spelling of the file, refused when the same text names another file."""
    from wbcap.video_app import VideoJob, _fingerprint, _typed_paths

    def prepare(job):
        return prepare_output(tmp_path / "out", _fingerprint(job), resume=job.resume, overwrite=False,
                              typed_paths=_typed_paths(job))

    (tmp_path / "other").mkdir()
    for folder in (tmp_path, tmp_path / "other"):
        (folder / "m.onnx").write_bytes(b"onnx")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    job = VideoJob(source="v.mp4", out="out", detector="yolox:m.onnx")
    prepare(job)
    assert read_run_file(tmp_path / "out")["detector"] == f"yolox:{tmp_path / 'm.onnx'}"
    prepare(replace(job, detector="yolox:./m.onnx", resume=True))
    run_json = tmp_path / "out" / ".wbcap" / "run.json"
    recorded = read_run_file(tmp_path / "out")
    run_json.write_text(json.dumps(dict(recorded, detector="yolox:m.onnx")))  # as an older wbcap wrote it
    prepare(replace(job, detector="yolox:./m.onnx", resume=True))  # (resolves here to the same file)
    assert read_run_file(tmp_path / "out") == recorded
    with pytest.raises(InputError, match=r"different settings \(detector: \"yolox:.*m\.onnx\" in the run, "
                                         r"\"boxes:.*m\.onnx\" now\); give the run's own settings to continue it"):
        prepare(replace(job, detector="boxes:m.onnx", resume=True))  # (another kind of detector)
    monkeypatch.chdir(tmp_path / "other")
    with pytest.raises(InputError, match=r"different settings \(detector: "):
        prepare(replace(job, resume=True))


def test_a_resume_without_a_model_file_keeps_the_one_the_run_recorded(tmp_path, monkeypatch):
    """A resume through the Python API with a pipeline not built from files (no ``source``, so no
    model file to record) rewrote run.json without its body_model_file, which `wbcap export` and
    `wbcap view` use; it is kept, also when an older record's paths are rewritten absolute."""
    out, model = tmp_path / "out", str(tmp_path / "models" / "smplx" / "SMPLX_NEUTRAL.npz")
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    fp = {"source": "v.mp4", "checkpoint": absolute_path("c.pth")}
    prepare_output(out, fp, resume=False, overwrite=False, body_model_file=model)
    prepare_output(out, fp, resume=True, overwrite=False, body_model_file=None)
    assert read_run_file(out) == {**fp, BODY_MODEL_FILE: model}
    (out / ".wbcap" / "run.json").write_text(json.dumps({**fp, "checkpoint": "c.pth", BODY_MODEL_FILE: model}))
    prepare_output(out, fp, resume=True, overwrite=False, typed_paths={"checkpoint": "c.pth"}, body_model_file=None)
    assert read_run_file(out) == {**fp, BODY_MODEL_FILE: model}


#: The start of a BVH as wbcap writes it: its mark (a track file is a run's by its marks).
BVH_HEAD = "HIERARCHY\nROOT pelvis\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n"


def _previous_run(out):
    """A finished run's files in ``out`` (what --overwrite sets aside), by name and text."""
    files = {".wbcap/run.json": '{"source": "old"}', ".wbcap/raw.jsonl": '{"frame": 0}\n', "params.jsonl": "old\n",
             "track_0.bvh": BVH_HEAD, "meta.json": "{}"}
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return files


def _state(out):
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


def test_overwrite_keeps_a_users_file_in_a_meshes_folder(tmp_path):
    """A meshes/ folder holding a file wbcap does not write there is the user's: --overwrite
    refuses the folder, before anything moves (it deleted meshes/mine.obj, a hostile-input trial);
    one holding only <track>/<frame:06d>.obj files (and their temporaries) is set aside as before."""
    from wbcap.io.run_folder import PREVIOUS_DIR, refuse_taken_output

    out = tmp_path / "out"
    out.mkdir()
    _previous_run(out)
    (out / "meshes" / "0").mkdir(parents=True)
    (out / "meshes" / "0" / "000003.obj").write_text("v 0 0 0\n")
    (out / "meshes" / "0" / ".000004.tmp-1a2b3c4d.obj").write_text("")
    (out / "meshes" / "mine.obj").write_text("precious")
    before = _state(out)
    for check in (lambda: refuse_taken_output(out, overwrite=True),
                  lambda: prepare_output(out, {"source": "new"}, resume=False, overwrite=True)):
        with pytest.raises(InputError, match=r"holds files wbcap did not write \(e.g. meshes\)"):
            check()
        assert _state(out) == before
    (out / "meshes" / "mine.obj").unlink()
    prepare_output(out, {"source": "new"}, resume=False, overwrite=True)
    assert (out / PREVIOUS_DIR / "meshes" / "0" / "000003.obj").is_file()
    # an empty folder of the user's is theirs, not "`wbcap image` results"
    (out / "emptydir").mkdir()
    with pytest.raises(InputError, match=r"holds files wbcap did not write \(e.g. emptydir\)"):
        refuse_taken_output(out, overwrite=True)


def test_overwrite_sets_the_previous_run_aside_until_the_new_one_has_frames(tmp_path, caplog):
    """prepare_output with overwrite moves the previous run into .wbcap-previous/; restore_previous
    puts it back (the new run's files gone), discard_previous drops it; an --overwrite killed in
    between (SIGKILL) is settled by the next run on the folder: the previous run put back when
    the new run has no frame, else dropped."""
    from wbcap.io.run_folder import PREVIOUS_DIR, discard_previous, restore_previous

    out = tmp_path / "out"
    out.mkdir()
    old = _previous_run(out)
    fp = {"source": "new"}
    prepare_output(out, fp, resume=False, overwrite=True)
    assert _state(out) == {".wbcap/run.json": json.dumps(fp, indent=1, sort_keys=True),
                           **{f"{PREVIOUS_DIR}/{k}": v for k, v in old.items()}}
    restore_previous(out)
    assert _state(out) == old

    prepare_output(out, fp, resume=False, overwrite=True)
    (out / ".wbcap" / "raw.jsonl").write_text('{"frame": 0, "people": []}\n')
    discard_previous(out)
    assert sorted(_state(out)) == [".wbcap/raw.jsonl", ".wbcap/run.json"]

    # killed before its first frames: the next run puts the previous run back, then refuses the folder as usual
    for name in list(out.iterdir()):
        shutil.rmtree(name)
    _previous_run(out)
    prepare_output(out, fp, resume=False, overwrite=True)
    (out / ".wbcap" / "raw.jsonl").write_text('{"frame": 0, "peo')  # (a torn line: no frame)
    with caplog.at_level(logging.WARNING), pytest.raises(InputError, match="holds a previous wbcap run"):
        prepare_output(out, fp, resume=False, overwrite=False)
    assert _state(out) == old
    assert f"put back the previous run that an interrupted --overwrite had set aside in {PREVIOUS_DIR}" in caplog.text
    # killed after them: the new run is kept, the previous one dropped
    prepare_output(out, fp, resume=False, overwrite=True)
    (out / ".wbcap" / "raw.jsonl").write_text('{"frame": 0, "people": []}\n')
    prepare_output(out, fp, resume=True, overwrite=False)
    assert sorted(_state(out)) == [".wbcap/raw.jsonl", ".wbcap/run.json"]


def test_a_folder_of_exports_is_not_offered_a_resume(tmp_path):
    """`wbcap run -o DIR` where DIR holds a `wbcap export --dest` (outputs, no .wbcap/run.json)
    said "holds a previous wbcap run ...; pass --overwrite ..., --resume to continue it", and
    --resume then found nothing to resume. A run's folder is still offered both."""
    from wbcap.io.run_folder import refuse_taken_output

    exports, run = tmp_path / "exports", tmp_path / "run"
    exports.mkdir()
    run.mkdir()
    (exports / "track_0.bvh").write_text(BVH_HEAD)  # (as wbcap writes it)
    _previous_run(run)
    for check in (lambda out: refuse_taken_output(out), lambda out: prepare_output(out, {}, resume=False, overwrite=False)):
        with pytest.raises(InputError) as err:
            check(exports)
        assert str(err.value) == (f"{exports} holds wbcap outputs (e.g. track_0.bvh); pass overwrite=True to replace "
                                  "it, or choose another output folder")  # (the Python API's words; the CLI's: --overwrite)
        with pytest.raises(InputError) as err:
            check(run)
        head, _, tail = str(err.value).partition(" (e.g. ")
        assert head == f"{run} holds a previous wbcap run" and tail.endswith(
            "); pass overwrite=True to replace it, resume=True to continue it, or choose another output folder")


def test_temporary_files_of_a_killed_pass_2_are_found_and_removed(tmp_path):
    """What a killed pass 2 leaves (.render.tmp-*.mp4, .params.tmp-*, a .track_3.tmp-* folder, an
    FBX's staging folder, an angles CSV's temporary) is the run's own (--overwrite may delete it)
    and remove_temporary_files deletes it, nothing else: not a user's .track_notes.tmp-1 (deleted
    by `wbcap export` into its folder: a review)."""
    from wbcap.io.run_folder import remove_temporary_files, temporary_files

    out = tmp_path / "out"
    (out / ".track_3.tmp-0badc0de").mkdir(parents=True)
    (out / ".track_3.tmp-0badc0de" / "track_3.glb").write_text("x")
    (out / ".track_4.tmp-k9_zq1xw").mkdir()  # (tempfile's letters: write_animations' FBX staging)
    for name in (".render.tmp-1a2b3c4d.mp4", ".params.tmp-00000000.jsonl", ".meta.tmp-12345678.json", "render.mp4",
                 "notes.txt", ".track_3_angles.tmp-1a2b3c4d.csv", ".track_notes.tmp-1", ".track_5.tmp-k9_zq1xw"):
        (out / name).write_text("x")
    assert [p.name for p in temporary_files(out)] == [
        ".meta.tmp-12345678.json", ".params.tmp-00000000.jsonl", ".render.tmp-1a2b3c4d.mp4", ".track_3.tmp-0badc0de",
        ".track_3_angles.tmp-1a2b3c4d.csv", ".track_4.tmp-k9_zq1xw"]
    remove_temporary_files(out)
    assert sorted(p.name for p in out.iterdir()) == [".track_5.tmp-k9_zq1xw", ".track_notes.tmp-1", "notes.txt",
                                                     "render.mp4"]


def test_export_and_view_of_a_folder_an_overwrite_left_aside_say_where_the_previous_run_is(tmp_path):
    """A `wbcap run --overwrite` killed before its first frames leaves the previous run in
    .wbcap-previous/ until the next run on the folder: `wbcap export` said "is this a finished
    run folder?" and `wbcap view` "finish it with --resume" (found by a user trial); both name
    the set-aside run and how to get it back."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.io.run_folder import PREVIOUS_DIR

    out = tmp_path / "out"
    out.mkdir()
    _previous_run(out)
    prepare_output(out, {"source": "new"}, resume=False, overwrite=True)  # (then killed: no frame)
    for args in (["export", str(out), "--format", "npz"], ["view", str(out), "--html", str(tmp_path / "v.html")]):
        r = CliRunner().invoke(cli, args)
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert lines[0].endswith(f"set the previous run aside in {out / PREVIOUS_DIR}: any `wbcap run` on {out} "
                                 "first puts it back: its command with --resume keeps it (continued where it stopped), "
                                 "with --overwrite it is replaced"), lines[0]


def test_a_setting_only_the_recorded_run_has_is_named(tmp_path, monkeypatch):
    """`--fps 25` is recorded (as ``image_fps``) only when it is not the default: resuming without
    it was refused as "different settings ()", naming nothing."""
    from wbcap.video_app import VideoJob, _fingerprint

    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    job = VideoJob(source="frames/*.png", out="out", image_fps=25.0)
    prepare_output(tmp_path / "out", _fingerprint(job), resume=False, overwrite=False)
    with pytest.raises(InputError, match=r"different settings \(image_fps: 25\.0 in the run, not set now\); give "):
        prepare_output(tmp_path / "out", _fingerprint(replace(job, image_fps=30.0)), resume=True, overwrite=False)


def test_the_early_check_of_a_folder_says_nothing_of_locks_twice(tmp_path, monkeypatch, caplog):
    """Where flock is refused on folders (NFS), the early taken-folder check, which holds the
    folder a moment, said "cannot lock the folder" a second time: only the real hold says it."""
    import errno
    import fcntl
    import logging

    from wbcap.io.run_folder import hold_folder, refuse_taken_output

    def refused(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refused)
    (tmp_path / "out").mkdir()
    with caplog.at_level(logging.WARNING):
        refuse_taken_output(tmp_path / "out")
        with hold_folder(tmp_path / "out"):
            pass
    assert [r.getMessage() for r in caplog.records].count(
        f"{tmp_path / 'out'}: cannot lock the folder (No locks available), so another wbcap process writing it at the "
        "same time would not be noticed") == 1


@pytest.mark.parametrize("reader", [False, True])
def test_a_forked_child_does_not_keep_the_folder_locked(tmp_path, reader):
    """A process forked while OUT is held (a DataLoader worker) closes its copy of the lock: a killed
    wbcap train's workers kept OUT locked, and a rerun was refused meanwhile (a training trial)."""
    import signal

    from wbcap.io.run_folder import hold_folder, reading_folder

    out = tmp_path / "out"
    out.mkdir()
    read, write = os.pipe()
    with (reading_folder(out, then="again") if reader else hold_folder(out)):
        pid = os.fork()
        if pid == 0:  # the child: started (its at-fork hooks ran), then lives on
            os.write(write, b"x")
            time.sleep(30)
            os._exit(0)
        assert os.read(read, 1) == b"x"
    try:
        with hold_folder(out):  # (the child still lives: it must not hold OUT)
            pass
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        os.close(write)


def test_a_resume_with_another_source_names_the_source_not_its_file_stamps(tmp_path, monkeypatch):
    """The refusal listed the internal keys source_mtime and source_size beside the source."""
    from wbcap.video_app import VideoJob, _fingerprint

    (tmp_path / "out").mkdir()
    for name, size in (("a.mp4", 10), ("b.mp4", 20)):
        (tmp_path / name).write_bytes(b"x" * size)
    monkeypatch.chdir(tmp_path)
    job = VideoJob(source="a.mp4", out="out")
    prepare_output(tmp_path / "out", _fingerprint(job), resume=False, overwrite=False)
    with pytest.raises(InputError) as err:
        prepare_output(tmp_path / "out", _fingerprint(replace(job, source="b.mp4")), resume=True, overwrite=False)
    said = str(err.value)
    assert f'different settings (source: "{tmp_path / "a.mp4"}" in the run, "{tmp_path / "b.mp4"}" now); it began with ' \
           "another source, and a run continues only from the source it began with" in said and "source_" not in said, said


def test_a_pass_2_mark_says_the_outputs_may_be_missing_until_it_is_done(tmp_path):
    from wbcap.io.run_folder import done_writing, start_writing, unfinished_outputs_note

    out = tmp_path / "out"
    out.mkdir()
    assert unfinished_outputs_note(out) is None
    start_writing(out)
    assert unfinished_outputs_note(out) == (
        f"{out}: its run was stopped while writing its outputs, so some may be missing (render.mp4, animation files); "
        f"finish them with `wbcap run SOURCE -o {out} --resume` and the run's pass-1 flags")
    (out / ".wbcap" / "run.json").write_text(json.dumps({"source": "/clips/walk.mp4"}))
    assert f"`wbcap run /clips/walk.mp4 -o {out} --resume`" in unfinished_outputs_note(out)
    done_writing(out)
    assert unfinished_outputs_note(out) is None and not (out / ".wbcap" / "writing").exists()


def test_variables_finding_names_those_that_hold_a_file_of_the_run(tmp_path, monkeypatch):
    """The variables a finish hint sets (wbcap.paths.variables_finding): those naming a file of the
    run or a folder above one, links resolved; unset, empty or unrelated ones not."""
    from wbcap.paths import variables_finding

    home, models, other = tmp_path / "home", tmp_path / "models", tmp_path / "other"
    for folder in (home / "weights", models / "smplx", other):
        folder.mkdir(parents=True)
    ckpt = home / "weights" / "snapshot_6.pth.tar"
    ckpt.write_bytes(b"x")
    model = models / "smplx" / "SMPLX_NEUTRAL.npz"
    model.write_bytes(b"x")
    (tmp_path / "link").symlink_to(models)
    monkeypatch.setenv("WBCAP_HOME", str(home))
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(tmp_path / "link"))
    monkeypatch.setenv("WBCAP_WEIGHTS", "")
    assert variables_finding([ckpt, model]) == {"WBCAP_HOME": str(home), "WBCAP_BODY_MODELS": str(tmp_path / "link")}
    assert variables_finding([str(model)]) == {"WBCAP_BODY_MODELS": str(tmp_path / "link")}
    monkeypatch.setenv("WBCAP_WEIGHTS", str(ckpt))  # (a variable naming the file itself)
    monkeypatch.setenv("WBCAP_HOME", str(other))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WBCAP_BODY_MODELS", "models")  # (relative: recorded absolute)
    assert variables_finding([ckpt, model]) == {"WBCAP_WEIGHTS": str(ckpt), "WBCAP_BODY_MODELS": str(models)}
    assert variables_finding([]) == {}


def test_the_command_record_names_the_variable_that_found_the_detector(tmp_path, monkeypatch):
    """`--detector auto` (or a YOLOX name) finds its weights in WBCAP_HOME or WBCAP_WEIGHTS; a
    resume from a shell without them fetched them again or fell back to another detector (a
    review): the record names the variable; with --checkpoint and --body-models given, only it."""
    from types import SimpleNamespace

    from wbcap.video_app import VideoJob, _command

    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "yolox_nano.onnx").write_bytes(b"x")
    ckpt = tmp_path / "given.pth.tar"
    ckpt.write_bytes(b"x")
    monkeypatch.setenv("WBCAP_HOME", str(home))
    job = VideoJob(source="v.mp4", out=str(tmp_path / "out"), command=("run", "v.mp4"))
    files = {"checkpoint": {"path": str(ckpt)}, "body_model_file": None}
    yolox = SimpleNamespace(model_path=home / "weights" / "yolox_nano.onnx")
    assert _command(job, files, yolox)["env"] == {"WBCAP_HOME": str(home)}
    assert "env" not in _command(job, files, SimpleNamespace())  # (a detector without weights: full, boxes:FILE)
    assert "env" not in _command(job, files)
    # the hint sets the recorded variables, quoted, before the command (after the cd)
    import shlex

    from wbcap.io.run_folder import prepare_output, unfinished_run_note
    from wbcap.video_app import _fingerprint

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    command = {"argv": ["run", "v.mp4", "-o", "out"], "cwd": str(tmp_path), "out": str(out),
               "env": {"WBCAP_HOME": str(tmp_path / "my home"), "WBCAP_WEIGHTS": "", "PATH": "/evil"}}
    prepare_output(out, _fingerprint(job), resume=False, overwrite=False, command=command)
    assert unfinished_run_note(out) == (f" yet (interrupted?); finish it with `WBCAP_HOME="
                                        f"{shlex.quote(str(tmp_path / 'my home'))} wbcap run v.mp4 -o out --resume`")


def test_the_hint_to_finish_a_run_gives_the_last_command_that_ran_it(tmp_path, monkeypatch):
    """`wbcap export` / `view` of an interrupted run said "finish it with `wbcap run SOURCE -o OUT
    --resume`", which a resume then refused for want of the run's pass-1 flags (a user trial).
    run.json records the last command's words, working folder and output folder (no setting to
    match): the hint is that command, without --overwrite, with --resume, after a `cd` when run
    elsewhere; a resume from the Python API keeps it; a folder moved or copied since gets its own
    -o (a review, then a second trial: the words named the old folder); a damaged record gives the
    old hint."""
    import shlex

    from wbcap.io.run_folder import prepare_output, unfinished_outputs_note, unfinished_run_note
    from wbcap.video_app import VideoJob, _fingerprint

    (tmp_path / "my clip.mp4").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    words = ["-q", "run", "my clip.mp4", "-o", "out", "--max-frames", "200", "--overwrite"]
    fp = _fingerprint(VideoJob(source="my clip.mp4", out="out", max_frames=200))
    command = {"argv": words, "cwd": str(tmp_path), "out": str(out)}
    prepare_output(out, fp, resume=False, overwrite=False, command=command)
    finish = "wbcap -q run 'my clip.mp4' -o out --max-frames 200 --resume"
    assert unfinished_run_note(out) == f" yet (interrupted?); finish it with `{finish}`"
    prepare_output(out, fp, resume=True, overwrite=False)  # (the Python API's resume: the command kept)
    assert unfinished_run_note(out) == f" yet (interrupted?); finish it with `{finish}`"
    resumed = ["run", "my clip.mp4", "-o", "out", "--max-frames", "200", "--resume", "--sigma", "3"]
    prepare_output(out, fp, resume=True, overwrite=False, command={**command, "argv": resumed})
    finish = "wbcap run 'my clip.mp4' -o out --max-frames 200 --sigma 3 --resume"  # (its pass-2 flags too)
    assert unfinished_run_note(out) == f" yet (interrupted?); finish it with `{finish}`"
    elsewhere = tmp_path / "other place"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert unfinished_run_note(out) == f" yet (interrupted?); finish it with `cd {shlex.quote(str(tmp_path))} && {finish}`"
    (out / ".wbcap" / "writing").write_bytes(b"")
    assert unfinished_outputs_note(out).endswith(f"finish them with `cd {shlex.quote(str(tmp_path))} && {finish}`")
    old_hint = (f" yet (interrupted?); finish it with `wbcap run {shlex.quote(str(tmp_path / 'my clip.mp4'))} -o {{}} "
                "--resume` and the run's pass-1 flags")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # (its command names out: -o names the copy now)
    assert unfinished_run_note(copy) == (f" yet (interrupted?); finish it with `cd {shlex.quote(str(tmp_path))} && "
                                         f"wbcap run 'my clip.mp4' -o {copy} --max-frames 200 --sigma 3 --resume`")
    from wbcap.io.run_folder import _with_out

    for words, now in ((["run", "a.mp4", "--out", "x"], ["run", "a.mp4", "--out", "/n"]),
                       (["run", "a.mp4", "--out=x"], ["run", "a.mp4", "--out=/n"]),
                       (["run", "a.mp4", "-ox", "--every", "2"], ["run", "a.mp4", "-o/n", "--every", "2"]),
                       (["-q", "run", "a.mp4"], ["-q", "run", "a.mp4", "-o", "/n"])):  # (the default folder)
        assert _with_out(words, "/n") == now
    run_json = out / ".wbcap" / "run.json"
    damaged = {**json.loads(run_json.read_text()), "command": {"argv": "run x", "cwd": str(tmp_path), "out": str(out)}}
    run_json.write_text(json.dumps(damaged))
    assert unfinished_run_note(out) == old_hint.format(out)


@pytest.mark.parametrize("source", ["frames", "frames/*.png"])
def test_an_image_sequence_is_resumed_by_its_images_stamps_not_its_folders(tmp_path, monkeypatch, source):
    """A user trial: run.json held the folder's own size and mtime, so a resume went on after
    images were rewritten in place (mixing old and new pictures), and was refused after a hidden
    file was made and deleted beside them. The images' stamps are what count."""
    from wbcap.video_app import VideoJob, _fingerprint

    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):
        (frames / f"{k:04d}.png").write_bytes(b"png" * (k + 1))
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    job = VideoJob(source=source, out="out")
    fp = _fingerprint(job)
    assert fp["source_size"] == 3 * (1 + 2 + 3 + 4) and fp["source_files"].startswith("4 images, sha256 ")
    prepare_output(tmp_path / "out", fp, resume=False, overwrite=False)
    # the folder changed, its images did not: resumed
    (frames / ".DS_Store").write_bytes(b"x")
    (frames / ".DS_Store").unlink()
    os.utime(frames, (1, 1))
    prepare_output(tmp_path / "out", _fingerprint(job), resume=True, overwrite=False)
    # an image added: refused; taken away again: resumed
    (frames / "0009.png").write_bytes(b"p")
    with pytest.raises(InputError, match="its source changed"):
        prepare_output(tmp_path / "out", _fingerprint(job), resume=True, overwrite=False)
    (frames / "0009.png").unlink()
    prepare_output(tmp_path / "out", _fingerprint(job), resume=True, overwrite=False)
    # an image rewritten in place (same size, later mtime): refused, in words
    (frames / "0002.png").write_bytes(b"PNG" * 3)
    os.utime(frames / "0002.png", (2e9, 2e9))
    with pytest.raises(InputError) as err:
        prepare_output(tmp_path / "out", _fingerprint(job), resume=True, overwrite=False)
    said = str(err.value)
    assert "(its images (which, their sizes or modification times)); its source changed since that run began" in said
    assert "source_" not in said, said


def test_an_image_sequence_run_of_an_older_wbcap_resumes(tmp_path, monkeypatch):
    """A run.json an older wbcap wrote for an image folder holds the folder's own stamps and no
    source_files: resumed as then, unchecked (they say nothing of the images)."""
    from wbcap.io.run_folder import RUN_DIR, RUN_FILE
    from wbcap.video_app import VideoJob, _fingerprint

    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0.png").write_bytes(b"png")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    job = VideoJob(source="frames", out="out")
    prepare_output(tmp_path / "out", _fingerprint(job), resume=False, overwrite=False)
    run_file = tmp_path / "out" / RUN_DIR / RUN_FILE
    old = json.loads(run_file.read_text())
    del old["source_files"]
    old.update(source_size=4096, source_mtime=12345)
    run_file.write_text(json.dumps(old))
    prepare_output(tmp_path / "out", _fingerprint(job), resume=True, overwrite=False)


def test_a_folder_of_photo_results_is_named_as_such(tmp_path):
    """A user trial: `wbcap run -o` a folder of `wbcap image` results said it "holds files wbcap
    did not write"; wbcap wrote them. Anything else beside them is still what wbcap did not write."""
    from wbcap.io.run_folder import refuse_taken_output

    out = tmp_path / "photos"
    (out / "messi" / "person_0").mkdir(parents=True)
    (out / "messi" / "person_0" / "output.obj").write_text("v 0 0 0\n")
    with pytest.raises(InputError) as err:
        refuse_taken_output(out)
    assert str(err.value) == f"{out} holds `wbcap image` results (e.g. messi/); choose another output folder (a new or empty one)"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds files wbcap did not write"):
        refuse_taken_output(out)


def test_an_image_that_vanishes_while_the_sequence_is_listed_is_one_line(tmp_path, monkeypatch):
    """A review: an image deleted between the listing and its stat was a crash (FileNotFoundError)."""
    import wbcap.io.images
    from wbcap.io.run_folder import fingerprint

    (tmp_path / "frames").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "frames" / name).write_bytes(b"png")
    listing = wbcap.io.images.iter_image_paths

    def racing(*args, **kwargs):
        found = listing(*args, **kwargs)
        (tmp_path / "frames" / "b.png").unlink()
        return found

    monkeypatch.setattr(wbcap.io.images, "iter_image_paths", racing)
    with pytest.raises(InputError) as err:
        fingerprint(str(tmp_path / "frames"), {})
    assert str(err.value) == (f"{tmp_path / 'frames' / 'b.png'}: an image of {tmp_path / 'frames'} changed while it "
                              "was listed (No such file or directory); run the command again once it is settled")


def test_a_resume_missing_both_files_names_the_model_and_checkpoint_its_run_recorded(tmp_path, monkeypatch):
    """A break-it trial: a run made with --body-models and --checkpoint, resumed without them, was
    told to download the checkpoint it had given (then, after the model's fix, refused for its
    absence). The recorded checkpoint is now named with the model, and both paths quoted."""
    import json

    from wbcap.body.model_files import BodyModelNotFoundError
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.io.run_folder import missing_body_model
    from wbcap.pipeline import check_model_files

    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    models, ckpt = tmp_path / "bm x", tmp_path / "w x" / "snapshot_6.pth.tar"
    (models / "smplx").mkdir(parents=True)
    (models / "smplx" / "SMPLX_NEUTRAL.npz").write_bytes(b"stand-in")
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"stand-in")
    out = tmp_path / "run"
    (out / ".wbcap").mkdir(parents=True)
    (out / ".wbcap" / "run.json").write_text(json.dumps({
        "body": {"path": str(models), "gender": "neutral", "allow_pickle": False},
        "body_model_file": str(models / "smplx" / "SMPLX_NEUTRAL.npz"), "checkpoint": str(ckpt)}))
    with pytest.raises(BodyModelNotFoundError) as exc:
        check_model_files(PipelineConfig(body=BodyModelConfig(path=None)))
    from wbcap.errors import spelling

    def as_the_cli_spells(name):
        return "--" + name.replace("_", "-")

    with spelling(as_the_cli_spells):
        said = str(missing_body_model(exc.value, out, resume=True))
    assert said.endswith(f"says the run was made with the SMPL-X model {models} and the checkpoint {ckpt}: resume "
                         f"with --body-models '{models}' --checkpoint '{ckpt}'"), said
    assert "no hand4whole checkpoint" not in said
    ckpt.unlink()  # (the recorded checkpoint gone too: the search's message, as before)
    with spelling(as_the_cli_spells):
        said = str(missing_body_model(exc.value, out, resume=True))
    assert said.endswith(f"resume with --body-models '{models}'; and for the network's checkpoint: "
                         f"{exc.value.checkpoint_error}"), said


def test_a_pass_1_record_that_is_not_a_file_is_no_record_and_no_crash(tmp_path):
    """A break-it trial: a folder named `.wbcap/pass1.json` crashed `--resume` (IsADirectoryError)."""
    from wbcap.io.run_folder import clear_pass_one_done, mark_pass_one_done, pass_one_done, raw_path

    out = tmp_path / "run"
    raw_path(out).parent.mkdir(parents=True)
    raw_path(out).write_text('{"frame": 0}\n')
    mark_pass_one_done(out, 1)
    assert pass_one_done(out) == 1
    raw_path(out).write_text('{"frame": 0}\n{"frame": 1}\n')  # (the raw file changed since)
    assert pass_one_done(out) is None
    clear_pass_one_done(out)
    (out / ".wbcap" / "pass1.json").mkdir()
    clear_pass_one_done(out)  # (it cannot go: no error)
    assert pass_one_done(out) is None
    mark_pass_one_done(out, 2)  # (best effort: not recorded, no error)
    assert pass_one_done(out) is None


def test_a_damaged_detector_record_is_refused_not_skipped(tmp_path):
    """run.json's detector_used (the detector pass 1 ran) of another kind than a name: damage,
    refused in one line, as a damaged file record is (it would skip the resume's detector check)."""
    from wbcap.errors import InputError
    from wbcap.io.run_folder import prepare_output

    out = tmp_path / "out"
    fp = {"source": str(tmp_path / "v.mp4"), "every": 1}
    out.mkdir()
    prepare_output(out, fp, resume=False, overwrite=False, detector="yolox-nano")
    run_file = out / ".wbcap" / "run.json"
    run = json.loads(run_file.read_text())
    assert run["detector_used"] == "yolox-nano"
    prepare_output(out, fp, resume=True, overwrite=False, detector="yolox-nano")  # (the same: resumes)
    with pytest.raises(InputError, match="would run hog"):
        prepare_output(out, fp, resume=True, overwrite=False, detector="hog")
    for damaged in (7, "", "x" * 201):
        run_file.write_text(json.dumps({**run, "detector_used": damaged}))
        with pytest.raises(InputError, match=r"a damaged detector_used \(.{1,60}, where wbcap writes a detector's name\)"):
            prepare_output(out, fp, resume=True, overwrite=False, detector="hog")
    # a run recorded without it (an older wbcap) resumes unchecked and records none: which detector
    # its first frames had is not known (a break-it trial: it recorded hog for a YOLOX run)
    run_file.write_text(json.dumps({k: v for k, v in run.items() if k != "detector_used"}))
    prepare_output(out, fp, resume=True, overwrite=False, detector="hog")
    assert "detector_used" not in json.loads(run_file.read_text())


def test_an_npz_of_every_wbcap_version_is_wbcaps_and_amass_own_is_not(tmp_path):
    """wbcap's npz as its first versions wrote it (2026-11-24: frame_indices and times beside
    AMASS's keys; 2026-11-29: no camera_rotation, which a later version added and the mark
    required, so a `--dest` refused an earlier export's npz as a user's) is wbcap's; an AMASS file
    of AMASS's own keys, one with only some of wbcap's, is not."""
    import numpy as np

    from wbcap.io.run_folder import written_by_wbcap

    amass = {"poses": np.zeros((2, 165), np.float32), "trans": np.zeros((2, 3), np.float32),
             "betas": np.zeros(16, np.float32), "gender": np.array("neutral"), "mocap_framerate": np.array(30.0),
             "surface_model_type": np.array("smplx")}
    first = {**amass, "valid": np.ones(2, bool), "times": np.arange(2) / 30, "frame_indices": np.arange(2),
             "up_axis": np.array("z"), "flat_hand_mean": np.array(True)}
    oldest = {**amass, "expression": np.zeros((2, 10)), "mocap_frame_rate": np.array(30.0),
              "frame_indices": np.arange(2), "times": np.arange(2) / 30}
    for name, arrays, ours in (("first.npz", first, True), ("oldest.npz", oldest, True), ("amass.npz", amass, False),
                               ("some.npz", {**amass, "valid": np.ones(2, bool), "times": np.arange(2) / 30}, False)):
        np.savez(tmp_path / name, **arrays)
        assert written_by_wbcap(tmp_path / name) is ours, name


def test_a_world_c3d_with_many_gait_events_is_still_wbcaps(tmp_path):
    """A --world C3D of a long walk: its gait events come before the WBCAP group in the parameter
    section, past the first 12 kB that were searched for it (a review: a 40 s clip's own C3D was
    kept by a resume as a user's, and refused --overwrite)."""
    import numpy as np

    from wbcap.export.c3d_file import write_c3d
    from wbcap.export.clip import MotionClip
    from wbcap.io.run_folder import written_by_wbcap

    n = 1200  # (40 s at 30 fps, a step every half second per foot)
    contact = np.stack([(np.arange(n) // 15) % 2 == 0, (np.arange(n) // 15) % 2 == 1], 1)
    clip = MotionClip(name="track_0", times=np.arange(n) / 30, fps=30.0, poses=np.zeros((n, 55, 3)),
                      transl=np.zeros((n, 3)), expression=np.zeros((n, 10)), betas=np.zeros(10),
                      valid=np.ones(n, bool), frame_indices=np.arange(n), up="z", rest_root=np.zeros(3),
                      frame="world")
    joints = np.zeros((n, 144, 3))
    joints[:, :, 2] = np.linspace(0, 1.7, 144)
    path = write_c3d(tmp_path / "track_0.c3d", None, clip, joints=joints, contact=contact)
    data = path.read_bytes()
    assert data.index(b"WBCAP") > 12288  # (past where the search stopped)
    assert written_by_wbcap(path)
