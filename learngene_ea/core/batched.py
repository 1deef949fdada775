"""Population batching: train several descendants of one architecture as one grouped network.

P descendants with identical shapes become one network whose every gene layer is a grouped
convolution (``groups=P``): channels ``[p*C, (p+1)*C)`` belong to descendant ``p``, so each
descendant only ever sees its own channels. BatchNorm over the stacked channels is exactly
each descendant's own BatchNorm (statistics are per channel), the heads are a batched matrix
product, and SGD is element-wise, so training the stack is mathematically the same as training
the descendants one by one on their own batches; only float summation order differs. The
backbones' own ``forward_features`` code runs unchanged on the stacked tensor.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .learngene import WEIGHT_KEYS, gene_tensors, host_arrays
from .backbone import Backbone
from .models import ConvBN, memory_format


class GroupedConvBN(nn.Module):
    """P :class:`ConvBN` layers side by side: grouped convolution + BatchNorm over all channels."""

    def __init__(self, layers: list[ConvBN]):
        super().__init__()
        first = layers[0].conv
        p = len(layers)
        self.conv = nn.Conv2d(first.in_channels * p, first.out_channels * p, first.kernel_size,
                              padding=first.padding, groups=p, bias=False).to(first.weight.device)
        self.bn = nn.BatchNorm2d(first.out_channels * p).to(first.weight.device)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([layer.conv.weight for layer in layers]))
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(self.bn, name).copy_(torch.cat([getattr(layer.bn, name) for layer in layers]))
            self.bn.num_batches_tracked.copy_(layers[0].bn.num_batches_tracked)
        self.bn.momentum = layers[0].bn.momentum
        self.bn.eps = layers[0].bn.eps

    def forward(self, x):
        return self.bn(self.conv(x))

    def split_into(self, layers: list[ConvBN]) -> None:
        """Copy descendant ``p``'s slice back into ``layers[p]``."""
        p = len(layers)
        with torch.no_grad():
            for layer, weight in zip(layers, self.conv.weight.chunk(p)):
                layer.conv.weight.copy_(weight)
            for name in ("weight", "bias", "running_mean", "running_var"):
                for layer, value in zip(layers, getattr(self.bn, name).chunk(p)):
                    getattr(layer.bn, name).copy_(value)
            for layer in layers:
                layer.bn.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class GroupedHead(nn.Module):
    """P linear heads applied to ``[B, P*F]`` features; returns logits ``[B, P, K]``."""

    def __init__(self, heads: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]).clone())  # [P, K, F]
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]).clone())  # [P, K]

    def forward(self, features):
        p, _, f = self.weight.shape
        x = features.view(features.shape[0], p, f)
        return torch.einsum("bpf,pkf->bpk", x, self.weight) + self.bias

    def split_into(self, heads: list[nn.Linear]) -> None:
        with torch.no_grad():
            for head, w, b in zip(heads, self.weight, self.bias):
                head.weight.copy_(w)
                head.bias.copy_(b)


def same_shapes(models: list[Backbone]) -> bool:
    """True when the models can be stacked: same architecture and head size."""
    first = models[0]
    return all(m.spec == first.spec and m.num_classes == first.num_classes for m in models)


class StackedDescendants(nn.Module):
    """P same-shape descendants as one grouped network (see module docstring)."""

    def __init__(self, models: list[Backbone], layout: torch.memory_format | None = None):
        """``layout``: memory format of the stacked network (default: this process's)."""
        super().__init__()
        if not same_shapes(models):
            raise ValueError("descendants differ in shape and cannot be stacked")
        self.models = models
        self.size = len(models)
        self.stack = copy.deepcopy(models[0])
        for layer in models[0].spec.layers:
            parent_name, _, child = layer.name.rpartition(".")
            parent = self.stack.get_submodule(parent_name) if parent_name else self.stack
            grouped = GroupedConvBN([m.gene_module(layer.name) for m in models])
            setattr(parent, child, grouped) if not child.isdigit() else parent.__setitem__(int(child), grouped)
        self.stack.head = GroupedHead([m.head for m in models])
        self.layout = memory_format() if layout is None else layout
        self.stack.to(memory_format=self.layout)

    def forward(self, x):
        """``x``: ``[B, P*C, H, W]`` (descendant p's images in channels ``p*C..``) -> ``[B, P, K]``."""
        return self.stack.head(self.stack.forward_features(x))

    def forward_features(self, x):
        """Features ``[B, P, F]``."""
        features = self.stack.forward_features(x)
        return features.view(features.shape[0], self.size, -1)

    def gene_weights(self) -> list[dict]:
        """Each descendant's gene layers' weights, as :func:`~learngene_ea.core.learngene.gene_weights` gives
        them for one model, all copied to the host in one transfer."""
        layers = self.models[0].spec.layers
        arrays = host_arrays([t for layer in layers for t in gene_tensors(self.stack.get_submodule(layer.name))])
        weights = [{} for _ in range(self.size)]
        for k, layer in enumerate(layers):
            for key, array in zip(WEIGHT_KEYS, arrays[5 * k:5 * k + 5]):
                for own, part in zip(weights, np.split(array, self.size)):
                    own.setdefault(layer.name, {})[key] = part
        return weights

    def split(self) -> list[Backbone]:
        """Write every descendant's trained weights back into its own model; return the models."""
        for layer in self.models[0].spec.layers:
            self.stack.get_submodule(layer.name).split_into([m.gene_module(layer.name) for m in self.models])
        self.stack.head.split_into([m.head for m in self.models])
        return self.models
