"""The software and hardware a process runs on, as one plain dict.

``finegrain env`` prints it and every checkpoint sidecar stores it, so that a number in a run folder
can be traced to the library versions and devices that produced it (a result that moves between
two runs is often a torch or timm upgrade, or a CPU run mistaken for a GPU one).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("torch", "torchvision", "timm", "lightning")


def package_version(name: str) -> str | None:
    """Installed version from the package metadata (no import), None when not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cuda_facts() -> dict:
    """CUDA as torch sees it. Device names are read only when CUDA is already in use or asked for
    by ``finegrain env``: reading them starts a CUDA context, which a CPU run should not pay for."""
    import torch

    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    names = [torch.cuda.get_device_name(i) for i in range(count)] if available and torch.cuda.is_initialized() else []
    return {"cuda_available": available, "cuda_version": torch.version.cuda, "cuda_device_count": count,
            "cuda_devices": names}


def facts(probe_devices: bool = False) -> dict:
    """Python, library versions, CUDA and its devices, threads. ``probe_devices`` names the CUDA
    devices even when this process has not used CUDA yet (``finegrain env`` does)."""
    import torch

    if probe_devices and torch.cuda.is_available():
        torch.cuda.init()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: package_version(name) for name in PACKAGES},
        **cuda_facts(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
