"""What picks best.pt under `--on-underfit stop` or `best` ("probe-best"): accuracy under an attack
(`best_attack`, PGD-5 by default) on the first `best_size` held-out images (512 by default).

The gap signal's 64 images carry a standard error of about 5 points at 20 % accuracy, too wide
to tell an epoch that recovered from the collapse from one that did not; 512 images bring it to
about 1.8 points. A weaker attack than the gap's PGD-10 keeps the larger probe affordable (its
cost, `monitor_best_seconds`: 29 % of a `mini` FGSM epoch of 4,000 images, about 3 % of a full
CIFAR-10 one by pass count; docs/benchmarks.md, "Underfitting monitor").
Measured after every epoch only, never inside one (`--monitor-every` leaves it out).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from robdrop.attacks import make_attack
from robdrop.attacks.evaluate import accuracy_under
from robdrop.training.monitor.signal import Signal


class BestProbe(Signal):
    """`monitor_best_acc`: accuracy under the `attack` option on the probe; `monitor_best_seconds`
    its cost."""

    name = "best"
    defaults: ClassVar[dict[str, Any]] = {"attack": "pgd5"}

    def values(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """{'acc': the accuracy under the attack}."""
        attack = make_attack(self.options["attack"], self.eps)
        acc = accuracy_under(
            model, attack, self.x, self.y, batch_size=self.batch_size, device=device
        )
        return {"acc": acc}
