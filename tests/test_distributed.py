"""Two CPU processes over gloo behave like one process with the doubled batch.

Each distributed run is a real ``python -m finegrain train`` subprocess: Fabric's launcher re-runs
the command line for rank 1, which cannot be done from inside pytest. The model is
``test_efficientnet_gn`` (GroupNorm): its normalization is per sample, so a batch split over two
processes gives the same losses as the whole batch in one. A BatchNorm model would need
``train.sync_batchnorm``, which torch runs on GPUs only (tested below to fail clearly on CPU).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from finegrain.engine.loop import fit

GN_MODEL = "test_efficientnet_gn"
TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict:
    """The test's environment without any distributed variables a CI runner may have set."""
    drop = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "GROUP_RANK",
            "TORCHELASTIC_RUN_ID", "PL_GLOBAL_SEED")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def train_args(root: Path, out: Path, name: str, batch: int, method: str = "supervised", *extra,
               overrides=()) -> list[str]:
    """Flags first, ``key=value`` overrides last (argparse reads the overrides as one positional run)."""
    return ["train", "--method", method, "--data", str(root), "--out", str(out), "--name", name, "--epochs", "1",
            "--accelerator", "cpu", *extra, f"model.name={GN_MODEL}", "data.image_size=32", f"data.batch_size={batch}",
            "data.eval_batch_size=4", "data.num_workers=0", "train.log_every=1", "optim.weight_decay=0.0", *overrides]


def run(cmd: list[str], env=None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env or clean_env())
    return result


def finegrain_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "finegrain", *args]


def metric_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def first_step(run_dir: Path) -> dict:
    row = next(r for r in metric_rows(run_dir) if r["step"] == "1" and r.get("train/loss"))
    return {k: float(v) for k, v in row.items() if k.startswith("train/") and v}


def assert_one_checkpoint_set(run_dir: Path, stems: list[str]) -> None:
    """Rank 0 alone writes: exactly the expected files, no leftovers of a second writer."""
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    expected = sorted(f"{s}{suffix}" for s in stems for suffix in (".json", ".safetensors", ".state.pt"))
    assert names == expected


def single_process_run(root: Path, out: Path, batch: int, method: str = "supervised", **overrides) -> Path:
    cfg = tiny_config(root, out, **{"train.epochs": 1, "model.name": GN_MODEL, "data.batch_size": batch,
                                    "method.name": method, **overrides})
    return Path(fit(cfg)["run_dir"])


def ddp_run(root: Path, tmp_path: Path, method: str) -> Path:
    """2 processes x batch 2 on 24 images: 6 steps, one end-of-epoch checkpoint written by rank 0."""
    out = tmp_path / "runs"
    result = run(finegrain_cmd(*train_args(root, out, "ddp", 2, method, "--devices", "2", "--strategy", "ddp")))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = out / "ddp"
    assert_one_checkpoint_set(run_dir, ["ckpt-e001-s00000006"])
    assert result.stdout.count("2 process(es)") == 1, "only rank 0 prints and logs"
    # Evaluation counts every test image once even though 9 images do not split evenly over 2 ranks.
    assert json.loads((run_dir / "eval_test.json").read_text())["n"] == 9
    assert len([r for r in metric_rows(run_dir) if r.get("train/loss")]) == 6
    return run_dir


def mismatches(distributed: dict, single: dict) -> list[str]:
    assert distributed.keys() == single.keys()
    return [f"{k}: {distributed[k]:.6g} (2x2) vs {single[k]:.6g} (1x4)" for k in single
            if distributed[k] != pytest.approx(single[k], rel=1e-4, abs=1e-5)]


def test_ddp_two_processes_match_one_process_with_double_batch(imagefolder, tmp_path):
    run_dir = ddp_run(imagefolder, tmp_path, "supervised")
    single = single_process_run(imagefolder, tmp_path / "single", 4)
    assert not mismatches(first_step(run_dir), first_step(single))


def test_ddp_csdnet(imagefolder, tmp_path):
    from finegrain import methods

    if "csdnet" not in {info.name for info in methods.available()}:
        pytest.skip("the csdnet method is not registered in this checkout")
    run_dir = ddp_run(imagefolder, tmp_path, "csdnet")
    single = single_process_run(imagefolder, tmp_path / "single", 4, "csdnet")
    # The memory queue is gathered from both ranks: after one epoch it holds exactly the labels the
    # single-process run enqueued (24 images x 2 views = capacity 48), not rank 0's half.
    ddp_queue = load_file(str(run_dir / "checkpoints" / "ckpt-e001-s00000006.safetensors"))
    one_queue = load_file(str(next((single / "checkpoints").glob("*.safetensors"))))
    assert int(ddp_queue["queue.filled"]) == int(one_queue["queue.filled"]) == 48
    assert torch.equal(ddp_queue["queue.labels"].sort().values, one_queue["queue.labels"].sort().values)
    # In-batch keys are gathered across ranks and the views are drawn per global sample, so the
    # first step's loss terms equal those of one process with the doubled batch.
    assert not mismatches(first_step(run_dir), first_step(single))


