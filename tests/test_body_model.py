"""SMPL-X files and layer: the synthetic model, our forward == smplx's, safe loading, search order."""

from __future__ import annotations

import hashlib
import operator
import pickle
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import smplx
import torch
from smplx.vertex_ids import vertex_ids

from wbcap.body import joints as J
from wbcap.body.model_files import find_body_model, load_body_model_data
from wbcap.body.params import SMPLXParams
from wbcap.body.smplx_layer import SMPLXLayer, SMPLXOutput, joints137
from wbcap.errors import ModelFileError
from wbcap.testing.synthetic_body import make_smplx_params, write_synthetic_smplx

VIDS = vertex_ids["smplx"]


@pytest.fixture(scope="module")
def model_file(body_dir: Path) -> Path:
    return body_dir / "smplx" / "SMPLX_NEUTRAL.npz"


@pytest.fixture(scope="module")
def raw(model_file: Path) -> dict[str, np.ndarray]:
    with np.load(model_file, allow_pickle=True) as z:  # our own trusted test file
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def reference(body_dir: Path) -> torch.nn.Module:
    return smplx.create(
        str(body_dir), "smplx", gender="neutral", use_pca=False, use_face_contour=True,
        flat_hand_mean=False, num_betas=10, num_expression_coeffs=10,
    )  # fmt: skip


def _forward(layer: SMPLXLayer, params: dict[str, torch.Tensor]) -> SMPLXOutput:
    with torch.no_grad():
        return layer(**params)


def _rest(layer: SMPLXLayer, batch: int = 1) -> SMPLXOutput:
    params = {k: torch.zeros_like(v) for k, v in make_smplx_params(batch).items()}
    return _forward(layer, params)


class _Trap:
    """Unpickling this raises ZeroDivisionError, so any unpickle of it is detected."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (operator.truediv, (1, 0))


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------------
# The synthetic model file
# ------------------------------------------------------------------------------------------------
def test_synthetic_file_has_the_smplx_format(raw: dict[str, np.ndarray]) -> None:
    assert raw["v_template"].shape == (10475, 3) and raw["v_template"].dtype == np.float32
    assert raw["f"].shape == (20908, 3) and raw["f"].dtype == np.int32
    assert raw["f"].min() == 0 and raw["f"].max() == 10474
    assert len(np.unique(raw["f"])) == 10475  # every vertex is used
    assert raw["shapedirs"].shape == (10475, 3, 20)
    assert raw["posedirs"].shape == (10475, 3, 486) and np.abs(raw["posedirs"]).max() > 1e-4
    assert raw["J_regressor"].shape == (55, 10475)
    np.testing.assert_allclose(raw["J_regressor"].sum(1), 1.0, atol=1e-5)
    assert raw["J_regressor"].min() >= 0
    assert raw["weights"].shape == (10475, 55) and raw["weights"].min() >= 0
    np.testing.assert_allclose(raw["weights"].sum(1), 1.0, atol=1e-5)
    assert (raw["weights"] > 0).sum(1).max() <= 4
    kt = raw["kintree_table"]
    assert kt.dtype == np.int64 and kt[0, 0] == 4294967295
    assert kt[0, 1:].tolist() == list(J.SMPLX_PARENTS[1:]) and kt[1].tolist() == list(range(55))
    for side in "lr":
        assert raw[f"hands_components{side}"].shape == (45, 45) and raw[f"hands_mean{side}"].shape == (45,)
        assert raw[f"hands_coeffs{side}"].shape[1] == 45
    assert raw["lmk_faces_idx"].shape == (51,) and raw["lmk_faces_idx"].dtype == np.int64
    assert raw["lmk_bary_coords"].shape == (51, 3)
    assert raw["dynamic_lmk_faces_idx"].shape == (79, 17) and raw["dynamic_lmk_faces_idx"].dtype == np.int64
    assert raw["dynamic_lmk_bary_coords"].shape == (79, 17, 3)
    np.testing.assert_allclose(raw["dynamic_lmk_bary_coords"].sum(-1), 1.0, atol=1e-6)
    assert raw["ft"].shape == (20908, 3) and raw["vt"].shape[1] == 2
    for key in ("joint2num", "part2num"):
        assert raw[key].dtype == object and isinstance(raw[key].item(), dict)
    assert raw["joint2num"].item()["pelvis"] == 0


def test_synthetic_body_is_human_shaped(raw: dict[str, np.ndarray]) -> None:
    v = raw["v_template"].astype(np.float64)
    height = v[:, 1].max() - v[:, 1].min()
    span = v[:, 0].max() - v[:, 0].min()
    assert 1.6 < height < 1.8 and 1.5 < span < 1.9  # T-pose: arm span ~ height
    assert v[:, 2].max() - v[:, 2].min() < 0.45
    joints = raw["J_regressor"].astype(np.float64) @ v
    y = {n: joints[J.SMPLX_JOINT_NAMES.index(n), 1] for n in J.SMPLX_JOINT_NAMES}
    x = {n: joints[J.SMPLX_JOINT_NAMES.index(n), 0] for n in J.SMPLX_JOINT_NAMES}
    assert y["Head"] > y["Neck"] > y["Spine_3"] > y["Spine_2"] > y["Spine_1"] > y["Pelvis"] > y["L_Knee"] > y["L_Ankle"]
    assert x["L_Wrist"] > x["L_Elbow"] > x["L_Shoulder"] > x["L_Collar"] > 0 > x["R_Collar"]
    assert x["L_Hip"] > 0 > x["R_Hip"] and x["L_Index_3"] > x["L_Index_1"] > x["L_Wrist"]
    for a, b in J.ORIG_FLIP_PAIRS:  # left/right symmetric skeleton
        ja, jb = joints[J.ORIG_TO_SMPLX_IDX[a]], joints[J.ORIG_TO_SMPLX_IDX[b]]
        np.testing.assert_allclose(ja * (-1, 1, 1), jb, atol=1e-5)
    # fixed smplx vertex ids sit on the right places (y up, facing +z, subject's left at +x)
    head_top = v[:, 1].max()
    for key in ("nose", "leye", "reye", "lear", "rear"):
        assert head_top - 0.2 < v[VIDS[key], 1] < head_top
    assert v[VIDS["nose"], 2] > v[VIDS["leye"], 2] > v[VIDS["lear"], 2]
    assert v[VIDS["leye"], 0] > 0 > v[VIDS["reye"], 0] and v[VIDS["lear"], 0] > 0 > v[VIDS["rear"], 0]
    for side, sign in (("l", 1), ("r", -1)):
        tips = np.stack([v[VIDS[side + f]] for f in ("thumb", "index", "middle", "ring", "pinky")])
        assert np.all(sign * tips[:, 0] > 0.7)  # at the end of the arm
        assert tips[0, 2] > tips[1, 2] > tips[2, 2] > tips[3, 2] > tips[4, 2]  # thumb in front
    for side, sign in (("L", 1), ("R", -1)):
        toe, heel = v[VIDS[side + "BigToe"]], v[VIDS[side + "Heel"]]
        assert sign * toe[0] > 0 and toe[1] < -1.1 and toe[2] > heel[2] + 0.2
        assert abs(v[VIDS[side + "SmallToe"], 0]) > abs(toe[0])  # big toe is medial


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_synthetic_model_is_deterministic(tmp_path: Path, model_file: Path) -> None:
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    again = write_synthetic_smplx(tmp_path / "a") / "smplx" / "SMPLX_NEUTRAL.npz"
    assert digest(again) == digest(model_file)
    other = write_synthetic_smplx(tmp_path / "b", seed=1) / "smplx" / "SMPLX_NEUTRAL.npz"
    assert digest(other) != digest(model_file)


def test_make_smplx_params_is_deterministic() -> None:
    a, b = make_smplx_params(3, seed=7), make_smplx_params(3, seed=7)
    assert set(a) == {"betas", "expression", "global_orient", "body_pose", "left_hand_pose",
                      "right_hand_pose", "jaw_pose", "leye_pose", "reye_pose", "transl"}  # fmt: skip
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == torch.float32 for k in a)
    assert a["body_pose"].shape == (3, 63) and a["betas"].shape == (3, 10)
    assert not torch.equal(a["body_pose"], make_smplx_params(3, seed=8)["body_pose"])


# ------------------------------------------------------------------------------------------------
# The layer against smplx
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_layer_equals_smplx(body_layer: SMPLXLayer, reference: torch.nn.Module, batch: int) -> None:
    params = make_smplx_params(batch, seed=batch)
    ours = _forward(body_layer, params)
    with torch.no_grad():
        ref = reference(**params, return_full_pose=True)
    assert ours.vertices.shape == (batch, 10475, 3) and ours.joints.shape == (batch, 144, 3)
    assert ours.full_pose.shape == (batch, 165)
    torch.testing.assert_close(ours.vertices, ref.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.joints, ref.joints, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.full_pose, ref.full_pose, atol=1e-6, rtol=0)
    torch.testing.assert_close(joints137(ref), joints137(ours), atol=1e-5, rtol=0)  # (smplx's output taken too)
    # the comparison is not trivial: the poses move the mesh and every part of the model is used
    rest = _rest(body_layer, batch)
    assert (ours.vertices - rest.vertices).norm(dim=-1).mean() > 0.1
    # vertex joints are the fixed vertices; landmarks lie on the head
    for k, key in enumerate(["nose", "reye", "leye", "rear", "lear"]):
        torch.testing.assert_close(ours.joints[:, 55 + k], ours.vertices[:, VIDS[key]], atol=0, rtol=0)
    head = ours.joints[:, J.SMPLX_JOINT_NAMES.index("Head")]
    assert (ours.joints[:, 76:] - head[:, None]).norm(dim=-1).max() < 0.25


def test_layer_with_body_pose_as_joints_and_float64(body_layer: SMPLXLayer, model_file: Path) -> None:
    params = make_smplx_params(2, seed=11)
    ours = _forward(body_layer, params)
    alt = dict(params, body_pose=params["body_pose"].reshape(2, 21, 3))
    torch.testing.assert_close(_forward(body_layer, alt).vertices, ours.vertices, atol=0, rtol=0)
    layer64 = SMPLXLayer.from_file(model_file).to(torch.float64)  # buffers move with .to()
    out64 = _forward(layer64, {k: v.double() for k, v in params.items()})
    assert out64.vertices.dtype == torch.float64 and layer64.faces_tensor.dtype == torch.long
    torch.testing.assert_close(out64.vertices.float(), ours.vertices, atol=2e-5, rtol=0)


def test_the_layer_takes_a_mapping_an_empty_batch_and_names_a_parameter_on_another_device(
        body_layer: SMPLXLayer) -> None:
    """A library user's trial: ``body(dict(p))`` said "missing" every parameter (the dict was
    bound to betas); an empty batch raised an IndexError from inside; a parameter on another
    device gave torch's message, naming none."""
    p = SMPLXParams.from_mapping(make_smplx_params(3, seed=4))
    whole = body_layer(p)
    torch.testing.assert_close(body_layer(dict(p)).vertices, whole.vertices, atol=0, rtol=0)
    assert p[[]].to_matrix().to_axis_angle().body_pose.shape == (0, 63)  # (failed to reshape 0 elements: a review)
    for params, pose_shape in ((p[[]], (0, 165)), (p.to_matrix()[[]], (0, 55, 3, 3))):
        empty = body_layer(params)
        assert (empty.vertices.shape, empty.joints.shape, empty.full_pose.shape) == ((0, 10475, 3), (0, 144, 3),
                                                                                     pose_shape)
        assert empty.vertices.dtype == whole.vertices.dtype
    with pytest.raises(ValueError, match=r"^betas is on meta, the SMPL-X layer on cpu: move the parameters there "
                                         r"first \(params.to\('cpu'\)\)$"):
        body_layer(p.to("meta"))


