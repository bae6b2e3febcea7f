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
    cv2.imwrite(str(photo.with_name("0001.png")), person_image(160, 200, seed=3)[:, :, ::-1])
    (tmp_path / "boxes.json").write_text(json.dumps({"0": [[20, 10, 120, 180]], "1": [[20, 10, 120, 180]]}))
    common = ["--checkpoint", micro_ckpt, "--body-models", body_dir, "--device", "cpu", "--no-render"]
    r = run("run", photo.parent, "-o", tmp_path / "run", "--detector", f"boxes:{tmp_path / 'boxes.json'}",
            "--min-track", "1", "--export", "npz", *common)
    assert r.exit_code == 0, r.output
    line, second = [json.loads(x) for x in (tmp_path / "run" / "params.jsonl").read_text().splitlines()]
    r = run("image", photo, "-o", tmp_path / "photos", "--bbox", "20,10,120,180", *common)
    assert r.exit_code == 0, r.output
    person = json.loads((tmp_path / "photos" / "0000" / "person_0" / "smplx_param.json").read_text())
    for key in ("lhand", "rhand", "face"):  # (to the bit: float64 widths, x + w the corner again)
        x, y, w, h = line[f"{key}_box"]
        assert [x, y, x + w, y + h] == person[f"{key}_bbox_xyxy"], key
    assert len({tuple(line[f"{k}_box"]) for k in ("lhand", "rhand", "face")}) == 3  # (three boxes, not one copied)
    raw, raw_second = [json.loads(x) for x in (tmp_path / "run" / ".wbcap" / "raw.jsonl").read_text().splitlines()]
    assert all(raw["people"][0][f"{k}_box"] == line[f"{k}_box"] for k in ("lhand", "rhand", "face"))
    r = run("export", tmp_path / "run", "--format", "csv", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    old = {k: v for k, v in line.items() if not k.endswith(("hand_box", "face_box"))}
    (tmp_path / "run" / "params.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(second) + "\n")
    r = run("export", tmp_path / "run", "--format", "csv", "--body-models", body_dir)
    assert r.exit_code == 0, r.output
    # a frame recorded by a run made before wbcap recorded them: its line again without them, the other's with
    for p in raw["people"]:
        for k in ("lhand", "rhand", "face"):
            del p[f"{k}_box"]
    (tmp_path / "run" / ".wbcap" / "raw.jsonl").write_text(json.dumps(raw) + "\n" + json.dumps(raw_second) + "\n")
    r = run("run", photo.parent, "-o", tmp_path / "run", "--detector", f"boxes:{tmp_path / 'boxes.json'}",
            "--min-track", "1", "--export", "npz", "--resume", *common)
    assert r.exit_code == 0, r.output
    again, second_again = [json.loads(x) for x in (tmp_path / "run" / "params.jsonl").read_text().splitlines()]
    assert again.keys() == old.keys() and second_again == second


def test_a_tracks_rows_keep_the_boxes_they_have():
    """Rows recorded without boxes (frames of a run made before them, resumed) are NaN rows, which
    params.jsonl writes without the keys; the others keep theirs (all were dropped for the track)."""
    from wbcap.smooth.track import part_box_rows

    box = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.5]]
    assert part_box_rows([None, None]) is None
    rows = part_box_rows([None, box])
    assert rows.dtype == np.float64 and np.isnan(rows[0]).all() and rows[1].tolist() == box
