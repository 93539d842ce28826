"""CSDNet vs plain cross-entropy on few-shot fine-grained datasets, with the three one-module-off ablations.

Every variant trains the same backbone (EfficientNet-Lite0 from the shipped ImageNet weights) with
the same schedule, few-shot subset and seed; only the method differs. ``val`` chooses settings,
``test`` is only reported. A root without a ``val/`` folder (the Ultra-FGVC leaves ship only
``train/`` and ``test/``) gets a validation split carved from ``train`` per class
(``--val-fraction``, seeded by the run's seed; the K training images are then drawn from the rest
of ``train``), so ``test`` is never used as validation. Training throughput (raw training images per
second, each CSDNet image being forwarded as two views) is measured in the same process, so the
CSDNet / CE ratio compares like with like on a shared machine.

    # Oxford-17 alone (15 runs, 10 min 29 s measured on 2 shared CPU cores)
    flock /tmp/finegrain-heavy.lock python benchmarks/csdnet_vs_ce.py --data ../shared/data/oxford17

    # Oxford-17 and Stanford Cars (cars196), one table each (30 runs)
    flock /tmp/finegrain-heavy.lock python benchmarks/csdnet_vs_ce.py \\
        --data ../shared/data/oxford17 ../shared/data/cars196

    # a train/test-only root: 20 % of each class of train is carved off as val
    flock /tmp/finegrain-heavy.lock python benchmarks/csdnet_vs_ce.py --data /data/ufg/Cotton80

Time on 2 shared CPU cores at the defaults (K = 5, 96 px, 10 epochs, 3 seeds, 5 variants):
Oxford-17 about 10.5 min (measured). Cars196 (196 x 5 = 980 training images per run, 788 val and
2,030 test images evaluated) took 9 to 28 min per run at one thread each, two runs at a time while
other jobs shared the cores (measured 2026-11-26), so its 15 runs take 2.5 h or more: run it in
the background; every finished run is saved as it ends.

Writes ``benchmarks/results/csdnet_vs_ce.json`` (rewritten after every run, so a crash keeps the runs
before it): ``runs`` (one row per run, with its ``dataset``) and ``tables`` (``{dataset: {variant:
{test_top1_mean, test_top1_std, val_top1_mean, val_top1_std, train_images_per_s, throughput_vs_ce}}}``),
and prints one table per dataset. A figure that no run produced is ``null`` in the JSON and ``-`` in
the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from finegrain.config import load_config
from finegrain.engine.loop import fit

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "finegrain" / "configs" / "oxford17_csdnet_cpu.yaml"

VARIANTS = {
    "ce": ["method.name=supervised"],
    "csdnet": [],
    "csdnet-no-ssdp": ["csdnet.ssdp=false"],
    "csdnet-no-ddl": ["csdnet.ddl=false"],
    "csdnet-no-ssdt": ["csdnet.ssdt=false"],
}


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=[str(ROOT.parent / "shared" / "data" / "oxford17")],
                   help="one or more ImageFolder roots (root/{train,[val,]test}/<class>/); one table each")
    p.add_argument("--k", type=int, default=5, help="training images per class")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="for a root without val/: fraction of each class of train carved off as val "
                        "(0 = no val figure); ignored where val/ exists")
    p.add_argument("--model", default=None, help="timm architecture (default: the config's efficientnet_lite0)")
    p.add_argument("--pretrained-file", default=None,
                   help="local weights, 'auto' (the config's default) or 'none' to train from scratch")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run, e.g. csdnet.alpha=0.05")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is far faster than 2 on a 2-core machine other jobs also load")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "csdnet_vs_ce.json"))
    args = p.parse_args(argv)
    if not 0.0 <= args.val_fraction < 1.0:
        p.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    return args


def describe_datasets(roots: list[str]) -> dict[str, dict]:
    """``{name: {"root", "val"}}`` in the given order; a clear error for a missing root or split.

    The name is the root's folder name (its parent's too where two roots share a folder name, as
    the growth stages ``SoyAgeing/R1`` ... ``R6`` do)."""
    paths = [Path(r).expanduser().resolve() for r in roots]
    for path in paths:
        missing = [s for s in ("train", "test") if not (path / s).is_dir()]
        if missing:
            raise SystemExit(f"{path}: not an ImageFolder dataset root (no {' or '.join(s + '/' for s in missing)}"
                             f" folder); expected root/{{train,[val,]test}}/<class>/*.jpg")
    names = [p.name for p in paths]
    datasets = {}
    for path, name in zip(paths, names):
        if names.count(name) > 1:
            name = f"{path.parent.name}/{path.name}"
        if name in datasets:
            raise SystemExit(f"{path}: given twice in --data")
        datasets[name] = {"root": str(path), "val": "split" if (path / "val").is_dir() else "carved"}
    return datasets


def run_one(args, dataset: str, info: dict, variant: str, seed: int, workdir: Path) -> dict:
    overrides = [f"data.root={info['root']}", f"data.few_shot_k={args.k}", f"data.few_shot_seed={seed}",
                 f"data.image_size={args.image_size}", f"train.epochs={args.epochs}", f"train.seed={seed}",
                 f"train.out_dir={workdir}", f"train.run_name={dataset.replace('/', '_')}-{variant}-s{seed}",
                 "train.log_every=1000"]
    if info["val"] == "carved":
        # Without a val/ folder the library carves data.val_fraction of train; with 0 it has no val at all.
        overrides.append(f"data.val_fraction={args.val_fraction}")
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.pretrained_file:
        weights = "null" if args.pretrained_file.lower() == "none" else args.pretrained_file
        overrides.append(f"model.pretrained_file={weights}")
    cfg = load_config(CONFIG, [*overrides, *args.set, *VARIANTS[variant]], strict=False)  # --set serves ce too
    started = time.perf_counter()
    summary = fit(cfg)
    speeds = [h["train/images_per_s"] for h in summary.get("history") or [] if h.get("train/images_per_s")]
    return {"dataset": dataset, "variant": variant, "seed": seed, "test_top1": summary.get("test_top1"),
            "val_top1": summary.get("val_top1"),
            "val_source": "val split" if info["val"] == "split" else f"carved {cfg.data.val_fraction:g} of train",
            "train_images_per_s": statistics.median(speeds) if speeds else None,
            "seconds": round(time.perf_counter() - started, 1)}


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample std of the values that exist (None skipped); (None, None) when none do."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: list[dict], variants: list[str]) -> dict:
    """One table row per variant that has runs; a figure no run produced is None, never an error."""
    table = {}
    for variant in variants:
        rows = [r for r in runs if r["variant"] == variant]
        if not rows:
            continue
        test = mean_std(r.get("test_top1") for r in rows)
        val = mean_std(r.get("val_top1") for r in rows)
        speed = mean_std(r.get("train_images_per_s") for r in rows)[0]
        table[variant] = {"test_top1_mean": test[0], "test_top1_std": test[1], "val_top1_mean": val[0],
                          "val_top1_std": val[1], "runs": len(rows), "train_images_per_s": speed}
    ce_speed = table.get("ce", {}).get("train_images_per_s")
    for row in table.values():
        speed = row["train_images_per_s"]
        row["throughput_vs_ce"] = speed / ce_speed if ce_speed and speed else None
    return table


def _fmt(mean, std) -> str:
    return f"{'-':>14}" if mean is None else f"{mean:6.2f} ± {std:5.2f}"


def print_table(dataset: str, table: dict, args, val_source: str = "") -> None:
    print(f"\n{dataset} few-shot K={args.k}, {args.image_size} px, {args.epochs} epochs, seeds {args.seeds}"
          + (f", val: {val_source}" if val_source else ""))
    print(f"{'variant':<16} {'test top-1':>14} {'val top-1':>14} {'train img/s':>12} {'vs CE':>7}")
    for variant, row in table.items():
        speed = "-" if row["train_images_per_s"] is None else f"{row['train_images_per_s']:.1f}"
        ratio = "-" if row.get("throughput_vs_ce") is None else f"{row['throughput_vs_ce']:.2f}"
        print(f"{variant:<16} {_fmt(row['test_top1_mean'], row['test_top1_std'])} "
              f"{_fmt(row['val_top1_mean'], row['val_top1_std'])} {speed:>12} {ratio:>7}")


def build_result(args, datasets: dict, runs: list[dict]) -> dict:
    tables = {name: aggregate([r for r in runs if r["dataset"] == name], args.variants) for name in datasets}
    return {"benchmark": "csdnet_vs_ce", "data": [d["root"] for d in datasets.values()],
            "datasets": {name: {**d, "val_fraction": args.val_fraction if d["val"] == "carved" else None}
                         for name, d in datasets.items()},
            "k": args.k, "image_size": args.image_size, "epochs": args.epochs, "seeds": args.seeds,
            "variants": args.variants, "model": args.model, "pretrained_file": args.pretrained_file,
            "overrides": args.set, "config": str(CONFIG.relative_to(ROOT)), "torch_threads": torch.get_num_threads(),
            "complete": len(runs) == len(datasets) * len(args.seeds) * len(args.variants),
            "runs": runs, "tables": {name: t for name, t in tables.items() if t}}


def write_json(path: Path, data: dict) -> None:
    """Write to a temporary name and rename, so a crash mid-write never leaves a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    datasets = describe_datasets(args.data)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="csdnet_vs_ce-") as workdir:
        for name, info in datasets.items():
            for seed in args.seeds:
                for variant in args.variants:
                    runs.append(run_one(args, name, info, variant, seed, Path(workdir)))
                    print(json.dumps(runs[-1]), flush=True)
                    write_json(out, build_result(args, datasets, runs))
    result = build_result(args, datasets, runs)
    write_json(out, result)
    for name, table in result["tables"].items():
        print_table(name, table, args, next(r["val_source"] for r in runs if r["dataset"] == name))
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
