"""Pass 1's record file of ``wbcap run``, ``OUT/.wbcap/raw.jsonl``.

One JSON line per processed frame, in frame order, appended and flushed as frames are done so
that an interrupted run keeps them (``--resume`` continues after the last complete line)::

    {"frame": 12, "time": 0.48, "size": [W, H],
     "people": [{"box": [x, y, w, h], "score": s, "crop_box": [x, y, w, h],
                 "focal": [fx, fy], "princpt": [cx, cy], "params": {"root_pose": [...], ...}}]}

``frame``: index in the source; ``time``: seconds; ``size``: image pixels; ``box``: the detected
box and ``crop_box`` the network's window, image pixels ``(x, y, w, h)``; ``focal``/``princpt``:
the person's own image camera, pixels (:func:`wbcap.camera.crop_to_image_camera`); ``params``:
the network's SMPL-X parameters, each flattened, under their file names
(:func:`wbcap.io.param_names.to_file_record` writes them, ``from_file_record`` reads them
back: ``root_pose`` 3, ``body_pose`` 63, ``lhand_pose`` 45, ``rhand_pose`` 45, ``jaw_pose`` 3
axis-angle radians; ``shape`` 10, ``expr`` 10; ``cam_trans`` 3 metres in that camera). This
module is the file edge of the raw records: the names come from :mod:`wbcap.io.param_names`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import InputError, setting
from wbcap.io.param_names import to_file_record

log = logging.getLogger(__name__)


def read_raw(path: Path) -> Iterator[dict]:
    """Complete records of a raw file (a torn last line from an interrupted run is skipped)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            yield json.loads(line)


def record_boxes(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """A record's detections as the tracker takes them: ``(N, 4)`` float64 ``(x, y, w, h)``
    pixels and ``(N,)`` float64 scores."""
    people = rec["people"]
    return (np.asarray([p["box"] for p in people], np.float64).reshape(-1, 4),
            np.asarray([p["score"] for p in people], np.float64))


def truncate_to_complete_lines(path: Path) -> tuple[int, int]:
    """Drop a torn last line; return (number of records, last frame index or -1). A damaged
    complete line (not JSON, or no ``frame``) ends the kept records too, with a warning naming
    it and how many lines after it are dropped (their frames are regressed again).

    Raises:
        InputError: the frame indices do not increase (not one run's records: e.g. written by
            two processes at once before runs locked their folder), so no resume can continue it.
    """
    count, last, good_bytes = 0, -1, 0
    if not path.is_file():
        return 0, -1
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                frame = int(json.loads(line)["frame"])
            except (ValueError, KeyError, TypeError):
                after = sum(1 for _ in f)
                log.warning("%s: line %d is damaged (not a record wbcap wrote); it and the %d line(s) after it are "
                            "dropped, and their frames are regressed again", path, count + 1, after)
                break
            if frame <= last:
                raise InputError(
                    f"{path}: frame {frame} follows frame {last}, so these records are not one run's (two runs "
                    f"wrote the folder at once?); pass {setting('overwrite', api='overwrite=True')} to start over")
            last = frame
            count += 1
            good_bytes += len(line)
    with open(path, "r+b") as f:
        f.truncate(good_bytes)
    return count, last


def start_raw(path: Path, resume: bool) -> tuple[int, int]:
    """Get the raw file ready for appending: with ``resume``, keep its complete records (a torn
    last line is cut off); else delete it. Returns (records kept, last kept frame index or -1)."""
    done = truncate_to_complete_lines(path) if resume else (0, -1)
    if not resume and path.exists():
        path.unlink()
    return done


def person_record(person: Any) -> dict:
    """One person's entry of a record (a :class:`wbcap.pipeline.Person`: numpy arrays in)."""
    return {
        "box": [float(v) for v in person.box],
        "score": float(person.score),
        "crop_box": [float(v) for v in person.crop_box],
        "focal": [float(v) for v in person.focal],
        "princpt": [float(v) for v in person.princpt],
        "params": to_file_record(person.params, eyes=False),
    }


class RawWriter:
    """Appends records to a raw file (a context manager; the file is fsynced when the block
    ends without an exception)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> RawWriter:
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, frames: Sequence[tuple[int, float, list[int], Sequence[Any]]]) -> None:
        """Write one record per ``(frame index, time s, [W, H], people)`` and flush."""
        for index, ftime, size, people in frames:
            rec = {"frame": index, "time": ftime, "size": size, "people": [person_record(p) for p in people]}
            self._file.write(json.dumps(rec) + "\n")
        self._file.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
