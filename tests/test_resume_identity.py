"""A run resumes only with the files it began with, and a folder a wbcap process writes is not read.

1. `--resume` after the checkpoint (or the SMPL-X model, or the box file) was replaced at the
   same path: refused in one line naming the file, what changed and the fix (it was accepted,
   and params.jsonl mixed two networks' results). The file put back (a copy keeping its size and
   mtime) resumes; a run.json of an older wbcap (no identities) resumes unchecked.
2. `wbcap view` and `wbcap export --dest` of a folder another wbcap process holds (a run in pass 2,
   simulated by taking its lock here: flock is per open file, so a second open in this process is
   another holder) are refused in one line; they were allowed (a page without its video, GLBs of
   two passes). A served page does not keep the folder held: a later `wbcap run --resume` may take it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli_run import run, two_walkers

from wbcap.cli import cli
from wbcap.testing.videos import write_video

IDENTITY = "file_identity"  # (wbcap.io.run_folder.FILE_IDENTITY: run.json's key, a file format)


def lines_of(r) -> list[str]:
    return [x for x in r.output.splitlines() if x.strip()]


@pytest.fixture()
def made_run(tmp_path, micro_ckpt, body_dir):
    """A 4-frame run made with its own copies of the checkpoint, the SMPL-X model and a box file;
    returns (video, out, args, files by role)."""
    frames, boxes = two_walkers(4)
    video = write_video(tmp_path / "walk.mp4", frames)
    files = {"checkpoint": tmp_path / "ck.pth", "boxes": tmp_path / "boxes.json"}
    shutil.copy2(micro_ckpt, files["checkpoint"])
    shutil.copytree(body_dir, tmp_path / "models")
    files["body"] = tmp_path / "models" / "smplx" / "SMPLX_NEUTRAL.npz"
    files["boxes"].write_text(json.dumps(boxes))
    out = tmp_path / "out"
    args = ["--detector", f"boxes:{files['boxes']}", "--checkpoint", files["checkpoint"], "--body-models",
            tmp_path / "models", "--no-render", "--export", "none", "--min-track", "1", "--device", "cpu"]
    r = run("run", video, "-o", out, *args)
    assert r.exit_code == 0, r.output
    return video, out, args, files


def interrupt(out: Path, keep: int = 2) -> list[str]:
    """`out` as a run stopped after ``keep`` frames leaves it; returns the raw lines kept."""
    raw = out / ".wbcap" / "raw.jsonl"
    lines = raw.read_text().splitlines(keepends=True)[:keep]
    raw.write_text("".join(lines))
    return lines


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path`` in place (as `cp other path` does), its mtime a minute later."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, (st.st_atime, st.st_mtime + 60))


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
@pytest.mark.parametrize("role", ["checkpoint", pytest.param("boxes", marks=pytest.mark.slow)])
def test_resume_refuses_a_file_replaced_at_the_same_path(made_run, micro_ckpt_raw, role):
    video, out, args, files = made_run
    kept = interrupt(out)
    path = files[role]
    backup = path.with_name(path.name + ".orig")
    shutil.copy2(path, backup)
    recorded = (out / ".wbcap" / "run.json").read_text()
    other = {"checkpoint": Path(micro_ckpt_raw).read_bytes(), "boxes": b'{"0": [[10, 20, 80, 200]]}'}
    replace(path, other[role])
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), "--resume", *map(str, args)])
    lines = lines_of(r)
    assert r.exit_code == 2 and len(lines) == 1, r.output
    label = {"checkpoint": "checkpoint", "body": "SMPL-X model", "boxes": "--detector"}[role]
    assert lines[0].startswith(f"error: {path}: the {label} file changed since the run in {out} began ("), r.output
    assert "modified " in lines[0] and "other content" in lines[0], r.output
    assert "put back the file it was made with" in lines[0], r.output
    assert "--overwrite" in lines[0] and "Traceback" not in r.output
    assert (out / ".wbcap" / "raw.jsonl").read_text() == "".join(kept)  # nothing regressed with the new file
    assert (out / ".wbcap" / "run.json").read_text() == recorded
    shutil.copy2(backup, path)  # put back (a copy: new inode and ctime, same size and mtime)
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    assert len((out / ".wbcap" / "raw.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow  # (a run and a resume; the fast loop keeps the refusal and the touched file)
def test_run_json_records_each_file_and_an_older_one_resumes_unchecked(made_run, micro_ckpt_raw):
    video, out, args, files = made_run
    run_json = out / ".wbcap" / "run.json"
    recorded = json.loads(run_json.read_text())
    for role, path in (("checkpoint", files["checkpoint"]), ("body_model_file", files["body"]),
                       ("detector", files["boxes"])):
        st = path.stat()
        identity = recorded[IDENTITY][role]
        assert {k: identity[k] for k in ("path", "size", "mtime")} == {"path": str(path), "size": st.st_size,
                                                                        "mtime": int(st.st_mtime)}
        assert len(identity["sample"]) == 64  # (sha256 of its sampled content)
    assert recorded["checkpoint"] == str(files["checkpoint"])  # (export and view read the paths as before)
    assert recorded["body_model_file"] == str(files["body"])
    interrupt(out)
    older = {k: v for k, v in recorded.items() if k != IDENTITY}  # run.json of a wbcap before the record
    run_json.write_text(json.dumps(older))
    replace(files["checkpoint"], Path(micro_ckpt_raw).read_bytes())
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output  # (nothing to check it against)
    now = json.loads(run_json.read_text())[IDENTITY]["checkpoint"]
    assert now["mtime"] == int(files["checkpoint"].stat().st_mtime) != recorded[IDENTITY]["checkpoint"]["mtime"]


# --------------------------------------------------------------------------- a folder another process writes


@pytest.fixture()
def finished(made_run):
    return made_run[1]


def test_view_of_a_folder_a_run_writes_is_refused(finished, tmp_path, monkeypatch):
    from wbcap.io.run_folder import hold_folder

    page = tmp_path / "share" / "p.html"
    with hold_folder(finished):
        r = CliRunner().invoke(cli, ["view", str(finished), "--html", str(page)])
    lines = lines_of(r)
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (f"error: {finished} is in use by another wbcap process (one still writing it); wait for it "
                        "to finish, then view it again"), r.output
    assert not (tmp_path / "share").exists()
    r = CliRunner().invoke(cli, ["view", str(finished), "--html", str(page)])  # nothing holds it: as ever
    assert r.exit_code == 0 and page.is_file(), r.output
    served = []

    def stop_at_once(server):
        served.append(server.url)

    import wbcap.view.server

    monkeypatch.setattr(wbcap.view.server.ViewServer, "wait", stop_at_once)
    with hold_folder(finished):
        r = CliRunner().invoke(cli, ["view", str(finished)])
    assert r.exit_code == 2 and "in use by another wbcap process" in r.output and served == [], r.output


def test_a_served_page_does_not_keep_a_later_run_out(finished, monkeypatch):
    """The page is built holding the folder shared and serves after letting it go; it keeps
    serving the files it was built from when a later run rewrites the run's (it served the new
    ones beside its old manifest: symbolic links). Here the served folder and the run share a
    file system, so the page holds hard links."""
    import urllib.request

    from wbcap.errors import InputError
    from wbcap.io.run_folder import hold_folder

    assert run("export", finished, "--format", "glb").exit_code == 0  # (the run's GLBs, which the page links)
    taken, served = [], []
    glb = next(finished.glob("track_*.glb"))
    before = glb.read_bytes()

    def take_it(server):
        try:
            with hold_folder(finished):  # what `wbcap run --resume` takes
                taken.append("taken")
                glb.unlink()  # (its pass 2 removes the outputs, then writes new ones)
                glb.write_bytes(b"new")
        except InputError as exc:
            taken.append(str(exc))
        url = server.url.rsplit("/", 1)[0] + "/" + next(str(p.relative_to(server.folder)) for p in server.folder.rglob(glb.name))
        with urllib.request.urlopen(url) as resp:
            served.append(resp.read())

    import wbcap.view.server

    monkeypatch.setattr(wbcap.view.server.ViewServer, "wait", take_it)
    r = CliRunner().invoke(cli, ["view", str(finished)])
    assert r.exit_code == 0 and taken == ["taken"], (r.output, taken)
    assert served == [before]


@pytest.mark.slow  # (a run; view's refusal, in the fast loop, takes the same lock)
def test_overwrite_of_a_folder_a_run_writes_is_refused_before_the_model_loads(made_run, monkeypatch):
    """`wbcap run --overwrite` of a folder another wbcap process writes loaded the model and the
    detector (seconds) before saying so (a user trial): said first now, nothing changed."""
    import wbcap.video_app
    from wbcap.io.run_folder import hold_folder

    video, out, args, _ = made_run
    before = sorted(p.name for p in out.iterdir())
    monkeypatch.setattr(wbcap.video_app, "_load_pipeline", lambda *a, **k: pytest.fail("the model loaded first"))
    with hold_folder(out):
        r = run("run", video, "-o", out, "--overwrite", *args)
    lines = lines_of(r)
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(
        f"error: {out} is in use by another wbcap process (one still writing or reading it)"), r.output
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.slow  # (a run; view's refusal, in the fast loop, takes the same lock)
def test_export_dest_of_a_folder_a_run_writes_is_refused(finished, tmp_path, body_dir):
    from wbcap.io.run_folder import hold_folder

    dest = tmp_path / "elsewhere"
    args = ["export", str(finished), "--format", "glb", "--dest", str(dest), "--body-models", str(body_dir)]
    with hold_folder(finished):
        r = CliRunner().invoke(cli, args)
    lines = lines_of(r)
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (f"error: {finished} is in use by another wbcap process (one still writing it); wait for it "
                        "to finish, then export it again"), r.output
    assert not dest.exists()
    from wbcap.io.run_folder import reading_folder

    with reading_folder(finished, then="view it again"):  # another reader (a view being built): no matter
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and sorted(p.name for p in dest.iterdir()) == ["track_0.glb", "track_1.glb"], r.output


@pytest.mark.slow  # fast loop under 2 minutes
def test_the_same_file_touched_or_copied_afresh_resumes(made_run):
    """A newer mtime alone is no other file: a `touch` or a fresh copy of the same file (`wbcap
    weights import` of the same release, a regenerated model cache) resumes. It was refused."""
    video, out, args, files = made_run
    for role in ("checkpoint", "body"):
        interrupt(out)
        replace(files[role], files[role].read_bytes())  # (a minute newer, the same bytes)
        r = run("run", video, "-o", out, "--resume", *args)
        assert r.exit_code == 0, (role, r.output)
        assert len((out / ".wbcap" / "raw.jsonl").read_text().splitlines()) == 4



def test_a_folder_that_cannot_be_locked_is_warned_about_by_its_writer_only(tmp_path, monkeypatch, caplog):
    """On a file system without flock (NFS) one `wbcap view` warned up to three times, once per
    read of the folder; the run writing it warns, readers only in the debug log."""
    import errno
    import fcntl
    import logging

    from wbcap.io.run_folder import hold_folder, reading_folder

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with caplog.at_level(logging.DEBUG, logger="wbcap.io.run_folder"):
        for _ in range(3):
            with reading_folder(tmp_path, then="view it again"):
                pass
        with hold_folder(tmp_path):
            pass
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "cannot lock the folder" in r.getMessage()]
    assert [level for level, _ in said] == [logging.DEBUG] * 3 + [logging.WARNING], said


def test_the_content_sample_decides_when_both_sides_have_one(tmp_path):
    """A file rewritten with other bytes of the same size and given its recorded mtime back was the
    same file for a resume (path, size and mtime matched; a break-it trial): the sample decides."""
    from wbcap.errors import InputError
    from wbcap.io.run_folder import check_same_files, file_identity

    model = tmp_path / "m.npz"
    model.write_bytes(b"a" * 4096)
    recorded = {"body_model_file": file_identity(model)}
    stamp = model.stat().st_mtime
    model.write_bytes(b"b" * 4096)
    os.utime(model, (stamp, stamp))
    with pytest.raises(InputError, match="the SMPL-X model file changed since the run"):
        check_same_files(tmp_path, recorded, {"body_model_file": file_identity(model)})
    model.write_bytes(b"a" * 4096)  # the same bytes back, another mtime: the same file
    check_same_files(tmp_path, recorded, {"body_model_file": file_identity(model)})
    unsampled = {"body_model_file": {k: v for k, v in recorded["body_model_file"].items() if k != "sample"}}
    os.utime(model, (stamp, stamp))  # (an older record without a sample: path, size and mtime)
    check_same_files(tmp_path, unsampled, {"body_model_file": file_identity(model)})
