"""Marker files (`--export trc`, OpenSim's; `--export c3d`): the markers against plain `smplx` fed
the track's AMASS npz (the joints named with `smplx`'s own names, turned into OpenSim's axes by
hand), the TRC's layout as OpenSim's own reader (TRCFileAdapter, in OpenSim 4.6's Python) reads
it, the C3D as py-c3d (an independent reader: wbcap writes with ezc3d) reads it, and the marker
names against Pose2Sim's marker sets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from clients import OPENSIM_PYTHON, opensim_missing, skip_or_fail

from wbcap.cli import cli
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video

# The markers, by Pose2Sim's names, and the smplx joints (smplx.joint_names) whose mean they are:
# OpenPose's BODY_25 (doc/02_output.md; MidHip is Pose2Sim's CHip; OpenPose's neck and mid hip are
# the middles of the shoulders and of the hips, where Pose2Sim's models put them), the hands'
# points COCO-WholeBody's sets take (hand keypoints 2, 5, 17: the thumb's MCP, the index's and
# little finger's knuckles), and Pose2Sim's Hip (HALPE_26's, its augmentation's).
MARKERS_SMPLX = (
    ("Nose", ("nose",)), ("Neck", ("right_shoulder", "left_shoulder")), ("RShoulder", ("right_shoulder",)),
    ("RElbow", ("right_elbow",)), ("RWrist", ("right_wrist",)), ("LShoulder", ("left_shoulder",)),
    ("LElbow", ("left_elbow",)), ("LWrist", ("left_wrist",)), ("CHip", ("right_hip", "left_hip")),
    ("RHip", ("right_hip",)), ("RKnee", ("right_knee",)), ("RAnkle", ("right_ankle",)), ("LHip", ("left_hip",)),
    ("LKnee", ("left_knee",)), ("LAnkle", ("left_ankle",)), ("REye", ("right_eye",)), ("LEye", ("left_eye",)),
    ("REar", ("right_ear",)), ("LEar", ("left_ear",)), ("LBigToe", ("left_big_toe",)),
    ("LSmallToe", ("left_small_toe",)), ("LHeel", ("left_heel",)), ("RBigToe", ("right_big_toe",)),
    ("RSmallToe", ("right_small_toe",)), ("RHeel", ("right_heel",)), ("RThumb", ("right_thumb2",)),
    ("RIndex", ("right_index1",)), ("RPinky", ("right_pinky1",)), ("LThumb", ("left_thumb2",)),
    ("LIndex", ("left_index1",)), ("LPinky", ("left_pinky1",)), ("Hip", ("right_hip", "left_hip")),
)
M = len(MARKERS_SMPLX)
# The markers of Pose2Sim 0.10.49's OpenSim_Setup/Markers_Body25.xml and Markers_Coco133.xml (the
# marker sets its kinematics step puts on Model_Pose2Sim_simple.osim for those pose models).
POSE2SIM_BODY25 = ("Nose", "Neck", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist", "LHip", "RHip",
                   "LKnee", "RKnee", "LAnkle", "RAnkle", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe",
                   "RHeel", "CHip")
POSE2SIM_COCO133 = ("Nose", "REye", "LEye", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist", "RWrist", "LHip",
                    "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
                    "RSmallToe", "RHeel", "RThumb", "RIndex", "RPinky", "LThumb", "LIndex", "LPinky")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def read_trc(path: Path) -> tuple[list[str], dict[str, str], np.ndarray]:
    """A TRC file read by hand: its first line, the header's keys and values, and its data rows
    ``(T, 2 + 3 M)`` (Frame#, Time, X1, Y1, Z1, ...)."""
    lines = path.read_text().split("\n")
    assert lines[0] == f"PathFileType\t4\t(X/Y/Z)\t{path.name}"
    header = dict(zip(lines[1].split("\t"), lines[2].split("\t")))
    names = lines[3].split("\t")
    assert names[:2] == ["Frame#", "Time"]
    labels = [n for n in names[2:] if n]
    # as Pose2Sim's make_trc writes them (its marker augmentation edits the names line by its last three tabs)
    assert lines[3] == "Frame#\tTime\t" + "\t\t\t".join(labels) + "\t\t\t"
    assert lines[4] == "\t\t" + "\t".join(f"X{k}\tY{k}\tZ{k}" for k in range(1, len(labels) + 1)) + "\t"
    assert lines[5] == "" and lines[-1] == ""
    rows = np.array([[float(v) for v in line.split("\t")] for line in lines[6:-1]])
    return labels, header, rows


def smplx_markers(body_dir: Path, npz) -> np.ndarray:
    """Plain smplx (``flat_hand_mean=True``) fed the npz, its joints of :data:`MARKERS_SMPLX`, in
    OpenSim's axes as Pose2Sim turns a z-up world: X = the npz's y, Y = its z, Z = its x."""
    import smplx
    import torch
    from smplx.joint_names import JOINT_NAMES

    p = torch.as_tensor(np.asarray(npz["poses"]), dtype=torch.float32)
    n = p.shape[0]
    model = smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, flat_hand_mean=True,
                         num_betas=10, num_expression_coeffs=10, batch_size=n)
    with torch.no_grad():
        joints = model(global_orient=p[:, :3], body_pose=p[:, 3:66], jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72],
                       reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120], right_hand_pose=p[:, 120:165],
                       betas=torch.as_tensor(np.tile(npz["betas"][:10], (n, 1)), dtype=torch.float32),
                       expression=torch.as_tensor(np.asarray(npz["expression"])[:, :10], dtype=torch.float32),
                       transl=torch.as_tensor(np.asarray(npz["trans"]), dtype=torch.float32)).joints.double().numpy()
    picked = np.stack([joints[:, [JOINT_NAMES.index(j) for j in names]].mean(1) for _, names in MARKERS_SMPLX], 1)
    return picked[..., [1, 2, 0]]


