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
* elsewhere (CUDA) the folded convolution runs through ``F.conv2d`` (cuDNN) followed by the
  elementwise steps.

Each stack keeps its own compute dtype: float32 (exact mode) or bfloat16 (the fast mode's
backbones); inputs are converted on entry and outputs returned in the input's dtype (float32 in
the pipeline). Backbone calls are split into chunks of at most ``chunk`` images, which keeps the
working set in cache and bounds activation memory whatever the batch size. Folded weights are
module buffers: ``.to(device)`` moves the converted network.

Why not ``torch.compile``: it needs a C++ compiler at run time and minutes of compilation on a
laptop; why not TorchScript's ``optimize_for_inference``: deprecated. The ops used here are
the same oneDNN primitives either would call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from wbcap.errors import setting
from wbcap.model.precision import PARTS, Precision
from wbcap.model.resnet import BasicBlock, Bottleneck, ResNetBackbone

log = logging.getLogger(__name__)

# Images per backbone call: fills both cores and keeps activations of ResNet-50 layer1 for
# 256x256 crops (64 x 64 x 256 x 4 B = 4 MiB per image) near the cache. Measured on the
# project machine: batches above 8 hand crops got slower per crop.
DEFAULT_CHUNK = 4
# On CUDA a ResNet call takes the whole batch (up to this many images).
GPU_CHUNK = 256


def mkldnn_usable(device: torch.device) -> bool:
    """True when oneDNN fused, pre-packed convolutions can run on ``device``."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def bf16_supported() -> bool:
    """True when oneDNN can run bfloat16 convolutions on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without oneDNN
        return False


def fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | None, transposed: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold eval-mode BatchNorm into a convolution (torch's ``fuse_conv_bn_weights``; a conv
    without bias gets a zero one first). Returns (weight, bias), float32, without autograd.

    weight: (out, in, kh, kw), or (in, out, kh, kw) when ``transposed``; bias: (out,) or None.
    """
    w = weight.detach().float()
    out_ch = w.shape[1] if transposed else w.shape[0]
    b = torch.zeros(out_ch, dtype=torch.float32, device=w.device) if bias is None else bias.detach().float()
    if bn is None:
        return w.clone(), b.clone()
    w, b = fuse_conv_bn_weights(
        w, b, bn.running_mean.detach().float(), bn.running_var.detach().float(), bn.eps,
        bn.weight.detach().float(), bn.bias.detach().float(), transpose=transposed,
    )
    return w.detach(), b.detach()


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
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("FusedConv supports groups=1, zero padding given as numbers")
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.output_padding = list(conv.output_padding) if self.transposed else [0, 0]
        self.relu = relu
        self.packed = packed
        w, b = fold_batchnorm(conv.weight, conv.bias, bn, self.transposed)
        w = w.to(dtype).contiguous(memory_format=torch.channels_last)
        self.register_buffer("bias", b.to(dtype), persistent=False)
        size = [int(v) for v in input_size]
        if packed:
            if self.transposed:
                w = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                    w, self.padding, self.output_padding, self.stride, self.dilation, 1, size
                )
            else:
                w = torch.ops.mkldnn._reorder_convolution_weight(w, self.padding, self.stride, self.dilation, 1, size)
        self.register_buffer("weight", w, persistent=False)
        self.out_channels = conv.out_channels
        self.kernel = tuple(conv.kernel_size)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the weights; follows ``.to(dtype)``)."""
        return self.bias.dtype

    def unpack(self) -> None:
        """Replace a packed oneDNN weight by the plain folded one (same values; F.conv2d path)."""
        if not self.packed:
            return
        w = self.weight.to_dense()  # oneDNN keeps transposed-conv weights as (out, in, kh, kw)
        if self.transposed:
            w = w.transpose(0, 1)
        self.weight = w.contiguous(memory_format=torch.channels_last)
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

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.packed:
            mk = torch.ops.mkldnn
            if self.transposed:
                if residual is not None:
                    raise ValueError("residual add is not fused for transposed convolutions")
                return mk._convolution_transpose_pointwise(
                    x, self.weight, self.bias, self.padding, self.output_padding, self.stride, self.dilation, 1,
                    "relu" if self.relu else "none", [], "",
                )
            if residual is None:
                return mk._convolution_pointwise(
                    x, self.weight, self.bias, self.padding, self.stride, self.dilation, 1,
                    "relu" if self.relu else "none", [], "",
                )
            return mk._convolution_pointwise.binary(
                x, residual, self.weight, self.bias, self.padding, self.stride, self.dilation, 1,
                "add", 1.0, "relu" if self.relu else None, [], "",
            )
        if self.transposed:
            y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding, 1, self.dilation)
        else:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, 1)
        if residual is not None:
            y = y.add_(residual)
        return y.relu_() if self.relu else y


def _fused(conv, bn, relu, dtype, size, packed) -> tuple[FusedConv, list[int]]:
    f = FusedConv(conv, bn, relu, dtype, size, packed)
    return f, f.output_size(size)


