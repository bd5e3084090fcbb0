"""The paper's study over one folder of runs: which runs each figure and table needs, and the
tidy frames they are drawn from (Figures 1–5, Tables 2–6).

`Study(root, preset)` finds runs by the names `robdrop reproduce` gives them; every frame comes
from the cached analyses (evaluate, gap, crossacc, trajectories), so a notebook, the CLI and a
test all get the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robdrop.analysis.crossacc import cross_accuracy
from robdrop.analysis.evaluate import evaluate_run
from robdrop.analysis.gap import strength_gap
from robdrop.analysis.paper_values import display_name, paper_table
from robdrop.analysis.trajectories import perturbation_images, step_size_trajectories
from robdrop.config import TrainConfig, make_config
from robdrop.runs import Run, find_runs

FIGURES = ("figure1", "figure2", "figure3", "figure4", "figure5")
TABLES = ("table2", "table3", "table4", "table5", "table6")
TARGETS = FIGURES + TABLES

# the methods of each figure and table (Table 5's Free-4 / ATTA-2 are the paper's ImageNet runs)
TABLE_METHODS = {
    "table2": ("fgsm", "ffgsm", "free8", "pgd10", "atta10", "apart"),
    "table3": ("ffgsm", "free8", "pgd10", "atta10", "apart"),
    "table4": ("ffgsm", "free8", "pgd10", "atta10", "apart"),
    "table5": ("ffgsm", "free4", "atta2", "apart"),
    "table6": ("apart", "fgsm+", "apart-noinit"),
}
FIGURE_METHODS = {
    "figure1": ("fgsm", "fgsm+", "pgd10"),
    "figure2": ("fgsm", "pgd10", "apart"),
    "figure3": ("fgsm", "fgsm+", "apart", "pgd5"),
    "figure4": ("apart",),
}
# the preset whose runs fill each table; the CIFAR-10 PreAct ResNet-18 presets fill 2 and 6
TABLE_PRESET = {
    "table3": "paper-cifar10-wrn34",
    "table4": "paper-cifar100-prn18",
    "table5": "paper-imagenet-r50",
}
# the single-step methods that came after the paper: optional rows of Tables 2–4 and points of
# Figure 5 (`Study(later_methods=True)`, `robdrop reproduce --later-methods`)
LATER_METHODS = ("gradalign", "nfgsm")
GAPS = (
    ("fgsm", "pgd10", "a"),
    ("fgsm+", "pgd10", "a"),
    ("apart", "pgd10", "a"),
    ("pgd5", "pgd20", "b"),
)
TABLE_ATTACKS = ("clean", "pgd20", "cw20", "gauss")
# the column AutoAttack adds to Tables 2–4 (`Study(autoattack=False)` leaves it empty: "–")
AUTOATTACK = "autoattack"
AUTOATTACK_TABLES = ("table2", "table3", "table4")
IMAGENET_ATTACKS = ("clean", "pgd10")
# Figure 5's ε_train values: the paper's 2…10/255; on `mini` every other one fits the budget
SWEEP_EPS = {"mini": (2.0, 4.0, 6.0, 8.0, 10.0)}
SWEEP_EPS_DEFAULT = tuple(float(e) for e in range(2, 11))
SWEEP_EVAL_EPS = 8.0  # every ε_train is evaluated at the paper's 8/255
# Figure 5's methods: the paper's five; on `mini` the three single-step ones fit the CPU budget
SWEEP_METHODS = {"mini": ("fgsm", "ffgsm", "apart")}
SWEEP_METHODS_DEFAULT = ("ffgsm", "free8", "pgd10", "atta10", "apart")


def default_n(preset: str) -> int | None:
    """Test images per evaluation: 300 for `mini` (a CPU budget), the whole test set otherwise."""
    return 300 if preset == "mini" else None


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study: its configuration and the folder name it gets."""

    config: TrainConfig
    name: str


