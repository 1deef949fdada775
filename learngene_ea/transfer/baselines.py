"""Baselines: the rows of the transfer table, each a way to fill a fresh descendant.

A :class:`Method` says which architecture a row uses and what it writes into the freshly
initialised descendant of every episode: nothing (``scratch``, and ``scratch-instincts`` with no
update), the pre-trained network's gene layers (``pretrained``, ``layerwise``,
``layerwise-equal-size``), pre-trained channels chosen like the learngene's
(``random-learngene``, ``l1-learngene``), a network pruned by BatchNorm scale at the evolution's
compute (``slimming``, :mod:`.slimming`), or the learngene itself (``learngene``, ``instincts``).
:func:`baseline_methods` lists the rows of one table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config.loading import fresh_start
from ..core.fresh import FreshStart
from ..core.learngene import Learngene, channel_importance, extract_learngene, full_masks, inherit_learngene
from ..core.backbone import ArchSpec, Backbone
from ..ea.operators import keep_top_channels
from ..core.traced import arch_label
from .descendants import copy_gene_layers, transferred_params
from .episodes import episode_mask_seed


@dataclass
class Method:
    """One row of the table: how a fresh descendant gets its transferred weights.

    ``transfer(model, episode_seed)`` writes into the freshly initialised descendant and returns
    the number of parameters transferred. ``finetune=False`` scores the descendant's prototypes
    on the support set with no update at all (``instincts``).
    """

    name: str
    family: str
    width: float
    transfer: Callable[[Backbone, int], int]
    finetune: bool = True
    note: str = ""

    @property
    def arch(self) -> str:
        return arch_label(self.family, self.width)


def layerwise_layers(spec: ArchSpec, budget: int, at_most: bool = False) -> list[str]:
    """Whole gene layers from the input side whose total is closest to ``budget`` (at least one).

    ``at_most``: the most layers whose total does not exceed ``budget`` (possibly none), the
    comparison at equal size: the closest set may be larger than the learngene.
    """
    best, best_gap, total = [], None, 0
    for i, layer in enumerate(spec.layers):
        total += layer.num_params()
        if at_most:
            if total > budget:
                break
            best = [l.name for l in spec.layers[:i + 1]]
            continue
        gap = abs(total - budget)
        if best_gap is None or gap < best_gap:
            best, best_gap = [l.name for l in spec.layers[:i + 1]], gap
    return best


def top_l1_masks_like(learngene: Learngene, network: Backbone) -> dict[str, np.ndarray]:
    """``network``'s channels of largest filter L1 norm, as many per mask group as ``learngene`` keeps."""
    full = full_masks(network.spec)
    scores = channel_importance(extract_learngene(network, full), "l1")
    return {group: keep_top_channels(full[group], scores[group], int(learngene.masks[group].sum()))
            for group, _ in learngene.spec.groups}


def random_masks_like(learngene: Learngene, seed: int) -> dict[str, np.ndarray]:
    """Random channels with as many kept per mask group as ``learngene`` keeps."""
    rng = np.random.default_rng(seed)
    masks = {}
    for group, size in learngene.spec.groups:
        mask = np.zeros(size, dtype=bool)
        mask[rng.choice(size, size=int(learngene.masks[group].sum()), replace=False)] = True
        masks[group] = mask
    return masks


def _nothing(model, episode_seed):
    return 0


def _inherit_into(model, learngene: Learngene, fresh: FreshStart) -> int:
    return transferred_params(model.spec, inherit_learngene(model, learngene, fresh.complement_scale, fresh.rule))


