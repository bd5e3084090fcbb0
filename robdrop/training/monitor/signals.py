"""The monitor signals' registry, one line per signal, and how `--monitor` names a set of them.

`--monitor` is `auto` (the gap signal with PGD-10 for single-step methods when held-out images
exist: the monitor of before), `none` or `off`, or a comma-separated list of signal names, e.g.
`gap,align,elle,distortion`. An attack spec in the list (`pgd10`, `pgd20`) is the gap signal with
that probe attack, so the single-attack spelling of before (`--monitor pgd10`) still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from robdrop.attacks import make_attack
from robdrop.training.monitor.align import GradientAlignment
from robdrop.training.monitor.distortion import BoundaryDistortion
from robdrop.training.monitor.elle import LocalLinearity
from robdrop.training.monitor.probe import Probe
from robdrop.training.monitor.signal import Signal

SIGNALS: dict[str, type[Signal]] = {
    "gap": Probe,
    "align": GradientAlignment,
    "elle": LocalLinearity,
    "distortion": BoundaryDistortion,
}
OFF = ("none", "off")
GAP_ATTACK = "pgd10"  # the gap signal's probe attack unless the list names another


@dataclass(frozen=True)
class MonitorPlan:
    """Which signals a run measures, in order, and the gap signal's probe attack."""

    signals: tuple[str, ...]
    attack: str = GAP_ATTACK

    def build(self, eps: float, x: torch.Tensor, y: torch.Tensor, *, seed: int) -> list[Signal]:
        """The signals on the probe (x, y), each with its own generator seeded by `seed`."""
        return [
            SIGNALS[name].create(eps, x, y, seed=seed, attack=self.attack) for name in self.signals
        ]

    def to_dict(self) -> dict[str, Any]:
        """What run.json records: the signals and, when gap is one, its probe attack."""
        return {"signals": list(self.signals), "attack": self.attack if "gap" in self else None}

    def __contains__(self, name: object) -> bool:
        return name in self.signals


def parse_monitor(spec: str, eps: float) -> MonitorPlan | None:
    """`--monitor`'s list as a plan (None for none/off); one clear ValueError for bad names.
    `auto` is the caller's to resolve (it depends on the method and the held-out split)."""
    items = [item.strip().lower() for item in spec.split(",")]
    if items == ["none"] or items == ["off"]:
        return None
    signals, attack = [], GAP_ATTACK
    for item in items:
        name = item
        if item not in SIGNALS:
            if item in (*OFF, "auto", ""):
                raise ValueError(f"--monitor {spec!r}: {item or 'an empty name'} stands alone")
            try:
                make_attack(item, eps)
            except ValueError as err:
                known = ", ".join(SIGNALS)
                raise ValueError(
                    f"--monitor {spec!r}: {item!r} is neither a signal ({known}) nor a probe "
                    f"attack for the gap signal ({err})"
                ) from err
            name, attack = "gap", item
        if name in signals:
            raise ValueError(f"--monitor {spec!r} names the {name} signal twice")
        signals.append(name)
    return MonitorPlan(tuple(signals), attack)