def test_the_markers_are_body_25_and_the_hands_points_named_as_pose2sims_marker_sets():
    from wbcap.body.markers import MARKER_NAMES

    assert tuple(name for name, _ in MARKERS_SMPLX) == MARKER_NAMES
    assert set(POSE2SIM_BODY25) <= set(MARKER_NAMES) and set(POSE2SIM_COCO133) <= set(MARKER_NAMES)
    assert len(set(MARKER_NAMES)) == len(MARKER_NAMES) == 32


def test_trc_text_refuses_what_is_not_a_row_of_every_marker():
    from wbcap.export.opensim_trc import trc_text

    with pytest.raises(ValueError, match="shape"):
        trc_text("a.trc", np.zeros(2), 30.0, np.zeros((2, 25, 3)))
    with pytest.raises(ValueError, match="0 rows"):
        trc_text("a.trc", np.zeros(0), 30.0, np.zeros((0, M, 3)))
    points = np.zeros((2, M, 3))
    points[1, 4, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trc_text("a.trc", np.zeros(2), 30.0, points)
    text = trc_text("a.trc", np.array([0.5, 0.5 + 1 / 29.97]), 29.97002997, np.ones((2, M, 3)))
    assert text.split("\n")[2] == "29.97002997\t29.97002997\t2\t32\tm\t29.97002997\t1\t2"


def _clip(tmp_path: Path) -> Path:
    """A person missed in frames 3-4 of 8 at 10 fps (one track, two filled rows)."""
    frames = [person_image(160, 120, seed=i) for i in range(8)]
    video = write_video(tmp_path / "clip.mp4", frames)
    boxes = {str(i): [[30 + 2 * i, 10, 90, 100]] for i in range(8) if i not in (3, 4)}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    return video


def image_export(tmp_path: Path, micro_ckpt: Path, body_dir: Path, formats: str, *extra) -> tuple[object, Path]:
    """`wbcap image photo.png --bbox ... --export FORMATS` of a synthetic person photo (written once):
    the command's result and the person's folder."""
    import cv2

    photo = tmp_path / "photo.png"
    if not photo.exists():
        cv2.imwrite(str(photo), person_image(160, 200, seed=3)[:, :, ::-1])
    r = run("image", photo, "-o", tmp_path / "photos", "--bbox", "20,10,120,180", "--no-render", "--export",
            formats, "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu", *extra)
    return r, tmp_path / "photos" / "photo" / "person_0"


def read_c3d(path: Path) -> tuple[object, np.ndarray, np.ndarray]:
    """A C3D file read with py-c3d: its reader, points ``(T, M, 3)`` and residuals ``(T, M)``."""
    import warnings

    import c3d

    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("error")  # ("incomplete reading of data blocks": ezc3d's empty block, trimmed)
        warnings.filterwarnings("ignore", "No analog data found in file")
        reader = c3d.Reader(fh)
        frames = [points for _, points, _ in reader.read_frames()]
    table = np.asarray(frames, np.float64)
    return reader, table[:, :, :3], table[:, :, 3]


def test_run_and_export_write_smplxs_joints_as_markers(tmp_path, micro_ckpt, body_dir):
    """`wbcap run --export npz,trc,c3d`: track_0.trc has the npz's 8 rows (filled ones too) on
    its clock, every marker plain smplx's joint from the npz in OpenSim's axes (to 2e-6 m);
    track_0.c3d the same points in the npz's axes in millimetres, as py-c3d reads them; `wbcap
    export --format trc` writes the same bytes; `wbcap image --export trc,c3d` one-row files of
    the photo's output.npz."""
    video = _clip(tmp_path)
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render",
            "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu", "--export", "npz,trc,c3d")
    assert r.exit_code == 0, r.output
    npz = np.load(out / "track_0.npz")
    labels, header, rows = read_trc(out / "track_0.trc")
    assert labels == [name for name, _ in MARKERS_SMPLX]
    assert header == {"DataRate": "10", "CameraRate": "10", "NumFrames": "8", "NumMarkers": "32", "Units": "m",
                      "OrigDataRate": "10", "OrigDataStartFrame": "1", "OrigNumFrames": "8"}
    assert rows[:, 0].tolist() == list(range(1, 9))
    np.testing.assert_allclose(rows[:, 1], npz["times"], atol=1e-6)
    assert npz["valid"].tolist() == [True, True, True, False, False, True, True, True]
    want = smplx_markers(body_dir, npz)
    np.testing.assert_allclose(rows[:, 2:].reshape(8, M, 3), want, atol=2e-6)
    assert np.abs(np.diff(want, axis=0)).max() > 1e-3  # (the motion moves: the rows are not one row repeated)
    reader, points, residuals = read_c3d(out / "track_0.c3d")
    assert [label.strip() for label in reader.point_labels] == [name for name, _ in MARKERS_SMPLX]
    assert reader.point_rate == 10 and reader.get("POINT:UNITS").string_value.strip() == "mm"
    assert (reader.first_frame, reader.last_frame) == (1, 8) and residuals.tolist() == [[0.0] * M] * 8
    assert reader.get("WBCAP:START_TIME").float_value == pytest.approx(float(npz["times"][0]))
    assert reader.get("WBCAP:FRAME").string_value.strip() == "camera"
    np.testing.assert_allclose(points / 1000, want[..., [2, 0, 1]], atol=2e-6)  # (the npz's x, y, z)
    r = run("export", out, "--format", "trc", "--dest", tmp_path / "again", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "again" / "track_0.trc").read_bytes() == (out / "track_0.trc").read_bytes()

    r, person = image_export(tmp_path, micro_ckpt, body_dir, "npz,trc,c3d")
    assert r.exit_code == 0, r.output
    labels, header, rows = read_trc(person / "output.trc")
    assert header["NumFrames"] == "1" and rows.shape == (1, 2 + 3 * M)
    want = smplx_markers(body_dir, np.load(person / "output.npz"))
    np.testing.assert_allclose(rows[:, 2:].reshape(1, M, 3), want, atol=2e-6)
    _, points, _ = read_c3d(person / "output.c3d")
    np.testing.assert_allclose(points / 1000, want[..., [2, 0, 1]], atol=2e-6)


