"""ResNet feature extractors with torchvision-compatible parameter names (Hand4Whole backbones).

Upstream Hand4Whole builds its body and hand backbones (ResNet-50) and face backbone (ResNet-18)
from ``torchvision.models.resnet.BasicBlock`` / ``Bottleneck``. We write the blocks here because
torchvision cannot be imported in our supported environment (for the pinned ``torch==2.13.0`` CPU
build the only torchvision wheel is a CUDA build). The module tree reproduces torchvision's
ResNet v1.5 exactly, so state dicts load either way without renaming:

* stem: ``conv1`` (7x7, stride 2, padding 3, no bias), ``bn1``, ``relu``, ``maxpool`` (3x3, stride 2,
  padding 1);
* ``layer1`` .. ``layer4``: ``nn.Sequential`` of blocks; ``BasicBlock`` = ``conv1`` 3x3 (stride),
  ``bn1``, ``conv2`` 3x3, ``bn2``; ``Bottleneck`` = ``conv1`` 1x1, ``bn1``, ``conv2`` 3x3 (stride,
  the v1.5 placement), ``bn2``, ``conv3`` 1x1 (x4 channels), ``bn3``; the first block of a stage
  has ``downsample`` = ``Sequential(conv 1x1 stride no bias, BatchNorm2d)`` (``downsample.0`` /
  ``downsample.1``) when the stride or channel count changes;
* no ``avgpool`` / ``fc``: ``forward`` returns the ``layer4`` feature map.

Input is ``(B, 3, H, W)`` float32 RGB in 0..1 (Hand4Whole does not normalise by ImageNet mean/std);
output is ``(B, feat_dim, ceil(H / 32), ceil(W / 32))`` (exactly ``H / 32`` for multiples of 32).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["RESNET_SPECS", "BasicBlock", "Bottleneck", "ResNetBackbone"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity/projection shortcut (ResNet-18/34). ``(B, C_in, H, W) -> (B, planes, H/s, W/s)``."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, v1.5) -> 1x1 (x4) with shortcut (ResNet-50/101/152).

    ``(B, C_in, H, W) -> (B, 4 * planes, H/s, W/s)``.
    """

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNET_SPECS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
"""depth -> (block type, blocks per stage)."""


class ResNetBackbone(nn.Module):
    """ResNet without avgpool/fc, torchvision parameter names (upstream ``ResNetBackbone``).

    Args:
        depth: 18, 34, 50, 101 or 152.
        width: channels of the stem and the first stage (64 in ResNet, torchvision and Hand4Whole;
            the stages have ``width``, 2, 4 and 8 times it). A narrower network
            (:attr:`wbcap.config.ModelConfig.backbone_width`) is for quick pipeline checks and
            tests: no released or ImageNet weights fit it.

    Attributes:
        feat_dim: channels of the output feature map (``8 * width``: 512 for 18/34, ``32 * width``:
            2048 otherwise).
    """

    def __init__(self, depth: int, width: int = 64) -> None:
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_SPECS)}")
        block, layers = RESNET_SPECS[depth]
        self.depth = depth
        self.width = width
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
        self.feat_dim: int = 8 * width * block.expansion
        if self.conv1.weight.device.type != "meta":
            # Built on the meta device only to receive a checkpoint's tensors (load_network): a
            # random init there computes nothing but pulls in torch._dynamo (~2.5 s at start-up).
            self.init_weights_like_upstream()

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        mods.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*mods)

    def init_weights_like_upstream(self) -> None:
        """Random init as upstream ``ResNetBackbone.__init__``: conv weights N(0, 0.001), BN weight 1, bias 0.

        (Upstream then loads ImageNet weights for training; inference loads the released checkpoint.)
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, mean=0.0, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1.0)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` float RGB in 0..1 -> ``(B, feat_dim, H/32, W/32)`` layer4 features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)
