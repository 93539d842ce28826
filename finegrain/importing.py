"""Bring a classifier trained elsewhere into finegrain: ``finegrain import-model WEIGHTS --arch NAME``.

A timm or torchvision state dict (safetensors, or a torch file read with ``weights_only=True`` so
that no pickled code ever runs) becomes a *model folder*: ``model.safetensors`` + ``model.json``,
the layout a finegrain run leaves for its final classifier. Everything that takes a run therefore
takes the folder (eval, predict, export, report, ``distill --teacher``, ``finegrain.load``).

Unlike a backbone's pretrained weights, an imported classifier must fit exactly: every tensor of
the architecture present with its shape, the head as wide as the class list. Anything else is a
one-line error naming the file and the first bad key, since a partly loaded teacher would teach
noise without anyone noticing. The folder is verified by loading it back the way every command
does and comparing one forward pass with the network it was written from.

This module sits beside ``finegrain.export``: it uses the models, the checkpoint files and the
inference loader, and nothing above them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

import finegrain
from finegrain.engine import checkpoint as ckpt
from finegrain.errors import CheckpointError, ConfigError
from finegrain.models.classifier import Classifier, check_architecture, timm_pretrained_cfg
from finegrain.models.pretrained import match_names, read_state_dict

#: ``model.json``'s ``method`` for a model that finegrain did not train.
IMPORTED = "imported"
#: used when neither the command line nor timm's pretrained config of the architecture says.
DEFAULT_PREPROCESSING = {"image_size": 224, "crop_ratio": 0.875,
                         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@dataclass
class ImportResult:
    folder: Path
    architecture: str
    class_names: list[str]
    preprocessing: dict
    matched_by: str
    max_abs_diff: float

    def as_dict(self) -> dict:
        return {"model": str(self.folder), "architecture": self.architecture, "classes": len(self.class_names),
                **self.preprocessing, "keys_matched_by": self.matched_by,
                "verified_forward_max_abs_diff": self.max_abs_diff}


def read_class_names(path: str | Path) -> list[str]:
    """One class name a line, in the order of the classifier's outputs; blank lines ignored."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"class list not found: {path}")
    names, seen = [], {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise ConfigError(f"{path}:{number}: class {name!r} repeats line {seen[name]}")
        seen[name] = number
        names.append(name)
    if not names:
        raise ConfigError(f"{path}: no class names (one per line)")
    return names


def preprocessing(arch: str, image_size: int | None = None, crop_ratio: float | None = None,
                  mean=None, std=None) -> dict:
    """What the model was trained to see: given values, else timm's pretrained config of ``arch``
    (the tag's own, e.g. ``vit_base_patch16_224.augreg_in21k`` normalizes with 0.5), else ImageNet's."""
    cfg = timm_pretrained_cfg(arch) or {}
    timm_values = {"image_size": (cfg.get("input_size") or [None])[-1], "crop_ratio": cfg.get("crop_pct"),
                   "mean": cfg.get("mean"), "std": cfg.get("std")}
    given = {"image_size": image_size, "crop_ratio": crop_ratio, "mean": mean, "std": std}
    chosen = {k: next(v for v in (given[k], timm_values[k], DEFAULT_PREPROCESSING[k]) if v is not None)
              for k in DEFAULT_PREPROCESSING}
    chosen["image_size"], chosen["crop_ratio"] = int(chosen["image_size"]), float(chosen["crop_ratio"])
    chosen["mean"], chosen["std"] = [float(v) for v in chosen["mean"]], [float(v) for v in chosen["std"]]
    for key in ("mean", "std"):
        if len(chosen[key]) != 3 or (key == "std" and min(chosen[key]) <= 0):
            raise ConfigError(f"--{key}: three values (R G B){', all > 0' if key == 'std' else ''}, got {chosen[key]}")
    if chosen["image_size"] < 1 or not 0 < chosen["crop_ratio"] <= 1:
        raise ConfigError(f"--image-size must be >= 1 and --crop-ratio in (0, 1], got {chosen['image_size']}, "
                          f"{chosen['crop_ratio']}")
    return chosen


def head_keys(net: torch.nn.Module) -> set[str]:
    head = net.get_classifier()
    return {f"{name}.{key}" for name, module in net.named_modules() if module is head for key in module.state_dict()}


def exact_state(path: Path, source: dict[str, torch.Tensor], classifier: Classifier) -> tuple[dict, str]:
    """The file's tensors under the network's names, each one of them fitting; else an error
    naming the file and the first key that does not."""
    net = classifier.net
    state, matched_by = match_names(source, net)
    target = net.state_dict()
    head = head_keys(net)
    for key, tensor in state.items():
        if key not in target:
            example = next(iter(target))
            raise CheckpointError(f"{path}: key {key!r} is not a tensor of {classifier.arch} (its names look like "
                                  f"{example!r}); wrong --arch?")
        if tuple(tensor.shape) != tuple(target[key].shape):
            if key in head and tensor.shape[:1] != target[key].shape[:1]:
                raise CheckpointError(f"{path}: key {key!r} has {tensor.shape[0]} outputs, but the class list "
                                      f"names {classifier.num_classes} classes")
            raise CheckpointError(f"{path}: key {key!r} has shape {tuple(tensor.shape)}, {classifier.arch} needs "
                                  f"{tuple(target[key].shape)}; wrong --arch?")
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path}: key {missing[0]!r} of {classifier.arch} is missing from the file "
                              f"({len(missing)} missing); wrong --arch, or a backbone without its head?")
    return state, matched_by


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_meta(classifier: Classifier, class_names: list[str], prep: dict, weights: Path, matched_by: str) -> dict:
    """The sidecar a finegrain run writes for its final classifier, plus where the weights came from."""
    return {
        "finegrain_version": finegrain.__version__,
        "method": IMPORTED,
        "architecture": classifier.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "classifier_prefix": "",
        **prep,
        "config": {"data": dict(prep), "model": {"name": classifier.arch}},
        "source": {"file": str(weights.resolve()), "sha256": file_digest(weights), "keys_matched_by": matched_by},
    }


