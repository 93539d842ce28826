import pytest

from finegrain.config import Config, load_config, parse_override
from finegrain.errors import ConfigError


def test_defaults_and_sections():
    cfg = Config()
    assert cfg.optim.lr == 0.01 and cfg.data.image_size == 224 and cfg.method.name == "supervised"


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\ndata:\n  root: sub/data\n  image_size: 64\n")
    cfg = load_config(path, ["optim.lr=0.2", "train.epochs=3", "data.mean=[0.5, 0.5, 0.5]"])
    assert cfg.optim.lr == 0.2 and cfg.train.epochs == 3 and cfg.data.image_size == 64
    assert cfg.data.mean == [0.5, 0.5, 0.5]
    # paths in a config file resolve against the file's folder
    assert cfg.data.root == str(tmp_path / "sub" / "data")


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*optim.lrr"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown config section 'optimizer'"):
        Config.from_dict({"optimizer": {"lr": 1}})


def test_wrong_type_and_choice():
    with pytest.raises(ConfigError, match=r"train.epochs must be int"):
        load_config(None, ["train.epochs=abc"])
    with pytest.raises(ConfigError, match=r"optim.name='lamb' is not one of"):
        load_config(None, ["optim.name=lamb"])
    cfg = load_config(None, ["optim.lr=1"])  # an int is a fine float
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_removed_keys_load_from_old_runs_only_at_their_old_default():
    """Run folders written before docs/history/options-that-lost.md store every key, the removed ones too."""
    old_run = {"distill": {"student": "resnet18", "critic_mode": "eval", "channels_last": False, "pool_crop": 1},
               "dfkd": {"first_bn_weight": 1.0, "onehot": 0.0}, "csdnet": {"qc_reduction": "sum"}}
    cfg = Config.from_dict(old_run, "run/config.yaml")
    assert cfg.distill.student == "resnet18" and not hasattr(cfg.distill, "critic_mode")
    for dotted, value in (("distill.pool_crop", 0.8), ("distill.warmup_critic", False), ("distill.pool_crop", True)):
        with pytest.raises(ConfigError, match=rf"{dotted}={value!r}: the key was removed.*options-that-lost"):
            load_config(None, [f"{dotted}={str(value).lower()}"])


def test_override_syntax():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("optim.lr")


def test_round_trip():
    cfg = load_config(None, ["optim.lr=0.3"])
    assert Config.from_dict(cfg.to_dict()).optim.lr == 0.3


def test_bind_keeps_core_and_method_sections_and_refuses_foreign_overrides():
    from finegrain.config import CORE_SECTIONS

    cfg = load_config(None, ["kd.temperature=2.0"])
    assert list(cfg.bind("kd", ("kd", "distill")).to_dict()) == [*CORE_SECTIONS, "distill", "kd"]
    with pytest.raises(ConfigError, match=r"^kd.temperature: method 'supervised' does not read section 'kd' "
                                          r"\(it reads: data, model, optim, schedule, train, method; set by override"):
        cfg.bind("supervised", ())
    cfg.set("csdnet.alpha", 0.5)  # set in code or by a file: not the user's override, so not refused
    cfg.bind("kd", ("kd", "distill"))


def test_fsdp_is_not_offered():
    with pytest.raises(ConfigError, match=r"train.strategy='fsdp' is not one of auto, ddp, ddp_spawn"):
        load_config(None, ["train.strategy=fsdp"])


def test_keep_model_choices():
    assert Config().train.keep_model == "last"
    with pytest.raises(ConfigError, match=r"train.keep_model='first' is not one of last, best"):
        load_config(None, ["train.keep_model=first"])
