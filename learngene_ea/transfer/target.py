"""Source and target: which data the learngene came from, which data it is tested on.

The *source* is the data the learngene was evolved on: recorded in ``learngene.pt`` (its
``meta["data"]``), else in its run folder's ``config.yaml``, else the recipe's ``data``. The
*target* is ``transfer.target`` when set (every class a test class unless its split names test
classes), else the recipe's own ``data`` and its test split, as before targets existed.

Images whose channels differ from the learngene's are converted, not refused: grey to RGB by
repeating the channel, RGB to grey by luminance (ITU-R 601 weights, those PIL uses when an
image folder is decoded with ``channels: 1``), so the result is the one the user would get by
setting ``transfer.target.channels``, without a retyped command. A note says so.
"""
from __future__ import annotations

import dataclasses
import os

import torch
import yaml

from ..config.loading import from_dict
from ..config.schema import Config, ConfigError, DataConfig
from ..data import load_dataset
from ..data.base import FewShotDataset
from ..data.files import class_moments, mean_std
from ..errors import UserError

LUMINANCE = (0.299, 0.587, 0.114)
IMAGE_KEYS = ("name", "root", "image_size", "channels")  # what changes the images of any dataset
SYNTHETIC_IMAGE_KEYS = ("seed", "images_per_class")  # ... and of the synthetic one


def data_section(values) -> DataConfig | None:
    """A recorded ``data`` mapping as a :class:`DataConfig` (keys it no longer knows are dropped); None if unusable."""
    if not isinstance(values, dict):
        return None
    known = {f.name for f in dataclasses.fields(DataConfig)}
    try:
        return from_dict({"data": {k: v for k, v in values.items() if k in known}}).data
    except ConfigError:
        return None


def source_data(cfg: Config, learngene, run_dir: str) -> tuple[DataConfig, str]:
    """The source's data section and where it was found (see module docstring).

    Without a target the recipe's ``data`` is the source too (the behaviour before targets).
    """
    if cfg.transfer.target is None:
        return cfg.data, "the recipe's data"
    recorded = data_section(learngene.meta.get("data"))
    if recorded is not None:
        return recorded, "recorded in the learngene file"
    path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                section = data_section((yaml.safe_load(f) or {}).get("data"))
        except (OSError, ValueError, yaml.YAMLError, AttributeError):  # ValueError: not UTF-8
            section = None
        if section is not None:
            return section, f"the run folder's {path}"
    return cfg.data, "the recipe's data"


def target_data(cfg: Config) -> tuple[DataConfig, str]:
    """The data the test episodes come from and the recipe key that names it."""
    if cfg.transfer.target is not None:
        return cfg.transfer.target, "transfer.target"
    return cfg.data, "data"


def pretrain_data(cfg: Config, learngene, target: FewShotDataset, run_dir: str) -> tuple[DataConfig, FewShotDataset]:
    """The data the pre-trained baselines learn from (its section and dataset): the source's training
    classes (``transfer.pretrain_on: source``; see :func:`source_data`) or those of ``target``, the
    episodes' dataset (``target``)."""
    if cfg.transfer.pretrain_on == "target":
        data, key = target_data(cfg)
        if not target.splits["train"]:
            raise ConfigError(f"'transfer.pretrain_on' is 'target' but {key} has no training classes; give "
                              f"{key}.split a train entry (e.g. {{train: 0.5, test: 0.5}}), or pretrain on the "
                              "source.")
        return data, target
    data, found_in = source_data(cfg, learngene, run_dir)
    try:
        return data, match_channels(load_dataset(data), learngene.in_channels)
    except UserError as err:  # its keys are the source's, not the user's: say whose they are
        where = f"{found_in}: {data.name}" + (f" at {data.root!r}" if data.root else "")
        raise UserError(f"The source data the pre-trained baseline trains on ({where}) cannot be loaded "
                        f"({str(err).rstrip('.')}); pass --pretrained FILE or set "
                        "transfer.pretrain_on=target.") from err


