"""TEMPORARY demo of ``python -m scoop -m MODULE`` (see ``_scoop_module_hook``); delete it once
``learngene_ea.run`` exists and ``tests/test_scoop_launch.py`` launches that instead.

Run it as ``python -m scoop -n 2 -m learngene_ea._scoop_demo ARGS``, as
``python -m scoop -n 2 learngene_ea/_scoop_demo.py ARGS`` or as ``python -m learngene_ea._scoop_demo``.
It prints one line ``DEMO_RESULT {json}`` that the tests read.
"""
import fcntl
import importlib
import json
import os
import sys
import tempfile
import time

import scoop

_slot_lock = None


def local_worker_slot():
    """This process's index among the SCOOP processes of this run on this host (0, 1, ...).

    SCOOP has no worker index: the first free ``flock`` slot file, keyed by the broker's port
    (unique per run), is claimed and held for the life of the process.
    """
    global _slot_lock
    if _slot_lock is not None:
        return _slot_lock[0]
    run_key = scoop.BROKER.task_port if scoop.IS_RUNNING else os.getpid()
    for slot in range(4096):
        path = os.path.join(tempfile.gettempdir(), "learngene_ea-scoop-{0}-{1}.lock".format(run_key, slot))
        f = open(path, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _slot_lock = (slot, f)
        return slot
    raise RuntimeError("no free worker slot")


class Tagged:
    """A class defined in the run module: its instances travel origin <-> workers."""

    def __init__(self, value):
        self.value = value
        self.pid = os.getpid()


def square(x):
    return x * x


def whoami(i):
    time.sleep(0.3)  # long enough for the other worker to take some of the tasks
    worker = scoop.worker.decode() if isinstance(getattr(scoop, "worker", None), bytes) else None
    return {"i": i, "pid": os.getpid(), "is_origin": bool(getattr(scoop, "IS_ORIGIN", False)),
            "size": getattr(scoop, "SIZE", None), "worker": worker, "slot": local_worker_slot(),
            "module": __name__}


def make_tagged(x):
    time.sleep(0.2)
    return Tagged(x)


def main(argv):
    relative_import = False
    if __package__:  # run as a module (-m): relative imports work; not when run as a file
        from .errors import UserError

        relative_import = issubclass(UserError, Exception)
    if scoop.IS_RUNNING:
        from scoop import futures
        pmap = futures.map
    else:
        pmap = map
    as_module = importlib.import_module("learngene_ea._scoop_demo")  # pickled by package name
    tagged = list(pmap(make_tagged, range(6)))
    result = {
        "argv": argv,
        "argv0": sys.argv[0],
        "name": __name__,
        "package": __package__,
        "relative_import": relative_import,
        "scoop_running": bool(scoop.IS_RUNNING),
        "abs": sorted(pmap(abs, [-1, -2, 3])),
        "square_main": list(pmap(square, [1, 2, 3])),
        "square_module": list(pmap(as_module.square, [4, 5])),
        "square_module_name": as_module.square.__module__,
        "tagged_ok": all(isinstance(t, Tagged) for t in tagged),
        "tagged_pids": sorted({t.pid for t in tagged}),
        "whoami": list(pmap(whoami, range(8))),
        "origin_pid": os.getpid(),
    }
    print("DEMO_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
