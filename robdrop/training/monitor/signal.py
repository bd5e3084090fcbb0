"""What every monitor signal shares: a fixed probe of held-out training images, its own seeded
random numbers, the model locked in eval mode while it measures, and its cost in seconds.

A signal measures one thing about the model after an epoch and writes it as `monitor_<name>_*`
columns plus `monitor_<name>_seconds`; the registry of signals is `signals.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from robdrop.attacks.base import eval_locked, seeded
from robdrop.data import iterate_eval
from robdrop.methods import Method


class Signal:
    """One monitor signal on the probe (x, y); subclasses implement `values` and may take
    options (`defaults`, positive integers such as a number of draws, or a loss function)."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        eps: float,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int = 0,
        batch_size: int = 256,
        **options: Any,
    ) -> None:
        if len(y) == 0:
            raise ValueError(
                "the monitor needs held-out training images: train with --val-size N (N > 0)"
            )
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"the {self.name} signal has no option {', '.join(unknown)}")
        self.options = {**self.defaults, **options}
        for key, value in self.options.items():
            if isinstance(value, int) and value < 1:
                raise ValueError(f"the {self.name} signal's {key} must be at least 1, not {value}")
        self.eps, self.x, self.y, self.seed, self.batch_size = eps, x, y, seed, batch_size

    @classmethod
    def create(
        cls, eps: float, x: torch.Tensor, y: torch.Tensor, *, seed: int, attack: str
    ) -> Signal:
        """The signal for a run (`attack` is the gap signal's probe attack; others ignore it)."""
        return cls(eps, x, y, seed=seed)

    @property
    def cost_column(self) -> str:
        """The column holding the signal's cost in seconds."""
        return f"monitor_{self.name}_seconds"

    def measure(self, model: nn.Module, method: Method, device: torch.device) -> dict[str, float]:
        """This epoch's columns and their cost, with the monitor's own random numbers, in eval
        mode that nothing inside can leave (the model's mode and the training RNG are kept)."""
        t0 = time.perf_counter()
        with seeded(self.seed, device), eval_locked(model):
            columns = self.columns(model, method, device)
        return {**columns, self.cost_column: time.perf_counter() - t0}

    def columns(self, model: nn.Module, method: Method, device: torch.device) -> dict[str, float]:
        """The measured columns, named `monitor_<name>_<value>`."""
        return {f"monitor_{self.name}_{k}": v for k, v in self.values(model, device).items()}

    def values(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """The signal's values by short name (e.g. {'cos': 0.87})."""
        raise NotImplementedError

    def batches(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The probe as float batches in [0, 1] on `device`, always in the same order."""
        return iterate_eval(self.x, self.y, self.batch_size, device)
