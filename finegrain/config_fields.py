"""The bottom of the configuration: the section registry and the field helper.

Why a module of its own: the core sections (:mod:`finegrain.config`) and the methods' sections
(:mod:`finegrain.method_config`) are both declared with :func:`register_section` and
:func:`option`, and :mod:`finegrain.config` needs every section registered before it builds a
:class:`~finegrain.config.Config`. With these helpers in ``config`` the two modules imported each
other (``method_config`` the helpers, ``config`` the method sections, lazily). Here they import
nothing of finegrain, so both modules import downwards only: ``config`` → ``method_config`` →
``config_fields``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: every config section by name, in registration order (core sections first: see finegrain.config)
SECTIONS: dict[str, type] = {}


def register_section(name: str):
    """Class decorator: make a dataclass available as config section ``name``."""

    def wrap(cls):
        if name in SECTIONS and SECTIONS[name] is not cls:
            raise ValueError(f"config section {name!r} registered twice")
        SECTIONS[name] = cls
        return cls

    return wrap


def option(default: Any, doc: str, *, path: bool = False, choices: tuple | None = None):
    """A config field with its documentation; ``path=True`` resolves it against the config file."""
    meta = {"doc": doc, "path": path, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
