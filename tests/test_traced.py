"""Learngenes of networks we did not write: gene layers, mask groups and head found by tracing
(``learngene_ea.core.tracing``), checked against groups derived by hand from torchvision's code."""
import numpy as np
import pytest
import torch
from torch import nn

from learngene_ea.core.backbone import input_mask
from learngene_ea.core.learngene import extract_learngene, inherit_learngene, load_learngene
from learngene_ea.core.models import arch_spec, build_model
from learngene_ea.core.tracing import trace
from learngene_ea.errors import UserError
from learngene_ea.fewshot.training import learngene_channels_only


def writers(spec):
    """group -> sorted names of the gene layers writing it."""
    found = {}
    for layer in spec.layers:
        found.setdefault(layer.group, []).append(layer.name)
    return {group: sorted(names) for group, names in found.items()}


def test_resnet18_groups_are_the_residual_streams_and_each_blocks_inner_conv():
    spec = arch_spec("torchvision:resnet18")
    expected = {"conv1": ["conv1", "layer1.0.conv2", "layer1.1.conv2"]}
    for s in (1, 2, 3, 4):
        for b in (0, 1):
            expected[f"layer{s}.{b}.conv1"] = [f"layer{s}.{b}.conv1"]
        if s > 1:  # the stage's first block: conv2 comes before its downsample in BasicBlock.forward
            expected[f"layer{s}.0.conv2"] = sorted([f"layer{s}.0.conv2", f"layer{s}.0.downsample.0", f"layer{s}.1.conv2"])
    assert writers(spec) == expected
    assert spec.group_sizes["layer3.0.conv2"] == 256
    stream = {1: "conv1", 2: "layer2.0.conv2", 3: "layer3.0.conv2", 4: "layer4.0.conv2"}
    for s in (2, 3, 4):
        assert spec.layer(f"layer{s}.0.conv1").in_group == stream[s - 1]
        assert spec.layer(f"layer{s}.0.downsample.0").in_group == stream[s - 1]
        assert spec.layer(f"layer{s}.1.conv2").in_group == f"layer{s}.1.conv1"
    assert spec.layer("conv1").in_group is None and spec.layer("conv1").kernel_size == 7


def test_resnet50_bottleneck_streams_start_at_the_stages_first_conv3():
    spec = arch_spec("torchvision:resnet50")
    groups = writers(spec)
    for s, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        stream = f"layer{s}.0.conv3"
        assert groups[stream] == sorted([f"layer{s}.{b}.conv3" for b in range(blocks)] + [f"layer{s}.0.downsample.0"])
        for b in range(blocks):
            assert groups[f"layer{s}.{b}.conv1"] == [f"layer{s}.{b}.conv1"]
            assert groups[f"layer{s}.{b}.conv2"] == [f"layer{s}.{b}.conv2"]
            assert spec.layer(f"layer{s}.{b}.conv3").in_group == f"layer{s}.{b}.conv2"
    assert groups["conv1"] == ["conv1"]  # the stem (64) is not summed with layer1's stream (256)
    assert spec.layer("layer1.0.downsample.0").in_group == "conv1"
    assert len(spec.groups) == 1 + 4 + 2 * 16


def test_mobilenet_v2_depthwise_convs_share_their_expansion_group_and_residuals_join_the_stream():
    spec = arch_spec("torchvision:mobilenet_v2")
    groups = writers(spec)
    # (expansion t, channels c, blocks n) of torchvision's inverted_residual_setting
    setting = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
    assert groups["features.0.0"] == ["features.0.0", "features.1.conv.0.0"]  # block 1: depthwise on the stem
    block = 2
    for t, c, n in setting[1:]:
        project = [f"features.{block + k}.conv.2" for k in range(n)]
        assert groups[project[0]] == sorted(project)  # stride-1 repeats add to the stage's first output
        for k in range(n):
            expand, depthwise = f"features.{block + k}.conv.0.0", f"features.{block + k}.conv.1.0"
            assert groups[expand] == sorted([expand, depthwise])
            assert spec.layer(depthwise).in_channels == 1 and spec.layer(depthwise).in_group is None
            assert spec.layer(project[k]).in_group == expand
        block += n
    assert groups["features.18.0"] == ["features.18.0"]
    assert len(spec.groups) == 25


