"""CSDNet vs plain cross-entropy on few-shot Oxford-17, with the three one-module-off ablations.

Every variant trains the same backbone (EfficientNet-Lite0 from the shipped ImageNet weights) with
the same schedule, few-shot subset and seed; only the method differs. ``val`` chooses settings,
``test`` is only reported. Training throughput (raw training images per second, each CSDNet image
being forwarded as two views) is measured in the same process, so the CSDNet / CE ratio compares
like with like on a shared machine.

    flock /tmp/finegrain-heavy.lock python benchmarks/csdnet_vs_ce.py --data ../shared/data/oxford17

Writes ``benchmarks/results/csdnet_vs_ce.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
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


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "oxford17"))
    p.add_argument("--k", type=int, default=5, help="training images per class")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every run, e.g. csdnet.alpha=0.05")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is far faster than 2 on a 2-core machine other jobs also load")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "csdnet_vs_ce.json"))
    return p.parse_args()


def run_one(args, variant: str, seed: int, workdir: Path) -> dict:
    overrides = [f"data.root={Path(args.data).resolve()}", f"data.few_shot_k={args.k}", f"data.few_shot_seed={seed}",
                 f"data.image_size={args.image_size}", f"train.epochs={args.epochs}", f"train.seed={seed}",
                 f"train.out_dir={workdir}", f"train.run_name={variant}-s{seed}", "train.log_every=1000",
                 *args.set, *VARIANTS[variant]]
    cfg = load_config(CONFIG, overrides)
    started = time.perf_counter()
    summary = fit(cfg)
    speeds = [h["train/images_per_s"] for h in summary["history"] if h.get("train/images_per_s")]
    return {"variant": variant, "seed": seed, "test_top1": summary["test_top1"], "val_top1": summary.get("val_top1"),
            "train_images_per_s": statistics.median(speeds), "seconds": round(time.perf_counter() - started, 1)}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: list[dict], variants: list[str]) -> dict:
    table = {}
    for variant in variants:
        rows = [r for r in runs if r["variant"] == variant]
        test, val = mean_std([r["test_top1"] for r in rows]), mean_std([r["val_top1"] for r in rows])
        table[variant] = {"test_top1_mean": test[0], "test_top1_std": test[1], "val_top1_mean": val[0],
                          "val_top1_std": val[1], "train_images_per_s": statistics.mean(r["train_images_per_s"] for r in rows)}
    if "ce" in table:
        for row in table.values():
            row["throughput_vs_ce"] = row["train_images_per_s"] / table["ce"]["train_images_per_s"]
    return table


def print_table(table: dict, args) -> None:
    print(f"\nOxford-17 few-shot K={args.k}, {args.image_size} px, {args.epochs} epochs, seeds {args.seeds}")
    print(f"{'variant':<16} {'test top-1':>14} {'val top-1':>14} {'train img/s':>12} {'vs CE':>7}")
    for variant, row in table.items():
        ratio = f"{row['throughput_vs_ce']:.2f}" if "throughput_vs_ce" in row else "-"
        print(f"{variant:<16} {row['test_top1_mean']:6.2f} ± {row['test_top1_std']:4.2f} "
              f"{row['val_top1_mean']:6.2f} ± {row['val_top1_std']:4.2f} {row['train_images_per_s']:12.1f} {ratio:>7}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="csdnet_vs_ce-") as workdir:
        for seed in args.seeds:
            for variant in args.variants:
                runs.append(run_one(args, variant, seed, Path(workdir)))
                print(json.dumps(runs[-1]), flush=True)
    table = aggregate(runs, args.variants)
    result = {"benchmark": "csdnet_vs_ce", "data": str(Path(args.data).resolve()), "k": args.k,
              "image_size": args.image_size, "epochs": args.epochs, "seeds": args.seeds, "overrides": args.set,
              "config": str(CONFIG.relative_to(ROOT)), "torch_threads": torch.get_num_threads(),
              "runs": runs, "table": table}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_table(table, args)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
