"""Keep freed host memory in the process (glibc malloc), so XLA's CPU buffers are not page-faulted
in again on every step.

XLA's CPU runtime allocates each execution's temporaries (about 1.5 GB for the CNN's train step at
batch 32 and 200x200) with malloc and frees them when the step ends. glibc serves such blocks from
fresh mmap'd pages and unmaps them on free, so every step pays hundreds of thousands of page faults
and the kernel zeroes every page (BENCHMARKS.md: a large share of a CPU step). TensorFlow's CPU
kernels pay the same tax. Three mallopt settings stop it:
one arena (worker threads would otherwise get size-capped arenas that fall back to mmap), no mmap
for large blocks, and no trimming of the heap's free top (a 2 GiB threshold was not enough: the
training loop's heap peaks over 2 GiB above its resting size and was trimmed, then faulted in again,
every step).

Order matters: glibc fixes its arena limit the first time a second thread allocates, and importing
TensorFlow starts threads, so a later M_ARENA_MAX is ignored (page faults stayed in every step of
`artjax.train` when the call came after the imports). Entry points therefore call
`keep_freed_memory()` before importing TensorFlow or JAX, and it also exports the same settings as
GLIBC_TUNABLES, which child processes (the benchmark's spawned workers) apply from their first
instruction.

The cost: the process keeps its peak heap instead of returning it to the OS. Set
ARTJAX_KEEP_FREED_MEMORY=0 to opt out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (glibc malloc.h); (parameter, mallopt value, tunable name, tunable value)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
_SETTINGS = (
    (M_ARENA_MAX, 1, "glibc.malloc.arena_max", 1),
    (M_MMAP_MAX, 0, "glibc.malloc.mmap_max", 0),
    # mallopt's -1 becomes SIZE_MAX: never trim (man mallopt)
    (M_TRIM_THRESHOLD, -1, "glibc.malloc.trim_threshold", 2**64 - 1),
)


def keep_freed_memory() -> bool:
    """Apply the settings above to this process and its future children; True when they took effect
    here (Linux with glibc and not opted out). Call it before importing TensorFlow or JAX."""
    if os.environ.get("ARTJAX_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    tunables = [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t]
    ours = {name for _, _, name, _ in _SETTINGS}
    tunables = [t for t in tunables if t.split("=")[0] not in ours]  # ours replace earlier values
    os.environ["GLIBC_TUNABLES"] = ":".join(
        tunables + [f"{name}={value}" for _, _, name, value in _SETTINGS]
    )
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return all(libc.mallopt(param, value) == 1 for param, value, _, _ in _SETTINGS)
