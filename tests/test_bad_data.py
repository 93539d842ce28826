"""Web-scraped datasets carry broken files: each either works (converted) or fails in one line
naming the file, under both ``data.skip_bad_images`` policies, in the library and the CLI."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_imagefolder, tiny_config
from finegrain.data.images import MAX_PIXELS, load_rgb
from finegrain.data.loaders import build_datasets, make_loader
from finegrain.engine.loop import fit
from finegrain.errors import DataError

POLICIES = pytest.mark.parametrize("skip", [False, True], ids=["fail", "skip"])


# ------------------------------------------------------------------------------- bad files
def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 100-byte PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb's
    signature without its gigabytes (a decoder that trusted it would allocate them)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def truncated_jpeg(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:600])
    return path


BROKEN = {
    "garbage": lambda p: p.write_bytes(b"this is not an image") and p,
    "empty": lambda p: p.write_bytes(b"") or p,
    "truncated": truncated_jpeg,
    "bomb_above_pil_limit": lambda p: png_claiming(p, 20000, 20000),
    "bomb_below_pil_error": lambda p: png_claiming(p, 10000, 9000),  # 90 Mpx: PIL would only warn
}
REASONS = {"garbage": "unreadable or corrupt image", "empty": "unreadable or corrupt image",
           "truncated": "unreadable or corrupt image", "bomb_above_pil_limit": "image too large",
           "bomb_below_pil_error": "image too large"}


@pytest.mark.parametrize("kind", BROKEN)
def test_load_rgb_refuses_broken_files_naming_them(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    BROKEN[kind](path)
    with pytest.raises(DataError) as err:
        load_rgb(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: {REASONS[kind]}") and "\n" not in message


def test_bomb_limit_is_the_documented_one():
    assert 10000 * 9000 > MAX_PIXELS > 9000 * 9000


# --------------------------------------------------------------------------- converted images
def odd_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    gradient = np.linspace(0, 65535, 36 * 40).reshape(36, 40).astype(np.uint16)
    made = {"gray": folder / "gray.jpg", "cmyk": folder / "cmyk.jpg", "sixteen": folder / "sixteen.png",
            "palette_alpha": folder / "palette.png", "rgba": folder / "rgba.png"}
    Image.fromarray(np.full((36, 40), 90, np.uint8)).save(made["gray"])
    Image.new("CMYK", (40, 36), (0, 255, 255, 0)).save(made["cmyk"])  # pure red in ink
    Image.fromarray(gradient).save(made["sixteen"])
    palette = Image.new("P", (40, 36), 0)
    palette.putpalette([0, 0, 255] * 256)
    palette.info["transparency"] = 0
    palette.save(made["palette_alpha"])
    Image.new("RGBA", (40, 36), (0, 255, 0, 0)).save(made["rgba"])
    return made


def test_grayscale_cmyk_16bit_and_alpha_images_become_rgb8(tmp_path):
    made = odd_images(tmp_path)
    assert Image.open(made["cmyk"]).mode == "CMYK" and Image.open(made["sixteen"]).mode.startswith("I")
    images = {name: np.asarray(load_rgb(str(path))) for name, path in made.items()}
    for name, arr in images.items():
        assert arr.shape == (36, 40, 3) and arr.dtype == np.uint8, name
    red = images["cmyk"].reshape(-1, 3).mean(0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    # 16 bit is rescaled over its range, not clipped: the gradient spans 0..255 with every level.
    sixteen = images["sixteen"][..., 0]
    assert sixteen.min() == 0 and sixteen.max() == 255 and len(np.unique(sixteen)) > 200
    assert (images["palette_alpha"] == 255).all() and (images["rgba"] == 255).all(), "transparent -> white"


@POLICIES
def test_training_on_converted_images_works(tmp_path, skip):
    root = make_imagefolder(tmp_path / "data")
    for c in range(3):
        odd_images(root / "train" / f"class_{c}")
    cfg = tiny_config(root, tmp_path / "runs", **{"train.epochs": 1, "data.skip_bad_images": skip, "data.batch_size": 8})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = fit(cfg)
    assert not [w for w in caught if "skipping bad image" in str(w.message)], "all of them are usable"
    assert summary["history"][0]["train/loss_mean"] > 0
    assert len(build_datasets(cfg.data).train) == 3 * (8 + 5)


# ---------------------------------------------------------------------- bad files in a dataset
@POLICIES
@pytest.mark.parametrize("kind", ["garbage", "truncated", "bomb_above_pil_limit"])
def test_bad_training_image_fails_or_is_skipped_naming_it(tmp_path, skip, kind):
    root = make_imagefolder(tmp_path / "data")
    bad = BROKEN[kind](root / "train" / "class_1" / f"zz_{kind}.png")
    cfg = tiny_config(root, tmp_path / "runs", **{"data.skip_bad_images": skip, "data.num_workers": 2})
    if skip:
        with pytest.warns(UserWarning, match=rf"skipping bad image: {bad}: {REASONS[kind]}"):
            data = build_datasets(cfg.data)
        assert data.train.skipped == [str(bad)] and len(data.train) == 24
        assert all(path != str(bad) for path, _ in data.train.samples)
        return
    data = build_datasets(cfg.data)
    loader = make_loader(data.train, 5, train=False, num_workers=2)  # every image, in worker processes
    with pytest.raises(DataError) as err:
        list(loader)
    assert f"{bad}: {REASONS[kind]}" in str(err.value)


@POLICIES
def test_empty_class_folder_is_an_error_naming_it(tmp_path, skip):
    """Skipping a class would silently change the label space, so both policies refuse."""
    root = make_imagefolder(tmp_path / "data")
    for image in (root / "train" / "class_2").iterdir():
        image.unlink()
    (root / "train" / "class_2" / "notes.txt").write_text("no images here")
    cfg = tiny_config(root, tmp_path / "runs", **{"data.skip_bad_images": skip})
    with pytest.raises(DataError, match=rf"{root / 'train' / 'class_2'}: class folder has no images"):
        build_datasets(cfg.data)


def make_cub(root: Path, missing: str) -> Path:
    """A 2-class CUB_200_2011 layout whose images.txt also names ``missing``, which is not on disk."""
    import random

    from conftest import make_image

    base = root / "CUB_200_2011"
    rng = random.Random(0)
    rows, labels, split = [], [], []
    names = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    image_id = 0
    for c, name in enumerate(names):
        for i in range(6):
            image_id += 1
            rel = f"{name}/{name.split('.')[1]}_{i:04d}.jpg"
            make_image(base / "images" / rel, c, rng)
            rows.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c + 1}")
            split.append(f"{image_id} {int(i < 4)}")
    image_id += 1
    rows.append(f"{image_id} {missing}")
    labels.append(f"{image_id} 1")
    split.append(f"{image_id} 1")
    (base / "images.txt").write_text("\n".join(rows) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (base / "classes.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    return root


@POLICIES
def test_cub_split_naming_a_missing_image(tmp_path, skip):
    root = make_cub(tmp_path / "cub", "001.Black_footed_Albatross/Gone_0099.jpg")
    missing = root / "CUB_200_2011" / "images" / "001.Black_footed_Albatross" / "Gone_0099.jpg"
    cfg = tiny_config(root, tmp_path / "runs", **{"data.format": "cub", "data.skip_bad_images": skip,
                                                  "data.val_split": None})
    if not skip:  # found when the dataset is built, not when the loader reaches the image
        with pytest.raises(DataError, match=rf"{missing}: image file not found \(1 of the 9 train images"):
            build_datasets(cfg.data)
        return
    with pytest.warns(UserWarning, match=rf"skipping bad image: {missing}: image file not found"):
        data = build_datasets(cfg.data)
    assert data.train.skipped == [str(missing)] and len(data.train) == 8 and len(data.test) == 4


# -------------------------------------------------------------------------------- the CLI
def cli(root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["train", "--data", str(root), "--out", str(out), "--name", "run", "--epochs", "1", "--accelerator", "cpu",
            *extra, "model.name=test_resnet", "data.image_size=32", "data.batch_size=5", "data.num_workers=2"]
    return subprocess.run([sys.executable, "-m", "finegrain", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_bad_image_in_a_worker_is_one_line_exit_2(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    bad = BROKEN["truncated"](root / "train" / "class_0" / "zz_truncated.jpg")  # 25 images / batch 5: all used
    result = cli(root, tmp_path / "runs")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"finegrain train: error: {bad}: unreadable or corrupt image")

    result = cli(root, tmp_path / "runs2", "--skip-bad-images")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipping bad image: {bad}" in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_cub_image_and_bomb_are_one_line_exit_2(tmp_path):
    root = make_cub(tmp_path / "cub", "002.Laysan_Albatross/Gone_0001.jpg")
    result = cli(root, tmp_path / "runs", "--format", "cub", "data.val_split=null")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Gone_0001.jpg: image file not found" in lines[0]

    folder = make_imagefolder(tmp_path / "data")
    bomb = png_claiming(folder / "test" / "class_2" / "bomb.png", 20000, 20000)
    result = cli(folder, tmp_path / "runs2")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and f"{bomb}: image too large" in lines[0]
