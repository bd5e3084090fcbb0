"""Check the paper-scale training path on a GPU in a few minutes, before a 30-epoch run.

    python benchmarks/gpu_check.py                               # every paper CIFAR preset
    python benchmarks/gpu_check.py --presets paper-cifar10-prn18 --steps 50
    python benchmarks/gpu_check.py --device cpu --tiny           # the same checks, tiny (tests)

For each paper preset and every registered method (numbered as Table 2 runs them: pgd10, free8,
atta10), the model, method, optimizer and AMP scaler are built exactly as `robdrop train
--preset P --method M` builds them (`make_config`, `build_state`; `--recipe released`), and a
handful of minibatches are trained as the trainer trains them (`set_schedule`,
`Method.train_step`). A method fails when a training loss is not finite; when its δ leaves the
ε-ball or x + δ leaves [0, 1]; when the model optimizer's learning rate, momentum (at LR 0 and at
the LR peak) or weight decay differ from the method's released `Recipe` (the values of the
"Optimizer recipes" table in docs/design.md); when a checkpoint written and read back through a
run folder does not restore the exact state and the same next step; on CUDA, when AMP,
channels_last or cudnn.benchmark is off. On CUDA, APART costing more than --max-apart-ratio ×
FGSM per epoch fails too (on a CPU the ratios are printed only). Exits 1 on any failure.

`--tiny` uses a tiny width, a few real training images from --data-dir and a small batch, so the
whole check takes seconds on a CPU; a preset whose dataset is not in --data-dir is then skipped
(the tests have CIFAR-10 only). The ImageNet preset is not checked (streamed data, Wong et
al.'s ImageNet optimizer rather than a recipe).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import chain, count, islice
from pathlib import Path
from typing import Any

import click
import pandas as pd
import torch

from robdrop.data import Batch, Dataset, DatasetNotFound, data_facts
from robdrop.methods import METHODS, parse_method
from robdrop.study.table2 import Table2
from robdrop.training.config import TrainConfig, make_config
from robdrop.training.distributed import Process
from robdrop.training.factories import build_state, load_data, resolve_device
from robdrop.training.presets import PRESETS
from robdrop.training.runs import Run
from robdrop.training.state import TrainingState, same_state, set_rng_state
from robdrop.training.trainer import set_schedule

PAPER_PRESETS = [
    name for name, v in PRESETS.items() if name.startswith("paper-") and v["dataset"] != "imagenet"
]
TINY_WIDTH = {"prn18": 4, "wrn34": 1}  # base width / widen factor of the tiny models
TINY = {"train_size": 32, "batch_size": 8, "download": False}
BOUND_TOL = 1e-6  # |δ| ≤ bound + this, x + δ in [−this, 1 + this]
RESUME_RTOL = 1e-4  # the restored state's next loss against the original's (GPU kernels vary)
APART_COST = 1.3  # APART's seconds per epoch at most this × FGSM's, on CUDA


def paper_methods() -> list[str]:
    """Every registered method, numbered as Table 2 runs it (pgd10, free8, atta10)."""
    numbered = {parse_method(n).cls: n for n in Table2.methods if parse_method(n).number}
    return [numbered[cls] if cls.number_name else key for key, cls in METHODS.items()]


def configure(preset: str, method: str, device: str, data_dir: str, tiny: bool) -> TrainConfig:
    """The preset's configuration for `method` (released recipe), tiny-sized when asked."""
    extra: dict[str, Any] = {}
    if tiny:
        extra = {**TINY, "width": TINY_WIDTH[PRESETS[preset]["model"]]}
    return make_config(
        preset, method=method, device=device, data_dir=data_dir, monitor="none", **extra
    )


def stream(state: TrainingState, data: Dataset, cfg: TrainConfig) -> tuple[Iterator[Batch], int]:
    """The method's minibatches epoch after epoch, and the number of minibatches in an epoch."""
    loader = data.train_loader(cfg.batch_size, seed=cfg.seed, memory_format=state.memory_format)
    per_epoch = state.method.epoch_batches(loader, 1)[1]
    epochs = (state.method.epoch_batches(loader, e)[0] for e in count(1))
    return chain.from_iterable(epochs), per_epoch


def optimizer_failures(cfg: TrainConfig, state: TrainingState, preset: str) -> list[str]:
    """Differences between θ's optimizer, at LR 0 and at the recipe's LR peak, and the recipe."""
    recipe = parse_method(cfg.method).cls.recipe
    lr_max = PRESETS[preset]["lr_max"] if recipe.lr_max is None else recipe.lr_max
    at_peak = TrainConfig.momentum if recipe.momentum_at_peak is None else recipe.momentum_at_peak
    expected = {
        0.0: {"lr": 0.0, "momentum": TrainConfig.momentum},
        recipe.lr_peak: {"lr": lr_max, "momentum": at_peak},
    }
    failures = []
    for progress, values in expected.items():
        set_schedule(cfg, state, progress)
        group = state.optimizer.param_groups[0]
        got = {k: group[k] for k in ("lr", "momentum", "weight_decay")}
        want = {**values, "weight_decay": recipe.weight_decay}
        if any(not math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-12) for k, v in want.items()):
            failures.append(f"optimizer at progress {progress:g}: {got}, recipe {want}")
    return failures


