"""Shared fixtures: a tiny synthetic dataset and a CPU-sized config for fast tests."""
import contextlib
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

torch.set_num_threads(1)


def user_network_module(tmp_path, monkeypatch, name: str, source: str):
    """Write a user's network module ``name`` (``source``, dedented) where Python imports it from, with
    nothing of it imported or traced yet and no module allowed (a recipe must name it)."""
    import textwrap

    from learngene_ea.core import traced

    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(traced, "_ALLOWED_MODULES", set())
    monkeypatch.setattr(traced, "_TRACES", {})
    sys.modules.pop(name, None)


def tiny_overrides(**extra):
    """``--set`` overrides that make a whole run take seconds on one core."""
    values = {
        "data.images_per_class": 30,
        "model.width": 0.25,
        "task.num_classes": 5,
        "task.images_per_class": 8,
        "task.steps": 4,
        "task.batch_size": 16,
        "fitness.episodes": 3,
        "fitness.n_query": 5,
        "ea.population_size": 4,
        "ea.generations": 2,
        "ea.tournsize": 2,
        "ea.schedule_generations": 2,
        "ea.target_fraction": 0.3,
        "transfer.after_run": "false",
        # torch's CPU kernels split sums by thread: results repeat exactly for one thread count
        "runtime.threads": 1,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture
def tiny_cfg():
    from learngene_ea.config.loading import load_config

    return load_config(None, tiny_overrides())


@pytest.fixture(scope="session")
def tiny_dataset():
    from learngene_ea.data.synthetic import make_synthetic

    return make_synthetic(seed=0, images_per_class=30)


def fraction_of(individual) -> float:
    """The learngene fraction of an individual's masks (over its architecture's gene layers)."""
    from learngene_ea.core.individual import individual_spec, masks_of
    from learngene_ea.core.learngene import learngene_fraction

    return learngene_fraction(individual_spec(individual), masks_of(individual))


def nearest_centroid_accuracy(features, labels) -> float:
    """Share of rows of ``features`` whose nearest class mean (squared distance) is their own class's."""
    import numpy as np

    centroids = np.stack([features[labels == c].mean(0) for c in np.unique(labels)])
    return float((np.argmin(((features[:, None] - centroids[None]) ** 2).sum(-1), axis=1) == labels).mean())


def complete_circuits(spec, masks, min_channels: int = 1) -> bool:
    """Every group keeps at least ``min_channels`` channels (or all it has): every kept channel reads all kept
    channels of the group before it, so a circuit is broken exactly when a group it passes through keeps none."""
    return all(int(masks[name].sum()) >= min(min_channels, size) for name, size in spec.groups)


def older_transfer_json(cfg, learngene, missing: str) -> dict:
    """``learngene``'s transfer.json under ``cfg`` as a version before the key ``transfer.<missing>`` wrote it
    (the key absent from its evaluation), read back from JSON as a study reads it."""
    import dataclasses
    import json

    from learngene_ea.transfer.pipeline import FORMAT
    from learngene_ea.transfer.target import target_data, with_resolved_augment

    resolved, _ = with_resolved_augment(cfg)
    evaluation = {**dataclasses.asdict(resolved.transfer), "metric": cfg.fitness.metric, "descendants": []}
    del evaluation[missing]
    return json.loads(json.dumps({"format": FORMAT, "evaluation": evaluation,
                                  "dataset": {"config": dataclasses.asdict(target_data(cfg)[0])},
                                  "learngene": {"meta": learngene.meta}}))


def run_module(args, cwd, timeout=300, env_extra=None):
    """Run ``python <args>`` in a subprocess; return the CompletedProcess."""
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


RECIPE = os.path.join(ROOT, "genomes", "default.yaml")  # what the command line reads from the repo root


def without_timings(records):
    """Logbook records without their wall-clock seconds (the rest repeats exactly)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.fixture(scope="session")
def serial_run_dir(tmp_path_factory):
    """A tiny run of genomes/default.yaml in this process (no SCOOP, no Ray): its run directory."""
    from learngene_ea.cli import run as run_module

    run_dir = tmp_path_factory.mktemp("serial") / "run"
    overrides = tiny_overrides(**{"runtime.backend": "serial", "fitness.rescore_episodes": 0})
    args = ["--config", RECIPE, "--run-dir", str(run_dir), "--quiet"] + [a for o in overrides for a in ("--set", o)]
    assert run_module.main(args) == 0
    return run_dir


def read_logbook(run_dir):
    """``logbook.jsonl`` of a run directory, without timings."""
    import json

    with open(os.path.join(run_dir, "logbook.jsonl"), encoding="utf-8") as f:
        return without_timings(json.loads(line) for line in f)


@pytest.fixture(scope="session")
def serial_logbook(serial_run_dir):
    return read_logbook(serial_run_dir)


def stopped_after(generation):
    """A context in which a run is killed (KeyboardInterrupt) right after generation ``generation``
    is saved: an interruption that leaves the recipe as it was (its budget, hence a gene pool's
    warm start, included), unlike stopping it early with ``ea.generations``."""
    from learngene_ea.api import run as run_api

    save = run_api.RunOutputs.__call__

    def save_then_stop(self, state):
        save(self, state)
        if state.generation == generation:
            raise KeyboardInterrupt

    patch = pytest.MonkeyPatch()
    patch.setattr(run_api.RunOutputs, "__call__", save_then_stop)
    return contextlib.closing(_Undoing(patch))


class _Undoing:
    """``close()`` undoes the patch (for :func:`contextlib.closing`)."""

    def __init__(self, patch):
        self.close = patch.undo


@pytest.fixture(autouse=True)
def _process_layout_restored():
    """A test that runs a recipe in this process (genomes/default.yaml sets runtime.channels_last)
    switches the process's layout; the next test starts from PyTorch's default again."""
    from learngene_ea.core import models

    before = models.memory_format()
    yield
    models.use_channels_last(before == torch.channels_last)


def seeded_trained_like(model, seed: int):
    """``model`` (any ``nn.Module``) with random BatchNorm statistics and scales from ``seed`` (what training
    leaves), in evaluation mode."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()
