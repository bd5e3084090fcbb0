"""Analyses over two tiny real 3-epoch runs (FGSM and PGD-2): evaluation, strength gap, cross
accuracy, "best", caching, trajectories, the ε sweep and their CLI commands."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from robdrop.analysis import (
    cache,
    cross_accuracy,
    evaluate_run,
    fixed_test_subset,
    perturbation_images,
    resolve_run,
    step_size_trajectories,
    strength_gap,
    val_best_epoch,
)
from robdrop.analysis.common import Checkpoint, eval_locked, own_perturbation, run_data
from robdrop.attacks import PGD, make_attack
from robdrop.attacks.evaluate import accuracy_under
from robdrop.cli import main
from robdrop.study.sweep import eps_sweep
from robdrop.training.runs import Run

from .conftest import tiny_train_args

EPS = 8 / 255


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: tiny models gain nothing from two, and on a shared, busy machine
    two spinning OpenMP threads made these tests up to 100 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def out(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with mini-fgsm-… and mini-pgd2-…, 3 epochs each, every checkpoint kept."""
    root = tmp_path_factory.mktemp("runs")
    for method in ("fgsm", "pgd2"):
        args = tiny_train_args(data_dir, root, method, "--epochs", "3", "--save-every-epoch")
        result = cli(*args)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def fgsm(out: Path) -> Run:
    return Run(out / "mini-fgsm-eps8-seed0")


@pytest.fixture(scope="module")
def pgd(out: Path) -> Run:
    return Run(out / "mini-pgd2-eps8-seed0")


def copy_run(run: Run, dest: Path, **config) -> Run:
    """A copy of `run` (checkpoints and cache, mtimes kept) with some config values changed."""
    shutil.copytree(run.path, dest)
    info = json.loads((dest / "run.json").read_text())
    info["config"].update(config)
    (dest / "run.json").write_text(json.dumps(info))
    return Run(dest)


def test_gap_has_a_row_per_epoch_and_is_the_difference_of_two_losses(fgsm):
    table = strength_gap(fgsm, to="pgd2", n=32, seed=0, device="cpu")
    assert list(table["epoch"]) == [1, 2, 3]
    model, _ = fgsm.load(2)
    x, y = fixed_test_subset(fgsm, 32, 0)
    x = x.float() / 255
    torch.manual_seed(0)
    delta_b = make_attack("pgd2", EPS)(model, x, y)
    delta_a = make_attack("fgsm", EPS)(model, x, y)  # FGSM's own generator, in eval mode
    with torch.no_grad():
        loss_a = F.cross_entropy(model(x + delta_a), y).item()
        loss_b = F.cross_entropy(model(x + delta_b), y).item()
    row = table.set_index("epoch").loc[2]
    assert row["loss_A"] == pytest.approx(loss_a, abs=1e-5)
    assert row["loss_B"] == pytest.approx(loss_b, abs=1e-5)
    assert row["gap"] == pytest.approx(loss_b - loss_a, abs=1e-5)


def fresh_copy(run: Run, dest: Path, **config) -> Run:
    """A copy of `run` without its analysis cache."""
    copy = copy_run(run, dest, **config)
    shutil.rmtree(copy.path / "analysis", ignore_errors=True)
    return copy


def test_a_pgd20_evaluation_gives_pgd10_as_pgd10_alone_does(fgsm, tmp_path, monkeypatch):
    """PGD-20 passes through PGD-10 and caches its result on the way, the same bit for bit."""
    alone = evaluate_run(fresh_copy(fgsm, tmp_path / "a" / fgsm.name), ["pgd10"], n=32)
    shared = fresh_copy(fgsm, tmp_path / "b" / fgsm.name)
    evaluate_run(shared, ["pgd20"], n=32)

    def attacked_again(*args, **kwargs):
        raise AssertionError("PGD-10 was computed again")

    monkeypatch.setattr(PGD, "iterates", attacked_again)
    pd.testing.assert_frame_equal(evaluate_run(shared, ["pgd10"], n=32), alone)


