"""A study: the runs of one reproduction under a folder, how they are named, and the settings
every evaluation of it shares. Figures and tables (`robdrop.study.figureN`, `tableN`) ask it for
their runs and for cached evaluations, so a notebook, the CLI and a test get the same numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robdrop.analysis.evaluate import Epochs, evaluate_run
from robdrop.training.config import TrainConfig, make_config
from robdrop.training.runs import Run

# the presets whose runs fill a table of their own (Tables 3–5); the CIFAR-10 PreAct ResNet-18
# presets (paper-cifar10-prn18, mini) fill Tables 2 and 6 and draw Figures 1–5
TABLE_PRESET = {
    "table3": "paper-cifar10-wrn34",
    "table4": "paper-cifar100-prn18",
    "table5": "paper-imagenet-r50",
}
# the single-step methods that came after the paper: optional rows of Tables 2–4 and points of
# Figure 5 (`Study(later_methods=True)`, `robdrop reproduce --later-methods`)
LATER_METHODS = ("gradalign", "nfgsm")
# Figure 5's ε_train values: the paper's 2…10/255; on `mini` every other one fits the budget
SWEEP_EPS = {"mini": (2.0, 4.0, 6.0, 8.0, 10.0)}
SWEEP_EPS_DEFAULT = tuple(float(e) for e in range(2, 11))
# Figure 5's methods: the paper's five; on `mini` the three single-step ones fit the CPU budget
SWEEP_METHODS = {"mini": ("fgsm", "ffgsm", "apart")}
SWEEP_METHODS_DEFAULT = ("ffgsm", "free8", "pgd10", "atta10", "apart")


# the AutoAttack of Tables 2–4: the authors' standard version; on `mini` its APGD-CE and APGD-T
# only (100 iterations each), to keep the study in its CPU budget (docs/results/autoattack_cost.md)
AUTOATTACK_SPEC = {"mini": "autoattack-apgd"}
AUTOATTACK_DEFAULT = "autoattack"


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

    @property
    def paper_scale_tables(self) -> tuple[str, ...]:
        """The tables this preset's runs fill by themselves (Tables 3–5 have presets of their
        own; every other preset fills Tables 2 and 6)."""
        mine = tuple(t for t, p in TABLE_PRESET.items() if p == self.preset)
        return mine or ("table2", "table6")

    @property
    def autoattack_spec(self) -> str:
        """The AutoAttack that fills Tables 2–4's column (a cheaper subset on `mini`)."""
        return AUTOATTACK_SPEC.get(self.preset, AUTOATTACK_DEFAULT)

    @property
    def draws_figures(self) -> bool:
        """Figures 1–5 are drawn for the CIFAR-10 PreAct ResNet-18 presets only."""
        return self.preset not in TABLE_PRESET.values()

    # -- which runs -----------------------------------------------------------------------------
    def spec(self, method: str, preset: str | None = None, **overrides: Any) -> RunSpec:
        """The run of `method` in this study (another preset's for Tables 3–5)."""
        return run_spec(preset or self.preset, method, **{**self.config, **overrides})

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

    # -- evaluations (cached beside each run) ----------------------------------------------------
    def evaluate(
        self,
        run: Run,
        attacks: tuple[str, ...],
        epochs: Epochs = "all",
        eps255: float | None = None,
    ) -> pd.DataFrame:
        """Accuracy per (epoch, attack) on this study's test images (budget in /255)."""
        return evaluate_run(
            run,
            attacks,
            epochs,
            eps255=eps255,
            n=self.n,
            seed=self.seed,
            device=self.device,
            data_dir=self.data_dir,
        )

    def robust_curve(self, method: str) -> pd.Series:
        """PGD-20 test accuracy per epoch of `method`'s run (indexed by epoch)."""
        table = self.evaluate(self.run(method), ("pgd20",))
        return table.set_index("epoch")["accuracy"]

    def fgsm_collapse(self) -> int | None:
        """The epoch FGSM's robustness collapsed in this study (`collapse_epoch`), if it did."""
        return collapse_epoch(self.robust_curve("fgsm"))
