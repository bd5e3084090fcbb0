"""APART (Algorithm 1), FGSM+ and the ablations of Table 6, at FGSM's cost.

The generator has learnable parts: a per-example input initialisation ω (a buffer over the
training set, in padded image coordinates, cropped and flipped exactly as the image was), its
step size α_ω, the input step α_1 and one step size α_i per residual block. Each batch costs two
forward/backward passes:

1. δ_1 = clip(α_ω·ω_x) and every block site capturing: one backward gives g_1 = ∂L/∂δ_1 and
   g_i = ∂L/∂(branch input of block i).
2. δ_1 = clip(δ_1 + α_1·sign(g_1)) (ε-ball and image range), δ_i = α_i·sign(g_i) on block i
   (not bounded by ε, as in the authors' code). One backward of L(x + δ_1, {δ_i}) gives ∂L/∂θ
   (descent, model optimizer) and, first order only (sign(g) is a constant, no create_graph),
   ∂L/∂α (ascent): the step sizes take a step of their own SGD (momentum as the model's, weight
   decay λ) with a cyclic learning rate μ_α. ω ← clip(ω + α_1/(α_ω + 1e-7)·sign(g), −1, 1) where g
   is, as in the authors' train.py, the gradient at the model's input image x + δ_1
   (`omega_grad="input"`), or, read literally from Algorithm 1, ∂L/∂ω = α_ω·∂L/∂δ_1, which is zero
   where δ_1 was clipped and flips its sign with α_ω (`omega_grad="masked"`).

The released code also left the step sizes in the model optimizer, whose weight decay (at the
model's learning rate) shrank them further under the PyTorch of the paper: λ ≈ 1,200 in effect
instead of 400. `released_decay` keeps that (docs/design.md, "APART").
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from robdrop.attacks.base import AMP_LOSS_SCALE, autocast, clip_delta, model_mode
from robdrop.data import Batch, View, sharding
from robdrop.methods.base import CYCLED, Method, MethodContext, Recipe, StepResult
from robdrop.methods.schedule import cyclic_lr, cyclic_momentum
from robdrop.models.sites import armed, capturing, sites

# μ_α's peak on CIFAR in the paper: the step-size learning rate that the released model
# optimizer's decay is measured against (see `released_decay`)
PAPER_STEP_LR_MAX = 5e-8
# ω's ascent direction: the gradient at the model's input image (authors' code) or ∂L/∂ω
OmegaGrad = Literal["input", "masked"]
OMEGA_GRADS: tuple[str, ...] = get_args(OmegaGrad)


class APART(Method):
    """APART: learnable input initialisation ω and per-block step sizes (Li et al., Alg. 1)."""

    name = "apart"
    single_step = True  # one gradient step per perturbation (plus learned parts)
    recipe = Recipe(2e-4, "zichaoli/APART train.py", momentum_at_peak=CYCLED)
    defaults: ClassVar[dict[str, Any]] = {
        # initial input step α_1, image units (the authors' code: 1e-4, close to clean training)
        "alpha_init": 1e-4,
        # initial step size α_ω of the learned initialisation, image units (authors' code: 1e-4)
        "alpha_omega_init": 1e-4,
        # initial step size α_i of every block perturbation, feature units (authors' code: 0)
        "block_alpha_init": 0.0,
        # peak of the step sizes' cyclic learning rate μ_α (paper: 5e-8 on CIFAR, 4e-9 on
        # ImageNet). μ_α·(iterations) sets how far the step sizes travel: a run with fewer
        # iterations than the paper's ~11,700 needs a proportionally larger peak.
        "step_lr_max": 5e-8,
        # fraction of training at which μ_α peaks (the model LR's default peak)
        "step_lr_peak": 0.5,
        # λ of Algorithm 1 line 8: weight decay of the step sizes (paper: 400 CIFAR, 5000 ImageNet)
        "step_weight_decay": 400.0,
        # also the decay the released code's model optimizer applied to the step sizes (its weight
        # decay at its learning rate): lr_max·weight_decay / 5e-8 more in λ units, 800 at the
        # paper's settings (λ ≈ 1,200 in effect); false: λ alone, as the paper states
        "released_decay": True,
        # ω's ascent direction: "input", the sign of the gradient at the model's input image
        # (authors' code), or "masked", the sign of ∂L/∂ω (Algorithm 1 read literally)
        "omega_grad": "input",
        # learn the input initialisation ω (false: δ_1 starts at zero, Table 6's "w/o init")
        "init": True,
        # perturb every residual block (false: input only, i.e. FGSM+ / "w/o layer-wise")
        "layerwise": True,
    }
    # option values per preset, for the configuration to merge under the user's --option values:
    # μ_α scaled by the paper's iterations over the preset's (mini: 1,185 iterations; see
    # docs/design.md, "APART"), and the paper's ImageNet values.
    example_state: ClassVar[tuple[str, ...]] = ("omega",)
    preset_options: ClassVar[dict[str, dict[str, Any]]] = {
        "mini": {"step_lr_max": 1.8e-6},  # 5e-8 · 11,730 / 320 iterations (docs/design.md)
        "paper-imagenet-r50": {"step_lr_max": 4e-9, "step_weight_decay": 5000.0},
    }

    def __init__(
        self,
        model: nn.Module,
        ctx: MethodContext,
        number: int | None = None,
        *,
        learner: nn.Module | None = None,
    ) -> None:
        super().__init__(model, ctx, number, learner=learner)
        opt = self.options
        self.learn_init, self.layerwise = bool(opt["init"]), bool(opt["layerwise"])
        if not 0 < opt["step_lr_peak"] < 1 or opt["step_lr_max"] < 0:
            raise ValueError("APART needs step_lr_peak in (0, 1) and step_lr_max ≥ 0")
        if self.learn_init and opt["alpha_omega_init"] == 0:
            raise ValueError("APART needs alpha_omega_init ≠ 0 (ω's step is alpha / alpha_omega)")
        if opt["omega_grad"] not in OMEGA_GRADS:
            raise ValueError(f"omega_grad is {' or '.join(OMEGA_GRADS)}, not {opt['omega_grad']!r}")
        num_sites = len(sites(model))
        if self.layerwise and num_sites == 0:
            raise ValueError(f"{type(model).__name__} has no perturbation sites for APART")
        initial = {"alpha_input": float(opt["alpha_init"])}
        if self.learn_init:
            initial = {"alpha_omega": float(opt["alpha_omega_init"]), **initial}
        if self.layerwise:
            initial.update(
                {f"alpha_block{i + 1}": float(opt["block_alpha_init"]) for i in range(num_sites)}
            )
        self.initial = initial
        self.alphas = {
            k: torch.tensor(v, device=ctx.device, requires_grad=True) for k, v in initial.items()
        }
        # own optimizer (never the model's): ascent on L with weight decay λ = Algorithm 1 line 8
        self.step_optimizer = torch.optim.SGD(
            list(self.alphas.values()),
            lr=0.0,
            momentum=ctx.momentum,
            weight_decay=self.step_decay(),
            maximize=True,
        )
        self.omega: torch.Tensor | None = None
        if self.learn_init:
            c, h, w = ctx.image_shape
            shape = (ctx.num_train, c, h + 2 * ctx.pad, w + 2 * ctx.pad)
            self.omega = (0.001 * torch.randn(shape, device=ctx.device)).clamp_(-1, 1)

    def step_decay(self) -> float:
        """The step sizes' weight decay in λ units: λ, plus the released model optimizer's."""
        decay = float(self.options["step_weight_decay"])
        if self.options["released_decay"]:
            decay += self.ctx.lr_max * self.ctx.weight_decay / PAPER_STEP_LR_MAX
        return decay

    # -- the generator ----------------------------------------------------------------------------
    @property
    def block_alphas(self) -> list[torch.Tensor]:
        """α_i of the residual blocks in forward order (empty without layer-wise perturbations)."""
        return [v for k, v in self.alphas.items() if k.startswith("alpha_block")]

    def _view(self, batch: Batch) -> View:
        """The batch's crop/flip; without augmentation the centre crop (the unpadded image)."""
        if batch.view is not None:
            return batch.view
        size = self.ctx.image_shape[-1]
        if batch.x.shape[-1] != size:
            raise ValueError(
                f"APART keeps ω at the data's {size}×{size} images and this batch is "
                f"{batch.x.shape[-1]}×{batch.x.shape[-1]} (ImageNet resize phases): train "
                "without resize_phases, or without ω (-o init=false)"
            )
        n, device = len(batch.idx), batch.idx.device
        at = torch.full((n,), self.ctx.pad, device=device)
        flip = torch.zeros(n, dtype=torch.bool, device=device)
        return View(at, at, flip, batch.x.shape[-1], self.ctx.pad)

    def _omega(self, batch: Batch) -> torch.Tensor | None:
        """ω_x aligned with the batch's images (None: zero start, e.g. images outside training)."""
        if self.omega is None or batch.idx is None:
            return None
        return self._view(batch).take(self.omega[batch.idx])

    def _start(self, x: torch.Tensor, omega: torch.Tensor | None) -> torch.Tensor:
        """δ_1 = α_ω·ω_x projected into the ε-ball and the image range (zero without ω)."""
        if omega is None:
            return torch.zeros_like(x)
        return clip_delta(self.alphas["alpha_omega"] * omega, x, self.ctx.eps)

    def _signs(
        self, x: torch.Tensor, start: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """First pass: sign(g_1) at the input and sign(g_i) at every block site."""
        delta = start.detach().requires_grad_(True)
        capture = capturing(self.model) if self.layerwise else nullcontext([])
        with model_mode(self.model, "train"), capture as found:
            with autocast(self.ctx.amp, x.device):
                logits = self.model(x + delta)
            loss = F.cross_entropy(logits.float(), y)
            if self.ctx.amp_active:  # fp16 gradients only feed signs: a fixed scale suffices
                loss = loss * AMP_LOSS_SCALE
            grads = torch.autograd.grad(loss, [delta, *(s.captured for s in found)])
        return grads[0].sign(), [g.sign().float() for g in grads[1:]]

    def perturbations(self, batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """δ_1 and the block perturbations α_i·sign(g_i) APART trains on (detached).

        Batches without indices (images outside the training set) start from ω = 0. The block
        perturbations fit `sites.armed(model, ...)` for this batch.
        """
        x = batch.x.detach()
        with torch.no_grad():
            start = self._start(x, self._omega(batch))
        sign_input, sign_blocks = self._signs(x, start, batch.y)
        with torch.no_grad():
            delta = clip_delta(start + self.alphas["alpha_input"] * sign_input, x, self.ctx.eps)
            blocks = [a * s for a, s in zip(self.block_alphas, sign_blocks, strict=True)]
        return delta, blocks

    def perturb(self, batch: Batch) -> torch.Tensor:
        """The input perturbation δ_1 (after the α_1 sign step); see `perturbations` for blocks."""
        return self.perturbations(batch)[0]

    # -- training -------------------------------------------------------------------------------
    def train_step(
        self,
        batch: Batch,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> StepResult:
        """Both passes of Algorithm 1: θ descends, ω and the step sizes ascend, from one loss."""
        x, y, a = batch.x.detach(), batch.y, self.alphas
        omega = self._omega(batch)
        with torch.no_grad():
            start = self._start(x, omega)
        sign_input, sign_blocks = self._signs(x, start, y)
        masked = omega is not None and self.options["omega_grad"] == "masked"
        if masked:
            omega.requires_grad_(True)
        # first order: the graph reaches α_ω (and ω) and α_1 through the clips, sign(g) is constant
        delta = clip_delta(self._start(x, omega) + a["alpha_input"] * sign_input, x, self.ctx.eps)
        blocks = [alpha * s for alpha, s in zip(self.block_alphas, sign_blocks, strict=True)]
        inputs = x + delta
        if omega is not None and not masked:
            inputs.retain_grad()  # g_x: the gradient at the model's input image
        arm = armed(self.model, blocks) if self.layerwise else nullcontext()
        with arm, autocast(self.ctx.amp, x.device):
            logits = self.learner(inputs)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        self.step_optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        sharding.average_gradients(self.alphas.values())  # DDP averages θ's only
        if omega is not None:  # decided before the step sizes take theirs
            direction = (omega.grad if masked else inputs.grad).sign()
            omega_step = self._omega_step(masked)
        scale = scaler._scale.clone() if scaler.is_enabled() else None
        scaler.unscale_(self.step_optimizer)  # ∂L/∂α in true units (a no-op without AMP)
        scaler.step(optimizer)
        scaler.step(self.step_optimizer)  # skipped with the model's step on inf/NaN gradients
        scaler.update()
        if omega is not None:
            step = omega_step * direction
            if scale is not None:  # ω is skipped with them: the scaler lowers its scale exactly
                # when it skips (compared on the device, so no host synchronisation)
                step = torch.where(scaler._scale >= scale, step, 0.0)
            self._write_omega(batch, omega, step)
        return self.result(loss, logits, y)

    def _omega_step(self, masked: bool) -> torch.Tensor:
        """μ_ω = α_1/α_ω (paper) or α_1/(α_ω + 1e-7) (authors' code), at the current step sizes."""
        a = self.alphas
        return (a["alpha_input"] / (a["alpha_omega"] + (0 if masked else 1e-7))).detach()

    @torch.no_grad()
    def _write_omega(self, batch: Batch, omega: torch.Tensor, step: torch.Tensor) -> None:
        """ω_x ← clip(ω_x + step, −1, 1), written back through the batch's crop and flip."""
        new = (omega + step).clamp_(-1, 1)
        self.omega[batch.idx] = self._view(batch).put(self.omega[batch.idx], new)
        sharding.share_rows(self.omega, batch)

    def schedule(self, progress: float) -> None:
        """μ_α on its own cyclic schedule: 0 → step_lr_max (at step_lr_peak) → 0; the momentum
        cycles with it as the model's does (CyclicLR's default in the authors' code)."""
        top = self.options["step_lr_max"]
        lr = cyclic_lr(progress, top, self.options["step_lr_peak"])
        ctx = self.ctx
        for group in self.step_optimizer.param_groups:
            group["lr"] = lr
            group["momentum"] = cyclic_momentum(lr, top, ctx.momentum, ctx.momentum_at_peak)

    def epoch_metrics(self) -> dict[str, float]:
        """The current step sizes (α_ω and α_input in image units), a column each (Figure 4)."""
        return {k: v.item() for k, v in self.alphas.items()}

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "alphas": {k: v.detach().clone() for k, v in self.alphas.items()},
            "initial": dict(self.initial),
            "step_optimizer": self.step_optimizer.state_dict(),
        }
        if self.omega is not None:
            state["omega"] = self.omega
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state.get("alphas", {})) != set(self.alphas) or (
            "omega" in state and self.omega is None
        ):
            raise ValueError(
                f"the checkpoint's {self.name} state does not fit this method "
                f"(step sizes {sorted(state.get('alphas', {}))}, ω {'omega' in state})"
            )
        # ω is kept for the latest epoch only; an older epoch's state comes without it
        if self.omega is not None and "omega" in state:
            if state["omega"].shape != self.omega.shape:
                raise ValueError(
                    f"the checkpoint's ω has shape {tuple(state['omega'].shape)}, "
                    f"this run's training set needs {tuple(self.omega.shape)}"
                )
            self.omega.copy_(state["omega"])
        with torch.no_grad():
            for k, v in state["alphas"].items():
                self.alphas[k].copy_(v)
        self.initial = dict(state["initial"])
        self.step_optimizer.load_state_dict(state["step_optimizer"])


class FGSMPlus(APART):
    """FGSM+ (Section 3.2) = APART w/o layer-wise perturbation: learnable ω and α at the input."""

    name = "fgsm+"
    defaults: ClassVar[dict[str, Any]] = {**APART.defaults, "layerwise": False}


class APARTNoInit(APART):
    """APART w/o perturbation initialisation (Table 6): ω fixed at zero, step sizes learned."""

    name = "apart-noinit"
    defaults: ClassVar[dict[str, Any]] = {**APART.defaults, "init": False}
