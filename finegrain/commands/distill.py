"""``finegrain distill --teacher RUN``: compress a trained teacher.

Without ``--config`` a data-free run uses the recipe ``datafree_practical`` (DFKD-FGVC with
finegrain's CPU settings) and says so; ``--config datafree_paper`` runs the paper's settings.

Data-free methods (dfkd-fgvc, dfad, deepinversion, ...) read no training images: ``--data`` is
refused for them, and ``--eval-data ROOT`` names a real dataset whose val/test splits only
evaluate the student. ``kd`` distills on real training data and takes ``--data``.
"""

from __future__ import annotations

from pathlib import Path

from finegrain.commands._common import add_run_options, config_from_args


def register(sub) -> None:
    p = sub.add_parser("distill", help="distill a teacher checkpoint into a student (data-free or with real data)")
    groups = add_run_options(p)
    teach = p.add_argument_group("distillation")
    teach.add_argument("--teacher", metavar="RUN", help="teacher run folder or checkpoint (sets distill.teacher)")
    teach.add_argument("--student", help="student timm architecture (sets distill.student)")
    teach.add_argument("--method", default=None, help="dfkd-fgvc (default), dfad, deepinversion, kd, ... (see `finegrain methods`)")
    groups["data"].add_argument("--eval-data", metavar="ROOT",
                                help="real dataset for evaluation only (data-free methods; sets data.root)")
    p.set_defaults(func=run)


#: the recipe of a data-free run given no --config: one that learns on a CPU in minutes
DEFAULT_RECIPE = "datafree_practical"
#: the paper's own settings, one word away
PAPER_RECIPE = "datafree_paper"


def default_recipe(config, method: str | None) -> str | None:
    """``datafree_practical`` for a data-free run given no config (real-data KD keeps the defaults)."""
    from finegrain import methods

    if config is not None or (method is not None and methods.get(method).cls.needs_train_data):
        return None
    return DEFAULT_RECIPE


def announce_recipe(recipe: str) -> None:
    print(f"recipe: {recipe} (finegrain's CPU recipe; the paper's settings: --config {PAPER_RECIPE})", flush=True)


def build_config(args):
    from finegrain import methods
    from finegrain.errors import ConfigError

    recipe = default_recipe(args.config, args.method)
    if recipe is not None:
        args.config = recipe
        announce_recipe(recipe)
    cfg = config_from_args(args, method=args.method)
    if args.method is None and cfg.method.name == "supervised":
        cfg.set("method.name", "dfkd-fgvc")
    info = methods.get(cfg.method.name)
    data_free = not info.cls.needs_train_data
    if data_free and args.data:
        raise ConfigError(f"--data: method {cfg.method.name!r} is data-free and never reads a training split; "
                          f"pass --eval-data ROOT to evaluate on a real test split")
    if not data_free and args.eval_data:
        raise ConfigError(f"--eval-data: method {cfg.method.name!r} trains on real data; pass --data ROOT")
    if args.eval_data:
        cfg.set("data.root", str(Path(args.eval_data).resolve()), "--eval-data")
    if args.teacher:
        cfg.set("distill.teacher", str(Path(args.teacher).resolve()), "--teacher")
    if args.student:
        cfg.set("distill.student", args.student, "--student")
    if args.pretrained_file:  # the student's initial weights, not a `model` section's
        cfg.set("distill.student_pretrained_file", cfg.model.pretrained_file, "--pretrained-file")
        cfg.model.pretrained_file = None
    return cfg


def run(args) -> int:
    from finegrain.commands.train import print_summary
    from finegrain.engine.loop import fit

    summary = fit(build_config(args), resume=args.resume)
    print_summary(summary)
    return 0
