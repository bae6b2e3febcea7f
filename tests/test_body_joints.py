"""Hand4Whole joint sets: counts, index maps by name, flip pairs, PositionNet subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from smplx.joint_names import JOINT_NAMES as SMPLX_PKG_NAMES
from smplx.vertex_ids import vertex_ids

from wbcap.body import joints as J


def _swap_side(name: str) -> str:
    if name.startswith("L_"):
        return "R_" + name[2:]
    if name.startswith("R_"):
        return "L_" + name[2:]
    return name


def test_counts_and_unique_names() -> None:
    assert len(J.SMPLX_JOINT_NAMES) == J.SMPLX_JOINT_NUM == 55
    assert len(J.SMPLX_OUTPUT_JOINT_NAMES) == J.SMPLX_OUTPUT_JOINT_NUM == 144
    assert len(J.ORIG_JOINT_NAMES) == J.ORIG_JOINT_NUM == 53
    assert len(J.JOINT_NAMES) == J.JOINT_NUM == len(J.JOINT_IDX) == 137
    assert len(J.POS_JOINT_NAMES) == J.POS_JOINT_NUM == 65
    assert len(J.SMPLX_PARENTS) == 55
    for names in (J.SMPLX_OUTPUT_JOINT_NAMES, J.ORIG_JOINT_NAMES, J.JOINT_NAMES, J.POS_JOINT_NAMES):
        assert len(set(names)) == len(names)
    assert J.JOINT_NAMES[-1] == "Face_72" and J.JOINT_NAMES[65] == "Face_1"


def test_model_joint_names_match_smplx_package() -> None:
    """Our names for the 55 model joints and 21 vertex joints follow smplx's output order."""

    def norm(name: str) -> str:
        return name.lower().replace("_", "").replace("left", "l").replace("right", "r")

    special = {"left_eye_smplhf": "L_Eyeball", "right_eye_smplhf": "R_Eyeball"}
    for ours, theirs in zip(J.SMPLX_OUTPUT_JOINT_NAMES[:76], SMPLX_PKG_NAMES[:76]):
        if theirs in special:
            assert ours == special[theirs]
        elif ours.endswith("_4"):  # finger tips
            assert norm(ours[:-2]) == norm(theirs), (ours, theirs)
        else:
            assert norm(ours) == norm(theirs), (ours, theirs)
    # vertex joints 55..75 come from these vertex ids in this order (smplx VertexJointSelector)
    keys = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
            "RSmallToe", "RHeel"] + [s + f for s in "lr" for f in ("thumb", "index", "middle", "ring", "pinky")]  # fmt: skip
    assert len(keys) == 21 and all(k in vertex_ids["smplx"] for k in keys)


def test_joint_idx_maps_names_consistently() -> None:
    # body and hand joints: the 137-set name is the name of the output joint it indexes
    for i in range(65):
        assert J.SMPLX_OUTPUT_JOINT_NAMES[J.JOINT_IDX[i]] == J.JOINT_NAMES[i], i
    # the model joints among the body part are exactly the first-22 SMPL-X joints they name
    for i in J.JOINT_PART["body"]:
        name = J.JOINT_NAMES[i]
        if name in J.SMPLX_JOINT_NAMES[:22]:
            assert J.JOINT_IDX[i] == J.SMPLX_JOINT_NAMES.index(name)
    assert J.JOINT_IDX[:25] == (0, 1, 2, 4, 5, 7, 8, 12, 16, 17, 18, 19, 20, 21,
                                60, 61, 62, 63, 64, 65, 59, 58, 57, 56, 55)  # fmt: skip
    # face: jaw, head, the two eye vertices, then the 51 + 17 landmarks in order
    face = J.JOINT_IDX[65:]
    assert face[:4] == (22, 15, 57, 56)
    assert face[4:] == tuple(range(76, 144))
    assert J.SMPLX_OUTPUT_JOINT_NAMES[face[0]] == "Jaw" and J.SMPLX_OUTPUT_JOINT_NAMES[face[2]] == "L_Eye"
    assert J.JOINT_NAMES[J.ROOT_JOINT_IDX] == "Pelvis" and J.JOINT_NAMES[J.NECK_IDX] == "Neck"
    assert J.JOINT_NAMES[J.LWRIST_IDX] == "L_Wrist" and J.JOINT_NAMES[J.RWRIST_IDX] == "R_Wrist"
    for name, idx in J.J_REGRESSOR_IDX.items():
        assert J.SMPLX_JOINT_NAMES[idx] == {"pelvis": "Pelvis", "lwrist": "L_Wrist",
                                             "rwrist": "R_Wrist", "neck": "Neck"}[name]  # fmt: skip


