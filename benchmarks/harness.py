"""The one harness every benchmark script uses: runs, rows, mean ± std, the result JSON, tables.

A benchmark is a list of :class:`Run` s. A run names a *recipe* (a shipped config such as
``datafree_practical``, or a YAML path), a method, a seed, a time budget and where its teacher and
data are: nothing else. The harness turns it into a config with the public API
(``finegrain.config.load_config`` on ``finegrain.commands._common.packaged_config(recipe)``), sets
only what says *which* run it is (method, seed, budget, teacher, data root, run folder, and at most
one of the papers' own ablation switches, :data:`ABLATIONS`), and trains it with
``finegrain.engine.loop.fit`` in a fresh spawned process (``jobs`` at a time, ``threads`` torch
threads each), its output in ``<workdir>/logs/<run>.log``.

Time: ``budget_minutes`` becomes ``train.budget_minutes``: the run times its own steps after its
warm-up and sizes its schedule, learning rate included, to end on time (``finegrain/engine/
budget.py``); its ``summary.json`` records ``scheduled_steps`` and ``steps``. 0 keeps the recipe's
fixed schedule (a teacher, the few-shot CSDNet comparison).

Each finished run becomes a row (:func:`make_row`: ``ROW_FIELDS`` plus health signals) read from
its ``summary.json``. Rows are saved as they come to ``<out>.partial.json`` (:class:`Results`); a
re-run with the same ``--out`` skips every run whose row is there (same recipe content, method,
seed, budget, ablation, data and teacher weights), so a benchmark spread over several sittings ends
in one JSON, written by its script, that records its command (``argv``: ``sys.argv``; ``command``:
the line that reruns it) and every sitting's. A sitting may be on another machine, which keeps
nothing but the repository: commit the partial file at the end of a sitting, and the next one,
anywhere, resumes from it (the teacher trains again to the same weights, :func:`train_teacher`).
Each row also holds the ``finegrain`` command that trains that run alone. Tables:
:func:`summarize` (mean ± std over seeds), :func:`text_table`, :func:`markdown_table`.

Run a benchmark from the repository root as a module: ``python -m benchmarks.data_free ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import shlex
import shutil
import statistics
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
#: where benchmark runs keep their run folders and logs by default (``runs/`` is not committed); a
#: persistent folder, so a teacher trained in one sitting serves the next
WORKDIR = ROOT / "runs" / "benchmarks"

#: the papers' own ablation switches, by the name a row gets: (config key, value). A run takes at
#: most one; no other setting of a recipe is changed by a benchmark.
ABLATIONS: dict[str, tuple[str, Any]] = {
    "no-sam": ("generator.attention_lambda", 0.0),   # DFKD-FGVC (Shao et al. 2023): the generator without SAM
    "no-mhad": ("dfkd.mhad", False),                 # DFKD-FGVC: without mixed high-order attention distillation
    "no-sfcl": ("dfkd.sfcl", False),                 # DFKD-FGVC: without semantic feature contrast learning
    "no-ssdp": ("csdnet.ssdp", False),               # CSDNet (Fang et al. 2024): without SSDP
    "no-ddl": ("csdnet.ddl", False),                 # CSDNet: without DDL
    "no-ssdt": ("csdnet.ssdt", False),               # CSDNet: without SSDT
}
#: every row has these fields (None where a run has no such figure)
ROW_FIELDS = ("method", "variant", "recipe", "seed", "budget_minutes", "seconds", "scheduled_steps", "steps",
              "teacher_arch", "student_arch", "teacher_test_top1", "val_top1", "test_top1")
#: health signals of a data-free run (its last epoch's history), under their row names
HEALTH_KEYS = {"health/classes_covered": "classes_covered", "health/teacher_confidence": "teacher_confidence",
               "health/bn_loss": "bn_loss"}


# --------------------------------------------------------------------------------------- recipes
def recipe_path(recipe: str) -> Path:
    """A shipped config's file (``datafree_practical``), or the YAML path given."""
    from finegrain.commands._common import packaged_config

    return Path(packaged_config(recipe))


