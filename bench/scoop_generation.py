"""One generation's fitness evaluations under SCOOP, timed inside the program (no start-up).

Run by bench/run.py as ``python -m scoop -n K bench/scoop_generation.py --set ...``; prints one
JSON line ``{"seconds": ..., "minor_faults": ..., "max_rss_mib": ..., "accuracies": [...]}``
(this process's page faults in the timed part, and its peak resident size). ``--part i/k``
evaluates only every k-th individual from the i-th (used without SCOOP to time independent
processes side by side). ``--ray-workers N`` starts a local Ray of N CPUs first (with
``--set runtime.backend=ray``: N worker processes, one evaluation each at a time).
"""
import json
import resource
import sys
import time

from learngene_ea.config.loading import load_config
from learngene_ea.ea.evolve import new_state
from learngene_ea.parallel.workers import run_toolbox
from learngene_ea.data import load_dataset


def warm_up(data_cfg):
    """Load the dataset in a worker (as generation 0 of a real run does) and return nothing."""
    load_dataset(data_cfg)
    time.sleep(0.2)  # keep this worker busy so the others get warm-up calls too


def parse(argv):
    overrides, part, ray_workers = [], (0, 1), 0
    args = iter(argv)
    for arg in args:
        if arg == "--set":
            overrides.append(next(args))
        elif arg == "--ray-workers":
            ray_workers = int(next(args))
        elif arg == "--part":
            i, k = next(args).split("/")
            part = (int(i), int(k))
        else:
            overrides.append(arg)
    return overrides, part, ray_workers


if __name__ == "__main__":
    overrides, (part, parts), ray_workers = parse(sys.argv[1:])
    if ray_workers:
        import ray

        ray.init(num_cpus=ray_workers, include_dashboard=False)
    cfg = load_config("genomes/default.yaml", overrides)
    toolbox = run_toolbox(cfg)
    population = new_state(cfg).population[part::parts]
    for ind in population:
        ind.evaluated_in = 0
    # warm-up: every worker loads the dataset once, as in a real run after generation 0
    list(toolbox.map(warm_up, [cfg.data] * 16))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    results = list(toolbox.map(toolbox.evaluate, population))
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"seconds": seconds, "minor_faults": faults, "max_rss_mib": max_rss_mib,
                      "accuracies": [r.fitness[0] for r in results]}))
