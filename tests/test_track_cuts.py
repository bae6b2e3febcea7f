"""Cuts between shots end every track (wbcap.track.cuts; the raw records' ``change``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wbcap.track.cuts import (
    COMPARE_WIDTH,
    CUT_THRESHOLD,
    ChangeMeter,
    CutFinder,
    content_change,
    hsv_thumbnail,
)
from wbcap.track.iou_tracker import IoUTracker, PeopleLimit, TrackerConfig

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def _flat(rgb, h=90, w=160) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (h, w, 3)).copy()


def test_content_change_known_answers():
    """PySceneDetect's ContentDetector score: the mean of |dH|, |dS|, |dV| (OpenCV 8-bit HSV)."""
    black, white, red = _flat((0, 0, 0)), _flat((255, 255, 255)), _flat((255, 0, 0))
    assert content_change(hsv_thumbnail(black), hsv_thumbnail(black)) == 0.0
    assert content_change(hsv_thumbnail(black), hsv_thumbnail(white)) == pytest.approx(255 / 3)  # V only
    assert content_change(hsv_thumbnail(white), hsv_thumbnail(red)) == pytest.approx(255 / 3)  # S only (hue 0)
    half = white.copy()
    half[:, :80] = 0  # half the picture changes from black: a third of 255 on half the pixels
    assert content_change(hsv_thumbnail(black), hsv_thumbnail(half)) == pytest.approx(255 / 6)
    assert content_change(hsv_thumbnail(black), hsv_thumbnail(_flat((0, 0, 0), h=80))) == 255.0  # another size


def test_frames_are_compared_at_a_fixed_width_and_small_ones_as_they_are():
    assert hsv_thumbnail(_flat((10, 200, 30), h=1080, w=1920)).shape == (144, COMPARE_WIDTH, 3)
    assert hsv_thumbnail(_flat((10, 200, 30), h=1080, w=1920)).dtype == np.uint8
    assert hsv_thumbnail(_flat((10, 200, 30), h=100, w=200)).shape == (100, 200, 3)


def test_the_meter_gives_each_frame_its_change_from_the_one_before():
    meter = ChangeMeter()
    frames = [_flat((0, 0, 0)), _flat((0, 0, 0)), _flat((255, 255, 255)), _flat((255, 255, 255))]
    assert [meter(f) for f in frames] == [None, 0.0, 85.0, 0.0]


def test_cut_finder_threshold_gap_and_unknown_changes():
    find = CutFinder(threshold=27.0, min_shot_seconds=0.5)
    # (time, change): below, at the threshold, again within 0.5 s (a flash: not a second cut),
    # unknown (a record written before changes were measured), 0.5 s after the last cut
    seen = [find(t, c) for t, c in [(0.0, None), (0.1, 26.9), (0.2, 27.0), (0.5, 90.0), (0.6, None), (0.7, 30.0)]]
    assert seen == [False, False, True, False, False, True]
    assert not any(CutFinder(threshold=None)(t, 200.0) for t in (0.0, 1.0, 2.0))


def test_vtest_has_no_cut_and_a_spliced_photo_is_one():
    """Real footage: OpenCV's vtest.avi (a static camera, people walking) changes far less than the
    threshold from frame to frame; messi5.jpg spliced in after it is a cut."""
    pytest.importorskip("av")
    if not (SHARED_MEDIA / "vtest.avi").is_file() or not (SHARED_MEDIA / "messi5.jpg").is_file():
        pytest.skip("../shared/media is absent")
    import cv2

    from wbcap.io.images import load_image
    from wbcap.io.video_reader import open_frames

    meter = ChangeMeter()
    changes = [meter(f.image) for f in open_frames(SHARED_MEDIA / "vtest.avi", max_frames=120)]
    last = open_frames(SHARED_MEDIA / "vtest.avi", start=119 / 10, max_frames=1)
    size = next(iter(last)).image.shape[1::-1]
    photo = cv2.resize(load_image(SHARED_MEDIA / "messi5.jpg"), size, interpolation=cv2.INTER_AREA)
    spliced = meter(photo)
    assert len(changes) == 120 and max(changes[1:]) < CUT_THRESHOLD / 2, max(changes[1:])  # (all 795 frames: 8.9 at most)
    assert spliced >= CUT_THRESHOLD, spliced


