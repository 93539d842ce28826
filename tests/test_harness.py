"""benchmarks/harness.py: rows from a run's summary, mean ± std, resumable results that record their
command, tables, runs that name a recipe and nothing else (no training but one tiny spawned run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import harness
from conftest import make_imagefolder
from finegrain.errors import ConfigError


def fake_summary(test=40.0, val=38.0, **extra) -> dict:
    history = [{"epoch": 1, "val/top1": val - 5, "train/images_per_s": 10.0},
               {"epoch": 2, "val/top1": val, "train/images_per_s": 14.0, "health/classes_covered": 16.5,
                "health/teacher_confidence": 0.61, "health/bn_loss": 123.0, "health/pool_age": 3.0}]
    return {"run_dir": "x", "architecture": "efficientnet_lite0", "epochs": 2, "budget_minutes": 6.0,
            "scheduled_steps": 250, "steps": 250, "stopped_early": False, "history": history,
            "val_top1": val, "best_val_top1": val, "test_top1": test, **extra}


def fake_runner(results_by_name=None, calls=None, fail=()):
    """A runner that trains nothing: it writes the summary.json the run would write (test top-1: the
    row's figure in ``results_by_name``, default 30, plus the seed; val 2 points under it)."""
    def run(task):
        run = harness.Run.from_dict(task["run"])
        if calls is not None:
            calls.append(run.run_id)
        if run.name in fail:
            raise RuntimeError(f"{run.name} crashed")
        run.run_dir.mkdir(parents=True, exist_ok=True)
        test = (results_by_name or {}).get(run.name, 30.0) + run.seed
        summary = {**fake_summary(test=test, val=test - 2), "run_dir": str(run.run_dir)}
        (run.run_dir / "summary.json").write_text(json.dumps(summary))
        (run.run_dir / "model.safetensors").write_bytes(b"weights of " + run.run_id.encode())
        return {"seconds": 359.0, "run_dir": str(run.run_dir)}
    return run


def test_mean_and_sample_std_over_seeds():
    assert harness.mean_std([10.0, 12.0, 14.0]) == (12.0, 2.0)
    assert harness.mean_std([10.0, None, 14.0]) == (12.0, pytest.approx(2.8284, abs=1e-4))
    assert harness.mean_std([7.5]) == (7.5, None)          # one seed has no spread
    assert harness.mean_std([None]) == (None, None) and harness.mean_std([]) == (None, None)
    rows = [{"variant": "a", "method": "dfad", "seed": s, "test_top1": t, "val_top1": t - 1, "steps": 100}
            for s, t in enumerate([10.0, 12.0, 14.0])] + [{"variant": "b", "method": "kd", "seed": 0, "test_top1": 50.0}]
    summary = harness.summarize(rows)
    assert [r["variant"] for r in summary] == ["a", "b"]
    assert (summary[0]["test_top1_mean"], summary[0]["test_top1_std"], summary[0]["val_top1_mean"]) == (12.0, 2.0, 11.0)
    assert summary[0]["seeds"] == [0, 1, 2] and summary[0]["steps_mean"] == 100 and summary[0]["method"] == "dfad"
    assert summary[1]["test_top1_std"] is None and summary[1]["val_top1_mean"] is None
    pair = harness.paired(rows + [{"variant": "b", "seed": 1, "test_top1": 5.0}], "a", "b")
    assert pair["seeds"] == [0, 1] and pair["mean_difference"] == pytest.approx((10 - 50 + 12 - 5) / 2)
    assert (pair["wins"], pair["losses"]) == (1, 1)
    assert harness.paired(rows, "a", "nobody") is None


def test_row_from_a_summary_has_every_field_and_the_health_signals(tmp_path):
    run = harness.Run("dfkd-fgvc-no-mhad", "datafree_paper", "dfkd-fgvc", seed=2, budget_minutes=6.0,
                      teacher=str(tmp_path / "teacher"), data=str(tmp_path), out_dir=str(tmp_path), ablation="no-mhad")
    teacher = {"architecture": "efficientnet_lite0", "test_top1": 80.0}
    row = harness.make_row(run, fake_summary(), 354.0, teacher)
    assert set(harness.ROW_FIELDS) <= set(row)
    assert {k: row[k] for k in harness.ROW_FIELDS} == {
        "method": "dfkd-fgvc", "variant": "dfkd-fgvc-no-mhad", "recipe": "datafree_paper", "seed": 2,
        "budget_minutes": 6.0, "seconds": 354.0, "scheduled_steps": 250, "steps": 250,
        "teacher_arch": "efficientnet_lite0", "student_arch": "efficientnet_lite0", "teacher_test_top1": 80.0,
        "val_top1": 38.0, "test_top1": 40.0}
    assert row["ratio_to_teacher"] == 0.5 and row["budget_ratio"] == pytest.approx(354 / 360, abs=1e-3)
    assert (row["classes_covered"], row["teacher_confidence"], row["bn_loss"]) == (16.5, 0.61, 123.0)
    assert row["health"] == {"health/pool_age": 3.0} and row["train_images_per_s"] == 12.0
    assert row["ablation"] == "no-mhad" and "dfkd.mhad=false" in row["command"]
    assert row["command"].startswith("finegrain distill --config datafree_paper --method dfkd-fgvc --teacher ")
    bare = harness.make_row(harness.Run("ce", "oxford17_csdnet_cpu", "supervised"), {"history": []}, 1.0)
    assert bare["teacher_arch"] is None and bare["test_top1"] is None and bare["budget_ratio"] is None


def test_a_run_names_a_recipe_and_only_what_makes_it_this_run(tmp_path):
    run = harness.Run("csdnet-no-ddl", "oxford17_csdnet_cpu", "csdnet", seed=1, data=str(tmp_path),
                      out_dir=str(tmp_path / "runs"), ablation="no-ddl", labels=(("dataset", "SoyAgeing/R1"),))
    assert run.run_id == "SoyAgeing_R1-csdnet-no-ddl-s1" and run.run_dir == tmp_path / "runs" / run.run_id
    keys = [o.split("=", 1)[0] for o in run.overrides()]
    assert keys == ["method.name", "train.seed", "train.budget_minutes", "train.out_dir", "train.run_name",
                    "data.root", "csdnet.ddl"]
    cfg = run.check()
    assert cfg.csdnet.ddl is False and cfg.csdnet.ssdp and cfg.train.seed == 1 and cfg.train.budget_minutes == 0
    assert cfg.data.few_shot_seed == 1  # a few-shot recipe draws its subset with the run's seed
    assert run.command().endswith("train.seed=1 data.few_shot_seed=1 csdnet.ddl=false")
    assert harness.Run.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    assert harness.Run("x", "datafree_practical", "dfad", budget_minutes=2.5).run_id == "x-b2.5-s0"
    with pytest.raises(ValueError, match="papers' own"):
        harness.Run("x", "datafree_practical", "dfad", ablation="generator.lr=0.01")
    with pytest.raises(ConfigError, match="does not read section 'dfkd'"):
        harness.Run("x", "oxford17_csdnet_cpu", "supervised", ablation="no-mhad").check()
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        harness.Run("x", "no_such_recipe", "dfad").config()


def test_resume_skips_finished_rows_and_the_json_records_every_command(tmp_path):
    out = tmp_path / "bench.result.json"
    runs = [harness.Run(name, "datafree_practical", "dfad", seed=s, budget_minutes=1.0, out_dir=str(tmp_path / "runs"))
            for s in (0, 1) for name in ("a", "b")]
    calls = []
    first = harness.Results(out, "bench", argv=["bench.py", "--seeds", "0", "1"])
    rows = harness.launch(runs, first, workdir=tmp_path, runner=fake_runner(calls=calls, fail={"b"}))
    assert calls == ["a-b1-s0", "b-b1-s0", "a-b1-s1", "b-b1-s1"]
    assert [(r["variant"], r["seed"]) for r in rows] == [("a", 0), ("a", 1)]
    assert [f["variant"] for f in first.failures] == ["b", "b"] and "b crashed" in first.failures[0]["error"]
    partial = json.loads(harness.partial_path(out).read_text())
    assert partial["partial"] and len(partial["runs"]) == 2 and not out.exists()

    calls.clear()  # the second sitting: only the failed runs train again
    second = harness.Results(out, "bench", argv=["bench.py", "--jobs", "2"])
    rows = harness.launch(runs, second, workdir=tmp_path, runner=fake_runner(calls=calls))
    assert calls == ["b-b1-s0", "b-b1-s1"] and second.reused == 2
    assert [(r["variant"], r["seed"]) for r in rows] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    written = second.finish({"runs": rows, "summary": harness.summarize(rows)})
    assert json.loads(out.read_text()) == json.loads(json.dumps(written))
    assert written["benchmark"] == "bench" and written["argv"] == ["bench.py", "--jobs", "2"]
    assert written["command"] == "bench.py --jobs 2"
    assert [s["argv"] for s in written["sittings"]] == [["bench.py", "--seeds", "0", "1"], ["bench.py", "--jobs", "2"]]
    assert not harness.partial_path(out).exists()

    calls.clear()  # a finished benchmark: a new seed runs, the others are read from its JSON
    more = runs + [harness.Run("a", "datafree_practical", "dfad", seed=2, budget_minutes=1.0, out_dir=str(tmp_path / "runs"))]
    harness.launch(more, harness.Results(out, "bench", argv=["x"]), workdir=tmp_path, runner=fake_runner(calls=calls))
    assert calls == ["a-b1-s2"]
    calls.clear()  # another budget is another run; --fresh runs everything
    harness.launch([harness.Run("a", "datafree_practical", "dfad", budget_minutes=2.0, out_dir=str(tmp_path / "runs"))],
                   harness.Results(out, "bench", argv=["x"]), workdir=tmp_path, runner=fake_runner(calls=calls))
    harness.launch(runs[:1], harness.Results(out, "bench", fresh=True, argv=["x"]), workdir=tmp_path,
                   runner=fake_runner(calls=calls))
    assert calls == ["a-b2-s0", "a-b1-s0"]


def test_the_command_defaults_to_sys_argv_and_another_benchmarks_file_is_not_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["benchmarks/data_free.py", "--budget", "2"])
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"benchmark": "other", "runs": [{"spec": {}, "variant": "z"}]}))
    results = harness.Results(out, "data_free")
    assert results.rows == []
    results.finish({})
    written = json.loads(out.read_text())
    assert written["argv"] == ["benchmarks/data_free.py", "--budget", "2"]
    assert written["command"] == "python -m benchmarks.data_free --budget 2"  # what reruns it, as one line
    assert harness.command_line(["/abs/benchmarks/csdnet_vs_ce.py", "--data", "a b"]) == (
        "python -m benchmarks.csdnet_vs_ce --data 'a b'")