def _foreign_files(folder: Path, trc: str, c3d: str) -> dict[str, bytes]:
    """A Pose2Sim TRC and a lab's C3D (ezc3d, no WBCAP group) named ``trc`` and ``c3d`` in ``folder``."""
    import ezc3d

    (folder / trc).write_text("PathFileType\t4\t(X/Y/Z)\tmine.trc\nDataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\t"
                              "OrigDataRate\tOrigDataStartFrame\tOrigNumFrames\n30\t30\t1\t1\tm\t30\t0\t1\n"
                              "Frame#\tTime\tCHip\t\t\t\n\t\tX1\tY1\tZ1\t\n0\t0.0\t0\t1\t0\n")
    lab = ezc3d.c3d()
    lab["parameters"]["POINT"]["RATE"]["value"] = [100.0]
    lab["parameters"]["POINT"]["LABELS"]["value"] = ["LASI"]
    lab["data"]["points"] = np.ones((4, 1, 2))
    lab.write(str(folder / c3d))
    return {trc: (folder / trc).read_bytes(), c3d: (folder / c3d).read_bytes()}


@pytest.mark.slow  # (runs and exports beside a user's files; the TRC's contents stay in the fast loop)
def test_a_users_own_marker_files_are_never_taken_for_wbcaps(tmp_path, micro_ckpt, body_dir):
    """A Pose2Sim `track_7.trc` and a lab's `track_8.c3d` in a run folder: `--overwrite` is
    refused and a `--resume` keeps them (both deleted them without a word: a break-it review); in
    a `wbcap export --dest` folder, one under a name the export writes is refused before any work
    (a lab's track_0.c3d was replaced); a user's `output.trc` in a photo's person folder makes a
    rerun refuse it (it was replaced)."""
    video = _clip(tmp_path)
    out = tmp_path / "out"
    args = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render", "--checkpoint", micro_ckpt,
            "--body-models", body_dir, "--device", "cpu"]
    assert run("run", video, "-o", out, *args, "--export", "npz,trc,c3d").exit_code == 0
    mine = _foreign_files(out, "track_7.trc", "track_8.c3d")
    r = run("run", video, "-o", out, *args, "--overwrite", "--export", "npz")
    assert r.exit_code == 2 and "holds files wbcap did not write (e.g. track_7.trc)" in r.output, r.output
    r = run("run", video, "-o", out, *args, "--resume", "--export", "npz,csv")
    assert r.exit_code == 0, r.output
    assert {n: (out / n).read_bytes() for n in mine} == mine
    assert not (out / "track_0.trc").exists() and (out / "track_0.csv").exists()  # (wbcap's own: removed)
    theirs = _foreign_files(out, "track_0.trc", "track_7.c3d")  # (under the names a resume writes: kept, said)
    (out / "track_0.c3d").mkdir()  # (a folder there: kept, said; it crashed the pass part way)
    r = run("run", video, "-o", out, *args, "--resume", "--export", "npz,trc,c3d")
    assert r.exit_code == 0, r.output
    assert f"{out / 'track_0.trc'}: a file wbcap did not write (a user's own?): kept" in r.output
    assert f"{out / 'track_0.c3d'}: a folder wbcap did not write (a user's own?): kept" in r.output
    assert {n: (out / n).read_bytes() for n in theirs} == theirs and (out / "track_0.c3d").is_dir()
    r = run("export", out, "--format", "trc", "--body-models", body_dir)  # (in place: no --dest to choose)
    assert r.exit_code == 2 and r.output.strip().endswith(f"{out / 'track_0.trc'}: wbcap did not write this file, and "
                                                          "`wbcap export` would replace or remove it with track 0's trc "
                                                          "file; move it"), r.output
    (out / "track_0.c3d").rmdir()

    dest = tmp_path / "dest"
    dest.mkdir()
    for trc, c3d in (("track_0_part1.trc", "track_9.c3d"), ("track_9.trc", "track_0.c3d")):
        for f in dest.iterdir():
            f.unlink()
        mine = _foreign_files(dest, trc, c3d)
        r = run("export", out, "--format", "trc,c3d", "--dest", dest, "--body-models", body_dir)
        name = trc if trc.startswith("track_0") else c3d
        assert r.exit_code == 2 and f"{dest / name}: wbcap did not write this file" in r.output, r.output
        assert {f.name: f.read_bytes() for f in dest.iterdir()} == mine  # (nothing written, nothing removed)
    r = run("export", out, "--format", "trc,c3d", "--dest", tmp_path / "ok", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    r = run("export", out, "--format", "trc,c3d", "--dest", tmp_path / "ok", "--body-models", body_dir)
    assert r.exit_code == 0, r.output  # (wbcap's own files there: replaced)

    import cv2

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), person_image(160, 200, seed=3)[:, :, ::-1])
    image_args = ["-o", tmp_path / "photos", "--bbox", "20,10,120,180", "--no-render", "--checkpoint", micro_ckpt,
                  "--body-models", body_dir, "--device", "cpu"]
    assert run("image", photo, *image_args, "--export", "trc").exit_code == 0
    assert run("image", photo, *image_args, "--export", "trc").exit_code == 0  # (its own: replaced)
    person = tmp_path / "photos" / "photo" / "person_0"
    (person / "output.trc").write_bytes(mine["track_9.trc"])
    r = run("image", photo, *image_args, "--export", "trc")
    assert r.exit_code != 0 and "not a wbcap image result" in r.output, r.output
    assert (person / "output.trc").read_bytes() == mine["track_9.trc"]


