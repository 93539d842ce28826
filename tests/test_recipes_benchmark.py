"""benchmarks/recipes.py: the README's runs are shipped recipes, each with the command a user types."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks import harness, recipes


def test_the_readme_runs_name_shipped_recipes_and_nothing_else(tmp_path):
    args = SimpleNamespace(data=str(tmp_path), seeds=[0, 1], budget=6.0, workdir=str(tmp_path / "w"))
    teacher, runs = recipes.plan(args, str(tmp_path / "teacher"))
    assert (teacher.recipe, teacher.method, teacher.budget_minutes) == ("oxford17_cpu", "supervised", 0.0)
    assert [(run.recipe, run.method) for run in runs[::2]] == [("datafree_fast", "fast-dfkd"),
                                                                ("datafree_practical", "dfkd-fgvc")]
    assert all(harness.recipe_shipped(r.recipe) for r in runs)
    assert [(run.name, run.seed, run.budget_minutes) for run in runs] == [
        ("datafree-fixed", 0, 0.0), ("datafree-fixed", 1, 0.0), ("datafree-budget", 0, 6.0), ("datafree-budget", 1, 6.0)]
    assert all(run.ablation is None and run.teacher == str(tmp_path / "teacher") for run in runs)
    assert "--budget 6" in runs[2].command() and "--config datafree_practical" in runs[2].command()
    assert harness.override_literals(recipes.__file__) == []


def test_a_readme_row_is_the_mean_over_seeds_with_the_command_of_one_run():
    rows = [{"variant": "datafree-budget", "method": "dfkd-fgvc", "recipe": "datafree_practical", "seed": seed,
             "budget_minutes": 6.0, "test_top1": top1, "val_top1": top1 - 1, "seconds": 360.0 + seed,
             "scheduled_steps": 90, "steps": 90, "teacher_test_top1": 89.0, "teacher_arch": "efficientnet_lite0",
             "student_arch": "efficientnet_lite0",
             "command": f"finegrain distill --config datafree_practical --method dfkd-fgvc --teacher T "
                        f"--budget 6 train.seed={seed}"} for seed, top1 in ((0, 50.0), (1, 54.0))]
    row = recipes.record("datafree-budget", rows, "distill", teacher_dir="T")
    assert row["test_top1"] == 52.0 and row["seeds"] == [0, 1] and row["budget_minutes"] == 6.0
    assert row["command"] == "finegrain distill --config datafree_practical --teacher runs/teacher --budget 6"
    assert row["variant"] == "datafree-budget" and "6 minutes" in row["name"]
    typed = recipes.user_command("finegrain train --config oxford17_cpu --method supervised --data D train.seed=0", "T")
    assert typed == "finegrain train --config oxford17_cpu --data D --name teacher"
