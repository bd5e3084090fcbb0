"""Wall time of the `mini` study trained one run after another against `--parallel` runs at once
(issue 20): `robdrop reproduce` sequentially with every thread, then `--launcher local
--parallel N` (the threads divided between the runs), each into a fresh folder.

    python benchmarks/launchers.py --data-dir ../shared/data
    python benchmarks/launchers.py --data-dir ../shared/data --parallel 2 --only figure2
    python benchmarks/launchers.py --data-dir ../shared/data --only figure1,figure2 --seeds 1 \
        --few-seeds 1 --n 500

The two studies are timed end to end (training, analyses, drawing), one after the other on an
otherwise idle machine; the result, with the share of each that went to training, goes to
docs/results/launchers.md (or `--name`'s page). If the parallel study is faster,
`--launcher local` should become the default for `mini`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pandas as pd
import torch
from common import write_result


def timed_study(args: list[str], root: Path, threads: int) -> tuple[float, pd.DataFrame]:
    """`robdrop reproduce *args` under `root` with `threads` threads: (seconds, timings.csv).
    A study timed before under `root` (its wall_seconds.txt) is read, not run again; one
    stopped before its end is refused, since resuming it would time only what was left."""
    wall = root / "wall_seconds.txt"
    if not wall.is_file():
        if root.exists() and any(root.iterdir()):
            raise click.ClickException(
                f"{root} holds a study that was stopped before its end (no wall_seconds.txt): "
                "its time cannot be measured by resuming it; delete the folder to time it anew"
            )
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "robdrop", "reproduce", *args]
        command += ["--out", str(root / "runs"), "--figures-dir", str(root / "figures")]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        wall.write_text(f"{time.perf_counter() - start}\n")
    return float(wall.read_text()), pd.read_csv(root / "figures" / "timings.csv")


def step_table(steps: dict[str, pd.Series]) -> pd.DataFrame:
    """Seconds of each run and figure in both studies and their ratio, in the first's order."""
    (first, a), (second, b) = steps.items()
    table = pd.DataFrame({f"{first} (s)": a, f"{second} (s)": b})
    return table.assign(ratio=(table.iloc[:, 1] / table.iloc[:, 0]).round(2))


@click.command()
@click.option("--data-dir", default="../shared/data")
@click.option("--preset", default="mini")
@click.option("--parallel", default=2, help="Runs at once in the parallel study.")
@click.option("--threads", type=int, help="Threads of the sequential study (default: all).")
@click.option("--only", help="Targets to make (default: the whole study).")
@click.option("--seeds", help="Training seeds (default: the preset's).")
@click.option("--few-seeds", type=int, help="Seeds of the costly methods (default: the preset's).")
@click.option("--n", type=int, help="Test images per evaluation (default: the preset's).")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    help="Where the two studies go, kept (default: a temporary folder); a study already timed "
    "there is read, not run again (delete its folder to time it anew).",
)
@click.option("--name", default="launchers", help="The result page: docs/results/<name>.md.")
def main(
    data_dir: str,
    preset: str,
    parallel: int,
    threads: int | None,
    only: str | None,
    seeds: str | None,
    few_seeds: int | None,
    n: int | None,
    root: Path | None,
    name: str,
) -> None:
    threads = threads or torch.get_num_threads()
    chosen = {"--only": only, "--seeds": seeds, "--few-seeds": few_seeds, "--n": n}
    options = [str(part) for key, v in chosen.items() if v is not None for part in (key, v)]
    args = ["--preset", preset, "--data-dir", data_dir, *options]
    launched = [*args, "--launcher", "local", "--parallel", str(parallel)]
    rows, steps = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for kind, study in (("sequential", args), (f"local --parallel {parallel}", launched)):
            seconds, timings = timed_study(study, (root or Path(folder)) / kind.split()[0], threads)
            steps[kind] = timings.set_index("name")["seconds"]
            training = timings.loc[timings["kind"] == "train", "total_seconds"].max()
            rows.append(
                {
                    "launcher": kind,
                    "threads per run": threads if kind == "sequential" else threads // parallel,
                    "wall minutes": round(seconds / 60, 1),
                    "training done after (min)": round(training / 60, 1),
                }
            )
    table = pd.DataFrame(rows)
    ratio = rows[0]["wall minutes"] / rows[1]["wall minutes"]
    body = (
        f"`robdrop reproduce --preset {preset} {' '.join(options)}`, each study "
        f"in a fresh folder.\n\n{table.to_markdown(index=False)}\n\n"
        f"The parallel study took {1 / ratio:.2f}× the sequential one's wall time.\n\n"
        f"Each step's own time (`timings.csv`): a run or a figure in the parallel study against "
        f"the same one in the sequential study.\n\n{step_table(steps).to_markdown()}"
    )
    click.echo(body)
    click.echo(f"written to {write_result(name, body)}")


if __name__ == "__main__":
    main()
