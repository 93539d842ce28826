"""Equal tuning: one declared search space, the same number of val trials for every method.

A comparison of methods is fair only when each got the same chance to be tuned. A benchmark
declares its search space once, as :class:`Dimension` s, and every method is tuned in it the
same way:

* a dimension names the config key it sets *for each method that has it* (the generator's lr
  for a generator-based method, the pixels' lr for DeepInversion; a method without the thing,
  such as an ``L_BN`` weight for DFAD, simply lacks the dimension);
* trial 0 is the recipe as shipped; trials 1..n-1 are distinct points of the method's space
  drawn at random (seeded by the method's name, so a rerun draws the same), none equal to the
  recipe's own point; a space with fewer points gives all it has;
* every trial runs at the same budget on the same seed; the trial with the highest val top-1
  is chosen (the earlier trial on a tie). Test is recorded, never used.

What a benchmark keeps of it: :func:`describe` (the space, as JSON), the trials' rows and
:func:`choose`'s pick, each row's ``tuning_trials``.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any, Mapping, Sequence

#: the key of a dimension's ``keys`` that every method not named there gets
EVERY_METHOD = "*"


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One axis of a search space.

    ``keys``: method name (or :data:`EVERY_METHOD`) -> config key, or a tuple of keys set together
    from a tuple value (a class-conditional generator and its prior's weight); a method mapped to
    None, or absent without an :data:`EVERY_METHOD` entry, lacks the dimension. ``relative``: the
    values are factors of the recipe's value of the key, not values."""

    name: str
    values: tuple
    keys: Mapping[str, Any]
    relative: bool = False

    def key_for(self, method: str):
        return self.keys[method] if method in self.keys else self.keys.get(EVERY_METHOD)

    def settings(self, method: str, cfg) -> list[tuple[tuple[str, Any], ...]]:
        """The dimension's points for ``method`` as ``((key, value), ...)``, the recipe ``cfg``'s
        value scaling a relative dimension."""
        key = self.key_for(method)
        if key is None:
            return []
        if isinstance(key, tuple):
            return [tuple(zip(key, value)) for value in self.values]
        if self.relative:
            base = config_value(cfg, key)
            return [((key, _round(base * factor)),) for factor in self.values]
        return [((key, value),) for value in self.values]


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def config_value(cfg, dotted: str):
    section, _, key = dotted.partition(".")
    return getattr(getattr(cfg, section), key)


def space_of(space: Sequence[Dimension], method: str, cfg) -> dict[str, list]:
    """``{dimension: [points]}`` of the dimensions ``method`` has."""
    return {dim.name: points for dim in space for points in [dim.settings(method, cfg)] if points}


def trials(space: Sequence[Dimension], method: str, cfg, n: int) -> list[tuple[tuple[str, Any], ...]]:
    """``n`` trials of ``method`` (fewer when its space is smaller): ``()`` — the recipe as shipped —
    then distinct random points of its space, none equal to the recipe's own."""
    if n < 1:
        raise ValueError(f"trials: n must be >= 1, got {n}")
    axes = list(space_of(space, method, cfg).values())
    grid = [tuple(pair for part in combo for pair in part) for combo in itertools.product(*axes)] if axes else []
    own = [point for point in grid if all(config_value(cfg, key) == value for key, value in point)]
    others = [point for point in grid if point not in own]
    drawn = random.Random(f"tuning:{method}").sample(others, min(n - 1, len(others)))
    return [()] + drawn


def choose(rows: Sequence[dict], key: str = "val_top1") -> dict | None:
    """The trial row with the highest ``key`` (the earlier trial on a tie); None without any."""
    scored = [row for row in rows if row.get(key) is not None]
    return max(sorted(scored, key=lambda r: r["trial"]), key=lambda r: r[key], default=None)


def describe(space: Sequence[Dimension]) -> list[dict]:
    """The search space as JSON."""
    return [{"name": dim.name, "values": list(dim.values), "relative": dim.relative,
             "keys": {method: (list(key) if isinstance(key, tuple) else key) for method, key in dim.keys.items()}}
            for dim in space]


