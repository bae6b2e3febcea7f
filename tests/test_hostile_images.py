"""Hostile inputs from a break-it trial: extreme aspect ratios through every detector, box files
Python's JSON reader cannot take, images too large to decode, damaged JPEG data. Each gets one
clear line (or a clean "nobody found"), never a crash, and never stops the other images."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.testing.images import person_image


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_rgb(path, img):
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture()
def micro_args(micro_ckpt, body_dir):
    return ["--checkpoint", micro_ckpt, "--body-models", body_dir]


# -- 1. extreme aspect ratios -----------------------------------------------------------------------
def test_yolox_letterbox_keeps_a_one_pixel_side():
    """20000 x 20: the 20 rows shrink to 0.4 of a row; letterbox keeps one (OpenCV refused 0)."""
    from wbcap.detect.yolox import letterbox

    wide = np.full((20, 20000, 3), 7, np.uint8)
    blob, r = letterbox(wide, 416)
    assert blob.shape == (1, 3, 416, 416) and r == pytest.approx(416 / 20000)
    assert np.all(blob[0, :, 0, :] == 7) and np.all(blob[0, :, 1:, :] == 114)
    blob, r = letterbox(np.ascontiguousarray(wide.transpose(1, 0, 2)), 416)
    assert np.all(blob[0, :, :, 0] == 7) and np.all(blob[0, :, :, 1:] == 114)


def test_hog_finds_nobody_in_a_strip():
    from wbcap.detect.hog import HOGDetector

    for shape, frac in (((20, 20000, 3), 0.2), ((20000, 20, 3), 0.2), ((20, 20000, 3), 0.0), ((2, 3, 3), 0.0)):
        assert HOGDetector(min_height_frac=frac)(np.zeros(shape, np.uint8)) == [], (shape, frac)


def _tiny_person_yolox(path):
    """A tiny YOLOX graph that finds one person box (input px (36, 4)-(52, 36) of a 64 x 64
    input) in any image: on a 96 x 128 picture (r = 0.5) that is x 72-96, y 8-72."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from wbcap.testing.onnx_models import write_tiny_yolox

    row = np.zeros(85, np.float32)
    row[:4], row[4], row[5] = [0.5, 0.5, math.log(2), math.log(4)], 0.9, 0.9
    return write_tiny_yolox(path, {2 * 8 + 5: row}, size=64)


def test_a_strip_image_finds_nobody_and_the_batch_goes_on(tmp_path, micro_args):
    """`wbcap image wide.png tall.png person.png` with a YOLOX detector: the two strips are
    "nobody found" (the letterbox crashed on them and stopped the batch), the person is done."""
    model = _tiny_person_yolox(tmp_path / "tiny.onnx")
    wide = write_rgb(tmp_path / "wide.png", np.full((20, 20000, 3), 90, np.uint8))
    tall = write_rgb(tmp_path / "tall.png", np.full((20000, 20, 3), 90, np.uint8))
    person = write_rgb(tmp_path / "person.png", person_image(96, 128, seed=1))
    out = tmp_path / "out"
    r = invoke("image", wide, tall, person, "-o", out, "--detector-model", model, "--no-render", *micro_args)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.exit_code == 2, r.output
    assert errors == [f"error: {wide}: no person found by the yolox (tiny.onnx) detector; pass --bbox x,y,w,h or --full-image",
                      f"error: {tall}: no person found by the yolox (tiny.onnx) detector; pass --bbox x,y,w,h or --full-image"]
    assert sorted(p.name for p in out.iterdir()) == ["person"]
    assert (out / "person" / "person_0" / "smplx_param.json").is_file()


# -- 3. box files Python's JSON reader cannot take ---------------------------------------------------
@pytest.mark.parametrize("what", ["digits", "depth"])
def test_box_file_json_limits_are_one_line(tmp_path, what):
    from wbcap.detect.boxes import load_boxes_json
    from wbcap.errors import InputError

    path = tmp_path / "boxes.json"
    if what == "digits":  # past Python's 4300-digit integer limit (ValueError)
        path.write_text('{"a.jpg": [[' + "9" * 5000 + ", 0, 10, 10]]}")
        expected = f"{path}: holds a number over 4300 digits long; fix the box file (boxes are pixel numbers)"
    else:  # past the recursion limit (RecursionError)
        path.write_text("[" * 100_000 + "]" * 100_000)
        expected = (f"{path}: lists or objects nested too deeply for a box file; fix the box file "
                    '({"photo.jpg": [[x, y, w, h], ...]} (wbcap image) or {"<frame index>": [[x, y, w, h], ...]} '
                    "(wbcap run))")
    with pytest.raises(InputError) as info:
        load_boxes_json(path)
    assert str(info.value) == expected


