"""Typed configuration: dataclass sections, YAML files and dotted command-line overrides.

A config is a set of named *sections* (``data``, ``model``, ``optim`` …). The core sections, which
every run reads, are declared here; the sections of methods are declared in
:mod:`finegrain.method_config`. Both are plain dataclasses, so building or loading a config never
imports torch, timm or a method. Every key has a default and a doc string, unknown keys and wrong
types are errors that name the key and the file they came from.

A method names the sections it reads (``Method.config_sections``). Once the run's method is known,
:meth:`Config.bind` keeps the core sections plus those: ``config.yaml`` and checkpoint sidecars
hold them and nothing else, and a command-line override of any other section is an error naming
the key and the method. Sections a YAML file or a saved run sets for other methods are ignored:
one YAML may serve several methods, and old run folders stored every section.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Optional

import yaml

from finegrain.config_fields import SECTIONS, option, register_section
from finegrain.errors import ConfigError

#: keys that were removed (docs/history/options-that-lost.md), each with the value that did what
#: finegrain does now. Run folders written before store every key, so a retired key at that value
#: is dropped on loading; at any other value it is an error: finegrain can no longer do what it asks.
RETIRED: dict[str, Any] = {
    "distill.critic_mode": "eval", "distill.channels_last": False, "distill.warmup_critic": True,
    "distill.pool_crop": 1.0, "distill.pool_mix_alpha": 1.0, "generator.synthesis_crop": 1.0,
    "dfkd.first_bn_weight": 1.0, "dfkd.onehot": 0.0, "dfkd.balance": 0.0, "csdnet.qc_reduction": "sum",
    "csdnet.ddl_views": "both",
}


#: keys that moved, old name -> new name: a value saved under the old name (an old run folder's
#: config.yaml, an old override) is read as the new key's
RENAMED: dict[str, str] = {"dfkd.target_ce": "generator.target_ce"}


def _retired(dotted: str, value: Any, source: str) -> bool:
    """True for a retired key at the value that behaves as finegrain now does (then it is ignored)."""
    if dotted not in RETIRED:
        return False
    old = RETIRED[dotted]
    if (value is old) if isinstance(old, bool) or isinstance(value, bool) else (value == old):
        return True
    raise ConfigError(f"{source}: {dotted}={value!r}: the key was removed (it lost on val; see "
                      f"docs/history/options-that-lost.md); only its old default {old!r} is still accepted")


# --------------------------------------------------------------------------------------- sections
@register_section("data")
@dataclasses.dataclass
class DataConfig:
    format: str = option("imagefolder", "dataset format (see `finegrain datasets`)")
    root: Optional[str] = option(None, "dataset root directory", path=True)
    image_size: int = option(224, "square crop fed to the network, in pixels")
    crop_ratio: float = option(0.875, "eval: resize to image_size / crop_ratio, then center crop")
    train_split: str = option("train", "split used for training")
    val_split: Optional[str] = option("val", "split evaluated each epoch; missing split -> val_fraction or test")
    val_fraction: float = option(0.0, "carve this fraction of train (per class, seeded) as val when no val split")
    test_split: str = option("test", "split used for the final report")
    few_shot_k: int = option(0, "keep K training images per class (0 = all)")
    few_shot_seed: int = option(0, "seed of the few-shot subset")
    batch_size: int = option(32, "training batch size per process")
    eval_batch_size: int = option(64, "evaluation batch size per process")
    num_workers: int = option(2, "data-loader worker processes")
    cache: bool = option(False, "keep decoded, resized images in memory (small datasets)")
    skip_bad_images: bool = option(False, "skip unreadable images with a warning instead of failing")
    hflip: bool = option(True, "random horizontal flip when training")
    random_resized_crop: bool = option(False, "RandomResizedCrop instead of resize + random crop")
    mean: list = option([0.485, 0.456, 0.406], "normalization mean (RGB)")
    std: list = option([0.229, 0.224, 0.225], "normalization std (RGB)")


@register_section("model")
@dataclasses.dataclass
class ModelConfig:
    name: str = option("resnet50", "timm architecture name")
    pretrained_file: Optional[str] = option(None, "local weights (safetensors or state dict); 'auto' finds shipped ones", path=True)
    drop_rate: float = option(0.0, "dropout before the classifier")
    channels_last: bool = option(False, "use channels_last memory format")


@register_section("optim")
@dataclasses.dataclass
class OptimConfig:
    name: str = option("sgd", "optimizer", choices=("sgd", "adamw", "adam"))
    lr: float = option(0.01, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(False, "SGD Nesterov momentum")
    weight_decay: float = option(5e-4, "weight decay")
    betas: list = option([0.9, 0.999], "Adam/AdamW betas")
    backbone_lr_scale: float = option(1.0, "learning-rate factor of pretrained backbone vs new head")
    freeze_through: str = option("", "name of a submodule of the timm model (e.g. blocks.3); its parameters and "
                                 "every one registered before it keep their loaded values ('' = none)")


@register_section("schedule")
@dataclasses.dataclass
class ScheduleConfig:
    name: str = option("cosine", "learning-rate schedule", choices=("cosine", "onecycle", "constant"))
    warmup_epochs: float = option(0.0, "linear warm-up length (cosine)")
    min_lr_ratio: float = option(0.0, "final lr / peak lr (cosine)")
    pct_start: float = option(0.25, "fraction of steps rising (onecycle)")


@register_section("train")
@dataclasses.dataclass
class TrainConfig:
    epochs: int = option(10, "training epochs")
    iterations_per_epoch: int = option(0, "iterations per epoch (0 = one pass over the data)")
    seed: int = option(0, "seeds Python, NumPy, torch, sampling and augmentation")
    label_smoothing: float = option(0.0, "cross-entropy label smoothing")
    grad_clip: float = option(0.0, "clip gradient norm (0 = off)")
    accelerator: str = option("auto", "cpu | cuda | auto")
    devices: str = option("1", "number of devices (or 'auto')")
    num_nodes: int = option(1, "number of nodes")
    strategy: str = option("auto", "auto | ddp | ddp_spawn (FSDP is not offered: checkpoints gather the whole "
                                   "state on rank 0)", choices=("auto", "ddp", "ddp_spawn"))
    precision: str = option("32-true", "32-true | bf16-mixed | 16-mixed | bf16-true")
    keep_freed_memory: bool = option(True, "on a CPU, keep freed memory in the process (glibc mallopt) instead of "
                                           "returning it to the kernel and faulting it back in every step (~10 % of a "
                                           "one-thread data-free run's time on 2 cores); the process keeps its peak "
                                           "memory (finegrain/engine/cpu_memory.py)")
    sync_batchnorm: bool = option(False, "synchronise BatchNorm statistics across processes")
    compile: bool = option(False, "torch.compile the model")
    out_dir: str = option("runs", "where run folders go", path=True)
    run_name: Optional[str] = option(None, "run folder name (default: <method>-<model>-<time>)")
    eval_every: int = option(1, "evaluate on val every N epochs (0 = only at the end)")
    checkpoint_every_steps: int = option(0, "also checkpoint every N optimizer iterations (0 = per epoch only)")
    keep_last: int = option(2, "how many recent checkpoints to keep")
    keep_model: str = option("last", "the run's exported model.safetensors: the last epoch's, or the best epoch's "
                                     "by val top-1 (needs a val split or data.val_fraction; never the test split)",
                             choices=("last", "best"))
    stop_after_steps: int = option(0, "end this invocation with a checkpoint once the global step reaches N (time-limited jobs; 0 = off)")
    max_minutes: float = option(0.0, "wall-clock limit of this invocation, counted from the start of fit (set-up "
                                     "included): once it has passed, training ends after the current iteration and the "
                                     "run evaluates, tests and exports the model it has, as if that were its last epoch "
                                     "(a checkpoint first: --resume auto continues the schedule); 0 = off")
    budget_minutes: float = option(0.0, "time budget of the run (set-up, training and evaluation): after a few "
                                        "timed iterations the run sizes its schedule, learning rate included, to "
                                        "end on time, then sizes it again at each epoch's end from that epoch's "
                                        "step times and its measured val pass; "
                                        "the length is kept in checkpoints, so --resume continues it; 0 = the "
                                        "fixed schedule of train.epochs (finegrain/engine/budget.py)")
    nan_policy: str = option("stop", "on a non-finite loss: stop or skip the step", choices=("stop", "skip"))
    log_every: int = option(20, "log training losses every N iterations")


@register_section("method")
@dataclasses.dataclass
class MethodConfig:
    name: str = option("supervised", "training method (see `finegrain methods`)")


#: the sections every run reads, whatever its method
CORE_SECTIONS = ("data", "model", "optim", "schedule", "train", "method")


# -------------------------------------------------------------------------------------- the config
class Config:
    """All sections, each a dataclass instance: ``cfg.optim.lr``.

    Until :meth:`bind` every known section is there (so any YAML or saved run loads); after it,
    only the core sections and the bound method's, which is all ``to_dict`` and attribute access
    see.
    """

    def __init__(self, sections: dict[str, Any] | None = None):
        self._sections = {name: cls() for name, cls in SECTIONS.items()}
        if sections:
            self._sections.update(sections)
        self._overridden: dict[str, tuple[str, str]] = {}  # section -> (first dotted key, its source)
        self._bound: tuple[str, tuple[str, ...]] | None = None  # (method, sections it reads)

    def __getattr__(self, name: str):
        sections = self.__dict__.get("_sections", {})
        bound = self.__dict__.get("_bound")
        if name in sections and bound is not None and name not in bound[1]:
            raise AttributeError(f"method {bound[0]!r} does not read config section {name!r} "
                                 f"(add it to the method's config_sections if it should)")
        if name in sections:
            return sections[name]
        raise AttributeError(f"config has no section {name!r}")

    def to_dict(self) -> dict:
        kept = self._bound[1] if self._bound else tuple(self._sections)
        return {name: dataclasses.asdict(sec) for name, sec in self._sections.items() if name in kept}

    def bind(self, method: str, method_sections: tuple[str, ...]) -> "Config":
        """Keep the core sections and ``method_sections``: the config of one run of ``method``.

        A command-line override (:meth:`override`) of another section is an error: it would do
        nothing. Values that files set in other sections are dropped silently. Binding again (to
        another method) starts from all sections. Also checks keys that are only wrong together.
        """
        reads = tuple(dict.fromkeys((*CORE_SECTIONS, *method_sections)))
        for section, (dotted, source) in self._overridden.items():
            if section not in reads:
                raise ConfigError(f"{dotted}: method {method!r} does not read section {section!r} "
                                  f"(it reads: {', '.join(reads)}; set by {source})")
        self._bound = (method, reads)
        _check_keep_model(self)
        _check_time_limits(self)
        return self

    def copy(self) -> "Config":
        return Config.from_dict(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>", base_dir: Path | None = None) -> "Config":
        cfg = cls()
        cfg.update(data, source, base_dir)
        return cfg

    def update(self, data: dict, source: str, base_dir: Path | None = None) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(data).__name__}")
        for section_name, values in data.items():
            if section_name not in self._sections:
                raise ConfigError(
                    f"{source}: unknown config section {section_name!r}; known: {', '.join(sorted(self._sections))}"
                )
            if values is None:
                continue
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {section_name!r} must be a mapping of keys")
            for key, value in values.items():
                self.set(f"{section_name}.{key}", value, source, base_dir)

    def override(self, dotted: str, value: Any, source: str = "<override>", base_dir: Path | None = None) -> None:
        """:meth:`set`, remembered as the user's: :meth:`bind` refuses it for a method that does not read it."""
        self.set(dotted, value, source, base_dir)
        self._overridden.setdefault(dotted.partition(".")[0], (dotted, source))

    def set(self, dotted: str, value: Any, source: str = "<override>", base_dir: Path | None = None) -> None:
        dotted = RENAMED.get(dotted, dotted)
        if _retired(dotted, value, source):
            return
        section_name, _, key = dotted.partition(".")
        if section_name not in self._sections or not key:
            raise ConfigError(
                f"{source}: unknown config key {dotted!r}; sections: {', '.join(sorted(self._sections))}"
            )
        section = self._sections[section_name]
        fields = {f.name: f for f in dataclasses.fields(section)}
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown config key {dotted!r}; known keys of {section_name!r}: {', '.join(fields)}"
            )
        hints = typing.get_type_hints(type(section))
        value = _coerce(value, hints[key], dotted, source)
        meta = fields[key].metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{source}: {dotted}={value!r} is not one of {', '.join(map(str, meta['choices']))}")
        if meta.get("path") and isinstance(value, str) and base_dir is not None and value != "auto":
            value = str((base_dir / Path(value).expanduser()))
        setattr(section, key, value)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the field type; accept ints for floats and YAML's null for Optional."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key, source)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if hint in (list, dict) or origin in (list, dict):
        expected = origin or hint
        if not isinstance(value, expected):
            raise ConfigError(f"{source}: {key} must be a {expected.__name__}, got {value!r}")
        return value
    if hint in (int, float, str, bool):
        if type(value) is not hint:
            raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r} ({type(value).__name__})")
        return value
    return value


