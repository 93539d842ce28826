"""``finegrain report RUN_DIR``: an HTML page (and PNGs beside it) with the run's curves, test
confusion matrix, per-class accuracy, predictions and, where the method has them, attention maps
or synthesized images."""

from __future__ import annotations

from finegrain.commands._common import add_device_option, add_run_argument, resolve_device


def register(sub) -> None:
    p = sub.add_parser("report", help="write an HTML report of a run (curves, confusion, predictions)")
    add_run_argument(p, "a run folder written by `finegrain train` or `finegrain distill`")
    p.add_argument("--data", metavar="ROOT", help="dataset root (default: the one the run was trained on)")
    p.add_argument("--samples", type=int, default=24, help="test images in the prediction grid")
    add_device_option(p)
    p.add_argument_group("output").add_argument("--out", metavar="DIR",
                                                help="folder for index.html and its PNGs (default: RUN/report)")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.viz.report import build_report

    page = build_report(args.checkpoint, args.out, args.data, resolve_device(args.device), args.samples)
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    print(f"report: {page}  ({len(pngs)} PNG files beside it)")
    return 0
