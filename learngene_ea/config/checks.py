"""Checks of a recipe against its dataset, model and machine: run before any folder is made or any
compute spent.

``config.py`` checks every key and the relations between keys. What depends on the dataset
(how many classes each split has, how many images its classes have, its image channels), on the
model's mask groups (how small a learngene can be) or on this machine (its GPUs) is checked
here; each check is one sentence naming the key.
"""
from __future__ import annotations

import dataclasses
import math

from .schema import ConfigError
from .schema import PoolConfig
from ..core import devices
from ..core.traced import arch_label
from ..data import FewShotDataset, dataset_kind, load_dataset


def check_device(runtime) -> None:
    """``runtime.device`` names a GPU this machine has (``auto`` and ``cpu`` always do): the GPUs the setting
    needs against those torch finds (both from :mod:`learngene_ea.core.devices`), said in one sentence.

    Not checked when the evaluations run on a Ray cluster joined by address: its GPUs are elsewhere.
    """
    device = runtime.device
    if not devices.gpus_needed(device) or (runtime.backend == "ray" and runtime.ray_address):
        return
    count = devices.gpu_count()
    if count == 0:
        raise ConfigError(f"'runtime.device' is {device!r} but torch finds no GPU on this machine; "
                          "set runtime.device=auto or cpu.")
    if devices.gpus_needed(device) > count:
        raise ConfigError(f"'runtime.device' is {device!r} but this machine has {count} GPU"
                          f"{'s' if count > 1 else ''} (cuda:0 to cuda:{count - 1}); set runtime.device=auto "
                          f"or a GPU from cuda:0 to cuda:{count - 1}.")


def smallest_fraction(cfg, min_channels: int | None = None) -> float:
    """The fraction of the smallest learngene the default mutation can make: every mask group keeps
    ``min_channels`` (default ``ea.min_channels``) channels, all of them when it has fewer."""
    import numpy as np

    from ..core.learngene import learngene_fraction
    from ..core.models import arch_spec

    floor = cfg.ea.min_channels if min_channels is None else min_channels
    spec = arch_spec(cfg.model.network, cfg.model.width, cfg.data.channels)
    return learngene_fraction(spec, {g: np.arange(size) < floor for g, size in spec.groups})


def check_target_reachable(cfg) -> None:
    """``ea.target_fraction`` is a fraction the masks can reach under ``ea.min_channels`` (else the run
    would never shrink below it and ship a larger learngene); a user's mutation keeps its own floor."""
    if cfg.operators.mutate is not None:
        return
    smallest, target, floor = smallest_fraction(cfg), cfg.ea.target_fraction, cfg.ea.min_channels
    if smallest <= target:
        return
    from ..core.models import arch_spec

    sizes = sorted({size for _, size in arch_spec(cfg.model.network, cfg.model.width, cfg.data.channels).groups})
    groups = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    fits = [m for m in range(min(floor, sizes[-1]) - 1, 0, -1) if smallest_fraction(cfg, m) <= target][:1]
    fixes = [f"lower ea.min_channels to {fits[0]}"] if fits else []
    if smallest < 1.0:
        fixes.append(f"raise ea.target_fraction to {math.ceil(smallest * 1000) / 1000:.3f}")
    if not fixes:  # no lower floor helps (none fits, or it is 1 already): only a wider network has channels to drop
        fixes.append("widen the network (model.width) so that its mask groups have channels to drop")
    raise ConfigError(f"'ea.target_fraction' ({target:g}) cannot be reached: with 'ea.min_channels' {floor} the "
                      f"smallest learngene of {arch_label(cfg.model.network, cfg.model.width)} (mask groups of {groups} "
                      f"channel{'' if groups == '1' else 's'}) has fraction {smallest:.3f}; {' or '.join(fixes)}.")


