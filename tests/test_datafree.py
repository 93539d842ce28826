"""The data-free framework end to end: frozen teacher, phase isolation, CLI, resume, synthesize."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import exported_models_equal, make_imagefolder, tiny_config
from finegrain import methods
from finegrain.engine.loop import fit
from finegrain.errors import ConfigError
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)

TINY_GENERATOR = {"generator.channels": [32, 16, 16, 8, 8], "generator.noise_dim": 16}


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see test_losses_datafree.one_thread
    return subprocess.run([sys.executable, "-m", "finegrain", *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A test_resnet trained for one epoch with the supervised method on the fixture (32 px)."""
    base = tmp_path_factory.mktemp("teacher")
    root = make_imagefolder(base / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the autouse one_thread fixture
    summary = fit(tiny_config(root, base / "runs", **{"train.epochs": 1, "train.run_name": "teacher"}))
    torch.set_num_threads(threads)
    eval_only = base / "eval_only"  # a real dataset without any training split
    shutil.copytree(root / "test", eval_only / "test")
    return {"run": Path(summary["run_dir"]), "root": root, "eval_only": eval_only}


def distill_config(teacher, out, method="dfkd-fgvc", **overrides):
    settings = {"method.name": method, "distill.teacher": str(teacher["run"]), "distill.student": "test_efficientnet",
                "distill.generator_steps": 2, "distill.student_steps": 2, "train.iterations_per_epoch": 2,
                **TINY_GENERATOR, **overrides}
    return tiny_config(teacher["eval_only"], out, **settings)


def build_method(cfg):
    cls = methods.get(cfg.method.name).cls
    cls.prepare_config(cfg)
    method = methods.create(cfg.method.name, cfg, cls.class_names_from_config(cfg))
    return method, {p.name: p for p in method.configure_phases(4, 2)}


def one_step(method, phase):
    out = method(phase.name, None)
    phase.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    phase.optimizer.step()
    method.on_optimizer_step(phase.name)
    return out


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


# -------------------------------------------------------------------------------- teacher
def test_teacher_is_frozen_in_eval_mode_and_gets_no_gradient(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path))
    method.train()
    assert not any(m.training for m in method.teacher.modules()) and method.student.training
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert method.cfg.data.image_size == 32 and method.class_names == ["class_0", "class_1", "class_2"]
    before = snapshot(method.teacher)
    for name in ("generator", "student"):
        one_step(method, phases[name])
    assert all(p.grad is None for p in method.teacher.parameters())
    assert not changed(before, method.teacher)  # BN running statistics included
    assert not any(k.startswith("teacher.") for k in method.checkpoint_state())


def test_generator_step_changes_only_the_generator(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path))
    method.train()
    before = snapshot(method)
    out = one_step(method, phases["generator"])
    assert {"loss", "bn", "kd"} <= set(out)
    diff = changed(before, method)
    assert diff and all(k.startswith("synthesizer.generator.") for k in diff)
    assert any(k.endswith("weight") for k in diff)


def test_student_step_changes_only_student_heads_and_mha(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path))
    method.train()
    before = snapshot(method)
    out = one_step(method, phases["student"])
    assert {"loss", "kd", "mhad", "sfcl"} <= set(out)
    diff = changed(before, method)
    assert all(k.split(".")[0] in ("student", "mhad", "sfcl") for k in diff)
    for prefix in ("student.", "mhad.attentions.", "mhad.adapters.", "sfcl.teacher_head.", "sfcl.student_head."):
        assert any(k.startswith(prefix) for k in diff), prefix


def test_ablation_switches_remove_their_modules(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, **{"dfkd.mhad": False, "dfkd.sfcl": False,
                                                                      "generator.attention_lambda": 0.0}))
    assert method.mhad is None and method.sfcl is None
    assert all(block.sam is None for block in method.synthesizer.generator.blocks)
    assert set(one_step(method, phases["student"])) == {"loss", "kd"}


# --------------------------------------------------------------------------- never train
def test_data_free_fit_never_opens_the_train_split(teacher, tmp_path, monkeypatch):
    import finegrain.data.loaders as loaders

    opened = []
    original = loaders.read_split
    monkeypatch.setattr(loaders, "read_split", lambda fmt, root, split: opened.append(split) or original(fmt, root, split))
    cfg = distill_config(teacher, tmp_path, **{"train.epochs": 1})
    cfg.data.root = str(teacher["root"])  # a root that *has* a train split
    cfg.train.epochs = 2
    summary = fit(cfg)
    assert "train" not in opened and "test" in opened and "val" in opened
    assert 0 <= summary["test_top1"] <= 100
    # the val split is evaluated every epoch, as for methods with training data
    assert [h["epoch"] for h in summary["history"] if "val/top1" in h] == [1, 2]


def test_cli_refuses_a_training_split_for_data_free_methods(teacher):
    result = run_cli("distill", "--teacher", teacher["run"], "--method", "dfad", "--data", teacher["root"])
    assert result.returncode == 2
    assert "data-free and never reads a training split" in result.stderr and "--eval-data" in result.stderr


def test_teacher_classes_must_match_the_evaluation_data(teacher, tmp_path):
    other = make_imagefolder(tmp_path / "other", classes=4)
    cfg = distill_config(teacher, tmp_path)
    cfg.data.root = str(other)
    with pytest.raises(ConfigError, match="evaluation classes do not match the teacher"):
        fit(cfg)


