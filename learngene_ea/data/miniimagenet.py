"""miniImageNet: 100 ImageNet classes, 600 images each, the 64/16/20 split of Ravi & Larochelle (2017).

``data.root`` may hold either layout:

1. Ravi & Larochelle: ``train.csv``, ``val.csv``, ``test.csv`` (header ``filename,label``,
   label = wnid such as ``n01532829``) and the images in ``images/`` (``images/<filename>``,
   or ``images/<wnid>/<filename>``). Images are decoded, resized to ``image_size`` and cached.
2. The common pickle caches ``mini-imagenet-cache-{train,val,test}.pkl``, each a dict with
   ``image_data`` (uint8 ``[N, 84, 84, 3]``) and ``class_dict`` (wnid -> list of row indices).
   Resized (and then cached) only when ``image_size`` differs from the stored size.

When both are present the CSV layout is used. Class ids run over the train, then val, then
test classes, each sorted by wnid; a class keeps its images in CSV-row (or ``class_dict``)
order. Given the same images, both layouts therefore give the same dataset.
"""
from __future__ import annotations

import csv
import io
import os

import numpy as np
import torch

from ..errors import UserError
from ..io.paths import read_text
from ..io.safe_pickle import load_data_pickle
from . import files
from .base import SPLITS, FewShotDataset

_LOOKED_FOR = "miniImageNet (train.csv, val.csv, test.csv + images/, or mini-imagenet-cache-*.pkl)"


def load_miniimagenet(root, image_size: int = 84, cache_dir=None, key: str = "data") -> FewShotDataset:
    """Load miniImageNet from either layout of the module docstring, as RGB ``image_size`` squares.

    ``key``: the recipe section that names ``root`` (``data`` or ``transfer.target``), for errors.
    """
    root = files.existing_root(root, _LOOKED_FOR, key)
    csvs = [os.path.join(root, f"{s}.csv") for s in SPLITS]
    pickles = [os.path.join(root, f"mini-imagenet-cache-{s}.pkl") for s in SPLITS]
    if all(map(os.path.isfile, csvs)) and os.path.isdir(os.path.join(root, "images")):
        split_of, names, images, labels, moments, cache = _from_csv(root, csvs, image_size, cache_dir)
    elif all(map(os.path.isfile, pickles)):
        split_of, names, images, labels, moments, cache = _from_pickles(root, pickles, image_size, cache_dir)
    else:
        raise UserError(f"data.root '{root}' has no miniImageNet files (looked for train.csv, val.csv, "
                        "test.csv with images/, and for mini-imagenet-cache-{train,val,test}.pkl); "
                        "set data.root to the folder holding them.")
    splits = {s: [i for i, si in enumerate(split_of) if si == s] for s in SPLITS}
    if moments is None:  # train ids come first and images are grouped by class
        mean, std = files.leading_mean_std(images, labels, len(splits["train"]))
    else:
        mean, std = files.mean_std(moments, splits["train"])
    return FewShotDataset(torch.from_numpy(images), torch.from_numpy(labels), names, splits,
                          mean=mean, std=std, name="miniimagenet", cache_path=cache)


def _check_disjoint(per_split: dict[str, list[str]], where: str) -> None:
    seen = {}
    for split in SPLITS:
        for wnid in per_split[split]:
            if wnid in seen:
                raise UserError(f"miniImageNet class {wnid!r} is in both the {seen[wnid]} and {split} "
                                f"split ({where}); each class must be in exactly one.")
            seen[wnid] = split


