"""Fitness, inheritance and the evolution loop, end to end on a tiny dataset."""
import os

import numpy as np
import pytest

from conftest import ROOT, tiny_overrides
from learngene_ea.ea import fitness
from learngene_ea.config.loading import load_config
from learngene_ea.config.schema import ConfigError
from learngene_ea.ea.evolve import apply_evaluation, evolve, new_state
from learngene_ea.ea.toolbox import build_toolbox
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import full_masks
from learngene_ea.core.models import arch_spec
from learngene_ea.fewshot.training import DivergedError


def fresh_individual(cfg, ident=0):
    spec = arch_spec(cfg.model.family, cfg.model.width)
    ind = make_individual(spec, full_masks(spec), ident, born=0)
    ind.evaluated_in = 0
    return ind


def test_evaluate_is_deterministic_for_the_same_individual_and_seed(tiny_cfg):
    a = fitness.evaluate(fresh_individual(tiny_cfg), tiny_cfg)
    b = fitness.evaluate(fresh_individual(tiny_cfg), tiny_cfg)
    assert a.fitness == b.fitness
    np.testing.assert_array_equal(a.learngene.weights["blocks.0"]["conv"], b.learngene.weights["blocks.0"]["conv"])
    assert 0.0 <= a.fitness[0] <= 1.0 and a.fitness[1] == pytest.approx(1.0)
    assert a.info["ci95"] >= 0


def test_evaluation_depends_on_generation_and_id_not_on_order(tiny_cfg):
    first = fitness.evaluate(fresh_individual(tiny_cfg, ident=1), tiny_cfg)
    fitness.evaluate(fresh_individual(tiny_cfg, ident=2), tiny_cfg)  # something else in between
    again = fitness.evaluate(fresh_individual(tiny_cfg, ident=1), tiny_cfg)
    other = fitness.evaluate(fresh_individual(tiny_cfg, ident=2), tiny_cfg)
    assert first.fitness == again.fitness
    assert not np.array_equal(first.learngene.weights["blocks.0"]["conv"], other.learngene.weights["blocks.0"]["conv"])


def _trained_individual(cfg):
    ind = fresh_individual(cfg)
    apply_evaluation(ind, fitness.evaluate(ind, cfg))  # generation 0 always records its weights
    ind.evaluated_in = 1
    del ind.fitness.values
    return ind


def test_lamarckian_inheritance_writes_the_trained_descendants_weights_back(tiny_cfg, monkeypatch):
    from learngene_ea.core.individual import masks_of
    from learngene_ea.core.learngene import extract_learngene

    ind = _trained_individual(tiny_cfg)
    trained = []
    real = fitness.train_descendant

    def keep_model(*args, **kwargs):
        trained.append(real(*args, **kwargs))
        return trained[-1]

    monkeypatch.setattr(fitness, "train_descendant", keep_model)
    apply_evaluation(ind, fitness.evaluate(ind, tiny_cfg))
    expected = extract_learngene(trained[-1][0], masks_of(ind))
    for layer, tensors in expected.weights.items():
        for name, value in tensors.items():
            np.testing.assert_array_equal(ind.learngene.weights[layer][name], value, err_msg=f"{layer}.{name}")


def test_darwinian_inheritance_keeps_inherited_weights():
    cfg = load_config(None, tiny_overrides(**{"fitness.inheritance": "darwinian"}))
    ind = _trained_individual(cfg)
    before = ind.learngene.weights["blocks.1"]["conv"].copy()
    apply_evaluation(ind, fitness.evaluate(ind, cfg))
    np.testing.assert_array_equal(ind.learngene.weights["blocks.1"]["conv"], before)
    assert ind.fitness.valid


def test_failed_evaluation_is_retried_then_gets_the_worst_fitness(tiny_cfg, monkeypatch):
    calls = []

    def diverge(*args, **kwargs):
        calls.append(1)
        raise DivergedError("loss is nan")

    monkeypatch.setattr(fitness, "train_stacked", diverge)
    result = fitness.evaluate(fresh_individual(tiny_cfg, ident=7), tiny_cfg)
    assert len(calls) == 2  # one try + fitness.retries (1) retry
    assert result.fitness[0] == fitness.WORST_ACCURACY and result.learngene is None
    assert result.info["error"] == {"type": "DivergedError", "message": "loss is nan", "id": 7, "generation": 0}


