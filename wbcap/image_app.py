"""``wbcap image``: images in, one output folder per image out.

The CLI builds an :class:`ImageJob` and calls :func:`run_images`; notebooks can do the same.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from wbcap.config import PipelineConfig
from wbcap.detect.base import Detection, largest_first
from wbcap.detect.factory import make_detector
from wbcap.errors import InputError, NoPersonError, WbcapError, add_note, setting
from wbcap.export.animation import AnimationExport, check_export_setting
from wbcap.limits import check_people_limit

if TYPE_CHECKING:
    from wbcap.camera import LensCalibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageJob:
    """What ``wbcap image`` was asked to do.

    boxes: fixed xywh boxes applied to every image (``--bbox``), or None.
    boxes_file: JSON of boxes per image name (``--boxes``), or None.
    detector: a name :func:`wbcap.detect.factory.make_detector` takes (``auto``: YOLOX-nano when
    installed or downloadable, else HOG; ``hog``; ``yolox-s``; ``full``: the whole image is one
    person; ...); detector_model: a YOLOX ONNX file; score_threshold, min_height_frac: the
    detector's limits (its defaults when None); max_people: keep the largest boxes (then by
    score: :func:`~wbcap.detect.base.largest_first`; numbered in the detector's order);
    users_limit: ``max_people`` is the user's, so boxes it drops are a warning saying how to keep
    them (False: the caller's own choice, an information line; the demo's, on its drawing);
    offline: never download a detector. export: also write ``person_<k>/output.glb|bvh|fbx``
    (:func:`wbcap.export.image_outputs.person_animation`; none by default). write_openpose: also
    write ``person_<k>/output_keypoints.json`` (2D keypoints in OpenPose's JSON:
    :mod:`wbcap.export.openpose`). skip_done: a photo whose output folder holds a whole result of
    that same picture (``image_sha256``) with the files this job writes
    (:func:`wbcap.export.image_outputs.done_before`) is left as it is, not read nor regressed again
    (to finish an interrupted batch; its other settings are not compared). no_person_advice:
    the fix an image in which the detector found nobody is told (None: give the boxes,
    :func:`wbcap.pipeline.box_advice`; the demo, which takes none, says its own). calibration:
    the camera's lens calibration (:func:`wbcap.io.calibration.read_calibration`): each photo is
    undistorted into its undistorted camera as it is read (:class:`wbcap.io.undistort.Undistorter`;
    a photo of another shape fails alone), which the ``--export`` files are in; the OpenPose
    keypoints are put back into the photo's own pixels.
    """

    paths: tuple[str, ...]
    out: str
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    boxes_file: str | None = None
    detector: str = "auto"
    detector_model: str | None = None
    score_threshold: float | None = None
    min_height_frac: float | None = None
    max_people: int | None = None
    users_limit: bool = True
    offline: bool = False
    render: bool = True
    export: AnimationExport = field(default_factory=lambda: AnimationExport(formats=()))
    write_openpose: bool = False
    skip_done: bool = False
    no_person_advice: str | None = None
    calibration: LensCalibration | None = None

    def __post_init__(self) -> None:
        """Raises ValueError for a ``max_people`` that is neither None nor a whole number of 1 or
        more (:func:`wbcap.limits.check_people_limit`), and for ``boxes`` that hold no box (None
        runs the detector; `ImageJob(boxes=())` ended silently with nothing written: a review), and
        TypeError for an ``export`` that is not an AnimationExport."""
        check_people_limit(self.max_people)
        check_export_setting(self.export)
        if self.boxes is not None and len(self.boxes) == 0:
            raise ValueError("boxes () holds no box: give at least one (x, y, w, h), or None to detect the people")


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome: ``out_dir`` its output folder and ``people`` how many were written;
    or ``error``, its one line (nothing written); or neither, ``people`` 0 and ``out_dir``
    None: a box file's entry said nobody is in it (``[]``), so nothing was to be written
    (``earlier``: an earlier result's folder there, left as it was)."""

    path: Path
    out_dir: Path | None
    people: int
    error: str | None
    #: Where nothing was written (no error): the folder of an earlier result of the image, left as it was.
    earlier: Path | None = None
    #: The result in ``out_dir`` was there before (``skip_done``): nothing was done for this photo.
    skipped: bool = False


