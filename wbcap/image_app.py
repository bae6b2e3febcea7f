"""``wbcap image``: images in, one output folder per image out.

The CLI builds an :class:`ImageJob` and calls :func:`run_images`; notebooks can do the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wbcap.config import PipelineConfig
from wbcap.detect.base import Detection
from wbcap.detect.factory import make_detector
from wbcap.errors import InputError, NoPersonError, WbcapError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageJob:
    """What ``wbcap image`` was asked to do.

    boxes: fixed xywh boxes applied to every image (``--bbox``), or None.
    boxes_file: JSON of boxes per image name (``--boxes``), or None.
    detector: ``hog`` (OpenCV's people detector) or ``full`` (the whole image is one person).
    """

    paths: tuple[str, ...]
    out: str
    pipeline: PipelineConfig = PipelineConfig()
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    boxes_file: str | None = None
    detector: str = "hog"
    max_people: int | None = None
    render: bool = True


@dataclass(frozen=True)
class ImageResult:
    path: Path
    out_dir: Path | None
    people: int
    error: str | None


def run_images(job: ImageJob, pipeline=None, on_progress: Callable[[ImageResult], None] | None = None) -> list[ImageResult]:
    """Process every image of ``job``; a failing image is reported and the others go on.

    Returns one :class:`ImageResult` per input image (``error`` holds the one-line message).
    """
    from wbcap.detect.boxes import load_boxes_json
    from wbcap.export.image_outputs import write_image_outputs
    from wbcap.io.images import iter_image_paths, load_image
    from wbcap.pipeline import Pipeline

    paths = iter_image_paths(job.paths)
    if not paths:
        raise InputError(f"no images found in {', '.join(job.paths)}; pass image files, folders or globs")
    per_image_boxes = load_boxes_json(job.boxes_file) if job.boxes_file else None
    detector = None if (job.boxes is not None or per_image_boxes is not None) else make_detector(job.detector, max_people=job.max_people)
    if pipeline is None:
        pipeline = Pipeline.from_config(job.pipeline)
    out_root = Path(job.out).expanduser()
    results = []
    for path in paths:
        try:
            image = load_image(path)
            if job.boxes is not None:
                dets = [Detection(tuple(b), 1.0) for b in job.boxes]
            elif per_image_boxes is not None:
                dets = per_image_boxes.get(path.name)
                if not dets:
                    raise InputError(f"{path}: no entry for '{path.name}' in {job.boxes_file}; add its boxes or drop --boxes")
            else:
                dets = detector(image)
                if not dets:
                    raise NoPersonError(f"{path}: no person found by the {detector.name} detector; pass --bbox x,y,w,h or --full-image")
            if job.max_people is not None:
                dets = list(dets)[: job.max_people]
            people = pipeline.predict(image, dets, source=str(path))
            out_dir = write_image_outputs(
                out_root, path, image, people, pipeline.faces, gender=job.pipeline.body.gender, render=job.render
            )
            result = ImageResult(path, out_dir, len(people), None)
        except WbcapError as exc:
            result = ImageResult(path, None, 0, str(exc))
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    return results
