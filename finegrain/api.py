"""finegrain from Python: ``finegrain.train``, ``finegrain.distill``, ``finegrain.list_methods``.

The command line's twin, on the same level as ``finegrain.commands``: the same configs, the same
loop, a summary dict back instead of printed JSON. ``import finegrain`` stays light because the
package re-exports these functions through wrappers that import this module on first call.

Overrides are keyword arguments naming config keys, written either dotted (``**{"train.epochs": 1}``,
as on the command line) or with a double underscore for the dot (``train__epochs=1``, which Python
accepts as a plain keyword). Values are Python values, checked like those of a YAML file (type,
choices); relative paths resolve against the current directory. An unknown key is a one-line
``ConfigError`` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finegrain.errors import ConfigError


def config_key(keyword: str) -> str:
    """``train__epochs`` -> ``train.epochs``; a dotted key stays as it is."""
    return keyword if "." in keyword else keyword.replace("__", ".")


def build_config(config=None, overrides: dict[str, Any] | None = None, *, caller: str = "finegrain"):
    """A ``Config`` from ``config`` (None for the defaults, a shipped config's name, a YAML path, a
    dict of sections or a ``Config``) with ``overrides`` applied on top."""
    from finegrain.config import Config, load_config

    if config is None or isinstance(config, (str, Path)):
        from finegrain.commands._common import packaged_config

        cfg = load_config(packaged_config(str(config)) if config is not None else None)
    elif isinstance(config, dict):
        cfg = Config.from_dict(config, f"{caller}(config=dict)", Path.cwd())
    elif isinstance(config, Config):
        cfg = config.copy()
    else:
        raise ConfigError(f"{caller}: config must be a shipped config name, a YAML path, a dict or a Config, "
                          f"got {type(config).__name__}")
    for keyword, value in (overrides or {}).items():
        cfg.set(config_key(keyword), value, f"{caller}({keyword}=...)", Path.cwd())
    return cfg


def train(config=None, *, resume: str | None = None, **overrides) -> dict:
    """Train like ``finegrain train``: ``finegrain.train("oxford17_cpu", data__root="flowers")``.

    Returns the run summary (``run_dir``, ``test_top1``, ``checkpoint``, ``history`` ...);
    ``finegrain.load(summary["run_dir"])`` gives the trained model.
    """
    from finegrain.engine.loop import fit

    return fit(build_config(config, overrides, caller="finegrain.train"), resume=resume)


def distill(config=None, *, teacher=None, student: str | None = None, method: str | None = None,
            resume: str | None = None, **overrides) -> dict:
    """Distill like ``finegrain distill``: ``finegrain.distill(teacher="runs/flowers", student="resnet18")``.

    ``teacher`` is a run folder, a checkpoint or a model folder from ``finegrain import-model``;
    without ``config`` a data-free run uses the recipe ``datafree_practical`` (``config="datafree_paper"``
    for the paper's settings); the method defaults to dfkd-fgvc unless ``method`` or the config names another. For data-free
    methods ``data__root`` is only evaluated on (its val/test splits), never trained on.
    """
    from finegrain.commands.distill import announce_recipe, default_recipe
    from finegrain.engine.loop import fit

    recipe = default_recipe(config, method)
    if recipe is not None:
        config = recipe
        announce_recipe(recipe)
    cfg = build_config(config, overrides, caller="finegrain.distill")
    if method is not None:
        cfg.set("method.name", method, "finegrain.distill(method=...)")
    elif cfg.method.name == "supervised":
        cfg.set("method.name", "dfkd-fgvc", "finegrain.distill")
    if teacher is not None:
        cfg.set("distill.teacher", str(Path(teacher).resolve()), "finegrain.distill(teacher=...)")
    if student is not None:
        cfg.set("distill.student", student, "finegrain.distill(student=...)")
    return fit(cfg, resume=resume)


def list_methods() -> list[str]:
    """Names of the registered methods, like ``timm.list_models()``; ``finegrain.methods.get(name)``
    has each one's description, paper and whether it needs training data."""
    from finegrain import methods

    return [info.name for info in methods.available()]
