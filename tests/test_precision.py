"""Mixed precision, channels_last and torch.compile each train on CPU, and really take effect.

A spy around the supervised step records what the step saw (autocast state, memory format,
whether the classifier is compiled); the first-step loss is compared with a plain fp32 run.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from finegrain.engine.loop import fit
from finegrain.methods.supervised import Supervised

# Two steps, no validation, one test batch: these options cost their set-up, not the training.
SHORT = {"train.epochs": 1, "train.iterations_per_epoch": 2, "data.val_split": None, "data.eval_batch_size": 9}


def first_loss(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return float(next(r for r in csv.DictReader(handle) if r.get("train/loss"))["train/loss"])


def train(root: Path, out: Path, **overrides) -> tuple[Path, dict]:
    summary = fit(tiny_config(root, out, **{**SHORT, **overrides}))
    run_dir = Path(summary["run_dir"])
    assert len(summary["history"]) == 1 and 0 <= summary["test_top1"] <= 100
    return run_dir, summary


@pytest.fixture(scope="module")
def fp32_loss(tmp_path_factory) -> tuple[Path, float]:
    from conftest import make_imagefolder

    root = make_imagefolder(tmp_path_factory.mktemp("precision") / "data")
    run_dir, _ = train(root, tmp_path_factory.mktemp("fp32"))
    return root, first_loss(run_dir)


@pytest.fixture
def spy(monkeypatch) -> list[dict]:
    seen = []
    original = Supervised.step

    def step(self, phase, batch):
        conv = next(m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d))
        seen.append({"autocast": torch.is_autocast_enabled("cpu"), "dtype": torch.get_autocast_dtype("cpu"),
                     "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last)
                     and not conv.weight.is_contiguous(),
                     "compiled": getattr(self.model, "_compiled_call_impl", None) is not None})
        return original(self, phase, batch)

    monkeypatch.setattr(Supervised, "step", step)
    return seen


def test_bf16_mixed_runs_under_autocast_and_keeps_fp32_weights(fp32_loss, tmp_path, spy):
    root, reference = fp32_loss
    run_dir, _ = train(root, tmp_path, **{"train.precision": "bf16-mixed"})
    assert spy and all(s["autocast"] and s["dtype"] == torch.bfloat16 for s in spy)
    assert first_loss(run_dir) == pytest.approx(reference, rel=0.05)
    weights = load_file(str(run_dir / "model.safetensors"))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_16_mixed_on_cpu_falls_back_to_bf16(fp32_loss, tmp_path, spy):
    """Lightning does not run fp16 AMP on a CPU; it substitutes bf16-mixed and says so. True fp16
    (with its gradient scaler) needs a GPU; on CPU this checks the option is accepted and trains."""
    root, reference = fp32_loss
    with pytest.warns(UserWarning, match="not supported on CPU. Using `precision='bf16-mixed'` instead"):
        run_dir, _ = train(root, tmp_path, **{"train.precision": "16-mixed"})
    assert spy and all(s["autocast"] and s["dtype"] == torch.bfloat16 for s in spy)
    assert first_loss(run_dir) == pytest.approx(reference, rel=0.05)


def test_channels_last_trains_with_channels_last_weights(fp32_loss, tmp_path, spy):
    root, reference = fp32_loss
    run_dir, _ = train(root, tmp_path, **{"model.channels_last": True})
    assert spy and all(s["channels_last"] and not s["autocast"] for s in spy)
    assert first_loss(run_dir) == pytest.approx(reference, rel=1e-4)


def test_compile_trains_a_compiled_classifier(fp32_loss, tmp_path, spy):
    compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("torch.compile's inductor backend needs a C++ compiler on CPU; none found on PATH")
    root, reference = fp32_loss
    run_dir, _ = train(root, tmp_path, **{"train.compile": True})
    assert spy and all(s["compiled"] for s in spy)
    assert first_loss(run_dir) == pytest.approx(reference, rel=1e-4)
