"""A study: the runs of one reproduction under a folder, how they are named, and the settings
every evaluation of it shares. Figures and tables (`robdrop.study.figureN`, `tableN`) ask it for
their runs and for cached evaluations, so a notebook, the CLI and a test get the same numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robdrop.analysis.evaluate import Epochs, evaluate_run
from robdrop.training.best import best_epoch
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
# the training seeds of a study: `mini` trains every run under five (issue 16), the paper
# presets under their own seed; the costly multi-step methods under the first FEW_SEEDS only
SEEDS = {"mini": (1, 2, 3, 4, 5)}
FEW_SEEDS = {"mini": 2}
COSTLY = ("pgd10", "pgd5", "free8", "atta10")


# the AutoAttack of Tables 2–4: the authors' standard version; on `mini` its APGD-CE and APGD-T
# only (100 iterations each), to keep the study in its CPU budget (docs/results/autoattack_cost.md)
AUTOATTACK_SPEC = {"mini": "autoattack-apgd"}
AUTOATTACK_DEFAULT = "autoattack"
# the test images it runs on (the first of the study's own draw): on `mini`, 200 of the 1,000,
# since its APGD pair costs about 7 PGD-20s per image and Table 2 has 21 runs over five seeds
AUTOATTACK_N = {"mini": 200}


def default_n(preset: str) -> int | None:
    """Test images per evaluation: 1,000 for `mini` (a CPU budget at which a 50 % accuracy
    carries a ±3-point 95 % interval), the whole test set otherwise."""
    return 1000 if preset == "mini" else None


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
    best = curve.max()
    after = curve.loc[curve.index > best_epoch(curve)]
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
    # its test images, the first of the `n` drawn; "preset": AUTOATTACK_N's, else all `n`
    autoattack_n: int | str | None = "preset"
    # training seeds; default: study.json's (what reproduce trained), else SEEDS, else the
    # preset's seed (a `seed` in config: that one alone)
    seeds: tuple[int, ...] | None = None
    few_seeds: int | None = None  # how many of them COSTLY methods take; default FEW_SEEDS
    # which of seeds and few_seeds were read from study.json rather than given or defaulted
    from_record: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        recorded = self.recorded()
        if self.seeds is None:
            preset_seed = make_config(self.preset).seed if self.preset else TrainConfig.seed
            own = self.config.get("seed")
            default = recorded.get("seeds", SEEDS.get(self.preset, (preset_seed,)))
            self.seeds = (int(own),) if own is not None else default
            if own is None and "seeds" in recorded:
                self.from_record += ("seeds",)
        self.seeds = tuple(int(s) for s in self.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, not {self.seeds}")
        if self.few_seeds is None:
            self.few_seeds = recorded.get("few_seeds", FEW_SEEDS.get(self.preset, len(self.seeds)))
            if "few_seeds" in recorded:
                self.from_record += ("few_seeds",)
        if self.few_seeds < 1:
            raise ValueError(f"few_seeds must be at least 1, not {self.few_seeds}")
        if self.n == "preset":
            self.n = default_n(self.preset)
        if self.autoattack_n == "preset":
            self.autoattack_n = AUTOATTACK_N.get(self.preset)
        if self.autoattack_n is None or (self.n is not None and self.autoattack_n > self.n):
            self.autoattack_n = self.n
        if self.sweep_eps is None:
            self.sweep_eps = SWEEP_EPS.get(self.preset, SWEEP_EPS_DEFAULT)
        if self.sweep_methods is None:
            self.sweep_methods = SWEEP_METHODS.get(self.preset, SWEEP_METHODS_DEFAULT)
        if self.later_methods:
            self.sweep_methods = (*self.sweep_methods, *LATER_METHODS)

    @property
    def record_path(self) -> Path:
        """study.json under the runs folder: the seeds `robdrop reproduce` trained, so that
        `robdrop figures` and the notebooks read the same runs without being told."""
        return self.root / "study.json"

    def recorded(self) -> dict[str, Any]:
        """What study.json records for this preset (empty when there is none)."""
        if not self.record_path.is_file():
            return {}
        return json.loads(self.record_path.read_text()).get(self.preset, {})

    def record(self) -> None:
        """Write this study's seeds into study.json (other presets' entries are kept)."""
        self.root.mkdir(parents=True, exist_ok=True)
        every = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}
        mine = {"seeds": list(self.seeds), "few_seeds": self.few_seeds}
        if every.get(self.preset) != mine:  # unchanged: left as it is (a rerun rewrites nothing)
            every[self.preset] = mine
            self.record_path.write_text(json.dumps(every, indent=1) + "\n")

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

    def seeds_text(self) -> str:
        """The training seeds, and the costly methods' when fewer: '1, 2, 3 (pgd10, …: 1)'."""
        text = ", ".join(map(str, self.seeds))
        if self.few_seeds < len(self.seeds):
            text += f" ({', '.join(COSTLY)}: {', '.join(map(str, self.seeds[: self.few_seeds]))})"
        return text

    # -- which runs -----------------------------------------------------------------------------
    def seeds_for(self, method: str) -> tuple[int, ...]:
        """The training seeds `method` is trained under: all, or the first few if it is costly."""
        return self.seeds[: self.few_seeds] if method in COSTLY else self.seeds

    def spec(
        self, method: str, preset: str | None = None, seed: int | None = None, **overrides: Any
    ) -> RunSpec:
        """The run of `method` with `seed` (default: the first) in this study (another preset's
        for Tables 3–5)."""
        seed = self.seeds[0] if seed is None else seed
        return run_spec(preset or self.preset, method, **{**self.config, "seed": seed, **overrides})

    def specs(self, method: str, preset: str | None = None, **overrides: Any) -> list[RunSpec]:
        """The runs of `method` under each of its seeds."""
        return [self.spec(method, preset, seed, **overrides) for seed in self.seeds_for(method)]

    def run(self, method: str, seed: int | None = None, **overrides: Any) -> Run:
        """The completed run of `method` (with seed and overrides) in this study; clear error if
        missing."""
        return self.open(self.spec(method, seed=seed, **overrides))

    def reference(self, method: str, seed: int) -> Run:
        """`method`'s run with `seed`, or with its first seed when it was not trained with that
        one (a costly method as the fixed model of another method's seed)."""
        return self.run(method, seed if seed in self.seeds_for(method) else self.seeds[0])

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
        images: int | None = None,
    ) -> pd.DataFrame:
        """Accuracy per (epoch, attack) on this study's test images (budget in /255), or on the
        first `images` of them."""
        return evaluate_run(
            run,
            attacks,
            epochs,
            eps255=eps255,
            n=self.n if images is None else images,
            seed=self.seed,
            device=self.device,
            data_dir=self.data_dir,
        )

    def robust_curve(self, method: str, seed: int | None = None) -> pd.Series:
        """PGD-20 test accuracy per epoch of `method`'s run with `seed` (indexed by epoch)."""
        table = self.evaluate(self.run(method, seed), ("pgd20",))
        return table.set_index("epoch")["accuracy"]

    def fgsm_collapse(self, seed: int | None = None) -> int | None:
        """The epoch FGSM's robustness collapsed for good with `seed` (`lasting_collapse` of
        its PGD-20 curve), if it did."""
        return lasting_collapse(self.robust_curve("fgsm", seed))

    def fgsm_collapses(self) -> dict[int, int | None]:
        """FGSM's lasting collapse epoch per seed (None where it did not collapse)."""
        return {seed: self.fgsm_collapse(seed) for seed in self.seeds_for("fgsm")}
