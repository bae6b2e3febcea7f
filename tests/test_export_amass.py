"""The per-track npz is AMASS: z-up world, absolute hand poses, a regular clock with marked gaps.

Checked with an independent reader: plain ``smplx`` with ``flat_hand_mean=True``, fed only the
npz, rebuilds wbcap's own camera-frame mesh after the documented world rotation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from click.testing import CliRunner
from scipy.spatial.transform import Rotation

from wbcap.cli import cli
from wbcap.export.amass import AMASS_FROM_OPENCV, amass_arrays, camera_to_world, lerp_rows, regular_clock, slerp_rows
from wbcap.testing.images import person_image
from wbcap.testing.videos import write_video


def reader(body_dir: Path, batch: int) -> torch.nn.Module:
    """What an AMASS user writes: plain smplx, flat hand mean, no wbcap."""
    return smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, flat_hand_mean=True,
                        num_betas=10, num_expression_coeffs=10, batch_size=batch)  # fmt: skip


def mesh_from_npz(body_dir: Path, d) -> np.ndarray:
    return smplx_from_npz(body_dir, d).vertices.numpy()


def smplx_from_npz(body_dir: Path, d):
    """Plain smplx's output for a track npz's rows (``flat_hand_mean=True``: the file's hands are absolute)."""
    p = torch.as_tensor(np.asarray(d["poses"]), dtype=torch.float32)
    n = p.shape[0]
    with torch.no_grad():
        out = reader(body_dir, n)(
            global_orient=p[:, 0:3], body_pose=p[:, 3:66], jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72],
            reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120], right_hand_pose=p[:, 120:165],
            betas=torch.as_tensor(np.asarray(d["betas"]))[None].expand(n, -1).float(),
            expression=torch.as_tensor(np.asarray(d["expression"])).float(),
            transl=torch.as_tensor(np.asarray(d["trans"])).float(),
        )
    return out


def wbcap_mesh(body_layer, rows: dict[str, np.ndarray]) -> np.ndarray:
    """wbcap's own mesh in the camera: its layer (hand poses relative to the mean) + cam_trans."""
    t = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in rows.items()}
    with torch.no_grad():
        o = body_layer(betas=t["shape"], global_orient=t["root_pose"], body_pose=t["body_pose"],
                       left_hand_pose=t["lhand_pose"], right_hand_pose=t["rhand_pose"], jaw_pose=t["jaw_pose"],
                       expression=t["expr"])  # fmt: skip
    return (o.vertices + t["cam_trans"][:, None]).numpy()


def random_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """n frames of one body (one shape) with random poses, in front of the camera."""
    g = torch.Generator().manual_seed(seed)

    def r(dim: int, scale: float) -> np.ndarray:
        return (scale * torch.randn(n, dim, generator=g)).numpy()

    return {
        "shape": np.repeat(torch.randn(1, 10, generator=g).numpy(), n, 0), "root_pose": r(3, 0.6),
        "body_pose": r(63, 0.3), "lhand_pose": r(45, 0.3), "rhand_pose": r(45, 0.3), "jaw_pose": r(3, 0.1),
        "expr": r(10, 1.0), "cam_trans": np.array([[0.1, 0.2, 5.0]] * n) + np.arange(n)[:, None] * 0.1,
    }


def test_world_rotation_is_z_up_and_proper():
    m = AMASS_FROM_OPENCV
    assert np.allclose(m @ m.T, np.eye(3)) and np.isclose(np.linalg.det(m), 1.0)
    np.testing.assert_array_equal(m @ [0, -1, 0], [0, 0, 1])  # camera up (-y) -> world +z
    np.testing.assert_array_equal(m @ [0, 0, 1], [0, 1, 0])  # camera forward -> world +y
    np.testing.assert_array_equal(m @ [1, 0, 0], [1, 0, 0])


def test_regular_clock_fills_short_gaps_and_splits_long_ones():
    t = np.array([0.0, 0.1, 0.2, 0.5, 0.6, 2.0, 2.1])
    segs = regular_clock(t, rate=10.0, max_gap=0.5)
    assert len(segs) == 2
    a, b = segs
    np.testing.assert_allclose(a.times, np.arange(7) * 0.1, atol=1e-12)
    assert a.valid.tolist() == [True, True, True, False, False, True, True]
    assert a.lo.tolist()[:3] == [0, 1, 2] and a.lo[5] == 3 and a.lo[6] == 4
    np.testing.assert_allclose(a.weight[3:5], [1 / 3, 2 / 3])
    assert (a.lo[3], a.hi[3]) == (2, 3)
    np.testing.assert_allclose(b.times, [2.0, 2.1])
    assert b.valid.all() and b.lo.tolist() == [5, 6]


