"""``finegrain explain RUN IMAGE... --out DIR``: activation map and SSDP view of each image as PNG."""

from __future__ import annotations

from pathlib import Path

from finegrain.commands._common import add_device_option, add_run_argument, resolve_device


def register(sub) -> None:
    p = sub.add_parser("explain", help="write the activation map and CSDNet's SSDP mask/view over images as PNGs")
    add_run_argument(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--seed", type=int, default=0, help="seed of SSDP's random threshold and viewpoint")
    add_device_option(p, default="cpu")
    p.add_argument_group("output").add_argument("--out", metavar="DIR", default="explain",
                                                help="folder for the PNGs, one IMAGE_explain.png per image")
    p.set_defaults(func=run)


def ssdp_section(meta: dict):
    """The checkpoint's own ``csdnet`` settings when it was trained with CSDNet, else defaults."""
    from finegrain.config import Config

    section = (meta.get("config") or {}).get("csdnet")
    return Config.from_dict({"csdnet": section}, meta.get("_path", "checkpoint")).csdnet if section else None


def run(args) -> int:
    from finegrain.inference import load
    from finegrain.viz.explain import explain
    from finegrain.viz.png import write_png

    predictor = load(args.checkpoint, resolve_device(args.device))
    meta = predictor.meta
    batch = [predictor.preprocess(path) for path in args.images]
    strips = explain(predictor.model, batch, meta["mean"], meta["std"], ssdp_section(meta), seed=args.seed)
    out = Path(args.out)
    for path, strip in zip(args.images, strips):
        target = write_png(strip, out / f"{Path(path).stem}_explain.png")
        print(target)
    return 0
