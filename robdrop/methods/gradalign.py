"""GradAlign (Andriushchenko & Flammarion, NeurIPS 2020): FGSM plus a gradient-alignment term.

loss = CE(x + δ_FGSM) + λ·(1 − cos(∇x L(x + δ_0), ∇x L(x + η))), η ~ U(−ε, ε), where δ_0 is
FGSM's start. As in the authors' train.py, the first gradient is the one FGSM already computed
(a constant), the second is taken with create_graph so the term's gradient reaches θ (a double
backward), and examples with a zero gradient are left out of the mean. The published CIFAR-10
command starts FGSM from zero (`start` = "zero"; "random" for the FGSM-RS variant), steps
1.25 ε (clipped to the ε-ball) and sets λ per ε as 0.2·(4/3)^(ε·255 − 8) (0.2 at 8/255, 0.356
at 10/255, 0.036 at 2/255); `lam` overrides it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F

from robdrop.attacks import clip_delta, input_gradient, model_mode, uniform_start
from robdrop.attacks.base import AMP_LOSS_SCALE, autocast
from robdrop.data import Batch
from robdrop.methods.base import Method, MethodContext, Recipe, StepResult


def published_lambda(eps: float) -> float:
    """The authors' λ for ε (image units) on CIFAR-10: 0.2 at 8/255, × 4/3 per 1/255 above."""
    return 0.2 * (4 / 3) ** (eps * 255 - 8)


def alignment(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """1 − mean cosine between per-example gradients, over examples where both are non-zero
    (0 when there are none), computed on the device without a host synchronisation."""
    g1, g2 = g1.flatten(1), g2.flatten(1)
    keep = ((g1.norm(dim=1) > 0) & (g2.norm(dim=1) > 0)).float()
    misalignment = 1 - F.cosine_similarity(g1, g2, dim=1)
    return (misalignment * keep).sum() / keep.sum().clamp(min=1)


# FGSM's start: zero (the published command) or uniform noise in the ε-ball (FGSM-RS)
Start = Literal["zero", "random"]
STARTS: tuple[str, ...] = get_args(Start)


class GradAlign(Method):
    """FGSM with GradAlign's regulariser (one extra forward and a double backward per batch)."""

    single_step = True
    name = "gradalign"
    # the published CIFAR-10 command: lr_max 0.3 peaking at 2/5 of training, constant momentum
    recipe = Recipe(
        5e-4,
        "tml-epfl/understanding-fast-adv-training train.py, README command",
        lr_max=0.3,
        lr_peak=0.4,
    )
    renamed_options: ClassVar[dict[str, str]] = {"step": "step_in_eps"}
    defaults: ClassVar[dict[str, Any]] = {
        "lam": None,  # None: published_lambda(ε)
        "start": "zero",  # FGSM's start: zero (published command) or random (FGSM-RS)
        "step_in_eps": 1.25,  # FGSM step in units of ε
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
        if self.options["start"] not in STARTS:
            raise ValueError(f"GradAlign's start is {' or '.join(STARTS)}")
        lam = self.options["lam"]
        self.lam = published_lambda(ctx.eps) if lam is None else float(lam)

    def _fgsm(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FGSM's δ and the input gradient it was made from (at FGSM's start)."""
        eps = self.ctx.eps
        start = uniform_start(x, eps) if self.options["start"] == "random" else torch.zeros_like(x)
        with model_mode(self.model, "train"):
            grad = input_gradient(self.model, x, start, y, amp=self.ctx.amp)
        return clip_delta(start + self.options["step_in_eps"] * eps * grad.sign(), x, eps), grad

    def perturb(self, batch: Batch) -> torch.Tensor:
        return self._fgsm(batch.x.detach(), batch.y)[0].detach()

    def regulariser(self, x: torch.Tensor, y: torch.Tensor, g1: torch.Tensor) -> torch.Tensor:
        """λ·(1 − cos(g1, ∇x L(x + η))), differentiable in θ through the second gradient."""
        eta = uniform_start(x, self.ctx.eps).requires_grad_(True)
        with autocast(self.ctx.amp, x.device):
            logits = self.model(x + eta)
        loss = F.cross_entropy(logits.float(), y)
        if self.ctx.amp_active:  # keeps fp16 gradients from underflowing; the cosine ignores it
            loss = loss * AMP_LOSS_SCALE
        (g2,) = torch.autograd.grad(loss, eta, create_graph=True)
        return self.lam * alignment(g1.detach().float(), g2.float())

    def train_step(
        self,
        batch: Batch,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> StepResult:
        x, y = batch.x.detach(), batch.y
        delta, g1 = self._fgsm(x, y)
        with autocast(self.ctx.amp, x.device):
            logits = self.learner(x + delta.detach())
        loss = F.cross_entropy(logits.float(), y)
        reg = self.regulariser(x, y, g1) if self.lam > 0 else loss.new_zeros(())
        self.optimise(loss + reg, optimizer, scaler)
        return self.result(loss, logits, y)
