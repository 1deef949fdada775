"""A module interrupted (Ctrl-C) while its origin waits on the workers, for tests/test_scoop_launch.py.

``python -m scoop -n 2 -m lgea_scoop_demo.interrupted [seconds]``: the origin maps naps over the pool
and, like learngene_ea's commands, turns a KeyboardInterrupt into one sentence and exit status 130.
SCOOP's origin waits for results in its controller greenlet, where Ctrl-C would otherwise end it
with SCOOP's traceback and status 1.
"""
import sys
import time

from scoop import futures


def nap(seconds):
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":  # the origin (SCOOP's workers load this module too, as "SCOOP_WORKER")
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    print("INTERRUPTED_STARTED", flush=True)
    try:
        list(futures.map(nap, [seconds] * 8))
    except KeyboardInterrupt:
        print("interrupted: DEMO_SENTENCE", file=sys.stderr, flush=True)
        sys.exit(130)
    print("INTERRUPTED_NOT", flush=True)
