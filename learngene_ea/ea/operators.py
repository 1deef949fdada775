"""GTL's genetic operators, written as DEAP operators.

Conventions (as in ``deap.tools``): every operator is a plain function; variation operators
change their individuals in place, invalidate their fitness and return a tuple (mutation a
1-tuple); selection returns references. Randomness comes from the ``random`` module, whose
state every checkpoint saves. Operators act on masks and numbers only; they read trained
weights through :func:`~learngene_ea.core.learngene.channel_importance`.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from deap import tools
from deap.tools.emo import assignCrowdingDist

from ..core.individual import individual_spec, masks_of
from ..core.learngene import channel_importance, learngene_fraction

# ------------------------------------------------------------------------- selection


def accuracy_of(individual) -> float:
    return individual.fitness.values[0]


def fraction_value(individual) -> float:
    return individual.fitness.values[1]


def sel_parsimony_tournament(individuals, k, tournsize, tolerance=0.01):
    """Select ``k`` individuals by ``k`` tournaments of ``tournsize`` aspirants (drawn with replacement).

    The winner is the most accurate aspirant, except that any aspirant whose accuracy is
    within ``tolerance`` of the best is preferred when its learngene is smaller (parsimony);
    among those the smallest learngene wins, ties going to the more accurate.
    Returns a list of references to the winners.
    """
    chosen = []
    for _ in range(k):
        aspirants = [random.choice(individuals) for _ in range(tournsize)]
        best = max(accuracy_of(a) for a in aspirants)
        close = [a for a in aspirants if accuracy_of(a) >= best - tolerance]
        chosen.append(min(close, key=lambda a: (fraction_value(a), -accuracy_of(a))))
    return chosen


def sel_crowded_tournament(individuals, k, tournsize=2):
    """Select ``k`` individuals by NSGA-II's crowded tournaments of ``tournsize`` aspirants (with replacement).

    The winner has the best non-domination rank on (accuracy, fraction); among equals, the
    largest crowding distance (the loneliest on its front, to keep every size explored). Unlike
    ``tools.selTournamentDCD`` it takes any ``k`` and population size. Sets
    ``fitness.crowding_dist`` (DEAP's ``assignCrowdingDist``). Returns a list of references.
    """
    rank = {}
    for level, front in enumerate(tools.sortNondominated(individuals, len(individuals))):
        assignCrowdingDist(front)
        rank.update((id(ind), level) for ind in front)
    chosen = []
    for _ in range(k):
        aspirants = [random.choice(individuals) for _ in range(tournsize)]
        chosen.append(min(aspirants, key=lambda a: (rank[id(a)], -a.fitness.crowding_dist)))
    return chosen


def sel_elites(individuals, k):
    """The ``k`` most accurate individuals (smaller learngene first on ties), as references."""
    return sorted(individuals, key=lambda a: (-accuracy_of(a), fraction_value(a)))[:k]


# -------------------------------------------------------------------------- schedule


def shrink_schedule(generation, target_fraction, generations, kind="geometric", start=1.0):
    """The learngene fraction a mutation aims for in ``generation``.

    ``geometric``: ``start * (target/start) ** (g / generations)``; ``linear``: a straight line
    from ``start`` to the target; both stay at the target from ``generations`` on. ``none``:
    the target right away.
    """
    if kind == "none" or generation >= generations:
        return target_fraction  # exactly: ``start + (target - start) * 1.0`` may round below it
    progress = max(generation, 0) / generations
    if kind == "linear":
        return start + (target_fraction - start) * progress
    return start * (target_fraction / start) ** progress


# -------------------------------------------------------------------------- mutation


def keep_top_channels(mask, scores, keep):
    """Mask keeping the ``keep`` highest-scoring channels among those kept in ``mask``."""
    kept = np.flatnonzero(mask)
    if keep >= len(kept):
        return mask.copy()
    order = kept[np.argsort(-scores[kept], kind="stable")]
    new = np.zeros_like(mask)
    new[order[:keep]] = True
    return new


def _importance(individual, criterion):
    masks = masks_of(individual)
    spec = individual_spec(individual)
    if criterion == "random" or individual.learngene is None:
        # random order: a random score per channel (from ``random`` so checkpoints restore it)
        return {g: np.array([random.random() for _ in range(size)]) for g, size in spec.groups}
    learngene = individual.learngene.restrict(masks)
    scores = channel_importance(learngene, criterion)
    for group, mask in masks.items():  # kept but never trained (just re-added): keep for now
        scores[group][mask & ~learngene.masks[group]] = np.inf
    return scores


def perturbed_scores(scores, temperature):
    """Keys whose top-k is a draw of k channels in proportion to ``score ** (1 / temperature)``.

    Gumbel top-k (sampling without replacement, Plackett-Luce): ``log(score) / T + Gumbel``.
    Scores are divided by their group's mean first, so T means the same for every criterion;
    ``temperature`` 0 returns ``scores`` unchanged (the deterministic rule); infinite scores
    (channels that must stay) stay infinite. Draws from ``random`` (checkpoints restore it).
    """
    if temperature <= 0:
        return scores
    keyed = {}
    for group, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        scale = float(np.mean(np.abs(values[finite]))) if finite.any() else 1.0
        logs = np.log(np.maximum(np.abs(values) / max(scale, 1e-300), 1e-12)) / temperature
        gumbel = np.array([-math.log(-math.log(max(random.random(), 1e-300))) for _ in range(len(values))])
        keyed[group] = np.where(finite, logs + gumbel, np.inf)
    return keyed


def mut_shrink(individual, goal_fraction, criterion="l1", min_channels=1, temperature=0.0):
    """Drop channels until the learngene fraction is at most ``goal_fraction``.

    Every group keeps the same share of its channels (the largest share that meets the goal),
    and never fewer than ``min_channels``, so circuits stay complete. Which channels stay is
    decided by ``criterion`` (``l1`` filter norm, ``bn`` BatchNorm scale, or ``random``): the
    most important at ``temperature`` 0, a draw weighted by importance above it
    (:func:`perturbed_scores`). Returns a 1-tuple.
    """
    spec = individual_spec(individual)
    masks = masks_of(individual)
    if learngene_fraction(spec, masks) > goal_fraction:
        scores = perturbed_scores(_importance(individual, criterion), temperature)
        counts = {g: int(m.sum()) for g, m in masks.items()}

        def shrunk(share):
            return {g: keep_top_channels(masks[g], scores[g], max(min(min_channels, counts[g]),
                                                          int(math.floor(share * counts[g]))))
                    for g in masks}

        low, high = 0.0, 1.0  # largest share whose fraction meets the goal
        for _ in range(30):
            mid = (low + high) / 2
            if learngene_fraction(spec, shrunk(mid)) <= goal_fraction:
                low = mid
            else:
                high = mid
        new = shrunk(low)
        for i, name in enumerate(spec.group_names):
            individual[i] = new[name]
    del individual.fitness.values
    return (individual,)


def _random_round(value: float) -> int:
    """``floor(value)``, plus one with probability ``value``'s fractional part (its mean is ``value``)."""
    whole = math.floor(value)
    return int(whole) + (random.random() < value - whole)


def mut_swap(individual, fraction, criterion="l1", temperature=0.0):
    """Exchange kept channels for dropped ones, the learngene's size unchanged. Returns a 1-tuple.

    In every group about ``fraction`` of the kept channels (rounded at random, so that small
    groups swap too; never more than the group has dropped) leave: the least important by
    ``criterion``, drawn at ``temperature`` (:func:`perturbed_scores`). As many dropped channels,
    drawn at random, take their place.
    """
    scores = None
    for i, (name, mask) in enumerate(zip(individual_spec(individual).group_names, individual)):
        kept, dropped = np.flatnonzero(mask), np.flatnonzero(~mask)
        count = min(_random_round(fraction * len(kept)), len(dropped), len(kept) - 1)
        if count <= 0:
            continue
        if scores is None:
            scores = perturbed_scores(_importance(individual, criterion), temperature)
        new = keep_top_channels(mask, scores[name], len(kept) - count)
        new[random.sample(list(dropped), count)] = True
        individual[i] = new
    del individual.fitness.values
    return (individual,)


def mut_grow(individual, fraction):
    """Re-add ``fraction`` of each group's dropped channels, chosen at random. Returns a 1-tuple.

    Re-added channels have no trained weights yet: the next descendant initialises them fresh.
    """
    for i, mask in enumerate(individual):
        dropped = np.flatnonzero(~mask)
        count = int(round(fraction * len(dropped)))
        if count:
            new = mask.copy()
            new[random.sample(list(dropped), count)] = True
            individual[i] = new
    del individual.fitness.values
    return (individual,)


def mut_flip(individual, indpb, min_channels=1):
    """Flip each mask bit with probability ``indpb``; a group never falls below ``min_channels``.

    Returns a 1-tuple.
    """
    for i, mask in enumerate(individual):
        new = mask.copy()
        for c in range(len(new)):
            if random.random() < indpb:
                new[c] = not new[c]
        floor = min(min_channels, len(new))
        if new.sum() < floor:  # give back the channels this flip took, in random order
            lost = [c for c in np.flatnonzero(mask & ~new)]
            random.shuffle(lost)
            for c in lost[: floor - int(new.sum())]:
                new[c] = True
        individual[i] = new
    del individual.fitness.values
    return (individual,)


@dataclass(frozen=True)
class ShrinkSchedule:
    """Where the shrink goes: ``target_fraction`` after ``generations`` generations, along ``kind``
    (``geometric``, ``linear`` or ``none``; see :func:`shrink_schedule`)."""

    target_fraction: float
    kind: str = "geometric"
    generations: int = 4

    def goal(self, generation: int) -> float:
        """The fraction a mutation aims for in ``generation``."""
        return shrink_schedule(generation, self.target_fraction, self.generations, self.kind)


@dataclass(frozen=True)
class ChannelChoice:
    """How shrink and swap choose the channels that leave: by ``criterion`` (``l1``, ``bn``,
    ``random``, ``score``), the least important at ``temperature`` 0, a weighted draw above it."""

    criterion: str = "l1"
    temperature: float = 0.0


def mut_learngene(individual, schedule, criterion="l1", min_channels=1, grow_fraction=0.0, flip_prob=0.0,
                  swap_fraction=0.0):
    """GTL's learngene mutation: grow, flip, shrink to this generation's scheduled fraction, swap.

    The goal comes from ``schedule`` (a :class:`ShrinkSchedule`; a number is a target fraction
    reached at once) at ``individual.born`` (the generation the offspring is made for).
    Re-added channels are never dropped by the shrink of the same mutation, so growing swaps a
    few old channels for fresh ones. ``criterion``: a criterion's name or a :class:`ChannelChoice`
    (whose temperature makes shrink and swap draw which channels leave: :func:`perturbed_scores`);
    ``swap_fraction`` (:func:`mut_swap`) keeps learngenes that have reached their size exploring.
    Returns a 1-tuple.
    """
    choice = criterion if isinstance(criterion, ChannelChoice) else ChannelChoice(criterion)
    if not isinstance(schedule, ShrinkSchedule):
        schedule = ShrinkSchedule(float(schedule), "none")
    goal = schedule.goal(individual.born)
    if grow_fraction > 0:
        mut_grow(individual, grow_fraction)
    if flip_prob > 0:
        mut_flip(individual, flip_prob, min_channels)
    mut_shrink(individual, goal, choice.criterion, min_channels, choice.temperature)
    if swap_fraction > 0:
        mut_swap(individual, swap_fraction, choice.criterion, choice.temperature)
    return (individual,)


# ------------------------------------------------------------------------- crossover


def cx_channels(ind1, ind2, indpb=0.5):
    """Channel crossover: swap whole mask groups between the two individuals with probability ``indpb``.

    Each child keeps its own weights; channels that arrive from the other parent start fresh
    in its next descendant. Groups are swapped whole, so circuits stay complete. Returns both.
    """
    for i in range(len(ind1)):
        if random.random() < indpb:
            ind1[i], ind2[i] = ind2[i].copy(), ind1[i].copy()
    parents = sorted(set(getattr(ind1, "parents", [])) | set(getattr(ind2, "parents", [])))
    ind1.parents, ind2.parents = list(parents), list(parents)
    del ind1.fitness.values
    del ind2.fitness.values
    return ind1, ind2
