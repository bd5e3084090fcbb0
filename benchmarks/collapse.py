"""Robust accuracy per epoch of several methods trained with the same seeds on one preset: does
each collapse? (FGSM should; APART, F+FGSM and PGD-10 should not.)

    python benchmarks/collapse.py --data-dir ../shared/data --methods fgsm,apart --epochs 30
    python benchmarks/collapse.py --data-dir ../shared/data --methods fgsm --seeds 0,1,2,3

Runs are trained (or reused, or resumed) under --out with a checkpoint per epoch and PGD-20 on
the preset's fixed test subset after every epoch. Collapse is the rule of Figures 1–3
(`robdrop.study.study.collapse_epoch`: an epoch below half the best before it); "no collapse"
in issue 3's sense is the last epoch within 3 points of the best. Writes
docs/results/collapse-<E>ep[-seeds…].md and .png.
"""

from __future__ import annotations

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from common import RESULTS, write_result

from robdrop.study.study import collapse_epoch
from robdrop.training.config import make_config
from robdrop.training.trainer import ensure_trained

ATTACK = "pgd20"


def summarise(curves: pd.DataFrame) -> pd.DataFrame:
    """Best and last robust accuracy per (method, seed), and where it collapsed if it did."""
    col = f"test_{ATTACK}_acc"
    rows = []
    for (method, seed), g in curves.groupby(["method", "seed"], sort=False):
        curve = g.set_index("epoch")[col]
        collapse = collapse_epoch(curve)
        rows.append(
            {
                "method": method,
                "seed": seed,
                "best epoch": int(curve.idxmax()),
                "best PGD-20 %": 100 * curve.max(),
                "last PGD-20 %": 100 * curve.iloc[-1],
                "last − best (points)": 100 * (curve.iloc[-1] - curve.max()),
                "last clean %": 100 * g["test_clean_acc"].iloc[-1],
                "collapse epoch": collapse if collapse is not None else "none",
            }
        )
    return pd.DataFrame(rows).set_index(["method", "seed"])


@click.command()
@click.option("--data-dir", default="../shared/data")
@click.option("--preset", default="mini")
@click.option("--methods", default="fgsm,apart")
@click.option("--epochs", type=int, help="Default: the preset's.")
@click.option("--seeds", help="Comma-separated seeds (default: the preset's seed).")
@click.option("--out", default="checkpoints", help="Where the runs live (reused if complete).")
def main(
    data_dir: str, preset: str, methods: str, epochs: int | None, seeds: str | None, out: str
) -> None:
    base = make_config(preset)
    epochs = epochs or base.epochs
    seed_list = [int(s) for s in seeds.split(",")] if seeds else [base.seed]
    frames = []
    for seed in seed_list:
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
            run = ensure_trained(cfg, out, name=f"{cfg.default_name()}-{epochs}ep-{ATTACK}")
            frames.append(run.metrics().assign(method=name, seed=seed))
    curves = pd.concat(frames, ignore_index=True)
    summary = summarise(curves)
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(
        data=curves.assign(acc=100 * curves[f"test_{ATTACK}_acc"], seed=curves["seed"].astype(str)),
        x="epoch",
        y="acc",
        hue="method",
        style="seed",
        marker="o",
        ax=ax,
    )
    seed_text = ", ".join(map(str, seed_list))
    ax.set(
        xlabel="epoch",
        ylabel="PGD-20 test accuracy (%)",
        title=f"{preset}: robust accuracy per epoch (seed {seed_text})",
    )
    fig.tight_layout()
    name = f"collapse-{epochs}ep" + (f"-seeds{'-'.join(map(str, seed_list))}" if seeds else "")
    fig.savefig(RESULTS / f"{name}.png", dpi=120)
    wide = (
        curves.pivot_table(index="epoch", columns=["method", "seed"], values=f"test_{ATTACK}_acc")
        .mul(100)
        .round(1)
    )
    n = base.eval_size
    body = (
        f"Preset `{preset}`, {epochs} epochs, seed {seed_text}; PGD-20 (ε = 8/255, step 2/255, "
        f"random start) on the first {n} test images after every epoch.\n\n"
        f"{summary.round(2).to_markdown()}\n\n![robust accuracy per epoch]({name}.png)\n\n"
        f"PGD-20 accuracy (%) per epoch:\n\n{wide.to_markdown()}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result(name, body)}")


if __name__ == "__main__":
    main()
