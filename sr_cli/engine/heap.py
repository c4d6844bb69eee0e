"""Keep freed memory in the process while a CPU forward runs (glibc; elsewhere a no-op).

A whole-image forward allocates and frees feature maps of tens to hundreds of MiB, layer after layer.
glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh mmap and unmaps it
on free, so the kernel page-faults and zeroes each layer's output again. Measured on SRVGG x4
(animevideov3 size) at 1024x1024, one thread: 2.4 million page faults and 4.3 s of system time beside
5.7 s of user time per forward. With mmap off and the trim threshold raised for the duration, freed blocks
are reused: no page faults after the first forward, system time ~0, 1.85x less CPU time, the same peak
RSS (1032 vs 1024 MiB); docs/benchmarks.md, "Whole image on the CPU".

`reuse_freed_heap()` sets that for as long as one caller holds it (nested and concurrent holders share
one setting), then restores glibc's documented defaults and trims the heap, so an idle process gives the
memory back. One lasting difference: once a program calls mallopt, glibc stops adapting its mmap threshold
to the sizes it sees and keeps the value it had reached (mallopt(3)).
"""
from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536  # glibc's defaults (mallopt(3))
DEFAULT_TRIM_THRESHOLD = 128 * 1024
HELD_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: free memory below 2 GiB at the heap's top stays

_lock = threading.Lock()
_holders = 0
_libc: Any = None
_looked_up = False


def glibc() -> Any:
    """glibc's handle (mallopt, malloc_trim), or None where the C library is another one."""
    global _libc, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            library = ctypes.CDLL("libc.so.6")
            library.gnu_get_libc_version  # noqa: B018 -- present in glibc only (musl also answers to libc.so.6 on some systems)
            library.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            library.malloc_trim.argtypes = (ctypes.c_size_t,)
            _libc = library
        except (OSError, AttributeError):
            _libc = None
    return _libc


@contextmanager
def reuse_freed_heap() -> Iterator[None]:
    """While held: large freed blocks stay in the heap for the next allocation (see the module doc)."""
    global _holders
    libc = glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _holders == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, HELD_TRIM_THRESHOLD)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)
