"""End-to-end `wbcap image` runs on synthetic files, and every bad input from the issue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.model.fused import bf16_supported
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


def check_person_folder(folder: Path, image_hw: tuple[int, int], body_layer, crop_hw: tuple[int, int] = (512, 384)) -> dict:
    """The four files of one person; ``crop_hw``: the network input (the checkpoint's input_img_shape)."""
    for name in FILES:
        assert (folder / name).is_file(), f"{folder}/{name} missing: {sorted(p.name for p in folder.iterdir())}"
    verts, nfaces = read_obj_counts(folder / "output.obj")
    assert verts.shape == (10475, 3) and nfaces == 20908
    params = json.loads((folder / "smplx_param.json").read_text())
    # the JSON round-trips through the body model to the OBJ's vertices (Hand4Whole's names)
    t = lambda k: torch.tensor(params[k], dtype=torch.float32)[None]
    out = body_layer(
        betas=t("shape"), global_orient=t("root_pose"), body_pose=t("body_pose"), left_hand_pose=t("lhand_pose"),
        right_hand_pose=t("rhand_pose"), jaw_pose=t("jaw_pose"), expression=t("expr"),
        leye_pose=t("leye_pose"), reye_pose=t("reye_pose"),
    )
    mesh = out.vertices[0].numpy() + np.asarray(params["cam_trans"])
    assert np.abs(mesh - verts).max() <= 1e-5
    from wbcap.io.param_names import from_file_record

    with torch.no_grad():
        again = body_layer(from_file_record(params)).vertices[0].numpy()  # the same, through the one mapping
    assert np.abs(again - verts).max() <= 1e-5
    # the mesh projects into the image with the JSON's camera
    (fx, _fy), (cx, _cy) = params["camera"]["focal"], params["camera"]["princpt"]
    u = verts[:, 0] / verts[:, 2] * fx + cx
    assert params["camera"]["image_size"] == [image_hw[1], image_hw[0]]
    crop = params["crop_bbox_xywh"]
    assert crop[0] - 1 <= np.median(u) <= crop[0] + crop[2] + 1
    for name, hw in (("render_original_img.jpg", image_hw), ("render_cropped_img.jpg", crop_hw)):
        data = (folder / name).read_bytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", name  # complete JPEG
        img = cv2.imread(str(folder / name))
        assert img is not None and img.shape[:2] == hw, name
    return params


# The MICRO network (256x192 crops, smaller network inputs: tests/conftest.py) wherever the
# claim does not depend on the input size; the official layout's test keeps 512x384.
MICRO_CROP = (256, 192)


@pytest.fixture()
def micro_args(micro_ckpt, body_dir):
    return ["--checkpoint", micro_ckpt, "--body-models", body_dir]


@pytest.mark.slow  # full-size network
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


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_image_fast_precision_close_to_exact(tmp_path, micro_ckpt_raw, body_dir, monkeypatch):
    import wbcap.io.images

    # heads as drawn (not upright), so poses and camera depend on the image
    args = ["--checkpoint", micro_ckpt_raw, "--body-models", body_dir]
    expanded = []  # the inputs are expanded once per command (a folder of thousands: one listing)
    real_expand = wbcap.io.images.iter_image_paths
    monkeypatch.setattr(wbcap.io.images, "iter_image_paths", lambda p: expanded.append(p) or real_expand(p))
    img_path = write_rgb(tmp_path / "walker.jpg", person_image(480, 640, seed=2))
    params = {}
    for precision, quiet in (("exact", []), ("fast", ["-q"])):
        out = tmp_path / precision
        r = invoke(*quiet, "image", img_path, "-o", out, *args, "--full-image", "--no-render", "--precision", precision)
        assert r.exit_code == 0, r.output
        # the result line on stdout (the log on stderr), none with -q
        assert r.stdout == ("" if quiet else f"walker.jpg: 1 person(s) -> {out / 'walker'}\n")
        assert len(expanded) == 1, expanded
        expanded.clear()
        params[precision] = json.loads((out / "walker" / "person_0" / "smplx_param.json").read_text())
    diffs = {}
    for key in ("body_pose", "root_pose", "cam_trans", "lhand_bbox_xyxy", "face_bbox_xyxy"):
        a, b = np.asarray(params["exact"][key]), np.asarray(params["fast"][key])
        diffs[key] = np.abs(a - b).max()
        assert diffs[key] < 0.05, key
    if bf16_supported():
        assert diffs["body_pose"] > 1e-6 and diffs["cam_trans"] > 1e-7  # bfloat16 really ran
    else:  # float32, exact's computation (the tests force the fused form: no int8)
        assert diffs["body_pose"] == 0 and diffs["cam_trans"] == 0
    r = invoke("image", img_path, "-o", tmp_path / "bad", *args, "--precision", "int8")
    assert r.exit_code == 2 and "exact" in r.output


@pytest.mark.slow  # real photo end to end, every person HOG finds
def test_image_on_real_photo(tmp_path, shared_dir, micro_args, body_layer):
    photo = shared_dir / "media" / "messi5.jpg"
    if not photo.is_file():
        pytest.skip("messi5.jpg absent")
    out = tmp_path / "out"
    r = invoke("image", photo, "-o", out, *micro_args)
    assert r.exit_code == 0, r.output
    people = sorted((out / "messi5").glob("person_*"))
    assert people, r.output
    for folder in people:
        check_person_folder(folder, (342, 548), body_layer, MICRO_CROP)


@pytest.mark.slow  # one-person runs cover the command in the fast loop
def test_two_boxes_two_people_and_shared_overlay(tmp_path, micro_args, body_layer, body_dir):
    img_path = write_rgb(tmp_path / "pair.png", person_image(640, 480, seed=2, people=2))
    out = tmp_path / "out"
    r = invoke("image", img_path, "-o", out, "--bbox", "60,40,220,420", "--bbox", "360,40,220,420", *micro_args)
    assert r.exit_code == 0, r.output
    a, b = (check_person_folder(out / "pair" / f"person_{k}", (480, 640), body_layer, MICRO_CROP) for k in (0, 1))
    assert a["bbox_xywh"] == [60, 40, 220, 420] and b["bbox_xywh"] == [360, 40, 220, 420]
    # the README's plain-smplx reading of smplx_param.json, run as printed there (its imports too),
    # gives output.obj
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index('p = json.load(open("person_0/smplx_param.json"))')
    snippet = readme[readme.rindex("```python\n", 0, start) + len("```python\n"):readme.index("```", start)]
    snippet = snippet.replace('"~/models"', repr(str(body_dir))).replace(
        '"person_0/smplx_param.json"', repr(str(out / "pair" / "person_1" / "smplx_param.json")))
    scope: dict = {}
    exec(snippet, scope)  # (the README's own text)
    obj = trimesh.load(out / "pair" / "person_1" / "output.obj", process=False, maintain_order=True).vertices
    np.testing.assert_allclose(scope["vertices"][0].detach().numpy(), obj, atol=1e-5)
    # one overlay for the image, in each person's folder ...
    assert (out / "pair" / "person_0" / "render_original_img.jpg").read_bytes() == (
        out / "pair" / "person_1" / "render_original_img.jpg"
    ).read_bytes()
    # ... on which both meshes are drawn: the pixels where each person's OBJ projects with its
    # JSON camera (and not the other's) changed; far from both meshes, only JPEG rounding
    src = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB).astype(int)
    overlay = cv2.cvtColor(cv2.imread(str(out / "pair" / "person_0" / "render_original_img.jpg")), cv2.COLOR_BGR2RGB)
    change = np.abs(overlay.astype(int) - src).max(axis=2)
    masks = [silhouette(out / "pair" / f"person_{k}", src.shape[:2]) for k in (0, 1)]
    for k, (mine, other) in enumerate((masks, masks[::-1])):
        own = mine & ~other
        assert own.sum() > 2000, k
        # (measured 0.80 and 0.81; a mesh not drawn changes only JPEG rounding there)
        assert (change[own] > 20).mean() > 0.75, f"person {k}'s mesh is not on the overlay"
    far = cv2.dilate((masks[0] | masks[1]).astype(np.uint8), np.ones((31, 31), np.uint8)) == 0
    assert far.mean() > 0.3 and change[far].mean() < 10


