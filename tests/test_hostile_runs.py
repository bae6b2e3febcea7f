"""Damaged or hostile run folders (a break-it trial's findings): `wbcap export` refuses a folder in
the way of a track file and a damaged params.jsonl line before it writes anything; `wbcap view`
gives one line for a cut-off GLB or an empty render.mp4; damaged raw.jsonl records are dropped
by --resume and named by pass 2; the view server answers only requests addressed to 127.0.0.1.

The run folders are made by hand (params.jsonl lines as `wbcap run` writes them): no network runs.
"""

from __future__ import annotations

import json
import logging
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wbcap.cli import cli

CAMERA = {"focal": [400.0, 400.0], "princpt": [32.0, 24.0], "image_size": [64, 48]}
SIZES = (("root_pose", 3), ("body_pose", 63), ("lhand_pose", 45), ("rhand_pose", 45), ("jaw_pose", 3),
         ("shape", 10), ("expr", 10), ("cam_trans", 3))


def _params(frame: int) -> dict:
    params = {key: [round(0.01 * (frame + i), 6) for i in range(n)] for key, n in SIZES}
    params["cam_trans"] = [0.0, 0.0, 5.0]
    params["shape"] = [round(0.01 * i, 6) for i in range(10)]  # (one shape a track, as wbcap writes it)
    return params


def _line(frame: int, track: int = 0) -> dict:
    """A params.jsonl line of frame ``frame`` (10 fps), as `wbcap run` writes it."""
    return {"frame": frame, "time": frame / 10, "track": track, "box": [10.0, 5.0, 20.0, 40.0], **_params(frame),
            "leye_pose": [0.0] * 3, "reye_pose": [0.0] * 3, "camera": CAMERA}


def _write_lines(path: Path, lines: list) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def _run(folder: Path, lines: list | None = None) -> Path:
    """A hand-made finished run: meta.json, params.jsonl (6 frames of track 0) and old track files."""
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"fps": 10.0, "gender": "neutral", "max_gap": 1.0, "camera": CAMERA,
                                                  "tracks": [0]}))
    _write_lines(folder / "params.jsonl", lines if lines is not None else [_line(f) for f in range(6)])
    # (old track files of wbcap's, by their marks: an npz with its keys, a GLB it generated)
    np.savez(folder / "track_0.npz", valid=np.ones(1, bool), times=np.zeros(1), frame_indices=np.zeros(1, np.int64),
             up_axis=np.array("z"), flat_hand_mean=np.array(True))
    head = json.dumps({"asset": {"version": "2.0", "generator": "wbcap 0"}}).encode()
    head += b" " * (-len(head) % 4)
    (folder / "track_0.glb").write_bytes(struct.pack("<4sII", b"glTF", 2, 20 + len(head)) + struct.pack(
        "<I4s", len(head), b"JSON") + head)
    return folder


