"""Boxes that come from the user rather than from a detector.

* :class:`FullImageDetector` - one box covering the whole image (for tight crops of one person).
* :func:`load_boxes_json` - per-image boxes from a JSON file (``--boxes boxes.json``).

Boxes are ``(x, y, w, h)`` in pixels, top-left corner, x right, y down (see
:mod:`wbcap.detect.base`).

Box file format (JSON object, one entry per image, keyed by the image's **file name**; a key
with folders, ``"run1/0001.jpg"``, is reduced to its file name, which must then be unique)::

    {
      "0001.jpg": [[x, y, w, h], [x, y, w, h]],
      "0002.jpg": [{"bbox": [x, y, w, h], "score": 0.9}],
      "0003.jpg": []
    }

Each box is a list of 4 numbers or an object with ``"bbox"`` and an optional ``"score"``
(default 1.0). ``w`` and ``h`` must be > 0, and every number within +-:data:`MAX_BOX_PIXELS`
(:func:`check_box_range`, the rule for every box a user gives). An empty list means "no person
in this image"; an image with no key is not covered by the file (the caller decides: run a
detector or skip).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from wbcap.detect.base import Detection, sort_by_score
from wbcap.errors import InputError

Box = tuple[float, float, float, float]

#: The largest size any number of a user's box may have, in pixels: 2**24, up to which the crop's
#: float32 arithmetic holds every whole pixel (no image has a side this long; 1e39 overflowed
#: float32 with a numpy warning).
MAX_BOX_PIXELS = 2**24

_RANGE_RULE = (f"every number must be finite and within {MAX_BOX_PIXELS:,} pixels "
               "(x,y: the top-left corner, w,h: the size, in the image's pixels)")


def check_box_range(box: Sequence[float]) -> None:
    """The range rule of every box a user gives (``wbcap image --bbox`` through :func:`parse_bbox`,
    ``--boxes FILE`` and ``wbcap run --detector boxes:FILE`` through :func:`load_boxes_json`):
    each number within +-:data:`MAX_BOX_PIXELS` (NaN and infinities are not).

    ``box``: ``(x, y, w, h)`` numbers (Python ints of any size are compared exactly, never
    converted).

    Raises:
        ValueError: a number out of range; its message says the rule, to follow ``"box ...: "``.
    """
    if not all(abs(v) <= MAX_BOX_PIXELS for v in box):  # (False for NaN)
        raise ValueError(_RANGE_RULE)


class FullImageDetector:
    """Returns one box covering the whole image, score 1.0.

    Use when every image is already a crop around one person.
    """

    name = "full-image"

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """``image``: ``(H, W, 3)`` uint8 RGB -> ``[Detection((0, 0, W, H), 1.0)]``."""
        h, w = image.shape[:2]
        return [Detection((0.0, 0.0, float(w), float(h)), 1.0)]


def parse_bbox(text: str) -> Box:
    """Parse ``"x,y,w,h"`` (pixels; commas and/or spaces) into a float tuple.

    Raises:
        InputError: not 4 finite numbers, a number out of range (:func:`check_box_range`), or
            ``w``/``h`` not > 0.
    """
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError(
            f"box {text!r}: expected 4 numbers 'x,y,w,h' in pixels, e.g. '10,20,200,400'"
        )
    try:
        check_box_range(values)
    except ValueError as exc:
        raise InputError(f"box {text!r}: {exc}") from None
    if values[2] <= 0 or values[3] <= 0:
        raise InputError(f"box {text!r}: width and height must be > 0; give 'x,y,w,h', not corners")
    return values  # type: ignore[return-value]


#: A box file's form in messages: keyed by image file name (`wbcap image`) or by frame index
#: (`wbcap run` of a video); only the first was named, to a user of a video (a user trial).
_FORM = '{"photo.jpg": [[x, y, w, h], ...]} (wbcap image) or {"<frame index>": [[x, y, w, h], ...]} (wbcap run)'


def load_boxes_json(path: str | os.PathLike[str]) -> dict[str, list[Detection]]:
    """Read a box file (format in the module docstring).

    Returns:
        ``{file name: detections sorted by score, highest first}``.

    Raises:
        InputError: the file is missing or not valid JSON (also: a number longer than Python's
            integer-digit limit, 4300, or nesting deeper than its recursion limit), or an entry is
            malformed or has a number out of range (:func:`check_box_range`; the message names the
            file, the entry and the box).
    """
    from wbcap.paths import not_a_regular_file

    p = Path(path)
    # (a named pipe waited for ever, a loop of links wrote a crash log: a hostile-input trial)
    problem = not_a_regular_file(p)
    if problem == "does not exist":
        raise InputError(f"{p}: no such box file; check the path")
    if problem is not None:
        raise InputError(f"{p}: {problem}; pass a JSON box file")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:  # (gone or changed since the check, or unreadable)
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc}); pass a JSON box file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{p}: not valid JSON{where}; fix the box file") from None
    except ValueError:  # (Python's integer-digit limit: a JSON number thousands of digits long)
        raise InputError(f"{p}: holds a number over {sys.get_int_max_str_digits()} digits long; "
                         "fix the box file (boxes are pixel numbers)") from None
    except RecursionError:
        raise InputError(f"{p}: lists or objects nested too deeply for a box file; fix the box file "
                         f"({_FORM})") from None
    if not isinstance(raw, Mapping):
        raise InputError(f"{p}: box file must be a JSON object {_FORM}; fix it")
    table: dict[str, list[Detection]] = {}
    for key, entries in raw.items():
        name = Path(key).name
        if name in table:
            raise InputError(f"{p}: two entries for file name {name!r}; keep one per image")
        if not isinstance(entries, list):
            raise InputError(f"{p}: entry {key!r} must be a list of boxes; fix the box file")
        dets = []
        for i, entry in enumerate(entries):
            try:
                dets.append(_parse_entry(entry))
            except (TypeError, ValueError) as exc:
                raise InputError(f"{p}: entry {key!r} box {i}: {exc}; fix the box file") from None
        table[name] = sort_by_score(dets)
    return table


def box_outside_image(box: Box, width: int, height: int) -> bool:
    """True when an ``(x, y, w, h)`` box has no area inside a ``width`` x ``height`` image.

    A box that only touches the border (zero overlap) counts as outside.
    """
    x, y, w, h = box
    return x + w <= 0 or y + h <= 0 or x >= width or y >= height or w <= 0 or h <= 0


def _parse_entry(entry: object) -> Detection:
    score = 1.0
    if isinstance(entry, Mapping):
        if "bbox" not in entry:
            raise ValueError('object without "bbox"')
        score_val = entry.get("score", 1.0)
        if isinstance(score_val, bool) or not isinstance(score_val, (int, float)):
            raise ValueError('"score" must be a number')
        try:
            score = float(score_val)
        except OverflowError:  # (a JSON integer too long for a float)
            score = math.inf
        if not math.isfinite(score):
            raise ValueError('"score" must be finite')
        entry = entry["bbox"]
    return Detection(check_box(entry, "bbox"), score)


def check_box(value: object, what: str, positive_size: bool = True) -> Box:
    """``[x, y, w, h]`` (pixels: 4 numbers within :func:`check_box_range`, w, h > 0; a list,
    tuple, 1-D array or 1-D torch tensor, numpy numbers included) as a float tuple: the rule of every box a user
    gives, in a file or to :class:`wbcap.pipeline.Pipeline`.

    ``positive_size`` False lets a width or height of 0 or less through (a detector's box that
    the crop then skips as outside the image, with a warning).

    Raises:
        ValueError: what is wrong, beginning with ``what`` (e.g. ``"bbox"``).
    """
    torch = sys.modules.get("torch")  # (a tensor's numbers too, without importing torch for it)
    if isinstance(value, np.ndarray) or (torch is not None and isinstance(value, torch.Tensor)):
        value = value.tolist()
    elif isinstance(value, (list, tuple)):  # (numpy numbers: np.float32 is no Python float)
        value = [v.item() if isinstance(v, np.generic) else v for v in value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{what} must be 4 numbers [x, y, w, h]")
    check_box_range(value)  # (before float(): a JSON integer of 400 digits does not fit one)
    box = tuple(float(v) for v in value)
    if positive_size and (box[2] <= 0 or box[3] <= 0):
        raise ValueError(f"{what} width and height must be > 0")
    return box  # type: ignore[return-value]
