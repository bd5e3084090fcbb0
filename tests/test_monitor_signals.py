"""The monitor's signals (one registry), their rules and replay: every signal measured on real
held-out images leaves training, the model and its inputs alone; each signal's value is checked
where it is known exactly; rules replay over hand-made rows and over a run folder."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robdrop.cli import main
from robdrop.methods import MethodContext, build_method
from robdrop.training.monitor.align import GradientAlignment
from robdrop.training.monitor.distortion import BoundaryDistortion
from robdrop.training.monitor.elle import LocalLinearity
from robdrop.training.monitor.replay import replay_run
from robdrop.training.monitor.rule import AlignRule, DistortionRule, ElleRule, make_rule
from robdrop.training.monitor.signals import SIGNALS, parse_monitor
from robdrop.training.runs import Run

from .conftest import fit_a_little, tiny_train_args

EPS = 8 / 255
# the columns of the gap signal, under the names they had before there were other signals
GAP_COLUMNS = {"monitor_gap", "monitor_robust_acc", "monitor_own_acc", "monitor_random_acc"}


def probe(cifar, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` held-out training images (uint8) and labels, as the monitor takes them."""
    return cifar.val_x[:n], cifar.val_y[:n]


def measured(signal, model: nn.Module, cifar) -> dict[str, float]:
    """The signal's columns for `model`, with FGSM as the method (the gap signal needs one)."""
    ctx = MethodContext(EPS, cifar.num_train, cifar.image_shape)
    return signal.measure(model, build_method("fgsm", model, ctx), torch.device("cpu"))


def signal_for(name: str, cifar):
    x, y = probe(cifar)
    return SIGNALS[name].create(EPS, x, y, seed=3, attack="pgd2")


@pytest.fixture(scope="module")
def fitted(cifar) -> nn.Module:
    """A tiny PreAct ResNet fitted a few steps, so input gradients mean something."""
    torch.manual_seed(0)
    from robdrop.models import build_model

    model = build_model("prn18", 10, cifar.mean, cifar.std, width=4)
    return fit_a_little(model, cifar, steps=10)


@pytest.mark.parametrize("name", list(SIGNALS))
def test_every_signal_writes_finite_columns_and_its_cost_and_leaves_everything_alone(
    name, cifar, fitted
) -> None:
    signal = signal_for(name, cifar)
    x, y = signal.x.clone(), signal.y.clone()
    buffers = {k: v.clone() for k, v in fitted.state_dict().items()}
    for training in (True, False):
        fitted.train(training)
        rng = torch.get_rng_state()
        columns = measured(signal, fitted, cifar)
        assert torch.equal(torch.get_rng_state(), rng)  # the training RNG is untouched
        assert fitted.training is training  # the model's mode is restored
    assert torch.equal(signal.x, x) and torch.equal(signal.y, y)  # inputs are not mutated
    assert all(torch.equal(v, buffers[k]) for k, v in fitted.state_dict().items())  # nor BN
    assert signal.cost_column in columns and columns[signal.cost_column] >= 0
    values = {k: v for k, v in columns.items() if k != signal.cost_column}
    if name == "gap":
        assert set(values) == GAP_COLUMNS and signal.cost_column == "monitor_seconds"
    else:
        assert values and all(k.startswith(f"monitor_{name}_") for k in values)
        assert signal.cost_column == f"monitor_{name}_seconds"
    assert all(math.isfinite(v) for v in values.values())
    again = measured(signal, fitted, cifar)  # its own seeded generator: the same numbers
    assert {k: again[k] for k in values} == values


@pytest.fixture(scope="module")
def unobserved_weights(data_dir, tmp_path_factory) -> dict[str, torch.Tensor]:
    """F+FGSM's weights (a method drawing random numbers) trained with the monitor off."""
    out = tmp_path_factory.mktemp("off")
    args = tiny_train_args(data_dir, out, "ffgsm", "--epochs", "2", "--monitor", "none")
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    return Run(out / "mini-ffgsm-eps8-seed0").load_checkpoint()["model"]


@pytest.mark.parametrize("name", list(SIGNALS))
def test_training_is_bit_identical_with_and_without_each_signal(
    name, data_dir, tmp_path, unobserved_weights
) -> None:
    extra = ("--epochs", "2", "--monitor", name, "--monitor-size", "16")
    args = tiny_train_args(data_dir, tmp_path, "ffgsm", *extra)
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    run = Run(tmp_path / "mini-ffgsm-eps8-seed0")
    weights = run.load_checkpoint()["model"]
    assert all(torch.equal(weights[k], unobserved_weights[k]) for k in weights)
    columns = run.metrics().filter(like="monitor_").drop(columns="monitor_flag")
    assert len(columns) == 2 and columns.notna().all().all()
    assert json.loads((run.path / "run.json").read_text())["monitor"]["signals"] == [name]