def test_pose_product_replaces_only_the_pose_corrective_product(body_layer: SMPLXLayer) -> None:
    """pose_product gets the (B, 486) pose features and its result is the offsets: the same
    product given back gives the same mesh bit for bit; a changed one moves the mesh by exactly
    its change (the skinning is linear in the offsets at fixed pose)."""
    params = make_smplx_params(3, seed=5)
    ours = _forward(body_layer, params)
    seen = []

    def same(features: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(features.shape))
        return torch.matmul(features, body_layer.posedirs)

    def scaled(features: torch.Tensor) -> torch.Tensor:
        return torch.matmul(features, body_layer.posedirs) * 1.01

    with torch.no_grad():
        p = SMPLXParams(**params)
        again = body_layer(p, pose_product=same)
        moved = body_layer(p, pose_product=scaled)
    assert seen == [(3, 486)]
    torch.testing.assert_close(again.vertices, ours.vertices, atol=0, rtol=0)
    shift = (moved.vertices - ours.vertices).norm(dim=-1)
    assert 1e-5 < shift.max() < 2e-3  # 1 % of the pose correctives (millimetres at most)


def test_layer_has_only_buffers_and_transl(body_layer: SMPLXLayer, raw: dict[str, np.ndarray]) -> None:
    assert list(body_layer.parameters()) == []
    assert body_layer.state_dict() == {}  # body-model data never ends up in checkpoints
    assert body_layer.faces.dtype == np.int64 and np.array_equal(body_layer.faces, raw["f"])
    assert torch.equal(body_layer.faces_tensor, torch.from_numpy(raw["f"].astype(np.int64)))
    assert body_layer.parents.tolist() == list(J.SMPLX_PARENTS)
    params = make_smplx_params(2, seed=3)
    shift = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.25, -3.0]])
    moved = _forward(body_layer, dict(params, transl=shift))
    still = _forward(body_layer, dict(params, transl=None))
    torch.testing.assert_close(moved.vertices - still.vertices, shift[:, None].expand(2, 10475, 3))
    torch.testing.assert_close(moved.joints - still.joints, shift[:, None].expand(2, 144, 3))
    with pytest.raises(ValueError):
        body_layer(**dict(params, betas=torch.zeros(3, 10)))


