"""Fresh channels that grow (``fresh_channels: grow``): a descendant's channels the learngene did not fill
keep their random filters behind an identity BatchNorm, and every layer that reads them (the next
convolutions, both sides of a residual block, the head) reads them with weights that start at zero.
So the descendant computes its learngene sub-network at step 0, and still its fresh channels learn:
the zero reading weights from the first step, the channels' own filters from the second.

Equalities are exact (``torch.equal``): the two descendants compared run the same layers on the same
shapes, and a fresh channel's contribution is a product with an exact zero on either side (a zero
weight here, a zero activation in the silent descendant or under the sub-network's masks)."""

import numpy as np
import pytest
import torch

from conftest import older_transfer_json, tiny_overrides
from learngene_ea.api.study import transfer_matches
from learngene_ea.config.loading import fresh_start, load_config, save_config
from learngene_ea.config.schema import ConfigError
from learngene_ea.core.fresh import FreshStart, fresh_masks
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import extract_learngene, inherit_learngene
from learngene_ea.core.models import build_model
from learngene_ea.ea.fitness import inflate_descendant
from learngene_ea.fewshot.training import learngene_channels_only
from learngene_ea.transfer.baselines import baseline_methods
from test_learngene import random_masks, trained_like

FAMILIES = ["conv4", "vgg11", "resnet12", "torchvision:resnet18"]


def _learngene(family, width=0.25):
    ancestor = trained_like(build_model(family, width, num_classes=5, seed=1)).eval()
    masks = random_masks(ancestor.spec)
    return masks, extract_learngene(ancestor, masks)


def _descendant(learngene, rule, scale=1.0, family=None, width=None, seed=2):
    model = build_model(family or learngene.family, learngene.width if width is None else width, num_classes=5,
                        seed=seed)
    written = inherit_learngene(model, learngene, scale, rule)
    return model, written


def _logits(model, images, mode):
    getattr(model, mode)()
    with torch.no_grad():
        return model(images)


def _fresh_reading_weights(model, written):
    """(reader weight, the columns by which it reads fresh channels) for every reader of fresh channels."""
    fresh = fresh_masks(model.spec, written)
    found = []
    for reader, channels in model.channel_readers():
        columns = [k for k, place in enumerate(channels) if place and place[0] in fresh and fresh[place[0]][place[1]]]
        if columns and getattr(reader, "groups", 1) == 1:
            found.append((reader.weight, columns))
    return found


def _fresh_filters(model, written):
    """(conv weight, fresh output rows) of every layer the learngene was written into."""
    fresh = fresh_masks(model.spec, written)
    return [(model.gene_module(name).conv.weight, np.flatnonzero(fresh[model.spec.layer(name).group]))
            for name in written]


def _snapshot(pairs, along):
    return [(w.detach()[:, cols] if along == "columns" else w.detach()[cols]).clone() for w, cols in pairs]


def _changed(pairs, before, along):
    return [not torch.equal(w.detach()[:, cols] if along == "columns" else w.detach()[cols], b)
            for (w, cols), b in zip(pairs, before)]


def _sgd_steps(model, steps):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 5
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_grown_descendant_computes_its_learngene_sub_network_at_step_zero(family):
    masks, learngene = _learngene(family)
    grown, _ = _descendant(learngene, "grow")
    silent, _ = _descendant(learngene, "scaled", 0.0)
    sub_network, _ = _descendant(learngene, "scaled", 1.0)  # fresh channels as in GTL, masked away below
    images = torch.randn(4, 3, 32, 32)
    for mode in ("train", "eval"):  # batch statistics (fine-tuning's first step) and running ones
        with learngene_channels_only(sub_network, masks):
            expected = _logits(sub_network, images, mode)
        assert torch.equal(_logits(grown, images, mode), expected), mode
        assert torch.equal(_logits(silent, images, mode), expected), mode


