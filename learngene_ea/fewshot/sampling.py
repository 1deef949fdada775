"""Few-shot sampling and scoring: tasks (training classes), episodes (val/test classes).

Every sampler takes an explicit integer seed and uses its own ``numpy`` generator, so the same
seed gives the same task or episode in any process, on any worker, in any order.
Prototype scoring turns a feature extractor into an N-way classifier (nearest class centroid)
and reports mean accuracy with a 95% confidence interval over episodes.
"""
from __future__ import annotations

import functools
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


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` degrees of freedom (exact finite series, A&S 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        term = total = 1.0
        for j in range(1, df // 2):
            term *= c2 * (2 * j - 1) / (2 * j)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = 1.0  # (2/pi) (theta + sin cos (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ... up to c^(df-3)))
    for j in range(1, (df - 1) // 2):
        term *= c2 * (2 * j) / (2 * j + 1)
        total += term
    return 2 / math.pi * (theta + s * math.cos(theta) * total)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (2.776 at 4, 1.960 as df grows).

    The half-width of a two-sided 95% interval is this times ``sd / sqrt(n)`` with ``df = n - 1``.
    Bisection on the exact distribution function (no SciPy needed); cached, df is small.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {df}")
    return _t_quantile_975(int(df))


@functools.lru_cache(maxsize=None)
def _t_quantile_975(df: int) -> float:
    if df > 100_000:  # the series would be long; the normal quantile is exact to 1e-5 here
        return 1.959963984540054
    if df == 1:
        return math.tan(math.pi * 0.475)  # Cauchy: closed form
    low, high = 0.0, 20.0  # the quantile is 4.30 at df = 2 and falls with df
    for _ in range(200):
        mid = (low + high) / 2
        if _t_two_sided_mass(mid, df) < 0.95:
            low = mid
        else:
            high = mid
        if high - low < 1e-13:
            break
    return (low + high) / 2


def mean_and_ci95(accuracies) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval: ``t(0.975, n-1) * std / sqrt(n)`` (sample std).

    The values must be independent units (episodes with their own seeds, or seeds); one value has
    no interval (0.0), none gives NaNs.
    """
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    if values.size == 1:
        return float(values[0]), 0.0
    half = t_quantile_975(values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


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
