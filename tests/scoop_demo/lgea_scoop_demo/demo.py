"""Demo of ``python -m scoop -m MODULE`` for tests/test_scoop_launch.py (not part of the package).

With ``tests/scoop_demo`` on PYTHONPATH, run it as ``python -m scoop -n 2 -m lgea_scoop_demo.demo
ARGS``, as ``python -m scoop -n 2 tests/scoop_demo/lgea_scoop_demo/demo.py ARGS`` or as
``python -m lgea_scoop_demo.demo ARGS``. It prints one line ``DEMO_RESULT {json}`` that the
tests read.
"""
import importlib
import json
import os
import sys
import time

import scoop

from learngene_ea.parallel import scoop_engine as workers
from learngene_ea.parallel.process import default_threads

MODULE_NAME = "lgea_scoop_demo.demo"


class Tagged:
    """A class defined in the run module: made on a worker, its instances come back to the origin."""

    def __init__(self, i):
        self.i = i
        self.pid = os.getpid()
        self.is_origin = bool(getattr(scoop, "IS_ORIGIN", False))
        self.size = getattr(scoop, "SIZE", None)
        worker = getattr(scoop, "worker", None)
        self.worker = worker.decode() if isinstance(worker, bytes) else None
        self.slot = workers.local_worker_slot()
        self.worker_index = workers.worker_index()
        self.worker_count = workers.worker_count()
        self.default_threads = default_threads()
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
        from . import PACKAGE_MARK

        relative_import = PACKAGE_MARK == "lgea_scoop_demo"
    if scoop.IS_RUNNING:
        from scoop import futures
        pmap = futures.map
    else:
        pmap = map
    as_module = importlib.import_module(MODULE_NAME)  # pickled by module name
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
