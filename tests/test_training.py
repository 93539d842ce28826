import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from finegrain.data.loaders import build_datasets
from finegrain.engine.loop import Trainer, fit
from finegrain.errors import CheckpointError, ConfigError, TrainingError
from finegrain.inference import load


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "finegrain", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_two_epochs_lower_loss_and_write_checkpoint(tiny_cfg):
    tiny_cfg.train.epochs = 3
    summary = fit(tiny_cfg)
    history = summary["history"]
    assert history[-1]["train/loss_mean"] < history[0]["train/loss_mean"]
    run = Path(summary["run_dir"])
    assert (run / "model.safetensors").is_file() and (run / "metrics.csv").is_file()
    assert list((run / "tensorboard").iterdir())
    sidecar = json.loads(Path(summary["checkpoint"]).read_text())
    assert sidecar["architecture"] == "test_resnet" and sidecar["class_names"] == ["class_0", "class_1", "class_2"]
    assert sidecar["epoch"] == 3 and "val/top1" in sidecar["metrics"]
    assert 0 <= summary["test_top1"] <= 100 and summary["images_per_s"] > 0


def test_a_cpu_run_on_a_machine_with_a_gpu_does_not_pin_its_batches(tiny_cfg, monkeypatch):
    """Page-locked batches only help a copy to a CUDA device; before, any machine with a GPU pinned
    them (and started the loader's pinning thread) for CPU runs too."""
    trainer = Trainer(tiny_cfg)  # accelerator cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    data = build_datasets(tiny_cfg.data, tiny_cfg.train.seed)
    assert trainer.fabric.device.type == "cpu"
    assert not trainer._loader(data.train, True).pin_memory and not trainer._loader(data.val, False).pin_memory


def test_eval_and_predict_load_the_checkpoint(tiny_cfg, imagefolder):
    summary = fit(tiny_cfg)
    run = summary["run_dir"]
    result = run_cli("eval", summary["checkpoint"], "--num-workers", "0")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top1"] == pytest.approx(summary["test_top1"], abs=0.01)
    image = next((imagefolder / "test" / "class_1").iterdir())
    result = run_cli("predict", run, image, "--top-k", "2")
    assert result.returncode == 0, result.stderr
    assert str(image) in result.stdout and result.stdout.count("%  class_") == 2
    predictor = load(run)
    top = predictor.predict([image], top_k=3)[0]
    assert predictor.class_names == ["class_0", "class_1", "class_2"]
    assert abs(sum(p for _, p in top) - 1.0) < 1e-4


def final_weights(summary) -> dict:
    return load_file(str(Path(summary["run_dir"]) / "model.safetensors"))