def test_hand_mean_is_added(model_file: Path, raw: dict[str, np.ndarray]) -> None:
    layer = SMPLXLayer.from_file(model_file)
    flat = SMPLXLayer.from_file(model_file, flat_hand_mean=True)
    rest, rest_flat = _rest(layer), _rest(flat)
    # full_pose = [global, body 21, jaw, leye, reye, left hand 15, right hand 15]
    np.testing.assert_array_equal(rest.full_pose[0, 75:120].numpy(), raw["hands_meanl"])
    np.testing.assert_array_equal(rest.full_pose[0, 120:].numpy(), raw["hands_meanr"])
    assert torch.count_nonzero(rest.full_pose[0, :75]) == 0 and torch.count_nonzero(rest_flat.full_pose) == 0
    moved = (rest.vertices - rest_flat.vertices)[0].norm(dim=-1)
    on_hands = torch.from_numpy(raw["weights"][:, 25:].sum(1) > 0)
    assert moved[on_hands].max() > 0.005 and moved[~on_hands].max() == 0
    # a flat layer given the mean as hand pose is the curled layer at rest
    params = {k: torch.zeros_like(v) for k, v in make_smplx_params(1).items()}
    params["left_hand_pose"] = torch.from_numpy(raw["hands_meanl"])[None]
    params["right_hand_pose"] = torch.from_numpy(raw["hands_meanr"])[None]
    torch.testing.assert_close(_forward(flat, params).vertices, rest.vertices, atol=1e-6, rtol=0)


def test_flat_hand_mean_equals_smplx(body_dir: Path, model_file: Path) -> None:
    ref = smplx.create(str(body_dir), "smplx", gender="neutral", use_pca=False, use_face_contour=True,
                       flat_hand_mean=True)  # fmt: skip
    params = make_smplx_params(2, seed=5)
    ours = _forward(SMPLXLayer.from_file(model_file, flat_hand_mean=True), params)
    with torch.no_grad():
        theirs = ref(**params)
    torch.testing.assert_close(ours.vertices, theirs.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.joints, theirs.joints, atol=1e-5, rtol=0)


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_full_expression_space_equals_smplx(tmp_path: Path) -> None:
    """A v1.1-style model (400 components): expression dirs come from components 300..309."""
    folder = write_synthetic_smplx(tmp_path, num_components=400, seed=3)
    data = load_body_model_data(find_body_model("neutral", folder))
    layer = SMPLXLayer(data)
    torch.testing.assert_close(layer.expr_dirs, torch.from_numpy(data["shapedirs"][:, :, 300:310]))
    ref = smplx.create(str(folder), "smplx", gender="neutral", use_pca=False, use_face_contour=True,
                       num_betas=10, num_expression_coeffs=10)  # fmt: skip
    params = make_smplx_params(3, seed=9)
    with torch.no_grad():
        theirs = ref(**params)
    ours = _forward(layer, params)
    torch.testing.assert_close(ours.vertices, theirs.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.joints, theirs.joints, atol=1e-5, rtol=0)


def test_joints137_and_flip_pairs_mirror_at_rest(model_file: Path) -> None:
    out = _rest(SMPLXLayer.from_file(model_file, flat_hand_mean=True))  # no pose blend shapes
    j137 = joints137(out)
    assert j137.shape == (1, 137, 3)
    assert torch.equal(j137, out.joints[:, list(J.JOINT_IDX)])
    assert torch.equal(joints137(out.joints), j137)
    assert torch.equal(J.reduce_joint_set(j137), j137[:, :65])
    pts = j137[0].numpy().astype(np.float64)
    for a, b in J.FLIP_PAIRS:  # the synthetic body is left/right symmetric
        tol = 1e-5 if b < 65 else 0.02  # face landmarks are snapped to mesh faces
        np.testing.assert_allclose(pts[a] * (-1, 1, 1), pts[b], atol=tol, err_msg=f"{a},{b}")
    lw, rw = pts[J.LWRIST_IDX], pts[J.RWRIST_IDX]
    assert lw[0] > 0.6 and rw[0] < -0.6 and pts[J.NECK_IDX][1] > pts[J.ROOT_JOINT_IDX][1]


# ------------------------------------------------------------------------------------------------
# Loading: never unpickle, clear one-line errors
# ------------------------------------------------------------------------------------------------
def test_loader_never_unpickles(tmp_path: Path, raw: dict[str, np.ndarray], model_file: Path) -> None:
    trapped = _save(tmp_path / "SMPLX_NEUTRAL.npz", dict(raw, trap=np.array([_Trap()], dtype=object)))
    with np.load(trapped, allow_pickle=True) as z, pytest.raises(ZeroDivisionError):
        z["trap"]  # the trap works: unpickling it raises
    data = load_body_model_data(trapped)
    reference = load_body_model_data(model_file)
    assert data.keys() == reference.keys()
    for key in data:
        np.testing.assert_array_equal(data[key], reference[key])
    # a needed array stored as a pickled object array is refused, not unpickled
    bad = _save(tmp_path / "obj" / "SMPLX_NEUTRAL.npz", dict(raw, v_template=np.array([_Trap()], dtype=object)))
    with pytest.raises(ModelFileError, match="v_template"):
        load_body_model_data(bad)


def test_loaded_arrays_and_dtypes(model_file: Path, raw: dict[str, np.ndarray]) -> None:
    data = load_body_model_data(model_file)
    assert "joint2num" not in data and "hands_componentsl" not in data
    assert data["v_template"].dtype == np.float32 and data["f"].dtype == np.int64
    np.testing.assert_array_equal(data["v_template"], raw["v_template"])
    np.testing.assert_array_equal(data["kintree_table"], raw["kintree_table"])
    # posedirs stored flat (V*3, 486) is accepted and read back identically
    flat = load_body_model_data(
        _save(model_file.parent.parent / "flat" / "SMPLX_NEUTRAL.npz",
              dict(raw, posedirs=raw["posedirs"].reshape(-1, 486)))
    )  # fmt: skip
    np.testing.assert_array_equal(flat["posedirs"], data["posedirs"])


def test_a_changed_byte_in_an_array_is_one_line_naming_it(tmp_path: Path) -> None:
    """A model file with one byte changed inside an array's data (a damaged download): the zip
    member's CRC-32 says so, in one line naming the file and the array."""
    from wbcap.body.model_files import REQUIRED_KEYS

    rng = np.random.default_rng(0)
    arrays = {key: rng.normal(size=(7, 5, 3)).astype(np.float32) for key in REQUIRED_KEYS}
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **arrays)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("weights.npy")
    data[info.header_offset + 30 + len(info.filename) + 128 + 50] ^= 0x40  # (past the .npy header)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"unreadable array 'weights' \(Bad CRC-32") as exc:
        load_body_model_data(path)
    assert str(path) in _one_line(exc)


