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


def load_imagefolder(root, image_size: int = 32, channels: int = 3, split=None, split_seed: int = 0,
                     cache_dir=None) -> FewShotDataset:
    """Load ``root/<class>/<images>`` as a few-shot dataset split by class (see module docstring)."""
    if channels not in (1, 3):
        raise UserError(f"data.channels is {channels!r}; it must be 1 (grey) or 3 (RGB).")
    root = files.existing_root(root, "one sub-folder of images per class")
    names = files.class_folders(root)
    if not names:
        raise UserError(f"data.root '{root}' has no class folders with images (looked for sub-folders "
                        "holding .jpg, .jpeg, .png, .bmp or .webp files); put each class's images in "
                        "its own sub-folder of data.root.")
    splits = resolve_split(names, split or DEFAULT_SPLIT, split_seed)
    class_files = [(n, files.image_files(os.path.join(root, n))) for n in names]
    images, labels, moments, cache = files.load_class_images("imagefolder", root, class_files,
                                                             image_size, channels, cache_dir)
    mean, std = files.mean_std(moments, splits["train"])
    return FewShotDataset(torch.from_numpy(images), torch.from_numpy(labels), names, splits,
                          mean=mean, std=std, name="imagefolder", cache_path=cache)


def _kind(split: str, value):
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "names"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return "count"
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return "fraction"
    raise UserError(f"data.split.{split} is {value!r}; it must be a list of class names, "
                    "a positive number of classes or a fraction in (0, 1].")


def resolve_split(names: list[str], split: dict, seed: int) -> dict[str, list[int]]:
    """Class ids of every split from a ``data.split`` mapping (see module docstring)."""
    if not isinstance(split, dict):
        raise UserError(f"data.split is {split!r}; it must map train, val and test to class lists, counts or fractions.")
    unknown = sorted(set(split) - set(SPLITS))
    missing = [s for s in SPLITS if s not in split]
    if unknown or missing:
        what = f"unknown key '{unknown[0]}'" if unknown else f"no '{missing[0]}' entry"
        raise UserError(f"data.split has {what}; it must give exactly train, val and test.")
    kinds = {s: _kind(s, split[s]) for s in SPLITS}
    index = {n: i for i, n in enumerate(names)}
    chosen: dict[str, list[int]] = {}
    owner: dict[str, str] = {}
    for s in SPLITS:
        if kinds[s] != "names":
            continue
        for n in split[s]:
            if n not in index:
                raise UserError(f"data.split.{s} names class {n!r}, which is not a class folder of data.root "
                                f"({len(names)} classes, e.g. {', '.join(names[:3])}).")
            if n in owner:
                raise UserError(f"data.split names class {n!r} in both {owner[n]} and {s}; "
                                "each class may be in one split only.")
            owner[n] = s
        chosen[s] = [index[n] for n in split[s]]

    rest = [i for i, n in enumerate(names) if n not in owner]
    rest = [rest[j] for j in np.random.default_rng(seed).permutation(len(rest))]
    counted = sum(split[s] for s in SPLITS if kinds[s] == "count")
    if counted > len(rest):
        raise UserError(f"data.split asks for {counted} classes by count, but only {len(rest)} of the "
                        f"{len(names)} classes are left after the named lists; lower the counts.")
    fractions = [s for s in SPLITS if kinds[s] == "fraction"]
    total = sum(split[s] for s in fractions)
    if total > 1.0 + 1e-9:
        raise UserError(f"data.split fractions add up to {total:g}; they must add up to at most 1.")
    # fractions share what the counts leave, cut at rounded cumulative boundaries so they sum exactly
    left, cum, prev, take = len(rest) - counted, 0.0, 0, {}
    for s in fractions:
        cum += split[s]
        bound = min(left, int(math.floor(cum * left + 0.5 + 1e-9)))
        take[s], prev = bound - prev, bound
    start = 0
    for s in SPLITS:
        if kinds[s] == "names":
            continue
        n = split[s] if kinds[s] == "count" else take[s]
        chosen[s] = rest[start:start + n]
        start += n
    for s in SPLITS:
        if not chosen[s]:
            raise UserError(f"data.split.{s} gets no classes ({len(names)} classes in data.root); "
                            "give it a larger fraction, a count or a list of class names.")
    return {s: sorted(chosen[s]) for s in SPLITS}
