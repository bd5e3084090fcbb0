"""APART, FGSM+ and the ablations on real CIFAR-10 images with a tiny PreAct ResNet-18."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from robdrop.attacks import clip_delta
from robdrop.cli import main
from robdrop.data import Batch, ImageData
from robdrop.methods import MethodContext, build_method, parse_method
from robdrop.methods.apart import APART
from robdrop.models import armed, build_model, capturing, sites
from robdrop.training.runs import Run

from .conftest import kill_after_first_epoch, method_state, tiny_train_args

EPS = 8 / 255


def make(name: str, model: torch.nn.Module, cifar: ImageData, **options) -> APART:
    ctx = MethodContext(EPS, cifar.num_train, cifar.image_shape, options=options)
    return build_method(name, model, ctx)


def first_batch(cifar: ImageData, size: int = 64) -> Batch:
    return next(cifar.train_loader(size, seed=1).epoch(1))


def frozen_sgd(model: torch.nn.Module) -> torch.optim.SGD:
    """A model optimizer that leaves θ unchanged, so hand computations before and after agree."""
    return torch.optim.SGD(model.parameters(), lr=0.0)


def no_scaler() -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", enabled=False)


def fgsm_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, step: float):
    """clip(step · sign(∇x L)) from zero, by hand."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return clip_delta(step * grad.sign(), x.detach(), EPS)


def test_names_parse_to_the_variants():
    assert parse_method("apart").key == "apart"
    assert parse_method("FGSM+").key == "fgsm+"
    assert parse_method("apart-nolayer").key == "fgsm+"
    assert parse_method("apart-noinit").key == "apart-noinit"


def test_zero_start_and_zero_block_steps_give_the_fgsm_step(tiny_model, cifar):
    method = make("apart", tiny_model, cifar, alpha_init=4 / 255)
    tiny_model.train()
    batch = first_batch(cifar)
    method.omega.zero_()
    expected = fgsm_step(tiny_model, batch.x, batch.y, 4 / 255)
    assert torch.equal(method.perturb(batch), expected)
    # images outside the training set (no indices) start from ω = 0 whatever ω holds
    method.omega.uniform_(-1, 1)
    x, y = cifar.test_x[:32].float() / 255, cifar.test_y[:32]
    delta = method.perturb(Batch.outside(x, y))
    assert torch.equal(delta, fgsm_step(tiny_model, x, y, 4 / 255))
    assert not torch.equal(method.perturb(batch), expected)  # training images use their ω


def hand_apart(tiny_model, cifar, **options):
    """APART with α_ω, α_1 and block steps set so that the clips are active, ω uniform in
    [−1, 1], a batch, and Algorithm 1's quantities on it computed by hand."""
    steps = {"alpha_init": 3 / 255, "alpha_omega_init": 6 / 255}
    method = make("apart", tiny_model, cifar, **steps, **options)
    with torch.no_grad():
        for i, alpha in enumerate(method.block_alphas):
            alpha.fill_(0.02 * (i + 1))
    method.omega.uniform_(-1, 1)
    tiny_model.train()
    batch = first_batch(cifar)
    x, y, a = batch.x, batch.y, {k: v.detach() for k, v in method.alphas.items()}
    # by hand: first pass with captured sites, second pass with leaf δ_1 and δ_i
    omega = batch.view.take(method.omega[batch.idx])
    pre_start = a["alpha_omega"] * omega
    start = clip_delta(pre_start, x, EPS)
    d = start.clone().requires_grad_(True)
    with capturing(tiny_model) as found:
        loss = F.cross_entropy(tiny_model(x + d), y)
        g1, *gi = torch.autograd.grad(loss, [d, *(s.captured for s in found)])
    pre = start + a["alpha_input"] * g1.sign()
    delta1 = clip_delta(pre, x, EPS).requires_grad_(True)
    deltas = [(a[f"alpha_block{i + 1}"] * g.sign()).requires_grad_(True) for i, g in enumerate(gi)]
    with armed(tiny_model, deltas):
        loss2 = F.cross_entropy(tiny_model(x + delta1), y)
        dl1, *dli = torch.autograd.grad(loss2, [delta1, *deltas])

    def passes(p: torch.Tensor) -> torch.Tensor:  # where the clip lets the gradient through
        q = p.clamp(-EPS, EPS)
        return (p.abs() <= EPS) & (x + q >= 0) & (x + q <= 1)

    expected = {
        f"alpha_block{i + 1}": (g * s.sign()).sum()
        for i, (g, s) in enumerate(zip(dli, gi, strict=True))
    }
    expected["alpha_input"] = (dl1 * g1.sign() * passes(pre)).sum()
    dstart = dl1 * passes(pre) * passes(pre_start)  # ∂L/∂(α_ω·ω) through both clips
    expected["alpha_omega"] = (dstart * omega).sum()
    hand = {"alphas": a, "omega": omega, "grads": expected, "input_grad": dl1}
    return method, batch, {**hand, "omega_grad": a["alpha_omega"] * dstart}


