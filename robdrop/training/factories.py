"""What a training configuration builds: its dataset, device, model and method context. The
trainer and the analyses (rebuilding a checkpoint's model) share these."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from robdrop.data import Dataset, Phase, derived_seed, load_cifar, load_imagefolder
from robdrop.methods import MethodContext, build_method
from robdrop.models import Classifier, build_model
from robdrop.training import distributed
from robdrop.training.config import TrainConfig
from robdrop.training.state import TrainingState


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' (CUDA when present) or the device named, which must exist here."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return device


def load_data(cfg: TrainConfig) -> Dataset:
    """The dataset a config names (raises DatasetNotFound saying where it looked)."""
    if cfg.dataset == "imagenet":
        return load_imagefolder(
            cfg.data_dir,
            image_size=cfg.image_size,
            test_size=cfg.eval_size,
            workers=cfg.workers,
            phases=tuple(Phase(**p) for p in cfg.resize_phases),
        )
    return load_cifar(
        cfg.dataset,
        cfg.data_dir,
        download=cfg.download,
        train_size=cfg.train_size,
        val_size=cfg.val_size,
    )


def model_for(cfg: TrainConfig, facts: dict, device: torch.device | str = "cpu") -> Classifier:
    """The (untrained) model a config describes, for data with these facts (see data_facts)."""
    model = build_model(cfg.model, facts["num_classes"], facts["mean"], facts["std"], cfg.width)
    return model.to(device)


def method_context_for(
    cfg: TrainConfig, facts: dict, device: torch.device | str = "cpu"
) -> MethodContext:
    """What the config's method needs to know about the run."""
    return MethodContext(
        eps=cfg.eps_image,
        num_train=facts["num_train"],
        image_shape=tuple(facts["image_shape"]),
        device=torch.device(device),
        amp=cfg.amp,
        options=dict(cfg.options),
        lr_max=cfg.lr_max,
        lr_peak=cfg.lr_peak,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        momentum_at_peak=cfg.momentum_at_peak,
    )


def build_state(
    cfg: TrainConfig, facts: dict, device: torch.device, process: distributed.Process
) -> TrainingState:
    """The model (wrapped in DistributedDataParallel under torchrun), method, optimizer and AMP
    scaler a run trains; channels_last, cudnn.benchmark and AMP on CUDA."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
    torch.manual_seed(cfg.seed)  # the same on every rank: identical model and method
    model = model_for(cfg, facts, device).to(memory_format=memory_format)
    learner = None
    if process.distributed:
        learner = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    context = method_context_for(cfg, facts, device)
    method = build_method(cfg.method, model, context, learner=learner)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and cuda)
    if process.distributed:  # own random draws per rank (a resume restores them)
        torch.manual_seed(derived_seed(cfg.seed, process.rank))
    return TrainingState(model, method, optimizer, scaler, device, process, memory_format)
