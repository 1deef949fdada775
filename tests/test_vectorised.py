"""Population training that can fill a GPU: every step, the scoring and the extraction of P stacked
descendants are the same few operations whatever P, and give the one-by-one path's results.

Tolerances: a batch built for all descendants at once is bit-identical to each descendant's own
(:func:`make_batch`); stacked training's losses are within 1e-4 (relative) of one-by-one training's
after 4 steps; stacked scoring gives the same per-episode accuracies as scoring each descendant alone
(exactly on a CPU; within one query per episode on a GPU); extraction and inheritance are exact. A
seed gives the same evaluation, bit for bit, run after run.
"""
import copy

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from learngene_ea.config.loading import load_config
from learngene_ea.core.batched import StackedDescendants
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import (Learngene, extract_learngene, full_masks, inherit_learngene,
                                         learngene_from_weights, packed_copy)
from learngene_ea.core.models import arch_spec, build_model
from learngene_ea.ea import fitness
from learngene_ea.fewshot import training
from learngene_ea.fewshot.batches import PlannedBatches, TaskBatches, make_batch, normalisation, reflect
from learngene_ea.fewshot.sampling import sample_episodes, sample_task
from learngene_ea.fewshot.stacked_scoring import stacked_prototype_accuracies
from learngene_ea.fewshot.training import PopulationTrainer, TrainSettings, train_on_task, train_stacked
from learngene_ea.parallel import process

LOSS_RELATIVE_TOLERANCE = 1e-4
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def test_reflect_reads_the_padding_as_torch_pads():
    row = torch.arange(6.0).view(1, 1, 6)
    padded = torch.nn.functional.pad(row, (4, 4), mode="reflect").view(-1)
    assert torch.equal(padded, row.view(-1)[reflect(torch.arange(-4, 10), 6)])


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_one_gather_builds_every_descendants_batch_exactly(tiny_dataset, augment, layout):
    streams = [TaskBatches(sample_task(tiny_dataset, 10 + p, 5, 8), 16, p) for p in range(3)]
    draws = torch.stack([s.plan(2, augment) for s in streams], dim=1)  # [steps, P, 5, B]
    block = PlannedBatches(draws, tiny_dataset.images.shape[1:], augment, layout)
    mean, std = normalisation(tiny_dataset, "cpu")
    for t in range(2):
        together = block.batch(tiny_dataset.images, t, mean.view(-1, 1, 1), std.view(-1, 1, 1))
        each = [make_batch(tiny_dataset.images, d[0], mean, std, d[2:] if augment else None) for d in draws[t]]
        assert torch.equal(together, torch.cat(each, dim=1))
        assert together.is_contiguous(memory_format=layout)
        assert torch.equal(block.labels[t], draws[t, :, 1])


def _outermost_ops_of_one_step(count, tiny_dataset, device="cpu"):
    from torch.profiler import ProfilerActivity, profile

    models = [build_model("conv4", 0.25, num_classes=5, seed=p, device=device) for p in range(count)]
    network = StackedDescendants(models, torch.channels_last) if count > 1 else models[0]
    streams = [TaskBatches(sample_task(tiny_dataset, 10 + p, 5, 8), 16, p) for p in range(count)]
    trainer = PopulationTrainer(network, tiny_dataset, torch.device(device), TrainSettings(4, 16, 0.01))
    block = trainer.plan(streams, 3)
    trainer.step(block, 0)  # the first step creates the momentum buffers
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.step(block, 1)
    aten = [e for e in prof.events() if e.name.startswith("aten::")]
    return sum(1 for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))


