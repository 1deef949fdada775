"""Datasets: every loader returns a :class:`FewShotDataset` held in memory as uint8 tensors.

``load_dataset(cfg.data)`` picks the loader named by ``data.name``; ``load_dataset(cfg.transfer.target,
target=True)`` loads a transfer target, whose classes are all test classes unless its split says
otherwise. Loaded datasets are memoised per process, so SCOOP workers and repeated evaluations
never rebuild them.
"""
from __future__ import annotations

import dataclasses
import functools

from .base import SPLITS, FewShotDataset

__all__ = ["FewShotDataset", "SPLITS", "load_dataset"]


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def load_dataset(data_cfg, target: bool = False) -> FewShotDataset:
    """Load (once per process) the dataset described by a :class:`~learngene_ea.config.DataConfig`.

    ``target``: the section is ``transfer.target`` (errors name its keys; see module docstring).
    """
    return _load_cached(_freeze(dataclasses.asdict(data_cfg)), target)


@functools.lru_cache(maxsize=4)
def _load_cached(frozen, target: bool = False) -> FewShotDataset:
    cfg = {k: (dict(v) if k == "split" else v) for k, v in frozen}
    if cfg.get("split"):
        cfg["split"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg["split"].items()}
    key = "transfer.target" if target else "data"
    name = cfg["name"]
    if name == "imagefolder":
        from .imagefolder import load_imagefolder

        return load_imagefolder(cfg["root"], image_size=cfg["image_size"], channels=cfg["channels"],
                                split=cfg["split"] or None, split_seed=cfg["seed"],
                                cache_dir=cfg["cache_dir"], key=key, all_test=target)
    if name == "synthetic":
        from .synthetic import make_synthetic

        dataset = make_synthetic(seed=cfg["seed"], images_per_class=cfg["images_per_class"],
                                 image_size=cfg["image_size"])
    elif name == "cifarfs":
        from .cifarfs import load_cifarfs

        dataset = load_cifarfs(cfg["root"], cache_dir=cfg["cache_dir"], key=key)
    elif name == "miniimagenet":
        from .miniimagenet import load_miniimagenet

        dataset = load_miniimagenet(cfg["root"], image_size=cfg["image_size"], cache_dir=cfg["cache_dir"], key=key)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    if target:  # the packaged split gives way to the target's: all classes test, unless split says otherwise
        from .imagefolder import ALL_TEST, resolve_split

        splits = resolve_split(dataset.class_names, cfg["split"] or ALL_TEST, cfg["seed"], f"{key}.split",
                               optional=SPLITS[:2])
        dataset = dataclasses.replace(dataset, splits=splits, _by_class=None)
    return dataset
