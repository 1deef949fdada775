"""Evolution that searches: offspring differ, a whole network cannot block the tournaments,
comparisons within a generation can be paired, and the logbook says how diverse a generation is."""
import json
import random

import numpy as np
import pytest

from conftest import ROOT, run_module, stopped_after, tiny_overrides
from learngene_ea.cli import run as run_cli
from learngene_ea.config.loading import load_config
from learngene_ea.core.individual import individual_spec, make_individual, masks_of
from learngene_ea.core.learngene import channel_importance, extract_learngene, full_masks, learngene_fraction
from learngene_ea.core.models import arch_spec, build_model
from learngene_ea.ea import diversity, evolve, fitness, operators
from learngene_ea.ea.toolbox import build_toolbox
from learngene_ea.reports import files as report_files


def individual(ident=0, born=1, seed=0, width=0.5):
    """A whole-network individual whose BatchNorm scales differ (a fresh network's are all 1: ties)."""
    spec = arch_spec("conv4", width)
    ind = make_individual(spec, full_masks(spec), ident, born=born)
    ind.learngene = extract_learngene(build_model("conv4", width, seed=seed), full_masks(spec))
    rng = np.random.default_rng(seed)
    for weights in ind.learngene.weights.values():
        weights["bn_weight"] = rng.uniform(0.1, 2.0, size=weights["bn_weight"].shape).astype(np.float32)
    return ind


def kept(ind):
    return diversity.kept_channels(ind)


def shrunk(seed, temperature, goal=0.3, criterion="bn"):
    random.seed(seed)
    ind = individual()
    operators.mut_shrink(ind, goal, criterion, 1, temperature)
    return ind


# --------------------------------------------------------------------------- mutation

def test_at_temperature_zero_the_shrink_is_deterministic_and_draws_no_random_number():
    random.seed(5)
    before = random.getstate()
    ind = individual()
    operators.mut_shrink(ind, 0.3, "bn", 1, 0.0)
    assert random.getstate() == before
    assert np.array_equal(kept(ind), kept(shrunk(99, 0.0)))


def test_above_temperature_zero_offspring_of_one_parent_carry_different_masks_of_one_size():
    masks = [shrunk(seed, 1.0) for seed in range(6)]
    assert len({kept(m).tobytes() for m in masks}) == 6
    fractions = {round(learngene_fraction(individual_spec(m), masks_of(m)), 9) for m in masks}
    assert len(fractions) == 1 and fractions.pop() <= 0.3


def test_the_draw_favours_important_channels_and_a_low_temperature_is_the_deterministic_rule():
    parent = individual()
    scores = channel_importance(parent.learngene, "bn")
    group = next(iter(scores))
    order = np.argsort(-scores[group])
    counts = np.zeros(len(order))
    for seed in range(40):
        counts += masks_of(shrunk(seed, 0.5))[group]
    assert counts[order[:4]].mean() > counts[order[-4:]].mean()  # top-|scale| channels stay more often
    assert np.array_equal(kept(shrunk(3, 1e-4)), kept(shrunk(99, 0.0)))


def test_perturbed_scores_keep_channels_that_must_stay():
    random.seed(0)
    keys = operators.perturbed_scores({"g": np.array([1.0, np.inf, 0.0, 2.0])}, 0.5)["g"]
    assert keys[1] == np.inf and np.isfinite(keys[[0, 2, 3]]).all()


def test_swap_exchanges_channels_at_the_same_size():
    random.seed(1)
    ind = individual()
    operators.mut_shrink(ind, 0.3, "bn", 1)
    before = {g: m.copy() for g, m in masks_of(ind).items()}
    operators.mut_swap(ind, 0.25, "bn", 0.5)
    after = masks_of(ind)
    assert all(after[g].sum() == before[g].sum() for g in before)  # same size, group by group
    assert any(not np.array_equal(after[g], before[g]) for g in before)
    assert not ind.fitness.valid