def run_spec(preset: str, method: str, **overrides: Any) -> RunSpec:
    """The run of `method` under `preset` (with overrides such as eps or model) and its name."""
    # the methods as published: no underfitting monitor
    overrides = {"monitor": "none", **overrides}
    cfg = make_config(preset, method=method, save_every_epoch=True, **overrides)
    suffix = f"-{cfg.model}" if "model" in overrides else ""
    return RunSpec(cfg, cfg.default_name() + suffix)


def collapse_epoch(curve: pd.Series, drop: float = 0.5) -> int | None:
    """The first epoch whose robust accuracy falls below `drop` × the best accuracy before it.

    `curve` is indexed by epoch. The rule is deliberately simple: the paper's collapse (47 % →
    0 % in one epoch) and the mini runs' alike are far below half of the running best.
    """
    best = curve.cummax().shift(1)
    collapsed = curve[(curve < drop * best) & best.notna()]
    return None if collapsed.empty else int(collapsed.index[0])


def lasting_collapse(curve: pd.Series, fraction: float = 0.25) -> int | None:
    """The first epoch after the best one from which every epoch to the last stays below
    `fraction` × the best accuracy (issue 16's collapse "for good"), or None.

    `curve` is indexed by epoch.
    """
    best_epoch, best = curve.idxmax(), curve.max()
    after = curve.loc[curve.index > best_epoch]
    below = after < fraction * best
    # the last run of epochs below the bar must reach the end of training
    if after.empty or not below.iloc[-1]:
        return None
    above = below[~below]
    start = after.index[0] if above.empty else after.index[after.index > above.index[-1]][0]
    return int(start)


