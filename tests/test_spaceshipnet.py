"""SpaceshipNet: channel-wise feature exchange in the generator's maps, the activation-region
constraint (CAM and multi-scale Grad-CAM), both phases' losses, a tiny run, an exact resume and bad
settings (docs/methods.md, SpaceshipNet)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import exported_models_equal
from finegrain import methods
from finegrain.config import load_config
from finegrain.datafree.feature_exchange import exchange_channels, exchanging_at, reversed_partners
from finegrain.engine.loop import fit
from finegrain.errors import ConfigError
from finegrain.losses.activation_region import (cam_constraint, class_activation_maps, grad_cams, gradcam_constraint,
                                                predicted_class_score)
from finegrain.methods.spaceshipnet import SpaceshipNet, check_cam_head
from finegrain.models.generator import AttentionGenerator, feature_layers
from finegrain.models.upsample_generator import UpsampleGenerator
from test_datafree import build_method, distill_config, one_step, snapshot, teacher  # noqa: F401  (module fixture)
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)


def build(teacher, tmp_path, **overrides):
    method, phases = build_method(distill_config(teacher, tmp_path, method="spaceshipnet", **overrides))
    method.train()  # as the loop does every epoch
    return method, phases


def test_registered_as_a_data_free_method_with_its_own_section():
    info = methods.get("spaceshipnet")
    assert info.cls is SpaceshipNet and not info.cls.needs_train_data
    assert "2302.14290" in info.paper and "exchange" in info.description
    assert methods.sections_of("spaceshipnet")[-3:] == ("distill", "generator", "spaceshipnet")


# --------------------------------------------------------------------------- feature exchange
def test_exchange_takes_half_the_channels_from_the_partner_and_keeps_the_rest():
    torch.manual_seed(0)
    features = torch.randn(5, 6, 3, 3)
    mixed = exchange_channels(features)
    assert mixed.shape == features.shape and not torch.equal(mixed, features)
    partners = reversed_partners(5)
    assert partners.tolist() == [4, 3, 2, 1, 0]
    for i, j in enumerate(partners.tolist()):
        own = (mixed[i] == features[i]).flatten(1).all(1)
        theirs = (mixed[i] == features[j]).flatten(1).all(1)
        assert bool((own | theirs).all())  # every channel is one of the two samples', whole
        if i != j:
            assert int(theirs.sum()) == 3 and int(own.sum()) == 3  # ⌊6/2⌋ taken, the rest kept
    assert torch.equal(mixed[2], features[2])  # the odd batch's middle sample is its own partner
    assert torch.equal(exchange_channels(features, torch.arange(5)), features)  # with itself: identity
    flat = torch.randn(4, 8)  # any B×C×… shape
    assert exchange_channels(flat).shape == flat.shape


@pytest.mark.parametrize("generator, maps", [(AttentionGenerator(32, 8, (16, 8, 8, 4, 4), attention_lambda=0.0), 5),
                                             (UpsampleGenerator(32, 8, (8, 4)), 3)])
def test_a_hook_on_a_feature_map_exchanges_it_and_leaves_the_generator_as_it_was(generator, maps):
    layers = feature_layers(generator)
    assert len(layers) == maps and layers[0] is generator.bn
    generator.eval()  # BatchNorm by running statistics: the same z gives the same image
    z = torch.randn(4, 8)
    with torch.no_grad():
        plain = generator(z)
        for layer in layers:
            with exchanging_at(layer):
                exchanged = generator(z)
            assert exchanged.shape == plain.shape and not torch.equal(exchanged, plain)
        assert torch.equal(generator(z), plain)  # the hook is gone
        assert not any(layer._forward_hooks for layer in layers)


def test_student_batches_are_exchanged_with_probability_p_and_synthesis_never(teacher, tmp_path):
    method, phases = build(teacher, tmp_path, **{"spaceshipnet.exchange_prob": 1.0})
    synth = method.synthesizer
    assert synth.exchange_maps == [0, 1, 2, 3, 4]  # empty = every map of the attention generator
    before = snapshot(synth.generator)
    images = synth.sample(4)
    assert images.shape == (4, 3, 32, 32) and synth.exchanged_batches == 1 and synth.images_made == 4
    assert all(torch.equal(v, synth.generator.state_dict()[k]) for k, v in before.items())  # state untouched
    one_step(method, phases["generator"])
    assert synth.exchanged_batches == 1  # the generator learns from plain batches
    off, _ = build(teacher, tmp_path / "off", **{"spaceshipnet.exchange_prob": 0.0, "spaceshipnet.exchange_maps": [1]})
    off.synthesizer.sample(4)
    assert off.synthesizer.exchanged_batches == 0 and off.synthesizer.exchange_maps == [1]


# ----------------------------------------------------------------- activation-region constraint
def test_cam_constraint_is_zero_for_the_same_maps_and_trains_the_student_features_only():
    torch.manual_seed(0)
    teacher_map, head = torch.randn(2, 6, 4, 4), torch.randn(3, 6)
    cams = class_activation_maps(teacher_map, head)
    assert cams.shape == (2, 3, 4, 4)
    torch.testing.assert_close(cams.mean((2, 3)), teacher_map.mean((2, 3)) @ head.T)  # mean CAM = logit − bias
    student_map = teacher_map.clone().requires_grad_(True)
    student_head = head.clone().requires_grad_(True)
    assert float(cam_constraint(student_map, student_head, teacher_map, head).detach()) == 0.0
    shifted = (teacher_map + 0.5 * torch.randn_like(teacher_map)).requires_grad_(True)
    loss = cam_constraint(shifted, student_head, teacher_map, head)
    loss.backward()
    assert float(loss.detach()) > 0 and shifted.grad.abs().sum() > 0 and student_head.grad is None
    smaller = torch.randn(2, 6, 2, 2, requires_grad=True)  # resized to the teacher's 4×4
    cam_constraint(smaller, head, teacher_map, head).backward()
    assert smaller.grad.abs().sum() > 0


class TwoStages(nn.Module):
    def __init__(self):
        super().__init__()
        self.one, self.two = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        first = torch.relu(self.one(x))
        second = torch.relu(self.two(first))
        return self.head(second.mean((2, 3))), [first, second]


def test_gradcam_constraint_is_zero_for_the_same_network_and_its_gradient_reaches_the_student():
    torch.manual_seed(0)
    teacher, images = TwoStages().requires_grad_(False), torch.randn(2, 3, 8, 8)
    with torch.enable_grad():
        logits, maps = teacher(images.requires_grad_(True))
        classes = logits.argmax(1)
        teacher_cams = [c.detach() for c in grad_cams(predicted_class_score(logits, classes), maps)]
    assert [tuple(c.shape) for c in teacher_cams] == [(2, 8, 8), (2, 4, 4)]
    student = TwoStages()
    student.load_state_dict(teacher.state_dict())
    logits, maps = student(images.detach())
    same = gradcam_constraint(grad_cams(predicted_class_score(logits, classes), maps), teacher_cams)
    assert float(same.detach()) == 0.0
    with torch.no_grad():
        student.one.weight.add_(0.3 * torch.randn_like(student.one.weight))
    logits, maps = student(images.detach())
    loss = gradcam_constraint(grad_cams(predicted_class_score(logits, classes), maps), teacher_cams)
    loss.backward()  # the graph of the logits was kept for it
    assert float(loss.detach()) > 0 and student.one.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="paired stages"):
        gradcam_constraint([], [])


# ------------------------------------------------------------------------------ both phases
def test_a_generator_step_trains_the_generator_on_bn_and_the_target_prior(teacher, tmp_path):
    method, _ = build(teacher, tmp_path, **{"generator.class_conditional": True, "generator.target_ce": 0.5})
    out = method("generator", None)
    assert set(out) == {"loss", "bn", "target_ce"} and all(torch.isfinite(v) for v in out.values())
    torch.testing.assert_close(out["loss"].detach(), out["bn"] + 0.5 * out["target_ce"])
    out["loss"].backward()
    generator = method.synthesizer.generator
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
    assert all(p.grad is None for p in method.student.parameters())  # no adversary: the student is not asked
    assert all(p.grad is None for p in method.teacher.parameters())


def test_a_student_step_adds_both_region_terms_and_trains_only_the_student(teacher, tmp_path):
    method, _ = build(teacher, tmp_path, **{"spaceshipnet.cam": 2.0, "spaceshipnet.gradcam": 3.0})
    assert len(method.teacher_stages) == len(method.student_stages) >= 2  # multi-scale
    out = method("student", None)
    assert set(out) == {"loss", "kd", "cam", "gradcam"} and all(torch.isfinite(v) for v in out.values())
    assert out["cam"] > 0 and out["gradcam"] > 0
    torch.testing.assert_close(out["loss"].detach(), out["kd"] + 2.0 * out["cam"] + 3.0 * out["gradcam"])
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student.parameters())
    assert all(p.grad is None for p in method.teacher.parameters())
    assert all(p.grad is None for p in method.synthesizer.generator.parameters())
    plain, _ = build(teacher, tmp_path / "plain", **{"spaceshipnet.cam": 0.0, "spaceshipnet.gradcam": 0.0})
    assert set(plain("student", None)) == {"loss", "kd"}  # both terms off: KD alone


def test_a_short_run_trains_the_student(teacher, tmp_path):
    summary = fit(distill_config(teacher, tmp_path, method="spaceshipnet",
                                 **{"train.epochs": 1, "distill.pool_size": 16}))
    assert 0.0 <= summary["test_top1"] <= 100.0
    last = summary["history"][-1]
    for key in ("kd", "cam", "gradcam"):
        value = last[f"train/student/{key}_mean"]
        assert value == value and value >= 0, key


def test_the_shipped_practical_recipe_binds_with_the_sections_defaults():
    recipe = Path(__file__).resolve().parent.parent / "finegrain" / "configs" / "datafree_practical.yaml"
    cfg = methods.bind_config(load_config(recipe, ["method.name=spaceshipnet"]))
    assert {"distill", "generator", "spaceshipnet"} <= set(cfg.to_dict()) and "dfkd" not in cfg.to_dict()
    s = cfg.spaceshipnet
    assert (s.bn, s.exchange_prob, s.exchange_maps, s.cam, s.gradcam) == (1.0, 0.7, [], 1.0, 1.0)


@pytest.mark.parametrize("key, value", [("spaceshipnet.exchange_prob", 1.5), ("spaceshipnet.exchange_maps", [7]),
                                        ("spaceshipnet.cam", -1.0), ("spaceshipnet.gradcam", -1.0),
                                        ("spaceshipnet.bn", -1.0)])
def test_a_bad_setting_is_a_one_line_config_error_naming_the_key(teacher, tmp_path, key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as error:
        build(teacher, tmp_path, **{key: value})
    assert "\n" not in str(error.value)


def test_the_cam_term_needs_one_linear_head_on_the_pooled_map():
    check_cam_head(SimpleNamespace(head=lambda: nn.Linear(4, 3), feature_dim=4, arch="plain"), "student")
    for head, width in ((lambda: nn.Sequential(nn.Linear(4, 3)), 4), (lambda: nn.Linear(6, 3), 4)):
        with pytest.raises(ConfigError, match=r"spaceshipnet\.cam") as error:
            check_cam_head(SimpleNamespace(head=head, feature_dim=width, arch="other"), "student")
        assert "\n" not in str(error.value)


def test_checkpoint_and_resume_is_exact(teacher, tmp_path):
    """The exchange draws (which batches, which map, which channels) come from the seeded RNG the
    loop checkpoints: a paused and resumed run ends where the whole one does."""
    settings = {"train.epochs": 2, "distill.pool_size": 16}
    whole = fit(distill_config(teacher, tmp_path / "a", method="spaceshipnet", **settings))
    paused = fit(distill_config(teacher, tmp_path / "b", method="spaceshipnet", **settings,
                                **{"train.stop_after_steps": 1}))
    assert paused["paused_at_step"] == 1
    resumed = fit(distill_config(teacher, tmp_path / "b", method="spaceshipnet", **settings), resume="auto")
    assert exported_models_equal(whole, resumed)
