"""Build a person detector from a user's choice: ``auto | hog | torchvision | full | boxes:FILE``."""

from __future__ import annotations

import logging

from wbcap.detect.base import Detection
from wbcap.errors import InputError

log = logging.getLogger(__name__)


class BoxesFileDetector:
    """Boxes read from a JSON file keyed by image name (images) or frame index (videos)."""

    name = "boxes"

    def __init__(self, path: str) -> None:
        from wbcap.detect.boxes import load_boxes_json

        self.path = path
        self.table = load_boxes_json(path)

    def for_key(self, key: str) -> list[Detection]:
        return list(self.table.get(key, []))


def make_detector(
    spec: str,
    *,
    device="cpu",
    score_threshold: float | None = None,
    min_height_frac: float | None = None,
    max_people: int | None = None,
):
    """The detector ``spec`` names; ``auto`` = torchvision when usable here, else HOG (logged).

    Returns an object with ``name`` and ``__call__(image) -> list[Detection]``, or a
    :class:`BoxesFileDetector` for ``boxes:FILE``.
    """
    if spec.startswith("boxes:"):
        return BoxesFileDetector(spec[len("boxes:"):])
    if spec == "auto":
        from wbcap.detect import torchvision_frcnn

        ok, why = torchvision_frcnn.available()
        spec = "torchvision" if ok else "hog"
        log.info("detector: %s (%s)", spec, "torchvision Faster R-CNN weights found" if ok else why)
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
            raise InputError(f"--detector torchvision is not usable here: {why}; use --detector hog or auto")
        return torchvision_frcnn.TorchvisionDetector(
            device=device,
            score_threshold=0.5 if score_threshold is None else score_threshold,
            min_height_frac=min_height_frac or 0.0,
            max_people=max_people,
        )
    if spec == "full":
        from wbcap.detect.boxes import FullImageDetector

        return FullImageDetector()
    raise InputError(f"unknown detector {spec!r}; use auto, hog, torchvision, full or boxes:FILE")
