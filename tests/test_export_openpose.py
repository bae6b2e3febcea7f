"""2D keypoints in OpenPose's JSON (`wbcap run --openpose`, `wbcap image --openpose`): the
keypoint tables against OpenPose's documented orders written with `smplx`'s own joint names, the
files against plain `smplx` fed `params.jsonl` / `smplx_param.json` and projected by hand, and
the run folder's handling of `openpose/` (a resume without the flag removes it, a user's own
folder is kept)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video

# OpenPose's orders (its doc/02_output.md) written with smplx's joint names (smplx.joint_names):
# an independent statement of the tables wbcap.export.openpose builds from its own names.
BODY_25_SMPLX = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                 "left_wrist", "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
                 "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe", "left_small_toe",
                 "left_heel", "right_big_toe", "right_small_toe", "right_heel")


def hand_smplx(side: str) -> tuple[str, ...]:
    names = [f"{side}_wrist"]
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        names += [f"{side}_{finger}{k}" for k in (1, 2, 3)] + [f"{side}_{finger}"]  # the tip: smplx's vertex joint
    return tuple(names)


def face_smplx() -> tuple[str, ...]:
    from smplx.joint_names import JOINT_NAMES

    contour = [n for n in JOINT_NAMES if "contour" in n]  # iBUG 0-16, from the person's right
    first, last = JOINT_NAMES.index("right_eye_brow1"), JOINT_NAMES.index("right_lip_3")
    return tuple(contour + JOINT_NAMES[first:last + 1] + ["right_eye", "left_eye"])  # + the pupils


def smplx_ids(names) -> list[int]:
    from smplx.joint_names import JOINT_NAMES

    return [JOINT_NAMES.index(n) for n in names]


def test_the_tables_are_openposes_orders_in_smplxs_joints():
    from wbcap.body.joints import HAND_21 as HAND_21_OF_137
    from wbcap.body.joints import JOINT_IDX
    from wbcap.export.openpose import ALL_IDS, BODY_25, FACE_70, HAND_LEFT_21, HAND_RIGHT_21, KEYPOINTS

    hand_21 = {"left": HAND_LEFT_21, "right": HAND_RIGHT_21}

    assert list(BODY_25) == smplx_ids(BODY_25_SMPLX)
    assert list(HAND_LEFT_21) == smplx_ids(hand_smplx("left"))
    assert list(HAND_RIGHT_21) == smplx_ids(hand_smplx("right"))
    assert len(FACE_70) == 70 and list(FACE_70) == smplx_ids(face_smplx())
    # the hands are the 137-joint set's HAND_21 (the API's order), and the record's lists in order
    for side in ("left", "right"):
        assert [JOINT_IDX[i] for i in HAND_21_OF_137[side]] == list(hand_21[side])
    assert list(KEYPOINTS) == ["pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                               "hand_right_keypoints_2d"]
    assert len(ALL_IDS) == 25 + 70 + 21 + 21


def test_a_record_says_inside_outside_and_behind():
    from wbcap.export.openpose import ALL_IDS, keypoints_record

    points = np.full((len(ALL_IDS), 2), 10.0)
    points[1] = (-0.5, 10.0)  # left of the picture
    points[2] = (100.0, 10.0)  # x = W: past the last pixel
    points[3] = (99.9, 49.9)
    front = np.ones(len(ALL_IDS), bool)
    front[4] = False  # behind the camera
    points[5] = (np.nan, 3.0)
    r = keypoints_record(points, (100, 50), 7, front)
    assert r["person_id"] == [7]
    assert [len(r[k]) for k in ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                                "hand_right_keypoints_2d")] == [75, 210, 63, 63]
    assert all(r[k] == [] for k in ("pose_keypoints_3d", "face_keypoints_3d", "hand_left_keypoints_3d",
                                    "hand_right_keypoints_3d"))
    pose = np.array(r["pose_keypoints_2d"]).reshape(25, 3)
    # (written in OpenPose's pixel convention, the top-left pixel's centre at 0: 0.5 less than given)
    assert pose[0].tolist() == [9.5, 9.5, 1.0]
    assert pose[1].tolist() == [-1.0, 9.5, 0.0] and pose[2].tolist() == [99.5, 9.5, 0.0]
    assert pose[3].tolist() == [99.4, 49.4, 1.0]
    assert pose[4].tolist() == [0.0, 0.0, 0.0] and pose[5].tolist() == [0.0, 0.0, 0.0]
    json.dumps(r, allow_nan=False)


def smplx_points(body_dir, line: dict, focal, princpt) -> np.ndarray:
    """Plain smplx fed a params.jsonl line (or a smplx_param.json), OpenPose's keypoints projected by hand:
    (137, 2) pixels in the order of the file's lists."""
    import smplx

    model = smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, flat_hand_mean=False,
                         use_face_contour=True, num_betas=10, num_expression_coeffs=10)
    t = {k: torch.tensor([v], dtype=torch.float32) for k, v in line.items()
         if k.endswith(("_pose", "shape", "expr", "cam_trans"))}
    joints = model(global_orient=t["root_pose"], body_pose=t["body_pose"], left_hand_pose=t["lhand_pose"],
                   right_hand_pose=t["rhand_pose"], jaw_pose=t["jaw_pose"], leye_pose=t["leye_pose"],
                   reye_pose=t["reye_pose"], betas=t["shape"], expression=t["expr"],
                   transl=t["cam_trans"]).joints[0].double().numpy()
    ids = (smplx_ids(BODY_25_SMPLX) + smplx_ids(face_smplx()) + smplx_ids(hand_smplx("left"))
           + smplx_ids(hand_smplx("right")))
    p = joints[ids]
    return np.stack([focal[0] * p[:, 0] / p[:, 2] + princpt[0], focal[1] * p[:, 1] / p[:, 2] + princpt[1]], 1)


