"""The README's figures: the shipped recipes run as a user runs them, one command each, on Oxford-17.

Rows (every run gets the whole machine, one at a time, as a user's run does):

* ``teacher``: the supervised recipe ``oxford17_cpu`` (the demo's first stage), seed 0: EfficientNet-
  Lite0 from its shipped ImageNet weights, 6 epochs at 128 px;
* ``datafree-fixed``: the demo's distill recipe (``datafree_fast``, Fast-DFKD) on that teacher at its
  fixed schedule (150 iterations), seeds 0, 1, 2 (``--seeds``);
* ``datafree-budget``: ``datafree_practical`` (DFKD-FGVC, the default of ``finegrain distill``) with
  ``--budget`` minutes (default 6): the run sizes its own schedule to the minutes, seeds 0, 1, 2.

Each row records its command; ``rows`` holds one record per row name (mean ± std over its seeds),
``runs`` every run. Resumable: a re-run with the same ``--out`` reuses the runs already done.

    python -m benchmarks.recipes --data ../shared/data/oxford17
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from benchmarks import harness
from finegrain.commands import demo

BENCHMARK = "recipes"
OUT = harness.ROOT / "benchmarks" / "recipes.result.json"
TEACHER_RECIPE = "oxford17_cpu"
#: row -> (recipe, method): the demo's fixed-schedule distillation and the CLI's default under a budget
DISTILL_ROWS = {"datafree-fixed": (demo.CONFIGS["distill"], "fast-dfkd"),
                "datafree-budget": ("datafree_practical", "dfkd-fgvc")}


def plan(args, teacher_dir: str | None) -> tuple[harness.Run, list[harness.Run]]:
    """The teacher run, and the distillation runs on ``teacher_dir`` (its run folder once trained)."""
    out = str(harness.workdir_of(args, BENCHMARK))
    teacher = harness.Run("teacher", TEACHER_RECIPE, "supervised", seed=0, data=args.data, out_dir=out)
    runs = []
    for budget, name in ((0.0, "datafree-fixed"), (args.budget, "datafree-budget")):
        recipe, method = DISTILL_ROWS[name]
        runs += [harness.Run(name, recipe, method, seed=seed, budget_minutes=budget,
                             teacher=teacher_dir, data=args.data, out_dir=out) for seed in args.seeds]
    return teacher, runs


#: how the README names each row
TITLES = {"teacher": "supervised teacher (Lite0, all 40 train images per class)",
          "datafree-fixed": "data-free student, Fast-DFKD at the recipe's fixed 150 iterations (the demo's distill stage)",
          "datafree-budget": "data-free student, DFKD-FGVC with `--budget 6`: sized to 6 minutes"}
#: the teacher's run folder as the README's commands name it (`finegrain train ... --name teacher`)
TEACHER_AS_TYPED = "runs/teacher"


def user_command(command: str, teacher_dir: str) -> str:
    """A run's command as a user types it: the recipe names the method, the seed is the default, and
    the teacher is the folder the teacher row's command writes (not this machine's path)."""
    command = re.sub(r" --method \S+| \S+\.seed=\d+", "", command).replace(teacher_dir, TEACHER_AS_TYPED)
    return command + " --name teacher" if command.startswith("finegrain train") else command


def record(name: str, rows: list[dict], kind: str, teacher_dir: str) -> dict:
    """One README row: the mean over seeds, the recipe and the command of seed 0."""
    summary = harness.summarize(rows)[0]
    first = rows[0]
    return {"name": TITLES.get(name, name), "variant": name, "kind": kind, "recipe": first["recipe"],
            "command": user_command(first["command"], teacher_dir),
            "seeds": summary["seeds"], "test_top1": summary["test_top1_mean"],
            "test_top1_std": summary["test_top1_std"], "val_top1": summary["val_top1_mean"],
            "seconds": summary["seconds_mean"], "budget_minutes": first["budget_minutes"] or None,
            "scheduled_steps": summary["scheduled_steps_mean"], "steps": summary["steps_mean"],
            "teacher_test_top1": first.get("teacher_test_top1"), "student_arch": first.get("student_arch"),
            "teacher_arch": first.get("teacher_arch")}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(harness.ROOT.parent / "shared" / "data" / "oxford17"),
                   help="an ImageFolder dataset with train/val/test (default: ../shared/data/oxford17)")
    harness.add_arguments(p, out=str(OUT), budget=6.0)
    args = p.parse_args(argv)
    harness.check_arguments(p, args)
    if not Path(args.data).is_dir():
        p.error(f"--data: {args.data} is not a folder")
    results = harness.Results(args.out, BENCHMARK, fresh=args.fresh)
    workdir = harness.workdir_of(args, BENCHMARK)
    teacher_run, _ = plan(args, None)
    teacher_row = harness.train_teacher(teacher_run, results, workdir=workdir, threads=args.threads)
    _, runs = plan(args, teacher_row["run_dir"])
    rows = harness.launch(runs, results, workdir=workdir, threads=args.threads)
    records = [record("teacher", [teacher_row], "teacher", teacher_row["run_dir"])]
    for name in ("datafree-fixed", "datafree-budget"):
        mine = [r for r in rows if r["variant"] == name]
        if mine:
            records.append(record(name, mine, "distill", teacher_row["run_dir"]))
    result = results.finish({"dataset": str(Path(args.data).resolve()), "rows": records,
                             "runs": [teacher_row, *rows]})
    harness.print_table(records, [("run", lambda r: r["name"]), ("recipe", lambda r: r["recipe"]),
                                  ("test top-1", lambda r: harness.pm(r["test_top1"], r["test_top1_std"])),
                                  ("val top-1", lambda r: harness.fmt(r["val_top1"])),
                                  ("steps", lambda r: harness.fmt(r["steps"], ".0f")),
                                  ("seconds", lambda r: harness.fmt(r["seconds"], ".0f"))])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