def _one_line(exc: pytest.ExceptionInfo[ModelFileError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize(
    "case, needle",
    [
        ("text", "is not an .npz archive (neither a zip archive nor a NumPy file)"),  # (not NumPy's "pickled data")
        ("truncated_zip", "not a readable .npz"),
        ("missing_key", "J_regressor"),
        ("bad_shape", "weights"),
        ("bad_faces", "faces"),
        ("nan", "NaN"),
        ("npy", "single .npy"),
    ],
)
def test_bad_files_raise_one_line_model_file_error(
    tmp_path: Path, raw: dict[str, np.ndarray], case: str, needle: str
) -> None:
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    if case == "text":
        path.write_text("this is not a model\n")
    elif case == "truncated_zip":
        _save(path, raw)
        path.write_bytes(path.read_bytes()[:4000])
    elif case == "missing_key":
        _save(path, {k: v for k, v in raw.items() if k != "J_regressor"})
    elif case == "bad_shape":
        _save(path, dict(raw, weights=raw["weights"][:, :54]))
    elif case == "bad_faces":
        _save(path, dict(raw, f=raw["f"] + 5))
    elif case == "nan":
        v = raw["v_template"].copy()
        v[3, 1] = np.nan
        _save(path, dict(raw, v_template=v))
    elif case == "npy":
        with open(path, "wb") as fh:
            np.save(fh, raw["v_template"])
    with pytest.raises(ModelFileError) as exc:
        load_body_model_data(path)
    msg = _one_line(exc)
    assert str(path) in msg and needle in msg


def test_a_model_file_declaring_too_much_is_refused_before_unpacking(tmp_path: Path, raw: dict[str, np.ndarray],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A small npz whose arrays unpack to gigabytes (a hostile-input trial: 9 MB declaring 5 GB
    took `wbcap doctor` past 6 GB of memory) is one line, nothing unpacked: here the bound is
    lowered under the synthetic model's own size instead of writing gigabytes."""
    import wbcap.body.model_files as model_files

    path = tmp_path / "SMPLX_NEUTRAL.npz"
    _save(path, raw)
    size = sum(v.nbytes for v in raw.values()) + 128 * len(raw)  # (the arrays and their headers)
    assert load_body_model_data(path)["v_template"].shape == (10475, 3)
    monkeypatch.setattr(model_files, "MAX_MODEL_BYTES", size // 2)
    unpacked = []
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, key: unpacked.append(key))
    with pytest.raises(ModelFileError) as exc:
        load_body_model_data(path)
    msg = _one_line(exc)
    assert msg.startswith(f"{path} is not an SMPL-X model: its arrays unpack to ") and "about 0.3 GB" in msg, msg
    assert unpacked == []


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as exc:
        load_body_model_data(tmp_path / "nope.npz")
    assert "nope.npz" in _one_line(exc) and "smpl-x.is.tue.mpg.de" in str(exc.value)


def test_pickle_needs_opt_in_and_then_matches_npz(tmp_path: Path, raw: dict[str, np.ndarray], model_file: Path) -> None:
    pkl_data = {k: v for k, v in raw.items() if v.dtype != object}
    pkl_data["J_regressor"] = scipy.sparse.csc_matrix(raw["J_regressor"])  # as in the .pkl release
    pkl = tmp_path / "smplx" / "SMPLX_NEUTRAL.pkl"
    pkl.parent.mkdir()
    pkl.write_bytes(pickle.dumps(pkl_data))
    with pytest.raises(ModelFileError) as exc:
        load_body_model_data(pkl)
    assert "opt in explicitly with allow_pickle=True" in _one_line(exc) and str(pkl) in str(exc.value)
    with pytest.raises(ModelFileError) as exc:
        find_body_model("neutral", tmp_path)
    assert "allow_pickle=True" in _one_line(exc)
    assert find_body_model("neutral", tmp_path, allow_pickle=True) == pkl
    with pytest.raises(ModelFileError, match="allow_pickle=True"):
        find_body_model("neutral", pkl)
    assert find_body_model("neutral", pkl, allow_pickle=True) == pkl
    data = load_body_model_data(pkl, allow_pickle=True)
    reference = load_body_model_data(model_file)
    for key in reference:
        np.testing.assert_array_equal(data[key], reference[key], err_msg=key)
    # npz is preferred to pkl in the same folder
    shutil.copy(model_file, tmp_path / "SMPLX_NEUTRAL.npz")
    assert find_body_model("neutral", tmp_path, allow_pickle=True) == tmp_path / "SMPLX_NEUTRAL.npz"



def test_an_npz_named_pkl_is_said_to_be_one_with_or_without_allow_pickle(tmp_path: Path, model_file: Path) -> None:
    """An npz renamed ``.pkl`` was said to be a pickle that "could not be unpickled" (a first-run
    trial): by its first bytes it is NumPy's, and the message says to rename it; the rename works."""
    from wbcap.pickles import load_data_pickle

    pkl = tmp_path / "smplx" / "SMPLX_NEUTRAL.pkl"
    pkl.parent.mkdir()
    shutil.copy(model_file, pkl)
    said = f"{pkl} is a NumPy .npz archive by its content, not a pickle: rename it to SMPLX_NEUTRAL.npz"
    for allow in (False, True):
        with pytest.raises(ModelFileError) as exc:
            load_body_model_data(find_body_model("neutral", tmp_path, allow_pickle=allow), allow_pickle=allow)
        assert _one_line(exc) == said
    npy = tmp_path / "MANO_RIGHT.pkl"
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(npy)
    with pytest.raises(ModelFileError) as exc:
        load_data_pickle(npy, "download it again", "MANO_RIGHT.npz")
    assert str(exc.value) == (f"{npy} is a single NumPy array (.npy) by its content, not a pickle nor a model file; "
                              "download it again")  # (no rename: wbcap reads no .npy model)
    (tmp_path / "damaged.pkl").write_bytes(b"\x80\x04garbage")  # (a pickle that is damaged: as before)
    with pytest.raises(ModelFileError, match="could not be unpickled"):
        load_data_pickle(tmp_path / "damaged.pkl", "fix")
    # an eval extra file: the name wbcap reads it by (a break-it trial's .npy SMPLX_to_J14.pkl was called no model file)
    from wbcap.pickles import convert_release_pickle

    np.save(tmp_path / "j.npy", np.zeros((14, 5), np.float32))
    (tmp_path / "j.npy").rename(tmp_path / "SMPLX_to_J14.pkl")
    with pytest.raises(ModelFileError) as exc:
        convert_release_pickle(tmp_path / "SMPLX_to_J14.pkl")
    assert str(exc.value).endswith("SMPLX_to_J14.pkl is a NumPy .npy file by its content, not a pickle: rename it to "
                                   "SMPLX_to_J14.npy")
    np.savez(tmp_path / "d.npz", a=np.zeros(3))
    (tmp_path / "d.npz").rename(tmp_path / "smplx2smpl_deftrafo_setup.pkl")
    with pytest.raises(ModelFileError) as exc:
        convert_release_pickle(tmp_path / "smplx2smpl_deftrafo_setup.pkl")
    assert str(exc.value).endswith("is a NumPy .npz archive by its content, not a pickle: rename it to SMPLX_to_SMPL.npz")
    with zipfile.ZipFile(tmp_path / "torch.pkl", "w") as z:  # (a zip of other members, as torch.save's: no npz)
        z.writestr("archive/data.pkl", b"\x80\x04garbage")
    with pytest.raises(ModelFileError, match="could not be unpickled"):
        load_data_pickle(tmp_path / "torch.pkl", "fix")
    pkl.rename(pkl.with_suffix(".npz"))
    assert load_body_model_data(find_body_model("neutral", tmp_path))["v_template"].shape[1] == 3

# ------------------------------------------------------------------------------------------------
# Search order
# ------------------------------------------------------------------------------------------------
def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("WBCAP_HOME", str(home))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    default = _touch(home / "body_models" / "smplx" / "SMPLX_NEUTRAL.npz")
    assert find_body_model() == default
    env_dir = tmp_path / "env"
    env_file = _touch(env_dir / "SMPLX_NEUTRAL.npz")  # flat layout also works
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(env_dir))
    assert find_body_model("NEUTRAL") == env_file  # env beats the default folder
    explicit = _touch(tmp_path / "mine" / "smplx" / "SMPLX_NEUTRAL.npz")
    assert find_body_model("neutral", tmp_path / "mine") == explicit  # explicit beats env
    assert find_body_model("neutral", str(explicit)) == explicit  # a file path is used as is
    _touch(env_dir / "smplx" / "SMPLX_NEUTRAL.npz")
    assert find_body_model() == env_dir / "smplx" / "SMPLX_NEUTRAL.npz"  # smplx/ first
    # gender picks the file; env without that gender falls back to the default folder
    male = _touch(home / "body_models" / "smplx" / "SMPLX_MALE.npz")
    assert find_body_model("male") == male
    with pytest.raises(ModelFileError, match="neutral, male, female"):
        find_body_model("robot")


def test_missing_everywhere_lists_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    env_dir = tmp_path / "env"
    monkeypatch.setenv("WBCAP_HOME", str(home))
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(env_dir))
    with pytest.raises(ModelFileError) as exc:
        find_body_model("female")
    msg = _one_line(exc)
    for place in (env_dir / "smplx" / "SMPLX_FEMALE.npz", env_dir / "SMPLX_FEMALE.npz",
                  home / "body_models" / "smplx" / "SMPLX_FEMALE.npz", home / "body_models" / "SMPLX_FEMALE.npz"):  # fmt: skip
        assert str(place) in msg
    assert "https://smpl-x.is.tue.mpg.de" in msg and "WBCAP_BODY_MODELS" in msg
    assert str(home / "body_models" / "smplx") in msg and ".pkl" not in msg
    with pytest.raises(ModelFileError) as exc:
        find_body_model("neutral", tmp_path / "typo")  # an explicit path is the only place searched
    msg = _one_line(exc)
    assert str(tmp_path / "typo" / "smplx" / "SMPLX_NEUTRAL.npz") in msg and str(env_dir) not in msg


def test_missing_in_given_folder_says_put_it_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wbcap.body.model_files import BodyModelNotFoundError
    from wbcap.paths import body_models_dir

    given = tmp_path / "my_models"
    given.mkdir()
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", given)
    msg = _one_line(exc)
    assert msg.endswith(f"put SMPLX_NEUTRAL.npz in {given / 'smplx'}/ or {given}/ (the folder you gave)"), msg
    assert str(body_models_dir()) not in msg and "WBCAP_BODY_MODELS" not in msg
    assert exc.value.target == given / "smplx" and exc.value.folders == [given]
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("male", tmp_path / "typo")
    assert _one_line(exc).endswith(f"or {tmp_path / 'typo'}/ (the folder you gave, which does not exist yet)")
    # $WBCAP_BODY_MODELS set: that folder is where the file should go
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(given))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("female")
    msg = _one_line(exc)
    assert msg.endswith(f"put SMPLX_FEMALE.npz in {given / 'smplx'}/ or {given}/ (the folder WBCAP_BODY_MODELS names)")
    assert str(body_models_dir() / "SMPLX_FEMALE.npz") in msg  # still listed as searched
    # one that does not exist (a misspelt variable was not said to be one: a new user's trial)
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(tmp_path / "nonexist"))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral")
    assert _one_line(exc).endswith(f"or {tmp_path / 'nonexist'}/ (the folder WBCAP_BODY_MODELS names, which does not "
                                   "exist: check its spelling, or unset WBCAP_BODY_MODELS)")
    # the Quick start's path where `wbcap demo` wrote its model elsewhere ($WBCAP_HOME set): named, as doctor names it
    from wbcap.paths import demo_body_models_dir

    write_synthetic_smplx(demo_body_models_dir(), genders=("neutral",))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral")
    assert _one_line(exc).endswith("exist: check its spelling, or unset WBCAP_BODY_MODELS; `wbcap demo`'s synthetic "
                                   f"model is in {demo_body_models_dir()})")
    shutil.rmtree(demo_body_models_dir())
    # another gender's file where it looked (a first-run trial was told only to put the neutral one beside it)
    write_synthetic_smplx(given, genders=("male",))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", given)
    assert _one_line(exc).endswith(f"(the folder you gave); {given / 'smplx' / 'SMPLX_MALE.npz'} is there: "
                                   "gender='male' uses it (the released network was trained with the neutral one)")


