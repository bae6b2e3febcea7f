"""`wbcap run --export` and `wbcap export RUN`: animation files per track, rebuilt from params.jsonl
exactly (no video decoding), and one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from clients import blender_missing, skip_or_fail
from test_cli_run import two_walkers

from wbcap.cli import cli
from wbcap.errors import InputError
from wbcap.testing.videos import write_video


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, micro_ckpt, body_dir):
    """A `wbcap run` of two generated walkers (6 frames, 10 fps), default --export (npz + glb)."""
    tmp = tmp_path_factory.mktemp("export_run")
    frames, boxes = two_walkers(6)
    video = write_video(tmp / "walk.mp4", frames)
    (tmp / "boxes.json").write_text(json.dumps(boxes))
    out = tmp / "out"
    r = invoke("run", video, "-o", out, "--detector", f"boxes:{tmp / 'boxes.json'}", "--min-track", "2", "--no-render",
               "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    return out


def glb_animation_times(path) -> np.ndarray:
    """Keyframe times of the first animation sampler of a GLB, read with pygltflib."""
    from pygltflib import GLTF2

    g = GLTF2().load_binary(str(path))
    acc = g.accessors[g.animations[0].samplers[0].input]
    view = g.bufferViews[acc.bufferView]
    blob = g.binary_blob()
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(blob[start:start + 4 * acc.count], np.float32)


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_run_writes_meta_npz_and_glb(finished_run):
    meta = json.loads((finished_run / "meta.json").read_text())
    assert meta["fps"] == 10.0 and meta["gender"] == "neutral" and meta["tracks"] == [0, 1]
    assert meta["camera"]["image_size"] == [320, 240] and meta["camera"]["princpt"] == [160.0, 120.0]
    for tid in (0, 1):
        npz = np.load(finished_run / f"track_{tid}.npz")
        times = glb_animation_times(finished_run / f"track_{tid}.glb")
        np.testing.assert_allclose(times, npz["times"], atol=1e-6)  # the same clock in both files


def test_overwrite_outside_a_run_deletes_only_track_files_wbcap_wrote(finished_run, tmp_path, body_dir):
    """A folder no run wrote (no .wbcap/): `wbcap run -o DIR --overwrite` deleted a user's own
    meta.json, params.jsonl and track_7.csv there, by their names (a hostile-input trial). Now
    only the track files wbcap's writers made (a `wbcap export --dest` folder's) are its."""
    from wbcap.io.run_folder import _our_outputs, prepare_output, refuse_taken_output

    dest = tmp_path / "exports"
    r = invoke("export", finished_run, "--format", "npz,glb,bvh,csv,trc,c3d", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    exported = sorted(dest.iterdir())
    assert len(exported) == 12 and _our_outputs(dest) == exported
    refuse_taken_output(dest, overwrite=True)  # (an export folder: may be replaced)
    (dest / ".track_1.tmp-0badc0de.glb").write_bytes(b"x")  # (a killed export's temporary: wbcap's)
    assert _our_outputs(dest) == [*exported, dest / ".track_1.tmp-0badc0de.glb"]
    (dest / ".track_1.tmp-0badc0de.glb").unlink()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "meta.json").write_text('{"study": 7}')
    (mine / "params.jsonl").write_text('{"subject": 1}\n')
    (mine / "track_7.csv").write_text("time,x\n0,1\n")
    np.savez(mine / "track_8.npz", poses=np.zeros((2, 165)), trans=np.zeros((2, 3)))  # (an AMASS file, not ours)
    (mine / "track_9.bvh").write_text("HIERARCHY\nROOT Hips\n")
    import ezc3d

    lab = ezc3d.c3d()  # (a lab's own C3D)
    lab["parameters"]["POINT"]["RATE"]["value"] = [100.0]
    lab["parameters"]["POINT"]["LABELS"]["value"] = ["RASI"]
    lab["data"]["points"] = np.ones((4, 1, 2))
    lab.write(str(mine / "track_3.c3d"))
    (mine / "track_6.trc").write_text(  # (Pose2Sim's own TRC: its markers in its skeleton's order)
        "PathFileType\t4\t(X/Y/Z)\ttrack_6.trc\nDataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\t"
        "OrigDataStartFrame\tOrigNumFrames\n30\t30\t1\t2\tm\t30\t0\t1\nFrame#\tTime\tCHip\t\t\tRHip\t\t\t\n"
        "\t\tX1\tY1\tZ1\tX2\tY2\tZ2\t\n0\t0.0\t0\t1\t0\t0\t1\t0.1\n")
    (mine / "track_4.glb").write_bytes((dest / "track_0.glb").read_bytes()[:100])  # (cut short)
    nested = b"[" * 200_000 + b"]" * 200_000  # (past Python's recursion limit: a review's crash)
    (mine / "track_5.glb").write_bytes(b"glTF" + (2).to_bytes(4, "little") + (20 + len(nested)).to_bytes(4, "little")
                                       + len(nested).to_bytes(4, "little") + b"JSON" + nested)
    (mine / ".track_notes.tmp-1").write_text("my notes")  # (not a temporary of wbcap's: a user trial's was deleted)
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    assert _our_outputs(mine) == []
    for check in (lambda: refuse_taken_output(mine, overwrite=True),
                  lambda: prepare_output(mine, {}, resume=False, overwrite=True)):
        with pytest.raises(InputError, match=f"^{re.escape(str(mine))} holds files wbcap did not write"):
            check()
        assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    for p in exported:  # (wbcap's track files beside the user's: still refused, nothing deleted)
        shutil.copy(p, mine / p.name)
    with pytest.raises(InputError, match="holds files wbcap did not write"):
        prepare_output(mine, {}, resume=False, overwrite=True)
    assert len(list(mine.iterdir())) == len(before) + len(exported)


def test_export_rebuilds_npz_exactly_and_writes_bvh(finished_run, tmp_path, body_dir):
    dest = tmp_path / "again"
    r = invoke("export", finished_run, "--format", "npz,bvh", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in dest.iterdir()) == ["track_0.bvh", "track_0.npz", "track_1.bvh", "track_1.npz"]
    for tid in (0, 1):
        a, b = np.load(finished_run / f"track_{tid}.npz"), np.load(dest / f"track_{tid}.npz")
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:  # params.jsonl holds float32 values exactly: the same file
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        text = (dest / f"track_{tid}.bvh").read_text()
        assert int(re.search(r"Frames:\s*(\d+)", text).group(1)) == len(a["poses"])
        assert float(re.search(r"Frame Time:\s*([0-9.eE+-]+)", text).group(1)) == pytest.approx(0.1, abs=1e-6)


def test_an_unwritable_dest_names_dest_as_the_fix(finished_run, tmp_path, body_dir):
    """export has no -o: its refusals said to choose another output folder (a paths trial)."""
    mine = tmp_path / "a_file"
    mine.write_text("mine")
    r = invoke("export", finished_run, "--format", "bvh", "--dest", mine / "sub", "--body-models", body_dir)
    assert r.exit_code == 2 and r.stderr == (f"error: {mine}: is a file, so {mine / 'sub'} cannot be created; pass "
                                             "--dest with a folder you can write in\n"), r.output
    link = tmp_path / "nowhere_link"
    link.symlink_to(tmp_path / "missing")
    r = invoke("export", finished_run, "--format", "bvh", "--dest", link / "x", "--body-models", body_dir)
    assert r.exit_code == 2 and r.stderr.endswith("create what it points to, or pass --dest with a folder you can "
                                                  "write in\n"), r.output
    assert mine.read_text() == "mine"


def test_export_root_bone_reaches_the_glb(finished_run, tmp_path, body_dir):
    """--root-bone: the GLB's skin gets `root` above the pelvis (its geometry: tests/test_export_gltf.py)."""
    from wbcap.export.gltf import glb_json

    r = invoke("export", finished_run, "--format", "glb", "--root-bone", "--track", "0", "--dest", tmp_path / "r",
               "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    doc = glb_json(str(tmp_path / "r" / "track_0.glb"))  # (a str path too: it raised AttributeError)
    assert doc["nodes"][55]["name"] == "root" and doc["nodes"][55]["children"] == [0]
    assert doc["skins"][0]["joints"] == list(range(56)) and doc["asset"]["extras"]["root_bone"] == "root"


@pytest.mark.slow  # the exporters' own tests run in the fast loop
def test_export_one_track_glb_and_fbx(finished_run, tmp_path, body_dir):
    from wbcap.export.fbx import blender_available

    dest = tmp_path / "one"
    formats = "glb,fbx" if blender_available() else "glb"
    # temporaries of an export killed there (a signal between a temporary folder's making and its
    # cleanup taking over left an empty one: a user trial) go; a user's own hidden file stays
    dest.mkdir()
    (dest / ".track_1.tmp-y80ck44t").mkdir()
    (dest / ".track_0.tmp-abcd1234.glb").write_bytes(b"glTF")
    (dest / ".mine").write_text("kept")
    r = invoke("export", finished_run, "--track", "1", "--format", formats, "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    want = ["track_1.fbx", "track_1.glb"] if blender_available() else ["track_1.glb"]
    assert sorted(p.name for p in dest.iterdir()) == [".mine", *want]  # no temporary or Blender log left
    np.testing.assert_allclose(glb_animation_times(dest / "track_1.glb"),
                               glb_animation_times(finished_run / "track_1.glb"), atol=0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "obj"], "--format obj: unknown format obj"),
        (["--track", "7"], "track 7: not in"),
        (["--format", "none"], "--format: no format to write; choose one or more of npz, glb, bvh, fbx, csv, angles, trc, c3d"),
        (["--format", ""], "--format: no format to write; choose one or more of npz, glb, bvh, fbx, csv, angles, trc, c3d"),
        (["--format", ","], "--format: no format to write; choose one or more of npz, glb, bvh, fbx, csv, angles, trc, c3d"),
        (["--format", "csv,none"], "--format csv,none: none means no animation files and cannot be combined with "
                                   "formats; give only the formats wanted"),  # (not none: export needs a format)
    ],
)
def test_export_bad_options_one_line(finished_run, tmp_path, body_dir, args, expected):
    r = invoke("export", finished_run, "--dest", tmp_path / "x", "--body-models", body_dir, *args)
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and expected in lines[0], r.output
    assert not (tmp_path / "x").exists()  # refused before anything is created


