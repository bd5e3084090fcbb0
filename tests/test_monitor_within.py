"""The monitor inside epochs (`--monitor-every K`): its rows go to monitor.csv, training and
metrics.csv are the same as without it, and a run killed and resumed keeps one row per
measurement, equal to those of an uninterrupted run."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from robdrop.cli import main
from robdrop.training.config import TrainConfig
from robdrop.training.monitor.within import WithinEpoch
from robdrop.training.runs import Run

from .conftest import kill_after_first_epoch, tiny_train_args

# 256 training images in batches of 64: 4 iterations per epoch, measured after the first 3
INSIDE = (1, 2, 3)
EPOCHS = 3
SIGNALS = ("--monitor", "gap,align", "--monitor-size", "16", "--epochs", str(EPOCHS))
WITHIN = ("--monitor-every", "1")
NAME = "mini-ffgsm-eps8-seed0"


def trained(data_dir, out, *extra: str) -> Run:
    """A tiny F+FGSM run (a method drawing random numbers) with the signals and `extra`."""
    args = tiny_train_args(data_dir, out, "ffgsm", *SIGNALS, *extra)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return Run(out / NAME)


def without_costs(frame: pd.DataFrame) -> pd.DataFrame:
    """Everything but the timings, which differ from one process to the next."""
    return frame.drop(columns=[c for c in frame if c.endswith("seconds")])


@pytest.fixture(scope="module")
def within(data_dir, tmp_path_factory) -> Run:
    return trained(data_dir, tmp_path_factory.mktemp("within"), *WITHIN)


def test_rows_inside_epochs_go_to_monitor_csv_and_change_nothing_else(
    data_dir, tmp_path, within
) -> None:
    after = trained(data_dir, tmp_path)  # the same signals after each epoch only
    weights, reference = within.load_checkpoint()["model"], after.load_checkpoint()["model"]
    assert all(torch.equal(weights[k], reference[k]) for k in weights)
    pd.testing.assert_frame_equal(without_costs(within.metrics()), without_costs(after.metrics()))
    assert after.monitor_rows().empty
    rows = within.monitor_rows()
    assert rows[["epoch", "iteration"]].values.tolist() == [
        [e, i] for e in range(1, EPOCHS + 1) for i in INSIDE
    ]
    assert rows["fraction"].tolist() == pytest.approx(
        [(e - 1 + i / 4) / EPOCHS for e in range(1, EPOCHS + 1) for i in INSIDE]
    )
    for column in ("monitor_gap", "monitor_seconds", "monitor_align_cos", "monitor_align_seconds"):
        assert rows[column].notna().all()
    # the model changes between measurements, so the signals do too
    assert rows["monitor_align_cos"].nunique() > 1


def test_a_killed_and_resumed_run_keeps_one_row_per_measurement(data_dir, tmp_path, within) -> None:
    run_dir = tmp_path / NAME
    args = tiny_train_args(data_dir, tmp_path, "ffgsm", *SIGNALS, *WITHIN)

    def inside_epoch_two() -> bool:  # killed after a measurement of the epoch it will redo
        rows = Run(run_dir).monitor_rows()
        return bool(len(rows)) and bool((rows["epoch"] == 2).any())

    done = kill_after_first_epoch(args, run_dir, EPOCHS, until=inside_epoch_two)
    assert done == [1]
    resumed = trained(data_dir, tmp_path, *WITHIN, "--resume")
    weights, reference = resumed.load_checkpoint()["model"], within.load_checkpoint()["model"]
    assert all(torch.equal(weights[k], reference[k]) for k in weights)
    pd.testing.assert_frame_equal(
        without_costs(resumed.monitor_rows()), without_costs(within.monitor_rows())
    )


def test_resume_keeps_the_rows_of_saved_work_only(tmp_path) -> None:
    """From partial.pt (batch 1 of epoch 2 saved) the row of that batch stays; later ones go."""
    run = Run.create(tmp_path / "run", TrainConfig(), {"num_classes": 10}, {})
    rows = pd.DataFrame(
        {"epoch": [1, 1, 2, 2, 3], "iteration": [1, 2, 1, 2, 1], "monitor_gap": [0.1] * 5}
    )
    run.write_monitor_rows(rows)
    kept = WithinEpoch.resume([], run, every=1, epochs=3, start=2, done=1)
    assert [(r["epoch"], r["iteration"]) for r in kept.rows] == [(1, 1), (1, 2), (2, 1)]
    assert run.monitor_rows()[["epoch", "iteration"]].values.tolist() == [[1, 1], [1, 2], [2, 1]]
    WithinEpoch.resume([], run, every=1, epochs=3, start=1, done=0)
    assert not (run.path / "monitor.csv").exists()
    assert kept.due(1, 3) and kept.due(2, 3) and not kept.due(3, 3)


def test_monitor_every_needs_the_monitor() -> None:
    with pytest.raises(ValueError, match="--monitor-every"):
        TrainConfig(val_size=64, monitor="none", monitor_every=2).validate()
    with pytest.raises(ValueError, match="--monitor-every"):
        TrainConfig(val_size=64, monitor_every=-1).validate()
