"""Tiny YOLOX-format ONNX graphs for tests (needs the ``onnx`` package, the ``test`` extra).

The graph maps ``images`` ``(1, 3, S, S)`` to ``output`` ``(1, N, 85)`` (``N`` anchors of strides
8, 16, 32) as an affine function of the per-channel means of the input:
``output = (GlobalAveragePool(images) @ W + b).reshape(1, N, 85)``. Rows are set per anchor;
a row can be *gated by blue*: its objectness is multiplied by ``mean(channel 0) / 255``, which
is 1 for a pure-blue image fed as BGR 0-255, 0 when the image is fed as RGB, and ~1/255 when it is
scaled to 0-1, so a test can see whether the detector feeds the network correctly.
Only operators both onnxruntime and ``cv2.dnn`` run (GlobalAveragePool, Reshape, MatMul, Add, and
with ``parameters`` Slice).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from wbcap.detect.yolox import NUM_OUTPUTS, num_anchors

#: The values in the release's ``yolox_nano.onnx`` (BatchNorm folded): a tiny graph padded to
#: about this many passes `wbcap weights import yolox-nano`'s parameter-count check.
NANO_PARAMETERS = 904_481


def write_tiny_yolox(
    path: str | os.PathLike[str],
    rows: Mapping[int, Sequence[float]],
    size: int = 64,
    blue_gated: Iterable[int] = (),
    opset: int = 13,
    parameters: int | None = None,
) -> Path:
    """Write a constant-ish YOLOX-format ONNX model.

    Args:
        path: output ``.onnx`` file.
        rows: anchor index -> its 85 output values (``x, y, w, h`` raw or decoded, objectness,
            80 class scores, all as the graph should output them); other anchors are all zero.
        size: input side ``S`` (multiple of 32).
        blue_gated: anchors whose objectness is multiplied by ``mean(input channel 0) / 255``.
        opset: ONNX opset of the graph.
        parameters: about how many values its weights hold (within 3 of it; at least the
            unpadded graph's ``4 N 85``): ``W`` gets zero columns that a Slice drops, so the
            outputs are the same (:data:`NANO_PARAMETERS`: imported as yolox-nano, its count checks out).

    Returns:
        ``path`` as a Path.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = num_anchors(size)
    bias = np.zeros((n, NUM_OUTPUTS), np.float32)
    weight = np.zeros((3, n, NUM_OUTPUTS), np.float32)
    for k, values in rows.items():
        bias[k] = np.asarray(values, np.float32)
    for k in blue_gated:
        weight[0, k, 4] = bias[k, 4] / 255.0
        bias[k, 4] = 0.0
    width = n * NUM_OUTPUTS
    pad = 0 if parameters is None else max(0, (int(parameters) - 4 * width - 8) // 3)
    w = weight.reshape(3, -1)
    inits = [
        numpy_helper.from_array(np.concatenate([w, np.zeros((3, pad), np.float32)], axis=1) if pad else w, "W"),
        numpy_helper.from_array(bias.reshape(1, -1), "B"),
        numpy_helper.from_array(np.array([1, 3], np.int64), "shape_in"),
        numpy_helper.from_array(np.array([1, n, NUM_OUTPUTS], np.int64), "shape_out"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Reshape", ["pooled", "shape_in"], ["means"]),
        helper.make_node("MatMul", ["means", "W"], ["wide" if pad else "lin"]),
        helper.make_node("Add", ["lin", "B"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape_out"], ["output"]),
    ]
    if pad:  # (the padding's columns dropped again)
        inits += [numpy_helper.from_array(np.array([v], np.int64), name)
                  for name, v in (("starts", 0), ("ends", width), ("axes", 1))]
        nodes.insert(3, helper.make_node("Slice", ["wide", "starts", "ends", "axes"], ["lin"]))
    graph = helper.make_graph(
        nodes, "tiny_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n, NUM_OUTPUTS])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
