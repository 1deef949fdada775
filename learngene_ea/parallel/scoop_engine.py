"""The SCOOP layer: how work is spread, and the per-process facts of a run.

- SCOOP's map with a watchdog for dead workers and futures the broker does not lose
  (:func:`watched_scoop_map`, :func:`run_visible`); which map a run uses is chosen in engines.py;
- constants shared once with every worker (:func:`share_constant`, :func:`shared_constant`);
- which worker am I, which device do I use (threads and memory: :mod:`.process`).

Under ``python -m scoop -n N ...`` a run has N processes (the origin, which also evaluates, and
N - 1 workers); outside SCOOP it has one. SCOOP 0.7.2 gives a process no index, so
:func:`local_worker_slot` makes one up: the first free slot of this run on this host, claimed
with a Linux abstract unix socket. Only :func:`worker_device` imports torch.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import socket
import sys
import threading
import time

from .._scoop_module_hook import record_exit_status

__all__ = ["scoop_running", "worker_count", "local_worker_slot", "worker_index", "worker_device", "evaluating_on",
           "run_visible", "watched_scoop_map", "share_constant", "shared_constant"]

# Upper bound on the processes of one run on one host; far above any real worker count.
MAX_SLOTS = 4096


class _WorkerState:
    """Who this process is among the run's processes, and the device an engine lent its evaluation now.

    Process-wide on purpose: SCOOP and Ray run an evaluation as a plain function call in a worker, so
    what the process learns of itself has no run object to live on (one instance, ``_WORKER``).

    Attributes:
        slot: ``(slot, socket)`` once claimed (:func:`local_worker_slot`): the socket must stay open as
            long as the process.
        engine_devices: the devices engines gave the evaluations running now, the innermost last
            (:func:`evaluating_on`; Ray: what its task reserved).
    """

    def __init__(self):
        self.slot: tuple | None = None
        self.engine_devices: list = []


_WORKER = _WorkerState()


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
    if _WORKER.slot is not None:
        return _WORKER.slot[0]
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
        _WORKER.slot = (slot, sock)
        return slot
    raise RuntimeError("no free worker slot among {0} for SCOOP run {1}".format(MAX_SLOTS, run_key))


def worker_index() -> int:
    """Index of this process among the run's processes on this host (0 outside SCOOP).

    It picks the GPU: ``cuda:{worker_index() % GPU count}`` (see :func:`worker_device`).
    """
    return local_worker_slot() if scoop_running() else 0


@contextlib.contextmanager
def evaluating_on(device: str):
    """Inside the block, :func:`worker_device` gives ``device`` for any setting but ``cpu``."""
    _WORKER.engine_devices.append(device)
    try:
        yield
    finally:
        _WORKER.engine_devices.pop()


def worker_device(device: str = "auto"):
    """This process's torch device: ``cuda:{worker index % GPUs}`` under SCOOP, else ``cuda:0`` or CPU;
    inside :func:`evaluating_on` (a Ray task) the device the engine reserved, unless ``device`` is ``cpu``.
    What it adds to :func:`~learngene_ea.core.devices.resolve_device`, which resolves the setting: the
    worker's index and the engine's reservation."""
    from ..core.devices import resolve_device

    if _WORKER.engine_devices and device != "cpu":
        return resolve_device(_WORKER.engine_devices[-1])
    return resolve_device(device, worker_index())


# ------------------------------------------------------------------ spreading work

class _StatusEntry:
    """Stands for a running future in SCOOP's status reports, under the id the broker looks up."""

    __slots__ = ("id",)

    def __init__(self, future_id):
        self.id = pickle.dumps(future_id, pickle.HIGHEST_PROTOCOL)


def run_visible(function, item):
    """``function(item)`` as a SCOOP future that the broker does not declare lost while it runs.

    SCOOP 0.7.2's broker records a future it hands to a worker under its *pickled* id, and a
    waiting origin asks about a future by its pickled id; but every 25 s the worker's status
    report replaces that record with the *unpickled* ids of the futures it queues (not even the
    one it runs). From a worker's first report on, the broker no longer recognises its futures:
    an origin that waits at the end of a generation is told that the evaluations still running
    there are lost, sends them out again, and computes them a second time ("Lost track of
    future ... Resending it"). While ``function`` runs, this adds an entry with the pickled id
    to the set the report is made from (``execQueue.inprogress``, which SCOOP only tests
    membership of otherwise). The set is replaced, not changed in place, because the report
    thread may be iterating over it.
    """
    from scoop import _control

    queue, future = getattr(_control, "execQueue", None), getattr(_control, "current", None)
    if queue is None or future is None:
        return function(item)
    entry = _StatusEntry(future.id)
    queue.inprogress = queue.inprogress | {entry}
    try:
        return function(item)
    finally:
        queue.inprogress = queue.inprogress - {entry}


RESUME_HINT = "the last finished generation is safe in checkpoints/latest.pkl: continue with --resume <run dir>."


def watched_scoop_map(function, items, stall_timeout: float = 1800.0, hint: str = RESUME_HINT):
    """SCOOP's ``futures.map`` with a watchdog: a silent stall ends the run instead of hanging.

    SCOOP 0.7 waits forever for a future whose worker died. A watchdog thread ends this process
    (exit status 1, message on stderr) when no result arrives for ``stall_timeout`` seconds; the
    last checkpoint is safe since checkpoints are never written while evaluations run. The map
    itself stays SCOOP's blocking one, in which the origin process evaluates too.
    """
    from scoop import futures

    last_progress = [time.monotonic()]
    done = threading.Event()

    def watch():
        while not done.wait(min(5.0, stall_timeout / 4)):
            if time.monotonic() - last_progress[0] > stall_timeout:
                message = (f"error: no evaluation finished for {stall_timeout:.0f} s, so a SCOOP worker has "
                           f"probably died; {hint}\n")
                sys.stderr.write(message)
                sys.stderr.flush()
                sys.stdout.flush()
                record_exit_status(1)  # the launcher exits with it (SCOOP's own status is 0)
                os._exit(1)

    watchdog = threading.Thread(target=watch, name="learngene-ea-watchdog", daemon=True)
    watchdog.start()
    try:
        for result in futures.map(run_visible, itertools.repeat(function), items):
            last_progress[0] = time.monotonic()
            yield result
    finally:
        done.set()


def share_constant(key: str, value) -> None:
    """Send ``value`` once to every SCOOP worker under ``key`` (SCOOP's shared constants)."""
    from scoop import shared

    shared.setConst(**{key: value})


def shared_constant(key: str, timeout: float = 600.0):
    """What the origin shared under ``key`` (waits up to ``timeout`` seconds for it)."""
    from scoop import shared

    value = shared.getConst(key, timeout=timeout)
    if value is None:
        raise RuntimeError(f"shared constant {key} never reached this SCOOP worker")
    return value
