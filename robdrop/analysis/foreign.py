"""Models robdrop did not train: a factory (`package.module:function` or `path/file.py:function`)
and a state-dict file, taking inputs in [0, 1]. A `ForeignModel` stands wherever an analysis
takes a run (`robdrop eval`, `gap`, `crossacc`), as one checkpoint on a dataset and ε of its own.

On the command line a foreign model is `FACTORY=WEIGHTS` (e.g.
`pyautoattack.examples.resnet:ResNet18=model_test.pt`) or the JSON card `robdrop export` writes.
Weights are read with `torch.load(weights_only=True)`: a file from elsewhere cannot run code (the
factory is code, and runs: name only factories you trust).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robdrop.methods import Method, build_method, parse_method
from robdrop.training.config import TrainConfig
from robdrop.training.factories import method_context_for

# where a foreign model's analyses are cached: <runs folder>/foreign/<name>-<hash>/analysis/
FOREIGN_DIR = "foreign"
CARD_FORMAT = "robdrop-export/1"


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The function `package.module:function` (or `path/to/file.py:function`) names."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        raise ValueError(f"model factory {spec!r} is not package.module:function")
    try:
        if module_name.endswith(".py"):
            if not Path(module_name).is_file():
                raise ImportError(f"no file {module_name}")
            found = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            module = importlib.util.module_from_spec(found)
            found.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"model factory {spec!r}: cannot import {module_name} ({err})") from err
    factory = getattr(module, function, None)
    if not callable(factory):
        raise ValueError(f"model factory {spec!r}: {module_name} has no function {function}")
    return factory


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `path`, read safely; one under a 'model' or 'state_dict' key (a robdrop
    checkpoint, many training scripts) and DataParallel's 'module.' prefixes are accepted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} is not a weights file that torch.load(weights_only=True) can read "
            f"({type(err).__name__})"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _misfit(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """What keeps `state` from loading into `model`, in a few words (None: it fits)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            parts.append(f"{what} {keys[0]}{more}")
    return ", ".join(parts) or None


def build_foreign(
    factory: str,
    weights: str | Path,
    kwargs: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """factory(**kwargs) with the weights loaded, on `device`, in eval mode."""
    model = load_factory(factory)(**(kwargs or {}))
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model factory {factory!r} returned a {type(model).__name__}, not a model"
        )
    state = read_state_dict(weights)
    problem = _misfit(model, state)
    if problem:
        raise ValueError(f"{weights} does not fit the model {factory} builds: {problem}")
    model.load_state_dict(state)
    return model.to(device).eval()


def _digest(*values: Any) -> str:
    """A short hash naming a foreign model's cache folder."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:10]


class ForeignModel:
    """A model robdrop did not train, where analyses take a run: one checkpoint (`epoch`),
    evaluated on `dataset`'s test images at ε = `eps255`/255, its analyses cached under
    `cache_root`/foreign/. Its own generator f_A (for `gap`) is the stateless method `method`
    (default FGSM): robdrop does not export a method's learned state."""

    def __init__(
        self,
        factory: str,
        weights: str | Path,
        *,
        kwargs: dict[str, Any] | None = None,
        dataset: str = "cifar10",
        data_dir: str | Path | None = None,
        eps255: float = 8.0,
        method: str = "fgsm",
        epoch: int = 0,
        name: str | None = None,
        cache_root: str | Path = "checkpoints",
    ) -> None:
        load_factory(factory)  # fail now, with one sentence, on a factory that cannot be found
        self.factory, self.weights, self.kwargs = factory, Path(weights), dict(kwargs or {})
        if not self.weights.is_file():
            raise FileNotFoundError(f"weights file {self.weights} does not exist")
        if parse_method(method).cls.example_state:
            raise ValueError(
                f"a foreign model's own generator must keep no per-example state, not {method}"
            )
        data_dir = data_dir or os.environ.get("ROBDROP_DATA_DIR", "data")
        self.config = TrainConfig(
            method=method, dataset=dataset, data_dir=str(data_dir), eps255=eps255, val_size=0
        )
        self.config.validate()
        self.epoch = epoch
        self.name = name or self.weights.stem
        key = _digest(factory, self.kwargs, self.weights.resolve().as_posix())
        self.path = Path(cache_root) / FOREIGN_DIR / f"{self.name}-{key}"

    @classmethod
    def from_card(cls, card: str | Path, **overrides: Any) -> ForeignModel:
        """The model an export card (`robdrop export`) describes, weights beside the card."""
        card = Path(card)
        try:
            info = json.loads(card.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{card} is not a readable export card ({err})") from None
        if not isinstance(info, dict) or info.get("format") != CARD_FORMAT:
            raise ValueError(f"{card} is not a robdrop export card (format {CARD_FORMAT})")
        values = {
            "kwargs": info["factory_kwargs"],
            "dataset": info["dataset"],
            "eps255": info["eps255"],
            "epoch": info["epoch"],
            "name": card.stem,
            **overrides,
        }
        return cls(info["factory"], card.parent / info["weights"], **values)

    def describe(self) -> str:
        """What this model is, in one line."""
        return f"{self.factory} with {self.weights} ({self.config.dataset}, foreign)"

    # -- what analyses ask of a run -------------------------------------------------------------
    def epochs(self) -> list[int]:
        """Its one checkpoint, numbered as the card says (0 for FACTORY=WEIGHTS)."""
        return [self.epoch]

    def checkpoint_path(self, epoch: int) -> Path:
        """The weights file (whose size and time key the analysis cache)."""
        return self.weights

    def metrics(self) -> pd.DataFrame:
        """No training metrics: robdrop did not train this model."""
        return pd.DataFrame()

    def load(
        self, epoch: int | None = None, device: torch.device | str = "cpu"
    ) -> tuple[nn.Module, Method]:
        """The model in eval mode and its own generator (a stateless method at its ε)."""
        model = build_foreign(self.factory, self.weights, self.kwargs, device)
        size = 224 if self.config.dataset == "imagenet" else 32
        facts = {"num_train": 0, "image_shape": [3, size, size]}
        method = build_method(
            self.config.method, model, method_context_for(self.config, facts, device)
        )
        return model, method


def parse_foreign(spec: str, cache_root: str | Path) -> ForeignModel | None:
    """A foreign model named as `FACTORY=WEIGHTS` or an export card (`*.json`); else None."""
    if spec.endswith(".json") and Path(spec).is_file():
        return ForeignModel.from_card(spec, cache_root=cache_root)
    factory, sep, weights = spec.partition("=")
    if sep and ":" in factory:
        return ForeignModel(factory, weights, cache_root=cache_root)
    return None
