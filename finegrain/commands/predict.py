"""``finegrain predict CKPT IMAGE...``: top-k classes with probabilities."""

from __future__ import annotations

import torch


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a trained model")
    p.add_argument("checkpoint", help="run folder, checkpoint .json or .safetensors")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from finegrain.inference import load

    predictor = load(args.checkpoint, args.device)
    for path, top in zip(args.images, predictor.predict(args.images, top_k=args.top_k)):
        print(path)
        for name, probability in top:
            print(f"  {probability:7.2%}  {name}")
    return 0
