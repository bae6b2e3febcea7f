"""The MANO hand model (wbcap.body.mano_layer) and the hand stage's MANO loss terms.

Known answers: our layer against ``smplx``'s MANO on the synthetic release-format file; the
21 joints against the regressor rows and tip vertices upstream names; the loss terms against an
independent numpy evaluation of upstream's formulas; the search, conversion and refusals.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from wbcap.body.mano_layer import (
    MANO_JOINT_NAMES,
    MANO_MODEL_JOINT_NAMES,
    MANO_TIP_VERTICES,
    MANOLayer,
    convert_mano_pickle,
    find_mano_model,
    load_mano_data,
)
from wbcap.errors import ModelFileError
from wbcap.testing.synthetic_mano import write_synthetic_mano


@pytest.fixture(scope="module")
def plain_pickle(tmp_path_factory) -> Path:
    """The synthetic release-format pickle without chumpy objects (smplx can read it)."""
    return write_synthetic_mano(tmp_path_factory.mktemp("plain"), chumpy=False)


def _convert(capsys, src: object, dest: object = None) -> subprocess.CompletedProcess:
    """``wbcap convert SRC [--dest DEST]`` run in this process (click's runner; one test runs the
    real command): the exit status and what it wrote."""
    from click.testing import CliRunner

    from wbcap.cli import cli

    args = ["convert", str(src), *(["--dest", str(dest)] if dest is not None else [])]
    r = CliRunner().invoke(cli, args)
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def _params(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, generator=g) * 0.6, torch.randn(batch, 45, generator=g) * 0.3,
            torch.randn(batch, 10, generator=g))


def test_our_layer_poses_as_smplx_mano_and_gives_upstreams_21_joints(plain_pickle):
    import smplx

    ref = smplx.create(str(plain_pickle), "mano", is_rhand=True, use_pca=False, flat_hand_mean=False)
    ours = MANOLayer.from_file(plain_pickle)
    go, hp, betas = _params(5)
    transl = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    out = ours(go, hp, betas, transl)
    r = ref(global_orient=go, hand_pose=hp, betas=betas, transl=transl)
    assert out.vertices.shape == (5, 778, 3) and out.joints.shape == (5, 21, 3)
    torch.testing.assert_close(out.vertices, r.vertices, rtol=0, atol=1e-6)
    # upstream's joints: MANO's regressor on the posed mesh, reordered, with its tip vertices
    # (common/utils/human_models.py: Thumb_4 745, Index_4 317, Middle_4 445, Ring_4 556, Pinky_4 673)
    tips = {"Thumb": 745, "Index": 317, "Middle": 445, "Ring": 556, "Pinky": 673}
    assert tips == MANO_TIP_VERTICES
    regressed = torch.einsum("jv,bvc->bjc", ref.J_regressor, r.vertices)
    for i, name in enumerate(MANO_JOINT_NAMES):
        want = (r.vertices[:, tips[name[:-2]]] if name.endswith("_4")
                else regressed[:, MANO_MODEL_JOINT_NAMES.index(name)])
        torch.testing.assert_close(out.joints[:, i], want, rtol=0, atol=1e-6, msg=name)
    # batched == one by one
    for i in range(5):
        one = ours(go[i:i + 1], hp[i:i + 1], betas[i:i + 1], transl[i:i + 1])
        torch.testing.assert_close(one.vertices[0], out.vertices[i], rtol=0, atol=1e-6)
    # the synthetic hand is a hand: at the flat pose the tips lie 0.15-0.2 m from the wrist
    flat = ours(torch.zeros(1, 3), -ours.hands_mean[None].float(), torch.zeros(1, 10)).joints[0]
    tips = [MANO_JOINT_NAMES.index(f"{f}_4") for f in ("Thumb", "Index", "Middle", "Ring", "Pinky")]
    assert ((flat[tips] - flat[0]).norm(dim=1) > 0.1).all() and ((flat[tips] - flat[0]).norm(dim=1) < 0.2).all()


@pytest.mark.slow  # (fast loop under 2 minutes on the model-207 Xeon: the full suite runs it)
def test_the_release_pickle_with_chumpy_reads_and_converts_to_the_same_model(tmp_path, plain_pickle, capsys):
    released = write_synthetic_mano(tmp_path / "models")  # shapedirs as a pickled chumpy Ch, as the release
    assert b"chumpy.ch" in released.read_bytes()
    data = load_mano_data(released)
    plain = load_mano_data(plain_pickle)
    assert data.keys() == plain.keys()
    for k in data:
        np.testing.assert_array_equal(data[k], plain[k], err_msg=k)
    assert "chumpy" not in sys.modules
    converted = convert_mano_pickle(released)
    assert converted == released.with_suffix(".npz")
    with np.load(converted, allow_pickle=False) as npz:  # (no object arrays)
        assert set(npz.files) == {"v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
                                  "hands_mean", "f"}
    go, hp, betas = _params(3, seed=1)
    a = MANOLayer.from_file(released)(go, hp, betas)
    b = MANOLayer.from_file(converted)(go, hp, betas)
    assert torch.equal(a.vertices, b.vertices) and torch.equal(a.joints, b.joints)
    # the command users run, writing into another folder
    (tmp_path / "again").mkdir()
    again = tmp_path / "again" / "MANO_RIGHT.npz"
    r = subprocess.run([sys.executable, "-m", "wbcap", "convert", str(released), "--dest", str(tmp_path / "again")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == f"{released} -> {again}\n", r.stderr
    assert again.read_bytes() == converted.read_bytes()
    # a file or a folder that is not there as --dest, no such input: refused in one line, nothing written
    before = released.read_bytes()
    for out, says in ((released, "is a file"), (tmp_path / "nowhere", "no such folder")):
        r = _convert(capsys, released, out)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr and str(out) in r.stderr, r.stderr
    assert released.read_bytes() == before and not (tmp_path / "nowhere").exists()
    # the library's own names: the pickle itself, another name or kind of file (never found)
    for out in (released, tmp_path / "m.pkl", tmp_path / "mine.npz"):
        with pytest.raises(ModelFileError, match="is written as MANO_RIGHT.npz"):
            convert_mano_pickle(released, out)
    assert released.read_bytes() == before and not (tmp_path / "m.pkl").exists() and not (tmp_path / "mine.npz").exists()
    left = tmp_path / "MANO_LEFT.pkl"  # (the release's other file: a left hand is not converted for the right one)
    left.write_bytes(released.read_bytes())
    r = _convert(capsys, left)
    assert r.returncode == 2 and "not the right hand's model (its name lacks RIGHT)" in r.stderr, r.stderr
    assert not (tmp_path / "MANO_RIGHT.npz").exists() and r.stderr.count("\n") == 1
    gone = tmp_path / "gone" / "MANO_RIGHT.pkl"
    r = _convert(capsys, gone)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {gone}: no such file") and r.stderr.count("\n") == 1
    # another name (a body model, anything): refused by name, and every name is checked before any
    # file is written (a SMPL_NEUTRAL.pkl went to the extra files' converter; a list half converted)
    from click.testing import CliRunner

    from wbcap.cli import cli

    for other, hint in (("SMPL_NEUTRAL.pkl", "; a body model pickle is read as it is, with --allow-pickle"),
                        ("notes.pkl", "")):
        (tmp_path / other).write_bytes(b"x")
        (tmp_path / "MANO_RIGHT.npz").unlink(missing_ok=True)
        r = CliRunner().invoke(cli, ["convert", str(released), str(tmp_path / other)])
        assert r.exit_code == 2 and r.stderr == (f"error: {tmp_path / other}: not a release pickle wbcap converts "
                                                 "(MANO_RIGHT.pkl, SMPLX_to_J14.pkl, MANO_SMPLX_vertex_ids.pkl, "
                                                 f"smplx2smpl_deftrafo_setup.pkl){hint}\n"), r.output
        assert not (tmp_path / "MANO_RIGHT.npz").exists()


def test_damaged_or_foreign_mano_files_are_refused_in_one_line(tmp_path, capsys):
    evil = tmp_path / "MANO_RIGHT.pkl"
    marker = tmp_path / "ran"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(ModelFileError, match=r"refused: it names os.system") as err:
        load_mano_data(evil)
    assert not marker.exists() and "\n" not in str(err.value)
    r = _convert(capsys, evil)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "refused" in r.stderr and "Traceback" not in r.stderr
    assert not evil.with_suffix(".npz").exists()
    # an SMPL-X-sized or cut file
    arrays = load_mano_data(write_synthetic_mano(tmp_path / "ok", chumpy=False))
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{**{k: v for k, v in arrays.items() if k != "parents"}, "shapedirs": np.zeros((10475, 3, 10))})
    with pytest.raises(ModelFileError, match=r"shapedirs has shape \(10475, 3, 10\), MANO's is \(778, 3, 10\)"):
        load_mano_data(bad)
    np.savez(bad, **{**{k: v for k, v in arrays.items() if k != "parents"}, "v_template": arrays["v_template"] * 1000})
    with pytest.raises(ModelFileError, match=r"v_template spans 180 units, not a hand in metres"):
        load_mano_data(bad)  # (a file in millimetres)
    np.savez(bad, **{**{k: v for k, v in arrays.items() if k != "parents"}, "J_regressor": 0 * arrays["J_regressor"]})
    with pytest.raises(ModelFileError, match=r"J_regressor's rows do not each sum to 1"):
        load_mano_data(bad)
    np.savez(bad, **{k: v for k, v in arrays.items() if k not in ("parents", "posedirs")})
    with pytest.raises(ModelFileError, match=r"is not a MANO model \(missing arrays: posedirs\)"):
        load_mano_data(bad)
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelFileError, match="could not be read as a MANO .npz"):
        load_mano_data(bad)


def test_find_mano_model_searches_as_for_smplx_and_says_how_to_convert(tmp_path, monkeypatch):
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    folder = tmp_path / "models"
    pkl = write_synthetic_mano(folder)
    with pytest.raises(ModelFileError) as err:  # the release's pickle: converted first (never unpickled unasked)
        find_mano_model(folder)
    assert str(err.value) == (f"{pkl} is a pickle, which can run code when loaded: convert it once with "
                              f"`wbcap convert {pkl}` (writes MANO_RIGHT.npz beside it, read without "
                              f"unpickling)")
    assert find_mano_model(folder, allow_pickle=True) == pkl
    npz = convert_mano_pickle(pkl)
    assert find_mano_model(folder) == npz
    (folder / "smplx").mkdir()
    (folder / "smplx" / "SMPLX_NEUTRAL.npz").write_bytes(b"")
    assert find_mano_model(folder / "smplx" / "SMPLX_NEUTRAL.npz") == npz  # (--body-models naming an SMPL-X file)
    with pytest.raises(ModelFileError, match=r"SMPLX_NEUTRL.npz: no such file or folder \(named by body_models\)$"):
        find_mano_model(folder / "smplx" / "SMPLX_NEUTRL.npz")  # (a typo: refused, not searched around)
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(folder))
    assert find_mano_model() == npz
    empty = tmp_path / "empty"
    with pytest.raises(ModelFileError) as err:
        find_mano_model(empty)
    empty.mkdir()
    with pytest.raises(ModelFileError) as err:
        find_mano_model(empty)
    assert str(err.value) == (
        f"the MANO hand model (MANO_RIGHT.npz or .pkl) was not found (looked in: {empty}/mano/, {empty}/): download "
        f"MANO from https://mano.is.tue.mpg.de, put mano_v1_2/models/MANO_RIGHT.pkl in {empty}/mano/ and convert it "
        f"there once with `wbcap convert {empty}/mano/MANO_RIGHT.pkl`")  # (the folder was named)
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(empty))
    with pytest.raises(ModelFileError, match=r"MANO_RIGHT.pkl` \(or pass body_models / set WBCAP_BODY_MODELS\)$"):
        find_mano_model()


# --------------------------------------------------------------------------- the loss terms


def _numpy_projection(joints: np.ndarray, cam: np.ndarray, hw: tuple[int, int], hm: tuple[int, int, int]) -> np.ndarray:
    """Upstream's get_camera_trans and get_coord (Pose2Pose main/model.py, parts 'hand'), in numpy float64."""
    f = 5000.0
    k = np.sqrt(f * f * 0.4 * 0.4 / (hw[0] * hw[1]))
    t = np.concatenate([cam[:, :2], k / (1 + np.exp(-cam[:, 2:3]))], 1)
    x = (joints[..., 0] + t[:, None, 0]) / (joints[..., 2] + t[:, None, 2] + 1e-4) * f + hw[1] / 2
    y = (joints[..., 1] + t[:, None, 1]) / (joints[..., 2] + t[:, None, 2] + 1e-4) * f + hw[0] / 2
    return np.stack([x / hw[1] * hm[2], y / hw[0] * hm[1]], -1)


