"""The rows of ``python -m bench`` that run the generation in separate processes: workers (SCOOP
with -n 1, 2, 4, Ray with 2 worker processes, and the ceiling of two plain processes) and host_memory (``runtime.keep_freed_memory``
off and on). Each process is ``bench/scoop_generation.py``, which prints one JSON line."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------- workers

def set_args(overrides):
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [arg for item in overrides for arg in ("--set", item)]


def generation_result(args, what):
    """Run ``bench/scoop_generation.py`` with ``args``; its JSON line (the last one starting with "{")."""
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    for line in result.stdout.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{what} failed:\n{result.stderr[-2000:]}")


def scoop_generation_seconds(workers, overrides):
    """The generation under SCOOP with ``workers`` workers and ``overrides``: its JSON line."""
    args = [sys.executable, "-m", "scoop", "-n", str(workers), os.path.join("bench", "scoop_generation.py"),
            *set_args(overrides)]
    return generation_result(args, f"SCOOP run with {workers} workers")


def ray_generation_seconds(workers, overrides):
    """The generation as Ray tasks on a local Ray of ``workers`` CPUs (one thread per task): its JSON line."""
    args = [sys.executable, os.path.join("bench", "scoop_generation.py"), "--ray-workers", str(workers),
            *set_args(overrides + ["runtime.backend=ray"])]
    return generation_result(args, f"Ray run with {workers} workers")


def ray_installed():
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def half_generation_args(part, overrides):
    """Command line of half the generation (part 0 or 1) in a plain single-threaded process."""
    return [sys.executable, os.path.join("bench", "scoop_generation.py"), "--part", f"{part}/2",
            *set_args(overrides + ["runtime.threads=1"])]


def two_processes_ceiling(overrides):
    """What two processes on this machine can do at best: each half of the generation in its own
    single-threaded process (no SCOOP), alone and then both at once. Returns (both at once, the
    halves one after the other) in seconds: 2x apart at best; shared caches and memory bandwidth
    may cost some."""
    def half(i):
        return subprocess.Popen(half_generation_args(i, overrides), cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))

    def seconds(proc):
        out, _ = proc.communicate(timeout=1800)
        return json.loads(out.strip().splitlines()[-1])["seconds"]

    alone = seconds(half(0)) + seconds(half(1))
    procs = [half(0), half(1)]
    return max(seconds(p) for p in procs), alone


def bench_workers(overrides, repeats):
    """Generation time per SCOOP worker count, with the default threads (cores // workers).

    One more row pins one thread on a single worker: the speed-up of processes alone, since with
    the default a single worker already spreads each step over every core. The rows take turns
    within each repetition, so that a drift of the machine's speed hits all of them alike.
    """
    cores = os.cpu_count() or 1
    plan = [("1", 1, []), ("1 (1 thread)", 1, ["runtime.threads=1"]), ("2", 2, [])]
    if cores >= 4:
        plan.append(("4", 4, []))
    if ray_installed():  # Ray with 2 worker processes, 1 thread each (its tasks reserve 1 CPU)
        plan.append(("ray 2", 2, ["runtime.threads=1"]))
    runs = {label: [] for label, _, _ in plan}
    together, alone = [], []
    for _ in range(repeats):
        for label, n, extra in plan:
            time_it = ray_generation_seconds if label.startswith("ray") else scoop_generation_seconds
            runs[label].append(time_it(n, overrides + extra)["seconds"])
        at_once, one_after_the_other = two_processes_ceiling(overrides)
        together.append(at_once)
        alone.append(one_after_the_other)
    rows = {label: {"workers": n, "threads_per_worker": 1 if extra else max(1, cores // n),
                    "seconds": statistics.median(runs[label]), "runs": runs[label]} for label, n, extra in plan}
    rows["ceiling"] = {"workers": 2, "threads_per_worker": 1, "seconds": statistics.median(together),
                       "runs": together, "halves_one_after_the_other": statistics.median(alone)}
    for row in rows.values():
        row["speedup"] = rows["1"]["seconds"] / row["seconds"]
        row["speedup_vs_1_thread"] = rows["1 (1 thread)"]["seconds"] / row["seconds"]
    ceiling = rows["ceiling"]
    ceiling["speedup_of_running_at_once"] = ceiling["halves_one_after_the_other"] / ceiling["seconds"]
    return rows


# ------------------------------------------------------------------------- host memory

def plain_half_generation(overrides):
    """Half the generation in a fresh single-threaded process (no SCOOP): its JSON line."""
    return generation_result(half_generation_args(0, overrides), "half generation")


def bench_host_memory(overrides, repeats):
    """``runtime.keep_freed_memory`` off and on: half the generation in fresh 1-thread processes,
    alternating; seconds and minor page faults of the timed evaluations, peak resident size of
    the process (medians)."""
    runs = {False: [], True: []}
    for _ in range(repeats):
        for keep in (False, True):
            runs[keep].append(plain_half_generation(overrides + [f"runtime.keep_freed_memory={str(keep).lower()}"]))
    if runs[False][0]["accuracies"] != runs[True][0]["accuracies"]:
        raise RuntimeError("keep_freed_memory changed the accuracies; it must only change the speed")
    row = {"descendants": len(runs[True][0]["accuracies"])}
    for keep, label in ((False, "default"), (True, "keep")):
        row[f"{label}_seconds"] = statistics.median(r["seconds"] for r in runs[keep])
        row[f"{label}_minor_faults"] = statistics.median(r["minor_faults"] for r in runs[keep])
        row[f"{label}_max_rss_mib"] = statistics.median(r["max_rss_mib"] for r in runs[keep])
        row[f"{label}_runs"] = [r["seconds"] for r in runs[keep]]
    row["speedup"] = row["default_seconds"] / row["keep_seconds"]
    return row
