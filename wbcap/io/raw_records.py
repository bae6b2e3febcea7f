"""Pass 1's record file of ``wbcap run``, ``OUT/.wbcap/raw.jsonl``.

One JSON line per processed frame, in frame order, appended and flushed as frames are done so
that an interrupted run keeps them (``--resume`` continues after the last complete line)::

    {"frame": 12, "time": 0.48, "size": [W, H], "change": 3.217, "back": [4.5, 30.1], "back_to": [9, 10],
     "people": [{"box": [x, y, w, h], "score": s, "crop_box": [x, y, w, h],
                 "focal": [fx, fy], "princpt": [cx, cy], "params": {"root_pose": [...], ...}}]}

``frame``: index in the source; ``time``: seconds; ``size``: image pixels; ``change``: how much
the frame differs from the processed frame before it, ``back``: from each frame of ``back_to`` (the
frames before the three largest changes of the last half second), 0-255 (:class:`wbcap.track.cuts.FrameChange`;
absent where there is no such frame and in runs made before wbcap measured them); ``box``: the detected
box and ``crop_box`` the network's window, image pixels ``(x, y, w, h)``; ``lhand_box``,
``rhand_box``, ``face_box``: the network's hand and face boxes, image pixels ``(x, y, w, h)``
(:data:`PART_BOXES`; absent in runs made before wbcap recorded them); ``focal``/``princpt``:
the person's own image camera, pixels (:func:`wbcap.camera.crop_to_image_camera`); ``params``:
the network's SMPL-X parameters, each flattened, under their file names
(:func:`wbcap.io.param_names.to_file_record` writes them, ``from_file_record`` reads them
back: ``root_pose`` 3, ``body_pose`` 63, ``lhand_pose`` 45, ``rhand_pose`` 45, ``jaw_pose`` 3
axis-angle radians; ``shape`` 10, ``expr`` 10; ``cam_trans`` 3 metres in that camera). With
``--max-people``, a frame where the limit left boxes out also has ``detected``: every detection
inside the image, ``[x, y, w, h, score]`` in the detector's order, which a resumed run feeds to
the limit's tracker (:func:`detected_boxes`) and pass 2 tracks, those left out unseen
(:func:`choice_boxes`). ``look`` (a person's) and ``detected_looks`` (one per ``detected`` row):
what the box's person looks like, :data:`~wbcap.track.appearance.LOOK_SIZE` whole numbers 0-255
(:func:`wbcap.track.appearance.box_looks`), which the trackers of both passes use (recorded with
``--no-appearance`` too, for a later pass 2; absent in runs made before wbcap had them: overlap
alone). This module is the file edge of the raw records:
the names come from :mod:`wbcap.io.param_names`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import JSON_ERRORS, InputError, setting
from wbcap.io.param_names import NETWORK_FILE_SIZES, to_file_record
from wbcap.track.appearance import LOOK_SIZE

log = logging.getLogger(__name__)


#: The numbers of a raw record person besides its ``params`` (0: one number, k: a list of k).
PERSON_SIZES: Mapping[str, int] = {"box": 4, "score": 0, "focal": 2, "princpt": 2}
#: A person's hand and face boxes as the network predicted them, image pixels ``(x, y, w, h)``
#: (absent in runs made before 2026-12-07: every one or none).
PART_BOXES: tuple[str, ...] = ("lhand_box", "rhand_box", "face_box")


def damaged_numbers(rec: Mapping, sizes: Mapping[str, int | None], seen: dict[str, int] | None = None) -> str | None:
    """What is wrong with the number fields of one record, in words (``"body_pose holds 5 numbers,
    not 63"``, ``"root_pose holds NaN"``, ``"no time"``), or None when nothing is.

    ``sizes``: ``{key: 0}`` for one finite number, ``{key: k}`` for a list of ``k`` finite
    numbers, ``{key: None}`` for a non-empty list whose length is the one ``seen[key]`` holds
    (``seen`` is filled from the first record that has the key: pass the same dict for every
    record of a file).
    """
    seen = {} if seen is None else seen
    for key, size in sizes.items():
        if not isinstance(rec, Mapping) or key not in rec:
            return f"no {key}"
        value = rec[key]
        values = [value] if size == 0 else value
        if size != 0 and not isinstance(value, list):
            return f"{key} is {json.dumps(value)[:40]}, not a list of numbers"
        if not _plain_finite(values):  # (the slow checks below say what is wrong)
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:  # (a list, not next(..., None): a null is a bad value too)
                return f"{key} holds {json.dumps(bad[0])[:40]}, not a number"
            bad = [v for v in values if not _finite(v)]
            if bad:
                return f"{key} holds {json.dumps(bad[0])[:40]}, not a finite number"
        if size != 0:
            if not values:
                return f"{key} holds no numbers"
            want = seen.setdefault(key, len(values)) if size is None else size
            if len(values) != want:
                return f"{key} holds {len(values)} numbers, not {want}"
    return None


#: The largest magnitude a record's number may have: float32's (the values are float32's, and
#: are read back into float32 arrays, where a larger one would become infinite).
_LARGEST = float(np.finfo(np.float32).max)


_NUMBER_TYPES = frozenset((int, float))


def _plain_finite(values: list) -> bool:
    """Whether every one of ``values`` is an int or float (not a bool: ``type`` is exact), finite
    and within :data:`_LARGEST`: the common case, checked with C-level loops (pass 2 reads
    hundreds of numbers per person); False sends the caller to the checks that say which is wrong."""
    if not set(map(type, values)) <= _NUMBER_TYPES:
        return False
    try:
        return all(map(math.isfinite, values)) and (not values or max(map(abs, values)) <= _LARGEST)
    except OverflowError:  # (an int too large for a float)
        return False


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value) and abs(value) <= _LARGEST
    except OverflowError:  # (an int too large for a float)
        return False


def damaged_raw_record(rec: object, seen: dict[str, int] | None = None, all_params: bool = True) -> str | None:
    """What is wrong with a raw record (the module docstring's fields that pass 2 reads: ``frame``,
    ``time``, and each person's ``box``, ``score``, ``focal``, ``princpt`` and ``params``), in
    words, or None when nothing is; ``seen``: as :func:`damaged_numbers`; without ``all_params``
    only the parameters a person has are checked (a missing one is not damage)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    if isinstance(rec.get("frame"), bool) or not isinstance(rec.get("frame"), int):
        return "no frame" if "frame" not in rec else f"frame {json.dumps(rec['frame'])[:40]}, not a whole number"
    why = damaged_numbers(rec, {"time": 0, **({"change": 0} if "change" in rec else {}),
                                **({"back": None, "back_to": None} if "back" in rec or "back_to" in rec else {})},
                          {"back": len(rec["back_to"])} if isinstance(rec.get("back_to"), list) and rec["back_to"] else None)
    if why:
        return why
    bad = next((k for k in ("change", "back", "back_to") if k in rec and min(rec[k] if isinstance(rec[k], list) else [rec[k]]) < 0), None)
    if bad is not None or not all(isinstance(r, int) and not isinstance(r, bool) for r in rec.get("back_to", [])):
        return f"{bad or 'back_to'} holds a negative or non-whole value" if bad else "back_to holds a value that is not a frame index"
    found = rec.get("detected", [])
    if not isinstance(found, list) or any(damaged_numbers({"box": d}, {"box": 5}) for d in found):
        return "detected is not a list of [x, y, w, h, score] rows of finite numbers"
    if "detected_looks" in rec:
        looks = rec["detected_looks"]
        if not isinstance(looks, list) or len(looks) != len(found) or any(_damaged_look(lk) for lk in looks):
            return f"detected_looks is not one look ({LOOK_SIZE} whole numbers 0-255) per detected row"
    people = rec.get("people")
    if not isinstance(people, list):
        return "no people" if "people" not in rec else "people is not a list"
    for k, person in enumerate(people):
        why = damaged_numbers(person, PERSON_SIZES)
        if why is None:
            params = person.get("params")
            if not isinstance(params, dict):
                why = "no params"
            else:
                sizes = {key: n for key, n in NETWORK_FILE_SIZES.items() if all_params or key in params}
                why = damaged_numbers(params, sizes, seen)
        if why is None and "look" in person and _damaged_look(person["look"]):
            why = f"look is not {LOOK_SIZE} whole numbers 0-255"
        if why is None and any(key in person for key in PART_BOXES):
            why = damaged_numbers(person, dict.fromkeys(PART_BOXES, 4))
        if why:
            return f"person {k}: {why}"
    if "detected" in rec:
        rows = [list(map(float, d)) for d in found]
        for k, person in enumerate(people):  # (pass 2 finds each kept box among them: choice_boxes)
            row = [*map(float, person["box"]), float(person["score"])]
            if row not in rows:
                return f"person {k}: box {json.dumps(row[:4])[:60]} is not among detected"
            rows.remove(row)
    return None


def _damaged_look(look: object) -> bool:
    return (not isinstance(look, list) or len(look) != LOOK_SIZE
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in look))


def read_raw(path: Path) -> Iterator[dict]:
    """Complete records of a raw file (a torn last line from an interrupted run is skipped), as
    parsed: nothing is checked (:func:`read_checked_raw` checks them)."""
    for line in _complete_lines(path):
        yield json.loads(line)


def has_records(path: Path) -> bool:
    """Whether the raw file ``path`` holds a complete line: frames of a run, which ``--resume``
    continues (a damaged line counts as one, not parsed here: the resume drops it and what follows),
    ``--overwrite`` sets aside and a failed run keeps. A file that cannot be read counts as holding
    some: nothing is deleted, or said to be missing, on its account."""
    try:
        return next(_complete_lines(path), None) is not None
    except OSError:
        return True


def read_checked_raw(path: Path) -> Iterator[dict]:
    """Complete records of a raw file, each checked (:func:`damaged_raw_record`; of the parameters,
    those a person has), for pass 2. Pass 1 (:func:`start_raw`) has dropped the damaged records of
    an earlier run (there all the parameters must be there), so one met here was damaged since.

    Raises:
        InputError: a line that is not JSON or a damaged record, naming the file, the line and
            what is wrong, with ``--resume`` as the fix (it drops that line and what follows, and
            regresses their frames again).
    """
    seen: dict[str, int] = {}
    for n, line in enumerate(_complete_lines(path), 1):
        try:
            rec = json.loads(line)
        except JSON_ERRORS as exc:
            why: str | None = f"not JSON: {exc}"
        else:
            why = damaged_raw_record(rec, seen, all_params=False)
        if why:
            raise InputError(f"{path}:{n}: a damaged record ({why}); rerun the run with "
                             f"{setting('resume', api='resume=True')}, which regresses the frames from that line on "
                             "again")
        yield rec


def last_record(path: Path, tail: int = 1 << 20) -> dict | None:
    """The last complete record of the raw file ``path``, parsed (nothing checked), from its last
    ``tail`` bytes only (a record is a few KB: a long run's file is read no further); None where
    there is none in them.

    Raises:
        OSError: the file cannot be read; ValueError: that line is no JSON.
    """
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - tail))
        lines = f.read().split(b"\n")
    complete = [line for line in lines[:-1] if line.strip()]  # (after the last newline: a torn line, or nothing)
    if not complete or (size > tail and len(complete) < 2):  # (a first line cut by the window is not whole)
        return None
    return json.loads(complete[-1])