def silhouette(folder: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels hit by the person's OBJ vertices projected with its JSON camera."""
    verts, _ = read_obj_counts(folder / "output.obj")
    camera = json.loads((folder / "smplx_param.json").read_text())["camera"]
    (fx, fy), (cx, cy) = camera["focal"], camera["princpt"]
    u = np.round(verts[:, 0] / verts[:, 2] * fx + cx).astype(int)
    v = np.round(verts[:, 1] / verts[:, 2] * fy + cy).astype(int)
    inside = (u >= 0) & (u < image_hw[1]) & (v >= 0) & (v < image_hw[0])
    mask = np.zeros(image_hw, bool)
    mask[v[inside], u[inside]] = True
    return mask


@pytest.mark.slow  # fast loop: kept under 2 minutes
def test_unusual_pixel_formats_work(tmp_path, micro_ckpt_raw, body_dir):
    """Gray, RGBA and 16-bit PNGs (one run, one model load) give the mesh of the 8-bit RGB
    picture with the same pixels; the network's output depends on the pixels (gray != colour)."""
    rgb = person_image(240, 320, seed=3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "rgb.png", rgb)
    write_rgb(src / "gray_as_rgb.png", np.dstack([gray] * 3))
    cv2.imwrite(str(src / "gray.png"), gray)
    cv2.imwrite(str(src / "rgba.png"), np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 255, np.uint8)]))
    cv2.imwrite(str(src / "png16.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    out = tmp_path / "out"
    r = invoke("image", src, "-o", out, "--full-image", "--no-render", "--checkpoint", micro_ckpt_raw, "--body-models", body_dir)
    assert r.exit_code == 0, r.output

    def mesh(name: str) -> np.ndarray:
        verts, nfaces = read_obj_counts(out / name / "person_0" / "output.obj")
        params = json.loads((out / name / "person_0" / "smplx_param.json").read_text())
        assert verts.shape == (10475, 3) and nfaces == 20908 and params["camera"]["image_size"] == [240, 320], name
        return verts

    for kind, same_pixels in (("gray", "gray_as_rgb"), ("rgba", "rgb"), ("png16", "rgb")):
        np.testing.assert_allclose(mesh(kind), mesh(same_pixels), rtol=0, atol=1e-5, err_msg=kind)
    assert np.abs(mesh("gray") - mesh("rgb")).max() > 1e-3


def _bad_cases(tmp_path: Path, ckpt: Path, body_dir: Path):
    good = write_rgb(tmp_path / "good.jpg", person_image(240, 320, seed=4))
    notimg = tmp_path / "notes.png"
    notimg.write_text("hello\n")
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    damaged = tmp_path / "damaged.jpg"
    data = good.read_bytes()
    scan = data.index(b"\xff\xda") + 2
    middle = scan + (len(data) - scan) // 2
    damaged.write_bytes(data[:middle] + b"\xff\xd0" + data[middle + 2:])  # a stray marker mid-scan
    tiny = write_rgb(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    blank = write_rgb(tmp_path / "blank.png", np.full((320, 240, 3), 128, np.uint8))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04garbage" * 10)
    base = ["--checkpoint", ckpt, "--body-models", body_dir]
    return {
        "missing file": (["image", tmp_path / "nope.jpg", *base], "nope.jpg"),
        "non-image": (["image", notimg, *base], "notes.png"),
        "truncated jpeg": (["image", trunc, *base], "trunc.jpg"),
        "damaged jpeg": (["image", damaged, *base], "damaged.jpg: image file is truncated or corrupt"),
        "1x1 image": (["image", tiny, *base], "tiny.png"),
        "box outside": (["image", good, "--bbox", "5000,5000,50,100", *base], "outside"),
        "no person": (["image", blank, *base], "no person"),
        "corrupt checkpoint": (["image", good, "--checkpoint", corrupt, "--body-models", body_dir], "corrupt.pth"),
        "missing body model": (["image", good, "--checkpoint", ckpt, "--body-models", tmp_path / "empty"], "SMPL-X"),
        "missing checkpoint": (["image", good, "--checkpoint", tmp_path / "nope.pth", "--body-models", body_dir],
                               "nope.pth"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing file", "non-image", "truncated jpeg", "damaged jpeg", "1x1 image", "box outside", "no person", "corrupt checkpoint",
     "missing body model", "missing checkpoint"],
)
def test_bad_input_one_line_nonzero_no_output(tmp_path, micro_ckpt, body_dir, case):
    (tmp_path / "empty").mkdir()
    args, needle = _bad_cases(tmp_path, micro_ckpt, body_dir)[case]
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [str(a) for a in args] + ["-o", str(out)])
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle.lower() in errors[0].lower(), result.output
    if case == "missing checkpoint":  # found before the detector is chosen: no HOG notice first
        assert result.stderr.splitlines() == errors and "--checkpoint" in errors[0], result.stderr
    leftovers = [p for p in out.rglob("*")] if out.exists() else []
    assert leftovers == [], leftovers


def test_help_imports_neither_torch_nor_av():
    """``wbcap --help`` and every subcommand's ``--help`` (`wbcap run --help` imported numpy
    through the tracker's cut threshold) load none of the heavy packages."""
    from wbcap.cli import SUBCOMMANDS

    code = (
        "import sys\n"
        "from wbcap.cli import main\n"
        f"for args in [['--help'], *[[name, '--help'] for name in {sorted(SUBCOMMANDS)!r}]]:\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "    bad = [m for m in ('torch', 'av', 'cv2', 'numpy') if m in sys.modules]\n"
        "    assert not bad, (args, bad)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "image" in res.stdout and "--bbox" in res.stdout and "--cut-threshold" in res.stdout


def test_the_render_process_starts_before_torch_is_imported(tmp_path, micro_ckpt, body_dir):
    """`wbcap image` starts its render process before importing torch, so that the renderer's
    imports and GL set-up run beside torch's and the model's loading (README: Install). A
    constant moved into the torch-importing joints module made the SMPL-X file lookup import
    torch first: one photo took 0.7 s longer (3.1 against 2.4 s on the 2-core Zen 4)."""
    img = write_rgb(tmp_path / "p.jpg", person_image(64, 96, seed=1))
    code = (
        "import sys\n"
        "import wbcap.export.render_process as rp\n"
        "def probe(*args, **kwargs):\n"
        "    print('torch imported' if 'torch' in sys.modules else 'no torch yet', flush=True)\n"
        "    raise SystemExit(0)\n"
        "rp.RenderProcess.start_if_useful = staticmethod(probe)\n"
        "from wbcap.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    r = subprocess.run([sys.executable, "-c", code, "image", str(img), "-o", str(tmp_path / "out"), "--checkpoint",
                        str(micro_ckpt), "--body-models", str(body_dir), "--bbox", "1,1,40,80"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "WBCAP_RENDER_PROCESS": "1"})
    assert r.stdout == "no torch yet\n", (r.stdout, r.stderr)


def test_image_help_documents_every_flag():
    r = invoke("image", "--help")
    assert r.exit_code == 0
    from wbcap.cli.image import image

    for param in image.params:
        if isinstance(param, __import__("click").Option):
            assert param.help, f"{param.name} has no help"
            for opt in param.opts:
                assert opt in r.output, opt


@pytest.mark.slow  # full-size network
def test_demo_runs_and_says_it_is_a_pipeline_check(tmp_path, body_layer):
    from wbcap.paths import example_image_path

    out = tmp_path / "demo"
    r = invoke("demo", "-o", out, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "pipeline check" in r.output and "SMPLX_NEUTRAL.npz" in r.output and "snapshot_6.pth.tar" in r.output
    assert "--max-people" not in r.output  # (the demo's own limit: it told the user to raise it; a user trial)
    people = list((out / "example").glob("person_*"))
    assert people
    hw = cv2.imread(str(example_image_path())).shape[:2]
    for folder in people:  # the demo's synthetic body model is the tests' one
        check_person_folder(folder, hw, body_layer)


def test_demo_prints_results_on_stdout_and_nothing_with_q(tmp_path, monkeypatch):
    """The demo's lines as image's (shared format, stdout), an error line on stderr, -q silent
    but for the error; the pipeline itself is the slow tests' business (run_demo stubbed)."""
    import wbcap.demo
    from wbcap.image_app import ImageResult

    results = [ImageResult(Path("example.jpg"), tmp_path / "example", 2, None),
               ImageResult(Path("bad.jpg"), None, 0, "bad.jpg: not an image; pass a JPEG or PNG")]
    monkeypatch.setattr(wbcap.demo, "run_demo", lambda out, **kw: (results, "hog"))
    r = invoke("demo", "-o", tmp_path)
    assert r.exit_code == 2
    lines = r.stdout.splitlines()  # (after a failure no detector line: the README's "only the error")
    assert lines[0] == f"example.jpg: 2 person(s) -> {tmp_path / 'example'}" and "detector:" not in r.stdout
    assert "pipeline check" not in r.stdout  # (after a failure the error is the news, not "add two files")
    assert r.stderr == "error: bad.jpg: not an image; pass a JPEG or PNG\n"
    r = invoke("-q", "demo", "-o", tmp_path)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == "error: bad.jpg: not an image; pass a JPEG or PNG\n"


def test_demo_lists_only_the_files_still_missing(tmp_path, monkeypatch, body_dir, small_ckpt):
    import wbcap.demo
    from wbcap.image_app import ImageResult

    results = [ImageResult(Path("example.jpg"), tmp_path / "example", 1, None)]
    monkeypatch.setattr(wbcap.demo, "run_demo", lambda out, **kw: (results, "hog"))
    r = invoke("demo", "-o", tmp_path)
    assert r.exit_code == 0 and "pipeline check" in r.stdout and "add two files" in r.stdout
    assert r.stdout.startswith("detector: hog (the better YOLOX-nano is not installed: `wbcap weights fetch "
                               "yolox-nano`)\n"), r.stdout
    assert "SMPLX_NEUTRAL.npz" in r.stdout and "wbcap weights import hand4whole" in r.stdout
    import wbcap.weights

    # (offline, its download just failed: the fetch it named would fail again, a new user's trial)
    failure = wbcap.weights.recent_auto_failure
    monkeypatch.setattr(wbcap.weights, "recent_auto_failure", lambda name: ("2026-12-06T04:00", "no network"))
    assert invoke("demo", "-o", tmp_path).stdout.startswith(
        "detector: hog (the better YOLOX-nano is not installed: its download failed: `wbcap weights import yolox-nano "
        "FILE` with a copy from a machine with internet, or `wbcap weights fetch yolox-nano` once online)\n")
    monkeypatch.setattr(wbcap.weights, "recent_auto_failure", failure)
    monkeypatch.setenv("WBCAP_WEIGHTS", str(small_ckpt))
    r = invoke("demo", "-o", tmp_path)
    assert "add one file:\n  1. SMPL-X neutral: SMPLX_NEUTRAL.npz not found in" in r.stdout, r.stdout
    assert "register at https://smpl-x.is.tue.mpg.de" in r.stdout
    assert "wbcap weights import" not in r.stdout
    monkeypatch.setenv("WBCAP_BODY_MODELS", str(body_dir))
    r = invoke("demo", "-o", tmp_path)
    assert r.stdout.splitlines()[-1] == ("The SMPL-X model and the checkpoint are installed: run wbcap image "
                                         "your_photo.jpg -o out/"), r.stdout


def test_logs_go_to_stderr_not_stdout():
    """A subcommand's log lines must not pollute stdout (machine-readable output goes there), and
    to a pipe each record is one plain line, however long (not wrapped at 80 columns or padded)."""
    long = "LOGLINE " + "x" * 150
    code = (
        "import logging, sys\n"
        "from wbcap.cli import main\n"
        "try:\n    main(['-v', 'weights', 'list'])\nexcept SystemExit:\n    pass\n"
        f"logging.getLogger('wbcap.test').warning({long!r})\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "LOGLINE" in res.stderr and "LOGLINE" not in res.stdout, (res.stdout, res.stderr)
    assert f"WARNING  {long}" in res.stderr.splitlines()


# -- output folder names: no two inputs share a folder (issue 10, item 5) ------------------------


def test_output_names_rule():
    from wbcap.errors import InputError
    from wbcap.export.image_outputs import output_names

    # unique stems: OUT/<stem>/ as always
    assert output_names(["p/a.jpg", "q/b.png", "c.JPG"]) == ["a", "b", "c"]
    # the same stem in two folders: paths under the common folder, without the extension
    assert output_names(["in/cam1/0001.jpg", "in/cam1/0002.jpg", "in/cam2/0001.jpg"]) == [
        "cam1/0001", "cam1/0002", "cam2/0001"]
    # names that differ only in the extension keep it; the others stay short
    assert output_names(["d/a.jpg", "d/a.png", "d/b.jpg"]) == ["a.jpg", "a.png", "b"]
    assert output_names(["x/a.jpg", "x/sub/a.jpg", "x/sub/a.png"]) == ["a", "sub/a.jpg", "sub/a.png"]
    # a clash that remains is refused, naming both inputs
    with pytest.raises(InputError) as info:
        output_names(["d/A.jpg", "d/a.jpg"])  # one folder on a case-insensitive file system
    assert str(info.value) == ("d/A.jpg and d/a.jpg would both be written to the output folder A.jpg/ on a disk that "
                               "does not tell upper from lower case (macOS, Windows); rename one of them or process "
                               "them in separate runs with different output folders")
    with pytest.raises(InputError) as info:
        output_names(["x/cam1.jpg", "x/cam1/0001.jpg", "x/cam2/0001.jpg"])  # cam1/ would hold cam1/0001/
    assert "x/cam1.jpg" in str(info.value) and "x/cam1/0001.jpg" in str(info.value)


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_same_stems_in_two_folders_and_two_formats_keep_every_result(tmp_path, micro_args, monkeypatch):
    src = tmp_path / "in"
    (src / "cam1").mkdir(parents=True)
    (src / "cam2").mkdir()
    sizes = {"cam1/0001.jpg": (160, 120), "cam2/0001.jpg": (200, 150), "cam2/0001.png": (96, 128)}
    for rel, (h, w) in sizes.items():
        write_rgb(src / rel, person_image(w, h, seed=len(rel)))
    out = tmp_path / "out"
    r = invoke("image", src / "cam1", src / "cam2", "-o", out, "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 0, r.output
    folders = {"cam1/0001.jpg": "cam1/0001", "cam2/0001.jpg": "cam2/0001.jpg", "cam2/0001.png": "cam2/0001.png"}
    for rel, folder in folders.items():
        params = json.loads((out / folder / "person_0" / "smplx_param.json").read_text())
        h, w = sizes[rel]
        assert params["image"] == Path(rel).name and params["camera"]["image_size"] == [w, h], folder
    assert sorted(str(p.relative_to(out)) for p in out.rglob("person_0")) == sorted(f"{f}/person_0" for f in folders.values())
    assert "wbcap view" not in r.output  # (stderr no terminal: no hint)
    monkeypatch.setattr("wbcap.cli.common.stderr_is_terminal", lambda: True)  # (a person watching: how to look)
    spaced = tmp_path / "my out"
    r = invoke("image", src / "cam1", "-o", spaced, "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 0 and r.stderr.splitlines()[-1] == (f"next: wbcap view '{spaced}'   (the results in a web "
                                                              "browser)"), r.stderr
    monkeypatch.chdir(tmp_path)  # (a folder named like an option, or with a newline: pasted, the same folder)
    for out, word in (("-dash", "./-dash"), ("nl\nname", "$'nl\\x0aname'")):
        r = invoke("image", src / "cam1", "-o", out, "--full-image", "--no-render", *micro_args)
        assert r.exit_code == 0 and r.stderr.splitlines()[-1] == f"next: wbcap view {word}   (the results in a web browser)"


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_ctrl_c_in_a_folder_says_how_many_photos_were_done(tmp_path, micro_args, monkeypatch):
    """A user trial: Ctrl-C in the third of six photos printed "interrupted" alone. It says how
    many were done, where, and what the same command does again; one photo says nothing more."""
    import wbcap.export.image_outputs as image_outputs

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        write_rgb(src / f"p{i}.jpg", person_image(120, 160, seed=i))
    real, calls = image_outputs.write_image_outputs, []

    def stopped_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(image_outputs, "write_image_outputs", stopped_at_the_third)
    out = tmp_path / "out"
    r = invoke("image", src, "-o", out, "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 130, r.output
    assert r.stderr.splitlines()[-2:] == [
        f"stopped after 2 of 4 photos (the results of 2 are in {out}); the same command with --skip-done finishes the "
        "others", "interrupted"], r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0", "p1"]
    # --skip-done finishes them (a batch trial: the same command did every photo again), the done ones untouched
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    calls.clear()
    monkeypatch.setattr(image_outputs, "write_image_outputs", real)
    r = invoke("image", src, "-o", out, "--full-image", "--no-render", "--skip-done", *micro_args)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[:2] == [f"p{i}.jpg: 1 person(s) -> {out / f'p{i}'} (done before: --skip-done)"
                                         for i in (0, 1)], r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["p0", "p1", "p2", "p3"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    write_rgb(src / "p1.jpg", person_image(120, 160, seed=9))  # (another picture under the name: done again)
    (out / "p2" / "person_0" / "output.obj").unlink()  # (a result with a file deleted since: done again)
    r = invoke("image", src, "-o", out, "--full-image", "--no-render", "--skip-done", *micro_args)
    assert [line.endswith("(done before: --skip-done)") for line in r.stdout.splitlines()] == [True, False, False, True]
    # a result without the files now asked for is not done (a second break-it review's question)
    r = invoke("image", src / "p3.jpg", "-o", out, "--full-image", "--no-render", "--skip-done", "--openpose",
               *micro_args)
    assert r.exit_code == 0 and "done before" not in r.stdout and (out / "p3" / "person_0" / "output_keypoints.json").is_file()
    # what --skip-done looks for is what the writer writes (the names live in both)
    from wbcap.export.animation import AnimationExport
    from wbcap.export.image_outputs import result_files

    assert sorted(p.name for p in (out / "p3" / "person_0").iterdir()) == sorted(result_files(False, True, None))
    r = invoke("image", src / "p3.jpg", "-o", out, "--full-image", "--export", "npz,csv", *micro_args)
    assert sorted(p.name for p in (out / "p3" / "person_0").iterdir()) == sorted(
        result_files(True, False, AnimationExport.parse("npz,csv")))
    # all done before: nothing is read or loaded, the detector included (a break-it review)
    with monkeypatch.context() as patched:
        patched.setattr("wbcap.io.images.load_image", lambda *a, **k: pytest.fail("a photo done before was read"))
        patched.setattr("wbcap.image_app.make_detector", lambda *a, **k: pytest.fail("the detector was made"))
        r = invoke("image", src, "-o", out, "--no-render", "--skip-done", *micro_args)
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 4, r.output
    monkeypatch.setattr(image_outputs, "write_image_outputs", stopped_at_the_third)
    # photos that failed are not said to have results (a review: "their results are in" a folder never made)
    (src / "p0.jpg").write_text("not an image")
    calls.clear()  # (p0 fails before its write: the third write is p3's)
    r = invoke("image", src, "-o", tmp_path / "out2", "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 130 and r.stderr.splitlines()[-2] == (
        f"stopped after 3 of 4 photos (the results of 2 are in {tmp_path / 'out2'}, 1 failed); the same command with "
        "--skip-done finishes the others"), r.stderr
    calls.clear()
    calls.extend([1, 1])  # (one photo: the third call is its first)
    r = invoke("image", src / "p1.jpg", "-o", tmp_path / "one", "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 130 and r.stderr.splitlines()[-1] == "interrupted" and "stopped after" not in r.stderr


def test_name_clash_is_refused_before_any_work(tmp_path, micro_args):
    (tmp_path / "d").mkdir()
    a, b = (write_rgb(tmp_path / "d" / n, person_image(96, 128, seed=1)) for n in ("cam1.jpg", "x.jpg"))
    (tmp_path / "d" / "cam1").mkdir()
    c = write_rgb(tmp_path / "d" / "cam1" / "x.jpg", person_image(96, 128, seed=2))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["image", str(a), str(b), str(c), "-o", str(out), "--full-image", *map(str, micro_args)])
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2 and len(errors) == 1, r.output
    assert str(a) in errors[0] and str(c) in errors[0]
    assert not out.exists()


def test_rerun_replaces_earlier_result_but_never_a_foreign_folder(tmp_path, micro_args):
    img = write_rgb(tmp_path / "pair.png", person_image(160, 120, seed=2, people=2))
    out = tmp_path / "out"
    r = invoke("image", img, "-o", out, "--bbox", "5,5,70,110", "--bbox", "85,5,70,110", "--no-render", *micro_args)
    assert r.exit_code == 0 and sorted(p.name for p in (out / "pair").iterdir()) == ["person_0", "person_1"]
    r = invoke("image", img, "-o", out, "--bbox", "85,5,70,110", "--no-render", *micro_args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "pair").iterdir()) == ["person_0"]  # no stale person_1
    assert json.loads((out / "pair" / "person_0" / "smplx_param.json").read_text())["bbox_xywh"] == [85, 5, 70, 110]
    # a folder of the user's with the same name is refused, not deleted
    mine = tmp_path / "out2" / "pair"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me\n")
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out2"), "--full-image", *map(str, micro_args)])
    assert r.exit_code == 2 and "not a wbcap image result" in r.output and str(mine) in r.output, r.output
    assert (mine / "notes.txt").read_text() == "keep me\n" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    # a link there, to an earlier result: said as a link (it was "exists and is not a folder": a break-it trial)
    linked = tmp_path / "out3" / "pair"
    linked.parent.mkdir()
    linked.symlink_to(out / "pair")
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out3"), "--full-image", *map(str, micro_args)])
    assert r.exit_code == 2 and (f"{linked}: is a symbolic link, which a new result would replace (not what it leads "
                                 "to); move it away or choose another -o folder") in r.output, r.output
    assert linked.is_symlink() and sorted(p.name for p in (out / "pair").iterdir()) == ["person_0"]


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_failed_rerun_says_the_earlier_result_was_left_unchanged(tmp_path, micro_args):
    """A rerun into the same -o that fails for an image leaves that image's earlier result in
    place: its error line says so, naming the folder, so the old files are not taken for new
    ones (found by a user trial); also when the one image cannot be read (refused early)."""
    img = write_rgb(tmp_path / "pair.png", person_image(160, 120, seed=2, people=2))
    other = write_rgb(tmp_path / "other.png", person_image(160, 120, seed=3))
    out = tmp_path / "out"
    assert invoke("image", img, "-o", out, "--full-image", "--no-render", *micro_args).exit_code == 0
    before = {p: p.read_bytes() for p in (out / "pair").rglob("*") if p.is_file()}
    r = invoke("image", img, other, "-o", out, "--bbox", "5000,5000,50,100", "--no-render", *micro_args)
    lines = r.stderr.splitlines()
    assert r.exit_code == 2 and len(lines) == 3, r.stderr
    assert lines[2] == f"2 of 2 photos failed ({img}, {other}: each said above)", r.stderr
    assert lines[0].startswith(f"error: {img}: box 5000,5000,50,100") and lines[0].endswith(
        f"; its earlier result in {out / 'pair'} was left unchanged"), r.stderr
    assert lines[1].startswith(f"error: {other}:") and "earlier result" not in lines[1], r.stderr  # (none there)
    img.write_text("not a picture any more")
    r = invoke("image", img, "-o", out, "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 2 and r.stderr == (f"error: {img}: not an image wbcap can decode; pass a JPEG, PNG, BMP, "
                                             f"TIFF, WebP, GIF, AVIF or HEIC file; its earlier result in {out / 'pair'} was left "
                                             "unchanged\n"), r.stderr
    assert {p: p.read_bytes() for p in (out / "pair").rglob("*") if p.is_file()} == before


# -- stages and smplx_param.json fields -----------------------------------------------------------


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_one_image_reports_stages_and_json_boxes_follow_person(tmp_path, micro_ckpt, body_dir):
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.export.params_json import FORMAT, read_params_json
    from wbcap.image_app import STAGES, ImageJob, run_images
    from wbcap.io.images import load_image
    from wbcap.pipeline import Pipeline

    img_path = write_rgb(tmp_path / "walker.jpg", person_image(200, 260, seed=5))
    cfg = PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt), device="cpu")
    box = (30.0, 20.0, 120.0, 220.0)
    stages = []
    job = ImageJob(paths=(str(img_path),), out=str(tmp_path / "out"), pipeline=cfg, boxes=(box,))
    (result,) = run_images(job, on_stage=lambda name, path: stages.append((name, path)))
    assert result.error is None and result.people == 1
    # the photo is read before the model is loaded (an unreadable one is refused at once)
    assert stages == [("reading", img_path), ("loading model", None)] + [(s, img_path) for s in ("regressing", "rendering",
                                                                                                 "writing")]
    job = ImageJob(paths=(str(img_path),), out=str(tmp_path / "out2"), pipeline=cfg, detector="full", render=False)
    pipe = Pipeline.from_config(cfg)
    stages.clear()
    run_images(job, pipeline=pipe, on_stage=lambda name, path: stages.append(name))
    assert stages == ["reading", "loading detector", "detecting", "regressing", "writing"]
    assert set(stages) <= set(STAGES)

    # the JSON's boxes are the Person's fields (all x, y, w, h), under names that say their convention
    (person,) = pipe(load_image(img_path), boxes=[box])
    raw = json.loads((tmp_path / "out" / "walker" / "person_0" / "smplx_param.json").read_text())
    assert raw["format"] == FORMAT == "wbcap.params/2"
    assert not {"bbox", "crop_bbox", "lhand_bbox", "rhand_bbox", "face_bbox"} & set(raw)
    assert raw["bbox_xywh"] == list(box)
    np.testing.assert_allclose(raw["crop_bbox_xywh"], person.crop_box, atol=1e-4)
    for key, (bx, by, bw, bh) in (("lhand_bbox_xyxy", person.lhand_box), ("rhand_bbox_xyxy", person.rhand_box),
                                  ("face_bbox_xyxy", person.face_box)):
        np.testing.assert_allclose(raw[key], (bx, by, bx + bw, by + bh), atol=1e-3, err_msg=key)
    x, y, w, h = raw["crop_bbox_xywh"]
    for key in ("lhand_bbox_xyxy", "rhand_bbox_xyxy", "face_bbox_xyxy"):
        x1, y1, x2, y2 = raw[key]  # corners: their mean is the predicted centre, inside the crop
        assert x <= (x1 + x2) / 2 <= x + w and y <= (y1 + y2) / 2 <= y + h, key  # xywh: the crop is the box made 3:4 and enlarged about its centre
    assert w / h == pytest.approx(0.75, abs=1e-4)  # upstream's sanitize first takes w - 1, h - 1
    assert (x + w / 2, y + h / 2) == pytest.approx((box[0] + (box[2] - 1) / 2, box[1] + (box[3] - 1) / 2), abs=1e-3)
    assert h == pytest.approx((box[3] - 1) * 1.25, abs=1e-3)
    assert read_params_json(tmp_path / "out" / "walker" / "person_0" / "smplx_param.json")["face_bbox_xyxy"] == raw["face_bbox_xyxy"]


def test_params_format_1_is_read_with_new_box_names(tmp_path):
    from wbcap.export.params_json import read_params_json

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "wbcap.params/1", "bbox": [1, 2, 3, 4], "crop_bbox": [0, 0, 6, 8],
                                "lhand_bbox": [1, 1, 2, 2], "rhand_bbox": [2, 2, 3, 3], "face_bbox": [3, 3, 4, 4],
                                "shape": [0.5]}))
    back = read_params_json(path)
    assert back == {"bbox_xywh": [1, 2, 3, 4], "crop_bbox_xywh": [0, 0, 6, 8], "lhand_bbox_xyxy": [1, 1, 2, 2],
                    "rhand_bbox_xyxy": [2, 2, 3, 3], "face_bbox_xyxy": [3, 3, 4, 4], "shape": [0.5]}


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_pipeline_accepts_detector_names(micro_ckpt, body_dir):
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.errors import InputError
    from wbcap.pipeline import Pipeline

    pipe = Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt), device="cpu"))
    image = person_image(120, 160, seed=3)
    (person,) = pipe(image, detector="full")
    assert tuple(person.box) == (0.0, 0.0, 120.0, 160.0) and person.box.dtype == np.float64
    assert pipe.detector("hog") is pipe.detector("hog")  # built once
    assert pipe.detector("hog").name == "hog"
    with pytest.raises(InputError, match="unknown detector 'nope'"):
        pipe(image, detector="nope")
    with pytest.raises(InputError, match="boxes="):
        pipe(image, detector="boxes:b.json")
    # what a user's PyTorch code meets (a user trial): the parameters are ordinary tensors, not
    # inference-mode ones, so they can be edited and start an optimisation
    params = person.params
    assert not any(t.is_inference() for t in params.values())
    params.body_pose.requires_grad_()
    params.transl[0, 2] += 1.0
    # a torch tensor for the boxes is 4 numbers like a list; for the image a clear refusal
    import torch

    (same,) = pipe(image, boxes=torch.tensor([[0.0, 0.0, 120.0, 160.0]]))
    assert torch.equal(same.params.betas, person.params.betas)
    with pytest.raises(InputError, match=r"expected a numpy array \(H, W, 3\) uint8 RGB, got Tensor; a torch tensor: "
                                         r"pass tensor.cpu\(\).numpy\(\)"):
        pipe(torch.from_numpy(image), boxes=[(0, 0, 120, 160)])
    # the other common mistakes say how to fix them (only what was expected was said: an API trial)
    from PIL import Image

    mistakes = {"floats in 0..1: pass (image * 255).round().clip(0, 255).astype(np.uint8)": image / 255.0,
                "channels first (C, H, W): pass image.transpose(1, 2, 0)": image.transpose(2, 0, 1),
                "RGBA: pass image[:, :, :3]": np.dstack([image, image[:, :, :1]]),
                "one image, not a batch: pass image[0]": image[None],
                "grey: pass np.repeat(": image[:, :, 0],
                "a PIL image: pass np.asarray(im.convert('RGB'))": Image.fromarray(image),
                "floats in 0..255: pass image.round().clip(0, 255).astype(np.uint8)": image.astype(np.float32)}
    for fix, wrong in mistakes.items():
        with pytest.raises(InputError) as info:
            pipe(wrong, boxes=[(0, 0, 120, 160)])
        assert f"; {fix}" in str(info.value), str(info.value)
    fixed = (image / 255.0 * 255).round().clip(0, 255).astype(np.uint8)  # (the advice works)
    assert np.array_equal(fixed, image)
    # a detector object's boxes follow the rule of boxes given; boxes and a detector exclude each other
    import math

    from wbcap.detect.base import Detection

    with pytest.raises(InputError, match=r"box 0 of the <lambda> detector must be 4 numbers .* returns "
                                         r"wbcap.detect.base.Detection\(\(x, y, w, h\), score\)"):
        pipe(image, detector=lambda im: [(0, 0, 10, 10, 0.9)])
    with pytest.raises(InputError, match="box 0 of the <lambda> detector"):
        pipe(image, detector=lambda im: [Detection((0.0, 0.0, math.inf, 10.0), 0.9)])
    # (an empty box from a detector is skipped with the others, as before: not refused)
    (kept,) = pipe(image, detector=lambda im: [Detection((5.0, 5.0, 0.0, 10.0), 0.9), Detection((0.0, 0.0, 120.0, 160.0), 0.8)])
    assert tuple(kept.box) == (0.0, 0.0, 120.0, 160.0)
    with pytest.raises(InputError, match="give the boxes or a detector to find them, not both"):
        pipe(image, boxes=[(0, 0, 120, 160)], detector="full")
    for bad in (0, -3, 2.5, "3", True):  # (0 ran one crop a call, unsaid)
        with pytest.raises(InputError, match=f"batch_size must be a whole number of 1 or more, got {bad!r}"):
            PipelineConfig(batch_size=bad)
    # a Detection holding a tensor box (one that requires grad too) and a tensor score
    grad_box = torch.tensor([0.0, 0.0, 120.0, 160.0], requires_grad=True)
    (from_tensor,) = pipe(image, boxes=[Detection(grad_box, torch.tensor(0.7))])
    assert tuple(from_tensor.box) == (0.0, 0.0, 120.0, 160.0) and from_tensor.score == pytest.approx(0.7)
    with pytest.raises(InputError, match=r"boxes\[0\] score must be a finite number .*; give its score as a finite "
                                         r"number \(1.0 for a box you are sure of\)$"):
        pipe(image, boxes=[Detection((0.0, 0.0, 120.0, 160.0), None)])
    # what an API trial met: one box given bare, a detector returning None, crop() of tuples and
    # of a NaN box, an unknown name pointing at boxes:FILE, a precision in capitals
    for bare in ((0, 0, 120, 160), np.array([0, 0, 120, 160]), torch.tensor([0.0, 0.0, 120.0, 160.0])):  # (a tensor's: a trial)
        with pytest.raises(InputError, match=r"boxes is a list of boxes: for one box, boxes=\[\(x, y, w, h\)\]$"):
            pipe(image, boxes=bare)
    with pytest.raises(InputError, match=r"^image: the <lambda> detector returned NoneType, not a list of boxes"):
        pipe(image, detector=lambda im: None)
    (job,) = pipe.crop(image, [(0, 0, 120, 160)])
    assert tuple(job.detection.box) == (0.0, 0.0, 120.0, 160.0)
    with pytest.raises(InputError, match=r"boxes\[0\]"):
        pipe.crop(image, [(math.nan, 0.0, 120.0, 160.0)])
    kept = Detection((0.0, 0.0, 120.0, 160.0), 0.5)
    assert pipe.crop(image, [kept])[0].detection is kept  # (a detector's own, as it is)
    for huge in (math.inf, 1e300, 10**400):  # (a Detection's infinite box was cropped: a hostile trial)
        with pytest.raises(InputError, match=r"boxes\[1\]"):
            pipe.crop(image, [kept, Detection((0.0, 0.0, huge, 160.0), 1.0)])
    with pytest.raises(InputError, match=r"unknown detector 'yolo'; .* \(from Python, pass boxes with "
                                         r"pipe\(image, boxes=\[\(x, y, w, h\), \.\.\.\]\) rather than boxes:FILE\)$"):
        pipe(image, detector="yolo")
    assert Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=str(body_dir)), checkpoint=str(micro_ckpt),
                                               device="cpu", precision="FAST")).precision.value == "fast"