def test_end_tracks_starts_new_ids_for_the_same_boxes():
    tracker = IoUTracker(TrackerConfig(min_length=1))
    box = np.array([[10.0, 10.0, 50.0, 100.0]])
    assert tracker.update(0, box) == [0] and tracker.update(1, box) == [0]
    tracker.end_tracks()
    assert tracker.active_ids == [] and tracker.update(2, box) == [1]
    assert tracker.finalize() == {0, 1}


def test_people_limit_chooses_afresh_after_a_cut():
    """With --max-people 1 the person followed stays chosen over a higher-scoring newcomer, but
    across a cut the one followed is gone: the best box of the new shot is chosen."""
    a, b = [10.0, 10.0, 50.0, 100.0], [200.0, 10.0, 50.0, 100.0]
    for cut_threshold, want in ((CUT_THRESHOLD, [1]), (None, [0])):
        limit = PeopleLimit(TrackerConfig(max_people=1, cut_threshold=cut_threshold))
        assert limit(0, np.array([a]), np.array([0.9]), time=0.0, change=None) == [0]
        assert limit(1, np.array([a, b]), np.array([0.5, 0.9]), time=0.1, change=3.0) == [0]  # followed
        assert limit(2, np.array([a, b]), np.array([0.5, 0.9]), time=0.2, change=80.0) == want


def _record(frame: int, boxes: list[list[float]], change: float | None) -> dict:
    person = {"score": 0.9, "crop_box": [0, 0, 1, 1], "focal": [500.0, 500.0], "princpt": [80.0, 60.0],
              "params": {"root_pose": [0.0, 0.0, 0.0]}}
    rec = {"frame": frame, "time": frame / 10, "size": [160, 120], "people": [{**person, "box": b} for b in boxes]}
    return rec if change is None else {**rec, "change": change}


def test_pass_2_ends_every_track_at_a_cut(tmp_path):
    """The same two boxes in frames 0-9, a cut at frame 5 (change 60): four tracks, the frame
    listed; without cuts (cut_threshold None) or in a run made before changes were recorded: two."""
    from wbcap.track.collect import collect_tracks

    boxes = [[10.0, 10.0, 40.0, 90.0], [100.0, 10.0, 40.0, 90.0]]
    changes = [None, 2.0, 1.5, 3.0, 2.0, 60.0, 2.5, 1.0, 2.0, 3.0]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(_record(f, boxes, c)) + "\n" for f, c in enumerate(changes)))
    col = collect_tracks(raw, 10.0, TrackerConfig(), "boxes:b.json")
    assert col.cuts == [5]
    assert {t: tr.frame for t, tr in col.per_track.items()} == {0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 3, 4],
                                                                2: [5, 6, 7, 8, 9], 3: [5, 6, 7, 8, 9]}
    assert col.kept == {0, 1, 2, 3}
    col = collect_tracks(raw, 10.0, TrackerConfig(cut_threshold=None), "boxes:b.json")
    assert col.cuts == [] and sorted(col.per_track) == [0, 1]
    raw.write_text("".join(json.dumps(_record(f, boxes, None)) + "\n" for f in range(10)))  # an older run's records
    assert sorted(collect_tracks(raw, 10.0, TrackerConfig(), "boxes:b.json").per_track) == [0, 1]


def test_a_damaged_change_is_a_damaged_record(tmp_path):
    from wbcap.errors import InputError
    from wbcap.track.collect import collect_tracks

    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps(_record(0, [], None)) + "\n" + json.dumps(_record(1, [], None) | {"change": "x"}) + "\n")
    with pytest.raises(InputError, match=r"raw\.jsonl:2: a damaged record \(change holds \"x\", not a number\)"):
        collect_tracks(raw, 10.0, TrackerConfig(), "auto")