# ------------------------------------------------------------------------------- in a benchmark
def trial_runs(space: Sequence[Dimension], rows: Mapping[str, tuple[str, str]], n: int, make_run) -> list:
    """Every trial of every tuned row, trial-major (trial 0 of every row first, so a tuning stopped
    part-way has every row's shipped point). ``rows``: name -> (recipe, method); ``make_run(name,
    trial, settings)`` makes the benchmark's :class:`~benchmarks.harness.Run`."""
    from benchmarks.harness import load_recipe

    points = {name: trials(space, method, load_recipe(recipe), n) for name, (recipe, method) in rows.items()}
    return [make_run(name, i, mine[i]) for i in range(n) for name, mine in points.items() if i < len(mine)]


def choices(trial_rows: Sequence[dict], names: Sequence[str], key: str = "val_top1") -> dict[str, dict]:
    """Each tuned row's chosen trial: ``{name: {trial, settings, <key>, trials}}`` (rows without a
    finished trial are left out)."""
    out = {}
    for name in names:
        mine = [row for row in trial_rows if row["variant"] == name]
        best = choose(mine, key)
        if best is not None:
            out[name] = {"trial": best["trial"], "settings": best["spec"]["settings"], key: best[key],
                         "trials": len(mine)}
    return out


def settings_text(row: dict) -> str:
    return " ".join(f"{key}={value}" for key, value in row["spec"]["settings"]) or "(recipe as shipped)"


def print_trials(trial_rows: Sequence[dict], chosen: dict, markdown: bool = False) -> None:
    """The trials of every row (val top-1, steps, seconds) and each row's choice."""
    from benchmarks import harness

    if not trial_rows:
        return
    columns = [("row", lambda r: r["variant"]), ("trial", lambda r: str(r["trial"])), ("settings", settings_text),
               ("val top-1", lambda r: harness.fmt(r.get("val_top1"))), ("steps", lambda r: harness.fmt(r.get("steps"))),
               ("seconds", lambda r: harness.fmt(r.get("seconds"), ".0f"))]
    ordered = sorted(trial_rows, key=lambda r: (r["variant"], r["trial"]))
    harness.print_table(ordered, columns, markdown=markdown, title="tuning trials (chosen on val)")
    for name, choice in chosen.items():
        print(f"{name}: trial {choice['trial']} of {choice['trials']} chosen (val {harness.fmt(choice.get('val_top1'))})")


def run_trials(trial_runs: Sequence, results, names: Sequence[str], plan: Mapping[str, Any], *,
               markdown: bool = False, **launch) -> tuple[list[dict], dict[str, dict]]:
    """Train the trials (``plan["jobs"]`` at a time, ``plan["threads"]`` each), choose each row's on
    ``plan["chosen_on"]`` and print them: ``(trial rows, choices)``. ``launch``: the rest of
    :func:`benchmarks.harness.launch`'s arguments."""
    from benchmarks import harness

    rows = harness.launch(trial_runs, results, **{**launch, "jobs": plan["jobs"], "threads": plan["threads"]})
    chosen = choices(rows, names, plan["chosen_on"])
    print_trials(rows, chosen, markdown=markdown)
    return rows, chosen


def chosen_settings(chosen: Mapping[str, dict], name: str) -> tuple:
    """The settings a final run of row ``name`` takes: its chosen trial's, or none for an untuned row."""
    return tuple(tuple(pair) for pair in chosen[name]["settings"]) if name in chosen else ()


def trials_of(chosen: Mapping[str, dict], name: str) -> int:
    """``tuning_trials`` of row ``name``: how many trials its choice was made among (0: not tuned)."""
    return chosen.get(name, {}).get("trials", 0)


def tuning_stopped(trial_rows: Sequence, trial_runs: Sequence, partial) -> dict:
    """``--stage tune``'s end: say how far the tuning got and where its rows are."""
    print(f"\ntuning: {len(trial_rows)} of {len(trial_runs)} trials done; rows so far in {partial}")
    return {"tuning_runs": list(trial_rows)}