def test_boxes_file_refuses_two_inputs_with_one_file_name(tmp_path):
    from wbcap.errors import InputError
    from wbcap.image_app import ImageJob, run_images

    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam2").mkdir()
    a = write_rgb(tmp_path / "cam1" / "0001.jpg", person_image(64, 96, seed=1))
    b = write_rgb(tmp_path / "cam2" / "0001.jpg", person_image(64, 96, seed=2))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"0001.jpg": [[0, 0, 64, 96]]}))
    job = ImageJob(paths=(str(a), str(b)), out=str(tmp_path / "out"), boxes_file=str(boxes))
    with pytest.raises(InputError) as info:
        run_images(job)  # refused before the (absent) model is looked for
    assert str(a) in str(info.value) and str(b) in str(info.value) and "boxes.json" in str(info.value)


def test_an_unreadable_photo_or_output_folder_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    """One photo that cannot be decoded, an output folder under a file, one in a folder that
    cannot be written in: one line each, at once (they used to come after loading the model:
    seconds, or tens of seconds on a machine's first run)."""
    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a picture")
    r = invoke("image", fake, "-o", tmp_path / "out", "--full-image")
    assert r.exit_code == 2 and r.stderr.startswith(f"error: {fake}: not an image") and r.stderr.count("\n") == 1
    photo = write_rgb(tmp_path / "p.jpg", person_image(120, 160))
    (tmp_path / "afile").write_text("x")
    r = invoke("image", photo, "-o", tmp_path / "afile" / "out", "--full-image")
    assert r.exit_code == 2 and r.stderr == (f"error: {tmp_path / 'afile'}: is a file, so {tmp_path / 'afile' / 'out'} "
                                             "cannot be created; choose another output folder\n"), r.stderr
    if Path("/dev/null").exists():  # (a device is not called a file)
        r = invoke("image", photo, "-o", "/dev/null", "--full-image")
        assert r.exit_code == 2 and r.stderr == ("error: /dev/null: is not a folder, so /dev/null cannot be created; "
                                                 "choose another output folder\n"), r.stderr
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    r = invoke("image", photo, "-o", tmp_path / "out", "--full-image")
    assert r.exit_code == 2 and r.stderr == (f"error: {tmp_path}: cannot create {tmp_path / 'out'} in this folder "
                                             "(read-only or no permission); choose another output folder\n"), r.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_too_small_for_any_box_is_one_line_without_contradictory_advice(tmp_path, monkeypatch):
    """A 1-pixel-high image with --full-image said its box lay outside or was empty and to pass
    --full-image (found by a user trial): no box fits such an image, so one line says that, for
    every way of giving boxes, before the model loads."""
    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    for hw in ((1, 1), (1, 50), (50, 1)):
        img = write_rgb(tmp_path / f"thin{hw[0]}x{hw[1]}.png", np.zeros((*hw, 3), np.uint8))
        for how in (["--full-image"], ["--bbox", "0,0,1,1"], ["--detector", "hog"]):
            r = invoke("image", img, "-o", tmp_path / "out", *how)
            assert r.exit_code == 2 and r.stderr == (
                f"error: {img}: the image is {hw[1]}x{hw[0]} pixels, too small to hold a person box (it needs at "
                "least 2 pixels a side); use a larger image\n"), r.stderr
    assert not (tmp_path / "out").exists()


