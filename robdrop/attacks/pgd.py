"""L∞ projected gradient ascent: PGD-N (Madry et al.), and FGSM / F+FGSM as its one-step cases."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks.base import (
    Attack,
    LossFn,
    clip_delta,
    cw_margin_loss,
    input_gradient,
    model_mode,
    uniform_start,
)

# cross-entropy, or the C&W margin (max non-true logit − true logit)
Loss = Literal["ce", "cw"]
LOSSES: tuple[str, ...] = get_args(Loss)


class PGD(Attack):
    """`steps` signed-gradient steps of size `step` from zero or a uniform start, projected.

    Every example is updated at every step (no early stop on misclassified points). With
    `restarts > 1` the δ of the restart with the highest per-example loss is kept.
    """

    def __init__(
        self,
        eps: float,
        steps: int,
        step: float,
        *,
        random_start: bool = True,
        restarts: int = 1,
        loss: Loss = "ce",
        **kw,
    ) -> None:
        super().__init__(eps, **kw)
        if steps < 1 or restarts < 1:
            raise ValueError("PGD needs at least one step and one restart")
        if loss not in LOSSES:
            raise ValueError(f"loss must be {' or '.join(LOSSES)}, not {loss!r}")
        self.steps, self.step, self.random_start = steps, step, random_start
        self.restarts, self.loss = restarts, loss

    def first(self, steps: int) -> PGD:
        """PGD-`steps` with these settings: its δ is this attack's iterate after `steps` steps."""
        shorter = copy.copy(self)
        shorter.steps = steps
        return shorter

    @property
    def loss_fn(self) -> LossFn:
        return F.cross_entropy if self.loss == "ce" else cw_margin_loss

    def ascend(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor
    ) -> torch.Tensor:
        """These steps from a given feasible δ rather than PGD's own start (Free's, ATTA's δ)."""
        with model_mode(model, self.mode):
            return self._one_run(model, x.detach(), y, start.detach()).detach()

    def iterates(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        start: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """δ after each step of one run (from PGD's own start unless given), in the model's
        mode as it is: the k-th is exactly PGD-k's δ for the same start, so one run of the
        longest attack serves the shorter ones too."""
        delta = start
        if delta is None:
            delta = uniform_start(x, self.eps) if self.random_start else torch.zeros_like(x)
        for _ in range(self.steps):
            grad = input_gradient(model, x, delta, y, self.loss_fn, amp=self.amp)
            delta = clip_delta(delta + self.step * grad.sign(), x, self.eps)
            yield delta

    def _one_run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        (last,) = deque(self.iterates(model, x, y, start), maxlen=1)
        return last

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best = self._one_run(model, x, y)
        if self.restarts == 1:
            return best
        with torch.no_grad():
            best_loss = self._per_example_loss(model, x + best, y)
        for _ in range(self.restarts - 1):
            delta = self._one_run(model, x, y)
            with torch.no_grad():
                loss = self._per_example_loss(model, x + delta, y)
            better = loss > best_loss
            best[better], best_loss[better] = delta[better], loss[better]
        return best

    def _per_example_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(model(x).float(), y, reduction="none")

    def describe(self) -> str:
        start = "uniform start" if self.random_start else "zero start"
        return (
            f"PGD-{self.steps}[{self.loss}] eps={self.eps * 255:.4g}/255 "
            f"step={self.step * 255:.4g}/255 {start} restarts={self.restarts} mode={self.mode}"
        )
