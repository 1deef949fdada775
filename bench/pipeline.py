"""The pipeline row of ``python -m bench``: images/second of building batches (indexing, crop+flip,
normalising) vs of the training step."""
from __future__ import annotations

import torch

from bench.common import median_seconds
from learngene_ea.data import load_dataset
from learngene_ea.core.models import build_model


def bench_pipeline(cfg, repeats):
    """Images/second of building batches (index, augment, normalise) vs of a training step."""
    from learngene_ea.fewshot.batches import draw_crops, images_on, make_batch, normalisation

    dataset = load_dataset(cfg.data)
    device = torch.device("cpu")
    images = images_on(dataset, device)
    mean, std = normalisation(dataset, device)
    generator = torch.Generator().manual_seed(0)
    batch = cfg.task.batch_size
    indices = [torch.randint(0, len(images), (batch,), generator=generator) for _ in range(50)]

    def build():
        for idx in indices:
            make_batch(images, idx, mean, std, draw_crops(batch, generator))

    model = build_model(cfg.model.family, cfg.model.width, 3, cfg.task.num_classes, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = make_batch(images, indices[0], mean, std, draw_crops(batch, generator))
    y = torch.randint(0, cfg.task.num_classes, (batch,))

    def train():
        for _ in indices:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    build_s, _ = median_seconds(build, repeats)
    train_s, _ = median_seconds(train, repeats)
    images_done = batch * len(indices)
    return {"batch_images_per_second": images_done / build_s, "train_images_per_second": images_done / train_s,
            "pipeline_share_of_step": build_s / (build_s + train_s), "batch_size": batch,
            "model": f"{cfg.model.family}x{cfg.model.width}"}
