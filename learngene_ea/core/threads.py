"""This process's torch threads: the only caller of ``torch.set_num_threads``, and the cores it may use.

At the bottom, beside the networks: a dataset generator (``data/synthetic.py``), the gene pool's warm
start and every evaluating process (:mod:`learngene_ea.fewshot.process`) set their threads here.
"""
from __future__ import annotations

import contextlib
import os

import torch


def set_threads(threads: int) -> None:
    """This process's torch threads (intra-op), now."""
    torch.set_num_threads(threads)


@contextlib.contextmanager
def threads_set_to(threads: int):
    """Inside the block, this process uses ``threads`` torch threads; the previous count afterwards."""
    before = torch.get_num_threads()
    set_threads(threads)
    try:
        yield
    finally:
        set_threads(before)


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else all)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
