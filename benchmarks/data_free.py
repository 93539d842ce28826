"""Data-free distillation at equal time budgets: DFKD-FGVC, its ablations and every data-free
baseline, from the same fine-grained teacher into the same student, each run a shipped recipe.

1. Teacher: the recipe of ``--pair`` (``PAIRS``) trained once on ``--data``: ``lite0-lite0`` (the
   default) trains ``oxford17_cpu`` (EfficientNet-Lite0 from the shipped ImageNet weights, 128 px,
   6 epochs), ``lite2-lite0`` trains ``oxford17_lite2_cpu`` (EfficientNet-Lite2) to compress into
   the Lite0 student; or a run given with ``--teacher`` (then evaluated on ``--data``).
   Nothing assumes Oxford-17: any ImageFolder with train/, val/ and test/ works
   (``--data ../shared/data/cars196``).
2. Rows (``rows()``), each a recipe, a method and at most one of the paper's own ablation switches:
   - ``dfkd-fgvc``: the paper's method, recipe ``datafree_paper_budget`` (its generator and losses,
     the budget practicalities marked in the file); its ablations ``dfkd-fgvc-no-sam`` /
     ``-no-mhad`` / ``-no-sfcl`` (the paper's λ = 0, MHAD off, SFCL off);
   - ``dfkd-fgvc-practical``: DFKD-FGVC from finegrain's recipe ``datafree_practical``;
   - every other registered data-free method (cmi, dafl, deepinversion, dfad, dfq, fast-dfkd, mad,
     noise-kd, spaceshipnet, zskt) from ``datafree_practical`` under its own method name, and ``kd`` on the real training
     images with the same recipe (the reference). A method with a recipe of its own (a shipped
     ``<recipe>_<method>``) starts from that instead.
3. Equal tuning (``benchmarks/tuning.py``): every row on the practical recipe is tuned alike in
   ``SEARCH_SPACE``: ``TUNING["trials"]`` trials (trial 0: the recipe as shipped), each at the
   trial budget on seed 0, two at a time on one core each; the best val top-1 is chosen. The
   paper's rows keep the paper's settings; ``kd`` is not tuned. ``--stage tune`` stops after the
   trials; ``--tuned-from JSON`` takes another benchmark's choices instead (Stanford Cars).
4. Equal time: every final run gets ``--budget`` minutes (train.budget_minutes, default 6), one at a
   time on the whole machine: after its warm-up it times its own steps and sizes its schedule,
   learning rate included, to end on time.
5. Seeds: every row runs ``--seeds`` (default 0 1 2); mean ± std over seeds, and seed-paired
   differences of each row against ``dfkd-fgvc-practical`` and ``dfkd-fgvc``. Test is reported,
   never used to choose.

Runs go through ``benchmarks/harness.py``: each in a fresh spawned process, ``--jobs`` at a time
with ``--threads`` torch threads each (default: one run at a time on the whole machine, as a
user's run). Finished rows are kept in ``<out>.partial.json``: run the same command again to
resume; the JSON is written once every row has run.

    python -m benchmarks.data_free                              # the full benchmark, Oxford-17
    python -m benchmarks.data_free --quick                      # pipeline check, minutes
    python -m benchmarks.data_free --teacher runs/teacher --rows dfkd-fgvc-practical dfad kd --seeds 0
    python -m benchmarks.data_free --pair lite2-lite0 --budget 10   # compression: data_free_lite2_lite0.result.json
    python -m benchmarks.data_free --data ../shared/data/cars196 --budget 20 --seeds 0 --tuned-from benchmarks/data_free.result.json --out benchmarks/data_free_cars196.result.json

Writes ``benchmarks/data_free.result.json`` (``--quick``: ``benchmarks/results/``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import harness, tuning

BENCHMARK = "data_free"
#: teacher -> student pairs: name -> the teacher's recipe (every distillation recipe's student is
#: EfficientNet-Lite0). The default pair distils a Lite0 teacher; ``lite2-lite0`` compresses.
PAIRS = {"lite0-lite0": "oxford17_cpu", "lite2-lite0": "oxford17_lite2_cpu"}
DEFAULT_PAIR = "lite0-lite0"
PRACTICAL = "datafree_practical"
PAPER = "datafree_paper_budget"
MAIN = "dfkd-fgvc"
#: the rows DFKD-FGVC gets: name -> (recipe, ablation)
DFKD_ROWS = {
    "dfkd-fgvc": (PAPER, None),
    "dfkd-fgvc-no-sam": (PAPER, "no-sam"),
    "dfkd-fgvc-no-mhad": (PAPER, "no-mhad"),
    "dfkd-fgvc-no-sfcl": (PAPER, "no-sfcl"),
    "dfkd-fgvc-practical": (PRACTICAL, None),
}
#: rows compared seed by seed against every other row
REFERENCES = ("dfkd-fgvc-practical", "dfkd-fgvc")
QUICK_ROWS = ["dfkd-fgvc-practical", "dfad", "kd"]
QUICK = {"budget": 0.5, "teacher_budget": 0.5, "seeds": [0]}

# ------------------------------------------------------------------------------- equal tuning
GENERATOR_METHODS = ("dfkd-fgvc", "dafl", "dfad", "dfq", "cmi", "mad", "zskt", "spaceshipnet")
EVERY = tuning.EVERY_METHOD


def search_space(student_steps: tuple = (1, 4, 8)) -> tuple[tuning.Dimension, ...]:
    """The one search space every tuned data-free row is tuned in (``student_steps``: the values of
    k, which depend on the recipes' scale: MNIST's take k = 5). Every practical feature is offered
    to every method that can use it; the method-specific dimensions are the L_BN weight of those
    that have one and the weight of each method's own term. The paper's ``dfkd-fgvc`` keeps the
    paper's settings and ``kd`` on real images is the reference: neither is tuned."""
    return (
        tuning.Dimension("synthesizer lr", (0.25, 1.0, 2.5),
                         {**{m: "generator.lr" for m in GENERATOR_METHODS + ("fast-dfkd",)},
                          "deepinversion": "deepinversion.lr"},
                         relative=True),
        tuning.Dimension("student lr", (0.3, 1.0, 3.0), {EVERY: "optim.lr"}, relative=True),
        tuning.Dimension("student steps per synthesis step (k)", student_steps,
                         {EVERY: "distill.student_steps", "noise-kd": None}),
        tuning.Dimension("cutmix of pool draws", ("none", "cutmix"), {EVERY: "distill.pool_mix", "noise-kd": None}),
        tuning.Dimension("class-conditional generator with its target prior", ((False, 0.0), (True, 10.0)),
                         {m: ("generator.class_conditional", "generator.target_ce") for m in GENERATOR_METHODS}),
        tuning.Dimension("L_BN weight", (0.01, 0.1, 1.0),
                         {"dfkd-fgvc": "dfkd.alpha", "dfq": "dfq.bn", "cmi": "cmi.bn",
                          "deepinversion": "deepinversion.bn_weight", "fast-dfkd": "fast_dfkd.bn",
                          "spaceshipnet": "spaceshipnet.bn"}),
        tuning.Dimension("the method's own term (weight)", (0.3, 1.0, 3.0),
                         {"dfkd-fgvc": "dfkd.gamma", "dafl": "dafl.balance", "dfq": "dfq.adversarial",
                          "cmi": "cmi.contrast", "mad": "mad.adversarial", "zskt": "zskt.attention_weight",
                          "deepinversion": "deepinversion.adi_scale", "fast-dfkd": "fast_dfkd.adversarial",
                          "spaceshipnet": "spaceshipnet.gradcam"},
                         relative=True),
        tuning.Dimension("KD temperature", (1.0, 4.0), {EVERY: "distill.temperature", "dfad": None}),
    )


