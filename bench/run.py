"""learngene-ea benchmark suite: ``python -m bench [--quick] [--name NAME]``.

Measures side by side, in one run, on this machine:

- overhead: one generation's fitness evaluations through learngene-ea vs a minimal plain
  PyTorch loop (written here) that trains and scores the same descendants on the same tasks;
- workers: the same generation under SCOOP with -n 1 and -n 2 (and more when there are cores), as
  Ray tasks on 2 worker processes (when Ray is installed), and the ceiling of two plain processes;
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
- population_step (bench/population_step.py): aten operations per training step and images/second of
  P = 1, 4, 16 stacked descendants, and one ``evaluate_chunk``, this tree vs ``--baseline`` side by side;
- gpu (bench/gpu.py): training images/second with/without bf16 autocast and channels-last, the
  fraction of peak FLOP/s, the step of P = 1, 16, 64 stacked descendants, and population batching
  of 16 Conv4 descendants on the GPU (skipped with a message when there is no GPU).

Each row (or pair of rows sharing code) has its module next to this one: bench/overhead.py,
bench/processes.py (workers, host_memory), bench/batching.py (batching, channels_last),
bench/checkpoint_io.py, bench/pipeline.py, bench/growth.py, bench/gpu.py. This module holds the
command line, the list of rows it runs and the printed table.

A "generation" is 8 descendants of 60 training steps with ``genomes/default.yaml``'s model, data
and fitness (the recipe itself now trains 5 x 150 steps). Writes ``bench/results/<name>.json``
and prints a table. Ratios are what to compare: every
pair is measured in the same run, medians of repetitions.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.batching import batching_from_channels_last, bench_batching, bench_channels_last  # noqa: E402
from bench.checkpoint_io import bench_checkpoint  # noqa: E402
from bench.gpu import bench_gpu, bf16_note  # noqa: E402
from bench.growth import bench_growth  # noqa: E402
from bench.overhead import bench_overhead  # noqa: E402
from bench.pipeline import bench_pipeline  # noqa: E402
from bench.population_step import bench_population_step, population_step_lines  # noqa: E402
from bench.processes import bench_host_memory, bench_workers  # noqa: E402
from learngene_ea.config.loading import load_config  # noqa: E402


# -------------------------------------------------------------------------------- main

def main(argv=None):
    """Run the chosen rows, write ``bench/results/<name>.json``, print the table; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (a minute or two)")
    parser.add_argument("--name", default=None, help="results file name (default: machine + date)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="subset of: overhead workers host_memory batching channels_last checkpoint pipeline "
                             "growth population_step gpu")
    parser.add_argument("--baseline", default="6e427de",
                        help="git commit the population_step row compares this tree with (default: before #25.2)")
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
                               "pipeline", "growth", "population_step", "gpu"])
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
             ("population_step", lambda: bench_population_step(args.baseline, repeats)),
             ("gpu", lambda: bench_gpu(sizes, repeats, args.peak_tflops))]
    for name, fn in steps:
        if name in wanted:
            print(f"[bench] {name} ...", flush=True)
            start = time.perf_counter()
            results[name] = fn()
            results[name + "_bench_seconds"] = time.perf_counter() - start
    name = args.name or f"{platform.node() or 'machine'}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = os.path.join(ROOT, "bench", "results", f"{name}.json")
    from learngene_ea.reports.files import write_json

    write_json(results, path)
    print_table(results)
    print(f"[bench] results: {path}")
    return 0


def print_table(r):
    """Print one or more lines per row present in the results ``r``."""
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
            engine = label if label.startswith("ray") else f"scoop -n {label}"
            lines.append(f"workers      {engine}: {row['seconds']:.2f}s per generation "
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
    if "population_step" in r:
        lines += population_step_lines(r["population_step"])
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
            for label, row in g.get("stacked_training", {}).items():
                share = "" if row["fraction_of_peak"] is None else \
                    f", {100 * row['fraction_of_peak']:.2f}% of {row['precision']} peak"
                lines.append(f"gpu          stacked {row['model']} {label}: {row['images_per_second']:.0f} img/s, "
                             f"{row['step_ms']:.2f} ms/step{share}")
            b = g["population_batching"]
            lines.append(f"gpu          batching {b['descendants']} {b['model']} descendants: one-by-one "
                         f"{b['one_by_one_seconds']:.2f}s, batched {b['batched_seconds']:.2f}s -> {b['speedup']:.2f}x "
                         f"(accuracies within {b['largest_accuracy_difference']:.3f}"
                         f"{'' if b['batched_ran_stacked'] else '; the stack FELL BACK to one by one'}){bf16_note(b)}")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