def test_swap_rounds_at_random_so_that_small_groups_swap_on_average():
    spec = arch_spec("conv4", 0.5)
    changed = []
    for seed in range(200):
        random.seed(seed)
        ind = make_individual(spec, {g: np.arange(size) < 4 for g, size in spec.groups}, 0, born=1)
        operators.mut_swap(ind, 0.1, "random")  # 0.4 of a channel per group: never under round()
        changed.append(sum(int((~m[:4]).sum()) for m in ind))
    assert np.mean(changed) == pytest.approx(0.4 * len(spec.groups), rel=0.25)


def test_the_recipe_keys_reach_the_mutation():
    cfg = load_config(None, tiny_overrides(**{"ea.shrink_temperature": 0.7, "ea.swap_fraction": 0.2}))
    mutate = build_toolbox(cfg).mutate
    assert mutate.keywords["criterion"] == operators.ChannelChoice("l1", 0.7)
    assert mutate.keywords["swap_fraction"] == 0.2


# -------------------------------------------------------------------------- selection

def evaluated(ident, accuracy, fraction):
    ind = individual(ident=ident)
    if fraction < 1.0:
        operators.mut_shrink(ind, fraction, "l1", 1)
    ind.fitness.values = (accuracy, learngene_fraction(individual_spec(ind), masks_of(ind)))
    ind.evaluation = {}
    return ind


@pytest.mark.parametrize("scheduled", [False, True])
def test_a_whole_network_blocks_the_tournaments_unless_parents_follow_the_schedule(scheduled):
    cfg = load_config(None, tiny_overrides(**{"ea.scheduled_parents": str(scheduled).lower(), "ea.tournsize": 3,
                                              "ea.schedule_generations": 1, "ea.target_fraction": 0.3}))
    population = [evaluated(0, 0.9, 1.0)] + [evaluated(i, 0.5 + i / 100, 0.3) for i in range(1, 4)]
    state = evolve.EvolutionState(population=population, halloffame=None, logbook=None, next_id=10)
    random.seed(0)
    offspring = evolve.next_generation(population, build_toolbox(cfg), cfg.ea, state, generation=2)
    parents = {p for child in offspring for p in child.parents}
    assert len(offspring) == 4
    assert (0 in parents) is not scheduled  # the whole network (id 0) is elite and parent only without it


def test_random_selection_is_the_no_selection_ablation():
    from deap import tools

    cfg = load_config(None, tiny_overrides(**{"ea.selection": "random"}))
    assert build_toolbox(cfg).select.func is tools.selRandom


# ---------------------------------------------------------------------------- fitness

@pytest.mark.parametrize("common", [False, True])
def test_common_draws_give_every_individual_of_a_generation_the_same_task_and_start(tiny_dataset, common):
    cfg = load_config(None, tiny_overrides(**{"fitness.common_draws": str(common).lower()}))
    a, b = individual(ident=1), individual(ident=2)
    (_, task_a, seed_a), (_, task_b, seed_b) = (fitness.inflate_descendant(i, cfg, tiny_dataset, 3, "cpu")
                                                for i in (a, b))
    assert (seed_a == seed_b) is common
    assert np.array_equal(task_a.indices, task_b.indices) is common
    _, _, next_generation = fitness.inflate_descendant(a, cfg, tiny_dataset, 4, "cpu")
    assert next_generation != seed_a  # a new generation draws anew


# --------------------------------------------------------------------------- logbook

def test_diversity_figures_of_clones_and_of_different_masks():
    clones = [evaluated(i, 0.5 + i / 100, 0.3) for i in range(3)]
    record = diversity.diversity_record(clones, clones, 0.3)
    assert record["div_masks"] == 1 and record["div_jaccard"] == 1.0 and record["div_spread"] is None
    assert record["div_clone_sd"] == pytest.approx(np.std([0.5, 0.51, 0.52], ddof=1))
    random.seed(0)
    different = [evaluated(i, 0.5, 1.0) for i in range(3)]
    for ind, accuracy in zip(different, (0.4, 0.5, 0.6)):
        operators.mut_shrink(ind, 0.3, "random", 1)
        ind.fitness.values = (accuracy, 0.29)
        ind.evaluation = {"episode_accuracies": [accuracy, accuracy + 0.1, accuracy - 0.1]}
    record = diversity.diversity_record(different, different, 0.3)
    assert record["div_masks"] == 3 and record["div_jaccard"] < 1.0 and record["target_masks"] == 3
    assert record["div_spread"] == pytest.approx(0.1) and record["div_clone_sd"] is None
    assert record["div_pair_se"] == pytest.approx(0.0, abs=1e-12)  # every pair differs by a constant


