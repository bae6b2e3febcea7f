"""`wbcap view` (issue 15): the viewer page of a finished run or image folder, in a real browser.

The browser tests generate a small `wbcap run` (two walkers, render.mp4 included) and a two-person
`wbcap image` result, then drive Debian's headless Chromium through playwright-core
(``tests/js/view_driver.mjs``, one browser for the module) on four pages: the run served by
``wbcap view OUT`` (a subprocess, as a user starts it), the run written with ``--html`` and copied
as a plain folder, served by its own ``serve.py``, the image folder served by
:func:`wbcap.view.site.serve_view`, and the copied page opened from a ``file://`` address. They
read back from the page (``window.wbcapView``) the video's time and pixels, every body's skinned
vertices, the parameters shown and a screenshot of the 3D view through the source camera, and
compare them with wbcap's own files: render.mp4 decoded by PyAV, the LBS mesh of each track's npz
(:func:`wbcap.export.rig.lbs_vertices`, what the GLB holds), its projection by the run's camera,
params.jsonl, and the image people's OBJs placed rigidly in the overlay's camera. Needs node,
``npm ci --prefix tests/js`` and ``/usr/bin/chromium``; those tests skip without them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from clients import CHROMIUM, JS, NODE_MODULES, browser_missing, node_packages_missing, skip_or_fail
from test_cli_run import two_walkers

from wbcap.cli import cli
from wbcap.export.colors import TRACK_COLORS, TRACK_COLORS_1

THREE = NODE_MODULES / "three"
FRAMES = 8
SEEK_TIMES = (0.3, 0.46, 0.7)  # 0.46: between frames 4 and 5, shows frame 4 (the frame on screen at 0.46 s)
ORIGIN = {"translation": [0.0, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0, 1.0]}  # the camera frame's source camera


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# --------------------------------------------------------------------------- fast: no browser


def test_not_a_run_folder_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    for folder, needle in ((tmp_path / "empty", "not a finished `wbcap run` or `wbcap image` folder"),
                           (tmp_path / "absent", "no such folder")):
        r = invoke("view", folder, "--html", tmp_path / "v.html")
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0] and str(folder) in lines[0], r.output
    assert not (tmp_path / "v.html").exists() and not (tmp_path / "v_files").exists()


def test_html_must_be_an_html_file_and_never_replaces_foreign_folders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "params.jsonl").write_text("")
    r = invoke("view", run, "--html", tmp_path / "page.txt")
    assert r.exit_code == 2 and "--html" in r.output and "must name an .html file" in r.output, r.output
    (tmp_path / "afile").write_text("x")  # (it said "cannot create the output folder (File exists)")
    r = invoke("view", run, "--html", tmp_path / "afile" / "v.html")
    assert r.exit_code == 2 and r.output == (f"error: {tmp_path / 'afile'}: is a file, so {tmp_path / 'afile' / 'v.html'} "
                                             "cannot be written; choose another --html file\n"), r.output
    (tmp_path / "page_files").mkdir()
    (tmp_path / "page_files" / "mine.txt").write_text("keep")
    r = invoke("view", run, "--html", tmp_path / "page.html")
    assert r.exit_code == 2 and "was not written by `wbcap view`" in r.output, r.output
    assert (tmp_path / "page_files" / "mine.txt").read_text() == "keep"


def test_server_answers_byte_ranges_and_serves_only_its_folder(tmp_path, capfd):
    from wbcap.view.server import ViewServer

    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    data = bytes(range(256)) * 40
    (site / "video.mp4").write_bytes(data)
    (tmp_path / "secret.txt").write_text("no")

    def get(url: str, headers: dict | None = None):
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, b""

    with ViewServer(site) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert server.url == f"{base}/index.html"
        status, headers, body = get(f"{base}/video.mp4", {"Range": "bytes=100-199"})
        assert (status, headers["Content-Range"], body) == (206, f"bytes 100-199/{len(data)}", data[100:200])
        assert headers["Content-Type"] == "video/mp4" and headers["Accept-Ranges"] == "bytes"
        assert get(f"{base}/video.mp4", {"Range": "bytes=10000-"})[2] == data[10000:]
        assert get(f"{base}/video.mp4", {"Range": "bytes=-16"})[2] == data[-16:]
        assert get(f"{base}/video.mp4", {"Range": f"bytes={len(data)}-"})[0] == 416
        # an invalid (reversed) range is ignored (RFC 9110 sec. 14.2): the whole file, not 416
        status, headers, body = get(f"{base}/video.mp4", {"Range": "bytes=200-100"})
        assert (status, body) == (200, data) and "Content-Range" not in headers
        status, headers, body = get(f"{base}/video.mp4")
        assert status == 200 and body == data
        assert get(f"{base}/sub/")[0] == 404  # no listings
        assert get(f"{base}/../secret.txt")[0] == 404
        assert get(f"{base}/%2e%2e/secret.txt")[0] == 404
        capfd.readouterr()
        assert get(f"{base}/video%00.mp4")[0] == 404  # (no file name holds a NUL: http.server printed a traceback)
        assert "Traceback" not in capfd.readouterr().err
    (site / "page.html").write_text("<p>page</p>")
    (site / "sub" / "app.js").write_text("1")
    with ViewServer(site, page="page.html", only=("/page.html", "/sub/")) as server:  # what serve.py serves
        base = f"http://127.0.0.1:{server.port}"
        assert get(f"{base}/page.html")[2] == b"<p>page</p>" and get(f"{base}/sub/app.js")[2] == b"1"
        assert get(f"{base}/sub/app.js")[1]["Content-Type"].startswith("text/javascript")
        assert [get(f"{base}/{p}")[0] for p in ("video.mp4", "sub/../video.mp4", "subx/app.js")] == [404, 404, 404]
        # the host and port alone lead to the page (it was "File not found": a viewer trial)
        assert get(f"{base}/")[0::2] == (200, b"<p>page</p>")


def test_vendored_three_is_the_pinned_npm_package():
    from wbcap.view.vendor import THREE_FILES, THREE_VERSION, compare_three, vendored_name, vendored_three

    pinned = json.loads((JS / "package.json").read_text())["dependencies"]["three"]
    assert pinned == THREE_VERSION
    for rel in THREE_FILES:
        assert (vendored_three() / vendored_name(rel)).is_file(), rel
    assert "MIT" in (vendored_three() / "LICENSE").read_text()
    if not (THREE / "package.json").is_file():
        skip_or_fail(f"{THREE} is missing (run: npm ci --prefix tests/js)")
    assert compare_three(THREE) == []
    # every module the page's files import is vendored (the import map resolves 'three' and 'three/addons/')
    static = vendored_three().parent.parent
    pattern = re.compile(r"""^(?:import|export)\b[^'";]*?from\s*['"]([^'"]+)['"]""", re.M)
    for js in [static / "app.js", *vendored_three().rglob("*.js")]:
        for spec in pattern.findall(js.read_text(encoding="utf-8")):
            if spec == "three":
                continue
            if spec.startswith("three/addons/"):
                target = vendored_three() / "addons" / spec[len("three/addons/"):]
            else:
                target = js.parent / spec
            assert target.resolve().is_file(), f"{js.name} imports {spec}"


def test_viewer_colours_come_without_torch():
    """The viewer takes render.mp4's colours from a module that imports no torch (~2.5 s)."""
    import subprocess
    import sys

    code = ("import sys; from wbcap.view.manifest import track_colors; c = track_colors({4: (0, 9), 7: (3, 5)}); "
            "print(len(c), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]


def test_page_of_a_photo_folder_is_made_without_torch(image_run, tmp_path):
    """`wbcap view --html` of a `wbcap image` folder places its people in numpy (wbcap.camera's
    `_np` maps) and never imports torch (~1 s of its start)."""
    import subprocess
    import sys

    code = ("import sys\nfrom wbcap.cli import main\n"
            f"argv = ['view', {str(image_run)!r}, '--html', {str(tmp_path / 'p.html')!r}]\n"
            "try:\n    main(argv)\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr.split()[-1] == "False" and (tmp_path / "p_files" / "view.json").is_file()


def test_a_video_runs_page_content_is_read_without_torch(video_run):
    """Reading a `wbcap run` folder for its page (params.jsonl, meta.json, render.mp4's frame
    times, the GLBs it has) imports no torch: it did through the file keys' module (1.4 s of the
    page's 1.95 s, a viewer trial)."""
    import subprocess
    import sys

    code = (f"import sys\nfrom pathlib import Path\nfrom wbcap.view.manifest import read_output\n"
            f"c = read_output(Path({str(video_run)!r}))\nprint(len(c.manifest['tracks']), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 0 and out[1] == "False", out


def test_a_full_disk_while_the_page_files_are_copied_is_one_line(image_run, tmp_path, monkeypatch):
    """The viewer's own script files (``vendor/``) were copied with ``shutil.copytree``, which
    gathers a full disk into ``shutil.Error``: a crash report. Now the usual one line, exit 2,
    naming --html, and no page left behind."""
    import errno
    import os

    real_copy = shutil.copyfile

    def full(src, dst, *args, **kwargs):
        if "vendor" in str(dst):  # (as shutil's copy names them: the source first, then the file written)
            raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))
        return real_copy(src, dst, *args, **kwargs)

    def no_link(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(shutil, "copyfile", full)
    monkeypatch.setattr(os, "link", no_link)
    r = CliRunner().invoke(cli, ["view", str(image_run), "--html", str(tmp_path / "p.html")])
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith(f"error: cannot write {tmp_path / 'p_files' / 'vendor'}") and lines[0].endswith(
        "(No space left on device): free disk space or point --html to another disk"), r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_file_a_link_leads_out_of_the_folder_is_refused_and_one_inside_is_copied_as_a_file(image_run, tmp_path):
    """A security review: a photo folder from someone else with ``output.obj -> ~/.ssh/id_rsa``
    had `wbcap view --html` put the key in the folder to send (a copy across disks; on one disk a
    hard link of the link, which zip and serve.py followed), and `wbcap view` serve it. Refused,
    nothing written; a link within the folder is taken, its page file a plain copy of the file."""
    folder = tmp_path / "got"
    shutil.copytree(image_run, folder)
    secret = tmp_path / "id_rsa"
    secret.write_text("SECRET")
    obj = folder / "pic" / "person_0" / "output.obj"
    kept = folder / "pic" / "kept.obj"
    obj.rename(kept)
    obj.symlink_to(secret)
    r = CliRunner().invoke(cli, ["view", str(folder), "--html", str(tmp_path / "page" / "p.html")])
    assert r.exit_code == 2 and r.stderr.strip() == (
        f"error: {obj}: a symbolic link leads it out of {folder} (to {secret}); the page takes only the folder's own "
        "files: put the file itself there, or remove the link"), r.output
    assert not (tmp_path / "page").exists()
    from wbcap.errors import InputError
    from wbcap.view.site import ViewJob, serve_view

    with pytest.raises(InputError, match="a symbolic link leads it out of"), serve_view(ViewJob(out=str(folder))):
        pass
    obj.unlink()
    obj.symlink_to(Path("..") / "kept.obj")  # (relative, inside the folder)
    r = CliRunner().invoke(cli, ["view", str(folder), "--html", str(tmp_path / "page" / "p.html")])
    assert r.exit_code == 0, r.output
    sent = tmp_path / "page" / "p_files" / "media" / "pic" / "person_0" / "output.obj"
    assert not sent.is_symlink() and sent.read_bytes() == kept.read_bytes()


def _line(frame: int, time: float, track: int) -> dict:
    rec = {"frame": frame, "time": time, "track": track, "box": [1.0, 2.0, 3.0, 4.0]}
    for key, n in (("root_pose", 3), ("body_pose", 63), ("lhand_pose", 45), ("rhand_pose", 45), ("jaw_pose", 3),
                   ("leye_pose", 3), ("reye_pose", 3), ("shape", 10), ("expr", 10), ("cam_trans", 3)):
        rec[key] = [round(0.01 * (frame + i + 7 * track), 6) for i in range(n)]
    rec["camera"] = {"focal": [400.0, 400.0], "princpt": [32.0, 24.0], "image_size": [64, 48]}
    return rec


def test_a_params_jsonl_a_link_leads_out_of_the_run_is_refused(tmp_path):
    """A break-it trial: a run folder whose params.jsonl is a link to another run's (someone's
    private motion data) had `wbcap view --html` put its lines in the page to send. Refused as a
    media file a link leads out is."""
    from wbcap.errors import InputError
    from wbcap.view import manifest as vm

    private = tmp_path / "private.jsonl"
    private.write_text("".join(json.dumps({**_line(f, f / 10, 0), "note": "private"}) + "\n" for f in range(3)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"fps": 10.0, "source": "x.mp4", "camera": _line(0, 0, 0)["camera"]}))
    (run / "params.jsonl").symlink_to(private)
    with pytest.raises(InputError) as err:
        vm.read_output(run)
    assert str(err.value) == (f"{run / 'params.jsonl'}: a symbolic link leads it out of {run} (to {private}); the page "
                              "takes only the folder's own files: put the file itself there, or remove the link")
    (run / "params.jsonl").unlink()
    shutil.copyfile(private, run / "params.jsonl")
    assert [t["id"] for t in vm.read_output(run).manifest["tracks"]] == [0]
    meta = (run / "meta.json").read_text()
    (run / "meta.json").unlink()
    (run / "meta.json").symlink_to(run / "meta.json")  # (a loop: one line, not a crash report)
    with pytest.raises(InputError, match=r"meta\.json: a loop of symbolic links; the page takes only the folder's own"):
        vm.read_output(run)
    (run / "meta.json").unlink()
    (run / "meta.json").write_text(meta)


def test_manifest_of_a_hand_made_run(tmp_path):
    """read_output on a run folder: clock, video frames and their source indices, colours, chunks,
    and tracks without GLB reported (their files are made by build_site)."""
    from wbcap.testing.videos import draw, write_video
    from wbcap.view import manifest as vm

    run = tmp_path / "run"
    (run / ".wbcap").mkdir(parents=True)
    write_video(run / "render.mp4", [draw(i) for i in range(6)], fps=10)
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/x/clip.mp4", "start": 2.0}))
    meta = {"fps": 10.0, "source": "/x/clip.mp4", "camera": _line(0, 0, 0)["camera"], "colors": 2}
    (run / "meta.json").write_text(json.dumps(meta))
    # track 3 in frames 21..23 (a render of frames 20..25 started at 2.0 s), track 9 in frame 25 only
    lines = [_line(f, f / 10, 3) for f in (21, 22, 23)] + [_line(25, 2.5, 9)]
    (run / "params.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    content = vm.read_output(run)
    m = content.manifest
    assert (m["kind"], m["title"], m["fps"], m["format"]) == ("video", "clip.mp4", 10.0, "wbcap.view/1")
    assert m["video"]["src"] == "media/render.mp4" and m["video"]["offset"] == 2.0
    assert m["video"]["frame_times"] == pytest.approx([2.0, 2.1, 2.2, 2.3, 2.4, 2.5])
    assert m["video"]["frame_index"] == [-1, 21, 22, 23, -1, 25] and m["frame_times"] == m["video"]["frame_times"]
    # render.mp4's colours (wbcap.export.colors.track_color_indices): the first track the first colour;
    # track 9, after track 3 left, a colour never used rather than track 3's
    colors = [vm._hex(c) for c in TRACK_COLORS]
    assert [(t["id"], t["color"], t["rows"], t["first"], t["last"]) for t in m["tracks"]] == [
        (3, colors[0], 3, 2.1, pytest.approx(2.3)), (9, colors[1], 1, 2.5, 2.5)]
    # a run from before meta.json's "colors": its render.mp4 coloured track id with TRACK_COLORS_1[id % 8]
    (run / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "colors"}))
    assert [t["color"] for t in vm.read_output(run).manifest["tracks"]] == [vm._hex(TRACK_COLORS_1[3]),
                                                                           vm._hex(TRACK_COLORS_1[1])]
    (run / "meta.json").write_text(json.dumps(meta))
    assert content.missing_glb == {3: "media/generated/track_3", 9: "media/generated/track_9"}
    assert (m["frame"], m["source_camera"], m["world"], content.frame) == ("camera", ORIGIN, None, "camera")
    assert content.files == {"media/render.mp4": run / "render.mp4"}
    # without render.mp4 (--no-render, or moved away): the 3D view only, and a warning says so (the page
    # dropped its video pane without a word: a viewer trial)
    (run / "render.mp4").rename(tmp_path / "aside.mp4")
    lost = vm.read_output(run)
    assert lost.manifest["video"] is None and lost.warnings == [
        f"{run}: no render.mp4 (moved away, or the run used --no-render): the page shows the bodies in 3D only; a "
        "--resume of the run without --no-render writes it"]
    # a run whose command asked for --no-render: its own choice, not warned about on every view
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/x/clip.mp4", "start": 2.0, "command": {
        "argv": ["run", "/x/clip.mp4", "--no-render"], "cwd": "/x", "out": str(run)}}))
    assert vm.read_output(run).warnings == []
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/x/clip.mp4", "start": 2.0}))
    (tmp_path / "aside.mp4").rename(run / "render.mp4")
    chunk = m["tracks"][0]["chunks"][0]
    assert chunk == {"src": "params/track_3/00000.json", "t0": 2.1, "t1": pytest.approx(2.3), "rows": 3}
    assert json.loads(content.generated[chunk["src"]]) == lines[:3]
    assert len(m["joint_names"]) == 55 and m["joint_names"][0] == "pelvis"
    # a damaged record is refused as `wbcap export` refuses it (a NaN was copied into a chunk the page
    # could not parse: a break-it trial)
    from wbcap.errors import InputError

    for bad in ({"root_pose": [float("nan"), 0.0, 0.0]}, {"score": float("nan")}):
        (run / "params.jsonl").write_text(json.dumps({**lines[0], **bad}) + "\n")
        with pytest.raises(InputError, match=rf"params.jsonl:1: a damaged record \({next(iter(bad))} holds NaN, not a "
                                             r"finite number\); rerun its run with resume=True"):
            vm.read_output(run)