@pytest.mark.parametrize("command", ["image", "run"])
def test_box_file_json_limits_on_the_command_line(tmp_path, micro_args, command):
    path = tmp_path / "boxes.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    img = write_rgb(tmp_path / "person.png", person_image(96, 128, seed=1))
    out = tmp_path / "out"
    flag = ["--boxes", path] if command == "image" else ["--detector", f"boxes:{path}"]
    r = invoke(command, img, "-o", out, *flag, "--no-render", *micro_args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: {path}: lists or objects nested too deeply") and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


# -- 2. images too large to decode -------------------------------------------------------------------
def _png_header_only(path, width, height):
    """A PNG whose header says ``width`` x ``height`` (8-bit RGB) and whose pixel data is a few
    bytes: a decompression bomb's shape without its size (a decoder that ignores the header
    allocates the whole picture before it finds the data short)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_too_many_pixels_is_refused_from_the_header(tmp_path, recwarn):
    from wbcap.errors import InputError
    from wbcap.io.images import MAX_IMAGE_PIXELS, image_size, load_image

    assert MAX_IMAGE_PIXELS == 16384 * 16384
    big = _png_header_only(tmp_path / "big.png", 16385, 16385)  # one pixel past it a side (805 MB decoded)
    with pytest.raises(InputError) as info:
        load_image(big)
    assert str(info.value) == (f"{big}: the image is 16385x16385 pixels (268 megapixels), more than wbcap's limit of "
                               "268,435,456 (268 megapixels, e.g. 16384x16384); scale it down first")
    bomb = _png_header_only(tmp_path / "bomb.png", 50000, 50000)
    with pytest.raises(InputError, match=r"bomb\.png: the image is 50000x50000 pixels \(2,500 megapixels\)"):
        load_image(bomb)
    assert image_size(bomb) == (50000, 50000)  # (a hint: from the header, nothing decoded)
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]  # Pillow's, on stderr


def test_a_200_megapixel_photo_keeps_its_orientation(tmp_path, recwarn):
    """Pillow refuses headers of more than 179 megapixels (its bomb check): a 200 MP phone photo
    (16320 x 12240) lost its EXIF orientation and Pillow printed a warning. Its headers only:
    the SOF of a small JPEG rewritten to that size."""
    from PIL import Image

    from wbcap.io.images import _exif_orientation, image_size

    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (16, 8)).save(path, exif=exif.tobytes())
    data = path.read_bytes()
    sof = data.index(b"\xff\xc0")
    data = data[: sof + 5] + (12240).to_bytes(2, "big") + (16320).to_bytes(2, "big") + data[sof + 9:]
    path.write_bytes(data)
    assert image_size(path) == (16320, 12240) and _exif_orientation(data) == 6  # upright: portrait
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


@pytest.mark.parametrize("command", ["image", "run"])
def test_too_many_pixels_on_the_command_line(tmp_path, micro_args, command):
    big = _png_header_only(tmp_path / "big.png", 50000, 50000)
    out = tmp_path / "out"
    r = invoke(command, big, "-o", out, "--full-image" if command == "image" else "--no-render", *micro_args)
    assert r.exit_code == 2, r.output
    assert r.stderr == (f"error: {big}: the image is 50000x50000 pixels (2,500 megapixels), more than wbcap's limit of "
                        "268,435,456 (268 megapixels, e.g. 16384x16384); scale it down first\n")
    assert not out.exists()


def _grid_mesh(n=40):
    """A wavy ``n`` x ``n`` grid, 0.6 x 1.0 m, 2 m in front of the camera: ``(V, 3)``, ``(F, 3)``."""
    u, v = np.meshgrid(np.linspace(-0.3, 0.3, n), np.linspace(-0.5, 0.5, n))
    verts = np.stack([u.ravel(), v.ravel(), 2.0 + 0.1 * np.cos(4.0 * u.ravel())], axis=1)
    i = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
    return verts, np.concatenate([np.stack([i, i + n, i + 1], 1), np.stack([i + 1, i + n, i + n + 1], 1)])


@pytest.mark.slow  # fast loop under 2 minutes (the full suite runs it)
def test_a_large_image_is_drawn_in_the_meshes_window_only(monkeypatch):
    """Over WINDOW_PIXELS the meshes are drawn in the window holding them: the same pixels as a
    full-size software render (one mesh in view, one cut by the image's edge), and the renderer
    is only asked for the window's size."""
    from wbcap.export import render

    size = (4100, 4200)  # 17.2 megapixels > 2**24
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), np.uint8)
    verts, faces = _grid_mesh()
    meshes = [verts, verts + [0.55, 0.0, 0.0]]  # the second reaches past the right edge
    focal, princpt = (2000.0, 2000.0), (3500.0, 2000.0)  # (u of the second: up to ~4400)
    asked = []
    real = render._render_software
    monkeypatch.setattr(render, "_render_software", lambda *a: asked.append(a[0]) or real(*a))
    got = render.render_meshes(image, meshes, faces, focal, princpt, backend="software")
    h, w = asked[0]
    assert 950 < h < 1050 and 950 < w < 1050, (h, w)  # (the window: the meshes span ~990 x ~1000 pixels of it)
    full = render._composite(image, *real(size, [np.asarray(m, np.float64) for m in meshes], [faces] * 2, focal, princpt,
                                          np.asarray(render.PALETTE[:2])), 1.0)
    assert (full != image).any(axis=2).sum() > 100_000
    np.testing.assert_array_equal(got, full)


