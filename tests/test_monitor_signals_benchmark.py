"""benchmarks/monitor_signals.py's pure parts: the pre-registered selection rule on hand-made
replay tables, the targets on hand-made held-out replays, and `judge` refusing to run before
the choice is committed in git. No training."""

from __future__ import annotations

import json
import subprocess
from types import ModuleType

import pandas as pd
import pytest
from click.testing import CliRunner

from robdrop.training.config import make_config
from robdrop.training.runs import Run

from .conftest import import_benchmark

# two FGSM runs collapse (lasting drops at 10 and 20), one FGSM and one PGD-10 run do not
RUNS = [("fgsm-1", "fgsm", 10), ("fgsm-2", "fgsm", 20), ("fgsm-3", "fgsm", None),
        ("pgd10-1", "pgd10", None)]  # fmt: skip
COST = {"underfit": 7.0, "align": 2.0, "elle": 4.0, "distortion": 3.0}


@pytest.fixture
def script(monkeypatch) -> ModuleType:
    """The script, imported as a module."""
    return import_benchmark(monkeypatch, "monitor_signals")


def replays(flags: dict[int, tuple[str, dict[str, list[int]]]]) -> pd.DataFrame:
    """A replay table as `replay_rows` makes it: per candidate (order → rule, flagged epochs per
    run), a row per run."""
    rows = []
    for order, (rule, flagged) in flags.items():
        for run, method, drop in RUNS:
            epochs = flagged.get(run, [])
            rows.append(
                {"order": order, "candidate": f"{rule} #{order}", "rule": rule, "run": run,
                 "method": method, "seed": 1, "lasting drop": drop,
                 "first flag": epochs[0] if epochs else None, "flags": len(epochs),
                 "flagged epochs": " ".join(map(str, epochs))}
            )  # fmt: skip
    return pd.DataFrame(rows)


TABLE = {
    0: ("align", {"fgsm-1": [10], "fgsm-2": [20], "fgsm-3": [15]}),  # both, but a false flag
    1: ("align", {"fgsm-1": [11, 12]}),  # one of two, no false flag
    2: ("elle", {"fgsm-1": [11], "fgsm-2": [21]}),  # both, later, dearer than distortion
    3: ("distortion", {"fgsm-1": [10], "fgsm-2": [20]}),  # both on time
    4: ("distortion", {"fgsm-1": [11], "fgsm-2": [19]}),  # both, a delay of 1 each
    5: ("distortion", {"fgsm-1": [10], "fgsm-2": [20]}),  # the same as 3, later in the grid
    6: ("underfit", {"fgsm-1": [5, 10], "pgd10-1": [12]}),  # early, and a false flag
    7: ("underfit", {"fgsm-3": [20], "pgd10-1": [3]}),  # two false flags
}
SETTINGS = [{"rule": rule, "threshold": order} for order, (rule, _) in TABLE.items()]


def test_selection_keeps_no_false_flag_then_most_detections_then_lower_cost(script) -> None:
    table = replays(TABLE)
    ranked = script.ranking(table, COST)
    assert ranked["order"].tolist()[:5] == [3, 5, 4, 2, 1]
    assert not ranked.set_index("order").loc[[0, 6, 7], "feasible"].any()
    choice = script.choose(table, COST, SETTINGS)
    assert choice["default"]["settings"] == SETTINGS[3]
    assert choice["default"]["calibration"]["collapses flagged within ±1"] == 2
    per_rule = {rule: c["settings"]["threshold"] for rule, c in choice["per_rule"].items()}
    assert per_rule == {"distortion": 3, "elle": 2, "align": 1, "underfit": 6}
    # a rule with a false flag on every candidate keeps its least-bad one, marked infeasible
    assert not choice["per_rule"]["underfit"]["feasible"]
    assert choice["per_rule"]["align"]["feasible"]


