"""Is synthesis working? What the teacher makes of the images the student learns from.

A data-free student can only learn classes the synthetic images carry. When synthesis has
collapsed — flat images, one mode — the teacher predicts one or two classes on everything, and
the student ends at chance however long it trains. Before finegrain logged this, a user learnt
it from a 5.88 % at the end of the run. Three numbers per epoch tell it early:

* ``classes_covered`` — how many classes the teacher predicts (argmax) on the student's batches;
* ``teacher_confidence`` — its mean top-1 probability there (low everywhere: no class found);
* ``bn_loss`` — ``L_BN`` of those batches against the teacher's running statistics (how unlike
  the real data they are to the teacher, layer by layer; a real batch scores a few thousand on an
  EfficientNet-Lite0 at 128 px, flat grey images far more).

The monitor hooks the teacher's classifier and BatchNorm layers and records only inside
:meth:`SynthesisHealth.watch`, which the distiller opens around student steps, so synthesis
steps and evaluation pay nothing.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from finegrain.datafree.bn_hooks import BNStatsHooks
from finegrain.losses.bn_stats import BNStatsLoss

#: coverage below this fraction of the classes (of those a batch could show) gets a warning
COLLAPSE_FRACTION = 0.5


class SynthesisHealth:
    """Per-epoch class coverage, confidence and L_BN of the teacher on synthetic student batches."""

    def __init__(self, teacher, head: nn.Module, num_classes: int, bn_every: int = 1):
        if bn_every < 1:
            raise ValueError(f"bn_every must be >= 1, got {bn_every}")
        self.num_classes = num_classes
        self.bn_every = bn_every
        self.bn_hooks = BNStatsHooks(teacher)
        self.bn_loss = BNStatsLoss()
        self._watching = False
        head.register_forward_hook(self._record_logits)
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(self.num_classes, dtype=torch.long)
        self.confidence_sum, self.bn_sum, self.batches = 0.0, 0.0, 0
        self.watched = 0  # batches seen this epoch; L_BN is measured on every bn_every-th, the first included

    @property
    def images(self) -> int:
        return int(self.counts.sum())

    def _record_logits(self, module, inputs, logits) -> None:
        if not self._watching:
            return
        with torch.no_grad():
            probabilities = logits.detach().float().softmax(1)
            confidence, predicted = probabilities.max(1)
            self.counts += torch.bincount(predicted.cpu(), minlength=self.num_classes)
            self.confidence_sum += float(confidence.sum())

    @contextmanager
    def watch(self):
        """Record what the teacher sees inside (one student step's batch).

        Class coverage and confidence come from every batch (the logits are there anyway); ``L_BN``
        from every ``bn_every``-th only: its per-layer moments are a full pass over every BatchNorm
        input, 5-10 % of a student step on the CPU, and a sample of batches estimates the epoch mean."""
        self._watching = True
        measure_bn = self.watched % self.bn_every == 0
        self.watched += 1
        try:
            with self.bn_hooks.collect() if measure_bn else nullcontext([]) as stats:
                yield
            if stats:
                with torch.no_grad():
                    self.bn_sum += float(self.bn_loss([tuple(t.detach() for t in s) for s in stats]))
                    self.batches += 1
        finally:
            self._watching = False

    def summary(self) -> dict[str, float]:
        """``health/*`` figures of what was recorded since the last reset (empty if nothing was)."""
        if self.images == 0:
            return {}
        out = {"health/classes_covered": float((self.counts > 0).sum()),
               "health/teacher_confidence": self.confidence_sum / self.images}
        if self.batches:
            out["health/bn_loss"] = self.bn_sum / self.batches
        return out

    def warning(self) -> str | None:
        """A one-line warning when the teacher predicts under half the classes it could have shown."""
        if self.images == 0:
            return None
        covered = int((self.counts > 0).sum())
        possible = min(self.num_classes, self.images)
        if covered >= COLLAPSE_FRACTION * possible:
            return None
        top = int(self.counts.argmax())
        share = 100.0 * float(self.counts[top]) / self.images
        return (f"synthesis looks collapsed: the teacher predicts only {covered} of {self.num_classes} classes on "
                f"this epoch's {self.images} synthetic images (class {top} takes {share:.0f} %, mean confidence "
                f"{self.confidence_sum / self.images:.2f}); the student can only learn those classes. "
                f"See docs/datafree.md, 'Health signals'.")