def test_step_size_and_omega_gradients_are_the_first_order_ones(tiny_model, cifar):
    method, batch, hand = hand_apart(tiny_model, cifar, omega_grad="masked")
    a, omega = hand["alphas"], hand["omega"]
    method.train_step(batch, frozen_sgd(tiny_model), no_scaler())  # μ_α = 0 before schedule()
    for key, value in hand["grads"].items():
        torch.testing.assert_close(method.alphas[key].grad, value, rtol=1e-4, atol=1e-7)
    assert all(v.detach().item() == a[k].item() for k, v in method.alphas.items())
    # ω ascends along sign(∂L/∂ω) with step α_1/α_ω, clipped to [−1, 1]
    new = batch.view.take(method.omega[batch.idx])
    step = a["alpha_input"] / a["alpha_omega"]
    domega = hand["omega_grad"]
    target = (omega + step * domega.sign()).clamp(-1, 1)
    clear = domega.abs() > 1e-6 * domega.abs().max()
    torch.testing.assert_close(new[clear], target[clear])
    assert clear.float().mean() > 0.5


def test_omega_ascends_as_released_unmasked_by_the_clips(tiny_model, cifar):
    """The authors' train.py: ω ← clip(ω + α_1/(α_ω + 1e-7)·sign(g_x), −1, 1) with g_x the second
    pass's gradient at the model's input image, also where the ε-clip or the image range clip
    blocks ∂L/∂ω; the masked option (Algorithm 1 literally) leaves ω there as it was."""
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    method, batch, hand = hand_apart(tiny_model, cifar)
    a, omega, g_x = hand["alphas"], hand["omega"], hand["input_grad"]
    method.train_step(batch, frozen_sgd(tiny_model), no_scaler())
    released = (omega + a["alpha_input"] / (a["alpha_omega"] + 1e-7) * g_x.sign()).clamp(-1, 1)
    torch.testing.assert_close(batch.view.take(method.omega[batch.idx]), released)
    blocked = (hand["omega_grad"] == 0) & (g_x != 0)
    assert blocked.float().mean() > 0.1  # the clips are active on this batch
    tiny_model.load_state_dict(state)
    torch.manual_seed(0)  # the same ω
    masked, batch, hand = hand_apart(tiny_model, cifar, omega_grad="masked")
    masked.train_step(batch, frozen_sgd(tiny_model), no_scaler())
    new = batch.view.take(masked.omega[batch.idx])
    assert torch.equal(new[blocked], hand["omega"][blocked])  # no step where ∂L/∂ω = 0
    assert not torch.equal(new[blocked], released[blocked])


