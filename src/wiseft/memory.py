"""Allocator settings for this kind of VM, where freshly mapped memory is expensive.

glibc serves large allocations (above a dynamic threshold that starts at 128 KiB) with fresh `mmap`
pages and returns them on `free`; every new tensor of a sampling or training step then page-faults
anew. Raising the mmap threshold to its maximum (32 MiB on 64-bit) and keeping freed heap memory
(large trim threshold and top pad) lets torch reuse the same pages step after step. The settings go
together: the threshold alone, or the other two alone, is slower (bench/RESULTS.md has the figures). The
CLI applies them for the commands that move model-sized memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 256 << 20}
ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def tune_allocator(heap_only: bool = False) -> bool:
    """Apply SETTINGS through glibc's `mallopt`; return whether it was applied.

    `heap_only` also serves allocations above the mmap threshold from the heap (`M_MMAP_MAX` = 0), so
    that they too keep their pages once freed. For a process that frees and allocates the same large
    buffers again and again, which the threshold cannot cover (it stops at 32 MiB): a vLLM-CPU worker
    rebuilds its GEMM kernels' packed weights (up to a vocabulary's worth, hundreds of MiB) on every
    variant switch. The heap then holds what the process once used at its peak until it exits.

    Does nothing when the user set any MALLOC_* variable of ours (their choice wins), on a libc other
    than glibc, or when WISEFT_NO_MALLOC_TUNING is set.
    """
    if os.environ.get("WISEFT_NO_MALLOC_TUNING") or any(v in os.environ for v in ENV):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    settings = {**SETTINGS, M_MMAP_MAX: 0} if heap_only else SETTINGS
    return all(mallopt(param, value) == 1 for param, value in settings.items())


def _mallopt():
    """glibc's `mallopt`, or None on another libc."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt
