"""Which engine spreads the work, chosen in one place: one :class:`Engine` per backend.

``runtime.backend`` says which: ``auto`` (SCOOP when launched under ``python -m scoop``, else
one process), ``scoop``, ``ray`` or ``serial``; :func:`engine_for` gives its :class:`Engine`.
DEAP's toolbox gets the engine's ``map`` (:func:`parallel_map`: the evolution loop never sees
which); the transfer evaluation sends its context once with :func:`share_constant` and workers
read it back with :func:`shared_constant`. SCOOP's plumbing is in
:mod:`learngene_ea.parallel.scoop_engine`, Ray's in :mod:`learngene_ea.parallel.ray_engine`
(imported only when Ray is chosen: Ray is an optional extra); every evaluating process sets
itself up with :mod:`learngene_ea.parallel.process` (:mod:`learngene_ea.fewshot.process` among the
run's processes).
"""
from __future__ import annotations

import functools

from . import scoop_engine
from ..errors import UserError
from .scoop_engine import RESUME_HINT, scoop_running, watched_scoop_map

__all__ = ["Engine", "SerialEngine", "ScoopEngine", "RayEngine", "register_engine", "list_engines", "engine_for",
           "backend_of", "start_engine", "parallel_map", "process_count", "spreads", "share_constant",
           "shared_constant", "forget_constant"]


# The registry of engines: runtime.backend -> Engine class, filled by @register_engine, read through list_engines.
_ENGINES: dict = {}


def register_engine(name: str):
    """Class decorator: the :class:`Engine` of ``runtime.backend: name`` (its ``name``). A name registered twice
    is a ValueError. ``runtime.backend``'s choices are ``auto`` and these (``config.schema.BACKENDS``, a layer
    below, writes them out; a test holds the two together)."""
    if name in _ENGINES:
        raise ValueError(f"engine {name!r} is already registered")

    def register(engine: type) -> type:
        engine.name = name
        _ENGINES[name] = engine
        return engine

    return register


def list_engines() -> list[str]:
    """The names of the engines, in the order they were registered."""
    return list(_ENGINES)


@register_engine("serial")
class Engine:
    """One process, no engine: the builtin ``map``. Subclasses spread the work over other processes; each is
    registered under its ``runtime.backend``, which becomes its ``name`` (:func:`register_engine`)."""

    spreads = False  # work goes to other processes, which need share()'d values

    def __init__(self, runtime):
        self.runtime = runtime

    def start(self) -> str:
        """Start or join what the engine needs; a phrase for the log line."""
        return "one process (no SCOOP)"

    def map(self, hint: str = RESUME_HINT):
        """The ``map`` for ``toolbox.map`` (``hint``: what a stalled map's message tells the user)."""
        return map

    def process_count(self) -> int:
        """Processes that evaluate at once."""
        return 1

    def share(self, key: str, value) -> None:
        """Send ``value`` once to every worker under ``key`` (nothing to send in one process)."""


SerialEngine = Engine


@register_engine("scoop")
class ScoopEngine(Engine):
    """SCOOP's map with a stall watchdog; the origin evaluates too."""

    spreads = True

    def start(self) -> str:
        return f"{scoop_engine.worker_count()} SCOOP processes"

    def map(self, hint: str = RESUME_HINT):
        return functools.partial(watched_scoop_map, stall_timeout=self.runtime.stall_timeout, hint=hint)

    def process_count(self) -> int:
        return scoop_engine.worker_count()

    def share(self, key: str, value) -> None:
        scoop_engine.share_constant(key, value)


@register_engine("ray")
class RayEngine(Engine):
    """Each evaluation a Ray task (a task whose worker died is rerun)."""

    spreads = True

    def start(self) -> str:
        from .ray_engine import start_ray

        return start_ray(self.runtime)

    def map(self, hint: str = RESUME_HINT):
        from .ray_engine import ray_map

        return functools.partial(ray_map, runtime=self.runtime, hint=hint)

    def process_count(self) -> int:
        from .ray_engine import task_slots

        return task_slots(self.runtime)

    def share(self, key: str, value) -> None:
        from .ray_engine import share

        share(key, value)


def backend_of(runtime) -> str:
    """``"scoop"``, ``"ray"`` or ``"serial"``: what ``runtime.backend`` means for this process.

    Raises :class:`UserError` for a backend this launch cannot give.
    """
    chosen = runtime.backend
    if chosen == "auto":
        return "scoop" if scoop_running() else "serial"
    if chosen == "scoop" and not scoop_running():
        raise UserError("runtime.backend is 'scoop' but this process was not launched with `python -m scoop`; "
                        "launch it so (python -m scoop -n 8 -m learngene_ea.run ...) or set runtime.backend=auto.")
    if chosen == "ray" and scoop_running():
        raise UserError("runtime.backend is 'ray' but this process was launched with `python -m scoop`; launch "
                        "it with plain python (python -m learngene_ea.run --set runtime.backend=ray ...).")
    return chosen


def engine_for(runtime) -> Engine:
    """The :class:`Engine` of ``runtime.backend`` in this process (:class:`UserError` if it cannot be had)."""
    return _ENGINES[backend_of(runtime)](runtime)


def start_engine(runtime) -> str:
    """Check the backend (starting or joining Ray when it is chosen); a phrase for the log line.

    Called before any compute, so that a bad setting ends the run with one sentence (exit 2).
    """
    return engine_for(runtime).start()


def parallel_map(runtime, hint: str = RESUME_HINT):
    """The ``map`` of ``runtime``'s backend: SCOOP's (with its stall watchdog), Ray's, or the builtin.

    ``hint`` ends the message of a stalled map: what the user still has and how to go on.
    """
    return engine_for(runtime).map(hint)


def process_count(runtime) -> int:
    """Processes that evaluate at once: SCOOP's size, the Ray cluster's task slots, or 1."""
    return engine_for(runtime).process_count()


def spreads(runtime) -> bool:
    """True when work goes to other processes (which need :func:`share_constant`'s values)."""
    return engine_for(runtime).spreads


def share_constant(runtime, key: str, value) -> None:
    """Send ``value`` once to every worker of ``runtime``'s backend under ``key``."""
    engine_for(runtime).share(key, value)


def shared_constant(key: str, timeout: float = 600.0):
    """What the origin shared under ``key``, in a Ray or SCOOP worker (SCOOP waits up to ``timeout`` s)."""
    from .ray_engine import shared_here

    found, value = shared_here(key)
    return value if found else scoop_engine.shared_constant(key, timeout)


def forget_constant(key: str) -> None:
    """The origin no longer needs ``key`` shared (Ray frees its object; SCOOP keeps constants for life)."""
    from .ray_engine import forget

    forget(key)
