"""Export a trained classifier to ONNX or TorchScript, checked against PyTorch before it is handed out.

The exported file carries what a deployment needs besides weights: class names and the
preprocessing (image size, crop ratio, mean, std) — ONNX in ``metadata_props``, TorchScript in an
extra file ``finegrain.json`` — so nothing has to be copied by hand from the training config.
The model's input is a normalized float batch ``N x 3 x S x S`` (batch size free), its output the
logits. An export whose outputs differ from PyTorch's on random input beyond the tolerance is
deleted and reported, never left for someone to deploy.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import finegrain
from finegrain.errors import ExportError
from finegrain.inference import classifier_from_checkpoint

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
#: the TorchScript extra file holding the metadata.
EXTRA_FILE = "finegrain.json"
#: |exported - pytorch| must stay below ATOL + RTOL * max|pytorch logits|.
ATOL, RTOL = 1e-4, 1e-4


class _Quiet(warnings.catch_warnings):
    """torch announces that its legacy ONNX exporter and TorchScript are deprecated; both still
    work in torch 2.14, and the parity check below is what vouches for the result."""

    def __enter__(self):
        result = super().__enter__()
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return result


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    metadata: dict


def export_metadata(meta: dict) -> dict:
    """What a deployment needs to feed the model and name its outputs."""
    return {
        "class_names": list(meta["class_names"]),
        "preprocessing": {
            "image_size": meta["image_size"], "crop_ratio": meta["crop_ratio"],
            "resize_shorter_side_to": int(round(meta["image_size"] / meta["crop_ratio"])),
            "mean": list(meta["mean"]), "std": list(meta["std"]),
            "input": "RGB, resize shorter side, center crop image_size, scale to [0,1], (x - mean) / std, NCHW float32",
        },
        "architecture": meta["architecture"],
        "method": meta.get("method"),
        "finegrain_version": finegrain.__version__,
        "output": "logits (softmax gives probabilities)",
    }


def _onnx_props(metadata: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items() if v is not None}


def export_onnx(model: torch.nn.Module, metadata: dict, path: Path, opset: int = 17) -> None:
    """TorchScript-based ONNX exporter (``dynamo=False``): fast and dependable for timm CNNs."""
    import onnx

    size = metadata["preprocessing"]["image_size"]
    example = torch.zeros(2, 3, size, size)
    with _Quiet():
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    for key, value in _onnx_props(metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_torchscript(model: torch.nn.Module, metadata: dict, path: Path) -> None:
    size = metadata["preprocessing"]["image_size"]
    with torch.no_grad(), _Quiet():
        # check_trace re-runs the model to compare; parity() does that against the saved file instead
        traced = torch.jit.trace(model, torch.zeros(2, 3, size, size), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(metadata)})


def read_metadata(path: str | Path) -> dict:
    """The metadata of an exported ONNX or TorchScript file, as ``export_metadata`` wrote it."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return {k: _maybe_json(v) for k, v in props.items()}
    extra = {EXTRA_FILE: ""}
    with _Quiet():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[EXTRA_FILE])


def _maybe_json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def exported_logits(path: Path, images: torch.Tensor) -> np.ndarray:
    """Run an exported file the way a deployment would: ONNX Runtime or ``torch.jit.load``."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"images": images.numpy()})[0]
    with _Quiet():
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(images).numpy()


def parity(path: Path, model: torch.nn.Module, image_size: int, batch: int = 3, seed: int = 0) -> tuple[float, float]:
    """(max |exported - PyTorch|, tolerance) on a random batch of another size than the export's."""
    images = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = model(images).numpy()
    got = exported_logits(path, images)
    if got.shape != reference.shape:
        raise ExportError(f"{path}: exported model gives logits of shape {got.shape}, PyTorch {reference.shape}")
    tolerance = ATOL + RTOL * float(np.abs(reference).max())
    return float(np.abs(got - reference).max()), tolerance


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path | None = None) -> ExportResult:
    """Export the classifier of a run/checkpoint and verify it; returns where and how close."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    model, meta = classifier_from_checkpoint(checkpoint)
    model = model.cpu().eval()
    path = Path(out) if out else Path(meta["_path"]).with_suffix(FORMATS[fmt])
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = export_metadata(meta)
    (export_onnx if fmt == "onnx" else export_torchscript)(model, metadata, path)
    diff, tolerance = parity(path, model, meta["image_size"])
    if not diff <= tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(f"{path}: {fmt} logits differ from PyTorch by {diff:.3g} (tolerance {tolerance:.3g}); "
                          f"export removed")
    return ExportResult(path, fmt, diff, tolerance, metadata)