@pytest.mark.slow  # (a zip of models unpacked; the plain folder's search stays in the fast loop)
def test_a_model_in_a_folder_below_or_in_smplxs_zip_is_named_with_the_folder_that_finds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder SMPL-X's zip was unpacked in holds ``models/smplx/SMPLX_NEUTRAL.npz``: a new
    user's trial gave that folder and was told only to put the file there. The message names the
    file and the folder to give, and that folder then finds it; the zip itself is named with how
    to unpack it. The look is bounded (LOOK_BELOW_DEPTH folders down)."""
    from wbcap.body.model_files import BodyModelNotFoundError
    from wbcap.paths import LOOK_BELOW_DEPTH

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    download = tmp_path / "Downloads"
    write_synthetic_smplx(download / "models", genders=("neutral",))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", download)
    found = download / "models" / "smplx" / "SMPLX_NEUTRAL.npz"
    assert exc.value.found_below == f"{found} is there: give body_models='{download / 'models'}'"
    assert _one_line(exc).endswith(f"(the folder you gave); {exc.value.found_below}")
    assert find_body_model("neutral", download / "models") == found  # the folder it names finds it
    # through $WBCAP_BODY_MODELS: the variable is what to change
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(download))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral")
    assert exc.value.found_below == (f"{found} is there: point WBCAP_BODY_MODELS at {download / 'models'} "
                                     f"(or give body_models='{download / 'models'}')")
    monkeypatch.delenv("WBCAP_BODY_MODELS")
    # another name's case: the file itself is named (the folder would not find it)
    odd = tmp_path / "odd"
    (odd / "x").mkdir(parents=True)
    shutil.copy(found, odd / "x" / "smplx_neutral.npz")
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", odd)
    assert exc.value.found_below == f"{odd / 'x' / 'smplx_neutral.npz'} is there: give body_models='{odd / 'x' / 'smplx_neutral.npz'}'"
    assert find_body_model("neutral", odd / "x" / "smplx_neutral.npz") == odd / "x" / "smplx_neutral.npz"
    # the zip as downloaded, not unpacked yet: named with its member, and the folder that finds it once unpacked
    zipped = tmp_path / "my downloads"  # (a browser's second download's name: the shell command quotes them)
    zipped.mkdir()
    (zipped / "smplx_notes.zip").write_bytes(b"not a zip")  # (passed over)
    with zipfile.ZipFile(zipped / "models_smplx_v1_1 (1).zip", "w") as z:
        z.write(found, "models/smplx/SMPLX_NEUTRAL.npz")
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", zipped)
    assert exc.value.found_below == (f"{zipped / 'models_smplx_v1_1 (1).zip'} holds models/smplx/SMPLX_NEUTRAL.npz: "
                                     f"unpack it there (cd '{zipped}' && unzip 'models_smplx_v1_1 (1).zip'), then give "
                                     f"body_models='{zipped / 'models'}'")
    if shutil.which("unzip"):  # (the command as said, in a shell)
        subprocess.run(exc.value.found_below.split("(", 2)[2].rsplit(")", 1)[0], shell=True, check=True,
                       stdout=subprocess.DEVNULL)
    else:
        with zipfile.ZipFile(zipped / "models_smplx_v1_1 (1).zip") as z:
            z.extractall(zipped)
    assert find_body_model("neutral", zipped / "models").name == "SMPLX_NEUTRAL.npz"
    # bounded: a file deeper than LOOK_BELOW_DEPTH folders down, and another gender's file, are not named
    deep = tmp_path / "deep"
    write_synthetic_smplx(deep.joinpath(*["d"] * LOOK_BELOW_DEPTH), genders=("neutral",))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", deep)
    assert exc.value.found_below == "" and "is there" not in _one_line(exc)
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("male", download)
    assert exc.value.found_below == ""
    # another gender's file beside it does not hide it (a break-it trial): both are said, this one first
    shutil.copy(found, download / "SMPLX_MALE.npz")
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", download)
    assert _one_line(exc).endswith(f"(the folder you gave); {found} is there: give body_models='{download / 'models'}'; "
                                   f"{download / 'SMPLX_MALE.npz'} is there: gender='male' uses it (the released network "
                                   "was trained with the neutral one)")
    # a zip whose central directory is large (a million names took doctor 27 s) is not looked into
    from wbcap.body import model_files

    crowded = tmp_path / "crowded"
    crowded.mkdir()
    with zipfile.ZipFile(crowded / "smplx_all.zip", "w") as z:
        z.writestr("models/smplx/SMPLX_NEUTRAL.npz", b"x")
        for k in range(model_files.ZIP_DIRECTORY_BYTES // 90 + 1):
            z.writestr(f"filler/{k:08d}-{'x' * 40}", b"")
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", crowded)
    assert exc.value.found_below == ""
    monkeypatch.setattr(model_files, "ZIP_DIRECTORY_BYTES", 1 << 30)  # (the same zip, its directory allowed)
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", crowded)
    assert exc.value.found_below.startswith(f"{crowded / 'smplx_all.zip'} holds models/smplx/SMPLX_NEUTRAL.npz")


@pytest.mark.slow  # (the fast loop stays under 2 minutes: 2 s)
def test_a_model_file_near_where_it_was_looked_for_is_said_with_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's trial got a plain "not found" for each: SMPL-X's 2020 file
    (``SMPLX_NEUTRAL_2020.npz``) in the folder given, a folder named ``SMPLX_NEUTRAL.npz`` where
    the file goes (or given as the body-models folder), and the file put in wbcap's weights
    folder. Each is named with what to do, in the error and in `wbcap doctor`; what the message
    says to give then finds the file."""
    from click.testing import CliRunner

    from wbcap.body.model_files import BodyModelNotFoundError
    from wbcap.cli import cli

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    model = write_synthetic_smplx(tmp_path / "made", genders=("neutral",)) / "smplx" / "SMPLX_NEUTRAL.npz"
    renamed = tmp_path / "bm2" / "SMPLX_NEUTRAL_2020.npz"
    renamed.parent.mkdir()
    shutil.copy(model, renamed)
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", renamed.parent)
    assert exc.value.found_below == (f"{renamed} is there: give body_models='{renamed}' (another file than "
                                     "SMPLX_NEUTRAL.npz, such as SMPL-X's 2020 model with other expression blend "
                                     "shapes: the released network was trained with SMPLX_NEUTRAL.npz)")
    assert _one_line(exc).endswith(f"(the folder you gave); {exc.value.found_below}")
    assert find_body_model("neutral", renamed) == renamed
    # the file itself in SMPL-X's zip beside it comes first (a review)
    with zipfile.ZipFile(renamed.parent / "models_smplx_v1_1.zip", "w") as z:
        z.write(model, "models/smplx/SMPLX_NEUTRAL.npz")
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", renamed.parent)
    assert exc.value.found_below.startswith(f"{renamed.parent / 'models_smplx_v1_1.zip'} holds "
                                            "models/smplx/SMPLX_NEUTRAL.npz: unpack it there")
    (renamed.parent / "models_smplx_v1_1.zip").unlink()
    with pytest.raises(BodyModelNotFoundError) as exc:  # (not another gender's)
        find_body_model("male", renamed.parent)
    assert exc.value.found_below == "" and exc.value.misplaced == ""
    # a folder with the file's name, where the file goes or given as the folder
    bm4 = tmp_path / "bm4"
    (bm4 / "SMPLX_NEUTRAL.npz").mkdir(parents=True)
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", bm4)
    assert _one_line(exc).endswith(f"(the folder you gave); {bm4 / 'SMPLX_NEUTRAL.npz'} is a folder, not the model "
                                   "file: put SMPLX_NEUTRAL.npz in its place")
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral", bm4 / "SMPLX_NEUTRAL.npz")
    assert _one_line(exc).endswith(f"; {bm4 / 'SMPLX_NEUTRAL.npz'} is a folder, not a model file: name the SMPL-X "
                                   "file itself, or the folder that holds smplx/SMPLX_NEUTRAL.npz")
    # the file in wbcap's weights folder, the default body-models folder not made yet
    weights = tmp_path / "home" / "weights"
    weights.mkdir(parents=True)
    shutil.copy(model, weights / "SMPLX_NEUTRAL.npz")
    target = tmp_path / "home" / "body_models" / "smplx"
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral")
    assert exc.value.misplaced == (f"{weights / 'SMPLX_NEUTRAL.npz'} is there, in a weights folder (for the "
                                   f"networks' files): move it to {target}/ (make it first: mkdir -p {target})")
    assert _one_line(exc).endswith(f"; {exc.value.misplaced}")
    r = CliRunner().invoke(cli, ["doctor"])
    assert f"fix: {exc.value.misplaced}" in " ".join(r.output.split()), r.output
    # in the folder of a checkpoint WBCAP_WEIGHTS names (it may name the file: a break-it trial)
    own = tmp_path / "own_weights"
    own.mkdir()
    (own / "snapshot_6.pth.tar").write_bytes(b"x")
    shutil.move(weights / "SMPLX_NEUTRAL.npz", own)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(own / "snapshot_6.pth.tar"))
    with pytest.raises(BodyModelNotFoundError) as exc:
        find_body_model("neutral")
    assert exc.value.misplaced.startswith(f"{own / 'SMPLX_NEUTRAL.npz'} is there, in a weights folder")
    shutil.move(own / "SMPLX_NEUTRAL.npz", weights)
    monkeypatch.delenv("WBCAP_WEIGHTS")
    target.mkdir(parents=True)
    shutil.move(weights / "SMPLX_NEUTRAL.npz", target)
    assert find_body_model("neutral") == target / "SMPLX_NEUTRAL.npz"