def file_points(record: dict) -> tuple[np.ndarray, np.ndarray]:
    table = np.concatenate([np.array(record[k], np.float64).reshape(-1, 3) for k in
                            ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
                             "hand_right_keypoints_2d")])
    return table[:, :2], table[:, 2]


def stopping_at(real, n: int, after: bool = False):
    """``real`` that raises KeyboardInterrupt (a Ctrl-C) at its ``n``-th call: before the call, or
    ``after`` it."""
    calls = []

    def stopped(*a, **k):
        calls.append(1)
        if len(calls) == n and not after:
            raise KeyboardInterrupt
        result = real(*a, **k)
        if len(calls) == n:
            raise KeyboardInterrupt
        return result

    return stopped


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_run_openpose_files_are_smplxs_joints_projected_and_follow_the_run(tmp_path, micro_ckpt, body_dir):
    """Each processed frame has its file, people or none (`--every 2` names them by source frame);
    every person is plain smplx's joints of its params.jsonl line in meta.json's camera (to 0.01
    px); a resume without --openpose removes the folder, a user's own openpose/ is kept."""
    frames = [person_image(160, 120, seed=i) for i in range(6)]
    frames[4] = np.full_like(frames[4], 90)  # (a frame in which the detector finds nobody)
    video = write_video(tmp_path / "my clip.mp4", frames)
    boxes = {str(i): [[40, 10, 80, 100]] for i in (0, 2)}
    (tmp_path / "boxes.json").write_text(json.dumps({**boxes, "4": []}))
    args = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--every", "2", "--no-render", "--min-track", "1",
            "--export", "npz", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu"]
    out = tmp_path / "out"
    r = run("run", video, "-o", out, "--openpose", "--obj", *args)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (out / "openpose").iterdir())
    # (only OpenPose's files: EasyMocap's importer read a marker file there as JSON, a consumer's trial)
    assert names == [f"my clip_{f:012d}_keypoints.json" for f in (0, 2, 4)]
    assert (out / ".wbcap" / "openpose-written").is_file()
    meta = json.loads((out / "meta.json").read_text())
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 2]
    for x in lines:
        doc = json.loads((out / "openpose" / f"my clip_{x['frame']:012d}_keypoints.json").read_text())
        assert doc["version"] == 1.3 and [p["person_id"] for p in doc["people"]] == [[x["track"]]]
        xy, c = file_points(doc["people"][0])
        want = smplx_points(body_dir, x, meta["camera"]["focal"], meta["camera"]["princpt"]) - 0.5  # (OpenPose's
        np.testing.assert_allclose(xy[c > 0], want[c > 0], atol=0.01)  # pixels: the top-left one's centre at 0)
        w, h = meta["camera"]["image_size"]
        inside = (want[:, 0] >= 0) & (want[:, 0] < w) & (want[:, 1] >= 0) & (want[:, 1] < h)
        assert c.tolist() == inside.astype(float).tolist() and inside.any()
    assert json.loads((out / "openpose" / f"my clip_{4:012d}_keypoints.json").read_text()) == {"version": 1.3,
                                                                                                 "people": []}
    # a resume with other smoothing rewrites them; beside files of the user's, the earlier ones go all the same
    # (a user's file named as OpenPose names its own is not wbcap's: a second break-it review), and a file named as
    # OpenPose's that wbcap did not write makes --openpose refuse the folder before any work (its files would mix
    # with them: a folder's inode is no proof it is wbcap's folder, a review)
    (out / "openpose" / "notes.txt").write_text("mine")
    theirs = out / "openpose" / f"myclip_{0:012d}_keypoints.json"
    theirs.write_text("OpenPose's")
    r = run("run", video, "-o", out, "--resume", "--openpose", "--smooth", "none", *args)
    assert r.exit_code == 2 and "holds files wbcap did not write (e.g. myclip_000000000000_keypoints.json: " \
        "OpenPose's own output?)" in " ".join(r.output.split()), r.output
    assert theirs.read_text() == "OpenPose's"
    theirs.unlink()
    st = (out / "openpose" / f"my clip_{2:012d}_keypoints.json").stat()
    before = (st.st_ino, st.st_mtime_ns)
    r = run("run", video, "-o", out, "--resume", "--openpose", "--smooth", "none", *args)
    assert r.exit_code == 0, r.output
    theirs.write_text("OpenPose's")
    st = (out / "openpose" / f"my clip_{2:012d}_keypoints.json").stat()
    assert (st.st_ino, st.st_mtime_ns) != before  # (written again)
    assert (f"{out}: removed the earlier meshes/ (--obj) made from the parameters before this pass, which this pass "
            "does not write again; a --resume with --obj makes them from the new ones") in " ".join(r.output.split())
    # a resume without the flag writes none and leaves none of the earlier ones, the user's file kept; it says so
    # (a resume's re-smoothing removed them without a word: a new user's trial)
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    assert (f"{out}: removed the earlier openpose/ (--openpose) made from the parameters before this pass, which this "
            "pass does not write again; a --resume with --openpose makes them from the new ones") in \
        " ".join(r.output.split()), r.output
    assert sorted(p.name for p in (out / "openpose").iterdir()) == [f"myclip_{0:012d}_keypoints.json", "notes.txt"]
    (out / "openpose" / "notes.txt").unlink()
    (out / "openpose" / f"myclip_{0:012d}_keypoints.json").unlink()
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0 and not (out / "openpose").exists()
    # a folder of the user's own OpenPose output (named as wbcap names its files) is kept, and --openpose
    # is refused into it before any work (a break-it review: a resume deleted it)
    (out / "openpose").mkdir()
    own = out / "openpose" / f"my clip_{0:012d}_keypoints.json"
    own.write_text("OpenPose's")
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0
    assert own.read_text() == "OpenPose's"
    r = run("run", video, "-o", out, "--resume", "--openpose", *args)
    assert r.exit_code == 2 and f"{out / 'openpose'}: holds files wbcap did not write" in " ".join(r.output.split())
    assert own.read_text() == "OpenPose's" and (out / "params.jsonl").is_file()
    # a file named openpose is no folder of wbcap's either: kept by a resume, refused by --openpose
    shutil.rmtree(out / "openpose")
    (out / "openpose").write_text("my notes")
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0
    assert (out / "openpose").read_text() == "my notes"
    assert run("run", video, "-o", out, "--resume", "--openpose", *args).exit_code == 2


