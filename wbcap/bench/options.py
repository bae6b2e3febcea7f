"""What ``wbcap bench`` measures: :class:`BenchOptions`, the device defaults and option parsing
(no torch import here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wbcap.model.precision import Precision

REPORT_FORMAT = 2
CONFIGS = ("full", "small")
SMALL_DEPTHS = dict(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18)
STAGES = ("decode", "detect", "crop", "regressor", "smplx", "render", "encode")
DEFAULT_PRECISIONS = ("exact", "fast")
CPU_DEFAULTS = dict(batch_sizes=(1, 2), repeats=3, warmup=1)
CUDA_DEFAULTS = dict(batch_sizes=(1, 2, 4, 8, 16), repeats=10, warmup=3)


@dataclass(frozen=True)
class BenchOptions:
    """What to benchmark. ``None`` fields take the device's defaults (module docstring).

    checkpoint: network checkpoint; with neither ``checkpoint`` nor ``config`` the checkpoint is
        looked up like ``wbcap image`` does, and random full-size weights are used (and said)
        when none is found. ``config``: ``full`` or ``small`` (all ResNet-18), random weights.
    body_models/gender/allow_pickle: the SMPL-X model, looked up like ``wbcap image``; the
        cached synthetic model (same size and format,
        :func:`wbcap.pipeline.synthetic_body_models_dir`) when missing.
    video: a video to decode/detect/render on; default: a synthetic clip of ``frame_size``
        (width, height).
    detector_model: a YOLOX ONNX export timed beside HOG; default: the installed default YOLOX
        model, if any (never downloaded).
    detect_only: time the person detectors on the first frame and nothing else.
    """

    checkpoint: str | None = None
    config: str | None = None
    body_models: str | None = None
    gender: str | None = None
    allow_pickle: bool = False
    device: str = "auto"
    precisions: tuple[Precision | str, ...] = DEFAULT_PRECISIONS  # Precisions or their names
    batch_sizes: tuple[int, ...] | None = None
    repeats: int | None = None
    warmup: int | None = None
    video: str | None = None
    frames: int = 16
    frame_size: tuple[int, int] = (320, 240)
    matmul_size: int = 2048
    detector_model: str | None = None
    detect_only: bool = False


#: The largest regressor batch ``--batch-sizes`` takes: its crops alone are 2.4 GB of float32
#: (512 x 384 RGB each), and a network call holds several times that (8x the largest batch
#: measured on the H200, 128). A larger number was an OverflowError or a MemoryError traceback.
MAX_BATCH_SIZE = 1024


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,2,4,8"`` -> (1, 2, 4, 8); ValueError on anything else, and on a size above
    :data:`MAX_BATCH_SIZE`."""
    try:
        sizes = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ValueError(f"batch sizes {text!r}: use comma-separated whole numbers, e.g. 1,2,4,8") from None
    if not sizes or min(sizes) < 1 or max(sizes) > MAX_BATCH_SIZE:
        raise ValueError(f"batch sizes {text!r}: use comma-separated whole numbers from 1 to {MAX_BATCH_SIZE}, "
                         "e.g. 1,2,4,8")
    return tuple(sorted(set(sizes)))


def parse_precisions(text: str) -> tuple[Precision, ...]:
    """``"exact,fast"`` -> (Precision.EXACT, Precision.FAST) (aliases resolved, order kept, no
    repeats); ValueError naming the choices otherwise."""
    from wbcap.errors import InputError
    from wbcap.model.precision import Precision

    names = ", ".join(Precision.names())
    modes: list[Precision] = []
    for v in text.replace(" ", "").split(","):
        if not v:
            continue
        try:
            mode = Precision.parse(v)
        except InputError:
            raise ValueError(f"precision {v!r}: use a comma-separated list of {names}") from None
        if mode not in modes:
            modes.append(mode)
    if not modes:
        raise ValueError(f"precisions {text!r}: name at least one of {names}")
    return tuple(modes)
