"""Learngene individuals: DEAP creator classes (made in :mod:`.deap_classes`) with masks and lineage.

An individual is a ``list`` of numpy bool masks, one per mask group of its architecture (in
``spec.groups`` order), with a two-objective fitness: few-shot accuracy (maximised) and
learngene fraction (minimised). Attributes carried along:

- ``arch``: ``(family, width, in_channels)`` of the ancestry (``individual_spec`` rebuilds it);
- ``learngene``: the trained sub-kernel weights (:class:`~learngene_ea.core.learngene.Learngene`),
  or ``None`` before the first training (generation 0);
- lineage: ``id``, ``parents`` (ids), ``born`` (generation it was made in);
- ``evaluation``: what its last fitness evaluation reported (accuracy CI, loss, error, ...).
"""
from __future__ import annotations

import numpy as np

from .deap_classes import LearngeneIndividual  # the creator class, made there
from .learngene import Learngene
from .backbone import ArchSpec
from .models import arch_spec


def make_individual(spec: ArchSpec, masks: dict[str, np.ndarray], ident: int, born: int = 0,
                    parents: tuple[int, ...] = (), learngene: Learngene | None = None):
    """A new individual with the given masks (copied) and lineage."""
    ind = LearngeneIndividual(np.asarray(masks[name], dtype=bool).copy() for name in spec.group_names)
    ind.arch = (spec.family, float(spec.width), int(spec.in_channels))
    ind.learngene = learngene
    ind.id = int(ident)
    ind.parents = list(parents)
    ind.born = int(born)
    ind.evaluation = {}
    return ind


def individual_spec(individual) -> ArchSpec:
    return arch_spec(*individual.arch)


def masks_of(individual) -> dict[str, np.ndarray]:
    """The individual's masks keyed by group name."""
    return dict(zip(individual_spec(individual).group_names, individual))


def same_masks(a, b) -> bool:
    """Identical masks in every group (with Lamarckian inheritance, not the same learngene)."""
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def same_individual(a, b) -> bool:
    """Similarity for ``tools.HallOfFame(similar=...)``: the same individual (an elite's copy).

    Only copies of one individual are duplicates. Two individuals with equal masks are not:
    their learngene weights differ, and the hall of fame must keep the more accurate one.
    """
    return a.id == b.id and a.fitness.values == b.fitness.values
