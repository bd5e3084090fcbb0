"""Issue 19's pre-registered comparison of the monitor signals (docs/monitor_signals.md):

    python benchmarks/monitor_signals.py calibrate --data-dir ../shared/data --out RUNS
    git add benchmarks/monitor_signals_chosen.json docs/results/monitor_signals_calibration.md
    git commit -m "…"                   # the choice is committed before any held-out run exists
    python benchmarks/monitor_signals.py judge --data-dir ../shared/data --out RUNS

`calibrate` trains (or resumes) the calibration runs of the mini preset at 30 epochs with all four
signals measured after every epoch and every 8 iterations, two jobs at a time with one thread
each; reads the ground truth (PGD-20 on the first 1,000 test images after every epoch, the
lasting drop of benchmarks/monitor_check.py); replays every candidate rule of GRID with
replay_run; applies the selection rule and writes the choice (CHOSEN) and
docs/results/monitor_signals_calibration.md. `judge` refuses to run unless that choice is
committed in git, then trains the held-out FGSM seeds, replays the chosen rules over them once
and writes docs/results/monitor_signals_heldout.md and monitor_signals.png.

The comparison is many hours of CPU, more than one session: each run, once complete, leaves the
three files the comparison reads (run.json, metrics.csv, monitor.csv; a few kB, no checkpoints)
in ARCHIVE, which is committed, and a run found complete there is read, not trained again. So
`calibrate` and `judge` can be run again in later sessions until every run is done; the choice
and the reports are made only then.

`--seeds`, `--other-seeds`, `--methods`, `--epochs` and `--tiny` (a seconds-long model and data)
make a smoke test; `--chosen`, `--results` and `--archive` move its files out of the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from common import RESULTS, train_job, write_result
from monitor_check import lasting_drop

from robdrop.training.monitor.replay import replay_run
from robdrop.training.monitor.rule import RULES
from robdrop.training.runs import Run

CHOSEN = Path(__file__).resolve().parent / "monitor_signals_chosen.json"
# the complete runs' files, committed, so that a comparison longer than a session goes on
ARCHIVE = Path(__file__).resolve().parent / "data" / "monitor_signals"
KEPT = ("run.json", "metrics.csv", "monitor.csv")  # all the replay and the reports read
SIGNALS = "gap,align,elle,distortion"
EVERY = 8  # iterations between measurements inside an epoch (a mini epoch has 32)
TRUTH = "test_pgd20_acc"  # the quick check: PGD-20 (ε 8/255, step 2/255, random start)
QUICK = ("--eval-attack", "pgd20", "--eval-size", "1000")  # on the first 1,000 test images
TINY = ("--train-size", "256", "--val-size", "64", "--width", "4", "--batch-size", "64",
        "--eval-size", "64", "--monitor-size", "16")  # fmt: skip
FGSM_SEEDS = (1, 2, 3)
OTHER_METHODS = ("apart", "pgd10", "ffgsm", "gradalign", "nfgsm")
OTHER_SEEDS = (1, 2)
HELD_OUT = tuple(range(11, 21))
MUST_NOT_FLAG = ("apart", "pgd10", "gradalign", "nfgsm")  # the target, over 30 epochs
PERSISTENCE = ((1, 1), (2, 3), (3, 3))  # (persist, window): epochs looking underfit among the last
# the thresholds tried per rule (warm-up 0.25 of training, as every rule's default)
GRID: dict[str, list[dict[str, float]]] = {
    "underfit": [
        {"gap_factor": f, "gap_min": 0.3, "acc_drop": a, "noise_margin": n}
        for f in (1.5, 2.0)
        for a in (0.75, 0.6)
        for n in (0.05, 0.1)
    ],
    "align": [{"threshold": t} for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)],
    # ELLE's scale on mini is unknown before the runs: half-decades from 1e-5 to 10
    "elle": [
        {"threshold": t}
        for t in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    ],
    "distortion": [{"threshold": t} for t in (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)],
}
# the column of each signal drawn in the figure
SHOWN = {"gap": "monitor_gap", "align": "monitor_align_cos", "elle": "monitor_elle_error",
         "distortion": "monitor_distortion_fraction"}  # fmt: skip


def candidates() -> list[dict[str, Any]]:
    """Every candidate rule's settings, in the grid's order (the last tie-break)."""
    return [
        {"rule": rule, **thresholds, "persist": p, "window": w}
        for rule, grid in GRID.items()
        for thresholds in grid
        for p, w in PERSISTENCE
    ]


def label(settings: dict[str, Any]) -> str:
    """A candidate's settings in one string, e.g. 'align threshold=0.4 persist=2 window=3'."""
    rest = " ".join(f"{k}={v:g}" for k, v in settings.items() if k != "rule")
    return f"{settings['rule']} {rest}"


