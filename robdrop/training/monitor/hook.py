"""The underfitting monitor as an epoch hook: it measures the probe, applies the rule, and reacts
to a flag as `on_underfit` says: `warn` logs it, `best` keeps the epoch most robust on the probe
as best.pt and goes on, `stop` does that and ends the run (run.json records why)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from robdrop.data import Dataset
from robdrop.training.best import best_epoch
from robdrop.training.config import Reaction, TrainConfig
from robdrop.training.monitor.probe import Probe
from robdrop.training.monitor.rule import UnderfitRule
from robdrop.training.runs import Run
from robdrop.training.state import TrainingState


class MonitorHook:
    """Probe + rule + reaction, after every epoch of a run."""

    def __init__(self, probe: Probe, rule: UnderfitRule, *, epochs: int, on_underfit: Reaction):
        self.probe, self.rule, self.epochs, self.on_underfit = probe, rule, epochs, on_underfit

    @classmethod
    def for_run(cls, cfg: TrainConfig, single_step: bool, data: Dataset) -> MonitorHook | None:
        """The run's monitor on the first `monitor_size` held-out images, or None when off."""
        attack = cfg.monitor_attack(single_step)
        if attack is None:
            return None
        x, y = data.val_x[: cfg.monitor_size], data.val_y[: cfg.monitor_size]
        probe = Probe(attack, cfg.eps_image, x, y, seed=cfg.seed)
        rule = UnderfitRule(**cfg.monitor_rule)
        return cls(probe, rule, epochs=cfg.epochs, on_underfit=cfg.on_underfit)

    def measure(
        self, state: TrainingState, row: dict[str, Any], history: pd.DataFrame
    ) -> dict[str, Any]:
        """The probe's columns and `monitor_flag`, the rule's verdict given the earlier rows."""
        columns = self.probe.measure(state.model, state.method, state.device)
        earlier = [
            h for h in history.to_dict("records") if not np.isnan(h.get("monitor_gap", np.nan))
        ]
        flag = self.rule.check({**row, **columns}, earlier, self.epochs)
        return {**columns, "monitor_flag": flag}

    def react(self, run: Run, metrics: pd.DataFrame, state: TrainingState) -> bool:
        """Keep best.pt, warn on a flag, and say whether to stop."""
        row = metrics.iloc[-1]
        probe = metrics.set_index("epoch")["monitor_robust_acc"]
        if self.on_underfit != "warn" and best_epoch(probe) == row["epoch"]:  # probe-best
            weights = state.model.state_dict()
            run.save_best(int(row["epoch"]), weights, float(row["monitor_robust_acc"]))
        if not row["monitor_flag"]:
            return False
        tqdm.write(
            f"[{run.name}] epoch {int(row['epoch'])}: perturbation underfitting "
            f"({row['monitor_flag']}): gap {row['monitor_gap']:.3f}, accuracy under own "
            f"perturbations {row['monitor_own_acc']:.3f} vs random noise "
            f"{row['monitor_random_acc']:.3f}"
        )
        if self.on_underfit != "stop":
            return False
        run.mark_stopped(int(row["epoch"]), str(row["monitor_flag"]))
        return True
