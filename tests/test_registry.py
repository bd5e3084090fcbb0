"""Every registered method and attack, one parametrised test each, in the style of torchattacks'
tests over `__all__`: perturbations in the budget and the image range, inputs not mutated, the
model's mode restored, a state round trip, one training step, and an exact resume."""

from __future__ import annotations

import copy
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from robdrop.attacks import ATTACKS, MissingExtra, make_attack
from robdrop.cli import main
from robdrop.data import Batch, ImageData
from robdrop.methods import METHODS, Method, MethodContext, build_method
from robdrop.models import build_model
from robdrop.training.runs import Run
from robdrop.training.state import same_state as same
from robdrop.training.trainer import Trainer

from .conftest import fit_a_little, tiny_train_args

EPS = 8 / 255
# every registered method, with a small number where its name takes one
METHOD_NAMES = [f"{key}2" if cls.number_name else key for key, cls in METHODS.items()]
ATTACK_SPECS = [f"{key}2" if numbered else key for key, (_, numbered) in ATTACKS.items()]


def method(name: str, model: torch.nn.Module, cifar: ImageData) -> Method:
    return build_method(name, model, MethodContext(EPS, cifar.num_train, cifar.image_shape))


def training_batch(cifar: ImageData) -> Batch:
    return next(cifar.train_loader(32, seed=1).epoch(1))


@pytest.fixture(scope="module")
def fitted(cifar: ImageData) -> dict[str, torch.Tensor]:
    """The weights of a tiny model fitted a little, so attacks have gradients to use."""
    torch.manual_seed(0)
    model = build_model("prn18", 10, cifar.mean, cifar.std, width=4)
    return copy.deepcopy(fit_a_little(model, cifar).state_dict())


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_method_perturbation_is_bounded_pure_and_keeps_the_mode(
    name, mode, tiny_model, cifar, fitted
):
    tiny_model.load_state_dict(fitted)
    tiny_model.train(mode == "train")
    m = method(name, tiny_model, cifar)
    for batch in (training_batch(cifar), Batch.outside(cifar.test_x[:32].float() / 255,
                                                       cifar.test_y[:32])):  # fmt: skip
        before = batch.x.clone()
        delta = m.perturb(batch)
        assert delta.shape == batch.x.shape and not delta.requires_grad
        assert delta.abs().max() <= m.bound + 1e-6
        assert (batch.x + delta).min() >= 0 and (batch.x + delta).max() <= 1
        assert torch.equal(batch.x, before)
        assert tiny_model.training == (mode == "train")


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_one_training_step_moves_the_weights_and_the_state_round_trips(name, tiny_model, cifar):
    m = method(name, tiny_model, cifar)
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = copy.deepcopy(tiny_model.state_dict())
    m.schedule(0.3)
    batch = training_batch(cifar)
    step = m.train_step(batch, optimizer, scaler)
    assert step.count >= len(batch.y) and torch.isfinite(step.loss_sum)
    assert any(not torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    again = method(name, copy.deepcopy(tiny_model), cifar)
    again.load_state_dict(m.state_dict())
    assert same(m.state_dict(), again.state_dict())


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_resume_after_sigterm_gives_the_uninterrupted_weights_and_state(
    name, data_dir, tmp_path, monkeypatch
):
    """SIGTERM in the middle of epoch 2 (partial.pt) and again after epoch 3 (the checkpoint),
    each followed by --resume, ends with the weights and method state of a run never stopped."""
    quiet = ("--epochs", "4", "--monitor", "none", "--eval-size", "16")
    args = tiny_train_args(data_dir, tmp_path / "a", name, *quiet)
    assert CliRunner().invoke(main, args, catch_exceptions=False).exit_code == 0
    uninterrupted = Run(tmp_path / "a" / f"mini-{name}-eps8-seed0")

    train_epoch, end_epoch = Trainer._train_epoch, Trainer._end_epoch

    def stopped_in_epoch_2(self, epoch, loader, state, partial, *rest):
        """SIGTERM after the first batch of epoch 2, when the epoch starts from its beginning."""
        step = state.method.train_step

        def train_step(batch, *rest):
            result = step(batch, *rest)
            if epoch == 2 and partial is None and not done_batches:
                signal.raise_signal(signal.SIGTERM)
            done_batches.append(1)
            return result

        done_batches: list[int] = []
        state.method.train_step = train_step
        try:
            return train_epoch(self, epoch, loader, state, partial, *rest)
        finally:
            del state.method.train_step

    def stopped_after_epoch_3(self, run, epoch, *rest):
        result = end_epoch(self, run, epoch, *rest)
        if epoch == 3:
            signal.raise_signal(signal.SIGTERM)
        return result

    monkeypatch.setattr(Trainer, "_train_epoch", stopped_in_epoch_2)
    monkeypatch.setattr(Trainer, "_end_epoch", stopped_after_epoch_3)
    resumed = tmp_path / "b"
    args = tiny_train_args(data_dir, resumed, name, *quiet)
    runner = CliRunner()
    for last in (1, 3, 4):  # stopped inside epoch 2, after epoch 3, then to the end
        assert runner.invoke(main, [*args, "--resume"], catch_exceptions=False).exit_code == 0
        run = Run(resumed / f"mini-{name}-eps8-seed0")
        assert run.epochs() == [last]
    assert list(run.metrics()["epoch"]) == [1, 2, 3, 4]
    a, b = uninterrupted.load_checkpoint(), run.load_checkpoint()
    assert all(torch.equal(a["model"][k], v) for k, v in b["model"].items())
    assert same(a["method"], b["method"]) and same(a["optimizer"], b["optimizer"])
    assert same(uninterrupted.load_examples(4), run.load_examples(4))


@pytest.mark.parametrize("spec", ATTACK_SPECS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_attack_is_bounded_pure_and_keeps_the_mode(spec, mode, tiny_model, fitted, test_batch):
    tiny_model.load_state_dict(fitted)
    tiny_model.train(mode == "train")
    try:
        attack = make_attack(spec, EPS)
    except MissingExtra:
        pytest.skip(f"{spec} needs an extra that is not installed")
    x, y = test_batch
    x, y = x[:8], y[:8]
    before = x.clone()
    delta = attack(tiny_model, x, y)
    assert delta.shape == x.shape and not delta.requires_grad
    if attack.bounded:
        assert delta.abs().max() <= EPS + 1e-6
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert torch.equal(x, before)
    assert tiny_model.training == (mode == "train")
    assert attack.describe()


def test_registries_list_every_method_and_attack_once(tmp_path: Path) -> None:
    assert len(set(METHOD_NAMES)) == len(METHODS) == 10
    assert {"clean", "fgsm", "ffgsm", "pgd2", "cw2", "random", "gauss"} <= set(ATTACK_SPECS)
