"""The image pipeline: load once, call on frames.

>>> from wbcap import Pipeline                               # doctest: +SKIP
>>> pipe = Pipeline.from_files(checkpoint="snapshot_6.pth.tar")  # doctest: +SKIP
>>> people = pipe(image_rgb)                                 # doctest: +SKIP
>>> people[0].vertices.shape                                 # doctest: +SKIP
(10475, 3)

For each person box: the upstream demo's preprocessing (box made 3:4 and enlarged x1.25, affine
crop to 512x384 from the uint8 image), the batched regressor, and the results mapped back to
the original image (camera intrinsics, hand/face boxes, 2D joints).
"""

from __future__ import annotations

import logging
import math
import numbers
import operator
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from wbcap.body.model_files import find_body_model, is_demo_body_model, real_body_model_fix
from wbcap.body.params import FIELDS as SMPLX_FIELDS
from wbcap.body.params import SMPLXParams
from wbcap.body.smplx_layer import SMPLXLayer
from wbcap.camera import crop_to_image_camera_np
from wbcap.config import BODY_BOX_SCALE, PipelineConfig
from wbcap.crop.bbox import crop_image, process_bbox, transform_points
from wbcap.detect.base import Detection, Detector
from wbcap.detect.boxes import box_outside_image
from wbcap.errors import CheckpointError, InputError, ModelFileError, NoPersonError, setting
from wbcap.io.raw_records import PART_BOXES
from wbcap.model.checkpoint import load_network
from wbcap.model.device import resolve_device
from wbcap.model.hand4whole import Hand4Whole
from wbcap.model.precision import Precision
from wbcap.model.regressor import WholeBodyRegressor
from wbcap.paths import demo_body_models_dir

log = logging.getLogger(__name__)


def normalize_precision(precision: str | Precision) -> str:
    """The canonical name of a precision mode as a plain string (what ``run.json`` records);
    raises InputError naming the choices for unknown names. See :class:`Precision`."""
    return Precision.parse(precision).value


#: Person crops per network call when none is given, by device type (others: the CPU's).
DEFAULT_BATCH_SIZES = {"cpu": 8, "cuda": 32}

#: :meth:`Pipeline.from_config`'s answer to a missing model file: ``"none"`` raises its error,
#: ``"synthetic"`` uses the synthetic SMPL-X model / random weights instead.
Fallback = Literal["none", "synthetic"]
#: Where :meth:`Pipeline.from_config` takes the network's weights from.
Weights = Literal["checkpoint", "random"]


def default_batch_size(device: torch.device) -> int:
    """Person crops per network call when none is given: 32 on CUDA, 8 elsewhere
    (:data:`DEFAULT_BATCH_SIZES`)."""
    return DEFAULT_BATCH_SIZES.get(device.type, DEFAULT_BATCH_SIZES["cpu"])


def synthetic_body_models_dir() -> Path:
    """A body-models folder holding the cached synthetic SMPL-X model (``smplx/SMPLX_NEUTRAL.npz``,
    :func:`wbcap.testing.synthetic_body.write_synthetic_smplx`: the real file's size and format,
    not a human body), in the user cache folder; written on first use (atomically).

    Raises:
        InputError: the cache folder cannot be made or written in (naming it and ``WBCAP_HOME``)."""
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    folder = demo_body_models_dir()
    target = folder / "smplx" / "SMPLX_NEUTRAL.npz"
    if target.is_file() and not _whole_npz(target):  # (a user trial: a damaged one stopped `wbcap demo` for good)
        log.warning("%s: the cached synthetic SMPL-X model is damaged; writing it again", target)
        target.unlink()
    if not target.is_file():
        from wbcap.atomic import check_writable_destination
        from wbcap.paths import ENV_HOME

        check_writable_destination(target.parent, fix=f"this is wbcap's cache folder: fix that, or set {ENV_HOME} to a "
                                   "writable folder (the cache goes in $WBCAP_HOME/cache)")
        log.info("writing the synthetic SMPL-X model to %s", folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=folder, prefix=".writing-") as tmp:
                os.replace(write_synthetic_smplx(tmp) / "smplx" / target.name, target)
        except OSError as exc:  # (numpy's zip writer gives a full disk no file name: name what was written)
            if exc.filename is None:
                exc.filename = str(target)
            raise
    return folder


def check_model_files(config: PipelineConfig, warn: bool = True) -> tuple[Path, Path]:
    """Find the SMPL-X model and the checkpoint ``config`` names (or the search order finds) as
    :meth:`Pipeline.from_config` will, before any other work (a detector's download): raises
    the missing one's error, or, both missing, the model's (its own type and attributes: a
    resume names the model its run was made with from them) with the checkpoint's message added
    to it and kept as its ``checkpoint_error``
    (:func:`wbcap.weights.note_missing_checkpoint`).

    Returns ``(checkpoint, SMPL-X model file)``, the paths found (nothing is read). ``warn``:
    False where :meth:`Pipeline.from_config` follows, which says what it finds again (a model
    of another gender than asked was said twice: a user trial).

    Raises:
        ModelFileError: the SMPL-X model is missing (and maybe the checkpoint: said too).
        CheckpointError: the checkpoint is missing.
    """
    from wbcap.weights import find_checkpoint, note_missing_checkpoint

    body_cfg = config.body
    try:
        body = find_body_model(body_cfg.gender, body_cfg.path, allow_pickle=body_cfg.allow_pickle, warn=warn)
    except ModelFileError as exc:
        note_missing_checkpoint(exc, config.checkpoint)
        raise
    return find_checkpoint(config.checkpoint), body


def warn_synthetic_body(body_path: Path) -> None:
    """Warn that ``body_path``, the model a trained network's results are posed with, is the
    demo's synthetic SMPL-X model: every mesh, joint and metric is then meaningless."""
    log.warning("%s is the demo's synthetic SMPL-X model, not a human body: every mesh, joint and metric "
                "is meaningless; %s", body_path, real_body_model_fix())


