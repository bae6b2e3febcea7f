"""Int8 ResNets and box network for the ``fast`` precision: one more inference form the CPU strategy can choose.

Where a CPU has no AMX (the AMD EPYC, AVX512-BF16 and AVX512-VNNI), the fast mode's bfloat16
convolutions already run at that machine's bfloat16 ceiling, only about twice the float32 one,
and its 1x1 convolutions are bound by memory traffic, so the fast mode stayed at 1.6-2.0x the
exact one. Its VNNI units multiply int8 twice as fast as bfloat16 and an int8 activation is half
the bytes. This form runs a :class:`~wbcap.model.resnet.ResNetBackbone` as oneDNN int8
convolutions (``torch.ops.onednn.qconv2d_pointwise``: the ops PyTorch's own x86 int8 path,
``X86InductorQuantizer``, lowers to; here called directly, without ``torch.compile``):

* weights: BatchNorm folded in (:func:`~wbcap.model.fused.fold_batchnorm`), then int8,
  symmetric, one scale per output channel (``max |w| / 127``); bias in float32;
* activations: uint8, one scale and zero point per tensor: the input picture's 0..1 as 0..255;
  every other one from the least and greatest value the float32 module-by-module backbone
  produces there on fixed calibration crops (:func:`calibration_images`, :func:`calibrate`):
  post-training static quantization with min/max ranges (Jacob et al., CVPR 2018, sec. 2-3;
  Krishnamoorthi, arXiv:1806.08342, sec. 2);
* ReLU and the residual sum (with its ReLU) run inside the convolutions; the last block
  writes float32; the max-pool runs on the stem's uint8 values (exact: max commutes with the
  monotone dequantisation).

The arithmetic is integer, so results do not depend on the batch size (tested). How far it is
from float32 depends on the weights and the pictures: on the tests' full-size network with
deterministic weights the fast mode with int8 ResNets moves vertices by about 2-3 mm and hand /
face boxes by thousandths of a pixel from ``exact`` (bfloat16: 1 mm), within the fast mode's
1 cm / 0.5 px bounds (``tests/test_fused.py``); ``benchmarks/precision_error.py`` prints it for
any checkpoint. The calibration checks the int8 form on its crops against the float32 backbone
(:func:`build_int8_resnet`): a checkpoint whose activations do not fit this scheme (error above
:data:`INT8_TOLERANCE`) runs in bfloat16 instead (float32 on a CPU without bfloat16
instructions, where the fast mode's ResNets are float32 or int8). The ranges and that error are kept in
``<user cache>/int8_calibration.json`` by a hash of the weights (the float32 passes
took 0.7 s of a 2 s fast start-up for the three ResNets on the 2-core EPYC; read back, 0.2 s).
Which form is faster is measured per machine (:mod:`wbcap.model.strategy`); this one is a
candidate only for the fast mode's ResNets and box network.

The box network's three 4x4 stride-2 transposed convolutions (:class:`Int8DeconvStack`) take
the same scheme in their sub-pixel form (:func:`~wbcap.model.fused.subpixel_kernel`: one 2x2
convolution each, its four output phases interleaved after). Their input joins the body
ResNet's features and the body joints' heatmaps (softmax probabilities over 384 cells, ~0.003
each where a joint is unsure and the features reach units: under one uint8 step even of their own 0..1): the
features are quantised, the heatmaps' share of the first layer stays a float32 convolution
(about 7 % of that layer's products), the two summed before the ReLU. Its ranges are calibrated on its inputs for the
calibration crops (the float32 body ResNet and position head run on them, 0.7 s on the Zen 3
EPYC the first time; the cache key holds the hashes of those modules too). On the Zen 3 EPYC
(AVX2) it took the box network from 25.6 to 15.0 ms per crop in 8-crop fast calls
(``benchmarks/regressor_parts.py``), and the tests' full-size fast network, int8 ResNets and box
network, lies 2.0 mm / 0.0018 px from exact (``tests/test_fused.py``).

Without VNNI (AVX2 only) oneDNN multiplies int8 with ``vpmaddubsw`` + ``vpmaddwd``, and what that gains depends on the core: on an AMD EPYC of the first
Zen generation nothing (a body ResNet-50 took 120-134 ms per image against float32's 125-143, not
the measurement's 10 % margin, so it is not chosen there); on a third-generation one (Zen 3)
about twice float32 (body ResNet-50 34-44 against 64-82 ms, ``benchmarks/conv_ceilings.py``
1.85-1.99x on single layers), so it is chosen there.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from wbcap.model.fused import (
    CalibrationInputs,
    ChunkPlan,
    FusedConv,
    TunedPart,
    chunk_plan,
    feat_hw,
    fold_batchnorm,
    interleave_phases,
    rel_error,
    run_in_chunks,
    subpixel_applies,
    subpixel_kernel,
)
from wbcap.model.resnet import BasicBlock, Bottleneck, ResNetBackbone
from wbcap.user_cache import LOCK_WAIT_S, format_of, read_json, updating, write_json

__all__ = ["INT8_TOLERANCE", "CalibrationCache", "Int8DeconvStack", "Int8ResNet", "build_int8", "build_int8_deconv",
           "build_int8_resnet", "calibrate", "calibrate_deconv", "calibration_cache_path", "calibration_images",
           "deconv_int8_applies", "int8_applies", "int8_usable", "max_pool_3x3_s2", "weights_fingerprint"]

log = logging.getLogger(__name__)

#: The int8 form vs the float32 module-by-module backbone on the calibration crops: max |difference|
#: / max |reference| (the bfloat16 forms' sanity bound; measured 0.4-1.5 % on the tests' weights).
INT8_TOLERANCE = 5e-2
#: Calibration crops per ResNet: (x0, y0, x1, y1) as shares of the example picture, and whether
#: it is mirrored. Chosen on the tests' full-size network, fast mode with int8 ResNets against
#: exact, largest vertex distance on the bundled picture / on ``messi5.jpg`` (a photo): these
#: 1.5 / 1.7 mm; none mirrored 2.4 / 2.3 mm; two also contrast-stretched to 0..1 per channel
#: (wider ranges, coarser steps) 2.9 / 4.4 mm.
CALIBRATION_CROPS = (((0.0, 0.0, 1.0, 1.0), False), ((0.1, 0.05, 0.6, 0.8), False),
                     ((0.35, 0.2, 0.75, 0.7), True), ((0.2, 0.45, 0.9, 1.0), True))
#: A cached calibration is used when the int8 form's mean |feature| on the first crop is within
#: this share of the one recorded (integer products; the requantisation may round differently
#: on another ISA).
CHECK_TOLERANCE = 1e-3
#: Packings an :class:`_Int8Conv` keeps (input shapes met; the oldest is dropped beyond it).
MAX_PACKINGS = 6

#: The calibration cache: file name, format, entries kept (the most recent).
CALIBRATION_FILE = "int8_calibration.json"
#: (Bumped when the crops or the ranges change: 3: two crops mirrored, the input's range fixed
#: at 0..1; 4: a check value per entry; 5: no range kept for the input.)
CALIBRATION_FORMAT = 5
CALIBRATION_KEEP = 32

Ranges = Mapping[str, tuple[float, float]]


def int8_usable() -> bool:
    """Whether this torch build has oneDNN's int8 convolution ops (the CPU builds do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv2d_pointwise")