@pytest.mark.parametrize("hw, hm", [((256, 256), (8, 8, 8)), ((128, 128), (8, 4, 4))])
def test_mano_loss_terms_are_upstreams(plain_pickle, hw, hm):
    from wbcap.body.rotations import axis_angle_to_matrix, matrix_to_rot6d
    from wbcap.config import ModelConfig
    from wbcap.model.hand_model import HandOutput
    from wbcap.train.hand_losses import HAND_LOSS_NAMES, HAND_MANO_LOSS_NAMES, hand_losses

    config = ModelConfig(input_hand_shape=hw, output_hand_hm_shape=hm)
    mano = MANOLayer.from_file(plain_pickle)
    b = 3
    go, hp, betas = _params(b, seed=5)
    pose = torch.cat((go, hp), 1)
    six = matrix_to_rot6d(axis_angle_to_matrix(pose.view(b, 16, 3)))  # (B, 16, 6)
    cam = torch.tensor([[0.01, -0.02, 0.3], [0.0, 0.0, -1.0], [0.03, 0.01, 2.0]])
    out = HandOutput(joint_img=torch.rand(b, 21, 3, generator=torch.Generator().manual_seed(9)) * 4, root_6d=six[:, 0],
                     pose_6d=six[:, 1:].reshape(b, 90), shape=betas, cam=cam)
    joints = mano(go, hp, betas).joints.double().numpy()
    rel = joints - joints[:, :1]
    g = np.random.default_rng(0)
    joint_img = np.concatenate([g.uniform(0, hm[2], (b, 21, 1)), g.uniform(0, hm[1], (b, 21, 1)),
                                g.uniform(0, hm[0], (b, 21, 1))], -1)
    joint_cam = rel + g.normal(0, 0.01, rel.shape)
    trunc = (g.random((b, 21, 1)) > 0.3).astype(np.float32)
    valid = (g.random((b, 21, 1)) > 0.2).astype(np.float32)
    is_3d = np.array([1.0, 0.0, 1.0], np.float32)
    own = np.array([1.0, 1.0, 0.0], np.float32)  # sample 2's joints are its fit's (FreiHAND's)
    t_pose = pose + torch.tensor([[0.0] * 48, [0.05] * 48, [0.0] * 48])  # sample 1's fit differs
    fit_img = np.concatenate([g.uniform(0, hm[2], (b, 21, 1)), g.uniform(0, hm[1], (b, 21, 1)),
                              g.uniform(0, hm[0], (b, 21, 1))], -1)
    fit_trunc = (g.random((b, 21, 1)) > 0.4).astype(np.float32)
    targets = {"joint_img": torch.tensor(joint_img, dtype=torch.float32),
               "joint_cam": torch.tensor(joint_cam, dtype=torch.float32),
               "mano_pose": t_pose, "mano_shape": betas.clone(),
               "mano_joint_img": torch.tensor(fit_img, dtype=torch.float32)}
    meta = {"joint_trunc": torch.tensor(trunc), "joint_valid": torch.tensor(valid), "is_3D": torch.tensor(is_3d),
            "dataset_joints": torch.tensor(own), "mano_joint_trunc": torch.tensor(fit_trunc),
            "mano_param_valid": torch.tensor([1.0, 1.0, 0.0]), "mano_pose_valid": torch.ones(b, 48),
            "mano_shape_valid": torch.ones(b)}
    from host_reads import count_host_reads

    with count_host_reads() as reads:  # (nothing that would synchronise a GPU: smplx's lbs read 15 parents a call)
        losses = hand_losses(out, targets, meta, mano, config)
    assert not reads, dict(reads)
    assert tuple(losses) == HAND_LOSS_NAMES + HAND_MANO_LOSS_NAMES
    assert tuple(hand_losses(out, targets, meta)) == HAND_LOSS_NAMES  # (without MANO: the three)
    proj = _numpy_projection(joints, cam.double().numpy(), hw, hm)
    want_proj = (np.abs(proj - joint_img[..., :2]) * trunc * own[:, None, None]).mean()
    want_cam = (np.abs(rel - joint_cam) * valid * (is_3d * own)[:, None, None]).mean()
    t_joints = mano(t_pose[:, :3], t_pose[:, 3:], betas).joints.double().numpy()
    t_rel = t_joints - t_joints[:, :1]
    want_mano = (np.abs(rel - t_rel) * np.array([1.0, 1.0, 0.0])[:, None, None]).mean()
    want_fit_img = (np.abs(out.joint_img.double().numpy() - fit_img) * fit_trunc).mean()  # (depth too, as upstream)
    assert float(losses["mano_joint_img"]) == pytest.approx(want_fit_img, rel=1e-5)
    assert float(losses["joint_proj"]) == pytest.approx(want_proj, rel=1e-4)
    assert float(losses["joint_cam"]) == pytest.approx(want_cam, rel=1e-4)
    assert float(losses["mano_joint_cam"]) == pytest.approx(want_mano, rel=1e-4)
    assert float(losses["mano_joint_cam"]) > 0.0  # (sample 1's fit differs; sample 0's is the output's)
    # the camera term moves the camera head's output only through joint_proj
    cam_p = cam.clone().requires_grad_(True)
    hand_losses(replace(out, cam=cam_p), targets, meta, mano, config)["joint_proj"].backward()
    assert cam_p.grad is not None and cam_p.grad.abs().sum() > 0


