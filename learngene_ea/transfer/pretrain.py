"""The pre-trained baseline: the whole network trained on all training classes, cached beside the learngene.

The ``pretrained``, ``random-learngene``, ``l1-learngene`` and ``layerwise`` rows take their
weights from it. It learns from as many training images as every descendant of the evolution
together (equal compute; ``transfer.pretrain_images`` sets another number), with the recipe's
task optimiser, and is cached as ``pretrained.pt``; the cache is reused only while what it was
trained from (:func:`pretrain_key`) is unchanged. A final loss near chance is reported: the
rows built on it would compare the learngene with a network that learned nothing.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..config import Config
from ..data.base import FewShotDataset
from ..models import Backbone, build_model
from ..sampling import Task
from ..training import train_on_task
from .descendants import arch_label
from .episodes import pretrain_seed

PRETRAINED_FORMAT = "learngene-ea/pretrained-v1"
PRETRAINED_FILE = "pretrained.pt"


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


def pretrain_key(cfg: Config, family: str, width: float, in_channels: int, steps: int) -> dict:
    """What a cached pre-trained network must match to be reused (model, data and its training)."""
    return {
        "format": PRETRAINED_FORMAT, "family": family, "width": float(width), "in_channels": int(in_channels),
        "data": json.loads(json.dumps(dataclasses.asdict(cfg.data))),
        "steps": int(steps), "lr": cfg.task.lr, "batch_size": cfg.task.batch_size,
        "weight_decay": cfg.task.weight_decay, "augment": cfg.data.augment, "seed": cfg.transfer.seed,
    }


def pretrain_network(cfg: Config, dataset: FewShotDataset, family: str, width: float, in_channels: int,
                     device, steps: int) -> tuple[Backbone, dict]:
    """Supervised training of the full network on ALL training classes (never val/test images).

    The same optimiser as the descendants' tasks (``task.lr``, ``task.batch_size``,
    ``task.weight_decay``, SGD momentum 0.9 + cosine decay, ``data.augment``) for ``steps``
    batches drawn from every image of every training class.
    """
    start = time.perf_counter()
    classes = [int(c) for c in dataset.splits["train"]]
    indices = np.concatenate([dataset.indices_of_class(c).numpy() for c in classes])
    labels = np.concatenate([np.full(len(dataset.indices_of_class(c)), i) for i, c in enumerate(classes)])
    task = Task(tuple(classes), indices, labels)
    seed = pretrain_seed(cfg.transfer.seed)
    model = build_model(family, width, in_channels, len(classes), seed=seed, device=device)
    loss = train_on_task(model, dataset, task, steps, cfg.task.batch_size, cfg.task.lr, cfg.task.weight_decay,
                         cfg.data.augment, seed, device)
    chance = math.log(len(classes))
    info = {"classes": len(classes), "images": int(len(indices)), "steps": steps,
            "training_images": steps * cfg.task.batch_size, "epochs": steps * cfg.task.batch_size / len(indices),
            "final_loss": loss, "chance_loss": chance, "near_chance": bool(loss > NEAR_CHANCE * chance),
            "seconds": time.perf_counter() - start, "seed": seed}
    return model, info


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict on the CPU (to cache it or to share it with SCOOP workers)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def pretrained_from_state(state_dict: dict, family: str, width: float, in_channels: int, dataset: FewShotDataset,
                          device) -> Backbone:
    """The pre-trained network (a head over every training class) with ``state_dict``'s weights."""
    model = build_model(family, width, in_channels, len(dataset.splits["train"]), device=device)
    model.load_state_dict(state_dict)
    return model


def load_or_pretrain(cfg: Config, dataset: FewShotDataset, family: str, width: float, in_channels: int,
                     cache_path: str, device, log=print, evolution_images: int | None = None) -> tuple[Backbone, dict]:
    """The cached pre-trained network at ``cache_path`` when its key matches, else train and cache it.

    ``evolution_images``: the training images of the evolution that made the learngene (equal
    compute, see :func:`pretrain_steps`). The returned info says how long it trained and why.
    """
    steps, decided_by = pretrain_steps(cfg, dataset, evolution_images)
    budget = {"evolution_training_images": evolution_images, "steps_decided_by": decided_by}
    key = pretrain_key(cfg, family, width, in_channels, steps)
    if os.path.isfile(cache_path):
        try:
            state = torch.load(cache_path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and state.get("key") == key:
                model = pretrained_from_state(state["state_dict"], family, width, in_channels, dataset, device)
                log(f"pre-trained baseline: reusing {cache_path}")
                warn_near_chance(state["info"], log)
                return model, {**state["info"], **budget, "path": cache_path, "reused": True}
            log(f"pre-trained baseline: {cache_path} was trained with other model/data/pre-training keys; "
                "retraining it")
        except Exception as err:  # an unreadable cache is rebuilt, never trusted
            log(f"pre-trained baseline: cannot read {cache_path} ({type(err).__name__}); retraining it")
    log(f"pre-trained baseline: training {arch_label(family, width)} on all {len(dataset.splits['train'])} "
        f"training classes for {steps} steps ({steps * cfg.task.batch_size:,} images; {decided_by})")
    model, info = pretrain_network(cfg, dataset, family, width, in_channels, device, steps)
    log(f"pre-trained baseline: {info['steps']} steps ({info['epochs']:.2f} epochs), final loss "
        f"{info['final_loss']:.3f}, {info['seconds']:.0f}s")
    warn_near_chance(info, log)
    buffer = io.BytesIO()
    torch.save({"format": PRETRAINED_FORMAT, "key": key, "info": info,
                "state_dict": cpu_state(model)}, buffer)
    try:
        atomic_write_bytes(cache_path, buffer.getvalue())
        log(f"pre-trained baseline: cached as {cache_path}")
    except OSError as err:
        log(f"pre-trained baseline: cannot cache it at {cache_path} ({err.strerror}); continuing without cache")
    return model, {**info, **budget, "path": cache_path, "reused": False}


def warn_near_chance(info: dict, log) -> None:
    """Say so when the pre-trained baseline's final loss is near chance (ln of its class count)."""
    if info.get("near_chance"):
        log(f"warning: the pre-trained baseline's final loss {info['final_loss']:.2f} is near chance "
            f"(ln {info['classes']} = {info['chance_loss']:.2f}): the pretrained, random-learngene, l1-learngene "
            "and layerwise rows stand on a network that barely learned; give it more transfer.pretrain_images.")