@pytest.mark.parametrize("family", ["torchvision:mobilenet_v2", "torchvision:densenet121"])
def test_depthwise_convolutions_and_concatenations_keep_the_function_too(family):
    """A depthwise conv carries a fresh channel on (it is not one of its readers); a layer reading a
    concatenation reads each part's fresh channels with zero weights."""
    _, learngene = _learngene(family, 1.0)
    grown, _ = _descendant(learngene, "grow")
    silent, _ = _descendant(learngene, "scaled", 0.0)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(_logits(grown, images, "eval"), _logits(silent, images, "eval"))


def test_the_head_reads_the_last_groups_fresh_channels_with_zero_weights_and_the_features_carry_them():
    """Prototypes (no head) see the last group's fresh channels beside the learngene's at step 0."""
    masks, learngene = _learngene("conv4")
    grown, _ = _descendant(learngene, "grow")
    silent, _ = _descendant(learngene, "scaled", 0.0)
    kept = torch.as_tensor(masks["blocks.3"])
    assert (grown.head.weight[:, ~kept] == 0).all() and (grown.head.weight[:, kept] != 0).all()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        features, silent_features = grown.eval().forward_features(images), silent.eval().forward_features(images)
    assert torch.equal(features[:, kept], silent_features[:, kept])
    assert (features[:, ~kept] != 0).any() and (silent_features[:, ~kept] == 0).all()


def test_grown_fresh_channels_keep_their_filters_behind_an_identity_batchnorm():
    masks, learngene = _learngene("conv4")
    grown, written = _descendant(learngene, "grow")
    untouched = build_model("conv4", 0.25, num_classes=5, seed=2)
    reads = torch.ones(3, dtype=torch.bool)  # the image
    for name in written:
        fresh = ~torch.as_tensor(masks[name])
        module = grown.gene_module(name)
        # what a fresh channel reads of the learngene's channels: random, as initialised
        assert torch.equal(module.conv.weight[fresh][:, reads], untouched.gene_module(name).conv.weight[fresh][:, reads])
        assert (module.bn.weight[fresh] == 1).all() and (module.bn.bias[fresh] == 0).all()
        reads = ~fresh
    readers = _fresh_reading_weights(grown, written)
    assert len(readers) == 4  # blocks.1-3 and the head
    assert all((weight[:, columns] == 0).all() for weight, columns in readers)


@pytest.mark.parametrize("family", FAMILIES)
def test_grown_fresh_channels_learn_reading_weights_first_then_their_filters(family):
    """The fresh channels' own filters get no gradient at the first step: nothing reads them yet (their
    reading weights are exactly zero). The reading weights do, since the channels' activations are not
    zero; from the second step on the filters learn too."""
    _, learngene = _learngene(family)
    grown, written = _descendant(learngene, "grow")
    readers, filters = _fresh_reading_weights(grown, written), _fresh_filters(grown, written)
    reading_before, filters_before = _snapshot(readers, "columns"), _snapshot(filters, "rows")
    _sgd_steps(grown, 1)
    assert all(_changed(readers, reading_before, "columns"))
    assert not any(_changed(filters, filters_before, "rows"))
    _sgd_steps(grown, 1)
    assert all(_changed(filters, filters_before, "rows"))


@pytest.mark.parametrize("family", FAMILIES)
def test_silent_fresh_channels_neither_learn_nor_are_read_after_a_step(family):
    """With ``scaled`` at 0 a fresh channel outputs zero: its readers get no gradient from it and, its
    BatchNorm scale being 0, neither do its filters. (Behind ResNet12's leaky ReLU, whose derivative
    at 0 is 0.1, the scale itself learns and the channel wakes at the second step; behind a ReLU never.)"""
    _, learngene = _learngene(family)
    silent, written = _descendant(learngene, "scaled", 0.0)
    readers, filters = _fresh_reading_weights(silent, written), _fresh_filters(silent, written)
    reading_before, filters_before = _snapshot(readers, "columns"), _snapshot(filters, "rows")
    _sgd_steps(silent, 1)
    assert not any(_changed(readers, reading_before, "columns"))
    assert not any(_changed(filters, filters_before, "rows"))


