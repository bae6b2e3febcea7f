"""World-frame files (issue 16): the AMASS npz, GLB and BVH of ``--world`` carry their frame, the
camera's pose and the contacts; ``params.jsonl`` the contacts; ``wbcap export RUN --world`` grounds a
run made without ``--world`` (a run folder written from synthetic people on a known ground)."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.spatial.transform import Rotation

from wbcap.cli import cli
from wbcap.export.amass import camera_to_world
from wbcap.testing.world_scenes import Stand, Walk, make_scene
from wbcap.world.feet import foot_vertices

#: z-up world -> glTF's y-up world: x' = x, y' = z, z' = -y.
YUP_FROM_ZUP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: OpenCV camera axes (looks down +z, y down) -> a glTF camera's own axes (looks down -z, y up).
GLTF_FROM_OPENCV_CAMERA = np.diag([1.0, -1.0, -1.0])


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def scene(body_layer):
    return make_scene(body_layer, [Walk(start=(-1.0, 3.8), heading_deg=45), Stand(position=(1.0, 5.5))], seconds=3.0)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, scene):
    """A finished `wbcap run` folder without --world (params.jsonl, meta.json) holding the scene's
    noisy camera-frame tracks (ids 0, 1), 30 fps, 1280x720."""
    from wbcap.export.params_jsonl import write_params_jsonl
    from wbcap.io.run_folder import write_meta
    from wbcap.smooth.track import rows_by_frame

    out = tmp_path_factory.mktemp("world_run")
    tracks = {k: p.noisy for k, p in scene.people.items()}
    cam = scene.camera
    frames = {int(i): float(t) for i, t in enumerate(scene.times)}
    write_params_jsonl(out / "params.jsonl", frames, tracks, rows_by_frame(tracks), cam.focal[0], cam.princpt,
                       cam.image_size)
    write_meta(out, {"source": "synthetic", "fps": 30.0, "gender": "neutral", "max_gap": 1.0, "tracks": [0, 1],
                     "camera": {"focal": list(cam.focal), "princpt": list(cam.princpt), "image_size": list(cam.image_size)},
                     "frame": "camera"})
    return out


def _feet_heights(body, npz, rows) -> np.ndarray:
    """Lowest foot vertex height (z) of the given rows of a world AMASS file, (rows, 2) left/right."""
    with torch.no_grad():
        n = len(rows)

        def t(a) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, np.float32)[rows])

        v = body(betas=t(np.repeat(npz["betas"][None], len(npz["trans"]), 0)), global_orient=t(npz["root_orient"]),
                 body_pose=t(npz["pose_body"]), left_hand_pose=torch.zeros(n, 45), right_hand_pose=torch.zeros(n, 45),
                 jaw_pose=torch.zeros(n, 3), expression=t(npz["expression"]), transl=t(npz["trans"])).vertices.numpy()
    return np.stack([v[:, ids, 2].min(1) for ids in foot_vertices(body)], 1)


@pytest.mark.slow  # fast loop kept under 2 minutes
def test_export_world_grounds_a_run_made_without_it(run_folder, tmp_path, body_dir, body_layer, scene, monkeypatch):
    from wbcap.world import estimate

    grounded = []  # the WorldResult the export wrote its files from
    real = estimate.ground_tracks
    monkeypatch.setattr(estimate, "ground_tracks", lambda *a, **k: grounded.append(real(*a, **k)) or grounded[-1])
    dest = tmp_path / "world"
    r = invoke("export", run_folder, "--world", "--format", "npz,glb,bvh", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert len(grounded) == 1 and grounded[0].frame is not None, grounded
    result = grounded[0]
    assert sorted(p.name for p in dest.iterdir()) == [f"track_{i}.{e}" for i in (0, 1) for e in ("bvh", "glb", "npz")]
    meta_before = json.loads((run_folder / "meta.json").read_text())
    assert meta_before["frame"] == "camera"  # export does not rewrite the run's meta.json
    for tid in (0, 1):
        d = np.load(dest / f"track_{tid}.npz")  # plain np.load: no pickled objects
        assert str(d["frame"]) == "world" and str(d["up_axis"]) == "z" and str(d["ground_from"]) == "feet"
        # the estimate's contacts, row by row (30 fps without gaps: one npz row per track row)
        assert d["contact"].dtype == bool and len(d["trans"]) == len(result.tracks[tid]) == len(scene.times)
        np.testing.assert_array_equal(d["contact"], result.contacts[tid])
        assert d["contact"][:, 0].any() and d["contact"][:, 1].any()
        assert (d["contact"] == scene.people[tid].contact).mean() > 0.9  # and they follow the true gait
        # the camera's pose is the estimate's
        np.testing.assert_allclose(d["camera_rotation"], result.frame.world_from_camera, atol=1e-12)
        np.testing.assert_allclose(d["camera_position"], result.frame.camera_position, atol=1e-12)
        assert d["camera_position"][:2] == pytest.approx([0, 0]) and d["camera_position"][2] == pytest.approx(1.4, abs=0.02)
        rot = d["camera_rotation"]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
        assert np.degrees(np.arcsin(-rot[2, 2])) == pytest.approx(12.0, abs=0.5)  # the camera looks 12 deg down
        # planted feet on the ground, z = 0
        planted = np.flatnonzero(d["contact"].any(1))
        heights = _feet_heights(body_layer, d, planted)
        lowest = np.where(d["contact"][planted], heights, np.inf).min(1)
        assert np.abs(lowest).max() < 0.01, np.abs(lowest).max()
        # GLB: the frame and the camera where it stands, y up
        from pygltflib import GLTF2

        g = GLTF2().load_binary(str(dest / f"track_{tid}.glb"))
        assert g.asset.extras["frame"] == "world" and g.scenes[0].extras["frame"] == "world"
        assert "y = 0" in g.asset.extras["ground"]
        cam = next(n for n in g.nodes if n.name == "source_camera")
        np.testing.assert_allclose(cam.translation, YUP_FROM_ZUP @ d["camera_position"], atol=1e-6)
        np.testing.assert_allclose(cam.translation, [0, d["camera_position"][2], 0], atol=1e-6)
        # the node's rotation is the npz's camera_rotation seen from glTF: the y-up world on the
        # left, the glTF camera's axes (looking down -z, y up) on the right; XYZW, sign free
        node_from_camera = YUP_FROM_ZUP @ rot @ GLTF_FROM_OPENCV_CAMERA
        expected = Rotation.from_matrix(node_from_camera).as_quat()
        quat = np.asarray(cam.rotation, np.float64)
        np.testing.assert_allclose(quat * np.sign(quat @ expected), expected, atol=1e-5)
        # so the node's -z (where a glTF camera looks) is the optical axis, 12 deg below the horizon
        look = Rotation.from_quat(quat).apply([0.0, 0.0, -1.0])
        np.testing.assert_allclose(look, YUP_FROM_ZUP @ rot @ [0.0, 0.0, 1.0], atol=1e-5)
        assert np.degrees(np.arcsin(-look[1])) == pytest.approx(12.0, abs=0.5)
        # BVH: plain BVH, same rows
        text = (dest / f"track_{tid}.bvh").read_text()
        assert text.startswith("HIERARCHY") and int(re.search(r"Frames:\s*(\d+)", text).group(1)) == len(d["trans"])
    # the same files again: the estimate is deterministic
    again = tmp_path / "again"
    assert invoke("export", run_folder, "--world", "--format", "npz", "--dest", again, "--body-models", body_dir).exit_code == 0
    assert (again / "track_1.npz").read_bytes() == (dest / "track_1.npz").read_bytes()


@pytest.mark.slow  # a second and third estimate of the same ground
def test_export_one_track_uses_every_track_for_the_ground(run_folder, tmp_path, body_dir):
    both, one = tmp_path / "both", tmp_path / "one"
    assert invoke("export", run_folder, "--world", "--format", "npz", "--dest", both, "--body-models", body_dir).exit_code == 0
    r = invoke("export", run_folder, "--world", "--track", "1", "--format", "npz", "--dest", one, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert [p.name for p in one.iterdir()] == ["track_1.npz"]
    assert (one / "track_1.npz").read_bytes() == (both / "track_1.npz").read_bytes()


def test_export_without_world_says_camera(run_folder, tmp_path, body_dir):
    dest = tmp_path / "cam"
    assert invoke("export", run_folder, "--format", "npz,glb", "--dest", dest, "--body-models", body_dir).exit_code == 0
    d = np.load(dest / "track_0.npz")
    assert str(d["frame"]) == "camera" and "contact" not in d.files
    np.testing.assert_allclose(d["camera_rotation"], [[1, 0, 0], [0, 0, 1], [0, -1, 0]])
    np.testing.assert_allclose(d["camera_position"], 0)
    from pygltflib import GLTF2

    g = GLTF2().load_binary(str(dest / "track_0.glb"))
    assert g.asset.extras["frame"] == "camera" and "ground" not in g.asset.extras
    cam = next(n for n in g.nodes if n.name == "source_camera")
    assert cam.rotation is None and cam.translation is None


def test_params_jsonl_contacts_written_and_read_back(tmp_path, scene):
    from wbcap.export.params_jsonl import read_params_jsonl, write_params_jsonl
    from wbcap.smooth.track import rows_by_frame

    tracks = {k: p.noisy for k, p in scene.people.items()}
    cam = scene.camera
    frames = {i: float(t) for i, t in enumerate(scene.times)}
    contacts = {k: p.contact for k, p in scene.people.items()}
    write_params_jsonl(tmp_path / "params.jsonl", frames, tracks, rows_by_frame(tracks), cam.focal[0], cam.princpt,
                       cam.image_size, contacts=contacts)
    lines = [json.loads(x) for x in (tmp_path / "params.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * len(scene.times)
    for rec in lines:
        assert rec["contact"] == {"left": bool(contacts[rec["track"]][rec["frame"], 0]),
                                  "right": bool(contacts[rec["track"]][rec["frame"], 1])}
    _, back, _ = read_params_jsonl(tmp_path / "params.jsonl")
    np.testing.assert_array_equal(back[0].transl, tracks[0].transl)
    assert back[0].score is None and "score" not in lines[0]  # (a file written before scores: none)
    scored = {k: dataclasses.replace(t, score=np.linspace(0.5, 0.9, len(t)).astype(np.float32)) for k, t in tracks.items()}
    write_params_jsonl(tmp_path / "params.jsonl", frames, scored, rows_by_frame(scored), cam.focal[0], cam.princpt,
                       cam.image_size)
    _, back, _ = read_params_jsonl(tmp_path / "params.jsonl")
    np.testing.assert_array_equal(back[1].score, scored[1].score)
    _, again, _ = read_params_jsonl(str(tmp_path / "params.jsonl"))  # (a str path too: a user trial)
    np.testing.assert_array_equal(again[0].transl, back[0].transl)


def test_camera_to_world_moves_every_vertex_rigidly(body_layer):
    """``global_orient' = M R`` and ``transl' = M (J0 + t) - J0 + p`` put every vertex at ``M v + p``."""
    from scipy.spatial.transform import Rotation

    from wbcap.testing.synthetic_body import make_smplx_params

    params = make_smplx_params(3, seed=2)
    m = Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()
    p = np.array([0.5, -1.0, 1.4])
    with torch.no_grad():
        rest = body_layer.rest_root(params["betas"]).numpy()
        v = body_layer(**{k: v for k, v in params.items()}).vertices.double().numpy()
        go, tr = camera_to_world(params["global_orient"].double().numpy(), params["transl"].double().numpy(), rest, m, p)
        moved = dict(params, global_orient=torch.as_tensor(go, dtype=torch.float32),
                     transl=torch.as_tensor(tr, dtype=torch.float32))
        w = body_layer(**moved).vertices.double().numpy()
    np.testing.assert_allclose(w, v @ m.T + p, atol=2e-5)


def _copy_run(run_folder, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    return copy


@pytest.mark.slow  # three ground estimates
def test_export_into_the_run_folder_keeps_every_file_and_meta_json_in_one_frame(run_folder, tmp_path, body_dir):
    """Rewriting every track in the run folder makes meta.json name their frame (and the ground).
    Without --world or --camera an export keeps the run's frame: a world run's FBX re-exported
    was the one file in the camera frame, and meta.json then said "camera" over world npz files
    (a user trial). A change of frame also rewrites the files of the other formats there (--world
    with the default --format glb left the npz in the camera frame: the same trial)."""
    from pygltflib import GLTF2

    def frames_of(run):
        return {p.name: (str(np.load(p)["frame"]) if p.suffix == ".npz" else GLTF2().load(str(p)).asset.extras["frame"])
                for p in sorted(run.glob("track_*"))}

    run = _copy_run(run_folder, tmp_path)
    assert invoke("export", run, "--format", "npz", "--body-models", body_dir).exit_code == 0  # (the run's: camera)
    r = invoke("export", run, "--world", "--body-models", body_dir)  # the default --format: glb
    assert r.exit_code == 0, r.output
    assert "also rewriting the npz files of these tracks in the world frame" in " ".join(r.output.split()), r.output
    meta = json.loads((run / "meta.json").read_text())
    assert meta["frame"] == "world" and meta["world"]["camera_height_m"] == pytest.approx(1.4, abs=0.02)
    assert set(frames_of(run).values()) == {"world"} and len(frames_of(run)) == 4
    world_npz = (run / "track_0.npz").read_bytes()
    r = invoke("export", run, "--format", "glb", "--body-models", body_dir)  # the run's frame: world again
    assert r.exit_code == 0 and "also rewriting" not in r.output, r.output
    assert set(frames_of(run).values()) == {"world"} and (run / "track_0.npz").read_bytes() == world_npz
    assert json.loads((run / "meta.json").read_text()) == meta
    r = invoke("export", run, "--camera", "--format", "glb", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert set(frames_of(run).values()) == {"camera"} and len(frames_of(run)) == 4
    meta = json.loads((run / "meta.json").read_text())
    assert meta["frame"] == "camera" and "world" not in meta
    # one track into the world (meta.json stays: a warning), then that track in the run's frame
    # again: its npz was left in the world beside a camera GLB (a user trial)
    assert invoke("export", run, "--world", "--track", "0", "--format", "glb", "--body-models", body_dir).exit_code == 0
    assert frames_of(run)["track_0.npz"] == frames_of(run)["track_0.glb"] == "world"
    r = invoke("export", run, "--track", "0", "--format", "glb", "--body-models", body_dir)
    assert r.exit_code == 0 and "also rewriting the npz files" in " ".join(r.output.split()), r.output
    assert set(frames_of(run).values()) == {"camera"}


def test_a_change_of_frame_needing_an_fbx_rewrite_without_blender_is_one_line(run_folder, tmp_path, body_dir,
                                                                                monkeypatch):
    """The run's FBX files must follow a change of frame; where Blender's module is missing the
    refusal said only "FBX export needs Blender" to a user who asked for npz (a review): it says
    why, before anything is written. `ExportJob(world=WorldConfig())` alone asks for the world
    (it was ignored after `frame` came in: the same review)."""
    from wbcap.errors import InputError
    from wbcap.export import fbx
    from wbcap.export.animation import AnimationExport
    from wbcap.export.from_run import ExportJob, export_run
    from wbcap.world.estimate import WorldConfig

    run = _copy_run(run_folder, tmp_path)
    (run / "track_0.fbx").write_bytes(b"Kaydara FBX Binary  \x00 an earlier export's FBX: pelvis, left_eye_smplhf")
    monkeypatch.setattr(fbx, "blender_available", lambda: False)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    job = ExportJob(run=str(run), export=AnimationExport(formats=("npz",)), body_models=str(body_dir),
                    world=WorldConfig())
    assert job.frame == "world"
    with pytest.raises(InputError, match=r"its fbx files are in the camera frame and must be rewritten in the world "
                                         r"frame with the others: FBX export needs Blender's Python module"):
        export_run(job)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    with pytest.raises(ValueError, match="frame='camera'"):
        ExportJob(run=str(run), export=AnimationExport(formats=("npz",)), frame="camera", world=WorldConfig())


@pytest.mark.slow  # two ground estimates
def test_values_a_params_jsonl_holds_and_its_tracks_cannot_carry_are_warned_of(tmp_path, scene, caplog):
    """A hand-edited params.jsonl's eye poses were dropped by `wbcap export` without a word (a
    researcher's trial), and so were a track's shapes after its first line's: each is warned of,
    once, with the number of lines; wbcap's own file warns of nothing."""
    import logging

    from wbcap.export.params_jsonl import read_params_jsonl, write_params_jsonl
    from wbcap.smooth.track import rows_by_frame

    tracks = {k: p.noisy for k, p in scene.people.items()}
    cam = scene.camera
    path = tmp_path / "params.jsonl"
    write_params_jsonl(path, {i: float(t) for i, t in enumerate(scene.times)}, tracks, rows_by_frame(tracks),
                       cam.focal[0], cam.princpt, cam.image_size)
    with caplog.at_level(logging.WARNING, logger="wbcap.export.params_jsonl"):
        read_params_jsonl(path)
    assert caplog.records == []
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[3]["leye_pose"] = [0.1, 0.0, 0.0]
    lines[5]["reye_pose"] = [0.0, -0.2, 0.0]
    changed = [r for r in lines if r["track"] == 1][1]  # (its second line)
    changed["shape"] = [v + 0.5 for v in changed["shape"]]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with caplog.at_level(logging.WARNING, logger="wbcap.export.params_jsonl"):
        _, back, _ = read_params_jsonl(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 2 line(s) give leye_pose/reye_pose other than zero; wbcap keeps SMPL-X's rest eyes (Hand4Whole does "
        "not estimate them), so those are not used",
        f"{path}: the shape of track(s) 1 changes between lines; wbcap gives a track one shape, its first line's"]
    lines[7]["leye_pose"] = [10**400, 0, 0]  # (a number no float holds: warned of, not a crash, a code review)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wbcap.export.params_jsonl"):
        read_params_jsonl(path)
    assert caplog.records[0].getMessage().startswith(f"{path}: 3 line(s) give leye_pose/reye_pose other than zero")
    np.testing.assert_array_equal(back[1].betas, tracks[1].betas)


