"""The training configuration: everything that determines a run, validated early, stored whole in
run.json; `make_config` resolves a preset, the method's optimizer recipe and the user's values."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from robdrop.attacks import make_attack
from robdrop.data import DATASETS
from robdrop.methods import parse_method
from robdrop.methods.base import UNIFORM
from robdrop.models import ARCHITECTURES
from robdrop.training.monitor.best_probe import BestProbe
from robdrop.training.monitor.rule import Rule, make_rule
from robdrop.training.monitor.signals import OFF, MonitorPlan, parse_monitor
from robdrop.training.presets import PRESETS

# whose optimizer a run uses (docs/design.md, "Optimizer recipes")
RecipeName = Literal["released", "uniform"]
# what the monitor's flag does: log it, stop the run keeping best.pt, or keep best.pt and go on
Reaction = Literal["warn", "stop", "best"]
RECIPES: tuple[str, ...] = get_args(RecipeName)
REACTIONS: tuple[str, ...] = get_args(Reaction)
# the monitor's own settings: they do not tell two runs apart when both have it off
MONITOR_SETTINGS = (
    "monitor",
    "monitor_size",
    "monitor_rule",
    "monitor_every",
    "on_underfit",
    "best_size",
    "best_attack",
)


# settings that earlier versions called otherwise (run.json files, `--set`): {old: new}
RENAMED = {"eps": "eps255"}


def current_names(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with earlier versions' setting names, and its method's option names, as today's."""
    values = {RENAMED.get(k, k): v for k, v in values.items()}
    if values.get("options") and "method" in values:
        renamed = parse_method(values["method"]).cls.renamed_options
        values["options"] = {renamed.get(k, k): v for k, v in values["options"].items()}
    return values


