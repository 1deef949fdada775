"""Lineage records, made as the evolution goes (what ``tools.History`` records, as plain data).

``state.lineage`` maps an individual's id to a record: its ``parents`` (ids), the generation it
was ``born`` in, its ``fraction``, ``accuracy`` and ``ci95`` and the ``operator`` that made it
(``init``, ``seed``, ``mutation``, ``crossover``, ``crossover+mutation`` or ``copy``).
:mod:`learngene_ea.reports.lineage` writes and draws them.
"""
from __future__ import annotations


def mark_operator(function, name: str):
    """``function`` (a mate or mutate), noting ``name`` in ``made_by`` of each individual it is given."""

    def call(*individuals, **kwargs):
        result = function(*individuals, **kwargs)
        for ind in individuals:
            made = getattr(ind, "made_by", "copy")
            ind.made_by = name if made == "copy" else f"{made}+{name}"
        return result

    return call


def record_lineage(lineage: dict, individuals) -> None:
    """Add a record for each evaluated individual not in ``lineage`` yet (elites are already there)."""
    for ind in individuals:
        if ind.id in lineage or not ind.fitness.valid:
            continue
        lineage[ind.id] = {
            "id": int(ind.id), "parents": [int(p) for p in ind.parents], "born": int(ind.born),
            "accuracy": float(ind.fitness.values[0]), "fraction": float(ind.fitness.values[1]),
            "ci95": float(ind.evaluation.get("ci95", 0.0)),
            "operator": getattr(ind, "made_by", "init" if ind.born == 0 else "copy"),
            "failed": bool(ind.evaluation.get("error")),
        }
