"""Person-detector timings: HOG always, YOLOX when a model is installed or given (never downloaded)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from wbcap.bench.timing import Timing, time_call
from wbcap.errors import setting

log = logging.getLogger(__name__)


def yolox_missing() -> str:
    """The line the report gives when no YOLOX model could be measured (with the fix)."""
    return ("YOLOX not measured: no YOLOX model is installed; run `wbcap weights fetch yolox-nano` "
            f"or pass {setting('detector_model')} FILE.onnx")


def _hog_input_size(detector, width: int, height: int) -> tuple[int, int]:
    """Size of the first pyramid level :class:`wbcap.detect.hog.HOGDetector` scans for a
    ``width`` x ``height`` frame (it resizes so the smallest person sought is 96 px tall)."""
    from wbcap.detect import hog

    person_px = float(getattr(hog, "_PERSON_PX", 96.0))
    min_person = detector.min_height_frac * height
    scale = person_px / min_person if min_person > 0 else max(1.0, person_px / height)
    scale = min(scale, detector.max_upscale)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _yolox_stage_name(path: Path) -> str:
    """``yolox-nano`` etc. when ``path`` is a manifest file name, else ``yolox``."""
    with contextlib.suppress(Exception):
        from wbcap.weights import manifest

        for name, item in manifest().items():
            if item.architecture == "yolox" and item.file == path.name:
                return name
    return "yolox"


def find_yolox_model(detector_model: str | None = None) -> tuple[Path | None, str]:
    """The YOLOX ONNX file the benchmark times and where it came from.

    ``detector_model`` wins; else the installed default YOLOX entry of the manifest
    (:func:`wbcap.weights.find_weights_file`). Nothing is ever downloaded. Returns
    ``(path, source)`` with ``source`` the setting's name (``--detector-model`` from ``wbcap
    bench``, :func:`wbcap.errors.setting`) or ``"installed"``; or ``(None, "")``.
    """
    if detector_model is not None:
        return Path(detector_model).expanduser(), setting("detector_model")
    from wbcap.weights import default_entry, find_weights_file

    try:
        found = find_weights_file(default_entry("yolox"))
    except StopIteration:  # a manifest without a default YOLOX entry
        found = None
    return (found, "installed") if found is not None else (None, "")


def bench_detectors(image, repeats: int, warmup: int, detector_model: str | None = None,
                    device: str = "cpu") -> tuple[dict[str, Timing], dict[str, list], dict[str, Any]]:
    """Time every available person detector on the same ``image`` (``(H, W, 3)`` uint8 RGB).

    HOG always; YOLOX when a model is available (:func:`find_yolox_model`; built with
    :func:`wbcap.detect.factory.make_detector` offline, so the benchmark never downloads). Each
    detector runs once untimed (its detections are kept), then ``warmup`` untimed and ``repeats``
    timed calls (:func:`time_call`).

    Returns:
        ``(timings, detections, info)``: ``timings`` by stage name (``detect.hog``,
        ``detect.yolox-nano`` or ``detect.yolox`` for another export), one frame per call, with
        ``detector``, ``people``, ``size`` (frame ``[w, h]``), ``input_size`` (what the detector
        scans: HOG's first pyramid level, YOLOX's letterboxed ``S x S``), ``runtime`` and
        ``threads``; ``detections`` by stage name; ``info``: ``stages`` (names in order), ``used``
        (the stage ``--detector auto`` would pick among them: YOLOX when measured),
        ``yolox_model``/``yolox_source`` and ``yolox_missing`` (:func:`yolox_missing` or None).

    Raises:
        InputError: ``detector_model`` is not a usable YOLOX ONNX export (an installed default
            that does not load is reported in ``yolox_missing`` instead).
    """
    import cv2

    from wbcap.detect.factory import make_detector
    from wbcap.errors import InputError

    h, w = image.shape[:2]
    timings: dict[str, Timing] = {}
    found: dict[str, list] = {}
    info: dict[str, Any] = {"stages": [], "used": None, "yolox_model": None, "yolox_source": None,
                            "yolox_missing": None}

    def measure(name: str, detector, extra: dict[str, Any]) -> None:
        dets = detector(image)
        runs = time_call(lambda: detector(image), repeats, warmup)
        found[name] = list(dets)
        timings[name] = Timing(runs, 1, "frame", {"people": len(dets), "size": [w, h], **extra})
        info["stages"].append(name)
        log.debug("%s: %.2f ms/frame, %d people", name, 1e3 * timings[name].median_s, len(dets))

    hog = make_detector("hog", device=device, offline=True)
    measure("detect.hog", hog, {"detector": "hog", "input_size": list(_hog_input_size(hog, w, h)),
                                "runtime": "opencv", "threads": int(cv2.getNumThreads())})
    info["used"] = "detect.hog"

    path, source = find_yolox_model(detector_model)
    if path is None:
        info["yolox_missing"] = yolox_missing()
        log.debug("%s", info["yolox_missing"])
        return timings, found, info
    label = _yolox_stage_name(path)
    try:
        yolox = make_detector("auto", model=str(path), device=device, offline=True)
    except InputError as exc:
        if source != "installed":
            raise
        # A broken installed file should not stop the benchmark: say so, with the fix.
        info["yolox_missing"] = (f"YOLOX not measured: the installed {path} does not load ({str(exc).split(';')[0]}); "
                                 f"run `wbcap weights fetch {label}` or pass {setting('detector_model')} FILE.onnx")
        log.warning("%s", info["yolox_missing"])
        return timings, found, info
    runtime = str(getattr(yolox, "runtime", "onnxruntime"))
    threads = int(getattr(yolox, "threads", 1)) if runtime == "onnxruntime" else int(cv2.getNumThreads())
    size = int(getattr(yolox, "size", 0))
    name = f"detect.{label}"
    measure(name, yolox, {"detector": label, "model": str(path), "input_size": [size, size], "runtime": runtime,
                          "threads": threads})
    info.update(used=name, yolox_model=str(path), yolox_source=source)
    return timings, found, info
