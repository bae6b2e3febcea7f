"""Cuts between shots end every track (wbcap.track.cuts; the raw records' ``change``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from wbcap.track.cuts import (
    COMPARE_WIDTH,
    CUT_THRESHOLD,
    ChangeMeter,
    CutFinder,
    Cuts,
    FrameChange,
    content_change,
    find_cuts,
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


def test_the_meter_gives_each_frame_its_change_and_its_changes_from_before_the_largest_jumps():
    """Frames 0.1 s apart: black, black, white (a flash), white, black (back), grey, grey. `back`
    compares each frame with the frames before the three largest changes of the last 0.5 s."""
    meter = ChangeMeter()
    grey = (128, 128, 128)
    pictures = [(0, 0, 0), (0, 0, 0), (255, 255, 255), (255, 255, 255), (0, 0, 0), grey, grey]
    got = [meter(i, i / 10, _flat(c)) for i, c in enumerate(pictures)]
    assert got[0] == FrameChange(None, (), ()) and got[1] == FrameChange(0.0, (), ())  # (no change before)
    assert got[2] == FrameChange(85.0, (85.0,), (0,))  # frame 1's change: compared with frame 0
    assert got[3] == FrameChange(0.0, (85.0, 85.0), (0, 1))
    assert got[4] == FrameChange(85.0, (0.0, 0.0, 85.0), (0, 1, 2))  # back to frames 0 and 1: the flash ended
    # grey: V 128 (a third of 128 from black, of 127 from white); the three largest of frames 1-4's
    # changes (85, 85, then the later 0) are those of 4, 2, 3: their frames before, 3, 1, 2
    assert got[5] == FrameChange(42.667, (42.667, 42.333, 42.333), (1, 2, 3))
    assert got[6] == FrameChange(0.0, (42.667, 42.333, 42.667), (1, 3, 4))  # (frame 5's 42.7 now among them)
    assert FrameChange.of_record(got[5].record() | {"frame": 5}) == got[5] and got[0].record() == {}
    assert got[5].came_back(42.5) == 3 and got[5].came_back(42.5, before=3) == 2 and got[5].came_back(42.0) is None


def test_the_meter_forgets_changes_older_than_half_a_second():
    meter = ChangeMeter()
    pictures = [(0, 0, 0)] * 2 + [(255, 255, 255)] * 8
    got = [meter(i, i / 10, _flat(c)) for i, c in enumerate(pictures)]
    # frame 2's jump (its frame before: 1) is out of the window from 0.7 s (0.5 s later)
    assert [g.back_to for g in got] == [(), (), (0,), (0, 1), (0, 1, 2), (1, 2, 3), (1, 3, 4), (3, 4, 5), (4, 5, 6),
                                        (5, 6, 7)]
    assert [g.back for g in got][6:] == [(85.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)]


def test_two_flashes_in_half_a_second_are_no_cut():
    """Press flashes in a burst (a review's case): white frames 10 and 13 at 30 fps in a grey shot
    whose exposure moves a little after each (100, then 90 and 95, then 92). The jump out of the first
    flash is about as large as the jump into it, so the frame before the largest jump alone was a
    flash frame: frame 14 was taken for a cut. With the three largest, each return finds grey again."""
    meter = ChangeMeter()
    values = {10: 255, 11: 90, 12: 95, 13: 255, **{i: 92 for i in range(14, 40)}}
    rows = [(i, i / 30, meter(i, i / 30, _flat((values.get(i, 100),) * 3))) for i in range(40)]
    assert find_cuts(rows) == Cuts(cuts=[], returns={11: 9, 13: 10, 14: 12}, flashes=[10])


def test_a_cutaway_with_a_cut_inside_it_is_no_cut_and_longer_ones_are_cuts():
    """A 0.4 s cutaway made of two shots (B 0.2 s, then C 0.2 s) back to the first picture A: neither
    jump is a cut, A's people go on (the last session's open case). The same two shots for 0.3 s each
    (back after 0.6 s) are three cuts; B then a lasting C, two."""
    # (C darker than B: a pure change of hue from red to blue is 60 of 180 round the hue circle, 20
    # in all, no cut; it was 40 before hue went round its circle)
    a, b, c = (100, 100, 100), (200, 40, 40), (20, 20, 100)

    def cuts(seq):
        meter = ChangeMeter()
        return find_cuts([(i, i / 10, meter(i, i / 10, _flat(rgb))) for i, rgb in enumerate(seq)])

    assert cuts([a] * 10 + [b] * 2 + [c] * 2 + [a] * 10) == Cuts(cuts=[], returns={14: 9}, flashes=[10, 12])
    assert cuts([a] * 10 + [b] * 3 + [c] * 3 + [a] * 10).cuts == [10, 13, 16]
    assert cuts([a] * 10 + [b] * 2 + [c] * 12).cuts == [10, 12]


def _changes(rows):
    """(index, time, FrameChange) rows from (change, back, back_to) tuples, 0.1 s apart."""
    return [(i, i / 10, FrameChange(*row)) for i, row in enumerate(rows)]


def test_a_candidate_is_a_cut_unless_the_picture_comes_back():
    calm = (2.0, 2.0, 0)  # (before the jump: the rows' `back` as the meter gives them, see above)
    # a cut at frame 3: the next frames stay far from frame 2 while frame 3 is within 0.5 s
    rows = [(None, None, None), calm, calm, (40.0, 41.0, 1), (2.0, 40.0, 2), (1.0, 40.0, 2), (2.0, 40.0, 2),
            (2.0, 40.0, 2), (2.0, 2.0, 6)]
    assert find_cuts(_changes(rows)) == Cuts(cuts=[3], returns={}, flashes=[])
    # a flash at frames 3-4: frame 5 comes back to frame 2 (the one before the jump)
    rows = [(None, None, None), calm, calm, (92.0, 92.0, 1), (0.0, 92.0, 2), (92.0, 1.0, 2), (2.0, 92.0, 4),
            (2.0, 92.0, 4)]
    assert find_cuts(_changes(rows)) == Cuts(cuts=[], returns={5: 2}, flashes=[3])
    assert find_cuts(_changes(rows), threshold=None) == Cuts(cuts=[], returns={}, flashes=[])


def test_a_cut_right_after_a_flash_is_still_a_cut():
    """The trial's clip: a white flash at 3.7-3.8 s, back at 3.9 s, and a real cut at 4.0 s (changes
    92.6, 92.7, 41.0): PySceneDetect's one-cut-per-0.5-s rule reported the flash and dropped the cut,
    and one id covered two people. Frames here at 0.1 s: the flash at 3-4, back at 5, the cut at 6."""
    calm = (2.0, 2.0, 0)
    rows = [(None, None, None), calm, calm, (92.6, 92.6, 1), (0.0, 92.6, 2), (92.7, 1.5, 2),
            (41.0, 92.0, 4), (2.0, 92.0, 4), (2.0, 92.0, 4), (2.0, 92.0, 4), (2.0, 40.0, 5), (2.0, 40.0, 5)]
    assert find_cuts(_changes(rows)) == Cuts(cuts=[6], returns={5: 2}, flashes=[3])


def test_two_cuts_close_together_and_a_short_cutaway():
    """Cuts 0.4 s apart into another picture each time are two cuts; a 0.4 s cutaway that returns to
    the first picture is not a cut: the first shot's people go on, the cutaway's end."""
    calm = (2.0, 2.0, 0)
    away = (2.0, 37.0, 2)  # (frames of the second picture: far from frame 2)
    rows = [(None, None, None), calm, calm, (37.0, 37.0, 1), away, away, away, (37.0, 35.0, 2), (2.0, 36.0, 6),
            (2.0, 36.0, 6)]
    assert find_cuts(_changes(rows)).cuts == [3, 7]
    rows[7] = (37.0, 3.0, 2)  # frame 7 is the first shot again
    assert find_cuts(_changes(rows)) == Cuts(cuts=[], returns={7: 2}, flashes=[3])


def test_a_threshold_just_under_a_cut_finds_it_between_shots_alike():
    """An HCI trial: two shots of one street (change 8.26 at the cut), `--cut-threshold 8`: the
    next shot's frames were 7.96 from the frame before the cut, under the threshold, and the cut
    was taken for a flash. The picture comes back only within half the jump as well."""
    calm = (1.0, 1.0, 0)
    rows = [(None, None, None), calm, calm, (8.26, 8.26, 1), (1.0, 7.96, 2), (1.0, 7.96, 2), (1.0, 8.1, 2),
            (1.0, 1.0, 5)]
    assert find_cuts(_changes(rows), threshold=8.0) == Cuts(cuts=[3], returns={}, flashes=[])
    rows[5] = (1.0, 4.0, 2)  # the first shot back, to within half the jump: a cutaway
    assert find_cuts(_changes(rows), threshold=8.0) == Cuts(cuts=[], returns={5: 2}, flashes=[3])
    assert CutFinder(threshold=8.0)(FrameChange(8.26, 7.96, 1))  # (pass 1: a return only within half too)
    assert not CutFinder(threshold=8.0)(FrameChange(8.26, 4.0, 1))


def test_cut_finder_without_looking_ahead():
    find = CutFinder(threshold=27.0)
    seen = [find(FrameChange(*c)) for c in [(None, None, None), (26.9, 26.9, 0), (27.0, 27.0, 0), (90.0, 0.5, 1),
                                             (90.0, 30.0, 2)]]
    assert seen == [False, False, True, False, True]  # (frame 3 comes back: not a cut)
    assert not CutFinder(threshold=None)(FrameChange(200.0, 200.0, 0))


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
    changes = [meter(f.index, f.time, f.image).change for f in open_frames(SHARED_MEDIA / "vtest.avi", max_frames=120)]
    last = open_frames(SHARED_MEDIA / "vtest.avi", start=119 / 10, max_frames=1)
    size = next(iter(last)).image.shape[1::-1]
    photo = cv2.resize(load_image(SHARED_MEDIA / "messi5.jpg"), size, interpolation=cv2.INTER_AREA)
    spliced = meter(120, 12.0, photo).change
    assert len(changes) == 120 and max(changes[1:]) < CUT_THRESHOLD / 2, max(changes[1:])  # (all 795 frames: 7.5 at most)
    assert spliced >= CUT_THRESHOLD, spliced


def test_on_vtest_a_flash_before_a_cut_and_a_short_cutaway():
    """The trial's edited clips, from real frames: vtest 0-39 with frames 37-38 white, then vtest
    542-581 (another moment of the same scene, tinted like a replay): the flash is no cut and the cut
    right after it is one. Then vtest 0-9, the picture shifted for 0.4 s (10-13), vtest 14-29 again:
    a cutaway, no cut; its return ends only the tracks begun during it."""
    pytest.importorskip("av")
    if not (SHARED_MEDIA / "vtest.avi").is_file():
        pytest.skip("../shared/media is absent")
    from wbcap.io.video_reader import open_frames

    first = [f.image for f in open_frames(SHARED_MEDIA / "vtest.avi", max_frames=40)]
    later = [f.image for f in open_frames(SHARED_MEDIA / "vtest.avi", start=54.2, max_frames=40)]
    pictures = [*first[:37], np.full_like(first[0], 255), np.full_like(first[0], 255), first[39],
                *[np.clip(img.astype(int) * (1.0, 0.7, 0.4), 0, 255).astype(np.uint8) for img in later]]

    def cuts_of(images):
        meter = ChangeMeter()
        return find_cuts([(i, i / 10, meter(i, i / 10, img)) for i, img in enumerate(images)])

    found = cuts_of(pictures)
    assert found.cuts == [40] and found.flashes == [37] and found.returns == {39: 36}
    shifted = [np.roll(img, (35, 172), axis=(0, 1)) for img in first[10:14]]
    found = cuts_of([*first[:10], *shifted, *first[14:30]])
    assert found.cuts == [] and found.flashes == [10] and found.returns == {14: 9}


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
        assert limit(0, np.array([a]), np.array([0.9]), change=FrameChange()) == [0]
        assert limit(1, np.array([a, b]), np.array([0.5, 0.9]), change=FrameChange(3.0, 3.0, 0)) == [0]  # followed
        assert limit(2, np.array([a, b]), np.array([0.5, 0.9]), change=FrameChange(80.0, 80.0, 0)) == want


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


def test_shots_all_shorter_than_min_track_keep_their_tracks(tmp_path):
    """--min-track is capped by the longest shot, as by the input's length: a 2-frame clip with a cut
    between its frames lost both its people (a break-it trial's GIF); a long shot beside a 1-frame
    one keeps the cap at --min-track."""
    from wbcap.track.collect import collect_tracks

    box = [[10.0, 10.0, 40.0, 90.0]]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(_record(f, box, c)) + "\n" for f, c in enumerate([None, 60.0])))
    col = collect_tracks(raw, 10.0, TrackerConfig(), "boxes:b.json")
    assert (col.cuts, col.min_length, col.kept, col.dropped) == ([1], 1, {0, 1}, {})
    changes = [None, 2.0, 2.0, 2.0, 60.0, 60.0]  # (shots of 4 frames, then 1 and 1)
    raw.write_text("".join(json.dumps(_record(f, box if f < 2 or f > 3 else [], c)) + "\n"
                           for f, c in enumerate(changes)))
    col = collect_tracks(raw, 10.0, TrackerConfig(), "boxes:b.json")
    assert col.cuts == [4, 5] and col.min_length == 3 and col.kept == set() and len(col.dropped) == 3


def test_pass_2_across_a_flash_keeps_the_ids_from_before_it(tmp_path):
    """A flash at frames 3-4 (back at 5): person A, seen throughout, keeps id 0; a box seen only during
    the flash (a ghost at x 200) ends where the picture comes back, so the person who then stands
    there gets a new id instead of the ghost's."""
    from wbcap.track.collect import collect_tracks

    a, there = [10.0, 10.0, 40.0, 90.0], [200.0, 10.0, 40.0, 90.0]
    fields = {0: {}, 1: {"change": 2.0}, 2: {"change": 2.0, "back": [2.0], "back_to": [0]},
              3: {"change": 92.0, "back": [92.0], "back_to": [1]}, 4: {"change": 0.0, "back": [92.0], "back_to": [2]},
              5: {"change": 92.0, "back": [1.0, 92.0], "back_to": [2, 3]}}
    fields |= {f: {"change": 2.0, "back": [92.0], "back_to": [4]} for f in range(6, 12)}
    boxes = {f: [a] + ([there] if f >= 3 else []) for f in range(12)}
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(_record(f, boxes[f], None) | fields[f]) + "\n" for f in range(12)))
    col = collect_tracks(raw, 10.0, TrackerConfig(min_length=1), "boxes:b.json")
    assert (col.cuts, col.flashes) == ([], [3])
    assert {t: tr.frame for t, tr in col.per_track.items()} == {0: list(range(12)), 1: [3, 4], 2: list(range(5, 12))}


