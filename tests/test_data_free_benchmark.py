"""benchmarks/data_free.py: every row is a shipped recipe, a method and at most a paper's ablation
switch; the benchmark runs through the harness and writes one JSON (no training here)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from benchmarks import data_free as bench
from benchmarks import harness
from conftest import make_imagefolder
from finegrain.commands._common import packaged_config
from finegrain.config import load_config
from test_harness import fake_runner


def test_every_row_names_a_shipped_recipe_that_loads_and_binds_its_method():
    from finegrain import methods

    table = bench.rows()
    data_free = {i.name for i in methods.available() if not i.cls.needs_train_data}
    assert data_free - {bench.MAIN} <= set(table) and set(bench.DFKD_ROWS) <= set(table) and "kd" in table
    for name, (recipe, method, ablation) in table.items():
        assert packaged_config(recipe).parent.name == "configs", f"{name}: {recipe} is not a shipped recipe"
        load_config(packaged_config(recipe))
        cfg = harness.Run(name, recipe, method, budget_minutes=6.0, teacher="/t", data="/d", ablation=ablation).check()
        assert cfg.method.name == method and cfg.train.budget_minutes == 6.0
    assert table["dfkd-fgvc"][:2] == ("datafree_paper_budget", "dfkd-fgvc")          # the paper's method, its name
    assert table["dfkd-fgvc-practical"][:2] == ("datafree_practical", "dfkd-fgvc")
    assert table["dfad"] == ("datafree_practical", "dfad", None) and table["kd"][1] == "kd"
    assert {n: a for n, (_, _, a) in table.items() if a} == {
        "dfkd-fgvc-no-sam": "no-sam", "dfkd-fgvc-no-mhad": "no-mhad", "dfkd-fgvc-no-sfcl": "no-sfcl"}


def test_an_ablation_changes_its_switch_and_nothing_else():
    full = harness.Run("dfkd-fgvc", "datafree_paper", "dfkd-fgvc").check().to_dict()
    for name, (key, value) in [(a, harness.ABLATIONS[a]) for a in ("no-sam", "no-mhad", "no-sfcl")]:
        ablated = harness.Run("x", "datafree_paper", "dfkd-fgvc", ablation=name).check().to_dict()
        section, field = key.split(".")
        assert ablated[section][field] == value != full[section][field]
        ablated[section][field] = full[section][field]
        ablated["train"]["run_name"] = full["train"]["run_name"]
        assert ablated == full, name


def test_the_script_holds_no_override_lists_and_no_probes():
    assert harness.override_literals(bench.__file__) == []
    gone = {"BASELINE", "OVERPLAN", "EVAL_RESERVE_S", "plan_iterations", "step_seconds", "time_limit_minutes",
            "split_epochs", "budget_overrides"}
    assert not gone & set(vars(bench))
    assert isinstance(bench.PRACTICAL, str) and isinstance(bench.PAPER, str)   # recipe names, not lists


def test_a_method_with_a_recipe_of_its_own_runs_it(monkeypatch):
    monkeypatch.setattr(harness, "recipe_shipped", lambda name: name == "datafree_practical_deepinversion")
    assert bench.recipe_for("datafree_practical", "deepinversion") == "datafree_practical_deepinversion"
    assert bench.recipe_for("datafree_practical", "dfad") == "datafree_practical"


def test_arguments_quick_full_and_unknown_rows():
    args = bench.parse_args(["--quick"])
    assert (args.rows, args.budget, args.seeds, args.teacher_budget) == (bench.QUICK_ROWS, 0.5, [0], 0.5)
    assert args.out.endswith("benchmarks/results/data_free.quick.json")
    assert bench.parse_args(["--quick", "--budget", "1", "--seeds", "3"]).budget == 1.0
    args = bench.parse_args([])
    assert (args.budget, args.seeds, args.jobs, args.teacher_budget) == (6.0, [0, 1, 2], 1, 0.0)
    assert args.out.endswith("benchmarks/data_free.result.json") and args.rows == list(bench.rows())
    with pytest.raises(SystemExit):
        bench.parse_args(["--rows", "dfkd-fgvc-sam"])


def test_plan_is_seed_major_and_the_teacher_is_its_recipe(tmp_path):
    args = bench.parse_args(["--rows", "dfkd-fgvc-no-mhad", "dfad", "--seeds", "0", "1", "--budget", "2"])
    runs = bench.plan(args, bench.rows(), "/teacher", tmp_path)
    assert [r.name for r in runs] == ["dfkd-fgvc-no-mhad"] * 2       # dfad has no tuning yet: no final run
    runs = bench.plan(args, bench.rows(), "/teacher", tmp_path, {"dfad": {"settings": [["optim.lr", 0.03]], "trials": 6}})
    assert runs[1].settings == (("optim.lr", 0.03),)
    assert [(r.name, r.seed) for r in runs] == [("dfkd-fgvc-no-mhad", 0), ("dfad", 0), ("dfkd-fgvc-no-mhad", 1), ("dfad", 1)]
    assert all(r.budget_minutes == 2.0 and r.teacher == "/teacher" for r in runs)
    assert runs[0].ablation == "no-mhad" and runs[1].ablation is None
    teacher = bench.teacher_run(args, tmp_path)
    assert (teacher.recipe, teacher.method, teacher.budget_minutes, teacher.teacher) == ("oxford17_cpu", "supervised", 0.0, None)


def test_a_pair_trains_its_teacher_recipe_in_folders_and_a_json_of_its_own(tmp_path):
    for name, recipe in bench.PAIRS.items():
        assert load_config(packaged_config(recipe)).model.name.startswith("efficientnet_lite"), name
    args = bench.parse_args(["--pair", "lite2-lite0", "--budget", "10"])
    assert bench.teacher_run(args, tmp_path).recipe == "oxford17_lite2_cpu"
    assert args.benchmark == "data_free_lite2_lite0" and args.out.endswith("benchmarks/data_free_lite2_lite0.result.json")
    assert harness.workdir_of(args, args.benchmark).name == "data_free_lite2_lite0"
    default = bench.parse_args([])
    assert (default.pair, default.benchmark) == ("lite0-lite0", "data_free")
    with pytest.raises(SystemExit):
        bench.parse_args(["--pair", "lite3-lite0"])


def test_a_table_written_to_a_file_of_its_own_gets_run_folders_of_its_own():
    cars = bench.parse_args(["--data", "../shared/data/cars196", "--out", "benchmarks/data_free_cars196.result.json"])
    assert harness.workdir_of(cars, cars.benchmark).name == "data_free_cars196"
    assert harness.workdir_of(bench.parse_args([]), "data_free").name == "data_free"
    given = bench.parse_args(["--workdir", "elsewhere"])
    assert harness.workdir_of(given, given.benchmark) == Path("elsewhere").resolve()


def test_the_benchmark_writes_one_json_with_its_command(tmp_path):
    data = make_imagefolder(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    out = tmp_path / "data_free.result.json"
    argv = ["--data", str(data), "--rows", "dfkd-fgvc", "dfkd-fgvc-practical", "dfad", "--seeds", "0", "1",
            "--workdir", str(tmp_path / "w"), "--out", str(out)]
    result = bench.main(argv, runner=fake_runner({"dfkd-fgvc": 20.0, "dfkd-fgvc-practical": 40.0, "dfad": 10.0}))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["argv"] == ["benchmarks/data_free.py", *argv] and result["complete"]
    assert result["command"] == "python -m benchmarks.data_free " + shlex.join(argv)
    assert not harness.partial_path(out).exists()
    assert result["teacher"]["run_dir"] == str((tmp_path / "w" / "runs" / "teacher-s0").resolve())
    assert [(r["variant"], r["seed"]) for r in result["runs"]] == [
        ("dfkd-fgvc", 0), ("dfkd-fgvc-practical", 0), ("dfad", 0), ("dfkd-fgvc", 1), ("dfkd-fgvc-practical", 1), ("dfad", 1)]
    for row in result["runs"]:
        assert set(harness.ROW_FIELDS) <= set(row) and row["teacher_test_top1"] == 30.0
        assert row["budget_minutes"] == 6.0 and row["recipe"] == result["rows"][row["variant"]]["recipe"]
    summary = {r["variant"]: r for r in result["summary"]}
    assert summary["dfkd-fgvc-practical"]["test_top1_mean"] == 40.5 and summary["dfad"]["seeds"] == [0, 1]
    pair = next(p for p in result["paired"] if (p["a"], p["b"]) == ("dfkd-fgvc-practical", "dfad"))
    assert pair["mean_difference"] == 30.0 and pair["wins"] == 2
