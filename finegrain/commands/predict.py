"""``finegrain predict CKPT IMAGE_OR_FOLDER... [--csv out.csv]``: top-k classes with probabilities.

Without ``--csv`` each image's top-k is printed. With ``--csv`` folders are walked (recursively,
sorted, image extensions only), images go through the model in batches under a progress bar
(rich on a terminal, plain lines otherwise) and one CSV row per image is written:
``path, class_1, prob_1, ..., class_k, prob_k``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from finegrain.data.formats import IMAGE_EXTENSIONS
from finegrain.errors import DataError


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify images (files or folders) with a trained model")
    p.add_argument("checkpoint", help="run folder, checkpoint .json or .safetensors")
    p.add_argument("images", nargs="+", help="image files or folders (walked recursively)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--csv", dest="csv_out", help="write path, top-k classes and probabilities here")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run)


def collect_images(inputs: list[str]) -> list[str]:
    """Files as given; folders expanded to their images, sorted for a stable CSV order."""
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                found += [str(Path(folder) / f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
        elif path.is_file():
            found.append(str(path))
        else:
            raise DataError(f"{path}: no such image file or folder")
    if not found:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(inputs)}")
    return found


def csv_header(top_k: int) -> list[str]:
    return ["path"] + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("class", "prob")]


def write_predictions_csv(predictor, paths: list[str], out: Path, top_k: int, batch_size: int) -> int:
    """Predict batch by batch, writing rows as they come; returns the number of rows."""
    from finegrain.engine.logging import Progress

    top_k = min(top_k, len(predictor.class_names))
    out.parent.mkdir(parents=True, exist_ok=True)
    batches = -(-len(paths) // batch_size)
    # plain (non-TTY) output: about ten lines; `every` is a multiple of the batch so lines do appear
    progress = Progress(len(paths), "predict", every=batch_size * max(1, batches // 10))
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(top_k))
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            for path, top in zip(chunk, predictor.predict(chunk, top_k=top_k, batch_size=batch_size)):
                writer.writerow([path] + [x for name, p in top for x in (name, f"{p:.6f}")])
            progress.advance(n=len(chunk))
    progress.close()
    return len(paths)


def run(args) -> int:
    from finegrain.inference import load

    predictor = load(args.checkpoint, args.device)
    if args.csv_out:
        paths = collect_images(args.images)
        count = write_predictions_csv(predictor, paths, Path(args.csv_out), args.top_k, args.batch_size)
        print(f"wrote {count} predictions to {args.csv_out}")
        return 0
    paths = collect_images(args.images)
    for path, top in zip(paths, predictor.predict(paths, top_k=args.top_k, batch_size=args.batch_size)):
        print(path)
        for name, probability in top:
            print(f"  {probability:7.2%}  {name}")
    return 0
