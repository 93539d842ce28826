"""Tiny real-layout datasets made on the fly, and a tiny config that trains in seconds on a CPU."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)

CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (160, 60, 200)]


def make_image(path: Path, label: int, rng: random.Random, size=(40, 36)) -> None:
    """A class-coloured image with noise and a random bright square: learnable, not trivial."""
    w, h = size
    base = np.array(CLASS_COLOURS[label % len(CLASS_COLOURS)], dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 40, (h, w, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    x, y = rng.randrange(w - 10), rng.randrange(h - 10)
    arr[y:y + 10, x:x + 10] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_imagefolder(root: Path, classes: int = 3, counts=None, seed: int = 0) -> Path:
    counts = counts or {"train": 8, "val": 2, "test": 3}
    rng = random.Random(seed)
    for split, n in counts.items():
        for c in range(classes):
            for i in range(n):
                make_image(root / split / f"class_{c}" / f"img_{split}_{c}_{i}.jpg", c, rng)
    return root


@pytest.fixture
def imagefolder(tmp_path) -> Path:
    return make_imagefolder(tmp_path / "data")


def tiny_config(root: Path, out: Path, **overrides):
    from finegrain.config import Config

    cfg = Config()
    cfg.data.root = str(root)
    cfg.data.image_size = 32
    cfg.data.batch_size = 4
    cfg.data.eval_batch_size = 8
    cfg.data.num_workers = 0
    cfg.model.name = "test_resnet"
    cfg.optim.lr = 0.05
    cfg.optim.weight_decay = 0.0
    cfg.train.epochs = 2
    cfg.train.accelerator = "cpu"
    cfg.train.out_dir = str(out)
    cfg.train.run_name = "run"
    cfg.train.log_every = 1
    for dotted, value in overrides.items():
        cfg.set(dotted.replace("__", "."), value)
    return cfg


@pytest.fixture
def tiny_cfg(imagefolder, tmp_path):
    return tiny_config(imagefolder, tmp_path / "runs")


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module, so its functions can be tested at toy size."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported_models_equal(run_a: dict, run_b: dict) -> bool:
    """Whether two ``fit`` summaries exported bit-identical models: the same tensors under the same
    names (the check of every "pause, resume, and end where the uninterrupted run ends" test)."""
    from safetensors.torch import load_file

    a, b = (load_file(str(Path(run["run_dir"]) / "model.safetensors")) for run in (run_a, run_b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def committed_result(name: str, benchmark: str) -> dict:
    """``benchmarks/<name>.result.json``, checked for the shape results are compared in turn after
    turn: ``teacher.test_top1``, and ``runs`` as rows with setting, method, variant, seed and top-1s."""
    import json

    result = json.loads((Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.result.json").read_text())
    assert result["benchmark"] == benchmark and 0 < result["teacher"]["test_top1"] <= 100
    assert isinstance(result["runs"], list) and result["runs"]
    for row in result["runs"]:
        assert {"setting", "method", "variant", "seed", "test_top1", "val_top1"} <= set(row)
        assert 0 <= row["test_top1"] <= 100
    return result
