"""finegrain's practical data-free settings: generator contrast, warm-up, image pool, frozen student
BatchNorm, and the synthesis health signals (docs/methods.md, Where finegrain departs)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from finegrain import methods  # noqa: F401  (registry first: methods and datafree import each other)
from finegrain.config import load_config
from finegrain.datafree.distiller import DataFreeDistiller
from finegrain.datafree.health import SynthesisHealth
from finegrain.datafree.pool import ImagePool
from finegrain.datafree.synthesizer import build_generator
from finegrain.engine.loop import fit
from finegrain.errors import ConfigError
from finegrain.models.generator import AttentionGenerator
from conftest import exported_models_equal
from test_datafree import build_method, distill_config, one_step, teacher  # noqa: F401  (fixture)
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)

PRACTICAL = {"generator.output_norm": "imagenorm", "distill.pool_size": 12, "distill.student_bn": "frozen"}


def per_image_std(generator: nn.Module, n: int = 8) -> torch.Tensor:
    with torch.no_grad():
        unit = (generator(torch.randn(n, generator.noise_dim)) + 1) / 2
    return unit.flatten(1).std(1)


@pytest.mark.parametrize("channels", [[64, 32, 16, 16, 8], [128, 64, 32, 16, 16]])
def test_practical_generator_starts_with_contrast_the_paper_one_lacks(channels):
    torch.manual_seed(0)
    paper = AttentionGenerator(64, 32, channels)
    torch.manual_seed(0)
    practical = AttentionGenerator(64, 32, channels, output_norm="imagenorm")
    floor = 0.15  # real photos in [0, 1] have a per-image std of ~0.2-0.3
    assert per_image_std(practical).min() > floor
    assert per_image_std(paper).max() < floor


def test_paper_generator_keeps_the_papers_parameters():
    torch.manual_seed(0)
    paper = AttentionGenerator(32, 16, [32, 16, 16, 8, 8])
    practical = AttentionGenerator(32, 16, [32, 16, 16, 8, 8], output_norm="imagenorm")
    standardized = AttentionGenerator(32, 16, [32, 16, 16, 8, 8], output_norm="standardize")
    assert not any("output_norm" in k for k in paper.state_dict())
    assert set(practical.state_dict()) == set(paper.state_dict())  # imagenorm: no parameters, no buffers
    extra = set(standardized.state_dict()) - set(paper.state_dict())
    assert extra and all(k.startswith("output_norm.") for k in extra)  # buffers only: affine-free
    assert not any(n.startswith("output_norm") for n, _ in standardized.named_parameters())
    with pytest.raises(ValueError, match="output_norm"):
        AttentionGenerator(32, 16, [32, 16, 16, 8, 8], output_norm="layer")


def test_resize_upsampling_has_no_checkerboard_and_the_papers_parameter_count():
    """generator.upsampling=resize: a flat feature map stays flat through an up-block, where the
    paper's stride-2 3×3 transposed conv turns it into a period-2 checkerboard."""
    torch.manual_seed(0)
    paper = AttentionGenerator(32, 16, [32, 16, 16, 8, 8])
    torch.manual_seed(0)
    resize = AttentionGenerator(32, 16, [32, 16, 16, 8, 8], upsampling="resize")
    assert sum(p.numel() for p in paper.parameters()) == sum(p.numel() for p in resize.parameters())
    flat = torch.ones(1, 32, 4, 4)
    with torch.no_grad():
        checkered = paper.blocks[0].up(flat)[0, :, 1:-1, 1:-1]  # away from the zero padding
        smooth = resize.blocks[0].up(flat)[0, :, 1:-1, 1:-1]
    spread = lambda x: (x.amax((1, 2)) - x.amin((1, 2))).max()  # noqa: E731  (per channel)
    assert smooth.shape == checkered.shape and spread(smooth) < 1e-5 < 1e-2 < spread(checkered)
    assert resize(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="upsampling"):
        AttentionGenerator(32, 16, [32, 16, 16, 8, 8], upsampling="bilinear")


