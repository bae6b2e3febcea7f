"""``wbcap run``: video (or image sequence) in, tracked and smoothed SMPL-X people out.

Two passes, so memory stays flat however long the video is and an interrupted run resumes:

1. **regress** (:func:`regress_frames`) — frames are decoded and people detected (in a
   background thread where cores are spare: :mod:`wbcap.detect.thread`); person crops from several frames are batched
   through the network (:mod:`wbcap.model.batching`); each processed frame's detections and raw
   parameters are appended, in frame order, to ``OUT/.wbcap/raw.jsonl`` (flushed as it goes:
   :mod:`wbcap.io.raw_records`). ``--resume`` keeps the complete lines already there and
   continues after them.
2. **finalize** (:func:`finalize`) — the raw file is read back; boxes are tracked (IoU +
   Hungarian: :mod:`wbcap.track.collect`); each person's parameters are moved into one camera
   for the whole video (:func:`wbcap.camera.shared_camera_translation`) and smoothed per track
   (:mod:`wbcap.smooth.track`); with ``--world`` the ground is estimated from the feet and each
   track's translation corrected so that planted feet stay still on it (:mod:`wbcap.world`); and
   written: ``params.jsonl`` (:mod:`wbcap.export.params_jsonl`; camera frame, plus per-foot
   contacts with ``--world``), ``meta.json`` (clock, camera, tracks, frame and ground:
   :func:`wbcap.io.run_folder.write_meta`), ``track_<id>.npz`` (an AMASS file, z-up, on a regular
   clock, in the camera's or the ground's world: :mod:`wbcap.export.track_npz`) and the animation files of ``--export``
   (``track_<id>.glb|bvh|fbx`` from the same clock: :mod:`wbcap.export.animation`), optional ``meshes/<track>/<frame>.obj``
   (:mod:`wbcap.export.track_meshes`; with ``--world`` the corrected tracks, in the camera's axes, as ``render.mp4`` shows them), and ``render.mp4`` (the
   source frames decoded again with every tracked mesh drawn over them, as the animation files
   show it: with ``--world`` the corrected tracks seen from the source camera; source audio
   copied: :mod:`wbcap.export.video_render`).

Every output file is written under a temporary name and renamed when complete (the folder's
layout: :mod:`wbcap.io.run_folder`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wbcap.camera import ImageCamera, LensCalibration, camera_to_dict
from wbcap.config import PipelineConfig
from wbcap.console import shell_word
from wbcap.errors import JSON_ERRORS, InputError, add_note, in_command, setting
from wbcap.export.animation import AnimationExport, check_export_setting
from wbcap.export.colors import COLOR_SCHEME
from wbcap.io.frame_times import MAX_FPS
from wbcap.io.progress import Progress, add_time, expected_frames
from wbcap.io.raw_records import RawWriter, detected_boxes, detected_looks, has_records, read_raw, record_size, start_raw
from wbcap.io.run_folder import (
    MESHES_DIR,
    PARAMS_FILE,
    PREVIOUS_DIR,
    RENDER_FILE,
    TypedPath,
    absolute_path,
    clear_pass_one_done,
    discard_previous,
    done_writing,
    file_identity,
    fingerprint,
    finish_keypoints,
    has_keypoints,
    hold_folder,
    keypoint_written,
    mark_pass_one_done,
    missing_body_model,
    pass_one_done,
    pass_one_ended_early,
    prepare_output,
    raw_path,
    read_meta,
    refuse_foreign_keypoints,
    refuse_other_resume,
    refuse_output_inside_a_run,
    refuse_taken_output,
    remove_outputs,
    remove_temporary_files,
    restore_previous,
    start_keypoints,
    start_writing,
    write_meta,
)
from wbcap.limits import CUT_THRESHOLD, DEFAULT_IMAGE_FPS, MAX_FOCAL, MIN_FOCAL, check_people_limit, is_finite_number
from wbcap.smooth.sequence import SmoothConfig
from wbcap.track.cuts import FrameChange
from wbcap.track.iou_tracker import TrackerConfig
from wbcap.versions import library_versions

if TYPE_CHECKING:
    from wbcap.io.video_probe import VideoInfo
    from wbcap.world.estimate import WorldConfig, WorldResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    """What ``wbcap run`` was asked to do (built once by the CLI).

    start/end: seconds of the source to process; every: keep every N-th frame; max_frames:
    stop after this many processed frames; image_fps: frames per second of an image folder or
    glob (image k at k / image_fps seconds; a video keeps its own rate). detector: a name
    :func:`wbcap.detect.factory.make_detector` takes (``auto``, ``hog``, ``yolox-nano``, ...,
    ``boxes:FILE`` with FILE a JSON ``{"<frame index>": [[x, y, w, h], ...]}``); detector_model:
    a YOLOX ONNX file; offline: never download a detector. focal: focal length
    in pixels of the one camera results are expressed in, from :data:`MIN_FOCAL` to :data:`MAX_FOCAL`
    (default ``sqrt(W^2 + H^2)``, a ~53° diagonal field of view, the usual guess when the real
    camera is unknown). principal_point: ``(cx, cy)`` pixels of that camera (default the picture's
    centre); with ``focal``, a calibrated camera's intrinsics (square pixels; of the picture as
    wbcap reads it: upright, non-square pixels made square, undistorted by the user). calibration:
    the camera's calibration (:func:`wbcap.io.calibration.read_calibration`): every frame is
    undistorted (:class:`wbcap.io.undistort.Undistorter`) into its undistorted camera, the run's
    camera (:func:`run_camera`); not with ``focal`` or ``principal_point``. max_gap: seconds (finite, >= 0) a track may be missed and still be one
    AMASS file (filled by interpolation, ``valid`` False); a longer gap splits it into
    ``track_<id>_part<k>.npz``. export: the per-track files (``npz`` always; ``glb`` by default,
    ``bvh``, ``fbx``; :class:`wbcap.export.animation.AnimationExport`).
    world: estimate the ground and plant the feet (:mod:`wbcap.world`) and write the per-track
    files in that world; None: the camera's frame. command: the words ``wbcap`` was run with,
    after ``wbcap`` (the CLI's; empty from the Python API): ``run.json`` records them with the
    working folder (:data:`wbcap.io.run_folder.COMMAND`) so that an interrupted run's hints give
    the whole command; not a setting.
    """

    source: str
    out: str
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    start: float = 0.0
    end: float | None = None
    every: int = 1
    max_frames: int | None = None
    image_fps: float = DEFAULT_IMAGE_FPS
    detector: str = "auto"
    detector_model: str | None = None
    score_threshold: float | None = None
    min_height_frac: float | None = None
    max_people: int | None = None
    offline: bool = False
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    smooth: SmoothConfig = field(default_factory=SmoothConfig)
    focal: float | None = None
    principal_point: tuple[float, float] | None = None
    calibration: LensCalibration | None = None
    max_gap: float = 1.0
    write_obj: bool = False
    write_openpose: bool = False
    export: AnimationExport = field(default_factory=AnimationExport)
    world: WorldConfig | None = None
    render: bool = True
    resume: bool = False
    overwrite: bool = False
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Completes and checks the job, so every caller gets what ``wbcap run`` gets: ``npz``
        joins ``export.formats`` (the run folder always holds ``track_<id>.npz``, which ``wbcap
        view`` and ``wbcap export`` read). The people limit is ``max_people`` alone (pass 1's
        chooser reads it, :func:`_tracker_config`; pass 2 tracks the boxes it kept).

        Raises:
            TypeError: ``export`` that is not an :class:`AnimationExport` (``"glb,bvh"`` failed with an
                AttributeError: a docs audit).
            ValueError: ``max_people`` not None nor a whole number of 1 or more (0 dropped every
                box, 2.5 crashed after the model loaded: a break-it trial), or
                ``tracker.max_people`` set (a second place for the limit: set ``max_people``).
        """
        check_export_setting(self.export)
        if self.export.start_at_zero:  # (a run folder's files are on the source's clock: wbcap view plays them so)
            raise ValueError("export.start_at_zero: a run folder's files stay on the source's clock, on which wbcap "
                             "view plays them over the video; write zero-based files with wbcap export --dest")
        if "npz" not in self.export.formats:
            object.__setattr__(self, "export", replace(self.export, formats=("npz", *self.export.formats)))
        check_people_limit(self.max_people)
        if self.tracker.max_people is not None:
            raise ValueError(f"tracker.max_people {self.tracker.max_people}: the people limit of a video job is "
                             "VideoJob.max_people (pass 1's choice of people reads it); set that instead")

    @property
    def frame_step(self) -> int:
        """Source frames between two processed ones (``every``, at least 1): the tracker's stride,
        the clock's divisor and meta.json's ``frame_step``."""
        return max(1, int(self.every))


@dataclass(frozen=True)
class VideoResult:
    """What :func:`run_video` did: the output folder, the frames processed, the person-frames
    regressed, the ids of the tracks written (their rows are in ``out/params.jsonl``:
    :func:`wbcap.export.params_jsonl.read_params_jsonl`), ``render.mp4`` or None, and the stages'
    seconds."""

    out: Path
    frames: int
    person_frames: int
    tracks: list[int]
    render: Path | None
    timings: dict[str, float] = field(default_factory=dict)


#: The ``--detector`` forms that name a file (``boxes:FILE``, ``yolox:FILE``): ``run.json``
#: records the file absolute, as the other paths (:func:`_detector_setting`).
_FILE_DETECTORS = ("boxes:", "yolox:")


def _detector_file(detector: str) -> tuple[str, str] | None:
    """``(prefix, file)`` of a ``--detector`` naming a file (:data:`_FILE_DETECTORS`), else None."""
    prefix = next((p for p in _FILE_DETECTORS if detector.startswith(p)), None)
    return None if prefix is None else (prefix, detector[len(prefix):])


def _detector_setting(detector: str) -> str:
    """``--detector`` as ``run.json`` records it: the file of ``boxes:FILE`` or ``yolox:FILE``
    absolute (:func:`wbcap.io.run_folder.absolute_path`), a name as it is."""
    named = _detector_file(detector)
    return detector if named is None else named[0] + absolute_path(named[1])


def _typed_paths(job: VideoJob) -> dict[str, TypedPath]:
    """The files and folders of :func:`_fingerprint` as the user typed them (it records them
    absolute), by their keys there: for :func:`wbcap.io.run_folder.prepare_output`."""
    p = job.pipeline
    detector = _detector_file(job.detector)
    return {"detector_model": job.detector_model, "checkpoint": p.checkpoint, "body.path": p.body.path,
            **({"detector": detector} if detector is not None else {})}


#: The ``wbcap run`` option (by its parameter name) that sets each key of :func:`_fingerprint`,
#: dotted into its groups: a refused resume names them so (:func:`wbcap.errors.setting`).
_OPTION_KEYS = {
    **{k: k for k in ("start", "end", "every", "max_frames", "detector", "detector_model", "score_threshold",
                      "min_height_frac", "max_people", "checkpoint", "precision", "image_fps")},
    "body.path": "body_models", "body.gender": "gender", "body.allow_pickle": "allow_pickle",
    "model.fix_left_hand_flip": "fix_left_hand_flip", "calibration": "calibration",
    **{f"calibration.{k}": "calibration" for k in ("image_size", "matrix", "distortion", "fisheye", "name",
                                                   "undistortion")},
    "calibration.scale": "undistort_scale",
    "people_limit.iou_threshold": "iou_threshold", "people_limit.max_age": "max_age",
    "people_limit.cut_threshold": "cut_threshold", "people_limit.no_cuts": "no_cuts",
    "people_limit.no_appearance": "no_appearance", "people_limit.reid_age": "reid_age",
}


def _fingerprint(job: VideoJob) -> dict:
    """What pass 1's results depend on (a resumed run must match it); the files and folders the
    user named as absolute paths (:func:`wbcap.io.run_folder.absolute_path`)."""
    from wbcap.pipeline import normalize_precision

    p = job.pipeline
    # With --max-people, pass 1 chooses boxes with the tracker (PeopleLimit): its settings too (the
    # cut threshold where not the default: runs made before it was one match).
    limit = {k: getattr(job.tracker, k) for k in ("iou_threshold", "max_age", "motion", "velocity_smoothing")}
    if not job.tracker.appearance:  # (these two where not the default: runs made before looks match)
        limit["no_appearance"] = True
    if job.tracker.reid_age != TrackerConfig.reid_age and job.tracker.appearance:  # (no effect without looks)
        limit["reid_age"] = job.tracker.reid_age
    if job.tracker.cut_threshold is None:  # (its own key: a refusal then names --no-cuts)
        limit["no_cuts"] = True
    elif job.tracker.cut_threshold != CUT_THRESHOLD:
        limit["cut_threshold"] = job.tracker.cut_threshold
    chooser = {} if job.max_people is None else {"people_limit": limit}
    return fingerprint(job.source, {
        "start": job.start, "end": job.end, "every": job.every, "max_frames": job.max_frames,
        "detector": _detector_setting(job.detector), "detector_model": absolute_path(job.detector_model),
        "score_threshold": job.score_threshold, "min_height_frac": job.min_height_frac, "max_people": job.max_people,
        "checkpoint": absolute_path(p.checkpoint), "body": {**asdict(p.body), "path": absolute_path(p.body.path)},
        "model": p.model.to_dict(),
        "precision": normalize_precision(p.precision),
        "box_scale": p.box_scale, **chooser,
        **({"image_fps": job.image_fps} if job.image_fps != DEFAULT_IMAGE_FPS else {}),  # (runs before --fps: 30)
        # (pass 1 reads undistorted frames: the lens's values, not where its file lies)
        **({"calibration": _calibration_record(job.calibration)} if job.calibration is not None else {}),
    })


def _calibration_record(calibration: LensCalibration) -> dict:
    """What a resume must match of a run's calibration: its values
    (:meth:`~wbcap.camera.LensCalibration.to_dict` without ``file``: the file may move; nor the
    camera's pose: pass 2, done again on every resume, alone uses it) and the
    undistortion's version (:data:`~wbcap.camera.UNDISTORTION_VERSION`: a run whose frames were
    undistorted otherwise, into another camera, is not continued: a review)."""
    from wbcap.camera import UNDISTORTION_VERSION

    record = calibration.to_dict(pose=False)
    record.pop("file")
    return {**record, "undistortion": UNDISTORTION_VERSION}


def _undistorter(job: VideoJob, info: VideoInfo):
    """The frames' :class:`~wbcap.io.undistort.Undistorter` (quiet: pass 1 said how it fits), or
    None without a calibration."""
    if job.calibration is None:
        return None
    from wbcap.io.undistort import Undistorter

    return Undistorter(job.calibration, (info.width, info.height), quiet=True)


def _refuse_other_undistortion(out: Path) -> None:
    """Refuse a resume of a run whose frames were undistorted by another version of wbcap's
    undistortion (:data:`~wbcap.camera.UNDISTORTION_VERSION`: into another camera), in words that
    say so (the settings' refusal said to give the run's own calibration, which was given: a
    review); nothing for runs without a calibration or of this version.

    Raises:
        InputError: naming the folder and ``--overwrite``.
    """
    from wbcap.camera import UNDISTORTION_VERSION
    from wbcap.io.run_folder import read_run_file

    try:
        recorded = (read_run_file(out) or {}).get("calibration")
    except (InputError, OSError, ValueError):
        return
    if isinstance(recorded, dict) and recorded.get("undistortion") != UNDISTORTION_VERSION:
        raise InputError(f"{out}: its frames were undistorted by an earlier wbcap (another undistorted camera), so the "
                         f"run cannot go on with this one's; use {setting('overwrite', api='overwrite=True')} to start "
                         "it over")


def run_camera(job: VideoJob, info: VideoInfo, lens: Any = None) -> ImageCamera:
    """The one camera of ``job``'s results for frames of ``info``'s size: ``lens``'s (the frames'
    :class:`~wbcap.io.undistort.Undistorter`, :func:`_undistorter`: the camera they are undistorted
    into), else :meth:`ImageCamera.default` with ``focal`` and ``principal_point``."""
    if lens is not None:
        return lens.camera
    camera = ImageCamera.default((info.width, info.height), job.focal)
    if job.principal_point is not None:  # (a calibrated camera's: a calibrated researcher's trial)
        camera = replace(camera, princpt=(float(job.principal_point[0]), float(job.principal_point[1])))
    return camera


def _command(job: VideoJob, files: dict[str, dict | None], detector: Any = None) -> dict | None:
    """What ``run.json`` records of the command (:data:`wbcap.io.run_folder.COMMAND`): its words,
    working folder and output folder (resolved), and the environment variables through which
    ``files`` (:func:`_files`) or the ``detector``'s weights (a YOLOX found by name, e.g. in
    ``WBCAP_HOME``: ``model_path``) were found (:func:`wbcap.paths.variables_finding`); None from
    the Python API, or in a working folder that no longer exists."""
    from wbcap.paths import variables_finding

    if not job.command:
        return None
    try:
        command = {"argv": list(job.command), "cwd": os.getcwd(), "out": str(Path(job.out).expanduser().resolve())}
    except OSError:
        return None
    paths = [ident["path"] for ident in files.values() if ident is not None]
    weights = getattr(detector, "model_path", None)  # (auto or a YOLOX name: found in the user's folders)
    env = variables_finding([*paths, *([weights] if weights is not None else [])])
    return {**command, "env": env} if env else command


def _with_recorded_env(command: dict | None, out: Path) -> dict | None:
    """``command`` (:func:`_command`) with the environment variables the run's recorded command
    names that it lacks: a resume that opens no detector (pass 2 alone) cannot tell through which
    variable (``WBCAP_HOME``) its weights were found, and the hint to finish the run needs it (a
    review)."""
    from wbcap.io.run_folder import COMMAND, read_run_file

    if command is None:
        return None
    try:
        recorded = (read_run_file(out) or {}).get(COMMAND)
    except (InputError, OSError, ValueError):
        return command
    env = recorded.get("env") if isinstance(recorded, dict) else None
    if not isinstance(env, dict) or not env:
        return command
    return {**command, "env": {**env, **command.get("env", {})}}


def _detector_name(detector: Any) -> str | None:
    """The name ``run.json`` records of ``detector`` (:data:`wbcap.io.run_folder.DETECTOR_USED`;
    None: no detector)."""
    return None if detector is None else str(getattr(detector, "name", type(detector).__name__))


def _check_detector_against_record(job: VideoJob, out: Path, detector: Any) -> None:
    """Refuse the detector a resume opened after :func:`~wbcap.io.run_folder.prepare_output`
    (records damaged since a finished pass 1: their frames are regressed again) when it is not
    the one the run recorded (:func:`wbcap.io.run_folder.check_same_detector`) or its weights
    are not the file the run recorded (:func:`wbcap.io.run_folder.check_same_files`)."""
    from wbcap.io.run_folder import DETECTOR_USED, FILE_IDENTITY, check_same_detector, check_same_files, read_run_file

    run = read_run_file(out) or {}
    check_same_detector(out, run.get(DETECTOR_USED), _detector_name(detector))
    weights = _files(job, None, None, detector)["detector_weights"]
    check_same_files(out, run.get(FILE_IDENTITY), {"detector_weights": weights} if weights is not None else None)


def _model_files(pipeline) -> tuple[Path | None, Path | None]:
    """``(checkpoint, SMPL-X model file)`` ``pipeline`` was built from (None: random weights, a
    network given, a pipeline not built from files)."""
    source = getattr(pipeline, "source", None)
    if source is None:
        return None, None
    return (source.checkpoint if source.weights == "checkpoint" else None), source.body_model


def _body_model_file(body_model: Path | None) -> str | None:
    """The SMPL-X model file the run uses, wherever it was found, as ``run.json`` records it
    (:data:`wbcap.io.run_folder.BODY_MODEL_FILE`); None for none."""
    return None if body_model is None else absolute_path(str(body_model))


def _files(job: VideoJob, checkpoint: Path | None, body_model: Path | None,
           detector: Any = None) -> dict[str, dict | None]:
    """:func:`wbcap.io.run_folder.file_identity` of each file pass 1 reads, by role (as
    :data:`wbcap.io.run_folder.FILE_IDENTITY` records them): the checkpoint (wherever found, also
    without ``--checkpoint``), the SMPL-X model file, ``--detector-model``, the file of
    ``--detector boxes:FILE`` / ``yolox:FILE`` and the weights the opened ``detector`` found by
    name (``auto``, ``yolox-nano``: its ``model_path``); None where there is none (random weights,
    a pipeline not built from files, a detector without weights, none opened)."""
    named = _detector_file(job.detector)
    found = getattr(detector, "model_path", None) if job.detector_model is None and named is None else None
    return {"checkpoint": file_identity(checkpoint),
            "body_model_file": file_identity(_body_model_file(body_model)),
            "detector_model": file_identity(job.detector_model),
            "detector": file_identity(named[1] if named is not None else None),
            "detector_weights": file_identity(str(found) if found is not None else None)}


def _load_body(job: VideoJob, out: Path):
    """``(SMPL-X layer on the run's device, its file, the checkpoint's path)`` for a resume that
    redoes pass 2 alone: the files found as :func:`_load_pipeline` finds them (the checkpoint
    only looked for, its identity checked by :func:`wbcap.io.run_folder.prepare_output`; nothing
    of the network loads), a missing model named as the run recorded it."""
    from wbcap.body.model_files import BodyModelNotFoundError, is_demo_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.model.device import resolve_device
    from wbcap.pipeline import check_model_files, warn_synthetic_body

    try:
        checkpoint, body_path = check_model_files(job.pipeline)
    except BodyModelNotFoundError as exc:
        if job.pipeline.body.path is not None:
            raise
        raise missing_body_model(exc, out, resume=True) from None
    if is_demo_body_model(body_path):  # (as the pipeline says it)
        warn_synthetic_body(body_path)
    cfg = job.pipeline.body
    body = SMPLXLayer.from_file(body_path, allow_pickle=cfg.allow_pickle).to(resolve_device(job.pipeline.device))
    return body.eval(), body_path, checkpoint


#: A run of at most this many frames (as selected: ``--max-frames``, ``--start``/``--end``,
#: ``--every``; a video's declared frame count) is a short job: a CPU strategy this machine has not
#: measured yet is not measured for it (:func:`_load_pipeline`). Measuring takes 10-30 s with 2
#: cores; what it saves over 60 frames of a few people is seconds at most (on the model-207 Xeon a
#: one-person photo ran as fast in the default form as in the measured one, within the noise), and
#: a new user's first 3-frame try of `wbcap run` took 29 s, 23 of them measuring (a user trial).
#: The video demo's default 60 frames are one too.
SHORT_RUN_FRAMES = 60


def short_run(info: Any, start: float, end: float | None, every: int, max_frames: int | None) -> bool:
    """Whether a run of the frames ``open_frames`` selects from a source (``info``: its
    :class:`~wbcap.io.video_probe.VideoInfo`) is a short job: at most :data:`SHORT_RUN_FRAMES`
    frames, as far as is known before decoding (:func:`~wbcap.io.progress.expected_frames`; a source
    that declares no frame count, by its duration)."""
    expected = expected_frames(info, start, end, every, max_frames, estimate=True)
    return expected is not None and expected <= SHORT_RUN_FRAMES


def _load_pipeline(job: VideoJob, out: Path, source: Any):
    """:meth:`wbcap.pipeline.Pipeline.from_config` of ``job``; a ``--resume`` without
    ``--body-models`` whose SMPL-X model the usual places do not hold names the model the run
    was made with (:func:`wbcap.io.run_folder.missing_body_model`). A run of ``source`` (the
    opened frames) selecting at most :data:`SHORT_RUN_FRAMES` frames does not measure a CPU
    strategy the cache lacks."""
    from wbcap.body.model_files import BodyModelNotFoundError
    from wbcap.pipeline import Pipeline

    short = short_run(source.info, job.start, job.end, job.every, job.max_frames)
    try:
        return Pipeline.from_config(job.pipeline, measure_strategy=False if short else None)
    except BodyModelNotFoundError as exc:
        if not job.resume or job.pipeline.body.path is not None:
            raise
        raise missing_body_model(exc, out, resume=True) from None


# --------------------------------------------------------------------------- pass 1: regress


def regress_frames(
    job: VideoJob, pipeline, source, progress: Progress | None = None, timings: dict[str, float] | None = None,
    detector: Any = None, on_first_frames: Callable[[], None] | None = None,
) -> int:
    """Pass 1. Returns the number of processed frames in the raw file. ``on_first_frames`` (if
    given) is called once the first frames this call regressed are in the raw file.

    ``timings`` (if given) accumulates seconds per stage: decode, detect (in a thread beside the
    network when that does not slow it: :func:`wbcap.detect.thread.overlaps_network`),
    crop (then in threads too: :func:`wbcap.detect.thread.crop_workers`), regress, write.
    """
    from wbcap.detect.thread import DetectionThread, crop_workers, overlaps_network
    from wbcap.model.batching import regress_in_batches

    timings = {} if timings is None else timings
    out = Path(job.out).expanduser()
    raw = raw_path(out)
    clear_pass_one_done(out)  # (until it ends: a stop leaves a raw file to continue)
    processed, last_done = start_raw(raw, job.resume)
    if last_done >= 0:
        log.info("resuming after frame %d (%d frames already done)", last_done, processed)
    if detector is None:
        detector = _open_detector(job, pipeline, source)
    total = expected_frames(source.info, job.start, job.end, job.every, job.max_frames)
    detections = DetectionThread(source, detector, maxsize=max(4, pipeline.batch_size), skip_until=last_done,
                                 max_people=job.max_people, select=_people_limit(job, raw, last_done), timings=timings,
                                 background=overlaps_network(pipeline.device),
                                 regressable=lambda box, w, h: pipeline.crop_box(box, w, h) is not None,
                                 looks=True)  # (recorded whatever --no-appearance: a later pass 2 may use them)
    try:
        with detections, RawWriter(raw) as writer:
            todo = ((frame, dets) for frame, dets in detections if dets is not None)  # None: done in an earlier run
            for batch in regress_in_batches(todo, pipeline, timings, crop_workers=crop_workers(pipeline.device)):
                t0 = time.perf_counter()
                writer.append(batch, detections.changes, detections.detected, detections.looks)
                add_time(timings, "write", t0)
                if on_first_frames is not None:
                    on_first_frames()
                    on_first_frames = None
                processed += len(batch)
                if progress:
                    progress("regress", processed, total)
        detections.report()
    except Exception as exc:
        near = "" if detections.current is None else f" near frame {detections.current}"
        add_note(exc, f"while processing {job.source}{near}")
        raise
    if processed:
        mark_pass_one_done(out, processed, source.ended_early)
    return processed


def _open_detector(job: VideoJob, pipeline, source) -> Any:
    """The run's person detector for ``source`` (:func:`wbcap.detect.thread.open_detector`), on
    ``pipeline``'s device (``pipeline`` None: a box file, which needs none)."""
    from wbcap.detect.thread import open_detector

    return open_detector(
        job.detector, job.source, source.info, model=job.detector_model,
        device="cpu" if pipeline is None else pipeline.device,
        score_threshold=job.score_threshold, min_height_frac=job.min_height_frac, offline=job.offline,
        undistorter=source.undistorter,
    )


def _tracker_config(job: VideoJob) -> TrackerConfig:
    """The run's tracker settings with its frame stride (``--every``: missed processed frames
    age a track, not the source frames skipped between them) and its people limit
    (``max_people``)."""
    return replace(job.tracker, frame_stride=job.frame_step, max_people=job.max_people)


def _people_limit(job: VideoJob, raw: Path, last_done: int):
    """``--max-people``'s choice of boxes (:class:`~wbcap.track.iou_tracker.PeopleLimit`, with the
    run's tracker settings), or None without a limit. A resumed run's kept boxes (frames up to
    ``last_done``, from ``raw``) are fed to it first, so its tracks continue."""
    if job.max_people is None:
        return None
    from wbcap.track.iou_tracker import PeopleLimit

    limit = PeopleLimit(_tracker_config(job))
    if last_done >= 0:  # (every detection of those frames: the people tracked unseen too)
        for rec in read_raw(raw):
            limit(int(rec["frame"]), *detected_boxes(rec), change=FrameChange.of_record(rec), time=float(rec["time"]),
                  looks=detected_looks(rec), size=record_size(rec))
    return limit


def _processed_rate(job: VideoJob, info) -> float:
    """The nominal rate of the processed frames (per second): the source's over ``--every`` (30
    where the source declares none), to repair times and as the clock's first guess
    (:func:`wbcap.smooth.track.clock_rate`)."""
    return float(info.fps) / job.frame_step if info.fps else 30.0


# --------------------------------------------------------------------------- pass 2: finalize


def finalize(
    job: VideoJob, body, info, progress: Progress | None = None, timings: dict[str, float] | None = None
) -> VideoResult:
    """Pass 2: track, move to the video camera, smooth, (with ``job.world``) ground, write every
    output file. ``body``: the SMPL-X layer (:class:`~wbcap.body.smplx_layer.SMPLXLayer`), on the
    device pass 2 computes on; no network is needed."""
    from wbcap.export.amass import clock_cuts
    from wbcap.export.animation import write_track_files
    from wbcap.export.params_jsonl import write_params_jsonl
    from wbcap.export.track_meshes import write_track_objs
    from wbcap.smooth.track import clock_rate, rows_by_frame, smoothed_track
    from wbcap.track.collect import collect_tracks, report_losses

    timings = {} if timings is None else timings
    t_start = time.perf_counter()
    if job.render:  # beside this pass's work (the network has finished): ~0.3 s less in all on the 2-core Xeon
        from wbcap.export.render import import_renderer_in_background

        import_renderer_in_background()
    out = Path(job.out).expanduser()
    remove_temporary_files(out)  # (of a pass 2 killed before: this one has none yet)
    _say_smoothing_change(out, job.smooth)
    dev = next(iter(body.buffers())).device
    lens = _undistorter(job, info)
    camera = run_camera(job, info, lens)
    focal, princpt = camera.focal[0], camera.princpt  # pixels
    rate = _processed_rate(job, info)

    col = collect_tracks(raw_path(out), rate, _tracker_config(job), job.detector)
    base = float(info.base_fps_fraction) if info.base_fps_fraction else None
    rate = clock_rate(list(col.frames.values()), rate, base, job.frame_step)
    if rate > MAX_FPS:  # (the clock of the track files: meta.json refuses a faster one)
        raise _too_fast(job, rate, f" and {setting('overwrite', api='overwrite=True')}")
    # (each segment its animation files will hold smoothed on its own, a review)
    tracks = {tid: smoothed_track(col.per_track[tid], job.smooth, body, dev, focal, princpt,
                                  pieces=clock_cuts(col.per_track[tid].time, rate, job.max_gap,
                                                    col.per_track[tid].frame, job.frame_step))
              for tid in sorted(col.per_track) if tid in col.kept}
    report_losses(col, len(tracks), job.source, job.detector, small_people="" if lens is None else lens.small_people())

    world = None
    if job.calibration is not None and (job.world is None) != (job.calibration.pose is None):
        name = job.calibration.file or "the calibration"
        if job.world is None and not job.calibration.pose.metric:  # (COLMAP's: a world of its own scale)
            log.info("%s gives the camera's pose in a world without a scale (a reconstruction's): `wbcap fuse` of its "
                     "cameras' runs made with %s places them in it", name, setting("world"))
        elif job.world is None:
            log.info("%s gives the camera's pose: %s writes the tracks in its world (z up, z = 0 the floor)", name,
                     setting("world"))
        else:  # (half a pose, an extri.yml without the camera: said, not silently the feet's ground)
            log.info("%s gives no camera pose (a rotation and a translation): %s finds the ground from the feet",
                     name, setting("world"))
    if job.world is not None:
        from wbcap.world.estimate import ground_tracks

        t0 = time.perf_counter()
        world = ground_tracks(tracks, body, dev, camera, job.world, cuts=[col.frames[f] for f in col.cuts],
                              pose=None if job.calibration is None else job.calibration.pose)
        timings["world"] = time.perf_counter() - t0
    grounded = world is not None and world.frame is not None
    if world is not None and not grounded:
        job.export.say_root_bone_off_the_ground()
    by_frame = rows_by_frame(tracks)
    start_writing(out)  # (left by a stop from here on: export and view then say outputs may be missing)
    # (of an earlier pass 2, as this one starts writing: a stopped one leaves no mix of the two)
    had_render = (out / RENDER_FILE).is_file()
    extras = [flag for flag, had, again in (("--obj", _has_meshes(out), job.write_obj),
                                            ("--openpose", has_keypoints(out), job.write_openpose)) if had and not again]
    not_again = _not_written_again(remove_outputs(out), job.export.formats)
    if extras:  # (a resume's re-smoothing removed them without a word: a new user's trial)
        log.warning("%s: removed the earlier %s made from the parameters before this pass, which this pass does not "
                    "write again; a %s with %s makes them from the new ones", out,
                    " and ".join({"--obj": "meshes/ (--obj)", "--openpose": "openpose/ (--openpose)"}[f] for f in extras),
                    setting("resume"), " ".join(extras))
    if had_render and not job.render:  # (gone without a word before: a user trial's re-smoothing lost its overlay)
        log.warning("%s: removed the earlier %s, made from the parameters before this pass; this run writes none "
                    "(%s): a %s without it makes one from the new ones", out, RENDER_FILE,
                    setting("no_render", api="render=False"), setting("resume"))
    if not_again:  # (removed silently before: a new user's trial lost the BVH files `wbcap export` had written)
        log.warning("%s: removed the earlier %s file(s) this run does not write (from `wbcap export` or another "
                    "--export), made from the parameters before this pass: once it is done, write them again from "
                    "the new ones with `wbcap export %s --format %s` (and that export's other options)", out,
                    ", ".join(f.upper() for f in not_again), shell_word(str(out), option_safe=True), ",".join(not_again))
    n_lines = write_params_jsonl(out / PARAMS_FILE, col.frames, tracks, by_frame, focal, princpt, camera.image_size,
                                 contacts=world.contacts if grounded else None)
    write_meta(out, run_meta(job, rate, camera, tracks, world, info, cuts=[col.frames[f] for f in col.cuts],
                             pauses=[col.frames[f] for f in col.pauses],
                             dropped={"short": list(col.dropped), "static": list(col.static)},
                             ended_early=pass_one_ended_early(out), lens=lens))
    timings["track+smooth+write"] = time.perf_counter() - t_start - timings.get("world", 0.0)
    t0 = time.perf_counter()
    shown = world.tracks if grounded else tracks  # what the animation files and render.mp4 show
    write_track_files(out, shown, body, dev, rate, job.max_gap, job.pipeline.body.gender, job.export, camera,
                      world=world.frame if grounded else None, contacts=world.contacts if grounded else None,
                      frame_step=job.frame_step)
    timings["animation files"] = time.perf_counter() - t0
    if job.write_obj:
        t0 = time.perf_counter()
        write_track_objs(out / MESHES_DIR, shown, body, body.faces, dev, progress)
        timings["obj"] = time.perf_counter() - t0
    if job.write_openpose:
        from wbcap.export.openpose import keypoint_file_names, keypoints_stem, write_video_keypoints

        t0 = time.perf_counter()
        images = None
        if info.is_image_sequence:  # (each frame's file named after its image: frame k is the k-th image)
            from wbcap.io.images import iter_image_paths

            images = [p.stem for p in iter_image_paths(job.source, warn=False)]
        names = keypoint_file_names(keypoints_stem(job.source), col.frames, images)
        write_video_keypoints(start_keypoints(out, list(names.values())), names, shown, body, dev, camera, progress,
                              written=functools.partial(keypoint_written, out),
                              lens=None if lens is None else lens.calibration)
        finish_keypoints(out, list(names.values()))
        timings["keypoints"] = time.perf_counter() - t0
    render_path = None
    if job.render:
        render_path = _render(job, info, list(col.frames.values()), shown, by_frame, body, body.faces, dev,
                              focal, princpt, progress, timings)
    done_writing(out)
    return VideoResult(
        out=out, frames=len(col.frames), person_frames=n_lines, tracks=sorted(tracks), render=render_path, timings=timings
    )


def _has_meshes(out: Path) -> bool:
    """Whether ``out/meshes/`` (``--obj``'s) holds a mesh."""
    return any((out / MESHES_DIR).glob("*/*.obj"))


def _not_written_again(removed: list[Path], formats: tuple[str, ...]) -> list[str]:
    """The formats (``bvh``, ``fbx``...) of the track files ``removed`` that a pass 2 writing
    ``formats`` (and the npz) does not write again."""
    from wbcap.io.run_folder import track_file

    again = {"npz", *formats}
    return sorted({parts[2] for parts in map(track_file, (p.name for p in removed)) if parts is not None} - again)


def run_meta(job: VideoJob, rate: float, camera: ImageCamera, tracks: dict, world: WorldResult | None = None,
             info: VideoInfo | None = None, cuts: list[float] | None = None, pauses: list[float] | None = None,
             dropped: dict[str, list[int]] | None = None, ended_early: str | None = None, lens: Any = None) -> dict:
    """``OUT/meta.json``: ``source``, ``fps`` (the clock of the per-track files, rows per second),
    ``camera`` (``focal``, ``princpt`` pixels, ``image_size`` ``[W, H]``; OpenCV axes),
    ``display`` (from ``info``: ``rotation``, the clockwise degrees the stored picture was
    turned, and ``mirrored``, whether it was then flipped left-right, as the source's display
    matrix asks; every pixel wbcap writes is of the picture so turned),
    ``source_fps`` (``fps`` times ``frame_step``: the source's frame rate the clock follows,
    ``--fps`` for images; a frame index over it is the frame's time in a constant-rate file
    without pauses; the ``time`` fields hold every frame's own), ``gender``, ``max_gap`` (seconds), ``frame_step`` (source frames between two processed ones:
    ``--every``), ``tracks`` (ids), ``smooth`` (the smoothing settings), ``smoothed_max_gap``
    (the ``max_gap`` the tracks were smoothed piece by piece at: ``wbcap export`` at another
    keeps ``params.jsonl``'s smoothing), ``colors`` (render.mp4's
    colour rule: :data:`wbcap.export.colors.COLOR_SCHEME`), ``cuts`` (the times, seconds,
    of the frames that start a new shot, where every track ended: :mod:`wbcap.track.cuts`),
    ``pauses`` (the times of the frames after a pause in the source where every track ended:
    :class:`~wbcap.track.iou_tracker.PauseFinder`), ``dropped`` (the ids of the tracks not
    written: ``short``, seen in fewer than ``--min-track`` frames, and ``static``, judged objects),
    ``source_ended_early`` (only where the source ended before its header said, or changed size while
    it was read, how: ``ended_early``,
    :attr:`wbcap.io.video_reader.FrameSource.ended_early`; a cut file's run was said so only on the
    console, a long-footage trial),
    ``calibration`` (only with ``--calibration``: the lens calibration as read,
    :meth:`~wbcap.camera.LensCalibration.to_dict`, OpenCV's values at its own picture size, its
    file and ``scale``, and ``at_frames``: how it was fitted to the frames, ``fitted``
    (:meth:`~wbcap.camera.LensCalibration.fit`), with the ``image_size`` and ``matrix`` applied;
    every frame was undistorted into ``camera``, whose pixels every other 2D output is in; the
    OpenPose keypoints are in the source's; ``lens``: the frames'
    :class:`~wbcap.io.undistort.Undistorter`, whose :meth:`~wbcap.io.undistort.Undistorter.record`
    it is, made here where not given),
    ``frame`` (``"camera"`` or ``"world"``: the frame of the per-track files) and, with
    ``--world``, ``world``: the ground and the camera's pose above it
    (:meth:`wbcap.world.estimate.WorldFrame.to_dict`), or ``{"frame": "camera", "reason": ...}``
    when the footage did not allow it; what ``wbcap export`` needs to rebuild the files from
    ``params.jsonl``."""
    meta = {
        "source": job.source, "fps": rate, "gender": job.pipeline.body.gender, "max_gap": job.max_gap,
        "frame_step": job.frame_step, "camera": camera_to_dict(camera),
        "source_fps": rate * job.frame_step,
        **({"display": {"rotation": int(info.rotation), "mirrored": bool(info.mirrored)}} if info is not None else {}),
        "tracks": sorted(int(t) for t in tracks), "smooth": asdict(job.smooth), "smoothed_max_gap": job.max_gap,
        "cuts": list(cuts or []),
        "pauses": list(pauses or []),
        "dropped": {kind: sorted(int(t) for t in ids) for kind, ids in (dropped or {"short": [], "static": []}).items()},
        "colors": COLOR_SCHEME,
        "frame": "world" if world is not None and world.frame is not None else "camera",
        # (every tracking setting, defaults included, and the versions: what a methods section
        # reports; an HCI researcher's trial found them only in the words typed)
        "tracker": asdict(_tracker_config(job)), "versions": library_versions(),
    }
    if ended_early:
        meta["source_ended_early"] = ended_early
    if job.calibration is not None:  # (with what fitting it to the frames applied: a resized video's scaled
        from wbcap.io.undistort import Undistorter  # matrix, a user trial)

        lens = lens or Undistorter(job.calibration, camera.image_size, quiet=True)
        meta["calibration"] = lens.record()
    if world is not None:
        meta["world"] = world.to_meta()
    return meta


def _check_given_pipeline(job: VideoJob, pipeline) -> None:
    """Refuse a pipeline given to :func:`run_video` whose precision or box scale is not
    ``job.pipeline``'s: ``run.json`` records the job's, which a ``--resume`` checks (a fast
    pipeline's run was recorded as exact, an API trial: its resume with the settings that ran
    was refused, one with the recorded ones would have mixed the two).

    Raises:
        InputError: naming both values and the fix.
    """
    from wbcap.pipeline import normalize_precision

    wanted = {"precision": normalize_precision(job.pipeline.precision), "box_scale": job.pipeline.box_scale}
    given = {"precision": getattr(pipeline, "requested_precision", pipeline.precision).value,
             "box_scale": pipeline.box_scale}
    differ = [f"{k} {given[k]!r} (the job's: {wanted[k]!r})" for k in wanted if given[k] != wanted[k]]
    if differ:
        raise InputError(f"the pipeline given runs {', '.join(differ)}: run.json records the job's settings and a "
                         "resume checks them; give the job the pipeline's (VideoJob(pipeline=pipeline.job_config()))")


def _say_smoothing_change(out: Path, smooth: SmoothConfig) -> None:
    """Warn when this pass 2 smooths otherwise than the earlier one whose ``meta.json`` is in
    ``out`` (:meth:`~wbcap.smooth.sequence.SmoothConfig.effective`): a ``--resume`` takes its
    smoothing from its own command, the defaults where it gives none, and names the options
    that keep the earlier one (a long-video trial's ``--resume --no-render`` put its Gaussian
    smoothing back to the 1€ default without a word). Nothing for a first pass 2, or a
    ``meta.json`` that cannot be read (this pass rewrites it)."""
    from dataclasses import fields

    try:
        meta = read_meta(out)
    except InputError:
        return
    earlier = meta.get("smooth") if meta else None
    if not isinstance(earlier, dict):
        return
    try:
        before = SmoothConfig(**{f.name: earlier[f.name] for f in fields(SmoothConfig) if f.name in earlier})
    except (TypeError, ValueError):
        return
    if before.effective() != smooth.effective():
        command = in_command()  # (a wbcap command's words, else Python's)
        keep = before.options() if command else None
        keep = (f"give {keep}" if keep else f"run it from Python with smooth={before.python()}" if command
                else f"give smooth={before.python()}")
        log.warning("%s: this pass smooths %s, the earlier one %s: %s takes the smoothing from its own %s (the "
                    "defaults where it gives none); to keep the earlier one, %s", out, smooth.describe(),
                    before.describe(), setting("resume", api="resume=True"), "command" if command else "job", keep)


def _render(job: VideoJob, info, frame_times: list[float], tracks, by_frame, body, faces, dev,
            focal: float, princpt, progress: Progress | None, timings: dict[str, float]) -> Path:
    """``render.mp4``: the processed frames (``frame_times`` s) decoded again."""
    from wbcap.export.video_render import render_video
    from wbcap.io.video_reader import open_frames

    # (the audio stops where the last frame does: at the end of the stretch of the source it
    # stands for, the reader's stretch_end, which render_video gives the writer)
    frames = open_frames(job.source, start=job.start, end=job.end, every=job.every, max_frames=job.max_frames,
                         image_fps=job.image_fps, warn_retimed=False,  # pass 1 reported the retimed frames already
                         calibration=job.calibration)
    fps = info.fps_fraction / job.frame_step if info.fps_fraction else 30
    audio = None if frames.info.is_image_sequence or not frames.info.has_audio else Path(job.source)
    return render_video(
        Path(job.out).expanduser() / RENDER_FILE, frames, (info.width, info.height), fps, tracks, by_frame, body, faces,
        dev, focal, princpt, audio_from=audio, audio_start=job.start, audio_end=job.end, progress=progress,
        timings=timings, longest_interval=max((b - a for a, b in itertools.pairwise(frame_times)), default=0.0),
        total=len(frame_times),
    )


# --------------------------------------------------------------------------- entry point


def run_video(job: VideoJob, pipeline=None, progress: Progress | None = None) -> VideoResult:
    """Run both passes for ``job`` (see the module docstring). ``pipeline``: a
    :class:`~wbcap.pipeline.Pipeline` to use instead of building one from ``job.pipeline``; its
    precision and box scale must be the job's (checked first: ``run.json`` records the job's).

    What can be refused is refused before the model loads and before OUT is touched: the
    frame size (:func:`wbcap.image_app.check_size`), an image sequence's selected files (their
    headers: :func:`wbcap.io.images.check_image_files`) and the selected range (its first frame
    is decoded: :func:`_check_selection`); a resume whose detector is not the run's (``--detector
    auto`` finding other weights, :data:`wbcap.io.run_folder.DETECTOR_USED`) is refused once the
    detector opens, after the model loads, its outputs untouched. With ``overwrite`` the previous run is only set aside
    (:func:`wbcap.io.run_folder.prepare_output`) and dropped once this run's first frames are in
    ``raw.jsonl``; a run that ends before them, by an error, Ctrl-C or a stop signal, leaves OUT
    as it found it (the previous run put back, a folder it made removed).
    """
    from wbcap.io.video_reader import open_frames

    job.export.check_available()
    if job.every < 1:
        raise InputError(f"{setting('every')} {job.every}: must be >= 1")
    if job.focal is not None and not (is_finite_number(job.focal) and MIN_FOCAL <= job.focal <= MAX_FOCAL):
        raise InputError(f"{setting('focal')} {job.focal}: must be a focal length in pixels from {MIN_FOCAL:g} to "
                         f"{MAX_FOCAL:g}; leave it out for sqrt(W^2+H^2)")
    if job.principal_point is not None and not (
            isinstance(job.principal_point, (tuple, list)) and len(job.principal_point) == 2
            and all(is_finite_number(v) and abs(v) <= MAX_FOCAL for v in job.principal_point)):
        raise InputError(f"{setting('principal_point')} {job.principal_point!r}: must be two pixel coordinates "
                         f"(cx, cy) within {MAX_FOCAL:g} of the picture's corner; leave it out for the picture's centre")
    if not (math.isfinite(job.max_gap) and job.max_gap >= 0):
        raise InputError(f"{setting('max_gap')} {job.max_gap}: must be a finite number of seconds, 0 or more")
    if job.calibration is not None and (job.focal is not None or job.principal_point is not None):
        given = " and ".join(setting(k) for k in ("focal", "principal_point") if getattr(job, k) is not None)
        raise InputError(f"{setting('calibration')} sets the camera's focal length and principal point; leave out "
                         f"{given}")
    if job.render:
        from wbcap.export.render import check_renderer_setting

        check_renderer_setting()  # a bad $WBCAP_RENDERER: one line now, not after pass 1
    if pipeline is not None:
        _check_given_pipeline(job, pipeline)
    try:
        source = open_frames(job.source, start=job.start, end=job.end, every=job.every, max_frames=job.max_frames,
                             image_fps=job.image_fps)
    except InputError as exc:
        raise _started_elsewhere(exc, job) from None
    if job.calibration is not None:  # (a calibration of another picture shape: its one line now)
        source.use_calibration(job.calibration)
    if job.image_fps != DEFAULT_IMAGE_FPS and not source.info.is_image_sequence:
        log.warning("%s: a video keeps its own frame rate (%s is for image folders and globs)", job.source,
                    setting("image_fps"))
    out = Path(job.out).expanduser()
    continues = job.resume and has_records(raw_path(out))
    _check_selection(job, source, continues=continues)
    if continues:
        _check_recorded_size(job, out, source.info)
    from wbcap.detect.factory import check_detector, check_detector_settings

    check_detector_settings(job.detector, job.score_threshold, job.detector_model, job.min_height_frac)
    # (the detector's one line before the model loads and a new machine's CPU measurement: a user
    # trial waited 30 s to be told of `--detector foo`; not for a resume redoing pass 2 alone, which
    # opens no detector: its model file may be gone, a review)
    if not (job.resume and pass_one_done(out) is not None):
        check_detector(job.detector, job.detector_model)
    created = not out.exists()
    if job.write_openpose:  # (a user's OpenPose output there: one line now, not after the network)
        refuse_foreign_keypoints(out)
    if not job.resume:
        refuse_output_inside_a_run(out)
        # (a folder holding a run, or files wbcap did not write with --overwrite; one another process
        # writes: one line now, not after the model loads)
        refuse_taken_output(out, overwrite=job.overwrite)
    from wbcap.atomic import check_writable_destination

    # (a read-only OUT, or one of another user: one line now; --overwrite and a --resume with other
    # pass-2 settings failed with a crash after the model loaded: an admin's trial)
    check_writable_destination(out, fix=f"choose another {setting('out', api='output')} folder")
    # A box file is read, checked and bound to the frames before the model loads (its one line in a
    # moment); a detector network after it, on the model's device.
    detector = _open_detector(job, None, source) if job.detector.startswith("boxes:") else None
    if job.resume:  # (a resume with other settings: its one line now, not after the model loads)
        if job.calibration is not None:
            _refuse_other_undistortion(out)
        refuse_other_resume(out, _fingerprint(job), typed_paths=_typed_paths(job), options=_OPTION_KEYS)
    # A resume holds its folder while the model loads (seconds): `wbcap export` / `view` of it say
    # it is in use, where they said it was unfinished and to start the resume already starting.
    # (Released and taken again below: the kernel's lock is per open file, held by one block at a
    # time; quiet: a file system that refuses the lock is said once, there.)
    with hold_folder(out, quiet=True) if job.resume and out.is_dir() else contextlib.nullcontext():
        # (not where an --overwrite killed before its first frame set a run aside: put back below, it
        # is resumed; the warning came first, then "put back", then "resuming after frame 19": a trial)
        if job.resume and not has_records(raw_path(out)) and not has_records(raw_path(out / PREVIOUS_DIR)):
            # (a user trial: a mistyped folder began a whole run unsaid)
            log.warning("%s: no frames of an earlier run to resume there; %s starts the run from its first frame", out,
                        setting("resume"))
        # A resume of a run whose pass 1 finished (`--resume --smooth ...`) redoes pass 2 alone: the
        # SMPL-X layer loads, not the network (a README audit: 8 s and 1.2 GB, and on a machine's
        # first run its CPU measurement, for no frame regressed)
        done = pass_one_done(out) if job.resume and pipeline is None else None  # (records of a finished pass 1)
        pass_two_only = done is not None
        if pass_two_only:
            body, body_model, checkpoint = _load_body(job, out)
        else:
            if pipeline is None:
                pipeline = _load_pipeline(job, out, source)
            if detector is None:
                detector = _open_detector(job, pipeline, source)  # (a bad detector model: refused before --overwrite deletes)
            body = pipeline.regressor.body
            checkpoint, body_model = _model_files(pipeline)
    with hold_folder(out):  # (two runs writing one folder at once would mix their frames)
        try:
            files = _files(job, checkpoint, body_model, detector)
            command = _command(job, files, detector)
            if pass_two_only:  # (no detector opened: the variables its weights were found through, as recorded)
                command = _with_recorded_env(command, out)
            prepare_output(out, _fingerprint(job), resume=job.resume, overwrite=job.overwrite,
                           typed_paths=_typed_paths(job), body_model_file=_body_model_file(body_model),
                           files=files, options=_OPTION_KEYS, command=command,
                           detector=_detector_name(detector))
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        timings: dict[str, float] = {}
        if pass_two_only:
            kept, _ = start_raw(raw_path(out), resume=True)  # (checks every record: a damaged one is dropped)
            if kept == done:
                log.info("%s: pass 1 finished earlier (%d frames); %s redoes pass 2 only", out, kept, setting("resume"))
            else:  # (records damaged since: their frames are regressed again, as any resume does; the
                pass_two_only = False  # run's settings and files were checked above, the detector's model opens here)
                pipeline = _load_pipeline(job, out, source)
                detector = detector or _open_detector(job, pipeline, source)
                _check_detector_against_record(job, out, detector)
                body = pipeline.regressor.body
        try:
            frames = 0 if pass_two_only else regress_frames(job, pipeline, source, progress, timings, detector=detector,
                                                            on_first_frames=lambda: discard_previous(out))
            if frames == 0 and not pass_two_only:  # (_check_selection found a frame: the file changed since)
                raise InputError(f"{job.source}: no frames in the selected range (start {job.start}, end {job.end}); "
                                 f"check {setting('start')}/{setting('end')}")
        except BaseException as exc:
            if has_records(raw_path(out)):
                if isinstance(exc, InputError) and source.info.is_image_sequence:
                    raise _start_over(exc, job, out) from None
            elif created:  # nothing worth resuming: leave no half-made output folder behind
                shutil.rmtree(out, ignore_errors=True)
            elif not job.resume:  # OUT as it was: empty, or the previous run --overwrite set aside
                restore_previous(out)
            raise
        try:
            return finalize(job, body, info=source.info, progress=progress, timings=timings)
        except Exception as exc:
            add_note(exc, f"while writing the outputs of {job.source} to {out}")
            raise


def _started_elsewhere(exc: InputError, job: VideoJob) -> InputError:
    """``exc`` (the source could not be opened) with, for a ``--resume`` naming its source by a
    relative path from another folder than the run's, where the run was started and the command
    that resumes it (a user trial: `wbcap run "photos/p*.jpg" ... --resume` from another folder
    said only that the pattern matched no file)."""
    from wbcap.io.run_folder import COMMAND, read_run_file, resume_command

    if not job.resume or Path(job.source).expanduser().is_absolute():
        return exc
    out = Path(job.out).expanduser()
    try:
        command = (read_run_file(out) or {}).get(COMMAND)
        cwd = command.get("cwd") if isinstance(command, dict) else None
        if not isinstance(cwd, str) or not Path(cwd).is_absolute():
            return exc
        if not Path(cwd).is_dir():
            return InputError(f"{exc}; the run in {out} was started in {cwd}, which {job.source} is relative to "
                              "and which no longer exists: give the source's full path")
        if os.path.samefile(cwd, os.getcwd()):
            return exc
        return InputError(f"{exc}; the run in {out} was started in {cwd}, which {job.source} is relative to: "
                          f"{resume_command(out)}")
    except (InputError, OSError):
        return exc


def resumable(job: VideoJob) -> bool:
    """Whether ``job.out`` holds frames that ``job`` with ``resume`` would continue: a ``raw.jsonl``
    with a complete record and a ``run.json`` of ``job``'s settings (after a run stopped before
    its first frames, OUT holds what it held before: nothing, or a previous run, maybe of other settings)."""
    from wbcap.io.run_folder import read_run_file, recorded_settings

    out = Path(job.out).expanduser()
    try:
        run = read_run_file(out)
        return (run is not None
                and recorded_settings(run) == _fingerprint(job)
                and has_records(raw_path(out)))
    except (InputError, OSError, ValueError):
        return False


def previous_run_kept(job: VideoJob) -> bool:
    """Whether ``job.out`` holds a run (its ``.wbcap/`` or ``params.jsonl``): where
    :func:`resumable` says no after an ``--overwrite`` run stopped before its first frames,
    that is the previous run, put back as it was."""
    from wbcap.io.run_folder import PARAMS_FILE, RUN_DIR

    out = Path(job.out).expanduser()
    return (out / RUN_DIR).is_dir() or (out / PARAMS_FILE).is_file()


def _too_fast(job: VideoJob, kept_rate: float, then: str = "") -> InputError:
    """The error for frames kept ``kept_rate`` times a second (after ``--every``), above
    :data:`~wbcap.io.frame_times.MAX_FPS`: with the ``--every`` that brings them under it
    (``then``: what else the command needs)."""
    every = math.ceil(job.every * kept_rate / MAX_FPS)
    return InputError(f"{job.source}: the frames kept come {kept_rate:g} times a second, above the {MAX_FPS:g} wbcap "
                      f"writes track files for; run it with {setting('every')} {every}{then}")


def _declared_rate(info) -> float:
    """A video's frame rate as its header gives it, when its frame count and duration agree
    with it (a rate between ``(n - 1) / duration`` and ``(n + 1) / duration``, 1 % either side):
    then it can be trusted before decoding. Else 0 (image sequences; files whose header rate is
    a time base, as some Matroska files' 1000)."""
    n, duration, fps = info.frame_count, info.duration, info.fps
    if info.is_image_sequence or not n or n < 2 or not duration or duration <= 0 or not fps:
        return 0.0
    return float(fps) if 0.99 * (n - 1) / duration <= fps <= 1.01 * (n + 1) / duration else 0.0


#: Below this many processed frames per second (``--every`` of a video), box-overlap tracking of
#: walking people breaks, and ids pass between people side by side: said once, before the model
#: loads (an HCI trial: ``--every 5`` of the 10 fps ``vtest.avi``, 2 frames/s: one id on four people).
SPARSE_RATE = 5.0


def _check_recorded_size(job: VideoJob, out: Path, info) -> None:
    """Refuse a ``--resume`` of a run whose records hold frames of another size than its source
    is read at now (``info``: a run begun before wbcap made non-square pixels square, or fitted
    frames that change size into the first size; a review): its boxes, cameras and the frames
    still to come would be of two pictures. Its first and last records are looked at; runs whose
    records say no size pass.

    Raises:
        InputError: naming both sizes and ``--overwrite``.
    """
    from wbcap.io.raw_records import last_record

    sizes = []
    for read in (lambda path: next(read_raw(path), None), last_record):  # (the first and the last record)
        try:
            rec = read(raw_path(out))
        except (OSError, *JSON_ERRORS):  # (a damaged line: the resume's own checks say it)
            continue
        size = record_size(rec) if isinstance(rec, dict) else None
        if size is not None and size != (float(info.width), float(info.height)):
            sizes.append(size)
    if not sizes:
        return
    size = sizes[0]
    raise InputError(f"{out}: its run read the frames of {job.source} at {size[0]:g}x{size[1]:g} pixels, which this "
                     f"wbcap reads at {info.width}x{info.height} (it makes non-square pixels square, as players show "
                     f"them); its records cannot be continued: start over with {setting('overwrite')}")


def _check_selection(job: VideoJob, source, continues: bool = False) -> None:
    """Refuse, before the model loads and OUT is touched, what pass 1 would refuse only after
    them (when ``--overwrite`` had already set the previous run aside): frames too small for a
    person box (:func:`wbcap.image_app.check_size`) or, with ``render``, too large for
    ``render.mp4`` (:func:`wbcap.io.video_writer.check_frame_size`); a selected image file of an image sequence
    that is damaged or of another size, as far as its headers tell
    (:func:`wbcap.io.images.check_image_files`); and a selected range without a frame (the first
    selected frame is decoded: :class:`~wbcap.io.video_reader.FrameSource` raises the one line
    naming ``--start``/``--end``)."""
    import copy

    from wbcap.image_app import check_size

    info = source.info
    if info.is_image_sequence:
        check_size(info.path, info.width, info.height, what="sequence's first image",
                   fix="use larger images")
        from wbcap.io.images import check_image_files, check_regular_file

        # a link to nothing, a pipe or a device anywhere in the sequence, read or not: its place is a
        # frame's (the run's record of its source lists every image; a review: a link outside
        # --max-frames stopped the run after the model loaded, told to try again)
        for path in source.image_paths():
            check_regular_file(path)
        check_image_files([path for _, path in source.selected_images()], (info.height, info.width))
    else:
        check_size(info.path, info.width, info.height, what="video's picture", fix="use a larger video")
    kept_rate = _declared_rate(info) / job.frame_step
    if kept_rate > MAX_FPS:  # (else pass 1 would run for nothing: finalize refuses it)
        raise _too_fast(job, kept_rate)
    sparse_rate = (kept_rate or float(info.fps or 0.0) / job.frame_step)  # (an image sequence's: --fps)
    # (not where a resume ``continues`` a run's records: said when the run began, and a resume of other
    # settings said it before its refusal)
    if job.frame_step > 1 and 0 < sparse_rate < SPARSE_RATE and not continues:
        log.warning("%s: %s %d keeps %.3g fps, where walking people move further between two processed frames "
                    "than box overlap follows: tracks break, and an id may pass from one person to another beside "
                    "them; a smaller %s keeps ids", job.source, setting("every"), job.frame_step, sparse_rate,
                    setting("every"))
    if job.render:
        from wbcap.io.video_writer import check_frame_size

        check_frame_size(info.width, info.height, f"{job.source}: render.mp4",
                         f"pass {setting('no_render', api='render=False')} (then no render.mp4)")
    quiet = copy.copy(source)
    quiet.warn_retimed = False  # (pass 1 reports retimed frames)
    frames = iter(quiet)
    try:
        first = next(frames, None)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    if first is None:  # (max_frames 0)
        raise InputError(f"{job.source}: no frame in the selected range; check {setting('start')}/{setting('end')} "
                         f"and {setting('max_frames')}")


def _start_over(exc: InputError, job: VideoJob, out: Path) -> InputError:
    """``exc``, a bad image met after frames were regressed, with the way out: the folder is
    about to change, so ``--resume`` cannot continue the run (its source changed): start over."""
    overwrite, resume = setting("overwrite", api="overwrite=True"), setting("resume", api="resume=True")
    return InputError(f"{exc} (or remove it); then run the same command with {overwrite} to start over ({out} holds "
                      f"the frames done so far, but {resume} cannot continue once the images change)")