def write_model_folder(folder: Path, classifier: Classifier, meta: dict) -> Path:
    """``model.safetensors`` then ``model.json`` (the sidecar last: no sidecar, no model)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = folder / "model.safetensors"
    ckpt.save_tensors(tensors, classifier.state_dict())
    meta = dict(meta, format_version=ckpt.FORMAT_VERSION, files={"tensors": tensors.name},
                sizes={"tensors": tensors.stat().st_size})
    ckpt.write_json(folder / "model.json", meta)
    return folder / "model.json"


@torch.no_grad()
def verify_folder(folder: Path, classifier: Classifier, image_size: int) -> float:
    """Load the folder as every command does; its logits must be the network's, and finite."""
    from finegrain.inference import load

    loaded = load(folder).model
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    expected, got = classifier.eval()(images), loaded(images)
    diff = float((expected - got).abs().max())
    if got.shape != (2, classifier.num_classes) or not torch.isfinite(got).all() or diff > 1e-5:
        raise CheckpointError(f"{folder / 'model.json'}: the written model does not reproduce the imported "
                              f"network (logits {tuple(got.shape)}, max |diff| {diff:.3g}, finite: "
                              f"{bool(torch.isfinite(got).all())})")
    return diff


def default_folder(weights: Path) -> Path:
    """``weights/resnet50.safetensors`` -> ``weights/resnet50-finegrain/``."""
    return weights.with_name(weights.name.split(".")[0] + "-finegrain")


def import_model(weights: str | Path, arch: str, classes: str | Path | list[str], out: str | Path | None = None, *,
                 image_size: int | None = None, crop_ratio: float | None = None, mean=None, std=None,
                 overwrite: bool = False) -> ImportResult:
    """Write and verify a finegrain model folder for the classifier in ``weights``.

    ``classes`` is a class-list file (one name a line) or the names themselves, in output order.
    """
    weights = Path(weights)
    class_names = list(classes) if isinstance(classes, (list, tuple)) else read_class_names(classes)
    folder = Path(out) if out else default_folder(weights)
    if (folder / "model.json").exists() and not overwrite:
        raise CheckpointError(f"{folder / 'model.json'} exists; pass --force to replace it")
    prep = preprocessing(check_architecture(arch), image_size, crop_ratio, mean, std)
    source = read_state_dict(weights)  # refuses pickled code, naming the file
    classifier = Classifier(arch, len(class_names))
    state, matched_by = exact_state(weights, source, classifier)
    classifier.net.load_state_dict(state, strict=False)  # strict in exact_state, but for BN step counters
    classifier.eval()
    write_model_folder(folder, classifier, model_meta(classifier, class_names, prep, weights, matched_by))
    diff = verify_folder(folder, classifier, prep["image_size"])
    return ImportResult(folder, arch, class_names, prep, matched_by, diff)
