"""Backbones expose gene layers and mask groups; learngenes extract, save, load and inherit exactly."""
import numpy as np
import pytest
import torch

from learngene_ea.core.learngene import (Learngene, extract_learngene, full_masks, inherit_learngene,
                                        learngene_fraction, learngene_size, load_learngene)
from learngene_ea.core.models import arch_spec, build_model

FAMILIES = ["conv4", "vgg11", "resnet12"]


def random_masks(spec, share=0.4, seed=0):
    rng = np.random.default_rng(seed)
    masks = {g: rng.random(n) < share for g, n in spec.groups}
    for m in masks.values():
        m[0] = True  # complete circuits: every group keeps a channel
    return masks


def trained_like(model):
    """Give BatchNorm non-default statistics so that copying them is tested too."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


def test_residual_blocks_share_one_mask_group():
    spec = arch_spec("resnet12", 0.25)
    conv3 = spec.layer("stages.0.0.conv3")
    shortcut = spec.layer("stages.0.0.shortcut")
    assert conv3.group == shortcut.group == "stages.0.0.out"
    assert spec.layer("stages.1.0.conv1").in_group == "stages.0.0.out"
    assert len(spec.groups) == 12 and len(spec.layers) == 16


@pytest.mark.parametrize("family", ["conv4", "conv6", "vgg11", "vgg13", "vgg16", "resnet12", "resnet24"])
def test_every_family_builds_with_a_head_and_features(family):
    model = build_model(family, 0.25, num_classes=7, seed=0)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, model.feature_dim)


def test_width_multiplier_scales_every_gene_layer():
    narrow, wide = arch_spec("vgg11", 0.5), arch_spec("vgg11", 1.0)
    assert [n for _, n in wide.groups] == [2 * n for _, n in narrow.groups]


def test_fraction_is_hand_checked_on_conv4():
    spec = arch_spec("conv4", 4 / 64)  # 4 channels per layer
    full = 3 * 4 * 9 + 2 * 4 + 3 * (4 * 4 * 9 + 2 * 4)
    assert spec.num_gene_params() == full
    masks = {g: np.array([True, True, False, False]) for g, _ in spec.groups}
    kept = 2 * 3 * 9 + 2 * 2 + 3 * (2 * 2 * 9 + 2 * 2)
    assert learngene_size(spec, masks) == kept
    assert learngene_fraction(spec, masks) == pytest.approx(kept / full)


@pytest.mark.parametrize("family", FAMILIES)
def test_extract_save_load_inherit_reproduces_kept_subkernels(family, tmp_path):
    ancestor = trained_like(build_model(family, 0.25, seed=1))
    masks = random_masks(ancestor.spec)
    learngene = extract_learngene(ancestor, masks, meta={"id": 3})
    path = tmp_path / "learngene.pt"
    learngene.save(path)
    torch.load(path, weights_only=True)  # portable: no arbitrary pickle
    loaded = load_learngene(path)
    assert loaded.meta["id"] == 3 and loaded.fraction == pytest.approx(learngene.fraction)

    descendant = build_model(family, 0.25, seed=2)
    fresh = {k: v.clone() for k, v in descendant.state_dict().items()}
    inherit_learngene(descendant, loaded)
    for layer in ancestor.spec.layers:
        out_idx = np.flatnonzero(masks[layer.group])
        in_idx = np.arange(layer.in_channels) if layer.in_group is None else np.flatnonzero(masks[layer.in_group])
        a, d = ancestor.gene_module(layer.name), descendant.gene_module(layer.name)
        sub = np.ix_(out_idx, in_idx)
        assert torch.equal(d.conv.weight.detach()[sub], a.conv.weight.detach()[sub]), layer.name
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(d.bn, name).detach()[out_idx], getattr(a.bn, name).detach()[out_idx])
        # outside the learngene the descendant keeps its own fresh initialisation
        dropped = np.flatnonzero(~masks[layer.group])
        if len(dropped):
            assert torch.equal(d.conv.weight.detach()[dropped], fresh[f"{layer.name}.conv.weight"][dropped])


@pytest.mark.parametrize("family", FAMILIES)
def test_whole_network_learngene_reproduces_the_network(family):
    ancestor = trained_like(build_model(family, 0.25, seed=1)).eval()
    learngene = extract_learngene(ancestor, full_masks(ancestor.spec))
    assert learngene.fraction == pytest.approx(1.0)
    descendant = build_model(family, 0.25, seed=5).eval()
    inherit_learngene(descendant, learngene)
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(descendant.forward_features(x), ancestor.forward_features(x), atol=1e-5)


@pytest.mark.parametrize("family,wider", [("conv4", "conv4"), ("vgg11", "vgg11"), ("resnet12", "resnet12")])
def test_inherit_into_wider_descendant_writes_at_channel_positions(family, wider):
    ancestor = trained_like(build_model(family, 0.25, seed=1))
    masks = random_masks(ancestor.spec)
    learngene = extract_learngene(ancestor, masks)
    descendant = build_model(wider, 0.5, seed=2)
    written = inherit_learngene(descendant, learngene)
    assert len(written) == len(ancestor.spec.layers)
    for name, (out_idx, in_idx) in written.items():
        a = ancestor.gene_module(name).conv.weight.detach()
        d = descendant.gene_module(name).conv.weight.detach()
        assert torch.equal(d[np.ix_(out_idx, in_idx)], a[np.ix_(out_idx, in_idx)])


def test_inherit_into_deeper_descendant_fills_matching_layers_only():
    ancestor = trained_like(build_model("vgg11", 0.25, seed=1))
    learngene = extract_learngene(ancestor, random_masks(ancestor.spec))
    deeper = build_model("vgg16", 0.25, seed=2)
    fresh = {k: v.clone() for k, v in deeper.state_dict().items()}
    written = inherit_learngene(deeper, learngene)
    # VGG11 stage 2 has two convs; VGG16 stage 2 has three: the third stays fresh
    assert "stages.2.0" in written and "stages.2.1" in written and "stages.2.2" not in written
    assert torch.equal(deeper.state_dict()["stages.2.2.conv.weight"], fresh["stages.2.2.conv.weight"])
    assert len(written) == len(ancestor.spec.layers)


def test_inherit_into_deeper_resnet():
    ancestor = trained_like(build_model("resnet12", 0.25, seed=1))
    learngene = extract_learngene(ancestor, random_masks(ancestor.spec))
    written = inherit_learngene(build_model("resnet24", 0.25, seed=2), learngene)
    assert set(written) == {layer.name for layer in ancestor.spec.layers}


def test_narrower_descendant_keeps_only_channels_that_fit():
    ancestor = trained_like(build_model("conv4", 0.5, seed=1))
    learngene = extract_learngene(ancestor, full_masks(ancestor.spec))
    written = inherit_learngene(build_model("conv4", 0.25, seed=2), learngene)
    out_idx, in_idx = written["blocks.1"]
    assert out_idx.max() < 16 and in_idx.max() < 16


def test_restrict_slices_weights_to_the_new_masks():
    ancestor = trained_like(build_model("conv4", 0.25, seed=1))
    spec = ancestor.spec
    learngene = extract_learngene(ancestor, full_masks(spec))
    smaller = random_masks(spec, 0.5, seed=3)
    restricted = learngene.restrict(smaller)
    direct = extract_learngene(ancestor, smaller)
    for name in direct.weights:
        for key in direct.weights[name]:
            np.testing.assert_array_equal(restricted.weights[name][key], direct.weights[name][key])


def test_learngene_pickles_cheaply():
    import pickle

    ancestor = build_model("conv4", 0.25, seed=1)
    learngene = extract_learngene(ancestor, random_masks(ancestor.spec, 0.3))
    assert isinstance(learngene, Learngene)
    size = len(pickle.dumps(learngene))
    assert size < 4 * learngene.num_params + 8000  # float32 weights + small overhead


def test_loading_a_non_learngene_file_is_a_clear_error(tmp_path):
    from learngene_ea.errors import UserError

    bogus = tmp_path / "x.pt"
    bogus.write_bytes(b"not a learngene")
    with pytest.raises(UserError, match="not a readable learngene-ea learngene file"):
        load_learngene(bogus)
    with pytest.raises(UserError, match="does not exist"):
        load_learngene(tmp_path / "missing.pt")
