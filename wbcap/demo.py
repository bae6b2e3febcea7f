"""``wbcap demo``: the whole image pipeline on a generated example, with no licensed file.

It uses a synthetic SMPL-X model (same file format, not a human body model) and untrained
network weights whose heads are set to predict a standing neutral body. So it checks that the
install works end to end (decode, detect, crop, network, SMPL-X, OBJ/JSON export, rendering);
its meshes mean nothing. Two files turn it into the real thing: the SMPL-X model
(``SMPLX_NEUTRAL.npz``) and the released checkpoint (``snapshot_6.pth.tar``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from wbcap.config import BodyModelConfig, ModelConfig, PipelineConfig

log = logging.getLogger(__name__)

PIPELINE_CHECK = ("This was a pipeline check with a synthetic body model and untrained weights; the meshes are not "
                  "real estimates.")


def next_steps(command: str = "wbcap image your_photo.jpg -o out/") -> str:
    """What ``wbcap demo`` prints after a run that worked: that it was a pipeline check, and
    which of the two files for real results (the SMPL-X model, the released checkpoint) are still
    missing with how to get each (``wbcap doctor``'s checks: nothing is read or downloaded),
    then ``command`` to run with them."""
    from wbcap.doctor import body_model_check, checkpoint_check
    from wbcap.weights import default_entry

    body = body_model_check("neutral", None)  # (the demo's own model, found through $WBCAP_BODY_MODELS, is missing)
    checkpoint = checkpoint_check(default_entry())
    missing = [c for c in (body, checkpoint) if not c.ok]
    if not missing:
        return f"{PIPELINE_CHECK}\nThe SMPL-X model and the checkpoint are installed: run {command}"
    steps = "\n".join(f"  {i}. {c.name}: {c.detail};\n     {c.fix}" for i, c in enumerate(missing, 1))
    what = "two files" if len(missing) == 2 else "one file"
    return (f"{PIPELINE_CHECK}\nFor real results add {what}:\n{steps}\n"
            f"Then run: {command}   (`wbcap doctor` shows what is still missing)\n"
            f"{try_without_files(body=not body.ok, checkpoint=not checkpoint.ok)}")


def try_without_files(body: bool = True, checkpoint: bool = True) -> str:
    """How to try `wbcap image`, `run`, `export` and `view` before the licensed files (README:
    Quick start): for a missing SMPL-X model (``body``) the demo's synthetic model, for a missing
    checkpoint (``checkpoint``) one trained a few steps on synthetic data; only what is missing
    (a new user's trial with a checkpoint installed was told to train one). The synthetic model's
    folder is named as this user cache has it (a new user's trial with WBCAP_HOME set followed the
    README's ``~/.cache/wbcap/demo_body_models``, which was not there)."""
    from wbcap.paths import demo_body_models_dir

    stand_ins = ([] if not body else [f"the demo's synthetic model (WBCAP_BODY_MODELS={demo_body_models_dir()})"]) + (
        [] if not checkpoint else ["a checkpoint from `wbcap train body --datasets synthetic --epochs 1 --max-steps 2 "
                                   "--batch-size 2 -o try_ckpt`"])
    it = "them" if body and checkpoint else "it"
    return (f"To try wbcap image, run, export and view before you have {it} (meshes as meaningless as the demo's): "
            f"README, Quick start: {' and '.join(stand_ins)}")


#: The bundled drawing scores 0.24 as a person with YOLOX-nano, under its 0.3 default made for
#: photos; on the drawing the demo keeps boxes from 0.2 (measured: one box, the figure).
DEMO_YOLOX_THRESHOLD = 0.2


def best_detector(offline: bool | None = None) -> str:
    """The best detector available here: the default YOLOX model when installed (downloaded
    once unless ``offline``), else torchvision Faster R-CNN when usable, else ``hog``."""
    from wbcap.detect import torchvision_frcnn
    from wbcap.paths import offline_from_env
    from wbcap.weight_formats import validator
    from wbcap.weights import auto_fetch, default_entry

    best = default_entry("yolox")
    if auto_fetch(best.name, offline_from_env() if offline is None else offline, validator(best)) is not None:
        return best.name
    return "torchvision" if torchvision_frcnn.available()[0] else "hog"


def run_demo(out: str | Path, device: str = "auto", image: str | Path | None = None, offline: bool | None = None):
    """Run the image pipeline on the example (or ``image``) and write ``out``.

    Uses :func:`best_detector`. On the bundled drawing (one figure) a YOLOX detector keeps boxes
    from :data:`DEMO_YOLOX_THRESHOLD` and HOG keeps its best box only (HOG finds 4 overlapping
    windows there). Returns ``(results, detector name)``.
    """
    from wbcap.errors import setting
    from wbcap.image_app import ImageJob, run_images
    from wbcap.paths import example_image_path

    cfg, pipe = _demo_pipeline(device, few_calls=1)
    detector = best_detector(offline)
    bundled = image is None
    yolox = detector.startswith("yolox")
    job = ImageJob(paths=(str(image or example_image_path()),), out=str(out), pipeline=cfg, detector=detector,
                   score_threshold=DEMO_YOLOX_THRESHOLD if bundled and yolox else None,
                   max_people=1 if bundled and not yolox else None, users_limit=False, offline=True,
                   # (not wbcap image's --bbox / --full-image: a new user's trial was sent to a command
                   # that needs the model files and to flags the demo lacks)
                   no_person_advice=f"the demo needs a photo of a person its detector finds: pass another "
                                    f"{setting('image')} (`wbcap image --bbox x,y,w,h` takes boxes of your own, with "
                                    "the model files)")
    return run_images(job, pipeline=pipe), detector


#: Frames of a video the demo processes unless told otherwise (a check, not a job).
DEMO_VIDEO_FRAMES = 60


def _demo_pipeline(device: str, few_calls: int = 0, measure_strategy: bool | None = False):
    """``(PipelineConfig, Pipeline)``: always the synthetic body and untrained upright weights,
    even where the real files exist. A check, not a job: a CPU strategy the user cache lacks is
    not measured for it (the first real run measures it; a new machine's demo took 25 s, ~20 of
    them measuring), unless ``measure_strategy`` is None (a video demo of many frames, as `wbcap
    run` decides: :class:`~wbcap.pipeline.Pipeline`'s default). ``few_calls``: the photo demo's one call."""
    from wbcap.pipeline import Pipeline, synthetic_body_models_dir

    cfg = PipelineConfig(model=ModelConfig(), body=BodyModelConfig(path=str(synthetic_body_models_dir())), device=device)
    return cfg, Pipeline.from_config(cfg, weights="random", upright=True, few_calls=few_calls,
                                     measure_strategy=measure_strategy)


def video_demo(video: str | Path, out: str | Path, device: str = "auto", offline: bool | None = None,
               max_frames: int | None = DEMO_VIDEO_FRAMES):
    """``(VideoJob, Pipeline, detector name)`` for ``wbcap run``'s whole video pipeline (detect,
    track, regress, smooth, params.jsonl, track files, GLB animation, render.mp4) on ``video``
    (what ``wbcap run`` takes: a video, an image folder or a glob, read by
    :func:`wbcap.io.video_reader.open_frames`) with the demo's synthetic body and untrained
    weights: the first ``max_frames`` frames (None: all), detector :func:`best_detector`, written
    to ``out/video-<name>/`` (:func:`source_name`; an earlier demo run there is replaced; files
    wbcap did not write are never deleted). Run it with :func:`wbcap.video_app.run_video`
    (``pipeline=`` the returned one)."""
    from wbcap.io.video_reader import open_frames
    from wbcap.video_app import VideoJob, short_run

    source = open_frames(video, max_frames=max_frames)  # a missing or unreadable video: its one line before the model loads
    cfg, pipe = _demo_pipeline(device, measure_strategy=False if short_run(source.info, 0.0, None, 1, max_frames) else None)
    detector = best_detector(offline)
    folder = Path(out) / f"video-{source_name(video)}"
    job = VideoJob(source=str(video), out=str(folder), pipeline=cfg, max_frames=max_frames, detector=detector,
                   offline=True, overwrite=True)
    return job, pipe, detector


def source_name(source: str | Path) -> str:
    """A name for the frames of ``source`` (as :func:`video_demo` takes it), read as the video
    reader reads it (:func:`wbcap.io.images.path_kind`): a video's or an image's file stem
    (``walk.mp4`` -> ``walk``, ``take[1].mp4`` -> ``take[1]`` when that file exists), a folder's
    name (``shots/take.2/`` -> ``take.2``), a glob's last folder before its first wildcard
    (``shots/*.png`` -> ``shots``; ``*.png`` -> the current folder's name)."""
    from wbcap.io.images import path_kind, pattern_root

    kind = path_kind(source)
    path = pattern_root(source) if kind == "pattern" else Path(source).expanduser()
    if kind in ("pattern", "folder"):
        return path.resolve().name or "frames"
    return path.stem or "frames"
