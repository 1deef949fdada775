"""Checks of a recipe against its dataset: run before any folder is made or any compute spent.

``config.py`` checks every key and the relations between keys. What depends on the dataset
(how many classes each split has, how many images its classes have, its image channels) can
only be checked once the dataset is loaded; each check here is one sentence naming the key.
"""
from __future__ import annotations

from .config import ConfigError
from .data import FewShotDataset, load_dataset

SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def _split_sizes(dataset: FewShotDataset, split: str) -> tuple[int, int]:
    """Classes in ``split`` and the fewest images any of them has (0 for an empty split)."""
    ids = dataset.splits.get(split, [])
    per_class = dataset.images_per_class()
    return len(ids), min((per_class[i] for i in ids), default=0)


def _check_ways(key: str, n_way: int, dataset: FewShotDataset, split: str) -> None:
    classes, _ = _split_sizes(dataset, split)
    if n_way > classes:
        raise ConfigError(f"'{key}' is {n_way} but the dataset '{dataset.name}' has only {classes} "
                          f"{SPLIT_NAMES[split]} classes; lower {key}.")


def _check_images(keys: str, needed: int, dataset: FewShotDataset, split: str, fix: str) -> None:
    _, fewest = _split_sizes(dataset, split)
    if needed > fewest:
        raise ConfigError(f"{keys} need {needed} images per {SPLIT_NAMES[split]} class but the dataset "
                          f"'{dataset.name}' has only {fewest} in its smallest one; lower {fix}.")


def check_fitness_fits(cfg, dataset: FewShotDataset) -> None:
    """Descendants' tasks fit the training classes, validation episodes the validation classes."""
    task, fit = cfg.task, cfg.fitness
    if cfg.data.channels != dataset.channels:
        raise ConfigError(f"'data.channels' is {cfg.data.channels} but the images of '{dataset.name}' have "
                          f"{dataset.channels}; set data.channels={dataset.channels}.")
    _check_ways("task.num_classes", task.num_classes, dataset, "train")
    _check_images(f"'task.images_per_class' ({task.images_per_class})", task.images_per_class, dataset,
                  "train", "task.images_per_class")
    _check_ways("fitness.n_way", fit.n_way, dataset, "val")
    _check_images(f"'fitness.k_shot' ({fit.k_shot}) + 'fitness.n_query' ({fit.n_query})",
                  fit.k_shot + fit.n_query, dataset, "val", "fitness.k_shot or fitness.n_query")


def check_transfer_fits(tcfg, dataset: FewShotDataset) -> None:
    """Every transfer setting's episodes fit the test classes (``transfer`` config ``tcfg``)."""
    _check_ways("transfer.n_way", tcfg.n_way, dataset, "test")
    shots = max(tcfg.shots)
    _check_images(f"'transfer.shots' ({shots}) + 'transfer.n_query' ({tcfg.n_query})", shots + tcfg.n_query,
                  dataset, "test", "transfer.shots or transfer.n_query")
    if tcfg.limited_data:
        _check_images(f"'transfer.limited_data' ({tcfg.limited_data}) + 'transfer.n_query' ({tcfg.n_query})",
                      tcfg.limited_data + tcfg.n_query, dataset, "test", "transfer.limited_data or transfer.n_query")


def check_run_fits(cfg, dataset: FewShotDataset) -> None:
    """Everything a run will ask of its dataset, including the end-of-run transfer when it has one
    (on ``transfer.target`` when set, loaded here too: a target that cannot serve stops the run now)."""
    check_fitness_fits(cfg, dataset)
    if cfg.transfer.after_run:
        target = dataset if cfg.transfer.target is None else load_dataset(cfg.transfer.target, target=True)
        check_transfer_fits(cfg.transfer, target)


def silent_caps(cfg) -> list[str]:
    """Warnings for the recipe values a run lowers instead of refusing (one line each; [] when none).

    A task's batches cannot hold more images than the task has (``task.num_classes`` x
    ``task.images_per_class``); the other counts that could not be served are refused above.
    """
    task = cfg.task
    images = task.num_classes * task.images_per_class
    if task.batch_size > images:
        return [f"warning: 'task.batch_size' is {task.batch_size} but a task has only {images} images "
                f"('task.num_classes' {task.num_classes} x 'task.images_per_class' {task.images_per_class}); "
                f"each step uses those {images}."]
    return []