#: Frame times (ms) of a variable-frame-rate clip (a user trial's): bursts of frames 33 ms apart,
#: 12 frames in about a second, so half the average interval (42 ms) reaches the next frame of a burst.
VFR_MS = (0, 33, 66, 200, 233, 266, 500, 533, 566, 600, 800, 1000)
VFR_FPS = 12.0


def test_manifest_matches_vfr_frames_to_the_nearest_record(tmp_path):
    """A variable-frame-rate run: render.mp4's frame times (1/90000 s ticks) lie a tick before or
    after params.jsonl's times; frame_index is the nearest record's frame (not the first within
    half the average interval: the frame before), and -1 where the record is missing though a
    neighbouring frame's lies within half the average interval."""
    from fractions import Fraction

    from wbcap.testing.videos import make_vfr_with_audio
    from wbcap.view import manifest as vm

    run = tmp_path / "run"
    (run / ".wbcap").mkdir(parents=True)
    ticks = [90 * ms + (0 if ms == 0 else -1 if k % 2 else 1) for k, ms in enumerate(VFR_MS)]  # odd: a tick early
    make_vfr_with_audio(run / "render.mp4", ticks, 90 * 33, Fraction(1, 90000))
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/x/vfr.mp4"}))
    (run / "meta.json").write_text(json.dumps({"fps": VFR_FPS, "source": "/x/vfr.mp4", "camera": _line(0, 0, 0)["camera"]}))
    missing = {4, 9}  # 233 ms (neighbours 33 ms away), 600 ms (34 ms after frame 8)
    lines = [_line(k, ms / 1000, 0) for k, ms in enumerate(VFR_MS) if k not in missing]
    (run / "params.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    video = vm.read_output(run).manifest["video"]
    assert video["frame_times"] == pytest.approx([t / 90000 for t in ticks], abs=1e-9)
    assert video["frame_index"] == [k if k not in missing else -1 for k in range(len(VFR_MS))]
    # the tolerance: half the gap to the nearer neighbour; the fallback for a lone frame
    assert [vm.frame_tolerance([ms / 1000 for ms in VFR_MS], k, 0.5 / VFR_FPS) for k in (0, 3, 9, 10, 11)] == \
        pytest.approx([0.0165, 0.0165, 0.017, 0.1, 0.1])
    assert vm.frame_tolerance([2.0], 0, 0.05) == 0.05
    # the nearest within the tolerance, not the first: a lone frame (the fallback, 50 ms) between two records
    assert vm._match_frames([1.0], [(0.97, 5), (1.001, 6)], 0.05) == [6]


def _timeline_js(calls: list) -> list:
    """Results of the viewer page's timeline.js functions (``[[name, args], ...]``), run in node."""
    reason = node_packages_missing()
    if reason:
        skip_or_fail(reason)
    proc = subprocess.run(["node", str(JS / "timeline_eval.mjs"), json.dumps(calls)], cwd=JS, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_page_shows_the_nearest_params_record_of_a_vfr_frame():
    """The page's lookups (app.js showParams through timeline.js) on the VFR timeline: at each
    frame's time (render.mp4's, a tick before the record's), the chunk and record nearest within
    half the gap to the nearer neighbouring frame; none where the frame's record is missing."""
    frames = [ms / 1000 - 1 / 90000 for ms in VFR_MS]  # what view.json's frame_times hold: a tick early
    missing = {4, 9}
    rows = [{"time": ms / 1000, "frame": k} for k, ms in enumerate(VFR_MS) if k not in missing]
    chunks = [{"t0": rows[a]["time"], "t1": rows[b - 1]["time"]} for a, b in ((0, 2), (2, 6), (6, len(rows)))]
    n = len(frames)
    tols = _timeline_js([["frameTolerance", [frames, k, 0.5 / VFR_FPS]] for k in range(n)])
    assert tols == pytest.approx([0.0165, 0.0165, 0.0165, 0.0165, 0.0165, 0.0165, 0.0165, 0.0165, 0.0165, 0.017,
                                  0.1, 0.1])
    found = _timeline_js([["nearestIndex", [rows, frames[k], tols[k], "time"]] for k in range(n)])
    assert [rows[i]["frame"] if i >= 0 else -1 for i in found] == [-1 if k in missing else k for k in range(n)]
    # the chunk holding the nearest record, not the first whose range reaches t (66 and 533 ms: the
    # chunk before ends 33 ms earlier)
    spans = _timeline_js([["nearestSpan", [chunks, frames[k], tols[k]]] for k in range(n)])
    assert spans == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    # between chunks: the nearer one within tol, none beyond it
    assert _timeline_js([["nearestSpan", [chunks, 0.045, 0.02]], ["nearestSpan", [chunks, 0.045, 0.01]],
                         ["nearestSpan", [chunks, 0.058, 0.02]]]) == [0, -1, 1]
    # a tolerance that reaches the chunk before (the old 0.5 / fps): still the chunk that holds t
    assert _timeline_js([["nearestSpan", [chunks, frames[k], 0.5 / VFR_FPS]] for k in (2, 7)]) == [1, 2]
    assert _timeline_js([["floorIndex", [frames, 0.5]], ["floorIndex", [frames, 0.4]]]) == [6, 5]
    # the nearest within the tolerance, not the first (a lone frame's fallback, 50 ms, reaches two records)
    assert _timeline_js([["nearestIndex", [rows, 0.033, 0.05, "time"]], ["nearestIndex", [[0.97, 1.001], 1.0, 0.05]]]) == [1, 1]


def _write_glb_json(path: Path, gltf: dict) -> Path:
    """A GLB holding only its JSON chunk (all :func:`wbcap.view.manifest.read_output` reads)."""
    data = json.dumps(gltf).encode()
    data += b" " * (-len(data) % 4)
    path.write_bytes(struct.pack("<4sIIII", b"glTF", 2, 20 + len(data), len(data), 0x4E4F534A) + data)
    return path


def _world_camera_node(frame) -> dict:
    """The y-up ``source_camera`` node pose of a :class:`wbcap.world.estimate.WorldFrame`, as
    :func:`wbcap.export.gltf.write_glb` writes it (the z-up world turned y-up, glTF camera axes)."""
    from scipy.spatial.transform import Rotation

    from wbcap.export.clip import YUP_FROM_ZUP

    rotation = YUP_FROM_ZUP @ frame.world_from_camera @ np.diag([1.0, -1.0, -1.0])
    return {"translation": [float(v) for v in YUP_FROM_ZUP @ frame.camera_position],
            "rotation": [float(v) for v in Rotation.from_matrix(rotation).as_quat()]}


def _known_ground(pitch_deg: float = 15.0, roll_deg: float = 4.0, height: float = 1.6):
    """A ground plane (camera frame) seen by a camera ``height`` m up, ``pitch_deg`` down, rolled ``roll_deg``."""
    from wbcap.world.ground import GroundPlane

    p, r = np.radians(pitch_deg), np.radians(roll_deg)
    return GroundPlane(normal=np.array([np.sin(r) * np.cos(p), -np.cos(r) * np.cos(p), -np.sin(p)]), offset=height)


def test_manifest_of_world_frame_files(tmp_path):
    """The frame and the source camera come from the GLB files (their extras and source_camera
    node), pitch/roll/height as meta.json's; a file in the camera frame beside world-frame ones
    keeps its own frame (the page places it through its camera); meta.json's world is passed on."""
    from wbcap.view.manifest import read_output
    from wbcap.world.estimate import WorldFrame

    frame = WorldFrame.from_ground(_known_ground())
    node = _world_camera_node(frame)
    run = tmp_path / "run"
    run.mkdir()
    lines = [_line(f, f / 10, 3) for f in (1, 2)] + [_line(2, 0.2, 9)]
    (run / "params.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run / "meta.json").write_text(json.dumps({"fps": 10.0, "source": "clip.mp4", "camera": lines[0]["camera"],
                                               "frame": "world", "world": frame.to_dict()}))
    for tid, extras, nodes in ((3, {"frame": "world"}, [{"name": "source_camera", "camera": 0, **node}]),
                               (9, {}, [{"name": "body", "mesh": 0}])):  # an older file: no frame, no camera
        _write_glb_json(run / f"track_{tid}.glb", {"asset": {"version": "2.0", "extras": {
            **extras, "num_rows": 1, "first_time_s": 0.1}}, "nodes": nodes})
    m = read_output(run).manifest
    assert m["frame"] == "world" and m["world"] == frame.to_dict()
    cam = m["source_camera"]
    np.testing.assert_allclose(cam["translation"], [0.0, 1.6, 0.0], atol=1e-12)
    np.testing.assert_allclose(cam["rotation"], node["rotation"], atol=1e-12)
    assert (cam["height_m"], cam["pitch_deg"], cam["roll_deg"]) == pytest.approx(
        (frame.camera_height, frame.pitch_deg, frame.roll_deg), abs=1e-9)
    assert (cam["pitch_deg"], cam["roll_deg"]) == pytest.approx((15.0, 4.0), abs=1e-9)
    (p3,), (p9,) = (t["parts"] for t in m["tracks"])
    assert p3["frame"] == "world" and p3["source_camera"] == {k: cam[k] for k in ("translation", "rotation")}
    assert (p9["frame"], p9["source_camera"]) == ("camera", ORIGIN)
    # a camera-frame run: the camera frame whatever meta.json says about a --world that fell back
    (run / "track_3.glb").unlink()
    (run / "meta.json").write_text(json.dumps({"fps": 10.0, "frame": "camera", "world": {"frame": "camera", "reason": "x"}}))
    content = read_output(run)
    assert (content.manifest["frame"], content.manifest["source_camera"], content.frame) == ("camera", ORIGIN, "camera")
    assert content.manifest["world"] == {"frame": "camera", "reason": "x"}


