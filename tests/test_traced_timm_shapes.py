"""timm-shaped networks traced (``learngene_ea.core.tracing``): a BatchNorm fused with its activation (timm's
``BatchNormAct2d``) is the BatchNorm and activation it fuses, and a head made of layers after the global
pooling (timm's MobileNetV3: pooling, a 1x1 ``conv_head``, an activation, the linear layer) is the head, its
convolutions left out of the genome with a note. The networks are defined here; timm itself is optional."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import seeded_trained_like
import learngene_ea as lg
from learngene_ea.core import traced
from learngene_ea.core.backbone import input_mask
from learngene_ea.core.models import build_model
from learngene_ea.core.tracing import trace
from learngene_ea.fewshot.training import learngene_channels_only


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d`` in short: a BatchNorm2d subclass (so torch.fx traces into its forward) that
    normalises with ``F.batch_norm`` on its own tensors, then applies its dropout and its activation."""

    def __init__(self, num_features: int, act_layer=nn.ReLU):
        super().__init__(num_features)
        self.drop, self.act = nn.Identity(), act_layer()

    def forward(self, x):
        torch._assert(x.ndim == 4, "expected a 4D input")  # as timm's: the conv's output is read for its ndim
        if self.training:
            self.num_batches_tracked.add_(1)
        x = F.batch_norm(x, self.running_mean, self.running_var, weight=self.weight, bias=self.bias,
                         training=self.training, momentum=self.momentum, eps=self.eps)
        return self.act(self.drop(x))


class Linear(nn.Linear):
    """timm's ``Linear``: an nn.Linear subclass whose forward calls ``F.linear`` on its own weight."""

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def norm_act(channels: int, fused: bool, act_layer=nn.SiLU) -> nn.Module:
    return BatchNormAct2d(channels, act_layer) if fused else nn.Sequential(nn.BatchNorm2d(channels), act_layer())


class TinyEfficientNet(nn.Module):
    """timm's EfficientNet / MobileNetV3 in miniature: a stem, one inverted residual block (expand, depthwise,
    project, added to its input) and a 1x1 ``conv_head``, before the global pooling (EfficientNet, with a
    BatchNorm) or after it (``pooled_head``: MobileNetV3, with a bias and a hard-swish, and timm's
    :class:`Linear` as its classifier), then the classifier."""

    def __init__(self, width: int = 8, fused: bool = True, pooled_head: bool = False, classes: int = 5):
        super().__init__()
        self.pooled_head = pooled_head
        self.conv_stem, self.bn1 = nn.Conv2d(3, width, 3, padding=1, bias=False), norm_act(width, fused)
        self.conv_pw, self.bn2 = nn.Conv2d(width, 4 * width, 1, bias=False), norm_act(4 * width, fused)
        self.conv_dw = nn.Conv2d(4 * width, 4 * width, 3, padding=1, groups=4 * width, bias=False)
        self.bn3 = norm_act(4 * width, fused)
        self.conv_pwl, self.bn4 = nn.Conv2d(4 * width, width, 1, bias=False), norm_act(width, fused, nn.Identity)
        self.conv_head = nn.Conv2d(width, 4 * width, 1, bias=pooled_head)
        self.bn_head = nn.Hardswish() if pooled_head else norm_act(4 * width, fused)
        self.global_pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.classifier = (Linear if pooled_head else nn.Linear)(4 * width, classes)

    def forward(self, x):
        x = self.bn1(self.conv_stem(x))
        x = x + self.bn4(self.conv_pwl(self.bn3(self.conv_dw(self.bn2(self.conv_pw(x))))))
        if self.pooled_head:
            x = self.bn_head(self.conv_head(self.global_pool(x)))
        else:
            x = self.global_pool(self.bn_head(self.conv_head(x)))
        return self.classifier(self.flatten(x))


def tiny_efficientnet(width: int = 8, pooled_head: bool = False):
    return TinyEfficientNet(width, pooled_head=pooled_head)


CONVS = ["conv_stem", "conv_pw", "conv_dw", "conv_pwl", "conv_head"]


def summary(result):
    """(name, group, in_group, norm) of every gene layer, and the groups."""
    return [(layer.name, layer.group, layer.in_group, layer.norm) for layer in result.layers], result.groups


def test_a_fused_batchnorm_activation_traces_as_the_batchnorm_and_activation_it_fuses():
    fused, plain = trace(TinyEfficientNet(fused=True), 3, 16), trace(TinyEfficientNet(fused=False), 3, 16)
    assert [layer.name for layer in fused.layers] == CONVS and fused.notes == ()  # every conv in the genome
    assert summary(fused) == summary(plain)
    assert all(layer.norm == "bn" for layer in fused.layers)
    assert dict(fused.norms) == {"conv_stem": "bn1", "conv_pw": "bn2", "conv_dw": "bn3", "conv_pwl": "bn4",
                                 "conv_head": "bn_head"}


class MixingNorm(nn.BatchNorm2d):
    """A BatchNorm2d subclass whose forward mixes the channels after normalising them."""

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training)
        return x - x.mean(1, keepdim=True)