def test_image_openpose_file_is_the_persons_joints_in_the_photo(tmp_path, micro_ckpt, body_dir):
    """`wbcap image --openpose`: person_<k>/output_keypoints.json, the person's keypoints in the
    photo's pixels: plain smplx fed smplx_param.json, projected with its camera; the folder stays
    an image result (a rerun replaces it)."""
    import cv2

    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), person_image(320, 200, seed=3, people=2)[:, :, ::-1])
    args = ["--bbox", "10,10,120,180", "--bbox", "170,20,120,170", "--no-render", "--openpose",
            "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu"]
    r = run("image", photo, "-o", tmp_path / "out", *args)
    assert r.exit_code == 0, r.output
    for k in (0, 1):
        folder = tmp_path / "out" / "two" / f"person_{k}"
        doc = json.loads((folder / "output_keypoints.json").read_text())
        assert doc["version"] == 1.3 and len(doc["people"]) == 1 and doc["people"][0]["person_id"] == [k]
        p = json.loads((folder / "smplx_param.json").read_text())
        xy, c = file_points(doc["people"][0])
        want = smplx_points(body_dir, p, p["camera"]["focal"], p["camera"]["princpt"]) - 0.5  # (OpenPose's pixels)
        np.testing.assert_allclose(xy[c > 0], want[c > 0], atol=0.02)
        assert c.any()
    assert run("image", photo, "-o", tmp_path / "out", *args).exit_code == 0  # (still wbcap's result: replaced)


