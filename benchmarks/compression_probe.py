"""Why does a student learn less from one teacher than from another? Measurements of finished
data-free runs, for the compression case (a Lite2 teacher into a Lite0 student against Lite0
into Lite0).

For each run folder given, with its own teacher and its last checkpoint's synthesizer:

* **the teacher's view of real images at the run's resolution**: its val top-1, and ``L_BN`` of
  real val batches — how far real 128-px batches already sit from the running statistics that the
  synthesizer is asked to match (a teacher whose real data does not match its own statistics
  hands the generator a target no image meets);
* **the same of synthetic images**: ``L_BN``, the teacher's confidence and the classes it sees;
* **student against teacher**: top-1 agreement and mean ``KL(T‖S)`` (T = 1) on real val images
  and on synthetic ones. High agreement on synthetic and low on real: the student learnt the
  synthetic set, which does not carry the teacher's real decision rule; low on both: the student
  has not learnt the synthetic set either (too few steps, or a student too unlike the teacher);
* **which layers moved**: ``‖W − W₀‖ / ‖W₀‖`` of every student stage against its ImageNet start.

    python -m benchmarks.compression_probe --data ../shared/data/oxford17 --runs RUN_A RUN_B

Writes ``benchmarks/results/compression_probe.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from benchmarks import harness

SYNTHETIC = 512        # synthetic images sampled per run
BATCH = 64             # batch size of every L_BN measurement (real and synthetic alike)


def real_batches(meta: dict, data: str, split: str = "val"):
    """The real ``split`` preprocessed exactly as the teacher's data was, in batches of ``BATCH``."""
    from finegrain.data.dataset import FGVCDataset
    from finegrain.data.loaders import make_loader
    from finegrain.data.transforms import base_resize, eval_augment
    from finegrain.engine.evaluate import checkpoint_data_config, checkpoint_split

    data_cfg = checkpoint_data_config(meta, data)
    samples = checkpoint_split(meta, data_cfg, split)
    dataset = FGVCDataset(samples, meta["class_names"], base_resize(data_cfg.image_size, data_cfg.crop_ratio),
                          eval_augment(data_cfg), name=split)
    return list(make_loader(dataset, BATCH, train=False, num_workers=0))


@torch.no_grad()
def responses(method, batches) -> dict:
    """Teacher and student on ``batches`` of images: logits, labels (if any) and per-batch L_BN."""
    from finegrain.datafree.bn_hooks import BNStatsHooks
    from finegrain.losses.bn_stats import BNStatsLoss

    hooks, bn_loss = BNStatsHooks(method.teacher), BNStatsLoss()
    teacher, student, labels, bn = [], [], [], []
    method.student.eval()
    for batch in batches:
        images, y = batch if isinstance(batch, (list, tuple)) else (batch, None)
        with hooks.collect() as stats:
            teacher.append(method.teacher(images).float())
        bn.append(float(bn_loss(stats)))
        student.append(method.student(images).float())
        if y is not None:
            labels.append(y)
    hooks.remove()
    return {"teacher": torch.cat(teacher), "student": torch.cat(student),
            "labels": torch.cat(labels) if labels else None, "bn": bn}


def compare(r: dict) -> dict:
    """Agreement, KL(T‖S), the teacher's confidence and classes, L_BN; top-1s where labels exist."""
    t, s = r["teacher"], r["student"]
    kl = torch.nn.functional.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True, reduction="batchmean")
    out = {"agreement": float((t.argmax(1) == s.argmax(1)).float().mean() * 100), "kl_teacher_student": float(kl),
           "teacher_confidence": float(t.softmax(1).max(1).values.mean()),
           "teacher_classes": int(t.argmax(1).unique().numel()), "bn_loss": sum(r["bn"]) / len(r["bn"])}
    if r["labels"] is not None:
        out["teacher_top1"] = float((t.argmax(1) == r["labels"]).float().mean() * 100)
        out["student_top1"] = float((s.argmax(1) == r["labels"]).float().mean() * 100)
    return out


