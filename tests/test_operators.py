"""GTL's operators keep DEAP's conventions and keep circuits complete."""
import copy
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from deap import algorithms, base, tools

from conftest import complete_circuits, fraction_of
from learngene_ea.ea import operators
from learngene_ea.core.individual import individual_spec, make_individual, masks_of, same_masks
from learngene_ea.core.learngene import extract_learngene, full_masks, learngene_fraction
from learngene_ea.core.models import arch_spec, build_model


def individual(family="conv4", width=0.25, ident=0, born=1, with_weights=True, seed=0):
    spec = arch_spec(family, width)
    ind = make_individual(spec, full_masks(spec), ident, born=born)
    if with_weights:
        ind.learngene = extract_learngene(build_model(family, width, seed=seed), full_masks(spec))
    return ind


def evaluated(acc, fraction, ident=0):
    ind = individual(ident=ident, with_weights=False)
    ind.fitness.values = (acc, fraction)
    return ind


# ---------------------------------------------------------------- DEAP compatibility

def test_individuals_work_with_clone_deepcopy_and_hall_of_fame():
    toolbox = base.Toolbox()
    ind = individual()
    ind.fitness.values = (0.5, 1.0)
    clone = toolbox.clone(ind)
    clone[0][0] = False
    assert ind[0][0] and clone.id == ind.id and clone.learngene is not ind.learngene
    assert copy.deepcopy(ind).fitness.values == (0.5, 1.0)
    hof = tools.HallOfFame(2, similar=same_masks)
    hof.update([ind, clone])
    assert len(hof) == 2  # different masks are different individuals


def test_fitness_maximises_accuracy_then_minimises_fraction():
    a, b, c = evaluated(0.6, 0.5), evaluated(0.5, 0.2), evaluated(0.6, 0.3)
    assert a.fitness > b.fitness and c.fitness > a.fitness


def test_statistics_and_logbook_accept_the_population():
    pop = [evaluated(0.1 * i, 1.0 - 0.1 * i, i) for i in range(1, 5)]
    stats = tools.Statistics(key=lambda ind: ind.fitness.values)
    stats.register("max", np.max, axis=0)
    logbook = tools.Logbook()
    logbook.record(gen=0, **stats.compile(pop))
    assert logbook[0]["max"][0] == pytest.approx(0.4)


def test_varAnd_applies_our_operators_unchanged():
    random.seed(0)
    toolbox = base.Toolbox()
    toolbox.register("mutate", operators.mut_learngene, schedule=0.3)
    toolbox.register("mate", operators.cx_channels)
    pop = [individual(ident=i) for i in range(4)]
    for ind in pop:
        ind.fitness.values = (0.5, 1.0)
    offspring = algorithms.varAnd(pop, toolbox, cxpb=0.5, mutpb=1.0)
    assert all(not ind.fitness.valid for ind in offspring)
    assert all(fraction_of(ind) <= 0.3 for ind in offspring)
    assert all(fraction_of(ind) == 1.0 for ind in pop)  # parents untouched


# ------------------------------------------------------------------------- selection

def test_parsimony_tournament_prefers_smaller_learngene_within_tolerance():
    big, small = evaluated(0.700, 0.9, 1), evaluated(0.695, 0.2, 2)
    random.seed(1)
    draws = [[random.choice([big, small]) for _ in range(2)] for _ in range(20)]
    random.seed(1)
    chosen = operators.sel_parsimony_tournament([big, small], k=20, tournsize=2, tolerance=0.01)
    # whenever both meet, the smaller one wins; big only wins tournaments it plays alone
    assert [c.id for c in chosen] == [2 if any(a is small for a in d) else 1 for d in draws]
    assert {c.id for c in chosen} == {1, 2}


def test_parsimony_tournament_prefers_accuracy_outside_tolerance():
    random.seed(3)
    big, small = evaluated(0.75, 0.9, 1), evaluated(0.70, 0.2, 2)
    # 30 aspirants drawn with replacement from two: both take part, the accuracy gap decides
    winner = operators.sel_parsimony_tournament([big, small], 1, 30, 0.01)[0]
    assert winner is big
    # with a tolerance wider than the gap, parsimony decides instead
    assert operators.sel_parsimony_tournament([big, small], 1, 30, 0.1)[0] is small


def tournament(monkeypatch, aspirants, tolerance):
    """The winner of one tournament whose aspirants are drawn in exactly this order."""
    order = iter(aspirants)
    monkeypatch.setattr(operators.random, "choice", lambda population: next(order))
    [winner] = operators.sel_parsimony_tournament(list(aspirants), 1, len(aspirants), tolerance)
    assert next(order, None) is None  # it drew tournsize aspirants, no more
    return winner


