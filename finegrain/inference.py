"""Use a trained model: ``finegrain.load(path).predict(images)``.

``path`` may be a run folder (its final ``model.json``, else its newest checkpoint), a checkpoint
sidecar (``*.json``) or its ``*.safetensors``. Architecture, class names and preprocessing come
from the sidecar, so nothing else needs to be known about how the model was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
from torchvision.transforms.v2 import functional as TF

from finegrain.data.images import load_rgb
from finegrain.data.transforms import eval_transform
from finegrain.engine import checkpoint as ckpt
from finegrain.errors import CheckpointError
from finegrain.models import Classifier


def resolve_checkpoint(path: str | Path, *, training: bool = False) -> Path:
    """The sidecar a user means by ``path``.

    ``training=True`` asks for a training checkpoint (method state: generator, heads, queues) of a
    run folder, never its final ``model.json``, which holds the classifier alone.
    """
    path = Path(path)
    if path.is_dir():
        if not training and (path / "model.json").is_file():
            return path / "model.json"
        for folder in (path / "checkpoints", path):
            found = [p for p in ckpt.list_checkpoints(folder) if p.name != "model.json"]
            if found:
                return found[0]
        wanted = "training checkpoint" if training else "model.json or checkpoint"
        raise CheckpointError(f"{path}: no {wanted} inside (looked in checkpoints/)")
    if path.suffix == ".safetensors":
        path = path.with_name(path.name.removesuffix(".safetensors") + ".json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def classifier_from_checkpoint(path: str | Path) -> tuple[Classifier, dict]:
    """Rebuild the deployable classifier of a checkpoint, verifying names and shapes."""
    meta, tensors, _ = ckpt.load_checkpoint(resolve_checkpoint(path), with_state=False)
    prefix = meta.get("classifier_prefix", "")
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    model = Classifier(meta["architecture"], len(meta["class_names"]))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{meta['_path']}: weights do not fit {meta['architecture']} with "
                              f"{len(meta['class_names'])} classes (missing {missing[:2]}, unexpected {unexpected[:2]})")
    model.eval()
    return model, meta


class Predictor:
    """A classifier with its class names and preprocessing."""

    def __init__(self, model: Classifier, meta: dict, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)
        self.class_names: list[str] = list(meta["class_names"])
        self.image_size: int = meta["image_size"]
        self.transform = eval_transform(meta["image_size"], meta["crop_ratio"], meta["mean"], meta["std"])

    def preprocess(self, image) -> torch.Tensor:
        """A path, a PIL image or a uint8 CHW tensor -> normalized CHW float tensor."""
        if isinstance(image, (str, Path)):
            image = load_rgb(str(image))
        if not isinstance(image, torch.Tensor):
            image = TF.pil_to_tensor(image.convert("RGB"))
        return self.transform(image)

    @torch.no_grad()
    def probabilities(self, images: Sequence) -> torch.Tensor:
        batch = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        return self.model(batch).float().softmax(1).cpu()

    def predict(self, images: Iterable, top_k: int = 5, batch_size: int = 32) -> list[list[tuple[str, float]]]:
        """Top-k (class name, probability) for each image."""
        images = [images] if isinstance(images, (str, Path)) else list(images)
        results = []
        for start in range(0, len(images), batch_size):
            probs = self.probabilities(images[start:start + batch_size])
            values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
            for vals, idxs in zip(values.tolist(), indices.tolist()):
                results.append([(self.class_names[i], v) for i, v in zip(idxs, vals)])
        return results


def load(path: str | Path, device: str = "cpu") -> Predictor:
    """Load a trained model for prediction: ``finegrain.load("runs/x").predict(["a.jpg"])``."""
    model, meta = classifier_from_checkpoint(path)
    return Predictor(model, meta, device)