def test_regular_clock_vfr_rows_are_the_track_at_their_own_time():
    """Variable frame rate on its average clock: each row is the track at the row's time
    (interpolated between the frames around it), not its nearest frame moved onto the row,
    which was up to half a period off (a user trial: +-32 ms on a 15 fps clock). A value that
    grows linearly in time comes out as the rows' times; a frame on a row is copied exactly."""
    t = np.concatenate([np.arange(9) / 30, 0.3 + np.arange(1, 11) / 10])  # 30 fps, then 10 fps
    (seg,) = regular_clock(t, rate=15.0, max_gap=1.0, frames=np.arange(t.size))
    np.testing.assert_allclose(np.diff(seg.times), 1 / 15)
    # the rows reach the last frame (1.3 s): the last one, at 1.333 s, holds its pose and is filled
    # (with the last row before the last frame, `wbcap view` hid the person there: a review)
    assert seg.times[-1] >= t[-1] and seg.times[-2] < t[-1]
    assert seg.valid[:-1].all() and not seg.valid[-1]  # seen in every frame, none more than two periods apart
    lin = lerp_rows((3 * t + 1)[:, None], seg)[:, 0]
    np.testing.assert_allclose(lin[:-1], 3 * seg.times[:-1] + 1, atol=1e-12)
    assert lin[-1] == 3 * t[-1] + 1
    on_row = np.isclose(seg.times[:, None], t[None]).any(1)
    assert (seg.lo[on_row] == seg.hi[on_row]).all() and on_row.sum() >= 4
    rot = np.zeros((t.size, 1, 3))
    rot[:, 0, 2] = 0.5 * t  # turning at 0.5 rad/s about z
    np.testing.assert_allclose(slerp_rows(rot, seg)[:-1, 0, 2], 0.5 * seg.times[:-1], atol=1e-12)
    # frames that keep to the grid (ms-rounded times) are copied, one per row, as before
    jittered = np.arange(8) / 15 + np.array([0, 4e-4, -3e-4, 0, 2e-4, 0, -4e-4, 1e-4])
    (seg,) = regular_clock(jittered, rate=15.0, max_gap=1.0)
    assert seg.valid.all() and seg.lo.tolist() == seg.hi.tolist() == list(range(8))


def test_regular_clock_vfr_rows_far_from_any_frame_are_filled():
    """Where the source has no frame for over two periods (a 5 fps stretch on a 15 fps clock), the
    rows between are filled (valid False), not measured; the track is not split there."""
    t = np.concatenate([np.arange(9) / 30, 8 / 30 + np.arange(1, 6) / 5])  # 30 fps, then 5 fps (on rows)
    frames = np.arange(t.size)
    (seg,) = regular_clock(t, rate=15.0, max_gap=0.0, frames=frames)
    slow = seg.times > 8 / 30 + 1e-9
    on_frame = np.isclose(seg.times[:, None], t[None], atol=1e-9).any(1)
    assert seg.valid[~slow].all() and (seg.valid[slow] == on_frame[slow]).all() and (~seg.valid).sum() >= 8


@pytest.mark.parametrize("max_gap", [0.0, 0.01, 0.1])
def test_regular_clock_never_splits_a_track_seen_in_every_frame(max_gap):
    """--max-gap is the time missed (filled rows), not the time between detections: a track seen in
    every processed frame stays whole even with --max-gap 0 (also with timestamp jitter), and
    one missed frame at 10 fps is 0.1 s missed."""
    t = np.arange(6) / 10 + np.array([0, 3e-4, -2e-4, 1e-4, 0, 4e-4])  # ms-rounded timestamps
    (seg,) = regular_clock(t, rate=10.0, max_gap=max_gap)
    assert seg.valid.all() and len(seg.times) == 6
    segs = regular_clock(np.array([0.0, 0.1, 0.3, 0.4]), rate=10.0, max_gap=max_gap)  # frame 2 missed
    assert [len(s.times) for s in segs] == ([5] if max_gap >= 0.1 else [2, 2])


