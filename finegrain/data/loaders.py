"""Datasets and data loaders from the ``data`` config section.

The sampler is a seeded permutation per epoch, split between processes like DistributedSampler,
and can start part-way through an epoch: that is what makes mid-epoch resume exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler

from finegrain.data.dataset import FGVCDataset
from finegrain.data.formats import has_split, read_split
from finegrain.data.subsets import carve_validation, few_shot
from finegrain.data.transforms import base_resize, eval_augment, train_augment
from finegrain.errors import DataError


@dataclass
class DataBundle:
    train: FGVCDataset | None
    val: FGVCDataset | None
    test: FGVCDataset | None
    class_names: list[str]


def align_labels(split_samples, reference_names, root, split):
    """Map a split's labels onto the training class order by class name (a split read on its own
    numbers its classes by what it contains; a model's outputs follow its training classes)."""
    index = {name: i for i, name in enumerate(reference_names)}
    unknown = [n for n in split_samples.class_names if n not in index]
    if unknown:
        raise DataError(f"{root}: split {split!r} has classes not in training: {', '.join(unknown[:5])}")
    return [(p, index[split_samples.class_names[y]]) for p, y in split_samples.samples]


def build_datasets(data_cfg, seed: int = 0, *, need_train: bool = True) -> DataBundle:
    """Read the configured splits. ``need_train=False`` (data-free methods) never opens train."""
    fmt, root = data_cfg.format, data_cfg.root
    resize = base_resize(data_cfg.image_size, data_cfg.crop_ratio)
    common = dict(resize=resize, cache=data_cfg.cache, skip_bad_images=data_cfg.skip_bad_images)

    test_raw = read_split(fmt, root, data_cfg.test_split)
    if need_train:
        train_raw = read_split(fmt, root, data_cfg.train_split)
        class_names = train_raw.class_names
        train_samples = train_raw.samples
    else:
        class_names = test_raw.class_names
        train_samples = None

    val_samples = None
    # A val split is read for data-free methods too (evaluated each epoch); carving one needs train.
    if data_cfg.val_split and has_split(fmt, root, data_cfg.val_split):
        val_raw = read_split(fmt, root, data_cfg.val_split)
        val_samples = align_labels(val_raw, class_names, root, data_cfg.val_split)
    elif need_train and data_cfg.val_fraction > 0:
        train_samples, val_samples = carve_validation(train_samples, data_cfg.val_fraction, data_cfg.few_shot_seed)
    if need_train:
        train_samples = few_shot(train_samples, data_cfg.few_shot_k, data_cfg.few_shot_seed)
    test_samples = align_labels(test_raw, class_names, root, data_cfg.test_split)

    evaluate = eval_augment(data_cfg)
    train = FGVCDataset(train_samples, class_names, augment=train_augment(data_cfg), seed=seed, name="train", **common) if train_samples else None
    val = FGVCDataset(val_samples, class_names, augment=evaluate, name="val", **common) if val_samples else None
    test = FGVCDataset(test_samples, class_names, augment=evaluate, name="test", **common)
    return DataBundle(train, val, test, class_names)


class ResumableSampler(Sampler[int]):
    """Seeded per-epoch permutation, strided over ``num_replicas`` ranks, that can skip ahead."""

    def __init__(self, size: int, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        self.size, self.num_replicas, self.rank = size, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch, self.start = 0, 0
        if drop_last:
            self.per_rank = size // num_replicas
        elif not shuffle:  # evaluation: every image exactly once, so ranks may differ by one
            self.per_rank = len(range(rank, size, num_replicas))
        else:
            self.per_rank = math.ceil(size / num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """``start`` = number of this rank's samples already consumed in this epoch."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if not self.shuffle and not self.drop_last:
            return order[self.rank :: self.num_replicas]
        total = self.per_rank * self.num_replicas
        order = order[:total] if self.drop_last else (order + order[: total - len(order)])
        return order[self.rank :: self.num_replicas]

    def __iter__(self):
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return self.per_rank - self.start


def make_loader(dataset, batch_size: int, *, train: bool, num_workers: int, seed: int = 0,
                num_replicas: int = 1, rank: int = 0, pin_memory: bool = False) -> DataLoader:
    """A loader whose order depends only on (seed, epoch); ``loader.sampler.set_epoch`` moves it.
    ``pin_memory`` only for a run on a CUDA device: a CPU run on a machine that has a GPU gains nothing
    from page-locked batches and would start the loader's pinning thread for nothing."""
    sampler = ResumableSampler(len(dataset), num_replicas=num_replicas, rank=rank, shuffle=train,
                               seed=seed, drop_last=train and len(dataset) >= batch_size * num_replicas)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=train and len(dataset) >= batch_size * num_replicas,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        pin_memory=pin_memory,
    )
