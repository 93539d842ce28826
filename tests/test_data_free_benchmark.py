"""benchmarks/data_free.py: the equal-wall-clock arithmetic and the best-baseline choice (no training)."""

from __future__ import annotations

import pytest

from conftest import committed_result, load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("data_free")


def test_budget_minus_fixed_costs_over_step_time(bench):
    assert bench.plan_iterations(360, 60, 0.5) == 600
    assert bench.plan_iterations(360, 60, 0.7) == 428          # floor: never over the budget
    assert bench.plan_iterations(12, 30, 0.5) == 1             # fixed costs alone exceed the budget
    assert bench.plan_iterations(12, 30, 0.5, minimum=3) == 3
    with pytest.raises(ValueError):
        bench.plan_iterations(360, 0, 0)


def test_runs_stop_by_the_wall_clock_before_the_final_evaluation(bench):
    assert bench.time_limit_minutes(360) == pytest.approx((360 - bench.EVAL_RESERVE_S) / 60)
    assert bench.time_limit_minutes(12) == pytest.approx(0.1)    # --quick: at least half the budget
    assert bench.OVERPLAN > 1  # scheduled past the probe's estimate, so the limit, not the schedule, ends a run


def test_step_time_skips_the_first_iteration_and_epoch_boundaries(bench):
    # iteration 1 ends at 10 s (set-up, warm-up), then 0.5 s each; 3 per epoch, 2 s at the epoch boundary
    ends = [10.0, 10.5, 11.0, 13.0, 13.5, 14.0]
    assert bench.step_seconds(ends, 3) == pytest.approx(0.5)
    assert bench.step_seconds([1.0, 2.0, 4.0], 3) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        bench.step_seconds([1.0], 3)


def test_real_data_epochs_hold_at_most_one_pass(bench):
    assert bench.split_epochs(100, 1) == (1, 100)
    assert bench.split_epochs(100, 1, per_epoch_cap=42) == (3, 33)   # 680 // 16 = 42 batches per pass
    assert bench.split_epochs(30, 1, per_epoch_cap=42) == (1, 30)
    assert bench.split_epochs(100, 4) == (4, 25)


def test_best_baseline_is_chosen_by_seed0_val_never_test(bench):
    rows = [
        {"variant": "dfad", "seed": 0, "val_top1": 20.0, "test_top1": 40.0},
        {"variant": "deepinversion", "seed": 0, "val_top1": 30.0, "test_top1": 10.0},
        {"variant": "dfq", "seed": 1, "val_top1": 90.0, "test_top1": 90.0},      # not seed 0
        {"variant": "dfkd-fgvc", "seed": 0, "val_top1": 99.0, "test_top1": 99.0},  # not a baseline
        {"variant": "zskt", "seed": 0, "val_top1": None, "test_top1": 50.0},
    ]
    names = ["deepinversion", "dfad", "dfq", "zskt"]
    assert bench.pick_best_baseline(rows, names) == "deepinversion"
    tie = [{"variant": "zskt", "seed": 0, "val_top1": 5.88}, {"variant": "cmi", "seed": 0, "val_top1": 5.88}]
    assert bench.pick_best_baseline(tie, ["cmi", "zskt"]) == "cmi"    # ties: first in name order
    assert bench.pick_best_baseline([], names) is None


def test_summary_and_plain_verdict(bench):
    rows = [{"variant": "dfkd-fgvc", "seed": s, "test_top1": t, "val_top1": t} for s, t in enumerate([10.0, 12.0, 14.0])]
    rows += [{"variant": "dfad", "seed": 0, "test_top1": 20.0, "val_top1": 19.0}]
    summary = bench.summarize(rows)
    assert summary["dfkd-fgvc"]["test_top1_mean"] == pytest.approx(12.0)
    assert summary["dfkd-fgvc"]["test_top1_std"] == pytest.approx(2.0)
    assert summary["dfkd-fgvc"]["seeds"] == [0, 1, 2]
    assert summary["dfad"]["test_top1_std"] is None
    lines = bench.verdict(summary)
    assert "beat dfad" in lines[0] and "NO" in lines[0]
    assert "not both run" in lines[1]


