"""Accuracy against time: the best data-free methods and KD on real images at 2, 6 and 20 minutes.

Whether the ordering of ``benchmarks/data_free.py`` holds at other budgets is a question of its
own: a method that learns fast may be overtaken by one that learns well. This benchmark takes,
from the finished ``data_free.result.json`` (``--source``):

1. its teacher (the same run folder, so the same weights) and data;
2. the ``--top`` (default 3) data-free rows with the highest mean val top-1 — rows of the paper's
   ablation switches left out — each with the settings its tuning chose, and ``kd`` on the real
   training images;
3. each at every ``--budgets`` minute count (default 2 6 20) on ``--seeds`` (default 0): a run
   whose spec is already in the source (its 6-minute runs) is reused from it, not run again, and
   says so (``reused_from``).

Writes ``benchmarks/data_free_budget.result.json`` and the plot ``benchmarks/data_free_budget.png``
(test top-1 against minutes, one line per row, the teacher dashed). ``--device cuda`` runs the same
rows on a GPU (``--out``/``--plot`` then name other files; the JSON says ``device``).

    python -m benchmarks.data_free_budget
    python -m benchmarks.data_free_budget --device cuda --budgets 0.5 2 6 --out benchmarks/data_free_budget_gpu.result.json --plot benchmarks/data_free_budget_gpu.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import harness

BENCHMARK = "data_free_budget"
SOURCE = harness.ROOT / "benchmarks" / "data_free.result.json"
BUDGETS = (2.0, 6.0, 20.0)
REFERENCE = "kd"


def pick_rows(source: dict, top: int) -> list[str]:
    """The ``top`` data-free rows by mean val top-1 (no ablation rows, not kd), then kd."""
    return harness.best_by_val(source, top, leave_out=(REFERENCE,)) + ([REFERENCE] if REFERENCE in source["rows"] else [])


def teacher_of(args, source: dict, source_path: Path) -> dict:
    """The teacher every row distils: the source's run folder, checked to hold the very weights the
    source distilled (CPU training gives the same weights again only on the same kind of processor), or
    ``--teacher``, evaluated on the data the rows read."""
    if args.teacher:
        return {**harness.teacher_reference(args.teacher, args.data or source["data"]),
                "digest": harness.teacher_digest(args.teacher)}
    teacher = source["teacher"]
    if not (Path(teacher["run_dir"]) / "model.safetensors").is_file():
        raise SystemExit(f"{source_path}: its teacher {teacher['run_dir']} is gone; rerun python -m "
                         "benchmarks.data_free first (the same weights again only on the same kind of processor), "
                         "or pass --teacher")
    digest = harness.teacher_digest(teacher["run_dir"])
    if teacher.get("digest") not in (None, digest):
        raise SystemExit(f"{teacher['run_dir']}: its weights (digest {digest}) are not the teacher {source_path} "
                         f"distilled ({teacher['digest']}); pass --teacher to distil it in a table of its own")
    return teacher


def plan(args, source: dict, names: list[str], out_dir: Path, teacher: dict, data: str) -> list[harness.Run]:
    """Every run, budget-major (every row at the shortest budget first)."""
    chosen = source.get("tuning", {}).get("chosen", {})
    runs = []
    for budget in args.budgets:
        for seed in args.seeds:
            for name in names:
                row = source["rows"][name]
                settings = tuple(tuple(pair) for pair in chosen.get(name, {}).get("settings", []))
                runs.append(harness.Run(name=name, recipe=row["recipe"], method=row["method"], seed=seed,
                                        budget_minutes=budget, teacher=teacher["run_dir"],
                                        data=data, out_dir=str(out_dir), ablation=row["ablation"],
                                        settings=settings, accelerator=args.device))
    return runs


def curves(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (row, budget), in row order then budget order."""
    summary = harness.summarize(rows, by=("variant", "budget_minutes"))
    return sorted(summary, key=lambda r: ([x["variant"] for x in summary].index(r["variant"]), r["budget_minutes"]))


