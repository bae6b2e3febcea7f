"""GLB export (:mod:`wbcap.export.gltf`): files read back by an independent glTF evaluator (our
own numpy implementation of the spec's node, animation, morph and skin rules, on pygltflib's
parse) equal the LBS reference, the exact option equals SMPL-X, and the Khronos validator
accepts them."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from clients import node_packages_missing, skip_or_fail

from wbcap.camera import ImageCamera
from wbcap.export.clip import YUP_FROM_ZUP, MotionClip, smplx_rows
from wbcap.export.gltf import CAMERA_NODE_NAME, mesh_node_name, write_glb
from wbcap.export.rig import JOINT_NAMES_55, build_rig, lbs_vertices, posed_joints

log = logging.getLogger(__name__)
JS = Path(__file__).parent / "js"
FPS = 25.0
T0 = 2.0  # first key on the source clock, seconds
CAMERA = ImageCamera(focal=(1100.0, 1080.0), princpt=(652.0, 355.0), image_size=(1280, 720))


# --------------------------------------------------------------------------- an independent reader


class Reader:
    """A small glTF 2.0 evaluator (spec 3.5 nodes, 3.7.2.2 morph targets, 3.7.3 skins, 3.11
    animations), float64, for files of one skinned mesh."""

    def __init__(self, path: Path) -> None:
        import pygltflib

        self.g = pygltflib.GLTF2().load_binary(str(path))
        self.blob = self.g.binary_blob()
        self.names = [n.name for n in self.g.nodes]
        self.parent = {c: i for i, n in enumerate(self.g.nodes) for c in (n.children or [])}

    def accessor(self, index: int) -> np.ndarray:
        a = self.g.accessors[index]
        view = self.g.bufferViews[a.bufferView]
        dtype = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}[a.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a.type]
        item = np.dtype(dtype).itemsize * width
        stride = view.byteStride or item
        start = view.byteOffset + (a.byteOffset or 0)
        rows = [np.frombuffer(self.blob, dtype, width, start + i * stride) for i in range(a.count)] \
            if stride != item else [np.frombuffer(self.blob, dtype, a.count * width, start)]
        out = np.concatenate(rows).reshape(a.count, width)
        return out[:, 0] if width == 1 else out

    def node(self, name: str) -> int:
        return self.names.index(name)

    # -- animation (spec 3.11.2 "Interpolation", Appendix C: LINEAR, slerp for rotations)
    def sample(self, time: float) -> dict[tuple[int, str], np.ndarray]:
        out: dict[tuple[int, str], np.ndarray] = {}
        for anim in self.g.animations:
            for ch in anim.channels:
                s = anim.samplers[ch.sampler]
                assert s.interpolation == "LINEAR"
                times = self.accessor(s.input).astype(np.float64)
                values = self.accessor(s.output).astype(np.float64).reshape(times.size, -1)
                if time <= times[0]:
                    v = values[0]
                elif time >= times[-1]:
                    v = values[-1]
                else:
                    k = int(np.searchsorted(times, time, side="right") - 1)
                    u = (time - times[k]) / (times[k + 1] - times[k])
                    a, b = values[k], values[k + 1]
                    if ch.target.path == "rotation":
                        dot = float(a @ b)
                        s_ = -1.0 if dot < 0 else 1.0
                        ang = np.arccos(min(abs(dot), 1.0))
                        if ang < 1e-9:
                            v = (1 - u) * a + u * s_ * b
                        else:
                            v = np.sin(ang * (1 - u)) / np.sin(ang) * a + s_ * np.sin(ang * u) / np.sin(ang) * b
                    else:
                        v = (1 - u) * a + u * b
                out[(ch.target.node, ch.target.path)] = v
        return out

    def local(self, i: int, anim: dict) -> np.ndarray:
        n = self.g.nodes[i]
        t = anim.get((i, "translation"), n.translation or [0.0, 0.0, 0.0])
        q = anim.get((i, "rotation"), n.rotation or [0.0, 0.0, 0.0, 1.0])
        s = anim.get((i, "scale"), n.scale or [1.0, 1.0, 1.0])
        x, y, z, w = np.asarray(q, np.float64) / np.linalg.norm(q)
        r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        m = np.eye(4)
        m[:3, :3] = r * np.asarray(s, np.float64)
        m[:3, 3] = t
        return m

    def world(self, i: int, anim: dict) -> np.ndarray:
        m = self.local(i, anim)
        while i in self.parent:
            i = self.parent[i]
            m = self.local(i, anim) @ m
        return m

    def vertices(self, time: float | None) -> np.ndarray:
        """Skinned mesh at ``time`` (None: the nodes' own TRS and the mesh's default weights)."""
        anim = {} if time is None else self.sample(time)
        (mi,) = [i for i, n in enumerate(self.g.nodes) if n.skin is not None]
        mnode = self.g.nodes[mi]
        mesh = self.g.meshes[mnode.mesh]
        prim = mesh.primitives[0]
        pos = self.accessor(prim.attributes.POSITION).astype(np.float64)
        weights = anim.get((mi, "weights"), getattr(mnode, "weights", None) or mesh.weights or [])
        for w, target in zip(weights, prim.targets or [], strict=True):
            pos = pos + w * self.accessor(target["POSITION"])
        skin = self.g.skins[mnode.skin]
        ibm = self.accessor(skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
        inv_mesh = np.linalg.inv(self.world(mi, anim))
        mats = np.stack([inv_mesh @ self.world(j, anim) @ ibm[k] for k, j in enumerate(skin.joints)])
        joints = self.accessor(prim.attributes.JOINTS_0).astype(np.int64)
        wts = self.accessor(prim.attributes.WEIGHTS_0).astype(np.float64)
        homo = np.concatenate([pos, np.ones((pos.shape[0], 1))], 1)
        out = np.zeros_like(pos)
        for k in range(4):
            out += wts[:, k : k + 1] * np.einsum("vab,vb->va", mats[joints[:, k]], homo)[:, :3]
        return out


# --------------------------------------------------------------------------- data


def _clip(betas: np.ndarray, rest_root: np.ndarray, rows: int = 8, seed: int = 0) -> MotionClip:
    """Smooth random motion: each joint a sum of two sinusoids (<= ~0.5 rad), the root turning
    about y through 180 degrees (its quaternions change sign there), a walking path, expression."""
    rng = np.random.default_rng(seed)
    k = np.arange(rows)[:, None, None] / FPS
    amp = rng.uniform(0.05, 0.25, (2, 55, 3))
    freq = rng.uniform(0.5, 3.0, (2, 55, 3))
    phase = rng.uniform(0, 2 * np.pi, (2, 55, 3))
    poses = (amp[0] * np.sin(2 * np.pi * freq[0] * k + phase[0]) + amp[1] * np.sin(2 * np.pi * freq[1] * k + phase[1]))
    poses[:, 0] = 0.0
    poses[:, 0, 1] = np.linspace(2.8, 3.5, rows)  # about y, across pi
    poses[:, 0, 0] = 0.15 * np.sin(np.arange(rows) / 3.0)
    t = np.arange(rows) / FPS
    transl = np.stack([0.4 * t, 0.05 * np.sin(6 * t), -3.0 + 0.3 * t], 1)
    expression = np.sin(np.arange(rows)[:, None] / 4.0 + rng.uniform(0, 6, 10)) * rng.uniform(0.5, 2.0, 10)
    return MotionClip(
        name="track_1", times=T0 + np.arange(rows) / FPS, fps=FPS, poses=poses, transl=transl,
        expression=expression, betas=betas, valid=np.arange(rows) != 3, frame_indices=np.where(np.arange(rows) != 3,
        50 + np.arange(rows), -1), up="y", rest_root=rest_root,
    )


@pytest.fixture(scope="module")
def setup(body_layer, tmp_path_factory):
    betas = np.random.default_rng(3).normal(0, 0.7, 10)
    rig = build_rig(body_layer, betas)
    clip = _clip(betas, rig.rest_joints[0])
    folder = tmp_path_factory.mktemp("glb")
    exact = smplx_rows(body_layer, clip)
    photo = replace(clip, times=clip.times[:1], poses=clip.poses[:1], transl=clip.transl[:1],
                    expression=clip.expression[:1], valid=clip.valid[:1], frame_indices=clip.frame_indices[:1])
    files = {
        "lbs": write_glb(folder / "clip.glb", rig, clip, camera=CAMERA),
        "exact": write_glb(folder / "clip_exact.glb", rig, clip, exact_vertices=exact),
        "photo": write_glb(folder / "photo.glb", rig, photo, camera=CAMERA),
        "photo_exact": write_glb(folder / "photo_exact.glb", rig, photo, exact_vertices=exact[:1]),
        "root": write_glb(folder / "clip_root.glb", rig, clip, camera=CAMERA, root_bone=True),
        "photo_root": write_glb(folder / "photo_root.glb", rig, photo, root_bone=True),
    }
    return rig, clip, exact, files


def test_a_root_bone_moves_on_the_ground_under_the_pelvis_and_changes_no_vertex(setup):
    """--root-bone (game engines' root motion, an animator's trial): a joint `root` above the pelvis,
    keyed at the pelvis's ground projection (y = 0), no rotation; the skinned mesh and every joint's
    world position are the plain file's, at keys and between them, and in a photo's static file."""
    rig, clip, _, files = setup
    plain, rooted = Reader(files["lbs"]), Reader(files["root"])
    root = rooted.node("root")
    person = rooted.node(clip.name)
    assert root == 55 and rooted.g.nodes[root].children == [0] and rooted.parent.get(root) == person
    skin = rooted.g.skins[0]
    assert skin.joints == list(range(56)) and skin.skeleton == 55 and rooted.g.scenes[0].nodes[0] == person
    assert rooted.g.nodes[person].children == [55]
    assert rooted.g.asset.extras["root_bone"] == "root" and "root_bone" not in plain.g.asset.extras
    for t in (float(clip.times[2]), float(clip.times[3] + 0.37 / FPS), float(clip.times[-1])):
        a, b = plain.sample(t), rooted.sample(t)
        np.testing.assert_allclose(rooted.vertices(t), plain.vertices(t), atol=1e-5)
        pelvis = plain.world(0, a)[:3, 3]
        np.testing.assert_allclose(rooted.world(0, b)[:3, 3], pelvis, atol=1e-5)
        np.testing.assert_allclose(rooted.world(root, b)[:3, :3], np.eye(3), atol=1e-7)
        np.testing.assert_allclose(rooted.world(root, b)[:3, 3], [pelvis[0], 0.0, pelvis[2]], atol=1e-5)
        assert abs(pelvis[1]) > 0.01 and abs(pelvis[2]) > 1.0  # (a root at the origin or at the pelvis would fail)
    photo, photo_root = Reader(files["photo"]), Reader(files["photo_root"])
    np.testing.assert_allclose(photo_root.vertices(None), photo.vertices(None), atol=1e-5)
    np.testing.assert_allclose(photo_root.world(55, {})[:3, 3][[1]], [0.0], atol=0)
    # the rest (bind) pose stands on the root: its lowest vertex at y = 0, the root at the origin (it
    # was SMPL-X's, the feet 1.3 m below the root: a game developer's trial); the plain file keeps SMPL-X's
    for reader, lifted in ((rooted, True), (photo_root, True), (plain, False)):
        position = reader.g.meshes[0].primitives[0].attributes.POSITION
        rest = reader.accessor(position)
        lowest = float(rig.rest_vertices[:, 1].min())
        assert rest[:, 1].min() == pytest.approx(0.0 if lifted else lowest, abs=1e-6) and lowest < -1.0
        ibm = reader.accessor(reader.g.skins[0].inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
        np.testing.assert_allclose(-ibm[:55, :3, 3], rig.rest_joints - [0.0, lowest if lifted else 0.0, 0.0], atol=1e-6)
        np.testing.assert_allclose(reader.g.nodes[0].translation if reader is not photo_root else
                                   -ibm[0, :3, 3], rig.rest_joints[0] - [0.0, lowest if lifted else 0.0, 0.0], atol=1e-6)
    assert rooted.g.nodes[55].translation == [0.0, 0.0, 0.0]
    assert rooted.g.asset.extras["rest_lift_m"] == pytest.approx([0.0, -lowest, 0.0])


def _slerp_clip(clip: MotionClip, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clip at ``time`` by glTF's LINEAR rules, computed with scipy (rotations: shortest-arc slerp)."""
    from scipy.spatial.transform import Rotation, Slerp

    k = int(np.searchsorted(clip.times, time) - 1)
    u = (time - clip.times[k]) / (clip.times[k + 1] - clip.times[k])
    poses = np.stack([Slerp([0.0, 1.0], Rotation.from_rotvec(clip.poses[k : k + 2, j]))(u).as_rotvec()
                      for j in range(55)])
    lerp = lambda a: (1 - u) * a[k] + u * a[k + 1]
    return poses[None], lerp(clip.transl)[None], lerp(clip.expression)[None]


