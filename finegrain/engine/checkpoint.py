"""Checkpoints that load without unpickling code and are never half-written.

A checkpoint is three files with one stem:
  ``<stem>.safetensors``  the method's tensors (networks, heads, queues, generator …)
  ``<stem>.state.pt``     optimizer/scheduler states, RNG states, loop position; tensors and plain
                          containers only, read with ``torch.load(weights_only=True)``
  ``<stem>.json``         the sidecar: architecture, class names, preprocessing, config, epoch,
                          metrics, the environment (``finegrain env``), sizes of the other two
                          files. Written last: no sidecar, no checkpoint.
Each file goes to a temporary name and is renamed into place, so a crash leaves the previous
checkpoint intact.

The state saved is whole and written by rank 0 alone: right for one process and for DDP (every
rank holds the same weights), wrong for a strategy that shards them, which is why FSDP is not
offered (``train.strategy``; docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from finegrain.environment import facts as environment_facts
from finegrain.errors import CheckpointError

FORMAT_VERSION = 1


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=_jsonable)))


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    # safetensors refuses shared or strided storage: give each tensor its own contiguous copy.
    plain = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(plain, str(tmp), metadata=metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint tensors missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({str(err).splitlines()[0]})") from None


def rng_state() -> dict[str, Any]:
    _, keys, pos, _, _ = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64)),
             "numpy_pos": int(pos), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, stem: str, tensors: dict[str, torch.Tensor], train_state: dict,
                    meta: dict) -> Path:
    """Write a full checkpoint; returns the sidecar path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensor_path = directory / f"{stem}.safetensors"
    state_path = directory / f"{stem}.state.pt"
    save_tensors(tensor_path, tensors)
    atomic_write(state_path, lambda tmp: torch.save(train_state, tmp))
    meta = dict(meta, environment=environment_facts(), format_version=FORMAT_VERSION,
                files={"tensors": tensor_path.name, "state": state_path.name},
                sizes={"tensors": tensor_path.stat().st_size, "state": state_path.stat().st_size})
    sidecar = directory / f"{stem}.json"
    write_json(sidecar, meta)
    return sidecar


def read_sidecar(path: Path) -> dict:
    path = Path(path)
    if path.suffix != ".json":
        path = path.with_name(path.name.removesuffix(".safetensors").removesuffix(".state.pt") + ".json")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint sidecar not found")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: sidecar is not valid JSON ({err})") from None
    for key in ("architecture", "class_names"):
        if key not in meta:
            raise CheckpointError(f"{path}: sidecar lacks {key!r}")
    meta["_path"] = str(path)
    return meta


def verify_files(meta: dict) -> None:
    """Catch a truncated file before anything is loaded from it."""
    base = Path(meta["_path"]).parent
    for kind, name in meta.get("files", {}).items():
        file = base / name
        if not file.is_file():
            raise CheckpointError(f"{file}: checkpoint file missing")
        expected = meta.get("sizes", {}).get(kind)
        if expected is not None and file.stat().st_size != expected:
            raise CheckpointError(f"{file}: truncated checkpoint ({file.stat().st_size} bytes, expected {expected})")


def load_checkpoint(sidecar: Path, *, with_state: bool = True) -> tuple[dict, dict[str, torch.Tensor], dict | None]:
    """(meta, tensors, train_state) of a checkpoint, each verified."""
    meta = read_sidecar(sidecar)
    verify_files(meta)
    base = Path(meta["_path"]).parent
    tensors = load_tensors(base / meta["files"]["tensors"])
    state = None
    if with_state and "state" in meta.get("files", {}):
        state_path = base / meta["files"]["state"]
        try:
            state = torch.load(str(state_path), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unsafe or corrupt: refuse either way
            raise CheckpointError(f"{state_path}: refused to load training state ({str(err).splitlines()[0]})") from None
    return meta, tensors, state


def list_checkpoints(directory: Path) -> list[Path]:
    """Sidecars in ``directory``, newest (highest global step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for sidecar in directory.glob("*.json"):
        try:
            step = json.loads(sidecar.read_text()).get("global_step", -1)
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            step = -1
        found.append((step, sidecar.stat().st_mtime, sidecar))
    return [p for _, _, p in sorted(found, reverse=True)]


def newest_valid(directory: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose files verify and load; also the reasons others were passed over."""
    problems = []
    for sidecar in list_checkpoints(directory):
        try:
            load_checkpoint(sidecar, with_state=True)
            return sidecar, problems
        except CheckpointError as err:
            problems.append(str(err))
    return None, problems


def prune(directory: Path, keep: int, protect: set[str] = frozenset()) -> None:
    """Delete all but the ``keep`` newest checkpoints (sidecar first, so none is left half-valid)."""
    for sidecar in list_checkpoints(directory)[max(1, keep):]:
        if sidecar.name in protect:
            continue
        stem = sidecar.name.removesuffix(".json")
        sidecar.unlink(missing_ok=True)
        for suffix in (".safetensors", ".state.pt"):
            (sidecar.parent / f"{stem}{suffix}").unlink(missing_ok=True)


def check_compatible(meta: dict, architecture: str, class_names: list[str]) -> None:
    """A checkpoint resumed or evaluated must match the model asked for; say what differs."""
    path = meta.get("_path", "checkpoint")
    if meta["architecture"] != architecture:
        raise CheckpointError(f"{path}: architecture {meta['architecture']!r} does not match {architecture!r}")
    if list(meta["class_names"]) != list(class_names):
        theirs, ours = meta["class_names"], list(class_names)
        if len(theirs) != len(ours):
            detail = f"{len(theirs)} classes vs {len(ours)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
            detail = f"class {i} is {theirs[i]!r} there, {ours[i]!r} here"
        raise CheckpointError(f"{path}: class list does not match the data ({detail})")
