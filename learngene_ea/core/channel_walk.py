"""One walk over a ``torch.fx`` graph that follows every tensor's channels as *channel atoms* (see :mod:`.tracing`).

A convolution makes new atoms for its outputs; BatchNorm, activations, pooling and dropout pass them on;
adding or multiplying two tensors joins their atoms channel by channel (union-find); concatenating along
channels concatenates them; a depthwise convolution passes its input's atoms on. An op the walk does not
know that reads channels *pins* the atoms it reads. A module whose ``forward`` fx traces into (a subclass
defined outside ``torch.nn``) shows up as the functions it calls: ``F.batch_norm`` on the running
statistics and affine parameters of one ``nn.BatchNorm2d`` (timm's ``BatchNormAct2d``, a BatchNorm fused
with its activation) is that BatchNorm, ``F.linear`` on one ``nn.Linear``'s weight is that linear layer,
and the rest of such a forward (the fused activation) is walked like any other op.
"""
from __future__ import annotations

import numpy as np
from torch import fx, nn

PASS_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU,
                nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d,
                nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.ZeroPad2d, nn.ReflectionPad2d)
PASS_FUNCTIONS = {"relu", "relu_", "relu6", "sigmoid", "hardswish", "hardsigmoid", "silu", "gelu", "tanh", "mish",
                  "leaky_relu", "elu", "dropout", "dropout2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                  "avg_pool2d", "max_pool2d", "stochastic_depth", "contiguous", "clone", "to", "float", "interpolate"}
JOIN_FUNCTIONS = {"add", "iadd", "add_", "mul", "imul", "mul_", "sub", "truediv", "div"}
NO_CHANNELS = {"size", "dim", "getattr", "getitem"}  # results that are not image tensors
POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
POOL_FUNCTIONS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "avg_pool2d", "max_pool2d"}
REDUCTIONS = {"mean", "amax", "sum"}
# what a module's own functional call may read of it: F.batch_norm(x, running_mean, running_var, weight, bias)
OWN_TENSORS = {"batch_norm": (nn.BatchNorm2d, {"running_mean", "running_var", "weight", "bias"}),
               "linear": (nn.Linear, {"weight", "bias"})}


class Atoms:
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


def function_name(node: fx.Node) -> str:
    """``relu``, ``add``, ``mean``: the name of the function or method a node calls."""
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def channels(node) -> int | None:
    """The channel count of the tensor a node computes (its shape's second entry), ``None`` for anything else."""
    meta = getattr(node, "meta", {}).get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) >= 2 else None


def own_module(node: fx.Node, modules: dict) -> str | None:
    """The module whose own tensors a functional call reads (``F.batch_norm`` on one BatchNorm2d's
    statistics and affine parameters, ``F.linear`` on one Linear's weight and bias), as fx records a
    subclass's ``forward`` it traced into; ``None`` for any other call or other operands."""
    if node.op != "call_function" or function_name(node) not in OWN_TENSORS or not node.args:
        return None
    kind, allowed = OWN_TENSORS[function_name(node)]
    operands = [a for a in node.all_input_nodes if a is not node.args[0]]
    if not operands or any(a.op != "get_attr" for a in operands):
        return None
    owners = {a.target.rpartition(".")[0] for a in operands}
    names = {a.target.rpartition(".")[2] for a in operands}
    owner = owners.pop() if len(owners) == 1 else None
    if owner is None or not isinstance(modules.get(owner), kind) or not names <= allowed:
        return None
    return owner if kind is not nn.Linear or "weight" in names else None  # a linear layer reads its weight


def _channel_users(node: fx.Node) -> int:
    """How many ops read ``node``'s channels (``x.ndim``, ``x.shape``, ``x.size()`` read none)."""
    return sum(1 for user in node.users
               if not (user.op in ("call_function", "call_method") and function_name(user) in ("getattr", "size", "dim")))


