"""Which engine spreads the work, chosen in one place: SCOOP, Ray, or none (one process).

``runtime.backend`` says which: ``auto`` (SCOOP when launched under ``python -m scoop``, else
one process), ``scoop``, ``ray`` or ``serial``. DEAP's toolbox gets :func:`parallel_map`; the
transfer evaluation sends its context once with :func:`share_constant` and workers read it
back with :func:`shared_constant`. SCOOP's plumbing is in :mod:`learngene_ea.parallel.scoop_engine`, Ray's in
:mod:`learngene_ea.parallel.ray_engine` (imported only when Ray is chosen: Ray is an optional extra).
"""
from __future__ import annotations

import functools

from . import scoop_engine as workers
from ..errors import UserError
from .scoop_engine import RESUME_HINT, scoop_running, watched_scoop_map

__all__ = ["backend_of", "start_engine", "parallel_map", "process_count", "spreads", "share_constant",
           "shared_constant", "forget_constant"]


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


def start_engine(runtime) -> str:
    """Check the backend (starting or joining Ray when it is chosen); a phrase for the log line.

    Called before any compute, so that a bad setting ends the run with one sentence (exit 2).
    """
    backend = backend_of(runtime)
    if backend == "ray":
        from .ray_engine import start_ray

        return start_ray(runtime)
    if backend == "scoop":
        return f"{workers.worker_count()} SCOOP processes"
    return "one process (no SCOOP)"


def parallel_map(runtime, hint: str = RESUME_HINT):
    """The ``map`` of ``runtime``'s backend: SCOOP's (with its stall watchdog), Ray's, or the builtin.

    ``hint`` ends the message of a stalled map: what the user still has and how to go on.
    """
    backend = backend_of(runtime)
    if backend == "scoop":
        return functools.partial(watched_scoop_map, stall_timeout=runtime.stall_timeout, hint=hint)
    if backend == "ray":
        from .ray_engine import ray_map

        return functools.partial(ray_map, runtime=runtime, hint=hint)
    return map


def process_count(runtime) -> int:
    """Processes that evaluate at once: SCOOP's size, the Ray cluster's task slots, or 1."""
    backend = backend_of(runtime)
    if backend == "scoop":
        return workers.worker_count()
    if backend == "ray":
        from .ray_engine import task_slots

        return task_slots(runtime)
    return 1


def spreads(runtime) -> bool:
    """True when work goes to other processes (which need :func:`share_constant`'s values)."""
    return backend_of(runtime) != "serial"


def share_constant(runtime, key: str, value) -> None:
    """Send ``value`` once to every worker of ``runtime``'s backend under ``key``."""
    backend = backend_of(runtime)
    if backend == "scoop":
        workers.share_constant(key, value)
    elif backend == "ray":
        from .ray_engine import share

        share(key, value)


def shared_constant(key: str, timeout: float = 600.0):
    """What the origin shared under ``key``, in a Ray or SCOOP worker (SCOOP waits up to ``timeout`` s)."""
    from .ray_engine import shared_here

    found, value = shared_here(key)
    return value if found else workers.shared_constant(key, timeout)


def forget_constant(key: str) -> None:
    """The origin no longer needs ``key`` shared (Ray frees its object; SCOOP keeps constants for life)."""
    from .ray_engine import forget

    forget(key)
