"""Does the run's own figure predict what the transfer measures? Variants compared within a seed.

``python -m bench.fitness_vs_transfer STUDY.json [STUDY.json ...] [--out FILE]`` reads committed
study files (``python -m learngene_ea.study --set transfer.classes=val``) and, for every seed, each
study's two figures of that seed's learngene:

- *fitness*: the run's product rescored on 100 fresh validation episodes by a fresh descendant that
  learned a training-class task (``runs[i].validation.fresh_validation``: what selection aims at);
- *transfer*: the learngene row of the study's transfer table on that seed's validation episodes.

Studies are grouped by transfer protocol (fresh channels, their scale, steps, learning rate) and
episodes (the same digests per seed): within a group, every seed's figures are centred over the
studies, which removes what the seed alone decides, and the centred points are pooled. It prints, per
group, the Pearson correlation with its Fisher-z 95% interval (one degree of freedom spent per seed),
the least-squares slope, and how much of the spread of the centred transfer figures the transfer's
own episode noise explains (paired per-episode residuals / episodes).
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

SETTING = "5-shot"


def seed_figures(study: dict) -> dict:
    """{seed: (fitness, transfer mean, per-episode learngene accuracies)} of one study file."""
    per_seed = {p["seed"]: p for p in study["rows"]["learngene"][SETTING]["per_seed"]}
    figures = {}
    for run in study["runs"]:
        fresh = run.get("validation", {}).get("fresh_validation")
        if fresh is None or run["seed"] not in per_seed:
            continue
        entry = per_seed[run["seed"]]
        accuracies = np.asarray(entry["accuracies"], dtype=float) if "accuracies" in entry else None  # older files
        figures[run["seed"]] = (float(fresh["accuracy"]), float(entry["mean"]), accuracies)
    return figures


def protocol_key(study: dict) -> tuple:
    """What must match for two studies' transfer figures of a seed to be compared: protocol and episodes."""
    t = study["transfer"]
    digests = tuple((run["seed"], tuple(run.get("episode_digests", {}).get(SETTING, ()))) for run in study["runs"])
    return (t.get("fresh_channels"), t.get("complement_scale"), t.get("steps"), t.get("lr"), t.get("classes"), digests)


def fisher_interval(r: float, n_effective: int) -> tuple[float, float]:
    """95% interval of a correlation from ``n_effective`` independent points (Fisher z)."""
    if n_effective <= 3:
        return -1.0, 1.0
    half = 1.959964 / math.sqrt(n_effective - 3)
    z = math.atanh(max(min(r, 0.999999), -0.999999))
    return math.tanh(z - half), math.tanh(z + half)


def group_report(names: list[str], studies: list[dict]) -> list[str]:
    """The lines for one group of comparable studies."""
    figures = [seed_figures(s) for s in studies]
    seeds = sorted(set.intersection(*(set(f) for f in figures)))
    fitness, transfer, noise = [], [], []
    for seed in seeds:
        fit = np.array([f[seed][0] for f in figures])
        tra = np.array([f[seed][1] for f in figures])
        fitness += list(fit - fit.mean())
        transfer += list(tra - tra.mean())
        if any(f[seed][2] is None for f in figures):
            continue
        episodes = np.stack([f[seed][2] for f in figures])  # [studies, episodes], the same episodes
        # the episode noise of a centred mean: residuals once each study's and each episode's mean are removed
        residual = episodes - episodes.mean(0, keepdims=True) - episodes.mean(1, keepdims=True) + episodes.mean()
        dof = (episodes.shape[0] - 1) * (episodes.shape[1] - 1)
        noise.append(float((residual ** 2).sum() / dof / episodes.shape[1]))
    fitness, transfer = 100 * np.array(fitness), 100 * np.array(transfer)
    r = float(np.corrcoef(fitness, transfer)[0, 1])
    low, high = fisher_interval(r, len(fitness) - len(seeds))
    slope = float(np.polyfit(fitness, transfer, 1)[0])
    spread = float(transfer.var(ddof=len(seeds)) if len(fitness) > len(seeds) else 0.0)
    episode_noise = 1e4 * float(np.mean(noise)) * (len(studies) - 1) / len(studies) if noise else None
    lines = [f"studies ({len(studies)}): {', '.join(names)}",
             f"seeds {seeds}: {len(fitness)} (study, seed) points, centred within each seed",
             f"fitness spread (sd, points): {fitness.std(ddof=len(seeds)):.2f}; transfer spread: {math.sqrt(spread):.2f}",
             f"correlation r = {r:+.2f} (95% CI {low:+.2f} to {high:+.2f}); slope {slope:+.2f} transfer points per fitness point",
             "transfer spread explained by its own episode noise: " + (
                 "unknown (files without per-episode accuracies)" if episode_noise is None else
                 f"{episode_noise / spread:.0%} (noise variance {episode_noise:.2f} of {spread:.2f})")]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fitness_vs_transfer", description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="study.json files of validation-class studies")
    parser.add_argument("--out", help="also write the report here")
    args = parser.parse_args(argv)
    groups: dict = {}
    for path in args.studies:
        with open(path, encoding="utf-8") as f:
            study = json.load(f)
        if study.get("transfer", {}).get("classes") != "val" or "learngene" not in study.get("rows", {}):
            continue
        groups.setdefault(protocol_key(study), []).append((os.path.basename(path), study))
    lines = []
    for members in groups.values():
        if len(members) < 3:
            continue
        names, studies = zip(*members)
        lines += group_report(list(names), list(studies)) + [""]
    text = "\n".join(lines) if lines else "no group of three or more comparable validation studies"
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("# python -m bench.fitness_vs_transfer " + " ".join(args.studies) + "\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
