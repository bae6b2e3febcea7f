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


def make_session(model: bytes, weights: Mapping[str, np.ndarray], threads: int):
    """An onnxruntime CPU session of ``model`` with its external initializers ``weights`` (by
    name; copied by onnxruntime, they may be freed afterwards) on ``threads`` intra-op threads
    that sleep when idle (``allow_spinning`` 0: spinning threads would take the cores from
    torch's, which run the rest of the network between calls), all graph optimisations on, and
    no memory arena (an arena keeps each session's largest activations for the life of the
    process: +114 MB for the hand ResNet-50 after calls of up to 7 images, in each of the three
    sessions; per-call times with and without it were within this machine's noise)."""
    from wbcap.onnx_runtime import import_onnxruntime

    ort = import_onnxruntime()

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
    Raises RuntimeError (from onnxruntime) when a call fails.
    """

    def __init__(self, backbone: ResNetBackbone, chunk: int | ChunkPlan, threads: int | None = None) -> None:
        super().__init__()
        self.chunks = chunk_plan(chunk)
        self.chunk = self.chunks.pack
        self.feat_dim = backbone.feat_dim
        self.depth = backbone.depth
        self.threads = int(threads or torch.get_num_threads())
        self._session = make_session(*resnet_onnx(backbone), self.threads)

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
