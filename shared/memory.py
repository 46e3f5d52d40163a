"""Giving freed memory back to the operating system.

glibc's allocator keeps what a process frees for its next allocation instead of returning it,
and every thread gets an arena of its own. A process that does large, bursty work (a forward
pass of the embedding model allocates and frees ~150 MiB of activations across torch's
threads) therefore keeps its peak resident for good, though it uses a fraction of it between
bursts. ``malloc_trim(0)`` hands the free pages of every arena back; the next burst takes them
again at the cost of page faults (a few ms per pass), so callers trim when they go idle.
"""

import ctypes
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library the process already runs on (as shared/text/isolation.py reaches prctl)."""
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, not macOS)


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; False where the C library cannot."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
