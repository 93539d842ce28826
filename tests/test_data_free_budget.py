"""benchmarks/data_free_budget.py: the best rows of a finished data-free benchmark at several budgets,
the source's own runs reused, one JSON and one plot (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import data_free, data_free_budget as bench
from benchmarks import harness
from conftest import make_imagefolder
from test_harness import fake_runner


def finished_source(tmp_path):
    data = make_imagefolder(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    out = tmp_path / "data_free.json"
    figures = {"dfkd-fgvc-practical": 50.0, "dfad": 20.0, "cmi": 30.0, "dafl": 10.0, "dfkd-fgvc-no-sfcl": 90.0, "kd": 80.0}
    data_free.main(["--data", str(data), "--rows", *figures, "--seeds", "0", "--workdir", str(tmp_path / "w"),
                    "--out", str(out)], runner=fake_runner(figures))
    return out


def test_the_best_rows_by_val_run_at_every_budget_and_the_sources_runs_are_reused(tmp_path):
    source = finished_source(tmp_path)
    assert bench.pick_rows(json.loads(source.read_text()), 3) == ["dfkd-fgvc-practical", "cmi", "dfad", "kd"]  # no ablation
    calls = []
    out, png = tmp_path / "budget.json", tmp_path / "budget.png"
    result = bench.main(["--source", str(source), "--budgets", "2", "6", "--workdir", str(tmp_path / "b"),
                         "--out", str(out), "--plot", str(png)], runner=fake_runner(calls=calls))
    assert sorted(calls) == sorted(f"{n}-b2-s0" for n in ["dfkd-fgvc-practical", "cmi", "dfad", "kd"])   # 6 min: reused
    six = [r for r in result["runs"] if r["budget_minutes"] == 6.0]
    assert len(six) == 4 and all(r["reused_from"] for r in six) and six[0]["test_top1"] == 50.0
    assert png.stat().st_size > 1000 and json.loads(out.read_text())["plot"] == str(png)
    chosen = json.loads(source.read_text())["tuning"]["chosen"]["cmi"]["settings"]
    cmi_two = next(r for r in result["runs"] if r["variant"] == "cmi" and r["budget_minutes"] == 2.0)
    assert cmi_two["spec"]["settings"] == chosen                           # the settings its tuning chose
    assert [(c["variant"], c["budget_minutes"]) for c in result["curves"]][:2] == [("dfkd-fgvc-practical", 2.0),
                                                                                  ("dfkd-fgvc-practical", 6.0)]


def test_a_missing_source_or_teacher_is_named(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="no such file"):
        bench.main(["--source", str(tmp_path / "none.json")])
    source = tmp_path / "s.json"
    source.write_text(json.dumps({"teacher": {"run_dir": str(tmp_path / "gone")}}))
    with pytest.raises(SystemExit, match="teacher"):
        bench.main(["--source", str(source)])
    assert harness.partial_path(tmp_path / "budget.json").name == "budget.partial.json"


def test_a_copy_of_the_data_elsewhere_is_read_recorded_and_not_mixed_with_the_sources_runs(tmp_path):
    source = finished_source(tmp_path)
    copy = make_imagefolder(tmp_path / "copy", counts={"train": 2, "val": 1, "test": 1})
    calls = []
    result = bench.main(["--source", str(source), "--budgets", "6", "--top", "1", "--data", str(copy),
                         "--device", "cuda", "--workdir", str(tmp_path / "b"), "--out", str(tmp_path / "gpu.json"),
                         "--plot", str(tmp_path / "gpu.png")], runner=fake_runner(calls=calls))
    assert sorted(calls) == ["dfkd-fgvc-practical-b6-s0", "kd-b6-s0"]   # the source's 6-minute runs read other data
    assert result["data"] == str(copy.resolve()) and result["device"] == "cuda"
    assert all(r["spec"]["data"] == str(copy.resolve()) and r["spec"]["accelerator"] == "cuda" for r in result["runs"])


def test_a_teacher_retrained_to_other_weights_is_refused_and_another_teacher_can_be_named(tmp_path, monkeypatch):
    import pytest

    source = finished_source(tmp_path)
    weights = Path(json.loads(source.read_text())["teacher"]["run_dir"]) / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")                       # same recipe, another processor
    with pytest.raises(SystemExit, match="digest"):
        bench.main(["--source", str(source), "--out", str(tmp_path / "b.json")])
    other = tmp_path / "other-teacher"
    monkeypatch.setattr(harness, "teacher_reference",
                        lambda run, data: {"run_dir": str(run), "architecture": "tiny", "val_top1": 70.0, "test_top1": 71.0})
    calls = []
    result = bench.main(["--source", str(source), "--budgets", "2", "--top", "1", "--teacher", str(other),
                         "--workdir", str(tmp_path / "w2"), "--out", str(tmp_path / "t.json"),
                         "--plot", str(tmp_path / "t.png")], runner=fake_runner(calls=calls))
    assert result["teacher"]["run_dir"] == str(other) and result["teacher"]["test_top1"] == 71.0
    assert all(r["spec"]["teacher_digest"] is None for r in result["runs"])   # not the source's weights