def test_a_pause_where_a_flash_ends_ends_every_track_in_both_passes(tmp_path):
    """The flash of the test above, with a pause in the source before frame 5 (where the picture
    comes back): pass 2 ended only the tracks born during the flash, pass 1's PeopleLimit every
    track (a review). Both end every track there, A's too; pass 1's choice, fed the same times,
    says the same frame."""
    from wbcap.track.collect import collect_tracks
    from wbcap.track.iou_tracker import PeopleLimit

    a, there = [10.0, 10.0, 40.0, 90.0], [200.0, 10.0, 40.0, 90.0]
    fields = {0: {}, 1: {"change": 2.0}, 2: {"change": 2.0, "back": [2.0], "back_to": [0]},
              3: {"change": 92.0, "back": [92.0], "back_to": [1]}, 4: {"change": 0.0, "back": [92.0], "back_to": [2]},
              5: {"change": 92.0, "back": [1.0, 92.0], "back_to": [2, 3]}}
    fields |= {f: {"change": 2.0, "back": [92.0], "back_to": [4]} for f in range(6, 12)}
    times = {f: f / 30 + (0.3 if f >= 5 else 0.0) for f in range(12)}  # (30 fps: a pause over 0.217 s, in the flash's 0.5 s)
    boxes = {f: [a] + ([there] if f >= 3 else []) for f in range(12)}
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(_record(f, boxes[f], None) | fields[f] | {"time": times[f]}) + "\n"
                           for f in range(12)))
    col = collect_tracks(raw, 30.0, TrackerConfig(min_length=1), "boxes:b.json")
    assert (col.cuts, col.flashes, col.pauses) == ([], [3], [5])
    assert {t: tr.frame for t, tr in col.per_track.items()} == {0: list(range(5)), 1: [3, 4], 2: list(range(5, 12)),
                                                                3: list(range(5, 12))}
    limit = PeopleLimit(TrackerConfig(max_people=2))
    followed = []
    for f in range(12):
        limit(f, np.asarray(boxes[f]), np.full(len(boxes[f]), 0.9), change=FrameChange.of_record(fields[f]),
              time=times[f])
        followed.append(limit._tracker.active_ids)
    assert followed[4] != followed[5] and not set(followed[4]) & set(followed[5])  # (every track ended at 5)


