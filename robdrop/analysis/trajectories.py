"""How a run's generator changes over training: APART's learned step sizes (Figure 4) and the
input perturbations f_A(θ^(i)) of a few fixed test images (Figure 1a)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robdrop.analysis.common import (
    Checkpoint,
    own_perturbation,
    progress,
    run_data,
)
from robdrop.analysis.evaluate import Epochs, resolve_epochs
from robdrop.attacks.base import seeded
from robdrop.training.factories import resolve_device
from robdrop.training.runs import Run

STEP_PREFIX = "alpha_"


def step_size_trajectories(run: Run) -> pd.DataFrame:
    """Tidy (epoch, step, value) from metrics.csv's alpha_* columns (omega, input, block1…),
    from epoch 0: the initial step sizes, which every checkpoint's method state keeps."""
    metrics = run.metrics()
    columns = [c for c in metrics.columns if c.startswith(STEP_PREFIX)]
    if not columns:
        raise ValueError(
            f"run {run.name} ({run.config.method_key}) learns no step sizes "
            f"(metrics.csv has no {STEP_PREFIX}* columns)"
        )
    initial = run.load_checkpoint(run.epochs()[0])["method"].get("initial")
    if initial is not None:
        start = pd.DataFrame([{"epoch": 0, **{c: initial[c] for c in columns}}])
        metrics = pd.concat([start, metrics[["epoch", *columns]]], ignore_index=True)
    tidy = metrics.melt(id_vars="epoch", value_vars=columns, var_name="step", value_name="value")
    return tidy.assign(step=tidy["step"].str.removeprefix(STEP_PREFIX))


def _nhwc(x: torch.Tensor) -> np.ndarray:
    """Image tensors as NHWC arrays, the layout plotting libraries expect."""
    return x.permute(0, 2, 3, 1).cpu().numpy()


def perturbation_images(
    run: Run,
    epochs: Epochs = "all",
    *,
    n_images: int = 4,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | Path | None = None,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The first `n_images` test images and, per epoch, δ = f_A(θ^(i), x, y) (NHWC, eval mode).

    Images are in [0, 1]; perturbations in image units (multiply by 255 for /255).
    """
    device = resolve_device(device)
    data = run_data(run, data_dir)
    x = data.test_x[:n_images].to(device).float() / 255
    y = data.test_y[:n_images].to(device)
    deltas = {}
    chosen = resolve_epochs(run, epochs, seed=seed, device=device, data_dir=data_dir)
    for epoch in progress(chosen, f"perturbations {run.name}"):
        with seeded(seed, device):
            deltas[epoch] = _nhwc(own_perturbation(Checkpoint(run, epoch, device), x, y))
    return _nhwc(x), deltas