@pytest.mark.parametrize("output_norm", ["none", "imagenorm", "standardize"])
def test_grayscale_generator_emits_one_grey_channel_in_three(output_norm):
    torch.manual_seed(0)
    grey = AttentionGenerator(32, 16, [32, 16, 16, 8, 8], output_norm=output_norm, grayscale=True)
    images = grey(torch.randn(4, 16))
    assert images.shape == (4, 3, 32, 32)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert grey.to_rgb.out_channels == 1
    images.sum().backward()  # the one channel's conv learns from all three copies
    assert grey.to_rgb.weight.grad.abs().sum() > 0
    colour = AttentionGenerator(32, 16, [32, 16, 16, 8, 8], output_norm=output_norm)
    assert not torch.equal(*colour(torch.randn(4, 16))[:, :2].unbind(1))


def test_grayscale_key_reaches_the_synthesizer_generator():
    cfg = load_config(None, ["generator.grayscale=true", "generator.channels=[16,8,8,8,8]", "generator.noise_dim=8",
                             "data.image_size=32"], strict=False)
    generator = build_generator(cfg.generator, 32)
    assert generator.grayscale and generator.to_rgb.out_channels == 1
    assert not build_generator(load_config(None, []).generator, 32).grayscale  # default: colour, as the paper


def test_warmup_runs_synthesizer_steps_before_any_student_step(teacher, tmp_path, monkeypatch):
    order = []
    original = DataFreeDistiller.on_optimizer_step

    def record(self, phase):
        order.append(phase)
        original(self, phase)

    monkeypatch.setattr(DataFreeDistiller, "on_optimizer_step", record)
    fit(distill_config(teacher, tmp_path, **{"distill.warmup_steps": 3, "distill.generator_steps": 1,
                                             "distill.student_steps": 2, "train.epochs": 1}))
    # iteration 1: 3 warm-up + t = 1 synthesizer steps, then k = 2 student steps; iteration 2: no warm-up
    assert order == ["generator"] * 4 + ["student"] * 2 + ["generator"] + ["student"] * 2


def test_pool_is_bounded_fifo_and_fed_by_every_synthesis_step(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **PRACTICAL))
    synthesizer = method.synthesizer
    pool = synthesizer.pool
    assert isinstance(pool, ImagePool) and pool.capacity == 12
    made, generate = [], synthesizer.generate
    synthesizer.generate = lambda z: made.append(generate(z)) or made[-1]
    for step in range(4):  # batch 4: 16 images made, the 12 newest kept
        one_step(method, phases["generator"])
        assert len(pool) == min(12, 4 * (step + 1))
    assert synthesizer.images_made == 16
    newest = (synthesizer.normalizer.to_unit(made[-1].detach()) * 255).round().to(torch.uint8)
    assert torch.equal(pool.images[-4:], newest)
    before = method.synthesizer.images_made
    one_step(method, phases["student"])  # student batches come from the pool: nothing new is made
    assert method.synthesizer.images_made == before


def test_pool_keeps_the_newest_images():
    pool = ImagePool(capacity=3, quantize=False)
    for value in range(5):
        pool.add(torch.full((1, 3, 2, 2), value / 10))
    assert [round(float(x), 2) for x in pool.images[:, 0, 0, 0]] == [0.2, 0.3, 0.4]


def test_pool_views_flip_but_keep_shape(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **PRACTICAL))
    one_step(method, phases["generator"])
    drawn = method.synthesizer.sample(6)
    assert drawn.shape == (6, 3, 32, 32) and torch.isfinite(drawn).all()


def test_batch_mixer_pastes_pairs_of_the_batch():
    from finegrain.datafree.synthesizer import batch_mixer

    images = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(4)])  # image i is all i
    torch.manual_seed(1)
    pasted = batch_mixer("cutmix")(images)
    # cutmix: every pixel comes from one of the two images, in the same box for the whole batch
    assert pasted.shape == images.shape and not torch.equal(pasted, images)
    for i in range(4):
        values = set(pasted[i].unique().tolist())
        assert values <= {float(i), float((i - 1) % 4)}
    assert batch_mixer("none") is None
    with pytest.raises(ValueError, match="pool_mix"):
        batch_mixer("blend")


