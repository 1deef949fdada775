"""Networks we did not write: torchvision's by name, or a user's own factory, as :class:`TracedBackbone` objects.

A network is named by one string, its *family*: ``torchvision:resnet18``, or ``module:pkg.mod:factory``
for a user's own, followed by its keyword arguments as JSON when it has any
(``torchvision:mobilenet_v2{"width_mult": 0.5}``; :func:`network_name` writes it). The string is
what learngenes, checkpoints and tables record, so it must say everything that shapes the network.

A user's factory is code: it is imported only when a recipe the user wrote names it
(:func:`allow_module`, called by config loading and by every worker from its config), never because
a learngene or checkpoint file names one. torchvision's builders are called by name, without weights
(nothing is downloaded; a trained network comes in as a state dict, ``--from-pretrained``).
"""
from __future__ import annotations

import importlib
import json

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .backbone import ArchSpec, Backbone
from .tracing import TraceResult, TracingError, trace

PREFIXES = ("torchvision:", "module:")
# Process-wide, because a worker builds networks from the family string its individual carries, with no run
# object at hand: _ALLOWED_MODULES, the user's factories this process's recipe lets it import (allow_module:
# config loading and each worker's set-up); two caches made once per process (tracing builds and runs the
# network): (family, in_channels) -> its TraceResult (_TRACES), and -> the traced network's parameter shapes,
# by name (_SHAPES).
_ALLOWED_MODULES: set[str] = set()
_TRACES: dict = {}
_SHAPES: dict = {}


def is_traced(family: str) -> bool:
    return family.startswith(PREFIXES)


def arch_label(family: str, width: float) -> str:
    """``conv4 x0.5``: how an architecture is named in logs and tables (a traced network: its name)."""
    return family if is_traced(family) else f"{family} x{width:g}"


def network_name(base: str, kwargs: dict | None) -> str:
    """``base`` plus its keyword arguments as canonical JSON (sorted keys), when it has any."""
    return base + json.dumps(kwargs, sort_keys=True) if kwargs else base


def split_name(family: str) -> tuple[str, dict]:
    """``'torchvision:mobilenet_v2{"width_mult": 0.5}'`` -> ``('torchvision:mobilenet_v2', {'width_mult': 0.5})``."""
    base, brace, rest = family.partition("{")
    if not brace:
        return base, {}
    try:
        kwargs = json.loads(brace + rest)
    except ValueError:
        kwargs = None
    if not isinstance(kwargs, dict):
        raise UserError(f"Network {family!r} has keyword arguments that are not a JSON object.")
    return base, kwargs


def allow_module(factory: str) -> None:
    """Let this process import the user's ``pkg.mod:factory`` (its recipe names it)."""
    _ALLOWED_MODULES.add(factory)


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _factory(base: str):
    kind, _, name = base.partition(":")
    if kind == "torchvision":
        import torchvision

        if name not in torchvision_names():
            raise UserError(f"torchvision has no classification network {name!r}; choose one of "
                            f"torchvision.models.list_models() (e.g. resnet18, mobilenet_v2, densenet121).")
        return torchvision.models.get_model_builder(name)
    if name not in _ALLOWED_MODULES:
        raise UserError(f"The network {base!r} is a user's own factory, imported only when the recipe names it "
                        "(model.module): pass the recipe (--config) that does.")
    module_name, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except SystemExit as err:  # sys.exit() on import would end the command silently with its status
        raise UserError(f"model.module {name!r} called sys.exit({err.code!r}) when imported; a module that "
                        "builds a network must not exit.") from None
    except Exception as err:  # ImportError, AttributeError, or whatever the user's module raised on import
        raise UserError(f"model.module {name!r} cannot be imported ({type(err).__name__}: {err}); "
                        "put its package on PYTHONPATH and name it 'package.module:factory'.") from None