# --------------------------------------------------------------------------- tests


def test_structure_known_answers(setup):
    rig, clip, _, files = setup
    r = Reader(files["lbs"])
    g = r.g
    assert r.names[:55] == list(JOINT_NAMES_55) == list(rig.joint_names)
    person = r.node(clip.name)  # (the skeleton's own parent node: the pelvis is no scene root)
    parents = [r.parent.get(i, -1) for i in range(55)]
    np.testing.assert_array_equal(parents, [person, *rig.parents[1:]])
    assert g.nodes[person].children == [0] and person not in r.parent
    assert (g.nodes[person].translation, g.nodes[person].rotation, g.nodes[person].matrix) == (None, None, None)
    skin = g.skins[0]
    assert skin.joints == list(range(55)) and skin.skeleton == r.node("pelvis")
    # the skin and the mesh named after the clip: Blender names the armature and mesh objects so,
    # and the people of several files stay apart (they were all `smplx` and `body`; a user trial)
    assert skin.name == clip.name and g.meshes[0].name == mesh_node_name(clip.name) == f"{clip.name}_body"
    # the camera a root of its own (Blender parented it to the armature when the pelvis was a root;
    # an animator's trial), the skinned mesh a root (the Khronos validator's advice)
    assert [n for n in g.scenes[g.scene].nodes] == [person, r.node(mesh_node_name(clip.name)), r.node(CAMERA_NODE_NAME)]
    (anim,) = g.animations
    assert anim.name == clip.name
    targets = {(c.target.node, c.target.path) for c in anim.channels}
    assert targets == {(j, "rotation") for j in range(55)} | {(0, "translation"), (r.node(mesh_node_name(clip.name)), "weights")}
    for s in anim.samplers:
        np.testing.assert_array_equal(r.accessor(s.input), clip.times.astype(np.float32))
    # consecutive keys in one hemisphere, including the root's turn through 180 degrees
    for c in anim.channels:
        if c.target.path == "rotation":
            q = r.accessor(anim.samplers[c.sampler].output).astype(np.float64)
            assert np.all(np.einsum("tc,tc->t", q[1:], q[:-1]) > 0)
            np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    # rest: identity rotations, offsets, inverse bind = translation(-rest joint)
    for j in range(55):
        assert g.nodes[j].rotation is None
        np.testing.assert_allclose(g.nodes[j].translation, rig.offsets[j], atol=1e-7)
    ibm = r.accessor(skin.inverseBindMatrices).reshape(55, 4, 4).transpose(0, 2, 1)
    np.testing.assert_allclose(ibm[:, :3, 3], -rig.rest_joints, atol=1e-7)
    np.testing.assert_array_equal(ibm[:, :3, :3], np.tile(np.eye(3), (55, 1, 1)))
    prim = g.meshes[0].primitives[0]
    assert g.meshes[0].extras["targetNames"] == [f"expression_{e:02d}" for e in range(10)]
    assert g.meshes[0].weights == [0.0] * 10
    w = r.accessor(prim.attributes.WEIGHTS_0)
    assert np.all(np.abs(w.astype(np.float64).sum(1) - 1) < 1e-7)
    # camera: origin, no rotation, the image camera's fov and aspect
    cam_node = g.nodes[r.node(CAMERA_NODE_NAME)]
    assert cam_node.translation is None and cam_node.rotation is None
    persp = g.cameras[cam_node.camera].perspective
    assert persp.yfov == pytest.approx(2 * np.arctan(720 / (2 * 1080.0)), abs=1e-12)
    assert persp.aspectRatio == pytest.approx(1280 / 720 * 1080 / 1100, abs=1e-12)
    assert persp.znear == 0.01 and persp.zfar is None
    assert g.cameras[0].extras["principal_point_offset_px"] == [12.0, -5.0]
    assert "off by (12.000, -5.000) pixels" in g.cameras[0].extras["note"]
    # a centred principal point is said to be one (the note spoke of an offset of (0.000, 0.000), a user trial)
    from wbcap.camera import ImageCamera
    from wbcap.export.gltf import _camera

    note = _camera(ImageCamera.default((1280, 720))).extras["note"]
    assert note.endswith("at the image centre; so is this camera's") and "off by" not in note
    meta = g.scenes[0].extras
    assert g.asset.generator.startswith("wbcap ")
    assert meta["units"] == "metres" and meta["up_axis"] == "y" and meta["fps"] == FPS
    assert meta["first_time_s"] == T0 and meta["num_rows"] == len(clip) and meta["exact"] is False
    assert meta["frame_indices"] == clip.frame_indices.tolist() and meta["valid"] == clip.valid.tolist()
    np.testing.assert_allclose(meta["betas"], clip.betas)


