"""Recipes: YAML files in ``genomes/`` loaded into a typed, validated :class:`Config`.

A recipe only lists what differs from the defaults below. ``--set section.key=value``
overrides are applied on top (values parsed as YAML scalars or lists). Every mistake is a
:class:`ConfigError` whose message names the key, the problem and, for a misspelt key, the
closest valid one. The resolved config (:func:`to_dict`) is what every run saves.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from .errors import UserError

MODEL_FAMILIES = ("conv4", "conv6", "vgg11", "vgg13", "vgg16", "resnet12", "resnet24")
DATASETS = ("synthetic", "cifarfs", "miniimagenet", "imagefolder")


class ConfigError(UserError):
    """A recipe or ``--set`` override that cannot be used, named in one sentence."""


def _field(default, doc: str, **checks):
    """A dataclass field with a docstring and range/choice checks (min, max, gt, lt)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc, **checks})
    return field(default=default, metadata={"doc": doc, **checks})


@dataclass
class ModelConfig:
    family: str = _field("conv4", "backbone family", choices=MODEL_FAMILIES)
    width: float = _field(1.0, "width multiplier of every gene layer", gt=0.0, max=16.0)


@dataclass
class DataConfig:
    name: str = _field("synthetic", "dataset", choices=DATASETS)
    root: str | None = _field(None, "folder holding the dataset files (not used by synthetic)")
    seed: int = _field(0, "seed of the synthetic dataset and of image-folder class splits", min=0)
    images_per_class: int = _field(600, "images per class of the synthetic dataset", min=10)
    image_size: int = _field(32, "side of the square images the loader produces", min=8, max=512)
    channels: int = _field(3, "image channels (1 or 3)", choices=(1, 3))
    cache_dir: str | None = _field(None, "where decoded images are cached (default: next to the data)")
    split: dict = _field({}, "image-folder class split: {train, val, test} -> class list, count or fraction")
    augment: bool = _field(True, "random crop + horizontal flip when training descendants")


@dataclass
class TaskConfig:
    """The task a descendant learns inside fitness (training classes only)."""

    num_classes: int = _field(16, "training classes in each descendant's task", min=2)
    images_per_class: int = _field(60, "images per class in each task", min=1)
    steps: int = _field(120, "optimisation steps per descendant", min=1)
    batch_size: int = _field(64, "images per step", min=1)
    lr: float = _field(0.05, "learning rate (SGD with momentum 0.9, cosine decay)", gt=0.0)
    weight_decay: float = _field(5e-4, "weight decay", min=0.0)


@dataclass
class FitnessConfig:
    episodes: int = _field(40, "validation episodes scored per individual", min=1)
    n_way: int = _field(5, "classes per episode", min=2)
    k_shot: int = _field(5, "support images per class", min=1)
    n_query: int = _field(15, "query images per class", min=1)
    score: str = _field("descendant", "what is scored: the whole trained descendant, its learngene sub-network "
                                      "alone (other channels zeroed), or the mean of both",
                        choices=("descendant", "learngene", "mix"))
    classifier: str = _field("prototype", "how episodes are scored", choices=("prototype", "finetune"))
    metric: str = _field("cosine", "prototype distance", choices=("cosine", "euclidean"))
    finetune_steps: int = _field(50, "head fine-tuning steps per episode (classifier: finetune)", min=1)
    inheritance: str = _field("lamarckian", "write trained weights back to the learngene?",
                              choices=("lamarckian", "darwinian"))
    retries: int = _field(1, "times an evaluation that failed by bad luck (NaN/inf loss, out of memory) is "
                             "retried before it gets the worst fitness; other failures stop the run", min=0)
    rescore_episodes: int = _field(100, "fresh validation episodes the product is scored on again after the "
                                        "run, free of the selection's bias (0: off)", min=0)
    population_batch: int = _field(1, "descendants a worker trains at once as one grouped network "
                                      "(1: one by one)", min=1)


