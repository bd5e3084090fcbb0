"""The `robdrop` command line: click commands that call library functions, nothing more."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd
import torch

from robdrop.attacks import SPEC_HELP, MissingExtra
from robdrop.data import DATASETS, DatasetNotFound
from robdrop.training.config import PRESETS, REACTIONS, RECIPES, make_config
from robdrop.training.runs import RunError, find_runs

if TYPE_CHECKING:
    from robdrop.study.launchers import Launcher
    from robdrop.study.study import Study

DATA_DIR = os.environ.get("ROBDROP_DATA_DIR", "data")
RUNS_DIR = os.environ.get("ROBDROP_RUNS_DIR", "checkpoints")


def auto_preset(preset: str) -> str:
    """'auto' is the paper's CIFAR-10 PreAct ResNet-18 setting on a GPU and `mini` on a CPU."""
    if preset != "auto":
        return preset
    chosen = "paper-cifar10-prn18" if torch.cuda.is_available() else "mini"
    click.echo(
        f"preset: {chosen} (auto: {'CUDA' if chosen != 'mini' else 'no CUDA'} here)", err=True
    )
    return chosen


def parse_options(pairs: tuple[str, ...]) -> dict:
    """`key=value` pairs; values are read as JSON where possible (numbers, lists, true/false)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--option")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def parse_rule(pairs: tuple[str, ...]) -> dict | None:
    """`--monitor-rule` values: a bare name chooses the rule, key=value sets a threshold."""
    return parse_options(tuple(p if "=" in p else f"rule={p}" for p in pairs)) or None


monitor_rule_option = click.option(
    "--monitor-rule",
    "monitor_rule",
    multiple=True,
    help="The monitor's rule by name (underfit, align, elle, distortion) and its thresholds as "
    "key=value (repeatable).",
)


class Failure(click.ClickException):
    """Exit 1 with one sentence (no traceback) for the errors a user can fix."""


USER_ERRORS = (ValueError, RunError, DatasetNotFound, FileNotFoundError, MissingExtra)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one sentence and exit status 1."""
    try:
        yield
    except USER_ERRORS as err:
        raise Failure(str(err)) from err


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="robdrop")
def main() -> None:
    """robdrop: train adversarial-training methods with a checkpoint per epoch and analyse them."""


preset_option = click.option(
    "--preset",
    type=click.Choice(["auto", *PRESETS]),
    default="auto",
    help="Named settings; 'auto' = paper-cifar10-prn18 with CUDA, mini without.",
)
out_option = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=RUNS_DIR,
    help="Folder holding one sub-folder per run (env ROBDROP_RUNS_DIR).",
)


