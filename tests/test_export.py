"""`finegrain export`: ONNX and TorchScript files that match PyTorch and carry their metadata."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from finegrain.engine.loop import fit
from finegrain.errors import FinegrainError
from finegrain.export import ExportError, export_checkpoint, exported_logits, read_metadata
from finegrain.inference import classifier_from_checkpoint


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import make_imagefolder

    base = tmp_path_factory.mktemp("export")
    cfg = tiny_config(make_imagefolder(base / "data"), base / "runs", **{"train.epochs": 1})
    return Path(fit(cfg)["run_dir"])


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_matches_pytorch_and_carries_metadata(tiny_run, tmp_path, fmt, suffix):
    out = tmp_path / f"model{suffix}"
    result = export_checkpoint(tiny_run, fmt, out)
    assert result.path == out and out.is_file() and result.max_abs_diff <= result.tolerance
    model, meta = classifier_from_checkpoint(tiny_run)
    # another batch size than the one traced: the batch axis is free
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(exported_logits(out, images), expected, atol=1e-4, rtol=1e-4)
    metadata = read_metadata(out)
    assert metadata["class_names"] == meta["class_names"] == ["class_0", "class_1", "class_2"]
    pre = metadata["preprocessing"]
    assert (pre["image_size"], pre["crop_ratio"], pre["mean"], pre["std"]) == (
        meta["image_size"], meta["crop_ratio"], meta["mean"], meta["std"])
    assert metadata["architecture"] == "test_resnet"


def test_export_refuses_a_model_that_differs(tiny_run, tmp_path, monkeypatch):
    import finegrain.export as export

    monkeypatch.setattr(export, "exported_logits", lambda path, images: np.zeros((images.shape[0], 3)) + 5.0)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"bad.onnx: onnx logits differ from PyTorch"):
        export_checkpoint(tiny_run, "onnx", out)
    assert not out.exists()


def test_export_cli_prints_parity_and_errors_are_one_line(tiny_run, tmp_path, capsys):
    from finegrain.cli import main

    out = tmp_path / "m.pt"
    assert main(["export", str(tiny_run), "--format", "torchscript", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "parity vs PyTorch" in stdout and "3 class names" in stdout and out.is_file()
    assert main(["export", str(tmp_path / "nothing")]) == 2
    stderr = capsys.readouterr().err
    assert "nothing" in stderr and stderr.strip().count("\n") == 0


def test_unknown_format_is_an_error(tiny_run):
    with pytest.raises(FinegrainError, match="unknown export format 'tflite'"):
        export_checkpoint(tiny_run, "tflite")
