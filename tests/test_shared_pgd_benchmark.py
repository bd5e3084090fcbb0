"""benchmarks/shared_pgd.py on a tiny real 2-epoch FGSM run: both orders give the same curve
and gap as each other and as the run's own cache, and the page says so."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from robdrop.analysis import evaluate_run, strength_gap
from robdrop.cli import main as robdrop
from robdrop.training.runs import Run

from .conftest import import_benchmark, tiny_train_args


def test_both_orders_give_the_numbers_of_the_study_cache(data_dir: Path, tmp_path, monkeypatch):
    script = import_benchmark(monkeypatch, "shared_pgd")
    monkeypatch.setattr(script, "N", 32)
    args = tiny_train_args(
        data_dir, tmp_path / "runs", "fgsm", "--epochs", "2", "--save-every-epoch"
    )
    assert CliRunner().invoke(robdrop, args).exit_code == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    evaluate_run(Run(run_dir), ["pgd20"], n=32, seed=0)  # the study's cache, gap after curve
    strength_gap(Run(run_dir), "pgd10", n=32, seed=0)
    written = []
    monkeypatch.setattr(script, "write_result", lambda name, body: written.append(body))
    command = ["--runs", str(tmp_path / "runs"), "--run", run_dir.name,
               "--scratch", str(tmp_path / "scratch")]  # fmt: skip
    result = CliRunner().invoke(script.main, command)
    assert result.exit_code == 0, result.output
    (body,) = written
    rows = [line.split("|") for line in body.splitlines() if line.startswith(f"| {run_dir.name}")]
    assert [[cell.strip() for cell in row[-3:-1]] for row in rows] == [["True", "True"]] * 2
    assert "saved per checkpoint" in body
