"""A float32 ResNet run by onnxruntime: one more inference form the CPU strategy can choose.

onnxruntime's CPU provider runs convolutions with MLAS in a blocked channel layout (NCHWc, the
channels in blocks of the vector width) kept from layer to layer, with the bias, the residual
add and the ReLU fused into each convolution, and its weights reordered once when the session is
made. Measured on the 2-core Xeon (family 6 model 207, AVX-512) against the same ResNets as
:class:`~wbcap.model.fused.FusedResNet` (oneDNN, fused and pre-packed, with the measured
Winograd layers), interleaved in one process, each call against the fp32 matmul ceiling
measured around it: the hand ResNet-50 at 256x256 71 / 80 / 86 / 76 % at 1 / 2 / 4 / 8 images
per call against 69 / 76 / 88 / 80 %, the body ResNet-50 and the face ResNet-18 alike (a few
points ahead at one or two images, behind from four on): not chosen there. Which is faster
depends on the machine, so it is a candidate of :mod:`wbcap.model.strategy`, measured and
checked like the others (float32 only: MLAS has no bfloat16 convolutions, and the fast mode's
AMX products need no help).

The graph is written from the folded weights (BatchNorm folded into each convolution as in
:func:`~wbcap.model.fused.fold_batchnorm`) with the ``onnx`` package: ``Conv`` (with bias) ->
``Relu``, ``MaxPool``, ``Add`` -> ``Relu`` for the shortcuts; onnxruntime's own graph
optimisation fuses them. The weights are handed over beside the graph (not serialised into it);
onnxruntime copies them in while the session is made, then keeps only its reordered form.

Why not ``torch.onnx.export``: it traces through TorchScript (deprecated) or ``torch.export``
(which imports ``torch._dynamo``, ~2 s); the ResNet's graph is a few node kinds, written
directly from the modules.

The fast mode's ResNets have an int8 variant here too (the ``onnxruntime-int8`` form,
:func:`build_ort_int8_resnet`): that graph quantised by onnxruntime's own post-training
quantiser (``quantize_static``: QDQ, int8 weights per output channel, uint8 activations with
min/max ranges on :func:`wbcap.model.int8.calibration_images`, the input picture's 0..1 fixed),
which onnxruntime's graph optimiser turns into its int8 convolutions (MLAS). On the Zen 3 EPYC
(AVX2, no VNNI) the hand ResNet-50 ran 11-21 % faster so than oneDNN's int8 form
(:class:`wbcap.model.int8.Int8ResNet`). It is less close to float32: each residual sum is
requantised apart from its convolution (oneDNN fuses it), so the tests' full-size fast network
moved vertices by 5.1 mm against 2.0 mm with oneDNN's form, inside the fast mode's 1 cm. The
quantised model (24 MB for a ResNet-50) is kept per checkpoint in the user cache; quantising
takes a few seconds per ResNet-50 the first time.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from wbcap.model.fused import ChunkPlan, block_convs, chunk_plan, fold_batchnorm
from wbcap.model.resnet import ResNetBackbone

log = logging.getLogger(__name__)

#: ONNX operator set and IR version of the written graph (onnxruntime >= 1.17 reads both).
OPSET = 17
IR_VERSION = 8


def ort_usable() -> bool:
    """Whether this form can be built here: ``onnxruntime`` and ``onnx`` are importable."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def ort_applies(module: nn.Module, dtype: torch.dtype) -> bool:
    """Whether a tuned part's ``module`` computed in ``dtype`` can take this form: a
    :class:`~wbcap.model.resnet.ResNetBackbone` in float32, with :func:`ort_usable`."""
    return dtype == torch.float32 and isinstance(module, ResNetBackbone) and ort_usable()


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    w, b = fold_batchnorm(conv.weight, conv.bias, bn, False)
    return w.cpu().numpy().astype(np.float32, copy=False), b.cpu().numpy().astype(np.float32, copy=False)