def int8_applies(module: nn.Module, dtype: torch.dtype, fast: bool | None = None) -> bool:
    """Whether a tuned part's ``module`` computed in ``dtype`` can take the int8 form: a
    :class:`~wbcap.model.resnet.ResNetBackbone` (:class:`Int8ResNet`) or a deconvolution stack
    like the box network's (:func:`deconv_int8_applies`, :class:`Int8DeconvStack`) of the fast
    precision, with :func:`int8_usable`. ``fast``: whether the part belongs to the fast
    precision; None: when ``dtype`` is bfloat16 (fast's dtype; on a CPU without bfloat16
    instructions fast's parts run in float32 and the caller says so)."""
    fast = dtype == torch.bfloat16 if fast is None else fast
    return (fast and (isinstance(module, ResNetBackbone) or deconv_int8_applies(module))
            and int8_usable())


def calibration_images(image_size: Sequence[int]) -> torch.Tensor:
    """Fixed calibration crops: (N, 3, H, W) float32 RGB in 0..1, channels_last, N =
    ``len(CALIBRATION_CROPS)``: parts of the bundled example picture
    (:func:`wbcap.paths.example_image_path`, a generated figure on a textured background)
    resized (bilinear, antialiased) to ``image_size`` (H, W), two of them mirrored
    (:data:`CALIBRATION_CROPS`)."""
    from wbcap.io.images import load_image
    from wbcap.paths import example_image_path

    img = torch.from_numpy(load_image(example_image_path())).permute(2, 0, 1).float().div_(255)
    h, w = img.shape[1:]
    crops = []
    for (x0, y0, x1, y1), mirror in CALIBRATION_CROPS:
        part = img[:, int(y0 * h): int(y1 * h), int(x0 * w): int(x1 * w)][None]
        crop = F.interpolate(part, size=tuple(int(s) for s in image_size), mode="bilinear", align_corners=False,
                             antialias=True).clamp_(0, 1)
        crops.append(crop.flip(-1) if mirror else crop)
    return torch.cat(crops).contiguous(memory_format=torch.channels_last)


def _blocks(backbone: ResNetBackbone) -> list[tuple[str, BasicBlock | Bottleneck]]:
    """The residual blocks by name (``layer<I>.<J>``), in order."""
    return [(f"layer{i}.{j}", blk) for i in range(1, 5) for j, blk in enumerate(getattr(backbone, f"layer{i}"))]


def calibrate(backbone: ResNetBackbone, images: torch.Tensor) -> tuple[dict[str, tuple[float, float]], torch.Tensor]:
    """The (least, greatest) value of every activation the int8 form stores, from the float32
    module-by-module ``backbone`` on ``images`` (N, 3, H, W), one image at a time; and the
    backbone's output features for them (N, C, h, w) float32.

    Keys: ``stem`` (after its ReLU); per block ``<layerI.J>.1`` (and ``.2`` in a
    bottleneck: after the inner ReLUs), ``<layerI.J>.ds`` (the shortcut's convolution, no ReLU),
    ``<layerI.J>`` (the block's output, after its ReLU). Ranges after a ReLU start at 0.
    """
    watched: list[tuple[nn.Module, str, bool]] = [(backbone.bn1, "stem", True)]
    for name, blk in _blocks(backbone):
        watched += [(blk, name, True), (blk.bn1, f"{name}.1", True)]
        if isinstance(blk, Bottleneck):
            watched.append((blk.bn2, f"{name}.2", True))
        if blk.downsample is not None:
            watched.append((blk.downsample, f"{name}.ds", False))
    return _ranges_while(backbone, watched, images, {})