@pytest.mark.parametrize("family,width", [("conv4", 0.5), ("conv6", 0.25), ("vgg13", 0.25), ("resnet24", 0.25)])
def test_wider_and_deeper_descendants_grow_from_the_function_of_their_silent_twin(family, width):
    """Added layers stay as initialised, and read only the learngene's channels of the layer before them,
    as a silent descendant's do: at step 0 the two compute the same."""
    _, learngene = _learngene({"conv6": "conv4", "vgg13": "vgg11", "resnet24": "resnet12"}.get(family, family))
    grown, _ = _descendant(learngene, "grow", family=family, width=width)
    silent, _ = _descendant(learngene, "scaled", 0.0, family=family, width=width)
    images = torch.randn(4, 3, 32, 32)
    assert torch.equal(_logits(grown, images, "train"), _logits(silent, images, "train"))


def test_an_added_residual_block_starts_as_the_identity():
    """A ResNet-34 descendant of a ResNet-18 learngene: the blocks a ResNet-18 lacks start with a zero
    last BatchNorm (their branch adds nothing) and read their input's fresh channels with zero weights,
    so the ResNet-34 computes what a ResNet-18 descendant of the same learngene computes."""
    masks, learngene = _learngene("torchvision:resnet18", 1.0)
    resnet18, _ = _descendant(learngene, "grow")
    resnet34, _ = _descendant(learngene, "grow", family="torchvision:resnet34")
    assert (resnet34.net.layer1[2].bn2.weight == 0).all()
    resnet34.head.load_state_dict(resnet18.head.state_dict())  # the same classifier on both
    images = torch.randn(4, 3, 32, 32)
    for mode in ("train", "eval"):
        assert torch.equal(_logits(resnet34, images, mode), _logits(resnet18, images, mode)), mode


def test_the_rule_is_a_recipe_key_checked_in_one_sentence():
    default = load_config("default")
    assert (default.transfer.fresh_channels, default.fitness.fresh_channels) == ("grow", "scaled")  # chosen on val
    assert load_config("lamarckian").transfer.fresh_channels == "scaled"  # GTL's fresh channels, as it always had
    assert load_config(None).transfer.fresh_channels == "scaled"  # a recipe of its own, no base: as before
    assert load_config(None, ["fitness.fresh_channels=grow"]).fitness.fresh_channels == "grow"
    for key in ("fitness.fresh_channels", "transfer.fresh_channels"):
        with pytest.raises(ConfigError, match=rf"^'{key}' is 'grown' \(did you mean 'grow'\?\); it must be one of: "
                                              r"scaled, grow\.$"):
            load_config(None, [f"{key}=grown"])


def test_a_scale_beside_grow_is_refused_rather_than_ignored():
    """``--set transfer.complement_scale=1`` on the default recipe (which grows) asks for GTL's fresh channels,
    which ``grow`` would ignore: one sentence naming both keys, not a silently different experiment."""
    with pytest.raises(ConfigError, match=r"^'transfer.complement_scale' is 1 but 'transfer.fresh_channels' is 'grow', "
                                          r"which ignores the scale; set transfer.fresh_channels=scaled"):
        load_config("default", ["transfer.complement_scale=1"])
    with pytest.raises(ConfigError, match=r"^'fitness.complement_scale' is 0.5 but 'fitness.fresh_channels'"):
        load_config(None, ["fitness.fresh_channels=grow", "fitness.complement_scale=0.5"])
    gtl = load_config("default", ["transfer.fresh_channels=scaled", "transfer.complement_scale=1"]).transfer
    assert (gtl.fresh_channels, gtl.complement_scale) == ("scaled", 1.0)
    assert load_config(None, ["transfer.fresh_channels=grow"]).transfer.fresh_channels == "grow"  # no scale given


def test_a_recipe_on_a_base_asking_for_a_scale_the_base_grows_past_is_refused(tmp_path):
    (tmp_path / "gtl.yaml").write_text("base: default\ntransfer:\n  complement_scale: 1.0\n")
    with pytest.raises(ConfigError, match=r"^'transfer.complement_scale' is 1.0 but 'transfer.fresh_channels' is 'grow'"):
        load_config(str(tmp_path / "gtl.yaml"))


