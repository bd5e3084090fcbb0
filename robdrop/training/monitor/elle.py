"""The "elle" signal: ELLE's local-linearity error (Abad Rocamora, Liu, Chrysos, Olmos, Cevher,
"Efficient local linearity regularization to overcome catastrophic overfitting", ICLR 2024).

For every probe image and each of `draws` triplets: x_a, x_b uniform in the ε-ball around x
(clipped to [0, 1]), α ~ U(0, 1) and x_c = α·x_a + (1 − α)·x_b, the squared error of the loss's
linear interpolation, |L(x_c) − (α·L(x_a) + (1 − α)·L(x_b))|². It is zero where the loss is
linear in the ball, grows with its curvature, and needs forward passes only (3 per draw).
- `monitor_elle_error`: the mean squared error over images and draws;
- `monitor_elle_seconds`: its cost.
The authors' code draws x_a and x_b without clipping to the image range; here every point stays
an image, as everywhere in robdrop (a convex combination of images in the ball is one too).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks import uniform_start
from robdrop.training.monitor.signal import Signal


class LocalLinearity(Signal):
    """Mean |L(x_c) − α·L(x_a) − (1 − α)·L(x_b)|² over the probe and `draws` triplets each."""

    name = "elle"
    defaults: ClassVar[dict[str, Any]] = {"draws": 4, "loss": F.cross_entropy}

    def values(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """{'error': the mean squared linear-interpolation error of the loss}."""
        total, draws, loss = 0.0, self.options["draws"], self.options["loss"]
        with torch.no_grad():
            for x, y in self.batches(device):
                for _ in range(draws):
                    xa, xb = x + uniform_start(x, self.eps), x + uniform_start(x, self.eps)
                    alpha = torch.rand(len(y), 1, 1, 1, device=device)
                    xc = alpha * xa + (1 - alpha) * xb
                    la, lb, lc = (loss(model(p), y, reduction="none") for p in (xa, xb, xc))
                    a = alpha.flatten()
                    total += ((lc - (a * la + (1 - a) * lb)) ** 2).sum().item()
        return {"error": total / (len(self.y) * draws)}
