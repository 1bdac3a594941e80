"""What a process that runs the gateway in the foreground sets up for itself (a library that
embeds the gateway leaves the host's process alone)."""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import signal

__all__ = ["foreground_setup", "foreground_teardown"]

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_FROM = 512 * 1024  # above msgpack's 256 KiB packer buffer (one per packb), below a frame
_TRIM_FROM = 8 << 20  # give the heap's top back only past this: no brk churn per message


def foreground_setup() -> None:
    """SIGUSR1 dumps every thread's stack (faulthandler). And memory a hostile client made us
    allocate goes back to the system once freed: glibc raises its mmap threshold after each
    large block is freed, so later large blocks (a 1 MiB frame, say) come from the heap, whose
    free pages it rarely returns. Fixing the threshold keeps every large block mmapped, and
    unmapped on free."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_FROM)
    except (OSError, AttributeError):  # not glibc: its allocator has its own ways
        pass


def foreground_teardown() -> None:
    faulthandler.unregister(signal.SIGUSR1)
