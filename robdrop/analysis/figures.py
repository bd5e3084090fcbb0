"""Figures 1–5 drawn from the tidy frames of `Study` (matplotlib + seaborn), and their writer.

Every function takes frames and returns a matplotlib Figure; nothing here computes a number,
so a notebook and `robdrop figures` draw exactly the same thing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robdrop.analysis.paper_values import display_name, paper_value

# the paper's collapse epoch for FGSM (Figures 1 and 3: epoch 21 of 30)
PAPER_COLLAPSE = (21, 30)


def _style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def _collapse_mark(ax: plt.Axes, epoch: int | None, last: int) -> None:
    """A vertical line at the epoch FGSM collapsed here, and the paper's at the same progress."""
    if epoch is not None:
        ax.axvline(epoch, color="crimson", ls=":", lw=1.2, label=f"FGSM collapse here ({epoch})")
    paper_epoch = PAPER_COLLAPSE[0] / PAPER_COLLAPSE[1] * last
    ax.axvline(paper_epoch, color="grey", ls="--", lw=0.8, label="paper's collapse (21/30)")


def figure1a(images: np.ndarray, deltas: dict[int, np.ndarray], eps: float) -> Figure:
    """Test images and FGSM's perturbations at an early and a late epoch (δ scaled to ±ε)."""
    _style()
    epochs = sorted(deltas)
    n = len(images)
    fig, axes = plt.subplots(len(epochs) + 1, n, figsize=(1.8 * n, 1.9 * (len(epochs) + 1)))
    axes = np.asarray(axes).reshape(len(epochs) + 1, n)
    for j in range(n):
        axes[0, j].imshow(images[j])
        for i, epoch in enumerate(epochs, start=1):
            axes[i, j].imshow(np.clip(0.5 + deltas[epoch][j] / (2 * eps), 0, 1))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image")
    for i, epoch in enumerate(epochs, start=1):
        axes[i, 0].set_ylabel(f"δ, epoch {epoch}")
    fig.suptitle(f"Figure 1a: FGSM perturbations (grey = 0, colour scale ±{eps * 255:.0f}/255)")
    fig.tight_layout()
    return fig


def figure1b(frame: pd.DataFrame, collapse: int | None = None) -> Figure:
    """Acc(θ_PGD-10, f_A(θ_A^(i))) per epoch for FGSM, FGSM+ and random noise (Figure 1b)."""
    _style()
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(frame, x="epoch", y="accuracy", hue="series", style="series", marker="o", ax=ax)
    _collapse_mark(ax, collapse, int(frame["epoch"].max()))
    ax.set(xlabel="epoch i of the generating run", ylabel="accuracy of the PGD-10 model (%)")
    ax.set_title("Figure 1b: strength of FGSM / FGSM+ perturbations vs random noise")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure2(frame: pd.DataFrame, collapse: int | None = None) -> Figure:
    """Training objective and PGD-20 test accuracy per epoch, one panel each (Figure 2)."""
    _style()
    quantities = list(dict.fromkeys(frame["quantity"]))
    fig, axes = plt.subplots(1, len(quantities), figsize=(5.5 * len(quantities), 4))
    frame = frame.assign(label=frame["method"].map(display_name))
    for ax, quantity in zip(np.atleast_1d(axes), quantities, strict=True):
        part = frame[frame["quantity"] == quantity]
        sns.lineplot(part, x="epoch", y="value", hue="label", marker="o", ax=ax)
        ax.set(xlabel="epoch", ylabel=quantity, title=quantity)
        if "accuracy" in quantity:
            _collapse_mark(ax, collapse, int(part["epoch"].max()))
            for method in part["method"].unique():
                ref = paper_value("table2", method, "pgd20")
                if ref is not None:
                    ax.axhline(ref, ls="--", lw=0.8, color="grey")
                    label = f"paper {display_name(method)}, final"
                    ax.annotate(label, (part["epoch"].min(), ref), fontsize=7)
        ax.legend(fontsize=7)
    fig.suptitle("Figure 2: training objective and robustness per epoch")
    fig.tight_layout()
    return fig


def figure3(frame: pd.DataFrame, collapse: int | None = None) -> Figure:
    """The strength gap per epoch: (a) single-step generators → PGD-10, (b) PGD-5 → PGD-20."""
    _style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, panel in zip(axes, ("a", "b"), strict=True):
        part = frame[frame["panel"] == panel]
        sns.lineplot(part, x="epoch", y="gap", hue="pair", marker="o", ax=ax)
        ax.set(xlabel="epoch", ylabel="strength gap G (cross-entropy, nats)", title=f"({panel})")
        if panel == "a":
            _collapse_mark(ax, collapse, int(part["epoch"].max()))
        ax.legend(fontsize=7)
    fig.suptitle("Figure 3: perturbation strength gap")
    fig.tight_layout()
    return fig


def figure4(frame: pd.DataFrame) -> Figure:
    """APART's learned step sizes per epoch, in /255 units (Figure 4)."""
    _style()
    scaled = frame.assign(value=255 * frame["value"])
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(scaled, x="epoch", y="value", hue="step", marker="o", ax=ax)
    ax.set(xlabel="epoch", ylabel="step size (/255)", yscale="log")
    ax.set_title("Figure 4: APART step sizes")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def figure5(frame: pd.DataFrame) -> Figure:
    """Clean vs PGD-20 accuracy for each ε_train, per method (Figure 5). The paper's ε = 8/255
    points (Table 2) are drawn as ★ when they fall near ours, else listed in a corner box."""
    _style()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    frame = frame.assign(label=frame["method"].map(display_name))
    sns.scatterplot(frame, x="clean", y="pgd20", hue="label", style="label", s=60, ax=ax)
    references = []
    for method, part in frame.sort_values("eps_train").groupby("method"):
        ax.plot(part["clean"], part["pgd20"], lw=0.6, alpha=0.5)
        for _, row in part.iterrows():
            ax.annotate(f"{row['eps_train']:g}", (row["clean"], row["pgd20"]), fontsize=6)
        clean = paper_value("table2", method, "clean")
        robust = paper_value("table2", method, "pgd20")
        if clean is not None:
            references.append((display_name(method), clean, robust))
    near = frame["clean"].max() + 15 >= max((c for _, c, _ in references), default=0)
    if near:
        for name, clean, robust in references:
            ax.scatter([clean], [robust], marker="*", s=90, color="grey")
            ax.annotate(f"paper {name}", (clean, robust), fontsize=6)
    elif references:
        text = "paper, ε = 8/255 (clean / PGD-20):\n" + "\n".join(
            f"{name}: {clean:.1f} / {robust:.1f} %" for name, clean, robust in references
        )
        ax.text(
            0.98,
            0.02,
            text,
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=7,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )
    ax.set(xlabel="clean test accuracy (%)", ylabel="PGD-20 test accuracy (%)")
    ax.legend(title="method", fontsize=7)
    ax.set_title("Figure 5: ε_train sweep (point labels: ε_train in /255)")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, out: Path, name: str) -> list[Path]:
    """`name`.png and `name`.pdf under `out`; the figure is closed afterwards."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