def test_rest_pose_round_trip(setup):
    rig, _, _, files = setup
    r = Reader(files["lbs"])
    joints = np.stack([r.world(j, {})[:3, 3] for j in range(55)])
    np.testing.assert_allclose(joints, rig.rest_joints, atol=1e-6)
    np.testing.assert_allclose(r.vertices(None), rig.rest_vertices, atol=1e-6)


def test_keys_and_between_keys_equal_lbs(setup):
    rig, clip, _, files = setup
    r = Reader(files["lbs"])
    ref = lbs_vertices(rig, clip.poses, clip.transl, clip.expression)
    errors = [np.abs(r.vertices(float(t)) - ref[k]).max() for k, t in enumerate(clip.times)]
    # joints as well: world node positions equal posed_joints
    anim = r.sample(float(clip.times[4]))
    joints = np.stack([r.world(j, anim)[:3, 3] for j in range(55)])
    np.testing.assert_allclose(joints, posed_joints(rig, clip.poses[4:5], clip.transl[4:5])[0], atol=1e-5)
    # between keys 3 and 4 (the root crosses 180 degrees there): slerp / lerp of the keys
    mid = float(clip.times[3] + 0.37 / FPS)
    mid_ref = lbs_vertices(rig, *_slerp_clip(clip, mid))[0]
    mid_err = np.abs(r.vertices(mid) - mid_ref).max()
    log.info("glTF vs LBS: keys max %.2e m, between keys %.2e m", max(errors), mid_err)
    assert max(errors) <= 1e-4 and mid_err <= 1e-4
    # and the mid pose is not simply a key (the check above can tell poses apart)
    assert np.abs(mid_ref - ref[3]).max() > 1e-3


