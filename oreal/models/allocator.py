"""glibc's allocator settings for training: fast reuse of freed memory, without hoarding it.

glibc's defaults cost time here: its mmap threshold starts at 128 KB and adapts, and it gives
the top of the heap back to the kernel as soon as 128 KB of it is free, so the many 1-30 MB
blocks of a forward and backward (per-layer activations, chunks of the fused head) are
page-faulted in anew, zeroed by the kernel page by page. The earlier setting, no mmap at all
and no trimming, was fast but hoarded: every block freed by one phase stayed resident, and
blocks of other sizes do not fit in its holes, so the process grew from step to step.

:func:`tune_allocator` fixes the mmap threshold at 32 MB, so that the few large buffers (a
fused-head chunk of fp32 logits is 512 x 49152 x 4 bytes = 100 MB for SmolLM2, a head
gradient 113 MB) are mapped on demand and returned when freed, and lets the heap keep up to
256 MB free at its top, so that the smaller blocks are reused without page faults.

Measured with ``benchmarks/update_memory.py`` (the demo's 9 updates alone, 2 shared cores;
docs/performance.md, "Memory"): glibc's defaults 58.7 s and 3.26 GB peak; these settings
23.1-35.4 s and 3.61-3.63 GB in 3 runs; no mmap and no trimming 21.7-29.1 s and 3.64-3.86 GB
in 3 runs alternated with them.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "return_free_memory", "tune_allocator"]

#: Blocks of at least this many bytes are mapped on demand and unmapped when freed.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse, at most.
TRIM_THRESHOLD = 256 * 1024 * 1024

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring), once per process; True when
    set. False off glibc and when any ``MALLOC_*`` variable is set (the user tuned the
    allocator: theirs wins)."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    libc = ctypes.CDLL(None)
    _tuned = bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned


def return_free_memory() -> bool:
    """Hand every free page of the heap back to the kernel (glibc's ``malloc_trim(0)``: all
    arenas, holes included, not only the top); the blocks stay reusable. For the moment a
    phase has freed much of what the next one will not allocate again in the same sizes.
    False off glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    return bool(ctypes.CDLL(None).malloc_trim(0))
