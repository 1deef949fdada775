"""Two variants' learngene rows paired episode by episode, pooled over the seeds of several studies.

``python -m bench.paired_variants --a NAME=STUDY_DIR[,STUDY_DIR...] --b NAME=STUDY_DIR[,...] [--save FILE]``
reads every ``seed-*/transfer.json`` of the study folders (``python -m learngene_ea.study --out``),
pairs the two variants' learngene accuracies on the same (seed, episode) and prints the mean
difference with its 95% Student-t CI, and each variant's pooled difference to every baseline row.
The units are distinct episodes (:func:`learngene_ea.reports.study.episode_units`): studies
whose seeds share their episodes (before study-v2) count each episode once, averaged over seeds;
a saved file without episode digests is read as such a study.
``--save`` writes the episode accuracies it read (small; what a study's ``study.json`` does not
keep), ``--from FILE`` reads such a file instead of the folders.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

from learngene_ea.fewshot.sampling import mean_and_ci95
from learngene_ea.reports.study import episode_units

ROWS = ("learngene", "l1-learngene", "layerwise-equal-size", "pretrained", "scratch")


def episode_accuracies(folders: list[str], setting: str = "5-shot") -> dict:
    """{seed: {row: [accuracy per episode]}} of the studies in ``folders``."""
    found = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "seed-*", "transfer.json"))):
            seed = int(os.path.basename(os.path.dirname(path)).split("-")[1])
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
            rows = table["rows"]
            found[seed] = {row["method"]: row["results"][setting]["accuracies"] for row in rows
                           if row["method"] in ROWS and row["arch"] == rows[0]["arch"]}
            found[seed]["digests"] = [e["digest"] for s in table["settings"] if s["name"] == setting
                                      for e in s["episodes"]]
    return found


def digests(data: dict, seeds: list[int]) -> list[list[str]]:
    """Each seed's episode digests; episode i of every seed is one episode where none were saved."""
    return [data[s].get("digests") or [str(i) for i in range(len(data[s]["learngene"]))] for s in seeds]


def pooled(per_seed: list, episodes: list[list[str]]) -> str:
    units, unit = episode_units(per_seed, episodes)
    mean, ci95 = mean_and_ci95(units)
    return f"{100 * mean:+.1f} ± {100 * ci95:.1f} (n = {units.size} {unit} units)"


def report(a: tuple[str, dict], b: tuple[str, dict]) -> str:
    seeds = sorted(set(a[1]) & set(b[1]))
    lines = [f"seeds {seeds}, {sum(len(a[1][s]['learngene']) for s in seeds)} (seed, episode) pairs"]
    if digests(a[1], seeds) != digests(b[1], seeds):
        raise SystemExit("the two variants were not evaluated on the same episodes of each seed")
    episodes = digests(a[1], seeds)
    diffs = [np.subtract(b[1][s]["learngene"], a[1][s]["learngene"]) for s in seeds]
    diff = np.concatenate(diffs)
    lines.append(f"learngene {b[0]} − {a[0]}: {pooled(diffs, episodes)} (pairs won {int((diff > 0).sum())}/{len(diff)})")
    for name, data in (a, b):
        for row in ROWS[1:]:
            x = [np.subtract(data[s]["learngene"], data[s][row]) for s in seeds]
            lines.append(f"{name}: learngene − {row} {pooled(x, digests(data, seeds))}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired_variants", description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="NAME=STUDY_DIR[,STUDY_DIR...] (the reference)")
    parser.add_argument("--b", required=True, help="NAME=STUDY_DIR[,STUDY_DIR...]")
    parser.add_argument("--save", help="write the episode accuracies read to this JSON file")
    parser.add_argument("--from", dest="source", help="read the accuracies from a file --save wrote")
    args = parser.parse_args(argv)
    (a_name, a_dirs), (b_name, b_dirs) = (text.split("=", 1) for text in (args.a, args.b))
    if args.source:
        with open(args.source, encoding="utf-8") as f:
            saved = json.load(f)
        data = {name: {int(k): v for k, v in saved[name].items()} for name in (a_name, b_name)}
    else:
        data = {a_name: episode_accuracies(a_dirs.split(",")), b_name: episode_accuracies(b_dirs.split(","))}
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump(data, f)
    print(report((a_name, data[a_name]), (b_name, data[b_name])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