SEARCH_SPACE = search_space()
#: how every tuned row is tuned: trials, each at this budget on this seed, ``jobs`` at a time with
#: ``threads`` torch threads each (two half-machine trials at once: the final runs get the whole
#: machine, one at a time); chosen on val top-1
TUNING = {"trials": 6, "budget_minutes": 4.0, "seed": 0, "jobs": 2, "threads": 1, "chosen_on": "val_top1"}
QUICK_TUNING = {"trials": 2, "budget_minutes": 0.5}


def recipe_for(recipe: str, method: str) -> str:
    """``<recipe>_<method>`` where such a recipe is shipped (a method that needs its own), else ``recipe``."""
    own = f"{recipe}_{method}"
    return own if harness.recipe_shipped(own) else recipe


def rows() -> dict[str, tuple[str, str, str | None]]:
    """name -> (recipe, method, ablation) of every row, in table order."""
    from finegrain import methods

    table = {name: (recipe_for(recipe, MAIN), MAIN, ablation) for name, (recipe, ablation) in DFKD_ROWS.items()}
    for info in methods.available():
        if not info.cls.needs_train_data and info.name != MAIN:
            table[info.name] = (recipe_for(PRACTICAL, info.name), info.name, None)
    table["kd"] = (recipe_for(PRACTICAL, "kd"), "kd", None)
    return table


def tuned_rows(table: dict, names) -> list[str]:
    """The rows that are tuned: every data-free row on the practical recipe (not the paper's, not kd)."""
    return [name for name in names if table[name][0].startswith(PRACTICAL) and table[name][1] != "kd"]


