"""The command's memory settings: tensors allocated without a page fault per 4 KB, set before torch allocates."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD, TRIM_THRESHOLD = -3, -1  # glibc's mallopt parameters (malloc.h: M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)
HEAP_LIMIT = 32 * 2**20  # glibc's largest M_MMAP_THRESHOLD on 64-bit: blocks up to this come from the heap


def fast_allocation() -> None:
    """Make this process reuse the memory of freed tensors instead of asking the kernel for fresh pages.

    A network's activations are large blocks allocated and freed on every forward. glibc's malloc maps each
    block over its (dynamic) threshold fresh from the kernel and unmaps it when freed, and gives the heap's top
    back when it grows past its trim threshold: every 4 KB page is then faulted in and zeroed again on the next
    forward (2,800 faults per 224 px image for the paper's network, 68,000 per batch of 16). Blocks up to 32 MB
    now stay in the heap and the heap is never trimmed (the process keeps its peak size); larger ones, and all
    blocks of 2 MB and more that PyTorch's allocator makes, are backed by transparent huge pages
    (THP_MEM_ALLOC_ENABLE, read when torch first allocates). An explicit setting of that variable is kept;
    outside glibc only THP is asked for. The same as Intel's advice to preload jemalloc or tcmalloc for CPU
    inference, from inside the process."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc's (no mallopt)
        return
    mallopt(MMAP_THRESHOLD, HEAP_LIMIT)
    mallopt(TRIM_THRESHOLD, 2**31 - 1)