def copy_run(run, dest, drop: tuple[int, int] | None = None):
    """A copy of a run folder; ``drop=(track, frame)`` removes that person-frame from its params.jsonl
    (the person missed in that frame, which export then fills or splits at)."""
    shutil.copytree(run, dest)
    if drop is not None:
        lines = (dest / "params.jsonl").read_text().splitlines()
        kept = [x for x in lines if (json.loads(x)["track"], json.loads(x)["frame"]) != drop]
        assert len(kept) == len(lines) - 1
        (dest / "params.jsonl").write_text("\n".join(kept) + "\n")
    return dest


def test_export_max_gap_0_keeps_tracks_seen_in_every_frame_whole(finished_run, tmp_path, body_dir):
    """--max-gap is the time missed: 0 splits no track that was seen in every frame."""
    r = invoke("export", finished_run, "--format", "npz", "--max-gap", "0", "--dest", tmp_path / "d",
               "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["track_0.npz", "track_1.npz"]
    assert len(np.load(tmp_path / "d" / "track_0.npz")["poses"]) == 6
    # --export, as wbcap run and image spell the choice (a new user's trial: refused as unknown)
    r = invoke("export", finished_run, "--export", "npz", "--max-gap", "0", "--dest", tmp_path / "e",
               "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e" / "track_0.npz").read_bytes() == (tmp_path / "d" / "track_0.npz").read_bytes()


@pytest.mark.parametrize("in_place", [True, False])
def test_export_smaller_max_gap_replaces_the_unsplit_files(finished_run, tmp_path, body_dir, in_place):
    """Track 0 missed in frame 2, exported again with a --max-gap below one frame (0.1 s): its parts
    replace track_0.npz/.glb (no stale unsplit file beside them); in the run folder meta.json records
    the new --max-gap. Exporting again with the run's --max-gap puts the whole file back."""
    run = copy_run(finished_run, tmp_path / "run", drop=(0, 2))
    dest = run if in_place else tmp_path / "dest"
    if not in_place:
        r = invoke("export", run, "--format", "glb,npz", "--dest", dest, "--body-models", body_dir)
        assert r.exit_code == 0, r.output
    r = invoke("export", run, "--format", "glb,npz", "--max-gap", "0.05", "--body-models", body_dir,
               *([] if in_place else ["--dest", dest]))
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in dest.glob("track_*"))
    assert names == ["track_0_part1.glb", "track_0_part1.npz", "track_0_part2.glb", "track_0_part2.npz",
                     "track_1.glb", "track_1.npz"], r.output
    assert [len(np.load(dest / f"track_0_part{k}.npz")["poses"]) for k in (1, 2)] == [2, 3]
    if in_place:
        assert json.loads((run / "meta.json").read_text())["max_gap"] == 0.05
    r = invoke("export", run, "--format", "glb,npz", "--max-gap", "1", "--body-models", body_dir,
               *([] if in_place else ["--dest", dest]))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in dest.glob("track_*")) == ["track_0.glb", "track_0.npz", "track_1.glb", "track_1.npz"]
    if in_place:
        assert json.loads((run / "meta.json").read_text())["max_gap"] == 1.0
    # one format alone at another split: the other format's files of the track keep theirs, said in
    # one line (it was one warning per file: a user trial's six)
    r = invoke("export", run, "--format", "npz", "--max-gap", "0.05", "--body-models", body_dir,
               *([] if in_place else ["--dest", dest]))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in dest.glob("track_0*")) == ["track_0.glb", "track_0_part1.npz", "track_0_part2.npz"]
    said = [line for line in r.output.splitlines() if "earlier pieces" in line]
    assert said == [f"WARNING  {dest}: 1 file(s) of other formats keep the tracks' earlier pieces (e.g. "
                    "track_0.glb), which differ from this export's; add glb to --format to rewrite them"], r.output


