"""Inference form of the network: BatchNorm folded, ReLU and residual adds fused, weights packed.

The released network spends most of its time in the convolutions of three ResNets (hand 21.4,
body 8.0, face 2.7 of 35.8 GFLOPs per crop). Run module by module (``Conv2d`` -> ``BatchNorm2d``
-> ``ReLU`` -> ``add``), every convolution re-reads its activations for each of the elementwise
steps and oneDNN converts the weights into its blocked layout on every call. Measured on the
2-core AVX-512 project machine, that costs 30-40 % of the time. This module rewrites the
convolution stacks for inference:

* BatchNorm (eval statistics) is folded into the preceding convolution's weight and bias:
  ``w' = w * g / sqrt(v + eps)``, ``b' = beta - m * g / sqrt(v + eps)`` (per output channel;
  ``torch.nn.utils.fusion.fuse_conv_bn_weights``), changing results by float
  rounding only (~1e-6 relative);
* on CPU each convolution is one oneDNN primitive (``torch.ops.mkldnn._convolution_pointwise``,
  the op ``torch.compile`` lowers to on CPU) with ReLU or the residual ``add`` + ReLU as post-ops
  and its weight pre-packed once (``mkldnn._reorder_convolution_weight``) for the batch size it
  will see;
* on CUDA the folded convolution runs through ``F.conv2d`` (cuDNN) followed by the
  elementwise steps. Measured on an H200 (fast, batch 128), 60 % of the network's GPU time was
  those bias, residual and ReLU passes. :func:`set_cudnn_fusion` turns on the fused form, not
  yet measured on a GPU and so off by default: a convolution followed by ReLU, or by the
  residual ``add`` and ReLU, as one cuDNN call (``torch.cudnn_convolution_relu`` /
  ``torch.cudnn_convolution_add_relu``: cuDNN's runtime-fused convolution, bias, add and ReLU,
  the ops TorchScript's frozen CUDA graphs use), where cuDNN has a fused kernel for it.
  ``benchmarks/gpu_check.py --compare-cudnn-fusion`` times both forms.

Each stack keeps its own compute dtype: float32 (exact mode) or bfloat16 (the fast mode's
backbones); inputs are converted on entry and outputs returned in the input's dtype (float32 in
the pipeline). Backbone calls are split into chunks of images (a :class:`ChunkPlan`: a fixed
size, or the size with the least measured time for the batch at hand), which keeps the working
set in cache and bounds activation memory whatever the batch size. Folded weights are module
buffers: ``.to(device)`` moves the converted network.

On CPU, which form each tuned part (:data:`TUNED_PARTS`: the three ResNets and the box network's
deconvolutions) takes is chosen per machine by measurement (:mod:`wbcap.model.strategy`):
oneDNN's fused pre-packed primitives or plain folded ``F.conv2d`` (weights reordered per call,
elementwise steps apart), the chunk sizes, and for each transposed convolution the oneDNN
deconvolution, its sub-pixel form (:class:`SubpixelDeconv`) or that form's convolution as one
matrix product (:class:`GemmConv`) or the deconvolution itself as one matrix product and a col2im
(:class:`Col2imDeconv`), and for each 3x3 stride-1
convolution of a float32 ResNet, by the number of images in the call, the direct convolution or a
Winograd one (:class:`ConvByBatchSize`, :mod:`wbcap.model.winograd`). Every form computes the
same sums in float32 up to rounding (~1e-6 relative for whole ResNets); the forms a part uses at
different batch sizes agree within 1e-5.

Why not ``torch.compile``: it needs a C++ compiler at run time, imports ``torch._dynamo`` (~2 s)
and compiled one ResNet-50 in 46 s on the 2-core Xeon, where the result ran 2x slower than
:class:`FusedResNet` (inductor with ``freezing``; torch 2.13); why not TorchScript's
``optimize_for_inference``: deprecated. The ops used here are the same oneDNN primitives either
would call.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from wbcap.config import RESNET_WIDTH
from wbcap.model.layers import joint_neighbours
from wbcap.model.precision import Precision
from wbcap.model.resnet import BasicBlock, Bottleneck, ResNetBackbone
from wbcap.model.winograd import TILES, WinogradConv, winograd_applies

log = logging.getLogger(__name__)

# Images per backbone call when none is measured (wbcap.model.strategy: forced, or the machine was
# busy), and for the heads: fills both cores and keeps activations of ResNet-50 layer1 for
# 256x256 crops (64 x 64 x 256 x 4 B = 4 MiB per image) near the cache. Measured on the
# project machine: batches above 8 hand crops got slower per crop.
DEFAULT_CHUNK = 4
# On CUDA a ResNet call takes the whole batch (up to this many images).
GPU_CHUNK = 256


@dataclass(frozen=True)
class ChunkPlan:
    """How many images each convolution call of a part takes, for a batch of ``n`` images.

    ``per_image_s``: ``((chunk, seconds per image), ...)``, increasing chunk sizes, as measured
    on this machine (:mod:`wbcap.model.strategy`): a batch of ``n`` runs in the calls of those
    sizes whose predicted time (the sum of ``chunk * seconds per image``) is least, so every call
    has a measured size, for which the weights are packed (at build, or on its first call in a
    build for a few calls; a batch smaller than the smallest size runs in one call).
    :meth:`fixed` has one entry: calls of that many images, the last one with the rest.
    :attr:`pack` is the largest size.
    """

    per_image_s: tuple[tuple[int, float], ...]

    def __post_init__(self) -> None:
        sizes = [c for c, _ in self.per_image_s]
        if not sizes or sizes != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError(f"chunk sizes must be increasing and >= 1, got {sizes}")
        # (a NaN or infinite time, e.g. from an edited cache file, left no way to split a batch
        # and the split looped forever)
        if not all(isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for _, t in self.per_image_s):
            raise ValueError(f"seconds per image must be finite and > 0, got {[t for _, t in self.per_image_s]}")

    @classmethod
    def fixed(cls, chunk: int) -> ChunkPlan:
        """Calls of at most ``chunk`` images (the batch in one call when it is smaller)."""
        return cls(((max(1, int(chunk)), 1.0),))

    @property
    def pack(self) -> int:
        """The largest chunk size."""
        return self.per_image_s[-1][0]

    @property
    def sizes(self) -> tuple[int, ...]:
        """The chunk sizes, increasing."""
        return tuple(c for c, _ in self.per_image_s)

    def calls(self, n: int) -> tuple[int, ...]:
        """Images per call for a batch of ``n``, largest first (``()`` for 0)."""
        return _plan_calls(self.per_image_s, max(0, int(n)))

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` (N, ...) in the calls :meth:`calls` chooses (``(x,)`` when one call takes it all)."""
        calls = self.calls(x.shape[0])
        return (x,) if len(calls) <= 1 else torch.split(x, list(calls))

    def describe(self, n: int) -> str:
        """The calls for ``n`` images: ``"4"``, ``"4+4+2"``, or ``"8x4+2"`` for long ones."""
        calls = self.calls(n)
        if len(calls) <= 4:
            return "+".join(str(c) for c in calls) or "0"
        head = calls[0]
        rest = [c for c in calls if c != head]
        return f"{len(calls) - len(rest)}x{head}" + "".join(f"+{c}" for c in rest)


