"""Helpers every benchmark row shares."""
from __future__ import annotations

import glob
import json
import os
import statistics
import time

from learngene_ea.ea.evolve import new_state


def median_seconds(fn, repeats):
    """Median wall-clock seconds of ``repeats`` calls of ``fn``, and every call's seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def fresh_population(cfg):
    """Generation 0 of ``cfg``'s evolution, each individual marked as evaluated in generation 0."""
    population = new_state(cfg).population
    for ind in population:
        ind.evaluated_in = 0
    return population


def medians_in_turns(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Call every function of ``runs`` once per round, in turns, for one warm-up round and then
    ``repeats`` timed rounds, so that one-off costs and a drift of the machine's speed hit them
    alike. Returns each key's median seconds over the timed rounds, and its last return value."""
    times, last = {key: [] for key in runs}, {}
    for _ in range(repeats + 1):
        for key, fn in runs.items():
            start = time.perf_counter()
            last[key] = fn()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values[1:]) for key, values in times.items()}, last


def seed_folders(study: str) -> list[str]:
    """A study folder's ``seed-N`` folders (``python -m learngene_ea.study --out``), by seed; exits when none."""
    folders = sorted(glob.glob(os.path.join(study, "seed-*")), key=lambda f: int(f.rsplit("-", 1)[1]))
    if not folders:
        raise SystemExit(f"no seed-N folders in {study}")
    return folders


def write_results(out: str, results: dict, markdown: str) -> None:
    """``OUT.json`` (every number) and ``OUT.md`` (the tables) of a bench, and the tables on stdout."""
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown + "\n")
    print(markdown)