def test_densenet121_concatenations_are_read_as_their_parts_in_order():
    spec = arch_spec("torchvision:densenet121")
    assert all(names == [group] for group, names in writers(spec).items())  # nothing is summed
    block1 = "features.denseblock1.denselayer{}.conv2"
    assert spec.layer("features.denseblock1.denselayer1.conv1").in_group == "features.conv0"
    assert spec.layer("features.denseblock1.denselayer3.conv1").in_group == "+".join(
        ["features.conv0", block1.format(1), block1.format(2)])
    assert spec.layer("features.transition1.conv").in_group == "+".join(
        ["features.conv0"] + [block1.format(k) for k in range(1, 7)])
    assert spec.layer("features.denseblock2.denselayer1.conv1").in_group == "features.transition1.conv"
    # conv1 is normalised by the layer's norm2; conv2 feeds the concatenation (later norm1s: not its own)
    assert spec.layer("features.denseblock1.denselayer1.conv1").norm == "bn"
    assert spec.layer("features.denseblock1.denselayer1.conv2").norm == "none"
    assert spec.layer("features.denseblock1.denselayer1.conv1").num_params() == 128 * 64 + 2 * 128


NETWORKS = ["torchvision:resnet18", "torchvision:resnet50", "torchvision:mobilenet_v2", "torchvision:densenet121",
            # squeeze-excitation (a product of two groups), grouped convs, channel shuffles (views): what is
            # left out of the genome or pinned must not let a dropped channel through either
            "torchvision:mobilenet_v3_small", "torchvision:regnet_y_400mf", "torchvision:shufflenet_v2_x1_0"]


def random_masks(spec, seed, keep=0.4):
    rng = np.random.default_rng(seed)
    masks = {g: rng.random(size) < keep for g, size in spec.groups}
    for mask in masks.values():
        mask[0] = True
    return masks


@pytest.mark.parametrize("family", NETWORKS)
def test_dropped_channels_contribute_nothing_to_the_masked_network(family):
    """Changing every weight of a dropped channel (its filters, its BatchNorm, its column in every
    layer reading it) leaves the learngene sub-network's output unchanged, bit for bit."""
    model = build_model(family, num_classes=5, seed=0).eval()
    masks = random_masks(model.spec, 1)
    images = torch.randn(2, 3, 32, 32)
    with learngene_channels_only(model, masks), torch.no_grad():
        before = model(images)
        for layer in model.spec.layers:
            gene = model.gene_module(layer.name)
            dropped = torch.as_tensor(~masks[layer.group])
            gene.conv.weight[dropped] = torch.randn_like(gene.conv.weight[dropped])
            if layer.in_group is not None:
                gene.conv.weight[:, torch.as_tensor(~input_mask(layer, masks))] = 7.0
            gene.bn.bias[dropped] = 3.0
        after = model(images)
    with torch.no_grad():
        whole = model(images)
    assert torch.equal(before, after)
    assert not torch.equal(after, whole)  # the masks do silence something


@pytest.mark.parametrize("family", ["torchvision:resnet18", "torchvision:mobilenet_v2"])
def test_a_descendant_that_inherits_the_learngene_computes_what_its_ancestor_does_under_the_masks(family):
    """Every parametrised layer of these networks is a gene layer: the learngene alone is the sub-network."""
    ancestor = build_model(family, num_classes=5, seed=0)
    images = torch.randn(4, 3, 32, 32)
    ancestor.train()(images)  # running statistics that are not the initial ones
    ancestor.eval()
    masks = random_masks(ancestor.spec, 2)
    descendant = build_model(family, num_classes=5, seed=1).eval()
    inherit_learngene(descendant, extract_learngene(ancestor, masks))
    with torch.no_grad(), learngene_channels_only(ancestor, masks), learngene_channels_only(descendant, masks):
        assert torch.allclose(ancestor.forward_features(images), descendant.forward_features(images), atol=1e-6)


def test_a_resnet18_learngene_fills_the_matching_layers_of_a_resnet34_and_saves_its_traced_spec(tmp_path):
    ancestor = build_model("torchvision:resnet18", num_classes=5, seed=0)
    learngene = extract_learngene(ancestor, random_masks(ancestor.spec, 3, keep=0.25))
    learngene.save(tmp_path / "learngene.pt")
    loaded = load_learngene(tmp_path / "learngene.pt")
    assert loaded.network == ancestor.spec and loaded.fraction == pytest.approx(learngene.fraction)
    deeper = build_model("torchvision:resnet34", num_classes=5, seed=1)
    written = inherit_learngene(deeper, loaded)
    assert set(written) == {layer.name for layer in ancestor.spec.layers}  # ResNet-34 has every one of them
    out_idx, in_idx = written["layer2.1.conv1"]
    assert torch.equal(deeper.gene_module("layer2.1.conv1").conv.weight[out_idx][:, in_idx],
                       ancestor.gene_module("layer2.1.conv1").conv.weight[out_idx][:, in_idx])
    assert "layer2.3.conv1" not in written  # ResNet-34's extra blocks stay fresh