def cuda_failures(state: TrainingState, batch: Batch) -> list[str]:
    """On CUDA: whichever of AMP, channels_last and cudnn.benchmark is off."""
    if state.device.type != "cuda":
        return []
    failures = []
    if not state.scaler.is_enabled():
        failures.append("AMP is off")
    if not batch.x.is_contiguous(memory_format=torch.channels_last):
        failures.append("batches are not channels_last")
    if not torch.backends.cudnn.benchmark:
        failures.append("cudnn.benchmark is off")
    return failures


def train(
    cfg: TrainConfig,
    state: TrainingState,
    batches: Iterator[Batch],
    start: int,
    steps: int,
    per_epoch: int,
) -> tuple[torch.Tensor, float]:
    """`steps` iterations from iteration `start` as the trainer takes them: losses, seconds."""
    losses = []
    sync = torch.cuda.synchronize if state.device.type == "cuda" else lambda *a: None
    sync(state.device)
    t0 = time.perf_counter()
    for i, batch in enumerate(islice(batches, steps), start=start):
        set_schedule(cfg, state, i / (cfg.epochs * per_epoch))
        step = state.method.train_step(batch, state.optimizer, state.scaler)
        losses.append(step.loss_sum.float() / step.count)
    sync(state.device)
    return (torch.stack(losses).cpu() if losses else torch.zeros(0)), time.perf_counter() - t0


def delta_failures(state: TrainingState, batch: Batch) -> tuple[float, list[str]]:
    """max |δ| / bound of the method's δ on `batch`, and its leaving the ε-ball or [0, 1]."""
    method = state.method
    delta = method.perturb(batch)
    largest = delta.abs().max().item()
    inputs = batch.x + delta
    failures = []
    if largest > method.bound + BOUND_TOL:
        failures.append(f"|δ| = {largest:.6f} > bound {method.bound:.6f}")
    if inputs.min().item() < -BOUND_TOL or inputs.max().item() > 1 + BOUND_TOL:
        failures.append("x + δ leaves [0, 1]")
    return largest / method.bound, failures


def resume_failures(
    cfg: TrainConfig, state: TrainingState, facts: dict, batch: Batch, progress: float, out: Path
) -> list[str]:
    """Save a checkpoint through a run folder, restore it into a new state: exact state, and the
    same next step as the original's (from the same RNG)."""
    snapshot, examples = state.snapshot()
    run = Run.create(out, cfg, facts, {})
    run.save_checkpoint(1, snapshot, keep_previous=False, examples=examples)
    restored = build_state(cfg, facts, state.device, Process())
    saved = run.load_checkpoint(map_location=state.device)
    restored.restore(saved, run.load_examples(1, state.device))
    failures = []
    parts = {
        "model": (state.model.state_dict(), restored.model.state_dict()),
        "optimizer": (state.optimizer.state_dict(), restored.optimizer.state_dict()),
        "method": (state.method.state_dict(), restored.method.state_dict()),
        "scaler": (state.scaler.state_dict(), restored.scaler.state_dict()),
    }
    failures += [f"resumed {k} differs" for k, (a, b) in parts.items() if not same_state(a, b)]
    losses = []
    for s in (restored, state):  # the original last: its buffers are shared with the snapshot
        set_rng_state(saved["rng"])
        set_schedule(cfg, s, progress)
        step = s.method.train_step(batch, s.optimizer, s.scaler)
        losses.append((step.loss_sum / step.count).item())
    if not math.isclose(*losses, rel_tol=RESUME_RTOL):
        failures.append(f"resumed step's loss {losses[0]:.6f} ≠ {losses[1]:.6f}")
    return failures


def check_method(
    cfg: TrainConfig, data: Dataset, device: torch.device, preset: str, warmup: int, steps: int
) -> dict[str, Any]:
    """Build, train `warmup` + `steps` minibatches (the latter timed) and check one method."""
    facts = data_facts(data)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    state = build_state(cfg, facts, device, Process())
    failures = optimizer_failures(cfg, state, preset)
    batches, per_epoch = stream(state, data, cfg)
    first = next(batches)
    failures += cuda_failures(state, first)
    batches = chain([first], batches)
    warm, _ = train(cfg, state, batches, 0, warmup, per_epoch)
    losses, seconds = train(cfg, state, batches, warmup, steps, per_epoch)
    if not torch.isfinite(torch.cat([warm, losses])).all():
        failures.append(f"non-finite training loss {torch.cat([warm, losses]).tolist()}")
    ratio, bad = delta_failures(state, next(batches))
    failures += bad
    with tempfile.TemporaryDirectory() as out:
        progress = (warmup + steps) / (cfg.epochs * per_epoch)
        failures += resume_failures(cfg, state, facts, next(batches), progress, Path(out) / "run")
    row = {
        "preset": preset,
        "method": cfg.method,
        "loss": losses[-1].item(),
        "max |δ|/bound": ratio,
        "s/step": seconds / steps,
        "steps/epoch": per_epoch,
        "s/epoch": seconds / steps * per_epoch,
    }
    if device.type == "cuda":
        row["peak GB"] = torch.cuda.max_memory_allocated(device) / 2**30
    return {**row, "failures": failures}


def check_preset(
    preset: str,
    methods: list[str],
    device: torch.device,
    data_dir: str,
    tiny: bool,
    warmup: int,
    steps: int,
) -> list[dict[str, Any]]:
    """Every method on one preset: a row each (a failed build or step is a failure row)."""
    first = configure(preset, methods[0], str(device), data_dir, tiny)
    try:
        data = load_data(first).to(device)
    except DatasetNotFound as err:
        if not tiny:
            raise
        click.echo(f"skipping {preset} (--tiny): {str(err).splitlines()[0]}")
        return []
    rows = []
    for name in methods:
        cfg = configure(preset, name, str(device), data_dir, tiny)
        try:
            rows.append(check_method(cfg, data, device, preset, warmup, steps))
        except Exception as err:  # one method's failure is reported, the others still run
            failure = f"{type(err).__name__}: {err}"
            rows.append({"preset": preset, "method": name, "failures": [failure]})
        click.echo(f"{preset} {name}: {'; '.join(rows[-1]['failures']) or 'ok'}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def cost_ratios(table: pd.DataFrame, device: torch.device, max_apart: float) -> pd.DataFrame:
    """Seconds per epoch over FGSM's and PGD-10's of the same preset; APART's ratio checked
    on CUDA."""
    if "s/epoch" not in table:
        return table
    per_epoch = table.set_index(["preset", "method"])["s/epoch"].unstack()
    for base, column in (("fgsm", "× FGSM"), ("pgd10", "× PGD-10")):
        if base in per_epoch:
            ratios = per_epoch.div(per_epoch[base], axis=0).stack().rename(column)
            table = table.join(ratios, on=["preset", "method"])
    if device.type == "cuda" and "× FGSM" in table:
        over = (table["method"] == "apart") & (table["× FGSM"] > max_apart)
        for i in table.index[over]:
            ratio = table.at[i, "× FGSM"]
            table.at[i, "failures"] = [*table.at[i, "failures"], f"APART {ratio:.2f} × FGSM"]
    return table


@click.command()
@click.option("--device", default="auto", help="cuda, cuda:N, cpu or auto (CUDA when present).")
@click.option("--tiny", is_flag=True, help="Tiny models on a few images: seconds on a CPU.")
@click.option(
    "--data-dir",
    default=lambda: os.environ.get("ROBDROP_DATA_DIR", "data"),
    show_default="$ROBDROP_DATA_DIR or data",
)
@click.option("--presets", default=",".join(PAPER_PRESETS), show_default=True)
@click.option("--methods", default=None, help="Comma-separated; default: every registered one.")
@click.option("--steps", type=int, default=None, help="Timed minibatches [20; --tiny: 1].")
@click.option("--warmup", type=int, default=None, help="Untimed minibatches first [3; --tiny: 0].")
@click.option(
    "--max-apart-ratio",
    default=APART_COST,
    show_default=True,
    help="APART's seconds per epoch at most this × FGSM's (checked on CUDA).",
)
def main(
    device: str,
    tiny: bool,
    data_dir: str,
    presets: str,
    methods: str | None,
    steps: int | None,
    warmup: int | None,
    max_apart_ratio: float,
) -> None:
    """Train a few minibatches of every method on every paper preset; check and time them."""
    where = resolve_device(device)
    steps = steps or (1 if tiny else 20)
    warmup = (0 if tiny else 3) if warmup is None else warmup
    names = methods.split(",") if methods else paper_methods()
    click.echo(
        f"device {where} ({torch.cuda.get_device_name(where) if where.type == 'cuda' else 'CPU'}"
        f"), torch {torch.__version__}, {'tiny, ' if tiny else ''}{warmup} + {steps} "
        f"minibatches per method"
    )
    rows = []
    for preset in presets.split(","):
        rows += check_preset(preset, names, where, data_dir, tiny, warmup, steps)
    if not rows:
        raise click.ClickException("nothing was checked (no preset's dataset was found)")
    table = cost_ratios(pd.DataFrame(rows), where, max_apart_ratio)
    table["status"] = [("FAIL: " + "; ".join(f)) if f else "ok" for f in table.pop("failures")]
    with pd.option_context("display.width", 250, "display.max_colwidth", 120):
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    failed = int((table["status"] != "ok").sum())
    click.echo(f"{failed} of {len(table)} checks failed" if failed else "all checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
