"""The paper's cyclic schedule and the momentum that torch's CyclicLR cycles against it: the
model optimizer's (the trainer) and a method's own (APART's step sizes) follow them."""

from __future__ import annotations

import numpy as np


def cyclic_lr(progress: float, lr_max: float, peak: float = 0.5) -> float:
    """The paper's cyclic schedule: 0 → lr_max (at `peak`) → 0, linear, over training progress."""
    return float(np.interp(progress, [0.0, peak, 1.0], [0.0, lr_max, 0.0]))


def cyclic_momentum(lr: float, lr_max: float, momentum: float, at_peak: float | None) -> float:
    """Momentum moving against the learning rate, `momentum` at LR 0 and `at_peak` at lr_max
    (torch's CyclicLR with cycle_momentum); constant when `at_peak` is None or the schedule's
    peak is 0 (a learning rate held at 0 never moves the momentum off its LR-0 value)."""
    if at_peak is None or lr_max == 0:
        return momentum
    return momentum - (momentum - at_peak) * lr / lr_max