#: Stages :func:`run_images` reports through ``on_stage``, in order: ``reading`` the first image,
#: ``loading detector`` once (when a detector runs), then per image ``reading`` (but the first),
#: ``detecting`` (when a detector runs), ``loading model`` once (when it builds the pipeline: before
#: the first image with people to regress), ``regressing``, ``rendering`` (unless ``render`` is
#: off) and ``writing``.
STAGES = ("reading", "loading detector", "detecting", "loading model", "regressing", "rendering", "writing")
#: Up to this many photos the pipeline is built for a few network calls, one per photo
#: (:class:`Pipeline`'s ``few_calls``: each part in the form whose measured build time and calls
#: cost least, :meth:`~wbcap.model.strategy.PartChoice.for_few_calls`; onnxruntime never; a CPU
#: strategy this machine has not measured yet is not measured for them, the default form runs). On the
#: Zen 3 EPYC (exact, one person) skipping onnxruntime took the load and first call from 1.49 to
#: 1.38 s (medians of 6 paired runs) and the peak memory from 1330 to 1049 MB; the onnxruntime
#: sessions it skips save ~45 ms per one-person photo once built, so they are worth building from
#: a few more photos on. Counted in the photos left when the model loads (at the first photo with
#: people, after its detection), not in people (the later photos' are not detected yet): a photo of several people gains little from them, its body crops going in calls of
#: 2-4, where the fused body ResNet measured as fast as the session there (72 against 78 ms per
#: image at 4 per call), and its hand crops in the hand network's main form anyway.
FEW_PHOTOS = 4


def _check_box_keys(paths: list[Path], job: ImageJob, table: dict) -> None:
    """A boxes file is keyed by file name: two inputs with one name would get the same boxes, and
    inputs the file has no entry for are refused, before any work (a user trial: the photos before
    such an input were processed, then it failed, leaving a partial output); keys that name none of
    the inputs are said in one warning (as `wbcap run` says them), their boxes unused (a user
    trial: a typo in a key went unsaid, where the photo it meant then had "no entry").

    Raises:
        InputError: two inputs share a name; inputs without an entry (how many, the first three,
            and the keys that name no input: a typo's two ends).
    """
    seen: dict[str, Path] = {}
    for path in paths:
        if path.name in seen:
            raise InputError(
                f"{seen[path.name]} and {path} share the file name '{path.name}', by which {job.boxes_file} "
                f"gives boxes; process them in separate runs, each with its own {_box_file_option(job)} file"
            )
        seen[path.name] = path
    unmatched = [key for key in table if key not in seen]
    absent = [path.name for path in paths if path.name not in table]
    if absent:
        which = repr(absent[0]) if len(absent) == 1 else (
            f"{len(absent)} of the {len(paths)} inputs (e.g. {', '.join(map(repr, absent[:3]))})")
        typos = f" (keys that name no input: {', '.join(map(repr, unmatched[:3]))})" if unmatched else ""
        whose = "its" if len(absent) == 1 else "their"
        raise InputError(f"{job.boxes_file}: no entry for {which}{typos}; add {whose} boxes (an empty list for an "
                         f"image with nobody) or drop {_box_file_option(job)}")
    if unmatched:
        log.warning("%s: %d of %d keys name no input image (e.g. %s); their boxes are ignored", job.boxes_file,
                    len(unmatched), len(table), ", ".join(repr(k) for k in unmatched[:3]))


def _box_file_option(job: ImageJob) -> str:
    """How messages name the setting that gave ``job``'s box file: ``--boxes``, or ``--detector
    boxes:FILE`` when it came that way (:func:`_boxes_spec_as_file`)."""
    return f"{setting('detector')} boxes:FILE" if job.detector.startswith("boxes:") else setting("boxes_file")