@pytest.mark.parametrize("which", ["fgsm", "pgd"])
def test_the_gap_reads_pgd10_off_the_curves_and_equals_the_gap_alone(
    which, fgsm, pgd, tmp_path, monkeypatch
):
    """FGSM's generator draws no random numbers, so its gap reads f_B's loss off the PGD-20
    evaluation; PGD-2's draws its start, which would shift f_B's starts, so its gap attacks
    again. Either way the gap is the one computed alone (over four batches, so that draws
    between them would show)."""
    run = {"fgsm": fgsm, "pgd": pgd}[which]
    alone = strength_gap(
        fresh_copy(run, tmp_path / "a" / run.name, eval_batch_size=8), "pgd10", n=32
    )
    shared = fresh_copy(run, tmp_path / "b" / run.name, eval_batch_size=8)
    evaluate_run(shared, ["pgd20"], n=32)
    steps, perturb = [], PGD.perturb

    def counting(self, *args, **kwargs):
        steps.append(self.steps)
        return perturb(self, *args, **kwargs)

    monkeypatch.setattr(PGD, "perturb", counting)
    pd.testing.assert_frame_equal(strength_gap(shared, "pgd10", n=32), alone)
    assert (10 in steps) == (which == "pgd")


def test_own_generator_runs_in_eval_mode_and_leaves_batchnorm_statistics_alone(pgd, cifar):
    ckpt = Checkpoint(pgd, 3, torch.device("cpu"))
    x, y = cifar.test_x[:8].float() / 255, cifar.test_y[:8]
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    own_perturbation(ckpt, x, y)
    assert not ckpt.model.training
    assert all(torch.equal(before[k], v) for k, v in ckpt.model.state_dict().items())
    with eval_locked(ckpt.model):
        ckpt.model.train()
        assert not ckpt.model.training
    ckpt.model.train()
    assert ckpt.model.training  # unlocked again


def test_reading_a_checkpoint_leaves_the_seeded_random_numbers_alone(pgd):
    """Building the model before its weights are loaded draws initial weights; read first inside
    a seeded evaluation, it must not shift that evaluation's random starts."""
    state = torch.get_rng_state()
    assert Checkpoint(pgd, 3, torch.device("cpu")).model is not None
    assert torch.equal(torch.get_rng_state(), state)


def test_crossacc_with_random_perturbations_equals_the_random_column(fgsm, pgd):
    table = cross_accuracy(pgd, 3, source_run=fgsm, perturb="random", n=48, device="cpu")
    assert list(table["epoch"]) == [1, 2, 3]
    assert (table["accuracy"] == table["random_accuracy"]).all()
    assert table["model"].iloc[0] == f"{pgd.name}@3"


def test_stronger_attacks_give_lower_accuracy_on_the_same_checkpoint(pgd):
    table = evaluate_run(pgd, ["clean", "pgd10", "pgd20"], "last", n=32, device="cpu")
    acc = table.set_index("attack")["accuracy"]
    assert acc["pgd20"] <= acc["pgd10"] <= acc["clean"]
    assert set(table["epoch"]) == {3} and set(table["n"]) == {32}
    assert (table["seconds"] == pgd.metrics().set_index("epoch").loc[3, "seconds"]).all()


def test_cache_is_reused_and_recomputed_when_a_checkpoint_changes(fgsm, tmp_path, monkeypatch):
    run = copy_run(fgsm, tmp_path / fgsm.name)
    first = evaluate_run(run, ["clean", "gauss"], n=32, device="cpu")
    loaded = []
    real_load = Run.load

    def counting_load(self, epoch=None, device="cpu"):
        loaded.append(epoch)
        return real_load(self, epoch, device)

    monkeypatch.setattr(Run, "load", counting_load)
    pd.testing.assert_frame_equal(evaluate_run(run, ["clean", "gauss"], n=32, device="cpu"), first)
    assert loaded == []
    files = sorted((run.path / "analysis" / "accuracy").iterdir())
    ckpt = run.checkpoint_path(2)
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    again = evaluate_run(run, ["clean", "gauss"], n=32, device="cpu")
    assert loaded == [2]
    pd.testing.assert_frame_equal(again, first)
    assert len(sorted((run.path / "analysis" / "accuracy").iterdir())) == len(files)


