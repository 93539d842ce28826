"""``finegrain synthesize --checkpoint RUN -n 64 --out grid.png``: look at a data-free run's synthetic images."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("synthesize", help="grid of a data-free run's synthetic images with the teacher's predictions")
    p.add_argument("--checkpoint", required=True, help="distillation run folder or checkpoint .json (with the generator)")
    p.add_argument("-n", type=int, default=64, help="number of images")
    p.add_argument("--out", default="synthetic.png", help="PNG file to write")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--tile", type=int, default=96, help="tile size in pixels")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.errors import ConfigError
    from finegrain.viz.synthetic import synthetic_grid

    if args.n < 1:
        raise ConfigError(f"-n {args.n}: need at least one image")
    picture, summary = synthetic_grid(args.checkpoint, n=args.n, seed=args.seed, tile_size=args.tile)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    brief = {k: summary[k] for k in ("checkpoint", "method", "n", "mean_confidence", "classes_covered", "class_counts")}
    print(json.dumps({"out": str(out), **brief}, indent=2))
    return 0