def test_a_trc_of_wbcap_before_its_hip_marker_is_still_wbcaps(tmp_path):
    """wbcap's TRC files had 31 markers before `Hip` (2026-12-07): still recognised as its own, not
    refused as a user's (a review)."""
    from wbcap.body.markers import MARKER_NAMES
    from wbcap.export.opensim_trc import trc_text
    from wbcap.io.run_folder import written_by_wbcap

    now = tmp_path / "track_0.trc"
    now.write_text(trc_text("track_0.trc", np.zeros(2), 30.0, np.zeros((2, M, 3))))
    earlier = tmp_path / "track_1.trc"
    names = [n for n in MARKER_NAMES if n != "Hip"]
    earlier.write_text("PathFileType\t4\t(X/Y/Z)\ttrack_1.trc\nDataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\t"
                       "OrigDataRate\tOrigDataStartFrame\tOrigNumFrames\n30\t30\t1\t31\tm\t30\t1\t1\n"
                       "Frame#\tTime\t" + "\t\t\t".join(names) + "\t\t\n\t\t"
                       + "\t".join(f"X{k}\tY{k}\tZ{k}" for k in range(1, 32)) + "\n\n1\t0.000000" + "\t0.000000" * 93 + "\n")
    other = tmp_path / "track_2.trc"  # (the same names in another order: Pose2Sim's own, a user's)
    other.write_text(now.read_text().replace("Nose\t\t\tNeck", "Neck\t\t\tNose"))
    resaved = tmp_path / "track_3.trc"  # (saved again by OpenSim: its names line kept, its numbers shortest)
    lines = now.read_text().split("\n")
    lines[6] = "\t".join(str(int(float(v))) if float(v).is_integer() else repr(float(v)) for v in lines[6].split("\t"))
    resaved.write_text("\n".join(lines))
    assert written_by_wbcap(now) and written_by_wbcap(earlier)
    assert not written_by_wbcap(other) and not written_by_wbcap(resaved)


