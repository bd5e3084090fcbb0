"""The ε_train sweep of Figure 5: train each (method, ε) and measure clean and PGD-20 accuracy.

Runs are reused when complete and resumed when partial (`trainer.ensure_trained`). Every model
is evaluated at its last epoch against the same budget, `eval_eps255` (8/255 by default, the
paper's evaluation budget on CIFAR), whatever ε it was trained with.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from robdrop.analysis.evaluate import evaluate_run
from robdrop.training.config import make_config
from robdrop.training.trainer import ensure_trained

ATTACKS = ("clean", "pgd20")


def parse_eps_values(text: str) -> list[float]:
    """'2-10' -> 2, 3, …, 10; '2,4,8' -> 2, 4, 8 (in /255)."""
    text = text.replace(" ", "")
    m = re.fullmatch(r"(\d+)-(\d+)", text)
    try:
        if m:
            return [float(e) for e in range(int(m.group(1)), int(m.group(2)) + 1)]
        return [float(e) for e in text.split(",")]
    except ValueError:
        raise ValueError(
            f"ε values are a range such as 2-10 or a list such as 2,4,8, not {text!r}"
        ) from None


def eps_sweep(
    methods: Sequence[str],
    eps_values: Iterable[float] = range(2, 11),
    preset: str | None = "mini",
    out: str | Path = "checkpoints",
    *,
    config: dict[str, Any] | None = None,
    eval_eps255: float = 8.0,
    n: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (method, ε_train in /255): clean and PGD-20 test accuracy at the last epoch.

    `config` holds further training settings (e.g. epochs, data_dir, train_size); evaluation
    uses a subset of `n` test images drawn with `seed` (default: all) on the run's device.
    """
    combos = list(itertools.product(methods, eps_values))
    cfgs = [make_config(preset, **{**(config or {}), "method": m, "eps255": e}) for m, e in combos]
    rows = []
    for cfg in tqdm(cfgs, desc="eps sweep", unit="run", leave=False, disable=not progress):
        run = ensure_trained(cfg, out, progress=progress)
        table = evaluate_run(
            run, ATTACKS, "last", n=n, seed=seed, eps255=eval_eps255, device=cfg.device
        )
        accuracy = table.set_index("attack")["accuracy"]
        rows.append(
            {
                "method": cfg.method_key,
                "eps_train": cfg.eps255,
                **accuracy.to_dict(),
                "run": run.name,
            }
        )
    return pd.DataFrame(rows, columns=["method", "eps_train", *ATTACKS, "run"])
