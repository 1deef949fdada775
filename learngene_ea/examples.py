"""Example custom operators, used by ``genomes/custom-operator.yaml`` and the README.

Any function with DEAP's operator signature can replace a GTL operator from a recipe:

    operators:
      mutate:
        function: learngene_ea.examples:mut_shrink_contiguous
        kwargs: {target_fraction: 0.25}

An operator that declares ``config`` receives the run's resolved config, and an ``evaluate``
that declares ``dataset`` the run's dataset (see :func:`evaluate_quick`).
"""
from __future__ import annotations

import numpy as np

from .ea.fitness import Evaluation, score_descendant, train_descendant, validation_episodes
from .parallel.process import configure_process
from .core.individual import individual_spec, masks_of
from .core.learngene import extract_learngene, learngene_fraction
from .ea.operators import shrink_schedule
from .parallel.scoop_engine import worker_device


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


def evaluate_quick(individual, config, dataset, episodes=10):
    """A fitness that sees the run: the default descendant training, scored on the first
    ``episodes`` of the run's validation episodes only (a quicker, noisier fitness).

    ``config`` (the run's resolved recipe) and ``dataset`` (loaded once per worker) are passed
    in because the signature declares them. Returns an ``Evaluation`` (Lamarckian: the trained
    learngene goes back to the individual); a plain ``(accuracy, fraction)`` tuple works too.
    """
    configure_process(config.runtime)
    device = worker_device(config.runtime.device)
    generation = getattr(individual, "evaluated_in", individual.born)
    model, loss = train_descendant(individual, config, dataset, generation, device)
    masks = masks_of(individual)
    first_episodes = validation_episodes(config, dataset, count=episodes)  # episode i depends on i alone
    accuracy, ci95 = score_descendant(model, config, dataset, device, first_episodes)
    fraction = learngene_fraction(individual_spec(individual), masks)
    return Evaluation((accuracy, fraction), extract_learngene(model, masks, meta={"id": individual.id}),
                      {"accuracy": accuracy, "ci95": ci95, "loss": loss, "episodes": episodes})
