"""GradAlign and N-FGSM on a tiny model and real images: the properties their papers define."""

from __future__ import annotations

import pytest
import torch

from robdrop.data import Batch
from robdrop.methods import MethodContext, build_method
from robdrop.methods.gradalign import alignment, published_lambda

EPS = 8 / 255


def make(name: str, model: torch.nn.Module, **options) -> object:
    ctx = MethodContext(eps=EPS, num_train=256, image_shape=(3, 32, 32), options=options)
    return build_method(name, model, ctx)


def test_nfgsm_reaches_beyond_eps_and_is_not_clipped(tiny_model, test_batch) -> None:
    x, y = test_batch
    before = x.clone()
    torch.manual_seed(0)
    delta = make("nfgsm", tiny_model).perturb(Batch.outside(x, y))
    assert torch.equal(x, before)  # the input is not mutated
    assert delta.abs().max() > 2 * EPS  # noise of 2ε plus a step of ε: up to 3ε
    assert delta.abs().max() <= 3 * EPS + 1e-6
    assert ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    torch.manual_seed(0)
    clipped = make("nfgsm", tiny_model, clip_in_eps=1.0).perturb(Batch.outside(x, y))
    assert clipped.abs().max() <= EPS + 1e-6
    torch.manual_seed(0)
    no_noise = make("nfgsm", tiny_model, noise_in_eps=0.0).perturb(Batch.outside(x, y))
    fgsm = make("fgsm", tiny_model).perturb(Batch.outside(x, y))
    assert torch.allclose(no_noise, fgsm, atol=1e-6)  # k = 0, step ε, no clip: plain FGSM


def test_gradalign_regulariser_is_zero_for_parallel_gradients() -> None:
    g = torch.randn(4, 3, 8, 8)
    assert alignment(g, 3 * g).item() == pytest.approx(0, abs=1e-6)
    assert alignment(g, -g).item() == pytest.approx(2, abs=1e-6)
    zero = torch.zeros_like(g)
    assert alignment(zero, g).item() == 0  # examples with a zero gradient are left out
    assert published_lambda(8 / 255) == pytest.approx(0.2)
    assert published_lambda(10 / 255) == pytest.approx(0.356, abs=1e-3)


def test_gradalign_regulariser_gradient_reaches_the_weights(tiny_model, test_batch) -> None:
    x, y = test_batch
    method = make("gradalign", tiny_model)
    tiny_model.train()
    _, g1 = method._fgsm(x, y)
    reg = method.regulariser(x, y, g1)
    assert reg.item() > 0
    weights = [p for p in tiny_model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(reg, weights, allow_unused=True)
    conv = dict(zip([n for n, p in tiny_model.named_parameters()], grads, strict=True))
    assert conv["net.conv1.weight"] is not None and conv["net.conv1.weight"].abs().sum() > 0
    # the same value computed independently: the cosine of the two input gradients
    torch.manual_seed(1)
    reg_again = method.regulariser(x, y, g1)
    torch.manual_seed(1)
    eta = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1) - x
    eta.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(tiny_model(x + eta), y)
    (g2,) = torch.autograd.grad(loss, eta)
    cos = torch.nn.functional.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1).mean()
    assert reg_again.item() == pytest.approx(0.2 * (1 - cos.item()), rel=1e-4)
