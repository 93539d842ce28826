"""benchmarks/data_free_sweep.py: the round-1 combination rule, the val-only guard, the committed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("data_free_sweep")


def test_combinations_take_the_best_of_each_family_and_the_winning_switches(sweep):
    rows = [{"name": "base", "val_top1": 6.0}, {"name": "base-b", "val_top1": 8.0},
            {"name": "alpha0.1", "val_top1": 11.0}, {"name": "alpha3e-3", "val_top1": 9.0},
            {"name": "gamma0.8", "val_top1": 10.0}, {"name": "tce10", "val_top1": 12.0},
            {"name": "glr1e-2", "val_top1": 5.0}, {"name": "warm100", "error": "crashed"}]
    combos = sweep.round1_combinations(rows)
    # above the base mean (7): alpha0.1 (best alpha, alpha3e-3 dropped), gamma0.8, tce10; glr1e-2 and the
    # crashed run are out; every subset of two or more, the largest first
    assert list(combos)[0] == "gamma0.8+alpha0.1+tce10"
    assert set(combos) == {"gamma0.8+alpha0.1+tce10", "gamma0.8+alpha0.1", "gamma0.8+tce10", "alpha0.1+tce10"}
    assert combos["alpha0.1+tce10"] == ["dfkd.alpha=0.1", "dfkd.target_ce=10"]
    assert not any("alpha3e-3" in name for name in combos)


def test_a_root_without_val_is_refused(sweep, tmp_path):
    (tmp_path / "test").mkdir()
    with pytest.raises(SystemExit, match="no val/ split"):
        sweep.main(["--teacher", str(tmp_path), "--data", str(tmp_path)])


def test_committed_rows_are_val_only_and_name_rows_the_script_defines(sweep):
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "data_free_sweep.result.json"
    result = json.loads(path.read_text())
    assert result["split"] == "val" and result["best"] == sweep.BEST
    for entry in result["rounds"]:
        defined = sweep.ROUNDS[entry["round"]]
        for row in entry["rows"]:
            assert "test_top1" not in row and 0 <= row["val_top1"] <= 100
            if entry["round"] > 1 or row["name"] in defined:
                assert row["overrides"] == defined[row["name"]]
            else:  # a round-1 combination: the union of its factors
                assert row["overrides"] == [o for n in row["name"].split("+") for o in sweep.ROUND1[n]]