def test_z_up_clip_gives_the_same_file(setup, tmp_path, body_layer):
    rig, clip, exact, files = setup
    path = write_glb(tmp_path / "z.glb", rig, clip.in_world("z"))
    a, b = Reader(files["lbs"]), Reader(path)
    t = float(clip.times[5])
    np.testing.assert_allclose(b.vertices(t), a.vertices(t), atol=1e-5)
    # exact vertices are taken in the given clip's world
    z = clip.in_world("z")
    path = write_glb(tmp_path / "z_exact.glb", rig, z, exact_vertices=smplx_rows(body_layer, z))
    np.testing.assert_allclose(Reader(path).vertices(t), exact[5], atol=1e-4)


def test_smplx_rows_is_smplx(setup, body_dir, body_layer):
    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer

    _, clip, exact, _ = setup
    assert not body_layer.flat_hand_mean  # so the hand-mean conversion is exercised
    flat = SMPLXLayer.from_file(find_body_model("neutral", body_dir), flat_hand_mean=True, dtype=torch.float64)
    p = torch.as_tensor(clip.poses.reshape(len(clip), 165))
    n = len(clip)
    direct = flat(betas=torch.as_tensor(np.tile(clip.betas, (n, 1))), global_orient=p[:, :3], body_pose=p[:, 3:66],
                  jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72], reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120],
                  right_hand_pose=p[:, 120:165], expression=torch.as_tensor(clip.expression),
                  transl=torch.as_tensor(clip.transl)).vertices.numpy()
    np.testing.assert_allclose(exact, direct, atol=2e-5)  # float32 layer vs float64 layer
    joints = flat(betas=torch.as_tensor(np.tile(clip.betas, (n, 1))), global_orient=p[:, :3], body_pose=p[:, 3:66],
                  jaw_pose=p[:, 66:69], leye_pose=p[:, 69:72], reye_pose=p[:, 72:75], left_hand_pose=p[:, 75:120],
                  right_hand_pose=p[:, 120:165], expression=torch.as_tensor(clip.expression),
                  transl=torch.as_tensor(clip.transl)).joints.numpy()
    np.testing.assert_allclose(smplx_rows(body_layer, clip, joints=True, batch=3), joints, atol=2e-5)  # (the csv's)
    # the world: the z-up clip's mesh is the y-up mesh turned back
    z = smplx_rows(body_layer, clip.in_world("z"))
    np.testing.assert_allclose(z @ YUP_FROM_ZUP.T, exact, atol=2e-5)


