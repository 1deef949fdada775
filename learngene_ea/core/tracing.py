"""Gene layers, mask groups and the head of any ``nn.Module`` of convolutions, found with ``torch.fx``.

The network is traced and every tensor's channels are followed through the graph as *channel atoms*
(:mod:`.channel_walk`): a convolution makes new atoms for its outputs; BatchNorm (timm's BatchNorm fused
with its activation included), activations, pooling and dropout pass them on; adding or multiplying two
tensors joins their atoms channel by channel (union-find), so outputs that are summed end in one mask
group; concatenating along channels concatenates them; a depthwise convolution passes its input's atoms
on (output ``c`` reads only input ``c``, so both are one circuit). After the walk, every set of joined
atoms is one channel of one mask group, named after the first convolution that writes it; this module
assembles them into gene layers, groups and readers.

Masking reads, not writes: a learngene sub-network is the network whose every channel-mixing layer
(convolution, linear) reads only kept channels (``TracedBackbone.silence_dropped_channels``). So a
dropped channel may be computed, normalised and added to itself anywhere, and still contributes
nothing. What the analysis cannot place it does not mask: an op it does not know that reads
channels (a LayerNorm over channels, a reshape, a custom function) *pins* the groups it reads, and
the convolutions writing a pinned group, a grouped (not depthwise) convolution, a conv whose outputs
span several groups, or one with a bias and a BatchNorm are left out of the genome (fresh in a
descendant), each with a one-line note naming it. So are the convolutions of the head, between the
global pooling and the final linear layer (timm's MobileNetV3 ``conv_head``): like the linear layers
there, they read the last group's pooled channels (masked) and are not inherited.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .backbone import GeneLayer
from .channel_walk import ChannelWalk, head_convs

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reader:
    """A channel-mixing module and, per input channel, (group, index) or ``None`` (outside the groups)."""

    module: str
    channels: tuple


@dataclass(frozen=True)
class TraceResult:
    layers: tuple[GeneLayer, ...]
    groups: tuple[tuple[str, int], ...]
    readers: tuple[Reader, ...]  # every conv/linear with an input from a mask group (the head included)
    head: str                    # qualified name of the replaceable final nn.Linear (or subclass)
    feature_dim: int
    notes: tuple[str, ...]
    norms: tuple[tuple[str, str], ...] = ()  # (gene conv, the BatchNorm normalising its output)


class TracingError(ValueError):
    """The network cannot be analysed (no fx trace, no final linear head)."""


def trace(model: nn.Module, in_channels: int, image_size: int = 64) -> TraceResult:
    """The gene layers, mask groups, readers and head of ``model`` (on any device, ``meta`` included)."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception as err:
        raise TracingError(f"torch.fx cannot trace {type(model).__name__} ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:160]})") from None
    _propagate_shapes(graph, model, in_channels, image_size)
    modules = dict(model.named_modules())
    excluded = {name: f"{name}: a layer of the head (after the global pooling), left out of the genome "
                      "(fresh in descendants)" for name in head_convs(graph, modules)}
    while True:
        walk = ChannelWalk(graph, modules, excluded)
        if walk.head is None:
            raise TracingError(f"{type(model).__name__}'s output is not an nn.Linear reading pooled channels: "
                               "give the network a final linear classifier (the head a descendant replaces)")
        _refuse_repeated_calls(walk)
        problems = _exclusions(walk)
        if not problems:
            return _result(walk, excluded)
        excluded.update(problems)


def _refuse_repeated_calls(walk: ChannelWalk) -> None:
    """A conv or linear called more than once (``self.b = self.a``, or one module applied twice) has one
    weight but a reader per call, each reading other channels: no one mask fits it, so it is refused (as
    is a BatchNorm normalising two gene convs: the learngene would store it once per conv)."""
    calls: dict[str, int] = {}
    for module in [module for module, _ in walk.readers] + list(walk.bn_of.values()):  # a BatchNorm of two convs
        calls[module] = calls.get(module, 0) + 1
    repeated = [name for name, count in calls.items() if count > 1]
    if repeated:
        raise TracingError(f"its module {repeated[0]!r} is called {calls[repeated[0]]} times in forward (one "
                           "module shared or applied twice), which a learngene's masks cannot follow: give each "
                           "call its own module")