def _ranges_while(module: nn.Module, watched: Sequence[tuple[nn.Module, str, bool]], inputs: torch.Tensor,
                  found: dict[str, tuple[float, float]]) -> tuple[dict[str, tuple[float, float]], torch.Tensor]:
    """Run ``module`` (float32, module by module) on ``inputs`` one at a time and add to ``found``
    the (least, greatest) output of each ``(submodule, name, relu)`` of ``watched`` (``relu``: the
    value after a ReLU, whose range starts at 0). Returns ``found`` and the outputs, concatenated."""

    def record(name: str, relu: bool):
        def hook(sub: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            lo, hi = (0.0, float(out.max().clamp_min(0))) if relu else (float(out.min()), float(out.max()))
            old = found.get(name, (lo, hi))
            found[name] = (min(old[0], lo), max(old[1], hi))
        return hook

    hooks = [sub.register_forward_hook(record(name, relu)) for sub, name, relu in watched]
    try:
        with torch.no_grad():
            out = torch.cat([module(x[None].float()) for x in inputs])
    finally:
        for h in hooks:
            h.remove()
    return found, out


def range_names(backbone: ResNetBackbone) -> set[str]:
    """The keys :func:`calibrate` gives for ``backbone`` (what a cached entry must hold)."""
    names = {"stem"}
    for name, blk in _blocks(backbone):
        names |= {name, f"{name}.1"} | ({f"{name}.2"} if isinstance(blk, Bottleneck) else set())
        names |= {f"{name}.ds"} if blk.downsample is not None else set()
    return names


def _quant(lo: float, hi: float) -> tuple[float, int]:
    """uint8 (scale, zero point) covering [lo, hi] (widened to include 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    return scale, int(round(-lo / scale))


class _Int8Conv:
    """One convolution with its BatchNorm folded: int8 weights per output channel, packed by oneDNN
    for each input shape met (:meth:`packed`: a packing for a shape other than the call's runs
    about 5x slower)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, x_scale: float) -> None:
        w, bias = fold_batchnorm(conv.weight, conv.bias, bn)
        self._setup(w, bias, x_scale, (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups))

    @classmethod
    def folded(cls, w: torch.Tensor, bias: torch.Tensor, x_scale: float, padding: Sequence[int]) -> _Int8Conv:
        """A stride-1 convolution of an already folded weight ``w`` (C_out, C_in, kh, kw), ``bias`` (C_out,)."""
        conv = cls.__new__(cls)
        conv._setup(w, bias, x_scale, ([1, 1], [int(v) for v in padding], [1, 1], 1))
        return conv

    def _setup(self, w: torch.Tensor, bias: torch.Tensor, x_scale: float, geometry: tuple) -> None:
        self.bias = bias.detach().float()
        w = w.detach().float()
        # (max |w| per output channel without a copy of |w|, in any memory format: 0.02 s less of
        # a fast start-up)
        self.w_scale = torch.linalg.vector_norm(w, float("inf"), dim=(1, 2, 3)).clamp_min(1e-12) / 127.0
        # (one new tensor, then in place: a load quantises the box network's 9.2 M first-layer weights)
        self.qweight = torch.div(w, self.w_scale[:, None, None, None]).round_().clamp_(-127, 127).to(torch.int8)
        self.w_zero = torch.zeros(len(self.w_scale), dtype=torch.int64)
        self.x_scale = x_scale
        self.geometry = geometry
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def packed(self, shape: Sequence[int]) -> torch.Tensor:
        key = tuple(shape)
        if key not in self._packed:
            if len(self._packed) >= MAX_PACKINGS:  # (e.g. forced int8:N meets N shapes)
                self._packed.pop(next(iter(self._packed)))
            self._packed[key] = torch.ops.onednn.qconv_prepack(self.qweight, self.w_scale, self.x_scale, 0,
                                                               *self.geometry, list(key))
        return self._packed[key]

    def __call__(self, x: torch.Tensor, out_scale: float, out_zero: int, out_dtype: torch.dtype,
                 relu: bool) -> torch.Tensor:
        """``x`` uint8 (zero point 0, scale ``x_scale``) -> ``out_dtype`` (uint8 with
        ``out_scale`` / ``out_zero``, or float: then 1.0 / 0)."""
        return torch.ops.onednn.qconv2d_pointwise(
            x, self.x_scale, 0, self.packed(x.shape), self.w_scale, self.w_zero, self.bias, *self.geometry,
            out_scale, out_zero, out_dtype, "relu" if relu else "none", [None] if relu else [], "")

    def add_relu(self, x: torch.Tensor, accum: torch.Tensor, accum_scale: float, accum_zero: int, out_scale: float,
                 out_dtype: torch.dtype) -> torch.Tensor:
        """``relu(conv(x) + accum)``; ``accum`` (uint8 with its scale / zero point, or float with
        1.0 / 0) is overwritten."""
        return torch.ops.onednn.qconv2d_pointwise.binary(
            x, self.x_scale, 0, self.packed(x.shape), self.w_scale, self.w_zero, accum, self.bias, *self.geometry,
            out_scale, 0, out_dtype, accum_scale, accum_zero, "sum", 1.0, "relu", [], "")


