"""Reports: paired differences between rows, the markdown table, the bar chart and the report files.

Everything here works on the plain results dict that ``transfer.json`` holds, so a saved
report can be redrawn without evaluating anything again.
"""
from __future__ import annotations

import os

import numpy as np

from ..core.traced import arch_label
from ..reports.files import complement_words, plural, pyplot, save_figure, split_words, write_report_files
from ..fewshot.sampling import mean_and_ci95


def paired_difference(accuracies, others) -> dict:
    """``accuracies - others`` per episode (same episodes and seeds): mean, 95% CI, episodes won and lost."""
    diff = np.asarray(accuracies) - np.asarray(others)
    mean, ci95 = mean_and_ci95(diff)
    return {"mean": mean, "ci95": ci95, "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()),
            "episodes": int(diff.size)}


def difference_cell(d: dict) -> str:
    """A paired difference as the tables show it: ``+1.2 ± 2.9 (7/15)`` (percentage points; episodes won)."""
    return f"{100 * d['mean']:+.1f} ± {100 * d['ci95']:.1f} ({d['wins']}/{d['episodes']})"


def add_paired_differences(rows: list[dict]) -> None:
    """Add ``results[setting]["paired"][other method]`` to every row: the per-episode difference.

    All rows of one architecture were scored on the same episodes with the same seeds, so the
    right comparison is paired: mean and 95% CI of ``accuracy(row) - accuracy(other)`` over
    episodes, plus how many episodes the row won. Only rows of the same architecture are paired.
    """
    for row in rows:
        for name, result in row["results"].items():
            paired = {}
            for other in rows:
                if other is row or other["arch"] != row["arch"] or name not in other["results"]:
                    continue
                paired[other["method"]] = paired_difference(result["accuracies"],
                                                            other["results"][name]["accuracies"])
            result["paired"] = paired


# the rows the learngene's paired differences are reported against (every other row against scratch)
LEARNGENE_COMPARED_WITH = ("scratch", "scratch-instincts", "random-learngene", "l1-learngene", "layerwise",
                           "layerwise-equal-size", "slimming")


def _label(entry: dict | None, fallback: str) -> str:
    """A data entry of ``transfer.json`` named as runs name it: an image folder by its own folder name."""
    if not entry:
        return fallback
    if entry.get("name") == "imagefolder" and entry.get("root"):
        return os.path.basename(os.path.normpath(entry["root"])) or "imagefolder"
    return entry.get("name") or fallback


def slimming_words(info: dict | None) -> str:
    """The table's line on the ``slimming`` row: what it learned from, or why it is left out ('' without a record)."""
    if not info:
        return ""
    if "left_out" in info:
        return f"slimming: left out ({info['left_out']})."
    evolution = info.get("evolution_training_images")
    return (f"slimming (Network Slimming at equal compute): a warm start on {info['warm_start_images']:,} images, "
            "its channels of largest BatchNorm scale kept (as many per group as the learngene), then that "
            f"sub-network trained on {info['sub_network_images']:,} images: {info['training_images']:,} in all"
            + (f", the evolution's {evolution:,}." if evolution else "."))


def transfer_title(results: dict) -> str:
    """``recipe `default`, evolved on synthetic, tested on digits``: what the table and chart are about."""
    lg = results["learngene"]
    recipe = (lg.get("meta") or {}).get("recipe")
    source = _label(results.get("source"), (lg.get("meta") or {}).get("dataset") or "?")
    target = _label(results.get("target"), results["dataset"]["name"])
    where = f"on {target}" if target == source else f"evolved on {source}, tested on {target}"
    return (f"recipe `{recipe}`, " if recipe else "") + where


