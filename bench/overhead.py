"""The overhead row of ``python -m bench``: learngene-ea's fitness evaluations vs a minimal plain
PyTorch loop (written here) that trains and scores the same descendants on the same tasks."""
from __future__ import annotations

import statistics

import numpy as np
import torch

from bench.common import fresh_population, median_seconds
from learngene_ea.data import load_dataset
from learngene_ea.ea.fitness import evaluate, validation_episodes
from learngene_ea.core.models import build_model
from learngene_ea.fewshot.sampling import mix_seed, sample_task


def plain_generation(cfg, population, dataset):
    """The same work as learngene-ea's fitness, written as a bare PyTorch loop."""
    images = dataset.images
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    episodes = validation_episodes(cfg, dataset)
    accuracies = []
    for ind in population:
        seed = mix_seed(cfg.seed, 0, ind.id, 0)
        model = build_model(cfg.model.family, cfg.model.width, 3, cfg.task.num_classes, seed=seed)
        task = sample_task(dataset, seed, cfg.task.num_classes, cfg.task.images_per_class)
        gen = torch.Generator().manual_seed(seed)
        idx = torch.as_tensor(task.indices)
        lab = torch.as_tensor(task.labels)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.task.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.task.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.task.steps)
        model.train()
        order, cursor = torch.randperm(len(idx), generator=gen), 0
        for _ in range(cfg.task.steps):
            if cursor + cfg.task.batch_size > len(idx):
                order, cursor = torch.randperm(len(idx), generator=gen), 0
            pick = order[cursor:cursor + cfg.task.batch_size]
            cursor += cfg.task.batch_size
            x = images[idx[pick]].float() / 255.0
            padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
            dy, dx = torch.randint(0, 9, (2, len(x)), generator=gen).tolist()  # a crop per image, as ours
            x = torch.stack([padded[i, :, y:y + 32, z:z + 32] for i, (y, z) in enumerate(zip(dy, dx))])
            x = torch.where(torch.rand(len(x), 1, 1, 1, generator=gen) < 0.5, x.flip(3), x)
            loss = torch.nn.functional.cross_entropy(model((x - mean) / std), lab[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = []
        with torch.no_grad():
            for e in episodes:
                s = model.forward_features((images[torch.as_tensor(e.support)].float() / 255 - mean) / std)
                q = model.forward_features((images[torch.as_tensor(e.query)].float() / 255 - mean) / std)
                s, q = torch.nn.functional.normalize(s, dim=1), torch.nn.functional.normalize(q, dim=1)
                protos = torch.stack([s[torch.as_tensor(e.support_labels) == c].mean(0) for c in range(len(e.class_ids))])
                pred = (q @ torch.nn.functional.normalize(protos, dim=1).T).argmax(1)
                correct.append((pred == torch.as_tensor(e.query_labels)).float().mean().item())
        accuracies.append(float(np.mean(correct)))
    return accuracies


def bench_overhead(cfg, repeats):
    """learngene-ea's fitness vs the plain loop on the same descendants, warmed up, interleaved.

    The first training in a process pays one-off costs (kernel selection, allocator growth), and a
    machine's speed drifts: both sides are warmed up on one descendant, then alternate.
    """
    dataset = load_dataset(cfg.data)
    population = fresh_population(cfg)
    evaluate(population[0], cfg)
    plain_generation(cfg, population[:1], dataset)
    f_times, p_times = [], []
    for _ in range(repeats):
        f_times.append(median_seconds(lambda: [evaluate(ind, cfg) for ind in population], 1)[0])
        p_times.append(median_seconds(lambda: plain_generation(cfg, population, dataset), 1)[0])
    framework, plain = statistics.median(f_times), statistics.median(p_times)
    return {"framework_seconds": framework, "plain_seconds": plain, "overhead": framework / plain - 1,
            "framework_runs": f_times, "plain_runs": p_times, "population": len(population)}
