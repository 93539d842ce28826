"""Work survives crashes and signals, and no input file gets to run code.

Killed runs are real ``finegrain train`` subprocesses. To be sure the kill lands mid-epoch, the
subprocess is started through a two-line driver that slows every training step down by a sleep;
a sleep changes no number, so the resumed run must end with exactly the weights of an
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_imagefolder, tiny_config
from finegrain.engine import checkpoint as ckpt
from finegrain.engine.loop import fit
from finegrain.errors import CheckpointError, ConfigError

TIMEOUT = 120
SLOW_DRIVER = (
    "import sys, time\n"
    "from finegrain.methods.supervised import Supervised\n"
    "step = Supervised.step\n"
    "Supervised.step = lambda self, phase, batch: (time.sleep(float(sys.argv[1])), step(self, phase, batch))[1]\n"
    "from finegrain.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(root), "--out", str(out), "--name", "run", "--epochs", "2", "--accelerator", "cpu",
            "model.name=test_resnet", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
            "optim.lr=0.05", "optim.weight_decay=0.0", "train.log_every=1", *extra]


def finegrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finegrain", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env())


def start_slow(args: list[str], sleep: float = 0.4) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLOW_DRIVER, str(sleep), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def logged_steps(run_dir: Path) -> list[int]:
    import csv

    with open(run_dir / "metrics.csv", newline="") as handle:
        return [int(r["step"]) for r in csv.DictReader(handle) if r.get("train/loss")]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_imagefolder(tmp_path_factory.mktemp("faults") / "data")


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> dict[str, torch.Tensor]:
    """2 epochs x 6 steps, never stopped: the weights every interrupted run must end with."""
    out = tmp_path_factory.mktemp("whole")
    result = finegrain(*train_args(data, out))
    assert result.returncode == 0, result.stderr
    return weights(out / "run")


# ------------------------------------------------------------------------------ crashes and signals
def test_sigkill_mid_epoch_then_resume_auto_ends_with_the_same_weights(data, tmp_path, uninterrupted):
    out = tmp_path / "runs"
    ckpts = out / "run" / "checkpoints"
    proc = start_slow(train_args(data, out, "train.checkpoint_every_steps=2", "train.keep_last=3"))
    wait_for(lambda: (ckpts / "ckpt-e000-s00000004.json").is_file(), proc, "the step-4 checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "run" / "model.safetensors").exists(), "killed before the end"
    assert max(logged_steps(out / "run")) < 6, "killed inside epoch 1 of 6 steps"

    result = finegrain(*train_args(data, out), "--resume", "auto")
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stdout and "ckpt-e000-s00000004" in result.stdout
    assert logged_steps(out / "run") == list(range(1, 13)), "each step logged once after the resume"
    assert_same_weights(weights(out / "run"), uninterrupted)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_writes_a_checkpoint_and_resume_finishes_identically(sig, data, tmp_path, uninterrupted):
    out = tmp_path / "runs"
    proc = start_slow(train_args(data, out))
    wait_for(lambda: (out / "run" / "metrics.csv").is_file() and len(logged_steps(out / "run")) >= 2, proc,
             "two training steps")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"stopped by {sig.name} at step" in lines[0] and "Traceback" not in stderr
    written = Path(lines[0].split("checkpoint written: ")[1])
    assert written.is_file() and written.parent == out / "run" / "checkpoints"
    assert ckpt.newest_valid(written.parent) == (written, [])
    meta = json.loads(written.read_text())
    assert meta["global_step"] >= 2 and meta["epoch"] < 2

    result = finegrain(*train_args(data, out), "--resume", "auto")
    assert result.returncode == 0, result.stderr
    assert_same_weights(weights(out / "run"), uninterrupted)


# ----------------------------------------------------------------------- checkpoints that do not fit
@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    """A finished 2-epoch run with its checkpoints after epoch 1 and epoch 2 (trained once, in-process)."""
    out = tmp_path_factory.mktemp("finished") / "runs"
    fit(tiny_config(data, out, **{"train.epochs": 2}))
    return out


@pytest.fixture
def two_checkpoints(data, finished_run, tmp_path) -> tuple:
    """A private copy of ``finished_run`` that a test may damage: (config, newest, older sidecar)."""
    shutil.copytree(finished_run, tmp_path / "runs")
    cfg = tiny_config(data, tmp_path / "runs", **{"train.epochs": 2})
    newest, older = ckpt.list_checkpoints(tmp_path / "runs" / "run" / "checkpoints")
    assert "e002" in newest.name and "e001" in older.name
    return cfg, newest, older


def test_truncated_checkpoint_is_refused_and_resume_auto_uses_the_previous(two_checkpoints, capsys):
    cfg, newest, older = two_checkpoints
    tensors = newest.with_name(newest.name.replace(".json", ".safetensors"))
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"{tensors}: truncated checkpoint \(\d+ bytes, expected \d+\)"):
        fit(cfg, resume=str(newest))
    capsys.readouterr()
    cfg.train.epochs = 3
    summary = fit(cfg, resume="auto")
    printed = capsys.readouterr().out
    assert f"warning: passed over {tensors}: truncated checkpoint" in printed
    assert f"resumed from {older}" in printed
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]


def test_corrupt_checkpoint_of_the_right_size_is_refused(two_checkpoints):
    """The size check passes, so the loader itself must catch it."""
    cfg, newest, _ = two_checkpoints
    tensors = newest.with_name(newest.name.replace(".json", ".safetensors"))
    tensors.write_bytes(b"\xff" * tensors.stat().st_size)
    with pytest.raises(CheckpointError, match=rf"{tensors}: truncated or corrupt checkpoint"):
        fit(cfg, resume=str(newest))


def test_checkpoint_of_another_architecture_names_file_and_both(two_checkpoints):
    cfg, newest, _ = two_checkpoints
    cfg.model.name = "test_efficientnet"
    with pytest.raises(CheckpointError, match=rf"{newest}: architecture 'test_resnet' does not match 'test_efficientnet'"):
        fit(cfg, resume="auto")


def test_checkpoint_of_another_class_list_names_the_first_difference(two_checkpoints, tmp_path):
    cfg, newest, _ = two_checkpoints
    other = make_imagefolder(tmp_path / "other")
    for split in ("train", "val", "test"):
        (other / split / "class_1").rename(other / split / "class_1b")
    cfg.data.root = str(other)
    with pytest.raises(CheckpointError, match=rf"{newest}: class list does not match the data "
                                              r"\(class 1 is 'class_1' there, 'class_1b' here\)"):
        fit(cfg, resume="auto")


def test_cli_resume_of_a_truncated_checkpoint_is_one_line(two_checkpoints):
    cfg, newest, _ = two_checkpoints
    state = newest.with_name(newest.name.replace(".json", ".state.pt"))
    state.write_bytes(state.read_bytes()[:100])
    result = finegrain(*train_args(cfg.data.root, cfg.train.out_dir), "--resume", str(newest))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"finegrain train: error: {state}: truncated checkpoint "
                                                 f"(100 bytes, expected {json.loads(newest.read_text())['sizes']['state']})"]


# ---------------------------------------------------------------------------- inputs that run code
class Payload:
    """Unpickling this calls ``exec`` on code that writes ``marker``: what a hostile weights file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('owned')",))


