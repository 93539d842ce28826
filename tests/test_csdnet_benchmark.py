"""benchmarks/csdnet_vs_ce.py at toy size: a recipe and the paper's switches, a train/test-only root,
several roots, missing figures, a crash that a second sitting resumes."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import csdnet_vs_ce as bench
from benchmarks import harness
from conftest import make_imagefolder
from finegrain.commands._common import packaged_config
from test_harness import fake_runner

#: the shipped recipe at toy size: a tiny network, 32 px, one epoch
TINY_RECIPE = """# CSDNet at toy size, for tests
data: {image_size: 32, batch_size: 8, eval_batch_size: 16, few_shot_k: 5, num_workers: 0}
model: {name: test_resnet}
optim: {lr: 0.01, weight_decay: 0.0001}
schedule: {name: onecycle}
method: {name: csdnet}
train: {epochs: 1, accelerator: cpu, eval_every: 0, log_every: 1000}
csdnet: {alpha: 0.2, beta: 0.25}
"""


def tiny_args(roots, tmp_path, *extra):
    recipe = tmp_path / "tiny_csdnet.yaml"
    recipe.write_text(TINY_RECIPE)
    return ["--data", *map(str, roots), "--recipe", str(recipe), "--seeds", "0", "--variants", "ce", "csdnet",
            "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "result.json"), "--threads", "1", *extra]


def test_every_variant_is_the_recipe_and_a_method_or_a_papers_switch():
    assert harness.override_literals(bench.__file__) == []
    assert packaged_config(bench.RECIPE).parent.name == "configs"
    for variant, (method, ablation) in bench.VARIANTS.items():
        assert ablation is None or ablation in harness.ABLATIONS
        cfg = harness.Run(variant, bench.RECIPE, method, ablation=ablation, data="/d").check()
        assert cfg.method.name == method and cfg.data.few_shot_k == 5 and cfg.train.budget_minutes == 0
    off = {v: [k for k in ("ssdp", "ddl", "ssdt")
               if not getattr(harness.Run(v, bench.RECIPE, "csdnet", ablation=a).check().csdnet, k)]
           for v, (m, a) in bench.VARIANTS.items() if m == "csdnet"}
    assert off == {"csdnet": [], "csdnet-no-ssdp": ["ssdp"], "csdnet-no-ddl": ["ddl"], "csdnet-no-ssdt": ["ssdt"]}
    args = bench.parse_args(["--data", "x"])
    assert (args.budget, args.seeds, args.recipe) == (0.0, [0, 1, 2], bench.RECIPE)  # equal epochs by default


def test_train_test_only_root_and_a_root_with_val_give_one_table_each(tmp_path, capsys):
    leaves = make_imagefolder(tmp_path / "leaves", counts={"train": 8, "test": 3})   # no val/
    flowers = make_imagefolder(tmp_path / "flowers", counts={"train": 8, "val": 2, "test": 3}, seed=1)
    argv = tiny_args([leaves, flowers], tmp_path)
    threads = torch.get_num_threads()
    try:
        result = bench.main(argv, runner=harness.execute)   # real (tiny) training, in this process
    finally:
        torch.set_num_threads(threads)

    assert json.loads((tmp_path / "result.json").read_text()) == json.loads(json.dumps(result))
    assert result["argv"] == ["benchmarks/csdnet_vs_ce.py", *argv] and result["complete"]
    assert result["command"].startswith("python -m benchmarks.csdnet_vs_ce --data ")
    assert set(result["tables"]) == {"leaves", "flowers"} and not result["failures"]
    assert result["datasets"]["leaves"]["val"] == "carved" and result["datasets"]["flowers"]["val"] == "split"
    assert result["datasets"]["leaves"]["val_fraction"] == 0.2 and result["datasets"]["flowers"]["val_fraction"] is None
    assert (result["k"], result["image_size"], result["epochs"]) == (5, 32, 1)
    assert [(r["dataset"], r["variant"], r["method"]) for r in result["runs"]] == [
        ("leaves", "ce", "supervised"), ("leaves", "csdnet", "csdnet"),
        ("flowers", "ce", "supervised"), ("flowers", "csdnet", "csdnet")]
    for table in result["tables"].values():
        assert set(table) == {"ce", "csdnet"}
        for row in table.values():
            assert 0.0 <= row["test_top1_mean"] <= 100.0 and row["test_top1_std"] is None  # one seed
            assert row["val_top1_mean"] is not None and 0.0 <= row["val_top1_mean"] <= 100.0
            assert row["throughput_vs_ce"] is not None and row["throughput_vs_ce"] > 0
        assert table["ce"]["throughput_vs_ce"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "leaves: " in printed and "flowers: " in printed and "val carved: 0.2 of train" in printed


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


def test_aggregate_with_missing_val_and_speeds():
    runs = [
        {"dataset": "d", "variant": "ce", "seed": 0, "test_top1": 50.0, "val_top1": None, "train_images_per_s": 10.0},
        {"dataset": "d", "variant": "ce", "seed": 1, "test_top1": 60.0, "val_top1": 40.0, "train_images_per_s": 12.0},
        {"dataset": "d", "variant": "csdnet", "seed": 0, "test_top1": 70.0, "val_top1": None, "train_images_per_s": None},
    ]
    table = bench.aggregate(runs, ["ce", "csdnet", "csdnet-no-ddl"])
    assert set(table) == {"ce", "csdnet"}   # a variant without runs is left out
    assert table["ce"]["test_top1_mean"] == 55.0 and table["ce"]["val_top1_mean"] == 40.0
    assert table["ce"]["val_top1_std"] is None and table["ce"]["runs"] == 2
    assert table["csdnet"]["val_top1_mean"] is None and table["csdnet"]["val_top1_std"] is None
    assert table["csdnet"]["throughput_vs_ce"] is None and table["ce"]["throughput_vs_ce"] == 1.0
    text = harness.text_table(bench.COLUMNS, [{"variant": v, **t} for v, t in table.items()])
    assert any(line.startswith("csdnet ") and " - " in line for line in text.splitlines())
    assert bench.aggregate([], ["ce"]) == {}


def test_missing_root_is_a_clear_error(tmp_path):
    make_imagefolder(tmp_path / "only_train", counts={"train": 2})
    with pytest.raises(SystemExit, match="no test/ folder"):
        bench.describe_datasets([str(tmp_path / "only_train")])
    a = make_imagefolder(tmp_path / "A" / "R1", counts={"train": 2, "test": 1})
    b = make_imagefolder(tmp_path / "B" / "R1", counts={"train": 2, "test": 1})
    assert list(bench.describe_datasets([str(a), str(b)])) == ["A/R1", "B/R1"]
    runs = bench.plan(bench.parse_args(["--data", str(a), str(b), "--seeds", "0", "--variants", "ce"]),
                      bench.describe_datasets([str(a), str(b)]), tmp_path)
    assert [r.run_id for r in runs] == ["A_R1-ce-s0", "B_R1-ce-s0"] and runs[0].val_fraction == 0.2


def test_a_crashed_run_is_recorded_and_the_next_sitting_runs_only_it(tmp_path):
    root = make_imagefolder(tmp_path / "leaves", counts={"train": 3, "test": 1})
    argv = tiny_args([root], tmp_path)
    calls = []
    first = bench.main(argv, runner=fake_runner({"ce": 40.0}, calls=calls, fail={"csdnet"}))
    assert not first["complete"] and [r["variant"] for r in first["runs"]] == ["ce"]
    assert [f["variant"] for f in first["failures"]] == ["csdnet"] and "csdnet crashed" in first["failures"][0]["error"]
    assert first["tables"]["leaves"]["ce"]["test_top1_mean"] == 40.0
    second = bench.main(argv, runner=fake_runner({"ce": 40.0}, calls=calls))
    assert calls == ["leaves-ce-s0", "leaves-csdnet-s0", "leaves-csdnet-s0"]
    assert second["complete"] and [r["variant"] for r in second["runs"]] == ["ce", "csdnet"]
    assert len(second["sittings"]) == 2 and not second["failures"]
