"""Downstream transfer: same episodes for every method, no test image before transfer, honest reports."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

from conftest import ROOT, run_module, tiny_overrides
from learngene_ea import transfer
from learngene_ea.cli.transfer import main as transfer_main
from learngene_ea.fewshot import process
from learngene_ea.fewshot import training
from learngene_ea.config.loading import load_config
from learngene_ea.errors import UserError
from learngene_ea.core.learngene import Learngene, extract_learngene, load_learngene
from learngene_ea.core.models import build_model
from learngene_ea.fewshot.sampling import mean_and_ci95

CONV4 = transfer.Arch("conv4", 0.25, 3)  # the pre-trained baseline of the tests' learngenes

METHODS = ["scratch", "scratch-instincts", "pretrained", "random-learngene", "l1-learngene", "layerwise",
           "layerwise-equal-size", "instincts", "learngene"]
FINE_TUNED = set(METHODS) - {"scratch-instincts", "instincts"}


def transfer_overrides(**extra):
    values = {"transfer.episodes": 2, "transfer.steps": 3, "transfer.shots": "[1, 5]", "transfer.limited_data": 10,
              "transfer.n_query": 5, "transfer.pretrain_epochs": 1, "task.batch_size": 64, "runtime.device": "cpu"}
    values.update(extra)
    return tiny_overrides() + [f"{k}={v}" for k, v in values.items()]


def make_learngene(path, family="conv4", width=0.25, seed=1, keep=0.5, **meta):
    """A seeded network's random channels saved as a learngene file (no evolution needed; ``meta``
    adds to its metadata, e.g. the compute an evolution records)."""
    model = build_model(family, width, 3, 5, seed=seed)
    rng = np.random.default_rng(seed)
    masks = {}
    for group, size in model.spec.groups:
        mask = rng.random(size) < keep
        mask[rng.integers(size)] = True  # complete circuits: every group keeps a channel
        masks[group] = mask
    learngene = extract_learngene(model, masks, meta={"dataset": "synthetic", **meta})
    learngene.save(path)
    return learngene


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory):
    """One small transfer evaluation (with a scalability descendant), every episode recorded per method."""
    folder = tmp_path_factory.mktemp("transfer")
    path = str(folder / "learngene.pt")
    make_learngene(path)
    cfg = load_config(None, transfer_overrides())
    seen, current = [], {}
    evaluate_method, finetune_and_score = transfer.evaluate_method, transfer.finetune_and_score

    def recording_evaluate(method, *args, **kwargs):
        current["method"] = (method.name, method.arch)
        return evaluate_method(method, *args, **kwargs)

    def recording_finetune(model, dataset, episode, *args, **kwargs):
        seen.append({"method": current["method"], "support": episode.support.tolist(),
                     "query": episode.query.tolist(), "head": model.head.weight.detach().clone()})
        return finetune_and_score(model, dataset, episode, *args, **kwargs)

    logs, kept_memory = [], []
    patch = pytest.MonkeyPatch()
    patch.setattr(transfer.jobs, "evaluate_method", recording_evaluate)  # where the callers look them up
    patch.setattr(transfer.finetune, "finetune_and_score", recording_finetune)
    patch.setattr(process, "keep_freed_memory", lambda: kept_memory.append(True) or True)
    try:
        results = transfer.run_transfer(cfg, path, str(folder / "out"), transfer.TransferOptions(["conv4@0.5"]),
                                         log=logs.append)
    finally:
        patch.undo()
    return {"results": results, "seen": seen, "logs": logs, "folder": folder, "cfg": cfg, "path": path,
            "kept_memory": kept_memory}


def test_the_transfer_process_keeps_freed_memory_by_default(transfer_run):
    """Pre-training and fine-tuning reuse their pages like fitness does (runtime.keep_freed_memory)."""
    assert transfer_run["cfg"].runtime.keep_freed_memory is True
    assert transfer_run["kept_memory"] == [True]


# ------------------------------------------------------------------------- same episodes

def test_every_method_is_fine_tuned_on_the_same_support_and_query_images(transfer_run):
    by_method = {}
    for record in transfer_run["seen"]:
        by_method.setdefault(record["method"], []).append((record["support"], record["query"]))
    reference = by_method[("scratch", "conv4 x0.25")]
    assert len(reference) == 2 * 3  # 2 episodes x (1-shot, 5-shot, limited-10)
    assert {m for m, _ in by_method} == FINE_TUNED
    for method, episodes in by_method.items():
        assert episodes == reference, method


def test_every_row_reports_the_same_episode_fingerprints_and_init_seeds(transfer_run):
    results = transfer_run["results"]
    for setting in results["settings"]:
        digests = [e["digest"] for e in setting["episodes"]]
        for row in results["rows"]:
            assert row["results"][setting["name"]]["episode_digests"] == digests
            assert row["results"][setting["name"]]["init_seeds"] == \
                results["rows"][0]["results"][setting["name"]]["init_seeds"]


def test_methods_of_one_architecture_start_from_the_same_fresh_head(transfer_run):
    heads = {}
    for record in transfer_run["seen"]:
        heads.setdefault(record["method"], []).append(record["head"])
    reference = heads[("scratch", "conv4 x0.25")]
    for (name, arch), tensors in heads.items():
        if arch == "conv4 x0.25":
            assert all(torch.equal(a, b) for a, b in zip(tensors, reference)), name


def test_non_inherited_weights_equal_the_scratch_initialisation_with_the_same_seed(tmp_path):
    learngene = make_learngene(tmp_path / "lg.pt")
    scratch = build_model("conv4", 0.25, 3, 5, seed=123)
    descendant = transfer.build_descendant(learngene, num_classes=5, seed=123, fresh=0.0)  # grow zeroes readers
    for layer in scratch.spec.layers:
        a = scratch.gene_module(layer.name).conv.weight
        b = descendant.gene_module(layer.name).conv.weight.clone()
        out_idx, in_idx = descendant.inherited[layer.name]
        b[np.ix_(out_idx, in_idx)] = a[np.ix_(out_idx, in_idx)]
        assert torch.equal(a, b), layer.name
    assert torch.equal(scratch.head.weight, descendant.head.weight)


def test_test_episodes_use_only_test_classes_and_disjoint_support_and_query(transfer_run, tiny_dataset):
    test = set(tiny_dataset.splits["test"])
    for setting in transfer_run["results"]["settings"]:
        for episode in setting["episodes"]:
            assert set(episode["classes"]) <= test
            labels = tiny_dataset.labels[episode["support"] + episode["query"]].tolist()
            assert set(labels) == set(episode["classes"])
            assert not set(episode["support"]) & set(episode["query"])


# --------------------------------------------------------------------------- no leakage

def _test_indices(dataset):
    return set(torch.cat([dataset.indices_of_class(c) for c in dataset.splits["test"]]).tolist())


def _train_indices(dataset):
    return set(torch.cat([dataset.indices_of_class(c) for c in dataset.splits["train"]]).tolist())


def test_pretraining_touches_only_training_class_images(monkeypatch, tiny_dataset):
    touched = set()

    class RecordingBatches(training.PlannedBatches):  # every training batch is gathered here
        def batch(self, images, t, *args):
            touched.update(self.image[t].flatten().tolist())
            return super().batch(images, t, *args)

    monkeypatch.setattr(training, "PlannedBatches", RecordingBatches)
    cfg = load_config(None, transfer_overrides())
    steps, _ = transfer.pretrain.pretrain_steps(cfg, tiny_dataset, None)  # transfer.pretrain_epochs: 1
    transfer.pretrain_network(cfg, tiny_dataset, CONV4, "cpu", training.TrainSettings.of_task(cfg, steps))
    assert touched and touched <= _train_indices(tiny_dataset)
    assert len(touched) == len(_train_indices(tiny_dataset))  # every training image, one epoch
    assert not touched & _test_indices(tiny_dataset)


def test_evolution_never_touches_a_test_class_image_and_the_run_ends_with_transfer(monkeypatch, tmp_path,
                                                                                    tiny_dataset):
    from learngene_ea.ea import fitness
    from learngene_ea.cli import run

    touched, task_splits, phase = set(), [], {"transfer": False}
    make_batch, sample_task = training.make_batch, fitness.sample_task
    transfer_after_run = transfer.transfer_after_run

    def recording_make_batch(images, indices, *args, **kwargs):
        if not phase["transfer"]:
            touched.update(indices.tolist())
        return make_batch(images, indices, *args, **kwargs)

    class RecordingBatches(training.PlannedBatches):  # the training steps' batches
        def batch(self, images, t, *args):
            if not phase["transfer"]:
                touched.update(self.image[t].flatten().tolist())
            return super().batch(images, t, *args)

    def recording_sample_task(dataset, seed, num_classes, images_per_class, split="train"):
        task_splits.append(split)
        task = sample_task(dataset, seed, num_classes, images_per_class, split)
        assert set(task.indices.tolist()) <= _train_indices(dataset)
        return task

    def flagged_transfer_after_run(*args, **kwargs):
        phase["transfer"] = True
        return transfer_after_run(*args, **kwargs)

    monkeypatch.setattr(training, "make_batch", recording_make_batch)  # scoring's batches
    monkeypatch.setattr(training, "PlannedBatches", RecordingBatches)
    monkeypatch.setattr(fitness, "sample_task", recording_sample_task)
    monkeypatch.setattr(transfer, "transfer_after_run", flagged_transfer_after_run)  # run.py imports it from here
    monkeypatch.setattr(transfer.pretrain, "pretrain_network",  # pre-training has its own test; keep this one fast
                        lambda cfg, dataset, arch, device, settings, seed=None, observe=None: (
                            build_model(arch.family, arch.width, arch.in_channels, 64, seed=0),
                            {"steps": settings.steps, "epochs": 0.1, "final_loss": 0.0, "seconds": 0.0}))
    overrides = tiny_overrides(**{"ea.population_size": 2, "ea.generations": 1, "ea.tournsize": 2,
                                  "transfer.after_run": "true", "transfer.episodes": 1, "transfer.steps": 2,
                                  "transfer.shots": "[1]", "transfer.limited_data": 0, "transfer.n_query": 5})
    run_dir = tmp_path / "run"
    argv = ["--run-dir", str(run_dir), "--quiet"] + [a for o in overrides for a in ("--set", o)]
    assert run.main(argv) == 0
    assert task_splits and set(task_splits) == {"train"}
    assert touched and not touched & _test_indices(tiny_dataset)
    assert phase["transfer"]
    assert {"transfer.json", "transfer.md", "transfer.png"} <= set(os.listdir(run_dir))
    assert [name for name in os.listdir(run_dir) if name.startswith("pretrained-") and name.endswith(".pt")]


def test_the_end_of_run_transfer_takes_every_core_unless_threads_are_set(monkeypatch):
    from learngene_ea.core.threads import available_cores

    seen = []
    monkeypatch.setattr(transfer.pipeline, "run_transfer", lambda *a, **k: seen.append(torch.get_num_threads()) or {})
    monkeypatch.setattr(transfer.pipeline, "markdown_table", lambda results: "")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a SCOOP origin has during the evolution on this machine
        transfer.transfer_after_run(load_config(None, tiny_overrides(**{"runtime.threads": 0})), "run", log=str)
        torch.set_num_threads(1)
        transfer.transfer_after_run(load_config(None, tiny_overrides()), "run", log=str)  # runtime.threads: 1
    finally:
        torch.set_num_threads(before)
    assert seen == [available_cores(), 1]


# ---------------------------------------------------------------------------- statistics

def test_ci95_is_student_t_sample_std_over_sqrt_n():
    mean, ci = mean_and_ci95([0.5, 0.6, 0.7, 0.8])
    # sample std = sqrt((0.15^2 + 0.05^2 + 0.05^2 + 0.15^2) / 3) = sqrt(0.05 / 3); t(0.975, 3) = 3.1824
    assert mean == pytest.approx(0.65)
    assert ci == pytest.approx(3.182446305284263 * math.sqrt(0.05 / 3) / 2)
    assert ci == pytest.approx(0.205426, abs=1e-6)


def test_reported_mean_and_ci_follow_from_the_per_episode_accuracies(transfer_run):
    for row in transfer_run["results"]["rows"]:
        for result in row["results"].values():
            mean, ci = mean_and_ci95(result["accuracies"])
            assert result["mean"] == pytest.approx(mean) and result["ci95"] == pytest.approx(ci)
            assert all(0.0 <= a <= 1.0 for a in result["accuracies"])


def test_paired_differences_are_taken_episode_by_episode_within_one_architecture(transfer_run):
    rows = {(r["method"], r["arch"]): r for r in transfer_run["results"]["rows"]}
    learngene, scratch = rows[("learngene", "conv4 x0.25")], rows[("scratch", "conv4 x0.25")]
    for name, result in learngene["results"].items():
        diff = np.subtract(result["accuracies"], scratch["results"][name]["accuracies"])
        mean, ci = mean_and_ci95(diff)
        paired = result["paired"]["scratch"]
        assert paired["mean"] == pytest.approx(mean) and paired["ci95"] == pytest.approx(ci)
        assert paired["wins"] == int((diff > 0).sum()) and paired["episodes"] == 2
        assert set(result["paired"]) == set(METHODS) - {"learngene"}  # never paired across architectures
    assert "learngene − random-learngene" in (transfer_run["folder"] / "out" / "transfer.md").read_text()


def test_instincts_are_the_learngene_descendant_before_any_update(transfer_run):
    rows = {(r["method"], r["arch"]): r for r in transfer_run["results"]["rows"]}
    instincts, learngene = rows[("instincts", "conv4 x0.25")], rows[("learngene", "conv4 x0.25")]
    assert not instincts["fine_tuned"]
    for name, result in instincts["results"].items():
        assert result["accuracies"] == learngene["results"][name]["prototype_before_accuracies"]


# --------------------------------------------------------------------------- scalability

@pytest.mark.parametrize("family,width,expected_layers", [
    ("conv4", 0.5, ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]),       # wider
    ("conv6", 0.25, ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]),      # deeper
    ("vgg11", 0.25, ["stages.0.0", "stages.1.0", "stages.2.0", "stages.3.0"]),  # other family
])
def test_descendants_of_other_width_depth_or_family_get_the_learngene_channels(tmp_path, family, width,
                                                                               expected_layers):
    learngene = make_learngene(tmp_path / "lg.pt")
    source = {layer.name: layer for layer in learngene.spec.layers}
    descendant = transfer.build_descendant(learngene, family, width, num_classes=5, seed=7, fresh=0.0)
    fresh = build_model(family, width, 3, 5, seed=7)
    assert sorted(descendant.inherited) == sorted(expected_layers)
    for target_name, src_name in zip(expected_layers, ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]):
        src = source[src_name]
        out_idx = np.flatnonzero(learngene.masks[src.group])
        in_idx = np.arange(3) if src.in_group is None else np.flatnonzero(learngene.masks[src.in_group])
        module = descendant.gene_module(target_name)
        keep_out = out_idx < module.conv.out_channels
        keep_in = in_idx < module.conv.in_channels
        written = module.conv.weight[np.ix_(out_idx[keep_out], in_idx[keep_in])]
        expected = torch.from_numpy(learngene.weights[src_name]["conv"][keep_out][:, keep_in])
        assert torch.equal(written, expected), target_name
        assert torch.equal(module.bn.weight[out_idx[keep_out]],
                           torch.from_numpy(learngene.weights[src_name]["bn_weight"][keep_out]))
        assert torch.equal(module.bn.running_var[out_idx[keep_out]],
                           torch.from_numpy(learngene.weights[src_name]["bn_var"][keep_out]))
    for layer in descendant.spec.layers:  # layers the learngene does not reach stay freshly initialised
        if layer.name not in expected_layers:
            assert torch.equal(descendant.gene_module(layer.name).conv.weight,
                               fresh.gene_module(layer.name).conv.weight)


def test_a_family_pairing_that_inherits_nothing_is_refused(tmp_path):
    learngene = make_learngene(tmp_path / "lg.pt")
    with pytest.raises(UserError, match="cannot be inherited by a resnet12"):
        transfer.build_descendant(learngene, "resnet12", 0.25)


def test_scalability_rows_are_reported_per_descendant(transfer_run):
    rows = [(r["method"], r["arch"]) for r in transfer_run["results"]["rows"]]
    assert rows == [(m, "conv4 x0.25") for m in METHODS] + [(m, "conv4 x0.5") for m in ("scratch", "pretrained",
                                                                                         "learngene")]
    wide = transfer_run["results"]["rows"][-1]
    same_arch = transfer_run["results"]["rows"][METHODS.index("learngene")]
    assert wide["params"] == same_arch["params"] == load_learngene(transfer_run["path"]).num_params
    assert wide["fraction"] < same_arch["fraction"]  # the same channels are a smaller share of a wider net


def test_random_learngene_keeps_as_many_channels_per_group_as_the_learngene(tmp_path):
    learngene = make_learngene(tmp_path / "lg.pt")
    a, b = transfer.random_masks_like(learngene, 1), transfer.random_masks_like(learngene, 2)
    assert {g: int(m.sum()) for g, m in a.items()} == {g: int(m.sum()) for g, m in learngene.masks.items()}
    assert any(not np.array_equal(a[g], b[g]) for g in a)


def test_l1_learngene_keeps_the_pretrained_channels_of_largest_filter_norm(tmp_path):
    learngene = make_learngene(tmp_path / "lg.pt")
    network = build_model("conv4", 0.25, 3, 5, seed=7)
    masks = transfer.top_l1_masks_like(learngene, network)
    assert {g: int(m.sum()) for g, m in masks.items()} == {g: int(m.sum()) for g, m in learngene.masks.items()}
    for layer in network.spec.layers:  # conv4: one layer per group, so the group's score is its layer's
        norms = network.gene_module(layer.name).conv.weight.detach().abs().flatten(1).mean(1).numpy()
        kept, dropped = norms[masks[layer.group]], norms[~masks[layer.group]]
        assert dropped.size == 0 or kept.min() >= dropped.max()


def test_layerwise_takes_whole_layers_from_the_input_closest_to_the_budget():
    spec = build_model("conv4", 0.5, 3, 5).spec  # layers: 928, 9280, 9280, 9280 parameters
    assert transfer.layerwise_layers(spec, 7000) == ["blocks.0", "blocks.1"]
    assert transfer.layerwise_layers(spec, 3000) == ["blocks.0"]
    assert transfer.layerwise_layers(spec, 22000) == ["blocks.0", "blocks.1", "blocks.2"]
    assert transfer.layerwise_layers(spec, 26000) == ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]


# --------------------------------------------------------------------- pre-trained cache

def test_the_pretrained_network_is_cached_under_its_key_and_another_key_never_replaces_it(transfer_run, monkeypatch,
                                                                                         tiny_dataset, tmp_path):
    out, info = transfer_run["folder"] / "out", transfer_run["results"]["pretrained"]
    assert not info["reused"] and os.path.dirname(info["path"]) == str(out)  # under --out, named by its key
    assert not [n for n in os.listdir(transfer_run["folder"]) if n.startswith("pretrained")]  # not beside it
    first = tmp_path / os.path.basename(info["path"])
    first.write_bytes(open(info["path"], "rb").read())
    logs = []
    _, info = transfer.load_or_pretrain(transfer_run["cfg"], tiny_dataset, CONV4, str(tmp_path), "cpu",
                                        logs.append)
    assert info["reused"] and "reusing" in logs[0]
    calls = []

    def fake_pretrain(*args, **kwargs):
        calls.append(args)
        return build_model("conv4", 0.25, 3, 64), {"steps": args[4].steps, "epochs": 1.0, "final_loss": 0.0,
                                                     "seconds": 0.0}

    monkeypatch.setattr(transfer.pretrain, "pretrain_network", fake_pretrain)
    other = load_config(None, transfer_overrides(**{"transfer.pretrain_epochs": 2}))
    before = first.read_bytes()
    _, info = transfer.load_or_pretrain(other, tiny_dataset, CONV4, str(tmp_path), "cpu", logs.append)
    assert len(calls) == 1 and not info["reused"] and info["path"] != str(first)
    assert first.read_bytes() == before  # the other key's network is still there
    _, info = transfer.load_or_pretrain(other, tiny_dataset, CONV4, str(tmp_path), "cpu", logs.append)
    assert len(calls) == 1 and info["reused"]
    _, info = transfer.load_or_pretrain(transfer_run["cfg"], tiny_dataset, CONV4, str(tmp_path), "cpu",
                                        logs.append)
    assert len(calls) == 1 and info["reused"] and info["path"] == str(first)


def test_pretraining_gets_the_evolutions_training_images_whatever_the_dataset_size(tiny_dataset):
    from learngene_ea.data.synthetic import make_synthetic

    cfg = load_config(None, transfer_overrides())  # task.batch_size 64
    bigger = make_synthetic(seed=0, images_per_class=60)
    for dataset in (tiny_dataset, bigger):
        assert transfer.pretrain.pretrain_steps(cfg, dataset, 6400) == (100, "equal compute: the evolution's "
                                                                              "training images")
    fixed = load_config(None, transfer_overrides(**{"transfer.pretrain_images": 640}))
    assert transfer.pretrain.pretrain_steps(fixed, bigger, 6400) == (10, "transfer.pretrain_images")
    # a learngene that does not record its compute: transfer.pretrain_epochs (1) epochs of the training classes
    assert transfer.pretrain.pretrain_steps(cfg, tiny_dataset, None)[0] == 30  # 64 classes x 30 images / 64
    assert transfer.pretrain.pretrain_steps(cfg, bigger, None)[0] == 60


def test_the_transfer_report_records_the_pretraining_compute_and_warns_near_chance(transfer_run):
    info = transfer_run["results"]["pretrained"]
    # make_learngene records no compute: one epoch of the 64 x 30 training images, in 64-image steps
    assert info["steps"] == 30 and info["training_images"] == 30 * 64 and info["evolution_training_images"] is None
    assert info["steps_decided_by"] == "transfer.pretrain_epochs"
    assert info["chance_loss"] == pytest.approx(math.log(64))
    warned = [line for line in transfer_run["logs"] if "near chance" in line]
    assert info["near_chance"] == (info["final_loss"] > 0.9 * math.log(64)) and bool(warned) == info["near_chance"]


def test_a_pretrained_network_that_learned_nothing_is_flagged(tiny_dataset, tmp_path):
    cfg = load_config(None, transfer_overrides(**{"transfer.pretrain_images": 64}))  # one step
    logs = []
    _, info = transfer.load_or_pretrain(cfg, tiny_dataset, CONV4, str(tmp_path), "cpu",
                                        logs.append)
    assert info["steps"] == 1 and info["near_chance"]
    assert any(line.startswith("warning: the pre-trained baseline's final loss") for line in logs)


def test_scratch_with_no_update_and_layerwise_at_equal_size_are_rows(transfer_run):
    rows = {row["method"]: row for row in transfer_run["results"]["rows"] if row["arch"] == "conv4 x0.25"}
    assert not rows["scratch-instincts"]["fine_tuned"] and rows["scratch-instincts"]["params"] == 0
    learngene_params = rows["learngene"]["params"]
    assert rows["layerwise-equal-size"]["params"] <= learngene_params < rows["layerwise"]["params"]
    paired = rows["learngene"]["results"]["5-shot"]["paired"]
    assert {"scratch", "scratch-instincts", "layerwise-equal-size"} <= set(paired)
    table = transfer.markdown_table(transfer_run["results"])
    assert "| learngene − scratch-instincts |" in table and "| learngene − layerwise-equal-size |" in table


def test_layerwise_at_most_never_exceeds_the_budget():
    from learngene_ea.core.models import arch_spec

    spec = arch_spec("conv4", 0.5, 3)
    sizes = [layer.num_params() for layer in spec.layers]
    assert transfer.layerwise_layers(spec, sizes[0] + sizes[1] - 1, at_most=True) == [spec.layers[0].name]
    assert transfer.layerwise_layers(spec, sizes[0] + sizes[1], at_most=True) == [l.name for l in spec.layers[:2]]
    assert transfer.layerwise_layers(spec, sizes[0] - 1, at_most=True) == []


# ------------------------------------------------------------------------------ slimming

# what an evolution records: 10 steps of 64 images in all, 4 of them its gene pool's warm start
SLIMMING_COMPUTE = {"training_images": 640, "warm_start_images": 256}


@pytest.fixture(scope="module")
def slimming_run(tmp_path_factory):
    """A transfer of a learngene that records its compute; the slimming network's warm start and
    training steps recorded as they happen."""
    folder = tmp_path_factory.mktemp("slimming")
    path = str(folder / "learngene.pt")
    learngene = make_learngene(path, **SLIMMING_COMPUTE)
    cfg = load_config(None, transfer_overrides(**{"transfer.shots": "[5]", "transfer.limited_data": 0}))
    warm, sub_steps = [], []
    pretrain_network, train_on_task = transfer.slimming.pretrain_network, transfer.slimming.train_on_task

    def recording_pretrain(*args, **kwargs):
        model, info = pretrain_network(*args, **kwargs)
        warm.append((model, info))
        return model, info

    def recording_train(model, dataset, task, settings, *args, **kwargs):
        sub_steps.append(settings.steps)
        return train_on_task(model, dataset, task, settings, *args, **kwargs)

    logs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer.slimming, "pretrain_network", recording_pretrain)
        patch.setattr(transfer.slimming, "train_on_task", recording_train)
        results = transfer.run_transfer(cfg, path, str(folder / "out"), log=logs.append)
    return {"results": results, "learngene": learngene, "cfg": cfg, "path": path, "folder": folder, "logs": logs,
            "warm": warm, "sub_steps": sub_steps}


def _row(results, method):
    return next(row for row in results["rows"] if row["method"] == method and row["arch"] == "conv4 x0.25")


def test_the_slimming_row_stands_beside_the_pretrained_row(slimming_run):
    results = slimming_run["results"]
    methods = [row["method"] for row in results["rows"]]
    assert "pretrained" in methods and methods.index("slimming") == methods.index("instincts") - 1
    assert _row(results, "slimming")["fine_tuned"]
    assert "slimming" in _row(results, "learngene")["results"]["5-shot"]["paired"]
    table = transfer.markdown_table(results)
    assert "| slimming | conv4 x0.25 |" in table and "| learngene − slimming |" in table
    assert "slimming (Network Slimming at equal compute): a warm start on 256 images" in table


def test_the_slimming_learngene_keeps_the_learngenes_channels_per_group(slimming_run):
    results, learngene = slimming_run["results"], slimming_run["learngene"]
    counts = {g: int(m.sum()) for g, m in learngene.masks.items()}
    cached = torch.load(results["slimming"]["path"], weights_only=True)
    slim = Learngene.from_state(cached["learngene"])
    assert {g: int(m.sum()) for g, m in slim.masks.items()} == counts == results["slimming"]["channels_kept"]
    assert any(not np.array_equal(slim.masks[g], learngene.masks[g]) for g in counts)  # its own channels
    assert _row(results, "slimming")["params"] == _row(results, "learngene")["params"]


def test_the_slimming_network_keeps_the_warm_starts_channels_of_largest_batchnorm_scale(slimming_run):
    (warm, info), = slimming_run["warm"]
    kept = slimming_run["results"]["slimming"]["kept"]
    assert info["steps"] == 4  # the evolution's warm start: 256 images of 64
    for layer in warm.spec.layers:  # conv4: one layer per group, so the group's score is its layer's
        scales = warm.gene_module(layer.name).bn.weight.detach().abs().numpy()
        order = np.argsort(-scales, kind="stable")
        assert sorted(kept[layer.group]) == sorted(order[:len(kept[layer.group])].tolist()), layer.name
        assert scales[kept[layer.group]].min() > np.delete(scales, kept[layer.group]).max(), layer.name


def test_the_slimming_network_trains_on_as_many_images_as_the_evolution(slimming_run):
    info, batch = slimming_run["results"]["slimming"], slimming_run["cfg"].task.batch_size
    (_, warm_info), = slimming_run["warm"]
    assert slimming_run["sub_steps"] == [6]  # the rest of the 10 steps: its sub-network's
    assert (warm_info["steps"] + slimming_run["sub_steps"][0]) * batch == SLIMMING_COMPUTE["training_images"]
    assert info["training_images"] == SLIMMING_COMPUTE["training_images"] == \
        slimming_run["results"]["pretrained"]["training_images"]
    assert (info["warm_start_images"], info["sub_network_images"]) == (256, 384)


def test_a_second_transfer_reuses_the_cached_slimming_network(slimming_run, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    for module in (transfer.slimming, transfer.pretrain):
        monkeypatch.setattr(module, "pretrain_network", no_training)
    monkeypatch.setattr(transfer.slimming, "train_on_task", no_training)
    first = slimming_run["results"]
    again = transfer.run_transfer(slimming_run["cfg"], slimming_run["path"], str(slimming_run["folder"] / "out"),
                                  transfer.TransferOptions(write=False), log=lambda *_: None)
    assert again["slimming"]["reused"] and again["slimming"]["path"] == first["slimming"]["path"]
    assert os.path.basename(first["slimming"]["path"]).startswith("slimming-")
    assert _row(again, "slimming")["results"]["5-shot"]["accuracies"] == \
        _row(first, "slimming")["results"]["5-shot"]["accuracies"]


def test_the_slimming_row_is_left_out_with_a_note_when_the_compute_is_not_recorded(transfer_run, tmp_path):
    results = transfer_run["results"]  # make_learngene records no compute
    methods = [row["method"] for row in results["rows"]]
    assert "pretrained" in methods and "slimming" not in methods
    assert "does not record its compute" in results["slimming"]["left_out"]
    assert any(line.startswith("slimming: left out: ") for line in transfer_run["logs"])
    assert "slimming: left out (the learngene does not record its compute" in transfer.markdown_table(results)
    cfg = transfer_run["cfg"]
    no_warm_start = make_learngene(tmp_path / "a.pt", training_images=640)  # saved before warm starts were recorded
    assert "warm_start_images" in transfer.slimming.slimming_steps(cfg, no_warm_start)
    cold = make_learngene(tmp_path / "b.pt", training_images=640, warm_start_images=0)  # e.g. lamarckian
    assert "no warm start" in transfer.slimming.slimming_steps(cfg, cold)


def test_workers_rebuild_the_slimming_row_from_the_shared_context(job_setup, slimming_run, monkeypatch):
    """Under SCOOP the slimming learngene travels with the context; a worker's row is the origin's."""
    import scoop.shared

    cfg, learngene, dataset, settings, pretrained, _ = job_setup
    slim = Learngene.from_state(
        torch.load(slimming_run["results"]["slimming"]["path"], weights_only=True)["learngene"])
    methods = transfer.baseline_methods(learngene, pretrained, (), cfg.transfer.complement_scale, slim)
    sent = {}
    monkeypatch.setattr(transfer.jobs, "spreads", lambda runtime: True)
    monkeypatch.setattr(transfer.jobs, "share_constant", lambda runtime, key, value: sent.update({key: value}))
    local = transfer.EpisodeContext(settings, methods, transfer.Bench(dataset, cfg.transfer, 3, "cpu"))
    transfer.share_transfer_context("slimming-test", cfg, learngene, pretrained, [], local, slim)
    transfer.jobs._CONTEXTS.pop("slimming-test")  # a worker has only what was sent
    monkeypatch.setattr(scoop.shared, "getConst", lambda name, timeout=0.1: sent.get(name))
    m = [method.name for method in methods].index("slimming")
    worker = transfer.evaluate_episode_job(("slimming-test", m, 1, 0))
    origin = transfer.evaluate_episode(methods[m], transfer.Bench(dataset, cfg.transfer, 3, "cpu"), settings[1], 0)
    for record in (worker, origin):
        record.pop("seconds")
    assert worker == origin


# ------------------------------------------------------------------------------ reports

def test_transfer_json_has_the_documented_fields(transfer_run):
    with open(transfer_run["folder"] / "out" / "transfer.json") as f:
        data = json.load(f)
    assert data["format"] == "learngene-ea/transfer-v1"
    assert {"learngene", "evaluation", "dataset", "device", "pretrained", "settings", "rows", "timings"} <= set(data)
    assert {"num_params", "fraction", "family", "width", "channels_kept"} <= set(data["learngene"])
    assert {"episodes", "n_way", "shots", "limited_data", "steps", "lr", "optimizer", "seed"} <= set(data["evaluation"])
    assert [s["name"] for s in data["settings"]] == ["1-shot", "5-shot", "limited-10"]
    for setting in data["settings"]:
        assert len(setting["episodes"]) == 2 and len(setting["episode_seeds"]) == 2
        assert {"seed", "digest", "classes", "support", "query"} <= set(setting["episodes"][0])
    for row in data["rows"]:
        assert {"method", "arch", "params", "gene_params", "fraction", "results"} <= set(row)
        for result in row["results"].values():
            assert {"mean", "ci95", "accuracies", "seconds", "init_seeds", "episode_digests"} <= set(result)
    assert {"total", "evaluation", "pretrained"} <= set(data["timings"])
    learngene_row = next(r for r in data["rows"] if r["method"] == "learngene")
    assert learngene_row["params"] == data["learngene"]["num_params"]
    assert learngene_row["fraction"] == pytest.approx(data["learngene"]["fraction"])


def test_markdown_table_has_one_row_per_method_and_one_column_per_setting(transfer_run):
    text = (transfer_run["folder"] / "out" / "transfer.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert header.count("|") == 3 + 3 + 1 and "5-way 1-shot" in header and "5-way 10/class" in header
    table = text.split("Paired differences")[0]
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    assert len(body) == len(transfer_run["results"]["rows"])
    assert all(line.count("±") == 3 for line in body)


def test_the_plot_is_a_real_png_with_content(transfer_run):
    import matplotlib.image

    path = transfer_run["folder"] / "out" / "transfer.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 10


# ---------------------------------------------------------------- fitness helper and CLI

def test_finetune_head_accuracies_leaves_the_model_untouched(tiny_dataset):
    from learngene_ea.fewshot.sampling import sample_episodes

    model = build_model("conv4", 0.25, 3, 5, seed=3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    episodes = sample_episodes(tiny_dataset, 0, 3, 5, 5, 5, "val")
    accs = transfer.finetune_head_accuracies(model, tiny_dataset, episodes, steps=10, device="cpu")
    assert accs.shape == (3,) and ((accs >= 0) & (accs <= 1)).all()
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = transfer.finetune_head_accuracies(model, tiny_dataset, episodes, steps=10, device="cpu")
    assert np.array_equal(accs, again)


@pytest.mark.parametrize("extra,message", [
    (["--learngene", "missing/learngene.pt"], "does not exist"),
    (["--descendants", "conv4@abc"], "family@width"),
    (["--descendants", "resnet99@1"], "unknown family"),
    (["--descendants", "resnet12"], "cannot be inherited"),
    (["--set", "model.family=vgg11"], "recipe's model is vgg11"),
    (["--set", "transfer.limited_data=40"], "transfer.limited_data"),
])
def test_cli_input_mistakes_exit_2_with_one_sentence(tmp_path, capsys, extra, message):
    path = str(tmp_path / "learngene.pt")
    make_learngene(path)
    argv = ["--learngene", path, "--quiet", "--out", str(tmp_path)]
    argv += [a for o in transfer_overrides() for a in ("--set", o)] + extra
    assert transfer_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_second_transfer_into_the_same_folder_keeps_the_first_reports(tmp_path, capsys):
    path = str(tmp_path / "learngene.pt")
    make_learngene(path)
    argv = ["--learngene", path, "--quiet"] + [a for o in transfer_overrides() for a in ("--set", o)]
    argv += ["--set", "transfer.shots=[1]", "--set", "transfer.limited_data=0", "--set", "transfer.episodes=1"]
    assert transfer_main(argv) == 0
    first = {kind: (tmp_path / f"transfer.{kind}").read_bytes() for kind in ("json", "md", "png")}
    assert transfer_main(argv + ["--set", "transfer.steps=1"]) == 0
    assert {kind: (tmp_path / f"transfer.{kind}").read_bytes() for kind in ("json", "md", "png")} == first
    second = json.loads((tmp_path / "transfer-2.json").read_text())
    assert second["evaluation"]["steps"] == 1 and (tmp_path / "transfer-2.md").is_file()
    assert f"transfer reports: {tmp_path / 'transfer-2.md'}" in capsys.readouterr().out


def test_numbered_reports_take_the_first_free_number():
    import tempfile

    from learngene_ea.reports.files import free_stem

    with tempfile.TemporaryDirectory() as folder:
        assert free_stem(folder, "front-transfer") == "front-transfer"
        open(os.path.join(folder, "front-transfer.png"), "w").close()  # any one of the three is a report
        assert free_stem(folder, "front-transfer") == "front-transfer-2"
        open(os.path.join(folder, "front-transfer-2.md"), "w").close()
        assert free_stem(folder, "front-transfer") == "front-transfer-3"


@pytest.mark.parametrize("flag,make,message", [
    ("--learngene", lambda p: os.mkfifo(p), "is a fifo (named pipe), not a regular file; pass the learngene.pt"),
    ("--learngene", lambda p: p.symlink_to(p.name), "is a symbolic-link loop; pass the learngene.pt"),
    ("--out", lambda p: p.write_text("x"), "is a file, not a folder; pass a folder for the reports"),
    ("--pretrained", lambda p: p.mkdir(), "is a folder, not a file; pass the state dict file"),
    ("--pretrained", lambda p: os.mkfifo(p), "is a fifo (named pipe), not a regular file; pass the state dict"),
])
def test_a_path_flag_naming_the_wrong_kind_of_file_exits_2_before_anything_loads(tmp_path, capsys, flag, make,
                                                                                 message):
    learngene = str(tmp_path / "learngene.pt")
    make_learngene(learngene)
    odd = tmp_path / "odd"
    make(odd)
    argv = ["--learngene", learngene, "--quiet", flag, str(odd)]
    if flag == "--learngene":
        argv = argv[2:]
    assert transfer_main(argv) == 2
    err = capsys.readouterr().err
    named = "Learngene file" if flag == "--learngene" else flag
    assert err.startswith(f"error: {named} {str(odd)!r} {message}") and err.count("\n") == 1


def learngene_that_saw(path, train_classes, data_seed=0):
    """A learngene file whose metadata says it was evolved with these training classes."""
    learngene = make_learngene(path)
    learngene.meta.update(data={"name": "synthetic", "seed": data_seed, "root": None},
                          classes={"train": train_classes, "val": []})
    learngene.save(path)


def test_transfer_refuses_test_classes_the_learngene_was_evolved_on(tmp_path, capsys):
    path = str(tmp_path / "learngene.pt")
    learngene_that_saw(path, ["synth-003", "synth-081", "synth-090"])  # 80-99 are the test classes
    argv = ["--learngene", path, "--quiet", "--out", str(tmp_path)] + [a for o in transfer_overrides()
                                                                       for a in ("--set", o)]
    assert transfer_main(argv) == 2
    err = capsys.readouterr().err
    assert "2 of the 20 test classes ('synth-081', 'synth-090') were training or validation classes" in err
    assert "--allow-seen-classes" in err and not (tmp_path / "transfer.json").exists()
    quick = ["--set", "transfer.shots=[1]", "--set", "transfer.limited_data=0", "--set", "transfer.episodes=1"]
    assert transfer_main(argv + quick + ["--allow-seen-classes"]) == 0
    report = json.loads((tmp_path / "transfer.json").read_text())
    assert report["dataset"]["test_classes_seen_by_learngene"] == ["synth-081", "synth-090"]


def test_classes_of_another_synthetic_dataset_are_not_the_same_classes(tiny_dataset, tmp_path):
    from learngene_ea.core.learngene import load_learngene
    from learngene_ea.transfer.pipeline import seen_test_classes

    cfg = load_config(None, transfer_overrides())
    path = str(tmp_path / "learngene.pt")
    learngene_that_saw(path, ["synth-081"], data_seed=1)
    assert seen_test_classes(load_learngene(path), cfg.data, tiny_dataset) == []
    learngene_that_saw(path, ["synth-081"], data_seed=0)
    assert seen_test_classes(load_learngene(path), cfg.data, tiny_dataset) == ["synth-081"]


def test_python_m_learngene_ea_transfer_exits_2_without_traceback(tmp_path):
    result = run_module(["-m", "learngene_ea.transfer", "--learngene", str(tmp_path / "nope.pt")], cwd=ROOT)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------- episodes as jobs for any process

@pytest.fixture(scope="module")
def job_setup(tmp_path_factory):
    """Methods of a tiny transfer evaluation, with an untrained stand-in for the pre-trained network."""
    from learngene_ea.data import load_dataset

    cfg = load_config(None, transfer_overrides())
    learngene = make_learngene(str(tmp_path_factory.mktemp("jobs") / "lg.pt"))
    dataset = load_dataset(cfg.data)
    settings = transfer.make_settings(cfg.transfer, dataset)
    pretrained = build_model("conv4", 0.25, 3, len(dataset.splits["train"]), seed=7)
    methods = transfer.baseline_methods(learngene, pretrained, complement_scale=cfg.transfer.complement_scale)
    return cfg, learngene, dataset, settings, pretrained, methods


def _numbers(rows):
    keep = ("accuracies", "prototype_before_accuracies", "final_losses", "init_seeds", "episode_digests", "params")
    return [(r["method"], {s: {k: v[k] for k in keep} for s, v in r["results"].items()}) for r in rows]


def test_episode_jobs_in_any_order_give_the_rows_of_the_serial_loop(job_setup):
    cfg, learngene, dataset, settings, pretrained, methods = job_setup
    quiet = lambda *_: None  # noqa: E731
    bench = transfer.Bench(dataset, cfg.transfer, 3, "cpu")
    serial = transfer.evaluate_transfer(methods, bench, settings, log=quiet)
    transfer.share_transfer_context("jobs-test", cfg, learngene, pretrained, [], transfer.EpisodeContext(
        settings, methods, transfer.Bench(dataset, cfg.transfer, 3, torch.device("cpu"))))

    def backwards_map(function, jobs):  # another process would take them in another order
        jobs = list(jobs)
        return list(reversed([function(job) for job in reversed(jobs)]))

    jobs = transfer.evaluate_transfer(methods, bench, settings, log=quiet, map_function=backwards_map,
                                      context_key="jobs-test")
    assert _numbers(jobs) == _numbers(serial)
    assert [r["results"][s.name]["paired"] for r in jobs for s in settings] == \
        [r["results"][s.name]["paired"] for r in serial for s in settings]


def test_each_method_and_setting_gets_a_bar_over_its_episodes_and_the_rows_do_not_change(job_setup):
    cfg, learngene, dataset, settings, pretrained, methods = job_setup
    quiet = lambda *_: None  # noqa: E731
    bars = []

    def progress(items, total, desc):
        bars.append((desc, total))
        return items

    bench = transfer.Bench(dataset, cfg.transfer, 3, "cpu")
    shown = transfer.evaluate_transfer(methods, bench, settings, log=quiet, progress=progress)
    assert bars == [(f"{m.name} [{m.arch}] {s.name}", len(s.episodes)) for m in methods for s in settings]
    assert _numbers(shown) == _numbers(transfer.evaluate_transfer(methods, bench, settings, log=quiet))


def test_a_worker_rebuilds_the_methods_from_the_shared_context(job_setup, monkeypatch):
    """A SCOOP worker has only what ``share_transfer_context`` sent: recipe, learngene, pre-trained
    weights. From them it must compute exactly the origin's episode record."""
    import scoop.shared

    cfg, learngene, dataset, settings, pretrained, methods = job_setup
    sent = {"config": cfg, "learngene": learngene, "descendants": [],
            "pretrained": {k: v.clone() for k, v in pretrained.state_dict().items()}}
    monkeypatch.setattr(scoop.shared, "getConst", lambda name, timeout=0.1: sent if name == "worker-test" else None)
    for m, method in enumerate(methods):
        worker = transfer.evaluate_episode_job(("worker-test", m, 1, 0))
        origin = transfer.evaluate_episode(method, transfer.Bench(dataset, cfg.transfer, 3, "cpu"), settings[1], 0)
        for record in (worker, origin):
            record.pop("seconds")
        assert worker == origin, method.name