def tuning_plan(args, table: dict, teacher: str, out_dir: Path) -> list[harness.Run]:
    """Every tuned row's trials on seed ``TUNING["seed"]`` at the trial budget, trial-major."""
    def make_run(name: str, trial: int, settings: tuple) -> harness.Run:
        return harness.Run(name=name, recipe=table[name][0], method=table[name][1], seed=TUNING["seed"],
                           budget_minutes=args.tuning["budget_minutes"], teacher=teacher, data=args.data,
                           out_dir=str(out_dir), labels=(("stage", "tune"), ("trial", trial)), settings=settings,
                           accelerator=args.device)

    rows = {name: table[name][:2] for name in tuned_rows(table, args.rows)}
    return tuning.trial_runs(SEARCH_SPACE, rows, args.tuning["trials"], make_run)


def tuned_elsewhere(path: str, names: list[str]) -> dict:
    """The choices of another finished data-free benchmark, for the rows it tuned."""
    source = Path(path)
    if not source.is_file():
        raise SystemExit(f"--tuned-from {path}: no such file")
    chosen = json.loads(source.read_text()).get("tuning", {}).get("chosen", {})
    missing = [name for name in names if name not in chosen]
    if missing:
        raise SystemExit(f"--tuned-from {path}: no tuning choice for {', '.join(missing)}")
    return {name: {**chosen[name], "from": str(path)} for name in names}


def plan(args, table: dict, teacher: str, out_dir: Path, chosen: dict | None = None) -> list[harness.Run]:
    """Every final run, seed-major (all rows of seed 0 first, so a partial benchmark has every row);
    a tuned row runs its chosen settings (a tuned row without a finished tuning is left out)."""
    chosen = chosen or {}
    tuned = set(tuned_rows(table, args.rows))
    return [harness.Run(name=name, recipe=table[name][0], method=table[name][1], seed=seed,
                        budget_minutes=args.budget, teacher=teacher, data=args.data, out_dir=str(out_dir),
                        ablation=table[name][2], accelerator=args.device,
                        settings=tuning.chosen_settings(chosen, name))
            for seed in args.seeds for name in args.rows if name not in tuned or name in chosen]


