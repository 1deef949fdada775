"""How different a generation's learngenes are, and whether their fitness differences exceed noise.

Figures for the logbook (:func:`diversity_record`), computed from masks and evaluations only:

- ``div_masks``, ``div_jaccard``: distinct masks among the individuals evaluated this generation,
  and their mean pairwise overlap (Jaccard of the kept channels, all groups together; 1.0 when
  every individual carries the same mask).
- ``div_spread``: standard deviation of fitness between distinct masks (each mask's mean).
- ``div_clone_sd``: standard deviation of fitness between individuals carrying the *same* mask
  (pooled over such groups): the re-evaluation noise of one mask, None without clones.
- ``div_pair_se``: mean over pairs of evaluated individuals of the standard error of their
  difference, episode by episode on the run's validation episodes: how much of a fitness gap the
  episodes alone explain.
- ``target_masks``, ``target_jaccard``: the same two figures for the whole population at or below
  the target fraction.

A selection signal is above the noise when ``div_spread`` clearly exceeds ``div_clone_sd`` and
``div_pair_se``.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..core.individual import masks_of


def kept_channels(individual) -> np.ndarray:
    """All the individual's mask groups as one boolean vector (group order fixed by its spec)."""
    masks = masks_of(individual)
    return np.concatenate([np.asarray(masks[g], dtype=bool) for g in sorted(masks)])


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Shared kept channels over channels kept by either (1.0 for two empty masks)."""
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def mask_overlap(individuals) -> tuple[int, float | None]:
    """(distinct masks, mean pairwise Jaccard) of ``individuals``; the mean is None for fewer than two."""
    vectors = [kept_channels(ind) for ind in individuals]
    distinct = len({v.tobytes() for v in vectors})
    pairs = [jaccard(a, b) for a, b in itertools.combinations(vectors, 2)]
    return distinct, (float(np.mean(pairs)) if pairs else None)


def _accuracy(individual) -> float:
    return float(individual.fitness.values[0])


def fitness_spread(individuals) -> tuple[float | None, float | None]:
    """(sd between distinct masks' mean fitness, pooled sd within groups of identical masks)."""
    groups: dict[bytes, list[float]] = {}
    for ind in individuals:
        groups.setdefault(kept_channels(ind).tobytes(), []).append(_accuracy(ind))
    means = [float(np.mean(v)) for v in groups.values()]
    between = float(np.std(means, ddof=1)) if len(means) > 1 else None
    clones = [v for v in groups.values() if len(v) > 1]
    if not clones:
        return between, None
    squares = sum(float(np.sum((np.asarray(v) - np.mean(v)) ** 2)) for v in clones)
    within = math.sqrt(squares / sum(len(v) - 1 for v in clones))
    return between, within


def paired_episode_se(individuals) -> float | None:
    """Mean standard error of the per-episode difference between two individuals (None without data)."""
    rows = [np.asarray(ind.evaluation.get("episode_accuracies"), dtype=np.float64) for ind in individuals
            if getattr(ind, "evaluation", {}).get("episode_accuracies")]
    errors = [float(np.std(a - b, ddof=1) / math.sqrt(a.size)) for a, b in itertools.combinations(rows, 2)
              if a.size == b.size and a.size > 1]
    return float(np.mean(errors)) if errors else None


def diversity_record(evaluated, population, target_fraction: float, slack: float = 1e-9) -> dict:
    """The logbook's diversity figures (module docstring) for one generation."""
    scored = [ind for ind in evaluated if not getattr(ind, "evaluation", {}).get("error")]
    masks, overlap = mask_overlap(scored) if scored else (0, None)
    spread, clone_sd = fitness_spread(scored) if scored else (None, None)
    at_target = [ind for ind in population if ind.fitness.values[1] <= target_fraction + slack]
    target_masks, target_overlap = mask_overlap(at_target) if at_target else (0, None)
    return {"div_masks": masks, "div_jaccard": overlap, "div_spread": spread, "div_clone_sd": clone_sd,
            "div_pair_se": paired_episode_se(scored), "target_masks": target_masks, "target_jaccard": target_overlap}
