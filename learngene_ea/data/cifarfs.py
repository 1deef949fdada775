"""CIFAR-FS: CIFAR-100 split by class into 64 train / 16 val / 20 test classes (Bertinetto et al. 2019).

Every class keeps all 600 of its 32x32 images. ``data.root`` may hold any of these layouts:

1. CIFAR-100 "python version": the folder ``cifar-100-python/`` (files ``train``, ``test``,
   ``meta``) or its parent. The split is the standard one shipped with this package
   (``splits/cifarfs_{train,val,test}.txt``); the 500 + 100 images of each class come from
   the ``train`` and ``test`` pickles.
2. Already split into class folders: ``train/<class>/*.png``, ``val/<class>/*.png``,
   ``test/<class>/*.png``.
3. The R2D2 / learn2learn release: ``splits/bertinetto/{train,val,test}.txt`` (one class name
   a line) with ``data/<class>/*.png``; ``root`` may also be the parent of ``cifar100/``.

Class ids run over the train, then val, then test classes, each sorted by name, whatever the
layout. The folder layouts are decoded once and cached (see :mod:`.files`).
"""
from __future__ import annotations

import importlib.resources
import os

import numpy as np
import torch

from ..errors import UserError
from ..io.paths import read_text
from ..io.safe_pickle import load_data_pickle
from . import files
from .base import SPLITS, FewShotDataset

_LOOKED_FOR = "the CIFAR-100 python files or a CIFAR-FS folder"


def packaged_split() -> dict[str, list[str]]:
    """The standard CIFAR-FS class names of each split, as shipped in ``splits/``."""
    folder = importlib.resources.files("learngene_ea.data").joinpath("splits")
    return {s: folder.joinpath(f"cifarfs_{s}.txt").read_text().split() for s in SPLITS}


def load_cifarfs(root, cache_dir=None, key: str = "data") -> FewShotDataset:
    """Load CIFAR-FS from any of the layouts in the module docstring (32x32 RGB, uint8).

    ``key``: the recipe section that names ``root`` (``data`` or ``transfer.target``), for errors.
    """
    root = files.existing_root(root, _LOOKED_FOR, key)
    for base in (root, os.path.join(root, "cifar-100-python"), os.path.join(root, "cifar100")):
        if all(os.path.isfile(os.path.join(base, f)) for f in ("train", "test", "meta")):
            return _from_pickles(base)
        if all(os.path.isdir(os.path.join(base, s)) for s in SPLITS):
            return _from_folders(base, {s: (os.path.join(base, s), None) for s in SPLITS}, cache_dir)
        lists = [os.path.join(base, "splits", "bertinetto", f"{s}.txt") for s in SPLITS]
        if os.path.isdir(os.path.join(base, "data")) and all(os.path.isfile(p) for p in lists):
            data = os.path.join(base, "data")
            return _from_folders(base, {s: (data, _read_names(p)) for s, p in zip(SPLITS, lists)}, cache_dir)
    raise UserError(
        f"data.root '{root}' has no CIFAR-FS data (looked for cifar-100-python/train, test, meta; "
        "for train/, val/, test/ class folders; and for splits/bertinetto/*.txt with data/<class>/); "
        "download CIFAR-100 'python version' and set data.root to the extracted folder.")


def _read_names(path: str) -> list[str]:
    text = read_text(path, "CIFAR-FS split list")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _class_order(split_names: dict[str, list[str]]) -> tuple[list[str], dict[str, list[int]]]:
    """Global class names (train, val, test; each sorted) and the class ids of every split."""
    names, splits = [], {}
    for split in SPLITS:
        ids = sorted(split_names[split])
        splits[split] = list(range(len(names), len(names) + len(ids)))
        names += ids
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"CIFAR-FS class {dup[0]!r} is in more than one split; each class must be in exactly one.")
    return names, splits