def _complete_lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path`` that end in a newline, up to the first that does not (none when absent)."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            yield line


def detected_boxes(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every detection of a record's frame, as ``--max-people``'s choice took them (its
    ``detected``, in the detector's order, where the limit left some out; else its people's):
    what a resumed run feeds :class:`~wbcap.track.iou_tracker.PeopleLimit`, so that the people
    tracked unseen go on as in a run not stopped. ``(N, 4)`` float64 ``(x, y, w, h)`` pixels and
    ``(N,)`` float64 scores."""
    if "detected" not in rec:
        return record_boxes(rec)
    rows = np.asarray(rec["detected"], np.float64).reshape(-1, 5)
    return rows[:, :4].copy(), rows[:, 4].copy()


def choice_boxes(rec: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """A record's detections as ``--max-people``'s choice saw them, for pass 2 to track them as it
    did: ``(boxes (N, 4), scores (N,), left_out (N,) bool, at)`` with ``at[k]`` the row of person
    ``k``'s box; ``left_out`` marks the boxes the limit left out (tracked unseen). A record without
    ``detected`` gives its people's boxes, none left out.

    Raises:
        ValueError: a person's box that is not among ``detected`` (a damaged record).
    """
    kept_boxes, kept_scores = record_boxes(rec)
    if "detected" not in rec:
        return kept_boxes, kept_scores, np.zeros(len(kept_boxes), bool), list(range(len(kept_boxes)))
    boxes, scores = detected_boxes(rec)
    free = list(range(len(boxes)))
    at = []
    for box, score in zip(kept_boxes, kept_scores):  # (the same floats: both written from one Detection)
        k = next((k for k in free if np.array_equal(boxes[k], box) and scores[k] == score), None)
        if k is None:
            raise ValueError(f"a person's box {box.tolist()} is not among the frame's detected boxes")
        free.remove(k)
        at.append(k)
    left_out = np.ones(len(boxes), bool)
    left_out[at] = False
    return boxes, scores, left_out, at


def detected_looks(rec: dict) -> np.ndarray | None:
    """The looks of :func:`detected_boxes`' rows, which are :func:`choice_boxes`' too (``(N,
    LOOK_SIZE)`` float64), or None where the record has none (a run made before looks)."""
    if "detected" not in rec:
        return record_looks(rec)
    if "detected_looks" not in rec:
        return None
    return np.asarray(rec["detected_looks"], np.float64).reshape(-1, LOOK_SIZE)


def record_size(rec: dict) -> tuple[float, float] | None:
    """A record's picture ``(width, height)`` pixels, or None where it has no such ``size``."""
    size = rec.get("size")
    if (isinstance(size, list) and len(size) == 2 and _plain_finite(size) and not any(isinstance(v, bool) for v in size)
            and min(size) > 0):
        return float(size[0]), float(size[1])
    return None


def record_looks(rec: dict) -> np.ndarray | None:
    """The looks of a record's people (``(N, LOOK_SIZE)`` float64; a person without one gets a row
    of zeros, no look), or None where none has one."""
    people = rec["people"]
    if not any("look" in p for p in people):
        return None
    return np.asarray([p.get("look", [0] * LOOK_SIZE) for p in people], np.float64).reshape(-1, LOOK_SIZE)


def record_boxes(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """A record's detections as the tracker takes them: ``(N, 4)`` float64 ``(x, y, w, h)``
    pixels and ``(N,)`` float64 scores."""
    people = rec["people"]
    return (np.asarray([p["box"] for p in people], np.float64).reshape(-1, 4),
            np.asarray([p["score"] for p in people], np.float64))


def truncate_to_complete_lines(path: Path) -> tuple[int, int]:
    """Drop a torn last line; return (number of records, last frame index or -1). A damaged
    complete line (not JSON, or a record with a field missing, of another length or not finite:
    :func:`damaged_raw_record`) ends the kept records too, with a warning naming it, what is wrong
    and how many lines after it are dropped (their frames are regressed again).

    Raises:
        InputError: the frame indices do not increase (not one run's records: e.g. written by
            two processes at once before runs locked their folder), so no resume can continue it.
    """
    from wbcap.atomic import open_own_file

    count, last, good_bytes = 0, -1, 0
    seen: dict[str, int] = {}
    if not (path.is_file() or path.is_symlink()):
        return 0, -1
    with open_own_file(path, "r+b", encoding=None) as f:  # (a link there refused before it is read or cut)
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except JSON_ERRORS:
                why: str | None = "not JSON"
            else:
                why = damaged_raw_record(rec, seen)
            if why:
                after = sum(1 for _ in f)
                log.warning("%s: line %d is damaged (%s; not a record wbcap wrote); it and the %d line(s) after it "
                            "are dropped, and their frames are regressed again", path, count + 1, why, after)
                break
            frame = rec["frame"]
            if frame <= last:
                raise InputError(
                    f"{path}: frame {frame} follows frame {last}, so these records are not one run's (two runs "
                    f"wrote the folder at once?); pass {setting('overwrite', api='overwrite=True')} to start over")
            last = frame
            count += 1
            good_bytes += len(line)
        f.truncate(good_bytes)
    return count, last


def start_raw(path: Path, resume: bool) -> tuple[int, int]:
    """Get the raw file ready for appending: with ``resume``, keep its complete records (a torn
    last line is cut off); else delete it. Returns (records kept, last kept frame index or -1)."""
    done = truncate_to_complete_lines(path) if resume else (0, -1)
    if not resume and path.exists():
        path.unlink()
    return done


def person_record(person: Any, look: Sequence[int] | None = None) -> dict:
    """One person's entry of a record (a :class:`wbcap.pipeline.Person`: numpy arrays in;
    ``look``: its box's, or None)."""
    return {
        "box": [float(v) for v in person.box],
        "score": float(person.score),
        "crop_box": [float(v) for v in person.crop_box],
        "focal": [float(v) for v in person.focal],
        "princpt": [float(v) for v in person.princpt],
        "params": to_file_record(person.params, eyes=False),
        **({} if look is None else {"look": [int(v) for v in look]}),
        **{key: [float(v) for v in getattr(person, key)] for key in PART_BOXES},
    }


class RawWriter:
    """Appends records to a raw file (a context manager; the file is fsynced when the block
    ends without an exception)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> RawWriter:
        from wbcap.atomic import open_own_file

        self._file = open_own_file(self.path)  # (a link there refused, not appended through)
        return self

    def append(self, frames: Sequence[tuple[int, float, list[int], Sequence[Any]]],
               changes: dict[int, Any] | None = None, detected: dict[int, list[list[float]]] | None = None,
               looks: dict[int, list[tuple[list[float], list[int]]]] | None = None) -> None:
        """Write one record per ``(frame index, time s, [W, H], people)`` and flush; ``changes``:
        the frames' :class:`~wbcap.track.cuts.FrameChange` by index; ``detected``: a frame's
        every detection ``[x, y, w, h, score]`` where ``--max-people`` left some out
        (:attr:`wbcap.detect.thread.DetectionThread.detected`); ``looks``: a frame's
        ``([x, y, w, h, score], look)`` per detection (:attr:`~wbcap.detect.thread.DetectionThread.looks`:
        each person's and detected row's look is the one of its box); all taken out of their dicts
        as written (absent: the record has none of those fields)."""
        for index, ftime, size, people in frames:
            change = None if changes is None else changes.pop(index, None)
            found = None if detected is None else detected.pop(index, None)
            seen = None if looks is None else looks.pop(index, None)
            # (a row's look by its [x, y, w, h, score]: boxes alike to the bit have the same look)
            look_of = {} if seen is None else {tuple(row): look for row, look in seen}
            extra = {}
            if found is not None and all(tuple(row) in look_of for row in found) and look_of:
                extra["detected_looks"] = [look_of[tuple(row)] for row in found]
            people_looks = [look_of.get((*map(float, p.box), float(p.score))) for p in people]
            rec = {"frame": index, "time": ftime, "size": size, **({} if change is None else change.record()),
                   **({} if found is None else {"detected": found}), **extra,
                   "people": [person_record(p, lk) for p, lk in zip(people, people_looks)]}
            self._named(self._file.write, json.dumps(rec) + "\n")
        self._named(self._file.flush)

    def _named(self, call: Any, *args: Any) -> None:
        """``call(*args)`` (a write or the flush); a full disk's error names the raw file (it said
        "cannot write (No space left on device)" with no file: a break-it trial)."""
        from wbcap.atomic import name_unnamed_write_error

        try:
            call(*args)
        except OSError as exc:
            name_unnamed_write_error(exc, self.path)
            raise

    def __exit__(self, exc_type, exc, tb) -> None:
        from wbcap.atomic import name_unnamed_write_error

        try:
            try:
                if exc_type is None:
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()  # (what is left in its buffer is written here)
        except OSError as error:
            name_unnamed_write_error(error, self.path)
            raise
