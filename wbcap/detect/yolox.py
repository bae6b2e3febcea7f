"""Person detector running a YOLOX ONNX export (Ge et al. 2021, "YOLOX: Exceeding YOLO Series
in 2021"; Megvii's ``yolox`` repository, Apache-2.0).

The pre- and post-processing follow the repository's ONNX demo
(``demo/ONNXRuntime/onnx_inference.py``, ``yolox/data/data_augment.py:preproc`` and
``yolox/utils/demo_utils.py:demo_postprocess``), checked on a real ``yolox_nano.onnx``:

* **Input** ``(1, 3, S, S)`` float32, **BGR**, raw 0-255 values (no scaling, no mean/std).
  ``S`` is read from the model (416 for nano/tiny, 640 for s/m/l/x).
* **Letterbox**: the image is resized by ``r = min(S / H, S / W)`` to
  ``(int(W r), int(H r))`` (bilinear) and put at the **top-left** of an ``S x S`` canvas filled
  with 114 (no centring, so no offset to undo: box coordinates are simply divided by ``r``).
* **Output** ``(1, N, 85)``: per anchor ``x, y, w, h``, objectness, 80 COCO class scores.
  Objectness and class scores already went through a sigmoid inside the graph (it is not
  applied again here). Anchors lie on the grids of strides 8, 16, 32
  (``N = sum((S / s)**2)``), concatenated in stride order, each grid row-major
  (x varies fastest). Raw boxes are decoded as ``centre = (xy + grid) * stride`` and
  ``size = exp(wh) * stride`` (input pixels), then divided by ``r``.
* **Person** is COCO class 0; a box's score is ``objectness * class-0 score`` (in [0, 1]).
  Boxes under ``score_threshold`` are dropped, then non-maximum suppression at ``nms_iou``.

Raw vs decoded outputs: some exports (``--decode_in_inference``) output boxes already decoded
(``x, y`` = centre in input pixels). The rule used when ``decoded=None`` (auto): the output is
decoded when the median over all anchors of the first two columns exceeds ``S / 8``. Raw
outputs are offsets within a cell (about 0-1, median ~0.5) while decoded centres cover the
grid (median ~``S / 2``), so the two are tens of times apart for any ``S >= 64``. The decision is
taken on the first image, logged, and kept; pass ``decoded=True/False`` to force it.

Returned boxes are ``(x, y, w, h)`` pixels of the given image, top-left corner, clipped to the
image (see :mod:`wbcap.detect.base`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.detect.base import YOLOX_SCORES, Detection, check_probability_threshold, sort_by_score
from wbcap.errors import InputError, first_line, setting

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
NUM_OUTPUTS = 85  # x, y, w, h, objectness, 80 COCO classes
PAD_VALUE = 114
PERSON_CLASS = 0
#: Boxes kept per image at most (highest scores first): COCO's per-image detection limit, which
#: torchvision's detectors apply too. A score threshold near 0 keeps every anchor NMS leaves
#: (over a thousand on vtest at 0.0), each a network crop: a frame took minutes (a user trial).
MAX_DETECTIONS = 100
_FIX = ("use the release's yolox_nano.onnx (`wbcap weights fetch yolox-nano`) or another YOLOX ONNX export "
        "(github.com/Megvii-BaseDetection/YOLOX, tools/export_onnx.py)")


def num_anchors(size: int, strides: Sequence[int] = STRIDES) -> int:
    """Number of anchors ``N = sum((size // s)**2)`` of a YOLOX head on an ``size x size`` input."""
    return int(sum((size // s) ** 2 for s in strides))


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """YOLOX preprocessing: resize keeping the aspect ratio, top-left on a 114-grey canvas, BGR.

    Args:
        image: ``(H, W, 3)`` uint8 **RGB**.
        size: network input side ``S``, pixels.

    Returns:
        ``(blob, r)``: ``blob`` ``(1, 3, S, S)`` float32, channels **B, G, R**, values 0-255
        (unscaled); ``r = min(S / H, S / W)`` the resize ratio (input px per image px).
        Source: ``yolox/data/data_augment.py:preproc`` (image there is already BGR). A side that
        would shrink below one pixel (a 20000 x 20 panorama: ``20 r = 0.4``) is kept at one
        (``int`` there would give 0, which OpenCV's resize refuses).
    """
    import cv2

    height, width = image.shape[:2]
    r = min(size / height, size / width)
    new_w, new_h = max(1, int(width * r)), max(1, int(height * r))
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    resized = image if (new_w, new_h) == (width, height) else cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_LINEAR
    )
    canvas[:new_h, :new_w] = resized
    blob = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # RGB -> BGR, CHW
    return np.ascontiguousarray(blob), float(r)


def anchor_grid(size: int, strides: Sequence[int] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Cell coordinates and strides of every anchor, in the head's output order.

    Returns:
        ``(grid, stride)``: ``(N, 2)`` float32 ``(gx, gy)`` cell indices (x varies fastest within
        a row; grids of the strides concatenated in order) and ``(N, 1)`` float32 strides, px.
        Source: ``yolox/utils/demo_utils.py:demo_postprocess``.
    """
    grids, expanded = [], []
    for stride in strides:
        n = size // stride
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))  # xv varies along columns
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        expanded.append(np.full((n * n, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)


def decode_raw(pred: np.ndarray, size: int, strides: Sequence[int] = STRIDES) -> np.ndarray:
    """Decode raw YOLOX box outputs to centre boxes in input pixels.

    Args:
        pred: ``(N, 85)`` (or ``(N, >=4)``) raw outputs, float.
        size: network input side ``S``, px.

    Returns:
        A copy of ``pred`` (float32) whose first four columns are ``(cx, cy, w, h)`` input px:
        ``(xy + grid) * stride`` and ``exp(wh) * stride``; other columns unchanged.
    """
    grid, stride = anchor_grid(size, strides)
    if pred.shape[0] != grid.shape[0]:
        raise ValueError(f"expected {grid.shape[0]} anchors for input {size}, got {pred.shape[0]}")
    out = np.array(pred, dtype=np.float32, copy=True)
    out[:, :2] = (out[:, :2] + grid) * stride
    out[:, 2:4] = np.exp(out[:, 2:4]) * stride
    return out


def looks_decoded(pred: np.ndarray, size: int) -> bool:
    """The raw-vs-decoded rule (module docstring): median of the ``x, y`` columns > ``S / 8``."""
    return bool(np.median(pred[:, :2]) > size / 8)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes_xyxy: ``(K, 4)`` corners ``x1, y1, x2, y2``, px.
        scores: ``(K,)``.
        iou: a box is dropped when its IoU with a kept, higher-scoring box is **above** this.

    Returns:
        ``(M,)`` int64 indices of kept boxes, by decreasing score (ties: lower index first).
    """
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[ious <= iou]
    return np.asarray(keep, np.int64)


def postprocess(
    pred: np.ndarray,
    ratio: float,
    image_hw: tuple[int, int],
    *,
    score_threshold: float,
    nms_iou: float,
    decoded: bool,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes from one image's head output.

    Args:
        pred: ``(N, 85)`` head output (sigmoid already applied to columns 4 and up).
        ratio: letterbox ratio ``r`` (:func:`letterbox`).
        image_hw: ``(H, W)`` of the original image, px (boxes are clipped to it).
        decoded: whether ``pred[:, :4]`` is already ``(cx, cy, w, h)`` input px.
        size: network input side ``S``.

    Returns:
        ``(boxes, scores)``: ``(M, 4)`` float64 ``(x, y, w, h)`` image px (top-left corner) and
        ``(M,)`` scores ``objectness * person``, by decreasing score, after NMS.
    """
    pred = np.asarray(pred, np.float32)
    scores = pred[:, 4] * pred[:, 5 + PERSON_CLASS]
    sel = scores >= score_threshold
    if not sel.any():
        return np.zeros((0, 4)), np.zeros(0)
    boxes = pred if decoded else decode_raw(pred, size)
    cxcywh = boxes[sel, :4].astype(np.float64) / ratio
    scores = scores[sel].astype(np.float64)
    height, width = image_hw
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
    keep = nms(xyxy, scores, nms_iou)
    xyxy, scores = xyxy[keep], scores[keep]
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    return xywh, scores


def _check_signature(path: Path, in_shape: Sequence[Any], out_shapes: list[Sequence[Any]]) -> int:
    """Validate ``(1, 3, S, S)`` -> ``(1, N, 85)``; return ``S``. Raises InputError (one line)."""
    shape = list(in_shape)
    if len(shape) != 4 or shape[:2] != [1, 3] or not isinstance(shape[2], int) or shape[2] != shape[3]:
        raise InputError(
            f"{path}: not a YOLOX detector: its input has shape {shape}, expected (1, 3, S, S) "
            f"with a fixed S; {_FIX}"
        )
    size = int(shape[2])
    if len(out_shapes) != 1:
        raise InputError(f"{path}: not a YOLOX detector: {len(out_shapes)} outputs, expected 1; {_FIX}")
    out = list(out_shapes[0])
    expected = num_anchors(size)
    if len(out) != 3 or out[2] != NUM_OUTPUTS or out[1] not in (expected, None) or not isinstance(out[1], (int, type(None))):
        raise InputError(
            f"{path}: not a COCO YOLOX detector: output shape {out}, expected (1, {expected}, "
            f"{NUM_OUTPUTS}) for a {size}x{size} input with strides {STRIDES}; {_FIX}"
        )
    return size


def _reraise_interrupt(exc: ImportError) -> None:
    """Ctrl-C while a compiled module initialises surfaces as an ImportError caused by the
    KeyboardInterrupt: that is an interrupt, not a missing package."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, KeyboardInterrupt):
        raise cause


def _onnx_shapes(path: Path) -> tuple[list[Any], list[list[Any]]] | None:
    """Input and output shapes read with the ``onnx`` package, None when it is not installed."""
    try:
        import onnx
    except ImportError as exc:
        _reraise_interrupt(exc)
        return None
    model = onnx.load(str(path), load_external_data=False)
    init = {t.name for t in model.graph.initializer}

    def dims(v: Any) -> list[Any]:
        return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]

    inputs = [v for v in model.graph.input if v.name not in init]
    if len(inputs) != 1:
        raise InputError(f"{path}: not a YOLOX detector: {len(inputs)} inputs, expected 1; {_FIX}")
    return dims(inputs[0]), [dims(o) for o in model.graph.output]


def onnx_weights(path: str | os.PathLike[str]) -> tuple[int, list[str]]:
    """``(values, external files)`` of an ONNX model's weights: the number of values in its
    graph's initializers (sparse ones' stored values) and constant nodes (its subgraphs' too), and the files named by those
    stored outside it (ONNX external data, beside the model), read without their data.

    Raises:
        InputError: the file is not an ONNX model the ``onnx`` package reads.
    """
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # (onnx raises DecodeError, ValueError, OSError... on other files)
        raise InputError(f"{path}: cannot load as an ONNX model ({first_line(exc)}); {_FIX}") from None
    external: list[str] = []

    def tensor(t) -> int:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            external.extend(e.value for e in t.external_data if e.key == "location")
        return int(np.prod(t.dims, dtype=np.int64))

    def count(graph) -> int:
        n = sum(tensor(t) for t in graph.initializer) + sum(tensor(t.values) for t in graph.sparse_initializer)
        for node in graph.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    n += tensor(a.t)
                elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
                    n += tensor(a.sparse_tensor.values)
                elif a.type in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS) and node.op_type == "Constant":
                    n += len(a.floats) + len(a.ints)
                elif a.type == onnx.AttributeProto.GRAPH:
                    n += count(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    n += sum(count(g) for g in a.graphs)
        return n

    return count(model.graph), sorted(set(external))


def describe_model(path: str | os.PathLike[str]) -> str:
    """Check that ``path`` is a COCO YOLOX ONNX export and describe it in one line.

    Loads it with the runtime :class:`YOLOXDetector` would use and checks its signature
    (``(1, 3, S, S)`` -> ``(1, N, 85)``). Raises InputError (one line) otherwise.
    """
    det = YOLOXDetector(path, announce=False)
    return (f"YOLOX ONNX, input (1, 3, {det.size}, {det.size}) -> output (1, {num_anchors(det.size)}, {NUM_OUTPUTS}), "
            f"{det.runtime}")


def check_model_file(path: str | os.PathLike[str]) -> None:
    """Refuse a YOLOX model ``path`` that is not a regular file (missing, a folder, a pipe, a
    loop of links: :func:`wbcap.paths.not_a_regular_file`), before anything opens it.

    Raises:
        InputError: one line naming the path and where a YOLOX model comes from.
    """
    from wbcap.paths import not_a_regular_file

    problem = not_a_regular_file(path)
    if problem is not None:
        raise InputError(f"YOLOX model {Path(path)} {problem}; {_FIX}")


class YOLOXDetector:
    """COCO YOLOX person detector from an ONNX export (module docstring for the processing).

    Args:
        model_path: the ``.onnx`` file (e.g. the release's ``yolox_nano.onnx``).
        score_threshold: minimum ``objectness * person`` score of a kept box, in [0, 1]; at most
            :data:`MAX_DETECTIONS` boxes are kept per image (one warning when more pass it).
        nms_iou: boxes overlapping a higher-scoring box with IoU above this are dropped.
        min_height_frac: drop boxes shorter than this fraction of the image height (0 keeps all).
        max_people: keep at most this many boxes (highest scores); None keeps all (at most
            :data:`MAX_DETECTIONS`). (``wbcap run`` and ``image`` leave it None and choose people later.)
        device: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (onnxruntime's CUDA provider when it is
            available, else CPU with a warning).
        threads: onnxruntime intra-op threads (default 1: detection runs in its own thread
            beside the network). OpenCV's thread count is process-wide and left alone.
        runtime: ``"auto"`` (onnxruntime when importable, else OpenCV), ``"onnxruntime"`` or
            ``"opencv"`` (``cv2.dnn.readNetFromONNX``).
        decoded: ``None`` detects raw vs decoded box outputs (module docstring); True/False
            forces it.
        announce: log the model's input size and runtime at INFO (:func:`describe_model`, a
            check such as ``wbcap doctor``'s, logs it at DEBUG: a new user's trial saw it
            printed above doctor's report).

    Raises:
        InputError: ``score_threshold`` outside [0, 1]; the model file is missing, unreadable or
            not a YOLOX COCO detector.
    """

    name = "yolox"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        score_threshold: float = 0.3,
        nms_iou: float = 0.45,
        min_height_frac: float = 0.0,
        max_people: int | None = None,
        *,
        device: str = "cpu",
        threads: int = 1,
        runtime: str = "auto",
        decoded: bool | None = None,
        announce: bool = True,
    ) -> None:
        if not 0.0 <= min_height_frac <= 1.0:
            raise ValueError(f"min_height_frac must be in [0, 1], got {min_height_frac}")
        if max_people is not None and max_people < 1:
            raise ValueError(f"max_people must be >= 1 or None, got {max_people}")
        check_probability_threshold(score_threshold, YOLOX_SCORES)
        if runtime not in ("auto", "onnxruntime", "opencv"):
            raise ValueError(f"runtime must be 'auto', 'onnxruntime' or 'opencv', got {runtime!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model_path = Path(model_path)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.min_height_frac = float(min_height_frac)
        self.max_people = max_people
        self.device = device
        self.threads = int(threads)
        self.decoded = decoded
        self._said_too_many = False
        path = self.model_path
        check_model_file(path)
        if runtime == "auto":
            try:
                from wbcap.onnx_runtime import import_onnxruntime

                import_onnxruntime()  # (its telemetry off: a plain import here had it on, a code review)
                runtime = "onnxruntime"
            except ImportError as exc:
                _reraise_interrupt(exc)
                runtime = "opencv"
        self.runtime = runtime
        self._session: Any = None
        self._net: Any = None
        if runtime == "onnxruntime":
            self.size = self._load_onnxruntime(path)
        else:
            self.size = self._load_opencv(path)
        (log.info if announce else log.debug)("YOLOX %s: input %dx%d, runtime %s", path.name, self.size, self.size,
                                              self.runtime)

    # -- loading ---------------------------------------------------------------------------------
    def _load_onnxruntime(self, path: Path) -> int:
        from wbcap.onnx_runtime import import_onnxruntime

        ort = import_onnxruntime()

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" in ort.get_available_providers():
                dev_id = int(self.device.split(":")[1]) if ":" in self.device else 0
                providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
            else:
                log.warning("YOLOX: onnxruntime has no CUDA provider here; detecting on the CPU")
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            first = first_line(exc)
            raise InputError(f"{path}: cannot load as an ONNX model ({first}); {_FIX}") from exc
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise InputError(f"{path}: not a YOLOX detector: {len(inputs)} inputs, expected 1; {_FIX}")
        def as_int(shape):
            return [d if isinstance(d, int) else None for d in shape]

        size = _check_signature(path, as_int(inputs[0].shape), [as_int(o.shape) for o in outputs])
        self._session = session
        self._input_name = inputs[0].name
        return size

    def _load_opencv(self, path: Path) -> int:
        import cv2

        try:
            net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise InputError(f"{path}: OpenCV cannot load it as an ONNX model; {_FIX}") from exc
        if self.device.startswith("cuda"):
            log.warning("YOLOX: the OpenCV runtime runs on the CPU here; install onnxruntime-gpu for CUDA")
        self._net = net
        shapes = _onnx_shapes(path)
        if shapes is not None:
            return _check_signature(path, shapes[0], shapes[1])
        # Without the onnx package: probe the usual sizes with a grey image and keep the one
        # whose output has the right anchor count.
        for size in (416, 640, 320, 512, 1280):
            try:
                out = self._forward(np.full((1, 3, size, size), PAD_VALUE, np.float32))
            except cv2.error:
                continue
            if out.shape == (num_anchors(size), NUM_OUTPUTS):
                return size
        raise InputError(f"{path}: not a YOLOX COCO detector (no (1, N, 85) output at 416 or 640); {_FIX}")

    # -- inference -------------------------------------------------------------------------------
    def _forward(self, blob: np.ndarray) -> np.ndarray:
        """Run the network on ``(1, 3, S, S)`` float32; return ``(N, 85)`` float32."""
        if self._session is not None:
            out = self._session.run(None, {self._input_name: blob})[0]
        else:
            self._net.setInput(blob)
            out = self._net.forward()
        return np.asarray(out, np.float32).reshape(-1, NUM_OUTPUTS)

    def raw_output(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Letterbox ``image`` (``(H, W, 3)`` uint8 RGB) and run the network.

        Returns:
            ``(pred, r)``: ``(N, 85)`` float32 head output and the letterbox ratio.
        """
        blob, ratio = letterbox(image, self.size)
        return self._forward(blob), ratio

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """Detect people.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.

        Returns:
            Detections, ``(x, y, w, h)`` pixels of ``image`` (top-left corner), clipped to it,
            score = objectness x person probability in [0, 1], sorted by score, highest first.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(
                f"YOLOX detector: expected an (H, W, 3) uint8 RGB image, got {image.shape} "
                f"{image.dtype}; load images with wbcap.io.images.load_image"
            )
        pred, ratio = self.raw_output(image)
        if self.decoded is None:
            self.decoded = looks_decoded(pred, self.size)
            log.debug("YOLOX %s outputs %s boxes", self.model_path.name, "decoded" if self.decoded else "raw")
        boxes, scores = postprocess(
            pred, ratio, image.shape[:2], score_threshold=self.score_threshold,
            nms_iou=self.nms_iou, decoded=self.decoded, size=self.size,
        )
        min_h = self.min_height_frac * image.shape[0]
        dets = [
            Detection(tuple(float(v) for v in b), float(s))  # type: ignore[arg-type]
            for b, s in zip(boxes, scores)
            if b[2] > 0 and b[3] > 0 and b[3] >= min_h
        ]
        dets = sort_by_score(dets)
        if len(dets) > MAX_DETECTIONS and (self.max_people is None or self.max_people > MAX_DETECTIONS):
            if not self._said_too_many:
                log.warning("YOLOX found %d people over %s %g in one image; keeping the %d highest-scoring in each "
                            "image (COCO's limit): raise %s for fewer", len(dets), setting("score_threshold"),
                            self.score_threshold, MAX_DETECTIONS, setting("score_threshold"))
                self._said_too_many = True
            dets = dets[:MAX_DETECTIONS]
        if self.max_people is not None:
            dets = dets[: self.max_people]
        log.debug("YOLOX: %d people", len(dets))
        return dets