# accuracies and tolerances are exact binary fractions, so "gap == tolerance" is exact
@pytest.mark.parametrize("tolerance, winner", [(0.125, "small"), (0.125 - 2 ** -20, "accurate"),
                                               (0.0, "accurate")])
def test_parsimony_tolerance_includes_its_boundary(monkeypatch, tolerance, winner):
    accurate, small = evaluated(0.625, 0.75, 1), evaluated(0.5, 0.25, 2)
    expected = {"accurate": accurate, "small": small}[winner]
    assert tournament(monkeypatch, [accurate, small], tolerance) is expected
    assert tournament(monkeypatch, [small, accurate], tolerance) is expected


def test_parsimony_tolerance_is_measured_from_the_best_aspirant_not_chained(monkeypatch):
    best, close, far = evaluated(0.75, 0.75, 1), evaluated(0.6875, 0.5, 2), evaluated(0.625, 0.125, 3)
    # far is within the tolerance of close, but not of the best: close wins
    assert tournament(monkeypatch, [far, best, close], 0.0625) is close


def test_parsimony_tournament_between_equal_fitnesses_goes_to_the_first_drawn(monkeypatch):
    a, b = evaluated(0.5, 0.5, 1), evaluated(0.5, 0.5, 2)
    assert tournament(monkeypatch, [a, b], 0.01) is a
    assert tournament(monkeypatch, [b, a], 0.01) is b


def test_parsimony_tournament_ties_in_accuracy_go_to_the_smaller_and_in_size_to_the_more_accurate(monkeypatch):
    equal_accuracy, smaller = evaluated(0.5, 0.5, 3), evaluated(0.5, 0.25, 4)
    assert tournament(monkeypatch, [equal_accuracy, smaller], 0.0) is smaller
    less, more = evaluated(0.5, 0.5, 5), evaluated(0.5078125, 0.5, 6)
    assert tournament(monkeypatch, [less, more], 0.125) is more  # equal size within tolerance: the more accurate


def test_selection_returns_references():
    pop = [evaluated(0.5, 0.5, i) for i in range(3)]
    chosen = operators.sel_parsimony_tournament(pop, 5, 2)
    assert all(any(c is p for p in pop) for c in chosen)


# -------------------------------------------------------------------------- mutation

@pytest.mark.parametrize("criterion", ["l1", "bn", "random"])
def test_shrink_reaches_the_goal_and_keeps_circuits(criterion):
    random.seed(0)
    ind = individual("resnet12")
    ind.fitness.values = (0.5, 1.0)
    result = operators.mut_shrink(ind, 0.2, criterion, min_channels=2)
    assert isinstance(result, tuple) and len(result) == 1 and result[0] is ind
    assert not ind.fitness.valid
    assert fraction_of(ind) <= 0.2
    assert fraction_of(ind) > 0.1  # it drops no more than needed
    assert complete_circuits(arch_spec("resnet12", 0.25), masks_of(ind), min_channels=2)


@pytest.mark.parametrize("mutate", [
    lambda ind: operators.mut_shrink(ind, 0.3, "l1"),
    lambda ind: operators.mut_shrink(ind, 1.0, "l1"),  # nothing to drop
    lambda ind: operators.mut_grow(ind, 0.5),
    lambda ind: operators.mut_flip(ind, 0.2),
    lambda ind: operators.mut_learngene(ind, operators.ShrinkSchedule(0.3), grow_fraction=0.1, flip_prob=0.1),
], ids=["shrink", "shrink-nothing-to-drop", "grow", "flip", "learngene"])
def test_every_mutation_returns_a_1_tuple_of_the_same_individual_with_its_fitness_invalidated(mutate):
    random.seed(0)
    ind = individual()
    operators.mut_shrink(ind, 0.5, "random")  # so that grow has channels to re-add
    ind.fitness.values = (0.5, fraction_of(ind))
    result = mutate(ind)
    assert type(result) is tuple and len(result) == 1 and result[0] is ind
    assert not ind.fitness.valid


def first_channels(spec, counts):
    """Masks keeping the first ``counts[group]`` channels of every group."""
    return {name: np.arange(size) < counts[name] for name, size in spec.groups}


def test_shrink_keeps_the_same_largest_share_of_every_group():
    random.seed(0)
    spec = arch_spec("resnet12", 0.25)  # twelve groups of 16, 40, 80 and 160 channels
    ind = individual("resnet12", with_weights=False)
    operators.mut_shrink(ind, 0.3, "random", min_channels=1)
    sizes = spec.group_sizes
    kept = {g: int(m.sum()) for g, m in masks_of(ind).items()}
    # one share s for all: every group keeps floor(s * its size) channels
    share = max(Fraction(kept[g], sizes[g]) for g in kept)
    assert all(kept[g] == math.floor(share * sizes[g]) for g in kept)
    assert len(set(kept.values())) == 4  # groups of different sizes keep different counts
    # the largest such share: the next larger one would miss the goal
    next_share = min(Fraction(kept[g] + 1, sizes[g]) for g in kept)
    grown = first_channels(spec, {g: math.floor(next_share * sizes[g]) for g in kept})
    assert fraction_of(ind) <= 0.3 < learngene_fraction(spec, grown)


