"""Every evaluating process's set-up (:mod:`learngene_ea.fewshot.process`) with the run's process count
from its engine: a SCOOP worker takes its share of the host's cores (``cores // worker_count()``).
"""
from __future__ import annotations

from ..fewshot import process as _process
from .scoop_engine import worker_count

__all__ = ["default_threads", "configure_threads", "configure_process"]


def default_threads() -> int:
    """Torch threads for this process: the host's cores shared among the run's processes (see
    :func:`learngene_ea.fewshot.process.default_threads`)."""
    return _process.default_threads(worker_count())


def configure_threads(threads: int = 0) -> None:
    """This process's share of the cores among the run's processes (first call wins)."""
    _process.configure_threads(threads, worker_count())


def configure_process(runtime, model=None) -> None:
    """:func:`learngene_ea.fewshot.process.configure_process` among the run's processes."""
    _process.configure_process(runtime, model, worker_count())