def run_images(
    job: ImageJob,
    pipeline=None,
    on_progress: Callable[[ImageResult], None] | None = None,
    on_stage: Callable[[str, Path | None], None] | None = None,
    paths: list[Path] | None = None,
) -> list[ImageResult]:
    """Process every image of ``job``; a failing image is reported and the others go on.

    Output folders are ``OUT/<name>/`` with names from
    :func:`wbcap.export.image_outputs.output_names` (the stem, unless two inputs share one).
    Name clashes, output folders that are not earlier wbcap results and inputs a box file has no
    entry for are refused before any work. Without ``pipeline`` the model loads for the first
    image with people to regress (after its detection; not at all when there is none): an error
    in loading it (a damaged checkpoint...) ends the command there, raised after the earlier
    images' ``on_progress`` calls.

    Args:
        pipeline: a ready :class:`~wbcap.pipeline.Pipeline` (default: built from ``job.pipeline``).
        on_progress: called with each image's :class:`ImageResult` when it is done.
        on_stage: called with ``(stage, image path or None)`` when a stage starts (:data:`STAGES`).
        paths: ``job.paths`` already expanded by :func:`wbcap.io.images.iter_image_paths` (the
            command line does, to size its progress bar); default: expanded here.

    Returns one :class:`ImageResult` per input image (``error`` holds the one-line message).
    An unexpected (non-:class:`WbcapError`) exception propagates with a note naming the image.

    With ``job.render`` and no ``pipeline`` given, the renders are drawn by a
    :class:`~wbcap.export.render_process.RenderProcess` started first, so that its imports and GL
    set-up run beside loading the model instead of beside the network (with a ready pipeline
    there is nothing to hide them behind: the renderer is imported here, once per process).
    A bad ``$WBCAP_RENDERER`` or ``$WBCAP_RENDER_PROCESS`` raises InputError before anything else.
    """
    from wbcap.io.images import iter_image_paths

    job = _boxes_spec_as_file(job)
    job.export.check_available()
    render_process = None
    if job.render:
        from wbcap.export.render import check_renderer_setting
        from wbcap.export.render_process import render_process_setting

        check_renderer_setting()
        render_process_setting()  # refused here even when a ready pipeline means no render process
    if paths is None:  # once: the render size hint and the run share the list
        paths = iter_image_paths(job.paths)
    if not paths:
        raise InputError(f"no images found in {', '.join(job.paths)}; pass image files, folders or globs")
    if job.render and pipeline is None:
        from wbcap.export.render_process import RenderProcess

        render_process = RenderProcess.start_if_useful(sizes=_render_sizes(job, paths[0]))
    try:
        return _run_images(job, paths, pipeline, on_progress, on_stage,
                           None if render_process is None else _here_when_large(render_process.render_meshes))
    finally:
        if render_process is not None:
            render_process.close()


def _here_when_large(remote: Callable[..., object]) -> Callable[..., object]:
    """``remote`` (the render process's ``render_meshes``), but an image of more than
    :data:`wbcap.export.render.WINDOW_PIXELS` is drawn in this process: sending it there and its
    result back copies it several times over (a 100-megapixel photo: 1.8 GB more at the peak)."""
    from wbcap.export.render import WINDOW_PIXELS, render_meshes

    def render(image, *args, **kwargs):
        if image.shape[0] * image.shape[1] > WINDOW_PIXELS:
            return render_meshes(image, *args, **kwargs)
        return remote(image, *args, **kwargs)

    return render


def _render_sizes(job: ImageJob, first_path: Path) -> list[tuple[int, int]]:
    """``(height, width)`` of the crops and of the first image (from its headers): the sizes
    the renders will be drawn at, the first image's last (its overlay is drawn first). A hint
    for the render process: an image whose size cannot be read only goes without, and so does
    one of more than :data:`wbcap.export.render.WINDOW_PIXELS`, drawn in this process
    (:func:`_here_when_large`)."""
    from wbcap.export.render import WINDOW_PIXELS
    from wbcap.io.images import image_size

    sizes = [tuple(job.pipeline.model.input_img_shape)]
    try:
        first = image_size(first_path)
    except Exception:  # a hint only: the image's own turn reports what is wrong with it
        log.debug("no render size hint from the first image", exc_info=True)
        first = None
    return sizes if first is None or first[0] * first[1] > WINDOW_PIXELS else [*sizes, first]