# --------------------------------------------------------------------------- the stage


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_train_hand_without_mano_says_where_and_how_and_no_mano_losses_trains_without(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.testing.dataset_fixtures import write_freihand_fixture

    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    root = tmp_path / "data"
    write_freihand_fixture(root, num_train=2, num_eval=1)
    models = tmp_path / "models"
    models.mkdir()
    base = ["train", "hand", "--data-root", str(root), "--datasets", "FreiHAND", "--body-models", str(models),
            "--device", "cpu", "--workers", "0", "--batch-size", "2", "--epochs", "1", "--max-steps", "1",
            "--config", str(tmp_path / "tiny.toml")]
    (tmp_path / "tiny.toml").write_text('stage = "hand"\namp = false\n[model]\nhand_backbone_depth = 18\nbackbone_width = 16\n'
                                        'input_hand_shape = [128, 128]\noutput_hand_hm_shape = [8, 4, 4]\n')
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "a")])
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 1, r.output
    assert errors[0].startswith("error: the MANO hand model (MANO_RIGHT.npz or .pkl) was not found")
    assert errors[0].endswith("; or train without the MANO loss terms: --no-mano-losses")
    assert "or pass --body-models" not in errors[0] and not (tmp_path / "a").exists()  # (it was passed)
    r = CliRunner().invoke(cli, [*base, "--no-mano-losses", "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    stage = json.loads((tmp_path / "b" / "stage.json").read_text())
    assert stage["mano_losses"] is False
    rows = [json.loads(line) for line in (tmp_path / "b" / "scalars.jsonl").read_text().splitlines()]
    assert sorted(k for k in rows[0] if k.startswith("loss/")) == ["loss/joint_img", "loss/mano_pose",
                                                                  "loss/mano_shape", "loss/total"]
    # the converted model in --body-models/mano/: the six terms
    convert_mano_pickle(write_synthetic_mano(models))
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "c" / "scalars.jsonl").read_text().splitlines()]
    assert {"loss/joint_proj", "loss/joint_cam", "loss/mano_joint_cam"} <= set(rows[0])
    assert json.loads((tmp_path / "c" / "stage.json").read_text())["mano_losses"] is True