def test_pass_2_gives_every_box_pass_1_kept_a_track_around_a_flash(tmp_path):
    """--max-people 1 and a flash at frames 3-4: pass 1 (which cannot look ahead) ended A's track
    there and kept B from frame 3; pass 2, which sees the flash end, applied the limit again and
    left 6 of B's boxes without a track (a review). It now tracks every kept box."""
    from wbcap.track.collect import collect_tracks
    from wbcap.track.cuts import FrameChange
    from wbcap.track.iou_tracker import PeopleLimit

    a, b = [10.0, 10.0, 40.0, 90.0], [100.0, 10.0, 40.0, 90.0]
    fields = {0: {}, 1: {"change": 2.0}, 2: {"change": 2.0, "back": [2.0], "back_to": [0]},
              3: {"change": 92.0, "back": [92.0], "back_to": [1]}, 4: {"change": 0.0, "back": [92.0], "back_to": [2]},
              5: {"change": 92.0, "back": [1.0, 92.0], "back_to": [2, 3]}}
    fields |= {f: {"change": 2.0, "back": [92.0], "back_to": [4]} for f in range(6, 14)}
    config = TrackerConfig(max_people=1)
    limit, lines = PeopleLimit(config), []
    for f in range(14):
        boxes, scores = [a, b][: 1 + (f >= 1)], [0.7, 0.9][: 1 + (f >= 1)]
        kept = limit(f, np.asarray(boxes), np.asarray(scores), change=FrameChange.of_record(fields[f]))
        rec = _record(f, [boxes[i] for i in kept], None) | fields[f]
        for person, i in zip(rec["people"], kept):
            person["score"] = scores[i]
        lines.append(json.dumps(rec) + "\n")
    (tmp_path / "raw.jsonl").write_text("".join(lines))
    col = collect_tracks(tmp_path / "raw.jsonl", 10.0, config, "auto")
    assert col.flashes == [3]
    assert sum(len(tr.frame) for tr in col.per_track.values()) == 14  # (every kept box in a track)