def check_size(path: Path | str, width: int, height: int, what: str = "image", fix: str = "use a larger image") -> None:
    """Refuse pictures in which no person box can be cropped (a side of one pixel: the crop's own
    rule, :func:`wbcap.crop.bbox.sanitize_bbox` on the whole picture), before any detector or
    box: no box, the whole picture's included, would do, so advice to pass one would mislead.
    The one rule of ``wbcap image`` (``what`` "image") and ``wbcap run`` (a video's frames, an
    image sequence's images: :func:`wbcap.video_app.run_video`).

    Raises:
        InputError: naming ``path``, ``what`` is ``width`` x ``height`` pixels, and ``fix``.
    """
    from wbcap.crop.bbox import sanitize_bbox

    if sanitize_bbox((0.0, 0.0, float(width), float(height)), width, height) is None:
        raise InputError(f"{path}: the {what} is {width}x{height} pixels, too small to hold a person box (it needs at "
                         f"least 2 pixels a side); {fix}")


def _check_size(path: Path, image) -> None:
    """:func:`check_size` of a loaded ``(H, W, 3)`` image."""
    h, w = image.shape[:2]
    check_size(path, w, h)


def _read_photo(job: ImageJob, path: Path, undistorters: dict | None = None):
    """``(image, undistorter)``: the photo at ``path`` read and checked
    (:func:`~wbcap.io.images.load_image`, :func:`_check_size`), undistorted with ``job.calibration``
    (its :class:`~wbcap.io.undistort.Undistorter`; None without one), one per photo size kept in
    ``undistorters`` (a batch's photos: its tables made and how it fits said once).

    Raises:
        InputError: an unreadable or too small photo, or one of another shape than the
            calibration's (named with the photo).
    """
    from wbcap.io.images import load_image

    image = load_image(path)
    _check_size(path, image)
    if job.calibration is None:
        return image, None
    from wbcap.io.undistort import Undistorter

    size = (image.shape[1], image.shape[0])
    undistorters = {} if undistorters is None else undistorters
    if size not in undistorters:
        try:
            undistorters[size] = Undistorter(job.calibration, size, pictures="photos")
        except InputError as exc:
            undistorters[size] = exc
    made = undistorters[size]
    if isinstance(made, InputError):
        raise InputError(f"{path}: {made}")
    return made(image), made


def _failed(path: Path, out_dir: Path, exc: WbcapError) -> ImageResult:
    """The result of an image that failed with ``exc``: its one line, which says so when an
    earlier result of the image stays in its output folder ``out_dir`` (a failed image writes
    nothing), so that it is not taken for this run's."""
    note = f"; its earlier result in {out_dir} was left unchanged" if out_dir.is_dir() else ""
    return ImageResult(path, None, 0, f"{exc}{note}")


def _boxes_spec_as_file(job: ImageJob) -> ImageJob:
    """``detector="boxes:FILE"`` (``wbcap run``'s spelling of a box file, which ``wbcap image``'s
    detector list names too) as ``boxes_file=FILE``, the same JSON keyed by image file name
    (``detector`` stays, for the messages: no detector is built where a box file gives the boxes).

    Raises:
        InputError: no FILE; boxes given another way as well.
    """
    if not job.detector.startswith("boxes:"):
        return job
    file = job.detector[len("boxes:"):]
    if not file.strip():
        raise InputError(f"{setting('detector')} {job.detector}: names no file; give boxes:FILE, a JSON of person "
                         "boxes per image file name")
    if job.boxes is not None or job.boxes_file is not None:
        given = setting("boxes") if job.boxes is not None else setting("boxes_file")
        raise InputError(f"{setting('detector')} {job.detector} and {given} both give the boxes; keep one")
    return replace(job, boxes_file=file)


