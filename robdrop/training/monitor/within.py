"""The monitor inside epochs (`--monitor-every K`): the run's signals measured every K training
iterations as well, each measurement a row of monitor.csv (epoch, iteration, fraction of
training, every signal's columns and cost). The measurement after an epoch's last batch is that
epoch's row of metrics.csv, so it is not repeated here; rules read metrics.csv only.

It draws from the signals' own seeded generators in eval mode, as after an epoch, so training
is bitwise the same with and without it; on resume the rows of the work to be redone are
dropped, so monitor.csv never holds a measurement twice.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from robdrop.training.monitor.signal import Signal
from robdrop.training.runs import Run
from robdrop.training.state import TrainingState


class WithinEpoch:
    """The signals every `every` iterations of an epoch, appended to `run`'s monitor.csv."""

    def __init__(
        self, signals: list[Signal], run: Run, *, every: int, epochs: int, rows: pd.DataFrame
    ) -> None:
        self.signals, self.run, self.every, self.epochs = signals, run, every, epochs
        self.rows: list[dict[str, Any]] = rows.to_dict("records")

    @classmethod
    def resume(
        cls, signals: list[Signal], run: Run, *, every: int, epochs: int, start: int, done: int
    ) -> WithinEpoch:
        """Training goes on from batch `done` of epoch `start`: keep monitor.csv's rows of the
        work already saved (earlier epochs, and `start`'s first `done` batches from partial.pt)
        and drop the rest, which training redoes."""
        rows = run.monitor_rows()
        if len(rows):
            saved = (rows["epoch"] < start) | (
                (rows["epoch"] == start) & (rows["iteration"] <= done)
            )
            rows = rows[saved]
            run.write_monitor_rows(rows)
        return cls(signals, run, every=every, epochs=epochs, rows=rows)

    def due(self, iteration: int, num_batches: int) -> bool:
        """Whether to measure after `iteration` batches of an epoch of `num_batches`."""
        return iteration % self.every == 0 and iteration < num_batches

    def measure(self, state: TrainingState, epoch: int, iteration: int, num_batches: int) -> None:
        """Measure every signal now and append the row to monitor.csv."""
        row: dict[str, Any] = {
            "epoch": epoch,
            "iteration": iteration,
            "fraction": (epoch - 1 + iteration / num_batches) / self.epochs,
        }
        for signal in self.signals:
            row.update(signal.measure(state.model, state.method, state.device))
        self.rows.append(row)
        self.run.write_monitor_rows(pd.DataFrame(self.rows))
