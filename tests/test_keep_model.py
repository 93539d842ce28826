"""``train.keep_model``: the exported model is the last epoch's, or the best epoch's by val, never chosen on test."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import make_imagefolder, tiny_config
from finegrain.config import load_config
from finegrain.engine import loop
from finegrain.engine.loop import fit
from finegrain.errors import ConfigError


def scripted_val(monkeypatch, scores):
    """Val top-1 per evaluation as given (the real evaluation on any other split)."""
    real, calls = loop.evaluate, iter(scores)

    def evaluate(model, loader, num_classes, **kwargs):
        result = real(model, loader, num_classes, **kwargs)
        return {**result, "top1": next(calls)} if loader.dataset.name == "val" else result

    monkeypatch.setattr(loop, "evaluate", evaluate)


def checkpoint_classifier(run: Path, epoch: int) -> dict:
    """The classifier tensors of the epoch-end checkpoint of ``epoch``."""
    sidecar = next(p for p in (run / "checkpoints").glob(f"ckpt-e{epoch:03d}-*.json"))
    meta = json.loads(sidecar.read_text())
    prefix = meta["classifier_prefix"]
    tensors = load_file(str(run / "checkpoints" / meta["files"]["tensors"]))
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


@pytest.mark.parametrize("keep, expected_epoch", [("best", 2), ("last", 3)])
def test_exported_model_is_the_kept_epoch(imagefolder, tmp_path, monkeypatch, keep, expected_epoch):
    scripted_val(monkeypatch, [40.0, 90.0, 60.0])  # epoch 2 is the best by val
    cfg = tiny_config(imagefolder, tmp_path / "runs", **{"train.epochs": 3, "train.keep_last": 5,
                                                          "train.keep_model": keep})
    summary = fit(cfg)
    run = Path(summary["run_dir"])
    exported = load_file(str(run / "model.safetensors"))
    assert same(exported, checkpoint_classifier(run, expected_epoch))
    assert not same(exported, checkpoint_classifier(run, 5 - expected_epoch))  # the other candidate
    assert summary["kept_epoch"] == expected_epoch
    model_json = json.loads((run / "model.json").read_text())
    assert model_json["epoch"] == expected_epoch and model_json["keep_model"] == keep


def test_best_from_val_carved_out_of_train(tmp_path, monkeypatch):
    root = make_imagefolder(tmp_path / "data", counts={"train": 8, "test": 3})  # no val split on disk
    scripted_val(monkeypatch, [70.0, 10.0])
    summary = fit(tiny_config(root, tmp_path / "runs", **{"train.epochs": 2, "train.keep_last": 5,
                                                          "train.keep_model": "best", "data.val_fraction": 0.25}))
    assert summary["kept_epoch"] == 1
    assert same(load_file(str(Path(summary["run_dir"]) / "model.safetensors")),
                checkpoint_classifier(Path(summary["run_dir"]), 1))


def test_best_refuses_the_test_split_as_val(imagefolder, tmp_path):
    from finegrain import methods

    cfg = load_config(None, ["train.keep_model=best", "data.val_split=test"])
    with pytest.raises(ConfigError, match=r"^train.keep_model=best: data.val_split='test' is the test split"):
        methods.bind_config(cfg)
    cfg = tiny_config(imagefolder, tmp_path / "runs", **{"train.keep_model": "best", "data.val_split": "test"})
    with pytest.raises(ConfigError, match="is the test split"):
        fit(cfg)
    assert not (tmp_path / "runs").exists()


def test_best_refuses_a_run_without_val(tmp_path):
    root = make_imagefolder(tmp_path / "data", counts={"train": 8, "test": 3})
    cfg = tiny_config(root, tmp_path / "runs", **{"train.keep_model": "best"})
    with pytest.raises(ConfigError, match=r"train.keep_model=best needs a validation split: .* data.val_fraction is 0"):
        fit(cfg)
