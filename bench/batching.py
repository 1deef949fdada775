"""The batching and channels_last rows of ``python -m bench``: the same descendants' fitness
evaluations one by one vs as one stacked chunk (population batching), and with
``runtime.channels_last`` off and on."""
from __future__ import annotations

from bench.common import fresh_population, median_seconds, medians_in_turns
from learngene_ea.config.loading import load_config
from learngene_ea.data import load_dataset
from learngene_ea.ea.fitness import evaluate, evaluate_chunk


def bench_batching(base_overrides, families, repeats, chunk):
    """Per (family, width): ``chunk`` descendants' fitness evaluations one by one vs as one stacked
    chunk (medians of ``repeats``)."""
    rows = {}
    for family, width in families:
        cfg = load_config("genomes/default.yaml", base_overrides + [f"model.family={family}", f"model.width={width}"])
        load_dataset(cfg.data)
        population = fresh_population(cfg)[:chunk]
        single, _ = median_seconds(lambda: [evaluate(ind, cfg) for ind in population], repeats)
        batched, _ = median_seconds(lambda: evaluate_chunk(population, cfg), repeats)
        rows[f"{family}x{width}"] = {"one_by_one_seconds": single, "batched_seconds": batched,
                                     "speedup": single / batched, "descendants": len(population)}
    return rows


def batching_from_channels_last(rows):
    """:func:`bench_batching`'s rows from :func:`bench_channels_last`'s default-layout runs."""
    return {arch: {"one_by_one_seconds": row["one_by_one_nchw_seconds"], "batched_seconds": row["batched_nchw_seconds"],
                   "speedup": row["speedup_batched_default_layout"], "descendants": row["descendants"],
                   "measured_in": "channels_last"}
            for arch, row in rows.items()}


# ----------------------------------------------------------------------- channels-last

def bench_channels_last(base_overrides, families, repeats, chunk):
    """The same descendants' fitness evaluations with ``runtime.channels_last`` off and on, alternating
    (both layouts warmed up first), one by one and as one stacked chunk."""
    from learngene_ea.core.models import use_channels_last

    rows = {}
    for family, width in families:
        configs = {on: load_config("genomes/default.yaml", base_overrides + [
            f"model.family={family}", f"model.width={width}", f"runtime.channels_last={str(on).lower()}"])
            for on in (False, True)}
        load_dataset(configs[False].data)
        population = fresh_population(configs[False])[:chunk]
        runs = {}
        for on, cfg in configs.items():
            runs["one_by_one", on] = lambda c=cfg: [evaluate(ind, c) for ind in population]
            runs["batched", on] = lambda c=cfg: evaluate_chunk(population, c)
        median, _ = medians_in_turns(runs, repeats)
        use_channels_last(False)
        rows[f"{family}x{width}"] = {
            "descendants": len(population),
            **{f"{mode}_{'nhwc' if on else 'nchw'}_seconds": v for (mode, on), v in median.items()},
            "speedup_one_by_one": median["one_by_one", False] / median["one_by_one", True],
            "speedup_batched": median["batched", False] / median["batched", True],
            "batched_vs_one_by_one_nhwc": median["one_by_one", True] / median["batched", True],
            "speedup_batched_default_layout": median["one_by_one", False] / median["batched", False],
        }
    return rows
