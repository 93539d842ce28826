"""benchmarks/data_free_mnist.py and its recipes: every run is a shipped mnist_* recipe that loads
and binds; the recipes keep the settings the benchmark's override lists had; the split is seeded and
disjoint; the benchmark writes one JSON through the harness (no training here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from benchmarks import data_free_mnist as bench
from benchmarks import harness
from finegrain.commands._common import packaged_config
from finegrain.config import load_config
from test_harness import fake_runner

DATA_FREE = ["dafl", "dfad", "dfkd-fgvc", "deepinversion"]


def shipped(methods=None):
    """(method, variant) of every shipped MNIST data-free recipe."""
    return [(m, v) for m in (methods or bench.METHODS) if m != "kd" for v in bench.VARIANTS if bench.recipe_of(m, v)]


def config_of(method: str, variant: str):
    """The config a benchmark run of ``method`` in ``variant`` trains (bound: a key its method does not
    read, or an unknown key, fails)."""
    return harness.Run("x", bench.recipe_of(method, variant), method, teacher="/t", data="/d").check()


def test_every_run_names_a_shipped_recipe_that_loads():
    assert bench.recipe_of("noise-kd", "practical") is None  # noise-kd has one setting
    for method, variant in shipped():
        recipe = bench.recipe_of(method, variant)
        assert packaged_config(recipe).parent.name == "configs", recipe
        assert load_config(packaged_config(recipe)).method.name == method
        assert config_of(method, variant).method.name == method
    cfg = load_config(packaged_config(bench.TEACHER_RECIPE))
    assert (cfg.model.name, cfg.data.image_size, cfg.data.crop_ratio, cfg.data.hflip) == ("lenet5", 32, 1.0, False)
    assert cfg.data.mean == [0.1307] * 3 and cfg.data.std == [0.3081] * 3


def test_the_script_holds_no_override_lists():
    assert harness.override_literals(bench.__file__) == []
    assert not {"COMMON", "UPSAMPLE", "PAPER", "SOFT_KD", "CUTMIX", "POOL", "PRACTICAL_DFKD", "STUDENT_STEPS",
                "PRACTICAL"} & set(vars(bench))


def test_data_free_recipes_take_size_and_normalization_from_the_teacher_and_say_how_to_run():
    names = [bench.recipe_of(m, v) for m, v in shipped()]
    for name in names + [bench.TEACHER_RECIPE]:
        text = packaged_config(name).read_text()
        header = [line for line in text.splitlines() if line.startswith("#")]
        assert any(f"--config {name}" in line for line in header), f"{name}: the command that runs it"
        assert "paper" in text and "finegrain's" in text, f"{name}: which values are the paper's and which finegrain's"
        if name != bench.TEACHER_RECIPE:
            data = yaml.safe_load(text)["data"]
            assert not {"image_size", "crop_ratio", "mean", "std"} & set(data), f"{name}: the teacher's, not the recipe's"


def test_generators_and_pixels_are_grey_and_students_learn_with_dfads_optimizer():
    for method, variant in shipped(DATA_FREE + ["noise-kd"]):
        if True:
            cfg = config_of(method, variant)
            if method in ("dafl", "dfad", "dfkd-fgvc"):
                assert cfg.generator.grayscale, f"{variant}/{method}: the MNIST generator emits one grey channel"
            if method == "deepinversion":
                assert cfg.deepinversion.grayscale and not cfg.deepinversion.flip
            assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
            assert cfg.distill.student == "lenet5_half" and cfg.data.batch_size == 128


def test_baselines_use_their_published_generator_and_dfkd_fgvc_its_papers():
    for variant in bench.VARIANTS:
        for method in ("dafl", "dfad"):  # DAFL's and DFAD's upsample generator, standardized output
            g = config_of(method, variant).generator
            assert (g.architecture, g.output_norm, g.channels[:2]) == ("upsample", "standardize", [32, 16]), method
    paper = config_of("dfkd-fgvc", "paper")
    assert (paper.generator.architecture, paper.generator.output_norm, paper.generator.attention_lambda) == (
        "attention", "none", 0.05)
    assert (paper.dfkd.alpha, paper.dfkd.beta, paper.dfkd.gamma, paper.dfkd.mhad, paper.dfkd.sfcl) == (0.3, 10, 8, True, True)
    practical = config_of("dfkd-fgvc", "practical")  # upsample blocks, spatial attention kept
    assert (practical.generator.architecture, practical.generator.attention_lambda) == ("upsample", 0.05)
    assert practical.generator.class_conditional and (practical.dfkd.alpha, practical.dfkd.gamma,
                                                      practical.generator.target_ce, practical.dfkd.adversarial) == (0.1, 0.8, 10, 0.1)


def test_the_schedules_of_the_former_override_lists():
    paper = {m: config_of(m, "paper").distill for m in DATA_FREE + ["noise-kd"]}
    assert {m: (d.generator_steps, d.student_steps) for m, d in paper.items() if m != "noise-kd"} == {
        "dafl": (1, 5), "dfad": (1, 5), "dfkd-fgvc": (1, 5), "deepinversion": (20, 5)}
    assert paper["noise-kd"].student_steps == 5
    assert all(d.pool_size == 0 and d.pool_mix == "none" and d.warmup_steps == 0 and d.temperature == 1.0
               for d in paper.values())
    practical = {m: config_of(m, "practical").distill for m in DATA_FREE}
    assert {m: d.student_steps for m, d in practical.items()} == {"dafl": 5, "dfad": 50, "dfkd-fgvc": 50,
                                                                  "deepinversion": 20}
    assert {m for m, d in practical.items() if d.pool_size} == {"dafl", "dfkd-fgvc"}  # DFAD: fresh batches
    assert {m: d.pool_mix for m, d in practical.items()} == {"dafl": "cutmix", "dfkd-fgvc": "cutmix",
                                                             "deepinversion": "cutmix", "dfad": "none"}
    for method in ("dafl", "dfkd-fgvc"):
        d = practical[method]
        assert (d.warmup_steps, d.pool_size, d.pool_flip) == (50, 2048, False)
    for method in ("dafl", "dfkd-fgvc", "deepinversion"):  # DFAD's student loss is an L1 on logits: no temperature
        assert (practical[method].temperature, practical[method].kl_direction) == (4.0, "teacher_student")
    kd = harness.Run("kd", bench.KD_RECIPE, "kd", teacher="/t", data="/d").check()
    assert (kd.distill.student, kd.data.hflip, kd.optim.lr, kd.train.epochs) == ("lenet5_half", False, 0.1, 12)


def test_rows_tuning_and_plan():
    table = bench.rows(["practical"])
    assert table == {"dafl": ("mnist_datafree_practical_dafl", "dafl"), "dfad": ("mnist_datafree_practical_dfad", "dfad"),
                     "dfkd-fgvc": ("mnist_datafree_practical_dfkd-fgvc", "dfkd-fgvc"),
                     "deepinversion": ("mnist_datafree_practical_deepinversion", "deepinversion"),
                     "noise-kd": ("mnist_datafree_paper_noise-kd", "noise-kd"), "kd": ("mnist_kd", "kd")}
    assert bench.tuned_rows(table) == ["dafl", "dfad", "dfkd-fgvc", "deepinversion", "noise-kd"]
    assert "dafl-paper" in bench.rows(["paper", "practical"]) and "noise-kd-paper" not in bench.rows(["paper"])
    args = bench.parse_args(["--methods", "dafl", "kd", "--seeds", "0", "1"])
    table = bench.rows(args.variants, args.methods)
    trials = bench.tuning_plan(args, table, "/t", "/d", "/o")
    assert [r.name for r in trials] == ["dafl"] * bench.TUNING["trials"] and trials[0].settings == ()
    for run in trials:
        run.check()
    assert {key for run in trials for key, _ in run.settings} >= {"distill.student_steps", "generator.lr", "optim.lr"}
    runs = bench.plan(args, table, "/t", "/d", "/o", {"dafl": {"settings": [["optim.lr", 0.3]], "trials": 6}})
    assert [(r.name, r.recipe, r.seed, r.settings) for r in runs] == [
        ("dafl", "mnist_datafree_practical_dafl", 0, (("optim.lr", 0.3),)), ("kd", "mnist_kd", 0, ()),
        ("dafl", "mnist_datafree_practical_dafl", 1, (("optim.lr", 0.3),)), ("kd", "mnist_kd", 1, ())]
    assert all(r.budget_minutes == 6.0 and r.accelerator is None for r in runs)
    assert bench.parse_args(["--device", "cuda"]).device == "cuda"
    quick = bench.parse_args(["--quick"])
    assert (quick.budget, quick.seeds, quick.teacher_budget) == (0.25, [0], 0.2) and "results" in quick.out


def test_split_is_seeded_per_class_and_disjoint():
    labels = np.repeat(np.arange(10), 500)[np.random.default_rng(0).permutation(5000)]  # mnist_5k: 500 per digit
    parts = bench.split_rows(labels, seed=3)
    assert [len(p["test"]) for p in parts] == [100] * 10 and [len(p["val"]) for p in parts] == [50] * 10
    assert sum(len(p["train"]) for p in parts) == 3500
    for digit, p in enumerate(parts):
        rows = np.concatenate([p["test"], p["val"], p["train"]])
        assert len(set(rows.tolist())) == 500 and (labels[rows] == digit).all()
    again, other = bench.split_rows(labels, seed=3), bench.split_rows(labels, seed=4)
    assert all((a["test"] == p["test"]).all() for a, p in zip(again, parts))
    assert any((o["test"] != p["test"]).any() for o, p in zip(other, parts))


def test_the_benchmark_tunes_every_method_alike_and_writes_one_json(tmp_path):
    workdir = tmp_path / "w"
    (workdir / "mnist5k-split0" / "test").mkdir(parents=True)  # the digits are there: not written again
    out = tmp_path / "mnist.json"
    argv = ["--methods", "dafl", "noise-kd", "kd", "--variants", "paper", "practical", "--seeds", "0", "1",
            "--workdir", str(workdir), "--out", str(out)]
    result = bench.main(argv, runner=fake_runner({"dafl-paper": 80.0, "dafl": 90.0, "kd": 97.0}))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["argv"][1:] == argv and result["complete"] and result["teacher_recipe"] == "mnist_lenet5"
    names = [r["variant"] for r in result["runs"]]
    assert names == ["dafl", "dafl-paper", "noise-kd", "kd"] * 2
    trials = {name: sum(r["variant"] == name for r in result["tuning_runs"]) for name in ("dafl", "noise-kd")}
    assert trials == {"dafl": bench.TUNING["trials"], "noise-kd": bench.TUNING["trials"]}   # the same for every method
    summary = {r["variant"]: r for r in result["summary"]}
    assert summary["dafl"]["tuning_trials"] == bench.TUNING["trials"] and summary["dafl-paper"]["tuning_trials"] == 0
    assert summary["kd"]["published"] == 98.8 and summary["kd"]["test_top1_mean"] == 97.5
    assert summary["dafl"]["published"] == 98.2 and summary["dafl-paper"]["published"] is None
    assert "Table 2" in result["published_source"] and set(result["tuning"]["chosen"]) == {"dafl", "noise-kd"}
    assert all(r["teacher_test_top1"] == 30.0 and r["teacher_arch"] == "efficientnet_lite0" for r in result["runs"])


@pytest.mark.parametrize("method", DATA_FREE)
def test_practical_and_paper_recipes_of_a_method_differ_only_where_their_comments_say(method):
    """Every value of a practical recipe that is not the paper recipe's sits on a line that says so."""
    paper = yaml.safe_load(packaged_config(bench.recipe_of(method, "paper")).read_text())
    lines = packaged_config(bench.recipe_of(method, "practical")).read_text().splitlines()
    practical = yaml.safe_load("\n".join(lines))
    for section, values in practical.items():
        for key, value in values.items():
            if paper.get(section, {}).get(key) != value and key != "iterations_per_epoch":
                line = next(line for line in lines if line.strip().startswith(f"{key}:"))
                assert "#" in line, f"{method}: {section}.{key}={value!r} departs from the paper recipe without a comment"
