"""learngene-ea benchmark suite: ``python -m bench [--quick] [--name NAME]``.

Measures side by side, in one run, on this machine:

- overhead: one generation's fitness evaluations through learngene-ea vs a minimal plain
  PyTorch loop (written here) that trains and scores the same descendants on the same tasks;
- workers: the same generation under SCOOP with -n 1 and -n 2 (and more when there are cores);
- host_memory: ``runtime.keep_freed_memory`` off and on (glibc malloc keeping freed memory),
  seconds and page faults of the same evaluations in fresh processes;
- batching: population batching (grouped network) vs one descendant at a time, Conv4 and VGG11
  (read from the channels_last row's default-layout runs when both rows run);
- channels_last: the same evaluations with ``runtime.channels_last`` off and on (NCHW vs NHWC);
- checkpoint: time to write and read a generation's checkpoint vs the generation's time, and
  bytes per individual;
- pipeline: images/second of building batches (indexing, crop+flip, normalising) vs of the
  training step;
- growth: generation time as population size, image size and width double;
- gpu (bench/gpu.py): training images/second with/without bf16 autocast and channels-last, the
  fraction of peak FLOP/s, and population batching of 16 Conv4 descendants on the GPU (skipped
  with a message when there is no GPU).

A "generation" is 8 descendants of 60 training steps with ``genomes/default.yaml``'s model, data
and fitness (the recipe itself now trains 5 x 150 steps). Writes ``bench/results/<name>.json``
and prints a table. Ratios are what to compare: every
pair is measured in the same run, medians of repetitions.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import fresh_population, median_seconds, medians_in_turns  # noqa: E402
from bench.gpu import bench_gpu  # noqa: E402
from learngene_ea.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from learngene_ea.config import load_config  # noqa: E402
from learngene_ea.data import load_dataset  # noqa: E402
from learngene_ea.evolve import new_state  # noqa: E402
from learngene_ea.fitness import evaluate, evaluate_chunk, validation_episodes  # noqa: E402
from learngene_ea.models import build_model  # noqa: E402
from learngene_ea.run import checkpoint_payload  # noqa: E402
from learngene_ea.sampling import mix_seed, sample_task  # noqa: E402


# --------------------------------------------------------------------------- overhead

def plain_generation(cfg, population, dataset):
    """The same work as learngene-ea's fitness, written as a bare PyTorch loop."""
    images = dataset.images
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    episodes = validation_episodes(cfg, dataset)
    accuracies = []
    for ind in population:
        seed = mix_seed(cfg.seed, 0, ind.id, 0)
        model = build_model(cfg.model.family, cfg.model.width, 3, cfg.task.num_classes, seed=seed)
        task = sample_task(dataset, seed, cfg.task.num_classes, cfg.task.images_per_class)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.as_tensor(task.indices)
        lab = torch.as_tensor(task.labels)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.task.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.task.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.task.steps)
        model.train()
        order, cursor = torch.randperm(len(idx), generator=gen), 0
        for _ in range(cfg.task.steps):
            if cursor + cfg.task.batch_size > len(idx):
                order, cursor = torch.randperm(len(idx), generator=gen), 0
            pick = order[cursor:cursor + cfg.task.batch_size]
            cursor += cfg.task.batch_size
            x = images[idx[pick]].float() / 255.0
            padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
            dy, dx = torch.randint(0, 9, (2, len(x)), generator=gen).tolist()  # a crop per image, as ours
            x = torch.stack([padded[i, :, y:y + 32, z:z + 32] for i, (y, z) in enumerate(zip(dy, dx))])
            x = torch.where(torch.rand(len(x), 1, 1, 1, generator=gen) < 0.5, x.flip(3), x)
            loss = torch.nn.functional.cross_entropy(model((x - mean) / std), lab[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = []
        with torch.no_grad():
            for e in episodes:
                s = model.forward_features((images[torch.as_tensor(e.support)].float() / 255 - mean) / std)
                q = model.forward_features((images[torch.as_tensor(e.query)].float() / 255 - mean) / std)
                s, q = torch.nn.functional.normalize(s, dim=1), torch.nn.functional.normalize(q, dim=1)
                protos = torch.stack([s[torch.as_tensor(e.support_labels) == c].mean(0) for c in range(len(e.class_ids))])
                pred = (q @ torch.nn.functional.normalize(protos, dim=1).T).argmax(1)
                correct.append((pred == torch.as_tensor(e.query_labels)).float().mean().item())
        accuracies.append(float(np.mean(correct)))
    return accuracies


def bench_overhead(cfg, repeats):
    """learngene-ea's fitness vs the plain loop on the same descendants, warmed up, interleaved.

    The first training in a process pays one-off costs (kernel selection, allocator growth), and a
    machine's speed drifts: both sides are warmed up on one descendant, then alternate.
    """
    dataset = load_dataset(cfg.data)
    population = fresh_population(cfg)
    evaluate(population[0], cfg)
    plain_generation(cfg, population[:1], dataset)
    f_times, p_times = [], []
    for _ in range(repeats):
        f_times.append(median_seconds(lambda: [evaluate(ind, cfg) for ind in population], 1)[0])
        p_times.append(median_seconds(lambda: plain_generation(cfg, population, dataset), 1)[0])
    framework, plain = statistics.median(f_times), statistics.median(p_times)
    return {"framework_seconds": framework, "plain_seconds": plain, "overhead": framework / plain - 1,
            "framework_runs": f_times, "plain_runs": p_times, "population": len(population)}


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
    args = [sys.executable, "-m", "scoop", "-n", str(workers), os.path.join("bench", "scoop_generation.py"),
            *set_args(overrides)]
    return generation_result(args, f"SCOOP run with {workers} workers")


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
    runs = {label: [] for label, _, _ in plan}
    together, alone = [], []
    for _ in range(repeats):
        for label, n, extra in plan:
            runs[label].append(scoop_generation_seconds(n, overrides + extra)["seconds"])
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


# ---------------------------------------------------------------------------- batching

def bench_batching(base_overrides, families, repeats, chunk):
    rows = {}
    for family, width in families:
        cfg = load_config("genomes/default.yaml", base_overrides + [f"model.family={family}", f"model.width={width}"])
        load_dataset(cfg.data)
        population = fresh_population(cfg)[:chunk]
        single, _ = median_seconds(lambda: [evaluate(ind, cfg) for ind in population], repeats)
        batched, _ = median_seconds(lambda: evaluate_chunk(population, cfg), repeats)
        rows[f"{family}x{width}"] = {"one_by_one_seconds": single, "batched_seconds": batched,
                                     "speedup": single / batched, "descendants": len(population)}
    return rows


def batching_from_channels_last(rows):
    """:func:`bench_batching`'s rows from :func:`bench_channels_last`'s default-layout runs."""
    return {arch: {"one_by_one_seconds": row["one_by_one_nchw_seconds"], "batched_seconds": row["batched_nchw_seconds"],
                   "speedup": row["speedup_batched_default_layout"], "descendants": row["descendants"],
                   "measured_in": "channels_last"}
            for arch, row in rows.items()}


# ----------------------------------------------------------------------- channels-last

def bench_channels_last(base_overrides, families, repeats, chunk):
    """The same descendants' fitness evaluations with ``runtime.channels_last`` off and on, alternating
    (both layouts warmed up first), one by one and as one stacked chunk."""
    from learngene_ea.models import use_channels_last

    rows = {}
    for family, width in families:
        configs = {on: load_config("genomes/default.yaml", base_overrides + [
            f"model.family={family}", f"model.width={width}", f"runtime.channels_last={str(on).lower()}"])
            for on in (False, True)}
        load_dataset(configs[False].data)
        population = fresh_population(configs[False])[:chunk]
        runs = {}
        for on, cfg in configs.items():
            runs["one_by_one", on] = lambda c=cfg: [evaluate(ind, c) for ind in population]
            runs["batched", on] = lambda c=cfg: evaluate_chunk(population, c)
        median, _ = medians_in_turns(runs, repeats)
        use_channels_last(False)
        rows[f"{family}x{width}"] = {
            "descendants": len(population),
            **{f"{mode}_{'nhwc' if on else 'nchw'}_seconds": v for (mode, on), v in median.items()},
            "speedup_one_by_one": median["one_by_one", False] / median["one_by_one", True],
            "speedup_batched": median["batched", False] / median["batched", True],
            "batched_vs_one_by_one_nhwc": median["one_by_one", True] / median["batched", True],
            "speedup_batched_default_layout": median["one_by_one", False] / median["batched", False],
        }
    return rows


# -------------------------------------------------------------------------- checkpoint

def bench_checkpoint(cfg):
    from learngene_ea.evolve import build_toolbox, evolve

    start = time.perf_counter()
    state = evolve(cfg, build_toolbox(cfg), new_state(cfg), log=lambda *a: None)  # generation 0 only
    generation_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "gen.pkl")
        write, _ = median_seconds(lambda: save_checkpoint(checkpoint_payload(state, cfg), path), 5)
        read, _ = median_seconds(lambda: load_checkpoint(path), 5)
        size = os.path.getsize(path)
    return {"generation_seconds": generation_seconds, "write_seconds": write, "read_seconds": read,
            "fraction_of_generation": (write + read) / generation_seconds, "bytes": size,
            "bytes_per_individual": size / len(state.population), "note": "generation 0: whole-network learngenes "
            "(the largest a checkpoint gets)"}


# ------------------------------------------------------------------------------ growth

def bench_growth(base_overrides, repeats):
    settings = {
        "baseline": [],
        "population x2": ["ea.population_size=16"],
        "image size x2 (64px)": ["data.image_size=64"],
        "width x2": ["model.width=1.0"],
    }
    rows = {}
    for label, extra in settings.items():
        cfg = load_config("genomes/default.yaml", base_overrides + extra)
        if cfg.data.image_size != 32:
            rows[label] = _image_size_growth(cfg, repeats)
            continue
        population = fresh_population(cfg)
        load_dataset(cfg.data)
        seconds, _ = median_seconds(lambda: [evaluate(ind, cfg) for ind in population], repeats)
        rows[label] = {"seconds": seconds}
    base = rows["baseline"]["seconds"]
    for label in rows:
        rows[label]["ratio"] = rows[label]["seconds"] / base
    return rows


def _image_size_growth(cfg, repeats):
    """The synthetic dataset is 32x32; for 64px the same images are upsampled in memory."""
    import dataclasses

    from learngene_ea.data.base import FewShotDataset
    from learngene_ea import data as data_module

    small = load_dataset(dataclasses.replace(cfg.data, image_size=32))
    big = torch.nn.functional.interpolate(small.images.float(), scale_factor=2, mode="nearest").to(torch.uint8)
    dataset = FewShotDataset(big, small.labels, small.class_names, small.splits, small.mean, small.std, "synthetic64")
    original = data_module.load_dataset
    import learngene_ea.fitness as fitness_module

    fitness_module.load_dataset = lambda _cfg: dataset
    try:
        population = fresh_population(cfg)
        seconds, _ = median_seconds(lambda: [evaluate(ind, cfg) for ind in population], repeats)
    finally:
        fitness_module.load_dataset = original
    return {"seconds": seconds}


# ---------------------------------------------------------------------------- pipeline

def bench_pipeline(cfg, repeats):
    """Images/second of building batches (index, augment, normalise) vs of a training step."""
    from learngene_ea.training import draw_crops, images_on, make_batch, normalisation

    dataset = load_dataset(cfg.data)
    device = torch.device("cpu")
    images = images_on(dataset, device)
    mean, std = normalisation(dataset, device)
    generator = torch.Generator().manual_seed(0)
    batch = cfg.task.batch_size
    indices = [torch.randint(0, len(images), (batch,), generator=generator) for _ in range(50)]

    def build():
        for idx in indices:
            make_batch(images, idx, mean, std, draw_crops(batch, generator))

    model = build_model(cfg.model.family, cfg.model.width, 3, cfg.task.num_classes, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = make_batch(images, indices[0], mean, std, draw_crops(batch, generator))
    y = torch.randint(0, cfg.task.num_classes, (batch,))

    def train():
        for _ in indices:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    build_s, _ = median_seconds(build, repeats)
    train_s, _ = median_seconds(train, repeats)
    images_done = batch * len(indices)
    return {"batch_images_per_second": images_done / build_s, "train_images_per_second": images_done / train_s,
            "pipeline_share_of_step": build_s / (build_s + train_s), "batch_size": batch,
            "model": f"{cfg.model.family}x{cfg.model.width}"}


# -------------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (a minute or two)")
    parser.add_argument("--name", default=None, help="results file name (default: machine + date)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="subset of: overhead workers host_memory batching channels_last checkpoint pipeline "
                             "growth gpu")
    parser.add_argument("--peak-tflops", nargs=3, type=float, metavar=("FP32", "TF32", "BF16"), default=None,
                        help="the GPU's dense peak TFLOP/s, for a GPU not in bench/gpu.py's table")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    torch.set_num_threads(os.cpu_count() or 1)
    repeats = 1 if args.quick else 3
    # One generation = 8 descendants of 60 steps on the default recipe's model, data and fitness:
    # 8 splits evenly over 1, 2, 4 and 8 workers, and the committed results were measured so.
    generation = ["ea.population_size=8", "task.steps=60", "transfer.after_run=false"]
    sizes = generation + (["task.steps=30", "fitness.episodes=10", "ea.population_size=4"] if args.quick else [])
    base = ["ea.generations=0"] + sizes
    cfg = load_config("genomes/default.yaml", base)
    wanted = set(args.only or ["overhead", "workers", "host_memory", "batching", "channels_last", "checkpoint",
                               "pipeline", "growth", "gpu"])
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "cuda": torch.cuda.is_available()},
               "settings": {"quick": args.quick, "overrides": base, "repeats": repeats}}
    steps = [("overhead", lambda: bench_overhead(cfg, repeats)),
             ("workers", lambda: bench_workers(sizes, repeats)),
             ("host_memory", lambda: bench_host_memory(sizes, repeats)),
             ("channels_last", lambda: bench_channels_last(sizes, [("conv4", 0.5), ("vgg11", 0.25)], repeats, 4)),
             # The channels-last row times the default-layout pair too: read it there rather than twice.
             ("batching", lambda: batching_from_channels_last(results["channels_last"]) if "channels_last" in results
              else bench_batching(sizes, [("conv4", 0.5), ("vgg11", 0.25)], repeats, 4)),
             ("checkpoint", lambda: bench_checkpoint(cfg)),
             ("pipeline", lambda: bench_pipeline(cfg, repeats)),
             ("growth", lambda: bench_growth(sizes, repeats)),
             ("gpu", lambda: bench_gpu(sizes, repeats, args.peak_tflops))]
    for name, fn in steps:
        if name in wanted:
            print(f"[bench] {name} ...", flush=True)
            start = time.perf_counter()
            results[name] = fn()
            results[name + "_bench_seconds"] = time.perf_counter() - start
    name = args.name or f"{platform.node() or 'machine'}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = os.path.join(ROOT, "bench", "results", f"{name}.json")
    from learngene_ea.report import write_json

    write_json(results, path)
    print_table(results)
    print(f"[bench] results: {path}")
    return 0


