"""SMPLXParams: construction, mapping access, batch rows, conversions, full_pose order against
smplx, the layer on matrices (== axis-angle == smplx), and the file names' one mapping."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from wbcap.body import joints as J
from wbcap.body.params import FIELDS, POSE_FIELDS, SMPLXParams
from wbcap.body.rotations import axis_angle_to_matrix
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.io.param_names import FILE_KEYS, NETWORK_FILE_KEYS, from_file_record, to_file_record
from wbcap.testing.synthetic_body import make_smplx_params


@pytest.fixture(scope="module")
def model_file(body_dir: Path) -> Path:
    return body_dir / "smplx" / "SMPLX_NEUTRAL.npz"


def _smplx_kwargs() -> dict:
    return dict(gender="neutral", use_pca=False, use_face_contour=True, num_betas=10, num_expression_coeffs=10)


@pytest.fixture(scope="module")
def reference(body_dir: Path) -> torch.nn.Module:
    return smplx.create(str(body_dir), "smplx", flat_hand_mean=False, **_smplx_kwargs())


def _params(batch: int = 3, seed: int = 0) -> SMPLXParams:
    return SMPLXParams.from_mapping(make_smplx_params(batch, seed=seed))


# -- the record -------------------------------------------------------------------------------------


def test_fields_shapes_and_defaults():
    raw = make_smplx_params(2, seed=1)
    p = SMPLXParams.from_mapping(raw)
    assert p.rotation == "axis_angle" and p.batch_size == 2 and p.dtype == torch.float32
    assert list(p.keys()) == list(FIELDS) and list(dict(p)) == list(FIELDS)
    for k in FIELDS:
        assert p[k] is getattr(p, k) and torch.equal(p[k], raw[k]) and k in p
    assert p.get("nope") is None and p.get("betas") is p.betas and "nope" not in p
    assert [k for k, _ in p.items()] == list(FIELDS) and len(p.values()) == len(FIELDS)
    with pytest.raises(KeyError):
        p["root_pose"]  # file names are not SMPL-X names
    # (B, J, 3) axis-angle is flattened; eyes and transl default to rest / zero
    q = SMPLXParams(betas=raw["betas"], global_orient=raw["global_orient"][:, None], body_pose=raw["body_pose"].reshape(2, 21, 3),
                    left_hand_pose=raw["left_hand_pose"], right_hand_pose=raw["right_hand_pose"],
                    jaw_pose=raw["jaw_pose"], expression=raw["expression"])  # fmt: skip
    assert q.global_orient.shape == (2, 3) and q.body_pose.shape == (2, 63)
    assert torch.equal(q.leye_pose, torch.zeros(2, 3)) and torch.equal(q.transl, torch.zeros(2, 3))
    m = q.to_matrix()
    assert m.rotation == "matrix" and m.body_pose.shape == (2, 21, 3, 3) and m.jaw_pose.shape == (2, 1, 3, 3)
    assert torch.allclose(m.leye_pose, torch.eye(3).expand(2, 1, 3, 3))
    # a matrix record made without eyes has them at rest too
    r = dataclasses.replace(m, leye_pose=None, reye_pose=None)
    assert torch.equal(r.reye_pose, torch.eye(3).expand(2, 1, 3, 3))
    r.reye_pose[1].mul_(2)  # (a row of its own: they were stride-0 views, refused by add_ or an optimiser)
    assert torch.equal(r.reye_pose[0], torch.eye(3)[None])
    assert r.index([]).batch_size == 0 and r[[False, False]].body_pose.shape == (0, 21, 3, 3)  # (a batch of none)
    single = dataclasses.replace(m, global_orient=m.global_orient[:, 0])  # (B, 3, 3) is one joint
    assert single.global_orient.shape == (2, 1, 3, 3)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(body_pose=torch.zeros(2, 60)), "body_pose"),
        (dict(betas=torch.zeros(3, 10)), "betas"),
        (dict(transl=torch.zeros(2, 2)), "transl"),
        (dict(jaw_pose=torch.zeros(2, 3, 3)), "jaw_pose"),  # a matrix in an axis-angle record
        (dict(rotation="quaternion"), "rotation"),
    ],
)
def test_bad_shapes_raise(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(_params(2), **change)
    with pytest.raises(ValueError, match="unknown SMPL-X parameter names"):
        SMPLXParams.from_mapping({**make_smplx_params(1), "root_pose": np.zeros(3)})


def test_a_tensor_of_the_fields_shape_is_kept_as_given():
    """A rotation given in its field's shape is stored as it is (the same tensor: a leaf stays
    a leaf, so it can go to an optimiser and gets its gradient); other shapes are reshaped."""
    leaf = torch.zeros(2, 63, requires_grad=True)
    hand = torch.zeros(2, 15, 3, 3) + torch.eye(3)
    p = dataclasses.replace(_params(2), body_pose=leaf)
    assert p.body_pose is leaf and p.body_pose.is_leaf
    torch.optim.Adam([p.body_pose, p.betas.requires_grad_()])  # (refused a view: "can't optimize a non-leaf Tensor")
    m = dataclasses.replace(p.to_matrix(), left_hand_pose=hand)
    assert m.left_hand_pose is hand
    assert dataclasses.replace(p, body_pose=leaf.detach().reshape(2, 21, 3)).body_pose.shape == (2, 63)


def test_rows_to_detach_numpy():
    p = _params(4, seed=2)
    mask = [True, False, True, False]
    # (a negative step: torch's "step must be greater than zero" came through, a user trial)
    for rows, want in ((1, [1]), (-1, [3]), (slice(1, 3), [1, 2]), (slice(None, None, -1), [3, 2, 1, 0]),
                       (slice(3, 0, -2), [3, 1]), (slice(5, None, -3), [3, 0]), ([0, 2], [0, 2]), (torch.tensor([3, 0]), [3, 0]),
                       (np.int64(2), [2]), (torch.tensor(-2), [2]), (np.array([1, 3]), [1, 3]), (np.array(1), [1]),
                       # masks: a bool list or array was taken for the rows 1, 0 (a user trial)
                       (mask, [0, 2]), (np.array(mask), [0, 2]), (torch.tensor(mask), [0, 2]), ([False] * 4, []),
                       ([], []), ((3, 3, -4), [3, 3, 0]), (np.array([1, 2], dtype=object), [1, 2]),
                       (np.array(mask, dtype=object), [0, 2]), (np.array([3, 1], dtype=np.uint64), [3, 1])):
        sub = p[rows]
        assert sub.batch_size == len(want) and sub.rotation == p.rotation
        for k in FIELDS:
            assert torch.equal(sub[k], p[k][want]), (rows, k)
    for bad in (True, 1.0, np.float32(2), torch.tensor(1.0), np.array(True), [0.5, 1.0], [[0, 1]],
                np.array([1.5], dtype=object)):
        with pytest.raises(TypeError, match="rows must be an int, slice, or a list, array or tensor of ints or of bools"):
            p[bad]  # (True took row 1; 1.0 was "'float' object is not iterable")
    for outside, said in ((4, 4), (-5, -5), (np.int64(10), 10), (torch.tensor(7), 7), ([0, 9], 9), ([-6, 1], -6),
                          ([2**70], 2**70), (np.array([2**64 - 1], dtype=np.uint64), 2**64 - 1)):  # (not wrapped)
        with pytest.raises(IndexError, match=f"row {said} is outside the batch of 4"):  # (not torch's own words)
            p[outside]
    with pytest.raises(IndexError, match="a mask of 3 rows for a batch of 4"):
        p[[True, False, True]]
    m = p.to_matrix()
    assert m.index([2]).body_pose.shape == (1, 21, 3, 3)
    d = p.to(torch.float64)
    assert all(v.dtype == torch.float64 for v in d.values()) and d.dtype == torch.float64
    g = dataclasses.replace(p, betas=p.betas.clone().requires_grad_())
    assert g.betas.requires_grad and not g.detach().betas.requires_grad
    arrays = p.numpy()
    assert list(arrays) == list(FIELDS) and arrays["body_pose"].shape == (4, 63)
    assert arrays["betas"].dtype == np.float32


def test_axis_angle_matrix_round_trips():
    p = _params(5, seed=3).to(torch.float64)
    m = p.to_matrix()
    assert p.to_axis_angle() is p and m.to_matrix() is m
    for k in POSE_FIELDS:
        want = axis_angle_to_matrix(p[k].reshape(5, -1, 3))
        torch.testing.assert_close(m[k], want, atol=1e-12, rtol=0)
        orth = m[k] @ m[k].transpose(-1, -2)
        torch.testing.assert_close(orth, torch.eye(3, dtype=torch.float64).expand_as(orth), atol=1e-12, rtol=0)
    back = m.to_axis_angle()
    assert back.rotation == "axis_angle"
    for k in POSE_FIELDS:  # every angle here is below pi, so axis-angle comes back as it was
        assert p[k].reshape(-1, 3).norm(dim=-1).max() < math.pi
        torch.testing.assert_close(back[k], p[k], atol=1e-10, rtol=0)
    for k in ("betas", "expression", "transl"):
        assert back[k] is p[k]


def test_full_pose_is_in_model_order(model_file, body_dir):
    """full_pose(): global, body, jaw, eyes, hands: smplx's full_pose of a flat-hand model, and
    with the hand mean added, smplx's of the default model."""
    raw = make_smplx_params(3, seed=4)
    p = SMPLXParams.from_mapping(raw)
    fp = p.full_pose()
    assert fp.shape == (3, 55, 3)
    assert torch.equal(fp[:, 0], raw["global_orient"]) and torch.equal(fp[:, 1:22].reshape(3, 63), raw["body_pose"])
    assert torch.equal(fp[:, J.SMPLX_JOINT_NAMES.index("Jaw")], raw["jaw_pose"])
    assert torch.equal(fp[:, J.SMPLX_JOINT_NAMES.index("L_Index_1")], raw["left_hand_pose"][:, :3])
    assert torch.equal(fp[:, J.SMPLX_JOINT_NAMES.index("R_Thumb_3")], raw["right_hand_pose"][:, -3:])
    flat = smplx.create(str(body_dir), "smplx", flat_hand_mean=True, **_smplx_kwargs())
    curled = smplx.create(str(body_dir), "smplx", flat_hand_mean=False, **_smplx_kwargs())
    layer = SMPLXLayer.from_file(model_file)
    with torch.no_grad():
        torch.testing.assert_close(flat(**p.layer_kwargs(), return_full_pose=True).full_pose, fp.reshape(3, 165), atol=0, rtol=0)
        theirs = curled(**p.layer_kwargs(), return_full_pose=True).full_pose
    torch.testing.assert_close(theirs, fp.reshape(3, 165) + layer.pose_mean, atol=0, rtol=0)
    # matrices: the same order
    mp = p.to_matrix().full_pose()
    assert mp.shape == (3, 55, 3, 3)
    torch.testing.assert_close(mp, axis_angle_to_matrix(fp), atol=0, rtol=0)


