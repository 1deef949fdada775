"""Bigger descendants against their own baselines, pooled over a study's seeds.

``python -m bench.descendant_gaps --study DIR --report transfer-2 --out bench/results/descendant-gaps-<date>``

Reads ``DIR/seed-N/<report>.json``: the transfer table of each seed's learngene run with scalability
descendants (``python -m learngene_ea.transfer --learngene DIR/seed-N/learngene.pt --descendants conv4@1.0
conv6``), in which every descendant architecture has its own ``scratch``, its own equal-compute ``pretrained``
network (trained on the same images as the evolution) and the ``learngene`` inherited under the run's
fresh-channel rule, all on the same episodes. For each architecture and setting it pools, over the (seed,
episode) pairs (independent: each seed has its own episodes), the rows and the paired differences
learngene − scratch, learngene − pretrained, and learngene (this architecture) − learngene (the learngene's
own); 95% Student-t intervals. Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

from bench.common import write_results
from learngene_ea.fewshot.sampling import mean_and_ci95


def _rows(report: dict) -> dict:
    """``{(arch, method): {setting: accuracies}}`` of one transfer report."""
    return {(row["arch"], row["method"]): {s: np.asarray(r["accuracies"], dtype=np.float64)
                                           for s, r in row["results"].items()} for row in report["rows"]}


def _pooled(values: list[np.ndarray]) -> dict:
    joined = np.concatenate(values)
    mean, ci95 = mean_and_ci95(joined)
    return {"mean": mean, "ci95": ci95, "n": int(joined.size), "won": int((joined > 0).sum())}


def summarise(reports: list[dict]) -> dict:
    """Per setting and descendant architecture: pooled rows and paired differences."""
    tables = [_rows(r) for r in reports]
    own = reports[0]["rows"][0]["arch"]  # the learngene's own architecture comes first
    archs = list(dict.fromkeys(arch for arch, _ in tables[0]))
    out = {}
    for setting in reports[0]["settings"]:
        name = setting if isinstance(setting, str) else setting["name"]
        for arch in archs:
            rows = {m: [t[(arch, m)][name] for t in tables] for m in ("scratch", "pretrained", "learngene")
                    if all((arch, m) in t for t in tables)}
            entry = {m: _pooled(v) for m, v in rows.items()}
            for base in ("scratch", "pretrained"):
                if base in rows:
                    entry[f"learngene - {base}"] = _pooled([a - b for a, b in zip(rows["learngene"], rows[base])])
            if arch != own:
                entry["learngene - own-size learngene"] = _pooled(
                    [a - t[(own, "learngene")][name] for a, t in zip(rows["learngene"], tables)])
            out.setdefault(name, {})[arch] = entry
    return out


def markdown(results: dict) -> str:
    def cell(d, signed=False):
        return f"{100 * d['mean']:{'+' if signed else ''}.1f} ± {100 * d['ci95']:.1f}" + (
            f" ({d['won']}/{d['n']})" if signed else "")

    lines = [f"# Bigger descendants against their own baselines ({results['study']})", "",
             f"Seeds {results['seeds']}; `{results['report']}.json` of each; paired per episode, pooled over "
             "(seed, episode) pairs, 95% Student-t. Fresh channels: " + results["fresh_channels"] + ".",
             f"Command: `{results['command']}`", ""]
    for setting, archs in results["summary"].items():
        lines += [f"## {setting}", "", "| descendant | scratch | pretrained (its own) | learngene | learngene − scratch "
                  "| learngene − pretrained | − own-size learngene |", "|:--|--:|--:|--:|--:|--:|--:|"]
        for arch, e in archs.items():
            gap = e.get("learngene - own-size learngene")
            lines.append(f"| {arch} | {cell(e['scratch'])} | {cell(e['pretrained']) if 'pretrained' in e else '—'} "
                         f"| {cell(e['learngene'])} | {cell(e['learngene - scratch'], True)} | "
                         f"{cell(e['learngene - pretrained'], True) if 'pretrained' in e else '—'} | "
                         f"{cell(gap, True) if gap else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.descendant_gaps", description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="a study folder with seed-N/<report>.json")
    parser.add_argument("--report", default="transfer-2", help="the transfer report's name in each seed folder")
    parser.add_argument("--out", required=True, help="output path without extension")
    args = parser.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.study, "seed-*", args.report + ".json")),
                   key=lambda p: int(os.path.basename(os.path.dirname(p)).rsplit("-", 1)[1]))
    if not paths:
        raise SystemExit(f"no seed-N/{args.report}.json in {args.study}")
    reports = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            reports.append(json.load(f))
    evaluation = reports[0].get("evaluation", {})
    results = {"study": os.path.basename(os.path.normpath(args.study)), "report": args.report,
               "seeds": [int(os.path.basename(os.path.dirname(p)).rsplit("-", 1)[1]) for p in paths],
               "fresh_channels": f"{evaluation.get('fresh_channels', 'scaled')} "
                                 f"(complement_scale {evaluation.get('complement_scale', 1.0):g})",
               "command": "python -m bench.descendant_gaps " + " ".join(argv if argv is not None else sys.argv[1:]),
               "summary": summarise(reports)}
    write_results(args.out, results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
