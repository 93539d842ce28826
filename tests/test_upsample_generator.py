"""DAFL's and DFAD's upsample generator (``generator.architecture=upsample``) and the output
standardized in the teacher's normalized space (``generator.output_norm=standardize``), and
DeepInversion's grey pixels (``deepinversion.grayscale``): what a small grey teacher (MNIST) needs."""

import pytest
import torch

from finegrain import methods  # noqa: F401  (registry first: methods and datafree import each other)
from finegrain.config import load_config
from finegrain.datafree.synthesizer import GeneratorSynthesizer, build_generator
from finegrain.errors import ConfigError
from finegrain.models.generator import AttentionGenerator
from finegrain.models.upsample_generator import UpsampleGenerator
from test_datafree import build_method, distill_config, one_step, snapshot, changed, teacher  # noqa: F401  (fixture)
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)

MNIST_MEAN, MNIST_STD = [0.1307] * 3, [0.3081] * 3


@pytest.mark.parametrize("image_size", [32, 30])
def test_upsample_generator_shape_grey_channels_and_gradient(image_size):
    torch.manual_seed(0)
    generator = UpsampleGenerator(image_size, 16, [16, 8], output_norm="imagenorm", grayscale=True)
    images = generator(torch.randn(6, 16))
    assert images.shape == (6, 3, image_size, image_size)
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    assert images.abs().max() <= 1  # a tanh image unless standardized
    images.square().mean().backward()
    assert generator.fc.weight.grad.abs().sum() > 0 and generator.to_rgb.weight.grad.abs().sum() > 0


def test_upsample_generator_paints_no_transposed_conv_checkerboard():
    """Nearest upsampling then a conv: the four pixels of a 2×2 cell are not systematically
    different (a stride-2 transposed conv gives each of them its own kernel taps)."""
    torch.manual_seed(0)

    def cell_spread(generator):
        with torch.no_grad():
            images = generator(torch.randn(64, 16))[:, 0]
        cells = images.unfold(1, 2, 2).unfold(2, 2, 2).reshape(64, -1, 4)  # the 4 positions of each 2×2 cell
        per_position = cells.mean(dim=(0, 1))
        return float(per_position.std() / images.std())
    upsample = UpsampleGenerator(32, 16, [16, 8], output_norm="imagenorm")
    transposed = AttentionGenerator(32, 16, [16, 16, 16, 8, 8], attention_lambda=0.0, output_norm="imagenorm")
    assert cell_spread(upsample) < cell_spread(transposed)


@pytest.mark.parametrize("architecture", ["attention", "upsample"])
def test_standardized_output_has_the_teachers_input_statistics(architecture):
    """DAFL/DFAD: an affine-free BatchNorm after the tanh; the synthesizer passes the images on as
    they are (already normalized), so each channel has batch mean 0 and std 1 in the teacher's
    space: MNIST's pixel mean 0.13, not the mid-grey the norms before the tanh pin."""
    cfg = load_config(None, [f"generator.architecture={architecture}", "generator.output_norm=standardize",
                             "generator.channels=[16,8,8,8,8]", "generator.noise_dim=16", "generator.grayscale=true"],
                      strict=False)
    torch.manual_seed(0)
    synthesizer = GeneratorSynthesizer.from_config(cfg.generator, 32, MNIST_MEAN, MNIST_STD, 64)
    assert synthesizer.generator.emits_normalized
    images = synthesizer.generate(synthesizer.noise(64))
    per_channel = images.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)
    std = per_channel.std(1)  # 1 up to the BN's eps: a fresh attention generator's tanh image is nearly flat
    assert (std > 0.7).all() and (std < 1.01).all()
    pixels = synthesizer.normalizer.to_unit(images)
    assert float(pixels.detach().mean()) < 0.25  # dark on average as real digits (0.13 before clamping at black)

    before = load_config(None, [f"generator.architecture={architecture}", "generator.output_norm=imagenorm",
                                "generator.channels=[16,8,8,8,8]", "generator.noise_dim=16"], strict=False)
    mid_grey = GeneratorSynthesizer.from_config(before.generator, 32, MNIST_MEAN, MNIST_STD, 64)
    assert not mid_grey.generator.emits_normalized
    assert abs(float(mid_grey.normalizer.to_unit(mid_grey.generate(mid_grey.noise(64)).detach()).mean()) - 0.5) < 0.05


