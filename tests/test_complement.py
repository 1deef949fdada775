"""A descendant's fresh channels (its complement) start scaled by ``complement_scale``: at 0 the
descendant computes its learngene's sub-network and grows the rest from silence; at 1 (GTL) they
are freshly initialised, bit for bit as before the option existed."""

import numpy as np
import pytest
import torch

from conftest import older_transfer_json, tiny_overrides
from learngene_ea.api.study import transfer_matches
from learngene_ea.config.loading import load_config
from learngene_ea.core.fresh import FreshStart
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import extract_learngene, inherit_learngene
from learngene_ea.core.models import build_model
from learngene_ea.ea.fitness import inflate_descendant
from learngene_ea.fewshot.training import learngene_channels_only
from learngene_ea.transfer.baselines import baseline_methods
from test_learngene import random_masks, trained_like


def _learngene(family, width=0.25):
    ancestor = trained_like(build_model(family, width, seed=1)).eval()
    masks = random_masks(ancestor.spec)
    return ancestor, masks, extract_learngene(ancestor, masks)


@pytest.mark.parametrize("family", ["conv4", "vgg11", "resnet12"])
def test_a_silent_complement_makes_the_descendant_its_learngene_sub_network(family):
    ancestor, masks, learngene = _learngene(family)
    descendant = build_model(family, 0.25, seed=2).eval()
    inherit_learngene(descendant, learngene, complement_scale=0.0)
    x = torch.randn(3, 3, 32, 32)
    with learngene_channels_only(ancestor, masks):
        expected = ancestor.forward_features(x)
    assert torch.equal(descendant.forward_features(x), expected)
    # with fresh channels as in GTL it is not
    gtl = build_model(family, 0.25, seed=2).eval()
    inherit_learngene(gtl, learngene)
    assert not torch.allclose(gtl.forward_features(x), expected, atol=1e-3)


def test_the_scale_multiplies_only_the_fresh_channels_batchnorm_affine():
    _, masks, learngene = _learngene("conv4")
    fresh = build_model("conv4", 0.25, seed=2)
    scaled = build_model("conv4", 0.25, seed=2)
    inherit_learngene(fresh, learngene)
    written = inherit_learngene(scaled, learngene, complement_scale=0.3)
    for name, (out_idx, _) in written.items():
        dropped = np.setdiff1d(np.arange(fresh.gene_module(name).conv.out_channels), out_idx)
        f, s = fresh.gene_module(name), scaled.gene_module(name)
        assert torch.equal(s.conv.weight, f.conv.weight)  # filters untouched: BatchNorm normalises them
        assert torch.equal(s.bn.weight[out_idx], f.bn.weight[out_idx])  # inherited channels as written
        assert torch.allclose(s.bn.weight[dropped], 0.3 * f.bn.weight[dropped])
        assert torch.allclose(s.bn.bias[dropped], 0.3 * f.bn.bias[dropped])


def test_a_wider_descendant_silences_its_extra_channels_and_a_deeper_one_keeps_its_extra_layers():
    _, _, learngene = _learngene("vgg11")
    wider = build_model("vgg11", 0.5, seed=2)
    written = inherit_learngene(wider, learngene, complement_scale=0.0)
    for name, (out_idx, _) in written.items():
        weight = wider.gene_module(name).bn.weight.detach()
        assert (weight[out_idx] != 0).all() and int((weight != 0).sum()) == len(out_idx)
    _, _, conv4_learngene = _learngene("conv4")
    deeper = build_model("conv6", 0.25, seed=2)
    written = inherit_learngene(deeper, conv4_learngene, complement_scale=0.0)
    untouched = [layer.name for layer in deeper.spec.layers if layer.name not in written]
    assert untouched and all((deeper.gene_module(n).bn.weight != 0).all() for n in untouched)


@pytest.mark.parametrize("scale,learns", [(0.3, True), (0.0, False)])
def test_quieter_channels_learn_and_silent_ones_behind_a_relu_stay_silent(scale, learns):
    _, _, learngene = _learngene("conv4")
    model = build_model("conv4", 0.25, num_classes=4, seed=2)
    written = inherit_learngene(model, learngene, complement_scale=scale)
    name, (out_idx, _) = next(iter(written.items()))
    dropped = np.setdiff1d(np.arange(model.gene_module(name).conv.out_channels), out_idx)
    before = model.gene_module(name).bn.weight.detach()[dropped].clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8) % 4)
    loss.backward()
    optimizer.step()
    assert (not torch.equal(model.gene_module(name).bn.weight.detach()[dropped], before)) == learns


def test_fitness_descendants_use_fitness_complement_scale(tiny_dataset):
    _, masks, learngene = _learngene("conv4")
    cfg = load_config(None, tiny_overrides(**{"fitness.complement_scale": 0}))
    individual = make_individual(learngene.spec, masks, 1, learngene=learngene)
    model, _, _ = inflate_descendant(individual, cfg, tiny_dataset, 0, "cpu")
    for layer in model.spec.layers:
        assert np.array_equal(model.gene_module(layer.name).bn.weight.detach().numpy() != 0, masks[layer.group])


