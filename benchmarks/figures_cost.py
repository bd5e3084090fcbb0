"""What `robdrop figures` costs on the same runs at two commits, each from an empty analysis
cache: an analysis change measured on whole figures rather than per checkpoint.

    python benchmarks/figures_cost.py --runs RUNS --before REV --after REV --scratch SCRATCH \
        --name NAME -- --only figure1,figure2,figure3 --seeds 1 --few-seeds 1

Each of four invocations, before, after, after, before, gets a git worktree of its commit
under SCRATCH (removed afterwards) and its own copy of RUNS: the checkpoints are hard links
where possible, and no `analysis/` folder is copied. The arguments after `--` go to `robdrop
figures` unchanged; the invocations run one at a time with the machine's threads. The figures'
CSV files must come out identical in all four. Results go to docs/results/<name>.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import pandas as pd
from common import without_cache, write_result

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(rev: str, path: Path) -> Iterator[Path]:
    """A detached checkout of `rev` at `path`, removed (with git's record of it) afterwards."""
    git = ["git", "-C", str(REPO), "worktree"]
    subprocess.run([*git, "remove", "--force", str(path)], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)  # left by an interrupted run
    subprocess.run(
        [*git, "add", "--force", "--detach", str(path), rev], check=True, capture_output=True
    )
    try:
        yield path
    finally:
        subprocess.run([*git, "remove", "--force", str(path)], check=False)


def figures(tree: Path, runs: Path, out: Path, args: tuple[str, ...]) -> float:
    """Seconds `robdrop figures` takes with the code of `tree`."""
    # -P: the working directory must not come before PYTHONPATH (it may hold another robdrop)
    python = [sys.executable, "-P"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    where = subprocess.run([*python, "-c", "import robdrop; print(robdrop.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if not Path(where).is_relative_to(tree):
        raise click.ClickException(f"robdrop came from {where}, not from {tree}")
    command = [*python, "-m", "robdrop", "figures", "--out", str(runs),
               "--figures-dir", str(out), *args]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"robdrop figures at {tree.name} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--runs", "root", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--before", required=True, help="the commit before the change")
@click.option("--after", required=True, help="the commit with it")
@click.option("--scratch", required=True, type=click.Path(path_type=Path))
@click.option("--name", default="figures_cost", help="docs/results/<name>.md")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def main(
    root: Path, before: str, after: str, scratch: Path, name: str, args: tuple[str, ...]
) -> None:
    scratch = scratch.resolve()  # the worktrees' paths are compared with robdrop.__file__
    scratch.mkdir(parents=True, exist_ok=True)
    rows, outputs = [], []
    # before, after, after, before: a drift in the machine's speed favours neither
    for i, label in enumerate(("before", "after", "after", "before")):
        rev = before if label == "before" else after
        runs = without_cache(root, scratch / f"runs-{i}")
        out = scratch / f"figures-{i}"
        shutil.rmtree(out, ignore_errors=True)
        with worktree(rev, scratch / f"tree-{i}") as tree:
            seconds = figures(tree, runs, out, args)
        rows.append({"order": i + 1, "commit": label, "rev": rev, "minutes": seconds / 60})
        outputs.append(out)
    csvs = sorted(p.name for p in outputs[0].glob("*.csv") if p.name != "timings.csv")
    same = {
        csv: all((out / csv).read_bytes() == (outputs[0] / csv).read_bytes() for out in outputs)
        for csv in csvs
    }
    table = pd.DataFrame(rows)
    means = table.groupby("commit")["minutes"].mean()
    ratio = means["after"] / means["before"]
    body = "\n\n".join([
        f"`robdrop figures {' '.join(args)}` on the runs under `{root}`, from an empty analysis "
        "cache, twice with the code of each commit, in the order before, after, after, before "
        "(one at a time, the machine's threads).",
        table.to_markdown(index=False, floatfmt=".1f"),
        f"**After: {ratio:.2f}× the time of before** (mean {means['after']:.1f} against "
        f"{means['before']:.1f} minutes). Figure CSV files identical in all four: "
        + ", ".join(f"{csv} {'yes' if ok else 'NO'}" for csv, ok in same.items()) + ".",
    ])  # fmt: skip
    print(body)
    print(write_result(name, body))
    if not all(same.values()):
        raise SystemExit("the figures' numbers differ between the commits")


if __name__ == "__main__":
    main()
