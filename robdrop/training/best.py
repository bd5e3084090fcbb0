"""What "best epoch" means, once for every place that picks one: the epoch with the highest
held-out robust accuracy, the later one on ties (it has trained longer at that robustness).

Two measurements feed it, named apart: `probe-best` is the monitor's, taken live after every
epoch with `--on-underfit stop` or `best` (PGD-5 on the first `best_size` = 512 held-out images,
monitor/best_probe.py; with `best_size` 0 the gap signal's 64-image PGD-10) and kept as best.pt;
`val-best` (`--epochs best` in the analyses) is PGD-20 on the whole held-out split, measured
afterwards over the saved checkpoints. Neither ever looks at the test set.
"""

from __future__ import annotations

import pandas as pd


def best_epoch(accuracy: pd.Series) -> int:
    """The epoch (the series' index) of the highest accuracy, the latest of any ties."""
    return int(accuracy[accuracy == accuracy.max()].index[-1])


def probe_best_column(metrics: pd.DataFrame) -> str:
    """The metrics.csv column that picks best.pt (probe-best): the best probe's
    `monitor_best_acc` when it was measured at every epoch, else the gap signal's
    `monitor_robust_acc` (`--best-size 0`, or a run begun before the best probe existed)."""
    column = "monitor_best_acc"
    return column if column in metrics and metrics[column].notna().all() else "monitor_robust_acc"