def _read_csv(path: str) -> dict[str, list[str]]:
    """``wnid -> [filename, ...]`` in row order."""
    text = read_text(path, "miniImageNet file")  # one sentence for a folder, fifo, link loop or other encoding
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise UserError(f"miniImageNet file '{path}' cannot be read ({err}); restore it.") from err
    if not rows or [c.strip() for c in rows[0][:2]] != ["filename", "label"]:
        raise UserError(f"miniImageNet file '{path}' must start with the header 'filename,label'; restore it.")
    by_class: dict[str, list[str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2:
            raise UserError(f"miniImageNet file '{path}' line {number} is not 'filename,label'; fix or restore it.")
        by_class.setdefault(row[1].strip(), []).append(row[0].strip())
    return by_class


def _from_csv(root, csvs, image_size, cache_dir):
    images_dir = os.path.join(root, "images")
    flat = set(os.listdir(images_dir))
    tables = {s: _read_csv(p) for s, p in zip(SPLITS, csvs)}
    _check_disjoint({s: list(t) for s, t in tables.items()}, "CSV files")
    split_of, class_files = [], []
    for split, csv_path in zip(SPLITS, csvs):
        for wnid in sorted(tables[split]):
            nested = os.path.join(images_dir, wnid)
            paths = []
            for name in tables[split][wnid]:
                path = os.path.join(images_dir, name) if name in flat else os.path.join(nested, name)
                if name not in flat and not os.path.isfile(path):
                    raise UserError(f"miniImageNet image '{name}' listed in '{csv_path}' is in neither "
                                    f"'{images_dir}' nor '{nested}'; restore the image files.")
                paths.append(path)
            split_of.append(split)
            class_files.append((wnid, paths))
    images, labels, moments, cache = files.load_class_images("miniimagenet", root, class_files,
                                                             image_size, 3, cache_dir)
    return split_of, [w for w, _ in class_files], images, labels, moments, cache


def _read_cache_pickle(path: str) -> tuple[np.ndarray, dict[str, list[int]]]:
    try:
        with open(path, "rb") as f:  # only plain data and arrays are admitted
            obj = load_data_pickle(f, f"miniImageNet file '{path}'", UserError)
    except UserError:  # a global that could run code: already one sentence naming the file
        raise
    except Exception as err:  # any other unpickling failure means a damaged or foreign file
        raise UserError(f"miniImageNet file '{path}' cannot be read as a pickle "
                        f"({type(err).__name__}: {err}); restore it.") from err
    if isinstance(obj, dict):
        obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if not isinstance(obj, dict) or "image_data" not in obj or not isinstance(obj.get("class_dict"), dict):
        raise UserError(f"miniImageNet file '{path}' is not a dict with 'image_data' and 'class_dict'; restore it.")
    data = np.asarray(obj["image_data"])
    if data.dtype != np.uint8 or data.ndim != 4 or data.shape[-1] != 3:
        raise UserError(f"miniImageNet file '{path}' holds image_data of shape {data.shape} ({data.dtype}), "
                        "not uint8 [N, H, W, 3]; restore it.")
    classes = {(k.decode("latin1") if isinstance(k, bytes) else str(k)): [int(i) for i in v]
               for k, v in obj["class_dict"].items()}
    bad = [k for k, v in classes.items() if any(i < 0 or i >= len(data) for i in v)]
    if bad:
        raise UserError(f"miniImageNet file '{path}' lists rows of class {bad[0]!r} beyond its "
                        f"{len(data)} images; restore it.")
    return data, classes


def _from_pickles(root, pickles, image_size, cache_dir):
    parts = {s: _read_cache_pickle(p) for s, p in zip(SPLITS, pickles)}
    _check_disjoint({s: list(parts[s][1]) for s in SPLITS}, "pickle caches")
    split_of, names, rows = [], [], []
    for split in SPLITS:
        data, classes = parts[split]
        for wnid in sorted(classes):
            split_of.append(split)
            names.append(wnid)
            rows.append((data, np.asarray(classes[wnid], dtype=np.int64)))
    labels = np.repeat(np.arange(len(names)), [len(r) for _, r in rows]).astype(np.int64)
    stored = {parts[s][0].shape[1:3] for s in SPLITS}
    if stored == {(image_size, image_size)}:
        images = np.empty((len(labels), 3, image_size, image_size), dtype=np.uint8)
        offsets = np.cumsum([0] + [len(r) for _, r in rows])
        for (data, r), start in zip(rows, offsets):
            images[start:start + len(r)] = data[r].transpose(0, 3, 1, 2)  # one class at a time: no big copies
        return split_of, names, images, labels, None, None  # stored size: nothing decoded, nothing cached

    def build():
        resized = np.empty((len(labels), 3, image_size, image_size), dtype=np.uint8)
        flat = ((data, i) for data, r in rows for i in r)
        for j, (source, i) in enumerate(flat):
            resized[j] = files.resize_array(source[i], image_size)
        return {"images": resized, "labels": labels, **files.class_moments(resized, labels, len(names))}

    params = {"size": image_size, "classes": names, "counts": [len(r) for _, r in rows]}
    arrays, cache = files.cached(f"miniimagenet-pkl-{image_size}px-3ch", root, pickles, params, build, cache_dir)
    moments = {k: arrays[k] for k in ("class_sum", "class_sumsq", "class_pixels")}
    return split_of, names, arrays["images"], arrays["labels"], moments, cache
