"""Figure 2: the training objective keeps falling while robustness drops: training loss and
PGD-20 test accuracy per epoch of FGSM, PGD-10 and APART."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robdrop.study.paper_values import display_name, paper_value
from robdrop.study.study import RunSpec, Study
from robdrop.study.style import apply_style, collapse_mark
from robdrop.study.target import PaperFigure, holds

LOSS = "training objective (cross-entropy)"
ROBUST = "PGD-20 test accuracy (%)"
NO_COLLAPSE_POINTS = 3.0  # "no collapse": the last epoch within 3 points of the best


def tidy(series: pd.Series, method: str, quantity: str) -> pd.DataFrame:
    """(epoch, method, quantity, value) rows of a per-epoch series."""
    return pd.DataFrame(
        {"epoch": series.index, "method": method, "quantity": quantity, "value": series.values}
    )


class Figure2(PaperFigure):
    name = "figure2"
    methods = ("fgsm", "pgd10", "apart")

    def runs(self, study: Study) -> list[RunSpec]:
        return [study.spec(m) for m in self.methods]

    def frame(self, study: Study) -> pd.DataFrame:
        """epoch, method, quantity, value: training loss and PGD-20 test accuracy (%)."""
        rows = []
        for method in self.methods:
            run = study.run(method)
            loss = run.metrics().set_index("epoch")["train_loss"]
            rows.append(tidy(loss, method, LOSS))
            rows.append(tidy(100 * study.robust_curve(method), method, ROBUST))
        return pd.concat(rows, ignore_index=True)

    def draw(self, study: Study) -> dict[str, Figure]:
        return {self.name: draw(self.frame(study), study.fgsm_collapse())}

    def claims(self, study: Study) -> list[dict[str, Any]]:
        fgsm = 100 * study.robust_curve("fgsm")
        collapse = study.fgsm_collapse()
        rows = [
            {
                "claim": "FGSM's PGD-20 accuracy collapses at some epoch",
                "measured": f"best {fgsm.max():.1f} % (epoch {fgsm.idxmax()}), "
                f"last {fgsm.iloc[-1]:.1f} %"
                + (
                    f", collapse at epoch {collapse}"
                    if collapse
                    else ", no epoch below half the best"
                ),
                "holds": holds(collapse is not None),
            }
        ]
        if collapse is not None:
            loss = study.run("fgsm").metrics().set_index("epoch")["train_loss"]
            after = loss.loc[collapse:]
            rows.append(
                {
                    "claim": "…while its training loss keeps falling",
                    "measured": f"loss {after.iloc[0]:.3f} at epoch {collapse} → "
                    f"{after.iloc[-1]:.3f}",
                    "holds": holds(bool(after.iloc[-1] < after.iloc[0])),
                }
            )
        for method in ("apart", "pgd10"):
            curve = 100 * study.robust_curve(method)
            drop = curve.max() - curve.iloc[-1]
            rows.append(
                {
                    "claim": f"{display_name(method)} does not collapse (last within "
                    f"{NO_COLLAPSE_POINTS:g} points of best)",
                    "measured": f"best {curve.max():.1f} % (epoch {curve.idxmax()}), "
                    f"last {curve.iloc[-1]:.1f} %",
                    "holds": holds(bool(drop <= NO_COLLAPSE_POINTS)),
                }
            )
        return rows


def draw(frame: pd.DataFrame, collapse: int | None = None) -> Figure:
    """Training objective and PGD-20 test accuracy per epoch, one panel each."""
    apply_style()
    quantities = list(dict.fromkeys(frame["quantity"]))
    fig, axes = plt.subplots(1, len(quantities), figsize=(5.5 * len(quantities), 4))
    frame = frame.assign(label=frame["method"].map(display_name))
    for ax, quantity in zip(np.atleast_1d(axes), quantities, strict=True):
        part = frame[frame["quantity"] == quantity]
        sns.lineplot(part, x="epoch", y="value", hue="label", marker="o", ax=ax)
        ax.set(xlabel="epoch", ylabel=quantity, title=quantity)
        if "accuracy" in quantity:
            collapse_mark(ax, collapse, int(part["epoch"].max()))
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