def test_the_best_probe_leaves_training_alone_and_picks_best_pt_without_the_gap_signal(
    data_dir, tmp_path, unobserved_weights
) -> None:
    extra = ("--epochs", "2", "--monitor", "align", "--monitor-size", "16")
    keep = ("--on-underfit", "best", "--best-size", "48", "--best-attack", "pgd3")
    args = tiny_train_args(data_dir, tmp_path, "ffgsm", *extra, *keep, "--monitor-every", "2")
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    run = Run(tmp_path / "mini-ffgsm-eps8-seed0")
    weights = run.load_checkpoint()["model"]
    assert all(torch.equal(weights[k], unobserved_weights[k]) for k in weights)
    metrics = run.metrics().set_index("epoch")
    assert metrics["monitor_best_acc"].between(0, 1).all()
    assert run.load_best()["epoch"] == metrics["monitor_best_acc"][::-1].idxmax()
    assert "monitor_best_acc" not in run.monitor_rows()  # measured after epochs only
    # without the best probe, best.pt needs the gap signal's accuracy
    result = CliRunner().invoke(main, [*args, "--best-size", "0", "--out", str(tmp_path / "b")])
    assert result.exit_code != 0 and "add gap to --monitor" in result.output


class Linear(nn.Module):
    """logits = W·x + b on the flattened image: its input gradients barely turn in the ε-ball."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


class Wiggly(Linear):
    """logits = W·sin(k·x): curved at the scale of ε, so gradients in the ball are unrelated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.sin(2000 * x).flatten(1))


def test_gradient_alignment_is_one_for_a_linear_model_and_low_for_a_curved_one(cifar) -> None:
    align = GradientAlignment(EPS, *probe(cifar), seed=0)
    linear = align.values(Linear(), torch.device("cpu"))["cos"]
    wiggly = align.values(Wiggly(), torch.device("cpu"))["cos"]
    assert linear == pytest.approx(1, abs=1e-3)
    assert wiggly < 0.3 < linear