def test_shrink_by_l1_drops_the_weakest_filters():
    ind = individual("conv4")
    weights = ind.learngene.weights["blocks.3"]["conv"]
    norms = np.abs(weights).reshape(len(weights), -1).mean(axis=1)
    # make the last group depend only on block 3's own filters: scale them distinctly
    order = np.argsort(norms)
    operators.mut_shrink(ind, 0.5, "l1")
    kept = masks_of(ind)["blocks.3"]
    assert kept[order[-1]] and not kept[order[0]]


def test_shrink_respects_min_channels_even_for_tiny_goals():
    ind = individual("conv4")
    operators.mut_shrink(ind, 0.0001, "l1", min_channels=3)
    assert all(m.sum() == 3 for m in ind)


DROPPED = {"blocks.0": 10, "blocks.1": 6, "blocks.2": 7, "blocks.3": 9}
# 0.3 x dropped = 3.0, 1.8, 2.1, 2.7: rounding gives 3, 2, 2, 3 (flooring 3, 1, 2, 2; ceiling 3, 2, 3, 3)
REGROWN = {"blocks.0": 3, "blocks.1": 2, "blocks.2": 2, "blocks.3": 3}


def partly_dropped():
    """A conv4 individual that kept the first channels of each group and dropped ``DROPPED`` of them,
    with the learngene weights of what it kept (as after a Lamarckian evaluation)."""
    ind = individual("conv4")
    spec = individual_spec(ind)
    masks = first_channels(spec, {g: size - DROPPED[g] for g, size in spec.groups})
    for i, name in enumerate(spec.group_names):
        ind[i] = masks[name]
    ind.learngene = ind.learngene.restrict(masks)
    return ind


def test_grow_readds_the_rounded_fraction_of_each_groups_dropped_channels():
    random.seed(0)
    ind = partly_dropped()
    before = {g: m.copy() for g, m in masks_of(ind).items()}
    operators.mut_grow(ind, 0.3)
    for group, mask in masks_of(ind).items():
        assert not (before[group] & ~mask).any()  # grow only adds
        assert int((mask & ~before[group]).sum()) == REGROWN[group]


def test_grow_picks_different_dropped_channels_from_the_random_state():
    ind1, ind2 = partly_dropped(), partly_dropped()
    random.seed(0)
    operators.mut_grow(ind1, 0.3)
    random.seed(1)
    operators.mut_grow(ind2, 0.3)
    assert not same_masks(ind1, ind2)


def test_flip_changes_bits_and_keeps_min_channels():
    random.seed(0)
    ind = individual("conv4")
    operators.mut_flip(ind, 1.0, min_channels=2)  # flipping every bit would empty every group
    assert all(m.sum() == 2 for m in ind)
    random.seed(1)
    ind2 = individual("conv4")
    operators.mut_flip(ind2, 0.3, 1)
    assert 0 < sum((~m).sum() for m in ind2) < sum(len(m) for m in ind2)


def test_geometric_schedule_multiplies_the_fraction_by_the_same_factor_each_generation():
    # target 1/16 over 4 generations: halve every generation, then stay
    goals = [operators.shrink_schedule(g, 0.0625, 4, "geometric") for g in range(-1, 8)]
    assert goals == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0625, 0.0625], rel=1e-12)
    # start * (target / start) ** (g / generations)
    assert operators.shrink_schedule(1, 0.2, 4, "geometric") == pytest.approx(0.2 ** 0.25, rel=1e-12)
    assert operators.shrink_schedule(2, 0.2, 4, "geometric", start=0.8) == pytest.approx(0.4, rel=1e-12)


def test_linear_schedule_moves_the_fraction_by_equal_steps():
    goals = [operators.shrink_schedule(g, 0.2, 4, "linear") for g in range(-1, 8)]
    assert goals == pytest.approx([1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0.2, 0.2], rel=1e-12)
    assert operators.shrink_schedule(2, 0.2, 4, "linear", start=0.8) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("kind", ["geometric", "linear", "none"])
@pytest.mark.parametrize("start", [1.0, 0.7])
def test_schedule_is_exactly_the_target_from_schedule_generations_on(kind, start):
    # exactly: a learngene already at the target must not be shrunk below it by rounding
    assert [operators.shrink_schedule(g, 0.2, 4, kind, start) for g in (4, 5, 100)] == [0.2] * 3


def test_no_schedule_asks_for_the_target_from_the_first_generation():
    assert [operators.shrink_schedule(g, 0.2, 4, "none") for g in (0, 1, 3)] == [0.2] * 3