def test_a_teacher_row_is_reused_only_while_its_weights_are_there(tmp_path):
    out, calls = tmp_path / "r.json", []
    teacher = harness.Run("teacher", "oxford17_cpu", "supervised", data=str(tmp_path), out_dir=str(tmp_path / "runs"))
    ref = harness.train_teacher(teacher, harness.Results(out, "b", argv=["x"]), workdir=tmp_path,
                                runner=fake_runner(calls=calls))
    assert ref["run_dir"] == str(teacher.run_dir.resolve()) and ref["architecture"] == "efficientnet_lite0"
    harness.Results(out, "b", argv=["x"]).finish({"teacher": ref, "runs": []})
    harness.train_teacher(teacher, harness.Results(out, "b", argv=["x"]), workdir=tmp_path, runner=fake_runner(calls=calls))
    assert calls == ["teacher-s0"]  # read from the finished JSON's teacher block
    (teacher.run_dir / "model.safetensors").unlink()
    harness.train_teacher(teacher, harness.Results(out, "b", argv=["x"]), workdir=tmp_path, runner=fake_runner(calls=calls))
    assert calls == ["teacher-s0", "teacher-s0"]


def test_tables_render_text_and_markdown():
    records = harness.summarize([
        {"variant": "dfkd-fgvc", "method": "dfkd-fgvc", "recipe": "datafree_paper", "seed": 0, "test_top1": 30.0,
         "val_top1": 28.0, "steps": 120, "seconds": 359.0},
        {"variant": "dfkd-fgvc", "method": "dfkd-fgvc", "recipe": "datafree_paper", "seed": 1, "test_top1": 34.0,
         "val_top1": 30.0, "steps": 122, "seconds": 361.0},
        {"variant": "k|d", "method": "kd", "recipe": "datafree_practical", "seed": 0, "test_top1": 90.0}])
    text = harness.text_table(harness.SUMMARY_COLUMNS, records).splitlines()
    assert text[0].startswith("variant") and set(text[1]) == {"-", " "} and len(text) == 4
    assert "32.00 ± 2.83" in text[2] and "29.00 ± 1.41" in text[2] and " 121 " in text[2] and " 360 " in text[2]
    assert "90.00" in text[3] and " - " in text[3]   # one seed: no std; no val, no steps: '-'
    assert len({len(line) for line in text}) == 1   # every column as wide as its widest cell
    md = harness.markdown_table(harness.SUMMARY_COLUMNS, records).splitlines()
    assert md[0] == "| " + " | ".join(h for h, _ in harness.SUMMARY_COLUMNS) + " |"
    assert md[1].startswith("| --- | --- | --- | ---: | ---: |")   # text left, numbers right and md[2].startswith("| dfkd-fgvc | dfkd-fgvc | datafree_paper | 2 | 32.00 ± 2.83 |")
    assert md[3].startswith("| k\\|d |")
    assert harness.pm(None, None) == "-" and harness.pm(1.234, None) == "1.23" and harness.fmt([0, 1]) == "0 1"