def load_recipe(recipe: str, overrides: Sequence[str] = ()):
    """The recipe's config (``load_config``, strict: an override of a section the method does not
    read fails when the run binds its config)."""
    from finegrain.config import load_config

    return load_config(recipe_path(recipe), list(overrides))


def recipe_shipped(name: str) -> bool:
    """Whether ``name`` is a shipped config (``finegrain/configs/<name>.yaml``)."""
    from finegrain.errors import ConfigError

    try:
        return recipe_path(name).is_file()
    except ConfigError:
        return False


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def recipe_digest(recipe: str) -> str:
    """The recipe's settings, hashed (its comments and layout left out): a row is reused only for the
    same settings."""
    import yaml

    data = yaml.safe_load(recipe_path(recipe).read_text()) or {}
    return _digest(json.dumps(data, sort_keys=True, default=str).encode())


def teacher_digest(teacher: str | None) -> str | None:
    """The teacher's exported weights (``model.safetensors`` of a run folder, or the file given), hashed."""
    if not teacher:
        return None
    path = Path(teacher)
    if path.is_dir():
        path = path / "model.safetensors"
    return _digest(path.read_bytes()) if path.is_file() else None


def override_literals(path: str | Path) -> list[str]:
    """String literals of a Python file, docstrings aside, that read as config overrides
    (``section.key=value``): a benchmark script names recipes and holds none (its tests check this)."""
    import ast
    import re

    pattern = re.compile(r"\b[a-z_]+\.[a-z_]+=")
    tree = ast.parse(Path(path).read_text())
    docs = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            and pattern.search(node.value)]


