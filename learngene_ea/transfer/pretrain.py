"""The pre-trained baseline: the whole network trained on all training classes, cached by its key.

The ``pretrained``, ``random-learngene``, ``l1-learngene`` and ``layerwise`` rows take their
weights from it. It learns from as many training images as every descendant of the evolution
together (equal compute; ``transfer.pretrain_images`` sets another number), with the recipe's
task optimiser, on the training classes of the source (the data the learngene was evolved on)
or of the transfer's target (``transfer.pretrain_on``), and is cached under its key
(:func:`pretrain_key`; see :mod:`.cache`); ``--pretrained`` gives a network instead
(:func:`given_pretrained`). A final loss near chance is reported: the rows built on it would
compare the learngene with a network that learned nothing.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..config.schema import Config
from ..data.base import FewShotDataset
from ..errors import UserError
from ..io.paths import file_problem
from ..core.backbone import Backbone
from ..core.models import build_model
from ..core.traced import is_traced, traced
from ..reports.files import plural
from ..fewshot.sampling import training_classes_task
from ..fewshot.training import TrainSettings, closing_observer, train_on_task
from .cache import cache_file, find_cached, network_structure, write_cached
from ..core.traced import arch_label
from .episodes import pretrain_seed

PRETRAINED_FORMAT = "learngene-ea/pretrained-v1"
PRETRAINED_FILE = "pretrained.pt"  # the unkeyed cache of earlier versions: no longer read or written (.cache)


NEAR_CHANCE = 0.9  # a final loss above this share of ln(classes) is near chance


def pretrain_steps(cfg: Config, dataset: FewShotDataset, evolution_images: int | None) -> tuple[int, str]:
    """Steps of the pre-trained baseline, and what decided them.

    ``transfer.pretrain_images`` when set; else the evolution's training images
    (``evolution_images``, equal compute); else ``transfer.pretrain_epochs`` epochs over the
    training classes (a learngene that does not record its compute).
    """
    batch = cfg.task.batch_size
    if cfg.transfer.pretrain_images:
        return math.ceil(cfg.transfer.pretrain_images / batch), "transfer.pretrain_images"
    if evolution_images:
        return math.ceil(evolution_images / batch), "equal compute: the evolution's training images"
    images = sum(len(dataset.indices_of_class(c)) for c in dataset.splits["train"])
    return cfg.transfer.pretrain_epochs * math.ceil(images / batch), "transfer.pretrain_epochs"


def pretrain_key(cfg: Config, family: str, width: float, in_channels: int, steps: int, data_cfg=None,
                 trained_on: str = "source") -> dict:
    """Everything a pre-trained network's weights depend on: model and its structure, data (``data_cfg``, default
    ``cfg.data``; its root made absolute), what it trained on, steps, optimiser and seed."""
    data = json.loads(json.dumps(dataclasses.asdict(data_cfg or cfg.data)))
    if data.get("root"):
        data["root"] = os.path.abspath(os.path.expanduser(data["root"]))
    return {
        "format": PRETRAINED_FORMAT, "family": family, "width": float(width), "in_channels": int(in_channels),
        "structure": network_structure(family, width, in_channels),  # the factory as it is now, not its name
        "data": data, "trained_on": trained_on,
        "steps": int(steps), "lr": cfg.task.lr, "batch_size": cfg.task.batch_size,
        "weight_decay": cfg.task.weight_decay, "augment": data["augment"], "seed": cfg.transfer.seed,
        # bf16 training changes the weights beyond float noise (fp32 keys stay as they were)
        **({"precision": cfg.runtime.precision} if cfg.runtime.precision != "fp32" else {}),
    }


@dataclass(frozen=True)
class Arch:
    """A network's family, width and image channels: the pre-trained baseline is the learngene's own."""

    family: str
    width: float
    in_channels: int = 3

    @classmethod
    def of(cls, learngene) -> "Arch":
        return cls(learngene.family, learngene.width, learngene.in_channels)


@dataclass
class PretrainSource:
    """What a pre-trained network learns from and where its cache is looked for besides ``cache_dir``.

    ``data_cfg``: the data section describing its dataset (default ``cfg.data``); ``trained_on``:
    ``source`` or ``target``; ``evolution_images``: the evolution's training images (equal
    compute, see :func:`pretrain_steps`); ``also_look_in``: folders read for a cached copy;
    ``progress``: the command's bar factory (``progress(iterable, total, desc, unit=...)``, tqdm-like),
    which shows the training's steps, or None (``--quiet``).
    """

    data_cfg: object = None
    trained_on: str = "source"
    evolution_images: int | None = None
    also_look_in: tuple = ()
    progress: object = None


@dataclass(frozen=True)
class CacheFolders:
    """Where a transfer's pre-trained networks are cached (``cache_dir``) and also looked for: ``run_dir``, the
    learngene's run folder, whose cached networks are reused when their key matches."""

    run_dir: str
    cache_dir: str

    def also_look_in(self) -> tuple:
        """The run folder, unless it is the cache folder (:attr:`PretrainSource.also_look_in`)."""
        return (self.run_dir,) if os.path.abspath(self.run_dir) != os.path.abspath(self.cache_dir) else ()