def test_pass_2_replays_the_people_pass_1_left_out(tmp_path):
    """--max-people 2: C leaves after frame 0, A is hidden at frames 6-8, and B, left out until C's
    place frees at frame 7, walks through A's place. Pass 1 tracked B unseen, so B took C's place
    with an id of its own and A kept his; pass 2, which saw only the kept boxes, gave B's boxes A's
    id from frame 8 (a review). The records keep every detection of frames where some were left
    out, and pass 2 tracks those unseen as pass 1 did: the same people under the same ids."""
    from wbcap.track.collect import collect_tracks
    from wbcap.track.iou_tracker import PeopleLimit

    config = TrackerConfig(max_people=2, min_length=1)
    limit, lines, chosen = PeopleLimit(config), [], {}
    for f in range(12):
        people = ([("A", [100.0, 0.0, 40.0, 90.0], 0.9)] if f < 6 or f >= 9 else []) + (
            [("C", [500.0, 0.0, 40.0, 90.0], 0.95)] if f < 1 else []) + [("B", [250.0 - 20 * f, 0.0, 40.0, 90.0], 0.5)]
        kept = limit(f, np.asarray([p[1] for p in people]), np.asarray([p[2] for p in people]))
        rec = _record(f, [people[i][1] for i in kept], None)
        for person, i in zip(rec["people"], kept):
            person["score"] = people[i][2]
        if len(kept) < len(people):  # (as RawWriter writes DetectionThread.detected)
            rec["detected"] = [[*p[1], p[2]] for p in people]
        lines.append(json.dumps(rec) + "\n")
        chosen[f] = [people[i][0] for i in kept]
    (tmp_path / "raw.jsonl").write_text("".join(lines))
    col = collect_tracks(tmp_path / "raw.jsonl", 10.0, config, "auto")
    who = {tid: {chosen[f][[p["box"] for p in json.loads(lines[f])["people"]].index(box)]
                 for f, box in zip(tr.frame, tr.box)} for tid, tr in col.per_track.items()}
    assert sorted(map(sorted, who.values())) == [["A"], ["B"], ["C"]], who
    assert {tid: tr.frame for tid, tr in col.per_track.items() if who[tid] == {"B"}}.popitem()[1] == list(range(7, 12))


