"""The "distortion" signal: decision-boundary distortion along the FGSM direction (Kim, Lee and
Lee, "Understanding catastrophic overfitting in single-step adversarial training", AAAI 2021).

For every probe image, the FGSM direction v = ε·sign(∇x L(x)) and the points x + t·v for t on a
grid of `steps` + 1 values from 0 to 1 (clipped to [0, 1]). The image has a *distorted interval*
when x + v, the FGSM example itself, is classified correctly while some x + t·v with t < 1 is
not: the model has learned to resist the maximal single-step perturbation but not the smaller
ones on the way to it, the signature Kim et al. found at catastrophic overfitting.
- `monitor_distortion_fraction`: the fraction of probe images with a distorted interval;
- `monitor_distortion_fgsm_acc`: the accuracy at t = 1 (under FGSM);
- `monitor_distortion_seconds`: its cost (one forward-backward and `steps` + 1 forwards per image).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from robdrop.attacks import clip_delta, input_gradient
from robdrop.training.monitor.signal import Signal


class BoundaryDistortion(Signal):
    """Fraction of probe images right at x + ε·sign(∇) but wrong at some x + t·ε·sign(∇), t < 1."""

    name = "distortion"
    defaults: ClassVar[dict[str, Any]] = {"steps": 10}

    def values(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """{'fraction': images with a distorted interval, 'fgsm_acc': accuracy at t = 1}."""
        distorted = fgsm_right = 0
        for x, y in self.batches(device):
            direction = self.eps * input_gradient(model, x, torch.zeros_like(x), y).sign()
            with torch.no_grad():
                right = torch.stack(
                    [
                        model(x + clip_delta(t * direction, x, self.eps)).argmax(1) == y
                        for t in torch.linspace(0, 1, self.options["steps"] + 1).tolist()
                    ]
                )
            wrong_before = (~right[:-1]).any(0)
            distorted += int((right[-1] & wrong_before).sum())
            fgsm_right += int(right[-1].sum())
        return {"fraction": distorted / len(self.y), "fgsm_acc": fgsm_right / len(self.y)}
