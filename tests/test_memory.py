"""shared/memory.py: freed heap memory really goes back to the operating system."""

import ctypes

import psutil
import pytest

from shared.memory import release_free_memory

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]


@pytest.mark.skipif(not hasattr(libc, "malloc_trim"), reason="malloc_trim is glibc's")
def test_freed_heap_pages_are_released() -> None:
    """256 MiB in 64 KiB blocks (below glibc's mmap threshold, so on the heap), touched, then
    freed under a block kept at the top of the heap, which stops glibc trimming on its own."""
    block, count = 64 * 1024, 4096
    process = psutil.Process()
    blocks = [libc.malloc(block) for _ in range(count)]
    pin = libc.malloc(block)
    for address in blocks:
        ctypes.memset(address, 1, block)
    for address in blocks:
        libc.free(address)
    held = process.memory_info().rss
    try:
        assert release_free_memory() is True
        assert held - process.memory_info().rss > 128 * 2**20
    finally:
        libc.free(pin)