TINY_RECIPE = """# a tiny supervised recipe for tests
data: {image_size: 32, batch_size: 4, eval_batch_size: 16, num_workers: 0}
model: {name: test_resnet}
optim: {lr: 0.05, weight_decay: 0.0}
method: {name: supervised}
train: {epochs: 1, accelerator: cpu, log_every: 1}
"""


def test_a_run_trains_in_a_spawned_process_and_becomes_a_row(tmp_path):
    """The real path: a fresh spawned process imports the harness, trains, writes summary.json."""
    root = make_imagefolder(tmp_path / "data", counts={"train": 4, "val": 2, "test": 2})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    run = harness.Run("ce", str(recipe), "supervised", seed=3, data=str(root), out_dir=str(tmp_path / "runs"))
    results = harness.Results(tmp_path / "r.json", "tiny", argv=["x"])
    row, = harness.launch([run], results, jobs=1, threads=1, workdir=tmp_path)
    assert not results.failures
    assert row["variant"] == "ce" and row["seed"] == 3 and row["student_arch"] == "test_resnet"
    assert 0 <= row["test_top1"] <= 100 and row["steps"] == row["scheduled_steps"] == 3 and row["seconds"] > 0
    log = (tmp_path / "logs" / "ce-s3.log").read_text()
    assert log.startswith(f"finegrain train --config {recipe} --method supervised --data ")
    assert json.loads(Path(results.partial).read_text())["runs"][0]["spec"]["seed"] == 3


