"""Ray as the second engine (``runtime.backend: ray``): every evaluation is a Ray task.

- :func:`start_ray` starts a local Ray (``runtime.ray_address: null``) or joins a cluster
  (``auto``, or ``host:port`` of its head), refusing bad settings with one sentence first;
- :func:`ray_map` is the toolbox's ``map``: the function (with the recipe and the dataset
  reference bound in it) and each item (an individual and its learngene) go to the object store
  once per call, i.e. once per generation, however often a task is retried; each task reserves
  ``max(1, runtime.threads)`` CPUs and ``runtime.gpus_per_evaluation`` GPUs, and Ray reruns a
  task whose worker or node died (``runtime.ray_max_retries``): evaluations are seeded, so a
  rerun gives the same result and the run goes on;
- devices (:func:`task_device`): a task that reserved no GPU runs on the CPU (Ray no longer
  hides the GPUs from it); a GPU task runs on the GPU Ray reserved for it, in a worker process
  that lives on (``max_calls=0``: Ray's default for GPU tasks is a fresh process, with its torch
  import, CUDA context and dataset copy, for every evaluation);
- :func:`share`/:func:`shared_here`: the constants of :mod:`learngene_ea.parallel.engines` through the
  object store (each task carries the references; a worker fetches a value on first use).

``ray`` is imported only inside these functions: the package works without the extra.
"""
from __future__ import annotations

import contextlib
import os
import random
import socket

from ..errors import UserError

__all__ = ["start_ray", "ray_map", "task_slots", "task_device", "gpu_index", "share", "shared_here", "forget",
           "RayStall"]

NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"  # Ray then leaves CUDA_VISIBLE_DEVICES alone


class _RayProcessState:
    """What this process keeps of Ray between calls: the origin's shared constants and remote functions, a
    worker's received constants and its GPUs.

    Process-wide on purpose: a Ray worker receives each evaluation as a plain function call
    (:func:`_run_task`), so what it keeps from one task to the next has no run object to live on; the
    origin's map is a plain function too (one instance, ``_RAY``).

    Attributes:
        shared: origin: key -> ObjectRef of a constant for the tasks it sends.
        received: worker: key -> ObjectRef the last task carried.
        values: worker: key -> the fetched value (one at a time).
        remotes: origin: (cpus, gpus, retries) -> the remote function with those options.
        cuda_visible: worker: the GPUs its torch sees, as CUDA_VISIBLE_DEVICES said at its first GPU task.
    """

    def __init__(self):
        self.shared: dict = {}
        self.received: dict = {}
        self.values: dict = {}
        self.remotes: dict = {}
        self.cuda_visible: list = []


_RAY = _RayProcessState()


class RayStall(RuntimeError):
    """No Ray task finished for ``runtime.stall_timeout`` seconds (no worker can or does run them)."""


def _ray():
    try:
        import ray
    except ImportError as err:
        raise UserError("runtime.backend is 'ray' but Ray is not installed; install the extra with "
                        "pip install -e \".[ray]\" or set runtime.backend=auto.") from err
    return ray


def _check_reachable(address: str) -> None:
    """A ``host:port`` that accepts no connection is refused now (``ray.init`` would retry for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"runtime.ray_address is {address!r}; it must be null (a local Ray), 'auto' or "
                        "'host:port' of the head node (as `ray start --head` prints it).")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise UserError(f"runtime.ray_address {address!r} cannot be reached ({err.strerror or err}); start the "
                        "head there with `ray start --head`, or set runtime.ray_address=null for a local Ray.") from err


@contextlib.contextmanager
def _rng_untouched():
    """Python's and numpy's global random states as they were before the block."""
    import numpy as np

    python, numpy = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def start_ray(runtime) -> str:
    """Start or join Ray as ``runtime`` says (nothing if this process already has it); a log phrase."""
    ray = _ray()
    address = runtime.ray_address
    if address not in (None, "auto"):
        _check_reachable(address)
    if not ray.is_initialized():
        if runtime.gpus_per_evaluation > 0 and address is None:
            # A long-lived worker sees every GPU of the node and uses the one Ray reserved for each
            # task (task_device); else torch keeps the GPU of the worker's first task for good.
            os.environ.setdefault(NOSET_CUDA, "1")
        try:
            with _rng_untouched():  # ray.init draws from `random`: the run's selections must not change
                # null: a Ray of this process's own ("local"), even where `ray start` made one here
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=True)
        except ConnectionError as err:
            raise UserError(f"runtime.ray_address is {address!r} but no Ray cluster answers "
                            f"({str(err).splitlines()[0]}); start one with `ray start --head`, or set "
                            "runtime.ray_address=null for a local Ray.") from err
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    if runtime.gpus_per_evaluation > 0 and gpus < runtime.gpus_per_evaluation:
        raise UserError(f"runtime.gpus_per_evaluation is {runtime.gpus_per_evaluation} but the Ray cluster has "
                        f"{gpus:g} GPUs; set it to 0 for CPU evaluations or join a cluster with GPUs.")
    return (f"Ray, {task_slots(runtime)} evaluations at once ({resources.get('CPU', 0):g} CPUs, {gpus:g} GPUs, "
            f"{len(ray.nodes())} node(s))")


def task_slots(runtime) -> int:
    """Evaluations the cluster runs at once: its CPUs (or GPUs) divided by what one task reserves."""
    ray = _ray()
    if not ray.is_initialized():
        start_ray(runtime)
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // _cpus(runtime))
    if runtime.gpus_per_evaluation > 0:
        slots = min(slots, int(resources.get("GPU", 0) / runtime.gpus_per_evaluation))
    return max(1, slots)


def _cpus(runtime) -> int:
    return max(1, runtime.threads)


def gpu_index(assigned, visible) -> int:
    """Torch's index of the GPU Ray reserved (``assigned``: ``ray.get_gpu_ids()``) in a process whose
    torch sees the GPUs ``visible`` (CUDA_VISIBLE_DEVICES at its CUDA start, in order)."""
    visible = [str(v).strip() for v in visible]
    first = str(assigned[0]).strip() if len(assigned) else None
    if first not in visible:
        raise RuntimeError(f"Ray reserved GPU {first} for this evaluation but its worker process sees only GPUs "
                           f"{visible}; start the Ray nodes with {NOSET_CUDA}=1 `ray start ...`.")
    return visible.index(first)


def task_device(gpus: float) -> str:
    """The device of a Ray task that reserved ``gpus`` GPUs: the CPU for none, else the reserved GPU
    as this worker process's torch numbers it (``cuda:0`` of Ray's CUDA_VISIBLE_DEVICES, or, with
    every GPU visible, the GPU's own id)."""
    if gpus <= 0:
        return "cpu"
    import ray
    import torch

    if not _RAY.cuda_visible:  # first GPU task of this process: torch's CUDA starts with today's variable
        listed = os.environ.get("CUDA_VISIBLE_DEVICES")
        _RAY.cuda_visible.extend(listed.split(",") if listed else range(torch.cuda.device_count()))
    return f"cuda:{gpu_index(ray.get_gpu_ids(), _RAY.cuda_visible)}"


