"""Attacks in the style of torchattacks' tests: properties on real images and a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robdrop.attacks import make_attack
from robdrop.attacks.evaluate import accuracy_under, losses_along, losses_and_accuracies

from .conftest import fit_a_little

EPS = 8 / 255


def test_fgsm_is_eps_times_the_gradient_sign(tiny_model, test_batch):
    x, y = test_batch
    tiny_model.eval()
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(tiny_model(xr), y), xr)
    expected = (x + EPS * g.sign()).clamp(0, 1) - x
    assert torch.allclose(make_attack("fgsm", EPS)(tiny_model, x, y), expected, atol=1e-6)


def test_pgd_is_stronger_than_fgsm_and_noise(cifar, tiny_model):
    fit_a_little(tiny_model, cifar)  # so gradients mean something
    xt, yt = cifar.test_x[:128], cifar.test_y[:128]
    acc = {
        s: accuracy_under(tiny_model, make_attack(s, EPS), xt, yt)
        for s in ("clean", "random", "fgsm", "pgd10")
    }
    assert acc["pgd10"] <= acc["fgsm"] <= acc["clean"]
    assert acc["pgd10"] < acc["random"]


def test_gaussian_noise_uses_sigma_eps_by_default(test_batch, tiny_model):
    x, y = test_batch
    attack = make_attack("gauss", EPS)
    assert attack.sigma == EPS and "sigma=8/255" in attack.describe()
    x_mid = torch.full_like(x, 0.5)
    delta = attack(tiny_model, x_mid, y)
    assert delta.std().item() == pytest.approx(EPS, rel=0.05)


def test_pgd_step_defaults_to_two_255ths_at_eps_8():
    assert make_attack("pgd10", EPS).step == pytest.approx(2 / 255)
    assert make_attack("pgd10", EPS, step=1 / 255).step == pytest.approx(1 / 255)


def test_unknown_spec_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown attack 'pgdx'; choose one of"):
        make_attack("pgdx", EPS)


@pytest.mark.parametrize("spec", ["pgd6", "cw6"])
def test_a_pgd_run_passes_through_the_shorter_pgds(cifar, tiny_model, spec):
    """The k-th iterate of one PGD-6 run is PGD-k's δ (same start and step), and scoring the
    iterates on the way gives, bit for bit, what evaluating each PGD-k alone gives."""
    fit_a_little(tiny_model, cifar)
    tiny_model.eval()
    x, y = cifar.test_x[:96], cifar.test_y[:96]
    attack = make_attack(spec, EPS)
    xb = x[:32].float() / 255
    torch.manual_seed(0)
    iterates = [d.clone() for d in attack.iterates(tiny_model, xb, y[:32])]
    for k in (1, 3, 6):
        torch.manual_seed(0)
        assert torch.equal(iterates[k - 1], attack.first(k)(tiny_model, xb, y[:32]))
    torch.manual_seed(0)
    along = losses_along(tiny_model, attack, [2, 6], x, y, batch_size=40)
    for k in (2, 6):
        torch.manual_seed(0)
        generators = {"alone": lambda xb, yb, k=k: attack.first(k)(tiny_model, xb, yb)}
        assert (
            along[k] == losses_and_accuracies(tiny_model, generators, x, y, batch_size=40)["alone"]
        )
    assert attack.steps == 6  # `first` builds a copy


def test_the_shorter_pgds_must_be_on_the_way(tiny_model, test_batch):
    x, y = test_batch
    with pytest.raises(ValueError, match="stops must lie in 1…6"):
        losses_along(tiny_model, make_attack("pgd6", EPS), [7], x, y)
    with pytest.raises(ValueError, match="one-restart"):
        losses_along(tiny_model, make_attack("pgd6", EPS, restarts=2), [6], x, y)
