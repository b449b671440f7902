"""The process's memory allocator: whether memory a forward frees is kept for the next one or given back to the OS.

glibc serves every allocation above its mmap threshold (32 MiB at most) with fresh pages from the kernel and unmaps
them on free, so each forward of the compiled fast path faults its large activations in again: at BERT-large's
batch 8, 2.4-2.6 GiB of page faults per forward and 13-20% of its time (docs/performance.md). ONNX Runtime keeps
its own arena for the same reason. `keep_freed_memory` asks glibc to serve large allocations from its heap and not
to trim it, so a second forward reuses the first one's pages; the cost is that the process holds its peak memory
until it exits. `BERTL11_KEEP_FREED_MEMORY=0` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools

from .machine import forced_choice

VARIABLE = "BERTL11_KEEP_FREED_MEMORY"
# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest mallopt takes: free memory at the heap's top stays until then


@functools.cache
def keep_freed_memory() -> str:
    """Ask glibc to keep freed memory for reuse (once per process); one line saying what was done, or why not."""
    if forced_choice(VARIABLE, ("1", "0")) == "0":
        return f"freed memory goes back to the OS ({VARIABLE}=0)"
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's own C library
    except (OSError, TypeError):  # no C library to open by handle (Windows)
        mallopt = None
    if mallopt is None:
        return "freed memory goes back to the OS (this C library has no mallopt)"
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)):
        return "freed memory goes back to the OS (mallopt refused)"
    return f"freed memory kept for reuse (glibc: no mmap, no trim; {VARIABLE}=0 to give it back)"