def test_a_bbox_beyond_any_image_is_refused_naming_bbox(tmp_path, monkeypatch):
    """`--bbox 0,0,1e39,10` ran with a numpy overflow warning (float32) (found by a user trial): a
    number beyond 2**24 pixels is a usage error naming --bbox, before anything loads."""
    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    img = write_rgb(tmp_path / "p.png", person_image(96, 128, seed=1))
    for box in ("0,0,1e39,10", "-1e20,0,10,10", "0,0,10,16777217"):
        r = invoke("image", img, "-o", tmp_path / "out", "--bbox", "0,0,10,10", "--bbox", box)
        assert r.exit_code == 2, r.output
        assert r.stderr == (f"error: Invalid value for '--bbox': box '{box}': every number must be finite and "
                            "within 16,777,216 pixels (x,y: the top-left corner, w,h: the size, in the image's "
                            "pixels) (see 'cli image --help')\n"), r.stderr
    assert not (tmp_path / "out").exists()


#: Box files with a number no box may hold (JSON text: json.loads reads NaN, Infinity and 1e400
#: as floats, a 400-digit integer as an int that no float holds).
OUT_OF_RANGE_BOXES = {"1e39": "[0, 0, 1e39, 10]", "nan": "[NaN, 0, 10, 10]", "inf": "[0, 0, 10, Infinity]",
                      "-1e400": "[-1e400, 0, 10, 10]", "400 digits": f"[0, 0, 10, 1{'0' * 400}]",
                      "2**24 + 1": "[0, 0, 16777217, 10]"}
