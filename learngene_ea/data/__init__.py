"""Datasets: every loader returns a :class:`FewShotDataset` held in memory as uint8 tensors.

``load_dataset(cfg.data)`` picks the loader named by ``data.name``. Loaded datasets are
memoised per process, so SCOOP workers and repeated evaluations never rebuild them.
"""
from __future__ import annotations

import functools

from .base import SPLITS, FewShotDataset

__all__ = ["FewShotDataset", "SPLITS", "load_dataset"]


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def load_dataset(data_cfg) -> FewShotDataset:
    """Load (once per process) the dataset described by a :class:`~learngene_ea.config.DataConfig`."""
    import dataclasses

    return _load_cached(_freeze(dataclasses.asdict(data_cfg)))


@functools.lru_cache(maxsize=4)
def _load_cached(frozen) -> FewShotDataset:
    cfg = {k: (dict(v) if k == "split" else v) for k, v in frozen}
    if cfg.get("split"):
        cfg["split"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg["split"].items()}
    name = cfg["name"]
    if name == "synthetic":
        from .synthetic import make_synthetic

        return make_synthetic(seed=cfg["seed"], images_per_class=cfg["images_per_class"],
                              image_size=cfg["image_size"])
    if name == "cifarfs":
        from .cifarfs import load_cifarfs

        return load_cifarfs(cfg["root"], cache_dir=cfg["cache_dir"])
    if name == "miniimagenet":
        from .miniimagenet import load_miniimagenet

        return load_miniimagenet(cfg["root"], image_size=cfg["image_size"], cache_dir=cfg["cache_dir"])
    if name == "imagefolder":
        from .imagefolder import load_imagefolder

        return load_imagefolder(cfg["root"], image_size=cfg["image_size"], channels=cfg["channels"],
                                split=cfg["split"] or None, split_seed=cfg["seed"],
                                cache_dir=cfg["cache_dir"])
    raise ValueError(f"unknown dataset {name!r}")
