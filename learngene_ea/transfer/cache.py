"""The pre-trained networks' cache: one file per key, so no key's network ever replaces another's.

A cached network is ``pretrained-<digest>.pt`` (the ``slimming`` row's: ``slimming-<digest>.pt``),
where the digest is a hash of everything that determined its weights
(:func:`learngene_ea.transfer.pretrain.pretrain_key`: model and its structure, data, steps, optimiser,
seed, what it trained on; :func:`learngene_ea.transfer.slimming.slimming_key` adds the channels kept). A
transfer writes into its own cache folder (the output folder, or ``transfer.cache_dir``) and
may read, never write, other folders: the run folder next to the learngene, whose cache it
reuses only when the key matches. The unkeyed ``pretrained.pt`` of earlier versions is neither
read nor replaced (its key lacks what a key holds now, so it could never match).
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import torch
from torch import fx

from ..core.models import build_model
from ..io.atomic import atomic_write_bytes


def network_structure(family: str, width: float, in_channels: int) -> str:
    """A hash of what the network ``family`` is now: its modules and their settings (``repr``), every
    parameter's and buffer's name, shape and dtype, and its forward's torch.fx graph when it traces. In a
    pre-training key it keeps a user's factory edited under the same name (another forward, another
    width) from being served the network cached before the edit."""
    try:
        with torch.device("meta"):  # no memory, no initialisation
            model = build_model(family, width, in_channels, 2, device="meta")
    except Exception:  # a builder that computes with tensors: on the CPU
        model = build_model(family, width, in_channels, 2)
    parts = [repr(model)] + [f"{name} {tuple(t.shape)} {t.dtype}" for name, t in model.state_dict().items()]
    try:
        parts.append(fx.symbolic_trace(model).code)
    except Exception:  # control flow on values (our resnet12): its modules and tensors say it all
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def key_digest(key: dict) -> str:
    """A short, stable hash of a pre-training key (the cache file's name)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def cache_file(folder: str, key: dict, kind: str = "pretrained") -> str:
    """Where the network of ``key`` is cached in ``folder`` (``kind``: ``pretrained`` or ``slimming``)."""
    return os.path.join(folder, f"{kind}-{key_digest(key)}.pt")


def _baseline(path: str) -> str:
    return "slimming baseline" if os.path.basename(path).startswith("slimming-") else "pre-trained baseline"


def find_cached(key: dict, folders, log=print, kind: str = "pretrained") -> tuple[dict, str] | None:
    """The cached state whose key is ``key`` in the first of ``folders`` that has it, or None.

    Each file is read with ``weights_only=True``; an unreadable one is reported and skipped, never trusted.
    """
    for folder in folders:
        path = cache_file(folder, key, kind)
        if not os.path.isfile(path):
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged cache is only a cache
            log(f"{_baseline(path)}: cannot read {path} ({type(err).__name__}); not using it")
            continue
        if isinstance(state, dict) and state.get("key") == key:  # a digest collision is not a match
            return state, path
    return None


def write_cached(path: str, state: dict, log=print) -> bool:
    """Write ``state`` at ``path`` (atomically); a cache that cannot be written is reported, not fatal."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        log(f"{_baseline(path)}: cannot cache it at {path} ({err.strerror}); continuing without cache")
        return False
    log(f"{_baseline(path)}: cached as {path}")
    return True