BOX_RANGE_RULE = ("every number must be finite and within 16,777,216 pixels (x,y: the top-left corner, w,h: the size, in the "
                  "image's pixels); fix the box file")


@pytest.mark.parametrize("number", OUT_OF_RANGE_BOXES)
def test_a_box_file_number_beyond_any_image_is_one_line_naming_the_file(tmp_path, monkeypatch, number):
    """`--boxes` with 1e39 ran with a numpy float32 overflow warning while --bbox was refused:
    the box file follows --bbox's rule (wbcap.detect.boxes), in one line naming the file, the
    entry and the box, before the model loads, with no warning and nothing written."""
    import warnings

    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    img = write_rgb(tmp_path / "p.png", person_image(96, 128, seed=1))
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"p.png": [[10, 10, 40, 60], ' + OUT_OF_RANGE_BOXES[number] + "]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = invoke("image", img, "-o", tmp_path / "out", "--boxes", boxes)
    assert r.exit_code == 2 and r.stderr == f"error: {boxes}: entry 'p.png' box 1: {BOX_RANGE_RULE}\n", r.stderr
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert "overflow" not in r.output.lower() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["image", "run"])
def test_export_none_with_other_formats_says_none_stands_alone(tmp_path, monkeypatch, command):
    """`--export none,glb` said "unknown format none" (found by a user trial): one line saying
    none stands alone, before anything loads; `none,none` is none."""
    import wbcap.pipeline

    monkeypatch.setattr(wbcap.pipeline.Pipeline, "from_config", lambda *a, **k: pytest.fail("the model was loaded"))
    img = write_rgb(tmp_path / "p.png", person_image(96, 128, seed=1))
    for formats in ("none,glb", "bvh, NONE"):
        r = invoke(command, img, "-o", tmp_path / "out", "--export", formats)
        assert r.exit_code == 2 and r.stderr == (f"error: --export {formats}: none means no animation files and cannot "
                                                 "be combined with formats; give none alone or only the formats "
                                                 "wanted\n"), r.stderr
    assert not (tmp_path / "out").exists()
    from wbcap.cli.common import parse_export

    assert parse_export("none,none", exact=False).formats == ()


def test_a_box_file_entry_with_no_box_says_nobody_is_there(tmp_path, micro_ckpt, body_dir, monkeypatch):
    """`{"pic.png": []}`: the entry exists and lists nobody (it was "no entry for 'pic.png'"); and
    as the README has `[]` say, an image with nobody is no failure: it was refused with exit
    status 2 and "add the person boxes" (a photo user's trial)."""
    import json

    from wbcap.testing.images import person_image

    monkeypatch.setattr("wbcap.cli.common.stderr_is_terminal", lambda: True)  # (a person watching: the view hint)
    img = write_rgb(tmp_path / "pic.png", person_image(96, 128, seed=1))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"pic.png": []}))
    args = ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu", "--no-render"]
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out"), "--boxes", str(boxes), *args])
    assert r.exit_code == 0, r.output
    assert r.stdout == "pic.png: 0 person(s) (its entry in the box file lists none; nothing written)\n", r.output
    assert "no entry for" not in r.output and "next: wbcap view" not in r.output  # (nothing to view)
    assert not (tmp_path / "out" / "pic").exists()
    # an earlier result of the image stays, and is said to (a review: it looked like this run's)
    assert CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out"), "--bbox", "10,10,60,100",
                                    *args]).exit_code == 0
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out"), "--boxes", str(boxes), *args])
    assert r.exit_code == 0 and r.stdout == (
        "pic.png: 0 person(s) (its entry in the box file lists none; nothing written; its earlier result in "
        f"{tmp_path / 'out' / 'pic'} was left unchanged)\n"), r.output
    assert (tmp_path / "out" / "pic" / "person_0" / "smplx_param.json").is_file()
    from wbcap.image_app import ImageJob

    with pytest.raises(ValueError, match=r"^boxes \(\) holds no box"):  # (in Python: it ended silently, a review)
        ImageJob(paths=(str(img),), out=str(tmp_path / "o"), boxes=())


