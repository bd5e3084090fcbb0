"""When the monitor's measurements say "perturbation underfitting": a rule over the columns
the probe writes to metrics.csv, replayable over any recorded run without training again.

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
(docs/benchmarks.md, "Underfitting monitor").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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
