"""Gene layers, mask groups and the head of any ``nn.Module`` of convolutions, found with ``torch.fx``.

The network is traced and every tensor's channels are followed through the graph as *channel atoms*:
a convolution makes new atoms for its outputs; BatchNorm, activations, pooling and dropout pass
them on; adding or multiplying two tensors joins their atoms channel by channel (union-find), so
outputs that are summed end in one mask group; concatenating along channels concatenates them; a
depthwise convolution passes its input's atoms on (output ``c`` reads only input ``c``, so both are
one circuit). After the pass, every set of joined atoms is one channel of one mask group, named
after the first convolution that writes it.

Masking reads, not writes: a learngene sub-network is the network whose every channel-mixing layer
(convolution, linear) reads only kept channels (``TracedBackbone.silence_dropped_channels``). So a
dropped channel may be computed, normalised and added to itself anywhere, and still contributes
nothing. What the analysis cannot place it does not mask: an op it does not know that reads
channels (a LayerNorm over channels, a reshape, a custom function) *pins* the groups it reads, and
the convolutions writing a pinned group, a grouped (not depthwise) convolution, a conv whose outputs
span several groups, or one with a bias and a BatchNorm are left out of the genome (fresh in a
descendant), each with a one-line note naming it.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from .backbone import GeneLayer

_LOG = logging.getLogger(__name__)

PASS_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU,
                nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d,
                nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.ZeroPad2d, nn.ReflectionPad2d)
PASS_FUNCTIONS = {"relu", "relu_", "relu6", "sigmoid", "hardswish", "hardsigmoid", "silu", "gelu", "tanh", "mish",
                  "leaky_relu", "elu", "dropout", "dropout2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                  "avg_pool2d", "max_pool2d", "stochastic_depth", "contiguous", "clone", "to", "float", "interpolate"}
JOIN_FUNCTIONS = {"add", "iadd", "add_", "mul", "imul", "mul_", "sub", "truediv", "div"}
NO_CHANNELS = {"size", "dim", "getattr", "getitem"}  # results that are not image tensors


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
    head: str                    # qualified name of the replaceable final nn.Linear
    feature_dim: int
    notes: tuple[str, ...]
    norms: tuple[tuple[str, str], ...] = ()  # (gene conv, the BatchNorm normalising its output)


class TracingError(ValueError):
    """The network cannot be analysed (no fx trace, no final linear head)."""


class _Atoms:
    """Union-find over channel atoms; each atom was made by a gene conv (name, index) or is fixed."""

    def __init__(self):
        self.parent, self.source = [], []

    def new(self, count: int, source=None) -> np.ndarray:
        start = len(self.parent)
        self.parent += list(range(start, start + count))
        self.source += [None if source is None else (source, i) for i in range(count)]
        return np.arange(start, start + count)

    def find(self, atom: int) -> int:
        while self.parent[atom] != atom:
            self.parent[atom] = self.parent[self.parent[atom]]
            atom = self.parent[atom]
        return atom

    def join(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)


def _function_name(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _channels(node) -> int | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) >= 2 else None


class _Pass:
    """One walk over the graph with a given set of excluded convs: atoms, readers and pins."""

    def __init__(self, graph: fx.GraphModule, excluded: dict[str, str]):
        self.modules = dict(graph.named_modules())
        self.excluded = excluded
        self.atoms = _Atoms()
        self.of = {}                      # node -> atom array (None: not a channel tensor)
        self.readers, self.gene_convs, self.pins = [], {}, {}  # pins: atom -> what pinned it
        self.made = {}                    # gene conv -> the atoms it made
        self.bn_of, self.head, self.features = {}, None, None
        self.head_node = graph.graph.output_node().args[0]
        for node in graph.graph.nodes:
            self.of[node] = self.visit(node)

    def fixed(self, node):
        count = _channels(node)
        return None if count is None else self.atoms.new(count)

    def pin(self, node, inputs):
        for atoms in inputs:
            for atom in atoms.tolist():
                self.pins.setdefault(atom, node.name)

    def visit(self, node):
        args = [a for a in node.all_input_nodes if self.of.get(a) is not None]
        inputs = [self.of[a] for a in args]
        if node.op == "placeholder":
            return self.fixed(node)
        if node.op == "call_module":
            return self.visit_module(node, self.modules[node.target], inputs)
        if node.op in ("call_function", "call_method"):
            return self.visit_function(node, _function_name(node), inputs)
        if node.op == "output":
            return None
        self.pin(node, inputs)  # get_attr and anything else reading channels
        return self.fixed(node)

    def visit_module(self, node, module, inputs):
        name = node.target
        if isinstance(module, nn.Conv2d):  # an input of unknown channels reads as channels outside the groups
            return self.visit_conv(node, name, module, inputs[0] if inputs else self.atoms.new(module.in_channels))
        if isinstance(module, nn.Linear) and inputs and len(inputs[0]) == module.in_features:
            self.readers.append((name, inputs[0]))
            if node is self.head_node:
                self.head, self.features = name, inputs[0]
            return self.fixed(node)
        if isinstance(module, nn.BatchNorm2d):
            source = node.args[0]
            if (source.op == "call_module" and source.target in self.gene_convs and len(source.users) == 1):
                self.bn_of[source.target] = name
        if isinstance(module, PASS_MODULES) and len(inputs) == 1:
            return inputs[0]
        if isinstance(module, nn.Flatten) and len(inputs) == 1:
            return self.visit_function(node, "flatten", inputs)
        self.pin(node, inputs)
        return self.fixed(node)

    def visit_conv(self, node, name, conv: nn.Conv2d, inputs):
        self.readers.append((name, inputs))
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if conv.groups > 1 and not depthwise:
            self.excluded.setdefault(name, f"{name}: a grouped convolution ({conv.groups} groups), left out "
                                           "of the genome (fresh in descendants)")
        if name in self.excluded:
            return self.atoms.new(conv.out_channels)
        self.gene_convs[name] = (conv, depthwise, inputs)
        self.made[name] = inputs if depthwise else self.atoms.new(conv.out_channels, name)
        return self.made[name]

    def visit_function(self, node, function, inputs):
        if function in ("getitem", "pad") and len(inputs) == 1 and _spatial_only(node, function):
            return inputs[0]  # x[:, :, ::2, ::2], F.pad(x, (1, 1, 1, 1)): the channels untouched
        if function in NO_CHANNELS and not (function == "getitem" and inputs):
            return self.fixed(node)  # a size, or an item of a tuple an unknown op returned
        if function in PASS_FUNCTIONS and len(inputs) == 1:
            return inputs[0]
        if function in ("flatten", "view", "reshape") and len(inputs) == 1 and _is_flatten(node):
            shape = node.all_input_nodes[0].meta["tensor_meta"].shape
            return np.repeat(inputs[0], int(np.prod(shape[2:])))  # channel-major: each channel's positions
        if function in ("mean", "amax", "sum") and len(inputs) == 1 and _keeps_channels(node):
            return inputs[0]  # over the image's positions
        if function in JOIN_FUNCTIONS and inputs and _channels(node) == max(len(a) for a in inputs):
            wide = [a for a in inputs if len(a) > 1]
            self.pin(node, [a for a in inputs if len(a) == 1 and wide])  # one channel broadcast over all
            for other in wide[1:]:
                if len(other) != len(wide[0]):
                    break
                self.atoms.join(wide[0], other)
            else:
                return wide[0] if wide else inputs[0]
        if function == "cat" and _cat_dim(node) == 1 and inputs:
            return np.concatenate(inputs)
        self.pin(node, inputs)
        return self.fixed(node)


def _is_flatten(node) -> bool:
    """``[B, C, ...]`` into ``[B, C * ...]`` (``flatten(x, 1)``, ``nn.Flatten()``, ``x.view(x.size(0), -1)``):
    in logical order the channels stay outermost, whichever op did it."""
    before = node.all_input_nodes[0].meta["tensor_meta"].shape
    after = getattr(node.meta.get("tensor_meta"), "shape", None)
    return after is not None and len(before) >= 2 and tuple(after) == (before[0], int(np.prod(before[1:])))


def _keeps_channels(node) -> bool:
    """A reduction over the positions only (``x.mean((2, 3))``), not over the channels."""
    rank = len(node.all_input_nodes[0].meta["tensor_meta"].shape)
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    return bool(dims) and rank >= 3 and all(isinstance(d, int) and d % rank >= 2 for d in dims)


def _spatial_only(node, function: str) -> bool:
    if function == "pad":
        padding = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else ())
        return isinstance(padding, (tuple, list)) and len(padding) <= 4
    index = node.args[1] if len(node.args) > 1 else None
    whole = slice(None, None, None)
    return isinstance(index, tuple) and len(index) >= 2 and index[0] == whole and index[1] == whole


def _cat_dim(node) -> int:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
    return int(dim)


def trace(model: nn.Module, in_channels: int, image_size: int = 64) -> TraceResult:
    """The gene layers, mask groups, readers and head of ``model`` (on any device, ``meta`` included)."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception as err:
        raise TracingError(f"torch.fx cannot trace {type(model).__name__} ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:160]})") from None
    _propagate_shapes(graph, model, in_channels, image_size)
    excluded: dict[str, str] = {}
    while True:
        walk = _Pass(graph, excluded)
        if walk.head is None:
            raise TracingError(f"{type(model).__name__}'s output is not an nn.Linear reading pooled channels: "
                               "give the network a final linear classifier (the head a descendant replaces)")
        _refuse_repeated_calls(walk)
        problems = _exclusions(walk)
        if not problems:
            return _result(walk, excluded)
        excluded.update(problems)


def _refuse_repeated_calls(walk: _Pass) -> None:
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


def _roots(walk: _Pass, atoms) -> list[int]:
    return [walk.atoms.find(a) for a in atoms.tolist()]


def _exclusions(walk: _Pass) -> dict[str, str]:
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


def _group_index(walk: _Pass) -> dict[int, tuple[str, int]]:
    """Root atom -> (group, channel): a group is named after the first conv that writes it."""
    index = {}
    for atom, source in enumerate(walk.atoms.source):
        if source is not None:
            index.setdefault(walk.atoms.find(atom), source)
    return index


def _result(walk: _Pass, excluded: dict[str, str]) -> TraceResult:
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
