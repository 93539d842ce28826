"""Fast-DFKD: the meta generator's inner loop and Reptile step, the BN-statistics momentum, the pool,
the objective's terms, a tiny run, bad settings and an exact resume (docs/methods.md, Fast-DFKD)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import exported_models_equal
from finegrain import methods
from finegrain.config import load_config
from finegrain.datafree.bn_momentum import MomentumBNStats
from finegrain.engine.loop import fit
from finegrain.errors import ConfigError
from finegrain.losses.kd import KLDivergence
from finegrain.methods.fast_dfkd import FastDFKD, agreement_adversary
from test_datafree import build_method, distill_config, one_step, teacher  # noqa: F401  (module fixture)
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)

#: two inner steps per batch, one batch per iteration of t = 2 generator steps
FAST = {"fast_dfkd.steps_per_batch": 2, "fast_dfkd.reptile_step": 0.25}


def build(teacher, tmp_path, **overrides):
    method, phases = build_method(distill_config(teacher, tmp_path, method="fast-dfkd", **{**FAST, **overrides}))
    method.train()  # as the loop does every epoch
    return method, phases


def floats(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def test_registered_as_a_data_free_method_with_its_own_section():
    info = methods.get("fast-dfkd")
    assert info.cls is FastDFKD and not info.cls.needs_train_data
    assert "2112.06253" in info.paper and "meta" in info.description
    assert methods.sections_of("fast-dfkd")[-3:] == ("distill", "generator", "fast_dfkd")


def test_inner_steps_adapt_the_fast_copy_and_the_meta_generator_moves_by_epsilon(teacher, tmp_path):
    method, phases = build(teacher, tmp_path)
    synth = method.synthesizer
    meta_before = floats(synth.generator)
    one_step(method, phases["generator"])  # step 1 of 2: θ' and z move, θ does not
    latent_after_one = synth.latent.detach().clone()
    assert not synth.between_batches and all(torch.equal(v, floats(synth.generator)[k]) for k, v in meta_before.items())
    fast = floats(synth.fast_generator)
    assert any(not torch.equal(fast[k], meta_before[k]) for k in meta_before)
    one_step(method, phases["generator"])  # step 2 of 2: the batch is done, θ ← θ + ε(θ' − θ)
    assert synth.between_batches and not torch.equal(latent_after_one, synth.latent)
    adapted, meta_after = floats(synth.fast_generator), floats(synth.generator)
    moved = [k for k in meta_before if not torch.equal(meta_before[k], meta_after[k])]
    assert moved and any(".weight" in k for k in moved)
    for k, old in meta_before.items():
        torch.testing.assert_close(meta_after[k], old + 0.25 * (adapted[k] - old), rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in synth.generator.parameters())  # the Reptile step alone moves θ
    # the next batch starts from the moved meta generator (its buffers then change with the forward pass:
    # BatchNorm and spectral-norm statistics)
    method("generator", None)
    assert all(torch.equal(p, meta_after[k]) for k, p in synth.fast_generator.named_parameters())


def test_a_finished_batch_joins_the_pool_and_the_student_draws_from_it(teacher, tmp_path):
    method, phases = build(teacher, tmp_path, **{"distill.pool_size": 6})
    synth = method.synthesizer
    made, generate = [], synth.generate
    synth.generate = lambda z, g=None: made.append(generate(z, g)) or made[-1]
    one_step(method, phases["generator"])
    assert len(synth.pool) == 0 and synth.images_made == 0  # half a batch: nothing pooled yet
    one_step(method, phases["generator"])
    assert len(synth.pool) == 4 and synth.images_made == 4
    last = (synth.normalizer.to_unit(made[-1].detach()) * 255).round().to(torch.uint8)
    assert torch.equal(synth.pool.images, last)  # the batch of the round's last step
    for _ in range(2):
        one_step(method, phases["generator"])
    assert len(synth.pool) == 6  # distill.pool_size bounds it, oldest out first
    one_step(method, phases["student"])
    assert synth.images_made == 8  # a student step draws from the pool and makes nothing


def test_losses_are_finite_and_a_gradient_reaches_the_fast_copy_and_the_latent(teacher, tmp_path):
    method, phases = build(teacher, tmp_path)
    synth = method.synthesizer
    out = method("generator", None)
    assert set(out) == {"loss", "bn", "ce", "adversarial"} and all(torch.isfinite(v) for v in out.values())
    assert out["adversarial"] == 0  # no adversary before the student's first step
    out["loss"].backward()
    assert synth.latent.grad.abs().sum() > 0
    assert all(p.grad is not None for p in synth.fast_generator.parameters())
    assert any(p.grad.abs().sum() > 0 for p in synth.fast_generator.parameters())
    assert all(p.grad is None for p in synth.generator.parameters())
    assert all(p.grad is None for p in method.teacher.parameters())
    assert all(p.grad is None for p in method.student.parameters())  # a critic only
    assert synth.targets.shape == (4,) and int(synth.targets.max()) < 3
    for _ in range(2):  # a whole batch (the call above only started it), so the pool has images
        one_step(method, phases["generator"])
    one_step(method, phases["student"])
    assert int(method.student_updates) == 1
    student_logits = []
    forward = method.student.forward
    method.student.forward = lambda x: student_logits.append(forward(x)) or student_logits[-1]
    out = method("generator", None)  # the adversary now asks the student
    assert student_logits and torch.isfinite(out["adversarial"]) and out["adversarial"] >= 0
    weights = method.cfg.fast_dfkd
    expected = weights.bn * out["bn"] + weights.ce * out["ce"] - weights.adversarial * out["adversarial"]
    torch.testing.assert_close(out["loss"].detach(), expected)


def test_the_adversary_counts_only_images_on_which_student_and_teacher_agree():
    kd = KLDivergence(1.0, "teacher_student")
    teacher_logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    student_logits = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.1, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                                  requires_grad=True)
    value = agreement_adversary(kd, student_logits, teacher_logits)  # rows 0 and 1 agree, 2 and 3 do not
    torch.testing.assert_close(value, kd(student_logits[:2], teacher_logits[:2]) * 0.5)
    value.backward()
    assert student_logits.grad[:2].abs().sum() > 0 and student_logits.grad[2:].abs().sum() == 0
    disagree = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    none = agreement_adversary(kd, disagree, teacher_logits[:1])
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_bn_momentum_blends_the_batch_with_earlier_batches_and_round_trips():
    stats = lambda mean, var: [(torch.tensor(mean), torch.tensor(var), torch.zeros(2), torch.ones(2))]  # noqa: E731
    averaged = MomentumBNStats(0.75)
    first = averaged.blend(stats([1.0, 2.0], [3.0, 4.0]))
    assert torch.equal(first[0][0], torch.tensor([1.0, 2.0]))  # nothing to average yet: the batch alone
    averaged.update()
    second = averaged.blend(stats([5.0, 6.0], [7.0, 8.0]))
    torch.testing.assert_close(second[0][0], 0.25 * torch.tensor([5.0, 6.0]) + 0.75 * torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(second[0][1], 0.25 * torch.tensor([7.0, 8.0]) + 0.75 * torch.tensor([3.0, 4.0]))
    assert torch.equal(second[0][2], torch.zeros(2))  # the running statistics are the target, untouched
    averaged.update()
    torch.testing.assert_close(averaged.means, torch.tensor([2.0, 3.0]))  # 0.75·[1, 2] + 0.25·[5, 6]
    resumed = MomentumBNStats(0.75)
    resumed.load_state_dict(averaged.state_dict())  # sized by the checkpoint
    assert torch.equal(resumed.means, averaged.means) and torch.equal(resumed.variances, averaged.variances)
    plain = MomentumBNStats(0.0)
    plain.blend(stats([1.0, 2.0], [3.0, 4.0]))
    plain.update()
    assert not plain.started  # m = 0: the plain BN loss, no state
    with pytest.raises(ValueError, match="momentum"):
        MomentumBNStats(1.0)


def test_the_meta_generator_reads_no_class_vectors_even_with_the_practical_generator(teacher, tmp_path):
    method, _ = build(teacher, tmp_path, **{"generator.class_conditional": True, "generator.target_ce": 10.0})
    assert method.synthesizer.class_embedding is None
    assert torch.isfinite(method("generator", None)["loss"])


def test_the_shipped_practical_recipe_binds_with_the_sections_defaults():
    recipe = Path(__file__).resolve().parent.parent / "finegrain" / "configs" / "datafree_practical.yaml"
    cfg = methods.bind_config(load_config(recipe, ["method.name=fast-dfkd"]))
    assert {"distill", "generator", "fast_dfkd"} <= set(cfg.to_dict()) and "dfkd" not in cfg.to_dict()
    assert cfg.fast_dfkd.steps_per_batch == 5 and cfg.fast_dfkd.reptile_step == 0.5
    # the recipe's warm-up fills the pool before the first student step
    assert cfg.distill.warmup_steps + cfg.distill.generator_steps >= cfg.fast_dfkd.steps_per_batch


@pytest.mark.parametrize("key, value", [("fast_dfkd.reptile_step", 0.0), ("fast_dfkd.reptile_step", 1.5),
                                        ("fast_dfkd.steps_per_batch", 0), ("fast_dfkd.bn_momentum", 1.0),
                                        ("fast_dfkd.latent_lr", 0.0)])
def test_a_bad_setting_is_a_one_line_config_error_naming_the_key(teacher, tmp_path, key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as error:
        build(teacher, tmp_path, **{key: value})
    assert "\n" not in str(error.value)


def test_a_batch_longer_than_the_first_synthesis_needs_a_warm_up(teacher, tmp_path):
    with pytest.raises(ConfigError, match="warmup_steps >= 3"):
        build(teacher, tmp_path, **{"fast_dfkd.steps_per_batch": 5})
    method, _ = build(teacher, tmp_path, **{"fast_dfkd.steps_per_batch": 5, "distill.warmup_steps": 3})
    assert method.synthesizer.steps_per_batch == 5


def test_a_short_run_trains_the_student_from_the_pool(teacher, tmp_path, monkeypatch):
    initial = {}
    configure = FastDFKD.configure_phases

    def remember(self, *args):
        initial.update({k: v.clone() for k, v in self.student.state_dict().items()})
        return configure(self, *args)

    monkeypatch.setattr(FastDFKD, "configure_phases", remember)
    summary = fit(distill_config(teacher, tmp_path, method="fast-dfkd", **FAST, **{"train.epochs": 1}))
    assert 0.0 <= summary["test_top1"] <= 100.0
    kd = summary["history"][-1]["train/student/kd_mean"]
    assert kd == kd and kd >= 0
    exported = load_file(str(Path(summary["run_dir"]) / "model.safetensors"))
    common = [k for k in exported if k in initial and exported[k].is_floating_point()]
    assert common and any(not torch.equal(exported[k], initial[k]) for k in common)


def test_checkpoint_inside_a_batch_and_resume_is_exact(teacher, tmp_path):
    """Three inner steps per batch over t = 2 generator steps per iteration: the pause falls inside
    a batch, so the fast copy, the latent, the targets, the step count, the optimizer's moments and
    the BN-statistics average must all come back."""
    settings = {**FAST, "fast_dfkd.steps_per_batch": 3, "distill.warmup_steps": 1, "distill.pool_size": 12,
                "train.epochs": 2}
    whole = fit(distill_config(teacher, tmp_path / "a", method="fast-dfkd", **settings))
    paused = fit(distill_config(teacher, tmp_path / "b", method="fast-dfkd", **settings,
                                **{"train.stop_after_steps": 3}))
    assert paused["paused_at_step"] == 3
    checkpoint = load_file(next(Path(paused["run_dir"], "checkpoints").glob("*.safetensors")).as_posix())
    assert int(checkpoint["synthesizer.progress"]) != 0  # 1 + 3·2 = 7 inner steps: inside the third batch
    assert {"synthesizer.latent", "synthesizer.targets", "student_updates"} <= set(checkpoint)
    assert any(k.startswith("synthesizer.fast_generator.") for k in checkpoint)
    assert checkpoint["bn_momentum.means"].numel() > 0
    resumed = fit(distill_config(teacher, tmp_path / "b", method="fast-dfkd", **settings), resume="auto")
    assert exported_models_equal(whole, resumed)
    last = [load_file(next(Path(r["run_dir"], "checkpoints").glob("ckpt-e002*.safetensors")).as_posix())
            for r in (whole, resumed)]
    for key in last[0]:
        if key.startswith(("synthesizer.generator.", "synthesizer.pool.", "bn_momentum.")):
            assert torch.equal(last[0][key], last[1][key]), key