def test_torchrun_launch_is_not_respawned(imagefolder, tmp_path):
    """Under torchrun Fabric sees TorchElastic's variables and must not start processes of its own."""
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "finegrain",
           *train_args(imagefolder, out, "torchrun", 2, "supervised", "--devices", "2", "--strategy", "ddp")]
    result = run(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("2 process(es)") == 1
    assert_one_checkpoint_set(out / "torchrun", ["ckpt-e001-s00000006"])


def test_slurm_environment_is_used(imagefolder, tmp_path):
    """Two tasks started as ``srun`` would start them: SLURM_* variables, no launcher of ours."""
    out = tmp_path / "runs"
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = clean_env()
        env.update(SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_NNODES="1", SLURM_PROCID=str(rank),
                   SLURM_LOCALID=str(rank), SLURM_NODEID="0", SLURM_JOB_NAME="finegrain-test", SLURM_JOB_ID="4242",
                   SLURM_NODELIST="127.0.0.1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        cmd = finegrain_cmd(*train_args(imagefolder, out, "slurm", 2, "supervised", "--devices", "2", "--strategy", "ddp"))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
    assert outputs[0][0].count("2 process(es)") == 1 and "process(es)" not in outputs[1][0]
    assert_one_checkpoint_set(out / "slurm", ["ckpt-e001-s00000006"])


def test_sync_batchnorm_on_cpu_is_a_clear_error(imagefolder, tmp_path):
    args = train_args(imagefolder, tmp_path / "runs", "sync", 2, "supervised", "--devices", "2", "--strategy", "ddp",
                      overrides=["train.sync_batchnorm=true"])
    result = run(finegrain_cmd(*args))
    assert result.returncode != 0
    assert "train.sync_batchnorm=true needs GPUs" in result.stderr and "Traceback" not in result.stderr


SLOW_DRIVER = """import sys, time
from finegrain.methods.supervised import Supervised
step = Supervised.step
Supervised.step = lambda self, phase, batch: (time.sleep(0.5), step(self, phase, batch))[1]
from finegrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_to_rank_0_stops_every_rank_with_one_checkpoint(imagefolder, tmp_path):
    """Only the launching process gets the signal (``kill PID``); both ranks must stop at the same
    step, or rank 1 would wait forever in its next all-reduce. Resuming then ends where a
    one-process batch-4 run ends (GroupNorm: the two runs are the same computation)."""
    driver = tmp_path / "slow_driver.py"  # a file, not -c: Fabric re-runs this command line for rank 1
    driver.write_text(SLOW_DRIVER)
    out = tmp_path / "runs"
    # A small learning rate: at tiny_config's 0.05 this model diverges, and chaos would amplify the
    # last-bit differences between a 2-rank gradient average and a one-batch gradient.
    launch = ("--devices", "2", "--strategy", "ddp")
    args = train_args(imagefolder, out, "ddp", 2, "supervised", *launch, overrides=["optim.lr=0.005"])
    proc = subprocess.Popen([sys.executable, str(driver), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=clean_env())
    deadline = time.time() + TIMEOUT
    while not ((out / "ddp" / "metrics.csv").is_file() and len(metric_rows(out / "ddp")) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:] if proc.poll() else "timeout"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopped by SIGTERM at step" in stderr and "Traceback" not in stderr
    sidecars = sorted((out / "ddp" / "checkpoints").glob("*.json"))
    assert len(sidecars) == 1 and json.loads(sidecars[0].read_text())["global_step"] < 6

    result = run(finegrain_cmd(*train_args(imagefolder, out, "ddp", 2, "supervised", *launch, "--resume", "auto",
                                           overrides=["optim.lr=0.005"])))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from {sidecars[0]}" in result.stdout
    single = single_process_run(imagefolder, tmp_path / "single", 4, **{"optim.lr": 0.005})
    ddp, one = load_file(str(out / "ddp" / "model.safetensors")), load_file(str(single / "model.safetensors"))
    assert ddp.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


def test_impossible_device_settings_are_config_errors():
    from finegrain.config import Config
    from finegrain.engine.loop import make_fabric
    from finegrain.errors import ConfigError

    cfg = Config()
    cfg.train.accelerator = "cuda" if not torch.cuda.is_available() else "mps"
    with pytest.raises(ConfigError, match=r"train\.accelerator/devices/num_nodes/strategy/precision: .*not available"):
        make_fabric(cfg.train)


def test_torchrun_world_that_does_not_match_devices_is_one_line(imagefolder, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "finegrain",
           *train_args(imagefolder, tmp_path / "runs", "bad", 2, "supervised", "--devices", "3", "--strategy", "ddp")]
    result = run(cmd)
    # torchrun adds its own report of failed workers; the workers themselves print one line each.
    assert result.returncode != 0 and "lightning/fabric" not in result.stderr and "finegrain/engine" not in result.stderr
    assert "train.devices/num_nodes: You set `devices=3` and `num_nodes=1`" in result.stderr