@pytest.mark.parametrize("output_norm", ["standardize", "imagenorm"])
def test_a_copy_of_the_generator_is_read_in_its_output_space(output_norm):
    """MAD samples its EMA generator (timm's ``ModelEmaV3``, which has no ``emits_normalized`` of its
    own) through ``generate``: a fresh copy must give exactly the trained generator's images, not
    standardized images mapped from [-1, 1] a second time."""
    from finegrain.methods.mad import moving_average

    cfg = load_config(None, ["generator.architecture=upsample", f"generator.output_norm={output_norm}",
                             "generator.channels=[16,8,8,8,8]", "generator.noise_dim=16"], strict=False)
    torch.manual_seed(0)
    synthesizer = GeneratorSynthesizer.from_config(cfg.generator, 32, MNIST_MEAN, MNIST_STD, 8)
    ema = moving_average(synthesizer.generator, momentum=0.9)
    z = synthesizer.noise(8)
    assert torch.allclose(synthesizer.generate(z, ema), synthesizer.generate(z), atol=1e-6)


def test_architecture_key_builds_its_generator_and_rejects_unknown_names():
    def built(*overrides):
        cfg = load_config(None, ["generator.channels=[16,8,8,8,8]", "generator.noise_dim=8", *overrides], strict=False)
        return build_generator(cfg.generator, 32)
    assert isinstance(built(), AttentionGenerator)  # the default: DFKD-FGVC's (paper)
    upsample = built("generator.architecture=upsample", "generator.output_norm=standardize")
    assert isinstance(upsample, UpsampleGenerator) and upsample.fc.out_features == 16 * 8 * 8
    with pytest.raises(ConfigError, match="generator.architecture"):
        load_config(None, ["generator.architecture=resnet"])


@pytest.mark.parametrize("method_name", ["dafl", "dfad"])
def test_baselines_train_the_upsample_generator(teacher, tmp_path, method_name):
    cfg = distill_config(teacher, tmp_path, method_name, **{"generator.architecture": "upsample",
                                                             "generator.output_norm": "standardize"})
    method, phases = build_method(cfg)
    method.train()
    assert isinstance(method.synthesizer.generator, UpsampleGenerator)
    before = snapshot(method.synthesizer)
    one_step(method, phases["generator"])
    assert any(k.startswith("generator.fc") for k in changed(before, method.synthesizer))
    out = one_step(method, phases["student"])
    assert torch.isfinite(out["loss"])


def test_upsample_generator_carries_sam_only_when_attention_is_on(teacher, tmp_path):
    plain = UpsampleGenerator(32, 16, [16, 8], attention_lambda=0.0)
    attended = UpsampleGenerator(32, 16, [16, 8], attention_lambda=0.05)
    assert all(block.sam is None for block in plain.blocks) and all(block.sam is not None for block in attended.blocks)
    cfg = distill_config(teacher, tmp_path, "dfkd-fgvc", **{"generator.architecture": "upsample",
                                                             "generator.attention_lambda": 0.05})
    method, _ = build_method(cfg)  # DFKD-FGVC keeps its attention; the baselines' builder turns it off
    assert all(block.sam is not None for block in method.synthesizer.generator.blocks)
    baseline, _ = build_method(distill_config(teacher, tmp_path, "dfad", **{"generator.architecture": "upsample",
                                                                            "generator.attention_lambda": 0.05}))
    assert all(block.sam is None for block in baseline.synthesizer.generator.blocks)


def test_grey_deepinversion_pixels_reach_the_teacher_as_three_equal_channels(teacher, tmp_path):
    cfg = distill_config(teacher, tmp_path, "deepinversion", **{"deepinversion.grayscale": True,
                                                                "distill.generator_steps": 1})
    method, phases = build_method(cfg)
    synthesizer = method.synthesizer
    assert synthesizer.pixels.shape[1] == 1
    images = synthesizer.images()
    unit = synthesizer.normalizer.to_unit(images.detach())
    assert images.shape[1] == 3 and torch.allclose(unit[:, 0], unit[:, 1], atol=1e-5) and torch.allclose(unit[:, 0], unit[:, 2], atol=1e-5)
    before = synthesizer.pixels.detach().clone()
    one_step(method, phases["generator"])  # one step finishes the batch (t = 1): it joins the pool in three channels
    assert not torch.equal(before, synthesizer.pixels.detach())
    pooled = synthesizer.pool.sample(4)
    assert pooled.shape[1] == 3 and torch.allclose(pooled[:, 0], pooled[:, 2], atol=1e-5)
    out = one_step(method, phases["student"])
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("architecture, channels", [("attention", "[8]"), ("upsample", "[8]")])
def test_too_few_generator_widths_are_a_config_error_naming_the_key(architecture, channels):
    cfg = load_config(None, [f"generator.architecture={architecture}", f"generator.channels={channels}"])
    with pytest.raises(ConfigError, match=r"generator section: generator channels: .*got \[8\]"):
        build_generator(cfg.generator, 32)