def test_world_falls_back_to_the_camera_frame_across_cuts(caplog):
    from wbcap.world.estimate import ground_tracks

    result = ground_tracks({}, None, "cpu", None, cuts=[1.25, 4.0])
    assert result.frame is None and result.tracks == {}
    assert result.reason.startswith("the video cuts between shots (2 cut(s), at 1.25 s, 4.00 s), each with its own camera")
    assert "writing the camera frame instead" in caplog.text


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match=r"cut_threshold must be in \(0, 255\] or None, got 0"):
        TrackerConfig(cut_threshold=0)
    with pytest.raises(ValueError, match=r"cut_threshold must be in \(0, 255\] or None, got 300"):
        TrackerConfig(cut_threshold=300)


@pytest.mark.slow  # three runs of the CLI (the fast loop has the units above)
def test_run_ends_the_tracks_at_a_cut_and_resumes_to_the_same_records(tmp_path, micro_ckpt, body_dir):
    """An edited clip: shot 1 (frames 0-4, grey) and shot 2 (frames 5-9, a red set) with people where
    the first shot's people stood (the same boxes). Without cuts their ids carried over; now the
    tracks end at 0.5 s, meta.json lists the cut, --no-cuts keeps the old behaviour, and a run killed
    just before the cut resumes to the same records (the frame before is decoded again to measure it)."""
    import shutil

    from click.testing import CliRunner
    from test_cli_run import two_walkers

    from wbcap.cli import cli
    from wbcap.testing.videos import write_video

    frames, boxes = two_walkers(10)
    for img in frames[5:]:
        grey = (img == 90).all(axis=2)
        img[grey] = (200, 40, 40)  # the second shot's set
    video = write_video(tmp_path / "edited.mp4", frames)
    box_file = tmp_path / "boxes.json"
    box_file.write_text(json.dumps(boxes))
    args = ["--detector", f"boxes:{box_file}", "--no-render", "--checkpoint", str(micro_ckpt), "--body-models",
            str(body_dir), "--device", "cpu"]

    def run(out, *more):
        r = CliRunner().invoke(cli, ["run", str(video), "-o", str(out), *args, *more], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        lines = [json.loads(x) for x in (out / "params.jsonl").read_text().splitlines()]
        return {t: sorted(x["frame"] for x in lines if x["track"] == t) for t in sorted({x["track"] for x in lines})}

    full = tmp_path / "full"
    assert run(full) == {0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 3, 4], 2: [5, 6, 7, 8, 9], 3: [5, 6, 7, 8, 9]}
    assert json.loads((full / "meta.json").read_text())["cuts"] == [0.5]
    raw = [json.loads(x) for x in (full / ".wbcap" / "raw.jsonl").read_text().splitlines()]
    assert "change" not in raw[0] and raw[5]["change"] >= CUT_THRESHOLD > max(r["change"] for r in raw[1:5] + raw[6:])
    assert run(tmp_path / "one_shot", "--no-cuts") == {0: list(range(10)), 1: list(range(10))}

    part = tmp_path / "part"  # killed after frame 4: the cut frame is the first one the resume regresses
    shutil.copytree(full, part)
    lines = (part / ".wbcap" / "raw.jsonl").read_text().splitlines(keepends=True)
    (part / ".wbcap" / "raw.jsonl").write_text("".join(lines[:5]))
    for p in [*part.glob("track_*"), part / "params.jsonl", part / "meta.json"]:
        p.unlink()
    assert run(part, "--resume") == run(tmp_path / "again")
    resumed = [json.loads(x) for x in (part / ".wbcap" / "raw.jsonl").read_text().splitlines()]
    assert [r.get("change") for r in resumed] == [r.get("change") for r in raw]