def test_a_default_export_of_a_world_run_whose_ground_falls_back_keeps_the_folder_in_one_frame(
        run_folder, tmp_path, body_dir, monkeypatch):
    """Re-exported in place (its frame: the run's, world), the ground found again may fall back to
    the camera frame, or differ: only the GLB was rewritten, the npz kept the old world under a
    meta.json saying camera (a review). The files of every format there follow the ground found."""
    from wbcap.world import estimate

    run = _copy_run(run_folder, tmp_path)
    assert invoke("export", run, "--world", "--format", "npz,glb", "--body-models", body_dir).exit_code == 0
    monkeypatch.setattr(estimate, "ground_tracks",
                        lambda tracks, *a, **k: estimate.WorldResult(frame=None, reason="forced", tracks=tracks))
    r = invoke("export", run, "--format", "glb", "--body-models", body_dir)
    assert r.exit_code == 0 and "also rewriting the npz files" in " ".join(r.output.split()), r.output
    assert str(np.load(run / "track_0.npz")["frame"]) == "camera"
    assert json.loads((run / "meta.json").read_text())["frame"] == "camera"


@pytest.mark.parametrize("damage", ["no camera anywhere", "damaged camera"])
def test_export_world_without_a_usable_camera_is_one_line_and_writes_nothing(run_folder, tmp_path, body_dir, damage):
    run = _copy_run(run_folder, tmp_path)
    lines = [json.loads(x) for x in (run / "params.jsonl").read_text().splitlines()]
    meta = json.loads((run / "meta.json").read_text())
    if damage == "no camera anywhere":
        for rec in lines:
            rec.pop("camera")
        meta.pop("camera")
    else:
        lines[0]["camera"] = {"focal": [1000.0, 1000.0]}  # no princpt, no image_size
    (run / "params.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in lines))
    (run / "meta.json").write_text(json.dumps(meta))
    dest = tmp_path / "out"
    r = invoke("export", run, "--world", "--format", "npz", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 2, r.output
    msg = r.output.strip()
    assert "\n" not in msg and "Traceback" not in msg and "params.jsonl" in msg, msg
    assert ("camera" in msg) if damage == "no camera anywhere" else ("params.jsonl:1" in msg)
    assert not dest.exists()


def test_export_of_one_track_splits_it_as_the_run_did(scene, tmp_path, body_dir):
    """With --max-gap 0, a person seen every other frame beside one seen in every frame: `wbcap run`
    split the first into 10 pieces (its step of 1), `wbcap export --track` of it alone guessed the
    step from that track (2) and wrote one piece (a review). The run's step is now meta.json's
    frame_step, or for a run written before it the step of all of params.jsonl's frames."""
    from wbcap.export.params_jsonl import write_params_jsonl
    from wbcap.io.run_folder import write_meta
    from wbcap.smooth.track import SmoothedTrack, rows_by_frame

    def rows(tr: SmoothedTrack, keep: np.ndarray) -> SmoothedTrack:
        return SmoothedTrack(**{k: (v if k == "betas" or v is None else np.asarray(v)[keep]) for k, v in vars(tr).items()})

    n = 20
    tracks = {0: rows(scene.people[0].noisy, np.arange(n)), 1: rows(scene.people[1].noisy, np.arange(0, n, 2))}
    cam = scene.camera
    for with_step in (True, False):
        run = tmp_path / f"run_{with_step}"
        run.mkdir()
        write_params_jsonl(run / "params.jsonl", {i: float(scene.times[i]) for i in range(n)}, tracks,
                           rows_by_frame(tracks), cam.focal[0], cam.princpt, cam.image_size)
        write_meta(run, {"source": "synthetic", "fps": 30.0, "gender": "neutral", "max_gap": 0.0, "tracks": [0, 1],
                         "camera": {"focal": list(cam.focal), "princpt": list(cam.princpt),
                                    "image_size": list(cam.image_size)}, "frame": "camera",
                         **({"frame_step": 1} if with_step else {})})
        for args in ((), ("--track", "1")):
            dest = tmp_path / f"out_{with_step}_{len(args)}"
            r = invoke("export", run, *args, "--format", "npz", "--dest", dest, "--body-models", body_dir)
            assert r.exit_code == 0, r.output
            assert len(list(dest.glob("track_1_part*.npz"))) == 10, (with_step, args, sorted(p.name for p in dest.iterdir()))


def test_a_ground_found_again_within_float_noise_is_the_same_ground():
    """A GPU run's ground and the CPU export's differ in float32's last bits (0.2 µm), which made
    every default export of the run rewrite each format (or refuse an FBX without Blender: a
    review); a ground a millimetre off, a fall-back or another frame still count as a change."""
    from wbcap.export.from_run import _frame_changes
    from wbcap.world.estimate import WorldResult

    world = {"frame": "world", "ground_normal_camera": [0.0, -0.978, 0.208], "ground_offset_m": 1.394143656,
             "world_from_camera": [[1.0, 0.0, 0.0], [0.0, 0.208, 0.978], [0.0, -0.978, 0.208]],
             "camera_position_m": [0.0, 0.0, 1.394143656], "inlier_ratio": 1.0}

    class Found:
        frame = "a WorldFrame"

        def __init__(self, **change):
            self.meta = {**world, **change}

        def to_meta(self):
            return self.meta

    meta = {"frame": "world", "world": world}
    assert not _frame_changes(meta, Found(ground_offset_m=1.394143449, inlier_ratio=0.97))
    assert _frame_changes(meta, Found(ground_offset_m=1.395143656))
    assert _frame_changes(meta, WorldResult(frame=None, reason="feet never still", tracks={}))
    assert _frame_changes({"frame": "camera"}, Found()) and not _frame_changes({"frame": "camera"}, None)


def test_export_refuses_world_and_camera_together(tmp_path):
    """One switch pair took the last of --world and --camera silently (a script adding --world to
    a command ending in --camera got the camera frame: a researcher's trial)."""
    for order in (("--world", "--camera"), ("--camera", "--world")):
        r = CliRunner().invoke(cli, ["export", str(tmp_path), *order])
        assert r.exit_code == 2 and "use either --world or --camera" in r.output, r.output
        assert "Traceback" not in r.output


def test_a_world_exports_c3d_holds_the_feets_contacts_as_gait_events(run_folder, tmp_path, body_dir, scene):
    """`--export c3d` of a grounded run: C3D's EVENT group (as py-c3d reads it) holds a Foot Strike
    where a foot becomes planted and a Foot Off where it lifts, per side, at the npz's contacts'
    rows on the file's frame clock; the walker's strikes are within 2 frames of the true gait's."""
    import warnings

    import c3d

    from wbcap.world.contact import foot_events

    dest = tmp_path / "c3d"
    r = invoke("export", run_folder, "--world", "--format", "npz,c3d", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    for tid in (0, 1):
        d = np.load(dest / f"track_{tid}.npz")
        with open(dest / f"track_{tid}.c3d", "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ("No analog data found in file.")
            reader = c3d.Reader(fh)
            rate, first = reader.point_rate, reader.first_frame - 1
            assert reader.get("WBCAP:GROUND_FROM").string_value.strip() == "feet"  # (not a lab's calibrated frame)
            want = foot_events(d["contact"])
            if not want:
                assert reader.get("EVENT:USED") is None or reader.get("EVENT:USED").int16_value == 0
                continue
            times = reader.get("EVENT:TIMES").float_array  # (minutes, seconds) per event
            got = [(round((60 * m + s) * rate) - first, c.strip(), label.strip()) for (m, s), c, label in
                   zip(times, reader.get("EVENT:CONTEXTS").string_array, reader.get("EVENT:LABELS").string_array)]
        assert got == want
        assert first == round(float(d["times"][0]) * rate)
    walker = foot_events(np.load(dest / "track_0.npz")["contact"])
    true = foot_events(scene.people[0].contact)
    strikes = [(row, side) for row, side, event in walker if event == "Foot Strike"]
    true_strikes = [(row, side) for row, side, event in true if event == "Foot Strike"]
    assert len(true_strikes) >= 3
    for row, side in true_strikes:
        assert any(s == side and abs(r - row) <= 2 for r, s in strikes), (row, side, strikes)


def test_foot_events_are_the_contacts_changes():
    from wbcap.world.contact import foot_events

    contact = np.zeros((8, 2), bool)
    contact[0:3, 0] = True  # (planted from the start: no strike at row 0)
    contact[5:, 0] = True
    contact[2:6, 1] = True
    assert foot_events(contact) == [(2, "Right", "Foot Strike"), (3, "Left", "Foot Off"), (5, "Left", "Foot Strike"),
                                    (6, "Right", "Foot Off")]
    assert foot_events(np.zeros((0, 2), bool)) == [] and foot_events(np.ones((1, 2), bool)) == []
    with pytest.raises(ValueError, match="expected"):
        foot_events(np.zeros(4, bool))


def test_export_world_of_a_calibrated_run_writes_the_calibrations_world(run_folder, tmp_path, body_dir, scene):
    """`wbcap export --world` of a run whose meta.json records the calibration's camera pose (its
    world turned 30 deg about z and shifted along the floor, in millimetres): the files in that
    world (the npz's camera pose, the GLB's camera node, the TRC's markers on its floor); a damaged
    pose in meta.json is one line naming it."""
    from wbcap.testing.world_scenes import LabCalibration

    run = _copy_run(run_folder, tmp_path)
    lab = LabCalibration.of(scene.world_from_camera[0], scene.camera_position[0])
    pose, lab_from_camera, centre = lab.pose, lab.lab_from_camera, lab.centre
    meta = json.loads((run / "meta.json").read_text())
    record = {"image_size": [1280, 720], "matrix": [[1468.6, 0, 639.5], [0, 1468.6, 359.5], [0, 0, 1]],
              "distortion": [], "fisheye": False, "name": "cam01", "file": "/lab/Calib.toml", "scale": None,
              **pose.to_dict()}
    (run / "meta.json").write_text(json.dumps({**meta, "calibration": record}))
    dest = tmp_path / "lab"
    r = invoke("export", run, "--world", "--format", "npz,glb,trc,c3d", "--dest", dest, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    import ezc3d

    c3d = ezc3d.c3d(str(dest / "track_0.c3d"))
    assert c3d["parameters"]["WBCAP"]["GROUND_FROM"]["value"] == ["calibration"]
    assert c3d["parameters"]["WBCAP"]["FRAME"]["value"] == ["world"]
    d = np.load(dest / "track_0.npz")
    assert str(d["frame"]) == "world" and str(d["ground_from"]) == "calibration"
    np.testing.assert_allclose(d["camera_rotation"], lab_from_camera, atol=1e-9)
    np.testing.assert_allclose(d["camera_position"], centre, atol=1e-9)
    from pygltflib import GLTF2

    g = GLTF2().load_binary(str(dest / "track_0.glb"))
    cam = next(n for n in g.nodes if n.name == "source_camera")
    np.testing.assert_allclose(cam.translation, YUP_FROM_ZUP @ centre, atol=1e-6)
    assert "the floor of the camera's calibration" in g.asset.extras["ground"]
    assert g.asset.extras["front_axis"].startswith("+z (the calibration's -y")
    rows = [line.split("\t") for line in (dest / "track_1.trc").read_text().splitlines()[5:] if line.strip()]
    heels = np.array([[float(v) for v in row[2:]] for row in rows]).reshape(len(rows), -1, 3)
    assert abs(np.median(heels[:, :, 1].min(1))) < 0.1  # (the standing person's lowest marker near Y = 0, the floor)
    r = invoke("export", run_folder, "--world", "--trust-calibration", "--format", "npz", "--dest", tmp_path / "t",
               "--body-models", body_dir)  # (a run without a calibration: nothing to trust)
    assert r.exit_code == 2 and "meta.json: records no calibration with the camera's pose, which --trust-calibration " \
                                "takes" in " ".join(r.output.split()) and not (tmp_path / "t").exists(), r.output
    record["rotation"] = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    (run / "meta.json").write_text(json.dumps({**meta, "calibration": record}))
    r = invoke("export", run, "--world", "--format", "npz", "--dest", tmp_path / "bad", "--body-models", body_dir)
    msg = r.output.strip()
    assert r.exit_code == 2 and "\n" not in msg and "meta.json: a damaged calibration" in msg, msg
    assert not (tmp_path / "bad").exists()