# ----------------------------------------------------------------------- run, resume, use
def test_resume_continues_exactly(teacher, tmp_path):
    whole = fit(distill_config(teacher, tmp_path / "a", **{"train.epochs": 2}))
    paused = fit(distill_config(teacher, tmp_path / "b", **{"train.epochs": 2, "train.stop_after_steps": 1}))
    assert paused["paused_at_step"] == 1
    resumed = fit(distill_config(teacher, tmp_path / "b", **{"train.epochs": 2}), resume="auto")
    assert exported_models_equal(whole, resumed)


def test_cli_distill_resume_eval_and_synthesize(teacher, tmp_path):
    common = ["--config", "datafree_paper", "--teacher", teacher["run"], "--student", "test_efficientnet",
              "--eval-data", teacher["eval_only"],
              "--out", tmp_path, "--name", "student", "--accelerator", "cpu", "--epochs", "2",
              "data.batch_size=4", "data.num_workers=0", "distill.generator_steps=2", "distill.student_steps=2",
              "train.iterations_per_epoch=2", "generator.channels=[32,16,16,8,8]", "generator.noise_dim=16"]
    first = run_cli("distill", *common, "train.stop_after_steps=3")
    assert first.returncode == 0, first.stderr
    run = tmp_path / "student"
    assert list((run / "checkpoints").glob("*.safetensors")) and not (run / "model.json").exists()
    second = run_cli("distill", *common, "--resume")
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout + second.stderr
    summary = json.loads(second.stdout[second.stdout.index("{"):])
    assert summary["architecture"] == "test_efficientnet" and "test_top1" in summary
    evaluated = run_cli("eval", run, "--data", teacher["eval_only"], "--num-workers", "0")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["top1"] == pytest.approx(summary["test_top1"], abs=0.01)
    grid = tmp_path / "grid.png"
    shown = run_cli("synthesize", "--checkpoint", run, "-n", "6", "--out", grid)
    assert shown.returncode == 0, shown.stderr
    from PIL import Image

    assert Image.open(grid).size[0] > 0 and json.loads(shown.stdout)["n"] == 6


def test_synthetic_grid_summary(teacher, tmp_path):
    from finegrain.viz.synthetic import synthetic_grid

    summary = fit(distill_config(teacher, tmp_path, method="dfad", **{"train.epochs": 1}))
    picture, info = synthetic_grid(summary["run_dir"], n=5, seed=1)
    assert picture.size[0] == 3 * 96 and picture.size[1] == 2 * (96 + 24)
    assert sum(info["class_counts"].values()) == 5 and len(info["predicted"]) == 5
    assert set(info["mean_confidence_per_class"]) <= {"class_0", "class_1", "class_2"}
    assert all(1 / 3 - 1e-6 <= c <= 1 for c in info["mean_confidence_per_class"].values())
    again, info2 = synthetic_grid(summary["run_dir"], n=5, seed=1)
    assert info2["confidence"] == info["confidence"]  # same seed, same images


def test_deepinversion_fills_its_pool_and_resumes_it(teacher, tmp_path):
    summary = fit(distill_config(teacher, tmp_path, method="deepinversion", **{"train.epochs": 1}))
    from finegrain.viz.synthetic import load_distiller

    method, _ = load_distiller(summary["run_dir"])
    pool = method.synthesizer.pool
    assert len(pool) == 2 * 4 and pool.images.shape[1:] == (3, 32, 32)  # one batch of 4 per iteration
    low, high = method.synthesizer.normalizer.bounds()
    assert (method.synthesizer.pixels >= low - 1e-6).all() and (method.synthesizer.pixels <= high + 1e-6).all()


def test_real_data_kd_uses_the_teachers_preprocessing(teacher, tmp_path):
    cfg = tiny_config(teacher["root"], tmp_path, **{"method.name": "kd", "distill.teacher": str(teacher["run"]),
                                                     "distill.student": "test_efficientnet", "train.epochs": 1,
                                                     "data.image_size": 48})
    summary = fit(cfg)
    assert cfg.data.image_size == 32 and summary["architecture"] == "test_efficientnet"
    assert "train/kd_mean" in summary["history"][0] and "train/ce_mean" in summary["history"][0]


@pytest.mark.parametrize("adversarial", [1.0, 0.25, 0.0])
def test_adversarial_weight_scales_the_generators_kd_term(teacher, tmp_path, adversarial):
    """Eq. 10 with ``dfkd.adversarial`` = w: the loss is α·L_BN − w·L_KD (w = 1 is the paper's);
    at w = 0 the student no longer shapes the generator's gradient."""
    method, phases = build_method(distill_config(teacher, tmp_path, **{"dfkd.adversarial": adversarial}))
    method.train()
    torch.manual_seed(0)
    out = method("generator", None)
    alpha = method.cfg.dfkd.alpha
    assert torch.allclose(out["loss"], alpha * out["bn"] - adversarial * out["kd"], atol=1e-5)
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(torch.randn_like(p))
    torch.manual_seed(0)
    again = method("generator", None)  # same noise, another student
    # (spectral norm's power iteration moves the generator's weights a hair at every forward)
    assert torch.allclose(again["bn"], out["bn"], rtol=1e-4) and not torch.allclose(again["kd"], out["kd"], rtol=1e-2)
    assert torch.allclose(again["loss"], out["loss"], rtol=1e-4) == (adversarial == 0)