@functools.lru_cache(maxsize=256)
def _plan_calls(per_image_s: tuple[tuple[int, float], ...], n: int) -> tuple[int, ...]:
    """:meth:`ChunkPlan.calls`: least predicted time over calls of the measured sizes (dynamic
    programming over 0..n images; ties: fewer calls); one fixed size: calls of it plus the rest."""
    table = dict(per_image_s)
    if len(table) == 1:
        c = per_image_s[0][0]
        return (c,) * (n // c) + ((n % c,) if n % c else ())
    smallest = min(table)
    cost = [0.0] + [float("inf")] * n
    count = [0] + [0] * n
    last = [0] * (n + 1)
    for k in range(1, n + 1):
        if k < smallest:  # fewer images than any measured size: one call of k
            cost[k], count[k], last[k] = k * table[smallest], 1, k
            continue
        for c, t in table.items():
            if c <= k and (cost[k - c] + c * t, count[k - c] + 1) < (cost[k], count[k]):
                cost[k], count[k], last[k] = cost[k - c] + c * t, count[k - c] + 1, c
    calls = []
    while n > 0:
        calls.append(last[n])
        n -= last[n]
    return tuple(sorted(calls, reverse=True))


def rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    """How far an inference form's output ``a`` is from ``ref`` (any shape, compared in float32):
    max |a - ref| / max |ref|."""
    a, ref = a.detach().float(), ref.detach().float()  # (a value, not part of a graph: no autograd warning)
    return float((a - ref).abs().max()) / max(float(ref.abs().max()), 1e-30)


def mkldnn_usable(device: torch.device) -> bool:
    """True when oneDNN fused, pre-packed convolutions can run on ``device``."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def bf16_supported() -> bool:
    """True when oneDNN can run bfloat16 convolutions on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without oneDNN
        return False


def onednn_linear_usable(dtype: torch.dtype) -> bool:
    """True when oneDNN's pre-packed linear primitive (``mkldnn._reorder_linear_weight`` +
    ``mkldnn._linear_pointwise``) can run a CPU product in ``dtype``: float32, or bfloat16 where
    the CPU has it (:func:`bf16_supported`)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if not all(hasattr(torch.ops.mkldnn, op) for op in ("_linear_pointwise", "_reorder_linear_weight")):
        return False  # pragma: no cover - torch builds without them
    return dtype == torch.float32 or (dtype == torch.bfloat16 and bf16_supported())


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | None, transposed: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold eval-mode BatchNorm into a convolution: torch's ``fuse_conv_bn_weights`` (a conv
    without bias gets a zero one first). Returns (weight, bias), float32, without autograd.

    weight: (out, in, kh, kw), or (in, out, kh, kw) when ``transposed``; bias: (out,) or None.
    ``memory_format``: ``torch.channels_last`` returns the weight in that layout (what oneDNN
    packs from, written so by the fold itself instead of copied afterwards, a pass over the
    weights fewer per build); the default returns it as torch's function does. With BatchNorm the weight is torch's formula computed in the same order
    (``w * (gamma * rsqrt(var + eps))``), so the values are ``fuse_conv_bn_weights``' to the bit.
    """
    w = weight.detach().float()
    out_ch = w.shape[1] if transposed else w.shape[0]
    b = torch.zeros(out_ch, dtype=torch.float32, device=w.device) if bias is None else bias.detach().float()
    if bn is None:
        return (w.clone() if memory_format is torch.contiguous_format else w.clone(memory_format=memory_format)), b.clone()
    if memory_format is torch.contiguous_format:
        w, b = fuse_conv_bn_weights(
            w, b, bn.running_mean.detach().float(), bn.running_var.detach().float(), bn.eps,
            bn.weight.detach().float(), bn.bias.detach().float(), transpose=transposed,
        )
        return w.detach(), b.detach()
    gamma = bn.weight.detach().float()
    var_rsqrt = torch.rsqrt(bn.running_var.detach().float() + bn.eps)
    shape = [1, -1] if transposed else [-1, 1]
    folded = torch.empty_like(w, memory_format=memory_format)
    torch.mul(w, (gamma * var_rsqrt).reshape(shape + [1] * (w.dim() - 2)), out=folded)
    return folded, (b - bn.running_mean.detach().float()) * var_rsqrt * gamma + bn.bias.detach().float()


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two oneDNN-packed copies of one weight are laid out alike (same bytes; without
    ``mkldnn::data_ptr``: same size)."""
    mk = torch.ops.mkldnn
    if mk._nbytes(a) != mk._nbytes(b):
        return False
    try:
        return ctypes.string_at(mk.data_ptr(a), mk._nbytes(a)) == ctypes.string_at(mk.data_ptr(b), mk._nbytes(b))
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without mkldnn::data_ptr
        return True


class LinearPacks:
    """oneDNN-packed copies of one ``(N, K)`` linear weight, by the number of rows ``M`` of the
    products they serve (``mkldnn._reorder_linear_weight`` packs for an M); a new packing that
    oneDNN lays out like one already kept (:func:`_same_layout`: same bytes) is dropped for it,
    so a weight costs its size once per distinct layout (e.g. one for a single row and one for
    all larger counts), not once per batch size. Holds packings of one weight: :meth:`clear`
    when the weight changes (device, dtype)."""

    def __init__(self) -> None:
        self._by_rows: dict[int, torch.Tensor] = {}
        self._distinct: list[torch.Tensor] = []

    def get(self, weight: torch.Tensor, rows: int) -> torch.Tensor:
        """``weight`` ``(N, K)`` packed for products of ``rows`` rows (made on the first request)."""
        packed = self._by_rows.get(rows)
        if packed is None:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
            same = next((kept for kept in self._distinct if _same_layout(packed, kept)), None)
            if same is None:
                self._distinct.append(packed)
            else:
                packed = same
            self._by_rows[rows] = packed
        return packed

    @property
    def copies(self) -> int:
        """Distinct packed copies kept (what the packings cost: this many times the weight)."""
        return len(self._distinct)

    def clear(self) -> None:
        """Forget every packing (the weight they were made from changed)."""
        self._by_rows, self._distinct = {}, []


class PackedLinear(nn.Module):
    """``x @ weight.T``: a linear map without bias, its weight kept in ``dtype`` (float32 or
    bfloat16), the product computed in that dtype (bfloat16: inputs rounded to it, sums
    accumulated in float32 by oneDNN, the result rounded to bfloat16) and returned in
    ``out_dtype``; on the CPU with oneDNN's pre-packed primitive (:class:`LinearPacks`), else
    ``F.linear``.

    Why: a skinny product with a large weight reads the whole weight from memory per call.
    SMPL-X's pose-corrective blend shapes (``posedirs``: 486 -> 31 425, 61 MB in float32) are
    one per regressor call; in the fast precision they run here in bfloat16, half the bytes
    (:func:`wbcap.model.inference.optimize_regressor_body`).

    With ``pack=False`` the product runs on the weight as it is laid out (oneDNN's own blocking
    per call, no packed copy): for float32 where memory counts more than the last few per cent.
    SMPL-X's float32 pose correctives take that form (exact on every CPU with oneDNN, fast where
    there is no bfloat16 product); a weight already contiguous in ``dtype`` is used in place.
    Measured on the Zen 3 EPYC (AVX2, 2 threads) in the SMPL-X layer's whole forward: 14.6 / 29.3
    / 76.3 ms for 1 / 8 / 32 poses with ``torch.matmul`` as smplx, 9.3 / 20.7 / 44.7 ms here
    unpacked (17.7 ms packed at 8 poses, for 61 MB more per layout), vertices 1.2e-7 m apart.

    Args:
        weight: ``(N, K)`` float weight (copied into ``dtype`` unless it is already a contiguous
            ``dtype`` tensor).
        dtype: compute and storage dtype.
        out_dtype: dtype of the result (default float32).
        pack: keep oneDNN-packed copies per layout (default) or run on ``weight`` as it is.

    forward(x (M, K) float) -> (M, N) ``out_dtype``.
    """

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype = torch.bfloat16,
                 out_dtype: torch.dtype = torch.float32, pack: bool = True) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().to(dtype).contiguous(), persistent=False)
        self.out_dtype = out_dtype
        self.pack = pack
        self._packs = LinearPacks()

    def _apply(self, fn, recurse=True):
        """A change of device or dtype drops the packings (made from the weight as it was)."""
        self._packs.clear()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight.dtype)
        # (oneDNN's products take float32, and bfloat16 where the CPU has it: a module moved to
        # another dtype afterwards, e.g. by ``.double()``, runs F.linear)
        if x.device.type == "cpu" and x.dim() == 2 and onednn_linear_usable(x.dtype):
            weight = self._packs.get(self.weight, x.shape[0]) if self.pack else self.weight
            y = torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, None, "none", [], "")
        else:
            y = F.linear(x, self.weight)
        return y.to(self.out_dtype)


class ConvAtPoints(nn.Module):
    """Inference form of a ``make_conv_layers`` 1x1 convolution (``[Conv2d 1x1, (BatchNorm,
    ReLU)]``) whose output is only read at a few points by bilinear sampling: :meth:`sample`
    gives ``sample_joint_features(conv(feat), joint_xy)`` computing the convolution on the four
    neighbours of each point only (:func:`~wbcap.model.layers.joint_neighbours`), as one matrix
    product of those pixels' feature vectors with the folded weight (:class:`PackedLinear`), bias
    and ReLU after, then their bilinear weights.

    Why: the body rotation network reads its hand convolutions (2048 -> 512 channels on 8x8
    maps) at 4 joints per hand, i.e. at most 16 of the 64 pixels: a quarter of the multiply-adds
    (0.20 GFLOP less per crop, of 0.27; the body rotation network took 6.8 against 10.0 ms for 8
    crops on the 2-core Zen 5 EPYC). The sums are the convolution's, in another order (float32:
    ~1e-6 relative); neighbours outside the map read zeros, as ``grid_sample``'s zero padding
    (also beside non-finite pixels); a point with non-finite coordinates reads zeros, where
    ``grid_sample`` gives NaN (as :func:`~wbcap.model.layers.sample_joint_features` does for
    half-precision maps). ``forward`` computes the whole map (the module still is the convolution).

    Args:
        seq: the Sequential (one 1x1 stride-1 ``Conv2d``, optional ``BatchNorm2d`` and ``ReLU``).
        dtype: compute dtype (float32 or bfloat16).
        packed: oneDNN-packed product on the CPU (:class:`PackedLinear`).

    sample(feat (B, C_in, H, W), joint_xy (B, J, 2) in cells) -> (B, J, C_out) float32;
    forward(feat) -> (B, C_out, H, W) in ``feat``'s dtype, channels_last memory.
    """

    def __init__(self, seq: nn.Sequential, dtype: torch.dtype = torch.float32, packed: bool = True) -> None:
        super().__init__()
        mods = list(seq)
        conv = mods[0] if mods else None
        if (not isinstance(conv, nn.Conv2d) or tuple(conv.kernel_size) != (1, 1) or tuple(conv.stride) != (1, 1)
                or tuple(conv.padding) != (0, 0) or conv.groups != 1 or tuple(conv.dilation) != (1, 1)):
            raise ValueError(f"ConvAtPoints needs a 1x1, stride-1 convolution without padding or groups, got {conv}")
        bn = mods[1] if len(mods) > 1 and isinstance(mods[1], nn.BatchNorm2d) else None
        rest = mods[1 + (bn is not None):]
        if len(rest) > 1 or (rest and not isinstance(rest[0], nn.ReLU)):
            raise ValueError(f"ConvAtPoints takes a convolution, BatchNorm and ReLU, got {seq}")
        self.relu = bool(rest)
        w, b = fold_batchnorm(conv.weight, conv.bias, bn)
        self.out_channels = int(w.shape[0])
        self.linear = PackedLinear(w.view(w.shape[0], w.shape[1]), dtype, out_dtype=torch.float32, pack=packed)
        self.register_buffer("bias", b.float(), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the product)."""
        return self.linear.weight.dtype

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(M, C_in) pixel feature vectors -> (M, C_out) float32 convolution outputs."""
        y = self.linear(rows).add_(self.bias)
        return y.relu_() if self.relu else y

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feat.shape
        y = self._rows(feat.permute(0, 2, 3, 1).reshape(b * h * w, c))
        return y.to(feat.dtype).view(b, h, w, self.out_channels).permute(0, 3, 1, 2)

    def sample(self, feat: torch.Tensor, joint_xy: torch.Tensor) -> torch.Tensor:
        b, c, h, w = feat.shape
        j = joint_xy.shape[1]
        index, weights, inside = joint_neighbours(joint_xy, h, w)  # (B, J * 4), (B, J, 4), (B, J, 4)
        pixels = feat.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (a view of channels_last memory)
        rows = torch.gather(pixels, 1, index.unsqueeze(-1).expand(b, j * 4, c))  # (B, J * 4, C_in)
        y = self._rows(rows.view(b * j * 4, c)).view(b, j, 4, self.out_channels)
        # (outside neighbours read an edge pixel: zeroed, not weighed by 0, which a non-finite pixel survives)
        return torch.where(inside.unsqueeze(-1), y * weights.unsqueeze(-1), 0.0).sum(2)


@functools.cache
def _inplace_sum_available() -> bool:
    """Whether this torch has oneDNN's in-place fused convolution + add (``mkldnn::_convolution_pointwise_``)."""
    try:
        return hasattr(torch.ops.mkldnn._convolution_pointwise_, "binary")
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without it
        return False