def test_mano_losses_is_refused_outside_the_hand_stage_and_old_hand_runs_resume_without(tmp_path):
    from wbcap.errors import InputError
    from wbcap.train.launch import recorded_stage
    from wbcap.train.stages import STAGES
    from wbcap.train.trainer import RunConfig, check_run_inputs

    with pytest.raises(InputError, match=r"^mano_losses is a hand-stage setting \(the whole-body stages pose SMPL-X\): drop it$"):
        check_run_inputs(replace(STAGES["body"], datasets=("synthetic",), mano_losses=False),
                         RunConfig(out=str(tmp_path / "o"), device="cpu"))
    # a hand run of a wbcap before the MANO terms (its stage.json has no mano_losses) resumes without them
    run = tmp_path / "old"
    run.mkdir()
    old = STAGES["hand"].to_dict()
    del old["mano_losses"]
    (run / "stage.json").write_text(json.dumps(old))
    cfg, _ = recorded_stage(run, "hand")
    assert cfg.mano_losses is False
    (run / "stage.json").write_text(json.dumps(STAGES["hand"].to_dict()))
    assert recorded_stage(run, "hand")[0].mano_losses is True



def test_doctor_reports_the_mano_file_as_optional(tmp_path, mano_dir, monkeypatch):
    from wbcap.doctor import mano_check

    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    ok = mano_check(str(mano_dir))
    assert (ok.name, ok.ok, ok.detail) == ("MANO (hand training)", True, str(mano_dir / "mano" / "MANO_RIGHT.npz"))
    missing = mano_check(str(tmp_path))
    assert not missing.ok and missing.optional
    assert missing.detail == f"MANO_RIGHT.npz not found in {tmp_path}/mano/ or {tmp_path}/"
    assert missing.fix == (f"optional, only `wbcap train hand` uses it (or trains without: --no-mano-losses): download "
                           f"MANO from https://mano.is.tue.mpg.de, put mano_v1_2/models/MANO_RIGHT.pkl in {tmp_path}/mano/ "
                           f"and convert it there once with `wbcap convert "
                           f"{tmp_path}/mano/MANO_RIGHT.pkl`")
    pkl = write_synthetic_mano(tmp_path)
    unconverted = mano_check(str(tmp_path))
    assert (unconverted.ok, unconverted.detail) == (False, f"{pkl} is a pickle, which can run code when loaded")
    assert unconverted.fix.endswith(f"convert it once with `wbcap convert {pkl}` (writes "
                                    f"MANO_RIGHT.npz beside it, read without unpickling)")


def test_the_old_converter_commands_point_to_wbcap_convert(capsys):
    """`python -m wbcap.body.mano_layer FILE` (and the extra files' one), the converters' commands
    before `wbcap convert`, ended without a word, status 0, nothing written (a user trial). Run
    as `python -m` runs them (runpy, in this process)."""
    import runpy
    import warnings

    for module, new in (("wbcap.body.mano_layer", "wbcap convert MANO_RIGHT.pkl"),
                        ("wbcap.eval.extra_files", "wbcap convert FILE.pkl")):
        with pytest.raises(SystemExit) as ended, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # (runpy: the module is imported already)
            runpy.run_module(module, run_name="__main__")
        assert ended.value.code == 2
        assert capsys.readouterr() == ("", f"error: `python -m {module}` is now `{new}`\n")
