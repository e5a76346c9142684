"""Keep freed host memory in the process (glibc malloc), so XLA's CPU buffers are not page-faulted
in again on every step.

XLA's CPU runtime allocates each execution's temporaries (about 1.5 GB for the CNN's train step at
batch 32 and 200x200) with malloc and frees them when the step ends. glibc serves such blocks from
fresh mmap'd pages and unmaps them on free, so every step pays ~350,000 page faults and the kernel
zeroes every page: about a third of the step's time on this project's 2-core machine (perf: 30% of
samples in the kernel). TensorFlow's CPU kernels pay the same tax. Three mallopt settings stop it:
one arena (worker threads would otherwise get size-capped arenas that fall back to mmap), no mmap for
large blocks, and no trimming of the heap's free top below 2 GiB.

The cost: the process keeps its peak heap instead of returning it to the OS. Entry points that train
or evaluate call `keep_freed_memory()` first thing; set ARTJAX_KEEP_FREED_MEMORY=0 to opt out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
_INT_MAX = 2**31 - 1  # mallopt takes a C int


def keep_freed_memory() -> bool:
    """Apply the settings above; True when they took effect (Linux with glibc and not opted out).

    Call it before JAX starts its CPU backend: threads that already own an arena keep it."""
    if os.environ.get("ARTJAX_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _INT_MAX))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
