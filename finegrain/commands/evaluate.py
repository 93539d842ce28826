"""``finegrain eval RUN``: top-1/top-5/per-class accuracy of a checkpoint on a split."""

from __future__ import annotations

import json

from finegrain.commands._common import add_data_options, add_device_option, add_run_argument, resolve_device


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    add_run_argument(p)
    data = p.add_argument_group("data")
    add_data_options(data, "dataset root (default: the one the model was trained on)",
                     format_help="dataset format (default: the training one)")
    data.add_argument("--split", default="test", help="split to evaluate")
    hardware = p.add_argument_group("hardware")
    hardware.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    hardware.add_argument("--num-workers", type=int, default=2, help="data-loader worker processes")
    add_device_option(hardware)
    out = p.add_argument_group("output")
    out.add_argument("--out", "--json", dest="json_out", metavar="FILE",
                     help="also write the full result (confusion matrix, per-class accuracy) as JSON here; "
                          "the summary is always printed")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.engine.evaluate import evaluate_checkpoint
    from finegrain.inference import classifier_from_checkpoint

    model, meta = classifier_from_checkpoint(args.checkpoint)
    result = evaluate_checkpoint(model, meta, args.data, args.data_format, args.split, args.batch_size,
                                 args.num_workers, resolve_device(args.device))
    brief = {k: round(result[k], 2) for k in ("top1", "top5", "mean_class_acc")}
    print(json.dumps({"checkpoint": meta["_path"], "split": args.split, "images": result["n"], **brief}, indent=2))
    if args.json_out:
        from pathlib import Path

        Path(args.json_out).write_text(json.dumps({"class_names": meta["class_names"], **result}))
    return 0
