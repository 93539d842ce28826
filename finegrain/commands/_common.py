"""Options and helpers shared by commands: the training options (train, distill), the run or
checkpoint argument, the device choice and the dataset root, each spelled the same everywhere.

Nothing heavy is imported at module level (see ``finegrain.cli``): ``--help`` must stay fast.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from finegrain.errors import ConfigError

RUN_HELP = "run folder, checkpoint .json or .safetensors"


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


def add_run_argument(parser, help_text: str = RUN_HELP) -> None:
    """The run or checkpoint a command reads: always the first positional argument."""
    parser.add_argument("checkpoint", metavar="RUN", help=help_text)


def add_device_option(parser, default: str | None = "auto", help_text: str | None = None) -> None:
    """``--device`` in every command that chooses one; ``--accelerator`` is the same option."""
    parser.add_argument("--device", "--accelerator", dest="device", default=default,
                        help=help_text or "cpu, cuda, cuda:N, or auto (cuda when available)")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else as given."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_data_options(group, root_help: str, format_default: str | None = None,
                     format_help: str = "dataset format (see `finegrain datasets`)", root_required: bool = False,
                     root_aliases: tuple[str, ...] = ()) -> None:
    """``--data ROOT`` and ``--data-format F`` (``--format`` is kept as its old spelling, and a
    command's old spelling of ``--data`` comes in ``root_aliases``)."""
    group.add_argument("--data", *root_aliases, dest="data", metavar="ROOT", required=root_required, help=root_help)
    group.add_argument("--data-format", "--format", dest="data_format", default=format_default, help=format_help)


def add_run_options(parser) -> dict:
    """Options of the commands that train (train, distill); returns the groups by name so that a
    command adds its own options beside them."""
    config = parser.add_argument_group("configuration")
    config.add_argument("--config", help="YAML file, or the name of a shipped config (see `finegrain configs`)")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="section.key=value overrides, e.g. optim.lr=0.01")
    data = parser.add_argument_group("data")
    add_data_options(data, "dataset root (sets data.root)", format_help="dataset format (sets data.format)")
    data.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="folder that holds the run folders (sets train.out_dir)")
    out.add_argument("--name", help="run folder name (sets train.run_name)")
    out.add_argument("--resume", nargs="?", const="auto", metavar="CKPT", help="'auto' (newest valid checkpoint of the run) or a checkpoint path")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, help="sets train.epochs")
    training.add_argument("--budget", type=float, metavar="MINUTES",
                          help="time budget: the run sizes its schedule to end in MINUTES (sets train.budget_minutes)")
    training.add_argument("--precision", help="sets train.precision (32-true, bf16-mixed, 16-mixed)")
    training.add_argument("--pretrained-file", help="local backbone weights, or 'auto' (sets model.pretrained_file)")
    hardware = parser.add_argument_group("hardware")
    add_device_option(hardware, default=None, help_text="cpu, cuda or auto (sets train.accelerator)")
    hardware.add_argument("--devices", help="sets train.devices")
    hardware.add_argument("--strategy", help="sets train.strategy (auto, ddp, ddp_spawn)")
    hardware.add_argument("--num-nodes", type=int, help="sets train.num_nodes")
    return {"configuration": config, "data": data, "output": out, "training": training, "hardware": hardware}


def config_from_args(args, method: str | None = None):
    from finegrain.config import load_config

    path = packaged_config(args.config) if args.config else None
    cfg = load_config(path, list(args.overrides))
    flags = {  # config key: (value, the flag named in an error)
        "data.root": (args.data, "--data"), "data.format": (args.data_format, "--data-format"),
        "train.out_dir": (args.out, "--out"), "train.run_name": (args.name, "--name"),
        "train.epochs": (args.epochs, "--epochs"), "train.budget_minutes": (args.budget, "--budget"),
        "train.devices": (args.devices, "--devices"),
        "train.accelerator": (args.device, "--device"), "train.strategy": (args.strategy, "--strategy"),
        "train.num_nodes": (args.num_nodes, "--num-nodes"), "train.precision": (args.precision, "--precision"),
        "model.pretrained_file": (args.pretrained_file, "--pretrained-file"), "method.name": (method, "--method"),
    }
    for key, (value, flag) in flags.items():
        if value is not None:
            if key in ("data.root", "train.out_dir") or (key == "model.pretrained_file" and value != "auto"):
                value = str(Path(value).resolve())
            cfg.set(key, value, flag)
    if args.skip_bad_images:
        cfg.data.skip_bad_images = True
    return cfg
