"""Every shipped recipe evolves with the algorithm of ``genomes/default.yaml`` (the one chosen on
validation classes), unless a line says why not.

A recipe sets its own sizes, data, network and runtime freely. An *algorithm key* that differs from
default.yaml's must be set in the recipe itself, on a line that ends with ``# differs: <why>``
(``genomes/lamarckian.yaml`` keeps the old algorithm that way).
"""
import dataclasses
import glob
import os
import re

import pytest
import yaml

from conftest import ROOT
from learngene_ea.config.loading import load_config, to_dict
from learngene_ea.config.schema import Config

GENOMES = os.path.join(ROOT, "genomes")
DIFFERS = re.compile(r"#\s*differs:\s*\S")

# How learngenes are evolved and transferred: the same in every recipe unless a line says why.
ALGORITHM_KEYS = {
    "fitness": {"score", "classifier", "metric", "inheritance", "complement_scale", "fresh_channels", "speed_points",
                "common_draws"},
    "ea": {"selection", "tournsize", "parsimony_tolerance", "init_fraction", "schedule", "criterion",
           "min_channels", "mutpb", "cxpb", "grow_fraction", "flip_prob", "shrink_temperature", "swap_fraction",
           "scheduled_parents"},
    "pool": "*",
    "operators": "*",
    "transfer": {"complement_scale", "fresh_channels", "pretrain_images", "pretrain_on", "classes"},
}
# What each recipe sets for its problem and machine: sizes (counts, steps, budgets, the learngene's
# target size), data, network (with its training hyperparameters) and runtime.
OWN_KEYS = {
    "": {"name", "seed"},
    "model": "*",
    "data": "*",
    "task": "*",
    "fitness": {"episodes", "n_way", "k_shot", "n_query", "finetune_steps", "retries", "rescore_episodes",
                "population_batch"},
    "ea": {"population_size", "generations", "elites", "target_fraction", "schedule_generations", "patience"},
    "transfer": {"after_run", "seed", "episodes", "n_way", "shots", "limited_data", "n_query", "steps", "lr",
                 "optimizer", "weight_decay", "batch_size", "augment", "pretrain_epochs", "descendants", "target",
                 "cache_dir"},
    "runtime": "*",
}


def schema_keys() -> set[tuple[str, str]]:
    """Every (section, key) of the schema; top-level keys have section ''."""
    keys = set()
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(f.default_factory) if f.default_factory is not dataclasses.MISSING else False:
            keys |= {(f.name, g.name) for g in dataclasses.fields(f.default_factory)}
        else:
            keys.add(("", f.name))
    return keys


def classified(table, section, key) -> bool:
    keys = table.get(section, set())
    return keys == "*" or key in keys


def algorithm_values(path) -> dict[tuple[str, str], object]:
    values = to_dict(load_config(path, ["data.root=/somewhere"]))
    return {(s, k): values[s][k] for s, k in schema_keys() if s and classified(ALGORITHM_KEYS, s, k)}


def key_line(path, section, key) -> str | None:
    """The text of the line in the recipe file itself that sets ``section.key`` (None: not set there)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    root = yaml.compose(text)
    for s_node, s_value in root.value:
        if s_node.value == section and isinstance(s_value, yaml.MappingNode):
            for k_node, _ in s_value.value:
                if k_node.value == key:
                    return text.splitlines()[k_node.start_mark.line]
    return None


def test_every_schema_key_is_either_algorithm_or_the_recipes_own():
    keys = schema_keys()
    both = {k for k in keys if classified(ALGORITHM_KEYS, *k) and classified(OWN_KEYS, *k)}
    neither = {k for k in keys if not classified(ALGORITHM_KEYS, *k) and not classified(OWN_KEYS, *k)}
    assert not both and not neither, (sorted(both), sorted(neither))


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(GENOMES, "*.yaml"))))
def test_a_recipe_differs_from_the_default_algorithm_only_where_a_line_says_why(name):
    path = os.path.join(GENOMES, name)
    default, mine = algorithm_values(os.path.join(GENOMES, "default.yaml")), algorithm_values(path)
    unexplained = []
    for (section, key), value in sorted(mine.items()):
        if value != default[(section, key)]:
            line = key_line(path, section, key)
            if line is None or not DIFFERS.search(line):
                unexplained.append(f"{section}.{key}: {value!r} (default.yaml: {default[(section, key)]!r})")
    assert not unexplained, f"{name} differs from default.yaml without '# differs: <why>': {unexplained}"


@pytest.mark.parametrize("name", ["cifarfs-vgg11.yaml", "miniimagenet-resnet12.yaml", "torchvision-resnet18.yaml"])
def test_the_gpu_and_network_recipes_evolve_with_the_default_algorithm(name):
    keys = [("fitness", "inheritance"), ("fitness", "complement_scale"), ("transfer", "complement_scale"),
            ("ea", "criterion"), ("pool", "warm_start_fraction")]
    default, mine = algorithm_values(os.path.join(GENOMES, "default.yaml")), algorithm_values(os.path.join(GENOMES, name))
    assert [mine[k] for k in keys] == [default[k] for k in keys] == ["pool", 0.0, 0.0, "bn", 1.0]


def test_the_lamarckian_recipe_keeps_the_old_algorithm_and_says_so():
    path = os.path.join(GENOMES, "lamarckian.yaml")
    cfg = load_config(path)
    assert (cfg.fitness.inheritance, cfg.ea.criterion, cfg.pool.warm_start_fraction) == ("lamarckian", "l1", 0.0)
    assert all(DIFFERS.search(key_line(path, "fitness", key)) for key in ("inheritance", "complement_scale"))
