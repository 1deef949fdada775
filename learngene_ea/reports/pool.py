"""The gene pool's outputs: ``gene_pool.json`` (its history) and ``gene_pool.png`` (its scores).

The picture shows every channel's learngene score (columns, grouped by mask group) after every
generation (rows): which channels the descendants that beat their generation carried.
"""
from __future__ import annotations

import os

import numpy as np

from .files import pyplot, write_json


def write_pool_report(pool, run_dir: str, title: str) -> None:
    """Write the pool's history and the plot of its scores per generation into ``run_dir``."""
    write_json({"warm_start": pool.warm_start, "history": pool.history}, os.path.join(run_dir, "gene_pool.json"))
    if pool.history:
        plot_scores(pool.history, os.path.join(run_dir, "gene_pool.png"), title)


def plot_scores(history: list, path: str, title: str) -> None:
    """Heat map of the learngene scores: generation x channel, mask groups side by side."""
    plt = pyplot()

    groups = list(history[0]["scores"])
    rows = np.array([np.concatenate([record["scores"][g] for g in groups]) for record in history])
    limit = float(np.max(np.abs(rows))) or 1e-3
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.35 * len(history)), dpi=110)
    image = ax.imshow(rows, aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit, interpolation="nearest")
    edge = 0
    for group in groups[:-1]:
        edge += len(history[0]["scores"][group])
        ax.axvline(edge - 0.5, color="k", lw=0.6)
    ax.set_yticks(range(len(history)), [str(record["gen"]) for record in history])
    ax.set_ylabel("generation")
    ax.set_xlabel("channel (mask groups " + ", ".join(groups) + ")")
    fig.colorbar(image, ax=ax, label="learngene score (accuracy above the generation)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