@dataclass
class EAConfig:
    population_size: int = _field(8, "individuals per generation", min=2)
    generations: int = _field(6, "generations after generation 0", min=0)
    tournsize: int = _field(3, "individuals per tournament", min=1)
    elites: int = _field(1, "best individuals copied unchanged into the next generation", min=0)
    parsimony_tolerance: float = _field(0.01, "accuracy gap within which the smaller learngene wins", min=0.0, max=1.0)
    init_fraction: float = _field(1.0, "fraction of channels in generation 0 (1.0 = whole network)", gt=0.0, max=1.0)
    target_fraction: float = _field(0.25, "learngene fraction the shrink schedule drives toward", gt=0.0, max=1.0)
    schedule: str = _field("geometric", "how the fraction moves toward the target",
                           choices=("geometric", "linear", "none"))
    schedule_generations: int = _field(4, "generations over which the schedule reaches the target", min=1)
    criterion: str = _field("l1", "which channels shrink drops first", choices=("l1", "bn", "random"))
    min_channels: int = _field(2, "channels every mask group keeps at least", min=1)
    mutpb: float = _field(1.0, "probability that an offspring is mutated", min=0.0, max=1.0)
    cxpb: float = _field(0.0, "probability of channel crossover (off by default)", min=0.0, max=1.0)
    grow_fraction: float = _field(0.02, "fraction of dropped channels re-added by a mutation", min=0.0, max=1.0)
    flip_prob: float = _field(0.0, "per-channel probability of flipping a mask bit", min=0.0, max=1.0)
    patience: int = _field(3, "generations without improvement, at the target, before stopping", min=1)


@dataclass
class OperatorSpec:
    function: str = _field("", "'package.module:function'")
    kwargs: dict = _field({}, "keyword arguments bound to the function")


@dataclass
class OperatorsConfig:
    select: OperatorSpec | None = _field(None, "selection operator (default: parsimony tournament)")
    mutate: OperatorSpec | None = _field(None, "mutation operator (default: learngene mutation)")
    mate: OperatorSpec | None = _field(None, "crossover operator (default: channel crossover)")
    evaluate: OperatorSpec | None = _field(None, "fitness function (default: learngene_ea.fitness:evaluate)")


@dataclass
class TransferConfig:
    """Downstream evaluation on test classes (``python -m learngene_ea.transfer``)."""

    after_run: bool = _field(False, "evaluate the learngene on test classes at the end of the run")
    seed: int = _field(0, "seed of the test episodes and of every descendant's initialisation", min=0)
    episodes: int = _field(20, "test episodes per setting (the standard is 600, on a GPU)", min=1)
    n_way: int = _field(5, "classes per episode", min=2)
    shots: list = _field([1, 5], "support images per class, one setting each")
    limited_data: int = _field(20, "images per class of the limited-data setting (0: off)", min=0)
    n_query: int = _field(15, "query images per class", min=1)
    steps: int = _field(60, "fine-tuning steps on the support set", min=0)
    lr: float = _field(0.01, "fine-tuning learning rate", gt=0.0)
    optimizer: str = _field("sgd", "fine-tuning optimiser (sgd: momentum 0.9; adam)", choices=("sgd", "adam"))
    weight_decay: float = _field(5e-4, "fine-tuning weight decay", min=0.0)
    batch_size: int = _field(128, "support images per fine-tuning step (the whole support set when smaller)",
                             min=1)
    augment: bool = _field(True, "random crop + horizontal flip of support images while fine-tuning")
    pretrain_images: int = _field(0, "training images the pre-trained baseline learns from; 0: as many as all "
                                     "the evolution's descendants together (equal compute, recorded in "
                                     "learngene.pt)", min=0)
    pretrain_epochs: int = _field(3, "epochs of the pre-trained baseline for a learngene that does not record "
                                     "its compute (and pretrain_images 0)", min=1)
    descendants: list = _field([], "extra descendants for scalability rows, e.g. ['conv4@2.0', 'vgg11']")


@dataclass
class RuntimeConfig:
    device: str = _field("auto", "'auto' (GPU when present), 'cpu', 'cuda' or 'cuda:N'")
    threads: int = _field(0, "torch threads per worker (0: cores / workers)", min=0)
    channels_last: bool = _field(False, "keep images and conv weights channels-last (NHWC): 1.2-1.5x faster "
                                        "CPU training in `python -m bench --only channels_last`; float "
                                        "results differ from the default layout in the last bits")
    keep_freed_memory: bool = _field(True, "keep freed host memory for reuse (glibc malloc) instead of page-"
                                          "faulting every step's tensors in again: 1.13-1.20x faster CPU "
                                          "training in `python -m bench --only host_memory`; a process "
                                          "keeps its peak heap")
    stall_timeout: float = _field(1800.0, "seconds without any finished evaluation before the run "
                                          "stops as 'a SCOOP worker died'", gt=0.0)