def _whole_npz(path: Path) -> bool:
    """Whether ``path`` is a whole ``.npz`` holding ``v_template``, from its zip directory (at its
    end: a file cut short has none; the arrays are not read)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return "v_template.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


@dataclass(frozen=True)
class ModelSource:
    """What :meth:`Pipeline.from_config` built a pipeline's model from.

    weights: ``"checkpoint"`` (``checkpoint`` is its path), ``"random"`` (an untrained network)
    or ``"given"`` (the ``net`` passed in); body_model: the SMPL-X file; body_model_synthetic:
    whether that is the synthetic stand-in.
    """

    weights: Literal["checkpoint", "random", "given"]
    checkpoint: Path | None
    body_model: Path
    body_model_synthetic: bool


def _to_host(fields: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Batched ``(B, ...)`` tensors as float32 numpy arrays of the same shapes, with one device ->
    host copy for all of them (one synchronisation per batch on CUDA)."""
    first = next(iter(fields.values()))
    n = first.shape[0]
    flat = torch.cat([t.reshape(n, -1).float() for t in fields.values()], 1).cpu().numpy()
    host, col = {}, 0
    for name, t in fields.items():
        width = math.prod(t.shape[1:])
        host[name] = flat[:, col : col + width].reshape(t.shape)
        col += width
    return host


@dataclass(frozen=True)
class PersonEstimate:
    """A person's SMPL-X parameters and cameras without the mesh: what ``wbcap run``'s pass 1
    keeps (:meth:`Pipeline.regress` with ``mesh=False``). Fields as in :class:`Person`."""

    index: int
    box: np.ndarray
    score: float
    crop_box: np.ndarray
    params: SMPLXParams
    focal: tuple[float, float]
    princpt: tuple[float, float]
    lhand_box: np.ndarray
    rhand_box: np.ndarray
    face_box: np.ndarray


@dataclass(frozen=True)
class Person(PersonEstimate):
    """One person's result in one image (no batch dimension but in ``params``).

    index: its place in the list returned (0, 1, ...). A box skipped as outside the image takes
        no place, so after one the people no longer line up with the boxes given by position:
        match them by ``box`` (the box given, as given), or give only boxes inside the image.
    params: the SMPL-X parameters, an :class:`~wbcap.body.params.SMPLXParams` holding a batch of
        one: ordinary float32 CPU tensors (not inference-mode ones: they can be edited in place or
        start an optimisation with ``requires_grad_()``), axis-angle rotations (radians); hands
        relative to the SMPL-X file's hand mean (``flat_hand_mean=False``, as the released model
        was trained); eyes at rest; ``transl`` (1, 3) metres, the body in the person's camera
        (Hand4Whole's ``cam_trans``). ``body(person.params)`` rebuilds ``vertices`` (to float
        rounding in ``exact``; in ``fast`` its SMPL-X ran partly in bfloat16: ~0.3 mm).
    vertices: (10475, 3) float32 metres in the person's camera (OpenCV axes: x right, y down, z
        forward). Projected with ``focal``/``princpt`` they land on the original image; with
        ``crop_focal``/``crop_princpt`` on ``crop``.
    joints: (137, 3) float32 metres, same frame; joints_2d: (137, 2) float32 original-image pixels.
    Boxes, all in one convention: ``(x, y, w, h)`` float64 numpy arrays (4,), pixels of the
        original image, ``(x, y)`` the top-left corner (pixel corners: the top-left pixel spans
        0..1), ``w, h`` width and height. ``box``: the detection box given or found;
        ``crop_box``: the enlarged 3:4 box that was cropped (may extend past the image);
        ``lhand_box``, ``rhand_box``, ``face_box``: the network's hand and face boxes. (The
        JSON files write the part boxes as corners, ``*_bbox_xyxy``.)
    score: detector score. crop: (512, 384, 3) uint8 RGB network input.
    focal, princpt: the person's camera on the original image, pixels; crop_focal, crop_princpt:
        the same camera on ``crop``.
    """

    vertices: np.ndarray
    joints: np.ndarray
    joints_2d: np.ndarray
    crop: np.ndarray
    crop_focal: tuple[float, float]
    crop_princpt: tuple[float, float]
    extras: dict = field(default_factory=dict)


#: The network's part boxes (:class:`~wbcap.model.regressor.RegressorOutput`'s names) and the
#: :class:`PersonEstimate` fields that hold them in image pixels (the raw records' names).
_PART_BOXES = ("lhand_bbox", "rhand_bbox", "face_bbox")
_BOX_NAMES = PART_BOXES


