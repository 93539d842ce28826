"""benchmarks/RESULTS.md and the results tables of the README and the docs, from the committed JSON.

    python -m benchmarks.results_md            # rewrite benchmarks/RESULTS.md and every marker block
    python -m benchmarks.results_md --check    # change nothing; exit 1 naming each file that would change

Every benchmark writes ``benchmarks/NAME.result.json``. This script reads all of them and

* writes ``benchmarks/RESULTS.md``: one section per JSON, with the command that produced it and its
  tables;
* rewrites, in ``README.md`` and ``docs/*.md`` (not ``docs/history/``), the text between a pair of
  marker comments with the table that block renders from the JSON now::

      <!-- results:readme -->
      ... generated, do not edit by hand ...
      <!-- /results:readme -->

A figure inside a block is therefore the JSON's. ``tests/test_results_docs.py`` calls :func:`check`,
so a hand-edited figure, or a JSON committed without running this script, fails the tests.

Blocks (``BLOCKS``): ``readme`` (the README's results table: every recipe row of
``recipes.result.json`` and the Oxford-17 CSDNet/CE comparison of ``csdnet_vs_ce.result.json``),
``datafree`` (the distillation rows of ``recipes.result.json``, for docs/datafree.md), ``csdnet``
(every dataset of ``csdnet_vs_ce.result.json``, for docs/csdnet.md), ``datafree-comparison`` (the
README's rows of ``data_free.result.json``), ``datafree-benchmark`` (all of it, for docs/datafree.md)
``datafree-compression`` (``data_free_lite2_lite0.result.json``, for docs/datafree.md) and
``datafree-lite0-10min`` (``data_free_lite0_10min.result.json``, for docs/datafree.md). A block
whose JSON is not committed renders a one-line placeholder that says which command writes it.

JSON shapes read:

* ``recipes.result.json``: ``{"rows": [{"name", "recipe", "command", "test_top1", "val_top1",
  "seconds", "teacher_test_top1", ...}], ...}``; optional per row: ``test_top1_std``, ``seeds``,
  ``scheduled_steps``, ``steps``, ``budget_minutes``, ``kind``. A row with a ``teacher_test_top1`` is
  a distillation.
* ``csdnet_vs_ce.result.json``: ``{"tables": {dataset: {variant: {test_top1_mean, test_top1_std,
  val_top1_mean, val_top1_std, runs, train_images_per_s, throughput_vs_ce}}}, "datasets": {dataset:
  {"root"}}, "torch_threads", "config", "k", "image_size", "epochs", "seeds", "how_run"}``.
* anything else: a table of its ``rows`` or ``runs`` (the usual figure columns) or of its scalars.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from benchmarks import harness

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = Path("benchmarks") / "RESULTS.md"
NONE = "–"

#: the compression benchmark's JSON (a Lite2 teacher into a Lite0 student)
COMPRESSION = "data_free_lite2_lite0"
#: the same-architecture pair (Lite0 into Lite0) at the compression benchmark's 10 minutes
SAME_ARCH_10MIN = "data_free_lite0_10min"
#: block name -> the result JSONs (``benchmarks/NAME.result.json``) it is rendered from
BLOCKS = {
    "readme": ("recipes", "csdnet_vs_ce"),
    "datafree": ("recipes",),
    "csdnet": ("csdnet_vs_ce",),
    "datafree-comparison": ("data_free",),
    "datafree-benchmark": ("data_free",),
    "datafree-compression": (COMPRESSION,),
    "datafree-lite0-10min": (SAME_ARCH_10MIN,),
}
#: the command that writes each known JSON, for placeholders and sections without a command
WRITERS = {
    "recipes": "python -m benchmarks.recipes",
    "csdnet_vs_ce": "python -m benchmarks.csdnet_vs_ce --data ../shared/data/oxford17",
    "data_free": "python -m benchmarks.data_free",
    COMPRESSION: "python -m benchmarks.data_free --pair lite2-lite0 --budget 10 --rows dfkd-fgvc-practical fast-dfkd "
                 "spaceshipnet kd --tuned-from benchmarks/data_free.result.json",
    SAME_ARCH_10MIN: "python -m benchmarks.data_free --budget 10 --rows dfkd-fgvc-practical fast-dfkd spaceshipnet kd "
                     "--tuned-from benchmarks/data_free.result.json --out benchmarks/data_free_lite0_10min.result.json",
}
MARKER = re.compile(r"<!-- results:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /results:(?P=name) -->", re.S)
OPEN = re.compile(r"<!-- (/?)results:([\w-]+) -->")

CSDNET_VARIANTS = {
    "ce": "cross-entropy",
    "csdnet": "**CSDNet**",
    "csdnet-no-ssdp": "CSDNet − SSDP (random second view)",
    "csdnet-no-ddl": "CSDNet − DDL",
    "csdnet-no-ssdt": "CSDNet − SSDT",
}
DATASET_NAMES = {"oxford17": "Oxford-17", "cars196": "Stanford Cars (cars196)", "mnist": "MNIST"}


# ---------------------------------------------------------------------------------------- helpers
def load_results(root: Path = ROOT) -> dict[str, dict]:
    """Every ``benchmarks/*.result.json`` under ``root``, by name (file name less ``.result.json``)."""
    out = {}
    for path in sorted((root / "benchmarks").glob("*.result.json")):
        out[path.name[: -len(".result.json")]] = json.loads(path.read_text())
    return out


def num(x, digits: int = 2) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return NONE if x is None else str(x)
    return f"{x:.{digits}f}"


def mean_std(mean, std, digits: int = 2) -> str:
    if mean is None:
        return NONE
    return num(mean, digits) if std is None else f"{num(mean, digits)} ± {num(std, digits)}"


def seconds(s) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool):
        return NONE
    return f"{s / 60:.1f} min" if s >= 100 else f"{s:.0f} s"


def code(text) -> str:
    """Inline code for a table cell (a ``|`` would end the cell)."""
    if not text:
        return NONE
    return "`" + str(text).replace("|", "\\|") + "`"


def cell(text) -> str:
    return NONE if text in (None, "") else str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def placeholder(name: str) -> str:
    return f"*`benchmarks/{name}.result.json` is not committed yet: `{WRITERS.get(name, 'its benchmark')}` writes it.*"


# ---------------------------------------------------------------------------------------- recipes
def recipe_rows(data: dict) -> list[dict]:
    rows = data.get("rows") or []
    return [r for r in rows if isinstance(r, dict)]


def row_test(r: dict) -> str:
    text = mean_std(r.get("test_top1"), r.get("test_top1_std"))
    seeds = r.get("seeds")
    n = len(seeds) if isinstance(seeds, list) else seeds
    return f"{text} ({n} seeds)" if isinstance(n, int) and n > 1 else text


def is_distill(r: dict) -> bool:
    return r.get("teacher_test_top1") is not None or r.get("kind") == "distill"


def steps(r: dict) -> str:
    done, planned = r.get("steps"), r.get("scheduled_steps")
    if done is None and planned is None:
        return NONE
    if planned is None or planned == done:
        return str(done if done is not None else planned)
    return f"{done} of {planned}"


def recipes_table(data: dict) -> str:
    rows = [[cell(r.get("name")), code(r.get("recipe")), row_test(r), num(r.get("val_top1")),
             num(r.get("teacher_test_top1")), seconds(r.get("seconds")), steps(r), code(r.get("command"))]
            for r in recipe_rows(data)]
    return table(["run", "recipe", "test top-1 %", "val top-1 %", "teacher test top-1 %", "time", "steps",
                  "command"], rows)


def datafree_block(results: dict) -> str:
    data = results.get("recipes")
    if data is None:
        return placeholder("recipes")
    rows = []
    for r in recipe_rows(data):
        if not is_distill(r):
            continue
        t, tt = r.get("test_top1"), r.get("teacher_test_top1")
        ratio = f"{t / tt:.2f}" if isinstance(t, (int, float)) and isinstance(tt, (int, float)) and tt else NONE
        rows.append([cell(r.get("name")), code(r.get("recipe")), row_test(r), num(r.get("val_top1")), num(tt),
                     ratio, seconds(r.get("seconds")), code(r.get("command"))])
    if not rows:
        return "*`benchmarks/recipes.result.json` holds no distillation row.*"
    return table(["run", "recipe", "test top-1 %", "val top-1 %", "teacher test top-1 %", "/ teacher", "time",
                  "command"], rows)


# ---------------------------------------------------------------------------------------- data-free
def is_comparison(data: dict) -> bool:
    """A method comparison over seeds (``data_free.py``, ``data_free_mnist.py``): a ``summary`` list."""
    return isinstance(data.get("summary"), list)


def chosen_text(data: dict, variant: str) -> str:
    """What equal tuning chose for a row: its trial and settings, or why it has none."""
    tuning_ = data.get("tuning") or {}
    chosen = (tuning_.get("chosen") or {}).get(variant)
    if not chosen:
        return "not tuned (the paper's settings or the reference)"
    settings = " ".join(f"{key}={value}" for key, value in chosen.get("settings") or []) or "as shipped"
    source = f", from {chosen['from']}" if chosen.get("from") else ""
    return f"trial {chosen.get('trial')} of {chosen.get('trials')}{source}: {code(settings)}"


def comparison_rows(data: dict, names: list[str] | None = None) -> list[dict]:
    rows = [r for r in data.get("summary") or [] if isinstance(r, dict)]
    return rows if names is None else [r for r in rows if r.get("variant") in names]


def comparison_table(data: dict, names: list[str] | None = None) -> str:
    rows = [[cell(r.get("variant")), cell(r.get("method")), code(r.get("recipe")), cell(r.get("runs")),
             mean_std(r.get("test_top1_mean"), r.get("test_top1_std")),
             mean_std(r.get("val_top1_mean"), r.get("val_top1_std")), num(r.get("ratio_to_teacher_mean")),
             num(r.get("steps_mean"), 0), seconds(r.get("seconds_mean")), chosen_text(data, r.get("variant"))]
            for r in comparison_rows(data, names)]
    return table(["row", "method", "recipe", "seeds", "test top-1 %", "val top-1 %", "/ teacher", "iterations",
                  "time", "settings (equal tuning on val)"], rows)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven between two equal methods."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def comparisons(data: dict) -> list[dict]:
    """The JSON's seed-paired comparisons, each pair once (a − b, not also b − a)."""
    seen, out = set(), []
    for c in data.get("paired") or []:
        if isinstance(c, dict) and c.get("mean_difference") is not None and frozenset((c["a"], c["b"])) not in seen:
            seen.add(frozenset((c["a"], c["b"])))
            out.append(c)
    return out


def paired_table(data: dict) -> str:
    rows = [[f"{cell(c.get('a'))} − {cell(c.get('b'))}", " ".join(str(s) for s in c.get("seeds") or []),
             f"{c['mean_difference']:+.2f}", f"{c.get('wins')} / {c.get('losses')}",
             num(sign_test(c.get("wins", 0), c.get("losses", 0)))]
            for c in comparisons(data)]
    if not rows:
        return ""
    return table(["test top-1, seed by seed", "seeds", "mean difference (points)", "seeds won / lost",
                  "sign test p (two-sided)"], rows)


def comparison_setting(data: dict) -> str:
    teacher = data.get("teacher") or {}
    tuning_ = data.get("tuning") or {}
    seeds = " ".join(str(s) for s in data.get("seeds") or [])
    where = str(data.get("data", NONE))
    where = Path(where).name if Path(where).is_absolute() else where
    text = (f"Data `{where}`; teacher {cell(teacher.get('architecture'))} "
            f"(test {num(teacher.get('test_top1'))}, val {num(teacher.get('val_top1'))}); every final run "
            f"{num(data.get('budget_minutes'), 0)} minutes on {cell(data.get('device'))}, "
            f"{cell(data.get('jobs'))} at a time with {cell(data.get('threads'))} threads; seeds {seeds}")
    if tuning_.get("tuned_from"):
        text += f"; settings chosen by `{tuning_['tuned_from']}`'s tuning, none here"
    elif tuning_.get("trials"):
        text += (f"; every tuned row: {tuning_['trials']} trials on val, seed {tuning_.get('seed')}, "
                 f"{num(tuning_.get('budget_minutes'), 0)} minutes each, {tuning_.get('jobs')} at a time with "
                 f"{tuning_.get('threads')} thread(s)")
    if data.get("complete") is False:
        text += ". **Incomplete**: some runs failed or were not run"
    return text + "."


def comparison_section(data: dict) -> str:
    parts = [comparison_setting(data) + " Mean ± std over seeds.", comparison_table(data)]
    paired = paired_table(data)
    if paired:
        parts.append(paired)
    if data.get("published"):
        parts.append("Published: " + cell(data.get("published_source")) + " — "
                     + ", ".join(f"{cell(k)} {num(v)}" for k, v in data["published"].items()))
    return "\n\n".join(parts)


def minutes(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else NONE


def curves_section(data: dict) -> str:
    rows = [[cell(r.get("variant")), minutes(r.get("budget_minutes")), cell(r.get("runs")),
             mean_std(r.get("test_top1_mean"), r.get("test_top1_std")),
             mean_std(r.get("val_top1_mean"), r.get("val_top1_std")), num(r.get("steps_mean"), 0),
             seconds(r.get("seconds_mean"))]
            for r in data.get("curves") or [] if isinstance(r, dict)]
    plot = Path(str(data.get("plot"))).name if data.get("plot") else None
    teacher = data.get("teacher") or {}
    head = (f"Device: {cell(data.get('device'))}; source `{cell(data.get('source'))}`; data "
            f"`{Path(str(data.get('data'))).name}`; teacher {cell(teacher.get('architecture'))}, test top-1 "
            f"{num(teacher.get('test_top1'))} % (weights {cell(teacher.get('digest'))}).")
    if plot:
        head += f" Plot: [{plot}]({plot})."
    return head + "\n\n" + table(["row", "minutes", "seeds", "test top-1 %", "val top-1 %", "iterations", "time"],
                                    rows)


#: the data-free comparison's rows the README shows: the paper's method, then the best data-free rows by val
README_DATAFREE = {"source": "data_free", "paper": "dfkd-fgvc", "reference": "kd", "top": 3}


def readme_datafree_rows(data: dict) -> list[str]:
    """The paper's dfkd-fgvc, the ``top`` best other data-free rows by mean val top-1 (ablations left
    out), then kd on real images: chosen by val, never by test."""
    spec = README_DATAFREE
    best = harness.best_by_val(data, spec["top"], leave_out=(spec["paper"], spec["reference"]))
    return [spec["paper"], *best, spec["reference"]]


def comparison_block(results: dict) -> str:
    """The README's data-free comparison: a few rows of ``data_free.result.json``."""
    data = results.get(README_DATAFREE["source"])
    if data is None:
        return placeholder(README_DATAFREE["source"])
    names = readme_datafree_rows(data)
    order = {name: i for i, name in enumerate(names)}
    picked = sorted(comparison_rows(data, names), key=lambda r: order[r["variant"]])
    rows = [[cell(r.get("variant")), mean_std(r.get("test_top1_mean"), r.get("test_top1_std")),
             num(r.get("ratio_to_teacher_mean")), cell(r.get("runs")), seconds(r.get("seconds_mean"))]
            for r in picked]
    minutes = num(data.get("budget_minutes"), 0)
    head = (f"Every row: {minutes} minutes per run on {cell(data.get('device'))}, the same tuning on val for every "
            f"tuned method, test top-1 as mean ± std over seeds; the paper's `{README_DATAFREE['paper']}`, the "
            f"{README_DATAFREE['top']} best other data-free rows by val, and `{README_DATAFREE['reference']}` on the "
            f"real training images. Every row, settings and seed-paired differences: "
            f"[docs/datafree.md](docs/datafree.md#the-benchmark).")
    if data.get("complete") is False:
        head += " **Incomplete**: some runs failed or were not run."
    return head + "\n\n" + table(["row", "test top-1 %", "/ teacher", "seeds", "time per run"], rows)


def whole_comparison(name: str):
    """A block renderer: every row of the comparison ``benchmarks/<name>.result.json``."""
    def render(results: dict) -> str:
        data = results.get(name)
        return placeholder(name) if data is None else comparison_section(data)
    return render


# ---------------------------------------------------------------------------------------- csdnet
def csdnet_config(data: dict) -> str:
    return Path(str(data.get("config") or "oxford17_csdnet_cpu")).stem


def csdnet_command(data: dict, dataset: str, variants: list[str] | None = None) -> str:
    root = ((data.get("datasets") or {}).get(dataset) or {}).get("root") or f"../shared/data/{dataset}"
    if Path(root).is_absolute():  # the harness records the resolved root; docs show the checkout-relative one
        root = f"../shared/data/{Path(root).name}"
    threads = data.get("torch_threads")
    threads = threads.get(dataset) if isinstance(threads, dict) else threads
    cmd = f"python -m benchmarks.csdnet_vs_ce --data {root}"
    if variants:
        cmd += " --variants " + " ".join(variants)
    if isinstance(threads, int) and threads != 1:
        cmd += f" --threads {threads}"
    return cmd


def run_seconds(data: dict, dataset: str, variant: str):
    """Mean seconds of one run of a variant (None when the runs do not say)."""
    secs = [r["seconds"] for r in data.get("runs") or [] if isinstance(r, dict) and r.get("dataset") == dataset
            and r.get("variant") == variant and isinstance(r.get("seconds"), (int, float))]
    return sum(secs) / len(secs) if secs else None


def csdnet_setting(data: dict) -> str:
    seeds = data.get("seeds")
    seeds = " ".join(str(s) for s in seeds) if isinstance(seeds, list) else seeds
    return (f"K = {data.get('k', NONE)} training images per class, {data.get('image_size', NONE)} px, "
            f"{data.get('epochs', NONE)} epochs, seeds {seeds}, recipe `{csdnet_config(data)}` "
            f"(cross-entropy: the same with `method.name=supervised`)")


def csdnet_tables(data: dict) -> str:
    parts = []
    for dataset, variants in (data.get("tables") or {}).items():
        rows = []
        for variant, s in variants.items():
            n = s.get("runs")
            rows.append([CSDNET_VARIANTS.get(variant, cell(variant)),
                         mean_std(s.get("test_top1_mean"), s.get("test_top1_std")),
                         mean_std(s.get("val_top1_mean"), s.get("val_top1_std")),
                         str(n) if n is not None else NONE, num(s.get("train_images_per_s"), 1),
                         num(s.get("throughput_vs_ce"))])
        parts.append(f"**{DATASET_NAMES.get(dataset, dataset)}**: `{csdnet_command(data, dataset)}`\n\n"
                     + table(["variant", "test top-1 %", "val top-1 %", "seeds", "train images/s", "speed vs CE"],
                             rows))
    return "\n\n".join(parts) if parts else "*no table in `benchmarks/csdnet_vs_ce.result.json`.*"


def csdnet_block(results: dict) -> str:
    data = results.get("csdnet_vs_ce")
    if data is None:
        return placeholder("csdnet_vs_ce")
    return csdnet_setting(data) + ". Mean ± std over the seeds.\n\n" + csdnet_tables(data)


# ---------------------------------------------------------------------------------------- README
def readme_block(results: dict) -> str:
    rows, notes = [], []
    recipes = results.get("recipes")
    if recipes is None:
        notes.append(placeholder("recipes"))
    else:
        for r in recipe_rows(recipes):
            rows.append([cell(r.get("name")), code(r.get("recipe")), row_test(r),
                         num(r.get("teacher_test_top1")), seconds(r.get("seconds")), code(r.get("command"))])
    csd = results.get("csdnet_vs_ce")
    if csd is None:
        notes.append(placeholder("csdnet_vs_ce"))
    else:
        table_ = (csd.get("tables") or {}).get("oxford17") or {}
        recipe = csdnet_config(csd)
        for variant, extra in (("ce", " method.name=supervised"), ("csdnet", "")):
            s = table_.get(variant)
            if not s:
                continue
            label = "cross-entropy" if variant == "ce" else "CSDNet"
            rows.append([f"{label}, Oxford-17, {csd.get('k', NONE)} images per class ({s.get('runs', NONE)} seeds)",
                         code(recipe + extra), mean_std(s.get("test_top1_mean"), s.get("test_top1_std")), NONE,
                         seconds(run_seconds(csd, "oxford17", variant)),
                         code(csdnet_command(csd, "oxford17", [variant]))])
    text = table(["run", "recipe", "test top-1 %", "teacher %", "time per run", "command"], rows) if rows else ""
    return "\n\n".join(x for x in [text, *notes] if x)


RENDERERS = {"readme": readme_block, "datafree": datafree_block, "csdnet": csdnet_block,
             "datafree-comparison": comparison_block, "datafree-benchmark": whole_comparison(README_DATAFREE["source"]),
             "datafree-compression": whole_comparison(COMPRESSION),
             "datafree-lite0-10min": whole_comparison(SAME_ARCH_10MIN)}


def render_block(name: str, results: dict) -> str:
    if name not in RENDERERS:
        raise ValueError(f"unknown results block {name!r}; known: {', '.join(RENDERERS)}")
    return RENDERERS[name](results)


def missing_sources(name: str, root: Path = ROOT) -> list[str]:
    """The JSON files a block reads that are not committed under ``root``."""
    return [f"benchmarks/{s}.result.json" for s in BLOCKS.get(name, ())
            if not (root / "benchmarks" / f"{s}.result.json").is_file()]


# ---------------------------------------------------------------------------------------- RESULTS.md
def generic_section(data: dict) -> str:
    rows = data.get("rows") if isinstance(data.get("rows"), list) else data.get("runs")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        preferred = ["name", "setting", "dataset", "method", "variant", "recipe", "seed", "test_top1", "val_top1",
                     "teacher_test_top1", "iterations", "steps", "seconds"]
        cols = [c for c in preferred if any(c in r for r in rows)]
        body = [[num(r.get(c)) if isinstance(r.get(c), float) else cell(r.get(c)) for c in cols] for r in rows]
        return table(cols, body)
    scalars = {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool)) or v is None}
    if not scalars:
        return "*no table this script can read.*"
    return table(["key", "value"], [[cell(k), cell(v)] for k, v in scalars.items()])


def section(name: str, data: dict) -> str:
    command = data.get("command") if isinstance(data.get("command"), str) else None
    head = [f"## `{name}.result.json`", ""]
    if name == "recipes":
        head += [f"Command: `{command or WRITERS['recipes']}`. Each row: the recipe, the command that runs it "
                 "alone, and its figures.", "", recipes_table(data)]
    elif name == "csdnet_vs_ce":
        head += [csdnet_setting(data) + ". Mean ± std over the seeds.", "", csdnet_tables(data)]
        if data.get("how_run"):
            head += ["", "How it was run: " + cell(data["how_run"])]
    else:
        if command:
            head += [f"Command: `{command}`.", ""]
        if is_comparison(data):
            head += [comparison_section(data)]
        elif isinstance(data.get("curves"), list):
            head += [curves_section(data)]
        else:
            head += [generic_section(data)]
    return "\n".join(head)


def render_results_md(results: dict) -> str:
    lines = ["# Benchmark results", "",
             "<!-- generated by `python -m benchmarks.results_md` from benchmarks/*.result.json: do not edit -->", "",
             "Every committed `benchmarks/*.result.json`, one section each. Test top-1 is on the dataset's test "
             "split, which no run uses to choose anything; val top-1 is what settings were chosen on. Results of "
             "scripts and settings that no longer exist are kept, as superseded runs, in "
             "[docs/history/results/](../docs/history/results/).", ""]
    if not results:
        lines += ["*No result JSON is committed.*", ""]
    for name, data in results.items():
        lines += [section(name, data), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- files
def doc_files(root: Path = ROOT) -> list[Path]:
    """The files whose marker blocks are rendered: README.md and docs/*.md outside docs/history/."""
    files = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    return [f for f in files if f.is_file()]


def blocks_in(text: str, where: str = "") -> list[str]:
    """The block names of a text, in order; an unclosed or unknown marker is an error naming it."""
    stack, names = [], []
    for m in OPEN.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if name not in RENDERERS:
            raise ValueError(f"{where}: unknown results block {name!r}; known: {', '.join(RENDERERS)}")
        if closing:
            if not stack or stack[-1] != name:
                raise ValueError(f"{where}: <!-- /results:{name} --> without its opening marker")
            stack.pop()
        else:
            if stack:
                raise ValueError(f"{where}: results block {name!r} opened inside {stack[-1]!r}")
            stack.append(name)
            names.append(name)
    if stack:
        raise ValueError(f"{where}: results block {stack[-1]!r} is not closed (<!-- /results:{stack[-1]} -->)")
    return names


def render_text(text: str, results: dict, where: str = "") -> str:
    blocks_in(text, where)
    return MARKER.sub(lambda m: f"<!-- results:{m['name']} -->\n{render_block(m['name'], results)}\n"
                                f"<!-- /results:{m['name']} -->", text)


def block_body(text: str, name: str) -> str | None:
    """The current text between a block's markers (None when the text has no such block)."""
    for m in MARKER.finditer(text):
        if m["name"] == name:
            return m["body"].rstrip("\n")
    return None


def expected(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file's content as the committed JSON renders it now."""
    results = load_results(root)
    out = {root / RESULTS_MD: render_results_md(results)}
    for path in doc_files(root):
        text = path.read_text()
        if OPEN.search(text):
            out[path] = render_text(text, results, str(path.relative_to(root)))
    return out


def check(root: Path = ROOT) -> list[str]:
    """The files (relative to ``root``) whose content differs from what the JSON renders now."""
    stale = []
    for path, text in expected(root).items():
        if not path.is_file() or path.read_text() != text:
            stale.append(str(path.relative_to(root)))
    return stale


def write(root: Path = ROOT) -> list[str]:
    """Rewrite every stale file; returns the ones written."""
    written = []
    for path, text in expected(root).items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(str(path.relative_to(root)))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    p.add_argument("--root", default=str(ROOT), help="repository root (default: this checkout)")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    if args.check:
        stale = check(root)
        for f in stale:
            print(f"stale: {f} (run `python -m benchmarks.results_md`)")
        return 1 if stale else 0
    for f in write(root):
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
