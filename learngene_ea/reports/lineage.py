"""Lineage: where every individual came from, kept as plain data (what ``tools.History`` records).

``state.lineage`` maps an individual's id to a record: its ``parents`` (ids), the generation it
was ``born`` in, its ``fraction``, ``accuracy`` and ``ci95`` and the ``operator`` that made it
(``init``, ``seed``, ``mutation``, ``crossover``, ``crossover+mutation`` or ``copy``). Plain
dicts, unlike ``History``'s deep copies of whole individuals (learngene weights included), so a
checkpoint stays small and loads through the restricted unpickler. ``lineage.json`` holds the
product's ancestry and every record; ``lineage.png`` draws the ancestry. The records are made by
the evolution (:mod:`learngene_ea.ea.lineage`); this module shows them.
"""
from __future__ import annotations

import os

from .files import pyplot, save_figure, write_json


def ancestry(lineage: dict, ident: int) -> list[dict]:
    """The records of ``ident`` and all its recorded ancestors, oldest generation first."""
    seen, todo = {}, [ident]
    while todo:
        current = todo.pop()
        if current in seen or current not in lineage:
            continue
        seen[current] = lineage[current]
        todo.extend(p for p in lineage[current]["parents"] if p != current)
    return sorted(seen.values(), key=lambda r: (r["born"], r["id"]))


def lineage_data(lineage: dict, product_id: int) -> dict:
    """What ``lineage.json`` holds: the product's ancestry (with its edges) and every record."""
    ancestors = ancestry(lineage, product_id)
    ids = {r["id"] for r in ancestors}
    edges = [{"parent": p, "child": r["id"], "operator": r["operator"]}
             for r in ancestors for p in r["parents"] if p in ids and p != r["id"]]
    return {"product": int(product_id), "ancestry": ancestors, "edges": edges,
            "individuals": [lineage[i] for i in sorted(lineage)]}


def write_lineage(lineage: dict, product_id: int, run_dir: str, title: str = "lineage") -> dict:
    """``lineage.json`` and ``lineage.png`` in ``run_dir``; returns the data written."""
    data = lineage_data(lineage, product_id)
    write_json(data, os.path.join(run_dir, "lineage.json"))
    plot_lineage(data, os.path.join(run_dir, "lineage.png"), title)
    return data


OPERATOR_STYLE = {"mutation": ("#2c7fb8", "-"), "crossover": ("#d95f0e", "--"),
                  "crossover+mutation": ("#756bb1", "-."), "copy": ("#999999", ":")}


def plot_lineage(data: dict, path: str, title: str = "lineage") -> None:
    """The product's ancestry: generation across, learngene fraction up, accuracy as colour and
    label; each edge drawn and labelled with the operator that made the child."""
    import matplotlib.ticker

    plt = pyplot()

    nodes = {r["id"]: r for r in data["ancestry"]}
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    drawn = set()
    for edge in data["edges"]:
        a, b = nodes[edge["parent"]], nodes[edge["child"]]
        color, style = OPERATOR_STYLE.get(edge["operator"], ("#444444", "-"))
        ax.annotate("", xy=(b["born"], b["fraction"]), xytext=(a["born"], a["fraction"]),
                    arrowprops={"arrowstyle": "->", "color": color, "linestyle": style, "lw": 1.2})
        if edge["operator"] not in drawn:  # one legend entry per operator
            ax.plot([], [], color=color, linestyle=style, label=edge["operator"])
            drawn.add(edge["operator"])
        ax.text((a["born"] + b["born"]) / 2, (a["fraction"] + b["fraction"]) / 2, edge["operator"][:3],
                fontsize=6, color=color, ha="center", va="bottom")
    points = ax.scatter([r["born"] for r in nodes.values()], [r["fraction"] for r in nodes.values()],
                        c=[r["accuracy"] for r in nodes.values()], cmap="viridis", s=70, zorder=3,
                        edgecolors="black", linewidths=0.5)
    for r in nodes.values():
        ax.annotate(f"#{r['id']} {r['accuracy']:.3f}", (r["born"], r["fraction"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=7)
    product = nodes.get(data["product"])
    if product is not None:
        ax.scatter([product["born"]], [product["fraction"]], s=220, facecolors="none", edgecolors="#c0392b",
                   linewidths=1.6, zorder=4, label="product")
    fig.colorbar(points, ax=ax, label="validation accuracy (as selected)")
    ax.margins(x=0.12)  # room for the labels right of the last generation
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("generation born")
    ax.set_ylabel("learngene fraction")
    ax.set_ylim(0, 1.08)
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.set_title(title)
    save_figure(fig, path)
