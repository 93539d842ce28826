"""``finegrain <command>``: parse, load config, call the library. Commands live in
``finegrain.commands``, one module each, and are found automatically.

Building the parser must stay cheap: ``finegrain --help`` imports every command module, so a
command module imports torch, torchvision, timm, lightning and the finegrain modules that use them
only inside the function that runs the command (``tests/test_cli.py`` times it and checks).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from finegrain import __version__
from finegrain.errors import FinegrainError


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default where it says something (not None, False or an empty list), so
    that ``--help`` tells what a run does when the option is left out."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default is argparse.SUPPRESS or default is None or default is False:
            return text
        if isinstance(default, (list, tuple)) and not default:
            return text
        return f"{text} (default: %(default)s)"


class Commands:
    """What a command module's ``register`` receives: ``add_parser`` gives every command the same
    help layout and its one-line help as the description of its own ``--help``."""

    def __init__(self, action):
        self._action = action

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        kwargs.setdefault("formatter_class", HelpFormatter)
        return self._action.add_parser(name, **kwargs)

    def __getattr__(self, name):  # anything else argparse offers, unchanged
        return getattr(self._action, name)


def command_modules() -> list[str]:
    """Names of the modules in ``finegrain.commands`` (a new file there is a new command)."""
    import finegrain.commands as commands

    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finegrain", formatter_class=HelpFormatter,
                                     description="Fine-grained visual categorization with scarce or no data.",
                                     epilog="`finegrain COMMAND --help` describes a command.")
    parser.add_argument("--version", action="version", version=f"finegrain {__version__}",
                        help="print the version and exit")
    sub = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    for name in command_modules():
        importlib.import_module(f"finegrain.commands.{name}").register(sub)
    return parser


def one_line(err: Exception) -> str:
    """A worker's error arrives wrapped with its traceback: keep the last line, the message."""
    text = str(err)
    if "Traceback" in text:
        lines = [l for l in text.splitlines() if l.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else text
    return text.splitlines()[0] if text else type(err).__name__


def close_process_group() -> None:
    """Shut a DDP process group down before the interpreter exits, as PyTorch asks.

    Why: left to interpreter exit, the gloo group's threads are torn down in no set order, and a
    rank then aborts with "terminate called without an active exception" after a finished run
    (seen once in 8 runs of ``tests/test_distributed.py::test_slurm_environment_is_used`` on
    loaded cores). Only after success: after an error the ranks may be out of step."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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
        code = int(args.func(args) or 0)
        close_process_group()
        return code
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