def test_regular_clock_vfr_slow_stretch_is_not_missed():
    """Variable frame rate on its average clock: a stretch slower than the average leaves rows no
    frame falls on; with the frame indices (consecutive) it is not a missed stretch, so --max-gap 0
    keeps the track whole; a real miss (a skipped index) still splits it."""
    t = np.concatenate([np.arange(9) / 30, 0.3 + np.arange(1, 11) / 10])  # 30 fps, then 10 fps
    frames = np.arange(t.size)
    assert len(regular_clock(t, rate=15.0, max_gap=0.0)) > 1  # by times alone: filled rows
    (seg,) = regular_clock(t, rate=15.0, max_gap=0.0, frames=frames)
    assert seg.valid[:-1].all()  # (the last row, past the last frame, holds its pose: filled)
    missed = np.delete(np.arange(t.size), 12)
    segs = regular_clock(t[missed], rate=15.0, max_gap=0.0, frames=frames[missed])
    assert len(segs) == 2 and segs[1].times[0] == pytest.approx(t[13])


def test_regular_clock_splits_where_the_source_itself_paused():
    """Consecutive frames of a variable-frame-rate source with an 8-hour pause between them (a
    motion-triggered camera) were one track of 300 003 interpolated rows at 10 fps, a 417 MB
    npz for 6 frames (a review). A pause of the source over SOURCE_PAUSE_S (and --max-gap)
    splits it as a miss does; a shorter one is still a slow stretch, filled."""
    from wbcap.export.amass import SOURCE_PAUSE_S

    frames = np.arange(6)
    for pause, parts in ((30_000.0, [3, 3]), (SOURCE_PAUSE_S + 0.2, [3, 3]), (SOURCE_PAUSE_S, [1])):
        t = np.array([0.0, 0.1, 0.2, 0.2 + pause, 0.3 + pause, 0.4 + pause])
        for step in (None, 1):
            segs = regular_clock(t, rate=10.0, max_gap=1.0, frames=frames, frame_step=step)
            assert [int(s.valid.sum()) for s in segs] == ([6] if parts == [1] else parts), (pause, step)
            assert sum(len(s.times) for s in segs) < 60  # rows, not hours of them
    # --max-gap above the pause fills it
    (seg,) = regular_clock(np.array([0.0, 0.1, 5.1, 5.2]), rate=10.0, max_gap=10.0, frames=np.arange(4))
    assert len(seg.times) == 53 and seg.valid.sum() == 4


def test_slerp_and_lerp_rows_known_answers():
    seg = regular_clock(np.array([0.0, 0.4]), rate=10.0, max_gap=1.0)[0]
    rot = np.zeros((2, 1, 3))
    rot[1, 0] = [0.0, 0.0, 0.8]  # 0.8 rad about z
    out = slerp_rows(rot, seg)
    np.testing.assert_allclose(out[:, 0, 2], [0.0, 0.2, 0.4, 0.6, 0.8], atol=1e-12)
    x = np.array([[0.0], [4.0]])
    np.testing.assert_allclose(lerp_rows(x, seg)[:, 0], [0, 1, 2, 3, 4])
    # across the +-pi seam: the short way round
    rot[0, 0] = [0, 0, np.pi - 0.1]
    rot[1, 0] = [0, 0, -(np.pi - 0.1)]
    mid = Rotation.from_rotvec(slerp_rows(rot, seg)[2, 0])
    assert abs(abs(mid.as_rotvec()[2]) - np.pi) < 1e-9


def test_camera_to_world_turns_the_posed_body(body_layer):
    rows = random_rows(3, seed=0)
    rows["cam_trans"] = np.array([[0.1, 0.2, 5.0], [0, 0, 3.0], [-1, 0.5, 8.0]])
    cam = wbcap_mesh(body_layer, rows)
    rest = body_layer.rest_root(torch.as_tensor(rows["shape"], dtype=torch.float32)).numpy()
    go, tr = camera_to_world(rows["root_pose"], rows["cam_trans"], rest)
    world = wbcap_mesh(body_layer, {**rows, "root_pose": go, "cam_trans": tr})
    np.testing.assert_allclose(world, cam @ AMASS_FROM_OPENCV.T, atol=2e-5)


