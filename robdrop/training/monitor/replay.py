"""Any monitor rule replayed over a run folder's recorded metrics.csv, without training again:
how a rule (or other thresholds) would have flagged a run that was already trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from robdrop.training.monitor.rule import Rule, make_rule
from robdrop.training.runs import Run


def replay_run(run: Run | str | Path, rule: Rule | dict[str, Any] | None = None) -> pd.DataFrame:
    """Per epoch the rule reads, its columns and `flag`; `rule` is a Rule, settings such as
    {'rule': 'align', 'threshold': 0.4}, or None for the rule the run was trained with."""
    run = run if isinstance(run, Run) else Run(run)
    if rule is None:
        rule = run.config.monitor_rule_of(run.config.monitor_plan())
    elif not isinstance(rule, Rule):
        rule = make_rule(rule, ())
    metrics = run.metrics()
    if rule.column not in metrics:
        raise ValueError(
            f"run {run.name} has no {rule.column} column: it was trained without the "
            f"{rule.signal} signal (--monitor {rule.signal})"
        )
    measured = metrics[metrics[rule.column].notna()].reset_index(drop=True)
    rows = measured.to_dict("records")
    flags = rule.replay(rows, run.config.epochs)
    columns = ["epoch", *(c for c in measured.columns if c.startswith("monitor_"))]
    frame = measured[[c for c in columns if c != "monitor_flag"]].copy()
    frame["flag"] = flags
    return frame