def test_a_narrow_mobilenet_v2_learngene_is_inherited_by_the_full_width_one():
    narrow = build_model('torchvision:mobilenet_v2{"width_mult": 0.5}', num_classes=5, seed=0)
    learngene = extract_learngene(narrow, random_masks(narrow.spec, 4))
    wide = build_model("torchvision:mobilenet_v2", num_classes=5, seed=1)
    written = inherit_learngene(wide, learngene)
    assert len(written) == len(wide.spec.layers)
    out_idx, _ = written["features.5.conv.1.0"]  # a depthwise conv: one input per output
    assert torch.equal(wide.gene_module("features.5.conv.1.0").conv.weight[out_idx],
                       narrow.gene_module("features.5.conv.1.0").conv.weight[out_idx])


class MixesChannels(nn.Module):
    """A conv whose output meets a LayerNorm over channels, one grouped conv, and a plain conv."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.mixer = nn.Conv2d(8, 6, 1, bias=False)
        self.mixer_bn = nn.BatchNorm2d(6)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = self.grouped(self.stem_bn(self.stem(x)).relu())
        x = self.mixer_bn(self.mixer(x))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.fc(x.mean((2, 3)))


def test_what_the_analysis_cannot_place_is_left_out_with_a_note_naming_it():
    result = trace(MixesChannels(), 3, image_size=8)
    assert [layer.name for layer in result.layers] == ["stem"]
    notes = " | ".join(result.notes)
    assert "grouped: a grouped convolution (2 groups)" in notes
    assert "mixer: its outputs are read by permute" in notes
    assert result.head == "fc"
    assert [r.module for r in result.readers] == ["stem", "grouped", "mixer", "fc"]
    assert result.readers[1].channels == tuple(("stem", k) for k in range(8))  # the grouped conv reads masked


def test_a_network_without_a_final_linear_is_refused_in_one_sentence():
    with pytest.raises(Exception, match="is not an nn.Linear reading pooled channels"):
        trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), 3, image_size=8)


def test_torchvision_weights_by_name_and_unknown_networks_are_refused():
    with pytest.raises(UserError, match="would be downloaded"):
        build_model('torchvision:resnet18{"weights": "DEFAULT"}')
    with pytest.raises(UserError, match="no classification network 'resnet19'"):
        arch_spec("torchvision:resnet19")


def test_one_channel_images_are_read_by_a_stem_built_for_them():
    model = build_model("torchvision:resnet18", in_channels=1, num_classes=3, seed=0)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert model.spec.layer("conv1").in_channels == 1


def test_across_kinds_layers_match_where_stage_block_and_role_do_both_ways_and_nothing_else_is_refused():
    from learngene_ea.transfer.descendants import build_descendant

    ancestor = build_model("torchvision:resnet18", num_classes=5, seed=0)
    learngene = extract_learngene(ancestor, random_masks(ancestor.spec, 5))
    ours = build_descendant(learngene, "resnet12", 0.5, num_classes=5)
    # torchvision's layerS.B.conv1/conv2 are our stages.S-1.B.conv1/conv2 (3x3); its 7x7 stem and
    # downsample have no counterpart (our shortcut is another role)
    assert set(ours.inherited) == {f"stages.{s}.0.{role}" for s in range(4) for role in ("conv1", "conv2")}
    with pytest.raises(UserError, match="cannot be inherited by a conv4 x0.5 descendant: no gene layer matches"):
        build_descendant(learngene, "conv4", 0.5, num_classes=5)
    ours_learngene = extract_learngene(build_model("resnet12", 0.5, num_classes=5, seed=2), random_masks(ours.spec, 7))
    back = build_descendant(ours_learngene, "torchvision:resnet18", 1.0, num_classes=5)
    assert set(back.inherited) == {f"layer{s + 1}.0.{role}" for s in range(4) for role in ("conv1", "conv2")}


class BranchesOnData(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:  # control flow on values: torch.fx cannot follow it
            x = x.relu()
        return self.fc(x.mean((2, 3)))


def test_a_network_fx_cannot_trace_is_refused_naming_why():
    with pytest.raises(Exception, match=r"torch.fx cannot trace BranchesOnData \(TraceError: symbolically traced "
                                        "variables cannot be used as inputs to control flow"):
        trace(BranchesOnData(), 3, image_size=8)


def test_in_a_wider_densenet_a_concatenated_input_channel_keeps_its_part_and_its_index_in_it(monkeypatch):
    from learngene_ea.core import traced

    monkeypatch.setattr(traced, "_ALLOWED_MODULES", {"torchvision.models.densenet:DenseNet"})
    small = '{"block_config": [3, 2], "bn_size": 2, "growth_rate": %d, "num_init_features": 16}'
    narrow = build_model("module:torchvision.models.densenet:DenseNet" + small % 8, num_classes=5, seed=0)
    wide = build_model("module:torchvision.models.densenet:DenseNet" + small % 16, num_classes=5, seed=1)
    masks = random_masks(narrow.spec, 6)
    inherit_learngene(wide, extract_learngene(narrow, masks))
    name = "features.denseblock1.denselayer3.conv1"  # reads conv0 (16) + layer1 (8 | 16) + layer2 (8 | 16)
    assert narrow.spec.layer(name).in_group.count("+") == 2
    out = np.flatnonzero(masks[narrow.spec.layer(name).group])[0]
    for k in np.flatnonzero(masks["features.denseblock1.denselayer2.conv2"]):
        assert torch.equal(wide.gene_module(name).conv.weight[out, 16 + 16 + k],
                           narrow.gene_module(name).conv.weight[out, 16 + 8 + k])


def test_a_network_built_for_another_image_size_is_probed_at_a_size_it_accepts():
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(16),
                          nn.Flatten(), nn.Linear(4 * 2 * 2, 3))  # 32x32 images only
    result = trace(fixed, 3)
    assert [layer.name for layer in result.layers] == ["0"] and result.feature_dim == 16
    with pytest.raises(Exception, match="runs on no 3-channel image of side 64, 32, 84, 28 or 224"):
        trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(5, 2)), 3)


class OldStyleHead(nn.Module):
    """A classifier over the whole 4x4 map, flattened by ``view`` (no adaptive pooling)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.bn(self.conv(x)).relu(), 8)
        return self.fc(x.view(x.size(0), -1))