def test_export_refuses_another_runs_folder(finished_run, tmp_path, body_dir):
    """--dest naming another run's folder: refused in one line, that run untouched."""
    other = copy_run(finished_run, tmp_path / "other", drop=(1, 3))
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    r = invoke("export", finished_run, "--format", "npz", "--dest", other, "--body-models", body_dir)
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and f"{other} holds another wbcap run (e.g. params.jsonl)" in lines[0], r.output
    assert "choose a new or empty --dest folder" in lines[0]
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before
    # nor into a run's .wbcap/ folder (it holds no params.jsonl of its own)
    hidden = sorted(p.name for p in (other / ".wbcap").iterdir())
    r = invoke("export", finished_run, "--format", "npz", "--dest", other / ".wbcap", "--body-models", body_dir)
    assert r.exit_code == 2 and "lies in a wbcap run's .wbcap/ folder" in r.output, r.output
    assert sorted(p.name for p in (other / ".wbcap").iterdir()) == hidden


def test_export_unwritable_dest_is_one_line_before_any_work(finished_run, tmp_path, body_dir, monkeypatch):
    """A --dest that cannot be written in (read-only or no permission; os.access says so, also when
    the tests run as root): `error:` in one line, exit 2, nothing written, no crash log."""
    import os

    immut = tmp_path / "immut"
    immut.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode, **kw: not (Path(p) == immut and mode & os.W_OK) and real_access(p, mode, **kw))
    r = invoke("export", finished_run, "--dest", immut, "--body-models", body_dir)
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and f"{immut}: cannot write in this folder" in lines[0], r.output
    assert not any(immut.iterdir())