def test_running_out_of_memory_while_drawing_is_one_line(monkeypatch):
    from wbcap.errors import InputError
    from wbcap.export import render

    def no_memory(*args):
        raise MemoryError
    monkeypatch.setattr(render, "_render_software", no_memory)
    verts, faces = _grid_mesh(4)
    with pytest.raises(InputError) as info:
        render.render_meshes(np.zeros((4100, 4200, 3), np.uint8), [verts], faces, (2000.0, 2000.0), (2100.0, 2050.0),
                             backend="software")
    assert str(info.value) == ("not enough memory to draw the meshes on this 4200x4100 image; scale it down, or pass "
                               "render=False")


def test_frames_too_large_for_render_mp4_are_refused_before_any_work(tmp_path, micro_ckpt, body_dir):
    """A folder of 20000x20 images: pass 1 ran, then libx264 refused render.mp4 (a crash report,
    exit 1, meta.json and params.jsonl left). Now one line before the model loads, naming
    --no-render; with it, the run goes through."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.errors import InputError
    from wbcap.io.video_writer import MAX_SIDE, VideoWriter

    folder = tmp_path / "strips"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((20, MAX_SIDE + 2, 3), 90, np.uint8))
    out = tmp_path / "out"
    args = ["run", str(folder), "-o", str(out), "--detector", "full", "--checkpoint", str(micro_ckpt),
            "--body-models", str(body_dir), "--device", "cpu", "--export", "none"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == (
        f"error: {folder}: render.mp4: frames of {MAX_SIDE + 2}x20 pixels are larger than an H.264 video can be "
        f"(libx264: at most {MAX_SIDE} pixels a side); pass --no-render (then no render.mp4)"), r.output
    assert not out.exists()
    with pytest.raises(InputError, match="at most 16384 pixels a side"):
        VideoWriter(tmp_path / "x.mp4", MAX_SIDE + 1, 16, 10)
    VideoWriter(tmp_path / "y.mp4", MAX_SIDE, 16, 10).abort()


def test_a_box_with_a_one_pixel_side_is_said_to_be_too_small(tmp_path, micro_ckpt, body_dir):
    """A given box 1 pixel wide was called "outside the image" while it lay inside it."""
    from test_cli_image import write_rgb

    img = write_rgb(tmp_path / "pic.png", person_image(160, 120, seed=1))
    r = CliRunner().invoke(cli, ["image", str(img), "-o", str(tmp_path / "out"), "--bbox", "10,10,1,100",
                                 "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert ("box 10,10,1,100 (x,y,w,h) lies outside the 160x120 image or has a side under 2 pixels there"
            in r.output), r.output
