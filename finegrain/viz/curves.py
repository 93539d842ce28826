"""Training curves from a run's ``metrics.csv``: every logged loss term of every phase, the
learning rate, and validation/test accuracy.

The loop logs per-step rows (``train/<term>`` or ``train/<phase>/<term>`` when a method has
several phases), one row per epoch (``train/<term>_mean``, ``lr``, ``val/*``) and a final
``test/*`` row. The curves read whatever terms are there, so a new method's losses appear
without touching this module.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from finegrain.viz.png import new_figure

#: train/ keys that are rates or counters, not loss terms.
NOT_LOSSES = ("images_per_s", "iterations_per_s", "skipped")
ACCURACY_KEYS = ("val/top1", "val/top5", "val/mean_class_acc")
TEST_KEYS = ("test/top1", "test/top5")


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` with the empty cells dropped and the rest as floats."""
    with open(path, newline="") as handle:
        rows = []
        for raw in csv.DictReader(handle):
            row = {}
            for key, value in raw.items():
                if key is None or value in (None, ""):
                    continue
                try:
                    row[key] = float(value)
                except ValueError:
                    continue
            rows.append(row)
    return rows


def is_accuracy(term: str) -> bool:
    """Methods log batch accuracies (``train_acc``) beside their losses; they are drawn with accuracy."""
    return "acc" in term


def _phase_and_term(key: str) -> tuple[str, str] | None:
    """``train/loss`` -> (train, loss); ``train/student/kd`` -> (student, kd); rates -> None."""
    if not key.startswith("train/"):
        return None
    rest = key[len("train/"):]
    phase, _, term = rest.rpartition("/")
    if term.removesuffix("_mean") in NOT_LOSSES:
        return None
    return phase or "train", term


def train_series(rows: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """{phase: {term: (steps, values)}} of every logged train term: per-step values, or the
    per-epoch means where those are denser (``train.log_every`` larger than an epoch, or 0)."""
    steps_: dict[str, dict[str, tuple[list, list]]] = {}
    means: dict[str, dict[str, tuple[list, list]]] = {}
    for row in rows:
        for key, value in row.items():
            split = _phase_and_term(key)
            if split is None or not math.isfinite(value):
                continue
            phase, term = split
            target = means if term.endswith("_mean") else steps_
            xs, ys = target.setdefault(phase, {}).setdefault(term.removesuffix("_mean"), ([], []))
            xs.append(row.get("step", len(xs)))
            ys.append(value)
    series = {}
    for phase in dict.fromkeys([*steps_, *means]):  # the loop's phase order (CSV column order)
        per_step, per_epoch = steps_.get(phase, {}), means.get(phase, {})
        for term in set(per_step) | set(per_epoch):
            dense = per_step.get(term, ([], []))
            sparse = per_epoch.get(term, ([], []))
            series.setdefault(phase, {})[term] = dense if len(dense[0]) > len(sparse[0]) else sparse
    return series


def loss_series(rows: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """The loss terms of ``train_series`` (accuracies left out), phases without any dropped."""
    series = {phase: {t: v for t, v in terms.items() if not is_accuracy(t)} for phase, terms in train_series(rows).items()}
    return {phase: terms for phase, terms in series.items() if terms}


def train_accuracy_series(rows: list[dict]) -> dict[str, tuple[list, list]]:
    """Batch accuracies logged by methods, in percent (a fraction is scaled by 100)."""
    out = {}
    for phase, terms in train_series(rows).items():
        for term, (xs, ys) in terms.items():
            if is_accuracy(term):
                scale = 100.0 if ys and max(ys) <= 1.0 else 1.0
                out[f"train/{term}" if phase == "train" else f"{phase}/{term}"] = (xs, [y * scale for y in ys])
    return out


def _running_mean(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _plot_losses(ax, phase: str, terms: dict, val_loss: list | None = None) -> None:
    index = -1
    for index, (term, (steps, values)) in enumerate(sorted(terms.items())):
        colour = f"C{index % 10}"
        if len(values) > 40:  # noisy per-step values: faint raw line, bold running mean
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _running_mean(values, max(5, len(values) // 25)), color=colour, label=term)
        else:
            ax.plot(steps, values, color=colour, marker="o", markersize=3, label=term)
    if val_loss:
        ax.plot([p[0] for p in val_loss], [p[1] for p in val_loss], color=f"C{(index + 1) % 10}", linestyle="--",
                marker="s", markersize=4, label="val loss (cross-entropy)")
    ax.set_title(f"losses: {phase}" if phase != "train" else "losses")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _plot_lr(ax, rows: list[dict]) -> None:
    points = [(r["step"], r["lr"]) for r in rows if "lr" in r and "step" in r]
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, color="C4")
    ax.set_title("learning rate (end of epoch)")
    ax.set_xlabel("step")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)


def _plot_accuracy(ax, rows: list[dict]) -> None:
    for index, (name, (steps, values)) in enumerate(sorted(train_accuracy_series(rows).items())):
        ax.plot(steps, values, color="gray", alpha=0.6, linestyle=":", marker=".", label=f"{name} (batches)")
    for index, key in enumerate(ACCURACY_KEYS):
        points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                    color=f"C{index}", linestyle="--" if "mean_class" in key else "-", label=key)
    for index, key in enumerate(TEST_KEYS):
        points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker="*", s=120, zorder=3,
                       color=f"C{index}", edgecolor="black", label=f"{key} (final)")
    ax.set_title("accuracy (%)")
    ax.set_xlabel("step")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def has_accuracy(rows: list[dict]) -> bool:
    return any(k in r for r in rows for k in ACCURACY_KEYS + TEST_KEYS) or bool(train_accuracy_series(rows))


def curves_figure(rows: list[dict]):
    """One figure: a loss panel per phase, the learning rate, accuracy (panels with data only)."""
    series = loss_series(rows)
    val_loss = [(r["step"], r["val/loss"]) for r in rows if "val/loss" in r and "step" in r]
    panels = [("loss", phase) for phase in series]
    if any("lr" in r for r in rows):
        panels.append(("lr", None))
    if has_accuracy(rows):
        panels.append(("accuracy", None))
    if not panels:
        raise ValueError("metrics.csv holds no losses, learning rate or accuracy to plot")
    panels_of_losses = [phase for kind, phase in panels if kind == "loss"]
    columns = min(3, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig = new_figure(5.0 * columns, 3.6 * lines)
    for index, (kind, phase) in enumerate(panels):
        ax = fig.add_subplot(lines, columns, index + 1)
        if kind == "loss":
            # the validation loss is the deployed classifier's: shown with the last (classifier) phase
            _plot_losses(ax, phase, series[phase], val_loss if phase == panels_of_losses[-1] else None)
        elif kind == "lr":
            _plot_lr(ax, rows)
        else:
            _plot_accuracy(ax, rows)
    fig.tight_layout()
    return fig