@main.command()
@click.option(
    "--method", "-m", required=True, help="fgsm, ffgsm, pgd<N>, … (see `robdrop methods`)."
)
@preset_option
@click.option(
    "--epochs", type=int, help="Number of epochs (preset: 30 for the paper, 10 for mini)."
)
@click.option("--eps", "eps255", type=float, help="Training budget ε in /255 units (e.g. 8).")
@click.option("--data-dir", default=DATA_DIR, help="Dataset folder (env ROBDROP_DATA_DIR).")
@click.option("--no-download", is_flag=True, help="Never try torchvision's download.")
@click.option("--model", help="prn18, prn20, wrn34 or resnet50.")
@click.option(
    "--width", type=int, help="Base width (prn18 64, prn20 16) or widen factor (wrn34 10)."
)
@click.option("--dataset", type=click.Choice(DATASETS))
@click.option("--train-size", type=int, help="Train on the first N training images.")
@click.option("--val-size", type=int, help="Hold out the last N training images.")
@click.option("--batch-size", type=int)
@click.option(
    "--recipe",
    type=click.Choice(RECIPES),
    help="Optimizer per method: its released code's (default) or the paper's common one for "
    "all (docs/design.md, 'Optimizer recipes').",
)
@click.option("--lr-max", type=float, help="Peak of the cyclic learning rate.")
@click.option("--lr-peak", type=float, help="Fraction of training at which the LR peaks.")
@click.option("--weight-decay", type=float)
@click.option("--seed", type=int)
@click.option("--device", help="auto, cpu, cuda, cuda:1 …")
@click.option("--no-amp", is_flag=True, help="Train in fp32 on CUDA too.")
@click.option("--eval-size", type=int, help="Test images for the per-epoch quick check.")
@click.option("--eval-attack", help="Attack of the per-epoch quick check (e.g. pgd10).")
@click.option(
    "--option", "-o", "options", multiple=True, help="Method option key=value (repeatable)."
)
@click.option(
    "--save-every-epoch", is_flag=True, help="Keep every epoch's checkpoint (else only the last)."
)
@click.option(
    "--monitor",
    help="Underfitting monitor's signals, comma-separated: gap, align, elle, distortion (an attack "
    "such as pgd10 is the gap signal with that probe attack); auto (default: gap with pgd10 for "
    "single-step methods with --val-size), none or off.",
)
@click.option("--monitor-size", type=int, help="Held-out training images the monitor probes.")
@click.option(
    "--monitor-every",
    type=int,
    help="Also measure the monitor's signals every K training iterations inside an epoch, "
    "written to the run's monitor.csv (0: after each epoch only).",
)
@monitor_rule_option
@click.option(
    "--on-underfit",
    type=click.Choice(REACTIONS),
    help="On a monitor flag: warn, stop (keeping best.pt), or keep best.pt and go on.",
)
@click.option(
    "--best-size",
    type=int,
    help="With --on-underfit stop or best: best.pt is the epoch most accurate under "
    "--best-attack on this many held-out images (default 512; 0: on the monitor's gap probe).",
)
@click.option("--best-attack", help="The attack that picks best.pt (default pgd5).")
@out_option
@click.option("--name", help="Run folder name (default: <preset>-<method>-eps<ε>-seed<seed>).")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run (from partial.pt or its last complete epoch), or start it if there "
    "is none: the same command serves the first launch and every requeue.",
)
@click.option(
    "--ignore-stop",
    is_flag=True,
    help="With --resume: continue a run the monitor stopped (--on-underfit stop); from then on "
    "its flag keeps best.pt but no longer stops the run.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    help="Any other training setting key=value, as in run.json (repeatable; wins over the "
    "options above).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train(
    preset: str,
    out: Path,
    name: str | None,
    resume: bool,
    ignore_stop: bool,
    quiet: bool,
    **kw,
) -> None:
    """Train a method; writes checkpoints/<run>/ with run.json, metrics.csv and epoch-NNN.pt.

    Under `torchrun --nproc_per_node=N -m robdrop train …` it trains with
    DistributedDataParallel (NCCL on GPUs, gloo on CPU); --batch-size is the effective batch,
    split over the N processes. SIGTERM finishes the batch in flight, writes partial.pt and
    exits 0; --resume continues exactly there.
    """
    from robdrop.training import distributed
    from robdrop.training.trainer import Trainer

    options = parse_options(kw.pop("options"))
    kw["monitor_rule"] = parse_rule(kw.pop("monitor_rule"))
    kw["download"] = False if kw.pop("no_download") else None
    kw["amp"] = False if kw.pop("no_amp") else None
    kw["save_every_epoch"] = kw.pop("save_every_epoch") or None
    settings = parse_options(kw.pop("settings"))
    options = {**settings.pop("options", {}), **options}
    kw.update(settings)
    with user_errors():
        cfg = make_config(auto_preset(preset), options=options or None, **kw)
        trainer = Trainer(
            cfg, out, name=name, resume=resume, ignore_stop=ignore_stop, progress=not quiet
        )
        run = trainer.fit()
    distributed.stop()
    if trainer.process.main:
        done = "interrupted (resume with --resume)" if trainer.interrupted else "written"
        click.echo(f"run {done}: {run.path}")


@main.command()
@out_option
def runs(out: Path) -> None:
    """List the runs under --out with their last metrics."""
    rows = []
    for run in find_runs(out):
        last = run.metrics().tail(1).to_dict("records")
        last = last[0] if last else {}
        robust = f"test_{run.config.eval_attack}_acc"
        rows.append(
            {
                "run": run.name,
                "method": run.config.method_key,
                "epoch": f"{int(last.get('epoch', 0))}/{run.config.epochs}",
                "train_loss": last.get("train_loss"),
                "clean": last.get("test_clean_acc"),
                run.config.eval_attack: last.get(robust),
                "s/epoch": last.get("seconds"),
            }
        )
    if not rows:
        click.echo(f"no runs under {out}")
        return
    click.echo(pd.DataFrame(rows).round(3).to_string(index=False))


@main.command()
def methods() -> None:
    """List the training methods and their options."""
    from robdrop.methods import METHODS

    for key, cls in METHODS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        opts = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
        click.echo(
            f"{key + ('<N>' if cls.number_name else ''):12s} {doc}"
            + (f"  [options: {opts}]" if opts else "")
        )


@main.command("monitor-replay")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@monitor_rule_option
@click.option(
    "--out-csv",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table to this CSV file.",
)
def monitor_replay(
    runs: tuple[Path, ...], monitor_rule: tuple[str, ...], out_csv: Path | None
) -> None:
    """Replay a monitor rule over run folders' metrics.csv, without training: per epoch the
    monitor's columns and the rule's flag (default: the rule each run was trained with)."""
    from robdrop.training.monitor.replay import replay_run

    settings = parse_rule(monitor_rule)
    with user_errors():
        frames = [replay_run(path, settings) for path in runs]
    named = [f.assign(run=Path(path).name) for f, path in zip(frames, runs, strict=True)]
    frame = pd.concat(named, ignore_index=True)
    show(frame[["run", *frame.columns.drop("run")]], out_csv)


# -- analyses over per-epoch checkpoints (robdrop.analysis; see docs/analysis.md) -------------


def show(frame: pd.DataFrame, out_csv: Path | None) -> None:
    """Print a result table, an attack's own flags below it (and write it as CSV when asked)."""
    printed = frame.drop(columns=["flags"], errors="ignore")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        click.echo(printed.round(4).to_string(index=False))
    if "flags" in frame:
        for row in frame.dropna(subset=["flags"]).itertuples():
            click.echo(f"{row.attack} checks, {row.run} epoch {row.epoch}: {row.flags}")
    if out_csv is not None:
        frame.to_csv(out_csv, index=False)
        click.echo(f"written to {out_csv}")


def analysis_options(n_default: int | None, n_help: str) -> Callable[[Callable], Callable]:
    """The options every analysis command shares."""
    options = [
        click.option(
            "--epochs",
            default="all",
            help="all, last, best (= val-best: highest PGD-20 accuracy on the held-out split), "
            "probe-best (best.pt's epoch, the monitor's) or a list like 3,10,30.",
        ),
        click.option("--n", type=int, default=n_default, help=n_help),
        click.option("--seed", default=0, help="Seed of the test subset and of random starts."),
        preset_option,
        out_option,
        click.option("--device", default="auto", help="auto, cpu, cuda, cuda:1 …"),
        click.option(
            "--data-dir", help="Dataset folder (default: the one the run was trained with)."
        ),
        click.option(
            "--out-csv",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Also write the table to this CSV file.",
        ),
    ]

    def apply(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


RUN_HELP = (
    "a run folder, a method name resolved under --out for --preset, or a model robdrop did not "
    "train: FACTORY=WEIGHTS (package.module:function=file.pt, inputs in [0, 1]) or an export card"
)


@main.command("eval")
@click.argument("run")
@click.option(
    "--attack",
    "-a",
    "attacks",
    multiple=True,
    default=["pgd20"],
    help=f"Repeatable: {SPEC_HELP}; SPEC@train judges in train mode (e.g. clean@train).",
)
@analysis_options(None, "Evaluate a seeded subset of N test images (default: all).")
@click.option("--sigma", "sigma255", type=float, help="σ of gauss in /255 (default: ε).")
@click.option("--restarts", default=1, help="Random restarts of pgd<N>/cw<N>.")
@click.option(
    "--eps", "eps255", type=float, help="Attack budget in /255 (default: the run's training ε)."
)
@click.option(
    "--sanity",
    is_flag=True,
    help="Also evaluate clean, pgd20, random and clean@train and print the sanity checks per "
    "epoch (with AutoAttack's, when an autoattack spec is among the attacks).",
)
def evaluate(run: str, preset: str, out: Path, out_csv: Path | None, sanity: bool, **kw) -> None:
    """Accuracy of RUN's checkpoints under attacks (eval mode, fp32), with time per epoch.

    RUN is a run folder, a method name resolved under --out for --preset, or a model robdrop did
    not train: FACTORY=WEIGHTS (e.g. pyautoattack.examples.resnet:ResNet18=model_test.pt; CIFAR-10
    at ε 8/255 unless --eps says otherwise) or an export card (robdrop export).
    """
    from robdrop.analysis import evaluate_run, resolve_run
    from robdrop.analysis.sanity import CHECKED, sanity_table

    attacks = kw.pop("attacks")
    if sanity:
        attacks = (*attacks, *(a for a in CHECKED if a not in attacks))
    with user_errors():
        table = evaluate_run(resolve_run(run, out, auto_preset(preset)), attacks, **kw)
    show(table, out_csv)
    if sanity:
        for row in sanity_table(table).itertuples():
            click.echo(f"sanity, {row.run} epoch {row.epoch}: {row.sanity}")


@main.command()
@click.option("--from", "source", required=True, help=f"Method A: {RUN_HELP}.")
@click.option("--to", default="pgd10", help="The stronger attack B standing in for the worst case.")
@analysis_options(1000, "Test images (a subset drawn with --seed).")
def gap(source: str, preset: str, out: Path, out_csv: Path | None, **kw) -> None:
    """Strength gap G_A→B per epoch: loss under B minus loss under A's own δ_A (Equation 3)."""
    from robdrop.analysis import resolve_run, strength_gap, text_plot

    with user_errors():
        table = strength_gap(resolve_run(source, out, auto_preset(preset)), **kw)
    show(table, out_csv)
    click.echo(text_plot(table.set_index("epoch")["gap"]))


@main.command()
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="θ_A as RUN_OR_METHOD@EPOCH (EPOCH: n, last, best), FACTORY=WEIGHTS or an export card.",
)
@click.option(
    "--perturb", default="fgsm", help=f"Generator B: own (the source's method) or {SPEC_HELP}."
)
@click.option("--source", required=True, help=f"C, whose checkpoints B attacks: {RUN_HELP}.")
@analysis_options(1000, "Test images (a subset drawn with --seed).")
def crossacc(
    model_spec: str, source: str, preset: str, out: Path, out_csv: Path | None, **kw
) -> None:
    """Acc(θ_A, f_B(θ_C^(i))) per epoch i of the source run, with Acc(θ_A, f_Random)."""
    from robdrop.analysis import cross_accuracy, parse_model_spec, resolve_run, text_plot

    with user_errors():
        preset = auto_preset(preset)
        model_run, model_epoch = parse_model_spec(model_spec)
        table = cross_accuracy(
            resolve_run(model_run, out, preset),
            model_epoch,
            source_run=resolve_run(source, out, preset),
            **kw,
        )
    show(table, out_csv)
    click.echo(text_plot(table.set_index("epoch")["accuracy"]))


@main.command("export")
@click.argument("run")
@click.option(
    "--epoch",
    default="last",
    help="A number, last, best (= val-best: the highest validation PGD-20 accuracy) or "
    "probe-best (the monitor's best.pt).",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="exports",
    help="Where <run>-epochNNN.pt and .json go.",
)
@click.option(
    "--measure",
    multiple=True,
    help="Also evaluate these attacks now (e.g. pgd20, autoattack) and record them in the card.",
)
@click.option("--n", type=int, help="Test images for --measure (a subset drawn with --seed).")
@click.option("--seed", default=0, help="Seed of the --measure subset and random starts.")
@preset_option
@out_option
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
@click.option("--data-dir", help="Dataset folder (default: the one the run was trained with).")
def export(run: str, epoch: str, preset: str, out: Path, **kw) -> None:
    """Write RUN's weights as a plain state_dict (.pt) with a JSON card others can load.

    The .pt loads with torch.load(weights_only=True) into the model the card's `build` lines
    make; the card (architecture, data, ε, method, measured accuracy, commit) is also a model
    spec for `robdrop eval`, `gap` and `crossacc`.
    """
    from robdrop.analysis import export_run, resolve_run
    from robdrop.training.runs import Run

    with user_errors():
        source = resolve_run(run, out, auto_preset(preset))
        if not isinstance(source, Run):
            raise ValueError(f"{run} is not a robdrop run; only runs can be exported")
        chosen = int(epoch) if epoch.isdigit() else epoch
        weights, card = export_run(source, chosen, **kw)
    click.echo(f"written {weights}\nwritten {card}")


@main.command()
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Repeatable.")
@click.option("--eps", default="2-10", help="Training budgets in /255: a range 2-10 or 2,4,8.")
@preset_option
@out_option
@click.option("--epochs", type=int, help="Epochs per run (default: the preset's).")
@click.option("--data-dir", default=DATA_DIR, help="Dataset folder (env ROBDROP_DATA_DIR).")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
@click.option(
    "--set", "settings", multiple=True, help="Another training setting key=value (repeatable)."
)
@click.option(
    "--eval-eps", "eval_eps255", default=8.0, help="Evaluation budget in /255, the same for all."
)
@click.option("--n", type=int, help="Evaluate a seeded subset of N test images (default: all).")
@click.option("--seed", default=0, help="Seed of the evaluation subset and random starts.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option(
    "--out-csv",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table to this CSV file.",
)
def sweep(
    methods: tuple[str, ...],
    eps: str,
    preset: str,
    out: Path,
    settings: tuple[str, ...],
    quiet: bool,
    out_csv: Path | None,
    epochs: int | None,
    data_dir: str,
    device: str,
    **kw,
) -> None:
    """Figure 5: train each method at each ε (reusing runs) and report clean and PGD-20."""
    from robdrop.study.sweep import eps_sweep, parse_eps_values

    config = {"epochs": epochs, "data_dir": data_dir, "device": device, **parse_options(settings)}
    with user_errors():
        table = eps_sweep(
            methods,
            parse_eps_values(eps),
            auto_preset(preset),
            out,
            config=config,
            progress=not quiet,
            **kw,
        )
    show(table, out_csv)


# -- the whole study (robdrop.study.reproduce; see figures/README.md) --------------------------


def study_options(command: Callable) -> Callable:
    """The options `figures` and `reproduce` share: which runs, which targets, how evaluated."""
    options = [
        preset_option,
        out_option,
        click.option(
            "--figures-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default="figures",
            help="Where figures (PNG, PDF), tables (Markdown, LaTeX) and timings.csv go.",
        ),
        click.option("--only", help="Comma-separated targets, e.g. figure1,table2 (default: all)."),
        click.option("--data-dir", default=DATA_DIR, help="Dataset folder (env ROBDROP_DATA_DIR)."),
        click.option("--device", default="auto", help="auto, cpu, cuda, cuda:1 …"),
        click.option(
            "--n", type=int, help="Test images per evaluation (default: 1,000 for mini, else all)."
        ),
        click.option("--seed", default=0, help="Seed of the test subset and of random starts."),
        click.option(
            "--seeds",
            help="Training seeds, e.g. 1,2,3,4,5 (default: mini 1-5, a paper preset its own; "
            "`robdrop figures` reads what `reproduce` trained).",
        ),
        click.option(
            "--few-seeds",
            type=click.IntRange(min=1),
            help="How many of the seeds PGD-10, PGD-5, Free-8 and ATTA-10 take (default: mini "
            "2, else all).",
        ),
        click.option(
            "--sweep-eps", help="Figure 5's ε_train values in /255 (default 2-10; mini 2,4,6,8,10)."
        ),
        click.option(
            "--sweep-method",
            "sweep_methods",
            multiple=True,
            help="Figure 5's methods (repeatable).",
        ),
        click.option(
            "--set", "settings", multiple=True, help="Training setting key=value for every run."
        ),
        click.option(
            "--later-methods",
            is_flag=True,
            help="Add GradAlign and N-FGSM to Tables 2–4 and Figure 5.",
        ),
        click.option(
            "--autoattack/--no-autoattack",
            default=True,
            help="Tables 2–4's AutoAttack column (minutes per run on a CPU; needs pyautoattack).",
        ),
        click.option(
            "--autoattack-n",
            type=click.IntRange(min=1),
            help="Test images AutoAttack runs on, the first of --n's (default: mini 200, else "
            "all of --n's).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_study(preset: str, out: Path, kw: dict) -> tuple[Study, list[str] | None]:
    """The Study the options describe, and the targets --only names."""
    from robdrop.study.study import Study, default_n
    from robdrop.study.sweep import parse_eps_values

    preset = auto_preset(preset)
    config = {"data_dir": kw["data_dir"], "device": kw["device"], **parse_options(kw["settings"])}
    extra = {}
    if kw["sweep_eps"]:
        extra["sweep_eps"] = tuple(parse_eps_values(kw["sweep_eps"]))
    if kw["sweep_methods"]:
        extra["sweep_methods"] = tuple(kw["sweep_methods"])
    n = kw["n"] if kw["n"] is not None else default_n(preset)
    autoattack = kw["autoattack"]
    if autoattack and importlib.util.find_spec("pyautoattack") is None:
        click.echo(
            "AutoAttack column left empty: pyautoattack is not installed "
            "(pip install -e '.[autoattack]')",
            err=True,
        )
        autoattack = False
    if kw["seeds"]:
        try:
            extra["seeds"] = tuple(int(seed) for seed in kw["seeds"].split(","))
        except ValueError:
            raise click.BadParameter(
                f"seeds are numbers such as 1,2,3, not {kw['seeds']!r}", param_hint="--seeds"
            ) from None
    study = Study(
        out,
        preset,
        few_seeds=kw["few_seeds"],
        n=n,
        seed=kw["seed"],
        device=kw["device"],
        config=config,
        later_methods=kw["later_methods"],
        autoattack=autoattack,
        autoattack_n=kw["autoattack_n"] or "preset",
        **extra,
    )
    # said aloud: seeds an earlier reproduce recorded win over the preset's defaults
    reused = ["--" + key.replace("_", "-") for key in study.from_record]
    click.echo(
        f"training seeds: {study.seeds_text()}"
        + (f" (from {study.record_path}; {' and '.join(reused)} to change)" if reused else ""),
        err=True,
    )
    only = [t.strip() for t in kw["only"].split(",")] if kw["only"] else None
    return study, only


def launcher_options(command: Callable) -> Callable:
    """Where `reproduce` trains its runs: here one after another, or as jobs (submitit)."""
    options = [
        click.option(
            "--launcher",
            type=click.Choice(["sequential", "local", "slurm"]),
            default="sequential",
            help="sequential: each run in this process in turn; local: --parallel runs at once "
            "here; slurm: one SLURM job per run (needs pip install -e '.[cluster]').",
        ),
        click.option(
            "--parallel",
            type=int,
            default=2,
            help="local: runs at once (a GPU each where there are GPUs, else the threads divided).",
        ),
        click.option("--partition", help="slurm: the partition of every job."),
        click.option("--gpus-per-job", type=int, help="slurm: GPUs per job."),
        click.option("--cpus-per-job", type=int, help="slurm: CPUs per job (and its threads)."),
        click.option(
            "--time-limit",
            type=int,
            default=24 * 60,
            help="slurm: minutes per job; a run that needs longer is requeued and continues.",
        ),
        click.option("--account", help="slurm: the account jobs are charged to."),
        click.option(
            "--sbatch",
            multiple=True,
            help="slurm: another #SBATCH option key=value, e.g. qos=high (repeatable).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_launcher(kw: dict) -> Launcher | None:
    """The launcher the options describe (None: sequential), its options taken out of `kw`."""
    from robdrop.study.launchers import Launcher

    kind = kw.pop("launcher")
    # a key without a value is a flag (`--sbatch exclusive` → #SBATCH --exclusive)
    sbatch = {k: v or True for k, _, v in (pair.partition("=") for pair in kw.pop("sbatch"))}
    given = {
        "parallel": kw.pop("parallel"),
        "partition": kw.pop("partition"),
        "gpus_per_job": kw.pop("gpus_per_job"),
        "cpus_per_job": kw.pop("cpus_per_job"),
        "time_min": kw.pop("time_limit"),
        "account": kw.pop("account"),
    }
    return None if kind == "sequential" else Launcher(kind, sbatch=sbatch, **given)


@main.command()
@study_options
@launcher_options
def reproduce(preset: str, out: Path, figures_dir: Path, **kw) -> None:
    """The whole study: train every run Figures 1–5 and Tables 2–6 need, then write them.

    Resumable: complete runs are reused, partial ones resumed, analyses read from their cache.
    With --launcher local or slurm each run is a job (`robdrop train … --resume`); run again,
    it reattaches to the jobs still queued or running.
    """
    from robdrop.study.reproduce import RunsFailed
    from robdrop.study.reproduce import reproduce as run_plan
    from robdrop.training import distributed
    from robdrop.training.trainer import TrainingInterrupted

    with user_errors():
        launcher = make_launcher(kw)
        study, only = make_study(preset, out, kw)
        command = ["robdrop", *sys.argv[1:]]
        try:
            timings = run_plan(study, figures_dir, only, command=command, launcher=launcher)
        except TrainingInterrupted as stopped:
            click.echo(f"interrupted: {stopped}")
            return
        except RunsFailed as failed:
            raise Failure(f"runs failed; everything else is done.\n{failed}") from failed
        finally:
            distributed.stop()
    if not distributed.from_environment().main:
        return
    seconds = timings["total_seconds"].max() if len(timings) else 0.0
    click.echo(f"done in {seconds:.0f} s; step times in {figures_dir / 'timings.csv'}")
    for path in (p for paths in timings["written"] for p in paths.split()):
        click.echo(f"written {path}")


@main.command("figures")
@study_options
def draw(preset: str, out: Path, figures_dir: Path, **kw) -> None:
    """Draw the figures and tables from runs that already exist (no training)."""
    from robdrop.study.reproduce import reproduce as run_plan

    with user_errors():
        study, only = make_study(preset, out, kw)
        timings = run_plan(
            study, figures_dir, only, train=False, command=["robdrop", *sys.argv[1:]]
        )
    for path in (p for paths in timings["written"] for p in paths.split()):
        click.echo(f"written {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
