"""bench.mask_or_training, bench.descendant_gaps and bench.fitness_vs_transfer: what they pair, count and pool."""
import json

import numpy as np
import pytest
import torch

from bench import descendant_gaps, mask_or_training
from learngene_ea.core.learngene import extract_learngene, full_masks
from learngene_ea.core.models import build_model


def test_the_bn_mask_keeps_the_pools_largest_batchnorm_scales_as_many_per_group_as_the_learngene():
    network = build_model("conv4", 0.25, 3, 5, seed=0)
    for layer in network.spec.layers:  # scales rising with the channel index: the top ones are the last
        bn = network.gene_module(layer.name).bn
        bn.weight.data = torch.arange(1, bn.num_features + 1, dtype=torch.float32)
    pool = extract_learngene(network, full_masks(network.spec))
    kept = {g: m.copy() for g, m in full_masks(network.spec).items()}
    for mask in kept.values():
        mask[1::2] = False  # the learngene keeps every other channel: half of each group
    masks = mask_or_training.bn_masks(pool, extract_learngene(network, kept))
    for group, mask in masks.items():
        size = len(mask)
        assert mask.sum() == kept[group].sum()
        assert np.array_equal(np.flatnonzero(mask), np.arange(size - kept[group].sum(), size))


def test_the_random_mask_keeps_as_many_channels_per_group_and_repeats_for_a_seed():
    network = build_model("conv4", 0.25, 3, 5, seed=0)
    pool = extract_learngene(network, full_masks(network.spec))
    kept = {g: m.copy() for g, m in full_masks(network.spec).items()}
    for mask in kept.values():
        mask[1::3] = False
    learngene = extract_learngene(network, kept)
    first, again, other = (mask_or_training.random_masks(pool, learngene, seed) for seed in (1, 1, 2))
    assert all(first[g].sum() == kept[g].sum() and np.array_equal(first[g], again[g]) for g in kept)
    assert any(not np.array_equal(first[g], other[g]) for g in kept)


def test_mask_or_training_pairs_rows_per_episode_and_pools_the_seeds():
    rows = mask_or_training.ROWS
    per_seed = {0: {"5-shot": dict(zip(rows, ([0.5, 0.6], [0.6, 0.6], [0.6, 0.7], [0.7, 0.7], [0.6, 0.6])))},
                1: {"5-shot": dict(zip(rows, ([0.4, 0.5], [0.5, 0.7], [0.5, 0.5], [0.6, 0.6], [0.4, 0.5])))}}
    entry = mask_or_training.summarise(per_seed)["5-shot"]
    training = entry["learngene - evolved-mask, plain training"]
    differences = [-0.1, 0.0, -0.1, -0.2]  # learngene - evolved-mask, episode by episode, both seeds
    assert training["mean"] == pytest.approx(np.mean(differences)) and training["n"] == 4 and training["won"] == 0
    assert training["ci95"] == pytest.approx(3.182446 * np.std(differences, ddof=1) / 2, rel=1e-5)
    assert entry["evolved-mask, plain training - bn-mask, plain training"]["mean"] == pytest.approx(0.025)
    assert entry["bn-mask, plain training - random-mask, plain training"]["mean"] == pytest.approx(0.05)
    text = mask_or_training.markdown({"study": "s", "seeds": [0, 1], "command": "c", "summary": {"val": {
        "5-shot": entry}}})
    assert "| learngene − evolved-mask, plain training | the training's share (same mask) | -10.0 ±" in text


def _report(own, x1, pretrained_x1):
    def row(arch, method, accuracies):
        return {"arch": arch, "method": method, "results": {"5-shot": {"accuracies": accuracies}}}

    return {"settings": [{"name": "5-shot"}],
            "rows": [row("conv4 x0.5", "scratch", [0.3, 0.3]), row("conv4 x0.5", "learngene", own),
                     row("conv4 x1", "scratch", [0.2, 0.4]), row("conv4 x1", "pretrained", pretrained_x1),
                     row("conv4 x1", "learngene", x1)]}


