"""``finegrain eval CKPT``: top-1/top-5/per-class accuracy of a checkpoint on a split."""

from __future__ import annotations

import json

import torch

from finegrain.engine.evaluate import evaluate_checkpoint
from finegrain.inference import classifier_from_checkpoint


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset split")
    p.add_argument("checkpoint", help="run folder, checkpoint .json or .safetensors")
    p.add_argument("--data", help="dataset root (default: the one the model was trained on)")
    p.add_argument("--format", dest="data_format", help="dataset format (default: the training one)")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", dest="json_out", help="also write the full result (confusion matrix) here")
    p.set_defaults(func=run)


def run(args) -> int:
    model, meta = classifier_from_checkpoint(args.checkpoint)
    result = evaluate_checkpoint(model, meta, args.data, args.data_format, args.split, args.batch_size,
                                 args.num_workers, args.device)
    brief = {k: round(result[k], 2) for k in ("top1", "top5", "mean_class_acc")}
    print(json.dumps({"checkpoint": meta["_path"], "split": args.split, "images": result["n"], **brief}, indent=2))
    if args.json_out:
        from pathlib import Path

        Path(args.json_out).write_text(json.dumps({"class_names": meta["class_names"], **result}))
    return 0

