"""Where the evolution's work runs, as the evolution sees it: handed in, never imported.

The loop, the fitness and the gene pool need a few facts from the engine that spreads their work
(as ``deap.algorithms`` needs ``toolbox.map``): the device a process trains on once it is set up,
the origin's device and memory set-up, and how a constant (the gene pool) reaches every worker and
is read back there. :class:`Workers` is one process: set up for all the host's cores, nothing spread. A
run's toolbox carries the engine's (``toolbox.workers``, and ``workers=`` of ``toolbox.evaluate``):
:class:`learngene_ea.parallel.workers.EngineWorkers`, which :func:`learngene_ea.parallel.workers.run_toolbox`
gives. ``ea/`` imports no engine.
"""
from __future__ import annotations

from ..core.devices import resolve_device
from ..fewshot.process import configure_memory, configure_process


class Workers:
    """One process: set up as the only one of its run, its device from the setting, constants its own."""

    def prepare(self, config):
        """Set this process up for the evaluations of ``config``'s run; its torch device."""
        configure_process(config.runtime, config.model)
        return resolve_device(config.runtime.device)

    def device(self, setting: str = "auto"):
        """This process's torch device for ``runtime.device`` (the origin's own work: the warm start)."""
        return resolve_device(setting)

    def configure_memory(self, runtime) -> None:
        """This process's memory format, precision, malloc and numerics from ``runtime`` (threads left alone)."""
        configure_memory(runtime)

    def share(self, runtime, key: str, value) -> None:
        """Send ``value`` to every worker under ``key`` (one process: nothing to send)."""

    def shared(self, key: str):
        """The value shared under ``key``, read in a worker."""
        raise KeyError(f"nothing is shared under {key!r} in this process")

    def forget(self, key: str) -> None:
        """``key``'s value may be freed."""


def workers_of(toolbox) -> Workers:
    """The toolbox's workers (``toolbox.workers``); one process for a toolbox without them."""
    return getattr(toolbox, "workers", None) or Workers()