class _Int8Block:
    """One residual block (basic or bottleneck) in int8: its convolutions with the output scale
    of each (from ``ranges`` under the block's ``name``), the shortcut convolution's and the
    block output's."""

    def __init__(self, blk: BasicBlock | Bottleneck, name: str, in_scale: float, ranges: Ranges) -> None:
        self.convs: list[_Int8Conv] = []
        self.scales: list[float] = []  # output scale of each inner convolution (after ReLU)
        scale = in_scale
        pairs = [(blk.conv1, blk.bn1), (blk.conv2, blk.bn2)] + ([(blk.conv3, blk.bn3)] if isinstance(blk, Bottleneck) else [])
        for k, (conv, bn) in enumerate(pairs):
            self.convs.append(_Int8Conv(conv, bn, scale))
            if k < len(pairs) - 1:
                scale = _quant(*ranges[f"{name}.{k + 1}"])[0]
                self.scales.append(scale)
        self.down = None if blk.downsample is None else _Int8Conv(blk.downsample[0], blk.downsample[1], in_scale)
        self.down_q = _quant(*ranges[f"{name}.ds"]) if self.down is not None else (in_scale, 0)
        self.out_scale = _quant(*ranges[name])[0]

    def __call__(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        """``x`` uint8 -> uint8 (scale :attr:`out_scale`), or float32 when ``last``. ``x`` is
        overwritten when the block has no shortcut convolution (the residual sum lands in it)."""
        if self.down is not None:
            identity = self.down(x, *self.down_q, torch.uint8, False)
        else:
            identity = x
        y = x
        for conv, scale in zip(self.convs[:-1], self.scales):
            y = conv(y, scale, 0, torch.uint8, True)
        if last:  # float32 out: the sum's other term in float32 too
            acc = ((identity.float() - self.down_q[1]) * self.down_q[0]).contiguous(memory_format=torch.channels_last)
            return self.convs[-1].add_relu(y, acc, 1.0, 0, 1.0, torch.float32)
        return self.convs[-1].add_relu(y, identity, *self.down_q, self.out_scale, torch.uint8)


class Int8ResNet(nn.Module):
    """Int8 inference form of a :class:`~wbcap.model.resnet.ResNetBackbone` (same input and output).

    forward(x (B, 3, H, W) float in 0..1) -> (B, feat_dim, H/32, W/32) features (computed in
    float32) in ``x``'s dtype, channels_last, in calls of the sizes ``chunk`` chooses for B (see
    :class:`~wbcap.model.fused.FusedResNet`). ``ranges``: :func:`calibrate`'s activation ranges
    for this backbone. CPU only. The backbone is read, not kept.
    """

    def __init__(self, backbone: ResNetBackbone, ranges: Ranges, chunk: int | ChunkPlan = 4) -> None:
        super().__init__()
        self.chunks = chunk_plan(chunk)
        self.chunk = self.chunks.pack
        self.feat_dim = backbone.feat_dim
        self.depth = backbone.depth
        self.in_q = _quant(0.0, 1.0)  # (the picture's 0..1 as 0..255: not calibrated)
        self.stem = _Int8Conv(backbone.conv1, backbone.bn1, self.in_q[0])
        self.stem_scale = _quant(*ranges["stem"])[0]
        mp = backbone.maxpool
        self.pool = (mp.kernel_size, mp.stride, mp.padding)
        if mp.dilation != 1 or mp.ceil_mode:  # (not a ResNet's; F.max_pool2d below takes neither)
            raise ValueError(f"unsupported max-pooling {mp}")
        self.blocks: list[_Int8Block] = []
        scale = self.stem_scale
        for name, blk in _blocks(backbone):
            self.blocks.append(_Int8Block(blk, name, scale, ranges))
            scale = self.blocks[-1].out_scale

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the convolutions' inputs (uint8)."""
        return torch.uint8

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        scale, _ = self.in_q  # (zero point 0: the picture's 0..1 as 0..255)
        q = (x.float() * (1.0 / scale)).round_().clamp_(0, 255).to(torch.uint8)  # (one new tensor, then in place)
        y = self.stem(q.contiguous(memory_format=torch.channels_last), self.stem_scale, 0, torch.uint8, True)
        if self.pool == (3, 2, 1):  # (every ResNet's)
            y = max_pool_3x3_s2(y)
        else:  # (no vectorised uint8 kernel in torch: in float32, where the integers 0..255 are exact)
            y = F.max_pool2d(y.float(), *self.pool).to(torch.uint8)
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            y = blk(y, i == last)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:  # (oneDNN's fused sum refuses empty tensors)
            h, w = feat_hw(x.shape[2:])
            return x.new_empty((0, self.feat_dim, h, w)).contiguous(memory_format=torch.channels_last)
        return run_in_chunks(self._run, x, self.chunks.split(x), x.dtype)


def deconv_int8_applies(module: nn.Module) -> bool:
    """Whether ``module`` is a stack :class:`Int8DeconvStack` can run: an ``nn.Sequential`` of
    (4x4, stride-2, padding-1 transposed convolution (:func:`~wbcap.model.fused.subpixel_applies`),
    BatchNorm, ReLU) triples, like the box network's."""
    if not isinstance(module, nn.Sequential) or len(module) == 0 or len(module) % 3:
        return False
    mods = list(module)
    return all(subpixel_applies(mods[i]) and isinstance(mods[i + 1], nn.BatchNorm2d) and isinstance(mods[i + 2], nn.ReLU)
               for i in range(0, len(mods), 3))


def deconv_range_names(stack: nn.Sequential) -> set[str]:
    """The keys :func:`calibrate_deconv` gives: ``in`` (the quantised input channels), ``<i>`` for
    the output of every layer but the last (1-based)."""
    return {"in"} | {str(i) for i in range(1, len(stack) // 3)}


def calibrate_deconv(stack: nn.Sequential, inputs: torch.Tensor,
                     float_channels: int = 0) -> tuple[dict[str, tuple[float, float]], torch.Tensor]:
    """:func:`calibrate` for a stack of :func:`deconv_int8_applies`: the (least, greatest) value of
    the quantised input channels (all but the last ``float_channels``) and of each layer's output
    but the last (after its ReLU) for ``inputs`` (N, C, H, W) float32, run one at a time through
    the float32 module-by-module ``stack``; and its outputs (N, C', 8H, 8W) float32 (three layers)."""
    quantised = inputs[:, :inputs.shape[1] - float_channels]
    relus = [m for m in stack if isinstance(m, nn.ReLU)][:-1]
    return _ranges_while(stack, [(relu, str(i + 1), True) for i, relu in enumerate(relus)], inputs,
                         {"in": (float(quantised.min()), float(quantised.max()))})


class Int8DeconvStack(nn.Module):
    """Int8 inference form of a stack of (4x4 stride-2 transposed convolution, BatchNorm, ReLU)
    layers (:func:`deconv_int8_applies`; the box network's) with inputs of ``input_size`` (H, W)
    cells: same input and output.

    Each layer is its sub-pixel convolution (:func:`~wbcap.model.fused.subpixel_kernel`: a 2x2
    convolution with 4 x C_out channels, then :func:`~wbcap.model.fused.interleave_phases`) as a
    oneDNN int8 convolution (weights int8 per output channel, BatchNorm folded; activations uint8,
    zero point 0, scales from ``ranges``: ``in`` for the input, ``<i>`` for layer i's output after
    its ReLU; as in :class:`Int8ResNet`); the last layer writes float32. The last
    ``float_channels`` input channels (the box network's joint heatmaps: probabilities, mostly
    under one uint8 step of 0..1 and far under one of the features' scale) are not quantised:
    their share of the first layer is a float32 convolution (oneDNN, packed), added to the int8
    one's before the ReLU, and the sum is quantised for the next layer. The quantised input must
    be >= 0 (ReLU features); a calibrated range below 0 raises ValueError.

    forward(x (B, C, H, W) float) -> (B, C_out, 8H, 8W) for three layers, float32 computed, in
    ``x``'s dtype, channels_last; in calls of the sizes ``chunk`` chooses (see
    :class:`~wbcap.model.fused.FusedResNet`). Integer products and per-element float steps, so
    the result does not depend on the batch size, up to the float32 convolution's rounding
    (where oneDNN picks another kernel for another batch, a requantised value may move one step).
    CPU only. The stack is read, not kept.
    """

    def __init__(self, stack: nn.Sequential, ranges: Ranges, input_size: Sequence[int], chunk: int | ChunkPlan = 4,
                 float_channels: int = 0) -> None:
        super().__init__()
        if not deconv_int8_applies(stack):
            raise ValueError("Int8DeconvStack needs (4x4 stride-2 transposed convolution, BatchNorm, ReLU) layers")
        self.chunks = chunk_plan(chunk)
        self.chunk = self.chunks.pack
        mods = list(stack)
        layers = len(mods) // 3
        lo, hi = ranges["in"]
        if lo < 0:
            raise ValueError(f"the quantised input has values below 0 ({lo:.3g}): no zero point here")
        self.in_scale = _quant(lo, hi)[0]
        self.scales = [_quant(*ranges[str(i)])[0] for i in range(1, layers)] + [1.0]  # each layer's output
        kernel, bias = subpixel_kernel(mods[0], mods[1])
        c_in = int(kernel.shape[1])
        self.quantised = c_in - int(float_channels)
        if not 0 < self.quantised <= c_in:
            raise ValueError(f"{float_channels} float32 input channels of {c_in}")
        self.first = _Int8Conv.folded(kernel[:, :self.quantised], bias, self.in_scale, (1, 1))
        self.tail = None if float_channels == 0 else FusedConv.from_folded(
            kernel[:, self.quantised:], torch.zeros_like(bias), (1, 1), False, torch.float32,
            [self.chunk, int(float_channels), *(int(v) for v in input_size)], True)
        self.convs = []  # the later layers
        for i in range(1, layers):
            kernel, bias = subpixel_kernel(mods[3 * i], mods[3 * i + 1])
            self.convs.append(_Int8Conv.folded(kernel, bias, self.scales[i - 1], (1, 1)))
        self.out_channels = int(mods[-3].out_channels)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the convolutions' inputs (uint8)."""
        return torch.uint8

    def _first_layer(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer's sub-pixel convolution (before interleaving): uint8 (scale
        ``scales[0]``), or float32 when it is the only layer."""
        q = (x[:, :self.quantised].float() * (1.0 / self.in_scale)).round_().clamp_(0, 255).to(torch.uint8)
        q = q.contiguous(memory_format=torch.channels_last)
        out_scale = self.scales[0]
        out_dtype = torch.float32 if not self.convs else torch.uint8
        if self.tail is None:
            return self.first(q, out_scale, 0, out_dtype, True)
        acc = self.tail(x[:, self.quantised:].float().contiguous(memory_format=torch.channels_last))
        y = self.first.add_relu(q, acc, 1.0, 0, 1.0, torch.float32)  # relu(int8 part + bias + float part)
        if not self.convs:
            return y
        return y.mul_(1.0 / out_scale).round_().clamp_(0, 255).to(torch.uint8)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = interleave_phases(self._first_layer(x))
        for i, conv in enumerate(self.convs):
            last = i == len(self.convs) - 1
            y = interleave_phases(conv(y.contiguous(memory_format=torch.channels_last), self.scales[i + 1], 0,
                                       torch.float32 if last else torch.uint8, True))
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            h, w = x.shape[2:]
            scale = 2 ** (len(self.convs) + 1)
            return x.new_empty((0, self.out_channels, h * scale, w * scale)).contiguous(memory_format=torch.channels_last)
        return run_in_chunks(self._run, x, self.chunks.split(x), x.dtype)


def max_pool_3x3_s2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, 2, 1)`` of a ``(N, C, H, W)`` channels_last tensor (any dtype; the
    int8 ResNets' uint8 activations), the same values, channels_last out.

    Separable, as running maxima of neighbours (:func:`_max_3_s2_along`): along the rows on
    whole ``W * C`` rows of the NHWC memory, then along the columns on ``C`` channels, so every
    step is a vectorised ``torch.maximum`` over long contiguous runs. torch has no vectorised
    uint8 max-pooling (and its quantized one needs the deprecated quantized tensors); the
    float32 round trip it replaces took 2.2 against 0.5 ms for 4 x 64 x 128 x 128 on the Xeon.
    The padding never enters a maximum (the border windows are just shorter), so any values work.
    """
    n, c, h, w = x.shape
    rows = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(n, h, w * c)
    pooled = _max_3_s2_along(rows)  # (N, OH, W * C)
    oh = pooled.shape[1]
    out = _max_3_s2_along(pooled.view(n * oh, w, c))  # (N * OH, OW, C)
    return out.view(n, oh, -1, c).permute(0, 3, 1, 2)


def _max_3_s2_along(t: torch.Tensor) -> torch.Tensor:
    """``(A, L, B)`` -> ``(A, (L - 1) // 2 + 1, B)``: output ``i`` is the maximum of inputs
    ``2i - 1, 2i, 2i + 1`` along dim 1 (those inside ``[0, L)``), from ``q[r] = max(t[r], t[r +
    1])``: ``max(q[2i - 1], q[2i])``."""
    a, length, b = t.shape
    m = (length - 1) // 2 + 1
    out = t.new_empty((a, m, b))
    if length == 1:
        return out.copy_(t)
    q = torch.maximum(t[:, :-1], t[:, 1:])  # (A, L - 1, B)
    out[:, 0] = q[:, 0]
    inside = (length - 2) // 2  # windows 1 .. inside end before L
    if inside > 0:
        torch.maximum(q[:, 1 : 2 * inside : 2], q[:, 2 : 2 * inside + 1 : 2], out=out[:, 1 : inside + 1])
    if inside + 1 < m:  # the last window cut by the end: inputs 2i - 1, 2i
        out[:, m - 1] = q[:, 2 * (m - 1) - 1]
    return out


def weights_fingerprint(backbone: nn.Module) -> str:
    """A hash of ``backbone``'s parameters and buffers (names, dtypes, shapes, every value): the
    calibration cache's key (SHA-1 as a checksum, not for security: 0.05 s for a ResNet-50's
    100 MB on the 2-core EPYC; a sample of the values missed a single edited weight)."""
    h = hashlib.sha1(usedforsecurity=False)
    for name, t in backbone.state_dict().items():
        data = t.detach().to("cpu").contiguous()
        h.update(f"{name} {data.dtype} {tuple(data.shape)};".encode())
        h.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def calibration_cache_path() -> Path:
    """``int8_calibration.json`` in wbcap's user cache folder (:func:`wbcap.paths.cache_file`)."""
    from wbcap.paths import cache_file

    return cache_file(CALIBRATION_FILE)


def _calibration_key(fingerprint: str, image_size: Sequence[int]) -> str:
    """The calibration cache's key: the weights, the input size, the wbcap and torch versions, the
    CPU (:func:`wbcap.model.strategy.cpu_model`, its int8 flags included) and the variables that
    change oneDNN's kernels (:func:`wbcap.model.strategy.kernel_variables`): int8 kernels differ
    by instruction set, e.g. with and without AVX512-VNNI, so an error measured on one CPU is not
    another's (a cache folder shared between machines, a home folder on NFS: one entry each)."""
    from wbcap.model.strategy import cpu_model, kernel_variables
    from wbcap.versions import wbcap_version

    h, w = (int(s) for s in image_size)
    env = "".join(f" {k}={v}" for k, v in sorted(kernel_variables().items()))
    return f"{fingerprint} {h}x{w} wbcap {wbcap_version()} torch {torch.__version__} cpu {cpu_model()}{env}"


def _read_calibration(path: Path, warn: bool = True) -> dict[str, dict]:
    """The cache's entries; empty when missing, unreadable (a warning unless ``warn`` is False)
    or not this format (a debug line)."""
    data, problem = read_json(path)
    if problem:
        (log.warning if warn else log.debug)("ignoring the int8 calibration cache %s (%s); calibrating again", path,
                                             problem)
    if data is None:
        return {}
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT or not isinstance(data.get("entries"), dict):
        log.debug("ignoring the int8 calibration cache %s (not format %d)", path, CALIBRATION_FORMAT)
        return {}
    return data["entries"]


def _entry(entry: object, names: set[str]) -> tuple[dict[str, tuple[float, float]], float, float] | None:
    """(ranges, error, check) of a cached entry holding exactly the ranges ``names``; None when
    malformed."""
    try:
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in entry["ranges"].items()}  # type: ignore[index]
        err, check = float(entry["error"]), float(entry["check"])  # type: ignore[index]
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, OverflowError):
        return None
    if set(ranges) != names:
        return None
    if not all(math.isfinite(v) for v in (err, check)) or not all(
            math.isfinite(a) and math.isfinite(b) and a <= b for a, b in ranges.values()):
        return None
    return ranges, err, check


def _write_calibration(path: Path, key: str, entry: dict, wait_s: float | None = None) -> tuple[str | None, bool]:
    """Add one entry (re-read first, so that other processes' entries stay; oldest dropped beyond
    :data:`CALIBRATION_KEEP`; written atomically, under :func:`~wbcap.user_cache.updating`'s lock,
    waited for up to ``wait_s`` seconds, default :data:`~wbcap.user_cache.LOCK_WAIT_S`). Returns
    (None, or why it could not be written; whether the wait for another process's lock was over)."""
    with updating(path, wait_s) as timed_out:
        return _add_calibration(path, key, entry), timed_out


def _add_calibration(path: Path, key: str, entry: dict) -> str | None:
    fmt = format_of(read_json(path)[0])
    if fmt is not None and fmt > CALIBRATION_FORMAT:  # (see format_of)
        return f"a newer wbcap's (format {fmt}), left as it is"
    entries = _read_calibration(path, warn=False)  # (a broken file was reported when it was read first)
    entries.pop(key, None)
    entries[key] = entry
    entries = dict(list(entries.items())[-CALIBRATION_KEEP:])
    return write_json(path, {"format": CALIBRATION_FORMAT, "entries": entries})


class CalibrationCache:
    """The int8 calibration cache file (``path``, default :func:`calibration_cache_path`) as one
    conversion of a network uses it for all its parts: read once, so that a file that cannot be
    read is one warning however many parts it serves, and written through as each part is
    calibrated, a file that cannot be written being one warning too (its parts are then
    calibrated again next time); the weights' fingerprints its keys hold are computed once per
    module (:meth:`fingerprint`), so use one object per conversion, while the weights stay.
    Without it each part read and wrote the file on its own: a cache path that was a folder gave
    8 warnings per fast start-up."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._entries: dict[str, dict] | None = None
        self._unwritable = False
        self._lock_waited = False  # (another process held the file's lock past the wait: not waited for again)
        self._unsaved: set[str] = set()  # entries kept in memory only (the file could not be written)
        self._prints: dict[int, tuple[nn.Module, str]] = {}

    def fingerprint(self, module: nn.Module) -> str:
        """:func:`weights_fingerprint` of ``module``, computed once per cache object: the box
        network's key holds the body ResNet's, which that ResNet's own key computed already (one
        conversion: the weights do not change in between). On the Zen 3 EPYC the fast
        start-up's load went from 1.29 to 1.17 s (medians of 5 paired runs)."""
        kept = self._prints.get(id(module))
        if kept is None or kept[0] is not module:
            kept = self._prints[id(module)] = (module, weights_fingerprint(module))
        return kept[1]

    @property
    def path(self) -> Path:
        """The file (the default resolved when first asked for)."""
        if self._path is None:
            self._path = calibration_cache_path()
        return self._path

    def fresh(self) -> CalibrationCache:
        """A cache object as the next conversion would make it: the same file and the entries it
        holds (not read again; those kept here but not written, the file being unwritable, left
        out: the next conversion calibrates them again; such a file is not tried again, so no
        warning repeats), no fingerprints yet (what
        :func:`~wbcap.model.strategy.few_call_build_times` times)."""
        again = CalibrationCache(self._path)
        if self._entries is not None:
            again._entries = {k: v for k, v in self._entries.items() if k not in self._unsaved}
        again._unwritable = self._unwritable
        return again

    def get(self, key: str) -> object:
        """The raw entry under ``key`` (None when absent; the file read on the first call)."""
        if self._entries is None:
            self._entries = _read_calibration(self.path)
        return self._entries.get(key)

    def put(self, key: str, ranges: Ranges, err: float, check: float) -> None:
        """Keep an entry, here and in the file (unless it could not be written before)."""
        if self._entries is None:
            self._entries = _read_calibration(self.path, warn=False)
        entry = self._entries[key] = {"ranges": {k: list(v) for k, v in ranges.items()}, "error": err, "check": check}
        if self._unwritable:
            self._unsaved.add(key)
            return
        problem, timed_out = _write_calibration(self.path, key, entry, 0.0 if self._lock_waited else LOCK_WAIT_S)
        if timed_out and not self._lock_waited:  # (once per conversion: its other parts do not wait)
            self._lock_waited = True
            log.warning("another process has held %s.lock for %g s (a stopped one?); writing the int8 calibration "
                        "cache without waiting for it", self.path, LOCK_WAIT_S)
        if problem:
            self._unwritable = True
            self._unsaved.add(key)
            log.warning("could not write the int8 calibration cache %s (%s); it is calibrated again next time",
                        self.path, problem)