def markdown_table(results: dict) -> str:
    """The paper-ready table: rows methods, columns settings (``acc ± ci`` in %), params column."""
    settings = results["settings"]
    info = results["evaluation"]
    lg = results["learngene"]
    trained_on = results.get("pretrained", {}).get("trained_on")
    pretrained = {"source": "; pre-trained baselines trained on the source",
                  "target": "; pre-trained baselines trained on the target",
                  "given": "; pre-trained baselines from the given network"}.get(trained_on, "")
    lines = [
        f"### Transfer to {split_words(info.get('classes', 'test'))}: {arch_label(lg['family'], lg['width'])} learngene "
        f"({lg['num_params']:,} parameters, {100 * lg['fraction']:.1f}% of its gene layers), "
        f"{transfer_title(results)}",
        "",
        f"Dataset `{results['dataset']['name']}` ({results['dataset']['test_classes']} test classes{pretrained}); "
        f"{plural(info['episodes'], 'episode')} per setting, {plural(info['n_query'], 'query', 'queries')} per "
        f"class; fine-tuning {plural(info['steps'], 'step')} of {info['optimizer']} (lr {info['lr']:g}"
        f"{', crop+flip' if info['augment'] else ''}). Mean query accuracy (%) ± 95% CI.{complement_words(info)}",
        "",
        "| Method | Descendant | Params transferred | " + " | ".join(s["label"] for s in settings) + " |",
        "|:--|:--|--:|" + "--:|" * len(settings),
    ]
    for row in results["rows"]:
        cells = []
        for s in settings:
            r = row["results"][s["name"]]
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['ci95']:.1f}")
        name = row["method"] + ("" if row["fine_tuned"] else " (no update)")
        lines.append(f"| {name} | {row['arch']} | {row['params']:,} ({100 * row['fraction']:.1f}%) | "
                     + " | ".join(cells) + " |")
    lines += ["", "Params transferred: conv sub-kernels + BatchNorm affine parameters written into the "
              "descendant, and their share of the descendant's gene-layer parameters. Every method saw the "
              "same episodes and, per episode, the same initialisation and fine-tuning seeds."]
    if slimming_words(results.get("slimming")):
        lines += ["", slimming_words(results.get("slimming"))]
    comparisons = [(row, ref) for row in results["rows"] for ref in LEARNGENE_COMPARED_WITH
                   if row["method"] != ref and (row["method"] == "learngene" or ref == "scratch")
                   and ref in row["results"][settings[0]["name"]].get("paired", {})]
    if comparisons:
        lines += ["", "Paired differences on the same episodes (percentage points, mean ± 95% CI; episodes won):", "",
                  "| Comparison | Descendant | " + " | ".join(s["label"] for s in settings) + " |",
                  "|:--|:--|" + "--:|" * len(settings)]
        for row, ref in comparisons:
            cells = [difference_cell(row["results"][s["name"]]["paired"][ref]) for s in settings]
            lines.append(f"| {row['method']} − {ref} | {row['arch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_transfer(results: dict, path: str | os.PathLike) -> None:
    """Grouped bar chart: one group per setting, one bar per row, 95% CI error bars (Agg backend)."""
    plt = pyplot()

    settings = results["settings"]
    rows = results["rows"]
    main_arch = rows[0]["arch"] if rows else ""
    fig, ax = plt.subplots(figsize=(max(7.5, 3.2 + 0.3 * len(rows) * len(settings)), 4.2), dpi=110)
    width = 0.8 / max(1, len(rows))
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    x = np.arange(len(settings))
    for i, row in enumerate(rows):
        means = [100 * row["results"][s["name"]]["mean"] for s in settings]
        cis = [100 * row["results"][s["name"]]["ci95"] for s in settings]
        label = row["method"] + ("" if row["arch"] == main_arch else f" [{row['arch']}]")
        ax.bar(x - 0.4 + width * (i + 0.5), means, width, yerr=cis, capsize=2, color=cmap(i % cmap.N),
               label=label, edgecolor="black", linewidth=0.3)
    chance = 100.0 / results["evaluation"]["n_way"]
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(x, [s["label"] for s in settings])
    ax.set_ylabel("query accuracy (%), 95% CI")
    ax.set_ylim(0, 100)
    lg = results["learngene"]
    ax.set_title(f"Transfer to test classes, {transfer_title(results).replace('`', '')}:\n"
                 f"{arch_label(lg['family'], lg['width'])} learngene, {100 * lg['fraction']:.0f}% of parameters",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    save_figure(fig, path)


def write_reports(results: dict, out_dir: str, keep_earlier: bool = False) -> dict[str, str]:
    """``transfer.json``, ``transfer.md`` and ``transfer.png`` in ``out_dir``; return their paths.

    ``keep_earlier``: an earlier report there is kept and these are ``transfer-2.*`` (``-3``, ...)."""
    return write_report_files(results, out_dir, "transfer", markdown_table, plot_transfer, keep_earlier)
