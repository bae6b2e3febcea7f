"""YOLOX person detector: letterbox, decoding, NMS on known arrays; a tiny authored ONNX model
on both runtimes; the real yolox_nano.onnx on shared media (skipped when absent)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wbcap.detect.yolox import (
    YOLOXDetector,
    _check_signature,
    anchor_grid,
    decode_raw,
    letterbox,
    looks_decoded,
    nms,
    num_anchors,
    postprocess,
)
from wbcap.errors import InputError

S = 64  # tiny input side: 8x8 + 4x4 + 2x2 = 84 anchors
A = 2 * 8 + 5  # stride 8, gx=5, gy=2
C = 64 + 1 * 4 + 2  # stride 16, gx=2, gy=1
D = 64 + 16 + 1 * 2 + 0  # stride 32, gx=0, gy=1


def _row(xywh, obj, cls0, cls1=0.0):
    r = np.zeros(85, np.float32)
    r[:4], r[4], r[5], r[6] = xywh, obj, cls0, cls1
    return r


# A: centre (5.5, 2.5) cells * 8 = (44, 20), size (2, 4) * 8 = (16, 32) input px; score .9*.9.
# C: the same box from the stride-16 grid ((2.75, 1.25) * 16, (1, 2) * 16), score .8*.8 = .64.
# D: a confident non-person (class 1).
ROWS = {
    A: _row([0.5, 0.5, math.log(2), math.log(4)], 0.9, 0.9),
    C: _row([0.75, 0.25, 0.0, math.log(2)], 0.8, 0.8),
    D: _row([0.5, 0.5, 0.0, 0.0], 0.95, 0.1, 0.9),
}
BOX_A_INPUT = (36.0, 4.0, 52.0, 36.0)  # x1, y1, x2, y2 input px


def _pred():
    pred = np.zeros((num_anchors(S), 85), np.float32)
    for k, v in ROWS.items():
        pred[k] = v
    return pred


def _blob_ok(blob):
    """The assertion on a letterboxed red 100x50 image (S=64): BGR, 0-255, top-left, 114 pad."""
    return (
        blob.shape == (1, 3, 64, 64) and blob.dtype == np.float32
        and np.all(blob[0, 0, :32] == 0) and np.all(blob[0, 1, :32] == 0)
        and np.all(blob[0, 2, :32] == 255) and np.all(blob[0, :, 32:] == 114)
    )


def test_letterbox_bgr_raw_values_top_left():
    image = np.zeros((50, 100, 3), np.uint8)
    image[..., 0] = 255  # red in RGB
    blob, r = letterbox(image, 64)
    assert r == pytest.approx(0.64)
    assert _blob_ok(blob)
    # Wrong variants fail the same assertion: RGB order, 0-1 scaling, centred padding.
    assert not _blob_ok(blob[:, ::-1])
    assert not _blob_ok(blob / 255.0)
    assert not _blob_ok(np.roll(blob, 16, axis=2))


def test_decode_raw_known_boxes_and_grid_order():
    dec = decode_raw(_pred(), S)
    np.testing.assert_allclose(dec[A, :4], [44, 20, 16, 32], rtol=1e-6)
    np.testing.assert_allclose(dec[C, :4], [44, 20, 16, 32], rtol=1e-6)
    np.testing.assert_allclose(dec[D, :4], [16, 48, 32, 32], rtol=1e-6)
    # Wrong variant: y varying fastest within the grid (swapped meshgrid) moves A to (20, 44).
    grid, stride = anchor_grid(S)
    swapped = (_pred()[:, :2] + grid[:, ::-1]) * stride
    assert not np.allclose(swapped[A], [44, 20])
    # Grids in reversed stride order would put A on the stride-32 grid (84 rows still).
    rev = decode_raw(_pred(), S, strides=(32, 16, 8))
    assert not np.allclose(rev[A, :4], [44, 20, 16, 32])


def test_postprocess_scores_nms_and_ratio():
    boxes, scores = postprocess(_pred(), 0.5, (128, 128), score_threshold=0.3, nms_iou=0.45,
                                decoded=False, size=S)
    # A kept (score .81), C (same box, .64) suppressed, D (not a person, .095) dropped.
    np.testing.assert_allclose(scores, [0.81], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[72, 8, 32, 64]], rtol=1e-6)
    # Wrong variant: a second sigmoid on already-sigmoided scores gives .505, not .81.
    sig = lambda v: 1 / (1 + np.exp(-v))
    twice = _pred()
    twice[:, 4:] = sig(twice[:, 4:])
    _, s2 = postprocess(twice, 0.5, (128, 128), score_threshold=0.3, nms_iou=0.45, decoded=False, size=S)
    assert s2[0] == pytest.approx(sig(0.9) ** 2, rel=1e-5) and abs(s2[0] - 0.81) > 0.2
    # Decoded outputs give the same boxes when flagged as decoded.
    b3, s3 = postprocess(decode_raw(_pred(), S), 0.5, (128, 128), score_threshold=0.3,
                         nms_iou=0.45, decoded=True, size=S)
    np.testing.assert_allclose(b3, boxes, rtol=1e-6)
    np.testing.assert_allclose(s3, scores)
    # Boxes are clipped to the image.
    b4, _ = postprocess(_pred(), 0.5, (40, 90), score_threshold=0.3, nms_iou=0.45, decoded=False, size=S)
    np.testing.assert_allclose(b4, [[72, 8, 18, 32]], rtol=1e-6)


def test_nms_known_answer():
    boxes = np.array([[0, 0, 16, 32], [8, 0, 24, 32], [0, 0, 16, 32], [100, 100, 110, 110]], float)
    scores = np.array([0.9, 0.8, 0.95, 0.1])
    # Box 2 (best) suppresses its duplicate 0; box 1 overlaps it with IoU 1/3 < 0.45.
    assert nms(boxes, scores, 0.45).tolist() == [2, 1, 3]
    assert nms(boxes, scores, 0.3).tolist() == [2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.45).tolist() == []


def test_raw_vs_decoded_rule():
    rng = np.random.default_rng(0)
    for size in (64, 416, 640):
        raw = np.zeros((num_anchors(size), 85), np.float32)
        raw[:, :2] = rng.uniform(-0.5, 1.5, (len(raw), 2))
        raw[:, 2:4] = rng.normal(0, 1, (len(raw), 2))
        assert not looks_decoded(raw, size)
        assert looks_decoded(decode_raw(raw, size), size)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("onnx")
    from wbcap.testing.onnx_models import write_tiny_yolox

    return write_tiny_yolox(tmp_path_factory.mktemp("onnx") / "tiny.onnx", ROWS, size=S, blue_gated=[A])


def _blue(size=128):
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 2] = 255  # blue in RGB
    return image


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_tiny_onnx_both_runtimes(tiny_model, runtime):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    det = YOLOXDetector(tiny_model, runtime=runtime)
    assert det.size == S and det.runtime == runtime
    found = det(_blue())
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, (72.0, 8.0, 32.0, 64.0), atol=1e-3)
    assert found[0].score == pytest.approx(0.81, abs=1e-5)
    assert det.decoded is False
    # Wrong feeding: RGB order or 0-1 values turn A's objectness off; C (.64) wins instead.
    blob, r = letterbox(_blue(), S)
    for wrong in (np.ascontiguousarray(blob[:, ::-1]), blob / 255.0):
        _, s = postprocess(det._forward(wrong.astype(np.float32)), r, (128, 128),
                           score_threshold=0.3, nms_iou=0.45, decoded=False, size=S)
        assert s[0] == pytest.approx(0.64, abs=1e-5)
    # min_height_frac and max_people filter.
    assert YOLOXDetector(tiny_model, runtime=runtime, min_height_frac=0.6)(_blue()) == []


def test_tiny_onnx_runtimes_agree_and_decoded_export(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from wbcap.testing.onnx_models import write_tiny_yolox

    a = YOLOXDetector(tiny_model, runtime="onnxruntime")(_blue(200))
    b = YOLOXDetector(tiny_model, runtime="opencv")(_blue(200))
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].box, b[0].box, atol=1e-3)
    # An export with decoded boxes: every anchor holds its cell centre; detected as decoded.
    pred = decode_raw(_pred(), S)
    rows = {k: pred[k] for k in range(len(pred))}
    model = write_tiny_yolox(tmp_path / "decoded.onnx", rows, size=S, blue_gated=[A])
    det = YOLOXDetector(model)
    found = det(_blue())
    assert det.decoded is True
    assert len(found) == 1
    np.testing.assert_allclose(found[0].box, (72.0, 8.0, 32.0, 64.0), atol=1e-3)


def test_bad_model_files(tmp_path):
    with pytest.raises(InputError, match=r"nope\.onnx does not exist.*wbcap weights fetch yolox-nano"):
        YOLOXDetector(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    for runtime in ("auto", "opencv"):
        with pytest.raises(InputError, match=r"junk\.onnx.*wbcap weights fetch yolox-nano") as info:
            YOLOXDetector(junk, runtime=runtime)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=r"expected \(1, 84, 85\)"):
        _check_signature(junk, [1, 3, 64, 64], [[1, 85, 85]])
    with pytest.raises(InputError, match=r"expected \(1, 3, S, S\)"):
        _check_signature(junk, [1, 3, 64, 32], [[1, 84, 85]])
    assert _check_signature(junk, [1, 3, 416, 416], [[1, 3549, 85]]) == 416


def test_a_score_threshold_outside_0_1_is_refused_and_a_flood_of_boxes_is_cut_to_coco_s_limit(tiny_model, caplog,
                                                                                              monkeypatch):
    """A user trial: --score-threshold -3 (or 5) was taken, and at 0 or below YOLOX-nano kept
    1093 boxes of a vtest frame, each a network crop: one frame ran for minutes. A threshold
    outside [0, 1] is refused in one line; more than MAX_DETECTIONS (100) boxes in an image keep
    the 100 highest-scoring, said once; --max-people under it is what it was."""
    import logging

    from wbcap.detect.yolox import MAX_DETECTIONS

    for bad in (-3.0, 5.0, float("nan")):
        with pytest.raises(InputError) as info:
            YOLOXDetector(tiny_model, score_threshold=bad)
        assert str(info.value).startswith(f"score_threshold {bad:g} is outside [0, 1], where YOLOX's scores lie")
    assert MAX_DETECTIONS == 100
    import wbcap.weights
    from wbcap.detect.factory import make_detector

    # a named YOLOX (or torchvision) refuses it before any download
    monkeypatch.setattr(wbcap.weights, "auto_fetch", lambda *a, **k: pytest.fail("fetched before the check"))
    for spec in ("yolox-nano", "yolox-s", f"yolox:{tiny_model}", "torchvision"):
        with pytest.raises(InputError, match=r"^score_threshold 5 is outside \[0, 1\], where "):
            make_detector(spec, score_threshold=5.0)
    det = YOLOXDetector(tiny_model, score_threshold=0.0, decoded=True)
    # 150 decoded boxes apart from each other (no NMS between them), scores 0.05 ... 0.80
    pred = np.zeros((150, 85), np.float32)
    pred[:, 0] = 4 + 16 * (np.arange(150) % 15)
    pred[:, 1] = 8 + 32 * (np.arange(150) // 15)
    pred[:, 2:4] = (8, 16)
    pred[:, 4] = 1.0
    pred[:, 5] = np.linspace(0.05, 0.8, 150)
    det.raw_output = lambda image: (pred, 1.0)
    image = np.zeros((320, 240, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="wbcap.detect.yolox"):
        found = det(image)
        assert det(image) == found
    assert len(found) == 100 and [d.score for d in found] == pytest.approx(np.linspace(0.05, 0.8, 150)[::-1][:100])
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == ["YOLOX found 150 people over score_threshold 0 in one image; keeping the 100 highest-scoring in "
                    "each image (COCO's limit): raise score_threshold for fewer"], said
    few = YOLOXDetector(tiny_model, score_threshold=0.0, decoded=True, max_people=3)
    few.raw_output = det.raw_output
    assert [d.score for d in few(image)] == [d.score for d in found[:3]]


def test_auto_refuses_a_score_threshold_outside_0_1_on_every_machine_and_hog_keeps_its_margin(monkeypatch, caplog):
    """`--detector auto --score-threshold 5` was refused only where YOLOX was installed; where auto
    fell back to HOG, 5 (or 0.9) was taken as an SVM margin, another scale. Now auto's threshold is a
    probability everywhere, checked before any download, and the HOG fallback keeps its default
    margin and says so in its warning."""
    import logging

    import wbcap.weights
    from wbcap.detect import torchvision_frcnn
    from wbcap.detect.factory import make_detector
    from wbcap.detect.hog import HOGDetector

    monkeypatch.setattr(wbcap.weights, "auto_fetch", lambda *a, **k: pytest.fail("fetched before the check"))
    for bad in (5.0, -0.5, float("nan")):
        with pytest.raises(InputError, match=r"^score_threshold \S+ is outside \[0, 1\], where the scores of "
                                             r"detector auto's detectors lie \(YOLOX, Faster R-CNN; for HOG's SVM "
                                             r"margins use detector hog\)"):
            make_detector("auto", score_threshold=bad)
    monkeypatch.setattr(wbcap.weights, "auto_fetch", lambda *a, **k: None)  # (no YOLOX here)
    monkeypatch.setattr(torchvision_frcnn, "available", lambda: (False, "not installed"))
    with caplog.at_level(logging.WARNING, logger="wbcap.detect.factory"):
        det = make_detector("auto", score_threshold=0.9, offline=True)
        assert isinstance(det, HOGDetector) and det.score_threshold == 0.0
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1 and said[0].endswith(
            "; score_threshold 0.9 is a probability and HOG scores SVM margins, so HOG keeps its default margin 0 "
            "(detector hog takes a margin)"), said
        caplog.clear()
        assert make_detector("auto", offline=True).score_threshold == 0.0
        assert "probability" not in caplog.records[0].getMessage()
    assert make_detector("hog", score_threshold=0.9).score_threshold == 0.9  # (named: its margin)


def test_cli_refuses_a_score_threshold_outside_0_1_in_one_line(tmp_path, tiny_model, micro_ckpt, body_dir):
    import cv2
    from click.testing import CliRunner

    from wbcap.cli import cli

    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), _blue())
    r = CliRunner().invoke(cli, ["image", str(photo), "-o", str(tmp_path / "out"), "--detector", f"yolox:{tiny_model}",
                                 "--score-threshold", "-3", "--checkpoint", str(micro_ckpt), "--body-models",
                                 str(body_dir), "--device", "cpu"])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert r.output.startswith("error: --score-threshold -3 is outside [0, 1], where YOLOX's scores lie"), r.output
    assert not (tmp_path / "out").exists()


# -- the real yolox_nano.onnx ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def nano(shared_dir):
    path = shared_dir / "models" / "yolox_nano.onnx"
    if not path.is_file():
        pytest.skip("../shared/models/yolox_nano.onnx is absent")
    return path


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv"])
def test_nano_messi(nano, shared_dir, runtime):
    from wbcap.io.images import load_image

    det = YOLOXDetector(nano, runtime=runtime)
    assert det.size == 416
    found = det(load_image(shared_dir / "media" / "messi5.jpg"))
    assert det.decoded is False
    assert found[0].xyxy == pytest.approx((59, 58, 474, 335), abs=15)
    assert found[0].score == pytest.approx(0.85, abs=0.1)


def test_nano_vtest_frame_200(nano, shared_dir):
    from wbcap.io.video_reader import open_frames

    frame = next(iter(open_frames(shared_dir / "media" / "vtest.avi", start=20.0, max_frames=1)))
    assert frame.index == 200
    found = YOLOXDetector(nano)(frame.image)
    assert len(found) >= 7
    assert all(d.score >= 0.3 for d in found)
    assert len(YOLOXDetector(nano, score_threshold=0.0)(frame.image)) == 100  # (over a thousand before the cut)


@pytest.mark.slow  # real video end to end
def test_run_with_yolox_detector_on_vtest(tmp_path, shared_dir, micro_ckpt, body_dir):
    """`wbcap run --detector yolox:FILE` end to end on 3 real frames: people tracked."""
    import json

    from click.testing import CliRunner

    from wbcap.cli import cli

    model, video = shared_dir / "models" / "yolox_nano.onnx", shared_dir / "media" / "vtest.avi"
    if not model.is_file() or not video.is_file():
        pytest.skip("yolox_nano.onnx or vtest.avi absent from ../shared")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, [
        "run", str(video), "-o", str(out), "--start", "20", "--max-frames", "3", "--detector", f"yolox:{model}",
        "--max-people", "8", "--no-render", "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir), "--device", "cpu",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    assert len({x["track"] for x in lines}) >= 5 and {x["frame"] for x in lines} == {200, 201, 202}


@pytest.mark.slow  # fresh processes or pipelines built (the fast loop stays under 2 minutes)
def test_onnxruntime_is_imported_with_its_telemetry_off(tmp_path):
    """onnxruntime 1.32's Linux wheel writes a device id and an event store for Microsoft's
    telemetry into the user's cache as it loads (found through a read-only cache's warning: a
    break-it trial); wbcap's detector loads it with ORT_DISABLE_TELEMETRY=1, and a value the user
    set is kept. In fresh processes, each with its own cache folder."""
    import os
    import subprocess
    import sys

    from wbcap.testing.onnx_models import write_tiny_yolox

    pytest.importorskip("onnxruntime")
    model = write_tiny_yolox(tmp_path / "tiny.onnx", {0: [0.0] * 85})
    ours = ("import sys; from wbcap.detect.yolox import YOLOXDetector\n"
            f"YOLOXDetector({str(model)!r}, runtime=sys.argv[1])\n"
            "import os; print(os.environ.get('ORT_DISABLE_TELEMETRY'))")
    plain = (f"import onnxruntime as ort; ort.InferenceSession({str(model)!r}, providers=['CPUExecutionProvider'])\n"
             "import os; print(os.environ.get('ORT_DISABLE_TELEMETRY'))")

    def run(code: str, name: str, *args: str, **env: str) -> tuple[str, list[str]]:
        home = tmp_path / name
        # (without CI too: onnxruntime keeps its telemetry off where CI is set, as .ci/run sets it)
        environ = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "CI")}
        environ.update(HOME=str(home / "h"), XDG_CACHE_HOME=str(home / "cache"), WBCAP_HOME=str(home / "w"), **env)
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                              env=environ)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.strip(), sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())

    for runtime in ("onnxruntime", "auto"):  # (auto's own import had it on: a code review)
        said, written = run(ours, f"ours_{runtime}", runtime)
        assert (said, written) == ("None", []), (runtime, written)  # (the environment left as it was)
    said, _ = run(ours, "users", "auto", ORT_DISABLE_TELEMETRY="0")
    assert said == "0"
    said, written = run(plain, "plain")  # (what it guards against, where this wheel still does it)
    assert said == "None"
    if not written:
        pytest.skip("this onnxruntime keeps no telemetry files: nothing to guard against")


def test_threads_importing_onnxruntime_at_once_all_get_the_whole_module():
    """Threads using `detector="auto"` for the first time at once (an API user's trial): one got the
    module another was still importing, without its InferenceSession ("partially initialized
    module"), and another's YOLOX file was blamed. In a fresh Python, eight threads at once (four
    failed one to three of four before)."""
    import subprocess
    import sys

    code = ("import threading\nfrom wbcap.onnx_runtime import import_onnxruntime\nres = []\n"
            "def go():\n    res.append(hasattr(import_onnxruntime(), 'InferenceSession'))\n"
            "ts = [threading.Thread(target=go) for _ in range(8)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n"
            "print(sum(res))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["8"], out