def malicious_file(path: Path, marker: Path, legacy: bool = False) -> Path:
    torch.save({"conv.weight": torch.zeros(1), "extra": Payload(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_malicious_pickle_is_real_and_refused_as_weights(tmp_path, legacy):
    from finegrain.models import create_classifier
    from finegrain.models.pretrained import read_state_dict

    marker = tmp_path / "owned.txt"
    evil = malicious_file(tmp_path / "weights.pth", marker, legacy)
    torch.load(evil, weights_only=False)  # the control: full unpickling does run the payload
    assert marker.read_text() == "owned"
    marker.unlink()

    with pytest.raises(CheckpointError, match=rf"{evil}: cannot read weights safely"):
        read_state_dict(evil)
    with pytest.raises(CheckpointError, match=rf"{evil}: cannot read weights safely"):
        create_classifier("test_resnet", 3, pretrained_file=str(evil))
    disguised = evil.rename(tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match=rf"{disguised}: cannot read weights safely"):
        read_state_dict(disguised)
    assert not marker.exists()


def test_malicious_pickle_is_refused_through_the_cli(data, tmp_path):
    marker = tmp_path / "owned.txt"
    evil = malicious_file(tmp_path / "weights.pth", marker)
    result = finegrain(*train_args(data, tmp_path / "runs"), "--pretrained-file", str(evil))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and f"{evil}: cannot read weights safely" in result.stderr
    assert not marker.exists()


def test_malicious_training_state_is_refused_and_passed_over(two_checkpoints, tmp_path, capsys):
    cfg, newest, older = two_checkpoints
    marker = tmp_path / "owned.txt"
    state = newest.with_name(newest.name.replace(".json", ".state.pt"))
    malicious_file(state, marker)
    meta = json.loads(newest.read_text())
    meta["sizes"]["state"] = state.stat().st_size  # pass the size check: the loader itself must refuse
    newest.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=rf"{state}: refused to load training state"):
        ckpt.load_checkpoint(newest)
    with pytest.raises(CheckpointError, match=rf"{state}: refused to load training state"):
        fit(cfg, resume=str(newest))
    capsys.readouterr()
    cfg.train.epochs = 3
    fit(cfg, resume="auto")
    printed = capsys.readouterr().out
    assert f"passed over {state}: refused" in printed and f"resumed from {older}" in printed
    assert not marker.exists()


def test_yaml_config_cannot_construct_objects(tmp_path):
    from finegrain.config import load_config

    marker = tmp_path / "owned.txt"
    config = tmp_path / "evil.yaml"
    config.write_text(f"train:\n  epochs: !!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]\n")
    with pytest.raises(ConfigError, match=rf"{config}: not valid YAML"):
        load_config(config)
    assert not marker.exists()


def test_config_paths_resolve_against_the_config_file(tmp_path, monkeypatch):
    from finegrain.config import load_config

    folder = tmp_path / "configs"
    folder.mkdir()
    config = folder / "run.yaml"
    config.write_text("data:\n  root: ../datasets/cub\nmodel:\n  pretrained_file: weights/w.safetensors\n"
                      "train:\n  out_dir: runs\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config)
    assert Path(cfg.data.root).resolve() == (tmp_path / "datasets" / "cub").resolve()
    assert Path(cfg.model.pretrained_file) == folder / "weights" / "w.safetensors"
    assert Path(cfg.train.out_dir) == folder / "runs"