def _marker_arrays(body_layer, times: np.ndarray, fps: float) -> dict:
    """One AMASS piece of random poses at ``times`` (seconds), ``fps`` rows a second, every row seen."""
    import torch

    from wbcap.export.amass import amass_arrays

    n = len(times)
    left, right = body_layer.hands_mean()
    rest = body_layer.rest_root(torch.zeros(1, 10)).numpy()[0]
    rng = np.random.default_rng(0)
    return amass_arrays(
        global_orient=rng.normal(0, 0.2, (n, 3)), body_pose=rng.normal(0, 0.2, (n, 63)), jaw_pose=np.zeros((n, 3)),
        left_hand_pose=np.zeros((n, 45)), right_hand_pose=np.zeros((n, 45)), transl=np.tile([0, 0, 3.0], (n, 1)),
        betas=np.zeros(10), expression=np.zeros((n, 10)), hands_mean=(left, right), rest_root=rest, fps=fps,
        times=np.asarray(times, np.float64), frame_indices=np.round(np.asarray(times) * fps).astype(np.int64),
        valid=np.ones(n, bool), gender="neutral")


def test_a_c3d_start_its_header_cannot_number_or_hold_is_said(tmp_path, body_layer, caplog):
    """C3D's header numbers whole frames, 1 to 65535. A piece 550 s into a 120 fps video (frame
    66000: a biomechanics researcher's trial, where the C3D began at 0 s without a word) starts at
    frame 0 with a warning, as does one before 0 s (a fusion's clock); a first row between two
    frames (`--every 3` from 30.1 s of a 10 fps video: the file's times 0.1 s early, in the same
    trial) is said with the shift; one within a millisecond of a frame (timestamps rounded to
    milliseconds) is not. py-c3d reads every file's frames, WBCAP:START_TIME its first row's time."""
    import ezc3d

    from wbcap.export.animation import AnimationExport, write_animations

    ntsc = 30000 / 1001
    cases = {"late": (550 + np.arange(4) / 120, 120.0), "before": (-0.4 + np.arange(4) / 30, 30.0),
             "off_grid": (30.1 + np.arange(4) * 0.3, 10 / 3), "ms": (np.round((1 + np.arange(4)) / ntsc, 3), ntsc)}
    warned = {}
    for name, (times, fps) in cases.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="wbcap"):
            write_animations(tmp_path, name, _marker_arrays(body_layer, times, fps), body_layer,
                             AnimationExport(formats=("trc", "c3d")))
        warned[name] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned["late"] == [
        "late.c3d: its first row (550 s) is frame 66000 of 120 fps and its last 66003, past the 65535 frames C3D's "
        "16-bit header numbers: "
        "its frames are numbered from 0, so C3D tools show its times and its events' from 0 s; WBCAP:START_TIME holds "
        "its start, and its TRC the source's times"]
    assert warned["before"] == [
        "before.c3d: its first row (-0.4 s) is before 0 s: its frames are numbered from 0, so C3D tools show its times "
        "and its events' from 0 s; WBCAP:START_TIME holds its start, and its TRC the source's times"]
    assert warned["off_grid"] == [
        "off_grid.c3d: C3D numbers whole frames of 3.33333 fps and the first row (30.1 s) falls between two, so the "
        "file's times are 0.1 s earlier than the npz's and the TRC's, its WBCAP:START_TIME the first row's (the "
        "rows keep their own times: a variable-rate video's tracks each begin at the time of their first frame; a "
        "constant-rate video's rows lie on its frames unless a --start is off the --every grid)"]
    assert warned["ms"] == []
    firsts = {}
    for name in cases:
        reader, points, _ = read_c3d(tmp_path / f"{name}.c3d")
        firsts[name] = (reader.first_frame, reader.last_frame, len(points))
        start = ezc3d.c3d(str(tmp_path / f"{name}.c3d"))["parameters"]["WBCAP"]["START_TIME"]["value"][0]
        assert start == pytest.approx(cases[name][0][0], abs=1e-4)
    assert firsts == {"late": (1, 4, 4), "before": (1, 4, 4), "off_grid": (101, 104, 4), "ms": (2, 5, 4)}


