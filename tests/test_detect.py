"""wbcap.detect: user boxes, box files, the HOG people detector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wbcap.detect.base import Detection, Detector
from wbcap.detect.boxes import (
    FullImageDetector,
    box_outside_image,
    load_boxes_json,
    parse_bbox,
)
from wbcap.detect.hog import HOGDetector
from wbcap.errors import InputError
from wbcap.track.iou_tracker import iou_matrix

# The footballer in messi5.jpg, measured on the image (outstretched hand to kicking foot,
# hair to standing foot): x 70..457, y 62..337.
PLAYER_BOX = (70.0, 62.0, 387.0, 275.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10,20,30,40", (10.0, 20.0, 30.0, 40.0)),
        (" 1.5, -2 ,3e1,4 ", (1.5, -2.0, 30.0, 4.0)),
        ("0 0 640 480", (0.0, 0.0, 640.0, 480.0)),
    ],
)
def test_parse_bbox_good(text: str, expected: tuple[float, ...]) -> None:
    assert parse_bbox(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10,20,30", "expected 4 numbers"),
        ("10,20,30,40,50", "expected 4 numbers"),
        ("a,b,c,d", "expected 4 numbers"),
        ("", "expected 4 numbers"),
        ("1,2,nan,4", "expected 4 numbers"),
        ("10,20,0,40", "must be > 0"),
        ("10,20,30,-1", "must be > 0"),
        ("0,0,1e39,10", "every number must be finite and within 16,777,216 pixels"),
        ("0,0,-1e39,10", "every number must be finite and within 16,777,216 pixels"),  # (the range before the size)
    ],
)
def test_parse_bbox_bad(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_bbox(text)
    assert "\n" not in str(err.value)


def test_load_boxes_json_both_entry_forms(tmp_path: Path) -> None:
    path = tmp_path / "boxes.json"
    path.write_text(
        json.dumps(
            {
                "0001.jpg": [[1, 2, 3, 4], [5, 6, 7, 8]],
                "run/0002.jpg": [{"bbox": [10, 20, 30, 40], "score": 0.2},
                                 {"bbox": [0, 0, 5, 5], "score": 0.9}],
                "0003.jpg": [],
            }
        )
    )
    table = load_boxes_json(path)
    assert set(table) == {"0001.jpg", "0002.jpg", "0003.jpg"}
    assert table["0001.jpg"] == [
        Detection((1.0, 2.0, 3.0, 4.0), 1.0),
        Detection((5.0, 6.0, 7.0, 8.0), 1.0),
    ]
    assert [d.score for d in table["0002.jpg"]] == [0.9, 0.2]  # sorted by score
    assert table["0002.jpg"][1].box == (10.0, 20.0, 30.0, 40.0)
    assert table["0003.jpg"] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[[1, 2, 3, 4]]", r'must be a JSON object \{"photo.jpg": .*\(wbcap image\) or \{"<frame index>": .*\(wbcap run\); fix it'),
        ('{"a.jpg": [[1, 2, 3]]}', "'a.jpg' box 0: bbox must be 4 numbers"),
        ('{"a.jpg": [[1, 2, 0, 4]]}', "width and height must be > 0"),
        ('{"a.jpg": [{"score": 1}]}', 'without "bbox"'),
        ('{"a.jpg": [{"bbox": [1, 2, 3, 4], "score": "high"}]}', '"score" must be a number'),
        ('{"a.jpg": [[1, 2, 3, 4], [1, 2, 1e39, 4]]}', "'a.jpg' box 1: every number must be finite and within 16,777,216 pixels"),
        ('{"a.jpg": [[NaN, 2, 3, 4]]}', "'a.jpg' box 0: every number must be finite and within 16,777,216 pixels"),
        ('{"a.jpg": [[1, 2, 3, 1' + "0" * 400 + "]]}", "'a.jpg' box 0: every number must be finite and within"),
        ('{"a.jpg": [{"bbox": [1, 2, 3, 4], "score": 1' + "0" * 400 + "}]}", '"score" must be finite'),
        ('{"a.jpg": {"bbox": [1, 2, 3, 4]}}', "must be a list of boxes"),
        ('{"x/a.jpg": [], "y/a.jpg": []}', "two entries for file name 'a.jpg'"),
    ],
)
def test_load_boxes_json_bad(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad_boxes.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        load_boxes_json(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_load_boxes_json_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no_such.json: no such box file"):
        load_boxes_json(tmp_path / "no_such.json")


def test_a_box_file_that_is_a_pipe_or_a_loop_of_links_is_one_line(tmp_path: Path) -> None:
    """A named pipe waited forever for a writer; a loop of links crashed with a log (a hostile-input
    trial); /dev/null is no box file either. The same for a YOLOX model file."""
    import os

    from wbcap.detect.yolox import check_model_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for path, said in ((fifo, "is not a regular file (a pipe, device or socket)"),
                       (Path("/dev/null"), "is not a regular file (a pipe, device or socket)"),
                       (tmp_path / "loop1", "cannot be read (Too many levels of symbolic links)")):
        with pytest.raises(InputError) as err:
            load_boxes_json(path)
        assert str(err.value) == f"{path}: {said}; pass a JSON box file"
        with pytest.raises(InputError) as err:
            check_model_file(path)
        assert str(err.value).startswith(f"YOLOX model {path} {said}; ")


def test_check_box_takes_lists_arrays_and_tensors() -> None:
    """Every form of 4 numbers a user's code holds: list, tuple, array, tensor, torch.Size (a
    tuple); a tensor of another length gets the rule's one line; a size of 0 only when allowed."""
    import torch

    from wbcap.detect.boxes import check_box

    want = (0.0, 0.0, 120.0, 160.0)
    for value in ([0, 0, 120, 160], (0, 0, 120, 160), np.array(want, np.float32), torch.tensor(want),
                  torch.tensor(want, requires_grad=True), torch.Size([0, 0, 120, 160])):
        got = check_box(value, "box")
        assert got == want and all(type(v) is float for v in got), type(value)
    with pytest.raises(ValueError, match=r"box must be 4 numbers \[x, y, w, h\]"):
        check_box(torch.zeros(5), "box")
    with pytest.raises(ValueError, match="box width and height must be > 0"):
        check_box([0, 0, 0, 10], "box")
    assert check_box([0, 0, 0, 10], "box", positive_size=False) == (0.0, 0.0, 0.0, 10.0)