# -- the layer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flat_hand_mean", [False, True])
def test_matrix_path_equals_axis_angle_path_and_smplx(model_file, body_dir, reference, flat_hand_mean):
    raw = make_smplx_params(4, seed=6)
    p = SMPLXParams.from_mapping(raw)
    layer = SMPLXLayer.from_file(model_file, flat_hand_mean=flat_hand_mean)
    ref = reference if not flat_hand_mean else smplx.create(str(body_dir), "smplx", flat_hand_mean=True, **_smplx_kwargs())
    with torch.no_grad():
        by_keywords = layer(**raw)
        aa = layer(p)
        mat = layer(p.to_matrix())
        theirs = ref(**p.layer_kwargs())
    assert torch.equal(aa.vertices, by_keywords.vertices) and torch.equal(aa.joints, by_keywords.joints)
    assert aa.full_pose.shape == (4, 165) and mat.full_pose.shape == (4, 55, 3, 3)
    torch.testing.assert_close(mat.vertices, aa.vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(mat.joints, aa.joints, atol=1e-6, rtol=0)
    torch.testing.assert_close(mat.vertices, theirs.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(mat.joints, theirs.joints, atol=1e-5, rtol=0)
    # the matrices the skinning used are the axis-angle full pose through Rodrigues
    torch.testing.assert_close(mat.full_pose, axis_angle_to_matrix(aa.full_pose.reshape(4, 55, 3)), atol=1e-6, rtol=0)
    rest = layer(SMPLXParams.from_mapping({k: torch.zeros_like(v) for k, v in raw.items()}))
    assert (aa.vertices - rest.vertices).abs().max() > 0.1  # the poses matter


def test_flat_hand_matrix_path_equals_smplx_layer(model_file, body_dir):
    """smplx's own rotation-matrix layer (pose2rot=False, no hand mean) == ours on matrices."""
    ref = smplx.build_layer(str(body_dir), "smplx", **_smplx_kwargs())
    m = _params(3, seed=7).to_matrix()
    layer = SMPLXLayer.from_file(model_file, flat_hand_mean=True)
    with torch.no_grad():
        theirs = ref(**m.layer_kwargs(), return_full_pose=True)
        ours = layer(m)
    torch.testing.assert_close(ours.vertices, theirs.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.joints, theirs.joints, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.full_pose, theirs.full_pose, atol=0, rtol=0)


def test_own_lbs_on_matrices_equals_smplx_lbs_bit_for_bit(body_layer):
    from smplx.lbs import lbs

    from wbcap.body.smplx_layer import _lbs

    L = body_layer
    g = torch.Generator().manual_seed(3)
    betas = torch.randn(3, L.num_betas + L.num_expression, generator=g)
    mats = axis_angle_to_matrix(torch.randn(3, 55, 3, generator=g) * 0.4)
    shapedirs = torch.cat([L.shapedirs, L.expr_dirs], dim=-1)
    args = (betas, mats, L.v_template, shapedirs, L.posedirs, L.J_regressor)
    v_ref, j_ref = lbs(*args, L.parents, L.lbs_weights, pose2rot=False)
    v, j = _lbs(*args, L.parents, (L.chain_order, L.chain_parents, L._chain_bounds), L.lbs_weights, pose2rot=False)
    assert torch.equal(v, v_ref) and torch.equal(j, j_ref)


def test_joint_basis_equals_the_joint_regressor_on_the_shaped_mesh(body_layer):
    """The layer's rest joints from its precomputed basis (template and shape directions through
    the joint regressor) equal smplx's regressor on the shaped mesh within 1e-6 m, for shape and
    expression coefficients alike; the regressor itself is not used then."""
    from wbcap.body.smplx_layer import _lbs

    L = body_layer
    g = torch.Generator().manual_seed(5)
    betas = torch.randn(4, L.num_betas + L.num_expression, generator=g) * 2
    mats = axis_angle_to_matrix(torch.randn(4, 55, 3, generator=g) * 0.4)
    levels = (L.chain_order, L.chain_parents, L._chain_bounds)
    shapedirs = torch.cat([L.shapedirs, L.expr_dirs], dim=-1)
    ref = _lbs(betas, mats, L.v_template, shapedirs, L.posedirs, L.J_regressor, L.parents, levels, L.lbs_weights,
               pose2rot=False)
    basis = _lbs(betas, mats, L.v_template, shapedirs, L.posedirs, torch.zeros_like(L.J_regressor), L.parents,
                 levels, L.lbs_weights, pose2rot=False, joint_basis=(L.J_template, L.J_shapedirs))
    for a, b in zip(ref, basis):
        assert (a - b).abs().max().item() <= 1e-6
    assert (ref[1] - ref[1][:, :1]).abs().max().item() > 0.5  # (joints far apart: a real skeleton)
    root = L.rest_root(betas[:, : L.num_betas])
    rest = torch.einsum("jv,bvc->bjc", L.J_regressor, L.v_template + torch.einsum(
        "bl,vcl->bvc", betas[:, : L.num_betas], L.shapedirs))
    assert (root - rest[:, 0]).abs().max().item() <= 1e-6


def test_chain_levels_group_the_joints_by_depth(body_layer):
    """SMPL-X's 54 non-root joints in 10 depths (pelvis children first, finger tips last), each
    joint after its parent's depth; a tree whose parent comes after its child is refused."""
    from wbcap.body.smplx_layer import chain_levels

    parents = body_layer.parents.tolist()
    order, order_parents, bounds = chain_levels(parents)
    assert sorted(order) == list(range(1, 55)) and len(bounds) == 10 and bounds[-1] == 54
    assert order[:3] == [1, 2, 3] and order_parents == [parents[i] for i in order]
    level = {j: d for d, (a, b) in enumerate(zip((0, *bounds[:-1]), bounds)) for j in order[a:b]}
    assert all(level.get(parents[j], -1) == level[j] - 1 for j in order)
    assert body_layer.chain_order.tolist() == order and body_layer._chain_bounds == bounds
    with pytest.raises(ValueError, match="parent"):
        chain_levels([-1, 2, 0])


def test_layer_call_forms(body_layer):
    p = _params(2, seed=8)
    with pytest.raises(TypeError, match="either"):
        body_layer(p, transl=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="missing SMPL-X parameters: global_orient"):
        body_layer(betas=p.betas)
    with torch.no_grad():
        a = body_layer(p)
        b = body_layer(**p.layer_kwargs())
        c = body_layer(p.to(torch.float64))  # cast to the layer's dtype
    assert torch.equal(a.vertices, b.vertices) and c.vertices.dtype == torch.float32
    torch.testing.assert_close(c.vertices, a.vertices, atol=1e-6, rtol=0)


def test_network_outputs_skin_the_same_on_matrices_as_through_axis_angle(small_config, body_layer):
    """The inference change measured: the network's matrices skinned directly vs the former
    6D -> axis-angle -> Rodrigues path, on random weights and inputs: well under 1e-6 m for the
    body (the translation only adds float32 rounding at its own magnitude)."""
    from wbcap.testing.checkpoints import random_network

    net = random_network(small_config, seed=2)
    x = torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        p = net(x).smplx
        p = dataclasses.replace(p, transl=torch.zeros_like(p.transl))
        mat, aa = body_layer(p), body_layer(p.to_axis_angle())
    assert (mat.vertices - aa.vertices).abs().max() <= 1e-6
    assert (mat.joints - aa.joints).abs().max() <= 1e-6


# -- the file names --------------------------------------------------------------------------------


def test_file_names_map_one_to_one_in_file_order():
    assert list(FILE_KEYS.values()) == ["root_pose", "body_pose", "lhand_pose", "rhand_pose", "jaw_pose", "shape",
                                        "expr", "cam_trans", "leye_pose", "reye_pose"]  # fmt: skip
    assert set(FILE_KEYS) == set(FIELDS)
    assert NETWORK_FILE_KEYS == ("root_pose", "body_pose", "lhand_pose", "rhand_pose", "jaw_pose", "shape", "expr", "cam_trans")


def test_file_record_round_trip():
    p = _params(2, seed=9)
    rec = to_file_record(p, row=1)
    assert list(rec) == list(FILE_KEYS.values())
    assert rec["root_pose"] == [float(v) for v in p.global_orient[1]] and len(rec["lhand_pose"]) == 45
    assert list(to_file_record(p, eyes=False)) == list(NETWORK_FILE_KEYS)
    back = from_file_record(rec)
    assert back.batch_size == 1 and back.rotation == "axis_angle"
    for k in FIELDS:
        assert torch.equal(back[k], p[k][1:2]), k
    # matrices are written as axis-angle; (N, k) arrays read as a batch; eyes/transl optional
    torch.testing.assert_close(torch.tensor(to_file_record(p.to_matrix())["body_pose"]), p.body_pose[0], atol=1e-6, rtol=0)
    batch = from_file_record({key: p[f].numpy() for f, key in FILE_KEYS.items() if f not in ("transl", "leye_pose", "reye_pose")})
    assert batch.batch_size == 2 and torch.equal(batch.transl, torch.zeros(2, 3))
    with pytest.raises(KeyError, match="expr") as exc:
        from_file_record({k: v for k, v in rec.items() if k != "expr"})
    assert str(exc.value) == "not SMPL-X parameters of a wbcap file: missing expr"  # (not in quotes)
    # a wbcap error too, as every bad input (`except WbcapError` around reading a file: an API user's trial)
    from wbcap.errors import InputError

    assert isinstance(exc.value, InputError)
    # a diverged fit's NaN is refused, naming the key (it posed a mesh of NaN: a library user's trial)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^body_pose holds NaN or infinity: not SMPL-X parameters to pose$") as exc:
            from_file_record(dict(rec, body_pose=[bad] * 63))
        assert isinstance(exc.value, InputError)
    for bad in (["x"] * 63, {"a": 1}, [[0.0], [0.0, 1.0]]):  # (numpy's own message named no key)
        with pytest.raises(InputError, match="^body_pose is not a list of numbers: not SMPL-X parameters to pose$"):
            from_file_record(dict(rec, body_pose=bad))
    # a wrong count of numbers: a wbcap error too (a plain ValueError escaped `except WbcapError`: an API trial)
    with pytest.raises(InputError, match=r"body_pose .*\(1, 63\), got \(1, 60\): not SMPL-X parameters of a wbcap file"):
        from_file_record(dict(rec, body_pose=[0.0] * 60))


def test_pose_slices_are_where_full_pose_puts_each_field():
    """The one table of the 165-wide full pose (AMASS ``poses``) that the AMASS writer, the
    clip's SMPL-X call, the hand means and AGORA's files read: known answers, and each field's
    columns of :meth:`SMPLXParams.full_pose` are that field."""
    from wbcap.body.params import SMPLXParams
    from wbcap.body.pose_layout import FULL_POSE_JOINTS, POSE_SLICES

    assert FULL_POSE_JOINTS == 55
    assert {k: (s.start, s.stop) for k, s in POSE_SLICES.items()} == {
        "global_orient": (0, 3), "body_pose": (3, 66), "jaw_pose": (66, 69), "leye_pose": (69, 72),
        "reye_pose": (72, 75), "left_hand_pose": (75, 120), "right_hand_pose": (120, 165)}
    g = torch.Generator().manual_seed(0)
    fields = {name: torch.randn(2, s.stop - s.start, generator=g) for name, s in POSE_SLICES.items()}
    p = SMPLXParams(betas=torch.zeros(2, 10), expression=torch.zeros(2, 10), **fields)
    full = p.full_pose().reshape(2, 165)
    for name, columns in POSE_SLICES.items():
        torch.testing.assert_close(full[:, columns], fields[name], rtol=0, atol=0)
