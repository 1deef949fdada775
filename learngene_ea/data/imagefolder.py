"""Any folder of images with one sub-folder per class: ``root/<class>/<image files>``.

Images (jpg, jpeg, png, bmp, webp; any size or mode) are converted to grey (``channels: 1``)
or RGB (``channels: 3``), resized to ``image_size`` squares, decoded once and cached (see
:mod:`.files`). Hidden files and folders are skipped, as are sub-folders without images.
Class ids follow the sorted folder names, whatever the split.

The class split ``data.split`` maps each of ``train``, ``val`` and ``test`` to one of:

- a list of class names (those classes);
- an integer (that many classes);
- a fraction in (0, 1] (that share of the classes left after the named lists and counts).

Classes not named in a list are shuffled with ``data.seed`` and cut in the order train, val,
test, so a split is reproducible from the seed. Unused classes are allowed (fractions that
add up to less than 1). Without ``data.split`` the fractions are 0.64 / 0.16 / 0.20.

A transfer target (``transfer.target``) needs test classes only: its split may give ``test``
alone, and without a split every class is a test class.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..errors import UserError
from . import files
from .base import SPLITS, FewShotDataset

DEFAULT_SPLIT = {"train": 0.64, "val": 0.16, "test": 0.20}
ALL_TEST = {"test": 1.0}  # a transfer target's default: every class is a test class


def load_imagefolder(root, image_size: int = 32, channels: int = 3, split=None, split_seed: int = 0,
                     cache_dir=None, target: bool = False) -> FewShotDataset:
    """Load ``root/<class>/<images>`` as a few-shot dataset split by class (see module docstring).

    ``target``: the arguments come from ``transfer.target`` (else ``data``; errors name the user's
    own keys): a transfer target, whose split may give only ``test`` and whose classes are all
    test classes when it gives none (:data:`ALL_TEST`).
    """
    key, all_test = ("transfer.target" if target else "data"), target
    if channels not in (1, 3):
        raise UserError(f"{key}.channels is {channels!r}; it must be 1 (grey) or 3 (RGB).")
    root = files.existing_root(root, "one sub-folder of images per class", key)
    names = files.class_folders(root)
    if not names:
        raise UserError(f"{key}.root '{root}' has no class folders with images (looked for sub-folders "
                        "holding .jpg, .jpeg, .png, .bmp or .webp files); put each class's images in "
                        f"its own sub-folder of {key}.root.")
    default = ALL_TEST if all_test else DEFAULT_SPLIT
    splits = resolve_split(names, split or default, split_seed, f"{key}.split", optional=SPLITS[:2] if all_test else ())
    class_files = [(n, files.image_files(os.path.join(root, n))) for n in names]
    images, labels, moments, cache = files.load_class_images("imagefolder", root, class_files,
                                                             image_size, channels, cache_dir)
    # a target may have no training classes: its images are then normalised by all its classes' statistics
    mean, std = files.mean_std(moments, splits["train"] or range(len(names)))
    return FewShotDataset(torch.from_numpy(images), torch.from_numpy(labels), names, splits,
                          mean=mean, std=std, name="imagefolder", cache_path=cache)


def _kind(key: str, value):
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "names"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return "count"
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return "fraction"
    hint = ""
    if isinstance(value, (list, tuple)) and any(isinstance(v, (int, float, bool)) for v in value):
        # YAML reads a class folder named 0 (or 007, yes) as a number, not as the folder's name
        hint = (f" (YAML reads {next(v for v in value if not isinstance(v, str))!r} as a number: quote class names "
                "that look like numbers or yes/no, e.g. ['0', '1'])")
    raise UserError(f"{key} is {value!r}; it must be a list of class names{hint}, "
                    "a positive number of classes or a fraction in (0, 1].")


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _checked_split(split, key: str, optional) -> dict:
    """``split`` without the optional splits left empty; :class:`UserError` for an unknown or missing key."""
    if not isinstance(split, dict):
        raise UserError(f"{key} is {split!r}; it must map train, val and test to class lists, counts or fractions.")
    split = {s: v for s, v in split.items() if not (s in optional and v in (0, None, []))}
    unknown = sorted(set(split) - set(SPLITS))
    missing = [s for s in SPLITS if s not in split and s not in optional]
    if unknown or missing:
        what = f"unknown key '{unknown[0]}'" if unknown else f"no '{missing[0]}' entry"
        must = "exactly train, val and test" if not optional else \
            "test, and optionally " + " and ".join(optional) + ", and nothing else"
        raise UserError(f"{key} has {what}; it must give {must}.")
    return split


def _named_classes(names: list[str], split: dict, kinds: dict, key: str) -> tuple[dict, dict]:
    """The splits given as class-name lists: ``({split: class ids}, {class name: its split})``."""
    index = {n: i for i, n in enumerate(names)}
    chosen, owner = {}, {}
    for s, kind in kinds.items():
        if kind != "names":
            continue
        for n in split[s]:
            if n not in index:
                root_key = key.rsplit(".", 1)[0] + ".root"
                raise UserError(f"{key}.{s} names class {n!r}, which is not a class folder of {root_key} "
                                f"({len(names)} classes, e.g. {', '.join(names[:3])}).")
            if n in owner:
                raise UserError(f"{key} names class {n!r} in both {owner[n]} and {s}; "
                                "each class may be in one split only.")
            owner[n] = s
        chosen[s] = [index[n] for n in split[s]]
    return chosen, owner


def _check_counts(split: dict, kinds: dict, key: str, available: int, named: tuple[int, bool]) -> int:
    """The classes the counts ask for; :class:`UserError` when more than ``available`` are left
    (``named``: the number of classes in all, whether some were named in lists)."""
    counts = [s for s, kind in kinds.items() if kind == "count"]
    counted = sum(split[s] for s in counts)
    if counted > available:
        # name each count the user wrote; their sum is ours, not theirs
        asked = _listed([f"{key}.{s} asks for {split[s]} classes" if i == 0 else f"{key}.{s} for {split[s]}"
                         for i, s in enumerate(counts)])
        total = f" ({counted} in all)" if len(counts) > 1 else ""
        root_key = key.rsplit(".", 1)[0] + ".root"
        classes, some_named = named
        left = f"only {available} of the {classes} classes of {root_key} are left after the named lists" \
            if some_named else f"{root_key} has only {classes} classes"
        raise UserError(f"{asked}{total}, but {left}; lower "
                        + ("that count." if len(counts) == 1 else "the counts."))
    fractions = [s for s, kind in kinds.items() if kind == "fraction"]
    total = sum(split[s] for s in fractions)
    if total > 1.0 + 1e-9:
        written = " + ".join(f"{key}.{s} {split[s]:g}" for s in fractions)
        raise UserError(f"{written} add up to {total:g}; the fractions must add up to at most 1.")
    return counted


def resolve_split(names: list[str], split: dict, seed: int, key: str = "data.split",
                  optional=()) -> dict[str, list[int]]:
    """Class ids of every split from a ``data.split`` mapping (see module docstring).

    ``key`` names the mapping in errors; the splits in ``optional`` may be left out (or given
    0) and then get no classes (a transfer target needs only test classes).
    """
    split = _checked_split(split, key, optional)
    given = [s for s in SPLITS if s in split]
    kinds = {s: _kind(f"{key}.{s}", split[s]) for s in given}
    named, owner = _named_classes(names, split, kinds, key)
    chosen: dict[str, list[int]] = {s: named.get(s, []) for s in SPLITS}
    rest = [i for i, n in enumerate(names) if n not in owner]
    rest = [rest[j] for j in np.random.default_rng(seed).permutation(len(rest))]
    counted = _check_counts(split, kinds, key, len(rest), (len(names), bool(owner)))
    # fractions share what the counts leave, cut at rounded cumulative boundaries so they sum exactly
    left, cum, prev, take = len(rest) - counted, 0.0, 0, {}
    for s in (s for s in given if kinds[s] == "fraction"):
        cum += split[s]
        bound = min(left, int(math.floor(cum * left + 0.5 + 1e-9)))
        take[s], prev = bound - prev, bound
    start = 0
    for s in given:
        if kinds[s] == "names":
            continue
        n = split[s] if kinds[s] == "count" else take[s]
        chosen[s] = rest[start:start + n]
        start += n
    for s in given:
        if not chosen[s]:
            raise UserError(f"{key}.{s} gets no classes ({len(names)} classes in {key.rsplit('.', 1)[0]}.root); "
                            "give it a larger fraction, a count or a list of class names.")
    return {s: sorted(chosen[s]) for s in SPLITS}
