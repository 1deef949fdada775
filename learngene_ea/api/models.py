"""Learngenes taken from and given to the user's own ``nn.Module`` instances (README "From Python").

:func:`extract_learngene` reads a learngene out of any trained CNN ending in an ``nn.Linear`` (one of
ours, a torchvision or timm network, a user's own class); :func:`inherit` writes one into a network
the user built and returns it, its fresh channels started as the shipped default recipe starts them
unless told otherwise. Neither copies the network: the view (:class:`~learngene_ea.core.module_view.ModuleView`)
reads and writes the module's own tensors.
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

from ..config.loading import fresh_start
from ..core.fresh import FRESH_RULES
from ..core.learngene import Learngene, channel_importance, full_masks
from ..core.learngene import extract_learngene as extract_from_view
from ..core.learngene import inherit_learngene
from ..core.module_view import ModuleView
from ..ea.operators import keep_top_channels
from ..errors import UserError


def _masks_for(view: ModuleView, keep, criterion: str) -> dict[str, np.ndarray]:
    """``keep`` as masks: given masks checked against the view's groups, or the channels of largest
    ``criterion`` importance, ``sqrt(keep)`` of each group (a conv's parameters scale with kept outputs
    times kept inputs, so the learngene holds about ``keep`` of the gene-layer parameters)."""
    sizes = dict(view.spec.groups)
    if isinstance(keep, dict):
        if set(keep) != set(sizes):
            raise UserError(f"the masks name the groups {sorted(keep)}, but the network's are {sorted(sizes)}.")
        masks = {g: np.asarray(keep[g], dtype=bool) for g in sizes}
        bad = [g for g in sizes if masks[g].shape != (sizes[g],) or not masks[g].any()]
        if bad:
            raise UserError(f"the mask of group {bad[0]!r} must be {sizes[bad[0]]} booleans, one True at least.")
        return masks
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise TypeError(f"keep must be masks (group -> booleans) or a fraction in (0, 1], not {keep!r}")
    full = full_masks(view.spec)
    scores = channel_importance(extract_from_view(view, full), criterion)
    ratio = math.sqrt(float(keep))
    return {g: keep_top_channels(full[g], scores[g], max(1, round(ratio * size))) for g, size in sizes.items()}


def extract_learngene(model, keep, *, in_channels: int = 3, criterion: str = "l1", meta: dict | None = None) -> Learngene:
    """The learngene of ``model`` (an ``nn.Module`` instance, left unchanged) under ``keep``: masks per mask
    group (``{group: booleans}``; the groups of a network: ``ModuleView(model).spec.groups``), or a
    fraction of the gene-layer parameters, kept by ``criterion`` importance (``l1`` or ``bn``).
    Its family is ``module:<the model's class>``; save it with ``.save(path)``. Convolutions the analysis
    leaves out of the genome (a layer it cannot follow, a head after the pooling) are said in a warning and
    recorded in ``meta["left_out"]``."""
    view = ModuleView(model, in_channels)
    if view.notes:
        warnings.warn(f"{type(model).__name__}: {len(view.notes)} layer(s) left out of the learngene: "
                      + "; ".join(view.notes), stacklevel=2)
    return extract_from_view(view, _masks_for(view, keep, criterion),
                             {"from": "extract_learngene", "left_out": list(view.notes), **(meta or {})})


def inherit(model, learngene: Learngene, *, fresh_channels: str | None = None,
            complement_scale: float | None = None):
    """Write ``learngene`` into ``model`` (an ``nn.Module`` instance the user built: any width, depth or
    family whose layers match the learngene's by name within a family, else by stage, index and role) and
    return it. Its fresh channels start by ``fresh_channels`` (``scaled`` by ``complement_scale``, or
    ``grow``); ``None``: the shipped default recipe's rule, as the command line's descendants."""
    if not isinstance(learngene, Learngene):
        raise TypeError(f"learngene must be a Learngene (load_learngene(path)), not a {type(learngene).__name__}")
    fresh = fresh_start(fresh_channels, complement_scale)
    if fresh.rule not in FRESH_RULES:
        raise ValueError(f"fresh_channels must be one of {', '.join(FRESH_RULES)}, not {fresh.rule!r}")
    view = ModuleView(model, learngene.in_channels)
    if learngene.network is not None and dataclasses.replace(view.spec, family=learngene.family) == learngene.network:
        view.spec = learngene.network  # the network it was read from: its layers match by name
    elif view.spec.family == learngene.family:  # one class, another shape (a wider LabCNN, a ResNet-34)
        view.spec = dataclasses.replace(view.spec, family=f"{learngene.family} (another shape)")  # by position
    if not inherit_learngene(view, learngene, fresh.complement_scale, fresh.rule):
        raise UserError(f"no layer of {type(model).__name__} matches one of the {learngene.family} learngene's "
                        "(layers match by name within a family, else by stage, index and role).")
    return model