def test_every_scalability_descendant_has_its_own_equal_compute_pretrained_network(transfer_run):
    results = transfer_run["results"]
    own, main = results["pretrained_descendants"]["conv4 x0.5"], results["pretrained"]
    assert own["steps"] == main["steps"] and own["training_images"] == main["training_images"]  # equal compute
    assert own["path"] != main["path"] and os.path.dirname(own["path"]) == os.path.dirname(main["path"])  # cached
    row = next(r for r in results["rows"] if (r["method"], r["arch"]) == ("pretrained", "conv4 x0.5"))
    assert row["params"] == row["gene_params"] == build_model("conv4", 0.5).spec.num_gene_params()


def test_a_worker_rebuilds_a_descendants_own_pretrained_row(job_setup, monkeypatch):
    import scoop.shared

    cfg, learngene, dataset, settings, pretrained, _ = job_setup
    wide = build_model("conv4", 0.5, 3, len(dataset.splits["train"]), seed=8)
    methods = transfer.baseline_methods(learngene, pretrained, {("conv4", 0.5): wide}, cfg.transfer.complement_scale)
    sent = {"config": cfg, "learngene": learngene,
            "descendants": [(["conv4", 0.5], {k: v.clone() for k, v in wide.state_dict().items()})],
            "pretrained": {k: v.clone() for k, v in pretrained.state_dict().items()}}
    monkeypatch.setattr(scoop.shared, "getConst", lambda name, timeout=0.1: sent if name == "wide-test" else None)
    m = next(m for m, method in enumerate(methods) if (method.name, method.arch) == ("pretrained", "conv4 x0.5"))
    worker = transfer.evaluate_episode_job(("wide-test", m, 1, 0))
    origin = transfer.evaluate_episode(methods[m], transfer.Bench(dataset, cfg.transfer, 3, "cpu"), settings[1], 0)
    for record in (worker, origin):
        record.pop("seconds")
    assert worker == origin


def test_an_episode_job_is_sent_to_workers_by_its_importable_module_path():
    """SCOOP pickles the job function by reference: it must resolve in any process, whichever module
    (``-m learngene_ea.transfer`` or ``learngene_ea.run``) started the origin."""
    import pickle

    data = pickle.dumps(transfer.evaluate_episode_job)
    assert b"learngene_ea.transfer.jobs" in data and b"__main__" not in data
    assert pickle.loads(data) is transfer.evaluate_episode_job
