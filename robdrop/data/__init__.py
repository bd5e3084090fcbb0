"""The data layer: datasets as uint8 tensors, the on-device loader whose batches carry example
indices and their crop/flip, ImageFolder streaming, and the sharing of per-example rows between
processes."""

from robdrop.data.batch import Batch, Shard, View
from robdrop.data.cifar import CIFAR_STATS, ImageData, load_cifar
from robdrop.data.dataset import DATASETS, Dataset, DatasetNotFound, data_facts
from robdrop.data.folder import IMAGENET_STATS, FolderData, Phase, load_imagefolder
from robdrop.data.loader import (
    Loader,
    TensorLoader,
    batch_bounds,
    derived_seed,
    iterate_eval,
    pad_images,
    rank_part,
)

__all__ = [
    "CIFAR_STATS",
    "DATASETS",
    "IMAGENET_STATS",
    "Batch",
    "Dataset",
    "DatasetNotFound",
    "FolderData",
    "ImageData",
    "Loader",
    "Phase",
    "Shard",
    "TensorLoader",
    "View",
    "batch_bounds",
    "data_facts",
    "derived_seed",
    "iterate_eval",
    "load_cifar",
    "load_imagefolder",
    "pad_images",
    "rank_part",
]