def test_every_data_free_method_is_a_variant_and_baselines_exclude_dfkd(bench):
    from finegrain import methods

    table = bench.variants()
    data_free = {i.name for i in methods.available() if not i.cls.needs_train_data}
    assert data_free <= set(table) and {"kd", "supervised", *bench.ABLATIONS} <= set(table)
    base = bench.baselines(table)
    assert "dfad" in base and "deepinversion" in base
    assert not {"dfkd-fgvc", "kd", "supervised", *bench.ABLATIONS} & set(base)
    assert "dfkd-fgvc-sam" not in base


def test_the_sam_ablation_flips_whatever_the_main_row_runs(bench):
    """PRACTICAL runs DFKD-FGVC without its SAM, so the ablation puts the paper's λ back after it;
    --no-practical keeps the paper's SAM, so the ablation is the paper's own λ = 0."""
    from finegrain.config import load_config

    practical, paper = bench.variants(practical=True), bench.variants(practical=False)
    assert "dfkd-fgvc-sam" in practical and "dfkd-fgvc-lambda0" not in practical
    assert "dfkd-fgvc-lambda0" in paper and "dfkd-fgvc-sam" not in paper
    args = bench.parse_args([])
    main = load_config(bench.DISTILL_CONFIG, bench.method_overrides(args, "dfkd-fgvc", []))
    sam = load_config(bench.DISTILL_CONFIG, bench.method_overrides(args, "dfkd-fgvc", practical["dfkd-fgvc-sam"][1]))
    assert (main.generator.attention_lambda, sam.generator.attention_lambda) == (0.0, 0.05)
    assert main.generator.lr == sam.generator.lr == 0.002
    args = bench.parse_args(["--no-practical"])
    main = load_config(bench.DISTILL_CONFIG, bench.method_overrides(args, "dfkd-fgvc", []))
    ablated = load_config(bench.DISTILL_CONFIG, bench.method_overrides(args, "dfkd-fgvc", paper["dfkd-fgvc-lambda0"][1]))
    assert (main.generator.attention_lambda, ablated.generator.attention_lambda) == (0.05, 0.0)


def test_quick_defaults_and_overrides(bench):
    args = bench.parse_args(["--quick"])
    assert (args.minutes, args.seeds, args.teacher_epochs, args.probe_iterations) == (0.2, 1, 1, 3)
    args = bench.parse_args(["--quick", "--seeds", "2", "--set", "optim.lr=0.01"])
    assert args.seeds == 2
    assert bench.method_overrides(args, "dfad", [])[-1] == "optim.lr=0.01"
    assert bench.method_overrides(args, "dfad", [])[: len(bench.PRACTICAL)] == bench.PRACTICAL
    assert bench.method_overrides(args, "kd", []) == []
    args = bench.parse_args(["--no-practical"])
    assert (args.minutes, args.seeds) == (6.0, 3)
    assert bench.method_overrides(args, "dfkd-fgvc", ["dfkd.mhad=false"]) == bench.PAPER + ["dfkd.mhad=false"]
    assert "generator.class_conditional=false" in bench.method_overrides(args, "dfad", [])


#: keys of ``oxford17_dfkd_cpu`` that ``--no-practical`` rightly keeps: where the data and model
#: come from, the equal-wall-clock budget the benchmark sets itself, and CPU sizes
KEPT_BY_NO_PRACTICAL = {
    "method.name", "distill.student", "distill.student_pretrained_file", "distill.generator_steps",
    "distill.student_steps", "distill.iterations_per_epoch", "generator.channels", "optim.name",
    "optim.momentum", "optim.weight_decay", "schedule.name",
}


def test_no_practical_resets_every_practical_key_of_the_base_config(bench):
    """A practical key added to the config must be added to PAPER (or, knowingly, to the list above)."""
    import yaml

    config = yaml.safe_load(bench.DISTILL_CONFIG.read_text())
    keys = {f"{section}.{key}" for section, values in config.items() if section not in ("data", "train")
            for key in values}
    reset = {override.split("=", 1)[0] for override in bench.PAPER}
    assert keys - KEPT_BY_NO_PRACTICAL - reset == set()


@pytest.mark.parametrize("name", ["data_free", "data_free_cars196"])
def test_committed_results_keep_the_comparable_shape(name):
    committed_result(name, "data_free")