def test_detector_boxes_file_is_the_boxes_option(tmp_path, micro_ckpt, body_dir):
    """`wbcap image --detector boxes:FILE` (wbcap run's spelling, which image's detector list
    names) crashed with "'BoxesFileDetector' object is not callable"; it is --boxes FILE, one of
    the ways to give boxes (with another, a usage error: --full-image won silently), its messages
    name it, and `boxes:` with no file is refused (it ran the default detector)."""
    import json

    from wbcap.testing.images import person_image

    img = write_rgb(tmp_path / "pic.png", person_image(96, 128, seed=1))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"pic.png": [[10, 10, 60, 100]]}))
    model = ["--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu", "--no-render"]
    other = write_rgb(tmp_path / "other.png", person_image(96, 128, seed=2))  # (no entry in the file)
    for name, how in (("a", ["--boxes", str(boxes)]), ("b", ["--detector", f"boxes:{boxes}"])):
        # an input without an entry: refused before any work (a user trial: the photos before it were
        # written, then it failed)
        r = CliRunner().invoke(cli, ["image", str(img), str(other), "-o", str(tmp_path / name), *how, *model])
        assert r.exit_code == 2 and not (tmp_path / name).exists(), r.output
        flag = how[0] if name == "a" else "--detector boxes:FILE"
        assert r.stderr == (f"error: {boxes}: no entry for 'other.png'; add its boxes (an empty list for an "
                            f"image with nobody) or drop {flag}\n"), r.output
        r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / name), *how, *model])
        assert r.exit_code == 0 and (tmp_path / name / "pic" / "person_0").is_dir(), r.output
    read = [json.loads((tmp_path / n / "pic" / "person_0" / "smplx_param.json").read_text()) for n in "ab"]
    assert read[0] == read[1] and not (tmp_path / "a" / "pic" / "person_1").exists()
    for other in (["--bbox", "1,1,20,20"], ["--full-image"], ["--boxes", str(boxes)]):  # (--full-image won, silently)
        r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "c"), "--detector", f"boxes:{boxes}",
                                     *other, *model])
        assert r.exit_code == 2 and r.stderr == (
            "error: use only one of --bbox, --boxes, --detector boxes:FILE and --full-image (see 'cli image --help')\n"
        ), r.output
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "c"), "--detector", "boxes:", *model])
    assert r.exit_code == 2 and r.stderr == ("error: --detector boxes:: names no file; give boxes:FILE, a JSON of "
                                             "person boxes per image file name\n"), r.output  # (it ran a detector)
    assert not (tmp_path / "c").exists()
    from wbcap.errors import InputError
    from wbcap.image_app import ImageJob, run_images

    with pytest.raises(InputError, match="both give the boxes; keep one"):  # (the API has no usage check)
        run_images(ImageJob(paths=(str(img),), out=str(tmp_path / "d"), boxes=((1, 1, 20, 20),),
                            detector=f"boxes:{boxes}"))


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_body_model_file_named_by_path_is_recorded_as_its_gender(tmp_path, micro_ckpt):
    """``--body-models .../SMPLX_MALE.npz`` without --gender: the male model, and smplx_param.json
    (and the AMASS npz) say male, so a reader rebuilds the mesh from the model that made it; a
    --gender the file's name contradicts is kept, with a warning."""
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    models = write_synthetic_smplx(tmp_path / "models", genders=("neutral", "male"))
    male = models / "smplx" / "SMPLX_MALE.npz"
    photo = write_rgb(tmp_path / "p.jpg", person_image(240, 320, seed=4))
    out = tmp_path / "out"
    r = invoke("image", photo, "--full-image", "--no-render", "--export", "npz", "--checkpoint", micro_ckpt,
               "--body-models", male, "-o", out)
    assert r.exit_code == 0, r.output
    person = out / "p" / "person_0"
    params = json.loads((person / "smplx_param.json").read_text())
    assert params["gender"] == "male" and str(np.load(person / "output.npz")["gender"]) == "male"
    verts, _ = read_obj_counts(person / "output.obj")
    from wbcap.io.param_names import from_file_record

    with torch.no_grad():
        for layer_file, same in ((male, True), (models / "smplx" / "SMPLX_NEUTRAL.npz", False)):
            mesh = SMPLXLayer.from_file(layer_file)(from_file_record(params)).vertices[0].numpy()
            assert (np.abs(mesh - verts).max() <= 1e-5) == same, layer_file  # (cam_trans is transl)
    r = CliRunner().invoke(cli, ["image", str(photo), "--full-image", "--no-render", "--checkpoint", str(micro_ckpt),
                                 "--body-models", str(male), "--gender", "neutral", "-o", str(tmp_path / "o2")])
    assert r.exit_code == 0 and (f"{male} (named by --body-models) is the male SMPL-X model by its name, used as the "
                                 "neutral one asked for here; if that is not what you want, name SMPLX_NEUTRAL.npz or "
                                 "the folder that holds it (or leave out --gender)") in " ".join(r.output.split()), r.output
    assert r.output.count("is the male SMPL-X model by its name") == 1, r.output  # (it was said twice: a user trial)
    again = json.loads((tmp_path / "o2" / "p" / "person_0" / "smplx_param.json").read_text())
    assert again["gender"] == "neutral"  # (as asked: what a run made before this reads on resume)


@pytest.mark.parametrize("flags", [["--detector", "full"], ["--detector", "hog"], ["--detector", "auto"],
                                   ["--score-threshold", "0.9"], ["--min-height", "0.5"]])
@pytest.mark.parametrize("boxes", ["--bbox", "--full-image"])
def test_a_detector_flag_with_boxes_given_is_a_usage_error(tmp_path, flags, boxes):
    """--bbox or --full-image with a detector (or one of its settings): no detector runs, so the
    flag was ignored without a word (--full-image --bbox was already refused)."""
    img = write_rgb(tmp_path / "pic.png", person_image(96, 128, seed=1))
    given = ["--bbox", "1,1,20,20"] if boxes == "--bbox" else ["--full-image"]
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "o"), *given, *flags])
    assert r.exit_code == 2 and r.stderr == (
        f"error: {flags[0]} chooses or tunes the person detector, and {boxes} gives the boxes instead of one (no "
        f"detector runs): use one of them (see 'cli image --help')\n"), r.output
    assert not (tmp_path / "o").exists()


def test_a_few_photos_build_the_pipeline_for_a_few_calls(tmp_path, monkeypatch):
    """run_images builds its pipeline with ``few_calls`` = the number of photos for up to
    FEW_PHOTOS photos (the forms that cost more to build than they save over that many calls
    skipped), 0 (many calls) for more."""
    from wbcap import image_app
    from wbcap import pipeline as pipeline_module
    from wbcap.pipeline import Pipeline

    class Built(Exception):
        pass

    seen = []

    def from_config(config, **kwargs):
        seen.append(kwargs.get("few_calls"))
        raise Built

    monkeypatch.setattr(Pipeline, "from_config", staticmethod(from_config))
    monkeypatch.setattr(pipeline_module, "check_model_files", lambda config, warn=True: None)  # (no model files here)
    photos = [write_rgb(tmp_path / f"p{i}.png", person_image(64, 48, seed=i)) for i in range(image_app.FEW_PHOTOS + 1)]
    for n in (1, image_app.FEW_PHOTOS, image_app.FEW_PHOTOS + 1):
        job = image_app.ImageJob(paths=tuple(str(p) for p in photos[:n]), out=str(tmp_path / f"out{n}"),
                                 boxes=((1, 1, 20, 20),), render=False)
        with pytest.raises(Built):
            image_app.run_images(job)
    assert seen == [1, image_app.FEW_PHOTOS, 0]


def test_inputs_without_an_entry_in_the_box_file_are_refused_before_any_work(tmp_path):
    """Several inputs without an entry: one line, how many and which (a user trial: each was found
    in its turn, the photos before it written)."""
    import json

    from wbcap import image_app
    from wbcap.errors import InputError

    photos = [write_rgb(tmp_path / f"{n}.png", person_image(64, 48, seed=0)) for n in "abc"]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [[1, 1, 20, 20]], "z.png": []}))
    job = image_app.ImageJob(paths=tuple(map(str, photos)), out=str(tmp_path / "out"), boxes_file=str(boxes),
                             render=False)
    with pytest.raises(InputError) as exc:
        image_app.run_images(job)
    assert str(exc.value) == (f"{boxes}: no entry for 2 of the 3 inputs (e.g. 'b.png', 'c.png') (keys that name no "
                              "input: 'z.png'); add their boxes (an empty list for an image with nobody) or drop "
                              "boxes_file")  # (the library's name of --boxes)
    # one input without one, a key with a typo: both ends of it said (a review: the typo's warning was lost)
    boxes.write_text(json.dumps({"a.png": [[1, 1, 20, 20]], "b.png": [], "c.pgn": []}))
    with pytest.raises(InputError) as exc:
        image_app.run_images(job)
    assert str(exc.value) == (f"{boxes}: no entry for 'c.png' (keys that name no input: 'c.pgn'); add its boxes (an "
                              "empty list for an image with nobody) or drop boxes_file")
    assert not (tmp_path / "out").exists()


def test_the_model_loads_for_the_first_photo_with_people_after_its_detection(tmp_path, monkeypatch):
    """A user trial: a photo with nobody in it waited a minute (the machine's first measurement of
    its CPU strategy) for "no person found", and a folder of unreadable photos for the model's
    load: the model now loads before the first photo with people to regress, after its detection,
    and not at all when there is none; its errors end the command (no one photo's)."""
    from wbcap import image_app
    from wbcap import pipeline as pipeline_module
    from wbcap.detect.base import Detection
    from wbcap.errors import CheckpointError
    from wbcap.pipeline import Pipeline

    events = []

    class Finds:
        name = "stub"

        def __call__(self, image):
            events.append(("detect", int(image[0, 0, 0])))
            return [Detection((1.0, 1.0, 20.0, 20.0), 0.9)] if image[0, 0, 0] == 7 else []

    def from_config(config, **kwargs):
        events.append(("load", kwargs.get("few_calls")))
        raise CheckpointError("ckpt: damaged")

    monkeypatch.setattr(Pipeline, "from_config", staticmethod(from_config))
    monkeypatch.setattr(pipeline_module, "check_model_files", lambda config, warn=True: None)  # (no model files here)
    monkeypatch.setattr(image_app, "make_detector", lambda *a, **k: Finds())

    def photo(name, value):
        pixels = person_image(64, 48, seed=0)
        pixels[0, 0] = value
        return write_rgb(tmp_path / name, pixels)

    nobody = [photo("a.png", 1), photo("b.png", 2)]
    (tmp_path / "c.jpg").write_bytes(b"not a picture")
    job = image_app.ImageJob(paths=(*map(str, nobody), str(tmp_path / "c.jpg")), out=str(tmp_path / "o1"), render=False)
    results = image_app.run_images(job)
    assert [r.error.split(";")[0] for r in results] == [f"{nobody[0]}: no person found by the stub detector",
                                                        f"{nobody[1]}: no person found by the stub detector",
                                                        f"{tmp_path / 'c.jpg'}: not an image wbcap can decode"]
    assert events == [("detect", 1), ("detect", 2)]  # no load
    events.clear()
    job = image_app.ImageJob(paths=(str(nobody[0]), str(photo("d.png", 7)), str(nobody[1])), out=str(tmp_path / "o2"),
                             render=False)
    stages = []
    with pytest.raises(CheckpointError, match="ckpt: damaged"):
        image_app.run_images(job, on_stage=lambda name, path: stages.append((name, path and path.name)))
    assert events == [("detect", 1), ("detect", 7), ("load", 2)]  # (built for the 2 photos left: few calls)
    assert stages == [("reading", "a.png"), ("loading detector", None), ("detecting", "a.png"), ("reading", "d.png"),
                      ("detecting", "d.png"), ("loading model", None)]
    order = [image_app.STAGES.index(name) for name, _ in stages[3:]]  # (one photo's, as benchmarks/startup.py sums)
    assert order == sorted(order)
    assert not (tmp_path / "o2").exists()