def test_resume_continues_exactly(imagefolder, tmp_path):
    whole = fit(tiny_config(imagefolder, tmp_path / "a", **{"train.epochs": 2}))
    first = tiny_config(imagefolder, tmp_path / "b", **{"train.epochs": 2, "train.stop_after_steps": 6})
    paused = fit(first)
    assert paused["paused_at_step"] == 6 and "e001" in paused["checkpoint"] or "e000" in paused["checkpoint"]
    resumed = fit(tiny_config(imagefolder, tmp_path / "b", **{"train.epochs": 2}), resume="auto")
    assert resumed["history"][0]["epoch"] == 1 and "val/top1" in resumed["history"][0]
    a, b = final_weights(whole), final_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mid_epoch_resume_continues_exactly(imagefolder, tmp_path):
    whole = fit(tiny_config(imagefolder, tmp_path / "a", **{"train.epochs": 1}))
    cfg = tiny_config(imagefolder, tmp_path / "b", **{"train.epochs": 1, "train.checkpoint_every_steps": 2, "train.keep_last": 5})
    fit(cfg)
    ckpts = sorted((tmp_path / "b" / "run" / "checkpoints").glob("*s00000002.json"))
    assert ckpts, "a mid-epoch checkpoint at step 2"
    resumed = fit(tiny_config(imagefolder, tmp_path / "b", **{"train.epochs": 1, "train.run_name": "run"}), resume=str(ckpts[0]))
    a, b = final_weights(whole), final_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_max_minutes_ends_training_early_and_resume_finishes_it_exactly(imagefolder, tmp_path):
    """A run past its wall-clock limit still evaluates, tests and exports; its checkpoint resumes the schedule."""
    whole = fit(tiny_config(imagefolder, tmp_path / "a", **{"train.epochs": 2}))
    limited = fit(tiny_config(imagefolder, tmp_path / "b", **{"train.epochs": 2, "train.max_minutes": 1e-9}))
    assert limited["stopped_early"] and limited["steps"] == 1 < whole["steps"]
    assert [h["epoch"] for h in limited["history"]] == [1] and "val/top1" in limited["history"][0]
    assert 0 <= limited["test_top1"] <= 100 and (Path(limited["run_dir"]) / "model.safetensors").is_file()
    assert json.loads(Path(limited["checkpoint"]).read_text())["iteration"] == 1
    resumed = fit(tiny_config(imagefolder, tmp_path / "b", **{"train.epochs": 2}), resume="auto")
    assert not resumed["stopped_early"] and resumed["steps"] == whole["steps"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    a, b = final_weights(whole), final_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_negative_max_minutes_is_refused_by_name(tiny_cfg):
    tiny_cfg.train.max_minutes = -1.0
    with pytest.raises(ConfigError, match=r"train\.max_minutes=-1\.0: must be >= 0"):
        fit(tiny_cfg)


def test_fresh_run_refuses_to_overwrite_checkpoints(tiny_cfg):
    tiny_cfg.train.epochs = 1
    fit(tiny_cfg)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        fit(tiny_cfg)


def test_resume_with_other_classes_names_the_mismatch(tiny_cfg, tmp_path):
    from conftest import make_imagefolder

    tiny_cfg.train.epochs = 1
    fit(tiny_cfg)
    other = make_imagefolder(tmp_path / "other", classes=4)
    tiny_cfg.data.root = str(other)
    with pytest.raises(CheckpointError, match=r"class list does not match the data \(3 classes vs 4\)"):
        fit(tiny_cfg, resume="auto")


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tiny_cfg, monkeypatch):
    from finegrain.engine import checkpoint as ckpt
    from finegrain.methods.supervised import Supervised

    original, calls = Supervised.step, []

    def step_that_diverges(self, phase, batch):
        out = original(self, phase, batch)
        calls.append(1)
        if len(calls) == 8:  # second iteration of epoch 2
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(Supervised, "step", step_that_diverges)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) in phase 'train' at step 8; last good checkpoint: .*ckpt-e001"):
        fit(tiny_cfg)
    sidecar, problems = ckpt.newest_valid(Path(tiny_cfg.train.out_dir) / "run" / "checkpoints")
    assert sidecar is not None and "ckpt-e001" in sidecar.name and not problems


def test_nan_loss_skip_policy_goes_on(tiny_cfg, monkeypatch):
    from finegrain.methods.supervised import Supervised

    original = Supervised.step
    monkeypatch.setattr(Supervised, "step", lambda self, phase, batch: {**original(self, phase, batch), "loss": torch.tensor(float("inf"))} if self.epoch == 1 else original(self, phase, batch))
    tiny_cfg.train.nan_policy = "skip"
    summary = fit(tiny_cfg)
    assert summary["history"][1]["train/skipped_mean"] == 1.0


def test_cli_config_errors_are_one_line(tmp_path, imagefolder):
    result = run_cli("train", "--data", imagefolder, "optim.lrr=0.1")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown config key 'optim.lrr'" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    result = run_cli("train", "--config", bad)
    assert result.returncode == 2 and "bad.yaml: train.epochs must be int" in result.stderr
    result = run_cli("train", "--data", tmp_path / "nowhere", "model.name=test_resnet")
    assert result.returncode == 2 and "dataset root not found" in result.stderr and "nowhere" in result.stderr


def test_inspect_data_reports_corrupt_files(imagefolder):
    (imagefolder / "test" / "class_0" / "bad.jpg").write_bytes(b"nope")
    result = run_cli("inspect-data", "--format", "imagefolder", "--root", imagefolder)
    assert result.returncode == 1
    assert "train: 24 images, 3 classes" in result.stdout and "bad.jpg: unreadable" in result.stdout
