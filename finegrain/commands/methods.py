"""``finegrain methods`` and ``finegrain configs``: what can be trained, and the shipped configs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("methods", help="list training and distillation methods with their papers")
    p.set_defaults(func=list_methods)
    p = sub.add_parser("configs", help="list shipped configs, or every config key with --keys")
    p.add_argument("--keys", action="store_true", help="print every config key with its default and meaning")
    p.add_argument("--method", help="with --keys: only the core keys and those this method reads")
    p.set_defaults(func=list_configs)


def list_methods(args) -> int:
    from finegrain import methods

    for info in methods.available():
        kind = "data-free" if not info.cls.needs_train_data else "real data"
        print(f"{info.name:14s} [{kind}] {info.description}" + (f"  ({info.paper})" if info.paper and info.paper != "-" else ""))
    return 0


def list_configs(args) -> int:
    if args.keys:
        from finegrain.config import describe_sections

        sections = None
        if args.method:
            from finegrain import methods

            sections = methods.sections_of(args.method)
        for key, type_name, default, doc in describe_sections(sections):
            print(f"{key:34s} {type_name:8s} {default!r:24s} {doc}")
        return 0
    folder = Path(str(resources.files("finegrain") / "configs"))
    for path in sorted(folder.glob("*.yaml")):
        first = path.read_text().splitlines()[0].lstrip("# ") if path.read_text() else ""
        print(f"{path.stem:28s} {first}")
    return 0
