"""An FGVC dataset: (path, label) samples, safe decoding, optional cache, reproducible augmentation.

Augmentation randomness is drawn from a generator seeded by (seed, epoch, sample index), not from
worker state: a run resumed in the middle of an epoch, or split over N processes, sees exactly
the same crops and flips as an uninterrupted single-process run.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from finegrain.data.images import load_rgb
from finegrain.errors import DataError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % (2**62)


class FGVCDataset(Dataset):
    def __init__(self, samples, class_names, resize, augment, *, seed=0, cache=False,
                 skip_bad_images=False, name="dataset"):
        self.class_names = list(class_names)
        self.resize = resize
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.name = name
        self.skipped: list[str] = []
        self._cache: list[torch.Tensor] | None = None
        samples = list(samples)
        if cache or skip_bad_images:
            samples, images = self._decode_all(samples, skip_bad_images)
            self._cache = images if cache else None
        else:
            _check_files_exist(samples, name)
        self.samples = samples
        self.targets = [label for _, label in samples]

    def _decode_all(self, samples, skip_bad):
        kept, images = [], []
        for path, label in samples:
            try:
                image = self._decode(path)
            except DataError as err:
                if not skip_bad:
                    raise
                warnings.warn(f"skipping bad image: {err}")
                self.skipped.append(path)
                continue
            kept.append((path, label))
            images.append(image)
        return kept, images

    def _decode(self, path: str) -> torch.Tensor:
        return self.resize(TF.pil_to_tensor(load_rgb(path)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = self._cache[index] if self._cache is not None else self._decode(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            image = self.augment(image)
        return image, label


def _check_files_exist(samples, name: str) -> None:
    """A split file naming a missing image fails now, not hours later when the loader reaches it."""
    missing = [path for path, _ in samples if not os.path.isfile(path)]
    if missing:
        raise DataError(f"{missing[0]}: image file not found ({len(missing)} of the {len(samples)} {name} images are missing; "
                        f"--skip-bad-images skips them)")
