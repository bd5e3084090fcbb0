"""The "align" signal: gradient alignment, GradAlign's measure of local linearity
(Andriushchenko & Flammarion, NeurIPS 2020).

For every probe image, the cosine between the input gradients of the loss at x and at x + η,
η ~ U(−ε, ε) (clipped so that x + η stays in [0, 1], as the `gradalign` method draws it), over the
images where both gradients are non-zero. Near 1 the loss is locally linear and a single-step
attack finds what a multi-step one would; GradAlign reports about 0.9 before catastrophic
overfitting and about 0.1 after it.
- `monitor_align_cos`: the mean cosine over the probe;
- `monitor_align_seconds`: its cost (two forward-backward passes per image).
"""

from __future__ import annotations

import torch
from torch import nn

from robdrop.attacks import input_gradient, uniform_start
from robdrop.methods.gradalign import alignment
from robdrop.training.monitor.signal import Signal


class GradientAlignment(Signal):
    """Mean cos(∇x L(x), ∇x L(x + η)) over the probe, η uniform in the ε-ball."""

    name = "align"

    def values(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """{'cos': the mean cosine over the images with non-zero gradients (nan if none)}."""
        total, count = 0.0, 0
        for xb, yb in self.batches(device):
            g1 = input_gradient(model, xb, torch.zeros_like(xb), yb)
            g2 = input_gradient(model, xb, uniform_start(xb, self.eps), yb)
            kept = int(((g1.flatten(1).norm(dim=1) > 0) & (g2.flatten(1).norm(dim=1) > 0)).sum())
            total += (1 - alignment(g1, g2).item()) * kept
            count += kept
        return {"cos": total / count if count else float("nan")}