def test_pool_mix_reaches_the_student_batches(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **{**PRACTICAL, "distill.pool_flip": False,
                                                                      "distill.pool_mix": "cutmix"}))
    one_step(method, phases["generator"])
    pooled = method.synthesizer.normalizer(method.synthesizer.pool.images.float() / 255)
    drawn = method.synthesizer.sample(6)
    # a mixed draw is (almost never) one of the pooled images itself
    distance = (drawn[:, None] - pooled[None]).flatten(2).abs().amax(2).amin(1)
    assert drawn.shape == (6, 3, 32, 32) and (distance > 1e-3).any()
    with pytest.raises(ConfigError, match="pool_mix"):
        build_method(distill_config(teacher, tmp_path, **{**PRACTICAL, "distill.pool_mix": "blend"}))


def test_pool_is_checkpointed_and_resume_is_exact(teacher, tmp_path):
    settings = {**PRACTICAL, "distill.warmup_steps": 2, "train.epochs": 2}
    whole = fit(distill_config(teacher, tmp_path / "a", **settings))
    paused = fit(distill_config(teacher, tmp_path / "b", **settings, **{"train.stop_after_steps": 3}))
    assert paused["paused_at_step"] == 3
    checkpoint = load_file(next(Path(paused["run_dir"], "checkpoints").glob("*.safetensors")).as_posix())
    assert checkpoint["synthesizer.pool.images"].shape[0] == 12
    resumed = fit(distill_config(teacher, tmp_path / "b", **settings), resume="auto")
    assert exported_models_equal(whole, resumed)
    last = [load_file(next(Path(r["run_dir"], "checkpoints").glob("ckpt-e002*.safetensors")).as_posix())
            for r in (whole, resumed)]
    assert torch.equal(last[0]["synthesizer.pool.images"], last[1]["synthesizer.pool.images"])


def bn_buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def test_frozen_student_batchnorm_keeps_its_statistics_bit_for_bit(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **PRACTICAL))
    method.train()  # as the loop does every epoch
    one_step(method, phases["generator"])
    before = bn_buffers(method.student)
    weights = {k: v.clone() for k, v in method.student.state_dict().items() if k not in before}
    for _ in range(2):
        one_step(method, phases["student"])
    after = bn_buffers(method.student)
    assert before and all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(weights[k], method.student.state_dict()[k]) for k in weights)  # it still learns

    trained, phases = build_method(distill_config(teacher, tmp_path, **{**PRACTICAL, "distill.student_bn": "train"}))
    trained.train()
    one_step(trained, phases["generator"])
    before = bn_buffers(trained.student)
    one_step(trained, phases["student"])
    assert any(not torch.equal(before[k], v) for k, v in bn_buffers(trained.student).items())


