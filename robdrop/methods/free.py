"""Free-m adversarial training (Shafahi et al. 2019, "Adversarial training for free!").

Each minibatch is replayed m times. One forward/backward per replay gives both the weight
gradient (an optimizer step) and the input gradient that moves δ by ε·sign(g) into the ε-ball;
δ carries over to the next minibatch. For equal cost an *effective epoch* is the next ⌈L/m⌉
minibatches of the continuing stream of passes over the data (L minibatches per pass), so
`--epochs E` writes E checkpoints covering about E/m passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, count, islice

import torch
from torch import nn

from robdrop.attacks import PGD, clip_delta
from robdrop.data import Batch, Loader
from robdrop.methods.base import AttackMethod, MethodContext, Recipe, StepResult


class _Stream:
    """Passes 1, 2, … of a loader back to back from minibatch `position`; tracks where it is."""

    def __init__(self, loader: Loader, position: int) -> None:
        self.loader, self.position = loader, position
        passes = (loader.epoch(p) for p in count(position // len(loader) + 1))
        self._batches = islice(chain.from_iterable(passes), position % len(loader), None)

    def take(self, n: int) -> Iterator[Batch]:
        """The next `n` minibatches of the stream."""
        for batch in islice(self._batches, n):
            self.position += 1
            yield batch


class Free(AttackMethod):
    """Free-m: m replays per minibatch, one backward each for both θ and δ; δ carried over."""

    name = "free"
    number_name = "replays"
    attack: PGD
    # the paper's schedule (the released TensorFlow code steps down from 0.1)
    recipe = Recipe(2e-4, "paper §5.1; weight decay: ashafahi/free_adv_train config.py")

    def __init__(
        self,
        model: nn.Module,
        ctx: MethodContext,
        number: int | None = None,
        *,
        learner: nn.Module | None = None,
    ) -> None:
        super().__init__(model, ctx, number, learner=learner)
        self.delta: torch.Tensor | None = None  # the carried δ, batch-shaped once training starts
        self._stream: _Stream | None = None

    @property
    def replays(self) -> int:
        """m: how often each minibatch is replayed."""
        return self.number

    def make_attack(self) -> PGD:
        """m signed steps of ε: what the m replays do to δ when θ is held fixed."""
        eps = self.ctx.eps
        return PGD(eps, self.replays, eps, random_start=False, mode="train", amp=self.ctx.amp)

    def epoch_batches(self, loader: Loader, epoch: int) -> tuple[Iterator[Batch], int]:
        """Effective epoch e: minibatches [(e−1)n, en) of the stream of passes, n = ⌈L/m⌉."""
        n = -(-len(loader) // self.replays)
        start = (epoch - 1) * n
        # continue the live stream when it is where epoch e begins, else (resume) rebuild it
        if self._stream is None or (self._stream.loader, self._stream.position) != (loader, start):
            self._stream = _Stream(loader, start)
        return self._stream.take(n), n

    def _carried(self, x: torch.Tensor) -> torch.Tensor:
        """The carried δ for a batch like `x`: the buffer's first len(x) rows, zero beyond them."""
        carried = torch.zeros_like(x)
        if self.delta is not None:
            k = min(len(x), len(self.delta))
            carried[:k] = self.delta[:k]
        return carried

    def perturb(self, batch: Batch) -> torch.Tensor:
        """Free's δ at fixed θ: m signed steps of ε from the carried δ (the buffer is untouched)."""
        start = clip_delta(self._carried(batch.x), batch.x, self.ctx.eps)
        return self.attack.ascend(self.model, batch.x, batch.y, start)

    def train_step(
        self,
        batch: Batch,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> StepResult:
        """m replays; the result sums over them, so the epoch's loss and accuracy are their mean."""
        x, eps = batch.x, self.ctx.eps
        carried = self._carried(x)
        results = []
        for _ in range(self.replays):
            delta = clip_delta(carried, x, eps).requires_grad_(True)
            results.append(self.descend(x + delta, batch.y, optimizer, scaler))
            sign = delta.grad.sign().nan_to_num(0)  # where AMP overflowed to NaN: no move
            carried = (carried + eps * sign).clamp(-eps, eps)
        # a smaller (last) batch updates the buffer's first rows; the others carry on unchanged
        rest = None if self.delta is None else self.delta[len(x) :]
        self.delta = carried if rest is None else torch.cat([carried, rest])
        return StepResult(
            sum(r.loss_sum for r in results),
            sum(r.correct for r in results),
            sum(r.count for r in results),
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The carried δ, so a resumed run continues with the δ it stopped with."""
        return {} if self.delta is None else {"delta": self.delta}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the carried δ (none before the first minibatch)."""
        self.delta = state.get("delta")
