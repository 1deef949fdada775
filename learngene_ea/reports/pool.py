"""The gene pool's outputs: ``gene_pool.json`` (its history) and ``gene_pool.png`` (its scores).

The picture shows every channel's learngene score (columns, grouped by mask group) after every
generation (rows): which channels the descendants that beat their generation carried.
"""
from __future__ import annotations

import os

import numpy as np

from .files import pyplot, save_figure, write_json

NO_EVIDENCE = "0.8"  # the grey of a score of exactly 0: no generation yet told the channel apart
SCORE_LABEL = "learngene score\n(accuracy above\nthe generation's mean)"


def write_pool_report(pool, run_dir: str, title: str) -> None:
    """Write the pool's history and the plot of its scores per generation into ``run_dir``."""
    write_json({"warm_start": pool.warm_start, "history": pool.history}, os.path.join(run_dir, "gene_pool.json"))
    if pool.history:
        plot_scores(pool.history, os.path.join(run_dir, "gene_pool.png"), title)


def score_colours(rows: np.ndarray, plt):
    """Colour limits from the scores and the colour map over them: blue up to the highest score, red down to
    the lowest, white at 0 (each side stretched to its own extreme, so that small scores of one sign are not
    washed out by the other's; scores of one sign get that half of the map). ``(None, None)`` when every
    score is 0."""
    from matplotlib.colors import ListedColormap, Normalize, TwoSlopeNorm

    low, high = float(rows.min()), float(rows.max())
    diverging = plt.get_cmap("RdBu")
    if low == high == 0.0:
        return None, None
    if low < 0.0 < high:
        norm, cmap = TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high), diverging
    elif high > 0.0:
        norm, cmap = Normalize(vmin=0.0, vmax=high), ListedColormap(diverging(np.linspace(0.5, 1.0, 128)))
    else:
        norm, cmap = Normalize(vmin=low, vmax=0.0), ListedColormap(diverging(np.linspace(0.0, 0.5, 128)))
    return norm, cmap


def plot_scores(history: list, path: str, title: str) -> None:
    """Heat map of the learngene scores: generation x channel, mask groups side by side, written atomically.

    Scores of exactly 0 (channels every descendant or none carried, so far) are grey; the colour scale
    spans the scores' range."""
    plt = pyplot()

    groups = list(history[0]["scores"])
    rows = np.array([np.concatenate([record["scores"][g] for g in groups]) for record in history])
    norm, cmap = score_colours(rows, plt)
    fig, ax = plt.subplots(figsize=(8.5, max(3.2, 1.9 + 0.35 * len(history))), dpi=110)
    ax.set_facecolor(NO_EVIDENCE)  # behind the cells left out: scores of exactly 0
    image = ax.imshow(np.ma.masked_equal(rows, 0.0), aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    edge = 0
    for group in groups[:-1]:
        edge += len(history[0]["scores"][group])
        ax.axvline(edge - 0.5, color="k", lw=0.6)
    ax.set_yticks(range(len(history)), [str(record["gen"]) for record in history])
    ax.set_ylabel("generation")
    ax.set_xlabel("channel (mask groups " + ", ".join(groups) + "); grey: score 0, no evidence yet")
    if norm is None:
        ax.text(0.5, 0.5, "every score is 0: each generation's descendants all carried the same channels,\n"
                "so nothing told channels apart", transform=ax.transAxes, ha="center", va="center", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none"})
    else:
        fig.colorbar(image, ax=ax).set_label(SCORE_LABEL, fontsize=9)
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
