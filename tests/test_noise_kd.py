"""noise-kd: KD on Gaussian noise, the floor of the data-free table (DFAD Table 2)."""

import pytest
import torch

from finegrain import methods
from finegrain.datafree.frozen import preserved_buffers
from finegrain.datafree.noise import NoiseSynthesizer
from finegrain.engine.loop import fit
from test_datafree import build_method, distill_config, one_step, teacher  # noqa: F401  (module fixture)
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)


def test_registered_as_data_free():
    info = methods.get("noise-kd")
    assert not info.cls.needs_train_data and info.paper and "noise" in info.description.lower()


def test_synthesizer_is_standard_normal_noise_with_nothing_to_optimize():
    synth = NoiseSynthesizer(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch_size=4)
    assert synth.make_optimizer() is None and not list(synth.parameters())
    images = synth.sample(512)
    assert images.shape == (512, 3, 32, 32) and synth.images_made == 512
    assert abs(float(images.mean())) < 0.01 and abs(float(images.std()) - 1.0) < 0.01
    assert not torch.equal(images[:8], synth.sample(8))  # fresh every time


def test_only_a_student_phase_and_kd_on_fixed_noise_decreases(teacher, tmp_path):
    method, phases = build_method(distill_config(teacher, tmp_path, method="noise-kd", **{"optim.lr": 0.02, "data.batch_size": 32}))
    assert list(phases) == ["student"]
    method.train()
    torch.manual_seed(0)
    probe = method.synthesizer.sample(64)

    def probe_kd():  # train-mode BatchNorm as in the steps, its running statistics left alone
        with torch.no_grad(), preserved_buffers(method.student):
            return float(method.kd_loss(method.student(probe), method.teacher(probe)))

    before = probe_kd()
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    losses = [float(one_step(method, phases["student"])["loss"].detach()) for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses)))
    after = probe_kd()
    assert after < 0.95 * before
    assert all(torch.equal(v, method.teacher.state_dict()[k]) for k, v in teacher_before.items())


def test_runs_in_the_loop(teacher, tmp_path):
    summary = fit(distill_config(teacher, tmp_path, method="noise-kd", **{"train.epochs": 2}))
    assert 0.0 <= summary["test_top1"] <= 100.0
    kd = [h["train/kd_mean"] for h in summary["history"]]
    assert len(kd) == 2 and all(v == v and v >= 0 for v in kd)
