import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image, make_imagefolder
from finegrain.config import Config
from finegrain.data import build_datasets, carve_validation, few_shot, load_rgb, make_loader, read_split
from finegrain.errors import DataError


def test_imagefolder_reader(imagefolder):
    split = read_split("imagefolder", imagefolder, "train")
    assert split.class_names == ["class_0", "class_1", "class_2"]
    assert len(split.samples) == 24 and {y for _, y in split.samples} == {0, 1, 2}


def test_missing_root_and_split(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        read_split("imagefolder", tmp_path / "nope", "train")
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        read_split("imagefolder", tmp_path / "d", "train")
    (tmp_path / "d" / "train" / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class: class folder has no images"):
        read_split("imagefolder", tmp_path / "d", "train")


def make_cub(root: Path) -> Path:
    import random

    rng = random.Random(0)
    cub = root / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    images, labels, split = [], [], []
    for i in range(8):
        c = i % 2
        rel = f"{classes[c]}/bird_{i}.jpg"
        make_image(cub / "images" / rel, c, rng)
        images.append(f"{i + 1} {rel}")
        labels.append(f"{i + 1} {c + 1}")
        split.append(f"{i + 1} {1 if i < 6 else 0}")
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (cub / "classes.txt").write_text("\n".join(f"{i + 1} {c}" for i, c in enumerate(classes)) + "\n")
    return root


def test_cub_reader(tmp_path):
    root = make_cub(tmp_path)
    train, test = read_split("cub", root, "train"), read_split("cub", root, "test")
    assert train.class_names == ["Black_footed_Albatross", "Laysan_Albatross"]
    assert len(train.samples) == 6 and len(test.samples) == 2
    assert all(Path(p).is_file() for p, _ in train.samples + test.samples)
    (root / "CUB_200_2011" / "classes.txt").unlink()
    with pytest.raises(DataError, match="classes.txt not found"):
        read_split("cub", root, "train")


def test_aircraft_reader_via_torchvision(tmp_path):
    import random

    rng = random.Random(0)
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A320"]
    (data).mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    lines = []
    for i in range(4):
        make_image(data / "images" / f"{1000 + i}.jpg", i % 2, rng)
        lines.append(f"{1000 + i} {variants[i % 2]}")
    (data / "images_variant_train.txt").write_text("\n".join(lines) + "\n")
    split = read_split("aircraft", tmp_path, "train")
    assert split.class_names == variants and sorted(y for _, y in split.samples) == [0, 0, 1, 1]


def test_flowers102_reader_via_torchvision(tmp_path, monkeypatch):
    import random

    from torchvision.datasets import Flowers102

    # torchvision checks the md5 of the official .mat files; the parsing is what is tested here.
    monkeypatch.setattr(Flowers102, "_check_integrity", lambda self: True)

    from scipy.io import savemat

    rng = random.Random(0)
    base = tmp_path / "flowers-102"
    for i in range(1, 7):
        make_image(base / "jpg" / f"image_{i:05d}.jpg", i % 2, rng)
    savemat(base / "imagelabels.mat", {"labels": np.array([[1, 2, 1, 2, 1, 2]])})
    savemat(base / "setid.mat", {"trnid": np.array([[1, 2, 3, 4]]), "valid": np.array([[5]]), "tstid": np.array([[6]])})
    split = read_split("flowers102", tmp_path, "train")
    assert len(split.samples) == 4 and {y for _, y in split.samples} == {0, 1}


def test_few_shot_and_validation_are_per_class_and_seeded(imagefolder):
    samples = read_split("imagefolder", imagefolder, "train").samples
    two = few_shot(samples, 2, seed=1)
    assert len(two) == 6 and all(sum(y == c for _, y in two) == 2 for c in range(3))
    assert two == few_shot(samples, 2, seed=1) and two != few_shot(samples, 2, seed=2)
    train, val = carve_validation(samples, 0.25, seed=0)
    assert len(val) == 6 and not set(train) & set(val) and len(train) + len(val) == len(samples)


def test_corrupt_image_error_names_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg: unreadable or corrupt image"):
        load_rgb(str(bad))
    with pytest.raises(DataError, match="missing.jpg: image file not found"):
        load_rgb(str(tmp_path / "missing.jpg"))


def test_skip_bad_images_policy(imagefolder):
    bad = imagefolder / "train" / "class_1" / "zz_bad.jpg"
    bad.write_bytes(b"garbage")
    cfg = Config()
    cfg.data.root, cfg.data.image_size = str(imagefolder), 32
    with pytest.raises(DataError, match="zz_bad.jpg"):
        build_datasets(cfg.data).train[[p for p, _ in build_datasets(cfg.data).train.samples].index(str(bad))]
    cfg.data.skip_bad_images = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = build_datasets(cfg.data)
    assert str(bad) in bundle.train.skipped and len(bundle.train) == 24
    assert any("zz_bad.jpg" in str(w.message) for w in caught)


@pytest.mark.parametrize("mode", ["L", "CMYK", "I;16", "RGBA", "P"])
def test_odd_image_modes_become_rgb(tmp_path, mode):
    arr = (np.arange(30 * 20) % 255).reshape(20, 30).astype(np.uint8)
    img = Image.fromarray(arr)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 200)
    elif mode != "L":
        img = img.convert(mode)
    path = tmp_path / f"odd.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    img.save(path)
    out = load_rgb(str(path))
    assert out.mode == "RGB" and out.size == (30, 20)
    if mode == "I;16":  # rescaled, not clipped to white
        assert np.asarray(out).max() == 255 and np.asarray(out).min() == 0


def test_cache_gives_same_batches_as_decoding(imagefolder):
    cfg = Config()
    cfg.data.root, cfg.data.image_size = str(imagefolder), 32
    plain = build_datasets(cfg.data).train
    cfg.data.cache = True
    cached = build_datasets(cfg.data).train
    assert cached._cache is not None
    for i in (0, 5):
        assert torch.equal(plain[i][0], cached[i][0])


def test_augmentation_depends_on_epoch_and_index_only(imagefolder):
    cfg = Config()
    cfg.data.root, cfg.data.image_size = str(imagefolder), 24
    train = build_datasets(cfg.data).train
    a = train[3][0]
    torch.manual_seed(123)  # global RNG must not matter
    assert torch.equal(a, train[3][0])
    train.set_epoch(1)
    assert not torch.equal(a, train[3][0])


def test_loader_shapes_and_resumable_order(imagefolder):
    cfg = Config()
    cfg.data.root, cfg.data.image_size = str(imagefolder), 32
    train = build_datasets(cfg.data).train
    loader = make_loader(train, 4, train=True, num_workers=0, seed=3)
    loader.sampler.set_epoch(0)
    batches = [y.tolist() for _, y in loader]
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (4,)
    loader.sampler.set_epoch(0, start=8)
    assert [y.tolist() for _, y in loader] == batches[2:]
    halves = [make_loader(train, 2, train=True, num_workers=0, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for h in halves:
        h.sampler.set_epoch(0)
    first = torch.cat([next(iter(h))[1] for h in halves])
    assert sorted(first.tolist()) == sorted(batches[0])


def test_val_split_from_folder_or_carved(tmp_path):
    root = make_imagefolder(tmp_path / "noval", counts={"train": 6, "test": 2})
    cfg = Config()
    cfg.data.root, cfg.data.image_size = str(root), 32
    assert build_datasets(cfg.data).val is None
    cfg.data.val_fraction = 0.34
    bundle = build_datasets(cfg.data)
    assert len(bundle.val) == 6 and len(bundle.train) == 12
    cfg.data.few_shot_k = 2
    assert len(build_datasets(cfg.data).train) == 6