def test_c3d_goes_where_ezc3d_cannot_name_the_folder_and_not_past_its_frame_limit(tmp_path, body_layer, monkeypatch,
                                                                                     caplog):
    """A folder named in bytes that are not UTF-8 gets its C3D (ezc3d's binding refused the name:
    a crash at pass 2, a break-it review); a piece longer than a C3D file holds gets a warning and
    no C3D (ezc3d wrote 65535 of 70000 frames without a word), its TRC every row."""
    import os

    import wbcap.export.c3d_file as c3d_file
    from wbcap.export.animation import AnimationExport, write_animations

    caplog.set_level("WARNING", logger="wbcap")  # (the INFO lines name the folder: xdist cannot send lone surrogates)
    n = 5
    arrays = _marker_arrays(body_layer, 3.6 + np.arange(n) / 30, 30.0)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    odd.mkdir()
    written = write_animations(odd, "track_0", arrays, body_layer, AnimationExport(formats=("trc", "c3d")))
    assert [p.name for p in written] == ["track_0.trc", "track_0.c3d"]
    reader, points, _ = read_c3d(odd / "track_0.c3d")
    assert (reader.first_frame, reader.last_frame) == (109, 113)  # (frame 108 at 30 fps, 3.6 s, counted from 1)
    labels, _, rows = read_trc(odd / "track_0.trc")
    np.testing.assert_allclose(points / 1000, rows[:, 2:].reshape(n, M, 3)[..., [2, 0, 1]], atol=2e-6)
    assert sorted(p.name for p in odd.iterdir()) == ["track_0.c3d", "track_0.trc"]  # (no temporary left)

    monkeypatch.setattr(c3d_file, "C3D_MAX_FRAMES", 4)
    written = write_animations(tmp_path, "track_1", arrays, body_layer, AnimationExport(formats=("trc", "c3d")))
    assert [p.name for p in written] == ["track_1.trc"] and not (tmp_path / "track_1.c3d").exists()
    assert "track_1: 5 rows, more than the 4 frames a C3D file holds: no track_1.c3d" in caplog.text


