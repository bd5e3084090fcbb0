"""Figure 5: clean against PGD-20 test accuracy of models trained with ε_train = 2 … 10/255, all
evaluated at 8/255: FGSM-like methods fail at and above 8/255, APART stays top right. Each point
is one training run, with its 95 % interval over the test images on both axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robdrop.analysis.stats import wilson_interval
from robdrop.study.paper_values import display_name, paper_value
from robdrop.study.study import RunSpec, Study
from robdrop.study.style import apply_style
from robdrop.study.target import PaperFigure
from robdrop.training.config import make_config
from robdrop.training.runs import Run, find_runs

EVAL_EPS255 = 8.0  # every ε_train is evaluated at the paper's 8/255


class Figure5(PaperFigure):
    name = "figure5"

    def runs(self, study: Study) -> list[RunSpec]:
        return [study.spec(m, eps255=e) for m in study.sweep_methods for e in study.sweep_eps]

    def sweep_runs(self, study: Study) -> list[Run]:
        """The ε sweep's runs present under the study's root: its methods with this preset's
        model and seed (the run names say), any ε_train (another sweep is drawn as it is)."""
        model = make_config(study.preset).model
        found = [
            run
            for run in find_runs(study.root)
            if run.config.preset == study.preset
            and run.config.model == model
            and run.config.method_key in study.sweep_methods
            and run.name == study.spec(run.config.method_key, eps255=run.config.eps255).name
        ]
        if not found:
            raise ValueError(
                f"no ε-sweep runs of {', '.join(study.sweep_methods)} under {study.root}; make "
                f"them with `robdrop reproduce --preset {study.preset} --only figure5`"
            )
        return sorted(found, key=lambda r: (r.config.method_key, r.config.eps255))

    def frame(self, study: Study) -> pd.DataFrame:
        """method, eps_train, clean and pgd20 (%) at the last epoch, evaluated at ε = 8/255,
        each with its 95 % interval over the n test images (<column>_low, <column>_high)."""
        rows = []
        for run in self.sweep_runs(study):
            table = study.evaluate(run, ("clean", "pgd20"), "last", EVAL_EPS255)
            row = {"method": run.config.method_key, "eps_train": run.config.eps255}
            for attack, accuracy, n in table[["attack", "accuracy", "n"]].itertuples(index=False):
                low, high = wilson_interval(accuracy, n)
                row |= {attack: 100 * accuracy, f"{attack}_low": 100 * low,
                        f"{attack}_high": 100 * high, "n": n}  # fmt: skip
            rows.append(row)
        return pd.DataFrame(rows)

    def panels(self, study: Study, frame: pd.DataFrame) -> dict[str, Figure]:
        return {self.name: draw(frame)}


def draw(frame: pd.DataFrame) -> Figure:
    """Clean vs PGD-20 accuracy for each ε_train, per method. The paper's ε = 8/255
    points (Table 2) are drawn as ★ when they fall near ours, else listed in a corner box."""
    apply_style()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    frame = frame.assign(label=frame["method"].map(display_name))
    bars = {"xerr": _bars(frame, "clean"), "yerr": _bars(frame, "pgd20")}
    ax.errorbar(frame["clean"], frame["pgd20"], fmt="none", ecolor="grey", elinewidth=0.6,
                alpha=0.6, zorder=1, **bars)  # fmt: skip
    sns.scatterplot(frame, x="clean", y="pgd20", hue="label", style="label", s=60, ax=ax, zorder=2)
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
    ax.set_title("Figure 5: ε_train sweep (point labels: ε_train in /255)\n"
                 f"one run each; bars: 95 % interval over {frame['n'].max():,} test images",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def _bars(frame: pd.DataFrame, column: str) -> list[pd.Series]:
    """The distances from each point to the ends of its interval, as errorbar wants them."""
    return [frame[column] - frame[f"{column}_low"], frame[f"{column}_high"] - frame[column]]