def pretrain_network(cfg: Config, dataset: FewShotDataset, arch: Arch, device, settings: TrainSettings,
                     seed: int | None = None, observe=None) -> tuple[Backbone, dict]:
    """Supervised training of the full network on ALL training classes (never val/test images).

    ``settings``: the descendants' task optimiser (``TrainSettings.of_task(cfg, steps, augment)``:
    ``task.lr``, ``task.batch_size``, ``task.weight_decay``, SGD momentum 0.9 + cosine decay) for its
    steps, batches drawn from every image of every training class; initialisation and batches from
    ``seed`` (default: the pre-trained baseline's, from ``transfer.seed``); ``observe`` as
    :func:`~learngene_ea.fewshot.training.train_stacked`'s (a progress bar).
    """
    start, steps = time.perf_counter(), settings.steps
    task = training_classes_task(dataset)
    classes, indices = task.class_ids, task.indices
    seed = pretrain_seed(cfg.transfer.seed) if seed is None else seed
    model = build_model(arch.family, arch.width, arch.in_channels, len(classes), seed=seed, device=device)
    loss = train_on_task(model, dataset, task, settings, seed, device, observe)
    chance = math.log(len(classes))
    info = {"classes": len(classes), "images": int(len(indices)), "steps": steps,
            "training_images": steps * cfg.task.batch_size, "epochs": steps * cfg.task.batch_size / len(indices),
            "final_loss": loss, "chance_loss": chance, "near_chance": bool(loss > NEAR_CHANCE * chance),
            "seconds": time.perf_counter() - start, "seed": seed}
    return model, info


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict on the CPU (to cache it or to share it with SCOOP workers)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def pretrained_from_state(state_dict: dict, family: str, width: float, in_channels: int, device) -> Backbone:
    """The pre-trained network with ``state_dict``'s weights (its head as wide as the state's)."""
    model = build_model(family, width, in_channels, int(state_dict["head.weight"].shape[0]), device=device)
    model.load_state_dict(state_dict)
    return model


def load_or_pretrain(cfg: Config, dataset: FewShotDataset, arch: Arch, cache_dir: str, device, log=print,
                     source: PretrainSource | None = None) -> tuple[Backbone, dict]:
    """The cached pre-trained network whose key matches, else train it and cache it in ``cache_dir``.

    ``dataset`` (described by ``source.data_cfg``, default ``cfg.data``) gives the training
    classes; see :class:`PretrainSource`. The cache is looked up in ``cache_dir``, then in the
    folders ``source.also_look_in`` (read only; see :mod:`.cache`). The returned info says how
    long it trained and why, and where it is cached.
    """
    source = source or PretrainSource()
    family, width, in_channels = arch.family, arch.width, arch.in_channels
    data_cfg, trained_on, evolution_images = source.data_cfg or cfg.data, source.trained_on, source.evolution_images
    steps, decided_by = pretrain_steps(cfg, dataset, evolution_images)
    budget = {"evolution_training_images": evolution_images, "steps_decided_by": decided_by, "trained_on": trained_on}
    key = pretrain_key(cfg, family, width, in_channels, steps, data_cfg, trained_on)
    found = find_cached(key, [cache_dir, *source.also_look_in], log)
    if found is not None:
        state, path = found
        model = pretrained_from_state(state["state_dict"], family, width, in_channels, device)
        log(f"pre-trained baseline: reusing {path}")
        warn_near_chance(state["info"], log)
        return model, {**state["info"], **budget, "path": path, "reused": True}
    path = cache_file(cache_dir, key)
    classes = len(dataset.splits["train"])
    log(f"pre-trained baseline: training {arch_label(family, width)} on all {classes} training "
        f"{'class' if classes == 1 else 'classes'} of the {trained_on} for {plural(steps, 'step')} "
        f"({steps * cfg.task.batch_size:,} images; {decided_by})")
    with closing_observer(source.progress, steps, "pre-trained baseline") as observe:
        model, info = pretrain_network(cfg, dataset, arch, device, TrainSettings.of_task(cfg, steps, data_cfg.augment),
                                       observe=observe)
    images = sum(len(dataset.indices_of_class(c)) for c in dataset.splits["train"])
    if images < cfg.task.batch_size:
        log(f"warning: the pre-trained baseline's batches hold its {images} training images, fewer than "
            f"'task.batch_size' ({cfg.task.batch_size})")
    log(f"pre-trained baseline: {plural(info['steps'], 'step')} ({info['epochs']:.2f} epochs), final loss "
        f"{info['final_loss']:.3f}, {info['seconds']:.0f}s")
    warn_near_chance(info, log)
    write_cached(path, {"format": PRETRAINED_FORMAT, "key": key, "info": info, "state_dict": cpu_state(model)}, log)
    return model, {**info, **budget, "path": path, "reused": False}


