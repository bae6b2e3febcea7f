"""Which person detector wbcap uses (issue 11): ``--detector auto`` prefers YOLOX, downloads it
once on first use (never offline), falls back to HOG with a notice; named YOLOX models; the
manifest entries; ``wbcap weights fetch/import`` for detectors; ``wbcap doctor``; the demo.

Downloads go to a server on 127.0.0.1 through ``$WBCAP_WEIGHTS_MIRROR``; the manifest entry of
``yolox-nano`` is pointed at a tiny YOLOX-format ONNX written here (its real size and hash are
those of the release file, which no test downloads).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from wbcap.cli import cli

YOLOX_NAMES = ["yolox-nano", "yolox-tiny", "yolox-s", "yolox-m", "yolox-l", "yolox-x"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# -- manifest -------------------------------------------------------------------------------------


def test_manifest_lists_the_official_yolox_exports():
    from wbcap.weights import default_entry, manifest

    entries = manifest()
    for name in YOLOX_NAMES:
        e = entries[name]
        assert e.architecture == "yolox" and e.licence == "Apache-2.0" and e.outputs == "raw"
        assert e.url == f"https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/{e.file}"
        assert e.input_size == (416 if name in ("yolox-nano", "yolox-tiny") else 640)
        assert not e.sha256 or len(e.sha256) == 64
    nano = entries["yolox-nano"]
    assert (nano.file, nano.size) == ("yolox_nano.onnx", 3_659_407)
    assert nano.sha256 == "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d"
    assert default_entry("yolox").name == "yolox-nano" and default_entry().name == "hand4whole"


# -- a loopback server and a tiny model -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 64x64 YOLOX-format model that finds one person box wherever it looks."""
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    row = [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79  # raw x, y, log w, log h, objectness, person
    return write_tiny_yolox(tmp_path_factory.mktemp("tiny") / "tiny.onnx", {20: row}, size=64,
                            parameters=NANO_PARAMETERS)  # (imported as yolox-nano: its count checked)


class _Server:
    def __init__(self, root: Path):
        self.root = root
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    (root / "models").mkdir(parents=True)
    s = _Server(root)
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def online(monkeypatch, server, tiny_onnx):
    """Downloads allowed, from the loopback server; yolox-nano's manifest entry = the tiny model."""
    import wbcap.weights as weights

    data = tiny_onnx.read_bytes()
    real = weights.manifest

    def patched():
        entries = real()
        entries["yolox-nano"] = dataclasses.replace(
            entries["yolox-nano"], size=len(data), sha256=hashlib.sha256(data).hexdigest())
        return entries

    monkeypatch.setattr(weights, "manifest", patched)
    monkeypatch.delenv("WBCAP_OFFLINE")
    monkeypatch.setenv("WBCAP_WEIGHTS_MIRROR", server.url)
    return server


def _serve(server, data: bytes, name="yolox_nano.onnx"):
    (server.root / "models" / name).write_bytes(data)


def _weights_dir() -> Path:
    from wbcap.paths import weights_dir

    return weights_dir()


# -- --detector auto --------------------------------------------------------------------------------


def test_auto_offline_without_yolox_is_hog_with_a_notice(caplog):
    from wbcap.detect.factory import make_detector

    with caplog.at_level(logging.WARNING):
        det = make_detector("auto")  # the tests' environment has WBCAP_OFFLINE=1
    assert type(det).__name__ == "HOGDetector"
    assert "`wbcap weights fetch yolox-nano`" in caplog.text and "offline" in caplog.text
    # (offline, fetch alone is no fix, as it refuses to download there: a photo user's trial)
    assert "because yolox-nano is not installed (offline); `wbcap weights import yolox-nano FILE` installs a copy " \
           "(yolox_nano.onnx from " in caplog.text and "`wbcap weights fetch yolox-nano` online gets" in caplog.text
    assert not _weights_dir().exists() or not list(_weights_dir().iterdir())


def test_auto_after_a_failed_download_says_it_failed(monkeypatch, caplog):
    """Online, after auto's download failed (no network): the fallback's warning says the download
    failed and when, as `wbcap doctor` does (it said "not downloaded": a new user's trial)."""
    import wbcap.weights
    from wbcap.detect.factory import make_detector

    monkeypatch.delenv("WBCAP_OFFLINE", raising=False)
    monkeypatch.setattr(wbcap.weights, "auto_fetch", lambda *a, **k: None)
    monkeypatch.setattr(wbcap.weights, "recent_auto_failure", lambda name: ("2026-12-07T07:55:07", "no network"))
    with caplog.at_level(logging.WARNING):
        assert type(make_detector("auto")).__name__ in ("HOGDetector", "TorchvisionFRCNN")
    assert "because yolox-nano is not installed (its download failed at 2026-12-07T07:55:07: no network; auto tries " \
           "again a day after)" in caplog.text, caplog.text


def test_auto_downloads_once_then_uses_the_file(online, tiny_onnx, caplog):
    from wbcap.detect.factory import make_detector

    _serve(online, tiny_onnx.read_bytes())
    with caplog.at_level(logging.WARNING):
        det = make_detector("auto")
    assert det.name == "yolox-nano" and type(det).__name__ == "YOLOXDetector"
    assert "downloading yolox-nano" in caplog.text and str(_weights_dir()) in caplog.text
    assert (_weights_dir() / "yolox_nano.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert online.hits == ["/models/yolox_nano.onnx"]
    make_detector("auto")
    assert len(online.hits) == 1  # present now: no second download
    r = invoke("weights", "verify")
    assert "yolox-nano         ok" in r.output


def test_auto_download_failure_falls_back_to_hog_and_is_not_retried(online, caplog, tiny_onnx, monkeypatch):
    from wbcap.detect.factory import make_detector

    with caplog.at_level(logging.WARNING):
        det = make_detector("auto")  # 404: nothing served
    assert type(det).__name__ == "HOGDetector"
    assert "HTTP 404" in caplog.text and "`wbcap weights fetch yolox-nano`" in caplog.text
    assert online.hits == ["/models/yolox_nano.onnx"]
    assert not (_weights_dir() / "yolox_nano.onnx").exists()
    make_detector("auto")
    assert len(online.hits) == 1  # one attempt: not again on its own
    assert "(or `wbcap weights import yolox-nano FILE` with yolox_nano.onnx from " in caplog.text  # (fetch had failed)
    _serve(online, tiny_onnx.read_bytes())
    r = invoke("weights", "fetch", "yolox-nano")  # asked explicitly: tries again
    assert r.exit_code == 0, r.output
    assert "matches the published hash" in r.output and len(online.hits) == 2
    assert make_detector("auto").name == "yolox-nano"
    r = invoke("weights", "fetch", "yolox-nano")  # (again: the official file is there, so no download)
    assert r.exit_code == 0 and r.output.rstrip().endswith("(the same file was there already)"), r.output
    assert len(online.hits) == 2
    monkeypatch.setenv("WBCAP_OFFLINE", "1")  # (nothing to download: not refused as offline, a weights trial)
    r = invoke("weights", "fetch", "yolox-nano")
    assert r.exit_code == 0 and r.output.rstrip().endswith("(the same file was there already)"), r.output


def test_a_download_on_first_use_is_checked_as_a_fetch_is(online, tmp_path, caplog):
    """`--detector yolox-m` downloaded and kept another YOLOX size a mirror served under its name,
    which `wbcap weights fetch yolox-m` refuses (a review): the same checks, nothing kept."""
    from wbcap.detect.factory import make_detector
    from wbcap.errors import InputError
    from wbcap.testing.onnx_models import write_tiny_yolox

    wrong = write_tiny_yolox(tmp_path / "yolox_m.onnx", {20: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79}, size=640)
    _serve(online, wrong.read_bytes(), "yolox_m.onnx")
    with caplog.at_level(logging.WARNING), pytest.raises(InputError) as info:
        make_detector("yolox-m")
    assert "not yolox-m's 25.3 M (another YOLOX size?)" in caplog.text, caplog.text
    assert str(info.value).startswith("detector yolox-m is not installed (the download failed (see above))")
    assert not (_weights_dir() / "yolox_m.onnx").exists()


def test_a_failed_fetch_names_the_whole_import_command(online):
    """A new user's trial: the fix ended in `wbcap weights import` without the name and file."""
    r = invoke("weights", "fetch", "yolox-nano")  # 404: nothing served
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].endswith(
        "HTTP 404 File not found; check the URL or download it by hand and import it with "
        "`wbcap weights import yolox-nano FILE`"), r.output


def test_offline_flag_forbids_the_download(online, tiny_onnx):
    from wbcap.detect.factory import make_detector

    _serve(online, tiny_onnx.read_bytes())
    assert type(make_detector("auto", offline=True)).__name__ == "HOGDetector"
    assert online.hits == []


def test_fetch_refuses_a_file_that_is_not_a_yolox_model(online, monkeypatch):
    """Right size and hash in the (patched) manifest but not an ONNX detector: not kept."""
    import wbcap.weights as weights

    bad = b"not an onnx model" * 10
    real = weights.manifest
    monkeypatch.setattr(weights, "manifest", lambda: {**real(), "yolox-nano": dataclasses.replace(
        real()["yolox-nano"], size=len(bad), sha256=hashlib.sha256(bad).hexdigest())})
    _serve(online, bad)
    r = invoke("weights", "fetch", "yolox-nano")
    assert r.exit_code != 0
    line = r.output.strip().splitlines()[-1]
    assert "not usable" in line and "was not kept" in line and "Traceback" not in r.output
    assert not _weights_dir().exists() or [p.name for p in _weights_dir().iterdir()] == []


def test_named_yolox_absent_offline_is_one_line(tmp_path, body_dir, micro_ckpt):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "x.jpg"), np.zeros((64, 48, 3), np.uint8))
    # (with the model files: without them, their line comes first, before any detector)
    r = invoke("image", tmp_path / "x.jpg", "--detector", "yolox-s", "--body-models", body_dir, "--checkpoint", micro_ckpt)
    assert r.exit_code != 0
    assert "yolox-s is not installed (offline)" in r.output and "`wbcap weights fetch yolox-s`" in r.output