def test_rest_root_equals_the_regressed_pelvis(body_layer):
    betas = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    shaped = body_layer.v_template + torch.einsum("bl,vcl->bvc", betas, body_layer.shapedirs)
    expected = torch.einsum("v,bvc->bc", body_layer.J_regressor[0], shaped)
    torch.testing.assert_close(body_layer.rest_root(betas), expected, atol=1e-6, rtol=0)


def test_rest_root_of_a_long_track_needs_no_mesh_sized_memory(body_layer):
    """50,000 frames (half an hour at 30 fps): no intermediate tensor of the call exceeds 50 MB
    (a shaped mesh per frame would be 6.3 GB), and the result equals the per-mesh formula."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestTensor(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel() * t.element_size())
            return out

    betas = torch.randn(50_000, 10, generator=torch.Generator().manual_seed(3))
    with LargestTensor() as probe:
        root = body_layer.rest_root(betas)
    assert root.shape == (50_000, 3)
    assert probe.largest <= 50 * 2**20, probe.largest
    some = betas[::5000]
    shaped = body_layer.v_template + torch.einsum("bl,vcl->bvc", some, body_layer.shapedirs)
    expected = torch.einsum("v,bvc->bc", body_layer.J_regressor[0], shaped)
    torch.testing.assert_close(root[::5000], expected, atol=1e-6, rtol=0)


def test_amass_arrays_read_by_plain_smplx_equal_wbcap_mesh(body_dir, body_layer):
    n = 4
    rows = random_rows(n, seed=2)
    betas = rows["shape"][0]
    left, right = body_layer.hands_mean()
    assert np.abs(left).max() > 0.05  # the synthetic model has a real hand mean: the test can fail
    rest = body_layer.rest_root(torch.as_tensor(betas[None])).numpy()[0]
    d = amass_arrays(
        global_orient=rows["root_pose"], body_pose=rows["body_pose"], jaw_pose=rows["jaw_pose"],
        left_hand_pose=rows["lhand_pose"], right_hand_pose=rows["rhand_pose"], transl=rows["cam_trans"],
        betas=betas, expression=rows["expr"], hands_mean=(left, right), rest_root=rest, fps=30.0,
        times=np.arange(n) / 30, frame_indices=np.arange(n), valid=np.ones(n, bool), gender="neutral",
    )
    ours = wbcap_mesh(body_layer, rows) @ AMASS_FROM_OPENCV.T
    np.testing.assert_allclose(mesh_from_npz(body_dir, d), ours, atol=1e-4)
    # without folding the mean in, the fingers are off: the check above is sensitive to it
    wrong = dict(d, poses=d["poses"].copy())
    wrong["poses"][:, 75:] -= np.concatenate([left, right]).astype(np.float32)
    assert np.abs(mesh_from_npz(body_dir, wrong) - ours).max() > 1e-3


# ----------------------------------------------------------------------------- end to end


def test_run_npz_is_amass_with_gaps_filled(tmp_path, micro_ckpt, body_dir, body_layer):
    """A person missed in frames 3-4 of 8: one file, 8 rows on the 10 fps clock, rows 3-4 filled
    and marked invalid; the observed rows rebuilt by plain smplx equal wbcap's params.jsonl mesh."""
    frames = [person_image(160, 120, seed=i) for i in range(8)]
    video = write_video(tmp_path / "clip.mp4", frames)
    boxes = {str(i): [[30 + 2 * i, 10, 90, 100]] for i in range(8) if i not in (3, 4)}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, [
        "run", str(video), "-o", str(out), "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render",
        "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu", "--export", "npz,csv",
    ], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    d = np.load(out / "track_0.npz")
    assert d["poses"].shape == (8, 165) and d["trans"].shape == (8, 3)
    # --export csv: the npz's rows as 76 joints (a user trial: no joints anywhere), plain smplx's from the npz
    from smplx.joint_names import JOINT_NAMES

    with open(out / "track_0.csv", newline="") as f:
        table = list(csv.reader(f))
    header = table[0]
    assert header[:3] == ["time", "frame_index", "valid"] and len(header) == 3 + 76 * 3
    assert header[3:] == [f"{n}_{a}" for n in JOINT_NAMES[:76] for a in "xyz"]  # (the GLB's and BVH's names)
    assert header[3:6] == ["pelvis_x", "pelvis_y", "pelvis_z"] and header[-1] == "right_pinky_z"
    rows = np.asarray(table[1:], np.float64)
    assert rows.shape == (8, 3 + 228)
    np.testing.assert_allclose(rows[:, 0], d["times"], atol=1e-6)
    assert rows[:, 1].astype(int).tolist() == d["frame_indices"].tolist() and rows[:, 2].astype(bool).tolist() == d["valid"].tolist()
    plain = smplx_from_npz(body_dir, d).joints.numpy()[:, :76]
    np.testing.assert_allclose(rows[:, 3:].reshape(8, 76, 3), plain, atol=2e-6)
    r = CliRunner().invoke(cli, ["export", str(out), "--format", "csv", "--dest", str(tmp_path / "again"),
                                 "--body-models", str(body_dir)])
    assert r.exit_code == 0 and (tmp_path / "again" / "track_0.csv").read_bytes() == (out / "track_0.csv").read_bytes()
    assert d["valid"].tolist() == [True, True, True, False, False, True, True, True]
    assert d["frame_indices"].tolist() == [0, 1, 2, -1, -1, 5, 6, 7]
    np.testing.assert_allclose(d["times"], np.arange(8) / 10, atol=1e-6)
    assert float(d["mocap_framerate"]) == float(d["mocap_frame_rate"]) == 10.0
    assert str(d["gender"]) == "neutral" and str(d["surface_model_type"]) == "smplx" and d["betas"].shape == (10,)
    assert d["gender"].shape == () and d["mocap_framerate"].shape == ()  # 0-d, as the Blender add-on reads them
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2, 5, 6, 7]
    assert all(x["leye_pose"] == [0.0, 0.0, 0.0] and x["reye_pose"] == [0.0, 0.0, 0.0] for x in lines)
    rows = {k: np.asarray([x[k] for x in lines]) for k in ("shape", "root_pose", "body_pose", "lhand_pose", "rhand_pose",
                                                         "jaw_pose", "expr", "cam_trans")}  # fmt: skip
    ours = wbcap_mesh(body_layer, rows) @ AMASS_FROM_OPENCV.T
    theirs = mesh_from_npz(body_dir, d)[d["valid"]]
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    # the filled rows lie between their neighbours (pelvis path interpolated, not a jump to 0)
    tr = d["trans"]
    assert np.all(np.linalg.norm(tr[3] - tr[2]) < np.linalg.norm(tr[5] - tr[2]) + 1e-6)
    # z is up: the head is above the pelvis in the world
    verts = mesh_from_npz(body_dir, d)
    assert np.all(verts[:, :, 2].max(1) > d["trans"][:, 2])


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_run_long_gap_splits_the_track(tmp_path, micro_ckpt, body_dir):
    frames = [person_image(160, 120, seed=i) for i in range(12)]
    video = write_video(tmp_path / "clip.mp4", frames)
    boxes = {str(i): [[30, 10, 90, 100]] for i in (0, 1, 2, 9, 10, 11)}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, [
        "run", str(video), "-o", str(out), "--detector", f"boxes:{tmp_path / 'boxes.json'}", "--no-render",
        "--max-age", "10", "--max-gap", "0.5",
        "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu",
    ], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("track_*.npz")) == ["track_0_part1.npz", "track_0_part2.npz"]
    a, b = np.load(out / "track_0_part1.npz"), np.load(out / "track_0_part2.npz")
    assert a["frame_indices"].tolist() == [0, 1, 2] and b["frame_indices"].tolist() == [9, 10, 11]
    assert a["valid"].all() and b["valid"].all()


