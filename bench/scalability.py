"""Do bigger descendants gain from their size? Fresh-channel rules side by side, pooled over a study's seeds.

``python -m bench.scalability --study DIR --out bench/results/scalability-<date> [--classes val test]
[--descendants conv4@1.0 conv6] [--set transfer.KEY=VALUE ...] [--processes 2]``

For every seed of a study folder (``python -m learngene_ea.study --out DIR``: ``seed-N/learngene.pt`` and the
run's ``config.yaml``, whose ``transfer.seed`` gives each seed its own episodes), every architecture (the
learngene's own and each ``--descendants`` one) and every transfer setting, three rows on the same episodes
with the same fine-tuning (the transfer command's protocol, :func:`learngene_ea.transfer.finetune.evaluate_episode`):

- ``scratch``: nothing inherited;
- ``silent``: the learngene, fresh channels silent (``transfer.fresh_channels: scaled``, ``complement_scale: 0``:
  the default recipe's rule, where the descendant is its learngene sub-network whatever its size);
- ``grow``: the learngene, fresh channels that grow (``transfer.fresh_channels: grow``: random filters, identity
  BatchNorm, read with zero weights).

Differences are paired per episode and pooled over the (seed, episode) pairs, which are independent (each seed
has its own episodes); intervals are Student's t. ``--classes val`` chooses between the rules without looking at
the test classes; ``test`` reports. Only these rows are computed (no pre-training): the transfer command
(``--descendants``) adds each architecture's own equal-compute pre-trained network. Writes ``OUT.json`` (every
accuracy), ``OUT.md`` and ``OUT.png``.
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
from learngene_ea.core.learngene import Learngene, load_learngene
from learngene_ea.core.traced import arch_label
from learngene_ea.data import load_dataset
from learngene_ea.reports.files import pyplot, save_figure
from learngene_ea.transfer.baselines import Method, baseline_methods
from learngene_ea.transfer.descendants import parse_descendant
from learngene_ea.transfer.episodes import make_settings
from learngene_ea.transfer.finetune import Bench, evaluate_episode
from learngene_ea.transfer.report import paired_difference

RULES = {"silent": ("scaled", 0.0), "grow": ("grow", 0.0)}
ROWS = ("scratch", "silent", "grow")
_JOBS: dict = {}  # the forked workers' view of the current seed's rows (closures do not pickle)


def seed_rows(learngene: Learngene, descendants: list[tuple[str, float]]) -> list[tuple[str, str, Method]]:
    """``(arch, row, method)`` for every architecture: scratch once, the learngene under each rule."""
    rows = []
    for name, (rule, scale) in RULES.items():
        for method in baseline_methods(learngene, None, descendants, scale, None, rule):
            if method.name == "learngene":
                rows.append((method.arch, name, method))
            elif method.name == "scratch" and name == "silent":
                rows.append((method.arch, "scratch", method))
    return rows


def _episode(job: tuple[int, int, int]) -> tuple[tuple[int, int, int], float]:
    row, setting, episode = job
    method = _JOBS["rows"][row][2]
    result = evaluate_episode(method, _JOBS["bench"], _JOBS["settings"][setting], episode)
    return job, result["accuracy"]


def _worker_start() -> None:
    torch.set_num_threads(1)


def evaluate_seed(folder: str, classes: str, descendant_texts: list[str], overrides: list[str],
                  processes: int) -> dict:
    """Every row's accuracy per episode for one seed's learngene, on ``classes``."""
    cfg = load_config(os.path.join(folder, "config.yaml"), [f"transfer.classes={classes}", *overrides])
    learngene = load_learngene(os.path.join(folder, "learngene.pt"))
    dataset = load_dataset(cfg.data)
    descendants = [parse_descendant(text, learngene.width) for text in descendant_texts]
    _JOBS.update(rows=seed_rows(learngene, descendants), settings=make_settings(cfg.transfer, dataset),
                 bench=Bench(dataset, cfg.transfer, learngene.in_channels, "cpu", cfg.fitness.metric))
    jobs = [(r, s, e) for r in range(len(_JOBS["rows"])) for s, setting in enumerate(_JOBS["settings"])
            for e in range(len(setting.episodes))]
    with multiprocessing.get_context("fork").Pool(processes, initializer=_worker_start) as pool:
        accuracies = dict(pool.imap_unordered(_episode, jobs, chunksize=4))
    found = {"transfer_seed": cfg.transfer.seed, "settings": {}}
    for s, setting in enumerate(_JOBS["settings"]):
        table = found["settings"][setting.name] = {}
        for r, (arch, row, _) in enumerate(_JOBS["rows"]):
            table.setdefault(arch, {})[row] = [accuracies[(r, s, e)] for e in range(len(setting.episodes))]
    return found


def pooled(per_seed: list, others: list | None = None) -> dict:
    """``per_seed`` (a list of episode values per seed) minus ``others`` (the same episodes; none: zero), pooled
    over the (seed, episode) pairs: :func:`~learngene_ea.transfer.report.paired_difference` as this benchmark's
    files name it (``n`` episodes, ``won``: above zero)."""
    def flat(lists):
        return np.concatenate([np.asarray(values, dtype=np.float64) for values in lists])

    d = paired_difference(flat(per_seed), 0.0 if others is None else flat(others))
    return {"mean": d["mean"], "ci95": d["ci95"], "n": d["episodes"], "won": d["wins"]}


def summarise(per_seed: dict) -> dict:
    """Per setting and architecture: each row's pooled accuracy and the paired differences."""
    seeds = sorted(per_seed)
    first = per_seed[seeds[0]]["settings"]
    summary = {}
    for setting, archs in first.items():
        base = next(iter(archs))
        out = summary[setting] = {}
        for arch in archs:
            rows = {row: [per_seed[s]["settings"][setting][arch][row] for s in seeds] for row in ROWS}
            entry = out[arch] = {row: pooled(values) for row, values in rows.items()}
            for a, b in (("grow", "silent"), ("silent", "scratch"), ("grow", "scratch")):
                entry[f"{a} - {b}"] = pooled(rows[a], rows[b])
            if arch != base:
                for rule in ("silent", "grow"):
                    own = [per_seed[s]["settings"][setting][base][rule] for s in seeds]
                    entry[f"{rule} - base {rule}"] = pooled(rows[rule], own)
    return summary


