"""LeNet-5 (with BatchNorm) in timm's registry: ``lenet5`` and ``lenet5_half``.

The data-free distillation papers measure themselves first on MNIST with a LeNet-5 teacher and a
LeNet-5-half student (DAFL, Chen et al. 2019; DFAD, Fang et al. 2019, Table 2). That setting
trains in minutes on a CPU, so it is where finegrain shows that its data-free methods learn.
Registering the two networks with timm's ``register_model`` makes them ordinary architecture
names: ``timm.create_model("lenet5", num_classes=10)``, ``model.name=lenet5``,
``distill.student=lenet5_half``, once ``finegrain.models`` is imported.

Layout (input 32×32, the papers' padded MNIST)::

    conv5×5 6 → BN → ReLU → maxpool2      stage1: 6 × 14 × 14  (reduction 2)
    conv5×5 16 → BN → ReLU → maxpool2     stage2: 16 × 5 × 5   (reduction 4)
    conv5×5 120 → BN → ReLU               stage3: 120 × 1 × 1  (the whole 5×5 map: reduction 32)
    head: FC 120→84 → ReLU → (dropout) → FC 84→classes

``lenet5_half`` halves every width (3, 8, 60, 42). Why these choices:

* BatchNorm after every conv: the BatchNorm-statistics methods (DeepInversion, DFKD-FGVC's L_BN,
  DFQ, CMI) read the teacher's running statistics, and a plain LeNet-5 has none.
* The 120-d output of the last conv is the *feature* (``num_features`` = 120, what
  ``forward_head(pre_logits=True)`` returns) and the two FC layers are the classifier
  (``get_classifier()``), as DAFL's LeNet-5 splits it: its activation loss reads that 120-d
  vector. finegrain's :class:`~finegrain.models.classifier.Classifier` relies on the pooled
  features having ``num_features`` values.
* ``feature_info`` lists the three conv stages with their nominal reductions 2, 4 and 32, so
  MHAD / attention transfer (stages with reduction >= 4) pair stage2 and stage3 of teacher and
  student; ``forward_intermediates`` returns all three maps.
* ``forward_head`` average-pools the last map before the head: at 32 px it is 1×1 (a no-op); at
  larger sizes the network still runs.
"""

from __future__ import annotations

import torch
from torch import nn
from timm.models import register_model

__all__ = ["LeNet5"]

FULL_WIDTHS = (6, 16, 120, 84)
MIN_SIZE = 32  # smaller inputs leave the third 5×5 conv less than a 5×5 map


def _conv_block(in_chs: int, out_chs: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(in_chs, out_chs, 5, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class LeNet5(nn.Module):
    """LeNet-5 with BatchNorm, exposing the parts of timm's model interface finegrain uses."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, widths=FULL_WIDTHS, drop_rate: float = 0.0):
        super().__init__()
        c1, c2, c3, hidden = widths
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.stage1 = _conv_block(in_chans, c1, pool=True)
        self.stage2 = _conv_block(c1, c2, pool=True)
        self.stage3 = _conv_block(c2, c3, pool=False)
        self.num_features = c3
        self.head_hidden_size = c3
        self.hidden = hidden
        self.feature_info = [
            {"num_chs": c1, "reduction": 2, "module": "stage1"},
            {"num_chs": c2, "reduction": 4, "module": "stage2"},
            {"num_chs": c3, "reduction": 32, "module": "stage3"},
        ]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = self._make_head(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_head(self, num_classes: int) -> nn.Sequential:
        """FC → ReLU → dropout → FC; with ``num_classes=0`` the identity (pooled features out)."""
        if num_classes <= 0:
            return nn.Sequential()
        return nn.Sequential(nn.Linear(self.num_features, self.hidden), nn.ReLU(inplace=True),
                             nn.Dropout(self.drop_rate), nn.Linear(self.hidden, num_classes))

    # ----------------------------------------------------------------- timm model interface
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        """A fresh head (both FC layers) for ``num_classes`` classes; 0 removes it."""
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)

    def _check_size(self, x: torch.Tensor) -> None:
        if x.shape[-1] < MIN_SIZE or x.shape[-2] < MIN_SIZE:
            raise ValueError(f"LeNet-5 needs inputs of at least {MIN_SIZE}×{MIN_SIZE} pixels, got "
                             f"{x.shape[-2]}×{x.shape[-1]} (set data.image_size=32)")

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(last map, [stage1, stage2, stage3 maps])`` in one pass."""
        self._check_size(x)
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        s3 = self.stage3(s2)
        return s3, [s1, s2, s3]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        return self.stage3(self.stage2(self.stage1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(widths, pretrained: bool = False, **kwargs) -> LeNet5:
    if pretrained:
        raise ValueError("lenet5/lenet5_half have no pretrained weights; train one (finegrain train "
                         "model.name=lenet5) or pass a local file with --pretrained-file")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only"):
        value = kwargs.pop(key, None)
        if key == "features_only" and value:
            raise ValueError("lenet5: features_only is not supported; use forward_intermediates")
    allowed = {"num_classes", "in_chans", "drop_rate"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"lenet5: unsupported arguments {sorted(unknown)} (takes {sorted(allowed)})")
    return LeNet5(widths=widths, **kwargs)


@register_model
def lenet5(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5 with BatchNorm: conv widths 6, 16, 120, FC 84 (DAFL/DFAD MNIST teacher)."""
    return _create(FULL_WIDTHS, pretrained, **kwargs)


@register_model
def lenet5_half(pretrained: bool = False, **kwargs) -> LeNet5:
    """LeNet-5-half: every width halved, 3, 8, 60, FC 42 (DAFL/DFAD MNIST student)."""
    return _create(tuple(w // 2 for w in FULL_WIDTHS), pretrained, **kwargs)