def test_a_file_named_by_its_path_is_the_gender_its_name_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog) -> None:
    """``--body-models .../SMPLX_MALE.npz`` is the male model: the gender outputs record follows
    the file used; a --gender that contradicts the file's name is kept, with a warning."""
    from wbcap.body.model_files import model_file_gender, resolve_gender

    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    assert [model_file_gender(n) for n in ("SMPLX_MALE.npz", "smplx-female-2020.pkl", "SMPLX_NEUTRAL.npz",
                                           "body.npz", "male_and_female.npz", "SMPLX_MALEX.npz")] == \
        ["male", "female", "neutral", None, None, None]
    male = _touch(tmp_path / "m" / "SMPLX_MALE.npz")
    plain = _touch(tmp_path / "p" / "my_body.npz")
    assert resolve_gender(None, male) == resolve_gender("male", male) == resolve_gender("MALE", str(male)) == "male"
    assert resolve_gender(None, plain) == "neutral" and resolve_gender("female", plain) == "female"
    assert resolve_gender(None, tmp_path / "m") == "neutral"  # a folder: the gender asked for, as before
    # a gender given against the name is kept (runs made before recorded the default with such a
    # file, and resume with it), with a warning where the file is handed out
    assert resolve_gender("neutral", male) == "neutral"
    with caplog.at_level("WARNING", logger="wbcap.body.model_files"):
        assert find_body_model("neutral", male) == male  # (eval and training ask for neutral)
    (record,) = caplog.records
    assert record.getMessage().startswith(f"{male} (named by body_models) is the male SMPL-X model by its name, used as "
                                          "the neutral one asked for here;"), record.getMessage()
    caplog.clear()
    # a command without --gender (wbcap train) is not told to leave out another command's (an eval trial)
    from wbcap.errors import spelling

    with caplog.at_level("WARNING", logger="wbcap.body.model_files"), spelling(
            lambda name: "wbcap run --gender" if name == "gender" else "--" + name.replace("_", "-")):
        find_body_model("neutral", male)
    assert caplog.records[0].getMessage().endswith("name SMPLX_NEUTRAL.npz or the folder that holds it"), caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="wbcap.body.model_files"):
        assert find_body_model("male", male) == male and find_body_model("female", plain) == plain
    assert caplog.records == []
    with caplog.at_level("WARNING", logger="wbcap.body.model_files"):  # (export: the path a run recorded)
        find_body_model("neutral", male, named_by="the run's record")
    assert f"{male} (named by the run's record) is the male SMPL-X model" in caplog.text
    caplog.clear()
    # $WBCAP_BODY_MODELS may name a file too: it is used, as its name's gender
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(male))
    _touch(tmp_path / "home" / "body_models" / "smplx" / "SMPLX_MALE.npz")  # (not taken instead)
    assert resolve_gender(None) == "male" and find_body_model("male") == male
    with caplog.at_level("WARNING", logger="wbcap.body.model_files"):
        assert find_body_model("neutral") == male
    assert "(named by WBCAP_BODY_MODELS) is the male SMPL-X model" in caplog.text
    # a model file's path that does not exist: "no such file", not "put it in the folder <file>/"
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(tmp_path / "m" / "SMPLX_MAEL.npz"))
    with pytest.raises(ModelFileError) as exc:
        find_body_model("male")
    assert _one_line(exc).startswith(f"{tmp_path / 'm' / 'SMPLX_MAEL.npz'}: no such file (named by WBCAP_BODY_MODELS)")
    monkeypatch.delenv("WBCAP_BODY_MODELS")
    typo = tmp_path / "m" / "SMPLX_NEUTRL.npz"
    for call in (lambda: find_body_model("neutral", typo), lambda: resolve_gender(None, typo)):
        with pytest.raises(ModelFileError) as exc:
            call()
        assert _one_line(exc).startswith(f"{typo}: no such file (named by body_models); check the path"), exc.value


