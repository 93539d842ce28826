"""ZSKT, DAFL, DFQ, CMI and MAD: their parts, their steps and a tiny run of each."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from finegrain.datafree.ema import EmaCopy
from finegrain.datafree.memory_bank import InstanceContrast, MemoryBank
from finegrain.losses.attention_transfer import AttentionTransfer, spatial_attention
from finegrain.losses.datafree_priors import ActivationLoss, ClassBalanceLoss, OneHotLoss


# ------------------------------------------------------------------------------ attention transfer
def test_spatial_attention_is_unit_norm_and_resizes():
    maps = torch.randn(2, 5, 8, 8)
    a = spatial_attention(maps, size=(4, 4))
    assert a.shape == (2, 16)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))


def test_attention_transfer_zero_for_scaled_copy_and_positive_otherwise():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    at = AttentionTransfer()
    # Same attention up to activation scale and channel order: nothing to transfer.
    same = [3.0 * t[:, torch.randperm(t.shape[1])] for t in teacher]
    assert at(same, teacher).item() == pytest.approx(0.0, abs=1e-7)
    assert at([torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)], teacher).item() > 1e-4


def test_attention_transfer_resizes_student_maps_and_passes_gradient():
    teacher = [torch.randn(2, 8, 8, 8)]
    student = [torch.randn(2, 4, 4, 4, requires_grad=True)]
    loss = AttentionTransfer()(student, teacher)
    loss.backward()
    assert student[0].grad is not None and student[0].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="matching stages"):
        AttentionTransfer()(student, teacher * 2)


# ---------------------------------------------------------------------------------------- priors
def test_one_hot_minimal_for_saturated_logits_and_log_k_for_flat():
    k = 5
    confident = 100.0 * torch.eye(k)
    assert OneHotLoss()(confident).item() == pytest.approx(0.0, abs=1e-6)
    assert OneHotLoss()(torch.zeros(4, k)).item() == pytest.approx(math.log(k), rel=1e-6)


def test_activation_zero_for_zero_features_and_decreasing_with_magnitude():
    assert ActivationLoss()(torch.zeros(3, 7)).item() == 0.0
    v = torch.randn(3, 7)
    assert ActivationLoss()(2 * v) < ActivationLoss()(v) < 0


def test_class_balance_zero_when_batch_covers_classes_evenly():
    k = 4
    balanced = 50.0 * torch.eye(k)             # each class predicted once, confidently
    assert ClassBalanceLoss()(balanced).item() == pytest.approx(0.0, abs=1e-6)
    assert ClassBalanceLoss()(torch.zeros(3, k)).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = 50.0 * torch.eye(k)[[0, 0, 0, 0]]  # every sample the same class
    assert ClassBalanceLoss()(collapsed).item() == pytest.approx(math.log(k), rel=1e-4)


# ----------------------------------------------------------------------------- CMI memory bank
def test_memory_bank_is_fifo_and_normalizes():
    bank = MemoryBank(dim=2, size=3)
    assert bank.contents().shape == (0, 2)
    rows = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [-1.0, 0.0]])
    bank.add(rows[:2])
    assert torch.allclose(bank.contents(), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    bank.add(rows[2:])   # fills the last slot, then overwrites the oldest entry
    assert torch.allclose(bank.contents(), torch.tensor([[0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]]))
    state = bank.state_dict()
    assert {"features", "pointer", "count"} <= set(state)


def test_memory_bank_keeps_only_the_newest_when_a_batch_overflows():
    bank = MemoryBank(dim=1, size=2)
    bank.add(torch.tensor([[1.0], [-1.0], [2.0]]))
    assert torch.allclose(bank.contents(), torch.tensor([[-1.0], [1.0]]))


def test_instance_contrast_lowest_for_identical_views():
    torch.manual_seed(0)
    loss = InstanceContrast(temperature=0.1)
    z = torch.randn(8, 16)
    bank = nn.functional.normalize(torch.randn(32, 16), dim=1)
    identical = loss(z, z, bank)
    for scale in (0.3, 1.0, 3.0):
        assert identical < loss(z, z + scale * torch.randn_like(z), bank)
    # More negatives that resemble the anchors make the task harder.
    assert loss(z, z, None) <= identical


# ------------------------------------------------------------------------------------ MAD's EMA
def test_ema_copy_updates_by_the_set_momentum():
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EmaCopy(live, momentum=0.9)
    assert not any(p.requires_grad for p in ema.parameters())
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    live(torch.randn(5, 3))                 # moves BN running statistics and the batch counter
    ema.update(live)
    after, source = ema.module.state_dict(), live.state_dict()
    for key, old in before.items():
        if old.is_floating_point():
            assert torch.allclose(after[key], 0.9 * old + 0.1 * source[key]), key
        else:
            assert torch.equal(after[key], source[key]), key
    with pytest.raises(ValueError, match="momentum"):
        EmaCopy(live, momentum=1.5)
