"""Population batching trains several descendants as one grouped network, with the same results."""
import copy

import numpy as np
import pytest
import torch

from conftest import tiny_overrides
from learngene_ea.ea import fitness
from learngene_ea.fewshot import process
from learngene_ea.core.batched import StackedDescendants
from learngene_ea.config.loading import load_config
from learngene_ea.core.individual import make_individual
from learngene_ea.core.learngene import full_masks
from learngene_ea.core.models import arch_spec, build_model
from learngene_ea.fewshot.sampling import sample_task
from learngene_ea.fewshot.training import TrainSettings, train_on_task, train_stacked

# Float summation order differs between a grouped convolution and separate ones. Training
# amplifies it (measured on ResNet12 x0.25, batch 16: 2e-5 after 1 step, 3e-4 after 2, 2e-3
# after 3), so weights are compared after 2 steps and accuracies after a full evaluation.
WEIGHT_TOLERANCE = 1e-3
ACCURACY_TOLERANCE = 0.02

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="needs a CUDA GPU"))]


@pytest.fixture
def full_fp32():
    """On a GPU, convolutions and matrix products in FP32, not TF32 (PyTorch's default for cuDNN),
    so that a stacked and a separate network differ only in summation order, as on a CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["conv4", "vgg11", "resnet12"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_stacked_forward_equals_each_descendant(family, train_mode, device, full_fp32):
    models = [build_model(family, 0.25, num_classes=5, seed=i, device=device).train(train_mode) for i in range(3)]
    xs = [torch.randn(4, 3, 32, 32, device=device) for _ in range(3)]
    stacked = StackedDescendants(models).train(train_mode)
    out = stacked(torch.cat(xs, dim=1))
    expected = torch.stack([m(x) for m, x in zip(models, xs)], dim=1)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", ["conv4", "resnet12"])
def test_stacked_training_matches_one_by_one_including_batchnorm(family, tiny_dataset, device, full_fp32):
    models = [build_model(family, 0.25, num_classes=5, seed=i, device=device) for i in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    tasks = [sample_task(tiny_dataset, 100 + i, 5, 8) for i in range(3)]
    losses = train_stacked(models, tiny_dataset, tasks, TrainSettings(2, 16, 0.01), seeds=[0, 1, 2], device=device)
    for i, (model, task) in enumerate(zip(alone, tasks)):
        loss = train_on_task(model, tiny_dataset, task, TrainSettings(2, 16, 0.01), seed=i, device=device)
        assert loss == pytest.approx(losses[i], abs=WEIGHT_TOLERANCE)
    for a, b in zip(models, alone):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            if x.dtype.is_floating_point:
                assert torch.allclose(x, y, atol=WEIGHT_TOLERANCE), name  # BN running stats included


def test_on_a_cpu_the_stacked_network_runs_channels_last(tiny_dataset, monkeypatch):
    """Its grouped convolutions are faster so (bench: 1.3-1.8x); the descendants keep their layout."""
    from learngene_ea.fewshot import training

    stack_layouts = []

    class RecordingStack(StackedDescendants):
        def __init__(self, models, layout=None):
            super().__init__(models, layout)
            first = self.stack.get_submodule(models[0].spec.layers[0].name)
            stack_layouts.append(first.conv.weight.is_contiguous(memory_format=torch.channels_last))

    monkeypatch.setattr(training, "StackedDescendants", RecordingStack)
    models = [build_model("conv4", 0.25, num_classes=5, seed=i) for i in range(2)]
    tasks = [sample_task(tiny_dataset, 100 + i, 5, 8) for i in range(2)]
    train_stacked(models, tiny_dataset, tasks, TrainSettings(1, 16, 0.01), seeds=[0, 1])
    assert stack_layouts == [True]
    assert all(m.gene_module(m.spec.layers[0].name).conv.weight.is_contiguous() for m in models)


def _population(cfg, n, widths=None):
    inds = []
    for i in range(n):
        spec = arch_spec(cfg.model.family, widths[i] if widths else cfg.model.width)
        ind = make_individual(spec, full_masks(spec), i, born=0)
        ind.evaluated_in = 0
        inds.append(ind)
    return inds


@pytest.mark.parametrize("device", DEVICES)
def test_batched_fitness_gives_the_same_accuracies_as_one_by_one(device, monkeypatch):
    """On a GPU with its default TF32 convolutions too: the accuracies are what the fitness uses."""
    cfg = load_config(None, tiny_overrides(**{"task.lr": 0.01, "runtime.device": device}))
    evaluate, fallbacks = fitness.evaluate, []
    monkeypatch.setattr(fitness, "evaluate", lambda *a, **k: fallbacks.append(1) or evaluate(*a, **k))
    batched = fitness.evaluate_chunk(_population(cfg, 3), cfg)
    assert not fallbacks and all(b.info["stacked"] == 3 for b in batched)  # the stacked network trained them
    single = [fitness.evaluate(ind, cfg) for ind in _population(cfg, 3)]
    for b, s in zip(batched, single):
        assert "error" not in b.info and "error" not in s.info
        assert b.fitness[1] == s.fitness[1]
        assert b.fitness[0] == pytest.approx(s.fitness[0], abs=ACCURACY_TOLERANCE)
        if device == "cpu":  # TF32 rounds each product to 10 mantissa bits: no weight tolerance claimed
            assert np.allclose(b.learngene.weights["blocks.0"]["conv"], s.learngene.weights["blocks.0"]["conv"],
                               atol=WEIGHT_TOLERANCE)


def test_descendants_of_different_shapes_fall_back_to_one_by_one(monkeypatch):
    cfg = load_config(None, tiny_overrides())
    calls = []
    monkeypatch.setattr(fitness, "train_network", lambda *a, **k: calls.append(1))
    results = fitness.evaluate_chunk(_population(cfg, 2, widths=[0.25, 0.5]), cfg)
    assert not calls and len(results) == 2 and all(r.learngene is not None for r in results)


def test_a_failing_batch_falls_back_to_individual_evaluations(monkeypatch):
    cfg = load_config(None, tiny_overrides())

    def broken(*args, **kwargs):  # the stacked network fails; one by one, descendants train (train_stacked)
        raise RuntimeError("grouped convolution failed")

    monkeypatch.setattr(fitness, "train_network", broken)
    results = fitness.evaluate_chunk(_population(cfg, 2), cfg)
    assert all("error" not in r.info for r in results)


def test_evolution_with_population_batching_runs():
    from learngene_ea.ea.evolve import evolve, new_state
    from learngene_ea.ea.toolbox import build_toolbox

    cfg = load_config(None, tiny_overrides(**{"fitness.population_batch": 2, "ea.generations": 1}))
    toolbox = build_toolbox(cfg)
    assert toolbox.chunk_size == 2
    state = evolve(cfg, toolbox, new_state(cfg), log=lambda *a: None)
    assert [r["evals"] for r in state.logbook] == [4, 3]


# ------------------------------------------------------------------ channels-last layout

@pytest.fixture
def channels_last():
    from learngene_ea.core.models import use_channels_last

    use_channels_last(True)
    yield
    use_channels_last(False)


def _train_and_state(family, tiny_dataset, stacked):
    models = [build_model(family, 0.25, num_classes=5, seed=i) for i in range(2)]
    tasks = [sample_task(tiny_dataset, 100 + i, 5, 8) for i in range(2)]
    if stacked:
        losses = train_stacked(models, tiny_dataset, tasks, TrainSettings(2, 16, 0.01), seeds=[0, 1])
    else:
        losses = [train_on_task(m, tiny_dataset, t, TrainSettings(2, 16, 0.01), seed=i) for i, (m, t) in enumerate(zip(models, tasks))]
    return models, losses


@pytest.mark.parametrize("family", ["conv4", "resnet12"])
@pytest.mark.parametrize("stacked", [False, True])
def test_channels_last_trains_like_the_default_layout(family, stacked, tiny_dataset, channels_last):
    from learngene_ea.core.models import use_channels_last

    fast, fast_losses = _train_and_state(family, tiny_dataset, stacked)
    assert fast[0].gene_module(fast[0].spec.layers[0].name).conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    use_channels_last(False)
    plain, plain_losses = _train_and_state(family, tiny_dataset, stacked)
    assert plain[0].gene_module(plain[0].spec.layers[0].name).conv.weight.is_contiguous()
    assert fast_losses == pytest.approx(plain_losses, abs=WEIGHT_TOLERANCE)
    for a, b in zip(fast, plain):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            if x.dtype.is_floating_point:
                assert torch.allclose(x, y, atol=WEIGHT_TOLERANCE), name


def test_runtime_channels_last_reaches_the_fitness_evaluation(tiny_cfg, tiny_dataset, monkeypatch):
    """``runtime.channels_last`` is applied in the evaluating process, and the accuracy is the one
    of the default layout within the float tolerance."""
    from learngene_ea.core import models

    seen = []
    monkeypatch.setattr(process, "use_channels_last", lambda on: seen.append(on) or models.use_channels_last(on))
    cfg = load_config(None, tiny_overrides(**{"runtime.channels_last": "true"}))
    spec = arch_spec(cfg.model.family, cfg.model.width)
    try:
        fast = fitness.evaluate(make_individual(spec, full_masks(spec), 0, born=0), cfg)
    finally:
        models.use_channels_last(False)
    plain = fitness.evaluate(make_individual(spec, full_masks(spec), 0, born=0), load_config(None, tiny_overrides()))
    assert seen[0] is True and seen[-1] is False
    assert fast.fitness[0] == pytest.approx(plain.fitness[0], abs=ACCURACY_TOLERANCE)
