"""LeNet-5 / LeNet-5-half in timm's registry: shapes, finegrain's taps, a training run, a distillation."""

from pathlib import Path

import pytest
import timm
import torch

import finegrain.models  # noqa: F401  (registers lenet5, lenet5_half)
from conftest import make_imagefolder, tiny_config
from finegrain.engine.loop import fit
from finegrain.losses.mhad import pair_stages
from finegrain.models import create_classifier
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)


@pytest.mark.parametrize("name,widths", [("lenet5", (6, 16, 120, 84)), ("lenet5_half", (3, 8, 60, 42))])
def test_registered_and_built_through_timm(name, widths):
    assert name in timm.list_models()
    model = timm.create_model(name, num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [i["num_chs"] for i in model.feature_info] == list(widths[:3])
    assert [i["reduction"] for i in model.feature_info] == [2, 4, 32]
    assert model.num_features == widths[2] and model.get_classifier()[0].out_features == widths[3]
    gray = timm.create_model(name, num_classes=7, in_chans=1, drop_rate=0.2)
    assert gray(torch.randn(3, 1, 32, 32)).shape == (3, 7)
    gray.reset_classifier(4)
    assert gray(torch.randn(3, 1, 32, 32)).shape == (3, 4)
    gray.reset_classifier(0)
    assert gray(torch.randn(3, 1, 32, 32)).shape == (3, widths[2])


def test_full_has_four_times_the_half_parameters_roughly():
    full, half = (sum(p.numel() for p in timm.create_model(n).parameters()) for n in ("lenet5", "lenet5_half"))
    assert 3.0 < full / half < 4.5


def test_refuses_pretrained_and_small_inputs():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("lenet5", pretrained=True)
    with pytest.raises(ValueError, match="at least 32"):
        timm.create_model("lenet5")(torch.randn(1, 3, 28, 28))


def test_classifier_taps_and_stage_pairing():
    teacher, student = create_classifier("lenet5", 10), create_classifier("lenet5_half", 10)
    x = torch.randn(2, 3, 32, 32)
    taps = teacher.forward_taps(x, stages=True)
    assert taps.logits.shape == (2, 10) and taps.feature_map.shape == (2, 120, 1, 1)
    assert taps.pooled.shape == (2, 120) and teacher.feature_dim == 120
    assert [tuple(s.shape) for s in taps.stages] == [(2, 6, 14, 14), (2, 16, 5, 5), (2, 120, 1, 1)]
    teacher.eval()
    assert torch.allclose(teacher.forward_taps(x).logits, teacher(x), atol=1e-6)
    half = student.forward_taps(x, stages=True)
    assert [s.shape[1] for s in half.stages] == [3, 8, 60] and half.pooled.shape == (2, 60)
    # MHAD / attention transfer pair the stages of stride >= 4: stage2 and stage3 on both sides
    assert pair_stages(teacher, student, 4) == ([1, 2], [1, 2])
    assert pair_stages(teacher, student, 2) == ([0, 1, 2], [0, 1, 2])
    # head = both FC layers; the DAFL feature is the 120-d conv output
    assert {id(p) for p in teacher.head().parameters()} == {id(p) for p in teacher.net.head.parameters()}


@pytest.fixture(scope="module")
def lenet_teacher(tmp_path_factory):
    """finegrain's loop trains a lenet5 (supervised) on the tiny 32-px fixture."""
    base = tmp_path_factory.mktemp("lenet")
    root = make_imagefolder(base / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    summary = fit(tiny_config(root, base / "runs", **{"model.name": "lenet5", "train.run_name": "teacher",
                                                     "optim.name": "adam", "optim.lr": 0.01}))
    torch.set_num_threads(threads)
    return {"summary": summary, "root": root, "base": base}


def test_train_writes_a_checkpoint_and_learns(lenet_teacher):
    summary = lenet_teacher["summary"]
    run = Path(summary["run_dir"])
    assert summary["architecture"] == "lenet5" and summary["checkpoint"]
    assert list((run / "checkpoints").glob("ckpt-*")) and (run / "model.safetensors").exists()
    assert 0.0 <= summary["test_top1"] <= 100.0
    losses = [h["train/loss_mean"] for h in summary["history"]]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.parametrize("method", ["dfkd-fgvc", "zskt"])
def test_distills_into_lenet5_half_through_the_stages(lenet_teacher, tmp_path, method):
    """The stage-reading methods run with a LeNet pair (MHAD on stage2/stage3, attention transfer)."""
    cfg = tiny_config(lenet_teacher["root"], tmp_path, **{
        "method.name": method, "distill.teacher": lenet_teacher["summary"]["run_dir"],
        "distill.student": "lenet5_half", "distill.generator_steps": 1, "distill.student_steps": 1,
        "train.iterations_per_epoch": 1, "train.epochs": 1,
        "generator.channels": [32, 16, 16, 8, 8], "generator.noise_dim": 16})
    summary = fit(cfg)
    assert summary["architecture"] == "lenet5_half" and 0.0 <= summary["test_top1"] <= 100.0
