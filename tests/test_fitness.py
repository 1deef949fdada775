"""Fitness settings reach the scoring, and generation 0 is what ``ea.init_fraction`` asks for."""
import itertools

import numpy as np
import pytest

from conftest import complete_circuits, fraction_of, tiny_overrides
from learngene_ea.config.loading import load_config
from learngene_ea.ea.evolve import new_state
from learngene_ea.ea.fitness import evaluate
from learngene_ea.core.individual import individual_spec, masks_of, same_masks
from learngene_ea.core.learngene import learngene_fraction


def first_of_generation_0(**overrides):
    cfg = load_config(None, tiny_overrides(**overrides))
    return new_state(cfg).population[0], cfg


def accuracy(**overrides):
    """The accuracy of the first generation-0 individual evaluated under ``overrides``."""
    ind, cfg = first_of_generation_0(**overrides)
    result = evaluate(ind, cfg)
    assert "error" not in result.info, result.info.get("error")
    assert result.fitness[1] == 1.0  # the whole network
    assert result.info["accuracy"] == result.fitness[0]
    return result.fitness[0]


def test_a_finetuned_head_scores_the_individual_instead_of_prototypes():
    prototype = accuracy()
    finetuned = accuracy(**{"fitness.classifier": "finetune", "fitness.finetune_steps": 3})
    # 3 episodes x 5 classes x 5 queries: an accuracy is a multiple of 1/75
    assert 0.0 <= finetuned <= 1.0 and finetuned * 75 == pytest.approx(round(finetuned * 75))
    assert finetuned != prototype  # the same trained descendant, scored another way
    assert accuracy(**{"fitness.classifier": "finetune", "fitness.finetune_steps": 1}) != finetuned


def test_init_fraction_makes_generation_0_random_masks_of_that_fraction():
    cfg = load_config(None, tiny_overrides(**{"ea.init_fraction": 0.5}))
    population = new_state(cfg).population
    spec = individual_spec(population[0])
    sizes = spec.group_sizes
    assert len(set(sizes.values())) == 1  # conv4: equal groups keep equal counts
    # the largest count per group whose fraction is at most 0.5
    keep = max(k for k in range(1, max(sizes.values()) + 1)
               if learngene_fraction(spec, {g: np.arange(n) < k for g, n in sizes.items()}) <= 0.5)
    expected = learngene_fraction(spec, {g: np.arange(n) < keep for g, n in sizes.items()})
    assert 0.4 < expected <= 0.5
    for ind in population:
        assert [int(m.sum()) for m in ind] == [keep] * len(sizes)
        assert fraction_of(ind) == expected
        assert complete_circuits(spec, masks_of(ind), cfg.ea.min_channels)
        assert ind.learngene is None and ind.born == 0 and not ind.fitness.valid
    assert not any(same_masks(a, b) for a, b in itertools.combinations(population, 2))


def test_init_fraction_1_starts_from_the_whole_network():
    population = new_state(load_config(None, tiny_overrides())).population
    assert all(fraction_of(ind) == 1.0 and all(m.all() for m in ind) for ind in population)


def test_the_learngene_sub_network_alone_is_the_network_with_dropped_channels_silenced(tiny_dataset):
    import torch

    from learngene_ea.core.models import build_model
    from learngene_ea.fewshot.training import features_of, learngene_channels_only

    model = build_model("conv4", 0.25, 3, 5, seed=3)
    model.eval()
    rng = np.random.default_rng(0)
    masks = {group: rng.random(size) < 0.5 for group, size in model.spec.groups}
    for mask in masks.values():
        mask[0] = True
    indices = np.arange(40)
    whole = features_of(model, tiny_dataset, indices)
    with learngene_channels_only(model, {g: np.ones_like(m) for g, m in masks.items()}):
        assert torch.equal(features_of(model, tiny_dataset, indices), whole)  # every channel kept: unchanged
    with learngene_channels_only(model, masks):
        alone = features_of(model, tiny_dataset, indices)
    silenced = build_model("conv4", 0.25, 3, 5, seed=3)
    silenced.load_state_dict(model.state_dict())
    with torch.no_grad():  # dropped channels: zero filters and BatchNorm affine, so they output exactly 0
        for layer in silenced.spec.layers:
            module, dropped = silenced.gene_module(layer.name), torch.as_tensor(~masks[layer.group])
            module.conv.weight[dropped] = 0
            module.bn.weight[dropped] = 0
            module.bn.bias[dropped] = 0
    torch.testing.assert_close(alone, features_of(silenced, tiny_dataset, indices))
    assert not torch.allclose(alone, whole)
    assert torch.equal(features_of(model, tiny_dataset, indices), whole)  # the hooks are gone afterwards


@pytest.mark.parametrize("score", ["learngene", "mix"])
def test_fitness_score_decides_what_is_scored(score):
    ind, cfg = first_of_generation_0(**{"fitness.score": score, "ea.init_fraction": 0.5})
    descendant_cfg = load_config(None, tiny_overrides(**{"ea.init_fraction": 0.5}))
    scored, whole = evaluate(ind, cfg).fitness[0], evaluate(ind, descendant_cfg).fitness[0]
    assert scored != whole  # the same trained descendant (same seeds), another score


# ------------------------------------------------------------------ learning speed (fitness.speed_points)

def test_curve_points_are_evenly_spaced_and_end_at_the_last_step():
    from learngene_ea.ea.fitness import curve_points

    assert curve_points(150, 4) == [38, 75, 112, 150]
    assert curve_points(4, 1) == [4]
    assert curve_points(3, 3) == [1, 2, 3]


def test_learning_speed_fitness_is_the_mean_of_the_curve_whose_end_is_the_final_accuracy():
    final = accuracy()  # fitness.speed_points 0: the accuracy after the task
    ind, cfg = first_of_generation_0(**{"fitness.speed_points": 2})
    result = evaluate(ind, cfg)
    curve = result.info["curve"]
    assert [step for step, _ in curve] == [2, 4]  # task.steps 4
    # scoring between steps leaves the training as it was: the curve ends at the final accuracy
    assert curve[-1][1] == pytest.approx(final, abs=1e-12)
    assert result.fitness[0] == pytest.approx(np.mean([a for _, a in curve]), abs=1e-12)
    assert result.fitness[0] != final  # the earlier point counts: how fast it learned


def test_speed_points_beyond_the_task_steps_are_refused():
    from learngene_ea.config.schema import ConfigError

    with pytest.raises(ConfigError, match=r"'fitness.speed_points' \(5\) must not exceed 'task.steps' \(4\)"):
        load_config(None, tiny_overrides(**{"fitness.speed_points": 5}))


def test_a_chunk_measuring_learning_curves_is_evaluated_one_by_one():
    from learngene_ea.ea.fitness import evaluate_chunk

    cfg = load_config(None, tiny_overrides(**{"fitness.speed_points": 2, "fitness.population_batch": 2}))
    population = new_state(cfg).population[:2]
    chunk = evaluate_chunk(population, cfg)
    alone = [evaluate(ind, cfg) for ind in population]
    assert [e.fitness for e in chunk] == [e.fitness for e in alone]
    assert all("stacked" not in e.info and len(e.info["curve"]) == 2 for e in chunk)
