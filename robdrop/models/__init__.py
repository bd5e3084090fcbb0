"""Models take inputs in [0, 1] and normalise inside, so any attack library can use them as is."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from robdrop.models.preact_resnet import preact_resnet18, preact_resnet20, wide_resnet34
from robdrop.models.resnet50 import resnet50
from robdrop.models.sites import PerturbationSite, armed, capturing, sites

ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    # name: (builder, default width)
    "prn18": (preact_resnet18, 64),
    "prn20": (preact_resnet20, 16),
    "wrn34": (wide_resnet34, 10),
    "resnet50": (resnet50, 64),
}


class Normalize(nn.Module):
    """(x - mean) / std per channel, with the statistics stored as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Sequential):
    """Normalize followed by a network: the object every attack and method works on."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net


def build_model(
    arch: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    width: int | None = None,
) -> Classifier:
    """An architecture by name (prn18, prn20, wrn34, resnet50) wrapped with its normalisation."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    builder, default_width = ARCHITECTURES[arch]
    return Classifier(builder(num_classes, width or default_width), mean, std)


__all__ = [
    "ARCHITECTURES",
    "Classifier",
    "Normalize",
    "PerturbationSite",
    "armed",
    "build_model",
    "capturing",
    "sites",
]
