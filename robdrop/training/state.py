"""Everything one run trains, and what a checkpoint holds so that a resume continues exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from robdrop.methods import Method
from robdrop.models import Classifier
from robdrop.training import distributed


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def same_state(a: Any, b: Any) -> bool:
    """Nested state (dicts, lists, tensors, numbers) equal bit for bit."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


@dataclass
class TrainingState:
    """The model (and, under torchrun, the DDP `learner` the method steps), the method with its
    own state, the model optimizer and the AMP scaler, on this process's device."""

    model: Classifier
    method: Method
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    process: distributed.Process
    memory_format: torch.memory_format = torch.contiguous_format

    def snapshot(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """What resuming needs (every rank's RNG included), and the per-example buffers apart.
        A collective under torchrun: every rank calls it."""
        method_state = self.method.state_dict()
        examples = {k: method_state.pop(k) for k in self.method.example_state if k in method_state}
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": method_state,
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }
        if self.process.distributed:
            state["rng_ranks"] = distributed.gather(rng_state())
        return state, examples

    def restore(self, state: dict[str, Any], examples: dict[str, torch.Tensor]) -> None:
        """Load a snapshot; this rank's RNG (rank 0's when the job had another size)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict({**state["method"], **examples})
        self.scaler.load_state_dict(state["scaler"])
        ranks = state.get("rng_ranks", [])
        process = self.process
        set_rng_state(ranks[process.rank] if len(ranks) == process.world else state["rng"])