def test_entries_of_an_older_cache_format_are_not_read(fgsm, tmp_path, monkeypatch):
    """Raising CACHE_FORMAT (the same call now computes other numbers) makes every entry
    written before it be computed again instead of read."""
    run = copy_run(fgsm, tmp_path / fgsm.name)
    params, calls = {"n": 1}, []

    def compute() -> pd.DataFrame:
        calls.append(cache.CACHE_FORMAT)
        return pd.DataFrame({"value": [float(len(calls))]})

    monkeypatch.setattr(cache, "CACHE_FORMAT", 1)
    old = cache.cached(run, "probe", params, [run.checkpoint_path(2)], compute)
    assert cache.cached(run, "probe", params, [run.checkpoint_path(2)], compute).equals(old)
    monkeypatch.setattr(cache, "CACHE_FORMAT", 2)
    new = cache.cached(run, "probe", params, [run.checkpoint_path(2)], compute)
    assert calls == [1, 2] and new["value"].item() == 2.0


def test_best_is_chosen_on_the_validation_split(pgd, tmp_path):
    chosen = val_best_epoch(pgd, attack="pgd2", device="cpu")
    data = run_data(pgd)
    assert len(data.val_y) == 64
    attack, accuracies = make_attack("pgd2", EPS), []
    for epoch in pgd.epochs():
        torch.manual_seed(0)
        accuracies.append(accuracy_under(pgd.load(epoch)[0], attack, data.val_x, data.val_y))
    latest_best = max(i for i, a in enumerate(accuracies) if a == max(accuracies))
    assert chosen == pgd.epochs()[latest_best]  # the later epoch on ties, as best.pt
    no_val = copy_run(pgd, tmp_path / "no-val", val_size=0)
    with pytest.raises(ValueError, match="'best' needs a held-out validation split"):
        evaluate_run(no_val, epochs="best", device="cpu")


def test_runs_resolve_by_method_name_and_ambiguity_is_reported(fgsm, out, tmp_path):
    assert resolve_run("fgsm", out, "mini").path == fgsm.path
    root = tmp_path / "runs"
    # several runs: the one with the preset's ε and seed (mini: 8/255, seed 1) is taken
    copy_run(fgsm, root / "a", seed=1)
    copy_run(fgsm, root / "b", eps255=4.0, seed=1)
    assert resolve_run("fgsm", root, "mini").name == "a"
    copy_run(fgsm, root / "c", seed=1)
    with pytest.raises(ValueError, match="several fgsm runs"):
        resolve_run("fgsm", root, "mini")
    with pytest.raises(ValueError, match="no pgd10 run with preset mini"):
        resolve_run("pgd10", root, "mini")


def test_step_sizes_and_perturbation_images(fgsm, tmp_path):
    with pytest.raises(ValueError, match="learns no step sizes"):
        step_size_trajectories(fgsm)
    run = copy_run(fgsm, tmp_path / "apart-like")
    metrics = run.metrics().assign(alpha_input=[0.01, 0.02, 0.03], alpha_block1=[0.0, 0.1, 0.2])
    run.write_metrics(metrics)
    tidy = step_size_trajectories(run)
    assert set(tidy["step"]) == {"input", "block1"} and len(tidy) == 6
    assert tidy.query("step == 'block1' and epoch == 3")["value"].item() == 0.2
    images, deltas = perturbation_images(fgsm, [1, 3], n_images=2, device="cpu")
    assert images.shape == (2, 32, 32, 3) and sorted(deltas) == [1, 3]
    assert all(d.shape == images.shape and abs(d).max() <= EPS + 1e-6 for d in deltas.values())