def test_what_a_fused_norms_forward_does_after_the_batchnorm_is_still_analysed():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), MixingNorm(4), nn.Conv2d(4, 6, 3, bias=False),
                          nn.BatchNorm2d(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    result = trace(model, 3, 16)
    assert [layer.name for layer in result.layers] == ["2"]
    assert result.notes == ("0: its outputs are read by mean, which the analysis cannot mask",)


def test_the_layers_after_the_global_pooling_are_the_head_and_its_convolutions_are_left_out_with_a_note():
    result = trace(TinyEfficientNet(pooled_head=True), 3, 16)
    assert [layer.name for layer in result.layers] == CONVS[:-1]
    assert result.notes == ("conv_head: a layer of the head (after the global pooling), left out of the genome "
                            "(fresh in descendants)",)
    assert result.head == "classifier" and result.feature_dim == 32  # timm's Linear, reading conv_head's outputs
    reads = {reader.module: reader.channels for reader in result.readers}
    assert reads["conv_head"] == tuple(("conv_stem", k) for k in range(8))  # a reader of the last group
    assert set(reads["classifier"]) == {None}  # the head's own channels are outside the groups


def test_a_convolution_before_the_global_pooling_stays_a_gene_layer():
    result = trace(TinyEfficientNet(pooled_head=False), 3, 16)
    assert result.layers[-1].name == "conv_head" and result.layers[-1].in_group == "conv_stem"


def test_a_linear_layer_followed_by_an_identity_is_the_head():
    """timm's ``ClassifierHead`` ends in ``flatten = nn.Identity()`` after its linear layer."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2), nn.Identity())
    result = trace(model, 3, 16)
    assert result.head == "5" and [layer.name for layer in result.layers] == ["0"]


FAMILY = "module:test_traced_timm_shapes:tiny_efficientnet"


@pytest.fixture
def allowed(monkeypatch):
    monkeypatch.setattr(traced, "_ALLOWED_MODULES", {"test_traced_timm_shapes:tiny_efficientnet"})


@pytest.mark.parametrize("pooled_head", [False, True])
def test_dropped_channels_contribute_nothing_to_the_masked_timm_shaped_network(allowed, pooled_head):
    """Changing every weight of a dropped channel (its filters, its fused BatchNorm, its column in every layer
    reading it, the pooled head's conv_head included) leaves the learngene sub-network's output unchanged."""
    model = build_model(FAMILY + '{"pooled_head": %s}' % str(pooled_head).lower(), num_classes=5, seed=0).eval()
    rng = np.random.default_rng(1)
    masks = {group: np.arange(size) % 2 == 0 for group, size in model.spec.groups}
    images = torch.randn(2, 3, 16, 16)
    with learngene_channels_only(model, masks), torch.no_grad():
        before = model(images)
        for layer in model.spec.layers:
            gene, dropped = model.gene_module(layer.name), torch.as_tensor(~masks[layer.group])
            gene.conv.weight[dropped] = torch.from_numpy(rng.normal(size=gene.conv.weight[dropped].shape)).float()
            if layer.in_group is not None:
                gene.conv.weight[:, torch.as_tensor(~input_mask(layer, masks))] = 7.0
            gene.bn.bias[dropped] = 3.0
        if pooled_head:
            model.net.conv_head.weight[:, torch.as_tensor(~masks["conv_stem"])] = 7.0
        after = model(images)
    with torch.no_grad():
        whole = model(images)
    assert torch.equal(before, after)
    assert not torch.equal(after, whole)  # the masks do silence something


def test_a_learngene_of_a_pooled_head_network_with_fused_norms_goes_into_a_wider_one():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"1 layer\(s\) left out of the learngene: conv_head: a layer of the head"):
        learngene = lg.extract_learngene(seeded_trained_like(TinyEfficientNet(pooled_head=True), 1), 0.25)
    assert learngene.meta["left_out"] == [next(iter(trace(TinyEfficientNet(pooled_head=True), 3).notes))]
    assert set(learngene.weights) == set(CONVS[:-1])  # the head's conv_head is not inherited
    images = torch.randn(4, 3, 16, 16)
    grown = TinyEfficientNet(width=16, pooled_head=True).eval()
    silent = TinyEfficientNet(width=16, pooled_head=True).eval()
    silent.load_state_dict(grown.state_dict())
    head_before = grown.conv_head.weight.detach().clone()
    lg.inherit(grown, learngene, fresh_channels="grow")
    lg.inherit(silent, learngene, fresh_channels="scaled", complement_scale=0.0)
    assert torch.equal(grown(images), silent(images))  # conv_head reads the fresh channels with zero weights
    kept = np.flatnonzero(learngene.masks["conv_stem"])
    assert torch.equal(grown.bn1.weight[kept].detach(), torch.from_numpy(learngene.weights["conv_stem"]["bn_weight"]))
    assert torch.equal(grown.conv_head.weight[:, kept], head_before[:, kept])  # not written: fresh


def test_real_timm_networks_keep_every_plain_convolution_and_accept_a_pooled_head():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        efficientnet = timm.create_model("efficientnet_b0", num_classes=5)
        mobilenet = timm.create_model("mobilenetv3_small_050", num_classes=5)
    convs = [name for name, module in efficientnet.named_modules() if isinstance(module, nn.Conv2d)]
    assert [layer.name for layer in trace(efficientnet, 3, 32).layers] == convs  # 81 of 81
    result = trace(mobilenet, 3, 32)
    assert result.head == "classifier" and result.notes == (
        "conv_head: a layer of the head (after the global pooling), left out of the genome (fresh in descendants)",)
    assert len(result.layers) == sum(isinstance(m, nn.Conv2d) for m in mobilenet.modules()) - 1
