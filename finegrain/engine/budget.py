"""A time budget for a run: how many iterations fit in the minutes it was given.

Why sized, not cut: a run stopped by the clock leaves its learning-rate schedule unfinished, and a
fixed schedule either leaves minutes unused or overruns them on a busier day. With
``train.budget_minutes`` the run first trains a few iterations on its provisional schedule
(``train.epochs``), timing each after the first (the first carries the synthesizer's warm-up, the
data loader's start and one-off allocations), estimates what one pass of evaluation costs, and
gives its schedule the largest number of iterations whose training, per-epoch evaluations and final
test fit before the deadline. It sizes again at the end of each epoch, from that epoch's step times
and its measured val pass: steps get faster as a process settles (a data-free Lite0 run on 2 cores:
3.6 s per iteration at first, 2.9 s from its third epoch on), and a length fixed from the first
minute left a tenth of the budget unused. Every checkpoint keeps the length it was written under,
and a resumed run continues that schedule without sizing it again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

#: gaps between consecutive iteration ends timed before sizing: at least this many ...
MIN_TIMED = 3
#: ... and at least this many seconds of them, unless MAX_TIMED came first (tiny, fast models)
MIN_TIMED_SECONDS = 5.0
MAX_TIMED = 50
#: seconds kept free at the end for what is not modelled (checkpoint writes, export, summary)
END_MARGIN_S = 3.0


@dataclass
class ScheduleCost:
    """What the rest of a run costs, in seconds, as a function of its total iterations."""

    seconds_per_iteration: float
    val_seconds: float  # one evaluation pass over val (0 without a val split)
    test_seconds: float  # the final pass over test (0 without a test split)
    iterations_per_epoch: int
    eval_every: int  # val after every N-th epoch and after the last (0 = only the last)

    def of(self, total: int, done: int, epoch: int) -> float:
        """Seconds from now (``done`` iterations finished, inside 0-based ``epoch``) to the run's end."""
        epochs = max(epoch + 1, math.ceil(total / self.iterations_per_epoch))
        val_passes = sum(1 for e in range(epoch, epochs)
                         if e + 1 == epochs or (self.eval_every and (e + 1) % self.eval_every == 0))
        return (total - done) * self.seconds_per_iteration + val_passes * self.val_seconds + self.test_seconds


@dataclass
class TimeBudget:
    """Times iterations until it can size the schedule; :meth:`size` does that once."""

    minutes: float
    started: float  # time.perf_counter() at the start of fit: set-up counts against the budget
    gaps: list = field(default_factory=list)  # every gap timed
    recent: list = field(default_factory=list)  # of the current epoch, or of the last one once it has ended
    _last_end: float | None = None
    _epoch_ended: bool = False

    @property
    def deadline(self) -> float:
        return self.started + 60.0 * self.minutes

    def epoch_started(self) -> None:
        """An epoch's end holds evaluation and a checkpoint: a gap across it is not a step's time.
        The last epoch's gaps are kept until the new epoch has timed enough of its own."""
        self._last_end, self._epoch_ended = None, True

    def iteration_ended(self) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            if self._epoch_ended:
                self.recent, self._epoch_ended = [], False
            self.gaps.append(now - self._last_end)
            self.recent.append(now - self._last_end)
        self._last_end = now

    def ready(self) -> bool:
        n = len(self.gaps)
        return n >= MAX_TIMED or (n >= MIN_TIMED and sum(self.gaps) >= MIN_TIMED_SECONDS)

    def seconds_per_iteration(self) -> float:
        """The median gap of the latest epoch timed (of all gaps while it has fewer than
        ``MIN_TIMED``): one slow iteration (a page fault storm, another process) must not shrink the run."""
        ordered = sorted(self.recent if len(self.recent) >= MIN_TIMED else self.gaps)
        return ordered[len(ordered) // 2]

    def size(self, cost: ScheduleCost, done: int, epoch: int) -> int:
        """The most total iterations (at least ``done``) whose remaining cost fits before the deadline."""
        left = self.deadline - time.perf_counter() - END_MARGIN_S
        low, high = done, done + max(0, int(left / max(cost.seconds_per_iteration, 1e-9)))
        while low < high:  # the cost grows with the total: the largest total that fits
            middle = (low + high + 1) // 2
            if cost.of(middle, done, epoch) <= left:
                low = middle
            else:
                high = middle - 1
        return low
