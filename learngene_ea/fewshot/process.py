"""The one place that sets up a process: its torch threads, memory format, precision, malloc and GPU numerics.

Every evaluating process (SCOOP workers, Ray tasks, one-process runs) calls :func:`configure_process`
before its first evaluation, given the number of the run's processes (one here; the engine's count
through :mod:`learngene_ea.parallel.process`); the transfer evaluation calls :func:`configure_memory` and sets its
threads itself (all cores for the origin's pre-training, its share while the workers are busy), with
:mod:`learngene_ea.core.threads`' ``set_threads`` and ``threads_set_to`` (the only caller of
``torch.set_num_threads``).
"""
from __future__ import annotations

import ctypes
import os

import torch

from ..core.models import use_channels_last
from ..core.process_settings import THIS_PROCESS
from ..core.threads import available_cores, set_threads
from ..core.traced import allow_module
from .training import use_precision

__all__ = ["default_threads", "configure_threads", "keep_freed_memory", "configure_process", "configure_memory",
           "configure_numerics"]


def default_threads(processes: int = 1) -> int:
    """Torch threads for this process: the host's cores shared among the run's ``processes``.

    ``max(1, cores // processes)``. Under SCOOP ``processes`` is SCOOP's SIZE, which counts the
    workers of *every* host: exact on one host (the usual case); with several hosts each
    process gets fewer threads than its host could give it, so set ``runtime.threads``
    explicitly there (cores of a host / workers on that host).
    """
    return max(1, available_cores() // processes)


# glibc's mallopt(3) parameters (malloc.h), and its ceiling on M_MMAP_THRESHOLD on 64-bit.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_KEEP_BYTES = 1 << 30


def configure_threads(threads: int = 0, processes: int = 1) -> None:
    """Give each worker its share of the cores so that workers do not fight over them (first call wins:
    :data:`~learngene_ea.core.process_settings.THIS_PROCESS` records it)."""
    if THIS_PROCESS.threads_set:
        return
    set_threads(threads if threads > 0 else default_threads(processes))
    THIS_PROCESS.threads_set = True


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


def configure_process(runtime, model=None, processes: int = 1) -> None:
    """This process's share of the cores (among ``processes``), its memory format and its malloc, from
    ``runtime``; with the run's ``model`` config, the network its recipe names may be imported here
    (``model.module``)."""
    configure_threads(runtime.threads, processes)
    configure_memory(runtime)
    if model is not None and model.module:
        allow_module(model.module)


def configure_memory(runtime) -> None:
    """This process's memory format, its training precision, its malloc and its GPU numerics, from ``runtime``
    (threads left alone)."""
    use_channels_last(runtime.channels_last)
    use_precision(runtime.precision)
    if runtime.keep_freed_memory:
        keep_freed_memory()
    configure_numerics(runtime)


def configure_numerics(runtime) -> None:
    """``runtime.deterministic`` and ``runtime.tf32`` for this process's CUDA kernels (before its first
    CUDA call: cuBLAS reads CUBLAS_WORKSPACE_CONFIG once). Results on a CPU are the same either way."""
    deterministic = bool(runtime.deterministic)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # else cuBLAS may split sums by stream
        torch.backends.cudnn.benchmark = False  # benchmarking may pick another algorithm each run
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        # filling every new tensor with NaN catches a kernel reading memory it did not write; ours
        # write all they read, and the fill is a memset per allocation
        torch.utils.deterministic.fill_uninitialized_memory = False  # noqa (torch >= 2.1)
    torch.backends.cuda.matmul.allow_tf32 = bool(runtime.tf32)
    torch.backends.cudnn.allow_tf32 = bool(runtime.tf32)
