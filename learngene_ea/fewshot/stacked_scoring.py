"""Scoring P stacked descendants at once on the same episodes: the features of every episode image
from one pass of the stacked network, and the prototype accuracies of all descendants on all
episodes in one batched computation (no loop over descendants or over episodes).

The numbers are those of :func:`~learngene_ea.fewshot.training.prototype_accuracies` on each descendant,
up to float summation order (a grouped convolution, a batched matrix product).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.batched import StackedDescendants
from ..data.base import FewShotDataset
from .batches import images_on, make_batch, normalisation
from .sampling import Episode
from .training import episode_images


@torch.no_grad()
def stacked_features(stack: StackedDescendants, dataset: FewShotDataset, indices: np.ndarray,
                     device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Pooled features ``[N, P, F]`` of the images at ``indices`` for every descendant of ``stack``
    (evaluation mode, no augmentation): each image goes to every descendant, ``batch_size // P``
    images per pass."""
    images = images_on(dataset, device)
    mean, std = normalisation(dataset, device)
    stack.eval()
    index = torch.as_tensor(indices, dtype=torch.long, device=device)
    step = max(1, batch_size // stack.size)
    chunks = []
    for i in range(0, len(index), step):
        x = make_batch(images, index[i:i + step], mean, std).repeat(1, stack.size, 1, 1)
        chunks.append(stack.forward_features(x.contiguous(memory_format=stack.layout)))
    return torch.cat(chunks)


def episode_class_sums(values: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """``[E, n_way, ...]``: for each episode, the sum of its ``values`` (``[E, S, ...]``) per label
    (``labels``: ``[E, S]``). On a CPU one ``index_add_`` (adds in order); elsewhere a one-hot mask and a
    sum, as :func:`~learngene_ea.fewshot.sampling.class_sums` does for one episode (no atomics)."""
    e, s = labels.shape
    flat = values.reshape(e, s, -1)
    if values.device.type == "cpu":
        keys = (labels + n_way * torch.arange(e).view(e, 1)).view(-1)
        sums = torch.zeros(e * n_way, flat.shape[2], dtype=values.dtype).index_add_(0, keys, flat.view(e * s, -1))
    else:
        onehot = labels.unsqueeze(1) == torch.arange(n_way, device=labels.device).view(1, n_way, 1)  # [E, n_way, S]
        sums = (onehot.unsqueeze(3).to(values.dtype) * flat.unsqueeze(1)).sum(2)
    return sums.view(e, n_way, *values.shape[2:])


def prototype_accuracies_of_features(features: torch.Tensor, positions, n_way: int, metric: str) -> torch.Tensor:
    """``[P, E]`` accuracies of the nearest-centroid classifier of every descendant on every episode.

    ``features``: ``[N, P, F]``; ``positions``: ``(support, support labels, query, query labels)``, each
    ``[E, ...]`` (episodes of one shape)."""
    support, support_labels, query, query_labels = positions
    s, q = features[support], features[query]  # [E, S, P, F], [E, Q, P, F]
    if metric == "cosine":
        s, q = nn.functional.normalize(s, dim=3), nn.functional.normalize(q, dim=3)
    counts = episode_class_sums(torch.ones_like(support_labels, dtype=s.dtype).view(*support.shape, 1, 1),
                                support_labels, n_way)
    prototypes = episode_class_sums(s, support_labels, n_way) / counts.clamp(min=1)  # [E, n_way, P, F]
    if metric == "cosine":
        scores = torch.einsum("eqpf,ewpf->epqw", q, nn.functional.normalize(prototypes, dim=3))
    else:
        scores = -torch.cdist(q.transpose(1, 2), prototypes.transpose(1, 2))  # [E, P, Q, n_way]
    correct = scores.argmax(dim=3) == query_labels.unsqueeze(1)  # [E, P, Q]
    return correct.float().mean(2).T


def grouped_positions(episodes: list[Episode], images: np.ndarray, device) -> list[tuple]:
    """Episodes of one shape (ways, support and query sizes) grouped: ``(n_way, members, positions)``
    per group, ``positions`` as in :func:`prototype_accuracies_of_features`, with support and query
    given as positions in ``images`` (:func:`~learngene_ea.fewshot.training.episode_images`): copied to
    ``device`` in one transfer for all episodes."""
    position = {int(idx): i for i, idx in enumerate(images)}
    groups: dict = {}
    for k, e in enumerate(episodes):
        groups.setdefault((len(e.class_ids), len(e.support), len(e.query)), []).append(k)
    arrays = []
    for members in groups.values():
        chosen = [episodes[k] for k in members]
        arrays += [np.array([[position[int(i)] for i in e.support] for e in chosen], dtype=np.int64),
                   np.array([e.support_labels for e in chosen], dtype=np.int64),
                   np.array([[position[int(i)] for i in e.query] for e in chosen], dtype=np.int64),
                   np.array([e.query_labels for e in chosen], dtype=np.int64)]
    flat = torch.as_tensor(np.concatenate([a.reshape(-1) for a in arrays])).to(device)
    views = [v.view(a.shape) for v, a in zip(flat.split([a.size for a in arrays]), arrays)]
    return [(key[0], members, views[4 * g:4 * g + 4]) for g, (key, members) in enumerate(groups.items())]


@torch.no_grad()
def stacked_prototype_accuracies(stack: StackedDescendants, dataset: FewShotDataset, episodes: list[Episode],
                                 metric: str = "cosine", device: torch.device | str = "cpu") -> np.ndarray:
    """``[P, E]``: every descendant's prototype accuracy on every episode (features computed once)."""
    if not episodes:
        return np.zeros((stack.size, 0))
    all_indices = episode_images(episodes)
    features = stacked_features(stack, dataset, all_indices, torch.device(device))
    groups = grouped_positions(episodes, all_indices, features.device)
    scored = torch.cat([prototype_accuracies_of_features(features, positions, n_way, metric)
                        for n_way, _, positions in groups], dim=1).cpu().numpy()
    accuracies = np.zeros_like(scored)
    accuracies[:, [k for _, members, _ in groups for k in members]] = scored
    return accuracies