def test_exact_option_equals_smplx(setup):
    rig, clip, exact, files = setup
    r = Reader(files["exact"])
    names = r.g.meshes[0].extras["targetNames"]
    assert names[10:] == [f"exact_row_{t:05d}" for t in range(len(clip))]
    assert r.g.scenes[0].extras["exact"] is True
    err = max(np.abs(r.vertices(float(t)) - exact[k]).max() for k, t in enumerate(clip.times))
    lbs = lbs_vertices(rig, clip.poses, clip.transl, clip.expression)
    gap = np.linalg.norm(lbs - exact, axis=-1)
    log.info("exact file vs SMPL-X: max %.2e m; LBS-only vs SMPL-X on this clip: max %.2f mm, mean %.2f mm",
             err, 1e3 * gap.max(), 1e3 * gap.mean())
    print(f"\nexact file vs SMPL-X: max {err:.2e} m; LBS-only file vs SMPL-X: "
          f"max {1e3 * gap.max():.2f} mm, mean {1e3 * gap.mean():.3f} mm")
    assert err <= 1e-4
    assert gap.max() > 2e-3  # the correctives + expression joints matter here, so the check above can fail
    # the photo: static pose, default weights
    p = Reader(files["photo_exact"])
    assert not p.g.animations
    np.testing.assert_allclose(p.vertices(None), exact[0], atol=1e-4)