def test_mutation_follows_the_schedule_over_generations():
    random.seed(0)
    ind = individual("conv4")
    fractions = []
    for gen in range(1, 6):
        ind.born = gen
        operators.mut_learngene(ind, operators.ShrinkSchedule(0.2, "geometric", 4), "l1", grow_fraction=0.1)
        fractions.append(fraction_of(ind))
    assert fractions[-1] <= 0.2 + 1e-9
    assert fractions[0] > 0.5  # generation 1 shrinks only part of the way


def test_regrown_channels_survive_the_shrink_of_the_same_mutation():
    ind = partly_dropped()
    goal = fraction_of(ind)  # shrink must give back as much as grow added
    before = {g: m.copy() for g, m in masks_of(ind).items()}
    replay = copy.deepcopy(ind)
    random.seed(0)
    operators.mut_grow(replay, 0.3)  # the channels the mutation's grow step re-adds
    regrown = {g: m & ~before[g] for g, m in masks_of(replay).items()}
    random.seed(0)
    ind.born = 10
    operators.mut_learngene(ind, operators.ShrinkSchedule(goal, "none", 4), "l1", grow_fraction=0.3)
    after = masks_of(ind)
    for group in after:
        assert int(regrown[group].sum()) == REGROWN[group]
        assert np.array_equal(after[group] & ~before[group], regrown[group])  # all survive, nothing else new
    assert sum(int((before[g] & ~after[g]).sum()) for g in after) > 0  # old channels made room for them
    assert fraction_of(ind) <= goal


# ------------------------------------------------------------------------- crossover

def test_channel_crossover_swaps_whole_groups():
    random.seed(0)
    a, b = individual(ident=1), individual(ident=2)
    operators.mut_shrink(a, 0.3, "random")
    a_masks = [m.copy() for m in a]
    b_masks = [m.copy() for m in b]
    c1, c2 = operators.cx_channels(a, b, indpb=1.0)
    assert all(np.array_equal(x, y) for x, y in zip(c1, b_masks))
    assert all(np.array_equal(x, y) for x, y in zip(c2, a_masks))
    assert not c1.fitness.valid and not c2.fitness.valid


def crossed_parents(seed=0):
    """Two evaluated resnet12 individuals whose masks differ in every group."""
    random.seed(seed)
    a, b = individual("resnet12", ident=1, with_weights=False), individual("resnet12", ident=2, with_weights=False)
    operators.mut_shrink(a, 0.3, "random", min_channels=2)
    operators.mut_shrink(b, 0.5, "random", min_channels=2)
    a.parents, b.parents = [7], [3]
    a.fitness.values, b.fitness.values = (0.5, fraction_of(a)), (0.6, fraction_of(b))
    return a, b


def test_channel_crossover_gives_each_child_whole_groups_of_one_parent_or_the_other():
    a, b = crossed_parents()
    a_masks, b_masks = [m.copy() for m in a], [m.copy() for m in b]
    assert not any(np.array_equal(x, y) for x, y in zip(a_masks, b_masks))
    random.seed(0)
    operators.cx_channels(a, b, indpb=0.5)
    swapped = []
    for i, (x, y) in enumerate(zip(a, b)):
        if np.array_equal(x, b_masks[i]):
            swapped.append(i)
            assert np.array_equal(y, a_masks[i])
        else:  # not swapped: both keep their own group
            assert np.array_equal(x, a_masks[i]) and np.array_equal(y, b_masks[i])
    assert 0 < len(swapped) < len(a)  # so each child differs from both parents
    spec = arch_spec("resnet12", 0.25)
    assert complete_circuits(spec, masks_of(a), 2) and complete_circuits(spec, masks_of(b), 2)


def test_channel_crossover_returns_both_children_in_place_unevaluated_with_both_lineages():
    a, b = crossed_parents()
    random.seed(0)
    result = operators.cx_channels(a, b, indpb=0.5)
    assert type(result) is tuple and len(result) == 2 and result[0] is a and result[1] is b
    assert not a.fitness.valid and not b.fitness.valid
    assert a.parents == b.parents == [3, 7]
    assert not any(x is y for x in a for y in b)  # the children share no mask array


def test_channel_crossover_swaps_each_group_with_probability_indpb():
    random.seed(0)
    swaps = groups = 0
    for _ in range(100):
        a, b = individual("resnet12", ident=1, with_weights=False), individual("resnet12", ident=2, with_weights=False)
        for i in range(len(b)):
            b[i] = ~b[i]  # a keeps everything, b nothing: a swapped group is visible
        operators.cx_channels(a, b, indpb=0.25)
        swaps += sum(int(not m.any()) for m in a)
        groups += len(a)
    assert 0.2 < swaps / groups < 0.3  # 1200 groups: 0.25 +- 4 standard deviations