def _run_task(function, item, shared: dict, threads: int, gpus: float = 0.0):
    """One evaluation in a Ray worker: the run's constants known, this process's torch threads set,
    on the device the task reserved (:func:`task_device`)."""
    from .process import configure_threads
    from .scoop_engine import evaluating_on

    _RAY.received.update(shared)
    configure_threads(threads)  # the task's own CPUs, not every core of the node (first call wins)
    with evaluating_on(task_device(gpus)):
        return function(item)


def _remote(runtime):
    ray = _ray()
    options = (_cpus(runtime), float(runtime.gpus_per_evaluation), int(runtime.ray_max_retries))
    if options not in _RAY.remotes:
        cpus, gpus, retries = options
        # retry_exceptions stays off: an evaluation reports its own failures; only lost workers rerun;
        # max_calls 0: a worker runs any number of tasks (Ray's default for GPU tasks is one)
        _RAY.remotes[options] = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=retries, max_calls=0)(_run_task)
    return _RAY.remotes[options]


def ray_map(function, items, runtime, hint: str):
    """``map(function, items)`` as Ray tasks, results in order (a generator, like SCOOP's map).

    Ends with :class:`RayStall` (``hint`` ends its message) when no result comes for
    ``runtime.stall_timeout`` seconds: e.g. every node is gone, or no node can ever fit a task.
    """
    ray = _ray()
    if not ray.is_initialized():
        start_ray(runtime)
    from ray.exceptions import GetTimeoutError

    remote = _remote(runtime)
    function_ref = ray.put(function)  # the recipe and dataset reference, once for every task
    item_refs = [ray.put(item) for item in items]  # each learngene once, even when its task is rerun
    threads = runtime.threads if runtime.threads > 0 else 1
    gpus = float(runtime.gpus_per_evaluation)
    refs = [remote.remote(function_ref, ref, dict(_RAY.shared), threads, gpus) for ref in item_refs]
    fetched = 0
    try:
        for ref in refs:
            try:
                result = ray.get(ref, timeout=runtime.stall_timeout)
            except GetTimeoutError:
                raise RayStall(f"no Ray evaluation finished for {runtime.stall_timeout:.0f} s (every worker gone, "
                               f"or no node fits a task's resources); {hint}") from None
            fetched += 1  # before the yield: a consumer may stop right after the last result
            yield result
    finally:
        # the run stopped early: free the cluster (only unfetched tasks: cancelling a finished task
        # that Ray had rerun crashes Ray 2.60's driver, "Tried to complete task that was not pending")
        for ref in refs[fetched:]:
            ray.cancel(ref)


def share(key: str, value) -> None:
    """Put ``value`` into the object store once; every task sent from now on can read it by ``key``."""
    _RAY.shared[key] = _ray().put(value)


def shared_here(key: str):
    """``(True, value)`` when a Ray task brought ``key`` to this worker, else ``(False, None)``."""
    if key in _RAY.received:
        if key not in _RAY.values:
            _RAY.values.clear()  # one shared context at a time per worker: free the previous one
            _RAY.values[key] = _ray().get(_RAY.received[key])
        return True, _RAY.values[key]
    return False, None


def forget(key: str) -> None:
    """The origin is done with ``key``: its object can be freed once no task holds it."""
    _RAY.shared.pop(key, None)
