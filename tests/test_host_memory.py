"""keep_freed_memory: a freed large block is reused without page faults (glibc's default re-maps
it), also for blocks over 2 GiB, and child processes inherit the setting (GLIBC_TUNABLES)."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, subprocess, sys
from artjax import host_memory
mode, size = sys.argv[1], int(sys.argv[2])
if mode == "parent":  # keep here, measure in a child that does not call keep_freed_memory itself
    host_memory.keep_freed_memory()
    sys.exit(subprocess.run([sys.executable, "-c", sys.argv[3], "child", sys.argv[2]]).returncode)
kept = host_memory.keep_freed_memory() if mode == "keep" else False
block = b"x" * size  # malloc + write: touches every page
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = b"y" * size
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


def _faults(mode: str, size: int, **env) -> tuple[bool, int]:
    env = {
        k: v for k, v in {**os.environ, **env}.items() if k != "GLIBC_TUNABLES"
    }  # conftest exports it
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(size), PROBE],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_a_freed_block_is_reused_without_page_faults():
    size = 300_000_000
    pages = size // 4096
    kept, faults = _faults("keep", size)
    assert kept and faults < pages // 20
    default_kept, default_faults = _faults("default", size)
    assert not default_kept and default_faults > pages // 2  # glibc's default: every page again
    opted_out, opted_out_faults = _faults("keep", size, ARTJAX_KEEP_FREED_MEMORY="0")
    assert not opted_out and opted_out_faults > pages // 2


def test_blocks_over_2_gib_are_kept_too():
    # A trim threshold of 2 GiB (mallopt's int maximum) let the training loop's heap be trimmed
    # every step; the setting must disable trimming altogether.
    size = 2_300_000_000
    kept, faults = _faults("keep", size)
    assert kept and faults < size // 4096 // 20


def test_child_processes_inherit_the_setting():
    size = 300_000_000
    _, faults = _faults("parent", size)
    assert faults < size // 4096 // 20