@dataclass
class TrainConfig:
    """Everything that determines a training run; stored whole in run.json."""

    method: str = "fgsm"
    preset: str | None = None
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = True
    model: str = "prn18"
    width: int | None = None  # base width (prn18: 64, prn20: 16), widen factor (wrn34: 10)
    train_size: int | None = None  # first N training images; None = all but the held-out part
    val_size: int = 0  # last N training images, held out (never trained on)
    eps255: float = 8.0  # the training budget ε in /255 units (`--eps 8`)
    epochs: int = 30
    batch_size: int = 128
    lr_max: float = 0.2
    lr_peak: float = 0.5  # fraction of training at which the cyclic LR peaks
    momentum: float = 0.9
    # the momentum at the LR peak when it cycles against the LR (CyclicLR's 0.9 → 0.8 → 0.9);
    # None: constant
    momentum_at_peak: float | None = None
    weight_decay: float = 5e-4
    # whose optimizer: "released" (each method's released code, on CIFAR) or "uniform" (the
    # paper's common recipe for every method); runs made before recipes existed were uniform
    recipe: RecipeName = "uniform"
    seed: int = 0
    amp: bool = True  # mixed precision (CUDA only; ignored on CPU)
    channels_last: bool = True  # CUDA only
    device: str = "auto"
    image_size: int = 224  # ImageNet only: test images (resize 256/224 · size, centre crop)
    # ImageNet only: training phases [{"epoch": first epoch, "resize": short side in pixels or
    # None for the stored images, "crop": random-resized-crop size}]; [] = full images, crop
    # image_size. The effective batch size stays --batch-size in every phase.
    resize_phases: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 4  # ImageNet only
    eval_size: int = 1000  # first N test images for the per-epoch quick check
    eval_attack: str = "pgd10"
    eval_batch_size: int = 256
    save_every_epoch: bool = False
    # the underfitting monitor (robdrop/training/monitor/): signals such as "gap,align,elle,
    # distortion" (an attack such as pgd10 in the list is the gap signal's probe attack), "auto"
    # (gap with pgd10 for single-step methods when a validation split exists), "none" or "off"
    monitor: str = "auto"
    monitor_size: int = 64  # held-out training images in the probe (64: < 10 % of an FGSM epoch)
    # also measure the signals every K training iterations inside an epoch, rows in monitor.csv
    # (the end-of-epoch row stays in metrics.csv); 0: after each epoch only
    monitor_every: int = 0
    # the rule that turns the signals into a flag: {"rule": name, threshold: value, …}; without
    # "rule", underfit when the gap signal is measured, else the first signal's own rule
    monitor_rule: dict[str, Any] = field(default_factory=dict)
    on_underfit: Reaction = "warn"  # warn, stop (and keep best.pt), best (keep best.pt)
    # with stop or best, best.pt is the epoch most accurate under `best_attack` on the first
    # `best_size` held-out images (monitor/best_probe.py); 0: on the gap signal's probe instead
    best_size: int = 512
    best_attack: str = BestProbe.defaults["attack"]  # pgd5
    options: dict[str, Any] = field(default_factory=dict)  # method options

    @property
    def eps_image(self) -> float:
        """ε in image units (8/255), as attacks and methods take it."""
        return self.eps255 / 255

    @property
    def method_key(self) -> str:
        return parse_method(self.method).key

    def default_name(self) -> str:
        return f"{self.preset or 'custom'}-{self.method_key}-eps{self.eps255:g}-seed{self.seed}"

    def validate(self) -> None:
        """Fail early, with one sentence, on anything that cannot work."""
        if not 0 < self.eps255 <= 64:
            raise ValueError(f"--eps is in /255 units and must be in (0, 64], got {self.eps255}")
        parse_method(self.method)
        make_attack(self.eval_attack, self.eps_image)
        if self.model not in ARCHITECTURES:
            raise ValueError(
                f"unknown model {self.model!r}; choose one of {', '.join(ARCHITECTURES)}"
            )
        if self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr_peak < 1 or self.lr_max <= 0:
            raise ValueError("lr_peak must be in (0, 1) and lr_max positive")
        if self.recipe not in RECIPES:
            raise ValueError(f"--recipe is {' or '.join(RECIPES)}, not {self.recipe!r}")
        if self.momentum_at_peak is not None and not 0 <= self.momentum_at_peak <= self.momentum:
            raise ValueError("momentum_at_peak must be between 0 and momentum")
        if self.resize_phases:
            if self.dataset != "imagenet":
                raise ValueError("resize phases are for ImageFolder (imagenet) data only")
            firsts = [p.get("epoch") for p in self.resize_phases]
            if firsts[0] != 1 or firsts != sorted(set(firsts)):
                raise ValueError(f"resize phases must start at epoch 1 and increase, got {firsts}")
            if any(set(p) != {"epoch", "resize", "crop"} for p in self.resize_phases):
                raise ValueError("each resize phase is {'epoch': …, 'resize': …, 'crop': …}")
        if self.on_underfit not in REACTIONS:
            raise ValueError(f"--on-underfit is {', '.join(REACTIONS)}, not {self.on_underfit!r}")
        if self.monitor.strip().lower() != "auto":
            asked = parse_monitor(self.monitor, self.eps_image)
            if asked is not None and self.val_size == 0:
                raise ValueError(
                    "--monitor measures held-out training images: add --val-size N (N > 0)"
                )
        plan = self.monitor_plan()
        self.monitor_rule_of(plan)
        if self.monitor_every < 0:
            raise ValueError(
                f"--monitor-every is 0 (off) or a number of iterations, not {self.monitor_every}"
            )
        if self.monitor_every and plan is None:
            raise ValueError(
                "--monitor-every measures the monitor's signals: turn it on with --monitor"
            )
        if self.best_size < 0:
            raise ValueError(f"--best-size is 0 or a number of images, not {self.best_size}")
        try:
            make_attack(self.best_attack, self.eps_image)
        except ValueError as err:
            raise ValueError(f"--best-attack: {err}") from err
        keeps_best = plan is not None and self.on_underfit != "warn"
        if keeps_best and not self.best_size and "gap" not in plan:
            raise ValueError(
                f"--on-underfit {self.on_underfit} with --best-size 0 keeps best.pt by the "
                "gap signal's robust accuracy: add gap to --monitor"
            )

    def monitor_plan(self, single_step: bool | None = None) -> MonitorPlan | None:
        """The signals this run's monitor measures, or None when it is off; `auto` resolves by
        `single_step` (default: the method's)."""
        if self.monitor_size == 0:
            return None
        if self.monitor.strip().lower() == "auto":
            if single_step is None:
                single_step = parse_method(self.method).cls.single_step
            return MonitorPlan(("gap",)) if single_step and self.val_size > 0 else None
        return parse_monitor(self.monitor, self.eps_image)

    def monitor_rule_of(self, plan: MonitorPlan | None) -> Rule:
        """The rule (with its thresholds) that flags this run, given the signals it measures."""
        return make_rule(self.monitor_rule, plan.signals if plan else ())

    def monitor_record(self) -> dict[str, Any] | None:
        """What run.json records of the monitor: the signals that run, the probe attack and
        the rule with every threshold; None when it is off."""
        plan = self.monitor_plan()
        if plan is None:
            return None
        return {**plan.to_dict(), "rule": self.monitor_rule_of(plan).settings()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Settings that differ from `other`'s as (ours, theirs); the monitor's own settings
        do not count when both have it off."""
        ours, theirs = self.to_dict(), other.to_dict()
        if self.monitor.strip().lower() in OFF and other.monitor.strip().lower() in OFF:
            for key in MONITOR_SETTINGS:
                ours.pop(key), theirs.pop(key)
        if Path(self.data_dir).resolve() == Path(other.data_dir).resolve():  # one folder, spelled
            ours.pop("data_dir"), theirs.pop("data_dir")  # two ways (../ or a symlink)
        return {k: (v, theirs[k]) for k, v in ours.items() if theirs[k] != v}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from run.json (or any dict), earlier versions' names read as today's."""
        values = current_names(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return cls(**values)


def recipe_settings(method: str, recipe: str, dataset: str) -> dict[str, Any]:
    """The optimizer settings a recipe gives `method`: its released code's on CIFAR, the
    paper's common recipe for `uniform`; none on ImageNet, whose preset is Wong et al.'s."""
    if recipe not in RECIPES:
        raise ValueError(f"--recipe is {' or '.join(RECIPES)}, not {recipe!r}")
    if dataset == "imagenet":
        return {}
    chosen = parse_method(method).cls.recipe if recipe == "released" else UNIFORM
    return chosen.settings()


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """A preset's values, the method's recipe (default: released), then `overrides` (None
    overrides are ignored)."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {"recipe": "released", **PRESETS.get(preset, {})}
    given = current_names({k: v for k, v in overrides.items() if v is not None})
    method_name = given.get("method", TrainConfig.method)
    recipe = given.get("recipe", values["recipe"])
    dataset = given.get("dataset", values.get("dataset", TrainConfig.dataset))
    values.update(recipe_settings(method_name, recipe, dataset))
    values.update(given)
    if "data_dir" in values:  # absolute, so analyses and notebooks find it from any folder
        values["data_dir"] = os.path.abspath(Path(values["data_dir"]).expanduser())
    # the method's own values for this preset go under the user's --option values
    method = parse_method(method_name).cls
    values["options"] = {**method.preset_options.get(preset, {}), **values.get("options", {})}
    cfg = TrainConfig.from_dict({**values, "preset": preset})
    cfg.validate()
    return cfg