def test_photo_is_static(setup):
    rig, clip, _, files = setup
    r = Reader(files["photo"])
    assert not r.g.animations
    np.testing.assert_allclose(r.g.meshes[0].weights, clip.expression[0].astype(np.float32))
    ref = lbs_vertices(rig, clip.poses[:1], clip.transl[:1], clip.expression[:1])[0]
    np.testing.assert_allclose(r.vertices(None), ref, atol=1e-5)


def test_bytes_per_row(setup, tmp_path):
    rig, clip, exact, files = setup
    short = replace(clip, times=clip.times[:4], poses=clip.poses[:4], transl=clip.transl[:4],
                    expression=clip.expression[:4], valid=clip.valid[:4], frame_indices=clip.frame_indices[:4])
    a = write_glb(tmp_path / "a.glb", rig, short, camera=CAMERA).stat().st_size
    b = write_glb(tmp_path / "b.glb", rig, short, exact_vertices=exact[:4]).stat().st_size
    lbs_row = (files["lbs"].stat().st_size - a) / 4
    exact_row = (files["exact"].stat().st_size - b) / 4
    print(f"\nbytes per row: {lbs_row:.0f} (LBS), {exact_row:.0f} (exact); 8-row files {files['lbs'].stat().st_size}"
          f" / {files['exact'].stat().st_size} bytes")
    v = rig.rest_vertices.shape[0]
    assert 55 * 16 < lbs_row < 55 * 16 + 300  # quaternions + translation + weights + time + metadata
    # + the row's residual target (float32 VEC3), its JSON, and one more weight in every row
    assert 12 * v + lbs_row < exact_row < 12 * v + lbs_row + 600


def test_bad_inputs(setup, tmp_path):
    rig, clip, exact, _ = setup
    with pytest.raises(ValueError, match="other betas"):
        write_glb(tmp_path / "x.glb", rig, replace(clip, betas=clip.betas + 0.1))
    with pytest.raises(ValueError, match="strictly increasing"):
        write_glb(tmp_path / "x.glb", rig, replace(clip, times=clip.times[::-1].copy()))
    with pytest.raises(ValueError, match="exact_vertices must be"):
        write_glb(tmp_path / "x.glb", rig, clip, exact_vertices=exact[:2])
    assert not list(tmp_path.iterdir())  # nothing half-written


def _validate(path: Path) -> dict:
    reason = node_packages_missing("gltf-validator")
    if reason:
        skip_or_fail(f"{reason} (the Khronos glTF validator)")
    out = subprocess.run([shutil.which("node"), str(JS / "validate_gltf.mjs"), str(path)], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", ["lbs", "exact", "photo", "photo_exact", "root"])
def test_khronos_validator(setup, name):
    report = _validate(setup[3][name])
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    assert report["info"]["animationCount"] == (0 if name.startswith("photo") else 1)
    assert report["info"]["maxInfluences"] == 4