def evolution_figure_axes(monkeypatch, records) -> list[str]:
    """The y labels of every axis ``plot_evolution`` draws for ``records`` (the figure is not written)."""
    drawn = []
    monkeypatch.setattr(report_files, "save_figure", lambda fig, path: drawn.append(fig))
    report_files.plot_evolution(records, "unused.png")
    labels = [ax.get_ylabel() for ax in drawn[0].axes]
    report_files.pyplot().close(drawn[0])
    return labels


def test_evolution_png_shows_diversity_below_accuracy_and_old_logbooks_still_plot(monkeypatch):
    base = [{"gen": g, "frac_min": 1 - g / 4, "goal_fraction": 1 - g / 4, "acc_avg": 0.5, "acc_min": 0.4,
             "acc_max": 0.6} for g in range(3)]
    with_figures = [{**r, "div_masks": 1 + r["gen"], "div_jaccard": 1 - r["gen"] / 4, "div_spread": 0.02,
                     "div_clone_sd": None, "div_pair_se": 0.015} for r in base]
    labels = evolution_figure_axes(monkeypatch, with_figures)
    assert {"distinct masks", "Jaccard overlap", "accuracy sd"} <= set(labels)
    assert not {"distinct masks", "accuracy sd"} & set(evolution_figure_axes(monkeypatch, base))


SEARCH = {"fitness.inheritance": "pool", "pool.warm_start_fraction": 0.5, "ea.criterion": "bn",
          "ea.shrink_temperature": 1.0, "ea.swap_fraction": 0.2, "ea.scheduled_parents": "true",
          "fitness.common_draws": "true", "ea.generations": 3}


def logbook(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "logbook.jsonl").read_text().splitlines()]


def sets(**extra):
    return [arg for item in tiny_overrides(**{**SEARCH, **extra}) for arg in ("--set", item)]


def test_a_searching_run_logs_distinct_masks_every_generation(tmp_path):
    assert run_cli.main([*sets(), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    records = logbook(tmp_path / "run")
    assert all({"div_masks", "div_jaccard", "div_spread", "div_clone_sd", "div_pair_se", "target_masks"} <= set(r)
               for r in records)
    assert records[0]["div_masks"] == 1  # generation 0: whole networks, one mask
    assert all(r["div_masks"] >= 2 and r["div_jaccard"] < 1.0 for r in records[1:])


@pytest.mark.slow
def test_the_new_operators_resume_bit_for_bit_under_two_scoop_workers(tmp_path):
    serial = tmp_path / "serial"  # a process of its own, as the SCOOP workers are (same thread settings)
    alone = run_module(["-m", "learngene_ea.run", "--quiet", *sets(), "--run-dir", str(serial)], cwd=ROOT, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    scoop = tmp_path / "scoop"
    with stopped_after(1):  # killed after generation 1, then resumed under two SCOOP workers
        assert run_cli.main([*sets(), "--run-dir", str(scoop), "--quiet"]) == 130
    launch = ["-m", "scoop", "-n", "2", "-m", "learngene_ea.run", "--quiet"]
    again = run_module([*launch, "--resume", str(scoop)], cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert logbook(scoop) == logbook(serial)
    import torch

    a, b = (torch.load(d / "learngene.pt", weights_only=True) for d in (serial, scoop))
    assert all(torch.equal(a["masks"][g], b["masks"][g]) for g in a["masks"])
    assert all(torch.equal(a["weights"][l][k], b["weights"][l][k]) for l in a["weights"] for k in a["weights"][l])
