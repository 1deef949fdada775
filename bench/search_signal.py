"""How diverse a study's populations were, and whether fitness differences between masks exceeded noise.

``python -m bench.search_signal NAME=STUDY_DIR [NAME=STUDY_DIR ...] [--save FILE.md]`` reads every
``seed-*/logbook.jsonl`` of each study (``python -m learngene_ea.study --out``) and prints, per
generation, the mean over seeds of the logbook's diversity figures (learngene_ea/ea/diversity.py):
distinct masks among the evaluated offspring and their mean pairwise Jaccard overlap, the
fitness spread between distinct masks (sd), the spread between individuals carrying one mask
(the re-evaluation noise: their descendants learned other tasks), the paired per-episode standard error of a
difference between two of them, and, in the last generation, the masks at the target fraction.
A spread well above the paired standard error is a selection signal above the episodes' noise.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

FIGURES = ("div_masks", "div_jaccard", "div_spread", "div_clone_sd", "div_pair_se", "target_masks", "target_jaccard")


def logbooks(folder: str) -> list[list[dict]]:
    """Every seed's logbook records in ``folder`` (a study), in seed order."""
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "seed-*", "logbook.jsonl"))):
        with open(path, encoding="utf-8") as f:
            found.append([json.loads(line) for line in f if line.strip()])
    return found


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return "–" if not values else f"{np.mean(values):.3f}"


def table(name: str, runs: list[list[dict]]) -> str:
    lines = [f"**{name}** ({len(runs)} seeds)", "",
             "| gen | distinct masks | Jaccard | fitness sd between masks | sd within one mask | paired episode SE "
             "| at target: masks | Jaccard |",
             "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for gen in range(max(len(r) for r in runs)):
        records = [r[gen] for r in runs if len(r) > gen]
        if not all("div_masks" in rec for rec in records):
            continue
        cells = [_mean(rec.get(k) for rec in records) for k in FIGURES]
        lines.append(f"| {gen} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_signal", description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", help="NAME=STUDY_DIR")
    parser.add_argument("--save", help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    text = "\n\n".join(table(name, logbooks(folder))
                       for name, folder in (item.split("=", 1) for item in args.studies)) + "\n"
    print(text, end="")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
