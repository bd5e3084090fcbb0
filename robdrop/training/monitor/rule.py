"""When the monitor's measurements say "perturbation underfitting": rules over the columns the
signals write to metrics.csv, replayable over any recorded run without training again
(`Rule.replay`; over a run folder, `replay.replay_run`). One rule decides a run's flag; it is
chosen by name (`--monitor-rule NAME`, `RULES`) with its thresholds as key=value.

Every rule looks at epochs after the warm-up (the first `warmup` of training, while the cyclic
learning rate still rises and the signals are erratic) and flags (`monitor_flag`) an epoch that
looks underfit when at least `persist` − 1 of the `window` − 1 epochs before it did too: a small
probe makes single epochs look underfit by chance, while a collapse lasts.

"underfit" (`UnderfitRule`, the default whenever the gap signal is measured): an epoch looks
underfit when either sign shows:
- "gap": the gap jumps — at least `gap_factor` × the median of all earlier epochs' gaps and
  `gap_min` nats above it — while the probe's robust accuracy falls to `acc_drop` × its best so
  far or below (a jump alone also happens on epochs whose robustness holds);
- "noise": f_A has become weaker than random noise on the model it trains, own_acc ≥
  random_acc + `noise_margin` (Figure 1b: a collapsed FGSM model is *more* accurate on its own
  perturbations than on uniform noise; a healthy one is far less).
Its thresholds were chosen on the 30-epoch FGSM runs of the mini preset with seeds 1 and 2 and
checked on held-out seeds, APART and PGD-10 (docs/benchmarks.md, "Underfitting monitor").

"align", "elle", "distortion": one threshold on one signal's column (`ThresholdRule`). Their
default thresholds are placeholders, not measurements of robdrop runs: align's is halfway between
the 0.9 and 0.1 GradAlign reports before and after catastrophic overfitting, elle's and
distortion's are round numbers; the pre-registered comparison of issue 19 is what chooses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class Rule:
    """Warm-up and persistence, shared by every rule; subclasses say how one epoch looks."""

    name: ClassVar[str]
    signal: ClassVar[str]  # the monitor signal whose columns the rule reads
    column: ClassVar[str]  # a column every epoch that signal measured has

    warmup: float = 0.25  # fraction of the run's epochs without flags
    persist: int = 2  # epochs that must look underfit among the last `window`, this one included
    window: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.persist <= self.window:
            raise ValueError(
                f"the monitor rule needs 1 ≤ persist ≤ window, not {self.persist} of {self.window}"
            )

    def check(self, row: dict[str, Any], history: list[dict[str, Any]], epochs: int) -> str:
        """The flag of epoch `row` after the rows `history`: its signs (joined by '+') if it
        looks underfit and enough recent epochs did too, else ''."""
        signs = self.signs(row, history, epochs)
        if not signs:
            return ""
        recent = range(max(0, len(history) - self.window + 1), len(history))
        earlier = sum(bool(self.signs(history[i], history[:i], epochs)) for i in recent)
        return signs if 1 + earlier >= self.persist else ""

    def replay(self, rows: list[dict[str, Any]], epochs: int) -> list[str]:
        """The flag of every row of a run's recorded monitor columns, as training gave them."""
        return [self.check(row, rows[:i], epochs) for i, row in enumerate(rows)]

    def signs(self, row: dict[str, Any], history: list[dict[str, Any]], epochs: int) -> str:
        """How epoch `row` alone looks: its signs joined by '+', or ''."""
        raise NotImplementedError

    def warming_up(self, row: dict[str, Any], epochs: int) -> bool:
        """Whether `row`'s epoch is inside the warm-up, where nothing is flagged."""
        return row["epoch"] <= self.warmup * epochs

    def describe(self, row: dict[str, Any]) -> str:
        """The measurements behind a flag, for the log."""
        return f"{self.column} {row[self.column]:.3f}"

    def settings(self) -> dict[str, Any]:
        """The rule's name and every threshold, as run.json records them."""
        return {"rule": self.name, **dataclasses.asdict(self)}


