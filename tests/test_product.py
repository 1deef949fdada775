"""The run's product: the most accurate learngene at the target (ties: smaller), else the best overall."""
import copy

import numpy as np
import pytest

from conftest import tiny_overrides
from learngene_ea.config.loading import load_config
from learngene_ea.ea.evolve import EvolutionState, new_state, record_generation, should_stop
from learngene_ea.ea.product import product_individual
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import full_masks
from learngene_ea.core.models import arch_spec

SPEC = arch_spec("conv4", 0.25, 3)
TARGET = 0.3


@pytest.fixture
def cfg():
    return load_config(None, tiny_overrides(**{"ea.target_fraction": TARGET, "ea.patience": 2}))


def individual(ident, accuracy, fraction, masks=None):
    """An evaluated individual; by default every one has the whole network's masks."""
    ind = make_individual(SPEC, masks or full_masks(SPEC), ident)
    ind.fitness.values = (accuracy, fraction)
    ind.evaluation = {"ci95": 0.01}
    return ind


def record(state, cfg, population, generation=0):
    state.population = population
    record_generation(state, cfg.ea, generation, population, [], 0.0)


def test_the_best_overall_is_saved_when_every_individual_has_the_same_masks(cfg):
    # the reproduction of the issue: generation 0, four whole networks, #1 the most accurate
    state = new_state(cfg, population=[])
    record(state, cfg, [individual(0, 0.336, 1.0), individual(1, 0.357, 1.0), individual(2, 0.30, 1.0),
                        individual(3, 0.32, 1.0)])
    product, reached = product_individual(state)
    assert (product.id, reached) == (1, False)
    assert [ind.id for ind in state.halloffame] == [1, 0, 3, 2]


def test_an_elites_copies_are_one_entry_of_the_hall_of_fame(cfg):
    state = new_state(cfg, population=[])
    elite = individual(5, 0.5, 1.0)
    record(state, cfg, [elite, individual(6, 0.4, 1.0)])
    record(state, cfg, [copy.deepcopy(elite), individual(7, 0.45, 1.0)], generation=1)  # toolbox.clone
    assert [ind.id for ind in state.halloffame] == [5, 7, 6]


def test_the_most_accurate_learngene_at_the_target_is_the_product(cfg):
    state = new_state(cfg, population=[])
    record(state, cfg, [individual(0, 0.9, 1.0), individual(1, 0.5, 0.3), individual(2, 0.6, 0.25)])
    product, reached = product_individual(state)
    assert (product.id, reached) == (2, True)


def test_at_equal_accuracy_the_smaller_learngene_at_the_target_wins_even_later(cfg):
    state = new_state(cfg, population=[])
    record(state, cfg, [individual(0, 0.6, 0.28)])
    record(state, cfg, [individual(1, 0.6, 0.2)], generation=1)
    assert product_individual(state)[0].id == 1
    record(state, cfg, [individual(2, 0.6, 0.25)], generation=2)  # larger at equal accuracy: not better
    assert product_individual(state)[0].id == 1


def test_a_less_accurate_learngene_at_the_target_never_replaces_the_product(cfg):
    state = new_state(cfg, population=[])
    record(state, cfg, [individual(0, 0.6, 0.28)])
    record(state, cfg, [individual(1, 0.59, 0.1)], generation=1)
    assert product_individual(state)[0].id == 0


def test_patience_counts_generations_at_the_target_without_improvement(cfg):
    state = new_state(cfg, population=[])
    record(state, cfg, [individual(0, 0.9, 1.0)])
    assert state.stale_generations == 0 and not should_stop(state, cfg.ea.patience)  # target not reached: no count
    record(state, cfg, [individual(1, 0.5, 0.3)], generation=1)
    assert state.stale_generations == 0
    record(state, cfg, [individual(2, 0.4, 0.3)], generation=2)
    assert state.stale_generations == 1 and not should_stop(state, cfg.ea.patience)
    record(state, cfg, [individual(3, 0.4, 0.3)], generation=3)
    assert state.stale_generations == 2 and should_stop(state, cfg.ea.patience)  # ea.patience = 2
    record(state, cfg, [individual(4, 0.55, 0.3)], generation=4)
    assert state.stale_generations == 0 and not should_stop(state, cfg.ea.patience)


def test_individuals_with_equal_masks_but_other_weights_are_both_kept(cfg):
    masks = {name: np.arange(size) % 2 == 0 for name, size in SPEC.groups}
    state = EvolutionState(population=[], halloffame=new_state(cfg, population=[]).halloffame, logbook=None)
    state.halloffame.update([individual(0, 0.4, 0.5, masks), individual(1, 0.7, 0.5, masks)])
    assert [ind.id for ind in state.halloffame] == [1, 0]
