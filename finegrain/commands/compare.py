"""``finegrain compare RUN_DIR...``: one table of runs, printed and written as Markdown and CSV.

Columns: run, method, backbone, test top-1, test top-5, parameters (of the deployable classifier),
training images/s. Values come from each run's ``summary.json`` and ``model.json``; nothing is
re-evaluated, so comparing finished runs takes no time.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from finegrain.errors import CheckpointError

COLUMNS = ("run", "method", "backbone", "top1", "top5", "params", "images_per_s")
HEADERS = {"run": "run", "method": "method", "backbone": "backbone", "top1": "top-1 %", "top5": "top-5 %",
           "params": "params", "images_per_s": "train images/s"}


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare finished runs in one table (Markdown + CSV)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument_group("output").add_argument("--out", metavar="PREFIX", default="compare",
                                                help="writes PREFIX.md and PREFIX.csv (the table is also printed)")
    p.set_defaults(func=run)


def run_row(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise CheckpointError(f"{run_dir}: no summary.json (not a finished run folder)")
    summary = json.loads(summary_path.read_text())
    model_path = run_dir / "model.json"
    model = json.loads(model_path.read_text()) if model_path.is_file() else {}
    return {
        "run": run_dir.name,
        "method": summary.get("method") or model.get("method", "?"),
        "backbone": summary.get("architecture") or model.get("architecture", "?"),
        "top1": summary.get("test_top1"),
        "top5": summary.get("test_top5"),
        "params": summary.get("params"),
        "images_per_s": summary.get("images_per_s"),
    }


def _cell(key: str, value) -> str:
    if value is None or (key == "images_per_s" and not value):  # data-free runs read no images
        return "-"
    if key in ("top1", "top5"):
        return f"{value:.2f}"
    if key == "images_per_s":
        return f"{value:.1f}"
    if key == "params":
        return f"{value / 1e6:.2f} M"
    return str(value)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("top1", "top5", "params", "images_per_s") else "---" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def run(args) -> int:
    rows = [run_row(r) for r in args.runs]
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    md_path, csv_path = prefix.with_name(prefix.name + ".md"), prefix.with_name(prefix.name + ".csv")
    md_path.write_text(table)
    write_csv(rows, csv_path)
    print(table, end="")
    print(f"written: {md_path}, {csv_path}")
    return 0