def _read_pickle(path: str) -> dict:
    try:
        with open(path, "rb") as f:  # written by Python 2; only plain data and arrays are admitted
            obj = load_data_pickle(f, f"CIFAR-100 file '{path}'", UserError)
    except UserError:  # a global that could run code: already one sentence naming the file
        raise
    except Exception as err:  # any other unpickling failure means a damaged or foreign file
        raise UserError(f"CIFAR-100 file '{path}' cannot be read as a pickle ({type(err).__name__}: {err}); "
                        "download the CIFAR-100 'python version' again.") from err
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-100 file '{path}' does not hold a dictionary; "
                        "download the CIFAR-100 'python version' again.")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _pickle_part(path: str) -> tuple[np.ndarray, np.ndarray]:
    part = _read_pickle(path)
    if "data" not in part or "fine_labels" not in part:
        raise UserError(f"CIFAR-100 file '{path}' lacks the 'data' or 'fine_labels' entry; "
                        "download the CIFAR-100 'python version' again.")
    data = np.asarray(part["data"])
    labels = np.asarray(part["fine_labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise UserError(f"CIFAR-100 file '{path}' holds data of shape {data.shape} ({data.dtype}) and "
                        f"{len(labels)} labels, not N x 3072 uint8 with N labels; download it again.")
    return data, labels


def _from_pickles(base: str) -> FewShotDataset:
    meta = _read_pickle(os.path.join(base, "meta"))
    fine = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta.get("fine_label_names", [])]
    split_names = packaged_split()
    missing = [n for s in SPLITS for n in split_names[s] if n not in fine]
    if missing:
        raise UserError(f"CIFAR-100 file '{os.path.join(base, 'meta')}' has no fine label {missing[0]!r} "
                        f"({len(missing)} CIFAR-FS classes missing); is this CIFAR-100 (not CIFAR-10)?")
    names, splits = _class_order(split_names)
    parts = [_pickle_part(os.path.join(base, f)) for f in ("train", "test")]
    data = np.concatenate([p[0] for p in parts])
    fine_labels = np.concatenate([p[1] for p in parts])
    if fine_labels.size and (fine_labels.min() < 0 or fine_labels.max() >= len(fine)):
        raise UserError(f"CIFAR-100 files in '{base}' have fine labels outside 0..{len(fine) - 1}; download them again.")
    lookup = np.array([names.index(n) for n in fine], dtype=np.int64)
    labels = lookup[fine_labels]
    order = np.argsort(labels, kind="stable")  # group by class: 500 train-file then 100 test-file images
    images = data[order].reshape(-1, 3, 32, 32)  # rows are channel-major: R plane, G plane, B plane
    labels = labels[order]
    mean, std = files.leading_mean_std(images, labels, len(splits["train"]))  # train ids come first
    return FewShotDataset(torch.from_numpy(images), torch.from_numpy(labels), names, splits,
                          mean=mean, std=std, name="cifarfs", cache_path=None)


def _from_folders(base: str, where: dict, cache_dir) -> FewShotDataset:
    """Class folders; ``where[split] = (folder, class names or None for every sub-folder)``."""
    split_names = {}
    for split, (folder, wanted) in where.items():
        found = files.class_folders(folder)
        if wanted is None:
            wanted = found
        missing = [n for n in wanted if n not in found]
        if missing:
            raise UserError(f"CIFAR-FS class folder '{os.path.join(folder, missing[0])}' ({split} split) "
                            "is missing or holds no images; restore it or fix the split list.")
        if not wanted:
            raise UserError(f"CIFAR-FS folder '{folder}' has no class folders with images for the "
                            f"{split} split; check data.root.")
        split_names[split] = wanted
    names, splits = _class_order(split_names)
    folder_of = {n: where[s][0] for s in SPLITS for n in split_names[s]}
    class_files = [(n, files.image_files(os.path.join(folder_of[n], n))) for n in names]
    images, labels, moments, cache = files.load_class_images("cifarfs", base, class_files, 32, 3, cache_dir)
    mean, std = files.mean_std(moments, splits["train"])
    return FewShotDataset(torch.from_numpy(images), torch.from_numpy(labels), names, splits,
                          mean=mean, std=std, name="cifarfs", cache_path=cache)