# The method sections too, so every Config knows every section. method_config is light (no torch) and
# imports only config_fields, so this is no import circle.
from finegrain import method_config  # noqa: E402,F401  (registers the method sections)

# The core sections first in SECTIONS (so in `finegrain configs --keys` and config.yaml), whichever
# module a process happened to import first.
SECTIONS.update({name: SECTIONS.pop(name) for name in [n for n in SECTIONS if n not in CORE_SECTIONS]})


def _check_keep_model(cfg: Config) -> None:
    """Picking the exported model by the test split would report a test score chosen on the test set."""
    data, train = cfg._sections["data"], cfg._sections["train"]
    if train.keep_model == "best" and data.val_split and data.val_split == data.test_split:
        raise ConfigError(f"train.keep_model=best: data.val_split={data.val_split!r} is the test split; "
                          f"keep the best epoch by a real val split or data.val_fraction of train")


def _check_time_limits(cfg: Config) -> None:
    """A negative limit or budget would end every run after its first iteration without saying why."""
    train = cfg._sections["train"]
    for key in ("max_minutes", "budget_minutes"):
        minutes = getattr(train, key)
        if minutes < 0:
            raise ConfigError(f"train.{key}={minutes!r}: must be >= 0 (0 = no limit)")


def parse_override(text: str) -> tuple[str, Any]:
    """``optim.lr=0.01`` -> ("optim.lr", 0.01); the value is read as YAML (numbers, bools, lists)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *, strict: bool = True) -> Config:
    """Defaults <- YAML file <- ``key=value`` overrides. Paths resolve against the YAML's folder.

    ``strict``: an override of a section the run's method does not read is an error at
    :meth:`Config.bind`; ``False`` for scripts that hand one list of overrides to several methods.
    """
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            first = str(err).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML ({first})") from None
        cfg.update(data, str(path), path.resolve().parent)
    for text in overrides or []:
        key, value = parse_override(text)
        (cfg.override if strict else cfg.set)(key, value, f"override {text!r}", Path.cwd())
    return cfg


def describe_sections(sections: tuple[str, ...] | None = None) -> list[tuple[str, str, Any, str]]:
    """(key, type, default, doc) rows for documentation and `finegrain configs --keys`: of every
    section, or of ``sections`` (a method's: ``finegrain.methods.sections_of(name)``)."""
    rows = []
    for name, cls in SECTIONS.items():
        if sections is not None and name not in sections:
            continue
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{name}.{f.name}", getattr(hints[f.name], "__name__", str(hints[f.name])), default, f.metadata.get("doc", "")))
    return rows