def test_omega_changes_only_at_the_batch_indices_and_stays_in_the_unit_box(tiny_model, cifar):
    method = make("apart", tiny_model, cifar, alpha_init=8 / 255, alpha_omega_init=4 / 255)
    tiny_model.train()
    optimizer = frozen_sgd(tiny_model)
    touched = torch.zeros(cifar.num_train, dtype=torch.bool)
    for batch in list(cifar.train_loader(64, seed=3).epoch(1))[:2]:
        before = method.omega.clone()
        method.train_step(batch, optimizer, no_scaler())
        changed = (method.omega != before).flatten(1).any(1)
        assert torch.equal(changed.nonzero().flatten().sort().values, batch.idx.sort().values)
        touched[batch.idx] = True
    assert method.omega.abs().max() == 1  # step α_1/α_ω = 2 saturates ω at ±1
    untouched = method.omega[~touched]
    assert untouched.abs().max() < 0.01  # still the 0.001·N(0, 1) initialisation


def test_training_inputs_stay_in_the_eps_ball_and_the_image_range(tiny_model, cifar):
    method = make("apart", tiny_model, cifar, alpha_init=0.5, alpha_omega_init=0.5)
    method.omega.uniform_(-1, 1)
    tiny_model.train()
    batch = first_batch(cifar)
    seen = []
    hook = tiny_model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    method.train_step(batch, frozen_sgd(tiny_model), no_scaler())
    hook.remove()
    assert len(seen) == 2  # two forward passes, as FGSM
    delta = method.perturb(batch)
    for inp in [*seen, batch.x + delta]:
        assert (inp - batch.x).abs().max() <= EPS + 1e-6
        assert inp.min() >= 0 and inp.max() <= 1
    assert (delta.abs() > EPS - 1e-6).float().mean() > 0.5  # the clip was active


def test_scaled_gradients_are_unscaled_and_overflow_skips_every_update(cifar):
    batch, runs = first_batch(cifar), []
    for scale in (None, 2.0**12, 1e38):  # no scaler, a GradScaler, one whose scale overflows
        torch.manual_seed(0)
        model = build_model("prn18", 10, cifar.mean, cifar.std, width=4).train()
        method = make("apart", model, cifar, alpha_init=2 / 255, step_lr_max=1e-3)
        method.schedule(0.5)
        scaler = torch.amp.GradScaler("cpu", enabled=scale is not None, init_scale=scale or 1.0)
        alphas, omega = method.epoch_metrics(), method.omega.clone()
        method.train_step(batch, torch.optim.SGD(model.parameters(), lr=0.1), scaler)
        runs.append((alphas, omega, method.epoch_metrics(), method.omega, model.state_dict()))
    plain, scaled, overflow = runs
    assert scaled[2] == plain[2] and plain[2] != plain[0]
    assert torch.equal(scaled[3], plain[3]) and not torch.equal(plain[3], plain[1])
    assert all(torch.equal(scaled[4][k], plain[4][k]) for k in plain[4])
    assert overflow[2] == overflow[0] and torch.equal(overflow[3], overflow[1])


def test_resumed_run_continues_with_identical_generator_state(data_dir, tmp_path):
    extra = ("--epochs", "3", "--train-size", "512", "--save-every-epoch",
             "-o", "step_lr_max=0.001", "-o", "alpha_init=0.01")  # fmt: skip
    runner = CliRunner()
    args = tiny_train_args(data_dir, tmp_path / "a", "apart", *extra)
    assert runner.invoke(main, args, catch_exceptions=False).exit_code == 0
    uninterrupted = method_state(Run(tmp_path / "a" / "mini-apart-eps8-seed0"), 3)
    killed = tiny_train_args(data_dir, tmp_path / "b", "apart", *extra)
    kill_after_first_epoch(killed, tmp_path / "b" / "mini-apart-eps8-seed0", epochs=3)
    assert runner.invoke(main, [*killed, "--resume"], catch_exceptions=False).exit_code == 0
    run = Run(tmp_path / "b" / "mini-apart-eps8-seed0")
    resumed = method_state(run, 3)
    assert torch.equal(resumed["omega"], uninterrupted["omega"])
    for key, value in uninterrupted["alphas"].items():
        assert torch.equal(resumed["alphas"][key], value), key
    assert resumed["alphas"]["alpha_input"].item() != 0.01  # the step sizes did move
    buffers = [s["momentum_buffer"] for s in uninterrupted["step_optimizer"]["state"].values()]
    again = [s["momentum_buffer"] for s in resumed["step_optimizer"]["state"].values()]
    assert all(torch.equal(p, q) for p, q in zip(buffers, again, strict=True))
    assert list(run.metrics()["epoch"]) == [1, 2, 3]
    # ω is as large as the training set: only the latest epoch keeps it
    assert [p.name for p in run.path.glob("examples-*.pt")] == ["examples-003.pt"]
    assert "omega" not in run.load_checkpoint(3)["method"]


