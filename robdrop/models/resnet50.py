"""torchvision's ResNet-50 with a perturbation site on every bottleneck's residual branch.

The site is a forward pre-hook on each block's first convolution: the branch input gets δ, the
downsample shortcut (which reads the block input directly) does not.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet50 as tv_resnet50

from robdrop.models.sites import PerturbationSite


def _add_site(block: nn.Module) -> None:
    block.site = PerturbationSite()
    block.conv1.register_forward_pre_hook(lambda _conv, args: (block.site(args[0]),))


def resnet50(num_classes: int, width: int = 64) -> nn.Module:
    """ResNet-50 (He et al. 2016a), randomly initialised; `width` is the base width (64)."""
    model = tv_resnet50(weights=None, num_classes=num_classes, width_per_group=width)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            _add_site(block)
    return model
