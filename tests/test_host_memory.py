"""keep_freed_memory: a freed large block is reused without page faults (glibc's default re-maps it)."""

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
from artjax import host_memory
kept = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else False
block = b"x" * 300_000_000  # malloc + write: touches every page
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = b"y" * 300_000_000
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_a_freed_block_is_reused_without_page_faults():
    pages = 300_000_000 // 4096
    kept, faults = _faults("keep")
    assert kept and faults < pages // 20
    default_kept, default_faults = _faults("default")
    assert not default_kept and default_faults > pages // 2  # glibc's default: every page again
    opted_out, opted_out_faults = _faults("keep", ARTJAX_KEEP_FREED_MEMORY="0")
    assert not opted_out and opted_out_faults > pages // 2
