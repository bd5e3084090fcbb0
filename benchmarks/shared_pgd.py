"""What Figure 3's strength gap costs when the accuracy curve's PGD-20 has already passed
through the gap's PGD-10 (`robdrop.analysis.gap`), against the gap computed before the curve,
which attacks each checkpoint with PGD-10 of its own. A study draws the curves first (Figures
1 and 2), then the gaps (Figure 3).

    python benchmarks/shared_pgd.py --runs RUNS --run mini-fgsm-eps8-seed1 \
        --run mini-apart-eps8-seed1 --scratch SCRATCH --name shared_pgd

Each named run's checkpoints are copied twice into SCRATCH, without their analysis cache. One
copy computes the gap, then the curve; the other the curve, then the gap, both on the study's
1,000 test images with its evaluation seed. Both orders must give the same numbers bit for
bit, and the same as the run's own cache under RUNS where it holds them. Results go to
docs/results/<name>.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import click
import pandas as pd
from common import without_cache, write_result

from robdrop.analysis import evaluate_run, strength_gap
from robdrop.analysis.cache import lookup
from robdrop.analysis.evaluate import accuracy_params
from robdrop.attacks import make_attack
from robdrop.training.runs import Run

N, SEED = 1000, 0  # the mini study's test images and evaluation seed


def timed(work: Callable[[], pd.DataFrame]) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    frame = work()
    return frame, time.perf_counter() - start


def curve(run: Run) -> pd.DataFrame:
    return evaluate_run(run, ["pgd20"], n=N, seed=SEED)[["epoch", "accuracy"]]


def gap(run: Run) -> pd.DataFrame:
    return strength_gap(run, "pgd10", n=N, seed=SEED)[["epoch", "loss_A", "loss_B", "gap"]]


def study_cache(run: Run) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The curve and gap the study cached beside `run` (None where any epoch is missing), read
    without computing anything."""
    pgd20 = make_attack("pgd20", run.config.eps_image).describe()
    pgd10 = make_attack("pgd10", run.config.eps_image).describe()
    curves, gaps = [], []
    for epoch in run.epochs():
        inputs = [run.checkpoint_path(epoch)]
        found = lookup(run, "accuracy", accuracy_params("test", epoch, pgd20, N, SEED), inputs)
        params = {"epoch": epoch, "to": pgd10, "n": N, "seed": SEED}
        cached_gap = lookup(run, "gap", params, inputs)
        if found is None or cached_gap is None:
            return None, None
        curves.append(found[["epoch", "accuracy"]])
        gaps.append(cached_gap[["epoch", "loss_A", "loss_B", "gap"]])
    return pd.concat(curves, ignore_index=True), pd.concat(gaps, ignore_index=True)


@click.command()
@click.option("--runs", "root", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--run", "names", multiple=True, required=True, help="a run folder under RUNS")
@click.option("--scratch", required=True, type=click.Path(path_type=Path))
@click.option("--name", default="shared_pgd", help="docs/results/<name>.md")
def main(root: Path, names: tuple[str, ...], scratch: Path, name: str) -> None:
    rows = []
    for i, run_name in enumerate(names):
        original = Run(root / run_name)
        arms = {}
        # alternate which order goes first, so a drift in the machine's speed favours neither
        for order in ("gap first", "curve first")[:: 1 if i % 2 == 0 else -1]:
            run = Run(without_cache(original.path, scratch / order.replace(" ", "-") / run_name))
            first, second = (gap, curve) if order == "gap first" else (curve, gap)
            a, seconds_a = timed(lambda run=run, first=first: first(run))
            b, seconds_b = timed(lambda run=run, second=second: second(run))
            frames = {first.__name__: a, second.__name__: b}
            seconds = {first.__name__: seconds_a, second.__name__: seconds_b}
            arms[order] = frames
            rows.append({
                "run": run_name,
                "order": order,
                "checkpoints": len(run.epochs()),
                "curve_s": seconds["curve"],
                "gap_s": seconds["gap"],
                "total_s": seconds_a + seconds_b,
            })  # fmt: skip
        study_curve, study_gap = study_cache(original)
        same = all(arms["gap first"][k].equals(arms["curve first"][k]) for k in ("curve", "gap"))
        if study_curve is None:
            as_study = "not cached there"
        else:
            shared = arms["curve first"]
            as_study = str(study_curve.equals(shared["curve"]) and study_gap.equals(shared["gap"]))
        for row in rows[-2:]:
            row.update(same_numbers_both_orders=same, same_as_study_cache=as_study)
    table = pd.DataFrame(rows)
    totals = table.groupby("order")[["checkpoints", "curve_s", "gap_s", "total_s"]].sum()
    saved = (totals.loc["gap first", "total_s"] - totals.loc["curve first", "total_s"]) / (
        totals.loc["gap first", "checkpoints"]
    )
    ratio = totals.loc["curve first", "total_s"] / totals.loc["gap first", "total_s"]
    body = "\n\n".join([
        f"Runs under `{root}`; each checkpoint's PGD-20 accuracy (the curve) and G→PGD-10 (the "
        f"gap) on the first {N:,} test images drawn with seed {SEED}, in both orders, on fresh "
        "copies of the runs without their analysis cache. Seconds, measured in one process.",
        table.to_markdown(index=False, floatfmt=".1f"),
        totals.reset_index().to_markdown(index=False, floatfmt=".1f"),
        f"**Curve first: {ratio:.2f}× the time of gap first, {saved:.1f} s saved per "
        "checkpoint** (the gap's own PGD-10, less the extra forward pass PGD-20 makes at its "
        "tenth iterate).",
    ])  # fmt: skip
    print(body)
    print(write_result(name, body))


if __name__ == "__main__":
    main()