@dataclass
class Study:
    """The runs of one reproduction under `root`, with the evaluation settings of its analyses.

    `n` test images (drawn with `seed`) serve every evaluation; `config` holds the training
    overrides the runs were made with (e.g. data_dir), so the names match `robdrop reproduce`.
    """

    root: Path
    preset: str = "mini"
    n: int | str | None = "preset"  # test images per evaluation; "preset": default_n(preset)
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    sweep_eps: tuple[float, ...] | None = None  # default: SWEEP_EPS of the preset
    sweep_methods: tuple[str, ...] | None = None  # default: SWEEP_METHODS of the preset
    later_methods: bool = False  # add GradAlign and N-FGSM to Tables 2–4 and Figure 5
    autoattack: bool = True  # Tables 2–4's AutoAttack column (the slowest evaluation by far)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.n == "preset":
            self.n = default_n(self.preset)
        if self.sweep_eps is None:
            self.sweep_eps = SWEEP_EPS.get(self.preset, SWEEP_EPS_DEFAULT)
        if self.sweep_methods is None:
            self.sweep_methods = SWEEP_METHODS.get(self.preset, SWEEP_METHODS_DEFAULT)
        if self.later_methods:
            self.sweep_methods = (*self.sweep_methods, *LATER_METHODS)

    # -- which runs -----------------------------------------------------------------------------
    def spec(self, method: str, preset: str | None = None, **overrides: Any) -> RunSpec:
        return run_spec(preset or self.preset, method, **{**self.config, **overrides})

    def specs(self, target: str) -> list[RunSpec]:
        """The runs `target` (a figure or table name) is drawn from."""
        if target in FIGURE_METHODS:
            return [self.spec(m) for m in FIGURE_METHODS[target]]
        if target == "figure5":
            return [self.spec(m, eps=e) for m in self.sweep_methods for e in self.sweep_eps]
        if target == "table6":  # the paper's "Pre-ResNet20" is the released preact20(): PRN-18
            return [self.spec(m) for m in TABLE_METHODS[target]]
        if target in TABLE_METHODS:
            preset = TABLE_PRESET.get(target, self.preset)
            methods = TABLE_METHODS[target]
            if self.later_methods and target in ("table2", "table3", "table4"):
                methods = (*methods, *LATER_METHODS)
            return [self.spec(m, preset) for m in methods]
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")

    def own_tables(self) -> tuple[str, ...]:
        """The tables this preset's runs fill (the others come from other presets or the paper)."""
        mine = tuple(t for t, p in TABLE_PRESET.items() if p == self.preset)
        return mine or ("table2", "table6")

    def has_figures(self) -> bool:
        """Figures 1–5 are drawn for the CIFAR-10 PreAct ResNet-18 presets only."""
        return self.preset not in TABLE_PRESET.values()

    def run(self, method: str, **overrides: Any) -> Run:
        """The completed run of `method` (with overrides) in this study; clear error if missing."""
        return self.open(self.spec(method, **overrides))

    def open(self, spec: RunSpec) -> Run:
        path = self.root / spec.name
        if not (path / "run.json").is_file():
            raise ValueError(
                f"run {spec.name} is missing under {self.root}; make it with `robdrop reproduce "
                f"--preset {spec.config.preset} --out {self.root}`"
            )
        return Run(path)

    def _eval(
        self, run: Run, attacks: tuple[str, ...], epochs: Any = "all", eps: float | None = None
    ) -> pd.DataFrame:
        return evaluate_run(
            run,
            attacks,
            epochs,
            eps=eps,
            n=self.n,
            seed=self.seed,
            device=self.device,
            data_dir=self.data_dir,
        )

    # -- figures --------------------------------------------------------------------------------
    def robust_curve(self, method: str) -> pd.Series:
        """PGD-20 test accuracy per epoch of `method`'s run (indexed by epoch)."""
        table = self._eval(self.run(method), ("pgd20",))
        return table.set_index("epoch")["accuracy"]

    def figure1_epochs(self) -> tuple[int, int]:
        """Figure 1a's early and late epoch: the last before FGSM's collapse (its best epoch
        when it does not collapse) and the last epoch."""
        curve = self.robust_curve("fgsm")
        late = int(curve.index[-1])
        collapse = collapse_epoch(curve)
        early = int(curve.loc[: collapse - 1].idxmax()) if collapse else int(curve.idxmax())
        return (early if early != late else int(curve.index[0])), late

    def figure1a(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Test images and FGSM's perturbations of them at the early and late epoch (NHWC)."""
        return perturbation_images(
            self.run("fgsm"),
            list(self.figure1_epochs()),
            seed=self.seed,
            device=self.device,
            data_dir=self.data_dir,
        )

    def figure1b(self) -> pd.DataFrame:
        """Acc(θ_PGD-10, f_A(θ_A^(i))) for A = FGSM, FGSM+ and the random-noise reference."""
        target = self.run("pgd10")
        frames = []
        for method, label in (("fgsm", "FGSM"), ("fgsm+", "FGSM+")):
            table = cross_accuracy(
                target,
                "last",
                source_run=self.run(method),
                perturb="own",
                n=self.n,
                seed=self.seed,
                device=self.device,
                data_dir=self.data_dir,
            )
            frames.append(table.assign(series=f"Acc(θ_PGD-10, f_{label}(θ_{label}^(i)))"))
            random = table[["epoch", "random_accuracy"]].rename(
                columns={"random_accuracy": "accuracy"}
            )
        frames.append(random.assign(series="Acc(θ_PGD-10, f_Random)"))
        tidy = pd.concat(frames, ignore_index=True)[["epoch", "series", "accuracy"]]
        return tidy.assign(accuracy=100 * tidy["accuracy"])

    def figure2(self) -> pd.DataFrame:
        """Training objective and PGD-20 test accuracy per epoch of PGD-10, APART (and FGSM)."""
        rows = []
        for method in FIGURE_METHODS["figure2"]:
            run = self.run(method)
            loss = run.metrics().set_index("epoch")["train_loss"]
            rows.append(_tidy(loss, method, "training objective (cross-entropy)"))
            rows.append(_tidy(100 * self.robust_curve(method), method, "PGD-20 test accuracy (%)"))
        return pd.concat(rows, ignore_index=True)

    def figure3(self) -> pd.DataFrame:
        """G_A→B per epoch: panel a for FGSM, FGSM+, APART → PGD-10; panel b for PGD-5 → PGD-20."""
        frames = []
        for source, to, panel in GAPS:
            table = strength_gap(
                self.run(source),
                to,
                n=self.n,
                seed=self.seed,
                device=self.device,
                data_dir=self.data_dir,
            )
            frames.append(
                table.assign(panel=panel, pair=f"G_{display_name(source)}→{display_name(to)}")
            )
        return pd.concat(frames, ignore_index=True)[["panel", "pair", "epoch", "gap"]]

    def figure4(self) -> pd.DataFrame:
        """APART's learned step sizes per epoch (α_ω, the input step and one per block)."""
        return step_size_trajectories(self.run("apart"))

    def sweep_runs(self) -> list[Run]:
        """The ε sweep's runs present under root: the sweep's methods with this preset's model
        and seed (the run names say), any ε_train (a sweep over other ε values is drawn as is)."""
        model = make_config(self.preset).model
        found = [
            run
            for run in find_runs(self.root)
            if run.config.preset == self.preset
            and run.config.model == model
            and run.config.method_key in self.sweep_methods
            and run.name == self.spec(run.config.method_key, eps=run.config.eps).name
        ]
        if not found:
            raise ValueError(
                f"no ε-sweep runs of {', '.join(self.sweep_methods)} under {self.root}; make them "
                f"with `robdrop reproduce --preset {self.preset} --only figure5`"
            )
        return sorted(found, key=lambda r: (r.config.method_key, r.config.eps))

    def figure5(self) -> pd.DataFrame:
        """Clean and PGD-20 test accuracy (%) at the last epoch for every (method, ε_train),
        all evaluated at ε = 8/255."""
        rows = []
        for run in self.sweep_runs():
            acc = self._eval(run, ("clean", "pgd20"), "last", SWEEP_EVAL_EPS)
            acc = 100 * acc.set_index("attack")["accuracy"]
            rows.append(
                {
                    "method": run.config.method_key,
                    "eps_train": run.config.eps,
                    "clean": acc["clean"],
                    "pgd20": acc["pgd20"],
                }
            )
        return pd.DataFrame(rows)

    # -- tables ---------------------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        """Table `name` from this study's runs, with the paper's rows beside them.

        A table whose runs do not exist (Tables 3–5 in a `mini` reproduction) holds the paper's
        rows only, labelled as such in its `source` column. Tables 2–4 always have the
        `autoattack` column: empty for the paper's rows (it reports none) and, without
        `autoattack`, for ours.
        """
        paper = paper_table(name)
        if name in AUTOATTACK_TABLES:
            paper = paper.assign(**{AUTOATTACK: np.nan})
        try:
            runs = [(spec, self.open(spec)) for spec in self.specs(name)]
        except ValueError:
            if name in self.own_tables():
                raise
            return paper
        rows = [
            self._table_row(spec, run, self.table_attacks(name), hours=name == "table5")
            for spec, run in runs
        ]
        ours = pd.DataFrame(rows).assign(source=f"robdrop {runs[0][0].config.preset}")
        return pd.concat([ours, paper], ignore_index=True)

    def table_attacks(self, name: str) -> tuple[str, ...]:
        """The attacks table `name` evaluates our runs' last checkpoint with."""
        if name == "table5":
            return IMAGENET_ATTACKS
        if name == "table6":
            return ("clean", "pgd20")
        with_aa = self.autoattack and name in AUTOATTACK_TABLES
        return (*TABLE_ATTACKS, AUTOATTACK) if with_aa else TABLE_ATTACKS

    def _table_row(
        self, spec: RunSpec, run: Run, attacks: tuple[str, ...], hours: bool
    ) -> dict[str, Any]:
        acc = self._eval(run, attacks, "last").set_index("attack")["accuracy"]
        metrics = run.metrics()
        seconds = metrics["seconds"]
        timing = {"hours": seconds.sum() / 3600} if hours else {"seconds": seconds.mean()}
        # collapse on the trainer's per-epoch quick check (no extra evaluation)
        quick = metrics.set_index("epoch").get(f"test_{run.config.eval_attack}_acc")
        collapse = collapse_epoch(quick) if quick is not None else None
        row = {"method": spec.config.method_key, **(100 * acc).to_dict(), **timing}
        return {**row, "collapse": f"epoch {collapse}" if collapse else "no"}


def _tidy(series: pd.Series, method: str, quantity: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"epoch": series.index, "method": method, "quantity": quantity, "value": series.values}
    )
