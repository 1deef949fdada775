"""A learngene as a safetensors file: the weights format labs exchange, with the learngene's description
as the file's metadata header (``Learngene.save(path, format="safetensors")``; :func:`load_learngene`
reads either format).

Tensors: ``masks/<k>`` (the k-th mask group's booleans) and ``weights/<j>/<key>`` (the j-th gene layer's
kept sub-kernel and BatchNorm arrays, float32). Header: ``learngene`` holds, as JSON, everything else of
:meth:`Learngene.to_state` (format, architecture, meta, a traced network's spec) and the group and layer
names behind ``k`` and ``j`` (names hold dots, so they are not used as tensor keys). safetensors is an
optional dependency (``pip install "learngene-ea[safetensors]"``).
"""
from __future__ import annotations

import json
import os

from ..errors import UserError

MAGIC_LIMIT = 100_000_000  # a safetensors header's length is a little-endian u64 before a JSON object


def require_safetensors():
    try:
        import safetensors.torch
        from safetensors import safe_open
    except ImportError:
        raise UserError('safetensors is not installed; pip install "learngene-ea[safetensors]" (or safetensors) '
                        "to read and write learngenes in that format.") from None
    return safetensors.torch, safe_open


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` starts like a safetensors file (header length, then a JSON object)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and 1 < int.from_bytes(head[:8], "little") < MAGIC_LIMIT and head[8:9] == b"{"


def state_to_safetensors(state: dict) -> bytes:
    """The bytes of a safetensors file holding a learngene's ``to_state()`` dict."""
    library, _ = require_safetensors()
    groups, layers = list(state["masks"]), list(state["weights"])
    tensors = {f"masks/{k}": state["masks"][g].contiguous() for k, g in enumerate(groups)}
    for j, layer in enumerate(layers):
        tensors.update({f"weights/{j}/{key}": value.contiguous() for key, value in state["weights"][layer].items()})
    described = {key: value for key, value in state.items() if key not in ("masks", "weights")}
    header = {"learngene": json.dumps({**described, "groups": groups, "layers": layers})}
    return library.save(tensors, metadata=header)


def state_from_safetensors(path: str | os.PathLike) -> dict:
    """The ``to_state()`` dict a safetensors learngene file holds (what ``Learngene.from_state`` reads)."""
    _, safe_open = require_safetensors()
    with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
        described = json.loads((f.metadata() or {})["learngene"])
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    groups, layers = described.pop("groups"), described.pop("layers")
    masks = {g: tensors[f"masks/{k}"] for k, g in enumerate(groups)}
    weights = {layer: {key.rsplit("/", 1)[1]: value for key, value in tensors.items()
                       if key.startswith(f"weights/{j}/")} for j, layer in enumerate(layers)}
    return {**described, "masks": masks, "weights": weights}

