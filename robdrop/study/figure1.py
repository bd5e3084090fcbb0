"""Figure 1: FGSM's perturbations lose their strength when its robustness drops. (a) FGSM's
perturbations of a few test images before the collapse and at the end; (b) the accuracy of a
PGD-10 model on FGSM's and FGSM+'s perturbations made against each epoch's checkpoint,
Acc(θ_PGD-10, f_A(θ_A^(i))), beside random noise."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robdrop.analysis.crossacc import cross_accuracy
from robdrop.analysis.stats import wilson_interval
from robdrop.analysis.trajectories import perturbation_images
from robdrop.study.study import RunSpec, Study
from robdrop.study.style import apply_style, collapse_mark, mean_and_seeds
from robdrop.study.target import PaperFigure, holds
from robdrop.training.best import best_epoch

RANDOM = "Acc(θ_PGD-10, f_Random)"


def series_name(label: str) -> str:
    return f"Acc(θ_PGD-10, f_{label}(θ_{label}^(i)))"


class Figure1(PaperFigure):
    name = "figure1"
    methods = ("fgsm", "fgsm+", "pgd10")

    def runs(self, study: Study) -> list[RunSpec]:
        return [spec for m in self.methods for spec in study.specs(m)]

    def epochs(self, study: Study) -> tuple[int, int]:
        """Panel a's early and late epoch of FGSM's first seed: the best before its collapse
        (its best epoch when it does not collapse) and the last epoch."""
        curve = study.robust_curve("fgsm")
        late = int(curve.index[-1])
        collapse = study.fgsm_collapse()
        early = best_epoch(curve.loc[: collapse - 1] if collapse else curve)
        return (early if early != late else int(curve.index[0])), late

    def images(self, study: Study) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Panel a: test images and FGSM's perturbations of them at the two epochs (NHWC)."""
        return perturbation_images(
            study.run("fgsm"),
            list(self.epochs(study)),
            seed=study.seed,
            device=study.device,
            data_dir=study.data_dir,
        )

    def frame(self, study: Study) -> pd.DataFrame:
        """Panel b: train_seed, epoch, series, accuracy (%) for A = FGSM, FGSM+ and the random
        reference; θ_PGD-10 is PGD-10's last epoch with the same seed (its first seed's where
        it was not trained with that one)."""
        frames = []
        for seed in study.seeds_for("fgsm"):
            target = study.reference("pgd10", seed)
            for method, label in (("fgsm", "FGSM"), ("fgsm+", "FGSM+")):
                table = cross_accuracy(
                    target,
                    "last",
                    source_run=study.run(method, seed),
                    perturb="own",
                    n=study.n,
                    seed=study.seed,
                    device=study.device,
                    data_dir=study.data_dir,
                )
                frames.append(table.assign(series=series_name(label), train_seed=seed))
            random = table[["epoch", "random_accuracy", "n"]].rename(
                columns={"random_accuracy": "accuracy"}
            )
            frames.append(random.assign(series=RANDOM, train_seed=seed))
        tidy = pd.concat(frames, ignore_index=True)
        tidy = tidy[["train_seed", "epoch", "series", "accuracy", "n"]]
        return tidy.assign(accuracy=100 * tidy["accuracy"])

    def panels(self, study: Study, frame: pd.DataFrame) -> dict[str, Figure]:
        images, deltas = self.images(study)
        eps = study.run("fgsm").config.eps_image
        return {
            "figure1a": draw_images(images, deltas, eps),
            "figure1b": draw_strength(frame, study.fgsm_collapses()),
        }

    def claims(self, study: Study) -> list[dict[str, Any]]:
        """C3a of docs/faithful_search.md, per seed where FGSM collapsed for good at c: the
        median over epochs i ≥ c of Acc(θ_PGD-10, f_FGSM(θ_FGSM^(i))) lies within the 95 %
        interval (over the test images) of Acc(θ_PGD-10, f_Random)."""
        collapses = {s: c for s, c in study.fgsm_collapses().items() if c is not None}
        if not collapses:
            return []
        frame = self.frame(study)
        measured, held = [], 0
        for seed, collapse in collapses.items():
            cross = frame[frame["train_seed"] == seed].pivot(
                index="epoch", columns="series", values="accuracy"
            )
            median = cross[series_name("FGSM")].loc[collapse:].median()
            random = cross[RANDOM].iloc[0]
            n = int(frame["n"].iloc[0])
            low, high = (100 * b for b in wilson_interval(random / 100, n))
            held += low <= median <= high
            measured.append(f"seed {seed}: {median:.1f} % vs [{low:.1f}, {high:.1f}]")
        return [
            {
                "claim": "after FGSM's collapse, Acc(θ_PGD-10, f_FGSM) rises to the random-noise "
                "level (median after the collapse within random noise's 95 % interval)",
                "measured": f"{held}/{len(collapses)} collapsing seeds; " + "; ".join(measured),
                "holds": holds(held == len(collapses), held, len(collapses)),
            }
        ]


def draw_images(images: np.ndarray, deltas: dict[int, np.ndarray], eps: float) -> Figure:
    """Test images and FGSM's perturbations at an early and a late epoch (δ scaled to ±ε)."""
    apply_style()
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


def draw_strength(frame: pd.DataFrame, collapses: dict[int, int | None] | None = None) -> Figure:
    """Acc(θ_PGD-10, f_A(θ_A^(i))) per epoch for FGSM, FGSM+ and random noise (Figure 1b): the
    mean over training seeds with a band of ± one standard deviation, each seed a thin line."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6, 4))
    mean_and_seeds(frame, x="epoch", y="accuracy", hue="series", style="series", ax=ax)
    collapse_mark(ax, collapses or {}, int(frame["epoch"].max()))
    ax.set(xlabel="epoch i of the generating run", ylabel="accuracy of the PGD-10 model (%)")
    ax.set_title("Figure 1b: strength of FGSM / FGSM+ perturbations vs random noise")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
