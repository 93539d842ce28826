"""Every shipped config parses against the typed sections, and the demo builds its stages from them."""

from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest

from finegrain.commands import demo
from finegrain.config import load_config
from finegrain.errors import ConfigError

CONFIGS = sorted(Path(str(resources.files("finegrain") / "configs")).glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_names_a_known_method(path):
    from finegrain import methods

    cfg = load_config(path)
    assert methods.get(cfg.method.name)
    assert path.read_text().startswith("#"), "first line describes the config"


def test_demo_stage_configs(tmp_path):
    teacher = str(tmp_path / "teacher")
    for stage in demo.STAGES:
        cfg = demo.stage_config(stage, tmp_path, tmp_path / "runs", "t", 1, teacher)
        assert cfg.train.epochs == 1 and cfg.train.run_name == f"demo-t-{stage}"
    distill = demo.stage_config("distill", tmp_path, tmp_path, "t", None, teacher)
    assert distill.distill.teacher == teacher and distill.train.max_minutes == demo.DISTILL_MINUTES < 10
    assert distill.distill.student == "efficientnet_lite0" and distill.train.budget_minutes == 0  # a fixed schedule
    assert distill.method.name == "fast-dfkd" and distill.model.channels_last  # the recipe datafree_fast
    assert demo.stage_config("supervised", tmp_path, tmp_path, "t", None, None).train.max_minutes == 0
    assert demo.stage_config("csdnet", tmp_path, tmp_path, "t", None, None).data.few_shot_k == 5


def test_demo_refuses_bad_stages(tmp_path):
    args = SimpleNamespace(data=str(tmp_path), out=str(tmp_path), epochs=1, stages="supervised,bogus")
    with pytest.raises(ConfigError, match="unknown stage"):
        demo.run(args)
    args.stages = "distill"
    with pytest.raises(ConfigError, match="needs the 'supervised' stage"):
        demo.run(args)


def test_demo_table_says_when_a_stage_met_its_time_limit(capsys):
    row = {"architecture": "efficientnet_lite0", "test_top1": 35.0, "test_top5": 70.0, "train_seconds": 405.0}
    demo.print_table({"distill": {**row, "steps": 118, "stopped_early": True}})
    assert "stopped by its time limit after 118 iterations" in capsys.readouterr().out
    demo.print_table({"distill": {**row, "steps": 125, "stopped_early": False}})
    assert "time limit" not in capsys.readouterr().out
