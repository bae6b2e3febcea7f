"""The network's inference form, as one call: :func:`optimize_for_inference` converts a trained
Hand4Whole in place, choosing on CPU each tuned part's form by this machine's measurement
(:mod:`wbcap.model.strategy`) and building it from :mod:`wbcap.model.fused`'s pieces.

Kept apart from both so that the pieces (``fused``) and the measurement that picks among them
(``strategy``, which builds candidates from the pieces) do not import each other.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import torch
from torch import nn

from wbcap.errors import first_line, setting
from wbcap.model.fused import (
    DEFAULT_CHUNK,
    GPU_CHUNK,
    PRECISION_PLANS,
    TUNED_PARTS,
    ChunkPlan,
    Col2imDeconv,
    ConvAtPoints,
    FusedConv,
    FusedConvStack,
    GemmConv,
    PackedLinear,
    SingleImageForm,
    TunedPart,
    bf16_supported,
    feat_hw,
    mkldnn_usable,
    rowwise_linears,
    tuned_parts,
)
from wbcap.model.graph_resnet import GraphResNet, graph_applies
from wbcap.model.int8 import INT8_TOLERANCE, CalibrationCache, Int8DeconvStack, Int8ResNet, build_int8, int8_applies
from wbcap.model.ort_resnet import OrtResNet, ort_applies
from wbcap.model.precision import PARTS, Precision
from wbcap.model.strategy import CpuStrategy, PartChoice, choose_cpu_strategy
from wbcap.model.winograd import WinogradConv

__all__ = ["build_form", "optimize_for_inference", "optimize_regressor_body"]

log = logging.getLogger(__name__)


#: The forms built as a whole ResNet of their own (a main form, or the one for calls of one image,
#: :data:`~wbcap.model.strategy.SINGLE_FORMS`): their names in messages, and what each needs.
_WHOLE_FORMS = {"onnxruntime": ("onnxruntime", "it runs float32 ResNets only, with onnx and onnxruntime installed"),
                "graph": ("oneDNN Graph", "it runs the ResNets only, with oneDNN and TorchScript's oneDNN Graph fuser")}


def _whole_form(part: TunedPart, form: str, dtype: torch.dtype, packed: bool,
                chunks: int | ChunkPlan) -> tuple[nn.Module | None, str]:
    """``part`` as an :class:`~wbcap.model.ort_resnet.OrtResNet` or a
    :class:`~wbcap.model.graph_resnet.GraphResNet` (``form``, one of :data:`_WHOLE_FORMS`) calling
    in ``chunks``: ``(the module, "")``, or ``(None, why not)`` where it does not apply here or
    fails to build (onnx / onnxruntime, TorchScript or oneDNN Graph broken since it was measured)."""
    why = _WHOLE_FORMS[form][1]
    try:
        if form == "onnxruntime" and ort_applies(part.module, dtype):
            return OrtResNet(part.module, chunks), ""
        if form == "graph" and packed and graph_applies(part.module, dtype):
            return GraphResNet(part.module, part.item_shape[1:], dtype, chunks), ""
    except Exception as e:  # (onnxruntime's, TorchScript's and oneDNN Graph's own exception types)
        why = first_line(e)
    return None, why


def _build_choice(part: TunedPart, dtype: torch.dtype, packed: bool, choice: PartChoice, fast: bool,
                  calibrations: CalibrationCache | None = None, few_calls: bool = False) -> nn.Module:
    """``part`` in the form ``choice`` names (``fast``: the part is one of the fast precision's,
    for which the int8 form applies); an onnxruntime form that cannot be built here (onnx or
    onnxruntime broken since it was measured), or an int8 form these weights do not quantize well
    for (:func:`~wbcap.model.int8.build_int8`), falls back to the fused form with a warning.
    With :attr:`~wbcap.model.strategy.PartChoice.single`, calls of one image run in that form
    (:class:`~wbcap.model.fused.SingleImageForm`); where it cannot be built, in ``choice.form``
    too (with a warning). ``calibrations``: the int8 calibration cache the network's parts share
    (default: the user cache's file, read for this part alone). ``few_calls``: a fused form
    (chosen, or fallen back to) is built for a few calls (:meth:`TunedPart.build
    <wbcap.model.fused.TunedPart.build>`: packed for the sizes it runs only)."""
    main = build_form(part, dtype, packed, choice, fast, calibrations, few_calls)
    if choice.single is None:
        return main
    single, why = _whole_form(part, choice.single, dtype, packed, 1)
    if single is None:  # (the plan's time for one image was the other form's: main's own again)
        log.warning("%s: its calls of one image were measured faster in the %s form, which could not be built (%s); "
                    "they run %s too", part.name, _WHOLE_FORMS[choice.single][0], why, choice.form)
        main.chunks = dataclasses.replace(choice.chunks, per_image_s=tuple(
            (c, choice.measured.get(choice.form, {}).get(c, t)) for c, t in choice.chunks.per_image_s))
        return main
    return SingleImageForm(main, single, choice.chunks)


def build_form(part: TunedPart, dtype: torch.dtype, packed: bool, choice: PartChoice, fast: bool | None,
               calibrations: CalibrationCache | None = None, few_calls: bool = False) -> nn.Module:
    """``part`` in ``choice.form`` alone (:func:`_build_choice` without the one-image form):
    what a load builds, and what :func:`~wbcap.model.strategy.few_call_build_times` times."""

    def fused_instead() -> nn.Module:
        # (with the float forms' deconvolution choices the measurement kept; Winograd plans are
        # float32 only and an int8 choice has none, nor does an onnxruntime one)
        return part.build(dtype, packed, choice.chunks, choice.subpixel or None, None, None, choice.gemm or None,
                          few_calls)

    if choice.form == "int8":
        if int8_applies(part.module, dtype, fast):
            try:
                net, err = build_int8(part, choice.chunks, calibrations)
            except Exception as e:  # (calibration or oneDNN's int8 primitives: the part still runs, fused)
                net, why = None, first_line(e)
            else:
                why = f"with these weights it is off by {err:.2g} (> {INT8_TOLERANCE:.0e}) on the calibration crops"
            if net is not None:
                return net
        else:
            why = "it runs the fast precision's ResNets and box network only, with oneDNN's int8 convolutions"
        log.warning("%s: the int8 form chosen for this machine is not used (%s); running it fused in %s", part.name, why,
                    str(dtype).removeprefix("torch."))
        return fused_instead()
    if choice.form in _WHOLE_FORMS:
        net, why = _whole_form(part, choice.form, dtype, packed, choice.chunks)
        if net is not None:
            return net
        log.warning("%s: the %s form chosen for this machine could not be built (%s); running it fused "
                    "(WBCAP_CPU_STRATEGY=measure measures again)", part.name, _WHOLE_FORMS[choice.form][0], why)
        return fused_instead()
    return part.build(dtype, packed and choice.form == "fused", choice.chunks, choice.subpixel or None,
                      choice.alternates, choice.winograd or None, choice.gemm or None, few_calls)


def _form_of(module: nn.Module, choice: PartChoice) -> str:
    """The form ``module`` (built by :func:`_build_choice` for ``choice``) runs in: the chosen one,
    or ``fused`` where an int8, onnxruntime or oneDNN Graph choice fell back."""
    if isinstance(module, SingleImageForm):
        return _form_of(module.main, choice)
    if isinstance(module, (Int8ResNet, Int8DeconvStack)):
        return "int8"
    if isinstance(module, OrtResNet):
        return "onnxruntime"
    if isinstance(module, GraphResNet):
        return "graph"
    return choice.form if choice.form in ("fused", "plain") else "fused"


# Long (about 90 lines): every part of the network is converted in one place, in the network's
# order, so each part's input shape and dtype choice reads next to its conversion.
def optimize_for_inference(
    net: nn.Module, device: torch.device | str, precision: Precision | str = Precision.EXACT, chunk: int | None = None,
    plan: dict[str, torch.dtype] | None = None, strategy: str | None = None, few_calls: int = 0,
    measure: bool | None = None,
) -> nn.Module:
    """Convert a :class:`~wbcap.model.hand4whole.Hand4Whole` in place to its inference form.

    The three ResNets become :class:`~wbcap.model.fused.FusedResNet`, the BoxNet deconvolutions and the heads'
    convolution stacks :class:`~wbcap.model.fused.FusedConvStack`, on CPU the heads' linear layers
    :class:`~wbcap.model.fused.RowwiseLinear` (results independent of the batch size), with the per-part dtypes of
    ``precision``'s plan (:attr:`~wbcap.model.precision.Precision.plan`; ``exact`` or ``fast``, or
    their names). The original modules (and their weights) are released; the
    network keeps its forward signature and outputs, but can no longer be trained or saved.
    A network already converted for the same precision is returned as is; converting it for
    another raises ValueError. On a CPU without bfloat16 support, bfloat16 parts run in float32
    (with a warning), the fast precision's ResNets and box network in int8 where measured faster. Call after
    moving the network to ``device``.

    On CPU the form of each of :data:`~wbcap.model.fused.TUNED_PARTS` (fused or plain convolutions, a float32
    ResNet as an onnxruntime session, a fast ResNet or box network in int8, chunk sizes, sub-pixel deconvolutions) is this machine's measured best
    (:func:`wbcap.model.strategy.choose_cpu_strategy`: read from the user cache, or measured
    there in a few seconds the first time); ``strategy`` (default: ``$WBCAP_CPU_STRATEGY``, else
    ``auto``) can force one (``fused``, ``plain``, ``fused:4`` ...) or a new measurement
    (``measure``). The choice is kept as ``net.cpu_strategy``
    (:class:`~wbcap.model.strategy.CpuStrategy`; None on other devices).

    ``chunk``: images per convolution call for every part; on CPU it forces ``fused:<chunk>``
    (default: the strategy's measured sizes on CPU, :data:`~wbcap.model.fused.GPU_CHUNK` elsewhere). ``plan``:
    per-part dtypes overriding the precision's plan (same keys,
    :data:`~wbcap.model.precision.PARTS`; for experiments such as
    ``benchmarks/precision_error.py``). ``few_calls``: the network will run that many calls
    of one crop only (``wbcap image`` of a few photos; 0, the default: many; True counts as 1):
    cached choices of forms that cost more to build than they save there run another measured
    form (:meth:`PartChoice.for_few_calls <wbcap.model.strategy.PartChoice.for_few_calls>`;
    ``net.cpu_strategy`` says what runs). ``measure``: whether parts missing from the strategy
    cache are measured now (default: unless ``few_calls``; a short job runs them in the default
    form instead, ``choose_cpu_strategy``'s ``measure``).
    Returns ``net``.
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
    fast = frozenset(name for name, dtype in plan.items() if dtype == torch.bfloat16)  # (the int8 candidates)
    if device.type == "cpu" and fast and not bf16_supported():
        log.warning("this CPU has no bfloat16 instructions (oneDNN needs AVX512-BF16/AVX512BW or AVX-NE-CONVERT); "
                    "%s %s runs its convolutions in float32 instead (its ResNets and box network in int8 where this machine's "
                    "measured strategy picks that form)", setting("precision"), precision)
        plan = {name: torch.float32 if dtype == torch.bfloat16 else dtype for name, dtype in plan.items()}
    net.eval()
    c = net.config
    cpu = device.type == "cpu"
    # Heads (and, off the CPU, every part): CPU: small chunks keep activations in cache; GPU:
    # whole batches fill the device.
    n = max(1, int(chunk)) if chunk is not None else (DEFAULT_CHUNK if cpu else GPU_CHUNK)
    body_hw, hand_hw = feat_hw(c.input_body_shape), feat_hw(c.input_hand_shape)
    body_dim = net.backbone.feat_dim
    hand_dim = net.hand_roi_net.backbone.feat_dim
    parts = tuned_parts(net)
    cpu_strategy: CpuStrategy | None = None
    with torch.inference_mode(False), torch.no_grad():
        built: dict[str, nn.Module] = {}
        calibrations = CalibrationCache()  # (read once for all the int8 parts, when the first one asks)
        if cpu:
            cpu_strategy, built = choose_cpu_strategy(
                parts, {name: plan[name] for name in TUNED_PARTS}, f"fused:{n}" if chunk is not None else strategy,
                onednn=packed, fast=fast, calibrations=calibrations,
                measure=not few_calls if measure is None else measure,
            )
        for name, part in parts.items():
            if name in built:
                continue
            if cpu_strategy is None:
                built[name] = part.build(plan[name], packed, n)
            else:
                choice = cpu_strategy.parts[name]
                choice = choice.for_few_calls(int(few_calls)) if few_calls else choice
                built[name] = _build_choice(part, plan[name], packed, choice, name in fast, calibrations,
                                            bool(few_calls))
                ran = _form_of(built[name], choice)
                if ran != choice.form:  # (fell back: the strategy reports what runs)
                    choice = dataclasses.replace(choice, form=ran, alternates=None)
                if choice.single is not None and not isinstance(built[name], SingleImageForm):  # (its form fell back)
                    choice = dataclasses.replace(choice, single=None, chunks=built[name].chunks)
                if choice is not cpu_strategy.parts[name]:
                    cpu_strategy = dataclasses.replace(cpu_strategy, parts={**cpu_strategy.parts, name: choice})
        net.backbone = built["body_backbone"]
        net.hand_roi_net.backbone = built["hand_backbone"]
        net.face_roi_net.backbone = built["face_backbone"]
        box = net.box_net
        box.deconv = built["box_net"]
        fused_box = isinstance(box.deconv, FusedConvStack)  # (else int8: out in its input's dtype, the features')
        if fused_box:
            box.deconv.out_dtype = box.deconv.dtype  # (read in that dtype again: see FusedConvStack)
        width = box.deconv.layers[-1].out_channels if fused_box else box.deconv.out_channels
        up = [n, width, body_hw[0] * 8, body_hw[1] * 8]
        box.bbox_center = FusedConvStack(box.bbox_center, up, plan["box_net"], packed, out_dtype=torch.float32)
        heads = plan["heads"]
        net.body_position_net.conv = FusedConvStack(net.body_position_net.conv, [n, body_dim, *body_hw], heads, packed)
        net.hand_position_net.conv = FusedConvStack(net.hand_position_net.conv, [2 * n, hand_dim, *hand_hw], heads, packed)
        rot = net.body_rotation_net
        rot.body_conv = FusedConvStack(rot.body_conv, [n, body_dim, *body_hw], heads, packed)
        # (read at 4 joints each: computed at those joints' neighbours only, see ConvAtPoints)
        rot.lhand_conv = ConvAtPoints(rot.lhand_conv, heads, packed)
        rot.rhand_conv = ConvAtPoints(rot.rhand_conv, heads, packed)
        net.hand_rotation_net.hand_conv = FusedConvStack(
            net.hand_rotation_net.hand_conv, [2 * n, hand_dim, *hand_hw], heads, packed
        )
        if cpu:  # batch-invariant heads; on a GPU one kernel launch per row would cost more
            for head in (net.box_net, net.body_rotation_net, net.hand_rotation_net, net.face_regressor):
                rowwise_linears(head)
        # Hand and face crops: RoIAlign's matrix products in the dtype of the backbone they feed
        # (whose first step rounds them to it anyway); bfloat16 ones are 2.7x faster on CPU.
        from wbcap.crop.roi_align import roi_align

        for roi_net, part in ((net.hand_roi_net, "hand_backbone"), (net.face_roi_net, "face_backbone")):
            if plan[part] != torch.float32:
                roi_net.roi_align = functools.partial(roi_align, compute_dtype=plan[part])
        # The remaining (head) tensors may still be views of a memory-mapped checkpoint: copy them
        # so the file's mapping, and the pages the conversion read through it, are released.
        for module in net.modules():
            if isinstance(module, (FusedConv, GemmConv, Col2imDeconv, WinogradConv)):  # already fresh tensors (Winograd
                continue  # kernels: 270 MiB in the exact network, 0.07 s of a load to copy again)
            for t in list(module._parameters.values()) + list(module._buffers.values()):
                if t is not None:
                    t.data = t.data.clone()
    net.inference_precision = precision
    net.cpu_strategy = cpu_strategy
    return net


def optimize_regressor_body(regressor: nn.Module, device: torch.device | str,
                            precision: Precision | str = Precision.EXACT) -> None:
    """Set how ``regressor`` (a :class:`~wbcap.model.regressor.WholeBodyRegressor`) computes
    SMPL-X's pose-corrective blend shapes for ``precision`` on ``device``
    (:attr:`~wbcap.model.regressor.WholeBodyRegressor.pose_product`).

    ``fast`` on a CPU with bfloat16 instructions: a :class:`~wbcap.model.fused.PackedLinear`
    in bfloat16 (the 486 x 31 425 ``posedirs`` packed: 30 MB per layout oneDNN uses, one for a
    single row and one for more; inputs and result rounded to bfloat16, sums in float32:
    vertices move by ~0.3 mm against float32, far inside the fast mode's 1 cm bound). The product reads the whole matrix on every call, so on the 2-core Xeon
    (model 167) it was 2 ms of a fast one-crop call in float32. Other CPU cases (``exact``, or
    no bfloat16 instructions): the float32 product by oneDNN on the layer's own ``posedirs``
    (``PackedLinear(..., torch.float32, pack=False)``: no copy), where smplx's ``torch.matmul``
    reads the transposed matrix slowly; on the Zen 3 EPYC the layer's forward went from 14.6 to
    9.3 ms for one pose and from 29.3 to 20.7 ms for 8. The same products summed in another order:
    vertices within float32 rounding of smplx's (1.2e-7 m there), not bit for bit. GPUs (and
    CPU builds without oneDNN): None, smplx's product. The layer itself is left alone (other
    users of it, posing for export, keep its own product, smplx's ``torch.matmul``).
    """
    precision = Precision(precision)
    device = torch.device(device)
    posedirs = regressor.body.posedirs.t()  # (3 V, 486): the layer's storage, contiguous
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        regressor.pose_product = None
    elif precision is Precision.FAST and bf16_supported():
        regressor.pose_product = PackedLinear(posedirs, torch.bfloat16).to(device)
    else:
        regressor.pose_product = PackedLinear(posedirs, torch.float32, pack=False)
