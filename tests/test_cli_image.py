"""End-to-end `wbcap image` runs on synthetic files, and every bad input from the issue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.testing.images import person_image

FILES = ("output.obj", "smplx_param.json", "render_original_img.jpg", "render_cropped_img.jpg")


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def write_rgb(path: Path, img: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


def read_obj_counts(path: Path) -> tuple[np.ndarray, int]:
    verts, faces = [], 0
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            faces += 1
    return np.asarray(verts), faces


def check_person_folder(folder: Path, image_hw: tuple[int, int], body_layer) -> dict:
    for name in FILES:
        assert (folder / name).is_file(), f"{folder}/{name} missing: {sorted(p.name for p in folder.iterdir())}"
    verts, nfaces = read_obj_counts(folder / "output.obj")
    assert verts.shape == (10475, 3) and nfaces == 20908
    params = json.loads((folder / "smplx_param.json").read_text())
    # the JSON round-trips through the body model to the OBJ's vertices
    t = lambda k: torch.tensor(params[k], dtype=torch.float32)[None]
    out = body_layer(
        betas=t("shape"), global_orient=t("root_pose"), body_pose=t("body_pose"), left_hand_pose=t("lhand_pose"),
        right_hand_pose=t("rhand_pose"), jaw_pose=t("jaw_pose"), expression=t("expr"),
        leye_pose=t("leye_pose"), reye_pose=t("reye_pose"),
    )
    mesh = out.vertices[0].numpy() + np.asarray(params["cam_trans"])
    assert np.abs(mesh - verts).max() <= 1e-5
    # the mesh projects into the image with the JSON's camera
    (fx, _fy), (cx, _cy) = params["camera"]["focal"], params["camera"]["princpt"]
    u = verts[:, 0] / verts[:, 2] * fx + cx
    assert params["camera"]["image_size"] == [image_hw[1], image_hw[0]]
    assert params["crop_bbox"][0] - 1 <= np.median(u) <= params["crop_bbox"][0] + params["crop_bbox"][2] + 1
    for name, hw in (("render_original_img.jpg", image_hw), ("render_cropped_img.jpg", (512, 384))):
        data = (folder / name).read_bytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", name  # complete JPEG
        img = cv2.imread(str(folder / name))
        assert img is not None and img.shape[:2] == hw, name
    return params


@pytest.fixture()
def small_args(small_ckpt, body_dir):
    return ["--checkpoint", small_ckpt, "--body-models", body_dir]


def test_image_end_to_end_official_checkpoint(tmp_path, official_ckpt, body_dir, body_layer):
    """Full-size network, checkpoint in the released file's layout, generated picture, HOG boxes."""
    img_path = write_rgb(tmp_path / "walker.jpg", person_image(480, 640, seed=1))
    out = tmp_path / "out"
    r = invoke("image", img_path, "-o", out, "--checkpoint", official_ckpt, "--body-models", body_dir, "--max-people", "1")
    assert r.exit_code == 0, r.output
    folder = out / "walker" / "person_0"
    params = check_person_folder(folder, (640, 480), body_layer)
    from wbcap.export.params_json import FORMAT

    assert params["format"] == FORMAT and len(params["body_pose"]) == 63


def test_image_fast_precision_close_to_exact(tmp_path, small_config, body_dir):
    from wbcap.model.checkpoint import save_checkpoint
    from wbcap.testing.checkpoints import random_network

    # heads as drawn (not upright), so poses and camera depend on the image
    ckpt = save_checkpoint(tmp_path / "raw.pth", random_network(small_config, seed=1), epoch=1)
    args = ["--checkpoint", ckpt, "--body-models", body_dir]
    img_path = write_rgb(tmp_path / "walker.jpg", person_image(480, 640, seed=2))
    params = {}
    for precision in ("exact", "fast"):
        out = tmp_path / precision
        r = invoke("image", img_path, "-o", out, *args, "--full-image", "--no-render", "--precision", precision)
        assert r.exit_code == 0, r.output
        params[precision] = json.loads((out / "walker" / "person_0" / "smplx_param.json").read_text())
    diffs = {}
    for key in ("body_pose", "root_pose", "cam_trans", "lhand_bbox", "face_bbox"):
        a, b = np.asarray(params["exact"][key]), np.asarray(params["fast"][key])
        diffs[key] = np.abs(a - b).max()
        assert diffs[key] < 0.05, key
    assert diffs["body_pose"] > 1e-6 and diffs["cam_trans"] > 1e-7  # bfloat16 really ran
    r = invoke("image", img_path, "-o", tmp_path / "bad", *args, "--precision", "int8")
    assert r.exit_code == 2 and "exact" in r.output


def test_image_on_real_photo(tmp_path, shared_dir, small_args, body_layer):
    photo = shared_dir / "media" / "messi5.jpg"
    if not photo.is_file():
        pytest.skip("messi5.jpg absent")
    out = tmp_path / "out"
    r = invoke("image", photo, "-o", out, *small_args)
    assert r.exit_code == 0, r.output
    people = sorted((out / "messi5").glob("person_*"))
    assert people, r.output
    for folder in people:
        check_person_folder(folder, (342, 548), body_layer)


