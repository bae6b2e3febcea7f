"""ResNet backbones: checkpoint-compatible names, torchvision v1.5 wiring, batching."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from wbcap.model.resnet import ResNetBackbone


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic non-trivial weights and BN statistics, activations of order 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                # keep the residual branches small so deep nets stay O(1)
                last = name.endswith(("bn3", "bn2")) and "layer" in name
                m.weight.copy_(torch.rand(c, generator=g) * (0.3 if last else 1.0) + 0.2)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return model.eval()


def _reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, bottleneck: bool) -> torch.Tensor:
    """Functional ResNet v1.5 (stride on the 3x3 conv) read straight from a state dict."""

    def bn(t: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5
        )

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage in range(1, 5):
        i = 0
        while f"layer{stage}.{i}.conv1.weight" in sd:
            p = f"layer{stage}.{i}."
            stride = 2 if (stage > 1 and i == 0) else 1
            if bottleneck:
                out = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"]), p + "bn1"))
                out = F.relu(bn(F.conv2d(out, sd[p + "conv2.weight"], stride=stride, padding=1), p + "bn2"))
                out = bn(F.conv2d(out, sd[p + "conv3.weight"]), p + "bn3")
            else:
                out = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"], stride=stride, padding=1), p + "bn1"))
                out = bn(F.conv2d(out, sd[p + "conv2.weight"], padding=1), p + "bn2")
            if p + "downsample.0.weight" in sd:
                short = bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), p + "downsample.1")
            else:
                short = x
            x = F.relu(out + short)
            i += 1
    return x


@pytest.fixture(scope="module")
def ckpt_keys(shared_dir) -> list[list]:
    path = shared_dir / "reference" / "hand4whole_checkpoint_keys.json"
    if not path.is_file():
        pytest.skip(f"shared reference not found: {path}")
    return json.loads(path.read_text())["keys"]


def _ours(model: nn.Module) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]


def _theirs(keys: list[list], prefix: str) -> list[tuple[str, list[int], str]]:
    return [(k[len(prefix) :], list(s), d) for k, s, d in keys if k.startswith(prefix)]


@pytest.mark.parametrize(
    "depth,prefix",
    [(50, "module.backbone."), (50, "module.hand_roi_net.backbone."), (18, "module.face_roi_net.backbone.")],
)
def test_state_dict_matches_checkpoint(ckpt_keys, depth, prefix):
    theirs = _theirs(ckpt_keys, prefix)
    assert len(theirs) > 100
    assert _ours(ResNetBackbone(depth)) == theirs  # names, order, shapes, dtypes (incl. num_batches_tracked)


def test_loads_checkpoint_shaped_tensors_strictly(ckpt_keys):
    g = torch.Generator().manual_seed(1)
    sd = {}
    for name, shape, dtype in _theirs(ckpt_keys, "module.face_roi_net.backbone."):
        sd[name] = torch.zeros(shape, dtype=torch.int64) if dtype == "torch.int64" else torch.randn(shape, generator=g)
    model = ResNetBackbone(18)
    model.load_state_dict(sd, strict=True)
    torch.testing.assert_close(model.layer3[0].downsample[0].weight, sd["layer3.0.downsample.0.weight"])


@pytest.mark.parametrize("depth,feat_dim", [(18, 512), (34, 512), (50, 2048), (101, 2048), (152, 2048)])
def test_feat_dim_and_block_counts(depth, feat_dim):
    with torch.device("meta"):  # structure only: no weights drawn
        model = ResNetBackbone(depth)
    assert model.feat_dim == feat_dim
    n_blocks = {18: 8, 34: 16, 50: 16, 101: 33, 152: 50}[depth]
    assert sum(len(getattr(model, f"layer{i}")) for i in range(1, 5)) == n_blocks
    first = model.layer2[0]
    if depth >= 50:  # v1.5 bottleneck: the stride sits on the 3x3 conv2, not on the 1x1 conv1
        assert first.conv2.stride == (2, 2) and first.conv1.stride == (1, 1) and first.conv3.stride == (1, 1)
    else:  # basic block: on the first 3x3
        assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert model.layer2[0].downsample[0].stride == (2, 2)


@pytest.mark.parametrize("depth,width,feat_dim", [(18, 16, 128), (50, 16, 512), (34, 8, 64)])
def test_a_narrow_resnet_has_resnets_tensor_names_and_its_widths_channels(depth, width, feat_dim):
    with torch.device("meta"):
        narrow, wide = ResNetBackbone(depth, width), ResNetBackbone(depth)
    assert narrow.feat_dim == feat_dim and narrow.conv1.out_channels == width
    assert narrow.layer4[-1].bn2.num_features * (4 if depth >= 50 else 1) == feat_dim
    ours, theirs = narrow.state_dict(), wide.state_dict()
    assert list(ours) == list(theirs)
    for k, t in theirs.items():  # every convolution's channels in and out scaled by width / 64 (the stem's in: RGB)
        if t.dim() == 4:
            c_out, c_in = t.shape[0] * width // 64, 3 if k == "conv1.weight" else t.shape[1] * width // 64
            assert ours[k].shape == (c_out, c_in, *t.shape[2:]), k


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        ResNetBackbone(42)


def test_upstream_init():
    torch.manual_seed(0)
    model = ResNetBackbone(18)
    w = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.std().item() - 0.001) < 5e-5 and abs(w.mean().item()) < 1e-5
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("depth,hw,out_shape", [(50, (256, 192), (2048, 8, 6)), (18, (192, 192), (512, 6, 6))])
def test_output_shape_and_batching(depth, hw, out_shape):
    model = _randomize(ResNetBackbone(depth))
    x = torch.rand(3, 3, *hw, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        batch = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert batch.shape == (3, *out_shape) and batch.dtype == torch.float32
    assert 1e-2 < batch.abs().mean().item() < 1e2  # non-trivial features
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("depth,width", [(18, 64), (50, 64), (18, 16), (50, 8)])
def test_matches_functional_reference(depth, width):
    """Also the narrow ResNets of ``backbone_width`` (the stages width, 2, 4 and 8 times it)."""
    model = _randomize(ResNetBackbone(depth, width), seed=depth)
    x = torch.rand(2, 3, 70, 54, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x)
        ref = _reference_forward(model.state_dict(), x, bottleneck=depth >= 50)
    assert out.shape == (2, model.feat_dim, 3, 2)  # ceil(70 / 32), ceil(54 / 32)
    assert out.abs().mean() > 1e-2
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("depth", [18, 50])
def test_matches_torchvision(depth):
    tvm = pytest.importorskip("torchvision.models")
    tv = _randomize(getattr(tvm, f"resnet{depth}")(weights=None), seed=5)
    sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    ours = ResNetBackbone(depth)
    ours.load_state_dict(sd, strict=True)
    ours.eval()
    x = torch.rand(2, 3, 96, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        t = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        t = tv.layer4(tv.layer3(tv.layer2(tv.layer1(t))))
        torch.testing.assert_close(ours(x), t, atol=1e-5, rtol=1e-5)