def pack_for_batches(module: nn.Module, batch_sizes: Sequence[int],
                     known: Mapping[int, Sequence[int]] | None = None) -> dict[int, tuple[int, ...]]:
    """Pack the weights of every :class:`FusedConv` in ``module`` (numbered in ``modules()``
    order) for the ``batch_sizes`` whose oneDNN layout differs from the main packing
    (:meth:`FusedConv.add_packs`); with ``known`` (a former result for the same sizes) for those
    alone, without comparing, the other sizes taken as laid out like the main packing (so their
    first call does not check them again). Returns convolution number -> batch sizes packed apart."""
    convs = [m for m in module.modules() if isinstance(m, FusedConv)]
    found = {}
    for i, conv in enumerate(convs):
        if known is None:
            kept = conv.add_packs(batch_sizes)
        else:
            kept = conv.add_packs(known.get(i, ()), check=False)
            conv.same_layout_for(set(batch_sizes) - set(known.get(i, ())))
        if kept:
            found[i] = kept
    return found


def main_pack_size(chunks: ChunkPlan, first_call: int | None, alternates: Mapping | None) -> int:
    """How many images a part's weights are packed for: the plan's largest size, or with
    ``first_call`` (a build for a few calls: :class:`FusedResNet`) that many; ValueError for a
    ``first_call`` with ``alternates`` (those are relative to the largest size's packing)."""
    if first_call is None:
        return chunks.pack
    if alternates is not None:
        raise ValueError("first_call finds the other sizes' layouts on first use: give no alternates")
    if int(first_call) < 1:
        raise ValueError(f"first_call must be >= 1, got {first_call}")
    return int(first_call)


