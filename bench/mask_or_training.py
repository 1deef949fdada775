"""Why does Network Slimming beat the learngene: its mask, or its training? A 2x2 over a study's seeds.

``python -m bench.mask_or_training --study DIR --out bench/results/mask-or-training-<date> [--classes val test]
[--processes 2]``

The learngene and the ``slimming`` row differ in two things at once: which channels they keep (the
evolution's mask, shrunk generation by generation from the gene pool, against one cut by BatchNorm scale)
and how the kept sub-network is trained after the warm start (descendants of 16-class tasks merged into the
pool, against plain training on every training class). This script separates them. For every seed of a study
(``python -m learngene_ea.study --out DIR``: ``seed-N/learngene.pt``, ``config.yaml``, ``checkpoints/start.pkl``
holding the gene pool right after its warm start, and the cached ``slimming-*.pt``), four rows on the same
episodes, transferred alike (the transfer command's protocol and the run's fresh-channel rule):

- ``learngene``: the evolution's mask, the evolution's training (the product);
- ``evolved-mask, plain training``: the pool's warm start cut to the learngene's mask, then trained like
  slimming's sub-network (the same steps, seed, data and optimiser: :func:`~learngene_ea.transfer.slimming.train_sub_network`);
- ``bn-mask, plain training``: the same warm start cut by BatchNorm scale (as many channels per group), trained
  alike: Network Slimming from the evolution's own warm start;
- ``slimming``: the table's row (its own warm start);
- ``random-mask, plain training``: the same warm start cut at random (as many channels per group, seeded by
  the run's seed), trained alike: what choosing the channels is worth at all once the cut is trained.

``learngene − evolved-mask, plain training`` is the training's share (same mask, same warm start);
``evolved-mask − bn-mask`` (both plain training) is the mask's share; ``bn-mask − random-mask`` bounds what any
search over masks can add to plain training. Differences are paired per episode,
pooled over (seed, episode) pairs, Student-t intervals. Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

import numpy as np
import torch

from bench.common import seed_folders, write_results
from learngene_ea.config.loading import load_config
from learngene_ea.core.learngene import Learngene, channel_importance, load_learngene
from learngene_ea.data import load_dataset
from learngene_ea.ea.gene_pool import GenePool
from learngene_ea.ea.operators import keep_top_channels
from learngene_ea.fewshot.sampling import mean_and_ci95
from learngene_ea.io.checkpoint import load_checkpoint
from learngene_ea.transfer.baselines import baseline_methods
from learngene_ea.transfer.episodes import make_settings
from learngene_ea.transfer.finetune import Bench, evaluate_episode
from learngene_ea.transfer.slimming import load_or_slim, slimming_steps, train_sub_network

ROWS = ("learngene", "evolved-mask, plain training", "bn-mask, plain training", "slimming",
        "random-mask, plain training")
COMPARISONS = (("learngene", "evolved-mask, plain training", "the training's share (same mask)"),
               ("evolved-mask, plain training", "bn-mask, plain training", "the mask's share (same training)"),
               ("learngene", "slimming", "both (the table's comparison)"),
               ("bn-mask, plain training", "slimming", "the warm start's seed (same recipe)"),
               ("bn-mask, plain training", "random-mask, plain training", "what choosing the channels is worth"))
_JOBS: dict = {}  # the forked workers' view of the current seed's rows (closures do not pickle)


def warm_start_pool(folder: str) -> Learngene:
    """The gene pool right after the evolution's warm start (``checkpoints/start.pkl``), whole network."""
    payload = load_checkpoint(os.path.join(folder, "checkpoints", "start.pkl"))["pool"]
    if payload is None:
        raise SystemExit(f"{folder}: its start.pkl holds no gene pool (fitness.inheritance is not pool)")
    return GenePool.from_payload(payload).learngene


def bn_masks(pool: Learngene, learngene: Learngene) -> dict[str, np.ndarray]:
    """The pool's channels of largest mean |BatchNorm scale|, as many per group as ``learngene`` keeps."""
    scores = channel_importance(pool, "bn")
    return {g: keep_top_channels(pool.masks[g], scores[g], int(learngene.masks[g].sum())) for g in learngene.masks}


def random_masks(pool: Learngene, learngene: Learngene, seed: int) -> dict[str, np.ndarray]:
    """Random channels of the pool, as many per group as ``learngene`` keeps (seeded)."""
    rng = np.random.default_rng(seed)
    return {g: keep_top_channels(pool.masks[g], rng.random(pool.masks[g].shape), int(learngene.masks[g].sum()))
            for g in sorted(learngene.masks)}


def _train(job: tuple) -> tuple:
    torch.set_num_threads(1)
    folder, name, masks = job
    cfg = load_config(os.path.join(folder, "config.yaml"))
    learngene = load_learngene(os.path.join(folder, "learngene.pt"))
    pruned = warm_start_pool(folder).restrict(masks)
    trained, loss = train_sub_network(cfg, load_dataset(cfg.data), pruned, "cpu", slimming_steps(cfg, learngene).sub_network,
                                      cfg.data.augment)
    return folder, name, trained.to_state(), loss