def _run_whole_frame(video: Path, out: Path, micro_ckpt: Path, body_dir: Path):
    """`wbcap run VIDEO -o OUT` with the whole frame as the one person, no render, the MICRO network."""
    r = CliRunner().invoke(cli, [
        "run", str(video), "-o", str(out), "--detector", "full", "--no-render",
        "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu",
    ], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    return r


@pytest.mark.parametrize("n_frames", [1, 2])
def test_short_clip_keeps_its_track(tmp_path, micro_ckpt, body_dir, n_frames):
    video = write_video(tmp_path / "clip.mp4", [person_image(160, 120, seed=i) for i in range(n_frames)])
    out = tmp_path / "out"
    r = _run_whole_frame(video, out, micro_ckpt, body_dir)
    assert f"{n_frames} frames, 1 track(s), {n_frames} person-frames" in r.output
    assert np.load(out / "track_0.npz")["poses"].shape == (n_frames, 165)


def test_a_dropped_frame_keeps_the_clock_and_is_a_filled_row(tmp_path, micro_ckpt, body_dir):
    """10 fps H.264 in MP4 with the frame at 0.6 s dropped: the container's average rate is 9.23
    fps, which the files carried, every row interpolated and valid (a biomechanics trial); the
    clock is the stream's grid, 10 fps, and the drop a filled row."""
    slots = [i for i in range(13) if i != 6]
    video = write_video(tmp_path / "drop.mp4", [person_image(160, 120, seed=0)] * 12, fps=10, slots=slots)
    out = tmp_path / "out"
    _run_whole_frame(video, out, micro_ckpt, body_dir)
    assert json.loads((out / "meta.json").read_text())["fps"] == 10.0
    npz = np.load(out / "track_0.npz")
    assert float(npz["mocap_framerate"]) == 10.0 and npz["poses"].shape == (13, 165)
    assert npz["frame_indices"].tolist() == [0, 1, 2, 3, 4, 5, -1, 6, 7, 8, 9, 10, 11]
    assert npz["valid"].tolist() == [True] * 6 + [False] + [True] * 6
    np.testing.assert_allclose(npz["times"], np.arange(13) / 10, atol=1e-9)


def test_photo_through_run_gives_one_track(tmp_path, micro_ckpt, body_dir):
    import cv2

    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), person_image(120, 160, seed=3)[:, :, ::-1])
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, [
        "run", str(photo), "-o", str(out), "--detector", "full",
        "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu",
    ], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 frames, 1 track(s), 1 person-frames" in r.output
    assert len((out / "params.jsonl").read_text().splitlines()) == 1