# --------------------------------------------------------------------------- photo folders: people in the overlay's camera

PHOTO_SIZE = (1280, 720)
#: Three people of one photo as Hand4Whole sees them: their 3:4 crop boxes (xywh, pixels), large to
#: small, and cam_trans (metres, each in its own camera). The small one is the nearest in its own
#: camera and the farthest in the overlay's, whose depths are scaled by f / f_k (1, 2.4 and 6).
PHOTO_PEOPLE = (([100.0, 150.0, 360.0, 480.0], [0.05, 0.3, 45.0]),
                ([700.0, 300.0, 150.0, 200.0], [-0.1, 0.25, 38.0]),
                ([1100.0, 400.0, 60.0, 80.0], [0.02, 0.35, 35.0]))
REST_PELVIS = np.array([0.003, -0.35, 0.012])  # a rest pelvis: the posed pelvis is cam_trans + this (SMPL-X)


def _write_photo(out: Path, people=PHOTO_PEOPLE) -> dict[int, dict]:
    """A `wbcap image` folder ``out/photo/person_<k>/`` of ``people`` ((crop box, cam_trans) each):
    smplx_param.json with the camera :func:`wbcap.camera.crop_to_image_camera` gives the box,
    output.obj a body-sized cloud (1.6-1.7 m tall, 0.5-0.9 m deep), turned about its pelvis; returns
    ``{k: {"verts": the OBJ's vertices as read back, "camera": ImageCamera, "cam_trans", "pelvis"}}``."""
    import trimesh
    from scipy.spatial.transform import Rotation

    from wbcap.camera import ImageCamera, crop_to_image_camera_np
    from wbcap.export.obj import write_obj

    rng = np.random.default_rng(0)
    written = {}
    for k, (crop, trans) in enumerate(people):
        (focal,), (princpt,) = crop_to_image_camera_np((5000.0, 5000.0), (96.0, 128.0), np.array([crop]), (256, 192))
        pelvis = REST_PELVIS + trans
        body = np.clip(rng.normal(size=(600, 3)), -3, 3) * [0.15, 0.3, 0.08]
        verts = Rotation.from_euler("yx", [70.0 * k - 60.0, 10.0 - 8.0 * k], degrees=True).apply(body) + pelvis
        d = out / "photo" / f"person_{k}"
        d.mkdir(parents=True)
        write_obj(d / "output.obj", verts, np.arange(600).reshape(-1, 3))
        camera = ImageCamera(focal=tuple(focal.tolist()), princpt=tuple(princpt.tolist()), image_size=PHOTO_SIZE)
        (d / "smplx_param.json").write_text(json.dumps({
            "camera": {"focal": list(camera.focal), "princpt": list(camera.princpt), "image_size": list(PHOTO_SIZE)},
            "crop_bbox_xywh": crop, "cam_trans": trans}))
        (d / "render_original_img.jpg").write_bytes(b"jpg")
        written[k] = {"verts": trimesh.load(d / "output.obj", process=False, maintain_order=True).vertices, "camera": camera, "cam_trans": np.array(trans),
                      "pelvis": pelvis}
    return written


def _in_view(person: dict, points: np.ndarray) -> np.ndarray:
    """``points`` of a person's OBJ where the page puts them (its ``matrix``), in the overlay's
    camera with OpenCV axes (the page's y-up world is x, -y, -z)."""
    m = np.asarray(person["matrix"], np.float64).reshape(4, 4).T  # column-major
    return (points @ m[:3, :3].T + m[:3, 3]) * [1.0, -1.0, -1.0]


def _overlay(written: dict, points: np.ndarray, shared) -> np.ndarray:
    """Where render_original_img.jpg draws a person's ``points``: moved into the largest box's
    camera by :func:`wbcap.camera.to_shared_camera` (export.image_outputs.to_common_camera) and
    projected, pixels."""
    from wbcap.camera import to_shared_camera_np

    cam = written["camera"]
    moved = to_shared_camera_np(points[None], np.array([cam.focal[0]]), np.array([cam.princpt]),
                                shared.focal[0], shared.princpt)[0]
    return shared.project(moved)


def test_manifest_of_a_photo_folder(tmp_path):
    from wbcap.export.render import PALETTE
    from wbcap.view.manifest import _hex, read_output

    written = _write_photo(tmp_path / "out")
    (image,) = read_output(tmp_path / "out").manifest["images"]
    assert image["name"] == "photo" and image["overlay"] == "media/photo/person_0/render_original_img.jpg"
    largest = written[0]["camera"]  # the overlay's camera: the largest box's
    assert image["camera"] == {"focal": list(largest.focal), "princpt": list(largest.princpt), "image_size": [1280, 720]}
    assert image["camera"]["focal"] == [9375.0, 9375.0] and image["camera"]["princpt"] == [280.0, 390.0]
    assert [p["color"] for p in image["people"]] == [_hex(PALETTE[k]) for k in range(3)]  # the overlay's colours
    assert [p["obj"] for p in image["people"]] == [f"media/photo/person_{k}/output.obj" for k in range(3)]


def test_photo_names_with_url_characters_are_fetched_whole(tmp_path):
    """A photo named `photo #1 100%.jpg`: view.json held its files' paths as they are, and the page
    cut `media/photo #1 .../output.obj` at the `#` and got the server's 404 page for the mesh and
    the parameters (a user trial). The URLs are percent-encoded; the server serves each file."""
    import urllib.request

    from wbcap.view.manifest import read_output
    from wbcap.view.site import ViewJob, serve_view

    _write_photo(tmp_path / "out")
    (tmp_path / "out" / "photo").rename(tmp_path / "out" / "photo #1 100%")
    (image,) = read_output(tmp_path / "out").manifest["images"]
    base = "media/photo%20%231%20100%25/person_0"
    assert image["overlay"] == f"{base}/render_original_img.jpg" and image["people"][0]["obj"] == f"{base}/output.obj"
    with serve_view(ViewJob(out=str(tmp_path / "out"))) as server:
        for url, local in ((image["people"][0]["obj"], "output.obj"), (image["people"][0]["params"], "smplx_param.json"),
                           (image["overlay"], "render_original_img.jpg")):
            with urllib.request.urlopen(server.url.rsplit("/", 1)[0] + "/" + url) as r:
                assert r.read() == (tmp_path / "out" / "photo #1 100%" / "person_0" / local).read_bytes(), url


@pytest.mark.parametrize("html", [False, True], ids=["served", "--html"])
def test_a_photo_named_in_latin_1_is_served(tmp_path, html):
    """A photo whose name is not UTF-8 (`lat\\xe9.jpg`, which `wbcap image` takes): `wbcap view`
    crashed building its URL, `--html` writing its README; http.server looked for U+FFFD."""
    import os
    import urllib.request

    from wbcap.view.manifest import read_output
    from wbcap.view.server import ViewServer
    from wbcap.view.site import ViewJob, serve_view, write_html

    _write_photo(tmp_path / "out")
    name = os.fsdecode(b"lat\xe9")
    (tmp_path / "out" / "photo").rename(tmp_path / "out" / name)
    (image,) = read_output(tmp_path / "out").manifest["images"]
    assert image["people"][0]["obj"] == "media/lat%E9/person_0/output.obj"
    wanted = (tmp_path / "out" / name / "person_0" / "output.obj").read_bytes()
    if html:
        page = write_html(ViewJob(out=str(tmp_path / "out"), html=str(tmp_path / "share" / "walk.html")))
        server = ViewServer(page.parent, page=page.name)
    else:
        server = serve_view(ViewJob(out=str(tmp_path / "out")))
    with server as s:
        base = s.url.rsplit("/", 1)[0] + ("/walk_files/" if html else "/")
        with urllib.request.urlopen(base + image["people"][0]["obj"]) as r:
            assert r.read() == wanted


def test_photo_people_keep_their_shape_in_3d(tmp_path):
    """Each body is its OBJ moved rigidly (the y-up turn and a translation): every distance between
    its vertices is kept, where the overlay's point map stretched the smaller people along depth."""
    from scipy.spatial.distance import pdist

    from wbcap.view.manifest import read_output

    written = _write_photo(tmp_path / "out")
    (image,) = read_output(tmp_path / "out").manifest["images"]
    for person in image["people"]:
        verts = written[person["id"]]["verts"]
        m = np.asarray(person["matrix"]).reshape(4, 4).T
        np.testing.assert_array_equal(m[:3, :3], np.diag([1.0, -1.0, -1.0]))  # no scale, no shear
        np.testing.assert_array_equal(m[3], [0.0, 0.0, 0.0, 1.0])
        placed = _in_view(person, verts)
        np.testing.assert_allclose(pdist(placed), pdist(verts), rtol=0, atol=1e-9)
        assert np.ptp(placed[:, 2]) == pytest.approx(np.ptp(verts[:, 2]), abs=1e-9)  # its own depth extent, 0.5-0.9 m


