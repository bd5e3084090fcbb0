"""The monitor's probe: after every epoch, on a fixed batch of held-out training images, how strong
the method's own perturbations still are.

Measured in eval mode on the probe (x, y), with the method's generator f_A and a probe attack B:
- `monitor_gap` = L(x + f_B) − L(x + f_A), the strength gap G_A→B of Equation 3;
- `monitor_robust_acc` = accuracy under B; `monitor_own_acc` under f_A; `monitor_random_acc`
  under uniform noise in the ε-ball (the random-noise level of Figure 1b);
- `monitor_seconds`, its cost.
Its random draws come from a generator of its own (`seeded`), never the training RNG.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from robdrop.attacks import make_attack
from robdrop.attacks.base import eval_locked, seeded
from robdrop.attacks.evaluate import losses_and_accuracies
from robdrop.data import Batch
from robdrop.methods import Method


class Probe:
    """The probe batch and its attacks; `measure` gives one epoch's monitor columns."""

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
        if len(y) == 0:
            raise ValueError(
                "the monitor needs held-out training images: train with --val-size N (N > 0)"
            )
        self.attack = make_attack(attack, eps)
        self.random = make_attack("random", eps)
        self.x, self.y, self.seed, self.batch_size = x, y, seed, batch_size

    def measure(self, model: nn.Module, method: Method, device: torch.device) -> dict[str, float]:
        """The monitor's columns for this epoch (flag excluded), randomness fixed by `seed`."""
        t0 = time.perf_counter()
        generators = {  # in this order: the order of the seeded random draws
            "own": lambda xb, yb: method.perturb(Batch.outside(xb, yb)),
            "probe": lambda xb, yb: self.attack(model, xb, yb),
            "random": lambda xb, yb: self.random(model, xb, yb),
        }
        with seeded(self.seed, device), eval_locked(model):
            results = losses_and_accuracies(
                model, generators, self.x, self.y, batch_size=self.batch_size, device=device
            )
        return {
            "monitor_gap": results["probe"][0] - results["own"][0],
            "monitor_robust_acc": results["probe"][1],
            "monitor_own_acc": results["own"][1],
            "monitor_random_acc": results["random"][1],
            "monitor_seconds": time.perf_counter() - t0,
        }
