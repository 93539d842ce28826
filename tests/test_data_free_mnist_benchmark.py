"""benchmarks/data_free_mnist.py: its overrides are real keys, its split is seeded and disjoint, and
the committed result has the shape the issue asks for (no training here)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import committed_result, load_benchmark
from finegrain.config import load_config


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("data_free_mnist")


def config_of(bench, variant: str, method: str):
    """The config a benchmark run of ``method`` in ``variant`` builds (strict: a typo in a key raises)."""
    return load_config(None, [f"method.name={method}", *bench.COMMON, *bench.VARIANTS[variant][method]])


def test_every_variant_names_only_real_config_keys(bench):
    for variant, table in bench.VARIANTS.items():
        for method in table:
            cfg = config_of(bench, variant, method)
            assert cfg.generator.grayscale, f"{variant}/{method}: the MNIST generator emits one grey channel"
            assert cfg.deepinversion.grayscale, f"{variant}/{method}: and DeepInversion optimizes grey pixels"
            assert cfg.optim.name == "sgd" and cfg.optim.lr == pytest.approx(0.1)


def test_baselines_use_their_published_generator_and_dfkd_fgvc_its_papers(bench):
    def generator(variant, method):
        return config_of(bench, variant, method).generator
    for variant in ("paper", "practical"):
        for method in ("dafl", "dfad"):  # DAFL's and DFAD's upsample generator, standardized output
            cfg = generator(variant, method)
            assert (cfg.architecture, cfg.output_norm) == ("upsample", "standardize"), f"{variant}/{method}"
    paper = generator("paper", "dfkd-fgvc")  # the paper's attention generator, no output norm
    assert (paper.architecture, paper.output_norm, paper.attention_lambda) == ("attention", "none", 0.05)
    practical = generator("practical", "dfkd-fgvc")  # practical: upsample blocks, spatial attention kept
    assert practical.architecture == "upsample" and practical.attention_lambda == 0.05


def test_practical_variant_adds_the_practical_keys_to_the_papers(bench):
    for method, paper in bench.PAPER.items():
        if method == "noise-kd":
            assert method not in bench.VARIANTS["practical"]
            continue
        practical = bench.VARIANTS["practical"][method]
        assert practical[:len(paper)] == paper
        cfg = config_of(bench, "practical", method)
        assert cfg.distill.student_steps == bench.STUDENT_STEPS[method], f"{method}: its val-chosen k wins"
        if method != "dfad":  # DFAD's student loss is the L1 of its logits: no temperature
            assert (cfg.distill.temperature, cfg.distill.kl_direction) == (4.0, "teacher_student"), method
    pooled = {m for m in bench.VARIANTS["practical"] if config_of(bench, "practical", m).distill.pool_size}
    assert pooled == {"dafl", "dfkd-fgvc"}  # DFAD: fresh batches (a pool let its generator run away)


def test_practical_pools_cutmix_their_draws(bench):
    mix = {m: config_of(bench, "practical", m).distill.pool_mix for m in bench.VARIANTS["practical"]}
    assert mix == {"dafl": "cutmix", "dfkd-fgvc": "cutmix", "deepinversion": "cutmix", "dfad": "none"}
    assert all(config_of(bench, "paper", m).distill.pool_mix == "none"
               for m in bench.VARIANTS["paper"])  # the paper variants keep fresh, unmixed draws


def test_every_method_runs_by_default_and_noise_kd_in_its_one_setting(bench):
    assert bench.variants_of("dfkd-fgvc", ["practical"]) == ["practical"]
    assert bench.variants_of("dafl", ["paper", "practical"]) == ["paper", "practical"]
    assert bench.variants_of("noise-kd", ["practical"]) == ["paper"]
    assert bench.variants_of("kd", ["practical"]) == ["real data"]


def test_split_is_seeded_per_class_and_disjoint(bench):
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


def test_committed_result_has_the_comparable_shape():
    result = committed_result("data_free_mnist", "data_free_mnist")
    assert result["teacher"]["test_top1"] > 90
    for method in {row["method"] for row in result["runs"]}:
        assert sum(row["chosen"] for row in result["runs"] if row["method"] == method) == 1


def test_device_option_reaches_every_run_and_defaults_to_the_cpu(bench, monkeypatch, tmp_path):
    def accelerator(argv):
        monkeypatch.setattr("sys.argv", ["data_free_mnist.py", *argv])
        args = bench.parse_args()
        return load_config(None, bench.common_overrides(args, tmp_path, tmp_path)).train.accelerator
    assert accelerator([]) == "cpu"  # the committed figures are 2-core CPU figures
    assert accelerator(["--device", "cuda"]) == "cuda"
