"""Named joint angles (`--export angles`, wbcap.body.joint_angles): every angle's name against
what the body does, seen on plain `smplx`'s posed points (a knee's flexion moves the ankle back,
a hip's adduction the knee towards the midline, a wrist's radial deviation the hand towards the
thumb...), on both sides; the global angles against a person turned before the camera; known
answers on a known motion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wbcap.body.joint_angles import GLOBAL_SEGMENTS, angle_names, joint_angles

THETA = 0.4  # radians (23°): each test rotation


@pytest.fixture(scope="module")
def posed(body_dir):
    """``posed(poses (55, 3))`` -> ``{name: (3,) point}``: plain ``smplx``'s output joints (its own
    names) and a few vertices (`chin`, the hand's thumb and little-finger sides, `*_hand_front`/
    `*_hand_back`, at the knuckles), with the root as given (the SMPL-X rest frame: x the person's
    left, y up, z forwards)."""
    import smplx
    import torch
    from smplx.joint_names import JOINT_NAMES

    model = smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, flat_hand_mean=True,
                         use_face_contour=True)
    owner = model.lbs_weights.numpy().argmax(1)
    rest = model().vertices[0].detach().numpy()
    picks = {}
    jaw = np.flatnonzero(owner == 22)
    picks["chin"] = jaw[rest[jaw, 2].argmax()]
    picks["jaw_left"], picks["jaw_right"] = jaw[rest[jaw, 0].argmax()], jaw[rest[jaw, 0].argmin()]
    for side, wrist, sign in (("left", 20, 1), ("right", 21, -1)):
        hand = np.flatnonzero(owner == wrist)
        knuckles = hand[np.abs(rest[hand, 0] - sign * 0.74) < 0.02]  # (the synthetic hand's palm, 6 cm past the wrist)
        picks[f"{side}_hand_front"] = knuckles[rest[knuckles, 2].argmax()]
        picks[f"{side}_hand_back"] = knuckles[rest[knuckles, 2].argmin()]

    def points(poses: np.ndarray) -> dict[str, np.ndarray]:
        p = torch.tensor(np.asarray(poses, np.float32).reshape(1, 165))
        out = model(global_orient=p[:, :3], body_pose=p[:, 3:66], jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72],
                    reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120], right_hand_pose=p[:, 120:165])
        joints, vertices = out.joints[0].detach().numpy(), out.vertices[0].detach().numpy()
        named = {name: joints[k] for k, name in enumerate(JOINT_NAMES[:76])}
        named.update({name: vertices[k] for name, k in picks.items()})
        return named

    return points


# What each movement does, as a number that grows with it, of the points' displacements ``d`` (moved
# minus rest) and the side's sign ``m`` (+1 left, -1 right: the person's left is +x, so "towards the
# midline" is -m x). `None`: not checked by points (a finger's twist).
def _mid(d, a, b, axis):
    return (d[a][axis] + d[b][axis]) / 2


TRUNK = {  # (the ears and nose, above every trunk joint)
    "flexion": lambda d, m: -(d["nose"][1] - _mid(d, "left_ear", "right_ear", 1)),  # the face tips down
    "lateral_bend_left": lambda d, m: -(d["left_ear"][1] - d["right_ear"][1]),  # the left ear down
    "rotation_left": lambda d, m: -(d["left_ear"][2] - d["right_ear"][2]),  # the left ear back
}


def movements(joint: str, side: str) -> dict:
    """Each movement of ``joint`` (``smplx``'s name without the side) as a function of the points' displacements."""
    s = f"{side}_" if side else ""
    toe_turn = lambda d, m: -m * (d[f"{s}big_toe"][0] - d[f"{s}heel"][0])  # (toes medial, heel lateral)
    if joint in ("spine1", "spine2", "spine3", "neck", "head"):
        return TRUNK
    if joint == "hip":
        return {"flexion": lambda d, m: d[f"{s}knee"][2], "adduction": lambda d, m: -m * d[f"{s}knee"][0],
                "internal_rotation": toe_turn}
    if joint == "knee":
        return {"flexion": lambda d, m: -d[f"{s}ankle"][2], "adduction": lambda d, m: -m * d[f"{s}ankle"][0],
                "internal_rotation": toe_turn}
    if joint in ("ankle", "foot"):
        return {"dorsiflexion": lambda d, m: d[f"{s}big_toe"][1] - d[f"{s}heel"][1],
                "inversion": lambda d, m: d[f"{s}big_toe"][1] - d[f"{s}small_toe"][1],  # the big toe's edge up
                "adduction": toe_turn}
    thumb_down = lambda d, m: -(d[f"{s}hand_front"][1] - d[f"{s}hand_back"][1])
    if joint in ("collar", "shoulder", "elbow"):
        return {"elevation": lambda d, m: d[f"{s}wrist"][1], "flexion": lambda d, m: d[f"{s}wrist"][2],
                "protraction": lambda d, m: d[f"{s}wrist"][2], "internal_rotation": thumb_down,
                "pronation": thumb_down}
    if joint == "wrist":
        return {"flexion": lambda d, m: -d[f"{s}middle"][1], "radial_deviation": lambda d, m: d[f"{s}middle"][2],
                "pronation": thumb_down}
    if joint == "jaw":
        return {"opening": lambda d, m: -d["chin"][1], "lateral_left": lambda d, m: d["chin"][0],
                "tilt_left": lambda d, m: -(d["jaw_left"][1] - d["jaw_right"][1])}
    finger = joint.rstrip("123")  # (the finger's tip: smplx's `left_index` vertex joint)
    return {"flexion": lambda d, m: -d[f"{s}{finger}"][1], "radial_deviation": lambda d, m: d[f"{s}{finger}"][2],
            "pronation": None}


JOINTS = {  # smplx's name -> SMPL-X joint index
    "left_hip": 1, "right_hip": 2, "spine1": 3, "left_knee": 4, "right_knee": 5, "spine2": 6, "left_ankle": 7,
    "right_ankle": 8, "spine3": 9, "left_foot": 10, "right_foot": 11, "neck": 12, "left_collar": 13,
    "right_collar": 14, "head": 15, "left_shoulder": 16, "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19,
    "left_wrist": 20, "right_wrist": 21, "jaw": 22, "left_index1": 25, "left_index3": 27, "left_middle2": 29,
    "left_thumb1": 37, "right_index1": 40, "right_pinky2": 47, "right_thumb3": 54,
}


def test_the_columns_are_named_after_smplxs_joints_and_the_global_chains_follow_its_tree():
    from smplx.joint_names import JOINT_NAMES

    from wbcap.body.joints import SMPLX_PARENTS

    names = angle_names()
    assert len(names) == len(set(names)) == 6 + 3 * (21 + 1 + 30)
    assert names[:6] == ("pelvis_yaw_left", "pelvis_pitch_up", "pelvis_roll_left", "head_yaw_left", "head_pitch_up",
                         "head_roll_left")
    joints = [n for n in JOINT_NAMES[1:55] if "eye" not in n]  # (smplx's names, model order)
    assert len(names[6:]) == 3 * len(joints)
    for k, joint in enumerate(joints):
        assert all(n.startswith(joint + "_") for n in names[6 + 3 * k:9 + 3 * k]), (joint, names[6 + 3 * k:9 + 3 * k])
    for _, chain in GLOBAL_SEGMENTS:
        assert chain[0] == 0 and all(SMPLX_PARENTS[b] == a for a, b in zip(chain, chain[1:]))


@pytest.mark.parametrize("joint", sorted(JOINTS, key=JOINTS.get))
def test_each_angle_is_the_movement_it_is_named_after(posed, joint):
    """A rotation of ``joint`` alone about each of the rest frame's axes turns exactly one of its
    three angles, by the rotation's size; the movement that column names is the one the body makes
    (of the movements' measures on smplx's points, its is the largest, with the column's sign); the
    three axes give the three columns."""
    names = angle_names()
    j = JOINTS[joint]
    side = "left" if joint.startswith("left_") else "right" if joint.startswith("right_") else ""
    base = joint[len(side) + 1:] if side else joint
    columns = [k for k, n in enumerate(names) if n.startswith(joint + "_") and k >= 6]  # (not head_yaw_left...)
    assert len(columns) == 3
    moves = movements(base, side)
    rest = posed(np.zeros((55, 3)))
    seen = set()
    for axis in np.eye(3):
        pose = np.zeros((55, 3))
        pose[j] = THETA * axis
        values = joint_angles(pose[None])[0]
        assert np.abs(np.delete(values, columns)[6:]).max() < 1e-9  # (no other joint's angle; the root left at 0)
        ours = values[columns]
        k = int(np.abs(ours).argmax())
        assert abs(ours[k]) == pytest.approx(np.degrees(THETA), abs=1e-6)
        assert np.abs(np.delete(ours, k)).max() < 1e-6
        seen.add(k)
        moved = posed(pose)
        d = {name: moved[name] - rest[name] for name in rest}
        m = -1 if side == "right" else 1
        measures = {}
        for c in range(3):
            fn = moves[names[columns[c]][len(joint) + 1:]]
            value = None if fn is None else fn(d, m)
            if value is not None:
                measures[c] = value
        if k not in measures:  # (a finger's twist: no point shows it)
            continue
        best = max(measures, key=lambda c: abs(measures[c]))
        assert best == k, (names[columns[k]], {names[columns[c]]: measures[c] for c in measures})
        assert np.sign(measures[k]) == np.sign(ours[k]) and abs(measures[k]) > 5e-3, (names[columns[k]], measures[k], ours[k])
    assert seen == {0, 1, 2}


_FACING = Rotation.from_matrix([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # (upright facing the camera, z-up AMASS frame)


@pytest.mark.parametrize("segment", ["pelvis", "head"])
def test_the_global_angles_are_the_turn_from_upright_facing_the_camera(posed, segment):
    """The pelvis turned from upright facing the camera (root) and the head turned by the neck:
    yaw_left turns the face to the person's left, pitch_up raises it, roll_left drops the left ear;
    upright facing the camera is 0."""
    names = angle_names()
    columns = [names.index(f"{segment}_{m}") for m in ("yaw_left", "pitch_up", "roll_left")]
    upright = np.zeros((55, 3))
    upright[0] = _FACING.as_rotvec()
    assert np.abs(joint_angles(upright[None])[0][:6]).max() < 1e-9
    rest = posed(upright)
    body_from_world = _FACING.inv().as_matrix()
    measures = {  # (in the person's rest axes)
        0: lambda d: -(d["left_ear"][2] - d["right_ear"][2]),
        1: lambda d: d["nose"][1] - (d["left_ear"][1] + d["right_ear"][1]) / 2,
        2: lambda d: -(d["left_ear"][1] - d["right_ear"][1]),
    }
    for axis in np.eye(3):
        pose = upright.copy()
        if segment == "pelvis":
            pose[0] = (_FACING * Rotation.from_rotvec(THETA * axis)).as_rotvec()
        else:
            pose[12] = THETA * axis
        values = joint_angles(pose[None])[0]
        ours = values[columns]
        k = int(np.abs(ours).argmax())
        assert abs(ours[k]) == pytest.approx(np.degrees(THETA), abs=1e-6) and np.abs(np.delete(ours, k)).max() < 1e-6
        if segment == "pelvis":
            np.testing.assert_allclose(values[3:6], ours, atol=1e-9)  # (the head turns with it)
        else:
            assert np.abs(values[:3]).max() < 1e-9
        moved = posed(pose)
        d = {name: body_from_world @ (moved[name] - rest[name]) for name in rest}
        got = {c: fn(d) for c, fn in measures.items()}
        assert max(got, key=lambda c: abs(got[c])) == k and np.sign(got[k]) == np.sign(ours[k]), (names[columns[k]], got)


def test_known_motion_rows_batched_and_unwrapped():
    """A person turning round twice while the right knee flexes 0->60 and the left elbow 0->90:
    the pelvis's yaw goes on past 180 (unwrapped, to 720), the knee's and elbow's flexion are the
    motion's, each row equals that row alone; a photo's one row works; other shapes are refused."""
    n = 41
    s = np.linspace(0, 1, n)
    pose = np.zeros((n, 55, 3))
    pose[:, 0] = (_FACING * Rotation.from_rotvec(4 * np.pi * s[:, None] * [0, 1, 0])).as_rotvec()
    pose[:, 5, 0] = np.radians(60) * s  # (right knee: about +x, as OpenSim's IK of such a file read it: test_export_trc)
    pose[:, 18, 1] = -np.radians(90) * s  # (left elbow: the forearm forwards, about the vertical)
    angles = joint_angles(pose)
    names = angle_names()
    np.testing.assert_allclose(angles[:, names.index("pelvis_yaw_left")], 720 * s, atol=1e-6)
    np.testing.assert_allclose(angles[:, names.index("right_knee_flexion")], 60 * s, atol=1e-9)
    np.testing.assert_allclose(angles[:, names.index("left_elbow_flexion")], 90 * s, atol=1e-9)
    for row in (0, 7, n - 1):
        alone = joint_angles(pose[row:row + 1])[0]
        np.testing.assert_allclose((angles[row] - alone + 180) % 360 - 180, 0, atol=1e-9)
    assert joint_angles(pose.reshape(n, 165)[:1]).shape == (1, len(names))
    assert joint_angles(np.zeros((0, 165))).shape == (0, len(names))
    with pytest.raises(ValueError, match="expected"):
        joint_angles(np.zeros((2, 54, 3)))


def _read_angles(path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), np.array([[float(v) for v in line.split(",")] for line in lines[1:]])


def test_run_export_and_image_write_the_angles_of_the_npz(tmp_path, micro_ckpt, body_dir):
    """`wbcap run --export npz,angles`: track_0_angles.csv has the npz's 8 rows (filled ones too),
    its clock, frames and validity, and the angles of its poses (to the file's 4 decimals); `wbcap
    export --format angles` writes the same bytes, and refuses a user's own track_0_angles.csv in
    its --dest; `wbcap image --export angles` writes output_angles.csv, one row of output.npz's pose."""
    from test_export_trc import _clip, image_export, run

    video = _clip(tmp_path)  # (8 frames at 10 fps, the person missed in frames 3-4)
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render",
            "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu", "--export", "npz,angles")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("track_*")) == ["track_0.npz", "track_0_angles.csv"]
    npz = np.load(out / "track_0.npz")
    header, rows = _read_angles(out / "track_0_angles.csv")
    assert header == ["time", "frame_index", "valid", *angle_names()]
    np.testing.assert_allclose(rows[:, 0], npz["times"], atol=1e-6)
    assert rows[:, 1].tolist() == npz["frame_indices"].tolist() == [0, 1, 2, -1, -1, 5, 6, 7]
    assert rows[:, 2].tolist() == npz["valid"].astype(float).tolist()
    want = joint_angles(npz["poses"])
    np.testing.assert_allclose(rows[:, 3:], want, atol=5.1e-5)
    assert np.abs(want).max() > 1  # (not the rest pose)

    again = tmp_path / "again"
    r = run("export", out, "--format", "angles", "--dest", again, "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert (again / "track_0_angles.csv").read_bytes() == (out / "track_0_angles.csv").read_bytes()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "track_0_angles.csv").write_text("time,knee\n0,12\n")
    r = run("export", out, "--format", "angles", "--dest", mine, "--body-models", body_dir)
    assert r.exit_code != 0 and "track_0_angles.csv: wbcap did not write this file" in r.output
    assert (mine / "track_0_angles.csv").read_text() == "time,knee\n0,12\n"

    r, person = image_export(tmp_path, micro_ckpt, body_dir, "npz,angles")
    assert r.exit_code == 0, r.output
    header, rows = _read_angles(person / "output_angles.csv")
    assert rows.shape == (1, 3 + len(angle_names()))
    np.testing.assert_allclose(rows[:, 3:], joint_angles(np.load(person / "output.npz")["poses"]), atol=5.1e-5)
    r, _ = image_export(tmp_path, micro_ckpt, body_dir, "npz,angles", "--skip-done")
    assert r.exit_code == 0 and "skip" in r.output.lower(), r.output


def test_a_head_turned_before_the_camera_in_the_files_frames(tmp_path, body_layer):
    """A known answer through the writer: the synthetic body facing the camera (OpenCV frame, as
    the network gives it), its neck turning the head 0->30° to the person's left while its right knee
    flexes 0->60°: the file's head_yaw_left and right_knee_flexion are those, the pelvis's angles 0."""
    import torch

    from wbcap.export.amass import amass_arrays
    from wbcap.export.animation import AnimationExport, write_animations

    n = 11
    s = np.linspace(0, 1, n)
    body_pose = np.zeros((n, 21, 3))
    body_pose[:, 11, 1] = np.radians(30) * s  # (neck, SMPL-X joint 12: about the body's vertical, +y: its left)
    body_pose[:, 4, 0] = np.radians(60) * s  # (right knee)
    facing = Rotation.from_rotvec([np.pi, 0, 0])  # (OpenCV camera: upright, facing it)
    left, right = body_layer.hands_mean()
    rest = body_layer.rest_root(torch.zeros(1, 10)).numpy()[0]
    arrays = amass_arrays(
        global_orient=np.tile(facing.as_rotvec(), (n, 1)), body_pose=body_pose.reshape(n, 63), jaw_pose=np.zeros((n, 3)),
        left_hand_pose=np.zeros((n, 45)), right_hand_pose=np.zeros((n, 45)), transl=np.tile([0.0, 0.2, 4.0], (n, 1)),
        betas=np.zeros(10), expression=np.zeros((n, 10)), hands_mean=(left, right), rest_root=rest, fps=10.0,
        times=np.arange(n) / 10, frame_indices=np.arange(n), valid=np.ones(n, bool), gender="neutral")
    (path,) = write_animations(tmp_path, "track_0", arrays, body_layer, AnimationExport(formats=("angles",)))
    assert path.name == "track_0_angles.csv"
    header, rows = _read_angles(path)
    column = {name: rows[:, k] for k, name in enumerate(header)}
    np.testing.assert_allclose(column["head_yaw_left"], 30 * s, atol=1e-4)
    np.testing.assert_allclose(column["neck_rotation_left"], 30 * s, atol=1e-4)
    np.testing.assert_allclose(column["right_knee_flexion"], 60 * s, atol=1e-4)
    for name in ("pelvis_yaw_left", "pelvis_pitch_up", "pelvis_roll_left", "head_pitch_up", "head_roll_left"):
        np.testing.assert_allclose(column[name], 0, atol=1e-4)


def test_a_users_own_tables_in_a_run_folder_are_never_taken_for_wbcaps(tmp_path, micro_ckpt, body_dir):
    """A user's `track_9_angles.csv`, `track_9.csv`, a copy of wbcap's angles saved again by a
    spreadsheet (its numbers written shortest) and a GLB saved by Blender in a run folder:
    `--overwrite` is refused, a `--resume` keeps them while removing wbcap's own tables (saying
    `--format angles,csv`, not `csv` twice), keeps one under a name it writes (a table, a GLB) with
    a warning, and an export in place refuses it (a user trial's were deleted by a resume and an
    overwrite, and replaced by an export)."""
    import json

    from test_export_trc import _clip, run

    from wbcap.io.run_folder import written_by_wbcap

    video = _clip(tmp_path)
    out = tmp_path / "out"
    args = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render", "--checkpoint", micro_ckpt,
            "--body-models", body_dir, "--device", "cpu"]
    assert run("run", video, "-o", out, *args, "--export", "npz,csv,angles").exit_code == 0
    ours = out / "track_0_angles.csv"
    assert written_by_wbcap(ours) and written_by_wbcap(out / "track_0.csv")
    header, *rows = ours.read_text().splitlines()
    resaved = "\n".join([header, *(",".join(repr(float(v)) if "." in v else v for v in r.split(",")) for r in rows)])
    blender = json.dumps({"asset": {"version": "2.0", "generator": "Khronos glTF Blender I/O"}}).encode()
    blender += b" " * (-len(blender) % 4)
    edited = b"glTF" + (2).to_bytes(4, "little") + (20 + len(blender)).to_bytes(4, "little") + len(blender).to_bytes(
        4, "little") + b"JSON" + blender  # (a GLB saved by Blender under a track's name: every format by its marks)
    (out / "track_8.glb").write_bytes(edited)
    mine = {"track_9_angles.csv": "time,knee\n0,12\n", "track_9.csv": "mine\n", "track_8_angles.csv": resaved + "\n"}
    for name, text in mine.items():
        (out / name).write_text(text)
    assert not any(written_by_wbcap(out / name) for name in mine)
    (out / "track_7_angles.csv").write_text(header + "\n")  # (wbcap's header, no row: not its file either)
    mine["track_7_angles.csv"] = header + "\n"
    assert not written_by_wbcap(out / "track_7_angles.csv")
    crlf = tmp_path / "track_0_angles.csv"  # (wbcap's own, through git's autocrlf: still its own)
    crlf.write_bytes(ours.read_bytes().replace(b"\n", b"\r\n"))
    assert written_by_wbcap(crlf)

    r = run("run", video, "-o", out, *args, "--overwrite", "--export", "npz")
    assert r.exit_code == 2 and "holds files wbcap did not write (e.g. track_7_angles.csv)" in r.output, r.output
    r = run("run", video, "-o", out, *args, "--resume", "--export", "npz")
    assert r.exit_code == 0, r.output
    assert {n: (out / n).read_text() for n in mine} == mine and (out / "track_8.glb").read_bytes() == edited
    assert not ours.exists() and not (out / "track_0.csv").exists()  # (wbcap's own: removed, and said)
    assert "removed the earlier ANGLES, CSV file(s)" in r.output and "--format angles,csv" in r.output, r.output
    ours.write_text("my notes\n")
    (out / "track_0.glb").write_bytes(edited)
    r = run("run", video, "-o", out, *args, "--resume", "--export", "npz,angles,glb")
    assert r.exit_code == 0, r.output
    assert f"{ours}: a file wbcap did not write (a user's own?): kept" in r.output and ours.read_text() == "my notes\n"
    assert f"{out / 'track_0.glb'}: a file wbcap did not write (a user's own?): kept" in r.output
    assert (out / "track_0.glb").read_bytes() == edited
    r = run("export", out, "--format", "angles", "--body-models", body_dir)
    assert r.exit_code == 2 and f"{ours}: wbcap did not write this file" in r.output, r.output
    assert ours.read_text() == "my notes\n"


def test_a_row_that_is_not_finite_spoils_no_other():
    """A joint's NaN rotation gives NaN in its own columns of that row only: every column is
    unwrapped over its finite rows (the NaN was carried to every later row, then the row's other
    angles were left wrapped: a review)."""
    n = 6
    pose = np.zeros((n, 55, 3))
    pose[:, 0] = (_FACING * Rotation.from_rotvec(np.pi * np.linspace(0, 1.5, n)[:, None] * [0, 1, 0])).as_rotvec()
    pose[2, 5] = np.nan
    angles = joint_angles(pose)
    names = angle_names()
    yaw = angles[:, names.index("pelvis_yaw_left")]
    knee = [names.index(f"right_knee_{m}") for m in ("flexion", "adduction", "internal_rotation")]
    assert np.isnan(angles[2, knee]).all() and np.isfinite(np.delete(angles, knee, axis=1)).all()
    assert np.isfinite(np.delete(angles, 2, axis=0)).all()
    np.testing.assert_allclose(yaw, 270 * np.linspace(0, 1, n), atol=1e-6)  # (row 2's too: unwrapped)