def test_a_retry_that_succeeds_counts(tiny_cfg, monkeypatch):
    real = fitness.train_stacked
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(fitness, "train_stacked", flaky)
    result = fitness.evaluate(fresh_individual(tiny_cfg), tiny_cfg)
    assert result.info["attempts"] == 2 and "error" not in result.info and result.learngene is not None


def test_nan_loss_is_detected():
    from learngene_ea.fewshot.training import TrainSettings, train_on_task
    from learngene_ea.data.synthetic import make_synthetic
    from learngene_ea.core.models import build_model
    from learngene_ea.fewshot.sampling import sample_task

    data = make_synthetic(images_per_class=30)
    model = build_model("conv4", 0.25, num_classes=5, seed=0)
    task = sample_task(data, 0, 5, 4)
    with pytest.raises(DivergedError):
        train_on_task(model, data, task, TrainSettings(steps=3, batch_size=8, lr=1e30))


def test_evolution_shrinks_toward_the_target_and_keeps_elites(tiny_cfg):
    toolbox = build_toolbox(tiny_cfg)
    state = evolve(tiny_cfg, toolbox, new_state(tiny_cfg), log=lambda *a: None)
    gens = [r["gen"] for r in state.logbook]
    assert gens == [0, 1, 2]
    assert state.logbook[0]["frac_min"] == pytest.approx(1.0)
    assert state.logbook[-1]["frac_min"] <= tiny_cfg.ea.target_fraction + 1e-9
    assert state.best_at_target is not None
    assert len(state.population) == tiny_cfg.ea.population_size
    ids = [ind.id for ind in state.population]
    assert len(set(ids)) == len(ids)
    assert all(ind.born <= 2 for ind in state.population)


def test_early_stop_after_patience_at_target():
    cfg = load_config(None, tiny_overrides(**{"ea.generations": 30, "ea.patience": 1, "ea.target_fraction": 1.0,
                                              "ea.schedule": "none"}))
    toolbox = build_toolbox(cfg)
    toolbox.register("evaluate", lambda ind: (0.5, 1.0))  # nobody ever beats generation 0
    state = evolve(cfg, toolbox, new_state(cfg), log=lambda *a: None)
    assert [record["gen"] for record in state.logbook] == [0, 1]  # gen 1 is the one stale generation


def test_elites_are_carried_unchanged_into_the_next_generation(tiny_cfg):
    from learngene_ea.ea.operators import sel_elites

    populations = []
    evolve(tiny_cfg, build_toolbox(tiny_cfg), new_state(tiny_cfg), log=lambda *a: None,
           on_generation=lambda state: populations.append(list(state.population)))
    for before, after in zip(populations, populations[1:]):
        elite = sel_elites(before, 1)[0]
        kept = [ind for ind in after if ind.id == elite.id]
        assert len(kept) == 1 and kept[0].fitness.values == elite.fitness.values
        assert all(np.array_equal(a, b) for a, b in zip(kept[0], elite))
        np.testing.assert_array_equal(kept[0].learngene.weights["blocks.0"]["conv"],
                                      elite.learngene.weights["blocks.0"]["conv"])


def test_a_failure_that_cannot_pass_on_retry_is_not_retried_and_stops_the_run(tiny_cfg, monkeypatch):
    from learngene_ea.errors import EvaluationFailure

    calls = []

    def bad_setting(*args, **kwargs):
        calls.append(1)
        raise ValueError("20-way episodes need more than the 16 val classes")

    monkeypatch.setattr(fitness, "train_stacked", bad_setting)
    result = fitness.evaluate(fresh_individual(tiny_cfg, ident=3), tiny_cfg)
    assert len(calls) == 1 and result.info["error"]["fatal"] is True
    assert "bad_setting" in result.info["error"]["traceback"]
    with pytest.raises(EvaluationFailure, match="individual 0 in generation 0 failed with ValueError: 20-way"):
        evolve(tiny_cfg, build_toolbox(tiny_cfg), new_state(tiny_cfg), log=lambda *a: None)


