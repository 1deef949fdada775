"""Recipes: YAML files (``genomes/``, shipped with the package) loaded into a typed, validated :class:`Config`.

A recipe only lists what differs from its ``base`` recipe, else from the defaults in :mod:`.schema`
(finding and reading recipe files: :mod:`.recipes`). ``--set section.key=value`` overrides are
applied on top (values parsed as YAML scalars or lists). Every mistake is a
:class:`ConfigError` whose message names the key, the problem and, for a misspelt key, the
closest valid one. The resolved config (:func:`to_dict`) is what every run saves.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from typing import Any

import yaml

from .schema import Config, ConfigError, DataConfig, TransferConfig
from ..data import dataset_kind
from ..core.devices import SETTING_FORMS, is_device_setting
from ..core.fresh import FreshStart
from ..core.models import list_families
from ..core.traced import allow_module, is_traced
from .recipes import _DuplicateKey, default_recipe_path, dump_yaml, merge_layers, parse_yaml, recipe_layers


# ----------------------------------------------------------------------------- building

def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list", dict: "a mapping"}
    if _is_dataclass_type(tp):
        return "a mapping"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


_BOOL_WORDS = {"yes": True, "on": True, "no": False, "off": False}


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
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:  # YAML 1.1's words, for boolean keys only
            return _BOOL_WORDS[value.lower()]
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
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"'{key}' is an integer of {len(str(value))} digits, too large for a number; "
                              "give a smaller one.") from None
        if not math.isfinite(number):
            raise ConfigError(f"'{key}' is {value!r}; it must be a finite number.")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, not {value!r}.")
        return _check_text(value, key)
    if tp in (list, dict):
        if not isinstance(value, tp):
            raise ConfigError(f"'{key}' must be {_type_name(tp)}, not {value!r}.")
        return value if key.endswith(".kwargs") else _check_text(value, key)  # kwargs: the user's operator's
    return value


def _check_text(value, key: str):
    """``value`` (a string, or a list or mapping holding strings) with no NUL character and no byte
    that is not UTF-8 (a command line's undecodable bytes): both would fail late, in a path or a plot."""
    if isinstance(value, str):
        if "\0" in value:
            raise ConfigError(f"'{key}' is {value!r}, which holds a NUL character; remove it.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"'{key}' is {value!r}, which holds bytes that are not UTF-8 text; give it in "
                              "UTF-8 (a path: rename it, or link to it under a UTF-8 name).") from None
    elif isinstance(value, list):
        for item in value:
            _check_text(item, key)
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_text(name, key)
            _check_text(item, key)
    return value


def choices_of(meta: dict):
    """A key's choices (``meta``: its field's metadata), read now: a registry's list (``choices=list_datasets``)
    is called, so a dataset registered after the schema was imported is a choice; None for a key without."""
    choices = meta.get("choices")
    return choices() if callable(choices) else choices


def _check_range(value, meta: dict, key: str):
    if value is None:
        return
    allowed = choices_of(meta)
    if allowed is not None and value not in allowed:
        close = difflib.get_close_matches(str(value), [str(c) for c in allowed], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"'{key}' is {value!r}{hint}; it must be one of: {', '.join(str(c) for c in allowed)}.")
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


def _check_model(model) -> None:
    """``model.family``/``module``/``kwargs``/``width`` name one network; a recipe's module may be imported."""
    families = list_families()  # the registry's, read now (core.models.register_family)
    if model.module:
        split_function_name(model.module, "model.module")
        allow_module(model.module)
    elif not is_traced(model.family) and model.family not in families:
        close = difflib.get_close_matches(model.family, families, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"'model.family' is {model.family!r}{hint}; it must be one of: {', '.join(families)}, "
                          "or torchvision:NAME (e.g. torchvision:resnet18), or set model.module.")
    try:
        json.dumps(model.kwargs)
    except (TypeError, ValueError):
        raise ConfigError(f"'model.kwargs' must hold numbers, strings, booleans, lists and mappings only, not "
                          f"{model.kwargs!r}.") from None
    traced = model.module or is_traced(model.family)
    if traced and model.width != 1.0:
        raise ConfigError(f"'model.width' scales our families only: set it to 1 ({model.network} takes its own "
                          "width argument in model.kwargs, e.g. width_mult for MobileNetV2).")
    if model.kwargs and not traced:
        raise ConfigError(f"'model.kwargs' go to a torchvision network's or model.module's builder; {model.family} "
                          "takes model.width.")


def _validate_whole(cfg: Config) -> Config:
    """Checks that involve more than one key."""
    _check_model(cfg.model)
    if cfg.ea.tournsize > cfg.ea.population_size:
        raise ConfigError(f"'ea.tournsize' ({cfg.ea.tournsize}) must not exceed "
                          f"'ea.population_size' ({cfg.ea.population_size}).")
    if cfg.ea.elites >= cfg.ea.population_size:
        raise ConfigError(f"'ea.elites' ({cfg.ea.elites}) must be smaller than "
                          f"'ea.population_size' ({cfg.ea.population_size}).")
    if cfg.ea.criterion == "score" and cfg.fitness.inheritance != "pool":
        raise ConfigError("'ea.criterion' score ranks channels by the gene pool's learngene scores: set "
                          "'fitness.inheritance' to pool, or choose another criterion.")
    if cfg.pool.warm_start_fraction and cfg.fitness.inheritance != "pool":
        raise ConfigError("'pool.warm_start_fraction' starts the gene pool from a trained network: set "
                          "'fitness.inheritance' to pool, or leave it at 0.")
    if cfg.fitness.speed_points > cfg.task.steps:
        raise ConfigError(f"'fitness.speed_points' ({cfg.fitness.speed_points}) must not exceed 'task.steps' "
                          f"({cfg.task.steps}): a descendant is scored at most once a step.")
    if cfg.transfer.classes == "val" and cfg.transfer.target is not None:
        raise ConfigError("'transfer.classes' val evaluates on the source's validation classes: leave "
                          "'transfer.target' null, or set transfer.classes=test.")
    for key, data in (("data", cfg.data), ("transfer.target", cfg.transfer.target)):
        if data is not None and dataset_kind(data.name).needs_root and not data.root:
            raise ConfigError(f"'{key}.root' is required for {key}.name '{data.name}': "
                              "set it to the folder holding the dataset files.")
    # what depends on the dataset (classes and images of each split) is checked once it is
    # loaded, before a run makes its folder: see recipe_checks.py
    device = cfg.runtime.device
    if not is_device_setting(device):
        raise ConfigError(f"'runtime.device' is {device!r}; it must be {SETTING_FORMS} (N: a GPU's number, "
                          "from 0).")
    shots = cfg.transfer.shots
    if not shots or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shots):
        raise ConfigError(f"'transfer.shots' must be a non-empty list of positive integers, not {shots!r}.")
    _check_transfer_keys(cfg.transfer)
    for op_name in ("select", "mutate", "mate", "evaluate"):
        spec = getattr(cfg.operators, op_name)
        if spec is not None:
            split_function_name(spec.function, f"operators.{op_name}.function")
    return cfg