def plot(points: list[dict], teacher: dict, path: str | Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in dict.fromkeys(p["variant"] for p in points):
        mine = [p for p in points if p["variant"] == name]
        ax.errorbar([p["budget_minutes"] for p in mine], [p["test_top1_mean"] for p in mine],
                    yerr=[p["test_top1_std"] or 0.0 for p in mine], marker="o", capsize=3,
                    label=name + (" (real images)" if name == REFERENCE else ""))
    if teacher.get("test_top1") is not None:
        ax.axhline(teacher["test_top1"], color="grey", linestyle="--", label=f"teacher {teacher['test_top1']:.1f}")
    ax.set_xscale("log")
    budgets = sorted({p["budget_minutes"] for p in points})
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.set_xticks([], minor=True)  # a log axis would label 3 and 4 as "3×10⁰" between the budgets
    ax.set_xlabel("time budget per run (minutes)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


COLUMNS = [
    ("row", lambda r: harness.fmt(r.get("variant"))),
    ("minutes", lambda r: harness.fmt(r.get("budget_minutes"), "g")),
    ("seeds", lambda r: harness.fmt(r.get("runs"), "d")),
    ("test top-1", lambda r: harness.pm(r["test_top1_mean"], r["test_top1_std"])),
    ("val top-1", lambda r: harness.pm(r["val_top1_mean"], r["val_top1_std"])),
    ("steps", lambda r: harness.fmt(r.get("steps_mean"), ".0f")),
    ("seconds", lambda r: harness.fmt(r.get("seconds_mean"), ".0f")),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=str(SOURCE), help="a finished data_free result JSON (teacher, rows, tuning)")
    p.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS), help="minutes per run")
    p.add_argument("--top", type=int, default=3, help="data-free rows taken, by mean val top-1")
    p.add_argument("--device", default=None, help="train.accelerator of every run (default: the recipes' cpu)")
    p.add_argument("--teacher", default=None,
                   help="distil this teacher run instead of the source's (evaluated on the data read; for a machine "
                        "without the source's run folder)")
    p.add_argument("--data", default=None,
                   help="the source's dataset read from another folder, e.g. a copy on a GPU machine (default: the "
                        "source's; the JSON records the folder read)")
    p.add_argument("--plot", default=str(harness.ROOT / "benchmarks" / "data_free_budget.png"), help="the figure")
    harness.add_arguments(p, out=str(harness.ROOT / "benchmarks" / "data_free_budget.result.json"), budget=0.0,
                          seeds=(0,))
    args = p.parse_args(argv)
    harness.check_arguments(p, args)
    if any(b <= 0 for b in args.budgets) or args.top < 1:
        p.error("--budgets must be > 0 and --top >= 1")
    return args


def main(argv=None, runner=None) -> dict:
    args = parse_args(argv)
    source_path = Path(args.source)
    if not source_path.is_file():
        raise SystemExit(f"--source {source_path}: no such file (run python -m benchmarks.data_free first)")
    source = json.loads(source_path.read_text())
    teacher = teacher_of(args, source, source_path)
    data = str(Path(args.data).resolve()) if args.data else source["data"]
    names = pick_rows(source, args.top)
    workdir = harness.workdir_of(args, BENCHMARK)
    results = harness.Results(args.out, BENCHMARK, fresh=args.fresh, sources=[source_path],
                              argv=None if argv is None else ["benchmarks/data_free_budget.py", *argv])
    runs = plan(args, source, names, workdir / "runs", teacher, data)
    done = harness.launch(runs, results, jobs=args.jobs, threads=args.threads, workdir=workdir, runner=runner,
                          teachers={teacher["run_dir"]: teacher})
    points = curves(done)
    title = f"{Path(source['data']).name}: {teacher.get('architecture')} teacher, {args.device or 'cpu'}"
    plot(points, teacher, args.plot, title)
    result = results.finish({
        "source": harness.relative_path(source_path), "data": data,
        "teacher": teacher,
        "device": args.device or "cpu (recipes)", "budgets": args.budgets, "seeds": args.seeds, "rows": names,
        "jobs": args.jobs, "threads": args.threads or harness.default_threads(args.jobs), "plot": args.plot,
        "complete": len(done) == len(runs), "runs": done, "curves": points})
    harness.print_table(points, COLUMNS, markdown=args.markdown)
    print(f"\nwrote {args.out} and {args.plot}")
    return result


if __name__ == "__main__":
    main()
