"""``finegrain train``: train a classifier with any registered method."""

from __future__ import annotations

import json

from finegrain.commands._common import add_run_options, config_from_args


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (supervised, csdnet, ...) on a dataset")
    groups = add_run_options(p)
    groups["training"].add_argument("--method", help="training method (sets method.name; see `finegrain methods`)")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.engine.loop import fit

    cfg = config_from_args(args, method=args.method)
    summary = fit(cfg, resume=args.resume)
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    """Printed once: under DDP every rank returns a summary, rank 0 reports it."""
    if summary.get("rank", 0) != 0:
        return
    keys = ("run_dir", "method", "architecture", "test_top1", "test_top5", "test_mean_class_acc",
            "best_val_top1", "images_per_s", "train_seconds", "checkpoint")
    print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