def test_export_not_a_run_folder(tmp_path, body_dir, monkeypatch):
    (tmp_path / "empty").mkdir()
    r = invoke("export", tmp_path / "empty", "--body-models", body_dir)
    assert r.exit_code == 2
    assert f"{tmp_path / 'empty' / 'params.jsonl'}: no such file; is this a finished `wbcap run` folder?" in r.output
    monkeypatch.chdir(tmp_path / "empty")  # (`wbcap export .` named no folder: "params.jsonl: no such file")
    r = invoke("export", ".", "--body-models", body_dir)
    assert r.exit_code == 2 and f"{tmp_path / 'empty' / 'params.jsonl'}: no such file" in r.output, r.output
    monkeypatch.chdir(tmp_path)
    # a `wbcap image` result (its layout): how a photo's files are made, the formats its folders hold kept
    person = tmp_path / "photos" / "messi5" / "person_0"
    person.mkdir(parents=True)
    for name in ("output.obj", "smplx_param.json", "output.glb", "output_keypoints.json"):
        (person / name).write_text("x")
    (person.parent / ".DS_Store").write_text("x")  # (a Finder's: the folder is still a photo's)
    for folder, given in ((tmp_path / "photos",) * 2, (person.parent,) * 2, (person,) * 2, (person.parent, ".")):
        monkeypatch.chdir(folder)
        r = invoke("export", given, "--format", "csv", "--body-models", body_dir)
        assert r.exit_code == 2 and r.output.strip() == (
            f"error: {folder}: holds `wbcap image` results, which `wbcap export` does not read (it exports a `wbcap run` "
            f"folder's params.jsonl); write the photos' files with `wbcap image PHOTOS -o {tmp_path / 'photos'} --export "
            "glb,csv --openpose --skip-done` and the options the photos were read with (the photos whose results lack "
            "these files are done again, whole)"), r.output
    assert len(r.output.strip().splitlines()) == 1
    # a run interrupted in pass 1 (its .wbcap/ records, no params.jsonl yet): how to finish it, as view says
    (tmp_path / "empty" / ".wbcap").mkdir()
    r = invoke("export", tmp_path / "empty", "--body-models", body_dir)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert (f"params.jsonl: no such file yet (interrupted?); finish it with `wbcap run SOURCE -o {tmp_path / 'empty'} "
            "--resume`") in r.output, r.output
    # with its run.json: the source it records (it said SOURCE), quoted for a shell
    (tmp_path / "empty" / ".wbcap" / "run.json").write_text(json.dumps({"source": "/clips/my walk.mp4"}))
    r = invoke("export", tmp_path / "empty", "--body-models", body_dir)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert f"finish it with `wbcap run '/clips/my walk.mp4' -o {tmp_path / 'empty'} --resume`" in r.output, r.output