def _person_boxes(job: ImageJob, path: Path, image, detector, per_image_boxes: dict | None, stage,
                  limited: list[Path] | None = None, lens=None) -> list[Detection]:
    """The person boxes of ``image`` (read from ``path``) to regress: ``job.boxes``, its entry in
    the box file (``per_image_boxes``, every input's entry checked to be there by
    :func:`_check_box_keys`) or ``detector``'s, at most ``job.max_people`` of them.
    ``limited``: the photos whose boxes the user's limit cut so far, ``path`` appended where it
    does: the first is a warning, later ones information lines (a batch trial's 200 photos gave a
    warning each, burying the errors), and :func:`_say_limited` sums them up. ``lens``: the photo's
    :class:`~wbcap.io.undistort.Undistorter` (``image`` is undistorted): the user's boxes, given in
    the photo's own pixels, are moved into it (:meth:`~wbcap.io.undistort.Undistorter.box`).

    Raises:
        NoPersonError: the detector found nobody. (A box file's entry that lists no box gives [].)
    """
    from wbcap.pipeline import box_advice

    if job.boxes is not None or per_image_boxes is not None:
        # (an entry with no box, [], says nobody is in it: nothing to do)
        dets = ([Detection(tuple(b), 1.0) for b in job.boxes] if job.boxes is not None
                else per_image_boxes[path.name])
        if lens is not None:
            dets = [replace(d, box=lens.box(d.box)) for d in dets]
    else:
        stage("detecting", path)
        dets = detector(image)
        if not dets:
            small = "" if lens is None else lens.small_people()  # (a very wide lens's photo: people at 0.12 scale)
            raise NoPersonError(f"{path}: no person found by the {detector.name} detector; "
                                + (f"{small}; or " if small else "") + f"{job.no_person_advice or box_advice()}")
    if job.max_people is not None and len(dets) > job.max_people:
        given = job.boxes is not None  # (--bbox: all of score 1, kept in the order given)
        ranked = range(len(dets)) if given else sorted(range(len(dets)), key=lambda i: largest_first(dets[i]))
        which = "the first given" if given else "the largest"
        if limited is not None:
            limited.append(path)
        if job.users_limit and (limited is None or len(limited) == 1):
            log.warning("%s: kept %d of %d person boxes (%s); raise %s to keep more", path, job.max_people,
                        len(dets), which, setting("max_people"))
        else:  # (later photos: _say_limited sums them up; a caller's own limit: it told the demo's user to raise a
            # flag the demo has not)
            log.info("%s: kept %d of %d person boxes (%s)", path, job.max_people, len(dets), which)
        chosen = set(list(ranked)[: job.max_people])
        # (in the order they came: people are numbered alike with and without a limit, a break-it trial)
        dets = [d for i, d in enumerate(dets) if i in chosen]
    return dets


