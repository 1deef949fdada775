"""Files written before the package moved into subpackages still load, and a checkpoint resumes exactly.

``tests/fixtures/legacy/`` was written by the flat package (commit 6e427de), whose pickles name
classes by their old module paths (``learngene_ea.core.learngene.Learngene``, ...): see its README.
"""
import json
import os
import shutil

import torch

from conftest import ROOT

LEGACY = os.path.join(ROOT, "tests", "fixtures", "legacy")


def logbook_without_seconds(path):
    lines = [json.loads(line) for line in open(path, encoding="utf-8").read().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def same_tensors(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    return torch.equal(a, b)


def close_tensors(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close_tensors(a[k], b[k]) for k in a)
    return torch.allclose(a, b, rtol=0, atol=1e-6)


def test_a_legacy_checkpoint_loads_with_its_classes():
    from learngene_ea.io.checkpoint import load_checkpoint
    from learngene_ea.core.learngene import Learngene

    payload = load_checkpoint(os.path.join(LEGACY, "checkpoints", "gen_0001.pkl"))
    assert payload["generation"] == 1
    assert all(isinstance(ind.learngene, Learngene) for ind in payload["population"])


def test_a_legacy_checkpoint_resumes_to_its_logbook_masks_and_weights(tmp_path):
    from learngene_ea.cli import run as run_cli

    run_dir = tmp_path / "run"
    os.makedirs(run_dir / "checkpoints")
    shutil.copy(os.path.join(LEGACY, "config.yaml"), run_dir / "config.yaml")
    shutil.copy(os.path.join(LEGACY, "checkpoints", "gen_0001.pkl"), run_dir / "checkpoints" / "gen_0001.pkl")
    assert run_cli.main(["--resume", str(run_dir), "--quiet"]) == 0
    legacy = logbook_without_seconds(os.path.join(LEGACY, "logbook.jsonl"))
    resumed = logbook_without_seconds(run_dir / "logbook.jsonl")
    # the figures the legacy run wrote, exactly; later versions add more (diversity figures)
    assert [{k: line[k] for k in old} for line, old in zip(resumed, legacy)] == legacy and len(resumed) == len(legacy)
    new = torch.load(run_dir / "learngene.pt", weights_only=True)
    old = torch.load(os.path.join(LEGACY, "learngene.pt"), weights_only=True)
    assert new["meta"]["id"] == old["meta"]["id"]
    assert same_tensors(new["masks"], old["masks"])
    # the weights to float precision: the fixture was written on another CPU, whose kernels may sum in
    # another order (bit for bit on one machine is what tests/test_resume.py pins)
    assert close_tensors(new["weights"], old["weights"])


def test_legacy_learngene_and_pareto_files_load():
    from learngene_ea.core.learngene import load_learngene

    product = load_learngene(os.path.join(LEGACY, "learngene.pt"))
    member = load_learngene(os.path.join(LEGACY, "pareto", "learngene-0.2687.pt"))
    assert abs(product.fraction - 0.2687) < 1e-4 and abs(member.fraction - 0.2687) < 1e-4
    assert product.num_params == member.num_params == 2008