def cost_column(rule: str) -> str:
    """The cost column of the signal a rule reads (the gap signal's keeps its old name)."""
    signal = RULES[rule].signal
    return "monitor_seconds" if signal == "gap" else f"monitor_{signal}_seconds"


def run_name(method: str, seed: int, epochs: int, tiny: bool) -> str:
    return f"signals-{method}-seed{seed}-{epochs}ep" + ("-tiny" if tiny else "")


def archived(archive: Path, name: str, epochs: int) -> Run | None:
    """The run `name` as an earlier session kept it in `archive`, if it is complete there."""
    path = archive / name
    if not (path / "run.json").is_file():
        return None
    run = Run(path)
    return run if run.metrics().get("epoch", pd.Series()).max() == epochs else None


def keep(run: Run, archive: Path) -> Run:
    """Copy the files the comparison reads of a complete run into `archive`; the copy."""
    kept = archive / run.name
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (run.path / name).is_file():
            shutil.copy2(run.path / name, kept / name)
    return Run(kept)


def train(
    data_dir: str, out: Path, method: str, seed: int, epochs: int, tiny: bool, archive: Path
) -> Run:
    """One job: `robdrop train … --resume` with one thread (two such jobs share the 2 cores),
    all four signals measured after every epoch and every EVERY iterations; the run as kept in
    `archive` (read from there without training when an earlier session completed it)."""
    name = run_name(method, seed, epochs, tiny)
    if (done := archived(archive, name, epochs)) is not None:
        return done
    args = [
        "--method", method, "--preset", "mini", "--seed", str(seed), "--epochs", str(epochs),
        "--data-dir", data_dir, "--monitor", SIGNALS, "--monitor-every", str(2 if tiny else EVERY),
        *QUICK, *(TINY if tiny else ()),
    ]  # fmt: skip
    run = Run(train_job(out, name, args))
    if run.last_epoch() != epochs:
        raise RuntimeError(f"{name} stopped before epoch {epochs}; see {out / name}.log")
    return keep(run, archive)


def train_all(
    data_dir: str, out: Path, jobs: list[tuple[str, int]], epochs: int, tiny: bool, archive: Path
) -> dict[str, Run]:
    """Every (method, seed) job, two at a time; the runs (as kept in `archive`) by name."""
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda j: train(data_dir, out, *j, epochs, tiny, archive), jobs))
    return {run.name: run for run in runs}


def truth(run: Run) -> int | None:
    """The run's lasting drop (monitor_check.py's definition) on PGD-20 after every epoch."""
    curve = 100 * run.metrics().set_index("epoch")[TRUTH]
    return lasting_drop(curve)


def images(runs: dict[str, Run]) -> str:
    """The number of test images the ground truth was measured on (the runs' quick check)."""
    return ", ".join(sorted({f"{run.config.eval_size:,}" for run in runs.values()}))