def _files(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder``: a file's bytes, None for a folder."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _one_error_line(r) -> str:
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


# --------------------------------------------------------------------------- wbcap export


@pytest.mark.parametrize("in_place", [False, True], ids=["dest", "in place"])
def test_export_refuses_a_folder_named_as_a_track_file_before_writing(tmp_path, body_dir, in_place):
    """A folder where a track file goes (`D/track_0.bvh/`): one line naming it, exit 2, and no
    other file written or replaced (track_0.glb was written first, then IsADirectoryError)."""
    run = _run(tmp_path / "run")
    dest = run if in_place else tmp_path / "D"
    (dest / "track_0.bvh").mkdir(parents=True)
    before = _files(tmp_path)
    r = CliRunner().invoke(cli, ["export", str(run), "--format", "glb,bvh", "--body-models", str(body_dir),
                                 *([] if in_place else ["--dest", str(dest)])])
    line = _one_error_line(r)
    assert f"{dest / 'track_0.bvh'}: is a folder, where `wbcap export` writes track 0's bvh file" in line, line
    assert "move or remove it, or choose another --dest folder" in line
    assert _files(tmp_path) == before


def _nan_root(lines):
    lines[2] = json.dumps(lines[2]).replace('"root_pose": [0.02,', '"root_pose": [NaN,')
    assert "NaN" in lines[2]


def _set(key, value, row=2):
    def damage(lines):
        lines[row][key] = value
    return damage


def _repeat_line(lines):
    lines.insert(3, lines[2])


@pytest.mark.parametrize(("damage", "expected"), [
    (_nan_root, ":3: a damaged record (root_pose holds NaN, not a finite number)"),
    (_set("time", -1e9), ":3: a damaged record (frame 2 at -1e+09 s is not after frame 1 at 0.1 s, line 2)"),
    (_repeat_line, ":4: repeats track 0, frame 2 of line 3"),
    (_set("time", 0.55, row=4), ":6: a damaged record (frame 5 at 0.5 s is not after frame 4 at 0.55 s, line 5)"),
    (_set("body_pose", [0.1] * 5), ":3: a damaged record (body_pose holds 5 numbers, not 63)"),
    (_set("shape", [0.1] * 9, row=3), ":4: a damaged record (shape holds 9 numbers, not 10)"),
    (_set("cam_trans", [0.0, 1e39, 5.0]), ":3: a damaged record (cam_trans holds 1e+39, not a finite number)"),
    (_set("box", [1.0, "x", 2.0, 3.0]), ':3: a damaged record (box holds "x", not a number)'),
    (_set("body_pose", [None] + [0.1] * 62), ":3: a damaged record (body_pose holds null, not a number)"),
], ids=["nan", "time-back", "repeated", "time-swap", "short-pose", "short-shape", "huge", "box-str", "null"])
def test_export_refuses_a_damaged_params_line_before_writing(tmp_path, body_dir, damage, expected):
    """A params.jsonl line with NaN, a value of another length or kind, a time out of order or a
    repeated line: one line naming params.jsonl, the line and the field, exit 2, the run's track
    files untouched (NaN replaced track_0.npz, then the GLB step crashed; times out of order and
    repeated lines were `ValueError: times must be strictly increasing`, exit 1)."""
    lines = [_line(f) for f in range(6)]
    damage(lines)
    run = _run(tmp_path / "run", lines)
    before = _files(tmp_path)
    r = CliRunner().invoke(cli, ["export", str(run), "--format", "npz,glb", "--body-models", str(body_dir)])
    line = _one_error_line(r)
    assert line.startswith(f"error: {run / 'params.jsonl'}{expected}"), line
    # (the run's command with --resume: here none was recorded, so SOURCE and its pass-1 flags, said as such)
    assert line.endswith(f"rewrite it with its run's command: `wbcap run SOURCE -o {run} --resume` and the run's pass-1 "
                         "flags (or start over with --overwrite)"), line
    assert _files(tmp_path) == before


def test_reading_another_json_file_as_params_jsonl_says_what_it_is_not(tmp_path):
    """An image's smplx_param.json (indented JSON) given as a params.jsonl: one line saying the
    file is not one (it said "the file is damaged: resume its run"; a user trial); a bad line
    after good ones is still damage."""
    from wbcap.errors import InputError
    from wbcap.export.params_jsonl import read_params_jsonl

    other = tmp_path / "smplx_param.json"
    other.write_text(json.dumps({"root_pose": [0.0] * 3, "shape": [0.0] * 10}, indent=1))
    with pytest.raises(InputError, match=r"smplx_param.json:1: not JSON \(.*\): not a wbcap params.jsonl \(one JSON "
                                         r"record a line, written by `wbcap run`\), or damaged from its start"):
        read_params_jsonl(other)
    run = _run(tmp_path / "run", [_line(f) for f in range(3)])
    with (run / "params.jsonl").open("a") as f:
        f.write('{"frame": 3, "ti\n')
    with pytest.raises(InputError, match=r"params.jsonl:4: not JSON \(.*\); the file is damaged: rerun its run with resume=True"):
        read_params_jsonl(run / "params.jsonl")
    # the run folder itself reads its params.jsonl (it raised IsADirectoryError: a user trial)
    (run / "params.jsonl").write_text("".join(json.dumps(_line(f)) + "\n" for f in range(3)))
    frames, tracks, _ = read_params_jsonl(run)
    assert list(frames) == [0, 1, 2] and list(tracks) == [0]
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputError, match=r"binary.jsonl: cannot be read \(.*\); pass the params.jsonl of a finished"):
        read_params_jsonl(tmp_path / "binary.jsonl")


def test_export_of_the_undamaged_hand_made_run_works(tmp_path, body_dir):
    """(The hand-made run above is one export takes: only the damage is refused.)"""
    run = _run(tmp_path / "run")
    r = CliRunner().invoke(cli, ["export", str(run), "--format", "npz", "--body-models", str(body_dir)])
    assert r.exit_code == 0, r.output
    assert (run / "track_0.npz").read_bytes()[:2] == b"PK"


