"""Backbones: Conv4/Conv6, VGG11/13/16 (32x32 variant), ResNet12/24 (few-shot ResNet).

Every backbone is a :class:`Backbone`: a feature extractor made of *gene layers* (conv + its
BatchNorm, each a :class:`ConvBN`) followed by a replaceable linear head. ``model.spec``
describes the gene layers and their *mask groups* (outputs that are summed, like a residual
block's last conv and its shortcut, share a group) as plain data, which is what learngenes,
operators and checkpoints work with.

A family is a constructor ``(width, in_channels, num_classes) -> Backbone`` registered under its name by
``@register_family(name)`` beside its definition (timm's ``@register_model``); :func:`list_families` gives the
names (``model.family``'s choices, and every message listing them), ``build_model(family, width)`` builds one.
A width multiplier scales every gene layer; the depth variants (conv6, vgg13, vgg16, resnet24) exist for
scalability.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import ArchSpec, Backbone, GeneLayer
from .process_settings import THIS_PROCESS
from .traced import TracedBackbone, is_traced, traced_spec


class ConvBN(nn.Module):
    """A gene layer: convolution (no bias) followed by BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


def _channels(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


class ConvNet(Backbone):
    """Conv4 / Conv6: blocks of conv3x3-BN-ReLU, max-pooled after each of the first four."""

    def __init__(self, depth: int = 4, width: float = 1.0, in_channels: int = 3, num_classes: int = 64):
        super().__init__(num_classes)
        channels = _channels(64, width)
        self.blocks = nn.ModuleList()
        layers, prev_group, prev_channels = [], None, in_channels
        for i in range(depth):
            self.blocks.append(ConvBN(prev_channels, channels))
            name = f"blocks.{i}"
            layers.append(GeneLayer(name, name, prev_group, prev_channels, channels, 3,
                                    stage=min(i, 3), index=max(0, i - 3), role="conv"))
            prev_group, prev_channels = name, channels
        self.pool_after = min(depth, 4)
        self.feature_dim = channels
        self.spec = ArchSpec(f"conv{depth}", width, in_channels, tuple(layers),
                             tuple((layer.group, layer.out_channels) for layer in layers))
        self._make_head()

    def forward_features(self, x):
        for i, block in enumerate(self.blocks):
            x = torch.relu(block(x))
            if i < self.pool_after:
                x = nn.functional.max_pool2d(x, 2)
        return x.mean(dim=(2, 3))


VGG_STAGES = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
}


class VGG(Backbone):
    """VGG for 32x32 images (CIFAR variant): five stages of conv3x3-BN-ReLU, each max-pooled."""

    def __init__(self, family: str = "vgg11", width: float = 1.0, in_channels: int = 3, num_classes: int = 64):
        super().__init__(num_classes)
        self.stages = nn.ModuleList()
        layers, prev_group, prev_channels = [], None, in_channels
        for s, widths in enumerate(VGG_STAGES[family]):
            stage = nn.ModuleList()
            for i, base in enumerate(widths):
                channels = _channels(base, width)
                stage.append(ConvBN(prev_channels, channels))
                name = f"stages.{s}.{i}"
                layers.append(GeneLayer(name, name, prev_group, prev_channels, channels, 3,
                                        stage=s, index=i, role="conv"))
                prev_group, prev_channels = name, channels
            self.stages.append(stage)
        self.feature_dim = prev_channels
        self.spec = ArchSpec(family, width, in_channels, tuple(layers),
                             tuple((layer.group, layer.out_channels) for layer in layers))
        self._make_head()

    def forward_features(self, x):
        for stage in self.stages:
            for layer in stage:
                x = torch.relu(layer(x))
            if x.shape[-1] > 1:
                x = nn.functional.max_pool2d(x, 2)
        return x.mean(dim=(2, 3))


