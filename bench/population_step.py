"""The population_step row of ``python -m bench``: the training step of P = 1, 4, 16 stacked Conv4
descendants (the default recipe's model, batch and layout), counted in aten operations per step with
torch's profiler and timed in images/second, for this working tree and for a baseline commit side by
side, plus the whole fitness evaluation of 4 descendants (``evaluate_chunk``) in both.

The baseline's package is unpacked from git (``git archive``) into a temporary folder; each side is
measured in its own fresh process (``python bench/population_step.py --code DIR``), the sides taking
turns, so both see the same machine. Operations per step are counted as the difference between
``train_stacked`` over 16 and over 8 steps (one block of planned draws either way), with the host's
random draws (``TaskBatches.plan``) answered from a cache: what is left is the step itself.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (1, 4, 16)


def bench_population_step(baseline: str, repeats: int, sizes=SIZES, steps: int = 40) -> dict:
    """Op counts and images/second of the step for ``sizes`` stacked descendants, this tree vs
    ``baseline`` (a git commit), medians of ``repeats`` fresh processes per side taken in turns."""
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "archive", baseline, "learngene_ea"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        sides = {"before": old, "after": ROOT}
        runs = {side: [] for side in sides}
        for turn in range(repeats):
            for side, code in sides.items():
                runs[side].append(_measure_in_a_fresh_process(code, sizes, steps, count_ops=turn == 0))
    return {"baseline": baseline, "steps": steps, **_summary(runs, sizes)}


def _measure_in_a_fresh_process(code: str, sizes, steps: int, count_ops: bool) -> dict:
    args = [sys.executable, os.path.abspath(__file__), "--code", code, "--sizes", *map(str, sizes),
            "--steps", str(steps)] + (["--count-ops"] if count_ops else [])
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs: dict, sizes) -> dict:
    """Per P: both sides' op counts and median images/second, and their ratio."""
    rows = {}
    for p in sizes:
        row = {}
        for side, measured in runs.items():
            row[f"{side}_aten_ops_per_step"] = measured[0]["ops"][str(p)]["all"]
            row[f"{side}_outermost_aten_ops_per_step"] = measured[0]["ops"][str(p)]["outermost"]
            row[f"{side}_images_per_second"] = statistics.median(m["images_per_second"][str(p)] for m in measured)
        row["speedup"] = row["after_images_per_second"] / row["before_images_per_second"]
        rows[f"P={p}"] = row
    evaluation = {f"{side}_seconds": statistics.median(m["evaluate_chunk_seconds"] for m in measured)
                  for side, measured in runs.items()}
    evaluation["speedup"] = evaluation["before_seconds"] / evaluation["after_seconds"]
    evaluation["accuracies"] = {side: measured[-1]["accuracies"] for side, measured in runs.items()}
    return {"training_step": rows, "evaluate_chunk": evaluation}


# ------------------------------------------------------------------ in the measuring process

def _setup(p: int, cfg, dataset):
    from learngene_ea.models import build_model
    from learngene_ea.sampling import sample_task

    models = [build_model(cfg.model.family, cfg.model.width, 3, cfg.task.num_classes, seed=i) for i in range(p)]
    tasks = [sample_task(dataset, 100 + i, cfg.task.num_classes, cfg.task.images_per_class) for i in range(p)]
    return models, tasks


def _train(cfg, dataset, p: int, steps: int):
    from learngene_ea.training import train_stacked

    models, tasks = _setup(p, cfg, dataset)
    t = cfg.task
    return lambda: train_stacked(models, dataset, tasks, steps, t.batch_size, t.lr, t.weight_decay,
                                 cfg.data.augment, list(range(p)), "cpu")


def aten_ops(work) -> tuple[int, int]:
    """aten operations ``work()`` runs: every one the profiler records (nested ones included), and
    those called from Python or autograd (not from inside another aten operation)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        work()
    aten = [event for event in prof.events() if event.name.startswith("aten::")]
    outer = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    return len(aten), len(outer)


def ops_per_step(cfg, dataset, p: int) -> dict:
    """aten ops of ``train_stacked`` over 16 steps minus over 8, per step, with planned draws cached:
    all of them and the outermost ones (:func:`aten_ops`)."""
    from learngene_ea import training

    real_plan, cache = training.TaskBatches.plan, {}

    def cached_plan(self, steps, augment):
        if (steps, augment) not in cache:
            cache[steps, augment] = real_plan(self, steps, augment)
        return cache[steps, augment]

    training.TaskBatches.plan = cached_plan
    try:
        for steps in (8, 16):  # warm-up, fills the cache
            _train(cfg, dataset, p, steps)()
        counts = {steps: aten_ops(_train(cfg, dataset, p, steps)) for steps in (8, 16)}
    finally:
        training.TaskBatches.plan = real_plan
    return {"all": (counts[16][0] - counts[8][0]) / 8, "outermost": (counts[16][1] - counts[8][1]) / 8}


def measure(sizes, steps: int, count_ops: bool) -> dict:
    """This process's ``learngene_ea``: op counts, images/second per P, one ``evaluate_chunk``."""
    import torch

    from bench.common import fresh_population
    from learngene_ea.config import load_config
    from learngene_ea.data import load_dataset
    from learngene_ea.fitness import configure_process, evaluate_chunk

    cfg = load_config(os.path.join(ROOT, "genomes", "default.yaml"),
                      ["transfer.after_run=false", "ea.population_size=4", "task.steps=60"])
    configure_process(cfg.runtime)
    torch.set_num_threads(os.cpu_count() or 1)
    dataset = load_dataset(cfg.data)
    result = {"ops": {}, "images_per_second": {}}
    for p in sizes:
        if count_ops:
            result["ops"][str(p)] = ops_per_step(cfg, dataset, p)
        _train(cfg, dataset, p, 4)()  # warm-up
        work = _train(cfg, dataset, p, steps)
        start = time.perf_counter()
        work()
        result["images_per_second"][str(p)] = p * cfg.task.batch_size * steps / (time.perf_counter() - start)
    population = fresh_population(cfg)
    start = time.perf_counter()
    evaluations = evaluate_chunk(population, cfg)
    result["evaluate_chunk_seconds"] = time.perf_counter() - start
    result["accuracies"] = [e.fitness[0] for e in evaluations]
    result["stacked"] = [e.info.get("stacked") for e in evaluations]
    return result


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="measure one side of the population_step row (a fresh process)")
    parser.add_argument("--code", required=True, help="folder whose learngene_ea is measured")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--count-ops", action="store_true")
    args = parser.parse_args(argv)
    sys.path[:0] = [os.path.abspath(args.code), ROOT]  # that learngene_ea, this bench package
    print(json.dumps(measure(args.sizes, args.steps, args.count_ops)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