def test_image_export_glb_overlays_the_photo_in_the_photos_camera(tmp_path, small_ckpt, body_dir):
    """`wbcap image --export glb,bvh,npz --exact` of two people: person_<k>/output.glb is the OBJ's
    mesh moved rigidly into the photo's camera (focal sqrt(W^2 + H^2), principal point at the
    centre: the GLB's camera, which a glTF reader can draw) and turned y up (x, -y, -z): the
    pelvis keeps its pixel and apparent size, so the two people stand apart where the photo shows
    them (an animator's trial: in each box's own camera both stood at one spot, and Blender's
    camera, which has no off-centre principal point, drew them off their place); the BVH has one
    frame; the npz is AMASS's (one row), with the photo's camera. (The small network: the micro
    one's 2:3 input under a 3:4 crop gives cameras of non-square pixels, which no real one has.)"""
    from test_cli_image import read_obj_counts, write_rgb
    from test_export_gltf import Reader

    from wbcap.testing.images import person_image

    img = write_rgb(tmp_path / "pic.png", person_image(320, 240, seed=3))
    out = tmp_path / "out"
    r = invoke("image", img, "-o", out, "--bbox", "10,20,120,200", "--bbox", "200,60,60,100", "--export", "glb,bvh,npz",
               "--exact", "--no-render", "--checkpoint", small_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    f = float(np.hypot(320, 240))
    pelvis_px, depth = [], []
    for k in (0, 1):
        folder = out / "pic" / f"person_{k}"
        assert {p.name for p in folder.iterdir()} >= {"output.obj", "output.glb", "output.bvh", "output.npz",
                                                      "smplx_param.json"}
        with np.load(folder / "output.npz") as npz:
            assert npz["poses"].shape[0] == 1
            np.testing.assert_allclose(npz["camera_focal"], [f, f])
            np.testing.assert_allclose(npz["camera_princpt"], [160.0, 120.0])
        obj_v, _ = read_obj_counts(folder / "output.obj")
        glb = Reader(folder / "output.glb")
        v = glb.vertices(None).reshape(-1, 3) * np.array([1.0, -1.0, -1.0])  # (OpenCV axes, the photo's camera)
        shift = v - obj_v
        np.testing.assert_allclose(shift, np.broadcast_to(shift.mean(0), shift.shape), atol=1e-4)  # (rigid)
        perspective = glb.g.cameras[0].perspective
        assert perspective.yfov == pytest.approx(2 * np.arctan(240 / (2 * f)), rel=1e-6)
        assert perspective.aspectRatio == pytest.approx(320 / 240, rel=1e-6)
        # the pelvis: the pixel and the apparent size it has in the person's own camera (the OBJ's)
        params = json.loads((folder / "smplx_param.json").read_text())
        cam = params["camera"]
        pelvis = np.array(glb.g.nodes[glb.node("pelvis")].translation) * np.array([1.0, -1.0, -1.0])
        own = pelvis - shift.mean(0)
        px_own = np.array(cam["focal"]) * own[:2] / own[2] + np.array(cam["princpt"])
        px = f * pelvis[:2] / pelvis[2] + np.array([160.0, 120.0])
        np.testing.assert_allclose(px, px_own, atol=1e-3)
        assert f / pelvis[2] == pytest.approx(cam["focal"][0] / own[2], rel=1e-5)
        pelvis_px.append(px)
        depth.append(pelvis[2])
        assert re.search(r"Frames:\s*1\b", (folder / "output.bvh").read_text())
        # named inside after the image and the person, not "output" in every file: Blender names the
        # objects of several people's files after it (a review)
        assert glb.g.skins[0].name == f"pic_person_{k}" and glb.g.meshes[0].name == f"pic_person_{k}_body"
    # two places, in the boxes' order left to right; the smaller box farther away
    assert pelvis_px[0][0] < 130 < pelvis_px[1][0] and depth[1] > depth[0]


def test_fbx_without_blender_is_refused_before_any_work(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """`--export fbx` without bpy: one line naming the fix, exit 2, and no output folder at all."""
    import wbcap.export.fbx as fbx

    monkeypatch.setattr(fbx, "blender_available", lambda: False)
    frames, boxes = two_walkers(3)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--export", "fbx",
               "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and 'pip install "wbcap[blender]"' in lines[0], r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_fbx_with_a_bpy_that_does_not_import_is_refused_before_any_work(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """bpy found but not importing (a stand-in on PYTHONPATH; for real, a wheel on a server without
    the system libraries it loads): `wbcap run --export fbx` said nothing until pass 2 had failed,
    after all the frames, and `wbcap doctor` called it ok (a user trial). Now one line before any
    work, naming why, and doctor says so."""
    reason = blender_missing()  # (without bpy the line is the install hint: the test above)
    if reason:
        skip_or_fail(reason)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "bpy.py").write_text("raise ImportError('libXi.so.6: cannot open shared object file')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    frames, boxes = two_walkers(3)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    r = invoke("run", video, "-o", tmp_path / "out", "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--export",
               "glb,fbx", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 2
    assert [x for x in r.output.splitlines() if x.strip()] == [
        "error: FBX export needs Blender's Python module, which is installed but does not import (ImportError: "
        "libXi.so.6: cannot open shared object file); pip install \"wbcap[blender]\" (Blender as a Python module: bpy "
        "5.0.1, Python 3.11 only, about 1 GB)"], r.output
    assert not (tmp_path / "out").exists()
    from wbcap.doctor import run_checks

    fbx = [c for c in run_checks() if c.name == "FBX export"]
    assert len(fbx) == 1 and not fbx[0].ok and "is installed but does not import (ImportError: libXi" in fbx[0].detail


def test_export_finds_the_body_model_the_run_used(finished_run, tmp_path, body_dir, monkeypatch):
    """Without --body-models (and none in the environment or the user folder), `wbcap export`
    uses the SMPL-X model recorded in the run's .wbcap/run.json (an absolute path): the same
    files as with the flag."""
    from wbcap.paths import ENV_BODY_MODELS, ENV_HOME

    monkeypatch.delenv(ENV_BODY_MODELS, raising=False)
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "empty_home"))
    dest = tmp_path / "recorded"
    r = invoke("export", finished_run, "--format", "npz", "--dest", dest)
    assert r.exit_code == 0, r.output
    for tid in (0, 1):
        a, b = np.load(finished_run / f"track_{tid}.npz"), np.load(dest / f"track_{tid}.npz")
        np.testing.assert_array_equal(a["poses"], b["poses"])
    run_json = finished_run / ".wbcap" / "run.json"
    saved = run_json.read_text()
    try:  # a relative path (an older run: no body_model_file either) meant the run's working folder: not used
        older = json.loads(saved)
        older.pop("body_model_file")
        run_json.write_text(json.dumps(dict(older, body=dict(older["body"], path="bm"))))
        r = CliRunner().invoke(cli, ["export", str(finished_run), "--format", "npz", "--dest", str(tmp_path / "rel")])
        assert r.exit_code == 2 and "SMPL-X" in r.output, r.output
    finally:
        run_json.write_text(saved)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_export_and_view_find_the_body_model_the_run_found_in_the_environment(tmp_path, micro_ckpt, body_dir,
                                                                               monkeypatch):
    """A run whose SMPL-X model came from $WBCAP_BODY_MODELS (no --body-models) records the file
    it used in run.json: `wbcap export` and `wbcap view` without the variable use it (they said
    "SMPLX_NEUTRAL.npz not found"). Once that file is gone the usual search applies, and its
    error names the recorded file and --body-models; another --gender searches as usual."""
    from wbcap.paths import ENV_BODY_MODELS

    frames, boxes = two_walkers(3)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    models = tmp_path / "models"
    shutil.copytree(body_dir, models)
    monkeypatch.setenv(ENV_BODY_MODELS, str(models))
    r = invoke("run", video, "-o", out, "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--min-track",
               "2", "--no-render", "--export", "none", "--checkpoint", micro_ckpt, "--device", "cpu")
    assert r.exit_code == 0, r.output
    monkeypatch.delenv(ENV_BODY_MODELS)
    r = invoke("export", out, "--format", "glb", "--dest", tmp_path / "exported")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["track_0.glb", "track_1.glb"]
    r = invoke("view", out, "--html", tmp_path / "v.html")  # (no GLB in the run: the view makes them)
    assert r.exit_code == 0, r.output
    # (how to open it, which a new user found only in its README.txt; the path alone on stdout)
    assert r.stdout == f"{tmp_path / 'v.html'}\n" and r.stderr.splitlines()[-1] == (
        f"open it: cd -- {tmp_path} && python3 v_files/serve.py, then the address it prints"), r.output
    r = CliRunner().invoke(cli, ["export", str(out), "--format", "glb", "--dest", str(tmp_path / "x"), "--gender", "male"])
    assert r.exit_code == 2 and "SMPLX_MALE.npz not found" in r.output and "was made with" not in r.output, r.output
    shutil.rmtree(models)
    r = CliRunner().invoke(cli, ["export", str(out), "--format", "glb", "--dest", str(tmp_path / "gone")])
    model_file = models / "smplx" / "SMPLX_NEUTRAL.npz"
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert f"was made with the SMPL-X model {model_file}" in lines[0] and "no longer exists" in lines[0], r.output
    assert "--body-models" in lines[0] and not (tmp_path / "gone").exists(), r.output
    r = invoke("export", out, "--format", "glb", "--dest", tmp_path / "given", "--body-models", body_dir)
    assert r.exit_code == 0, r.output


def test_export_into_a_run_folder_a_run_is_writing_is_refused(finished_run, body_dir):
    """In place, export waits for nobody: a folder a `wbcap run` holds is refused, untouched."""
    from wbcap.io.run_folder import hold_folder

    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    with hold_folder(finished_run):
        r = CliRunner().invoke(cli, ["export", str(finished_run), "--format", "npz", "--body-models", str(body_dir)])
    assert r.exit_code == 2 and "in use by another wbcap process" in r.output, r.output
    assert {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()} == before


def test_a_record_with_a_short_pose_is_one_error_line(finished_run, tmp_path, body_dir):
    """A params.jsonl line whose body_pose lost values (hand-edited, damaged): one line naming the
    file, line and key (it was a crash report)."""
    run_dir = copy_run(finished_run, tmp_path / "run")
    lines = (run_dir / "params.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    rec["body_pose"] = rec["body_pose"][:10]
    lines[3] = json.dumps(rec)
    (run_dir / "params.jsonl").write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "npz", "--dest", str(tmp_path / "x"),
                                 "--body-models", str(body_dir)])
    assert r.exit_code == 2, r.output
    assert f"{run_dir / 'params.jsonl'}:4: a damaged record (body_pose holds 10 numbers, not 63)" in r.output, r.output


def test_a_record_with_an_infinite_frame_is_one_error_line(finished_run, tmp_path, body_dir):
    """`"frame": Infinity` in a params.jsonl line (int() of it overflows): one line naming the
    file and line, exit 2 (it was a crash report; found by a review)."""
    run_dir = copy_run(finished_run, tmp_path / "run")
    lines = (run_dir / "params.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace(f'"frame": {json.loads(lines[2])["frame"]},', '"frame": Infinity,', 1)
    assert "Infinity" in lines[2]
    (run_dir / "params.jsonl").write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "npz", "--dest", str(tmp_path / "x"),
                                 "--body-models", str(body_dir)])
    assert r.exit_code == 2, r.output
    assert f"{run_dir / 'params.jsonl'}:3: a damaged record (OverflowError" in r.output, r.output


def test_links_planted_in_a_run_folder_are_replaced_not_written_through(finished_run, tmp_path, body_dir):
    """A security review: a run folder from someone else with ``track_0.npz -> ~/.bashrc`` had
    `wbcap export` (exit 0) write the npz into the user's .bashrc. The link is replaced by the
    file; what it led to is untouched. So for the mark pass 2 leaves while it writes
    (``.wbcap/writing``, which had been emptied through a link)."""
    from wbcap.io.run_folder import RUN_DIR, WRITING_FILE, done_writing, start_writing

    run_dir = copy_run(finished_run, tmp_path / "run")
    secret = tmp_path / "home" / ".bashrc"
    secret.parent.mkdir()
    secret.write_text("kept")
    (run_dir / "track_0.npz").unlink()
    (run_dir / "track_0.npz").symlink_to(secret)  # (to a file wbcap did not write: refused, nothing written)
    r = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "npz", "--body-models", str(body_dir)])
    assert r.exit_code == 2 and "track_0.npz: wbcap did not write this file" in r.output, r.output
    assert secret.read_text() == "kept" and sorted(p.name for p in secret.parent.iterdir()) == [".bashrc"]
    theirs = tmp_path / "home" / "their.npz"  # (to one of wbcap's elsewhere: the link replaced, not written through)
    theirs.write_bytes((finished_run / "track_1.npz").read_bytes())
    (run_dir / "track_0.npz").unlink()
    (run_dir / "track_0.npz").symlink_to(theirs)
    r = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "npz", "--body-models", str(body_dir)])
    assert r.exit_code == 0, r.output
    assert theirs.read_bytes() == (finished_run / "track_1.npz").read_bytes()
    made = run_dir / "track_0.npz"
    assert not made.is_symlink() and made.read_bytes() == (finished_run / "track_0.npz").read_bytes()
    (run_dir / RUN_DIR / WRITING_FILE).symlink_to(secret)
    start_writing(run_dir)
    assert secret.read_text() == "kept" and (run_dir / RUN_DIR / WRITING_FILE).read_bytes() == b""
    done_writing(run_dir)
    assert not (run_dir / RUN_DIR / WRITING_FILE).exists()


@pytest.mark.parametrize("where", ["meta.json", "params.jsonl", "track_0.glb"])
def test_json_nested_too_deeply_is_one_error_line(finished_run, tmp_path, body_dir, where):
    """A security review: ``[[[...]]]`` 100000 deep in a run folder's JSON (meta.json, a
    params.jsonl line, a GLB's JSON chunk) gave a crash report (RecursionError), not the file's one
    line, from `wbcap view` and `wbcap export`."""
    import struct

    run_dir = copy_run(finished_run, tmp_path / "run")
    deep = "[" * 100_000 + "]" * 100_000
    if where == "params.jsonl":
        lines = (run_dir / where).read_text().splitlines()
        (run_dir / where).write_text("\n".join([*lines[:2], deep, *lines[3:]]) + "\n")
    elif where == "meta.json":
        (run_dir / where).write_text(deep)
    else:
        chunk = deep.encode()
        (run_dir / where).write_bytes(struct.pack("<4sIIII", b"glTF", 2, 20 + len(chunk), len(chunk), 0x4E4F534A) + chunk)
    for args in (["export", run_dir, "--format", "npz", "--dest", tmp_path / "x", "--body-models", body_dir],
                 ["view", run_dir, "--html", tmp_path / "v.html"]):
        if where == "track_0.glb" and args[0] == "export":
            continue  # (export writes the GLBs; it does not read them)
        r = CliRunner().invoke(cli, [str(a) for a in args])
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and "crash" not in r.output, (args, r.output)
        assert lines[0].startswith(f"error: {run_dir / where}") and "recursion" in lines[0], (args, lines[0])
        assert not (tmp_path / "x").exists() and not (tmp_path / "v.html").exists()


@pytest.mark.parametrize(("key", "value"), [
    ("fps", "abc"), ("fps", 0), ("max_gap", -1), ("frame_step", 0), ("frame_step", 1.5), pytest.param("max_gap", 10**400, id="max_gap-400-digits"), ("gender", 5), ("camera", {"focal": [1.0]}),
    ("frame", "sky"), ("world", "up"), ("source", ["x"]), ("cuts", [-1.0]), ("colors", 3), (None, [1, 2]),
    ("dropped", {"short": ["1"]}), ("calibration", "Calib.toml"),
    ("calibration", {"rotation": [0.1, 0.2], "translation": [0.0, 0.0, 1.0]}),
])
def test_a_damaged_meta_json_is_one_error_line(finished_run, tmp_path, key, value):
    """A meta.json value of the wrong kind (hand-edited, damaged): `wbcap export` and `wbcap view`
    give one line naming the file and the key and the fix, exit 2, nothing written (`"fps": "abc"`
    was a crash report, exit 1). ``key`` None: the whole file is ``value``."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir, ignore=shutil.ignore_patterns("track_*"))
    meta = json.loads((run_dir / "meta.json").read_text())
    (run_dir / "meta.json").write_text(json.dumps(value if key is None else {**meta, key: value}))
    for args, made in ((["export", run_dir, "--format", "npz", "--dest", tmp_path / "x"], tmp_path / "x"),
                       (["view", run_dir, "--html", tmp_path / "v.html"], tmp_path / "v.html")):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert f"{run_dir / 'meta.json'}: " in lines[0] and "--resume" in lines[0] and "--overwrite" in lines[0], r.output
        assert (f"a damaged {key} (" if key else "not a wbcap meta.json") in lines[0], r.output
        assert not made.exists() and not (tmp_path / "v_files").exists()


@pytest.mark.parametrize("text", ["garbage", "[1]", '{"start": "x"}'])
def test_a_damaged_run_json_is_one_error_line(finished_run, tmp_path, micro_ckpt, body_dir, text):
    """A damaged .wbcap/run.json: `wbcap run --resume` and `wbcap view` give one line naming the file
    and --overwrite, exit 2 (JSONDecodeError/AttributeError crash reports, exit 1; a bad start crashed
    the view of a run with render.mp4)."""
    settings = json.loads((finished_run / ".wbcap" / "run.json").read_text())
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir, ignore=shutil.ignore_patterns("track_*"))
    (run_dir / ".wbcap" / "run.json").write_text(text)
    (run_dir / "render.mp4").write_bytes(b"")  # (the view reads start for the video only)
    resume = ["run", settings["source"], "-o", run_dir, "--resume", "--detector", settings["detector"], "--min-track", "2",
              "--no-render", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu"]
    for args in (resume, ["view", run_dir, "--html", tmp_path / "v.html"]):
        r = CliRunner().invoke(cli, [str(a) for a in args])
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1, r.output
        assert lines[0].startswith(f"error: {run_dir / '.wbcap' / 'run.json'}: ") and "--overwrite" in lines[0], r.output
    assert (run_dir / ".wbcap" / "run.json").read_text() == text


def test_an_export_stopped_midway_says_what_it_wrote(finished_run, tmp_path, body_dir, monkeypatch, caplog):
    """A user trial: Ctrl-C during `wbcap export --format fbx` left 4 of 7 files and printed only
    "interrupted". A warning names what the export wrote and says the others are missing (or an
    earlier export's, in a folder that had some); a stop before any file says nothing of files."""
    import logging

    import wbcap.export.animation

    BVH_HEAD = "HIERARCHY\nROOT pelvis\n{\n  OFFSET 0 0 0\n  CHANNELS 6 Xposition Yposition Zposition Zrotation\n"

    def stopped_after_one(dest, *args, **kwargs):
        (dest / "track_0.bvh").write_text(BVH_HEAD)  # (one file done before the stop)
        raise KeyboardInterrupt

    def stopped_at_once(dest, *args, **kwargs):
        raise KeyboardInterrupt

    dest = tmp_path / "dest"
    for stop, said in ((stopped_at_once, []),
                       (stopped_after_one, [f"{dest}: stopped after writing 1 track file(s) (e.g. track_0.bvh); the "
                                            "others are missing: run the same command again to write them all"])):
        monkeypatch.setattr(wbcap.export.animation, "write_track_files", stop)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            r = CliRunner().invoke(cli, ["export", str(finished_run), "--dest", str(dest), "--format", "bvh",
                                         "--body-models", str(body_dir)])
        assert r.exit_code == 130 and r.output.splitlines()[-1] == "interrupted", r.output
        assert [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING] == said
    (dest / "track_1.bvh").write_text(BVH_HEAD)  # (an earlier export's: wbcap's, by its marks)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        CliRunner().invoke(cli, ["export", str(finished_run), "--dest", str(dest), "--format", "bvh",
                                 "--body-models", str(body_dir)])
    assert [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING] == [
        f"{dest}: stopped after writing 1 track file(s) (e.g. track_0.bvh); the others are missing or an earlier "
        "export's: run the same command again to write them all"]


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_a_resume_says_which_exported_files_it_removed_and_how_to_write_them_again(finished_run, tmp_path, micro_ckpt,
                                                                                    body_dir):
    """A new user's trial: `wbcap export OUT --format bvh` into the run folder, then `wbcap run ...
    --resume` (the README's way to redo smoothing) removed the BVH files without a word. Pass 2
    still removes them (made from the parameters before it), and now says so, with the command
    that writes them again from the new ones."""
    run = copy_run(finished_run, tmp_path / "r")
    (run / "track_notes.csv").write_text("mine\n")  # (a user's own file: kept; a break-it trial's was removed)
    (run / "render.mp4").write_bytes(b"an earlier pass's")  # (this --no-render resume removes it: said too)
    assert invoke("export", run, "--format", "bvh", "--body-models", body_dir).exit_code == 0
    assert sorted(p.name for p in run.glob("track_*.bvh")) == ["track_0.bvh", "track_1.bvh"]
    src = finished_run.parent
    r = invoke("run", src / "walk.mp4", "-o", run, "--resume", "--smooth", "gaussian", "--detector",
               f"boxes:{src / 'boxes.json'}", "--min-track", "2", "--no-render", "--checkpoint", micro_ckpt,
               "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert (f"{run}: removed the earlier BVH file(s) this run does not write (from `wbcap export` or another --export), "
            f"made from the parameters before this pass: once it is done, write them again from the new ones with "
            f"`wbcap export {run} --format bvh` (and that export's other options)") in said, r.output
    assert (f"{run}: removed the earlier render.mp4, made from the parameters before this pass; this run writes none "
            "(--no-render): a --resume without it makes one from the new ones") in said, r.output
    assert not (run / "render.mp4").exists()
    assert list(run.glob("track_*.bvh")) == [] and sorted(p.name for p in run.glob("track_*.glb")) == [
        "track_0.glb", "track_1.glb"]
    assert invoke("export", run, "--format", "bvh", "--body-models", body_dir).exit_code == 0
    assert sorted(p.name for p in run.glob("track_*.bvh")) == ["track_0.bvh", "track_1.bvh"]
    assert (run / "track_notes.csv").read_text() == "mine\n"


