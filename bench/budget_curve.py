"""The budget curve: what a learngene is worth against matched baselines as the compute grows.

``python -m bench.budget_curve --study LABEL:MULTIPLIER:STUDY_DIR [...] --out PREFIX`` reads each
study's ``study.json`` (``python -m learngene_ea.study``; its baselines always trained with as many
images as its evolution) and writes ``PREFIX.json``, ``PREFIX.md`` and ``PREFIX.png``: per recipe
(LABEL) and compute (MULTIPLIER, relative to the default recipe's), the pooled paired differences
learngene − l1-learngene, − layerwise-equal-size and − pretrained (and − scratch), mean ± 95% CI,
one panel per comparison. A study missing a row is shown without it, never invented.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

COMPARISONS = ("learngene-l1-learngene", "learngene-layerwise-equal-size", "learngene-pretrained",
               "learngene-scratch")


def parse_study(text: str) -> tuple[str, float, str]:
    """``LABEL:MULTIPLIER:STUDY_DIR`` (the folder, or its study.json) -> (label, multiplier, json path)."""
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise ValueError(f"--study {text!r} must look like LABEL:MULTIPLIER:STUDY_DIR")
    label, multiplier, path = parts
    try:
        value = float(multiplier)
    except ValueError:
        raise ValueError(f"--study {text!r}: the multiplier {multiplier!r} is not a number") from None
    if os.path.isdir(path):
        path = os.path.join(path, "study.json")
    if not os.path.isfile(path):
        raise ValueError(f"--study {text!r}: {path!r} is not a study.json")
    return label, value, path


def curve_points(studies: list[tuple[str, float, str]], setting: str = "5-shot") -> list[dict]:
    """One record per study: its label, multiplier, seeds, fresh validation and pooled differences."""
    points = []
    for label, multiplier, path in studies:
        with open(path, encoding="utf-8") as f:
            study = json.load(f)
        paired = study.get("paired", {})
        differences = {c: {k: paired[c][setting][k] for k in ("mean", "ci95", "won", "episodes")}
                       for c in COMPARISONS if setting in paired.get(c, {})}
        fresh = study.get("validation", {}).get("fresh", {})
        points.append({"label": label, "multiplier": multiplier, "study": path, "seeds": study.get("seeds"),
                       "fresh_validation": fresh.get("mean"), "differences": differences})
    return sorted(points, key=lambda p: (p["label"], p["multiplier"]))


def markdown(points: list[dict]) -> str:
    """The curve as a table: one line per (recipe, compute), one column per comparison."""
    head = "| recipe | compute | seeds | fresh val | " + " | ".join(c.replace("-", " − ", 1) for c in COMPARISONS)
    lines = [head + " |", "|:--|--:|--:|--:|" + "--:|" * len(COMPARISONS)]
    for p in points:
        cells = []
        for c in COMPARISONS:
            d = p["differences"].get(c)
            cells.append(f"{100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f}" if d else "—")
        fresh = "—" if p["fresh_validation"] is None else f"{100 * p['fresh_validation']:.1f}"
        lines.append(f"| {p['label']} | {p['multiplier']:g}x | {len(p['seeds'] or [])} | {fresh} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(points: list[dict], path: str) -> None:
    """One panel per comparison: mean ± 95% CI against the compute multiplier, a line per recipe."""
    from learngene_ea.reports.files import pyplot

    plt = pyplot()

    labels = list(dict.fromkeys(p["label"] for p in points))  # in the order the studies were given
    fig, axes = plt.subplots(1, len(COMPARISONS), figsize=(4 * len(COMPARISONS), 3.6 + 0.25 * len(labels)),
                             sharex=True)
    for ax, comparison in zip(axes, COMPARISONS):
        for label in labels:
            mine = [p for p in points if p["label"] == label and comparison in p["differences"]]
            xs = [p["multiplier"] for p in mine]
            ys = [100 * p["differences"][comparison]["mean"] for p in mine]
            errors = [100 * p["differences"][comparison]["ci95"] for p in mine]
            ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ticks = sorted({p["multiplier"] for p in points})
        ax.set_xticks(ticks, [f"{m:g}x" for m in ticks])
        ax.minorticks_off()
        ax.set_title(comparison.replace("-", " − ", 1), fontsize=10)
        ax.set_xlabel("compute (x the default's)")
    axes[0].set_ylabel("paired difference (points, 95% CI)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8)  # below the panels: covers no point
    fig.suptitle("Learngene against baselines trained with the same compute", fontsize=11)
    fig.tight_layout(rect=(0, 0.08 * ((len(labels) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budget_curve", description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", required=True, metavar="LABEL:MULTIPLIER:STUDY_DIR")
    parser.add_argument("--out", required=True, help="output prefix: PREFIX.json, PREFIX.md, PREFIX.png")
    args = parser.parse_args(argv)
    try:
        points = curve_points([parse_study(text) for text in args.study])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"format": "learngene-ea/budget-curve-v1", "points": points}, f, indent=1)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(points))
    plot(points, args.out + ".png")
    print(markdown(points), end="")
    print(f"budget curve: {args.out}.json, {args.out}.md, {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
