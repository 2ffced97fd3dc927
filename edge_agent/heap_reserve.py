"""Keeps the memory decoded chunks will live in resident: the event-loop thread's malloc heap is
grown, touched once and kept, so filling the chunk cache during queries costs no page faults.

glibc only (mallopt/malloc through ctypes); elsewhere reserve_heap() does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from functools import cache

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 2**20  # row-group sized arrays (<= 16384 x 8 bytes, and their concatenations) stay on the heap
BLOCK = 64 * 2**10  # below glibc's default mmap threshold: every block comes from the heap


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def reserve_heap(nbytes: int) -> bool:
    """Grow this thread's malloc arena by `nbytes`, touching every page, and free it again with
    trimming above that size switched off: later allocations reuse resident pages. Without it a
    fresh node pays ~15 minor page faults per decoded 8,640-row chunk (tens of microseconds each
    in a VM) until the chunk cache is full. Costs `nbytes` of resident memory from now on.
    Call it on the thread that decodes small queries (the event loop), after start-up work that
    allocates a lot (imports, warm-up), which would otherwise use the reserve up. True if done."""
    libc = _glibc()
    if libc is None or nbytes <= 0:
        return False
    if not (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and
            libc.mallopt(M_TRIM_THRESHOLD, nbytes + 64 * 2**20)):
        log.warning("mallopt refused the heap settings; no memory reserved")
        return False
    blocks = []
    try:
        for _ in range(nbytes // BLOCK):
            block = libc.malloc(BLOCK)
            if not block:
                break
            ctypes.memset(block, 0, BLOCK)
            blocks.append(block)
    finally:
        for block in reversed(blocks):
            libc.free(block)
    return bool(blocks)