@pytest.mark.slow  # (a run and two exports; the GLB's keys stay in test_export_gltf)
def test_start_at_zero_keys_the_glb_from_0_and_keeps_the_source_time(tmp_path, micro_ckpt, body_dir):
    """A game developer's trial: a clip of a person first seen 35 s into the video was keyed from
    35 s, so an engine's timeline held 35 s of nothing first. `--start-at-zero` (with --dest) keys
    GLB (and so FBX) from 0 and keeps the source's time in the GLB's extras; the npz keeps the
    source's clock; into the run folder itself, which wbcap view plays over the video, it is refused."""
    from wbcap.export.gltf import glb_json

    frames, boxes = two_walkers(6)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    run = tmp_path / "run"
    r = invoke("run", video, "-o", run, "--start", "0.2", "--detector", f"boxes:{tmp_path / 'boxes.json'}",
               "--min-track", "2", "--no-render", "--export", "npz", "--checkpoint", micro_ckpt, "--body-models",
               body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    dest = tmp_path / "engine"
    r = invoke("export", run, "--format", "glb,bvh,npz", "--start-at-zero", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    for tid in (0, 1):
        source = np.load(run / f"track_{tid}.npz")["times"]
        assert source[0] == pytest.approx(0.2)
        np.testing.assert_allclose(np.load(dest / f"track_{tid}.npz")["times"], source)  # (the npz: the source's)
        np.testing.assert_allclose(glb_animation_times(dest / f"track_{tid}.glb"), source - source[0], atol=1e-6)
        extras = glb_json(dest / f"track_{tid}.glb")["asset"]["extras"]
        assert extras["source_start_s"] == pytest.approx(source[0]) and extras["first_time_s"] == 0.0
    (dest / "track_7.glb").write_bytes((dest / "track_0.glb").read_bytes())  # (an earlier run's export there)
    r = invoke("export", run, "--format", "glb", "--start-at-zero", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0 and (f"{dest}: also holds 1 file(s) of tracks this export did not write (e.g. "
                                 "track_7.glb), from an earlier export") in " ".join(r.stderr.split()), r.stderr
    plain = tmp_path / "plain"  # (without the flag: the source's clock, as before)
    assert invoke("export", run, "--format", "glb", "--dest", plain, "--body-models", body_dir).exit_code == 0
    np.testing.assert_allclose(glb_animation_times(plain / "track_0.glb"), np.load(run / "track_0.npz")["times"],
                               atol=1e-6)
    assert "source_start_s" not in glb_json(plain / "track_0.glb")["asset"]["extras"]
    # into the run folder, by any name (--dest naming it, a link to it: a second break-it review), refused
    (tmp_path / "link").symlink_to(run)
    for dest in ([], ["--dest", run], ["--dest", tmp_path / "link"]):
        r = invoke("export", run, "--format", "glb", "--start-at-zero", *dest, "--body-models", body_dir)
        assert r.exit_code == 2 and r.stderr.strip() == (
            "error: --start-at-zero writes into another folder (--dest): the run folder's own files stay on the "
            "source's clock, on which wbcap view plays them over the video"), r.output
    assert not list(run.glob("*.glb"))
    r = invoke("export", run, "--format", "bvh,csv", "--start-at-zero", "--dest", tmp_path / "b", "--body-models",
               body_dir)
    assert r.exit_code == 0 and ("--start-at-zero changes only GLB and FBX files (a BVH has no start time); CSV files "
                                 "keep the source's times") in \
        " ".join(r.stderr.split()), r.stderr
    from wbcap.export.animation import AnimationExport
    from wbcap.video_app import VideoJob

    with pytest.raises(ValueError, match="a run folder's files stay on the source's clock"):
        VideoJob(source="x.mp4", out="o", export=AnimationExport(formats=("glb",), start_at_zero=True))