@pytest.mark.parametrize(("source", "stem"), [("clips/walk.mp4", "walk"), ("frames/*.png", "frames"),
                                              ("/data/IMG_0001.MOV", "IMG_0001"), ("/data/se*/f*.png", "data"),
                                              ("/data/seq ü/**/*.png", "seq ü"), ("/data/.hidden.mp4", "hidden")])
def test_the_frame_files_are_named_as_openpose_names_them(source, stem):
    from wbcap.export.openpose import frame_file_name, keypoints_stem
    from wbcap.io.run_folder import _KEYPOINTS_FILE

    assert keypoints_stem(source) == stem
    name = frame_file_name(keypoints_stem(source), 42)
    assert name == f"{stem}_000000000042_keypoints.json" and _KEYPOINTS_FILE.fullmatch(name)
    assert _KEYPOINTS_FILE.fullmatch(f".{name[:-5]}.tmp-1a2b3c4d.json")  # (an atomic write's temporary)
    assert _KEYPOINTS_FILE.fullmatch("000042_keypoints.json") and not _KEYPOINTS_FILE.fullmatch("notes.txt")


def test_the_frame_files_of_a_relative_source_take_the_working_folders_name(tmp_path, monkeypatch):
    """`*.jpg` and `..` (a break-it review: `..` named hidden files `.._000000000000_keypoints.json`)."""
    from wbcap.export.openpose import keypoints_stem

    (tmp_path / "shoot" / "day").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "shoot" / "day")
    assert keypoints_stem("*.jpg") == "day" and keypoints_stem("..") == "shoot" and keypoints_stem(".") == "day"