# --------------------------------------------------------------------------- wbcap view


def _glb(path: Path, pad: int = 8000) -> Path:
    """A GLB with a JSON chunk of about ``pad`` bytes (a real one's is ~20 kB) and a binary chunk."""
    gltf = {"asset": {"version": "2.0", "extras": {"num_rows": 1, "first_time_s": 0.0, "pad": "x" * pad}}}
    data = json.dumps(gltf).encode()
    data += b" " * (-len(data) % 4)
    blob = bytes(64)
    total = 12 + 8 + len(data) + 8 + len(blob)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(data), b"JSON") + data
                     + struct.pack("<I4s", len(blob), b"BIN\x00") + blob)
    return path


def _cut_json(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5000])  # (`head -c 5000`: in the JSON chunk)


def _cut_blob(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])  # the JSON whole, the binary chunk cut


def _bad_animation(path: Path) -> None:
    g = {"asset": {"version": "2.0"}, "animations": [{"samplers": []}]}
    data = json.dumps(g).encode()
    data += b" " * (-len(data) % 4)
    path.write_bytes(struct.pack("<4sIIII", b"glTF", 2, 20 + len(data), len(data), 0x4E4F534A) + data)


@pytest.mark.parametrize(("damage", "expected"), [
    (_cut_json, "a damaged GLB file (5000 bytes, where its header says"),
    (_cut_blob, "a damaged GLB file ("),
    (_bad_animation, "a damaged GLB file (KeyError: 'accessors')"),
], ids=["json-cut", "blob-cut", "bad-animation"])
def test_view_of_a_damaged_glb_is_one_line(tmp_path, damage, expected):
    """A GLB cut short (`head -c 5000`: JSONDecodeError, exit 1) or one whose animation cannot be
    read: one line naming the GLB and `wbcap export RUN`, exit 2, no page written."""
    run = _run(tmp_path / "run")
    glb = _glb(run / "track_0.glb")
    r = CliRunner().invoke(cli, ["view", str(run), "--html", str(tmp_path / "v.html")])
    assert r.exit_code == 0, r.output  # (the whole file is a GLB the page takes)
    # no render.mp4 and no record of --no-render: said once the page is built (a viewer trial)
    assert f"WARNING  {run}: no render.mp4 (moved away, or the run used --no-render)" in r.output, r.output
    damage(glb)
    r = CliRunner().invoke(cli, ["view", str(run), "--html", str(tmp_path / "w.html")])
    line = _one_error_line(r)
    assert line.startswith(f"error: {run / 'track_0.glb'}: {expected}"), line
    assert line.endswith(f"write it again with `wbcap export {run}`"), line
    assert not (tmp_path / "w.html").exists() and not (tmp_path / "w_files").exists()


def test_view_of_an_empty_render_mp4_is_one_line(tmp_path):
    """A zero-byte render.mp4 (InvalidDataError, exit 1): one line naming it, with the run's
    `--resume` (which renders it again) or moving it away (the page of a --no-render run) as the fix."""
    run = _run(tmp_path / "run")
    _glb(run / "track_0.glb")
    (run / ".wbcap").mkdir()
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/clips/walk.mp4"}))
    (run / "render.mp4").write_bytes(b"")
    r = CliRunner().invoke(cli, ["view", str(run), "--html", str(tmp_path / "v.html")])
    line = _one_error_line(r)
    assert line.startswith(f"error: {run / 'render.mp4'}: not a video wbcap can read ("), line
    assert line.endswith(f"write it again with `wbcap run /clips/walk.mp4 -o {run} --resume` and the run's pass-1 "
                         "flags, or move it away to view the run without its video"), line  # (the bare command was refused)
    assert not (tmp_path / "v.html").exists() and not (tmp_path / "v_files").exists()
    # with the command the run recorded: that command with --resume, as `wbcap export`'s hint gives it
    # (and the variables that found its files)
    command = {"argv": ["run", "/clips/walk.mp4", "-o", str(run), "--every", "2"], "cwd": str(tmp_path),
               "out": str(run), "env": {"WBCAP_HOME": "/lab/wbcap"}}
    (run / ".wbcap" / "run.json").write_text(json.dumps({"source": "/clips/walk.mp4", "command": command}))
    line = _one_error_line(CliRunner().invoke(cli, ["view", str(run), "--html", str(tmp_path / "v.html")]))
    assert f"write it again with `cd {tmp_path} && WBCAP_HOME=/lab/wbcap wbcap run /clips/walk.mp4 -o {run} --every 2 " \
           "--resume`, or move it away" in line, line
    (run / "render.mp4").unlink()  # moved away: the page without the video
    r = CliRunner().invoke(cli, ["view", str(run), "--html", str(tmp_path / "v.html")])
    assert r.exit_code == 0 and json.loads((tmp_path / "v_files" / "view.json").read_text())["video"] is None


