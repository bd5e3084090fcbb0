"""What every figure shares: the seaborn theme, means over seeds with their seeds' own lines, the
marks of FGSM's collapse, and the writer."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

# the paper's collapse epoch for FGSM (Figures 1 and 3: epoch 21 of 30)
PAPER_COLLAPSE = (21, 30)


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def mean_and_seeds(data: pd.DataFrame, *, x: str, y: str, hue: str, ax: plt.Axes, **kw) -> None:
    """Each hue's mean over `train_seed` with a ± one standard deviation band, over thin lines
    of its seeds' own curves: seeds that go different ways (FGSM robust in some, never in
    others) show as such rather than as one wide band."""
    order = list(dict.fromkeys(data[hue]))
    if data["train_seed"].nunique() > 1:
        sns.lineplot(data, x=x, y=y, hue=hue, hue_order=order, units="train_seed",
                     estimator=None, lw=0.6, alpha=0.35, legend=False, ax=ax)  # fmt: skip
    sns.lineplot(data, x=x, y=y, hue=hue, hue_order=order, marker="o", errorbar="sd", ax=ax, **kw)


def collapse_mark(ax: plt.Axes, collapses: dict[int, int | None], last: int) -> None:
    """A vertical line at the (median) epoch FGSM collapsed for good here, labelled with the
    seeds it collapsed in, and the paper's collapse at the same progress."""
    epochs = [c for c in collapses.values() if c is not None]
    if epochs:
        median = float(np.median(epochs))
        label = f"FGSM collapse here: {len(epochs)}/{len(collapses)} seeds" + (
            f", median epoch {median:g}" if len(collapses) > 1 else f", epoch {epochs[0]}"
        )
        ax.axvline(median, color="crimson", ls=":", lw=1.2, label=label)
    paper_epoch = PAPER_COLLAPSE[0] / PAPER_COLLAPSE[1] * last
    ax.axvline(paper_epoch, color="grey", ls="--", lw=0.8, label="paper's collapse (21/30)")


def save_figure(fig: Figure, out: Path, name: str) -> list[Path]:
    """`name`.png and `name`.pdf under `out`; the figure is closed afterwards."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