def test_parts() -> None:
    assert J.JOINT_PART["body"] == range(0, 25) and J.JOINT_PART["face"] == range(65, 137)
    assert J.JOINT_PART["lhand"] == range(25, 45) and J.JOINT_PART["rhand"] == range(45, 65)
    assert J.JOINT_PART["hand"] == range(25, 65)
    assert all(J.JOINT_NAMES[i].startswith("L_") for i in J.JOINT_PART["lhand"])
    assert all(J.JOINT_NAMES[i].startswith("R_") for i in J.JOINT_PART["rhand"])
    assert J.ORIG_JOINT_PART["body"] == range(0, 22) and J.ORIG_JOINT_PART["face"] == range(52, 53)
    assert J.ORIG_JOINT_PART["lhand"] == range(22, 37) and J.ORIG_JOINT_PART["rhand"] == range(37, 52)
    assert J.ORIG_JOINT_NAMES[52] == "Jaw"
    assert dict(J.POS_JOINT_PART) == {k: J.JOINT_PART[k] for k in ("body", "lhand", "rhand", "hand")}


def test_orig_set_maps_to_model_joints() -> None:
    for i, name in enumerate(J.ORIG_JOINT_NAMES):
        assert J.SMPLX_JOINT_NAMES[J.ORIG_TO_SMPLX_IDX[i]] == name
    assert J.ORIG_JOINT_NAMES[:22] == J.SMPLX_JOINT_NAMES[:22]


def test_flip_pairs_swap_left_and_right() -> None:
    for a, b in J.ORIG_FLIP_PAIRS:
        assert J.ORIG_JOINT_NAMES[b] == _swap_side(J.ORIG_JOINT_NAMES[a]) != J.ORIG_JOINT_NAMES[a]
    assert len(J.ORIG_FLIP_PAIRS) == 8 + 15
    named = [(a, b) for a, b in J.FLIP_PAIRS if b < 65]
    assert len(named) == 11 + 20
    for a, b in named:
        assert J.JOINT_NAMES[b] == _swap_side(J.JOINT_NAMES[a]) != J.JOINT_NAMES[a]
    flat = [i for pair in J.FLIP_PAIRS for i in pair]
    assert len(flat) == len(set(flat)) and all(0 <= i < 137 for i in flat)
    assert all(a < b for a, b in J.FLIP_PAIRS)
    assert (67, 68) in J.FLIP_PAIRS and (120, 136) in J.FLIP_PAIRS  # eyes, outer contour


def test_parents_are_the_smplx_tree() -> None:
    p = J.SMPLX_PARENTS
    names = J.SMPLX_JOINT_NAMES
    assert p[0] == -1 and all(0 <= p[i] < i for i in range(1, 55))
    assert names[p[names.index("L_Wrist")]] == "L_Elbow"
    assert names[p[names.index("Jaw")]] == "Head" and names[p[names.index("R_Eyeball")]] == "Head"
    assert names[p[names.index("L_Thumb_1")]] == "L_Wrist" and names[p[names.index("R_Pinky_3")]] == "R_Pinky_2"
    assert names[p[names.index("L_Collar")]] == "Spine_3"


def test_positionnet_set_and_mcp() -> None:
    assert J.L_MCP == (4, 8, 12, 16) and J.R_MCP == (4, 8, 12, 16)
    lhand = [J.POS_JOINT_NAMES[i] for i in J.POS_JOINT_PART["lhand"]]
    rhand = [J.POS_JOINT_NAMES[i] for i in J.POS_JOINT_PART["rhand"]]
    assert [lhand[i] for i in J.L_MCP] == ["L_Index_1", "L_Middle_1", "L_Ring_1", "L_Pinky_1"]
    assert [rhand[i] for i in J.R_MCP] == ["R_Index_1", "R_Middle_1", "R_Ring_1", "R_Pinky_1"]
    for i, name in enumerate(J.POS_JOINT_NAMES):
        assert J.JOINT_NAMES[J.POS_TO_JOINT_IDX[i]] == name


def test_reduce_joint_set() -> None:
    joints = torch.arange(2 * 137 * 3, dtype=torch.float32).reshape(2, 137, 3)
    out = J.reduce_joint_set(joints)
    assert out.shape == (2, 65, 3)
    for i, name in enumerate(J.POS_JOINT_NAMES):
        assert torch.equal(out[:, i], joints[:, J.JOINT_NAMES.index(name)])
    assert J.reduce_joint_set(joints[..., :2]).shape == (2, 65, 2)


def test_tables_are_immutable() -> None:
    for table in (J.JOINT_PART, J.POS_JOINT_PART, J.ORIG_JOINT_PART, J.J_REGRESSOR_IDX):
        try:
            table["x"] = 1  # type: ignore[index]
        except TypeError:
            continue
        raise AssertionError("mapping is writable")
    assert isinstance(J.JOINT_IDX, tuple) and isinstance(J.FLIP_PAIRS, tuple)