def test_an_image_sequences_files_are_named_after_its_images(tmp_path, micro_ckpt, body_dir):
    """A consumer's trial: SMPLify-X opens `keypoints/<image stem>_keypoints.json` for each image
    (as OpenPose's --image_dir names them); a run of `frames/*.png` named them `frames_<frame>`."""
    import cv2

    (tmp_path / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "frames" / f"img_{i:03d}.png"), person_image(160, 120, seed=0)[:, :, ::-1])
    r = run("run", tmp_path / "frames" / "*.png", "-o", tmp_path / "out", "--openpose", "--detector", "full",
            "--no-render", "--export", "npz", "--min-track", "1", "--checkpoint", micro_ckpt, "--body-models", body_dir,
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out" / "openpose").iterdir()) == [
        f"img_{i:03d}_keypoints.json" for i in range(3)]
    doc = json.loads((tmp_path / "out" / "openpose" / "img_001_keypoints.json").read_text())
    assert [p["person_id"] for p in doc["people"]] == [[0]]


def test_a_user_file_in_openpose_survives_a_stopped_pass_a_damaged_mark_and_a_replaced_folder(tmp_path, micro_ckpt,
                                                                                             body_dir, monkeypatch):
    """A final review: a pass 2 stopped while it wrote keypoints (the mark then listed nothing), a
    damaged mark, and a mark outliving the user's `rm -r openpose` each let a later pass delete
    the user's own `*_keypoints.json` there. The mark lists wbcap's files before the first is
    written and names the folder it marks."""
    import wbcap.export.openpose as openpose

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=0)] * 3)
    args = ["--detector", "full", "--no-render", "--min-track", "1", "--export", "npz", "--checkpoint", micro_ckpt,
            "--body-models", body_dir, "--device", "cpu"]
    out = tmp_path / "out"
    assert run("run", video, "-o", out, "--openpose", *args).exit_code == 0
    mine = out / "openpose" / "mine_keypoints.json"
    mine.write_text("the user's")
    # (--openpose refuses the folder while a file named as OpenPose's that wbcap did not write is in it)
    assert run("run", video, "-o", out, "--resume", "--openpose", *args).exit_code == 2
    aside = mine.rename(tmp_path / mine.name)
    with monkeypatch.context() as patched:
        patched.setattr(openpose, "write_keypoints_json", stopping_at(openpose.write_keypoints_json, 2))
        assert run("run", video, "-o", out, "--resume", "--openpose", "--smooth", "none", *args).exit_code == 130
    aside.rename(mine)
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0  # (the stopped pass's file goes, not theirs)
    assert mine.read_text() == "the user's" and sorted(p.name for p in (out / "openpose").iterdir()) == [mine.name]
    mine.rename(aside)
    assert run("run", video, "-o", out, "--resume", "--openpose", *args).exit_code == 0
    aside.rename(mine)
    (out / ".wbcap" / "openpose-written").write_text("garbage{")  # (damaged: nothing more is taken for wbcap's)
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0
    assert mine.read_text() == "the user's"
    # the user removes wbcap's folder and puts their own OpenPose output there, named alike
    assert run("run", video, "-o", out, "--resume", "--openpose", "--overwrite", *args).exit_code == 2  # (not both)
    shutil.rmtree(out / "openpose")
    out.joinpath(".wbcap", "openpose-written").unlink(missing_ok=True)
    assert run("run", video, "-o", out, "--resume", "--openpose", *args).exit_code == 0
    shutil.rmtree(out / "openpose")
    (out / "openpose").mkdir()
    own = out / "openpose" / "v_000000000000_keypoints.json"
    own.write_text("OpenPose's")
    assert run("run", video, "-o", out, "--resume", *args).exit_code == 0 and own.read_text() == "OpenPose's"
    r = run("run", video, "-o", out, "--resume", "--openpose", *args)
    assert r.exit_code == 2 and "holds files wbcap did not write" in r.output and own.read_text() == "OpenPose's"


