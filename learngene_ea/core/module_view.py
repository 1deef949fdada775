"""A user's own ``nn.Module`` instance seen as a network with gene layers, without copying or changing it.

:class:`ModuleView` traces the module (:func:`~.tracing.trace`) and offers what
:func:`~.learngene.extract_learngene` and :func:`~.learngene.inherit_learngene` read and write: its
``spec`` (gene layers and mask groups), each gene layer's conv and BatchNorm (the module's own tensors,
so a learngene written through the view is in the module), the layers that read each group (its own
final linear included) and ``parameters()``. Unlike a traced family
(:class:`~.traced.TracedBackbone`), nothing is built from a name and the head is not replaced: the
module the user holds is the network.
"""
from __future__ import annotations

import copy

from torch import nn

from .backbone import ArchSpec
from .traced import GeneView, gene_view, traced_readers
from .tracing import TracingError, trace
from ..errors import UserError


def module_family(module: nn.Module) -> str:
    """The family name a learngene of ``module`` records: ``module:<its class>``, the factory that builds
    one like it (a recipe names it as ``model.module`` to evolve or transfer with it)."""
    cls = type(module)
    return f"module:{cls.__module__}:{cls.__qualname__}"


class ModuleView:
    """``module`` (any CNN ending in an ``nn.Linear``) through its trace; see the module docstring."""

    def __init__(self, module: nn.Module, in_channels: int = 3, family: str | None = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected a torch.nn.Module, not a {type(module).__name__}")
        try:  # on a meta copy: the shape probe runs forward, which would move the module's BatchNorm statistics
            result = trace(copy.deepcopy(module).to("meta"), in_channels)
        except TracingError as err:
            raise UserError(f"{type(module).__name__} cannot hold a learngene: {err}.") from None
        if not result.layers:
            raise UserError(f"{type(module).__name__} has no convolution the analysis can put in a learngene.")
        self.module = module
        self.spec = ArchSpec(family or module_family(module), 1.0, in_channels, result.layers, result.groups)
        self._norms = dict(result.norms)
        self._readers = result.readers
        self.notes = result.notes  # what the analysis left out of the genome, and why (one line each)

    def parameters(self):
        return self.module.parameters()

    def gene_module(self, name: str) -> GeneView:
        return gene_view(self.module, self._norms, name)

    def channel_readers(self) -> list[tuple[nn.Module, tuple]]:
        """:func:`~.traced.traced_readers` of the module, its own head among them."""
        return traced_readers(self.module, self.spec, self._readers)
