"""Free-m and ATTA-K on real CIFAR images: replays, effective epochs, stored δ, resume."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from click.testing import CliRunner

from robdrop.cli import main
from robdrop.data import ImageData, TensorLoader, pad_images
from robdrop.methods import Method, MethodContext, build_method
from robdrop.methods.schedule import cyclic_lr
from robdrop.training.runs import Run

from .conftest import tiny_train_args

EPS = 8 / 255


def make(name: str, model: torch.nn.Module, cifar: ImageData) -> Method:
    ctx = MethodContext(eps=EPS, num_train=cifar.num_train, image_shape=cifar.image_shape)
    return build_method(name, model.train(), ctx)


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)


NO_SCALER = torch.amp.GradScaler("cuda", enabled=False)


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


# -- Free-m -----------------------------------------------------------------------------------


def test_free_replays_each_minibatch_m_times_with_one_forward_and_backward_each(cifar, tiny_model):
    m = 3
    method, optimizer = make(f"free{m}", tiny_model, cifar), sgd(tiny_model)
    counts = {"step": 0, "forward": 0, "backward": 0, "weight_grad": 0}

    def bump(key: str):
        return lambda *_: counts.__setitem__(key, counts[key] + 1)

    optimizer.register_step_post_hook(bump("step"))
    tiny_model.register_forward_hook(bump("forward"))
    tiny_model.register_full_backward_hook(bump("backward"))
    next(tiny_model.parameters()).register_hook(bump("weight_grad"))
    loader = cifar.train_loader(64)
    carried = []
    for k, batch in enumerate(loader.epoch(1), start=1):
        result = method.train_step(batch, optimizer, NO_SCALER)
        assert counts == {"step": m * k, "forward": m * k, "backward": m * k, "weight_grad": m * k}
        assert result.count == m * len(batch.y)
        assert result.correct <= m * len(batch.y) and torch.isfinite(result.loss_sum)
        assert method.delta.abs().max() <= EPS + 1e-7
        carried.append(method.delta.clone())
    # δ moves on every minibatch, and carries over instead of restarting from zero
    assert all(not torch.equal(a, b) for a, b in pairwise(carried))
    assert (carried[0].abs() == EPS).float().mean() > 0.5  # m sign steps of ε reach the corners
    # f_A at fixed θ leaves both the weights and the carried δ alone
    weights = [p.detach().clone() for p in tiny_model.parameters()]
    delta = method.perturb(batch)
    assert delta.abs().max() <= EPS + 1e-7 and (batch.x + delta).min() >= 0
    assert torch.equal(method.delta, carried[-1])
    assert all(torch.equal(a, b) for a, b in zip(weights, tiny_model.parameters(), strict=True))


def test_free_smaller_last_batch_updates_the_first_rows_of_the_carried_delta(cifar, tiny_model):
    method, optimizer = make("free2", tiny_model, cifar), sgd(tiny_model)
    full, last = list(TensorLoader(cifar.train_x, cifar.train_y, 96).epoch(1))[1:]
    method.train_step(full, optimizer, NO_SCALER)
    before = method.delta.clone()
    assert len(last.y) == 64 < len(before) == 96
    method.train_step(last, optimizer, NO_SCALER)
    assert method.delta.shape == before.shape
    assert torch.equal(method.delta[64:], before[64:])
    assert not torch.equal(method.delta[:64], before[:64])


def test_an_effective_epoch_is_the_next_slice_of_the_continuing_stream(cifar, tiny_model):
    loader = cifar.train_loader(32)  # 8 minibatches per pass; free3 takes ⌈8/3⌉ = 3 per epoch
    stream = [b.idx for p in (1, 2) for b in loader.epoch(p)]
    method = make("free3", tiny_model, cifar)
    seen = []
    for epoch in range(1, 6):
        batches, n = method.epoch_batches(loader, epoch)
        seen += [b.idx for b in batches]
        assert n == 3 and len(seen) == 3 * epoch
    assert all(torch.equal(a, b) for a, b in zip(seen, stream[:15], strict=True))
    # a resumed run (a fresh method asked for epoch 4) sees exactly the same minibatches
    batches, _ = make("free3", tiny_model, cifar).epoch_batches(loader, 4)
    resumed = list(batches)
    assert all(torch.equal(a.idx, b) for a, b in zip(resumed, seen[9:12], strict=True))
    assert torch.equal(resumed[0].x, list(loader.epoch(2))[1].x)  # the same crops and flips


def test_free_cli_writes_one_checkpoint_per_effective_epoch(data_dir, tmp_path):
    cli(*tiny_train_args(data_dir, tmp_path, "free2", "--epochs", "3", "--save-every-epoch"))
    run = Run(tmp_path / "mini-free2-eps8-seed0")
    assert run.epochs() == [1, 2, 3]
    metrics, cfg = run.metrics(), run.config
    assert list(metrics["epoch"]) == [1, 2, 3]
    # 4 minibatches per pass, so 2 per effective epoch: the LR of an epoch's last minibatch shows it
    last = [cyclic_lr((2 * e - 1) / 6, cfg.lr_max, cfg.lr_peak) for e in (1, 2, 3)]
    assert metrics["lr"].tolist() == pytest.approx(last)
    _, method = run.load(3)
    assert method.delta.shape == (64, 3, 32, 32)


# -- ATTA-K -----------------------------------------------------------------------------------


def test_atta_stores_delta_only_for_the_batch_inside_its_crop_and_in_the_ball(cifar, tiny_model):
    method, optimizer = make("atta2", tiny_model, cifar), sgd(tiny_model)
    batch = next(cifar.train_loader(64).epoch(1))
    before = method.delta.clone()
    trained_on = method.perturb(batch)  # what train_step will train on (deterministic here)
    method.train_step(batch, optimizer, NO_SCALER)
    after = method.delta
    others = torch.ones(len(after), dtype=torch.bool)
    others[batch.idx] = False
    assert torch.equal(after[others], before[others])
    window = batch.view.put(torch.zeros_like(before[batch.idx]), torch.ones_like(batch.x)) > 0
    assert torch.equal(after[batch.idx][~window], before[batch.idx][~window])
    # read back through the same crop and flip, the stored δ is the one trained on
    assert torch.equal(batch.view.take(after[batch.idx]), trained_on)
    assert trained_on.abs().amax(dim=(1, 2, 3)).min() > 0
    images = pad_images(cifar.train_x.float() / 255, 4)
    assert after.abs().max() <= EPS + 1e-7
    assert (images + after).min() >= -1e-6 and (images + after).max() <= 1 + 1e-6


def test_atta_second_epoch_continues_from_the_stored_delta(cifar, tiny_model):
    method, optimizer = make("atta1", tiny_model, cifar), sgd(tiny_model)
    step = EPS / 4  # the default step
    loader = cifar.train_loader(64)
    for batch in loader.epoch(1):
        method.train_step(batch, optimizer, NO_SCALER)
    # after one visit each example holds one step from zero
    assert method.delta.abs().max() <= step + 1e-7
    for batch in loader.epoch(2):
        stored = batch.view.take(method.delta[batch.idx])
        delta = method.perturb(batch)
        assert (delta - stored).abs().max() <= step + 1e-6  # one step away from the stored δ
        method.train_step(batch, optimizer, NO_SCALER)
    # two visits reach 2·step where the gradient sign agreed: no one-step δ from zero could
    assert method.delta.abs().max() > step + 1e-3
    assert method.delta.abs().max() <= 2 * step + 1e-7


def test_atta_without_a_crop_view_fails_clearly(cifar, tiny_model):
    method = make("atta1", tiny_model, cifar)
    batch = next(TensorLoader(cifar.train_x, cifar.train_y, 8, augment=False).epoch(1))
    with pytest.raises(ValueError, match="crop/flip view"):
        method.perturb(batch)


# -- both: the method state survives a resume exactly ----------------------------------------
