"""Pre-activation residual networks: PreAct ResNet-18/20 and WideResNet-34-10 share one block.

Block: out = shortcut + conv2(relu(bn2(conv1(site(relu(bn1(x))))))), shortcut = x, or a 1×1
conv of relu(bn1(x)) when the shape changes. The site sits at the input of the branch's first
convolution, after BN+ReLU, as in the APART authors' code; the shortcut never sees δ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.models.sites import PerturbationSite


class PreActBlock(nn.Module):
    """A pre-activation basic block with a perturbation site on its residual branch."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.site = PerturbationSite()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(self.site(out))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv, stages of PreActBlocks, final BN+ReLU, global average pool, linear head."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        strides: Sequence[int],
        stem: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        layers, planes = [], stem
        for n, width, stride in zip(blocks, widths, strides, strict=True):
            for i in range(n):
                layers.append(PreActBlock(planes, width, stride if i == 0 else 1))
                planes = width
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def preact_resnet18(num_classes: int, width: int = 64) -> PreActResNet:
    """PreAct ResNet-18 (He et al. 2016b): 4 stages × 2 blocks, widths w, 2w, 4w, 8w."""
    return PreActResNet(
        [2, 2, 2, 2], [width * k for k in (1, 2, 4, 8)], [1, 2, 2, 2], width, num_classes
    )


def preact_resnet20(num_classes: int, width: int = 16) -> PreActResNet:
    """PreAct ResNet-20, the CIFAR layout: 3 stages × 3 blocks, widths w, 2w, 4w."""
    return PreActResNet([3, 3, 3], [width * k for k in (1, 2, 4)], [1, 2, 2], width, num_classes)


def wide_resnet34(num_classes: int, width: int = 10) -> PreActResNet:
    """WideResNet-34-k (Zagoruyko & Komodakis 2016; `width` is k): 3 stages × 5 blocks."""
    return PreActResNet([5, 5, 5], [16 * width * k for k in (1, 2, 4)], [1, 2, 2], 16, num_classes)
