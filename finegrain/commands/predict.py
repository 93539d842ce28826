"""``finegrain predict RUN IMAGE_OR_FOLDER... [--format text|csv|json] [--out FILE]``: top-k classes
with probabilities.

Folders are walked (recursively, sorted, image extensions only) and images go through the model in
batches. Three output formats:

* ``text`` (the default on stdout): each image's path, then one ``probability  class`` line per class;
* ``csv``: a header and one row per image, ``path, class_1, prob_1, ..., class_k, prob_k``;
* ``json``: ``{"checkpoint": ..., "top_k": k, "predictions": [{"path": ..., "top": [{"class": ..., "prob": ...}]}]}``.

``--out FILE`` writes to a file instead of stdout, under a progress bar (rich on a terminal, plain
lines otherwise); its format is ``--format``, else ``json`` for a ``.json`` file and ``csv`` otherwise.
``--csv FILE`` is the old spelling of ``--format csv --out FILE``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from finegrain.commands._common import add_device_option, add_run_argument, resolve_device
from finegrain.errors import ConfigError, DataError

FORMATS = ("text", "csv", "json")


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify images (files or folders) with a trained model")
    add_run_argument(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders (walked recursively)")
    p.add_argument("--top-k", type=int, default=5, help="classes listed per image")
    hardware = p.add_argument_group("hardware")
    hardware.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    add_device_option(hardware)
    out = p.add_argument_group("output")
    out.add_argument("--format", dest="out_format", choices=FORMATS,
                     help="text on stdout unless given; with --out FILE: json for a .json file, else csv")
    out.add_argument("--out", metavar="FILE", help="write the predictions here instead of stdout")
    out.add_argument("--csv", dest="csv_out", metavar="FILE", help="the same as --format csv --out FILE")
    p.set_defaults(func=run)


def collect_images(inputs: list[str]) -> list[str]:
    """Files as given; folders expanded to their images, sorted for a stable CSV order."""
    from finegrain.data.formats import IMAGE_EXTENSIONS

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


def output_choice(args) -> tuple[str, Path | None]:
    """(format, file or None for stdout) from ``--format``, ``--out`` and the old ``--csv``."""
    if args.csv_out:
        if args.out or args.out_format not in (None, "csv"):
            raise ConfigError(f"--csv {args.csv_out}: already means --format csv --out FILE; drop --out/--format")
        return "csv", Path(args.csv_out)
    out = Path(args.out) if args.out else None
    if args.out_format:
        return args.out_format, out
    if out is None:
        return "text", None
    return ("json" if out.suffix.lower() == ".json" else "csv"), out


def predictions(predictor, paths: list[str], top_k: int, batch_size: int, progress):
    """(path, [(class, probability), ...]) batch by batch, so that rows can be written as they come."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        yield from zip(chunk, predictor.predict(chunk, top_k=top_k, batch_size=batch_size))
        progress.advance(n=len(chunk))


def write_text(rows, handle) -> None:
    for path, top in rows:
        print(path, file=handle)
        for name, probability in top:
            print(f"  {probability:7.2%}  {name}", file=handle)


def write_csv(rows, handle, top_k: int) -> None:
    writer = csv.writer(handle)
    writer.writerow(csv_header(top_k))
    for path, top in rows:
        writer.writerow([path] + [x for name, p in top for x in (name, f"{p:.6f}")])


def write_json(rows, handle, top_k: int, checkpoint: str) -> None:
    found = [{"path": path, "top": [{"class": name, "prob": p} for name, p in top]} for path, top in rows]
    json.dump({"checkpoint": checkpoint, "top_k": top_k, "predictions": found}, handle, indent=2)
    handle.write("\n")


def write_predictions(predictor, paths: list[str], out_format: str, handle, top_k: int, batch_size: int,
                      progress) -> None:
    """Predictions of ``paths`` in ``out_format`` to an open text ``handle``."""
    top_k = min(top_k, len(predictor.class_names))
    rows = predictions(predictor, paths, top_k, batch_size, progress)
    if out_format == "csv":
        write_csv(rows, handle, top_k)
    elif out_format == "json":
        write_json(rows, handle, top_k, predictor.meta.get("_path", ""))
    else:
        write_text(rows, handle)


def write_predictions_file(predictor, paths: list[str], out_format: str, out: Path, top_k: int,
                           batch_size: int) -> int:
    """Predictions into a file, with a progress bar on stdout; returns the number of images."""
    from finegrain.engine.logging import Progress

    out.parent.mkdir(parents=True, exist_ok=True)
    batches = -(-len(paths) // batch_size)
    # plain (non-TTY) output: about ten lines; `every` is a multiple of the batch so lines do appear
    progress = Progress(len(paths), "predict", every=batch_size * max(1, batches // 10))
    with open(out, "w", newline="") as handle:
        write_predictions(predictor, paths, out_format, handle, top_k, batch_size, progress)
    progress.close()
    return len(paths)


def run(args) -> int:
    from finegrain.engine.logging import Progress
    from finegrain.inference import load

    out_format, out = output_choice(args)
    paths = collect_images(args.images)
    predictor = load(args.checkpoint, resolve_device(args.device))
    if out is not None:
        count = write_predictions_file(predictor, paths, out_format, out, args.top_k, args.batch_size)
        print(f"wrote {count} predictions to {out}")
        return 0
    quiet = Progress(len(paths), "predict", enabled=False)  # stdout carries the predictions alone
    write_predictions(predictor, paths, out_format, sys.stdout, args.top_k, args.batch_size, quiet)
    return 0