def test_regular_clock_vfr_track_seen_only_in_a_slow_stretch_with_the_runs_step():
    """A track seen only where the footage runs slower than the clock has no pair of its own one
    row apart; the run's frame step (--every) keeps it whole: 10 frames at 15 fps on a 30 fps
    clock, --max-gap 0 (one-row pieces before); a skipped index still splits it."""
    t = 5.0 + np.arange(10) / 15
    frames = 100 + np.arange(10)
    assert len(regular_clock(t, rate=30.0, max_gap=0.0, frames=frames)) == 10  # no step of its own
    (seg,) = regular_clock(t, rate=30.0, max_gap=0.0, frames=frames, frame_step=1)
    assert seg.valid.sum() == 10
    gap = np.delete(np.arange(10), 4)
    assert len(regular_clock(t[gap], rate=30.0, max_gap=0.0, frames=frames[gap], frame_step=1)) == 2


def test_regular_clock_vfr_a_frame_on_a_row_is_that_row_whatever_the_rounding():
    """Rows k * period drift past a frame time by float rounding (0.24 + 5e-17 s): the frame they
    fall on was taken for the one before a gap, and the row filled; and a row a quarter period or
    less from a frame before a gap was filled too (a user trial's VFR clip)."""
    t = np.array([0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54, 0.56])
    rate = (len(t) - 1) / (t[-1] - t[0])  # (clock_rate's average rate: 12.499999999999998)
    (seg,) = regular_clock(t, rate=rate, max_gap=1.0, frames=np.arange(8))
    assert seg.times[3] > 0.24 and seg.times[3] == pytest.approx(0.24)  # (the drift)
    assert seg.valid[3] and seg.lo[3] == seg.hi[3] == 4
    assert seg.valid.tolist() == [True, True, True, True, False, False, True, True]  # (0.48: 0.02 s from 0.5)
    t2 = np.array([0.0, 0.04, 0.08, 0.2, 0.24, 0.5, 0.54, 0.59])
    (seg,) = regular_clock(t2, rate=7 / 0.59, max_gap=1.0, frames=np.arange(8))
    k = int(np.argmin(np.abs(seg.times - 0.2529)))  # (13 ms after the frame at 0.24, before a 0.26 s gap)
    assert seg.valid[k] and np.isclose(seg.times[k], 0.2529, atol=1e-3)