def test_an_early_flag_is_no_detection_and_a_collapse_is_no_false_flag(script) -> None:
    t = script.outcomes(replays({0: ("underfit", {"fgsm-1": [5, 10], "fgsm-2": [21]})}))
    by_run = t.set_index("run")
    assert by_run.loc["fgsm-1", "delay"] == -5 and not by_run.loc["fgsm-1", "detected"]
    assert by_run.loc["fgsm-2", "delay"] == 1 and by_run.loc["fgsm-2", "detected"]
    assert not t["false"].any() and t["collapsing"].sum() == 2
    shown = script.flag_table(replays({0: ("underfit", {"fgsm-1": [5, 10]})})).set_index("run")
    assert shown.loc["fgsm-1", ["delay", "flagged epochs"]].tolist() == [-5, "5 10"]


def test_targets_ask_eight_collapses_or_all_when_fewer(script) -> None:
    held = replays({3: ("distortion", {"fgsm-1": [10], "fgsm-2": [20]}),
                    1: ("align", {"fgsm-1": [10], "fgsm-3": [4]})})  # fmt: skip
    guarded = replays({3: ("distortion", {}), 1: ("align", {"pgd10-1": [9]})})
    guarded = guarded[guarded["method"] == "pgd10"]
    verdict = script.judged(held, guarded, COST, "distortion #3").set_index("rule")
    best = verdict.loc["distortion #3"]
    assert best["chosen"] == "best distortion (the default)" and best["targets met"] == 4
    assert best["within ±1 (required)"] == "2 (2)"  # fewer than 8 collapse: every one
    align = verdict.loc["align #1"]
    assert (align["T1"], align["T2"], align["T3"], align["T4"]) == (False, False, False, True)
    assert align["shortfall (runs)"] == 3  # one collapse missed, one false flag, PGD-10 flagged
    assert verdict.index[0] == "distortion #3"  # closest first


def test_judge_refuses_until_the_choice_is_committed(script, tmp_path) -> None:
    chosen = tmp_path / "chosen.json"
    args = ["judge", "--chosen", str(chosen), "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results"), "--epochs", "3"]  # fmt: skip
    missing = CliRunner().invoke(script.main, args)
    assert missing.exit_code == 1 and "must exist and be committed" in missing.output
    chosen.write_text(json.dumps({"epochs": 2, "tiny": True}))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    untracked = CliRunner().invoke(script.main, args)
    assert untracked.exit_code == 1 and "must exist and be committed" in untracked.output
    subprocess.run([*git, "add", "chosen.json"], check=True)
    subprocess.run([*git, "commit", "-qm", "choice"], check=True)
    # committed: judge goes on, and stops at the next check (the choice was made on 2 epochs)
    other = CliRunner().invoke(script.main, args)
    assert other.exit_code == 1 and "judge with the same --epochs" in other.output
    chosen.write_text(json.dumps({"epochs": 3, "tiny": True}))  # changed after the commit
    changed = CliRunner().invoke(script.main, args)
    assert changed.exit_code == 1 and "must exist and be committed" in changed.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_a_run_kept_in_the_archive_is_read_not_trained(script, tmp_path) -> None:
    """A comparison longer than a session: a complete run's files are kept (no checkpoints) and
    read back without training; an incomplete one is trained (here: fails, no data)."""
    name = script.run_name("fgsm", 1, 2, True)
    trained = Run.create(tmp_path / "runs" / name, make_config("mini", method="fgsm"), {}, {})
    trained.write_metrics(pd.DataFrame({"epoch": [1, 2], "test_pgd20_acc": [0.2, 0.1]}))
    (trained.path / "epoch-002.pt").write_bytes(b"weights")
    archive = tmp_path / "archive"
    kept = script.keep(trained, archive)
    assert sorted(p.name for p in kept.path.iterdir()) == ["metrics.csv", "run.json"]
    missing = str(tmp_path / "no-data")
    run = script.train(missing, tmp_path / "elsewhere", "fgsm", 1, 2, True, archive)
    assert run.path == kept.path and run.metrics().equals(trained.metrics())
    assert not (tmp_path / "elsewhere").exists()  # nothing was trained
    assert script.archived(archive, name, 3) is None  # not complete at 3 epochs: trained
    with pytest.raises(RuntimeError, match="failed"):
        script.train(missing, tmp_path / "elsewhere", "fgsm", 1, 3, True, archive)
