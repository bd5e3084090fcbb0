"""What a study's runs and analyses cost, read from their own records: each run's epoch seconds
(training, and the per-epoch quick evaluation) from its metrics.csv, and each figure's or table's
seconds in every `robdrop reproduce` invocation from timings.csv. For a study made in several
invocations, stopped and resumed, where no single wall time exists.

    python benchmarks/study_cost.py --runs RUNS --timings FIGURES/timings.csv --name study_cost

`--timings` may be given more than once (say, the figures folder of an earlier invocation).
Results go to docs/results/<name>.md.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
from common import write_result

from robdrop.training.runs import find_runs, run_costs


def step_costs(timings: list[Path]) -> pd.DataFrame:
    """Every figure's and table's seconds, by timings file and invocation (0.0 s: reused)."""
    frames = []
    for path in timings:
        frame = pd.read_csv(path)
        frames.append(frame[frame["kind"] != "train"].assign(file=str(path)))
    steps = pd.concat(frames, ignore_index=True)
    steps["minutes"] = steps["seconds"] / 60
    return steps[["file", "invocation", "kind", "name", "minutes"]]


@click.command()
@click.option("--runs", "root", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--timings", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@click.option("--name", default="study_cost", help="docs/results/<name>.md")
def main(root: Path, timings: tuple[Path, ...], name: str) -> None:
    runs = run_costs(find_runs(root))
    by_method = (
        runs.groupby(["method", "epsilon"], sort=False)
        .agg(
            runs=("run", "size"),
            epochs=("epochs", "sum"),
            train_min=("train_min", "sum"),
            eval_min=("eval_min", "sum"),
        )
        .reset_index()
    )
    total = runs["train_min"].sum() + runs["eval_min"].sum()
    steps = step_costs(list(timings))
    body = "\n\n".join([
        f"Runs under `{root}`, by method and ε (×255): minutes of training and of per-epoch "
        "evaluation summed over the runs' epochs, each as it ran (alone or beside other runs).",
        by_method.to_markdown(index=False, floatfmt=".1f"),
        f"**{len(runs)} runs, {total:.1f} run-minutes** (training {runs['train_min'].sum():.1f}, "
        f"per-epoch evaluation {runs['eval_min'].sum():.1f}).",
        "Figures and tables, minutes in each invocation that made them (0.0: drawn from the "
        "cache; a step stopped before its end is in no file).",
        steps.to_markdown(index=False, floatfmt=".1f"),
    ])  # fmt: skip
    click.echo(f"written {write_result(name, body)}")


if __name__ == "__main__":
    main()