@pytest.mark.slow
def test_opensim_reads_the_markers_wbcap_writes(tmp_path, micro_ckpt, body_dir):
    """OpenSim's own reader (``TimeSeriesTableVec3``: its TRCFileAdapter) reads track_0.trc's
    labels, times, rate, units and every value as written."""
    why = opensim_missing()
    if why:
        skip_or_fail(why)
    video = _clip(tmp_path)
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render",
            "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu", "--export", "trc")
    assert r.exit_code == 0, r.output
    script = Path(__file__).resolve().parent / "opensim" / "read_trc.py"
    done = subprocess.run([str(OPENSIM_PYTHON), str(script), str(out / "track_0.trc")], capture_output=True, cwd=tmp_path,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    read = json.loads(done.stdout)
    labels, header, rows = read_trc(out / "track_0.trc")
    assert read["labels"] == labels == [name for name, _ in MARKERS_SMPLX]
    assert read["meta"]["DataRate"] == "10" and read["meta"]["Units"] == "m" and read["meta"]["NumFrames"] == "8"
    np.testing.assert_allclose(read["times"], rows[:, 1], atol=1e-12)
    np.testing.assert_allclose(np.asarray(read["values"]), rows[:, 2:].reshape(8, M, 3), atol=1e-12)


@pytest.mark.slow
def test_opensims_inverse_kinematics_reads_the_knee_angle_the_motion_has(tmp_path, body_layer):
    """A known answer through OpenSim's own inverse kinematics: the synthetic body facing the camera
    while walking away and turning 30°, its right knee flexing 0→60°, written as a TRC; a model
    built from the file's first frame (trunk on a free joint, thigh on a ball joint, shank on a pin
    joint about OpenSim's z: tests/opensim/knee_ik.py) reads the knee's flexion at every frame to
    0.1°, with every marker within 1 mm: the file's axes, units, names and clock are OpenSim's."""
    import torch
    from scipy.spatial.transform import Rotation

    from wbcap.export.amass import amass_arrays
    from wbcap.export.animation import AnimationExport, write_animations

    why = opensim_missing()
    if why:
        skip_or_fail(why)
    n, fps = 20, 30.0
    s = np.linspace(0, 1, n)
    knee = np.radians(60) * s
    body_pose = np.zeros((n, 21, 3))
    body_pose[:, 4, 0] = knee  # (right_knee, SMPL-X joint 5: about the body's x, its left-right axis)
    turn = Rotation.from_rotvec(np.radians(30) * s[:, None] * [0, 1, 0])  # (about the camera's vertical)
    facing = turn * Rotation.from_rotvec([np.pi, 0, 0])  # (OpenCV camera: facing it)
    left, right = body_layer.hands_mean()
    rest = body_layer.rest_root(torch.zeros(1, 10)).numpy()[0]
    arrays = amass_arrays(
        global_orient=facing.as_rotvec(), body_pose=body_pose.reshape(n, 63), jaw_pose=np.zeros((n, 3)),
        left_hand_pose=np.zeros((n, 45)), right_hand_pose=np.zeros((n, 45)),
        transl=np.stack([0.3 * s, 0.1 * s, 4 + s], 1), betas=np.zeros(10), expression=np.zeros((n, 10)),
        hands_mean=(left, right), rest_root=rest, fps=fps, times=1.5 + np.arange(n) / fps,
        frame_indices=45 + np.arange(n), valid=np.ones(n, bool), gender="neutral")
    (trc,) = write_animations(tmp_path, "track_0", arrays, body_layer, AnimationExport(formats=("trc",)))
    script = Path(__file__).resolve().parent / "opensim" / "knee_ik.py"
    out = tmp_path / "ik"
    out.mkdir()
    done = subprocess.run([str(OPENSIM_PYTHON), str(script), str(trc), str(out)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    np.testing.assert_allclose(result["times"], 1.5 + np.arange(n) / fps, atol=1e-6)
    assert result["in_degrees"] == "yes"
    np.testing.assert_allclose(result["knee"], np.degrees(knee), atol=0.1)
    assert result["max_marker_error"] < 1e-3
