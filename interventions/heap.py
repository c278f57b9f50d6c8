"""Giving freed CPU memory back to the operating system.

A prepare forward allocates its transients (hidden states, MLP activations, attention
projections) between the tensors it keeps (the KV prefix, the site activations). When the
transients are freed, glibc's allocator keeps the holes between the kept tensors in the
process: on GPT-2 small, 4 prepared batches of 32 x 16 tokens keep 144 MB of tensors and
left the resident set 390 MB larger. `release_free_heap()` asks the allocator to return
those pages (malloc_trim), so the process holds what it uses. A no-op where the C library is
not glibc, and on a GPU (CUDA memory is torch's own caching allocator's)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Return the allocator's free pages to the OS; True when it returned any."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
