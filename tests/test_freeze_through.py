"""optim.freeze_through: the stem and early blocks of a classifier keep their loaded weights."""

import pytest
import timm
import torch

from finegrain.engine.loop import fit
from finegrain.engine.optim import freeze_through
from finegrain.errors import ConfigError
from conftest import tiny_config
from test_datafree import build_method, distill_config, one_step, snapshot, teacher  # noqa: F401  (fixture)
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)


def test_freezes_the_named_block_and_everything_before_it_and_nothing_after():
    model = timm.create_model("test_efficientnet", num_classes=3)
    names = [n for n, _ in model.named_parameters()]
    count = freeze_through(model, "blocks.1")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    last = max(i for i, n in enumerate(names) if n.startswith("blocks.1."))
    assert count == len(frozen) == last + 1
    assert frozen == names[:last + 1] and frozen[0].startswith("conv_stem")
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith(("blocks.2", "classifier")))
    assert freeze_through(timm.create_model("test_efficientnet", num_classes=3), "") == 0


def test_a_module_without_parameters_freezes_everything_registered_before_it():
    model = timm.create_model("test_resnet", num_classes=3)  # conv1, bn1, act1, maxpool, layer1, ...
    assert freeze_through(model, "maxpool") == len(list(model.conv1.parameters())) + len(list(model.bn1.parameters()))
    assert not any(p.requires_grad for p in [*model.conv1.parameters(), *model.bn1.parameters()])
    assert all(p.requires_grad for p in model.layer1.parameters())


def test_unknown_submodule_names_the_key_and_the_value():
    model = timm.create_model("test_efficientnet", num_classes=3)
    with pytest.raises(ConfigError, match=r"optim.freeze_through: 'blocks\.99'.*conv_stem"):
        freeze_through(model, "blocks.99")


def test_data_free_student_keeps_frozen_weights_bit_for_bit_and_steps_the_rest(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **{"optim.freeze_through": "blocks.1"}))
    method.train()
    one_step(method, phases["generator"])
    before = snapshot(method.student)
    one_step(method, phases["student"])
    after = method.student.state_dict()
    early = [k for k in before if k.startswith(("net.conv_stem", "net.blocks.0", "net.blocks.1")) and "running" not in k
             and "num_batches" not in k]
    late = [k for k in before if k.startswith("net.classifier")]
    assert early and all(torch.equal(before[k], after[k]) for k in early)
    assert late and any(not torch.equal(before[k], after[k]) for k in late)
    optimized = {id(p) for g in phases["student"].optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in optimized for n, p in method.student.named_parameters() if n.startswith("net.conv_stem"))


def test_supervised_training_honours_it_too(imagefolder, tmp_path):
    from finegrain import methods

    cfg = tiny_config(imagefolder, tmp_path / "runs", **{"optim.freeze_through": "layer1"})
    method = methods.create("supervised", cfg, ["a", "b", "c"])
    phase = method.configure_phases(4, 2)[0]
    method.train()
    before = snapshot(method)
    out = method(phase.name, (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])))
    phase.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    phase.optimizer.step()
    moved = {k for k, v in method.state_dict().items() if not torch.equal(before[k], v)}
    assert not any(k.startswith(("model.net.conv1.", "model.net.layer1.")) and "running" not in k and "num_batches" not in k
                   for k in moved)
    assert any(".fc." in k or "layer2" in k for k in moved)


def test_bad_name_fails_before_training_with_the_key(imagefolder, tmp_path):
    with pytest.raises(ConfigError, match="optim.freeze_through"):
        fit(tiny_config(imagefolder, tmp_path / "runs", **{"optim.freeze_through": "nope"}))