def test_a_flattened_map_is_read_channel_by_channel_and_masked_so():
    model = OldStyleHead()
    result = trace(model, 3)
    assert [layer.name for layer in result.layers] == ["conv"] and result.feature_dim == 96
    head = [r for r in result.readers if r.module == "fc"][0]
    assert head.channels[:17] == tuple([("conv", 0)] * 16 + [("conv", 1)])  # channel 0's 16 positions first
    assert result.notes == ()


class Attentions(nn.Module):
    """A spatial attention map (one channel, broadcast over all) and a mean over channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8)
        self.gate = nn.Conv2d(8, 1, 1)
        self.body = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.body_bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem_bn(self.stem(x)).relu()
        x = x * torch.sigmoid(self.gate(x))  # the gate's one channel scales every channel of x
        y = self.body_bn(self.body(x))
        y = y - y.mean(1, keepdim=True)  # a mean over the channels mixes them all
        return self.fc(y.mean((2, 3)))


def test_a_broadcast_channel_and_a_mean_over_channels_are_not_mistaken_for_channelwise_ops():
    result = trace(Attentions(), 3, image_size=8)
    assert [layer.name for layer in result.layers] == ["stem"]
    notes = " | ".join(result.notes)
    assert "gate: its outputs are read by mul" in notes and "body: its outputs are read by mean" in notes


def test_spatial_slicing_padding_and_upsampling_keep_the_channels():
    class Spatial(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = nn.functional.pad(self.bn(self.conv(x)), (1, 1, 1, 1))[:, :, ::2, ::2]
            x = nn.functional.interpolate(x, scale_factor=2.0)
            return self.fc(x.mean((2, 3)))

    result = trace(Spatial(), 3, image_size=8)
    assert [layer.name for layer in result.layers] == ["conv"] and result.notes == ()
    assert result.readers[-1].channels == tuple(("conv", k) for k in range(4))