def match_channels(dataset: FewShotDataset, channels: int) -> FewShotDataset:
    """``dataset`` with ``channels``-channel images: grey repeated to RGB, RGB to grey by luminance.

    The normalisation statistics are those of the converted images (of the training classes,
    else of every class). The same dataset when it already has ``channels``.
    """
    if dataset.channels == channels:
        return dataset
    if channels == 3:
        images = dataset.images.expand(-1, 3, -1, -1).contiguous()
    else:
        images = torch.empty((dataset.images.shape[0], 1, *dataset.images.shape[2:]), dtype=torch.uint8)
        weights = torch.tensor(LUMINANCE).view(1, 3, 1, 1)
        for start in range(0, len(images), 4096):  # in chunks: float copies of a whole dataset are large
            chunk = (dataset.images[start:start + 4096].float() * weights).sum(1, keepdim=True)
            images[start:start + 4096] = chunk.round().clamp(0, 255).to(torch.uint8)
    moments = class_moments(images.numpy(), dataset.labels.numpy(), len(dataset.class_names))  # exact, chunked
    mean, std = mean_std(moments, dataset.splits["train"] or range(len(dataset.class_names)))
    return dataclasses.replace(dataset, images=images, mean=mean, std=std, _by_class=None)


def channel_note(dataset: FewShotDataset, channels: int, key: str) -> str | None:
    """The one line saying that ``dataset``'s images are converted to ``channels`` (None when they are not)."""
    if dataset.channels == channels:
        return None
    how = "repeating the grey channel" if channels == 3 else "luminance 0.299 R + 0.587 G + 0.114 B"
    same = f", as {key}.channels={channels} would" if dataset.name == "imagefolder" else ""
    return (f"note: the learngene reads {channels}-channel images and {key} has {dataset.channels}; converting "
            f"them ({how}){same}")


def load_target(cfg: Config, in_channels: int, log=None) -> FewShotDataset:
    """The dataset of the test episodes, with the learngene's ``in_channels`` (see :func:`match_channels`).

    ``log``, when given, gets the one line saying that the images are converted.
    """
    data, key = target_data(cfg)
    raw = load_dataset(data, target=key == "transfer.target")
    note = channel_note(raw, in_channels, key)
    if note and log is not None:
        log(note)
    return match_channels(raw, in_channels)


def image_differences(source: DataConfig, other: DataConfig, key: str) -> list[str]:
    """What differs between two data sections in ways that change the images, as ``key.k a -> b`` phrases."""
    keys = IMAGE_KEYS + (SYNTHETIC_IMAGE_KEYS if source.name == other.name == "synthetic" else ())
    found = []
    for k in keys:
        a, b = getattr(source, k), getattr(other, k)
        if k == "root" and a and b:
            a, b = os.path.abspath(os.path.expanduser(a)), os.path.abspath(os.path.expanduser(b))
        if a != b:
            found.append(f"{key}.{k} {getattr(other, k)!r} (source: {getattr(source, k)!r})")
    return found


def differences_from_source(learngene, source: DataConfig, data: DataConfig, key: str) -> list[str]:
    """What changes the images between the data the learngene was evolved on and ``data`` (see
    :func:`image_differences`): its recorded data section, else ``source``; a learngene that
    records only its dataset's name is compared by name."""
    recorded = learngene.meta.get("data")
    if not recorded and learngene.meta.get("dataset"):
        name = learngene.meta["dataset"]
        return [] if name == data.name else [f"{key}.name {data.name!r} (source: {name!r})"]
    return image_differences(data_section(recorded) or source, data, key)


def with_resolved_augment(cfg: Config) -> tuple[Config, str]:
    """``cfg`` with ``transfer.augment`` set: as given, else the ``augment`` of the data fine-tuned on.

    Returns the config and the key the value came from.
    """
    if cfg.transfer.augment is not None:
        return cfg, "transfer.augment"
    data, key = target_data(cfg)
    transfer = dataclasses.replace(cfg.transfer, augment=data.augment)
    return dataclasses.replace(cfg, transfer=transfer), f"{key}.augment"


def describe_data(data: DataConfig, dataset: FewShotDataset | None, found_in: str, splits=("train", "test")) -> dict:
    """The ``source``/``target`` entry of ``transfer.json``: name, root and the class counts used."""
    entry = {"name": data.name, "root": data.root, "image_size": data.image_size, "channels": data.channels,
             "found_in": found_in}
    if dataset is not None:
        entry["classes"] = len(dataset.class_names)
        for split in splits:
            ids = dataset.splits[split]
            entry[f"{split}_classes"] = len(ids)
            if split == "test":
                entry["test_class_names"] = [dataset.class_names[i] for i in ids]
    return entry
