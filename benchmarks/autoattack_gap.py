"""AutoAttack against PGD-20 on the last checkpoint of each run: does PGD-20 overstate robustness?

    python benchmarks/autoattack_gap.py checkpoints/mini-*-eps8-seed1 --n 300

For each run folder: the accuracy of its last checkpoint under PGD-20 and under AutoAttack
(--attack: `autoattack`, the authors' standard L∞ version, the default; `autoattack-apgd`, its
APGD-CE and APGD-T; `autoattack-ta`, torchattacks' 10-iteration variant) at the run's ε, on the
same seeded subset of --n test images. Both come through `evaluate_run` and its cache, so at the
study's n and seed (300 and 0 for mini) they are the numbers of Tables 2–4, and a table drawn
afterwards reuses them. AutoAttack should be at most PGD-20 (it is the stronger attack); a gap
PGD-20 − AutoAttack above --masking points suggests gradient masking. The seconds column is the
time AutoAttack took here, or "cached" when it was read from an earlier evaluation; the flags
column holds AutoAttack's own checks. Needs the `autoattack` extra (`compare` for
autoattack-ta). Writes docs/results/autoattack_gap.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import pandas as pd
from common import write_result

from robdrop.analysis import evaluate_run
from robdrop.training.runs import Run


def verdict(pgd20: float, autoattack: float, masking: float) -> str:
    """What the two accuracies (in %) say about this run."""
    gap = pgd20 - autoattack
    if gap < 0:
        return f"AutoAttack ≤ PGD-20 fails: AutoAttack is {-gap:.2f} points higher"
    if gap > masking:
        return f"AutoAttack ≤ PGD-20 holds; the gap exceeds {masking:g} points: gradient masking?"
    return "AutoAttack ≤ PGD-20 holds; no sign of gradient masking"


def measure(run: Run, attack: str, n: int, seed: int, masking: float, **kw: str | None) -> dict:
    """PGD-20 and AutoAttack accuracy (%) of the run's last checkpoint, the gap, the verdict."""
    pgd20 = evaluate_run(run, ["pgd20"], "last", n=n, seed=seed, **kw)
    entries = run.path / "analysis" / "accuracy"
    before = set(entries.glob("*.csv"))
    t0 = time.perf_counter()
    autoattack = evaluate_run(run, [attack], "last", n=n, seed=seed, **kw)
    seconds = time.perf_counter() - t0
    computed = set(entries.glob("*.csv")) - before
    pgd, aa = 100 * pgd20["accuracy"].item(), 100 * autoattack["accuracy"].item()
    return {
        "run": run.name,
        "method": run.config.method_key,
        "epoch": int(autoattack["epoch"].item()),
        "ε (/255)": run.config.eps255,
        "PGD-20 (%)": pgd,
        "AutoAttack (%)": aa,
        "PGD-20 − AA (points)": pgd - aa,
        "AA seconds": f"{seconds:.0f}" if computed else "cached",
        "verdict": verdict(pgd, aa, masking),
        "flags": autoattack["flags"].item() if "flags" in autoattack else "",
        "description": autoattack["description"].item(),
    }


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--n", default=300, help="Test images (a subset drawn with --seed).")
@click.option("--seed", default=0)
@click.option("--attack", default="autoattack", help="autoattack, autoattack-apgd or -ta.")
@click.option("--masking", default=5.0, help="A gap above this many points is flagged.")
@click.option("--data-dir", help="Dataset folder (default: each run's).")
@click.option("--device", default="auto")
def main(
    runs: tuple[str, ...],
    n: int,
    seed: int,
    attack: str,
    masking: float,
    data_dir: str | None,
    device: str,
) -> None:
    rows = []
    for path in runs:
        run = Run(Path(path))
        rows.append(measure(run, attack, n, seed, masking, device=device, data_dir=data_dir))
        click.echo(f"{rows[-1]['run']}: {rows[-1]['verdict']}", err=True)
    table = pd.DataFrame(rows)
    description = table.pop("description").iloc[0]
    holds = (table["PGD-20 − AA (points)"] >= 0).sum()
    flagged = (table["PGD-20 − AA (points)"] > masking).sum()
    body = (
        f"Last checkpoint of each run; {n} test images (seed {seed}); PGD-20 (step ε/4, uniform "
        f"start) and {description} at the run's ε, eval mode, fp32.\n\n"
        f"{table.to_markdown(index=False, floatfmt='.2f')}\n\n"
        f"AutoAttack ≤ PGD-20 holds for {holds} of {len(table)} runs; {flagged} "
        f"{'run has' if flagged == 1 else 'runs have'} a gap above {masking:g} points "
        "(possible gradient masking).\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('autoattack_gap', body)}")


if __name__ == "__main__":
    main()
