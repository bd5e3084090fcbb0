"""Seconds per training epoch of each method on one preset, in one process, plus the share of
a training step spent in the data pipeline.

    python benchmarks/epoch_cost.py --data-dir ../shared/data
    python benchmarks/epoch_cost.py --data-dir ../shared/data --methods fgsm,apart --epochs 2
    python benchmarks/epoch_cost.py --data-dir ../shared/data --methods fgsm --on-underfit best

Each method trains `--epochs` epochs (no per-epoch evaluation); the last epoch's training time
is reported, so start-up effects are excluded. Ratios to FGSM and to PGD-10 come from the same
run; so does each monitor cost column (`monitor*_seconds`, the monitor being the preset's) as a
percentage of that method's epoch. Results go to docs/results/epoch_cost.md, or with
`--on-underfit stop|best` (which adds best.pt's probe) to docs/results/epoch_cost_<reaction>.md.
"""

from __future__ import annotations

import tempfile
import time

import click
import pandas as pd
import torch
from common import write_result

from robdrop.methods import parse_method
from robdrop.training.config import make_config
from robdrop.training.factories import load_data
from robdrop.training.trainer import Trainer

DEFAULT_METHODS = "fgsm,ffgsm,pgd10,apart,fgsm+,free8,atta10,gradalign,nfgsm"


def data_seconds(cfg, repeats: int = 3) -> float:
    """Time to produce one epoch of augmented batches (crop, flip, float) without training."""
    data = load_data(cfg)
    loader = data.train_loader(cfg.batch_size, seed=cfg.seed)
    best = float("inf")
    for epoch in range(1, repeats + 1):
        t0 = time.perf_counter()
        for batch in loader.epoch(epoch):
            batch.x.sum()  # touch the result so nothing is left lazy
        best = min(best, time.perf_counter() - t0)
    return best


@click.command()
@click.option("--data-dir", default="../shared/data")
@click.option("--preset", default="mini")
@click.option("--methods", default=DEFAULT_METHODS, help="Comma-separated method names.")
@click.option("--epochs", default=2, help="Epochs per method; the last one is timed.")
@click.option("--on-underfit", default="warn", help="The monitor's reaction (stop/best: best.pt).")
def main(data_dir: str, preset: str, methods: str, epochs: int, on_underfit: str) -> None:
    rows = []
    for name in methods.split(","):
        try:
            parse_method(name)
        except ValueError as err:
            click.echo(f"skipping {name}: {err}")
            continue
        cfg = make_config(
            preset,
            method=name,
            epochs=epochs,
            eval_size=0,
            data_dir=data_dir,
            on_underfit=on_underfit,
        )
        with tempfile.TemporaryDirectory() as out:
            last = Trainer(cfg, out, progress=False).fit().metrics().iloc[-1]
        seconds = float(last["seconds"])
        monitor = {
            f"{column} (% of epoch)": 100 * float(last[column]) / seconds
            for column in last.index
            if column.startswith("monitor") and column.endswith("seconds")
        }
        rows.append({"method": name, "seconds/epoch": seconds, **monitor})
        click.echo(f"{name}: {seconds:.1f} s/epoch")
    table = pd.DataFrame(rows).set_index("method")
    base = table["seconds/epoch"]
    if "fgsm" in base:
        table["× FGSM"] = base / base["fgsm"]
    if "pgd10" in base:
        table["× PGD-10"] = base / base["pgd10"]
    cfg = make_config(preset, method="fgsm", data_dir=data_dir)
    data_s = data_seconds(cfg)
    share = (
        f"{data_s:.2f} s per epoch ({100 * data_s / base['fgsm']:.1f} % of an FGSM epoch)"
        if "fgsm" in base
        else f"{data_s:.2f} s per epoch"
    )
    body = (
        f"Preset `{preset}`, {epochs} epochs per method, the last one timed "
        f"({torch.get_num_threads()} threads).\n\n{table.round(3).to_markdown()}\n\n"
        f"Data pipeline (crop + flip + float conversion of a whole epoch, no training): {share}.\n"
    )
    click.echo(body)
    result = "epoch_cost" if on_underfit == "warn" else f"epoch_cost_{on_underfit}"
    click.echo(f"written to {write_result(result, body)}")


if __name__ == "__main__":
    main()