def replay_rows(runs: dict[str, Run], settings: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (candidate, run): its lasting drop, first flag and flagged epochs."""
    drops = {name: truth(run) for name, run in runs.items()}
    rows = []
    for order, s in enumerate(settings):
        for name, run in runs.items():
            replay = replay_run(run, s)
            flagged = replay.loc[replay["flag"] != "", "epoch"].astype(int).tolist()
            rows.append(
                {
                    "order": order,
                    "candidate": label(s),
                    "rule": s["rule"],
                    "run": name,
                    "method": run.config.method_key,
                    "seed": run.config.seed,
                    "lasting drop": drops[name],
                    "first flag": flagged[0] if flagged else None,
                    "flags": len(flagged),
                    "flagged epochs": " ".join(map(str, flagged)),
                }
            )
    return pd.DataFrame(rows)


def outcomes(table: pd.DataFrame) -> pd.DataFrame:
    """Per (candidate, run): collapsing, detected (first flag within ±1 of the lasting drop),
    delay (first flag − lasting drop), false (a flag on a run without a lasting drop)."""
    t = table.copy()
    drop, first = t["lasting drop"].astype(float), t["first flag"].astype(float)
    t["collapsing"] = drop.notna()
    t["delay"] = first - drop
    t["detected"] = t["collapsing"] & (t["delay"].abs() <= 1)
    t["false"] = ~t["collapsing"] & (t["flags"] > 0)
    return t


def flag_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (candidate, run) of replay rows: the lasting drop, first flag, delay and flags."""
    return outcomes(rows)[["candidate", "run", "lasting drop", "first flag", "delay", "detected",
                           "flagged epochs"]]  # fmt: skip


def costs(runs: dict[str, Run]) -> dict[str, float]:
    """Each rule's signal cost, as % of a training epoch, over the FGSM runs of `runs` (the
    end-of-epoch measurement; both timed in the same process)."""
    fgsm = [run.metrics() for run in runs.values() if run.config.method_key == "fgsm"]

    def share(rule: str) -> float:
        return float(pd.Series([100 * m[cost_column(rule)].mean() / m["seconds"].mean()
                                for m in fgsm]).mean())  # fmt: skip

    return {rule: share(rule) for rule in RULES}


def ranking(table: pd.DataFrame, cost: dict[str, float]) -> pd.DataFrame:
    """The selection rule over calibration replays, best first: fewest non-collapsing runs
    flagged (0 = feasible), then most collapses flagged within ±1 epoch, then the lower cost,
    then the smaller sum of |delay| over those, then the grid's order."""
    t = outcomes(table)
    t["abs delay"] = t["delay"].abs().where(t["detected"], 0)
    per = t.groupby(["order", "candidate", "rule"], as_index=False).agg(
        false=("false", "sum"),
        detected=("detected", "sum"),
        collapsing=("collapsing", "sum"),
        delay=("abs delay", "sum"),
    )
    per["cost %"] = per["rule"].map(cost)
    per["feasible"] = per["false"] == 0
    keys = ["false", "detected", "cost %", "delay", "order"]
    return per.sort_values(keys, ascending=[True, False, True, True, True], ignore_index=True)


def choose(
    table: pd.DataFrame, cost: dict[str, float], settings: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The chosen default (the best candidate of all) and each rule's best candidate, with the
    settings (`settings[order]`, default: the grid's) as `--monitor-rule` takes them."""
    ranked = ranking(table, cost)
    settings = candidates() if settings is None else settings

    def pick(rows: pd.DataFrame) -> dict[str, Any]:
        best = rows.iloc[0]
        return {
            "settings": settings[int(best["order"])],
            "feasible": bool(best["feasible"]),
            "calibration": {
                "non-collapsing runs flagged": int(best["false"]),
                "collapses flagged within ±1": int(best["detected"]),
                "collapsing runs": int(best["collapsing"]),
                "cost % of an FGSM epoch": float(best["cost %"]),
            },
        }

    return {
        "default": pick(ranked),
        "per_rule": {
            rule: pick(ranked[ranked["rule"] == rule]) for rule in ranked["rule"].unique()
        },
    }


def committed(path: Path) -> str | None:
    """The commit of `path` when git tracks it unchanged (staged or not), else None."""
    where = {"cwd": path.parent, "capture_output": True, "text": True, "check": False}
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", path.name], **where)
    clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path.name], **where)
    if tracked.returncode != 0 or clean.returncode != 0:
        return None
    log = subprocess.run(["git", "log", "-1", "--format=%H", "--", path.name], **where)
    return log.stdout.strip() or None


def judged(
    rows: pd.DataFrame, guarded: pd.DataFrame, cost: dict[str, float], default: str
) -> pd.DataFrame:
    """Per chosen rule, the issue's targets on the held-out replays `rows` (and on `guarded`,
    the calibration runs of APART, PGD-10, GradAlign and N-FGSM): met or not, and by how much
    it falls short (the number of runs missing or wrongly flagged, and cost points over 5 %);
    `default` is the label of the chosen default."""
    t, g = outcomes(rows), outcomes(guarded)
    out = []
    for name, r in t.groupby("candidate", sort=False):
        collapsing = int(r["collapsing"].sum())
        required = min(8, collapsing)
        detected = int(r["detected"].sum())
        false = int(r["false"].sum())
        guard = int((g.loc[g["candidate"] == name, "flags"] > 0).sum())
        rule = r["rule"].iloc[0]
        over = max(0.0, cost[rule] - 5)
        out.append(
            {
                "chosen": f"best {rule}" + (" (the default)" if name == default else ""),
                "rule": name,
                "collapsing held-out runs": collapsing,
                "within ±1 (required)": f"{detected} ({required})",
                "T1": detected >= required,
                "non-collapsing held-out runs flagged": false,
                "T2": false == 0,
                "APART/PGD-10/GradAlign/N-FGSM runs flagged": guard,
                "T3": guard == 0,
                "cost % of an FGSM epoch": cost[rule],
                "T4": over == 0,
                "targets met": sum([detected >= required, false == 0, guard == 0, over == 0]),
                "shortfall (runs)": max(0, required - detected) + false + guard,
                "cost over 5 % (points)": over,
            }
        )
    keys = ["targets met", "shortfall (runs)", "cost over 5 % (points)"]
    return pd.DataFrame(out).sort_values(keys, ascending=[False, True, True], ignore_index=True)


def curves(runs: dict[str, Run], group: dict[str, str]) -> pd.DataFrame:
    """Every measurement of every run (after epochs and inside them) on a fractional-epoch axis."""
    frames = []
    for name, run in runs.items():
        epochs = run.config.epochs
        ends = run.metrics().assign(at=lambda m: m["epoch"].astype(float))
        inside = run.monitor_rows()
        if len(inside):
            inside = inside.assign(at=inside["fraction"] * epochs)
        frames.append(
            pd.concat([ends, inside], ignore_index=True).assign(run=name, group=group[name])
        )
    return pd.concat(frames, ignore_index=True).sort_values(["run", "at"])


def plot(data: pd.DataFrame, flags: pd.DataFrame, images: str) -> plt.Figure:
    """Each signal over training for every run, coloured by group, each signal's chosen rule's
    flags marked; the ground truth (PGD-20 on the first `images` test images) last."""
    sns.set_theme(style="whitegrid")
    panels = [*SHOWN.items(), ("PGD-20 %", TRUTH)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    order = sorted(data["group"].unique(), key=lambda g: (not g.startswith("FGSM"), g))
    for ax, (signal, column) in zip(axes, panels, strict=True):
        shown = data[data[column].notna()]
        y = 100 * shown[column] if column == TRUTH else shown[column]
        sns.lineplot(x=shown["at"], y=y, hue=shown["group"], hue_order=order,
                     units=shown["run"], estimator=None, lw=0.8, ax=ax)  # fmt: skip
        marked = flags[flags["signal"] == signal]
        if len(marked):
            ax.scatter(marked["epoch"], marked[column], s=40, facecolors="none",
                       edgecolors="red", label="flag", zorder=3)  # fmt: skip
        if signal == "elle":
            ax.set_yscale("log")
        ax.set_title(column if column != TRUTH else f"PGD-20, first {images} test images")
        ax.set_xlabel("epoch")
        ax.set_ylabel(signal)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def jobs_of(methods: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    return [(m, s) for m in methods for s in seeds]


def seed_list(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


@click.group()
def main() -> None:
    """docs/monitor_signals.md's two stages."""


common_options = [
    click.option("--data-dir", default="../shared/data"),
    click.option("--out", type=click.Path(path_type=Path), default=Path("checkpoints/signals")),
    click.option("--epochs", default=30, help="Training epochs of every run."),
    click.option("--tiny", is_flag=True, help="A seconds-long model and data: smoke tests only."),
    click.option("--chosen", type=click.Path(path_type=Path), default=CHOSEN),
    click.option("--results", type=click.Path(path_type=Path), default=RESULTS),
    click.option(
        "--archive",
        type=click.Path(path_type=Path),
        default=ARCHIVE,
        help="Where complete runs' files are kept (commit them) and read from.",
    ),
]


def with_common(f: Any) -> Any:
    for option in reversed(common_options):
        f = option(f)
    return f


@main.command()
@with_common
@click.option("--seeds", default=",".join(map(str, FGSM_SEEDS)), help="FGSM calibration seeds.")
@click.option("--other-seeds", default=",".join(map(str, OTHER_SEEDS)))
@click.option("--methods", default=",".join(OTHER_METHODS), help="The other methods.")
def calibrate(
    data_dir: str, out: Path, epochs: int, tiny: bool, chosen: Path, results: Path,
    archive: Path, seeds: str, other_seeds: str, methods: str,
) -> None:  # fmt: skip
    """Train the calibration runs, replay every candidate rule, choose, write the choice."""
    work = jobs_of(["fgsm"], seed_list(seeds)) + jobs_of(methods.split(","), seed_list(other_seeds))
    runs = train_all(data_dir, out, work, epochs, tiny, archive)
    table = replay_rows(runs, candidates())
    cost = costs(runs)
    choice = choose(table, cost)
    record = {
        "pre-registration": "docs/monitor_signals.md",
        "epochs": epochs,
        "tiny": tiny,
        "calibration runs": list(runs),
        **choice,
    }
    chosen.write_text(json.dumps(record, indent=2) + "\n")
    truths = outcomes(table).drop_duplicates("run")[["run", "method", "seed", "lasting drop"]]
    ranked = ranking(table, cost)
    picked = [label(c["settings"]) for c in choice["per_rule"].values()]
    chosen_rows = table[table["candidate"].isin(picked)]
    body = (
        "Calibration of docs/monitor_signals.md: every candidate rule replayed over the "
        f"calibration runs (mini, {epochs} epochs{', TINY smoke setting' if tiny else ''}). "
        "Lasting drop: benchmarks/monitor_check.py's, on PGD-20 over the first "
        f"{images(runs)} test images after every epoch.\n\n"
        f"Ground truth:\n\n{truths.to_markdown(index=False)}\n\n"
        f"Candidates, best first (the selection rule's order):\n\n"
        f"{ranked.round(2).to_markdown(index=False)}\n\n"
        f"Chosen (written to `{chosen.name}`):\n\n```json\n{json.dumps(choice, indent=2)}\n```\n\n"
        "Per calibration run, each rule's best (delay = first flag − lasting drop):\n\n"
        f"{flag_table(chosen_rows).to_markdown(index=False)}\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('monitor_signals_calibration', body, results)}")


@main.command()
@with_common
@click.option("--seeds", default=",".join(map(str, HELD_OUT)), help="Held-out FGSM seeds.")
def judge(
    data_dir: str,
    out: Path,
    epochs: int,
    tiny: bool,
    chosen: Path,
    results: Path,
    archive: Path,
    seeds: str,
) -> None:
    """Train the held-out FGSM seeds and judge the committed choice on them, once."""
    commit = committed(chosen) if chosen.is_file() else None
    if commit is None:
        raise click.ClickException(
            f"{chosen} must exist and be committed (unchanged) in git before the held-out runs: "
            "run calibrate, commit its choice, then judge"
        )
    choice = json.loads(chosen.read_text())
    if (choice["epochs"], choice["tiny"]) != (epochs, tiny):
        raise click.ClickException(
            f"the choice was made on {choice['epochs']} epochs (tiny {choice['tiny']}): "
            "judge with the same --epochs and --tiny"
        )
    held = train_all(data_dir, out, jobs_of(["fgsm"], seed_list(seeds)), epochs, tiny, archive)
    calibration = {name: Run(archive / name) for name in choice["calibration runs"]}
    guarded = {n: r for n, r in calibration.items() if r.config.method_key in MUST_NOT_FLAG}
    settings = [c["settings"] for c in choice["per_rule"].values()]
    rows = replay_rows(held, settings)
    guard_rows = replay_rows(guarded, settings) if guarded else rows.iloc[:0]
    cost = costs(held)
    verdict = judged(rows, guard_rows, cost, label(choice["default"]["settings"]))
    group = {n: f"FGSM, {'lasting drop' if truth(r) else 'no lasting drop'} (held out)"
             for n, r in held.items()}  # fmt: skip
    group.update({n: f"{r.config.method_key} (calibration)" for n, r in guarded.items()})
    data = curves({**held, **guarded}, group)
    flags = []
    for rule, c in choice["per_rule"].items():
        signal = RULES[rule].signal
        for name, run in {**held, **guarded}.items():
            replay = replay_run(run, c["settings"])
            marked = replay[replay["flag"] != ""].assign(signal=signal, run=name)
            flags.append(marked)
    fig = plot(data, pd.concat(flags, ignore_index=True), images(held))
    results.mkdir(parents=True, exist_ok=True)
    fig.savefig(results / "monitor_signals.png", dpi=110)
    plt.close(fig)
    best = verdict.iloc[0]
    body = (
        f"Held-out judgement of docs/monitor_signals.md: the choice committed in {commit} "
        f"(`{chosen.name}`), FGSM seeds {seeds} on mini ({epochs} epochs"
        f"{', TINY smoke setting' if tiny else ''}; ground truth on the first {images(held)} "
        "test images), read once. T1: collapses flagged within ±1 epoch of the lasting drop; "
        "T2: no flag on a held-out run without one; T3: no flag on the APART, PGD-10, GradAlign "
        "and N-FGSM runs (the calibration runs: the issue holds out FGSM seeds only); T4: cost "
        "≤ 5 % of an FGSM epoch. The chosen default was "
        f"{'' if choice['default']['feasible'] else 'NOT '}feasible on the calibration runs.\n\n"
        f"Targets per chosen rule (closest first):\n\n{verdict.round(2).to_markdown(index=False)}"
        f"\n\nClosest to the targets: **{best['chosen']}** ({best['rule']}), "
        f"{best['targets met']} of 4 met, short by {best['shortfall (runs)']} "
        f"run{'' if best['shortfall (runs)'] == 1 else 's'} and "
        f"{best['cost over 5 % (points)']:.2f} cost points. The default reaction stays warn.\n\n"
        f"Per held-out run (delay = first flag − lasting drop):\n\n"
        f"{flag_table(rows).to_markdown(index=False)}\n\n![signals](monitor_signals.png)\n"
    )
    click.echo(body)
    click.echo(f"written to {write_result('monitor_signals_heldout', body, results)}")


if __name__ == "__main__":
    main()
