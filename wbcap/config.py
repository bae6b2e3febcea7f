"""Typed, frozen configuration, built once at the entry point and passed down.

:class:`ModelConfig` describes the Hand4Whole network; it travels inside wbcap checkpoints so a
model can be rebuilt from the file alone. Defaults are the released model's values (upstream
``main/config.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RESNET_DEPTHS = (18, 34, 50, 101, 152)
#: ResNet's own width (the stem's channels: torchvision's, ImageNet's and the released network's),
#: the widest :attr:`ModelConfig.backbone_width`; and the narrowest it takes.
RESNET_WIDTH = 64
MIN_BACKBONE_WIDTH = 8

#: The largest side, in pixels, of any network input (``input_*_shape``): four times the released
#: network's largest (512). Larger crops only exhaust memory.
MAX_INPUT_SIDE = 2048
#: The deepest heatmap (``output_hm_shape[0]``, ``output_hand_hm_shape[0]``; 8 in the release):
#: the joint heads' convolutions have joints x depth output channels.
MAX_HEATMAP_DEPTH = 64


#: Upstream's fixed enlargement (``process_bbox``: 1.25) of a person's aspect-corrected box before
#: the body crop; :attr:`PipelineConfig.box_scale`'s default.
BODY_BOX_SCALE = 1.25

#: The widths :attr:`ModelConfig.backbone_width` takes, in words.
BACKBONE_WIDTHS = (f"a multiple of 8 from {MIN_BACKBONE_WIDTH} to {RESNET_WIDTH} ({RESNET_WIDTH}: ResNet's, needed by "
                   "ImageNet's and the released weights)")


def backbone_width_ok(width: Any) -> bool:
    """Whether ``width`` is a :attr:`ModelConfig.backbone_width` (:data:`BACKBONE_WIDTHS`)."""
    return (isinstance(width, int) and not isinstance(width, bool) and MIN_BACKBONE_WIDTH <= width <= RESNET_WIDTH
            and width % 8 == 0)


@dataclass(frozen=True)
class ModelConfig:
    """Hand4Whole architecture and input/output geometry.

    Shapes are ``(height, width)`` or ``(depth, height, width)`` in pixels / heatmap cells.
    """

    backbone_depth: int = 50
    hand_backbone_depth: int = 50
    face_backbone_depth: int = 18
    # Channels of the three ResNets' stems and first stages (64: ResNet's, the released
    # network's). Narrower networks (e.g. 16: 16x fewer backbone weights) are for quick pipeline
    # checks and the tests; the released checkpoint and ImageNet weights need 64.
    backbone_width: int = RESNET_WIDTH
    input_img_shape: tuple[int, int] = (512, 384)
    input_body_shape: tuple[int, int] = (256, 192)
    output_hm_shape: tuple[int, int, int] = (8, 8, 6)
    input_hand_shape: tuple[int, int] = (256, 256)
    output_hand_hm_shape: tuple[int, int, int] = (8, 8, 8)
    input_face_shape: tuple[int, int] = (192, 192)
    focal: tuple[float, float] = (5000.0, 5000.0)
    camera_3d_size: float = 2.5
    num_betas: int = 10
    num_expression: int = 10
    hand_box_extension: float = 2.0
    face_box_extension: float = 1.5
    # The released weights were trained with an off-by-a-pixel flip of the left hand's x
    # coordinates (upstream model.py keeps it, with the correct formula in a comment). Exact
    # reproduction needs the quirk; True applies the geometrically correct flip instead.
    fix_left_hand_flip: bool = False

    def __post_init__(self) -> None:
        """Raises ValueError: a backbone depth wbcap has no ResNet for, a ``backbone_width`` that is
        not :data:`BACKBONE_WIDTHS`, heatmap shapes that are
        not what the ResNets give for the input shapes (height and width / 32: the body's
        ``output_hm_shape`` from ``input_body_shape``, the hands' from ``input_hand_shape``), or
        an input side under 64 (a heatmap one cell wide: NaN joint coordinates), an
        ``input_img_shape`` smaller than ``input_body_shape``, an input side over
        :data:`MAX_INPUT_SIDE` or a heatmap depth over :data:`MAX_HEATMAP_DEPTH`."""
        for name in ("backbone_depth", "hand_backbone_depth", "face_backbone_depth"):
            if getattr(self, name) not in RESNET_DEPTHS:
                raise ValueError(f"{name} must be one of {RESNET_DEPTHS}, got {getattr(self, name)}")
        if not backbone_width_ok(self.backbone_width):
            raise ValueError(f"backbone_width must be {BACKBONE_WIDTHS}, got {self.backbone_width}")
        for out_name, in_name in (("output_hm_shape", "input_body_shape"), ("output_hand_hm_shape", "input_hand_shape")):
            out, inp = tuple(getattr(self, out_name)), tuple(getattr(self, in_name))
            if len(out) != 3 or len(inp) != 2 or any(v % 32 for v in inp) or out[1:] != (inp[0] // 32, inp[1] // 32):
                raise ValueError(f"{out_name} {list(out)} does not fit {in_name} {list(inp)}: the ResNet's heatmaps "
                                 f"are the input's height and width / 32 (input sides multiples of 32), so "
                                 f"{out_name} = [depth, {inp[0] // 32 if len(inp) == 2 else 'H/32'}, "
                                 f"{inp[1] // 32 if len(inp) == 2 else 'W/32'}]")
            if min(out[1:]) < 2:  # (joint features are sampled with align_corners: (x / (W - 1)) is NaN for W = 1)
                raise ValueError(f"{in_name} {list(inp)} gives heatmaps {out[1]}x{out[2]}: the ResNet needs input sides "
                                 f"of at least 64 (heatmaps 2 or more a side) to place joints between cells")
        if any(c < b for c, b in zip(self.input_img_shape, self.input_body_shape)):  # (a 1x1 crop trained)
            raise ValueError(f"input_img_shape {list(self.input_img_shape)} is smaller than input_body_shape "
                             f"{list(self.input_body_shape)}: the crop the body input is taken from is at least "
                             "as large (the released network's: 512x384 and 256x192)")
        for name in ("input_img_shape", "input_body_shape", "input_hand_shape", "input_face_shape"):
            if any(side > MAX_INPUT_SIDE for side in getattr(self, name)):
                raise ValueError(f"{name} {list(getattr(self, name))}: input sides of at most {MAX_INPUT_SIDE} "
                                 f"pixels (the released network's are 512 or less)")
        for name in ("output_hm_shape", "output_hand_hm_shape"):
            if getattr(self, name)[0] > MAX_HEATMAP_DEPTH:
                raise ValueError(f"{name} {list(getattr(self, name))}: a heatmap depth of at most "
                                 f"{MAX_HEATMAP_DEPTH} (the released network's is 8)")

    @property
    def body_aspect_ratio(self) -> float:
        """Width / height of the body crop (``input_img_shape``; 0.75 in the recipe): the aspect
        person boxes are widened to before cropping, at inference and in the training loaders."""
        return self.input_img_shape[1] / self.input_img_shape[0]

    @property
    def princpt(self) -> tuple[float, float]:
        """Virtual principal point (x, y) of the body-input camera, in body-input pixels."""
        return (self.input_body_shape[1] / 2, self.input_body_shape[0] / 2)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


@dataclass(frozen=True)
class BodyModelConfig:
    """Which SMPL-X file to use. ``path`` may be a file or a folder (searched as documented)."""

    path: str | None = None
    gender: str = "neutral"
    allow_pickle: bool = False

    @classmethod
    def given(cls, path: str | None, gender: str | None, allow_pickle: bool = False) -> BodyModelConfig:
        """The config of what the user gave: ``gender`` None takes the one the name of the file
        they named says, else neutral (:func:`wbcap.body.model_files.resolve_gender`, which
        raises ModelFileError for a file named as another gender than ``gender``)."""
        from wbcap.body.model_files import resolve_gender

        return cls(path=path, gender=resolve_gender(gender, path), allow_pickle=allow_pickle)

    @classmethod
    def given_with_checkpoint(cls, path: str | None, gender: str | None, allow_pickle: bool,
                              checkpoint: str | None) -> BodyModelConfig:
        """:meth:`given`, for a command that also loads ``checkpoint`` (None: the search order):
        its ModelFileError (a named model file that does not exist, an unknown gender) also
        says when the checkpoint is missing, as :func:`wbcap.pipeline.check_model_files` does
        later for a model not found (:func:`wbcap.weights.note_missing_checkpoint`)."""
        from wbcap.errors import ModelFileError

        try:
            return cls.given(path, gender, allow_pickle)
        except ModelFileError as exc:
            from wbcap.weights import note_missing_checkpoint

            note_missing_checkpoint(exc, checkpoint)
            raise


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the image pipeline needs, resolved at the entry point; built into a
    :class:`~wbcap.pipeline.Pipeline` by :meth:`Pipeline.from_config <wbcap.pipeline.Pipeline.from_config>`.

    ``batch_size``: person crops per network call; None: the device's default (8 on CPU, 32 on
    CUDA; :func:`wbcap.pipeline.default_batch_size`). ``precision``: a precision mode's name,
    ``exact | fast | bf16 | fp16`` (``fp32`` = exact; :class:`wbcap.model.precision.Precision`).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    body: BodyModelConfig = field(default_factory=BodyModelConfig)
    checkpoint: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    box_scale: float = BODY_BOX_SCALE
    precision: str = "exact"

    def __post_init__(self) -> None:
        """Raises InputError for a ``batch_size`` under 1 (it ran one crop a call, unsaid; the
        CLI's ``--batch-size`` refuses it too)."""
        if self.batch_size is None:
            return
        from wbcap.limits import is_whole

        if not is_whole(self.batch_size, 1):
            from wbcap.errors import InputError, setting

            raise InputError(f"{setting('batch_size')} must be a whole number of 1 or more, got {self.batch_size!r}")
