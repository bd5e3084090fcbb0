"""Whether runs trained the same model: every weight of their last checkpoints compared with
`torch.equal` against the first run's, and their per-epoch training losses. Used for APART's ε
sweep on `mini`, where ε_train = 6, 8 and 10/255 never bind (figures/README.md, Figure 5).

    python benchmarks/identical_runs.py RUNS/mini-apart-eps6-seed1 RUNS/mini-apart-eps8-seed1 \
        RUNS/mini-apart-eps10-seed1 --name identical_apart_eps

Results go to docs/results/<name>.md.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
import torch
from common import write_result

from robdrop.training.runs import Run


def last_weights(run: Run) -> dict[str, torch.Tensor]:
    """The model weights of the run's last checkpoint (read and checked by `Run`)."""
    return run.load_checkpoint()["model"]


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", default="identical_runs", help="docs/results/<name>.md")
def main(folders: tuple[Path, ...], name: str) -> None:
    runs = [Run(folder) for folder in folders]
    first = last_weights(runs[0])
    rows = []
    for run in runs:
        weights = last_weights(run)
        same = weights.keys() == first.keys() and all(
            torch.equal(weights[k], first[k]) for k in first
        )
        losses = run.metrics()["train_loss"]
        rows.append({
            "run": run.name,
            "ε_train (/255)": run.config.eps255,
            "last epoch": len(losses),
            f"weights equal to {runs[0].name}'s": same,
            "last train loss": f"{losses.iloc[-1]:.16g}",
        })  # fmt: skip
    body = pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)
    click.echo(body)
    click.echo(f"written {write_result(name, body)}")


if __name__ == "__main__":
    main()
