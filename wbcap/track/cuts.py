"""Hard cuts between shots of an edited video, so that no track id carries from one shot into the next.

A user trial on edited footage: at a cut the person of the next shot stood where the person of the
previous one had stood (box IoU 0.42), and the tracker gave the new person the old id, one track
and one animation across two people. ``wbcap run`` now measures, in pass 1, how much each processed
frame differs from the one before (:class:`ChangeMeter`: the raw record's ``change``) and from the
pictures before the largest changes of the last :data:`FLASH_SECONDS` (``back``, ``back_to``); pass 2
(:func:`find_cuts`) ends every track at a cut, and ``--max-people``'s choice in pass 1
(:class:`CutFinder`) does the same without looking ahead.

The measure is PySceneDetect's ``ContentDetector`` score (``scenedetect/detectors/content_detector.py``,
default weights): the mean absolute difference of hue, saturation and value (OpenCV's 8-bit HSV: hue
0-179, the others 0-255), averaged over the three, between two frames; a frame whose score from the
frame before reaches the threshold (its default, 27) is a candidate cut. One change: hue is taken
round its circle (179 and 0 are 1 apart, not 179), which PySceneDetect does not do: in a reddish
picture the hue of its near-grey pixels flips between the two ends with the noise, and a break-it
trial's light fading to red scored 60 a frame (every frame a cut) against 5 round the circle; on
``vtest.avi`` the largest change of 300 frames went from 8.7 to 7.5. Frames are compared at :data:`COMPARE_WIDTH` pixels wide, bilinearly scaled, as
PySceneDetect's ``SceneManager`` scales them by default (``scene_manager.py``: ``DEFAULT_MIN_WIDTH``,
``Interpolation.LINEAR``), which also keeps the cost near 0.1 ms a frame at 1080p and 4K (area
averaging took 5-6 ms). The library itself is not used: it requires ``opencv-python``, which installs
a second ``cv2`` over the ``opencv-python-headless`` wbcap depends on, and its detector wants its own
timecode objects for a dozen lines of arithmetic.

**Flashes and cutaways.** A camera flash, or a cutaway shorter than :data:`FLASH_SECONDS`, changes
the picture and brings it back. PySceneDetect drops a candidate within ``min_scene_len`` of the last
cut, which (a second trial) also dropped a real cut 0.3 s after a flash and a real cut 0.4 s after
another, and an id passed to another person there. Here no candidate is dropped for being near
another; instead a candidate after which the picture comes back (a later frame within
:data:`FLASH_SECONDS` whose ``back`` is below the threshold and :data:`BACK_SHARE` of the
candidate's change, and refers to a frame before the candidate) is not a cut: the tracks from before it go on, and those that began during it end where
the picture comes back.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wbcap.limits import CUT_THRESHOLD

__all__ = [
    "BACK_REFERENCES",
    "CUT_THRESHOLD",
    "FLASH_SECONDS",
    "ChangeMeter",
    "CutFinder",
    "Cuts",
    "FrameChange",
    "content_change",
    "find_cuts",
    "hsv_thumbnail",
]

#: A picture that comes back within this many seconds of a candidate cut was a flash or a cutaway.
FLASH_SECONDS = 0.5
#: It comes back when a later frame differs from it by less than the threshold and by less than
#: this share of the candidate's own change: a cut between two shots alike in colour, found by a
#: threshold set just under its change, has later frames just under it too (an HCI trial: change
#: 8.26, the next shot's frames 7.96 from the one before, with ``--cut-threshold 8``, was taken
#: for a flash); a flash's picture comes back to within a few units.
BACK_SHARE = 0.5
#: Width in pixels at which frames are compared.
COMPARE_WIDTH = 256
_EPS = 1e-6  # seconds: (0.7 - 0.2 < 0.5 in floats)


def hsv_thumbnail(image: np.ndarray) -> np.ndarray:
    """``image`` (``(H, W, 3)`` uint8 RGB) at :data:`COMPARE_WIDTH` pixels wide (bilinear; a
    narrower image kept as it is), in OpenCV's 8-bit HSV: ``(h, w, 3)`` uint8."""
    import cv2

    h, w = image.shape[:2]
    if w > COMPARE_WIDTH:
        size = (COMPARE_WIDTH, max(1, round(h * COMPARE_WIDTH / w)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)


def content_change(a: np.ndarray, b: np.ndarray) -> float:
    """The mean absolute difference of two :func:`hsv_thumbnail` images, over pixels and the three
    channels, hue round its circle of 180 (module docstring; 0 for equal images, at most 200);
    images of different sizes differ wholly: 255."""
    if a.shape != b.shape:
        return 255.0
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    diff[..., 0] = np.minimum(diff[..., 0], 180 - diff[..., 0])
    return float(diff.mean())


#: How many of the largest changes of the window a frame is compared back to (two flashes in half
#: a second: the jump out of the first is as large as the jump into it, and the frame before the
#: largest alone can be a flash frame: a review).
BACK_REFERENCES = 3


@dataclass(frozen=True)
class FrameChange:
    """How one processed frame differs from those before it (the raw record's fields).

    Attributes:
        change: :func:`content_change` from the processed frame before (None for the first).
        back: :func:`content_change` from each frame of ``back_to``, the same order.
        back_to: the source indices of the frames before the :data:`BACK_REFERENCES` largest
            ``change`` among the processed frames of the last :data:`FLASH_SECONDS` before this one,
            increasing (empty when there is none): a small ``back`` says the picture came back to
            what it was before that jump (a flash, a cutaway). A single number is taken as a
            one-item tuple.
    """

    change: float | None = None
    back: tuple[float, ...] = ()
    back_to: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("back", "back_to"):
            value = getattr(self, name)
            object.__setattr__(self, name, () if value is None else tuple(value) if isinstance(value, (list, tuple))
                               else (value,))
        if len(self.back) != len(self.back_to):
            raise ValueError(f"back and back_to differ in length: {self.back}, {self.back_to}")

    def record(self) -> dict[str, float | list]:
        """The raw record's fields (``change`` when known, ``back``/``back_to`` when not empty)."""
        out: dict[str, float | list] = {} if self.change is None else {"change": self.change}
        if self.back:
            out |= {"back": list(self.back), "back_to": list(self.back_to)}
        return out

    @classmethod
    def of_record(cls, rec: dict) -> FrameChange:
        """The fields of a raw record (checked by :func:`wbcap.io.raw_records.damaged_raw_record`;
        those it lacks: a run made before they were measured)."""
        return cls(rec.get("change"), rec.get("back") or (), rec.get("back_to") or ())

    def came_back(self, threshold: float, before: int | None = None) -> int | None:
        """The latest frame of ``back_to`` (before frame ``before``, if given) that this frame is
        less than ``threshold`` from, or None."""
        found = [r for b, r in zip(self.back, self.back_to) if b < threshold and (before is None or r < before)]
        return max(found) if found else None


class ChangeMeter:
    """``meter(index, time, image)`` -> :class:`FrameChange` of each processed frame (source
    ``index``, ``time`` seconds, ``image`` ``(H, W, 3)`` uint8 RGB), given in order; values rounded
    to 1e-3, as the raw records keep them. Holds the thumbnails of the last :data:`FLASH_SECONDS`."""

    def __init__(self) -> None:
        self._recent: collections.deque[tuple[int, float, float | None, np.ndarray]] = collections.deque()

    def __call__(self, index: int, time: float, image: np.ndarray) -> FrameChange:
        thumb = hsv_thumbnail(image)
        recent = self._recent
        # (an entry is kept while the one after it is in the window: as a candidate or its reference)
        while len(recent) >= 2 and recent[1][1] <= time - FLASH_SECONDS + _EPS:
            recent.popleft()
        change, pairs = None, []
        if recent:
            change = round(content_change(recent[-1][3], thumb), 3)
            in_window = [p for p in range(1, len(recent)) if recent[p][1] > time - FLASH_SECONDS + _EPS
                         and recent[p][2] is not None]
            top = sorted(in_window, key=lambda p: (recent[p][2], p), reverse=True)[:BACK_REFERENCES]
            pairs = sorted((recent[p - 1][0], round(content_change(recent[p - 1][3], thumb), 3)) for p in top)
        recent.append((int(index), float(time), change, thumb))
        return FrameChange(change, tuple(b for _, b in pairs), tuple(r for r, _ in pairs))


@dataclass(frozen=True)
class Cuts:
    """What :func:`find_cuts` found, by source frame index.

    Attributes:
        cuts: frames that start a new shot: every track ends before them.
        returns: ``{frame: reference}`` where the picture came back after a flash or cutaway that
            began after ``reference``: the tracks that began after ``reference`` end before ``frame``,
            the older ones go on.
        flashes: the frames where those flashes or cutaways began (no track ends there).
    """

    cuts: list[int]
    returns: dict[int, int]
    flashes: list[int]


def find_cuts(frames: Sequence[tuple[int, float, FrameChange]], threshold: float | None = CUT_THRESHOLD) -> Cuts:
    """The cuts between shots of a run (pass 2: it looks ahead).

    ``frames``: ``(source index, time s, FrameChange)`` of every processed frame, in order. A
    candidate (``change >= threshold``) is a cut unless the picture comes back: it is itself a frame
    whose ``back`` is below the threshold and :data:`BACK_SHARE` of its change (the end of a flash: a return), or a later frame within
    :data:`FLASH_SECONDS` is one whose ``back`` to a frame before the candidate is below both (its start: a flash).
    ``threshold`` None: none (``--no-cuts``).
    """
    cuts: list[int] = []
    returns: dict[int, int] = {}
    flashes: list[int] = []
    if threshold is None:
        return Cuts(cuts, returns, flashes)

    for k, (index, time, fc) in enumerate(frames):
        if fc.change is None or fc.change < threshold:
            continue
        within = _back_within(threshold, fc.change)
        ref = fc.came_back(within)
        if ref is not None:
            returns[index] = ref
            continue
        end = time + FLASH_SECONDS - _EPS  # (as the meter's window: a frame 0.5 s later no longer looks back to it)
        later = itertools.takewhile(lambda f, end=end: f[1] < end, (frames[i] for i in range(k + 1, len(frames))))
        back = next(((f[0], r) for f in later if (r := f[2].came_back(within, before=index)) is not None), None)
        if back is None:
            cuts.append(index)
        else:
            flashes.append(index)
            returns.setdefault(*back)
    return Cuts(cuts, returns, flashes)


def _back_within(threshold: float, change: float) -> float:
    """How close (:func:`content_change`) a frame must be to the picture before a candidate cut
    of ``change`` to be that picture back: under ``threshold`` and :data:`BACK_SHARE` of ``change``."""
    return min(threshold, BACK_SHARE * change)


class CutFinder:
    """``finder(fc)`` -> True where a frame (:class:`FrameChange`, given in order) starts a new shot,
    without looking ahead (pass 1's ``--max-people`` choice): a candidate that is not itself a
    return; the start of a flash counts as a cut here (pass 2 knows better: :func:`find_cuts`).
    ``threshold`` None: never."""

    def __init__(self, threshold: float | None = CUT_THRESHOLD) -> None:
        self.threshold = threshold

    def __call__(self, fc: FrameChange) -> bool:
        if self.threshold is None or fc.change is None or fc.change < self.threshold:
            return False
        return fc.came_back(_back_within(self.threshold, fc.change)) is None
