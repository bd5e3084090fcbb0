"""Fidelity to the code that produced the paper's numbers: each method's released optimizer (the
docs table), Table 6's network, APART's released step-size decay, and training that does not
depend on how it is observed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robdrop.analysis.trajectories import step_size_trajectories
from robdrop.cli import main
from robdrop.methods import METHODS, build_method, parse_method
from robdrop.methods.schedule import cyclic_momentum
from robdrop.study import TARGETS, Study
from robdrop.training.config import make_config
from robdrop.training.factories import method_context_for, model_for
from robdrop.training.runs import Run

from .conftest import tiny_train_args

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def recipe_table() -> dict[str, dict[str, object]]:
    """docs/design.md's "Optimizer recipes" table: method -> its row."""
    section = DESIGN.read_text().split("## Optimizer recipes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.fullmatch(r"\| `([^`]+)` \| (.+?) \| (.+?) \| (.+?) \| (.+?) \| (.+) \|", line)
        if m:
            name, lr_max, peak, momentum, decay, source = m.groups()
            cycle = re.fullmatch(r"([\d.]+) → ([\d.]+) → [\d.]+", momentum)
            rows[name] = {
                "lr_max": float(lr_max),
                "lr_peak": float(peak),
                "momentum_at_peak": float(cycle.group(2)) if cycle else None,
                "weight_decay": float(decay),
                "source": source,
            }
    return rows


def test_every_method_has_a_row_in_the_docs_table() -> None:
    table = recipe_table()
    registered = {"pgd10", "free8", "atta10", *(k for k, c in METHODS.items() if not c.number_name)}
    assert set(table) == registered


@pytest.mark.parametrize("preset", ["paper-cifar10-prn18", "paper-cifar10-wrn34", "mini"])
def test_preset_optimizers_equal_the_docs_table(preset: str) -> None:
    for method, row in recipe_table().items():
        cfg = make_config(preset, method=method)
        assert cfg.recipe == "released"
        got = {k: getattr(cfg, k) for k in ("lr_max", "lr_peak", "momentum_at_peak")}
        got["weight_decay"] = cfg.weight_decay
        assert got == {k: v for k, v in row.items() if k != "source"}, method
        assert parse_method(method).cls.recipe.source == row["source"]


def test_uniform_recipe_is_the_papers_common_one_for_every_method() -> None:
    for method in recipe_table():
        cfg = make_config("paper-cifar10-prn18", method=method, recipe="uniform")
        assert (cfg.lr_max, cfg.lr_peak, cfg.weight_decay) == (0.2, 0.5, 5e-4)
        assert cfg.momentum == 0.9 and cfg.momentum_at_peak is None
    # a value given on the command line wins over the recipe's
    assert make_config("mini", method="gradalign", lr_max=0.1).lr_max == 0.1
    assert make_config("paper-imagenet-r50", method="apart").weight_decay == 5e-4


def test_momentum_cycles_against_the_learning_rate_as_cycliclr() -> None:
    assert cyclic_momentum(0.0, 0.2, 0.9, 0.8) == 0.9
    assert cyclic_momentum(0.2, 0.2, 0.9, 0.8) == pytest.approx(0.8)
    assert cyclic_momentum(0.1, 0.2, 0.9, 0.8) == pytest.approx(0.85)
    assert cyclic_momentum(0.1, 0.2, 0.9, None) == 0.9
    assert cyclic_momentum(0.0, 0.0, 0.9, 0.8) == 0.9  # a schedule held at LR 0 (no division)


def test_a_run_records_its_recipe_and_trains_with_the_cycled_momentum(data_dir, tmp_path) -> None:
    runner = CliRunner()
    for recipe in ("released", "uniform"):
        args = tiny_train_args(data_dir, tmp_path / recipe, "fgsm", "--epochs", "2")
        result = runner.invoke(main, [*args, "--recipe", recipe, "--save-every-epoch"])
        assert result.exit_code == 0, result.output
        run = Run(tmp_path / recipe / "mini-fgsm-eps8-seed0")
        assert run.config.recipe == recipe
        lr = run.metrics().set_index("epoch").loc[1, "lr"]  # the last iteration's of epoch 1
        momentum = run.load_checkpoint(1)["optimizer"]["param_groups"][0]["momentum"]
        expected = 0.9 - 0.1 * lr / 0.2 if recipe == "released" else 0.9
        assert momentum == pytest.approx(expected) and (momentum < 0.85) == (recipe == "released")


def test_table6_trains_preact_resnet18_at_paper_scale(tmp_path) -> None:
    study = Study(tmp_path, "paper-cifar10-prn18")
    specs = TARGETS["table6"].runs(study)
    assert [s.config.model for s in specs] == ["prn18"] * 3
    assert [s.name for s in specs] == [f"paper-cifar10-prn18-{m}-eps8-seed0" for m in
                                       ("apart", "fgsm+", "apart-noinit")]  # fmt: skip
    # Table 6's APART row is Table 2's
    assert TARGETS["table2"].runs(study)[-1].name == specs[0].name


def test_apart_step_sizes_decay_as_released_or_as_the_paper_states(cifar) -> None:
    def step_decay(preset: str, **options) -> float:
        cfg = make_config(preset, method="apart", options=options or None)
        facts = {"num_classes": 10, "mean": cifar.mean, "std": cifar.std, "num_train": 8,
                 "image_shape": [3, 32, 32]}  # fmt: skip
        model = model_for(cfg, facts)
        method = build_method("apart", model, method_context_for(cfg, facts))
        return method.step_optimizer.param_groups[0]["weight_decay"]

    # λ 400 plus the model optimizer's 2e-4 at lr 0.2, measured against μ_α = 5e-8: 1,200
    assert step_decay("paper-cifar10-prn18") == pytest.approx(1200)
    assert step_decay("paper-cifar10-prn18", released_decay=False) == 400
    assert step_decay("mini") == pytest.approx(1200)  # the same λ units where μ_α is scaled
    assert step_decay("paper-imagenet-r50", released_decay=False) == 5000


def test_training_does_not_depend_on_how_it_is_observed(data_dir, tmp_path) -> None:
    """Quick check and monitor draw their random starts from generators of their own: other
    settings of both leave the trained weights (of a method that draws random numbers) alone."""
    runner = CliRunner()
    observed = [
        ("--eval-size", "64", "--eval-attack", "pgd2", "--monitor-size", "64"),
        ("--eval-size", "16", "--eval-attack", "pgd3", "--monitor-size", "16"),
        ("--eval-size", "1", "--eval-attack", "clean", "--monitor", "none"),
    ]
    weights = []
    for i, extra in enumerate(observed):
        args = tiny_train_args(data_dir, tmp_path / str(i), "ffgsm", "--epochs", "2", *extra)
        assert runner.invoke(main, args, catch_exceptions=False).exit_code == 0
        weights.append(Run(tmp_path / str(i) / "mini-ffgsm-eps8-seed0").load_checkpoint()["model"])
    assert "monitor_gap" in Run(tmp_path / "0" / "mini-ffgsm-eps8-seed0").metrics()
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0])


def test_figure4_starts_at_epoch_0_with_the_initial_step_sizes(data_dir, tmp_path) -> None:
    args = tiny_train_args(data_dir, tmp_path, "apart", "--epochs", "2", "--save-every-epoch")
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    frame = step_size_trajectories(Run(tmp_path / "mini-apart-eps8-seed0"))
    assert sorted(frame["epoch"].unique()) == [0, 1, 2]
    start = frame[frame["epoch"] == 0].set_index("step")["value"]
    assert start["input"] == 1e-4 and start["omega"] == 1e-4 and start["block1"] == 0.0
