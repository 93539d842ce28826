"""The confusion matrix of a split and the class pairs a model mixes up most.

In fine-grained work the interesting errors are concentrated: a few look-alike pairs (two
daffodil-like flowers, two gull species) take most of the mistakes. The matrix is row-normalized
(each true class sums to 1) so that classes with few test images are as visible as large ones,
and the pairs are ranked by how many test images went wrong that way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finegrain.viz.png import new_figure

#: above this many classes the tick labels are unreadable and are left off.
MAX_LABELLED_CLASSES = 40
#: above this many classes the per-cell counts are not written into the cells.
MAX_ANNOTATED_CLASSES = 20


@dataclass
class ConfusedPair:
    true_class: str
    predicted_class: str
    count: int
    rate: float  # share of the true class's images predicted as predicted_class

    def as_row(self) -> dict:
        return {"true": self.true_class, "predicted as": self.predicted_class, "images": self.count,
                "share of true class": f"{100 * self.rate:.1f}%"}


def row_normalized(confusion) -> np.ndarray:
    matrix = np.asarray(confusion, dtype=np.float64)
    totals = matrix.sum(1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def most_confused(confusion, class_names: list[str], k: int = 10) -> list[ConfusedPair]:
    """The ``k`` off-diagonal cells with the most images (ties: higher rate first)."""
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {matrix.shape} does not fit {len(class_names)} class names")
    rates = row_normalized(matrix)
    cells = [(int(matrix[t, p]), float(rates[t, p]), t, p)
             for t in range(len(matrix)) for p in range(len(matrix)) if t != p and matrix[t, p] > 0]
    cells.sort(key=lambda c: (-c[0], -c[1], c[2], c[3]))
    return [ConfusedPair(class_names[t], class_names[p], n, r) for n, r, t, p in cells[:k]]


def confusion_figure(confusion, class_names: list[str], title: str = "confusion matrix (test)"):
    """Heat map of the row-normalized matrix; counts written in the cells for small class sets."""
    matrix = np.asarray(confusion, dtype=np.int64)
    rates = row_normalized(matrix)
    n = len(class_names)
    side = min(16.0, max(5.0, 0.42 * n + 2.5))
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    if n <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
    if n <= MAX_ANNOTATED_CLASSES:
        for t in range(n):
            for p in range(n):
                if matrix[t, p]:
                    ax.text(p, t, str(matrix[t, p]), ha="center", va="center", fontsize=7,
                            color="white" if rates[t, p] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig
