"""Would SCOOP's broker still recognise a running future? For tests/test_scoop_launch.py.

Run as ``python -m scoop -n 2 -m lgea_scoop_demo.visible``. Maps :func:`reported` (which asks,
from inside a running future, whether the set SCOOP's status-report thread sends to the broker
holds that future under the pickled id the broker looks futures up by) once with SCOOP's plain
``futures.map`` and once with learngene-ea's ``watched_scoop_map``; prints one line
``VISIBLE_RESULT {json}``.
"""
import json
import os
import pickle
import time


def reported(i):
    from scoop import _control

    queue = _control.execQueue
    # what scoop._comm.scoopzmq.ZMQCommunicator._reportFutures sends every 25 s
    ids = {f.id for f in queue.movable} | {f.id for f in queue.ready} | {f.id for f in queue.inprogress}
    time.sleep(0.2)
    # the broker records a handed-out future, and the origin asks about it, by its pickled id
    return {"pid": os.getpid(), "reported": pickle.dumps(_control.current.id, pickle.HIGHEST_PROTOCOL) in ids}


def main():
    from scoop import futures

    from learngene_ea.parallel.scoop_engine import watched_scoop_map

    plain = list(futures.map(reported, range(8)))
    watched = list(watched_scoop_map(reported, range(8)))
    print("VISIBLE_RESULT " + json.dumps({"origin": os.getpid(), "plain": plain, "watched": watched}))


if __name__ == "__main__":
    main()