def stage_of(name: str) -> str:
    """timm EfficientNet parameter name -> its stage: stem, blocks.N, head, classifier."""
    match = re.match(r"(?:net\.|model\.)?(blocks\.\d+)", name)
    if match:
        return match.group(1)
    if "classifier" in name or name.startswith(("fc.", "head.fc")):
        return "classifier"
    return "head" if "head" in name or name.startswith("bn2") else "stem"


@torch.no_grad()
def weight_change(student: torch.nn.Module, start: torch.nn.Module) -> dict[str, float]:
    """``‖W − W₀‖ / ‖W₀‖`` per stage, over the weights of every parameter the two share."""
    start_params = dict(start.named_parameters())
    moved, size = {}, {}
    for name, p in student.named_parameters():
        if name in start_params and start_params[name].shape == p.shape:
            stage = stage_of(name)
            moved[stage] = moved.get(stage, 0.0) + float((p - start_params[name]).pow(2).sum())
            size[stage] = size.get(stage, 0.0) + float(start_params[name].pow(2).sum())
    return {stage: (moved[stage] / size[stage]) ** 0.5 for stage in moved if size[stage] > 0}


def probe(run_dir: str, data: str) -> dict:
    from finegrain.datafree.distiller import build_student
    from finegrain.viz.synthetic import load_distiller

    method, meta = load_distiller(run_dir)
    method.eval()
    teacher_meta = {**meta, "class_names": method.class_names}
    real = compare(responses(method, real_batches(teacher_meta, data)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        synthetic_batches = [method.synthesizer.sample(BATCH) for _ in range(SYNTHETIC // BATCH)]
    synthetic = compare(responses(method, synthetic_batches))
    start = build_student(method.cfg, method.num_classes)
    summary = harness.read_summary(run_dir)
    return {"run_dir": str(Path(run_dir).resolve()), "teacher_arch": method.teacher.arch,
            "student_arch": summary.get("architecture"), "steps": summary.get("steps"),
            "test_top1": summary.get("test_top1"), "real_val": real, "synthetic": synthetic,
            "weight_change": weight_change(method.student, start)}


COLUMNS = [
    ("run", lambda r: Path(r["run_dir"]).name),
    ("teacher", lambda r: r["teacher_arch"]),
    ("steps", lambda r: harness.fmt(r["steps"])),
    ("T val", lambda r: harness.fmt(r["real_val"].get("teacher_top1"))),
    ("S val", lambda r: harness.fmt(r["real_val"].get("student_top1"))),
    ("agree real", lambda r: harness.fmt(r["real_val"]["agreement"])),
    ("agree syn", lambda r: harness.fmt(r["synthetic"]["agreement"])),
    ("KL real", lambda r: harness.fmt(r["real_val"]["kl_teacher_student"])),
    ("KL syn", lambda r: harness.fmt(r["synthetic"]["kl_teacher_student"])),
    ("L_BN real", lambda r: harness.fmt(r["real_val"]["bn_loss"], ".0f")),
    ("L_BN syn", lambda r: harness.fmt(r["synthetic"]["bn_loss"], ".0f")),
    ("T conf syn", lambda r: harness.fmt(r["synthetic"]["teacher_confidence"])),
    ("moved (stem/b3/b6/cls)", lambda r: " ".join(harness.fmt(r["weight_change"].get(k), ".3f")
                                                for k in ("stem", "blocks.3", "blocks.6", "classifier"))),
]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="finished data-free run folders")
    p.add_argument("--data", required=True, help="ImageFolder root with the real val/ split")
    p.add_argument("--out", default=str(harness.ROOT / "benchmarks" / "results" / "compression_probe.json"))
    args = p.parse_args(argv)
    rows = [probe(run, args.data) for run in args.runs]
    words = sys.argv if argv is None else ["benchmarks/compression_probe.py", *argv]
    result = {"benchmark": "compression_probe", "command": harness.command_line(words),
              "data": str(Path(args.data).resolve()), "synthetic_images": SYNTHETIC, "batch": BATCH, "runs": rows}
    harness.write_json(args.out, result)
    harness.print_table(rows, COLUMNS)
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