class ResBlock(nn.Module):
    """Few-shot residual block: three conv3x3-BN (LeakyReLU) + a 1x1 conv-BN shortcut."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = ConvBN(in_channels, channels)
        self.conv2 = ConvBN(channels, channels)
        self.conv3 = ConvBN(channels, channels)
        self.shortcut = ConvBN(in_channels, channels, kernel_size=1)

    def forward(self, x):
        act = nn.functional.leaky_relu
        out = act(self.conv1(x), 0.1)
        out = act(self.conv2(out), 0.1)
        out = self.conv3(out) + self.shortcut(x)
        return act(out, 0.1)


class ResNet(Backbone):
    """ResNet12 (one block per stage, 64-160-320-640) and ResNet24 (two blocks per stage).

    Every block has a 1x1 shortcut so that its output is a mask group shared by ``conv3`` and
    ``shortcut`` (their outputs are added, so they must keep the same channels).
    """

    def __init__(self, blocks_per_stage: int = 1, width: float = 1.0, in_channels: int = 3,
                 num_classes: int = 64):
        super().__init__(num_classes)
        self.stages = nn.ModuleList()
        layers, prev_group, prev_channels = [], None, in_channels
        groups = []
        for s, base in enumerate((64, 160, 320, 640)):
            channels = _channels(base, width)
            stage = nn.ModuleList()
            for b in range(blocks_per_stage):
                stage.append(ResBlock(prev_channels, channels))
                prefix = f"stages.{s}.{b}"
                out_group = f"{prefix}.out"
                for role, in_group, in_ch, group, k in (
                    ("conv1", prev_group, prev_channels, f"{prefix}.conv1", 3),
                    ("conv2", f"{prefix}.conv1", channels, f"{prefix}.conv2", 3),
                    ("conv3", f"{prefix}.conv2", channels, out_group, 3),
                    ("shortcut", prev_group, prev_channels, out_group, 1),
                ):
                    layers.append(GeneLayer(f"{prefix}.{role}", group, in_group, in_ch, channels, k,
                                            stage=s, index=b, role=role))
                groups += [(f"{prefix}.conv1", channels), (f"{prefix}.conv2", channels), (out_group, channels)]
                prev_group, prev_channels = out_group, channels
            self.stages.append(stage)
        self.feature_dim = prev_channels
        family = {1: "resnet12", 2: "resnet24"}.get(blocks_per_stage, f"resnet{12 * blocks_per_stage}")
        self.spec = ArchSpec(family, width, in_channels, tuple(layers), tuple(groups))
        self._make_head()

    def forward_features(self, x):
        for stage in self.stages:
            for block in stage:
                x = block(x)
            if x.shape[-1] > 1:
                x = nn.functional.max_pool2d(x, 2)
        return x.mean(dim=(2, 3))


def _init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# The registry of our families: name -> constructor, filled by @register_family and read through list_families.
_FAMILIES: dict = {}


def register_family(name: str):
    """Decorator: register ``constructor(width, in_channels, num_classes) -> Backbone`` as the family ``name``.

    The name is then a ``model.family`` (recipes, ``build_model``, ``--descendants name@width``) in every
    process that ran the decorator. A name registered twice, or not in lower case (``--descendants`` reads
    names case-blind), or with ``:`` (a traced network's form) or ``@`` (a descendant's width), is a ValueError.
    """
    if name in _FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    if name != name.lower() or ":" in name or "@" in name:
        raise ValueError(f"model family {name!r} must be lower case, without ':' or '@'")

    def register(constructor):
        _FAMILIES[name] = constructor
        return constructor

    return register


def list_families() -> list[str]:
    """The names of our families, in the order they were registered."""
    return list(_FAMILIES)


@register_family("conv4")
def conv4(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> ConvNet:
    """Conv4: four conv3x3-BN-ReLU blocks of 64 channels (times ``width``), each max-pooled."""
    return ConvNet(4, width, in_channels, num_classes)


@register_family("conv6")
def conv6(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> ConvNet:
    """Conv6: Conv4 with two more blocks (not pooled)."""
    return ConvNet(6, width, in_channels, num_classes)


@register_family("vgg11")
def vgg11(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> VGG:
    """VGG11 for 32x32 images."""
    return VGG("vgg11", width, in_channels, num_classes)


@register_family("vgg13")
def vgg13(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> VGG:
    """VGG13 for 32x32 images."""
    return VGG("vgg13", width, in_channels, num_classes)


@register_family("vgg16")
def vgg16(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> VGG:
    """VGG16 for 32x32 images."""
    return VGG("vgg16", width, in_channels, num_classes)


@register_family("resnet12")
def resnet12(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> ResNet:
    """ResNet12: one residual block per stage (64-160-320-640 channels, times ``width``)."""
    return ResNet(1, width, in_channels, num_classes)


@register_family("resnet24")
def resnet24(width: float = 1.0, in_channels: int = 3, num_classes: int = 64) -> ResNet:
    """ResNet24: two residual blocks per stage."""
    return ResNet(2, width, in_channels, num_classes)


def use_channels_last(on: bool) -> None:
    """Build models and image batches channels-last (NHWC) in this process from now on, or not.

    Set per process from ``runtime.channels_last`` (like the thread count; kept in
    :data:`~.process_settings.THIS_PROCESS`); the arithmetic is the same, the convolution kernels and
    the summation order are not.
    """
    THIS_PROCESS.memory_format = torch.channels_last if on else torch.contiguous_format


def memory_format() -> torch.memory_format:
    """The layout this process gives conv weights and image batches (see :func:`use_channels_last`)."""
    return THIS_PROCESS.memory_format


def build_model(family: str, width: float = 1.0, in_channels: int = 3, num_classes: int = 64,
                seed: int | None = None, device: str | torch.device = "cpu") -> Backbone:
    """A freshly initialised backbone; ``seed`` makes the initialisation reproducible.

    ``family`` is one of ours (:func:`list_families`, scaled by ``width``) or a traced network
    (``torchvision:NAME``, ``module:pkg.mod:factory``, see :mod:`.traced`; initialised as its
    builder does, ``width`` 1).
    """
    if family not in _FAMILIES and not is_traced(family):
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(list_families())}, "
                         "torchvision:NAME or a recipe's model.module")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = _new_model(family, width, in_channels, num_classes)
    return model.to(device=device, memory_format=memory_format())


def _new_model(family: str, width: float, in_channels: int, num_classes: int) -> Backbone:
    if is_traced(family):
        return TracedBackbone(family, in_channels, num_classes)
    model = _FAMILIES[family](width, in_channels, num_classes)
    _init_weights(model)
    return model


# A process-wide cache, (family, width, in_channels) -> ArchSpec: building a spec (on ``meta``) is needed by
# every operator and evaluation, and its value never changes within a process.
_SPEC_CACHE: dict = {}


def arch_spec(family: str, width: float = 1.0, in_channels: int = 3) -> ArchSpec:
    """The :class:`ArchSpec` of a family/width without keeping a model around."""
    if is_traced(family):
        return traced_spec(family, in_channels)
    key = (family, float(width), in_channels)
    if key not in _SPEC_CACHE:
        with torch.device("meta"):
            _SPEC_CACHE[key] = _FAMILIES[family](width, in_channels, 2).spec
    return _SPEC_CACHE[key]