def test_rows_that_distilled_another_teachers_weights_are_named_and_run_again(tmp_path, capsys):
    out, calls = tmp_path / "r.json", []
    teacher = harness.Run("teacher", "oxford17_cpu", "supervised", data=str(tmp_path), out_dir=str(tmp_path / "runs"))
    ref = harness.train_teacher(teacher, harness.Results(out, "b", argv=["x"]), workdir=tmp_path,
                                runner=fake_runner(calls=calls))
    assert ref["digest"] == harness.teacher_digest(ref["run_dir"])
    student = harness.Run("a", "datafree_practical", "dfad", budget_minutes=1.0, teacher=ref["run_dir"],
                          out_dir=str(tmp_path / "runs"))
    teachers = {ref["run_dir"]: ref}
    harness.launch([student], harness.Results(out, "b", argv=["x"]), workdir=tmp_path, teachers=teachers,
                   runner=fake_runner(calls=calls))
    (teacher.run_dir / "model.safetensors").unlink()  # a new machine: the teacher trains again, to other weights here
    fake = fake_runner(calls=calls)

    def other_weights(task):
        result = fake(task)
        (Path(result["run_dir"]) / "model.safetensors").write_bytes(b"other weights")
        return result

    results = harness.Results(out, "b", argv=["x"])
    again = harness.train_teacher(teacher, results, workdir=tmp_path, runner=other_weights)
    assert again["digest"] != ref["digest"] and harness.stale_rows(results, again["digest"]) == 1
    assert "1 finished rows distilled a teacher whose weights differ" in capsys.readouterr().out
    harness.launch([student], results, workdir=tmp_path, teachers=teachers, runner=fake_runner(calls=calls))
    assert calls == ["teacher-s0", "a-b1-s0", "teacher-s0", "a-b1-s0"]