def test_box_outside_image() -> None:
    assert not box_outside_image((10, 10, 5, 5), 100, 50)
    assert not box_outside_image((-10, -10, 15, 15), 100, 50)  # partly inside
    assert box_outside_image((100, 10, 5, 5), 100, 50)  # right of the image
    assert box_outside_image((-5, 10, 5, 5), 100, 50)  # touches the left edge only
    assert box_outside_image((10, 50, 5, 5), 100, 50)  # below
    assert box_outside_image((10, -20, 5, 19.5), 100, 50)  # above


def test_full_image_detector() -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    full = FullImageDetector()
    assert isinstance(full, Detector)
    assert full(image) == [Detection((0.0, 0.0, 40.0, 30.0), 1.0)]


def test_detection_helpers() -> None:
    det = Detection((1.0, 2.0, 3.0, 4.0), 0.5)
    assert det.xyxy == (1.0, 2.0, 4.0, 6.0) and det.area == 12.0


def test_hog_finds_nothing_on_blank_or_tiny_images() -> None:
    hog = HOGDetector()
    assert isinstance(hog, Detector)
    assert hog(np.full((342, 548, 3), 128, np.uint8)) == []
    assert hog(np.zeros((1, 1, 3), np.uint8)) == []
    with pytest.raises(InputError, match="uint8 RGB"):
        hog(np.zeros((10, 10), np.uint8))


def _player_iou(dets: list[Detection]) -> np.ndarray:
    """IoU of each detection with :data:`PLAYER_BOX`, ``(len(dets),)``."""
    return iou_matrix([d.box for d in dets], [PLAYER_BOX])[:, 0]


def _messi(shared_dir: Path) -> np.ndarray:
    path = shared_dir / "media" / "messi5.jpg"
    if not path.is_file():
        pytest.skip(f"shared sample media not present ({path})")
    from wbcap.io.images import load_image

    return load_image(path)


