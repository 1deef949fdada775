"""TEMPORARY demo of ``python -m scoop -m MODULE`` (see ``_scoop_module_hook``); delete it once
``learngene_ea.run`` exists and ``tests/test_scoop_launch.py`` launches that instead.

Run it as ``python -m scoop -n 2 -m learngene_ea._scoop_demo ARGS``, as
``python -m scoop -n 2 learngene_ea/_scoop_demo.py ARGS`` or as ``python -m learngene_ea._scoop_demo``.
It prints one line ``DEMO_RESULT {json}`` that the tests read.
"""
import importlib
import json
import os
import socket
import sys
import time

import scoop

_slot_socket = None


def local_worker_slot():
    """This process's index among the SCOOP processes of this run on this host (0, 1, ...).

    SCOOP has no worker index. Each process claims the first free name among Linux abstract
    unix sockets keyed by the broker's port (unique per run); the kernel frees the name when the
    process dies, so nothing is left behind.
    """
    global _slot_socket
    if _slot_socket is not None:
        return _slot_socket[0]
    run_key = scoop.BROKER.task_port if scoop.IS_RUNNING else "pid{0}".format(os.getpid())
    for slot in range(4096):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind("\0learngene_ea-scoop-{0}-{1}".format(run_key, slot))
        except OSError:
            sock.close()
            continue
        _slot_socket = (slot, sock)
        return slot
    raise RuntimeError("no free worker slot")


class Tagged:
    """A class defined in the run module: made on a worker, its instances come back to the origin."""

    def __init__(self, i):
        self.i = i
        self.pid = os.getpid()
        self.is_origin = bool(getattr(scoop, "IS_ORIGIN", False))
        self.size = getattr(scoop, "SIZE", None)
        worker = getattr(scoop, "worker", None)
        self.worker = worker.decode() if isinstance(worker, bytes) else None
        self.slot = local_worker_slot()
        self.module = __name__  # "SCOOP_WORKER" on workers when run by SCOOP

    def as_dict(self):
        return dict(vars(self))


def square(x):
    return x * x


def ping(i):
    time.sleep(0.1)
    return Tagged(i)


def spread(pmap, fn, count):
    """``list(pmap(fn, range(count)))``, repeated until another process ran some of the calls.

    SCOOP hands work out dynamically (the first map of a function may well run entirely on the
    origin, before SCOOP knows how long a call takes); give up after 60 s.
    """
    deadline = time.time() + 60
    while True:
        results = list(pmap(fn, range(count)))
        others = any(r.pid != os.getpid() for r in results)
        if others or not scoop.IS_RUNNING or time.time() > deadline:
            return results


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
    from_main = spread(pmap, ping, 8)  # ping and Tagged pickled as __main__.ping, __main__.Tagged
    from_module = spread(pmap, as_module.ping, 8)
    result = {
        "argv": argv,
        "argv0": sys.argv[0],
        "name": __name__,
        "package": __package__,
        "relative_import": relative_import,
        "scoop_running": bool(scoop.IS_RUNNING),
        "origin_pid": os.getpid(),
        "abs": sorted(pmap(abs, [-1, -2, 3])),
        "square_main": list(pmap(square, [1, 2, 3])),
        "square_module": list(pmap(as_module.square, [4, 5])),
        "square_module_name": as_module.square.__module__,
        "main_tagged_ok": all(type(t) is Tagged for t in from_main),
        "main_calls": [t.as_dict() for t in from_main],
        "module_tagged_ok": all(type(t) is as_module.Tagged for t in from_module),
        "module_calls": [t.as_dict() for t in from_module],
    }
    print("DEMO_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
