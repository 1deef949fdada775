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
    """What the fresh channels beside transferred ones start at (``transfer.complement_scale``), when not GTL's."""
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
    """Per generation: learngene fraction as bars, population accuracy min/avg/max as curves.

    The same view as the paper's evolution figure: size shrinks while accuracy holds or rises.
    """
    plt = pyplot()

    records = list(logbook)
    gens = [r["gen"] for r in records]
    fig, ax_size = plt.subplots(figsize=(7, 4.4), dpi=110)
    ax_size.bar(gens, [r["frac_min"] for r in records], color="#7fa7d9", alpha=0.8,
                label="learngene fraction (smallest)")
    ax_size.plot(gens, [r["goal_fraction"] for r in records], "k:", lw=1, label="scheduled fraction")
    ax_size.set_xlabel("generation")
    ax_size.set_ylabel("learngene fraction of gene-layer parameters")
    ax_size.set_ylim(0, 1.05)
    ax_acc = ax_size.twinx()
    ax_acc.plot(gens, [r["acc_avg"] for r in records], "-o", color="#c0392b", ms=3, label="accuracy avg")
    ax_acc.fill_between(gens, [r["acc_min"] for r in records], [r["acc_max"] for r in records],
                        color="#c0392b", alpha=0.15, label="accuracy min-max")
    ax_acc.set_ylabel("validation few-shot accuracy")
    handles = ax_size.get_legend_handles_labels()[0] + ax_acc.get_legend_handles_labels()[0]
    labels = ax_size.get_legend_handles_labels()[1] + ax_acc.get_legend_handles_labels()[1]
    ax_size.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize=7,
                   frameon=False)
    ax_size.set_title(title)
    save_figure(fig, path)


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
