"""Which worker am I, which device do I use, how many threads, how memory is kept: the
per-process facts of a run.

Under ``python -m scoop -n N ...`` a run has N processes (the origin, which also evaluates, and
N - 1 workers); outside SCOOP it has one. SCOOP 0.7.2 gives a process no index, so
:func:`local_worker_slot` makes one up: the first free slot of this run on this host, claimed
with a Linux abstract unix socket. Nothing here imports torch or needs a GPU.
"""
from __future__ import annotations

import ctypes
import os
import socket

__all__ = ["scoop_running", "worker_count", "local_worker_slot", "worker_index", "available_cores", "default_threads",
           "keep_freed_memory"]

# Upper bound on the processes of one run on one host; far above any real worker count.
MAX_SLOTS = 4096

_slot = None  # (slot, socket) once claimed: the socket must stay open as long as the process


def scoop_running() -> bool:
    """True inside a program launched with ``python -m scoop`` (origin and workers alike)."""
    try:
        import scoop
    except ImportError:
        return False
    return bool(getattr(scoop, "IS_RUNNING", False))


def worker_count() -> int:
    """Processes of the run: ``scoop.SIZE`` under SCOOP (every host's, origin included), else 1."""
    if not scoop_running():
        return 1
    import scoop

    try:
        return max(1, int(getattr(scoop, "SIZE", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _socket_name(run_key, slot: int) -> str:
    return "\0learngene_ea-scoop-{0}-{1}".format(run_key, slot)


def local_worker_slot() -> int:
    """This process's index among the SCOOP processes of this run on this host; 0 outside SCOOP.

    SCOOP has no worker index. Each process claims the first free name among Linux abstract
    unix sockets keyed by the broker's task port (unique per run, shared by its processes); the
    kernel frees the name when the process dies, so nothing is left behind. Slots are dense
    (0..k-1 for k processes on the host), given first come, first served; a process claims its
    slot on the first call and keeps it for life. (Abstract sockets are Linux only.)
    """
    global _slot
    if _slot is not None:
        return _slot[0]
    if not scoop_running():
        return 0
    import scoop

    run_key = scoop.BROKER.task_port
    for slot in range(MAX_SLOTS):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(_socket_name(run_key, slot))
        except OSError:
            sock.close()
            continue
        _slot = (slot, sock)
        return slot
    raise RuntimeError("no free worker slot among {0} for SCOOP run {1}".format(MAX_SLOTS, run_key))


def worker_index() -> int:
    """Index of this process among the run's processes on this host (0 outside SCOOP).

    It picks the GPU: ``cuda:{worker_index() % GPU count}`` (see ``fitness.worker_device``).
    """
    return local_worker_slot() if scoop_running() else 0


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch threads for this process: the host's cores shared among the run's processes.

    ``max(1, cores // worker_count())``. ``worker_count()`` is SCOOP's SIZE, which counts the
    workers of *every* host: exact on one host (the usual case); with several hosts each
    process gets fewer threads than its host could give it, so set ``runtime.threads``
    explicitly there (cores of a host / workers on that host).
    """
    return max(1, available_cores() // worker_count())


# glibc's mallopt(3) parameters (malloc.h), and its ceiling on M_MMAP_THRESHOLD on 64-bit.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    Every training step allocates and frees the same activation tensors (megabytes each). With
    glibc's defaults a CPU worker gets many of them as pages fresh from the kernel, which it
    faults in and zeroes again step after step at an unchanged resident size: about 400,000
    page faults (1.6 GB) per 60-step evaluation of the default recipe, which runs 1.13-1.20x
    faster without them (README "Host memory"). Here the heap grows by 1 GiB of address space
    at a time (pages are backed only once touched), is trimmed only when more than 1 GiB lies
    free at its top, and serves blocks up to glibc's 32 MiB mmap ceiling, so each step reuses
    the pages of the last; the process keeps its peak heap until it exits. Affects only the
    calling process; returns False, changing nothing, where the C library has no ``mallopt``
    (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # TypeError: no C library by that name (Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((_M_TOP_PAD, _KEEP_BYTES), (_M_TRIM_THRESHOLD, _KEEP_BYTES), (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
    return all([bool(mallopt(option, value)) for option, value in settings])
