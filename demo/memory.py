"""Memory a request frees goes back to the operating system, so a server's size follows its load.

glibc's allocator serves a large block from the heap instead of a fresh mapping once a block of
that size has been freed (its mmap threshold rises on its own, up to 32 MB), and heap memory
freed in the middle of a thread's arena stays with the process. A visitor's 25-megapixel
picture (75 MB decoded, in 16 MB blocks) would so leave the server that much bigger after every
such request on a new worker thread. Fixing the threshold at 4 MB keeps every block of that size
or more in its own mapping, returned on free (tests/test_public_space.py measures the server after
25 sessions explain a 4,900 × 4,900 picture; the figures with and without are in
bench/results/session_memory.txt).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("demo")

M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def return_large_blocks_to_the_system() -> bool:
    """Set glibc's mmap threshold (a fixed value also stops it rising); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        done = bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (macOS, musl): their allocators behave otherwise
        done = False
    if not done:
        log.info("Allocator left as it is: no glibc mallopt here")
    return done
