"""Decoding + detection for `wbcap run`'s pass 1: in a background thread or in turn with the
network (wbcap.detect.thread)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from wbcap.detect.base import Detection
from wbcap.detect.thread import DetectionThread, crop_workers, overlaps_network


@dataclass
class _Frame:
    index: int
    time: float
    image: np.ndarray


class _CountingDetector:
    """Frame k holds k % 4 people; records the thread each call ran in."""

    name = "counting"

    def __init__(self, fail_at: int | None = None) -> None:
        self.threads: set[str] = set()
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, image: np.ndarray) -> list[Detection]:
        self.threads.add(threading.current_thread().name)
        k = int(image[0, 0, 0])
        self.calls += 1
        if k == self.fail_at:
            raise RuntimeError(f"detector failed on frame {k}")
        return [Detection((float(i), 0.0, 10.0, 20.0), 1.0 - 0.1 * i) for i in range(k % 4)]


def _frames(n: int) -> list[_Frame]:
    return [_Frame(k, k / 25.0, np.full((4, 4, 3), k, np.uint8)) for k in range(n)]


def _collect(background: bool, detector, n=10, **kw) -> list[tuple[int, list | None]]:
    timings: dict[str, float] = {}
    with DetectionThread(_frames(n), detector, maxsize=3, timings=timings, background=background, **kw) as d:
        out = [(f.index, None if dets is None else [det.box for det in dets]) for f, dets in d]
    assert set(timings) >= {"decode"}
    return out


@pytest.mark.parametrize("kw", [{}, {"max_people": 2}, {"skip_until": 4}])
def test_in_turn_equals_background(kw):
    inline_det, thread_det = _CountingDetector(), _CountingDetector()
    inline = _collect(False, inline_det, **kw)
    background = _collect(True, thread_det, **kw)
    assert inline == background
    assert [i for i, _ in inline] == list(range(10))
    if "max_people" in kw:
        assert max(len(d) for _, d in inline) == 2
    if "skip_until" in kw:
        assert all(d is None for i, d in inline if i <= 4) and inline_det.calls == 5
    assert inline_det.threads == {threading.current_thread().name}  # no thread of its own
    assert threading.current_thread().name not in thread_det.threads


@pytest.mark.parametrize("background", [False, True])
def test_a_detector_error_reaches_the_consumer_with_the_frame(background):
    det = _CountingDetector(fail_at=6)
    seen = []
    with pytest.raises(RuntimeError, match="frame 6"):
        with DetectionThread(_frames(10), det, maxsize=2, background=background) as d:
            for f, _ in d:
                seen.append(f.index)
    assert seen == list(range(6)) and d.current == 5


def test_in_turn_is_lazy_one_frame_per_request():
    det = _CountingDetector()
    with DetectionThread(_frames(10), det, maxsize=2, background=False) as d:
        it = iter(d)
        next(it), next(it)
        assert det.calls == 2  # nothing decoded or detected ahead of the consumer


def test_overlap_only_with_spare_cores_or_a_gpu(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert overlaps_network("cpu") is False  # torch's threads hold every core
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    assert overlaps_network("cpu") is True  # hyper-threads / cores left over
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert overlaps_network(torch.device("cuda", 0)) is True  # the network leaves the CPU free


def test_crop_threads_take_the_cores_left_after_the_network_and_decoding(monkeypatch):
    def cores(n):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    cores(2)
    assert crop_workers("cpu") == 0  # in turn with the network, as decoding
    assert crop_workers(torch.device("cuda", 0)) == 0  # (2 cores: the GPU's thread and decoding take them)
    cores(3)
    assert crop_workers("cuda") == 1 and crop_workers("cpu") == 0
    cores(5)
    assert crop_workers("cpu") == 2  # 5 - 2 torch threads - 1 decoding
    assert crop_workers("cuda") == 3
    cores(16)
    assert crop_workers("cuda") == crop_workers("cpu") == 4  # at most


@pytest.mark.parametrize("skip_until", [-1, 4])
def test_the_count_of_boxes_over_max_people_says_which_frames_it_covers(skip_until, caplog):
    """After a resume the count covered only the frames the resume detected, in the same words
    as a whole run's (a user trial: 267, 176 and 194 boxes for byte-identical results)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="wbcap.detect.thread"), DetectionThread(
            _frames(10), _CountingDetector(), maxsize=3, background=False, max_people=1, skip_until=skip_until) as d:
        for _ in d:
            pass
        d.report()
    # frames k hold k % 4 boxes: 1 over the limit in frames 2, 6 and 2 in 3, 7 (5 and 9 hold 1)
    expected = ("dropped 6 detected box(es) beyond max_people 1 in 4 frame(s) (the highest-scoring kept); raise "
                "max_people to keep them") if skip_until < 0 else (
        "dropped 3 detected box(es) beyond max_people 1 in 2 frame(s) after frame 4 (the frames this resume "
        "detected) (the highest-scoring kept); raise max_people to keep them")
    assert [r.getMessage() for r in caplog.records] == [expected]
