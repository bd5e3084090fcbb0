"""The perturbation site: a point on the input of a residual branch where δ_i can be added.

A site is the identity until a method arms it. `capture=True` records the branch input as a
graph node of its own, so `autograd.grad(loss, site.captured)` is ∂L/∂(branch input) there
(APART's g_i); `delta` adds a given
perturbation (which may itself carry grad, e.g. α_i · sign(g_i) with a learnable α_i).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class PerturbationSite(nn.Module):
    """Adds δ to the tensor passing through it; identity unless armed."""

    def __init__(self) -> None:
        super().__init__()
        self.delta: torch.Tensor | None = None
        self.capture = False
        self.captured: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.capture:
            # an alias of x of its own in the graph: its gradient is that of the branch only
            # (a shortcut reading x too is not included), without allocating a zero δ
            x = self.captured = x.view_as(x)
        if self.delta is not None:
            x = x + self.delta.to(x.dtype)
        return x

    def reset(self) -> None:
        """Back to the identity."""
        self.delta, self.capture, self.captured = None, False, None

    def extra_repr(self) -> str:
        return "armed" if self.delta is not None or self.capture else "identity"


def sites(model: nn.Module) -> list[PerturbationSite]:
    """The model's perturbation sites in forward order (one per residual block)."""
    return [m for m in model.modules() if isinstance(m, PerturbationSite)]


@contextmanager
def capturing(model: nn.Module) -> Iterator[list[PerturbationSite]]:
    """Within the block every site records a zero δ whose gradient is the branch-input gradient."""
    found = sites(model)
    for s in found:
        s.reset()
        s.capture = True
    try:
        yield found
    finally:
        for s in found:
            s.reset()


@contextmanager
def armed(model: nn.Module, deltas: list[torch.Tensor | None]) -> Iterator[None]:
    """Within the block, site i adds deltas[i] (None leaves it the identity)."""
    found = sites(model)
    if len(deltas) != len(found):
        raise ValueError(f"{len(deltas)} perturbations for {len(found)} sites")
    for s, d in zip(found, deltas, strict=True):
        s.reset()
        s.delta = d
    try:
        yield
    finally:
        for s in found:
            s.reset()