def resnet_onnx(backbone: ResNetBackbone) -> tuple[bytes, dict[str, np.ndarray]]:
    """The ONNX model of ``backbone`` in eval mode, BatchNorm folded: the serialised graph, whose
    initializers (weights and biases) are marked as external data, and those initializers by name
    (float32 arrays, handed to onnxruntime by :func:`make_session` without a copy into the
    protobuf: serialising 94 MB of a ResNet-50's weights took 0.3 s).

    Input ``x`` (N, 3, H, W) float32, output ``y`` (N, feat_dim, ceil(H / 32), ceil(W / 32))
    float32 (N, H, W free); the same arithmetic as ``backbone(x)`` up to float32 rounding.
    """
    from onnx import TensorProto, helper

    nodes: list = []
    inits: list = []
    weights: dict[str, np.ndarray] = {}
    count = [0]

    def name(kind: str) -> str:
        count[0] += 1
        return f"{kind}{count[0]}"

    def initializer(array: np.ndarray, kind: str) -> str:
        key = name(kind)
        t = TensorProto(name=key, data_type=TensorProto.FLOAT, dims=list(array.shape),
                        data_location=TensorProto.EXTERNAL)
        for k, v in (("location", "wbcap-memory"), ("offset", "0"), ("length", str(array.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        inits.append(t)
        weights[key] = np.ascontiguousarray(array, dtype=np.float32)
        return key

    def conv(x: str, c: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool, residual: str | None = None) -> str:
        w, b = _fold(c, bn)
        kh, kw = (int(k) for k in c.kernel_size)
        ph, pw = (int(p) for p in c.padding)
        out = name("conv")
        nodes.append(helper.make_node("Conv", [x, initializer(w, "w"), initializer(b, "b")], [out],
                                      kernel_shape=[kh, kw], strides=[int(s) for s in c.stride],
                                      pads=[ph, pw, ph, pw], dilations=[int(d) for d in c.dilation], group=1))
        if residual is not None:
            summed = name("add")
            nodes.append(helper.make_node("Add", [out, residual], [summed]))
            out = summed
        if relu:
            act = name("relu")
            nodes.append(helper.make_node("Relu", [out], [act]))
            out = act
        return out

    x = conv("x", backbone.conv1, backbone.bn1, True)
    pool = backbone.maxpool
    k, s, p = (int(v if isinstance(v, int) else v[0]) for v in (pool.kernel_size, pool.stride, pool.padding))
    y = name("pool")
    nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p]))
    x = y
    for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        for blk in layer:
            identity = x
            if blk.downsample is not None:
                identity = conv(x, blk.downsample[0], blk.downsample[1], False)
            pairs = block_convs(blk)
            h = x
            for c, bn in pairs[:-1]:
                h = conv(h, c, bn, True)
            x = conv(h, *pairs[-1], True, residual=identity)
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        nodes, f"resnet{backbone.depth}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", backbone.feat_dim, "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, producer_name="wbcap", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model.SerializeToString(), weights