# ------------------------------------------------------------------------------------------ runs
@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a benchmark."""

    name: str                        # the row's name (``variant``): dfkd-fgvc, dfkd-fgvc-no-mhad, ce, ...
    recipe: str                      # shipped config name or YAML path
    method: str                      # method.name (a baseline runs a recipe under its own method)
    seed: int = 0
    budget_minutes: float = 0.0      # train.budget_minutes (0: the recipe's fixed schedule)
    teacher: str | None = None       # distill.teacher: a run folder or checkpoint
    data: str | None = None          # data.root (real training data, or evaluation only for a data-free method)
    out_dir: str = "runs"            # the folder that holds the run folder (train.out_dir)
    ablation: str | None = None      # a key of ABLATIONS
    labels: tuple = ()               # ((field, value), ...) copied into the row, e.g. (("dataset", "oxford17"),)
    val_fraction: float | None = None  # data.val_fraction, for a root without a val/ split
    accelerator: str | None = None   # train.accelerator (None: the recipe's)
    settings: tuple = ()             # ((key, value), ...): a tuning trial's point of a benchmark's declared search space

    def __post_init__(self):
        if self.ablation is not None and self.ablation not in ABLATIONS:
            raise ValueError(f"run {self.name!r}: ablation {self.ablation!r} is not one of the papers' own "
                             f"switches ({', '.join(ABLATIONS)})")
        if self.budget_minutes < 0:
            raise ValueError(f"run {self.name!r}: budget_minutes must be >= 0, got {self.budget_minutes}")

    @property
    def run_id(self) -> str:
        """The run folder's name: labels, row name, budget (when set) and seed."""
        parts = [str(value) for _, value in self.labels] + [self.name]
        if self.budget_minutes:
            parts.append(f"b{self.budget_minutes:g}")
        parts.append(f"s{self.seed}")
        return "-".join(parts).replace("/", "_").replace(" ", "_")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.run_id

    def overrides(self) -> list[str]:
        """What makes this run this run: method, seed, budget, where things are, the ablation switch."""
        out = [f"method.name={self.method}", f"train.seed={self.seed}", f"train.budget_minutes={self.budget_minutes}",
               f"train.out_dir={Path(self.out_dir).resolve()}", f"train.run_name={self.run_id}"]
        if self.data:
            out.append(f"data.root={Path(self.data).resolve()}")
        if self.teacher:
            out.append(f"distill.teacher={Path(self.teacher).resolve()}")
        if self.val_fraction is not None:
            out.append(f"data.val_fraction={self.val_fraction}")
        if self.accelerator:
            out.append(f"train.accelerator={self.accelerator}")
        if self.ablation:
            key, value = ABLATIONS[self.ablation]
            out.append(f"{key}={json.dumps(value)}")
        return out + self.setting_words()

    def setting_words(self) -> list[str]:
        """The tuning settings as ``key=value`` words (JSON values), in the order given."""
        return [f"{key}={json.dumps(value)}" for key, value in self.settings]

    def config(self):
        """The run's config. A few-shot recipe (``data.few_shot_k``) draws its subset with the run's seed."""
        cfg = load_recipe(self.recipe, self.overrides())
        if cfg.data.few_shot_k:
            cfg.override("data.few_shot_seed", self.seed, "benchmark harness: the seed draws the few-shot subset")
        return cfg

    def command(self) -> str:
        """The same run as a ``finegrain`` command."""
        from finegrain import methods

        real = methods.get(self.method).cls.needs_train_data
        verb = "distill" if self.teacher else "train"
        words = ["finegrain", verb, "--config", self.recipe, "--method", self.method]
        if self.teacher:
            words += ["--teacher", str(self.teacher)]
        if self.data:
            words += ["--data" if real or verb == "train" else "--eval-data", str(self.data)]
        if self.budget_minutes:
            words += ["--budget", f"{self.budget_minutes:g}"]
        if self.accelerator:
            words += ["--device", self.accelerator]
        words.append(f"train.seed={self.seed}")
        if load_recipe(self.recipe).data.few_shot_k:
            words.append(f"data.few_shot_seed={self.seed}")
        if self.val_fraction is not None:
            words.append(f"data.val_fraction={self.val_fraction}")
        if self.ablation:
            key, value = ABLATIONS[self.ablation]
            words.append(f"{key}={json.dumps(value)}")
        return shlex.join(words + self.setting_words())

    def spec(self) -> dict:
        """What a finished row must match to be reused on a re-run (not where its folder was)."""
        return {"name": self.name, "recipe": self.recipe, "recipe_digest": recipe_digest(self.recipe),
                "method": self.method, "seed": self.seed, "budget_minutes": self.budget_minutes,
                "ablation": self.ablation, "labels": [list(pair) for pair in self.labels],
                "data": str(Path(self.data).resolve()) if self.data else None,
                "teacher_digest": teacher_digest(self.teacher), "val_fraction": self.val_fraction,
                "accelerator": self.accelerator, "settings": [list(pair) for pair in self.settings]}

    def check(self):
        """The run's config bound to its method, as ``fit`` binds it (nothing trained): a recipe that does
        not load, or an ablation switch the method does not read, fails here."""
        from finegrain import methods

        return methods.bind_config(self.config())

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "labels": [list(pair) for pair in self.labels],
                "settings": [list(pair) for pair in self.settings]}

    @classmethod
    def from_dict(cls, data: dict) -> "Run":
        return cls(**{**data, "labels": tuple(tuple(pair) for pair in data.get("labels", ())),
                      "settings": tuple(tuple(pair) for pair in data.get("settings", ()))})


