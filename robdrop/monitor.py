"""A live perturbation-underfitting monitor: after every epoch, on a fixed probe batch of held-out
training images, how strong the method's own perturbations still are.

Measured in eval mode on the probe (x, y), with the method's generator f_A and a probe attack B:
- `monitor_gap` = L(x + f_B) − L(x + f_A), the strength gap G_A→B of Equation 3;
- `monitor_robust_acc` = accuracy under B; `monitor_own_acc` under f_A; `monitor_random_acc`
  under uniform noise in the ε-ball (the random-noise level of Figure 1b).

Perturbation underfitting is flagged (`monitor_flag`) when either rule fires:
- "noise": f_A is no stronger than random noise on the model it trains, own_acc ≥
  random_acc − `noise_margin` (a healthy single-step model is far less accurate on its own
  perturbations than on noise; a collapsed FGSM model is *more* accurate on them);
- "gap": the gap exceeds `gap_factor` × the median of the previous epochs' gaps and that
  median by at least `gap_min` nats (from the third epoch on).
The reaction is the trainer's (`on_underfit`: warn, stop, or keep the best epoch as best.pt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks import make_attack
from robdrop.attacks.base import eval_locked
from robdrop.data import Batch, iterate_eval
from robdrop.methods import Method

REACTIONS = ("warn", "stop", "best")


@dataclass
class UnderfitRule:
    """The documented thresholds of the two flags (see the module docstring)."""

    noise_margin: float = 0.02
    gap_factor: float = 2.0
    gap_min: float = 0.3
    min_epochs: int = 3

    def check(self, row: dict[str, float], previous_gaps: list[float]) -> str:
        """'noise', 'gap', both joined by '+', or '' when neither rule fires."""
        flags = []
        if row["monitor_own_acc"] >= row["monitor_random_acc"] - self.noise_margin:
            flags.append("noise")
        if len(previous_gaps) + 1 >= self.min_epochs:
            median = float(np.median(previous_gaps))
            gap = row["monitor_gap"]
            if gap > self.gap_factor * max(median, 0.0) and gap - median > self.gap_min:
                flags.append("gap")
        return "+".join(flags)


class UnderfitMonitor:
    """Measures a probe batch after each epoch and flags perturbation underfitting."""

    def __init__(
        self,
        attack: str,
        eps: float,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int = 0,
        batch_size: int = 256,
        rule: UnderfitRule | None = None,
    ) -> None:
        if len(y) == 0:
            raise ValueError(
                "the monitor needs held-out training images: train with --val-size N (N > 0)"
            )
        self.attack = make_attack(attack, eps)
        self.random = make_attack("random", eps)
        self.x, self.y, self.seed, self.batch_size = x, y, seed, batch_size
        self.rule = rule or UnderfitRule()

    def measure(self, model: nn.Module, method: Method, device: torch.device) -> dict[str, float]:
        """The monitor's columns for this epoch (flag excluded), randomness fixed by `seed`."""
        t0 = time.perf_counter()
        sums = {"gap": 0.0, "robust": 0, "own": 0, "random": 0}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            with eval_locked(model):
                for xb, yb in iterate_eval(self.x, self.y, self.batch_size, device):
                    own = method.perturb(Batch(xb, yb, None))
                    strong = self.attack(model, xb, yb)
                    noise = self.random(model, xb, yb)
                    with torch.no_grad():
                        logits_own, logits_strong = model(xb + own), model(xb + strong)
                        gap = F.cross_entropy(logits_strong, yb, reduction="sum") - F.cross_entropy(
                            logits_own, yb, reduction="sum"
                        )
                        sums["gap"] += gap.item()
                        sums["robust"] += (logits_strong.argmax(1) == yb).sum().item()
                        sums["own"] += (logits_own.argmax(1) == yb).sum().item()
                        sums["random"] += (model(xb + noise).argmax(1) == yb).sum().item()
        n = len(self.y)
        return {
            "monitor_gap": sums["gap"] / n,
            "monitor_robust_acc": sums["robust"] / n,
            "monitor_own_acc": sums["own"] / n,
            "monitor_random_acc": sums["random"] / n,
            "monitor_seconds": time.perf_counter() - t0,
        }

    def flag(self, row: dict[str, Any], history: list[dict[str, Any]]) -> str:
        """The rule applied to this epoch's row given the earlier rows of the run."""
        return self.rule.check(row, [h["monitor_gap"] for h in history if "monitor_gap" in h])
