"""Recipe files: where a recipe is found, how its YAML is read, and how ``base:`` recipes combine.

- A recipe is a file, or the name of a recipe shipped with the package (``default``,
  ``cifarfs-vgg11``, ...: the repository's ``genomes/``, installed as package data), found the same
  from any folder.
- ``base: NAME_OR_PATH`` starts a recipe from another one (a shipped recipe's name, or a path
  relative to the recipe's own folder); the recipe's keys override the base's, section by section.
- YAML is read with a :class:`yaml.SafeLoader` (nothing in a recipe runs code) with YAML 1.2's
  scalars where 1.1 surprises ML users: ``1e-3`` is a number, and only ``true``/``false`` are
  booleans (``yes``/``no``/``on``/``off`` are words, which boolean keys accept).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import types
import typing

import yaml

from ..io.paths import decode_utf8, file_problem
from .schema import Config, ConfigError
from ..errors import UserError

DEFAULT_RECIPE = "default"  # the shipped recipe a command uses without --config
_BOOL_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
# YAML 1.1 floats need a dot and a signed exponent (1.0e-3); YAML 1.2 also reads 1e-3, 1e3 and 1.e3
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


# ----------------------------------------------------------------------------- finding

def shipped_folder() -> str:
    """The folder of the shipped recipes: the package's ``genomes/`` data (an install from a wheel),
    else the ``genomes/`` beside the package (a source checkout, an editable install)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(package, "genomes")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "genomes")


def shipped_recipes() -> list[str]:
    """The names of the shipped recipes (``default``, ``cifarfs-vgg11``, ...)."""
    folder = shipped_folder()
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(name[:-5] for name in names if name.endswith(".yaml"))


def is_recipe_name(text: str) -> bool:
    """Whether ``text`` is a bare name (no folder, no ``.yaml``/``.yml``), which may name a shipped recipe."""
    return bool(text) and "/" not in text and os.sep not in text and not text.endswith((".yaml", ".yml"))


def recipe_file(text: str | os.PathLike, folder: str | None = None, owner: str | None = None) -> str:
    """The file that ``text`` (``--config``, or the ``base`` of recipe ``owner``) means.

    An existing file (relative to ``folder`` when given) is itself; a bare name that is not a file is
    the shipped recipe of that name. Anything else is returned as a path, for the reader to refuse.
    """
    text = os.fspath(text)
    path = os.path.expanduser(text)
    if folder is not None and not os.path.isabs(path):
        path = os.path.join(folder, path)
    if os.path.lexists(path) or not is_recipe_name(text):
        if owner is not None and not os.path.lexists(path):
            raise ConfigError(f"Recipe {owner!r} has base {text!r}, and {path!r} does not exist; give the base as "
                              "a shipped recipe's name or a path relative to the recipe's folder.")
        return path
    shipped = os.path.join(shipped_folder(), text + ".yaml")
    if os.path.isfile(shipped):
        return shipped
    close = difflib.get_close_matches(text, shipped_recipes(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    names = ", ".join(shipped_recipes()) or "none found, reinstall learngene-ea"
    what = f"Recipe {owner!r} has base {text!r}, which" if owner else f"Recipe {text!r}"
    raise ConfigError(f"{what} is neither a file nor a shipped recipe{hint}; give a recipe's path or one of the "
                      f"shipped names: {names}.")


def default_recipe_path() -> str:
    """The shipped default recipe's file (what a command reads without ``--config``)."""
    return recipe_file(DEFAULT_RECIPE)


# ----------------------------------------------------------------------------- reading

class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, again: int):
        super().__init__(f"{key!r} at lines {first} and {again}")
        self.key, self.first, self.again = key, first, again


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not a silent
    replacement (two ``ea:`` sections: the second would win unseen), and that its scalars follow
    YAML 1.2 where 1.1 surprises: ``1e-3`` is a number; only true/false are booleans."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *defaults' merges, it does not repeat
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader refuses it itself, with its own message
            if key in lines:
                raise _DuplicateKey(key, lines[key], key_node.start_mark.line + 1)
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


# YAML 1.1 makes yes/no/on/off booleans (a class named "no", an option "off": silently False); here they
# stay words, which boolean keys accept (loading.py). A copy of SafeLoader's rules, less its boolean one:
RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in rules if tag != _BOOL_TAG]
    for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
RecipeLoader.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, list("-+0123456789."))


class RecipeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that also quotes a string a recipe would read as a number (``'1e-3'``): what it
    writes reads back the same with :func:`parse_yaml` and with YAML 1.1 readers (``yaml.safe_load``)."""


RecipeDumper.add_implicit_resolver(_FLOAT_TAG, _EXPONENT_FLOAT, list("-+0123456789."))


def dump_yaml(data) -> str:
    """``data`` (plain values, lists and mappings) as YAML text, keys in their order."""
    return yaml.dump(data, Dumper=RecipeDumper, sort_keys=False)


def parse_yaml(text: str):
    """YAML text as Python data, refusing duplicate keys (see :class:`RecipeLoader`)."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader)


# Process-wide: the recipe files already noted as empty, so that each is noted once however often this
# process reads it (a command, then the Python API, a study's seeds).
_NOTED_EMPTY: set = set()


def _read_file(path: str) -> dict:
    """One recipe file as a mapping (its ``base`` not applied), with a clear error for a missing or bad file."""
    problem = file_problem(path)
    if problem == "does not exist":
        raise ConfigError(f"Recipe {path!r} does not exist; pass --config with a recipe file or a shipped "
                          f"recipe's name ({', '.join(shipped_recipes())}).")
    if problem:
        raise ConfigError(f"Recipe {path!r} {problem}; pass --config with a recipe .yaml file.")
    try:
        with open(path, "rb") as f:
            text = decode_utf8(f.read(), f"Recipe {path!r}")
    except OSError as err:
        raise ConfigError(f"Recipe {path!r} cannot be read ({err.strerror}).") from err
    except UserError as err:
        raise ConfigError(str(err)) from None
    try:
        values = parse_yaml(text)
    except _DuplicateKey as err:
        raise ConfigError(f"Recipe {path!r} gives the key {err.key!r} twice in one section (lines {err.first} "
                          f"and {err.again}); keep one of them.") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Recipe {path!r} is not valid YAML{where}; fix its syntax.") from err
    if values is None:
        if path not in _NOTED_EMPTY:
            _NOTED_EMPTY.add(path)
            print(f"note: recipe {path!r} is empty: every key at its default.", file=sys.stderr)
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"Recipe {path!r} must be a YAML mapping of sections to keys.")
    return values


def read_recipe(path: str | os.PathLike) -> dict:
    """A recipe (a file, or a shipped recipe's name) as one mapping, its ``base`` recipes merged under it.

    A file with no keys at all (empty, or comments only) is noted once per process on stderr:
    every key then has its default, which a typo in the file name would not make obvious.
    """
    return merge_layers(recipe_layers(path))


def merge_layers(layers: list[dict]) -> dict:
    """The layers of a recipe's chain (:func:`recipe_layers`) merged, each on top of those before it."""
    values = layers[0]
    for layer in layers[1:]:
        values = merge_recipes(values, layer)
    return values


def recipe_layers(path: str | os.PathLike, _chain: tuple[str, ...] = ()) -> list[dict]:
    """The files of a recipe's ``base`` chain as they are written, the bottom one (the only one without a
    ``base``) first, each without its ``base`` key: what :func:`read_recipe` merges."""
    path = recipe_file(path)
    values = _read_file(path)
    base = values.pop("base", None)
    if base is None:
        return [values]
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"Recipe {path!r} has base {base!r}; give a shipped recipe's name (e.g. base: default) "
                          "or a recipe file's path.")
    chain = (*_chain, os.path.realpath(path))
    base_path = recipe_file(base, os.path.dirname(path), owner=path)
    if os.path.realpath(base_path) in chain:
        loop = " -> ".join([*chain, os.path.realpath(base_path)])
        raise ConfigError(f"Recipe {path!r} is its own base ({loop}); remove one of these base keys.")
    return [*recipe_layers(base_path, chain), values]


def _section(cls, key) -> type | None:
    """The dataclass of section ``key`` of ``cls`` (``None``: a plain value, or a mapping of free keys)."""
    if cls is None or key not in {f.name for f in dataclasses.fields(cls)}:
        return None
    tp = typing.get_type_hints(cls)[key]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def merge_recipes(base: dict, recipe: dict, cls: type | None = Config) -> dict:
    """``recipe`` on top of ``base``: sections merge key by key; any other value (a list, a mapping of free
    keys such as ``model.kwargs`` or ``data.split``) is the recipe's when it gives one."""
    merged = dict(base)
    for key, value in recipe.items():
        section = _section(cls, key)
        if section is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_recipes(merged[key], value, section)
        else:
            merged[key] = value
    return merged
