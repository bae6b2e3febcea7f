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
                    '({"image.jpg": [[x, y, w, h], ...]})')
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