def test_detector_model_only_with_yolox(tiny_onnx):
    from wbcap.detect.factory import make_detector
    from wbcap.errors import InputError

    assert make_detector("auto", model=str(tiny_onnx)).name == "yolox (tiny.onnx)"
    with pytest.raises(InputError, match="detector_model is a YOLOX ONNX file; it cannot be used with detector hog: "
                                         "leave detector out .* or name a YOLOX detector, e.g. yolox-nano$"):
        make_detector("hog", model=str(tiny_onnx))
    with pytest.raises(InputError, match="^unknown detector 'yolox'; with detector_model leave detector out"):
        make_detector("yolox", model=str(tiny_onnx))
    assert make_detector("yolox-nano", model=str(tiny_onnx)).name.startswith("yolox")
    with pytest.raises(InputError, match="yolox-nano"):
        make_detector("yolo")


@pytest.mark.slow  # (an ONNX re-export's import; an import and its use stay in the fast loop: test_image_uses_imported_yolox_by_default)
def test_import_a_reexport_is_accepted_and_said(tiny_onnx):
    r = invoke("weights", "import", "yolox-nano", tiny_onnx)
    assert r.exit_code == 0, r.output
    assert "input (1, 3, 64, 64)" in r.stdout and "not the official yolox-nano file" in r.stderr
    assert "not the official" not in r.stdout  # (a note, as warnings go: `-q` output stays the result alone)
    recorded = (_weights_dir() / "yolox_nano.onnx.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    r = invoke("weights", "verify")
    assert "not the official file" in r.output and r.exit_code == 0
    r = invoke("doctor")
    assert "person detector: auto uses yolox-nano" in r.output and "a re-export" in r.output
    # importing over a file says what became of it (a user's own export was replaced without a word)
    r = invoke("weights", "import", "yolox-nano", tiny_onnx)
    assert r.exit_code == 0 and r.stdout.splitlines()[0].endswith(
        f"-> {_weights_dir() / 'yolox_nano.onnx'} (the same file was there already)"), r.stdout
    from wbcap.testing.onnx_models import NANO_PARAMETERS, write_tiny_yolox

    other = write_tiny_yolox(tiny_onnx.with_name("other.onnx"), {3: [0.5, 0.5, 1.0, 1.5, 0.9, 0.95] + [0.0] * 79},
                             size=64, parameters=NANO_PARAMETERS)
    before = hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    r = invoke("weights", "import", "yolox-nano", other)  # another file: replaced only when asked (a new user's trial)
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0] == (
        f"error: {_weights_dir() / 'yolox_nano.onnx'}: holds another yolox-nano file (sha256 {before[:12]}…); pass "
        "--replace to put other.onnx in its place (`wbcap weights verify` says what is there)"), r.output
    assert (_weights_dir() / "yolox_nano.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert (_weights_dir() / "yolox_nano.onnx.sha256").read_text().split()[0] == before
    r = invoke("weights", "import", "yolox-nano", other, "--replace")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].endswith(
        f"(replaced another file there, sha256 {before[:12]}…)"), r.stdout
    assert (_weights_dir() / "yolox_nano.onnx").read_bytes() == other.read_bytes()


