"""A run's product: the learngene it ships (``learngene.pt``, and each Pareto member's file), with its metadata.

The product is the best individual at or below the target fraction, else the best overall; its
learngene is restricted to its masks and records where it came from and the compute behind it,
which the transfer evaluation reads.
"""
from __future__ import annotations

import dataclasses

from ..config.schema import Config
from ..core.individual import individual_spec, masks_of
from ..data import load_dataset


def product_individual(state):
    """The run's product: best individual at or below the target, else the best overall."""
    if state.best_at_target is not None:
        return state.best_at_target, True
    return state.halloffame[0], False


def product_learngene(state, cfg: Config):
    """The learngene to save as ``learngene.pt`` (weights restricted to the individual's masks)."""
    ind, reached = product_individual(state)
    return individual_learngene(ind, state, cfg, reached), ind, reached


def warm_start_images(state) -> int:
    """Images the gene pool's warm start trained on before generation 0 (0 without one)."""
    return int(state.pool.warm_start.get("images", 0)) if state.pool is not None else 0


def individual_learngene(ind, state, cfg: Config, reached: bool):
    """``ind``'s learngene restricted to its masks, with the run's metadata (what transfer reads)."""
    lg = ind.learngene.restrict(masks_of(ind))
    dataset = load_dataset(cfg.data)  # memoised: the run's own
    lg.meta.update({
        "id": ind.id, "parents": list(ind.parents), "born": ind.born,
        "accuracy": float(ind.fitness.values[0]), "ci95": float(ind.evaluation.get("ci95", 0.0)),
        "fraction": float(lg.fraction), "num_params": int(lg.num_params), "reached_target": reached,
        "target_fraction": cfg.ea.target_fraction, "dataset": cfg.data.name, "seed": cfg.seed,
        "num_gene_params": individual_spec(ind).num_gene_params(),
        # the compute behind it, in training images of every descendant of the run: what the
        # transfer's pre-trained baselines get too (equal compute)
        "training_images": sum(record["evals"] for record in state.logbook) * cfg.task.steps * cfg.task.batch_size
        + warm_start_images(state),
        # the part of it the gene pool's warm start trained (the transfer's slimming row matches it)
        "warm_start_images": warm_start_images(state),
        # which classes the learngene has seen: transfer refuses to test on them
        "data": dataclasses.asdict(cfg.data),
        "classes": {split: [dataset.class_names[i] for i in dataset.splits[split]] for split in ("train", "val")},
        # what a user of the file needs to feed and grow a descendant like ours (learngene_ea.inspect prints it)
        "input": {"channels": cfg.data.channels, "image_size": cfg.data.image_size,
                  "normalise": {"mean": [float(v) for v in dataset.mean], "std": [float(v) for v in dataset.std]}},
        "network": {"family": cfg.model.network, "width": cfg.model.width, "kwargs": dict(cfg.model.kwargs)},
        "fresh_channels": {"rule": cfg.transfer.fresh_channels, "complement_scale": cfg.transfer.complement_scale},
        "package_version": package_version(),
    })
    return lg


def package_version() -> str:
    """The installed learngene-ea's version (the one place it is written is the package's ``__init__``)."""
    from importlib import metadata

    try:
        return metadata.version("learngene-ea")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