@pytest.fixture
def one_opencv_thread():
    """OpenCV's thread pool held to one thread for the test (restored after)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


def _figures() -> np.ndarray:
    from wbcap.testing.images import person_image

    return np.concatenate([person_image(160, 300), person_image(130, 300)[:, ::-1]], axis=1)


def test_hog_levels_give_opencvs_windows_each_with_its_own_weight(one_opencv_thread) -> None:
    """The pyramid searched level by level (hog._octave_scales, _level_windows) gives the windows
    and weights of OpenCV's detectMultiScale on one octave, run in one thread, where its race
    (windows and weights appended under two locks) cannot happen."""
    import cv2

    from wbcap.detect import hog as hog_mod

    img = _figures()
    hog = HOGDetector()._descriptor()
    rects, weights = hog.detectMultiScale(img, hitThreshold=-1.5, winStride=(8, 8), padding=(8, 8), scale=1.05,
                                          groupThreshold=0)
    want = sorted(zip(map(tuple, np.asarray(rects).reshape(-1, 4).tolist()), np.asarray(weights).reshape(-1).tolist()))
    got = []
    for s in hog_mod._octave_scales(img.shape, 1.05):
        r, w = hog_mod._level_windows(hog, img, s, -1.5, 8)
        got += zip(map(tuple, r.astype(int).tolist()), w.tolist())
    assert len(want) > 50
    assert sorted(got) == want
    assert cv2.getNumThreads() == 1


def test_hog_detections_do_not_depend_on_opencvs_threads(one_opencv_thread) -> None:
    """A smoke test of the threaded level search (one thread vs four give the same people). It
    would rarely catch detectMultiScale's race (1 call in 500 on a busy machine): the test above,
    the levels equal to OpenCV's own in one thread, is what shows the search right."""
    import cv2

    img = _figures()
    det = HOGDetector(score_threshold=-1.0, min_height_frac=0.3)
    one = det(img)
    cv2.setNumThreads(4)  # four levels searched at a time
    assert det(img) == one and len(one) >= 2


def test_hog_finds_the_footballer(shared_dir: Path) -> None:
    img = _messi(shared_dir)
    # The kicking pose is hard for a pedestrian detector: its best window scores ~0.13 with
    # OpenCV 4.14 (crowd texture scores up to ~1.2), so allow slightly negative margins here.
    dets = HOGDetector(score_threshold=-0.3)(img)
    assert dets, "HOG found nothing"
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    for d in dets:
        x, y, w, h = d.box
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 548 and y + h <= 342
        if y > 0 and y + h < 342:  # not clipped: the person is >= min_height_frac tall
            assert 0.75 * h >= 0.2 * 342 - 1e-6
    ious = _player_iou(dets)
    best = ious.max()
    # Measured 0.50: box x 132..351, full image height.
    assert best > 0.3, [(d.box, d.score) for d in dets]
    # The window found spans the player's torso and head (x 190..330, y 62..300).
    player_dets = [d for d, iou in zip(dets, ious, strict=True) if iou > 0.3]
    x, y, w, h = player_dets[0].box
    assert x < 190 and x + w > 330 and y < 62 and y + h > 300


def test_hog_options_max_people_min_height_and_box_scale(shared_dir: Path) -> None:
    img = _messi(shared_dir)
    base = HOGDetector(score_threshold=-0.3)(img)
    top2 = HOGDetector(score_threshold=-0.3, max_people=2)(img)
    assert top2 == base[:2]
    # Only people at least 60 % of the image tall: the crowd's small windows disappear.
    tall = HOGDetector(score_threshold=-0.3, min_height_frac=0.6)(img)
    assert tall and all(d.box[3] >= 0.6 * 342 for d in tall)
    assert _player_iou(tall).max() > 0.3
    # Narrowing by 0.5 keeps centres and halves widths (boxes away from the border).
    narrow = HOGDetector(score_threshold=-0.3, box_scale=(0.5, 1.0))(img)
    inner = [d for d in base if d.box[0] > 60 and d.box[0] + d.box[2] < 488 and d.box[1] > 0]
    assert inner
    for d in inner:
        match = [n for n in narrow if n.score == d.score]
        assert match
        n = match[0]
        assert n.box[2] == pytest.approx(d.box[2] / 2)
        assert n.box[0] + n.box[2] / 2 == pytest.approx(d.box[0] + d.box[2] / 2)