class ToyTeacher(nn.Module):
    """Logits = BN(x) of 4-vectors: the argmax is whichever input coordinate is largest."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(4).eval()
        self.head = nn.Identity()

    def forward(self, x):
        return self.head(self.bn(x))


def test_coverage_warning_fires_on_collapsed_synthesis_and_not_on_healthy():
    torch.manual_seed(0)
    teacher = ToyTeacher()
    health = SynthesisHealth(teacher, teacher.head, num_classes=4)
    for _ in range(3):
        with health.watch():
            teacher(torch.randn(16, 4))
    summary = health.summary()
    assert summary["health/classes_covered"] == 4 and 0.25 <= summary["health/teacher_confidence"] <= 1
    assert summary["health/bn_loss"] > 0 and health.warning() is None

    health.reset()
    collapsed = torch.tensor([[5.0, 0.0, 0.0, 0.0]]).repeat(16, 1)
    for _ in range(3):
        with health.watch():
            teacher(collapsed + 0.01 * torch.randn(16, 4))
    assert health.summary()["health/classes_covered"] == 1
    warning = health.warning()
    assert warning is not None and "1 of 4 classes" in warning

    health.reset()
    teacher(collapsed)  # outside watch(): nothing recorded
    assert health.summary() == {} and health.warning() is None


def test_health_measures_bn_on_every_nth_batch_and_coverage_on_all():
    torch.manual_seed(0)
    teacher = ToyTeacher()
    every_batch, sampled = SynthesisHealth(teacher, teacher.head, 4), SynthesisHealth(teacher, teacher.head, 4, bn_every=2)
    batches = [torch.randn(16, 4) for _ in range(3)]
    for health in (every_batch, sampled):
        for batch in batches:
            with health.watch():
                teacher(batch)
    assert (every_batch.batches, sampled.batches) == (3, 2)  # batches 1 and 3
    assert sampled.images == every_batch.images == 48 and torch.equal(sampled.counts, every_batch.counts)
    sampled.reset()
    assert sampled.watched == 0 and sampled.summary() == {}
    with pytest.raises(ValueError, match="bn_every must be >= 1, got 0"):
        SynthesisHealth(teacher, teacher.head, 4, bn_every=0)


def test_health_bn_every_below_one_is_refused_by_name(teacher, tmp_path):
    with pytest.raises(ConfigError, match="distill.health_bn_every: bn_every must be >= 1"):
        build_method(distill_config(teacher, tmp_path, **{"distill.health_bn_every": 0}))


def test_health_and_synthetic_speed_in_every_epoch_log(teacher, tmp_path, capsys):
    summary = fit(distill_config(teacher, tmp_path, **PRACTICAL, **{"distill.warmup_steps": 2}))
    for record in summary["history"]:
        assert record["train/images_per_s"] > 0
        assert 1 <= record["health/classes_covered"] <= 3
        assert 0 < record["health/teacher_confidence"] <= 1 and record["health/bn_loss"] > 0
    assert "health/classes_covered" in capsys.readouterr().out


def test_class_conditional_synthesis_keeps_targets_and_trains_their_embedding(teacher, tmp_path):
    cond = {"generator.class_conditional": True, "generator.target_ce": 1.0}
    method, phases = build_method(distill_config(teacher, tmp_path, **cond))
    synthesizer = method.synthesizer
    embedding = synthesizer.class_embedding.weight.detach().clone()
    out = method("generator", None)
    assert synthesizer.targets.shape == (4,) and int(synthesizer.targets.max()) < 3
    assert "target_ce" in out and torch.isfinite(out["target_ce"])
    phases["generator"].optimizer.zero_grad()
    out["loss"].backward()
    phases["generator"].optimizer.step()
    assert not torch.equal(embedding, synthesizer.class_embedding.weight)  # the generator's optimizer owns it
    with pytest.raises(ConfigError, match="class_conditional"):
        build_method(distill_config(teacher, tmp_path, **{"generator.target_ce": 1.0}))


@pytest.mark.parametrize("method_name", ["dfad", "dafl", "dfq", "cmi", "mad", "zskt"])
def test_every_generator_baseline_may_use_the_target_prior(teacher, tmp_path, method_name):
    cond = {"generator.class_conditional": True, "generator.target_ce": 1.0}
    method, phases = build_method(distill_config(teacher, tmp_path, method=method_name, **cond))
    out = method("generator", None)
    assert torch.isfinite(out["target_ce"]) and method.synthesizer.targets.shape == (4,)
    out["loss"].backward()
    assert method.synthesizer.class_embedding.weight.grad.abs().sum() > 0   # the prior reaches the class vectors


def test_the_target_prior_key_moved_to_the_generator_section(tmp_path):
    from finegrain.config import load_config

    old = tmp_path / "config.yaml"
    old.write_text("generator:\n  class_conditional: true\ndfkd:\n  target_ce: 10.0\n")  # an old run folder's
    assert load_config(old).generator.target_ce == 10.0


def test_deepinversion_batch_must_be_done_before_the_first_student_step(teacher, tmp_path):
    with pytest.raises(ConfigError, match="warmup_steps"):
        build_method(distill_config(teacher, tmp_path, method="deepinversion",
                                    **{"deepinversion.steps_per_batch": 5, "distill.generator_steps": 1}))
    method, phases = build_method(distill_config(teacher, tmp_path, method="deepinversion",
                                                 **{"deepinversion.steps_per_batch": 3, "distill.generator_steps": 1,
                                                    "distill.warmup_steps": 2}))
    for _ in range(3):
        one_step(method, phases["generator"])
    assert len(method.synthesizer.pool) == 4  # one finished batch of 4


def test_imagenorm_gives_every_image_contrast_even_when_one_image_dominates_the_batch():
    torch.manual_seed(0)
    generator = AttentionGenerator(32, 16, [32, 16, 16, 8, 8], output_norm="imagenorm")
    z = torch.randn(6, 16)
    z[0] *= 50  # one extreme input: a batch norm would hand it most of the batch's variance
    std = per_image_std_of(generator, z)
    assert std.min() > 0.15
    assert not any(n.startswith("output_norm") for n, _ in generator.named_parameters())
    # per image, not per batch: every image gets the same contrast, the extreme one included
    spread = std.max() - std.min()
    assert spread < 0.01
    batch = AttentionGenerator(32, 16, [32, 16, 16, 8, 8])
    batch.output_norm = nn.BatchNorm2d(3, affine=False)  # the same place, normalized over the batch instead
    batch_std = per_image_std_of(batch, z)
    assert batch_std.max() - batch_std.min() > spread


def per_image_std_of(generator, z):
    with torch.no_grad():
        return ((generator(z) + 1) / 2).flatten(1).std(1)


def test_batch_moments_match_torch_var_and_its_gradient():
    from finegrain.datafree.bn_hooks import batch_moments
    torch.manual_seed(0)
    x = (torch.randn(4, 6, 5, 7) * 0.1 + 3.0).requires_grad_()  # a large mean: cancellation would show
    mean, var = batch_moments(x)
    ref_mean, ref_var = x.mean([0, 2, 3]), x.var([0, 2, 3], unbiased=False)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(var, ref_var, rtol=1e-5, atol=1e-7)
    grad, = torch.autograd.grad((var * torch.arange(6.0)).sum(), x)
    ref_grad, = torch.autograd.grad((ref_var * torch.arange(6.0)).sum(), x)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_student_ema_is_what_is_evaluated_and_trails_the_live_student(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **{**PRACTICAL, "distill.student_ema": 0.9}))
    method.train()
    assert method.eval_model() is method.student_ema.module and method.eval_model() is not method.student
    one_step(method, phases["generator"])
    one_step(method, phases["student"])  # the first update copies the student (the decay warms up from 0)
    live, ema = method.student.state_dict(), method.eval_model().state_dict()
    assert all(torch.equal(live[k], ema[k]) for k in live)
    for _ in range(3):
        one_step(method, phases["student"])
    live, ema = method.student.state_dict(), method.eval_model().state_dict()
    assert int(method.student_ema_updates) == 4
    assert any(not torch.equal(live[k], ema[k]) for k in live if live[k].is_floating_point())
    assert not any(p.requires_grad for p in method.eval_model().parameters())
    plain, _ = build_method(distill_config(teacher, tmp_path, **PRACTICAL))  # the default: the live student
    assert plain.student_ema is None and plain.eval_model() is plain.student


def test_student_ema_is_checkpointed_and_resume_is_exact(teacher, tmp_path):
    settings = {**PRACTICAL, "distill.student_ema": 0.9, "train.epochs": 2}
    whole = fit(distill_config(teacher, tmp_path / "a", **settings))
    paused = fit(distill_config(teacher, tmp_path / "b", **settings, **{"train.stop_after_steps": 3}))
    saved = [load_file(p.as_posix())["student_ema_updates"].item()
             for p in Path(paused["run_dir"], "checkpoints").glob("*.safetensors")]
    assert 3 * 2 in saved  # the pause's checkpoint: 3 iterations of k = 2 student steps
    resumed = fit(distill_config(teacher, tmp_path / "b", **settings), resume="auto")
    assert exported_models_equal(whole, resumed)  # the exported model: the average


def test_student_ema_decay_out_of_range_names_the_key(teacher, tmp_path):
    with pytest.raises(ConfigError, match="distill.student_ema"):
        build_method(distill_config(teacher, tmp_path, **{**PRACTICAL, "distill.student_ema": 1.0}))