def test_max_people_says_which_boxes_it_kept(tmp_path, micro_args, caplog):
    """--max-people dropped boxes without a word (a user trial; `wbcap run` counts them): it says
    how many it kept of how many, which, and the flag."""
    img_path = write_rgb(tmp_path / "pair.png", person_image(640, 480, seed=2, people=2))
    out = tmp_path / "out"
    r = invoke("image", img_path, "-o", out, "--bbox", "60,40,220,420", "--bbox", "360,40,220,420", "--max-people", "1",
               "--no-render", *micro_args)
    assert r.exit_code == 0, r.output
    assert f"{img_path}: kept 1 of 2 person boxes (the first given); raise --max-people to keep more" in r.output
    assert sorted(p.name for p in (out / "pair").iterdir()) == ["person_0"]
    assert json.loads((out / "pair" / "person_0" / "smplx_param.json").read_text())["bbox_xywh"] == [60, 40, 220, 420]
    # a caller's own limit (the demo's, on its drawing of one figure) is an information line that
    # names no flag: the demo told its user to raise a --max-people it does not have (a user trial)
    import logging

    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.image_app import ImageJob, run_images

    cfg = PipelineConfig(checkpoint=str(micro_args[1]), body=BodyModelConfig(path=str(micro_args[3])), device="cpu")
    for users, level, says in ((True, logging.WARNING, "; raise max_people to keep more"), (False, logging.INFO, "")):
        with caplog.at_level(logging.INFO, logger="wbcap.image_app"):
            caplog.clear()
            run_images(ImageJob(paths=(str(img_path),), out=str(tmp_path / f"api{users}"), pipeline=cfg,
                                boxes=((60, 40, 220, 420), (360, 40, 220, 420)), max_people=1, users_limit=users,
                                render=False))
        said = [(r.levelno, r.getMessage()) for r in caplog.records if "person boxes" in r.getMessage()]
        assert said == [(level, f"{img_path}: kept 1 of 2 person boxes (the first given){says}")]


def test_max_people_keeps_the_largest_boxes(tmp_path, micro_args):
    """--max-people 1 with HOG kept a spectator over the photo's main person (HOG's SVM margins:
    0.13 for him, 0.3-1.2 for the people around; a user trial): the largest boxes are kept,
    then by score."""
    from wbcap.detect.base import Detection, largest_first

    img_path = write_rgb(tmp_path / "pair.png", person_image(640, 480, seed=2, people=2))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"pair.png": [{"bbox": [20, 20, 60, 120], "score": 1.2},
                                              {"bbox": [300, 40, 220, 420], "score": 0.13}]}))
    out = tmp_path / "out"
    r = invoke("image", img_path, "-o", out, "--boxes", boxes, "--max-people", "1", "--no-render", *micro_args)
    assert r.exit_code == 0, r.output
    assert f"{img_path}: kept 1 of 2 person boxes (the largest); raise --max-people to keep more" in r.output
    assert json.loads((out / "pair" / "person_0" / "smplx_param.json").read_text())["bbox_xywh"] == [300, 40, 220, 420]
    same = [Detection((0, 0, 10, 20), 0.5), Detection((5, 5, 20, 10), 0.9), Detection((1, 1, 30, 30), 0.1)]
    assert [d.score for d in sorted(same, key=largest_first)] == [0.1, 0.9, 0.5]  # (equal areas: higher score first)
    # the people kept are numbered in the detector's order (a box file's: by score), as without a limit
    # (a break-it trial: with --max-people 3 the main person was person_0, without it person_8)
    three = [*same, Detection((2, 2, 5, 5), 2.0)]
    boxes.write_text(json.dumps({"pair.png": [{"bbox": list(d.box), "score": d.score} for d in three]}))
    r = invoke("image", img_path, "-o", tmp_path / "three", "--boxes", boxes, "--max-people", "3", "--no-render",
               *micro_args)
    assert r.exit_code == 0, r.output
    assert [json.loads((tmp_path / "three" / "pair" / f"person_{k}" / "smplx_param.json").read_text())["bbox_xywh"]
            for k in range(3)] == [[5, 5, 20, 10], [0, 0, 10, 20], [1, 1, 30, 30]]  # (a box file's: by score)


def test_an_image_jobs_people_limit_is_checked():
    """`ImageJob(max_people=-1)` kept all but one box and logged "kept -1 of 9"; 0 said no boxes
    were given (a break-it trial): the job refuses them, as --max-people does."""
    from wbcap.image_app import ImageJob

    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match=rf"max_people {bad!r}: a whole number of 1 or more"):
            ImageJob(paths=("a.jpg",), out="o", max_people=bad)
    assert ImageJob(paths=("a.jpg",), out="o", max_people=3).max_people == 3
    assert ImageJob(paths=("a.jpg",), out="o", max_people=np.int64(2)).max_people == 2  # (NumPy's integers too)


def test_a_full_disk_leaves_no_empty_output_folder(tmp_path, micro_args, monkeypatch):
    """A user trial: `wbcap image photo -o OUT` on a full disk said so in one line and left an
    empty OUT/ (made for the photo's folder) behind; a folder that was there stays."""
    import errno

    import wbcap.export.image_outputs

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(wbcap.export.image_outputs, "write_obj", full)
    photo = write_rgb(tmp_path / "p.jpg", person_image(96, 128, seed=1))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    twins = [write_rgb(tmp_path / d / "x.jpg", person_image(96, 128, seed=2)) for d in "ab"]  # (written to a/x, b/x)
    for out, photos in ((tmp_path / "new" / "out", [photo]), (tmp_path / "there", [photo]),
                        (tmp_path / "new" / "twins", twins)):
        made = out.name == "there"
        if made:
            out.mkdir()
        r = CliRunner().invoke(cli, ["image", *map(str, photos), "-o", str(out), "--full-image", "--no-render",
                                     *map(str, micro_args)])
        assert r.exit_code == 2 and "No space left on device" in r.output, r.output
        assert out.exists() == made and (not made or not any(out.iterdir()))
    assert not (tmp_path / "new").exists()


def test_box_file_keys_that_name_no_input_are_said(tmp_path, micro_ckpt, body_dir, caplog):
    """A user trial: `wbcap image --boxes f.json` ignored keys naming none of the photos without a
    word (a typo's photo then had "no entry"); one warning names them, as `wbcap run`'s does."""
    import json
    import logging

    from wbcap.testing.images import person_image

    img = write_rgb(tmp_path / "pic.png", person_image(96, 128, seed=1))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"pic.png": [[10, 10, 60, 100]], "pic.jpg": [[1, 1, 9, 9]], "p1c.png": []}))
    with caplog.at_level(logging.WARNING):
        r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out"), "--boxes", str(boxes),
                                     "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--no-render"])
    assert r.exit_code == 0, r.output
    said = [rec.getMessage() for rec in caplog.records if "keys name no input image" in rec.getMessage()]
    assert said == [f"{boxes}: 2 of 3 keys name no input image (e.g. 'pic.jpg', 'p1c.png'); their boxes are ignored"]


