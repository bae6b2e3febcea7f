"""The network's numeric precision mode, parsed once from its name.

>>> from wbcap.model.precision import Precision
>>> Precision.parse("fp32")
<Precision.EXACT: 'exact'>
>>> Precision.parse("fast").fused, Precision.parse("bf16").fused
(True, False)

``exact`` (default): float32, convolutions fused (BatchNorm folded, oneDNN pre-packed on CPU),
and on CUDA without TF32 (:meth:`Precision.inference_context`); ``fast``: the same with every
convolution in bfloat16 and the linear layers, soft-argmax, RoIAlign, rotations and SMPL-X in
float32 (:attr:`Precision.plan`); ``bf16`` / ``fp16``: the unfused network under whole-network
autocast (for comparison; fp16 needs CUDA), rotations and SMPL-X still in float32. ``fp32`` is
read as ``exact``. On CUDA GPUs older than Ampere ``fast`` runs as ``exact`` and ``bf16`` as
``fp16`` (:meth:`Precision.resolve`).

A :class:`Precision` is a ``str`` enum: it compares equal to its name (``Precision.FAST ==
"fast"``), formats and serialises (JSON) as the name, so the names on the command line, in
``run.json`` and in ``wbcap bench`` reports stay the plain strings.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from enum import Enum

import torch

from wbcap.errors import InputError, setting
from wbcap.model.device import cuda_bf16_is_fast, no_tf32

log = logging.getLogger(__name__)

#: Other names accepted by :meth:`Precision.parse`.
ALIASES = {"fp32": "exact"}

# Compute dtype of each part of the fused network in each fused mode. "fast" runs every
# convolution in bfloat16: the three ResNets (31.4 of 35.8 GFLOPs per crop), the box network's
# deconvolutions and centre map (2.9) and the heads' 1x1 convolutions (0.7), and RoIAlign's matrix
# products for the hand and face crops; the linear layers (camera, shape, poses, box sizes),
# soft-argmax, joint-feature sampling, 6D -> axis-angle and SMPL-X stay float32. Chosen by
# measurement on the official-key deterministic checkpoint (README, Performance): whole-network
# bf16 autocast moved the mesh by 164 mm and the boxes by 0.71 px there, mostly through the camera
# head; this plan moves them by 1.0 mm and 0.003 px, and keeping the box network in float32 as
# well would gain nothing measurable in accuracy (0.0003 px) for 10 % less speed.
PARTS = ("body_backbone", "hand_backbone", "face_backbone", "box_net", "heads")
_PLANS: dict[str, dict[str, torch.dtype]] = {
    "exact": dict.fromkeys(PARTS, torch.float32),
    "fast": dict.fromkeys(PARTS, torch.bfloat16),
}
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def _without_autocast(kind: str, keep_tf32: bool) -> Iterator[None]:
    """A caller's autocast off on ``kind`` inside the block; unless ``keep_tf32``, TF32 too
    (:func:`~wbcap.model.device.no_tf32`)."""
    with torch.autocast(kind, enabled=False), (contextlib.nullcontext() if keep_tf32 else no_tf32()):
        yield


class Precision(str, Enum):
    """A precision mode (module docstring): its per-part dtype plan (fused modes) or autocast
    dtype (comparison modes), the inference context it runs in and what it becomes on a device."""

    EXACT = "exact"
    FAST = "fast"
    BF16 = "bf16"
    FP16 = "fp16"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The canonical names, in order: ``("exact", "fast", "bf16", "fp16")``."""
        return tuple(p.value for p in cls)

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        """The mode ``value`` names (a canonical name, an alias such as ``fp32``, or a Precision).

        Raises InputError naming the choices for anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):  # (any case, as --device and --export take theirs: an API trial)
            name = value.strip().lower()
            name = ALIASES.get(name, name)
        else:
            name = value
        try:
            return cls(name)
        except ValueError:
            raise InputError(f"precision {value!r}: use one of {', '.join(cls.names())} (fp32 means exact)") from None

    @property
    def fused(self) -> bool:
        """True for the modes that run the fused inference form of the network
        (:func:`wbcap.model.inference.optimize_for_inference`): ``exact`` and ``fast``."""
        return self.value in _PLANS

    @property
    def plan(self) -> dict[str, torch.dtype] | None:
        """Compute dtype per part (:data:`PARTS`) of the fused network; None for the autocast modes."""
        plan = _PLANS.get(self.value)
        return None if plan is None else dict(plan)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The whole-network autocast dtype of ``bf16`` / ``fp16``; None for the fused modes."""
        return _AUTOCAST.get(self.value)

    def resolve(self, device: torch.device) -> Precision:
        """The mode that actually runs on ``device``.

        On a CUDA GPU older than Ampere (compute capability < 8) bfloat16 has no fast kernels:
        ``fast`` runs as ``exact`` (float32; fp16 autocast of the whole network would be faster
        but moves the mesh far more than fast's error budget) and ``bf16`` as ``fp16`` (the same
        whole-network autocast comparison mode in the half type those GPUs have). Each change is
        logged in one line. The CPU fallback for ``fast`` without bfloat16 instructions is made
        when the network is converted (:func:`wbcap.model.inference.optimize_for_inference`).
        """
        if device.type != "cuda" or self not in (Precision.FAST, Precision.BF16) or cuda_bf16_is_fast(device):
            return self
        major, minor = torch.cuda.get_device_capability(device)
        chosen = Precision.EXACT if self is Precision.FAST else Precision.FP16
        log.warning(
            "%s (compute capability %d.%d) has no fast bfloat16; %s %s runs as %s instead",
            device, major, minor, setting("precision"), self, chosen,
        )
        return chosen

    def inference_context(self, device: torch.device) -> AbstractContextManager:
        """What every network call in this mode runs inside.

        ``exact``: TF32 off for float32 CUDA matmuls and cuDNN convolutions (cuDNN's default on
        Ampere and newer GPUs is TF32, ~1e-3 relative error), restored on exit
        (:func:`~wbcap.model.device.no_tf32`); ``fast``: torch's TF32 settings as they are (its
        convolutions are bfloat16 anyway); both with a caller's autocast off (a user's
        ``torch.autocast`` around ``pipe(...)`` moved exact's vertices by 3.7 mm: a user trial);
        ``bf16`` / ``fp16``: whole-network autocast on ``device``'s type.
        """
        kind = torch.device(device).type
        if self in (Precision.EXACT, Precision.FAST):
            return _without_autocast(kind, keep_tf32=self is Precision.FAST)
        return torch.autocast(kind, dtype=self.autocast_dtype)
