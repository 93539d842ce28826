"""Metrics to CSV and TensorBoard, and progress a person can follow (rich on a terminal,
plain lines elsewhere, e.g. in CI logs). Only rank 0 writes."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path


class CSVLog:
    """Append-only metrics.csv; a new metric name rewrites the header (rare: once per run)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.columns: list[str] = []
        self.rows: list[dict] = []
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or [])
                self.rows = list(reader)

    def log(self, row: dict) -> None:
        new = [k for k in row if k not in self.columns]
        self.rows.append({k: row[k] for k in row})
        if new:
            self.columns += new
            with open(self.path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(self.rows)
        else:
            with open(self.path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.columns).writerow(row)

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the checkpoint so curves stay single-valued."""
        kept = [r for r in self.rows if int(float(r.get("step", 0) or 0)) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            with open(self.path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(self.rows)


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.csv = CSVLog(Path(run_dir) / "metrics.csv") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is a dependency, but a CSV alone still works
                self.tb = None

    def log(self, metrics: dict, step: int, epoch: int) -> None:
        if not self.enabled:
            return
        row = {"step": step, "epoch": epoch, "time": round(time.time(), 2)}
        row.update({k: _scalar(v) for k, v in metrics.items()})
        self.csv.log(row)
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(key, _scalar(value), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def _scalar(value):
    return round(float(value), 6) if hasattr(value, "__float__") else value


class Progress:
    """A rich progress bar when stdout is a terminal, otherwise one line per ``every`` steps."""

    def __init__(self, total: int, description: str, enabled: bool = True, every: int = 20):
        self.enabled, self.every, self.total, self.description = enabled, every, total, description
        self.rich = None
        self.done = 0
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self.rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self.rich.start()
            self.task = self.rich.add_task(description, total=total, info="")

    def advance(self, info: str = "", n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.rich is not None:
            self.rich.update(self.task, advance=n, info=info)
        elif self.done % self.every == 0 or self.done == self.total:
            print(f"{self.description} {self.done}/{self.total} {info}", flush=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


def echo(message: str, enabled: bool = True) -> None:
    if enabled:
        print(message, flush=True)