class _FusedBlock(nn.Module):
    """A residual block as fused convolutions; the last one adds the shortcut and applies ReLU."""

    def __init__(self, convs: list[FusedConv], downsample: FusedConv | None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = x
        for conv in self.convs[:-1]:
            y = conv(y)
        return self.convs[-1](y, identity)


class FusedResNet(nn.Module):
    """Inference form of :class:`~wbcap.model.resnet.ResNetBackbone` (same input and output).

    forward(x (B, 3, H, W) float) -> (B, feat_dim, H/32, W/32) in ``x``'s dtype, computed in
    ``dtype`` (that of its convolutions) in chunks of at most ``chunk`` images (channels_last).
    """

    def __init__(
        self, backbone: ResNetBackbone, image_size: tuple[int, int], dtype: torch.dtype = torch.float32,
        packed: bool = True, chunk: int = DEFAULT_CHUNK,
    ) -> None:
        super().__init__()
        self.chunk = max(1, int(chunk))
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
                if isinstance(blk, Bottleneck):
                    pairs = [(blk.conv1, blk.bn1), (blk.conv2, blk.bn2), (blk.conv3, blk.bn3)]
                elif isinstance(blk, BasicBlock):
                    pairs = [(blk.conv1, blk.bn1), (blk.conv2, blk.bn2)]
                else:  # pragma: no cover - ResNetBackbone only builds these two
                    raise TypeError(f"unknown residual block {type(blk).__name__}")
                convs = []
                for conv, bn in pairs:
                    f, size = _fused(conv, bn, True, dtype, size, packed)
                    convs.append(f)
                blocks.append(_FusedBlock(convs, down))
        self.blocks = nn.Sequential(*blocks)

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
        if x.shape[0] <= self.chunk:
            return self._run(x).to(out_dtype)
        return torch.cat([self._run(part).to(out_dtype) for part in torch.split(x, self.chunk)])


class FusedConvStack(nn.Module):
    """Inference form of a ``make_conv_layers`` / ``make_deconv_layers`` Sequential
    (``[Conv, (BatchNorm, ReLU)]*``): same input and output (in the input's dtype), computed in
    ``dtype`` in chunks of at most ``chunk`` images (default: the batch size of ``input_size``)."""

    def __init__(
        self, seq: nn.Sequential, input_size: Sequence[int], dtype: torch.dtype = torch.float32, packed: bool = True,
        chunk: int | None = None,
    ) -> None:
        super().__init__()
        self.chunk = max(1, int(chunk if chunk is not None else input_size[0]))
        mods = list(seq)
        layers: list[FusedConv] = []
        size = list(input_size)
        i = 0
        while i < len(mods):
            conv = mods[i]
            if not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                raise TypeError(f"expected a convolution at position {i}, got {type(conv).__name__}")
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None
            j = i + 1 + (bn is not None)
            relu = j < len(mods) and isinstance(mods[j], nn.ReLU)
            f, size = _fused(conv, bn, relu, dtype, size, packed)
            layers.append(f)
            i = j + relu
        self.layers = nn.Sequential(*layers)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (that of the convolutions; follows ``.to(dtype)``)."""
        return self.layers[0].dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        if x.shape[0] <= self.chunk:
            return self.layers(x).to(out_dtype)
        return torch.cat([self.layers(part).to(out_dtype) for part in torch.split(x, self.chunk)])


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


def _rowwise_linears(module: nn.Module) -> None:
    """Replace every ``nn.Linear`` below ``module`` by :class:`RowwiseLinear` (in place)."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, RowwiseLinear(child))
        else:
            _rowwise_linears(child)


#: Compute dtype of each part in each fused precision mode, by name (the plans
#: :attr:`wbcap.model.precision.Precision.plan` owns, where the choice is explained).
PRECISION_PLANS: dict[str, dict[str, torch.dtype]] = {p.value: p.plan for p in Precision if p.fused}


# Long (about 80 lines): every part of the network is converted in one place, in the network's
# order, so each part's input shape and dtype choice reads next to its conversion.
def optimize_for_inference(
    net: nn.Module, device: torch.device | str, precision: Precision | str = Precision.EXACT, chunk: int | None = None,
    plan: dict[str, torch.dtype] | None = None,
) -> nn.Module:
    """Convert a :class:`~wbcap.model.hand4whole.Hand4Whole` in place to its inference form.

    The three ResNets become :class:`FusedResNet`, the BoxNet deconvolutions and the heads'
    convolution stacks :class:`FusedConvStack`, on CPU the heads' linear layers
    :class:`RowwiseLinear` (results independent of the batch size), with the per-part dtypes of
    ``precision``'s plan (:attr:`~wbcap.model.precision.Precision.plan`; ``exact`` or ``fast``, or
    their names). The original modules (and their weights) are released; the
    network keeps its forward signature and outputs, but can no longer be trained or saved.
    A network already converted for the same precision is returned as is; converting it for
    another raises ValueError. On a CPU without bfloat16 support, bfloat16 parts run in float32
    (with a warning). Call after moving the network to ``device``.

    ``chunk``: images per convolution call (default :data:`DEFAULT_CHUNK` on CPU,
    :data:`GPU_CHUNK` elsewhere). ``plan``: per-part dtypes overriding the precision's plan (same
    keys, :data:`~wbcap.model.precision.PARTS`; for experiments such as
    ``benchmarks/precision_error.py``). Returns ``net``.
    """
    if precision not in PRECISION_PLANS:
        raise ValueError(f"precision must be one of {sorted(PRECISION_PLANS)}, got {precision!r}")
    precision = Precision(precision)
    done = getattr(net, "inference_precision", None)
    if done is not None:
        if done == precision and plan is None:
            return net
        raise ValueError(f"this network was already converted for {str(done)!r} inference; load it again to convert "
                         f"it for {str(precision)!r}")
    plan = {**precision.plan, **(plan or {})}
    unknown = set(plan) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown plan parts {sorted(unknown)}; use {sorted(PARTS)}")
    device = torch.device(device)
    packed = mkldnn_usable(device)
    if not packed and device.type == "cpu":
        log.warning("oneDNN is not available in this torch build; running folded convolutions without fusion")
    if device.type == "cpu" and torch.bfloat16 in plan.values() and not bf16_supported():
        log.warning("this CPU has no bfloat16 instructions (oneDNN needs AVX512-BF16/AVX512BW or AVX-NE-CONVERT); "
                    "%s %s runs in float32 (exact) instead", setting("precision"), precision)
        plan = Precision.EXACT.plan
    net.eval()
    c = net.config
    if chunk is None:
        # CPU: small chunks keep activations in cache (measured); GPU: whole batches fill the device.
        chunk = DEFAULT_CHUNK if device.type == "cpu" else GPU_CHUNK
    n = max(1, int(chunk))
    bh, bw = c.input_body_shape
    hh, hw = c.input_hand_shape

    def feat(shape: tuple[int, int]) -> tuple[int, int]:
        return (shape[0] + 31) // 32, (shape[1] + 31) // 32

    body_hw, hand_hw = feat(c.input_body_shape), feat(c.input_hand_shape)
    body_dim = net.backbone.feat_dim
    hand_dim = net.hand_roi_net.backbone.feat_dim
    with torch.inference_mode(False), torch.no_grad():
        net.backbone = FusedResNet(net.backbone, (bh, bw), plan["body_backbone"], packed, n)
        net.hand_roi_net.backbone = FusedResNet(net.hand_roi_net.backbone, (hh, hw), plan["hand_backbone"], packed, n)
        net.face_roi_net.backbone = FusedResNet(
            net.face_roi_net.backbone, tuple(c.input_face_shape), plan["face_backbone"], packed, n
        )
        box = net.box_net
        deconv_in = [n, box.deconv[0].in_channels, *body_hw]
        box.deconv = FusedConvStack(box.deconv, deconv_in, plan["box_net"], packed)
        up = [n, box.deconv.layers[-1].out_channels, body_hw[0] * 8, body_hw[1] * 8]
        box.bbox_center = FusedConvStack(box.bbox_center, up, plan["box_net"], packed)
        heads = plan["heads"]
        net.body_position_net.conv = FusedConvStack(net.body_position_net.conv, [n, body_dim, *body_hw], heads, packed)
        net.hand_position_net.conv = FusedConvStack(net.hand_position_net.conv, [2 * n, hand_dim, *hand_hw], heads, packed)
        rot = net.body_rotation_net
        rot.body_conv = FusedConvStack(rot.body_conv, [n, body_dim, *body_hw], heads, packed)
        rot.lhand_conv = FusedConvStack(rot.lhand_conv, [n, hand_dim, *hand_hw], heads, packed)
        rot.rhand_conv = FusedConvStack(rot.rhand_conv, [n, hand_dim, *hand_hw], heads, packed)
        net.hand_rotation_net.hand_conv = FusedConvStack(
            net.hand_rotation_net.hand_conv, [2 * n, hand_dim, *hand_hw], heads, packed
        )
        if device.type == "cpu":  # batch-invariant heads; on a GPU one kernel launch per row would cost more
            for head in (net.box_net, net.body_rotation_net, net.hand_rotation_net, net.face_regressor):
                _rowwise_linears(head)
        # Hand and face crops: RoIAlign's matrix products in the dtype of the backbone they feed
        # (whose first step rounds them to it anyway); bfloat16 ones are 2.7x faster on CPU.
        from wbcap.crop.roi_align import roi_align

        for roi_net, part in ((net.hand_roi_net, "hand_backbone"), (net.face_roi_net, "face_backbone")):
            if plan[part] != torch.float32:
                roi_net.roi_align = functools.partial(roi_align, compute_dtype=plan[part])
        # The remaining (head) tensors may still be views of a memory-mapped checkpoint: copy them
        # so the file's mapping, and the pages the conversion read through it, are released.
        for module in net.modules():
            if isinstance(module, FusedConv):  # already fresh tensors
                continue
            for t in list(module._parameters.values()) + list(module._buffers.values()):
                if t is not None:
                    t.data = t.data.clone()
    net.inference_precision = precision
    return net