def _run_images(job, paths: list[Path], pipeline, on_progress, on_stage, renderer) -> list[ImageResult]:
    from wbcap.atomic import check_writable_destination
    from wbcap.export.image_outputs import check_output_folder, output_names

    def stage(name: str, path: Path | None) -> None:
        if on_stage is not None:
            on_stage(name, path)

    out_root = Path(job.out).expanduser()
    from wbcap.io.run_folder import refuse_output_inside_a_run

    refuse_output_inside_a_run(out_root, itself=True)  # (a run's --overwrite would refuse the photos' folders)
    names = output_names(paths)
    for name in names:
        check_output_folder(out_root / name, out_root)
    check_writable_destination(out_root)
    # the folders writing will make: -o, those above it, those between it and each photo's folder
    # (`a/x`, `b/x` for two photos named x.jpg), deepest first
    made = sorted({f for name in names for f in (out_root / name).parents if not f.exists()},
                  key=lambda f: len(f.parts), reverse=True)
    try:
        return _regress_images(job, paths, names, out_root, pipeline, on_progress, stage, renderer)
    finally:
        for folder in made:  # (left empty: no photo written there, a full disk...: nothing is left behind)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _regress_images(job, paths: list[Path], names: list[str], out_root: Path, pipeline, on_progress, stage,
                    renderer) -> list[ImageResult]:
    """:func:`_run_images` once ``out_root`` is checked: each photo read, detected, regressed and written."""
    from wbcap.detect.boxes import load_boxes_json
    from wbcap.export.image_outputs import done_before, result_files, write_image_outputs
    from wbcap.pipeline import Pipeline

    per_image_boxes = load_boxes_json(job.boxes_file) if job.boxes_file else None
    if per_image_boxes is not None:
        _check_box_keys(paths, job, per_image_boxes)
    results = []

    def done(result: ImageResult) -> None:
        results.append(result)
        if on_progress is not None:
            on_progress(result)

    # (--skip-done: the photos done before, found first: none of them is read, and with all done
    # nothing is loaded, the detector included: a break-it review)
    wanted = result_files(job.render, job.write_openpose, job.export)  # (a result without them is not done)
    skipped = {i: n for i, n in ((i, done_before(out_root / name, path, wanted) if job.skip_done else None)
                                 for i, (path, name) in enumerate(zip(paths, names))) if n is not None}
    todo = [i for i in range(len(paths)) if i not in skipped]
    if not todo:
        for i, people in skipped.items():
            done(ImageResult(paths[i], out_root / names[i], people, None, skipped=True))
        return results
    # The first image is read before anything is loaded (the model files looked for, the detector
    # made): one unreadable photo is said in a moment. Each image is read and detected before the
    # model loads, which it does for the first one with people (below).
    stage("reading", paths[todo[0]])
    undistorters: dict = {}  # (by photo size: _read_photo)
    try:
        first: object = _read_photo(job, paths[todo[0]], undistorters)  # ((the image array, its undistorter), or the error)
    except WbcapError as exc:
        first = exc
        if len(paths) == 1:
            done(_failed(paths[0], out_root / names[0], exc))
            return results
    except Exception as exc:
        add_note(exc, f"while processing {paths[todo[0]]}")
        raise
    if pipeline is None:
        # a missing model file or checkpoint: one line before any detector's notice or download
        from wbcap.pipeline import check_model_files

        check_model_files(job.pipeline, warn=False)  # (the load below says what it finds)
    detector = None
    if job.boxes is None and per_image_boxes is None:
        stage("loading detector", None)
        detector = make_detector(job.detector, model=job.detector_model, device=job.pipeline.device,
                                 score_threshold=job.score_threshold, min_height_frac=job.min_height_frac,
                                 offline=job.offline)  # (max_people below: said when it drops)
    limited: list[Path] = []  # (the photos whose boxes --max-people cut: _person_boxes)
    for i, (path, name) in enumerate(zip(paths, names)):
        if i in skipped:
            done(ImageResult(path, out_root / name, skipped[i], None, skipped=True))
            continue
        try:
            if i == todo[0]:
                if isinstance(first, WbcapError):
                    raise first
                (image, lens), first = first, None
            else:
                stage("reading", path)
                image, lens = _read_photo(job, path, undistorters)
            dets = _person_boxes(job, path, image, detector, per_image_boxes, stage, limited, lens)
        except WbcapError as exc:
            done(_failed(path, out_root / name, exc))
            continue
        except Exception as exc:
            add_note(exc, f"while processing {path}")
            raise
        if not dets:  # (the box file says nobody is in it, as the README has `[]` say: not a failure, a user trial)
            earlier = out_root / name
            done(ImageResult(path, None, 0, None, earlier if earlier.is_dir() else None))
            continue
        if pipeline is None:
            # Built for the first photo with people to regress, after its detection: photos that are
            # all unreadable or empty of people are said without loading the model (seconds; more
            # than a few photos on a machine's first run: 10-30 s more, measuring its CPU strategy). Its
            # errors (a damaged checkpoint...) end the command: they are no one photo's.
            stage("loading model", None)
            left = len(paths) - i  # (the photos this pipeline may regress)
            pipeline = Pipeline.from_config(job.pipeline, few_calls=left if left <= FEW_PHOTOS else 0)
        try:
            stage("regressing", path)
            people = pipeline.predict(image, dets, source=str(path))
            out_dir = write_image_outputs(
                out_root, path, image, people, pipeline.faces, gender=job.pipeline.body.gender, render=job.render,
                name=name, on_stage=lambda s, path=path: stage(s, path), export=job.export,
                body=pipeline.regressor.body, renderer=renderer, openpose=job.write_openpose, lens=lens,
            )
            result = ImageResult(path, out_dir, len(people), None)
        except WbcapError as exc:
            result = _failed(path, out_root / name, exc)
        except Exception as exc:
            add_note(exc, f"while processing {path}")
            raise
        done(result)
    _say_limited(job, limited)
    return results


def _say_limited(job: ImageJob, limited: list[Path]) -> None:
    """One warning for the photos after the first whose boxes the user's ``max_people`` cut
    (:func:`_person_boxes` warned of the first; information lines name the others)."""
    if job.users_limit and len(limited) > 1:
        log.warning("kept at most %d person box(es) in %d photos in all (the first, %s, said above; the others in "
                    "information lines); raise %s to keep more", job.max_people, len(limited), limited[0],
                    setting("max_people"))