def test_a_copied_run_folders_keypoints_are_still_wbcaps(tmp_path, micro_ckpt, body_dir):
    """A run folder copied with its files' times (`cp -a`, `rsync -a`, a backup put back: new
    inodes) keeps `openpose/` as wbcap's: a resume rewrites or removes its files (an HCI trial's
    copy was refused as OpenPose's own output with --openpose, and kept the old keypoints without
    it); a copy whose keypoint file was changed is not taken for wbcap's."""
    frames = [person_image(160, 120, seed=i) for i in range(3)]
    video = write_video(tmp_path / "clip.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps({str(i): [[40, 10, 80, 100]] for i in range(3)}))
    args = ["--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render", "--export", "npz", "--checkpoint",
            micro_ckpt, "--body-models", body_dir, "--device", "cpu"]
    out = tmp_path / "out"
    assert run("run", video, "-o", out, "--openpose", *args).exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # (shutil.copy2: the times kept, as cp -a)
    r = run("run", video, "-o", copy, "--resume", "--openpose", "--smooth", "none", *args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (copy / "openpose").iterdir()) == [f"clip_{f:012d}_keypoints.json" for f in range(3)]
    again = tmp_path / "again"
    shutil.copytree(copy, again)
    r = run("run", video, "-o", again, "--resume", *args)  # (without --openpose: its files go, as in the original)
    assert r.exit_code == 0 and not (again / "openpose").exists(), r.output
    # a mark left listing no file (wbcap's files removed, the user's kept), then the user's own folder put
    # there: not taken for a copy of wbcap's
    (again / ".wbcap" / "openpose-written").write_text('{"folder": [1, 2], "files": [], "written": {}}\n')
    (again / "openpose").mkdir()
    (again / "openpose" / f"clip_{0:012d}_keypoints.json").write_text("OpenPose's own")
    r = run("run", video, "-o", again, "--resume", "--openpose", *args)
    assert r.exit_code == 2 and "holds files wbcap did not write" in r.output, r.output
    assert (again / "openpose" / f"clip_{0:012d}_keypoints.json").read_text() == "OpenPose's own"
    edited = tmp_path / "edited"
    shutil.copytree(copy, edited)
    (edited / "openpose" / f"clip_{1:012d}_keypoints.json").write_text('{"version": 1.3, "people": []}')
    r = run("run", video, "-o", edited, "--resume", "--openpose", *args)
    assert r.exit_code == 2 and "holds files wbcap did not write" in r.output, r.output


def test_after_a_stopped_pass_only_the_files_it_wrote_are_wbcaps(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """A pass stopped after writing 2 of 4 frames' files (its mark lists all 4): the user's own
    OpenPose files for the other 2, put there after, are kept by a resume without --openpose
    (they were deleted) and refused, untouched, by one with it (they were replaced); wbcap's 2
    go. A copy of the stopped run (`cp -a`; or tar's whole-second times) takes the 2 it wrote for
    wbcap's too (it was refused), and a copy holding a user's note keeps it and gets new
    keypoints beside it (the mark was lost on the way: a late refusal)."""
    import wbcap.export.openpose as openpose

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(4)])
    args = ["--detector", "full", "--no-render", "--min-track", "1", "--export", "npz", "--checkpoint", micro_ckpt,
            "--body-models", body_dir, "--device", "cpu"]
    out = tmp_path / "out"
    with monkeypatch.context() as patched:
        patched.setattr(openpose, "write_keypoints_json", stopping_at(openpose.write_keypoints_json, 3))
        assert run("run", video, "-o", out, "--openpose", *args).exit_code != 0
    names = [f"v_{f:012d}_keypoints.json" for f in range(4)]
    assert sorted(p.name for p in (out / "openpose").iterdir()) == names[:2]
    stopped_copy, seconds_copy, noted_copy = tmp_path / "copy", tmp_path / "tar", tmp_path / "noted"
    for copy in (stopped_copy, seconds_copy, noted_copy):
        shutil.copytree(out, copy)
    for f in (seconds_copy / "openpose").iterdir():  # (tar keeps whole seconds)
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns // 10**9 * 10**9))
    (noted_copy / "openpose" / "notes.txt").write_text("mine")
    for n in names[2:]:
        (out / "openpose" / n).write_text("OpenPose's own")
    r = run("run", video, "-o", out, "--resume", "--openpose", *args)
    assert r.exit_code == 2 and f"{out / 'openpose'}: holds files wbcap did not write (e.g. {names[2]}: " in r.output, r.output
    assert all((out / "openpose" / n).read_text() == "OpenPose's own" for n in names[2:])
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0 and "kept 2 file(s) named as OpenPose's that wbcap cannot tell as its own" in r.output
    assert sorted(p.name for p in (out / "openpose").iterdir()) == names[2:]  # (wbcap's gone, the user's kept)
    for copy in (stopped_copy, seconds_copy):
        assert run("run", video, "-o", copy, "--resume", *args).exit_code == 0
        assert not (copy / "openpose").exists()
    r = run("run", video, "-o", noted_copy, "--resume", "--openpose", *args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (noted_copy / "openpose").iterdir()) == sorted([*names, "notes.txt"])