class _Runs:
    """What a crafted pickle looks like: loading it calls ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_pickles_are_read_as_plain_data_only(tmp_path: Path, raw: dict[str, np.ndarray]) -> None:
    """Opting in to a pickle (--allow-pickle, `wbcap convert`) unpickled it
    whole: a crafted SMPLX_NEUTRAL.pkl or SMPLX_to_J14.pkl ran its code (a break-it session's
    created a file), and the converter wrote `array(0)` as the regressor. Now only the globals
    plain arrays need are allowed; any other is refused, never imported or called."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.eval.extra_files import convert_pickle
    from wbcap.pickles import load_data_pickle

    marker = tmp_path / "ran"
    evil = {**{k: v for k, v in raw.items() if v.dtype != object}, "J_regressor": _Runs(marker)}
    for name in ("SMPLX_NEUTRAL.pkl", "SMPLX_to_J14.pkl"):
        pkl = tmp_path / name
        pkl.write_bytes(pickle.dumps(evil if name.startswith("SMPLX_N") else _Runs(marker)))
        for read in (lambda p: load_body_model_data(p, allow_pickle=True), convert_pickle):
            with pytest.raises(ModelFileError) as exc:
                read(pkl)
            assert _one_line(exc).startswith(f"{pkl}: refused: it names posix.system, which no model data needs")
        r = CliRunner().invoke(cli, ["convert", str(pkl)])  # (a body model is not converted: read with --allow-pickle)
        says = "refused" if name == "SMPLX_to_J14.pkl" else "not a release pickle wbcap converts"
        assert r.exit_code == 2 and r.stderr.startswith(f"error: {pkl}: {says}") and r.stderr.count("\n") == 1, r.output
    assert not marker.exists() and not (tmp_path / "SMPLX_to_J14.npy").exists()
    # what the releases hold still reads, in every protocol (numpy, scipy sparse, scalars, OrderedDict)
    import collections

    data = collections.OrderedDict(a=np.arange(6.0).reshape(2, 3), b=scipy.sparse.csc_matrix(np.eye(3)), c=np.int64(3),
                                   d="text", e=np.float32(1.5))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
        got = load_data_pickle(tmp_path / "ok.pkl", "re-download it")
        assert list(got) == list(data) and (got["b"] != data["b"]).nnz == 0 and got["c"] == 3
        np.testing.assert_array_equal(got["a"], data["a"])
    # a pickle of no matrix is refused, not written as one
    (tmp_path / "SMPLX_to_J14.pkl").write_bytes(pickle.dumps(np.array(0)))
    with pytest.raises(ModelFileError, match=r"SMPLX_to_J14.pkl: holds no 2-D numeric matrix \(int64 \(\)\)"):
        convert_pickle(tmp_path / "SMPLX_to_J14.pkl")
    assert not (tmp_path / "SMPLX_to_J14.npy").exists()
    # the SMPL-X -> SMPL map without its 'mtx', or with one of Python objects: one line, no traceback
    # (KeyError, scipy's ValueError before; a review), and no SMPLX_to_SMPL.npz
    deftrafo = tmp_path / "smplx2smpl_deftrafo_setup.pkl"
    for held, got in (({"other": np.eye(2)}, "NoneType"), ({"mtx": np.array([[1, "a"]], object)}, "object (1, 2)"),
                      ({"mtx": np.zeros((0, 4))}, "float64 (0, 4)")):
        deftrafo.write_bytes(pickle.dumps(held))
        with pytest.raises(ModelFileError) as exc:
            convert_pickle(deftrafo)
        assert _one_line(exc) == (f"{deftrafo}: its 'mtx' is not a 2-D numeric matrix ({got}); re-download it from "
                                  "its source")
        assert CliRunner().invoke(cli, ["convert", str(deftrafo)]).exit_code == 2
    assert not (tmp_path / "SMPLX_to_SMPL.npz").exists()
    # the release's shape: the vertex half of (6890, 2 x 10475) is kept
    rng = np.random.default_rng(0)  # (scipy.sparse.random samples the whole 6890 x 20950: 12 s)
    cells = (rng.integers(0, 6890, 200), rng.integers(0, 2 * 10475, 200))
    mtx = scipy.sparse.csr_matrix((rng.random(200), cells), shape=(6890, 2 * 10475))
    deftrafo.write_bytes(pickle.dumps({"mtx": mtx}))
    kept = scipy.sparse.load_npz(convert_pickle(deftrafo))
    assert kept.shape == (6890, 10475) and (kept != mtx[:, :10475]).nnz == 0