# --------------------------------------------------------------------------- raw.jsonl


def _raw(frame: int, **person_changes) -> dict:
    person = {"box": [10.0, 5.0, 20.0, 40.0], "score": 0.9, "crop_box": [5.0, 0.0, 30.0, 48.0],
              "focal": [500.0, 500.0], "princpt": [30.0, 24.0], "params": _params(frame)}
    person.update(person_changes)
    return {"frame": frame, "time": frame / 10, "size": [64, 48], "people": [person]}


def _short_body(frame):
    rec = _raw(frame)
    rec["people"][0]["params"]["body_pose"] = [0.0] * 5
    return rec


def _nan_cam(frame):
    rec = json.dumps(_raw(frame))
    return rec.replace('"cam_trans": [0.0, 0.0, 5.0]', '"cam_trans": [0.0, NaN, 5.0]')


DAMAGED_RAW = [
    (_short_body, "person 0: body_pose holds 5 numbers, not 63"),
    (lambda f: {"frame": f}, "no time"),
    (_nan_cam, "person 0: cam_trans holds NaN, not a finite number"),
    (lambda f: _raw(f, score="high"), 'person 0: score holds "high", not a number'),
    (lambda f: _raw(f, princpt=[1.0]), "person 0: princpt holds 1 numbers, not 2"),
    (lambda f: {**_raw(f), "people": None}, "people is not a list"),
]
DAMAGED_IDS = ["short-pose", "no-time", "nan", "score-str", "short-princpt", "people-null"]


@pytest.mark.parametrize(("damaged", "why"), DAMAGED_RAW, ids=DAMAGED_IDS)
def test_resume_drops_a_damaged_raw_record_and_what_follows(tmp_path, caplog, damaged, why):
    """`--resume` (start_raw -> truncate_to_complete_lines) keeps the records before a damaged one
    and regresses the rest again, with the warning it gives an unparseable line, now saying what is
    wrong: a body_pose of 5 numbers crashed pass 2 (smooth/track.py), `{"frame": 16}` KeyError: 'time'."""
    from wbcap.io.raw_records import start_raw

    raw = tmp_path / "raw.jsonl"
    good = [json.dumps(_raw(f)) + "\n" for f in range(2)]
    _write_lines(raw, [*(json.loads(g) for g in good), damaged(2), _raw(3)])
    with caplog.at_level(logging.WARNING, logger="wbcap.io.raw_records"):
        assert start_raw(raw, resume=True) == (2, 1)
    assert raw.read_text() == "".join(good)
    assert f"{raw}: line 3 is damaged ({why}; not a record wbcap wrote); it and the 1 line(s) after it are dropped" \
        in caplog.text, caplog.text


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_resume_cuts_no_file_a_link_planted_as_raw_jsonl_names(tmp_path, link):
    """A break-it trial: `--resume` of a run folder whose .wbcap/raw.jsonl was a link to another
    file cut that file to its complete records (emptied the user's .bashrc) before the append
    refused the link; a hard link was cut and refilled. Now refused before it is read or cut."""
    import os

    from wbcap.errors import InputError
    from wbcap.io.raw_records import start_raw

    secret = tmp_path / ".bashrc"
    secret.write_text("export PATH=~/bin:$PATH\n")
    raw = tmp_path / "run" / ".wbcap" / "raw.jsonl"
    raw.parent.mkdir(parents=True)
    (raw.symlink_to if link == "symbolic" else lambda target: os.link(target, raw))(secret)
    with pytest.raises(InputError, match="is a symbolic link" if link == "symbolic" else "has 1 other name"):
        start_raw(raw, resume=True)
    assert secret.read_text() == "export PATH=~/bin:$PATH\n"


