"""`wbcap bench` detection stage: HOG and YOLOX timed on the same frame in the same run.

A tiny authored YOLOX-format ONNX graph (:mod:`wbcap.testing.onnx_models`) stands in for a real
export, so these run in a few seconds; one test uses the real ``yolox_nano.onnx`` when
``../shared`` has it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from wbcap.bench.detect import bench_detectors, yolox_missing
from wbcap.bench.options import BenchOptions
from wbcap.bench.report import detect_summary
from wbcap.bench.stages import run_bench
from wbcap.cli import cli
from wbcap.errors import InputError
from wbcap.testing.images import person_image

pytest.importorskip("onnx")

FAST = ("--detect-only", "--repeats", "1", "--warmup", "0", "--device", "cpu")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 64x64 YOLOX-format model that finds one person box on any image."""
    from wbcap.testing.onnx_models import write_tiny_yolox

    row = [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79  # raw x, y, log w, log h, objectness, person
    return write_tiny_yolox(tmp_path_factory.mktemp("tiny") / "tiny.onnx", {20: row}, size=64)


def invoke(*args: object) -> str:
    """``wbcap bench ARGS``' stdout (through the ``wbcap`` group, which names settings by its flags)."""
    result = CliRunner().invoke(cli, ["bench", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def check_detect_stage(stage: dict, detector: str, frame: list[int], input_size: list[int],
                       runtimes: tuple[str, ...]) -> None:
    assert stage["detector"] == detector
    assert stage["median_s"] > 0 and stage["per_item_s"] > 0 and all(r > 0 for r in stage["runs_s"])
    assert stage["items"] == 1 and stage["unit"] == "frame" and stage["throughput_unit"] == "frames/s"
    assert stage["size"] == frame and stage["input_size"] == input_size
    assert stage["runtime"] in runtimes and stage["threads"] >= 1
    assert isinstance(stage["people"], int) and stage["people"] >= 0


def test_cli_times_hog_and_yolox_in_the_same_run(tiny_onnx):
    rep = json.loads(invoke(*FAST, "--json", "--detector-model", tiny_onnx))
    assert list(rep["stages"]) == ["detect", "detect.hog", "detect.yolox"]
    check_detect_stage(rep["stages"]["detect.hog"], "hog", [320, 240], rep["stages"]["detect.hog"]["input_size"],
                       ("opencv",))
    yolox = rep["stages"]["detect.yolox"]
    check_detect_stage(yolox, "yolox", [320, 240], [64, 64], ("onnxruntime", "opencv"))
    assert yolox["people"] == 1 and yolox["model"] == str(tiny_onnx)
    # HOG scans a frame resized so a person of 20 % of its height is 96 px tall (max 3x)
    assert rep["stages"]["detect.hog"]["input_size"] == [640, 480]
    info = rep["detectors"]
    assert info["stages"] == ["detect.hog", "detect.yolox"] and info["used"] == "detect.yolox"
    assert info["yolox_model"] == str(tiny_onnx) and info["yolox_source"] == "--detector-model"
    assert info["yolox_missing"] is None
    # `detect` (the stage feeding crop and the estimate) is the detector --detector auto would use
    assert rep["stages"]["detect"] == yolox
    assert rep["settings"]["stages"] == ["detect"] and "model" not in rep and "estimate" not in rep

    table = invoke(*FAST, "--detector-model", tiny_onnx)
    assert "detect.hog" in table and "detect.yolox" in table
    assert "detection per frame: hog" in table and "than hog" in table
    assert "YOLOX not measured" not in table


def test_without_yolox_the_report_says_how_to_get_it(tmp_path):
    table = invoke(*FAST, "--json-out", tmp_path / "rep.json")  # (the table and the JSON of one run)
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert list(rep["stages"]) == ["detect", "detect.hog"]
    assert rep["detectors"]["yolox_missing"] == yolox_missing().replace("detector_model", "--detector-model")
    assert rep["detectors"]["used"] == "detect.hog" and rep["stages"]["detect"] == rep["stages"]["detect.hog"]
    lines = [line for line in table.splitlines() if "YOLOX not measured" in line]
    assert len(lines) == 1
    assert "wbcap weights fetch yolox-nano" in lines[0] and "--detector-model FILE" in lines[0]


def test_a_weights_variable_naming_nothing_is_refused_before_any_timing(tmp_path, monkeypatch, tiny_onnx):
    """`WBCAP_WEIGHTS=/nothing wbcap bench` timed the YOLOX installed elsewhere (or said none was
    installed; with --detector-model it went on with random weights); it is refused in the one
    line every command gives, unless --detect-only --detector-model names every file used."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.paths import weights_dir

    weights_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_onnx, weights_dir() / "yolox_nano.onnx")
    monkeypatch.setenv("WBCAP_WEIGHTS", str(tmp_path / "nothing"))
    for extra in ((), ("--detect-only",)):
        r = CliRunner().invoke(cli, ["bench", *extra, "--repeats", "1", "--warmup", "0", "--device", "cpu"])
        assert r.exit_code == 2 and r.stderr.startswith(f"error: WBCAP_WEIGHTS={tmp_path / 'nothing'}: no such file "
                                                        "or folder; point it at"), r.output
        assert "\n" not in r.stderr.rstrip("\n")
    assert "detect.yolox" in invoke(*FAST, "--detector-model", tiny_onnx)
    # the regressor's checkpoint is looked for there too (it went on with random weights and a warning)
    r = CliRunner().invoke(cli, ["bench", "--detector-model", str(tiny_onnx), "--repeats", "1", "--warmup", "0",
                                 "--device", "cpu"])
    assert r.exit_code == 2 and r.stderr.startswith(f"error: WBCAP_WEIGHTS={tmp_path / 'nothing'}: no such"), r.output


def test_installed_default_is_found_without_download(tiny_onnx):
    from wbcap.paths import weights_dir

    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_onnx, folder / "yolox_nano.onnx")
    image = person_image(160, 120, seed=1)
    timings, found, info = bench_detectors(image, repeats=2, warmup=0)
    assert list(timings) == ["detect.hog", "detect.yolox-nano"]
    assert info["used"] == "detect.yolox-nano" and info["yolox_source"] == "installed"
    assert info["yolox_model"] == str(folder / "yolox_nano.onnx") and info["yolox_missing"] is None
    assert len(timings["detect.yolox-nano"].runs_s) == 2 and len(found["detect.yolox-nano"]) == 1
    assert timings["detect.yolox-nano"].extra["detector"] == "yolox-nano"


def test_bad_model_is_an_input_error_a_broken_install_a_note(tmp_path):
    bad = tmp_path / "not_a_model.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(InputError, match="not_a_model.onnx"):
        run_bench(BenchOptions(device="cpu", detect_only=True, repeats=1, warmup=0, detector_model=str(bad)))

    from wbcap.paths import weights_dir

    weights_dir().mkdir(parents=True, exist_ok=True)
    shutil.copy(bad, weights_dir() / "yolox_nano.onnx")
    rep = run_bench(BenchOptions(device="cpu", detect_only=True, repeats=1, warmup=0))
    assert list(rep["stages"]) == ["detect", "detect.hog"]
    missing = rep["detectors"]["yolox_missing"]
    assert "does not load" in missing and "wbcap weights fetch yolox-nano" in missing


def test_summary_line():
    rep = {"stages": {"detect.hog": {"per_item_s": 0.2}, "detect.yolox-nano": {"per_item_s": 0.02}},
           "detectors": {"stages": ["detect.hog", "detect.yolox-nano"], "yolox_missing": None}}
    expected = "detection per frame: hog 200 ms/frame vs yolox-nano 20 ms/frame (10x faster than hog)"
    assert detect_summary(rep) == [expected]
    # a slower one by how many times slower (a user trial read "0.378x slower than hog" for 2.64x)
    rep["stages"]["detect.yolox-nano"]["per_item_s"] = 0.528
    assert detect_summary(rep) == ["detection per frame: hog 200 ms/frame vs yolox-nano 528 ms/frame (2.64x slower than hog)"]
    rep["stages"]["detect.yolox-nano"]["per_item_s"] = 0.2000004  # (equal to 3 figures)
    assert detect_summary(rep)[0].endswith("yolox-nano 200 ms/frame (as fast as hog)")
    assert detect_summary({"stages": {}}) == []


def test_real_yolox_nano_on_a_real_frame(shared_dir):
    model, video = shared_dir / "models" / "yolox_nano.onnx", shared_dir / "media" / "vtest.avi"
    if not (model.is_file() and video.is_file()):
        pytest.skip("yolox_nano.onnx or vtest.avi is absent")
    rep = run_bench(BenchOptions(device="cpu", detect_only=True, repeats=1, warmup=0, video=str(video),
                                 detector_model=str(model)))
    assert rep["input"]["synthetic"] is False and (rep["input"]["width"], rep["input"]["height"]) == (768, 576)
    nano = rep["stages"]["detect.yolox-nano"]
    check_detect_stage(nano, "yolox-nano", [768, 576], [416, 416], ("onnxruntime", "opencv"))
    assert nano["people"] >= 2  # a street scene with several pedestrians
    check_detect_stage(rep["stages"]["detect.hog"], "hog", [768, 576], rep["stages"]["detect.hog"]["input_size"],
                       ("opencv",))


def test_frame_size_is_the_synthetic_clips_only(tmp_path):
    """With --video the report recorded --frame-size's 320x240 beside the video's own size; a
    --frame-size given with --video was ignored without a word."""
    from wbcap.testing.videos import write_video

    video = write_video(tmp_path / "clip.mp4", [person_image(160, 96, seed=k) for k in range(2)])
    rep = json.loads(invoke(*FAST, "--json", "--video", video))
    assert rep["settings"]["frame_size"] is None
    assert (rep["input"]["width"], rep["input"]["height"], rep["input"]["synthetic"]) == (160, 96, False)
    assert json.loads(invoke(*FAST, "--json"))["settings"]["frame_size"] == [320, 240]
    result = CliRunner().invoke(cli, ["bench", *FAST, "--video", str(video), "--frame-size", "640x480"])
    assert result.exit_code == 2 and "--frame-size sets the synthetic clip's size, and --video is timed at its own: " \
                                      "drop one" in result.output
