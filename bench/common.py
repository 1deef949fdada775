"""Helpers every benchmark row shares."""
from __future__ import annotations

import statistics
import time

from learngene_ea.evolve import new_state


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
