"""benchmarks/compression_probe.py: the measurements are what they say (no training here)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks import compression_probe as probe


def test_stages_of_timm_efficientnet_parameter_names():
    assert probe.stage_of("conv_stem.weight") == "stem" and probe.stage_of("bn1.weight") == "stem"
    assert probe.stage_of("blocks.3.1.conv_pw.weight") == "blocks.3"
    assert probe.stage_of("conv_head.weight") == "head" and probe.stage_of("bn2.bias") == "head"
    assert probe.stage_of("classifier.weight") == "classifier"


def test_weight_change_is_relative_per_stage():
    start = nn.ModuleDict({"conv_stem": nn.Linear(2, 2, bias=False), "classifier": nn.Linear(2, 2, bias=False)})
    moved = nn.ModuleDict({"conv_stem": nn.Linear(2, 2, bias=False), "classifier": nn.Linear(2, 2, bias=False)})
    with torch.no_grad():
        start["conv_stem"].weight.fill_(1.0)
        start["classifier"].weight.fill_(2.0)
        moved["conv_stem"].weight.fill_(1.0)
        moved["classifier"].weight.fill_(3.0)
    change = probe.weight_change(moved, start)
    assert change["stem"] == 0.0 and change["classifier"] == pytest.approx(0.5)


def test_agreement_kl_confidence_and_top1():
    teacher = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    same = probe.compare({"teacher": teacher, "student": teacher.clone(), "labels": torch.tensor([0, 1, 1, 1]), "bn": [2.0, 4.0]})
    assert same["agreement"] == 100.0 and same["kl_teacher_student"] == pytest.approx(0.0, abs=1e-6)
    assert same["teacher_top1"] == same["student_top1"] == 75.0 and same["bn_loss"] == 3.0 and same["teacher_classes"] == 2
    flipped = probe.compare({"teacher": teacher, "student": teacher.flip(1), "labels": None, "bn": [1.0]})
    assert flipped["agreement"] == 0.0 and flipped["kl_teacher_student"] > 3 and "student_top1" not in flipped
