"""CSDNet vs plain cross-entropy on few-shot fine-grained datasets, with the three one-module-off ablations.

Every variant trains the recipe ``oxford17_csdnet_cpu`` (``--recipe``: another shipped config or a
YAML path): EfficientNet-Lite0 from the shipped ImageNet weights, K = 5 images per class, 96 px, 10
epochs. Only the method differs: ``ce`` runs the recipe with the supervised method, ``csdnet``
as it is, ``csdnet-no-ssdp`` / ``-no-ddl`` / ``-no-ssdt`` with one of the paper's modules switched
off. Each seed draws its own few-shot subset (``data.few_shot_seed``) and initialises the run.
``val`` chooses settings, ``test`` is only reported. A root without a ``val/`` folder (the
Ultra-FGVC leaves ship only ``train/`` and ``test/``) gets a validation split carved from ``train``
per class (``--val-fraction``; the K training images are then drawn from the rest of ``train``),
so ``test`` is never used as validation. Training throughput (raw training images per second, each
CSDNet image being forwarded as two views) is the median over a run's epochs.

Equal epochs, not equal time, by default (``--budget 0``: the recipe's schedule): the comparison
is of methods at the same schedule; ``--budget MINUTES`` gives every run the same time instead.

    python -m benchmarks.csdnet_vs_ce --data ../shared/data/oxford17                          # 15 runs
    python -m benchmarks.csdnet_vs_ce --data ../shared/data/oxford17 ../shared/data/cars196   # a table each
    python -m benchmarks.csdnet_vs_ce --data /data/ufg/Cotton80                               # val carved from train

Runs go through ``benchmarks/harness.py`` (a fresh process per run, ``--jobs`` at a time; finished
runs kept in ``<out>.partial.json``, so running the same command again resumes). Writes
``benchmarks/csdnet_vs_ce.result.json``: ``runs`` (one row per run, with its ``dataset``) and
``tables`` (``{dataset: {variant: {test_top1_mean, test_top1_std, val_top1_mean, val_top1_std,
runs, train_images_per_s, throughput_vs_ce}}}``), and prints one table per dataset. A figure that
no run produced is ``null`` in the JSON and ``-`` in the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import harness

BENCHMARK = "csdnet_vs_ce"
RECIPE = "oxford17_csdnet_cpu"
#: variant -> (method, ablation)
VARIANTS = {
    "ce": ("supervised", None),
    "csdnet": ("csdnet", None),
    "csdnet-no-ssdp": ("csdnet", "no-ssdp"),
    "csdnet-no-ddl": ("csdnet", "no-ddl"),
    "csdnet-no-ssdt": ("csdnet", "no-ssdt"),
}


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=[str(harness.ROOT.parent / "shared" / "data" / "oxford17")],
                   help="one or more ImageFolder roots (root/{train,[val,]test}/<class>/); one table each")
    p.add_argument("--recipe", default=RECIPE, help=f"shipped config or YAML path (default {RECIPE})")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="for a root without val/: fraction of each class of train carved off as val "
                        "(0 = no val figure); ignored where val/ exists")
    harness.add_arguments(p, out=str(harness.ROOT / "benchmarks" / "csdnet_vs_ce.result.json"), budget=0.0)
    args = p.parse_args(argv)
    if not 0.0 <= args.val_fraction < 1.0:
        p.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    harness.check_arguments(p, args)
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


def plan(args, datasets: dict, out_dir: Path) -> list[harness.Run]:
    """Dataset by dataset, seed by seed, every variant."""
    return [harness.Run(name=variant, recipe=args.recipe, method=VARIANTS[variant][0], seed=seed,
                        budget_minutes=args.budget, data=info["root"], out_dir=str(out_dir),
                        ablation=VARIANTS[variant][1], labels=(("dataset", name),),
                        val_fraction=args.val_fraction if info["val"] == "carved" else None)
            for name, info in datasets.items() for seed in args.seeds for variant in args.variants]


def aggregate(rows: list[dict], variants: list[str]) -> dict:
    """One table row per variant that has runs; a figure no run produced is None, never an error."""
    by_variant = {r["variant"]: r for r in harness.summarize(rows, by=("variant",))}
    table = {}
    for variant in variants:
        if variant not in by_variant:
            continue
        s = by_variant[variant]
        table[variant] = {"test_top1_mean": s["test_top1_mean"], "test_top1_std": s["test_top1_std"],
                          "val_top1_mean": s["val_top1_mean"], "val_top1_std": s["val_top1_std"],
                          "runs": s["runs"], "train_images_per_s": s["train_images_per_s_mean"]}
    ce_speed = table.get("ce", {}).get("train_images_per_s")
    for row in table.values():
        speed = row["train_images_per_s"]
        row["throughput_vs_ce"] = speed / ce_speed if ce_speed and speed else None
    return table


COLUMNS = [
    ("variant", lambda r: r["variant"]),
    ("test top-1", lambda r: harness.pm(r["test_top1_mean"], r["test_top1_std"])),
    ("val top-1", lambda r: harness.pm(r["val_top1_mean"], r["val_top1_std"])),
    ("runs", lambda r: str(r["runs"])),
    ("train img/s", lambda r: harness.fmt(r["train_images_per_s"], ".1f")),
    ("vs CE", lambda r: harness.fmt(r["throughput_vs_ce"], ".2f")),
]


def main(argv: list[str] | None = None, runner=None) -> dict:
    args = parse_args(argv)
    datasets = describe_datasets(args.data)
    recipe = harness.load_recipe(args.recipe)
    workdir = harness.workdir_of(args, BENCHMARK)
    results = harness.Results(args.out, BENCHMARK, fresh=args.fresh,
                              argv=None if argv is None else ["benchmarks/csdnet_vs_ce.py", *argv])
    runs = plan(args, datasets, workdir / "runs")
    rows = harness.launch(runs, results, jobs=args.jobs, threads=args.threads, workdir=workdir, runner=runner)
    tables = {name: aggregate([r for r in rows if r["dataset"] == name], args.variants) for name in datasets}
    result = results.finish({
        "data": [d["root"] for d in datasets.values()],
        "datasets": {name: {**d, "val_fraction": args.val_fraction if d["val"] == "carved" else None}
                     for name, d in datasets.items()},
        "recipe": args.recipe, "config": args.recipe, "k": recipe.data.few_shot_k,
        "image_size": recipe.data.image_size, "epochs": recipe.train.epochs, "budget_minutes": args.budget,
        "seeds": args.seeds, "variants": args.variants, "jobs": args.jobs,
        "torch_threads": args.threads or harness.default_threads(args.jobs),
        "complete": len(rows) == len(runs), "runs": rows, "tables": {name: t for name, t in tables.items() if t}})
    for name, table in result["tables"].items():
        info = datasets[name]
        val = "val split" if info["val"] == "split" else f"val carved: {args.val_fraction:g} of train"
        harness.print_table([{"variant": v, **t} for v, t in table.items()], COLUMNS, markdown=args.markdown,
                            title=f"{name}: {args.recipe}, K={recipe.data.few_shot_k}, {recipe.data.image_size} px, "
                                  f"{'%g min' % args.budget if args.budget else f'{recipe.train.epochs} epochs'}, "
                                  f"seeds {args.seeds}, {val}")
    if results.failures:
        print(f"\n{len(results.failures)} failed: " + ", ".join(f"{f['labels'].get('dataset')} {f['variant']} "
                                                              f"s{f['seed']}" for f in results.failures))
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