@pytest.mark.parametrize(("damaged", "why"), DAMAGED_RAW, ids=DAMAGED_IDS)
def test_pass_2_names_a_damaged_raw_record(tmp_path, damaged, why):
    """Pass 2 reads raw.jsonl checked: a record damaged after pass 1 is one line naming the file and
    line, with --resume as the fix (it was a crash in pass 2, or a KeyError)."""
    from wbcap.errors import InputError
    from wbcap.track.collect import collect_tracks
    from wbcap.track.iou_tracker import TrackerConfig

    raw = tmp_path / "raw.jsonl"
    _write_lines(raw, [_raw(0), _raw(1), damaged(2), _raw(3)])
    with pytest.raises(InputError) as err:
        collect_tracks(raw, 10.0, TrackerConfig(min_length=1), "full")
    assert str(err.value) == (f"{raw}:3: a damaged record ({why}); rerun the run with resume=True, which "
                              "regresses the frames from that line on again")
    _write_lines(raw, [_raw(0), _raw(1), _raw(2), _raw(3)])  # (undamaged: one track of 4 frames)
    col = collect_tracks(raw, 10.0, TrackerConfig(min_length=1), "full")
    assert [len(t.frame) for t in col.per_track.values()] == [4]


# --------------------------------------------------------------------------- the view server


def _get(url: str, host: str | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={**(headers or {}), **({"Host": host} if host else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_view_server_answers_only_requests_addressed_to_it(tmp_path):
    """Host headers naming another host than 127.0.0.1, localhost, [::1] (any web page whose name
    a DNS rebinding points at 127.0.0.1) get 403 and no file: `Host: attacker.example:18790` got 200.
    Any port is taken (a tunnel forwarding another local port sends it). Ranges and the folder's
    bounds stay as they were."""
    from wbcap.view.server import ViewServer

    site = tmp_path / "site"
    site.mkdir()
    (site / "view.json").write_text('{"tracks": []}')
    (site / "video.mp4").write_bytes(bytes(range(256)))
    with ViewServer(site) as server:
        port = server.port
        url = f"http://127.0.0.1:{port}/view.json"
        for host in (None, f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}", "127.0.0.1",
                     "localhost:8000", "[::1]"):
            assert _get(url, host) == (200, b'{"tracks": []}'), host
        for host in ("attacker.example:18790", f"attacker.example:{port}", f"localhost.attacker.example:{port}",
                     "127.0.0.1.nip.io", "localhost:http", "[::1]x:80"):
            status, body = _get(url, host)
            assert status == 403 and b"view.json" not in body and b"tracks" not in body, host
            assert f"only requests to http://127.0.0.1:{port}/".encode() in body, body
        assert _get(f"http://127.0.0.1:{port}/video.mp4", headers={"Range": "bytes=10-19"}) == (206, bytes(range(10, 20)))
        assert _get(f"http://127.0.0.1:{port}/video.mp4", "evil:1", {"Range": "bytes=10-19"})[0] == 403
        assert _get(f"http://127.0.0.1:{port}/%2e%2e/site/view.json")[0] == 404


def test_a_render_mp4_cut_after_its_index_is_refused(tmp_path):
    """An MP4 whose index (moov, written first) survives a cut: the frames after the cut are
    listed but absent, so the page's video would not play; one line says how many there are."""
    import av
    import numpy as np

    from wbcap.errors import InputError
    from wbcap.view.manifest import video_frame_times

    path = tmp_path / "render.mp4"
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert video_frame_times(path) == pytest.approx([i / 10 for i in range(12)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError) as err:
        video_frame_times(path, "write it again")
    said = str(err.value)
    assert said.startswith(f"{path}: cut short (its index lists 12 frames, the file holds ") and said.endswith(
        "); write it again"), said


def test_a_records_numbers_are_checked_alike_on_the_quick_path_and_the_one_that_says_why():
    """damaged_numbers takes plain finite ints and floats without looking at each in Python (pass 2
    reads hundreds per person); anything else still gets its reason."""
    import numpy as np

    from wbcap.io.raw_records import damaged_numbers

    largest = float(np.finfo(np.float32).max)
    for good in ([0.25, -0.0, 3, -7], [largest, -largest], [0]):
        assert damaged_numbers({"v": good}, {"v": None}) is None, good
    for bad, why in (([0.5, True], "v holds true, not a number"), ([1.0, None], "v holds null, not a number"),
                     ([2.0, 10**400], "not a finite number"), ([largest * 1.01], "not a finite number"),
                     ([float("-inf"), 1.0], "v holds -Infinity, not a finite number"), ([], "v holds no numbers")):
        assert why in (damaged_numbers({"v": bad}, {"v": None}) or ""), bad
    assert damaged_numbers({"t": 1.5}, {"t": 0}) is None and damaged_numbers({"t": False}, {"t": 0}) == "t holds false, not a number"
