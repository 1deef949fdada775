"""GTL's operators keep DEAP's conventions and keep circuits complete."""
import copy
import random

import numpy as np
import pytest
from deap import algorithms, base, tools

from learngene_ea import operators
from learngene_ea.individual import fraction_of, make_individual, masks_of, same_masks
from learngene_ea.learngene import complete_circuits, extract_learngene, full_masks
from learngene_ea.models import arch_spec, build_model


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
    toolbox.register("mutate", operators.mut_learngene, target_fraction=0.3, schedule="none")
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
    random.seed(1)
    big, small = evaluated(0.700, 0.9, 1), evaluated(0.695, 0.2, 2)
    chosen = operators.sel_parsimony_tournament([big, small], k=20, tournsize=2, tolerance=0.01)
    # whenever both meet, the smaller one wins; big only wins tournaments it plays alone
    assert all(c is small or c is big for c in chosen)
    both = operators.sel_parsimony_tournament([big, small, small, big], 1, 4, 0.01)
    assert both[0] is small


def test_parsimony_tournament_prefers_accuracy_outside_tolerance():
    random.seed(3)
    big, small = evaluated(0.75, 0.9, 1), evaluated(0.70, 0.2, 2)
    # 30 aspirants drawn with replacement from two: both take part, the accuracy gap decides
    winner = operators.sel_parsimony_tournament([big, small], 1, 30, 0.01)[0]
    assert winner is big
    # with a tolerance wider than the gap, parsimony decides instead
    assert operators.sel_parsimony_tournament([big, small], 1, 30, 0.1)[0] is small


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


def test_grow_readds_dropped_channels():
    random.seed(0)
    ind = individual("conv4")
    operators.mut_shrink(ind, 0.2, "random")
    before = [m.sum() for m in ind]
    operators.mut_grow(ind, 0.5)
    assert all(after > b for after, b in zip([m.sum() for m in ind], before))


def test_flip_changes_bits_and_keeps_min_channels():
    random.seed(0)
    ind = individual("conv4")
    operators.mut_flip(ind, 1.0, min_channels=2)  # flipping every bit would empty every group
    assert all(m.sum() == 2 for m in ind)
    random.seed(1)
    ind2 = individual("conv4")
    operators.mut_flip(ind2, 0.3, 1)
    assert 0 < sum((~m).sum() for m in ind2) < sum(len(m) for m in ind2)


def test_schedule_reaches_the_target_and_stays():
    for kind in ("geometric", "linear"):
        goals = [operators.shrink_schedule(g, 0.2, 4, kind) for g in range(8)]
        assert goals[0] == pytest.approx(1.0)
        assert all(a >= b for a, b in zip(goals, goals[1:]))
        assert goals[4:] == [pytest.approx(0.2)] * 4
    assert operators.shrink_schedule(0, 0.2, 4, "none") == 0.2


def test_mutation_follows_the_schedule_over_generations():
    random.seed(0)
    ind = individual("conv4")
    fractions = []
    for gen in range(1, 6):
        ind.born = gen
        operators.mut_learngene(ind, 0.2, "geometric", 4, "l1", grow_fraction=0.1)
        fractions.append(fraction_of(ind))
    assert fractions[-1] <= 0.2 + 1e-9
    assert fractions[0] > 0.5  # generation 1 shrinks only part of the way


def test_regrown_channels_survive_the_shrink_of_the_same_mutation():
    random.seed(0)
    ind = individual("conv4")
    operators.mut_shrink(ind, 0.3, "l1")
    ind.learngene = ind.learngene.restrict(masks_of(ind))  # as after a Lamarckian evaluation
    before = [m.copy() for m in ind]
    ind.born = 10
    operators.mut_learngene(ind, 0.3, "none", 4, "l1", grow_fraction=0.2)
    new_channels = sum(int((m & ~b).sum()) for m, b in zip(ind, before))
    assert new_channels > 0  # grow swapped some old channels for fresh ones
    assert fraction_of(ind) <= 0.3 + 1e-9


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
