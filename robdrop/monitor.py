"""A live perturbation-underfitting monitor: after every epoch, on a fixed probe batch of held-out
training images, how strong the method's own perturbations still are.

Measured in eval mode on the probe (x, y), with the method's generator f_A and a probe attack B:
- `monitor_gap` = L(x + f_B) − L(x + f_A), the strength gap G_A→B of Equation 3;
- `monitor_robust_acc` = accuracy under B; `monitor_own_acc` under f_A; `monitor_random_acc`
  under uniform noise in the ε-ball (the random-noise level of Figure 1b).

An epoch *looks underfit* after the warm-up (the first `warmup` of training, while the cyclic
learning rate still rises and the gaps are erratic) when either sign shows:
- "gap": the gap jumps — at least `gap_factor` × the median of all earlier epochs' gaps and
  `gap_min` nats above it — while the probe's robust accuracy falls to `acc_drop` × its best so
  far or below (a jump alone also happens on epochs whose robustness holds);
- "noise": f_A has become weaker than random noise on the model it trains, own_acc ≥
  random_acc + `noise_margin` (Figure 1b: a collapsed FGSM model is *more* accurate on its own
  perturbations than on uniform noise; a healthy one is far less).
Perturbation underfitting is flagged (`monitor_flag`) when an epoch looks underfit and so did at
least `persist` − 1 of the `window` − 1 epochs before it: a 64-image probe makes single epochs
look underfit by chance, while a collapse lasts. The thresholds were chosen on the 30-epoch FGSM
runs of the mini preset with seeds 1 and 2 and checked on held-out seeds, APART and PGD-10
(docs/benchmarks.md, "Underfitting monitor"). The reaction is the trainer's (`on_underfit`: warn,
stop, or keep the best epoch as best.pt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from robdrop.attacks import make_attack
from robdrop.attacks.base import eval_locked, seeded
from robdrop.attacks.evaluate import losses_and_accuracies
from robdrop.data import Batch
from robdrop.methods import Method

REACTIONS = ("warn", "stop", "best")


@dataclass
class UnderfitRule:
    """The documented thresholds of the two flags (see the module docstring)."""

    gap_factor: float = 1.5
    gap_min: float = 0.3
    acc_drop: float = 0.75
    noise_margin: float = 0.05
    warmup: float = 0.25  # fraction of the run's epochs without flags
    persist: int = 2  # epochs that must look underfit among the last `window`, this one included
    window: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.persist <= self.window:
            raise ValueError(
                f"the monitor rule needs 1 ≤ persist ≤ window, not {self.persist} of {self.window}"
            )

    def check(self, row: dict[str, Any], history: list[dict[str, Any]], epochs: int) -> str:
        """The flag of epoch `row` after the rows `history`: its signs ('gap', 'noise', both
        joined by '+') if it looks underfit and enough recent epochs did too, else ''."""
        signs = self.signs(row, history, epochs)
        if not signs:
            return ""
        recent = range(max(0, len(history) - self.window + 1), len(history))
        earlier = sum(bool(self.signs(history[i], history[:i], epochs)) for i in recent)
        return signs if 1 + earlier >= self.persist else ""

    def replay(self, rows: list[dict[str, Any]], epochs: int) -> list[str]:
        """The flag of every row of a run's recorded monitor columns, as training gave them."""
        return [self.check(row, rows[:i], epochs) for i, row in enumerate(rows)]

    def signs(self, row: dict[str, Any], history: list[dict[str, Any]], epochs: int) -> str:
        """'gap', 'noise', both joined by '+', or '' for how epoch `row` alone looks."""
        if row["epoch"] <= self.warmup * epochs:
            return ""
        flags = []
        if history:
            median = float(np.median([h["monitor_gap"] for h in history]))
            gap = row["monitor_gap"]
            jumped = gap >= self.gap_factor * max(median, 0.0) and gap - median >= self.gap_min
            best = max(h["monitor_robust_acc"] for h in history)
            if jumped and row["monitor_robust_acc"] <= self.acc_drop * best:
                flags.append("gap")
        if row["monitor_own_acc"] >= row["monitor_random_acc"] + self.noise_margin:
            flags.append("noise")
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
        epochs: int,
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
        self.epochs = epochs
        self.rule = rule or UnderfitRule()

    def measure(self, model: nn.Module, method: Method, device: torch.device) -> dict[str, float]:
        """The monitor's columns for this epoch (flag excluded), randomness fixed by `seed`."""
        t0 = time.perf_counter()
        generators = {  # in this order: the order of the seeded random draws
            "own": lambda xb, yb: method.perturb(Batch(xb, yb, None)),
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

    def flag(self, row: dict[str, Any], history: list[dict[str, Any]]) -> str:
        """The rule applied to this epoch's row given the earlier rows of the run."""
        measured = [h for h in history if not np.isnan(h.get("monitor_gap", np.nan))]
        return self.rule.check(row, measured, self.epochs)