def test_photo_people_land_on_the_overlay(tmp_path):
    """In the overlay's camera each body projects where render_original_img.jpg draws it: its
    cam_trans exactly, its pelvis and mean vertex within 0.25 px, every vertex within the depth
    parallax of a body (2.5 px here); people keep the overlay's depth order."""
    from wbcap.view.manifest import read_output

    written = _write_photo(tmp_path / "out")
    (image,) = read_output(tmp_path / "out").manifest["images"]
    shared = written[0]["camera"]
    depths = {}
    for person in image["people"]:
        w = written[person["id"]]
        anchor, pelvis, mean = w["cam_trans"], w["pelvis"], w["verts"].mean(0)
        points = np.stack([anchor, pelvis, mean])
        got = shared.project(_in_view(person, points))
        want = _overlay(w, points, shared)
        # the overlay keeps each point's pixel in the person's own camera
        np.testing.assert_allclose(want, w["camera"].project(points), rtol=0, atol=1e-6)
        assert np.linalg.norm(got[0] - want[0]) < 1e-6, (person["id"], got[0], want[0])
        assert np.linalg.norm(got[1:] - want[1:], axis=1).max() < 0.25, (person["id"], got, want)
        err = np.linalg.norm(shared.project(_in_view(person, w["verts"])) - _overlay(w, w["verts"], shared), axis=1)
        assert err.max() < 2.5, (person["id"], err.max())
        # the anchor's depth is the overlay's, cam_trans z * f / f_k: 45 m, 91.2 m, 210 m
        z = _in_view(person, anchor[None])[0, 2]
        assert z == pytest.approx(anchor[2] * shared.focal[0] / w["camera"].focal[0], rel=1e-12)
        depths[person["id"]] = (_in_view(person, w["verts"])[:, 2].mean(), _overlay_depth(w, w["verts"], shared))
    assert [depths[k][0] for k in range(3)] == pytest.approx([45.0, 91.2, 210.0], abs=0.05)
    assert sorted(depths, key=lambda k: depths[k][0]) == sorted(depths, key=lambda k: depths[k][1]) == [0, 1, 2]


def _overlay_depth(written: dict, points: np.ndarray, shared) -> float:
    """Mean depth of a person's ``points`` in the overlay's render (metres)."""
    from wbcap.camera import to_shared_camera_np

    cam = written["camera"]
    return float(to_shared_camera_np(points[None], np.array([cam.focal[0]]), np.array([cam.princpt]),
                                     shared.focal[0], shared.princpt)[0, :, 2].mean())


