"""Data: the real split archives, held-out splits, CIFAR-100's archive path, batched crop/flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robdrop.data import DatasetNotFound, TensorLoader, View, load_cifar, pad_images


def test_real_cifar10_from_split_archives(data_dir):
    d = load_cifar("cifar10", data_dir, download=False)
    assert d.train_x.shape == (50000, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert d.test_x.shape == (10000, 3, 32, 32)
    assert d.classes[0] == "airplane" and d.num_classes == 10
    means = d.train_x.float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3)
    # the second archive follows the first: image 25,000 is the first of cifar10-train-2.npz
    second = np.load(data_dir / "cifar10-train-2.npz")["x_train"][0]
    assert torch.equal(d.train_x[25000], torch.from_numpy(second).permute(2, 0, 1))


def test_train_and_held_out_parts_are_disjoint(data_dir):
    d = load_cifar("cifar10", data_dir, download=False, train_size=1000, val_size=200)
    full = load_cifar("cifar10", data_dir, download=False)
    assert torch.equal(d.train_x, full.train_x[:1000])
    assert torch.equal(d.val_x, full.train_x[-200:])
    with pytest.raises(ValueError, match="do not fit"):
        load_cifar("cifar10", data_dir, download=False, train_size=49990, val_size=100)


def test_cifar100_archive_path(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train-1", 60), ("train-2", 40)):
        np.savez_compressed(
            tmp_path / f"cifar100-{part}.npz",
            x_train=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            y_train=rng.integers(0, 100, n),
        )
    np.savez_compressed(
        tmp_path / "cifar100-test.npz",
        x_test=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(30) % 100 + 70,
    )
    d = load_cifar("cifar100", tmp_path, download=False, val_size=10)
    assert d.num_train == 90 and len(d.val_y) == 10 and len(d.test_y) == 30
    assert d.num_classes == 100 and d.mean[0] == pytest.approx(0.5071)
    # cifar10's loader must not pick up cifar100 archives
    with pytest.raises(DatasetNotFound, match="cifar10 was not found in"):
        load_cifar("cifar10", tmp_path, download=False)


def test_missing_dataset_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        load_cifar("cifar100", tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere") in str(err.value) and "--data-dir" in str(err.value)


def test_view_matches_a_hand_made_crop_and_flip():
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    view = View(
        torch.tensor([0, 2, 4]), torch.tensor([4, 1, 0]), torch.tensor([False, True, True]), 8, 2
    )
    out = view.take(pad_images(x, 2))
    padded = pad_images(x, 2)
    for b in range(3):
        t, left = int(view.top[b]), int(view.left[b])
        expected = padded[b, :, t : t + 8, left : left + 8]
        if view.flip[b]:
            expected = expected.flip(-1)
        assert torch.equal(out[b], expected)


def test_view_put_is_the_inverse_of_take():
    state = torch.zeros(4, 3, 12, 12)
    view = View(
        torch.tensor([0, 1, 2, 4]),
        torch.tensor([3, 0, 4, 2]),
        torch.tensor([True, False, True, False]),
        8,
        2,
    )
    values = torch.randn(4, 3, 8, 8)
    updated = view.put(state, values)
    assert torch.equal(view.take(updated), values)
    assert torch.count_nonzero(updated) == values.numel()  # only the window was written
    assert torch.count_nonzero(state) == 0  # the input was not mutated


def test_loader_batches_carry_indices_and_depend_only_on_seed_and_epoch(cifar):
    loader = TensorLoader(cifar.train_x, cifar.train_y, 100, seed=3)
    batches = list(loader.epoch(2))
    assert [len(b.y) for b in batches] == [100, 100, 56]
    idx = torch.cat([b.idx for b in batches])
    assert sorted(idx.tolist()) == list(range(256))
    for b in batches:
        assert torch.equal(b.y, cifar.train_y[b.idx])
        assert b.x.dtype == torch.float32 and b.x.min() >= 0 and b.x.max() <= 1
        raw = cifar.train_x[b.idx].float() / 255
        assert torch.allclose(b.view.take(pad_images(raw, 4)), b.x)
    again = list(loader.epoch(2))
    assert all(torch.equal(a.x, b.x) for a, b in zip(batches, again, strict=True))
    other = next(iter(loader.epoch(3)))
    assert not torch.equal(other.idx, batches[0].idx)


def _write_imagefolder(root, classes=("n01", "n02"), per_class=3, size=48):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{c}_{i}.JPEG", quality=90)


def test_imagefolder_tree_streams_batches_with_indices(tmp_path):
    from robdrop.data.folder import load_imagefolder

    _write_imagefolder(tmp_path)
    d = load_imagefolder(tmp_path, image_size=32, workers=0)
    assert d.num_train == 6 and d.num_classes == 2 and d.classes == ["n01", "n02"]
    assert d.test_x.shape == (6, 3, 32, 32)
    assert d.test_x.dtype == torch.uint8
    loader = d.train_loader(4, seed=1)
    batches = list(loader.epoch(1))
    assert len(loader) == 2
    assert sorted(torch.cat([b.idx for b in batches]).tolist()) == list(range(6))
    for b in batches:
        assert b.x.shape[1:] == (3, 32, 32) and b.x.min() >= 0 and b.x.max() <= 1
    assert all(torch.equal(a.idx, b.idx) for a, b in zip(batches, loader.epoch(1), strict=True))
    with pytest.raises(DatasetNotFound, match="expected ImageFolder trees"):
        load_imagefolder(tmp_path / "train")


def test_imagefolder_trains_through_the_cli(tmp_path):
    from click.testing import CliRunner

    from robdrop.cli import main
    from robdrop.training.runs import Run

    _write_imagefolder(tmp_path / "imagenet")
    data, runs = str(tmp_path / "imagenet"), str(tmp_path / "runs")
    args = ["train", "--method", "fgsm", "--preset", "paper-imagenet-r50", "--model", "prn18",
            "--width", "4", "--epochs", "1", "--batch-size", "4", "--eval-size", "4",
            "--data-dir", data, "--out", runs, "-q"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--option", "x=1"])
    assert result.exit_code != 0 and "has no option x" in result.output
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run = Run(tmp_path / "runs" / "paper-imagenet-r50-fgsm-eps2-seed0")
    assert run.data["num_train"] == 6 and run.epochs() == [1]


def test_imagefolder_resize_phases_and_rank_shards(tmp_path):
    from robdrop.data.folder import Phase, load_imagefolder

    _write_imagefolder(tmp_path, per_class=5)
    phases = (Phase(1, 40, 24), Phase(3, None, 32))
    d = load_imagefolder(tmp_path, image_size=16, workers=0, phases=phases)
    loader = d.train_loader(4, seed=2)
    sizes = {e: {b.x.shape[-1] for b in loader.epoch(e)} for e in (1, 2, 3, 4)}
    assert sizes == {1: {24}, 2: {24}, 3: {32}, 4: {32}}
    assert d.test_x.shape[-1] == 16  # evaluation keeps its own size
    ranks = [d.train_loader(4, seed=2, rank=r, world=2) for r in (0, 1)]
    assert len(ranks[0]) == len(loader) == 3  # 10 images: 4, 4, 2 per global minibatch
    shards = zip(*(r.epoch(1) for r in ranks), strict=True)
    for parts, whole in zip(shards, loader.epoch(1), strict=True):
        assert torch.equal(parts[0].shard.indices, whole.idx)
        assert torch.equal(torch.cat([p.idx for p in parts]), whole.idx)


def test_resize_phases_train_through_the_trainer(tmp_path):
    from robdrop.training.config import make_config
    from robdrop.training.trainer import Trainer

    _write_imagefolder(tmp_path / "imagenet")
    phases = [{"epoch": 1, "resize": 40, "crop": 24}, {"epoch": 2, "resize": None, "crop": 32}]
    cfg = make_config("paper-imagenet-r50", model="prn18", width=4, epochs=2, batch_size=4,
                      eval_size=4, image_size=32, data_dir=str(tmp_path / "imagenet"),
                      resize_phases=phases, workers=0)  # fmt: skip
    run = Trainer(cfg, tmp_path / "runs", progress=False).fit()
    assert run.epochs() == [2] and len(run.metrics()) == 2
    assert run.config.resize_phases == phases
    with pytest.raises(ValueError, match="must start at epoch 1"):
        make_config("paper-imagenet-r50", resize_phases=phases[1:])


def test_the_imagenet_preset_has_wong_et_al_phases():
    from robdrop.training.config import make_config

    cfg = make_config("paper-imagenet-r50")
    assert [(p["epoch"], p["resize"], p["crop"]) for p in cfg.resize_phases] == [
        (1, 160, 128),
        (7, 352, 224),
        (13, None, 288),
    ]
    assert (cfg.epochs, cfg.eps255, cfg.lr_max, cfg.model) == (15, 2.0, 0.4, "resnet50")


def test_the_imagenet_preset_trains_resnet50_through_its_first_phase(tmp_path):
    from robdrop.training.config import make_config
    from robdrop.training.trainer import Trainer

    _write_imagefolder(tmp_path / "imagenet", size=96)
    cfg = make_config("paper-imagenet-r50", epochs=1, batch_size=6, eval_size=2, image_size=64,
                      eval_attack="pgd1", data_dir=str(tmp_path / "imagenet"), workers=0,
                      monitor="none")  # fmt: skip
    run = Trainer(cfg, tmp_path / "runs", progress=False).fit()
    model, _ = run.load()
    assert type(model.net).__name__ == "ResNet" and run.metrics()["train_loss"].notna().all()