def _build_network(family: str, in_channels: int) -> nn.Module:
    base, kwargs = split_name(family)
    if kwargs.get("weights") is not None:  # weights: null asks for none, which downloads nothing
        raise UserError(f"{family!r} asks for torchvision weights by name, which would be downloaded; pass a "
                        "trained network's state dict instead (run: --from-pretrained, transfer: --pretrained).")
    factory = _factory(base)
    try:
        net = factory(**kwargs)
    except TypeError as err:
        raise UserError(f"{base} does not take the keyword arguments {kwargs} (model.kwargs): {err}.") from None
    except SystemExit as err:  # would end the command silently with the factory's status
        raise UserError(f"{base}(**{kwargs}) called sys.exit({err.code!r}); a network factory must return "
                        "an nn.Module, not exit.") from None
    except Exception as err:  # the builder's own error, named rather than shown as a traceback
        raise UserError(f"{base}(**{kwargs}) raised {type(err).__name__}: {err}.") from None
    if not isinstance(net, nn.Module):
        raise UserError(f"{base} returned a {type(net).__name__}, not a torch.nn.Module.")
    _read_channels(net, in_channels)
    return net


def _read_channels(net: nn.Module, in_channels: int) -> None:
    """Make the first convolution read ``in_channels`` image channels (torchvision builds for 3; a factory
    built for other images is left as it is, and a probe that does not fit it says so)."""
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first.in_channels != 3 or in_channels == 3 or first.groups != 1:
        return
    replacement = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride, first.padding,
                            first.dilation, 1, first.bias is not None, first.padding_mode,
                            device=first.weight.device)
    for parent in net.modules():
        for key, child in parent.named_children():
            if child is first:
                setattr(parent, key, replacement)


def traced(family: str, in_channels: int) -> TraceResult:
    """The analysis of ``family`` reading ``in_channels`` channels (traced once per process, on ``meta``)."""
    key = (family, in_channels)
    if key not in _TRACES:
        try:
            with torch.device("meta"):  # no memory, no initialisation
                net = _build_network(family, in_channels)
        except UserError:  # a builder that computes with tensors (RegNet's widths), or a real error: on the CPU
            net = _build_network(family, in_channels)
        try:
            _TRACES[key] = trace(net, in_channels)
            _SHAPES[key] = _shapes(net)
        except TracingError as err:
            raise UserError(f"{family} cannot be used as a learngene network: {err}.") from None
        if not _TRACES[key].layers:  # the notes say why each conv was left out; none: there was none
            why = "; ".join(_TRACES[key].notes[:2]) or "no nn.Conv2d module is called in its forward"
            raise UserError(f"{family} has no convolution the analysis can put in a learngene ({why}).")
    return _TRACES[key]


def _shapes(net: nn.Module) -> dict[str, tuple]:
    return {name: tuple(p.shape) for name, p in net.named_parameters()}


def _check_same_network(family: str, traced_shapes: dict | None, built: dict) -> None:
    """A factory that builds another network on a later call (its width from a counter, say) would not
    match its trace: say so rather than fail later with an IndexError."""
    if traced_shapes is None or traced_shapes == built:
        return
    name = next((n for n in traced_shapes if built.get(n) != traced_shapes[n]), None) or \
        next(n for n in built if n not in traced_shapes)
    raise UserError(f"{family} built another network on a later call than the one traced (its {name!r} is "
                    f"{list(built[name]) if name in built else 'missing'}, traced as "
                    f"{list(traced_shapes[name]) if name in traced_shapes else 'missing'}); its factory must "
                    "build the same network on every call.")


def network_notes(family: str, in_channels: int) -> tuple[str, ...]:
    """What the analysis of a traced network left out of its genome, one line each (none for ours)."""
    return traced(family, in_channels).notes if is_traced(family) else ()


def traced_spec(family: str, in_channels: int) -> ArchSpec:
    result = traced(family, in_channels)
    return ArchSpec(family, 1.0, in_channels, result.layers, result.groups)


class _NoNorm:
    """BatchNorm-shaped stand-in for a gene conv without one: ``bias`` is the conv's own (if any); what is
    written to the other tensors (a learngene's unit scale and statistics) goes nowhere."""

    def __init__(self, conv: nn.Conv2d):
        size, like = conv.out_channels, conv.weight
        self.weight = torch.ones(size, dtype=like.dtype, device=like.device)
        self.bias = conv.bias if conv.bias is not None else torch.zeros(size, dtype=like.dtype, device=like.device)
        self.running_mean = torch.zeros(size, dtype=like.dtype, device=like.device)
        self.running_var = torch.ones(size, dtype=like.dtype, device=like.device)


