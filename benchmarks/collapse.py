"""Robust accuracy per epoch of several methods trained with the same seed on one preset: does
each collapse? (FGSM should; APART, F+FGSM and PGD-10 should not.)

    python benchmarks/collapse.py --data-dir ../shared/data --methods fgsm,apart --epochs 30

Runs are trained (or reused, or resumed) under --out with a checkpoint per epoch and PGD-20 on
the preset's fixed test subset after every epoch. Writes docs/results/collapse-<E>ep.md and
docs/results/collapse-<E>ep.png.
"""

from __future__ import annotations

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from common import RESULTS, write_result

from robdrop.config import make_config
from robdrop.trainer import ensure_trained

ATTACK = "pgd20"


def summarise(curves: pd.DataFrame) -> pd.DataFrame:
    """Best and last robust accuracy per method; collapsed = last below half of the best."""
    col = f"test_{ATTACK}_acc"
    rows = []
    for method, g in curves.groupby("method", sort=False):
        best = g.loc[g[col].idxmax()]
        last = g.iloc[-1]
        rows.append(
            {
                "method": method,
                "best epoch": int(best["epoch"]),
                "best PGD-20 %": 100 * best[col],
                "last PGD-20 %": 100 * last[col],
                "last − best (points)": 100 * (last[col] - best[col]),
                "last clean %": 100 * last["test_clean_acc"],
                "collapsed": bool(last[col] < 0.5 * best[col]),
            }
        )
    return pd.DataFrame(rows).set_index("method")


@click.command()
@click.option("--data-dir", default="../shared/data")
@click.option("--preset", default="mini")
@click.option("--methods", default="fgsm,apart")
@click.option("--epochs", default=30)
@click.option("--seed", default=0)
@click.option("--out", default="checkpoints", help="Where the runs live (reused if complete).")
def main(data_dir: str, preset: str, methods: str, epochs: int, seed: int, out: str) -> None:
    frames = []
    for name in methods.split(","):
        cfg = make_config(
            preset,
            method=name,
            epochs=epochs,
            seed=seed,
            eval_attack=ATTACK,
            save_every_epoch=True,
            data_dir=data_dir,
        )
        run = ensure_trained(cfg, out)
        frames.append(run.metrics().assign(method=name))
    curves = pd.concat(frames, ignore_index=True)
    summary = summarise(curves)
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(
        data=curves.assign(acc=100 * curves[f"test_{ATTACK}_acc"]),
        x="epoch",
        y="acc",
        hue="method",
        marker="o",
        ax=ax,
    )
    ax.set(
        xlabel="epoch",
        ylabel="PGD-20 test accuracy (%)",
        title=f"{preset}: robust accuracy per epoch (seed {seed})",
    )
    fig.tight_layout()
    name = f"collapse-{epochs}ep"
    fig.savefig(RESULTS / f"{name}.png", dpi=120)
    wide = (
        curves.pivot(index="epoch", columns="method", values=f"test_{ATTACK}_acc").mul(100).round(1)
    )
    n = make_config(preset).eval_size
    body = (
        f"Preset `{preset}`, {epochs} epochs, seed {seed}; PGD-20 (ε = 8/255, step 2/255, "
        f"random start) on the first {n} test images after every epoch.\n\n"
        f"{summary.round(2).to_markdown()}\n\n![robust accuracy per epoch]({name}.png)\n\n"
        f"PGD-20 accuracy (%) per epoch:\n\n{wide.to_markdown()}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result(name, body)}")


if __name__ == "__main__":
    main()