def test_wbcaps_keypoint_files_are_told_file_by_file(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """A review of the folder rule: `openpose/` put back from a backup (its inode the removed one's,
    or another) keeps wbcap's files as wbcap's (none was); a user's own OpenPose folder put in its
    place is refused by --openpose whatever its inode (wbcap wrote among its files); a pass stopped
    between recording a file and moving it into place leaves nothing of wbcap's unrecorded (the
    resume's --openpose then refused its own file, late); a copy with some of wbcap's files
    removed still has the others taken for wbcap's."""
    import wbcap.video_app as video_app

    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(4)])
    args = ["--detector", "full", "--no-render", "--min-track", "1", "--export", "npz", "--checkpoint", micro_ckpt,
            "--body-models", body_dir, "--device", "cpu"]
    names = [f"v_{f:012d}_keypoints.json" for f in range(4)]
    out = tmp_path / "out"
    assert run("run", video, "-o", out, "--openpose", *args).exit_code == 0
    backup = tmp_path / "backup"
    shutil.copytree(out / "openpose", backup)
    shutil.rmtree(out / "openpose")
    shutil.copytree(backup, out / "openpose")  # (put back)
    r = run("run", video, "-o", out, "--resume", *args)
    assert r.exit_code == 0 and not (out / "openpose").exists(), r.output
    assert run("run", video, "-o", out, "--resume", "--openpose", *args).exit_code == 0
    shutil.rmtree(out / "openpose")  # (the user's own OpenPose output in its place, the mark left)
    (out / "openpose").mkdir()
    (out / "openpose" / f"myclip_{0:012d}_keypoints.json").write_text("OpenPose's")
    r = run("run", video, "-o", out, "--resume", "--openpose", *args)
    assert r.exit_code == 2 and "holds files wbcap did not write" in r.output, r.output
    assert [p.name for p in (out / "openpose").iterdir()] == [f"myclip_{0:012d}_keypoints.json"]
    shutil.rmtree(out / "openpose")

    with monkeypatch.context() as patched:  # (recorded, then stopped before the file is moved into place)
        patched.setattr(video_app, "keypoint_written", stopping_at(video_app.keypoint_written, 2, after=True))
        assert run("run", video, "-o", out, "--resume", "--openpose", *args).exit_code == 130
    assert sorted(p.name for p in (out / "openpose").iterdir() if not p.name.startswith(".")) == names[:1]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    r = run("run", video, "-o", out, "--resume", "--openpose", *args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "openpose").iterdir()) == names
    shutil.rmtree(copy)
    shutil.copytree(out, copy)
    (copy / "openpose" / names[1]).unlink()  # (a copy with one of wbcap's files removed)
    r = run("run", video, "-o", copy, "--resume", *args)
    assert r.exit_code == 0 and not (copy / "openpose").exists(), r.output