def _cell(d: dict, signed: bool = False) -> str:
    return f"{100 * d['mean']:{'+' if signed else ''}.1f} ± {100 * d['ci95']:.1f}"


def markdown(results: dict) -> str:
    lines = [f"# Scalability: fresh channels that grow ({results['study']})", "",
             f"Seeds {results['seeds']}; rows paired per episode, pooled over (seed, episode) pairs, 95% Student-t.",
             f"Command: `{results['command']}`", ""]
    for classes, summary in results["summary"].items():
        for setting, archs in summary.items():
            lines += [f"## {classes} classes, {setting}", "",
                      "| descendant | scratch | silent | grow | grow − silent (won) | grow − scratch | "
                      "bigger − own size: silent / grow |", "|:--|--:|--:|--:|--:|--:|--:|"]
            for arch, e in archs.items():
                bigger = (f"{_cell(e['silent - base silent'], True)} / {_cell(e['grow - base grow'], True)}"
                          if "grow - base grow" in e else "")
                lines.append(f"| {arch} | {_cell(e['scratch'])} | {_cell(e['silent'])} | {_cell(e['grow'])} | "
                             f"{_cell(e['grow - silent'], True)} ({e['grow - silent']['won']}/"
                             f"{e['grow - silent']['n']}) | {_cell(e['grow - scratch'], True)} | {bigger} |")
            lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    plt = pyplot()
    panels = [(c, s, archs) for c, summary in results["summary"].items() for s, archs in summary.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), dpi=110, squeeze=False)
    colours = {"scratch": "#bbbbbb", "silent": "#7fa7d9", "grow": "#c0392b"}
    for ax, (classes, setting, archs) in zip(axes[0], panels):
        for i, (arch, entry) in enumerate(archs.items()):
            for j, row in enumerate(ROWS):
                ax.bar(i + (j - 1) * 0.27, 100 * entry[row]["mean"], 0.25, yerr=100 * entry[row]["ci95"],
                       color=colours[row], label=row if i == 0 else None, capsize=2)
        ax.set_xticks(range(len(archs)), list(archs), fontsize=8)
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{classes} classes, {setting}", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    save_figure(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scalability", description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="a study folder (seed-N/learngene.pt, seed-N/config.yaml)")
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--classes", nargs="+", default=["val", "test"], choices=("val", "test"))
    parser.add_argument("--descendants", nargs="*", default=["conv4@1.0", "conv6"])
    parser.add_argument("--set", dest="overrides", action="append", default=["transfer.limited_data=20"],
                        help="transfer overrides (default adds transfer.limited_data=20)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    folders = seed_folders(args.study)
    started, per_classes = time.perf_counter(), {}
    for classes in args.classes:
        per_classes[classes] = {}
        for folder in folders:
            seed = int(folder.rsplit("-", 1)[1])
            per_classes[classes][seed] = evaluate_seed(folder, classes, args.descendants, args.overrides,
                                                       args.processes)
            print(f"{classes} classes, seed {seed}: done ({time.perf_counter() - started:.0f}s)", flush=True)
    results = {"study": os.path.basename(os.path.normpath(args.study)), "seeds": sorted(per_classes[args.classes[0]]),
               "command": "python -m bench.scalability " + " ".join(argv if argv is not None else sys.argv[1:]),
               "descendants": [arch_label(*parse_descendant(d, 0.5)) for d in args.descendants],
               "overrides": args.overrides, "seconds": time.perf_counter() - started,
               "per_seed": per_classes, "summary": {c: summarise(p) for c, p in per_classes.items()}}
    write_results(args.out, results, markdown(results))
    plot(results, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