def _pretrained_methods(learngene: Learngene, pretrained: Backbone, fresh: FreshStart) -> list[Method]:
    """The rows built on the pre-trained network: all of it, random or top-L1 channels, whole layers
    (the channel rows' fresh channels start under ``fresh``, as the learngene's do)."""
    family, width = learngene.family, learngene.width
    all_layers = [layer.name for layer in pretrained.spec.layers]
    budget_layers = layerwise_layers(pretrained.spec, learngene.num_params)
    equal_size_layers = layerwise_layers(pretrained.spec, learngene.num_params, at_most=True)

    def whole(model, episode_seed):
        return copy_gene_layers(pretrained, model, all_layers)

    def random_channels(model, episode_seed):
        masks = random_masks_like(learngene, episode_mask_seed(episode_seed))
        return _inherit_into(model, extract_learngene(pretrained, masks), fresh)

    top_l1 = extract_learngene(pretrained, top_l1_masks_like(learngene, pretrained))

    def l1_channels(model, episode_seed):
        return _inherit_into(model, top_l1, fresh)

    def layerwise(model, episode_seed):
        return copy_gene_layers(pretrained, model, budget_layers)

    def layerwise_equal_size(model, episode_seed):
        return copy_gene_layers(pretrained, model, equal_size_layers)

    methods = [
        Method("pretrained", family, width, whole, note="all gene layers of the pre-trained network"),
        Method("random-learngene", family, width, random_channels,
               note="random pre-trained channels, as many per group as the learngene"),
        Method("l1-learngene", family, width, l1_channels,
               note="pre-trained channels of largest L1 norm, as many per group as the learngene"),
        Method("layerwise", family, width, layerwise,
               note="whole pre-trained gene layers from the input, closest in size: " + ", ".join(budget_layers)),
    ]
    if equal_size_layers and equal_size_layers != budget_layers:  # else the row above is this one
        methods.append(Method("layerwise-equal-size", family, width, layerwise_equal_size,
                              note="whole pre-trained gene layers from the input, no more parameters than "
                                   "the learngene: " + ", ".join(equal_size_layers)))
    return methods


def baseline_methods(learngene: Learngene, pretrained: Backbone | None, descendants=(),
                     complement_scale: float | None = None,
                     slimming: Learngene | None = None, fresh_channels: str | None = None) -> list[Method]:
    """The rows of a transfer table: baselines, learngene, and scalability descendants.

    ``pretrained`` (the full network of the learngene's architecture trained on all training
    classes) feeds ``pretrained``, ``random-learngene``, ``l1-learngene`` and ``layerwise``; with ``None`` those
    rows are left out. ``slimming``: the ``slimming`` row's learngene (:mod:`.slimming`), ``None``
    for no such row. ``descendants``: ``(family, width)`` pairs, each adding ``scratch`` and
    ``learngene`` rows for that architecture; a dict maps each to that architecture's own pre-trained
    network (or None), which adds a ``pretrained`` row between them.
    ``complement_scale`` (``transfer.complement_scale``): what the fresh channels of every layer a
    learngene or pre-trained channels are written into start at
    (:func:`~learngene_ea.core.backbone.scale_complement`) under the rule ``fresh_channels``
    (``transfer.fresh_channels``: ``scaled`` or ``grow``, :mod:`~learngene_ea.core.fresh`); ``None``: the
    shipped default recipe's, as on the command line. Under ``grow`` the ``instincts`` row (no update)
    is the learngene sub-network itself, fresh channels silent: the two rules differ at step 0 only in
    the pooled features, where the last group's fresh channels sit beside the learngene's.
    """
    family, width = learngene.family, learngene.width
    fresh = fresh_start(fresh_channels, complement_scale)
    unchanged = FreshStart("scaled", 0.0) if fresh.rule == "grow" else fresh

    def inherit(model, episode_seed):
        return _inherit_into(model, learngene, fresh)

    def inherit_unchanged(model, episode_seed):
        return _inherit_into(model, learngene, unchanged)

    methods = [Method("scratch", family, width, _nothing, note="random initialisation"),
               Method("scratch-instincts", family, width, _nothing, finetune=False,
                      note="random initialisation, no update (prototypes of its random features)")]
    if pretrained is not None:
        methods += _pretrained_methods(learngene, pretrained, fresh)
    if slimming is not None:
        def slimmed(model, episode_seed):
            return _inherit_into(model, slimming, fresh)

        methods.append(Method("slimming", family, width, slimmed,
                              note="Network Slimming at equal compute: the channels of largest BatchNorm "
                                   "scale of a warm start, as many per group as the learngene, then trained"))
    methods += [
        Method("instincts", family, width, inherit_unchanged, finetune=False, note="learngene descendant, no update"),
        Method("learngene", family, width, inherit, note="the learngene"),
    ]
    for d_family, d_width in descendants:
        methods.append(Method("scratch", d_family, d_width, _nothing, note="scalability: random initialisation"))
        own = descendants.get((d_family, d_width)) if isinstance(descendants, dict) else None
        if own is not None:
            methods.append(Method("pretrained", d_family, d_width, _whole_network(own),
                                  note="scalability: all gene layers of this architecture's own pre-trained "
                                       "network (the same training images)"))
        methods.append(Method("learngene", d_family, d_width, inherit, note="scalability: learngene inherited"))
    return methods


def _whole_network(network: Backbone):
    names = [layer.name for layer in network.spec.layers]

    def whole(model, episode_seed):
        return copy_gene_layers(network, model, names)
    return whole
