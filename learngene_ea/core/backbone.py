"""What every backbone is, as the rest of the code sees it: gene layers and mask groups as plain data
(:class:`GeneLayer`, :class:`ArchSpec`) and a feature extractor with a replaceable head (:class:`Backbone`).

Our hand-written families (:mod:`.models`) and networks found by tracing (:mod:`.traced`) are both
:class:`Backbone` objects with an :class:`ArchSpec`, so operators, checkpoints and transfer work on either.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class GeneLayer:
    """One gene layer: where it is, which mask group it writes and which it reads.

    ``stage``/``index``/``role`` locate the layer independently of the family's module names,
    so a learngene can be inherited by a deeper or other-family descendant.

    ``in_group`` names what the layer reads: ``None`` is channels outside every mask group (the
    image; a traced depthwise convolution, which reads one channel of its own group per output, has
    ``in_channels`` 1 and ``None``); a traced layer reading a concatenation names its parts joined
    by ``+``, ``*N`` standing for N channels outside the groups (:func:`input_mask`).
    ``kernel_size`` is a side, or (height, width) for a non-square kernel; ``norm`` is ``bn`` (a
    BatchNorm normalises the output), ``bias`` (the conv's own bias, no BatchNorm) or ``none``.
    """

    name: str
    group: str
    in_group: str | None  # None: reads the image
    in_channels: int
    out_channels: int
    kernel_size: int
    stage: int
    index: int
    role: str
    norm: str = "bn"

    @property
    def kernel_area(self) -> int:
        size = self.kernel_size
        return size * size if isinstance(size, int) else int(size[0]) * int(size[1])

    def num_params(self, kept_out: int | None = None, kept_in: int | None = None) -> int:
        """Conv weights + BatchNorm affine parameters (or bias) for ``kept_out`` x ``kept_in`` channels."""
        out = self.out_channels if kept_out is None else kept_out
        inp = self.in_channels if kept_in is None else kept_in
        return out * inp * self.kernel_area + {"bn": 2, "bias": 1}.get(self.norm, 0) * out


def input_mask(layer: GeneLayer, masks: dict[str, np.ndarray]) -> np.ndarray | None:
    """The kept input channels of ``layer`` under ``masks`` (``None``: it reads no mask group)."""
    if layer.in_group is None:
        return None
    parts = [np.ones(int(token[1:]), dtype=bool) if token.startswith("*") else np.asarray(masks[token], dtype=bool)
             for token in layer.in_group.split("+")]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


@dataclass(frozen=True)
class ArchSpec:
    """The gene layers and mask groups of one architecture, as plain picklable data."""

    family: str
    width: float
    in_channels: int
    layers: tuple[GeneLayer, ...]
    groups: tuple[tuple[str, int], ...]  # (group name, channels), in network order

    @property
    def group_names(self) -> list[str]:
        return [name for name, _ in self.groups]

    @property
    def group_sizes(self) -> dict[str, int]:
        return dict(self.groups)

    def layer(self, name: str) -> GeneLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def num_gene_params(self) -> int:
        """Parameters of all gene layers (+ their BatchNorms): the denominator of a fraction."""
        return sum(layer.num_params() for layer in self.layers)


class Backbone(nn.Module):
    """Feature extractor + linear head; subclasses build ``self.features`` and ``self.spec``.

    ``stackable``: P same-shape descendants can train as one grouped network
    (:mod:`.batched`), which needs every channel-mixing layer to be a gene layer.
    """

    feature_dim: int
    spec: ArchSpec
    stackable = True

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def _make_head(self):
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, feature_dim]`` (what prototype classifiers use)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def gene_module(self, name: str):
        """The gene layer ``name``: an object with its ``conv`` and ``bn`` (``ConvBN`` here)."""
        return self.get_submodule(name)

    def channel_readers(self) -> list[tuple[nn.Module, tuple]]:
        """Every layer that mixes mask-group channels, with what each of its input channels is:
        ``(group, index)`` or ``None`` (outside the groups). Here: the gene layers that read a group,
        and the head, which reads the last group (the pooled features)."""
        sizes = self.spec.group_sizes
        readers = []
        for layer in self.spec.layers:
            if layer.in_group is not None:
                channels = [place for token, _, size in _parts(layer.in_group, sizes)
                            for place in ([None] * size if token.startswith("*") else [(token, k) for k in range(size)])]
                readers.append((self.gene_module(layer.name).conv, tuple(channels)))
        last, size = self.spec.groups[-1]
        return readers + [(self.head, tuple((last, k) for k in range(size)))]

    def silence_dropped_channels(self, masks: dict[str, np.ndarray]) -> list:
        """Hooks that make this network its learngene sub-network under ``masks`` (remove them to undo).

        Here every gene layer's output (after BatchNorm) is multiplied by its group's mask: every
        layer that mixes channels is a gene layer, so kept layers read only kept channels.
        """
        device = next(self.parameters()).device
        handles = []
        for layer in self.spec.layers:
            keep = torch.as_tensor(np.asarray(masks[layer.group]), dtype=torch.float32, device=device).view(1, -1, 1, 1)
            handles.append(self.gene_module(layer.name).register_forward_hook(
                lambda module, inputs, output, keep=keep: output * keep))
        return handles


def scale_complement(model: Backbone, written: dict[str, tuple[np.ndarray, np.ndarray]], scale: float) -> None:
    """Scale the fresh output channels of every layer a learngene was ``written`` into by ``scale``.

    The complement's BatchNorm scale and shift (without BatchNorm: its filters and bias) are
    multiplied: at 1 (GTL) the fresh channels are as initialised; below 1 they speak more quietly
    beside the inherited ones and still learn; at 0 they output zero, so the descendant computes
    exactly its learngene's sub-network, and behind a ReLU they stay zero while it trains (no
    gradient passes a ReLU at zero). Layers nothing was written into are left as they are.
    """
    if scale == 1.0:
        return
    with torch.no_grad():
        for name, (out_idx, _) in written.items():
            module = model.gene_module(name)
            fresh = torch.ones(module.conv.out_channels, dtype=torch.bool, device=module.conv.weight.device)
            fresh[torch.as_tensor(out_idx, dtype=torch.long, device=fresh.device)] = False
            # a BatchNorm sets the channel's scale (without affine it has none to set); with no BatchNorm
            # (a traced conv's stand-in) the filters and bias do
            tensors = ((module.bn.weight, module.bn.bias) if isinstance(module.bn, nn.Module)
                       else (module.conv.weight, module.conv.bias))
            for tensor in tensors:
                if tensor is not None:
                    tensor[fresh] *= scale


def _parts(in_group: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """(part, first channel, channels) of each part of what a layer reads."""
    parts, start = [], 0
    for token in in_group.split("+"):
        size = int(token[1:]) if token.startswith("*") else sizes[token]
        parts.append((token, start, size))
        start += size
    return parts


def input_places(src: GeneLayer, dst: GeneLayer, masks: dict[str, np.ndarray], src_sizes: dict[str, int],
                 dst_sizes: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The kept input channels of ``src`` under ``masks`` (positions in its input) and where each lands in
    ``dst``'s input (-1: nowhere). A channel keeps its index in the image or in one group; in a
    concatenation it keeps its part and its index in the part, wherever the part starts in ``dst``."""
    reads = input_mask(src, masks)
    kept = np.arange(src.in_channels) if reads is None else np.flatnonzero(reads)
    if reads is None or ("+" not in src.in_group and "+" not in (dst.in_group or "")):
        return kept, np.where(kept < dst.in_channels, kept, -1)
    places = np.full(len(kept), -1)
    if dst.in_group is None:
        return kept, places
    targets = {token: (start, size) for token, start, size in _parts(dst.in_group, dst_sizes)
               if not token.startswith("*")}
    for token, start, size in _parts(src.in_group, src_sizes):
        if token in targets:
            inside = (kept >= start) & (kept < start + size)
            index = kept[inside] - start
            places[inside] = np.where(index < targets[token][1], targets[token][0] + index, -1)
    return kept, places

def spec_to_state(spec: ArchSpec) -> dict:
    """``spec`` as plain lists, strings and numbers (what learngene files and checkpoints record)."""
    layers = [{**vars(layer), "kernel_size": list(layer.kernel_size) if isinstance(layer.kernel_size, tuple)
               else layer.kernel_size} for layer in spec.layers]
    return {"family": spec.family, "width": float(spec.width), "in_channels": int(spec.in_channels),
            "layers": layers, "groups": [[name, int(size)] for name, size in spec.groups]}


def spec_from_state(state: dict) -> ArchSpec:
    """The :class:`ArchSpec` :func:`spec_to_state` wrote."""
    layers = tuple(GeneLayer(**{**layer, "kernel_size": tuple(layer["kernel_size"])
                                if isinstance(layer["kernel_size"], list) else layer["kernel_size"]})
                   for layer in state["layers"])
    return ArchSpec(state["family"], float(state["width"]), int(state["in_channels"]), layers,
                    tuple((str(name), int(size)) for name, size in state["groups"]))