def test_cli_commands_print_their_tables(out):
    common = ["--preset", "mini", "--out", str(out), "--device", "cpu"]
    result = cli(
        "eval", "pgd2", "--attack", "clean", "-a", "fgsm", "--epochs", "1,3", "--n", "32", *common
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "mini-pgd2-eps8-seed0" in result.output
    result = cli("gap", "--from", "fgsm", "--to", "pgd2", "--n", "16", *common)
    assert result.exit_code == 0, result.output
    assert "loss_A" in result.output and "█" in result.output
    result = cli(
        "crossacc", "--model", "pgd2@3", "--perturb", "own", "--source", "fgsm", "--n", "16",
        "--epochs", "last", *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "random_accuracy" in result.output and "mini-pgd2-eps8-seed0@3" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "nosuch"], "'nosuch' is neither a run folder"),
        (["eval", "fgsm", "--epochs", "7"], "has no checkpoint for epoch 7"),
        (["eval", "fgsm", "--attack", "pgdx"], "unknown attack 'pgdx'"),
        (["gap", "--from", "fgsm", "--n", "0"], "n must be between 1 and"),
        (["crossacc", "--model", "pgd2@x", "--source", "fgsm"], "epochs must be all, last"),
    ],
)
def test_bad_input_is_one_sentence(args, message, out):
    result = cli(*args, "--preset", "mini", "--out", str(out), "--device", "cpu")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_eps_sweep_trains_each_budget_once_and_evaluates_at_8(data_dir, tmp_path, monkeypatch):
    config = {
        "data_dir": str(data_dir), "train_size": 256, "val_size": 64, "width": 4, "epochs": 1,
        "eval_size": 16, "eval_attack": "clean", "batch_size": 64,
    }  # fmt: skip
    table = eps_sweep(["fgsm"], [2, 4], "mini", tmp_path, config=config, n=16, progress=False)
    assert list(table.columns) == ["method", "eps_train", "clean", "pgd20", "run"]
    assert list(table["eps_train"]) == [2.0, 4.0]
    assert (table["pgd20"] <= table["clean"]).all()
    monkeypatch.setattr(
        "robdrop.training.trainer.Trainer.fit", lambda self: pytest.fail("retrained")
    )
    again = eps_sweep(["fgsm"], [2, 4], "mini", tmp_path, config=config, n=16, progress=False)
    pd.testing.assert_frame_equal(again, table)
    settings = [f"--set={k}={v}" for k, v in config.items() if k not in ("data_dir", "epochs")]
    result = cli(
        "sweep", "-m", "fgsm", "--eps", "2,4", "--preset", "mini", "--out", str(tmp_path),
        "--epochs", "1", "--data-dir", str(data_dir), "--n", "16", "-q", *settings,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mini-fgsm-eps4-seed1" in result.output and "pgd20" in result.output


def test_lasting_collapse_needs_the_fall_below_a_quarter_of_the_best_to_last():
    from robdrop.study.study import lasting_collapse

    def curve(*values: float) -> pd.Series:
        return pd.Series(values, index=range(1, len(values) + 1))

    assert lasting_collapse(curve(0.1, 0.3, 0.35, 0.2, 0.05, 0.3, 0.05, 0.04, 0.03)) == 7
    assert lasting_collapse(curve(0.1, 0.3, 0.35, 0.05, 0.3)) is None  # it recovers
    assert lasting_collapse(curve(0.1, 0.3, 0.35)) is None  # best at the end
    assert lasting_collapse(curve(0.4, 0.2, 0.11)) is None  # halved, not quartered
    assert lasting_collapse(curve(0.4, 0.2, 0.09)) == 3
