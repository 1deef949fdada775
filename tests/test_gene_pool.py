"""The shared gene pool: every descendant's training feeds the pool; merge, scores, warm start, resume."""
import json
import random

import numpy as np
import pytest
import torch

from conftest import ROOT, run_module, stopped_after, tiny_overrides
from learngene_ea.ea import gene_pool
from learngene_ea.api.run import given_pool
from learngene_ea.cli import run as run_cli
from learngene_ea.io.checkpoint import load_checkpoint
from learngene_ea.config.loading import load_config
from learngene_ea.config.schema import ConfigError
from learngene_ea.core.learngene import channel_importance, extract_learngene, full_masks
from learngene_ea.core.models import build_model

POOL = {"fitness.inheritance": "pool", "fitness.rescore_episodes": 0}


def _pool(seed=0):
    model = build_model("conv4", 0.25, 3, 5, seed=seed)
    return gene_pool.pool_from_model(model, {"kind": "init", "images": 0}), model


def _trained_copy(pool, masks, offset):
    """What a descendant under ``masks`` would send back: the pool's weights there, plus ``offset``."""
    learngene = pool.learngene.restrict(masks)
    for weights in learngene.weights.values():
        for key in weights:
            weights[key] = weights[key] + np.float32(offset)
    return learngene


def _half_masks(pool, first: bool):
    masks = {}
    for group, size in pool.learngene.spec.groups:
        mask = np.zeros(size, dtype=bool)
        mask[: size // 2] = first
        mask[size // 2:] = not first
        masks[group] = mask
    return masks


def test_merge_moves_each_weight_to_the_mean_of_its_carriers_and_leaves_the_rest():
    pool, _ = _pool()
    before = {name: {k: v.copy() for k, v in w.items()} for name, w in pool.learngene.weights.items()}
    spec = pool.learngene.spec
    first, full = _half_masks(pool, True), full_masks(spec)
    gene_pool.merge(pool, [(1, first, _trained_copy(pool, first, 1.0)), (2, full, _trained_copy(pool, full, 3.0))])
    layer = spec.layers[1]  # reads a group: in and out masked
    conv_before, conv = before[layer.name]["conv"], pool.learngene.weights[layer.name]["conv"]
    half = len(first[layer.group]) // 2
    in_half = len(first[layer.in_group]) // 2
    # both carried the first half (in and out): mean update (1 + 3) / 2; only the whole one the rest
    np.testing.assert_allclose(conv[:half, :in_half], conv_before[:half, :in_half] + 2.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(conv[half:, in_half:], conv_before[half:, in_half:] + 3.0, rtol=1e-6, atol=1e-6)
    # a weight nobody carried stays exactly as it was
    gene_pool.merge(pool, [(3, first, _trained_copy(pool, first, 0.5))])
    second = ~first[layer.group]
    assert np.array_equal(pool.learngene.weights[layer.name]["bn_bias"][second],
                          (before[layer.name]["bn_bias"] + 3.0).astype(np.float32)[second])


def test_merge_is_the_same_in_any_order_bit_for_bit():
    contributions = []
    base, _ = _pool()
    rng = np.random.default_rng(0)
    for ident in range(6):
        masks = {g: rng.random(size) < 0.6 for g, size in base.learngene.spec.groups}
        contributions.append((ident, masks, _trained_copy(base, masks, float(rng.normal()))))
    merged = []
    for order in (contributions, contributions[::-1], random.Random(1).sample(contributions, 6)):
        pool, _ = _pool()
        gene_pool.merge(pool, order)
        merged.append(pool.learngene.weights)
    for other in merged[1:]:
        assert all(np.array_equal(merged[0][n][k], other[n][k]) for n in merged[0] for k in merged[0][n])


def test_a_pool_step_of_two_moves_twice_as_far():
    one, _ = _pool()
    two, _ = _pool()
    masks = full_masks(one.learngene.spec)
    start = one.learngene.weights["blocks.0"]["conv"].copy()
    gene_pool.merge(one, [(0, masks, _trained_copy(one, masks, 0.25))], step=1.0)
    gene_pool.merge(two, [(0, masks, _trained_copy(two, masks, 0.25))], step=2.0)
    np.testing.assert_allclose(two.learngene.weights["blocks.0"]["conv"] - start,
                               2 * (one.learngene.weights["blocks.0"]["conv"] - start), atol=1e-6)


def test_scores_credit_channels_whose_carriers_beat_the_generation_and_decay():
    pool, _ = _pool()
    first, second = _half_masks(pool, True), _half_masks(pool, False)
    gene_pool.update_scores(pool, [(first, 0.6), (second, 0.4)], decay=0.5)
    group = pool.learngene.spec.group_names[0]
    half = len(first[group]) // 2
    np.testing.assert_allclose(pool.scores[group][:half], 0.5 * 0.1)
    np.testing.assert_allclose(pool.scores[group][half:], -0.5 * 0.1)
    full = full_masks(pool.learngene.spec)
    gene_pool.update_scores(pool, [(full, 0.9), (full, 0.1)], decay=0.5)  # all carried: no evidence, decay only
    np.testing.assert_allclose(pool.scores[group][:half], 0.25 * 0.1)


def test_score_criterion_keeps_the_best_scored_channels_with_l1_breaking_ties():
    pool, model = _pool()
    group = pool.learngene.spec.group_names[2]
    pool.scores[group][:] = 0.0
    pool.scores[group][-3:] = 0.2  # the last three channels carried the best descendants
    learngene = pool.restrict(full_masks(pool.learngene.spec))
    importance = channel_importance(learngene, "score")
    assert set(np.argsort(-importance[group])[:3]) == {len(importance[group]) - 3, len(importance[group]) - 2,
                                                       len(importance[group]) - 1}
    other = pool.learngene.spec.group_names[1]  # all scores equal: the l1 order
    l1 = channel_importance(extract_learngene(model, full_masks(pool.learngene.spec)), "l1")
    assert np.array_equal(np.argsort(-importance[other]), np.argsort(-l1[other]))


def test_score_criterion_needs_the_pool():
    with pytest.raises(ConfigError, match="'ea.criterion' score"):
        load_config(None, ["ea.criterion=score"])
    with pytest.raises(ConfigError, match="'pool.warm_start_fraction'"):
        load_config(None, ["pool.warm_start_fraction=0.5"])
    load_config(None, ["ea.criterion=score", "fitness.inheritance=pool"])


def _args(run_dir, **extra):
    args = []
    for item in tiny_overrides(**{**POOL, **extra}):
        args += ["--set", item]
    return args + ["--run-dir", str(run_dir), "--quiet"]


def _logbook(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "logbook.jsonl").read_text().splitlines()]


def _pool_weights(run_dir):
    pool = load_checkpoint(run_dir / "checkpoints" / "latest.pkl")["pool"]
    return pool["learngene"].weights, pool["scores"], pool["history"]


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pool") / "run"
    assert run_cli.main(_args(run_dir, **{"ea.criterion": "score", "ea.flip_prob": 0.1})) == 0
    return run_dir


def test_every_evaluated_descendant_trains_the_pool(pool_run):
    weights, scores, history = _pool_weights(pool_run)
    logbook = _logbook(pool_run)
    assert [h["gen"] for h in history] == [r["gen"] for r in logbook]
    assert [h["descendants"] for h in history] == [r["evals"] for r in logbook]
    # the pool started as one network's initialisation: generation 0 trained every channel of it
    assert all(moved > 0 for moved in history[0]["moved"].values())
    fresh = gene_pool.initial_pool(load_config(None, tiny_overrides(**POOL)))
    assert not np.array_equal(fresh.learngene.weights["blocks.1"]["conv"], weights["blocks.1"]["conv"])
    # the product is the pool under its masks
    product = torch.load(pool_run / "learngene.pt", weights_only=True)
    masks = {g: m.numpy() for g, m in product["masks"].items()}
    assert product["meta"]["from"] == "gene pool"
    assert len(product["meta"]["scores"]) == len(masks)


def test_a_resumed_pool_run_equals_the_uninterrupted_one_bit_for_bit(pool_run, tmp_path):
    run_dir = tmp_path / "run"
    extra = {"ea.criterion": "score", "ea.flip_prob": 0.1}
    with stopped_after(1):  # the recipe unchanged: its warm start too
        assert run_cli.main(_args(run_dir, **extra)) == 130
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    assert _logbook(run_dir) == _logbook(pool_run)
    (wa, sa, ha), (wb, sb, hb) = _pool_weights(run_dir), _pool_weights(pool_run)
    assert all(np.array_equal(wa[n][k], wb[n][k]) for n in wa for k in wa[n])
    assert all(np.array_equal(sa[g], sb[g]) for g in sa) and ha == hb


def test_the_warm_start_trains_the_pool_first_and_counts_its_images(tmp_path, capsys):
    cfg = load_config(None, tiny_overrides(**POOL, **{"pool.warm_start_fraction": 0.5}))
    planned = gene_pool.planned_evaluations(cfg.ea) * cfg.task.steps * cfg.task.batch_size
    assert gene_pool.planned_evaluations(cfg.ea) == 4 + 2 * 3
    assert gene_pool.warm_start_images(cfg) == planned // 2
    warm = gene_pool.initial_pool(cfg)
    cold = gene_pool.initial_pool(load_config(None, tiny_overrides(**POOL)))
    assert warm.warm_start["kind"] == "warm_start" and warm.warm_start["images"] == planned // 2
    assert not np.array_equal(warm.learngene.weights["blocks.0"]["conv"], cold.learngene.weights["blocks.0"]["conv"])
    run_dir = tmp_path / "run"
    assert run_cli.main(_args(run_dir, **{"pool.warm_start_fraction": 0.5})) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gene pool: warm start")]
    assert len(said) == 2 and f"({planned // 2:,} images" in said[0] and "final loss" in said[1]
    meta = torch.load(run_dir / "learngene.pt", weights_only=True)["meta"]
    evals = sum(r["evals"] for r in _logbook(run_dir))
    assert meta["training_images"] == evals * cfg.task.steps * cfg.task.batch_size + planned // 2
    assert meta["warm_start_images"] == planned // 2  # what the transfer's slimming row matches


def test_the_warm_start_takes_every_core_unless_runtime_threads_says_otherwise(monkeypatch):
    seen = []
    monkeypatch.setattr(gene_pool, "available_cores", lambda: 3)
    real = gene_pool.threads_set_to

    def watching(threads):
        seen.append(threads)
        return real(threads)

    monkeypatch.setattr(gene_pool, "threads_set_to", watching)
    before = torch.get_num_threads()
    for threads, expected in ((0, 3), (1, 1)):
        cfg = load_config(None, tiny_overrides(**POOL, **{"pool.warm_start_fraction": 0.5,
                                                          "runtime.threads": threads}))
        assert gene_pool.initial_pool(cfg).warm_start["threads"] == expected
    assert seen == [3, 1] and torch.get_num_threads() == before  # the workers' share is restored


@pytest.mark.slow
def test_the_pool_run_is_the_same_under_two_scoop_workers(pool_run, tmp_path):
    """Results return in any order from two workers: the merge, and so the run, does not care."""
    run_dir = tmp_path / "scoop"
    result = run_module(["-m", "scoop", "-n", "2", "-m", "learngene_ea.run",
                         *_args(run_dir, **{"ea.criterion": "score", "ea.flip_prob": 0.1})], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _logbook(run_dir) == _logbook(pool_run)
    (wa, _, _), (wb, _, _) = _pool_weights(run_dir), _pool_weights(pool_run)
    assert all(np.array_equal(wa[n][k], wb[n][k]) for n in wa for k in wa[n])


def test_from_pretrained_starts_the_pool_from_the_given_network(tmp_path, capsys):
    cfg = load_config(None, tiny_overrides(**POOL))
    network = build_model(cfg.model.family, cfg.model.width, cfg.data.channels, 7, seed=5)
    torch.save(network.state_dict(), tmp_path / "net.pt")
    pool = given_pool(str(tmp_path / "net.pt"), cfg)
    assert pool.warm_start["kind"] == "given" and pool.warm_start["images"] == 0
    expected = extract_learngene(network, full_masks(network.spec))
    assert all(np.array_equal(pool.learngene.weights[n][k], expected.weights[n][k])
               for n in expected.weights for k in expected.weights[n])
    run_dir = tmp_path / "run"
    assert run_cli.main(_args(run_dir, **{"ea.generations": 0}) + ["--from-pretrained", str(tmp_path / "net.pt")]) == 0
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pkl")["pool"]["warm_start"]["kind"] == "given"
    # genomes/default.yaml asks for a warm start, which the given network replaces: said once
    assert capsys.readouterr().out.count("pool.warm_start_fraction (1) trains no warm start") == 1


@pytest.mark.parametrize("problem", ["wrong width", "no pool", "with resume"])
def test_from_pretrained_refuses_in_one_sentence_before_any_compute(tmp_path, capsys, problem):
    cfg = load_config(None, tiny_overrides(**POOL))
    width = cfg.model.width * (2 if problem == "wrong width" else 1)
    torch.save(build_model(cfg.model.family, width, cfg.data.channels, 7).state_dict(), tmp_path / "net.pt")
    run_dir = tmp_path / "run"
    args = _args(run_dir) + ["--from-pretrained", str(tmp_path / "net.pt")]
    if problem == "no pool":
        args += ["--set", "fitness.inheritance=lamarckian", "--set", "pool.warm_start_fraction=0"]
    if problem == "with resume":
        args += ["--resume", str(tmp_path)]
    assert run_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "--from-pretrained" in err and "Traceback" not in err
    assert not run_dir.exists()


def test_a_pool_run_writes_its_history_and_the_plot_of_its_scores(pool_run):
    report = json.loads((pool_run / "gene_pool.json").read_text())
    # genomes/default.yaml starts the pool from a warm start
    assert [h["gen"] for h in report["history"]] == [0, 1, 2] and report["warm_start"]["kind"] == "warm_start"
    assert (pool_run / "gene_pool.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_warm_start_can_train_random_sub_networks_on_a_share_of_its_steps():
    cfg = load_config(None, tiny_overrides(**POOL, **{"pool.warm_start_fraction": 2.0}))
    steps = gene_pool.warm_start_images(cfg) // cfg.task.batch_size
    whole = gene_pool.initial_pool(cfg)
    half = gene_pool.initial_pool(load_config(None, tiny_overrides(
        **POOL, **{"pool.warm_start_fraction": 2.0, "pool.warm_start_subnets": 0.5})))
    assert whole.warm_start["subnet_steps"] == 0 and 0 < half.warm_start["subnet_steps"] < steps
    assert not np.array_equal(whole.learngene.weights["blocks.1"]["conv"], half.learngene.weights["blocks.1"]["conv"])
    # on a sub-network step the dropped channels are silent: the network is its learngene sub-network
    model = build_model("conv4", 0.25, 3, 5, seed=0).eval()
    subnets = gene_pool.RandomSubnetworks(model, 1.0, 0.5, seed=3, steps=2)
    images = torch.randn(2, 3, 32, 32)
    silenced = model.forward_features(images)
    assert (silenced == 0).any() and subnets.trained == 1
    subnets(1)  # before the second step: another draw
    subnets(2)  # after the last step: nothing left to train
    assert subnets.trained == 2 and not subnets.handles
    assert not (model.forward_features(images) == 0).any()