def test_two_boxes_two_people_and_shared_overlay(tmp_path, small_args, body_layer):
    img_path = write_rgb(tmp_path / "pair.png", person_image(640, 480, seed=2, people=2))
    out = tmp_path / "out"
    r = invoke("image", img_path, "-o", out, "--bbox", "60,40,220,420", "--bbox", "360,40,220,420", *small_args)
    assert r.exit_code == 0, r.output
    a, b = (check_person_folder(out / "pair" / f"person_{k}", (480, 640), body_layer) for k in (0, 1))
    assert a["bbox"] == [60, 40, 220, 420] and b["bbox"] == [360, 40, 220, 420]
    assert (out / "pair" / "person_0" / "render_original_img.jpg").read_bytes() == (
        out / "pair" / "person_1" / "render_original_img.jpg"
    ).read_bytes()


@pytest.mark.parametrize("kind", ["gray", "rgba", "png16"])
def test_unusual_pixel_formats_work(tmp_path, kind, small_args):
    rgb = person_image(240, 320, seed=3)
    path = tmp_path / f"{kind}.png"
    if kind == "gray":
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    elif kind == "rgba":
        cv2.imwrite(str(path), np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 255, np.uint8)]))
    else:
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    out = tmp_path / "out"
    r = invoke("image", path, "-o", out, "--full-image", "--no-render", *small_args)
    assert r.exit_code == 0, r.output
    assert (out / kind / "person_0" / "output.obj").is_file()


def _bad_cases(tmp_path: Path, small_ckpt: Path, body_dir: Path):
    good = write_rgb(tmp_path / "good.jpg", person_image(240, 320, seed=4))
    notimg = tmp_path / "notes.png"
    notimg.write_text("hello\n")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    tiny = write_rgb(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    blank = write_rgb(tmp_path / "blank.png", np.full((320, 240, 3), 128, np.uint8))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04garbage" * 10)
    base = ["--checkpoint", small_ckpt, "--body-models", body_dir]
    return {
        "missing file": (["image", tmp_path / "nope.jpg", *base], "nope.jpg"),
        "non-image": (["image", notimg, *base], "notes.png"),
        "truncated jpeg": (["image", trunc, *base], "trunc.jpg"),
        "1x1 image": (["image", tiny, *base], "tiny.png"),
        "box outside": (["image", good, "--bbox", "5000,5000,50,100", *base], "outside"),
        "no person": (["image", blank, *base], "no person"),
        "corrupt checkpoint": (["image", good, "--checkpoint", corrupt, "--body-models", body_dir], "corrupt.pth"),
        "missing body model": (["image", good, "--checkpoint", small_ckpt, "--body-models", tmp_path / "empty"], "SMPL-X"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing file", "non-image", "truncated jpeg", "1x1 image", "box outside", "no person", "corrupt checkpoint",
     "missing body model"],
)
def test_bad_input_one_line_nonzero_no_output(tmp_path, small_ckpt, body_dir, case):
    (tmp_path / "empty").mkdir()
    args, needle = _bad_cases(tmp_path, small_ckpt, body_dir)[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [str(a) for a in args] + ["-o", str(out)])
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle.lower() in errors[0].lower(), result.output
    leftovers = [p for p in out.rglob("*")] if out.exists() else []
    assert leftovers == [], leftovers


def test_help_imports_neither_torch_nor_av():
    code = (
        "import sys\n"
        "from wbcap.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['image', '--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('torch', 'av', 'cv2', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "image" in res.stdout and "--bbox" in res.stdout


def test_image_help_documents_every_flag():
    r = invoke("image", "--help")
    assert r.exit_code == 0
    from wbcap.cli.image import image

    for param in image.params:
        if isinstance(param, __import__("click").Option):
            assert param.help, f"{param.name} has no help"
            for opt in param.opts:
                assert opt in r.output, opt


def test_demo_runs_and_says_it_is_a_pipeline_check(tmp_path):
    out = tmp_path / "demo"
    r = invoke("demo", "-o", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "pipeline check" in r.output and "SMPLX_NEUTRAL.npz" in r.output and "snapshot_6.pth.tar" in r.output
    people = list((out / "example").glob("person_*"))
    assert people and all((p / f).is_file() for p in people for f in FILES)


def test_logs_go_to_stderr_not_stdout():
    """A subcommand's log lines must not pollute stdout (machine-readable output goes there)."""
    code = (
        "import logging, sys\n"
        "from wbcap.cli import main\n"
        "try:\n    main(['-v', 'weights', 'list'])\nexcept SystemExit:\n    pass\n"
        "logging.getLogger('wbcap.test').warning('LOGLINE')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "LOGLINE" in res.stderr and "LOGLINE" not in res.stdout, (res.stdout, res.stderr)