def teacher_run(args, out_dir: Path) -> harness.Run:
    return harness.Run(name="teacher", recipe=PAIRS[args.pair], method="supervised", seed=0,
                       budget_minutes=args.teacher_budget, data=args.data, out_dir=str(out_dir),
                       accelerator=args.device)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(harness.ROOT.parent / "shared" / "data" / "oxford17"),
                   help="ImageFolder root with train/ (teacher, kd), val/ and test/")
    p.add_argument("--teacher", help="use this teacher run or checkpoint (evaluated on --data) instead of training one")
    p.add_argument("--pair", choices=list(PAIRS), default=DEFAULT_PAIR,
                   help="teacher -> student: the teacher's recipe (" + ", ".join(f"{k}: {v}" for k, v in PAIRS.items())
                        + f"); another pair than {DEFAULT_PAIR} has its own run folders and JSON "
                          "(lite2-lite0: benchmarks/data_free_lite2_lite0.result.json)")
    p.add_argument("--teacher-budget", type=float, default=0.0,
                   help="time budget of the teacher run (default 0: its recipe's own schedule)")
    p.add_argument("--rows", nargs="+", help="rows to run (default: all; see rows())")
    p.add_argument("--device", default=None, help="train.accelerator of every run (default: the recipes' cpu)")
    p.add_argument("--grids", metavar="DIR", help="save a grid of 16 synthetic images per seed-0 data-free row here")
    p.add_argument("--tuned-from", metavar="JSON",
                   help="take every tuned row's settings from this finished benchmark's choices instead of tuning "
                        "here (Stanford Cars runs Oxford-17's choices: data nobody tuned on)")
    p.add_argument("--stage", choices=("tune", "all"), default="all",
                   help="tune: the teacher and the tuning trials only (a sitting of a long benchmark); all: then the "
                        "final runs and the JSON")
    p.add_argument("--quick", action="store_true",
                   help=f"pipeline check: {' '.join(QUICK_ROWS)}, seed 0, {QUICK['budget']} min per run and a "
                        f"{QUICK['teacher_budget']}-min teacher; writes under benchmarks/results/")
    harness.add_arguments(p, out=None, budget=6.0)
    args = p.parse_args(argv)
    given = set(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.budget = args.budget if "--budget" in given else QUICK["budget"]
        args.teacher_budget = args.teacher_budget if "--teacher-budget" in given else QUICK["teacher_budget"]
        args.seeds = args.seeds if "--seeds" in given else QUICK["seeds"]
        args.rows = args.rows or QUICK_ROWS
    args.tuning = {**TUNING, **(QUICK_TUNING if args.quick else {})}
    table = rows()
    args.rows = args.rows or list(table)
    unknown = [name for name in args.rows if name not in table]
    if unknown:
        p.error(f"unknown rows {unknown}; known: {', '.join(table)}")
    args.benchmark = BENCHMARK if args.pair == DEFAULT_PAIR else f"{BENCHMARK}_{args.pair.replace('-', '_')}"
    args.out = args.out or str(harness.ROOT / "benchmarks" / (f"results/{args.benchmark}.quick.json" if args.quick
                                                              else f"{args.benchmark}.result.json"))
    harness.check_arguments(p, args)
    return args


COLUMNS = harness.SUMMARY_COLUMNS


def main(argv=None, runner=None) -> dict:
    args = parse_args(argv)
    if not (Path(args.data) / "test").is_dir():
        raise SystemExit(f"--data {args.data}: not an ImageFolder root with a test/ split")
    table = rows()
    elsewhere = tuned_elsewhere(args.tuned_from, tuned_rows(table, args.rows)) if args.tuned_from else None
    workdir = harness.workdir_of(args, args.benchmark)
    out_dir = workdir / "runs"
    results = harness.Results(args.out, args.benchmark, fresh=args.fresh,
                              argv=None if argv is None else ["benchmarks/data_free.py", *argv])
    common = {"jobs": args.jobs, "threads": args.threads, "workdir": workdir, "runner": runner}
    if args.teacher:
        teacher = harness.teacher_reference(args.teacher, args.data)
    else:
        teacher = harness.train_teacher(teacher_run(args, out_dir), results, **common)
    teachers = {teacher["run_dir"]: teacher}
    if elsewhere is not None:
        trial_runs, trial_rows, chosen = [], [], elsewhere
    else:
        trial_runs = tuning_plan(args, table, teacher["run_dir"], out_dir)
        trial_rows, chosen = tuning.run_trials(trial_runs, results, tuned_rows(table, args.rows), args.tuning,
                                               markdown=args.markdown, teachers=teachers, **common)
    if args.stage == "tune":
        return {**tuning.tuning_stopped(trial_rows, trial_runs, harness.partial_path(args.out)), "chosen": chosen}
    runs = plan(args, table, teacher["run_dir"], out_dir, chosen)
    grids = ({run.run_id: str(Path(args.grids) / f"{run.name}.png") for run in runs
              if run.seed == args.seeds[0] and run.method != "kd"} if args.grids else None)
    done = harness.launch(runs, results, teachers=teachers, grids=grids, **common)
    for row in done:
        row["tuning_trials"] = tuning.trials_of(chosen, row["variant"])
    summary = harness.summarize(done, by=("variant",))
    names = [r["variant"] for r in summary]
    comparisons = [c for ref in REFERENCES if ref in names for other in names if other != ref
                   for c in [harness.paired(done, ref, other)] if c is not None]
    result = results.finish({
        "data": str(Path(args.data).resolve()), "teacher": teacher,
        "pair": args.pair, "teacher_recipe": None if args.teacher else PAIRS[args.pair], "budget_minutes": args.budget,
        "seeds": args.seeds, "jobs": args.jobs, "threads": args.threads or harness.default_threads(args.jobs),
        "device": args.device or "cpu (recipes)", "quick": args.quick,
        "rows": {name: {"recipe": table[name][0], "method": table[name][1], "ablation": table[name][2]}
                 for name in args.rows},
        "tuning": {**args.tuning, "space": tuning.describe(SEARCH_SPACE), "rows": tuned_rows(table, args.rows),
                   "chosen": chosen, "tuned_from": args.tuned_from},
        "complete": len(done) == len(runs) and len(trial_rows) == len(trial_runs), "runs": done,
        "tuning_runs": trial_rows, "summary": summary, "paired": comparisons})
    print(f"\n{args.data}: teacher {teacher.get('architecture')} val {harness.fmt(teacher.get('val_top1'))} "
          f"test {harness.fmt(teacher.get('test_top1'))}; {args.budget:g} min per run, {args.jobs} at a time")
    harness.print_table(summary, COLUMNS, markdown=args.markdown)
    for c in comparisons:
        print(f"{c['a']} - {c['b']}: {c['mean_difference']:+.2f} test points over seeds {c['seeds']} "
              f"({c['wins']} won, {c['losses']} lost)")
    if results.failures:
        print(f"\n{len(results.failures)} failed: " + ", ".join(f"{f['variant']} s{f['seed']}" for f in results.failures))
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
