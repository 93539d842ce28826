"""Keep freed memory inside a CPU training process (glibc) instead of handing it back to the kernel.

Why: every training step allocates and frees the same activation buffers. By default glibc
returns large freed blocks to the kernel (blocks above its mmap threshold are unmapped, and the
top of the heap is trimmed), so the next step faults the same memory back in, page by page, each
page zeroed by the kernel. On the project's 2-core machine a short one-thread DFKD-FGVC run
(EfficientNet-Lite0 teacher and student, 128 px, batch 16; ``finegrain distill``, 10 warm-up
steps, 8 iterations of k = 4, val evaluation) took 3.8 million page faults, 13 s of kernel time
and 92 s in all; with the three settings below, 0.5-0.7 million, 2.5-3 s and 79-83 s (two runs;
the machine's own noise is a few seconds). PyTorch's CPU performance notes suggest
jemalloc or tcmalloc for the same reason; these glibc settings get the effect without a
preloaded library.

Cost: the process keeps the memory of its peak step until it exits. ``train.keep_freed_memory``
(default on) switches it; a ``MALLOC_*`` environment variable set by the user wins (nothing is
changed then), and on a C library without ``mallopt`` (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt(3) parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: blocks up to this size come from the heap, not a fresh mmap (glibc's own upper bound on 64-bit)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: never trim the heap's top back to the kernel (the largest int mallopt takes)
TRIM_THRESHOLD = 2**31 - 1
#: grow the heap in 64 MiB steps, not page by page
TOP_PAD = 64 * 1024 * 1024


def user_tuned_malloc() -> bool:
    """True when the user already chose glibc malloc settings through the environment."""
    return any(name.startswith("MALLOC_") for name in os.environ) or "GLIBC_TUNABLES" in os.environ


def keep_freed_memory() -> bool:
    """Apply the settings to this process; True when they took, False when left alone."""
    if os.name != "posix" or user_tuned_malloc():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library by that name, or one without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