@dataclass
class Config:
    name: str = _field("gtl", "run name prefix (run directory: runs/<name>-<timestamp>)")
    seed: int = _field(0, "seed of everything random in the run", min=0)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    ea: EAConfig = field(default_factory=EAConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ----------------------------------------------------------------------------- building

def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list", dict: "a mapping"}
    if _is_dataclass_type(tp):
        return "a mapping"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, key: str):
    """Check ``value`` against the annotated type ``tp``; return the value to store."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping of keys to values, not {value!r}.")
        return _build(tp, value, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, not {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, not {value!r}.")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, not {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, not {value!r}.")
        return value
    if tp in (list, dict):
        if not isinstance(value, tp):
            raise ConfigError(f"'{key}' must be {_type_name(tp)}, not {value!r}.")
        return value
    return value


def _check_range(value, meta: dict, key: str):
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), [str(c) for c in meta["choices"]], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        choices = ", ".join(str(c) for c in meta["choices"])
        raise ConfigError(f"'{key}' is {value!r}{hint}; it must be one of: {choices}.")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"'{key}' is {value!r}; it must be at least {meta['min']}.")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"'{key}' is {value!r}; it must be at most {meta['max']}.")
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(f"'{key}' is {value!r}; it must be greater than {meta['gt']}.")


def _build(cls, values: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            valid = ", ".join(prefix + f for f in fields)
            raise ConfigError(f"Unknown key '{prefix}{key}'{hint} (valid keys here: {valid}).")
    kwargs = {}
    for name, f in fields.items():
        if name in values:
            value = _coerce(values[name], hints[name], prefix + name)
            _check_range(value, f.metadata, prefix + name)
            kwargs[name] = value
    return cls(**kwargs)


def _validate_whole(cfg: Config) -> Config:
    """Checks that involve more than one key."""
    if cfg.ea.tournsize > cfg.ea.population_size:
        raise ConfigError(f"'ea.tournsize' ({cfg.ea.tournsize}) must not exceed "
                          f"'ea.population_size' ({cfg.ea.population_size}).")
    if cfg.ea.elites >= cfg.ea.population_size:
        raise ConfigError(f"'ea.elites' ({cfg.ea.elites}) must be smaller than "
                          f"'ea.population_size' ({cfg.ea.population_size}).")
    if cfg.data.name != "synthetic" and not cfg.data.root:
        raise ConfigError(f"'data.root' is required for data.name '{cfg.data.name}': "
                          "set it to the folder holding the dataset files.")
    # what depends on the dataset (classes and images of each split) is checked once it is
    # loaded, before a run makes its folder: see recipe_checks.py
    shots = cfg.transfer.shots
    if not shots or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shots):
        raise ConfigError(f"'transfer.shots' must be a non-empty list of positive integers, not {shots!r}.")
    for op_name in ("select", "mutate", "mate", "evaluate"):
        spec = getattr(cfg.operators, op_name)
        if spec is not None and ":" not in spec.function:
            raise ConfigError(f"'operators.{op_name}.function' must look like 'package.module:function', "
                              f"not {spec.function!r}.")
    return cfg


def from_dict(values: dict | None) -> Config:
    """Build a validated :class:`Config` from a nested mapping (a parsed recipe)."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError("A recipe must be a YAML mapping of sections to keys.")
    return _validate_whole(_build(Config, values))


def to_dict(cfg: Config) -> dict:
    """The resolved config as plain data (what runs save as ``config.yaml``)."""
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into a key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like section.key=value.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r} must look like section.key=value.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Return a copy of ``values`` with every ``section.key=value`` override applied."""
    values = yaml.safe_load(yaml.safe_dump(values)) if values else {}
    for text in overrides or []:
        path, value = parse_override(text)
        node = values
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{part}' is not a section.")
            node = child
        node[path[-1]] = value
    return values


def read_recipe(path: str | os.PathLike) -> dict:
    """Parse a recipe file into a mapping, with a clear error for a missing or bad file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"Recipe {path!r} does not exist; pass --config genomes/<recipe>.yaml.")
    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Recipe {path!r} is not valid YAML{where}; fix its syntax.") from err
    except OSError as err:
        raise ConfigError(f"Recipe {path!r} cannot be read ({err.strerror}).") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"Recipe {path!r} must be a YAML mapping of sections to keys.")
    return values


DEFAULT_RECIPE = os.path.join("genomes", "default.yaml")


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a recipe (``None``: the built-in defaults), apply overrides, validate."""
    values = read_recipe(path) if path is not None else {}
    return from_dict(apply_overrides(values, overrides or []))


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