def test_a_step_is_the_same_operations_for_any_number_of_stacked_descendants(tiny_dataset):
    """No Python work per descendant: the operations called from Python and autograd do not grow with P."""
    two, five = (_outermost_ops_of_one_step(p, tiny_dataset) for p in (2, 5))
    assert two == five
    assert _outermost_ops_of_one_step(1, tiny_dataset) <= two


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("augment", [True, False])
def test_stacked_losses_are_one_by_one_losses_within_the_tolerance(tiny_dataset, device, augment):
    models = [build_model("conv4", 0.25, num_classes=5, seed=i, device=device) for i in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    tasks = [sample_task(tiny_dataset, 100 + i, 5, 8) for i in range(3)]
    losses = train_stacked(models, tiny_dataset, tasks, TrainSettings(4, 16, 0.05, augment=augment), [0, 1, 2], device)
    for i, (model, task) in enumerate(zip(alone, tasks)):
        loss = train_on_task(model, tiny_dataset, task, TrainSettings(4, 16, 0.05, augment=augment), i, device)
        assert loss == pytest.approx(losses[i], rel=LOSS_RELATIVE_TOLERANCE)


def _trained_stack(tiny_dataset, count=3, device="cpu"):
    models = [build_model("conv4", 0.25, num_classes=5, seed=i, device=device) for i in range(count)]
    tasks = [sample_task(tiny_dataset, 100 + i, 5, 8) for i in range(count)]
    train_stacked(models, tiny_dataset, tasks, TrainSettings(3, 16, 0.05), list(range(count)), device)
    return models, StackedDescendants(models, training.stacked_layout(device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_stacked_scoring_gives_each_descendants_own_accuracies(tiny_dataset, device, metric):
    models, stack = _trained_stack(tiny_dataset, device=device)
    episodes = sample_episodes(tiny_dataset, 5, 6, 5, 3, 5, "val")
    together = stacked_prototype_accuracies(stack, tiny_dataset, episodes, metric, device)
    each = np.stack([training.prototype_accuracies(m, tiny_dataset, episodes, metric, device) for m in models])
    assert together.shape == (3, 6)
    if device == "cpu":
        assert np.array_equal(together, each)
    else:  # TF32 and cuDNN's own summation orders: a near tie may fall the other way
        assert np.abs(together - each).max() <= 1 / 25 + 1e-6


def test_stacked_scoring_groups_episodes_of_different_shapes(tiny_dataset):
    models, stack = _trained_stack(tiny_dataset)
    episodes = [sample_episodes(tiny_dataset, 5, 2, 5, 3, 5, "val")[0],
                sample_episodes(tiny_dataset, 6, 1, 3, 1, 2, "val")[0],
                sample_episodes(tiny_dataset, 7, 2, 5, 3, 5, "val")[1]]
    together = stacked_prototype_accuracies(stack, tiny_dataset, episodes)
    each = np.stack([training.prototype_accuracies(m, tiny_dataset, episodes) for m in models])
    assert np.array_equal(together, each)


@pytest.mark.parametrize("score", ["descendant", "learngene", "mix"])
def test_score_stacked_is_score_descendant_of_each(tiny_dataset, score):
    cfg = load_config(None, tiny_overrides(**{"fitness.score": score}))
    models, stack = _trained_stack(tiny_dataset)
    spec = models[0].spec
    masks = [{g: np.arange(size) % (p + 2) != 0 for g, size in spec.groups} for p in range(3)]
    together = fitness.score_stacked(stack, cfg, tiny_dataset, "cpu", masks)
    each = [fitness.episode_accuracies(m, cfg, tiny_dataset, "cpu", masks=mk) for m, mk in zip(models, masks)]
    assert len(together) == len(each) and all(np.array_equal(a, b) for a, b in zip(together, each))


def test_a_fine_tuned_head_is_not_scored_stacked(tiny_dataset):
    cfg = load_config(None, tiny_overrides(**{"fitness.classifier": "finetune"}))
    _, stack = _trained_stack(tiny_dataset)
    assert fitness.score_stacked(stack, cfg, tiny_dataset, "cpu", [full_masks(stack.models[0].spec)] * 3) is None


def test_extraction_from_the_stack_is_each_descendants_learngene(tiny_dataset):
    models, stack = _trained_stack(tiny_dataset)
    spec = models[0].spec
    masks = {g: np.arange(size) % 3 != 1 for g, size in spec.groups}
    for model, weights in zip(models, stack.gene_weights()):
        together, alone = learngene_from_weights(spec, weights, masks), extract_learngene(model, masks)
        for layer in alone.weights:
            for key, value in alone.weights[layer].items():
                assert np.array_equal(together.weights[layer][key], value) and value.dtype == np.float32


def test_packed_copy_gives_back_every_array():
    arrays = [np.arange(3, dtype=np.int64), np.zeros(0, dtype=np.int64), np.random.default_rng(0).random((2, 3, 5),
              dtype=np.float32), np.arange(5, dtype=np.float32)[::2], np.array([7], dtype=np.int64)]
    for array, tensor in zip(arrays, packed_copy(arrays, torch.device("cpu"))):
        assert tensor.dtype == torch.from_numpy(np.ascontiguousarray(array)).dtype
        assert np.array_equal(tensor.numpy(), array)


def test_inheriting_a_learngene_copies_to_the_device_once(monkeypatch):
    spec = arch_spec("conv4", 0.25)
    donor = build_model("conv4", 0.25, num_classes=5, seed=1)
    masks = {g: np.arange(size) % 2 == 0 for g, size in spec.groups}
    learngene = extract_learngene(donor, masks)
    model = build_model("conv4", 0.25, num_classes=5, seed=2)
    copies = []
    original = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: copies.append(1) or original(self, *a, **k))
    written = inherit_learngene(model, learngene)
    monkeypatch.undo()
    assert len(copies) == 1 and len(written) == len(spec.layers)
    inherited = extract_learngene(model, masks)
    for layer, weights in learngene.weights.items():
        for key, value in weights.items():
            assert np.array_equal(inherited.weights[layer][key], value)


def _population(cfg, n):
    spec = arch_spec(cfg.model.family, cfg.model.width)
    inds = [make_individual(spec, full_masks(spec), i, born=0) for i in range(n)]
    for ind in inds:
        ind.evaluated_in = 0
    return inds


def test_a_seed_gives_the_same_stacked_evaluation_run_after_run():
    cfg = load_config(None, tiny_overrides())
    first, second = (fitness.evaluate_chunk(_population(cfg, 3), cfg) for _ in range(2))
    for a, b in zip(first, second):
        assert a.info["stacked"] == b.info["stacked"] == 3
        assert a.fitness == b.fitness and a.info["loss"] == b.info["loss"] and a.info["ci95"] == b.info["ci95"]
        for layer, weights in a.learngene.weights.items():
            assert all(np.array_equal(v, b.learngene.weights[layer][k]) for k, v in weights.items())


def test_stacked_evaluations_equal_one_by_one_evaluations_within_the_tolerance():
    cfg = load_config(None, tiny_overrides(**{"task.lr": 0.01}))
    together = fitness.evaluate_chunk(_population(cfg, 3), cfg)
    alone = [fitness.evaluate(ind, cfg) for ind in _population(cfg, 3)]
    for t, a in zip(together, alone):
        assert t.info["stacked"] == 3 and t.fitness == a.fitness
        assert t.info["loss"] == pytest.approx(a.info["loss"], rel=LOSS_RELATIVE_TOLERANCE)
        assert isinstance(t.learngene, Learngene)


def test_runtime_precision_is_fp32_by_default_and_bf16_autocasts_the_forward_pass():
    cfg = load_config(None, tiny_overrides(**{"runtime.precision": "bf16"}))
    assert load_config(None, tiny_overrides()).runtime.precision == "fp32" and cfg.runtime.precision == "bf16"
    with training.autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")  # fp32: nothing
    try:
        process.configure_process(cfg.runtime)
        with training.autocast(torch.device("cpu")):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if torch.cuda.is_available():
            with training.autocast(torch.device("cuda")):
                assert torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.bfloat16
    finally:
        training.use_precision("fp32")


def test_a_network_pre_trained_in_bf16_is_cached_apart_from_fp32s():
    from learngene_ea.transfer.pretrain import pretrain_key

    fp32, bf16 = (load_config(None, tiny_overrides(**{"runtime.precision": p})) for p in ("fp32", "bf16"))
    assert "precision" not in pretrain_key(fp32, "conv4", 0.25, 3, 10)  # fp32 keys say nothing of precision
    assert pretrain_key(bf16, "conv4", 0.25, 3, 10)["precision"] == "bf16"


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_training_stays_close_to_fp32(tiny_dataset, device):
    tasks = [sample_task(tiny_dataset, 100 + i, 5, 8) for i in range(3)]
    losses = {}
    for precision in ("fp32", "bf16"):
        training.use_precision(precision)
        try:
            models = [build_model("conv4", 0.25, num_classes=5, seed=i, device=device) for i in range(3)]
            losses[precision] = train_stacked(models, tiny_dataset, tasks, TrainSettings(4, 16, 0.05), [0, 1, 2], device)
        finally:
            training.use_precision("fp32")
    assert all(np.isfinite(losses["bf16"]))
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)