class ChannelWalk:
    """One walk over the graph with a given set of excluded convs: atoms, readers and pins. ``modules``: the
    traced network's, by qualified name (the graph module keeps only those it calls whole)."""

    def __init__(self, graph: fx.GraphModule, modules: dict[str, nn.Module], excluded: dict[str, str]):
        self.modules = modules
        self.excluded = excluded
        self.atoms = Atoms()
        self.of = {}                      # node -> atom array (None: not a channel tensor)
        self.readers, self.gene_convs, self.pins = [], {}, {}  # pins: atom -> what pinned it
        self.made = {}                    # gene conv -> the atoms it made
        self.bn_of, self.head, self.features = {}, None, None
        self.head_node = returned_node(graph, modules)
        for node in graph.graph.nodes:
            self.of[node] = self.visit(node)

    def fixed(self, node):
        count = channels(node)
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
        own = own_module(node, self.modules)
        if own is not None and self.of.get(node.args[0]) is not None:
            return self.visit_own(node, own, [self.of[node.args[0]]])
        if node.op in ("call_function", "call_method"):
            return self.visit_function(node, function_name(node), inputs)
        if node.op == "output":
            return None
        self.pin(node, inputs)  # get_attr and anything else reading channels
        return self.fixed(node)

    def visit_module(self, node, module, inputs):
        name = node.target
        if isinstance(module, nn.Conv2d):  # an input of unknown channels reads as channels outside the groups
            return self.visit_conv(node, name, module, inputs[0] if inputs else self.atoms.new(module.in_channels))
        if isinstance(module, nn.Linear) and inputs and len(inputs[0]) == module.in_features:
            return self.visit_linear(node, name, inputs[0])
        if isinstance(module, nn.BatchNorm2d):
            self.note_norm(node, name)
        if isinstance(module, PASS_MODULES) and len(inputs) == 1:
            return inputs[0]
        if isinstance(module, nn.Flatten) and len(inputs) == 1:
            return self.visit_function(node, "flatten", inputs)
        self.pin(node, inputs)
        return self.fixed(node)

    def visit_own(self, node, name, inputs):
        """A module's own functional call (see :func:`own_module`), as a call of that module."""
        if isinstance(self.modules[name], nn.Linear):
            if len(inputs[0]) == self.modules[name].in_features:
                return self.visit_linear(node, name, inputs[0])
            self.pin(node, inputs)
            return self.fixed(node)
        self.note_norm(node, name)
        return inputs[0]

    def visit_linear(self, node, name, inputs):
        self.readers.append((name, inputs))
        if node is self.head_node:
            self.head, self.features = name, inputs
        return self.fixed(node)

    def note_norm(self, node, name):
        """``name`` (a BatchNorm) normalises the gene conv it reads if that conv's output goes nowhere else."""
        source = node.args[0]
        if source.op == "call_module" and source.target in self.gene_convs and _channel_users(source) == 1:
            self.bn_of[source.target] = name

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
        if function in REDUCTIONS and len(inputs) == 1 and _keeps_channels(node):
            return inputs[0]  # over the image's positions
        if function in JOIN_FUNCTIONS and inputs and channels(node) == max(len(a) for a in inputs):
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


def returned_node(graph: fx.GraphModule, modules: dict[str, nn.Module]):
    """The op whose result the network returns, past trailing ``nn.Identity`` modules (timm's
    ``ClassifierHead`` ends in one after its linear layer)."""
    node = graph.graph.output_node().args[0]
    while isinstance(node, fx.Node) and node.op == "call_module" and isinstance(modules[node.target], nn.Identity):
        node = node.args[0]
    return node


def head_convs(graph: fx.GraphModule, modules: dict[str, nn.Module]) -> list[str]:
    """The convolutions of the head: between the last global pooling and the final linear layer (timm's
    MobileNetV3 ``conv_head``, a 1x1 conv of the pooled channels), in graph order; none when the output is
    not a linear layer's or no global pooling comes before it on the chain of one-input ops that leads to it."""
    node, convs = returned_node(graph, modules), []
    if not isinstance(node, fx.Node) or _head_link(node, modules) != "linear":
        return []
    node = _first_input(node)
    while node is not None and not _is_global_pool(node, modules):
        link = _head_link(node, modules)
        if not link:
            return []
        if link == "conv":
            convs.append(node.target)
        node = _first_input(node)
    return convs[::-1] if node is not None else []


def _head_link(node: fx.Node, modules: dict) -> str:
    """What ``node`` is on the head's chain: ``linear``, ``conv`` (of a pooled, one-position map), ``pass``
    (an activation, dropout, flatten, BatchNorm), or ``''``: anything else, which ends the chain."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.Conv2d):
            return "conv" if _positions(node.args[0]) == 1 else ""
        if isinstance(module, nn.Linear):
            return "linear"
        return "pass" if isinstance(module, PASS_MODULES + (nn.Flatten,)) else ""
    own = own_module(node, modules)
    if own is not None:
        return "linear" if isinstance(modules[own], nn.Linear) else "pass"
    if node.op in ("call_function", "call_method"):
        return "pass" if function_name(node) in PASS_FUNCTIONS | {"flatten", "view", "reshape"} else ""
    return ""


def _is_global_pool(node: fx.Node, modules: dict) -> bool:
    """A pooling or a reduction over positions whose output has one position per channel."""
    if _positions(node) != 1:
        return False
    if node.op == "call_module":
        return isinstance(modules[node.target], POOL_MODULES)
    name = function_name(node)
    return node.op in ("call_function", "call_method") and (
        name in POOL_FUNCTIONS or (name in REDUCTIONS and _keeps_channels(node)))


def _first_input(node: fx.Node) -> fx.Node | None:
    first = node.args[0] if node.args else None
    return first if isinstance(first, fx.Node) else None


def _positions(node) -> int | None:
    """How many positions each channel of ``node``'s tensor has (``[B, C]``: 1)."""
    shape = getattr(getattr(node, "meta", {}).get("tensor_meta"), "shape", None)
    return None if shape is None or len(shape) < 2 else int(np.prod(shape[2:]))


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
