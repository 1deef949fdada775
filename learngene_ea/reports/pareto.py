"""The run's Pareto front of learngene sizes: ``pareto/learngene-<fraction>.pt``, ``pareto.json``, ``pareto.png``.

``state.pareto`` (a ``tools.ParetoFront``, kept in checkpoints) holds every individual that no
other evaluated individual beats on both accuracy and fraction. Each is saved as a learngene
file that ``python -m learngene_ea.transfer --learngene runs/<run>/pareto/`` evaluates in one
table. Every learngene records the run's whole compute, so one pre-trained baseline serves all.
"""
from __future__ import annotations

import glob
import os

from ..ea.evolve import EvolutionState
from ..ea.product import individual_learngene, product_individual
from .files import pyplot, save_figure, write_json

FOLDER = "pareto"


def front_file(ind, taken: set) -> str:
    """``learngene-<fraction>.pt``; the id is added when two members share a fraction."""
    name = f"learngene-{ind.fitness.values[1]:.4f}.pt"
    if name in taken:
        name = f"learngene-{ind.fitness.values[1]:.4f}-id{ind.id}.pt"
    taken.add(name)
    return name


def write_front(state: EvolutionState, cfg, run_dir: str, title: str = "Pareto front") -> dict:
    """Save the front's learngenes (removing files of members that left it), ``pareto.json``, ``pareto.png``."""
    folder = os.path.join(run_dir, FOLDER)
    os.makedirs(folder, exist_ok=True)
    members = sorted((ind for ind in state.pareto if ind.learngene is not None), key=lambda i: i.fitness.values[1])
    taken, rows = set(), []
    for ind in members:
        name = front_file(ind, taken)
        reached = ind.fitness.values[1] <= cfg.ea.target_fraction + 1e-9
        individual_learngene(ind, state, cfg, reached).save(os.path.join(folder, name))
        rows.append({"id": ind.id, "born": ind.born, "accuracy": float(ind.fitness.values[0]),
                     "ci95": float(ind.evaluation.get("ci95", 0.0)), "fraction": float(ind.fitness.values[1]),
                     "file": os.path.join(FOLDER, name)})
    for stale in glob.glob(os.path.join(folder, "learngene-*.pt")):
        if os.path.basename(stale) not in taken:
            os.remove(stale)
    data = {"selection": cfg.ea.selection, "target_fraction": cfg.ea.target_fraction,
            "product": product_individual(state)[0].id, "front": rows,
            "evaluated": [{"id": r["id"], "born": r["born"], "accuracy": r["accuracy"], "fraction": r["fraction"]}
                          for r in state.lineage.values() if not r["failed"]]}
    write_json(data, os.path.join(run_dir, "pareto.json"))
    plot_front(data, os.path.join(run_dir, "pareto.png"), title)
    return data


def plot_front(data: dict, path: str, title: str = "Pareto front") -> None:
    """Accuracy against fraction of every evaluated individual, the front as a highlighted staircase."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 4.4), dpi=110)
    evaluated = data["evaluated"]
    points = ax.scatter([r["fraction"] for r in evaluated], [r["accuracy"] for r in evaluated],
                        c=[r["born"] for r in evaluated], cmap="viridis", s=22, edgecolors="none",
                        label="every evaluated individual")
    front = data["front"]
    if front:
        xs, ys = [r["fraction"] for r in front], [r["accuracy"] for r in front]
        ax.step(xs, ys, where="post", color="#c0392b", lw=1.2)
        ax.errorbar(xs, ys, yerr=[r["ci95"] for r in front], fmt="o", color="#c0392b", ms=6, capsize=2,
                    label="Pareto front (95% CI)")
    ax.axvline(data["target_fraction"], color="black", ls=":", lw=1, label="target fraction")
    fig.colorbar(points, ax=ax, label="generation born")
    ax.set_xlabel("learngene fraction of gene-layer parameters")
    ax.set_ylabel("validation few-shot accuracy (as selected)")
    ax.set_xlim(0, 1.05)
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.set_title(title)
    save_figure(fig, path)