@dataclass
class UnderfitRule(Rule):
    """The documented thresholds of the gap and noise signs (see the module docstring)."""

    name: ClassVar[str] = "underfit"
    signal: ClassVar[str] = "gap"
    column: ClassVar[str] = "monitor_gap"

    gap_factor: float = 1.5
    gap_min: float = 0.3
    acc_drop: float = 0.75
    noise_margin: float = 0.05

    def signs(self, row: dict[str, Any], history: list[dict[str, Any]], epochs: int) -> str:
        """'gap', 'noise', both joined by '+', or '' for how epoch `row` alone looks."""
        if self.warming_up(row, epochs):
            return ""
        flags = []
        if history:
            median = float(np.median([h["monitor_gap"] for h in history]))
            gap = row["monitor_gap"]
            jumped = gap >= self.gap_factor * max(median, 0.0) and gap - median >= self.gap_min
            best = max(h["monitor_robust_acc"] for h in history)
            if jumped and row["monitor_robust_acc"] <= self.acc_drop * best:
                flags.append("gap")
        if row["monitor_own_acc"] >= row["monitor_random_acc"] + self.noise_margin:
            flags.append("noise")
        return "+".join(flags)

    def describe(self, row: dict[str, Any]) -> str:
        return (
            f"gap {row['monitor_gap']:.3f}, accuracy under own perturbations "
            f"{row['monitor_own_acc']:.3f} vs random noise {row['monitor_random_acc']:.3f}"
        )


@dataclass
class ThresholdRule(Rule):
    """An epoch looks underfit when its `column` is below (`below`) or above `threshold`."""

    below: ClassVar[bool]

    threshold: float = float("nan")

    def signs(self, row: dict[str, Any], history: list[dict[str, Any]], epochs: int) -> str:
        """The rule's name when the epoch's value crossed the threshold (never when nan)."""
        if self.warming_up(row, epochs):
            return ""
        value = row[self.column]
        crossed = value < self.threshold if self.below else value > self.threshold
        return self.name if crossed else ""


@dataclass
class AlignRule(ThresholdRule):
    """Gradient alignment below `threshold` (GradAlign: about 0.9 healthy, 0.1 collapsed)."""

    name: ClassVar[str] = "align"
    signal: ClassVar[str] = "align"
    column: ClassVar[str] = "monitor_align_cos"
    below: ClassVar[bool] = True

    threshold: float = 0.5


@dataclass
class ElleRule(ThresholdRule):
    """ELLE's local-linearity error above `threshold` (a healthy model's loss is near-linear)."""

    name: ClassVar[str] = "elle"
    signal: ClassVar[str] = "elle"
    column: ClassVar[str] = "monitor_elle_error"
    below: ClassVar[bool] = False

    threshold: float = 0.1


@dataclass
class DistortionRule(ThresholdRule):
    """More than `threshold` of the probe with a distorted interval along FGSM's direction."""

    name: ClassVar[str] = "distortion"
    signal: ClassVar[str] = "distortion"
    column: ClassVar[str] = "monitor_distortion_fraction"
    below: ClassVar[bool] = False

    threshold: float = 0.1


RULES: dict[str, type[Rule]] = {
    "underfit": UnderfitRule,
    "align": AlignRule,
    "elle": ElleRule,
    "distortion": DistortionRule,
}


def rule_class(settings: dict[str, Any], signals: tuple[str, ...] = ("gap",)) -> type[Rule]:
    """The rule `settings['rule']` names, else the default for `signals`: underfit when the
    gap signal is measured, else the first signal's own rule."""
    name = settings.get("rule")
    if name is None:
        name = "underfit" if "gap" in signals or not signals else signals[0]
    if name not in RULES:
        raise ValueError(f"unknown monitor rule {name!r}; choose one of {', '.join(RULES)}")
    cls = RULES[name]
    if signals and cls.signal not in signals:
        raise ValueError(
            f"the monitor rule {name} reads the {cls.signal} signal: add it to --monitor "
            f"(measured: {', '.join(signals)})"
        )
    return cls


def make_rule(settings: dict[str, Any], signals: tuple[str, ...] = ("gap",)) -> Rule:
    """The rule and thresholds of `settings` ({'rule': name, threshold: value, …})."""
    cls = rule_class(settings, signals)
    thresholds = {k: v for k, v in settings.items() if k != "rule"}
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(thresholds) - set(known))
    if unknown:
        raise ValueError(
            f"the monitor rule {cls.name} has no {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return cls(**thresholds)
