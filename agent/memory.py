"""The C allocator's arenas (glibc): one, shared by the agent's threads (memory, issue 12).

glibc gives each thread that allocates its own arena, and memory freed in one arena serves only
that arena again; the backup's pool threads read and encrypt, the main thread batches and the
uploader sends, so each arena kept its own high-water mark of megabyte-sized buffers and the
process's peak was their sum. With one arena a buffer freed by any thread is reused by the next
allocation, whichever thread makes it: on the 1 GiB benchmark the first backup's peak went from
234 to 183-196 MiB (bench/README.md). The shared arena's lock is taken only for large buffers, a
few per block (small objects never reach malloc: Python's own allocator serves them under the
GIL), so the agent's CPU did not change measurably.
"""
import ctypes
import sys

M_ARENA_MAX = -8  # glibc's malloc.h


def malloc_arenas_share(count: int = 1) -> bool:
    """Limit glibc to `count` arenas for threads created from now on; False where it cannot be
    told (another C library or platform), which changes nothing but the peak."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))
