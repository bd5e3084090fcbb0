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
    renamed_options: ClassVar[dict[str, str]] = {
        "k": "noise_in_eps",
        "step": "step_in_eps",
        "clip": "clip_in_eps",
    }
    defaults: ClassVar[dict[str, Any]] = {
        "noise_in_eps": 2.0,  # k: noise magnitude in units of ε
        "step_in_eps": 1.0,  # α in units of ε
        "clip_in_eps": None,  # project δ to this many ε (None: no projection, as published)
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
        k, step, clip = opt["noise_in_eps"], opt["step_in_eps"], opt["clip_in_eps"]
        if k < 0 or step <= 0 or (clip is not None and clip <= 0):
            raise ValueError("N-FGSM needs k ≥ 0, step > 0 and clip > 0 (or None)")

    @property
    def bound(self) -> float:
        """|δ|∞ reaches (k + step)·ε without the projection, clip·ε with it."""
        opt, eps = self.options, self.ctx.eps
        if opt["clip_in_eps"] is not None:
            return opt["clip_in_eps"] * eps
        return (opt["noise_in_eps"] + opt["step_in_eps"]) * eps

    def perturb(self, batch: Batch) -> torch.Tensor:
        eps, opt = self.ctx.eps, self.options
        x = batch.x.detach()
        k = opt["noise_in_eps"]
        noise = torch.empty_like(x).uniform_(-k * eps, k * eps)
        noise = (x + noise).clamp(0, 1) - x
        with model_mode(self.model, "train"):
            grad = input_gradient(self.model, x, noise, batch.y, amp=self.ctx.amp)
        delta = noise + opt["step_in_eps"] * eps * grad.sign()
        clip = opt["clip_in_eps"]
        if clip is not None:
            delta = delta.clamp(-clip * eps, clip * eps)
        return ((x + delta).clamp(0, 1) - x).detach()
