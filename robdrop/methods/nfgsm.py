"""N-FGSM (de Jorge et al., NeurIPS 2022): FGSM from strong noise, without projecting back.

δ = η + α·sign(∇x L(x + η)), η ~ U(−kε, kε): with k = 2 and α = ε (the published defaults),
|δ|∞ reaches 3ε. δ is not clipped to the ε-ball (`clip` None); x + δ stays in [0, 1].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from robdrop.attacks import input_gradient, model_mode
from robdrop.data import Batch
from robdrop.methods.base import CYCLED, Method, MethodContext, Recipe


class NFGSM(Method):
    """N-FGSM: uniform noise of k·ε, one signed step of α = step·ε, no projection to the ε-ball."""

    single_step = True
    name = "nfgsm"
    recipe = Recipe(5e-4, "pdejorge/N-FGSM train.py", momentum_at_peak=CYCLED)
    defaults: ClassVar[dict[str, Any]] = {
        "k": 2.0,  # noise magnitude in units of ε
        "step": 1.0,  # α in units of ε
        "clip": None,  # project δ to clip·ε (None: no projection, the published default)
    }

    def __init__(
        self,
        model: torch.nn.Module,
        ctx: MethodContext,
        number: int | None = None,
        *,
        learner: torch.nn.Module | None = None,
    ) -> None:
        super().__init__(model, ctx, number, learner=learner)
        opt = self.options
        if opt["k"] < 0 or opt["step"] <= 0 or (opt["clip"] is not None and opt["clip"] <= 0):
            raise ValueError("N-FGSM needs k ≥ 0, step > 0 and clip > 0 (or None)")

    def perturb(self, batch: Batch) -> torch.Tensor:
        eps, opt = self.ctx.eps, self.options
        x = batch.x.detach()
        noise = torch.empty_like(x).uniform_(-opt["k"] * eps, opt["k"] * eps)
        noise = (x + noise).clamp(0, 1) - x
        with model_mode(self.model, "train"):
            grad = input_gradient(self.model, x, noise, batch.y, amp=self.ctx.amp)
        delta = noise + opt["step"] * eps * grad.sign()
        if opt["clip"] is not None:
            delta = delta.clamp(-opt["clip"] * eps, opt["clip"] * eps)
        return ((x + delta).clamp(0, 1) - x).detach()
