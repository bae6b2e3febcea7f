"""BVH writer: read back by an independent parser + forward kinematics written here, compared with
the rig's joints, SMPL-X's own joints and Blender's importer."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clients import skip_or_fail
from scipy.spatial.transform import Rotation

from wbcap.errors import InputError
from wbcap.export.bvh import write_bvh
from wbcap.export.clip import YUP_FROM_ZUP, MotionClip
from wbcap.export.rig import build_rig, posed_joints
from wbcap.testing.synthetic_body import make_smplx_params

BLENDER_SCRIPT = Path(__file__).parent / "blender" / "bvh_import.py"
TOL_M = 1e-4


# ---------------------------------------------------------------- independent reader


def parse_bvh(text: str) -> dict:
    """A minimal BVH reader (Meredith & Maddock 2001, section 2.1): names, parents, offsets,
    channel names, end sites, frame count, frame time and the (T, C) motion table."""
    tok = text.split()
    assert tok[0] == "HIERARCHY"
    names, parents, offsets, channels, end_sites, stack = [], [], [], [], {}, []
    i = 1
    while tok[i] != "MOTION":
        if tok[i] in ("ROOT", "JOINT"):
            assert (tok[i] == "ROOT") == (not names), "one ROOT, first"
            names.append(tok[i + 1])
            parents.append(stack[-1] if stack else -1)
            assert tok[i + 2] == "{" and tok[i + 3] == "OFFSET" and tok[i + 7] == "CHANNELS"
            offsets.append([float(x) for x in tok[i + 4: i + 7]])
            n = int(tok[i + 8])
            channels.append(tok[i + 9: i + 9 + n])
            stack.append(len(names) - 1)
            i += 9 + n
        elif tok[i] == "End":
            assert tok[i + 1: i + 4] == ["Site", "{", "OFFSET"] and tok[i + 7] == "}"
            end_sites[stack[-1]] = [float(x) for x in tok[i + 4: i + 7]]
            i += 8
        elif tok[i] == "}":
            stack.pop()
            i += 1
        else:
            raise AssertionError(f"unexpected token {tok[i]!r}")
    assert stack == []
    assert tok[i + 1] == "Frames:" and tok[i + 3: i + 5] == ["Frame", "Time:"]
    frames, frame_time = int(tok[i + 2]), float(tok[i + 5])
    motion = np.array(tok[i + 6:], np.float64)
    width = sum(len(c) for c in channels)
    assert motion.size == frames * width, "MOTION rows do not match Frames x channels"
    return dict(names=names, parents=np.array(parents), offsets=np.array(offsets), channels=channels,
                end_sites=end_sites, frames=frames, frame_time=frame_time, motion=motion.reshape(frames, width))


def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """(T,) degrees -> (T, 3, 3) rotation about a coordinate axis (column vectors)."""
    a = np.radians(degrees)
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    m = {"X": [[o, z, z], [z, c, -s], [z, s, c]],
         "Y": [[c, z, s], [z, o, z], [-s, z, c]],
         "Z": [[c, -s, z], [s, c, z], [z, z, o]]}[axis]
    return np.moveaxis(np.array(m), [0, 1], [-2, -1])


def forward_kinematics(bvh: dict) -> np.ndarray:
    """World joint positions (T, J, 3) in the file's units: channels applied left to right as
    intrinsic rotations, position channels added to the OFFSET (three.js's reading; Blender's,
    which replaces the OFFSET, agrees when the root OFFSET is zero, asserted here)."""
    assert np.all(bvh["offsets"][0] == 0.0), "root OFFSET must be 0 for readers to agree"
    t, n = bvh["frames"], len(bvh["names"])
    world_r = np.zeros((t, n, 3, 3))
    world_p = np.zeros((t, n, 3))
    col = 0
    for j in range(n):
        local_r = np.broadcast_to(np.eye(3), (t, 3, 3))
        local_p = np.broadcast_to(bvh["offsets"][j], (t, 3)).copy()
        for ch in bvh["channels"][j]:
            values = bvh["motion"][:, col]
            col += 1
            if ch.endswith("position"):
                local_p[:, "XYZ".index(ch[0])] += values
            else:
                local_r = local_r @ _axis_rotation(ch[0], values)
        p = bvh["parents"][j]
        if p < 0:
            world_r[:, j], world_p[:, j] = local_r, local_p
        else:
            world_r[:, j] = world_r[:, p] @ local_r
            world_p[:, j] = world_p[:, p] + np.einsum("tab,tb->ta", world_r[:, p], local_p)
    return world_p


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def rig(body_layer):
    betas = make_smplx_params(1, seed=3)["betas"][0].numpy().astype(np.float64)
    return build_rig(body_layer, betas)


def make_clip(rig, poses: np.ndarray, transl: np.ndarray, fps: float = 30.0, up: str = "z") -> MotionClip:
    t = poses.shape[0]
    return MotionClip(
        name="track_1", times=5.0 + np.arange(t) / fps, fps=fps, poses=poses, transl=transl,
        expression=np.random.default_rng(0).normal(size=(t, 10)), betas=rig.betas.copy(),
        valid=np.ones(t, bool), frame_indices=np.arange(t), up=up, rest_root=rig.rest_joints[0].copy(),
    )


def random_poses(t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 55, 3) model-order axis-angle: plausible rows, then rows of arbitrary large rotations."""
    p = make_smplx_params(t, seed)
    parts = ["global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose", "right_hand_pose"]
    poses = torch.cat([p[k] for k in parts], 1).double().numpy().reshape(t, 55, 3)
    rng = np.random.default_rng(seed)
    big = Rotation.random(55 * (t // 2), random_state=seed).as_rotvec().reshape(-1, 55, 3)
    poses[t - t // 2:] = big
    return poses, p["transl"].double().numpy() + rng.normal(0.0, 1.0, (t, 3))


def smplx_joints_yup(body_layer, rig, clip_y: MotionClip) -> np.ndarray:
    """The layer's first 55 joints (metres) for the clip's rows, zero expression (BVH has none)."""
    p = torch.as_tensor(clip_y.poses.reshape(len(clip_y), 165), dtype=torch.float32)
    left, right = (torch.as_tensor(m, dtype=torch.float32) for m in body_layer.hands_mean())
    n = len(clip_y)
    out = body_layer(
        betas=torch.as_tensor(rig.betas[None, :10], dtype=torch.float32).expand(n, -1),
        global_orient=p[:, 0:3], body_pose=p[:, 3:66], jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72],
        reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120] - left, right_hand_pose=p[:, 120:165] - right,
        expression=torch.zeros(n, body_layer.num_expression), transl=torch.as_tensor(clip_y.transl, dtype=torch.float32),
    )
    return out.joints[:, :55].double().numpy()


def write_and_read(tmp_path, rig, clip) -> tuple[dict, np.ndarray]:
    path = write_bvh(tmp_path / "track_1.bvh", rig, clip)
    assert path == tmp_path / "track_1.bvh" and sorted(p.name for p in tmp_path.iterdir()) == ["track_1.bvh"]
    bvh = parse_bvh(path.read_text())
    return bvh, forward_kinematics(bvh) / 100.0  # cm -> m


def by_rig_order(bvh: dict, rig, values: np.ndarray) -> np.ndarray:
    return values[:, [bvh["names"].index(n) for n in rig.joint_names]]


# ---------------------------------------------------------------- tests


def test_hierarchy_is_the_rig_in_centimetres(tmp_path, rig):
    poses, transl = random_poses(2, seed=1)
    bvh, _ = write_and_read(tmp_path, rig, make_clip(rig, poses, transl))
    names = bvh["names"]
    assert sorted(names) == sorted(rig.joint_names) and names[0] == "pelvis"
    idx = [names.index(n) for n in rig.joint_names]
    parent_names = [names[p] if p >= 0 else None for p in bvh["parents"][idx]]
    assert parent_names == [rig.joint_names[p] if p >= 0 else None for p in rig.parents]
    np.testing.assert_allclose(bvh["offsets"][idx][1:], rig.offsets[1:] * 100.0, atol=1e-6, rtol=0)
    assert bvh["channels"][0] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert all(c == ["Zrotation", "Xrotation", "Yrotation"] for c in bvh["channels"][1:])
    leaves = {j for j in range(55) if j not in set(rig.parents[1:].tolist())}
    assert {rig.joint_names[j] for j in leaves} == {names[j] for j in bvh["end_sites"]}
    assert len(leaves) == 15  # feet, jaw, two eyes, ten finger tips
    for j, end in bvh["end_sites"].items():  # half the leaf's bone, along it
        np.testing.assert_allclose(end, 0.5 * bvh["offsets"][j], atol=1e-6)


def test_joints_equal_rig_and_smplx_every_frame(tmp_path, rig, body_layer):
    poses, transl = random_poses(8, seed=2)
    clip = make_clip(rig, poses, transl, fps=29.97)
    bvh, fk = write_and_read(tmp_path, rig, clip)
    assert bvh["frames"] == 8
    assert bvh["frame_time"] == pytest.approx(1 / 29.97, rel=1e-11)
    fk = by_rig_order(bvh, rig, fk)
    clip_y = clip.in_world("y")
    ref = posed_joints(rig, clip_y.poses, clip_y.transl)
    err = np.abs(fk - ref).max()
    assert err <= TOL_M, err
    # y-up world = the z-up clip's joints turned by YUP_FROM_ZUP (x, z, -y): checks the world too
    ref_z = posed_joints(rig, clip.poses, clip.transl) @ YUP_FROM_ZUP.T
    assert np.abs(fk - ref_z).max() <= TOL_M
    # SMPL-X itself (hands absolute in the clip, relative to the mean for this layer)
    smplx = smplx_joints_yup(body_layer, rig, clip_y)
    assert np.abs(fk - smplx).max() <= TOL_M
    # pelvis = rest pelvis + transl, and the root's position channels say so in cm
    np.testing.assert_allclose(bvh["motion"][:, :3], (rig.rest_joints[0] + clip_y.transl) * 100, atol=1e-5)


def test_one_row_clip(tmp_path, rig):
    poses, transl = random_poses(1, seed=4)
    clip = make_clip(rig, poses, transl, up="y")
    bvh, fk = write_and_read(tmp_path, rig, clip)
    assert bvh["frames"] == 1 and bvh["motion"].shape == (1, 6 + 54 * 3)
    assert np.abs(by_rig_order(bvh, rig, fk) - posed_joints(rig, poses, transl)).max() <= TOL_M


def test_gimbal_lock_and_spins_round_trip_continuously(tmp_path, rig):
    """Every joint at / near / to and fro through X = ±90° (the middle ZXY angle, where scipy's
    primary Euler triple flips), and the root turning 585° about the vertical: positions stay
    exact and no channel jumps between frames (no 360° wrap, no Euler flip)."""
    rng = np.random.default_rng(5)
    t = 40
    sweep = np.resize(np.concatenate([np.arange(81.0, 100.0, 2.0), np.arange(97.0, 82.0, -2.0)]), t)  # to and fro over 90
    x = sweep[:, None] * np.where(np.arange(55) % 2 == 0, 1.0, -1.0)  # even joints about +90°, odd about -90°
    x[:3] = [[90.0], [-90.0], [90.0 - 1e-7]]  # exactly at and next to the lock
    z = 20.0 * np.sin(np.arange(t)[:, None] / 7.0 + rng.uniform(0, 6, 55))
    y = 30.0 * np.cos(np.arange(t)[:, None] / 5.0 + rng.uniform(0, 6, 55))
    euler = np.stack([z, x, y], -1)
    poses = Rotation.from_euler("ZXY", euler.reshape(-1, 3), degrees=True).as_rotvec().reshape(t, 55, 3)
    heading = Rotation.from_euler("y", 15.0 * np.arange(t)[:, None], degrees=True)  # 585° about the world y
    sway = Rotation.from_euler("ZXY", np.stack([z[:, 0] / 2, x[:, 0] / 9, y[:, 0] / 2], -1), degrees=True)
    poses[:, 0] = (heading * sway).as_rotvec()
    transl = rng.normal(0, 0.3, (t, 3))
    clip = make_clip(rig, poses, transl, up="y")
    bvh, fk = write_and_read(tmp_path, rig, clip)
    assert np.abs(by_rig_order(bvh, rig, fk) - posed_joints(rig, poses, transl)).max() <= TOL_M
    steps = np.abs(np.diff(bvh["motion"][3:, 3:], axis=0))  # frames after the exact-lock rows
    assert steps.max() < 25.0, steps.max()  # a wrap (360) or flip (180) would show here
    assert bvh["motion"][-1, 5] - bvh["motion"][0, 5] == pytest.approx(585.0, abs=25.0)  # root Y kept as a spin


def test_bad_input_one_clear_error(tmp_path, rig):
    poses, transl = random_poses(2, seed=6)
    with pytest.raises(InputError, match="does not exist"):
        write_bvh(tmp_path / "missing" / "a.bvh", rig, make_clip(rig, poses, transl))
    with pytest.raises(ValueError, match="no rows"):
        write_bvh(tmp_path / "a.bvh", rig, make_clip(rig, poses[:0], transl[:0]))
    other = make_clip(rig, poses, transl)
    other = MotionClip(**{**other.__dict__, "rest_root": other.rest_root + 0.01})
    with pytest.raises(ValueError, match="rig's"):
        write_bvh(tmp_path / "a.bvh", rig, other)
    assert list(tmp_path.iterdir()) == []


def test_blender_importer_shows_the_same_joints(tmp_path, rig):
    if importlib.util.find_spec("bpy") is None:
        skip_or_fail('Blender as a Python module (bpy) is not installed: pip install "wbcap[blender]"')
    poses, transl = random_poses(6, seed=7)
    clip = make_clip(rig, poses, transl, fps=25.0)
    path = write_bvh(tmp_path / "track_1.bvh", rig, clip)
    frames = [1, 3, 4, 6]  # Blender frame f = row f - 1 (frame_start=1)
    out = tmp_path / "blender.json"
    proc = subprocess.run([sys.executable, str(BLENDER_SCRIPT), str(path), str(out), *map(str, frames)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert sorted(r["bones"]) == sorted(rig.joint_names)
    assert r["fps"] / r["fps_base"] == pytest.approx(25.0)
    assert r["frame_range"] == [1.0, 6.0] and r["keyframes"] == [6]
    clip_y = clip.in_world("y")
    ref = posed_joints(rig, clip_y.poses, clip_y.transl)
    order = [r["bones"].index(n) for n in rig.joint_names]
    for f in frames:
        zup = np.array(r["heads"][str(f)])[order]
        yup = zup @ YUP_FROM_ZUP.T  # Blender's z-up -> our y-up: (x, z, -y)
        err = np.abs(yup - ref[f - 1]).max()
        assert err <= TOL_M, (f, err)
