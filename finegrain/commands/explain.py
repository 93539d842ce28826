"""``finegrain explain CKPT IMAGE... --out DIR``: activation map and SSDP view of each image as PNG."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("explain", help="write the activation map and CSDNet's SSDP mask/view over images as PNGs")
    p.add_argument("checkpoint", help="run folder, checkpoint .json or .safetensors")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--out", default="explain", help="folder for the PNGs (default: ./explain)")
    p.add_argument("--seed", type=int, default=0, help="seed of SSDP's random threshold and viewpoint")
    p.add_argument("--device", default="cpu")
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

    predictor = load(args.checkpoint, args.device)
    meta = predictor.meta
    batch = [predictor.preprocess(path) for path in args.images]
    strips = explain(predictor.model, batch, meta["mean"], meta["std"], ssdp_section(meta), seed=args.seed)
    out = Path(args.out)
    for path, strip in zip(args.images, strips):
        target = write_png(strip, out / f"{Path(path).stem}_explain.png")
        print(target)
    return 0
