"""A module that SCOOP abandons mid-run, for tests/test_scoop_launch.py (not part of the package).

When a worker dies, SCOOP 0.7.2's broker may crash on sending it work; SCOOP then shuts its pool
down and ends the root program's greenlet with ``GreenletExit`` (no error of its own). This
module ends the same way, deterministically: ``python -m scoop -n 2 -m lgea_scoop_demo.abandoned``.
"""
import greenlet

if __name__ == "__main__":  # the origin (SCOOP's workers load this module too, as "SCOOP_WORKER")
    print("ABANDONED_STARTED", flush=True)
    raise greenlet.GreenletExit()
