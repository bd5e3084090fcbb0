"""What happens after each training epoch besides the checkpoint: the per-epoch quick check, the
method's own values, the underfitting monitor. Each hook adds columns to the epoch's metrics row
(`measure`) and may react once the row is saved (`react`: write files, say whether to stop).

Hooks run on rank 0 only, and draw their random numbers from generators of their own, so the
trained weights never depend on how training is observed.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import pandas as pd
import torch

from robdrop.attacks import make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import accuracy_under
from robdrop.training.runs import Run
from robdrop.training.state import TrainingState


class EpochHook(Protocol):
    """One concern observed after every epoch."""

    def measure(
        self, state: TrainingState, row: dict[str, Any], history: pd.DataFrame
    ) -> dict[str, Any]:
        """Columns for this epoch's `row` (which holds what training and earlier hooks wrote);
        `history` holds the earlier epochs' rows."""
        ...

    def react(self, run: Run, metrics: pd.DataFrame, state: TrainingState) -> bool:
        """After the epoch is saved (its row last in `metrics`): act, and say whether to stop."""
        ...


class QuickCheck:
    """Clean and attacked accuracy on the first `n` test images (`eval_size`, `eval_attack`)."""

    def __init__(
        self,
        attack: str,
        eps: float,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int,
        batch_size: int,
        device: torch.device,
    ) -> None:
        self.specs = ("clean", attack)
        self.eps, self.x, self.y, self.seed = eps, x, y, seed
        self.batch_size, self.device = batch_size, device

    def measure(
        self, state: TrainingState, row: dict[str, Any], history: pd.DataFrame
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        columns = {}
        with seeded(self.seed, self.device):
            for spec in self.specs:
                columns[f"test_{spec}_acc"] = accuracy_under(
                    state.model,
                    make_attack(spec, self.eps),
                    self.x,
                    self.y,
                    batch_size=self.batch_size,
                    device=self.device,
                )
        return {**columns, "eval_seconds": time.perf_counter() - t0}

    def react(self, run: Run, metrics: pd.DataFrame, state: TrainingState) -> bool:
        return False


class MethodValues:
    """The method's own per-epoch values (APART's step sizes: Figure 4)."""

    def measure(
        self, state: TrainingState, row: dict[str, Any], history: pd.DataFrame
    ) -> dict[str, Any]:
        return state.method.epoch_metrics()

    def react(self, run: Run, metrics: pd.DataFrame, state: TrainingState) -> bool:
        return False
