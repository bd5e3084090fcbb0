"""The Attack base class: f(θ, x, y) -> δ, owning the model's mode and never mutating inputs.

Every attack returns a detached δ with |δ|∞ ≤ ε (unless it says otherwise) and x + δ in [0, 1].
Budgets are floats in image units here; the CLI speaks /255.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[..., torch.Tensor]  # (logits, y, reduction="mean") -> loss
# the BN/dropout mode while attacking: train, eval, or as the model is
AttackMode = Literal["train", "eval", "keep"]
ATTACK_MODES: tuple[str, ...] = get_args(AttackMode)
# A fixed loss scale for fp16 input gradients: they only feed sign steps, so no unscaling is needed.
AMP_LOSS_SCALE = 1024.0


@contextmanager
def model_mode(model: nn.Module, mode: AttackMode) -> Iterator[None]:
    """Put the model in 'train' or 'eval' mode ('keep' leaves it) and restore it afterwards."""
    if mode not in ATTACK_MODES:
        raise ValueError(f"mode must be {', '.join(ATTACK_MODES)}, not {mode!r}")
    was_training = model.training
    if mode != "keep":
        model.train(mode == "train")
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def forked_rng(device: torch.device) -> Iterator[None]:
    """Random numbers drawn inside (on the CPU and on `device`) leave the caller's RNG state as
    it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield


def rng_state(device: torch.device) -> list[torch.Tensor]:
    """The CPU's random state and, on CUDA, `device`'s: unchanged by code that drew nothing."""
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return [torch.get_rng_state(), *cuda]


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Random starts and noise fixed by `seed` inside; the caller's RNG state is left as it was."""
    with forked_rng(device):
        torch.manual_seed(seed)
        yield


def _stay(module: nn.Module, mode: bool = True) -> nn.Module:
    """`nn.Module.train` that leaves the mode as it is."""
    return module


@contextmanager
def eval_locked(model: nn.Module) -> Iterator[None]:
    """Eval mode that code inside cannot leave (its `.train()` calls do nothing).

    Methods generate training perturbations in train mode; for an analysis their generator must
    see the same eval-mode model as the losses it is compared with, and must not update the
    BatchNorm running statistics of the checkpoint being analysed.
    """
    was_training = model.training
    model.eval()
    modules = list(model.modules())
    for m in modules:
        m.train = types.MethodType(_stay, m)  # an instance attribute shadows nn.Module.train
    try:
        yield
    finally:
        for m in modules:
            del m.train
        model.train(was_training)


def autocast(enabled: bool, device: torch.device) -> torch.autocast | nullcontext:
    """Mixed precision on CUDA when enabled; a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def cw_margin_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """max non-true logit − true logit: the L∞ C&W loss used with PGD in this field."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    margin = other - true
    return margin.mean() if reduction == "mean" else margin


def input_gradient(
    model: nn.Module,
    x: torch.Tensor,
    delta: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    amp: bool = False,
) -> torch.Tensor:
    """∂ loss(model(x + δ), y) / ∂δ (scaled by a positive constant under AMP)."""
    delta = delta.detach().requires_grad_(True)
    with autocast(amp, x.device):
        logits = model(x + delta)
    loss = loss_fn(logits.float(), y)
    if amp and x.device.type == "cuda":
        loss = loss * AMP_LOSS_SCALE
    (grad,) = torch.autograd.grad(loss, delta)
    return grad


def clip_delta(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project δ into the ε-ball and so that x + δ stays in [0, 1]."""
    return (x + delta.clamp(-eps, eps)).clamp(0, 1) - x


def uniform_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Uniform noise in [−ε, ε], clipped so that x + δ stays in [0, 1]."""
    return clip_delta(torch.empty_like(x).uniform_(-eps, eps), x, eps)


class Attack:
    """A perturbation generator. Subclasses implement `perturb`; `__call__` owns the model mode.

    `mode` is the BN/dropout mode used while attacking: 'eval' for evaluation (the default),
    'train' for generating training perturbations as the reference implementations do.
    """

    # |δ|∞ ≤ ε (Gaussian noise is the exception)
    bounded: ClassVar[bool] = True

    def __init__(self, eps: float, *, mode: AttackMode = "eval", amp: bool = False) -> None:
        if not 0 <= eps <= 1:
            raise ValueError(f"eps must be in [0, 1] image units, got {eps}")
        self.eps, self.mode, self.amp = eps, mode, amp

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with model_mode(model, self.mode):
            return self.perturb(model, x.detach(), y).detach()

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def take_flags(self) -> str | None:
        """What the attack's own checks flagged since the last call ('none': nothing; None: it
        makes no checks), e.g. AutoAttack's randomness check; taking them clears them."""
        return None

    def describe(self) -> str:
        """One line of what this attack is, for logs and table captions."""
        return f"{type(self).__name__}(eps={self.eps * 255:.4g}/255)"