def given_pretrained(path: str, family: str, width: float, in_channels: int, device,
                     flag: str = "--pretrained") -> tuple[Backbone, dict]:
    """The network whose state dict is the file ``path`` (``--pretrained``), checked against the learngene's.

    The file holds a state dict (or a mapping with one under ``state_dict``, as cached networks
    do; for a traced network also the network's own, as torchvision saves it), read with ``weights_only=True``; every backbone tensor of a ``family``/``width`` network
    reading ``in_channels``-channel images must be there with its shape. Its head, when it has
    one of the right width, is kept; the rows never use it. ``flag`` names the option in messages.
    """
    arch = f"{arch_label(family, width)} network reading {in_channels}-channel images"
    fix = (f"pass the state dict of a {family} network with model.width {width:g} and {in_channels} image "
           "channels (the learngene's).")
    problem = file_problem(path)
    if problem:  # a folder or a fifo is "not a regular file", not "does not exist"
        raise UserError(f"{flag} {path!r} {problem}; {fix}")
    try:
        with warnings.catch_warnings():  # torch's note on checking a sparse tensor: it is refused below
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{flag} {path!r} cannot be read as a state dict ({type(err).__name__}); {fix}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{flag} {path!r} does not hold a state dict (names to tensors); {fix}")
    named = [name for name in state if not isinstance(name, str)]
    if named:
        raise UserError(f"{flag} {path!r} has a key that is not a tensor's name ({named[0]!r}); {fix}")
    if is_traced(family) and not any(name.startswith("net.") for name in state):
        state = {f"net.{name}": value for name, value in state.items()}  # the network's own (torchvision's) names
    expected = build_model(family, width, in_channels, 2).state_dict()
    backbone = [name for name in expected if not name.startswith("head.")]
    for name in backbone:
        if name.endswith("num_batches_tracked") and name not in state:  # a counter: some state dicts leave it out
            continue
        if name not in state:
            raise UserError(f"{flag} {path!r} has no {name!r}, so it is not a {arch}; {fix}")
        if tuple(state[name].shape) != tuple(expected[name].shape):
            raise UserError(f"{flag} {path!r} does not fit a {arch}: its {name!r} is "
                            f"{list(state[name].shape)}, not {list(expected[name].shape)}; {fix}")
    replaced_head = f"net.{traced(family, in_channels).head}." if is_traced(family) else "head."
    extra = [name for name in state if name not in expected and not name.startswith(("head.", replaced_head))]
    if extra:  # a deeper network's state dict holds every tensor of a shallower one
        raise UserError(f"{flag} {path!r} has {len(extra)} tensors a {arch} does not have (e.g. {extra[0]!r}); {fix}")
    head, features = state.get("head.weight"), expected["head.weight"].shape[1]
    head_fits = head is not None and head.dim() == 2 and head.shape[1] == features and "head.bias" in state
    if head_fits and tuple(state["head.bias"].shape) != (head.shape[0],):
        raise UserError(f"{flag} {path!r} has a 'head.bias' of shape {list(state['head.bias'].shape)} for a "
                        f"'head.weight' of {head.shape[0]} classes; {fix}")
    model = build_model(family, width, in_channels, int(head.shape[0]) if head_fits else 2, device=device)
    kept = [name for name in backbone if name in state] + (["head.weight", "head.bias"] if head_fits else [])
    for name in kept:
        problem = tensor_problem(state[name], expected[name]) or _variance_problem(name, state[name])
        if problem:
            raise UserError(f"{flag} {path!r} has a {name!r} that {problem}; {fix}")
    model.load_state_dict({name: state[name] for name in kept}, strict=False)
    return model, {"path": os.path.abspath(path), "trained_on": "given", "reused": True}


def tensor_problem(given: torch.Tensor, expected: torch.Tensor) -> str | None:
    """Why ``given`` cannot be loaded where a network holds ``expected`` (same shape already checked), or ``None``.

    ``load_state_dict`` would raise a traceback for a sparse or meta tensor and silently round
    floating-point weights cast to integers (every weight of a conv becomes 0).
    """
    if given.layout != torch.strided:
        return f"is a {str(given.layout).removeprefix('torch.')} tensor, not a dense one"
    if given.is_meta:
        return "is a meta tensor (a shape without values)"
    if given.is_complex() or given.is_floating_point() != expected.is_floating_point():
        name = str(given.dtype).removeprefix("torch."), str(expected.dtype).removeprefix("torch.")
        return f"holds {name[0]} values, not {name[1]}"
    return None


def _variance_problem(name: str, given: torch.Tensor) -> str | None:
    """A BatchNorm's running variance below 0 (or NaN): normalising by its square root gives NaN everywhere."""
    if name.endswith("running_var") and not bool((given >= 0).all()):
        return "holds a negative or NaN variance (a BatchNorm's running_var is at least 0)"
    return None


def warn_near_chance(info: dict, log) -> None:
    """Say so when the pre-trained baseline's final loss is near chance (ln of its class count)."""
    if info.get("near_chance"):
        log(f"warning: the pre-trained baseline's final loss {info['final_loss']:.2f} is near chance "
            f"(ln {info['classes']} = {info['chance_loss']:.2f}): the pretrained, random-learngene, l1-learngene "
            "and layerwise rows stand on a network that barely learned; give it more transfer.pretrain_images.")