def test_a_damaged_change_is_a_damaged_record(tmp_path):
    from wbcap.errors import InputError
    from wbcap.track.collect import collect_tracks

    raw = tmp_path / "raw.jsonl"
    for bad, why in (({"change": "x"}, 'change holds "x", not a number'),
                     ({"change": 3.0, "back": [1.0]}, "no back_to"),  # (was a TypeError in pass 2: a review)
                     ({"change": 3.0, "back": [1.0, 2.0], "back_to": [0]}, "back holds 2 numbers, not 1"),
                     ({"change": -1.0}, "change holds a negative or non-whole value"),
                     ({"change": 3.0, "back": [1.0], "back_to": [0.5]}, "back_to holds a value that is not a frame index")):
        raw.write_text(json.dumps(_record(0, [], None)) + "\n" + json.dumps(_record(1, [], None) | bad) + "\n")
        with pytest.raises(InputError) as err:
            collect_tracks(raw, 10.0, TrackerConfig(), "auto")
        assert f"raw.jsonl:2: a damaged record ({why})" in str(err.value), bad
    # --max-people's detected boxes: rows of 5 numbers, and the people's boxes among them
    box = [10.0, 10.0, 40.0, 90.0]
    for detected, why in (([[1.0, 2.0, 3.0]], "detected is not a list of [x, y, w, h, score] rows of finite numbers"),
                          ([[1.0, 2.0, 3.0, 4.0, 0.5]], f"person 0: box {json.dumps(box)} is not among detected"),
                          ([], f"person 0: box {json.dumps(box)} is not among detected"),  # (crashed pass 2: a review)
                          ([[*box, 0.5]], f"person 0: box {json.dumps(box)} is not among detected")):  # (its score 0.9)
        raw.write_text(json.dumps(_record(0, [box], None) | {"detected": detected}) + "\n")
        with pytest.raises(InputError, match=re.escape(f"raw.jsonl:1: a damaged record ({why})")):
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