def _store(cache: Path | CalibrationCache | None) -> CalibrationCache:
    return cache if isinstance(cache, CalibrationCache) else CalibrationCache(cache)


def build_int8_resnet(backbone: ResNetBackbone, image_size: Sequence[int], chunk: int | ChunkPlan = 4,
                      cache: Path | CalibrationCache | None = None) -> tuple[Int8ResNet | None, float]:
    """Calibrate ``backbone`` on :func:`calibration_images` of ``image_size`` (H, W), build its
    :class:`Int8ResNet` and check it there against the float32 module-by-module backbone.

    Returns (the module, its error: max |difference| / max |reference| over the crops); the
    module is None when the error is above :data:`INT8_TOLERANCE` (these weights do not quantize
    well: the caller runs the part another way). The ranges, the error and the int8 form's mean
    |feature| on the first crop are read from and kept in ``cache`` (a file, default
    :func:`calibration_cache_path`, or a :class:`CalibrationCache` shared by a network's parts),
    keyed by :func:`weights_fingerprint`, the input size, the wbcap and torch versions and the
    CPU; read back, the module is run on that crop only and the entry is used when it gives the same mean
    (within :data:`CHECK_TOLERANCE`: an edited or stale entry is calibrated again, with a
    warning). Calibrating takes about 0.3 s per ResNet-50 on 2 cores; read back, building and
    that check 0.03-0.07 s.
    """
    store = _store(cache)
    key = _calibration_key(store.fingerprint(backbone), image_size)
    images = calibration_images(image_size)

    def measure() -> tuple[dict[str, tuple[float, float]], torch.Tensor, torch.Tensor]:
        ranges, ref = calibrate(backbone, images)
        return ranges, images, ref

    return _build_calibrated(store, key, range_names(backbone), lambda ranges: Int8ResNet(backbone, ranges, chunk),
                             measure, lambda ranges: images[:1])