def test_a_generation_whose_every_evaluation_failed_stops_the_run(tiny_cfg, monkeypatch):
    from learngene_ea.errors import EvaluationFailure

    def diverge(*args, **kwargs):
        raise DivergedError("loss is nan")

    monkeypatch.setattr(fitness, "train_stacked", diverge)
    with pytest.raises(EvaluationFailure, match="every evaluation of generation 0 failed"):
        evolve(tiny_cfg, build_toolbox(tiny_cfg), new_state(tiny_cfg), log=lambda *a: None)


def test_one_unlucky_evaluation_is_penalised_and_the_run_goes_on(tiny_cfg, monkeypatch):
    real = fitness.train_stacked
    calls = []

    def first_two_diverge(*args, **kwargs):  # individual 0: its try and its retry
        calls.append(1)
        if len(calls) <= 2:
            raise DivergedError("loss is nan")
        return real(*args, **kwargs)

    monkeypatch.setattr(fitness, "train_stacked", first_two_diverge)
    cfg = load_config(None, tiny_overrides(**{"ea.generations": 0}))
    state = evolve(cfg, build_toolbox(cfg), new_state(cfg), log=lambda *a: None)
    assert [e["id"] for e in state.errors] == [0] and state.population[0].fitness.values[0] == fitness.WORST_ACCURACY


def test_an_exception_from_a_users_evaluate_stops_the_run_naming_it(tiny_cfg):
    from learngene_ea.errors import EvaluationFailure

    def broken(individual):
        raise KeyError("no such metric")

    toolbox = build_toolbox(tiny_cfg)
    toolbox.register("evaluate", broken)
    with pytest.raises(EvaluationFailure, match="KeyError") as err:
        evolve(tiny_cfg, toolbox, new_state(tiny_cfg), log=lambda *a: None)
    assert "broken" in err.value.traceback_text


def test_custom_operator_named_in_yaml_is_used():
    cfg = load_config(os.path.join(ROOT, "genomes", "custom-operator.yaml"), tiny_overrides())
    state = evolve(cfg, build_toolbox(cfg), new_state(cfg), log=lambda *a: None)
    shrunk = [ind for ind in state.population if ind.born > 0]
    assert shrunk
    for ind in shrunk:  # the example keeps the first channels of every group: prefix masks
        for mask in ind:
            k = int(mask.sum())
            assert mask[:k].all() and not mask[k:].any()


def test_operator_registered_through_the_python_api_is_used(tiny_cfg):
    seen = []

    def select_first(individuals, k):
        seen.append(k)
        return [individuals[0]] * k

    toolbox = build_toolbox(tiny_cfg)
    toolbox.register("select", select_first)
    evolve(tiny_cfg, toolbox, new_state(tiny_cfg), log=lambda *a: None)
    assert seen == [3, 3]  # population 4 minus 1 elite, in each of the 2 generations


def test_deap_selection_operator_works_from_yaml():
    cfg = load_config(None, tiny_overrides() + ["operators.select={function: 'deap.tools:selTournament', "
                                                "kwargs: {tournsize: 2}}"])
    state = evolve(cfg, build_toolbox(cfg), new_state(cfg), log=lambda *a: None)
    assert len(state.logbook) == 3


@pytest.mark.parametrize("function,message", [
    ("no_such_module_xyz:f", "module 'no_such_module_xyz' does not import"),
    ("learngene_ea.ea.operators:nope", "has no 'nope'"),
    ("learngene_ea.ea.operators:FRACTION", "has no 'FRACTION'"),
    ("learngene_ea.ea.operators:shrink_schedule", "cannot be called as mutate"),
])
def test_wrong_operator_names_the_key_and_function(function, message):
    cfg = load_config(None, tiny_overrides() + [f"operators.mutate={{function: '{function}'}}"])
    with pytest.raises(ConfigError, match=message) as err:
        build_toolbox(cfg)
    assert "operators.mutate.function" in str(err.value)


def test_operator_kwargs_that_do_not_fit_are_refused():
    cfg = load_config(None, tiny_overrides() + ["operators.mutate={function: 'learngene_ea.ea.operators:mut_flip', "
                                                "kwargs: {bogus: 1}}"])
    with pytest.raises(ConfigError, match="operators.mutate.function"):
        build_toolbox(cfg)