def test_no_cuts_with_a_threshold_is_refused(tmp_path):
    """`--no-cuts --cut-threshold 20` ran with the threshold ignored (a trial); options that exclude
    each other are refused, as --smooth none --sigma 3 is."""
    from click.testing import CliRunner

    from wbcap.cli import cli
    from wbcap.testing.videos import write_video

    video = write_video(tmp_path / "clip.mp4", [_flat((90, 90, 90), h=64, w=64)] * 2)
    r = CliRunner().invoke(cli, ["run", str(video), "-o", str(tmp_path / "out"), "--no-cuts", "--cut-threshold", "20"])
    assert r.exit_code == 2 and "--no-cuts turns the search for cuts off and --cut-threshold sets it" in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # two CLI runs
def test_a_resume_without_no_cuts_names_it(tmp_path, micro_ckpt, body_dir):
    """With --max-people, the cut settings choose pass 1's boxes: a resume with other ones is refused,
    naming --no-cuts as such (it said "cut_threshold: not set in the run, 20.0 now": a review)."""
    from click.testing import CliRunner
    from test_cli_run import two_walkers

    from wbcap.cli import cli
    from wbcap.testing.videos import write_video

    frames, boxes = two_walkers(4)
    video = write_video(tmp_path / "walk.mp4", frames)
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    args = ["run", str(video), "-o", str(tmp_path / "out"), "--detector", f"boxes:{tmp_path / 'boxes.json'}",
            "--max-people", "1", "--no-render", "--checkpoint", str(micro_ckpt), "--body-models", str(body_dir),
            "--device", "cpu"]
    assert CliRunner().invoke(cli, [*args, "--no-cuts"]).exit_code == 0
    r = CliRunner().invoke(cli, [*args, "--resume", "--cut-threshold", "20"])
    assert r.exit_code == 2 and "different settings (--cut-threshold: not set in the run, 20.0 now; " \
        "--no-cuts: true in the run, not set now)" in r.output, r.output


def test_hue_is_compared_round_its_circle():
    """Near-grey reddish pixels whose hue flips between the two ends of OpenCV's 0-179 with the
    noise (a break-it trial's light fading to red: every frame a cut) change by 4 of hue, not 176."""
    from wbcap.track.cuts import content_change

    a = np.zeros((2, 2, 3), np.uint8) + np.array([178, 10, 100], np.uint8)
    b = np.zeros((2, 2, 3), np.uint8) + np.array([2, 12, 100], np.uint8)
    assert content_change(a, b) == pytest.approx((4 + 2 + 0) / 3)
    assert content_change(a, a) == 0.0
    assert content_change(np.full((2, 2, 3), [0, 0, 0], np.uint8), np.full((2, 2, 3), [90, 255, 255], np.uint8)) == 200.0