def seed_learngenes(folders: list[str], processes: int) -> dict:
    """``{folder: {row: learngene}}``: the two plain-trained rows (trained in parallel), the product and slimming."""
    jobs, found = [], {}
    for folder in folders:
        learngene = load_learngene(os.path.join(folder, "learngene.pt"))
        cfg = load_config(os.path.join(folder, "config.yaml"))
        slim, info = load_or_slim(cfg, load_dataset(cfg.data), learngene, folder, "cpu", print)
        if slim is None:
            raise SystemExit(f"{folder}: no slimming row ({info['left_out']})")
        found[folder] = {"learngene": learngene, "slimming": slim}
        pool = warm_start_pool(folder)
        jobs += [(folder, ROWS[1], learngene.masks), (folder, ROWS[2], bn_masks(pool, learngene)),
                 (folder, ROWS[4], random_masks(pool, learngene, cfg.seed))]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for folder, name, state, loss in pool.imap_unordered(_train, jobs):
            print(f"{folder}: {name} trained, final loss {loss:.3f}", flush=True)
            found[folder][name] = Learngene.from_state(state)
    return found


def _episode(job: tuple[int, int, int]) -> tuple[tuple[int, int, int], float]:
    row, setting, episode = job
    result = evaluate_episode(_JOBS["methods"][row], _JOBS["bench"], _JOBS["settings"][setting], episode)
    return job, result["accuracy"]


def evaluate_seed(folder: str, learngenes: dict, classes: str, processes: int) -> dict:
    """Every row's accuracy per episode on ``classes`` (the run's transfer settings and fresh-channel rule)."""
    cfg = load_config(os.path.join(folder, "config.yaml"), [f"transfer.classes={classes}"])
    dataset = load_dataset(cfg.data)
    methods = []
    for row in ROWS:
        [method] = [m for m in baseline_methods(learngenes[row], None, (), cfg.transfer.complement_scale, None,
                                                cfg.transfer.fresh_channels) if m.name == "learngene"]
        methods.append(method)
    settings = make_settings(cfg.transfer, dataset)
    _JOBS.update(methods=methods, settings=settings,
                 bench=Bench(dataset, cfg.transfer, learngenes["learngene"].in_channels, "cpu", cfg.fitness.metric))
    jobs = [(r, s, e) for r in range(len(ROWS)) for s, setting in enumerate(settings) for e in range(len(setting.episodes))]
    with multiprocessing.get_context("fork").Pool(processes, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        accuracies = dict(pool.imap_unordered(_episode, jobs, chunksize=4))
    return {setting.name: {row: [accuracies[(r, s, e)] for e in range(len(setting.episodes))]
                           for r, row in enumerate(ROWS)} for s, setting in enumerate(settings)}


def summarise(per_seed: dict) -> dict:
    """Per setting: each row pooled over (seed, episode) pairs, and the paired differences."""
    seeds = sorted(per_seed)
    out = {}
    for setting in per_seed[seeds[0]]:
        rows = {row: np.concatenate([per_seed[s][setting][row] for s in seeds]) for row in ROWS}
        entry = out[setting] = {}
        for row, values in rows.items():
            entry[row] = dict(zip(("mean", "ci95"), mean_and_ci95(values)))
        for a, b, _ in COMPARISONS:
            diff = rows[a] - rows[b]
            mean, ci95 = mean_and_ci95(diff)
            entry[f"{a} - {b}"] = {"mean": mean, "ci95": ci95, "n": int(diff.size), "won": int((diff > 0).sum())}
    return out


def markdown(results: dict) -> str:
    lines = [f"# Mask or training? ({results['study']})", "",
             f"Seeds {results['seeds']}; paired per episode, pooled over (seed, episode) pairs, 95% Student-t.",
             f"Command: `{results['command']}`", ""]
    for classes, settings in results["summary"].items():
        for setting, entry in settings.items():
            lines += [f"## {classes} classes, {setting}", "", "| row | accuracy (%) |", "|:--|--:|"]
            lines += [f"| {row} | {100 * entry[row]['mean']:.1f} ± {100 * entry[row]['ci95']:.1f} |" for row in ROWS]
            lines += ["", "| difference | what it measures | points (won/pairs) |", "|:--|:--|--:|"]
            for a, b, what in COMPARISONS:
                d = entry[f"{a} - {b}"]
                lines.append(f"| {a} − {b} | {what} | {100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f} "
                             f"({d['won']}/{d['n']}) |")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mask_or_training", description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="a study folder (seed-N/ with learngene.pt, config.yaml, "
                                                       "checkpoints/start.pkl)")
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--classes", nargs="+", default=["val", "test"], choices=("val", "test"))
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    folders = seed_folders(args.study)
    started = time.perf_counter()
    learngenes = seed_learngenes(folders, args.processes)
    per_classes = {}
    for classes in args.classes:
        per_classes[classes] = {int(f.rsplit("-", 1)[1]): evaluate_seed(f, learngenes[f], classes, args.processes)
                                for f in folders}
        print(f"{classes} classes: done ({time.perf_counter() - started:.0f}s)", flush=True)
    results = {"study": os.path.basename(os.path.normpath(args.study)), "seeds": sorted(per_classes[args.classes[0]]),
               "command": "python -m bench.mask_or_training " + " ".join(argv if argv is not None else sys.argv[1:]),
               "seconds": time.perf_counter() - started, "per_seed": per_classes,
               "summary": {c: summarise(p) for c, p in per_classes.items()}}
    write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