def test_a_pickle_cannot_reach_code_through_a_dotted_name_or_chumpy(tmp_path: Path) -> None:
    """A review found the first allowlist passed every `chumpy.*` name to find_class, which
    follows dotted names: `chumpy.ch` / `os.system` ran a command where chumpy was installed.
    Dotted names are refused, and chumpy's `Ch` becomes a stub holding its values, chumpy unused."""
    from wbcap.pickles import ChumpyArray, load_data_pickle

    def proto4(module: str, name: str, arg: str) -> bytes:  # STACK_GLOBAL module name, called with (arg,)
        enc = [pickle.PROTO + b"\x04"]
        for text in (module, name):
            enc.append(pickle.SHORT_BINUNICODE + bytes([len(text)]) + text.encode())
        enc += [pickle.STACK_GLOBAL, pickle.SHORT_BINUNICODE + bytes([len(arg)]) + arg.encode(), pickle.TUPLE1,
                pickle.REDUCE, pickle.STOP]
        return b"".join(enc)

    marker = tmp_path / "ran"
    for module, name in (("chumpy.ch", "os.system"), ("numpy", "core.os.system"), ("chumpy", "ch")):
        (tmp_path / "evil.pkl").write_bytes(proto4(module, name, f"touch {marker}"))
        with pytest.raises(ModelFileError, match=rf"refused: it names {module}.{name}, which no model data needs"):
            load_data_pickle(tmp_path / "evil.pkl", "re-download it")
    assert not marker.exists()
    # a pickled chumpy Ch (its __dict__ as state), written by a stand-in module that is gone when read
    import sys
    import types

    fake = types.ModuleType("chumpy.ch")

    class Ch:
        def __getstate__(self):
            return {"x": np.arange(6.0).reshape(2, 3), "_dirty_vars": set()}

    Ch.__module__, Ch.__qualname__, fake.Ch = "chumpy.ch", "Ch", Ch
    package = types.ModuleType("chumpy")
    package.ch = fake
    sys.modules.update({"chumpy": package, "chumpy.ch": fake})
    try:
        pickled = [pickle.dumps({"shapedirs": Ch()}, protocol=p) for p in (0, 2, 4)]
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    for data in pickled:
        (tmp_path / "ch.pkl").write_bytes(data)
        got = load_data_pickle(tmp_path / "ch.pkl", "re-download it")["shapedirs"]
        assert isinstance(got, ChumpyArray) and np.array_equal(got.r, np.arange(6.0).reshape(2, 3))
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules


def test_wbcap_convert_writes_all_or_nothing(tmp_path: Path) -> None:
    """`wbcap convert A B` wrote A's file and then refused B (a break-it trial); two pickles for
    one output replaced the first's; a folder of the output's name crashed; a J14 regressor kept
    as {'mtx': ...} became the SMPL vertex map; a near-miss name was told the wrong fix."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    def convert(*args):
        r = CliRunner().invoke(cli, ["convert", *map(str, args)])
        lines = r.stderr.splitlines()
        assert "Traceback" not in r.output and (r.exit_code == 0 or len(lines) == 1), r.output
        return r

    good, bad = tmp_path / "a" / "SMPLX_to_J14.pkl", tmp_path / "b" / "MANO_SMPLX_vertex_ids.pkl"
    for f in (good, bad):
        f.parent.mkdir()
    good.write_bytes(pickle.dumps({"mtx": np.eye(14, 30)}))
    bad.write_bytes(pickle.dumps(_Runs(tmp_path / "ran")))
    r = convert(good, bad)
    assert r.exit_code == 2 and f"{bad}: refused" in r.stderr
    assert sorted(p.name for p in good.parent.iterdir()) == ["SMPLX_to_J14.pkl"]  # (nothing written, no temporaries)
    r = convert(good)
    assert r.exit_code == 0 and r.stdout == f"{good} -> {good.with_suffix('.npy')}\n"
    np.testing.assert_array_equal(np.load(good.with_suffix(".npy")), np.eye(14, 30))  # (not SMPLX_to_SMPL.npz)
    other = tmp_path / "c" / "SMPLX_to_J14.pkl"
    other.parent.mkdir()
    other.write_bytes(pickle.dumps(np.ones((3, 5))))
    (tmp_path / "d").mkdir()
    r = convert(good, other, "--dest", tmp_path / "d")
    assert r.exit_code == 2 and r.stderr == (f"error: {good} and {other} would both write {tmp_path / 'd' / 'SMPLX_to_J14.npy'}; "
                                             "convert one of them\n")
    assert list((tmp_path / "d").iterdir()) == []
    (tmp_path / "d" / "SMPLX_to_J14.npy").mkdir()
    r = convert(other, "--dest", tmp_path / "d")
    assert r.exit_code == 2 and "a folder has the name of the converted file" in r.stderr
    near = tmp_path / "smplx_to_j14.pkl"
    near.write_bytes(b"x")
    assert convert(near).stderr == f"error: {near}: rename it SMPLX_to_J14.pkl, the release's name, which wbcap converts\n"


def test_a_folder_given_for_the_model_file_is_said_to_be_one(model_file: Path) -> None:
    """SMPLXLayer.from_file of the folder holding the file said the folder "does not exist" (an API
    user's trial): it is named a folder, with the file to give."""
    from wbcap.errors import ModelFileError

    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(model_file.parent))} is a folder; the SMPL-X model is "
                                             r"read from a file: give SMPLX_NEUTRAL\.npz"):
        SMPLXLayer.from_file(model_file.parent)