def check_data_split(data) -> None:
    """``data.split`` is read only by a loader that splits its classes itself (imagefolder); another
    dataset's split is its own (packaged, or ``data.seed``'s), so the key would be ignored without a word."""
    if data.split and not dataset_kind(data.name).splits_target:
        raise ConfigError(f"'data.split' is set, but data.name '{data.name}' has its own class split and would "
                          "ignore it; remove data.split (it splits an imagefolder, or a transfer.target).")


def check_head_source(cfg) -> None:
    """``task.head_init: pool`` inherits the head a gene pool's warm start trained: without either it has none."""
    if cfg.task.head_init == "pool" and (cfg.fitness.inheritance != "pool" or not cfg.pool.warm_start_fraction):
        raise ConfigError("'task.head_init' is pool, which inherits the head of the gene pool's warm start: set "
                          "fitness.inheritance=pool and pool.warm_start_fraction above 0, or another head_init.")


def check_recipe(cfg) -> None:
    """What a run or a study asks of the model and the machine, whatever its dataset."""
    check_data_split(cfg.data)
    check_device(cfg.runtime)
    check_target_reachable(cfg)
    check_head_source(cfg)


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
    """Every transfer setting's episodes fit the classes of ``transfer.classes`` (``transfer`` config ``tcfg``)."""
    split = tcfg.classes
    _check_ways("transfer.n_way", tcfg.n_way, dataset, split)
    shots = max(tcfg.shots)
    _check_images(f"'transfer.shots' ({shots}) + 'transfer.n_query' ({tcfg.n_query})", shots + tcfg.n_query,
                  dataset, split, "transfer.shots or transfer.n_query")
    if tcfg.limited_data:
        _check_images(f"'transfer.limited_data' ({tcfg.limited_data}) + 'transfer.n_query' ({tcfg.n_query})",
                      tcfg.limited_data + tcfg.n_query, dataset, split, "transfer.limited_data or transfer.n_query")


def check_run_fits(cfg, dataset: FewShotDataset) -> None:
    """Everything a run will ask of its dataset, including the end-of-run transfer when it has one
    (on ``transfer.target`` when set, loaded here too: a target that cannot serve stops the run now),
    and of the model and the machine (:func:`check_recipe`)."""
    check_recipe(cfg)
    check_fitness_fits(cfg, dataset)
    if cfg.transfer.after_run:
        target = dataset if cfg.transfer.target is None else load_dataset(cfg.transfer.target, target=True)
        check_transfer_fits(cfg.transfer, target)


def silent_caps(cfg) -> list[str]:
    """Warnings for the recipe values a run lowers or ignores instead of refusing (one line each; [] when none).

    A task's batches cannot hold more images than the task has (``task.num_classes`` x
    ``task.images_per_class``); the other counts that could not be served are refused above.
    """
    task, warnings = cfg.task, []
    images = task.num_classes * task.images_per_class
    if task.batch_size > images:
        warnings.append(f"warning: 'task.batch_size' is {task.batch_size} but a task has only {images} images "
                        f"('task.num_classes' {task.num_classes} x 'task.images_per_class' "
                        f"{task.images_per_class}); each step uses those {images}.")
    return warnings + unused_pool_keys(cfg.fitness.inheritance, cfg.pool)


def unused_pool_keys(inheritance: str, pool: PoolConfig) -> list[str]:
    """A warning when keys of the ``pool`` section are changed but ``inheritance`` (``fitness.inheritance``) makes
    no gene pool (a warning, not a refusal: a recipe based on a pool recipe, switched to another inheritance,
    keeps its base's pool keys)."""
    if inheritance == "pool":
        return []
    defaults = PoolConfig()
    changed = [f"'pool.{f.name}'" for f in dataclasses.fields(PoolConfig)
               if getattr(pool, f.name) != getattr(defaults, f.name)]
    if not changed:
        return []
    return [f"warning: {', '.join(changed)} set, but 'fitness.inheritance' is {inheritance}: there "
            "is no gene pool, so they do nothing (set fitness.inheritance=pool to use them)."]
