"""The method registry: ``finegrain.methods.create("csdnet", cfg, class_names)``.

Each method lives in its own module here and registers itself with ``@register_method``; every
module of this package is imported on first use, so adding a method touches no other file but
:mod:`finegrain.method_config` when it has settings of its own (see ``Method.config_sections``).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from finegrain.config import CORE_SECTIONS
from finegrain.errors import ConfigError
from finegrain.engine.method import Method, Phase  # the base class (was methods/base.py)


@dataclass
class MethodInfo:
    name: str
    cls: type
    description: str
    paper: str


_REGISTRY: dict[str, MethodInfo] = {}
_IMPORTED = False


def register_method(name: str, description: str, paper: str = ""):
    def wrap(cls):
        _REGISTRY[name] = MethodInfo(name, cls, description, paper)
        cls.method_name = name
        return cls

    return wrap


def _import_all() -> None:
    global _IMPORTED
    if _IMPORTED:
        return
    _IMPORTED = True
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def get(name: str) -> MethodInfo:
    _import_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available() -> list[MethodInfo]:
    _import_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def sections_of(name: str) -> tuple[str, ...]:
    """The config sections a run of method ``name`` reads: the core ones, then the method's own."""
    return tuple(dict.fromkeys((*CORE_SECTIONS, *get(name).cls.config_sections)))


def bind_config(cfg, name: str | None = None):
    """``cfg`` bound to method ``name`` (default ``cfg.method.name``): see :meth:`finegrain.config.Config.bind`."""
    name = name or cfg.method.name
    return cfg.bind(name, get(name).cls.config_sections)


def create(name: str, cfg, class_names, **context) -> Method:
    """Build a method by name, like timm's ``create_model``; ``cfg`` is bound to it first."""
    bind_config(cfg, name)
    return get(name).cls(cfg, class_names, **context)


_import_all()

__all__ = ["Method", "MethodInfo", "Phase", "available", "bind_config", "create", "get", "register_method",
           "sections_of"]
