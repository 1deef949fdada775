"""What a descendant's fresh channels start as: the channels of a mask group a learngene was written into
that the learngene did not fill (its complement).

Two rules (``fitness.fresh_channels``, ``transfer.fresh_channels``):

- ``scaled`` (:func:`~.backbone.scale_complement`): the fresh channels' BatchNorm scale and shift are
  multiplied by ``complement_scale``: 1 as in GTL (loud beside the inherited ones), 0 silent (the
  descendant is its learngene's sub-network, and behind a ReLU the fresh channels never learn; behind
  ResNet12's leaky ReLU, whose slope at 0 is 0.1, their BatchNorm scale learns first and they wake).
- ``grow`` (:func:`grow_fresh_channels`, after Net2Net and GradMax): a fresh channel keeps its random
  filters and gets an identity BatchNorm (scale 1, shift 0), and every layer that reads it (a mask
  group's readers: the next convolutions, both sides of a residual block, the head) reads it with
  weights that start at exactly zero. The descendant's output is its learngene sub-network's at step 0,
  and yet the fresh channels learn: the zero reading weights get a gradient at the first step (the
  fresh channels' activations are not zero), their own filters from the second on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .backbone import Backbone, scale_complement

FRESH_RULES = ("scaled", "grow")


@dataclass(frozen=True)
class FreshStart:
    """How the fresh channels beside written ones start: ``rule`` (:data:`FRESH_RULES`) and, for ``scaled``,
    ``complement_scale``."""

    rule: str = "scaled"
    complement_scale: float = 1.0


def start_fresh_channels(model: Backbone, written: dict[str, tuple[np.ndarray, np.ndarray]], rule: str = "scaled",
                         complement_scale: float = 1.0) -> None:
    """Give the fresh channels of every group a learngene was ``written`` into their start under ``rule``."""
    if rule == "grow":
        grow_fresh_channels(model, written)
    elif rule == "scaled":
        scale_complement(model, written, complement_scale)
    else:
        raise ValueError(f"unknown fresh-channel rule {rule!r}; choose one of {', '.join(FRESH_RULES)}")


def fresh_masks(spec, written: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """For every mask group some layer was written into: True at its channels no written layer filled."""
    filled: dict[str, np.ndarray] = {}
    for name, (out_idx, _) in written.items():
        group = spec.layer(name).group
        filled.setdefault(group, np.zeros(spec.group_sizes[group], dtype=bool))[np.asarray(out_idx)] = True
    return {group: ~mask for group, mask in filled.items()}


def grow_fresh_channels(model: Backbone, written: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The ``grow`` rule: fresh channels as initialised behind an identity BatchNorm, read with zero weights.

    A group no layer was written into (a layer a deeper descendant adds) is left as initialised and is
    read as it is. A layer nothing was written into that reads a group and writes into a written one (an
    added residual branch, as in a ResNet-34 descendant of a ResNet-18 learngene) starts with a zero output
    (BatchNorm scale and shift 0, or its filters and bias without one), so that what it is added to is
    unchanged; a stem or depthwise conv (reading no group) stays as initialised.
    """
    spec = model.spec
    fresh = fresh_masks(spec, written)
    with torch.no_grad():
        for layer in spec.layers:
            if layer.group not in fresh:
                continue
            module = model.gene_module(layer.name)
            if layer.name in written:
                _identity_norm(module.bn, torch.as_tensor(fresh[layer.group], device=module.conv.weight.device))
            elif layer.in_group is not None:  # not a stem (reads the image) or a depthwise conv (passes on)
                _zero_output(module)
        for reader, channels in model.channel_readers():
            columns = [k for k, place in enumerate(channels)
                       if place is not None and place[0] in fresh and fresh[place[0]][place[1]]]
            if columns:
                _zero_columns(reader, np.asarray(columns))


def _identity_norm(bn, fresh: torch.Tensor) -> None:
    # a traced conv without BatchNorm (a stand-in) keeps its own bias, like its filters, as initialised
    if isinstance(bn, nn.Module) and bn.weight is not None:
        bn.weight[fresh] = 1.0
        bn.bias[fresh] = 0.0


def _zero_output(module) -> None:
    bn = module.bn
    tensors = ((bn.weight, bn.bias) if isinstance(bn, nn.Module) and bn.weight is not None
               else (module.conv.weight, module.conv.bias))
    for tensor in tensors:
        if tensor is not None:
            tensor.zero_()


def _zero_columns(reader: nn.Module, columns: np.ndarray) -> None:
    """Zero the weights by which ``reader`` (a convolution or a linear layer) reads input ``columns``."""
    weight = reader.weight
    groups = getattr(reader, "groups", 1)
    if groups == 1:
        weight[:, torch.as_tensor(columns, device=weight.device)] = 0.0
        return
    # a grouped convolution: input c is column c % in_per of the outputs of group c // in_per
    in_per, out_per = weight.shape[1], weight.shape[0] // groups
    rows = (columns // in_per)[:, None] * out_per + np.arange(out_per)[None, :]
    cols = np.repeat((columns % in_per)[:, None], out_per, axis=1)
    weight[torch.as_tensor(rows.reshape(-1), device=weight.device),
           torch.as_tensor(cols.reshape(-1), device=weight.device)] = 0.0
