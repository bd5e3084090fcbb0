"""The underfitting monitor on tiny real runs: its columns, its rule, warn / stop / best.pt."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from robdrop.cli import main
from robdrop.training.monitor.rule import UnderfitRule
from robdrop.training.runs import Run

from .conftest import tiny_train_args

COLUMNS = ("monitor_gap", "monitor_robust_acc", "monitor_own_acc", "monitor_random_acc")


def train(data_dir, out, method, *extra):
    args = tiny_train_args(data_dir, out, method, "--monitor", "pgd2", "--monitor-size", "32")
    return CliRunner().invoke(main, [*args, *extra])


def test_monitor_writes_its_columns_every_epoch(data_dir, tmp_path) -> None:
    result = train(data_dir, tmp_path, "fgsm", "--epochs", "2")
    assert result.exit_code == 0, result.output
    metrics = Run(tmp_path / "mini-fgsm-eps8-seed0").metrics()
    for column in (*COLUMNS, "monitor_seconds", "monitor_flag"):
        assert column in metrics.columns
    assert metrics["monitor_robust_acc"].between(0, 1).all()
    # the strongest attack of the three leaves the model least accurate
    assert (metrics["monitor_robust_acc"] <= metrics["monitor_random_acc"]).all()
    assert not (tmp_path / "mini-fgsm-eps8-seed0" / "best.pt").exists()  # warn keeps no best.pt
    assert "monitor_best_acc" not in metrics  # nor measures what would pick it


def test_stop_ends_the_run_at_the_second_underfit_epoch_keeps_best_and_resume_does_not_continue(
    data_dir, tmp_path
) -> None:
    always = ("--monitor-rule", "noise_margin=-1", "--on-underfit", "stop", "--epochs", "4")
    result = train(data_dir, tmp_path, "fgsm", *always, "--save-every-epoch")
    assert result.exit_code == 0, result.output
    run = Run(tmp_path / "mini-fgsm-eps8-seed0")
    metrics = run.metrics()
    # every epoch after the warm-up (4 · 0.25 = 1) looks underfit; the flag needs two of them
    assert run.epochs() == [1, 2, 3] and metrics["monitor_flag"].fillna("").tolist() == [
        "",
        "",
        "noise",
    ]
    assert json.loads((run.path / "run.json").read_text())["stopped"] == {
        "epoch": 3,
        "reason": "noise",
    }
    best = run.load_best()
    assert best["measured_by"] == "monitor_best_acc"  # the best probe, not the gap's 32 images
    probe = metrics.set_index("epoch")["monitor_best_acc"]
    assert best["epoch"] == probe[probe == probe.max()].index[-1]  # ties go to the later epoch
    weights = run.load_checkpoint(best["epoch"])["model"]
    assert all(torch.equal(best["model"][k], weights[k]) for k in weights)
    resumed = train(data_dir, tmp_path, "fgsm", *always, "--save-every-epoch", "--resume")
    assert resumed.exit_code == 0 and Run(run.path).epochs() == [1, 2, 3]


def test_ignore_stop_continues_a_stopped_run_as_if_the_flag_had_only_kept_best_pt(
    data_dir, tmp_path
) -> None:
    always = ("--monitor-rule", "noise_margin=-1", "--epochs", "5", "--save-every-epoch")
    stopped = train(data_dir, tmp_path / "stop", "fgsm", *always, "--on-underfit", "stop")
    assert stopped.exit_code == 0, stopped.output
    run = Run(tmp_path / "stop" / "mini-fgsm-eps8-seed0")
    assert run.epochs() == [1, 2, 3] and run.info["stopped"]["epoch"] == 3
    asked = (*always, "--on-underfit", "stop")
    without_resume = train(data_dir, tmp_path / "stop", "fgsm", *asked, "--ignore-stop")
    assert without_resume.exit_code == 1 and "--resume" in without_resume.output
    resumed = train(data_dir, tmp_path / "stop", "fgsm", *asked, "--resume", "--ignore-stop")
    assert resumed.exit_code == 0, resumed.output
    run = Run(run.path)
    assert run.epochs() == [1, 2, 3, 4, 5] and "stopped" not in run.info
    assert run.info["stop_ignored"] == {"epoch": 3, "reason": "noise"}
    again = train(data_dir, tmp_path / "stop", "fgsm", *asked, "--resume")  # complete: no-op
    assert again.exit_code == 0 and Run(run.path).epochs() == [1, 2, 3, 4, 5]
    assert run.metrics()["monitor_flag"].tolist()[3:] == ["noise", "noise"]  # not stopped
    # the same weights, metrics and best.pt as a run whose flag never stopped it
    kept = train(data_dir, tmp_path / "best", "fgsm", *always, "--on-underfit", "best")
    assert kept.exit_code == 0, kept.output
    other = Run(tmp_path / "best" / "mini-fgsm-eps8-seed0")
    ours, theirs = run.load_checkpoint(5)["model"], other.load_checkpoint(5)["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    drop = [c for c in run.metrics() if "seconds" in c]
    assert run.metrics().drop(columns=drop).equals(other.metrics().drop(columns=drop))
    assert run.load_best()["epoch"] == other.load_best()["epoch"]


def test_live_flags_equal_the_rule_replayed_over_the_recorded_columns(data_dir, tmp_path) -> None:
    rule = {"gap_factor": 0.5, "gap_min": -1, "acc_drop": 2, "noise_margin": -1, "warmup": 0}
    pairs = [arg for key, value in rule.items() for arg in ("--monitor-rule", f"{key}={value}")]
    result = train(data_dir, tmp_path, "fgsm", *pairs, "--epochs", "3")
    assert result.exit_code == 0, result.output
    rows = Run(tmp_path / "mini-fgsm-eps8-seed0").metrics().to_dict("records")
    replayed = UnderfitRule(**rule).replay(rows, 3)
    assert [
        r["monitor_flag"] if isinstance(r["monitor_flag"], str) else "" for r in rows
    ] == replayed
    # every epoch looks underfit, so the flags say something: none at 1, then two in a row
    assert replayed[0] == "" and "" not in replayed[1:]


@pytest.mark.parametrize(
    ("best_size", "column"), [("48", "monitor_best_acc"), ("0", "monitor_robust_acc")]
)
def test_best_keeps_training_and_the_most_robust_epoch(
    data_dir, tmp_path, best_size, column
) -> None:
    args = ("--on-underfit", "best", "--epochs", "2", "--save-every-epoch")
    result = train(data_dir, tmp_path, "ffgsm", *args, "--best-size", best_size)
    assert result.exit_code == 0, result.output
    run = Run(tmp_path / "mini-ffgsm-eps8-seed0")
    metrics = run.metrics().set_index("epoch")
    assert run.epochs() == [1, 2]
    best = run.load_best()
    assert best["measured_by"] == column
    assert metrics.loc[best["epoch"], column] == metrics[column].max()
    assert (column == "monitor_best_acc") == ("monitor_best_seconds" in metrics)
    # the analyses name this choice probe-best (best.pt's epoch) beside val-best
    from robdrop.analysis import resolve_epochs

    assert resolve_epochs(run, "probe-best") == [best["epoch"]]


def test_a_run_begun_before_the_best_probe_existed_keeps_picking_by_the_gap_probe(
    data_dir, tmp_path
) -> None:
    args = ("--on-underfit", "best", "--save-every-epoch", "--epochs", "2")
    assert train(data_dir, tmp_path, "fgsm", *args, "--best-size", "0").exit_code == 0
    folder = tmp_path / "mini-fgsm-eps8-seed0"
    (folder / "epoch-002.pt").unlink()  # as if killed during epoch 2
    info = json.loads((folder / "run.json").read_text())
    for key in ("best_size", "best_attack"):  # as written before these settings existed
        del info["config"][key]
    (folder / "run.json").write_text(json.dumps(info))
    resumed = train(data_dir, tmp_path, "fgsm", *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    run = Run(tmp_path / "mini-fgsm-eps8-seed0")
    assert run.metrics()["monitor_best_acc"].isna().tolist() == [True, False]
    assert run.load_best()["measured_by"] == "monitor_robust_acc"


def test_an_epoch_looks_underfit_on_a_gap_jump_with_falling_robustness_or_at_noise_level() -> None:
    rule = UnderfitRule()
    healthy = {"epoch": 9, "monitor_own_acc": 0.2, "monitor_random_acc": 0.3, "monitor_gap": 0.6}
    history = [{**healthy, "epoch": e, "monitor_robust_acc": 0.14} for e in range(1, 9)]
    row = {**healthy, "monitor_robust_acc": 0.12}
    assert rule.signs(row, history, 30) == ""
    jump = {**row, "monitor_gap": 1.0, "monitor_robust_acc": 0.08}  # 1.67 × median, +0.4 nats
    assert rule.signs(jump, history, 30) == "gap"
    assert rule.signs({**jump, "monitor_robust_acc": 0.12}, history, 30) == ""  # robust holds
    assert rule.signs({**jump, "monitor_gap": 0.85}, history, 30) == ""  # +0.25 nats only
    assert rule.signs({**jump, "epoch": 7}, history[:6], 30) == ""  # warm-up: 7 ≤ 0.25 · 30
    noise = {**row, "monitor_own_acc": 0.36}
    assert rule.signs(noise, history, 30) == "noise"
    assert rule.signs({**jump, "monitor_own_acc": 0.36}, history, 30) == "gap+noise"


def test_rule_flags_an_epoch_only_when_another_of_the_last_three_looked_underfit() -> None:
    rule = UnderfitRule()
    base = {"monitor_own_acc": 0.2, "monitor_random_acc": 0.3, "monitor_gap": 0.6}
    base["monitor_robust_acc"] = 0.14
    history = [{**base, "epoch": e} for e in range(1, 9)]
    noise = {**base, "epoch": 9, "monitor_own_acc": 0.36}
    assert rule.signs(noise, history, 30) == "noise" and rule.check(noise, history, 30) == ""
    history.append(noise)
    for gap in range(2):  # one healthy epoch in between still counts, two do not
        later = {**noise, "epoch": 10 + gap}
        assert rule.check(later, history, 30) == "noise"
        history.append({**base, "epoch": 10 + gap})
    assert rule.check({**noise, "epoch": 12}, history, 30) == ""
    assert UnderfitRule(persist=1).check({**noise, "epoch": 12}, history, 30) == "noise"
    with pytest.raises(ValueError, match="persist"):
        UnderfitRule(persist=4)


def test_monitor_without_held_out_images_fails_with_one_sentence(data_dir, tmp_path) -> None:
    result = train(data_dir, tmp_path, "fgsm", "--val-size", "0")
    assert result.exit_code == 1 and "--val-size" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [["--monitor", "pgdx"], ["--monitor-rule", "nosuch=1"]])
def test_bad_monitor_settings_fail_early(bad, data_dir, tmp_path) -> None:
    args = tiny_train_args(data_dir, tmp_path, "fgsm", *bad)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and not any(tmp_path.iterdir())


def test_one_rule_picks_the_best_epoch_for_best_pt_and_the_analyses():
    import pandas as pd

    from robdrop.training.best import best_epoch

    assert best_epoch(pd.Series([0.1, 0.3, 0.2, 0.3], index=[1, 2, 3, 4])) == 4  # ties: later
    assert best_epoch(pd.Series([0.5, 0.3], index=[1, 2])) == 1