class FusedConv(nn.Module):
    """One convolution (or transposed convolution) with folded BatchNorm and fused activation.

    forward(x (N, C_in, H, W), residual (N, C_out, H', W') | None) -> (N, C_out, H', W') in the
    module's dtype: ``act(conv(x) + b [+ residual])`` with ``act`` ReLU or identity.

    ``weight`` and ``bias`` are (non-persistent) buffers, so ``.to(device / dtype)`` moves them
    with the module. A packed weight is a oneDNN tensor that only exists on the CPU in its own
    dtype: a ``.to()`` that changes the device or dtype first unpacks it (to the plain folded
    weight, run through ``F.conv2d`` from then on). Not saveable or deep-copyable while packed.

    Args:
        conv: the trained ``nn.Conv2d`` / ``nn.ConvTranspose2d``.
        bn: its following BatchNorm (eval statistics), or None.
        relu: apply ReLU after the (optional) residual add.
        dtype: compute dtype (torch.float32 or torch.bfloat16).
        input_size: (N, C, H, W) the weights are packed for (oneDNN picks its layout per shape).
        packed: use oneDNN's fused, pre-packed primitive (CPU only).

    oneDNN may lay a weight out differently for another batch size N (on the 2-core Xeon: the
    hand ResNet-50's two 2048 -> 512 convolutions at 8x8, for N = 1 against N >= 2); called with
    that N, the primitive would reorder the packed weight on every call (70 ms each, through
    oneDNN's generic reorder). :meth:`add_packs` keeps a weight packed for such batch sizes too.
    """

    def __init__(
        self,
        conv: nn.Conv2d | nn.ConvTranspose2d,
        bn: nn.BatchNorm2d | None,
        relu: bool,
        dtype: torch.dtype,
        input_size: Sequence[int],
        packed: bool,
    ) -> None:
        super().__init__()
        transposed = isinstance(conv, nn.ConvTranspose2d)
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("FusedConv supports groups=1, zero padding given as numbers")
        w, b = fold_batchnorm(conv.weight, conv.bias, bn, transposed, torch.channels_last)
        self._setup(w, b, transposed, conv.padding, conv.stride, conv.dilation,
                    conv.output_padding if transposed else (0, 0), relu, dtype, input_size, packed)

    @classmethod
    def from_folded(
        cls, weight: torch.Tensor, bias: torch.Tensor, padding: Sequence[int], relu: bool, dtype: torch.dtype,
        input_size: Sequence[int], packed: bool,
    ) -> FusedConv:
        """A stride-1 convolution from an already folded ``weight`` (out, in, kh, kw) and ``bias`` (out,)."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._setup(weight.detach().float(), bias.detach().float(), False, padding, (1, 1), (1, 1), (0, 0), relu,
                    dtype, input_size, packed)
        return self

    def _setup(self, w: torch.Tensor, b: torch.Tensor, transposed: bool, padding: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int], output_padding: Sequence[int], relu: bool, dtype: torch.dtype,
               input_size: Sequence[int], packed: bool) -> None:
        self.transposed = transposed
        self.padding = [int(v) for v in padding]
        self.stride = [int(v) for v in stride]
        self.dilation = [int(v) for v in dilation]
        self.output_padding = [int(v) for v in output_padding]
        self.relu = relu
        self.packed = packed
        self.out_channels = int(w.shape[1] if transposed else w.shape[0])
        self.kernel = tuple(int(v) for v in w.shape[2:])
        w = w.to(dtype).contiguous(memory_format=torch.channels_last)
        self.register_buffer("bias", b.to(dtype), persistent=False)
        self.input_size = [int(v) for v in input_size]
        self._by_batch: dict[int, torch.Tensor] = {}  # packed weights for other batch sizes (add_packs)
        self._lazy: set[int] = set()  # batch sizes to pack apart on first use (add_packs, check=False)
        self._same: set[int] = set()  # batch sizes found to use the main packing's layout
        self.register_buffer("weight", self._pack(w, self.input_size[0]) if packed else w, persistent=False)
        #: On CUDA: run ReLU (and the residual add) inside cuDNN's convolution (:meth:`forward`).
        #: False: off (the default; :func:`set_cudnn_fusion` turns it on), or cuDNN had no fused
        #: kernel for it; None: on, tried on the next CUDA call; True: on, and it ran.
        self.cudnn_fused: bool | None = False

    def _pack(self, w: torch.Tensor, n: int) -> torch.Tensor:
        """``w`` (channels_last, this module's layout) packed by oneDNN for a batch of ``n``."""
        size = [n, *self.input_size[1:]]
        if self.transposed:
            return torch.ops.mkldnn._reorder_convolution_transpose_weight(
                w, self.padding, self.output_padding, self.stride, self.dilation, 1, size
            )
        return torch.ops.mkldnn._reorder_convolution_weight(w, self.padding, self.stride, self.dilation, 1, size)

    def _dense_weight(self) -> torch.Tensor:
        """The folded weight as a plain channels_last tensor (unpacked when packed)."""
        if not self.packed:
            return self.weight
        w = self.weight.to_dense()  # oneDNN keeps transposed-conv weights as (out, in, kh, kw)
        if self.transposed:
            w = w.transpose(0, 1)
        return w.contiguous(memory_format=torch.channels_last)

    def add_packs(self, batch_sizes: Sequence[int], check: bool = True) -> tuple[int, ...]:
        """Also pack the weight for each of ``batch_sizes`` (inputs of that many images then use
        it): with ``check``, now, only where oneDNN lays it out differently from the main packing
        (compared byte for byte); without (the sizes are known to differ, e.g. from the strategy
        cache), on the first call with that many images, so that a run that never sees a batch
        size (one photo: batch 1) does not pack for it. Returns the batch sizes packed apart, now
        or on first use; nothing for an unpacked module."""
        if not self.packed:
            return ()
        if not check:
            self._lazy.update(int(v) for v in batch_sizes if int(v) != self.input_size[0] and int(v) not in self._by_batch)
            return tuple(sorted(set(self._by_batch) | self._lazy))
        dense = None
        for n in sorted(set(int(v) for v in batch_sizes) - {self.input_size[0]} - set(self._by_batch) - self._same):
            dense = self._dense_weight() if dense is None else dense
            w = self._pack(dense, n)
            if _same_layout(w, self.weight):
                self._same.add(n)
            else:
                self._by_batch[n] = w
        return tuple(sorted(self._by_batch))

    def same_layout_for(self, batch_sizes: Iterable[int]) -> None:
        """Take ``batch_sizes`` as known to be laid out like the main packing (a measurement
        made earlier, e.g. the strategy cache): their calls use it without a check."""
        if self.packed:
            self._same.update(int(v) for v in batch_sizes if int(v) != self.input_size[0] and int(v) not in self._by_batch)

    def _weight_for(self, n: int) -> torch.Tensor:
        """The packed weight for a call with ``n`` images: the main packing, or the one packed
        apart for ``n``. A batch size met for the first time is packed for then, and kept apart
        only if oneDNN lays it out differently (as :meth:`add_packs` does; sizes it was told
        about without a check are kept unchecked). Every batch size is covered so, not only the
        ones a chunk plan names: the heads' convolutions see as many images as the call has
        crops, and at batch 1 the two 2048 -> 512 ones of the hand features reordered their
        weight on every call, 72 of the 215 ms per crop of an exact batch-1 call on the Xeon."""
        if n == self.input_size[0]:
            return self.weight
        weight = self._by_batch.get(n)
        if weight is not None:
            return weight
        if n in self._same and n not in self._lazy:
            return self.weight
        weight = self._pack(self._dense_weight(), n)
        if n in self._lazy or not _same_layout(weight, self.weight):
            self._by_batch[n] = weight
            self._lazy.discard(n)
            return weight
        self._same.add(n)
        return self.weight

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the weights; follows ``.to(dtype)``)."""
        return self.bias.dtype

    def unpack(self) -> None:
        """Replace a packed oneDNN weight by the plain folded one (same values; F.conv2d path)."""
        if not self.packed:
            return
        self.weight = self._dense_weight()
        self._by_batch = {}
        self._lazy = set()
        self._same = set()
        self.packed = False

    def _apply(self, fn, recurse=True):
        """Module.to / .cuda / .double ...: unpack first when ``fn`` changes device or dtype; else
        leave the packed weight alone (a oneDNN tensor has no strides or memory format to change)."""
        if self.packed:
            probe = fn(self.bias)
            if probe.device != self.bias.device or probe.dtype != self.bias.dtype:
                self.unpack()
            else:
                weight = self._buffers.pop("weight")
                try:
                    return super()._apply(fn, recurse)
                finally:
                    self._buffers["weight"] = weight
        return super()._apply(fn, recurse)

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, H', W') for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        k = self.kernel
        if self.transposed:
            hw = [(s - 1) * st - 2 * p + d * (kk - 1) + op + 1 for s, st, p, d, kk, op in
                  zip((h, w), self.stride, self.padding, self.dilation, k, self.output_padding)]
        else:
            hw = [(s + 2 * p - d * (kk - 1) - 1) // st + 1 for s, st, p, d, kk in
                  zip((h, w), self.stride, self.padding, self.dilation, k)]
        return [n, self.out_channels, *hw]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """``act(conv(x) + b [+ residual])``; with ``inplace`` the result may be written into
        ``residual`` (returned; the caller must not read ``residual`` again): oneDNN's in-place sum
        post-op, used when the module is packed and ``residual`` is channels_last in its dtype and
        does not share memory with ``x``.
        A fresh output costs page faults where the allocator hands back new pages (measured on
        the Xeon: a 1x1 64 -> 256 convolution of 8 x 64 x 64 images 19.8 ms with a new 34 MB
        output, 6.7 ms written into the residual)."""
        if self.packed:
            mk = torch.ops.mkldnn
            weight = self._weight_for(int(x.shape[0]))
            if self.transposed:
                if residual is not None:
                    raise ValueError("residual add is not fused for transposed convolutions")
                return mk._convolution_transpose_pointwise(
                    x, weight, self.bias, self.padding, self.output_padding, self.stride, self.dilation, 1,
                    "relu" if self.relu else "none", [], "",
                )
            if residual is None:
                return mk._convolution_pointwise(
                    x, weight, self.bias, self.padding, self.stride, self.dilation, 1,
                    "relu" if self.relu else "none", [], "",
                )
            if (inplace and residual.dtype == self.bias.dtype and residual.is_contiguous(memory_format=torch.channels_last)
                    and residual.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
                    and _inplace_sum_available()):
                return mk._convolution_pointwise_.binary(
                    residual, x, weight, self.bias, self.padding, self.stride, self.dilation, 1,
                    "add", 1.0, "relu" if self.relu else None, [], "",
                )
            return mk._convolution_pointwise.binary(
                x, residual, weight, self.bias, self.padding, self.stride, self.dilation, 1,
                "add", 1.0, "relu" if self.relu else None, [], "",
            )
        if self.cudnn_fused is not False and x.is_cuda:
            y = self._cudnn_fused(x, residual)
            if y is not None:
                return y
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding, 1, self.dilation)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, 1)
        if residual is not None:
            y = y.add_(residual)
        return y.relu_() if self.relu else y

    def _cudnn_fused(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor | None:
        """``relu(conv(x) + b [+ residual])`` as one cuDNN call (CUDA, ReLU convolutions), or
        None where cuDNN has no fused kernel for it: a call that finds none turns the fused
        call off for this module (one DEBUG line) and the caller runs the unfused steps.
        The sums are the same; the fused kernel rounds once, where the unfused steps round the
        convolution's output, the sum and the ReLU apart (bfloat16: up to one unit in the last
        place of each)."""
        if self.transposed or (residual is not None and (
                residual.dtype != x.dtype or list(residual.shape) != self.output_size(list(x.shape)))):
            return None  # (cuDNN's op adds a residual of the output's shape only; no broadcasting)
        try:
            if residual is None:
                y = torch.cudnn_convolution_relu(x, self.weight, self.bias, self.stride, self.padding, self.dilation, 1)
            else:
                y = torch.cudnn_convolution_add_relu(
                    x, self.weight, residual, 1.0, self.bias, self.stride, self.padding, self.dilation, 1)
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, NotImplementedError) as exc:  # (no cuDNN, or no fused engine for this shape)
            self.cudnn_fused = False
            log.debug("cuDNN's fused convolution is unavailable for %s (%s): unfused steps",
                      list(self.weight.shape), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None
        self.cudnn_fused = True
        return y


def set_cudnn_fusion(module: nn.Module, enabled: bool) -> int:
    """Turn cuDNN's fused convolution + (add +) ReLU (:meth:`FusedConv.forward` on CUDA) on
    (tried on the next CUDA call) or off for every :class:`FusedConv` in ``module`` that has a
    ReLU. Returns how many were set. Off by default: not yet measured on a GPU (torch's issue
    #68506 reports ``cudnn_convolution_relu`` 17x slower than the unfused steps for 7x7
    channels_last convolutions, with cuDNN 8); ``benchmarks/gpu_check.py
    --compare-cudnn-fusion`` times both forms."""
    n = 0
    for m in module.modules():
        if isinstance(m, FusedConv) and m.relu and not m.transposed:
            m.cudnn_fused = None if enabled else False
            n += 1
    return n


def subpixel_applies(conv: nn.Module) -> bool:
    """True for the transposed convolutions :class:`SubpixelDeconv` can rewrite: 4x4 kernel,
    stride 2, padding 1, no output padding or dilation, one group, zero padding."""
    return (isinstance(conv, nn.ConvTranspose2d) and tuple(conv.kernel_size) == (4, 4) and tuple(conv.stride) == (2, 2)
            and tuple(conv.padding) == (1, 1) and tuple(conv.output_padding) == (0, 0)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


class _MatrixProductLayer(nn.Module):
    """What :class:`GemmConv` and :class:`Col2imDeconv` share: a ``(N, K)`` weight and a ``(N,)``
    bias in the compute dtype (buffers), oneDNN packings of the weight per number of rows
    (:class:`LinearPacks`, dropped by a ``.to()`` that changes the dtype or device), and the
    product of ``(M, K)`` rows with it: oneDNN's pre-packed linear primitive on the CPU where
    ``packed`` and the dtype allows, else ``torch.addmm`` / ``torch.mm``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, relu: bool, dtype: torch.dtype,
                 packed: bool) -> None:
        super().__init__()
        self.relu = relu
        self.packed = packed
        self.register_buffer("weight", weight.detach().to(dtype).contiguous(), persistent=False)
        self.register_buffer("bias", bias.detach().to(dtype), persistent=False)
        self._packs = LinearPacks()  # of the current weight buffer

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the weight; follows ``.to(dtype)``)."""
        return self.weight.dtype

    def _apply(self, fn, recurse=True):
        """Module.to / .cuda / .half ...: a change of device or dtype drops the packings, which
        were made from the weight as it was."""
        probe = fn(self.bias)
        if probe.device != self.bias.device or probe.dtype != self.bias.dtype:
            self._packs.clear()
        return super()._apply(fn, recurse)

    def _packed_weight(self, rows: int) -> torch.Tensor:
        """The weight packed by oneDNN for ``rows`` rows (the first packing where the layout is the same)."""
        return self._packs.get(self.weight, rows)

    def product(self, rows: torch.Tensor, with_bias: bool) -> torch.Tensor:
        """``rows (M, K) @ weight^T`` ``(M, N)`` in the compute dtype, with the bias and ReLU
        (:attr:`relu`) when ``with_bias``, else the bare product."""
        if self.packed and rows.device.type == "cpu" and onednn_linear_usable(rows.dtype):
            return torch.ops.mkldnn._linear_pointwise(rows, self._packed_weight(rows.shape[0]),
                                                      self.bias if with_bias else None,
                                                      "relu" if with_bias and self.relu else "none", [], "")
        if not with_bias:
            return torch.mm(rows, self.weight.t())
        y = torch.addmm(self.bias, rows, self.weight.t())
        return y.relu_() if self.relu else y


class GemmConv(_MatrixProductLayer):
    """A stride-1 convolution with an already folded weight, run as one matrix product
    (im2col): each output pixel's kh x kw receptive field in the zero-padded input is gathered
    into one row of a new (N * H' * W', kh * kw * C_in) matrix (taps in (ky, kx) order, the input
    channels of each contiguous), which is multiplied by the weight, with the bias and optional
    ReLU.

    Packed (CPU), the product is oneDNN's pre-packed linear primitive
    (``mkldnn._linear_pointwise``, ReLU fused; the weight is packed on the first call with a
    given number of rows N * H' * W' and kept apart only where oneDNN lays it out differently
    from the first packing); else (unpacked, or tensors off the CPU) ``torch.addmm``. Why: for
    the box network's first layer in its sub-pixel form (2248 -> 4 x 256 channels, 2x2 kernel,
    9x7 outputs) oneDNN's bfloat16 convolution ran at an fp32-like ~200 GFLOP/s inside the
    network on the 2-core Xeon with AMX, where the same products as one AMX matrix product took
    half the time (4.0 against 7.5 ms per call of 4 images). The sums are the convolution's,
    added in another order (float32: ~1e-6 relative); the strategy (:mod:`wbcap.model.strategy`)
    measures it per layer and checks it like every other form.

    Args:
        weight: ``(C_out, C_in, kh, kw)`` folded weight (BatchNorm already in it).
        bias: ``(C_out,)``.
        padding: ``(ph, pw)`` zero padding; the stride and dilation are 1.
        relu: apply ReLU after the bias.
        dtype: compute dtype (float32 or bfloat16); the weight is kept as ``(C_out, kh * kw * C_in)``.
        packed: use oneDNN's pre-packed primitive on CPU.

    ``.to()`` that changes the dtype or device drops the packings (packed again on the next CPU
    call); like :class:`FusedConv`, not deep-copyable or saveable once a packing exists.

    forward(x (N, C_in, H, W) in the module's dtype) -> (N, C_out, H', W'), channels_last memory.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: Sequence[int], relu: bool,
                 dtype: torch.dtype, packed: bool) -> None:
        c_out, c_in, kh, kw = (int(v) for v in weight.shape)
        # Columns ordered (ky, kx, c_in), as the gathered rows are.
        super().__init__(weight.detach().float().permute(0, 2, 3, 1).reshape(c_out, kh * kw * c_in), bias, relu,
                         dtype, packed)
        self.kernel = (kh, kw)
        self.padding = tuple(int(v) for v in padding)
        self.out_channels = c_out

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, H', W') for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        (kh, kw), (ph, pw) = self.kernel, self.padding
        return [n, self.out_channels, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1]

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """(N * H' * W', kh * kw * C_in): each output pixel's receptive field, zeros outside the input."""
        n, c, h, w = x.shape
        (kh, kw), (ph, pw) = self.kernel, self.padding
        ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
        src = x.permute(0, 2, 3, 1)  # (N, H, W, C): a view of channels_last memory
        cols = x.new_empty((n, ho, wo, kh, kw, c))
        for ky in range(kh):
            # output row i reads input row i + ky - ph; the rows and columns outside are zeroed
            i0, i1 = min(ho, max(0, ph - ky)), max(0, min(ho, h + ph - ky))
            for kx in range(kw):
                j0, j1 = min(wo, max(0, pw - kx)), max(0, min(wo, w + pw - kx))
                tap = cols[:, :, :, ky, kx]
                if i1 <= i0 or j1 <= j0:
                    tap.zero_()
                    continue
                tap[:, :i0].zero_()
                tap[:, i1:].zero_()
                tap[:, i0:i1, :j0].zero_()
                tap[:, i0:i1, j1:].zero_()
                tap[:, i0:i1, j0:j1] = src[:, i0 + ky - ph:i1 + ky - ph, j0 + kx - pw:j1 + kx - pw]
        return cols.view(n * ho * wo, kh * kw * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, ho, wo = self.output_size(x.shape)
        y = self.product(self.columns(x), with_bias=True)
        return y.view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)