def test_photo_of_one_person_is_shown_as_its_obj(tmp_path):
    """One person: the overlay's camera is the person's own, the page shows the OBJ unmoved (only
    turned to y up), as before the rigid placement."""
    from wbcap.view.manifest import read_output

    written = _write_photo(tmp_path / "out", PHOTO_PEOPLE[1:2])
    (image,) = read_output(tmp_path / "out").manifest["images"]
    (person,) = image["people"]
    cam = written[0]["camera"]
    assert image["camera"] == {"focal": list(cam.focal), "princpt": list(cam.princpt), "image_size": [1280, 720]}
    np.testing.assert_allclose(person["matrix"], [1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(_in_view(person, written[0]["verts"]), written[0]["verts"], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- generated outputs


@pytest.fixture(scope="module")
def video_run(tmp_path_factory, micro_ckpt, body_dir):
    """`wbcap run` of two generated walkers (8 frames, 10 fps), render.mp4 and GLBs included."""
    from wbcap.testing.videos import write_video

    tmp = tmp_path_factory.mktemp("view_run")
    frames, boxes = two_walkers(FRAMES)
    video = write_video(tmp / "walk.mp4", frames)
    (tmp / "boxes.json").write_text(json.dumps(boxes))
    out = tmp / "out"
    r = invoke("run", video, "-o", out, "--detector", f"boxes:{tmp / 'boxes.json'}", "--min-track", "2",
               "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, micro_ckpt, body_dir):
    """`wbcap image` of one photo with two given boxes (two people, two cameras), overlay included."""
    from test_cli_image import write_rgb

    from wbcap.testing.images import person_image

    tmp = tmp_path_factory.mktemp("view_image")
    img = write_rgb(tmp / "pic.png", person_image(320, 240, seed=3))
    out = tmp / "out"
    r = invoke("image", img, "-o", out, "--bbox", "20,20,120,200", "--bbox", "170,50,90,150",
               "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.slow  # builds the GLBs with the SMPL-X layer
def test_run_without_glb_gets_them_made_from_params(video_run, tmp_path, body_dir):
    """`--export none` runs: the page's GLBs are made as `wbcap export` makes them (same bytes as the run's)."""
    bare = tmp_path / "bare"
    shutil.copytree(video_run, bare, ignore=shutil.ignore_patterns("track_*"))
    r = invoke("view", bare, "--html", tmp_path / "v.html", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    files = tmp_path / "v_files"
    manifest = json.loads((files / "view.json").read_text())
    for track in manifest["tracks"]:
        (part,) = track["parts"]
        assert part["src"] == f"media/generated/track_{track['id']}.glb"
        assert (files / part["src"]).read_bytes() == (video_run / f"track_{track['id']}.glb").read_bytes()
    assert not any(bare.glob("track_*"))  # nothing written into the output folder


@pytest.mark.slow  # the video_run fixture (a wbcap run with render.mp4), shared with the browser tests
def test_html_folder_of_a_run(video_run, tmp_path):
    import av

    from wbcap.view import server
    from wbcap.view.manifest import _hex
    from wbcap.view.site import ViewJob, write_html

    page = write_html(ViewJob(out=str(video_run), html=str(tmp_path / "v.html")))
    files = tmp_path / "v_files"
    m = json.loads((files / "view.json").read_text())
    assert m["format"] == "wbcap.view/1" and m["kind"] == "video" and m["title"] == "walk.mp4"
    assert m["fps"] == 10.0 and m["camera"]["image_size"] == [320, 240]
    with av.open(str(video_run / "render.mp4")) as c:
        pts = [float(f.time) for f in c.decode(video=0)]
    assert m["video"]["frame_times"] == pytest.approx(pts, abs=1e-9) and len(pts) == FRAMES
    assert m["video"]["frame_index"] == list(range(FRAMES)) and m["video"]["offset"] == 0.0
    lines = [json.loads(x) for x in (video_run / "params.jsonl").read_text().splitlines()]
    assert [t["id"] for t in m["tracks"]] == [0, 1]
    assert [t["color"] for t in m["tracks"]] == [_hex(c) for c in TRACK_COLORS[:2]]  # render.mp4's
    for t in m["tracks"]:
        assert t["rows"] == FRAMES and t["parts"] == [{"src": f"media/track_{t['id']}.glb", "t0": 0.0,
                                                        "t1": pytest.approx(0.7, abs=1e-6), "rows": FRAMES,
                                                        "frame": "camera", "source_camera": ORIGIN, "start": 0.0}]
        (chunk,) = t["chunks"]
        assert json.loads((files / chunk["src"]).read_text()) == [x for x in lines if x["track"] == t["id"]]
    assert (m["frame"], m["source_camera"], m["world"]) == ("camera", ORIGIN, None)
    # a plain folder: page at FILE, everything else in FILE_files, no links
    assert page == tmp_path / "v.html" and '<base href="v_files/">' in page.read_text()
    assert not [p for p in files.rglob("*") if p.is_symlink()]
    assert (files / "serve.py").read_bytes() == Path(server.__file__).read_bytes()
    assert (files / "media" / "render.mp4").read_bytes() == (video_run / "render.mp4").read_bytes()


# --------------------------------------------------------------------------- the browser


def _read_url(proc: subprocess.Popen, timeout: float = 90.0) -> str:
    """The first ``http://`` word a server process prints."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    words = [w for w in line.split() if w.startswith("http://127.0.0.1:")]
    if not words:
        proc.kill()
        raise AssertionError(f"no address from {proc.args}: {line!r} {proc.stderr.read()[-2000:]}")
    return words[0]


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browsed(video_run, image_run, tmp_path_factory):
    """The four pages opened, used and read back in one Chromium run."""
    reason = browser_missing()
    if reason:
        skip_or_fail(reason)
    from wbcap.view.site import ViewJob, serve_view, write_html

    tmp = tmp_path_factory.mktemp("view_browser")
    write_html(ViewJob(out=str(video_run), html=str(tmp / "made" / "walk.html")))
    shared = tmp / "sent"
    shutil.copytree(tmp / "made", shared)  # what a colleague gets: a plain copy of the folder
    shutil.rmtree(tmp / "made")
    py = [sys.executable, "-c", "import sys; from wbcap.cli import main; main(sys.argv[1:])"]
    served = _start([*py, "view", str(video_run), "--port", "0"])
    copied = _start([sys.executable, str(shared / "walk_files" / "serve.py")], cwd=shared)
    try:
        run_url, copy_url = _read_url(served), _read_url(copied)
        screenshot = {"time": 0.5, "source_camera": True, "grid": False}
        with serve_view(ViewJob(out=str(image_run))) as image_server:
            job = {"executable": str(CHROMIUM), "result": str(tmp / "result.json"), "out": str(tmp),
                   "viewport": [1280, 720], "pages": [
                       {"name": "served", "url": run_url, "kind": "video", "times": list(SEEK_TIMES), "play_ms": 400,
                        "screenshot": screenshot},
                       {"name": "copied", "url": copy_url, "kind": "video", "times": [SEEK_TIMES[0]],
                        "controls": False, "screenshot": screenshot},
                       {"name": "image", "url": image_server.url, "kind": "image",
                        "screenshot": {"source_camera": True, "grid": False}},
                       {"name": "file", "url": (shared / "walk.html").as_uri(), "kind": "file"},
                   ]}
            (tmp / "job.json").write_text(json.dumps(job))
            proc = subprocess.run(["node", str(JS / "view_driver.mjs"), str(tmp / "job.json")], cwd=JS,
                                  capture_output=True, text=True, timeout=240,
                                  env={**os.environ, "HOME": str(tmp), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    finally:
        _stop(served)
        _stop(copied)
    if proc.returncode != 0:
        pytest.fail(f"view_driver.mjs failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads((tmp / "result.json").read_text())
    pages = {p["name"]: p for p in result["pages"]}
    fatal = {name: (p["fatal"], p["errors"]) for name, p in pages.items() if p.get("fatal")}
    if fatal:
        pytest.fail(f"pages that could not be used: {fatal}")
    return SimpleNamespace(pages=pages, served_stderr=served.stderr.read() if served.stderr else "", shared=shared)


def _problems(page: dict) -> list[str]:
    """Console errors and warnings, less the software GL driver's notes on pixel read-backs, and
    the layout's faults at the page's window size: wider than the window, or a control covered."""
    layout = page["layout"] if page["kind"] != "file" else {"scrollWidth": 0, "innerWidth": 0, "hidden": []}
    wide = [f"page {layout['scrollWidth']} px wide in a {layout['innerWidth']} px window"
            ] if layout["scrollWidth"] > layout["innerWidth"] else []
    return page["errors"] + [w for w in page["warnings"] if "GL Driver Message" not in w] + wide + layout["hidden"]


@pytest.fixture(scope="module")
def references(video_run, body_layer):
    """Per track: the LBS mesh of every row of its npz (y up), the rig, and the run's camera and frames."""
    import av

    from wbcap.camera import ImageCamera
    from wbcap.export.clip import clip_from_amass
    from wbcap.export.rig import build_rig, lbs_vertices

    tracks = {}
    for tid in (0, 1):
        arrays = dict(np.load(video_run / f"track_{tid}.npz"))
        rig = build_rig(body_layer, arrays["betas"])
        clip = clip_from_amass(arrays, rig.rest_joints[0], f"track_{tid}", up="y")
        tracks[tid] = SimpleNamespace(rig=rig, clip=clip, mesh=lbs_vertices(rig, clip.poses, clip.transl, clip.expression))
    meta = json.loads((video_run / "meta.json").read_text())
    cam = meta["camera"]
    with av.open(str(video_run / "render.mp4")) as c:
        decoded = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    lines = [json.loads(x) for x in (video_run / "params.jsonl").read_text().splitlines()]
    return SimpleNamespace(tracks=tracks, lines=lines, decoded=decoded,
                           camera=ImageCamera(focal=tuple(cam["focal"]), princpt=tuple(cam["princpt"]),
                                              image_size=tuple(cam["image_size"])))


def _silhouette(points_px: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixels covered by the triangles ``faces`` of ``points_px`` (pixels, origin at the image's
    top-left corner, as :meth:`wbcap.camera.ImageCamera.project`; cv2 centres pixel (i, j) on (i, j))."""
    import cv2

    mask = np.zeros((size[1], size[0]), np.uint8)
    pts = np.round((points_px - 0.5) * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    for tri in pts[faces]:
        cv2.fillConvexPoly(mask, tri, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _foreground(png: Path) -> np.ndarray:
    """Pixels of a 3D-view screenshot that are not the background (0x1e2226)."""
    import cv2

    img = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(np.int32)
    return np.abs(img - np.array([0x1E, 0x22, 0x26])).max(-1) > 24


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.slow  # a Chromium process
def test_pages_load_without_console_errors_or_requests_elsewhere(browsed):
    for name in ("served", "copied", "image"):
        page = browsed.pages[name]
        assert _problems(page) == [], (name, page["errors"], page["warnings"])
        assert page["loaded"]["rendered"] >= 1
    for name in ("served", "copied"):
        assert [t["loaded"] for t in browsed.pages[name]["loaded"]["tracks"]] == [1, 1]


@pytest.mark.slow
def test_seeking_shows_video_frame_t(browsed, references):
    frame_times = [t for t, _ in references.decoded]
    for page in (browsed.pages["served"], browsed.pages["copied"]):
        for sample in page["samples"]:
            k = int(np.searchsorted(frame_times, sample["t"] + 1e-9) - 1)  # the frame on screen at t
            state = sample["state"]
            assert state["frame"] == k and state["t"] == pytest.approx(frame_times[k], abs=1e-9), sample
            assert state["videoTime"] == pytest.approx(frame_times[k], abs=2e-3) and not state["seeking"]
            assert state["frameIndex"] == k and f"frame {k + 1}/{FRAMES}" in sample["timeText"]
            # the pixels the video element shows are render.mp4's frame k (Chromium's decoder vs PyAV's)
            v = sample["video"]
            rgba = np.fromfile(v["file"], np.uint8).reshape(v["height"], v["width"], 4)[..., :3].astype(np.int32)
            diffs = [np.abs(rgba - img.astype(np.int32)).mean() for _, img in references.decoded]
            assert int(np.argmin(diffs)) == k and diffs[k] < 3.0, (sample["t"], diffs)


@pytest.mark.slow
def test_seeking_poses_every_body_at_frame_t(browsed, references):
    frame_times = [t for t, _ in references.decoded]
    for page in (browsed.pages["served"], browsed.pages["copied"]):
        for sample in page["samples"]:
            k = int(np.searchsorted(frame_times, sample["t"] + 1e-9) - 1)
            for tid, ref in references.tracks.items():
                got = np.fromfile(sample["vertices"][str(tid)], "<f4").astype(np.float64).reshape(-1, 3)
                err = np.linalg.norm(got - ref.mesh[k], axis=-1)
                assert err.max() < 1e-4, (sample["t"], tid, err.max())
                # and not a neighbouring frame's pose (they are centimetres apart)
                others = [np.linalg.norm(got - ref.mesh[j], axis=-1).max() for j in range(len(ref.mesh)) if j != k]
                assert min(others) > 100 * err.max()
                from wbcap.export.rig import posed_joints

                pelvis = posed_joints(ref.rig, ref.clip.poses[k : k + 1], ref.clip.transl[k : k + 1])[0, 0]
                np.testing.assert_allclose(sample["bones"][str(tid)], pelvis, atol=1e-4)


@pytest.mark.slow
def test_the_selected_tracks_parameters_are_its_params_jsonl_line(browsed, references):
    frame_times = [t for t, _ in references.decoded]
    for sample in browsed.pages["served"]["samples"]:
        k = int(np.searchsorted(frame_times, sample["t"] + 1e-9) - 1)
        want = [x for x in references.lines if x["track"] == 0 and x["frame"] == k]
        assert sample["params"] == want[0]


@pytest.mark.slow
def test_frame_step_and_play_pause_keep_video_and_bodies_on_one_frame(browsed, references):
    frame_times = [t for t, _ in references.decoded]
    page = browsed.pages["served"]
    before, after = page["afterNext"]["before"], page["afterNext"]["after"]
    assert after["frame"] == before["frame"] + 1 and after["t"] == pytest.approx(frame_times[after["frame"]], abs=1e-9)
    assert after["videoTime"] == pytest.approx(after["t"], abs=2e-3)
    # → and ← after a click on the button (which kept the keys from the page: a new user's trial)
    right, left = page["afterKeys"]["right"], page["afterKeys"]["left"]
    box = page["afterKeys"]["afterBox"]
    assert (right["frame"], left["frame"], box["frame"]) == (after["frame"] + 1, after["frame"], after["frame"] + 1), \
        page["afterKeys"]
    assert right["t"] == pytest.approx(frame_times[right["frame"]], abs=1e-9)
    # space plays after a click on the scrub bar too (the slider kept the keys: a viewer trial)
    assert page["afterKeys"]["spaceAfterScrub"]["playing"], page["afterKeys"]
    assert page["whilePlaying"]["playing"] and page["whilePlaying"]["t"] > frame_times[0]
    settled = page["afterPause"]
    assert not settled["playing"] and settled["frame"] > 0
    assert settled["t"] == pytest.approx(frame_times[settled["frame"]], abs=1e-9)
    assert settled["videoTime"] == pytest.approx(settled["t"], abs=2e-3)


@pytest.mark.slow
def test_3d_view_through_the_source_camera_shows_the_bodies_where_they_project(browsed, references):
    import cv2

    frame_times = [t for t, _ in references.decoded]
    k = int(np.searchsorted(frame_times, 0.5 + 1e-9) - 1)
    cam = references.camera
    for name in ("served", "copied"):
        page = browsed.pages[name]
        assert page["screenshotState"]["sourceCamera"] is True and page["screenshotState"]["frame"] == k
        shot = _foreground(Path(page["screenshot"]))
        h, w = shot.shape
        assert abs(w / h - cam.image_size[0] / cam.image_size[1]) < 0.02  # letterboxed to the image's shape
        scale = np.array([w / cam.image_size[0], h / cam.image_size[1]])
        want = np.zeros_like(shot)
        for ref in references.tracks.values():
            px = cam.project(ref.mesh[k] * [1, -1, -1]) * scale  # y-up world -> OpenCV camera -> pixels
            want |= _silhouette(px, ref.rig.faces, (w, h))
        iou = _iou(shot, want)
        assert iou > 0.9 and np.linalg.norm(_centroid(shot) - _centroid(want)) < 1.0, (name, iou)
        # the check can fail: the silhouette one frame earlier (6 px in the video) scores lower
        earlier = np.zeros_like(shot)
        for ref in references.tracks.values():
            earlier |= _silhouette(cam.project(ref.mesh[k - 2] * [1, -1, -1]) * scale, ref.rig.faces, (w, h))
        assert _iou(shot, earlier) < iou - 0.05
        cv2.imwrite(str(Path(page["screenshot"]).with_suffix(".expected.png")), want.astype(np.uint8) * 255)


@pytest.mark.slow
def test_photo_page_shows_every_person_in_the_overlays_camera(browsed, image_run):
    import trimesh

    from wbcap.camera import ImageCamera, shared_camera_offset_np

    page = browsed.pages["image"]
    (image,) = page["manifest"]["images"]
    assert image["name"] == "pic" and image["overlay"] == "media/pic/person_0/render_original_img.jpg"
    records = {k: json.loads((image_run / "pic" / f"person_{k}" / "smplx_param.json").read_text()) for k in (0, 1)}
    largest = max(records.values(), key=lambda r: r["crop_bbox_xywh"][2] * r["crop_bbox_xywh"][3])
    shared = ImageCamera(focal=tuple(largest["camera"]["focal"]), princpt=tuple(largest["camera"]["princpt"]),
                         image_size=tuple(largest["camera"]["image_size"]))
    assert image["camera"]["focal"] == list(shared.focal)
    sample = page["samples"][0]
    assert sample["params"] == records[0]
    shot = _foreground(Path(page["screenshot"]))
    h, w = shot.shape
    scale = np.array([w / shared.image_size[0], h / shared.image_size[1]])
    want = np.zeros_like(shot)
    for k, rec in records.items():
        mesh = trimesh.load(image_run / "pic" / f"person_{k}" / "output.obj", process=False, maintain_order=True)
        verts, faces = mesh.vertices, mesh.faces
        moved = verts + shared_camera_offset_np(np.array([rec["cam_trans"]]), np.array([rec["camera"]["focal"][0]]),
                                                np.array([rec["camera"]["princpt"]]), shared.focal[0], shared.princpt)
        got = np.fromfile(sample["vertices"][str(k)], "<f4").astype(np.float64).reshape(-1, 3)
        np.testing.assert_allclose(got, moved * [1, -1, -1], atol=1e-4)  # the render's camera, y up
        want |= _silhouette(shared.project(moved) * scale, faces, (w, h))
    assert _iou(shot, want) > 0.9 and np.linalg.norm(_centroid(shot) - _centroid(want)) < 1.0


@pytest.mark.slow
def test_copied_folder_says_how_to_serve_it_when_opened_as_a_file(browsed):
    page = browsed.pages["file"]
    assert page["fileWarningVisible"] and not page["mainVisible"]
    assert "python3 walk_files/serve.py" in page["fileWarningText"]
    # what the copy holds: the page, its files, serve.py; no link back to the run
    files = browsed.shared / "walk_files"
    assert (browsed.shared / "walk.html").is_file() and (files / "serve.py").is_file()
    assert not [p for p in browsed.shared.rglob("*") if p.is_symlink()]
    assert sorted(p.name for p in (files / "media").iterdir()) == ["render.mp4", "track_0.glb", "track_1.glb"]


# --------------------------------------------------------------------------- world-frame runs (wbcap run --world)

WORLD_T = 0.5  # the time the world pages are compared at (frame 5 of the two walkers)
SCENE_TIMES = (1.0, 2.0)
FUSED_TIMES = (-0.2, 1.5)  # (the fused page's: its clock begins at -0.4 s)


@pytest.mark.slow  # makes a GLB with the SMPL-X layer, and a Chromium process
def test_vfr_page_shows_each_frames_own_source_index_and_params(tmp_path, body_dir):
    """A variable-frame-rate run in the browser: at every frame of render.mp4 (times a tick off
    params.jsonl's), the page's source frame index and parameters are that frame's, and none where
    the track has no record (a user trial found frame k-1's on 5 of 12 frames)."""
    from fractions import Fraction

    from wbcap.testing.videos import make_vfr_with_audio
    from wbcap.view.site import ViewJob, serve_view

    reason = browser_missing()
    if reason:
        skip_or_fail(reason)
    run = tmp_path / "run"
    (run / ".wbcap").mkdir(parents=True)
    ticks = [90 * ms + (0 if ms == 0 else -1 if k % 2 else 1) for k, ms in enumerate(VFR_MS)]
    make_vfr_with_audio(run / "render.mp4", ticks, 90 * 33, Fraction(1, 90000))
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/x/vfr.mp4"}))
    (run / "meta.json").write_text(json.dumps({"fps": VFR_FPS, "source": "/x/vfr.mp4", "camera": _line(0, 0, 0)["camera"]}))
    missing = {4, 9}
    lines = [_line(k, ms / 1000, 0) for k, ms in enumerate(VFR_MS) if k not in missing]
    (run / "params.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with serve_view(ViewJob(out=str(run), body_models=str(body_dir))) as server:
        job = {"executable": str(CHROMIUM), "result": str(tmp_path / "result.json"), "out": str(tmp_path),
               "pages": [{"name": "vfr", "url": server.url, "kind": "video", "times": [t / 90000 for t in ticks]}]}
        (tmp_path / "job.json").write_text(json.dumps(job))
        proc = subprocess.run(["node", str(JS / "view_driver.mjs"), str(tmp_path / "job.json")], cwd=JS,
                              capture_output=True, text=True, timeout=240,
                              env={**os.environ, "HOME": str(tmp_path), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    (page,) = json.loads((tmp_path / "result.json").read_text())["pages"]
    assert not page.get("fatal") and _problems(page) == [], (page.get("fatal"), page["errors"], page["warnings"])
    want = [-1 if k in missing else k for k in range(len(VFR_MS))]
    assert [s["state"]["frame"] for s in page["samples"]] == list(range(len(VFR_MS)))
    assert [s["state"]["frameIndex"] for s in page["samples"]] == want
    assert [s["params"]["frame"] if s["params"] else -1 for s in page["samples"]] == want
    assert all(s["params"] == lines[[x["frame"] for x in lines].index(k)] for s, k in zip(page["samples"], want) if k >= 0)


def _known_world_stage(mp: pytest.MonkeyPatch) -> None:
    """The world stage replaced by a known answer, as tests/test_cli_run.py does: the ground of
    :func:`_known_ground` (camera 1.6 m up, 15 degrees down, rolled 4 degrees), the tracks unchanged."""
    import wbcap.world.estimate as estimate

    def known(tracks, body, device, camera, config, cuts=(), pose=None):
        frame = estimate.WorldFrame.from_ground(_known_ground(), contacts=12)
        return estimate.WorldResult(frame=frame, reason=None, tracks=dict(tracks),
                                    contacts={t: np.tile([True, False], (len(tr), 1)) for t, tr in tracks.items()},
                                    corrections={t: np.zeros((len(tr), 3)) for t, tr in tracks.items()})

    mp.setattr(estimate, "ground_tracks", known)


@pytest.fixture(scope="module")
def world_runs(video_run, tmp_path_factory, micro_ckpt, body_dir):
    """video_run's footage grounded in the known world of :func:`_known_world_stage`: ``world``, the
    same `wbcap run` with --world (render.mp4 included); ``mixed``, a copy of video_run after
    `wbcap export RUN --world --track 1` (track 1's GLB in the world, track 0's in the camera frame,
    meta.json unchanged: "camera")."""
    tmp = tmp_path_factory.mktemp("view_world")
    src = video_run.parent
    world, mixed = tmp / "world", tmp / "mixed"
    shutil.copytree(video_run, mixed)
    with pytest.MonkeyPatch.context() as mp:
        _known_world_stage(mp)
        r = invoke("run", src / "walk.mp4", "-o", world, "--world", "--detector", f"boxes:{src / 'boxes.json'}",
                   "--min-track", "2", "--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu")
        assert r.exit_code == 0, r.output
        r = invoke("export", mixed, "--world", "--track", "1", "--format", "glb", "--body-models", body_dir)
        assert r.exit_code == 0, r.output
    return SimpleNamespace(world=world, mixed=mixed)


@pytest.fixture(scope="module")
def scene_runs(tmp_path_factory, body_layer, body_dir):
    """A run folder of synthetic people on a known ground (made as tests/test_world_export.py makes
    it: params.jsonl and meta.json, no video) with its GLBs written by `wbcap export` (``camera``)
    and by `wbcap export --world` (``world``: the ground estimated, planted feet corrected;
    meta.json still says "camera")."""
    from wbcap.export.params_jsonl import write_params_jsonl
    from wbcap.io.run_folder import write_meta
    from wbcap.smooth.track import rows_by_frame
    from wbcap.testing.world_scenes import Stand, Walk, make_scene

    scene = make_scene(body_layer, [Walk(start=(-1.0, 3.8), heading_deg=45), Stand(position=(1.0, 5.5))], seconds=3.0)
    tmp = tmp_path_factory.mktemp("view_scene")
    base = tmp / "base"
    base.mkdir()
    tracks = {k: p.noisy for k, p in scene.people.items()}
    cam = scene.camera
    write_params_jsonl(base / "params.jsonl", {i: float(t) for i, t in enumerate(scene.times)}, tracks,
                       rows_by_frame(tracks), cam.focal[0], cam.princpt, cam.image_size)
    write_meta(base, {"source": "synthetic", "fps": 30.0, "gender": "neutral", "max_gap": 1.0, "tracks": [0, 1],
                      "camera": {"focal": list(cam.focal), "princpt": list(cam.princpt),
                                 "image_size": list(cam.image_size)}, "frame": "camera"})
    for name, extra in (("camera", ()), ("world", ("--world",))):
        shutil.copytree(base, tmp / name)
        r = invoke("export", tmp / name, *extra, "--format", "glb", "--body-models", body_dir)
        assert r.exit_code == 0, r.output
    return SimpleNamespace(camera=tmp / "camera", world=tmp / "world", scene=scene)


@pytest.fixture(scope="module")
def fused_run(tmp_path_factory, body_layer, body_dir):
    """A `wbcap fuse` folder (npz and GLB) of two calibrated cameras' runs of a walker and a person
    standing (as tests/test_fuse.py makes them), 3 s at 30 fps, the second camera started 0.4 s
    before the first: the fused clock begins at -0.4 s (its GLBs' keys moved to start at 0)."""
    from wbcap.testing.world_scenes import LabCalibration, SceneCamera, Stand, TrackNoise, Walk, make_scene, write_calibrated_run

    tmp = tmp_path_factory.mktemp("view_fused")
    people = [Walk(start=(-1.0, 3.8), heading_deg=45), Stand(position=(1.0, 5.5))]
    for i, camera in enumerate((SceneCamera(), SceneCamera(ground_xy=(5.5, 5.0), yaw_deg=90, roll_deg=-2))):
        scene = make_scene(body_layer, people, camera=camera, seconds=3.0, start_s=-0.4 * i,
                           noise=TrackNoise(seed=7 * i, depth_bias=0.05))
        lab = LabCalibration.of(scene.world_from_camera[0], scene.camera_position[0], yaw_deg=0.0, shift=(0.0, 0.0, 0.0))
        write_calibrated_run(tmp / "runs" / f"cam0{i + 1}", body_layer, scene, lab)
    # the first camera lost the person standing after 1 s (its run filled the rest): the second camera,
    # which saw them longer, is their source camera, the walker's the first (each file's source_camera
    # another camera, in one world: a review found the page moving one by the other's camera)
    standing = tmp / "runs" / "cam01" / "track_1.npz"
    with np.load(standing) as z:
        arrays = dict(z)
    arrays["valid"][30:] = False
    arrays["frame_indices"][30:] = -1
    np.savez(standing, **arrays)
    # the second camera's overlay video (its frames grey levels by their index), for `wbcap view --camera cam02`
    from wbcap.testing.videos import write_video

    write_video(tmp / "runs" / "cam02" / "render.mp4", [np.full((90, 160, 3), 2 * k, np.uint8) for k in range(90)],
                fps=30)
    r = invoke("fuse", tmp / "runs", "-o", tmp / "fused", "--format", "npz,glb", "--offsets", "0,-0.4",
               "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    sources = [p["source_camera"] for p in json.loads((tmp / "fused" / "fuse.json").read_text())["people"]]
    assert sources == ["cam01/track_0", "cam02/track_1"], sources
    return tmp / "fused"


@pytest.fixture(scope="module")
def browsed_world(video_run, world_runs, scene_runs, fused_run, tmp_path_factory):
    """The camera-frame run, its world-frame and mixed twins and the synthetic scene's two exports,
    each served by :func:`wbcap.view.site.serve_view` and read back in one Chromium run: per page
    the state, each body's vertices, pelvis and pixels through the page's source camera, the
    header's frame text and a screenshot through the source camera. In a small window, 640 x 360
    (the other pages' is 1280 x 720): the pages' layout is checked at both sizes (:func:`_problems`;
    at this one the 3D view's tools had slid under its canvas, and the world page's header had
    widened the page past the window)."""
    import contextlib

    reason = browser_missing()
    if reason:
        skip_or_fail(reason)
    from wbcap.view.site import ViewJob, serve_view

    tmp = tmp_path_factory.mktemp("view_world_browser")
    folders = {"camera": video_run, "world": world_runs.world, "mixed": world_runs.mixed,
               "scene_camera": scene_runs.camera, "scene_world": scene_runs.world, "fused": fused_run}
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(serve_view(ViewJob(out=str(f)))) for name, f in folders.items()}
        servers["fused_cam02"] = stack.enter_context(serve_view(ViewJob(out=str(fused_run), camera="cam02")))
        pages = []
        for name in servers:
            times = (list(SCENE_TIMES) if name.startswith("scene") else list(FUSED_TIMES) if name.startswith("fused")
                     else [WORLD_T])
            shot = None if name.startswith("fused") else {"time": times[0], "source_camera": True, "grid": False}
            pages.append({"name": name, "url": servers[name].url, "kind": "video", "times": times, "controls": False,
                          "screenshot": shot})  # (the fused pages' tests read no screenshot)
        job = {"executable": str(CHROMIUM), "result": str(tmp / "result.json"), "out": str(tmp),
               "viewport": [640, 360], "pages": pages}
        (tmp / "job.json").write_text(json.dumps(job))
        proc = subprocess.run(["node", str(JS / "view_driver.mjs"), str(tmp / "job.json")], cwd=JS,
                              capture_output=True, text=True, timeout=240,
                              env={**os.environ, "HOME": str(tmp), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    if proc.returncode != 0:
        pytest.fail(f"view_driver.mjs failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = {p["name"]: p for p in json.loads((tmp / "result.json").read_text())["pages"]}
    fatal = {name: (p["fatal"], p["errors"]) for name, p in result.items() if p.get("fatal")}
    if fatal:
        pytest.fail(f"pages that could not be used: {fatal}")
    for name, page in result.items():
        assert _problems(page) == [], (name, page["errors"], page["warnings"])
        assert all(t["loaded"] == t["parts"] for t in page["loaded"]["tracks"]), (name, page["loaded"])
    return result


def _pose(pose: dict) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(pose["rotation"]).as_matrix(), np.asarray(pose["translation"])


@pytest.mark.slow  # two more runs and a Chromium process
def test_world_frame_run_shows_the_bodies_through_the_camera_where_the_camera_frame_run_does(
        browsed_world, world_runs, references):
    """`wbcap run --world` (a known ground: camera 1.6 m up, 15 deg down, rolled 4 deg) and the same
    run without: through the source camera the page draws every body on the same pixels (pelvis,
    vertex box, screenshot), which are where the run's camera projects it; the world run's view is
    level with the grid on y = 0 and the camera where the GLB's source_camera node stands; the
    header says which frame. Also for a camera-frame run whose track 1 was exported again with
    --world (mixed frames, meta.json saying "camera")."""
    from wbcap.export.rig import posed_joints

    frame_times = [t for t, _ in references.decoded]
    k = int(np.searchsorted(frame_times, WORLD_T + 1e-9) - 1)
    cam = references.camera
    plain = browsed_world["camera"]
    base = plain["samples"][0]
    assert plain["manifest"]["frame"] == "camera" and plain["frameText"] == "camera frame"
    # each track's line says what its number counts (a bare row count read as nothing: a new user's trial)
    for item, track in zip(plain["trackItems"], plain["manifest"]["tracks"], strict=True):
        rows = track["rows"]
        assert item.endswith(f"{track['first']:.2f}–{track['last']:.2f} s · {rows} frame{'' if rows == 1 else 's'} seen"), item
    assert base["state"]["viewFrame"] == "camera" and base["state"]["frame"] == k
    # the camera-frame page's source camera projects as the run's camera (the pixels compared below are right)
    for tid, ref in references.tracks.items():
        pelvis = posed_joints(ref.rig, ref.clip.poses[k : k + 1], ref.clip.transl[k : k + 1])[0, 0]
        np.testing.assert_allclose(base["pixels"][str(tid)]["pelvis"], cam.project(pelvis[None] * [1, -1, -1])[0],
                                   atol=0.01)
        px = cam.project(ref.mesh[k] * [1, -1, -1])
        np.testing.assert_allclose(base["pixels"][str(tid)]["box"], [*px.min(0), *px.max(0)], atol=0.01)
    meta = json.loads((world_runs.world / "meta.json").read_text())
    assert meta["frame"] == "world" and json.loads((world_runs.mixed / "meta.json").read_text())["frame"] == "camera"
    want_shot = _foreground(Path(plain["screenshot"]))
    for name, world_tracks in (("world", ("0", "1")), ("mixed", ("1",))):
        page = browsed_world[name]
        m, sample = page["manifest"], page["samples"][0]
        state = sample["state"]
        assert m["frame"] == "world" and state["viewFrame"] == "world" and state["frame"] == k, name
        assert m["world"] == (meta["world"] if name == "world" else None)
        c = m["source_camera"]
        assert (c["height_m"], c["pitch_deg"], c["roll_deg"]) == pytest.approx((1.6, 15.0, 4.0), abs=1e-5)
        assert "world frame" in page["frameText"] and "camera 1.60 m up, 15.0° down, roll 4.0°" in page["frameText"]
        assert ("track 0 in the camera frame" in page["frameText"]) == (name == "mixed")
        # the world as the files have it: level, the grid on y = 0, the camera where its node is, the orbit camera above
        assert state["levelTiltDeg"] == pytest.approx(0.0, abs=1e-6) and state["groundY"] == 0.0
        np.testing.assert_allclose(state["sourceCameraPosition"], [0.0, 1.6, 0.0], atol=1e-6)
        assert state["orbitCameraPosition"][1] > 2.49
        rot, pos = _pose(c)
        for tid in ("0", "1"):
            # the file's pelvis: the camera-frame one moved by the source camera's pose (world files), else the same
            want = np.asarray(base["bones"][tid])
            if tid in world_tracks:
                want = rot @ want + pos
            np.testing.assert_allclose(sample["bones"][tid], want, atol=1e-4)
            # and through the source camera on the same pixels
            got, ref = sample["pixels"][tid], base["pixels"][tid]
            np.testing.assert_allclose(got["pelvis"], ref["pelvis"], atol=0.02, err_msg=f"{name} track {tid}")
            np.testing.assert_allclose(got["box"], ref["box"], atol=0.02, err_msg=f"{name} track {tid}")
        assert page["screenshotState"]["sourceCamera"] is True and page["screenshotState"]["frame"] == k
        shot = _foreground(Path(page["screenshot"]))
        assert shot.shape == want_shot.shape
        assert _iou(shot, want_shot) > 0.98 and np.linalg.norm(_centroid(shot) - _centroid(want_shot)) < 0.3, name


@pytest.mark.slow  # a ground estimate, four GLB files and a Chromium process
def test_world_export_overlays_within_the_corrections_pixel_bound(browsed_world, scene_runs):
    """`wbcap export RUN --world` on synthetic people (the ground really estimated, translations
    corrected, meta.json updated to "world" with them): the page shows the world frame (the
    camera where their source_camera node stands, about 1.4 m up and 12 deg down as the scene's),
    the standing person's feet on the grid's y = 0, and through the source camera every pelvis
    within the correction's 2 px of where the camera-frame export puts it."""
    assert json.loads((scene_runs.world / "meta.json").read_text())["frame"] == "world"
    plain, world = browsed_world["scene_camera"], browsed_world["scene_world"]
    assert plain["manifest"]["frame"] == "camera" and world["manifest"]["frame"] == "world"
    c = world["manifest"]["source_camera"]
    assert c["height_m"] == pytest.approx(1.4, abs=0.02) and c["pitch_deg"] == pytest.approx(12.0, abs=0.5)
    assert "world frame" in world["frameText"] and plain["frameText"] == "camera frame"
    for got, ref in zip(world["samples"], plain["samples"]):
        assert got["state"]["groundY"] == 0.0 and got["state"]["viewFrame"] == "world"
        for tid in ("0", "1"):
            a, b = got["pixels"][tid], ref["pixels"][tid]
            assert np.linalg.norm(np.subtract(a["pelvis"], b["pelvis"])) < 2.1, (got["t"], tid, a, b)
            # depth moves along the ray scale the body about its pelvis: the box grows or shrinks a little
            height = b["box"][3] - b["box"][1]
            assert np.abs(np.subtract(a["box"], b["box"])).max() < 2.1 + 0.1 * height, (got["t"], tid, a, b)
        verts = np.fromfile(got["vertices"]["1"], "<f4").reshape(-1, 3)  # the standing person
        assert abs(float(verts[:, 1].min())) < 0.03, verts[:, 1].min()
    shot, want = _foreground(Path(world["screenshot"])), _foreground(Path(plain["screenshot"]))
    assert _iou(shot, want) > 0.8


def _fused_pelvis(body_layer, fused_run: Path, tid: int, t: float) -> np.ndarray:
    """``(3,)`` metres: fused person ``tid``'s pelvis at their npz row nearest ``t`` (``trans``
    plus the rest pelvis), in the npz's z-up world."""
    import torch

    with np.load(fused_run / f"track_{tid}.npz") as z:
        arrays = dict(z)
    row = int(np.argmin(np.abs(arrays["times"] - t)))
    with torch.no_grad():
        rest = body_layer.rest_root(torch.as_tensor(arrays["betas"][None], dtype=torch.float32)).numpy()[0]
    return arrays["trans"][row] + rest


@pytest.mark.slow  # two calibrated runs, a fusion and a Chromium process
def test_a_fusions_page_shows_every_fused_body_where_its_npz_puts_it(browsed_world, fused_run, body_layer):
    """`wbcap view` of a `wbcap fuse` folder: a page without a video whose timeline steps the fused
    clock, which begins before 0 (its GLBs' keys moved to start at 0, source_start_s their
    first time: a review found the bodies posed that much late); each person's body stands
    where its npz puts it (the pelvis: ``trans`` plus the rest pelvis, z up turned y up), in the
    calibration's world with the grid on its floor, and the parameters shown are that row of its
    npz."""

    from wbcap.camera import camera_from_dict

    page = browsed_world["fused"]
    m = page["manifest"]
    record = json.loads((fused_run / "fuse.json").read_text())
    assert [p["source_camera"].split("/")[0] for p in record["people"]] == ["cam01", "cam02"]
    first = record["runs"][0]
    cam01_rotation, cam01_position = np.array(first["camera_rotation"]), np.array(first["camera_position_m"])
    cam01 = camera_from_dict({"focal": first["camera"]["focal_px"], "princpt": first["camera"]["principal_point_px"],
                              "image_size": first["camera"]["image_size_px"]})
    assert (m["kind"], m["video"], m["frame"]) == ("video", None, "world") and "world frame" in page["frameText"]
    assert [t["id"] for t in m["tracks"]] == [0, 1]
    assert m["frame_times"][0] == pytest.approx(-0.4) and all(p["start"] == pytest.approx(-0.4)
                                                              for t in m["tracks"] for p in t["parts"])
    for sample, t in zip(page["samples"], FUSED_TIMES, strict=True):
        assert sample["state"]["groundY"] == 0.0 and sample["state"]["viewFrame"] == "world"
        for tid in (0, 1):
            x, y, z = _fused_pelvis(body_layer, fused_run, tid, t)
            np.testing.assert_allclose(sample["bones"][str(tid)], [x, z, -y], atol=1e-4, err_msg=f"t {t} person {tid}")
            # ... and in the page's world: seen through the page's camera (the first person's source camera,
            # cam01) where that camera sees the npz's pelvis, also the second person's, whose source camera
            # is cam02 (their files share one world: none is moved by its own camera)
            seen = cam01_rotation.T @ (np.array([x, y, z]) - cam01_position)
            want = cam01.project(seen[None])[0]
            np.testing.assert_allclose(sample["pixels"][str(tid)]["pelvis"], want, atol=0.05,
                                       err_msg=f"t {t} person {tid}")
        shown = sample["params"]
        with np.load(fused_run / "track_0.npz") as z:  # (the first person, selected at first)
            row = int(np.argmin(np.abs(z["times"] - t)))
            assert shown["time"] == pytest.approx(float(z["times"][row]), abs=1e-9)
            np.testing.assert_allclose(shown["trans"], z["trans"][row], atol=1e-5)
            assert shown["frame"] == int(z["frame_indices"][row])


@pytest.mark.slow  # the browsed pages' Chromium run
def test_a_fusions_page_through_another_camera_shows_its_video_on_the_fused_clock(browsed_world, fused_run, body_layer,
                                                                                  tmp_path):
    """`wbcap view FUSED --camera cam02`: the page shows cam02's render.mp4, its frames on the fused
    clock (cam02's clock 0.4 s behind: at -0.2 s its frame 6, at 0.2 s of its video), and sees every
    fused body through cam02 where cam02 (fuse.json's pose of it, its meta.json's intrinsics)
    sees the npz's pelvis; a camera not in the fusion, or a run without its video, is one line."""

    from wbcap.camera import camera_from_dict

    page = browsed_world["fused_cam02"]
    m = page["manifest"]
    record = json.loads((fused_run / "fuse.json").read_text())
    run = record["runs"][1]
    assert m["fused"]["camera"] == "cam02" and m["video"]["offset"] == pytest.approx(-0.4)
    assert m["video"]["frame_times"][:2] == pytest.approx([-0.4, -0.4 + 1 / 30])
    rotation, position = np.array(run["camera_rotation"]), np.array(run["camera_position_m"])
    meta = json.loads((Path(run["folder"]) / "meta.json").read_text())
    camera = camera_from_dict(meta["camera"])
    assert m["camera"] == {"focal": list(camera.focal), "princpt": list(camera.princpt),
                           "image_size": list(camera.image_size)}
    for sample, t in zip(page["samples"], FUSED_TIMES, strict=True):
        state = sample["state"]
        assert state["videoTime"] == pytest.approx(t + 0.4, abs=0.02), (t, state)
        for tid in (0, 1):
            seen = rotation.T @ (_fused_pelvis(body_layer, fused_run, tid, t) - position)
            np.testing.assert_allclose(sample["pixels"][str(tid)]["pelvis"], camera.project(seen[None])[0], atol=0.05,
                                       err_msg=f"t {t} person {tid}")
    for camera_name, words in (("cam09", "no run 'cam09' in it (its runs: cam01, cam02); give one of those to --camera"),
                               ("cam01", "no render.mp4 (the run of cam01 in")):
        r = invoke("view", fused_run, "--camera", camera_name, "--html", tmp_path / f"{camera_name}.html")
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and words in lines[0], r.output
    # only the camera's video may come from its run's folder: a file of the fusion a link leads there is refused
    # (a review: the run's folder, named by a fuse.json that may be someone else's, held every file of the page)
    planted = tmp_path / "planted"
    shutil.copytree(fused_run, planted)
    there = Path(run["folder"]) / "planted.glb"  # (a GLB in the run's folder: the link leads to a file the page reads)
    shutil.copyfile(fused_run / "track_1.glb", there)
    (planted / "track_1.glb").unlink()
    (planted / "track_1.glb").symlink_to(there)
    try:
        r = invoke("view", planted, "--camera", "cam02", "--html", tmp_path / "planted.html")
    finally:
        there.unlink()
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and f"a symbolic link leads it out of {planted}" in lines[0], r.output


@pytest.mark.slow  # builds the GLBs with the SMPL-X layer
def test_world_run_without_glb_gets_them_made_in_its_world(world_runs, tmp_path, body_dir, monkeypatch):
    """A `--world --export none` run: the page's GLBs are made as `wbcap export --world` makes them
    (the same bytes as the run's), so the page shows the world as the run's npz files do."""
    _known_world_stage(monkeypatch)  # the answer the run got
    bare = tmp_path / "bare"
    shutil.copytree(world_runs.world, bare, ignore=shutil.ignore_patterns("track_*.glb"))
    r = invoke("view", bare, "--html", tmp_path / "v.html", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    files = tmp_path / "v_files"
    manifest = json.loads((files / "view.json").read_text())
    assert manifest["frame"] == "world" and manifest["source_camera"]["height_m"] == pytest.approx(1.6)
    for track in manifest["tracks"]:
        (part,) = track["parts"]
        assert part["src"] == f"media/generated/track_{track['id']}.glb" and part["frame"] == "world"
        assert (files / part["src"]).read_bytes() == (world_runs.world / f"track_{track['id']}.glb").read_bytes()


def test_the_page_is_not_written_inside_the_folder_it_shows(tmp_path):
    """`--html OUT/page.html` put page files into the run folder, which `wbcap run --overwrite` then
    refused as files wbcap did not write: refused, with where to write it instead."""
    from wbcap.errors import InputError
    from wbcap.view.site import ViewJob, write_html

    run = tmp_path / "run"
    run.mkdir()
    for page in (run / "page.html", run / "sub" / "page.html"):
        with pytest.raises(InputError, match=r"inside the folder it shows .*; write the page beside it, e\.g\. html "):
            write_html(ViewJob(out=str(run), html=str(page)))
    assert list(run.iterdir()) == []


@pytest.mark.slow  # the image_run fixture, and a served process
@pytest.mark.parametrize("sig, quiet", [("SIGTERM", False), ("SIGHUP", False), ("SIGTERM", True)])
def test_a_server_stopped_by_sigterm_or_sighup_removes_its_temporary_folder(image_run, tmp_path, sig, quiet):
    """Only Ctrl-C cleaned up before: kill (SIGTERM) and a closed terminal (SIGHUP) left
    /tmp/wbcap-view-* behind. It says "stopped", except with `wbcap -q` (which printed it too)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    py = [sys.executable, "-c", "import sys; from wbcap.cli import main; main(sys.argv[1:])"]
    proc = subprocess.Popen([*py, *(["-q"] if quiet else []), "view", str(image_run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TMPDIR": str(temp), "NO_PROXY": "127.0.0.1"})
    try:
        _read_url(proc)  # (the address is printed with -q too)
        assert any(temp.iterdir())  # (the served folder)
        proc.send_signal(getattr(signal, sig))
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert proc.returncode == 0, err[-2000:]
    assert list(temp.iterdir()) == []
    assert err == "" if quiet else err.strip().splitlines()[-1] == "stopped"


@pytest.mark.slow  # the image_run fixture, and a served process
def test_the_folder_of_a_server_killed_by_sigkill_is_removed_by_the_next(image_run, tmp_path, monkeypatch):
    """SIGKILL (kill -9, the OOM killer) gives the server no chance to clean up: its
    /tmp/wbcap-view-* stayed for good. The next `wbcap view` removes it, one writing a page
    (`--html`) too (a new user's trial: only a served one did); its own goes when it stops."""
    import tempfile

    from wbcap.view.site import ViewJob, serve_view, write_html

    temp = tmp_path / "tmp"
    temp.mkdir()
    py = [sys.executable, "-c", "import sys; from wbcap.cli import main; main(sys.argv[1:])"]
    proc = subprocess.Popen([*py, "view", str(image_run), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(temp)})
    try:
        _read_url(proc)
        proc.kill()
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (left,) = temp.iterdir()
    assert left.name.startswith("wbcap-view-") and (left / "site" / "index.html").is_file()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    write_html(ViewJob(out=str(image_run), html=str(tmp_path / "page.html")))
    assert list(temp.iterdir()) == [] and (tmp_path / "page.html").is_file()
    with serve_view(ViewJob(out=str(image_run), port=0)) as server:
        (mine,) = temp.iterdir()
        assert mine.name.startswith("wbcap-view-")
        with urllib.request.urlopen(server.url, timeout=10) as resp:  # (serves the site, not the owner record)
            assert resp.status == 200
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url.rsplit("/", 1)[0] + "/.wbcap-owner.json", timeout=10)
    assert list(temp.iterdir()) == []


@pytest.mark.slow  # the image_run fixture, and the page's own server in a process
def test_a_page_named_with_url_characters_loads_through_its_serve_py(image_run, tmp_path):
    """A page named "take#2 50%.html": its <base href> and the address serve.py prints were not
    percent-encoded, so the browser asked for "take" (the rest an anchor) and nothing loaded."""
    import html.parser

    r = invoke("view", image_run, "--html", tmp_path / "take#2 50%.html")
    assert r.exit_code == 0, r.output
    page = (tmp_path / "take#2 50%.html").read_text()

    class Base(html.parser.HTMLParser):
        href = None

        def handle_starttag(self, tag, attrs):
            if tag == "base":
                Base.href = dict(attrs)["href"]

    Base().feed(page)
    assert Base.href == "take%232%2050%25_files/"
    # the command the page and README.txt give, as a shell reads it
    assert "python3 'take#2 50%_files/serve.py'" in (tmp_path / "take#2 50%_files" / "README.txt").read_text()
    proc = _start([sys.executable, str(tmp_path / "take#2 50%_files" / "serve.py")])
    try:
        url = _read_url(proc)
        assert url.endswith("/take%232%2050%25.html")
        with urllib.request.urlopen(url, timeout=10) as resp:  # the page itself, as the browser asks for it
            assert resp.read().decode() == page
        for name in ("app.js", "view.json"):  # and what it loads, resolved against <base href> as a browser does
            with urllib.request.urlopen(urllib.parse.urljoin(url, Base.href + name), timeout=10) as resp:
                assert resp.read() == (tmp_path / "take#2 50%_files" / name).read_bytes(), name
    finally:
        _stop(proc)
    # a page ending in .HTM (accepted by --html): its serve.py finds it
    assert invoke("view", image_run, "--html", tmp_path / "Q.HTM").exit_code == 0
    proc = _start([sys.executable, str(tmp_path / "Q_files" / "serve.py")])
    try:
        url = _read_url(proc)
        assert url.endswith("/Q.HTM")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == (tmp_path / "Q.HTM").read_bytes()
    finally:
        _stop(proc)


def test_view_of_one_persons_folder_shows_that_person(image_run, tmp_path, monkeypatch):
    """`wbcap view OUT/pic/person_1` crashed (ValueError of relative_to): the page of that person."""
    r = invoke("view", image_run / "pic" / "person_1", "--html", tmp_path / "one.html")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "one_files" / "view.json").read_text())
    whole = invoke("view", image_run, "--html", tmp_path / "all.html")
    assert whole.exit_code == 0, whole.output
    everyone = json.loads((tmp_path / "all_files" / "view.json").read_text())
    (image,) = manifest["images"]
    (same,) = [i for i in everyone["images"] if i["name"] == image["name"]]
    keep = lambda person: {k: person[k] for k in ("id", "obj", "params")}
    assert image["name"] == "pic" and len(image["people"]) == 1 and keep(image["people"][0]) == keep(same["people"][1])
    # one image's folder, OUT/pic, is named as in OUT's page (a new user's trial saw ".")
    r = invoke("view", image_run / "pic", "--html", tmp_path / "pic.html")
    assert r.exit_code == 0, r.output
    (image,) = json.loads((tmp_path / "pic_files" / "view.json").read_text())["images"]
    assert image["name"] == "pic" and [keep(q) for q in image["people"]] == [keep(q) for q in same["people"]]
    assert (tmp_path / "pic_files" / "media" / "pic" / "person_1" / "output.obj").is_file()
    # and as ".", from inside either folder (a review: a person's folder was "not a finished run")
    from wbcap.view.manifest import read_output

    for inside in (image_run / "pic", image_run / "pic" / "person_1"):
        monkeypatch.chdir(inside)
        (image,) = read_output(Path(".")).manifest["images"]
        assert image["name"] == "pic", inside


def test_a_folder_of_photos_and_runs_names_the_runs_pages(image_run, tmp_path, caplog):
    """`wbcap view wbcap_demo` showed the photo demo and said nothing of the video demo's run
    beside it (a new user's trial): one warning naming the runs and the command for one."""
    from wbcap.view.manifest import read_output

    both = tmp_path / "demo"
    shutil.copytree(image_run, both / "photos")
    (both / "video-walk").mkdir()
    (both / "video-walk" / "params.jsonl").write_text("")
    with caplog.at_level(logging.WARNING, logger="wbcap"):
        (image,) = read_output(both).manifest["images"]
    assert image["name"] == "photos/pic"
    assert [r.getMessage() for r in caplog.records] == [
        f"{both}: this page shows its photos; the run(s) in it (video-walk) have a page each: `wbcap view "
        f"{both / 'video-walk'}`"]


def test_an_html_folder_holds_copies_of_wbcaps_own_page_files(image_run, tmp_path):
    """The page's app.js, style and three.js were hard links to the installed files: editing a
    shared page in place changed wbcap and every other page."""
    from wbcap.view.site import static_dir

    r = invoke("view", image_run, "--html", tmp_path / "p.html")
    assert r.exit_code == 0, r.output
    static = static_dir()
    own = [p for p in static.rglob("*") if p.is_file() and (tmp_path / "p_files" / p.relative_to(static)).is_file()]
    assert len(own) >= 3 and any(p.name == "app.js" for p in own)
    for src in own:
        dst = tmp_path / "p_files" / src.relative_to(static)
        assert not os.path.samefile(src, dst) and dst.read_bytes() == src.read_bytes(), dst


def test_html_never_replaces_a_page_or_files_wbcap_did_not_write(image_run, tmp_path):
    """`view --html` replaced an existing page that wbcap did not write, and deleted files a user had
    added inside the `_files` folder of a page it wrote, without a word."""
    page, files = tmp_path / "p.html", tmp_path / "p_files"
    page.write_text("<html><body>my own notes</body></html>")
    r = invoke("view", image_run, "--html", page)
    assert r.exit_code == 2 and r.output == (f"error: {page}: exists and was not written by `wbcap view`; move it away "
                                             "or choose another --html file\n"), r.output
    assert page.read_text() == "<html><body>my own notes</body></html>" and not files.exists()
    page.unlink()
    assert invoke("view", image_run, "--html", page).exit_code == 0
    listed = (files / ".wbcap-files").read_text().splitlines()
    assert "view.json" in listed and "serve.py" in listed and "app.js" in listed
    assert sorted(listed) == sorted(p.relative_to(files).as_posix() for p in files.rglob("*")
                                    if p.is_file() and p.name != ".wbcap-files")
    assert invoke("view", image_run, "--html", page).exit_code == 0  # its own page and files: replaced
    (files / "media" / "notes.txt").write_text("keep")
    r = invoke("view", image_run, "--html", page)
    assert r.exit_code == 2 and r.output.startswith(f"error: {files / 'media' / 'notes.txt'}: added to a page folder "
                                                    "`wbcap view` wrote"), r.output
    assert (files / "media" / "notes.txt").read_text() == "keep"
    (files / "media" / "notes.txt").unlink()
    assert invoke("view", image_run, "--html", page).exit_code == 0
    for extra in ("a folder", "a link"):  # (not only files: an added folder or link is the user's too)
        target = files / "mine"
        target.mkdir() if extra == "a folder" else target.symlink_to(tmp_path / "elsewhere")
        r = invoke("view", image_run, "--html", page)
        assert r.exit_code == 2 and r.output.startswith(f"error: {target}: added to a page folder"), (extra, r.output)
        target.rmdir() if extra == "a folder" else target.unlink()
    # a page or folder that is a link, dangling or not (a crash, or a stray link left behind)
    for link in (tmp_path / "dl.html", tmp_path / "dl_files"):
        link.symlink_to(tmp_path / "nowhere")
        r = invoke("view", image_run, "--html", tmp_path / "dl.html")
        assert r.exit_code == 2 and r.output == (f"error: {link}: is a link, which `wbcap view` did not write; move it "
                                                 "away or choose another --html file\n"), r.output
        link.unlink()
    assert not (tmp_path / "dl_files").exists()
    # a name too long for the folder written beside it (errno 36 half-way): one line, nothing written
    r = invoke("view", image_run, "--html", tmp_path / ("v" * 240 + ".html"))
    assert r.exit_code == 2 and "the name is too long for the folder written beside it (at most 231 bytes" in r.output
    assert not any(p.name.startswith(("v", ".v")) for p in tmp_path.iterdir()), r.output
    assert invoke("view", image_run, "--html", tmp_path / ("w" * 231 + ".html")).exit_code == 0
    # a name a shell would read as an option; one that is not UTF-8 (no web address names it)
    assert invoke("view", image_run, "--html", tmp_path / "-x.html").exit_code == 0
    assert "python3 ./-x_files/serve.py" in (tmp_path / "-x_files" / "README.txt").read_text()
    bad = tmp_path / os.fsdecode(b"take\xff.html")
    r = invoke("view", image_run, "--html", bad)
    assert r.exit_code == 2 and "its name is not valid UTF-8 text" in r.output and "take\\xff.html" in r.output, r.output
    assert not any(p.name.startswith("take") for p in tmp_path.iterdir())


def test_a_stopped_pass_2_is_said_once(video_run, tmp_path, body_dir, caplog):
    """A user trial: `wbcap view` of a run whose pass 2 was stopped (no GLBs yet) said "stopped
    while writing" twice: once reading the folder, once more making the missing GLBs."""
    import logging
    import shutil

    from wbcap.io.run_folder import RUN_DIR, WRITING_FILE
    from wbcap.view.site import ViewJob, write_html

    run = tmp_path / "run"
    shutil.copytree(video_run, run)
    for glb in run.glob("track_*.glb"):
        glb.unlink()
    (run / RUN_DIR / WRITING_FILE).write_text("")
    with caplog.at_level(logging.WARNING):
        write_html(ViewJob(out=str(run), html=str(tmp_path / "v.html"), body_models=str(body_dir)))
    said = [r.getMessage() for r in caplog.records if "stopped while writing its outputs" in r.getMessage()]
    assert len(said) == 1, said
    assert (tmp_path / "v_files" / "media" / "generated").is_dir()  # (the GLBs were made)


def test_a_part_ends_at_its_tracks_last_record_not_at_a_held_last_row():
    """A variable-frame-rate track's file ends on a row up to a clock period after its last frame,
    holding that pose: the page showed the body a frame after the person had gone (a review).
    Each part ends at the track's last params.jsonl record in it."""
    from wbcap.view.manifest import end_parts_at_their_rows

    track = {"parts": [{"t0": 0.0, "t1": 0.40}, {"t0": 2.0, "t1": 2.64}, {"t0": 5.0, "t1": 5.5}]}
    end_parts_at_their_rows(track, [0.0, 0.13, 0.37, 2.0, 2.30, 2.64])
    assert [p["t1"] for p in track["parts"]] == [0.37, 2.64, 5.5]  # (no record in the third: kept)
