"""``finegrain <command>``: parse, load config, call the library. Commands live in
``finegrain.commands``, one module each, and are found automatically."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from finegrain import __version__
from finegrain.errors import FinegrainError


def build_parser() -> argparse.ArgumentParser:
    import finegrain.commands as commands

    parser = argparse.ArgumentParser(prog="finegrain", description="Fine-grained visual categorization with scarce or no data.")
    parser.add_argument("--version", action="version", version=f"finegrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"finegrain.commands.{module.name}").register(sub)
    return parser


def one_line(err: Exception) -> str:
    """A worker's error arrives wrapped with its traceback: keep the last line, the message."""
    text = str(err)
    if "Traceback" in text:
        lines = [l for l in text.splitlines() if l.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else text
    return text.splitlines()[0] if text else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may stand before or after flags: `finegrain train optim.lr=0.1 --devices 2`.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FinegrainError as err:
        print(f"finegrain {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 130 if type(err).__name__ == "Interrupted" else 2
    except Exception as err:  # a DataError raised in a loader worker comes back re-wrapped
        if "finegrain.errors." in str(err):
            print(f"finegrain {args.command}: error: {one_line(err)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
