"""Checkpoints with the official Hand4Whole layout, filled with deterministic values.

The released ``snapshot_6.pth.tar`` cannot be redistributed, so tests build a file with exactly
its key names and shapes (taken from our network, whose names a test compares with the shared
reference list) and deterministic pseudo-random values, saved the way upstream saves it
(``{'network': {'module.' + name: tensor}, 'epoch', 'optimizer'}``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import torch

from wbcap.config import ModelConfig
from wbcap.model.checkpoint import save_torch_file
from wbcap.model.hand4whole import Hand4Whole

# 6D of a rotation by pi about x (SMPL-X's y-up body seen by the y-down camera stands upright).
_UPRIGHT_6D = (1.0, 0.0, 0.0, -1.0, 0.0, 0.0)
_IDENTITY_6D = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def network_key_shapes(config: ModelConfig = ModelConfig()) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(name, shape, dtype) of every tensor of the network's state_dict, in order (no prefix)."""
    with torch.device("meta"):
        net = Hand4Whole(config)
    return [(k, tuple(v.shape), v.dtype) for k, v in net.state_dict().items()]


def make_state_dict(
    keys: Iterable[tuple[str, tuple[int, ...], torch.dtype]], seed: int = 0
) -> OrderedDict[str, torch.Tensor]:
    """Deterministic values for the given (name, shape, dtype) list.

    Weights ~ N(0, 1/fan_in) (He-like, so activations stay finite through the ResNets),
    biases ~ N(0, 0.01), BatchNorm running_var in [0.5, 1.5], running_mean ~ N(0, 0.01),
    BN weight in [0.3, 0.6], num_batches_tracked = 0.
    """
    g = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, shape, dtype in keys:
        if dtype == torch.int64:
            out[name] = torch.zeros(shape, dtype=torch.int64)
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            t = torch.rand(shape, generator=g) + 0.5
        elif leaf == "running_mean":
            t = torch.randn(shape, generator=g) * 0.01
        elif leaf == "weight" and len(shape) == 1:
            t = torch.rand(shape, generator=g) * 0.3 + 0.3
        elif leaf == "bias":
            t = torch.randn(shape, generator=g) * 0.01
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            if "deconv" in name:  # ConvTranspose2d weights are (in, out, k, k)
                fan_in = shape[0] * shape[2] * shape[3] // 4
            t = torch.randn(shape, generator=g) * math.sqrt(1.0 / max(fan_in, 1))
        out[name] = t.to(dtype)
    return out


def upright_heads(sd: OrderedDict[str, torch.Tensor], prefix: str = "") -> None:
    """Make the output heads predict a standing, neutral body about 2 body-heights from the crop
    camera: pose heads -> constant 6D (root upright, joints at rest), shape/expression -> 0,
    camera depth ~ 42 m (a 1.7 m body fills ~80% of the 256 px body input at focal 5000).

    Used by ``wbcap demo`` and tests that want a visible, in-frame mesh from untrained weights.
    """

    def const(head: str, values: torch.Tensor) -> None:
        w, b = sd[f"{prefix}{head}.weight"], sd[f"{prefix}{head}.bias"]
        sd[f"{prefix}{head}.weight"] = torch.zeros_like(w)
        sd[f"{prefix}{head}.bias"] = values.to(b.dtype).reshape(b.shape)

    const("body_rotation_net.root_pose_out.0", torch.tensor(_UPRIGHT_6D))
    const("body_rotation_net.body_pose_out.0", torch.tensor(_IDENTITY_6D).repeat(21))
    const("hand_rotation_net.hand_pose_out.0", torch.tensor(_IDENTITY_6D).repeat(15))
    const("face_regressor.jaw_pose_out.0", torch.tensor(_IDENTITY_6D))
    const("body_rotation_net.shape_out.0", torch.zeros(sd[f"{prefix}body_rotation_net.shape_out.0.bias"].shape))
    const("face_regressor.expr_out.0", torch.zeros(sd[f"{prefix}face_regressor.expr_out.0.bias"].shape))
    k = 5000.0 * 2.5 / math.sqrt(256 * 192)
    gamma = 42.0 / k
    const("body_rotation_net.cam_out.0", torch.tensor([0.0, 0.0, math.log(gamma / (1 - gamma))]))


def official_checkpoint_dict(
    config: ModelConfig = ModelConfig(),
    seed: int = 0,
    keys: Iterable[tuple[str, tuple[int, ...], torch.dtype]] | None = None,
    upright: bool = False,
) -> dict:
    """The dict upstream's ``Trainer.save_model`` writes, with deterministic tensors.

    ``keys`` (no prefix) defaults to our network's; pass the shared reference list to build the
    file from the released checkpoint's own names.
    """
    sd = make_state_dict(keys if keys is not None else network_key_shapes(config), seed)
    if upright:
        upright_heads(sd)
    network = OrderedDict(("module." + k, v) for k, v in sd.items())
    return {"network": network, "epoch": 6, "optimizer": {"state": {}, "param_groups": []}}


def write_official_checkpoint(path: str | Path, **kwargs) -> Path:
    """Write :func:`official_checkpoint_dict` to ``path`` (atomically). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_torch_file(official_checkpoint_dict(**kwargs), path)


def random_network(config: ModelConfig = ModelConfig(), seed: int = 0, upright: bool = False) -> Hand4Whole:
    """A Hand4Whole with :func:`make_state_dict` values loaded (eval mode)."""
    with torch.device("meta"):
        net = Hand4Whole(config)
    sd = make_state_dict(network_key_shapes(config), seed)
    if upright:
        upright_heads(sd)
    net.load_state_dict(sd, strict=True, assign=True)
    return net.eval()
