"""benchmarks/csdnet_vs_ce.py at toy size: a train/test-only root, several roots, missing figures."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import load_benchmark, make_imagefolder


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("csdnet_vs_ce")


def tiny_args(roots, out):
    return ["--data", *map(str, roots), "--model", "test_resnet", "--pretrained-file", "none",
            "--image-size", "32", "--epochs", "1", "--seeds", "0", "--variants", "ce", "csdnet",
            "--set", "data.eval_batch_size=16", "--out", str(out)]


def test_train_test_only_root_and_a_root_with_val_give_one_table_each(bench, tmp_path, capsys):
    leaves = make_imagefolder(tmp_path / "leaves", counts={"train": 8, "test": 3})   # no val/
    flowers = make_imagefolder(tmp_path / "flowers", counts={"train": 8, "val": 2, "test": 3}, seed=1)
    out = tmp_path / "result.json"
    threads = torch.get_num_threads()
    try:
        result = bench.main(tiny_args([leaves, flowers], out))
    finally:
        torch.set_num_threads(threads)

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["complete"] and set(result["tables"]) == {"leaves", "flowers"}
    assert result["datasets"]["leaves"]["val"] == "carved" and result["datasets"]["flowers"]["val"] == "split"
    assert [(r["dataset"], r["variant"]) for r in result["runs"]] == [
        ("leaves", "ce"), ("leaves", "csdnet"), ("flowers", "ce"), ("flowers", "csdnet")]
    for name, table in result["tables"].items():
        assert set(table) == {"ce", "csdnet"}
        for row in table.values():
            assert 0.0 <= row["test_top1_mean"] <= 100.0 and row["test_top1_std"] == 0.0
            assert row["val_top1_mean"] is not None and 0.0 <= row["val_top1_mean"] <= 100.0
            assert row["throughput_vs_ce"] is not None and row["throughput_vs_ce"] > 0
        assert table["ce"]["throughput_vs_ce"] == pytest.approx(1.0)
    carved = [r for r in result["runs"] if r["dataset"] == "leaves"]
    assert all(r["val_source"] == "carved 0.2 of train" for r in carved)
    printed = capsys.readouterr().out
    assert "leaves few-shot" in printed and "flowers few-shot" in printed


def test_carved_val_is_train_not_test(tmp_path):
    """What the script relies on: without val/, val comes from train and test stays whole."""
    from finegrain.config import load_config
    from finegrain.data.loaders import build_datasets

    root = make_imagefolder(tmp_path / "leaves", counts={"train": 8, "test": 3})
    base = [f"data.root={root}", "data.few_shot_k=5", "data.cache=false"]
    bundle = build_datasets(load_config(None, [*base, "data.val_fraction=0.2"]).data)
    val = {p for p, _ in bundle.val.samples}
    assert val and all("/train/" in p for p in val)
    assert not val & {p for p, _ in bundle.train.samples}
    assert len(bundle.test.samples) == 9
    assert build_datasets(load_config(None, base).data).val is None   # never test as val


def test_aggregate_with_missing_val_and_speeds_prints_what_exists(bench, capsys):
    runs = [
        {"dataset": "d", "variant": "ce", "seed": 0, "test_top1": 50.0, "val_top1": None, "train_images_per_s": 10.0},
        {"dataset": "d", "variant": "ce", "seed": 1, "test_top1": 60.0, "val_top1": 40.0, "train_images_per_s": 12.0},
        {"dataset": "d", "variant": "csdnet", "seed": 0, "test_top1": 70.0, "val_top1": None, "train_images_per_s": None},
    ]
    table = bench.aggregate(runs, ["ce", "csdnet", "csdnet-no-ddl"])
    assert set(table) == {"ce", "csdnet"}   # a variant without runs is left out
    assert table["ce"]["test_top1_mean"] == 55.0 and table["ce"]["val_top1_mean"] == 40.0
    assert table["ce"]["val_top1_std"] == 0.0
    assert table["csdnet"]["val_top1_mean"] is None and table["csdnet"]["val_top1_std"] is None
    assert table["csdnet"]["throughput_vs_ce"] is None and table["ce"]["throughput_vs_ce"] == 1.0
    args = bench.parse_args(["--data", "x", "--seeds", "0", "1"])
    bench.print_table("d", table, args)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("csdnet ") and " - " in line for line in lines)
    assert bench.aggregate([], ["ce"]) == {}


def test_missing_root_is_a_clear_error(bench, tmp_path):
    make_imagefolder(tmp_path / "only_train", counts={"train": 2})
    with pytest.raises(SystemExit, match="no test/ folder"):
        bench.describe_datasets([str(tmp_path / "only_train")])
    a = make_imagefolder(tmp_path / "A" / "R1", counts={"train": 2, "test": 1})
    b = make_imagefolder(tmp_path / "B" / "R1", counts={"train": 2, "test": 1})
    assert list(bench.describe_datasets([str(a), str(b)])) == ["A/R1", "B/R1"]


def test_each_run_is_saved_as_it_finishes(bench, tmp_path, monkeypatch):
    """A crash in a late run keeps the rows and tables of the runs before it in the JSON."""
    root = make_imagefolder(tmp_path / "leaves", counts={"train": 3, "test": 1})
    calls = []

    def fake_fit(cfg):
        calls.append(cfg)
        if len(calls) == 2:
            raise RuntimeError("late crash")
        return {"test_top1": 40.0, "val_top1": 30.0, "history": [{"train/images_per_s": 5.0}]}

    monkeypatch.setattr(bench, "fit", fake_fit)
    out = tmp_path / "result.json"
    threads = torch.get_num_threads()
    try:
        with pytest.raises(RuntimeError, match="late crash"):
            bench.main(tiny_args([root], out))
    finally:
        torch.set_num_threads(threads)
    assert calls[0].data.val_fraction == 0.2 and calls[0].model.pretrained_file is None
    saved = json.loads(out.read_text())
    assert not saved["complete"] and [r["variant"] for r in saved["runs"]] == ["ce"]
    assert saved["tables"]["leaves"]["ce"]["test_top1_mean"] == 40.0
