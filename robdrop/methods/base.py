"""The Method interface: how a training method perturbs a batch and takes one training step.

A method owns its state (APART's ω and step sizes, ATTA's buffers) and saves it through
`state_dict()/load_state_dict()`. `perturb(batch)` is f_A(θ, x, y) of the paper, used by the
trainer and by the analyses alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks import Attack, make_attack
from robdrop.attacks.base import autocast
from robdrop.data import Batch, Loader


@dataclass(frozen=True)
class Recipe:
    """How a method's released code optimised the model on CIFAR: SGD with a cyclic learning rate
    0 → lr_max (at lr_peak, a fraction of training) → 0; momentum constant, or cycled against the
    learning rate down to `momentum_at_peak` (torch's CyclicLR default: 0.9 → 0.8 → 0.9)."""

    weight_decay: float
    source: str  # the released file (or the paper's section) each value comes from
    lr_max: float | None = None  # None: the preset's (0.2 on CIFAR)
    lr_peak: float = 0.5
    momentum_at_peak: float | None = None  # None: momentum stays at its 0.9

    def settings(self) -> dict[str, Any]:
        """The training settings this recipe fixes (lr_max only where it names one)."""
        values = {
            "weight_decay": self.weight_decay,
            "lr_peak": self.lr_peak,
            "momentum_at_peak": self.momentum_at_peak,
        }
        return values if self.lr_max is None else {**values, "lr_max": self.lr_max}


# the common recipe of the paper's Section 5.1 (SGD, momentum 0.9, cyclic LR 0 → 0.2 → 0, peak at
# half of training) with the weight decay its baselines commonly use: `--recipe uniform`, for
# comparisons in which only the method differs
UNIFORM = Recipe(weight_decay=5e-4, source="paper §5.1, with weight decay 5e-4")
# CyclicLR's default momentum cycle, left on in most released scripts
CYCLED = 0.8
WONG = "locuslab/fast_adversarial CIFAR10/{}"


@dataclass
class MethodContext:
    """What a method needs to know about the run it trains (budgets in image units)."""

    eps: float  # image units (8/255, not 8)
    num_train: int
    image_shape: tuple[int, int, int]
    pad: int = 4
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # the model optimizer's schedule, for methods whose own optimizers follow it (APART)
    lr_max: float = 0.2
    lr_peak: float = 0.5
    weight_decay: float = 5e-4
    momentum: float = 0.9
    momentum_at_peak: float | None = None

    @property
    def amp_active(self) -> bool:
        return self.amp and self.device.type == "cuda"


@dataclass
class StepResult:
    """Sum of the training loss and number of correct predictions over a batch (on device)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    count: int


class Method:
    """Base class: subclasses set `name` and implement `perturb` (and maybe `train_step`)."""

    name: ClassVar[str]
    # options a user may set with --option key=value, with their defaults
    defaults: ClassVar[dict[str, Any]] = {}
    # option values a preset sets for this method (under the user's --option values)
    preset_options: ClassVar[dict[str, dict[str, Any]]] = {}
    # keys of state_dict() holding per-example buffers (first dim = training set): they are saved
    # for the latest epoch only (examples-NNN.pt), since they are as large as the dataset
    example_state: ClassVar[tuple[str, ...]] = ()
    # one gradient step per perturbation: the methods prone to catastrophic overfitting, which
    # the underfitting monitor watches by default
    single_step: ClassVar[bool] = False
    # the optimizer of the method's released code (`--recipe released`, the default)
    recipe: ClassVar[Recipe] = UNIFORM
    # what the number in the method's name counts (pgd10: "steps"); None: the name takes none
    number_name: ClassVar[str | None] = None
    # option names of earlier versions, read from old run.json files: {old: new}
    renamed_options: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        model: nn.Module,
        ctx: MethodContext,
        number: int | None = None,
        *,
        learner: nn.Module | None = None,
    ) -> None:
        """`learner` is the module whose forward the θ step differentiates: the model, or
        under torchrun its DistributedDataParallel wrapper. Perturbations use `model` itself,
        so only the training forward synchronises gradients across ranks."""
        renamed = {self.renamed_options.get(k, k): v for k, v in ctx.options.items()}
        ctx = replace(ctx, options=renamed)
        unknown = set(ctx.options) - set(self.defaults)
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise ValueError(
                f"method {self.name} has no option {', '.join(sorted(unknown))} (known: {known})"
            )
        self.model, self.ctx, self.number = model, ctx, number
        self.options = {**self.defaults, **ctx.options}
        self.learner: nn.Module = model if learner is None else learner

    # -- the perturbation generator f_A -------------------------------------------------------
    @property
    def bound(self) -> float:
        """The largest |δ|∞ of this method's input perturbation, in image units (ε)."""
        return self.ctx.eps

    def perturb(self, batch: Batch) -> torch.Tensor:
        """The input perturbation δ this method trains on for `batch` (detached)."""
        raise NotImplementedError

    # -- training -------------------------------------------------------------------------------
    def epoch_batches(self, loader: Loader, epoch: int) -> tuple[Iterator[Batch], int]:
        """The minibatches of training epoch `epoch` and their number: one pass by default."""
        return loader.epoch(epoch), len(loader)

    def train_step(
        self,
        batch: Batch,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> StepResult:
        """One optimisation step on the batch perturbed by `perturb`."""
        delta = self.perturb(batch)
        return self.descend(batch.x + delta, batch.y, optimizer, scaler)

    def descend(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> StepResult:
        """θ ← θ − μ ∂L/∂θ on (x, y), with mixed precision where enabled."""
        with autocast(self.ctx.amp, x.device):
            logits = self.learner(x)
        loss = F.cross_entropy(logits.float(), y)
        self.optimise(loss, optimizer, scaler)
        return self.result(loss, logits, y)

    @staticmethod
    def optimise(
        objective: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
    ) -> None:
        """One step of θ on `objective` through the run's GradScaler (a no-op scaler on CPU)."""
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()

    @staticmethod
    def result(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> StepResult:
        return StepResult(loss.detach() * len(y), (logits.detach().argmax(1) == y).sum(), len(y))

    def schedule(self, progress: float) -> None:
        """Called before each iteration with the fraction of training done (for own schedules)."""

    def epoch_metrics(self) -> dict[str, float]:
        """Per-epoch values worth a column in metrics.csv (e.g. learned step sizes)."""
        return {}

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name} has no state but the checkpoint holds some")


class AttackMethod(Method):
    """Adversarial training on the perturbations of one registry attack (made in train mode)."""

    attack_spec: ClassVar[str]

    def __init__(
        self,
        model: nn.Module,
        ctx: MethodContext,
        number: int | None = None,
        *,
        learner: nn.Module | None = None,
    ) -> None:
        super().__init__(model, ctx, number, learner=learner)
        self.attack = self.make_attack()

    def make_attack(self) -> Attack:
        return make_attack(self.attack_spec, self.ctx.eps, mode="train", amp=self.ctx.amp)

    def perturb(self, batch: Batch) -> torch.Tensor:
        return self.attack(self.model, batch.x, batch.y)