def _image_xywh(xyxy: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """A box's corners ``(4,)`` in input-crop pixels -> ``(x, y, w, h)`` float64 in the original
    image's (``inv``: the crop's inverse affine, :attr:`CropJob.inv_trans`)."""
    pts = transform_points(np.asarray(xyxy).reshape(2, 2), inv)
    return _xywh(pts.reshape(4).astype(np.float32))


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    """Corners ``(x1, y1, x2, y2)`` -> ``(x, y, w, h)``, float64: for float32 corners exact, and
    ``x + w`` gives ``x2`` back exactly (differences of float32 values are float64 numbers)."""
    b = np.asarray(xyxy, np.float64)
    return np.array([b[0], b[1], b[2] - b[0], b[3] - b[1]])


@dataclass(frozen=True)
class CropJob:
    """One person crop waiting for the network: detection, 3:4 crop box (xywh), the uint8
    (512, 384, 3) RGB patch (upstream warps the uint8 image, so these are exactly the network's
    input values x 255) and the crop->image affine map (2, 3)."""

    detection: Detection
    crop_box: np.ndarray
    patch: np.ndarray
    inv_trans: np.ndarray


#: How the Python API asks for the whole image as one person's box (the CLI's ``--full-image``).
_FULL_IMAGE = "detector='full'"


def box_advice() -> str:
    """The fix for an image without person boxes: give them (``pass --bbox x,y,w,h or
    --full-image`` from ``wbcap image``; :func:`wbcap.errors.setting`)."""
    return f"pass {setting('boxes')} x,y,w,h or {setting('full_image', api=_FULL_IMAGE)}"



def _usable_box(box: object) -> bool:
    """Whether a detector's ``box`` (kept as it is) meets the rule of every box a user gives
    (:func:`wbcap.detect.boxes.check_box`, any width or height): 4 numbers within
    :data:`~wbcap.detect.boxes.MAX_BOX_PIXELS` (1e300 was finite, and infinite once the crop
    made it float32: a review)."""
    from wbcap.detect.boxes import check_box

    try:
        check_box(box, "box", positive_size=False)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _given_box(box: object, index: int, given_by: str | None = None,
               source: str = "image", allow_empty: bool = False) -> Detection:
    """A box given to :meth:`Pipeline.__call__` (``(x, y, w, h)`` pixels, or a Detection) as a
    Detection (score 1 for a bare box), checked by the rule of every box a user gives (:func:`wbcap.detect.boxes.check_box`); with
    ``given_by`` (a detector object's name) one that detector returned, or with ``allow_empty``
    a detection handed to :meth:`Pipeline.predict` (a width or height of 0 or less allowed
    there: the crop skips such a box, with a warning).

    Raises:
        InputError: one line naming ``boxes[index]`` (or the detector's box) and the rule, after
            ``source`` (the image's file) when one is given.
    """
    from wbcap.detect.boxes import check_box

    what = f"boxes[{index}]" if given_by is None else f"box {index} of the {given_by} detector"
    fix = ("pass (x, y, w, h) in the image's pixels" if given_by is None else
           "a detector returns wbcap.detect.base.Detection((x, y, w, h), score) objects, in the image's pixels")
    positive = given_by is None and not allow_empty  # (a detector's empty box is skipped by the crop, as before)
    try:
        if isinstance(box, Detection):  # (its box as Python floats too: a tensor's would reach NumPy)
            checked = check_box(box.box, what, positive)
            score = box.score.item() if hasattr(box.score, "item") else box.score
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                fix = "give its score as a finite number (1.0 for a box you are sure of)"  # (not the box's fix: an API trial)
                raise ValueError(f"{what} score must be a finite number")
            return Detection(checked, float(score))
        single = isinstance(box, (numbers.Real, np.number)) or getattr(box, "ndim", None) == 0  # (a 1-D tensor's items)
        if given_by is None and index == 0 and single and not isinstance(box, bool):
            fix = "boxes is a list of boxes: for one box, boxes=[(x, y, w, h)]"  # (boxes=(x, y, w, h): an API trial)
        return Detection(check_box(box, what, positive), 1.0)  # (a box given without a score: 1)
    except ValueError as exc:
        shown = repr(box) if len(repr(box)) <= 80 else repr(box)[:77] + "..."
        text = str(exc) if str(exc).startswith(what) else f"{what}: {exc}"
        where = "" if source == "image" else f"{source}: "  # (a caller's file name; a break-it trial)
        raise InputError(f"{where}{text} (got {shown}); {fix}") from None


def _array_fix(image: np.ndarray) -> str:
    """How to make ``image`` (not an (H, W, 3) uint8 array) one, for the most common mistakes
    (the message said only what was expected: an API trial), or ""."""
    shape = image.shape
    if image.ndim == 4 and shape[0] == 1:
        return "; one image, not a batch: pass image[0]"
    if image.ndim == 3 and shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
        return "; channels first (C, H, W): pass image.transpose(1, 2, 0)"
    if image.ndim == 2 or (image.ndim == 3 and shape[2] == 1):
        return "; grey: pass np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)"
    if image.ndim == 3 and shape[2] == 4:
        return "; RGBA: pass image[:, :, :3]"
    if image.ndim == 3 and shape[2] == 3 and image.dtype.kind == "f":
        if image.size and float(np.nanmax(image)) > 1.0:  # (the error's path only: the values looked at)
            return "; floats in 0..255: pass image.round().clip(0, 255).astype(np.uint8)"
        return "; floats in 0..1: pass (image * 255).round().clip(0, 255).astype(np.uint8)"
    if image.ndim == 3 and shape[2] == 3 and image.dtype == np.uint16:
        return "; 16-bit: pass (image // 257).astype(np.uint8)"
    return ""


def _check_image_array(image: object, source: str = "image") -> None:
    """Raises InputError unless ``image`` is an ``(H, W, 3)`` uint8 numpy array (a torch tensor's
    message says how) that can hold a person's box (:func:`wbcap.image_app.check_size`, the rule
    of ``wbcap image`` and ``wbcap run``: 2 pixels a side; from Python a 0x0 or 1x1 array raised
    NoPersonError, as if a detector had found nobody: a hostile-input trial)."""
    if not isinstance(image, np.ndarray):
        how = ("; a torch tensor: pass tensor.cpu().numpy()" if isinstance(image, torch.Tensor)
               else "; a PIL image: pass np.asarray(im.convert('RGB'))" if type(image).__module__.startswith("PIL.")
               # (said only "got list"/"got str": an API trial)
               else "; a file: read it with wbcap.io.images.load_image(path)" if isinstance(image, (str, os.PathLike))
               else "; one image a call: call it once per image" if isinstance(image, (list, tuple))
               else "")
        raise InputError(f"{source}: expected a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}{how}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"{source}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
                         f"{_array_fix(image)}")
    from wbcap.image_app import check_size

    check_size(source, image.shape[1], image.shape[0], fix="pass a larger image")


class Pipeline:
    """Crops + batched regression for images; holds the network and the SMPL-X layer.

    Built from a :class:`~wbcap.config.PipelineConfig` by :meth:`from_config` (the model files,
    or a documented synthetic fallback); the constructor takes a ready regressor.

    With precision ``exact`` or ``fast`` (and ``optimize``, the default) the regressor's network
    is converted **in place** to its inference form (:meth:`optimize`); it can then no longer
    be trained or saved. Pass ``optimize=False`` to run the network module by module.
    ``batch_size``: person crops per network call; None: :func:`default_batch_size` for ``device``.
    ``few_calls``: the pipeline will run that many network calls of one crop only (a few
    photos; 0: many; True counts as 1): see :meth:`optimize`. ``measure_strategy``: whether a CPU
    strategy missing from the user cache is measured when the network is converted (default:
    unless ``few_calls``; False for other short jobs such as the video demo). A CPU pipeline made
    by :meth:`from_config` with either (a short job) turns transparent huge pages off for this
    process and the processes it starts (:func:`wbcap.model.strategy.apply_machine_huge_pages`:
    one photo ran 1.3x faster without them on a Zen 4 host), until a pipeline of a long job is
    made in the same process.

    ``precision`` is the requested mode (a :class:`~wbcap.model.precision.Precision` or its
    name); :attr:`precision` the Precision that runs on ``device``
    (:meth:`~wbcap.model.precision.Precision.resolve`). Per batch the forward reads nothing back
    from the device until the results: crops go up as uint8 (on CUDA through one reused pinned
    buffer) and are converted there; all outputs come back in one copy.
    """

    def __init__(
        self,
        regressor: WholeBodyRegressor,
        device: torch.device,
        batch_size: int | None = None,
        box_scale: float = BODY_BOX_SCALE,
        precision: Precision | str = Precision.EXACT,
        channels_last: bool = True,
        optimize: bool = True,
        cuda_graphs: bool = True,
        few_calls: int = 0,
        measure_strategy: bool | None = None,
    ):
        requested = Precision.parse(precision)
        precision = requested.resolve(device)
        #: The network will run this many calls of one crop only (0: many): the inference form
        #: skips forms that cost more to build than they save there
        #: (:func:`~wbcap.model.inference.optimize_for_inference`).
        self.few_calls = few_calls
        #: Measure a CPU strategy the user cache lacks (None: unless few_calls; :meth:`optimize`).
        self.measure_strategy = measure_strategy
        #: On CUDA the fused network runs from CUDA graphs captured per batch size (:meth:`_forward`).
        self.cuda_graphs = cuda_graphs
        self._graphed: dict[str, Any] = {}
        self.regressor = regressor.to(device).eval()
        # NHWC convolutions: measured 13-19 % more crops/s on the 2-core CPU for the unfused
        # network (same outputs up to float rounding); also the layout tensor cores want on CUDA.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # The fused form (optimize) writes its own NHWC weights from the trained ones: converting
        # those first would copy every convolution weight once more for nothing (~0.5 s at start).
        if not (optimize and precision.fused):
            self.regressor.net.to(memory_format=self.memory_format)
        self.device = device
        self.batch_size = max(1, int(default_batch_size(device) if batch_size is None else batch_size))
        self.box_scale = box_scale
        self.precision = precision
        #: The precision mode asked for (:attr:`precision` is the one that runs on the device).
        self.requested_precision = requested
        #: What :meth:`from_config` built the model from (None for a pipeline built from a regressor).
        self.source: ModelSource | None = None
        #: The config :meth:`from_config` was given (None for a pipeline built from a regressor).
        self.built_from: PipelineConfig | None = None
        self._detectors: dict[str, Detector] = {}
        self._pinned: torch.Tensor | None = None  # reused uint8 upload buffer (CUDA)
        self._upload_done = None  # CUDA event: the last upload from _pinned has finished
        if optimize:
            self.optimize()

    def job_config(self) -> PipelineConfig:
        """The settings this pipeline runs, as the :class:`~wbcap.config.PipelineConfig` of a job
        given it (``VideoJob(pipeline=pipe.job_config())`` with ``run_video(job, pipeline=pipe)``,
        which refuses a job whose precision or box scale is not the pipeline's, as ``run.json``
        records the job's): the precision asked for, :attr:`box_scale`, :attr:`device`,
        :attr:`batch_size`, the network's model settings (a checkpoint's own, as trained), and its
        config's SMPL-X file, gender, pickle setting and checkpoint as given (None where they were
        searched for, as ``wbcap run`` records them: a run made so resumes from the command line);
        but the synthetic stand-in for a missing SMPL-X model is named, as neutral. For a pipeline
        built from a regressor, the body model and checkpoint are the defaults' (looked for as the
        commands look), as that pipeline does not know its files.
        (Benchmarks ran a fast pipeline with a default, exact job and stopped at that refusal.)"""
        from dataclasses import replace

        base = self.built_from or PipelineConfig()
        body = base.body
        if self.source is not None and self.source.body_model_synthetic:  # (not found by a search: named; neutral)
            body = replace(body, path=str(self.source.body_model), gender="neutral")
        # (files the config named stay named, those searched for stay searched for, as a command records
        # them in run.json: a resolved path there refused the command's own --resume, a break-it trial)
        return replace(base, model=self.regressor.net.config, body=body, device=str(self.device),
                       batch_size=self.batch_size, box_scale=self.box_scale, precision=self.requested_precision.value)

    def optimize(self, plan: dict[str, torch.dtype] | None = None) -> None:
        """Convert the network in place to its inference form for :attr:`precision`
        (:func:`wbcap.model.inference.optimize_for_inference`: BatchNorm folded, convolutions fused and
        pre-packed, per-part dtypes; ``plan`` overrides some, for experiments; with
        :attr:`few_calls`, no form that costs more to build than it saves over a few calls).
        Nothing for the autocast modes (``bf16``, ``fp16``), which run the network module by
        module; a network already converted for this precision is left as it is."""
        self._graphed.clear()  # graphs captured the network before its conversion
        if self.precision.fused:
            from wbcap.model.inference import optimize_for_inference, optimize_regressor_body

            optimize_for_inference(self.regressor.net, self.device, self.precision, plan=plan,
                                   few_calls=self.few_calls, measure=self.measure_strategy)
            optimize_regressor_body(self.regressor, self.device, self.precision)
            # A convolution the conversion left as it was runs NHWC like the unfused network (the
            # constructor skips that copy for the weights the conversion replaces anyway).
            for module in self.regressor.net.modules():
                if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    module.to(memory_format=self.memory_format)

    @property
    def precision(self) -> Precision:
        """The precision mode that runs (set with a Precision or its name; setting it afterwards
        changes :meth:`inference_context` only, not how the network was converted)."""
        return self._precision

    @precision.setter
    def precision(self, value: Precision | str) -> None:
        self._precision = Precision.parse(value)
        self._graphed.clear()  # captured in the previous mode's context

    def _forward(self, part: str, batch: torch.Tensor):
        """``regressor`` (``part="full"``) or ``regressor.net`` (``"net"``) on ``batch``; on CUDA
        in the fused modes replayed from CUDA graphs (:mod:`wbcap.model.cuda_graph`: one per
        power-of-two batch size up to ``batch_size``, padded; eager when capture fails)."""
        module = self.regressor if part == "full" else self.regressor.net
        if self.device.type != "cuda" or not self.precision.fused or not self.cuda_graphs:
            return module(batch)
        runner = self._graphed.get(part)
        if runner is None:
            from wbcap.model.cuda_graph import CudaGraphRunner, capture_sizes

            runner = self._graphed[part] = CudaGraphRunner(
                module, capture_sizes(self.batch_size), self.inference_context, name=f"the network ({part})")
        return runner(batch)

    def __reduce_ex__(self, protocol):
        """Refused in one line, for pickling and copying alike: the network holds packed oneDNN
        weights and TorchScript graphs, which torch cannot pickle ("Cannot access storage of
        OpaqueTensorImpl", an API trial)."""
        raise TypeError("a wbcap Pipeline cannot be pickled or copied (its network holds packed oneDNN weights); "
                        "build one in each process, e.g. in a DataLoader's worker_init_fn (a forked worker may use one "
                        "built before the fork)")

    def inference_context(self):
        """What every network call of this pipeline runs inside:
        :meth:`Precision.inference_context <wbcap.model.precision.Precision.inference_context>`
        (``exact``: no TF32 on CUDA; ``fast``: torch's settings; ``bf16`` / ``fp16``: autocast)."""
        return self.precision.inference_context(self.device)

    @property
    def faces(self) -> np.ndarray:
        """(20908, 3) int64 triangle indices of the SMPL-X mesh."""
        return self.regressor.body.faces

    @classmethod
    def from_config(
        cls,
        config: PipelineConfig,
        net: Hand4Whole | None = None,
        *,
        weights: Weights = "checkpoint",
        fallback: Fallback = "none",
        upright: bool = False,
        optimize: bool = True,
        few_calls: int = 0,
        measure_strategy: bool | None = None,
    ) -> Pipeline:
        """Build the pipeline ``config`` describes: the one way to build one from files.

        Device: ``config.device`` (:func:`~wbcap.model.device.resolve_device`); batch size:
        ``config.batch_size``, None for :func:`default_batch_size` (8 on CPU, 32 on CUDA);
        ``config.box_scale``; ``config.precision`` (parsed once, :class:`Precision`).

        SMPL-X: the file ``config.body`` names or finds (:func:`~wbcap.body.model_files.find_body_model`).
        Network: ``net`` when given; else with ``weights="checkpoint"`` the checkpoint
        ``config.checkpoint`` names or finds (:func:`~wbcap.weights.find_checkpoint`), loaded with
        ``config.model.fix_left_hand_flip``; with ``weights="random"`` an untrained network of
        ``config.model`` (:func:`~wbcap.testing.checkpoints.random_network`, seed 0; with
        ``upright`` its heads predict a standing neutral body, otherwise they are left as drawn so
        every output depends on the image). ``config.checkpoint`` and random weights exclude each
        other (InputError).

        ``fallback``: ``"none"`` (default): a missing model file raises its one-line error
        (ModelFileError, CheckpointError). ``"synthetic"``: a missing file that the config does
        not name explicitly is replaced, with one warning each: the SMPL-X model by the cached
        synthetic one (:func:`synthetic_body_models_dir`; same size and format, not a human body),
        the checkpoint by random weights as above. A file the config names must exist.

        ``optimize``: convert the network to its inference form now (see the class);
        ``few_calls``: for a few network calls only, ``measure_strategy`` (see the class). The result's
        :attr:`source` says which files (or stand-ins) were used.
        """
        try:  # (True counts as 1, see the class; an API user's 'x' met int() deep inside, and -1 passed)
            whole = isinstance(few_calls, bool) or operator.index(few_calls) >= 0
        except TypeError:
            whole = False
        if not whole:
            raise ValueError(f"few_calls must be a whole number of network calls, 0 or more (0: many), got {few_calls!r}")
        short_job = bool(few_calls) or measure_strategy is False  # (the jobs that measure no CPU strategy)
        try:
            return cls._from_config(config, net, weights=weights, fallback=fallback, upright=upright,
                                    optimize=optimize, few_calls=few_calls, measure_strategy=measure_strategy,
                                    short_job=short_job)
        except BaseException:
            if short_job:  # (its huge-page switch back as it was: an API trial)
                from wbcap import huge_pages

                huge_pages.end_short_job()
            raise

    @classmethod
    def _from_config(
        cls,
        config: PipelineConfig,
        net: Hand4Whole | None,
        *,
        weights: Weights,
        fallback: Fallback,
        upright: bool,
        optimize: bool,
        few_calls: int,
        measure_strategy: bool | None,
        short_job: bool,
    ) -> Pipeline:
        """:meth:`from_config`'s work (its arguments checked there)."""
        if fallback not in ("none", "synthetic"):
            raise ValueError(f"fallback must be 'none' or 'synthetic', got {fallback!r}")
        if weights not in ("checkpoint", "random"):
            raise ValueError(f"weights must be 'checkpoint' or 'random', got {weights!r}")
        if weights == "random" and net is None and config.checkpoint is not None:
            raise InputError(f"random weights and a checkpoint ({config.checkpoint}) exclude each other; give one")
        from wbcap.model.strategy import StrategyRequest

        StrategyRequest.from_env()  # a bad $WBCAP_CPU_STRATEGY is one line now, before any loading, on any device
        precision = Precision.parse(config.precision)
        device = resolve_device(config.device)
        if device.type == "cpu" and optimize:
            from wbcap.model.strategy import apply_machine_huge_pages

            # (this machine's measured answer, or off for a short job, before anything large is loaded)
            apply_machine_huge_pages(short_job=short_job)
        body_cfg = config.body
        try:
            body_path = find_body_model(body_cfg.gender, body_cfg.path, allow_pickle=body_cfg.allow_pickle)
            synthetic_body = False
        except ModelFileError as exc:
            if fallback != "synthetic" or body_cfg.path is not None:
                if net is None and weights == "checkpoint" and (fallback != "synthetic" or config.checkpoint is not None):
                    from wbcap.weights import note_missing_checkpoint

                    note_missing_checkpoint(exc, config.checkpoint)  # (missing as well and not stood in for)
                raise
            log.warning("no SMPL-X model file found (see `wbcap doctor`); using a synthetic SMPL-X model of the "
                        "same size (%s)", type(exc).__name__)
            body_path = find_body_model("neutral", synthetic_body_models_dir())
            synthetic_body = True
        synthetic_body = synthetic_body or is_demo_body_model(body_path)
        body = SMPLXLayer.from_file(body_path, allow_pickle=body_cfg.allow_pickle)
        ckpt = None
        if net is not None:
            kind = "given"
        elif weights == "random":
            kind = "random"
        else:
            from wbcap.weights import find_checkpoint

            try:
                ckpt = find_checkpoint(config.checkpoint)
                kind = "checkpoint"
            except CheckpointError as exc:
                if fallback != "synthetic" or config.checkpoint is not None:
                    raise
                m = config.model
                log.warning("%s; using an untrained network with random weights (body R%d, hand R%d, face R%d: "
                            "the same FLOPs and speed, meaningless results)", str(exc).split(";")[0],
                            m.backbone_depth, m.hand_backbone_depth, m.face_backbone_depth)
                kind = "random"
        if kind == "checkpoint" and synthetic_body and fallback == "none":  # (a trained network, a fake body)
            warn_synthetic_body(body_path)
        if kind == "checkpoint":
            net = load_network(ckpt, device, fix_left_hand_flip=config.model.fix_left_hand_flip)
        elif kind == "random":
            from wbcap.testing.checkpoints import random_network

            net = random_network(config.model, seed=0, upright=upright)
        pipe = cls(WholeBodyRegressor(net, body), device, config.batch_size, config.box_scale, precision,
                   optimize=optimize, few_calls=few_calls, measure_strategy=measure_strategy)
        pipe.source = ModelSource(weights=kind, checkpoint=ckpt, body_model=Path(body_path),
                                  body_model_synthetic=synthetic_body)
        pipe.built_from = config
        return pipe

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path | None = None,
        body_models: str | Path | None = None,
        gender: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        precision: str | Precision = Precision.EXACT,
        few_calls: int = 0,
        measure_strategy: bool | None = None,
    ) -> Pipeline:
        """Convenience constructor for notebooks (:meth:`from_config`): the files looked for as
        the commands look for them (README, "Where wbcap looks for files"; None: not named).

        On a CPU whose inference strategy the user cache lacks, the first build measures it
        (10-30 s with 2 cores, once per machine, logged at INFO) unless ``measure_strategy``
        is False or ``few_calls`` is given: then the default form runs and nothing is cached.

        Args:
            checkpoint: the Hand4Whole checkpoint file (``snapshot_6.pth.tar``; a folder is refused:
                ``$WBCAP_WEIGHTS`` may name one); None: the one found (:func:`~wbcap.weights.find_checkpoint`).
            body_models: the SMPL-X model file, or a folder holding ``smplx/SMPLX_<GENDER>.npz``.
            gender: ``neutral | male | female``; None: the one the name of a ``body_models``
                file says, else neutral (:meth:`BodyModelConfig.given
                <wbcap.config.BodyModelConfig.given>`).
            device: ``auto | cpu | cuda | cuda:N``.
            batch_size: crops per network call; None: the device's default.
            precision: ``exact`` (default) or ``fast`` (README, "Precision modes"), or the
                comparison modes ``bf16 | fp16`` (any case).
            few_calls: the network will run this many calls of one crop only (0: many); see
                :class:`Pipeline`.
            measure_strategy: measure a CPU strategy the user cache lacks (None: unless
                ``few_calls``); see :class:`Pipeline`.

        Raises:
            CheckpointError: the checkpoint is missing, unreadable or not Hand4Whole's.
            ModelFileError: the SMPL-X model is missing or malformed, or an unknown gender.
            InputError: an unknown device or precision, CUDA asked for and missing, a
                ``batch_size`` under 1.
        """
        from wbcap.config import BodyModelConfig

        cfg = PipelineConfig(
            body=BodyModelConfig.given(None if body_models is None else str(body_models), gender),
            checkpoint=None if checkpoint is None else str(checkpoint),
            device=device,
            batch_size=batch_size,
            precision=normalize_precision(precision),
        )
        return cls.from_config(cfg, few_calls=few_calls, measure_strategy=measure_strategy)

    def __call__(
        self,
        image: np.ndarray,
        boxes: Sequence[Detection] | Sequence[Sequence[float]] | None = None,
        detector: Detector | str | None = None,
        source: str = "image",
    ) -> list[Person]:
        """Run on one (H, W, 3) uint8 RGB image. Boxes are xywh pixels or Detections; without
        boxes the detector finds people: a detector object, or a name ``wbcap run --detector``
        takes (``"hog"``, ``"torchvision"``, ``"auto"``, ``"full"``; built once and kept).
        Default: the whole image as one box. ``source``: how messages name the image (its file).

        Raises NoPersonError when the detector finds nobody, or no usable box remains;
        InputError for an image that is not an (H, W, 3) uint8 numpy array or is under 2 pixels a
        side (:func:`_check_image_array`), for both ``boxes`` and ``detector``, and
        for a box given (or returned by a detector object) that is not 4 finite numbers within the
        range every box a user gives keeps (:func:`wbcap.detect.boxes.check_box`: ``wbcap image
        --bbox``'s rule)."""
        _check_image_array(image, source)
        if boxes is not None and detector is not None:
            raise InputError("pipe(image, boxes=..., detector=...): give the boxes or a detector to find them, not both")
        if boxes is not None:
            boxes = [_given_box(b, i, source=source) for i, b in enumerate(boxes)]
        if boxes is None:
            if detector is None:
                h, w = image.shape[:2]
                boxes = [Detection((0.0, 0.0, float(w), float(h)), 1.0)]
            else:
                if isinstance(detector, str):
                    detector = self.detector(detector)
                elif not callable(detector):  # (a number met "'int' object is not callable" inside: an API trial)
                    raise InputError(f"pipe(image, detector={detector!r}): a detector is a name ('auto', 'hog', "
                                     "'torchvision', 'full') or a callable taking the image and returning "
                                     "wbcap.detect.base.Detection objects")
                name = getattr(detector, "name", None) or getattr(detector, "__name__", type(detector).__name__)
                found = detector(image)
                if found is None or isinstance(found, (str, bytes)) or not hasattr(found, "__iter__"):
                    raise InputError(f"{source}: the {name} detector returned {type(found).__name__}, not a list of "
                                     "boxes; a detector returns wbcap.detect.base.Detection((x, y, w, h), score) objects "
                                     "(an empty list for nobody)")
                boxes = [_given_box(b, i, name, source) for i, b in enumerate(found)]
                if not len(boxes):
                    raise NoPersonError(f"{source}: no person found by the {name} detector; {box_advice()}")
        return self._predict(image, boxes, source)

    def detector(self, name: str) -> Detector:
        """The person detector ``name`` names (``hog``, ``torchvision``, ``auto``, ``full``), on
        this pipeline's device; built on first use and kept for later calls.

        Raises InputError for an unknown name or a ``boxes:FILE`` spec (pass ``boxes=`` instead).
        """
        from wbcap.detect.factory import make_detector

        cache = self._detectors
        if name not in cache:
            if name.startswith("boxes:"):
                raise InputError(
                    f"detector {name!r} gives boxes per file name or frame, not per image; "
                    "pass the boxes with pipe(image, boxes=[(x, y, w, h), ...]) instead"
                )
            try:
                cache[name] = make_detector(name, device=self.device)
            except InputError as exc:  # (the command's list names boxes:FILE, refused here: an API trial)
                if not str(exc).startswith("unknown detector"):
                    raise
                raise InputError(f"{exc} (from Python, pass boxes with pipe(image, boxes=[(x, y, w, h), ...]) "
                                 "rather than boxes:FILE)") from None
        return cache[name]

    def predict(self, image: np.ndarray, detections: Sequence[Detection], source: str = "image") -> list[Person]:
        """Crop every detection, regress in batches, map results back to the image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (not OpenCV's BGR).
            detections: the people's boxes: :class:`~wbcap.detect.base.Detection` objects or
                ``(x, y, w, h)`` boxes in ``image``'s pixels, checked as :meth:`__call__`'s
                ``boxes`` but for a size of 0 or less, which is skipped as a box outside the
                image is (a detector's output; it said tuples and took only Detections, and
                took an infinite width: a user trial).
            source: how messages name the image (its file name).

        Returns:
            One :class:`Person` per usable box, in the order of ``detections`` (boxes wholly
            outside the image are skipped).

        Raises:
            InputError: ``image`` is not an ``(H, W, 3)`` uint8 array or is under 2 pixels a side,
                or a box is not 4 finite numbers within :func:`~wbcap.detect.boxes.check_box`'s range.
            NoPersonError: no usable box remains (e.g. every box outside the image).
        """
        _check_image_array(image, source)  # (before the boxes, as __call__: a break-it trial)
        detections = [_given_box(d, i, source=source, allow_empty=True) for i, d in enumerate(detections)]
        return self._predict(image, detections, source)

    def _predict(self, image: np.ndarray, detections: Sequence[Detection], source: str) -> list[Person]:
        """:meth:`predict` of checked Detections (:meth:`__call__` checked them by its rules)."""
        jobs = self.crop(image, detections, source)
        if not jobs:
            raise NoPersonError(f"{source}: no person boxes given; {box_advice()}")
        return self.regress(jobs)

    def crop_box(self, box: Sequence[float], width: int, height: int) -> np.ndarray | None:
        """The network's window ``(4,)`` float32 ``(x, y, w, h)`` pixels for a detected ``box``
        ``(x, y, w, h)`` in a ``width`` x ``height`` image (upstream's ``process_bbox``, the
        model's aspect ratio, :attr:`box_scale`), or None for a box that is skipped: wholly
        outside the image (upstream's sanitising would move one left of or above it onto its
        border, where it would be regressed), or degenerate there (a side of 1 pixel or less, a
        sliver at the right edge). The one rule of :meth:`crop` and of ``--max-people``'s places
        (a box skipped here took one: a review)."""
        if box_outside_image(tuple(float(v) for v in box), width, height):
            return None
        return process_bbox(np.asarray(box, dtype=np.float32), width, height,
                            aspect_ratio=self.regressor.config.body_aspect_ratio, scale=self.box_scale)

    def crop(self, image: np.ndarray, detections: Sequence[Detection], source: str = "image", strict: bool = True) -> list[CropJob]:
        """The network inputs for ``detections`` in ``image`` ((H, W, 3) uint8 RGB).

        ``detections``: Detections (a detector's: ``wbcap run``'s pass 1; kept as they are when
        their boxes meet the rule below) or ``(x, y, w, h)`` boxes, checked as :meth:`predict`
        checks them (an InputError for a box that is not 4 finite numbers; they raised
        AttributeError, an API trial; a Detection's infinite box was cropped, a hostile-input
        trial). Boxes outside the image are skipped; with ``strict`` an image whose every box was
        skipped raises NoPersonError naming the box. An image that is not ``(H, W, 3)`` uint8 or
        is under 2 pixels a side raises InputError, ``strict`` or not (:func:`_check_image_array`).
        """
        _check_image_array(image, source)
        detections = [d if isinstance(d, Detection) and _usable_box(d.box) else
                      _given_box(d, i, source=source, allow_empty=True) for i, d in enumerate(detections)]
        h, w = image.shape[:2]
        cfg = self.regressor.config
        jobs, skipped = [], []
        for det in detections:
            crop_box = self.crop_box(det.box, w, h)
            if crop_box is None:
                skipped.append(det.box)
                continue
            patch, _, inv = crop_image(image, crop_box, tuple(cfg.input_img_shape), dtype=None)
            jobs.append(CropJob(det, crop_box, patch, inv))
        box_text = ", ".join(",".join(f"{v:g}" for v in b) for b in skipped[:3])
        if skipped and not jobs and strict:
            raise NoPersonError(
                f"{source}: box {box_text} (x,y,w,h) lies outside the {w}x{h} image or has a side under 2 pixels there; "
                f"pass a box inside the image or {setting('full_image', api=_FULL_IMAGE)}"
            )
        if skipped:
            log.warning("%s: skipped box(es) outside the %dx%d image or with a side under 2 pixels there: %s",
                        source, w, h, box_text)
        return jobs

    def regress(self, jobs: Sequence[CropJob], first_index: int = 0, *, mesh: bool = True) -> list[Person]:
        """Run the network on crops (any number; batched by ``batch_size``).

        ``mesh=False`` returns :class:`PersonEstimate` objects instead: the same parameters and
        cameras (bit for bit), without running SMPL-X or copying meshes, joints and crops to the
        host (``wbcap run``'s pass 1 keeps only those).

        Raises:
            InputError: a job's patch is not the network's ``(H, W, 3)`` uint8 input
                (``config.input_img_shape``; :meth:`crop` makes them).
        """
        people: list = []
        size = (*self.regressor.config.input_img_shape, 3)
        for i, job in enumerate(jobs):  # (a wrong-size patch ran silently; mixed with others numpy's stack refused it)
            patch = getattr(job, "patch", None)
            if not isinstance(patch, np.ndarray) or patch.shape != size or patch.dtype != np.uint8:
                got = (f"{patch.shape} {patch.dtype}" if isinstance(patch, np.ndarray) else type(patch).__name__)
                raise InputError(f"crop {i}: its patch is {got}, not the network's {size} uint8 input; make the crops "
                                 "with pipe.crop(image, boxes)")
        # (results built outside inference mode even inside the caller's: they are ordinary
        # tensors to edit or fit from, also under `with torch.inference_mode(): pipe(...)`, a user trial)
        with torch.inference_mode(False):
            for start in range(0, len(jobs), self.batch_size):
                batch = list(jobs[start : start + self.batch_size])
                run = self._run_batch if mesh else self._run_batch_params
                people.extend(run(batch, first_index + len(people)))
        return people

    def _image_cameras(self, jobs: Sequence[CropJob]) -> tuple[list, list]:
        """Each person's camera on the original image (focal, princpt pixels): the body-input
        camera rescaled to its crop box."""
        cfg = self.regressor.config
        img_focal, img_princpt = crop_to_image_camera_np(
            cfg.focal, cfg.princpt, np.stack([job.crop_box for job in jobs]).astype(np.float64), cfg.input_body_shape
        )
        return img_focal.tolist(), img_princpt.tolist()

    def _run_batch_params(self, jobs: list, first_index: int) -> list[PersonEstimate]:
        with torch.inference_mode():  # (the results are built outside it: ordinary tensors, see Person)
            batch = self._upload(jobs)
            with self.inference_context():
                out = self._forward("net", batch)
            p = out.smplx.to_axis_angle()
            host = _to_host({**{name: p[name] for name in SMPLX_FIELDS},
                             **dict(zip(_PART_BOXES, self.regressor.part_boxes(out)))})
        boxes = {k: host.pop(k) for k in _PART_BOXES}
        img_focal, img_princpt = self._image_cameras(jobs)
        return [
            PersonEstimate(
                index=first_index + i, box=np.asarray(job.detection.box, dtype=np.float64),
                score=float(job.detection.score), crop_box=np.asarray(job.crop_box, dtype=np.float32).astype(np.float64),
                params=SMPLXParams(**{k: torch.from_numpy(v[i : i + 1].copy()) for k, v in host.items()}),
                focal=tuple(img_focal[i]), princpt=tuple(img_princpt[i]),
                **{name: _image_xywh(boxes[key][i], job.inv_trans) for name, key in zip(_BOX_NAMES, _PART_BOXES)},
            )
            for i, job in enumerate(jobs)
        ]

    def _upload(self, jobs: Sequence[CropJob]) -> torch.Tensor:
        """The crops as the network input: (B, 3, H, W) float32 in 0..1 on the device, in
        ``memory_format``. Stacked once as uint8 NHWC on the host (on CUDA into a pinned buffer
        reused across batches), copied, and converted on the device: the NHWC upload seen as
        NCHW is already channels_last."""
        n = len(jobs)
        shape = jobs[0].patch.shape
        if self.device.type == "cuda" and all(j.patch.dtype == np.uint8 for j in jobs):
            if self._pinned is None or self._pinned.shape[0] < n or tuple(self._pinned.shape[1:]) != shape:
                self._pinned = torch.empty((max(n, self.batch_size), *shape), dtype=torch.uint8).pin_memory()
                self._upload_done = torch.cuda.Event()
            else:
                self._upload_done.synchronize()  # the previous batch's copy has left the buffer
            host = self._pinned[:n]
            np.stack([j.patch for j in jobs], out=host.numpy())
            x = host.to(self.device, non_blocking=True)
            self._upload_done.record()
        else:
            x = torch.from_numpy(np.stack([j.patch for j in jobs])).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255)  # channels_last strides, as the stack was NHWC
        return x.contiguous(memory_format=self.memory_format)

    def _run_batch(self, jobs: list, first_index: int) -> list[Person]:
        with torch.inference_mode():  # (the results are built outside it: ordinary tensors, see Person)
            batch = self._upload(jobs)
            with self.inference_context():
                out = self._forward("full", batch)
            # Axis-angle only here, where the parameters leave the network for users and files.
            p = out.params.smplx.to_axis_angle()
            fields = {
                **{name: p[name] for name in SMPLX_FIELDS},
                "vertices": out.vertices,
                "joints": out.joints,
                "joints_proj": out.joints_proj,
                "lhand_bbox": out.lhand_bbox,
                "rhand_bbox": out.rhand_bbox,
                "face_bbox": out.face_bbox,
            }
            host = _to_host(fields)
        verts, joints, proj = host.pop("vertices"), host.pop("joints"), host.pop("joints_proj")
        boxes = {k: host.pop(k) for k in _PART_BOXES}
        params = host  # the SMPL-X fields, axis-angle
        crop_focal, crop_princpt = self.regressor.crop_camera()
        img_focal, img_princpt = self._image_cameras(jobs)
        people = []
        for i, job in enumerate(jobs):
            det, crop_box, patch, inv = job.detection, job.crop_box, job.patch, job.inv_trans
            focal, princpt = tuple(img_focal[i]), tuple(img_princpt[i])

            people.append(
                Person(
                    index=first_index + i,
                    box=np.asarray(det.box, dtype=np.float64),
                    score=float(det.score),
                    crop_box=np.asarray(crop_box, dtype=np.float32).astype(np.float64),
                    params=SMPLXParams(**{k: torch.from_numpy(v[i : i + 1].copy()) for k, v in params.items()}),
                    vertices=verts[i],
                    joints=joints[i],
                    joints_2d=transform_points(proj[i], inv).astype(np.float32),
                    focal=focal,
                    princpt=princpt,
                    crop=patch,
                    crop_focal=crop_focal,
                    crop_princpt=crop_princpt,
                    **{name: _image_xywh(boxes[key][i], inv) for name, key in zip(_BOX_NAMES, _PART_BOXES)},
                )
            )
        return people
