"""wbcap.model.batching: crops of consecutive frames go through the network in calls of exactly
``batch_size`` (a frame's people may span two calls), and every frame comes back once, in order,
with its own people, whether they were cropped in the calling thread or in crop threads."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from wbcap.model.batching import regress_in_batches


class FakePipeline:
    """Crops are ``(frame index, box number)``; the network returns them as they came."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.calls: list[int] = []
        self.crop_threads: set[str] = set()

    def crop(self, image, dets, source="", strict=True):
        index = int(source.split()[-1])
        time.sleep(0.002 * (index * 7 % 3))  # (crop threads finish out of order)
        self.crop_threads.add(threading.current_thread().name)
        return [(index, k) for k in range(len(dets))]

    def regress(self, jobs, mesh=True):
        self.calls.append(len(jobs))
        return list(jobs)


def _frames(people_per_frame):
    image = np.zeros((4, 6, 3), np.uint8)
    return [(SimpleNamespace(index=i, time=i / 25, image=image), [object()] * n)
            for i, n in enumerate(people_per_frame)]


@pytest.mark.parametrize("crop_workers", [0, 3])
@pytest.mark.parametrize("people", [[3] * 10, [0, 2, 0, 0, 5, 1, 0, 3, 3, 0, 0], [9, 1, 8], [0] * 40, [1] * 3])
def test_full_calls_every_frame_once_in_order(people, crop_workers):
    pipe = FakePipeline(batch_size=4)
    timings: dict[str, float] = {}
    batches = list(regress_in_batches(_frames(people), pipe, timings, crop_workers=crop_workers))
    here = threading.current_thread().name
    assert pipe.crop_threads == {here} if crop_workers == 0 else (pipe.crop_threads and here not in pipe.crop_threads)
    assert timings["crop"] > 0
    results = [r for batch in batches for r in batch]
    assert all(batches)  # no empty lists
    assert [r[0] for r in results] == list(range(len(people)))
    for index, time_s, size, got in results:
        assert got == [(index, k) for k in range(people[index])] and size == [6, 4] and time_s == index / 25
    total = sum(people)
    # every call but the last is full; no crop twice
    assert sum(pipe.calls) == total and all(c == 4 for c in pipe.calls[:-1]) if pipe.calls else total == 0
    assert pipe.calls.count(4) == total // 4


def test_frames_without_people_are_handed_back_without_waiting_forever():
    pipe = FakePipeline(batch_size=2)
    seen = []
    for batch in regress_in_batches(_frames([1] + [0] * 20), pipe):
        seen.append([r[0] for r in batch])
    assert seen[0] == list(range(8))  # 4 x batch_size frames pending: flushed, one crop in the call
    assert sum(len(s) for s in seen) == 21 and pipe.calls[0] == 1


def test_a_crop_that_fails_in_a_crop_thread_is_raised_after_the_frames_before_it():
    class Failing(FakePipeline):
        def crop(self, image, dets, source="", strict=True):
            if source == "frame 5":
                raise ValueError("frame 5: not an image")
            return super().crop(image, dets, source, strict)

    seen = []
    with pytest.raises(ValueError, match="frame 5: not an image"):
        for batch in regress_in_batches(_frames([1] * 9), Failing(batch_size=1), crop_workers=2):
            seen += [r[0] for r in batch]
    assert seen == [0, 1, 2, 3, 4]


def test_crop_threads_take_a_batch_of_frames_ahead_of_the_network():
    """Each frame waiting for a crop thread holds its whole decoded image: 4 x batch_size of them
    (3 GB of 4K frames at the GPU's batch of 32) were taken before a first batch came back (a
    review); a batch's worth keeps the threads cropping the next batch while the network runs."""
    taken = []

    def frames():
        for frame in _frames([1] * 200):
            taken.append(frame[0].index)
            yield frame

    first = next(iter(regress_in_batches(frames(), FakePipeline(batch_size=32), crop_workers=3)))
    assert [r[0] for r in first] == list(range(32)) and len(taken) <= 32 + 32