def negative_true_logit(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean"):
    """−z_y: a loss linear in the logits, hence in x for a linear model."""
    loss = -logits.gather(1, y[:, None]).squeeze(1)
    return loss.mean() if reduction == "mean" else loss


def test_elle_is_zero_where_the_loss_is_linear_and_grows_with_curvature(cifar) -> None:
    x, y = probe(cifar)
    linear_loss = LocalLinearity(EPS, x, y, loss=negative_true_logit)
    assert linear_loss.values(Linear(), torch.device("cpu"))["error"] < 1e-9  # exactly linear
    elle = LocalLinearity(EPS, x, y)
    cross_entropy = elle.values(Linear(), torch.device("cpu"))["error"]
    assert cross_entropy < 1e-3 < elle.values(Wiggly(), torch.device("cpu"))["error"]


class Distorted(nn.Module):
    """Right on its probe images except at an ∞-distance strictly between `lo` and `hi` from
    them; a tiny linear part gives FGSM a direction."""

    def __init__(self, clean: torch.Tensor, y: torch.Tensor, lo: float, hi: float) -> None:
        super().__init__()
        self.clean, self.y, self.lo, self.hi = clean, y, lo, hi
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = (x - self.clean).flatten(1).abs().amax(1)
        wrong = (distance > self.lo) & (distance < self.hi)
        sign = 1 - 2 * wrong.float()
        return 10 * sign[:, None] * nn.functional.one_hot(self.y, 10) + 1e-3 * self.fc(x.flatten(1))


def test_distortion_counts_images_right_under_fgsm_but_wrong_on_the_way(cifar) -> None:
    x, y = probe(cifar)
    clean = x.float() / 255
    signal = BoundaryDistortion(EPS, x, y, steps=10)
    cpu = torch.device("cpu")
    # wrong for t in (0.3, 0.9), right at t = 0 and t = 1: every image has a distorted interval
    assert signal.values(Distorted(clean, y, 0.3 * EPS, 0.9 * EPS), cpu) == {
        "fraction": 1.0,
        "fgsm_acc": 1.0,
    }
    # wrong from 0.3 ε on, FGSM included: no distortion, FGSM accuracy 0
    assert signal.values(Distorted(clean, y, 0.3 * EPS, 2 * EPS), cpu) == {
        "fraction": 0.0,
        "fgsm_acc": 0.0,
    }
    assert signal.values(Distorted(clean, y, 2 * EPS, 3 * EPS), cpu)["fraction"] == 0.0


def test_signal_options_are_checked(cifar) -> None:
    x, y = probe(cifar)
    assert LocalLinearity(EPS, x, y, draws=2).options["draws"] == 2
    with pytest.raises(ValueError, match="at least 1"):
        BoundaryDistortion(EPS, x, y, steps=0)
    with pytest.raises(ValueError, match="no option"):
        GradientAlignment(EPS, x, y, draws=2)
    with pytest.raises(ValueError, match="--val-size"):
        LocalLinearity(EPS, x[:0], y[:0])


def rows(column: str, values: list[float]) -> list[dict[str, float]]:
    return [{"epoch": e, column: v} for e, v in enumerate(values, start=1)]


def test_threshold_rules_replay_after_the_warm_up_and_with_persistence() -> None:
    # 8 epochs, warm-up 0.25 · 8 = 2: epoch 2's low value is not a sign
    cos = rows("monitor_align_cos", [0.9, 0.1, 0.9, 0.2, 0.8, 0.3, 0.1, math.nan])
    assert AlignRule().replay(cos, 8) == ["", "", "", "", "", "align", "align", ""]
    assert AlignRule(persist=1).replay(cos, 8) == ["", "", "", "align", "", "align", "align", ""]
    assert AlignRule(threshold=0.25, persist=1).replay(cos, 8)[3:] == ["align", "", "", "align", ""]
    error = rows("monitor_elle_error", [0.0, 0.5, 0.01, 0.2, 0.3, 0.02])
    assert ElleRule(warmup=0).replay(error, 6) == ["", "", "", "elle", "elle", ""]
    distorted = rows("monitor_distortion_fraction", [0.5, 0.0, 0.2, 0.3])
    assert DistortionRule(threshold=0.25, warmup=0).replay(distorted, 4)[-1] == ""
    assert DistortionRule(warmup=0).replay(distorted, 4) == ["", "", "distortion", "distortion"]


def test_rules_are_chosen_by_name_and_check_their_signal_is_measured() -> None:
    assert make_rule({}, ("gap", "align")).name == "underfit"
    assert make_rule({}, ("align", "elle")).name == "align"  # without gap: the first signal's
    rule = make_rule({"rule": "elle", "threshold": 0.5, "persist": 1}, ("elle",))
    assert (rule.name, rule.threshold, rule.persist) == ("elle", 0.5, 1)
    with pytest.raises(ValueError, match="add it to --monitor"):
        make_rule({"rule": "align"}, ("gap",))
    with pytest.raises(ValueError, match="has no gap_min"):
        make_rule({"rule": "align", "gap_min": 1}, ("align",))
    with pytest.raises(ValueError, match="unknown monitor rule"):
        make_rule({"rule": "nosuch"}, ("gap",))


def test_monitor_lists_parse_with_the_single_attack_spelling_of_before() -> None:
    assert parse_monitor("pgd10", EPS).signals == ("gap",)
    assert parse_monitor("pgd20,align", EPS).attack == "pgd20"
    assert parse_monitor(" Gap, align,elle,distortion ", EPS).signals == tuple(SIGNALS)
    assert parse_monitor("off", EPS) is None and parse_monitor("none", EPS) is None
    for bad in ("gap,pgd10", "align,none", "nosuch", "gap,,align"):
        with pytest.raises(ValueError, match="--monitor"):
            parse_monitor(bad, EPS)


def test_all_signals_in_one_run_and_any_rule_replayed_over_its_folder(data_dir, tmp_path) -> None:
    signals = "gap,align,elle,distortion"
    extra = ("--epochs", "3", "--monitor", signals, "--monitor-size", "16")
    rule = (
        "--monitor-rule",
        "align",
        "--monitor-rule",
        "threshold=2",
        "--monitor-rule",
        "warmup=0",
    )
    result = CliRunner().invoke(main, tiny_train_args(data_dir, tmp_path, "fgsm", *extra, *rule))
    assert result.exit_code == 0, result.output
    run = Run(tmp_path / "mini-fgsm-eps8-seed0")
    info = json.loads((run.path / "run.json").read_text())["monitor"]
    assert info["signals"] == signals.split(",") and info["attack"] == "pgd10"
    assert info["rule"] == {**info["rule"], "rule": "align", "threshold": 2, "warmup": 0}
    metrics = run.metrics()
    for name in SIGNALS:
        cost = "monitor_seconds" if name == "gap" else f"monitor_{name}_seconds"
        assert cost in metrics
    # the rule the run was trained with, replayed over its folder, gives the live flags
    live = metrics["monitor_flag"].fillna("").tolist()
    assert replay_run(run.path)["flag"].tolist() == live == ["", "align", "align"]
    # any other rule too, without training again
    noise = {"rule": "underfit", "noise_margin": -1, "gap_min": 100, "warmup": 0}
    underfit = replay_run(run, noise)
    assert underfit["flag"].tolist() == ["", "noise", "noise"]
    assert list(underfit["epoch"]) == [1, 2, 3] and "monitor_align_cos" in underfit
    # and from the command line, into a CSV
    pairs = [a for k, v in noise.items() for a in ("--monitor-rule", f"{k}={v}")]
    csv = tmp_path / "replay.csv"
    args = ["monitor-replay", str(run.path), *pairs, "--out-csv", str(csv)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(csv)["flag"].fillna("").tolist() == ["", "noise", "noise"]
    bad = CliRunner().invoke(main, ["monitor-replay", str(run.path), "--monitor-rule", "nosuch"])
    assert bad.exit_code == 1 and "unknown monitor rule" in bad.output
