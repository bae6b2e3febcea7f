"""Build a person detector from a user's choice: ``auto | hog | torchvision | full | yolox-<size> | yolox:FILE | boxes:FILE``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from wbcap.detect.base import HOG_FALLBACK, Detection
from wbcap.errors import InputError, setting

log = logging.getLogger(__name__)


class BoxesFileDetector:
    """Boxes read from a JSON file (:func:`wbcap.detect.boxes.load_boxes_json`) for a video.

    A key names a frame as its index (``"12"``), a zero-padded index (``"000012"``) or, for an
    image sequence, the image's file name (``"0012.jpg"``, matched first). :meth:`bind` resolves
    the keys against the source before any work is done; :meth:`for_frame` then gives a frame's
    boxes (none for a frame without a key).
    """

    name = "boxes"

    def __init__(self, path: str) -> None:
        from wbcap.detect.boxes import load_boxes_json

        self.path = path
        self.table = load_boxes_json(path)
        self.by_frame: dict[int, list[Detection]] = {}
        self.unmatched: list[str] = []

    def bind(self, frame_names: Sequence[str] | None = None, frame_count: int | None = None) -> None:
        """Resolve every key to a frame index.

        Args:
            frame_names: file name of each frame of an image sequence (index order), or None.
            frame_count: number of frames in the source, when known (keys past it match none).

        Raises:
            InputError: no key matches a frame (the message names some keys and the accepted
                forms), or two keys name the same frame.

        Logs a warning with counts when only some keys match.
        """
        names = {n: i for i, n in enumerate(frame_names or [])}
        self.by_frame, self.unmatched = {}, []
        key_of: dict[int, str] = {}
        for key, dets in self.table.items():
            index = names.get(key)
            if index is None and key.isdigit():
                index = int(key)
                if frame_count is not None and index >= frame_count:
                    index = None
            if index is None:
                self.unmatched.append(key)
                continue
            if index in key_of:
                raise InputError(f"{self.path}: keys {key_of[index]!r} and {key!r} both name frame {index}; keep one")
            key_of[index] = key
            self.by_frame[index] = list(dets)
        if not self.by_frame and self.table:
            forms = 'frame indices ("0", "000012")' + (" or image file names" if names else "")
            sample = ", ".join(repr(k) for k in list(self.table)[:3])
            raise InputError(
                f"{self.path}: none of its {len(self.table)} keys ({sample}...) names a frame of the source"
                f"{f' ({frame_count} frames)' if frame_count is not None else ''}; use {forms} as keys"
            )
        if self.unmatched:
            log.warning("%s: %d of %d keys name no frame of the source (e.g. %s); their boxes are ignored",
                        self.path, len(self.unmatched), len(self.table), ", ".join(repr(k) for k in self.unmatched[:3]))

    def move_boxes(self, move: Callable[[tuple[float, float, float, float]], tuple[float, float, float, float]]) -> None:
        """Put every bound box (after :meth:`bind`) through ``move``: a calibrated source's boxes,
        given in its own pixels, into its undistorted frames
        (:meth:`wbcap.io.undistort.Undistorter.box`)."""
        self.by_frame = {i: [replace(d, box=move(d.box)) for d in dets] for i, dets in self.by_frame.items()}

    def for_frame(self, index: int) -> list[Detection]:
        """The boxes of frame ``index`` (after :meth:`bind`), highest score first; [] if none."""
        return list(self.by_frame.get(int(index), []))

    def for_key(self, key: str) -> list[Detection]:
        """The boxes stored under the file key ``key`` exactly; [] if none."""
        return list(self.table.get(key, []))


#: Detector names accepted besides the YOLOX manifest names (``yolox-nano``, ``yolox-s``, ...).
BASE_DETECTORS = ("auto", "hog", "torchvision", "full")
_SPEC_HELP = "auto, hog, torchvision, full, yolox-nano|yolox-tiny|yolox-s|yolox-m|yolox-l|yolox-x, yolox:FILE.onnx or boxes:FILE"


def detector_names() -> list[str]:
    """Every detector name ``--detector`` accepts, without the ``yolox:``/``boxes:`` forms."""
    from wbcap.weights import manifest

    return list(BASE_DETECTORS) + [n for n, e in manifest().items() if e.architecture == "yolox"]


def _yolox(path, label: str, *, device, score_threshold, min_height_frac, max_people):
    from wbcap.detect.yolox import YOLOXDetector

    kw = {"score_threshold": score_threshold} if score_threshold is not None else {}
    if str(device) == "auto":  # as --device auto resolves for the network
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    det = YOLOXDetector(path, min_height_frac=min_height_frac or 0.0, max_people=max_people, device=str(device), **kw)
    det.name = label
    return det


def check_detector_settings(spec: str, score_threshold: float | None, model: str | None = None,
                            min_height_frac: float | None = None) -> None:
    """Refuse, before any download, and (`wbcap run`) before the model loads, detector settings
    that the detector ``spec`` (with ``model``, a YOLOX file) names would refuse: a
    ``score_threshold`` outside its range, a probability for YOLOX, Faster R-CNN and ``auto``
    (whichever detector it then finds; a README audit:
    `--score-threshold 1.5` was refused after it). HOG's is a margin, any finite number (NaN ran
    the whole video from Python and found nobody: an API trial). ``min_height_frac``: a fraction
    of the image height in [0, 1] (the detectors' own ValueError came after the model loaded).

    Raises:
        InputError: naming the setting, the value and the range.
    """
    import math

    if min_height_frac is not None and not (isinstance(min_height_frac, (int, float)) and 0.0 <= min_height_frac <= 1.0):
        raise InputError(f"{setting('min_height_frac')} {min_height_frac!r} is not a fraction of the image height: "
                         "give one in [0, 1] (0 keeps every box)")
    if score_threshold is None:
        return
    if not isinstance(score_threshold, (int, float)) or isinstance(score_threshold, bool):
        raise InputError(f"{setting('score_threshold')} {score_threshold!r} is not a number: give one (YOLOX's and "
                         "Faster R-CNN's are probabilities in [0, 1], HOG's an SVM margin)")
    from wbcap.detect.base import AUTO_SCORES, FRCNN_SCORES, YOLOX_SCORES, check_probability_threshold
    from wbcap.weights import manifest

    entries = manifest()
    if model is not None or (spec in entries and entries[spec].architecture == "yolox") or spec.startswith("yolox:"):
        check_probability_threshold(score_threshold, YOLOX_SCORES)
    elif spec == "torchvision":
        check_probability_threshold(score_threshold, FRCNN_SCORES)
    elif spec == "auto":  # (on every machine alike, whichever detector auto then finds)
        check_probability_threshold(score_threshold, AUTO_SCORES.format(detector=setting("detector")))
    elif not math.isfinite(score_threshold):  # (HOG's margin, and detectors that take none)
        raise InputError(f"{setting('score_threshold')} {score_threshold!r} is not a finite number: give one (HOG's "
                         "is an SVM margin, default 0)")


def check_detector(spec: str, model: str | None = None) -> None:
    """Refuse what :func:`make_detector` would refuse of ``spec`` and ``model`` by their names
    alone, without opening, downloading or importing a detector: an unknown name, ``model`` with
    a detector that is not YOLOX, a ``boxes:`` or ``yolox:`` naming no file, and a YOLOX file
    (``yolox:FILE``, ``model``) that is missing or a folder. ``wbcap run`` calls it before the
    model loads (a user trial waited 30 s, a new machine's CPU measurement, to be told that
    ``--detector foo`` is unknown).

    Raises:
        InputError: one line naming the setting and the fix.
    """
    from wbcap.detect.yolox import check_model_file
    from wbcap.weights import manifest

    entries = manifest()
    is_yolox_name = spec in entries and entries[spec].architecture == "yolox"
    if model is not None:
        if spec != "auto" and not is_yolox_name and not spec.startswith("yolox:"):
            # (an animator's trial: `--detector yolox --detector-model FILE` was told the two
            # could not go together, as if `yolox` were a detector, and not what to do)
            fix = f"leave {setting('detector')} out (it is then that file's) or name a YOLOX detector, e.g. yolox-nano"
            if not (spec.startswith("boxes:") or spec in BASE_DETECTORS):
                raise InputError(f"unknown detector {spec!r}; with {setting('detector_model')} {fix}")
            raise InputError(f"{setting('detector_model')} is a YOLOX ONNX file; it cannot be used with "
                             f"{setting('detector')} {spec}: {fix}")
        check_model_file(model)
        return
    for prefix in ("boxes:", "yolox:"):  # (`boxes:` alone read the current folder: a user trial)
        if spec.startswith(prefix) and not spec[len(prefix):].strip():
            raise InputError(f"{setting('detector')} {spec}: names no file; give {prefix}FILE")
    if spec.startswith("yolox:"):
        check_model_file(spec[len("yolox:"):])
    elif not (spec.startswith("boxes:") or is_yolox_name or spec in BASE_DETECTORS):
        raise InputError(f"unknown detector {spec!r}; use {_SPEC_HELP}")


def make_detector(
    spec: str,
    *,
    model: str | None = None,
    device="cpu",
    score_threshold: float | None = None,
    min_height_frac: float | None = None,
    max_people: int | None = None,
    offline: bool | None = None,
):
    """The person detector ``spec`` names.

    Args:
        spec: ``auto`` (YOLOX-nano when present, downloaded once on first use unless offline;
            else torchvision Faster R-CNN when usable here; else HOG with a warning naming the
            fix), ``hog``, ``torchvision``, ``full`` (whole image), a YOLOX manifest name
            (``yolox-nano`` ... ``yolox-x``; downloaded on first use unless offline),
            ``yolox:FILE`` (any YOLOX ONNX export) or ``boxes:FILE``.
        model: a YOLOX ONNX export to use (``--detector-model``); only with ``auto`` or a YOLOX name.
        offline: forbid downloads; None reads ``$WBCAP_OFFLINE``.

    Returns an object with ``name`` and ``__call__(image) -> list[Detection]``, or a
    :class:`BoxesFileDetector` for ``boxes:FILE``.

    Raises:
        InputError: unknown name, a named YOLOX model that is absent (offline or download
            failed), or ``model`` with a non-YOLOX detector.
    """
    from wbcap.paths import offline_from_env
    from wbcap.weight_formats import validator
    from wbcap.weights import auto_fetch, default_entry, manifest, recent_auto_failure

    offline = offline_from_env() if offline is None else offline
    yolox_kw = dict(device=device, score_threshold=score_threshold, min_height_frac=min_height_frac, max_people=max_people)
    entries = manifest()
    is_yolox_name = spec in entries and entries[spec].architecture == "yolox"
    check_detector_settings(spec, score_threshold, model, min_height_frac)  # (before a download: values the detector would refuse)
    check_detector(spec, model)
    if model is not None:
        from pathlib import Path

        return _yolox(model, f"yolox ({Path(model).name})", **yolox_kw)
    if spec.startswith("boxes:"):
        return BoxesFileDetector(spec[len("boxes:"):])
    if spec.startswith("yolox:"):
        from pathlib import Path

        path = spec[len("yolox:"):]
        return _yolox(path, f"yolox ({Path(path).name})", **yolox_kw)
    if is_yolox_name:
        path = auto_fetch(spec, offline, validator(entries[spec]))
        if path is None:
            item = entries[spec]
            why = "offline" if offline else "the download failed (see above)"
            raise InputError(f"detector {spec} is not installed ({why}); run `wbcap weights fetch {spec}`, or "
                             f"`wbcap weights import {spec} FILE` with {item.file} from {item.source}")
        return _yolox(path, spec, **yolox_kw)
    if spec == "auto":
        best = default_entry("yolox")
        path = auto_fetch(best.name, offline, validator(best))
        if path is not None:
            log.info("detector: %s (%s)", best.name, path)
            return _yolox(path, best.name, **yolox_kw)
        from wbcap.detect import torchvision_frcnn

        ok, why = torchvision_frcnn.available()
        spec = "torchvision" if ok else "hog"
        failed = None if offline else recent_auto_failure(best.name)
        # (its download's failure said, as `wbcap doctor` says it: "not downloaded" read as not tried, a new user's trial)
        reason = ("offline" if offline else "not downloaded" if failed is None else
                  f"its download failed at {failed[0]}: {failed[1]}; auto tries again a day after")
        unused = ""
        if spec == "hog" and score_threshold is not None:
            # (a probability, as checked above: HOG's SVM margins are another scale, so its default stays)
            from wbcap.detect.hog import HOGDetector

            unused = (f"; {setting('score_threshold')} {score_threshold:g} is a probability and HOG scores SVM "
                      f"margins, so HOG keeps its default margin {HOGDetector.DEFAULT_MARGIN:g} "
                      f"({setting('detector')} hog takes a margin)")
            score_threshold = None
        # (offline, `fetch` alone was no fix: it refuses to download there; a photo user's trial)
        # (and where a download failed, the import too: fetch had just failed, a first-run trial)
        get = (f"`wbcap weights import {best.name} FILE` installs a copy ({best.file} from {best.source}), or "
               f"`wbcap weights fetch {best.name}` online" if offline else
               f"`wbcap weights fetch {best.name}` (or `wbcap weights import {best.name} FILE` with {best.file} from "
               f"{best.source})")
        log.warning("detector: %s, because %s is not installed (%s); %s gets the better detector%s",
                    "torchvision Faster R-CNN" if ok else HOG_FALLBACK, best.name,
                    reason, get, unused)
    if spec == "hog":
        from wbcap.detect.hog import HOGDetector

        kw = {}
        if score_threshold is not None:
            kw["score_threshold"] = score_threshold
        if min_height_frac is not None:
            kw["min_height_frac"] = min_height_frac
        return HOGDetector(max_people=max_people, **kw)
    if spec == "torchvision":
        from wbcap.detect import torchvision_frcnn

        ok, why = torchvision_frcnn.available()
        if not ok:
            raise InputError(f"{setting('detector')} torchvision is not usable here: {why}; "
                             f"use {setting('detector')} auto or hog")
        return torchvision_frcnn.TorchvisionDetector(
            device=device,
            score_threshold=0.5 if score_threshold is None else score_threshold,
            min_height_frac=min_height_frac or 0.0,
            max_people=max_people,
        )
    if spec == "full":
        from wbcap.detect.boxes import FullImageDetector

        return FullImageDetector()
    raise InputError(f"unknown detector {spec!r}; use {_SPEC_HELP}")
