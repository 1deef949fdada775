"""The population_step row of ``python -m bench``: the training step of P = 1, 4, 16 stacked Conv4
descendants (the default recipe's model, batch and layout), counted in aten operations per step with
torch's profiler and timed in images/second, for this working tree and for a baseline commit side by
side, plus the whole fitness evaluation of 4 descendants (``evaluate_chunk``) in both.

The baseline's package is unpacked from git (``git archive``) into a temporary folder under another
name (``learngene_ea_before``: the package imports itself relatively) and imported beside this tree's,
so both run in this one process, on the same descendants, tasks, dataset and config, taking turns
round after round: a machine whose speed drifts (shared cores) slows both alike. Operations per step
are counted as the difference between ``train_stacked`` over 16 and over 8 steps (one block of planned
draws either way), with the host's random draws (``TaskBatches.plan``) answered from a cache: what is
left is the step itself.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (1, 4, 16)
BEFORE = "learngene_ea_before"


@contextlib.contextmanager
def baseline_package(baseline: str):
    """The package at git commit ``baseline``, importable as ``learngene_ea_before``, while inside."""
    folder = tempfile.mkdtemp()
    try:
        archive = subprocess.run(["git", "archive", baseline, "learngene_ea"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        os.rename(os.path.join(folder, "learngene_ea"), os.path.join(folder, BEFORE))
        sys.path.insert(0, folder)
        yield {"before": package_side(BEFORE), "after": package_side("learngene_ea")}
    finally:
        sys.path.remove(folder) if folder in sys.path else None
        for name in [n for n in sys.modules if n == BEFORE or n.startswith(BEFORE + ".")]:
            del sys.modules[name]
        shutil.rmtree(folder, ignore_errors=True)


# where each module is: in the flat layout (before issue #24, e.g. the default baseline) or in subpackages
FLAT = {"fitness": "fitness", "models": "models", "sampling": "sampling", "training": "training"}
NESTED = {"fitness": "ea.fitness", "models": "core.models", "sampling": "fewshot.sampling",
          "training": "fewshot.training", "process": "parallel.process"}


def package_side(package: str) -> SimpleNamespace:
    """The modules of ``package`` the row uses (``fitness``, ``models``, ``sampling``, ``training``), its
    ``configure_process`` and its ``train_stacked(models, dataset, tasks, task_cfg, augment, seeds)``,
    whichever layout and signature it has."""
    flat = importlib.util.find_spec(f"{package}.fitness") is not None
    side = SimpleNamespace(**{key: importlib.import_module(f"{package}.{name}")
                              for key, name in (FLAT if flat else NESTED).items()})
    side.configure_process = (side.fitness if flat else side.process).configure_process
    training = side.training

    def train_stacked(models, dataset, tasks, t, augment, seeds):
        if hasattr(training, "TrainSettings"):  # issue #24's narrow signature
            settings = training.TrainSettings(t.steps, t.batch_size, t.lr, t.weight_decay, augment)
            return training.train_stacked(models, dataset, tasks, settings, seeds, "cpu")
        return training.train_stacked(models, dataset, tasks, t.steps, t.batch_size, t.lr, t.weight_decay,
                                      augment, seeds, "cpu")

    side.train_stacked = train_stacked
    return side


def bench_population_step(baseline: str, repeats: int, sizes=SIZES, steps: int = 12,
                          overrides: tuple = (), threads: int = 1) -> dict:
    """Op counts and images/second of the step for ``sizes`` stacked descendants, this tree vs
    ``baseline`` (a git commit), and one ``evaluate_chunk`` of 4 descendants in both: medians (and
    minima) of ``repeats`` + 2 rounds taken in turns (after one untimed round), on ``threads`` torch
    threads (1: on shared cores, several threads' barriers make a step's time jump tenfold)."""
    import torch

    from bench.common import fresh_population
    from learngene_ea.config.loading import load_config
    from learngene_ea.data import load_dataset

    cfg = load_config(os.path.join(ROOT, "genomes", "default.yaml"),
                      ["transfer.after_run=false", "ea.population_size=4", "task.steps=60", *overrides])
    dataset = load_dataset(cfg.data)
    rounds = repeats + 2
    with baseline_package(baseline) as sides:
        for side in sides.values():
            side.configure_process(cfg.runtime)
        torch.set_num_threads(threads)
        rows = {}
        for p in sizes:
            row = {f"{name}_{kind}": value for name, side in sides.items()
                   for kind, value in zip(("aten_ops_per_step", "outermost_aten_ops_per_step"),
                                          ops_per_step(side, cfg, dataset, p))}
            runs = {name: _train(side, cfg, dataset, p, steps) for name, side in sides.items()}
            median, times = _medians_in_turns(runs, rounds)
            for side in sides:
                row[f"{side}_images_per_second"] = p * cfg.task.batch_size * steps / median[side]
                row[f"{side}_seconds"] = times[side]
            row["speedup"] = median["before"] / median["after"]
            row["speedup_of_fastest_rounds"] = min(times["before"]) / min(times["after"])
            rows[f"P={p}"] = row
        population = fresh_population(cfg)
        chunks = {name: (lambda m=side.fitness: m.evaluate_chunk(population, cfg)) for name, side in sides.items()}
        median, times, last = _medians_in_turns(chunks, max(1, repeats), keep_last=True)
    evaluation = {f"{side}_seconds": median[side] for side in median}
    evaluation.update(speedup=median["before"] / median["after"], rounds=times,
                      speedup_of_fastest_rounds=min(times["before"]) / min(times["after"]),
                      accuracies={side: [e.fitness[0] for e in last[side]] for side in last},
                      stacked={side: [e.info.get("stacked") for e in last[side]] for side in last})
    return {"baseline": baseline, "steps": steps, "batch": cfg.task.batch_size,
            "model": f"{cfg.model.family}x{cfg.model.width}", "channels_last": cfg.runtime.channels_last,
            "threads": torch.get_num_threads(), "training_step": rows, "evaluate_chunk": evaluation}


def population_step_lines(result: dict) -> list[str]:
    """The printed table's lines of :func:`bench_population_step`'s ``result``."""
    lines = []
    for label, row in result["training_step"].items():
        ops = {k: row[f"{k}_aten_ops_per_step"] for k in ("before", "after", "before_outermost", "after_outermost")}
        lines.append(f"step         {label}: aten ops per step {ops['before']:.0f} -> {ops['after']:.0f} (outermost "
                     f"{ops['before_outermost']:.0f} -> {ops['after_outermost']:.0f}); "
                     f"{row['before_images_per_second']:.0f} -> {row['after_images_per_second']:.0f} img/s "
                     f"({row['speedup']:.2f}x)")
    e = result["evaluate_chunk"]
    lines.append(f"step         evaluate_chunk of 4: {e['before_seconds']:.2f}s -> {e['after_seconds']:.2f}s "
                 f"({e['speedup']:.2f}x)")
    return lines


def _medians_in_turns(runs: dict, rounds: int, keep_last: bool = False):
    """Every function of ``runs`` once per round, in turns, after one untimed round: median seconds
    and every round's seconds per key (and each key's last return value with ``keep_last``)."""
    times, last = {key: [] for key in runs}, {}
    for round_ in range(rounds + 1):
        for key, fn in runs.items():
            start = time.perf_counter()
            last[key] = fn()
            if round_:
                times[key].append(time.perf_counter() - start)
    median = {key: statistics.median(values) for key, values in times.items()}
    return (median, times, last) if keep_last else (median, times)


def _train(side: SimpleNamespace, cfg, dataset, p: int, steps: int):
    """A function that trains fresh copies of ``p`` descendants with ``side``'s package (:func:`package_side`)."""
    t = cfg.task
    tasks = [side.sampling.sample_task(dataset, 100 + i, t.num_classes, t.images_per_class) for i in range(p)]
    task = SimpleNamespace(steps=steps, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay)

    def train():
        descendants = [side.models.build_model(cfg.model.family, cfg.model.width, 3, t.num_classes, seed=i)
                       for i in range(p)]
        return side.train_stacked(descendants, dataset, tasks, task, cfg.data.augment, list(range(p)))

    return train


