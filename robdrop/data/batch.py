"""A training minibatch: images, labels, the examples' indices and the crop/flip they received.

Methods with per-example state (APART's ω, ATTA's stored perturbations) keep that state in padded
image coordinates; `View` crops and flips it exactly as the image was, and writes it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class View:
    """The crop offsets and flips a batch received; applies the same to per-example state."""

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor
    size: int
    pad: int

    def _grid(self) -> tuple[torch.Tensor, ...]:
        r = torch.arange(self.size, device=self.top.device)
        rows = (self.top[:, None] + r)[:, None, :, None]
        cols = self.left[:, None] + r
        cols = torch.where(self.flip[:, None], cols.flip(1), cols)[:, None, None, :]
        batch = torch.arange(len(self.top), device=self.top.device)[:, None, None, None]
        return batch, rows, cols

    def take(self, padded: torch.Tensor) -> torch.Tensor:
        """Crop-and-flip a batch of padded tensors (B, C, H+2p, W+2p) -> (B, C, H, W)."""
        b, rows, cols = self._grid()
        chan = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
        return padded[b, chan, rows, cols]

    def put(self, padded: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Write `values` (B, C, H, W) back into a copy of `padded` through the inverse view."""
        b, rows, cols = self._grid()
        chan = torch.arange(padded.shape[1], device=padded.device)[None, :, None, None]
        out = padded.clone()
        out[b, chan, rows, cols] = values.to(out.dtype)
        return out


@dataclass
class Shard:
    """Where a rank's batch sits in the global minibatch of a multi-process (torchrun) run."""

    indices: torch.Tensor  # example indices of the whole global minibatch
    start: int  # this rank's examples are indices[start : start + len(batch)]


@dataclass
class Batch:
    """Images in [0, 1], labels, example indices into the training set, and the view applied.

    `idx` is None for images that are not training examples (test images in an analysis): they
    have no per-example state (`Batch.outside`).
    """

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor | None
    view: View | None = None
    shard: Shard | None = None  # set when the global minibatch is split over ranks

    @classmethod
    def outside(cls, x: torch.Tensor, y: torch.Tensor) -> Batch:
        """Images that are not training examples: no indices, no view."""
        return cls(x, y, None)