def _check_transfer_keys(transfer: TransferConfig) -> None:
    """Transfer keys that would be accepted and do nothing (or the same work twice)."""
    repeated = sorted({s for s in transfer.shots if transfer.shots.count(s) > 1})
    if repeated:
        raise ConfigError(f"'transfer.shots' lists {repeated[0]} more than once ({transfer.shots}); list each "
                          "setting once.")
    if transfer.pretrain_on == "target" and transfer.target is None:
        raise ConfigError("'transfer.pretrain_on' target trains the pre-trained baseline on transfer.target's "
                          "classes, but 'transfer.target' is null: set transfer.target, or pretrain_on=source.")


def checked_config(cfg) -> Config:
    """``cfg`` checked again as a loaded recipe is (the API's entry points: a :class:`Config` may have been
    changed after loading); :class:`TypeError` for anything else, e.g. a recipe's path."""
    if not isinstance(cfg, Config):
        hint = " (load a recipe file with load_config(path) first)" if isinstance(cfg, (str, os.PathLike)) else ""
        raise TypeError(f"expected a Config from load_config(), not {type(cfg).__name__} {cfg!r:.80}{hint}")
    return from_dict(to_dict(cfg))


def split_function_name(name: str, key: str) -> tuple[str, str]:
    """``"package.module:function"`` as ``(module, function)``; :class:`ConfigError` naming ``key`` otherwise."""
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"'{key}' must look like 'package.module:function', not {name!r}.")
    return module_name, attr


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
        value = parse_yaml(raw) if raw.strip() else None
    except _DuplicateKey as err:
        raise ConfigError(f"--set {text!r} gives the key {err.key!r} twice; keep one of them.") from None
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


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a recipe (a file, or a shipped recipe's name such as ``"default"``; ``None``: the schema's
    defaults, no recipe), apply overrides, validate."""
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_config takes a recipe's path (or None), not {type(path).__name__} {path!r:.80}")
    overrides = override_list(overrides)
    layers = recipe_layers(path) if path is not None else [{}]
    values = apply_overrides(merge_layers(layers), overrides)
    check_fresh_rules(values, [*layers[1:], apply_overrides({}, overrides)])
    return from_dict(values)


def check_fresh_rules(values: dict, layers: list[dict]) -> None:
    """A ``complement_scale`` other than 0 that a recipe built on a ``base`` or an override gives (``layers``:
    what each wrote) beside a resolved ``fresh_channels: grow`` would be ignored (grown channels start their
    own way): refuse it, so that ``--set transfer.complement_scale=1`` or a ``base: default`` recipe asking for
    GTL's channels does not silently grow them. A file without a base is not read here: a run's
    ``config.yaml`` writes every key, the schema's scale beside ``grow`` included, and must load again."""
    for section in ("fitness", "transfer"):
        keys = values.get(section)
        if not isinstance(keys, dict) or keys.get("fresh_channels") != "grow":
            continue
        given = [layer[section]["complement_scale"] for layer in layers
                 if isinstance(layer.get(section), dict) and "complement_scale" in layer[section]]
        scale = given[-1] if given else 0.0
        if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale != 0:
            raise ConfigError(f"'{section}.complement_scale' is {scale} but '{section}.fresh_channels' is 'grow', "
                              f"which ignores the scale; set {section}.fresh_channels=scaled for fresh channels "
                              "scaled by complement_scale (1.0: GTL's).")


