"""ATTA-K (Zheng et al. 2019, "Efficient adversarial training with transferable adversarial
examples"): every training example keeps its perturbation from epoch to epoch.

The buffer holds one δ per training example in padded image coordinates, (N, C, H+2p, W+2p),
like the image before its random crop. A batch's `View` crops and flips the stored δ exactly as
it cropped and flipped the image (`take`), K PGD steps continue from there, and the result goes
back through the inverse view (`put`), so δ stays attached to the same pixels of the same image
whichever crop and flip the next epoch draws. The buffer starts at zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robdrop.attacks import PGD, clip_delta
from robdrop.data import Batch, View, sharding
from robdrop.methods.base import MethodContext, Recipe, StepResult
from robdrop.methods.pgd import PGDTraining


class ATTA(PGDTraining):
    """PGD-K training whose start is each example's δ stored at its last visit, written back."""

    name = "atta"
    attack: PGD
    # the paper's schedule (its released code, for a WideResNet, uses a step schedule from 0.1)
    recipe = Recipe(2e-4, "paper §5.1; weight decay: haizhongzheng/ATTA train_atta_cifar.py")
    example_state = ("delta",)

    def __init__(
        self,
        model: nn.Module,
        ctx: MethodContext,
        number: int | None = None,
        *,
        learner: nn.Module | None = None,
    ) -> None:
        super().__init__(model, ctx, number, learner=learner)
        c, h, w = ctx.image_shape
        padded = (ctx.num_train, c, h + 2 * ctx.pad, w + 2 * ctx.pad)
        self.delta = torch.zeros(padded, device=ctx.device)

    def _view(self, batch: Batch) -> View:
        """The batch's crop/flip, without which a stored δ cannot be lined up with its image."""
        if batch.view is None:
            raise ValueError(
                "atta keeps each example's perturbation aligned through the batch's crop/flip "
                "view, and this batch has none (unaugmented or ImageNet-folder data)"
            )
        return batch.view

    def perturb(self, batch: Batch) -> torch.Tensor:
        """K steps from the examples' stored δ (seen through the batch's crop and flip).

        Images outside the training set (no indices) start from zero, as a new example would.
        """
        if batch.idx is None:
            return self.attack.ascend(self.model, batch.x, batch.y, torch.zeros_like(batch.x))
        stored = self._view(batch).take(self.delta[batch.idx])
        start = clip_delta(stored, batch.x, self.ctx.eps)
        return self.attack.ascend(self.model, batch.x, batch.y, start)

    def train_step(
        self,
        batch: Batch,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> StepResult:
        """One step on x + δ; δ is stored back for the example's next visit."""
        delta = self.perturb(batch)
        self.delta[batch.idx] = self._view(batch).put(self.delta[batch.idx], delta)
        sharding.share_rows(self.delta, batch)
        return self.descend(batch.x + delta, batch.y, optimizer, scaler)

    def state_dict(self) -> dict[str, Any]:
        """The buffer, so a resumed run and the analyses see the same stored perturbations."""
        return {"delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the buffer (in place), checking its shape; older epochs come without it."""
        stored = state.get("delta")
        if stored is None:
            return
        if stored.shape != self.delta.shape:
            raise ValueError(
                f"method atta needs a stored perturbation buffer of shape "
                f"{tuple(self.delta.shape)}, the checkpoint holds {tuple(stored.shape)}"
            )
        self.delta.copy_(stored)