# -------------------------------------------------------------------------------- one run, worker
def execute(task: dict) -> dict:
    """Train one run in this process (a fresh spawned one): its torch threads, its log, ``fit``."""
    import torch

    torch.set_num_threads(task["threads"])
    run = Run.from_dict(task["run"])
    log = Path(task["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        from finegrain.engine.loop import fit

        print(run.command(), flush=True)
        try:
            cfg = run.config()
            started = time.perf_counter()
            summary = fit(cfg)
        except BaseException:
            traceback.print_exc()  # into the log; the error itself goes back to the benchmark
            raise
        out = {"seconds": time.perf_counter() - started, "run_dir": summary["run_dir"]}
        if task.get("grid"):
            out.update(synthetic_grid(summary["run_dir"], task["grid"]))
    return out


def synthetic_grid(run_dir: str, path: str) -> dict:
    """16 synthetic images of a data-free run with the teacher's predictions, saved to ``path``."""
    try:
        from finegrain.viz.synthetic import synthetic_grid as grid

        picture, info = grid(run_dir, n=16, seed=0, tile_size=72)
    except Exception as err:  # noqa: BLE001 - a method without a synthesizer to sample (noise-kd)
        return {"grid_error": f"{type(err).__name__}: {err}"}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return {"grid": str(path), "grid_mean_confidence": info["mean_confidence"],
            "grid_classes_covered": info["classes_covered"]}


# ---------------------------------------------------------------------------------------- rows
def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run wrote no summary")
    return json.loads(path.read_text())


def health(history: list[dict]) -> dict:
    """The last epoch's health signals (``HEALTH_KEYS`` under their short names; the rest under ``health``)."""
    last = history[-1] if history else {}
    out = {short: last[key] for key, short in HEALTH_KEYS.items() if key in last}
    extra = {key: value for key, value in last.items() if key.startswith("health/") and key not in HEALTH_KEYS}
    if extra:
        out["health"] = extra
    return out


def teacher_reference(teacher: str, data: str | None = None) -> dict:
    """The teacher's architecture and top-1s: evaluated on ``data`` (val and test that exist) when it
    is given, else read from the teacher run's ``summary.json``."""
    from finegrain.datafree.teacher import teacher_meta

    path = Path(teacher).resolve()
    ref = {"run_dir": str(path), "architecture": teacher_meta(str(path)).get("architecture"),
           "val_top1": None, "test_top1": None}
    if data is not None:
        from finegrain.data.formats import has_split
        from finegrain.engine.evaluate import evaluate_checkpoint
        from finegrain.inference import classifier_from_checkpoint

        model, meta = classifier_from_checkpoint(str(path))
        for split in ("val", "test"):
            if has_split("imagefolder", data, split):
                ref[f"{split}_top1"] = evaluate_checkpoint(model, meta, data, split=split, num_workers=0)["top1"]
        ref["evaluated_on"] = str(Path(data).resolve())
    elif (path / "summary.json").is_file():
        summary = read_summary(path)
        ref.update(val_top1=summary.get("val_top1"), test_top1=summary.get("test_top1"))
    return ref


def make_row(run: Run, summary: dict, seconds: float, teacher: dict | None = None) -> dict:
    """A run's row: ``ROW_FIELDS``, its labels, health signals, and how to run it again."""
    history = summary.get("history") or []
    speeds = [h["train/images_per_s"] for h in history if h.get("train/images_per_s")]
    teacher = teacher or {}
    row = {
        **dict(run.labels), "method": run.method, "variant": run.name, "recipe": run.recipe, "ablation": run.ablation,
        "seed": run.seed, "budget_minutes": run.budget_minutes, "seconds": round(seconds, 1),
        "budget_ratio": round(seconds / (60.0 * run.budget_minutes), 3) if run.budget_minutes else None,
        "scheduled_steps": summary.get("scheduled_steps"), "steps": summary.get("steps"),
        "epochs": summary.get("epochs"), "stopped_early": summary.get("stopped_early"),
        "teacher_arch": teacher.get("architecture"), "student_arch": summary.get("architecture"),
        "teacher_test_top1": teacher.get("test_top1"),
        "val_top1": summary.get("val_top1"), "best_val_top1": summary.get("best_val_top1"),
        "test_top1": summary.get("test_top1"),
        "ratio_to_teacher": (summary["test_top1"] / teacher["test_top1"]
                             if summary.get("test_top1") is not None and teacher.get("test_top1") else None),
        "train_images_per_s": statistics.median(speeds) if speeds else None,
        **health(history),
        "command": run.command(),
    }
    return row


# ---------------------------------------------------------------------------------- statistics
def mean_std(values: Iterable) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values that exist (None skipped); the std is None
    for fewer than two values, both are None for none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


#: figures summarize() averages over a group's seeds (beside test and val, which also get a std)
MEAN_FIELDS = ("seconds", "scheduled_steps", "steps", "train_images_per_s", "ratio_to_teacher",
               "classes_covered", "teacher_confidence", "bn_loss")


def summarize(rows: Sequence[dict], by: Sequence[str] = ("variant",)) -> list[dict]:
    """One record per group of rows (``by`` fields, in first-seen order): mean ± std of test and val
    top-1 over its seeds, and the means of ``MEAN_FIELDS``."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in by), []).append(row)
    out = []
    for key, mine in groups.items():
        first = mine[0]
        record = dict(zip(by, key))
        for field in ("method", "recipe", "ablation", "budget_minutes", "teacher_arch", "student_arch",
                      "teacher_test_top1"):
            record.setdefault(field, first.get(field))
        record["seeds"] = sorted(r["seed"] for r in mine)
        record["runs"] = len(mine)
        record["test_top1_mean"], record["test_top1_std"] = mean_std(r.get("test_top1") for r in mine)
        record["val_top1_mean"], record["val_top1_std"] = mean_std(r.get("val_top1") for r in mine)
        for field in MEAN_FIELDS:
            record[f"{field}_mean"] = mean_std(r.get(field) for r in mine)[0]
        out.append(record)
    return out


def best_by_val(result: dict, top: int, leave_out: Sequence[str] = ()) -> list[str]:
    """The ``top`` rows of a finished comparison (its ``summary`` and ``rows``) with the highest mean
    val top-1, rows of an ablation switch and ``leave_out`` left out: chosen on val, never on test."""
    rows = result.get("rows") or {}
    ranked = sorted((r for r in result.get("summary") or [] if r["variant"] not in leave_out
                     and not (rows.get(r["variant"]) or {}).get("ablation") and r.get("val_top1_mean") is not None),
                    key=lambda r: -r["val_top1_mean"])
    return [r["variant"] for r in ranked[:top]]


def paired(rows: Sequence[dict], a: str, b: str, key: str = "test_top1", field: str = "variant") -> dict | None:
    """``a`` against ``b`` seed by seed (the seeds both have): the mean difference a − b and how
    many seeds each won; None when they share no seed."""
    values = {name: {r["seed"]: r.get(key) for r in rows if r.get(field) == name and r.get(key) is not None}
              for name in (a, b)}
    seeds = sorted(set(values[a]) & set(values[b]))
    if not seeds:
        return None
    differences = [values[a][s] - values[b][s] for s in seeds]
    return {"a": a, "b": b, "key": key, "seeds": seeds, "mean_difference": statistics.fmean(differences),
            "wins": sum(d > 0 for d in differences), "losses": sum(d < 0 for d in differences)}


# -------------------------------------------------------------------------------------- tables
def fmt(value, spec: str = ".2f", empty: str = "-") -> str:
    if value is None:
        return empty
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def pm(mean, std, spec: str = ".2f") -> str:
    """``mean ± std`` (the mean alone without a std; ``-`` without a mean)."""
    if mean is None:
        return "-"
    return format(mean, spec) + (f" ± {format(std, spec)}" if std is not None else "")


#: (header, function of a summarize() record) columns of the standard summary table
SUMMARY_COLUMNS: list[tuple[str, Callable[[dict], str]]] = [
    ("variant", lambda r: fmt(r.get("variant"))),
    ("method", lambda r: fmt(r.get("method"))),
    ("recipe", lambda r: fmt(r.get("recipe"))),
    ("seeds", lambda r: fmt(r.get("runs"), "d")),
    ("test top-1", lambda r: pm(r["test_top1_mean"], r["test_top1_std"])),
    ("val top-1", lambda r: pm(r["val_top1_mean"], r["val_top1_std"])),
    ("/teacher", lambda r: fmt(r.get("ratio_to_teacher_mean"), ".3f")),
    ("steps", lambda r: fmt(r.get("steps_mean"), ".0f")),
    ("scheduled", lambda r: fmt(r.get("scheduled_steps_mean"), ".0f")),
    ("seconds", lambda r: fmt(r.get("seconds_mean"), ".0f")),
    ("classes", lambda r: fmt(r.get("classes_covered_mean"), ".1f")),
    ("t-conf", lambda r: fmt(r.get("teacher_confidence_mean"), ".2f")),
    ("L_BN", lambda r: fmt(r.get("bn_loss_mean"), ".3g")),
]


def _cells(columns, records) -> list[list[str]]:
    return [[render(record) for _, render in columns] for record in records]


def _is_number(cell: str) -> bool:
    try:
        float(cell.split(" ± ")[0])
    except ValueError:
        return cell in ("-", "", "*")
    return True


def text_table(columns, records) -> str:
    """A plain-text table: each column as wide as its widest cell; columns of numbers right-aligned,
    the others left-aligned."""
    headers = [header for header, _ in columns]
    cells = _cells(columns, records)
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    left = [not all(_is_number(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda values: "  ".join(v.ljust(w) if lt else v.rjust(w)  # noqa: E731
                                    for v, w, lt in zip(values, widths, left))
    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in cells)])


def markdown_table(columns, records) -> str:
    """The same table in Markdown (GitHub pipes; ``|`` inside a cell escaped)."""
    headers = [header for header, _ in columns]
    cells = _cells(columns, records)
    rows = [[cell.replace("|", "\\|") for cell in row] for row in cells]
    align = ["---:" if all(_is_number(row[i]) for row in cells) else "---" for i in range(len(headers))]
    return "\n".join("| " + " | ".join(row) + " |" for row in [headers, align, *rows])


# ------------------------------------------------------------------------------------- results
def partial_path(out: str | Path) -> Path:
    """``benchmarks/x.result.json`` -> ``benchmarks/x.result.partial.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.partial{out.suffix or '.json'}")


def write_json(path: str | Path, data: dict) -> None:
    """Write to a temporary name, then rename: a crash mid-write never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def command_line(argv: Sequence[str]) -> str:
    """``sys.argv`` as the line that reruns it: ``python -m benchmarks.NAME ARGS`` for a benchmark
    module (whose ``argv[0]`` is its file's path), else the words as given."""
    script = Path(argv[0]) if argv else Path()
    words = list(argv[1:])
    if script.suffix == ".py" and script.parent.name == "benchmarks":
        return shlex.join(["python", "-m", f"benchmarks.{script.stem}", *words])
    return shlex.join(list(argv))


def relative_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class Results:
    """The rows of a benchmark, resumable: every finished run is saved to ``<out>.partial.json`` at
    once. On a re-run with the same ``out``, the rows of the partial file (or, once a benchmark has
    finished, of ``out`` itself) whose run spec matches are reused, not run again; ``fresh`` ignores
    them. ``sources``: other benchmarks' result files whose rows of the same spec are reused too (the
    row says ``reused_from``). :meth:`finish` writes ``out`` and removes the partial file."""

    def __init__(self, out: str | Path, benchmark: str, *, fresh: bool = False, argv: Sequence[str] | None = None,
                 sources: Sequence[str | Path] = ()):
        self.out, self.partial, self.benchmark = Path(out), partial_path(out), benchmark
        self.rows: list[dict] = []
        self.failures: list[dict] = []
        self.sittings: list[dict] = []
        self.reused = 0
        source = None if fresh else next((p for p in (self.partial, self.out) if p.is_file()), None)
        if source is not None:
            data = json.loads(source.read_text())
            if data.get("benchmark") == benchmark:  # the runs, and a teacher trained by the benchmark
                found = list(data.get("runs", [])) + list(data.get("tuning_runs", [])) + [data.get("teacher")]
                self.rows = [row for row in found if isinstance(row, dict) and "spec" in row]
                self.sittings = list(data.get("sittings", []))
        for other in sources:  # another benchmark's finished runs of the very same spec (its file named in each row)
            other = Path(other)
            if other.is_file() and not fresh:
                data = json.loads(other.read_text())
                known = [row["spec"] for row in self.rows]
                self.rows += [{**row, "reused_from": relative_path(other)}
                              for row in list(data.get("runs", [])) + list(data.get("tuning_runs", []))
                              if isinstance(row, dict) and "spec" in row and row["spec"] not in known]
        self.argv = list(sys.argv if argv is None else argv)
        self.command = command_line(self.argv)
        self.sittings.append({"command": self.command, "argv": self.argv, "started": _now()})

    def discard(self, spec: dict) -> None:
        """Forget a finished row, so that its run trains again (a teacher whose run folder is gone)."""
        self.rows = [r for r in self.rows if r["spec"] != spec]

    def find(self, spec: dict) -> dict | None:
        return next((row for row in self.rows if row["spec"] == spec), None)

    def add(self, row: dict) -> None:
        self.rows = [r for r in self.rows if r["spec"] != row["spec"]] + [row]
        self.save()

    def fail(self, run: Run, error: str) -> None:
        self.failures.append({"variant": run.name, "seed": run.seed, "labels": dict(run.labels), "error": error})
        self.save()

    def save(self) -> None:
        write_json(self.partial, {"benchmark": self.benchmark, "partial": True, "sittings": self.sittings,
                                  "runs": self.rows, "failures": self.failures})

    def finish(self, result: dict) -> dict:
        """Write ``out``: ``result`` with the benchmark's name, this sitting's command (``command``, as
        one line; ``argv``: ``sys.argv`` exactly), every sitting's, and the failures; the partial file
        is then removed."""
        result = {"benchmark": self.benchmark, "command": self.command, "argv": self.argv, "sittings": self.sittings,
                  "finished": _now(), **result, "failures": self.failures}
        write_json(self.out, result)
        self.partial.unlink(missing_ok=True)
        return result


# -------------------------------------------------------------------------------------- launch
def default_threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def launch(runs: Sequence[Run], results: Results, *, jobs: int = 1, threads: int | None = None,
           workdir: str | Path | None = None, teachers: dict | None = None, grids: dict | None = None,
           runner: Callable[[dict], dict] | None = None) -> list[dict]:
    """Train every run that has no row in ``results`` yet; return the rows of ``runs`` in their order
    (a failed run has none: it is in ``results.failures``, with its log's tail).

    Each run goes to a fresh spawned process, ``jobs`` at a time, ``threads`` torch threads each
    (default: the cores shared out). ``teachers``: ``{teacher path: teacher_reference(...)}`` for the
    rows' teacher figures (computed from the teacher run where missing). ``grids``: ``{run_id: png
    path}`` for synthetic-image grids. ``runner`` (tests): run a task in this process instead."""
    threads = threads or default_threads(jobs)
    logs = Path(workdir or WORKDIR) / "logs"
    teachers = teachers if teachers is not None else {}
    specs = {run: run.spec() for run in runs}
    todo = [run for run in runs if results.find(specs[run]) is None]
    for run in runs:
        if run not in todo:
            results.reused += 1
            print(f"reusing {run.run_id} (done in an earlier sitting)", flush=True)
    for run in todo:
        if run.teacher and str(run.teacher) not in teachers:
            teachers[str(run.teacher)] = teacher_reference(run.teacher)

    def task(run: Run) -> dict:
        if run.run_dir.exists():  # a run stopped in an earlier sitting starts afresh
            shutil.rmtree(run.run_dir)
        return {"run": run.to_dict(), "threads": threads, "log": str(logs / f"{run.run_id}.log"),
                "grid": (grids or {}).get(run.run_id)}

    def finished(run: Run, result: dict | None, error: str | None) -> None:
        if error is None:
            try:
                row = make_row(run, read_summary(result["run_dir"]), result["seconds"], teachers.get(str(run.teacher)))
            except Exception as err:  # noqa: BLE001
                error = "".join(traceback.format_exception_only(type(err), err)).strip()
            else:
                row.update({k: v for k, v in result.items() if k.startswith("grid")})
                row["spec"] = specs[run]
                results.add(row)
                print(json.dumps({k: v for k, v in row.items() if k != "spec"}, default=str), flush=True)
                return
        log = logs / f"{run.run_id}.log"
        tail = log.read_text()[-3000:] if log.is_file() else ""
        results.fail(run, f"{error}\n--- log tail ({log}) ---\n{tail}")
        print(f"FAILED {run.run_id}: {error.splitlines()[0] if error else ''} (log: {log})", flush=True)

    if runner is not None:
        for run in todo:
            try:
                result, error = runner(task(run)), None
            except Exception as err:  # noqa: BLE001 - one failed run must not lose the others
                result, error = None, "".join(traceback.format_exception_only(type(err), err)).strip()
            finished(run, result, error)
    elif todo:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            queue, running = list(todo), {}
            try:
                while queue or running:
                    while queue and len(running) < jobs:
                        run = queue.pop(0)
                        running[pool.submit(execute, task(run))] = run
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        run = running.pop(future)
                        try:
                            result, error = future.result(), None
                        except Exception as err:  # noqa: BLE001
                            result, error = None, "".join(traceback.format_exception_only(type(err), err)).strip()
                        finished(run, result, error)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [row for row in (results.find(specs[run]) for run in runs) if row is not None]


def run_one(run: Run, results: Results, **kwargs) -> dict:
    """:func:`launch` of a single run whose row the benchmark cannot go on without (a teacher)."""
    rows = launch([run], results, **kwargs)
    if not rows:
        raise SystemExit(f"{run.run_id} failed:\n{results.failures[-1]['error'] if results.failures else ''}")
    return rows[0]


def train_teacher(run: Run, results: Results, **kwargs) -> dict:
    """Train the benchmark's teacher (or reuse it from an earlier sitting while its run folder is
    there): its row, plus ``run_dir``, ``architecture`` and the weights' ``digest`` for the rows
    that distil it.

    A sitting on a machine that kept no run folder trains the teacher again. The shipped CPU
    recipes train deterministically, so the same recipe and seed give the same weights and the
    rows of the earlier sittings (the committed ``<out>.partial.json``) are reused; rows that
    distilled other weights cannot be, and one line says how many will run again."""
    if not (run.run_dir / "model.safetensors").is_file():
        results.discard(run.spec())
    row = run_one(run, results, **kwargs)
    digest = teacher_digest(str(run.run_dir))
    stale = stale_rows(results, digest)
    if stale:
        print(f"note: {stale} finished rows distilled a teacher whose weights differ from {run.run_dir} "
              f"(digest {digest}): they run again", flush=True)
    return {**row, "run_dir": str(run.run_dir.resolve()), "architecture": row["student_arch"], "digest": digest}


def stale_rows(results: Results, digest: str | None) -> int:
    """How many of ``results``' rows distilled a teacher of other weights than ``digest``."""
    return sum(1 for row in results.rows if row["spec"].get("teacher_digest") not in (None, digest))


# --------------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser, *, out: str, budget: float, seeds: Sequence[int] = (0, 1, 2),
                  jobs: int = 1, workdir: str | None = None) -> None:
    """The options every benchmark shares: --budget --seeds --jobs --threads --workdir --out --fresh
    --markdown."""
    group = parser.add_argument_group("harness")
    group.add_argument("--budget", type=float, default=budget, metavar="MINUTES",
                       help=f"time budget of each run, train.budget_minutes (default {budget:g}; 0 = the recipe's "
                            "fixed schedule)")
    group.add_argument("--seeds", type=int, nargs="+", default=list(seeds), help="seeds of every row")
    group.add_argument("--jobs", type=int, default=jobs, help="runs at once, each in its own spawned process")
    group.add_argument("--threads", type=int, default=None,
                       help="torch threads per run (default: the machine's cores shared out over --jobs)")
    group.add_argument("--workdir", default=workdir, help=f"run folders and logs (default {WORKDIR.relative_to(ROOT)}/"
                                                          "<benchmark>; kept, so a later sitting can resume)")
    group.add_argument("--out", default=out, help="the result JSON (its .partial.json holds the rows done so far)")
    group.add_argument("--fresh", action="store_true", help="run everything again instead of reusing finished rows")
    group.add_argument("--markdown", action="store_true", help="print the tables in Markdown")


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be >= 1")
    if args.budget < 0:
        parser.error("--budget must be >= 0")
    if not args.seeds:
        parser.error("--seeds: at least one")


def workdir_of(args, benchmark: str) -> Path:
    """Where the run folders go: ``--workdir``, else ``runs/benchmarks/`` and the result file's name
    (``<benchmark>`` for the default file). A table written to a file of its own, such as the same
    benchmark on another dataset, so gets folders of its own and never trains its teacher into the
    folder of another table's teacher."""
    if args.workdir:
        return Path(args.workdir).resolve()
    name = Path(args.out).name if args.out else f"{benchmark}.result.json"
    return WORKDIR / name.removesuffix(".json").removesuffix(".result")


def print_table(records: Sequence[dict], columns=None, *, markdown: bool = False, title: str | None = None) -> None:
    columns = columns or SUMMARY_COLUMNS
    if title:
        print(f"\n{title}")
    print(markdown_table(columns, records) if markdown else text_table(columns, records))
