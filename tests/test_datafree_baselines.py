"""ZSKT, DAFL, DFQ, CMI and MAD: their parts, their steps and a tiny run of each."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from finegrain.methods.mad import moving_average
from finegrain.datafree.generator_objectives import SynthesisWeights
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
    bank = MemoryBank(capacity=3, dim=2)
    assert bank.embeddings().shape == (0, 2)
    rows = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [-1.0, 0.0]])
    bank.add(rows[:2])
    assert torch.allclose(bank.embeddings(), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    bank.add(rows[2:])   # fills the last slot, then overwrites the oldest entry
    assert torch.allclose(bank.embeddings(), torch.tensor([[0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]]))
    state = bank.state_dict()
    assert {"features", "pointer"} <= set(state) and len(bank) == 3


def test_memory_bank_keeps_only_the_newest_when_a_batch_overflows():
    bank = MemoryBank(capacity=2, dim=1)
    bank.add(torch.tensor([[1.0], [-1.0], [2.0]]))
    assert torch.allclose(bank.embeddings(), torch.tensor([[-1.0], [1.0]]))


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


def test_random_crop_view_identity_at_full_scale_and_differentiable():
    from finegrain.data.views import random_crop_view

    images = torch.randn(3, 3, 8, 8, requires_grad=True)
    assert torch.allclose(random_crop_view(images, scale=(1.0, 1.0), flip=False), images, atol=1e-5)
    crops = random_crop_view(images, scale=(0.25, 0.25), flip=True)
    assert crops.shape == images.shape and not torch.allclose(crops, images)
    crops.sum().backward()
    assert images.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ MAD's EMA
def test_mads_moving_average_updates_by_the_set_momentum():
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = moving_average(live, momentum=0.9)
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
        moving_average(live, momentum=1.5)


# ================================================================ the methods on tiny models
from finegrain import methods  # noqa: E402
from finegrain.engine.loop import fit  # noqa: E402

from conftest import make_imagefolder, tiny_config  # noqa: E402

BASELINES = ["zskt", "dafl", "dfq", "cmi", "mad"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A test_resnet teacher trained one epoch with the supervised method on the tiny fixture."""
    root = tmp_path_factory.mktemp("baselines")
    data = make_imagefolder(root / "data")
    summary = fit(tiny_config(data, root / "runs", train__epochs=1, train__run_name="teacher"))
    return data, root, summary["run_dir"]


def baseline_config(teacher_run, name, **overrides):
    data, root, teacher = teacher_run
    settings = dict(method__name=name, train__epochs=1, train__run_name=name, train__iterations_per_epoch=2,
                    distill__teacher=teacher, distill__student="test_resnet", distill__generator_steps=1,
                    distill__student_steps=1, generator__noise_dim=16, cmi__bank_size=6)
    cfg = tiny_config(data, root / "runs", **{**settings, **overrides})
    cfg.generator.channels = [32, 16, 16, 8, 8]
    return cfg


def build(teacher_run, name, **overrides):
    cfg = baseline_config(teacher_run, name, **overrides)
    info = methods.get(name)
    info.cls.prepare_config(cfg)
    torch.manual_seed(0)
    method = methods.create(name, cfg, info.cls.class_names_from_config(cfg), num_train=0, world_size=1)
    method.train()
    return method, method.configure_phases(4, 2)


def run_phase(method, phase):
    out = method.step(phase.name)
    phase.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    phase.optimizer.step()
    method.on_optimizer_step(phase.name)
    return out


def snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def synthesizer_parts(method) -> dict:
    synth = method.synthesizer
    parts = {"generator": synth.generator}
    for name in ("head", "ema"):
        if hasattr(synth, name):
            parts[name] = getattr(synth, name)
    return parts


@pytest.mark.parametrize("name", BASELINES)
def test_registered_with_description_and_paper(name):
    info = methods.get(name)
    assert info.description and info.paper
    assert not info.cls.needs_train_data


@pytest.mark.parametrize("name", BASELINES)
def test_each_step_changes_only_what_it_trains(teacher_run, name):
    """Generator step: the generator (+ CMI's head, MAD's EMA copy), not the student or teacher.
    Student step: the student alone; it learns from normalized images of the teacher's size."""
    method, (generator_phase, student_phase) = build(teacher_run, name)
    student, teacher, parts = snapshot(method.student), snapshot(method.teacher), synthesizer_parts(method)
    before = {k: snapshot(m) for k, m in parts.items()}
    assert torch.isfinite(run_phase(method, generator_phase)["loss"])
    assert not changed(student, method.student), "the student critic must not change"
    assert not changed(teacher, method.teacher)
    for key, module in parts.items():
        assert changed(before[key], module), f"{key} did not change in a generator step"

    student, parts_before = snapshot(method.student), {k: snapshot(m) for k, m in parts.items()}
    out = run_phase(method, student_phase)
    assert changed(student, method.student) and out["kd"] > 0
    assert not changed(teacher, method.teacher)
    for key, module in parts.items():
        assert not changed(parts_before[key], module), f"{key} changed in a student step"
    images = method.synthesizer.sample(6)                 # CMI: from its pool
    assert images.shape == (6, 3, 32, 32) and images.std() > 0
    low, high = method.synthesizer.normalizer.bounds()
    assert (images >= low - 1e-4).all() and (images <= high + 1e-4).all()


