"""Example custom operators, used by ``genomes/custom-operator.yaml`` and the README.

Any function with DEAP's operator signature can replace a GTL operator from a recipe:

    operators:
      mutate:
        function: learngene_ea.examples:mut_shrink_contiguous
        kwargs: {target_fraction: 0.25}
"""
from __future__ import annotations

import numpy as np

from .individual import individual_spec, masks_of
from .learngene import learngene_fraction
from .operators import shrink_schedule


def mut_shrink_contiguous(individual, target_fraction=0.25, schedule_generations=4, min_channels=1):
    """Shrink to the scheduled fraction keeping the *first* channels of every group.

    The learngene then is a narrow copy of the network (channels ``0..k-1`` in every layer),
    which a narrower descendant inherits whole. Returns a 1-tuple, fitness invalidated.
    """
    spec = individual_spec(individual)
    goal = shrink_schedule(individual.born, target_fraction, schedule_generations)
    counts = {g: int(m.sum()) for g, m in masks_of(individual).items()}

    def prefix(share):
        return {g: np.arange(size) < max(min_channels, int(share * counts[g])) for g, size in spec.groups}

    low, high = 0.0, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if learngene_fraction(spec, prefix(mid)) <= goal else (low, mid)
    for i, name in enumerate(spec.group_names):
        individual[i] = prefix(low)[name]
    del individual.fitness.values
    return (individual,)