def test_a_runs_config_yaml_with_grow_and_the_schemas_scale_loads_again(tmp_path):
    """A run's config.yaml writes every key, the schema's complement_scale (1.0) beside ``grow`` included:
    resuming it, or transferring with it, must not be refused."""
    cfg = load_config(None, ["fitness.fresh_channels=grow", "transfer.fresh_channels=grow"])
    assert cfg.transfer.complement_scale == 1.0
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert (again.fitness.fresh_channels, again.transfer.fresh_channels) == ("grow", "grow")


def test_python_callers_get_the_recipes_rule_and_a_scale_alone_means_scaled():
    assert fresh_start() == FreshStart("grow", 0.0)  # the default recipe's transfer rule
    assert fresh_start(complement_scale=1.0) == FreshStart("scaled", 1.0)  # GTL's, not a scale grow would ignore
    assert fresh_start("scaled") == FreshStart("scaled", 0.0)


def test_a_bad_rule_exits_2_before_the_run_folder(tmp_path, capsys):
    from learngene_ea.cli import run as run_cli

    assert run_cli.main(["--set", "transfer.fresh_channels=quiet", "--run-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert "'transfer.fresh_channels' is 'quiet'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_fitness_descendants_follow_fitness_fresh_channels(tiny_dataset):
    masks, learngene = _learngene("conv4")
    cfg = load_config(None, tiny_overrides(**{"fitness.fresh_channels": "grow"}))
    model, _, _ = inflate_descendant(make_individual(learngene.spec, masks, 1, learngene=learngene), cfg,
                                     tiny_dataset, 0, "cpu")
    fresh = ~torch.as_tensor(masks["blocks.0"])
    assert (model.gene_module("blocks.0").bn.weight[fresh] == 1).all()
    assert (model.gene_module("blocks.1").conv.weight[:, fresh] == 0).all()


def test_transfer_rows_that_write_channels_grow_them_like_the_learngenes():
    masks, learngene = _learngene("conv4")
    ancestor = trained_like(build_model("conv4", 0.25, num_classes=5, seed=1)).eval()
    methods = {m.name: m for m in baseline_methods(learngene, ancestor, complement_scale=0.0, fresh_channels="grow")}
    for name in ("learngene", "l1-learngene", "random-learngene"):
        model = build_model("conv4", 0.25, num_classes=5, seed=3)
        methods[name].transfer(model, 11)
        zero_columns = (model.gene_module("blocks.1").conv.weight == 0).all(dim=(0, 2, 3))
        assert int(zero_columns.sum()) == int((~masks["blocks.0"]).sum()), name
        assert (model.gene_module("blocks.0").bn.weight != 0).all(), name  # nothing silent
    for name in ("pretrained", "layerwise", "instincts"):  # whole layers; no update: the sub-network itself
        model = build_model("conv4", 0.25, num_classes=5, seed=3)
        methods[name].transfer(model, 11)
        assert not (model.gene_module("blocks.1").conv.weight == 0).all(dim=(0, 2, 3)).any(), name


def test_build_descendant_passes_the_rule_on():
    from learngene_ea.core.fresh import FreshStart
    from learngene_ea.transfer import build_descendant
    masks, learngene = _learngene("conv4")
    model = build_descendant(learngene, fresh=FreshStart("grow"))
    assert (model.gene_module("blocks.2").conv.weight[:, ~torch.as_tensor(masks["blocks.1"])] == 0).all()
    assert torch.equal(model.gene_module("blocks.2").conv.weight, build_descendant(
        learngene, fresh=FreshStart("grow", 0.0)).gene_module("blocks.2").conv.weight)  # grow takes no scale


def test_a_transfer_json_without_the_key_was_made_with_scaled_channels():
    cfg = load_config(None, [])
    _, learngene = _learngene("conv4")
    results = older_transfer_json(cfg, learngene, "fresh_channels")
    assert transfer_matches(results, cfg, learngene)
    assert not transfer_matches(results, load_config(None, ["transfer.fresh_channels=grow"]), learngene)


def test_reports_say_when_fresh_channels_grow():
    from learngene_ea.transfer.report import complement_words
    assert "grow" in complement_words({"fresh_channels": "grow", "complement_scale": 0.0})
    assert "start silent" in complement_words({"fresh_channels": "scaled", "complement_scale": 0.0})
