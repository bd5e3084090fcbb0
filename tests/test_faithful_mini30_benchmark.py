"""benchmarks/faithful_mini30.py on hand-made 30-epoch curves: C1 and C2 as
docs/faithful_search.md defines them, and the held-out stage refusing incomplete runs. No
training."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from robdrop.training.config import make_config
from robdrop.training.runs import Run

from .conftest import import_benchmark

EPOCHS = 30
RISE = np.linspace(0.05, 0.25, 10)  # ten epochs up to a best of 25 %


@pytest.fixture
def script(monkeypatch) -> ModuleType:
    return import_benchmark(monkeypatch, "faithful_mini30")


def keep(archive: Path, script: ModuleType, method: str, seed: int, curve: np.ndarray) -> None:
    """A run as issue 19 keeps it: run.json and metrics.csv with the PGD-20 column measured on
    1,000 test images."""
    run = Run.create(archive / script.run_name(method, seed, EPOCHS, False),
                     make_config("mini", method=method, eval_size=1000), {}, {})  # fmt: skip
    epochs = np.arange(1, len(curve) + 1)
    run.write_metrics(pd.DataFrame({"epoch": epochs, "test_pgd20_acc": curve}))


def test_c1_needs_a_robust_best_then_a_quarter_of_it_to_the_end(script, tmp_path) -> None:
    archive = tmp_path / "archive"
    curves = {
        ("fgsm", 11): np.r_[RISE, np.full(20, 0.05)],  # 25 % then 5 % (< 6.25 %): C1
        ("fgsm", 12): np.r_[RISE, np.full(19, 0.05), 0.10],  # back above a quarter at the end
        ("fgsm", 13): np.r_[RISE / 2, np.full(20, 0.01)],  # collapses, but best 12.5 % < 0.6 r
        ("pgd10", 1): np.r_[RISE, np.full(20, 0.24)],  # last 24 % within 3 points of 25 %
        ("pgd10", 2): np.r_[RISE, np.full(20, 0.24)],
        ("apart", 1): np.r_[RISE, np.full(20, 0.21)],  # 4 points under its best: not C2
        ("apart", 2): np.r_[RISE, np.full(20, 0.25)],
    }
    for (method, seed), curve in curves.items():
        keep(archive, script, method, seed, curve)
    rows = script.table(archive, (11, 12, 13), ("apart", "pgd10")).set_index(["method", "seed"])
    assert rows["r"].iloc[0] == pytest.approx(24.0)
    assert rows.loc[("fgsm", 11), "lasting collapse"] == 11
    assert rows.loc[("fgsm", 11), "best % [95 %]"] == "25.0 [22.4, 27.8]"  # Wilson, 1,000 images
    assert list(rows.loc["fgsm", "C1"]) == [True, False, False]
    assert list(rows.loc["apart", "C2"]) == [False, True]
    assert list(rows.loc["pgd10", "C2"]) == [True, True]
    text = script.verdict(rows.reset_index(), needed=1)
    assert "C1 holds in 1 of 3" in text and "C2 in 3 of 4" in text and "**not met**" in text
    args = ["calibration", "--archive", str(archive), "--methods", "apart,ffgsm"]
    no_reference = CliRunner().invoke(script.main, args)
    assert no_reference.exit_code == 2 and "must include apart and pgd10" in no_reference.output


def test_held_out_refuses_until_every_run_is_complete(script, tmp_path) -> None:
    archive = tmp_path / "archive"
    for method, seed in [("pgd10", 1), ("pgd10", 2), ("apart", 1), ("apart", 2)]:
        keep(archive, script, method, seed, np.r_[RISE, np.full(20, 0.25)])
    for seed in range(11, 21):
        keep(archive, script, "fgsm", seed, np.r_[RISE, np.full(19 if seed == 20 else 20, 0.05)])
    args = ["held-out", "--archive", str(archive), "--results", str(tmp_path / "results")]
    refused = CliRunner().invoke(script.main, args)
    assert refused.exit_code == 1 and "signals-fgsm-seed20-30ep is not complete" in refused.output
    assert not (tmp_path / "results").exists()
    keep(archive, script, "fgsm", 20, np.r_[RISE, np.full(20, 0.05)])
    done = CliRunner().invoke(script.main, args)
    assert done.exit_code == 0, done.output
    assert (
        "C1 holds in 10 of 10 FGSM seeds; C2 in 4 of 4" in done.output and "**met**" in done.output
    )