def override_list(overrides) -> list[str]:
    """``overrides`` as a list of ``section.key=value`` strings (``None``: none); :class:`TypeError` for a
    single string (its characters would be read as overrides) or anything that is not a string."""
    if isinstance(overrides, (str, bytes)) or not all(isinstance(o, str) for o in overrides or []):
        raise TypeError(f"overrides must be a list of 'section.key=value' strings, not {overrides!r:.80}")
    return list(overrides or [])


def fresh_start(rule: str | None = None, complement_scale: float | None = None) -> FreshStart:
    """How a descendant's fresh channels start: ``rule`` and ``complement_scale`` as given, each one left
    ``None`` the shipped default recipe's ``transfer`` value, so that Python builds the descendants the
    command line builds (the recipe is read once, and only when a value is missing). A scale given without a
    rule means the ``scaled`` rule (the only one that reads it)."""
    if rule is None and complement_scale is not None:
        rule = "scaled"
    if rule is None or complement_scale is None:
        default = load_config(default_recipe_path()).transfer
        rule = default.fresh_channels if rule is None else rule
        complement_scale = default.complement_scale if complement_scale is None else complement_scale
    return FreshStart(rule, float(complement_scale))


def config_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (what ``config.yaml`` and ``--print-config`` hold)."""
    return dump_yaml(to_dict(cfg))


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from ..io.atomic import atomic_write_text

    atomic_write_text(path, config_yaml(cfg))


def recipe_name(name: str | None, path: str | os.PathLike | None) -> str:
    """What a run is called: ``name`` (the recipe's) when set, else the recipe file's name (``defaults`` without
    one)."""
    if name:
        return name
    return os.path.splitext(os.path.basename(os.fspath(path)))[0] if path else "defaults"


def dataset_label(data: DataConfig) -> str:
    """A short name for a data section: ``data.name``, or an image folder's own folder name."""
    if data.name == "imagefolder" and data.root:
        folder = os.path.basename(os.path.normpath(os.path.expanduser(data.root)))
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in folder) or data.name
    return data.name