def make_session(model: bytes | str, weights: Mapping[str, np.ndarray], threads: int):
    """An onnxruntime CPU session of ``model`` (serialised, or a file's path) with its external initializers ``weights`` (by
    name; copied by onnxruntime, they may be freed afterwards) on ``threads`` intra-op threads
    that sleep when idle (``allow_spinning`` 0: spinning threads would take the cores from
    torch's, which run the rest of the network between calls), all graph optimisations on, and
    no memory arena (an arena keeps each session's largest activations for the life of the
    process: +114 MB for the hand ResNet-50 after calls of up to 7 images, in each of the three
    sessions; per-call times with and without it were within this machine's noise)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = False
    names = list(weights)
    opts.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(weights[n]) for n in names])
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


class OrtResNet(nn.Module):
    """A :class:`~wbcap.model.resnet.ResNetBackbone` (eval, BatchNorm folded) as an onnxruntime
    session: the same contract as :class:`~wbcap.model.fused.FusedResNet`.

    forward(x (B, 3, H, W) float, CPU) -> (B, feat_dim, ceil(H / 32), ceil(W / 32)) in ``x``'s
    dtype, computed in float32 in calls of the sizes ``chunk`` chooses for B (an int: at most
    that many images; a :class:`~wbcap.model.fused.ChunkPlan`: the measured best). Inputs and
    outputs are handed to onnxruntime by pointer (no copies beyond the float32 contiguous input
    and the output). ``threads``: onnxruntime's intra-op threads (default: torch's thread count
    when built). CPU only: ``.to()`` another device or dtype raises ValueError. Not saveable.
    Raises RuntimeError (from onnxruntime) when a call fails. ``model``: the path of another
    ONNX model of the backbone to run instead (the int8 one of :func:`build_ort_int8_resnet`:
    :attr:`int8` is then True); the backbone then gives only its shapes.
    """

    def __init__(self, backbone: ResNetBackbone, chunk: int | ChunkPlan, threads: int | None = None,
                 model=None) -> None:
        super().__init__()
        self.chunks = chunk_plan(chunk)
        self.chunk = self.chunks.pack
        self.feat_dim = backbone.feat_dim
        self.depth = backbone.depth
        self.threads = int(threads or torch.get_num_threads())
        self.int8 = model is not None
        self._session = make_session(*resnet_onnx(backbone), self.threads) if model is None else make_session(
            str(model), {}, self.threads)

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype (float32)."""
        return torch.float32

    def _apply(self, fn, recurse=True):
        probe = fn(torch.zeros(1))
        if probe.device.type != "cpu" or probe.dtype != torch.float32:
            raise ValueError("an onnxruntime ResNet runs in float32 on the CPU; load the network again for another "
                             "device or dtype")
        return super()._apply(fn, recurse)

    def _run(self, x: torch.Tensor, out: torch.Tensor) -> None:
        binding = self._session.io_binding()
        binding.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.data_ptr())
        binding.bind_output("y", "cpu", 0, np.float32, list(out.shape), out.data_ptr())
        self._session.run_with_iobinding(binding)

    def output_size(self, input_size: Sequence[int]) -> list[int]:
        """(B, feat_dim, ceil(H / 32), ceil(W / 32)) for an input (B, 3, H, W)."""
        n, _, h, w = input_size
        return [int(n), self.feat_dim, (int(h) + 31) // 32, (int(w) + 31) // 32]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"an onnxruntime ResNet runs on the CPU, got an input on {x.device}")
        out_dtype = x.dtype
        x = x.detach().to(torch.float32).contiguous()
        out = torch.empty(self.output_size(x.shape), dtype=torch.float32)
        if x.shape[0] == 0:
            return out.to(out_dtype)
        i = 0
        for part in self.chunks.split(x):
            n = part.shape[0]
            self._run(part.contiguous(), out[i : i + n])
            i += n
        return out.to(out_dtype)


#: The onnxruntime int8 ResNets kept in the user cache: folder name, files kept (the most recent).
INT8_FOLDER = "onnxruntime_int8"
INT8_KEEP = 8


def ort_int8_applies(module: nn.Module, dtype: torch.dtype, fast: bool | None = None) -> bool:
    """Whether a tuned part's ``module`` computed in ``dtype`` can take the ``onnxruntime-int8``
    form: a :class:`~wbcap.model.resnet.ResNetBackbone` of the fast precision (``fast`` as in
    :func:`~wbcap.model.int8.int8_applies`), with :func:`ort_usable`."""
    fast = dtype == torch.bfloat16 if fast is None else fast
    return fast and isinstance(module, ResNetBackbone) and ort_usable()


def _embedded(model: bytes, weights: Mapping[str, np.ndarray]):
    """The ``onnx.ModelProto`` of :func:`resnet_onnx`'s ``model`` with its weights inside (what
    onnxruntime's quantiser reads)."""
    import onnx

    proto = onnx.load_from_string(model)
    for t in proto.graph.initializer:
        t.data_location = onnx.TensorProto.DEFAULT
        del t.external_data[:]
        t.raw_data = np.ascontiguousarray(weights[t.name]).tobytes()
    return proto


def _quantize(backbone: ResNetBackbone, images: torch.Tensor, path) -> None:
    """Write ``backbone`` as an int8 ONNX model to ``path``: onnxruntime's post-training static
    quantisation (``onnxruntime.quantization.quantize_static``: QDQ format, int8 weights per
    output channel, uint8 activations, min/max ranges from ``images``, the calibration crops)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    crops = images.float().contiguous().numpy()

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(range(len(crops)))

        def get_next(self):
            i = next(self.left, None)
            return None if i is None else {"x": crops[i:i + 1]}

    def advice(record: logging.LogRecord) -> bool:  # (its advice to pre-process, on the root logger: the graph
        return "pre-process" not in record.getMessage()  # is already folded and its shapes are all it needs)

    root = logging.getLogger()
    root.addFilter(advice)
    try:
        # the input picture's whole 0..1 as 0..255, not the crops' range (a brighter picture
        # would be clipped: 5.2 against 2.1 mm on the tests' full-size fast network)
        picture = {"x": [{"scale": np.array(1.0 / 255.0, np.float32), "zero_point": np.array(0, np.uint8)}]}
        quantize_static(_embedded(*resnet_onnx(backbone)), str(path), Crops(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        extra_options={"TensorQuantOverrides": picture})
    finally:
        root.removeFilter(advice)


# Long (about 60 lines): the cache file, its check and the calibration read as one story here.
def build_ort_int8_resnet(backbone: ResNetBackbone, image_size: Sequence[int], chunk: int | ChunkPlan = 4,
                          folder=None, threads: int | None = None) -> tuple[OrtResNet | None, float]:
    """``backbone`` as an int8 onnxruntime session (the ``onnxruntime-int8`` form): quantised by
    onnxruntime (:func:`_quantize`) on :func:`~wbcap.model.int8.calibration_images` of
    ``image_size`` (H, W), checked there against the float32 module-by-module backbone.

    Returns (the module, its error: max |difference| / max |reference| over the crops); None in
    place of the module when the error is above :data:`~wbcap.model.int8.INT8_TOLERANCE`. The
    quantised model is kept in ``folder`` (default ``<user cache>/onnxruntime_int8``) as
    ``<hash of the key>.onnx``, the key being the weights' hash (:func:`~wbcap.model.int8.weights_fingerprint`),
    the input size and the wbcap, torch and onnxruntime versions; its error and its mean
    |feature| on the first crop are in the model's metadata. Read back (onnxruntime loads it; it
    is not unpickled), it is run on that crop and used when it gives that mean (within
    :data:`~wbcap.model.int8.CHECK_TOLERANCE`), else quantised again with a warning. Quantising
    takes a few seconds per ResNet-50; reading back 0.1-0.2 s. The :data:`INT8_KEEP` most
    recent files are kept. Raises what onnx or onnxruntime raise when it cannot be built.
    """
    import hashlib
    import os
    import tempfile
    from pathlib import Path

    import onnxruntime as ort

    from wbcap import __version__
    from wbcap.model.fused import rel_error
    from wbcap.model.int8 import CHECK_TOLERANCE, INT8_TOLERANCE, calibration_images, weights_fingerprint
    from wbcap.paths import user_cache_dir

    folder = Path(folder) if folder is not None else user_cache_dir() / INT8_FOLDER
    h, w = (int(v) for v in image_size)
    key = (f"{weights_fingerprint(backbone)} {h}x{w} wbcap {__version__} torch {torch.__version__} "
           f"onnxruntime {ort.__version__}")
    path = folder / f"resnet{backbone.depth}-{hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()}.onnx"
    images = calibration_images((h, w))
    if path.is_file():
        try:
            net = OrtResNet(backbone, chunk, threads, model=path)
            meta = net._session.get_modelmeta().custom_metadata_map
            err, check = float(meta["wbcap.error"]), float(meta["wbcap.check"])
            if meta.get("wbcap.key") != key:
                raise ValueError("another key")
        except Exception as e:  # (a damaged or foreign file: quantised again)
            log.warning("ignoring the onnxruntime int8 model %s (%s); quantising again", path, str(e).splitlines()[0])
        else:
            if err > INT8_TOLERANCE:
                return None, err
            with torch.no_grad():
                again = float(net(images[:1]).abs().mean())
            if abs(again - check) <= CHECK_TOLERANCE * abs(check):
                os.utime(path)  # (the most recent are kept)
                return net, err
            log.warning("the onnxruntime int8 model %s gives other results than when it was written; quantising "
                        "again", path)
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        raw = Path(tmp) / "quantised.onnx"
        _quantize(backbone, images, raw)
        net = OrtResNet(backbone, chunk, threads, model=raw)
        with torch.no_grad():
            out = torch.cat([net(x[None]) for x in images])
            ref = torch.cat([backbone(x[None].float()) for x in images])
        err = rel_error(out, ref)
        proto = onnx.load(str(raw))
        for k, v in (("wbcap.key", key), ("wbcap.error", repr(err)), ("wbcap.check", repr(float(out[:1].abs().mean())))):
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        done = Path(tmp) / "done.onnx"
        onnx.save(proto, str(done))
        os.replace(done, path)  # (same folder: atomic)
    kept = sorted(folder.glob("resnet*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[INT8_KEEP:]:
        old.unlink(missing_ok=True)
    return (net if err <= INT8_TOLERANCE else None), err
