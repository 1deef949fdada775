"""bench.scalability: the fresh-channel rules' rows, paired per episode and pooled over a study's seeds."""
import numpy as np
import pytest

from bench import scalability
from learngene_ea.core.learngene import extract_learngene, full_masks
from learngene_ea.core.models import build_model


def test_each_architecture_gets_scratch_once_and_the_learngene_under_each_rule():
    network = build_model("conv4", 0.25, 3, 5, seed=0)
    masks = {g: m.copy() for g, m in full_masks(network.spec).items()}
    for mask in masks.values():
        mask[len(mask) // 2:] = False
    learngene = extract_learngene(network, masks)
    rows = [(arch, row) for arch, row, _ in scalability.seed_rows(learngene, [("conv4", 0.5)])]
    assert sorted(rows) == sorted((arch, row) for arch in ("conv4 x0.25", "conv4 x0.5")
                                  for row in ("scratch", "silent", "grow"))


def test_differences_are_paired_per_episode_and_pooled_over_the_seeds():
    def seed(scratch, silent, grow):
        rows = {"scratch": scratch, "silent": silent, "grow": grow}
        return {"settings": {"5-shot": {"conv4 x0.5": rows, "conv4 x1": {k: [v + 0.1 for v in vs]
                                                                         for k, vs in rows.items()}}}}

    per_seed = {0: seed([0.3, 0.4], [0.5, 0.6], [0.6, 0.6]), 1: seed([0.2, 0.3], [0.5, 0.5], [0.5, 0.7])}
    entry = scalability.summarise(per_seed)["5-shot"]
    base, bigger = entry["conv4 x0.5"], entry["conv4 x1"]
    differences = [0.1, 0.0, 0.0, 0.2]  # grow - silent, episode by episode, both seeds
    assert base["grow - silent"]["mean"] == pytest.approx(np.mean(differences))
    assert base["grow - silent"]["n"] == 4 and base["grow - silent"]["won"] == 2
    assert base["grow - silent"]["ci95"] == pytest.approx(3.182446 * np.std(differences, ddof=1) / 2, rel=1e-5)
    assert "grow - base grow" not in base
    assert bigger["grow - base grow"]["mean"] == pytest.approx(0.1)
    assert "| conv4 x1 |" in scalability.markdown({"study": "s", "seeds": [0, 1], "command": "c",
                                                    "summary": {"test": {"5-shot": entry}}})
