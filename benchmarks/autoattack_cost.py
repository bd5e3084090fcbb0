"""What AutoAttack costs on a CPU, per implementation, on the checkpoints of `mini` runs.

    python benchmarks/autoattack_cost.py checkpoints/mini-ffgsm-eps8-seed1 --n 100

For each run folder (its last checkpoint, or --epoch): accuracy and wall time of PGD-20 and of
each AutoAttack spec (`autoattack`: the authors' standard version through pyautoattack;
`autoattack-apgd`: its APGD-CE and APGD-T only; `autoattack-ta`: torchattacks' 10-iteration
variant, when installed) on the same seeded --n test images at the run's ε, never from the cache.
CPU seconds (the process's, all threads) stay meaningful when other jobs share the cores; the
last column extrapolates them to a Table 2 column on `mini` (300 images, --table-runs runs),
assuming the cost grows with the images, as it does for the same robust fraction. Writes
docs/results/autoattack_cost.md.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import click
import pandas as pd
import torch
from common import write_result

from robdrop.analysis.common import fixed_test_subset
from robdrop.attacks import make_attack
from robdrop.attacks.base import seeded
from robdrop.attacks.evaluate import accuracy_under
from robdrop.training.runs import Run

SPECS = ("pgd20", "autoattack-apgd", "autoattack", "autoattack-ta")
NEEDS = {
    "autoattack": "pyautoattack",
    "autoattack-apgd": "pyautoattack",
    "autoattack-ta": "torchattacks",
}


def measure(run: Run, epoch: int | None, spec: str, n: int, seed: int, table: int) -> dict:
    """Accuracy (%) and seconds of `spec` on the run's checkpoint, with its flags."""
    model, _ = run.load(epoch)
    x, y = fixed_test_subset(run, n, seed)
    attack = make_attack(spec, run.config.eps_image)
    attack.take_flags()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with seeded(seed, torch.device("cpu")):
        acc = accuracy_under(model, attack, x, y, batch_size=run.config.eval_batch_size)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "run": run.name,
        "epoch": epoch or run.last_epoch(),
        "attack": spec,
        "accuracy (%)": 100 * acc,
        "seconds": seconds,
        "CPU seconds": cpu,
        "CPU s/image": cpu / n,
        f"Table 2 column, {table} runs × 300 images (CPU min, est.)": cpu / n * 300 * table / 60,
        "flags": attack.take_flags() or "",
    }


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--epoch", type=int, help="Checkpoint (default: each run's last).")
@click.option("--n", default=100, help="Test images (a subset drawn with --seed).")
@click.option("--seed", default=0)
@click.option("--table-runs", default=6, help="Runs in Table 2 (6; 8 with --later-methods).")
def main(runs: tuple[str, ...], epoch: int | None, n: int, seed: int, table_runs: int) -> None:
    specs = [s for s in SPECS if s not in NEEDS or importlib.util.find_spec(NEEDS[s])]
    rows = []
    for path in runs:
        for spec in specs:
            rows.append(measure(Run(Path(path)), epoch, spec, n, seed, table_runs))
            click.echo(f"{rows[-1]['run']} {spec}: {rows[-1]['seconds']:.0f} s", err=True)
    frame = pd.DataFrame(rows)
    body = (
        f"{n} test images (seed {seed}) at each run's ε, eval mode, fp32, batch of the run's "
        "eval_batch_size; seconds are wall time on this machine (other jobs may share its cores), "
        f"CPU seconds this process's at {torch.get_num_threads()} torch thread(s). "
        f"Specs: {', '.join(specs)}.\n\n{frame.to_markdown(index=False, floatfmt='.2f')}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('autoattack_cost', body)}")


if __name__ == "__main__":
    main()
