"""Issue 16, round 3 (docs/faithful_search.md, "Round 3"): C1 and C2 read from issue 19's runs
of `mini` at 30 epochs, which keep PGD-20 on the first 1,000 test images after every epoch:

    python benchmarks/faithful_mini30.py calibration
    python benchmarks/faithful_mini30.py held-out      # once issue 19's judge has trained them

`calibration` reads FGSM seeds 1-3 and APART, PGD-10, F+FGSM, GradAlign and N-FGSM seeds 1-2
(`--methods apart,pgd10` reads only the two that C2 and r need);
`held-out` reads FGSM seeds 11-20 (refusing until all ten are complete) against the same PGD-10
reference and APART/PGD-10 runs. Each writes docs/results/faithful_search_mini30_<stage>.md.
No training: the runs are those kept in benchmarks/data/monitor_signals/.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
from common import RESULTS, write_result
from faithful_search import read_curve
from monitor_signals import ARCHIVE, FGSM_SEEDS, HELD_OUT, OTHER_METHODS, OTHER_SEEDS, run_name

from robdrop.analysis.stats import wilson_interval
from robdrop.study.study import lasting_collapse
from robdrop.training.best import best_epoch
from robdrop.training.runs import Run

EPOCHS = 30
REFERENCE = "pgd10"  # r: the mean of its seeds' last-epoch PGD-20 accuracy
KEEPERS = ("apart", "pgd10")  # C2: last epoch within 3 points of the best, every seed
MARGIN = 0.03
RATIO = 0.6  # C1: FGSM's best at least RATIO · r
HELD_OUT_NEEDED = 8  # C1 in at least 8 of the 10 held-out seeds (the 4 of 5)


def curve_of(archive: Path, method: str, seed: int) -> tuple[pd.Series, int]:
    """The run's PGD-20 curve (fraction, by epoch) and its number of test images; raises when
    the run is not complete."""
    path = archive / run_name(method, seed, EPOCHS, False)
    curve = read_curve(path)
    if len(curve) != EPOCHS:
        raise click.ClickException(
            f"{path.name} is not complete in {archive} "
            f"({len(curve)} of {EPOCHS} epochs): run benchmarks/monitor_signals.py first"
        )
    return curve, Run(path).config.eval_size


def shown(accuracy: float, n: int) -> str:
    """An accuracy in percent with its 95 % interval over the n test images."""
    low, high = wilson_interval(accuracy, n)
    return f"{100 * accuracy:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def row(method: str, seed: int, curve: pd.Series, n: int, r: float) -> dict:
    """One run's best and last accuracy (with 95 % intervals over its n test images), lasting
    collapse (after its best, below a quarter of it to the end), C1 (FGSM), C2 (APART, PGD-10)."""
    best, collapse = curve.max(), lasting_collapse(curve)
    return {
        "method": method,
        "seed": seed,
        "best epoch": best_epoch(curve),
        "best % [95 %]": shown(best, n),
        "best / r": best / r,
        "last % [95 %]": shown(curve.iloc[-1], n),
        "lasting collapse": collapse if collapse is not None else "none",
        "C1": bool(collapse is not None and best >= RATIO * r) if method == "fgsm" else None,
        "C2": bool(curve.iloc[-1] >= best - MARGIN) if method in KEEPERS else None,
    }


def table(archive: Path, fgsm_seeds: tuple[int, ...], others: tuple[str, ...]) -> pd.DataFrame:
    """Rows for the FGSM seeds and for every other method on OTHER_SEEDS."""
    reference = [curve_of(archive, REFERENCE, s)[0].iloc[-1] for s in OTHER_SEEDS]
    r = sum(reference) / len(reference)
    runs = [("fgsm", s) for s in fgsm_seeds] + [(m, s) for m in others for s in OTHER_SEEDS]
    rows = [row(m, s, *curve_of(archive, m, s), r) for m, s in runs]
    return pd.DataFrame(rows).assign(r=100 * r)


def verdict(rows: pd.DataFrame, needed: int | None) -> str:
    """C1's count over the FGSM seeds and C2 over the APART and PGD-10 runs, as a sentence."""
    fgsm, keepers = rows[rows["method"] == "fgsm"], rows[rows["method"].isin(KEEPERS)]
    c1, c2 = int(fgsm["C1"].sum()), int(keepers["C2"].sum())
    text = (
        f"r = {rows['r'].iloc[0]:.1f} % (PGD-10's last epoch, mean of seeds "
        f"{', '.join(map(str, OTHER_SEEDS))}). **C1 holds in {c1} of {len(fgsm)} FGSM seeds; "
        f"C2 in {c2} of {len(keepers)} APART and PGD-10 runs.**"
    )
    if needed is not None:
        passed = c1 >= needed and c2 == len(keepers)
        text += (
            f" Pre-registered bar: C1 in at least {needed} of {len(fgsm)} and C2 in all: "
            f"**{'met' if passed else 'not met'}**."
        )
    return text


@click.group()
def main() -> None:
    """docs/faithful_search.md's round 3, read from issue 19's runs."""


@main.command()
@click.option("--archive", type=click.Path(path_type=Path), default=ARCHIVE)
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS)
@click.option(
    "--methods",
    default=",".join(OTHER_METHODS),
    help="The other methods shown (APART and PGD-10 at least: C2 and r need them).",
)
def calibration(archive: Path, results: Path, methods: str) -> None:
    """FGSM seeds 1-3 and the other methods' seeds 1-2."""
    others = tuple(methods.split(","))
    if not set(KEEPERS) <= set(others):
        raise click.BadParameter("must include apart and pgd10", param_hint="--methods")
    rows = table(archive, FGSM_SEEDS, others)
    body = (
        "Round 3 of docs/faithful_search.md, calibration: `mini` at 30 epochs (issue 19's "
        "calibration runs), PGD-20 on the first 1,000 test images after every epoch.\n\n"
        f"{verdict(rows, None)}\n\n{rows.drop(columns='r').round(3).to_markdown(index=False)}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('faithful_search_mini30_calibration', body, results)}")


@main.command(name="held-out")
@click.option("--archive", type=click.Path(path_type=Path), default=ARCHIVE)
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS)
def held_out(archive: Path, results: Path) -> None:
    """FGSM seeds 11-20 (issue 19's held-out runs), read once, with the bar."""
    rows = table(archive, HELD_OUT, KEEPERS)
    body = (
        "Round 3 of docs/faithful_search.md, held out: `mini` at 30 epochs, FGSM seeds 11-20 "
        "(issue 19's held-out runs) against PGD-10 and APART seeds 1-2, PGD-20 on the first "
        f"1,000 test images after every epoch.\n\n{verdict(rows, HELD_OUT_NEEDED)}\n\n"
        f"{rows.drop(columns='r').round(3).to_markdown(index=False)}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('faithful_search_mini30_heldout', body, results)}")


if __name__ == "__main__":
    main()
