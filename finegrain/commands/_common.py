"""Options shared by the commands that run training (train, distill, demo)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from finegrain.config import Config, load_config
from finegrain.errors import ConfigError


def packaged_config(name: str) -> Path:
    """``--config cub_resnet50`` finds ``finegrain/configs/cub_resnet50.yaml``."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = Path(str(resources.files("finegrain") / "configs" / f"{name}.yaml"))
    if not candidate.is_file():
        known = sorted(p.stem for p in Path(str(resources.files("finegrain") / "configs")).glob("*.yaml"))
        raise ConfigError(f"config {name!r} is neither a file nor a shipped config ({', '.join(known)})")
    return candidate


def add_run_options(parser) -> None:
    parser.add_argument("--config", help="YAML file, or the name of a shipped config (see `finegrain configs`)")
    parser.add_argument("--data", help="dataset root (sets data.root)")
    parser.add_argument("--format", dest="data_format", help="dataset format (sets data.format)")
    parser.add_argument("--out", help="folder for run folders (sets train.out_dir)")
    parser.add_argument("--name", help="run folder name (sets train.run_name)")
    parser.add_argument("--resume", nargs="?", const="auto", help="'auto' (newest valid checkpoint of the run) or a checkpoint path")
    parser.add_argument("--epochs", type=int, help="sets train.epochs")
    parser.add_argument("--devices", help="sets train.devices")
    parser.add_argument("--accelerator", help="sets train.accelerator (cpu, cuda, auto)")
    parser.add_argument("--strategy", help="sets train.strategy (auto, ddp, ddp_spawn)")
    parser.add_argument("--num-nodes", type=int, help="sets train.num_nodes")
    parser.add_argument("--precision", help="sets train.precision (32-true, bf16-mixed, 16-mixed)")
    parser.add_argument("--pretrained-file", help="local backbone weights, or 'auto' (sets model.pretrained_file)")
    parser.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. optim.lr=0.01")


def config_from_args(args, method: str | None = None) -> Config:
    path = packaged_config(args.config) if args.config else None
    cfg = load_config(path, list(args.overrides))
    flags = {
        "data.root": args.data, "data.format": args.data_format, "train.out_dir": args.out,
        "train.run_name": args.name, "train.epochs": args.epochs, "train.devices": args.devices,
        "train.accelerator": args.accelerator, "train.strategy": args.strategy,
        "train.num_nodes": args.num_nodes, "train.precision": args.precision,
        "model.pretrained_file": args.pretrained_file, "method.name": method,
    }
    for key, value in flags.items():
        if value is not None:
            if key in ("data.root", "train.out_dir") or (key == "model.pretrained_file" and value != "auto"):
                value = str(Path(value).resolve())
            cfg.set(key, value, f"--{key.split('.')[-1]}")
    if args.skip_bad_images:
        cfg.data.skip_bad_images = True
    return cfg
