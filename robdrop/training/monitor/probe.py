"""The monitor's "gap" signal (its first probe): after every epoch, on a fixed batch of held-out
training images, how strong the method's own perturbations still are.

Measured in eval mode on the probe (x, y), with the method's generator f_A and a probe attack B:
- `monitor_gap` = L(x + f_B) − L(x + f_A), the strength gap G_A→B of Equation 3;
- `monitor_robust_acc` = accuracy under B; `monitor_own_acc` under f_A; `monitor_random_acc`
  under uniform noise in the ε-ball (the random-noise level of Figure 1b);
- `monitor_seconds`, its cost.
Its random draws come from a generator of its own (`seeded`), never the training RNG. Its columns
keep the names they had before there were other signals, so recorded runs still replay.
"""

from __future__ import annotations

import torch
from torch import nn

from robdrop.attacks import make_attack
from robdrop.attacks.evaluate import losses_and_accuracies
from robdrop.data import Batch
from robdrop.methods import Method
from robdrop.training.monitor.signal import Signal


class Probe(Signal):
    """The strength gap and accuracies under the probe attack, f_A and noise (signal "gap")."""

    name = "gap"

    def __init__(
        self,
        attack: str,
        eps: float,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int = 0,
        batch_size: int = 256,
    ) -> None:
        super().__init__(eps, x, y, seed=seed, batch_size=batch_size)
        self.attack = make_attack(attack, eps)
        self.random = make_attack("random", eps)

    @classmethod
    def create(
        cls, eps: float, x: torch.Tensor, y: torch.Tensor, *, seed: int, attack: str
    ) -> Probe:
        """The gap signal with `attack` as its probe attack B."""
        return cls(attack, eps, x, y, seed=seed)

    @property
    def cost_column(self) -> str:
        """`monitor_seconds`, the name this cost had before there were other signals."""
        return "monitor_seconds"

    def columns(self, model: nn.Module, method: Method, device: torch.device) -> dict[str, float]:
        """The gap and the accuracies under B, f_A and noise, under their original names."""
        generators = {  # in this order: the order of the seeded random draws
            "own": lambda xb, yb: method.perturb(Batch.outside(xb, yb)),
            "probe": lambda xb, yb: self.attack(model, xb, yb),
            "random": lambda xb, yb: self.random(model, xb, yb),
        }
        results = losses_and_accuracies(
            model, generators, self.x, self.y, batch_size=self.batch_size, device=device
        )
        return {
            "monitor_gap": results["probe"][0] - results["own"][0],
            "monitor_robust_acc": results["probe"][1],
            "monitor_own_acc": results["own"][1],
            "monitor_random_acc": results["random"][1],
        }
