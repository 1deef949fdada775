"""Few-shot sampling and scoring: tasks (training classes), episodes (val/test classes).

Every sampler takes an explicit integer seed and uses its own ``numpy`` generator, so the same
seed gives the same task or episode in any process, on any worker, in any order.
Prototype scoring turns a feature extractor into an N-way classifier (nearest class centroid)
and reports mean accuracy with a 95% confidence interval over episodes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.base import FewShotDataset


@dataclass(frozen=True)
class Task:
    """A classification task over a subset of classes: image indices and labels 0..n-1."""

    class_ids: tuple[int, ...]
    indices: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Episode:
    """An N-way K-shot episode: disjoint support and query images, labels 0..N-1."""

    class_ids: tuple[int, ...]
    support: np.ndarray
    support_labels: np.ndarray
    query: np.ndarray
    query_labels: np.ndarray


def _class_pool(dataset: FewShotDataset, split: str) -> list[int]:
    if split not in dataset.splits:
        raise ValueError(f"unknown split {split!r}")
    return list(dataset.splits[split])


def training_classes_task(dataset: FewShotDataset) -> Task:
    """One task of every training class with all its images (what whole networks pre-train on)."""
    classes = [int(c) for c in dataset.splits["train"]]
    indices = np.concatenate([dataset.indices_of_class(c).numpy() for c in classes])
    labels = np.concatenate([np.full(len(dataset.indices_of_class(c)), i) for i, c in enumerate(classes)])
    return Task(tuple(classes), indices, labels)


def sample_task(dataset: FewShotDataset, seed: int, num_classes: int, images_per_class: int,
                split: str = "train") -> Task:
    """A task of ``num_classes`` random classes of ``split`` with ``images_per_class`` images each."""
    rng = np.random.default_rng(seed)
    pool = _class_pool(dataset, split)
    if num_classes > len(pool):
        raise ValueError(f"a task of {num_classes} classes needs more than the {len(pool)} {split} classes")
    classes = rng.choice(pool, size=num_classes, replace=False)
    indices, labels = [], []
    for label, class_id in enumerate(classes):
        available = dataset.indices_of_class(int(class_id)).numpy()
        take = min(images_per_class, len(available))
        indices.append(rng.choice(available, size=take, replace=False))
        labels.append(np.full(take, label))
    return Task(tuple(int(c) for c in classes), np.concatenate(indices), np.concatenate(labels))


def sample_episode(dataset: FewShotDataset, seed: int, n_way: int, k_shot: int, n_query: int,
                   split: str = "val") -> Episode:
    """An N-way K-shot episode with ``n_query`` queries per class; support and query are disjoint."""
    rng = np.random.default_rng(seed)
    pool = _class_pool(dataset, split)
    if n_way > len(pool):
        raise ValueError(f"{n_way}-way episodes need more than the {len(pool)} {split} classes")
    classes = rng.choice(pool, size=n_way, replace=False)
    support, support_labels, query, query_labels = [], [], [], []
    for label, class_id in enumerate(classes):
        available = dataset.indices_of_class(int(class_id)).numpy()
        if k_shot + n_query > len(available):
            raise ValueError(f"class {class_id} has {len(available)} images, fewer than "
                             f"{k_shot} shots + {n_query} queries")
        chosen = rng.choice(available, size=k_shot + n_query, replace=False)
        support.append(chosen[:k_shot])
        query.append(chosen[k_shot:])
        support_labels.append(np.full(k_shot, label))
        query_labels.append(np.full(n_query, label))
    return Episode(tuple(int(c) for c in classes), np.concatenate(support), np.concatenate(support_labels),
                   np.concatenate(query), np.concatenate(query_labels))


def sample_episodes(dataset: FewShotDataset, seed: int, count: int, n_way: int, k_shot: int,
                    n_query: int, split: str = "val") -> list[Episode]:
    """``count`` episodes; episode ``i`` depends only on ``(seed, i)``."""
    return [sample_episode(dataset, _mix(seed, i), n_way, k_shot, n_query, split) for i in range(count)]


def _mix(*parts: int) -> int:
    """A deterministic seed from several integers (stable across processes, unlike hash())."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


mix_seed = _mix


def mean_and_ci95(accuracies) -> tuple[float, float]:
    """Mean and half-width of the 95% confidence interval: ``1.96 * std / sqrt(n)`` (sample std)."""
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    if values.size == 1:
        return float(values[0]), 0.0
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def class_sums(values: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """``[n_way, D]``: row c is the sum of the rows of ``values`` (``[N, D]``) labelled c.

    On a CPU ``index_add_`` (adds in order); elsewhere a one-hot mask and a sum, because CUDA's
    ``index_add_`` adds with atomics, in an order that changes from run to run. The two agree to
    float rounding (the mask adds zeros, in another order).
    """
    if values.device.type == "cpu":
        return torch.zeros(n_way, values.shape[1], dtype=values.dtype).index_add_(0, labels, values)
    return class_sums_by_mask(values, labels, n_way)


def class_sums_by_mask(values: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """:func:`class_sums` without atomics: ``onehot[c, n] * values[n]`` summed over ``n`` (no matrix
    product, which TF32 would round)."""
    onehot = labels.view(1, -1) == torch.arange(n_way, device=labels.device).view(-1, 1)  # [n_way, N]
    return (onehot.unsqueeze(2).to(values.dtype) * values.unsqueeze(0)).sum(1)


def prototype_predict(support_features: torch.Tensor, support_labels: torch.Tensor, query_features: torch.Tensor,
                      n_way: int, metric: str = "cosine") -> torch.Tensor:
    """Predicted labels of the queries: the nearest class centroid of the support features."""
    if metric == "cosine":
        support_features = torch.nn.functional.normalize(support_features, dim=1)
        query_features = torch.nn.functional.normalize(query_features, dim=1)
    prototypes = class_sums(support_features, support_labels, n_way)
    # Counted so, not by torch.bincount: on a GPU bincount reads the largest label back to the host.
    counts = class_sums(torch.ones_like(support_labels, dtype=support_features.dtype).unsqueeze(1), support_labels,
                        n_way).squeeze(1)
    prototypes /= counts.clamp(min=1).unsqueeze(1)
    if metric == "cosine":
        scores = query_features @ torch.nn.functional.normalize(prototypes, dim=1).T
    else:
        scores = -torch.cdist(query_features, prototypes)
    return scores.argmax(dim=1)
