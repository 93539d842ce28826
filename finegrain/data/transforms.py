"""The usual FGVC recipe: resize to image_size / crop_ratio, random crop + flip for training,
center crop for evaluation, then normalization. Works on uint8 CHW tensors, so the same
pipeline serves decoded files and the in-memory cache."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def resize_size(image_size: int, crop_ratio: float) -> int:
    return int(round(image_size / crop_ratio))


def base_resize(image_size: int, crop_ratio: float) -> v2.Transform:
    """Resize the shorter side: done once per image when the cache is on."""
    return v2.Resize(resize_size(image_size, crop_ratio), antialias=True)


def normalize(mean, std) -> v2.Transform:
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))])


def train_augment(data_cfg) -> v2.Transform:
    size = data_cfg.image_size
    ops = [v2.RandomResizedCrop(size, antialias=True) if data_cfg.random_resized_crop else v2.RandomCrop(size)]
    if data_cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops.append(normalize(data_cfg.mean, data_cfg.std))
    return v2.Compose(ops)


def eval_augment(data_cfg) -> v2.Transform:
    return v2.Compose([v2.CenterCrop(data_cfg.image_size), normalize(data_cfg.mean, data_cfg.std)])


def eval_transform(image_size: int, crop_ratio: float, mean, std) -> v2.Transform:
    """Full eval pipeline from a uint8 tensor, used by predict and export metadata."""
    return v2.Compose([base_resize(image_size, crop_ratio), v2.CenterCrop(image_size), normalize(mean, std)])


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Back to [0, 1] for pictures."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images * s + m).clamp(0, 1)