def test_hand_21_is_openposes_hand_order():
    """A gesture researcher's trial: the 21 keypoints a hand in OpenPose's (and MediaPipe's) order,
    wrist, then thumb, index, middle, ring, pinky from base to tip."""
    assert J.HAND_21["left"] == (12, *range(25, 45)) and J.HAND_21["right"] == (13, *range(45, 65))
    # they index a person's joints as the README writes it (`joints[HAND_21["left"]]` raised IndexError: a docs audit)
    joints = np.arange(137 * 3, dtype=np.float32).reshape(137, 3)
    assert joints[list(J.HAND_21["left"])].shape == (21, 3)
    assert np.array_equal(joints[list(J.HAND_21["right"])][0], joints[13])
    assert torch.as_tensor(joints)[list(J.HAND_21["left"])].shape == (21, 3)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert 'people[k].joints[list(wbcap.body.joints.HAND_21["left"])]' in readme
    with pytest.raises(TypeError):
        J.HAND_21["left"] = ()  # type: ignore[index]  # (read-only)
    for side, s in (("left", "L"), ("right", "R")):
        names = [J.JOINT_NAMES[i] for i in J.HAND_21[side]]
        assert names[0] == f"{s}_Wrist" and names[1:5] == [f"{s}_Thumb_{k}" for k in range(1, 5)]
        assert names[17:] == [f"{s}_Pinky_{k}" for k in range(1, 5)]


def test_the_readmes_head_orientation_turns_the_face_as_smplx_does(body_dir) -> None:
    """The README's recipe (root, then SMPL-X joints 3, 6, 9, 12, 15, each relative to its parent):
    the head's global rotation it gives turns the rest eyes-from-head vectors (the eyeball joints,
    children of the head) into plain smplx's posed ones (a gesture researcher's trial found no
    recipe for where a person looks)."""
    import smplx
    from scipy.spatial.transform import Rotation as R

    rng = np.random.default_rng(4)
    p = {"root_pose": [np.pi, 0.2, 0.1], "body_pose": list(rng.normal(0, 0.15, 63))}
    p["body_pose"][3 * 14:3 * 15] = [0.1, 0.5, 0.0]  # (the head: turned about 30 degrees)
    head = R.from_rotvec(p["root_pose"])
    for j in (3, 6, 9, 12, 15):  # (as written in the README)
        head = head * R.from_rotvec(np.asarray(p["body_pose"][3 * (j - 1):3 * j]))
    model = smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, num_betas=10)
    eyes = [SMPLX_PKG_NAMES.index(n) for n in ("left_eye_smplhf", "right_eye_smplhf")]
    with torch.no_grad():
        rest = model().joints[0].double().numpy()
        posed = model(global_orient=torch.tensor([p["root_pose"]], dtype=torch.float32),
                      body_pose=torch.tensor([p["body_pose"]], dtype=torch.float32)).joints[0].double().numpy()
    want = posed[eyes] - posed[15]
    np.testing.assert_allclose(head.apply(rest[eyes] - rest[15]), want, atol=1e-5)
    assert np.linalg.norm(want, axis=1).min() > 0.05
    wrong = R.from_rotvec(p["root_pose"]) * R.from_rotvec(np.asarray(p["body_pose"][42:45]))  # (the head's own alone)
    assert np.abs(wrong.apply(rest[eyes] - rest[15]) - want).max() > 1e-2
    facing = R.from_rotvec([np.pi, 0, 0]).apply([0.0, 0.0, 1.0])  # (a body facing the camera, rest pose)
    np.testing.assert_allclose(facing, [0.0, 0.0, -1.0], atol=1e-12)
    # its yaw, pitch and roll are --export angles' (a trial found the camera-axes Euler angles at 180°
    # for a face looking into the camera)
    from wbcap.body.joint_angles import angle_names, joint_angles
    from wbcap.camera import ZUP_FROM_OPENCV

    turn = R.from_rotvec([np.pi, 0.0, 0.0]).inv() * head  # (as written in the README)
    readme = turn.as_euler("YXZ", degrees=True) * [1, -1, -1]
    poses = np.zeros((1, 55, 3))
    poses[0, 0] = (R.from_matrix(np.asarray(ZUP_FROM_OPENCV)) * R.from_rotvec(p["root_pose"])).as_rotvec()
    poses[0, 1:22] = np.reshape(p["body_pose"], (21, 3))
    names = angle_names()
    csv = joint_angles(poses)[0, [names.index(f"head_{m}") for m in ("yaw_left", "pitch_up", "roll_left")]]
    np.testing.assert_allclose(readme, csv, atol=1e-6)
    assert np.abs(readme).max() > 5 and np.abs(readme).max() < 90  # (turned, and not read across the half turn)
