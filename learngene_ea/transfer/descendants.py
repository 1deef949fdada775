"""Descendants: the networks a learngene is written into, and what they receive.

A descendant is a fresh network of some family and width (``conv4@0.5`` on the command line),
initialised from a seed. These helpers parse and name descendant architectures, build one with
the learngene written into it, copy whole gene layers of another network into one, and count
the parameters transferred.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..config.loading import fresh_start
from ..errors import UserError
from ..core.fresh import FreshStart
from ..core.learngene import Learngene, inherit_learngene
from ..core.backbone import ArchSpec, Backbone
from ..core.models import build_model, list_families
from ..core.traced import arch_label, is_traced


def parse_descendant(text: str, default_width: float) -> tuple[str, float]:
    """``'vgg11@0.5'`` -> ``('vgg11', 0.5)``; ``'conv6'`` -> ``('conv6', default_width)``;
    ``'torchvision:resnet34'`` -> ``('torchvision:resnet34', 1.0)``."""
    text = str(text).strip()
    family, _, width_text = text.partition("@")
    family = family.strip()
    if is_traced(family):
        if width_text:
            raise UserError(f"Descendant {text!r}: a traced network takes no @width; name its width argument "
                            'in JSON, e.g. torchvision:mobilenet_v2{"width_mult": 1.0}.')
        return family, 1.0
    family = family.lower()
    if family not in list_families():
        raise UserError(f"Descendant {text!r} names an unknown family {family!r}; "
                        f"choose one of {', '.join(list_families())} (e.g. conv4@2.0).")
    if not width_text:
        return family, float(default_width)
    try:
        width = float(width_text)
    except ValueError:
        raise UserError(f"Descendant {text!r} must look like family@width with a number as width, "
                        "e.g. conv4@2.0.") from None
    if not (0.0 < width <= 16.0) or not math.isfinite(width):
        raise UserError(f"Descendant {text!r} has width {width_text}; it must be greater than 0 and "
                        "at most 16.")
    return family, width


def build_descendant(learngene: Learngene, family: str | None = None, width: float | None = None,
                     num_classes: int = 5, seed: int = 0, device: str | torch.device = "cpu",
                     fresh: FreshStart | float | None = None) -> Backbone:
    """A fresh descendant (initialised from ``seed``) with the learngene written into it.

    ``family``/``width`` default to the learngene's ancestry architecture; ``fresh`` says how its fresh
    channels start: a :class:`~learngene_ea.core.fresh.FreshStart` (``transfer.fresh_channels`` and
    ``transfer.complement_scale``), a number (the ``scaled`` rule at that scale), or ``None``: the shipped
    default recipe's, so that Python builds the descendants the command line does. The returned model
    carries ``model.inherited``: gene layer name -> (output, input) channel indices written
    (what :func:`inherit_learngene` returns). Raises :class:`UserError` when nothing of the
    learngene can be written into that family (e.g. a Conv4 learngene into a ResNet12).
    """
    family = family or learngene.family
    width = learngene.width if width is None else float(width)
    model = build_model(family, width, learngene.in_channels, num_classes, seed=seed, device=device)
    if fresh is None:
        fresh = fresh_start()
    elif not isinstance(fresh, FreshStart):
        fresh = FreshStart("scaled", float(fresh))
    written = inherit_learngene(model, learngene, fresh.complement_scale, fresh.rule)
    if not written:
        raise UserError(f"A {arch_label(learngene.family, learngene.width)} learngene cannot be inherited by "
                        f"a {arch_label(family, width)} descendant: no gene layer matches (layers match by "
                        "name within a family, else by stage, index and role); drop that descendant.")
    model.inherited = written
    return model


def check_descendant(learngene: Learngene, family: str, width: float) -> dict[str, list[int]]:
    """What inheriting into ``family``/``width`` writes (layer -> [#out, #in]); UserError when nothing."""
    model = build_descendant(learngene, family, width, num_classes=2, seed=0, fresh=1.0)  # any rule
    return {name: [len(o), len(i)] for name, (o, i) in model.inherited.items()}


def transferred_params(spec: ArchSpec, written: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Parameters written into a descendant (conv sub-kernels + BatchNorm affine), as in a learngene size."""
    total = 0
    for name, (out_idx, in_idx) in written.items():
        total += spec.layer(name).num_params(len(out_idx), len(in_idx))
    return total


def copy_gene_layers(source: Backbone, target: Backbone, names) -> int:
    """Copy whole gene layers (conv, BatchNorm affine and statistics) by name; return parameters copied."""
    total = 0
    with torch.no_grad():
        for name in names:
            src, dst = source.gene_module(name), target.gene_module(name)
            dst.load_state_dict(src.state_dict())
            total += target.spec.layer(name).num_params()
    return total
