"""``finegrain synthesize RUN -n 64 --out grid.png``: look at a data-free run's synthetic images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finegrain.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("synthesize", help="grid of a data-free run's synthetic images with the teacher's predictions")
    p.add_argument("checkpoint", metavar="RUN", nargs="?",
                   help="distillation run folder or checkpoint .json (with the generator)")
    p.add_argument("--checkpoint", dest="checkpoint_flag", help=argparse.SUPPRESS)  # the old spelling of RUN
    p.add_argument("-n", type=int, default=64, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--tile", type=int, default=96, help="tile size in pixels")
    p.add_argument_group("output").add_argument("--out", metavar="FILE", default="synthetic.png",
                                                help="PNG file to write (a summary is printed as JSON)")
    p.set_defaults(func=run)


def run_path(args) -> str:
    """RUN, given positionally or (the old way) as ``--checkpoint RUN``, not both."""
    if args.checkpoint and args.checkpoint_flag and args.checkpoint != args.checkpoint_flag:
        raise ConfigError(f"two runs given: {args.checkpoint} and --checkpoint {args.checkpoint_flag}; give one")
    path = args.checkpoint or args.checkpoint_flag
    if not path:
        raise ConfigError("no run given: finegrain synthesize RUN (a distillation run folder or checkpoint .json)")
    return path


def run(args) -> int:
    from finegrain.viz.synthetic import synthetic_grid

    checkpoint = run_path(args)
    if args.n < 1:
        raise ConfigError(f"-n {args.n}: need at least one image")
    picture, summary = synthetic_grid(checkpoint, n=args.n, seed=args.seed, tile_size=args.tile)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    brief = {k: summary[k] for k in ("checkpoint", "method", "n", "mean_confidence", "classes_covered", "class_counts")}
    print(json.dumps({"out": str(out), **brief}, indent=2))
    return 0
