"""Devices: a ``runtime.device`` setting resolved to a torch device, in one place.

A setting is ``auto`` (a GPU when torch finds one, else the CPU), ``cpu``, ``cuda`` (the current CUDA
device) or ``cuda:N``. :func:`is_device_setting` and :func:`gpus_needed` tell the recipe's checks what a
setting asks of the machine (they word the sentence, naming the key); :func:`resolve_device` gives the
device a process trains on (a worker's index picks its GPU under ``auto``), :func:`canonical_device` names
one device one way. Which worker a process is, and what an engine reserved for it, the engines say
(:func:`learngene_ea.parallel.scoop_engine.worker_device`).
"""
from __future__ import annotations

import re

import torch

SETTING_FORMS = "auto, cpu, cuda or cuda:N"
_SETTING = re.compile(r"auto|cpu|cuda(?::([0-9]+))?")


def is_device_setting(text: str) -> bool:
    """``text`` is one of the setting's forms (:data:`SETTING_FORMS`)."""
    return _SETTING.fullmatch(text) is not None


def gpus_needed(setting: str) -> int:
    """The GPUs a machine needs for ``setting``: 0 for ``auto`` and ``cpu``, 1 for ``cuda``, N + 1 for ``cuda:N``."""
    match = _SETTING.fullmatch(setting)
    if match is None:
        raise ValueError(f"{setting!r} is not a device setting ({SETTING_FORMS})")
    if not setting.startswith("cuda"):
        return 0
    return int(match.group(1) or 0) + 1


def gpu_count() -> int:
    """GPUs torch can use in this process (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(setting: str = "auto", worker_index: int = 0) -> torch.device:
    """The torch device of ``setting``: under ``auto``, ``cuda:{worker_index % GPUs}`` when there are GPUs,
    else the CPU; any other setting (or torch device name) as :func:`canonical_device` names it."""
    if setting == "auto":
        gpus = gpu_count()
        return torch.device(f"cuda:{worker_index % gpus}") if gpus else torch.device("cpu")
    return canonical_device(setting)


def canonical_device(device) -> torch.device:
    """``device`` with its index filled in: ``cuda`` is the current CUDA device (``cuda:0`` unless
    set otherwise), so that ``cuda`` and ``cuda:0`` name one device (and one cached copy)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device
