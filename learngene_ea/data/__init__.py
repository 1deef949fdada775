"""Datasets: every loader returns a :class:`FewShotDataset` held in memory as uint8 tensors.

``load_dataset(cfg.data)`` picks the loader named by ``data.name``; ``load_dataset(cfg.transfer.target,
target=True)`` loads a transfer target, whose classes are all test classes unless its split says
otherwise. Loaded datasets are memoised per process, so SCOOP workers and repeated evaluations
never rebuild them. A loader registers itself with ``@register_dataset(name)`` beside its definition;
:func:`list_datasets` gives the names (``data.name``'s choices, read by the recipe's checks).
"""
from __future__ import annotations

import dataclasses
import functools

from .base import SPLITS, FewShotDataset

__all__ = ["FewShotDataset", "SPLITS", "DatasetKind", "register_dataset", "list_datasets", "dataset_kind",
           "load_dataset"]


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def load_dataset(data_cfg, target: bool = False) -> FewShotDataset:
    """Load (once per process) the dataset described by a :class:`~learngene_ea.config.schema.DataConfig`.

    ``target``: the section is ``transfer.target`` (errors name its keys; see module docstring).
    """
    return _load_cached(_freeze(dataclasses.asdict(data_cfg)), target)


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    """One ``data.name``: its loader ``load(section, key)`` and what it needs.

    ``needs_root``: ``data.root`` must be set; ``splits_target``: the loader splits a transfer
    target itself (``load(section, key, target=True)``) instead of the packaged split giving way.
    """

    load: object
    needs_root: bool = True
    splits_target: bool = False


# The registry of datasets: name -> DatasetKind, filled by @register_dataset and read through list_datasets.
_DATASETS: dict[str, DatasetKind] = {}


def register_dataset(name: str, needs_root: bool = True, splits_target: bool = False):
    """Decorator: register ``load(section, key)`` as the dataset ``name`` (a ``data.name``, and
    ``transfer.target.name``), with what it needs (:class:`DatasetKind`). A name registered twice is a ValueError."""
    if name in _DATASETS:
        raise ValueError(f"dataset {name!r} is already registered")

    def register(load):
        _DATASETS[name] = DatasetKind(load, needs_root, splits_target)
        return load

    return register


def list_datasets() -> list[str]:
    """The names of the datasets, in the order they were registered (``data.name``'s choices)."""
    return list(_DATASETS)


def dataset_kind(name: str) -> DatasetKind:
    """The registered dataset ``name`` (a ValueError for a name never registered)."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}")
    return _DATASETS[name]


@register_dataset("synthetic", needs_root=False)
def _synthetic(cfg: dict, key: str) -> FewShotDataset:
    from .synthetic import make_synthetic

    return make_synthetic(seed=cfg["seed"], images_per_class=cfg["images_per_class"], image_size=cfg["image_size"])


@register_dataset("cifarfs")
def _cifarfs(cfg: dict, key: str) -> FewShotDataset:
    from .cifarfs import load_cifarfs

    return load_cifarfs(cfg["root"], cache_dir=cfg["cache_dir"], key=key)


@register_dataset("miniimagenet")
def _miniimagenet(cfg: dict, key: str) -> FewShotDataset:
    from .miniimagenet import load_miniimagenet

    return load_miniimagenet(cfg["root"], image_size=cfg["image_size"], cache_dir=cfg["cache_dir"], key=key)


@register_dataset("imagefolder", splits_target=True)
def _imagefolder(cfg: dict, key: str, target: bool = False) -> FewShotDataset:
    from .imagefolder import load_imagefolder

    return load_imagefolder(cfg["root"], image_size=cfg["image_size"], channels=cfg["channels"],
                            split=cfg["split"] or None, split_seed=cfg["seed"],
                            cache_dir=cfg["cache_dir"], target=target)


@functools.lru_cache(maxsize=4)
def _load_cached(frozen, target: bool = False) -> FewShotDataset:
    cfg = {k: (dict(v) if k == "split" else v) for k, v in frozen}
    if cfg.get("split"):
        cfg["split"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg["split"].items()}
    key = "transfer.target" if target else "data"
    kind = dataset_kind(cfg["name"])
    if kind.splits_target:
        return kind.load(cfg, key, target=target)
    dataset = kind.load(cfg, key)
    if target:  # the packaged split gives way to the target's: all classes test, unless split says otherwise
        from .imagefolder import ALL_TEST, resolve_split

        splits = resolve_split(dataset.class_names, cfg["split"] or ALL_TEST, cfg["seed"], f"{key}.split",
                               optional=SPLITS[:2])
        dataset = dataclasses.replace(dataset, splits=splits, _by_class=None)
    return dataset
