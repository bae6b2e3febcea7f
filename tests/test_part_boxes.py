"""The network's hand and face boxes in a video's params.jsonl (`lhand_box`, `rhand_box`,
`face_box`): for gesture and face studies, each person-frame's boxes in the picture's pixels, as
`wbcap image` writes a photo's (`*_bbox_xyxy` in smplx_param.json) from the same network."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from wbcap.cli import cli
from wbcap.testing.images import person_image


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_a_runs_hand_and_face_boxes_are_a_photos(tmp_path, micro_ckpt, body_dir):
    """One picture through `wbcap run` (a one-image sequence) and `wbcap image` with the same box:
    params.jsonl's lhand_box, rhand_box and face_box (x, y, w, h) are smplx_param.json's corners;
    raw.jsonl keeps them; `wbcap export` reads such a file; a params.jsonl without them (a run made
    before) still exports."""
    photo = tmp_path / "frames" / "0000.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), person_image(160, 200, seed=3)[:, :, ::-1])
    (tmp_path / "boxes.json").write_text(json.dumps({"0": [[20, 10, 120, 180]]}))
    common = ["--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu", "--no-render"]
    r = run("run", photo.parent, "-o", tmp_path / "run", "--detector", f"boxes:{tmp_path / 'boxes.json'}",
            "--min-track", "1", "--export", "npz", *common)
    assert r.exit_code == 0, r.output
    (line,) = [json.loads(x) for x in (tmp_path / "run" / "params.jsonl").read_text().splitlines()]
    r = run("image", photo, "-o", tmp_path / "photos", "--bbox", "20,10,120,180", *common)
    assert r.exit_code == 0, r.output
    person = json.loads((tmp_path / "photos" / "0000" / "person_0" / "smplx_param.json").read_text())
    for key in ("lhand", "rhand", "face"):
        x1, y1, x2, y2 = person[f"{key}_bbox_xyxy"]
        np.testing.assert_allclose(line[f"{key}_box"], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
    assert len({tuple(line[f"{k}_box"]) for k in ("lhand", "rhand", "face")}) == 3  # (three boxes, not one copied)
    (raw,) = [json.loads(x) for x in (tmp_path / "run" / ".wbcap" / "raw.jsonl").read_text().splitlines()]
    assert all(raw["people"][0][f"{k}_box"] == line[f"{k}_box"] for k in ("lhand", "rhand", "face"))
    r = run("export", tmp_path / "run", "--format", "csv", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    old = {k: v for k, v in line.items() if not k.endswith(("hand_box", "face_box"))}
    (tmp_path / "run" / "params.jsonl").write_text(json.dumps(old) + "\n")
    r = run("export", tmp_path / "run", "--format", "csv", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    # a run made before wbcap recorded them: its pass 2 again writes lines without them
    for p in raw["people"]:
        for k in ("lhand", "rhand", "face"):
            del p[f"{k}_box"]
    (tmp_path / "run" / ".wbcap" / "raw.jsonl").write_text(json.dumps(raw) + "\n")
    r = run("run", photo.parent, "-o", tmp_path / "run", "--detector", f"boxes:{tmp_path / 'boxes.json'}",
            "--min-track", "1", "--export", "npz", "--resume", *common)
    assert r.exit_code == 0, r.output
    (again,) = [json.loads(x) for x in (tmp_path / "run" / "params.jsonl").read_text().splitlines()]
    assert again.keys() == old.keys()
