"""Run outputs besides checkpoints: ``logbook.jsonl``, ``summary.json``, ``evolution.png``.

All written atomically, so a kill never leaves a half-written file.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np

from ..io.atomic import atomic_write_bytes, atomic_write_text


def plural(count, noun: str, nouns: str | None = None) -> str:
    """``1 step``, ``2 steps`` (``nouns``: an irregular plural): a count with its noun, as logs print it."""
    return f"{count:,} " + (noun if count == 1 else nouns or noun + "s")


def split_words(split: str) -> str:
    """``test classes`` or ``validation classes`` (``transfer.classes``)."""
    return "validation classes" if split == "val" else "test classes"


def complement_words(evaluation: dict) -> str:
    """What the fresh channels beside transferred ones start at (``transfer.fresh_channels``,
    ``transfer.complement_scale``), when not GTL's."""
    if evaluation.get("fresh_channels", "scaled") == "grow":
        return (" Channels beside transferred ones grow: they start with random filters, read by the next "
                "layers with zero weights (transfer.fresh_channels).")
    scale = evaluation.get("complement_scale", 1.0)
    if scale == 1.0:
        return ""
    start = "silent" if scale == 0 else f"at {scale:g} times their BatchNorm scale"
    return f" Channels beside transferred ones start {start} (transfer.complement_scale)."


def write_logbook(logbook, path: str | os.PathLike) -> None:
    """One JSON object per generation (the logbook's records, in order)."""
    lines = [json.dumps(record, default=json_default) for record in logbook]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def write_json(data: dict, path: str | os.PathLike) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(value):
    """How ``json.dumps`` writes numpy numbers and arrays (and anything else, as text)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def pyplot():
    """``matplotlib.pyplot`` set up once for every figure of the package: the Agg backend (files, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_evolution(logbook, path: str | os.PathLike, title: str = "GTL evolution") -> None:
    """Per generation: learngene fraction as bars, population accuracy min/avg/max as curves; below,
    when the logbook has them, the diversity figures (:mod:`learngene_ea.ea.diversity`).

    The top panel is the paper's evolution figure: size shrinks while accuracy holds or rises. The
    bottom one says whether there was anything to select: how many distinct masks a generation
    evaluated, how alike they were, and the fitness spread between them against the noise.
    """
    plt = pyplot()

    records = list(logbook)
    gens = [r["gen"] for r in records]
    with_diversity = any(r.get("div_masks") is not None for r in records)  # older logbooks lack them
    if with_diversity:
        fig, (ax_size, ax_masks, ax_noise) = plt.subplots(3, 1, figsize=(7, 8.8), dpi=110, sharex=True,
                                                          gridspec_kw={"height_ratios": [3, 2, 2]})
    else:
        fig, ax_size = plt.subplots(figsize=(7, 4.4), dpi=110)
    ax_size.bar(gens, [r["frac_min"] for r in records], color="#7fa7d9", alpha=0.8,
                label="learngene fraction (smallest)")
    ax_size.plot(gens, [r["goal_fraction"] for r in records], "k:", lw=1, label="scheduled fraction")
    ax_size.set_ylabel("learngene fraction of gene-layer parameters")
    ax_size.set_ylim(0, 1.05)
    ax_acc = ax_size.twinx()
    ax_acc.plot(gens, [r["acc_avg"] for r in records], "-o", color="#c0392b", ms=3, label="accuracy avg")
    ax_acc.fill_between(gens, [r["acc_min"] for r in records], [r["acc_max"] for r in records],
                        color="#c0392b", alpha=0.15, label="accuracy min-max")
    ax_acc.set_ylabel("validation few-shot accuracy")
    _legend_below(ax_size, ax_acc, ncol=4)
    ax_size.set_title(title)
    (ax_noise if with_diversity else ax_size).set_xlabel("generation")
    if with_diversity:
        plot_diversity(ax_masks, ax_noise, records)
    save_figure(fig, path)


def plot_diversity(ax_masks, ax_noise, records: list[dict]) -> None:
    """Distinct masks per generation (bars) and their mean Jaccard overlap; below, the fitness sd
    between distinct masks against the noise (sd between clones of one mask, paired episode SE)."""
    gens = [r["gen"] for r in records]

    def series(key):
        return [float("nan") if r.get(key) is None else r[key] for r in records]

    ax_masks.bar(gens, series("div_masks"), color="#9bc59d", alpha=0.8, label="distinct masks evaluated")
    ax_masks.set_ylabel("distinct masks")
    ax_overlap = ax_masks.twinx()
    ax_overlap.plot(gens, series("div_jaccard"), "-s", color="#555555", ms=3, label="mean Jaccard overlap")
    ax_overlap.set_ylabel("Jaccard overlap")
    ax_overlap.set_ylim(0, 1.05)
    _legend_below(ax_masks, ax_overlap, ncol=2)
    ax_noise.plot(gens, series("div_spread"), "-o", color="#8e44ad", ms=3, label="sd between masks (signal)")
    ax_noise.plot(gens, series("div_clone_sd"), "--", color="#e67e22", lw=1, label="sd between clones (noise)")
    ax_noise.plot(gens, series("div_pair_se"), ":", color="#e67e22", lw=1.4, label="paired episode SE (noise)")
    ax_noise.set_ylabel("accuracy sd")
    noise_values = [v for key in ("div_spread", "div_clone_sd", "div_pair_se") for v in series(key) if v == v]
    ax_noise.set_ylim(0, 1.25 * max(noise_values) if any(noise_values) else 1.0)
    ax_noise.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=7, frameon=False)


def _legend_below(ax_left, ax_right, ncol: int) -> None:
    """One legend for a panel and its twin axis, under the panel (the curves stay unobscured)."""
    handles, labels = ax_left.get_legend_handles_labels()
    more_handles, more_labels = ax_right.get_legend_handles_labels()
    ax_left.legend(handles + more_handles, labels + more_labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                   ncol=ncol, fontsize=7, frameon=False)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Lay ``fig`` out, write it as a PNG atomically and close it (every plot of the package)."""
    plt = pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def free_stem(out_dir: str, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... : the first whose ``.json``, ``.md`` and ``.png`` are all
    absent from ``out_dir``, so that a new report never replaces an earlier one."""
    candidate, number = stem, 1
    while any(os.path.lexists(os.path.join(out_dir, f"{candidate}.{kind}")) for kind in ("json", "md", "png")):
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def write_report_files(data: dict, out_dir: str, stem: str, markdown, plot, keep_earlier: bool = False) -> dict[str, str]:
    """``<stem>.json`` (every number), ``<stem>.md`` (``markdown(data)``) and ``<stem>.png``
    (``plot(data, path)``) in ``out_dir``, each written atomically; return their paths.

    ``keep_earlier``: when ``out_dir`` holds an earlier report of that stem, write ``<stem>-N.*``
    (:func:`free_stem`) instead of replacing it."""
    if keep_earlier:
        stem = free_stem(out_dir, stem)
    paths = {kind: os.path.join(out_dir, f"{stem}.{kind}") for kind in ("json", "md", "png")}
    atomic_write_text(paths["json"], json.dumps(data, indent=1, default=json_default) + "\n")
    atomic_write_text(paths["md"], markdown(data))
    plot(data, paths["png"])
    return paths