def test_with_neither_model_file_one_line_names_both_before_any_detector(tmp_path, monkeypatch):
    """A new user's trial with nothing installed: `wbcap image` tried to download YOLOX (three
    warnings, a marker file left), fell back to HOG with a notice, then named the SMPL-X model
    only; the missing checkpoint came after that was fixed."""
    import wbcap.image_app as image_app

    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    monkeypatch.setattr(image_app, "make_detector", lambda *a, **k: pytest.fail("a detector was made"))
    photo = write_rgb(tmp_path / "p.png", person_image(64, 48, seed=0))
    r = CliRunner().invoke(cli, ["image", str(photo), "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    (line,) = [x for x in r.output.splitlines() if x.strip()]
    assert line.startswith("error: SMPL-X model file SMPLX_NEUTRAL.npz not found (looked for ")
    assert "; and for the network's checkpoint: no hand4whole checkpoint (looked in " in line
    assert "`wbcap weights import hand4whole /path/to/snapshot_6.pth.tar`" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["image", "run"])
def test_a_named_model_file_that_does_not_exist_also_names_a_missing_checkpoint(tmp_path, monkeypatch, command):
    """The previous note: `--body-models /nonexist/SMPLX_NEUTRAL.npz` (refused while the options
    are read, before the check of both files) said the model only, with the checkpoint missing too;
    and with the checkpoint there, the model's line alone."""
    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    monkeypatch.setenv("WBCAP_HOME", str(tmp_path / "home"))
    media = write_rgb(tmp_path / "p.png", person_image(64, 48, seed=0))
    model = tmp_path / "nonexist" / "SMPLX_NEUTRAL.npz"
    args = [command, str(media), "-o", str(tmp_path / "out"), "--device", "cpu", "--body-models", str(model)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    (line,) = [x for x in r.output.splitlines() if x.strip()]
    assert line.startswith(f"error: {model}: no such file (named by --body-models); check the path"), line
    assert "; and for the network's checkpoint: no hand4whole checkpoint (looked in " in line, line
    ckpt = tmp_path / "snapshot_6.pth.tar"
    ckpt.write_bytes(b"not read")
    r = CliRunner().invoke(cli, [*args, "--checkpoint", str(ckpt)])
    assert r.exit_code == 2, r.output
    (line,) = [x for x in r.output.splitlines() if x.strip()]
    assert line.endswith("check the path, or name the folder that holds SMPLX_NEUTRAL.npz"), line
    assert not (tmp_path / "out").exists()
    male = tmp_path / "nonexist" / "SMPLX_MALE.npz"  # (the file's own gender is named: a new user's trial)
    r = CliRunner().invoke(cli, [*args[:-1], str(male), "--checkpoint", str(ckpt)])
    assert r.exit_code == 2 and r.output.strip().endswith("name the folder that holds SMPLX_MALE.npz"), r.output


def test_both_missing_keeps_the_models_error_with_the_checkpoints_added(tmp_path, monkeypatch):
    """A review: the combined error was a plain ModelFileError, so a resume could no longer name
    the model its run was made with (it reads BodyModelNotFoundError's attributes)."""
    from wbcap.body.model_files import BodyModelNotFoundError
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.pipeline import check_model_files

    monkeypatch.delenv("WBCAP_BODY_MODELS", raising=False)
    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    with pytest.raises(BodyModelNotFoundError) as exc:
        check_model_files(PipelineConfig(body=BodyModelConfig(path=None)))
    assert exc.value.file_name == "SMPLX_NEUTRAL.npz" and exc.value.looked
    assert exc.value.checkpoint_error.startswith("no hand4whole checkpoint (looked in ")
    assert str(exc.value).endswith(f"; and for the network's checkpoint: {exc.value.checkpoint_error}")


def test_a_fallback_that_stands_in_for_the_checkpoint_is_not_told_it_is_missing(tmp_path, monkeypatch):
    """A review: `wbcap bench --body-models emptydir` (random weights stand in for a missing
    checkpoint) was told the checkpoint is missing too."""
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.errors import ModelFileError
    from wbcap.pipeline import Pipeline

    monkeypatch.delenv("WBCAP_WEIGHTS", raising=False)
    (tmp_path / "empty").mkdir()
    config = PipelineConfig(body=BodyModelConfig(path=str(tmp_path / "empty")), device="cpu")
    with pytest.raises(ModelFileError) as exc:
        Pipeline.from_config(config, fallback="synthetic")
    assert "checkpoint" not in str(exc.value)
    with pytest.raises(ModelFileError, match="; and for the network's checkpoint: no hand4whole checkpoint"):
        Pipeline.from_config(config)


def test_names_with_control_characters_are_printed_escaped(tmp_path, micro_args):
    """A photo named with terminal escape sequences (a colour, the window title, a screen clear):
    a hostile-input trial saw `wbcap image` print them raw, so the terminal acted on them. Result
    lines, per-photo errors and log lines now show them as escapes; the files are the user's, so
    the output folder keeps the name."""
    good = write_rgb(tmp_path / "p\x1b]0;TITLE\x07\x1b[31mq.png", person_image(96, 128, seed=3))
    bad = tmp_path / "bad\x1b[2J.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["image", str(good), str(bad), "-o", str(out), "--full-image", "--no-render",
                                 *map(str, micro_args)])
    said = r.stdout + r.stderr
    assert r.exit_code != 0 and "\x1b" not in said and "\x07" not in said, repr(said)
    assert "p\\x1b]0;TITLE\\x07\\x1b[31mq.png: 1 person(s) -> " in r.stdout, repr(r.stdout)
    assert "bad\\x1b[2J.png" in said, repr(said)
    assert (out / "p\x1b]0;TITLE\x07\x1b[31mq" / "person_0" / "output.obj").is_file()
    # a newline in a name: each result and each error still one line (a break-it trial's two)
    good = write_rgb(tmp_path / "a\nb.png", person_image(96, 128, seed=3))
    bad = tmp_path / "c\nd.png"
    bad.write_text("not an image")
    r = CliRunner().invoke(cli, ["image", str(good), str(bad), "-o", str(tmp_path / "out2"), "--full-image",
                                 "--no-render", *map(str, micro_args)])
    assert r.exit_code != 0
    assert r.stdout == f"a\\nb.png: 1 person(s) -> {tmp_path / 'out2' / 'a'}\\nb\n", repr(r.stdout)
    (error,) = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    (summary,) = [line for line in r.stderr.splitlines() if "photos failed" in line]  # (escaped there too)
    assert "c\\nd.png" in error and "d.png" not in r.stderr.replace(error, "").replace(summary, ""), repr(r.stderr)
    assert summary.startswith(f"1 of 2 photos failed ({tmp_path}/c\\nd.png: each said above)"), repr(summary)
    assert (tmp_path / "out2" / "a\nb" / "person_0" / "output.obj").is_file()


def test_an_animated_gif_names_the_command_that_reads_it_whole(tmp_path, micro_args):
    """The first-frame warning names `wbcap run FILE` in a command (Python's call outside one)."""
    from PIL import Image

    frames = [Image.fromarray(person_image(96, 128, seed=s)) for s in (1, 2)]
    gif = tmp_path / "walk.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    r = invoke("image", gif, "-o", tmp_path / "out", "--full-image", "--no-render", *micro_args)
    assert r.exit_code == 0, r.output
    assert (f"{gif}: an animated or multi-page image; only its first frame is used (for all of them, `wbcap run {gif}` "
            "reads it frame by frame)") in " ".join(r.stderr.split()), r.stderr


def test_a_batch_of_photos_names_dot_stems_safely_and_says_what_it_replaced_cut_and_failed(tmp_path, micro_args):
    """A batch trial: `..jpg`'s result went into OUT itself and `...jpg`'s tried to replace OUT's
    parent; one command per camera folder into one OUT replaced the earlier camera's `img.jpg`
    without a word; `--max-people` warned once per photo; no count of the failed photos at the end."""
    import hashlib

    photo = person_image(160, 200, seed=2)
    (tmp_path / "dots").mkdir()
    for name in ("..jpg", "...jpg", "plain.jpg"):
        write_rgb(tmp_path / "dots" / name, photo)
    (tmp_path / "dots" / "broken.jpg").write_bytes(b"not a picture")
    out = tmp_path / "parent" / "out"
    args = ["--no-render", "--bbox", "10,10,60,150", "--bbox", "80,10,60,150", "--max-people", "1", *micro_args]
    r = invoke("image", tmp_path / "dots" / "..jpg", tmp_path / "dots" / "...jpg", tmp_path / "dots" / "plain.jpg",
               tmp_path / "dots" / "broken.jpg", "-o", out, *args)
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in out.iterdir()) == ["...jpg", "..jpg", "plain"]
    assert sorted(p.name for p in (tmp_path / "parent").iterdir()) == ["out"]
    stderr = " ".join(r.stderr.split())
    assert stderr.count("WARNING") == 2 and stderr.count("person boxes (the first given); raise") == 1, r.stderr
    assert (f"kept at most 1 person box(es) in 3 photos in all (the first, {tmp_path / 'dots' / '..jpg'}, said above; "
            "the others in information lines); raise --max-people to keep more") in stderr
    assert r.stderr.splitlines()[-1] == (f"1 of 4 photos failed ({tmp_path / 'dots' / 'broken.jpg'}: each said above); "
                                         f"3 written to {out}"), r.stderr
    # the same picture again: replaced silently; another picture of the same name: said
    param = json.loads((out / "plain" / "person_0" / "smplx_param.json").read_text())
    assert param["image_sha256"] == hashlib.sha256((tmp_path / "dots" / "plain.jpg").read_bytes()).hexdigest()
    r = invoke("image", tmp_path / "dots" / "plain.jpg", "-o", out, *args)
    assert r.exit_code == 0 and "another picture" not in r.stderr, r.output
    (tmp_path / "cam2").mkdir()
    other = write_rgb(tmp_path / "cam2" / "plain.jpg", person_image(160, 200, seed=3))
    r = invoke("image", other, "-o", out, *args)
    assert r.exit_code == 0, r.output
    assert (f"{out / 'plain'}: held the result of another picture (plain.jpg), which this one's ({other}) replaces; "
            "to keep both, give each command its own -o folder, or name both pictures in one command") in \
        " ".join(r.stderr.split()), r.stderr



def test_skip_done_redoes_a_photo_whose_last_person_was_deleted(tmp_path, micro_args):
    """A new user's trial: with person_5 of six deleted, `--skip-done` took the five left for the
    whole result (the JSON said no count); `people` in smplx_param.json says it."""
    photo = write_rgb(tmp_path / "two.jpg", person_image(240, 160, seed=4, people=2))
    args = ["--bbox", "10,10,100,140", "--bbox", "130,10,100,140", "--no-render", *micro_args]
    assert invoke("image", photo, "-o", tmp_path / "out", *args).exit_code == 0
    folder = tmp_path / "out" / "two"
    assert [json.loads((folder / f"person_{k}" / "smplx_param.json").read_text())["people"] for k in (0, 1)] == [2, 2]
    r = invoke("image", photo, "-o", tmp_path / "out", "--skip-done", *args)
    assert r.stdout.strip().endswith("(done before: --skip-done)"), r.stdout
    import shutil

    shutil.rmtree(folder / "person_1")
    r = invoke("image", photo, "-o", tmp_path / "out", "--skip-done", *args)
    assert r.exit_code == 0 and "done before" not in r.stdout and (folder / "person_1").is_dir(), r.output


def test_pillows_own_warnings_on_a_damaged_picture_stay_off_stderr(tmp_path):
    """A TIFF cut inside a tag's data: Pillow warns "Tag data larger than file. Skipping tag 270"
    (a UserWarning, printed with its source line) before wbcap's one line saying the file is
    damaged; the command prints that line alone (a break-it review saw Pillow's beside it)."""
    import io
    import warnings

    from PIL import Image, TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = "x" * 5000  # (ImageDescription, stored after the header)
    buf = io.BytesIO()
    Image.fromarray(person_image(64, 64, seed=1)).save(buf, format="TIFF", tiffinfo=tags)
    data = buf.getvalue()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: data.find(b"x" * 100) + 10])
    with warnings.catch_warnings(record=True) as seen:  # (the fixture does make Pillow warn)
        warnings.simplefilter("always")
        with pytest.raises(OSError), Image.open(cut) as im:
            im.load()
    assert any("Tag data larger than file" in str(w.message) for w in seen)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "WBCAP_HOME": str(tmp_path / "wb"), "PYTHONWARNINGS": ""}
    proc = subprocess.run([sys.executable, "-m", "wbcap", "image", str(cut), "-o", str(tmp_path / "out"), "--no-render"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr == f"error: {cut}: TIFF file is truncated or corrupt (its pixels do not decode); re-download or re-export it\n"