class GeneView:
    """One gene layer of a traced network: its ``conv`` and ``bn`` (or :class:`_NoNorm`)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module | None):
        self.conv, self.bn = conv, bn if bn is not None else _NoNorm(conv)

    def _parts(self) -> dict[str, nn.Module]:
        return {"conv": self.conv, **({"bn": self.bn} if isinstance(self.bn, nn.Module) else {})}

    def state_dict(self) -> dict:
        return {f"{part}.{key}": value for part, module in self._parts().items()
                for key, value in module.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        for part, module in self._parts().items():
            module.load_state_dict({key[len(part) + 1:]: value for key, value in state.items()
                                    if key.startswith(part + ".")})


def gene_view(root: nn.Module, norms: dict[str, str], name: str) -> GeneView:
    """The traced gene layer ``name`` of ``root``: its conv and the BatchNorm the analysis found after it."""
    bn = norms.get(name)
    return GeneView(root.get_submodule(name), None if bn is None else root.get_submodule(bn))


def traced_readers(root: nn.Module, spec: ArchSpec, readers,
                   replaced: dict | None = None) -> list[tuple[nn.Module, tuple]]:
    """Every convolution and linear layer of ``root`` the analysis found reading mask-group channels (``readers``;
    ``replaced`` maps a module's name to the module that stands in for it, e.g. our head), with what each input
    channel is; a depthwise gene conv passes its channels on within their group (each output reads its own
    input) rather than reading them, so it is not one."""
    passes = {layer.name for layer in spec.layers if layer.in_group is None}
    replaced = replaced or {}
    return [(replaced.get(reader.module) or root.get_submodule(reader.module), reader.channels)
            for reader in readers if reader.module not in passes]


class TracedBackbone(Backbone):
    """A traced network (``self.net``, its final linear replaced by ``Identity``) + our linear head."""

    stackable = False

    def __init__(self, family: str, in_channels: int = 3, num_classes: int = 64):
        super().__init__(num_classes)
        result = traced(family, in_channels)
        self.net = _build_network(family, in_channels)
        _check_same_network(family, _SHAPES.get((family, in_channels)), _shapes(self.net))
        parent, _, leaf = result.head.rpartition(".")
        setattr(self.net.get_submodule(parent) if parent else self.net, leaf, nn.Identity())
        self.feature_dim, self.readers = result.feature_dim, result.readers
        self.spec = ArchSpec(family, 1.0, in_channels, result.layers, result.groups)
        self._norms = dict(result.norms)
        self._head_name = result.head
        self._feature_keep = None
        self._make_head()

    def forward_features(self, x):
        features = self.net(x)
        return features if self._feature_keep is None else features * self._feature_keep

    def gene_module(self, name: str) -> GeneView:
        return gene_view(self.net, self._norms, name)

    def channel_readers(self) -> list[tuple[nn.Module, tuple]]:
        """:func:`traced_readers` of the network, our head in place of its own."""
        return traced_readers(self.net, self.spec, self.readers, {self._head_name: self.head})

    def silence_dropped_channels(self, masks: dict[str, np.ndarray]) -> list:
        """Every convolution and linear layer reads only kept channels (input hooks), and so do the
        features: dropped channels may be computed but reach nothing (see :mod:`.tracing`)."""
        device = next(self.parameters()).device
        handles = []
        for reader in self.readers:
            keep = _keep(reader.channels, masks, device)
            if keep is None:
                continue
            if reader.module == self._head_name:  # the features (prototypes read them) and so our head
                self._feature_keep = keep.view(1, -1)
                handles.append(_Undo(self))
                continue
            handles.append(self.net.get_submodule(reader.module).register_forward_pre_hook(
                lambda m, args, keep=keep: (args[0] * keep.view(1, -1, *[1] * (args[0].dim() - 2)),) + args[1:]))
        return handles


class _Undo:
    def __init__(self, model: TracedBackbone):
        self.model = model

    def remove(self):
        self.model._feature_keep = None


def _keep(channels: tuple, masks: dict[str, np.ndarray], device) -> torch.Tensor | None:
    if all(place is None for place in channels):
        return None
    keep = [True if place is None else bool(masks[place[0]][place[1]]) for place in channels]
    return torch.tensor(keep, dtype=torch.float32, device=device)