def test_descendant_gaps_pair_each_descendant_with_its_own_rows_and_the_learngenes_own_size():
    reports = [_report([0.5, 0.6], [0.6, 0.6], [0.7, 0.8]), _report([0.5, 0.5], [0.4, 0.7], [0.7, 0.7])]
    summary = descendant_gaps.summarise(reports)["5-shot"]
    bigger = summary["conv4 x1"]
    assert bigger["learngene - pretrained"]["mean"] == pytest.approx(np.mean([-0.1, -0.2, -0.3, 0.0]))
    assert bigger["learngene - own-size learngene"]["mean"] == pytest.approx(np.mean([0.1, 0.0, -0.1, 0.2]))
    assert bigger["learngene - scratch"]["n"] == 4
    assert "pretrained" not in summary["conv4 x0.5"] and "learngene - own-size learngene" not in summary["conv4 x0.5"]
    text = descendant_gaps.markdown({"study": "s", "report": "transfer-2", "seeds": [0, 1], "command": "c",
                                     "fresh_channels": "grow", "summary": {"5-shot": summary}})
    assert "| conv4 x0.5 |" in text and "| — |" in text


def _study(points: dict, fresh_channels="grow", digest="abc"):
    """A validation study file: {seed: (fitness, per-episode learngene accuracies)}."""
    runs, per_seed = [], []
    for seed, (fitness, accuracies) in points.items():
        runs.append({"seed": seed, "episode_digests": {"5-shot": [f"{digest}{seed}"]},
                     "validation": {"fresh_validation": {"accuracy": fitness}}})
        per_seed.append({"seed": seed, "mean": float(np.mean(accuracies)), "accuracies": list(accuracies)})
    return {"transfer": {"classes": "val", "fresh_channels": fresh_channels, "complement_scale": 0.0, "steps": 30,
                         "lr": 0.01}, "runs": runs, "rows": {"learngene": {"5-shot": {"per_seed": per_seed}}}}


def test_fitness_and_transfer_are_compared_within_each_seed_so_a_seeds_own_level_does_not_count():
    from bench import fitness_vs_transfer

    episodes = np.array([0.1, -0.1, 0.05, -0.05])
    studies = []
    for variant, shift in enumerate([0.0, 0.01, 0.03, 0.02]):
        # seed 1 is easy for the transfer and hard for the fitness: raw points would anticorrelate
        studies.append(_study({0: (0.50 + shift, 0.50 + 0.8 * shift + episodes),
                               1: (0.30 + shift, 0.70 + 0.8 * shift + episodes)}))
    lines = fitness_vs_transfer.group_report(["a", "b", "c", "d"], studies)
    assert "correlation r = +1.00" in lines[3] and "slope +0.80" in lines[3]
    assert lines[4].startswith("transfer spread explained by its own episode noise: 0%")  # shifts only


def test_only_studies_with_one_protocol_and_the_same_episodes_are_pooled(tmp_path, capsys):
    from bench import fitness_vs_transfer

    episodes = np.array([0.5, 0.6, 0.4])
    paths = []
    for name, study in {"a": _study({0: (0.5, episodes)}), "b": _study({0: (0.6, episodes + 0.1)}),
                        "c": _study({0: (0.4, episodes - 0.1)}), "scaled": _study({0: (0.7, episodes)}, "scaled"),
                        "other-episodes": _study({0: (0.7, episodes)}, digest="xyz")}.items():
        paths.append(str(tmp_path / f"{name}.json"))
        with open(paths[-1], "w") as f:
            json.dump(study, f)
    assert fitness_vs_transfer.main(paths + ["--out", str(tmp_path / "report.txt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("studies (3): a.json, b.json, c.json") and out.count("studies (") == 1
    assert (tmp_path / "report.txt").read_text().splitlines()[1] == out.splitlines()[0]
