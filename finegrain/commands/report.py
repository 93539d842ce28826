"""``finegrain report RUN_DIR``: an HTML page (and PNGs beside it) with the run's curves, test
confusion matrix, per-class accuracy, predictions and, where the method has them, attention maps
or synthesized images."""

from __future__ import annotations

import torch


def register(sub) -> None:
    p = sub.add_parser("report", help="write an HTML report of a run (curves, confusion, predictions)")
    p.add_argument("run_dir", help="a run folder written by `finegrain train`")
    p.add_argument("--data", help="dataset root (default: the one the run was trained on)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    p.add_argument("--samples", type=int, default=24, help="test images in the prediction grid")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.viz.report import build_report

    page = build_report(args.run_dir, args.out, args.data, args.device, args.samples)
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    print(f"report: {page}  ({len(pngs)} PNG files beside it)")
    return 0
