"""The underfitting monitor as an epoch hook: it measures its signals, applies the rule, and
reacts to a flag as `on_underfit` says: `warn` logs it, `best` keeps the epoch most robust on the
best probe (best_probe.py; with `best_size` 0 the gap signal's probe) as best.pt and goes on,
`stop` does that and ends the run (run.json records why; `--resume --ignore-stop` continues it,
and from then on the flag no longer stops it)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robdrop.data import Dataset
from robdrop.training.best import best_epoch, probe_best_column
from robdrop.training.config import Reaction, TrainConfig
from robdrop.training.monitor.best_probe import BestProbe
from robdrop.training.monitor.rule import Rule
from robdrop.training.monitor.signal import Signal
from robdrop.training.runs import Run
from robdrop.training.state import TrainingState


class MonitorHook:
    """Signals + rule + reaction, after every epoch of a run."""

    def __init__(
        self,
        signals: list[Signal],
        rule: Rule,
        *,
        epochs: int,
        on_underfit: Reaction,
        best: BestProbe | None = None,
    ) -> None:
        self.signals, self.rule, self.epochs, self.on_underfit = signals, rule, epochs, on_underfit
        self.best = best

    @classmethod
    def for_run(cls, cfg: TrainConfig, single_step: bool, data: Dataset) -> MonitorHook | None:
        """The run's monitor on the first `monitor_size` held-out images, or None when off."""
        plan = cfg.monitor_plan(single_step)
        if plan is None:
            return None
        x, y = data.val_x[: cfg.monitor_size], data.val_y[: cfg.monitor_size]
        signals = plan.build(cfg.eps_image, x, y, seed=cfg.seed)
        rule = cfg.monitor_rule_of(plan)
        best = None
        if cfg.on_underfit != "warn" and cfg.best_size:
            xb, yb = data.val_x[: cfg.best_size], data.val_y[: cfg.best_size]
            best = BestProbe(cfg.eps_image, xb, yb, seed=cfg.seed, attack=cfg.best_attack)
        return cls(signals, rule, epochs=cfg.epochs, on_underfit=cfg.on_underfit, best=best)

    def measure(
        self, state: TrainingState, row: dict[str, Any], history: pd.DataFrame
    ) -> dict[str, Any]:
        """Every signal's columns and `monitor_flag`, the rule's verdict given the earlier rows
        (those where the rule's signal was measured); the best probe's columns when it runs."""
        columns: dict[str, Any] = {}
        for signal in [*self.signals, *([self.best] if self.best else [])]:
            columns.update(signal.measure(state.model, state.method, state.device))
        column = self.rule.column
        earlier = [h for h in history.to_dict("records") if not math.isnan(h.get(column, math.nan))]
        flag = self.rule.check({**row, **columns}, earlier, self.epochs)
        return {**columns, "monitor_flag": flag}

    def react(self, run: Run, metrics: pd.DataFrame, state: TrainingState) -> bool:
        """Keep best.pt, warn on a flag, and say whether to stop."""
        row = metrics.iloc[-1]
        if self.on_underfit != "warn":  # probe-best (without the best probe the config
            column = probe_best_column(metrics)  # checks the gap signal runs)
            probe = metrics.set_index("epoch")[column]
            if best_epoch(probe) == row["epoch"]:
                weights = state.model.state_dict()
                run.save_best(int(row["epoch"]), weights, float(row[column]), column)
        if not row["monitor_flag"]:
            return False
        tqdm.write(
            f"[{run.name}] epoch {int(row['epoch'])}: perturbation underfitting "
            f"({row['monitor_flag']}): {self.rule.describe(row.to_dict())}"
        )
        if self.on_underfit != "stop":
            return False
        run.mark_stopped(int(row["epoch"]), str(row["monitor_flag"]))
        return True