def build_int8_deconv(stack: nn.Sequential, calibration: CalibrationInputs, input_size: Sequence[int],
                      chunk: int | ChunkPlan = 4,
                      cache: Path | CalibrationCache | None = None) -> tuple[Int8DeconvStack | None, float]:
    """:func:`build_int8_resnet` for a stack of :func:`deconv_int8_applies` (the box network's) with
    inputs of ``input_size`` (H, W) cells, calibrated on ``calibration.make()`` (its inputs for the
    calibration crops) and checked there against the float32 module-by-module stack; kept in the
    same cache, keyed by the weights of the stack and of ``calibration.upstream`` (what makes its
    inputs), the input size, the float32 channels and the versions. Read back, the check runs the
    stack on a fixed pseudo-random input (no upstream pass at load): features uniform over the
    calibrated input range, so that an edited range changes the result, and heatmap-sized values
    (under 0.02) in the float32 channels, so that they do not outweigh the features."""
    h, w = (int(v) for v in input_size)
    store = _store(cache)
    prints = " ".join(store.fingerprint(m) for m in (stack, *calibration.upstream))
    key = _calibration_key(f"{prints} deconv float {calibration.float_channels}", (h, w))

    def measure() -> tuple[dict[str, tuple[float, float]], torch.Tensor, torch.Tensor]:
        inputs = calibration.make()
        ranges, ref = calibrate_deconv(stack, inputs, calibration.float_channels)
        return ranges, inputs, ref

    def probe(ranges: Ranges) -> torch.Tensor:
        x = torch.rand(1, stack[0].in_channels, h, w, generator=torch.Generator().manual_seed(0))
        quantised = x.shape[1] - calibration.float_channels
        x[:, :quantised] *= max(ranges["in"][1], 0.0)
        x[:, quantised:] *= 0.02
        return x

    return _build_calibrated(store, key, deconv_range_names(stack),
                             lambda ranges: Int8DeconvStack(stack, ranges, (h, w), chunk, calibration.float_channels),
                             measure, probe)


