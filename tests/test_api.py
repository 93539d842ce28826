"""The Python API: ``finegrain.train``, ``finegrain.distill``, ``finegrain.list_methods`` and the
README's example, run as written on a tiny dataset and model."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import finegrain
from conftest import make_imagefolder
from finegrain.api import build_config, config_key
from finegrain.errors import ConfigError
from test_losses_datafree import one_thread  # noqa: F401  (autouse: one torch thread)

README = Path(__file__).resolve().parent.parent / "README.md"
REAL_ROOT = "../shared/data/oxford17"


def readme_api_block() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, flags=re.S) if "finegrain.train(" in b]
    assert blocks, "README's Python API section has no python block calling finegrain.train"
    return blocks[0]


def tiny_yaml(path: Path, sections: dict) -> str:
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def test_import_finegrain_stays_light():
    code = "import sys, finegrain; print(sorted(m for m in ('torch', 'timm', 'finegrain.methods') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_override_keywords_map_to_config_keys(tmp_path):
    assert config_key("train__epochs") == "train.epochs" and config_key("train.epochs") == "train.epochs"
    cfg = build_config("oxford17_cpu", {"train.epochs": 1, "optim__lr": 0.5, "data__root": "flowers"})
    assert (cfg.train.epochs, cfg.optim.lr, cfg.model.name) == (1, 0.5, "efficientnet_lite0")
    assert cfg.data.root == str(Path.cwd() / "flowers")
    assert build_config({"train": {"epochs": 3}}).train.epochs == 3
    with pytest.raises(ConfigError, match=r"train__epoch=.*unknown config key 'train.epoch'"):
        build_config(None, {"train__epoch": 1})
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        finegrain.train(None, train__epochs="two")


def test_data_free_practical_keys_reach_the_config_under_both_spellings():
    """The keys the README names for data-free runs, as ``finegrain distill`` (dots) and Python (``__``) pass them."""
    for key in ("distill__student_ema", "distill.student_ema"):
        assert build_config("datafree_practical", {key: 0.999}).distill.student_ema == 0.999
    assert build_config("datafree_practical").distill.student_ema == 0.0  # the shipped config: the live student
    with pytest.raises(ConfigError, match="distill.student_ema must be float, got 'maybe'"):
        build_config(None, {"distill__student_ema": "maybe"})


def test_synthesis_options_reach_the_config_under_both_spellings():
    """The README's synthesis option ``generator.upsampling``, as ``finegrain distill`` (dots) and
    Python (``__``) pass it; the default is the paper's transposed convs."""
    for key in ("generator__upsampling", "generator.upsampling"):
        assert build_config(None, {key: "resize"}).generator.upsampling == "resize"
    assert build_config(None).generator.upsampling == "transposed"
    with pytest.raises(ConfigError, match="generator.upsampling"):
        build_config(None, {"generator.upsampling": "bilinear"})


def test_keep_freed_memory_reaches_the_config_under_both_spellings():
    """The README's switch for the CPU allocator setting, as the CLI (dots) and Python (``__``) pass it."""
    assert build_config("oxford17_cpu").train.keep_freed_memory is True
    assert build_config("oxford17_cpu", {"train__keep_freed_memory": False}).train.keep_freed_memory is False
    assert build_config("oxford17_cpu", {"train.keep_freed_memory": False}).train.keep_freed_memory is False
    with pytest.raises(ConfigError, match="train.keep_freed_memory must be bool, got 'maybe'"):
        build_config(None, {"train__keep_freed_memory": "maybe"})


def test_freeze_through_reaches_the_config_under_both_spellings():
    """The README's key for freezing a model's early blocks, as the CLI (dots) and Python (``__``) pass it."""
    assert build_config("oxford17_cpu").optim.freeze_through == ""
    assert build_config("oxford17_cpu", {"optim__freeze_through": "blocks.3"}).optim.freeze_through == "blocks.3"
    assert build_config("oxford17_cpu", {"optim.freeze_through": "blocks.3"}).optim.freeze_through == "blocks.3"


def test_time_limit_and_health_sampling_reach_the_config_under_both_spellings():
    """The README's ``train.max_minutes`` and ``distill.health_bn_every``, as the CLI (dots) and Python (``__``) pass them."""
    shipped = build_config("datafree_practical")
    assert (shipped.train.max_minutes, shipped.distill.health_bn_every) == (0.0, 4)
    for limit, every in (("train__max_minutes", "distill__health_bn_every"), ("train.max_minutes", "distill.health_bn_every")):
        cfg = build_config("datafree_practical", {limit: 6.5, every: 1})
        assert (cfg.train.max_minutes, cfg.distill.health_bn_every) == (6.5, 1)
    with pytest.raises(ConfigError, match="train.max_minutes must be float, got 'soon'"):
        build_config(None, {"train__max_minutes": "soon"})


def test_list_methods_names_every_registered_method():
    from finegrain import methods

    names = finegrain.list_methods()
    assert names == sorted(names) and {"supervised", "csdnet", "dfkd-fgvc"} <= set(names)
    assert names == [info.name for info in methods.available()]


def test_readme_python_api_block_runs(tmp_path, monkeypatch, capsys):
    """The block as the README shows it; only the dataset, the configs and the student are swapped
    for tiny ones (names substituted in the text), so it takes seconds."""
    root = make_imagefolder(tmp_path / "data", classes=3, counts={"train": 4, "val": 1, "test": 2})
    runs = tmp_path / "runs"
    common = {"data": {"image_size": 32, "batch_size": 4, "eval_batch_size": 8, "num_workers": 0},
              "train": {"epochs": 1, "accelerator": "cpu", "out_dir": str(runs), "log_every": 1}}
    train_cfg = tiny_yaml(tmp_path / "train.yaml", {**common, "model": {"name": "test_resnet"},
                                                     "optim": {"lr": 0.05, "weight_decay": 0.0}})
    distill_cfg = tiny_yaml(tmp_path / "distill.yaml", {
        **common, "distill": {"generator_steps": 1, "student_steps": 1, "iterations_per_epoch": 2},
        "generator": {"channels": [32, 16, 16, 8, 8], "noise_dim": 16}})
    code = readme_api_block()
    for real, tiny in ((REAL_ROOT, str(root)), ('"oxford17_cpu"', repr(train_cfg)),
                       ('"datafree_practical"', repr(distill_cfg)), ('"resnet18"', '"test_efficientnet"')):
        assert real in code, f"README's API block no longer mentions {real}"
        code = code.replace(real, tiny)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)

    run, student = namespace["run"], namespace["student"]
    assert Path(run["run_dir"]) == runs / "flowers" and (runs / "flowers" / "model.json").is_file()
    assert student["method"] == "dfkd-fgvc" and student["architecture"] == "test_efficientnet"
    assert 0 <= student["test_top1"] <= 100
    printed = capsys.readouterr().out
    assert "'supervised'" in printed and f"test_efficientnet {student['test_top1']}" in printed