def test_no_gradient_reaches_the_teacher_and_it_stays_in_eval_mode(teacher_run):
    method, (generator_phase, _) = build(teacher_run, "dfq")
    method.step("generator")["loss"].backward()
    assert not method.teacher.training
    assert all(p.grad is None for p in method.teacher.parameters())


def test_dafl_generator_ignores_the_student(teacher_run):
    method, (generator_phase, _) = build(teacher_run, "dafl")
    method.step("generator")["loss"].backward()
    assert all(p.grad is None for p in method.student.parameters())
    assert set(method.step("generator")) == {"loss", "onehot", "activation", "balance"}


def test_zskt_student_loss_includes_attention_transfer(teacher_run):
    method, _ = build(teacher_run, "zskt", zskt__attention_weight=0.0)
    out = method.step("student")
    assert out["at"] > 0 and torch.allclose(out["loss"], out["kd"])
    assert len(method.student_stages) == len(method.teacher_stages) >= 1


def test_mad_ema_generator_follows_by_the_set_momentum(teacher_run):
    method, (generator_phase, _) = build(teacher_run, "mad", mad__momentum=0.75)
    synth = method.synthesizer
    ema_before = {k: v.clone() for k, v in synth.ema.module.named_parameters()}
    run_phase(method, generator_phase)
    live = dict(synth.generator.named_parameters())
    for key, old in ema_before.items():
        expected = 0.75 * old + 0.25 * live[key].detach()
        assert torch.allclose(synth.ema.module.get_parameter(key), expected, atol=1e-6), key
    synth.images_made = 0
    assert synth.sample(8).shape[0] == 8 and synth.images_made == 8   # 4 live + 4 from the EMA copy


def test_cmi_fills_pool_and_bank_each_generator_step(teacher_run):
    method, (generator_phase, _) = build(teacher_run, "cmi")
    synth = method.synthesizer
    with pytest.raises(RuntimeError, match="empty"):
        synth.sample(2)
    out = run_phase(method, generator_phase)
    assert len(synth.pool) == 4 and len(synth.bank) == 4 and out["contrast"] > 0
    run_phase(method, generator_phase)
    assert len(synth.pool) == 8 and len(synth.bank) == 6      # bank_size 6: FIFO from here on
    assert torch.allclose(synth.bank.embeddings().norm(dim=1), torch.ones(6))


@pytest.mark.parametrize("name", BASELINES)
def test_tiny_end_to_end_distill_through_the_cli(teacher_run, name, capsys):
    from finegrain.cli import main
    from finegrain.inference import classifier_from_checkpoint

    data, root, teacher = teacher_run
    code = main(["distill", "--config", "datafree_paper", "--teacher", str(teacher), "--student", "test_resnet",
                 "--method", name,
                 "--eval-data", str(data), "--out", str(root / "cli"), "--name", name, "--epochs", "1",
                 "train.accelerator=cpu", "train.iterations_per_epoch=1", "distill.generator_steps=1",
                 "distill.student_steps=1", "data.batch_size=4", "data.num_workers=0", "generator.noise_dim=16",
                 "generator.channels=[32,16,16,8,8]", *(["cmi.bank_size=6"] if name == "cmi" else [])])
    assert code == 0
    student, meta = classifier_from_checkpoint(root / "cli" / name)
    assert meta["method"] == name and meta["architecture"] == "test_resnet"
    assert student(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert name in listing and methods.get(name).paper in listing


def test_weight_sections_hold_exactly_the_terms_a_method_uses(teacher_run):
    from finegrain.config import Config
    from finegrain.datafree.generator_objectives import weights_from_section
    from finegrain.method_config import weights_config
    from finegrain.errors import ConfigError

    cfg = Config()
    assert weights_from_section(cfg.dafl) == SynthesisWeights(onehot=1.0, activation=0.1, balance=5.0)
    with pytest.raises(ConfigError, match="dafl.bn"):
        cfg.set("dafl.bn", 1.0)
    with pytest.raises(ValueError, match="unknown synthesis weights"):
        weights_config("X", typo=1.0)
    method, _ = build(teacher_run, "dfq", dfq__bn=0.0)          # a zero weight: the term is not computed
    assert "bn" not in method.step("generator") and method.priors.bn_hooks is None
