"""The growth row of ``python -m bench``: generation time as population size, image size and
width double."""
from __future__ import annotations

import torch

from bench.common import fresh_population, median_seconds
from learngene_ea.config.loading import load_config
from learngene_ea.data import load_dataset
from learngene_ea.ea.fitness import evaluate


def bench_growth(base_overrides, repeats):
    """Generation seconds of the baseline and with population size, image size or width doubled,
    and each one's ratio to the baseline."""
    settings = {
        "baseline": [],
        "population x2": ["ea.population_size=16"],
        "image size x2 (64px)": ["data.image_size=64"],
        "width x2": ["model.width=1.0"],
    }
    rows = {}
    for label, extra in settings.items():
        cfg = load_config("genomes/default.yaml", base_overrides + extra)
        if cfg.data.image_size != 32:
            rows[label] = _image_size_growth(cfg, repeats)
            continue
        population = fresh_population(cfg)
        load_dataset(cfg.data)
        seconds, _ = median_seconds(lambda: [evaluate(ind, cfg) for ind in population], repeats)
        rows[label] = {"seconds": seconds}
    base = rows["baseline"]["seconds"]
    for label in rows:
        rows[label]["ratio"] = rows[label]["seconds"] / base
    return rows


def _image_size_growth(cfg, repeats):
    """The synthetic dataset is 32x32; for 64px the same images are upsampled in memory."""
    import dataclasses

    from learngene_ea.data.base import FewShotDataset
    from learngene_ea import data as data_module

    small = load_dataset(dataclasses.replace(cfg.data, image_size=32))
    big = torch.nn.functional.interpolate(small.images.float(), scale_factor=2, mode="nearest").to(torch.uint8)
    dataset = FewShotDataset(big, small.labels, small.class_names, small.splits, small.mean, small.std, "synthetic64")
    original = data_module.load_dataset
    import learngene_ea.ea.fitness as fitness_module

    fitness_module.load_dataset = lambda _cfg: dataset
    try:
        population = fresh_population(cfg)
        seconds, _ = median_seconds(lambda: [evaluate(ind, cfg) for ind in population], repeats)
    finally:
        fitness_module.load_dataset = original
    return {"seconds": seconds}
