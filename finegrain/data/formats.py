"""Dataset formats: each reader turns a local root into a list of (path, label) per split.

Readers never download. torchvision's own parsers are reused where they exist (Aircraft, Cars,
Flowers-102); CUB-200-2011 and the ImageFolder layout of the Ultra-FGVC leaves are read here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from finegrain.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class SplitSamples:
    """One split of a dataset: image paths with integer labels, and the class names."""

    samples: list[tuple[str, int]]
    class_names: list[str]


@dataclass
class DatasetFormat:
    name: str
    description: str
    reader: Callable[[Path, str], SplitSamples]
    splits: tuple[str, ...]


FORMATS: dict[str, DatasetFormat] = {}


def register_format(name: str, description: str, splits: tuple[str, ...]):
    def wrap(fn):
        FORMATS[name] = DatasetFormat(name, description, fn, splits)
        return fn

    return wrap


def read_split(format_name: str, root: str | Path | None, split: str) -> SplitSamples:
    """Samples of ``split`` under ``root`` in format ``format_name``; clear errors otherwise."""
    if format_name not in FORMATS:
        raise DataError(f"unknown dataset format {format_name!r}; known: {', '.join(FORMATS)}")
    if root is None:
        raise DataError("no dataset root given (set data.root or pass --data PATH)")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    result = FORMATS[format_name].reader(root, split)
    if not result.samples:
        raise DataError(f"{root}: split {split!r} has no images")
    return result


def has_split(format_name: str, root: str | Path, split: str) -> bool:
    """Whether ``split`` exists, so that an optional validation split can be skipped quietly."""
    if format_name == "imagefolder":
        return (Path(root) / split).is_dir()
    return split in FORMATS[format_name].splits


# ---------------------------------------------------------------------------------- ImageFolder
@register_format("imagefolder", "root/<split>/<class>/*.jpg (Ultra-FGVC leaves, Oxford-17, custom)", ("train", "val", "test"))
def read_imagefolder(root: Path, split: str) -> SplitSamples:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{root}: split folder {split!r} not found (expected {split_dir})")
    class_names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not class_names:
        raise DataError(f"{split_dir}: no class folders")
    samples = []
    for label, name in enumerate(class_names):
        files = sorted(
            os.path.join(split_dir, name, f)
            for f in os.listdir(split_dir / name)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise DataError(f"{split_dir / name}: class folder has no images")
        samples.extend((f, label) for f in files)
    return SplitSamples(samples, class_names)


# ------------------------------------------------------------------------------------ CUB-200
@register_format("cub", "CUB-200-2011: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt", ("train", "test"))
def read_cub(root: Path, split: str) -> SplitSamples:
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    if split not in ("train", "test"):
        raise DataError(f"cub has splits 'train' and 'test', not {split!r}")

    def table(name: str) -> dict[str, str]:
        path = root / name
        if not path.is_file():
            raise DataError(f"{root}: CUB file {name} not found")
        rows = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    raise DataError(f"{path}:{lineno}: expected '<id> <value>', got {line!r}")
                rows[parts[0]] = parts[1].strip()
        return rows

    images, labels, is_train, classes = (
        table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt"), table("classes.txt")
    )
    class_ids = sorted(classes, key=int)
    class_names = [classes[c].split(".", 1)[-1] for c in class_ids]
    index_of = {c: i for i, c in enumerate(class_ids)}
    want = "1" if split == "train" else "0"
    samples = []
    for image_id, rel in images.items():
        if image_id not in is_train or image_id not in labels:
            raise DataError(f"{root}: image id {image_id} ({rel}) missing from train_test_split.txt or image_class_labels.txt")
        if is_train[image_id] == want:
            samples.append((str(root / "images" / rel), index_of[labels[image_id]]))
    return SplitSamples(samples, class_names)


# ------------------------------------------------------------------------- torchvision formats
def _torchvision_dataset(cls, root: Path, **kwargs):
    try:
        return cls(str(root), download=False, **kwargs)
    except RuntimeError as err:
        raise DataError(f"{root}: not a {cls.__name__} root ({str(err).splitlines()[0]})") from None
    except FileNotFoundError as err:
        raise DataError(f"{root}: {cls.__name__} file missing ({err.filename or err})") from None


@register_format("aircraft", "FGVC-Aircraft-2013b (torchvision FGVCAircraft layout), variant level", ("train", "val", "trainval", "test"))
def read_aircraft(root: Path, split: str) -> SplitSamples:
    from torchvision.datasets import FGVCAircraft

    tv_root = root.parent if root.name == "fgvc-aircraft-2013b" else root
    ds = _torchvision_dataset(FGVCAircraft, tv_root, split=split, annotation_level="variant")
    return SplitSamples(list(zip(map(str, ds._image_files), ds._labels)), list(ds.classes))


@register_format("cars", "Stanford Cars (torchvision StanfordCars layout)", ("train", "test"))
def read_cars(root: Path, split: str) -> SplitSamples:
    from torchvision.datasets import StanfordCars

    tv_root = root.parent if root.name == "stanford_cars" else root
    ds = _torchvision_dataset(StanfordCars, tv_root, split=split)
    return SplitSamples([(str(p), int(y)) for p, y in ds._samples], list(ds.classes))


@register_format("flowers102", "Oxford Flowers-102 (torchvision Flowers102 layout)", ("train", "val", "test"))
def read_flowers102(root: Path, split: str) -> SplitSamples:
    from torchvision.datasets import Flowers102

    tv_root = root.parent if root.name == "flowers-102" else root
    ds = _torchvision_dataset(Flowers102, tv_root, split=split)
    names = list(getattr(ds, "classes", [])) or [f"flower_{i:03d}" for i in range(102)]
    return SplitSamples([(str(p), int(y)) for p, y in zip(ds._image_files, ds._labels)], names)