def _quiet_probe(graph: fx.GraphModule, images: torch.Tensor) -> None:
    """``ShapeProp`` on ``images``, its printed traceback of a failing node (``traceback.print_exc``, then
    it raises) kept off stderr: a size the network rejects is expected while probing (``--debug`` logs it)."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            ShapeProp(graph).propagate(images)
    finally:
        if printed.getvalue():
            _LOG.debug("probe of %s images:\n%s", list(images.shape), printed.getvalue().rstrip())


def _propagate_shapes(graph: fx.GraphModule, model: nn.Module, in_channels: int, image_size: int) -> None:
    """Every node's output shape, from a probe batch of ``image_size`` images (or the first of a few
    common sizes a network without adaptive pooling accepts)."""
    device = next(model.parameters()).device
    failure = None
    for size in dict.fromkeys((image_size, 32, 84, 28, 224)):
        try:
            _quiet_probe(graph, torch.empty(2, in_channels, size, size, device=device))
            return
        except Exception as err:  # a size its layers do not fit: the next one
            failure = failure or err
    raise TracingError(f"{type(model).__name__} runs on no {in_channels}-channel image of side {image_size}, 32, 84, 28 "
                       f"or 224 ({type(failure).__name__}: {str(failure).splitlines()[0][:160]})")


def _roots(walk: ChannelWalk, atoms) -> list[int]:
    return [walk.atoms.find(a) for a in atoms.tolist()]


def _exclusions(walk: ChannelWalk) -> dict[str, str]:
    """Gene convs that cannot stay in the genome with the atoms as they were joined in ``walk``."""
    pinned = {}
    for atom, why in walk.pins.items():
        pinned.setdefault(walk.atoms.find(atom), why)
    for atom, source in enumerate(walk.atoms.source):  # joined with a fixed (unmaskable) channel
        if source is None:
            pinned.setdefault(walk.atoms.find(atom), "a channel outside the genome")
    problems = {}
    for name, (conv, depthwise, inputs) in walk.gene_convs.items():
        out = _roots(walk, walk.made[name])
        hit = [pinned[r] for r in out if r in pinned]
        if hit:
            problems[name] = f"{name}: its outputs are read by {hit[0]}, which the analysis cannot mask"
        elif conv.bias is not None and name in walk.bn_of:
            problems[name] = f"{name}: has both a bias and a BatchNorm"
    return problems


def _group_index(walk: ChannelWalk) -> dict[int, tuple[str, int]]:
    """Root atom -> (group, channel): a group is named after the first conv that writes it."""
    index = {}
    for atom, source in enumerate(walk.atoms.source):
        if source is not None:
            index.setdefault(walk.atoms.find(atom), source)
    return index


def _result(walk: ChannelWalk, excluded: dict[str, str]) -> TraceResult:
    index = _group_index(walk)
    sizes: dict[str, int] = {}
    for group, channel in index.values():
        sizes[group] = max(sizes.get(group, 0), channel + 1)
    notes, layers = list(excluded.values()), []
    stages: dict[str, int] = {}
    for name, (conv, depthwise, inputs) in walk.gene_convs.items():
        writes = _expression(walk, index, sizes, walk.made[name])
        reads = None if depthwise else _expression(walk, index, sizes, inputs)
        if not writes or "+" in writes or reads is False:
            notes.append(f"{name}: its channels do not line up with whole mask groups, left out of the genome")
            continue
        stage_key, block, role = _position(name)
        # stages count from 0 over numbered containers (layer1.., features); the stem outside them is -1
        stage = -1 if not stage_key else stages.setdefault(stage_key, len(stages))
        layers.append(GeneLayer(name, writes, reads or None, 1 if depthwise else conv.in_channels, conv.out_channels,
                                _kernel(conv), stage, block, role,
                                "bn" if name in walk.bn_of else ("bias" if conv.bias is not None else "none")))
    written = {layer.group for layer in layers}
    groups = tuple((g, sizes[g]) for g in dict.fromkeys(layer.group for layer in layers) if g in written)
    readers = tuple(Reader(module, tuple(_where(walk, index, written, a) for a in atoms.tolist()))
                    for module, atoms in walk.readers)
    norms = tuple((layer.name, walk.bn_of[layer.name]) for layer in layers if layer.norm == "bn")
    return TraceResult(tuple(layers), groups, readers, walk.head, len(walk.features), tuple(notes), norms)


def _where(walk, index, written, atom):
    found = index.get(walk.atoms.find(atom))
    return found if found is not None and found[0] in written else None


def _expression(walk, index, sizes, atoms):
    """``g1+g2+*N`` for channels that are whole groups in order (``*N``: N channels outside them);
    ``None`` when there is nothing but outside channels, ``False`` when a group is cut or reordered."""
    tokens, at = [], 0
    places = [index.get(r) for r in _roots(walk, atoms)]
    while at < len(places):
        place = places[at]
        if place is None:
            run = next((k for k in range(at, len(places)) if places[k] is not None), len(places)) - at
            tokens.append(f"*{run}")
            at += run
            continue
        group, size = place[0], sizes[place[0]]
        if places[at:at + size] != [(group, k) for k in range(size)]:
            return False
        tokens.append(group)
        at += size
    if all(t.startswith("*") for t in tokens):
        return None
    return "+".join(tokens)


def _kernel(conv: nn.Conv2d):
    height, width = conv.kernel_size
    return int(height) if height == width else (int(height), int(width))


def _position(name: str) -> tuple[str, int, str]:
    """``layer2.1.conv1`` -> (``layer2``, 1, ``conv1``): the stage container, the block's index in it, and
    the layer's role in the block, so a ResNet-18 learngene finds its layers in a ResNet-34."""
    parts = name.split(".")
    for k, part in enumerate(parts[1:], start=1):
        if part.isdigit():
            return ".".join(parts[:k]), int(part), ".".join(parts[k + 1:]) or part
    return "", 0, name