def print_table(r):
    lines = []
    if "overhead" in r:
        o = r["overhead"]
        lines.append(f"overhead     learngene-ea {o['framework_seconds']:.2f}s vs plain loop {o['plain_seconds']:.2f}s"
                     f" -> {100 * o['overhead']:+.1f}%")
    if "workers" in r:
        for label, row in r["workers"].items():
            if label == "ceiling":
                lines.append(f"workers      ceiling: 2 plain 1-thread processes, each half the generation, at once "
                             f"{row['seconds']:.2f}s vs one after the other {row['halves_one_after_the_other']:.2f}s "
                             f"-> {row['speedup_of_running_at_once']:.2f}x (the most -n 2 can get here)")
                continue
            lines.append(f"workers      scoop -n {label}: {row['seconds']:.2f}s per generation "
                         f"({row['threads_per_worker']} thread(s) each), speed-up {row['speedup']:.2f}x "
                         f"over -n 1, {row['speedup_vs_1_thread']:.2f}x over -n 1 with 1 thread")
    if "host_memory" in r:
        h = r["host_memory"]
        lines.append(f"host memory  keep_freed_memory off vs on, {h['descendants']} descendants in one 1-thread "
                     f"process: {h['default_seconds']:.2f}s -> {h['keep_seconds']:.2f}s ({h['speedup']:.2f}x); "
                     f"page faults {h['default_minor_faults']:.0f} -> {h['keep_minor_faults']:.0f}; peak "
                     f"resident {h['default_max_rss_mib']:.0f} -> {h['keep_max_rss_mib']:.0f} MiB")
    if "batching" in r:
        for arch, row in r["batching"].items():
            lines.append(f"batching     {arch}: one-by-one {row['one_by_one_seconds']:.2f}s, batched "
                         f"{row['batched_seconds']:.2f}s -> {row['speedup']:.2f}x ({row['descendants']} descendants)")
    if "channels_last" in r:
        for arch, row in r["channels_last"].items():
            lines.append(f"channels     {arch}: channels-last vs default layout, one-by-one "
                         f"{row['one_by_one_nchw_seconds']:.2f}s -> {row['one_by_one_nhwc_seconds']:.2f}s "
                         f"({row['speedup_one_by_one']:.2f}x), batched {row['batched_nchw_seconds']:.2f}s -> "
                         f"{row['batched_nhwc_seconds']:.2f}s ({row['speedup_batched']:.2f}x); batched vs "
                         f"one-by-one in channels-last {row['batched_vs_one_by_one_nhwc']:.2f}x")
    if "checkpoint" in r:
        c = r["checkpoint"]
        lines.append(f"checkpoint   write {1000 * c['write_seconds']:.0f} ms + read {1000 * c['read_seconds']:.0f} ms"
                     f" = {100 * c['fraction_of_generation']:.2f}% of a {c['generation_seconds']:.1f}s generation;"
                     f" {c['bytes_per_individual'] / 1024:.0f} KiB per individual")
    if "pipeline" in r:
        p = r["pipeline"]
        lines.append(f"pipeline     batches {p['batch_images_per_second']:.0f} img/s vs training step "
                     f"{p['train_images_per_second']:.0f} img/s ({p['model']}): batch building is "
                     f"{100 * p['pipeline_share_of_step']:.1f}% of a step")
    if "growth" in r:
        for label, row in r["growth"].items():
            lines.append(f"growth       {label}: {row['seconds']:.2f}s ({row['ratio']:.2f}x)")
    if "gpu" in r:
        g = r["gpu"]
        if "skipped" in g:
            lines.append(f"gpu          skipped: {g['skipped']}")
        else:
            lines.append(f"gpu          {g['device']}, peak TFLOP/s {g['peak_tflops'] or 'unknown (--peak-tflops)'}")
            for label, row in g["training"].items():
                share = "" if row["fraction_of_peak"] is None else \
                    f", {100 * row['fraction_of_peak']:.1f}% of {row['precision']} peak"
                lines.append(f"gpu          {label}: {row['images_per_second']:.0f} img/s, "
                             f"{row['tflops']:.1f} TFLOP/s{share}")
            b = g["population_batching"]
            lines.append(f"gpu          batching {b['descendants']} {b['model']} descendants: one-by-one "
                         f"{b['one_by_one_seconds']:.2f}s, batched {b['batched_seconds']:.2f}s -> {b['speedup']:.2f}x "
                         f"(accuracies within {b['largest_accuracy_difference']:.3f}"
                         f"{'' if b['batched_ran_stacked'] else '; the stack FELL BACK to one by one'})")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
