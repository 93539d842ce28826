"""train.keep_freed_memory: a CPU training process keeps freed memory instead of faulting it back in."""

import os
import subprocess
import sys

import pytest

from finegrain.engine import cpu_memory
from finegrain.engine.loop import fit

#: a few forward/backward steps of a small conv net; prints the minor page faults of the timed steps
STEPS = """
import resource, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "keep":
    from finegrain.engine.cpu_memory import keep_freed_memory
    assert keep_freed_memory()
net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(32, 8, 3, padding=1))
x = torch.randn(8, 3, 64, 64)
def step():
    net(x).square().mean().backward()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_not_faulted_back_in_every_step():
    default, kept = page_faults("default"), page_faults("keep")
    assert kept * 3 < default, (kept, default)


def test_a_users_malloc_setting_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert cpu_memory.user_tuned_malloc()
    assert cpu_memory.keep_freed_memory() is False


@pytest.mark.parametrize("keep", [True, False])
def test_fit_on_the_cpu_applies_it_only_when_asked(tiny_cfg, monkeypatch, keep):
    calls = []
    monkeypatch.setattr("finegrain.engine.loop.keep_freed_memory", lambda: calls.append(1) or True)
    tiny_cfg.train.epochs, tiny_cfg.train.accelerator, tiny_cfg.train.keep_freed_memory = 1, "cpu", keep
    fit(tiny_cfg)
    assert calls == ([1] if keep else [])
