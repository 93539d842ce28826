"""Each method reads only its own configuration: what a run stores, what it refuses, what still loads."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_imagefolder, tiny_config
from finegrain import methods
from finegrain.config import CORE_SECTIONS, Config, load_config
from finegrain.config_fields import SECTIONS
from finegrain.errors import ConfigError

SHIPPED = sorted((Path(__file__).resolve().parent.parent / "finegrain" / "configs").glob("*.yaml"))


def stored_sections(run_dir: Path) -> dict:
    """Section names of config.yaml, the newest checkpoint sidecar and model.json of a run."""
    run_dir = Path(run_dir)
    sidecar = sorted((run_dir / "checkpoints").glob("*.json"))[-1]
    return {"config.yaml": list(yaml.safe_load((run_dir / "config.yaml").read_text())),
            "sidecar": list(json.loads(sidecar.read_text())["config"]),
            "model.json": list(json.loads((run_dir / "model.json").read_text())["config"])}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A one-epoch supervised run (also the kd teacher)."""
    from finegrain.engine.loop import fit

    base = tmp_path_factory.mktemp("method_config")
    root = make_imagefolder(base / "data")
    summary = fit(tiny_config(root, base / "runs", **{"train.epochs": 1, "train.run_name": "teacher"}))
    return {"root": root, "base": base, "run": Path(summary["run_dir"])}


def test_building_and_loading_a_config_imports_no_torch_timm_or_method():
    code = ("import sys\n"
            "from finegrain.config import Config, describe_sections, load_config\n"
            f"load_config({str(SHIPPED[0])!r}, ['optim.lr=0.1', 'csdnet.alpha=0.5'])\n"
            "Config(); describe_sections()\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'torchvision')\n"
            "         or m.startswith('finegrain.methods')]\n"
            "print(heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_method_declares_known_sections():
    for info in methods.available():
        own = info.cls.config_sections
        assert set(own) <= set(SECTIONS) and not set(own) & set(CORE_SECTIONS), info.name
        weights = getattr(info.cls, "weights_section", None)
        if weights is not None:  # generator baselines read their term weights from their own section
            assert weights in own, info.name
    assert methods.sections_of("supervised") == CORE_SECTIONS
    assert methods.sections_of("kd") == (*CORE_SECTIONS, "kd", "distill")


def test_supervised_run_stores_only_the_core_sections(teacher):
    for where, names in stored_sections(teacher["run"]).items():
        assert names == list(CORE_SECTIONS), where


def test_kd_run_stores_core_plus_its_own_sections(teacher):
    from finegrain.engine.loop import fit

    cfg = tiny_config(teacher["root"], teacher["base"] / "runs", **{
        "method.name": "kd", "train.epochs": 1, "train.run_name": "kd", "train.iterations_per_epoch": 1,
        "distill.teacher": str(teacher["run"]), "distill.student": "test_resnet"})
    summary = fit(cfg)
    for where, names in stored_sections(summary["run_dir"]).items():
        assert sorted(names) == sorted([*CORE_SECTIONS, "kd", "distill"]), where


def test_override_of_a_foreign_section_is_one_line_naming_key_and_method(teacher, capsys):
    from finegrain.cli import main

    code = main(["train", "--method", "supervised", "--data", str(teacher["root"]), "--out", str(teacher["base"] / "x"),
                 "model.name=test_resnet", "csdnet.alpha=0.1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "csdnet.alpha: method 'supervised' does not read section 'csdnet'" in err
    assert not (teacher["base"] / "x").exists()  # refused before anything was built
    with pytest.raises(ConfigError, match=r"distill.student: method 'csdnet' does not read section 'distill'"):
        methods.bind_config(load_config(None, ["method.name=csdnet", "distill.student=resnet18"]))


def test_sections_a_file_sets_for_other_methods_are_ignored():
    # datafree_practical holds dfkd settings and deepinversion ones: one file, several methods
    cfg = load_config(SHIPPED[[p.stem for p in SHIPPED].index("datafree_practical")], ["method.name=deepinversion"])
    methods.bind_config(cfg)
    assert "dfkd" not in cfg.to_dict() and cfg.deepinversion.steps_per_batch == 30
    lenient = load_config(None, ["csdnet.alpha=0.5"], strict=False)  # scripts giving one list to many methods
    assert list(methods.bind_config(lenient).to_dict()) == list(CORE_SECTIONS)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_bind_to_their_method(path):
    cfg = methods.bind_config(load_config(path))
    assert set(cfg.to_dict()) == set(methods.sections_of(cfg.method.name))


def test_a_bound_config_refuses_sections_its_method_does_not_read():
    cfg = Config().bind("supervised", ())
    with pytest.raises(AttributeError, match="method 'supervised' does not read config section 'csdnet'"):
        cfg.csdnet
    assert cfg.bind("csdnet", ("csdnet",)).csdnet.alpha == 1.0  # binding again starts from every section


def test_configs_keys_for_one_method(capsys):
    from finegrain.cli import main

    assert main(["configs", "--keys", "--method", "csdnet"]) == 0
    sections = {line.split(".")[0] for line in capsys.readouterr().out.splitlines()}
    assert sections == {*CORE_SECTIONS, "csdnet"}
    assert main(["configs", "--keys", "--method", "nope"]) == 2


def test_old_run_folder_with_every_section_still_loads(teacher, tmp_path):
    """Runs written before per-method configs stored all 19 sections: eval, teacher use and resume go on."""
    from finegrain.cli import main
    from finegrain.engine.loop import fit
    from finegrain.inference import classifier_from_checkpoint

    old = tmp_path / "runs" / "old"
    shutil.copytree(teacher["run"], old)
    every = {**Config().to_dict(), **yaml.safe_load((old / "config.yaml").read_text())}  # its values, every section
    assert len(every) == len(SECTIONS) == 21  # the 19 of that time, and fast_dfkd and spaceshipnet since
    (old / "config.yaml").write_text(yaml.safe_dump(every, sort_keys=False))
    for sidecar in [old / "model.json", *(old / "checkpoints").glob("*.json")]:
        meta = json.loads(sidecar.read_text())
        meta["config"] = every
        sidecar.write_text(json.dumps(meta))

    model, meta = classifier_from_checkpoint(old)
    assert meta["config"].keys() == every.keys() and model.arch == "test_resnet"
    assert main(["eval", str(old), "--num-workers", "0"]) == 0
    cfg = methods.bind_config(load_config(old / "config.yaml"))  # unused sections ignored, not an error
    assert list(cfg.to_dict()) == list(CORE_SECTIONS)
    resumed = fit(tiny_config(teacher["root"], tmp_path / "runs", **{"train.epochs": 2, "train.run_name": "old"}),
                  resume="auto")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert stored_sections(old)["config.yaml"] == list(CORE_SECTIONS)
    student = fit(tiny_config(teacher["root"], tmp_path / "runs", **{
        "method.name": "kd", "train.epochs": 1, "train.run_name": "kd-old", "train.iterations_per_epoch": 1,
        "distill.teacher": str(old), "distill.student": "test_resnet"}))
    assert Path(student["run_dir"], "model.safetensors").is_file()
