"""The engine's side of :class:`learngene_ea.ea.workers.Workers`, and the toolbox a run uses.

:func:`run_toolbox` is :func:`learngene_ea.ea.toolbox.build_toolbox` with the engine of
``runtime.backend`` behind ``toolbox.map`` and :class:`EngineWorkers` handed to the evaluations
and the loop: every evaluating process sets itself up (:func:`.process.configure_process`) and
takes its worker's device (:func:`.scoop_engine.worker_device`); the gene pool travels as a shared
constant of the engine.
"""
from __future__ import annotations

from ..ea.toolbox import build_toolbox
from ..ea.workers import Workers
from . import engines
from .process import configure_process
from .scoop_engine import worker_device


class EngineWorkers(Workers):
    """A run's workers: SCOOP's, Ray's or one process's, from ``runtime`` (picklable: it travels with
    ``toolbox.evaluate``)."""

    def prepare(self, config):
        configure_process(config.runtime, config.model)
        return worker_device(config.runtime.device)

    def device(self, setting: str = "auto"):
        return worker_device(setting)

    def share(self, runtime, key: str, value) -> None:
        if engines.spreads(runtime):
            engines.share_constant(runtime, key, value)

    def shared(self, key: str):
        return engines.shared_constant(key)

    def forget(self, key: str) -> None:
        engines.forget_constant(key)


def run_toolbox(cfg):
    """The toolbox of a run: GTL's operators (or the recipe's), the engine's map, :class:`EngineWorkers`."""
    return build_toolbox(cfg, map=engines.parallel_map(cfg.runtime), workers=EngineWorkers())