def aten_ops(work) -> tuple[int, int]:
    """aten operations ``work()`` runs: every one the profiler records (nested ones included), and
    those called from Python or autograd (not from inside another aten operation)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        work()
    aten = [event for event in prof.events() if event.name.startswith("aten::")]
    outer = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    return len(aten), len(outer)


def ops_per_step(side: SimpleNamespace, cfg, dataset, p: int) -> tuple[float, float]:
    """aten ops of ``train_stacked`` (of ``side``'s package) over 16 steps minus over 8, per step,
    with planned draws cached: all of them and the outermost ones (:func:`aten_ops`)."""
    training = side.training
    real_plan, cache = training.TaskBatches.plan, {}

    def cached_plan(self, steps, augment):
        if (steps, augment) not in cache:
            cache[steps, augment] = real_plan(self, steps, augment)
        return cache[steps, augment]

    training.TaskBatches.plan = cached_plan
    try:
        for steps in (8, 16):  # warm-up, fills the cache
            _train(side, cfg, dataset, p, steps)()
        counts = {steps: aten_ops(_train(side, cfg, dataset, p, steps)) for steps in (8, 16)}
    finally:
        training.TaskBatches.plan = real_plan
    return tuple((counts[16][k] - counts[8][k]) / 8 for k in (0, 1))