def _armed_sites_during_a_step(method: APART, model: torch.nn.Module, batch: Batch) -> list[bool]:
    armed_seen = []
    hooks = [
        s.register_forward_pre_hook(
            lambda m, _args: armed_seen.append(m.delta is not None or m.capture)
        )
        for s in sites(model)
    ]
    method.train_step(batch, frozen_sgd(model), no_scaler())
    for h in hooks:
        h.remove()
    return armed_seen


def test_fgsm_plus_has_no_block_perturbations_and_noinit_no_omega(
    tiny_model, cifar, data_dir, tmp_path
):
    tiny_model.train()
    batch = first_batch(cifar)
    plus = make("fgsm+", tiny_model, cifar)
    assert not any(_armed_sites_during_a_step(plus, tiny_model, batch))
    assert all(_armed_sites_during_a_step(make("apart", tiny_model, cifar), tiny_model, batch))
    assert set(plus.epoch_metrics()) == {"alpha_omega", "alpha_input"}
    noinit = make("apart-noinit", tiny_model, cifar, alpha_init=2 / 255, step_lr_max=1e-3)
    assert noinit.omega is None and "omega" not in noinit.state_dict()
    for b in list(cifar.train_loader(64, seed=2).epoch(1))[:2]:
        noinit.schedule(0.5)
        noinit.train_step(b, frozen_sgd(tiny_model), no_scaler())
    alpha = noinit.alphas["alpha_input"].item()
    assert abs(alpha - 2 / 255) > 1e-5  # learned; the start stays zero: an FGSM step of α_1
    torch.testing.assert_close(
        noinit.perturb(batch), fgsm_step(tiny_model, batch.x, batch.y, alpha), rtol=0, atol=1e-6
    )
    runner = CliRunner()
    for name, columns in [
        ("apart", ["alpha_omega", "alpha_input", *(f"alpha_block{i}" for i in range(1, 9))]),
        ("apart-noinit", ["alpha_input", "alpha_block1", "alpha_block8"]),
    ]:
        args = tiny_train_args(data_dir, tmp_path, name, "--train-size", "128")
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        run = Run(tmp_path / f"mini-{name}-eps8-seed0")
        metrics = run.metrics()
        assert set(columns) <= set(metrics.columns) and metrics[columns].notna().all().all()
        _, method = run.load()  # the initial step sizes travel with the checkpoint (epoch 0)
        initial = method.state_dict()["initial"]
        assert set(initial) == set(columns) | set(method.alphas)
        assert initial["alpha_input"] == 1e-4 and initial.get("alpha_block1", 0.0) == 0.0


def test_omega_refuses_batches_of_another_size_with_one_sentence(tiny_model, cifar):
    """Folder data has no crop view; an ImageNet resize phase makes batches smaller than ω."""
    method = make("apart", tiny_model, cifar)
    batch = first_batch(cifar, 8)
    small = Batch(batch.x[..., :24, :24], batch.y, batch.idx, None)
    with pytest.raises(ValueError, match="resize phases"):
        method.train_step(small, frozen_sgd(tiny_model), no_scaler())
    assert method.perturb(Batch(batch.x, batch.y, batch.idx, None)).shape == batch.x.shape