class SubpixelDeconv(nn.Module):
    """A 4x4, stride-2, padding-1 transposed convolution (BatchNorm folded, optional ReLU) run as
    one ordinary convolution: a 2x2 kernel over the input padded by 1, with 4 x C_out output
    channels (one group per output phase: row parity ``py``, column parity ``px``), interleaved
    after.

    Output pixel (2m + py, 2k + px) sums input rows m - 1 + py .. m + py (and columns likewise)
    with the kernel taps ky = (3, 1) for py = 0 and (2, 0) for py = 1: the transposed
    convolution's own terms, added in another order (~1e-6 relative in float32). Group
    (py, px) is read at offset (py, px) of the (H + 1, W + 1) convolution output, so the
    multiply-adds are (H+1)(W+1)/(HW) of the transposed convolution's (1.31x at 8x6, 1.07x at
    32x24); but it runs as a regular oneDNN convolution, which for the box network's first layer
    (2248 -> 256 channels at 8x6) was 2x faster than oneDNN's deconvolution on the 2-core Xeon
    with AMX, in float32 and in bfloat16 (the later layers, 256 channels, were 10-20 % slower:
    the choice is measured per layer, :mod:`wbcap.model.strategy`). With ``gemm`` that
    convolution runs as one matrix product instead (:class:`GemmConv`).

    forward(x (N, C_in, H, W)) -> (N, C_out, 2H, 2W) channels_last, in the module's dtype.
    """

    def __init__(self, deconv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, relu: bool, dtype: torch.dtype,
                 input_size: Sequence[int], packed: bool, gemm: bool = False) -> None:
        super().__init__()
        if not subpixel_applies(deconv):
            raise ValueError("SubpixelDeconv needs a 4x4, stride 2, padding 1 transposed convolution")
        kernel, bias = subpixel_kernel(deconv, bn)
        c_out = int(kernel.shape[0]) // 4
        self.out_channels = c_out
        self.gemm = gemm
        self.conv = (GemmConv(kernel, bias, (1, 1), relu, dtype, packed) if gemm
                     else FusedConv.from_folded(kernel, bias, (1, 1), relu, dtype, input_size, packed))

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the convolution)."""
        return self.conv.dtype

    @property
    def packed(self) -> bool:
        """Whether the convolution runs as oneDNN's pre-packed primitive."""
        return self.conv.packed

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, 2H, 2W) for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        return [n, self.out_channels, 2 * h, 2 * w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return interleave_phases(self.conv(x))


def col2im_applies(conv: nn.Module) -> bool:
    """True for the transposed convolutions :class:`Col2imDeconv` can run: no output padding or
    dilation, one group, zero padding."""
    return (isinstance(conv, nn.ConvTranspose2d) and tuple(conv.output_padding) == (0, 0)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


class Col2imDeconv(_MatrixProductLayer):
    """A transposed convolution (BatchNorm folded, optional ReLU) as one matrix product and a
    col2im: every input pixel's ``C_in`` values times the ``(C_in, kh * kw * C_out)`` weight give
    its ``kh x kw`` patch of output contributions, and the patches are added into the output at
    the stride (the definition of the transposed convolution: input pixel ``(i, j)`` adds
    ``W[:, :, ky, kx]`` times its values to output pixel ``(s i - p + ky, s j - p + kx)``).

    Why: for the box network's first layer (2248 -> 256 channels, 4x4 kernel, stride 2, from
    8x6) oneDNN's deconvolution ran at ~290 GFLOP/s on the 2-core Zen 5 EPYC, where the same
    products as one oneDNN matrix product (48 rows per image, 4096 columns) and the 16 strided
    additions took 2.45 against 2.99 ms for one image and 8.0 against 11.6 ms for four. The
    multiply-adds are the transposed convolution's (the sub-pixel form, :class:`SubpixelDeconv`,
    computes 1.31x as many at 8x6); the sums are added in another order: bias, then the taps in
    (ky, kx) order (float32: ~1e-6 relative). The strategy (:mod:`wbcap.model.strategy`)
    measures it per float32 layer and checks it like every other form; in bfloat16 (which adds
    the taps in float32) the products are rounded to bfloat16 before they are added, 1.6x the
    error of oneDNN's bfloat16 deconvolution in a test, so the strategy does not offer it there.

    Packed (CPU), the product is oneDNN's pre-packed linear primitive (the weight packed per
    number of rows on first use, as :class:`GemmConv`); else ``torch.mm``. ``.to()`` that
    changes the dtype or device drops the packings.

    forward(x (N, C_in, H, W) in the module's dtype) -> (N, C_out, s (H - 1) - 2 p + k, ...),
    channels_last memory, the module's dtype.
    """

    def __init__(self, deconv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None, relu: bool, dtype: torch.dtype,
                 packed: bool) -> None:
        if not col2im_applies(deconv):
            raise ValueError(f"Col2imDeconv needs a transposed convolution without output padding, dilation or "
                             f"groups, got {deconv}")
        w, b = fold_batchnorm(deconv.weight, deconv.bias, bn, transposed=True)  # (in, out, kh, kw)
        c_in, c_out, kh, kw = (int(v) for v in w.shape)
        # Rows ordered (ky, kx, c_out): one image row's product is its (kh, kw, C_out) patch.
        super().__init__(w.permute(2, 3, 1, 0).reshape(kh * kw * c_out, c_in), b, relu, dtype, packed)
        self.kernel = (kh, kw)
        self.stride = tuple(int(v) for v in deconv.stride)
        self.padding = tuple(int(v) for v in deconv.padding)
        self.out_channels = c_out

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, H', W') for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        return [n, self.out_channels, (h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c_in, h, w = x.shape
        _, c, ho, wo = self.output_size(x.shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c_in)  # (a view of channels_last memory)
        cols = self.product(rows, with_bias=False).view(n, h, w, kh, kw, c)  # (the bias and ReLU come after the sums)
        acc = torch.float32 if self.dtype in (torch.bfloat16, torch.float16) else self.dtype
        out = cols.new_empty((n, ho, wo, c), dtype=acc).copy_(self.bias)  # (N, H', W', C), the bias in each pixel
        for ky in range(kh):
            # input rows i land on output rows s i - p + ky; keep those inside [0, H')
            i0, i1 = max(0, -((ky - ph) // sh)), min(h, (ho - 1 + ph - ky) // sh + 1)
            for kx in range(kw):
                j0, j1 = max(0, -((kx - pw) // sw)), min(w, (wo - 1 + pw - kx) // sw + 1)
                if i1 <= i0 or j1 <= j0:
                    continue
                r0, c0 = i0 * sh - ph + ky, j0 * sw - pw + kx
                out[:, r0:r0 + (i1 - i0 - 1) * sh + 1:sh, c0:c0 + (j1 - j0 - 1) * sw + 1:sw].add_(
                    cols[:, i0:i1, j0:j1, ky, kx])
        if self.relu:
            out = out.relu_()
        return out.to(self.dtype).permute(0, 3, 1, 2)


def subpixel_kernel(deconv: nn.ConvTranspose2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ordinary convolution :class:`SubpixelDeconv` runs for a 4x4, stride-2, padding-1
    ``deconv`` (:func:`subpixel_applies`) with ``bn`` folded in: ``(kernel (4 * C_out, C_in, 2,
    2) float32 in channels_last memory, bias (4 * C_out,))``, to be applied with padding 1 and
    its output interleaved by :func:`interleave_phases`. Output channel group ``2 * py + px``
    holds output phase (row parity ``py``, column parity ``px``)."""
    w, b = fold_batchnorm(deconv.weight, deconv.bias, bn, transposed=True)  # (in, out, 4, 4)
    # Kernel taps (3, 1) for parity 0 and (2, 0) for parity 1 are, with the kernel flipped
    # (k -> 3 - k), k = 2a + parity for a = 0, 1. The weight is built straight into the
    # channels_last layout the convolution takes, (parity y, parity x, out, a, b, in): a 2-D
    # transpose puts the input channels last, then the flip and the regrouping copy whole
    # rows of them: 0.06 s for the 2248 -> 256 layer, where gathering the taps per group and
    # concatenating the transposed groups took 0.2 s of every load.
    c_in, c_out = int(w.shape[0]), int(w.shape[1])
    kernel = w.reshape(c_in, c_out * 16).t().contiguous().view(c_out, 4, 4, c_in)  # (out, ky, kx, in)
    kernel = kernel.flip(1, 2).view(c_out, 2, 2, 2, 2, c_in)  # (out, a, parity y, b, parity x, in)
    kernel = kernel.permute(2, 4, 0, 1, 3, 5).contiguous().view(4 * c_out, 2, 2, c_in).permute(0, 3, 1, 2)
    return kernel, b.repeat(4)


def interleave_phases(y: torch.Tensor) -> torch.Tensor:
    """The transposed convolution's output from that of :func:`subpixel_kernel`'s convolution:
    ``(N, 4 * C, H + 1, W + 1)`` channels_last (any dtype) -> ``(N, C, 2H, 2W)`` channels_last, the
    same dtype; output pixel ``(2m + py, 2k + px)`` is channel group ``(py, px)`` at ``(m + py, k + px)``."""
    n, c4, h1, w1 = y.shape
    c, h, w = c4 // 4, h1 - 1, w1 - 1
    y = y.permute(0, 2, 3, 1).reshape(n, h1, w1, 2, 2, c)  # (channels_last memory: no copy)
    out = torch.empty((n, h, 2, w, 2, c), dtype=y.dtype, device=y.device)
    for py in (0, 1):
        for px in (0, 1):
            out[:, :, py, :, px] = y[:, py:py + h, px:px + w, py, px]
    return out.view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def _fused(conv, bn, relu, dtype, size, packed, subpixel: bool = False, gemm: bool = False
           ) -> tuple[nn.Module, list[int]]:
    if subpixel:
        f = SubpixelDeconv(conv, bn, relu, dtype, size, packed, gemm)
    elif gemm:  # (a transposed convolution as one matrix product without the sub-pixel form)
        f = Col2imDeconv(conv, bn, relu, dtype, packed)
    else:
        f = FusedConv(conv, bn, relu, dtype, size, packed)
    return f, f.output_size(size)


class _FusedBlock(nn.Module):
    """A residual block as fused convolutions; the last one adds the shortcut and applies ReLU."""

    def __init__(self, convs: list[nn.Module], downsample: FusedConv | None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(The block's input is only read here: the last convolution may write into it.)"""
        identity = x if self.downsample is None else self.downsample(x)
        # (unpacked, not ``self.convs[:-1]``: slicing a ModuleList builds a new one, 40 per exact
        # batch-1 call, ~0.3 ms of it on the Zen 5 EPYC)
        *first, last = self.convs
        y = x
        for conv in first:
            y = conv(y)
        return last(y, identity, inplace=True)


def run_in_chunks(run, x: torch.Tensor, parts: Sequence[torch.Tensor], out_dtype: torch.dtype) -> torch.Tensor:
    """``run`` on each of ``parts`` (consecutive slices of ``x`` along the batch), results
    converted to ``out_dtype`` as they are copied into one output, in the memory format of the
    first result (what ``torch.cat`` of them gives, bit for bit).

    ``torch.cat`` of the converted chunks made a converted copy of each, then the output: two
    passes over the largest activations, e.g. 13 ms of a 16-crop ``fast`` call for the box
    network's (16, 256, 64, 48) maps on the 2-core Xeon.
    """
    if len(parts) == 1:
        return run(x).to(out_dtype)
    first = run(parts[0])
    fmt = torch.channels_last if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(
        memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((x.shape[0], *first.shape[1:]), dtype=out_dtype, device=first.device, memory_format=fmt)
    out[: len(first)].copy_(first)
    i = len(first)
    for part in parts[1:]:
        y = run(part)
        out[i : i + len(y)].copy_(y)
        i += len(y)
    return out


class SingleImageForm(nn.Module):
    """A tuned part whose calls of one image run another form than its other calls (measured
    faster there: on the 2-core Zen 3 EPYC the hand ResNet-50 took 96 ms for one image through
    onnxruntime against 119 ms fused, while fused was the faster form from four images per call).

    forward(x (B, ...)) -> ``main``'s output for B: the batch is split by ``chunks`` (a
    :class:`ChunkPlan` whose time for one image is ``single``'s), each call of one image goes to
    ``single``, every other call to ``main`` (given ``chunks`` too: the calls of an optimal
    split are not split again), and the results are copied into one output
    (:func:`run_in_chunks`). The two forms must compute the same values up to float32 rounding,
    so that results do not depend on the batch size (the strategy checks it when it measures).
    ``feat_dim`` / ``depth`` / ``dtype`` are ``main``'s.
    """

    def __init__(self, main: nn.Module, single: nn.Module, chunks: ChunkPlan) -> None:
        super().__init__()
        self.single, self.main = single, main  # (single first: an onnxruntime one refuses .to() before main moves)
        self.chunks = chunks
        self.main.chunks = chunks
        self.chunk = chunks.pack
        for name in ("feat_dim", "depth"):
            if hasattr(main, name):
                setattr(self, name, getattr(main, name))

    @property
    def dtype(self) -> torch.dtype:
        """``main``'s compute dtype."""
        return self.main.dtype

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return self.single(x) if x.shape[0] == 1 else self.main(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:
            return self.main(x)
        return run_in_chunks(self._run, x, self.chunks.split(x), x.dtype)


def chunk_plan(chunk: int | ChunkPlan) -> ChunkPlan:
    """``chunk`` as a :class:`ChunkPlan` (an int: :meth:`ChunkPlan.fixed`)."""
    return chunk if isinstance(chunk, ChunkPlan) else ChunkPlan.fixed(chunk)


def block_convs(blk: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """A residual block's (convolution, BatchNorm) pairs in order (the last adds the shortcut)."""
    if isinstance(blk, Bottleneck):
        return [(blk.conv1, blk.bn1), (blk.conv2, blk.bn2), (blk.conv3, blk.bn3)]
    if isinstance(blk, BasicBlock):
        return [(blk.conv1, blk.bn1), (blk.conv2, blk.bn2)]
    raise TypeError(f"unknown residual block {type(blk).__name__}")  # pragma: no cover - only these two exist


#: When a 3x3 convolution runs as a Winograd one: ``((n, tile), ...)``, sorted by n: from ``n``
#: images per call on, ``tile`` (0: the direct convolution) until the next entry; below the first
#: entry, direct. ``()``: always direct; ``((1, 2),)``: always F(2x2, 3x3).
TilePlan = tuple[tuple[int, int], ...]


def tile_for(plan: TilePlan, n: int) -> int:
    """The Winograd tile ``plan`` gives a call of ``n`` images (0: direct)."""
    tile = 0
    for size, t in plan:
        if size > n:
            break
        tile = t
    return tile


def check_tile_plan(plan: Sequence[Sequence[int]]) -> TilePlan:
    """``plan`` as a :data:`TilePlan`; ValueError when its sizes are not increasing positive
    numbers or a tile is not 0 or one of :data:`~wbcap.model.winograd.TILES`."""
    out = tuple((int(n), int(t)) for n, t in plan)
    sizes = [n for n, _ in out]
    if any(n < 1 for n in sizes) or sizes != sorted(set(sizes)) or any(t not in (0, *TILES) for _, t in out):
        raise ValueError(f"Winograd tile plan {[list(e) for e in out]}: use (images, tile) pairs with increasing "
                         f"image counts and tiles 0 or {' or '.join(map(str, TILES))}")
    return out


class ConvByBatchSize(nn.Module):
    """A 3x3 stride-1 convolution (padding 1) that runs direct (:class:`FusedConv`) or as a
    Winograd convolution of some tile (:class:`~wbcap.model.winograd.WinogradConv`) by the number
    of images in the call, as its :data:`TilePlan` says (measured per machine: Winograd's matrix
    products only pay off with enough tiles per call).

    forward(x (N, C_in, H, W), residual (N, C_out, H, W) | None, inplace) -> (N, C_out, H, W)
    float32, channels_last: ``act(conv(x) + b [+ residual])``, as :class:`FusedConv`. Holds the
    packed direct weight only when the plan uses it. The Winograd layer of a tile (its
    transformed kernel is (t + 2)^2 / 9 times the weight's size: 1.8x for F(2x2, 3x3), 4x for
    F(4x4, 3x3)) is made on the first call that runs it, from the folded weight kept until every
    tile of the plan exists: one photo (one image per call) never makes the F(4x4, 3x3) kernels a
    video's calls of four use (measured on the released network's exact plan: 270 MiB of them).
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool, input_size: Sequence[int],
                 packed: bool, plan: TilePlan) -> None:
        super().__init__()
        self.plan = check_tile_plan(plan)
        tiles = {t for _, t in self.plan}
        if self.plan[0][0] > 1:
            tiles.add(0)
        self.direct = FusedConv(conv, bn, relu, torch.float32, input_size, packed) if 0 in tiles else None
        weight, bias = fold_batchnorm(conv.weight, conv.bias, bn, False)
        self.relu = relu
        self.tiles = tuple(sorted(tiles - {0}))
        self.winograd = nn.ModuleDict()  # tile -> WinogradConv, made on first use
        self.register_buffer("folded_weight", weight, persistent=False)
        self.register_buffer("folded_bias", bias, persistent=False)
        self.out_channels = int(conv.out_channels)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (float32; follows ``.to(dtype)``)."""
        if self.direct is not None:
            return self.direct.dtype
        return self.folded_weight.dtype if self.folded_weight is not None else next(iter(self.winograd.values())).dtype

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(N, C_out, H, W) for an (N, C_in, H, W) input."""
        n, _, h, w = input_size
        return [int(n), self.out_channels, int(h), int(w)]

    def winograd_layer(self, tile: int) -> WinogradConv:
        """The Winograd layer of ``tile`` (one of :attr:`tiles`), made now if it is not yet; the
        folded weight is released once every tile exists."""
        key = str(tile)
        if key not in self.winograd:
            self.winograd[key] = WinogradConv(self.folded_weight, self.folded_bias, self.relu, tile)
            if len(self.winograd) == len(self.tiles):
                self.folded_weight = None
                self.folded_bias = None
        return self.winograd[key]

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        tile = tile_for(self.plan, max(1, int(x.shape[0])))  # (an empty batch: as one image)
        conv = self.direct if tile == 0 else self.winograd_layer(tile)
        return conv(x, residual, inplace)


def _conv3x3(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool, dtype: torch.dtype, size: Sequence[int],
             packed: bool, plan: TilePlan) -> tuple[nn.Module, list[int]]:
    """The inference form of a 3x3 stride-1 convolution under ``plan`` (direct, Winograd, or by
    batch size), and its output size."""
    if not plan:
        return _fused(conv, bn, relu, dtype, size, packed)
    if dtype != torch.float32:
        raise ValueError(f"Winograd convolutions run in float32, not {dtype}")
    if len(plan) == 1 and plan[0][0] == 1 and plan[0][1]:
        m: nn.Module = WinogradConv(*fold_batchnorm(conv.weight, conv.bias, bn, False), relu, plan[0][1])
    else:
        m = ConvByBatchSize(conv, bn, relu, size, packed, plan)
    return m, m.output_size(size)


def resnet_winograd_convs(backbone: ResNetBackbone) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The (convolution, BatchNorm) pairs of ``backbone``'s residual blocks whose convolution
    :class:`~wbcap.model.winograd.WinogradConv` can compute (3x3, stride 1), in network order:
    what a ``winograd`` plan's entries refer to."""
    return [(conv, bn) for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
            for blk in layer for conv, bn in block_convs(blk) if winograd_applies(conv)]


class FusedResNet(nn.Module):
    """Inference form of :class:`~wbcap.model.resnet.ResNetBackbone` (same input and output).

    forward(x (B, 3, H, W) float) -> (B, feat_dim, H/32, W/32) in ``x``'s dtype, computed in
    ``dtype`` (that of its convolutions) in calls of the sizes ``chunk`` chooses for B (an int:
    at most that many images; a :class:`ChunkPlan`: the measured best), channels_last. Weights
    are packed for the plan's largest size, and apart for its other sizes where oneDNN lays them
    out differently (``alternates``: see :func:`pack_for_batches`). ``winograd``: per convolution
    of :func:`resnet_winograd_convs`, its :data:`TilePlan` (default: all direct); float32 only.
    ``first_call`` (a build for a few calls, without ``alternates``): weights packed for calls
    of that many images only (the size the first call will have), each other size packed (and
    kept apart where laid out differently) when a call first has it; :attr:`alternates` is then
    None (not known).
    """

    def __init__(
        self, backbone: ResNetBackbone, image_size: tuple[int, int], dtype: torch.dtype = torch.float32,
        packed: bool = True, chunk: int | ChunkPlan = DEFAULT_CHUNK, alternates: Mapping[int, Sequence[int]] | None = None,
        winograd: Sequence[Sequence[Sequence[int]]] | None = None, first_call: int | None = None,
    ) -> None:
        super().__init__()
        eligible = resnet_winograd_convs(backbone)
        plans = [check_tile_plan(p) for p in winograd] if winograd is not None else [()] * len(eligible)
        if len(plans) != len(eligible):
            raise ValueError(f"winograd: {len(plans)} tile plans for {len(eligible)} 3x3 stride-1 convolutions")
        if dtype != torch.float32 and any(plans):  # (checked before any packing)
            raise ValueError(f"Winograd convolutions run in float32, not {dtype}")
        self.winograd = tuple(plans)
        plan_of = {id(conv): plan for (conv, _), plan in zip(eligible, plans)}
        self.chunks = chunk_plan(chunk)
        self.chunk = main_pack_size(self.chunks, first_call, alternates)  # (what the weights are packed for)
        self.feat_dim = backbone.feat_dim
        self.depth = backbone.depth
        size = [self.chunk, 3, *image_size]
        self.stem, size = _fused(backbone.conv1, backbone.bn1, True, dtype, size, packed)
        self.maxpool = backbone.maxpool
        size = [size[0], size[1], (size[2] - 1) // 2 + 1, (size[3] - 1) // 2 + 1]
        blocks = []
        for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
            for blk in layer:
                down = None
                if blk.downsample is not None:
                    down, _ = _fused(blk.downsample[0], blk.downsample[1], False, dtype, size, packed)
                convs: list[nn.Module] = []
                for conv, bn in block_convs(blk):
                    if id(conv) in plan_of:
                        f, size = _conv3x3(conv, bn, True, dtype, size, packed, plan_of[id(conv)])
                    else:
                        f, size = _fused(conv, bn, True, dtype, size, packed)
                    convs.append(f)
                blocks.append(_FusedBlock(convs, down))
        self.blocks = nn.Sequential(*blocks)
        #: convolution number -> batch sizes its weight is also packed for (:func:`pack_for_batches`;
        #: ``alternates``: a former result, else found by comparing the plan's sizes); None with
        #: ``first_call`` (found on first use).
        self.alternates = None if first_call is not None else pack_for_batches(self, self.chunks.sizes, alternates)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the convolutions; follows ``.to(dtype)``)."""
        return self.stem.dtype

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.stem(x))
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return run_in_chunks(self._run, x, self.chunks.split(x), out_dtype)


class FusedConvStack(nn.Module):
    """Inference form of a ``make_conv_layers`` / ``make_deconv_layers`` Sequential
    (``[Conv, (BatchNorm, ReLU)]*``): same input and output (in the input's dtype, or
    ``out_dtype`` where given), computed in ``dtype`` in calls of the sizes ``chunk`` chooses (an
    int: at most that many images, default the batch size of ``input_size``, which the weights
    are packed for; or a :class:`ChunkPlan`).

    ``out_dtype`` (an attribute too): the result's dtype, ``None`` for the input's. The box
    network keeps its upsampled features in the compute dtype (its centre convolution reads them
    in that dtype again, and :func:`~wbcap.model.layers.sample_joint_features` reads three
    points of them), instead of a round trip through float32 of its largest maps: 0.7 ms of a
    fast one-crop call on the 2-core Xeon.

    ``subpixel``: one flag per transposed convolution, in order: run it as a
    :class:`SubpixelDeconv` (default: none; only 4x4 stride-2 ones qualify); ``gemm``: one flag
    per transposed convolution: as one matrix product, i.e. with ``subpixel`` its sub-pixel
    convolution (:class:`GemmConv`), without it the transposed convolution and a col2im
    (:class:`Col2imDeconv`). ``alternates``, ``first_call``: as for :class:`FusedResNet`.
    """

    def __init__(
        self, seq: nn.Sequential, input_size: Sequence[int], dtype: torch.dtype = torch.float32, packed: bool = True,
        chunk: int | ChunkPlan | None = None, subpixel: Sequence[bool] | None = None,
        alternates: Mapping[int, Sequence[int]] | None = None, gemm: Sequence[bool] | None = None,
        out_dtype: torch.dtype | None = None, first_call: int | None = None,
    ) -> None:
        super().__init__()
        self.out_dtype = out_dtype
        self.chunks = chunk_plan(chunk if chunk is not None else int(input_size[0]))
        self.chunk = main_pack_size(self.chunks, first_call, alternates)  # (what the weights are packed for)
        mods = list(seq)
        n_deconv = sum(isinstance(m, nn.ConvTranspose2d) for m in mods)
        flags = list(subpixel) if subpixel is not None else [False] * n_deconv
        gemms = list(gemm) if gemm is not None else [False] * n_deconv
        if len(flags) != n_deconv or len(gemms) != n_deconv:
            raise ValueError(f"subpixel / gemm: {len(flags)} / {len(gemms)} flags for {n_deconv} transposed convolutions")
        layers: list[nn.Module] = []
        size = [self.chunk, *input_size[1:]]
        i = 0
        while i < len(mods):
            conv = mods[i]
            if not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                raise TypeError(f"expected a convolution at position {i}, got {type(conv).__name__}")
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            j = i + 1 + (bn is not None)
            relu = j < len(mods) and isinstance(mods[j], nn.ReLU)
            sub, as_gemm = (flags.pop(0), gemms.pop(0)) if isinstance(conv, nn.ConvTranspose2d) else (False, False)
            if sub and not subpixel_applies(conv):
                raise ValueError(f"layer {i} ({conv}) has no sub-pixel form")
            if as_gemm and not sub and not col2im_applies(conv):
                raise ValueError(f"layer {i} ({conv}) has no col2im form")
            f, size = _fused(conv, bn, relu, dtype, size, packed, sub, as_gemm)
            layers.append(f)
            i = j + relu
        self.layers = nn.Sequential(*layers)
        deconvs = [m for m in layers if isinstance(m, (SubpixelDeconv, Col2imDeconv))
                   or (isinstance(m, FusedConv) and m.transposed)]
        self.subpixel = tuple(isinstance(m, SubpixelDeconv) for m in deconvs)
        self.gemm = tuple(isinstance(m, Col2imDeconv) or (isinstance(m, SubpixelDeconv) and m.gemm) for m in deconvs)
        # (as in FusedResNet)
        self.alternates = None if first_call is not None else pack_for_batches(self, self.chunks.sizes, alternates)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the convolutions; follows ``.to(dtype)``)."""
        return self.layers[0].dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype if self.out_dtype is None else self.out_dtype
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        return run_in_chunks(self.layers, x, self.chunks.split(x), out_dtype)


class RowwiseLinear(nn.Module):
    """``nn.Linear`` evaluated one row at a time, so that a person's result does not depend on
    how many other crops share the batch.

    A (B, K) x (K, N) GEMM chooses its kernel and how it splits K across threads by B, which
    moved the heads' outputs by up to ~1e-6 between batch sizes (and the axis-angle poses
    derived from them by ~1e-5). The heads are 0.8 of 35.8 GFLOPs per crop, so computing their
    linear layers row by row (the same M=1 kernel every time) costs under 1 % of the time.
    forward(x (B, K)) -> (B, N), same dtype as the weights.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= 1:
            return F.linear(x, self.weight, self.bias)
        return torch.cat([F.linear(row, self.weight, self.bias) for row in x.split(1)])


def rowwise_linears(module: nn.Module) -> None:
    """Replace every ``nn.Linear`` below ``module`` by :class:`RowwiseLinear` (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, RowwiseLinear(child))
        else:
            rowwise_linears(child)


#: Compute dtype of each part in each fused precision mode, by name (the plans
#: :attr:`wbcap.model.precision.Precision.plan` owns, where the choice is explained).
PRECISION_PLANS: dict[str, dict[str, torch.dtype]] = {p.value: p.plan for p in Precision if p.fused}

#: The parts whose CPU form is chosen by measurement (:mod:`wbcap.model.strategy`), in network
#: order: 34.9 of the 35.8 GFLOPs per crop of the released network.
TUNED_PARTS = ("body_backbone", "hand_backbone", "face_backbone", "box_net")


@dataclass(frozen=True)
class CalibrationInputs:
    """What a tuned part other than a ResNet is calibrated on for its int8 form
    (:func:`wbcap.model.int8.build_int8_deconv`).

    ``make()`` -> ``(N, C, H, W)`` float32: the part's inputs as the network computes them (module by
    module, float32) for the calibration crops (:func:`wbcap.model.int8.calibration_images`);
    ``upstream``: the modules they come from (their weights are in the calibration's cache key);
    ``float_channels``: how many of the input's last channels stay float32 (not quantised).
    """

    make: Callable[[], torch.Tensor]
    upstream: tuple[nn.Module, ...]
    float_channels: int = 0


@dataclass(frozen=True)
class TunedPart:
    """One part of a Hand4Whole whose inference form is chosen per machine.

    ``module``: the trained module (a :class:`~wbcap.model.resnet.ResNetBackbone`, or the box
    network's deconvolution Sequential); ``item_shape``: (C, H, W) of one of its inputs;
    ``per_crop``: inputs per person crop (2 for the hand backbone: both hands); ``arch``: what
    it computes, e.g. ``"resnet50 3x256x256"`` (part of the strategy cache key);
    ``calibration``: where its int8 form's calibration inputs come from (None for a ResNet, which
    is calibrated on pictures, and for a part without an int8 form).
    """

    name: str
    module: nn.Module
    item_shape: tuple[int, int, int]
    per_crop: int
    arch: str
    calibration: CalibrationInputs | None = None

    def build(self, dtype: torch.dtype, packed: bool, chunk: int | ChunkPlan, subpixel: Sequence[bool] | None = None,
              alternates: Mapping[int, Sequence[int]] | None = None,
              winograd: Sequence[Sequence[Sequence[int]]] | None = None,
              gemm: Sequence[bool] | None = None, few_calls: bool = False) -> nn.Module:
        """The part's inference form (:class:`FusedResNet` or :class:`FusedConvStack`; see
        those for the arguments; ``winograd`` applies to ResNets, ``subpixel`` and ``gemm`` to
        the box network). ``few_calls`` (`wbcap image` of a few photos), where no ``alternates``
        are known and the weights are packed: packed for the first call of one crop's images
        only (:attr:`per_crop`: the hand ResNet's two hands), the other sizes on their first
        call (``first_call``), so one photo packs only what it runs: 0.19 s of the exact body
        ResNet's 0.6 s conversion on the Zen 3 EPYC went to packing and comparing its sizes 1
        and 2 beside 4. (The onnxruntime form of a ResNet is
        :class:`~wbcap.model.ort_resnet.OrtResNet` of :attr:`module`.)"""
        plan = chunk_plan(chunk)
        first = plan.calls(self.per_crop)[0] if few_calls and packed and alternates is None else None
        if isinstance(self.module, ResNetBackbone):
            return FusedResNet(self.module, self.item_shape[1:], dtype, packed, plan, alternates, winograd, first)
        return FusedConvStack(self.module, [plan.pack, *self.item_shape], dtype, packed, plan, subpixel, alternates,
                              gemm, first_call=first)

    def winograd_convs(self, dtype: torch.dtype = torch.float32) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """The part's (convolution, BatchNorm) pairs a Winograd tile can be chosen for when it
        computes in ``dtype`` (:func:`resnet_winograd_convs`): none outside ResNets, and none in
        bfloat16 (Winograd's transforms would round in it; the fast mode's AMX products need no help)."""
        if dtype != torch.float32 or not isinstance(self.module, ResNetBackbone):
            return []
        return resnet_winograd_convs(self.module)

    def transposed_convs(self) -> list[nn.ConvTranspose2d]:
        """The part's transposed convolutions, in order (those a sub-pixel flag refers to)."""
        return [m for m in self.module.modules() if isinstance(m, nn.ConvTranspose2d)]


def feat_hw(shape: Sequence[int]) -> tuple[int, int]:
    """``(h, w)`` of a ResNet's output features (stride 32, rounded up) for an input ``(H, W)``."""
    return (shape[0] + 31) // 32, (shape[1] + 31) // 32


def tuned_parts(net: nn.Module) -> dict[str, TunedPart]:
    """The :data:`TUNED_PARTS` of an unconverted Hand4Whole ``net``, by name."""
    c = net.config
    deconv = net.box_net.deconv
    body_hw = feat_hw(c.input_body_shape)
    widths = [deconv[0].in_channels] + [m.out_channels for m in deconv if isinstance(m, nn.ConvTranspose2d)]

    def resnet(name: str, backbone: ResNetBackbone, hw: Sequence[int], per_crop: int) -> TunedPart:
        # (a narrow ResNet, ModelConfig.backbone_width, is another network: its own timings; ResNet's
        # own width keeps the key it had before widths existed)
        width = "" if backbone.width == RESNET_WIDTH else f" w{backbone.width}"
        return TunedPart(name, backbone, (3, int(hw[0]), int(hw[1])), per_crop,
                         f"resnet{backbone.depth}{width} 3x{hw[0]}x{hw[1]}")

    backbone, position = net.backbone, net.body_position_net

    def box_inputs() -> torch.Tensor:
        """The box network's input for the calibration crops: the body ResNet's features and the
        body joints' heatmaps (softmax probabilities), as BoxNet concatenates them."""
        from wbcap.model.int8 import calibration_images  # (int8 builds on this module)

        with torch.no_grad():
            feat = torch.cat([backbone(x[None]) for x in calibration_images(c.input_body_shape)]).float()
            heatmaps, _ = position(feat)
            return torch.cat((feat, heatmaps.reshape(len(feat), -1, *body_hw).float()), 1)

    # The heatmaps are probabilities, mostly under one uint8 step even of their own 0..1: float32
    box_calibration = CalibrationInputs(box_inputs, (backbone, position), widths[0] - backbone.feat_dim)
    return {
        "body_backbone": resnet("body_backbone", net.backbone, c.input_body_shape, 1),
        "hand_backbone": resnet("hand_backbone", net.hand_roi_net.backbone, c.input_hand_shape, 2),
        "face_backbone": resnet("face_backbone", net.face_roi_net.backbone, c.input_face_shape, 1),
        "box_net": TunedPart("box_net", deconv, (widths[0], *body_hw), 1,
                             f"deconv {'-'.join(str(w) for w in widths)} {body_hw[0]}x{body_hw[1]}", box_calibration),
    }
