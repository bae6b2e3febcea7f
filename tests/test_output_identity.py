"""The comparator of benchmarks/output_identity.py on fabricated output folders (no pipeline run):
identical folders pass, a number moved by 1e-5 fails and by 1e-7 passes, a file on one side only
fails (a new one passes with allow_new), and each file kind (JSON, JSONL, NPZ, OBJ, image, other)
is read as such."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "output_identity.py"



@pytest.fixture(scope="module")
def oi():
    spec = importlib.util.spec_from_file_location("output_identity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def fabricate(root: Path, eps: float = 0.0) -> Path:
    """An output folder like `wbcap run`'s, with ``eps`` added to one number of each numeric file."""
    (root / "meshes" / "0").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"fps": 0.5 + eps, "source": "a.avi", "out": str(root), "tracks": [0]}))
    lines = [{"frame": i, "track": 0, "body_pose": [0.1 * i, 0.2 + (eps if i == 1 else 0.0)]} for i in range(3)]
    (root / "params.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    poses = np.linspace(0, 1, 12).reshape(3, 4)
    poses[2, 3] += eps
    np.savez(root / "track_0.npz", poses=poses, gender=np.array("neutral"), valid=np.array([True, False, True]))
    (root / "meshes" / "0" / "000000.obj").write_text(f"v 0.5 {0.25 + eps:.9f} -0.75\nv 1 2 3\nf 1 2 1\n")
    Image.fromarray(np.full((4, 6, 3), 100, np.uint8)).save(root / "render.png")
    (root / "notes.txt").write_text("done\n")
    return root


def verdicts(rows) -> dict[str, str]:
    return {r.name: r.verdict for r in rows}


def test_identical_folders_pass(oi, tmp_path):
    a, b = fabricate(tmp_path / "a"), fabricate(tmp_path / "b")  # meta.json names its own folder: normalised
    rows = oi.compare_trees(a, b)
    assert set(verdicts(rows).values()) == {"same"} and len(rows) == 6
    assert oi.failures(rows) == []


@pytest.mark.parametrize("eps, verdict", [(1e-5, "DIFF"), (1e-7, "close")])
def test_numbers_beyond_tolerance_fail(oi, tmp_path, eps, verdict):
    a, b = fabricate(tmp_path / "a"), fabricate(tmp_path / "b", eps=eps)
    rows = oi.compare_trees(a, b, tol=1e-6)
    got = verdicts(rows)
    for name in ("meta.json", "params.jsonl", "track_0.npz", "meshes/0/000000.obj"):
        assert got[name] == verdict, name
        assert next(r.diff for r in rows if r.name == name) == pytest.approx(eps, rel=1e-3)
    notes = {r.name: r.note for r in rows}
    assert notes["params.jsonl"] == "largest at line 2.body_pose[1], value 0.2"
    assert notes["meta.json"] == "largest at fps, value 0.5"
    assert notes["track_0.npz"] == "largest at poses, value 1"
    assert notes["meshes/0/000000.obj"] == "largest at line 1, value 0.25"
    assert bool(oi.failures(rows)) == (verdict == "DIFF")


def test_far_vertices_compared_relative_to_their_size(oi, tmp_path):
    """28 m from the camera one float32 step is 1.9e-6 m: within 1e-6 relative; 1e-4 m is not."""
    for step, verdict in ((np.spacing(np.float32(28.0)), "close"), (1e-4, "DIFF")):
        a, b = tmp_path / f"a{step}", tmp_path / f"b{step}"
        for root, dz in ((a, 0.0), (b, float(step))):
            root.mkdir()
            (root / "output.obj").write_text(f"v 0.1 0.2 {28.0 + dz:.9f}\nf 1 1 1\n")
        assert verdicts(oi.compare_trees(a, b, tol=1e-6))["output.obj"] == verdict


def test_missing_and_new_files(oi, tmp_path):
    a, b = fabricate(tmp_path / "a"), fabricate(tmp_path / "b")
    (b / "track_0.npz").unlink()
    (b / "track_0.glb").write_bytes(b"glTF")
    rows = oi.compare_trees(a, b)
    got = verdicts(rows)
    assert got["track_0.npz"] == "only in base" and got["track_0.glb"] == "new"
    assert [r.name for r in oi.failures(rows, allow_new=True)] == ["track_0.npz"]
    assert [r.name for r in oi.failures(rows)] == ["track_0.glb", "track_0.npz"]
    shutil.copy(a / "track_0.npz", b / "track_0.npz")
    assert [r.name for r in oi.failures(oi.compare_trees(a, b), allow_new=True)] == []


def test_structure_pixels_and_bytes(oi, tmp_path):
    a, b = fabricate(tmp_path / "a"), fabricate(tmp_path / "b")
    (b / "params.jsonl").write_text((b / "params.jsonl").read_text().replace('"track": 0', '"track": 0, "id": 0', 1))
    np.savez(b / "track_0.npz", poses=np.zeros((3, 4), np.float32), gender=np.array("neutral"), valid=np.ones(3, bool))
    Image.fromarray(np.full((4, 6, 3), 103, np.uint8)).save(b / "render.png")
    (b / "notes.txt").write_text("not done\n")
    rows = {r.name: r for r in oi.compare_trees(a, b)}
    assert rows["params.jsonl"].verdict == "DIFF" and rows["params.jsonl"].note == "line 1: keys ['id'] on one side only"
    assert rows["track_0.npz"].verdict == "DIFF" and "float64[3, 4] vs float32[3, 4]" in rows["track_0.npz"].note
    # a render that differs by pixels is reported, not failed
    assert rows["render.png"].verdict == "info" and rows["render.png"].diff == 3
    assert rows["notes.txt"].verdict == "DIFF"
    assert {r.name for r in oi.failures(list(rows.values()))} == {"params.jsonl", "track_0.npz", "notes.txt"}


def test_flags_one_side_lacks_are_left_out(oi):
    argv = ["run", "v.avi", "--max-frames", "8", "--obj", "--detector-model", "y.onnx", "--no-render", "-q"]
    kept, dropped = oi.common_args(argv, {"--max-frames", "--no-render"})
    assert kept == ["run", "v.avi", "--max-frames", "8", "--no-render", "-q"] and dropped == ["--obj", "--detector-model"]