def test_transfer_rows_scale_channels_written_like_the_learngenes_and_leave_whole_layers_alone():
    ancestor, masks, learngene = _learngene("conv4")
    methods = {m.name: m for m in baseline_methods(learngene, ancestor, complement_scale=0.0)}
    for name in ("learngene", "instincts", "l1-learngene", "random-learngene"):
        model = build_model("conv4", 0.25, num_classes=5, seed=3)
        methods[name].transfer(model, 11)
        kept = model.gene_module("blocks.1").bn.weight.detach() != 0
        assert 0 < int(kept.sum()) == int(masks["blocks.1"].sum()), name
    for name in ("pretrained", "layerwise"):
        model = build_model("conv4", 0.25, num_classes=5, seed=3)
        methods[name].transfer(model, 11)
        assert (model.gene_module("blocks.1").bn.weight != 0).all(), name


def test_a_transfer_json_without_the_key_was_made_with_fresh_channels():
    """A study keeps the transfer.json files of earlier versions: they were made at scale 1."""
    cfg = load_config(None, [])
    _, _, learngene = _learngene("conv4")
    results = older_transfer_json(cfg, learngene, "complement_scale")
    assert transfer_matches(results, cfg, learngene)
    assert not transfer_matches(results, load_config(None, ["transfer.complement_scale=0"]), learngene)


def test_reports_say_when_fresh_channels_did_not_start_as_in_gtl():
    from learngene_ea.transfer.report import complement_words
    assert complement_words({}) == "" and complement_words({"complement_scale": 1.0}) == ""
    assert "start silent" in complement_words({"complement_scale": 0.0})
    assert "at 0.3 times" in complement_words({"complement_scale": 0.3})


@pytest.mark.parametrize("family", ["torchvision:resnet18", "torchvision:mobilenet_v2"])
def test_a_traced_descendant_with_a_silent_complement_computes_its_learngene_sub_network(family):
    """Every parametrised layer of these networks is a gene layer: silent fresh channels leave exactly
    the sub-network the masks select, with no masks at all on the descendant."""
    ancestor = build_model(family, num_classes=5, seed=0)
    images = torch.randn(4, 3, 32, 32)
    ancestor.train()(images)  # running statistics that are not the initial ones
    ancestor.eval()
    masks = random_masks(ancestor.spec)
    descendant = build_model(family, num_classes=5, seed=1).eval()
    inherit_learngene(descendant, extract_learngene(ancestor, masks), complement_scale=0.0)
    with torch.no_grad(), learngene_channels_only(ancestor, masks):
        expected = ancestor.forward_features(images)
    gtl = build_model(family, num_classes=5, seed=1).eval()
    inherit_learngene(gtl, extract_learngene(ancestor, masks))
    with torch.no_grad():
        assert torch.allclose(descendant.forward_features(images), expected, atol=1e-6)
        assert not torch.allclose(gtl.forward_features(images), expected, atol=1e-3)


def test_build_descendant_passes_the_scale_on():
    from learngene_ea.transfer import build_descendant
    _, masks, learngene = _learngene("conv4")
    model = build_descendant(learngene, fresh=0.0)
    for layer in model.spec.layers:
        assert np.array_equal(model.gene_module(layer.name).bn.weight.detach().numpy() != 0, masks[layer.group])


def _same_weights(a, b) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_build_descendant_without_a_scale_builds_the_command_lines_descendant():
    """Unless told, Python starts fresh channels as the shipped default recipe's transfer does."""
    from learngene_ea.transfer import build_descendant
    _, _, learngene = _learngene("conv4")
    recipe = load_config("default").transfer
    assert _same_weights(build_descendant(learngene, seed=3),
                         build_descendant(learngene, seed=3, fresh=FreshStart(recipe.fresh_channels,
                                                                              recipe.complement_scale)))
    assert not _same_weights(build_descendant(learngene, seed=3), build_descendant(learngene, seed=3, fresh=0.0))


@pytest.mark.parametrize("row", ["learngene", "l1-learngene"])
def test_transfer_rows_without_a_scale_scale_as_the_default_recipe_does(row):
    ancestor, _, learngene = _learngene("conv4")
    recipe = load_config("default").transfer
    built = []
    for scale in ({}, {"complement_scale": recipe.complement_scale, "fresh_channels": recipe.fresh_channels}):
        model = build_model("conv4", 0.25, num_classes=5, seed=3)
        {m.name: m for m in baseline_methods(learngene, ancestor, **scale)}[row].transfer(model, 11)
        built.append(model)
    assert _same_weights(*built)


def test_a_conv_without_batchnorm_has_its_fresh_filters_and_bias_scaled():
    """A traced conv with no BatchNorm (a stand-in ``bn``): its filters and bias set a channel's scale."""
    from types import SimpleNamespace
    from learngene_ea.core.backbone import scale_complement
    from learngene_ea.core.traced import GeneView
    conv = torch.nn.Conv2d(3, 4, 3)
    before = conv.weight.detach().clone(), conv.bias.detach().clone()
    layer = GeneView(conv, None)
    scale_complement(SimpleNamespace(gene_module=lambda name: layer), {"c": (np.array([1, 3]), np.arange(3))}, 0.5)
    assert torch.equal(conv.weight[[1, 3]], before[0][[1, 3]]) and torch.equal(conv.bias[[1, 3]], before[1][[1, 3]])
    assert torch.allclose(conv.weight[[0, 2]], 0.5 * before[0][[0, 2]])
    assert torch.allclose(conv.bias[[0, 2]], 0.5 * before[1][[0, 2]])
