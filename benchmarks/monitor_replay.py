"""Replay the underfitting monitor over the saved epochs of existing runs (calibrating its rule).

    python benchmarks/monitor_replay.py checkpoints/mini-fgsm-eps8-seed1 \
        checkpoints/mini-fgsm+-eps8-seed1

For every checkpoint, the monitor's measurements on the run's first --size held-out images and
the flag its rule gives; written to docs/results/monitor_replay.md.
"""

from __future__ import annotations

import click
import pandas as pd
from common import write_result

from robdrop.analysis.common import run_data
from robdrop.training.factories import resolve_device
from robdrop.training.monitor.probe import Probe
from robdrop.training.monitor.rule import UnderfitRule
from robdrop.training.runs import Run


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--size", default=64, help="Held-out images in the probe.")
@click.option("--attack", default="pgd10", help="The probe attack.")
@click.option("--device", default="auto")
def main(runs: tuple[str, ...], size: int, attack: str, device: str) -> None:
    frames = []
    dev = resolve_device(device)
    rule = UnderfitRule()
    for path in runs:
        run = Run(path)
        data = run_data(run)
        cfg = run.config
        x, y = data.val_x[:size], data.val_y[:size]
        probe = Probe(attack, cfg.eps_image, x, y, seed=cfg.seed)
        rows: list[dict] = []
        for epoch in run.epochs():
            model, method = run.load(epoch, dev)
            row = {"epoch": epoch, **probe.measure(model, method, dev)}
            rows.append({**row, "monitor_flag": rule.check(row, rows, cfg.epochs)})
        frames.append(pd.DataFrame(rows).assign(run=run.name))
    table = pd.concat(frames, ignore_index=True)
    columns = ["run", "epoch", "monitor_gap", "monitor_robust_acc", "monitor_own_acc"]
    columns += ["monitor_random_acc", "monitor_seconds", "monitor_flag"]
    body = (
        f"Probe: the first {size} held-out training images of each run, attack {attack}.\n\n"
        f"{table[columns].round(3).to_markdown(index=False)}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('monitor_replay', body)}")


if __name__ == "__main__":
    main()
