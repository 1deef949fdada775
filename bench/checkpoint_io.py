"""The checkpoint row of ``python -m bench``: time to write and read a generation's checkpoint vs
the generation's time, and bytes per individual."""
from __future__ import annotations

import os
import tempfile
import time

from bench.common import median_seconds
from learngene_ea.io.checkpoint import load_checkpoint, save_checkpoint
from learngene_ea.ea.evolve import new_state
from learngene_ea.ea.state import checkpoint_payload


def bench_checkpoint(cfg):
    """Seconds to write and read generation 0's checkpoint (medians of 5) vs the generation's seconds."""
    from learngene_ea.ea.evolve import evolve
    from learngene_ea.ea.toolbox import build_toolbox

    start = time.perf_counter()
    state = evolve(cfg, build_toolbox(cfg), new_state(cfg), log=lambda *a: None)  # generation 0 only
    generation_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gen.pkl")
        write, _ = median_seconds(lambda: save_checkpoint(checkpoint_payload(state, cfg, "bench"), path), 5)
        read, _ = median_seconds(lambda: load_checkpoint(path), 5)
        size = os.path.getsize(path)
    return {"generation_seconds": generation_seconds, "write_seconds": write, "read_seconds": read,
            "fraction_of_generation": (write + read) / generation_seconds, "bytes": size,
            "bytes_per_individual": size / len(state.population), "note": "generation 0: whole-network learngenes "
            "(the largest a checkpoint gets)"}
