"""``train.budget_minutes``: a run sizes its schedule to its minutes, and resumes that schedule exactly."""

from __future__ import annotations

import pytest
import torch
from conftest import exported_models_equal, tiny_config

from finegrain.config import ScheduleConfig
from finegrain.engine import budget as budget_module
from finegrain.engine.budget import ScheduleCost, TimeBudget
from finegrain.engine.loop import fit
from finegrain.engine.optim import build_scheduler, resize_schedule
from finegrain.errors import ConfigError


def optimizer_at(lr: float = 0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)


def run_schedule(scheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_a_resized_schedule_ends_on_its_new_last_step_and_keeps_its_length_in_its_state(name):
    scheduler = build_scheduler(optimizer_at(), ScheduleConfig(name=name, min_lr_ratio=0.0), 10, 5)
    run_schedule(scheduler, 3)
    resize_schedule(scheduler, 20)
    # the loop steps a schedule after each iteration: the cosine reaches its floor at step 20, torch's
    # one-cycle its minimum at step 19 (and would refuse to step past its old 10 at all)
    lrs = run_schedule(scheduler, 17 if name == "cosine" else 16)
    assert lrs[-1] < 1e-4 * 0.1 and max(lrs) > 0.05  # at the floor 16-17 steps later, not 6-7
    restored = build_scheduler(optimizer_at(), ScheduleConfig(name=name, min_lr_ratio=0.0), 10, 5)
    restored.load_state_dict(scheduler.state_dict())
    length = restored.total_steps if name == "onecycle" else restored.lr_lambdas[0].total
    assert length == 20


def test_the_budget_takes_the_most_iterations_whose_training_and_evaluation_fit(monkeypatch):
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: 10.0)
    budget = TimeBudget(minutes=1.0, started=0.0)  # 60 s, 10 spent, END_MARGIN_S kept: 47 s left
    cost = ScheduleCost(seconds_per_iteration=1.0, val_seconds=2.0, test_seconds=2.0, iterations_per_epoch=10,
                        eval_every=1)
    # 40 in all: 35 more steps, val after epochs 1-4, test = 45 s; 41 would open a 5th epoch (48 s)
    assert budget.size(cost, done=5, epoch=0) == 40
    assert cost.of(40, 5, 0) <= 47 < cost.of(41, 5, 0)


def test_timing_skips_the_first_iteration_and_epoch_ends_and_follows_the_latest_epoch(monkeypatch):
    clock = iter([1.0, 5.0, 6.0, 7.0, 20.0, 20.5, 21.0, 21.5])
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: next(clock))
    budget = TimeBudget(minutes=10.0, started=0.0)
    for _ in range(4):
        budget.iteration_ended()  # 1 (warm-up), 5, 6, 7: gaps 4, 1, 1
    assert budget.recent == [4.0, 1.0, 1.0] and budget.seconds_per_iteration() == 1.0
    budget.epoch_started()  # evaluation and a checkpoint happen between 7 and 20
    budget.iteration_ended()
    assert budget.recent == [4.0, 1.0, 1.0]  # the last epoch's times, until this one has its own
    budget.iteration_ended()
    budget.iteration_ended()  # gaps 0.5, 0.5: the process got faster
    assert budget.recent == [0.5, 0.5] and budget.gaps == [4.0, 1.0, 1.0, 0.5, 0.5]
    assert budget.seconds_per_iteration() == 1.0  # fewer than MIN_TIMED of this epoch's: all of them count
    budget.iteration_ended()
    assert budget.seconds_per_iteration() == 0.5


def test_short_fast_epochs_still_size_the_schedule(imagefolder, tmp_path, monkeypatch):
    """Timed gaps add up across epochs, so a run of many short epochs is sized too."""
    monkeypatch.setattr(budget_module, "MIN_TIMED_SECONDS", 0.0)
    monkeypatch.setattr(budget_module, "MIN_TIMED", 4)  # more than one 2-iteration epoch has gaps
    summary = fit(tiny_config(imagefolder, tmp_path, **{"train.epochs": 40, "train.iterations_per_epoch": 2,
                                                       "train.budget_minutes": 0.25}))
    assert summary["scheduled_steps"] == summary["steps"] != 80  # sized: not the fixed 40 x 2


@pytest.fixture
def sized_at_nine(monkeypatch):
    """Size after one timed gap, always to 9 iterations (6 per epoch here): the run's path no longer
    depends on the machine's speed, so two runs can be compared bit for bit."""
    monkeypatch.setattr(budget_module, "MIN_TIMED", 1)
    monkeypatch.setattr(budget_module, "MIN_TIMED_SECONDS", 0.0)
    calls = []
    monkeypatch.setattr(TimeBudget, "size", lambda self, cost, done, epoch: calls.append(done) or 9)
    return calls


def test_a_budget_run_finishes_its_sized_schedule_and_resumes_it_exactly(imagefolder, tmp_path, sized_at_nine):
    """Sized mid-epoch 1 and again after its val pass; the paused run's checkpoint (step 7, epoch 2)
    holds the length, and the resumed run continues it without sizing again."""
    settings = {"train.epochs": 5, "train.budget_minutes": 5.0, "schedule.name": "cosine"}
    whole = fit(tiny_config(imagefolder, tmp_path / "a", **settings))
    assert whole["scheduled_steps"] == whole["steps"] == 9 and whole["epochs"] == 2
    assert whole["budget_minutes"] == 5.0 and [h["epoch"] for h in whole["history"]] == [1, 2]
    assert whole["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine reached its end
    paused = fit(tiny_config(imagefolder, tmp_path / "b", **settings, **{"train.stop_after_steps": 7}))
    assert paused["paused_at_step"] == 7
    assert sized_at_nine[-2:] == [2, 6]  # the paused run: after 1 timed gap, then after epoch 1's val pass
    sized_at_nine.clear()
    resumed = fit(tiny_config(imagefolder, tmp_path / "b", **settings), resume="auto")
    assert resumed["scheduled_steps"] == resumed["steps"] == 9 and sized_at_nine == []
    assert exported_models_equal(whole, resumed)


def test_a_negative_budget_is_refused_by_name(tiny_cfg):
    tiny_cfg.train.budget_minutes = -2.0
    with pytest.raises(ConfigError, match=r"train\.budget_minutes=-2\.0: must be >= 0"):
        fit(tiny_cfg)


def test_distill_without_a_config_uses_the_practical_recipe_and_says_so(capsys):
    from finegrain.cli import build_parser
    from finegrain.commands import distill

    args = build_parser().parse_args(["distill", "--teacher", "runs/t", "--budget", "6"])
    cfg = distill.build_config(args)
    assert "recipe: datafree_practical" in capsys.readouterr().out and "datafree_paper" in distill.PAPER_RECIPE
    assert cfg.method.name == "dfkd-fgvc" and cfg.train.budget_minutes == 6.0
    assert cfg.distill.student == "efficientnet_lite0" and cfg.generator.upsampling == "resize"
    assert distill.default_recipe(None, "kd") is None and distill.default_recipe("datafree_paper", None) is None
    paper = distill.build_config(build_parser().parse_args(["distill", "--config", "datafree_paper"]))
    assert (paper.distill.student, paper.distill.generator_steps, paper.distill.student_steps) == ("resnet18", 20, 15)