def _build_calibrated(store: CalibrationCache, key: str, names: set[str], make: Callable[[Ranges], nn.Module],
                      measure: Callable[[], tuple[dict[str, tuple[float, float]], torch.Tensor, torch.Tensor]],
                      probe: Callable[[Ranges], torch.Tensor]) -> tuple[nn.Module | None, float]:
    """The int8 module ``make(ranges)`` and its error, from the cache entry ``key`` (holding exactly
    the ranges ``names``) when there is one that ``probe(ranges)`` (its check input) confirms; else from
    ``measure()`` -> (ranges, calibration inputs, the float32 module's outputs for them): the error is
    the int8 module's on those inputs (run one at a time), and a new entry is written. None in
    place of the module when the error is above :data:`INT8_TOLERANCE`. A cached entry whose
    ranges the module refuses (ValueError, e.g. an edited range below 0 where it has no zero point)
    is calibrated again, with a warning, like one that fails the check."""
    cached = _entry(store.get(key), names)
    if cached is not None:
        ranges, err, check = cached
        try:
            net = make(ranges)
        except ValueError as e:
            log.warning("the int8 calibration cache %s holds ranges this form cannot take (%s); calibrating again",
                        store.path, e)
        else:
            if err > INT8_TOLERANCE:
                return None, err
            with torch.no_grad():
                again = _check_value(net(probe(ranges)))
            if abs(again - check) <= CHECK_TOLERANCE * abs(check):
                return net, err
            log.warning("the int8 calibration cache %s gives other results than when it was written (edited?); "
                        "calibrating again", store.path)
    ranges, inputs, ref = measure()
    net = make(ranges)
    with torch.no_grad():
        out = torch.cat([net(x[None]) for x in inputs])
        check = _check_value(net(probe(ranges)))
    err = rel_error(out, ref)
    store.put(key, ranges, err, check)
    return (net if err <= INT8_TOLERANCE else None), err


def build_int8(part: TunedPart, chunk: int | ChunkPlan = 4,
               cache: Path | CalibrationCache | None = None) -> tuple[nn.Module | None, float]:
    """A tuned part's int8 form and its error: :func:`build_int8_resnet` for a ResNet,
    :func:`build_int8_deconv` for a deconvolution stack with :attr:`~wbcap.model.fused.TunedPart.calibration`
    inputs; ValueError for another part."""
    if isinstance(part.module, ResNetBackbone):
        return build_int8_resnet(part.module, part.item_shape[1:], chunk, cache)
    if deconv_int8_applies(part.module) and part.calibration is not None:
        return build_int8_deconv(part.module, part.calibration, part.item_shape[1:], chunk, cache)
    raise ValueError(f"{part.name} has no int8 form")


def _check_value(features: torch.Tensor) -> float:
    """Mean |feature| of the int8 form on its probe (a ResNet's first calibration crop, the box
    network's fixed pseudo-random input): what a cache entry is checked against when read back."""
    return float(features.float().abs().mean())