def test_import_refuses_a_non_yolox_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00" * 100)
    r = invoke("weights", "import", "yolox-nano", bad)
    assert r.exit_code != 0 and "cannot load as an ONNX model" in r.output
    assert not (_weights_dir() / "yolox_nano.onnx").exists()


def test_doctor_without_yolox_names_the_fix():
    r = invoke("doctor")
    assert "auto uses OpenCV HOG" in r.output and "no yolox_nano.onnx in" in r.output and "`wbcap weights fetch yolox-nano`" in r.output


def test_demo_detector_is_the_best_installed_one(tiny_onnx):
    """What the demo picks (its end-to-end runs, with the full-size network, are marked slow)."""
    from wbcap.demo import best_detector
    from wbcap.detect import torchvision_frcnn

    assert best_detector() == ("torchvision" if torchvision_frcnn.available()[0] else "hog")  # offline, no YOLOX
    assert not _weights_dir().exists() or not list(_weights_dir().iterdir())  # nothing fetched
    assert invoke("weights", "import", "yolox-nano", tiny_onnx).exit_code == 0
    assert best_detector() == "yolox-nano"


@pytest.mark.slow  # two demo runs of the full-size network
def test_demo_says_which_detector(tmp_path, tiny_onnx):
    r = invoke("demo", "-o", tmp_path / "a", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "detector: hog" in r.output and "`wbcap weights fetch yolox-nano`" in r.output
    assert "example.jpg: 1 person(s)" in r.output
    assert invoke("weights", "import", "yolox-nano", tiny_onnx).exit_code == 0
    r = invoke("demo", "-o", tmp_path / "b", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "detector: yolox-nano" in r.output and "example.jpg: 1 person(s)" in r.output


# -- the real YOLOX-nano, imported: image and run use it by default ----------------------------------


@pytest.fixture
def nano_imported(shared_dir):
    model = shared_dir / "models" / "yolox_nano.onnx"
    if not model.is_file():
        pytest.skip("../shared/models/yolox_nano.onnx absent")
    r = invoke("weights", "import", "yolox-nano", model)
    assert r.exit_code == 0, r.output
    return model


def test_image_uses_imported_yolox_by_default(nano_imported, shared_dir, tmp_path, micro_ckpt, body_dir):
    out = tmp_path / "out"
    r = invoke("image", shared_dir / "media" / "messi5.jpg", "-o", out, "--max-people", "1", "--no-render",
               "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    param = json.loads((out / "messi5" / "person_0" / "smplx_param.json").read_text())
    x, y, w, h = param["bbox_xywh"]
    assert abs(x - 59) < 6 and abs(y - 58) < 6 and abs(x + w - 474) < 6 and abs(y + h - 335) < 6, param["bbox_xywh"]


def test_image_detector_limits(nano_imported, shared_dir, tmp_path, micro_ckpt, body_dir):
    """--score-threshold and --min-height reach the detector: nobody passes 0.99."""
    r = invoke("image", shared_dir / "media" / "messi5.jpg", "-o", tmp_path / "o", "--score-threshold", "0.99",
               "--no-render", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code != 0 and "no person found by the yolox-nano detector" in r.output


@pytest.mark.slow  # real video end to end
def test_run_uses_imported_yolox_by_default(nano_imported, shared_dir, tmp_path, micro_ckpt, body_dir):
    out = tmp_path / "run"
    r = invoke("run", shared_dir / "media" / "vtest.avi", "-o", out, "--start", "20", "--max-frames", "3",
               "--no-render", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
    per_frame = {f: sum(1 for x in lines if x["frame"] == f) for f in (200, 201, 202)}
    assert min(per_frame.values()) >= 7, per_frame  # HOG finds about half the people here


def test_fetch_while_offline_is_one_line_without_network():
    """WBCAP_OFFLINE=1 (the tests' environment) forbids `wbcap weights fetch` too: it tried the
    network and failed on the host name before."""
    r = CliRunner().invoke(cli, ["weights", "fetch", "yolox-nano"])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "yolox-nano: WBCAP_OFFLINE is set, so nothing is downloaded" in text and "resolve" not in text, text


def test_a_resume_where_auto_finds_no_yolox_is_refused_not_finished_by_hog(tiny_onnx, tmp_path, micro_ckpt, body_dir):
    """`--detector auto` runs YOLOX where its weights are installed and HOG where not: a resume on
    a machine or account without them mixed two detectors' boxes, tracks and scores in one run
    (an HCI researcher's trial). run.json records the detector pass 1 ran and its weights; a
    resume running another is refused in one line (after the warning that says HOG runs), and
    nothing of the run changes."""
    from test_cli_run import write_video

    from wbcap.testing.images import person_image

    assert invoke("weights", "import", "yolox-nano", tiny_onnx).exit_code == 0
    installed = next(_weights_dir().glob("yolox_nano*.onnx"))
    video = write_video(tmp_path / "v.mp4", [person_image(160, 120, seed=i) for i in range(3)])
    out = tmp_path / "out"
    args = ["run", video, "-o", out, "--no-render", "--min-track", "1", "--export", "npz", "--checkpoint", micro_ckpt,
            "--body-models", body_dir, "--device", "cpu"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    run = json.loads((out / ".wbcap" / "run.json").read_text())
    assert run["detector"] == "auto" and run["detector_used"] == "yolox-nano"
    assert run["file_identity"]["detector_weights"]["path"] == str(installed)
    pass1 = out / ".wbcap" / "pass1.json"
    finished = pass1.read_bytes()
    pass1.unlink()  # (pass 1 unfinished, as far as a resume knows: it opens the detector)
    aside = installed.rename(tmp_path / "aside.onnx")
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    r = invoke(*args, "--resume")
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 2 and lines[0].startswith("WARNING  detector: OpenCV HOG"), r.output
    assert lines[1].startswith(f"error: {out}: the run began with the yolox-nano detector, and this resume would run "
                               "hog; a run continues only with the detector it began with"), r.output
    assert "`wbcap weights list`" in lines[1] and "--overwrite" in lines[1]
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # pass 1 finished, but a record damaged since: the resume opens the detector only after its
    # checks of the run's settings, and refuses it there
    pass1.write_bytes(finished)
    raw = out / ".wbcap" / "raw.jsonl"
    data = raw.read_bytes()
    raw.write_bytes(data[:-20] + b"#" * 19 + data[-1:])  # (the same size: pass 1 counts as finished)
    outputs = lambda: {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}  # (params, meta, npz)
    before = outputs()
    r = invoke(*args, "--resume")
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith(
        f"error: {out}: the run began with the yolox-nano detector, and this resume would run hog"), r.output
    assert outputs() == before and "params.jsonl" in before
    # (with the weights back the same detector resumes: tests/test_run_folder.py, without a third run here)
    aside.rename(installed)
